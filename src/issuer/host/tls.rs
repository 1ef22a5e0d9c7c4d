//! The host's optional TLS (`host serve --tls`): a rustls server (aws-lc-rs
//! provider, TLS 1.3 and 1.2) presenting the host's own certificate chain
//! and signing the handshake with the host's key through tka's
//! [`Signer`](crate::core::keys::Signer) seam, so a key on a PKCS#11 token
//! serves TLS like a key file.
//!
//! The host certificate is a tka token-signer certificate (no subjectAltName,
//! no serverAuth extended key usage): agents do not check it as a web PKI
//! certificate but with tka's own path validation to their trusted roots.

use crate::core::error::{Error, Result};
use crate::core::keys::SignatureAlgorithm;
use crate::issuer::issue::TokenSigner;
use rustls::pki_types::CertificateDer;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::SignatureScheme;
use std::sync::Arc;

/// A rustls server configuration that presents `signer`'s certificate chain
/// (the host certificate first) and signs handshakes with its key: RSA-PSS
/// with SHA-256 (TLS 1.3) or PKCS#1 v1.5 with SHA-256 (TLS 1.2), whichever
/// the client offers first in that order.
pub fn server_config(signer: Arc<TokenSigner>) -> Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = signer.chain().iter().map(|d| CertificateDer::from(d.clone())).collect();
    let key = CertifiedKey::new(chain, Arc::new(HostKey(signer)));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Usage(format!("cannot set up TLS: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    Ok(Arc::new(config))
}

/// The host key as a rustls signing key.
struct HostKey(Arc<TokenSigner>);

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HostKey").field(&self.0).finish()
    }
}

impl rustls::sign::SigningKey for HostKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        let scheme = [SignatureScheme::RSA_PSS_SHA256, SignatureScheme::RSA_PKCS1_SHA256]
            .into_iter()
            .find(|s| offered.contains(s))?;
        Some(Box::new(HostSign { signer: self.0.clone(), scheme }))
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::RSA
    }
}

/// One handshake signature with the host key.
struct HostSign {
    signer: Arc<TokenSigner>,
    scheme: SignatureScheme,
}

impl std::fmt::Debug for HostSign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSign").field("scheme", &self.scheme).finish_non_exhaustive()
    }
}

impl rustls::sign::Signer for HostSign {
    fn sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, rustls::Error> {
        // RSA-PSS in TLS 1.3 (RFC 8446 §4.2.3) is PS256: MGF1-SHA-256, a salt as long as the hash.
        let alg = if self.scheme == SignatureScheme::RSA_PSS_SHA256 {
            SignatureAlgorithm::Ps256
        } else {
            SignatureAlgorithm::Rs256
        };
        self.signer.key().sign(alg, message).map_err(|e| rustls::Error::General(format!("the host key: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}
