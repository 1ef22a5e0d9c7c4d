//! The token bundle format: JSON Lines, one token per line, labelled with
//! its product, machine and serial. The issuer writes a batch's tokens into
//! one bundle; each machine picks its own line (`tka activate --bundle`).
//!
//! This module holds the format's one writer ([`push_line`]) and one reader
//! ([`parse_line`]). The labels are not signed: they only select which line
//! a machine verifies.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// One line of a token bundle, owned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleLine {
    /// Product.
    pub product: String,
    /// The machine the token is for.
    pub cmid: String,
    /// Token serial.
    pub serial: String,
    /// The token (JWS compact).
    pub token: String,
}

/// One line of a token bundle as read, borrowing from the text where it can.
/// Its `serial` is not read: the token carries it, signed.
#[derive(Debug, Deserialize)]
pub struct BundleLineRef<'a> {
    /// Product.
    #[serde(borrow)]
    pub product: Cow<'a, str>,
    /// The machine the token is for.
    #[serde(borrow)]
    pub cmid: Cow<'a, str>,
    /// The token (JWS compact).
    #[serde(borrow)]
    pub token: Cow<'a, str>,
}

/// Reads one bundle line (without its line break).
pub fn parse_line(text: &str) -> Result<BundleLineRef<'_>, serde_json::Error> {
    serde_json::from_str(text)
}

/// Appends the bundle line of a token and a newline to `out`, exactly as
/// `serde_json` writes a [`BundleLine`]. A JWS compact text is base64url and
/// dots, which JSON never escapes, so the (large) token goes in as it is;
/// anything else takes the general path.
pub fn push_line(out: &mut String, product: &str, cmid: &str, serial: &str, token: &str) {
    // A label of printable ASCII without `"` or `\` is written as it is
    // (serde_json escapes nothing else there); anything else is escaped.
    let push_json = |out: &mut String, s: &str| {
        if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
            out.push('"');
            out.push_str(s);
            out.push('"');
        } else {
            out.push_str(&serde_json::to_string(s).expect("a string serializes"));
        }
    };
    // Checked 64 bytes at a time without branching, so that it vectorizes.
    let plain = token.as_bytes().chunks(64).all(|c| {
        c.iter().fold(true, |ok, &b| ok & (b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_') | (b == b'.')))
    });
    if plain {
        out.push_str("{\"product\":");
        push_json(out, product);
        out.push_str(",\"cmid\":");
        push_json(out, cmid);
        out.push_str(",\"serial\":");
        push_json(out, serial);
        out.push_str(",\"token\":\"");
        out.push_str(token);
        out.push_str("\"}");
    } else {
        let line = BundleLine {
            product: product.to_string(),
            cmid: cmid.to_string(),
            serial: serial.to_string(),
            token: token.to_string(),
        };
        out.push_str(&serde_json::to_string(&line).expect("a bundle line serializes"));
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast line is exactly what `serde_json` writes for a [`BundleLine`],
    /// and the reader reads it back.
    #[test]
    fn bundle_line_is_serde_json() {
        for (product, cmid, text) in [
            ("bench", "AB12-cd", "eyJh.eyJi.c2ln-_"),
            ("we\"ird\\é\u{1}", "c\nmid", "eyJh.eyJi.c2ln"),
            ("p", "c", "not \"plain\" token\n"),
            ("p", "c", ""),
            ("p/q r~", "c\u{7f}", "eyJh.eyJi.c2ln"),
            ("p'", "c\\", "eyJh.eyJi.c2ln"),
        ] {
            let mut fast = String::new();
            push_line(&mut fast, product, cmid, "0123abcd", text);
            let line = BundleLine {
                product: product.into(),
                cmid: cmid.into(),
                serial: "0123abcd".into(),
                token: text.into(),
            };
            assert_eq!(fast, serde_json::to_string(&line).unwrap() + "\n");
            assert_eq!(serde_json::from_str::<BundleLine>(fast.trim_end()).unwrap(), line);
            let read = parse_line(fast.trim_end()).unwrap();
            assert_eq!((&*read.product, &*read.cmid, &*read.token), (product, cmid, text));
        }
    }
}
