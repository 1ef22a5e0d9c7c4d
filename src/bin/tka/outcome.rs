//! How a command ends: an exit code, or a failure `main` reports and turns
//! into one; and the `EXIT CODES` section of every command's help, written
//! from the same definition.
//!
//! One rule for every command: 0 success; 1 a "no" ([`NO`]): the thing the
//! command judges or asks for is refused (a token, chain or list refused, a
//! request refused at issuance, a refusal by policy: entitlement exhausted,
//! nothing to release, already revoked, a certificate that would outlive its
//! issuer); 2 ([`ERROR`]) the command could not run: bad arguments, missing
//! or unreadable files, I/O, configuration.

use std::process::ExitCode;
use tka::Error;

/// Exit code of a "no" verdict or a refusal by policy.
pub const NO: u8 = 1;
/// Exit code of a usage, input/output or configuration error.
pub const ERROR: u8 = 2;

/// What exit 2 means, the same for every command.
const ERROR_MEANS: &str = "usage, input/output or configuration error";
/// What exit 1 means for a command that names nothing more specific.
const NO_MEANS: &str = "a \"no\": refused by policy (e.g. a certificate would outlive its issuer)";

/// What 0 and 1 mean for each command, by its path (`""`: `tka` itself);
/// other commands: "success" and [`NO_MEANS`].
pub const MEANINGS: &[(&str, &str, &str)] = &[
    ("", "success", "a \"no\" verdict: the token is invalid, the product is not activated, a refusal by policy"),
    ("activate", "activated", "the token is refused, or (with --online) the service refused the activation"),
    (
        "agent once",
        "activated",
        "not activated yet (below the host's threshold), or refused (by the host, or the token)",
    ),
    (
        "agent run",
        "stopped by SIGTERM or SIGINT",
        "not used (host refusals and tokens that do not verify are logged and retried)",
    ),
    ("agent return", "returned (the local token removed)", "the host refused the return"),
    ("status", "every product shown is activated", "one is not"),
    ("deactivate", "deactivated", "the product is not activated"),
    ("token issue", "issued", "refused (e.g. the token would outlive its signer, the entitlement is exhausted)"),
    ("token issue-bulk", "every item issued", "some items refused (the rest issued)"),
    ("token renew-bulk", "every due token renewed", "some refused"),
    ("token verify", "valid", "invalid"),
    ("trust add", "trusted", "the certificate is refused as a root (not a root, wrong fingerprint, not vouched for)"),
    ("cert needs-renewal", "renew now", "not yet"),
    ("issuer rotate-signer", "rotated (or not due)", "refused (e.g. the signer would outlive its CA)"),
    ("issuer rotate-ca", "rotated (or not due)", "refused (e.g. the CA would outlive its root)"),
    ("issuer rotate-root", "rotated (or not due)", "refused (e.g. the CA would outlive the new root)"),
    ("issuer health", "nothing to do now (warnings may be shown)", "action needed"),
    ("issuer repair", "the home is whole", "problems remain that repair cannot fix (missing files)"),
    ("ca renew", "written", "refused (e.g. it would outlive its issuer)"),
    ("ca rekey", "written", "refused (e.g. it would outlive its issuer)"),
    ("ledger release", "released", "nothing to release (the machine holds no seat)"),
    ("ledger revoke", "revoked", "already revoked"),
    ("entitlement update", "updated", "refused (fewer machines than already counted)"),
    ("revocations import", "installed", "refused (untrusted, rollback, stale with --require-fresh)"),
    ("revocations list", "listed", "something is stale (with --require-fresh) or no longer verifies"),
];

/// The `EXIT CODES` section of the help of the command at `path`.
pub fn exit_codes_help(path: &str) -> String {
    let (ok, no) =
        MEANINGS.iter().find(|(p, ..)| *p == path).map(|(_, ok, no)| (*ok, *no)).unwrap_or(("success", NO_MEANS));
    format!("EXIT CODES:\n  0  {ok}\n  {NO}  {no}\n  {ERROR}  {ERROR_MEANS}")
}

/// `cmd` and every subcommand with its `EXIT CODES` section appended to
/// its help.
pub fn with_exit_codes(cmd: clap::Command) -> clap::Command {
    fn walk(cmd: clap::Command, path: &str) -> clap::Command {
        let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
        let cmd = names.into_iter().fold(cmd, |cmd, name| {
            let sub = if path.is_empty() { name.clone() } else { format!("{path} {name}") };
            cmd.mut_subcommand(&name, |c| walk(c, &sub))
        });
        let codes = exit_codes_help(path);
        let text = match cmd.get_after_help() {
            Some(h) => format!("{h}\n\n{codes}"),
            None => codes,
        };
        cmd.after_help(text)
    }
    walk(cmd, "")
}

/// Exit code [`NO`].
pub fn no() -> ExitCode {
    ExitCode::from(NO)
}

/// A command's failure.
#[derive(Debug)]
pub enum Failure {
    /// An error; its exit code follows the rule ([`exit_code_of`]).
    Error(Error),
    /// An error in what an argument names (e.g. a `--trust` certificate
    /// that is no root): exit [`ERROR`] whatever the error, since the
    /// command judged nothing.
    Usage(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

impl From<tka::VerifyError> for Failure {
    fn from(e: tka::VerifyError) -> Self {
        Failure::Error(e.into())
    }
}

/// The exit code of an error by the rule: [`NO`] for the library's "no"
/// verdicts ([`Error::is_verdict`]) and refusals by policy, else [`ERROR`].
pub fn exit_code_of(e: &Error) -> u8 {
    let refusal = matches!(
        e,
        Error::Refused(_)
            | Error::NothingToRelease { .. }
            | Error::WouldOutliveIssuer { .. }
            | Error::Agent(tka::AgentError::HostRefused { .. })
            | Error::Store(tka::store::StoreError::NoStore { .. })
            | Error::Agent(tka::AgentError::ServiceRefused { .. })
    );
    if e.is_verdict() || refusal {
        NO
    } else {
        ERROR
    }
}

impl Failure {
    /// The error to report.
    pub fn error(&self) -> &Error {
        match self {
            Failure::Error(e) | Failure::Usage(e) => e,
        }
    }

    /// The exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::Error(e) => exit_code_of(e),
            Failure::Usage(_) => ERROR,
        })
    }
}

/// What a command returns.
pub type CmdResult = std::result::Result<ExitCode, Failure>;
