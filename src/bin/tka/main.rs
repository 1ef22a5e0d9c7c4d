//! The `tka` command: parses arguments, runs the command, reports errors.
//! No activation, PKI or verification decision is made here; the commands
//! live in `cmd/`, one file per noun.

mod args;
mod cmd;
mod hints;
mod input;
mod io;
mod outcome;
mod output;
mod qr;
mod report;
mod token_verify;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser};
use std::process::ExitCode;

/// The full command allocates with mimalloc: a bulk run's signing threads
/// allocate each token and the main thread frees it, which with glibc's
/// per-thread arenas takes the signing thread's arena lock (measured:
/// 10,000 tokens in 1.456 s against 1.484 s, medians of 14 alternating
/// runs; docs/benchmarks.md). The `tka` front, which verifies, keeps the
/// system allocator. aws-lc and SQLite still allocate with `malloc`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Print machine-readable JSON (docs/json.md): one document on standard output, on failure
    /// {"error", "kind", "hint"} with the same exit code
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    // The EXIT CODES sections are written into the command tree only when
    // clap is to show a help: the other paths (a verification at every
    // application start) skip that work.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `--json` before any `--`: also a usage error is reported as JSON.
    report::json_mode_from(&args);
    // `tka token verify` lines read without clap, as the `tka` front reads
    // them (front.rs): the same command either way.
    if let Some(code) = token_verify::run_line(&args) {
        return code;
    }
    let matches = match parse_tree(&args).try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e)
            if e.kind() == ErrorKind::DisplayHelp
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            outcome::with_exit_codes(with_environment(Cli::command())).get_matches_from(&args)
        }
        Err(e) if output::json_mode() && e.kind() != ErrorKind::DisplayVersion => return usage_error_json(&e),
        Err(e) => e.exit(),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) if output::json_mode() => return usage_error_json(&e),
        Err(e) => e.exit(),
    };
    if cli.json {
        output::set_json_mode();
    }
    report::finish(cmd::run(cli.command))
}

/// The ENVIRONMENT and EXAMPLES sections of `tka --help`: every variable
/// tka reads (tests/cli.rs checks the list against the source).
pub const ENVIRONMENT_HELP: &str = "ENVIRONMENT:
  TKA_HOME            issuer home, for every command that takes --home
  TKA_STORE           activation store, for every command that takes --store
  TKA_LEDGER_URL      issuer ledger (SQLite file or postgres:// URL), for --ledger
  TKA_PASSPHRASE      passphrase of the keys (else --passphrase-file, else a prompt)
  TKA_MACHINE_ID      this machine's explicit identity (containers), like --machine-id-file
  TKA_PKCS11_MODULE   PKCS#11 module for pkcs11: URIs that name none
  TKA_PKCS11_PIN      PIN of a PKCS#11 token (else pin-source= in the URI, else a prompt)
  TKA_ACTIVATION_KEY  product key for `tka activate --online` (else --key-file; never shown in ps)

EXAMPLES:
  tka issuer init --home ~/tka-issuer --org \"Example Corp\"
  tka request create --product example-pro --text --out request.txt
  tka token issue --request request.txt --home ~/tka-issuer --out token.jws
  tka trust add ~/tka-issuer/root.pem --yes
  tka activate token.jws
  tka status --json";

/// `cmd` with [`ENVIRONMENT_HELP`] after its help.
fn with_environment(cmd: clap::Command) -> clap::Command {
    cmd.after_help(ENVIRONMENT_HELP)
}

/// A command line clap refused, under `--json`: the error on standard
/// error as clap words it, and as JSON (kind `Usage`) on standard output;
/// exit 2.
fn usage_error_json(e: &clap::Error) -> ExitCode {
    let text = e.render().to_string();
    output::say_err(text.lines().next().unwrap_or(""));
    let first = text.lines().next().unwrap_or("").trim_start_matches("error: ");
    let hint = text.lines().find_map(|l| l.trim().strip_prefix("tip: "));
    output::say_json(&output::error_json(first, "Usage", hint));
    ExitCode::from(outcome::ERROR)
}

/// The command tree `args` are parsed with: for `tka token verify ...`
/// that subcommand alone, for other `tka token ...` the `token` noun alone,
/// the rest of the tree unbuilt (a token verification at every application
/// start does not pay for the other nouns and subcommands); the whole tree
/// otherwise. Both parse `token` command lines the same and
/// word their errors the same (`tests::token_subtree_parses_like_the_whole_tree`);
/// a help is always written from the whole tree (`main`).
fn parse_tree(args: &[std::ffi::OsString]) -> clap::Command {
    if args.get(1).is_some_and(|a| a == "token") {
        let token = clap::Command::new("token").subcommand_required(true).arg_required_else_help(true);
        let token = if args.get(2).is_some_and(|a| a == "verify") {
            // `tka token verify`, the command scripts run most: its own
            // arguments alone.
            token.subcommand(<cmd::token::VerifyArgs as clap::Args>::augment_args(clap::Command::new("verify")))
        } else {
            <cmd::token::TokenCmd as clap::Subcommand>::augment_subcommands(token)
        };
        clap::Command::new("tka")
            .version(env!("CARGO_PKG_VERSION"))
            .propagate_version(true)
            .subcommand_required(true)
            .arg_required_else_help(true)
            .arg(clap::Arg::new("json").long("json").global(true).action(clap::ArgAction::SetTrue))
            .subcommand(token)
    } else {
        Cli::command()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse_tree`'s token subtree gives what the whole tree gives: the
    /// same parsed command, or the same error kind and text.
    #[test]
    fn token_subtree_parses_like_the_whole_tree() {
        let lines: &[&[&str]] = &[
            &["token", "verify", "t.jws", "--trust", "root.pem", "--product", "p", "--machine", "current"],
            &[
                "token",
                "verify",
                "t.jws",
                "--trust",
                "r.pem",
                "--chain",
                "c.pem",
                "--json",
                "--at",
                "2027-01-01T00:00:00Z",
            ],
            &["token", "verify", "t.jws"],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--bogus"],
            &["token", "verfy", "t.jws"],
            &["token", "inspect", "t.jws", "--json"],
            &["--json", "token", "inspect", "t.jws"],
            &["token", "issue", "--request", "r.txt", "--home", "h", "--json"],
            &["token", "issue", "--request", "r.txt", "--home", "h", "--days", "30"],
            &["token", "issue-bulk", "--entitlement", "e", "--requests-file", "r", "--bundle", "b"],
            &["token", "renew-bulk", "--expiring-within", "30d", "--out", "d"],
            &["token", "renew-bulk", "--expiring-within", "soon", "--out", "d"],
            &["token", "--version"],
            &["token", "verify", "--version"],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--machine"],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--trust-any-anchr"],
            &[
                "token",
                "verify",
                "t.jws",
                "--trust",
                "r.pem",
                "--crl",
                "a.crl",
                "--crl",
                "b.crl",
                "--root-fingerprint",
                "x",
            ],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--machine-id-file", "id", "--at", "x", "extra"],
            &["token", "verify"],
        ];
        for line in lines {
            let args: Vec<std::ffi::OsString> =
                std::iter::once("tka").chain(line.iter().copied()).map(Into::into).collect();
            let full = Cli::command().try_get_matches_from(&args).map(|m| format!("{:?}", Cli::from_arg_matches(&m)));
            let sub = parse_tree(&args).try_get_matches_from(&args).map(|m| format!("{:?}", Cli::from_arg_matches(&m)));
            match (full, sub) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{line:?}"),
                (Err(a), Err(b)) => {
                    assert_eq!(a.kind(), b.kind(), "{line:?}");
                    assert_eq!(a.render().to_string(), b.render().to_string(), "{line:?}");
                }
                (a, b) => panic!("{line:?}: whole tree {a:?}, token subtree {b:?}"),
            }
        }
    }

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

    /// What clap makes of `args`: the verify command (its `json` is set by
    /// the global `--json` wherever it stands), or `None` for an error, a
    /// help or another command.
    fn clap_verify(args: &[std::ffi::OsString]) -> Option<token_verify::VerifyCommand> {
        let cli = Cli::try_parse_from(args).ok()?;
        match cli.command {
            cmd::Command::Token(cmd::token::TokenCmd::Verify(a)) => Some(a.into()),
            _ => None,
        }
    }

    /// `token_verify::parse_fast` reads a line only as clap reads it: the
    /// same command, and nothing where clap refuses the line, shows a help
    /// or finds another command. Hand-picked lines, then 20,000 lines drawn
    /// from the verify vocabulary and its traps (fixed seed).
    #[test]
    fn fast_path_reads_lines_as_clap_does() {
        let fp = "ab".repeat(32);
        let picked: &[&[&str]] = &[
            &["token", "verify", "t.jws", "--trust", "r.pem"],
            &["--json", "token", "verify", "t.jws", "--trust", "r.pem", "--machine", "current"],
            &["token", "--json", "verify", "--trust=r.pem", "t.jws", "--product", "p"],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--trust", "d", "--crl", "c", "--chain", "x"],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--root-fingerprint", &fp, "--quiet"],
            &[
                "token",
                "verify",
                "t.jws",
                "--trust",
                "r.pem",
                "--machine-id-file",
                "id",
                "--at",
                "2027-01-01T00:00:00Z",
            ],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--trust-any-anchor", "--json"],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--json", "--json"],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--product", "a", "--product", "b"],
            &["token", "verify", "-", "--trust", "r.pem"],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--help"],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--root-fingerprint", "zz"],
            &["token", "verify", "t.jws"],
            &["token", "verify", "--trust", "r.pem"],
            &["token", "verify", "t.jws", "u.jws", "--trust", "r.pem"],
            &["token", "verify", "t.jws", "--trust"],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--", "x"],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--quiet=yes"],
            &["token", "verify", "t.jws", "--trust", "r.pem", "--product="],
            &["token", "verfy", "t.jws", "--trust", "r.pem"],
            &["verify", "t.jws", "--trust", "r.pem"],
        ];
        let vocabulary: &[&str] = &[
            "token",
            "verify",
            "t.jws",
            "r.pem",
            "current",
            "p",
            "-",
            "--",
            "-x",
            "--json",
            "--trust",
            "--trust=r.pem",
            "--trust-any-anchor",
            "--product",
            "--product=p",
            "--machine",
            "--crl",
            "--chain",
            "--at",
            "--quiet",
            "--root-fingerprint",
            &fp,
            "--machine-id-file",
            "--help",
            "-h",
            "--version",
            "--bogus",
            "",
            "x=y",
        ];
        let mut lines: Vec<Vec<&str>> = picked.iter().map(|l| l.to_vec()).collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..20_000 {
            // Mostly well-formed starts, so that the fast path is tried.
            let mut line = vec!["token", "verify", "t.jws", "--trust", "r.pem"];
            line.truncate(next(6));
            for _ in 0..next(5) {
                let w = vocabulary[next(vocabulary.len())];
                line.insert(next(line.len() + 1), w);
            }
            lines.push(line);
        }
        let mut fast_read = 0;
        for line in &lines {
            let args: Vec<std::ffi::OsString> =
                std::iter::once("tka").chain(line.iter().copied()).map(Into::into).collect();
            if let Some(fast) = token_verify::parse_fast(&args) {
                assert_eq!(Some(fast), clap_verify(&args), "{line:?}");
                fast_read += 1;
            }
        }
        // The hand-picked well-formed lines and many drawn ones took the fast path.
        assert!(fast_read > 500, "{fast_read} lines read by the fast path");
        for line in &picked[..7] {
            let args: Vec<std::ffi::OsString> =
                std::iter::once("tka").chain(line.iter().copied()).map(Into::into).collect();
            assert!(token_verify::parse_fast(&args).is_some(), "{line:?}");
        }
    }
}
