//! The tka delegation extension: a certificate that limits what the tokens
//! below it may be. An activation host holds a token-signer certificate
//! carrying it (products, longest token lifetime, optionally a seat cap);
//! a CA certificate carrying it constrains everything below it.
//!
//! ```text
//! id-tka-delegation OBJECT IDENTIFIER ::= { 2 25 236812418305419463823512950212404736315 }
//! TkaDelegation ::= SEQUENCE {
//!     products     SEQUENCE SIZE (1..MAX) OF UTF8String,
//!     maxLifetime  INTEGER (1..MAX),   -- seconds
//!     seats        INTEGER (1..MAX) OPTIONAL }
//! ```
//!
//! The issuer always marks it critical (a verifier that does not know it
//! must refuse the certificate). tka enforces it wherever it appears,
//! critical or not: a constraint the issuer wrote is never ignored.

/// OID of the tka delegation extension, a UUID OID under `2.25` (ITU-T X.667).
pub const TKA_DELEGATION_OID: &str = "2.25.236812418305419463823512950212404736315";

/// What a delegated certificate allows the tokens below it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delegation {
    /// The products tokens may be for (`aud`).
    pub products: Vec<String>,
    /// The longest token lifetime (`exp - nbf`), seconds; a perpetual
    /// token is outside any delegation.
    pub max_lifetime_secs: u64,
    /// A cap on the machines the holder activates at once. Recorded for
    /// the holder (the activation host enforces it); machines cannot count
    /// seats and do not check it.
    pub seats: Option<u32>,
}

impl Delegation {
    /// Whether the delegation is one tka writes: at least one product, each
    /// a plain name ([`crate::core::request::PLAIN_NAME_RULE`]) and none
    /// twice, a lifetime of at least a second, a seat cap of at least 1.
    pub fn validate(&self) -> Result<(), String> {
        if self.products.is_empty() {
            return Err("no product: a delegation names at least one".into());
        }
        for (i, p) in self.products.iter().enumerate() {
            if !crate::core::request::is_plain_name(p) {
                return Err(format!("product name {p:?}: {}", crate::core::request::PLAIN_NAME_RULE));
            }
            if self.products[..i].contains(p) {
                return Err(format!("product {p:?} is named twice"));
            }
        }
        if self.max_lifetime_secs == 0 {
            return Err("the longest token lifetime is 0 seconds".into());
        }
        if i64::try_from(self.max_lifetime_secs).is_err() {
            return Err(format!("the longest token lifetime {} s is out of range", self.max_lifetime_secs));
        }
        if self.seats == Some(0) {
            return Err("a seat cap of 0".into());
        }
        Ok(())
    }

    /// The extension value (DER of `TkaDelegation`).
    pub fn to_der(&self) -> Vec<u8> {
        let products: Vec<u8> = self.products.iter().flat_map(|p| tlv(0x0c, p.as_bytes())).collect();
        let mut body = tlv(0x30, &products);
        body.extend(tlv(0x02, &unsigned(self.max_lifetime_secs)));
        if let Some(s) = self.seats {
            body.extend(tlv(0x02, &unsigned(u64::from(s))));
        }
        tlv(0x30, &body)
    }

    /// Parses the extension value: strict DER, no trailing bytes, and
    /// [`Delegation::validate`]. The error says what is wrong.
    pub fn from_der(der: &[u8]) -> Result<Delegation, String> {
        let (content, rest) = read(der, 0x30, "TkaDelegation")?;
        if !rest.is_empty() {
            return Err("trailing bytes after TkaDelegation".into());
        }
        let (mut list, mut fields) = read(content, 0x30, "products")?;
        let mut products = Vec::new();
        while !list.is_empty() {
            let (name, next) = read(list, 0x0c, "product (UTF8String)")?;
            products.push(String::from_utf8(name.to_vec()).map_err(|_| "a product name is not UTF-8".to_string())?);
            list = next;
        }
        let (lifetime, next) = read(fields, 0x02, "maxLifetime")?;
        fields = next;
        let max_lifetime_secs = integer(lifetime, "maxLifetime")?;
        let seats = if fields.is_empty() {
            None
        } else {
            let (seats, next) = read(fields, 0x02, "seats")?;
            if !next.is_empty() {
                return Err("trailing fields after seats".into());
            }
            Some(u32::try_from(integer(seats, "seats")?).map_err(|_| "seats is out of range".to_string())?)
        };
        let d = Delegation { products, max_lifetime_secs, seats };
        d.validate()?;
        Ok(d)
    }

    /// Whether a token for product `aud`, valid from `nbf` to `exp`, is
    /// within this delegation; the error says why not (in the words of
    /// [`crate::core::error::VerifyError::OutsideDelegation`]).
    pub fn permits(&self, aud: &str, nbf: i64, exp: Option<i64>) -> Result<(), String> {
        if !self.products.iter().any(|p| p == aud) {
            return Err(format!("product {aud:?} is not delegated ({})", self.products.join(",")));
        }
        let Some(exp) = exp else {
            return Err("a perpetual token".into());
        };
        let lifetime = i128::from(exp) - i128::from(nbf);
        if lifetime > i128::from(self.max_lifetime_secs) {
            return Err(format!(
                "lifetime of {} exceeds the delegated {}",
                seconds(lifetime),
                seconds(i128::from(self.max_lifetime_secs))
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for Delegation {
    /// `products a,b; tokens up to 180d; seats 50`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "products {}; tokens up to {}",
            self.products.join(","),
            seconds(i128::from(self.max_lifetime_secs))
        )?;
        if let Some(s) = self.seats {
            write!(f, "; seats {s}")?;
        }
        Ok(())
    }
}

/// `180d (15552000 s)`, `90m (5400 s)`, `61 s`: whole days, hours or
/// minutes when the count is one.
fn seconds(s: i128) -> String {
    for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s >= n && s % n == 0 {
            return format!("{}{unit} ({s} s)", s / n);
        }
    }
    format!("{s} s")
}

/// DER tag-length-value (definite length, X.690 §8.1.3); also the
/// issuer's certificate writer's.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The content octets of a non-negative INTEGER (minimal, X.690 §8.3).
fn unsigned(n: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    bytes
}

/// One DER element with tag `tag`: its content and what follows it.
fn read<'a>(der: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    let bad = || format!("{what}: not DER");
    match der.first() {
        Some(&t) if t == tag => {}
        Some(&t) => return Err(format!("{what}: expected tag {tag:#04x}, found {t:#04x}")),
        None => return Err(format!("{what} is missing")),
    }
    let first = *der.get(1).ok_or_else(bad)?;
    let (len, start) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(bad());
        }
        let bytes = der.get(2..2 + n).ok_or_else(bad)?;
        // DER: the shortest length form, no leading zero.
        if bytes[0] == 0 {
            return Err(bad());
        }
        let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return Err(bad());
        }
        (len, 2 + n)
    };
    let end = start.checked_add(len).ok_or_else(bad)?;
    let content = der.get(start..end).ok_or_else(bad)?;
    Ok((content, &der[end..]))
}

/// A non-negative, minimally encoded INTEGER that fits 64 bits.
fn integer(content: &[u8], what: &str) -> Result<u64, String> {
    match content {
        [] => return Err(format!("{what}: empty INTEGER")),
        [b, ..] if b & 0x80 != 0 => return Err(format!("{what} is negative")),
        [0, b, ..] if b & 0x80 == 0 => return Err(format!("{what}: INTEGER not minimally encoded")),
        _ => {}
    }
    let digits = if content[0] == 0 { &content[1..] } else { content };
    if digits.len() > 8 {
        return Err(format!("{what} is out of range"));
    }
    Ok(digits.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(seats: Option<u32>) -> Delegation {
        Delegation { products: vec!["a".into(), "b-2".into()], max_lifetime_secs: 180 * 86_400, seats }
    }

    #[test]
    fn der_round_trips() {
        for seats in [None, Some(1), Some(128), Some(u32::MAX)] {
            let der = d(seats).to_der();
            assert_eq!(Delegation::from_der(&der).unwrap(), d(seats));
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        let mut trailing = d(None).to_der();
        trailing.push(0);
        assert_eq!(Delegation::from_der(&trailing).unwrap_err(), "trailing bytes after TkaDelegation");
        let no_products = Delegation { products: vec![], max_lifetime_secs: 1, seats: None }.to_der();
        assert_eq!(Delegation::from_der(&no_products).unwrap_err(), "no product: a delegation names at least one");
        let zero = Delegation { products: vec!["a".into()], max_lifetime_secs: 0, seats: None }.to_der();
        assert_eq!(Delegation::from_der(&zero).unwrap_err(), "the longest token lifetime is 0 seconds");
        // maxLifetime -1
        let negative = [0x30, 0x08, 0x30, 0x03, 0x0c, 0x01, b'a', 0x02, 0x01, 0xff];
        assert_eq!(Delegation::from_der(&negative).unwrap_err(), "maxLifetime is negative");
    }

    #[test]
    fn permits_products_lifetimes_and_never_perpetual() {
        let d = d(None);
        assert_eq!(d.permits("a", 0, Some(180 * 86_400)), Ok(()));
        assert_eq!(d.permits("c", 0, Some(60)).unwrap_err(), "product \"c\" is not delegated (a,b-2)");
        assert_eq!(
            d.permits("a", 0, Some(181 * 86_400)).unwrap_err(),
            "lifetime of 181d (15638400 s) exceeds the delegated 180d (15552000 s)"
        );
        assert_eq!(d.permits("a", 0, None).unwrap_err(), "a perpetual token");
    }
}
