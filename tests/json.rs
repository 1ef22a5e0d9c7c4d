//! `--json` (docs/json.md): every command takes it; each command's output
//! has the keys and types its schema in docs/json.md names; failures print
//! `{"error", "kind", "hint"}` on standard output with the command's exit
//! code. The schemas are read from docs/json.md itself, so the document and
//! the output cannot drift apart.

mod sandbox;
mod tools;

use sandbox::{Sandbox, BIN, PRODUCT};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

/// The schemas of docs/json.md by heading: the command (`tka trust list`)
/// or the heading's words (`Failure (every command)`).
fn schemas() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/json.md")).unwrap();
    let mut out = BTreeMap::new();
    let mut heading: Option<String> = None;
    let mut block: Option<String> = None;
    for line in text.lines() {
        match (&mut block, line.trim()) {
            (None, l) if l.starts_with("### ") => heading = Some(l[4..].trim_matches('`').to_string()),
            (None, "```json") => block = Some(String::new()),
            (Some(b), "```") => {
                if let Some(h) = heading.take() {
                    let v = serde_json::from_str(b).unwrap_or_else(|e| panic!("docs/json.md, {h}: {e}"));
                    out.insert(h, v);
                }
                block = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// Where `value` departs from `schema` (docs/json.md's notation), if it does.
fn mismatch(schema: &Value, value: &Value, at: &str) -> Option<String> {
    match schema {
        Value::String(types) => {
            let ok = types.split('|').any(|t| match t {
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "null" => value.is_null(),
                "object" => value.is_object(),
                "array" => value.is_array(),
                "any" => true,
                other => panic!("docs/json.md: unknown type {other:?} at {at}"),
            });
            (!ok).then(|| format!("{at}: {value} is not {types}"))
        }
        Value::Array(elem) => {
            let Some(items) = value.as_array() else { return Some(format!("{at}: {value} is not an array")) };
            items.iter().enumerate().find_map(|(i, v)| mismatch(&elem[0], v, &format!("{at}[{i}]")))
        }
        Value::Object(keys) => {
            // A documented array-or-null field (`"products": ["string"]` may be null: said in the text).
            let Some(obj) = value.as_object() else { return Some(format!("{at}: {value} is not an object")) };
            for (k, s) in keys {
                let (name, optional) = k.strip_suffix('?').map_or((k.as_str(), false), |n| (n, true));
                match obj.get(name) {
                    None if optional => {}
                    None => return Some(format!("{at}: no key {name:?}")),
                    Some(Value::Null) if s.is_array() => {}
                    Some(v) => {
                        if let Some(m) = mismatch(s, v, &format!("{at}.{name}")) {
                            return Some(m);
                        }
                    }
                }
            }
            let extra: Vec<&String> =
                obj.keys().filter(|k| !keys.contains_key(*k) && !keys.contains_key(&format!("{k}?"))).collect();
            (!extra.is_empty()).then(|| format!("{at}: keys not in the schema: {extra:?}"))
        }
        other => panic!("docs/json.md: schema {other} at {at}"),
    }
}

/// Runs `tka ARGS` (with `--json`) and checks its standard output against
/// the schema `name` and its exit code against `code`.
#[track_caller]
fn check(s: &Sandbox, schemas: &BTreeMap<String, Value>, name: &str, args: &[&str], code: i32) -> Value {
    let r = s.tka(args);
    assert_eq!(r.0, code, "tka {args:?}: {r:?}");
    let v: Value = serde_json::from_str(&r.1).unwrap_or_else(|e| panic!("tka {args:?}: not JSON ({e}): {r:?}"));
    let schema = schemas.get(name).unwrap_or_else(|| panic!("docs/json.md has no schema for {name}"));
    if let Some(m) = mismatch(schema, &v, name) {
        panic!("tka {args:?} does not match docs/json.md: {m}\n{}", r.1);
    }
    v
}

/// Each documented command, run with `--json`, prints what its schema says;
/// commands without a document of their own print `{"messages"}`.
#[test]
fn every_documented_command_matches_its_schema() {
    let schemas = schemas();
    let s = Sandbox::new();
    let h = "home";
    let mut run: Vec<&str> = Vec::new();
    let mut c = |name: &'static str, args: &[&str], code: i32| {
        run.push(name);
        check(&s, &schemas, name, args, code)
    };
    let init = c(
        "tka issuer init",
        &["issuer", "init", "--org", "tka", "--home", h, "--root-bits", "2048", "--ca-bits", "2048", "--json"],
        0,
    );
    c("tka trust add", &["trust", "add", "home/root.pem", "--yes", "--json"], 0);
    let list = c("tka trust list", &["trust", "list", "--json"], 0);
    assert_eq!(list[0]["fingerprint"], init["root_fingerprint"], "issuer init shows the fingerprint trust list shows");
    c("tka machine id", &["machine", "id", "--product", PRODUCT, "--json"], 0);
    c(
        "Commands without a document of their own",
        &["request", "create", "--product", PRODUCT, "--out", "req.json", "--json"],
        0,
    );
    c(
        "Commands without a document of their own",
        &["--json", "token", "issue", "--request", "req.json", "--home", h, "--out", "t.jws"],
        0,
    );
    c("tka token inspect", &["token", "inspect", "t.jws", "--json"], 0);
    let v = c("tka token verify", &["token", "verify", "t.jws", "--trust", "home/root.pem", "--json"], 0);
    assert_eq!(v["root_fingerprint"], init["root_fingerprint"]);
    c("tka activate", &["activate", "t.jws", "--json"], 0);
    c("tka status", &["status", "--json"], 0);
    c("tka list", &["list", "--json"], 0);
    c("tka cert inspect", &["cert", "inspect", "home/root.pem", "--json"], 0);
    c("tka cert inspect", &["cert", "inspect", "home/chain.pem", "--json"], 0);
    c("tka cert needs-renewal", &["cert", "needs-renewal", "--home", h, "--json"], 1);
    c("tka issuer show", &["issuer", "show", "--home", h, "--json"], 0);
    c("tka issuer health", &["issuer", "health", "--home", h, "--json"], 0);
    c(
        "tka entitlement add",
        &["entitlement", "add", "--home", h, "--product", PRODUCT, "--machines", "5", "--name", "e", "--json"],
        0,
    );
    c("tka entitlement list", &["entitlement", "list", "--home", h, "--json"], 0);
    s.ok(&["token", "issue", "--request", "req.json", "--home", h, "--entitlement", "e", "--out", "t2.jws"]);
    c("tka entitlement show", &["entitlement", "show", "e", "--home", h, "--json"], 0);
    c("tka ledger list", &["ledger", "list", "--home", h, "--json"], 0);
    c("Commands without a document of their own", &["deactivate", "--product", PRODUCT, "--json"], 0);
    let documented: Vec<&String> = schemas.keys().filter(|k| k.starts_with("tka ")).collect();
    let missing: Vec<&&String> = documented.iter().filter(|k| !run.contains(&k.as_str())).collect();
    assert!(missing.is_empty(), "documented in docs/json.md but not run here: {missing:?}");
}

/// A failure prints `{"error", "kind", "hint"}` on standard output, with
/// the exit code the command has without `--json`: a "no" verdict (1), an
/// I/O error (2), a usage error clap finds (2), a usage error found later (2).
#[test]
fn failures_print_the_error_document_with_the_same_exit_code() {
    let schemas = schemas();
    let s = Sandbox::new();
    let f = "Failure (every command)";
    s.write("garbage.jws", "not a token\n");
    let e = check(&s, &schemas, f, &["activate", "garbage.jws", "--json"], 1);
    assert_eq!(e["kind"], "Malformed");
    assert_eq!(s.tka(&["activate", "garbage.jws"]).0, 1, "the same exit code without --json");
    let e = check(&s, &schemas, f, &["cert", "inspect", "no-such.pem", "--json"], 2);
    assert_eq!(e["kind"], "Io", "{e}");
    let e = check(&s, &schemas, f, &["trust", "list", "--bogus", "--json"], 2);
    assert_eq!(e["kind"], "Usage");
    assert_eq!(e["error"], "unexpected argument '--bogus' found");
    let e = check(&s, &schemas, f, &["--json", "ledger", "list"], 2);
    assert_eq!(e["kind"], "Usage", "{e}");
    assert!(e["error"].as_str().unwrap().starts_with("no ledger"), "{e}");
    let e = check(&s, &schemas, f, &["issuer", "show", "--home", "nowhere", "--json"], 2);
    assert_eq!(e["kind"], "NotAnIssuerHome", "{e}");
    assert_eq!(e["hint"], "create one with `tka issuer init`");
}

/// Every leaf command lists `--json` in its help.
#[test]
fn every_command_takes_json() {
    fn subcommands(path: &[String]) -> Vec<String> {
        let out = Command::new(BIN).args(path).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let Some(list) = help.split("Commands:\n").nth(1) else { return Vec::new() };
        list.lines()
            .take_while(|l| !l.trim().is_empty())
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .filter(|n| n != "help")
            .collect()
    }
    let mut leaves = 0;
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let subs = subcommands(&path);
        if subs.is_empty() {
            let out = Command::new(BIN).args(&path).arg("--help").output().unwrap();
            let help = String::from_utf8_lossy(&out.stdout);
            assert!(help.contains("--json"), "`tka {}` has no --json", path.join(" "));
            leaves += 1;
        }
        todo.extend(subs.into_iter().map(|n| [path.clone(), vec![n]].concat()));
    }
    assert!(leaves > 40, "only {leaves} commands found");
}
