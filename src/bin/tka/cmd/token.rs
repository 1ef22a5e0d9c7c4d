//! `tka token`: issue tokens (one, or many against an entitlement),
//! renew them in bulk, inspect and verify them.

use crate::args::{
    AlgArg, ClaimArgs, JsonArg, LedgerArgs, LedgerLocationArg, LifetimeArgs, MachineArgs, PassArgs, RootPinArgs,
};
use crate::io::{is_stdio, read_certs, read_request_arg, read_token_arg, write_file, LazyPass};
use crate::outcome::{CmdResult, Failure};
use crate::output::{say, say_err, say_json};
use crate::qr::QrArgs;
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tka::issuer::bulk::{self, BatchOptions, BatchReport, ItemStatus, RenewOptions};
use tka::issuer::issue::{IssueOptions, IssuedToken, TokenSigner};
use tka::issuer::IssuerHome;
use tka::ledger::Ledger;
use tka::pki::CertInfo;
use tka::request::ActivationRequest;
use tka::token;
use tka::{clock, Error, Result};

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Issue a token for an activation request
    #[command(
        after_help = "EXAMPLES:\n  tka token issue --request request.json --home ~/tka-issuer --out token.jws\n  tka token issue --request request.txt --signer-cert signer.pem --signer-key signer.key --chain ca.pem --days 365"
    )]
    Issue(IssueArgs),
    /// Issue tokens for many requests in parallel, counted against an entitlement
    #[command(
        after_help = "Requests: every file in --requests DIR, or one request per line (text form or one-line JSON)\nin --requests-file FILE or `-` (standard input). Tokens are written as OUT/<product>_<cmid>.jws.\nRe-running the same batch consumes nothing and returns the same tokens (fresh ones with --reissue).\n\nEXAMPLE:\n  tka token issue-bulk --home ~/tka-issuer --entitlement acme-2027 --requests reqs/ --out tokens/ --report report.json"
    )]
    IssueBulk(IssueBulkArgs),
    /// Re-issue, from the ledger, every token that expires soon (no new requests)
    #[command(
        after_help = "EXAMPLE:\n  tka token renew-bulk --home ~/tka-issuer --expiring-within 30d --out renewed/",
        mut_arg("days", |a| a.help("Token lifetime in days [default: the renewed token's lifetime]")),
        mut_arg("valid_for", |a| a.help("Token lifetime as a duration: 90m, 12h, 180d, 2w, 3600s [default: the renewed token's lifetime]"))
    )]
    RenewBulk(RenewBulkArgs),
    /// Show a token (or request) as a QR code: in the terminal, or as an image with --qr-out
    #[command(
        after_help = "A full token (about 5 KB) does not fit in a QR code: issue compact tokens for QR codes\n(`tka token issue --compact`).\n\nEXAMPLES:\n  tka token qr compact.jws\n  tka token qr compact.jws --qr-out token.png"
    )]
    Qr {
        /// Token file, `-` for standard input, or the token text
        token: String,
        /// Write the QR code to FILE.png or FILE.svg instead of the terminal
        #[arg(long, value_name = "FILE")]
        qr_out: Option<PathBuf>,
        /// Replace an existing --qr-out file
        #[arg(long)]
        force: bool,
    },
    /// Decode a token and show its header and claims (no trust decision)
    #[command(after_help = "EXAMPLES:\n  tka token inspect token.jws\n  tka token inspect token.jws --json")]
    Inspect {
        /// Token file, `-` for standard input, or the token text
        token: String,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Verify a token against trusted roots
    #[command(
        after_help = "EXAMPLES:\n  tka token verify token.jws --trust root.pem --product example-pro\n  tka token verify token.jws --trust roots/ --machine ABCD-EFGH-JKMN-PQRS-T --at 2027-01-01T00:00:00Z"
    )]
    Verify(VerifyArgs),
}

// `tka token verify`: its own type, so that `tka token verify` command lines
// are parsed with this subcommand alone (`parse_tree` in main.rs). A plain
// comment: a doc comment here would become the subcommand's about.
#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// Token file, `-` for standard input, or the token text
    pub token: String,
    /// Trusted root certificate(s): a PEM file or a directory of them; each must be a
    /// self-signed CA certificate (a root), as for `tka trust add`
    #[arg(long, required = true)]
    pub trust: Vec<PathBuf>,
    /// Accept any certificate given with --trust as an anchor, root or not (says so on stderr)
    #[arg(long)]
    pub trust_any_anchor: bool,
    /// Expected product
    #[arg(long)]
    pub product: Option<String>,
    /// Check the machine binding: `current` (this machine) or a CMID
    #[arg(long)]
    pub machine: Option<String>,
    /// CRL files to consult (PEM or DER)
    #[arg(long)]
    pub crl: Vec<PathBuf>,
    /// Certificates (PEM) to find the chain of a compact token in: the issuer's signer and
    /// intermediate certificates; not trusted, the chain must still end at a --trust root
    #[arg(long, value_name = "FILE")]
    pub chain: Vec<PathBuf>,
    /// Verify at this time (RFC 3339) instead of now
    #[arg(long)]
    pub at: Option<String>,
    #[command(flatten)]
    pub pins: RootPinArgs,
    #[command(flatten)]
    pub machine_args: MachineArgs,
    #[command(flatten)]
    pub out: JsonArg,
}

impl From<VerifyArgs> for crate::token_verify::VerifyCommand {
    fn from(a: VerifyArgs) -> Self {
        Self {
            token: a.token,
            trust: a.trust,
            trust_any_anchor: a.trust_any_anchor,
            product: a.product,
            machine: a.machine,
            crl: a.crl,
            chain: a.chain,
            at: a.at,
            root_fingerprints: a.pins.root_fingerprints,
            machine_id_file: a.machine_args.machine_id_file,
            quiet: a.machine_args.quiet,
            json: a.out.json,
        }
    }
}

/// `tka token issue`.
#[derive(Args, Debug, Clone)]
pub struct IssueArgs {
    /// Request file (JSON or text form), `-` for standard input, or the request text itself
    /// (line breaks and spaces in it are ignored)
    #[arg(long)]
    pub request: String,
    /// Issuer home (from `tka issuer init`)
    #[arg(long, env = "TKA_HOME", conflicts_with_all = ["signer_cert", "signer_key"])]
    pub home: Option<PathBuf>,
    /// Signer certificate (PEM)
    #[arg(long, requires = "signer_key")]
    pub signer_cert: Option<PathBuf>,
    /// Signer private key (file or pkcs11: URI)
    #[arg(long, requires = "signer_cert")]
    pub signer_key: Option<PathBuf>,
    /// Intermediate certificates (PEM): those that certify the signer, in turn, follow it in the token
    /// (with the rest of the --signer-cert file; others are left out)
    #[arg(long)]
    pub chain: Option<PathBuf>,
    #[command(flatten)]
    pub lifetime: LifetimeArgs,
    #[command(flatten)]
    pub claims: ClaimArgs,
    #[command(flatten)]
    pub alg: AlgArg,
    /// Write a compact token: no certificate chain in it (about 1 KB instead of about 5 KB); the
    /// machine needs the chain once (`tka activate TOKEN --chain CHAIN.pem`)
    #[arg(long)]
    pub compact: bool,
    /// Output file [default: standard output]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing --out (or --qr-out) file
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub qr: QrArgs,
    #[command(flatten)]
    pub pass: PassArgs,
    #[command(flatten)]
    pub record: IssueLedgerArgs,
}

#[derive(Args, Debug, Clone)]
pub struct IssueLedgerArgs {
    /// Count the machine against this entitlement (id or name); features default to its features
    #[arg(long, value_name = "E")]
    pub entitlement: Option<String>,
    #[command(flatten)]
    pub ledger: LedgerLocationArg,
}

#[derive(Args, Debug, Clone)]
pub struct BulkTokenArgs {
    #[command(flatten)]
    pub lifetime: LifetimeArgs,
    #[command(flatten)]
    pub alg: AlgArg,
    /// Write the per-item report (JSON) to FILE; `-` for standard output (the summary then goes to
    /// standard error)
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
    /// File with one request per line; `-` for standard input
    #[arg(long, value_name = "FILE")]
    pub requests_file: Option<PathBuf>,
    /// Read one request per line from standard input
    #[arg(value_name = "-", value_parser = clap::builder::PossibleValuesParser::new(["-"]))]
    pub stdin: Option<String>,
    /// Sign fresh tokens for requests already issued (still consuming no seat)
    #[arg(long)]
    pub reissue: bool,
    /// Write a compact token: no certificate chain in it (about 1 KB instead of about 5 KB); the
    /// machine needs the chain once (`tka activate TOKEN --chain CHAIN.pem`)
    #[arg(long)]
    pub compact: bool,
    #[command(flatten)]
    pub claims: ClaimArgs,
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

pub fn run(cmd: TokenCmd) -> CmdResult {
    match cmd {
        TokenCmd::Issue(a) => issue(a),
        TokenCmd::IssueBulk(a) => issue_bulk(a),
        TokenCmd::RenewBulk(a) => renew_bulk(a),
        other => examine(other),
    }
}

/// `tka token inspect` and `tka token verify`.
fn examine(cmd: TokenCmd) -> CmdResult {
    match cmd {
        TokenCmd::Qr { token, qr_out, force } => {
            let text = read_token_arg(&token)?;
            let qr = QrArgs { qr: qr_out.is_none(), qr_out };
            qr.check(force)?;
            qr.emit(&text, "token", force)?;
            Ok(ExitCode::SUCCESS)
        }
        TokenCmd::Inspect { token, out } => {
            let text = read_token_arg(&token)?;
            let (jws, claims) = token::decode_unverified(&text)?;
            let chain: Vec<serde_json::Value> = jws
                .x5c
                .iter()
                .map(|d| match CertInfo::parse(d) {
                    Ok(c) => json!({"subject": c.subject, "issuer": c.issuer, "serial": c.serial_hex,
                                    "fingerprint": c.fingerprint, "not_after": clock::rfc3339(c.not_after)}),
                    Err(e) => json!({"error": e.to_string()}),
                })
                .collect();
            let mut header = jws.header.clone();
            header.remove("x5c");
            if out.json {
                say_json(&json!({"header": header, "x5c": chain, "claims": claims}));
            } else {
                say("(decoded only: no signature or trust check; use `tka token verify`)");
                say(format!("alg: {}", jws.alg.jws_name()));
                say(format!("serial: {}", claims.jti));
                say(format!("product: {}", claims.aud));
                say(format!("machine: {}", claims.sub));
                say(format!("issued: {}", clock::rfc3339(claims.iat)));
                say(format!("expires: {}", claims.exp.map(clock::rfc3339).unwrap_or_else(|| "never".into())));
                say(format!("features: {}", claims.tka.features.join(",")));
                say(format!("match: {} of {} components", claims.tka.match_rule, claims.tka.components.len()));
                for c in chain {
                    say(format!("certificate: {}", c["subject"].as_str().unwrap_or("?")));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCmd::Verify(a) => crate::token_verify::run(a.into()),
        TokenCmd::Issue(_) | TokenCmd::IssueBulk(_) | TokenCmd::RenewBulk(_) => unreachable!("dispatched by run"),
    }
}

/// `tka token issue`.
pub fn issue(args: IssueArgs) -> CmdResult {
    let IssueArgs {
        request,
        home,
        signer_cert,
        signer_key,
        chain,
        lifetime,
        claims,
        alg,
        compact,
        out,
        force,
        qr,
        pass,
        record,
    } = args;
    let home_dir = home.clone();
    if let Some(o) = out.as_ref().filter(|o| !is_stdio(o)) {
        if !force && o.exists() {
            return Err(Error::Exists { path: o.clone() }.into());
        }
    }
    qr.check(force)?;
    if qr.wanted() && !compact {
        // Checked before anything is signed or recorded.
        return Err(Error::Usage(format!(
            "a full token (about 5 KB with its certificate chain) does not fit in a QR code ({} bytes at most): \
             add --compact",
            crate::qr::MAX_QR_BYTES
        ))
        .into());
    }
    // A request that cannot be read is an error in the input (exit 2), not a refusal.
    let req = read_request_arg(&request).map_err(Failure::Usage)?;
    let passphrase = LazyPass::new(&pass);
    let (signer, home_days) = match (home, signer_cert, signer_key) {
        (Some(h), _, _) => {
            let home = IssuerHome::open(&h)?;
            let days = home.config.token_days;
            (passphrase.retry(|u| home.token_signer(u))?, Some(days))
        }
        (None, Some(cert), Some(key)) => {
            let mut ders = read_certs(&cert)?;
            let signer = ders.remove(0);
            if let Some(c) = &chain {
                ders.extend(read_certs(c)?);
            }
            let key = passphrase.load(&key)?;
            (TokenSigner::from_pool(key, signer, &ders)?, None)
        }
        _ => return Err(Error::Usage("give --home DIR, or --signer-cert and --signer-key".into()).into()),
    };
    let lifetime = lifetime.or_days(home_days.unwrap_or(180));
    let opts = IssueOptions { compact, ..claims.issue_options(lifetime, &alg)? };
    let issued = issue_one(&record, home_dir.as_deref(), &req, &opts, &signer, clock::now())?;
    match out.filter(|o| !is_stdio(o)) {
        Some(path) => {
            write_file(&path, &(issued.text.clone() + "\n"), force)?;
            say(format!("token: {}", path.display()));
            say(format!("serial: {}", issued.claims.jti));
            say(format!("machine: {}", issued.claims.sub));
            say(format!(
                "expires: {}",
                issued.claims.exp.map(clock::rfc3339).unwrap_or_else(|| format!(
                    "never (valid while the signer certificate is, until {})",
                    clock::rfc3339(signer.certificate().not_after)
                ))
            ));
        }
        None => say(&issued.text),
    }
    qr.emit(&issued.text, "token", force)?;
    Ok(ExitCode::SUCCESS)
}

/// `tka token issue`: records the token in the ledger when there is one
/// (`--ledger`, or the home's), counting it against `--entitlement`.
fn issue_one(
    record: &IssueLedgerArgs,
    home: Option<&Path>,
    req: &ActivationRequest,
    opts: &IssueOptions,
    signer: &TokenSigner,
    now: i64,
) -> std::result::Result<IssuedToken, Failure> {
    let location = record.ledger.location(home);
    if location.is_none() && record.entitlement.is_some() {
        return Err(Error::Usage("--entitlement needs a ledger: give --home DIR or --ledger PATH|URL".into()).into());
    }
    let mut l = location.map(|p| Ledger::open_location(&p, true)).transpose()?;
    // The library's single path decides and records; a refusal by the
    // ledger's policy (entitlement full, expired) is a "no" (exit 1).
    Ok(tka::issuer::issue::issue_one(l.as_mut(), record.entitlement.as_deref(), req, opts, signer, now)?)
}

fn load_signer(common: &BulkTokenArgs) -> Result<(TokenSigner, u32)> {
    let home =
        common.ledger.home.as_ref().ok_or_else(|| {
            Error::Usage("bulk issuance signs with an issuer home: give --home DIR (or TKA_HOME)".into())
        })?;
    let home = IssuerHome::open(home)?;
    let pass = LazyPass::new(&common.pass);
    let signer = pass.retry(|u| home.token_signer(u))?;
    Ok((signer, home.config.token_days))
}

fn progress_bar(total: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tokens  {per_sec}  eta {eta}") {
        bar.set_style(style);
    }
    bar
}

fn finish(report: &BatchReport, common: &BulkTokenArgs) -> Result<ExitCode> {
    if let Some(p) = &common.report {
        let text = serde_json::to_string_pretty(report).expect("report serializes") + "\n";
        if is_stdio(p) {
            crate::output::say_out_document(&text);
        } else {
            tka::issuer::bulk::write_token_file(p, &text).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))?;
        }
    }
    const SHOWN: usize = 20;
    let bad: Vec<_> = report.items.iter().filter(|i| i.status != ItemStatus::Ok).collect();
    for i in bad.iter().take(SHOWN) {
        let word = if i.status == ItemStatus::Refused { "refused" } else { "failed" };
        let reason = match &i.reason {
            Some(tka::issuer::bulk::ItemReason::Refused(r)) => crate::hints::refusal_text(r),
            Some(r) => r.to_string(),
            None => String::new(),
        };
        say_err(format!("{word}: item {} ({}): {reason}", i.index, i.source));
    }
    if bad.len() > SHOWN {
        say_err(format!("... and {} more (see the report)", bad.len() - SHOWN));
    }
    say(format!(
        "issued: {} of {} (signed {}, existing {}, new seats {})",
        report.ok, report.total, report.signed, report.existing, report.new_seats
    ));
    say(format!("refused: {}", report.refused));
    say(format!("errors: {}", report.errors));
    if let Some(out) = &common.out {
        say(format!("out: {}", out.display()));
    }
    if let Some(b) = &common.bundle {
        say(format!("bundle: {}", b.display()));
    }
    if let Some(p) = &common.report {
        say(format!("report: {}", p.display()));
    }
    if let Some(e) = &report.aborted {
        say_err(format!("error: {e}"));
        return Ok(ExitCode::from(crate::outcome::ERROR));
    }
    // A malformed request is an error in the input (exit 2), as for `token issue`.
    let malformed = report.items.iter().any(|i| {
        matches!(&i.reason, Some(tka::issuer::bulk::ItemReason::Refused(tka::IssueRefusal::Unreadable { .. })))
    });
    Ok(if report.errors > 0 || malformed {
        ExitCode::from(crate::outcome::ERROR)
    } else if report.refused > 0 {
        crate::outcome::no()
    } else {
        ExitCode::SUCCESS
    })
}

/// `--out DIR` or `--bundle FILE` (the bundle is written by the batch, as its chunks commit).
fn output(common: &BulkTokenArgs) -> bulk::Output<'_> {
    match (&common.bundle, &common.out) {
        (Some(b), _) => bulk::Output::Bundle(b),
        (None, Some(d)) => bulk::Output::Dir(d),
        (None, None) => bulk::Output::Nothing,
    }
}

pub fn issue_bulk(a: IssueBulkArgs) -> CmdResult {
    let now = clock::now();
    let inputs = if let Some(dir) = &a.requests {
        bulk::read_requests_dir(dir)?
    } else if let Some(f) = a.requests_file.as_ref().filter(|f| !is_stdio(f)) {
        let file = crate::io::open_input(f)?;
        let label = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        bulk::read_requests_lines(std::io::BufReader::new(file), &label)?
    } else {
        bulk::read_requests_lines(crate::io::take_stdin()?.lock(), "stdin")?
    };
    let (signer, home_days) = load_signer(&a.common)?;
    let mut l = a.common.ledger.open(true)?;
    let opts = BatchOptions {
        entitlement: Some(a.entitlement.clone()),
        issue: IssueOptions {
            compact: a.compact,
            ..a.claims.issue_options(a.common.lifetime.or_days(home_days), &a.common.alg)?
        },
        reissue: a.reissue,
        chunk: a.common.chunk,
    };
    let bar = progress_bar(inputs.len() as u64, a.common.quiet);
    let report = bulk::issue_batch_to(&mut l, inputs, &opts, &signer, now, output(&a.common), &|n| bar.inc(n));
    bar.finish_and_clear();
    Ok(report.and_then(|r| finish(&r, &a.common))?)
}

pub fn renew_bulk(a: RenewBulkArgs) -> CmdResult {
    let now = clock::now();
    let (signer, _) = load_signer(&a.common)?;
    let mut l = a.common.ledger.open(false)?;
    let opts = RenewOptions {
        within: a.expiring_within,
        entitlement: a.entitlement,
        product: a.product,
        lifetime: a.common.lifetime.given(),
        alg: a.common.alg.algorithm(),
        chunk: a.common.chunk,
    };
    let bar = progress_bar(0, a.common.quiet);
    let report = bulk::renew_batch_to(&mut l, &opts, &signer, now, output(&a.common), &|n| bar.inc(n));
    bar.finish_and_clear();
    Ok(report.and_then(|r| finish(&r, &a.common))?)
}
