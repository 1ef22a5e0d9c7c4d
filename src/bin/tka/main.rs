//! The `tka` command: parses arguments, runs the command, reports errors.
//! No activation, PKI or verification decision is made here; the commands
//! live in `cmd/`, one file per noun.

mod args;
mod cmd;
mod hints;
mod io;
mod outcome;
mod output;

use clap::Parser;
use std::process::ExitCode;

const EXIT_CODES: &str = "\
EXIT CODES:
  0  success
  1  a \"no\" verdict: the token is invalid, the product is not activated
  2  usage, input/output or configuration error";

#[derive(Parser, Debug)]
#[command(
    name = "tka",
    version,
    about = "Token-based offline activation: a small PKI, signed activation tokens, air-gapped verification",
    after_help = EXIT_CODES,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = cmd::run(cli.command);
    if output::stdout_closed() {
        // The reader went away (`tka ... | head`): end quietly.
        return ExitCode::SUCCESS;
    }
    match result {
        Ok(code) => code,
        Err(failure) => {
            let e = failure.error();
            match e {
                tka::Error::Issue(r) => output::say_err(format!("error: {}", hints::refusal_text(r))),
                e => output::say_err(format!("error: {e}")),
            }
            if let Some(hint) = hints::hint(e) {
                output::say_err(format!("hint: {hint}"));
            }
            failure.exit_code()
        }
    }
}
