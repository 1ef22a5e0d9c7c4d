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
    /// Generate RSA private keys (PKCS#8 files, encrypted by default, or on a PKCS#11 token)
    #[command(subcommand)]
    Key(KeyCmd),
    /// PKCS#11 tokens (smart cards, HSMs): list slots, tokens and keys to write pkcs11: URIs
    #[command(subcommand)]
    Pkcs11(Pkcs11Cmd),
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
    /// Inspect certificates and decide when to renew them
    #[command(subcommand)]
    Cert(CertCmd),
    /// Create X.509 certificate revocation lists (CRLs)
    #[command(subcommand)]
    Crl(CrlCmd),
    /// Create token revocation lists; import revocation data on a machine
    #[command(subcommand)]
    Revocations(RevocationsCmd),
    /// Counted entitlements in the issuer ledger (machines a product may activate)
    #[command(subcommand)]
    Entitlement(EntitlementCmd),
    /// The issuer ledger: issued tokens, releases, revocations
    #[command(subcommand)]
    Ledger(LedgerCmd),
    /// Verify a token for this machine and install it
    #[command(
        after_help = "EXAMPLES:\n  tka activate token.jws\n  tka --store /var/lib/tka activate - < token.jws\n  tka activate --bundle tokens.jsonl --product acme-cad\n\nEXIT CODES:\n  0 activated, 1 token refused, 2 error"
    )]
    Activate {
        /// Token file, `-` for standard input, or the token text itself
        #[arg(required_unless_present = "bundle")]
        token: Option<String>,
        /// Take this machine's token from a bundle written by `token issue-bulk --bundle`: every
        /// line labelled for this machine is verified, the first that verifies is installed
        #[arg(long, value_name = "FILE", conflicts_with = "token")]
        bundle: Option<PathBuf>,
        /// With --bundle: only a token for this product (lines for others are skipped unchecked)
        #[arg(long, requires = "bundle", conflicts_with = "token")]
        product: Option<String>,
        /// Refuse as "clock moved backwards" when the clock is more than this far behind the latest
        /// time the store has seen (e.g. 12h); at most 1d
        #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = clock_tolerance)]
        clock_tolerance: i64,
        #[command(flatten)]
        pins: RootPinArgs,
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
        /// Evaluate at this time (RFC 3339) instead of now; read-only. A time before the latest the
        /// store has seen is reported as "clock moved backwards"
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        pins: RootPinArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        machine: MachineArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// List installed tokens without verifying them (`--json` labels what the token itself claims
    /// `unverified_`; `tka status` verifies)
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
pub struct RootPinArgs {
    /// Accept only tokens whose chain ends at the root with this SHA-256 fingerprint (hex, colons
    /// allowed; repeatable), whatever else the store trusts
    #[arg(long = "root-fingerprint", value_name = "SHA256", value_parser = tka::pki::RootFingerprint::parse)]
    pub root_fingerprints: Vec<tka::pki::RootFingerprint>,
}

/// `--clock-tolerance`: a duration within the library's limit.
fn clock_tolerance(s: &str) -> Result<i64, String> {
    tka::activation::check_clock_tolerance(tka::clock::parse_duration(s)?).map_err(|e| e.to_string())
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
    /// Accept a private key, passphrase or PIN file that group or others can read
    #[arg(long)]
    pub insecure_key_permissions: bool,
    /// Load a PKCS#11 module-path that tka-issuer.json names outside the PKCS#11 module directories
    #[arg(long)]
    pub allow_config_module_path: bool,
}

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

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Generate an RSA key pair and write the private key (mode 0600), or generate it on a PKCS#11 token
    #[command(
        after_help = "With --out pkcs11:token=T;object=LABEL?module-path=M.so the key pair is generated on the token \
(private key sensitive and not extractable); the new key's URI is printed. The user PIN comes from the URI's \
pin-source=file:PATH, TKA_PKCS11_PIN, or a prompt.\n\nEXAMPLES:\n  tka key generate --bits 4096 --out root.key --passphrase-file pass.txt\n  TKA_PASSPHRASE=... tka key generate --out signer.key\n  tka key generate --bits 4096 --out 'pkcs11:token=ca;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:pin.txt'\n\nEXIT CODES:\n  0 written, 2 error (including an existing --out without --force, or an existing label on the token)"
    )]
    Generate {
        /// Key size
        #[arg(long, default_value_t = 3072, value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["2048", "3072", "4096"]), |s| s.parse::<usize>().unwrap()))]
        bits: usize,
        /// Output file, or a pkcs11: URI naming the token and the new key's label (object=)
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file (never a key on a token)
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        pass: NewKeyPassArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum Pkcs11Cmd {
    /// Show the slots, tokens, keys and certificates a PKCS#11 module offers, with their URIs
    #[command(
        after_help = "Private keys are listed only with --login (PIN from TKA_PKCS11_PIN, --pin-file or a prompt).\n\nEXAMPLE:\n  tka pkcs11 list --module /usr/lib/softhsm/libsofthsm2.so --login\n\nEXIT CODES:\n  0 listed, 2 error (missing module, wrong PIN)"
    )]
    List {
        /// The PKCS#11 module (shared library)
        #[arg(long, env = "TKA_PKCS11_MODULE")]
        module: PathBuf,
        /// Log in to list private keys too
        #[arg(long)]
        login: bool,
        /// Read the user PIN from the first line of FILE (else TKA_PKCS11_PIN, else a prompt)
        #[arg(long, value_name = "FILE")]
        pin_file: Option<PathBuf>,
        /// Accept a PIN file that group or others can read
        #[arg(long)]
        insecure_key_permissions: bool,
        #[command(flatten)]
        out: JsonArg,
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
        /// The root's private key (file or pkcs11: URI)
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
        /// Key of the signing CA (file or pkcs11: URI)
        #[arg(long)]
        ca_key: PathBuf,
        /// The new CA's private key, file or pkcs11: URI (its public half goes in the certificate)
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        cert: CertOut,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Re-issue an issuing-CA or signer certificate with the same key: new validity, new serial
    #[command(
        after_help = "EXAMPLE:\n  tka ca renew --cert signer.pem --ca-cert ca.pem --ca-key ca.key --out signer-new.pem\n\nEXIT CODES:\n  0 written, 1 refused (e.g. it would outlive its issuer), 2 error"
    )]
    Renew {
        /// The certificate to renew
        #[arg(long)]
        cert: PathBuf,
        /// Certificate of the signing CA
        #[arg(long)]
        ca_cert: PathBuf,
        /// Key of the signing CA (file or pkcs11: URI)
        #[arg(long)]
        ca_key: PathBuf,
        /// Lifetime in days [default: the old certificate's, capped at the CA's expiry]
        #[arg(long)]
        days: Option<i64>,
        /// Output certificate (PEM)
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Re-issue an issuing-CA or signer certificate for a new key (same subject and profile)
    #[command(
        after_help = "EXAMPLE:\n  tka key generate --bits 2048 --out signer2.key\n  tka ca rekey --cert signer.pem --key signer2.key --ca-cert ca.pem --ca-key ca.key --out signer2.pem"
    )]
    Rekey {
        /// The certificate to replace
        #[arg(long)]
        cert: PathBuf,
        /// The new private key, file or pkcs11: URI (its public half goes in the certificate)
        #[arg(long)]
        key: PathBuf,
        /// Certificate of the signing CA
        #[arg(long)]
        ca_cert: PathBuf,
        /// Key of the signing CA (file or pkcs11: URI)
        #[arg(long)]
        ca_key: PathBuf,
        /// Lifetime in days [default: the old certificate's, capped at the CA's expiry]
        #[arg(long)]
        days: Option<i64>,
        /// Output certificate (PEM)
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file
        #[arg(long)]
        force: bool,
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
        /// Key of the signing CA (file or pkcs11: URI)
        #[arg(long)]
        ca_key: PathBuf,
        /// The signer's private key (file or pkcs11: URI)
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
        /// Generate the three keys on this PKCS#11 token (labels <object>-root, -ca, -signer; object defaults to "tka")
        #[arg(long, value_name = "URI")]
        pkcs11: Option<String>,
        #[command(flatten)]
        pass: NewKeyPassArgs,
    },
    /// New token signer (key + certificate) under the current issuing CA; issuance switches to it
    #[command(
        after_help = "The old signer's certificate and key move to DIR/retired/; tokens it signed keep verifying.\nPrints `signer: PATH`.\n\nEXAMPLE:\n  tka issuer rotate-signer --home ~/tka-issuer --passphrase-file pass.txt"
    )]
    RotateSigner {
        /// Issuer home
        #[arg(long, env = "TKA_HOME")]
        home: PathBuf,
        /// Signer lifetime in days [default: 400, capped at the issuing CA's expiry]
        #[arg(long)]
        days: Option<i64>,
        #[command(flatten)]
        rot: RotateArgs,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// New issuing CA from the root, and a new signer under it; issuance switches to them
    #[command(after_help = "Needs the root key. Prints `ca: PATH` and `signer: PATH`.")]
    RotateCa {
        /// Issuer home
        #[arg(long, env = "TKA_HOME")]
        home: PathBuf,
        /// Subject of the new issuing CA [default: the old one's next generation, e.g. "... G2"]
        #[arg(long)]
        subject: Option<String>,
        /// Issuing-CA lifetime in days [default: 1825, capped at the root's expiry]
        #[arg(long)]
        days: Option<i64>,
        #[command(flatten)]
        rot: RotateArgs,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// New root, cross-signed by the old root, with a new issuing CA and signer
    #[command(
        after_help = "Machines import the new root with `tka trust add ROOT --cross CROSS`.\nPrints `root: PATH`, `cross: PATH`, `ca: PATH`, `signer: PATH`."
    )]
    RotateRoot {
        /// Issuer home
        #[arg(long, env = "TKA_HOME")]
        home: PathBuf,
        /// Subject of the new root [default: the old one's next generation, e.g. "... G2"]
        #[arg(long)]
        subject: Option<String>,
        /// Root lifetime in days [default: 7300]
        #[arg(long)]
        days: Option<i64>,
        #[command(flatten)]
        rot: RotateArgs,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// What expires when (root, issuing CA, signer, CRLs in DIR/crls/), and what to do
    #[command(after_help = "EXIT CODES:\n  0 nothing to do now (warnings may be shown), 1 action needed, 2 error")]
    Health {
        /// Issuer home
        #[arg(long, env = "TKA_HOME")]
        home: PathBuf,
        /// Evaluate at this time (RFC 3339) instead of now
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Repair what an interrupted rotation left: retire orphan keys and certificates, re-derive chain.pem
    #[command(
        after_help = "Orphans (certificate and key files the configuration does not name) move to DIR/retired/;\nkeys are never deleted. Temporary files are removed and chain.pem is written again from\nthe configuration, which itself is not changed.\n\nEXIT CODES:\n  0 the home is whole, 1 problems remain that repair cannot fix (missing files), 2 error"
    )]
    Repair {
        /// Issuer home
        #[arg(long, env = "TKA_HOME")]
        home: PathBuf,
        #[command(flatten)]
        lock: LockWaitArg,
    },
    /// Print the current certificate files of an issuer home, one `name: PATH` line each
    Show {
        /// Issuer home
        #[arg(long, env = "TKA_HOME")]
        home: PathBuf,
        #[command(flatten)]
        out: JsonArg,
    },
}

/// How long to wait for another command holding an issuer home.
#[derive(Args, Debug, Clone)]
pub struct LockWaitArg {
    /// Wait at most this long for another tka command holding the home (e.g. 30s, 5m)
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub lock_wait: String,
}

/// Options of the issuer home rotations.
#[derive(Args, Debug, Clone)]
pub struct RotateArgs {
    /// Rotate only if due (the signer: 66% of its life used or it cannot cover a standard token;
    /// a CA or root: 66% of its life used), decided under the home's lock; else print
    /// `no rotation due: ...` and exit 0
    #[arg(long)]
    pub if_due: bool,
    #[command(flatten)]
    pub lock: LockWaitArg,
}

#[derive(Subcommand, Debug)]
pub enum CertCmd {
    /// Whether a certificate should be renewed now; answers with the exit code
    #[command(
        after_help = "Default: renew once 66% of the lifetime has passed. With --home, the signer is also due when it\ncan no longer cover the home's standard token lifetime.\n\nEXAMPLES:\n  tka cert needs-renewal signer.pem --expires-in 30d\n  tka cert needs-renewal --home ~/tka-issuer --role signer\n\nEXIT CODES:\n  0 renew now, 1 not yet, 2 error"
    )]
    NeedsRenewal {
        /// Certificate file (PEM or DER; the first certificate is checked)
        #[arg(required_unless_present = "home", conflicts_with = "home")]
        cert: Option<PathBuf>,
        /// Check a certificate of this issuer home instead
        #[arg(long)]
        home: Option<PathBuf>,
        /// Which certificate of the home
        #[arg(long, requires = "home", default_value = "signer", value_parser = ["root", "ca", "signer", "cross"])]
        role: String,
        /// Renew when it expires within this duration (e.g. 30d)
        #[arg(long, conflicts_with = "percent")]
        expires_in: Option<String>,
        /// Renew when this percentage of its lifetime has passed
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
        percent: Option<u8>,
        /// Evaluate at this time (RFC 3339) instead of now
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Show what a certificate says (every certificate in the file)
    Inspect {
        /// Certificate file (PEM or DER)
        cert: PathBuf,
        #[command(flatten)]
        out: JsonArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum CrlCmd {
    /// Create a CRL signed by a CA (openssl reads it)
    #[command(
        after_help = "SERIAL is hex as `openssl x509 -serial` or `tka cert inspect` prints it; reasons are the RFC 5280\nnames (keyCompromise, superseded, cessationOfOperation, ...).\n\nEXAMPLE:\n  tka crl create --ca-cert ca.pem --ca-key ca.key --revoke 5A3F...:keyCompromise --next-update 30d --out crl.pem"
    )]
    Create {
        /// Certificate of the CA that issued the revoked certificates
        #[arg(long)]
        ca_cert: PathBuf,
        /// Key of that CA (file or pkcs11: URI)
        #[arg(long)]
        ca_key: PathBuf,
        /// A certificate to revoke: SERIAL[:reason] (repeat for several)
        #[arg(long, value_name = "SERIAL[:REASON]")]
        revoke: Vec<String>,
        /// When machines should expect the next CRL (e.g. 30d)
        #[arg(long, default_value = "30d")]
        next_update: String,
        /// cRLNumber [default: the current Unix time, so it increases without state]
        #[arg(long)]
        number: Option<u64>,
        /// Output file (PEM)
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        pass: PassArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum RevocationsCmd {
    /// Create a signed token revocation list from the ledger's revoked tokens (or --serial)
    #[command(
        after_help = "Signed by the home's current signer like a token; its sequence number (kept in DIR/revocations.json)\nincreases with every list.\n\nEXAMPLE:\n  tka revocations create --home ~/tka-issuer --out revoked.jws --next-update 30d"
    )]
    Create {
        /// Issuer home
        #[arg(long, env = "TKA_HOME")]
        home: PathBuf,
        /// Output file
        #[arg(long)]
        out: PathBuf,
        /// When machines should expect the next list (e.g. 30d)
        #[arg(long, default_value = "30d")]
        next_update: String,
        /// Revoke this token serial too: SERIAL[:reason] (repeat for several)
        #[arg(long, value_name = "SERIAL[:REASON]")]
        serial: Vec<String>,
        /// Replace an existing file
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Install a CRL or token revocation list on this machine and re-check installed tokens
    #[command(
        after_help = "A CRL must be signed by a trusted root, or by a CA certificate given with --ca-cert (or as\nCERTIFICATE blocks in FILE) that chains to a trusted root. A list must be signed under a trusted\nroot and not be older (lower sequence) than the installed one. Stale data is installed with a\nwarning unless --require-fresh.\n\nEXIT CODES:\n  0 installed, 1 refused (untrusted, rollback, stale with --require-fresh), 2 error"
    )]
    Import {
        /// CRL (PEM or DER) or token revocation list (JWS)
        file: PathBuf,
        /// CA certificate(s) that may have signed the CRL (PEM; e.g. the issuing CA)
        #[arg(long)]
        ca_cert: Vec<PathBuf>,
        /// Refuse data past its next-update time
        #[arg(long)]
        require_fresh: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        machine: MachineArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// List installed CRLs and token revocation lists
    #[command(
        after_help = "EXIT CODES:\n  0 listed, 1 something is stale (with --require-fresh) or no longer verifies, 2 error"
    )]
    List {
        /// Exit 1 if anything installed is past its next-update time
        #[arg(long)]
        require_fresh: bool,
        /// Evaluate at this time (RFC 3339) instead of now
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        out: JsonArg,
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
    /// Write COUNT requests of synthetic machines, one text-form request per line (benchmarks, tests)
    #[command(hide = true)]
    GenerateTest {
        /// Product
        #[arg(long)]
        product: String,
        /// How many
        #[arg(long)]
        count: u64,
        /// Output file
        #[arg(long)]
        out: PathBuf,
        /// Machine numbering starts here (distinct batches of distinct machines)
        #[arg(long, default_value_t = 0)]
        first: u64,
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
        /// Signer private key (file or pkcs11: URI)
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
        /// Sign even a weak binding (no hardware anchor, no explicit identity), which a disk copy passes; the token records it
        #[arg(long)]
        allow_weak_binding: bool,
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
        #[command(flatten)]
        record: IssueLedgerArgs,
    },
    /// Issue tokens for many requests in parallel, counted against an entitlement
    #[command(
        after_help = "Requests: every file in --requests DIR, or one request per line (text form or one-line JSON)\nin --requests-file FILE or `-` (standard input). Tokens are written as OUT/<product>_<cmid>.jws.\nRe-running the same batch consumes nothing and returns the same tokens (fresh ones with --reissue).\n\nEXAMPLE:\n  tka token issue-bulk --home ~/tka-issuer --entitlement acme --requests reqs/ --out tokens/ --report report.json\n\nEXIT CODES:\n  0 every item issued, 1 some items refused (the rest issued), 2 error"
    )]
    IssueBulk(IssueBulkArgs),
    /// Re-issue, from the ledger, every token that expires soon (no new requests)
    #[command(
        after_help = "EXAMPLE:\n  tka token renew-bulk --home ~/tka-issuer --expiring-within 30d --out renewed/\n\nEXIT CODES:\n  0 every due token renewed, 1 some refused, 2 error"
    )]
    RenewBulk(RenewBulkArgs),
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
        pins: RootPinArgs,
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
        /// Cross-certificate for the new root, signed by a root this store already trusts (root rollover)
        #[arg(long, value_name = "CROSS.pem")]
        cross: Option<PathBuf>,
        /// Trust this root only for these products (comma-separated). Default: a trusted root keeps
        /// its products, a root added with --cross takes those of the root that signed the
        /// cross-certificate, any other root may activate every product
        #[arg(long, value_name = "P1,P2", value_delimiter = ',')]
        products: Option<Vec<String>>,
        /// Trust this root for every product (drops a product limit it had)
        #[arg(long, conflicts_with = "products")]
        all_products: bool,
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

// ----- ledger (issue 4): entitlements, ledger, bulk issuance -----

#[derive(Args, Debug, Clone)]
pub struct LedgerArgs {
    /// Issuer home; the ledger is HOME/ledger.sqlite
    #[arg(long, env = "TKA_HOME")]
    pub home: Option<PathBuf>,
    /// Ledger file [default: HOME/ledger.sqlite]
    #[arg(long, value_name = "PATH")]
    pub ledger: Option<PathBuf>,
    /// Seconds to wait for another process holding the ledger
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub lock_timeout: u64,
}

#[derive(Args, Debug, Clone)]
pub struct IssueLedgerArgs {
    /// Count the machine against this entitlement (id or name); features default to its features
    #[arg(long, value_name = "E")]
    pub entitlement: Option<String>,
    /// Ledger file recording the token [default: HOME/ledger.sqlite with --home]
    #[arg(long, value_name = "PATH")]
    pub ledger: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct BulkTokenArgs {
    /// Token lifetime in days [default: the home's setting, 180]
    #[arg(long, conflicts_with = "perpetual")]
    pub days: Option<u32>,
    /// No expiry
    #[arg(long)]
    pub perpetual: bool,
    /// Signature algorithm
    #[arg(long, default_value = "PS256", value_parser = ["PS256", "RS256"])]
    pub alg: String,
    /// Write the per-item report (JSON) to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Output directory: one token file per machine
    #[arg(long, value_name = "DIR", required_unless_present = "bundle", conflicts_with = "bundle")]
    pub out: Option<PathBuf>,
    /// Instead of files, write every token into one bundle (JSON Lines) that
    /// each machine picks its own token from (`tka activate --bundle FILE`)
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
    /// Items per ledger transaction
    #[arg(long, hide = true, default_value_t = 512)]
    pub chunk: usize,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    #[command(flatten)]
    pub pass: PassArgs,
}

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["requests", "requests_file", "stdin"])))]
pub struct IssueBulkArgs {
    /// Entitlement (id or name) every machine is counted against
    #[arg(long, value_name = "E")]
    pub entitlement: String,
    /// Directory of request files (JSON or text form), one request per file
    #[arg(long, value_name = "DIR")]
    pub requests: Option<PathBuf>,
    /// File with one request per line
    #[arg(long, value_name = "FILE")]
    pub requests_file: Option<PathBuf>,
    /// Read one request per line from standard input
    #[arg(value_name = "-", value_parser = clap::builder::PossibleValuesParser::new(["-"]))]
    pub stdin: Option<String>,
    /// Sign fresh tokens for requests already issued (still consuming no seat)
    #[arg(long)]
    pub reissue: bool,
    /// Licensed features, comma-separated [default: the entitlement's]
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Edition name
    #[arg(long)]
    pub edition: Option<String>,
    /// Machine match rule: all, most, or a number of components [default: most]
    #[arg(long = "match")]
    pub match_rule: Option<String>,
    /// Sign even weak bindings (no hardware anchor, no explicit identity), which a disk copy passes; the tokens record it
    #[arg(long)]
    pub allow_weak_binding: bool,
    /// Days after expiry during which the tokens still work
    #[arg(long, default_value_t = 0)]
    pub grace_days: u32,
    #[command(flatten)]
    pub common: BulkTokenArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RenewBulkArgs {
    /// Renew machines whose newest token expires within this window (e.g. 30d), or already has
    #[arg(long, value_name = "DURATION", value_parser = tka::clock::parse_duration)]
    pub expiring_within: i64,
    /// Only this entitlement (id or name)
    #[arg(long, value_name = "E")]
    pub entitlement: Option<String>,
    /// Only this product
    #[arg(long)]
    pub product: Option<String>,
    #[command(flatten)]
    pub common: BulkTokenArgs,
}

#[derive(Subcommand, Debug)]
pub enum EntitlementCmd {
    /// Add an entitlement: a product and how many machines it may activate
    #[command(
        after_help = "EXAMPLE:\n  tka entitlement add --home ~/tka-issuer --product example-pro --machines 50 --features reports,export --name acme-2027"
    )]
    Add {
        /// Product
        #[arg(long)]
        product: String,
        /// Machines (distinct CMIDs) it may activate
        #[arg(long)]
        machines: u32,
        /// Features its tokens carry, comma-separated
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// No token is issued after, and none outlives, this date (RFC 3339 or YYYY-MM-DD)
        #[arg(long)]
        expires: Option<String>,
        /// Unique name, usable wherever an entitlement is named
        #[arg(long)]
        name: Option<String>,
        /// Its tokens may bind weakly (no hardware anchor, no explicit identity), which a disk copy passes
        #[arg(long)]
        allow_weak_binding: bool,
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// List entitlements with their seats
    List {
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Show an entitlement (id or name), its seats used and free, and its machines
    Show {
        /// Id or name
        entitlement: String,
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Change an entitlement's machine count, features, expiry or name
    #[command(after_help = "EXIT CODES:\n  0 updated, 1 refused (fewer machines than already counted), 2 error")]
    Update {
        /// Id or name
        entitlement: String,
        /// New machine count
        #[arg(long)]
        machines: Option<u32>,
        /// New features, comma-separated (empty string: none)
        #[arg(long, value_delimiter = ',')]
        features: Option<Vec<String>>,
        /// New expiry (RFC 3339 or YYYY-MM-DD), or `never`
        #[arg(long)]
        expires: Option<String>,
        /// New name, or `none` to remove it
        #[arg(long)]
        name: Option<String>,
        /// Allow weak bindings from now on: yes or no
        #[arg(long, value_name = "yes|no", value_parser = ["yes", "no"])]
        allow_weak_binding: Option<String>,
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum LedgerCmd {
    /// List issued tokens
    List {
        /// Only this product
        #[arg(long)]
        product: Option<String>,
        /// Only this machine (CMID)
        #[arg(long)]
        machine: Option<String>,
        /// Only this entitlement (id or name)
        #[arg(long, value_name = "E")]
        entitlement: Option<String>,
        /// Only tokens expiring within this window from now (e.g. 30d)
        #[arg(long, value_name = "DURATION", value_parser = tka::clock::parse_duration)]
        expiring_within: Option<i64>,
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Show one issued token
    Show {
        /// Serial
        serial: String,
        /// Print only the token text
        #[arg(long, conflicts_with = "json")]
        token: bool,
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Export every issued token record (CSV or JSON) to standard output or FILE
    Export {
        /// Format
        #[arg(long, value_parser = ["csv", "json"])]
        format: String,
        /// Output file [default: standard output]
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// Free a machine's seat (decommissioned, transferred) and record why
    #[command(
        after_help = "EXAMPLES:\n  tka ledger release 3f2a... --reason \"decommissioned\"\n  tka ledger release --machine ABCD-EFGH-JKMN-PQRS-T --reason \"replaced\"\n\nEXIT CODES:\n  0 released, 1 nothing to release, 2 error"
    )]
    Release {
        /// Serial of a token of the machine
        #[arg(required_unless_present = "machine", conflicts_with = "machine")]
        serial: Option<String>,
        /// The machine's CMID
        #[arg(long)]
        machine: Option<String>,
        /// With --machine: the entitlement, when several count the machine
        #[arg(long, value_name = "E", requires = "machine")]
        entitlement: Option<String>,
        /// Why (recorded)
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Record a token as revoked (it goes on the next token revocation list)
    #[command(after_help = "EXIT CODES:\n  0 revoked, 1 already revoked, 2 error")]
    Revoke {
        /// Serial
        serial: String,
        /// Why (recorded)
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Fill a ledger with COUNT synthetic tokens by SQL (benchmarks only)
    #[command(hide = true)]
    BenchFill {
        /// How many tokens
        #[arg(long)]
        count: u64,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
}
