//! `agent.json`: the activation host that answered the agent last, so
//! renewals go to it first (written by the agent, read back exactly).

use super::files::{read_opt, Store};
use super::lock::StoreLock;
use crate::core::store_error::StoreError;
use serde::{Deserialize, Serialize};

/// File name of the cached activation host, in the store directory.
pub const CACHED_HOST_FILE: &str = "agent.json";
/// Size limit of `agent.json`, in bytes.
pub const MAX_CACHED_HOST_FILE: usize = 4096;
/// Longest host name a cached host may have, bytes (a DNS name's limit).
const MAX_HOST_NAME: usize = 253;

/// The activation host that answered last: where renewals go first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachedHost {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// When it answered, Unix seconds.
    pub when: i64,
}

impl Store {
    /// The cached activation host, if any. An unparsable `agent.json` is
    /// [`StoreError::Corrupt`].
    pub fn cached_host(&self) -> Result<Option<CachedHost>, StoreError> {
        let path = self.dir().join(CACHED_HOST_FILE);
        let Some(bytes) = read_opt(&path, MAX_CACHED_HOST_FILE)? else {
            return Ok(None);
        };
        let host: CachedHost = serde_json::from_slice(&bytes).map_err(|e| StoreError::corrupt(&path, e.to_string()))?;
        check_host(&host.host).map_err(|detail| StoreError::corrupt(&path, detail))?;
        Ok(Some(host))
    }
}

impl StoreLock<'_> {
    /// Records `host` as the activation host that answered last, replacing
    /// any previous one atomically.
    pub fn put_cached_host(&self, host: &CachedHost) -> Result<(), StoreError> {
        let path = self.dir().join(CACHED_HOST_FILE);
        if host.host.len() > MAX_HOST_NAME {
            let what = "the cached host name".to_string();
            return Err(StoreError::TooLarge { what, len: host.host.len(), limit: MAX_HOST_NAME });
        }
        let mut bytes = serde_json::to_vec_pretty(host).map_err(|e| StoreError::io(&path, std::io::Error::other(e)))?;
        bytes.push(b'\n');
        super::lock::write(&path, &bytes)
    }

    /// Forgets the cached activation host. Returns whether there was one.
    pub fn remove_cached_host(&self) -> Result<bool, StoreError> {
        super::lock::remove(&self.dir().join(CACHED_HOST_FILE))
    }
}

/// A host name fit for the cache: 1 to 253 bytes, no control characters.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() || host.len() > MAX_HOST_NAME || host.chars().any(char::is_control) {
        return Err(format!("host {host:?} is not 1 to {MAX_HOST_NAME} printable characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_host_round_trips_and_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("s")).unwrap();
        assert_eq!(store.cached_host().unwrap(), None);
        let host = CachedHost { host: "kms1.example.test".into(), port: 4430, when: 1_750_000_000 };
        store.lock().unwrap().put_cached_host(&host).unwrap();
        assert_eq!(store.cached_host().unwrap(), Some(host));
        assert!(store.lock().unwrap().remove_cached_host().unwrap());
        assert_eq!(store.cached_host().unwrap(), None);
    }

    #[test]
    fn unparsable_cached_host_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("s")).unwrap();
        std::fs::write(store.dir().join(CACHED_HOST_FILE), b"{\"host\":1}").unwrap();
        assert!(matches!(store.cached_host(), Err(StoreError::Corrupt { .. })));
    }
}
