//! The issuer's side of a host: reading a host request (PKCS#10) and
//! certifying it with a delegated token-signer certificate.

use crate::core::clock::DAY;
use crate::core::error::{Error, Result};
use crate::core::keys::{public_bits, KeyUnlock};
use crate::core::pki::{pem, verify_rsa, CertInfo, Delegation, MIN_RSA_BITS};
use crate::issuer::certs::{create_certificate, CertKind, CertRequest};
use crate::issuer::home::{read_cert_chain, IssuerHome, DEFAULT_LOCK_WAIT};
use der::{Decode, Encode};

/// Largest host request read.
pub const MAX_HOST_REQUEST: usize = 16 * 1024;

/// A host request whose signature verified: the subject the host asked
/// for and its public key. Nothing else in it is used (requested
/// extensions and attributes are ignored: the issuer decides the profile).
#[derive(Debug, Clone)]
pub struct HostRequest {
    /// The subject, RFC 4514.
    pub subject: String,
    /// The host's public key.
    pub public_key: rsa::PublicKey,
    /// Its DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

/// Reads a PKCS#10 certification request (PEM `CERTIFICATE REQUEST` or
/// DER) and checks it: version 1, an RSA key of at least 2048 bits, and a
/// signature (sha256/384/512WithRSAEncryption) that the key it carries
/// made, so whoever made it holds the key.
pub fn read_host_request(bytes: &[u8]) -> Result<HostRequest> {
    let bad = |detail: String| Error::Format { what: "host request".into(), detail };
    if bytes.len() > MAX_HOST_REQUEST {
        return Err(bad(format!("larger than {MAX_HOST_REQUEST} bytes")));
    }
    let der = match std::str::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN") => {
            let mut blocks = pem::decode_all(text, "CERTIFICATE REQUEST")?;
            if blocks.len() != 1 {
                return Err(bad(format!("{} CERTIFICATE REQUEST blocks, expected one", blocks.len())));
            }
            blocks.remove(0)
        }
        _ => bytes.to_vec(),
    };
    let req = x509_cert::request::CertReq::from_der(&der)
        .map_err(|e| bad(format!("not a PKCS#10 certification request: {e}")))?;
    if req.info.version != x509_cert::request::Version::V1 {
        return Err(bad("not a version 1 request".into()));
    }
    let info = req.info.to_der().map_err(|e| bad(format!("cannot re-encode: {e}")))?;
    let spki_der = req.info.public_key.to_der().map_err(|e| bad(format!("public key: {e}")))?;
    let public_key = {
        use pkcs8::DecodePublicKey;
        rsa::PublicKey::from_public_key_der(&spki_der).map_err(|e| bad(format!("not an RSA public key: {e}")))?
    };
    let bits = public_bits(&public_key);
    if bits < MIN_RSA_BITS {
        return Err(bad(format!("RSA key of {bits} bits is below the {MIN_RSA_BITS}-bit minimum")));
    }
    let alg = req.algorithm.oid.to_string();
    match verify_rsa(&alg, &public_key, &info, req.signature.raw_bytes()) {
        Some(true) => {}
        Some(false) => return Err(bad("its signature does not verify with the key it carries".into())),
        None => return Err(bad(format!("unsupported signature algorithm {alg}"))),
    }
    let subject = req.info.subject.to_string();
    if subject.is_empty() {
        return Err(bad("empty subject".into()));
    }
    Ok(HostRequest { subject, public_key, spki_der })
}

/// What the issuer grants a host.
#[derive(Debug, Clone)]
pub struct CertifyOptions {
    /// The delegation: products, longest token lifetime, seat cap.
    pub delegation: Delegation,
    /// The certificate's lifetime, days (at least 1; not past the issuing CA).
    pub days: i64,
}

/// Certifies a host request from `home`'s issuing CA: a token-signer
/// certificate (the profile of every tka signer, as `ca signer` and a
/// rotation make them) for the request's subject and key, carrying
/// `opts.delegation` as a critical extension. Returns the chain to give
/// the host (DER): the new certificate, then the home's issuing CA (and
/// cross-certificate, when it has one), without the root.
///
/// Refused before any key is opened: a delegation tka does not write
/// ([`Delegation::validate`]), a lifetime under a day, and a longest token
/// lifetime beyond the certificate's own (the host could never sign such
/// a token).
pub fn certify(
    home: &IssuerHome,
    request: &HostRequest,
    opts: &CertifyOptions,
    unlock: &KeyUnlock,
    now: i64,
) -> Result<Vec<Vec<u8>>> {
    opts.delegation.validate().map_err(|e| Error::Usage(format!("delegation: {e}")))?;
    if opts.days < 1 {
        return Err(Error::InvalidLifetime {
            what: "certificate lifetime",
            detail: format!("{} days: at least one day", opts.days),
        });
    }
    let cert_secs = opts.days.saturating_mul(DAY);
    if i64::try_from(opts.delegation.max_lifetime_secs).map_or(true, |m| m > cert_secs) {
        return Err(Error::InvalidLifetime {
            what: "delegated token lifetime",
            detail: format!(
                "{} s is longer than the certificate's {} days: the host could never sign such a token",
                opts.delegation.max_lifetime_secs, opts.days
            ),
        });
    }
    let _lock = home.lock_shared(DEFAULT_LOCK_WAIT)?;
    let home = IssuerHome::open(home.dir())?;
    let ca_der = read_cert_chain(&home.path(&home.config.ca_cert))?
        .into_iter()
        .next()
        .ok_or_else(|| Error::format("issuing CA certificate", "no certificate in the file"))?;
    let ca = CertInfo::parse(&ca_der)?;
    let ca_key = home.open_key(&home.config.ca_key, unlock)?;
    let der = create_certificate(
        &CertRequest {
            kind: CertKind::Signer,
            subject: &request.subject,
            not_before: now - 300,
            not_after: now.saturating_add(cert_secs),
            delegation: Some(opts.delegation.clone()),
        },
        &request.public_key,
        Some(&ca),
        ca_key.as_ref(),
    )?;
    let mut chain = vec![der];
    chain.extend(home.token_chain()?.into_iter().skip(1));
    Ok(chain)
}
