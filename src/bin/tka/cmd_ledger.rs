//! Commands over the issuer ledger: entitlements, the ledger itself, bulk
//! issuance and renewal. Parse, call `tka::ledger`, print; no decisions.
//!
//! Exit codes: 0 success; 1 a refusal by policy (entitlement exhausted, a
//! batch with refused items, nothing to release, already revoked); 2 usage,
//! I/O or ledger errors.

use crate::cli::*;
use crate::io::{write_file, LazyPass};
use crate::output::{printable, printable_json, say, say_document, say_err, say_json, say_row};
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tka::issuer::bulk::{self, BatchOptions, BatchReport, ItemStatus, RenewOptions};
use tka::issuer::issue::{IssueOptions, IssuedToken, TokenLifetime, TokenSigner};
use tka::issuer::IssuerHome;
use tka::keys::SignatureAlgorithm;
use tka::ledger::{self, Entitlement, EntitlementUpdate, Ledger, NewEntitlement, TokenFilter, TokenRecord};
use tka::request::ActivationRequest;
use tka::{clock, Error, IssueRefusal, Result};

fn ledger_path(args: &LedgerArgs) -> Result<PathBuf> {
    match (&args.ledger, &args.home) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(h)) => Ok(ledger::default_path(h)),
        (None, None) => Err(Error::Usage("no ledger: give --home DIR (or TKA_HOME) or --ledger PATH".into())),
    }
}

fn open(args: &LedgerArgs, create: bool) -> Result<Ledger> {
    let path = ledger_path(args)?;
    let mut l = if create { Ledger::open(&path)? } else { Ledger::open_existing(&path)? };
    l.set_busy_timeout(Duration::from_secs(args.lock_timeout))?;
    Ok(l)
}

/// A refusal by policy is a "no" verdict: exit 1 with its one-line error.
fn verdict(r: Result<ExitCode>) -> Result<ExitCode> {
    match r {
        Err(Error::Refused(m)) => {
            say_err(format!("error: {m}"));
            Ok(ExitCode::from(1))
        }
        Err(Error::Issue(r)) => {
            say_err(format!("error: {}", refusal_text(&r)));
            Ok(ExitCode::from(1))
        }
        other => other,
    }
}

/// An issuance refusal as this command prints it: the library's words and,
/// where a flag would help, the flag.
pub fn refusal_text(r: &IssueRefusal) -> String {
    match r {
        IssueRefusal::OutlivesEntitlement { .. } => format!("{r} (--days)"),
        _ => r.to_string(),
    }
}

fn time_or_never(t: Option<i64>) -> String {
    t.map(clock::rfc3339).unwrap_or_else(|| "never".into())
}

fn parse_time(s: &str) -> Result<i64> {
    clock::parse_rfc3339(s).map_err(Error::Usage)
}

fn ent_json(e: &Entitlement) -> serde_json::Value {
    json!({
        "id": e.id, "name": e.name, "product": e.product, "machines": e.machines,
        "used": e.used, "free": e.free(), "features": e.features,
        "expires": e.expires.map(clock::rfc3339),
        "created": clock::rfc3339(e.created_at), "updated": clock::rfc3339(e.updated_at),
        "allow_weak_binding": e.allow_weak_binding,
    })
}

fn print_ent(e: &Entitlement) {
    say(format!("entitlement: {}", e.id));
    if let Some(n) = &e.name {
        say(format!("name: {n}"));
    }
    say(format!("product: {}", e.product));
    say(format!("machines: {} ({} used, {} free)", e.machines, e.used, e.free()));
    say(format!("features: {}", e.features.join(",")));
    say(format!("expires: {}", time_or_never(e.expires)));
    if e.allow_weak_binding {
        say("weak bindings: allowed");
    }
}

pub fn entitlement(cmd: EntitlementCmd) -> Result<ExitCode> {
    let now = clock::now();
    match cmd {
        EntitlementCmd::Add { product, machines, features, expires, name, allow_weak_binding, ledger, out } => {
            let mut l = open(&ledger, true)?;
            let new = NewEntitlement {
                product,
                machines,
                features: features.into_iter().filter(|f| !f.is_empty()).collect(),
                expires: expires.as_deref().map(parse_time).transpose()?,
                name,
                allow_weak_binding,
            };
            let e = l.add_entitlement(&new, now)?;
            if out.json {
                say_json(&ent_json(&e));
            } else {
                print_ent(&e);
            }
            Ok(ExitCode::SUCCESS)
        }
        EntitlementCmd::List { ledger, out } => {
            let l = open(&ledger, false)?;
            let all = l.entitlements()?;
            if out.json {
                say_json(&json!(all.iter().map(ent_json).collect::<Vec<_>>()));
            } else {
                for e in &all {
                    say_row(&[
                        &e.id.to_string(),
                        e.name.as_deref().unwrap_or("-"),
                        &e.product,
                        &format!("{}/{} used", e.used, e.machines),
                        &format!("expires {}", time_or_never(e.expires)),
                    ]);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        EntitlementCmd::Show { entitlement, ledger, out } => {
            let l = open(&ledger, false)?;
            let e = l.entitlement(&entitlement)?;
            let seats = l.seats(e.id)?;
            if out.json {
                let mut j = ent_json(&e);
                j["seats"] = json!(seats
                    .iter()
                    .map(|(cmid, at)| json!({"machine": cmid, "counted": clock::rfc3339(*at)}))
                    .collect::<Vec<_>>());
                say_json(&j);
            } else {
                print_ent(&e);
                for (cmid, at) in &seats {
                    say_row(&[&format!("seat: {cmid}"), &format!("counted {}", clock::rfc3339(*at))]);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        EntitlementCmd::Update { entitlement, machines, features, expires, name, allow_weak_binding, ledger, out } => {
            verdict((|| {
                let mut l = open(&ledger, false)?;
                let upd = EntitlementUpdate {
                    machines,
                    features: features.map(|f| f.into_iter().filter(|x| !x.is_empty()).collect()),
                    expires: match expires.as_deref() {
                        None => None,
                        Some("never") => Some(None),
                        Some(s) => Some(Some(parse_time(s)?)),
                    },
                    name: match name.as_deref() {
                        None => None,
                        Some("none") => Some(None),
                        Some(n) => Some(Some(n.to_string())),
                    },
                    allow_weak_binding: allow_weak_binding.map(|v| v == "yes"),
                };
                let e = l.update_entitlement(&entitlement, &upd, now)?;
                if out.json {
                    say_json(&ent_json(&e));
                } else {
                    print_ent(&e);
                }
                Ok(ExitCode::SUCCESS)
            })())
        }
    }
}

fn token_json(t: &TokenRecord, with_token: bool) -> serde_json::Value {
    let mut j = json!({
        "serial": t.serial, "entitlement": t.entitlement, "product": t.product, "machine": t.cmid,
        "issued": clock::rfc3339(t.issued_at), "not_before": clock::rfc3339(t.not_before),
        "expires": t.expires.map(clock::rfc3339), "signer": t.signer,
        "request_nonce": t.request_nonce, "request_digest": t.request_digest, "replaces": t.replaces,
        "released": t.released_at.map(clock::rfc3339), "revoked": t.revoked_at.map(clock::rfc3339),
        "components": t.components,
    });
    if with_token {
        j["token"] = json!(t.token);
    }
    j
}

fn token_state(t: &TokenRecord) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.released_at.is_some() {
        "released"
    } else {
        "live"
    }
}

/// One CSV field (RFC 4180), safe to open in a spreadsheet: unprintable
/// characters escaped (so a record is one line), a field a spreadsheet would
/// take for a formula (starting with `=`, `+`, `-`, `@`, tab or carriage
/// return) prefixed with `'` (OWASP "CSV injection"), and quoted when it
/// holds a comma, a quote or a leading `'`.
fn csv_field(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let mut v = printable(s).into_owned();
    if formula {
        v.insert(0, '\'');
    }
    if formula || v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

pub fn ledger(cmd: LedgerCmd) -> Result<ExitCode> {
    let now = clock::now();
    match cmd {
        LedgerCmd::List { product, machine, entitlement, expiring_within, ledger, out } => {
            let l = open(&ledger, false)?;
            let entitlement = entitlement.map(|e| l.entitlement(&e).map(|e| e.id)).transpose()?;
            let filter = TokenFilter {
                product,
                machine,
                entitlement,
                expiring_within: expiring_within.map(|w| (now, w)),
                issued_since: None,
            };
            let rows = l.tokens(&filter)?;
            if out.json {
                say_json(&json!(rows.iter().map(|t| token_json(t, false)).collect::<Vec<_>>()));
            } else {
                for t in &rows {
                    say_row(&[
                        &t.serial,
                        &t.product,
                        &t.cmid,
                        &format!("issued {}", clock::rfc3339(t.issued_at)),
                        &format!("expires {}", time_or_never(t.expires)),
                        token_state(t),
                    ]);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCmd::Show { serial, token, ledger, out } => {
            let l = open(&ledger, false)?;
            let t = l.token(&serial)?;
            if out.json {
                say_json(&token_json(&t, true));
            } else if token {
                say(&t.token);
            } else {
                say(format!("serial: {}", t.serial));
                say(format!("product: {}", t.product));
                say(format!("machine: {}", t.cmid));
                say(format!("entitlement: {}", t.entitlement.map(|e| e.to_string()).unwrap_or_else(|| "none".into())));
                say(format!("issued: {}", clock::rfc3339(t.issued_at)));
                say(format!("expires: {}", time_or_never(t.expires)));
                say(format!("signer: {}", t.signer));
                say(format!("state: {}", token_state(&t)));
                if let Some(r) = &t.replaces {
                    say(format!("renews: {r}"));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCmd::Export { format, out, ledger } => {
            let l = open(&ledger, false)?;
            let rows = l.tokens(&TokenFilter::default())?;
            let text = if format == "json" {
                let json =
                    serde_json::to_string_pretty(&json!(rows.iter().map(|t| token_json(t, true)).collect::<Vec<_>>()))
                        .expect("JSON value prints");
                printable_json(&json).into_owned() + "\n"
            } else {
                let mut s = String::from(
                    "serial,entitlement,product,machine,issued,not_before,expires,signer,request_nonce,replaces,released,revoked,components,token\n",
                );
                for t in &rows {
                    let opt = |v: Option<i64>| v.map(clock::rfc3339).unwrap_or_default();
                    let fields = [
                        t.serial.clone(),
                        t.entitlement.map(|e| e.to_string()).unwrap_or_default(),
                        t.product.clone(),
                        t.cmid.clone(),
                        clock::rfc3339(t.issued_at),
                        clock::rfc3339(t.not_before),
                        opt(t.expires),
                        t.signer.clone(),
                        t.request_nonce.clone().unwrap_or_default(),
                        t.replaces.clone().unwrap_or_default(),
                        opt(t.released_at),
                        opt(t.revoked_at),
                        serde_json::to_string(&t.components).expect("components serialize"),
                        t.token.clone(),
                    ];
                    s += &fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
                    s.push('\n');
                }
                s
            };
            match out {
                Some(p) => {
                    write_file(&p, &text, false)?;
                    say(format!("exported: {} tokens to {}", rows.len(), p.display()));
                }
                None => say_document(&text),
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCmd::Release { serial, machine, entitlement, reason, ledger, out } => verdict((|| {
            let mut l = open(&ledger, false)?;
            let r = match (serial, machine) {
                (Some(s), _) => l.release(&s, &reason, now)?,
                (None, Some(m)) => l.release_machine(&m, entitlement.as_deref(), &reason, now)?,
                (None, None) => return Err(Error::Usage("give a SERIAL or --machine CMID".into())),
            };
            let e = l.entitlement(&r.entitlement.to_string())?;
            if out.json {
                say_json(&json!({"released": r.cmid, "entitlement": ent_json(&e), "serial": r.serial,
                                 "reason": r.reason, "at": clock::rfc3339(r.released_at)}));
            } else {
                say(format!("released: {} from {}", r.cmid, e.label()));
                say(format!("machines: {} ({} used, {} free)", e.machines, e.used, e.free()));
            }
            Ok(ExitCode::SUCCESS)
        })()),
        LedgerCmd::Revoke { serial, reason, ledger, out } => verdict((|| {
            let mut l = open(&ledger, false)?;
            let r = l.revoke(&serial, &reason, now)?;
            if out.json {
                say_json(&json!({"revoked": r.serial, "reason": r.reason, "at": clock::rfc3339(r.revoked_at),
                                 "product": r.product, "machine": r.cmid}));
            } else {
                say(format!("revoked: {}", r.serial));
                say("hint: publish a new token revocation list so machines learn of it");
            }
            Ok(ExitCode::SUCCESS)
        })()),
        LedgerCmd::BenchFill { count, ledger } => {
            let mut l = open(&ledger, true)?;
            let name = format!("bench-fill-{}", l.entitlements()?.len() + 1);
            let e = l.bench_fill(&name, count, now)?;
            say(format!("filled: {count} tokens under {}", e.label()));
            say(format!("tokens: {}", l.token_count()?));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `tka token issue`: records the token in the ledger when there is one
/// (`--ledger`, or the home's), counting it against `--entitlement`.
pub fn issue_one(
    record: &IssueLedgerArgs,
    home: Option<&Path>,
    req: &ActivationRequest,
    opts: &IssueOptions,
    signer: &TokenSigner,
    now: i64,
) -> Result<IssuedToken> {
    let path = record.ledger.clone().or_else(|| home.map(ledger::default_path));
    if path.is_none() && record.entitlement.is_some() {
        return Err(Error::Usage("--entitlement needs a ledger: give --home DIR or --ledger PATH".into()));
    }
    let mut l = path.map(|p| Ledger::open(&p)).transpose()?;
    match tka::issuer::issue::issue_one(l.as_mut(), record.entitlement.as_deref(), req, opts, signer, now) {
        Err(Error::Refused(m)) if l.is_some() => {
            say_err(format!("error: {m}"));
            std::process::exit(1);
        }
        Err(Error::Issue(r)) => {
            say_err(format!("error: {}", refusal_text(&r)));
            std::process::exit(1);
        }
        other => other,
    }
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
        bulk::write_token_file(p, &text).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))?;
    }
    const SHOWN: usize = 20;
    let bad: Vec<_> = report.items.iter().filter(|i| i.status != ItemStatus::Ok).collect();
    for i in bad.iter().take(SHOWN) {
        let word = if i.status == ItemStatus::Refused { "refused" } else { "failed" };
        let reason = match &i.reason {
            Some(bulk::ItemReason::Refused(r)) => refusal_text(r),
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
        return Ok(ExitCode::from(2));
    }
    Ok(if report.errors > 0 {
        ExitCode::from(2)
    } else if report.refused > 0 {
        ExitCode::from(1)
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

fn lifetime(common: &BulkTokenArgs, home_days: u32) -> TokenLifetime {
    if common.perpetual {
        TokenLifetime::Perpetual
    } else {
        TokenLifetime::Days(common.days.unwrap_or(home_days))
    }
}

pub fn issue_bulk(a: IssueBulkArgs) -> Result<ExitCode> {
    let now = clock::now();
    let inputs = if let Some(dir) = &a.requests {
        bulk::read_requests_dir(dir)?
    } else if let Some(f) = &a.requests_file {
        let file = crate::io::open_input(f)?;
        let label = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        bulk::read_requests_lines(std::io::BufReader::new(file), &label)?
    } else {
        bulk::read_requests_lines(std::io::stdin().lock(), "stdin")?
    };
    let (signer, home_days) = load_signer(&a.common)?;
    let mut l = open(&a.common.ledger, true)?;
    let opts = BatchOptions {
        entitlement: Some(a.entitlement.clone()),
        issue: IssueOptions {
            lifetime: lifetime(&a.common, home_days),
            features: a.features.into_iter().filter(|f| !f.is_empty()).collect(),
            edition: a.edition,
            entitlement: None,
            match_rule: a.match_rule.map(|m| m.parse()).transpose()?,
            grace_secs: u64::from(a.grace_days) * 86_400,
            renew_after_secs: None,
            alg: SignatureAlgorithm::from_jws_name(&a.common.alg).expect("clap restricts --alg"),
            serial: None,
            allow_weak_binding: a.allow_weak_binding,
        },
        reissue: a.reissue,
        chunk: a.common.chunk,
    };
    let bar = progress_bar(inputs.len() as u64, a.common.quiet);
    let report = bulk::issue_batch_to(&mut l, inputs, &opts, &signer, now, output(&a.common), &|n| bar.inc(n));
    bar.finish_and_clear();
    verdict(report.and_then(|r| finish(&r, &a.common)))
}

pub fn renew_bulk(a: RenewBulkArgs) -> Result<ExitCode> {
    let now = clock::now();
    let (signer, home_days) = load_signer(&a.common)?;
    let mut l = open(&a.common.ledger, false)?;
    let opts = RenewOptions {
        within: a.expiring_within,
        entitlement: a.entitlement,
        product: a.product,
        lifetime: (a.common.days.is_some() || a.common.perpetual).then(|| lifetime(&a.common, home_days)),
        alg: SignatureAlgorithm::from_jws_name(&a.common.alg).expect("clap restricts --alg"),
        chunk: a.common.chunk,
    };
    let bar = progress_bar(0, a.common.quiet);
    let report = bulk::renew_batch_to(&mut l, &opts, &signer, now, output(&a.common), &|n| bar.inc(n));
    bar.finish_and_clear();
    verdict(report.and_then(|r| finish(&r, &a.common)))
}

/// `tka request generate-test` (hidden): synthetic requests for benchmarks.
pub fn generate_test_requests(product: &str, count: u64, first: u64, out: &Path) -> Result<ExitCode> {
    let now = clock::now();
    let mut text = String::with_capacity(count as usize * 200);
    for n in first..first.saturating_add(count) {
        text += &bulk::synthetic_request(product, n, now).to_text()?;
        text.push('\n');
    }
    write_file(out, &text, false)?;
    say(format!("requests: {count} in {}", out.display()));
    Ok(ExitCode::SUCCESS)
}
