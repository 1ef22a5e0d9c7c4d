//! Durable file writes shared by every module that stores something.
//!
//! Every write tka makes is atomic and durable: the bytes go to a temporary
//! file in the destination directory, the file is fsynced, renamed over the
//! destination, and the directory is fsynced. A reader therefore sees either
//! the old file or the new one, never a torn write, even after a crash.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
        match overwrite {
            Overwrite::Replace => fs::rename(&tmp, path)?,
            Overwrite::Refuse => {
                fs::hard_link(&tmp, path)?;
                fs::remove_file(&tmp)?;
            }
        }
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
    let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!(".{name}.{hex}.tmp"))
}

/// Reads at most `limit` bytes from `path`; a larger file is an error of kind
/// [`io::ErrorKind::FileTooLarge`] and is not read into memory.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let f = File::open(path)?;
    let mut buf = Vec::new();
    f.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("{} is larger than the {limit}-byte limit", path.display()),
        ));
    }
    Ok(buf)
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
        assert_eq!(read_bounded(&p, 1024).unwrap_err().kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(read_bounded(&p, 1025).unwrap().len(), 1025);
    }
}
