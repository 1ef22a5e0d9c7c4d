//! The host directory (`HOSTDIR`):
//!
//! ```text
//! <dir>/          0700
//!   host.json     configuration: where the key is, what install learnt
//!   host.key      PKCS#8 RSA key, 0600 (absent when the key is on a PKCS#11 token)
//!   host.csr      the host request: PKCS#10, signed with the host key
//!   chain.pem     after install: host certificate, then its issuing CA(s)
//!   root.pem      after install, when the certificate file held the root
//! ```
//!
//! The key file is unencrypted unless a passphrase is given: a host
//! restarts unattended, like an SSH host key. A key on a PKCS#11 token is
//! the protected option. [`HostDir::init`] never replaces a key.

use super::certify::read_host_request;
use crate::core::clock::rfc3339;
use crate::core::error::{Error, Result};
use crate::core::fsutil::{self, Overwrite};
use crate::core::keys::{open_key, KeyRef, KeyUnlock, NewKey};
use crate::core::pkcs11::Pkcs11Uri;
use crate::core::pki::{pem, CertInfo, Delegation};
use crate::issuer::certs::{parse_name, sign_with_builder, to_der};
use crate::issuer::home::read_cert_chain;
use crate::issuer::signer::TokenSigner;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The host's configuration file.
pub const HOST_CONFIG_FILE: &str = "host.json";
/// The host's key file (when the key is not on a token).
pub const HOST_KEY_FILE: &str = "host.key";
/// The host request (PKCS#10, PEM).
pub const HOST_REQUEST_FILE: &str = "host.csr";
/// The installed chain: host certificate first, then the issuing CA(s).
pub const HOST_CHAIN_FILE: &str = "chain.pem";
/// The root, when the installed certificate file carried it.
pub const HOST_ROOT_FILE: &str = "root.pem";

/// What [`HostDir::init`] makes.
#[derive(Debug, Clone)]
pub struct HostInitOptions {
    /// Subject of the host request, RFC 4514 (default `CN=tka activation host`).
    pub subject: String,
    /// Key size (default 2048).
    pub bits: usize,
    /// Generate the key on this PKCS#11 token (labelled with the URI's
    /// `object`, `tka-host` when it names none) instead of in `host.key`.
    pub pkcs11: Option<Pkcs11Uri>,
}

impl Default for HostInitOptions {
    fn default() -> Self {
        HostInitOptions { subject: "CN=tka activation host".into(), bits: 2048, pkcs11: None }
    }
}

/// The certificate [`HostDir::install`] installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledCert {
    /// Its subject.
    pub subject: String,
    /// Its serial (hex).
    pub serial: String,
    /// Its SHA-256 fingerprint (the `kid` of the tokens it signs).
    pub fingerprint: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// What it delegates.
    pub delegation: Delegation,
}

/// `host.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostConfig {
    /// The key: a file relative to the directory, or a `pkcs11:` URI.
    pub key: String,
    /// When the directory was made, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The installed certificate, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<InstalledCert>,
}

/// An activation host's directory.
#[derive(Debug, Clone)]
pub struct HostDir {
    dir: PathBuf,
    /// Its configuration.
    pub config: HostConfig,
}

impl HostDir {
    /// Makes a host directory: the key (a 0600 file, encrypted only with
    /// `unlock.passphrase`; or on the token of `opts.pkcs11`) and the host
    /// request `host.csr` signed with it. Refuses a directory that already
    /// holds a host key or configuration (a key is never replaced); on
    /// failure removes what it made.
    pub fn init(dir: &Path, opts: &HostInitOptions, unlock: &KeyUnlock, now: i64) -> Result<HostDir> {
        for existing in [HOST_KEY_FILE, HOST_CONFIG_FILE] {
            let path = dir.join(existing);
            if path.exists() {
                return Err(Error::Usage(format!(
                    "{} already holds a host ({} exists): a host key is never replaced",
                    dir.display(),
                    path.display()
                )));
            }
        }
        let subject = parse_name(&opts.subject)?;
        let existed = dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut made: Vec<PathBuf> = Vec::new();
        let mut new_key = None;
        let result = Self::init_inner(dir, opts, subject, unlock, now, &mut made, &mut new_key);
        if let Err(error) = result {
            let mut error = error;
            if let Some(k) = new_key {
                if let Err(e) = k.discard(unlock) {
                    error = Error::KeysLeftOnToken { error: Box::new(error), left: vec![e.to_string()] };
                }
            }
            for f in made {
                let _ = std::fs::remove_file(f);
            }
            if !existed {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(error);
        }
        result
    }

    fn init_inner(
        dir: &Path,
        opts: &HostInitOptions,
        subject: x509_cert::name::Name,
        unlock: &KeyUnlock,
        now: i64,
        made: &mut Vec<PathBuf>,
        new_key: &mut Option<NewKey>,
    ) -> Result<HostDir> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(dir, e))?;
        }
        let key_path = dir.join(HOST_KEY_FILE);
        let place = match &opts.pkcs11 {
            Some(uri) => {
                let label = uri.object.clone().unwrap_or_else(|| "tka-host".into());
                KeyRef::Pkcs11(Box::new(uri.with_object(&label)))
            }
            None => KeyRef::File(key_path.clone()),
        };
        let key = new_key.insert(NewKey::generate(&place, opts.bits, unlock)?);
        // The request: PKCS#10 with the subject and key, signed by the key.
        let builder = x509_cert::request::RequestBuilder::new(subject).map_err(|e| Error::format("host request", e))?;
        let csr = to_der(&sign_with_builder(builder, key.signer())?)?;
        let stored = match key.store(&key_path, unlock.protection())? {
            KeyRef::File(p) => {
                made.push(p.clone());
                p.strip_prefix(dir).map(Path::to_path_buf).unwrap_or(p).display().to_string()
            }
            uri => uri.to_string(),
        };
        let csr_path = dir.join(HOST_REQUEST_FILE);
        write_new(&csr_path, pem::encode("CERTIFICATE REQUEST", &csr).as_bytes(), made)?;
        let config = HostConfig { key: stored, created: Some(rfc3339(now)), installed: None };
        let json = serde_json::to_string_pretty(&config).expect("config serializes") + "\n";
        write_new(&dir.join(HOST_CONFIG_FILE), json.as_bytes(), made)?;
        Ok(HostDir { dir: dir.to_path_buf(), config })
    }

    /// Opens a host directory.
    pub fn open(dir: &Path) -> Result<HostDir> {
        let path = dir.join(HOST_CONFIG_FILE);
        let bytes = fsutil::read_bounded(&path, 64 * 1024).map_err(|e| {
            if e.is_not_found() {
                Error::Usage(format!("{} is not a host directory (no {HOST_CONFIG_FILE})", dir.display()))
            } else {
                e.at(&path)
            }
        })?;
        let config: HostConfig =
            serde_json::from_slice(&bytes).map_err(|e| Error::format(path.display().to_string(), e))?;
        Ok(HostDir { dir: dir.to_path_buf(), config })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The host request file (`host.csr`).
    pub fn request_path(&self) -> PathBuf {
        self.dir.join(HOST_REQUEST_FILE)
    }

    /// The installed chain file (`chain.pem`).
    pub fn chain_path(&self) -> PathBuf {
        self.dir.join(HOST_CHAIN_FILE)
    }

    /// Where the host key is: the file (relative entries are taken in the
    /// directory) or the `pkcs11:` URI, read as from a configuration file.
    pub fn key_ref(&self) -> Result<KeyRef> {
        match KeyRef::from_config(Path::new(&self.config.key))? {
            KeyRef::File(p) => Ok(KeyRef::File(self.dir.join(p))),
            uri => Ok(uri),
        }
    }

    /// Installs the certificate file `cert_path` (PEM, from the issuer):
    /// its first certificate must be a token signer with a tka delegation
    /// for this host's key (the key of `host.csr`), each further one the
    /// issuer of the one before. Writes `chain.pem` (host certificate and
    /// issuing CAs; a root at the end goes to `root.pem`) and records the
    /// certificate in `host.json`. Every check comes before any write; a
    /// refused certificate ([`Error::Usage`]: the wrong file for this
    /// host) changes nothing.
    pub fn install(&mut self, cert_path: &Path) -> Result<InstalledCert> {
        let ders = read_cert_chain(cert_path)?;
        let certs = ders.iter().map(|d| CertInfo::parse(d)).collect::<std::result::Result<Vec<_>, _>>()?;
        let host = &certs[0];
        if host.is_ca || !host.has_signer_eku() {
            return Err(Error::Usage(format!(
                "{} is not a token-signer certificate (CA:FALSE with the tka token-signing EKU)",
                host.subject
            )));
        }
        let Some(delegation) = host.delegation.clone() else {
            return Err(Error::Usage(format!(
                "{} carries no tka delegation: it is not a host certificate",
                host.subject
            )));
        };
        let request = fsutil::read_file(&self.request_path(), 64 * 1024)?;
        let request = read_host_request(&request)?;
        if host.spki_der != request.spki_der {
            return Err(Error::Usage(format!(
                "{} certifies another key than this host's (the key of {})",
                host.subject,
                self.request_path().display()
            )));
        }
        for pair in certs.windows(2) {
            if pair[0].issuer_raw != pair[1].subject_raw {
                return Err(Error::format(
                    cert_path.display().to_string(),
                    format!("{} is not issued by the next certificate, {}", pair[0].subject, pair[1].subject),
                ));
            }
        }
        let root = match certs.last() {
            Some(last) if certs.len() > 1 && last.is_self_issued() => Some(last),
            _ => None,
        };
        let chain_len = certs.len() - usize::from(root.is_some());
        let text: String = ders[..chain_len].iter().map(|d| pem::encode("CERTIFICATE", d)).collect();
        let installed = InstalledCert {
            subject: host.subject.clone(),
            serial: host.serial_hex.clone(),
            fingerprint: host.fingerprint.clone(),
            not_after: rfc3339(host.not_after),
            delegation,
        };
        write_replace(&self.chain_path(), text.as_bytes())?;
        if let Some(r) = root {
            write_replace(&self.dir.join(HOST_ROOT_FILE), pem::encode("CERTIFICATE", &r.der).as_bytes())?;
        }
        let mut config = self.config.clone();
        config.installed = Some(installed.clone());
        let json = serde_json::to_string_pretty(&config).expect("config serializes") + "\n";
        write_replace(&self.dir.join(HOST_CONFIG_FILE), json.as_bytes())?;
        self.config = config;
        Ok(installed)
    }

    /// The installed chain (DER): host certificate first, then its issuing CA(s).
    pub fn chain(&self) -> Result<Vec<Vec<u8>>> {
        let path = self.chain_path();
        if !path.exists() {
            return Err(Error::Usage(format!("no certificate is installed in {} yet", self.dir.display())));
        }
        read_cert_chain(&path)
    }

    /// The delegation of the installed certificate.
    pub fn delegation(&self) -> Result<Delegation> {
        let chain = self.chain()?;
        let host = CertInfo::parse(&chain[0])?;
        host.delegation.ok_or_else(|| Error::Refused(format!("{} carries no tka delegation", host.subject)))
    }

    /// The host key and installed chain, ready to sign tokens (within the
    /// delegation only: [`TokenSigner::check_delegation`]).
    pub fn token_signer(&self, unlock: &KeyUnlock) -> Result<TokenSigner> {
        let chain = self.chain()?;
        let key = open_key(&self.key_ref()?, unlock)?;
        TokenSigner::new(key, chain)
    }
}

/// A new public file (0644), recorded in `made`; never replaces one.
fn write_new(path: &Path, bytes: &[u8], made: &mut Vec<PathBuf>) -> Result<()> {
    fsutil::write_atomic(path, bytes, 0o644, Overwrite::Refuse).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::Exists { path: path.into() }
        } else {
            Error::io(path, e)
        }
    })?;
    made.push(path.to_path_buf());
    Ok(())
}

/// A public file (0644), replaced atomically.
fn write_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    fsutil::write_atomic(path, bytes, 0o644, Overwrite::Replace).map_err(|e| Error::io(path, e))
}
