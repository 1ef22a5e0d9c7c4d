//! A private world for tests that drive the real `tka` binary: a temporary
//! directory (also the working directory) holding a fake machine
//! (`TKA_SYSROOT`, honoured only by a binary built with the `test-hooks`
//! feature, which `cargo test` turns on), an activation store (`TKA_STORE`), a home and a
//! passphrase in `TKA_PASSPHRASE`. Nothing reads the real machine, the real
//! store or the user's home. Shared by every test file that runs the binary
//! (cli, clock, crash, interop, limits, pkcs11, revocation, rotation, secrets).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_tka");
pub const PASS: &str = "correct horse battery staple";
pub const PRODUCT: &str = "example-pro";

/// (machine-id, DMI product UUID, DMI product serial) of a fake machine.
pub type Machine = (&'static str, &'static str, &'static str);

/// The machine every sandbox is by default.
pub const MACHINE_A: Machine =
    ("4c4c4544004d3510804bb4c04f4e3332", "4C4C4544-004D-3510-804B-B4C04F4E3332", "5CD1234XYZ");
/// Another machine.
pub const MACHINE_B: Machine =
    ("9a8b7c6d5e4f30211203f4e5d6c7b8a9", "1E2D3C4B-5A69-4788-96A5-B4C3D2E1F0A9", "CZC9876QRS");

/// (exit code, stdout, stderr).
pub type Run = (i32, String, String);

/// Runs a prepared command and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a prepared command like [`run`], but kills it and fails the test if
/// it has not finished within `limit`: a guard so that a regression that
/// makes tka block (on a FIFO, say) fails instead of hanging the suite. Not
/// a timing assertion: `limit` is generous.
pub fn run_within(cmd: &mut Command, limit: std::time::Duration) -> Run {
    try_run_within(cmd, limit).unwrap_or_else(|why| panic!("{cmd:?} {why}"))
}

/// [`run_within`] that says why the command did not run or finish (it
/// could not start, or it blocked and was killed after `limit`).
pub fn try_run_within(cmd: &mut Command, limit: std::time::Duration) -> Result<Run, String> {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| format!("cannot run: {e}"))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let out = out.map_err(|e| e.to_string())?;
            Ok((
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ))
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            Err(format!("did not finish within {limit:?}: it blocked (killed)"))
        }
    }
}

/// Makes a FIFO (named pipe) at `path` with mkfifo(1).
pub fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {} failed", path.display());
}

/// Writes a fake Linux system root with machine-id, DMI product UUID and serial.
fn fake_machine(root: &Path, (mid, uuid, serial): Machine) {
    for (rel, value) in
        [("etc/machine-id", mid), ("sys/class/dmi/id/product_uuid", uuid), ("sys/class/dmi/id/product_serial", serial)]
    {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, format!("{value}\n")).unwrap();
    }
}

/// Writes `content` to `path` with mode 0600 (secret files group or others
/// can read are refused).
pub fn write_private(path: &Path, content: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// Every file (path -> bytes) and directory (path -> None) under a path.
pub type Snapshot = BTreeMap<PathBuf, Option<Vec<u8>>>;

pub fn snapshot(p: &Path) -> Snapshot {
    fn walk(p: &Path, m: &mut Snapshot) {
        let Ok(meta) = fs::symlink_metadata(p) else { return };
        if meta.is_dir() {
            m.insert(p.to_path_buf(), None);
            for e in fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), m);
            }
        } else {
            m.insert(p.to_path_buf(), Some(fs::read(p).unwrap()));
        }
    }
    let mut m = BTreeMap::new();
    walk(p, &mut m);
    m
}

/// The `name: VALUE` lines a command or script prints.
pub fn named(out: &str) -> BTreeMap<String, String> {
    out.lines().filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Asserts the exit code and that the one `error:` line on stderr starts with
/// `error: {prefix}`.
#[track_caller]
pub fn assert_fails(r: &Run, code: i32, prefix: &str) {
    let (c, out, err) = r;
    assert_eq!(*c, code, "expected exit {code}\nstdout: {out}\nstderr: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected exactly one error line\nstderr: {err}");
    assert!(errors[0].starts_with(&format!("error: {prefix}")), "expected {prefix:?}\nstderr: {err}");
}

/// Whether a third-party tool works; when it does not, either skips (returns
/// false, printing why) or, with TKA_REQUIRE_TOOLS=1 (or TKA_REQUIRE_INTEROP=1), fails the test.
pub fn have(tool: &str, probe: &mut Command) -> bool {
    let ok = probe.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    // Fails when required, else prints and counts the skip (tests/tools).
    crate::tools::missing(tool, "TKA_REQUIRE_INTEROP");
    false
}

pub fn have_openssl() -> bool {
    have("openssl", Command::new("openssl").arg("version"))
}

pub struct Sandbox {
    pub tmp: TempDir,
    /// A SoftHSM2 configuration the commands see (`SOFTHSM2_CONF`), for keys on a token.
    pub softhsm2_conf: Option<PathBuf>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A sandbox on machine A.
    pub fn new() -> Self {
        Self::with_machine(MACHINE_A)
    }

    /// A sandbox whose system root (`sysroot/`) is `machine`.
    pub fn with_machine(machine: Machine) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fake_machine(&tmp.path().join("sysroot"), machine);
        fs::create_dir(tmp.path().join("user-home")).unwrap();
        Sandbox { tmp, softhsm2_conf: None }
    }

    /// Writes another fake system root at `rel` and returns its path (for `TKA_SYSROOT`).
    pub fn add_machine(&self, rel: &str, machine: Machine) -> PathBuf {
        let root = self.path(rel);
        fake_machine(&root, machine);
        root
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

    /// Gives any command (tka, a script, a third-party tool) the sandbox's
    /// working directory and clean, test-controlled environment; `TKA` names
    /// the binary for the scripts.
    pub fn env<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.current_dir(self.dir())
            .env_remove("TKA_MACHINE_ID")
            .env_remove("TKA_HOME")
            .env_remove("XDG_DATA_HOME")
            .env("HOME", self.path("user-home"))
            .env("TKA_SYSROOT", self.path("sysroot"))
            .env("TKA_STORE", self.store())
            .env("TKA_PASSPHRASE", PASS)
            .env("TKA", BIN)
            .env("RUST_BACKTRACE", "0")
            .env_remove("TKA_PKCS11_PIN")
            .env_remove("TKA_PKCS11_MODULE")
            .stdin(Stdio::null());
        if let Some(conf) = &self.softhsm2_conf {
            c.env("SOFTHSM2_CONF", conf);
        }
        c
    }

    /// `program args` inside the sandbox.
    pub fn command(&self, program: impl AsRef<OsStr>, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args);
        self.env(&mut c);
        c
    }

    /// The binary inside the sandbox.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.command(BIN, args)
    }

    pub fn tka(&self, args: &[&str]) -> Run {
        run(&mut self.cmd(args))
    }

    /// The binary inside the sandbox, killed (failing the test) if it runs
    /// longer than 20 seconds: see [`run_within`].
    pub fn tka_guarded(&self, args: &[&str]) -> Run {
        run_within(&mut self.cmd(args), std::time::Duration::from_secs(20))
    }

    /// Runs the binary and requires exit 0; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.tka(args);
        assert_eq!(r.0, 0, "tka {args:?} failed:\nstdout: {}\nstderr: {}", r.1, r.2);
        r.1
    }

    /// Runs `scripts/<name>` with `TKA` pointing at the built binary.
    pub fn script(&self, name: &str, args: &[&str]) -> Run {
        run(&mut self.command(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name), args))
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap()
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        fs::write(self.path(rel), content).unwrap()
    }

    /// Writes a secret (passphrase or PIN) file with mode 0600, as tka requires.
    pub fn write_secret(&self, rel: &str, content: impl AsRef<[u8]>) {
        write_private(&self.path(rel), content)
    }

    /// Every file and directory under `rel`.
    pub fn snapshot(&self, rel: &str) -> Snapshot {
        snapshot(&self.path(rel))
    }

    /// `tka crl create` by the CA whose certificate and key are `<ca>.pem`
    /// and `<ca>.key` (e.g. `home/ca`), with `extra` options, into `out`.
    #[track_caller]
    pub fn crl_create(&self, ca: &str, extra: &[&str], out: &str) -> String {
        let (cert, key) = (format!("{ca}.pem"), format!("{ca}.key"));
        let mut args = vec!["crl", "create", "--ca-cert", &cert, "--ca-key", &key];
        args.extend_from_slice(extra);
        args.extend(["--out", out]);
        self.ok(&args)
    }

    /// An issuer home at `home/` (2048-bit keys) whose root the store trusts,
    /// and a request for `product` from this machine at `req-<product>.json`.
    #[track_caller]
    pub fn issuer_and_trust(&self) {
        self.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
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
