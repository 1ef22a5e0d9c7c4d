//! The activation agent's error type: what can go wrong talking to an
//! activation host (finding one, reaching one, understanding its answer).

use std::fmt;

/// Why an agent round with an activation host failed.
///
/// Each variant's `Display` is one line naming the host (or what was
/// tried) and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentError {
    /// No activation host answered. `tried` lists each address tried with
    /// why it failed (refused, timed out, ...), or what discovery found.
    NoHostReachable {
        /// What was tried, in order, each as `ADDRESS (why)`.
        tried: Vec<String>,
    },
    /// DNS discovery found no activation host.
    Discovery {
        /// The SRV name asked for (`_tka._tcp.DOMAIN`).
        name: String,
        /// The DNS server asked, or `system resolver`.
        server: String,
        /// What went wrong.
        detail: String,
    },
    /// A host address that is not `HOST:PORT`, or a DNS server that is not `IP:PORT`.
    BadAddress {
        /// What the address names (`host`, `DNS server`).
        what: &'static str,
        /// The address given.
        value: String,
    },
    /// The host answered, but not with the activation protocol.
    BadResponse {
        /// The host.
        host: String,
        /// What is wrong with the answer.
        detail: String,
    },
    /// The host's answer is larger than the agent reads.
    ResponseTooLarge {
        /// The host.
        host: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The host refused the request.
    HostRefused {
        /// The host.
        host: String,
        /// The host's error code (`unknown_product`, `rate_limited`, ...).
        code: String,
        /// The host's one-line message.
        message: String,
    },
    /// An online activation service refused the activation (`tka serve`).
    ServiceRefused {
        /// The service's URL.
        url: String,
        /// The service's error kind (`exhausted`, `unknown_key`, ...).
        kind: String,
        /// The service's one-line message.
        message: String,
    },
    /// The host's TLS certificate chain is not one this machine trusts for
    /// the product: tka's path validation to the store's roots failed, or
    /// a delegation in it does not include the product.
    UntrustedHost {
        /// The host.
        host: String,
        /// Why, as the path validation says it.
        detail: String,
    },
    /// The agent and the host disagree on TLS: `host_requires_tls` when the
    /// host accepts only TLS and the agent spoke plain HTTP, else the agent
    /// asked for TLS and the host does not answer with it.
    TlsMismatch {
        /// The host.
        host: String,
        /// Which side wants TLS.
        host_requires_tls: bool,
        /// What the handshake saw (empty when the host said it).
        detail: String,
    },
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::NoHostReachable { tried } => {
                write!(f, "no activation host reachable (tried {})", tried.join(", "))
            }
            AgentError::Discovery { name, server, detail } => {
                write!(f, "no activation host found: SRV {name} via {server}: {detail}")
            }
            AgentError::BadAddress { what, value } => {
                let form = if *what == "DNS server" { "IP:PORT" } else { "HOST:PORT" };
                write!(f, "{what} address {value:?} is not {form}")
            }
            AgentError::BadResponse { host, detail } => {
                write!(f, "activation host {host} sent an invalid answer: {detail}")
            }
            AgentError::ResponseTooLarge { host, limit } => {
                write!(f, "activation host {host} sent an answer larger than {limit} bytes; refused")
            }
            AgentError::HostRefused { host, code, message } => {
                write!(f, "activation host {host} refused the request ({code}): {message}")
            }
            AgentError::ServiceRefused { url, kind, message } => {
                write!(f, "the activation service {url} refused the activation ({kind}): {message}")
            }
            AgentError::UntrustedHost { host, detail } => {
                write!(f, "activation host {host} is not trusted: its TLS certificate: {detail}")
            }
            AgentError::TlsMismatch { host, host_requires_tls: true, .. } => {
                write!(f, "activation host {host} accepts only TLS connections")
            }
            AgentError::TlsMismatch { host, detail, .. } => {
                write!(f, "activation host {host} does not answer with TLS ({detail})")
            }
        }
    }
}

impl std::error::Error for AgentError {}
