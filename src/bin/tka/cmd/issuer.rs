//! `tka issuer`: set up an issuer home, rotate its certificates, check
//! and repair it.

use crate::args::{CertDaysArg, HomeArg, JsonArg, LockWaitArg, NewKeyPassArgs, PassArgs};
use crate::io::{ask, env_passphrase, new_key_passphrase, now_or, prompt, LazyPass};
use crate::output::{say, say_err, say_json, say_row};
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use tka::issuer::{InitOptions, IssuerHome};
use tka::keys::Passphrase;
use tka::rotation::{self, HealthLevel, RotateOptions, RotationReport};
use tka::{clock, Result};

/// Options of the issuer home rotations.
#[derive(Args, Debug, Clone)]
pub struct RotateArgs {
    /// Rotate only if due (the signer: 66% of its life used or it cannot cover a standard token;
    /// a CA or root: 66% of its life used), decided under the home's lock; else print
    /// `no rotation due: ...` and exit 0
    #[arg(long)]
    pub if_due: bool,
    /// Accept a new certificate that would end after its issuer: it ends with the issuer instead
    /// (without it such a rotation is refused)
    #[arg(long)]
    pub shorten: bool,
    #[command(flatten)]
    pub lock: LockWaitArg,
}

#[derive(Subcommand, Debug)]
pub enum IssuerCmd {
    /// Create root, issuing CA, signer and configuration in DIR in one step
    #[command(
        after_help = "Prints `root: PATH`, the certificate every machine must trust, and its SHA-256 `root fingerprint`:\ngive that to the machines' administrators to check with `tka trust add ROOT --fingerprint`.\nWithout --org, tka asks for the name on a terminal; elsewhere the root gets a name unique to this\nissuer (`CN=tka-1a2b3c4d Root CA`) and a note on standard error says so.\n\nEXAMPLE:\n  tka issuer init --home ~/new-issuer --org \"Example Corp\" --root-bits 2048 --ca-bits 2048"
    )]
    Init {
        /// Issuer home directory (must not exist or be empty)
        #[arg(long, env = "TKA_HOME")]
        home: PathBuf,
        /// Organisation name for the certificate subjects (CN=NAME Root CA, CN=NAME Issuing CA,
        /// CN=NAME Token Signer) [default: asked on a terminal, else a name unique to this issuer]
        #[arg(long, value_name = "NAME")]
        org: Option<String>,
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
    ,
        mut_arg("days", |a| a.help("Signer lifetime in days [default: 400; one ending after the issuing CA is refused unless --shorten]"))
    )]
    RotateSigner {
        #[command(flatten)]
        home: HomeArg,
        #[command(flatten)]
        days: CertDaysArg,
        #[command(flatten)]
        rot: RotateArgs,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// New issuing CA from the root, and a new signer under it; issuance switches to them
    #[command(after_help = "Needs the root key. Prints `ca: PATH` and `signer: PATH`.\n\nEXAMPLES:\n  tka issuer rotate-ca --home ~/tka-issuer --if-due",
        mut_arg("days", |a| a.help("Issuing-CA lifetime in days [default: 1825; one ending after the root is refused unless --shorten]"))
    )]
    RotateCa {
        #[command(flatten)]
        home: HomeArg,
        /// Subject of the new issuing CA [default: the old one's next generation, e.g. "... G2"]
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        days: CertDaysArg,
        #[command(flatten)]
        rot: RotateArgs,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// New root, cross-signed by the old root, with a new issuing CA and signer
    #[command(
        after_help = "Machines import the new root with `tka trust add ROOT --cross CROSS`.\nPrints `root: PATH`, `cross: PATH`, `ca: PATH`, `signer: PATH`.\n\nEXAMPLES:\n  tka issuer rotate-root --home ~/tka-issuer --if-due"
    ,
        mut_arg("days", |a| a.help("Root lifetime in days [default: 7300]"))
    )]
    RotateRoot {
        #[command(flatten)]
        home: HomeArg,
        /// Subject of the new root [default: the old one's next generation, e.g. "... G2"]
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        days: CertDaysArg,
        #[command(flatten)]
        rot: RotateArgs,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// What expires when (root, issuing CA, signer, CRLs in DIR/crls/), and what to do
    #[command(
        after_help = "EXAMPLES:\n  tka issuer health --home ~/tka-issuer\n  tka issuer health --home ~/tka-issuer --json"
    )]
    Health {
        #[command(flatten)]
        home: HomeArg,
        /// Evaluate at this time (RFC 3339) instead of now
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Repair what an interrupted rotation left: retire orphan keys and certificates, re-derive chain.pem
    #[command(
        after_help = "Orphans (certificate and key files the configuration does not name) move to DIR/retired/;\nkeys are never deleted. Temporary files are removed and chain.pem is written again from\nthe configuration, which itself is not changed.\n\nEXAMPLES:\n  tka issuer repair --home ~/tka-issuer"
    )]
    Repair {
        #[command(flatten)]
        home: HomeArg,
        #[command(flatten)]
        lock: LockWaitArg,
    },
    /// Print the current certificate files of an issuer home, one `name: PATH` line each
    #[command(after_help = "EXAMPLES:\n  tka issuer show --home ~/tka-issuer")]
    Show {
        #[command(flatten)]
        home: HomeArg,
        #[command(flatten)]
        out: JsonArg,
    },
}

/// The passphrase of an issuer home's keys, which also protects the new
/// keys a rotation writes: file, TKA_PASSPHRASE, or one prompt on a
/// terminal; `None` for a home created with plaintext keys or holding all
/// its keys on a PKCS#11 token.
fn home_passphrase(args: &PassArgs, home: &IssuerHome) -> Result<Option<Passphrase>> {
    if let Some(f) = &args.passphrase_file {
        return Passphrase::from_file(f, args.insecure_key_permissions).map(Some);
    }
    if let Some(p) = env_passphrase() {
        return Ok(Some(p));
    }
    let c = &home.config;
    let all_on_tokens =
        [&c.root_key, &c.ca_key, &c.signer_key].iter().all(|k| k.to_str().is_some_and(tka::pkcs11::is_pkcs11_uri));
    if std::io::stdin().is_terminal() && !all_on_tokens {
        return Ok(Some(Passphrase::new(prompt("Issuer home passphrase: ")?)));
    }
    Ok(None)
}

/// The organisation name of a new issuer: `--org`; else asked on a
/// terminal; else (and for an empty answer) `tka-XXXXXXXX`, unique to this
/// issuer, said on standard error.
fn organisation(org: Option<String>) -> Result<String> {
    if let Some(org) = org.filter(|o| !o.trim().is_empty()) {
        return Ok(org);
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let answer = ask("Organisation name for the certificates (CN=NAME Root CA): ")?;
        if !answer.is_empty() {
            return Ok(answer);
        }
    }
    let mut id = [0u8; 4];
    getrandom::fill(&mut id).map_err(|e| tka::Error::Usage(format!("no random source: {e}")))?;
    let name = format!("tka-{}", id.iter().map(|b| format!("{b:02x}")).collect::<String>());
    say_err(format!("note: no --org given: the root is named CN={name} Root CA (give --org NAME to name it)"));
    Ok(name)
}

fn rotate_options(rot: &RotateArgs) -> Result<RotateOptions> {
    Ok(RotateOptions {
        if_due: rot.if_due,
        shorten: rot.shorten,
        lock_wait: Some(rot.lock.duration()?),
        ..Default::default()
    })
}

fn print_rotation(r: &RotationReport) {
    if let Some(reason) = &r.not_due {
        say(format!("no rotation due: {reason}"));
    }
    for (role, subject, not_after) in &r.certificates {
        let shortened = if r.shortened.contains(role) { " (shortened: ends with its issuer)" } else { "" };
        say(format!("new {role}: {subject}, expires {}{shortened}", clock::rfc3339(*not_after)));
    }
    for p in &r.retired {
        say(format!("retired: {}", p.display()));
    }
    for (role, p) in &r.created {
        say(format!("{role}: {}", p.display()));
    }
}

pub fn run(cmd: IssuerCmd) -> Result<ExitCode> {
    match cmd {
        IssuerCmd::Init { home, org, root_bits, ca_bits, signer_bits, pkcs11, pass } => {
            let pkcs11 = pkcs11.as_deref().map(tka::pkcs11::Pkcs11Uri::parse).transpose()?;
            // Keys on a token need no file passphrase.
            let passphrase = if pkcs11.is_some() { None } else { new_key_passphrase(&pass)? };
            let org = organisation(org)?;
            let opts = InitOptions { org, root_bits, ca_bits, signer_bits, pkcs11, ..Default::default() };
            let unlock = LazyPass::for_new_keys(passphrase, pass.insecure_key_permissions);
            let h = unlock.retry(|u| IssuerHome::init(&home, &opts, u, clock::now()))?;
            let root_ders = tka::issuer::read_cert_chain(&h.root_cert_path())?;
            let root = tka::pki::CertInfo::parse(root_ders.first().map_or(&[][..], |d| d))?;
            let signer = h.path(&h.config.signer_cert);
            if crate::output::json_mode() {
                say_json(&json!({"home": h.dir(), "signer": signer, "root": h.root_cert_path(),
                    "root_subject": root.subject, "root_fingerprint": root.fingerprint}));
            } else {
                say(format!("home: {}", h.dir().display()));
                say(format!("signer: {}", signer.display()));
                say(format!("root: {}", h.root_cert_path().display()));
                say(format!("root subject: {}", root.subject));
                say(format!("root fingerprint: {}", root.fingerprint));
            }
            Ok(ExitCode::SUCCESS)
        }
        IssuerCmd::RotateSigner { home, days, rot, pass } => {
            let h = home.open()?;
            let unlock = LazyPass::with_passphrase(&pass, home_passphrase(&pass, &h)?);
            let opts = RotateOptions { signer_days: days.days, ..rotate_options(&rot)? };
            let r = unlock.retry(|u| rotation::rotate_signer(&mut h.clone(), u, &opts, clock::now()))?;
            print_rotation(&r);
            Ok(ExitCode::SUCCESS)
        }
        IssuerCmd::RotateCa { home, subject, days, rot, pass } => {
            let h = home.open()?;
            let unlock = LazyPass::with_passphrase(&pass, home_passphrase(&pass, &h)?);
            let opts = RotateOptions { ca_days: days.days, subject, ..rotate_options(&rot)? };
            let r = unlock.retry(|u| rotation::rotate_issuing_ca(&mut h.clone(), u, &opts, clock::now()))?;
            print_rotation(&r);
            Ok(ExitCode::SUCCESS)
        }
        IssuerCmd::RotateRoot { home, subject, days, rot, pass } => {
            let h = home.open()?;
            let unlock = LazyPass::with_passphrase(&pass, home_passphrase(&pass, &h)?);
            let opts = RotateOptions { root_days: days.days, subject, ..rotate_options(&rot)? };
            let r = unlock.retry(|u| rotation::rotate_root(&mut h.clone(), u, &opts, clock::now()))?;
            print_rotation(&r);
            Ok(ExitCode::SUCCESS)
        }
        IssuerCmd::Health { home, at, out } => {
            let h = home.open()?;
            let report = rotation::health(&h, now_or(&at)?)?;
            if out.json {
                let items: Vec<_> = report
                    .items
                    .iter()
                    .map(|i| {
                        json!({"role": i.role, "path": i.path, "subject": i.subject,
                               "expires": i.expires.map(clock::rfc3339), "days_left": i.days_left,
                               "level": i.level, "message": i.message})
                    })
                    .collect();
                let problems: Vec<_> = report
                    .problems
                    .iter()
                    .map(|p| json!({"problem": p, "message": p.to_string(), "repairable": p.repairable()}))
                    .collect();
                say_json(&json!({"token_days": report.token_days, "level": report.level(), "items": items,
                                 "problems": problems}));
            } else {
                for i in &report.items {
                    let tag = match i.level {
                        HealthLevel::Ok => "ok",
                        HealthLevel::Warn => "WARN",
                        HealthLevel::Action => "ACTION",
                    };
                    say_row(&[tag, &i.role.to_string(), &i.subject, &i.message]);
                }
                print_problems(&report.problems);
            }
            if report.problems.iter().any(|p| p.repairable()) {
                say_err(format!("hint: run `tka issuer repair --home {}`", home.home.display()));
            }
            Ok(if report.level() == HealthLevel::Action { crate::outcome::no() } else { ExitCode::SUCCESS })
        }
        IssuerCmd::Repair { home, lock } => {
            let mut h = home.open()?;
            let r = rotation::repair(&mut h, lock.duration()?)?;
            for (from, to) in &r.retired {
                say(format!("retired: {} -> {}", from.display(), to.display()));
            }
            for p in &r.removed {
                say(format!("removed: {}", p.display()));
            }
            if let Some(c) = &r.chain {
                say(format!("rewrote: {}", c.display()));
            }
            if r.retired.is_empty() && r.removed.is_empty() && r.chain.is_none() && r.remaining.is_empty() {
                say("nothing to repair");
            }
            print_problems(&r.remaining);
            Ok(if r.remaining.is_empty() { ExitCode::SUCCESS } else { crate::outcome::no() })
        }
        IssuerCmd::Show { home, out } => {
            let h = home.open()?;
            let c = &h.config;
            let mut rows: Vec<(&str, PathBuf)> =
                vec![("root", h.path(&c.root_cert)), ("ca", h.path(&c.ca_cert)), ("signer", h.path(&c.signer_cert))];
            if let Some(x) = &c.cross_cert {
                rows.push(("cross", h.path(x)));
            }
            rows.push(("chain", h.dir().join("chain.pem")));
            if out.json {
                let m: serde_json::Map<String, serde_json::Value> =
                    rows.iter().map(|(k, p)| (k.to_string(), json!(p))).collect();
                say_json(&serde_json::Value::Object(m));
            } else {
                for (k, p) in rows {
                    say(format!("{k}: {}", p.display()));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One `ACTION home PATH: what` row per problem of an issuer home.
fn print_problems(problems: &[rotation::HomeProblem]) {
    for p in problems {
        let todo = if p.repairable() { "tka issuer repair" } else { "restore it from a backup" };
        say_row(&["ACTION", "home", &p.to_string(), todo]);
    }
}
