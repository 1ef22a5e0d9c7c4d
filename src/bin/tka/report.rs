//! How a command's result is reported: its output in JSON mode, the
//! `error:` and `hint:` lines of a failure, and the exit code. Shared by the
//! full command (`main.rs`) and the `tka` front (`front.rs`).

use crate::{hints, outcome, output};
use std::ffi::OsString;
use std::process::ExitCode;

/// Turns JSON mode on when `--json` stands anywhere before a `--` in
/// `args` (the whole command line): then every result, a usage error
/// included, is reported as JSON.
pub fn json_mode_from(args: &[OsString]) {
    if args.iter().skip(1).take_while(|a| *a != "--").any(|a| a == "--json") {
        output::set_json_mode();
    }
}

/// Reports a command's `result` and gives the exit code to end with.
pub fn finish(result: outcome::CmdResult) -> ExitCode {
    if output::stdout_closed() {
        // The reader went away (`tka ... | head`): end quietly.
        return ExitCode::SUCCESS;
    }
    match result {
        Ok(code) => {
            if output::json_mode() && !output::document_printed() {
                // A command without a JSON form of its own: its lines.
                output::say_json(&serde_json::json!({ "messages": output::take_messages() }));
            }
            code
        }
        Err(failure) => {
            let e = failure.error();
            let message = match e {
                tka::Error::Issue(r) => hints::refusal_text(r),
                e => e.to_string(),
            };
            output::say_err(format!("error: {message}"));
            let hint = hints::hint(e);
            if let Some(hint) = hint {
                output::say_err(format!("hint: {hint}"));
            }
            if output::json_mode() && !output::document_printed() {
                output::say_json(&output::error_json(&message, &output::error_kind_of(e), hint));
            }
            failure.exit_code()
        }
    }
}
