//! Printing: human lines and `--json` objects.
//!
//! Nothing tka prints can move the cursor, recolour or clear the terminal,
//! or start a line of its own: values from outside (request fields, token
//! claims, certificate subjects, ledger rows, file names, error messages
//! quoting input) may hold control characters, escape sequences, line breaks
//! or bidirectional overrides, and every such character is shown escaped
//! ([`printable`]). [`say`] and [`say_err`] escape whole lines, [`say_row`]
//! each column of a tab-separated row; JSON output escapes them as
//! `\uXXXX`, which leaves the JSON values unchanged.

use serde_json::json;
use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use tka::activation::{BundleRefusal, BundleScan, ProductStatus};
use tka::clock;
use tka::machine::MachineIdentity;
use tka::verify::VerifiedToken;
use tka::VerifyError;

/// Whether `c` must not reach a terminal as it is: a control character
/// (C0 including tab and line feed, DEL, C1 such as the one-byte CSI
/// U+009B), a line or paragraph separator, or an invisible format character
/// (bidirectional embeddings, overrides and isolates, zero-width characters,
/// the byte-order mark, tag characters).
pub fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}' | '\u{08E2}'
            | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// `s` with every [`unprintable`] character escaped as Rust writes it
/// (`\n`, `\t`, `\u{1b}`, `\u{202e}`): safe to print as one line.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unprintable) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !unprintable(c) {
            out.push(c);
        } else if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.extend(c.escape_unicode());
        }
    }
    Cow::Owned(out)
}

/// JSON text with every [`unprintable`] character other than the line
/// breaks between members written as a `\uXXXX` escape (serde_json escapes
/// C0 controls in strings, but not DEL, C1 or format characters). The JSON
/// values are unchanged.
pub fn printable_json(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && unprintable(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c == '\n' || !unprintable(c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    Cow::Owned(out)
}

/// Set once standard output turned out to be a closed pipe.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether standard output is a closed pipe (the reader went away): `main`
/// then ends quietly with exit 0.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Set by `main` for `--json`: every command's output is then one JSON
/// document on standard output (docs/json.md).
static JSON_MODE: AtomicBool = AtomicBool::new(false);
/// Set once a JSON document (or a document tka wrote) went to standard output.
static DOCUMENT_PRINTED: AtomicBool = AtomicBool::new(false);
/// The human lines of a command that has no JSON form of its own, held back
/// in JSON mode and printed by `main` as `{"messages": [...]}`.
static MESSAGES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Turns JSON mode on (`--json` anywhere on the command line).
pub fn set_json_mode() {
    JSON_MODE.store(true, Ordering::Relaxed);
}

/// Whether `--json` was given.
pub fn json_mode() -> bool {
    JSON_MODE.load(Ordering::Relaxed)
}

/// Whether the command already printed its JSON document (or a document of
/// its own, such as an export).
pub fn document_printed() -> bool {
    DOCUMENT_PRINTED.load(Ordering::Relaxed)
}

/// The human lines held back in JSON mode, taken.
pub fn take_messages() -> Vec<String> {
    std::mem::take(&mut *MESSAGES.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Prints `text` (a human line), or holds it back in JSON mode.
fn write_line(text: &str) {
    if json_mode() {
        MESSAGES.lock().unwrap_or_else(|e| e.into_inner()).push(text.trim_end_matches('\n').to_string());
        return;
    }
    write_out(text);
}
/// Set once a document written for `--out -` took standard output.
static STDOUT_IS_DOCUMENT: AtomicBool = AtomicBool::new(false);

/// Writes `text` as it is (already made printable) to standard output; after
/// a closed pipe, nothing more is written. Once a `--out -` document took
/// standard output ([`say_out_document`]), what follows goes to standard
/// error, so the document stays whole.
fn write_out(text: &str) {
    if STDOUT_IS_DOCUMENT.load(Ordering::Relaxed) {
        eprint!("{text}");
        return;
    }
    if stdout_closed() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }
}

/// Prints a line to standard output, unprintable characters escaped; into a
/// closed pipe, nothing.
pub fn say(s: impl AsRef<str>) {
    write_line(&format!("{}\n", printable(s.as_ref())));
}

/// Prints one row of tab-separated columns to standard output, each column
/// made [`printable`] (so a tab in a value cannot add a column).
pub fn say_row(cols: &[&str]) {
    let cols: Vec<Cow<'_, str>> = cols.iter().map(|c| printable(c)).collect();
    write_line(&format!("{}\n", cols.join("\t")));
}

/// Prints a line to standard error, unprintable characters escaped.
pub fn say_err(s: impl AsRef<str>) {
    eprintln!("{}", printable(s.as_ref()));
}

/// Prints JSON text (several lines), unprintable characters escaped.
pub fn say_json_text(text: &str) {
    DOCUMENT_PRINTED.store(true, Ordering::Relaxed);
    write_out(&format!("{}\n", printable_json(text.trim_end())));
}

/// Prints a JSON value, pretty-printed.
pub fn say_json(v: &serde_json::Value) {
    say_json_text(&serde_json::to_string_pretty(v).expect("JSON value prints"));
}

/// Prints a document tka wrote (CSV or JSON export) as it is: its values
/// were made printable when it was built.
pub fn say_document(text: &str) {
    DOCUMENT_PRINTED.store(true, Ordering::Relaxed);
    write_out(text);
}

/// Prints a document meant for a file (`--out -`) on standard output: the
/// lines that report on it go to standard error from then on.
pub fn say_out_document(text: &str) {
    write_out(text);
    STDOUT_IS_DOCUMENT.store(true, Ordering::Relaxed);
}

/// A root's product scope in words: the products, or `all`.
pub fn products(scope: Option<&[String]>) -> String {
    scope.map_or_else(|| "all".to_string(), |p| p.join(","))
}

/// The JSON form of a failure: `{"error", "kind", "hint"}` (docs/json.md).
pub fn error_json(message: &str, kind: &str, hint: Option<&str>) -> serde_json::Value {
    json!({"error": message, "kind": kind, "hint": hint})
}

/// The kind of a library error for JSON: its variant name, with the
/// variant of a wrapped error after a dot (`Store.Corrupt`,
/// `Issue.EntitlementFull`); a verification failure by its own name
/// (`UntrustedRoot`), as `token verify --json` and `status --json` name it.
pub fn error_kind_of(e: &tka::Error) -> String {
    if let tka::Error::Verify(v) = e {
        return error_kind(v);
    }
    let dbg = format!("{e:?}");
    let mut kinds = Vec::new();
    let mut rest = dbg.as_str();
    loop {
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            break;
        }
        rest = &rest[name.len()..];
        kinds.push(name);
        match rest.strip_prefix('(') {
            Some(inner) => rest = inner,
            None => break,
        }
    }
    kinds.join(".")
}

/// The variant name of a verification failure (`UntrustedRoot`).
pub fn error_kind(e: &VerifyError) -> String {
    let dbg = format!("{e:?}");
    dbg.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("").to_string()
}

pub fn verified_json(v: &VerifiedToken) -> serde_json::Value {
    let c = &v.claims;
    json!({
        "valid": true,
        "product": c.aud,
        "cmid": c.sub,
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
        "root_fingerprint": v.root_fingerprint,
        "machine_match": v.machine_match,
    })
}

/// Where in a bundle the installed token was, and what came before it.
pub fn bundle_json(line: u64, scan: &BundleScan) -> serde_json::Value {
    let refusal =
        |r: &Option<BundleRefusal>| r.as_ref().map(|r| json!({"line": r.line, "reason": r.reason.to_string()}));
    json!({
        "line": line,
        "lines_read": scan.lines,
        "considered": scan.considered,
        "refused": scan.refused,
        "first_refused": refusal(&scan.first_refused),
        "last_refused": refusal(&scan.last_refused),
        "other": scan.other,
        "malformed": scan.malformed,
        "unchecked": scan.unchecked,
    })
}

/// `bundle: line N (...)` and the reasons earlier lines for this machine were refused.
pub fn print_bundle_scan(line: u64, scan: &BundleScan) {
    say(format!(
        "bundle: line {line} of {} read; {} labelled for this machine, {} refused; {} for others; {} not bundle lines",
        scan.lines, scan.considered, scan.refused, scan.other, scan.malformed
    ));
    if let Some(r) = &scan.first_refused {
        say(format!("refused: line {}: {}", r.line, r.reason));
    }
    if let (Some(r), true) = (&scan.last_refused, scan.refused > 1) {
        say(format!("refused: line {}: {}", r.line, r.reason));
    }
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
    say(format!("root fingerprint: {}", v.root_fingerprint));
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
            say(format!("{}: activated, expires {exp}{grace}, root fingerprint {}", v.claims.aud, v.root_fingerprint));
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
            "binding": id.binding_label(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_c1_and_format_characters_only() {
        assert_eq!(printable("café Ünïcode"), "café Ünïcode");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert_eq!(printable("a\u{1b}[2J\nb\r\tc\u{7f}"), "a\\u{1b}[2J\\nb\\r\\tc\\u{7f}");
        // The one-byte CSI (C1), a right-to-left override, a zero-width space, a tag character.
        assert_eq!(printable("\u{9b}31m\u{202e}x\u{200b}\u{e0041}"), "\\u{9b}31m\\u{202e}x\\u{200b}\\u{e0041}");
    }

    #[test]
    fn printable_json_keeps_values_and_structure() {
        let v = serde_json::json!({"m": "a\u{1b}\n\u{9b}\u{202e}\u{e0041}"});
        let text = serde_json::to_string_pretty(&v).unwrap();
        let safe = printable_json(&text);
        assert!(!safe.chars().any(|c| c != '\n' && unprintable(c)), "{safe}");
        assert_eq!(safe.lines().count(), text.lines().count());
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap(), v);
    }
}
