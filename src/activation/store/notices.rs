//! `container-warning-shown`: the marker that this store's user has been
//! warned once that, in a container without an explicit identity, the
//! machine binding describes the host (written by commands that already
//! write the store, read by every command).

use super::files::Store;
use super::lock::StoreLock;
use crate::core::store_error::StoreError;

/// File name of the marker, in the store directory: present once the
/// container warning has been shown for this store (empty).
pub const CONTAINER_WARNING_FILE: &str = "container-warning-shown";

impl Store {
    /// Whether the container warning has been shown for this store
    /// ([`StoreLock::note_container_warning_shown`]).
    pub fn container_warning_shown(&self) -> Result<bool, StoreError> {
        let path = self.dir().join(CONTAINER_WARNING_FILE);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }
}

impl StoreLock<'_> {
    /// Records, atomically, that the container warning has been shown for
    /// this store, so it is not shown again.
    pub fn note_container_warning_shown(&self) -> Result<(), StoreError> {
        super::lock::write(&self.dir().join(CONTAINER_WARNING_FILE), b"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_warning_is_remembered_in_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("s")).unwrap();
        assert!(!store.container_warning_shown().unwrap());
        store.lock().unwrap().note_container_warning_shown().unwrap();
        assert!(store.container_warning_shown().unwrap());
        // The store still opens as a store, read-only too.
        assert!(Store::open_existing(store.dir()).unwrap().container_warning_shown().unwrap());
    }
}
