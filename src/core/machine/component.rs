//! The hashed component as it travels in requests and tokens.

use serde::{Deserialize, Serialize};

/// One hashed identity component as it travels in requests and tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentHash {
    /// Short kind code, e.g. `mid` (machine-id), `dmi` (DMI product UUID), `mac`.
    #[serde(rename = "k")]
    pub kind: String,
    /// Truncated salted SHA-256, base64url without padding (16 characters).
    #[serde(rename = "h")]
    pub hash: String,
}
