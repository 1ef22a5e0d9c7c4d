//! Argument groups several commands share. Each is defined once here, used
//! with `#[command(flatten)]`, and has one conversion to what the library
//! takes.

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use tka::issuer::issue::{IssueOptions, TokenLifetime};
use tka::issuer::IssuerHome;
use tka::keys::SignatureAlgorithm;
use tka::ledger::{self, Ledger, LedgerLocation};
use tka::{clock, Error, Result};

/// `--json`.
#[derive(Args, Debug, Clone)]
pub struct JsonArg {
    /// Print machine-readable JSON
    #[arg(long)]
    pub json: bool,
}

/// The activation store (machine side); opened by [`crate::io::open_store`].
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Activation store directory [default: /var/lib/tka as root, else ~/.local/share/tka]
    #[arg(long, env = "TKA_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
}

/// Root pins for verification.
#[derive(Args, Debug, Clone)]
pub struct RootPinArgs {
    /// Accept only tokens whose chain ends at the root with this SHA-256 fingerprint (hex, colons
    /// allowed; repeatable), whatever else the store trusts
    #[arg(long = "root-fingerprint", value_name = "SHA256", value_parser = tka::pki::RootFingerprint::parse)]
    pub root_fingerprints: Vec<tka::pki::RootFingerprint>,
}

/// Where this machine's identity comes from; read by [`crate::io::identify`].
#[derive(Args, Debug, Clone)]
pub struct MachineArgs {
    /// Use the identity in this file instead of hardware (containers); also TKA_MACHINE_ID
    #[arg(long, value_name = "PATH")]
    pub machine_id_file: Option<PathBuf>,
    /// Do not warn that in a container without an explicit identity the binding is to the host
    /// (shown once per store otherwise)
    #[arg(long)]
    pub quiet: bool,
}

/// Key unlock: what opens existing keys (files and PKCS#11 tokens); turned
/// into a [`crate::io::LazyPass`] by `LazyPass::new`.
#[derive(Args, Debug, Clone)]
pub struct PassArgs {
    /// Read the key passphrase from the first line of FILE (else TKA_PASSPHRASE, else a prompt)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Accept a private key, passphrase or PIN file that group or others can read
    #[arg(long)]
    pub insecure_key_permissions: bool,
    /// Load a PKCS#11 module-path that tka-issuer.json names outside the PKCS#11 module directories
    #[arg(long)]
    pub allow_config_module_path: bool,
}

/// The protection of new keys; settled by [`crate::io::new_key_passphrase`].
#[derive(Args, Debug, Clone)]
pub struct NewKeyPassArgs {
    /// Read the passphrase for new keys from the first line of FILE (else TKA_PASSPHRASE, else a prompt)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Write private keys unencrypted (insecure: anyone who copies the file can sign)
    #[arg(long)]
    pub insecure_no_passphrase: bool,
    /// Accept a passphrase or PIN file that group or others can read
    #[arg(long)]
    pub insecure_key_permissions: bool,
}

/// An existing issuer home.
#[derive(Args, Debug, Clone)]
pub struct HomeArg {
    /// Issuer home
    #[arg(long, env = "TKA_HOME")]
    pub home: PathBuf,
}

impl HomeArg {
    /// Opens the home.
    pub fn open(&self) -> Result<IssuerHome> {
        IssuerHome::open(&self.home)
    }
}

/// `--ledger PATH|URL` (or `TKA_LEDGER_URL`): an SQLite file, or a
/// PostgreSQL database. With `--home`, it replaces HOME/ledger.sqlite while
/// the home still provides the signer.
#[derive(Args, Debug, Clone)]
pub struct LedgerLocationArg {
    /// Ledger: an SQLite file, or a PostgreSQL database postgres://USER[:PASSWORD]@HOST[:PORT]/DB
    /// (also TKA_LEDGER_URL) [default: HOME/ledger.sqlite]
    #[arg(long = "ledger", env = "TKA_LEDGER_URL", value_name = "PATH|URL")]
    pub ledger: Option<String>,
}

impl LedgerLocationArg {
    /// Where the ledger is: `--ledger`, else the home's file.
    pub fn location(&self, home: Option<&std::path::Path>) -> Option<LedgerLocation> {
        match (&self.ledger, home) {
            (Some(l), _) => Some(LedgerLocation::parse(l)),
            (None, Some(h)) => Some(LedgerLocation::File(ledger::default_path(h))),
            (None, None) => None,
        }
    }
}

/// The issuer ledger: `--home` (its `ledger.sqlite`) or `--ledger PATH|URL`.
#[derive(Args, Debug, Clone)]
pub struct LedgerArgs {
    /// Issuer home; the ledger is HOME/ledger.sqlite unless --ledger says otherwise
    #[arg(long, env = "TKA_HOME")]
    pub home: Option<PathBuf>,
    #[command(flatten)]
    pub location: LedgerLocationArg,
    /// Seconds to wait for another process holding the ledger
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub lock_timeout: u64,
}

impl LedgerArgs {
    /// Opens the ledger (creating it when `create`), waiting `--lock-timeout` for other writers.
    pub fn open(&self, create: bool) -> Result<Ledger> {
        let Some(location) = self.location.location(self.home.as_deref()) else {
            return Err(Error::Usage(
                "no ledger: give --home DIR (or TKA_HOME) or --ledger PATH|URL (or TKA_LEDGER_URL)".into(),
            ));
        };
        let mut l = Ledger::open_location(&location, create)?;
        l.set_busy_timeout(Duration::from_secs(self.lock_timeout))?;
        Ok(l)
    }
}

/// How long to wait for another command holding an issuer home.
#[derive(Args, Debug, Clone)]
pub struct LockWaitArg {
    /// Wait at most this long for another tka command holding the home (e.g. 30s, 5m)
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub lock_wait: String,
}

impl LockWaitArg {
    /// The wait.
    pub fn duration(&self) -> Result<Duration> {
        let secs = clock::parse_duration(&self.lock_wait).map_err(Error::Usage)?;
        u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| Error::Usage("--lock-wait must not be negative".into()))
    }
}

/// A certificate's lifetime in days. Each command states its default
/// (`mut_arg("days", ...)`).
#[derive(Args, Debug, Clone)]
pub struct CertDaysArg {
    /// Lifetime in days
    #[arg(long)]
    pub days: Option<i64>,
}

impl CertDaysArg {
    /// `--days`, or `default`; at least one day.
    pub fn days_or(&self, default: i64) -> Result<i64> {
        let days = self.days.unwrap_or(default);
        if days < 1 {
            return Err(Error::Usage("--days must be at least 1".into()));
        }
        Ok(days)
    }
}

/// The CA that signs a new certificate (`ca intermediate`, `ca signer`,
/// `ca renew`, `ca rekey`).
#[derive(Args, Debug, Clone)]
pub struct SigningCaArgs {
    /// Certificate of the signing CA
    #[arg(long)]
    pub ca_cert: PathBuf,
    /// Key of the signing CA (file or pkcs11: URI)
    #[arg(long)]
    pub ca_key: PathBuf,
}

/// Re-issuing a certificate under its CA (`ca renew`, `ca rekey`).
/// Each command states what `--cert` is (`mut_arg("cert", ...)`).
#[derive(Args, Debug, Clone)]
pub struct ReissueArgs {
    /// The certificate
    #[arg(long)]
    pub cert: PathBuf,
    #[command(flatten)]
    pub ca: SigningCaArgs,
    #[command(flatten)]
    pub days: CertDaysArg,
    /// Accept a certificate that would end after the CA: it ends with the CA instead
    /// (without it such a certificate is refused)
    #[arg(long)]
    pub shorten: bool,
    /// Output certificate (PEM); `-` for standard output
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing file
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub pass: PassArgs,
}

/// A token lifetime given on the command line: DURATION (`90m`, `12h`,
/// `180d`, `2w`, `3600s`) as seconds. Below the library's minimum it is
/// refused by the library, with its own message.
pub(crate) fn token_duration(s: &str) -> std::result::Result<u64, String> {
    let secs = clock::parse_duration(s)?;
    u64::try_from(secs).map_err(|_| format!("invalid duration {s:?}: must not be negative"))
}

/// Token lifetime: `--days`, `--valid-for` or `--perpetual`.
#[derive(Args, Debug, Clone)]
pub struct LifetimeArgs {
    /// Token lifetime in days [default: the home's setting, else 180]
    #[arg(long, conflicts_with = "perpetual")]
    pub days: Option<u32>,
    /// Token lifetime as a duration: 90m, 12h, 180d, 2w, 3600s (at least a minute)
    #[arg(long, value_name = "DURATION", value_parser = token_duration, conflicts_with_all = ["days", "perpetual"])]
    pub valid_for: Option<u64>,
    /// No expiry: valid as long as the signer certificate chain is
    #[arg(long)]
    pub perpetual: bool,
}

impl LifetimeArgs {
    /// The lifetime asked for, if one was.
    pub fn given(&self) -> Option<TokenLifetime> {
        match (self.perpetual, self.valid_for, self.days) {
            (true, _, _) => Some(TokenLifetime::Perpetual),
            (false, Some(secs), _) => Some(TokenLifetime::Seconds(secs)),
            (false, None, Some(days)) => Some(TokenLifetime::Days(days)),
            (false, None, None) => None,
        }
    }

    /// The lifetime asked for, else `default_days`.
    pub fn or_days(&self, default_days: u32) -> TokenLifetime {
        self.given().unwrap_or(TokenLifetime::Days(default_days))
    }
}

/// `--alg`.
#[derive(Args, Debug, Clone)]
pub struct AlgArg {
    /// Signature algorithm
    #[arg(long, default_value = "PS256", value_parser = ["PS256", "RS256"])]
    pub alg: String,
}

impl AlgArg {
    /// The algorithm.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::from_jws_name(&self.alg).expect("clap restricts --alg")
    }
}

/// What a new token claims beyond the request: features, edition, match
/// rule, binding strength, grace and renewal time.
#[derive(Args, Debug, Clone)]
pub struct ClaimArgs {
    /// Licensed features, comma-separated [default with an entitlement: the entitlement's]
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Edition name
    #[arg(long)]
    pub edition: Option<String>,
    /// Machine match rule: all, most, or a number of components [default: most]
    #[arg(long = "match")]
    pub match_rule: Option<String>,
    /// Sign even a weak binding (no hardware anchor, no explicit identity), which a disk copy passes; the token records it
    #[arg(long)]
    pub allow_weak_binding: bool,
    /// Days after expiry during which the token still works (reported as grace)
    #[arg(long, default_value_t = 0)]
    pub grace_days: u32,
    /// Time after expiry during which the token still works, as a duration: 90m, 12h, 7d
    #[arg(long, value_name = "DURATION", value_parser = token_duration, conflicts_with = "grace_days")]
    pub grace: Option<u64>,
    /// When the machine should ask for a renewal, as a duration after issuance: 12h, 120d
    /// [default: two thirds of the lifetime]
    #[arg(long, value_name = "DURATION", value_parser = token_duration)]
    pub renew_after: Option<u64>,
    /// Issue to a machine whose token in the same entitlement was revoked (refused otherwise)
    #[arg(long)]
    pub allow_revoked_machine: bool,
}

impl ClaimArgs {
    /// The library's issue options for these claims, `lifetime` and `alg`.
    pub fn issue_options(self, lifetime: TokenLifetime, alg: &AlgArg) -> Result<IssueOptions> {
        Ok(IssueOptions {
            lifetime,
            features: self.features.into_iter().filter(|f| !f.is_empty()).collect(),
            edition: self.edition,
            entitlement: None,
            match_rule: self.match_rule.map(|m| m.parse()).transpose()?,
            grace_secs: self.grace.unwrap_or(u64::from(self.grace_days) * 86_400),
            renew_after_secs: self.renew_after,
            alg: alg.algorithm(),
            serial: None,
            allow_weak_binding: self.allow_weak_binding,
            compact: false,
            allow_revoked_machine: self.allow_revoked_machine,
        })
    }
}
