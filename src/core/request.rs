//! The activation request: what an air-gapped machine hands to the issuer.
//!
//! Two forms carry the same content:
//! - a JSON file (`tka request create --out req.json`), readable by people;
//! - a one-line text form for copy-paste and QR codes, `TKAR1-` followed by
//!   base64url of a compact binary encoding with a 4-byte checksum, so a
//!   mistyped character is caught before issuance. With ten components it
//!   is about 320 characters.
//!
//! Only salted component hashes leave the machine, never raw identifiers.

use crate::core::error::{Error, Result, VerifyError};
use crate::core::machine::{ComponentHash, MachineIdentity};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prefix of the one-line text form.
pub const TEXT_PREFIX: &str = "TKAR1-";
/// Largest request accepted in either form, bytes.
pub const MAX_REQUEST_SIZE: usize = 16 * 1024;
/// Longest product, CMID or hostname, bytes.
const MAX_FIELD: usize = 255;
/// Most components a request may carry.
pub const MAX_COMPONENTS: usize = 32;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// An activation request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationRequest {
    /// Format version, 1.
    pub version: u8,
    /// The product to activate.
    pub product: String,
    /// The machine's CMID.
    pub cmid: String,
    /// Salted component hashes.
    pub components: Vec<ComponentHash>,
    /// When the request was made, Unix seconds.
    pub created: i64,
    /// 8 random bytes, base64url, so two requests are never identical.
    pub nonce: String,
    /// The machine's host name, if the user chose to include it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl ActivationRequest {
    /// Creates a request for `identity` at time `now`.
    pub fn new(identity: &MachineIdentity, now: i64, hostname: Option<String>) -> Self {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).expect("operating system random number generator");
        ActivationRequest {
            version: 1,
            product: identity.product().to_string(),
            cmid: identity.cmid().to_string(),
            components: identity.components().to_vec(),
            created: now,
            nonce: B64URL.encode(nonce),
            hostname,
        }
    }

    /// The JSON file form, pretty-printed.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a request always serializes") + "\n"
    }

    /// The one-line text form.
    pub fn to_text(&self) -> Result<String> {
        let mut b = vec![1u8];
        b.extend_from_slice(&self.created.to_be_bytes());
        let nonce = B64URL.decode(&self.nonce).map_err(|_| Error::format("request", "nonce is not base64url"))?;
        put_bytes(&mut b, &nonce)?;
        put_bytes(&mut b, self.product.as_bytes())?;
        put_bytes(&mut b, self.cmid.as_bytes())?;
        put_bytes(&mut b, self.hostname.as_deref().unwrap_or("").as_bytes())?;
        if self.components.len() > MAX_COMPONENTS {
            return Err(Error::format("request", "too many components"));
        }
        b.push(self.components.len() as u8);
        for c in &self.components {
            put_bytes(&mut b, c.kind.as_bytes())?;
            let h = B64URL.decode(&c.hash).map_err(|_| Error::format("request", "component hash is not base64url"))?;
            put_bytes(&mut b, &h)?;
        }
        let sum = Sha256::digest(&b);
        b.extend_from_slice(&sum[..4]);
        Ok(format!("{TEXT_PREFIX}{}", B64URL.encode(b)))
    }

    /// Parses either form (JSON or text), detected from the content.
    pub fn parse(input: &str) -> Result<Self, VerifyError> {
        if input.len() > MAX_REQUEST_SIZE {
            return Err(VerifyError::TooLarge { what: "request", limit: MAX_REQUEST_SIZE });
        }
        let t = input.trim();
        // The text form as pasted: spaces and line breaks (wrapping) removed.
        let pasted: String = t.chars().filter(|c| !c.is_whitespace()).collect();
        let req = if let Some(body) = pasted.strip_prefix(TEXT_PREFIX) {
            Self::parse_text(body)?
        } else if t.starts_with('{') {
            let v = crate::core::json::parse(t.as_bytes(), "request")?;
            serde_json::from_value(v).map_err(|e| bad(format!("invalid request JSON: {e}")))?
        } else {
            return Err(bad(format!("neither a JSON request nor a {TEXT_PREFIX}... text request")));
        };
        req.validate()?;
        Ok(req)
    }

    fn parse_text(body: &str) -> Result<Self, VerifyError> {
        let b = B64URL.decode(body).map_err(|e| match e {
            base64::DecodeError::InvalidByte(at, c) => bad(format!(
                "character {:?} at position {} cannot be in a text request: was it mistyped?",
                char::from(c),
                TEXT_PREFIX.len() + at + 1
            )),
            // A length no encoding has, or stray bits in the last
            // character: the text was most likely cut.
            base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidLastSymbol(..) => bad(CUT.into()),
            e => bad(format!("the text is damaged ({e}): was it mistyped or cut when copied?")),
        })?;
        if b.len() < 5 {
            return Err(bad(CUT.into()));
        }
        let (data, sum) = b.split_at(b.len() - 4);
        if Sha256::digest(data)[..4] != *sum {
            // Read as if whole: a text that runs out before its last field
            // was cut; one that reads through was changed.
            if matches!(Self::fields(&b), Err(VerifyError::Malformed { detail, .. }) if detail == CUT) {
                return Err(bad(CUT.into()));
            }
            return Err(bad("checksum mismatch: the text was changed or mistyped".into()));
        }
        Self::fields(data)
    }

    /// The fields of the text form's binary encoding (without checksum).
    fn fields(data: &[u8]) -> Result<Self, VerifyError> {
        let mut r = Reader(data);
        let version = r.u8()?;
        if version != 1 {
            return Err(bad(format!("unsupported request version {version}")));
        }
        let created = i64::from_be_bytes(r.take(8)?.try_into().expect("8 bytes"));
        let nonce = B64URL.encode(r.bytes()?);
        let product = r.string()?;
        let cmid = r.string()?;
        let hostname = Some(r.string()?).filter(|h| !h.is_empty());
        let n = r.u8()? as usize;
        let mut components = Vec::with_capacity(n);
        for _ in 0..n {
            let kind = r.string()?;
            let hash = B64URL.encode(r.bytes()?);
            components.push(ComponentHash { kind, hash });
        }
        if !r.0.is_empty() {
            return Err(bad("trailing bytes in text form".into()));
        }
        Ok(ActivationRequest { version, product, cmid, components, created, nonce, hostname })
    }

    fn validate(&self) -> Result<(), VerifyError> {
        self.check_fields().map_err(bad)
    }

    /// Checks every field but the binding (which
    /// [`crate::core::machine::check_binding`] checks at issuance): the version;
    /// the product is a plain name ([`is_plain_name`], the store's character
    /// set); no field holds control or bidirectional-format characters; the
    /// CMID and host name are at most 255 bytes; the nonce is base64url; at
    /// most [`MAX_COMPONENTS`] components. Parsing already checks this; the
    /// issuer checks again whatever built the request. The error says what
    /// is wrong, with any offending text escaped.
    pub fn check_fields(&self) -> Result<(), String> {
        if self.version != 1 {
            return Err(format!("unsupported request version {}", self.version));
        }
        if !is_plain_name(&self.product) {
            return Err(format!(
                "product {:?} is not a product name (1 to 64 letters, digits, '.', '_' or '-', not starting with '.')",
                self.product
            ));
        }
        for (what, value) in
            [("cmid", Some(&self.cmid)), ("hostname", self.hostname.as_ref()), ("nonce", Some(&self.nonce))]
        {
            let Some(v) = value else { continue };
            if v.chars().any(is_unprintable) {
                return Err(format!("{what} {v:?} holds control or format characters"));
            }
        }
        if self.cmid.is_empty() || self.cmid.len() > MAX_FIELD {
            return Err("cmid must be 1 to 255 bytes".into());
        }
        if self.hostname.as_ref().is_some_and(|h| h.len() > MAX_FIELD) {
            return Err("hostname longer than 255 bytes".into());
        }
        if self.nonce.len() > 64 || B64URL.decode(&self.nonce).is_err() {
            return Err("nonce is not base64url".into());
        }
        if self.components.len() > MAX_COMPONENTS {
            return Err(format!("more than {MAX_COMPONENTS} components"));
        }
        Ok(())
    }
}

/// What [`is_plain_name`] requires, for messages.
pub const PLAIN_NAME_RULE: &str = "use 1 to 64 letters, digits, '.', '_' or '-' (not starting with '.')";

/// Whether `name` is a plain name: 1 to 64 ASCII letters, digits, `.`, `_`
/// or `-`, not starting with `.` — the character set of product names in
/// the store, also required of features and editions at issuance.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Control characters (C0, DEL, C1) and the invisible format characters
/// that reorder or hide text on a terminal (bidirectional overrides and
/// isolates, zero-width marks).
pub fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// What a text request that ends too soon is refused as.
const CUT: &str = "the text ends early: was it cut when copied?";

fn bad(detail: String) -> VerifyError {
    VerifyError::Malformed { what: "request", detail }
}

fn put_bytes(b: &mut Vec<u8>, s: &[u8]) -> Result<()> {
    if s.len() > MAX_FIELD {
        return Err(Error::format("request", "a field is longer than 255 bytes"));
    }
    b.push(s.len() as u8);
    b.extend_from_slice(s);
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], VerifyError> {
        if self.0.len() < n {
            return Err(bad(CUT.into()));
        }
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, VerifyError> {
        Ok(self.take(1)?[0])
    }
    fn bytes(&mut self) -> Result<&'a [u8], VerifyError> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, VerifyError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| bad("text form field is not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ActivationRequest {
        let raw: Vec<(String, String)> = [
            ("mid", "0123456789abcdef0123456789abcdef"),
            ("dmi", "4c4c4544-0042-3510-8052-b4c04f4e4e32"),
            ("psn", "PF2ABCDE"),
            ("bsn", "L1HF12345"),
            ("csn", "CSN123"),
            ("mac", "00:11:22:33:44:55"),
            ("mac", "00:11:22:33:44:56"),
            ("rfs", "6f0a1f0e-1c2b-4f7e-9a55-0d3c1f2e3a4b"),
            ("dsk", "S4EWNX0N123456"),
            ("cpu", "intel(r) xeon(r) cpu e5-2680 v4 @ 2.40ghz"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let id = MachineIdentity::from_raw("example-pro", &raw);
        ActivationRequest::new(&id, 1_795_000_000, Some("build-07".into()))
    }

    #[test]
    fn text_round_trip_and_size() {
        let r = sample();
        let text = r.to_text().unwrap();
        assert!(text.len() < 400, "text form is {} bytes", text.len());
        assert_eq!(ActivationRequest::parse(&text).unwrap(), r);
    }

    #[test]
    fn json_round_trip() {
        let r = sample();
        assert_eq!(ActivationRequest::parse(&r.to_json()).unwrap(), r);
    }

    #[test]
    fn mistyped_text_is_caught() {
        let text = sample().to_text().unwrap();
        let mut chars: Vec<char> = text.chars().collect();
        let i = TEXT_PREFIX.len() + 20;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let bad: String = chars.into_iter().collect();
        assert!(matches!(
            ActivationRequest::parse(&bad),
            Err(VerifyError::Malformed { what: "request", detail }) if detail.starts_with("checksum mismatch")
        ));
    }

    #[test]
    fn truncated_text_is_refused() {
        let text = sample().to_text().unwrap();
        assert!(ActivationRequest::parse(&text[..text.len() - 10]).is_err());
    }

    #[test]
    fn unknown_json_field_is_refused() {
        let mut v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        v["admin"] = true.into();
        assert!(ActivationRequest::parse(&v.to_string()).is_err());
    }
}
