//! Normalization of raw component values.
//!
//! A value that is empty, a known firmware placeholder, a single repeated
//! character (all zeros, all `f`, `xxxx`), or otherwise malformed is treated
//! as absent: binding to `To be filled by O.E.M.` would make every machine of
//! a board model look the same.

/// Why a raw value was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Empty after trimming.
    Empty,
    /// A known firmware placeholder or a single repeated character.
    Placeholder,
    /// Not in the expected format (e.g. a machine-id that is not 32 hex digits).
    Malformed,
    /// A locally administered (random / software-set) MAC address.
    LocalMac,
    /// A multicast MAC address.
    MulticastMac,
}

impl Rejection {
    /// A short human description.
    pub fn describe(self) -> &'static str {
        match self {
            Rejection::Empty => "empty value",
            Rejection::Placeholder => "placeholder value",
            Rejection::Malformed => "malformed value",
            Rejection::LocalMac => "locally administered (random) MAC",
            Rejection::MulticastMac => "multicast MAC",
        }
    }
}

/// Placeholder strings firmware vendors leave in DMI fields (compared
/// case-insensitively after whitespace is collapsed).
const PLACEHOLDERS: &[&str] = &[
    "to be filled by o.e.m.",
    "to be filled by oem",
    "to be filled by o.e.m",
    "filled by o.e.m.",
    "default string",
    "default",
    "none",
    "null",
    "not specified",
    "not applicable",
    "not available",
    "not present",
    "not settable",
    "not set",
    "n/a",
    "na",
    "unknown",
    "invalid",
    "empty",
    "oem",
    "o.e.m.",
    "system serial number",
    "system product name",
    "chassis serial number",
    "base board serial number",
    "baseboard serial number",
    "board serial number",
    "serial number",
    "serial",
    "sn",
    "type1productconfigid",
    "0123456789",
    "123456789",
    "1234567890",
    "12345678",
    "0123456789abcdef",
    // Well-known bogus SMBIOS UUIDs shipped by some BIOS builds.
    "03000200-0400-0500-0006-000700080009",
    "00020003-0004-0005-0006-000700080009",
    "12345678-1234-5678-90ab-cddeefaabbcc",
];

/// Trims, collapses internal whitespace and lowercases.
fn basic(raw: &str) -> String {
    raw.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// True if `v` (already basic-normalized) is a placeholder.
fn is_placeholder(v: &str) -> bool {
    if PLACEHOLDERS.contains(&v) {
        return true;
    }
    // A single repeated significant character: 0000..., ffff..., xxxx....
    let mut significant = v.chars().filter(|c| c.is_alphanumeric());
    match significant.next() {
        None => true,
        Some(first) => significant.all(|c| c == first),
    }
}

/// Normalizes a MAC address given in any common notation
/// (`AA:BB:..`, `aa-bb-..`, `aabb.ccdd.eeff`, `aabbccddeeff`) to lowercase
/// colon form, rejecting zero, broadcast, multicast and locally administered
/// addresses.
pub fn normalize_mac(raw: &str) -> Result<String, Rejection> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(Rejection::Empty);
    }
    let hex: String = t.chars().filter(|c| !matches!(c, ':' | '-' | '.' | ' ')).collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Rejection::Malformed);
    }
    let hex = hex.to_ascii_lowercase();
    let bytes: Vec<u8> = (0..6)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| Rejection::Malformed)?;
    if bytes.iter().all(|&b| b == 0) || bytes.iter().all(|&b| b == 0xff) {
        return Err(Rejection::Placeholder);
    }
    if bytes[0] & 0x01 != 0 {
        return Err(Rejection::MulticastMac);
    }
    if bytes[0] & 0x02 != 0 {
        return Err(Rejection::LocalMac);
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

/// The explicit identity (`xid`): trimmed only — case is kept,
/// placeholders are not second-guessed; must not be empty.
pub(crate) fn normalize_explicit(raw: &str) -> Result<String, Rejection> {
    let t = raw.trim();
    if t.is_empty() {
        Err(Rejection::Empty)
    } else {
        Ok(t.to_string())
    }
}

/// A text value: whitespace trimmed and collapsed, lowercased,
/// placeholders rejected.
pub(crate) fn normalize_text(raw: &str) -> Result<String, Rejection> {
    let v = basic(raw);
    if v.is_empty() {
        return Err(Rejection::Empty);
    }
    if is_placeholder(&v) {
        return Err(Rejection::Placeholder);
    }
    Ok(v)
}

/// The OS installation id (`mid`): a text value that must be 32 hex digits
/// (systemd's `uninitialized` is rejected).
pub(crate) fn normalize_machine_id(raw: &str) -> Result<String, Rejection> {
    let v = normalize_text(raw)?;
    if v.len() != 32 || !v.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Rejection::Malformed);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(normalize_mac("00:1A:2B:3C:4D:5E").unwrap(), "00:1a:2b:3c:4d:5e");
        assert_eq!(normalize_mac("00-1a-2b-3c-4d-5e\n").unwrap(), "00:1a:2b:3c:4d:5e");
        assert_eq!(normalize_mac("001a.2b3c.4d5e").unwrap(), "00:1a:2b:3c:4d:5e");
        assert_eq!(normalize_mac("001A2B3C4D5E").unwrap(), "00:1a:2b:3c:4d:5e");
        assert_eq!(normalize_mac("00:00:00:00:00:00"), Err(Rejection::Placeholder));
        assert_eq!(normalize_mac("ff:ff:ff:ff:ff:ff"), Err(Rejection::Placeholder));
        assert_eq!(normalize_mac("02:42:ac:11:00:02"), Err(Rejection::LocalMac));
        assert_eq!(normalize_mac("01:00:5e:00:00:01"), Err(Rejection::MulticastMac));
        assert_eq!(normalize_mac("00:1a:2b"), Err(Rejection::Malformed));
        assert_eq!(normalize_mac(""), Err(Rejection::Empty));
    }
}
