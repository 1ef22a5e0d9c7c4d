//! The host's HTTP/1.1 service (axum on hyper and tokio).
//!
//! Endpoints (JSON unless said otherwise; docs/host.md has the contract):
//! - `POST /v1/activate` `{"request": "TKAR1-..."}`: counts the machine and
//!   answers `activated` (with a token), `pending` (with `retry_after`) or
//!   `refused` (with an error code);
//! - `POST /v1/return` `{"request": "TKAR1-..."}`: drops the machine's entry
//!   (a request used before, or older than the replay window, is refused);
//! - `GET /v1/chain`: the host's certificate chain (PEM, host cert first);
//! - `GET /v1/health`: `{"status": "ok", "products": [...]}`.
//!
//! Limits: request bodies larger than [`ServeConfig::max_body`] are refused
//! with 413 before more is read; a client that does not send its headers
//! or its body within [`ServeConfig::read_timeout`] is cut off; each client
//! address gets [`ServeConfig::rate_per_min`] requests a minute (a token
//! bucket as large as a minute's worth). Signatures run on the runtime's
//! worker threads, at most [`ServeConfig::max_signing`] at once; the state
//! is written by the worker whose signed activation finds no commit
//! running: it records every activation queued meanwhile in one
//! transaction (group commit, [`HostState::activate_batch`]) and goes on
//! while more are queued; each request is answered only after its
//! transaction committed. Each request is logged
//! (`tracing`, target `tka::host`) with its product, outcome, latency and a
//! salted hash of the CMID, never the CMID or the request itself.

use crate::core::error::{Error, Result, VerifyError};
use crate::core::request::ActivationRequest;
use crate::core::token::TokenLifetime;
use crate::issuer::host::policy::Verdict;
use crate::issuer::host::state::{HostState, ProductConfig, Recorded, Released, Signed, Visit};
use crate::issuer::issue::{check_request, issue_one, realtime_issue_time, IssueOptions, TokenSigner};
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Where the host reads the time: the system clock, or a test's.
pub trait Clock: Send + Sync {
    /// Now, Unix seconds.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        crate::core::clock::now()
    }
}

/// Default token validity: 180 days.
pub const DEFAULT_VALID_FOR_SECS: u64 = 180 * 86_400;
/// Default renewal interval: 7 days.
pub const DEFAULT_RENEW_AFTER_SECS: u64 = 7 * 86_400;
/// Default retry interval below the threshold: 2 hours.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 2 * 3_600;
/// Default aging window: 30 days.
pub const DEFAULT_AGING_SECS: i64 = 30 * 86_400;
/// Default threshold of a delegated product given none: 5.
pub const DEFAULT_THRESHOLD: u32 = 5;
/// Default largest request body: 4 KB.
pub const DEFAULT_MAX_BODY: usize = 4096;
/// Default time a client has to send its headers, and its body: 10 s.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default requests per minute per client address: 120.
pub const DEFAULT_RATE_PER_MIN: u32 = 120;
/// Default group-commit batch ([`ServeConfig::batch`]): 8 activations.
pub const DEFAULT_BATCH: usize = 8;
/// Default age after which a request is a replay (and how long nonces are
/// kept): 15 minutes; a request dated that far in the future is refused too.
pub const DEFAULT_MAX_REQUEST_AGE_SECS: i64 = 15 * 60;

/// Everything the server runs with.
pub struct ServeConfig {
    /// The host's token signer (its delegated certificate and key).
    pub signer: Arc<TokenSigner>,
    /// The host's chain as PEM (host certificate first), served at `/v1/chain`.
    pub chain_pem: String,
    /// The products served, each with its threshold and seat cap.
    pub products: Vec<ProductConfig>,
    /// The longest token lifetime the delegation allows, seconds.
    pub max_lifetime_secs: Option<u64>,
    /// Token validity, seconds.
    pub valid_for_secs: u64,
    /// When machines renew, seconds after issuance.
    pub renew_after_secs: u64,
    /// When machines below the threshold retry, seconds.
    pub retry_after_secs: u64,
    /// The aging window, seconds.
    pub aging_secs: i64,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Time a client has to send its headers, and its body.
    pub read_timeout: Duration,
    /// Requests per minute per client address; 0: no limit.
    pub rate_per_min: u32,
    /// Age after which a request is refused as a replay, seconds.
    pub max_request_age_secs: i64,
    /// Most signatures made at once (on the runtime's worker threads);
    /// default the CPUs.
    pub max_signing: usize,
    /// Group commit: how many activations a transaction gathers while
    /// others are still being signed (it is committed as soon as none is);
    /// default [`DEFAULT_BATCH`], at most 64. 1: each its own transaction.
    pub batch: usize,
    /// Issue compact tokens (no `x5c`: machines fetch `/v1/chain` once);
    /// the default.
    pub compact: bool,
    /// TLS on every listener ([`crate::issuer::host::tls::server_config`]);
    /// `None` (the default): plain HTTP. A TLS listener answers a client
    /// that speaks plain HTTP with one refusal (`tls_required`) and closes.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Opens the state; [`serve`] calls it once the settings passed
    /// [`ServeConfig::check`], so a refused configuration creates nothing.
    pub state: OpenState,
}

/// Opens a host's state ([`ServeConfig::state`]).
pub type OpenState = Box<dyn FnOnce() -> Result<Box<dyn HostState>> + Send>;

impl ServeConfig {
    /// A configuration with every default ([`DEFAULT_VALID_FOR_SECS`], ...).
    pub fn new(signer: Arc<TokenSigner>, chain_pem: String, products: Vec<ProductConfig>, state: OpenState) -> Self {
        ServeConfig {
            signer,
            chain_pem,
            products,
            max_lifetime_secs: None,
            valid_for_secs: DEFAULT_VALID_FOR_SECS,
            renew_after_secs: DEFAULT_RENEW_AFTER_SECS,
            retry_after_secs: DEFAULT_RETRY_AFTER_SECS,
            aging_secs: DEFAULT_AGING_SECS,
            max_body: DEFAULT_MAX_BODY,
            read_timeout: DEFAULT_READ_TIMEOUT,
            rate_per_min: DEFAULT_RATE_PER_MIN,
            max_request_age_secs: DEFAULT_MAX_REQUEST_AGE_SECS,
            max_signing: std::thread::available_parallelism().map_or(2, |n| n.get()),
            batch: DEFAULT_BATCH,
            compact: true,
            tls: None,
            clock: Arc::new(SystemClock),
            state,
        }
    }

    /// Refuses settings the host cannot serve with: no product, a zero
    /// threshold, a validity above the delegation's longest lifetime, a
    /// renewal not within the validity, an aging window or retry of zero.
    pub fn check(&self) -> Result<()> {
        if self.products.is_empty() {
            return Err(Error::Usage("the host serves no product".into()));
        }
        if let Some(p) = self.products.iter().find(|p| p.threshold == 0) {
            return Err(Error::Usage(format!("product {:?}: the threshold must be at least 1", p.product)));
        }
        if let Some(max) = self.max_lifetime_secs.filter(|m| self.valid_for_secs > *m) {
            return Err(Error::InvalidLifetime {
                what: "token lifetime",
                detail: format!("{} s exceeds the delegation's longest lifetime of {max} s", self.valid_for_secs),
            });
        }
        if self.renew_after_secs == 0 || self.renew_after_secs >= self.valid_for_secs {
            return Err(Error::InvalidLifetime {
                what: "renewal time",
                detail: format!(
                    "{} s after issuance is not within the token's lifetime of {} s",
                    self.renew_after_secs, self.valid_for_secs
                ),
            });
        }
        if self.aging_secs <= 0 || self.retry_after_secs == 0 || self.max_request_age_secs <= 0 {
            return Err(Error::Usage("the aging window, retry interval and request age must be positive".into()));
        }
        if self.max_body == 0 || self.max_signing == 0 {
            return Err(Error::Usage("the body limit and signing concurrency must be positive".into()));
        }
        Ok(())
    }
}

/// Binds a listening socket for `addr` (inside a tokio runtime). An IPv6
/// address listens on IPv6 only, so `0.0.0.0:P` and `[::]:P` can both be
/// given; the address is reusable at once after a restart.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    #[cfg(unix)]
    if addr.is_ipv6() {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a socket descriptor this function owns, and an option
        // value of the size given that outlives the call.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(1024)
}

/// What the handlers share.
struct Shared {
    signer: Arc<TokenSigner>,
    chain_pem: String,
    products: Vec<String>,
    opts: IssueOptions,
    valid_for_secs: u64,
    renew_after_secs: u64,
    retry_after_secs: u64,
    max_body: usize,
    read_timeout: Duration,
    max_request_age_secs: i64,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<Box<dyn HostState>>>,
    /// Records the activations (group commit).
    committer: Arc<Committer>,
    hints: Arc<Hints>,
    signing: tokio::sync::Semaphore,
    limiter: RateLimiter,
    log_salt: String,
}

/// The peer address of a connection, put in each request's extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) SocketAddr);

/// Serves the host on `listeners` until `shutdown` completes, then stops
/// accepting, lets the requests in flight finish (at most 30 s) and closes
/// the state. The products and their thresholds are recorded in the state
/// first ([`HostState::configure`]), so `host status` shows them.
pub async fn serve<F>(listeners: Vec<TcpListener>, config: ServeConfig, shutdown: F) -> Result<()>
where
    F: Future<Output = ()> + Send,
{
    config.check()?;
    let tls = config.tls.clone();
    // Opened and configured on the blocking pool: a store may block (the
    // PostgreSQL client runs its own small runtime).
    let (open, products, aging_secs) = (config.state, config.products.clone(), config.aging_secs);
    let now = config.clock.now();
    let (state, hints) = tokio::task::spawn_blocking(move || {
        let mut state = open()?;
        state.configure(&products, aging_secs)?;
        let hints = Hints::from_status(&state.status(now)?);
        Ok((state, hints))
    })
    .await
    .unwrap_or_else(|e| Err(Error::Refused(format!("the host state task failed: {e}"))))?;
    let opts = IssueOptions {
        lifetime: TokenLifetime::Seconds(config.valid_for_secs),
        renew_after_secs: Some(config.renew_after_secs),
        compact: config.compact,
        ..IssueOptions::default()
    };
    let state = Arc::new(Mutex::new(state));
    let hints = Arc::new(hints);
    let local = state.lock().unwrap_or_else(|p| p.into_inner()).is_local();
    let committer = Arc::new(Committer {
        state: state.clone(),
        local,
        signer: config.signer.clone(),
        opts: opts.clone(),
        hints: hints.clone(),
        replay_window_secs: config.max_request_age_secs * 2,
        batch: config.batch.clamp(1, MAX_BATCH),
        pending: Mutex::new(Pending::default()),
    });
    let shared = Arc::new(Shared {
        log_salt: config.signer.certificate().fingerprint.clone(),
        signer: config.signer,
        chain_pem: config.chain_pem,
        products: config.products.iter().map(|p| p.product.clone()).collect(),
        opts,
        valid_for_secs: config.valid_for_secs,
        renew_after_secs: config.renew_after_secs,
        retry_after_secs: config.retry_after_secs,
        max_body: config.max_body,
        read_timeout: config.read_timeout,
        max_request_age_secs: config.max_request_age_secs,
        clock: config.clock,
        state,
        committer,
        hints,
        signing: tokio::sync::Semaphore::new(config.max_signing),
        limiter: RateLimiter::new(config.rate_per_min, "from this address"),
    });
    let router = Router::new()
        .route("/v1/activate", post(activate))
        .route("/v1/return", post(give_back))
        .route("/v1/chain", get(chain))
        .route("/v1/health", get(health))
        .fallback(not_found)
        .with_state(shared.clone());

    run_listeners(listeners, router, tls, shared.read_timeout, shutdown).await;
    // Every request answered, so nothing is queued: the state closes with
    // the last reference (a blocking task may hold one briefly), off the
    // runtime like every other use of it (the PostgreSQL client must not
    // be dropped inside the runtime).
    let _ = tokio::task::spawn_blocking(move || drop(shared)).await;
    Ok(())
}

/// Serves `router` over HTTP/1.1 on `listeners` (TLS on each when `tls`
/// is given) until `shutdown` completes, then stops accepting and lets the
/// requests in flight finish (at most 30 s). Each request carries its
/// client's [`Peer`] address; a client that does not send its headers
/// within `read_timeout` is cut off. Shared by the activation host and the
/// online activation service.
pub(crate) async fn run_listeners<F>(
    listeners: Vec<TcpListener>,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    read_timeout: Duration,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::net::TcpStream, SocketAddr)>(64);
    let mut acceptors = Vec::new();
    for l in listeners {
        let tx = tx.clone();
        acceptors.push(tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok(conn) => {
                        if tx.send(conn).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(target: "tka::host", error = %e, "accept failed");
                        // Out of file descriptors and the like: give the system a moment.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    drop(tx);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            conn = rx.recv() => {
                let Some((stream, addr)) = conn else { break };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(Peer(addr));
                    let mut router = router.clone();
                    async move { tower_service::Service::call(&mut router, req.map(Body::new)).await }
                });
                let builder = {
                    let mut b = hyper::server::conn::http1::Builder::new();
                    b.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(read_timeout);
                    b
                };
                match &tls {
                    None => {
                        let conn = graceful.watch(builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc));
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    Some(acceptor) => {
                        let (acceptor, watcher) = (acceptor.clone(), graceful.watcher());
                        tokio::spawn(async move {
                            let Some(stream) = tls_handshake(&acceptor, stream, addr, read_timeout).await else { return };
                            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                            let _ = watcher.watch(conn).await;
                        });
                    }
                }
            }
            _ = &mut shutdown => break,
        }
    }
    for a in acceptors {
        a.abort();
    }
    drop(rx);
    tracing::info!(target: "tka::host", "shutting down: finishing requests in flight");
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!(target: "tka::host", "requests still in flight after 30 s were cut off");
    }
}

/// The first byte of a TLS handshake record (RFC 8446 §5.1).
const TLS_HANDSHAKE: u8 = 0x16;

/// The TLS handshake of a connection to a TLS listener, within
/// `timeout`. A client that speaks plain HTTP instead gets one plain
/// `400` refusal (`tls_required`) and the connection closes; a failed
/// handshake is logged and closes it.
async fn tls_handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] != TLS_HANDSHAKE => {
            refuse_plain(stream).await;
            return None;
        }
        Ok(Ok(1)) => {}
        _ => return None,
    }
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::info!(target: "tka::host", peer = %addr.ip(), error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

/// Answers a plain-HTTP client of a TLS listener with one refusal and
/// closes. What the client sends is read and dropped first (at most 16 KB,
/// until it pauses for 200 ms), so closing does not reset the connection
/// before the client reads the answer.
async fn refuse_plain(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sink = [0u8; 4096];
    let mut read = 0;
    while read < 16 * 1024 {
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => read += n,
            _ => break,
        }
    }
    let body = json!({
        "status": "refused", "error": "tls_required",
        "message": "this host accepts only TLS connections",
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A refusal: the status, the error code, one line, and for a rate limit
/// when to try again (`Retry-After`, seconds).
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) retry_after: Option<u64>,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refusal { status, code, message: message.into(), retry_after: None }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = Json(json!({"status": "refused", "error": self.code, "message": self.message}));
        match self.retry_after {
            Some(secs) => (self.status, [(header::RETRY_AFTER, secs.to_string())], body).into_response(),
            None => (self.status, body).into_response(),
        }
    }
}

/// What a request's log line says about it.
#[derive(Default)]
struct LogFields {
    product: Option<String>,
    cmid: Option<String>,
    count: Option<u32>,
}

fn log_request(sh: &Shared, endpoint: &str, peer: &Peer, started: Instant, f: &LogFields, outcome: &str) {
    if !tracing::enabled!(target: "tka::host", tracing::Level::INFO) {
        return;
    }
    let cmid = f.cmid.as_deref().map(|c| hash_cmid(&sh.log_salt, c)).unwrap_or_default();
    tracing::info!(
        target: "tka::host",
        endpoint,
        peer = %peer.0.ip(),
        product = f.product.as_deref().unwrap_or(""),
        cmid = %cmid,
        count = f.count.unwrap_or(0),
        outcome,
        latency_us = started.elapsed().as_micros() as u64,
    );
}

/// The CMID as logs show it: 16 hex digits of SHA-256 over the host's
/// certificate fingerprint and the CMID (the same machine has the same
/// hash on one host; the CMID cannot be read back from it).
fn hash_cmid(salt: &str, cmid: &str) -> String {
    let d = Sha256::new().chain_update(b"tka-host-log\0").chain_update(salt).chain_update(b"\0").chain_update(cmid);
    crate::core::hex::lower_hex(&d.finalize()[..8])
}

async fn not_found() -> Refusal {
    Refusal::new(StatusCode::NOT_FOUND, "bad_request", "no such endpoint")
}

async fn health(State(sh): State<Arc<Shared>>) -> Response {
    Json(json!({"status": "ok", "products": sh.products})).into_response()
}

async fn chain(State(sh): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, "application/pem-certificate-chain")], sh.chain_pem.clone()).into_response()
}

/// Reads a request body: refused (413) when its `Content-Length` or its
/// bytes exceed the limit, before more is read; cut off when it does not
/// arrive in time.
pub(crate) async fn read_body(
    max_body: usize,
    read_timeout: Duration,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<u8>, Refusal> {
    let too_large = || {
        Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("the request body exceeds {max_body} bytes"))
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if declared.is_some_and(|n: u64| n > max_body as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, max_body);
    match tokio::time::timeout(read_timeout, limited.collect()).await {
        Err(_) => Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "bad_request",
            format!("the request body did not arrive within {} s", read_timeout.as_secs_f64()),
        )),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(Refusal::bad(format!("the request body could not be read: {e}"))),
        Ok(Ok(b)) => Ok(b.to_bytes().to_vec()),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    request: String,
}

/// The request in a body, checked as `token issue` checks one, for a
/// product the host serves and not older than the replay window.
fn parse_request(sh: &Shared, body: &[u8], now: i64, f: &mut LogFields) -> Result<ActivationRequest, Refusal> {
    let b: RequestBody = serde_json::from_slice(body)
        .map_err(|_| Refusal::bad("the body is not JSON of the form {\"request\": \"TKAR1-...\"}"))?;
    let req = ActivationRequest::parse(&b.request).map_err(|e| Refusal::bad(format!("request: {e}")))?;
    f.product = Some(req.product.clone());
    f.cmid = Some(req.cmid.clone());
    if !sh.products.contains(&req.product) {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "unknown_product",
            format!("this host does not activate product {:?}", req.product),
        ));
    }
    check_request(&req, false).map_err(|e| Refusal::bad(e.to_string()))?;
    if now - req.created > sh.max_request_age_secs {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            "replayed",
            format!("the request is older than {} s: make a new one", sh.max_request_age_secs),
        ));
    }
    if req.created - now > sh.max_request_age_secs {
        return Err(Refusal::bad(format!(
            "the request is dated more than {} s after the host's clock",
            sh.max_request_age_secs
        )));
    }
    Ok(req)
}

/// Runs `f` on the state, on the blocking pool.
async fn with_state<T: Send + 'static>(
    sh: &Arc<Shared>,
    f: impl FnOnce(&mut dyn HostState, &Shared) -> Result<T> + Send + 'static,
) -> Result<T> {
    let sh = sh.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = sh.state.lock().unwrap_or_else(|p| p.into_inner());
        f(guard.as_mut(), &sh)
    })
    .await
    .unwrap_or_else(|e| Err(Error::Refused(format!("the host state task failed: {e}"))))
}

/// Signs `req`'s token, dated [`realtime_issue_time`]: a machine whose
/// clock is a little behind the host's accepts it at once.
fn sign(signer: &TokenSigner, opts: &IssueOptions, req: &ActivationRequest, now: i64) -> Result<Signed> {
    let t = issue_one(None, None, req, opts, signer, realtime_issue_time(now, signer))?;
    Ok(Signed { serial: t.claims.jti, text: t.text, expires: t.claims.exp })
}

/// Per product, whether a request is likely to be activated (the count
/// after the last one recorded, plus one, reaches the threshold): the
/// handler then signs ahead, on its worker thread, and the committer uses
/// that token if the state's decision activates the machine (it signs
/// itself when the hint was wrong, and a token signed ahead for a machine
/// left pending is dropped). Only a hint: the decision is the state's.
struct Hints(HashMap<String, AtomicBool>);

impl Hints {
    fn from_status(status: &[crate::issuer::host::state::ProductStatus]) -> Self {
        Hints(status.iter().map(|p| (p.product.clone(), AtomicBool::new(p.count + 1 >= p.threshold))).collect())
    }

    fn sign_ahead(&self, product: &str) -> bool {
        self.0.get(product).is_some_and(|h| h.load(Ordering::Relaxed))
    }

    fn update(&self, product: &str, count: u32, threshold: u32) {
        if let Some(h) = self.0.get(product) {
            h.store(count.saturating_add(1) >= threshold, Ordering::Relaxed);
        }
    }
}

/// One activation waiting for its transaction.
struct Job {
    req: ActivationRequest,
    now: i64,
    /// The token signed ahead, if the hint said so.
    ahead: Option<Signed>,
    reply: tokio::sync::oneshot::Sender<Result<Recorded>>,
}

/// Most activations recorded in one transaction.
const MAX_BATCH: usize = 64;

/// The activations waiting for their transaction, the ones being signed,
/// and whether a transaction is being committed.
#[derive(Default)]
struct Pending {
    jobs: Vec<Job>,
    signing: usize,
    committing: bool,
}

impl Pending {
    /// Whether what is queued should be committed now: when nothing else
    /// is being signed (no one else will come to commit it), or when
    /// [`Committer::batch`] activations are waiting.
    fn ready(&self, batch: usize) -> bool {
        !self.jobs.is_empty() && (self.signing == 0 || self.jobs.len() >= batch)
    }
}

/// Group commit without a thread of its own: a handler counts itself in
/// ([`Committer::start`]), signs, and queues its activation
/// ([`Committer::queue`]); when no commit is running and no other
/// activation is being signed (or [`Committer::batch`] are queued), that
/// handler becomes the committer and records everything queued, in
/// transactions of at most [`MAX_BATCH`], while that holds
/// ([`Committer::commit_all`]); the others wait for their answer. An
/// activation left queued is committed by the next one that finishes
/// signing, so none waits longer than about `batch` signatures. A local
/// state (SQLite: short transactions, no fsync) is written on the worker
/// thread itself; a remote one (PostgreSQL: network round trips) on the
/// blocking pool.
struct Committer {
    state: Arc<Mutex<Box<dyn HostState>>>,
    /// [`HostState::is_local`].
    local: bool,
    signer: Arc<TokenSigner>,
    opts: IssueOptions,
    hints: Arc<Hints>,
    replay_window_secs: i64,
    /// Activations a transaction gathers while others are being signed.
    batch: usize,
    pending: Mutex<Pending>,
}

impl Committer {
    /// Counts an activation about to be signed; [`Committer::queue`] must
    /// follow with no await in between.
    fn start(&self) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).signing += 1;
    }

    /// Queues a job counted in by [`Committer::start`]; `true` when the
    /// caller must commit ([`Committer::commit_all`]).
    fn queue(&self, job: Job) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.signing -= 1;
        p.jobs.push(job);
        let lead = !p.committing && p.ready(self.batch);
        p.committing |= lead;
        lead
    }

    /// Commits what is queued, and what is queued meanwhile, while it is
    /// ready ([`Pending::ready`]); each activation is answered after its
    /// transaction.
    fn commit_all(&self) {
        /// A commit that panics gives the role up and fails what is
        /// queued (each waiting request is answered `internal`), so the
        /// next activation commits again.
        struct GiveUp<'a>(&'a Mutex<Pending>);
        impl Drop for GiveUp<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let mut p = self.0.lock().unwrap_or_else(|p| p.into_inner());
                    p.committing = false;
                    p.jobs.clear();
                }
            }
        }
        let _give_up = GiveUp(&self.pending);
        let mut jobs = Vec::new();
        loop {
            {
                let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                if !p.ready(self.batch) {
                    p.committing = false;
                    return;
                }
                if p.jobs.len() <= MAX_BATCH {
                    std::mem::swap(&mut jobs, &mut p.jobs);
                } else {
                    jobs.extend(p.jobs.drain(..MAX_BATCH));
                }
            }
            self.commit(&mut jobs);
        }
    }

    /// Records `jobs` in one call of [`HostState::activate_batch`] and
    /// answers each; leaves `jobs` empty.
    fn commit(&self, jobs: &mut Vec<Job>) {
        let visits: Vec<(Visit, i64)> = jobs
            .iter()
            .map(|j| {
                let r = &j.req;
                (Visit { product: r.product.clone(), cmid: r.cmid.clone(), nonce: r.nonce.clone() }, j.now)
            })
            .collect();
        let results = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.activate_batch(&visits, self.replay_window_secs, &mut |i, _| {
                let j = &mut jobs[i];
                match j.ahead.take() {
                    Some(t) => Ok(t),
                    None => sign(&self.signer, &self.opts, &j.req, j.now),
                }
            })
        };
        for (job, r) in jobs.drain(..).zip(results) {
            if let Ok(Recorded::Admitted(a, _)) = &r {
                self.hints.update(&job.req.product, a.count, a.threshold);
            }
            let _ = job.reply.send(r);
        }
    }
}

fn internal(sh: &Shared, e: &Error) -> Refusal {
    let _ = sh;
    match e {
        Error::Verify(v @ VerifyError::TokenOutlivesSigner { .. }) => {
            Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "outside_delegation", format!("the host cannot sign: {v}"))
        }
        Error::Verify(v) => Refusal::new(StatusCode::FORBIDDEN, "outside_delegation", v.to_string()),
        _ => Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the host could not record the request"),
    }
}

async fn activate(
    State(sh): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut f = LogFields::default();
    let r = activate_inner(&sh, &peer, &headers, body, &mut f).await;
    let outcome = match &r {
        Ok((_, o)) => o.to_string(),
        Err(x) => x.code.to_string(),
    };
    log_request(&sh, "activate", &peer, started, &f, &outcome);
    match r {
        Ok((resp, _)) => resp,
        Err(x) => x.into_response(),
    }
}

async fn activate_inner(
    sh: &Arc<Shared>,
    peer: &Peer,
    headers: &HeaderMap,
    body: Body,
    f: &mut LogFields,
) -> Result<(Response, &'static str), Refusal> {
    sh.limiter.check(peer.0.ip())?;
    let body = read_body(sh.max_body, sh.read_timeout, headers, body).await?;
    let now = sh.clock.now();
    let req = parse_request(sh, &body, now, f)?;
    // Signed ahead here, on this worker thread, when the product's hint
    // says the machine will be activated (a failure here is left to the
    // committer, which signs again if its decision needs the token); then
    // recorded in a transaction with the other activations queued
    // meanwhile (by this task when no commit is running), and answered
    // once it committed.
    let permit = match sh.hints.sign_ahead(&req.product) {
        true => Some(sh.signing.acquire().await.expect("the semaphore is never closed")),
        false => None,
    };
    // No await from here until committing: what the committer counts is
    // exact, and a commit this task owes runs even when the client goes
    // away. A panic in the signature is a failed signature (the
    // committer signs again).
    sh.committer.start();
    let ahead = permit.and_then(|_| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sign(&sh.signer, &sh.opts, &req, now))).ok()?.ok()
    });
    let (reply, answer) = tokio::sync::oneshot::channel();
    if sh.committer.queue(Job { req, now, ahead, reply }) {
        match sh.committer.local {
            true => sh.committer.commit_all(),
            false => {
                let c = sh.committer.clone();
                drop(tokio::task::spawn_blocking(move || c.commit_all()));
            }
        }
    }
    let recorded = answer.await.unwrap_or_else(|_| Err(Error::Refused("the host state's commit failed".into())));
    let recorded = recorded.map_err(|e| internal(sh, &e))?;
    match recorded {
        Recorded::UnknownProduct => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "unknown_product",
            format!("this host does not activate product {:?}", f.product.as_deref().unwrap_or("")),
        )),
        Recorded::Replayed => {
            Err(Refusal::new(StatusCode::CONFLICT, "replayed", "this request was already used by another machine"))
        }
        Recorded::Admitted(a, token) => {
            f.count = Some(a.count);
            let product = f.product.clone().unwrap_or_default();
            match (a.verdict, token) {
                (Verdict::SeatsFull, _) => Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    "outside_delegation",
                    format!("every seat the host's delegation allows for {product:?} is taken ({})", a.count),
                )),
                (Verdict::Activated, Some(t)) => Ok((
                    json_response(&Activated {
                        status: "activated",
                        product: &product,
                        count: a.count,
                        threshold: a.threshold,
                        token: &t.text,
                        renew_after: sh.renew_after_secs,
                        valid_for: sh.valid_for_secs,
                    }),
                    "activated",
                )),
                _ => Ok((
                    Json(json!({
                        "status": "pending", "product": product, "count": a.count, "threshold": a.threshold,
                        "retry_after": sh.retry_after_secs,
                    }))
                    .into_response(),
                    "pending",
                )),
            }
        }
    }
}

/// The answer to an activation: serialized from borrowed fields, without
/// building a JSON tree first (the token is most of it).
#[derive(serde::Serialize)]
struct Activated<'a> {
    status: &'static str,
    product: &'a str,
    count: u32,
    threshold: u32,
    token: &'a str,
    renew_after: u64,
    valid_for: u64,
}

/// `200` with `body` as JSON.
fn json_response(body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn give_back(
    State(sh): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut f = LogFields::default();
    let r = async {
        sh.limiter.check(peer.0.ip())?;
        let body = read_body(sh.max_body, sh.read_timeout, &headers, body).await?;
        let now = sh.clock.now();
        let req = parse_request(&sh, &body, now, &mut f)?;
        let visit = Visit { product: req.product.clone(), cmid: req.cmid.clone(), nonce: req.nonce.clone() };
        let window = sh.max_request_age_secs * 2;
        let released =
            with_state(&sh, move |st, _| st.release(&visit, window, now)).await.map_err(|e| internal(&sh, &e))?;
        let (count, threshold) = match released {
            Released::Released { count, threshold } => (count, threshold),
            Released::Replayed => {
                return Err(Refusal::new(StatusCode::CONFLICT, "replayed", "this request was already used"));
            }
            Released::UnknownProduct => {
                return Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    "unknown_product",
                    format!("this host does not activate product {:?}", req.product),
                ));
            }
        };
        f.count = Some(count);
        Ok(Json(json!({"status": "returned", "product": req.product, "count": count, "threshold": threshold})))
    }
    .await;
    let outcome = match &r {
        Ok(_) => "returned",
        Err(x) => x.code,
    };
    log_request(&sh, "return", &peer, started, &f, outcome);
    match r {
        Ok(j) => j.into_response(),
        Err(x) => x.into_response(),
    }
}

/// Token buckets per client address (or any key, such as a product
/// key's hash): `rate` requests a minute, bursts up to a minute's worth.
/// A refusal says when the next request will be accepted (`Retry-After`).
pub(crate) struct RateLimiter<K = IpAddr> {
    rate: u32,
    what: &'static str,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

/// Most addresses tracked; beyond it full buckets are forgotten.
const MAX_TRACKED: usize = 10_000;

impl<K: std::hash::Hash + Eq> RateLimiter<K> {
    /// `rate` requests a minute per key; `what` ends the refusal's message
    /// (`from this address`); 0: no limit.
    pub(crate) fn new(rate: u32, what: &'static str) -> Self {
        RateLimiter { rate, what, buckets: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn check(&self, key: K) -> Result<(), Refusal> {
        if self.rate == 0 {
            return Ok(());
        }
        let (cap, per_sec) = (f64::from(self.rate), f64::from(self.rate) / 60.0);
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_TRACKED {
            b.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * per_sec < cap);
        }
        let (tokens, at) = b.entry(key).or_insert((cap, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(cap);
        *at = now;
        if *tokens < 1.0 {
            let mut r = Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("more than {} requests a minute {}", self.rate, self.what),
            );
            r.retry_after = Some(((1.0 - *tokens) / per_sec).ceil().max(1.0) as u64);
            return Err(r);
        }
        *tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_refuses_beyond_a_minutes_worth() {
        let l = RateLimiter::new(3, "from this address");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(ip).is_ok());
        }
        let r = l.check(ip).unwrap_err();
        assert_eq!((r.code, r.retry_after), ("rate_limited", Some(20)));
        assert!(l.check("192.0.2.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn logged_cmids_are_hashed() {
        let h = hash_cmid("salt", "cmid-1");
        assert_eq!(h.len(), 16);
        assert!(!h.contains("cmid"));
        assert_ne!(h, hash_cmid("other", "cmid-1"));
    }
}
