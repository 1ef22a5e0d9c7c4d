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
//! create --text`) per machine. CLIENTS keep-alive connections send TOTAL
//! `POST /v1/activate` requests in all, going round
//! the machines (with `HOST_LOAD_KEY` set, each body also carries that
//! product key, for `tka serve`). Each connection keeps DEPTH requests
//! outstanding (HTTP/1.1 pipelining; default 1: one request, then its
//! answer, then the next). The client is made cheap because it shares the
//! CPUs with the host it measures: the requests (headers and body) are
//! built once; the connections are non-blocking and driven by
//! `HOST_LOAD_THREADS` threads (default 1) that wait in poll(2), so one
//! wake-up serves every connection with an answer in; each answer is read
//! whole, as its status line, its `Content-Length` and a search of its
//! body.
//!
//! Prints the activations per second, the p50 and p99 latency (from the
//! moment a request was written to the moment its whole answer was read),
//! the answers that were not `activated`, and its own CPU time (user and
//! system, all threads) per activation. Exit 1 if any request failed.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
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
    let threads: usize = std::env::var("HOST_LOAD_THREADS").map_or(1, |t| t.parse().expect("HOST_LOAD_THREADS"));
    let threads = threads.clamp(1, clients);
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = cpu_ticks();
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            // Thread t drives connections t, t + threads, ...
            let conns = (clients - t).div_ceil(threads);
            let (requests, next, addr) = (requests.clone(), next.clone(), addr.clone());
            std::thread::spawn(move || {
                let take = || {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    (i < total).then(|| i % requests.len())
                };
                drive(&addr, conns, &requests, depth, &take)
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

/// One keep-alive connection: the requests written and not answered yet
/// (when each was written), what is left to write, what was read.
struct Conn {
    s: TcpStream,
    sent: VecDeque<Instant>,
    out: Vec<u8>,
    written: usize,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    done: bool,
    /// poll(2) said it is readable or writable (or it is new).
    ready: bool,
}

impl Conn {
    fn open(addr: &str, depth: usize) -> Option<Conn> {
        let s = TcpStream::connect(addr).ok()?;
        let _ = s.set_nodelay(true);
        s.set_nonblocking(true).ok()?;
        Some(Conn {
            s,
            sent: VecDeque::with_capacity(depth),
            out: Vec::with_capacity(depth * 512),
            written: 0,
            buf: vec![0u8; 64 * 1024],
            start: 0,
            end: 0,
            done: false,
            ready: true,
        })
    }

    /// Queues requests until DEPTH are outstanding, and writes what it can.
    fn fill(&mut self, requests: &[Vec<u8>], depth: usize, take: &dyn Fn() -> Option<usize>) -> std::io::Result<()> {
        while self.sent.len() < depth && !self.done {
            match take() {
                Some(i) => {
                    self.out.extend_from_slice(&requests[i]);
                    self.sent.push_back(Instant::now());
                }
                None => self.done = true,
            }
        }
        while self.written < self.out.len() {
            match self.s.write(&self.out[self.written..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.written = 0;
        Ok(())
    }

    /// Reads once (poll(2) says when there is more) and takes the complete
    /// answers off what was read.
    fn read(&mut self, lat: &mut Vec<Duration>, failed: &mut usize) -> std::io::Result<()> {
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.end, self.start) = (self.end - self.start, 0);
            if self.end == self.buf.len() {
                return Err(std::io::ErrorKind::InvalidData.into()); // an answer larger than the buffer
            }
        }
        match self.s.read(&mut self.buf[self.end..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => self.end += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
        while let Some((len, ok)) = answer(&self.buf[self.start..self.end]) {
            self.start += len;
            let t = self.sent.pop_front().ok_or(std::io::ErrorKind::InvalidData)?;
            match ok {
                true => lat.push(t.elapsed()),
                false => *failed += 1,
            }
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        Ok(())
    }
}

#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

const POLLIN: i16 = 0x1;
const POLLOUT: i16 = 0x4;

extern "C" {
    fn poll(fds: *mut PollFd, nfds: std::ffi::c_ulong, timeout: i32) -> i32;
}

/// Drives `conns` connections from one thread (poll(2)) until `take`
/// gives no more and every answer is in; a connection that breaks counts
/// its outstanding requests as failed and is opened again. The latencies
/// of the activations and the count of failed requests.
fn drive(
    addr: &str,
    conns: usize,
    requests: &[Vec<u8>],
    depth: usize,
    take: &dyn Fn() -> Option<usize>,
) -> (Vec<Duration>, usize) {
    let (mut lat, mut failed) = (Vec::new(), 0);
    let mut open: Vec<Conn> = Vec::new();
    let mut fds: Vec<PollFd> = Vec::new();
    let mut broken = conns;
    loop {
        // (Re)open connections while there is work.
        while broken > 0 {
            match Conn::open(addr, depth) {
                Some(c) => {
                    open.push(c);
                    broken -= 1;
                }
                None => {
                    std::thread::sleep(Duration::from_millis(10));
                    match take() {
                        Some(_) => failed += 1,
                        None => broken = 0,
                    }
                }
            }
        }
        let mut i = 0;
        while i < open.len() {
            let c = &mut open[i];
            if !c.ready {
                i += 1;
                continue;
            }
            let ok = c.read(&mut lat, &mut failed).and_then(|()| c.fill(requests, depth, take));
            if ok.is_err() {
                failed += c.sent.len();
                let c = open.swap_remove(i);
                if !c.done {
                    broken += 1;
                }
                continue;
            }
            if c.done && c.sent.is_empty() {
                open.swap_remove(i);
                continue;
            }
            i += 1;
        }
        if open.is_empty() && broken == 0 {
            return (lat, failed);
        }
        if open.is_empty() {
            continue;
        }
        fds.clear();
        for c in &open {
            let events = if c.written < c.out.len() { POLLIN | POLLOUT } else { POLLIN };
            fds.push(PollFd { fd: c.s.as_raw_fd(), events, revents: 0 });
        }
        // SAFETY: `fds` holds `fds.len()` initialized entries for the call's length.
        let n = unsafe { poll(fds.as_mut_ptr(), fds.len() as std::ffi::c_ulong, 30_000) };
        if n == 0 {
            // Nothing for 30 s: every outstanding request failed.
            failed += open.iter().map(|c| c.sent.len()).sum::<usize>();
            return (lat, failed);
        }
        for (c, f) in open.iter_mut().zip(&fds) {
            c.ready = n < 0 || f.revents != 0;
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
