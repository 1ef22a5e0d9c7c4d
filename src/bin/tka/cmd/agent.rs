//! `tka agent`: the machine side of an activation host on the LAN: one
//! round (`once`), the service loop (`run`), an early return (`return`).

use crate::args::{MachineArgs, RootPinArgs, StoreArgs};
use crate::io::{identify, open_store};
use crate::output::{say, say_err};
use clap::{Args, Subcommand};
use std::process::ExitCode;
use tka::activation::agent::discover::{parse_dns_server, DnsServer};
use tka::activation::agent::schedule::Schedule;
use tka::activation::agent::{self, AgentConfig, HostPort, Locate, RoundOutcome, RunEnv};
use tka::{clock, Error, Result};

#[derive(Subcommand, Debug)]
pub enum AgentCmd {
    /// One round: find a host, send this machine's request, install the token if activated
    #[command(
        after_help = "EXAMPLES:\n  tka agent once --product acme --host kms1.example.lan:4430\n  tka agent once --product acme --host https://kms1.example.lan:4430\n  tka agent once --product acme --domain example.lan --tls\n  tka agent once --product acme --domain example.lan\n  tka agent once --product acme --domain example.lan --dns 10.0.0.53:53"
    )]
    Once(AgentArgs),
    /// Run as a service: renew when the token is due, retry every 2 hours while not activated
    /// (jitter ±10 %); one log line per round on standard error; ends on SIGTERM
    #[command(after_help = "EXAMPLES:\n  tka agent run --product acme --domain example.lan")]
    Run(AgentArgs),
    /// Give the activation back to the host early and remove the local token
    #[command(after_help = "EXAMPLES:\n  tka agent return --product acme --domain example.lan")]
    Return(AgentArgs),
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The product
    #[arg(long)]
    pub product: String,
    /// The activation host, HOST:PORT or https://HOST:PORT (TLS) (no DNS discovery)
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host, required_unless_present = "domain")]
    pub host: Option<(HostPort, Option<bool>)>,
    /// Speak TLS to the host (also to hosts found through DNS): its certificate must be a token
    /// signer's for the product under this machine's trusted roots
    #[arg(long)]
    pub tls: bool,
    /// Find hosts through the DNS SRV records _tka._tcp.DOMAIN (the host that answered last first)
    #[arg(long, conflicts_with = "host")]
    pub domain: Option<String>,
    /// Ask this DNS server (UDP, TCP fallback) instead of the system's resolvers
    #[arg(long, value_name = "IP:PORT", value_parser = parse_dns, requires = "domain")]
    pub dns: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub pins: RootPinArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub machine: MachineArgs,
}

fn parse_host(s: &str) -> std::result::Result<(HostPort, Option<bool>), String> {
    HostPort::parse_url(s).map_err(|e| e.to_string())
}

fn parse_dns(s: &str) -> std::result::Result<std::net::SocketAddr, String> {
    parse_dns_server(s).map_err(|e| e.to_string())
}

impl AgentArgs {
    fn config(&self) -> Result<AgentConfig> {
        let scheme = self.host.as_ref().and_then(|(_, tls)| *tls);
        if self.tls && scheme == Some(false) {
            return Err(Error::Usage("--tls contradicts an http:// --host: use https:// or drop --tls".into()));
        }
        let locate = match (&self.host, &self.domain) {
            (Some((h, _)), _) => Locate::Host(h.clone()),
            (None, Some(d)) => {
                Locate::Domain { domain: d.clone(), dns: self.dns.map(DnsServer::At).unwrap_or(DnsServer::System) }
            }
            (None, None) => unreachable!("clap requires --host or --domain"),
        };
        Ok(AgentConfig {
            product: self.product.clone(),
            locate,
            timeouts: Default::default(),
            pinned_roots: self.pins.root_fingerprints.clone(),
            tls: self.tls || scheme == Some(true),
        })
    }
}

pub fn run(cmd: AgentCmd) -> Result<ExitCode> {
    match cmd {
        AgentCmd::Once(a) => once(a),
        AgentCmd::Run(a) => service(a),
        AgentCmd::Return(a) => give_back(a),
    }
}

fn once(args: AgentArgs) -> Result<ExitCode> {
    let store = open_store(&args.store)?;
    let id = identify(&args.product, &args.machine)?;
    let ident = move |_: &str| Ok(id.clone());
    match agent::once(&store, &ident, &args.config()?, clock::now())? {
        RoundOutcome::Activated { count, verified, .. } => {
            say(format!("activated: {} ({count})", verified.claims.aud));
            Ok(ExitCode::SUCCESS)
        }
        RoundOutcome::Pending { count, .. } => {
            say(count.to_string());
            Ok(crate::outcome::no())
        }
    }
}

fn give_back(args: AgentArgs) -> Result<ExitCode> {
    let store = open_store(&args.store)?;
    let id = identify(&args.product, &args.machine)?;
    let ident = move |_: &str| Ok(id.clone());
    let r = agent::give_back(&store, &ident, &args.config()?, clock::now())?;
    let local = if r.dropped { "local token removed" } else { "no local token" };
    say(format!("returned: {} ({}; {local})", args.product, r.count));
    Ok(ExitCode::SUCCESS)
}

fn service(args: AgentArgs) -> Result<ExitCode> {
    let store = open_store(&args.store)?;
    let id = identify(&args.product, &args.machine)?;
    let ident = move |_: &str| Ok(id.clone());
    let mut env = SystemEnv::new()?;
    agent::run(&store, &ident, &args.config()?, &Schedule::default(), &mut env)?;
    env.log("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The real clock, a sleep that SIGTERM and SIGINT end, standard error.
struct SystemEnv {
    rt: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl SystemEnv {
    fn new() -> Result<SystemEnv> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Usage(format!("cannot start the runtime: {e}")))?;
        let _guard = rt.enter();
        let sig = |k| signal(k).map_err(|e| Error::Usage(format!("cannot handle signals: {e}")));
        let (term, int) = (sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
        drop(_guard);
        Ok(SystemEnv { rt, term, int })
    }
}

impl RunEnv for SystemEnv {
    fn now(&mut self) -> i64 {
        clock::now()
    }

    fn sleep_until(&mut self, when: i64) -> bool {
        // In steps of at most an hour, reading the clock again after each:
        // a suspended machine or a corrected clock is noticed.
        loop {
            let left = when - clock::now();
            if left <= 0 {
                return true;
            }
            let step = std::time::Duration::from_secs(left.min(3600) as u64);
            let (term, int) = (&mut self.term, &mut self.int);
            let slept = self.rt.block_on(async {
                tokio::select! {
                    _ = tokio::time::sleep(step) => true,
                    _ = term.recv() => false,
                    _ = int.recv() => false,
                }
            });
            if !slept {
                return false;
            }
        }
    }

    fn log(&mut self, line: &str) {
        say_err(format!("tka agent: {line}"));
    }
}
