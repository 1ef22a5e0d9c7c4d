//! The activation agent against activation hosts on loopback: the real
//! host server (in-process with the clock injected, and the `tka host
//! serve` process end to end), a fake host for answers a real one never
//! gives (garbage, oversized, untrusted or mislabelled tokens, refusals),
//! and a DNS server on 127.0.0.1 serving SRV and A records. Every server a
//! test starts is stopped when it ends.
#![cfg(all(feature = "agent", feature = "host"))]

mod common;

use common::*;
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tka::activation::agent::client::{Timeouts, MAX_RESPONSE_BODY};
use tka::activation::agent::discover::DnsServer;
use tka::activation::agent::schedule::Schedule;
use tka::activation::agent::{self, AgentConfig, HostPort, Locate, RoundOutcome, RunEnv};
use tka::activation::ProductStatus;
use tka::issuer::host::server::{serve, Clock, ServeConfig};
use tka::issuer::host::state::{HostState, ProductConfig, SqliteState};
use tka::issuer::issue::REALTIME_BACKDATE_SECS as B;
use tka::issuer::issue::{issue_token, IssueOptions, TokenSigner};
use tka::keys::{SignatureAlgorithm, Signer};
use tka::machine::MachineIdentity;
use tka::pki::pem;
use tka::request::ActivationRequest;
use tka::store::{CachedHost, Store};
use tka::{AgentError, Error, VerifyError};

const BIN: &str = env!("CARGO_BIN_EXE_tka");
const DOMAIN: &str = "site.test";

/// What the fake host answers: what a real host never sends.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Bytes that are not HTTP.
    Garbage,
    /// A body larger than the agent reads.
    Oversized,
    /// A token signed under a root the machine does not trust.
    Untrusted,
    /// A token for another product.
    WrongProduct,
    /// A refusal.
    Refuse,
}

/// A misbehaving activation host on 127.0.0.1.
struct FakeHost {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHost {
    fn start(mode: Mode) -> FakeHost {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let answer = misbehave(&mut conn, mode);
                let _ = conn.write_all(&answer);
            }
        });
        FakeHost { port, stop, thread: Some(thread) }
    }

    fn hp(&self) -> HostPort {
        HostPort { host: "127.0.0.1".into(), port: self.port }
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one request and answers it as `mode` says.
fn misbehave(conn: &mut TcpStream, mode: Mode) -> Vec<u8> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return Vec::new(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).unwrap();
        body.extend_from_slice(&chunk[..n]);
    }
    match mode {
        Mode::Garbage => return b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
        Mode::Oversized => return http("200 OK", &"x".repeat(MAX_RESPONSE_BODY + 1)),
        Mode::Refuse => {
            return http(
                "403 Forbidden",
                r#"{"status":"refused","error":"unknown_product","message":"not served here"}"#,
            )
        }
        Mode::Untrusted | Mode::WrongProduct => {}
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut req = ActivationRequest::parse(v["request"].as_str().unwrap()).unwrap();
    let signer = match mode {
        Mode::Untrusted => TokenSigner::new(Box::new(test_key("signer2")), vec![other_pki().signer.clone()]),
        _ => TokenSigner::new(Box::new(test_key("signer")), vec![pki().signer.clone(), pki().int.clone()]),
    }
    .unwrap();
    let product = req.product.clone();
    if mode == Mode::WrongProduct {
        req.product = "other-product".into();
    }
    let opts = IssueOptions { alg: SignatureAlgorithm::Rs256, allow_weak_binding: true, ..Default::default() };
    let token = issue_token(&req, &opts, &signer, req.created).unwrap().text;
    let j = serde_json::json!({"status":"activated","product":product,"count":1,"threshold":1,"token":token,
                               "renew_after":604800,"valid_for":15552000});
    http("200 OK", &j.to_string())
}

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The real activation host (`tka::issuer::host::server::serve`) on
/// 127.0.0.1, on its own runtime in a thread, its clock injected (NOW), its
/// state in its own directory, issuing compact tokens with the test PKI.
struct RealHost {
    port: u16,
    dir: tempfile::TempDir,
    clock: Arc<TestClock>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<tka::Result<()>>>,
}

impl RealHost {
    fn start(threshold: u32) -> RealHost {
        let p = pki();
        RealHost::start_with(threshold, "signer", vec![p.signer.clone(), p.int.clone()], false)
    }

    /// A host with the test PKI's signer, serving TLS.
    fn start_tls(threshold: u32) -> RealHost {
        let p = pki();
        RealHost::start_with(threshold, "signer", vec![p.signer.clone(), p.int.clone()], true)
    }

    /// A host signing with test key `key` under `chain` (DER, its certificate
    /// first), serving TLS when `tls`.
    fn start_with(threshold: u32, key: &str, chain: Vec<Vec<u8>>, tls: bool) -> RealHost {
        let dir = tempfile::tempdir().unwrap();
        let state = SqliteState::open(&dir.path().join("state.sqlite")).unwrap();
        let chain_pem: String = chain.iter().map(|d| pem::encode("CERTIFICATE", d)).collect();
        let signer = Arc::new(TokenSigner::new(Box::new(test_key(key)), chain).unwrap());
        let products = vec![ProductConfig { product: PRODUCT.into(), threshold, seats: None }];
        let open: tka::issuer::host::server::OpenState = Box::new(move || Ok(Box::new(state) as Box<dyn HostState>));
        let mut config = ServeConfig::new(signer.clone(), chain_pem, products, open);
        if tls {
            config.tls = Some(tka::issuer::host::tls::server_config(signer).unwrap());
        }
        let clock = Arc::new(TestClock(AtomicI64::new(NOW)));
        config.clock = clock.clone();
        config.rate_per_min = 0;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(l.local_addr().unwrap().port()).unwrap();
                serve(vec![l], config, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let port = addr_rx.recv().unwrap();
        RealHost { port, dir, clock, stop: Some(stop), thread: Some(thread) }
    }

    fn hp(&self) -> HostPort {
        HostPort { host: "127.0.0.1".into(), port: self.port }
    }

    /// The host's count for PRODUCT, from its state database.
    fn count(&self) -> u32 {
        let mut state = SqliteState::open_read_only(&self.dir.path().join("state.sqlite")).unwrap();
        state.status(self.clock.now()).unwrap().remove(0).count
    }
}

impl Drop for RealHost {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}

/// SRV records (priority, weight, port, target) and A records.
#[derive(Default)]
struct Zone {
    srv: Vec<(u16, u16, u16, String)>,
    a: BTreeMap<String, Ipv4Addr>,
}

/// A DNS server on 127.0.0.1 (UDP) answering from a zone the test can change.
struct FakeDns {
    port: u16,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDns {
    /// Serves `_tka._tcp.site.test` with `targets` (priority, weight, port,
    /// name), every name at 127.0.0.1.
    fn start(targets: &[(u16, u16, u16, &str)]) -> FakeDns {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (z, st) = (zone.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
                let reply = answer(&q, &z.lock().unwrap());
                let _ = sock.send_to(&reply.to_vec().unwrap(), from);
            }
        });
        let dns = FakeDns { port, zone, stop, thread: Some(thread) };
        dns.set(targets);
        dns
    }

    fn set(&self, targets: &[(u16, u16, u16, &str)]) {
        let mut z = self.zone.lock().unwrap();
        z.srv = targets.iter().map(|(p, w, port, t)| (*p, *w, *port, t.to_string())).collect();
        z.a = targets.iter().map(|t| (t.3.to_string(), Ipv4Addr::LOCALHOST)).collect();
    }

    fn server(&self) -> DnsServer {
        DnsServer::At(format!("127.0.0.1:{}", self.port).parse().unwrap())
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = s.send_to(b"stop", ("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn answer(q: &Message, zone: &Zone) -> Message {
    let mut r = Message::response(q.metadata.id, OpCode::Query);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.metadata.authoritative = true;
    let Some(query) = q.queries.first() else { return r };
    r.add_query(query.clone());
    let name = query.name.to_string().trim_end_matches('.').to_ascii_lowercase();
    let owner = query.name.clone();
    if name == format!("_tka._tcp.{DOMAIN}") {
        if query.query_type == RecordType::SRV {
            for (p, w, port, t) in &zone.srv {
                let target = Name::from_ascii(format!("{t}.")).unwrap();
                r.add_answer(Record::from_rdata(owner.clone(), 60, RData::SRV(SRV::new(*p, *w, *port, target))));
            }
        }
    } else if let Some(ip) = zone.a.get(&name) {
        if query.query_type == RecordType::A {
            r.add_answer(Record::from_rdata(owner, 60, RData::A(A(*ip))));
        }
    } else {
        r.metadata.response_code = ResponseCode::NXDomain;
    }
    r
}

/// A port with nothing listening.
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Machine number `n`, distinct from every other.
fn machine_n(n: u32) -> MachineIdentity {
    MachineIdentity::from_raw(
        PRODUCT,
        &raw(&[
            ("mid", &format!("{n:032x}")),
            ("dmi", &format!("4c4c4544-0042-3510-8052-{n:012x}")),
            ("bsn", &format!("SN{n}")),
            ("mac", &format!("00:11:22:33:44:{:02x}", n % 256)),
            ("rfs", &format!("6f0a1f0e-1c2b-4f7e-9a55-{n:012x}")),
        ]),
    )
}

/// A store trusting the test root.
fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    store.lock().unwrap().add_root(&pki().root).unwrap();
    (tmp, store)
}

fn config(locate: Locate) -> AgentConfig {
    AgentConfig {
        product: PRODUCT.into(),
        locate,
        timeouts: Timeouts { connect: Duration::from_secs(2), read: Duration::from_secs(5) },
        pinned_roots: Vec::new(),
        tls: false,
    }
}

fn tls(mut cfg: AgentConfig) -> AgentConfig {
    cfg.tls = true;
    cfg
}

fn at(host: &impl Where) -> AgentConfig {
    config(Locate::Host(host.hp()))
}

trait Where {
    fn hp(&self) -> HostPort;
}

impl Where for FakeHost {
    fn hp(&self) -> HostPort {
        FakeHost::hp(self)
    }
}

impl Where for RealHost {
    fn hp(&self) -> HostPort {
        RealHost::hp(self)
    }
}

fn via(dns: &FakeDns) -> AgentConfig {
    config(Locate::Domain { domain: DOMAIN.into(), dns: dns.server() })
}

fn once(store: &Store, n: u32, cfg: &AgentConfig) -> tka::Result<RoundOutcome> {
    let id = machine_n(n);
    agent::once(store, &move |_: &str| Ok(id.clone()), cfg, NOW)
}

fn host_of(o: &RoundOutcome) -> u16 {
    match o {
        RoundOutcome::Activated { host, .. } | RoundOutcome::Pending { host, .. } => host.port,
    }
}

fn installed(store: &Store) -> bool {
    store.token(PRODUCT).unwrap().is_some()
}

/// Reported: the host dated a token's `nbf` at its own clock, so a machine
/// whose clock was a second behind refused its fresh token ("token is not
/// valid before X, now is X-1s"). The host dates tokens
/// REALTIME_BACKDATE_SECS in the past: a machine up to that far behind
/// installs at once; one further behind is still refused as not yet valid.
#[test]
fn a_machine_whose_clock_is_behind_the_hosts_installs_its_fresh_token() {
    let host = RealHost::start(1);
    for (n, behind) in [(1, 1), (2, B)] {
        let (_t, s) = store();
        let id = machine_n(n);
        let o = agent::once(&s, &move |_: &str| Ok(id.clone()), &at(&host), NOW - behind).unwrap();
        let RoundOutcome::Activated { verified, .. } = o else { panic!("{behind} s behind: {o:?}") };
        assert_eq!((verified.claims.iat, verified.claims.nbf), (NOW - B, NOW - B));
        assert!(installed(&s), "{behind} s behind");
    }
    let (_t, s) = store();
    let id = machine_n(3);
    match agent::once(&s, &move |_: &str| Ok(id.clone()), &at(&host), NOW - B - 1) {
        Err(tka::Error::Verify(tka::VerifyError::TokenNotYetValid { nbf, now })) => {
            assert_eq!((nbf, now), (NOW - B, NOW - B - 1))
        }
        other => panic!("expected TokenNotYetValid, got {other:?}"),
    }
    assert!(!installed(&s));
}

#[test]
fn below_the_threshold_the_machine_waits_and_is_activated_on_its_retry() {
    let host = RealHost::start(3);
    let (_t1, s1) = store();
    let (_t2, s2) = store();
    let (_t3, s3) = store();
    let o = once(&s1, 1, &at(&host)).unwrap();
    assert!(matches!(o, RoundOutcome::Pending { retry_after: Some(7200), .. }), "{o:?}");
    assert_eq!(o.count().to_string(), "count: 1 of 3");
    assert!(!installed(&s1));
    assert_eq!(once(&s2, 2, &at(&host)).unwrap().count().to_string(), "count: 2 of 3");
    let o = once(&s3, 3, &at(&host)).unwrap();
    assert!(matches!(o, RoundOutcome::Activated { .. }), "{o:?}");
    assert!(installed(&s3));
    // The first machine's retry: the count has reached the threshold.
    let o = once(&s1, 1, &at(&host)).unwrap();
    assert_eq!(o.count().to_string(), "count: 3 of 3");
    let RoundOutcome::Activated { verified, renew_at, .. } = o else { panic!("{o:?}") };
    assert_eq!(verified.claims.aud, PRODUCT);
    // The host dates its tokens a little in the past (clock skew).
    assert_eq!(renew_at, NOW - B + 7 * DAY);
    let id = machine_n(1);
    let st = tka::activation::status(&s1, PRODUCT, &id, &[], NOW).unwrap();
    assert!(matches!(st, ProductStatus::Active(_)));
}

#[test]
fn srv_discovery_asks_the_lowest_priority_first() {
    let (h1, h2) = (RealHost::start(1), RealHost::start(1));
    let dns = FakeDns::start(&[(20, 100, h2.port, "kms2.site.test"), (10, 1, h1.port, "kms1.site.test")]);
    let (_t, s) = store();
    let o = once(&s, 1, &via(&dns)).unwrap();
    assert_eq!(host_of(&o), h1.port);
    assert_eq!((h1.count(), h2.count()), (1, 0));
}

#[test]
fn srv_discovery_fails_over_when_the_first_host_is_down() {
    let live = RealHost::start(1);
    let dead = dead_port();
    let dns = FakeDns::start(&[(10, 10, dead, "dead.site.test"), (20, 10, live.port, "live.site.test")]);
    let (_t, s) = store();
    let o = once(&s, 1, &via(&dns)).unwrap();
    assert!(matches!(o, RoundOutcome::Activated { .. }), "{o:?}");
    assert_eq!(host_of(&o), live.port);
    assert_eq!(
        s.cached_host().unwrap().map(|c| (c.host, c.port, c.when)),
        Some(("live.site.test".into(), live.port, NOW))
    );
}

#[test]
fn the_host_that_answered_is_asked_first_for_the_renewal() {
    let (h1, h2) = (RealHost::start(1), RealHost::start(1));
    let dns = FakeDns::start(&[(10, 10, h1.port, "kms1.site.test")]);
    let (_t, s) = store();
    assert_eq!(host_of(&once(&s, 1, &via(&dns)).unwrap()), h1.port);
    // DNS now prefers another host; the renewal still goes to the one that answered.
    dns.set(&[(5, 10, h2.port, "kms2.site.test"), (10, 10, h1.port, "kms1.site.test")]);
    assert_eq!(host_of(&once(&s, 1, &via(&dns)).unwrap()), h1.port);
    assert_eq!(h2.count(), 0);
}

#[test]
fn dns_is_asked_again_when_the_cached_host_stops_answering() {
    let h1 = RealHost::start(1);
    let h2 = RealHost::start(1);
    let dns = FakeDns::start(&[(10, 10, h1.port, "kms1.site.test"), (20, 10, h2.port, "kms2.site.test")]);
    let (_t, s) = store();
    assert_eq!(host_of(&once(&s, 1, &via(&dns)).unwrap()), h1.port);
    let gone = h1.port;
    drop(h1);
    let o = once(&s, 1, &via(&dns)).unwrap();
    assert_eq!(host_of(&o), h2.port);
    let cached = s.cached_host().unwrap().unwrap();
    assert_eq!((cached.host.as_str(), cached.port), ("kms2.site.test", h2.port));
    assert_ne!(cached.port, gone);
}

#[test]
fn no_host_reachable_names_what_was_tried_and_changes_nothing() {
    let (_t, s) = store();
    let port = dead_port();
    let cfg = config(Locate::Host(HostPort { host: "127.0.0.1".into(), port }));
    let before = std::fs::read(s.dir().join("state.json")).unwrap();
    match once(&s, 1, &cfg) {
        Err(Error::Agent(AgentError::NoHostReachable { tried })) => {
            assert_eq!(tried, [format!("127.0.0.1:{port} (connection refused)")])
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(s.dir().join("state.json")).unwrap(), before);
    assert!(!installed(&s));
}

#[test]
fn srv_name_without_records_is_a_discovery_error() {
    let dns = FakeDns::start(&[]);
    let (_t, s) = store();
    let cfg = config(Locate::Domain { domain: "nothing.test".into(), dns: dns.server() });
    match once(&s, 1, &cfg) {
        Err(Error::Agent(AgentError::Discovery { name, .. })) => assert_eq!(name, "_tka._tcp.nothing.test"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.cached_host().unwrap(), None);
}

#[test]
fn a_garbage_answer_is_refused() {
    let host = FakeHost::start(Mode::Garbage);
    let (_t, s) = store();
    match once(&s, 1, &at(&host)) {
        Err(Error::Agent(AgentError::BadResponse { host: h, detail })) => {
            assert_eq!(h, host.hp().to_string());
            assert_eq!(detail, r#"not an HTTP/1.1 answer (starts "SSH-2.0-OpenSSH_9.6")"#);
        }
        other => panic!("{other:?}"),
    }
    assert!(!installed(&s));
}

#[test]
fn an_oversized_answer_is_refused() {
    let host = FakeHost::start(Mode::Oversized);
    let (_t, s) = store();
    match once(&s, 1, &at(&host)) {
        Err(Error::Agent(e)) => {
            assert_eq!(e, AgentError::ResponseTooLarge { host: host.hp().to_string(), limit: MAX_RESPONSE_BODY })
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_token_is_verified_against_the_trusted_roots_not_taken_from_the_host() {
    let host = FakeHost::start(Mode::Untrusted);
    let (_t, s) = store();
    let r = once(&s, 1, &at(&host));
    assert!(matches!(r, Err(Error::Verify(VerifyError::UntrustedRoot { .. }))), "{r:?}");
    assert!(!installed(&s));
}

#[test]
fn a_token_for_another_product_is_refused() {
    let host = FakeHost::start(Mode::WrongProduct);
    let (_t, s) = store();
    match once(&s, 1, &at(&host)) {
        Err(Error::Agent(AgentError::BadResponse { detail, .. })) => {
            assert_eq!(detail, format!("a token for product \"other-product\", not \"{PRODUCT}\""))
        }
        other => panic!("{other:?}"),
    }
    assert!(!installed(&s));
}

#[test]
fn a_refusal_by_the_host_is_reported_with_its_code() {
    let host = FakeHost::start(Mode::Refuse);
    let (_t, s) = store();
    match once(&s, 1, &at(&host)) {
        Err(Error::Agent(e)) => assert_eq!(
            e,
            AgentError::HostRefused {
                host: host.hp().to_string(),
                code: "unknown_product".into(),
                message: "not served here".into()
            }
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn return_gives_the_activation_back_and_drops_the_local_token() {
    let host = RealHost::start(1);
    let (_t, s) = store();
    once(&s, 1, &at(&host)).unwrap();
    assert!(installed(&s));
    assert_eq!(host.count(), 1);
    let id = machine_n(1);
    let r = agent::give_back(&s, &move |_: &str| Ok(id.clone()), &at(&host), NOW).unwrap();
    assert!(r.dropped);
    assert_eq!(r.count.to_string(), "count: 0 of 1");
    assert_eq!(host.count(), 0);
    assert!(!installed(&s));
}

#[test]
fn return_without_a_host_keeps_the_local_token() {
    let host = RealHost::start(1);
    let (_t, s) = store();
    once(&s, 1, &at(&host)).unwrap();
    let cfg = config(Locate::Host(HostPort { host: "127.0.0.1".into(), port: dead_port() }));
    let id = machine_n(1);
    let r = agent::give_back(&s, &move |_: &str| Ok(id.clone()), &cfg, NOW);
    assert!(matches!(r, Err(Error::Agent(AgentError::NoHostReachable { .. }))), "{r:?}");
    assert!(installed(&s));
}

/// A clock that sleeping moves (the host's too), stopping after `rounds` sleeps.
struct FakeEnv {
    now: i64,
    host_clock: Arc<TestClock>,
    sleeps: Vec<i64>,
    rounds: usize,
    log: Vec<String>,
}

impl FakeEnv {
    fn new(host: &RealHost, rounds: usize) -> FakeEnv {
        FakeEnv { now: NOW, host_clock: host.clock.clone(), sleeps: Vec::new(), rounds, log: Vec::new() }
    }
}

impl RunEnv for FakeEnv {
    fn now(&mut self) -> i64 {
        self.now
    }
    fn sleep_until(&mut self, when: i64) -> bool {
        self.sleeps.push(when);
        self.now = when;
        self.host_clock.0.store(when, Ordering::SeqCst);
        self.sleeps.len() <= self.rounds
    }
    fn log(&mut self, line: &str) {
        self.log.push(line.to_string());
    }
    fn uniform(&mut self, max: u32) -> u32 {
        max / 2
    }
}

#[test]
fn run_renews_when_the_token_says() {
    let host = RealHost::start(1);
    let (_t, s) = store();
    let id = machine_n(1);
    let ident = move |_: &str| Ok(id.clone());
    let mut env = FakeEnv::new(&host, 2);
    agent::run(&s, &ident, &at(&host), &Schedule::default(), &mut env).unwrap();
    // Rounds at NOW, NOW + 7 d, NOW + 14 d (each less the host's backdating);
    // the third sleep is stopped.
    let due = [NOW - B + 7 * DAY, NOW - 2 * B + 14 * DAY, NOW - 3 * B + 21 * DAY];
    assert_eq!(env.sleeps, due);
    let line = |t: i64| {
        format!(
            "{PRODUCT}: activated by 127.0.0.1:{} (count: 1 of 1); renewal due {}",
            host.port,
            tka::clock::rfc3339(t)
        )
    };
    assert_eq!(env.log, due.map(line));
}

#[test]
fn run_waits_for_the_installed_token_renewal_before_its_first_round() {
    let host = RealHost::start(1);
    let (_t, s) = store();
    once(&s, 1, &at(&host)).unwrap();
    let id = machine_n(1);
    let ident = move |_: &str| Ok(id.clone());
    let mut env = FakeEnv::new(&host, 0);
    agent::run(&s, &ident, &at(&host), &Schedule::default(), &mut env).unwrap();
    assert_eq!(env.sleeps, [NOW - B + 7 * DAY]);
    assert_eq!(env.log, [format!("{PRODUCT}: activated; renewal due {}", tka::clock::rfc3339(NOW - B + 7 * DAY))]);
}

#[test]
fn run_retries_every_two_hours_while_below_the_threshold() {
    let host = RealHost::start(2);
    let (_t, s) = store();
    let id = machine_n(1);
    let ident = move |_: &str| Ok(id.clone());
    let mut env = FakeEnv::new(&host, 1);
    agent::run(&s, &ident, &at(&host), &Schedule::default(), &mut env).unwrap();
    assert_eq!(env.sleeps, [NOW + 7200, NOW + 2 * 7200]);
    let line = format!("{PRODUCT}: not activated yet by 127.0.0.1:{} (count: 1 of 2)", host.port);
    assert_eq!(env.log, [line.clone(), line]);
}

#[test]
fn run_retries_every_two_hours_while_no_host_answers() {
    let host = RealHost::start(1);
    let (_t, s) = store();
    let id = machine_n(1);
    let ident = move |_: &str| Ok(id.clone());
    let mut env = FakeEnv::new(&host, 1);
    let port = dead_port();
    let cfg = config(Locate::Host(HostPort { host: "127.0.0.1".into(), port }));
    agent::run(&s, &ident, &cfg, &Schedule::default(), &mut env).unwrap();
    assert_eq!(env.sleeps, [NOW + 7200, NOW + 2 * 7200]);
    let line = format!("{PRODUCT}: no activation host reachable (tried 127.0.0.1:{port} (connection refused))");
    assert_eq!(env.log, [line.clone(), line]);
}

#[test]
fn a_compact_token_is_installed_with_the_hosts_chain() {
    let host = RealHost::start(1);
    let (_t, s) = store();
    assert!(s.certificates().unwrap().is_empty());
    let RoundOutcome::Activated { verified, .. } = once(&s, 1, &at(&host)).unwrap() else { panic!() };
    let token = s.token(PRODUCT).unwrap().unwrap().token;
    let (jws, _) = tka::token::decode_unverified(&token).unwrap();
    assert!(jws.x5c.is_empty(), "the host issues compact tokens");
    assert_eq!(s.certificates().unwrap().len(), 2);
    assert_eq!(verified.path.len(), 3);
}

fn agent_error(e: Error) -> AgentError {
    match e {
        Error::Agent(a) => a,
        other => panic!("not an agent error: {other:?}"),
    }
}

#[test]
fn tls_activation_end_to_end() {
    let host = RealHost::start_tls(1);
    let (_t, s) = store();
    let o = once(&s, 1, &tls(at(&host))).unwrap();
    assert!(matches!(o, RoundOutcome::Activated { .. }), "{o:?}");
    assert!(installed(&s));
    assert_eq!(host.count(), 1);
}

#[test]
fn tls_a_host_certificate_from_another_root_is_not_trusted() {
    let o = other_pki();
    let host = RealHost::start_with(1, "signer2", vec![o.signer.clone()], true);
    let (_t, s) = store();
    let e = once(&s, 1, &tls(at(&host))).unwrap_err();
    let issuer = tka::pki::CertInfo::parse(&o.signer).unwrap().issuer;
    assert_eq!(
        agent_error(e),
        AgentError::UntrustedHost {
            host: host.hp().to_string(),
            detail: VerifyError::UntrustedRoot { issuer }.to_string()
        }
    );
    assert!(!installed(&s));
    assert_eq!(host.count(), 0);
}

/// A host certificate under the trusted root, delegated `products` only.
fn delegated_signer(products: &[&str]) -> Vec<u8> {
    let p = pki();
    let delegation = tka::pki::Delegation {
        products: products.iter().map(|s| s.to_string()).collect(),
        max_lifetime_secs: 180 * 86_400,
        seats: None,
    };
    let req = tka::issuer::CertRequest {
        kind: tka::issuer::CertKind::Signer,
        subject: "CN=Delegated Host,O=tka tests",
        not_before: NOW - DAY,
        not_after: NOW + 300 * DAY,
        delegation: Some(delegation),
    };
    let int = tka::pki::CertInfo::parse(&p.int).unwrap();
    tka::issuer::create_certificate(&req, test_key("signer").public_key(), Some(&int), &p.int_key).unwrap()
}

#[test]
fn tls_a_host_not_delegated_the_product_is_not_trusted() {
    let host = RealHost::start_with(1, "signer", vec![delegated_signer(&["other-product"]), pki().int.clone()], true);
    let (_t, s) = store();
    let e = once(&s, 1, &tls(at(&host))).unwrap_err();
    let detail = VerifyError::OutsideDelegation {
        subject: "CN=Delegated Host,O=tka tests".into(),
        what: format!("product {PRODUCT:?} is not delegated (other-product)"),
    }
    .to_string();
    assert_eq!(agent_error(e), AgentError::UntrustedHost { host: host.hp().to_string(), detail });
    assert_eq!(host.count(), 0);
}

#[test]
fn tls_an_untrusted_srv_target_is_skipped_for_the_next() {
    let o = other_pki();
    let untrusted = RealHost::start_with(1, "signer2", vec![o.signer.clone()], true);
    let good = RealHost::start_tls(1);
    let dns = FakeDns::start(&[(10, 10, untrusted.port, "bad.site.test"), (20, 10, good.port, "good.site.test")]);
    let (_t, s) = store();
    let r = once(&s, 1, &tls(via(&dns))).unwrap();
    assert_eq!(host_of(&r), good.port);
    assert_eq!((untrusted.count(), good.count()), (0, 1));
}

#[test]
fn tls_a_plain_http_agent_is_told_the_host_requires_tls() {
    let host = RealHost::start_tls(1);
    let (_t, s) = store();
    let e = agent_error(once(&s, 1, &at(&host)).unwrap_err());
    assert_eq!(e.to_string(), format!("activation host {} accepts only TLS connections", host.hp()));
    assert_eq!(
        e,
        AgentError::TlsMismatch { host: host.hp().to_string(), host_requires_tls: true, detail: String::new() }
    );
    assert_eq!(host.count(), 0);
}

#[test]
fn tls_an_agent_asking_a_plain_host_for_tls_is_told_it_does_not_answer_with_tls() {
    let host = RealHost::start(1);
    let (_t, s) = store();
    let e = once(&s, 1, &tls(at(&host))).unwrap_err();
    let Error::Agent(AgentError::TlsMismatch { host_requires_tls: false, ref detail, .. }) = e else { panic!("{e:?}") };
    assert_eq!(detail, "not a TLS record: the host may serve plain HTTP");
    assert!(!installed(&s));
}

fn tka_cmd(store: &Path, machine: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).env("TKA_STORE", store).env("TKA_MACHINE_ID", machine).output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn cli_once_without_a_reachable_host_exits_2_naming_what_was_tried() {
    let (_t, s) = store();
    let port = dead_port();
    let out = tka_cmd(
        s.dir(),
        "agent-cli-1",
        &["agent", "once", "--product", PRODUCT, "--host", &format!("127.0.0.1:{port}")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.lines().next().unwrap(),
        format!("error: no activation host reachable (tried 127.0.0.1:{port} (connection refused))")
    );
}

#[test]
fn cli_a_host_refusal_exits_1() {
    let host = FakeHost::start(Mode::Refuse);
    let (_t, s) = store();
    let out =
        tka_cmd(s.dir(), "agent-cli-1", &["agent", "once", "--product", PRODUCT, "--host", &host.hp().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        format!("error: activation host {} refused the request (unknown_product): not served here", host.hp())
    );
}

#[test]
fn cli_run_logs_each_round_and_exits_0_on_sigterm() {
    let (_t, s) = store();
    let port = dead_port();
    let mut child = Command::new(BIN)
        .args(["agent", "run", "--product", PRODUCT, "--host", &format!("127.0.0.1:{port}")])
        .env("TKA_STORE", s.dir())
        .env("TKA_MACHINE_ID", "agent-cli-run")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    assert_eq!(
        line,
        format!("tka agent: {PRODUCT}: no activation host reachable (tried 127.0.0.1:{port} (connection refused))\n")
    );
    // Now asleep until the retry in 2 hours: SIGTERM ends it at once.
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(rest, "tka agent: stopped\n");
}

/// `tka host serve` as a process, stopped (SIGTERM) when dropped.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn tka_ok(args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "tka {args:?}: {}", text(&out));
    out
}

/// The whole LAN flow with the binaries: an issuer, a host delegated for
/// `acme` serving with threshold 3, machines with their own stores and
/// identities finding it by name and through DNS SRV.
#[test]
fn end_to_end_with_tka_host_serve() {
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p).to_str().unwrap().to_string();
    tka_ok(&["issuer", "init", "--org", "tka", "--home", &w("iss"), "--insecure-no-passphrase"]);
    tka_ok(&["host", "init", "--dir", &w("host")]);
    tka_ok(&[
        "host",
        "certify",
        "--home",
        &w("iss"),
        "--request",
        &w("host/host.csr"),
        "--products",
        "acme",
        "--max-lifetime",
        "180d",
        "--days",
        "365",
        "--out",
        &w("host.pem"),
    ]);
    tka_ok(&["host", "install", &w("host.pem"), "--dir", &w("host")]);
    let mut child = Command::new(BIN)
        .args(["host", "serve", "--dir", &w("host"), "--listen", "127.0.0.1:0", "--threshold", "acme=3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let served = Served(child);
    let addr = line.trim().strip_prefix("listening: ").unwrap_or_else(|| panic!("{line:?}")).to_string();
    let root = std::fs::read_dir(work.path().join("iss"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap() == "root.pem")
        .expect("the issuer home's root.pem");
    let machine = |n: u32| {
        let store = work.path().join(format!("store{n}"));
        let id = format!("agent-e2e-machine-{n}");
        if !store.exists() {
            let out = tka_cmd(&store, &id, &["trust", "add", root.to_str().unwrap()]);
            assert!(out.status.success(), "{}", text(&out));
        }
        (store, id)
    };
    let once = |n: u32, extra: &[&str]| {
        let (store, id) = machine(n);
        let by_name = ["--host", addr.as_str()];
        let mut args = vec!["agent", "once", "--product", "acme"];
        args.extend_from_slice(if extra.is_empty() { &by_name } else { extra });
        tka_cmd(&store, &id, &args)
    };
    let r = once(1, &[]);
    assert_eq!((r.status.code(), text(&r)), (Some(1), "count: 1 of 3\n".into()));
    let r = once(2, &[]);
    assert_eq!((r.status.code(), text(&r)), (Some(1), "count: 2 of 3\n".into()));
    let r = once(3, &[]);
    assert_eq!((r.status.code(), text(&r)), (Some(0), "activated: acme (count: 3 of 3)\n".into()));
    // The first machine's retry activates it too.
    let r = once(1, &[]);
    assert_eq!((r.status.code(), text(&r)), (Some(0), "activated: acme (count: 3 of 3)\n".into()));
    let (store1, id1) = machine(1);
    let st = tka_cmd(&store1, &id1, &["status", "--product", "acme"]);
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));

    // Through DNS: the preferred target is down, the next answers.
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let dns = FakeDns::start(&[(10, 10, dead_port(), "dead.site.test"), (20, 10, port, "live.site.test")]);
    let dns_addr = format!("127.0.0.1:{}", dns.port);
    let r = once(4, &["--domain", DOMAIN, "--dns", &dns_addr]);
    assert_eq!((r.status.code(), text(&r)), (Some(0), "activated: acme (count: 4 of 3)\n".into()));

    // An early return: the count drops at once, the local token is gone.
    let (store3, id3) = machine(3);
    let r = tka_cmd(&store3, &id3, &["agent", "return", "--product", "acme", "--host", &addr]);
    assert_eq!((r.status.code(), text(&r)), (Some(0), "returned: acme (count: 3 of 3; local token removed)\n".into()));
    let st = tka_cmd(&store3, &id3, &["status", "--product", "acme"]);
    assert_eq!(st.status.code(), Some(1), "{}", text(&st));
    drop(served);
}

/// `tka host serve --tls` and `tka agent once --tls` / `--host https://...`.
#[test]
fn cli_host_serve_tls_and_agent_once_tls() {
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p).to_str().unwrap().to_string();
    tka_ok(&["issuer", "init", "--org", "tka", "--home", &w("iss"), "--insecure-no-passphrase"]);
    tka_ok(&["host", "init", "--dir", &w("host")]);
    let certify = ["host", "certify", "--home", &w("iss"), "--request", &w("host/host.csr"), "--products", "acme"];
    let mut args = certify.to_vec();
    args.extend(["--max-lifetime", "180d", "--days", "365", "--out"]);
    let out = w("host.pem");
    args.push(&out);
    tka_ok(&args);
    tka_ok(&["host", "install", &w("host.pem"), "--dir", &w("host")]);
    let mut child = Command::new(BIN)
        .args(["host", "serve", "--dir", &w("host"), "--listen", "127.0.0.1:0", "--threshold", "acme=1", "--tls"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let served = Served(child);
    let addr = line.trim().strip_prefix("listening: ").unwrap_or_else(|| panic!("{line:?}")).to_string();
    let store = work.path().join("store");
    let out = tka_cmd(&store, "tls-machine-1", &["trust", "add", &w("iss/root.pem")]);
    assert!(out.status.success(), "{}", text(&out));
    // Plain HTTP to a TLS host: exit 2, one line.
    let r = tka_cmd(&store, "tls-machine-1", &["agent", "once", "--product", "acme", "--host", &addr]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr).to_string();
    assert!(err.starts_with(&format!("error: activation host {addr} accepts only TLS connections\n")), "{err}");
    let r = tka_cmd(&store, "tls-machine-1", &["agent", "once", "--product", "acme", "--host", &addr, "--tls"]);
    assert_eq!((r.status.code(), text(&r)), (Some(0), "activated: acme (count: 1 of 1)\n".into()));
    let https = format!("https://{addr}");
    let r = tka_cmd(&store, "tls-machine-2", &["agent", "once", "--product", "acme", "--host", &https]);
    assert_eq!((r.status.code(), text(&r)), (Some(0), "activated: acme (count: 2 of 1)\n".into()));
    // A machine trusting another root: the host is not trusted, exit 2.
    let other = work.path().join("other.pem");
    std::fs::write(&other, pem::encode("CERTIFICATE", &other_pki().root)).unwrap();
    let store2 = work.path().join("store2");
    assert!(tka_cmd(&store2, "tls-machine-3", &["trust", "add", other.to_str().unwrap()]).status.success());
    let r = tka_cmd(&store2, "tls-machine-3", &["agent", "once", "--product", "acme", "--host", &https]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr).to_string();
    assert!(err.starts_with(&format!("error: activation host {addr} is not trusted: its TLS certificate: ")), "{err}");
    drop(served);
}

#[test]
fn cached_host_file_is_what_the_agent_wrote() {
    let host = RealHost::start(1);
    let dns = FakeDns::start(&[(10, 10, host.port, "kms1.site.test")]);
    let (_t, s) = store();
    once(&s, 1, &via(&dns)).unwrap();
    assert_eq!(
        s.cached_host().unwrap(),
        Some(CachedHost { host: "kms1.site.test".into(), port: host.port, when: NOW })
    );
}
