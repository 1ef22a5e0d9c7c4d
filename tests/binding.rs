//! Binding integrity: one seat activates one machine. Each test reproduces
//! an attack of the first outside review (issue "Binding integrity", finding
//! 1 and the request-field part of finding 6) and shows the refusal, at
//! issuance (with and without a ledger) and, for tokens no issuer signs any
//! more, at verification. Time is fixed (`common::NOW`).

#![cfg(feature = "issuer")]

mod common;
mod tools;

use common::*;
use std::collections::HashSet;
use tka::issuer::bulk::{issue_batch, synthetic_request, BatchInput, BatchOptions, ItemStatus};
use tka::issuer::issue::{build_claims, issue_token, IssueOptions, TokenSigner};
use tka::ledger::{EntitlementUpdate, Ledger, NewEntitlement};
use tka::machine::{cmid_from_components, BindingError, ComponentHash, MachineIdentity, MatchRule, MAX_MACS};
use tka::pki::TrustAnchors;
use tka::request::ActivationRequest;
use tka::token::Claims;
use tka::verify::{verify_token, MachineCheck, VerifyContext};
use tka::{Error, VerifyError};

fn signer() -> TokenSigner {
    let p = pki();
    TokenSigner::new(Box::new(test_key("signer")), vec![p.signer.clone(), p.int.clone()]).unwrap()
}

fn ledger(dir: &std::path::Path, machines: u32, allow_weak: bool) -> Ledger {
    let mut l = Ledger::open(&dir.join("ledger.sqlite")).unwrap();
    l.add_entitlement(
        &NewEntitlement {
            product: PRODUCT.into(),
            machines,
            name: Some("acme".into()),
            allow_weak_binding: allow_weak,
            ..Default::default()
        },
        NOW,
    )
    .unwrap();
    l
}

/// A request holding exactly `components`, with the CMID they give (what an
/// attacker who read the issuer's own error message would put there).
fn forged(components: Vec<ComponentHash>) -> ActivationRequest {
    let mut r = synthetic_request(PRODUCT, 1, NOW);
    r.cmid = cmid_from_components(&components).unwrap_or_else(|| r.cmid.clone());
    r.components = components;
    r
}

fn id(pairs: &[(&str, &str)]) -> MachineIdentity {
    MachineIdentity::from_raw(PRODUCT, &raw(pairs))
}

fn refused<T: std::fmt::Debug>(r: tka::Result<T>) -> String {
    match r {
        Err(Error::Refused(m)) => m,
        Err(Error::Issue(r)) => r.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn binding_err<T: std::fmt::Debug>(r: tka::Result<T>) -> BindingError {
    match r {
        Err(Error::Binding(e)) => e,
        other => panic!("expected a binding refusal, got {other:?}"),
    }
}

/// Verifies `text` on `machine` at NOW against the test root.
fn verify_on(text: &str, machine: &MachineIdentity) -> Result<tka::verify::VerifiedToken, VerifyError> {
    let anchors = TrustAnchors::from_der(&[pki().root.clone()]).unwrap();
    let revoked = HashSet::new();
    let ctx = VerifyContext {
        anchors: &anchors,
        now: NOW,
        product: Some(PRODUCT),
        machine: MachineCheck::Identity(machine),
        crls: &[],
        revoked_serials: &revoked,
        clock: None,
        certificates: &[],
        pinned_roots: &[],
    };
    verify_token(text, &ctx)
}

/// Signs `claims` as they are, bypassing every issuance check: what a
/// compromised or outdated issuer could have produced.
fn sign_raw(claims: &Claims) -> String {
    signer()
        .sign_payload(&serde_json::to_value(claims).unwrap(), tka::jws::TOKEN_TYP, tka::keys::SignatureAlgorithm::Ps256)
        .unwrap()
}

/// Claims for a request that passes every check, then `f` applied to them.
fn raw_token(f: impl FnOnce(&mut Claims)) -> String {
    let req = ActivationRequest::new(&machine(), NOW - 60, None);
    let mut claims = build_claims(&req, &IssueOptions::default(), signer().certificate(), NOW - 30).unwrap();
    f(&mut claims);
    sign_raw(&claims)
}

fn machines(n: u64) -> Vec<ActivationRequest> {
    (1..=n).map(|i| synthetic_request(PRODUCT, i, NOW)).collect()
}

/// Review, finding 1, "merged request": the `mid` and `dmi` hashes of 16
/// machines in one request, with the CMID they give, against a 1-seat
/// entitlement, also with `--match all`. Refused before anything is signed
/// or counted, with and without a ledger.
#[test]
fn merged_request_of_sixteen_machines_is_refused() {
    let all = machines(16);
    let merged: Vec<ComponentHash> =
        all.iter().flat_map(|r| r.components.iter().filter(|c| c.kind == "mid" || c.kind == "dmi").cloned()).collect();
    let req = forged(merged);
    let d = tempfile::tempdir().unwrap();
    let mut l = ledger(d.path(), 1, false);
    for rule in [None, Some(MatchRule::All)] {
        let opts = IssueOptions { match_rule: rule, ..Default::default() };
        let want = BindingError::DuplicateKind { kind: "mid".into(), count: 16 };
        assert_eq!(binding_err(l.issue(&req, Some("acme"), &opts, &signer(), NOW)), want);
        assert_eq!(binding_err(issue_token(&req, &opts, &signer(), NOW)), want);
    }
    assert_eq!(l.entitlement("acme").unwrap().used, 0);
    assert_eq!(l.token_count().unwrap(), 0, "nothing recorded");
    assert_eq!(
        Error::Binding(BindingError::DuplicateKind { kind: "mid".into(), count: 16 }).to_string(),
        "request refused: 16 values of component kind \"mid\": a machine has one"
    );
}

/// The same attack through bulk issuance: the item is refused with the
/// reason, the other items are issued.
#[test]
fn merged_request_in_a_batch_is_refused_with_its_reason() {
    let all = machines(3);
    let merged = forged(all.iter().flat_map(|r| r.components.clone()).collect());
    let d = tempfile::tempdir().unwrap();
    let mut l = ledger(d.path(), 5, false);
    let inputs = vec![
        BatchInput { source: "merged".into(), request: Ok(merged) },
        BatchInput { source: "honest".into(), request: Ok(all[0].clone()) },
    ];
    let opts = BatchOptions { entitlement: Some("acme".into()), ..Default::default() };
    let report = issue_batch(&mut l, inputs, &opts, &signer(), NOW, None, &|_| {}).unwrap();
    assert_eq!(report.items[0].status, ItemStatus::Refused);
    assert_eq!(
        report.items[0].reason_text().as_deref(),
        Some("request refused: 3 values of component kind \"mid\": a machine has one")
    );
    assert_eq!(report.items[1].status, ItemStatus::Ok);
    assert_eq!(l.entitlement("acme").unwrap().used, 1);
}

/// A token that binds the machine-ids of several machines (signed by an
/// issuer that did not check) is refused by the verifier on each of them.
#[test]
fn verifier_refuses_a_token_binding_several_machine_ids() {
    let other = id(&[("mid", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"), ("dmi", "00000000-1111-2222-3333-444444444444")]);
    let t = raw_token(|c| {
        c.tka.components.extend(other.components().iter().filter(|x| x.kind == "mid").cloned());
        c.sub = cmid_from_components(&c.tka.components).unwrap();
    });
    for m in [machine(), other] {
        assert_eq!(
            verify_on(&t, &m).unwrap_err(),
            VerifyError::ImpossibleBinding { reason: BindingError::DuplicateKind { kind: "mid".into(), count: 2 } }
        );
    }
}

/// MACs are the one multi-valued kind. A request binding the MACs of 16
/// disk clones (same machine-id, one NIC each) is a set a 16-NIC server also
/// produces, so it is issued; but its MAC vote needs most of the bound MACs,
/// so the token activates none of the clones.
#[test]
fn merged_macs_of_clones_activate_none_of_them() {
    let mid = "4f1d2c3b4a5968778695a4b3c2d1e0f1";
    let macs: Vec<String> = (0..MAX_MACS).map(|i| format!("00:11:22:33:44:{i:02x}")).collect();
    let clones: Vec<MachineIdentity> = macs.iter().map(|m| id(&[("mid", mid), ("mac", m)])).collect();
    let mut all: Vec<ComponentHash> = clones.iter().flat_map(|c| c.components().to_vec()).collect();
    all.sort_by(|a, b| (&a.kind, &a.hash).cmp(&(&b.kind, &b.hash)));
    all.dedup();
    let merged = forged(all);
    let t = issue_token(&merged, &IssueOptions::default(), &signer(), NOW - 30).unwrap().text;
    for clone in &clones {
        match verify_on(&t, clone).unwrap_err() {
            VerifyError::WrongMachine { report: Some(r), .. } => {
                assert_eq!(r.changed, vec!["mac".to_string()], "{r}");
            }
            e => panic!("{e:?}"),
        }
    }
    // More MACs than one machine binds is refused outright.
    let mut too_many = merged.components.clone();
    too_many.push(id(&[("mac", "00:11:22:33:55:00")]).components()[0].clone());
    assert_eq!(
        binding_err(issue_token(&forged(too_many), &IssueOptions::default(), &signer(), NOW)),
        BindingError::TooManyMacs { count: MAX_MACS + 1, limit: MAX_MACS }
    );
}

/// The tolerance the MAC rule keeps: a four-NIC server with one NIC replaced
/// still matches its MAC vote.
#[test]
fn one_of_four_nics_replaced_still_matches() {
    let nics = ["00:11:22:33:44:01", "00:11:22:33:44:02", "00:11:22:33:44:03", "00:11:22:33:44:04"];
    let mut pairs = vec![("mid", "4f1d2c3b4a5968778695a4b3c2d1e0f1")];
    pairs.extend(nics.iter().map(|m| ("mac", *m)));
    let before = id(&pairs);
    pairs[4] = ("mac", "00:11:22:33:44:99");
    let after = id(&pairs);
    let r = MatchRule::All.evaluate(before.components(), after.components());
    assert!(r.is_match(), "{r}");
    pairs[3] = ("mac", "00:11:22:33:44:98");
    let half = id(&pairs);
    let r = MatchRule::All.evaluate(before.components(), half.components());
    assert_eq!(r.changed, vec!["mac".to_string()], "two of four is not most of them: {r}");
}

/// Review, finding 1, "xid sink": one shared explicit identity added to each
/// machine's real components gave every machine the same CMID. An explicit
/// identity must stand alone.
#[test]
fn explicit_identity_mixed_with_hardware_is_refused() {
    let xid = id(&[("xid", "shared-by-everyone")]).components()[0].clone();
    let d = tempfile::tempdir().unwrap();
    let mut l = ledger(d.path(), 1, false);
    for r in machines(2) {
        let mut cs = r.components.clone();
        cs.insert(0, xid.clone());
        let req = forged(cs);
        let want = BindingError::ExplicitMixed { others: vec!["mid".into(), "dmi".into()] };
        assert_eq!(binding_err(l.issue(&req, Some("acme"), &IssueOptions::default(), &signer(), NOW)), want);
    }
    assert_eq!(l.entitlement("acme").unwrap().used, 0);
    // The verifier refuses such a token too.
    let t = raw_token(|c| {
        c.tka.components.insert(0, xid.clone());
        c.sub = cmid_from_components(&c.tka.components).unwrap();
    });
    assert!(matches!(
        verify_on(&t, &machine()).unwrap_err(),
        VerifyError::ImpossibleBinding { reason: BindingError::ExplicitMixed { .. } }
    ));
}

/// Review, finding 1, "weak-only bindings": a request with only `cpu` was
/// issued and activated every machine with that CPU model. Refused unless
/// the command or the entitlement allows weak bindings; then the token says
/// so.
#[test]
fn cpu_only_request_is_refused_unless_weak_bindings_are_allowed() {
    let cpu = id(&[("cpu", "intel(r) xeon(r) cpu e5-2680 v4 @ 2.40ghz")]);
    let req = forged(cpu.components().to_vec());
    let weak = BindingError::WeakBinding { kinds: vec!["cpu".into()] };
    assert_eq!(binding_err(issue_token(&req, &IssueOptions::default(), &signer(), NOW)), weak);
    let d = tempfile::tempdir().unwrap();
    let mut l = ledger(d.path(), 5, false);
    assert_eq!(binding_err(l.issue(&req, Some("acme"), &IssueOptions::default(), &signer(), NOW)), weak);

    // The command allows it: issued, and the token records the choice.
    let allow = IssueOptions { allow_weak_binding: true, ..Default::default() };
    let t = issue_token(&req, &allow, &signer(), NOW - 30).unwrap();
    assert!(t.claims.tka.weak_binding);
    assert!(verify_on(&t.text, &cpu).is_ok());
    // The entitlement allows it.
    l.update_entitlement("acme", &EntitlementUpdate { allow_weak_binding: Some(true), ..Default::default() }, NOW)
        .unwrap();
    let item = l.issue(&req, Some("acme"), &IssueOptions::default(), &signer(), NOW).unwrap();
    let (_, claims) = tka::token::decode_unverified(&item.text).unwrap();
    assert!(claims.tka.weak_binding);
    // A hardware-anchored request never carries the flag.
    let strong = issue_token(&synthetic_request(PRODUCT, 1, NOW), &allow, &signer(), NOW).unwrap();
    assert!(!strong.claims.tka.weak_binding);
}

/// A weak token that does not say the issuer chose it is refused by the
/// verifier: no current issuer signs it.
#[test]
fn verifier_refuses_an_undeclared_weak_binding() {
    let m = id(&[("mid", "4f1d2c3b4a5968778695a4b3c2d1e0f1"), ("rfs", "6f0a1f0e-1c2b-4f7e-9a55-0d3c1f2e3a4b")]);
    let req = ActivationRequest::new(&m, NOW - 60, None);
    let allow = IssueOptions { allow_weak_binding: true, ..Default::default() };
    let mut claims = build_claims(&req, &allow, signer().certificate(), NOW - 30).unwrap();
    assert!(verify_on(&sign_raw(&claims), &m).is_ok());
    claims.tka.weak_binding = false;
    assert_eq!(
        verify_on(&sign_raw(&claims), &m).unwrap_err(),
        VerifyError::ImpossibleBinding {
            reason: BindingError::WeakBinding { kinds: vec!["mid".into(), "rfs".into()] }
        }
    );
}

/// Review, finding 1: "a request with no components is issued and binds to
/// /etc/machine-id alone". Refused at issuance; a token without components
/// is refused by the verifier (it used to match by CMID).
#[test]
fn request_without_components_is_refused() {
    let mut req = synthetic_request(PRODUCT, 1, NOW);
    req.components.clear();
    assert_eq!(binding_err(issue_token(&req, &IssueOptions::default(), &signer(), NOW)), BindingError::NoComponents);
    let d = tempfile::tempdir().unwrap();
    let mut l = ledger(d.path(), 1, false);
    assert_eq!(
        binding_err(l.issue(&req, Some("acme"), &IssueOptions::default(), &signer(), NOW)),
        BindingError::NoComponents
    );
    let t = raw_token(|c| c.tka.components.clear());
    assert_eq!(
        verify_on(&t, &machine()).unwrap_err(),
        VerifyError::ImpossibleBinding { reason: BindingError::NoComponents }
    );
}

/// Review, finding 1: "without a ledger even a request whose CMID does not
/// match its components is signed". Also a malformed CMID, and a token whose
/// `sub` is not its components' CMID.
#[test]
fn cmid_must_match_the_components_without_a_ledger_too() {
    let mut req = synthetic_request(PRODUCT, 1, NOW);
    let real = req.cmid.clone();
    req.cmid = synthetic_request(PRODUCT, 2, NOW).cmid;
    assert_eq!(
        binding_err(issue_token(&req, &IssueOptions::default(), &signer(), NOW)),
        BindingError::CmidMismatch { claimed: req.cmid.clone(), computed: real.clone() }
    );
    req.cmid = real.to_lowercase();
    assert_eq!(
        binding_err(issue_token(&req, &IssueOptions::default(), &signer(), NOW)),
        BindingError::MalformedCmid { cmid: req.cmid.clone() }
    );
    let other = other_machine().cmid().to_string();
    let t = raw_token(|c| c.sub = other.clone());
    assert!(matches!(
        verify_on(&t, &machine()).unwrap_err(),
        VerifyError::ImpossibleBinding { reason: BindingError::CmidMismatch { .. } }
    ));
}

/// Unknown component kinds are refused at issuance and verification.
#[test]
fn unknown_component_kind_is_refused() {
    let mut cs = synthetic_request(PRODUCT, 1, NOW).components;
    cs.push(ComponentHash { kind: "zzz".into(), hash: cs[0].hash.clone() });
    assert_eq!(
        binding_err(issue_token(&forged(cs), &IssueOptions::default(), &signer(), NOW)),
        BindingError::UnknownKind { kind: "zzz".into() }
    );
}
/// The seat rule. Unprivileged requests (no DMI) of a machine and of its
/// disk clone on other hardware share a CMID (machine-id only). The clone
/// used to be re-issued free; now a machine holding a seat gets another
/// token only with exactly the seat's hardware, passing the seat's tokens.
#[test]
fn disk_clone_with_the_same_cmid_does_not_share_the_seat() {
    let mid = ("mid", "4f1d2c3b4a5968778695a4b3c2d1e0f1");
    let rfs = ("rfs", "6f0a1f0e-1c2b-4f7e-9a55-0d3c1f2e3a4b");
    let a = id(&[mid, ("mac", "00:11:22:33:44:55"), rfs, ("dsk", "S4EWNX0N123456")]);
    let clone = id(&[mid, ("mac", "00:aa:bb:cc:dd:ee"), rfs, ("dsk", "WD-WCC4N0XXXXXX")]);
    assert_eq!(a.cmid(), clone.cmid(), "same machine-id, same CMID");
    let d = tempfile::tempdir().unwrap();
    let mut l = ledger(d.path(), 5, false);
    let opts = IssueOptions::default();
    let s = signer();
    let ta = l.issue(&ActivationRequest::new(&a, NOW, None), Some("acme"), &opts, &s, NOW).unwrap();
    assert_eq!(
        refused(l.issue(&ActivationRequest::new(&clone, NOW, None), Some("acme"), &opts, &s, NOW)),
        format!(
            "machine {} holds a seat in entitlement 1 (\"acme\") through token {}, bound to other hardware \
             (changed: mac, dsk): a machine's hardware stays the same within a seat; if this is that machine \
             with new hardware, release the seat first (tka ledger release)",
            a.cmid(),
            ta.serial
        )
    );
    assert_eq!(l.entitlement("acme").unwrap().used, 1);
    // The same machine asks again (a lost token, an OS update): free.
    l.issue(&ActivationRequest::new(&a, NOW + 60, None), Some("acme"), &opts, &s, NOW + 60).unwrap();
    assert_eq!(l.entitlement("acme").unwrap().used, 1);
    // Released, the seat goes to whichever machine asks next.
    l.release_machine(a.cmid(), Some("acme"), "moved", NOW).unwrap();
    l.issue(&ActivationRequest::new(&clone, NOW, None), Some("acme"), &opts, &s, NOW).unwrap();
    assert_eq!(l.entitlement("acme").unwrap().used, 1);
}

/// Review, finding 6 (issuance side): a CMID with a newline and escape
/// sequences (forging `serial:` lines), a product named `../../../tmp/x`, a
/// host name with a terminal escape: refused when parsed, and refused by the
/// issuer when built in code.
#[test]
fn injected_request_fields_are_refused() {
    let good = synthetic_request(PRODUCT, 1, NOW);
    let cases: Vec<(ActivationRequest, &str)> = vec![
        (ActivationRequest { cmid: format!("{}\nserial: 00\x1b[2J", good.cmid), ..good.clone() }, "cmid \""),
        (ActivationRequest { product: "../../../tmp/x".into(), ..good.clone() }, "product \"../../../tmp/x\" is not"),
        (ActivationRequest { hostname: Some("pc\x1b]0;owned\x07".into()), ..good.clone() }, "hostname \""),
        (ActivationRequest { hostname: Some("pc\u{202e}exe.txt".into()), ..good.clone() }, "hostname \""),
    ];
    for (req, start) in cases {
        let json = serde_json::to_string(&req).unwrap();
        match ActivationRequest::parse(&json) {
            Err(VerifyError::Malformed { what: "request", detail }) => {
                assert!(detail.starts_with(start), "{detail}");
                assert!(!detail.chars().any(tka::request::is_unprintable), "escaped: {detail:?}");
            }
            other => panic!("{other:?}"),
        }
        match issue_token(&req, &IssueOptions::default(), &signer(), NOW) {
            Err(Error::Format { what, detail }) => {
                assert_eq!((what.as_str(), detail.starts_with(start)), ("request", true))
            }
            other => panic!("{other:?}"),
        }
    }
    // Features and editions use the product name's character set.
    let opts = IssueOptions { features: vec!["=HYPERLINK(\"http://x\")".into()], ..Default::default() };
    assert!(matches!(
        issue_token(&good, &opts, &signer(), NOW),
        Err(Error::Usage(m)) if m.starts_with("feature name \"=HYPERLINK(")
    ));
}

mod sandbox;

/// The merged request through the binary, as the review ran it: the `mid`
/// and `dmi` hashes of 16 machines' own requests in one, the CMID they
/// give, a 1-seat entitlement. One error line, exit 1, nothing counted;
/// with `--allow-weak-binding` a weak request is issued and says so.
#[test]
fn cli_merged_request_is_refused_and_counts_nothing() {
    let s = sandbox::Sandbox::new();
    let mut merged: Vec<ComponentHash> = Vec::new();
    for i in 0..16u32 {
        let machine: sandbox::Machine = (
            Box::leak(format!("{:032x}", 0x4c4c_4544_u128 * 1000 + u128::from(i)).into_boxed_str()),
            Box::leak(format!("4C4C4544-004D-3510-804B-{:012X}", i + 1).into_boxed_str()),
            Box::leak(format!("SN{i:04}").into_boxed_str()),
        );
        let root = s.add_machine(&format!("m{i}"), machine);
        let out = s.dir().join(format!("req{i}.json"));
        let r = sandbox::run(
            s.cmd(&["request", "create", "--product", PRODUCT, "--out", out.to_str().unwrap()])
                .env("TKA_SYSROOT", &root),
        );
        assert_eq!(r.0, 0, "{r:?}");
        let req = ActivationRequest::parse(&std::fs::read_to_string(&out).unwrap()).unwrap();
        merged.extend(req.components.into_iter().filter(|c| c.kind == "mid" || c.kind == "dmi"));
    }
    let req = forged(merged);
    s.write("merged.json", req.to_json());
    s.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    s.ok(&["entitlement", "add", "--home", "home", "--product", PRODUCT, "--machines", "1", "--name", "acme"]);
    let before = s.snapshot("home");
    let r = s.tka(&[
        "token",
        "issue",
        "--request",
        "merged.json",
        "--home",
        "home",
        "--entitlement",
        "acme",
        "--match",
        "all",
    ]);
    sandbox::assert_fails(&r, 1, "request refused: 16 values of component kind \"mid\": a machine has one");
    assert!(r.1.is_empty(), "nothing printed on stdout: {}", r.1);
    let show: serde_json::Value =
        serde_json::from_str(&s.ok(&["entitlement", "show", "acme", "--home", "home", "--json"])).unwrap();
    assert_eq!(show["used"], 0);
    let after = s.snapshot("home");
    assert_eq!(
        before.keys().filter(|k| !k.to_string_lossy().contains("ledger.sqlite")).collect::<Vec<_>>(),
        after.keys().filter(|k| !k.to_string_lossy().contains("ledger.sqlite")).collect::<Vec<_>>()
    );

    // A weak request (machine-id only) is refused with a hint, and issued
    // with --allow-weak-binding, which the token records.
    let weak = forged(vec![ActivationRequest::parse(&s.read("req0.json")).unwrap().components[0].clone()]);
    assert_eq!(weak.components[0].kind, "mid");
    s.write("weak.json", weak.to_json());
    let r = s.tka(&["token", "issue", "--request", "weak.json", "--home", "home"]);
    sandbox::assert_fails(&r, 1, "request refused: weak binding: only mid (no hardware anchor");
    assert!(r.2.contains("hint: "), "{}", r.2);
    s.ok(&["token", "issue", "--request", "weak.json", "--home", "home", "--allow-weak-binding", "--out", "weak.jws"]);
    let inspect: serde_json::Value = serde_json::from_str(&s.ok(&["token", "inspect", "weak.jws", "--json"])).unwrap();
    assert_eq!(inspect["claims"]["tka"]["weak_binding"], true, "{inspect}");
}

/// A renewal keeps the binding: a weak token the issuer allowed is renewed
/// as weak (its `weak_binding` says why it may be), without any flag again.
#[test]
fn renewal_keeps_an_allowed_weak_binding() {
    use tka::issuer::bulk::{renew_batch, RenewOptions};
    let m = id(&[("mid", "4f1d2c3b4a5968778695a4b3c2d1e0f1"), ("rfs", "6f0a1f0e-1c2b-4f7e-9a55-0d3c1f2e3a4b")]);
    let d = tempfile::tempdir().unwrap();
    let mut l = ledger(d.path(), 1, false);
    let allow =
        IssueOptions { allow_weak_binding: true, lifetime: tka::token::TokenLifetime::Days(30), ..Default::default() };
    l.issue(&ActivationRequest::new(&m, NOW, None), Some("acme"), &allow, &signer(), NOW).unwrap();
    let opts = RenewOptions {
        within: 10 * DAY,
        entitlement: None,
        product: None,
        lifetime: None,
        alg: tka::keys::SignatureAlgorithm::Ps256,
        chunk: 100,
    };
    let report = renew_batch(&mut l, &opts, &signer(), NOW + 25 * DAY, None, &|_| {}).unwrap();
    assert_eq!(report.items.len(), 1);
    assert_eq!(report.items[0].status, ItemStatus::Ok, "{:?}", report.items[0].reason);
    let text = &report.items[0].issued.as_ref().unwrap().text;
    let (_, claims) = tka::token::decode_unverified(text).unwrap();
    assert!(claims.tka.weak_binding);
    assert_eq!(l.entitlement("acme").unwrap().used, 1);
}

// ---------------------------------------------------------------------------
// A second outside review, after the fix, with crafted requests mixing the
// hashes of several machines the customer owns (one kind from each).

/// Components of `m` of the given kinds.
fn of(m: &MachineIdentity, kinds: &[&str]) -> Vec<ComponentHash> {
    m.components().iter().filter(|c| kinds.contains(&c.kind.as_str())).cloned().collect()
}

/// A machine with its own DMI UUID, serials, disk and MAC (numbered `i`),
/// sharing with its fleet the machine-id, root file system and CPU model a
/// disk image carries.
fn fleet(i: u8) -> MachineIdentity {
    let uuid = format!("{i:02x}1d2c3b-4a59-4877-8695-a4b3c2d1e0f1");
    let (psn, bsn, csn, dsk) = (format!("PSN{i}X7"), format!("BSN{i}Y8"), format!("CSN{i}Z9"), format!("DSK{i}W6"));
    let mac = format!("00:1b:21:00:00:{i:02x}");
    id(&[
        ("mid", "4f1d2c3b4a5968778695a4b3c2d1e0f1"),
        ("dmi", &uuid),
        ("psn", &psn),
        ("bsn", &bsn),
        ("csn", &csn),
        ("mac", &mac),
        ("rfs", "6f0a1f0e-1c2b-4f7e-9a55-0d3c1f2e3a4b"),
        ("dsk", &dsk),
        ("cpu", "intel(r) xeon(r) cpu e5-2680 v4 @ 2.40ghz"),
    ])
}

/// Review 3, attacks 2 and 3: one token bound to what a fleet shares
/// (machine-id, root file system, CPU) plus one hardware serial of each of
/// several machines. `most` used to need only one hardware vote, so every
/// machine matched with its own; now it needs more than half of the bound
/// hardware votes, which no two of them hold.
#[test]
fn one_token_with_hardware_of_several_machines_matches_none() {
    let (c0, c1, c2, c3) = (fleet(0), fleet(1), fleet(2), fleet(3));
    let mut cs = of(&c0, &["mid", "rfs", "cpu", "psn"]);
    cs.extend(of(&c1, &["bsn"]));
    cs.extend(of(&c2, &["csn"]));
    cs.extend(of(&c3, &["dsk"]));
    let t = issue_token(&forged(cs), &IssueOptions::default(), &signer(), NOW - 30).unwrap().text;
    for m in [&c0, &c1, &c2, &c3] {
        match verify_on(&t, m).unwrap_err() {
            VerifyError::WrongMachine { report: Some(r), .. } => {
                assert!(r.matched >= r.required && !r.anchor_matched, "{r}");
                assert!(r.to_string().ends_with("hardware anchor (most of psn, bsn, csn, dsk) does not match"), "{r}");
            }
            e => panic!("{e:?}"),
        }
    }
    // Half the hardware from each of two machines: neither.
    let (y0, y1) = (fleet(4), fleet(5));
    let mut cs = of(&y0, &["mid", "psn", "csn", "cpu"]);
    cs.extend(of(&y1, &["rfs", "bsn", "dsk"]));
    let t = issue_token(&forged(cs), &IssueOptions::default(), &signer(), NOW - 30).unwrap().text;
    for m in [&y0, &y1] {
        assert!(matches!(verify_on(&t, m), Err(VerifyError::WrongMachine { .. })));
    }
}

/// Review 3, attacks 1 and 2: the binding grown across free re-issues. A
/// request that keeps a majority of the seat's token (so it passes it) but
/// adds another machine's hardware used to be re-issued free, and that
/// machine activated with it. A free re-issue now needs the seat's exact
/// hardware.
#[test]
fn a_seat_cannot_grow_its_hardware_across_reissues() {
    let (a, b) = (fleet(6), fleet(7));
    let d = tempfile::tempdir().unwrap();
    let mut l = ledger(d.path(), 1, false);
    let s = signer();
    let r1 = forged(of(&a, &["mid", "psn", "cpu"]));
    let mut grown = of(&a, &["mid", "psn"]);
    grown.extend(of(&b, &["bsn", "csn", "mac", "cpu"]));
    let r2 = forged(grown);
    assert_eq!(r1.cmid, r2.cmid, "both bind the machine-id alone into the CMID");
    l.issue(&r1, Some("acme"), &IssueOptions::default(), &s, NOW).unwrap();
    let m = refused(l.issue(&r2, Some("acme"), &IssueOptions::default(), &s, NOW));
    assert!(m.contains("bound to other hardware (changed: bsn, csn, mac)"), "{m}");
    assert_eq!(l.entitlement("acme").unwrap().used, 1);
}

/// Review 3, attacks 4 and 5: a MAC list grown by re-issues, and a MAC
/// repeated so one NIC outweighs the others in the MAC vote. A repeated
/// component is refused; a new MAC in a re-issue is a hardware change.
#[test]
fn repeated_or_added_macs_do_not_stretch_a_seat() {
    let z1 = id(&[("mid", "4f1d2c3b4a5968778695a4b3c2d1e0f1"), ("mac", "00:1b:21:00:01:01")]);
    let z3 = id(&[("mid", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"), ("mac", "00:1b:21:00:03:03")]);
    let mac3 = of(&z3, &["mac"]).remove(0);
    let mut repeated = z1.components().to_vec();
    repeated.extend([mac3.clone(), mac3.clone()]);
    assert_eq!(
        binding_err(issue_token(&forged(repeated), &IssueOptions::default(), &signer(), NOW)),
        BindingError::DuplicateComponent { kind: "mac".into() }
    );
    let d = tempfile::tempdir().unwrap();
    let mut l = ledger(d.path(), 1, false);
    let all = IssueOptions { match_rule: Some(MatchRule::All), ..Default::default() };
    l.issue(&ActivationRequest::new(&z1, NOW, None), Some("acme"), &all, &signer(), NOW).unwrap();
    let mut more = z1.components().to_vec();
    more.push(mac3);
    let m = refused(l.issue(&forged(more), Some("acme"), &all, &signer(), NOW));
    assert!(m.contains("bound to other hardware (changed: mac)"), "{m}");
}

/// Review 3, attack 6: revoking the seat's token used to empty the seat
/// check, so any hardware with that CMID was re-issued free (and the
/// revoked machine keeps running where the list is never imported).
/// Revoked tokens still hold the seat; only a release frees it.
#[test]
fn a_revoked_token_still_holds_its_seat() {
    let (a, b) = (fleet(8), fleet(9));
    let d = tempfile::tempdir().unwrap();
    let mut l = ledger(d.path(), 1, false);
    let s = signer();
    let w1 = l.issue(&forged(of(&a, &["mid", "psn", "bsn", "cpu"])), Some("acme"), &IssueOptions::default(), &s, NOW);
    let w1 = w1.unwrap();
    l.revoke(&w1.serial, "stolen", NOW).unwrap();
    let mut other = of(&a, &["mid"]);
    other.extend(of(&b, &["psn", "bsn", "cpu"]));
    // Refused first as a revoked machine; asked for explicitly, the revoked
    // token still holds the seat: other hardware is refused.
    let m = refused(l.issue(&forged(other.clone()), Some("acme"), &IssueOptions::default(), &s, NOW));
    assert!(m.contains(&format!("its token {} in entitlement 1 (\"acme\") is revoked", w1.serial)), "{m}");
    let anyway = IssueOptions { allow_revoked_machine: true, ..Default::default() };
    let m = refused(l.issue(&forged(other), Some("acme"), &anyway, &s, NOW));
    assert!(m.contains(&format!("through token {}, bound to other hardware", w1.serial)), "{m}");
}

/// `machine id --json` says how strong the binding is, so a script (the
/// demo, an installer) knows before it asks whether an issuer will need
/// `--allow-weak-binding`.
#[test]
fn machine_id_json_names_the_binding_strength() {
    let s = sandbox::Sandbox::new();
    let j: serde_json::Value = serde_json::from_str(&s.ok(&["machine", "id", "--product", PRODUCT, "--json"])).unwrap();
    assert_eq!(j["binding"], "hardware");
    let weak = s.path("weak-root");
    std::fs::create_dir_all(weak.join("etc")).unwrap();
    std::fs::write(weak.join("etc/machine-id"), "4f1d2c3b4a5968778695a4b3c2d1e0f1\n").unwrap();
    let r = sandbox::run(s.cmd(&["machine", "id", "--product", PRODUCT, "--json"]).env("TKA_SYSROOT", &weak));
    let j: serde_json::Value = serde_json::from_str(&r.1).unwrap();
    assert_eq!(j["binding"], "weak", "{r:?}");
    let r = sandbox::run(s.cmd(&["machine", "id", "--product", PRODUCT]).env("TKA_SYSROOT", &weak));
    assert!(r.2.contains("warning: weak binding: no hardware anchor"), "{r:?}");
    let r = sandbox::run(s.cmd(&["machine", "id", "--product", PRODUCT, "--json"]).env("TKA_MACHINE_ID", "x-42"));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&r.1).unwrap()["binding"], "explicit");
}
