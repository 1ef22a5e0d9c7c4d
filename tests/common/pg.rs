//! Throwaway PostgreSQL clusters for the ledger tests: `initdb` in a
//! temporary directory (`-A trust`), the server on a free loopback port,
//! run as the `postgres` user (through `runuser`) when the tests run as
//! root, since `initdb` refuses root. One cluster is shared by the test
//! binary ([`database`] makes one database per test in it) and stopped when
//! the binary exits; [`Cluster::start`] makes one of a test's own (stopped
//! on drop).
//!
//! Without PostgreSQL (no `/usr/lib/postgresql/*/bin/initdb`) the tests that
//! need it print a visible skip (tests/tools), or fail when `TKA_REQUIRE_TOOLS=1` (CI).
//!
//! Included with `#[path = "common/pg.rs"] mod pg;` by the tests that use it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// A running throwaway cluster.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    /// Its loopback port.
    pub port: u16,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

/// The directory of the newest PostgreSQL's binaries, if installed.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.trim_ascii() == b"0").unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    /// Starts a new cluster, or `None` (with the skip printed) when
    /// PostgreSQL is not installed and not required.
    pub fn start() -> Option<Cluster> {
        let Some(bin) = bin_dir() else {
            crate::tools::missing(
                "PostgreSQL (apt-get install postgresql; no /usr/lib/postgresql/*/bin/initdb)",
                "TKA_REQUIRE_POSTGRES",
            );
            return None;
        };
        let dir = tempfile::Builder::new().prefix("tka-pg").tempdir().unwrap();
        let as_postgres = is_root();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let o = Command::new("chown").args(["postgres:postgres"]).arg(&data).output().unwrap();
            assert!(o.status.success(), "chown: {}", String::from_utf8_lossy(&o.stderr));
        }
        let port = free_port();
        let c = Cluster { bin, data, port, as_postgres, _dir: dir };
        let o = c.run("initdb", &["-D", c.data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "--no-sync"]);
        assert!(o.status.success(), "initdb: {}", String::from_utf8_lossy(&o.stderr));
        c.resume();
        Some(c)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args).output().unwrap()
    }

    /// Starts (again) the server, waiting until it accepts connections.
    pub fn resume(&self) {
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.data.display());
        let log = self.data.join("log");
        let o = self.run(
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-w", "-l", log.to_str().unwrap(), "-o", &opts, "start"],
        );
        assert!(o.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// Stops the server at once (`-m immediate`: as if it went away).
    pub fn stop(&self) {
        let _ = self.run("pg_ctl", &["-D", self.data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }

    /// A new empty database; its URL.
    pub fn database(&self, name: &str) -> String {
        let o = self.run("createdb", &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", name]);
        assert!(o.status.success(), "createdb {name}: {}", String::from_utf8_lossy(&o.stderr));
        self.url(name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` with `psql` on database `name`; its output (unaligned, tuples only).
    pub fn psql(&self, name: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let o = self.run(
            "psql",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", name, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
        );
        assert!(o.status.success(), "psql: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }

    /// The binaries' directory.
    pub fn bin(&self) -> &Path {
        &self.bin
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: OnceLock<Mutex<Option<Cluster>>> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(m) = SHARED.get() {
        drop(m.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

/// Runs `f` with the binary's shared cluster (started on first use, stopped
/// at exit), or returns `None` when PostgreSQL is missing (and not required).
pub fn shared<T>(f: impl FnOnce(&Cluster) -> T) -> Option<T> {
    let m = SHARED.get_or_init(|| {
        let c = Cluster::start();
        if c.is_some() {
            // SAFETY: registers a plain function to run at process exit.
            unsafe { libc::atexit(stop_shared) };
        }
        Mutex::new(c)
    });
    let g = m.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref().map(f)
}

/// A new database named `name` in the shared cluster: its URL, or `None`
/// (skipped) without PostgreSQL.
pub fn database(name: &str) -> Option<String> {
    shared(|c| c.database(name))
}

/// `psql` on database `name` of the shared cluster.
pub fn psql(name: &str, sql: &str) -> String {
    shared(|c| c.psql(name, sql)).expect("the shared cluster runs")
}
