//! `tka serve`: online activation with product keys from an issuer home.

use crate::args::{HomeArg, LedgerLocationArg, PassArgs};
use crate::io::LazyPass;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tka::issuer::online::{self, OnlineConfig};
use tka::Result;

pub const SERVE_HELP: &str =
    "Serves POST /v1/activate and GET /v1/health over HTTP/1.1 (docs/online.md). A machine sends\n\
its activation request and the product key of an entitlement (`tka entitlement add --key`); it gets a\n\
full token counted against that entitlement exactly as `tka token issue --entitlement` counts it: a\n\
machine already counted is re-issued free, a new one beyond the count is refused (exhausted). Tokens\n\
last the home's token lifetime, never past the entitlement's expiry. Refusals are JSON with an error\n\
kind (unknown_key, disabled_key, wrong_product, exhausted, rate_limited, ...). Keys are never logged\n\
(a log line shows 8 hex digits of the key's hash). Several services may share one PostgreSQL ledger\n\
(--ledger postgres://...). SIGTERM or SIGINT: requests in flight finish, exit 0.\n\n\
EXAMPLES:\n  tka serve --home ~/tka-issuer --listen 127.0.0.1:7420\n  \
tka serve --home /srv/tka --ledger postgres://tka@db/tka --listen 0.0.0.0:443 --tls-cert web.pem --tls-key web.key";

/// `tka serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    home: HomeArg,
    #[command(flatten)]
    ledger: LedgerLocationArg,
    /// Address to listen on, IPv4 or IPv6 (repeatable)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7420")]
    listen: Vec<std::net::SocketAddr>,
    /// Serve HTTPS with this certificate chain (PEM, server certificate first)
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM, not encrypted)
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Token lifetime in days [default: the home's setting]
    #[arg(long)]
    days: Option<u32>,
    /// Largest request body, bytes
    #[arg(long, value_name = "BYTES", default_value_t = online::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Requests per minute per client address (0: no limit)
    #[arg(long, value_name = "PER_MIN", default_value_t = online::DEFAULT_RATE_PER_ADDRESS)]
    rate_per_address: u32,
    /// Requests per minute per product key (0: no limit)
    #[arg(long, value_name = "PER_MIN", default_value_t = online::DEFAULT_RATE_PER_KEY)]
    rate_per_key: u32,
    /// Time a client has to send its request headers, and its body
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::args::token_duration)]
    read_timeout: u64,
    /// Most activations signed and recorded at once
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    #[command(flatten)]
    pass: PassArgs,
}

pub fn run(a: ServeArgs) -> Result<ExitCode> {
    let home = a.home.open()?;
    let location = a.ledger.location(Some(home.dir())).expect("a home gives a ledger");
    let unlock = LazyPass::new(&a.pass);
    let signer = Arc::new(unlock.retry(|u| home.token_signer(u))?);
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => {
            let cert = tka::fsutil::read_file(c, 1 << 20)?;
            let key = tka::fsutil::read_file(k, 1 << 20)?;
            Some(online::pem_tls_config(&cert, &key)?)
        }
        _ => None,
    };
    let mut config = OnlineConfig::new(signer, location, a.days.unwrap_or(home.config.token_days));
    config.tls = tls;
    config.max_body = a.max_body;
    config.rate_per_address = a.rate_per_address;
    config.rate_per_key = a.rate_per_key;
    config.read_timeout = std::time::Duration::from_secs(a.read_timeout.max(1));
    if let Some(w) = a.workers {
        config.max_workers = w;
    }
    super::host::run_server(&a.listen, |listeners| online::serve(listeners, config, super::host::shutdown_signal()))
}
