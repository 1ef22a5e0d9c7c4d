//! Online activation with product keys (`tka serve`): a machine that can
//! reach the vendor once sends its activation request and the product key
//! of an entitlement, and gets a full token back, counted against that
//! entitlement exactly as `token issue --entitlement` counts it (the same
//! single path, [`issue_one`]: a machine already counted is re-issued
//! without consuming a seat; a new machine beyond the count is refused).
//!
//! Endpoints (HTTP/1.1, JSON; docs/online.md has the contract):
//! - `POST /v1/activate` `{"request": "TKAR1-...", "key": "XXXXX-..."}`:
//!   `200 {"status": "activated", "product", "serial", "expires", "token"}`
//!   or a refusal `{"status": "refused", "error": KIND, "message": ...}`
//!   with KIND one of `unknown_key`, `disabled_key` (403), `wrong_product`,
//!   `exhausted`, `expired`, `refused` (403), `bad_request`, `bad_key`
//!   (400), `too_large` (413), `rate_limited` (429, with `Retry-After`),
//!   `unavailable` (503: the ledger cannot be reached), `internal` (500);
//! - `GET /v1/health`: `{"status": "ok"}`.
//!
//! The HTTP stack (listeners, TLS, body limit, rate limiter, graceful stop)
//! is the activation host's ([`crate::issuer::host::server`]). The ledger
//! is opened per worker and kept in a small pool; every issuance is one
//! ledger transaction, so several services on one PostgreSQL ledger count
//! exactly. Keys are never logged: a log line names a key by the first 8
//! hex digits of its hash.

use crate::core::error::{Error, IssueRefusal, Result};
use crate::core::product_key::ProductKey;
use crate::core::request::ActivationRequest;
use crate::core::token::TokenLifetime;
use crate::issuer::host::server::{read_body, run_listeners, Clock, Peer, RateLimiter, Refusal};
use crate::issuer::issue::{issue_one, realtime_issue_time, IssueOptions, TokenSigner};
use crate::issuer::ledger::{Ledger, LedgerLocation};
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Default largest request body: 8 KB.
pub const DEFAULT_MAX_BODY: usize = 8192;
/// Default requests per minute per client address: 120 (as the host's).
pub const DEFAULT_RATE_PER_ADDRESS: u32 = 120;
/// Default requests per minute per product key: 600 (a volume key serves
/// many machines; the limit slows down guessing and a leaked key).
pub const DEFAULT_RATE_PER_KEY: u32 = 600;
/// Idle ledger connections kept.
const LEDGER_POOL: usize = 16;

/// Everything the online service runs with.
pub struct OnlineConfig {
    /// The issuer's token signer.
    pub signer: Arc<TokenSigner>,
    /// The ledger the entitlements and keys are in (it must exist).
    pub ledger: LedgerLocation,
    /// Token lifetime, days (shortened to the entitlement's expiry).
    pub token_days: u32,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Time a client has to send its headers, and its body.
    pub read_timeout: Duration,
    /// Requests per minute per client address; 0: no limit.
    pub rate_per_address: u32,
    /// Requests per minute per product key; 0: no limit.
    pub rate_per_key: u32,
    /// Most issuances at once (each holds a ledger connection).
    pub max_workers: usize,
    /// TLS on every listener; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

impl OnlineConfig {
    /// A configuration with the defaults, system clock and plain HTTP.
    pub fn new(signer: Arc<TokenSigner>, ledger: LedgerLocation, token_days: u32) -> Self {
        OnlineConfig {
            signer,
            ledger,
            token_days,
            max_body: DEFAULT_MAX_BODY,
            read_timeout: crate::issuer::host::server::DEFAULT_READ_TIMEOUT,
            rate_per_address: DEFAULT_RATE_PER_ADDRESS,
            rate_per_key: DEFAULT_RATE_PER_KEY,
            max_workers: std::thread::available_parallelism().map_or(2, |n| n.get()) * 2,
            tls: None,
            clock: Arc::new(crate::issuer::host::server::SystemClock),
        }
    }
}

struct Shared {
    signer: Arc<TokenSigner>,
    ledger: LedgerLocation,
    token_days: u32,
    max_body: usize,
    read_timeout: Duration,
    by_address: RateLimiter,
    by_key: RateLimiter<String>,
    workers: tokio::sync::Semaphore,
    pool: Mutex<Vec<Ledger>>,
    clock: Arc<dyn Clock>,
}

/// Serves online activation on `listeners` until `shutdown` completes,
/// then lets the requests in flight finish (at most 30 s). The ledger is
/// opened once first, so a missing or unreachable one is refused before
/// anything is served.
pub async fn serve<F>(listeners: Vec<TcpListener>, config: OnlineConfig, shutdown: F) -> Result<()>
where
    F: Future<Output = ()> + Send,
{
    if config.max_body == 0 || config.max_workers == 0 {
        return Err(Error::Usage("the body limit and the number of workers must be positive".into()));
    }
    let location = config.ledger.clone();
    let first = tokio::task::spawn_blocking(move || Ledger::open_location(&location, false))
        .await
        .unwrap_or_else(|e| Err(Error::Refused(format!("opening the ledger failed: {e}"))))?;
    let shared = Arc::new(Shared {
        signer: config.signer,
        ledger: config.ledger,
        token_days: config.token_days,
        max_body: config.max_body,
        read_timeout: config.read_timeout,
        by_address: RateLimiter::new(config.rate_per_address, "from this address"),
        by_key: RateLimiter::new(config.rate_per_key, "with this product key"),
        workers: tokio::sync::Semaphore::new(config.max_workers),
        pool: Mutex::new(vec![first]),
        clock: config.clock,
    });
    let router = Router::new()
        .route("/v1/activate", post(activate))
        .route("/v1/health", get(|| async { Json(json!({"status": "ok"})) }))
        .fallback(|| async { Refusal::new(StatusCode::NOT_FOUND, "bad_request", "no such endpoint") })
        .with_state(shared.clone());
    run_listeners(listeners, router, config.tls, shared.read_timeout, shutdown).await;
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    request: String,
    key: String,
}

/// What an activation logs: never the key, nor the machine.
#[derive(Default)]
struct LogFields {
    key: String,
    product: String,
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
        Ok(_) => "activated",
        Err(x) => x.code,
    };
    tracing::info!(
        target: "tka::serve",
        peer = %peer.0.ip(),
        key = %f.key,
        product = %f.product,
        outcome,
        latency_us = started.elapsed().as_micros() as u64,
    );
    match r {
        Ok(j) => j.into_response(),
        Err(x) => x.into_response(),
    }
}

async fn activate_inner(
    sh: &Arc<Shared>,
    peer: &Peer,
    headers: &HeaderMap,
    body: Body,
    f: &mut LogFields,
) -> std::result::Result<Json<serde_json::Value>, Refusal> {
    sh.by_address.check(peer.0.ip())?;
    let body = read_body(sh.max_body, sh.read_timeout, headers, body).await?;
    let b: ActivateBody = serde_json::from_slice(&body).map_err(|_| {
        Refusal::bad("the body is not JSON of the form {\"request\": \"TKAR1-...\", \"key\": \"XXXXX-...\"}")
    })?;
    let key = ProductKey::parse(&b.key).map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, "bad_key", e.to_string()))?;
    let hash = key.hash();
    f.key = hash[..8].to_string();
    sh.by_key.check(hash)?;
    let req = ActivationRequest::parse(&b.request).map_err(|e| Refusal::bad(format!("request: {e}")))?;
    f.product = req.product.clone();
    let _permit = sh.workers.acquire().await.expect("the semaphore is never closed");
    let sh2 = sh.clone();
    let issued = tokio::task::spawn_blocking(move || issue_for_key(&sh2, &key, &req))
        .await
        .unwrap_or_else(|e| Err(Error::Refused(format!("the issuing task failed: {e}"))))
        .map_err(|e| refusal(&e))?;
    Ok(Json(json!({
        "status": "activated",
        "product": issued.claims.aud,
        "serial": issued.claims.jti,
        "expires": issued.claims.exp,
        "token": issued.text,
    })))
}

/// The entitlement of `key`, then the single issuance path against it,
/// on a pooled ledger connection.
fn issue_for_key(sh: &Shared, key: &ProductKey, req: &ActivationRequest) -> Result<crate::issuer::issue::IssuedToken> {
    let pooled = sh.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let mut ledger = match pooled {
        Some(l) => l,
        None => Ledger::open_location(&sh.ledger, false)?,
    };
    let now = sh.clock.now();
    let r = (|| {
        let ent = ledger.entitlement_for_key(key)?;
        let days = u64::from(sh.token_days) * 86_400;
        let lifetime = match ent.expires {
            Some(x) if x > now && ((x - now) as u64) < days => TokenLifetime::Seconds((x - now) as u64),
            _ => TokenLifetime::Seconds(days),
        };
        let opts = IssueOptions { lifetime, ..IssueOptions::default() };
        // Dated a little in the past, like the activation host's tokens: a
        // machine whose clock is behind the service's accepts it at once.
        let at = realtime_issue_time(now, &sh.signer);
        issue_one(Some(&mut ledger), Some(&ent.id.to_string()), req, &opts, &sh.signer, at)
    })();
    // A connection that failed may be broken: only a good one goes back.
    if !matches!(r, Err(Error::Ledger { .. })) {
        let mut pool = sh.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < LEDGER_POOL {
            pool.push(ledger);
        }
    }
    r
}

/// An issuance error as the service answers it.
fn refusal(e: &Error) -> Refusal {
    let forbidden = |code| Refusal::new(StatusCode::FORBIDDEN, code, e.to_string());
    match e {
        Error::Issue(r) => forbidden(match r {
            IssueRefusal::UnknownKey => "unknown_key",
            IssueRefusal::KeyDisabled { .. } => "disabled_key",
            IssueRefusal::WrongProduct { .. } => "wrong_product",
            IssueRefusal::EntitlementFull { .. } => "exhausted",
            IssueRefusal::EntitlementExpired { .. } | IssueRefusal::OutlivesEntitlement { .. } => "expired",
            _ => "refused",
        }),
        Error::Binding(_) | Error::Format { .. } | Error::MatchRuleDoesNotFit { .. } | Error::Usage(_) => {
            Refusal::bad(e.to_string())
        }
        Error::Ledger { .. } => Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service cannot reach its ledger; nothing was recorded: try again later",
        ),
        _ => {
            tracing::warn!(target: "tka::serve", error = %e, "activation failed");
            Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the service could not issue the token")
        }
    }
}

/// A rustls server configuration from a PEM certificate chain (server
/// certificate first) and a PEM private key (PKCS#8, PKCS#1 or SEC1, not
/// encrypted), for a service behind an ordinary web certificate.
pub fn pem_tls_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::format(what, e);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad("TLS certificate", &e))?;
    if chain.is_empty() {
        return Err(Error::format("TLS certificate", "no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad("TLS key", &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Usage(format!("cannot set up TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::format("TLS certificate and key", e))?;
    Ok(Arc::new(config))
}
