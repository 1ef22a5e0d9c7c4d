//! The commands, one file per top-level noun: each holds that noun's
//! arguments (clap) and its handlers. Handlers parse, call the library and
//! print; they return errors and exit codes, and `main` reports them.

pub mod activation;
pub mod agent;
pub mod ca;
pub mod cert;
pub mod crl;
pub mod entitlement;
pub mod host;
pub mod install;
pub mod issuer;
pub mod key;
pub mod ledger;
pub mod machine;
pub mod pkcs11;
pub mod request;
pub mod revocations;
pub mod serve;
pub mod token;
pub mod trust;

use crate::outcome::CmdResult;
use clap::Subcommand;

// Parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate RSA private keys (PKCS#8 files, encrypted by default, or on a PKCS#11 token)
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// PKCS#11 tokens (smart cards, HSMs): list slots, tokens and keys to write pkcs11: URIs
    #[command(subcommand)]
    Pkcs11(pkcs11::Pkcs11Cmd),
    /// Create root, issuing-CA and token-signer certificates
    #[command(subcommand)]
    Ca(ca::CaCmd),
    /// Set up and manage an issuer home (PKI + configuration in one directory)
    #[command(subcommand)]
    Issuer(issuer::IssuerCmd),
    /// Show this machine's identity
    #[command(subcommand)]
    Machine(machine::MachineCmd),
    /// Create activation requests on the machine to activate
    #[command(subcommand)]
    Request(request::RequestCmd),
    /// Issue, inspect and verify activation tokens
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Manage the roots this machine trusts
    #[command(subcommand)]
    Trust(trust::TrustCmd),
    /// Inspect certificates and decide when to renew them
    #[command(subcommand)]
    Cert(cert::CertCmd),
    /// Create X.509 certificate revocation lists (CRLs)
    #[command(subcommand)]
    Crl(crl::CrlCmd),
    /// Create token revocation lists; import revocation data on a machine
    #[command(subcommand)]
    Revocations(revocations::RevocationsCmd),
    /// Activation hosts: a host's key and request, its delegated signer certificate, its installation
    #[command(subcommand)]
    Host(host::HostCmd),
    /// Serve online activation with product keys from an issuer home (POST /v1/activate)
    #[command(after_help = serve::SERVE_HELP)]
    Serve(serve::ServeArgs),
    /// Counted entitlements in the issuer ledger (machines a product may activate)
    #[command(subcommand)]
    Entitlement(entitlement::EntitlementCmd),
    /// The issuer ledger: issued tokens, releases, revocations
    #[command(subcommand)]
    Ledger(ledger::LedgerCmd),
    /// The activation agent: get and renew tokens from an activation host on the LAN
    #[command(subcommand)]
    Agent(agent::AgentCmd),
    /// Verify a token for this machine and install it
    #[command(
        after_help = "EXAMPLES:\n  tka activate token.jws\n  tka activate --store /var/lib/tka - < token.jws\n  tka activate --bundle tokens.jsonl --product example-pro\n  tka activate compact.jws --chain chain.pem"
    )]
    Activate(activation::ActivateArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell)
    #[command(
        after_help = "EXAMPLES:\n  tka completions bash > tka.bash\n  tka completions zsh > _tka\n  tka completions fish > tka.fish"
    )]
    Completions {
        /// The shell
        #[arg(value_parser = install::shell_parser, value_name = "bash|zsh|fish|powershell")]
        shell: clap_complete::Shell,
    },
    /// Print the man page tka(1) (roff)
    #[command(after_help = "EXAMPLES:\n  tka man > tka.1")]
    Man,
    /// Show whether products are activated here (re-verifies installed tokens)
    #[command(after_help = "EXAMPLES:\n  tka status\n  tka status --product example-pro --json")]
    Status(activation::StatusArgs),
    /// List installed tokens without verifying them (`--json` labels what the token itself claims
    /// `unverified_`; `tka status` verifies)
    #[command(after_help = "EXAMPLES:\n  tka list\n  tka list --json")]
    List(activation::ListArgs),
    /// Remove the installed token for a product
    #[command(after_help = "EXAMPLES:\n  tka deactivate --product example-pro")]
    Deactivate(activation::DeactivateArgs),
}

/// Runs one command.
pub fn run(cmd: Command) -> CmdResult {
    match cmd {
        Command::Key(c) => Ok(key::run(c)?),
        Command::Pkcs11(c) => Ok(pkcs11::run(c)?),
        Command::Ca(c) => Ok(ca::run(c)?),
        Command::Issuer(c) => Ok(issuer::run(c)?),
        Command::Machine(c) => Ok(machine::run(c)?),
        Command::Request(c) => Ok(request::run(c)?),
        Command::Token(c) => token::run(c),
        Command::Trust(c) => Ok(trust::run(c)?),
        Command::Cert(c) => Ok(cert::run(c)?),
        Command::Crl(c) => Ok(crl::run(c)?),
        Command::Revocations(c) => Ok(revocations::run(c)?),
        Command::Host(c) => Ok(host::run(c)?),
        Command::Serve(a) => Ok(serve::run(a)?),
        Command::Entitlement(c) => entitlement::run(c),
        Command::Ledger(c) => ledger::run(c),
        Command::Agent(c) => Ok(agent::run(c)?),
        Command::Completions { shell } => Ok(install::completions(shell)?),
        Command::Man => Ok(install::man()?),
        Command::Activate(a) => Ok(activation::activate(a)?),
        Command::Status(a) => Ok(activation::status(a)?),
        Command::List(a) => Ok(activation::list(a)?),
        Command::Deactivate(a) => Ok(activation::deactivate(a)?),
    }
}
