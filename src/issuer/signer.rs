//! The token signer: a signer certificate, its chain and its key, ready to
//! sign tokens and revocation lists; fresh token serials.

use crate::core::error::{Error, Result};
use crate::core::jws::{self, TOKEN_TYP};
use crate::core::keys::{spki_der, SignatureAlgorithm, Signer};
use crate::core::pki::{CertInfo, Delegation};
use crate::core::token::Claims;
use crate::core::verify::check_delegations;

/// A signer certificate, its chain and its key, ready to issue tokens.
pub struct TokenSigner {
    key: Box<dyn Signer>,
    cert: CertInfo,
    x5c: Vec<Vec<u8>>,
    /// The certificates of the chain that carry a tka delegation, signer first.
    delegated: Vec<CertInfo>,
    /// The base64url protected header of a token, per algorithm (PS256,
    /// RS256) and form (full, compact): the same for every token of this
    /// signer, encoded once.
    token_headers: [std::sync::OnceLock<jws::PreparedHeader>; 4],
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("cert", &self.cert.subject).finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// `chain` is the signer certificate (DER) followed by its intermediates.
    /// Refuses a key that does not match the certificate and a certificate
    /// that is not a token signer.
    pub fn new(key: Box<dyn Signer>, chain: Vec<Vec<u8>>) -> Result<Self> {
        let first = chain.first().ok_or_else(|| Error::Usage("no signer certificate given".into()))?;
        let cert = CertInfo::parse(first)?;
        if spki_der(key.public_key()) != cert.spki_der {
            return Err(Error::Usage(format!("the signer key does not belong to certificate {}", cert.subject)));
        }
        if cert.is_ca || !cert.has_signer_eku() {
            return Err(Error::Refused(format!(
                "{} is not a token-signer certificate (CA:FALSE with the tka token-signing EKU); CA keys never sign tokens",
                cert.subject
            )));
        }
        let mut delegated: Vec<CertInfo> = cert.delegation.is_some().then(|| cert.clone()).into_iter().collect();
        for c in &chain[1..] {
            let info = CertInfo::parse(c)?;
            if info.delegation.is_some() {
                delegated.push(info);
            }
        }
        Ok(TokenSigner { key, cert, x5c: chain, delegated, token_headers: Default::default() })
    }

    /// A signer whose chain is built from `pool`: after `signer` (DER), the
    /// pool's certificate whose subject is its issuer, then that one's
    /// issuer, and so on (a self-issued root ends the chain); the pool's
    /// other certificates are left out. A pool such as an issuer home's
    /// `chain.pem` (its own signer first) or a host's (the host certificate
    /// first) gives the x5c a machine can follow.
    pub fn from_pool(key: Box<dyn Signer>, signer: Vec<u8>, pool: &[Vec<u8>]) -> Result<Self> {
        let pool = pool.iter().map(|d| CertInfo::parse(d)).collect::<std::result::Result<Vec<_>, _>>()?;
        let mut last = CertInfo::parse(&signer)?;
        let mut chain = vec![signer];
        while chain.len() < crate::core::pki::MAX_CHAIN_LEN && !last.is_self_issued() {
            let Some(next) = pool.iter().find(|c| c.subject_raw == last.issuer_raw && !chain.contains(&c.der)) else {
                break;
            };
            chain.push(next.der.clone());
            last = next.clone();
        }
        TokenSigner::new(key, chain)
    }

    /// The delegation of the signer certificate, if it has one (an
    /// activation host's certificate).
    pub fn delegation(&self) -> Option<&Delegation> {
        self.cert.delegation.as_ref()
    }

    /// Whether every delegation in this signer's chain (the signer's own
    /// and its CAs') allows a token with `claims`: the check machines make
    /// ([`check_delegations`]), made before signing so a delegated signer
    /// never signs a token machines refuse
    /// ([`VerifyError::OutsideDelegation`](crate::core::error::VerifyError::OutsideDelegation)).
    pub fn check_delegation(&self, claims: &Claims) -> Result<()> {
        Ok(check_delegations(&self.delegated, claims)?)
    }

    /// The signer certificate.
    pub fn certificate(&self) -> &CertInfo {
        &self.cert
    }

    /// The signing key.
    pub fn key(&self) -> &dyn Signer {
        self.key.as_ref()
    }

    /// The x5c chain (DER, signer first).
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.x5c
    }

    /// Signs an arbitrary payload with this signer's header (`kid`, `x5c`).
    ///
    /// The text is what [`jws::encode`] gives; a token (`typ` is
    /// [`TOKEN_TYP`]) is signed as [`TokenSigner::sign_token`] signs a full
    /// one.
    pub fn sign_payload(&self, payload: &serde_json::Value, typ: &str, alg: SignatureAlgorithm) -> Result<String> {
        if typ != TOKEN_TYP {
            return jws::encode(payload, typ, &self.cert.fingerprint, &self.x5c, alg, self.key.as_ref());
        }
        self.sign_token(payload, alg, false)
    }

    /// Signs token claims: a full token (`kid` and `x5c`) or, with
    /// `compact`, one with `kid` only (no `x5c`; the verifier finds the
    /// chain among certificates it knows). The protected header is encoded
    /// and hashed once per signer, algorithm and form instead of once per
    /// token ([`jws::PreparedHeader`]).
    pub fn sign_token(&self, payload: &serde_json::Value, alg: SignatureAlgorithm, compact: bool) -> Result<String> {
        let slot = match alg {
            SignatureAlgorithm::Ps256 => 0,
            SignatureAlgorithm::Rs256 => 1,
        };
        let slot = &self.token_headers[slot * 2 + usize::from(compact)];
        let header = match slot.get() {
            Some(h) => h,
            None => {
                let x5c: &[Vec<u8>] = if compact { &[] } else { &self.x5c };
                let h = jws::protected_header(TOKEN_TYP, &self.cert.fingerprint, x5c, alg)?;
                slot.get_or_init(|| jws::PreparedHeader::new(h))
            }
        };
        jws::encode_prepared(header, payload, alg, self.key.as_ref())
    }
}

/// A new token serial for a token issued at `now` (Unix seconds): 32
/// lowercase hex digits, of which the first 16 are a sequence that grows
/// with time and the last 16 are 64 random bits, so serials stay
/// unguessable while each sorts after every serial made before it in this
/// process. See [`SerialSequence`].
pub fn new_serial(now: i64) -> String {
    static SERIALS: SerialSequence = SerialSequence::new();
    SERIALS.next(now)
}

/// Makes time-ordered token serials: a new serial sorts after every earlier
/// one of the same sequence, so a ledger's serial index grows at its right
/// edge instead of taking each insert on a random page.
///
/// A serial is 32 lowercase hex digits: 8 of `now` (seconds, clamped to
/// 0..=2³²−1), 8 of a counter of the serials made within that second (a
/// new second starts it at 0; a clock that goes back continues the last
/// second's count, and a count past 2³²−1 moves on to the next second),
/// then 16 digits (64 bits) from the operating system's random generator.
/// Two processes issuing in the same second make interleaved, still
/// distinct serials.
#[derive(Debug, Default)]
pub struct SerialSequence {
    /// The lowest prefix (seconds × 2³² + counter) the next serial may take.
    next: std::sync::atomic::AtomicU64,
}

impl SerialSequence {
    /// A sequence that has made no serial yet.
    pub const fn new() -> Self {
        SerialSequence { next: std::sync::atomic::AtomicU64::new(0) }
    }

    /// The next serial, for a token issued at `now` (Unix seconds).
    pub fn next(&self, now: i64) -> String {
        use std::sync::atomic::Ordering;
        let start = u64::try_from(now.clamp(0, i64::from(u32::MAX))).unwrap_or(0) << 32;
        let free = self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |free| Some(start.max(free).saturating_add(1)))
            .expect("the update always gives a value");
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("operating system random number generator");
        serial_text(start.max(free), u64::from_be_bytes(random))
    }
}

/// A serial's text: `prefix` (seconds × 2³² + counter) and 64 random bits,
/// 32 lowercase hex digits.
pub(crate) fn serial_text(prefix: u64, random: u64) -> String {
    crate::core::hex::lower_hex(&((u128::from(prefix) << 64) | u128::from(random)).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::SoftwareKey;
    use crate::issuer::certs::{create_certificate, CertKind, CertRequest};

    fn key(name: &str) -> SoftwareKey {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("certs/test/{name}.key"));
        SoftwareKey::from_pkcs8_pem(&std::fs::read_to_string(&path).unwrap(), None, &path).unwrap()
    }

    /// A serial is 32 lowercase hex digits, a new one each time.
    #[test]
    fn serials_are_32_lowercase_hex_digits() {
        let (a, b) = (new_serial(1_800_000_000), new_serial(1_800_000_000));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')), "{a}");
        assert_ne!(a, b);
    }

    /// With a controlled clock, each serial sorts after the one before:
    /// within a second, across seconds, and when the clock goes back.
    #[test]
    fn serials_are_time_ordered_across_calls() {
        let seq = SerialSequence::new();
        let times = [1_000, 1_000, 1_001, 1_001, 999, 5_000, 4_000, 1_000, 5_001];
        let serials: Vec<String> = times.iter().map(|&t| seq.next(t)).collect();
        for w in serials.windows(2) {
            assert!(w[0] < w[1], "{} then {}", w[0], w[1]);
        }
        // The time is the first 8 digits; a clock gone back keeps the last second.
        let secs: Vec<&str> = serials.iter().map(|s| &s[..8]).collect();
        assert_eq!(
            secs,
            [
                "000003e8", "000003e8", "000003e9", "000003e9", "000003e9", "00001388", "00001388", "00001388",
                "00001389"
            ]
        );
        assert_eq!(&serials[1][8..16], "00000001", "the second serial of a second counts 1");
        assert_eq!(&serials[2][8..16], "00000000", "a new second counts from 0");
    }

    /// A batch of serials made at one `now` on several threads: all distinct,
    /// each with its own place in the sequence.
    #[test]
    fn serials_are_unique_within_a_batch() {
        let seq = SerialSequence::new();
        let all: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> =
                (0..4).map(|_| s.spawn(|| (0..2_500).map(|_| seq.next(1_800_000_000)).collect::<Vec<_>>())).collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let serials: std::collections::HashSet<&str> = all.iter().map(String::as_str).collect();
        let prefixes: std::collections::HashSet<&str> = all.iter().map(|s| &s[..16]).collect();
        assert_eq!((serials.len(), prefixes.len()), (10_000, 10_000));
    }

    /// A time before 1970 or past 2106 is clamped into the 8 digits.
    #[test]
    fn serial_time_is_clamped() {
        let seq = SerialSequence::new();
        assert_eq!(&seq.next(-5)[..16], "0000000000000000");
        assert_eq!(&seq.next(i64::MAX)[..16], "ffffffff00000000");
    }

    /// A key that signs only messages, not digests.
    struct MessageOnly(SoftwareKey);

    impl Signer for MessageOnly {
        fn public_key(&self) -> &rsa::PublicKey {
            self.0.public_key()
        }
        fn sign(&self, alg: SignatureAlgorithm, message: &[u8]) -> Result<Vec<u8>> {
            self.0.sign(alg, message)
        }
    }

    /// A signer certificate (test key "signer") under a root (test key
    /// "intermediate"), valid a day either side of `now`: the chain, signer first.
    fn test_chain(now: i64) -> Vec<Vec<u8>> {
        let (int_key, signer_key) = (key("intermediate"), key("signer"));
        let req = |kind, subject| CertRequest {
            kind,
            subject,
            not_before: now - 86_400,
            not_after: now + 86_400,
            delegation: None,
        };
        let int = create_certificate(&req(CertKind::Root, "CN=T Root"), int_key.public_key(), None, &int_key).unwrap();
        let int_info = CertInfo::parse(&int).unwrap();
        let der = create_certificate(
            &req(CertKind::Signer, "CN=T Signer"),
            signer_key.public_key(),
            Some(&int_info),
            &int_key,
        )
        .unwrap();
        vec![der, int]
    }

    /// A token signed from the header's saved hash state is the token
    /// `jws::encode` signs (RS256 is deterministic: byte for byte), with a
    /// key that signs digests and with one that signs only messages.
    #[test]
    fn prepared_header_signs_what_jws_encode_signs() {
        let payload = serde_json::json!({"jti": "ab", "sub": "c\"d", "n": 1});
        let rs = SignatureAlgorithm::Rs256;
        let chain = test_chain(1_800_000_000);
        let full = TokenSigner::new(Box::new(key("signer")), chain.clone()).unwrap();
        let message_only = TokenSigner::new(Box::new(MessageOnly(key("signer"))), chain.clone()).unwrap();
        for signer in [&full, &message_only] {
            for compact in [false, true] {
                let x5c: &[Vec<u8>] = if compact { &[] } else { &chain };
                let slow = jws::encode(&payload, TOKEN_TYP, &signer.cert.fingerprint, x5c, rs, signer.key()).unwrap();
                assert_eq!(signer.sign_token(&payload, rs, compact).unwrap(), slow, "compact {compact}");
            }
        }
    }

    /// The header encoded once per signer is byte for byte what `jws::encode` writes.
    #[test]
    fn cached_token_header_is_the_one_jws_encode_writes() {
        let signer = TokenSigner::new(Box::new(key("signer")), test_chain(1_800_000_000)).unwrap();
        let payload = serde_json::json!({"jti": "ab", "sub": "c\"d", "n": 1});
        for alg in [SignatureAlgorithm::Ps256, SignatureAlgorithm::Rs256] {
            for _ in 0..2 {
                let fast = signer.sign_payload(&payload, TOKEN_TYP, alg).unwrap();
                let slow =
                    jws::encode(&payload, TOKEN_TYP, &signer.cert.fingerprint, &signer.x5c, alg, signer.key()).unwrap();
                let (f, s) = (fast.rsplit_once('.').unwrap(), slow.rsplit_once('.').unwrap());
                assert_eq!(f.0, s.0, "{alg:?}: same header and payload");
                let back = jws::decode(&fast, TOKEN_TYP).unwrap();
                assert!(crate::core::keys::verify_signature(
                    signer.key().public_key(),
                    alg,
                    f.0.as_bytes(),
                    &back.signature
                ));
                let compact = signer.sign_token(&payload, alg, true).unwrap();
                let slow = jws::encode(&payload, TOKEN_TYP, &signer.cert.fingerprint, &[], alg, signer.key()).unwrap();
                assert_eq!(compact.rsplit_once('.').unwrap().0, slow.rsplit_once('.').unwrap().0, "{alg:?} compact");
                let back = jws::decode(&compact, TOKEN_TYP).unwrap();
                assert!(back.x5c.is_empty() && !back.header.contains_key("x5c"), "{alg:?}: no x5c");
                assert_eq!(back.kid.as_deref(), Some(signer.cert.fingerprint.as_str()));
            }
        }
    }
}
