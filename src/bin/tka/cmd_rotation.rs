//! Commands for rotation and revocation: `cert`, `ca renew|rekey`,
//! `issuer rotate-*|health|show`, `crl`, `revocations`, `trust add`.
//! Parsing and printing only; every decision is in `tka::rotation`,
//! `tka::revocation` and `tka::pki`.

use crate::cli::{CaCmd, CertCmd, CrlCmd, IssuerCmd, LockWaitArg, PassArgs, RevocationsCmd, RotateArgs, StoreArgs};
use crate::io::*;
use crate::output::*;
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tka::issuer::{read_cert_chain, IssuerHome};
use tka::issuer::{CrlEntry, CrlParams};
use tka::keys::Passphrase;
use tka::pki::{pem, CertInfo};
use tka::revocation::{self, ImportOptions, RevokedToken};
use tka::rotation::{self, HealthLevel, RenewalPolicy, RotateOptions, RotationReport};
use tka::trust::{self, ProductScope, TrustRootOptions};
use tka::{clock, Error, Result};

fn now_or(at: &Option<String>) -> Result<i64> {
    match at {
        Some(s) => clock::parse_rfc3339(s).map_err(Error::Usage),
        None => Ok(clock::now()),
    }
}

fn duration(s: &str) -> Result<i64> {
    clock::parse_duration(s).map_err(Error::Usage)
}

fn first_cert(path: &Path) -> Result<CertInfo> {
    let der = read_cert_chain(path)?.remove(0);
    CertInfo::parse(&der).map_err(|e| Error::Format { what: path.display().to_string(), detail: e.to_string() })
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

// ----- tka cert -----

pub fn cert(cmd: CertCmd) -> Result<ExitCode> {
    match cmd {
        CertCmd::NeedsRenewal { cert, home, role, expires_in, percent, at, out } => {
            // Exit codes like step: 0 renew now, 1 not yet, 2 error (never 1 for an error).
            let result = (|| {
                let now = now_or(&at)?;
                let policy = match (&expires_in, percent) {
                    (Some(d), _) => Some(RenewalPolicy::ExpiresIn(duration(d)?)),
                    (None, Some(p)) => Some(RenewalPolicy::Percent(p)),
                    (None, None) => None,
                };
                let (path, check) = match (cert, home) {
                    (Some(c), _) => {
                        let info = first_cert(&c)?;
                        let policy = policy.unwrap_or(RenewalPolicy::Percent(rotation::DEFAULT_RENEW_PERCENT));
                        (c, rotation::needs_renewal(&info, policy, now)?)
                    }
                    (None, Some(h)) => {
                        let home = IssuerHome::open(&h)?;
                        let rel = match role.as_str() {
                            "root" => home.config.root_cert.clone(),
                            "ca" => home.config.ca_cert.clone(),
                            "cross" => home
                                .config
                                .cross_cert
                                .clone()
                                .ok_or_else(|| Error::Usage(format!("{} has no cross-certificate", h.display())))?,
                            _ => home.config.signer_cert.clone(),
                        };
                        let path = home.path(&rel);
                        let check = match (role.as_str(), policy) {
                            ("signer", None) => rotation::signer_needs_renewal(&home, now)?,
                            (_, p) => rotation::needs_renewal(
                                &first_cert(&path)?,
                                p.unwrap_or(RenewalPolicy::Percent(rotation::DEFAULT_RENEW_PERCENT)),
                                now,
                            )?,
                        };
                        (path, check)
                    }
                    (None, None) => return Err(Error::Usage("give a certificate file or --home DIR".into())),
                };
                Ok((path, check))
            })();
            let (path, check) = result.map_err(|e| match e {
                Error::Verify(v) => Error::Format { what: "certificate".into(), detail: v.to_string() },
                other => other,
            })?;
            if out.json {
                say_json(&json!({"certificate": path, "renew": check.renew, "reason": check.reason,
                    "not_after": clock::rfc3339(check.not_after), "remaining_days": check.remaining_secs.div_euclid(clock::DAY),
                    "elapsed_percent": check.elapsed_percent}));
            } else {
                let verdict = if check.renew { "renew now" } else { "not yet" };
                say(format!("{}: {verdict}: {}", path.display(), check.reason));
            }
            Ok(if check.renew { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        CertCmd::Inspect { cert, out } => {
            let ders = read_cert_chain(&cert)?;
            let infos = ders.iter().map(|d| CertInfo::parse(d)).collect::<std::result::Result<Vec<_>, _>>()?;
            let rows: Vec<serde_json::Value> = infos.iter().map(cert_json).collect();
            if out.json {
                say_json(&if rows.len() == 1 { rows[0].clone() } else { json!(rows) });
            } else {
                for (i, r) in rows.iter().enumerate() {
                    if i > 0 {
                        say("");
                    }
                    for (k, v) in r.as_object().expect("object") {
                        let v = match v {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Null => "-".into(),
                            other => other.to_string(),
                        };
                        say(format!("{k}: {v}"));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn cert_json(c: &CertInfo) -> serde_json::Value {
    let bits = c.rsa_public_key().ok().map(|k| tka::keys::public_bits(&k));
    json!({
        "subject": c.subject,
        "issuer": c.issuer,
        "role": rotation::cert_role(c),
        "serial": c.serial_hex,
        "fingerprint": c.fingerprint,
        "not_before": clock::rfc3339(c.not_before),
        "not_after": clock::rfc3339(c.not_after),
        "ca": c.is_ca,
        "path_len": c.path_len,
        "key_usage": c.key_usage.map(|(ds, cs, crl)| {
            [("digitalSignature", ds), ("keyCertSign", cs), ("cRLSign", crl)]
                .iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect::<Vec<_>>().join(",")
        }),
        "extended_key_usage": c.eku.as_ref().map(|e| e.join(",")),
        "key_bits": bits,
        "subject_key_id": c.ski.as_deref().map(hex),
        "authority_key_id": c.aki.as_deref().map(hex),
    })
}

// ----- tka ca renew | rekey -----

pub fn ca(cmd: CaCmd) -> Result<ExitCode> {
    let (cert, new_key, ca_cert, ca_key, days, out, force, pass) = match cmd {
        CaCmd::Renew { cert, ca_cert, ca_key, days, out, force, pass } => {
            (cert, None, ca_cert, ca_key, days, out, force, pass)
        }
        CaCmd::Rekey { cert, key, ca_cert, ca_key, days, out, force, pass } => {
            (cert, Some(key), ca_cert, ca_key, days, out, force, pass)
        }
        _ => return Err(Error::Usage("not a renew or rekey command".into())),
    };
    if !force && out.exists() {
        return Err(Error::Exists { path: out });
    }
    let old = first_cert(&cert)?;
    let issuer = first_cert(&ca_cert)?;
    let passphrase = LazyPass::new(&pass);
    let issuer_key = passphrase.load(&ca_key)?;
    let new_key = new_key.map(|k| passphrase.load(&k)).transpose()?;
    let der = rotation::reissue(
        &old,
        new_key.as_ref().map(|k| k.public_key()),
        &issuer,
        issuer_key.as_ref(),
        days,
        clock::now(),
    )?;
    write_file(&out, &pem::encode("CERTIFICATE", &der), force)?;
    let info = CertInfo::parse(&der)?;
    say(format!("certificate: {}", out.display()));
    say(format!("subject: {}", info.subject));
    say(format!("serial: {}", info.serial_hex));
    say(format!("replaces serial: {}", old.serial_hex));
    say(format!("expires: {}", clock::rfc3339(info.not_after)));
    Ok(ExitCode::SUCCESS)
}

// ----- tka issuer rotate-* | health | show -----

fn lock_wait(arg: &LockWaitArg) -> Result<std::time::Duration> {
    let secs = duration(&arg.lock_wait)?;
    u64::try_from(secs)
        .map(std::time::Duration::from_secs)
        .map_err(|_| Error::Usage("--lock-wait must not be negative".into()))
}

fn rotate_options(rot: &RotateArgs) -> Result<RotateOptions> {
    Ok(RotateOptions { if_due: rot.if_due, lock_wait: Some(lock_wait(&rot.lock)?), ..Default::default() })
}

fn print_rotation(r: &RotationReport) {
    if let Some(reason) = &r.not_due {
        say(format!("no rotation due: {reason}"));
    }
    for (role, subject, not_after) in &r.certificates {
        say(format!("new {role}: {subject}, expires {}", clock::rfc3339(*not_after)));
    }
    for p in &r.retired {
        say(format!("retired: {}", p.display()));
    }
    for (role, p) in &r.created {
        say(format!("{role}: {}", p.display()));
    }
}

pub fn issuer(cmd: IssuerCmd) -> Result<ExitCode> {
    match cmd {
        IssuerCmd::RotateSigner { home, days, rot, pass } => {
            let h = IssuerHome::open(&home)?;
            let unlock = LazyPass::with_passphrase(&pass, home_passphrase(&pass, &h)?);
            let opts = RotateOptions { signer_days: days, ..rotate_options(&rot)? };
            let r = unlock.retry(|u| rotation::rotate_signer(&mut h.clone(), u, &opts, clock::now()))?;
            print_rotation(&r);
            Ok(ExitCode::SUCCESS)
        }
        IssuerCmd::RotateCa { home, subject, days, rot, pass } => {
            let h = IssuerHome::open(&home)?;
            let unlock = LazyPass::with_passphrase(&pass, home_passphrase(&pass, &h)?);
            let opts = RotateOptions { ca_days: days, subject, ..rotate_options(&rot)? };
            let r = unlock.retry(|u| rotation::rotate_issuing_ca(&mut h.clone(), u, &opts, clock::now()))?;
            print_rotation(&r);
            Ok(ExitCode::SUCCESS)
        }
        IssuerCmd::RotateRoot { home, subject, days, rot, pass } => {
            let h = IssuerHome::open(&home)?;
            let unlock = LazyPass::with_passphrase(&pass, home_passphrase(&pass, &h)?);
            let opts = RotateOptions { root_days: days, subject, ..rotate_options(&rot)? };
            let r = unlock.retry(|u| rotation::rotate_root(&mut h.clone(), u, &opts, clock::now()))?;
            print_rotation(&r);
            Ok(ExitCode::SUCCESS)
        }
        IssuerCmd::Health { home, at, out } => {
            let h = IssuerHome::open(&home)?;
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
                say_err(format!("hint: run `tka issuer repair --home {}`", home.display()));
            }
            Ok(if report.level() == HealthLevel::Action { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        IssuerCmd::Repair { home, lock } => {
            let mut h = IssuerHome::open(&home)?;
            let r = rotation::repair(&mut h, lock_wait(&lock)?)?;
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
            Ok(if r.remaining.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        IssuerCmd::Show { home, out } => {
            let h = IssuerHome::open(&home)?;
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
        IssuerCmd::Init { .. } => Err(Error::Usage("issuer init is handled elsewhere".into())),
    }
}

/// One `ACTION home PATH: what` row per problem of an issuer home.
fn print_problems(problems: &[rotation::HomeProblem]) {
    for p in problems {
        let todo = if p.repairable() { "tka issuer repair" } else { "restore it from a backup" };
        say_row(&["ACTION", "home", &p.to_string(), todo]);
    }
}

// ----- tka crl -----

pub fn crl(cmd: CrlCmd) -> Result<ExitCode> {
    match cmd {
        CrlCmd::Create { ca_cert, ca_key, revoke, next_update, number, out, force, pass } => {
            if !force && out.exists() {
                return Err(Error::Exists { path: out });
            }
            let now = clock::now();
            let entries = revoke.iter().map(|r| CrlEntry::parse(r, now)).collect::<Result<Vec<_>>>()?;
            let issuer = first_cert(&ca_cert)?;
            let key = LazyPass::new(&pass).load(&ca_key)?;
            let next_update = now + duration(&next_update)?;
            let params =
                CrlParams { this_update: now, next_update, number: tka::crl_number::take_next(&ca_cert, number, now)? };
            let der = tka::issuer::create_crl(&issuer, key.as_ref(), &entries, &params)?;
            write_file(&out, &pem::encode("X509 CRL", &der), force)?;
            say(format!("issuer: {}", issuer.subject));
            say(format!("number: {}", params.number));
            for e in &entries {
                say(format!("revoked: {}{}", e.serial_hex, e.reason.map(|r| format!(" ({r})")).unwrap_or_default()));
            }
            say(format!("next update: {}", clock::rfc3339(params.next_update)));
            say(format!("crl: {}", out.display()));
            Ok(ExitCode::SUCCESS)
        }
    }
}

// ----- tka revocations -----

pub fn revocations(cmd: RevocationsCmd) -> Result<ExitCode> {
    match cmd {
        RevocationsCmd::Create { home, out, next_update, serial, force, pass } => {
            if !force && out.exists() {
                return Err(Error::Exists { path: out });
            }
            let now = clock::now();
            let h = IssuerHome::open(&home)?;
            let mut revoked = tka::issuer::revocation_list::revoked_from_ledger(&h, now)?;
            let from_ledger = revoked.len();
            for s in &serial {
                revoked.push(RevokedToken::parse_arg(s, now)?);
            }
            let passphrase = LazyPass::new(&pass);
            let signer = passphrase.retry(|u| h.token_signer(u))?;
            let (text, claims) =
                tka::issuer::revocation_list::create_list(&h, &signer, revoked, now, now + duration(&next_update)?)?;
            write_file(&out, &(text + "\n"), force)?;
            say(format!("list id: {}", claims.iss));
            say(format!("sequence: {}", claims.seq));
            say(format!("revoked tokens: {} ({from_ledger} from the ledger)", claims.revoked.len()));
            say(format!("next update: {}", clock::rfc3339(claims.next_update)));
            say(format!("revocations: {}", out.display()));
            Ok(ExitCode::SUCCESS)
        }
        RevocationsCmd::Import { file, ca_cert, require_fresh, store, machine, out } => {
            let store = open_store(&store)?;
            // Bounded like everything else the machine reads: CRLs and lists are
            // stored up to 1 MiB, so a larger file is refused unread.
            let bytes = read_limited(&file, tka::store::MAX_REVOCATION_FILE, "revocation file")?;
            let mut ca_certs = Vec::new();
            for c in &ca_cert {
                ca_certs.extend(read_cert_chain(c)?);
            }
            let opts = ImportOptions { require_fresh, ca_certs };
            let ident = |product: &str| identify(product, &machine);
            let now = clock::now();
            tka::activation::observe_clock(&store, now)?;
            let r = revocation::import(&store, &bytes, &opts, &ident, now)?;
            for w in &r.warnings {
                say_err(format!("warning: {w}"));
            }
            if out.json {
                say_json(&json!({
                    "imported": r.imported.iter().map(|i| i.describe()).collect::<Vec<_>>(),
                    "warnings": r.warnings,
                    "deactivated": r.deactivated.iter().map(|(p, e)| json!({"product": p, "error": e.to_string(), "kind": error_kind(e)})).collect::<Vec<_>>(),
                    "still_active": r.still_active,
                }));
            } else {
                for i in &r.imported {
                    say(format!("installed: {}", i.describe()));
                }
                for (p, e) in &r.deactivated {
                    say(format!("{p}: NOT activated any more: {e}"));
                }
                for p in &r.still_active {
                    say(format!("{p}: still activated"));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RevocationsCmd::List { require_fresh, at, store, out } => {
            let store = open_store(&store)?;
            let now = now_or(&at)?;
            let rows = revocation::installed(&store, now)?;
            let bad = rows.iter().any(|r| r.problem.is_some() || (require_fresh && r.stale));
            if out.json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        json!({"kind": r.kind, "id": r.key, "root": r.root, "issuer": r.issuer, "number": r.number,
                               "issued": clock::rfc3339(r.issued), "next_update": r.next_update.map(clock::rfc3339),
                               "entries": r.entries, "stale": r.stale, "problem": r.problem})
                    })
                    .collect();
                say_json(&json!(v));
            } else {
                if rows.is_empty() {
                    say("no revocation data installed");
                }
                for r in &rows {
                    let next = r.next_update.map(clock::rfc3339).unwrap_or_else(|| "-".into());
                    let stale = if r.stale { " STALE" } else { "" };
                    say_row(&[
                        r.kind,
                        &r.issuer,
                        &format!("number {}", r.number.as_deref().unwrap_or("-")),
                        &format!("{} entries", r.entries),
                        &format!("next update {next}{stale}"),
                    ]);
                    if let Some(p) = &r.problem {
                        say(format!("  problem: {p}"));
                    }
                }
            }
            Ok(if bad { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
    }
}

// ----- tka trust add -----

pub fn trust_add(
    root: PathBuf,
    fingerprint: Option<String>,
    cross: Option<PathBuf>,
    products: Option<Vec<String>>,
    all_products: bool,
    store: StoreArgs,
) -> Result<ExitCode> {
    let store = open_store(&store)?;
    let ders = read_cert_chain(&root)?;
    if ders.len() != 1 {
        return Err(Error::Usage(format!(
            "{} holds {} certificates; give exactly one root",
            root.display(),
            ders.len()
        )));
    }
    let cross_der = match &cross {
        Some(c) => {
            let d = read_cert_chain(c)?;
            if d.len() != 1 {
                return Err(Error::Usage(format!(
                    "{} holds {} certificates; give exactly one cross-certificate",
                    c.display(),
                    d.len()
                )));
            }
            d.into_iter().next()
        }
        None => None,
    };
    let opts = TrustRootOptions {
        fingerprint: fingerprint.as_deref(),
        cross: cross_der.as_deref(),
        products: match (&products, all_products) {
            (Some(p), _) => ProductScope::Only(p),
            (None, true) => ProductScope::All,
            (None, false) => ProductScope::Unchanged,
        },
    };
    let added = trust::trust_root(&store, &ders[0], &opts, clock::now())?;
    say(format!("trusted: {}", added.root.subject));
    say(format!("fingerprint: {}", added.root.fingerprint));
    say(format!("vouched for by: {}", added.vouched_by));
    say(format!("products: {}", crate::output::products(added.products.as_deref())));
    Ok(ExitCode::SUCCESS)
}
