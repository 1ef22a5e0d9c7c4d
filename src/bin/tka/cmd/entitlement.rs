//! `tka entitlement`: counted entitlements in the issuer ledger.

use crate::args::{JsonArg, LedgerArgs};
use crate::outcome::CmdResult;
use crate::output::{say, say_json, say_row};
use clap::Subcommand;
use serde_json::json;
use std::process::ExitCode;
use tka::ledger::{Entitlement, EntitlementUpdate, KeyState, NewEntitlement};
use tka::product_key::ProductKey;
use tka::{clock, Error, Result};

#[derive(Subcommand, Debug)]
pub enum EntitlementCmd {
    /// Add an entitlement: a product and how many machines it may activate
    #[command(
        after_help = "EXAMPLE:\n  tka entitlement add --home ~/tka-issuer --product example-pro --machines 50 --features reports,export --name acme-2028"
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
        /// Also create a product key for online activation (`tka serve`), printed once as
        /// `key: XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`; the ledger keeps only its hash
        #[arg(long)]
        key: bool,
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Give an entitlement a new product key (printed once); the old key stops working at once
    #[command(after_help = "EXAMPLE:\n  tka entitlement rotate-key --home ~/tka-issuer acme-2027")]
    RotateKey {
        /// Id or name
        entitlement: String,
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Disable an entitlement's product key: it activates nothing until rotate-key gives a new one
    #[command(after_help = "EXAMPLE:\n  tka entitlement disable-key --home ~/tka-issuer acme-2027")]
    DisableKey {
        /// Id or name
        entitlement: String,
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// List entitlements with their seats
    #[command(after_help = "EXAMPLES:\n  tka entitlement list --home ~/tka-issuer")]
    List {
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Show an entitlement (id or name), its seats used and free, and its machines
    #[command(after_help = "EXAMPLES:\n  tka entitlement show acme-2027 --home ~/tka-issuer --json")]
    Show {
        /// Id or name
        entitlement: String,
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Change an entitlement's machine count, features, expiry or name
    #[command(after_help = "EXAMPLES:\n  tka entitlement update acme-2027 --home ~/tka-issuer --machines 60")]
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

pub fn time_or_never(t: Option<i64>) -> String {
    t.map(clock::rfc3339).unwrap_or_else(|| "never".into())
}

fn parse_time(s: &str) -> Result<i64> {
    clock::parse_rfc3339(s).map_err(Error::Usage)
}

pub fn ent_json(e: &Entitlement) -> serde_json::Value {
    json!({
        "id": e.id, "name": e.name, "product": e.product, "machines": e.machines,
        "used": e.used, "free": e.free(), "features": e.features,
        "expires": e.expires.map(clock::rfc3339),
        "created": clock::rfc3339(e.created_at), "updated": clock::rfc3339(e.updated_at),
        "allow_weak_binding": e.allow_weak_binding, "key": e.key,
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
    match e.key {
        KeyState::None => {}
        KeyState::Active => say("product key: active"),
        KeyState::Disabled => say("product key: disabled"),
    }
}

/// Prints an entitlement with its new key (the only time the key is shown).
fn print_with_key(e: &Entitlement, key: &ProductKey, json: bool) {
    if json {
        let mut j = ent_json(e);
        j["product_key"] = json!(key.to_string());
        say_json(&j);
    } else {
        print_ent(e);
        say(format!("key: {key}"));
    }
}

pub fn run(cmd: EntitlementCmd) -> CmdResult {
    let now = clock::now();
    match cmd {
        EntitlementCmd::Add { product, machines, features, expires, name, allow_weak_binding, key, ledger, out } => {
            let mut l = ledger.open(true)?;
            let new = NewEntitlement {
                product,
                machines,
                features: features.into_iter().filter(|f| !f.is_empty()).collect(),
                expires: expires.as_deref().map(parse_time).transpose()?,
                name,
                allow_weak_binding,
            };
            if key {
                let (e, key) = l.add_entitlement_with_key(&new, now)?;
                print_with_key(&e, &key, out.json);
                return Ok(ExitCode::SUCCESS);
            }
            let e = l.add_entitlement(&new, now)?;
            if out.json {
                say_json(&ent_json(&e));
            } else {
                print_ent(&e);
            }
            Ok(ExitCode::SUCCESS)
        }
        EntitlementCmd::RotateKey { entitlement, ledger, out } => {
            let mut l = ledger.open(false)?;
            let (e, key) = l.new_key(&entitlement, now)?;
            print_with_key(&e, &key, out.json);
            Ok(ExitCode::SUCCESS)
        }
        EntitlementCmd::DisableKey { entitlement, ledger, out } => {
            let mut l = ledger.open(false)?;
            let e = l.disable_key(&entitlement, now)?;
            if out.json {
                say_json(&ent_json(&e));
            } else {
                print_ent(&e);
            }
            Ok(ExitCode::SUCCESS)
        }
        EntitlementCmd::List { ledger, out } => {
            let l = ledger.open(false)?;
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
            let l = ledger.open(false)?;
            let e = l.entitlement(&entitlement)?;
            let seats = l.seats(e.id)?;
            if out.json {
                let mut j = ent_json(&e);
                j["seats"] = json!(seats
                    .iter()
                    .map(|(cmid, at)| json!({"cmid": cmid, "counted": clock::rfc3339(*at)}))
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
            Ok((|| -> tka::Result<ExitCode> {
                let mut l = ledger.open(false)?;
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
            })()?)
        }
    }
}
