//! Where a batch writes its tokens: one file per token, or one bundle.

use crate::core::error::{Error, Result};
use crate::core::hex::lower_hex as hex;
use crate::issuer::bulk::report::{BatchReport, ItemReport, ItemStatus};
use std::path::{Path, PathBuf};

/// The token file name for a machine and product: `<product>_<cmid>.jws`,
/// with anything but letters, digits, `.`, `-` and `_` replaced by `_`.
pub fn token_file_name(product: &str, cmid: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
    };
    let p = clean(product);
    let p = p.trim_start_matches('.');
    format!("{p}_{}.jws", clean(cmid))
}

/// Where a batch writes its tokens.
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    /// Nowhere: the tokens are in the report.
    Nothing,
    /// `<dir>/<product>_<cmid>.jws`, one file per token.
    Dir(&'a Path),
    /// One bundle (JSON Lines, see [`crate::core::bundle`]), written as the chunks
    /// commit and then made durable and put in place atomically, as
    /// [`write_bundle`] writes it. A failure to write it is returned as
    /// the batch's error (the rows committed stay committed; the same batch
    /// run again returns the same tokens). The report's items keep no token
    /// text ([`IssuedItem::text`](crate::issuer::issue::IssuedItem::text)
    /// is empty): the tokens are in the bundle, and a large batch does not
    /// hold them all in memory.
    Bundle(&'a Path),
}

/// The output directory (prepared) and the bundle (its temporary file created).
pub(crate) fn prepare_output(output: Output<'_>) -> Result<(Option<&Path>, Option<BundleFile>)> {
    Ok(match output {
        Output::Nothing => (None, None),
        Output::Dir(dir) => {
            prepare_out_dir(dir)?;
            (Some(dir), None)
        }
        Output::Bundle(path) => (None, Some(BundleFile::create(path).map_err(|e| Error::io(path, e))?)),
    })
}

pub(crate) type FileJob = (usize, PathBuf, String);

/// The token files of the ok items among `slots`, to write after their commit.
/// The text moves to the job: a large batch does not keep every token in memory.
pub(crate) fn file_jobs(dir: &Path, slots: &[usize], items: &mut [ItemReport]) -> Vec<FileJob> {
    slots
        .iter()
        .filter_map(|&s| {
            let it = &mut items[s];
            if it.status != ItemStatus::Ok {
                return None;
            }
            let issued = it.issued.as_mut()?;
            let mut text = std::mem::take(&mut issued.text);
            text.push('\n');
            Some((s, dir.join(token_file_name(&issued.product, &issued.cmid)), text))
        })
        .collect()
}

/// Creates the output directory and removes temporary files an earlier,
/// interrupted run left behind (`.<name>.<12 hex>.tmp`, as written by
/// [`write_token_file`]); the tokens they were meant to hold are in the
/// ledger and are written again by this run.
fn prepare_out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name.starts_with('.')
            && name.ends_with(".tmp")
            && name.len() > 18
            && name[name.len() - 17..name.len() - 4].starts_with('.')
            && name[name.len() - 16..name.len() - 4].bytes().all(|b| b.is_ascii_hexdigit());
        if stale {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// Writes a token file unless it already holds exactly `text`, always
/// atomically (temporary file, rename): a process killed mid-write leaves
/// no empty or truncated token file under the final name, only a `.tmp`
/// file (tests/crash.rs). Not fsynced: the ledger is the durable copy, and
/// a re-run rewrites what is missing.
pub fn write_token_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if std::fs::read(path).is_ok_and(|cur| cur == text.as_bytes()) {
        return Ok(());
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).expect("operating system random number generator");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", hex(&rnd)));
    let result = (|| {
        let mut f = crate::core::fsutil::create_new_with_mode(&tmp, 0o644)?;
        f.write_all(text.as_bytes())?;
        drop(f);
        crate::core::fsutil::crash_point("bulk.token-file", path)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A bundle being written: a temporary file next to its final name, filled
/// chunk by chunk (each chunk's data flushed to disk as it goes, so the end
/// of the run does not wait for all of it), then fsynced, renamed into
/// place and its directory fsynced.
pub(crate) struct BundleFile {
    path: PathBuf,
    dir: PathBuf,
    tmp: PathBuf,
    file: Option<std::fs::File>,
    failed: Option<std::io::Error>,
}

impl BundleFile {
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut rnd = [0u8; 6];
        getrandom::fill(&mut rnd).expect("operating system random number generator");
        let tmp = dir.join(format!(".{name}.{}.tmp", hex(&rnd)));
        let file = crate::core::fsutil::create_new_with_mode(&tmp, 0o644)?;
        Ok(BundleFile { path: path.to_path_buf(), dir, tmp, file: Some(file), failed: None })
    }

    pub(crate) fn append(&mut self, lines: &str) {
        use std::io::Write;
        if let (Some(f), None) = (&mut self.file, &self.failed) {
            if !lines.is_empty() {
                if let Err(e) = f.write_all(lines.as_bytes()).and_then(|()| f.sync_data()) {
                    self.failed = Some(e);
                }
            }
        }
    }

    pub(crate) fn finish(mut self) -> Result<()> {
        let result = match (self.failed.take(), self.file.take()) {
            (Some(e), _) => Err(e),
            (None, None) => Ok(()),
            (None, Some(f)) => f.sync_all().and_then(|()| {
                drop(f);
                crate::core::fsutil::crash_point("bulk.bundle", &self.path)?;
                std::fs::rename(&self.tmp, &self.path)?;
                crate::core::fsutil::sync_dir(&self.dir)
            }),
        };
        result.map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for BundleFile {
    /// A bundle not put in place (the batch failed before, or writing it
    /// failed) leaves no temporary file behind.
    fn drop(&mut self) {
        if self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes [`bundle_text`] to `path` atomically and durably (replacing an
/// earlier bundle of the same batch): a temporary file in the same
/// directory, fsynced, renamed, and the directory fsynced.
pub fn write_bundle(path: &Path, report: &BatchReport) -> Result<()> {
    let mut bundle = BundleFile::create(path).map_err(|e| Error::io(path, e))?;
    bundle.append(&bundle_text(report));
    bundle.finish()
}

/// The bundle of a batch run without an output directory: one JSON line per
/// item that has a token, in input order.
pub fn bundle_text(report: &BatchReport) -> String {
    let mut out = String::new();
    for it in report.items.iter().filter(|i| i.status == ItemStatus::Ok) {
        if let Some(i) = &it.issued {
            crate::core::bundle::push_line(&mut out, &i.product, &i.cmid, &i.serial, &i.text);
        }
    }
    out
}
