//! CRL numbers that strictly increase, per CA: a counter kept beside the CA
//! certificate (`ca.pem` → `ca.crlnumber`, like OpenSSL's `crlnumber`
//! file), never the clock.
//!
//! RFC 5280 §5.2.3 requires cRLNumber to increase monotonically for a
//! given CA. tka used to take Unix seconds, so two CRLs made in one second
//! shared a number and importing the older after the newer un-revoked a
//! certificate. Now every `crl create` takes the next number under an
//! exclusive lock (`ca.crlnumber.lock`), writes the counter atomically
//! before the CRL exists, and refuses an explicit number that is not above
//! the last one. A number is never reused, even if making the CRL fails
//! afterwards (it is only skipped).
//!
//! A CA without a counter yet (its CRLs, if any, were numbered by the
//! clock) starts at the current Unix time, above every number the old
//! scheme could have given it; from then on the clock is not consulted.

use crate::core::error::{Error, Result};
use crate::core::fsutil::{self, Overwrite};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// Longest counter file accepted, bytes.
const MAX_COUNTER_FILE: u64 = 64;

/// The counter file of the CA whose certificate is `ca_cert`.
pub fn counter_path(ca_cert: &Path) -> PathBuf {
    ca_cert.with_extension("crlnumber")
}

/// The last number the counter at `ca_cert` gave, if it has one.
pub fn last_number(ca_cert: &Path) -> Result<Option<u64>> {
    let path = counter_path(ca_cert);
    match fsutil::read_bounded(&path, MAX_COUNTER_FILE) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            text.trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| Error::format(format!("CRL number counter {}", path.display()), "not a decimal number"))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.at(&path)),
    }
}

/// Takes the next CRL number for the CA whose certificate is `ca_cert`:
/// `requested` if given (it must be above the last one), else the last one
/// plus one (or `now` for a CA without a counter). The counter is advanced
/// before this returns.
pub fn take_next(ca_cert: &Path, requested: Option<u64>, now: i64) -> Result<u64> {
    let lock_path = counter_path(ca_cert).with_extension("crlnumber.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    let last = last_number(ca_cert)?;
    let next = match (requested, last) {
        (Some(n), Some(l)) if n <= l => {
            return Err(Error::Refused(format!(
                "CRL number {n} is not above {l}, the last one this CA issued ({}); CRL numbers only increase",
                counter_path(ca_cert).display()
            )))
        }
        (Some(0), None) => return Err(Error::Usage("a CRL number starts at 1".into())),
        (Some(n), _) => n,
        (None, Some(l)) => {
            l.checked_add(1).ok_or_else(|| Error::Refused("the CRL number counter is exhausted".into()))?
        }
        (None, None) => u64::try_from(now).unwrap_or(0).max(1),
    };
    let path = counter_path(ca_cert);
    fsutil::write_atomic(&path, format!("{next}\n").as_bytes(), 0o644, Overwrite::Replace)
        .map_err(|e| Error::io(&path, e))?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_strictly_increase_and_never_follow_the_clock_again() {
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("ca.pem");
        assert_eq!(last_number(&ca).unwrap(), None);
        assert_eq!(take_next(&ca, None, 1_800_000_000).unwrap(), 1_800_000_000);
        // Same second, even an earlier clock: still the next number.
        assert_eq!(take_next(&ca, None, 1_800_000_000).unwrap(), 1_800_000_001);
        assert_eq!(take_next(&ca, None, 5).unwrap(), 1_800_000_002);
        assert_eq!(take_next(&ca, Some(1_900_000_000), 0).unwrap(), 1_900_000_000);
        let e = take_next(&ca, Some(1_900_000_000), 0).unwrap_err().to_string();
        assert!(e.starts_with("CRL number 1900000000 is not above 1900000000, the last one this CA issued"), "{e}");
        assert_eq!(last_number(&ca).unwrap(), Some(1_900_000_000));
        assert_eq!(std::fs::read_to_string(d.path().join("ca.crlnumber")).unwrap(), "1900000000\n");
    }

    #[test]
    fn concurrent_takers_never_share_a_number() {
        let d = tempfile::tempdir().unwrap();
        let ca = d.path().join("root.pem");
        let mut all: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..25).map(|_| take_next(&ca, None, 100).unwrap()).collect::<Vec<_>>()))
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        all.sort_unstable();
        assert_eq!(all, (100..200).collect::<Vec<_>>());
    }
}
