//! Tests that need a tool outside Rust (openssl, Python jwcrypto, SoftHSM2,
//! PostgreSQL): without it they skip *visibly*, or fail when required.
//!
//! - `TKA_REQUIRE_TOOLS=1` makes every such test mandatory: a missing tool
//!   fails the test (`.ci/run` sets it and installs the tools). `0`, empty
//!   or unset: not required. The older per-tool variables
//!   (`TKA_REQUIRE_INTEROP`, `TKA_REQUIRE_SOFTHSM`, `TKA_REQUIRE_POSTGRES`)
//!   still require their own tool when `1`.
//! - A skip prints `SKIPPED <binary>::<test>: <tool> ...` on the real
//!   stderr (not the captured test output, so plain `cargo test` shows it),
//!   and when the test binary exits it prints how many tests skipped and
//!   which: `SKIPPED 3 tests of interop for missing tools: ...`.
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Mutex, Once};

/// The variable that makes every tool-dependent test mandatory.
pub const REQUIRE_ALL: &str = "TKA_REQUIRE_TOOLS";

/// Whether a variable's value requires the tools: exactly `1`.
pub fn requires(value: Option<&str>) -> bool {
    value == Some("1")
}

/// Whether the tool behind `legacy` (its older per-tool variable) must be there.
pub fn required(legacy: &str) -> bool {
    [REQUIRE_ALL, legacy].iter().any(|v| requires(std::env::var(v).ok().as_deref()))
}

static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

extern "C" fn report_at_exit() {
    let skipped = SKIPPED.lock().map(|s| s.clone()).unwrap_or_default();
    if !skipped.is_empty() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {} test{} of {} for missing tools ({REQUIRE_ALL}=1 makes them fail): {}",
            skipped.len(),
            if skipped.len() == 1 { "" } else { "s" },
            binary(),
            skipped.join(", ")
        );
    }
}

/// The test binary's name (`interop` for `interop-0123abcd`).
fn binary() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe.as_ref().and_then(|p| p.file_stem()).map(|s| s.to_string_lossy().into_owned());
    let stem = stem.unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
        _ => stem,
    }
}

/// `tool` is missing: panics when it is required (`legacy` or
/// `TKA_REQUIRE_TOOLS`), else records and prints the skip of the running
/// test. The caller then returns without testing.
#[track_caller]
pub fn missing(tool: &str, legacy: &str) {
    if required(legacy) {
        panic!("{tool} is missing, but {REQUIRE_ALL}=1 (or {legacy}=1) requires it: install it (see .ci/run)");
    }
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {}::{test}: {tool} is not available ({REQUIRE_ALL}=1 makes this a failure)",
        binary()
    );
    if let Ok(mut s) = SKIPPED.lock() {
        s.push(test);
    }
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain function with no captured state.
        unsafe {
            libc::atexit(report_at_exit);
        }
    });
}
