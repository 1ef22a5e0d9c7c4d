//! The activation agent: the machine side of an activation host on the
//! LAN. It finds a host (a name given, or DNS SRV records
//! `_tka._tcp.DOMAIN` chosen as RFC 2782 says, failing over to the next
//! when one does not answer), sends this machine's one-line activation
//! request, and installs the token it gets back through the normal
//! activation path: verified against the store's trusted roots like any
//! token, never trusted because a host sent it. The host that answered is
//! cached in the store (`agent.json`) and asked first next time; when it
//! stops answering, the agent goes back to DNS.
//!
//! Wire protocol (HTTP/1.1, JSON): `POST /v1/activate` and
//! `POST /v1/return` with `{"request": "TKAR1-..."}`; `GET /v1/chain` for
//! the host's certificate chain. [`once`] is one round, [`give_back`]
//! returns the activation early, [`run`] loops with the [`schedule`].

pub mod client;
pub mod discover;
pub mod schedule;
pub mod tls;

use crate::activation::activate::{activate_with_chain, deactivate};
use crate::activation::store::{CachedHost, Store, DEFAULT_CLOCK_TOLERANCE_SECS};
use crate::activation::trust::IdentifyFn;
pub use crate::core::agent_error::AgentError;
use crate::core::error::{Error, Result};
use crate::core::pki::{pem, sha256_hex, RootFingerprint};
use crate::core::request::ActivationRequest;
use crate::core::token::decode_unverified;
use crate::core::verify::VerifiedToken;
use client::{exchange, Failure, Response, Timeouts};
use discover::{addresses, os_uniform, rfc2782_order, srv_records, DnsServer};
use schedule::{LastRound, Schedule, DEFAULT_RENEW_SECS};
use serde::Deserialize;
use std::net::SocketAddr;

/// A host and TCP port, as given (`HOST:PORT`, `[IPv6]:PORT`) or found in DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl HostPort {
    /// Parses `HOST:PORT` or `[IPv6]:PORT`.
    pub fn parse(s: &str) -> Result<HostPort, AgentError> {
        let bad = || AgentError::BadAddress { what: "host", value: s.to_string() };
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(h) => h.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || host.len() > 253 || port == 0 || host.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad());
        }
        Ok(HostPort { host: host.to_string(), port })
    }
}

impl HostPort {
    /// Parses `HOST:PORT`, or a URL `https://HOST:PORT` or
    /// `http://HOST:PORT` (a trailing `/` allowed); the flag is whether the
    /// scheme asks for TLS, `None` without a scheme.
    pub fn parse_url(s: &str) -> Result<(HostPort, Option<bool>), AgentError> {
        let (rest, tls) = if let Some(r) = s.strip_prefix("https://") {
            (r, Some(true))
        } else if let Some(r) = s.strip_prefix("http://") {
            (r, Some(false))
        } else {
            (s, None)
        };
        let rest = if tls.is_some() { rest.strip_suffix('/').unwrap_or(rest) } else { rest };
        HostPort::parse(rest)
            .map(|h| (h, tls))
            .map_err(|_| AgentError::BadAddress { what: "host", value: s.to_string() })
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How the agent finds its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locate {
    /// This host; no DNS, no cache.
    Host(HostPort),
    /// The SRV records `_tka._tcp.DOMAIN`, asked of `dns`; the cached host
    /// (the last that answered) first.
    Domain {
        /// The domain.
        domain: String,
        /// Where DNS questions go.
        dns: DnsServer,
    },
}

/// What one agent round needs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The product to activate.
    pub product: String,
    /// Where the host is.
    pub locate: Locate,
    /// How long to wait for hosts.
    pub timeouts: Timeouts,
    /// Pinned roots, as in [`crate::activation::activate`]: the token's
    /// chain must end at one of them.
    pub pinned_roots: Vec<RootFingerprint>,
    /// Speak TLS to every host (found by name or through DNS): its
    /// certificate chain must be a token signer's for [`AgentConfig::product`]
    /// under the store's trusted roots ([`tls::check_host_chain`]); a host
    /// that fails it is [`AgentError::UntrustedHost`] and the next SRV
    /// target is tried.
    pub tls: bool,
}

/// The host's activation count for a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Distinct machines the host counts for the product.
    pub count: u64,
    /// How many it needs before it activates any.
    pub threshold: u64,
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "count: {} of {}", self.count, self.threshold)
    }
}

/// What one round ([`once`]) came to.
#[derive(Debug, Clone)]
pub enum RoundOutcome {
    /// The host activated this machine and the token is installed.
    Activated {
        /// The host that answered.
        host: HostPort,
        /// Its count.
        count: Count,
        /// When to renew, Unix seconds.
        renew_at: i64,
        /// The installed token, as verified.
        verified: Box<VerifiedToken>,
    },
    /// The host counted this machine but its count is below the threshold.
    Pending {
        /// The host that answered.
        host: HostPort,
        /// Its count.
        count: Count,
        /// When the host asks the agent to come back, seconds.
        retry_after: Option<i64>,
    },
}

impl RoundOutcome {
    /// The host's count.
    pub fn count(&self) -> Count {
        match self {
            RoundOutcome::Activated { count, .. } | RoundOutcome::Pending { count, .. } => *count,
        }
    }
}

/// What [`give_back`] did.
#[derive(Debug, Clone)]
pub struct Returned {
    /// The host that took the activation back.
    pub host: HostPort,
    /// Its count afterwards.
    pub count: Count,
    /// Whether a local token was removed.
    pub dropped: bool,
}

/// The host's answer, every status in one shape.
#[derive(Debug, Deserialize)]
struct Reply {
    status: String,
    #[serde(default)]
    product: Option<String>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    threshold: Option<u64>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    renew_after: Option<i64>,
    #[serde(default)]
    retry_after: Option<i64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// One round: sends this machine's request for `cfg.product` to the
/// host, and installs the token if the host activates it. `identify`
/// gives this machine's identity, as for `request create`; `now` is the
/// time (Unix seconds).
///
/// A token from the host is verified exactly as
/// [`crate::activation::activate`] verifies any
/// token (trusted roots, pins, the machine, the clock); one for another
/// product is refused ([`AgentError::BadResponse`]). When the token names
/// its signer without carrying the chain, the host's chain
/// (`GET /v1/chain`) is fetched first. No host answering is
/// [`AgentError::NoHostReachable`] (or [`AgentError::Discovery`]), a
/// refusal [`AgentError::HostRefused`]; the store is then unchanged.
pub fn once(store: &Store, identify: IdentifyFn<'_>, cfg: &AgentConfig, now: i64) -> Result<RoundOutcome> {
    let body = request_body(identify, &cfg.product, now)?;
    let tls = connector(store, cfg, now)?;
    let tls = tls.as_ref();
    runtime()?.block_on(async {
        let (host, addr, resp) = post_to_first(store, cfg, tls, "/v1/activate", &body).await?;
        let reply = parse_reply(&host, &resp, &cfg.product)?;
        let count = count_of(&host, &reply)?;
        let outcome = match reply.status.as_str() {
            "activated" => {
                let token = reply.token.as_deref().ok_or_else(|| bad(&host, "activated without a token"))?;
                let verified = install(store, identify, cfg, tls, &host, addr, token, now).await?;
                let renew_at = verified
                    .claims
                    .tka
                    .renew_after
                    .or(reply.renew_after.map(|s| now.saturating_add(s)))
                    .unwrap_or(now + DEFAULT_RENEW_SECS);
                RoundOutcome::Activated { host: host.clone(), count, renew_at, verified: Box::new(verified) }
            }
            "pending" => RoundOutcome::Pending { host: host.clone(), count, retry_after: reply.retry_after },
            other => return Err(bad(&host, &format!("status {other:?} to an activation")).into()),
        };
        remember(store, cfg, &host, now)?;
        Ok(outcome)
    })
}

/// Gives the activation of `cfg.product` back to the host early
/// (`POST /v1/return`), then removes the local token. Nothing is removed
/// when no host takes it back.
pub fn give_back(store: &Store, identify: IdentifyFn<'_>, cfg: &AgentConfig, now: i64) -> Result<Returned> {
    let body = request_body(identify, &cfg.product, now)?;
    let tls = connector(store, cfg, now)?;
    runtime()?.block_on(async {
        let (host, _, resp) = post_to_first(store, cfg, tls.as_ref(), "/v1/return", &body).await?;
        let reply = parse_reply(&host, &resp, &cfg.product)?;
        if reply.status != "returned" {
            return Err(bad(&host, &format!("status {:?} to a return", reply.status)).into());
        }
        let count = count_of(&host, &reply)?;
        remember(store, cfg, &host, now)?;
        let dropped = deactivate(store, &cfg.product)?;
        Ok(Returned { host, count, dropped })
    })
}

/// What [`run`] needs from its surroundings: the clock, sleeping, the
/// log, randomness. The CLI passes the real ones; tests pass fakes.
pub trait RunEnv {
    /// The time, Unix seconds.
    fn now(&mut self) -> i64;
    /// Sleeps until `when` (Unix seconds); `false` when the agent is to
    /// stop (a signal) instead.
    fn sleep_until(&mut self, when: i64) -> bool;
    /// Logs one line.
    fn log(&mut self, line: &str);
    /// A uniform random number from 0 to `max`, both included.
    fn uniform(&mut self, max: u32) -> u32 {
        os_uniform(max)
    }
}

/// Runs rounds until `env` says stop: a round whenever the schedule says
/// (at once unless a valid token is installed and not yet due for
/// renewal), then [`Schedule::next_wake`] after it. One log line per round.
/// A round that fails because of a host (none reachable, a refusal, a bad
/// answer, a token that does not verify) is logged and retried; anything
/// else (the store, the machine's identity) ends the loop with the error.
pub fn run(
    store: &Store,
    identify: IdentifyFn<'_>,
    cfg: &AgentConfig,
    schedule: &Schedule,
    env: &mut dyn RunEnv,
) -> Result<()> {
    let mut last = installed_renewal(store, identify, cfg, env.now())?;
    if let LastRound::Activated { renew_at } = last {
        env.log(&format!("{}: activated; renewal due {}", cfg.product, crate::core::clock::rfc3339(renew_at)));
    }
    loop {
        let now = env.now();
        let mut uniform = |max| env.uniform(max);
        let wake = schedule.next_wake(last, now, &mut uniform);
        if wake > now && !env.sleep_until(wake) {
            return Ok(());
        }
        let now = env.now();
        last = match once(store, identify, cfg, now) {
            Ok(RoundOutcome::Activated { host, count, renew_at, .. }) => {
                env.log(&format!(
                    "{}: activated by {host} ({count}); renewal due {}",
                    cfg.product,
                    crate::core::clock::rfc3339(renew_at)
                ));
                LastRound::Activated { renew_at }
            }
            Ok(RoundOutcome::Pending { host, count, retry_after }) => {
                env.log(&format!("{}: not activated yet by {host} ({count})", cfg.product));
                LastRound::Pending { retry_after }
            }
            Err(e @ (Error::Agent(_) | Error::Verify(_))) => {
                env.log(&format!("{}: {e}", cfg.product));
                LastRound::Failed
            }
            Err(e) => return Err(e),
        };
    }
}

/// The renewal time of a token installed and valid now, else [`LastRound::None`].
fn installed_renewal(store: &Store, identify: IdentifyFn<'_>, cfg: &AgentConfig, now: i64) -> Result<LastRound> {
    let identity = identify(&cfg.product)?;
    Ok(match crate::activation::activate::status(store, &cfg.product, &identity, &cfg.pinned_roots, now)? {
        crate::activation::activate::ProductStatus::Active(v) => LastRound::Activated {
            renew_at: v.claims.tka.renew_after.unwrap_or(v.claims.iat.saturating_add(DEFAULT_RENEW_SECS)),
        },
        _ => LastRound::None,
    })
}

/// The request body: this machine's one-line request in JSON.
fn request_body(identify: IdentifyFn<'_>, product: &str, now: i64) -> Result<Vec<u8>> {
    let identity = identify(product)?;
    let text = ActivationRequest::new(&identity, now, None).to_text()?;
    Ok(serde_json::json!({ "request": text }).to_string().into_bytes())
}

/// The TLS connector of a round when `cfg.tls`: trusting what the store
/// trusts for the product at `now`.
fn connector(store: &Store, cfg: &AgentConfig, now: i64) -> Result<Option<tokio_rustls::TlsConnector>> {
    if !cfg.tls {
        return Ok(None);
    }
    let trust = crate::activation::trust::TrustData::from_store(store)?;
    if trust.anchors.is_empty() {
        return Err(Error::NoTrustedRoot);
    }
    let config = tls::client_config(&trust, &cfg.pinned_roots, &cfg.product, now)
        .map_err(|e| Error::Usage(format!("cannot set up TLS: {e}")))?;
    Ok(Some(tokio_rustls::TlsConnector::from(config)))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the network runtime: {e}")))
}

fn bad(host: &HostPort, detail: &str) -> AgentError {
    AgentError::BadResponse { host: host.to_string(), detail: detail.to_string() }
}

/// Records the host that answered, when it was found through DNS.
fn remember(store: &Store, cfg: &AgentConfig, host: &HostPort, now: i64) -> Result<()> {
    if matches!(cfg.locate, Locate::Domain { .. }) {
        let cached = CachedHost { host: host.host.clone(), port: host.port, when: now };
        store.lock()?.put_cached_host(&cached)?;
    }
    Ok(())
}

/// Sends `body` to `path` on the first host that answers: the one named,
/// or the cached one and then the SRV targets in RFC 2782 order.
async fn post_to_first(
    store: &Store,
    cfg: &AgentConfig,
    tls: Option<&tokio_rustls::TlsConnector>,
    path: &str,
    body: &[u8],
) -> Result<(HostPort, SocketAddr, Response)> {
    let mut tried = Vec::new();
    let (domain, dns) = match &cfg.locate {
        Locate::Host(h) => {
            return match try_host(h, DnsServer::System, cfg, tls, "POST", path, Some(body), &mut tried).await {
                Ok(Some(hit)) => Ok(hit),
                // The one host named: why it is not trusted is the error.
                Err(Failure::Untrusted(e)) => Err(e.into()),
                Err(Failure::Answer(e)) => Err(e.into()),
                Err(Failure::Unreachable(_)) | Ok(None) => Err(AgentError::NoHostReachable { tried }.into()),
            };
        }
        Locate::Domain { domain, dns } => (domain, *dns),
    };
    let cached = store.cached_host()?.map(|c| HostPort { host: c.host, port: c.port });
    if let Some(h) = &cached {
        if let Some(hit) = next_or_error(try_host(h, dns, cfg, tls, "POST", path, Some(body), &mut tried).await)? {
            return Ok(hit);
        }
    }
    let records = match srv_records(domain, dns).await {
        Ok(r) => r,
        Err(e) if tried.is_empty() => return Err(e.into()),
        Err(e) => {
            tried.push(e.to_string());
            return Err(AgentError::NoHostReachable { tried }.into());
        }
    };
    for t in rfc2782_order(&records, &mut os_uniform) {
        let h = HostPort { host: t.target, port: t.port };
        if cached.as_ref() == Some(&h) {
            continue;
        }
        if let Some(hit) = next_or_error(try_host(&h, dns, cfg, tls, "POST", path, Some(body), &mut tried).await)? {
            return Ok(hit);
        }
    }
    if tried.is_empty() {
        tried.push(format!("SRV {} (no usable target)", discover::srv_name(domain)));
    }
    Err(AgentError::NoHostReachable { tried }.into())
}

/// Tries each address of `h`; `None` (with `tried` extended) when none
/// answers. A host whose TLS certificate is not trusted is
/// [`Failure::Untrusted`] (also recorded in `tried`): the caller decides
/// whether to try another.
#[allow(clippy::too_many_arguments)]
async fn try_host(
    h: &HostPort,
    dns: DnsServer,
    cfg: &AgentConfig,
    tls: Option<&tokio_rustls::TlsConnector>,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    tried: &mut Vec<String>,
) -> Result<Option<(HostPort, SocketAddr, Response)>, Failure> {
    let addrs = match (&cfg.locate, dns) {
        (Locate::Host(_), _) | (_, DnsServer::System) => system_addresses(h).await,
        _ => addresses(&h.host, h.port, dns).await,
    };
    let addrs = match addrs {
        Ok(a) => a,
        Err(e) => {
            tried.push(format!("{h} ({e})"));
            return Ok(None);
        }
    };
    for addr in addrs {
        match exchange(addr, &h.to_string(), method, path, body, cfg.timeouts, tls).await {
            Ok(resp) => return Ok(Some((h.clone(), addr, resp))),
            Err(Failure::Unreachable(why)) => {
                tried.push(if addr.to_string() == h.to_string() { why } else { format!("{h} at {why}") })
            }
            Err(Failure::Untrusted(e)) => {
                tried.push(format!("{h} (not trusted: {})", untrusted_detail(&e)));
                return Err(Failure::Untrusted(e));
            }
            Err(f @ Failure::Answer(_)) => return Err(f),
        }
    }
    Ok(None)
}

fn untrusted_detail(e: &AgentError) -> String {
    match e {
        AgentError::UntrustedHost { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

/// [`try_host`] for a host among several: an untrusted one is skipped (it
/// is in `tried`), any other wrong answer is the error.
fn next_or_error(
    r: Result<Option<(HostPort, SocketAddr, Response)>, Failure>,
) -> Result<Option<(HostPort, SocketAddr, Response)>> {
    match r {
        Ok(hit) => Ok(hit),
        Err(Failure::Untrusted(_)) | Err(Failure::Unreachable(_)) => Ok(None),
        Err(Failure::Answer(e)) => Err(e.into()),
    }
}

/// The addresses of `h` from the operating system (hosts file, resolver).
async fn system_addresses(h: &HostPort) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = h.host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, h.port)]);
    }
    match tokio::net::lookup_host((h.host.as_str(), h.port)).await {
        Ok(a) => Ok(a.collect()),
        Err(e) => Err(format!("cannot resolve: {e}")),
    }
}

/// Parses the host's JSON answer; a refusal becomes [`AgentError::HostRefused`].
fn parse_reply(host: &HostPort, resp: &Response, product: &str) -> Result<Reply, AgentError> {
    let reply: Reply = match serde_json::from_slice(&resp.body) {
        Ok(r) => r,
        Err(_) if !(200..300).contains(&resp.status) => {
            return Err(bad(host, &format!("HTTP status {} without a protocol answer", resp.status)))
        }
        Err(e) => return Err(bad(host, &format!("not a JSON answer ({e})"))),
    };
    if reply.status == "refused" && reply.error.as_deref() == Some("tls_required") {
        return Err(AgentError::TlsMismatch { host: host.to_string(), host_requires_tls: true, detail: String::new() });
    }
    if reply.status == "refused" {
        return Err(AgentError::HostRefused {
            host: host.to_string(),
            code: one_line(reply.error.as_deref().unwrap_or("unknown"), 40),
            message: one_line(reply.message.as_deref().unwrap_or(""), 200),
        });
    }
    if !(200..300).contains(&resp.status) {
        return Err(bad(host, &format!("HTTP status {} with status {:?}", resp.status, reply.status)));
    }
    if let Some(p) = &reply.product {
        if p != product {
            return Err(bad(host, &format!("an answer for product {:?}, not {product:?}", one_line(p, 64))));
        }
    }
    Ok(reply)
}

fn count_of(host: &HostPort, reply: &Reply) -> Result<Count, AgentError> {
    match (reply.count, reply.threshold) {
        (Some(count), Some(threshold)) => Ok(Count { count, threshold }),
        _ => Err(bad(host, &format!("status {:?} without count and threshold", reply.status))),
    }
}

/// `s` cut to `max` characters, without control characters (a host's
/// text never breaks the one-line error).
fn one_line(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// Verifies and installs `token` as any token is, after making sure it is
/// for the product asked for. A compact token (no `x5c`) whose signer the
/// store does not know yet is installed with the host's chain
/// (`GET /v1/chain` from `addr`), which the store keeps only when the
/// token verifies.
#[allow(clippy::too_many_arguments)]
async fn install(
    store: &Store,
    identify: IdentifyFn<'_>,
    cfg: &AgentConfig,
    tls: Option<&tokio_rustls::TlsConnector>,
    host: &HostPort,
    addr: SocketAddr,
    token: &str,
    now: i64,
) -> Result<VerifiedToken> {
    let token = token.trim();
    let (jws, claims) = decode_unverified(token).map_err(|e| bad(host, &format!("the token: {e}")))?;
    if claims.aud != cfg.product {
        return Err(
            bad(host, &format!("a token for product {:?}, not {:?}", one_line(&claims.aud, 64), cfg.product)).into()
        );
    }
    let known = |kid: &str| -> Result<bool> { Ok(store.certificates()?.iter().any(|c| sha256_hex(c) == kid)) };
    let chain = match &jws.kid {
        Some(kid) if jws.x5c.is_empty() && !known(kid)? => fetch_chain(host, addr, cfg.timeouts, tls).await?,
        _ => Vec::new(),
    };
    activate_with_chain(store, token, &chain, identify, &cfg.pinned_roots, now, DEFAULT_CLOCK_TOLERANCE_SECS)
}

/// The host's certificate chain (`GET /v1/chain`, PEM).
async fn fetch_chain(
    host: &HostPort,
    addr: SocketAddr,
    timeouts: Timeouts,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Vec<Vec<u8>>> {
    let resp = match exchange(addr, &host.to_string(), "GET", "/v1/chain", None, timeouts, tls).await {
        Ok(r) => r,
        Err(Failure::Unreachable(why)) => return Err(AgentError::NoHostReachable { tried: vec![why] }.into()),
        Err(Failure::Answer(e) | Failure::Untrusted(e)) => return Err(e.into()),
    };
    if resp.status != 200 {
        return Err(bad(host, &format!("HTTP status {} for the certificate chain", resp.status)).into());
    }
    let text = std::str::from_utf8(&resp.body).map_err(|_| bad(host, "the certificate chain is not PEM text"))?;
    let chain = pem::decode_all(text, "CERTIFICATE").map_err(|e| bad(host, &format!("the certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(bad(host, "the certificate chain holds no certificate").into());
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_names_ipv4_and_bracketed_ipv6() {
        assert_eq!(HostPort::parse("kms.example:4430").unwrap(), HostPort { host: "kms.example".into(), port: 4430 });
        assert_eq!(HostPort::parse("[::1]:80").unwrap().to_string(), "[::1]:80");
        for bad in ["kms.example", "::1:80", ":80", "h:0", "h:99999", "h:x"] {
            assert_eq!(HostPort::parse(bad), Err(AgentError::BadAddress { what: "host", value: bad.into() }), "{bad}");
        }
    }

    #[test]
    fn count_reads_n_of_t() {
        assert_eq!(Count { count: 1, threshold: 3 }.to_string(), "count: 1 of 3");
    }
}
