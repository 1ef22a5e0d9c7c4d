//! A throwaway SoftHSM2 token for the PKCS#11 tests: its own configuration
//! (`SOFTHSM2_CONF`) and token directory inside a temporary directory, so
//! nothing touches the system's tokens. Test PINs only.
//!
//! Needs the Debian package `softhsm2` (module and `softhsm2-util`). Without
//! it the tests that need it skip visibly (tests/tools), unless
//! `TKA_REQUIRE_TOOLS=1` (set by `.ci/run`; or the older
//! `TKA_REQUIRE_SOFTHSM=1`) makes them fail instead.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// The user PIN of every test token (TEST ONLY).
pub const PIN: &str = "1234-test-pin";
/// The security officer PIN of every test token (TEST ONLY).
pub const SO_PIN: &str = "5678-test-so";

const MODULES: [&str; 3] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
];

/// The SoftHSM2 module, if installed.
pub fn module() -> Option<PathBuf> {
    MODULES.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Whether SoftHSM2 tests can run; panics when they must and cannot.
pub fn available() -> bool {
    let util = Command::new("softhsm2-util").arg("--version").output().is_ok_and(|o| o.status.success());
    let ok = util && module().is_some();
    if !ok {
        crate::tools::missing("SoftHSM2 (apt install softhsm2)", "TKA_REQUIRE_SOFTHSM");
    }
    ok
}

/// A SoftHSM2 configuration with its own token directory.
pub struct SoftHsm {
    dir: TempDir,
}

impl SoftHsm {
    /// A new configuration holding one initialised token per label.
    pub fn new(labels: &[&str]) -> SoftHsm {
        Self::in_dir(tempfile::tempdir().unwrap(), labels)
    }

    /// The same in `dir` (an empty temporary directory): its configuration
    /// is `dir/softhsm2.conf`.
    pub fn in_dir(dir: TempDir, labels: &[&str]) -> SoftHsm {
        fs::create_dir(dir.path().join("tokens")).unwrap();
        fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        for (name, pin) in [("pin.txt", PIN), ("wrong-pin.txt", "0000-wrong")] {
            // PIN files must not be readable by group or others.
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(name);
            fs::write(&path, format!("{pin}\n")).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        let hsm = SoftHsm { dir };
        for label in labels {
            hsm.init_token(label);
        }
        hsm
    }

    /// Initialises another token.
    pub fn init_token(&self, label: &str) {
        let out = self
            .util()
            .args(["--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN])
            .output()
            .unwrap();
        assert!(out.status.success(), "softhsm2-util --init-token: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `softhsm2-util` with this configuration.
    pub fn util(&self) -> Command {
        let mut c = Command::new("softhsm2-util");
        c.env("SOFTHSM2_CONF", self.conf());
        c
    }

    /// Imports a PKCS#8 PEM key file onto `token` (for keys tka would not generate).
    pub fn import(&self, token: &str, key: &Path, label: &str, id_hex: &str) {
        let out = self
            .util()
            .args(["--import", key.to_str().unwrap(), "--token", token, "--label", label, "--id", id_hex, "--pin", PIN])
            .output()
            .unwrap();
        assert!(out.status.success(), "softhsm2-util --import: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    pub fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin.txt")
    }

    pub fn wrong_pin_file(&self) -> PathBuf {
        self.dir.path().join("wrong-pin.txt")
    }

    /// `pkcs11:token=<token>[;object=<object>]?module-path=...&pin-source=file:...`
    pub fn uri(&self, token: &str, object: Option<&str>) -> String {
        let object = object.map(|o| format!(";object={o}")).unwrap_or_default();
        format!(
            "pkcs11:token={token}{object}?module-path={}&pin-source=file:{}",
            module().unwrap().display(),
            self.pin_file().display()
        )
    }

    /// The same URI with no PIN source (the PIN then comes from TKA_PKCS11_PIN or a prompt).
    pub fn uri_without_pin(&self, token: &str, object: Option<&str>) -> String {
        let object = object.map(|o| format!(";object={o}")).unwrap_or_default();
        format!("pkcs11:token={token}{object}?module-path={}", module().unwrap().display())
    }
}
