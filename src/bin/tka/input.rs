//! Reading what the command line names, with no clap in it: bounded file
//! and standard-input reading, certificates, CRLs, tokens and requests,
//! and this machine's identity. Shared by the full command (`main.rs`,
//! through `io.rs`) and the verification fast path (`front.rs`).

use std::io::Read;
use std::path::{Path, PathBuf};
use tka::fsutil;
use tka::issuer::read_cert_chain;
use tka::machine::{IdentifyOptions, MachineIdentity};
use tka::pki::{pem, Crl};
use tka::store::Store;
use tka::{Error, Result, VerifyError};

/// Set once this run showed the container warning: at most once per run.
static CONTAINER_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// This machine's identity for `product`. The warning that a container
/// without an explicit identity binds to the host is shown on standard
/// error at most once per run, not with `--quiet`, and not for a `store`
/// that remembers showing it ([`remember_container_warning`]); the other
/// warnings when the binding is weak. `machine_id_file` is
/// `--machine-id-file`, `quiet` is `--quiet`.
pub fn identify_machine(
    product: &str,
    machine_id_file: Option<&Path>,
    quiet: bool,
    store: Option<&Store>,
) -> Result<MachineIdentity> {
    use std::sync::atomic::Ordering;
    let mut opts = IdentifyOptions::from_env();
    opts.explicit_id_file = machine_id_file.map(Path::to_path_buf);
    let id = MachineIdentity::identify(product, &opts)?;
    let container = id.container_warning();
    let show_container = container.is_some()
        && !quiet
        && !CONTAINER_WARNED.load(Ordering::Relaxed)
        && !store.is_some_and(|s| s.container_warning_shown().unwrap_or(false));
    let weak = id.binding_strength() == Some(tka::machine::BindingStrength::Weak);
    if show_container || weak {
        for w in id.warnings() {
            if container.as_ref() != Some(&w) || show_container {
                crate::output::say_err(format!("warning: {w}"));
            }
        }
    }
    if show_container {
        CONTAINER_WARNED.store(true, Ordering::Relaxed);
        crate::output::say_err(
            "hint: give each container its own identity with --machine-id-file PATH or TKA_MACHINE_ID=value \
             (or --quiet); shown once per store",
        );
    }
    Ok(id)
}

/// Records in `store` that this run showed the container warning, so it is
/// not shown again; called by the commands that write the store, after
/// they succeeded. A failure to record is not the command's failure.
pub fn remember_container_warning(store: &Store) {
    if CONTAINER_WARNED.load(std::sync::atomic::Ordering::Relaxed) {
        let _ = store.lock().and_then(|l| l.note_container_warning_shown());
    }
}

/// Reads a regular file of at most `limit` bytes (a FIFO, device or
/// directory is refused unread); a larger file is refused as
/// [`VerifyError::TooLarge`] for `what`.
pub fn read_limited(path: &Path, limit: usize, what: &'static str) -> Result<Vec<u8>> {
    fsutil::read_bounded(path, limit as u64).map_err(|e| match e {
        fsutil::ReadError::TooLarge { .. } => VerifyError::TooLarge { what, limit }.into(),
        e => e.at(path),
    })
}

/// Opens a regular file to stream from (a FIFO, device or directory is refused unopened).
pub fn open_input(path: &Path) -> Result<std::fs::File> {
    fsutil::open_regular(path, fsutil::Access::Public).map_err(|e| e.at(path))
}

/// Set once standard input has been read: `-` names it for one argument only.
static STDIN_TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Claims standard input for one argument; a second `-` is a usage error.
pub fn take_stdin() -> Result<std::io::Stdin> {
    if STDIN_TAKEN.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::Usage("standard input (`-`) can be read for one argument only".into()));
    }
    Ok(std::io::stdin())
}

/// Reads standard input, refusing more than `limit` bytes.
fn read_stdin(limit: usize, what: &'static str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    take_stdin()?
        .take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Usage(format!("standard input: {e}")))?;
    if buf.len() > limit {
        return Err(VerifyError::TooLarge { what, limit }.into());
    }
    Ok(buf)
}

/// Reads a file, or standard input for `-`, of at most `limit` bytes (as
/// [`read_limited`]).
pub fn read_bytes_arg(path: &Path, limit: usize, what: &'static str) -> Result<Vec<u8>> {
    if is_stdio(path) {
        read_stdin(limit, what)
    } else {
        read_limited(path, limit, what)
    }
}

/// The certificates (PEM or DER) in a file, or on standard input for `-`.
pub fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>> {
    if is_stdio(path) {
        let bytes = read_stdin(1024 * 1024, "certificate file")?;
        return pem::certificates_from_bytes(&bytes, "standard input");
    }
    read_cert_chain(path)
}

/// Reads a file or standard input (`-`), refusing more than `limit` bytes.
pub fn read_input(arg: &str, limit: usize, what: &'static str) -> Result<String> {
    let bytes = read_bytes_arg(Path::new(arg), limit, what)?;
    String::from_utf8(bytes).map_err(|_| VerifyError::Malformed { what, detail: "not UTF-8 text".into() }.into())
}

/// Whether an argument that names no file is the text itself: it holds
/// whitespace (a wrapped paste), starts like a request (`TKAR1-`, `{`) or a
/// token (`eyJ`), or is longer than any file name written by hand with no
/// `/` in it.
fn looks_like_text(arg: &str) -> bool {
    arg.contains(char::is_whitespace)
        || arg.starts_with(tka::request::TEXT_PREFIX)
        || arg.starts_with('{')
        || arg.starts_with("eyJ")
        || (arg.len() > 100 && !arg.contains('/'))
}

/// A request or token argument: `-` (standard input), a file, or the text
/// itself (a file of that name comes first).
fn read_text_arg(arg: &str, limit: usize, what: &'static str) -> Result<String> {
    if arg != "-" && std::fs::symlink_metadata(arg).is_err() && looks_like_text(arg) {
        return Ok(arg.to_string());
    }
    read_input(arg, limit, what)
}

/// A token argument: `-`, a file, or the token text itself, with any
/// whitespace and line breaks in it removed ([`tka::token::from_pasted`]).
pub fn read_token_arg(arg: &str) -> Result<String> {
    Ok(tka::token::from_pasted(&read_token_text(arg)?)?)
}

/// A token argument's text as given (`-`, a file, or the text itself), not
/// yet made ready with [`tka::token::from_pasted`].
pub fn read_token_text(arg: &str) -> Result<String> {
    read_text_arg(arg, tka::jws::MAX_JWS_SIZE, "token")
}

/// A request argument: `-`, a file, or the request text itself (JSON or
/// the `TKAR1-` text form, which may be wrapped).
pub fn read_request_arg(arg: &str) -> Result<tka::request::ActivationRequest> {
    let text = read_text_arg(arg, tka::request::MAX_REQUEST_SIZE, "request")?;
    Ok(tka::request::ActivationRequest::parse(&text)?)
}

pub fn read_trust_path(path: &Path) -> Result<Vec<Vec<u8>>> {
    if !is_stdio(path) && path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pem" || x == "crt" || x == "der"))
            .collect();
        entries.sort();
        let mut out = Vec::new();
        for e in entries {
            out.extend(read_cert_chain(&e)?);
        }
        if out.is_empty() {
            return Err(Error::Usage(format!("{} holds no .pem, .crt or .der certificates", path.display())));
        }
        Ok(out)
    } else {
        read_certs(path)
    }
}

pub fn read_crls(path: &Path) -> Result<Vec<Crl>> {
    // A CRL is at most 1 MiB of DER (Crl::parse); its PEM form is a third larger.
    const LIMIT: usize = 2 * 1024 * 1024;
    let bytes = read_bytes_arg(path, LIMIT, "CRL")?;
    let ders = match std::str::from_utf8(&bytes) {
        Ok(t) if t.contains("-----BEGIN") => pem::decode_all(t, "X509 CRL")?,
        _ => vec![bytes],
    };
    Ok(ders.iter().map(|d| Crl::parse(d)).collect::<std::result::Result<_, _>>()?)
}

/// Whether a file argument is `-`: standard input or output.
pub fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// `--at TIME` (RFC 3339), or now.
pub fn now_or(at: &Option<String>) -> Result<i64> {
    match at {
        Some(s) => tka::clock::parse_rfc3339(s).map_err(Error::Usage),
        None => Ok(tka::clock::now()),
    }
}
