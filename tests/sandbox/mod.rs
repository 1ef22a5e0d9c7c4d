//! A private world for tests that drive the real `tka` binary: a temporary
//! directory holding a fake machine (`TKA_SYSROOT`), an activation store
//! (`TKA_STORE`), a home and a passphrase. Used by the hardening tests
//! (clock, crash, limits, secrets); tests/cli.rs has its own copy.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_tka");
pub const PASS: &str = "correct horse battery staple";
pub const PRODUCT: &str = "example-pro";

/// (exit code, stdout, stderr).
pub type Run = (i32, String, String);

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run tka");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fake_machine(root: &Path, mid: &str, uuid: &str, serial: &str) {
    for (rel, value) in
        [("etc/machine-id", mid), ("sys/class/dmi/id/product_uuid", uuid), ("sys/class/dmi/id/product_serial", serial)]
    {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, format!("{value}\n")).unwrap();
    }
}

pub struct Sandbox {
    pub tmp: TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fake_machine(
            &tmp.path().join("sysroot"),
            "4c4c4544004d3510804bb4c04f4e3332",
            "4C4C4544-004D-3510-804B-B4C04F4E3332",
            "5CD1234XYZ",
        );
        fs::create_dir(tmp.path().join("user-home")).unwrap();
        Sandbox { tmp }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir().join(rel)
    }

    pub fn store(&self) -> PathBuf {
        self.path("store")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir())
            .env_remove("TKA_MACHINE_ID")
            .env_remove("TKA_HOME")
            .env_remove("XDG_DATA_HOME")
            .env("HOME", self.path("user-home"))
            .env("TKA_SYSROOT", self.path("sysroot"))
            .env("TKA_STORE", self.store())
            .env("TKA_PASSPHRASE", PASS)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null());
        c
    }

    pub fn tka(&self, args: &[&str]) -> Run {
        run(&mut self.cmd(args))
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.tka(args);
        assert_eq!(r.0, 0, "tka {args:?} failed:\nstdout: {}\nstderr: {}", r.1, r.2);
        r.1
    }

    /// An issuer home at `home/` (2048-bit keys) whose root the store trusts,
    /// and a request for `product` from this machine at `req-<product>.json`.
    #[track_caller]
    pub fn issuer_and_trust(&self) {
        self.ok(&["issuer", "init", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
        self.ok(&["trust", "add", "home/root.pem"]);
    }

    /// Issues a token for `product` on this machine into `out`.
    #[track_caller]
    pub fn token(&self, product: &str, out: &str) {
        let req = format!("req-{product}.json");
        if !self.path(&req).exists() {
            self.ok(&["request", "create", "--product", product, "--out", &req]);
        }
        self.ok(&["token", "issue", "--request", &req, "--home", "home", "--out", out, "--force"]);
    }
}
