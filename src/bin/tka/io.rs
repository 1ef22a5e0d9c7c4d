//! Plumbing shared by the commands: passphrases, machine identity, the
//! store location and file output; the input reading of `input.rs`.

use crate::args::{MachineArgs, NewKeyPassArgs, PassArgs, StoreArgs};
pub use crate::input::{
    identify_machine, is_stdio, now_or, open_input, read_bytes_arg, read_certs, read_request_arg, read_token_arg,
    remember_container_warning, take_stdin,
};
use crate::output::printable;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use tka::issuer::write_public;
use tka::keys::{open_key, KeyProtection, KeyRef, KeyUnlock, Passphrase, Signer};
use tka::machine::MachineIdentity;
use tka::store::Store;
use tka::{Error, Result};

/// This machine's identity for `product`, with no store to remember the
/// container warning in: see [`identify_in`].
pub fn identify(product: &str, args: &MachineArgs) -> Result<MachineIdentity> {
    identify_in(product, args, None)
}

/// This machine's identity for `product` as [`identify_machine`] finds it,
/// with `--machine-id-file` and `--quiet` from `args`.
pub fn identify_in(product: &str, args: &MachineArgs, store: Option<&Store>) -> Result<MachineIdentity> {
    identify_machine(product, args.machine_id_file.as_deref(), args.quiet, store)
}

pub fn protection(p: &Option<Passphrase>) -> KeyProtection<'_> {
    match p {
        Some(p) => KeyProtection::Passphrase(p),
        None => KeyProtection::InsecurePlaintext,
    }
}

pub fn env_passphrase() -> Option<Passphrase> {
    std::env::var("TKA_PASSPHRASE").ok().filter(|s| !s.is_empty()).map(Passphrase::new)
}

/// The passphrase for new keys: file, TKA_PASSPHRASE, or a confirmed prompt;
/// `None` only with --insecure-no-passphrase.
pub fn new_key_passphrase(args: &NewKeyPassArgs) -> Result<Option<Passphrase>> {
    if args.insecure_no_passphrase {
        if args.passphrase_file.is_some() {
            return Err(Error::Usage("--insecure-no-passphrase and --passphrase-file contradict each other".into()));
        }
        return Ok(None);
    }
    if let Some(f) = &args.passphrase_file {
        return Passphrase::from_file(f, args.insecure_key_permissions).map(Some);
    }
    if let Some(p) = env_passphrase() {
        return Ok(Some(p));
    }
    if std::io::stdin().is_terminal() {
        // Both copies are wiped on every path (the confirmation would otherwise linger).
        let mut a = zeroize::Zeroizing::new(prompt("New key passphrase: ")?);
        let b = zeroize::Zeroizing::new(prompt("Repeat passphrase: ")?);
        if a.is_empty() || a != b {
            return Err(Error::Usage("the passphrases are empty or do not match".into()));
        }
        return Ok(Some(Passphrase::new(std::mem::take(&mut *a))));
    }
    Err(Error::Usage(
        "no passphrase for the new key: use --passphrase-file FILE or TKA_PASSPHRASE (or --insecure-no-passphrase)"
            .into(),
    ))
}

pub fn prompt(label: &str) -> Result<String> {
    rpassword::prompt_password(label).map_err(|e| Error::Usage(format!("cannot read passphrase: {e}")))
}

/// Asks `question` on standard error and reads one visible line from
/// standard input (a terminal), trimmed.
pub fn ask(question: &str) -> Result<String> {
    use std::io::Write;
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| Error::Usage(format!("cannot read the answer: {e}")))?;
    Ok(line.trim().to_string())
}

/// The PKCS#11 user PIN from TKA_PKCS11_PIN (a URI's pin-source comes first, in the library).
pub fn env_pin() -> Option<Passphrase> {
    std::env::var("TKA_PKCS11_PIN").ok().filter(|s| !s.is_empty()).map(Passphrase::new)
}

/// The module for `pkcs11:` URIs that name none: TKA_PKCS11_MODULE.
pub fn env_module() -> Option<PathBuf> {
    std::env::var_os("TKA_PKCS11_MODULE").filter(|s| !s.is_empty()).map(PathBuf::from)
}

/// What unlocks existing keys: the key passphrase (asked for only when a
/// key file turns out to be encrypted) and the PKCS#11 PIN (asked for only
/// when a token needs one), each at most once, on a terminal.
pub struct LazyPass<'a> {
    args: &'a PassArgs,
    preset: Option<Option<Passphrase>>,
    cached: std::cell::RefCell<Option<KeyUnlock>>,
}

impl<'a> LazyPass<'a> {
    pub fn new(args: &'a PassArgs) -> Self {
        LazyPass { args, preset: None, cached: std::cell::RefCell::new(None) }
    }

    /// For commands that only create keys: no passphrase file, the
    /// passphrase for new key files settled; key and PIN file permissions
    /// checked unless `insecure_permissions` (`--insecure-key-permissions`).
    pub fn for_new_keys(passphrase: Option<Passphrase>, insecure_permissions: bool) -> LazyPass<'static> {
        static CHECKED: PassArgs =
            PassArgs { passphrase_file: None, insecure_key_permissions: false, allow_config_module_path: false };
        static UNCHECKED: PassArgs =
            PassArgs { passphrase_file: None, insecure_key_permissions: true, allow_config_module_path: false };
        LazyPass::with_passphrase(if insecure_permissions { &UNCHECKED } else { &CHECKED }, passphrase)
    }

    /// With the key passphrase already settled (`None`: plaintext keys).
    pub fn with_passphrase(args: &'a PassArgs, passphrase: Option<Passphrase>) -> Self {
        LazyPass { args, preset: Some(passphrase), cached: std::cell::RefCell::new(None) }
    }

    fn known(&self) -> Result<KeyUnlock> {
        let passphrase = match &self.preset {
            Some(p) => p.clone(),
            None => match &self.args.passphrase_file {
                Some(f) => Some(Passphrase::from_file(f, self.args.insecure_key_permissions)?),
                None => env_passphrase(),
            },
        };
        Ok(KeyUnlock {
            passphrase,
            pin: env_pin(),
            default_module: env_module(),
            allow_insecure_permissions: self.args.insecure_key_permissions,
            allow_config_module_path: self.args.allow_config_module_path,
        })
    }

    pub fn retry<T>(&self, f: impl Fn(&KeyUnlock) -> Result<T>) -> Result<T> {
        if self.cached.borrow().is_none() {
            *self.cached.borrow_mut() = Some(self.known()?);
        }
        let mut asked = 0;
        loop {
            let result = f(self.cached.borrow().as_ref().expect("set above"));
            let terminal = std::io::stdin().is_terminal();
            match result {
                Err(Error::PassphraseRequired { path }) if terminal && asked < 2 => {
                    let p = Passphrase::new(prompt(&format!(
                        "Passphrase for {}: ",
                        printable(&path.display().to_string())
                    ))?);
                    self.cached.borrow_mut().as_mut().expect("set above").passphrase = Some(p);
                }
                Err(Error::PinRequired { token }) if terminal && asked < 2 => {
                    let p = Passphrase::new(prompt(&format!("User PIN for token \"{}\": ", printable(&token)))?);
                    self.cached.borrow_mut().as_mut().expect("set above").pin = Some(p);
                }
                other => return other,
            }
            asked += 1;
        }
    }

    /// Opens a key file or `pkcs11:` URI.
    pub fn load(&self, key: &Path) -> Result<Box<dyn Signer>> {
        let key = KeyRef::from_path(key)?;
        self.retry(|u| open_key(&key, u))
    }
}

/// The store directory: `--store`/TKA_STORE, or the default for this user.
pub fn store_dir(args: &StoreArgs) -> PathBuf {
    match &args.store {
        Some(d) => d.clone(),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from);
            Store::default_dir_for(is_root(), home.as_deref(), xdg.as_deref())
        }
    }
}

/// Opens the store, creating it if missing (commands that write it).
pub fn open_store(args: &StoreArgs) -> Result<Store> {
    Ok(Store::open(&store_dir(args))?)
}

/// Opens the existing store for a read-only command: a missing store is
/// [`tka::store::StoreError::NoStore`], and nothing is created.
pub fn open_existing_store(args: &StoreArgs) -> Result<Store> {
    Ok(Store::open_existing(&store_dir(args))?)
}

/// Runs `f`, which may create the store; when `f` fails and the store
/// directory did not exist before, removes it again, so a failed command
/// leaves nothing behind — but only while it holds nothing: another process
/// may have created the same store at the same moment and trusted a root or
/// installed a token in it (then it is that process's store, and stays).
pub fn undo_new_store<T>(args: &StoreArgs, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let dir = store_dir(args);
    let fresh = std::fs::symlink_metadata(&dir).is_err();
    let result = f();
    if result.is_err() && fresh && tka::store::Store::holds_no_data(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

pub fn is_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // The owner of a fresh /proc/self is our effective uid.
        std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
    }
    #[cfg(not(unix))]
    false
}

/// Refuses an existing output file unless `force`; `-` (standard output) is never refused.
pub fn check_new_out(path: &Path, force: bool) -> Result<()> {
    if !force && !is_stdio(path) && path.exists() {
        return Err(Error::Exists { path: path.to_path_buf() });
    }
    Ok(())
}

/// Writes `text` to a new file (replacing one with `force`), or to standard
/// output for `-`.
pub fn write_file(path: &Path, text: &str, force: bool) -> Result<()> {
    if is_stdio(path) {
        crate::output::say_out_document(text);
        return Ok(());
    }
    if force && path.exists() {
        std::fs::remove_file(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    }
    write_public(path, text)
}

/// A DURATION argument (`30d`, `12h`) in seconds.
pub fn duration(s: &str) -> Result<i64> {
    tka::clock::parse_duration(s).map_err(Error::Usage)
}

/// The first certificate of a PEM or DER file (or of standard input, `-`).
pub fn first_cert(path: &Path) -> Result<tka::pki::CertInfo> {
    let der = read_certs(path)?.remove(0);
    tka::pki::CertInfo::parse(&der)
        .map_err(|e| Error::Format { what: path.display().to_string(), detail: e.to_string() })
}
