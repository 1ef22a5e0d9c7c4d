//! CRL creation (RFC 5280 §5) with the x509-cert [`CrlBuilder`], signed
//! through the [`Signer`] seam like every certificate.
//!
//! x509-cert 0.3's `CrlBuilder` copies the *issuer certificate's*
//! authorityKeyIdentifier into the CRL. For a root that is the root's own
//! key id (right by accident); for an issuing CA it is the root's key id,
//! which is wrong (RFC 5280 §5.2.1: the CRL's AKI identifies the key that
//! signed the CRL) and makes `openssl crl -verify` pick the wrong issuer.
//! tka therefore replaces that extension with one built from the issuer's
//! subjectKeyIdentifier before the CRL is signed (`AkiFromSki`).

use crate::core::error::{Error, Result};
use crate::core::keys::{spki_der, Signer};
use crate::core::pki::cert::key_identifier;
use crate::core::pki::CertInfo;
use crate::issuer::certs::{sign_with_builder, to_der, unix_to_time};
use der::asn1::{BitString, OctetString};
use der::{Decode, Encode};
use std::fmt;
use std::str::FromStr;
use x509_cert::builder::{Builder, CrlBuilder};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlNumber, CrlReason};
use x509_cert::ext::ToExtension;
use x509_cert::serial_number::SerialNumber;

/// Longest serial number accepted, in bytes (RFC 5280 §4.1.2.2).
const MAX_SERIAL_BYTES: usize = 20;

/// Why a certificate is revoked (RFC 5280 §5.3.1 CRLReason), as written on the CRL entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    /// `unspecified`
    Unspecified,
    /// `keyCompromise`: the private key leaked.
    KeyCompromise,
    /// `cACompromise`: the issuing CA's key leaked.
    CaCompromise,
    /// `affiliationChanged`
    AffiliationChanged,
    /// `superseded`: replaced by a new certificate (rotation).
    Superseded,
    /// `cessationOfOperation`: no longer used.
    CessationOfOperation,
    /// `privilegeWithdrawn`
    PrivilegeWithdrawn,
}

const REASONS: [(&str, RevocationReason); 7] = [
    ("unspecified", RevocationReason::Unspecified),
    ("keyCompromise", RevocationReason::KeyCompromise),
    ("cACompromise", RevocationReason::CaCompromise),
    ("affiliationChanged", RevocationReason::AffiliationChanged),
    ("superseded", RevocationReason::Superseded),
    ("cessationOfOperation", RevocationReason::CessationOfOperation),
    ("privilegeWithdrawn", RevocationReason::PrivilegeWithdrawn),
];

impl RevocationReason {
    /// The RFC 5280 name, as openssl prints it (`keyCompromise`).
    pub fn name(self) -> &'static str {
        REASONS.iter().find(|(_, r)| *r == self).map(|(n, _)| *n).expect("every reason is listed")
    }

    fn to_x509(self) -> CrlReason {
        match self {
            RevocationReason::Unspecified => CrlReason::Unspecified,
            RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
            RevocationReason::CaCompromise => CrlReason::CaCompromise,
            RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
            RevocationReason::Superseded => CrlReason::Superseded,
            RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
            RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RevocationReason {
    type Err = Error;

    /// Accepts the RFC 5280 names in any case, with or without `-`/`_`
    /// (`keyCompromise`, `key-compromise`, `KEY_COMPROMISE`).
    fn from_str(s: &str) -> Result<Self> {
        let norm: String = s.chars().filter(|c| *c != '-' && *c != '_').map(|c| c.to_ascii_lowercase()).collect();
        REASONS.iter().find(|(n, _)| n.to_ascii_lowercase() == norm).map(|(_, r)| *r).ok_or_else(|| {
            let names: Vec<&str> = REASONS.iter().map(|(n, _)| *n).collect();
            Error::Usage(format!("unknown revocation reason {s:?}: expected one of {}", names.join(", ")))
        })
    }
}

/// One certificate to list on a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlEntry {
    /// Serial in uppercase hex, as [`CertInfo::serial_hex`] and `openssl x509 -serial` print it.
    pub serial_hex: String,
    /// Reason, when given.
    pub reason: Option<RevocationReason>,
    /// Revocation date, Unix seconds.
    pub revoked_at: i64,
}

impl CrlEntry {
    /// Parses `SERIAL[:reason]` (the `--revoke` argument): SERIAL in hex as
    /// `openssl x509 -serial` prints it (`serial=` prefix, `0x` prefix and
    /// `:` separators allowed, any case).
    pub fn parse(arg: &str, revoked_at: i64) -> Result<CrlEntry> {
        let (serial, reason) = match arg.rsplit_once(':') {
            Some((s, r)) if r.chars().any(|c| c.is_ascii_alphabetic() && !c.is_ascii_hexdigit()) => {
                (s, Some(r.parse()?))
            }
            _ => (arg, None),
        };
        Ok(CrlEntry { serial_hex: normalize_serial(serial)?, reason, revoked_at })
    }
}

/// Normalizes a hex serial to the form [`CertInfo::serial_hex`] uses: the
/// DER INTEGER content in uppercase hex (a positive serial whose top bit is
/// set gets its `00` sign byte back).
pub fn normalize_serial(s: &str) -> Result<String> {
    let t = s.trim();
    let t = t.strip_prefix("serial=").unwrap_or(t);
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    let hex: String = t.chars().filter(|c| *c != ':').collect();
    let bad = || Error::Usage(format!("invalid serial {s:?}: expected hex digits as `openssl x509 -serial` prints"));
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let padded = if hex.len() % 2 == 1 { format!("0{hex}") } else { hex };
    let bytes: Vec<u8> = (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let serial = SerialNumber::<x509_cert::certificate::Rfc5280>::new(strip_zeros(&bytes)).map_err(|_| bad())?;
    let der = serial.to_der().map_err(|_| bad())?;
    let content = &der[2..];
    if content.len() > MAX_SERIAL_BYTES + 1 {
        return Err(bad());
    }
    Ok(content.iter().map(|b| format!("{b:02X}")).collect())
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len().saturating_sub(1));
    &b[first..]
}

fn serial_from_hex(hex: &str) -> Result<SerialNumber> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| Error::Usage(format!("invalid serial {hex:?}")))?;
    SerialNumber::new(strip_zeros(&bytes)).map_err(|e| Error::Usage(format!("invalid serial {hex:?}: {e}")))
}

/// What a new CRL says besides its entries.
#[derive(Debug, Clone, Copy)]
pub struct CrlParams {
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds: when machines should have a newer CRL.
    pub next_update: i64,
    /// cRLNumber (RFC 5280 §5.2.3), monotonically increasing per issuer.
    /// tka uses `this_update` by default, so successive CRLs of one CA
    /// increase without any state to keep.
    pub number: u64,
}

/// Creates a CRL (DER) issued by the CA `issuer` with its key.
///
/// Refuses an issuer that is not a CA allowed to sign CRLs (keyUsage
/// cRLSign), a key that does not belong to it, a nextUpdate not after
/// thisUpdate, and duplicate serials.
pub fn create_crl(issuer: &CertInfo, key: &dyn Signer, entries: &[CrlEntry], params: &CrlParams) -> Result<Vec<u8>> {
    if !issuer.is_ca || issuer.key_usage.is_some_and(|(_, _, crl_sign)| !crl_sign) {
        return Err(Error::Refused(format!(
            "{} is not a CA certificate allowed to sign CRLs (cRLSign)",
            issuer.subject
        )));
    }
    if spki_der(key.public_key()) != issuer.spki_der {
        return Err(Error::Usage(format!("the CA key does not belong to {}", issuer.subject)));
    }
    if params.next_update <= params.this_update {
        return Err(Error::Usage("the CRL's next update must be after its this-update time".into()));
    }
    let mut seen = std::collections::HashSet::new();
    let mut revoked = Vec::new();
    for e in entries {
        if !seen.insert(e.serial_hex.clone()) {
            return Err(Error::Usage(format!("serial {} is listed twice", e.serial_hex)));
        }
        let crl_entry_extensions = match e.reason {
            Some(r) => {
                let name = x509_cert::name::Name::from_der(&issuer.subject_raw)
                    .map_err(|err| Error::format("issuer name", err))?;
                let ext = (&r.to_x509()).to_extension(&name, &[]).map_err(|err| Error::format("CRL entry", err))?;
                Some(vec![ext])
            }
            None => None,
        };
        revoked.push(RevokedCert {
            serial_number: serial_from_hex(&e.serial_hex)?,
            revocation_date: unix_to_time(e.revoked_at)?,
            crl_entry_extensions,
        });
    }
    let issuer_cert = x509_cert::Certificate::from_der(&issuer.der).map_err(|e| Error::format("CA certificate", e))?;
    let number = CrlNumber::try_from(params.number).map_err(|e| Error::format("CRL number", e))?;
    let builder = CrlBuilder::new_with_this_update(&issuer_cert, number, unix_to_time(params.this_update)?)
        .map_err(|e| Error::format("CRL", e))?
        .with_next_update(Some(unix_to_time(params.next_update)?));
    let builder = if revoked.is_empty() { builder } else { builder.with_certificates(revoked.into_iter()) };
    let ski = match &issuer.ski {
        Some(k) => k.clone(),
        None => key_identifier(&issuer.spki_der)?,
    };
    let crl = sign_with_builder(AkiFromSki { inner: builder, ski, tbs: None }, key)?;
    to_der(&crl)
}

/// Wraps the x509-cert `CrlBuilder` and, before signing, replaces its
/// authorityKeyIdentifier with one naming the issuer's own key (see the
/// module documentation).
struct AkiFromSki {
    inner: CrlBuilder,
    ski: Vec<u8>,
    tbs: Option<TbsCertList>,
}

impl Builder for AkiFromSki {
    type Output = CertificateList;

    fn finalize<S>(&mut self, signer: &S) -> x509_cert::builder::Result<Vec<u8>>
    where
        S: signature::Keypair + spki::DynSignatureAlgorithmIdentifier,
        S::VerifyingKey: spki::EncodePublicKey,
    {
        let der = self.inner.finalize(signer)?;
        let mut tbs = TbsCertList::from_der(&der)?;
        let aki_oid = <AuthorityKeyIdentifier as const_oid::AssociatedOid>::OID;
        let aki =
            AuthorityKeyIdentifier { key_identifier: Some(OctetString::new(self.ski.clone())?), ..Default::default() };
        let value = OctetString::new(aki.to_der()?)?;
        if let Some(exts) = tbs.crl_extensions.as_mut() {
            for ext in exts.iter_mut().filter(|e| e.extn_id == aki_oid) {
                ext.extn_value = value.clone();
            }
        }
        let out = tbs.to_der()?;
        self.tbs = Some(tbs);
        Ok(out)
    }

    fn assemble<S>(self, signature: BitString, _signer: &S) -> x509_cert::builder::Result<CertificateList>
    where
        S: signature::Keypair + spki::DynSignatureAlgorithmIdentifier,
        S::VerifyingKey: spki::EncodePublicKey,
    {
        let tbs = self.tbs.ok_or(der::Error::from(der::ErrorKind::Failed))?;
        Ok(CertificateList { signature_algorithm: tbs.signature.clone(), tbs_cert_list: tbs, signature })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_normalize_like_openssl_prints_them() {
        assert_eq!(normalize_serial("5a3f").unwrap(), "5A3F");
        assert_eq!(normalize_serial("serial=5A:3F").unwrap(), "5A3F");
        assert_eq!(normalize_serial("8A01").unwrap(), "008A01");
        assert_eq!(normalize_serial("00008A01").unwrap(), "008A01");
        assert!(normalize_serial("xyz").is_err());
        assert!(normalize_serial("").is_err());
        assert!(normalize_serial(&"7F".repeat(22)).is_err());
    }

    #[test]
    fn revoke_arguments() {
        let e = CrlEntry::parse("5A3F:keyCompromise", 7).unwrap();
        assert_eq!((e.serial_hex.as_str(), e.reason, e.revoked_at), ("5A3F", Some(RevocationReason::KeyCompromise), 7));
        assert_eq!(CrlEntry::parse("5a:3f", 0).unwrap().serial_hex, "5A3F");
        assert_eq!(CrlEntry::parse("5a3f:superseded", 0).unwrap().reason, Some(RevocationReason::Superseded));
        assert!(CrlEntry::parse("5a3f:stolen", 0).is_err());
        assert_eq!("key-compromise".parse::<RevocationReason>().unwrap(), RevocationReason::KeyCompromise);
    }
}
