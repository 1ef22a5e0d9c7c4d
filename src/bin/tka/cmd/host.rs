//! `tka host`: an activation host's delegated signer certificate: the
//! host's key and request (`init`), the issuer's certificate for it
//! (`certify`), and its installation (`install`); the host itself
//! (`serve`) and its counters (`status`).

use crate::args::{HomeArg, PassArgs};
use crate::io::{write_file, LazyPass};
use crate::output::say;
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use tka::issuer::host::{self, CertifyOptions, HostDir, HostInitOptions};
use tka::keys::Passphrase;
use tka::pki::{pem, CertInfo, Delegation};
use tka::{clock, Error, Result};

#[derive(Subcommand, Debug)]
pub enum HostCmd {
    /// Make the host's key and its host request (PKCS#10) in a new host directory
    #[command(
        after_help = "The key file (HOSTDIR/host.key, 0600) is unencrypted unless --passphrase-file is given: a host\n\
restarts unattended, like an SSH host key; --pkcs11 keeps the key on a token instead. An existing host key\n\
is never replaced. Prints `request: PATH`, the file to give the issuer.\n\n\
EXAMPLES:\n  tka host init --dir /var/lib/tka-host\n  tka host init --dir /var/lib/tka-host --subject \"CN=kms1.example.lan\" \
--pkcs11 'pkcs11:token=host;object=tka-host?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:pin.txt'"
    )]
    Init {
        /// Host directory (created; must not hold a host key yet)
        #[arg(long, value_name = "HOSTDIR")]
        dir: PathBuf,
        /// Generate the key on this PKCS#11 token (label: the URI's object, default "tka-host")
        #[arg(long, value_name = "URI")]
        pkcs11: Option<String>,
        /// Subject of the host request, RFC 4514
        #[arg(long, default_value = "CN=tka activation host")]
        subject: String,
        /// Key size
        #[arg(long, default_value_t = 2048, value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["2048", "3072", "4096"]), |s| s.parse::<usize>().unwrap()))]
        bits: usize,
        /// Encrypt the key file with the passphrase on the first line of FILE (the host then needs it to start)
        #[arg(long, value_name = "FILE", conflicts_with = "pkcs11")]
        passphrase_file: Option<PathBuf>,
        /// Accept a passphrase or PIN file that group or others can read
        #[arg(long)]
        insecure_key_permissions: bool,
    },
    /// Issue a host's delegated token-signer certificate from the issuer home's issuing CA
    #[command(
        after_help = "The certificate carries the tka delegation extension (critical): the products the host may\n\
sign for and the longest token lifetime; every machine refuses a token outside it. --seats records a cap\n\
on the machines the host activates (the host enforces it). --out gets the host certificate, then the\n\
issuing CA (no root).\n\n\
EXAMPLE:\n  tka host certify --home ~/tka-issuer --request host.csr --products acme,acme-cad --max-lifetime 180d --days 365 --out host.pem"
    )]
    Certify {
        #[command(flatten)]
        home: HomeArg,
        /// The host request (PKCS#10, from `tka host init`); `-` for standard input
        #[arg(long, value_name = "HOSTREQ")]
        request: PathBuf,
        /// Products the host may sign tokens for, comma-separated
        #[arg(long, value_delimiter = ',', required = true)]
        products: Vec<String>,
        /// Longest token lifetime the host may sign: 90m, 12h, 180d, 2w, 3600s
        #[arg(long, value_name = "DURATION", value_parser = crate::args::token_duration)]
        max_lifetime: u64,
        /// Certificate lifetime in days (not past the issuing CA's)
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Cap on the machines the host activates at once (recorded in the certificate)
        #[arg(long, value_name = "N")]
        seats: Option<u32>,
        /// Output certificate chain (PEM); `-` for standard output
        #[arg(long, value_name = "HOSTCERT")]
        out: PathBuf,
        /// Replace an existing --out file
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Install the host's certificate (from `tka host certify`) in its host directory
    #[command(
        after_help = "Checks that the certificate is a delegated token signer for this host's key, then writes\n\
HOSTDIR/chain.pem.\n\nEXAMPLE:\n  tka host install host.pem --dir /var/lib/tka-host"
    )]
    Install {
        /// The certificate chain file (PEM)
        #[arg(value_name = "HOSTCERT")]
        cert: PathBuf,
        /// Host directory
        #[arg(long, value_name = "HOSTDIR")]
        dir: PathBuf,
    },
    /// Run the activation host: count machines per product, activate them at the threshold
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Show the host's counters per product (reads HOSTDIR/state.sqlite or --ledger URL, never creates it)
    #[command(
        after_help = "Per product: the count (machines seen within the aging window), the threshold, the cache\n\
size (twice the largest threshold ever configured, never shrinking), when the oldest and newest machines\n\
were last seen and when the next one ages out. With --ledger postgres://... (or TKA_LEDGER_URL) the counters\n\
of the state the site's hosts share in PostgreSQL.\n\n\
EXAMPLES:\n  tka host status --dir /var/lib/tka-host\n  tka host status --dir /var/lib/tka-host --json\n  \
tka host status --dir /var/lib/tka-host --ledger postgres://tka_host@db.example.lan/tka"
    )]
    Status {
        /// Host directory
        #[arg(long, value_name = "HOSTDIR")]
        dir: PathBuf,
        #[command(flatten)]
        state: HostStateArg,
        /// JSON output: an array with one object per product
        #[arg(long)]
        json: bool,
    },
}

const SERVE_HELP: &str = "Serves POST /v1/activate, POST /v1/return, GET /v1/chain and GET /v1/health over HTTP/1.1\n\
(docs/host.md). A machine is activated once the count of distinct machines seen for its product within\n\
--aging reaches the product's --threshold (default 5 for each delegated product); below it, it is told to\n\
retry after --retry-after. Tokens are valid --valid-for (default 180d, never above the delegation's longest\n\
lifetime) and say to renew after --renew-after. The state is HOSTDIR/state.sqlite, or with --ledger\n\
postgres://... (or TKA_LEDGER_URL) a PostgreSQL database that several hosts of a site share, counting\n\
together; every answer follows its commit, so a host killed at any moment restarts with exact counts. Logs go to standard error, one line per\n\
request, with a hash of the machine id, never the id. SIGTERM or SIGINT: requests in flight finish, exit 0.\n\n\
EXAMPLES:\n  tka host serve --dir /var/lib/tka-host --listen 0.0.0.0:7410 --listen [::]:7410 --threshold acme=25\n  \
tka host serve --dir /var/lib/tka-host --listen 127.0.0.1:7410 --threshold acme=3 --threshold acme-cad=5\n  \
tka host serve --dir /var/lib/tka-host --threshold acme=25 --ledger postgres://tka_host@db.example.lan/tka";

/// `--ledger URL` of `host serve` and `host status`: the host's state in
/// PostgreSQL instead of HOSTDIR/state.sqlite.
#[derive(clap::Args, Debug, Clone)]
pub struct HostStateArg {
    /// Keep the state in PostgreSQL, shared by the site's hosts: postgres://USER[:PASSWORD]@HOST[:PORT]/DB
    /// (also TKA_LEDGER_URL) [default: HOSTDIR/state.sqlite]
    #[arg(long = "ledger", env = "TKA_LEDGER_URL", value_name = "URL")]
    ledger: Option<String>,
}

impl HostStateArg {
    /// The PostgreSQL URL, if one is given; anything else is a usage error.
    fn url(&self) -> Result<Option<String>> {
        match self.ledger.as_deref() {
            None => Ok(None),
            Some(u) => match tka::ledger::LedgerLocation::parse(u) {
                tka::ledger::LedgerLocation::Postgres(u) => Ok(Some(u)),
                tka::ledger::LedgerLocation::File(_) => Err(Error::Usage(format!(
                    "--ledger {u:?} (or TKA_LEDGER_URL): a host keeps its state in HOSTDIR/state.sqlite or in \
                     PostgreSQL; give a postgres:// URL or neither"
                ))),
            },
        }
    }
}

/// `tka host serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Host directory (installed with `tka host install`)
    #[arg(long, value_name = "HOSTDIR")]
    dir: PathBuf,
    /// Address to listen on, IPv4 or IPv6 (repeatable)
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:7410")]
    listen: Vec<std::net::SocketAddr>,
    /// Threshold of a delegated product (repeatable; products not named get 5)
    #[arg(long, value_name = "PRODUCT=N", value_parser = threshold)]
    threshold: Vec<(String, u32)>,
    /// Token validity [default: 180d, or the delegation's longest lifetime if shorter]
    #[arg(long, value_name = "DURATION", value_parser = crate::args::token_duration)]
    valid_for: Option<u64>,
    /// When machines renew, after issuance
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = crate::args::token_duration)]
    renew_after: u64,
    /// When machines below the threshold retry
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = crate::args::token_duration)]
    retry_after: u64,
    /// Aging window: a machine not seen for this long no longer counts
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = crate::args::token_duration)]
    aging: u64,
    /// Largest request body, bytes
    #[arg(long, value_name = "BYTES", default_value_t = tka::issuer::host::server::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Requests per minute per client address (0: no limit)
    #[arg(long = "rate", value_name = "PER_MIN", default_value_t = tka::issuer::host::server::DEFAULT_RATE_PER_MIN)]
    rate: u32,
    /// Time a client has to send its request headers, and its body
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::args::token_duration)]
    read_timeout: u64,
    /// A request older than this (or dated this far ahead) is refused as replayed
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = crate::args::token_duration)]
    max_request_age: u64,
    /// Serve HTTPS on every --listen: TLS with the host's own certificate chain and key
    /// (agents check it against their trusted roots, not as a web certificate)
    #[arg(long)]
    tls: bool,
    #[command(flatten)]
    state: HostStateArg,
    #[command(flatten)]
    pass: PassArgs,
}

fn threshold(s: &str) -> std::result::Result<(String, u32), String> {
    let (p, n) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected PRODUCT=N, e.g. acme=25"))?;
    let n: u32 = n.parse().map_err(|_| format!("{s:?}: the threshold must be a whole number"))?;
    if n == 0 {
        return Err(format!("{s:?}: the threshold must be at least 1"));
    }
    Ok((p.to_string(), n))
}

pub fn run(cmd: HostCmd) -> Result<ExitCode> {
    match cmd {
        HostCmd::Init { dir, pkcs11, subject, bits, passphrase_file, insecure_key_permissions } => {
            let pkcs11 = pkcs11.as_deref().map(tka::pkcs11::Pkcs11Uri::parse).transpose()?;
            let passphrase =
                passphrase_file.map(|f| Passphrase::from_file(&f, insecure_key_permissions)).transpose()?;
            let opts = HostInitOptions { subject, bits, pkcs11 };
            let unlock = LazyPass::for_new_keys(passphrase, insecure_key_permissions);
            let h = unlock.retry(|u| HostDir::init(&dir, &opts, u, clock::now()))?;
            say(format!("dir: {}", h.dir().display()));
            say(format!("key: {}", h.key_ref()?));
            say(format!("request: {}", h.request_path().display()));
            Ok(ExitCode::SUCCESS)
        }
        HostCmd::Certify { home, request, products, max_lifetime, days, seats, out, force, pass } => {
            crate::io::check_new_out(&out, force)?;
            let home = home.open()?;
            let bytes = if crate::io::is_stdio(&request) {
                crate::io::read_bytes_arg(&request, host::MAX_HOST_REQUEST, "host request")?
            } else {
                tka::fsutil::read_file(&request, host::MAX_HOST_REQUEST as u64)?
            };
            let req = host::read_host_request(&bytes)?;
            let opts =
                CertifyOptions { delegation: Delegation { products, max_lifetime_secs: max_lifetime, seats }, days };
            let unlock = LazyPass::new(&pass);
            let chain = unlock.retry(|u| host::certify(&home, &req, &opts, u, clock::now()))?;
            let text: String = chain.iter().map(|d| pem::encode("CERTIFICATE", d)).collect();
            write_file(&out, &text, force)?;
            let cert = CertInfo::parse(&chain[0])?;
            say(format!("certificate: {}", out.display()));
            say(format!("subject: {}", cert.subject));
            say(format!("serial: {}", cert.serial_hex));
            say(format!("fingerprint: {}", cert.fingerprint));
            say(format!("expires: {}", clock::rfc3339(cert.not_after)));
            say(format!("delegation: {}", opts.delegation));
            Ok(ExitCode::SUCCESS)
        }
        HostCmd::Install { cert, dir } => {
            let mut h = HostDir::open(&dir)?;
            let installed = h.install(&cert)?;
            say(format!("chain: {}", h.chain_path().display()));
            say(format!("subject: {}", installed.subject));
            say(format!("fingerprint: {}", installed.fingerprint));
            say(format!("expires: {}", installed.not_after));
            say(format!("delegation: {}", installed.delegation));
            Ok(ExitCode::SUCCESS)
        }
        HostCmd::Serve(args) => serve(args),
        HostCmd::Status { dir, state, json } => status(&dir, &state, json),
    }
}

fn serve(a: ServeArgs) -> Result<ExitCode> {
    use tka::issuer::host::server::{self, ServeConfig};
    use tka::issuer::host::state::{HostState, ProductConfig, SqliteState, HOST_STATE_FILE};
    let url = a.state.url()?;
    let h = HostDir::open(&a.dir)?;
    let delegation = h.delegation()?;
    for (p, _) in &a.threshold {
        if !delegation.products.contains(p) {
            return Err(Error::Usage(format!(
                "--threshold {p}=...: product {p:?} is not delegated to this host (delegated: {})",
                delegation.products.join(", ")
            )));
        }
    }
    let products = delegation
        .products
        .iter()
        .map(|p| ProductConfig {
            product: p.clone(),
            threshold: a.threshold.iter().rev().find(|(q, _)| q == p).map_or(server::DEFAULT_THRESHOLD, |(_, n)| *n),
            seats: delegation.seats,
        })
        .collect();
    let unlock = LazyPass::new(&a.pass);
    let signer = unlock.retry(|u| h.token_signer(u))?;
    let chain_pem: String = h.chain()?.iter().map(|d| pem::encode("CERTIFICATE", d)).collect();
    let state_path = a.dir.join(HOST_STATE_FILE);
    let open_state: server::OpenState = match url {
        Some(url) => {
            Box::new(move || Ok(Box::new(tka::issuer::host::pg_state::PgState::open(&url)?) as Box<dyn HostState>))
        }
        None => Box::new(move || Ok(Box::new(SqliteState::open(&state_path)?) as Box<dyn HostState>)),
    };
    let signer = std::sync::Arc::new(signer);
    let tls = if a.tls { Some(tka::issuer::host::tls::server_config(signer.clone())?) } else { None };
    let mut config = ServeConfig::new(signer, chain_pem, products, open_state);
    config.tls = tls;
    config.max_lifetime_secs = Some(delegation.max_lifetime_secs);
    config.valid_for_secs = a.valid_for.unwrap_or(server::DEFAULT_VALID_FOR_SECS.min(delegation.max_lifetime_secs));
    config.renew_after_secs = a.renew_after;
    config.retry_after_secs = a.retry_after;
    config.aging_secs = i64::try_from(a.aging).unwrap_or(i64::MAX);
    config.max_body = a.max_body;
    config.rate_per_min = a.rate;
    config.read_timeout = std::time::Duration::from_secs(a.read_timeout.max(1));
    config.max_request_age_secs = i64::try_from(a.max_request_age).unwrap_or(i64::MAX);
    config.check().map_err(|e| match e {
        Error::InvalidLifetime { what: "token lifetime", detail } => {
            Error::Usage(format!("--valid-for: {detail} (the host certificate's --max-lifetime)"))
        }
        e => e,
    })?;
    run_server(&a.listen, |listeners| server::serve(listeners, config, shutdown_signal()))
}

/// Logs to standard error, starts a server runtime, listens on `listen`
/// (printing `listening: ADDR` for each) and runs `serve` on the listeners
/// until it returns: `tka host serve` and `tka serve`.
pub(crate) fn run_server<F>(
    listen: &[std::net::SocketAddr],
    serve: impl FnOnce(Vec<tokio::net::TcpListener>) -> F,
) -> Result<ExitCode>
where
    F: std::future::Future<Output = Result<()>>,
{
    let log = LogBuffer::start().map_err(|e| Error::Usage(format!("cannot start the log writer: {e}")))?;
    let _flush_at_exit = FlushAtExit(log);
    let _ = tracing_subscriber::fmt().with_writer(log).with_target(false).try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the server runtime: {e}")))?;
    rt.block_on(async move {
        let mut listeners = Vec::new();
        for addr in listen {
            let l = tka::issuer::host::server::bind(*addr).map_err(|e| Error::Io {
                path: addr.to_string().into(),
                source: std::io::Error::new(e.kind(), format!("cannot listen: {e}")),
            })?;
            say(format!("listening: {}", l.local_addr().map_or_else(|_| addr.to_string(), |a| a.to_string())));
            listeners.push(l);
        }
        serve(listeners).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The servers' log: each line is appended to a buffer in memory, and a
/// thread writes the buffer to standard error at most [`LOG_FLUSH`] after
/// a line arrived (and at exit): one write for many requests, and a
/// request never waits for standard error. Beyond [`LOG_MAX`] buffered
/// bytes (standard error blocked), lines are dropped and the next write
/// says how many.
#[derive(Clone, Copy)]
struct LogBuffer(&'static LogShared);

struct LogShared {
    state: std::sync::Mutex<LogState>,
    arrived: std::sync::Condvar,
}

#[derive(Default)]
struct LogState {
    buf: Vec<u8>,
    dropped: u64,
}

/// Longest a log line waits in memory.
const LOG_FLUSH: std::time::Duration = std::time::Duration::from_millis(5);
/// Most log bytes kept in memory.
const LOG_MAX: usize = 4 << 20;

impl LogBuffer {
    /// The buffer and its writing thread (which lives as long as the process).
    fn start() -> std::io::Result<LogBuffer> {
        let shared: &'static LogShared = Box::leak(Box::new(LogShared {
            state: std::sync::Mutex::new(LogState::default()),
            arrived: std::sync::Condvar::new(),
        }));
        let log = LogBuffer(shared);
        std::thread::Builder::new().name("tka-log".into()).spawn(move || loop {
            {
                let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                while st.buf.is_empty() && st.dropped == 0 {
                    st = shared.arrived.wait(st).unwrap_or_else(|p| p.into_inner());
                }
            }
            std::thread::sleep(LOG_FLUSH);
            log.flush();
        })?;
        Ok(log)
    }

    /// Writes what is buffered to standard error.
    fn flush(&self) {
        let (buf, dropped) = {
            let mut st = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
            (std::mem::take(&mut st.buf), std::mem::take(&mut st.dropped))
        };
        let mut err = std::io::stderr().lock();
        if dropped > 0 {
            let _ = writeln!(err, "log: {dropped} lines dropped (standard error did not keep up)");
        }
        let _ = err.write_all(&buf);
        let _ = err.flush();
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut st = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.buf.len() + line.len() > LOG_MAX {
            st.dropped += 1;
        } else {
            if st.buf.is_empty() && st.dropped == 0 {
                self.0.arrived.notify_one();
            }
            st.buf.extend_from_slice(line);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl tracing_subscriber::fmt::MakeWriter<'_> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&self) -> LogBuffer {
        *self
    }
}

/// Writes the log buffer out when the server returns.
struct FlushAtExit(LogBuffer);

impl Drop for FlushAtExit {
    fn drop(&mut self) {
        self.0.flush();
    }
}

/// SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = ctrl_c => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

fn status(dir: &std::path::Path, state: &HostStateArg, json: bool) -> Result<ExitCode> {
    use tka::issuer::host::state::{HostState, SqliteState, HOST_STATE_FILE};
    let mut state: Box<dyn HostState> = match state.url()? {
        Some(url) => Box::new(tka::issuer::host::pg_state::PgState::open_existing(&url)?),
        None => Box::new(SqliteState::open_read_only(&dir.join(HOST_STATE_FILE))?),
    };
    let rows = state.status(clock::now())?;
    let time = |t: Option<i64>| t.map(clock::rfc3339);
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "product": r.product, "count": r.count, "threshold": r.threshold, "cache_size": r.cache_size,
                    "seats": r.seats, "oldest_last_seen": time(r.oldest_last_seen),
                    "newest_last_seen": time(r.newest_last_seen), "next_aging": time(r.next_aging),
                })
            })
            .collect();
        crate::output::say_json(&serde_json::Value::Array(v));
        return Ok(ExitCode::SUCCESS);
    }
    let never = || "-".to_string();
    for r in &rows {
        say(format!("product: {}", r.product));
        say(format!("  count: {} of {}", r.count, r.threshold));
        say(format!("  cache size: {}", r.cache_size));
        if let Some(s) = r.seats {
            say(format!("  seats: {s}"));
        }
        say(format!("  oldest last seen: {}", time(r.oldest_last_seen).unwrap_or_else(never)));
        say(format!("  newest last seen: {}", time(r.newest_last_seen).unwrap_or_else(never)));
        say(format!("  next ages out: {}", time(r.next_aging).unwrap_or_else(never)));
    }
    Ok(ExitCode::SUCCESS)
}
