//! The agent's TLS client (`--tls`): rustls with the aws-lc-rs provider and
//! a server certificate verifier that is tka's own path validation. The
//! host presents its delegated token-signer certificate (no subjectAltName,
//! no serverAuth usage): it is checked exactly as a token's signer is, to
//! the store's trusted roots for the product, with the store's CRLs and
//! pinned roots, and every delegation in the path must include the product.
//! Host names are not checked: the delegated certificate is the host's
//! identity. Handshake signatures are checked with the provider's algorithms.

use crate::activation::trust::TrustData;
use crate::core::error::VerifyError;
use crate::core::pki::{validate_path, Crl, LeafRole, RootFingerprint, TrustAnchors};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use std::sync::Arc;
use x509_parser::prelude::FromDer;

/// Checks a host's certificate chain (DER, host certificate first) as the
/// chain of a token signer for `product`: [`validate_path`] with
/// [`LeafRole::TokenSigner`] to `anchors` at `now` with `crls`, a pinned
/// root when `pinned` names any, and every delegation in the path
/// including `product`. The error is one line saying why not.
pub fn check_host_chain(
    chain: &[Vec<u8>],
    anchors: &TrustAnchors,
    crls: &[Crl],
    pinned: &[RootFingerprint],
    product: &str,
    now: i64,
) -> Result<(), VerifyError> {
    let path = validate_path(chain, anchors, now, crls, LeafRole::TokenSigner)?;
    let root = path.root();
    if !pinned.is_empty() && !pinned.iter().any(|p| p.matches(root)) {
        return Err(VerifyError::WrongRoot {
            subject: root.subject.clone(),
            expected: pinned.iter().map(|p| p.to_string()).collect(),
            found: root.fingerprint.clone(),
        });
    }
    for cert in &path.certs {
        if let Some(d) = cert.delegation.as_ref().filter(|d| !d.products.iter().any(|p| p == product)) {
            return Err(VerifyError::OutsideDelegation {
                subject: cert.subject.clone(),
                what: format!("product {product:?} is not delegated ({})", d.products.join(",")),
            });
        }
    }
    Ok(())
}

/// The rustls client configuration for hosts activating `product`, trusting
/// what `trust` trusts for it at `now`.
pub(crate) fn client_config(
    trust: &TrustData,
    pinned: &[RootFingerprint],
    product: &str,
    now: i64,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = HostVerifier {
        anchors: trust.anchors_for(product),
        crls: trust.crls.clone(),
        pinned: pinned.to_vec(),
        product: product.to_string(),
        now,
        provider: provider.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // Host names are not part of a host's identity: send none.
    config.enable_sni = false;
    Ok(Arc::new(config))
}

/// The name rustls is given for every host (SNI is off and no name is checked).
pub(crate) fn server_name() -> ServerName<'static> {
    ServerName::try_from("tka-host").expect("a valid DNS name")
}

/// The failure [`HostVerifier`] reports: the path validation's error.
pub(crate) fn untrusted_reason(e: &rustls::Error) -> Option<String> {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(o)) => {
            o.0.downcast_ref::<VerifyError>().map(|v| v.to_string())
        }
        rustls::Error::InvalidCertificate(c) => Some(format!("{c:?}")),
        _ => None,
    }
}

#[derive(Debug)]
struct HostVerifier {
    anchors: TrustAnchors,
    crls: Vec<Crl>,
    pinned: Vec<RootFingerprint>,
    product: String,
    now: i64,
    provider: Arc<CryptoProvider>,
}

impl HostVerifier {
    fn check_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        allowed: &[SignatureScheme],
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let bad = || rustls::Error::InvalidCertificate(CertificateError::BadSignature);
        if !allowed.contains(&dss.scheme) {
            return Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        }
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref()).map_err(|_| bad())?;
        let key = &parsed.public_key().subject_public_key.data;
        let algs = self.provider.signature_verification_algorithms.mapping.iter().find(|(s, _)| *s == dss.scheme);
        let Some((_, algs)) = algs else { return Err(bad()) };
        if algs.iter().any(|a| a.verify_signature(key, message, dss.signature()).is_ok()) {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(bad())
        }
    }
}

/// Handshake signatures accepted: RSA (tka keys are RSA), PSS in TLS 1.3,
/// PSS or PKCS#1 v1.5 in TLS 1.2, SHA-256 and up.
const TLS13_SCHEMES: [SignatureScheme; 3] =
    [SignatureScheme::RSA_PSS_SHA256, SignatureScheme::RSA_PSS_SHA384, SignatureScheme::RSA_PSS_SHA512];
const TLS12_SCHEMES: [SignatureScheme; 6] = [
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
];

impl ServerCertVerifier for HostVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain: Vec<Vec<u8>> =
            std::iter::once(end_entity).chain(intermediates).map(|c| c.as_ref().to_vec()).collect();
        check_host_chain(&chain, &self.anchors, &self.crls, &self.pinned, &self.product, self.now)
            .map_err(|e| rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e)))))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(message, cert, dss, &TLS12_SCHEMES)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(message, cert, dss, &TLS13_SCHEMES)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        TLS12_SCHEMES.to_vec()
    }
}
