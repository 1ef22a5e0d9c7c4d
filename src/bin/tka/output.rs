//! Printing: human lines and `--json` objects.

use serde_json::json;
use std::io::Write;
use tka::activation::ProductStatus;
use tka::clock;
use tka::machine::MachineIdentity;
use tka::verify::VerifiedToken;
use tka::VerifyError;

/// Prints a line to standard output; a closed pipe ends the program quietly.
pub fn say(s: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{}", s.as_ref()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

pub fn say_json(v: &serde_json::Value) {
    say(serde_json::to_string_pretty(v).expect("JSON value prints"));
}

/// A root's product scope in words: the products, or `all`.
pub fn products(scope: Option<&[String]>) -> String {
    scope.map_or_else(|| "all".to_string(), |p| p.join(","))
}

pub fn error_kind(e: &VerifyError) -> String {
    let dbg = format!("{e:?}");
    dbg.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("").to_string()
}

pub fn verified_json(v: &VerifiedToken) -> serde_json::Value {
    let c = &v.claims;
    json!({
        "valid": true,
        "product": c.aud,
        "machine": c.sub,
        "serial": c.jti,
        "features": c.tka.features,
        "edition": c.tka.edition,
        "issued": clock::rfc3339(c.iat),
        "expires": c.exp.map(clock::rfc3339),
        "in_grace": v.in_grace,
        "renew_after": c.tka.renew_after.map(clock::rfc3339),
        "alg": v.alg.jws_name(),
        "signer": v.signer.subject,
        "path": v.path,
        "machine_match": v.machine_match,
    })
}

pub fn print_verified(v: &VerifiedToken) {
    let c = &v.claims;
    say(format!("product: {}", c.aud));
    say(format!("machine: {}", c.sub));
    say(format!("serial: {}", c.jti));
    if !c.tka.features.is_empty() {
        say(format!("features: {}", c.tka.features.join(",")));
    }
    say(format!("expires: {}", c.exp.map(clock::rfc3339).unwrap_or_else(|| "never".into())));
    if v.in_grace {
        say("warning: the token has expired and is in its grace period: renew it");
    }
    if let Some(m) = &v.machine_match {
        say(format!("machine match: {} of {} components ({} required)", m.matched, m.total, m.required));
    }
    say(format!("signer: {}", v.signer.subject));
}

pub fn status_json(st: &ProductStatus) -> serde_json::Value {
    match st {
        ProductStatus::Active(v) => {
            let mut j = verified_json(v);
            j["activated"] = true.into();
            j
        }
        ProductStatus::Invalid { product, reason } => {
            json!({"product": product, "activated": false, "error": reason.to_string(), "kind": error_kind(reason)})
        }
        ProductStatus::NotInstalled { product } => {
            json!({"product": product, "activated": false, "error": "not activated", "kind": "NotActivated"})
        }
    }
}

pub fn print_status(st: &ProductStatus) {
    match st {
        ProductStatus::Active(v) => {
            let exp = v.claims.exp.map(clock::rfc3339).unwrap_or_else(|| "never".into());
            let grace = if v.in_grace { " (IN GRACE PERIOD: renew now)" } else { "" };
            say(format!("{}: activated, expires {exp}{grace}", v.claims.aud));
        }
        ProductStatus::Invalid { product, reason } => say(format!("{product}: NOT activated: {reason}")),
        ProductStatus::NotInstalled { product } => say(format!("{product}: NOT activated: no token installed")),
    }
}

pub fn print_identity(id: &MachineIdentity, explain: bool, show_values: bool, json_out: bool) {
    if json_out {
        let mut j = json!({
            "product": id.product(),
            "cmid": id.cmid(),
            "components": id.components(),
            "environment": id.environment(),
        });
        if explain {
            j["sources"] = json!(id
                .sources()
                .iter()
                .map(|s| {
                    let mut o = json!({"kind": s.kind, "name": s.name, "location": s.location,
                                       "found": s.found(), "hashes": s.hashes, "notes": s.notes});
                    if show_values {
                        o["values"] = json!(s.values());
                    }
                    o
                })
                .collect::<Vec<_>>());
        }
        say_json(&j);
        return;
    }
    say(format!("cmid: {}", id.cmid()));
    say(format!("environment: {}", id.environment()));
    for c in id.components() {
        say(format!("{}: {}", c.kind, c.hash));
    }
    if explain {
        for s in id.sources() {
            let status = if s.found() > 0 { format!("found {}", s.found()) } else { "absent".into() };
            say(format!("source {} ({}) at {}: {status}", s.kind, s.name, s.location));
            for n in &s.notes {
                say(format!("  note: {n}"));
            }
            if show_values {
                for v in s.values() {
                    say(format!("  value: {v}"));
                }
            }
        }
    }
}

/// `tka pkcs11 list`: one block per token, one line per object with its URI.
pub fn print_pkcs11_list(tokens: &[tka::pkcs11::TokenListing], json: bool) {
    if json {
        say_json(&serde_json::to_value(tokens).expect("listing serializes"));
        return;
    }
    if tokens.is_empty() {
        say("no tokens");
    }
    for t in tokens {
        if !t.initialized {
            say(format!("slot {}: uninitialised token ({} {})", t.slot_id, t.manufacturer, t.model));
            continue;
        }
        say(format!(
            "slot {}: token \"{}\" ({} {}, serial {}){}",
            t.slot_id,
            t.label,
            t.manufacturer,
            t.model,
            t.serial,
            if t.login_required && !t.logged_in { " [private keys hidden: use --login]" } else { "" }
        ));
        for o in &t.objects {
            let kind = match (&o.key_type, o.bits) {
                (Some(k), Some(b)) => format!("{} {k}-{b}", o.kind),
                (Some(k), None) => format!("{} {k}", o.kind),
                _ => o.kind.clone(),
            };
            say(format!("  {kind} \"{}\" id {}", o.label, if o.id.is_empty() { "-" } else { &o.id }));
            say(format!("    {}", o.uri));
        }
    }
}
