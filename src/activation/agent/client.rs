//! A small HTTP/1.1 client for the activation protocol: one request per
//! connection (`Connection: close`), connect and read timeouts, and every
//! answer bounded ([`MAX_RESPONSE_BODY`]; refused, not truncated, beyond);
//! over TLS when the agent is given a connector (`tls.rs`).

use crate::core::agent_error::AgentError;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer body the agent reads, bytes.
pub const MAX_RESPONSE_BODY: usize = 16 * 1024;
/// Largest answer head (status line and headers) the agent reads, bytes.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// How long the agent waits for a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For the TCP connection.
    pub connect: Duration,
    /// For the whole answer once connected.
    pub read: Duration,
}

impl Default for Timeouts {
    /// 5 s to connect, 15 s to answer.
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(5), read: Duration::from_secs(15) }
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Nothing answered (refused, unreachable, timed out): try another host.
    Unreachable(String),
    /// Something answered, wrongly.
    Answer(AgentError),
    /// The host's TLS certificate is not trusted: try another host.
    Untrusted(AgentError),
}

/// Sends one request to `addr` (`host` names it in messages and in the
/// `Host` header) and reads the answer, over TLS when `tls` is given.
pub(crate) async fn exchange(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeouts: Timeouts,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Response, Failure> {
    exchange_as(addr, host, super::tls::server_name(), method, path, body, timeouts, tls).await
}

/// [`exchange`] giving the TLS connector `name` as the server's name (a
/// web certificate is checked against it).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange_as(
    addr: SocketAddr,
    host: &str,
    name: rustls::pki_types::ServerName<'static>,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeouts: Timeouts,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Response, Failure> {
    let stream = match tokio::time::timeout(timeouts.connect, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Failure::Unreachable(format!("{addr} ({})", io_reason(&e)))),
        Err(_) => return Err(Failure::Unreachable(format!("{addr} (no connection within {:?})", timeouts.connect))),
    };
    let Some(tls) = tls else {
        return talk(stream, addr, host, method, path, body, timeouts).await;
    };
    let stream = match tokio::time::timeout(timeouts.read, tls.connect(name, stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(handshake_failure(addr, host, &e)),
        Err(_) => return Err(Failure::Unreachable(format!("{addr} (no TLS handshake within {:?})", timeouts.read))),
    };
    talk(stream, addr, host, method, path, body, timeouts).await
}

/// What a failed TLS handshake means: a host certificate this machine does
/// not trust ([`Failure::Untrusted`]), a host that does not speak TLS, or
/// a broken connection.
fn handshake_failure(addr: SocketAddr, host: &str, e: &std::io::Error) -> Failure {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return Failure::Unreachable(format!("{addr} ({})", io_reason(e)));
    };
    if let Some(detail) = super::tls::untrusted_reason(tls) {
        return Failure::Untrusted(AgentError::UntrustedHost { host: host.to_string(), detail });
    }
    let detail = match tls {
        rustls::Error::InvalidMessage(_) => "not a TLS record: the host may serve plain HTTP".to_string(),
        other => format!("TLS handshake failed: {other}"),
    };
    Failure::Answer(AgentError::TlsMismatch { host: host.to_string(), host_requires_tls: false, detail })
}

/// One request and its answer on a connected stream.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeouts: Timeouts,
) -> Result<Response, Failure> {
    let talk = async {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tka-agent/{}\r\nAccept: */*\r\nConnection: close\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(b) = body {
            head += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len());
        }
        head += "\r\n";
        stream.write_all(head.as_bytes()).await?;
        if let Some(b) = body {
            stream.write_all(b).await?;
        }
        stream.flush().await?;
        read_response(&mut stream, host).await
    };
    match tokio::time::timeout(timeouts.read, talk).await {
        Ok(Ok(r)) => r.map_err(Failure::Answer),
        Ok(Err(e)) => Err(Failure::Unreachable(format!("{addr} ({})", io_reason(&e)))),
        Err(_) => Err(Failure::Unreachable(format!("{addr} (no answer within {:?})", timeouts.read))),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

/// Reads and parses an answer: head, then a body by `Content-Length`,
/// chunked, or up to the end of the connection; never more than the limits.
async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    host: &str,
) -> std::io::Result<Result<Response, AgentError>> {
    let bad = |detail: String| AgentError::BadResponse { host: host.to_string(), detail };
    let too_large = || AgentError::ResponseTooLarge { host: host.to_string(), limit: MAX_RESPONSE_BODY };
    let mut buf = Vec::with_capacity(2048);
    let not_http = |buf: &[u8]| {
        let first = buf.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or(b"");
        let shown: String = String::from_utf8_lossy(first).chars().take(40).filter(|c| !c.is_control()).collect();
        bad(format!("not an HTTP/1.1 answer (starts {shown:?})"))
    };
    let head_end = loop {
        if buf.len() >= 5 && !buf.starts_with(b"HTTP/") {
            return Ok(Err(not_http(&buf)));
        }
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_RESPONSE_HEAD {
            return Ok(Err(bad(format!("no end of headers within {MAX_RESPONSE_HEAD} bytes"))));
        }
        if read_more(stream, &mut buf, MAX_RESPONSE_HEAD + 4).await? == 0 {
            return Ok(Err(bad(if buf.is_empty() {
                "the connection closed without an answer".into()
            } else {
                "the answer ends inside its headers".into()
            })));
        }
    };
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
        return Ok(Err(bad("the headers are not text".into())));
    };
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = match status_line.split(' ').collect::<Vec<_>>().as_slice() {
        [v, code, ..] if v.starts_with("HTTP/1.") && code.len() == 3 => code.parse::<u16>().ok(),
        _ => None,
    };
    let Some(status) = status else {
        return Ok(Err(not_http(status_line.as_bytes())));
    };
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Ok(Err(bad("a header line without a colon".into())));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<u64>() {
                Ok(n) if n > MAX_RESPONSE_BODY as u64 => return Ok(Err(too_large())),
                Ok(n) => length = Some(n as usize),
                Err(_) => return Ok(Err(bad(format!("Content-Length {value:?} is not a number")))),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
            if !chunked {
                return Ok(Err(bad(format!("unsupported Transfer-Encoding {value:?}"))));
            }
        }
    }
    let mut rest = buf.split_off(head_end + 4);
    let body = if chunked {
        loop {
            match dechunk(&rest) {
                Dechunk::Done(body) => break body,
                Dechunk::Bad(d) => return Ok(Err(bad(d))),
                Dechunk::TooLarge => return Ok(Err(too_large())),
                Dechunk::More => {
                    if read_more(stream, &mut rest, MAX_RESPONSE_BODY * 2).await? == 0 {
                        return Ok(Err(bad("the chunked body ends early".into())));
                    }
                }
            }
        }
    } else if let Some(n) = length {
        while rest.len() < n {
            if read_more(stream, &mut rest, n).await? == 0 {
                return Ok(Err(bad(format!("the body ends after {} of {n} bytes", rest.len()))));
            }
        }
        rest.truncate(n);
        rest
    } else {
        while read_more(stream, &mut rest, MAX_RESPONSE_BODY + 1).await? > 0 {
            if rest.len() > MAX_RESPONSE_BODY {
                return Ok(Err(too_large()));
            }
        }
        rest
    };
    if body.len() > MAX_RESPONSE_BODY {
        return Ok(Err(too_large()));
    }
    Ok(Ok(Response { status, body }))
}

/// Reads what is available into `buf`, never past `cap` bytes in all (a
/// full buffer reads nothing more and reports 1 so callers check limits).
async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>, cap: usize) -> std::io::Result<usize> {
    let room = cap.saturating_sub(buf.len()).clamp(1, 4096);
    let mut chunk = vec![0u8; room];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

enum Dechunk {
    Done(Vec<u8>),
    More,
    Bad(String),
    TooLarge,
}

/// Decodes a chunked body from `data` if it is complete.
fn dechunk(data: &[u8]) -> Dechunk {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find(&data[at..], b"\r\n") else {
            return if data.len() - at > 32 {
                Dechunk::Bad("a chunk size line is too long".into())
            } else {
                Dechunk::More
            };
        };
        let line = String::from_utf8_lossy(&data[at..at + eol]);
        let hex = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(hex, 16) else {
            return Dechunk::Bad(format!("chunk size {hex:?} is not hexadecimal"));
        };
        if out.len() + size > MAX_RESPONSE_BODY {
            return Dechunk::TooLarge;
        }
        at += eol + 2;
        if size == 0 {
            return Dechunk::Done(out);
        }
        if data.len() < at + size + 2 {
            return Dechunk::More;
        }
        out.extend_from_slice(&data[at..at + size]);
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_and_are_bounded() {
        assert!(matches!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), Dechunk::Done(b) if b == b"abcde"));
        assert!(matches!(dechunk(b"3\r\nab"), Dechunk::More));
        assert!(matches!(dechunk(b"zz\r\n"), Dechunk::Bad(_)));
        assert!(matches!(dechunk(b"4001\r\n"), Dechunk::TooLarge));
    }
}
