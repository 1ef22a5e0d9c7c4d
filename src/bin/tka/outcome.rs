//! How a command ends: an exit code, or a failure `main` reports and turns
//! into one.
//!
//! Exit codes: 0 success; 1 a "no" verdict (a token, chain or list
//! refused, a request refused at issuance, or a refusal by policy the
//! command reports as a "no": entitlement exhausted, nothing to release,
//! already revoked); 2 usage, I/O or configuration errors.

use std::process::ExitCode;
use tka::Error;

/// A command's failure.
#[derive(Debug)]
pub enum Failure {
    /// An error: exit 2, or 1 for the library's "no" verdicts ([`Error::is_verdict`]).
    Error(Error),
    /// A refusal by policy the command answers with "no": exit 1.
    Refused(Error),
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

impl Failure {
    /// The error to report.
    pub fn error(&self) -> &Error {
        match self {
            Failure::Error(e) | Failure::Refused(e) => e,
        }
    }

    /// The exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Refused(_) => ExitCode::from(1),
            Failure::Error(e) if e.is_verdict() => ExitCode::from(1),
            Failure::Error(_) => ExitCode::from(2),
        }
    }
}

/// What a command returns.
pub type CmdResult = std::result::Result<ExitCode, Failure>;

/// For commands whose refusals by policy ([`Error::Refused`]) are a "no" verdict.
pub fn refusal_is_verdict<T>(r: tka::Result<T>) -> std::result::Result<T, Failure> {
    r.map_err(|e| match e {
        e @ Error::Refused(_) => Failure::Refused(e),
        e => Failure::Error(e),
    })
}
