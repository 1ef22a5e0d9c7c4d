//! `tka ledger`: the issuer ledger's tokens, releases and revocations.

use super::entitlement::{ent_json, time_or_never};
use crate::args::{JsonArg, LedgerArgs};
use crate::io::write_file;
use crate::outcome::CmdResult;
use crate::output::{printable, printable_json, say, say_document, say_json, say_row};
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tka::ledger::{Ledger, LedgerLocation, TokenFilter, TokenRecord};
use tka::{clock, Error};

#[derive(Subcommand, Debug)]
pub enum LedgerCmd {
    /// List issued tokens
    #[command(
        after_help = "EXAMPLES:\n  tka ledger list --home ~/tka-issuer\n  tka ledger list --home ~/tka-issuer --product example-pro --json"
    )]
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
    #[command(after_help = "EXAMPLES:\n  tka ledger show SERIAL --home ~/tka-issuer")]
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
    #[command(
        after_help = "EXAMPLES:\n  tka ledger export --home ~/tka-issuer --format csv > ledger.csv\n  tka ledger export --home ~/tka-issuer --format json --out ledger.json"
    )]
    Export {
        /// Format
        #[arg(long, value_parser = ["csv", "json"])]
        format: String,
        /// Output file (`-`: standard output) [default: standard output]
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// Free a machine's seat (decommissioned, transferred) and record why
    #[command(
        after_help = "EXAMPLES:\n  tka ledger release SERIAL --reason \"decommissioned\" --home ~/tka-issuer\n  tka ledger release --machine ABCD-EFGH-JKMN-PQRS-T --reason \"replaced\" --home ~/tka-issuer"
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
    #[command(after_help = "EXAMPLES:\n  tka ledger revoke SERIAL --reason stolen --home ~/tka-issuer")]
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
    /// Copy a ledger (an SQLite file) into an empty PostgreSQL database, in one transaction, verified
    #[command(
        after_help = "Every entitlement, seat, token, release and revocation is copied with its id and serial; a target\nthat holds anything is refused. Before the copy commits, the counts per table and per entitlement\nare compared on both sides: any difference rolls it back. The source is only read.\n\nEXAMPLE:\n  tka ledger migrate --from ~/tka-issuer/ledger.sqlite --to postgres://tka@db.example:5432/tka"
    )]
    Migrate {
        /// The ledger to copy (an SQLite file, or a URL)
        #[arg(long, value_name = "PATH|URL")]
        from: String,
        /// The empty ledger to copy it into (postgres://USER[:PASSWORD]@HOST[:PORT]/DB, or a new SQLite file)
        #[arg(long, value_name = "URL|PATH")]
        to: String,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Fill a ledger with COUNT synthetic tokens, unsigned (benchmarks only)
    #[command(hide = true)]
    BenchFill {
        /// How many tokens
        #[arg(long)]
        count: u64,
        /// 49-byte token texts instead of ~1.2 KB ones (~0.5 KB of disk per token instead of ~2.2 KB)
        #[arg(long)]
        lean: bool,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
}

fn token_json(t: &TokenRecord, with_token: bool) -> serde_json::Value {
    let mut j = json!({
        "serial": t.serial, "entitlement": t.entitlement, "product": t.product, "cmid": t.cmid,
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

pub fn run(cmd: LedgerCmd) -> CmdResult {
    let now = clock::now();
    match cmd {
        LedgerCmd::List { product, machine, entitlement, expiring_within, ledger, out } => {
            let l = ledger.open(false)?;
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
            let l = ledger.open(false)?;
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
            let l = ledger.open(false)?;
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
            match out.filter(|p| !crate::io::is_stdio(p)) {
                Some(p) => {
                    write_file(&p, &text, false)?;
                    say(format!("exported: {} tokens to {}", rows.len(), p.display()));
                }
                None => say_document(&text),
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCmd::Release { serial, machine, entitlement, reason, ledger, out } => {
            Ok((|| -> tka::Result<ExitCode> {
                let mut l = ledger.open(false)?;
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
            })()?)
        }
        LedgerCmd::Revoke { serial, reason, ledger, out } => Ok((|| -> tka::Result<ExitCode> {
            let mut l = ledger.open(false)?;
            let r = l.revoke(&serial, &reason, now)?;
            if out.json {
                say_json(&json!({"revoked": r.serial, "reason": r.reason, "at": clock::rfc3339(r.revoked_at),
                                 "product": r.product, "cmid": r.cmid}));
            } else {
                say(format!("revoked: {}", r.serial));
                say("hint: publish a new token revocation list so machines learn of it");
            }
            Ok(ExitCode::SUCCESS)
        })()?),
        LedgerCmd::Migrate { from, to, out } => {
            let (from, to) = (LedgerLocation::parse(&from), LedgerLocation::parse(&to));
            if from == to {
                return Err(Error::Usage("--from and --to name the same ledger".into()).into());
            }
            let source = Ledger::open_location(&from, false)?;
            let target = Ledger::open_location(&to, true)?;
            let moved = source.copy_into(&target)?;
            if out.json {
                let tables: serde_json::Map<String, serde_json::Value> =
                    moved.iter().map(|(t, n)| (t.to_string(), (*n).into())).collect();
                say_json(&json!({"from": from.display(), "to": to.display(), "moved": tables}));
            } else {
                say(format!("from: {from}"));
                say(format!("to: {to}"));
                for (t, n) in &moved {
                    say(format!("{t}: {n}"));
                }
                say("verified: counts per table and per entitlement are equal");
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCmd::BenchFill { count, lean, ledger } => {
            let mut l = ledger.open(true)?;
            let name = format!("bench-fill-{}", l.entitlements()?.len() + 1);
            let e = l.bench_fill(&name, count, lean, now)?;
            say(format!("filled: {count} tokens under {}", e.label()));
            say(format!("tokens: {}", l.token_count()?));
            Ok(ExitCode::SUCCESS)
        }
    }
}
