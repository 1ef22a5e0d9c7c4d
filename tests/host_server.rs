//! The activation host's server (issue 13 items 2, 5, 6): `serve` started
//! in-process on 127.0.0.1 port 0 with an injected clock, driven by a raw
//! HTTP/1.1 client on a TcpStream; and the `tka host serve` process killed
//! with SIGKILL (the count survives exactly) and stopped with SIGTERM (exit 0).
#![cfg(feature = "host")]

mod common;
#[cfg(feature = "postgres")]
#[path = "common/pg.rs"]
mod pg;
mod tools;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tka::issuer::host::server::{serve, Clock, ServeConfig};
use tka::issuer::host::state::{HostState, ProductConfig, SqliteState};
use tka::issuer::issue::TokenSigner;
use tka::machine::MachineIdentity;
use tka::request::ActivationRequest;

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A host running on its own runtime in a thread.
struct Host {
    addr: SocketAddr,
    clock: Arc<TestClock>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<tka::Result<()>>>,
}

impl Host {
    fn set_now(&self, t: i64) {
        self.clock.0.store(t, Ordering::SeqCst);
    }

    /// Stops the host (as on SIGTERM) and returns what `serve` returned.
    fn stop(mut self) -> tka::Result<()> {
        self.stop.take().unwrap().send(()).unwrap();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn signer() -> TokenSigner {
    let p = pki();
    TokenSigner::new(Box::new(test_key("signer")), vec![p.signer.clone(), p.int.clone()]).unwrap()
}

fn product(threshold: u32) -> ProductConfig {
    ProductConfig { product: PRODUCT.into(), threshold, seats: None }
}

fn opener(dir: &Path) -> tka::issuer::host::server::OpenState {
    let path = dir.join("state.sqlite");
    Box::new(move || Ok(Box::new(SqliteState::open(&path)?) as Box<dyn HostState>))
}

/// Starts a host with state in `dir`, `threshold` for PRODUCT, and `tune` applied to the configuration.
fn start(dir: &Path, threshold: u32, tune: impl FnOnce(&mut ServeConfig)) -> Host {
    start_with(opener(dir), threshold, tune)
}

/// Starts a host on the state `open` opens.
fn start_with(open: tka::issuer::host::server::OpenState, threshold: u32, tune: impl FnOnce(&mut ServeConfig)) -> Host {
    let mut config = ServeConfig::new(Arc::new(signer()), "PEM\n".into(), vec![product(threshold)], open);
    let clock = Arc::new(TestClock(AtomicI64::new(NOW)));
    config.clock = clock.clone();
    config.rate_per_min = 0;
    tune(&mut config);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(l.local_addr().unwrap()).unwrap();
            serve(vec![l], config, async {
                let _ = stopped.await;
            })
            .await
        })
    });
    let addr = addr_rx.recv().unwrap();
    Host { addr, clock, stop: Some(stop), thread: Some(thread) }
}

/// Machine `n`: five components of its own.
fn client(n: u32) -> MachineIdentity {
    let mid = format!("{n:032x}");
    let mac = format!("02:00:00:00:{:02x}:{:02x}", n >> 8, n & 0xff);
    MachineIdentity::from_raw(
        PRODUCT,
        &raw(&[
            ("mid", &mid),
            ("dmi", &format!("4c4c4544-0042-3510-8052-{n:012x}")),
            ("bsn", &format!("BSN{n}")),
            ("mac", &mac),
            ("rfs", &format!("6f0a1f0e-1c2b-4f7e-9a55-{n:012x}")),
        ]),
    )
}

fn request(n: u32, now: i64) -> ActivationRequest {
    ActivationRequest::new(&client(n), now, None)
}

fn body(req: &ActivationRequest) -> String {
    serde_json::json!({"request": req.to_text().unwrap()}).to_string()
}

/// Sends raw bytes, reads the whole answer (the server closes: `Connection: close`).
fn exchange(addr: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, serde_json::Value) {
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = exchange(addr, raw.as_bytes());
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

fn activate(h: &Host, req: &ActivationRequest) -> (u16, serde_json::Value) {
    post(h.addr, "/v1/activate", &body(req))
}

fn status_of(dir: &Path) -> tka::issuer::host::state::ProductStatus {
    SqliteState::open_read_only(&dir.join("state.sqlite")).unwrap().status(NOW).unwrap().remove(0)
}

#[test]
fn below_the_threshold_is_pending_and_earlier_clients_are_activated_on_their_retry() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 3, |_| {});
    let (s, j) = activate(&h, &request(1, NOW));
    assert_eq!(s, 200);
    assert_eq!(
        j,
        serde_json::json!({"status": "pending", "product": PRODUCT, "count": 1, "threshold": 3, "retry_after": 7200})
    );
    assert_eq!(activate(&h, &request(2, NOW)).1["count"], 2);
    let (s, j) = activate(&h, &request(3, NOW));
    assert_eq!((s, j["status"].as_str(), j["count"].as_u64()), (200, Some("activated"), Some(3)));
    assert_eq!((j["renew_after"].as_u64(), j["valid_for"].as_u64()), (Some(604_800), Some(15_552_000)));
    // Small on the wire: request body <= 250 B, activation answer <= 1.5 KB.
    assert!(body(&request(3, NOW)).len() <= 250, "{}", body(&request(3, NOW)).len());
    assert!(j.to_string().len() <= 1536, "{}", j.to_string().len());
    // Compact: no x5c in the header.
    let token = j["token"].as_str().unwrap();
    let header = tka::jws::decode(token, tka::jws::TOKEN_TYP).unwrap();
    assert!(header.x5c.is_empty());
    // The first machine's retry: activated, not counted twice.
    h.set_now(NOW + 7200);
    let (_, j) = activate(&h, &request(1, NOW + 7200));
    assert_eq!((j["status"].as_str(), j["count"].as_u64()), (Some("activated"), Some(3)));
    drop(h);
    let st = status_of(dir.path());
    assert_eq!((st.count, st.threshold, st.cache_size), (3, 3, 6));
    let serials = SqliteState::open_read_only(&dir.path().join("state.sqlite")).unwrap().issued_serials(PRODUCT);
    assert_eq!(serials.unwrap().len(), 2, "each issued token's serial is recorded");
}

#[test]
fn a_machine_not_seen_for_30_days_no_longer_counts() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 2, |_| {});
    activate(&h, &request(1, NOW));
    h.set_now(NOW + 30 * DAY - 1);
    let (_, j) = activate(&h, &request(2, NOW + 30 * DAY - 1));
    assert_eq!((j["status"].as_str(), j["count"].as_u64()), (Some("activated"), Some(2)));
    // Exactly 30 days after machine 1 was last seen it ages out.
    h.set_now(NOW + 30 * DAY);
    let (_, j) = activate(&h, &request(3, NOW + 30 * DAY));
    assert_eq!((j["status"].as_str(), j["count"].as_u64()), (Some("activated"), Some(2)));
    h.set_now(NOW + 60 * DAY);
    let (_, j) = activate(&h, &request(3, NOW + 60 * DAY));
    assert_eq!((j["status"].as_str(), j["count"].as_u64()), (Some("pending"), Some(1)));
}

#[test]
fn the_cache_never_shrinks_when_the_host_restarts_with_a_lower_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 3, |_| {});
    for n in 1..=5 {
        h.set_now(NOW + i64::from(n));
        activate(&h, &request(n, NOW + i64::from(n)));
    }
    h.stop().unwrap();
    let h = start(dir.path(), 1, |_| {});
    // Cache 6 (2 x 3) kept under threshold 1: a sixth machine still counts all six.
    h.set_now(NOW + 10);
    let (_, j) = activate(&h, &request(6, NOW + 10));
    assert_eq!((j["count"].as_u64(), j["threshold"].as_u64()), (Some(6), Some(1)));
    // A seventh evicts the oldest (machine 1).
    let (_, j) = activate(&h, &request(7, NOW + 10));
    assert_eq!(j["count"].as_u64(), Some(6));
    drop(h);
    let st = status_of(dir.path());
    assert_eq!((st.count, st.threshold, st.cache_size, st.oldest_last_seen), (6, 1, 6, Some(NOW + 2)));
}

#[test]
fn a_return_drops_the_machine_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 2, |_| {});
    activate(&h, &request(1, NOW));
    activate(&h, &request(2, NOW));
    let (s, j) = post(h.addr, "/v1/return", &body(&request(1, NOW)));
    assert_eq!(s, 200);
    assert_eq!(j, serde_json::json!({"status": "returned", "product": PRODUCT, "count": 1, "threshold": 2}));
    let (_, j) = activate(&h, &request(2, NOW));
    assert_eq!((j["status"].as_str(), j["count"].as_u64()), (Some("pending"), Some(1)));
}

#[test]
fn a_replayed_return_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 2, |_| {});
    let captured_activation = request(1, NOW);
    activate(&h, &captured_activation);
    activate(&h, &request(2, NOW));
    // A captured activation request does not return the machine.
    let (s, j) = post(h.addr, "/v1/return", &body(&captured_activation));
    assert_eq!((s, refused(&j)), (409, ("replayed", "this request was already used")));
    let ret = request(1, NOW + 1);
    assert_eq!(post(h.addr, "/v1/return", &body(&ret)).0, 200);
    h.set_now(NOW + 2);
    assert_eq!(activate(&h, &request(1, NOW + 2)).1["count"], 2);
    // The captured return, sent again within the replay window.
    h.set_now(NOW + 600);
    let (s, j) = post(h.addr, "/v1/return", &body(&ret));
    assert_eq!((s, refused(&j)), (409, ("replayed", "this request was already used")));
    assert_eq!(status_of(dir.path()).count, 2);
}

#[test]
fn a_return_older_than_the_replay_window_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 2, |_| {});
    activate(&h, &request(1, NOW));
    let (s, j) = post(h.addr, "/v1/return", &body(&request(1, NOW - 15 * 60 - 1)));
    assert_eq!((s, refused(&j)), (409, ("replayed", "the request is older than 900 s: make a new one")));
    assert_eq!(status_of(dir.path()).count, 1);
}

fn refused(j: &serde_json::Value) -> (&str, &str) {
    assert_eq!(j["status"], "refused", "{j}");
    (j["error"].as_str().unwrap(), j["message"].as_str().unwrap())
}

#[test]
fn a_body_over_4_kb_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 1, |_| {});
    // Announced: refused on the headers alone (the 5000 bytes are never sent).
    let (s, text) =
        exchange(h.addr, b"POST /v1/activate HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n");
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((s, refused(&j)), (413, ("too_large", "the request body exceeds 4096 bytes")));
    // Chunked, so not announced: cut off at the limit.
    let chunk = "x".repeat(4097);
    let raw = format!(
        "POST /v1/activate HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let (s, text) = exchange(h.addr, raw.as_bytes());
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((s, refused(&j).0), (413, "too_large"));
    assert_eq!(status_of(dir.path()).count, 0);
}

#[test]
fn a_client_that_does_not_finish_its_headers_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 1, |c| c.read_timeout = Duration::from_millis(300));
    let mut s = TcpStream::connect(h.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"POST /v1/activate HTTP/1.1\r\nHost: t\r\n").unwrap();
    let mut out = Vec::new();
    // The host closes the connection (end of stream, or a reset); the
    // client's own 20 s read guard would end the read with TimedOut or
    // WouldBlock instead.
    let n = match s.read_to_end(&mut out) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        Err(e) => panic!("not closed by the host: {e}"),
    };
    // hyper closes the connection (with or without a 408 first).
    assert!(n == 0 || String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&out));
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 1, |c| c.read_timeout = Duration::from_millis(300));
    let mut s = TcpStream::connect(h.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"POST /v1/activate HTTP/1.1\r\nHost: t\r\nContent-Length: 200\r\nConnection: close\r\n\r\n{\"requ")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let j: serde_json::Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(refused(&j), ("bad_request", "the request body did not arrive within 0.3 s"));
}

#[test]
fn garbage_is_a_bad_request() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 1, |_| {});
    let (s, j) = post(h.addr, "/v1/activate", "\u{0}\u{1}garbage");
    assert_eq!(
        (s, refused(&j)),
        (400, ("bad_request", "the body is not JSON of the form {\"request\": \"TKAR1-...\"}"))
    );
    let (s, j) = post(h.addr, "/v1/activate", r#"{"request": "TKAR1-AAAA"}"#);
    assert_eq!((s, refused(&j).0), (400, "bad_request"));
    assert!(refused(&j).1.starts_with("request: "), "{j}");
    // A request whose CMID is not the one its components give: the binding check `token issue` applies.
    let mut req = request(1, NOW);
    req.cmid = request(2, NOW).cmid;
    let (s, j) = activate(&h, &req);
    assert_eq!((s, refused(&j).0), (400, "bad_request"));
    assert_eq!(status_of(dir.path()).count, 0);
}

#[test]
fn a_product_the_host_does_not_serve_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 1, |_| {});
    let req = ActivationRequest::new(&MachineIdentity::from_raw("other-product", &client(1).sources_raw()), NOW, None);
    let (s, j) = activate(&h, &req);
    assert_eq!((s, refused(&j)), (404, ("unknown_product", "this host does not activate product \"other-product\"")));
}

#[test]
fn an_old_request_or_a_nonce_reused_by_another_machine_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 5, |_| {});
    let (s, j) = activate(&h, &request(1, NOW - 15 * 60 - 1));
    assert_eq!((s, refused(&j)), (409, ("replayed", "the request is older than 900 s: make a new one")));
    let first = request(1, NOW);
    activate(&h, &first);
    let mut copy = request(2, NOW);
    copy.nonce = first.nonce.clone();
    let (s, j) = activate(&h, &copy);
    assert_eq!((s, refused(&j)), (409, ("replayed", "this request was already used by another machine")));
    // The same machine sending the same request again (a lost answer) is not a replay.
    assert_eq!(activate(&h, &first).1["count"], 1);
}

/// 40 distinct machines (requests 100 to 139) activating at once from 8
/// threads of 5, machine `n` sent to `addrs[n % addrs.len()]`; every answer
/// must be a 200.
fn forty_machines_at_once(addrs: &[SocketAddr]) -> Vec<serde_json::Value> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                scope.spawn(move || {
                    (0..5u32)
                        .map(|i| {
                            let n = 100 + t * 5 + i;
                            let addr = addrs[n as usize % addrs.len()];
                            let (s, j) = post(addr, "/v1/activate", &body(&request(n, NOW)));
                            assert_eq!(s, 200, "{j}");
                            j
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    })
}

/// The answers of [`forty_machines_at_once`] at threshold 25, as if decided
/// one after the other: counts 1 to 40, none twice; 25 and above activated,
/// the rest pending.
fn assert_counted_one_after_the_other(answers: &[serde_json::Value], what: &str) {
    let mut counts: Vec<u64> = answers.iter().map(|j| j["count"].as_u64().unwrap()).collect();
    counts.sort();
    assert_eq!(counts, (1..=40).collect::<Vec<u64>>(), "{what}");
    for j in answers {
        let want = if j["count"].as_u64().unwrap() >= 25 { "activated" } else { "pending" };
        assert_eq!(j["status"], want, "{what}: {j}");
    }
}

/// Group commit on the workers: 40 machines activating at once from 8
/// threads, each transaction gathering up to `batch` of them (1: each its
/// own), are decided as if one after the other: each answer carries its own
/// count (1 to 40, none twice), the threshold is crossed once (16
/// activated, 24 pending), and the state counts 40 with 16 tokens issued.
#[test]
fn concurrent_activations_are_decided_one_after_the_other_whatever_the_batch() {
    for batch in [1, 8] {
        let dir = tempfile::tempdir().unwrap();
        let h = start(dir.path(), 25, |c| c.batch = batch);
        let answers = forty_machines_at_once(&[h.addr]);
        assert_counted_one_after_the_other(&answers, &format!("batch {batch}"));
        h.stop().unwrap();
        assert_eq!(status_of(dir.path()).count, 40, "batch {batch}");
        let mut st = SqliteState::open_read_only(&dir.path().join("state.sqlite")).unwrap();
        assert_eq!(st.issued_serials(PRODUCT).unwrap().len(), 16, "batch {batch}");
    }
}

#[test]
fn a_flood_from_one_address_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 5, |c| c.rate_per_min = 2);
    activate(&h, &request(1, NOW));
    activate(&h, &request(2, NOW));
    let (s, j) = activate(&h, &request(3, NOW));
    assert_eq!((s, refused(&j)), (429, ("rate_limited", "more than 2 requests a minute from this address")));
    assert_eq!(status_of(dir.path()).count, 2);
}

#[test]
fn the_delegations_seat_cap_refuses_new_machines() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 1, |c| c.products[0].seats = Some(1));
    assert_eq!(activate(&h, &request(1, NOW)).1["status"], "activated");
    let (s, j) = activate(&h, &request(2, NOW));
    assert_eq!((s, refused(&j).0), (403, "outside_delegation"));
    assert_eq!(activate(&h, &request(1, NOW)).1["status"], "activated");
}

#[test]
fn chain_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), 1, |_| {});
    let (s, text) = exchange(h.addr, b"GET /v1/chain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!((s, text.as_str()), (200, "PEM\n"));
    let (s, text) = exchange(h.addr, b"GET /v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((s, j), (200, serde_json::json!({"status": "ok", "products": [PRODUCT]})));
    h.stop().unwrap();
}

#[test]
fn a_validity_above_the_delegations_longest_lifetime_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new(Arc::new(signer()), String::new(), vec![product(1)], opener(dir.path()));
    config.max_lifetime_secs = Some(90 * DAY as u64);
    let e = config.check().unwrap_err();
    assert!(matches!(e, tka::Error::InvalidLifetime { what: "token lifetime", .. }), "{e}");
}

// ---- the tka binary ----

fn tka(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tka")).args(args).output().unwrap();
    assert!(out.status.success(), "tka {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// An issuer home and an installed host directory for product `acme`.
fn host_dir(work: &Path) -> std::path::PathBuf {
    let (home, host, cert) = (work.join("iss"), work.join("host"), work.join("host.pem"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    tka(&["issuer", "init", "--org", "tka", "--home", &s(&home), "--insecure-no-passphrase"]);
    tka(&["host", "init", "--dir", &s(&host)]);
    tka(&[
        "host",
        "certify",
        "--home",
        &s(&home),
        "--request",
        &s(&host.join("host.csr")),
        "--products",
        "acme",
        "--max-lifetime",
        "180d",
        "--days",
        "365",
        "--out",
        &s(&cert),
    ]);
    tka(&["host", "install", &s(&cert), "--dir", &s(&host)]);
    host
}

/// Spawns `tka host serve` on a free port; returns the child and its address once it listens.
fn spawn_serve(host: &Path) -> (std::process::Child, SocketAddr) {
    spawn_serve_with(host, &[])
}

/// [`spawn_serve`] with more arguments.
fn spawn_serve_with(host: &Path, extra: &[&str]) -> (std::process::Child, SocketAddr) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tka"))
        .args(["host", "serve", "--dir", host.to_str().unwrap(), "--listen", "127.0.0.1:0", "--threshold", "acme=3"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    let addr = line.trim().strip_prefix("listening: ").unwrap_or_else(|| panic!("{line:?}")).parse().unwrap();
    (child, addr)
}

fn acme(n: u32) -> String {
    let id = MachineIdentity::from_raw("acme", &client(n).sources_raw());
    body(&ActivationRequest::new(&id, tka::clock::now(), None))
}

trait SourcesRaw {
    fn sources_raw(&self) -> Vec<(String, String)>;
}

impl SourcesRaw for MachineIdentity {
    fn sources_raw(&self) -> Vec<(String, String)> {
        self.sources().iter().flat_map(|s| s.values().iter().map(|v| (s.kind.clone(), v.clone()))).collect()
    }
}

fn host_count(host: &Path) -> serde_json::Value {
    let out = tka(&["host", "status", "--dir", host.to_str().unwrap(), "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

#[cfg(unix)]
#[test]
fn after_kill_9_and_a_restart_the_count_is_exact() {
    let work = tempfile::tempdir().unwrap();
    let host = host_dir(work.path());
    let (mut child, addr) = spawn_serve(&host);
    for n in 1..=2 {
        assert_eq!(post(addr, "/v1/activate", &acme(n)).1["status"], "pending");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (mut child, addr) = spawn_serve(&host);
    // Machine 2 again is not counted twice; machine 3 reaches the threshold.
    assert_eq!(post(addr, "/v1/activate", &acme(2)).1["count"], 2);
    let (_, j) = post(addr, "/v1/activate", &acme(3));
    assert_eq!((j["status"].as_str(), j["count"].as_u64()), (Some("activated"), Some(3)));
    child.kill().unwrap();
    child.wait().unwrap();
    // The host's compact token verifies against the issuer's root with the host's chain.
    let token = work.path().join("token.jws");
    std::fs::write(&token, j["token"].as_str().unwrap()).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let out = tka(&[
        "token",
        "verify",
        &s(&token),
        "--trust",
        &s(&work.path().join("iss/root.pem")),
        "--chain",
        &s(&host.join("chain.pem")),
        "--product",
        "acme",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"), "{}", String::from_utf8_lossy(&out.stdout));
    let st = host_count(&host);
    assert_eq!(
        (st["product"].as_str(), st["count"].as_u64(), st["threshold"].as_u64()),
        (Some("acme"), Some(3), Some(3))
    );
    assert_eq!(st["cache_size"], 6);
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_host_with_exit_0() {
    let work = tempfile::tempdir().unwrap();
    let host = host_dir(work.path());
    let (mut child, addr) = spawn_serve(&host);
    assert_eq!(post(addr, "/v1/activate", &acme(1)).1["status"], "pending");
    let pid = child.id() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(host_count(&host)["count"], 1);
}

#[test]
fn host_status_never_creates_the_state() {
    let work = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tka"))
        .args(["host", "status", "--dir", work.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state.sqlite: no host state (the host has never run)"), "{err}");
    assert!(!work.path().join("state.sqlite").exists());
}

#[test]
fn host_serve_refuses_a_product_outside_the_delegation_and_a_validity_above_it() {
    let work = tempfile::tempdir().unwrap();
    let host = host_dir(work.path());
    let run = |extra: &[&str]| {
        let mut args = vec!["host", "serve", "--dir", host.to_str().unwrap(), "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        std::process::Command::new(env!("CARGO_BIN_EXE_tka")).args(&args).output().unwrap()
    };
    let out = run(&["--threshold", "other=2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--threshold other=...: product \"other\" is not delegated to this host (delegated: acme)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["--valid-for", "181d"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--valid-for: 15638400 s exceeds the delegation's longest lifetime of 15552000 s"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!host.join("state.sqlite").exists(), "nothing is created when the configuration is refused");
}

// ---- several hosts on one PostgreSQL state ----

/// Opens the PostgreSQL host state at `url`.
#[cfg(feature = "postgres")]
fn pg_opener(url: &str) -> tka::issuer::host::server::OpenState {
    let url = url.to_string();
    Box::new(move || Ok(Box::new(tka::issuer::host::pg_state::PgState::open(&url)?) as Box<dyn HostState>))
}

/// Two hosts on one PostgreSQL state, clients alternating between them:
/// the counts go 1, 2, 3, ... across both, the threshold (4) is crossed
/// once (at machine 4), a renewal on host A of a machine first seen on
/// host B refreshes it (the count stays), and 30 days later the machines
/// not seen since age out for both hosts.
#[cfg(feature = "postgres")]
#[test]
fn two_hosts_on_one_postgres_state_count_together() {
    let Some(url) = pg::database("two_hosts") else { return };
    let (a, b) = (start_with(pg_opener(&url), 4, |_| {}), start_with(pg_opener(&url), 4, |_| {}));
    for n in 1..=8u32 {
        let h = if n % 2 == 1 { &b } else { &a };
        let (s, j) = activate(h, &request(n, NOW));
        let want = if n < 4 { "pending" } else { "activated" };
        assert_eq!((s, j["status"].as_str(), j["count"].as_u64()), (200, Some(want), Some(u64::from(n))), "{j}");
    }
    for h in [&a, &b] {
        h.set_now(NOW + DAY);
    }
    let (_, j) = activate(&a, &request(1, NOW + DAY));
    assert_eq!((j["status"].as_str(), j["count"].as_u64()), (Some("activated"), Some(8)), "refreshed, not added");
    for h in [&a, &b] {
        h.set_now(NOW + 30 * DAY);
    }
    let (_, j) = activate(&b, &request(9, NOW + 30 * DAY));
    assert_eq!((j["status"].as_str(), j["count"].as_u64()), (Some("pending"), Some(2)), "machines 2-8 aged out");
    drop((a, b));
    let mut st = tka::issuer::host::pg_state::PgState::open_existing(&url).unwrap();
    assert_eq!(st.status(NOW + 30 * DAY).unwrap()[0].count, 2);
    assert_eq!(st.issued_serials(PRODUCT).unwrap().len(), 6, "machines 4 to 8 and machine 1's renewal");
}

/// Two hosts on one PostgreSQL state, 40 distinct machines sent at once
/// from 8 threads, alternating hosts, threshold 25: each answer carries
/// its own count (1 to 40, none twice), the threshold is crossed once
/// (16 activated, 24 pending), and the state counts 40.
#[cfg(feature = "postgres")]
#[test]
fn two_hosts_with_concurrent_clients_count_exactly() {
    let Some(url) = pg::database("two_hosts_concurrent") else { return };
    let (a, b) = (start_with(pg_opener(&url), 25, |_| {}), start_with(pg_opener(&url), 25, |_| {}));
    let answers = forty_machines_at_once(&[a.addr, b.addr]);
    assert_counted_one_after_the_other(&answers, "two hosts");
    drop((a, b));
    let mut st = tka::issuer::host::pg_state::PgState::open_existing(&url).unwrap();
    assert_eq!(st.status(NOW).unwrap()[0].count, 40);
    assert_eq!(st.issued_serials(PRODUCT).unwrap().len(), 16);
}

/// `tka host serve --ledger postgres://...` twice (two processes, one
/// state): a machine counted by one is counted by the other; `host status
/// --ledger` reads the shared counters; no state.sqlite is made; a
/// --ledger that is not a postgres:// URL is a usage error (exit 2).
#[cfg(all(unix, feature = "postgres"))]
#[test]
fn cli_two_host_processes_share_one_postgres_state() {
    let Some(url) = pg::database("cli_hosts") else { return };
    let work = tempfile::tempdir().unwrap();
    let host = host_dir(work.path());
    let (mut one, addr1) = spawn_serve_with(&host, &["--ledger", &url]);
    let (mut two, addr2) = spawn_serve_with(&host, &["--ledger", &url]);
    assert_eq!(post(addr1, "/v1/activate", &acme(1)).1["count"], 1);
    assert_eq!(post(addr2, "/v1/activate", &acme(2)).1["count"], 2);
    assert_eq!(post(addr1, "/v1/activate", &acme(2)).1["count"], 2, "known to the other host");
    let (_, j) = post(addr2, "/v1/activate", &acme(3));
    assert_eq!((j["status"].as_str(), j["count"].as_u64()), (Some("activated"), Some(3)));
    for c in [&mut one, &mut two] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    let out = tka(&["host", "status", "--dir", host.to_str().unwrap(), "--ledger", &url, "--json"]);
    let st = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone();
    assert_eq!((st["product"].as_str(), st["count"].as_u64()), (Some("acme"), Some(3)));
    assert!(!host.join("state.sqlite").exists(), "the state is in PostgreSQL only");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tka"))
        .args(["host", "status", "--dir", host.to_str().unwrap()])
        .env("TKA_LEDGER_URL", "ledger.sqlite")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --ledger \"ledger.sqlite\" (or TKA_LEDGER_URL): a host keeps its state in HOSTDIR/state.sqlite or in \
         PostgreSQL; give a postgres:// URL or neither\n"
    );
}
