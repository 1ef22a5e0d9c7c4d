//! The `tka` executable: a small front to the full command.
//!
//! `tka token verify`, the command scripts run and applications run at every
//! start, is read and run here (`token_verify.rs`) without loading the full
//! command: its clap tree, SQLite, PostgreSQL, tokio and the rest of a 20 MB
//! binary cost a process more start-up time (page faults, relocations) than
//! the verification itself (docs/benchmarks.md). Every other command line,
//! and a verify line this front is not sure of (help, an unknown flag, an
//! error to word), is handed to the full command, `tka-full`, by `exec`:
//! same arguments (`argv[0]` included), environment, standard streams and
//! process, so it behaves exactly as if run directly.
//!
//! `tka-full` is looked for next to this executable (a `cargo install` or
//! a build tree), then in `../libexec/tka/` (a package install), both from
//! the executable's real path.
//!
//! On Linux with glibc the front starts at the C `main`, not at Rust's: the
//! Rust start-up reads /proc/self/maps to place a guard for a stack overflow
//! and sets up an alternate signal stack for its message, some 15 system
//! calls that a verification does not need (a stack overflow is then a plain
//! SIGSEGV). What else it does and a command needs is done here: closed
//! standard streams opened on /dev/null, SIGPIPE ignored (output.rs handles
//! a closed standard output), standard output flushed at the end.

#![cfg_attr(all(target_os = "linux", target_env = "gnu", not(test)), no_main)]

// The modules below are shared with the full command (main.rs); the front
// uses the verification's part of them.
#[allow(dead_code)]
mod hints;
#[allow(dead_code)]
mod input;
#[allow(dead_code)]
mod outcome;
#[allow(dead_code)]
mod output;
mod report;
mod token_verify;

// The unwinder linked in statically (gcc's libgcc_eh, what `-static-libgcc`
// links), so the process does not load libgcc_s: its loading and its CPU
// detection at load (`cpuid`, a trap to the hypervisor in a VM) were 10 % of
// a verification process here (docs/benchmarks.md). The front loads no other
// code (no PKCS#11 module), so no second unwinder meets this one. Linked as
// a native library of this crate, ahead of the standard library's
// `-lgcc_s`, which is then not needed (`--as-needed`).
#[cfg(all(target_os = "linux", target_env = "gnu", not(test)))]
#[link(name = "gcc_eh", kind = "static", modifiers = "-bundle")]
extern "C" {}

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// The full command's file name.
const FULL: &str = "tka-full";

/// The C entry point (see above); the arguments are read by Rust's
/// `std::env::args_os`, which glibc hands them to before `main`.
#[cfg(all(target_os = "linux", target_env = "gnu", not(test)))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: plain system calls on this process's own descriptors and
    // signal dispositions, before any other thread exists.
    unsafe {
        // Standard streams left closed by the caller are opened on
        // /dev/null (so no file this command opens takes their number).
        let mut fds: [libc::pollfd; 3] = std::array::from_fn(|fd| libc::pollfd { fd: fd as _, events: 0, revents: 0 });
        if libc::poll(fds.as_mut_ptr(), 3, 0) >= 0 {
            for p in &fds {
                if p.revents & libc::POLLNVAL != 0 && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) != p.fd {
                    return libc::c_int::from(outcome::ERROR);
                }
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let code = run();
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // ExitCode does not give its number back: find it.
    (0..=u8::MAX).find(|c| ExitCode::from(*c) == code).map_or(1, libc::c_int::from)
}

#[cfg(any(not(all(target_os = "linux", target_env = "gnu")), test))]
fn main() -> ExitCode {
    run()
}

fn run() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // As the full command: under --json (before any `--`) every result, an
    // error included, is reported as JSON.
    report::json_mode_from(&args);
    if let Some(code) = token_verify::run_line(&args) {
        return code;
    }
    let error = match full_command() {
        Some(full) => exec(&full, &args),
        None => format!(
            "the full tka command ({FULL}) is not installed next to {} or in ../libexec/tka/ (reinstall tka)",
            std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "tka".into())
        ),
    };
    report::finish(Err(outcome::Failure::Usage(tka::Error::Usage(error))))
}

/// Where `tka-full` is: next to this executable, else in `../libexec/tka/`.
fn full_command() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(FULL), dir.join("../libexec/tka").join(FULL)].into_iter().find(|p| p.is_file())
}

/// Replaces this process with `full` run with `args`; returns only on
/// failure, with the words of the error.
#[cfg(unix)]
fn exec(full: &std::path::Path, args: &[OsString]) -> String {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(full);
    cmd.arg0(args.first().map_or_else(|| OsString::from("tka"), Clone::clone)).args(args.iter().skip(1));
    let e = cmd.exec();
    format!("{}: {e}", full.display())
}

/// Runs `full` with `args` and ends with its exit code (no `exec` here).
#[cfg(not(unix))]
fn exec(full: &std::path::Path, args: &[OsString]) -> String {
    match std::process::Command::new(full).args(args.iter().skip(1)).status() {
        Ok(s) => std::process::exit(s.code().unwrap_or(2)),
        Err(e) => format!("{}: {e}", full.display()),
    }
}
