//! Reading the requests of a batch: a directory of request files, or one
//! request per line.

use crate::core::error::{Error, Result};
use crate::core::request::{ActivationRequest, MAX_REQUEST_SIZE};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// One request of a batch, as read (or the reason it could not be read).
#[derive(Debug, Clone)]
pub struct BatchInput {
    /// Where it came from: a file name, or `FILE:LINE`.
    pub source: String,
    /// The parsed request, or why it is not one.
    pub request: std::result::Result<ActivationRequest, String>,
}

/// Reads every regular, non-hidden file in `dir` (sorted by name) as one request.
/// (Like [`read_requests_lines`], it starts seeding the signing library's
/// random generator, for the batch that follows.)
pub fn read_requests_dir(dir: &Path) -> Result<Vec<BatchInput>> {
    seed_random_early();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|p| {
            let source = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let request = match crate::core::fsutil::read_bounded(&p, MAX_REQUEST_SIZE as u64) {
                Ok(b) => match String::from_utf8(b) {
                    Ok(t) => ActivationRequest::parse(&t).map_err(|e| e.to_string()),
                    Err(_) => Err("malformed request: not UTF-8 text".into()),
                },
                Err(e) => Err(format!("cannot read {}: {e}", p.display())),
            };
            BatchInput { source, request }
        })
        .collect())
}

/// Reads one request per line (text form, or JSON on one line); blank lines
/// and lines starting with `#` are skipped. `label` names the input in sources.
///
/// A line longer than [`MAX_REQUEST_SIZE`] is refused as an item without
/// being held in memory (its bytes are skipped up to the next newline).
/// The lines are read first, then parsed on every core. Meanwhile the
/// signing library's random generator is seeded on a thread of its own,
/// for the batch that follows (its first use costs ~30 ms of CPU).
pub fn read_requests_lines(mut input: impl BufRead, label: &str) -> Result<Vec<BatchInput>> {
    use rayon::prelude::*;
    use std::io::Read;
    seed_random_early();
    // Per line: its number and its bytes, or `None` when it was too long.
    let mut lines: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
    for i in 1.. {
        let mut line = Vec::new();
        let limit = MAX_REQUEST_SIZE as u64 + 2; // the request, "\r\n"
        let n = (&mut input).take(limit).read_until(b'\n', &mut line).map_err(|e| Error::io(label, e))?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') && n as u64 == limit {
            skip_line(&mut input).map_err(|e| Error::io(label, e))?;
            lines.push((i, None));
            continue;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        lines.push((i, Some(line)));
    }
    Ok(lines
        .into_par_iter()
        .filter_map(|(i, line)| {
            let request = match line.as_deref().map(std::str::from_utf8) {
                None => {
                    let e = crate::core::error::VerifyError::TooLarge { what: "request", limit: MAX_REQUEST_SIZE };
                    Err(e.to_string())
                }
                Some(Ok(t)) => {
                    let t = t.trim();
                    if t.is_empty() || t.starts_with('#') {
                        return None;
                    }
                    ActivationRequest::parse(t).map_err(|e| e.to_string())
                }
                Some(Err(_)) => Err("malformed request: not UTF-8 text".into()),
            };
            Some(BatchInput { source: format!("{label}:{i}"), request })
        })
        .collect())
}

/// Seeds the signing library's random generator now, once per process, on
/// a thread of its own, so that seeding does not hold up one of the first
/// signatures of the run. Built from this repository, aws-lc seeds from
/// `getrandom` (`.cargo/config.toml` turns its CPU-jitter entropy source
/// off: see docs/design.md) and this costs next to nothing; an aws-lc built
/// with the jitter source spends ~40 ms of one core here.
pub(crate) fn seed_random_early() {
    #[cfg(feature = "aws-lc")]
    {
        static SEEDED: std::sync::Once = std::sync::Once::new();
        SEEDED.call_once(|| {
            std::thread::spawn(|| {
                let _ = aws_lc_rs::rand::fill(&mut [0u8; 1]);
            });
        });
    }
}

/// Consumes input up to and including the next newline, without keeping it.
fn skip_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(p) => {
                input.consume(p + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

/// A request from synthetic machine number `n` (three components derived
/// from `n`), for benchmarks and tests that need many distinct machines.
#[doc(hidden)]
pub fn synthetic_request(product: &str, n: u64, now: i64) -> ActivationRequest {
    let raw = [
        ("mid".to_string(), format!("{:032x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15 + 1)),
        ("dmi".to_string(), format!("00000000-0000-4000-8000-{:012x}", n)),
        (
            "mac".to_string(),
            format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", (n >> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff),
        ),
    ];
    let id = crate::core::machine::MachineIdentity::from_raw(product, &raw);
    ActivationRequest::new(&id, now, None)
}
