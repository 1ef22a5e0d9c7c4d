//! Online activation with product keys (issue 14): the service
//! (`tka::issuer::online::serve`) in-process on 127.0.0.1 port 0 with an
//! injected clock, driven by a raw HTTP/1.1 client; `tka activate --online`
//! against it (a typo caught offline); and two `tka serve` processes on one
//! PostgreSQL ledger under concurrent activations, with and without a
//! SIGKILL of one of them.
#![cfg(feature = "host")]

mod common;
#[path = "common/pg.rs"]
mod pg;
mod tools;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tka::issuer::host::server::Clock;
use tka::issuer::issue::TokenSigner;
use tka::issuer::online::{serve, OnlineConfig};
use tka::ledger::{Ledger, LedgerLocation, NewEntitlement};
use tka::machine::MachineIdentity;
use tka::product_key::ProductKey;
use tka::request::ActivationRequest;

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        NOW
    }
}

fn signer() -> TokenSigner {
    let p = pki();
    TokenSigner::new(Box::new(test_key("signer")), vec![p.signer.clone(), p.int.clone()]).unwrap()
}

/// A service running on its own runtime in a thread; stopped on drop.
struct Service {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<tka::Result<()>>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(ledger: &Path, tune: impl FnOnce(&mut OnlineConfig)) -> Service {
    let mut config = OnlineConfig::new(Arc::new(signer()), LedgerLocation::File(ledger.to_path_buf()), 180);
    config.clock = Arc::new(FixedClock);
    config.rate_per_address = 0;
    config.rate_per_key = 0;
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
    Service { addr: addr_rx.recv().unwrap(), stop: Some(stop), thread: Some(thread) }
}

/// A ledger with entitlement "two" (2 machines of PRODUCT, with a key) and
/// "other" (another product, with a key).
fn ledger(dir: &Path) -> (std::path::PathBuf, ProductKey, ProductKey) {
    let path = dir.join("ledger.sqlite");
    let mut l = Ledger::open(&path).unwrap();
    let new = |product: &str, name: &str| NewEntitlement {
        product: product.into(),
        machines: 2,
        name: Some(name.into()),
        ..Default::default()
    };
    let (_, key) = l.add_entitlement_with_key(&new(PRODUCT, "two"), NOW).unwrap();
    let (_, other) = l.add_entitlement_with_key(&new("other-product", "other"), NOW).unwrap();
    (path, key, other)
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

fn body(n: u32, key: &str) -> String {
    let req = ActivationRequest::new(&client(n), NOW, None);
    serde_json::json!({"request": req.to_text().unwrap(), "key": key}).to_string()
}

/// Sends raw bytes, reads the whole answer (status, headers, body).
fn exchange(addr: SocketAddr, raw: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").map(|(h, b)| (h.to_string(), b.to_string())).unwrap_or_default();
    (status, head, body)
}

fn post(addr: SocketAddr, body: &str) -> (u16, serde_json::Value) {
    let (s, _, j) = post_raw(addr, body);
    (s, j)
}

fn post_raw(addr: SocketAddr, body: &str) -> (u16, String, serde_json::Value) {
    let raw = format!(
        "POST /v1/activate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, head, text) = exchange(addr, raw.as_bytes());
    (status, head, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// [`post`] that says why it got no answer instead of panicking.
fn try_post(addr: SocketAddr, body: &str) -> Result<(u16, serde_json::Value), String> {
    let raw = format!(
        "POST /v1/activate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    s.write_all(raw.as_bytes()).map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(text))))
}

/// The refusal's kind and message.
fn refused(j: &serde_json::Value) -> (&str, &str) {
    assert_eq!(j["status"], "refused", "{j}");
    (j["error"].as_str().unwrap(), j["message"].as_str().unwrap())
}

#[test]
fn a_key_activates_up_to_the_count_re_activation_is_free_and_the_token_verifies() {
    let d = tempfile::tempdir().unwrap();
    let (path, key, _) = ledger(d.path());
    let s = start(&path, |_| {});
    let (st, j) = post(s.addr, &body(1, &key.to_string()));
    assert_eq!(st, 200, "{j}");
    assert_eq!(j["status"], "activated");
    let (st, _) = post(s.addr, &body(2, &key.canonical().to_lowercase()));
    assert_eq!(st, 200);
    let (st, j) = post(s.addr, &body(1, &key.to_string()));
    assert_eq!(st, 200, "re-activating machine 1 is free: {j}");
    let (st, j) = post(s.addr, &body(3, &key.to_string()));
    assert_eq!(st, 403);
    assert_eq!(
        refused(&j),
        (
            "exhausted",
            "entitlement 1 (\"two\") is exhausted: all 2 machines are counted (2 of 2 used); release a machine or raise the count"
        )
    );
    // The token is a full one, and verifies on the machine like any other.
    let store = tka::store::Store::open(&d.path().join("store")).unwrap();
    store.lock().unwrap().add_root(&pki().root).unwrap();
    let v = tka::activation::activate(
        &store,
        j_token(&post(s.addr, &body(1, &key.to_string())).1),
        &|_| Ok(client(1)),
        &[],
        NOW + 60,
    )
    .unwrap();
    assert_eq!(v.claims.aud, PRODUCT);
    drop(s);
    let l = Ledger::open(&path).unwrap();
    assert_eq!(l.entitlement("two").unwrap().used, 2);
    assert_eq!(l.token_count().unwrap(), 4);
}

fn j_token(j: &serde_json::Value) -> &str {
    j["token"].as_str().unwrap_or_else(|| panic!("{j}"))
}

#[test]
fn an_unknown_key_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (path, _, _) = ledger(d.path());
    let s = start(&path, |_| {});
    let (st, j) = post(s.addr, &body(1, &ProductKey::generate().to_string()));
    assert_eq!((st, refused(&j)), (403, ("unknown_key", "unknown product key: no entitlement has it")));
}

#[test]
fn a_disabled_key_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (path, key, _) = ledger(d.path());
    Ledger::open(&path).unwrap().disable_key("two", NOW).unwrap();
    let s = start(&path, |_| {});
    let (st, j) = post(s.addr, &body(1, &key.to_string()));
    assert_eq!((st, refused(&j)), (403, ("disabled_key", "the product key of entitlement 1 (\"two\") is disabled")));
}

#[test]
fn the_old_value_of_a_rotated_key_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (path, old, _) = ledger(d.path());
    let (_, fresh) = Ledger::open(&path).unwrap().new_key("two", NOW).unwrap();
    let s = start(&path, |_| {});
    let (st, j) = post(s.addr, &body(1, &old.to_string()));
    assert_eq!((st, refused(&j).0), (403, "unknown_key"));
    assert_eq!(post(s.addr, &body(1, &fresh.to_string())).0, 200);
}

#[test]
fn a_key_for_another_product_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (path, _, other) = ledger(d.path());
    let s = start(&path, |_| {});
    let (st, j) = post(s.addr, &body(1, &other.to_string()));
    assert_eq!(
        (st, refused(&j)),
        (
            403,
            (
                "wrong_product",
                "wrong product: the request is for \"example-pro\", entitlement 2 (\"other\") is for \"other-product\""
            )
        )
    );
    assert_eq!(Ledger::open(&path).unwrap().token_count().unwrap(), 0);
}

#[test]
fn a_mistyped_key_is_a_bad_key() {
    let d = tempfile::tempdir().unwrap();
    let (path, key, _) = ledger(d.path());
    let s = start(&path, |_| {});
    let mut typo = key.canonical().to_string();
    let last = typo.pop().unwrap();
    typo.push(if last == 'A' { 'B' } else { 'A' });
    let (st, j) = post(s.addr, &body(1, &typo));
    assert_eq!((st, refused(&j)), (400, ("bad_key", "the key has a typo (check character does not match)")));
}

#[test]
fn garbage_is_a_bad_request() {
    let d = tempfile::tempdir().unwrap();
    let (path, key, _) = ledger(d.path());
    let s = start(&path, |_| {});
    let (st, j) = post(s.addr, "not json");
    assert_eq!(
        (st, refused(&j)),
        (400, ("bad_request", "the body is not JSON of the form {\"request\": \"TKAR1-...\", \"key\": \"XXXXX-...\"}"))
    );
    let (st, j) = post(s.addr, &serde_json::json!({"request": "TKAR1-garbage", "key": key.to_string()}).to_string());
    assert_eq!((st, refused(&j).0), (400, "bad_request"));
    assert!(refused(&j).1.starts_with("request: "), "{j}");
}

#[test]
fn an_oversized_body_is_refused_before_it_is_read() {
    let d = tempfile::tempdir().unwrap();
    let (path, _, _) = ledger(d.path());
    let s = start(&path, |c| c.max_body = 1024);
    let (st, j) = post(s.addr, &"x".repeat(2000));
    assert_eq!((st, refused(&j)), (413, ("too_large", "the request body exceeds 1024 bytes")));
}

#[test]
fn a_flood_with_one_key_is_rate_limited_with_retry_after() {
    let d = tempfile::tempdir().unwrap();
    let (path, key, _) = ledger(d.path());
    let s = start(&path, |c| c.rate_per_key = 2);
    for n in 1..=2 {
        assert_eq!(post(s.addr, &body(n, &key.to_string())).0, 200);
    }
    let (st, head, j) = post_raw(s.addr, &body(1, &key.to_string()));
    assert_eq!((st, refused(&j)), (429, ("rate_limited", "more than 2 requests a minute with this product key")));
    assert!(head.to_ascii_lowercase().contains("\r\nretry-after: 30"), "{head}");
}

#[test]
fn a_flood_from_one_address_is_rate_limited() {
    let d = tempfile::tempdir().unwrap();
    let (path, _, _) = ledger(d.path());
    let s = start(&path, |c| c.rate_per_address = 1);
    assert_eq!(post(s.addr, "{}").0, 400);
    let (st, j) = post(s.addr, "{}");
    assert_eq!((st, refused(&j)), (429, ("rate_limited", "more than 1 requests a minute from this address")));
}

// ----- the command line ------------------------------------------------------

fn tka(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tka")).args(args).envs(env.iter().copied()).output().unwrap()
}

#[test]
fn a_typo_is_caught_offline_and_nothing_is_sent() {
    let d = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let key = ProductKey::generate();
    let mut typo = key.to_string();
    let last = typo.pop().unwrap();
    typo.push(if last == 'A' { 'B' } else { 'A' });
    let store = d.path().join("store");
    let out = tka(
        &["activate", "--online", &url, "--key", &typo, "--product", PRODUCT],
        &[("TKA_STORE", store.to_str().unwrap()), ("TKA_MACHINE_ID", "online-typo")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.lines().next(), Some("error: the key has a typo (check character does not match)"), "{err}");
    assert!(listener.accept().is_err(), "no connection was made");
    assert!(!store.exists(), "nothing was written");
}

#[test]
fn activate_online_installs_a_token_that_verifies_and_a_refusal_exits_1() {
    let d = tempfile::tempdir().unwrap();
    let (home, key) = (d.path().join("iss"), d.path().join("key.txt"));
    let h = home.to_str().unwrap();
    assert!(tka(&["issuer", "init", "--home", h, "--insecure-no-passphrase"], &[]).status.success());
    let out = tka(&["entitlement", "add", "--home", h, "--product", "acme", "--machines", "1", "--key"], &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let k = text.lines().find_map(|l| l.strip_prefix("key: ")).unwrap_or_else(|| panic!("{text}"));
    std::fs::write(&key, format!("{k}\n")).unwrap();
    let (mut child, addr) = spawn_serve(&[&["--home", h]]);
    let url = format!("http://{addr}");
    let run = |n: u32, args: &[&str]| {
        let store = d.path().join(format!("store-{n}"));
        let mid = format!("online-cli-{n}");
        let env = [("TKA_STORE", store.to_str().unwrap()), ("TKA_MACHINE_ID", mid.as_str())];
        assert!(tka(&["trust", "add", &format!("{h}/root.pem")], &env).status.success());
        let mut all = vec!["activate", "--online", &url, "--product", "acme"];
        all.extend_from_slice(args);
        let out = tka(&all, &env);
        let status = tka(&["status", "--product", "acme"], &env);
        (out, status.status.code())
    };
    let (out, status) = run(1, &["--key-file", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(status, Some(0), "the stored token verifies");
    let (out, status) = run(2, &["--key", k]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or(""),
        format!(
            "error: the activation service {url} refused the activation (exhausted): entitlement 1 is exhausted: all 1 \
             machines are counted (1 of 1 used); release a machine or raise the count"
        )
    );
    assert_eq!(status, Some(1), "nothing installed");
    let _ = child.kill();
    let _ = child.wait();
}

/// `tka serve --tls-cert --tls-key` serves HTTPS with an ordinary web
/// certificate (made here by openssl: a CA and a server certificate for
/// 127.0.0.1); `activate --online https://... --ca-file CA.pem` checks it
/// against that CA and installs the token; without --ca-file the service's
/// certificate is checked against the store's tka roots and refused, and
/// nothing is installed.
#[test]
fn activate_online_over_https_checks_the_service_certificate() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n).to_str().unwrap().to_string();
    let openssl = |args: &[&str]| std::process::Command::new("openssl").args(args).current_dir(d.path()).output();
    let ca = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=tka test web CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    match ca {
        Ok(o) => assert!(o.status.success(), "{o:?}"),
        Err(_) => return tools::missing("openssl", "TKA_REQUIRE_INTEROP"),
    }
    let csr = openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "web.key",
        "-out",
        "web.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])
    .unwrap();
    assert!(csr.status.success(), "{csr:?}");
    std::fs::write(
        d.path().join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let crt = openssl(&[
        "x509",
        "-req",
        "-in",
        "web.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "web.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ])
    .unwrap();
    assert!(crt.status.success(), "{crt:?}");

    let h = p("iss");
    assert!(tka(&["issuer", "init", "--home", &h, "--insecure-no-passphrase"], &[]).status.success());
    let out = tka(&["entitlement", "add", "--home", &h, "--product", "acme", "--machines", "5", "--key"], &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let k = text.lines().find_map(|l| l.strip_prefix("key: ")).unwrap_or_else(|| panic!("{text}")).to_string();
    let (mut child, addr) = spawn_serve(&[&["--home", &h, "--tls-cert", &p("web.pem"), "--tls-key", &p("web.key")]]);
    let url = format!("https://{addr}");
    let run = |n: u32, extra: &[&str]| {
        let store = p(&format!("store-{n}"));
        let mid = format!("online-tls-{n}");
        let env = [("TKA_STORE", store.as_str()), ("TKA_MACHINE_ID", mid.as_str()), ("TKA_ACTIVATION_KEY", k.as_str())];
        assert!(tka(&["trust", "add", &format!("{h}/root.pem"), "--yes"], &env).status.success());
        let mut all = vec!["activate", "--online", &url, "--product", "acme"];
        all.extend_from_slice(extra);
        let out = tka(&all, &env);
        (out, tka(&["status", "--product", "acme"], &env).status.code())
    };
    let ca_file = p("ca.pem");
    let (out, status) = run(1, &["--ca-file", &ca_file]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("activated: acme"), "{out:?}");
    assert_eq!(status, Some(0), "the stored token verifies");
    // The web certificate is no tka certificate: refused, nothing installed.
    let (out, status) = run(2, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let first = err.lines().next().unwrap_or("");
    assert_eq!(
        first,
        format!(
            "error: activation host {addr} is not trusted: its TLS certificate: certificate chain does not lead to \
             a trusted root (ends at issuer CN=tka test web CA)"
        ),
        "{err}"
    );
    assert_eq!(status, Some(1), "nothing installed");
    let _ = child.kill();
    let _ = child.wait();
}

/// Spawns `tka serve` with `args` on a free port; returns the child and its
/// address once it listens.
fn spawn_serve(args: &[&[&str]]) -> (std::process::Child, SocketAddr) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tka"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rate-per-address", "0", "--rate-per-key", "0"]);
    for a in args {
        cmd.args(*a);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::env::temp_dir().join(format!("tka-online-serve-{}.log", std::process::id())))
        .unwrap();
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(log).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    let addr = line.trim().strip_prefix("listening: ").unwrap_or_else(|| panic!("{line:?}")).parse().unwrap();
    (child, addr)
}

// ----- two services on one PostgreSQL ledger ---------------------------------

/// 200 activations from distinct machines, spread over two `tka serve`
/// processes on one PostgreSQL ledger, against 50 seats: exactly 50 tokens
/// and 150 refusals as exhausted, no duplicate serial. Then again on a new
/// entitlement with one service killed (SIGKILL) mid-run: at most 50
/// issued, the ledger consistent, the survivor still serving.
#[test]
fn two_services_on_one_postgres_ledger_count_exactly() {
    let Some(url) = pg::database("online_two_services") else { return };
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("iss");
    let h = home.to_str().unwrap();
    assert!(tka(&["issuer", "init", "--home", h, "--insecure-no-passphrase"], &[]).status.success());
    let add = |name: &str| {
        let out = tka(
            &[
                "entitlement",
                "add",
                "--home",
                h,
                "--ledger",
                &url,
                "--product",
                "acme",
                "--machines",
                "50",
                "--name",
                name,
                "--key",
            ],
            &[],
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        text.lines().find_map(|l| l.strip_prefix("key: ")).unwrap_or_else(|| panic!("{text}{err}")).to_string()
    };
    // The entitlements first: the services open an existing ledger.
    let (key, killed_key) = (add("fifty"), add("killed"));
    let serve_args: [&[&str]; 1] = [&["--home", h, "--ledger", &url]];
    let (mut a, addr_a) = spawn_serve(&serve_args);
    let (mut b, addr_b) = spawn_serve(&serve_args);
    let run = |key: &str, base: u32, kill: Option<&mut std::process::Child>| -> Vec<(u16, String)> {
        let key = Arc::new(key.to_string());
        let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let results = Arc::new(std::sync::Mutex::new(Vec::new()));
        let workers: Vec<_> = (0..16)
            .map(|_| {
                let (key, next, results) = (key.clone(), next.clone(), results.clone());
                std::thread::spawn(move || loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if n >= 200 {
                        return;
                    }
                    let addr = if n % 2 == 0 { addr_a } else { addr_b };
                    let id = MachineIdentity::from_raw(
                        "acme",
                        &raw(&[
                            ("mid", &format!("{:032x}", base + n)),
                            ("dmi", &format!("4c4c4544-0042-3510-8052-{:012x}", base + n)),
                        ]),
                    );
                    let req = ActivationRequest::new(&id, tka::clock::now(), None);
                    let body = serde_json::json!({"request": req.to_text().unwrap(), "key": &*key}).to_string();
                    let r = try_post(addr, &body).unwrap_or_else(|e| (0, serde_json::Value::String(e)));
                    let kind = r.1["error"]
                        .as_str()
                        .or(r.1["status"].as_str())
                        .map_or_else(|| r.1.to_string(), str::to_string);
                    results.lock().unwrap().push((r.0, kind));
                })
            })
            .collect();
        if let Some(k) = kill {
            while next.load(std::sync::atomic::Ordering::SeqCst) < 60 {
                std::thread::sleep(Duration::from_millis(5));
            }
            k.kill().unwrap();
            k.wait().unwrap();
        }
        for w in workers {
            w.join().unwrap();
        }
        let r = results.lock().unwrap().clone();
        r
    };
    let r = run(&key, 0, None);
    let ok = r.iter().filter(|(s, _)| *s == 200).count();
    let exhausted = r.iter().filter(|(s, k)| *s == 403 && k == "exhausted").count();
    assert_eq!((ok, exhausted), (50, 150), "{r:?}");
    let l = Ledger::open_url(&url).unwrap();
    let e = l.entitlement("fifty").unwrap();
    let tokens = l.tokens(&tka::ledger::TokenFilter { entitlement: Some(e.id), ..Default::default() }).unwrap();
    let serials: std::collections::BTreeSet<_> = tokens.iter().map(|t| t.serial.clone()).collect();
    assert_eq!((e.used, tokens.len(), serials.len(), l.seats(e.id).unwrap().len()), (50, 50, 50, 50));

    let key = killed_key;
    let r = run(&key, 1000, Some(&mut b));
    let ok = r.iter().filter(|(s, _)| *s == 200).count();
    let e = l.entitlement("killed").unwrap();
    let tokens = l.tokens(&tka::ledger::TokenFilter { entitlement: Some(e.id), ..Default::default() }).unwrap();
    assert!(ok <= 50 && tokens.len() <= 50, "{ok} answered, {} recorded", tokens.len());
    assert!(ok <= tokens.len(), "every token answered is recorded");
    assert_eq!(
        (e.used as usize, l.seats(e.id).unwrap().len()),
        (tokens.len(), tokens.len()),
        "the ledger is consistent"
    );
    // The survivor still serves: a machine it activated gets its token again.
    let id = MachineIdentity::from_raw(
        "acme",
        &raw(&[("mid", &format!("{:032x}", 1000u32)), ("dmi", &format!("4c4c4544-0042-3510-8052-{:012x}", 1000u32))]),
    );
    let req = ActivationRequest::new(&id, tka::clock::now(), None);
    let (st, j) = post(addr_a, &serde_json::json!({"request": req.to_text().unwrap(), "key": key}).to_string());
    assert!(st == 200 || refused(&j).0 == "exhausted", "{st} {j}");
    let _ = a.kill();
    let _ = a.wait();
}
