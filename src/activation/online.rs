//! Online activation with a product key: this machine's request and the
//! key go to the vendor's activation service (`POST /v1/activate`), and
//! the token that comes back is verified and installed exactly as an
//! offline activation installs one ([`activate_with_chain`]): against the
//! store's trusted roots, never trusted because the service sent it.
//!
//! The key is checked ([`ProductKey::parse`]) by the caller before any
//! network call, so a typo never leaves the machine. Over `https://`, the
//! service's certificate is checked either as the activation agent checks
//! a host's (tka path validation to the store's roots for the product) or,
//! given CA certificates ([`OnlineOptions::ca_roots`]), as an ordinary web
//! certificate for the URL's host name.

use super::activate::activate_with_chain;
use super::agent::client::{exchange_as, Failure, Timeouts};
use super::agent::HostPort;
use super::store::Store;
use super::trust::{IdentifyFn, TrustData};
use crate::core::agent_error::AgentError;
use crate::core::error::{Error, Result};
use crate::core::pki::RootFingerprint;
use crate::core::product_key::ProductKey;
use crate::core::request::ActivationRequest;
use crate::core::verify::VerifiedToken;
use rustls::pki_types::ServerName;
use std::sync::Arc;

/// What an online activation needs besides the store and the machine.
#[derive(Debug, Clone)]
pub struct OnlineOptions {
    /// The service: `http://HOST:PORT` or `https://HOST:PORT`.
    pub url: String,
    /// The product to activate.
    pub product: String,
    /// The product key (already checked).
    pub key: ProductKey,
    /// Pinned roots, as in [`crate::activation::activate`].
    pub pinned_roots: Vec<RootFingerprint>,
    /// For `https://`: CA certificates (DER) to check the service's web
    /// certificate with; `None`: the store's roots, as the agent does.
    pub ca_roots: Option<Vec<Vec<u8>>>,
    /// How long to wait for the service.
    pub timeouts: Timeouts,
    /// The clock-rollback tolerance, seconds.
    pub clock_tolerance: i64,
}

/// The service's answer.
#[derive(serde::Deserialize)]
struct Reply {
    status: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Activates `opts.product` on this machine online: makes this machine's
/// request (`identify`, at `clock()`), sends it with the key, and installs
/// the token, verified at `clock()` once the answer is in (the service may
/// take a while under load; its token is not valid before it was signed). A refusal by the service is [`AgentError::ServiceRefused`] with
/// its kind and message; a service that cannot be reached is
/// [`AgentError::NoHostReachable`]; a token that does not verify is the
/// verification's error. The store is unchanged unless the token installs.
pub fn activate_online(
    store: &Store,
    identify: IdentifyFn<'_>,
    opts: &OnlineOptions,
    clock: &dyn Fn() -> i64,
) -> Result<VerifiedToken> {
    let now = clock();
    let (host, tls) = HostPort::parse_url(&opts.url)?;
    if tls.is_none() {
        return Err(AgentError::BadAddress { what: "service URL", value: opts.url.clone() }.into());
    }
    let identity = identify(&opts.product)?;
    let request = ActivationRequest::new(&identity, now, None).to_text()?;
    let body = serde_json::json!({ "request": request, "key": opts.key.to_string() }).to_string();
    let (connector, name) = match tls {
        Some(true) => {
            let (c, n) = connector(store, opts, &host, now)?;
            (Some(c), n)
        }
        _ => (None, super::agent::tls::server_name()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the network runtime: {e}")))?;
    let resp = rt.block_on(async {
        let addrs: Vec<std::net::SocketAddr> =
            match tokio::time::timeout(opts.timeouts.connect, tokio::net::lookup_host((host.host.as_str(), host.port)))
                .await
            {
                Ok(Ok(a)) => a.collect(),
                Ok(Err(e)) => return Err(AgentError::NoHostReachable { tried: vec![format!("{host} ({e})")] }),
                Err(_) => {
                    return Err(AgentError::NoHostReachable { tried: vec![format!("{host} (name lookup timed out)")] })
                }
            };
        let mut tried = Vec::new();
        for addr in addrs {
            let r = exchange_as(
                addr,
                &host.to_string(),
                name.clone(),
                "POST",
                "/v1/activate",
                Some(body.as_bytes()),
                opts.timeouts,
                connector.as_ref(),
            )
            .await;
            match r {
                Ok(resp) => return Ok(resp),
                Err(Failure::Unreachable(why)) => tried.push(why),
                Err(Failure::Answer(e) | Failure::Untrusted(e)) => return Err(e),
            }
        }
        Err(AgentError::NoHostReachable { tried })
    })?;
    let bad = |detail: String| AgentError::BadResponse { host: host.to_string(), detail };
    let reply: Reply = serde_json::from_slice(&resp.body)
        .map_err(|_| bad(format!("HTTP status {} with a body that is not the service's JSON", resp.status)))?;
    let one_line = |s: Option<String>, max: usize| -> String {
        s.unwrap_or_default().chars().filter(|c| !c.is_control()).take(max).collect()
    };
    match (resp.status, reply.status.as_str()) {
        (200, "activated") => {
            let token = reply.token.ok_or_else(|| bad("activated without a token".into()))?;
            let (_, claims) = crate::core::token::decode_unverified(token.trim())?;
            if claims.aud != opts.product {
                return Err(bad(format!(
                    "a token for product {:?}, not {:?}",
                    one_line(Some(claims.aud), 64),
                    opts.product
                ))
                .into());
            }
            activate_with_chain(store, &token, &[], identify, &opts.pinned_roots, clock(), opts.clock_tolerance)
        }
        (_, "refused") => Err(AgentError::ServiceRefused {
            url: opts.url.clone(),
            kind: one_line(reply.error, 40),
            message: one_line(reply.message, 400),
        }
        .into()),
        (status, other) => {
            Err(bad(format!("HTTP status {status}, status {:?}", one_line(Some(other.into()), 40))).into())
        }
    }
}

/// The TLS connector for `https://`, and the name it checks.
fn connector(
    store: &Store,
    opts: &OnlineOptions,
    host: &HostPort,
    now: i64,
) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>)> {
    let tls_err = |e: rustls::Error| Error::Usage(format!("cannot set up TLS: {e}"));
    match &opts.ca_roots {
        None => {
            let trust = TrustData::from_store(store)?;
            if trust.anchors.is_empty() {
                return Err(Error::NoTrustedRoot);
            }
            let config =
                super::agent::tls::client_config(&trust, &opts.pinned_roots, &opts.product, now).map_err(tls_err)?;
            Ok((tokio_rustls::TlsConnector::from(config), super::agent::tls::server_name()))
        }
        Some(cas) => {
            let mut roots = rustls::RootCertStore::empty();
            for der in cas {
                roots
                    .add(rustls::pki_types::CertificateDer::from(der.clone()))
                    .map_err(|e| Error::format("CA certificate", e))?;
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(tls_err)?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from(host.host.clone())
                .map_err(|_| AgentError::BadAddress { what: "service URL", value: opts.url.clone() })?;
            Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        }
    }
}
