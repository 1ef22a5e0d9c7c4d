//! Strict JSON: duplicate member names are an error (RFC 8725 §3.x asks
//! JWT consumers not to guess which one wins), nesting is bounded by
//! serde_json's recursion limit (128), and the input must be UTF-8.

use crate::core::error::VerifyError;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

const DUP_PREFIX: &str = "duplicate JSON member ";

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(Strict(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if m.contains_key(&k) {
                // The key is JSON-quoted: serde_json parses a trailing "at line L column C"
                // out of custom messages, which a bare key could spell.
                let quoted = serde_json::to_string(&k).unwrap_or_default();
                return Err(de::Error::custom(format!("{DUP_PREFIX}{quoted}")));
            }
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}

/// Checks that `bytes` are one well-formed JSON value (UTF-8, nesting
/// bounded, no trailing data) without looking for duplicate member names,
/// and returns it (a repeated name keeps its last value). Verification runs
/// this on header and payload before [`parse`] looks for duplicates in
/// either (docs/verification.md, step 1). `what` names the input in errors.
pub fn parse_well_formed(bytes: &[u8], what: &'static str) -> Result<Value, VerifyError> {
    let text = std::str::from_utf8(bytes).map_err(|_| VerifyError::Malformed { what, detail: "not UTF-8".into() })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Value::deserialize(&mut de)
        .map_err(|e| VerifyError::Malformed { what, detail: format!("invalid JSON: {e}") })?;
    de.end().map_err(|_| VerifyError::Malformed { what, detail: "trailing data after the JSON value".into() })?;
    Ok(value)
}

/// Parses `bytes` as one strict JSON value: well-formed as
/// [`parse_well_formed`] requires, and no object repeats a member name
/// ([`VerifyError::DuplicateKey`]). `what` names the input in errors.
pub fn parse(bytes: &[u8], what: &'static str) -> Result<Value, VerifyError> {
    let text = std::str::from_utf8(bytes).map_err(|_| VerifyError::Malformed { what, detail: "not UTF-8".into() })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = match Strict::deserialize(&mut de) {
        Ok(Strict(v)) => v,
        Err(e) => {
            let msg = e.to_string();
            return Err(match msg.strip_prefix(DUP_PREFIX) {
                // `"<key>" at line L column C`; the quoted key may itself contain " at line ".
                Some(rest) => {
                    let quoted = rest.rsplit_once(" at line ").map_or(rest, |(key, _)| key);
                    VerifyError::DuplicateKey {
                        key: serde_json::from_str(quoted).unwrap_or_else(|_| quoted.to_string()),
                    }
                }
                None => VerifyError::Malformed { what, detail: format!("invalid JSON: {msg}") },
            });
        }
    };
    de.end().map_err(|_| VerifyError::Malformed { what, detail: "trailing data after the JSON value".into() })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_top_level() {
        assert_eq!(parse(br#"{"a":1,"a":2}"#, "x").unwrap_err(), VerifyError::DuplicateKey { key: "a".into() });
    }

    #[test]
    fn duplicate_nested() {
        assert_eq!(parse(br#"{"a":{"b":1,"b":1}}"#, "x").unwrap_err(), VerifyError::DuplicateKey { key: "b".into() });
    }

    #[test]
    fn deep_nesting_refused() {
        let s = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(parse(s.as_bytes(), "x"), Err(VerifyError::Malformed { .. })));
    }

    #[test]
    fn trailing_garbage() {
        assert!(matches!(parse(b"{} x", "x"), Err(VerifyError::Malformed { .. })));
    }

    #[test]
    fn well_formed_ignores_duplicates_but_not_syntax() {
        assert!(parse_well_formed(br#"{"a":1,"a":2}"#, "x").is_ok());
        assert!(matches!(parse_well_formed(b"{} x", "x"), Err(VerifyError::Malformed { .. })));
        let s = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(parse_well_formed(s.as_bytes(), "x"), Err(VerifyError::Malformed { .. })));
    }

    #[test]
    fn non_utf8() {
        assert_eq!(
            parse(b"{\"a\":\"\xff\"}", "x").unwrap_err(),
            VerifyError::Malformed { what: "x", detail: "not UTF-8".into() }
        );
    }
}
