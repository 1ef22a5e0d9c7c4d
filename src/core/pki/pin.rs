//! Root pinning: the SHA-256 fingerprints of the roots an application
//! insists on, whatever else the machine's store trusts.

use super::cert::CertInfo;
use std::fmt;
use std::str::FromStr;

/// The SHA-256 fingerprint of a root certificate (64 lowercase hex digits),
/// as `tka trust list` and `tka trust add --fingerprint` show it.
///
/// An application compiles its vendor's root fingerprint in and passes it to
/// [`crate::activation::activate::check_activated`] (or [`crate::core::verify::VerifyContext`]):
/// a token whose chain ends at any other root is then refused with
/// [`crate::VerifyError::WrongRoot`], even if the store trusts that root.
///
/// ```
/// use tka::pki::RootFingerprint;
/// const VENDOR_ROOT: &str = "3f:2a:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd";
/// let pin = RootFingerprint::parse(VENDOR_ROOT).unwrap();
/// assert_eq!(pin.as_str(), "3f2a00112233445566778899aabbccddeeff00112233445566778899aabbccdd");
/// assert!(RootFingerprint::parse("3f2a").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RootFingerprint(String);

impl RootFingerprint {
    /// Parses a SHA-256 fingerprint: 64 hex digits, any case, `:` and
    /// whitespace separators allowed, also as openssl prints it
    /// (`sha256 Fingerprint=AB:CD:...`, `SHA256 Fingerprint=...`). Anything
    /// else (a prefix, another hash length) is [`InvalidFingerprint`].
    ///
    /// ```
    /// use tka::pki::RootFingerprint;
    /// let hex = "ab".repeat(32);
    /// let openssl = format!("sha256 Fingerprint={}", ["AB"; 32].join(":"));
    /// assert_eq!(RootFingerprint::parse(&openssl).unwrap().as_str(), hex);
    /// assert_eq!(RootFingerprint::parse(&"AB CD ".repeat(16)).unwrap().as_str(), "abcd".repeat(16));
    /// ```
    pub fn parse(s: &str) -> Result<Self, InvalidFingerprint> {
        let t = s.trim();
        let t = match t.split_once('=') {
            Some((label, value)) if label.trim().eq_ignore_ascii_case("sha256 fingerprint") => value,
            _ => t,
        };
        let hex: String =
            t.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(RootFingerprint(hex))
        } else {
            Err(InvalidFingerprint { input: s.to_string() })
        }
    }

    /// The fingerprint: 64 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `cert` is the certificate with this fingerprint.
    pub fn matches(&self, cert: &CertInfo) -> bool {
        cert.fingerprint == self.0
    }
}

impl fmt::Display for RootFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RootFingerprint {
    type Err = InvalidFingerprint;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RootFingerprint::parse(s)
    }
}

/// A string that is not a SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFingerprint {
    /// The string given.
    pub input: String,
}

impl fmt::Display for InvalidFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid root fingerprint {:?}: expected the 64 hex digits of a SHA-256 (colons, spaces and openssl's `sha256 Fingerprint=` allowed)", self.input)
    }
}

impl std::error::Error for InvalidFingerprint {}

impl From<InvalidFingerprint> for crate::core::error::Error {
    fn from(e: InvalidFingerprint) -> Self {
        crate::core::error::Error::Usage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalizes_and_refuses_non_sha256() {
        let fp = "AB".repeat(32);
        assert_eq!(RootFingerprint::parse(&fp).unwrap().as_str(), "ab".repeat(32));
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(RootFingerprint::parse(&colons).unwrap().as_str(), "ab".repeat(32));
        for bad in ["", "abcd", &"ab".repeat(33), &format!("{}zz", "ab".repeat(31))] {
            assert_eq!(RootFingerprint::parse(bad), Err(InvalidFingerprint { input: bad.to_string() }), "{bad:?}");
        }
    }
}
