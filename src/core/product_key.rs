//! Product keys: what a customer types to activate a machine online
//! against an entitlement (`tka activate --online URL --key KEY`).
//!
//! A key is 25 characters of Crockford-style base32 without the ambiguous
//! letters I, L, O and U (alphabet [`ALPHABET`]: `0-9` and 22 letters),
//! printed in five groups of five: `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`. The
//! first 24 characters are 120 random bits; the last is a check character,
//! the weighted sum `Σ (2i + 1) · v(i)` over the first 24 values `v(i)`
//! modulo 32. Every weight is odd, so any one mistyped character is caught,
//! and so is any swap of two neighbours whose values do not differ by
//! exactly 16: a typo is found on the machine, before any network call.
//!
//! Parsing ([`ProductKey::parse`]) accepts lower case, spaces and dashes
//! anywhere (or none), and reads `O` as `0` and `I`/`L` as `1` as Crockford
//! does; `U` and anything else outside the alphabet is
//! [`ProductKeyError::BadCharacter`].
//!
//! The issuer stores only [`ProductKey::hash`]: SHA-256 over a
//! domain-separation prefix and the canonical 25 characters. Keys carry 120
//! random bits, so a plain hash cannot be reversed by guessing and no slow
//! key-derivation function is needed.

use sha2::{Digest, Sha256};
use std::fmt;

/// The 32 characters of a key, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Characters in a key, the check character included.
pub const KEY_LEN: usize = 25;

/// Prefix of the stored hash (domain separation).
const HASH_DOMAIN: &[u8] = b"tka-product-key-v1\0";

/// A product key that passed its check character.
#[derive(Clone, PartialEq, Eq)]
pub struct ProductKey([u8; KEY_LEN]);

/// Why a string is not a product key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProductKeyError {
    /// Not 25 characters once spaces and dashes are removed.
    WrongLength {
        /// Characters found.
        found: usize,
    },
    /// A character outside the alphabet.
    BadCharacter {
        /// The character.
        character: char,
        /// Its position among the key's characters (1-based, dashes and spaces not counted).
        position: usize,
    },
    /// The check character does not match the others: a typo.
    CheckFailed,
}

impl fmt::Display for ProductKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProductKeyError::WrongLength { found } => {
                write!(f, "a product key has {KEY_LEN} characters (XXXXX-XXXXX-XXXXX-XXXXX-XXXXX), not {found}")
            }
            ProductKeyError::BadCharacter { character, position } => write!(
                f,
                "the key has a typo: character {position} ({character:?}) is not one a key uses (0-9 and A-Z \
                 without I, L, O, U)"
            ),
            ProductKeyError::CheckFailed => f.write_str("the key has a typo (check character does not match)"),
        }
    }
}

impl std::error::Error for ProductKeyError {}

/// The value of a key character, reading lower case and Crockford's
/// aliases (`O` is `0`, `I` and `L` are `1`).
fn value(c: char) -> Option<u8> {
    let c = match c.to_ascii_uppercase() {
        'O' => '0',
        'I' | 'L' => '1',
        c => c,
    };
    ALPHABET.iter().position(|&a| char::from(a) == c).map(|v| v as u8)
}

/// The check value of the first 24 values.
fn check(values: &[u8]) -> u8 {
    let sum: u32 = values.iter().enumerate().map(|(i, &v)| (2 * i as u32 + 1) * u32::from(v)).sum();
    (sum % 32) as u8
}

impl ProductKey {
    /// A new random key.
    pub fn generate() -> ProductKey {
        let mut random = [0u8; KEY_LEN - 1];
        getrandom::fill(&mut random).expect("the operating system's random numbers");
        let values: Vec<u8> = random.iter().map(|b| b & 31).collect();
        Self::from_values(&values)
    }

    fn from_values(values: &[u8]) -> ProductKey {
        let mut out = [0u8; KEY_LEN];
        for (o, &v) in out.iter_mut().zip(values) {
            *o = ALPHABET[usize::from(v)];
        }
        out[KEY_LEN - 1] = ALPHABET[usize::from(check(values))];
        ProductKey(out)
    }

    /// Parses a key as a person typed it: lower case, spaces and dashes
    /// anywhere are accepted; the check character must match.
    pub fn parse(s: &str) -> Result<ProductKey, ProductKeyError> {
        let chars: Vec<char> = s.chars().filter(|c| *c != '-' && !c.is_whitespace()).collect();
        let mut values = Vec::with_capacity(KEY_LEN);
        for (i, &c) in chars.iter().enumerate() {
            match value(c) {
                Some(v) => values.push(v),
                None => return Err(ProductKeyError::BadCharacter { character: c, position: i + 1 }),
            }
        }
        if values.len() != KEY_LEN {
            return Err(ProductKeyError::WrongLength { found: values.len() });
        }
        if check(&values[..KEY_LEN - 1]) != values[KEY_LEN - 1] {
            return Err(ProductKeyError::CheckFailed);
        }
        Ok(Self::from_values(&values[..KEY_LEN - 1]))
    }

    /// The 25 characters without dashes.
    pub fn canonical(&self) -> &str {
        std::str::from_utf8(&self.0).expect("alphabet characters")
    }

    /// What the issuer stores: lowercase hex of SHA-256 over a
    /// domain-separation prefix and [`ProductKey::canonical`].
    pub fn hash(&self) -> String {
        let d = Sha256::new().chain_update(HASH_DOMAIN).chain_update(self.0).finalize();
        super::hex::lower_hex(&d)
    }
}

impl fmt::Display for ProductKey {
    /// `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.canonical();
        write!(f, "{}-{}-{}-{}-{}", &s[0..5], &s[5..10], &s[10..15], &s[15..20], &s[20..25])
    }
}

impl fmt::Debug for ProductKey {
    /// Never the key itself: the first characters of its hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProductKey(hash {}…)", &self.hash()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_prints_in_groups_and_parses_back_in_any_case() {
        let k = ProductKey::generate();
        let shown = k.to_string();
        assert_eq!(shown.len(), 29);
        assert_eq!(shown.matches('-').count(), 4);
        assert_eq!(ProductKey::parse(&shown).unwrap(), k);
        assert_eq!(ProductKey::parse(&shown.to_lowercase().replace('-', " ")).unwrap(), k);
        assert_eq!(ProductKey::parse(&format!(" {}- ", k.canonical())).unwrap(), k);
    }

    #[test]
    fn every_single_character_typo_is_caught() {
        let k = ProductKey::generate();
        let s = k.canonical().as_bytes().to_vec();
        for i in 0..KEY_LEN {
            for &a in ALPHABET {
                if a == s[i] {
                    continue;
                }
                let mut t = s.clone();
                t[i] = a;
                assert_eq!(
                    ProductKey::parse(std::str::from_utf8(&t).unwrap()),
                    Err(ProductKeyError::CheckFailed),
                    "position {i} as {}",
                    a as char
                );
            }
        }
    }

    #[test]
    fn wrong_length_and_bad_characters_are_named() {
        assert_eq!(ProductKey::parse("ABCDE-12345"), Err(ProductKeyError::WrongLength { found: 10 }));
        assert_eq!(
            ProductKey::parse("ABCDU-12345-ABCDE-12345-ABCDE"),
            Err(ProductKeyError::BadCharacter { character: 'U', position: 5 })
        );
        assert_eq!(ProductKeyError::CheckFailed.to_string(), "the key has a typo (check character does not match)");
    }

    #[test]
    fn crockford_aliases_read_as_digits_and_the_hash_is_domain_separated() {
        let k = ProductKey::from_values(&[
            0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
        ]);
        let typed = k.canonical().replacen('0', "o", 1).replacen('1', "I", 1).replacen('1', "l", 1);
        assert_eq!(ProductKey::parse(&typed).unwrap(), k);
        let plain: String = Sha256::digest(k.canonical().as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(k.hash(), plain);
        assert_eq!(k.hash().len(), 64);
        assert!(!format!("{k:?}").contains(k.canonical()));
    }
}
