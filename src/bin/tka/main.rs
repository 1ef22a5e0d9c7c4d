//! The `tka` command: parses arguments, runs the command, reports errors.
//! No activation, PKI or verification decision is made here; the commands
//! live in `cmd/`, one file per noun.

mod args;
mod cmd;
mod hints;
mod io;
mod outcome;
mod output;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser};
use std::process::ExitCode;

// Every command's help ends with its EXIT CODES section, written by
// `outcome::with_exit_codes` from one definition.
#[derive(Parser, Debug)]
#[command(
    name = "tka",
    version,
    about = "Token-based offline activation: a small PKI, signed activation tokens, air-gapped verification",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    // The EXIT CODES sections are written into the command tree only when
    // clap is to show a help: the other paths (a verification at every
    // application start) skip that work.
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e)
            if e.kind() == ErrorKind::DisplayHelp
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            outcome::with_exit_codes(Cli::command()).get_matches()
        }
        Err(e) => e.exit(),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command the exit-code table names exists: the table cannot
    /// keep a meaning for a command renamed or removed.
    #[test]
    fn exit_code_meanings_name_real_commands() {
        let root = Cli::command();
        for (path, ..) in outcome::MEANINGS {
            let mut cmd = &root;
            for name in path.split_whitespace() {
                cmd = cmd.find_subcommand(name).unwrap_or_else(|| panic!("no command `tka {path}`"));
            }
        }
    }
}
