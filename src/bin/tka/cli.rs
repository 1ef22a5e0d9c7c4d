//! Command-line definitions. Each flag is defined once here; help text and
//! usage come from these definitions.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub const EXIT_CODES: &str = "\
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
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate RSA private keys (PKCS#8, encrypted by default)
    #[command(subcommand)]
    Key(KeyCmd),
    /// Create root, issuing-CA and token-signer certificates
    #[command(subcommand)]
    Ca(CaCmd),
    /// Set up and manage an issuer home (PKI + configuration in one directory)
    #[command(subcommand)]
    Issuer(IssuerCmd),
    /// Show this machine's identity
    #[command(subcommand)]
    Machine(MachineCmd),
    /// Create activation requests on the machine to activate
    #[command(subcommand)]
    Request(RequestCmd),
    /// Issue, inspect and verify activation tokens
    #[command(subcommand)]
    Token(TokenCmd),
    /// Manage the roots this machine trusts
    #[command(subcommand)]
    Trust(TrustCmd),
    /// Verify a token for this machine and install it
    #[command(
        after_help = "EXAMPLES:\n  tka activate token.jws\n  tka --store /var/lib/tka activate - < token.jws\n\nEXIT CODES:\n  0 activated, 1 token refused, 2 error"
    )]
    Activate {
        /// Token file, `-` for standard input, or the token text itself
        token: String,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        machine: MachineArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Show whether products are activated here (re-verifies installed tokens)
    #[command(after_help = "EXIT CODES:\n  0 every product shown is activated, 1 one is not, 2 error")]
    Status {
        /// Only this product
        #[arg(long)]
        product: Option<String>,
        /// Evaluate at this time (RFC 3339) instead of now; read-only
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        machine: MachineArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// List installed tokens without verifying them
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Remove the installed token for a product
    Deactivate {
        /// The product
        #[arg(long)]
        product: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub struct JsonArg {
    /// Print machine-readable JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Activation store directory [default: /var/lib/tka as root, else ~/.local/share/tka]
    #[arg(long, env = "TKA_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct MachineArgs {
    /// Use the identity in this file instead of hardware (containers); also TKA_MACHINE_ID
    #[arg(long, value_name = "PATH")]
    pub machine_id_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct PassArgs {
    /// Read the key passphrase from the first line of FILE (else TKA_PASSPHRASE, else a prompt)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Accept a private key file that group or others can read
    #[arg(long)]
    pub insecure_key_permissions: bool,
}

#[derive(Args, Debug, Clone)]
pub struct NewKeyPassArgs {
    /// Read the passphrase for new keys from the first line of FILE (else TKA_PASSPHRASE, else a prompt)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Write private keys unencrypted (insecure: anyone who copies the file can sign)
    #[arg(long)]
    pub insecure_no_passphrase: bool,
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Generate an RSA key pair and write the private key (mode 0600)
    #[command(
        after_help = "EXAMPLES:\n  tka key generate --bits 4096 --out root.key --passphrase-file pass.txt\n  TKA_PASSPHRASE=... tka key generate --out signer.key\n\nEXIT CODES:\n  0 written, 2 error (including an existing --out without --force)"
    )]
    Generate {
        /// Key size
        #[arg(long, default_value_t = 3072, value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["2048", "3072", "4096"]), |s| s.parse::<usize>().unwrap()))]
        bits: usize,
        /// Output file
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        pass: NewKeyPassArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub struct CertOut {
    /// Subject, RFC 4514 (e.g. "CN=Example Root CA,O=Example")
    #[arg(long)]
    pub subject: String,
    /// Lifetime in days
    #[arg(long)]
    pub days: Option<i64>,
    /// Output certificate (PEM)
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing file
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Create a self-signed root CA certificate [default 7300 days]
    #[command(
        after_help = "EXAMPLE:\n  tka ca root --key root.key --subject \"CN=Example Root CA,O=Example\" --out root.pem"
    )]
    Root {
        /// The root's private key
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        cert: CertOut,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Create an issuing CA certificate signed by a CA [default 1825 days]
    #[command(
        after_help = "EXAMPLE:\n  tka ca intermediate --ca-cert root.pem --ca-key root.key --key ca.key --subject \"CN=Example Issuing CA\" --out ca.pem"
    )]
    Intermediate {
        /// Certificate of the signing CA
        #[arg(long)]
        ca_cert: PathBuf,
        /// Key of the signing CA
        #[arg(long)]
        ca_key: PathBuf,
        /// The new CA's private key (its public half goes in the certificate)
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        cert: CertOut,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Create a token-signer certificate (leaf, tka token-signing EKU) [default 400 days]
    #[command(
        after_help = "EXAMPLE:\n  tka ca signer --ca-cert ca.pem --ca-key ca.key --key signer.key --subject \"CN=Example Token Signer\" --out signer.pem"
    )]
    Signer {
        /// Certificate of the signing CA
        #[arg(long)]
        ca_cert: PathBuf,
        /// Key of the signing CA
        #[arg(long)]
        ca_key: PathBuf,
        /// The signer's private key
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        cert: CertOut,
        #[command(flatten)]
        pass: PassArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum IssuerCmd {
    /// Create root, issuing CA, signer and configuration in DIR in one step
    #[command(
        after_help = "Prints `root: PATH`, the certificate every machine must trust.\n\nEXAMPLE:\n  TKA_PASSPHRASE=... tka issuer init --home ~/tka-issuer --org \"Example Corp\""
    )]
    Init {
        /// Issuer home directory (must not exist or be empty)
        #[arg(long, env = "TKA_HOME")]
        home: PathBuf,
        /// Organisation name for the certificate subjects
        #[arg(long, default_value = "tka")]
        org: String,
        /// Root key size
        #[arg(long, default_value_t = 4096)]
        root_bits: usize,
        /// Issuing CA key size
        #[arg(long, default_value_t = 3072)]
        ca_bits: usize,
        /// Signer key size
        #[arg(long, default_value_t = 2048)]
        signer_bits: usize,
        #[command(flatten)]
        pass: NewKeyPassArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum MachineCmd {
    /// Print this machine's CMID and hashed identity components
    Id {
        /// Product the hashes are scoped to
        #[arg(long, default_value = "default")]
        product: String,
        /// Show which sources were found and why others were not
        #[arg(long)]
        explain: bool,
        /// With --explain, also print raw identifier values (stays on this machine)
        #[arg(long, requires = "explain")]
        show_values: bool,
        #[command(flatten)]
        machine: MachineArgs,
        #[command(flatten)]
        out: JsonArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum RequestCmd {
    /// Create an activation request for this machine
    #[command(
        after_help = "EXAMPLES:\n  tka request create --product example-pro --out req.json\n  tka request create --product example-pro --text"
    )]
    Create {
        /// Product to activate
        #[arg(long)]
        product: String,
        /// Write the request to FILE (JSON, or text with --text)
        #[arg(long)]
        out: Option<PathBuf>,
        /// One-line text form (for copy-paste and QR codes)
        #[arg(long)]
        text: bool,
        /// Include this host name in the request
        #[arg(long)]
        hostname: Option<String>,
        /// Replace an existing --out file
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        machine: MachineArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Issue a token for an activation request
    #[command(
        after_help = "EXAMPLES:\n  tka token issue --request req.json --home ~/tka-issuer --out token.jws\n  tka token issue --request req.txt --signer-cert signer.pem --signer-key signer.key --chain ca.pem --days 365\n\nEXIT CODES:\n  0 issued, 1 refused (e.g. the token would outlive its signer), 2 error"
    )]
    Issue {
        /// Request file (JSON or text form), or `-` for standard input
        #[arg(long)]
        request: String,
        /// Issuer home (from `tka issuer init`)
        #[arg(long, env = "TKA_HOME", conflicts_with_all = ["signer_cert", "signer_key"])]
        home: Option<PathBuf>,
        /// Signer certificate (PEM)
        #[arg(long, requires = "signer_key")]
        signer_cert: Option<PathBuf>,
        /// Signer private key
        #[arg(long, requires = "signer_cert")]
        signer_key: Option<PathBuf>,
        /// Intermediate certificates to include after the signer (PEM)
        #[arg(long)]
        chain: Option<PathBuf>,
        /// Token lifetime in days [default: 180, or the home's setting]
        #[arg(long, conflicts_with = "perpetual")]
        days: Option<u32>,
        /// No expiry: valid as long as the signer certificate chain is
        #[arg(long)]
        perpetual: bool,
        /// Licensed features, comma-separated
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Edition name
        #[arg(long)]
        edition: Option<String>,
        /// Machine match rule: all, most, or a number of components [default: most]
        #[arg(long = "match")]
        match_rule: Option<String>,
        /// Days after expiry during which the token still works (reported as grace)
        #[arg(long, default_value_t = 0)]
        grace_days: u32,
        /// Signature algorithm
        #[arg(long, default_value = "PS256", value_parser = ["PS256", "RS256"])]
        alg: String,
        /// Output file [default: standard output]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing --out file
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Decode a token and show its header and claims (no trust decision)
    Inspect {
        /// Token file, `-` for standard input, or the token text
        token: String,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Verify a token against trusted roots
    #[command(
        after_help = "EXAMPLES:\n  tka token verify token.jws --trust root.pem --product example-pro\n  tka token verify token.jws --trust roots/ --machine ABCD-EFGH-JKMN-PQRS-T --at 2027-01-01T00:00:00Z\n\nEXIT CODES:\n  0 valid, 1 invalid, 2 error"
    )]
    Verify {
        /// Token file, `-` for standard input, or the token text
        token: String,
        /// Trusted root certificate(s): a PEM file or a directory of them
        #[arg(long, required = true)]
        trust: Vec<PathBuf>,
        /// Expected product
        #[arg(long)]
        product: Option<String>,
        /// Check the machine binding: `current` (this machine) or a CMID
        #[arg(long)]
        machine: Option<String>,
        /// CRL files to consult (PEM or DER)
        #[arg(long)]
        crl: Vec<PathBuf>,
        /// Verify at this time (RFC 3339) instead of now
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        machine_args: MachineArgs,
        #[command(flatten)]
        out: JsonArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum TrustCmd {
    /// Trust a root certificate on this machine
    #[command(after_help = "EXAMPLE:\n  tka trust add root.pem --fingerprint 3f2a...e9")]
    Add {
        /// Root certificate (PEM or DER)
        root: PathBuf,
        /// Refuse unless the root's SHA-256 fingerprint is this (hex, colons allowed)
        #[arg(long)]
        fingerprint: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List trusted roots
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Stop trusting a root (by fingerprint or a unique prefix of it)
    Remove {
        /// Fingerprint
        fingerprint: String,
        /// Allow removing the last trusted root
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}
