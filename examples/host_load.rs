//! A small load generator for the activation host (`tka host serve`), used
//! by scripts/bench-host.sh (and scripts/bench-serve.sh for `tka serve`).
//! Standard library only, so the scripts build it with plain `rustc` in
//! seconds.
//!
//! ```text
//! host_load ADDR:PORT REQUESTS_FILE CLIENTS TOTAL [DEPTH]
//! ```
//!
//! REQUESTS_FILE holds one request line (`TKAR1-...`, from `tka request
//! create --text`) per machine. CLIENTS threads, each on its own keep-alive
//! connection, send TOTAL `POST /v1/activate` requests in all, going round
//! the machines (with `HOST_LOAD_KEY` set, each body also carries that
//! product key, for `tka serve`). Each connection keeps DEPTH requests
//! outstanding (HTTP/1.1 pipelining; default 1: one request, then its
//! answer, then the next). The client is made cheap because it shares the
//! CPUs with the host it measures: the requests (headers and body) are
//! built once, each connection is one thread doing blocking reads and
//! writes of whole buffers, and an answer is read as its status line, its
//! `Content-Length` and a search of its body.
//!
//! Prints the activations per second, the p50 and p99 latency (from the
//! moment a request was written to the moment its whole answer was read),
//! the answers that were not `activated`, and its own CPU time (user and
//! system, all threads) per activation. Exit 1 if any request failed.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 && args.len() != 6 {
        eprintln!("usage: host_load ADDR:PORT REQUESTS_FILE CLIENTS TOTAL [DEPTH]");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let key = std::env::var("HOST_LOAD_KEY").ok();
    let requests: Vec<Vec<u8>> = std::fs::read_to_string(&args[2])
        .expect("requests file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let body = match &key {
                // The online service (`tka serve`, scripts/bench-serve.sh) also takes a product key.
                Some(k) => format!("{{\"request\":\"{}\",\"key\":\"{k}\"}}", l.trim()),
                None => format!("{{\"request\":\"{}\"}}", l.trim()),
            };
            format!(
                "POST /v1/activate HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();
    let clients: usize = args[3].parse().expect("CLIENTS");
    let total: usize = args[4].parse().expect("TOTAL");
    let depth: usize = args.get(5).map_or(1, |d| d.parse().expect("DEPTH"));
    assert!(!requests.is_empty() && clients > 0 && total > 0 && depth > 0);
    let machines = requests.len();
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = cpu_ticks();
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (requests, next, addr) = (requests.clone(), next.clone(), addr.clone());
            std::thread::spawn(move || {
                let take = || {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    (i < total).then(|| i % requests.len())
                };
                let mut c = Client { lat: Vec::new(), failed: 0 };
                while let Err(n) = c.run(&addr, &requests, depth, &take) {
                    // The connection broke: its outstanding requests failed; go on with a new one.
                    c.failed += n;
                }
                (c.lat, c.failed)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut failed = 0;
    for w in workers {
        let (l, f) = w.join().expect("worker");
        lat.extend(l);
        failed += f;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_ticks().zip(cpu_before).map(|(a, b)| a.saturating_sub(b));
    lat.sort();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied();
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    println!("requests: {total} from {clients} clients (depth {depth}) over {machines} machines in {secs:.2} s");
    println!("activated: {}", lat.len());
    println!("failed: {failed}");
    println!("activations/s: {:.1}", lat.len() as f64 / secs);
    println!("p50: {:.2} ms", ms(pct(0.50)));
    println!("p99: {:.2} ms", ms(pct(0.99)));
    if let (Some(t), false) = (cpu, lat.is_empty()) {
        // USER_HZ is 100 on Linux.
        println!("client CPU µs/activation: {:.0}", t as f64 * 10_000.0 / lat.len() as f64);
    }
    if failed > 0 {
        std::process::exit(1);
    }
}

/// One connection's results.
struct Client {
    lat: Vec<Duration>,
    failed: usize,
}

impl Client {
    /// Sends requests on one connection until `take` gives no more and
    /// every answer is in; `Err(n)`: the connection failed with `n`
    /// requests outstanding.
    fn run(
        &mut self,
        addr: &str,
        requests: &[Vec<u8>],
        depth: usize,
        take: &dyn Fn() -> Option<usize>,
    ) -> Result<(), usize> {
        let mut sent: VecDeque<Instant> = VecDeque::with_capacity(depth);
        let Ok(mut s) = TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(10));
            return take().map_or(Ok(()), |_| Err(1));
        };
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let mut out = Vec::with_capacity(depth * 512);
        let mut buf = vec![0u8; 64 * 1024];
        let (mut start, mut end) = (0, 0);
        loop {
            while sent.len() < depth {
                let Some(i) = take() else { break };
                out.extend_from_slice(&requests[i]);
                sent.push_back(Instant::now());
            }
            if !out.is_empty() {
                s.write_all(&out).map_err(|_| sent.len())?;
                out.clear();
            }
            if sent.is_empty() {
                return Ok(());
            }
            if end == buf.len() {
                buf.copy_within(start..end, 0);
                (end, start) = (end - start, 0);
                if end == buf.len() {
                    return Err(sent.len()); // an answer larger than the buffer
                }
            }
            match s.read(&mut buf[end..]) {
                Ok(0) | Err(_) => return Err(sent.len()),
                Ok(n) => end += n,
            }
            while let Some((len, ok)) = answer(&buf[start..end]) {
                start += len;
                let t = sent.pop_front().ok_or(0usize)?;
                if ok {
                    self.lat.push(t.elapsed());
                } else {
                    self.failed += 1;
                }
            }
            if start == end {
                (start, end) = (0, 0);
            }
        }
    }
}

/// The first complete answer in `b`: its length and whether it is a `200`
/// that says `activated`; `None` while it is incomplete.
fn answer(b: &[u8]) -> Option<(usize, bool)> {
    let head = find(b, b"\r\n\r\n")? + 4;
    let mut len = 0usize;
    for line in b[..head].split(|&c| c == b'\n') {
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            len = std::str::from_utf8(&line[15..]).ok()?.trim().parse().ok()?;
        }
    }
    if b.len() < head + len {
        return None;
    }
    let ok = b.starts_with(b"HTTP/1.1 200") && find(&b[head..head + len], b"\"activated\"").is_some();
    Some((head + len, ok))
}

/// This process's user and system CPU time (all its threads), clock
/// ticks, from /proc/self/stat; `None` where there is none.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let mut f = stat[stat.rfind(')')? + 2..].split(' ').skip(11);
    Some(f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
