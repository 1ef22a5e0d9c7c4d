//! The cryptoki side: modules, sessions, keys on tokens.

use super::uri::Pkcs11Uri;
use crate::core::error::{Error, Result};
use crate::core::hex::lower_hex as hex;
use crate::core::keys::signer::{public_bits, Passphrase, SignatureAlgorithm, Signer};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// What the caller supplies beyond the URI.
#[derive(Debug, Default)]
pub struct Pkcs11Options {
    /// Module to load when the URI names none (e.g. from `TKA_PKCS11_MODULE`).
    pub default_module: Option<PathBuf>,
    /// The user PIN when the URI carries neither `pin-value` nor `pin-source`.
    pub pin: Option<Passphrase>,
    /// Accept a `pin-source` file that group or others can read.
    pub allow_insecure_permissions: bool,
    /// Load a `module-path` that a URI read from a configuration file
    /// ([`UriSource::ConfigFile`](super::UriSource::ConfigFile)) names
    /// outside the module directories: the operator vouches for it. Off,
    /// such a URI is refused with [`Error::ModulePathNotAllowed`].
    pub allow_config_module_path: bool,
}

/// How a signature algorithm is made on a token, from its mechanism list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MechanismPlan {
    /// The token hashes and pads: `CKM_SHA256_RSA_PKCS_PSS` or `CKM_SHA256_RSA_PKCS`.
    Combined,
    /// tka hashes with SHA-256; the token pads and signs the digest:
    /// `CKM_RSA_PKCS_PSS`, or `CKM_RSA_PKCS` over a DigestInfo.
    RawDigest,
}

/// Chooses the mechanism for `alg` from what the token offers, or says
/// which mechanisms are missing.
pub fn plan_mechanism(available: &[MechanismType], alg: SignatureAlgorithm) -> Result<MechanismPlan> {
    let (combined, raw, names) = match alg {
        SignatureAlgorithm::Ps256 => (
            MechanismType::SHA256_RSA_PKCS_PSS,
            MechanismType::RSA_PKCS_PSS,
            "CKM_SHA256_RSA_PKCS_PSS nor CKM_RSA_PKCS_PSS",
        ),
        SignatureAlgorithm::Rs256 => {
            (MechanismType::SHA256_RSA_PKCS, MechanismType::RSA_PKCS, "CKM_SHA256_RSA_PKCS nor CKM_RSA_PKCS")
        }
    };
    if available.contains(&combined) {
        Ok(MechanismPlan::Combined)
    } else if available.contains(&raw) {
        Ok(MechanismPlan::RawDigest)
    } else {
        // The binary adds what to do (another algorithm) to this message.
        Err(Error::Pkcs11(format!("the token offers neither {names}: it cannot make {} signatures", alg.jws_name())))
    }
}

/// DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1).
const SHA256_DIGEST_INFO: [u8; 19] =
    [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];

fn pss_params() -> PkcsPssParams {
    PkcsPssParams { hash_alg: MechanismType::SHA256, mgf: PkcsMgfType::MGF1_SHA256, s_len: 32.into() }
}

// ----- the library context -----

/// Loaded modules, by path: initialised once, kept for the process.
fn contexts() -> &'static Mutex<HashMap<PathBuf, Pkcs11>> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    CONTEXTS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The module file a URI names: its `module-path` (from a configuration
/// file only inside [`MODULE_DIRS`](super::MODULE_DIRS) unless
/// `allow_config_module_path`), else its `module-name` looked up in the
/// module directories (as `NAME`, `NAME.so` or `libNAME.so`), else the
/// caller's default module.
pub fn module_path(uri: &Pkcs11Uri, opts: &Pkcs11Options) -> Result<PathBuf> {
    if let Some(p) = &uri.module_path {
        uri.check_module_path(opts.allow_config_module_path)?;
        return Ok(p.clone());
    }
    if let Some(name) = &uri.module_name {
        super::uri::check_module_name(name)?;
        let files = if name.ends_with(".so") {
            vec![name.clone()]
        } else {
            vec![format!("{name}.so"), format!("lib{name}.so"), name.clone()]
        };
        return super::uri::MODULE_DIRS
            .iter()
            .flat_map(|d| files.iter().map(move |f| Path::new(d).join(f)))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::Pkcs11(format!(
                    "no PKCS#11 module named \"{name}\" in the module directories ({}): give module-path=",
                    super::uri::MODULE_DIRS.join(", ")
                ))
            });
    }
    opts.default_module.clone().ok_or_else(|| {
        Error::Pkcs11(format!(
            "{uri} names no PKCS#11 module: add ?module-path=/path/to/module.so (or set TKA_PKCS11_MODULE)"
        ))
    })
}

/// Loads and initialises `path` once per process.
pub fn context(path: &Path) -> Result<Pkcs11> {
    let mut map = contexts().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = map.get(path) {
        return Ok(c.clone());
    }
    if !path.exists() {
        return Err(Error::Pkcs11(format!("PKCS#11 module {} does not exist", path.display())));
    }
    let ctx =
        Pkcs11::new(path).map_err(|e| Error::Pkcs11(format!("cannot load PKCS#11 module {}: {e}", path.display())))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Error::Pkcs11(format!("cannot initialise PKCS#11 module {}: {}", path.display(), ck(&e))))
        }
    }
    map.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// A short form of a cryptoki error: the CKR name for token errors.
fn ck(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, func) => format!("{func} failed: CKR_{}", screaming(&format!("{rv:?}"))),
        other => other.to_string(),
    }
}

/// `PinIncorrect` → `PIN_INCORRECT`.
fn screaming(camel: &str) -> String {
    let mut s = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            s.push('_');
        }
        s.push(c.to_ascii_uppercase());
    }
    s
}

// ----- tokens -----

/// The one slot whose token matches the URI.
fn find_slot(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<(Slot, String)> {
    let slots = ctx.get_slots_with_token().map_err(|e| Error::Pkcs11(format!("cannot list slots: {}", ck(&e))))?;
    let mut found = Vec::new();
    let mut seen = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else { continue };
        if !info.token_initialized() {
            continue;
        }
        let label = info.label().trim_end().to_string();
        seen.push(format!("\"{label}\""));
        let ok = uri.token.as_deref().is_none_or(|t| t == label)
            && uri.manufacturer.as_deref().is_none_or(|m| m == info.manufacturer_id().trim_end())
            && uri.model.as_deref().is_none_or(|m| m == info.model().trim_end())
            && uri.serial.as_deref().is_none_or(|s| s == info.serial_number().trim_end())
            && uri.slot_id.is_none_or(|id| id == slot.id());
        if ok {
            found.push((slot, label));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::Pkcs11(format!(
            "no token matches {uri} (tokens present: {})",
            if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
        ))),
        n => Err(Error::Pkcs11(format!("{n} tokens match {uri}: add token=, serial= or slot-id= to choose one"))),
    }
}

/// The PIN: `pin-value`, then `pin-source`, then the caller's.
fn resolve_pin(uri: &Pkcs11Uri, opts: &Pkcs11Options) -> Result<Option<Passphrase>> {
    if let Some(v) = &uri.pin_value {
        return Ok(Some(Passphrase::new(v.to_string())));
    }
    if let Some(src) = &uri.pin_source {
        let path = src.strip_prefix("file:").unwrap_or(src);
        let path = path.strip_prefix("//").unwrap_or(path);
        return Passphrase::from_file(Path::new(path), opts.allow_insecure_permissions).map(Some);
    }
    Ok(opts.pin.clone())
}

/// Opens a session on `slot` and logs the user in (once per process).
fn open_session(ctx: &Pkcs11, slot: Slot, label: &str, pin: Option<&Passphrase>, rw: bool) -> Result<Session> {
    let session = if rw { ctx.open_rw_session(slot) } else { ctx.open_ro_session(slot) }
        .map_err(|e| Error::Pkcs11(format!("cannot open a session on token \"{label}\": {}", ck(&e))))?;
    let info = ctx.get_token_info(slot).map_err(|e| Error::Pkcs11(ck(&e)))?;
    if !info.login_required() {
        return Ok(session);
    }
    if info.user_pin_locked() {
        return Err(Error::Pkcs11(format!("the user PIN of token \"{label}\" is locked: unlock it with the SO PIN")));
    }
    let Some(pin) = pin else {
        // Logged in already by this process (login state is per application):
        // e.g. removing a key generated with a `pin-value`, which tka does not keep.
        let logged_in = session
            .get_session_info()
            .is_ok_and(|i| matches!(i.session_state(), SessionState::RoUser | SessionState::RwUser));
        return if logged_in { Ok(session) } else { Err(Error::PinRequired { token: label.to_string() }) };
    };
    let auth = AuthPin::from(pin.expose().to_string());
    match session.login(UserType::User, Some(&auth)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
            Err(Error::WrongPin { token: label.to_string() })
        }
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
            Err(Error::Pkcs11(format!("the user PIN of token \"{label}\" is locked: unlock it with the SO PIN")))
        }
        Err(e) => Err(Error::Pkcs11(format!("login to token \"{label}\" failed: {}", ck(&e)))),
    }
}

/// Search template for the URI's object of class `class`.
fn template(uri: &Pkcs11Uri, class: ObjectClass) -> Vec<Attribute> {
    let mut t = vec![Attribute::Class(class)];
    if let Some(o) = &uri.object {
        t.push(Attribute::Label(o.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        t.push(Attribute::Id(id.clone()));
    }
    t
}

fn find_one(session: &Session, uri: &Pkcs11Uri, class: ObjectClass, what: &str) -> Result<Option<ObjectHandle>> {
    let mut found = session
        .find_objects(&template(uri, class))
        .map_err(|e| Error::Pkcs11(format!("cannot search token: {}", ck(&e))))?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => {
            Err(Error::Pkcs11(format!("{n} {what}s match {}: add object= or id= to name exactly one", uri.describe())))
        }
    }
}

/// The RSA public key of `key` (read from the private key's public
/// attributes, or from the matching public key object).
fn read_public(session: &Session, uri: &Pkcs11Uri, key: ObjectHandle) -> Result<rsa::PublicKey> {
    let attrs = |h| session.get_attributes(h, &[AttributeType::Modulus, AttributeType::PublicExponent]);
    let parse = |attrs: Vec<Attribute>| {
        let mut n = None;
        let mut e = None;
        for a in attrs {
            match a {
                Attribute::Modulus(v) if !v.is_empty() => n = Some(v),
                Attribute::PublicExponent(v) if !v.is_empty() => e = Some(v),
                _ => {}
            }
        }
        n.zip(e)
    };
    let (n, e) = match attrs(key).ok().and_then(parse) {
        Some(ne) => ne,
        None => {
            let public = find_one(session, uri, ObjectClass::PUBLIC_KEY, "public key")?.ok_or_else(|| {
                Error::Pkcs11(format!("cannot read the public half of {}: no public key object", uri.describe()))
            })?;
            attrs(public)
                .ok()
                .and_then(parse)
                .ok_or_else(|| Error::Pkcs11(format!("cannot read the modulus of {}", uri.describe())))?
        }
    };
    use rsa::BoxedUint;
    rsa::PublicKey::new(BoxedUint::from_be_slice_vartime(&n), BoxedUint::from_be_slice_vartime(&e))
        .map_err(|err| Error::Pkcs11(format!("{} is not a usable RSA key: {err}", uri.describe())))
}

/// An RSA private key on a PKCS#11 token.
pub struct Pkcs11Key {
    ctx: Pkcs11,
    slot: Slot,
    token: String,
    key: ObjectHandle,
    public: rsa::PublicKey,
    mechanisms: Vec<MechanismType>,
    /// Idle sessions; the first one opened holds the login.
    sessions: Mutex<Vec<Session>>,
    uri: Pkcs11Uri,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pkcs11Key({} RSA-{})", self.uri, public_bits(&self.public))
    }
}

impl Pkcs11Key {
    /// Opens the private key the URI names: exactly one RSA private key
    /// that may sign, on exactly one token.
    pub fn open(uri: &Pkcs11Uri, opts: &Pkcs11Options) -> Result<Pkcs11Key> {
        if uri.object.is_none() && uri.id.is_none() {
            return Err(Error::Usage(format!("{uri} names no key: add object=LABEL or id=%XX")));
        }
        if uri.object_type.as_deref().is_some_and(|t| t != "private") {
            return Err(Error::Usage(format!(
                "{uri} names a {} object: signing needs type=private",
                uri.object_type.as_deref().unwrap_or("")
            )));
        }
        let ctx = context(&module_path(uri, opts)?)?;
        let (slot, token) = find_slot(&ctx, uri)?;
        let pin = resolve_pin(uri, opts)?;
        let session = open_session(&ctx, slot, &token, pin.as_ref(), false)?;
        let key = find_one(&session, uri, ObjectClass::PRIVATE_KEY, "private key")?
            .ok_or_else(|| Error::Pkcs11(format!("no private key {} matches {uri}", uri.describe())))?;
        let attrs = session
            .get_attributes(key, &[AttributeType::KeyType, AttributeType::Sign])
            .map_err(|e| Error::Pkcs11(format!("cannot read {}: {}", uri.describe(), ck(&e))))?;
        for a in attrs {
            match a {
                Attribute::KeyType(t) if t != KeyType::RSA => {
                    return Err(Error::Pkcs11(format!(
                        "{} has key type {}: tka signs with RSA keys only",
                        uri.describe(),
                        t.to_string().trim_start_matches("CKK_")
                    )))
                }
                Attribute::Sign(false) => {
                    return Err(Error::Pkcs11(format!("{} may not sign (CKA_SIGN is false)", uri.describe())))
                }
                _ => {}
            }
        }
        let public = read_public(&session, uri, key)?;
        let bits = public_bits(&public);
        if bits < 2048 {
            return Err(Error::Pkcs11(format!("{} is RSA-{bits}: tka needs at least 2048 bits", uri.describe())));
        }
        let mechanisms =
            ctx.get_mechanism_list(slot).map_err(|e| Error::Pkcs11(format!("cannot list mechanisms: {}", ck(&e))))?;
        let mut uri = uri.clone();
        uri.pin_value = None;
        Ok(Pkcs11Key { ctx, slot, token, key, public, mechanisms, sessions: Mutex::new(vec![session]), uri })
    }

    /// The URI the key was opened with (without any `pin-value`).
    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    fn take_session(&self) -> Result<Session> {
        if let Some(s) = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(s);
        }
        // Login state is shared by all sessions of the process.
        self.ctx
            .open_ro_session(self.slot)
            .map_err(|e| Error::Pkcs11(format!("cannot open a session on token \"{}\": {}", self.token, ck(&e))))
    }
}

impl Signer for Pkcs11Key {
    fn public_key(&self) -> &rsa::PublicKey {
        &self.public
    }

    fn sign(&self, alg: SignatureAlgorithm, message: &[u8]) -> Result<Vec<u8>> {
        self.sign_with(alg, plan_mechanism(&self.mechanisms, alg)?, message)
    }
}

impl Pkcs11Key {
    /// Signs with an explicit mechanism plan (normally chosen by
    /// [`plan_mechanism`] from the token's mechanism list). Every
    /// signature is checked against the public key before it is returned.
    pub fn sign_with(&self, alg: SignatureAlgorithm, plan: MechanismPlan, message: &[u8]) -> Result<Vec<u8>> {
        let digest = Sha256::digest(message);
        let (mechanism, data): (Mechanism, Vec<u8>) = match (alg, plan) {
            (SignatureAlgorithm::Ps256, MechanismPlan::Combined) => {
                (Mechanism::Sha256RsaPkcsPss(pss_params()), message.to_vec())
            }
            (SignatureAlgorithm::Ps256, MechanismPlan::RawDigest) => {
                (Mechanism::RsaPkcsPss(pss_params()), digest.to_vec())
            }
            (SignatureAlgorithm::Rs256, MechanismPlan::Combined) => (Mechanism::Sha256RsaPkcs, message.to_vec()),
            (SignatureAlgorithm::Rs256, MechanismPlan::RawDigest) => {
                (Mechanism::RsaPkcs, [&SHA256_DIGEST_INFO[..], &digest[..]].concat())
            }
        };
        let session = self.take_session()?;
        let result = session.sign(&mechanism, self.key, &data);
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).push(session);
        let sig =
            result.map_err(|e| Error::Pkcs11(format!("signing with {} failed: {}", self.uri.describe(), ck(&e))))?;
        // A token that signs wrongly must not produce a token that fails later.
        if !crate::core::keys::signer::verify_signature(&self.public, alg, message, &sig) {
            return Err(Error::Pkcs11(format!("the signature from {} does not verify", self.uri.describe())));
        }
        Ok(sig)
    }
}

/// Generates an RSA key pair on the token the URI names, labelled with
/// its `object` (required) and its `id` (random 16 bytes when absent). The
/// private key is sensitive and not extractable. Refuses when an object
/// with that label or id exists. Returns the URI of the new private key
/// (with its id) and its public key.
pub fn generate_rsa_key(uri: &Pkcs11Uri, bits: usize, opts: &Pkcs11Options) -> Result<(Pkcs11Uri, rsa::PublicKey)> {
    if !crate::core::keys::signer::ALLOWED_BITS.contains(&bits) {
        return Err(Error::Usage(format!("unsupported key size {bits}: choose 2048, 3072 or 4096")));
    }
    let label = uri
        .object
        .clone()
        .ok_or_else(|| Error::Usage(format!("{uri} names no object: add object=LABEL for the new key")))?;
    let ctx = context(&module_path(uri, opts)?)?;
    let (slot, token) = find_slot(&ctx, uri)?;
    let pin = resolve_pin(uri, opts)?;
    let session = open_session(&ctx, slot, &token, pin.as_ref(), true)?;
    let mechanisms = ctx.get_mechanism_list(slot).map_err(|e| Error::Pkcs11(ck(&e)))?;
    if !mechanisms.contains(&MechanismType::RSA_PKCS_KEY_PAIR_GEN) {
        return Err(Error::Pkcs11(format!(
            "token \"{token}\" cannot generate RSA keys (no CKM_RSA_PKCS_KEY_PAIR_GEN)"
        )));
    }
    let by_label = Pkcs11Uri { object: Some(label.clone()), id: None, ..Pkcs11Uri::default() };
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY, ObjectClass::CERTIFICATE] {
        let existing = session.find_objects(&template(&by_label, class)).map_err(|e| Error::Pkcs11(ck(&e)))?;
        if !existing.is_empty() {
            return Err(Error::Pkcs11(format!(
                "token \"{token}\" already holds an object labelled \"{label}\": tka never replaces a key; choose another object="
            )));
        }
    }
    let id = match &uri.id {
        Some(id) => {
            let by_id = Pkcs11Uri { id: Some(id.clone()), ..Pkcs11Uri::default() };
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                if !session.find_objects(&template(&by_id, class)).map_err(|e| Error::Pkcs11(ck(&e)))?.is_empty() {
                    return Err(Error::Pkcs11(format!("token \"{token}\" already holds a key with id {}", hex(id))));
                }
            }
            id.clone()
        }
        None => {
            let mut id = vec![0u8; 16];
            getrandom::fill(&mut id).map_err(|e| Error::format("random id", e))?;
            id
        }
    };
    let public_template = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::ModulusBits((bits as std::os::raw::c_ulong).into()),
        Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.clone()),
    ];
    let private_template = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.clone()),
    ];
    let (public_handle, private) = session
        .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public_template, &private_template)
        .map_err(|e| Error::Pkcs11(format!("key generation on token \"{token}\" failed: {}", ck(&e))))?;
    let mut new_uri = Pkcs11Uri { token: Some(token), object: Some(label), id: Some(id), ..uri.clone() };
    new_uri.pin_value = None;
    new_uri.object_type = None;
    match read_public(&session, &new_uri, private) {
        Ok(public) => Ok((new_uri, public)),
        Err(e) => {
            // An unusable new key pair is not left on the token.
            let removed = [private, public_handle].into_iter().all(|h| session.destroy_object(h).is_ok());
            Err(if removed {
                e
            } else {
                Error::KeysLeftOnToken { error: Box::new(e), left: vec![new_uri.to_string()] }
            })
        }
    }
}

/// Removes a key pair that tka generated from its token: the private and
/// public key objects whose label is the URI's `object` and whose id is its
/// `id` (both required, so nothing else on the token can match). Undoes a
/// [`generate_rsa_key`] whose command then failed. Returns how many
/// objects were removed.
pub fn remove_key_pair(uri: &Pkcs11Uri, opts: &Pkcs11Options) -> Result<usize> {
    remove_key_pair_inner(uri, opts).map_err(|e| {
        let detail = e.to_string();
        Error::Pkcs11(format!("cannot remove {uri}: {}", detail.strip_prefix("PKCS#11: ").unwrap_or(&detail)))
    })
}

fn remove_key_pair_inner(uri: &Pkcs11Uri, opts: &Pkcs11Options) -> Result<usize> {
    let (Some(label), Some(id)) = (&uri.object, &uri.id) else {
        return Err(Error::Usage("removal needs both object= and id=".into()));
    };
    #[cfg(feature = "test-hooks")]
    if std::env::var_os("TKA_TEST_FAIL_KEY_REMOVAL").is_some() {
        return Err(Error::Pkcs11("removal failed (test hook TKA_TEST_FAIL_KEY_REMOVAL)".into()));
    }
    let ctx = context(&module_path(uri, opts)?)?;
    let (slot, token) = find_slot(&ctx, uri)?;
    let pin = resolve_pin(uri, opts)?;
    let session = open_session(&ctx, slot, &token, pin.as_ref(), true)?;
    let mut removed = 0;
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        let t = [Attribute::Class(class), Attribute::Label(label.as_bytes().to_vec()), Attribute::Id(id.clone())];
        for h in session.find_objects(&t).map_err(|e| Error::Pkcs11(ck(&e)))? {
            session.destroy_object(h).map_err(|e| Error::Pkcs11(ck(&e)))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// One token in a [`list`] result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenListing {
    /// Slot number.
    pub slot_id: u64,
    /// Token label.
    pub label: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// Model.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Whether the token is initialised (an uninitialised slot holds no keys).
    pub initialized: bool,
    /// Whether a login is needed to use private objects.
    pub login_required: bool,
    /// Whether private objects were listed (a PIN was given and accepted).
    pub logged_in: bool,
    /// Keys and certificates.
    pub objects: Vec<ObjectListing>,
}

/// One object in a [`TokenListing`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectListing {
    /// `private`, `public` or `cert`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Label.
    pub label: String,
    /// Id, lower-case hex.
    pub id: String,
    /// Key type (`RSA`, `EC`, ...), for keys.
    pub key_type: Option<String>,
    /// Modulus size, for RSA keys.
    pub bits: Option<usize>,
    /// The URI naming this object (with the module path).
    pub uri: String,
}

/// Lists the tokens of `module` and their keys and certificates. Private
/// keys are listed only when a PIN is given (`pin`); a token the PIN does
/// not open is listed without them.
pub fn list(module: &Path, pin: Option<&Passphrase>) -> Result<Vec<TokenListing>> {
    let ctx = context(module)?;
    let slots = ctx.get_slots_with_token().map_err(|e| Error::Pkcs11(format!("cannot list slots: {}", ck(&e))))?;
    let mut out = Vec::new();
    for slot in slots {
        let info = ctx.get_token_info(slot).map_err(|e| Error::Pkcs11(ck(&e)))?;
        let label = info.label().trim_end().to_string();
        let mut listing = TokenListing {
            slot_id: slot.id(),
            label: label.clone(),
            manufacturer: info.manufacturer_id().trim_end().into(),
            model: info.model().trim_end().into(),
            serial: info.serial_number().trim_end().into(),
            initialized: info.token_initialized(),
            login_required: info.login_required(),
            logged_in: false,
            objects: Vec::new(),
        };
        if !info.token_initialized() {
            out.push(listing);
            continue;
        }
        let session = match pin {
            Some(p) if info.login_required() => match open_session(&ctx, slot, &label, Some(p), false) {
                Ok(s) => {
                    listing.logged_in = true;
                    s
                }
                Err(Error::WrongPin { token }) => return Err(Error::WrongPin { token }),
                Err(_) => ctx.open_ro_session(slot).map_err(|e| Error::Pkcs11(ck(&e)))?,
            },
            _ => ctx.open_ro_session(slot).map_err(|e| Error::Pkcs11(ck(&e)))?,
        };
        let base = Pkcs11Uri {
            token: Some(label.clone()),
            serial: Some(listing.serial.clone()),
            module_path: Some(module.to_path_buf()),
            ..Pkcs11Uri::default()
        };
        for (class, kind) in [
            (ObjectClass::PRIVATE_KEY, "private"),
            (ObjectClass::PUBLIC_KEY, "public"),
            (ObjectClass::CERTIFICATE, "cert"),
        ] {
            let handles = session.find_objects(&[Attribute::Class(class)]).map_err(|e| Error::Pkcs11(ck(&e)))?;
            for h in handles {
                let attrs = session
                    .get_attributes(
                        h,
                        &[AttributeType::Label, AttributeType::Id, AttributeType::KeyType, AttributeType::Modulus],
                    )
                    .unwrap_or_default();
                let mut o = ObjectListing {
                    kind: kind.into(),
                    label: String::new(),
                    id: String::new(),
                    key_type: None,
                    bits: None,
                    uri: String::new(),
                };
                let mut id = Vec::new();
                for a in attrs {
                    match a {
                        Attribute::Label(l) => o.label = String::from_utf8_lossy(&l).into_owned(),
                        Attribute::Id(i) => id = i,
                        Attribute::KeyType(t) => o.key_type = Some(t.to_string().trim_start_matches("CKK_").into()),
                        Attribute::Modulus(m) if !m.is_empty() => {
                            let n = rsa::BoxedUint::from_be_slice_vartime(&m);
                            o.bits = Some(n.bit_width() as usize);
                        }
                        _ => {}
                    }
                }
                o.id = hex(&id);
                let u = Pkcs11Uri {
                    object: (!o.label.is_empty()).then(|| o.label.clone()),
                    id: (!id.is_empty()).then_some(id),
                    object_type: Some(kind.into()),
                    ..base.clone()
                };
                o.uri = u.to_string();
                listing.objects.push(o);
            }
        }
        out.push(listing);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps256_prefers_the_combined_mechanism_then_raw_pss() {
        let both = [MechanismType::RSA_PKCS_PSS, MechanismType::SHA256_RSA_PKCS_PSS];
        assert_eq!(plan_mechanism(&both, SignatureAlgorithm::Ps256).unwrap(), MechanismPlan::Combined);
        let raw = [MechanismType::RSA_PKCS_PSS, MechanismType::RSA_PKCS];
        assert_eq!(plan_mechanism(&raw, SignatureAlgorithm::Ps256).unwrap(), MechanismPlan::RawDigest);
    }

    #[test]
    fn rs256_prefers_the_combined_mechanism_then_raw_pkcs1() {
        let both = [MechanismType::RSA_PKCS, MechanismType::SHA256_RSA_PKCS];
        assert_eq!(plan_mechanism(&both, SignatureAlgorithm::Rs256).unwrap(), MechanismPlan::Combined);
        assert_eq!(
            plan_mechanism(&[MechanismType::RSA_PKCS], SignatureAlgorithm::Rs256).unwrap(),
            MechanismPlan::RawDigest
        );
    }

    #[test]
    fn a_token_without_the_mechanism_is_refused_by_name() {
        // A token with PKCS#1 v1.5 only cannot make PS256 signatures.
        let pkcs1_only = [MechanismType::RSA_PKCS, MechanismType::SHA256_RSA_PKCS];
        let e = plan_mechanism(&pkcs1_only, SignatureAlgorithm::Ps256).unwrap_err().to_string();
        assert_eq!(
            e,
            "PKCS#11: the token offers neither CKM_SHA256_RSA_PKCS_PSS nor CKM_RSA_PKCS_PSS: it cannot make PS256 \
             signatures"
        );
        let e = plan_mechanism(&[MechanismType::RSA_PKCS_PSS], SignatureAlgorithm::Rs256).unwrap_err().to_string();
        assert!(e.contains("neither CKM_SHA256_RSA_PKCS nor CKM_RSA_PKCS"), "{e}");
    }

    #[test]
    fn cryptoki_errors_read_as_ckr_names() {
        assert_eq!(screaming("PinIncorrect"), "PIN_INCORRECT");
        assert_eq!(screaming("KeyFunctionNotPermitted"), "KEY_FUNCTION_NOT_PERMITTED");
    }
}
