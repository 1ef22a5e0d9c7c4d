//! Finding an activation host: DNS SRV records `_tka._tcp.DOMAIN`
//! (RFC 2782) and the order in which their targets are tried.

use crate::core::agent_error::AgentError;
use std::net::SocketAddr;

/// The SRV service name of activation hosts, without the domain.
pub const SRV_PREFIX: &str = "_tka._tcp";

/// One SRV record: a host offering the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    /// Lower is tried first.
    pub priority: u16,
    /// Relative share among targets of the same priority (0: only when no other is left, mostly).
    pub weight: u16,
    /// TCP port.
    pub port: u16,
    /// Host name (without the trailing dot).
    pub target: String,
}

/// The SRV name for `domain`: `_tka._tcp.DOMAIN`.
pub fn srv_name(domain: &str) -> String {
    format!("{SRV_PREFIX}.{}", domain.trim_end_matches('.'))
}

/// A source of uniform random numbers: `f(max)` returns a number from 0
/// to `max`, both included.
pub type UniformFn<'a> = &'a mut dyn FnMut(u32) -> u32;

/// Orders `records` for trying, as RFC 2782 says: by priority, lowest
/// first; inside one priority by repeated weighted random choice. Each
/// choice takes the targets not yet ordered, weight-0 ones first, sums
/// their weights, draws a number from 0 to the sum (`uniform`), and takes
/// the first target whose running sum reaches it; so a weight-0 target is
/// chosen only on a draw of 0 while others are left (1 in sum + 1), and
/// weight alone decides among the rest. A target dropped after a failure
/// is simply the next in this order: the same as choosing again among
/// those left.
///
/// A single record whose target is `.` means "no such service here"
/// (RFC 2782): the order is empty.
pub fn rfc2782_order(records: &[SrvTarget], uniform: UniformFn<'_>) -> Vec<SrvTarget> {
    if let [only] = records {
        if only.target.is_empty() || only.target == "." {
            return Vec::new();
        }
    }
    let mut priorities: Vec<u16> = records.iter().map(|r| r.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let mut out = Vec::with_capacity(records.len());
    for p in priorities {
        // Weight-0 entries first, then the others, each group in record order.
        let mut left: Vec<&SrvTarget> = records.iter().filter(|r| r.priority == p && r.weight == 0).collect();
        left.extend(records.iter().filter(|r| r.priority == p && r.weight > 0));
        while !left.is_empty() {
            let sum: u32 = left.iter().map(|r| u32::from(r.weight)).sum();
            let draw = uniform(sum).min(sum);
            let mut running = 0u32;
            let i = left
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= draw
                })
                .unwrap_or(left.len() - 1);
            out.push(left.remove(i).clone());
        }
    }
    out
}

/// Uniform numbers from the operating system's generator (for
/// [`rfc2782_order`] and the agent's jitter).
pub fn os_uniform(max: u32) -> u32 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("operating system random number generator");
    // 64 random bits reduced to at most 2^32 values: the bias is below 2^-32.
    (u64::from_le_bytes(b) % (u64::from(max) + 1)) as u32
}

/// Where DNS questions go: the system's resolver configuration
/// (`/etc/resolv.conf`) or one named server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsServer {
    /// The system configuration.
    System,
    /// This server, over UDP with TCP fallback.
    At(SocketAddr),
}

impl std::fmt::Display for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsServer::System => f.write_str("the system resolver"),
            DnsServer::At(a) => write!(f, "DNS server {a}"),
        }
    }
}

/// Parses a DNS server `IP:PORT`.
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, AgentError> {
    s.parse().map_err(|_| AgentError::BadAddress { what: "DNS server", value: s.to_string() })
}

/// A resolver asking `server`, with short timeouts (an agent retries later).
fn resolver(server: DnsServer) -> Result<hickory_resolver::TokioResolver, String> {
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    use hickory_resolver::TokioResolver;
    let mut builder = match server {
        DnsServer::System => TokioResolver::builder_tokio().map_err(|e| e.to_string())?,
        DnsServer::At(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
    };
    let opts = builder.options_mut();
    opts.timeout = std::time::Duration::from_secs(3);
    opts.attempts = 2;
    opts.cache_size = 0;
    builder.build().map_err(|e| e.to_string())
}

/// The SRV records of `_tka._tcp.DOMAIN`, asked of `server`.
pub(crate) async fn srv_records(domain: &str, server: DnsServer) -> Result<Vec<SrvTarget>, AgentError> {
    let name = srv_name(domain);
    let fail = |detail: String| AgentError::Discovery { name: name.clone(), server: server.to_string(), detail };
    let resolver = resolver(server).map_err(&fail)?;
    let lookup = resolver.srv_lookup(format!("{name}.")).await.map_err(|e| fail(e.to_string()))?;
    let records: Vec<SrvTarget> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            hickory_resolver::proto::rr::RData::SRV(srv) => Some(SrvTarget {
                priority: srv.priority,
                weight: srv.weight,
                port: srv.port,
                target: srv.target.to_string().trim_end_matches('.').to_string(),
            }),
            _ => None,
        })
        .collect();
    if records.is_empty() {
        return Err(fail("no SRV records".into()));
    }
    Ok(records)
}

/// The addresses of `host` (A and AAAA), asked of `server`.
pub(crate) async fn addresses(host: &str, port: u16, server: DnsServer) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let resolver = resolver(server)?;
    let ips = resolver.lookup_ip(format!("{host}.")).await.map_err(|e| e.to_string())?;
    let out: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, port)).collect();
    if out.is_empty() {
        return Err("no A or AAAA records".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(priority: u16, weight: u16, target: &str) -> SrvTarget {
        SrvTarget { priority, weight, port: 4000, target: target.into() }
    }

    /// A deterministic generator (splitmix64) for the statistics.
    fn seeded(mut state: u64) -> impl FnMut(u32) -> u32 {
        move |max| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z % (u64::from(max) + 1)) as u32
        }
    }

    fn names(v: &[SrvTarget]) -> Vec<&str> {
        v.iter().map(|t| t.target.as_str()).collect()
    }

    #[test]
    fn lower_priority_always_comes_first() {
        let records = [t(20, 100, "b"), t(10, 1, "a"), t(30, 0, "c")];
        let mut rng = seeded(1);
        for _ in 0..100 {
            assert_eq!(names(&rfc2782_order(&records, &mut rng)), ["a", "b", "c"]);
        }
    }

    #[test]
    fn first_choice_follows_the_weights() {
        let records = [t(10, 60, "a"), t(10, 30, "b"), t(10, 10, "c")];
        let mut rng = seeded(42);
        let n = 10_000u32;
        let mut counts = [0u32; 3];
        for _ in 0..n {
            let first = &rfc2782_order(&records, &mut rng)[0];
            counts[(first.target.as_bytes()[0] - b'a') as usize] += 1;
        }
        // A draw from 0..=100 picks a for 0..=60 (61 values), b for 61..=90
        // (30), c for 91..=100 (10): expected shares 61/101, 30/101, 10/101.
        for (count, share) in counts.iter().zip([61.0, 30.0, 10.0]) {
            let p = share / 101.0;
            let mean = f64::from(n) * p;
            let sd = (f64::from(n) * p * (1.0 - p)).sqrt();
            assert!((f64::from(*count) - mean).abs() < 4.0 * sd, "{counts:?}: {count} vs {mean} ± 4 × {sd}");
        }
    }

    #[test]
    fn weight_zero_is_chosen_only_on_a_zero_draw() {
        let records = [t(10, 0, "zero"), t(10, 50, "heavy")];
        // A draw of 0 reaches the weight-0 entry (running sum 0 >= 0) ...
        assert_eq!(names(&rfc2782_order(&records, &mut |_| 0)), ["zero", "heavy"]);
        // ... any other draw passes it.
        assert_eq!(names(&rfc2782_order(&records, &mut |_| 1)), ["heavy", "zero"]);
        let mut rng = seeded(7);
        let zero_first = (0..10_000).filter(|_| rfc2782_order(&records, &mut rng)[0].target == "zero").count() as f64;
        let (mean, sd) = (10_000.0 / 51.0, (10_000.0_f64 * (1.0 / 51.0) * (50.0 / 51.0)).sqrt());
        assert!((zero_first - mean).abs() < 4.0 * sd, "{zero_first} vs {mean}");
    }

    #[test]
    fn all_weights_zero_keeps_every_target() {
        let records = [t(10, 0, "a"), t(10, 0, "b")];
        assert_eq!(names(&rfc2782_order(&records, &mut |_| 0)), ["a", "b"]);
    }

    #[test]
    fn a_lone_dot_target_means_no_service() {
        assert!(rfc2782_order(&[t(0, 0, ".")], &mut |_| 0).is_empty());
    }

    #[test]
    fn srv_name_is_tka_tcp_under_the_domain() {
        assert_eq!(srv_name("site.example."), "_tka._tcp.site.example");
    }
}
