//! Bulk issuance and renewal: through the library (per-item reports,
//! idempotent re-runs, limits) and through the `tka` binary (exit codes,
//! two processes on one ledger, a full disk and a kill mid-batch).
#![cfg(feature = "issuer")]

mod common;
#[path = "common/pg.rs"]
mod pg;
mod tools;

use common::*;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tka::issuer::bulk::{
    issue_batch, renew_batch, synthetic_request, token_file_name, BatchInput, BatchOptions, ItemStatus, RenewOptions,
    Seat,
};
use tka::issuer::issue::{IssueOptions, TokenLifetime, TokenSigner};
use tka::ledger::{Ledger, NewEntitlement, TokenFilter};
use tka::IssueRefusal;

const BIN: &str = env!("CARGO_BIN_EXE_tka");

fn signer() -> TokenSigner {
    let p = pki();
    TokenSigner::new(Box::new(test_key("signer")), vec![p.signer.clone(), p.int.clone()]).unwrap()
}

fn setup(dir: &Path, machines: u32) -> Ledger {
    with_acme(Ledger::open(&dir.join("ledger.sqlite")).unwrap(), machines)
}

fn with_acme(mut l: Ledger, machines: u32) -> Ledger {
    l.add_entitlement(
        &NewEntitlement { product: PRODUCT.into(), machines, name: Some("acme".into()), ..Default::default() },
        NOW,
    )
    .unwrap();
    l
}

fn inputs(range: std::ops::Range<u64>) -> Vec<BatchInput> {
    range.map(|n| BatchInput { source: format!("req-{n}"), request: Ok(synthetic_request(PRODUCT, n, NOW)) }).collect()
}

fn opts() -> BatchOptions {
    BatchOptions { entitlement: Some("acme".into()), chunk: 3, ..Default::default() }
}

/// [`opts`] with tokens of this lifetime.
fn lasting(lifetime: TokenLifetime) -> BatchOptions {
    BatchOptions { issue: IssueOptions { lifetime, ..Default::default() }, ..opts() }
}

/// Renewal of what expires within `within` seconds, two items a transaction.
fn renewing(within: i64) -> RenewOptions {
    RenewOptions {
        within,
        entitlement: None,
        product: None,
        lifetime: None,
        alg: tka::keys::SignatureAlgorithm::Ps256,
        chunk: 2,
    }
}

/// Synthetic machine 2 with a network card it did not have (synthetic
/// requests' MACs are locally administered, so dropped): the same CMID
/// (from the machine id and DMI UUID), other hardware.
fn machine_2_with_a_new_card() -> tka::request::ActivationRequest {
    let raw = [
        ("mid".to_string(), format!("{:032x}", 2 * 0x9e37_79b9_7f4a_7c15u128 + 1)),
        ("dmi".to_string(), "00000000-0000-4000-8000-000000000002".to_string()),
        ("mac".to_string(), "00:1b:21:aa:bb:02".to_string()),
    ];
    tka::request::ActivationRequest::new(&tka::machine::MachineIdentity::from_raw(PRODUCT, &raw), NOW, None)
}

fn files(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fs::read_dir(dir)
        .map(|r| {
            r.map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), fs::read_to_string(e.path()).unwrap())
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn bad_items_are_reported_one_by_one_and_the_rest_proceed() {
    let d = tempfile::tempdir().unwrap();
    let mut l = setup(d.path(), 4);
    let mut batch = inputs(0..5);
    batch.insert(1, BatchInput { source: "garbage".into(), request: Err("malformed request: nope".into()) });
    batch.push(BatchInput { source: "dup".into(), request: batch[0].request.clone() });
    let mut same_machine = synthetic_request(PRODUCT, 2, NOW + 1);
    same_machine.hostname = Some("again".into());
    batch.push(BatchInput { source: "same-machine".into(), request: Ok(same_machine) });
    batch.push(BatchInput { source: "other".into(), request: Ok(synthetic_request("other-product", 9, NOW)) });
    let out = d.path().join("out");
    let r = issue_batch(&mut l, batch, &opts(), &signer(), NOW, Some(&out), &|_| {}).unwrap();

    let reasons: Vec<Option<String>> = r.items.iter().map(|i| i.reason_text()).collect();
    let got: Vec<(&str, ItemStatus, Option<&str>)> =
        r.items.iter().zip(&reasons).map(|(i, t)| (i.source.as_str(), i.status, t.as_deref())).collect();
    let exhausted = "entitlement 1 (\"acme\") is exhausted: all 4 machines are counted (4 of 4 used); \
                     release a machine or raise the count";
    let dup_machine =
        format!("duplicate: machine {} is already asked for by item 4", synthetic_request(PRODUCT, 2, NOW).cmid);
    assert_eq!(
        got,
        vec![
            ("req-0", ItemStatus::Ok, None),
            ("garbage", ItemStatus::Refused, Some("malformed request: nope")),
            ("req-1", ItemStatus::Ok, None),
            ("req-2", ItemStatus::Ok, None),
            ("req-3", ItemStatus::Ok, None),
            ("req-4", ItemStatus::Refused, Some(exhausted)),
            ("dup", ItemStatus::Refused, Some("duplicate: the same request as item 1")),
            ("same-machine", ItemStatus::Refused, Some(dup_machine.as_str())),
            (
                "other",
                ItemStatus::Refused,
                Some("wrong product: the request is for \"other-product\", entitlement 1 (\"acme\") is for \"example-pro\"")
            ),
        ]
    );
    assert_eq!((r.total, r.ok, r.refused, r.errors, r.new_seats, r.signed), (9, 4, 5, 0, 4, 4));
    // The reasons are typed: the single issuance path's refusals.
    let refusal = |n: usize| r.items[n].reason.as_ref().and_then(|x| x.refusal()).cloned();
    assert_eq!(
        refusal(5),
        Some(IssueRefusal::EntitlementFull { entitlement: "entitlement 1 (\"acme\")".into(), machines: 4, used: 4 })
    );
    assert_eq!(refusal(6), Some(IssueRefusal::DuplicateRequest { first: 1 }));
    assert_eq!(
        refusal(8),
        Some(IssueRefusal::WrongProduct {
            requested: "other-product".into(),
            entitlement: "entitlement 1 (\"acme\")".into(),
            product: PRODUCT.into()
        })
    );
    assert_eq!(l.entitlement("acme").unwrap().used, 4);
    assert_eq!(l.token_count().unwrap(), 4);
    // One file per ok item, holding the recorded token.
    let written = files(&out);
    assert_eq!(written.len(), 4);
    for it in r.items.iter().filter(|i| i.status == ItemStatus::Ok) {
        let rec = l.token(it.serial.as_ref().unwrap()).unwrap();
        assert_eq!(it.file.as_ref().unwrap(), &out.join(token_file_name(PRODUCT, &rec.cmid)));
        assert_eq!(fs::read_to_string(it.file.as_ref().unwrap()).unwrap(), rec.token + "\n");
    }
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["items"][5]["status"], "refused");
    assert_eq!(json["items"][0]["seat"], "new");
}

#[test]
fn rerunning_a_batch_consumes_nothing_and_returns_the_same_tokens() {
    let d = tempfile::tempdir().unwrap();
    let mut l = setup(d.path(), 10);
    let out = d.path().join("out");
    let s = signer();
    let batch = inputs(0..7);
    let first = issue_batch(&mut l, batch.clone(), &opts(), &s, NOW, Some(&out), &|_| {}).unwrap();
    assert_eq!((first.ok, first.new_seats, first.signed), (7, 7, 7));
    let files1 = files(&out);
    fs::remove_file(first.items[2].file.as_ref().unwrap()).unwrap(); // lost file

    let again = issue_batch(&mut l, batch.clone(), &opts(), &s, NOW + 60, Some(&out), &|_| {}).unwrap();
    assert_eq!((again.ok, again.new_seats, again.signed, again.existing), (7, 0, 0, 7));
    assert!(again.items.iter().all(|i| i.existing && i.seat == Some(Seat::Counted)));
    let serials = |r: &tka::issuer::bulk::BatchReport| r.items.iter().map(|i| i.serial.clone()).collect::<Vec<_>>();
    assert_eq!(serials(&again), serials(&first));
    assert_eq!(files(&out), files1, "the missing file is rewritten from the ledger, the rest unchanged");
    assert_eq!(l.entitlement("acme").unwrap().used, 7);
    assert_eq!(l.token_count().unwrap(), 7);

    // --reissue: fresh tokens, still no seat consumed.
    let o = BatchOptions { reissue: true, ..opts() };
    let fresh = issue_batch(&mut l, batch, &o, &s, NOW + 120, Some(&out), &|_| {}).unwrap();
    assert_eq!((fresh.ok, fresh.new_seats, fresh.signed, fresh.existing), (7, 0, 7, 0));
    assert!(serials(&fresh).iter().zip(serials(&first)).all(|(a, b)| a != &b));
    assert_eq!(l.entitlement("acme").unwrap().used, 7);
    assert_eq!(l.token_count().unwrap(), 14);
    let all: HashSet<String> = l.tokens(&TokenFilter::default()).unwrap().into_iter().map(|t| t.serial).collect();
    assert_eq!(all.len(), 14);
}

#[test]
fn renewal_from_the_ledger_is_idempotent() {
    let d = tempfile::tempdir().unwrap();
    renewal_is_idempotent(setup(d.path(), 10), d.path());
}

/// The same renewal on a PostgreSQL ledger.
#[test]
fn postgres_renewal_from_the_ledger_is_idempotent() {
    let Some(url) = pg::database("renewal") else { return };
    let d = tempfile::tempdir().unwrap();
    renewal_is_idempotent(with_acme(Ledger::open_url(&url).unwrap(), 10), d.path());
}

fn renewal_is_idempotent(mut l: Ledger, d: &Path) {
    let s = signer();
    issue_batch(&mut l, inputs(0..3), &lasting(TokenLifetime::Days(20)), &s, NOW, None, &|_| {}).unwrap();
    issue_batch(&mut l, inputs(3..5), &lasting(TokenLifetime::Days(90)), &s, NOW, None, &|_| {}).unwrap();
    let old: Vec<_> = l.tokens(&TokenFilter::default()).unwrap();
    let victim = old.iter().find(|t| t.expires == Some(NOW + 20 * DAY)).unwrap().serial.clone();
    l.revoke(&victim, "stolen", NOW).unwrap();

    let ro = renewing(10 * DAY);
    let out = d.join("renewed");
    let at = NOW + 15 * DAY;
    let r = renew_batch(&mut l, &ro, &s, at, Some(&out), &|_| {}).unwrap();
    assert_eq!(
        (r.total, r.ok, r.new_seats, r.signed),
        (2, 2, 0, 2),
        "two live 20-day tokens are due; the revoked one is not"
    );
    assert_eq!(files(&out).len(), 2);
    for it in &r.items {
        let rec = l.token(it.serial.as_ref().unwrap()).unwrap();
        assert_eq!(rec.expires, Some(at + 20 * DAY), "keeps the old lifetime");
        assert!(rec.replaces.is_some());
        assert_eq!(rec.issued_at, at);
    }
    assert_eq!(l.entitlement("acme").unwrap().used, 5);
    let again = renew_batch(&mut l, &ro, &s, at, Some(&out), &|_| {}).unwrap();
    assert_eq!(again.total, 0, "nothing is due any more");
}

/// Renewed again and again within one window, each machine is due once
/// per run, through its newest live token only (the tokens renewed before
/// are live too, expiring in the window, and are not due); a machine that
/// also holds a token expiring after the window, or never, is not due.
#[test]
fn each_machine_is_due_once_through_its_newest_token_however_often_renewed() {
    let d = tempfile::tempdir().unwrap();
    let mut l = setup(d.path(), 10);
    let s = signer();
    issue_batch(&mut l, inputs(0..4), &lasting(TokenLifetime::Days(20)), &s, NOW, None, &|_| {}).unwrap();
    // Machine 3 gets a second token, a perpetual one, for another request.
    let mut again = synthetic_request(PRODUCT, 3, NOW + 1);
    again.hostname = Some("again".into());
    let perpetual = lasting(TokenLifetime::Perpetual);
    let p = issue_batch(
        &mut l,
        vec![BatchInput { source: "again".into(), request: Ok(again) }],
        &perpetual,
        &s,
        NOW + 1,
        None,
        &|_| {},
    )
    .unwrap();
    assert_eq!(p.ok, 1);
    let ro = renewing(60 * DAY);
    let mut renewed: Vec<String> = Vec::new();
    for round in 0..4i64 {
        let at = NOW + 15 * DAY + round;
        let r = renew_batch(&mut l, &ro, &s, at, None, &|_| {}).unwrap();
        assert_eq!((r.total, r.ok, r.new_seats), (3, 3, 0), "round {round}: machines 0-2, once each");
        let replaced: HashSet<String> =
            r.items.iter().map(|i| l.token(i.serial.as_ref().unwrap()).unwrap().replaces.unwrap()).collect();
        if round == 0 {
            assert!(replaced.iter().all(|s| l.token(s).unwrap().replaces.is_none()), "the first tokens");
        } else {
            assert_eq!(replaced, renewed.iter().cloned().collect::<HashSet<_>>(), "round {round}: the last renewals");
        }
        renewed = r.items.iter().map(|i| i.serial.clone().unwrap()).collect();
    }
    assert_eq!(l.token_count().unwrap(), 5 + 4 * 3);
}

/// After many renewals the seat rule still reads the seat's first token
/// (a renewal binds what it renewed) and names it when the hardware
/// changed.
#[test]
fn a_renewed_seat_names_its_first_token_when_the_hardware_changed() {
    let d = tempfile::tempdir().unwrap();
    let mut l = setup(d.path(), 10);
    let s = signer();
    let first = issue_batch(&mut l, inputs(2..3), &lasting(TokenLifetime::Days(20)), &s, NOW, None, &|_| {}).unwrap();
    let first_serial = first.items[0].serial.clone().unwrap();
    let ro = renewing(60 * DAY);
    for round in 0..3i64 {
        assert_eq!(renew_batch(&mut l, &ro, &s, NOW + DAY + round, None, &|_| {}).unwrap().ok, 1);
    }
    let moved = machine_2_with_a_new_card();
    let c = issue_batch(
        &mut l,
        vec![BatchInput { source: "moved".into(), request: Ok(moved.clone()) }],
        &opts(),
        &s,
        NOW + 2 * DAY,
        None,
        &|_| {},
    )
    .unwrap();
    assert_eq!(
        c.items[0].reason.as_ref().and_then(|r| r.refusal()).cloned(),
        Some(IssueRefusal::SeatHardwareChanged {
            cmid: moved.cmid.clone(),
            entitlement: "entitlement 1 (\"acme\")".into(),
            serial: first_serial,
            changed: vec!["mac".into()],
        })
    );
    // The same machine, same hardware: a token, no new seat.
    let same =
        issue_batch(&mut l, inputs(2..3), &BatchOptions { reissue: true, ..opts() }, &s, NOW + 2 * DAY, None, &|_| {})
            .unwrap();
    assert_eq!((same.ok, same.new_seats), (1, 0));
}

// ----- through the binary -------------------------------------------------

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new(machines: u32) -> Cli {
        let c = Cli { dir: tempfile::tempdir().unwrap() };
        let home = c.path("home");
        c.ok(&[
            "issuer",
            "init",
            "--org",
            "tka",
            "--home",
            home.to_str().unwrap(),
            "--root-bits",
            "2048",
            "--ca-bits",
            "2048",
        ]);
        c.ok(&[
            "entitlement",
            "add",
            "--home",
            "home",
            "--product",
            PRODUCT,
            "--machines",
            &machines.to_string(),
            "--name",
            "acme",
        ]);
        c
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env_remove("TKA_HOME")
            .env_remove("TKA_LEDGER_URL")
            .env("TKA_PASSPHRASE", "correct horse battery staple")
            .stdin(Stdio::null());
        c
    }
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.cmd(args).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into(),
            String::from_utf8_lossy(&o.stderr).into(),
        )
    }
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.0, 0, "tka {args:?}: {}{}", r.1, r.2);
        r.1
    }
    fn requests(&self, name: &str, first: u64, count: u64) {
        self.ok(&[
            "request",
            "generate-test",
            "--product",
            PRODUCT,
            "--count",
            &count.to_string(),
            "--first",
            &first.to_string(),
            "--out",
            name,
        ]);
    }
    fn ledger(&self) -> Ledger {
        Ledger::open(&self.path("home/ledger.sqlite")).unwrap()
    }
    /// Every token file in `out` holds a token the ledger recorded, byte for
    /// byte. Temporary files of an interrupted atomic write (`.NAME.HEX.tmp`)
    /// are not token files; a later run removes them.
    #[track_caller]
    fn assert_no_file_without_row(&self, out: &str) -> usize {
        let l = self.ledger();
        let recorded: HashSet<String> =
            l.tokens(&TokenFilter::default()).unwrap().into_iter().map(|t| t.token + "\n").collect();
        let written: Vec<_> =
            files(&self.path(out)).into_iter().filter(|(n, _)| !(n.starts_with('.') && n.ends_with(".tmp"))).collect();
        for (name, text) in &written {
            assert!(recorded.contains(text), "{name} holds a token the ledger does not know");
        }
        written.len()
    }
}

#[test]
fn cli_entitlement_show_json_and_issue_refusal_exit_codes() {
    let c = Cli::new(1);
    let show: serde_json::Value =
        serde_json::from_str(&c.ok(&["entitlement", "show", "acme", "--home", "home", "--json"])).unwrap();
    assert_eq!((show["id"].as_i64(), show["used"].as_u64(), show["free"].as_u64()), (Some(1), Some(0), Some(1)));
    c.requests("reqs.txt", 0, 2);
    let lines: Vec<String> = fs::read_to_string(c.path("reqs.txt")).unwrap().lines().map(String::from).collect();
    fs::write(c.path("a.txt"), &lines[0]).unwrap();
    fs::write(c.path("b.txt"), &lines[1]).unwrap();
    c.ok(&["token", "issue", "--request", "a.txt", "--home", "home", "--entitlement", "acme", "--out", "a.jws"]);
    let r =
        c.run(&["token", "issue", "--request", "b.txt", "--home", "home", "--entitlement", "acme", "--out", "b.jws"]);
    assert_eq!(r.0, 1, "{r:?}");
    assert_eq!(
        r.2,
        "error: entitlement 1 (\"acme\") is exhausted: all 1 machines are counted (1 of 1 used); release a machine or raise the count\n"
    );
    assert!(!c.path("b.jws").exists());
    let show: serde_json::Value =
        serde_json::from_str(&c.ok(&["entitlement", "show", "1", "--home", "home", "--json"])).unwrap();
    assert_eq!((show["used"].as_u64(), show["free"].as_u64()), (Some(1), Some(0)));

    // Release by machine, then the other machine fits.
    let list: serde_json::Value = serde_json::from_str(&c.ok(&["ledger", "list", "--home", "home", "--json"])).unwrap();
    let cmid = list[0]["cmid"].as_str().unwrap().to_string();
    c.ok(&["ledger", "release", "--machine", &cmid, "--reason", "decommissioned", "--home", "home"]);
    let r = c.run(&["ledger", "release", "--machine", &cmid, "--reason", "again", "--home", "home"]);
    let nothing =
        format!("error: machine {cmid} holds no seat in any entitlement: nothing to release (already released?)\n");
    assert_eq!((r.0, r.2.as_str()), (1, nothing.as_str()));
    c.ok(&["token", "issue", "--request", "b.txt", "--home", "home", "--entitlement", "acme", "--out", "b.jws"]);
    // Every issued token is in the ledger, with or without an entitlement.
    c.ok(&["token", "issue", "--request", "a.txt", "--home", "home", "--out", "c.jws"]);
    let csv = c.ok(&["ledger", "export", "--format", "csv", "--home", "home"]);
    assert_eq!(csv.lines().count(), 4, "{csv}");
    let serial = list[0]["serial"].as_str().unwrap();
    c.ok(&["ledger", "revoke", serial, "--reason", "stolen", "--home", "home"]);
    let r = c.run(&["ledger", "revoke", serial, "--reason", "stolen", "--home", "home"]);
    assert_eq!(r.0, 1);
    assert!(r.2.starts_with(&format!("error: token {serial} is already revoked (at ")), "{}", r.2);
}

#[test]
fn cli_issue_bulk_reports_per_item_and_reruns_idempotently() {
    let c = Cli::new(3);
    c.requests("reqs.txt", 0, 4);
    let mut text = fs::read_to_string(c.path("reqs.txt")).unwrap();
    text += "not a request\n";
    fs::write(c.path("reqs.txt"), &text).unwrap();
    let args = [
        "token",
        "issue-bulk",
        "--home",
        "home",
        "--entitlement",
        "acme",
        "--requests-file",
        "reqs.txt",
        "--out",
        "out",
        "--report",
        "report.json",
    ];
    // A malformed request among them: an error in the input, exit 2 (issue 15).
    let r = c.run(&args);
    assert_eq!(r.0, 2, "{r:?}");
    assert!(r.1.starts_with("issued: 3 of 5 (signed 3, existing 0, new seats 3)\nrefused: 2\nerrors: 0\n"), "{}", r.1);
    let report: serde_json::Value = serde_json::from_str(&fs::read_to_string(c.path("report.json")).unwrap()).unwrap();
    let statuses: Vec<&str> =
        report["items"].as_array().unwrap().iter().map(|i| i["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["ok", "ok", "ok", "refused", "refused"]);
    assert_eq!(report["items"][4]["reason"], "malformed request: neither a JSON request nor a TKAR1-... text request");
    let before = files(&c.path("out"));
    let r = c.run(&args);
    assert_eq!(r.0, 2);
    assert!(r.1.starts_with("issued: 3 of 5 (signed 0, existing 3, new seats 0)"), "{}", r.1);
    assert_eq!(files(&c.path("out")), before);
    assert_eq!(c.ledger().entitlement("acme").unwrap().used, 3);
}

#[test]
fn cli_issue_bulk_valid_for_applies_to_every_token() {
    let c = Cli::new(3);
    c.requests("reqs.txt", 0, 3);
    let args = [
        "token",
        "issue-bulk",
        "--home",
        "home",
        "--entitlement",
        "acme",
        "--requests-file",
        "reqs.txt",
        "--out",
        "out",
        "--valid-for",
        "12h",
        "--grace",
        "90m",
    ];
    let out = c.ok(&args);
    assert!(out.starts_with("issued: 3 of 3 (signed 3, existing 0, new seats 3)"), "{out}");
    let tokens = files(&c.path("out"));
    assert_eq!(tokens.len(), 3);
    for (name, text) in &tokens {
        let payload = text.trim().split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
        )
        .unwrap();
        let n = |k: &str| claims[k].as_i64().unwrap();
        assert_eq!((n("exp") - n("nbf"), claims["tka"]["grace"].as_i64()), (43_200, Some(5400)), "{name}");
    }
    // `--valid-for` and `--days` are one choice.
    let r = c.run(&[&args[..], &["--days", "3"]].concat());
    assert_eq!(r.0, 2, "{r:?}");
    assert!(r.2.contains("cannot be used with"), "{r:?}");
}

#[test]
fn two_processes_on_one_ledger_never_exceed_the_count_nor_duplicate_serials() {
    let c = Cli::new(30);
    c.requests("a.txt", 0, 25);
    c.requests("b.txt", 10, 25); // machines 10..35: 35 distinct machines in all
    let spawn = |file: &str, out: &str| {
        c.cmd(&[
            "token",
            "issue-bulk",
            "--home",
            "home",
            "--entitlement",
            "acme",
            "--requests-file",
            file,
            "--out",
            out,
            "--chunk",
            "2",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
    };
    let (mut a, mut b) = (spawn("a.txt", "out-a"), spawn("b.txt", "out-b"));
    let (ca, cb) = (a.wait().unwrap().code(), b.wait().unwrap().code());
    assert!(matches!(ca, Some(0 | 1)) && matches!(cb, Some(0 | 1)), "{ca:?} {cb:?}");
    assert_ne!((ca, cb), (Some(0), Some(0)), "35 machines cannot all fit in 30");
    let l = c.ledger();
    assert_eq!(l.entitlement("acme").unwrap().used, 30);
    assert_eq!(l.seats(1).unwrap().len(), 30);
    let tokens = l.tokens(&TokenFilter::default()).unwrap();
    let serials: HashSet<&str> = tokens.iter().map(|t| t.serial.as_str()).collect();
    assert_eq!(serials.len(), tokens.len(), "no duplicate serials");
    let machines: HashSet<&str> = tokens.iter().map(|t| t.cmid.as_str()).collect();
    assert_eq!(machines.len(), 30, "tokens went to exactly the 30 counted machines");
    assert_eq!(c.assert_no_file_without_row("out-a") + c.assert_no_file_without_row("out-b"), tokens.len());
}

#[test]
fn a_full_disk_mid_batch_leaves_no_token_file_without_its_row_and_a_rerun_completes() {
    let c = Cli::new(100);
    c.requests("reqs.txt", 0, 60);
    // Files larger than 200 blocks cannot grow: the ledger's WAL fills up mid-batch
    // (SIGXFSZ ignored, so the write fails with EFBIG, like a full disk).
    let script = format!(
        "trap '' XFSZ; ulimit -f 200; exec {BIN} token issue-bulk --home home --entitlement acme --requests-file reqs.txt --out out --chunk 4 --quiet --report report.json"
    );
    let o = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(c.dir.path())
        .env("TKA_PASSPHRASE", "correct horse battery staple")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("error: "), "{stderr}");
    let issued = c.ledger().token_count().unwrap() as usize;
    assert!(issued > 0 && issued < 60, "the limit must stop the batch part-way ({issued} issued)");
    let written = c.assert_no_file_without_row("out");
    assert!(written <= issued);
    assert_eq!(c.ledger().entitlement("acme").unwrap().used as usize, issued, "seats and tokens commit together");
    if let Ok(report) = fs::read_to_string(c.path("report.json")) {
        let v: serde_json::Value = serde_json::from_str(&report).unwrap();
        assert!(v["aborted_reason"].is_string() || v["errors"].as_u64() > Some(0));
    }

    let r = c.run(&[
        "token",
        "issue-bulk",
        "--home",
        "home",
        "--entitlement",
        "acme",
        "--requests-file",
        "reqs.txt",
        "--out",
        "out",
        "--quiet",
    ]);
    assert_eq!(r.0, 0, "{r:?}");
    assert!(
        r.1.starts_with(&format!(
            "issued: 60 of 60 (signed {}, existing {issued}, new seats {})",
            60 - issued,
            60 - issued
        )),
        "{}",
        r.1
    );
    assert_eq!(c.assert_no_file_without_row("out"), 60);
    assert_eq!(c.ledger().entitlement("acme").unwrap().used, 60);
    assert_eq!(c.ledger().token_count().unwrap(), 60);
}

#[test]
fn a_kill_mid_batch_leaves_no_token_file_without_its_row_and_a_rerun_completes() {
    let c = Cli::new(1000);
    c.requests("reqs.txt", 0, 400);
    // Stopped (as by SIGKILL: `_exit`, no cleanup) right after its second
    // chunk of 8 committed: a test-hooks fault point, so the kill lands
    // mid-batch on every run.
    let out = c
        .cmd(&[
            "token",
            "issue-bulk",
            "--home",
            "home",
            "--entitlement",
            "acme",
            "--requests-file",
            "reqs.txt",
            "--out",
            "out",
            "--chunk",
            "8",
            "--quiet",
        ])
        .env("TKA_FAULT", "ledger.committed:2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert_eq!(c.ledger().token_count().unwrap(), 16, "two chunks committed, the rest not");
    let issued = c.ledger().token_count().unwrap() as usize;
    c.assert_no_file_without_row("out");
    assert_eq!(c.ledger().entitlement("acme").unwrap().used as usize, issued);
    let r = c.run(&[
        "token",
        "issue-bulk",
        "--home",
        "home",
        "--entitlement",
        "acme",
        "--requests-file",
        "reqs.txt",
        "--out",
        "out",
        "--quiet",
    ]);
    assert_eq!(r.0, 0, "{r:?}");
    assert_eq!(c.assert_no_file_without_row("out"), 400);
    assert!(
        files(&c.path("out")).iter().all(|(n, _)| !n.ends_with(".tmp")),
        "the re-run removed stale temporary files"
    );
    assert_eq!(c.ledger().entitlement("acme").unwrap().used, 400);
    assert_eq!(
        c.ledger().token_count().unwrap(),
        400,
        "the re-run returned the committed tokens, signed only the rest"
    );
}

#[test]
fn cli_refuses_newer_and_damaged_ledgers_with_exit_2() {
    let c = Cli::new(1);
    let path = c.path("home/ledger.sqlite");
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", 7).unwrap();
    let r = c.run(&["entitlement", "list", "--home", "home"]);
    assert_eq!(r.0, 2);
    assert_eq!(
        r.2,
        format!("error: ledger {}: written by a newer tka (schema version 7); this tka knows version {} and never downgrades a ledger: use a newer tka\n", Path::new("home/ledger.sqlite").display(), tka::issuer::ledger::SCHEMA_VERSION)
    );
    fs::write(
        c.path("bad.sqlite"),
        b"this is not a database at all, not even close........................................................",
    )
    .unwrap();
    let r = c.run(&["ledger", "list", "--ledger", "bad.sqlite"]);
    assert_eq!(r.0, 2);
    assert_eq!(r.2, "error: ledger bad.sqlite: the file is damaged or not an SQLite database; nothing was changed: restore it from a backup\n");
}

/// A fake machine root for `TKA_SYSROOT`: a machine-id and a DMI product
/// UUID (its hardware anchor) derived from it.
fn fake_machine(c: &Cli, name: &str, id: &str) -> String {
    let root = c.path(name);
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/machine-id"), format!("{id}\n")).unwrap();
    fs::create_dir_all(root.join("sys/class/dmi/id")).unwrap();
    let uuid = format!("{}-{}-{}-{}-{}", &id[0..8], &id[8..12], &id[12..16], &id[16..20], &id[20..32]);
    fs::write(root.join("sys/class/dmi/id/product_uuid"), format!("{uuid}\n")).unwrap();
    root.to_str().unwrap().to_string()
}

/// Two fake machines (`m1`, `m2`, returned as their sysroots) and a
/// requests file `reqs.txt` holding one text request from each.
fn two_machine_requests(c: &Cli) -> (String, String) {
    let m1 = fake_machine(c, "m1", "0123456789abcdef0123456789abcdef");
    let m2 = fake_machine(c, "m2", "fedcba9876543210fedcba9876543210");
    let mut reqs = String::new();
    for m in [&m1, &m2] {
        let o = c.cmd(&["request", "create", "--product", PRODUCT, "--text"]).env("TKA_SYSROOT", m).output().unwrap();
        reqs += &String::from_utf8(o.stdout).unwrap();
    }
    fs::write(c.path("reqs.txt"), reqs).unwrap();
    (m1, m2)
}

#[test]
fn a_bundle_carries_every_token_and_each_machine_activates_its_own() {
    let c = Cli::new(10);
    let (m1, m2) = two_machine_requests(&c);
    let out = c.ok(&[
        "token",
        "issue-bulk",
        "--home",
        "home",
        "--entitlement",
        "acme",
        "--requests-file",
        "reqs.txt",
        "--bundle",
        "bundle.jsonl",
        "--quiet",
    ]);
    assert!(out.contains("issued: 2 of 2"), "{out}");
    let lines: Vec<tka::issuer::bulk::BundleLine> =
        fs::read_to_string(c.path("bundle.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(c.ledger().entitlement("acme").unwrap().used, 2);
    c.ok(&["trust", "add", "home/root.pem", "--store", "store1"]);
    c.ok(&["trust", "add", "home/root.pem", "--store", "store2"]);
    for (m, store, want) in [(&m1, "store1", &lines[0]), (&m2, "store2", &lines[1])] {
        let o =
            c.cmd(&["activate", "--bundle", "bundle.jsonl", "--store", store]).env("TKA_SYSROOT", m).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let installed = tka::store::Store::open(&c.path(store)).unwrap().token(PRODUCT).unwrap().unwrap();
        assert_eq!(installed.token, want.token, "each machine installs its own token");
    }
    // A machine that is not in the bundle: a verdict, and nothing installed.
    let m3 = fake_machine(&c, "m3", "00112233445566778899aabbccddeeff");
    c.ok(&["trust", "add", "home/root.pem", "--store", "store3"]);
    let o =
        c.cmd(&["activate", "--bundle", "bundle.jsonl", "--store", "store3"]).env("TKA_SYSROOT", &m3).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).lines().next().unwrap(),
        "error: bundle.jsonl holds no token for this machine (2 lines read; none labelled for it)"
    );
    assert!(tka::store::Store::open(&c.path("store3")).unwrap().tokens().unwrap().is_empty());
}

#[test]
fn cli_activate_bundle_verifies_past_a_forged_first_line_and_honours_the_product() {
    let c = Cli::new(10);
    let (m1, _) = two_machine_requests(&c);
    let base = ["token", "issue-bulk", "--home", "home", "--entitlement", "acme", "--requests-file", "reqs.txt"];
    c.ok(&[&base[..], &["--bundle", "bundle.jsonl", "--quiet"]].concat());
    let text = fs::read_to_string(c.path("bundle.jsonl")).unwrap();
    let lines: Vec<tka::issuer::bulk::BundleLine> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // The attack: m2's token relabelled with m1's CMID, placed first.
    let forged = tka::issuer::bulk::BundleLine { cmid: lines[0].cmid.clone(), ..lines[1].clone() };
    let bundle =
        format!("{}\n{}\n", serde_json::to_string(&forged).unwrap(), serde_json::to_string(&lines[0]).unwrap());
    fs::write(c.path("forged.jsonl"), bundle).unwrap();
    c.ok(&["trust", "add", "home/root.pem", "--store", "store1"]);
    let run = |args: &[&str]| {
        let o =
            c.cmd(&[&["activate", "--store", "store1"][..], args].concat()).env("TKA_SYSROOT", &m1).output().unwrap();
        (o.status.code(), String::from_utf8(o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap())
    };
    // With a single token, --product guards it: a bundle given as a token is no token.
    let (code, _, err) = run(&["--product", "other", "forged.jsonl"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("error: malformed token: character '{' at position 1"), "{err}");
    // Another product asked for: nothing is labelled for it, a verdict.
    let (code, _, err) = run(&["--bundle", "forged.jsonl", "--product", "other"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err,
        "error: forged.jsonl holds no token for this machine and product \"other\" (2 lines read; none labelled for it)\n\
         hint: ask the issuer for a token for this machine (send it a `tka request create` request)\n"
    );
    assert!(tka::store::Store::open(&c.path("store1")).unwrap().tokens().unwrap().is_empty());
    let (code, out, err) = run(&["--bundle", "forged.jsonl", "--product", PRODUCT]);
    assert_eq!(code, Some(0), "{err}");
    let out: Vec<&str> = out.lines().collect();
    assert_eq!(out[0], format!("activated: {PRODUCT}"));
    assert_eq!(
        out[1],
        "bundle: line 2 of 2 read; 2 labelled for this machine, 1 refused; 0 for others; 0 not bundle lines"
    );
    assert!(out[2].starts_with("refused: line 1: token is bound to machine "), "{out:?}");
    let installed = tka::store::Store::open(&c.path("store1")).unwrap().token(PRODUCT).unwrap().unwrap();
    assert_eq!(installed.token, lines[0].token, "m1's own token, not the forged line's");
    let (code, out, err) = run(&["--bundle", "forged.jsonl", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((j["bundle"]["line"].as_u64(), j["bundle"]["refused"].as_u64()), (Some(2), Some(1)));
    assert_eq!(j["bundle"]["first_refused"]["line"].as_u64(), Some(1));
}

#[test]
fn out_and_bundle_are_exclusive_and_one_is_required() {
    let c = Cli::new(1);
    c.requests("reqs.txt", 0, 1);
    let base = ["token", "issue-bulk", "--home", "home", "--entitlement", "acme", "--requests-file", "reqs.txt"];
    let r = c.run(&[&base[..], &["--quiet"]].concat());
    assert_eq!(r.0, 2, "{r:?}");
    let r = c.run(&[&base[..], &["--out", "o", "--bundle", "b.jsonl"]].concat());
    assert_eq!(r.0, 2, "{r:?}");
    assert!(r.2.contains("cannot be used with"), "{r:?}");
    assert_eq!(c.ledger().entitlement("acme").unwrap().used, 0, "a usage error consumes nothing");
}

/// The library's refusals and errors speak library words; the command adds
/// the flag that helps: the same output as before they were typed.
#[test]
fn cli_adds_the_flags_to_library_refusals() {
    let c = Cli::new(3);
    let soon = tka::clock::rfc3339(tka::clock::now() + 30 * 86_400);
    c.ok(&["entitlement", "update", "acme", "--expires", &soon, "--home", "home"]);
    c.requests("reqs.txt", 0, 1);
    let r = c.run(&["token", "issue", "--request", "reqs.txt", "--home", "home", "--entitlement", "acme"]);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(r.2.starts_with("error: a token valid until "), "{}", r.2);
    assert!(
        r.2.ends_with(&format!(
            "would outlive entitlement 1 (\"acme\") (expires {soon}): issue shorter tokens (--days)\n"
        )),
        "{}",
        r.2
    );
    let r = c.run(&[
        "token",
        "issue-bulk",
        "--entitlement",
        "acme",
        "--requests-file",
        "reqs.txt",
        "--home",
        "home",
        "--out",
        "out",
    ]);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(r.2.contains("issue shorter tokens (--days)\n"), "{}", r.2);
    let missing = c.path("none.sqlite");
    let r = c.run(&["ledger", "list", "--ledger", missing.to_str().unwrap()]);
    assert_eq!(
        (r.0, r.2),
        (
            2,
            format!(
                "error: no ledger at {}\nhint: a ledger is created by `tka entitlement add` or `tka token issue --home`\n",
                missing.display()
            )
        )
    );
}

/// The same commands on a PostgreSQL ledger: `tka ledger migrate` copies
/// the home's SQLite ledger (tokens, a revocation) into an empty database
/// and says what it moved; with TKA_LEDGER_URL (or --ledger URL) and
/// --home, issue-bulk counts against the migrated entitlement while the
/// home signs; `ledger show` gives the same record on both; a second
/// migration into the filled database is refused (exit 1); a server that
/// is not there is a one-line error with exit 2.
#[test]
fn cli_postgres_ledger_migrate_issue_and_list() {
    let Some(url) = pg::database("cli") else { return };
    let c = Cli::new(4);
    c.requests("reqs.txt", 0, 3);
    let lines: Vec<String> = fs::read_to_string(c.path("reqs.txt")).unwrap().lines().map(String::from).collect();
    fs::write(c.path("a.txt"), &lines[0]).unwrap();
    let issued =
        c.ok(&["token", "issue", "--request", "a.txt", "--home", "home", "--entitlement", "acme", "--out", "a.jws"]);
    let serial = tka::token::decode_unverified(fs::read_to_string(c.path("a.jws")).unwrap().trim()).unwrap().1.jti;
    assert!(!issued.contains("postgres"));
    c.ok(&["ledger", "revoke", &serial, "--reason", "test", "--home", "home"]);

    let out = c.ok(&["ledger", "migrate", "--from", "home/ledger.sqlite", "--to", &url]);
    assert_eq!(
        out,
        format!(
            "from: home/ledger.sqlite\nto: {url}\nentitlements: 1\nseats: 1\njws_headers: 1\ntokens: 1\nreleases: 0\n\
             revocations: 1\nverified: counts per table and per entitlement are equal\n"
        )
    );
    let show_sqlite = c.ok(&["ledger", "show", &serial, "--home", "home", "--json"]);
    let show_pg = c.ok(&["ledger", "show", &serial, "--home", "home", "--ledger", &url, "--json"]);
    assert_eq!(show_pg, show_sqlite);
    let list = c.ok(&["revocations", "create", "--home", "home", "--ledger", &url, "--out", "revoked.jws"]);
    assert!(list.contains("revoked tokens: 1 (1 from the ledger)"), "{list}");

    let bulk = c
        .cmd(&[
            "token",
            "issue-bulk",
            "--home",
            "home",
            "--entitlement",
            "acme",
            "--requests-file",
            "reqs.txt",
            "--out",
            "out",
            "--quiet",
            // Machine 0's token was revoked above: re-issued only when asked.
            "--allow-revoked-machine",
        ])
        .env("TKA_LEDGER_URL", &url)
        .output()
        .unwrap();
    assert!(bulk.status.success(), "{}", String::from_utf8_lossy(&bulk.stderr));
    let pg_ent: serde_json::Value =
        serde_json::from_str(&c.ok(&["entitlement", "show", "acme", "--ledger", &url, "--json"])).unwrap();
    assert_eq!(pg_ent["used"].as_u64(), Some(3), "counted in PostgreSQL");
    assert_eq!(c.ledger().entitlement("acme").unwrap().used, 1, "the home's SQLite file is left alone");
    let list = c.ok(&["ledger", "list", "--ledger", &url]);
    assert_eq!(list.lines().filter(|l| l.contains(PRODUCT)).count(), 4, "the migrated token and 3 new: {list}");

    let (code, _, err) = c.run(&["ledger", "migrate", "--from", "home/ledger.sqlite", "--to", &url]);
    assert_eq!(code, 1, "a refusal");
    assert_eq!(
        err,
        format!("error: ledger {url}: the target is not empty (1 rows in entitlements); nothing was copied\n")
    );

    let down = "postgres://postgres@127.0.0.1:1/tka";
    let (code, _, err) = c.run(&["ledger", "list", "--ledger", down]);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with(&format!("error: ledger {down}: the PostgreSQL server cannot be reached")), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// `tka token issue-bulk` on a PostgreSQL ledger whose server ends the
/// connection in the middle of the batch (`pg_terminate_backend`, from a
/// trigger once 20 tokens are in the table, so at the same place every
/// run): exit 2 with one line naming the ledger; the chunks committed
/// before it stay, each token file has its row and each row its file (the
/// failed chunk left neither); the same command once the server takes
/// connections again resumes to the full count, returning the tokens
/// already issued and taking no seat twice.
#[test]
fn cli_postgres_connection_ended_mid_batch_exits_2_and_the_rerun_resumes() {
    let name = "cli_cut";
    let Some(url) = pg::database(name) else { return };
    let c = Cli::new(100);
    c.requests("reqs.txt", 0, 60);
    c.ok(&["ledger", "migrate", "--from", "home/ledger.sqlite", "--to", &url]);
    pg::psql(
        name,
        "CREATE FUNCTION cut() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
           IF (SELECT count(*) FROM tokens) > 20 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
           RETURN NULL; END $$;
         CREATE TRIGGER cut AFTER INSERT ON tokens FOR EACH STATEMENT EXECUTE FUNCTION cut();",
    );
    let bulk = [
        "token",
        "issue-bulk",
        "--home",
        "home",
        "--ledger",
        &url,
        "--entitlement",
        "acme",
        "--requests-file",
        "reqs.txt",
        "--out",
        "out",
        "--chunk",
        "5",
        "--quiet",
    ];
    let (code, _, err) = c.run(&bulk);
    assert_eq!(code, 2, "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    // The backend sends its FATAL message and closes: the client reads
    // either the message or the closed socket first (a race in the
    // driver, not in tka), and says which.
    let ended = format!(
        "error: ledger {url}: the PostgreSQL server ended the connection (terminating connection due to \
         administrator command, SQLSTATE 57P01); the transaction was rolled back: run the same command again \
         once the server takes connections"
    );
    let closed = format!(
        "error: ledger {url}: the PostgreSQL server cannot be reached or closed the connection (connection \
         closed); nothing was recorded: run the same command again once it is up"
    );
    assert!(errors.len() == 1 && (errors[0] == ended || errors[0] == closed), "{err}");
    let recorded = |url: &str| -> HashSet<String> {
        let l = Ledger::open_url(url).unwrap();
        l.tokens(&TokenFilter::default()).unwrap().into_iter().map(|t| t.token + "\n").collect()
    };
    let written = |c: &Cli| -> HashSet<String> { files(&c.path("out")).into_iter().map(|(_, t)| t).collect() };
    let (rows, on_disk) = (recorded(&url), written(&c));
    assert_eq!(rows.len(), 20, "the four chunks before the cut, nothing of the fifth");
    assert_eq!(on_disk, rows, "each file has its row, each row its file");

    pg::psql(name, "DROP TRIGGER cut ON tokens");
    c.ok(&bulk);
    let (rows, on_disk) = (recorded(&url), written(&c));
    assert_eq!((rows.len(), on_disk.len()), (60, 60));
    assert_eq!(on_disk, rows);
    let ent: serde_json::Value =
        serde_json::from_str(&c.ok(&["entitlement", "show", "acme", "--ledger", &url, "--json"])).unwrap();
    assert_eq!(ent["used"].as_u64(), Some(60), "no seat taken twice");
}

/// `tka ledger migrate` round trip with every kind of row: an SQLite
/// ledger with tokens, a released machine and a revoked token moves into
/// PostgreSQL with `releases: 1` and `revocations: 1` said and verified;
/// the export of every record (token text, states, times), the
/// entitlement's counts and the list of releases' effect (the released
/// machine counted again by a new token) are the same on both sides.
#[test]
fn cli_postgres_ledger_migrate_moves_releases_and_revocations() {
    let Some(url) = pg::database("cli_migrate_all") else { return };
    let c = Cli::new(5);
    c.requests("reqs.txt", 0, 3);
    c.ok(&[
        "token",
        "issue-bulk",
        "--home",
        "home",
        "--entitlement",
        "acme",
        "--requests-file",
        "reqs.txt",
        "--out",
        "out",
        "--quiet",
    ]);
    let serials: Vec<String> = files(&c.path("out"))
        .into_iter()
        .map(|(_, t)| tka::token::decode_unverified(t.trim()).unwrap().1.jti)
        .collect();
    c.ok(&["ledger", "release", &serials[0], "--reason", "moved", "--home", "home"]);
    c.ok(&["ledger", "revoke", &serials[1], "--reason", "leaked", "--home", "home"]);

    let out = c.ok(&["ledger", "migrate", "--from", "home/ledger.sqlite", "--to", &url]);
    assert_eq!(
        out,
        format!(
            "from: home/ledger.sqlite\nto: {url}\nentitlements: 1\nseats: 2\njws_headers: 1\ntokens: 3\nreleases: 1\n\
             revocations: 1\nverified: counts per table and per entitlement are equal\n"
        )
    );
    let both = |args: &[&str]| {
        let sqlite = c.ok(&[args, &["--home", "home"]].concat());
        let pg = c.ok(&[args, &["--ledger", url.as_str()]].concat());
        assert_eq!(pg, sqlite, "{args:?}");
        sqlite
    };
    let export = both(&["ledger", "export", "--format", "json"]);
    assert_eq!(export.matches("\"serial\"").count(), 3, "{export}");
    let ent: serde_json::Value = serde_json::from_str(&both(&["entitlement", "show", "acme", "--json"])).unwrap();
    assert_eq!((ent["used"].as_u64(), ent["free"].as_u64()), (Some(2), Some(3)), "the released seat is free");
    both(&["ledger", "list", "--json"]);
}

/// The batch's decisions read the ledger per item on SQLite and per chunk on
/// PostgreSQL (one round trip for the chunk's tokens and seats): the same
/// batches give the same verdicts on both. Each rule the decision reads
/// the ledger for, in one chunk: the same request again (its token
/// returned), a revoked machine (refused), a known machine's new request
/// (signed, no new seat), a new machine (a new seat); then a known
/// machine whose hardware changed (refused, naming its seat's oldest token).
fn batch_rules_read_from_the_ledger(mut l: Ledger) {
    let s = signer();
    let first: Vec<_> = (0..3).map(|n| synthetic_request(PRODUCT, n, NOW)).collect();
    let batch = |reqs: &[tka::request::ActivationRequest]| -> Vec<BatchInput> {
        reqs.iter().enumerate().map(|(i, r)| BatchInput { source: format!("r{i}"), request: Ok(r.clone()) }).collect()
    };
    let a = issue_batch(&mut l, batch(&first), &opts(), &s, NOW, None, &|_| {}).unwrap();
    assert_eq!((a.ok, a.new_seats), (3, 3));
    let serial = |i: usize| a.items[i].serial.clone().unwrap();
    l.revoke(&serial(1), "stolen", NOW).unwrap();

    let again = vec![
        first[0].clone(),
        first[1].clone(),
        synthetic_request(PRODUCT, 2, NOW + 1),
        synthetic_request(PRODUCT, 3, NOW),
    ];
    let big = BatchOptions { chunk: 8, ..opts() };
    let b = issue_batch(&mut l, batch(&again), &big, &s, NOW + 10, None, &|_| {}).unwrap();
    let got: Vec<(ItemStatus, bool, Option<Seat>)> = b.items.iter().map(|i| (i.status, i.existing, i.seat)).collect();
    assert_eq!(
        got,
        vec![
            (ItemStatus::Ok, true, Some(Seat::Counted)),
            (ItemStatus::Refused, false, None),
            (ItemStatus::Ok, false, Some(Seat::Counted)),
            (ItemStatus::Ok, false, Some(Seat::New)),
        ]
    );
    assert_eq!(b.items[0].serial, Some(serial(0)), "the same request gets its token back");
    assert_eq!(
        b.items[1].reason.as_ref().and_then(|r| r.refusal()).cloned(),
        Some(IssueRefusal::MachineRevoked {
            cmid: first[1].cmid.clone(),
            entitlement: "entitlement 1 (\"acme\")".into(),
            serial: serial(1),
        })
    );
    assert_eq!((b.signed, b.new_seats), (2, 1));
    assert_eq!(l.entitlement("acme").unwrap().used, 4);

    // Machine 2 (two tokens on its seat now) with a network card it did not
    // have: the same CMID, other hardware.
    let moved = machine_2_with_a_new_card();
    assert_eq!(moved.cmid, first[2].cmid);
    let c = issue_batch(&mut l, batch(&[moved]), &big, &s, NOW + 20, None, &|_| {}).unwrap();
    assert_eq!(
        c.items[0].reason.as_ref().and_then(|r| r.refusal()).cloned(),
        Some(IssueRefusal::SeatHardwareChanged {
            cmid: first[2].cmid.clone(),
            entitlement: "entitlement 1 (\"acme\")".into(),
            serial: serial(2),
            changed: vec!["mac".into()],
        })
    );
    assert_eq!(l.entitlement("acme").unwrap().used, 4, "refusals take no seat");
}

#[test]
fn batch_rules_read_from_the_ledger_sqlite() {
    let d = tempfile::tempdir().unwrap();
    batch_rules_read_from_the_ledger(setup(d.path(), 10));
}

#[test]
fn batch_rules_read_from_the_ledger_postgres() {
    let Some(url) = pg::database("batch_rules") else { return };
    batch_rules_read_from_the_ledger(with_acme(Ledger::open_url(&url).unwrap(), 10));
}
