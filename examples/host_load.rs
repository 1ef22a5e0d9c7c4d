//! A small load generator for the activation host (`tka host serve`), used
//! by scripts/bench-host.sh. Standard library only, so the script can build
//! it with plain `rustc` in seconds.
//!
//! ```text
//! host_load ADDR:PORT REQUESTS_FILE CLIENTS TOTAL
//! ```
//!
//! REQUESTS_FILE holds one request line (`TKAR1-...`, from `tka request
//! create --text`) per machine. CLIENTS threads, each on its own keep-alive
//! connection, send TOTAL `POST /v1/activate` requests in all, going round
//! the machines (with `HOST_LOAD_KEY` set, each body also carries that
//! product key, for `tka serve`). Prints the activations per second, the p50 and p99
//! latency, and the answers that were not `activated`. Exit 1 if any
//! request failed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: host_load ADDR:PORT REQUESTS_FILE CLIENTS TOTAL");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let key = std::env::var("HOST_LOAD_KEY").ok();
    let lines: Vec<String> = std::fs::read_to_string(&args[2])
        .expect("requests file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match &key {
            // The online service (`tka serve`, scripts/bench-serve.sh) also takes a product key.
            Some(k) => format!("{{\"request\":\"{}\",\"key\":\"{k}\"}}", l.trim()),
            None => format!("{{\"request\":\"{}\"}}", l.trim()),
        })
        .collect();
    let clients: usize = args[3].parse().expect("CLIENTS");
    let total: usize = args[4].parse().expect("TOTAL");
    assert!(!lines.is_empty() && clients > 0 && total > 0);
    let lines = Arc::new(lines);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (lines, next, addr) = (lines.clone(), next.clone(), addr.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut failed = 0usize;
                let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let body = &lines[i % lines.len()];
                    let t = Instant::now();
                    match exchange(&mut conn, &addr, body) {
                        Ok(true) => lat.push(t.elapsed()),
                        Ok(false) => failed += 1,
                        Err(_) => {
                            conn = None;
                            failed += 1;
                        }
                    }
                }
                (lat, failed)
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
    lat.sort();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied();
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    println!("requests: {total} from {clients} clients over {} machines in {secs:.2} s", lines.len());
    println!("activated: {}", lat.len());
    println!("failed: {failed}");
    println!("activations/s: {:.1}", lat.len() as f64 / secs);
    println!("p50: {:.2} ms", ms(pct(0.50)));
    println!("p99: {:.2} ms", ms(pct(0.99)));
    if failed > 0 {
        std::process::exit(1);
    }
}

/// One request on the (re)opened connection; `Ok(true)` when activated.
fn exchange(conn: &mut Option<(TcpStream, BufReader<TcpStream>)>, addr: &str, body: &str) -> std::io::Result<bool> {
    if conn.is_none() {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let r = BufReader::new(s.try_clone()?);
        *conn = Some((s, r));
    }
    let (s, r) = conn.as_mut().expect("connected above");
    write!(
        s,
        "POST /v1/activate HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut status = String::new();
    r.read_line(&mut status)?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut b = vec![0; len];
    r.read_exact(&mut b)?;
    Ok(status.starts_with("HTTP/1.1 200") && String::from_utf8_lossy(&b).contains("\"activated\""))
}
