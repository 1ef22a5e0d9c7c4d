//! File reads and writes shared by every module.
//!
//! Every file tka reads is read through [`read_bounded`] (or
//! [`read_secret`]): a regular file only, never more than a stated limit.
//!
//! Every write tka makes is atomic and durable: the bytes go to a temporary
//! file in the destination directory, the file is fsynced, renamed over the
//! destination, and the directory is fsynced. A reader therefore sees either
//! the old file or the new one, never a torn write, even after a crash.

use crate::core::error::Error;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Whether an existing destination may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse with [`io::ErrorKind::AlreadyExists`] if the destination exists.
    Refuse,
    /// Replace the destination atomically.
    Replace,
}

/// Writes `bytes` to `path` atomically and durably with the given Unix `mode`.
///
/// With [`Overwrite::Refuse`] the final step is a hard link instead of a
/// rename, so two writers racing for the same new path cannot both win and an
/// existing file is never replaced.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, overwrite: Overwrite) -> io::Result<()> {
    let dir = parent_dir(path);
    let tmp = temp_path(&dir, path);
    let result = (|| {
        let mut f = create_new_with_mode(&tmp, mode)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        crash_point("write-atomic.rename", path)?;
        match overwrite {
            Overwrite::Replace => fs::rename(&tmp, path)?,
            Overwrite::Refuse => {
                fs::hard_link(&tmp, path)?;
                crash_point("write-atomic.unlink-temp", path)?;
                fs::remove_file(&tmp)?;
            }
        }
        crash_point("write-atomic.sync-dir", path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A named point where a write step is about to happen, for crash tests;
/// `at` is the file (or directory) the step is about.
///
/// Test hook (cargo feature `test-hooks` only, like `TKA_SYSROOT`), driven
/// by the environment:
/// - `TKA_FAULT_TRACE=FILE` appends one line per point passed,
///   `<point>\t<at>`, so a test learns every write step a command takes;
/// - `TKA_FAULT=<point>:<n>` makes the n-th pass of `<point>` (counted
///   from 1) end the process at once (`_exit(137)`: no destructor, no
///   cleanup, like SIGKILL), or, as `TKA_FAULT=<point>:<n>:io`, return an
///   I/O error from the step instead;
/// - `TKA_CRASH_AT_WRITE=N` ends the process at the N-th point of any name.
///
/// So a test can stop a command at each of its write steps in turn.
/// Without the feature this does nothing and reads no environment.
#[cfg(feature = "test-hooks")]
pub(crate) fn crash_point(point: &'static str, at: &Path) -> io::Result<()> {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    static STEP: AtomicU64 = AtomicU64::new(0);
    static PASSES: Mutex<Option<HashMap<&'static str, u64>>> = Mutex::new(None);
    let die = || {
        #[cfg(unix)]
        // SAFETY: _exit ends the process without touching any Rust state.
        unsafe {
            libc::_exit(137)
        };
        #[cfg(not(unix))]
        std::process::abort();
    };
    if let Some(trace) = std::env::var_os("TKA_FAULT_TRACE") {
        let line = format!("{point}\t{}\n", at.display());
        let _ = OpenOptions::new().create(true).append(true).open(trace).and_then(|mut f| f.write_all(line.as_bytes()));
    }
    let pass = {
        let mut passes = PASSES.lock().unwrap_or_else(|e| e.into_inner());
        let n = passes.get_or_insert_with(HashMap::new).entry(point).or_insert(0);
        *n += 1;
        *n
    };
    if let Ok(fault) = std::env::var("TKA_FAULT") {
        let mut parts = fault.split(':');
        if parts.next() == Some(point) && parts.next().and_then(|n| n.parse::<u64>().ok()) == Some(pass) {
            if parts.next() == Some("io") {
                return Err(io::Error::other(format!("injected fault at {point} (pass {pass})")));
            }
            die();
        }
    }
    let step = STEP.fetch_add(1, Ordering::SeqCst) + 1;
    if std::env::var("TKA_CRASH_AT_WRITE").ok().and_then(|v| v.parse::<u64>().ok()) == Some(step) {
        die();
    }
    Ok(())
}

/// Without the `test-hooks` feature: nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub(crate) fn crash_point(_point: &'static str, _at: &Path) -> io::Result<()> {
    Ok(())
}

/// Creates a new file with `mode`, failing if it exists.
pub fn create_new_with_mode(path: &Path, mode: u32) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let f = opts.open(path)?;
    // The umask may have removed bits we asked for, never added any; set the
    // exact mode so 0644 public files are readable as intended.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    Ok(f)
}

/// Fsyncs a directory so a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_path(dir: &Path, path: &Path) -> PathBuf {
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).expect("operating system random number generator");
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let hex = super::hex::lower_hex(&rnd);
    dir.join(format!(".{name}.{hex}.tmp"))
}

/// Why a file was not read. [`ReadError::at`] turns it into an [`Error`]
/// naming the file.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadError {
    /// Opening or reading failed (not found, permission denied, ...).
    Io(io::Error),
    /// The path names something other than a regular file: a FIFO, a
    /// character or block device, a socket or a directory. Nothing was read.
    NotARegularFile {
        /// What it is, in words (`"FIFO"`, `"character device"`, ...).
        kind: &'static str,
    },
    /// The file holds more than `limit` bytes; at most `limit + 1` were read.
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A secret file (passphrase, PIN, private key) that group or others
    /// may read. Nothing was read.
    Readable {
        /// Its permission bits.
        mode: u32,
    },
}

impl ReadError {
    /// The error for `path`: [`Error::Io`], [`Error::NotARegularFile`],
    /// [`Error::FileTooLarge`] or [`Error::InsecureSecretPermissions`].
    pub fn at(self, path: &Path) -> Error {
        let path = path.to_path_buf();
        match self {
            ReadError::Io(source) => Error::Io { path, source },
            ReadError::NotARegularFile { kind } => Error::NotARegularFile { path, kind },
            ReadError::TooLarge { limit } => Error::FileTooLarge { path, limit },
            ReadError::Readable { mode } => Error::InsecureSecretPermissions { path, mode },
        }
    }

    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => e.fmt(f),
            ReadError::NotARegularFile { kind } => write!(f, "it is a {kind}, not a regular file"),
            ReadError::TooLarge { limit } => write!(f, "it is larger than the {limit}-byte limit"),
            ReadError::Readable { mode } => {
                write!(f, "it has permissions {mode:04o}: it must not be readable by group or others")
            }
        }
    }
}

impl std::error::Error for ReadError {}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Who may read a file tka is asked to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (certificates, requests, tokens, lists).
    Public,
    /// Only the owner: a passphrase, PIN or private key file that group or
    /// others can read is refused with [`ReadError::Readable`].
    Private,
    /// A secret file whose group/other permissions the user explicitly
    /// accepted (`--insecure-key-permissions`).
    PrivateInsecureAllowed,
}

/// Opens `path` for reading and checks, on the opened descriptor, that it is
/// a regular file (and, for [`Access::Private`], that only its owner may
/// read it).
///
/// The open is non-blocking, so naming a FIFO with no writer returns at once
/// instead of hanging; the type check uses `fstat` on the descriptor, not the
/// path, so the file cannot be swapped between the check and the read.
pub fn open_regular(path: &Path, access: Access) -> Result<File, ReadError> {
    open_regular_sized(path, access).map(|(f, _)| f)
}

/// [`open_regular`], also returning the file's size as the `fstat` of the
/// check reported it (a hint for the read: the file may change).
fn open_regular_sized(path: &Path, access: Access) -> Result<(File, u64), ReadError> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Never block in open(2) (a FIFO waits for a writer) and never make a
        // terminal device our controlling terminal.
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let f = opts.open(path)?;
    let meta = f.metadata()?;
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(ReadError::NotARegularFile { kind: file_kind(&ft) });
    }
    #[cfg(unix)]
    if access == Access::Private {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ReadError::Readable { mode });
        }
    }
    #[cfg(not(unix))]
    let _ = access;
    Ok((f, meta.len()))
}

fn file_kind(ft: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "FIFO";
        }
        if ft.is_char_device() {
            return "character device";
        }
        if ft.is_block_device() {
            return "block device";
        }
        if ft.is_socket() {
            return "socket";
        }
    }
    if ft.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// Reads a regular file of at most `limit` bytes.
///
/// Every file tka reads goes through here: it is opened with
/// [`open_regular`] (a FIFO, device, socket or directory is refused before
/// any read) and read to its end or to `limit + 1` bytes, so the size
/// reported by the file system is never trusted for the limit and a file
/// that grows while being read cannot exhaust memory. That size only sizes
/// the buffer (one byte more than it), so that a file read whole by one
/// short read ending at that size needs no further read to find its end.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    read_with(path, limit, Access::Public)
}

/// As [`read_bounded`], for a secret file: see [`Access`].
pub fn read_secret(path: &Path, limit: u64, access: Access) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    read_with(path, limit, access).map(Zeroizing::new)
}

/// [`read_bounded`] with the error naming the file: the helper the `tka`
/// command uses for every file a user names.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    read_bounded(path, limit).map_err(|e| e.at(path))
}

fn read_with(path: &Path, limit: u64, access: Access) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let (mut f, size) = open_regular_sized(path, access)?;
    let most = limit.saturating_add(1);
    // Sized from the fstat so the file (every secret) is read without the
    // buffer being reallocated, which would leave unzeroed copies behind,
    // and one byte larger, so the read that fills it up to that size comes
    // back short.
    let first = size.saturating_add(1).min(most).min(isize::MAX as u64) as usize;
    let mut buf = Zeroizing::new(vec![0u8; first]);
    let mut filled = 0usize;
    loop {
        if filled == buf.len() {
            if filled as u64 >= most {
                break;
            }
            // The file grew since the fstat: read on, in steps, up to the limit.
            let step = (filled.max(8192) as u64).min(most - filled as u64) as usize;
            buf.resize(filled + step, 0);
        }
        let asked = buf.len() - filled;
        match f.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                // A short read that ends at the size the fstat reported is
                // the end of the file: no read of 0 bytes needed to see it.
                if n < asked && filled as u64 == size {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    if filled as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    buf.truncate(filled);
    Ok(std::mem::take(&mut *buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuse_keeps_existing_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        write_atomic(&p, b"one", 0o600, Overwrite::Refuse).unwrap();
        let e = write_atomic(&p, b"two", 0o600, Overwrite::Refuse).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"one");
        // no temporary file left behind
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn mode_is_exact() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        write_atomic(&p, b"x", 0o600, Overwrite::Replace).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn read_bounded_refuses_large() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big");
        fs::write(&p, vec![b'a'; 1025]).unwrap();
        assert!(matches!(read_bounded(&p, 1024), Err(ReadError::TooLarge { limit: 1024 })));
        assert_eq!(read_bounded(&p, 1025).unwrap().len(), 1025);
    }

    /// The size `fstat` reports only sizes the buffer: a file whose
    /// reported size is 0 (a /proc file) is still read to its end, and
    /// still held to the limit.
    #[cfg(target_os = "linux")]
    #[test]
    fn read_bounded_reads_past_the_reported_size_up_to_the_limit() {
        let p = Path::new("/proc/self/status");
        assert_eq!(fs::metadata(p).unwrap().len(), 0);
        let text = String::from_utf8(read_bounded(p, 1 << 20).unwrap()).unwrap();
        assert!(text.starts_with("Name:") && text.contains("\nPid:"), "{text}");
        assert!(matches!(read_bounded(p, 10), Err(ReadError::TooLarge { limit: 10 })));
    }

    #[cfg(unix)]
    #[test]
    fn read_bounded_refuses_devices_fifos_and_directories_unread() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // Returns at once: the open does not wait for a writer.
        assert!(matches!(read_bounded(&fifo, 10), Err(ReadError::NotARegularFile { kind: "FIFO" })));
        let zero = Path::new("/dev/zero");
        assert!(matches!(read_bounded(zero, 10), Err(ReadError::NotARegularFile { kind: "character device" })));
        assert!(matches!(read_bounded(d.path(), 10), Err(ReadError::NotARegularFile { kind: "directory" })));
        let e = read_file(zero, 10).unwrap_err();
        assert_eq!(e.to_string(), "/dev/zero is a character device, not a regular file: refusing to read it");
    }

    #[cfg(unix)]
    #[test]
    fn read_secret_refuses_group_or_other_readable_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pin");
        fs::write(&p, "1234\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o604)).unwrap();
        assert!(matches!(read_secret(&p, 64, Access::Private), Err(ReadError::Readable { mode: 0o604 })));
        assert_eq!(&*read_secret(&p, 64, Access::PrivateInsecureAllowed).unwrap(), b"1234\n");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(&*read_secret(&p, 64, Access::Private).unwrap(), b"1234\n");
    }
}
