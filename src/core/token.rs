//! Activation tokens: claims, the signer, and decoding. Issuing (options,
//! claims for a request) is the issuer wing's (`issuer::issue`).
//!
//! A token is a JWS (RFC 7515) compact serialization, PS256 by default,
//! whose protected header carries `alg`, `typ` (`tka-token+jwt`), `kid` (the
//! SHA-256 fingerprint of the signer certificate) and `x5c` (signer
//! certificate, then intermediates); a *compact* token has no `x5c` and the
//! verifier finds the chain by `kid` among certificates it knows
//! ([`crate::core::verify::VerifyContext::certificates`]). Any JOSE library
//! holding the signer certificate can check the signature.

use crate::core::error::{Result, VerifyError};
use crate::core::jws::{self, DecodedJws, TOKEN_TYP};
use crate::core::machine::{ComponentHash, MatchRule};
use serde::{Deserialize, Serialize};

/// The claims of an activation token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Serial number of the token (32 hex digits).
    pub jti: String,
    /// The machine's CMID.
    pub sub: String,
    /// The product.
    pub aud: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Expiry, Unix seconds; absent for a perpetual token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// tka-specific claims.
    pub tka: TkaClaims,
}

/// The `tka` claim object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TkaClaims {
    /// Claims format version, 1.
    pub v: u8,
    /// Licensed features.
    #[serde(default)]
    pub features: Vec<String>,
    /// Edition name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edition: Option<String>,
    /// Entitlement the token was counted against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<String>,
    /// Component hashes the token is bound to.
    #[serde(default)]
    pub components: Vec<ComponentHash>,
    /// How many components must still match.
    #[serde(rename = "match")]
    pub match_rule: MatchRule,
    /// When the machine should ask for a renewal, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_after: Option<i64>,
    /// Seconds after `exp` during which the token still activates (reported as grace).
    #[serde(default)]
    pub grace: i64,
    /// The issuer chose to bind without a hardware anchor or explicit
    /// identity (`--allow-weak-binding`); see [`crate::core::machine::check_binding`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub weak_binding: bool,
}

/// How long a token lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLifetime {
    /// `exp = iat + days`.
    Days(u32),
    /// `exp = iat + seconds`; at least [`MIN_TOKEN_LIFETIME_SECS`].
    Seconds(u64),
    /// No `exp`: valid as long as its signer certificate chain is valid.
    Perpetual,
}

/// The shortest token lifetime the library signs: one minute.
pub const MIN_TOKEN_LIFETIME_SECS: u64 = 60;

impl TokenLifetime {
    /// The lifetime in seconds; `None` for [`TokenLifetime::Perpetual`].
    pub fn seconds(&self) -> Option<u64> {
        match *self {
            TokenLifetime::Days(d) => Some(u64::from(d) * crate::core::clock::DAY as u64),
            TokenLifetime::Seconds(s) => Some(s),
            TokenLifetime::Perpetual => None,
        }
    }
}

/// The fewest base64url characters of a token signature: RSA-2048, 256 bytes.
const MIN_SIGNATURE_CHARS: usize = 342;

/// A token as a person pasted or typed it, made ready to decode: spaces and
/// line breaks anywhere in it (a mail client or terminal wrapping it) are
/// removed. Text that cannot be a whole token is refused as
/// [`VerifyError::Malformed`] saying what happened to it: it ends early
/// (fewer than three parts, a last part cut short: "was it cut when
/// copied?"), or holds a character no token holds ("was it mistyped?").
/// Whatever passes is decoded and verified as strictly as ever.
pub fn from_pasted(text: &str) -> Result<String, VerifyError> {
    // A token file as tka writes it is ASCII with at most a line break: its
    // bytes are looked at, not decoded to characters one by one (the same
    // result: the ASCII characters `char::is_whitespace` holds are tab to
    // carriage return and space).
    let compact: String = if text.is_ascii() {
        let ascii_space = |b: &u8| matches!(b, b'\t'..=b'\r' | b' ');
        let kept: Vec<u8> = text.bytes().filter(|b| !ascii_space(b)).collect();
        // ASCII bytes are UTF-8 text.
        String::from_utf8(kept).unwrap_or_default()
    } else {
        text.chars().filter(|c| !c.is_whitespace()).collect()
    };
    if compact.len() > jws::MAX_JWS_SIZE {
        return Err(VerifyError::TooLarge { what: "token", limit: jws::MAX_JWS_SIZE });
    }
    let pasted = |detail: String| VerifyError::Malformed { what: "token", detail };
    if compact.is_empty() {
        return Err(pasted("the text is empty".into()));
    }
    let token_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let stray = if compact.bytes().all(token_char) {
        None
    } else {
        compact.chars().enumerate().find(|(_, c)| !(c.is_ascii() && token_char(*c as u8)))
    };
    if let Some((at, c)) = stray {
        return Err(pasted(format!("character {c:?} at position {} cannot be in a token: was it mistyped?", at + 1)));
    }
    let parts: Vec<&str> = compact.split('.').collect();
    let cut = |detail: &str| pasted(format!("the text ends early ({detail}): was it cut when copied?"));
    if parts.len() < 3 {
        return Err(cut(&format!("{} of the 3 dot-separated parts", parts.len())));
    }
    // An empty signature is no cut: it is the unsecured form, which the
    // decoder refuses by its `alg`.
    if parts.len() == 3 && !parts[2].is_empty() && parts[2].len() < MIN_SIGNATURE_CHARS {
        return Err(cut(&format!(
            "a signature of {} characters, at least {MIN_SIGNATURE_CHARS} expected",
            parts[2].len()
        )));
    }
    Ok(compact)
}

/// Decodes a token without deciding whether to trust it (`tka token inspect`).
pub fn decode_unverified(text: &str) -> Result<(DecodedJws, Claims), VerifyError> {
    let jws = jws::decode(text, TOKEN_TYP)?;
    let claims = parse_claims(&jws.payload)?;
    Ok((jws, claims))
}

/// Interprets a payload as token claims.
pub fn parse_claims(payload: &serde_json::Value) -> Result<Claims, VerifyError> {
    let claims: Claims =
        serde_json::from_value(payload.clone()).map_err(|e| VerifyError::BadClaims { detail: e.to_string() })?;
    if claims.tka.v != 1 {
        return Err(VerifyError::BadClaims { detail: format!("unsupported tka claims version {}", claims.tka.v) });
    }
    if claims.tka.grace < 0 {
        return Err(VerifyError::BadClaims { detail: "negative grace period".into() });
    }
    Ok(claims)
}

#[cfg(test)]
mod pasted_tests {
    use super::*;

    /// A text shaped like a token: three parts, a signature long enough.
    fn shaped() -> String {
        format!("eyJhbGciOiJQUzI1NiJ9.eyJzdWIiOiJ4In0.{}", "s".repeat(MIN_SIGNATURE_CHARS))
    }

    /// Every whitespace character is removed, ASCII (tab to carriage return,
    /// space) or not (no-break space, line separator), wherever it stands.
    #[test]
    fn pasted_whitespace_is_removed_wherever_it_stands() {
        let token = shaped();
        for space in ["\t", "\n", "\u{b}", "\u{c}", "\r\n", " ", "\u{a0}", "\u{2028}", "\u{3000}"] {
            let pasted = format!("{space}{}{space}{}{space}", &token[..10], &token[10..]);
            assert_eq!(from_pasted(&pasted).unwrap(), token, "{space:?}");
        }
        assert_eq!(from_pasted(&token).unwrap(), token);
    }

    /// A character no token holds is named with its position (in
    /// characters, after the whitespace is removed), ASCII or not.
    #[test]
    fn a_character_outside_the_token_alphabet_is_named_with_its_position() {
        let token = shaped();
        for (stray, shown) in [("!", "'!'"), ("é", "'é'"), ("\u{0}", "'\\0'")] {
            let text = format!("{} {stray}{}", &token[..4], &token[4..]);
            let detail = format!("character {shown} at position 5 cannot be in a token: was it mistyped?");
            assert_eq!(from_pasted(&text), Err(VerifyError::Malformed { what: "token", detail }), "{stray:?}");
        }
    }
}
