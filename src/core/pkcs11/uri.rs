//! RFC 7512 `pkcs11:` URIs: which token and which object.
//!
//! Parsing is strict: an attribute tka does not know (other than the
//! vendor-specific `x-` ones, which are ignored) or a repeated attribute is
//! an error, so a typo such as `objekt=` cannot silently select the wrong key.
//!
//! A module is code loaded into tka, so where it may come from is a rule:
//! `module-name` is a bare file name looked up only in [`MODULE_DIRS`], and
//! a `module-path` read from a configuration file ([`UriSource::ConfigFile`])
//! must lie in one of those directories unless the caller allows otherwise.

use crate::core::error::{Error, Result};
use crate::core::hex::lower_hex as hex;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use zeroize::Zeroizing;

/// The scheme prefix.
pub const SCHEME: &str = "pkcs11:";

/// The PKCS#11 module directories, after p11-kit's conventions (Debian
/// multiarch, Fedora `lib64`, Arch and Alpine `lib`, SoftHSM2's own
/// directories, and `/usr/local` for modules built from source). A
/// `module-name` is looked up only here, and a `module-path` from a
/// configuration file must name a file directly inside one of them. Only
/// root can write to these directories.
pub const MODULE_DIRS: [&str; 16] = [
    "/usr/lib/x86_64-linux-gnu/pkcs11",
    "/usr/lib/aarch64-linux-gnu/pkcs11",
    "/usr/lib/i386-linux-gnu/pkcs11",
    "/usr/lib/arm-linux-gnueabihf/pkcs11",
    "/usr/lib/riscv64-linux-gnu/pkcs11",
    "/usr/lib/powerpc64le-linux-gnu/pkcs11",
    "/usr/lib/s390x-linux-gnu/pkcs11",
    "/usr/lib64/pkcs11",
    "/usr/lib/pkcs11",
    "/usr/lib/softhsm",
    "/usr/lib/x86_64-linux-gnu/softhsm",
    "/usr/lib/aarch64-linux-gnu/softhsm",
    "/usr/lib64/softhsm",
    "/usr/local/lib/pkcs11",
    "/usr/local/lib/softhsm",
    "/usr/local/lib64/pkcs11",
];

/// Where a [`Pkcs11Uri`] came from. It decides whether the URI's
/// `module-path` may name a module anywhere: the operator may load any
/// module, but a configuration file (which someone else may be able to
/// edit) names modules only inside [`MODULE_DIRS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum UriSource {
    /// Given by the operator: a command-line argument or the environment.
    /// [`Pkcs11Uri::parse`] gives this.
    #[default]
    Operator,
    /// Read from a configuration file (`tka-issuer.json`); see
    /// [`Pkcs11Uri::from_config`].
    ConfigFile,
}

/// Checks RFC 7512 `module-name`: a bare file name, never a path. It must
/// not be empty nor hold `/`, `\`, `..` or NUL, so it can only name a file
/// inside [`MODULE_DIRS`] ([`Error::ModuleNameNotBare`] otherwise).
pub fn check_module_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) || name.contains("..") {
        return Err(Error::ModuleNameNotBare { name: name.to_string() });
    }
    Ok(())
}

/// Whether `path` names a file directly inside one of [`MODULE_DIRS`]: an
/// absolute path without `..` components whose parent is one of
/// them (compared as written; a symbolic link there was put there by root).
pub fn in_module_dirs(path: &Path) -> bool {
    let plain = path.is_absolute()
        && path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && path.file_name().is_some();
    plain && path.parent().is_some_and(|dir| MODULE_DIRS.iter().any(|d| Path::new(d) == dir))
}

/// A parsed `pkcs11:` URI (RFC 7512).
///
/// Path attributes select the token (`token`, `manufacturer`, `model`,
/// `serial`, `slot-id`) and the object (`object`, `id`, `type`); query
/// attributes name the module (`module-path`, `module-name`) and the PIN
/// (`pin-source=file:PATH`, or the discouraged `pin-value`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// Token label (`token=`).
    pub token: Option<String>,
    /// Token manufacturer (`manufacturer=`).
    pub manufacturer: Option<String>,
    /// Token model (`model=`).
    pub model: Option<String>,
    /// Token serial number (`serial=`).
    pub serial: Option<String>,
    /// Slot number (`slot-id=`).
    pub slot_id: Option<u64>,
    /// Object label (`object=`).
    pub object: Option<String>,
    /// Object id, raw bytes (`id=`, percent-encoded).
    pub id: Option<Vec<u8>>,
    /// Object type (`type=`): `private`, `public`, `cert`, `secret-key` or `data`.
    pub object_type: Option<String>,
    /// PKCS#11 module file (`module-path=`).
    pub module_path: Option<PathBuf>,
    /// PKCS#11 module name (`module-name=`), looked up in the system's module directories.
    pub module_name: Option<String>,
    /// Where the PIN comes from (`pin-source=`); tka reads `file:` sources and plain paths.
    pub pin_source: Option<String>,
    /// The PIN itself (`pin-value=`). Never printed.
    pub pin_value: Option<Zeroizing<String>>,
    /// Where the URI came from (not part of its text): a `module-path` from
    /// a configuration file must lie in [`MODULE_DIRS`] unless allowed.
    pub source: UriSource,
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Display already leaves pin-value out.
        write!(f, "Pkcs11Uri({self})")
    }
}

/// Whether `s` is a `pkcs11:` URI rather than a file path.
pub fn is_pkcs11_uri(s: &str) -> bool {
    // Bytes, not a str slice: the 7th byte of a path may be inside a character.
    s.as_bytes().get(..SCHEME.len()).is_some_and(|b| b.eq_ignore_ascii_case(SCHEME.as_bytes()))
}

impl Pkcs11Uri {
    /// Parses a `pkcs11:` URI.
    pub fn parse(s: &str) -> Result<Pkcs11Uri> {
        let bad = |detail: String| Error::Usage(format!("invalid pkcs11: URI: {detail}"));
        if !is_pkcs11_uri(s) {
            return Err(bad("it must start with \"pkcs11:\"".into()));
        }
        if s.len() > 4096 {
            return Err(bad("longer than 4096 bytes".into()));
        }
        let rest = &s[SCHEME.len()..];
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri::default();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').ok_or_else(|| bad(format!("\"{attr}\" is not name=value")))?;
            let raw = pct_decode(value).map_err(|e| bad(format!("{name}: {e}")))?;
            let text = || String::from_utf8(raw.clone()).map_err(|_| bad(format!("{name} is not UTF-8")));
            let dup = || bad(format!("{name} is given twice"));
            match name {
                "token" => set(&mut uri.token, text()?).ok_or_else(dup)?,
                "manufacturer" => set(&mut uri.manufacturer, text()?).ok_or_else(dup)?,
                "model" => set(&mut uri.model, text()?).ok_or_else(dup)?,
                "serial" => set(&mut uri.serial, text()?).ok_or_else(dup)?,
                "slot-id" => {
                    let n = text()?.parse::<u64>().map_err(|_| bad("slot-id is not a number".into()))?;
                    set(&mut uri.slot_id, n).ok_or_else(dup)?
                }
                "object" => set(&mut uri.object, text()?).ok_or_else(dup)?,
                "id" => set(&mut uri.id, raw).ok_or_else(dup)?,
                "type" => {
                    let t = text()?;
                    if !matches!(t.as_str(), "private" | "public" | "cert" | "secret-key" | "data") {
                        return Err(bad(format!("unknown type \"{t}\"")));
                    }
                    set(&mut uri.object_type, t).ok_or_else(dup)?
                }
                "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-description"
                | "slot-manufacturer" => {}
                n if n.starts_with("x-") => {}
                n => return Err(bad(format!("unknown attribute \"{n}\""))),
            }
        }
        for attr in query.unwrap_or("").split('&').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').ok_or_else(|| bad(format!("\"{attr}\" is not name=value")))?;
            let raw = Zeroizing::new(pct_decode(value).map_err(|e| bad(format!("{name}: {e}")))?);
            let text = || String::from_utf8(raw.to_vec()).map_err(|_| bad(format!("{name} is not UTF-8")));
            let dup = || bad(format!("{name} is given twice"));
            match name {
                "module-path" => set(&mut uri.module_path, PathBuf::from(text()?)).ok_or_else(dup)?,
                "module-name" => {
                    let name = text()?;
                    check_module_name(&name)?;
                    set(&mut uri.module_name, name).ok_or_else(dup)?
                }
                "pin-source" => set(&mut uri.pin_source, text()?).ok_or_else(dup)?,
                "pin-value" => set(&mut uri.pin_value, Zeroizing::new(text()?)).ok_or_else(dup)?,
                n if n.starts_with("x-") => {}
                n => return Err(bad(format!("unknown query attribute \"{n}\""))),
            }
        }
        if uri.pin_source.is_some() && uri.pin_value.is_some() {
            return Err(bad("pin-source and pin-value contradict each other".into()));
        }
        Ok(uri)
    }

    /// Parses a URI read from a configuration file: as [`Pkcs11Uri::parse`],
    /// marked [`UriSource::ConfigFile`].
    pub fn from_config(s: &str) -> Result<Pkcs11Uri> {
        Ok(Pkcs11Uri { source: UriSource::ConfigFile, ..Pkcs11Uri::parse(s)? })
    }

    /// Whether this URI's `module-path` may be loaded: always for a URI
    /// from the operator; for one from a configuration file only inside
    /// [`MODULE_DIRS`], or when `allow_config_module_path` (the operator
    /// vouching for the file) ([`Error::ModulePathNotAllowed`] otherwise).
    pub fn check_module_path(&self, allow_config_module_path: bool) -> Result<()> {
        match (&self.module_path, self.source) {
            (Some(p), UriSource::ConfigFile) if !allow_config_module_path && !in_module_dirs(p) => {
                Err(Error::ModulePathNotAllowed { path: p.clone() })
            }
            _ => Ok(()),
        }
    }

    /// A short name for messages: the object and token labels.
    pub fn describe(&self) -> String {
        let object = match (&self.object, &self.id) {
            (Some(o), _) => format!("\"{o}\""),
            (None, Some(id)) => format!("id {}", hex(id)),
            (None, None) => "(any object)".into(),
        };
        let token = self.token.as_deref().map(|t| format!(" on token \"{t}\"")).unwrap_or_default();
        format!("{object}{token}")
    }

    /// The same URI naming another object: `object` replaced, `id` dropped.
    pub fn with_object(&self, object: &str) -> Pkcs11Uri {
        Pkcs11Uri { object: Some(object.into()), id: None, object_type: None, ..self.clone() }
    }
}

fn set<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v);
    Some(())
}

/// Renders the URI canonically (attributes in a fixed order, values
/// percent-encoded). `pin-value` is never written out.
impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut path: Vec<String> = Vec::new();
        let mut push = |name: &str, v: &[u8]| path.push(format!("{name}={}", pct_encode(v)));
        if let Some(v) = &self.token {
            push("token", v.as_bytes());
        }
        if let Some(v) = &self.manufacturer {
            push("manufacturer", v.as_bytes());
        }
        if let Some(v) = &self.model {
            push("model", v.as_bytes());
        }
        if let Some(v) = &self.serial {
            push("serial", v.as_bytes());
        }
        if let Some(v) = &self.slot_id {
            push("slot-id", v.to_string().as_bytes());
        }
        if let Some(v) = &self.object {
            push("object", v.as_bytes());
        }
        if let Some(v) = &self.id {
            path.push(format!("id={}", v.iter().map(|b| format!("%{b:02x}")).collect::<String>()));
        }
        if let Some(v) = &self.object_type {
            path.push(format!("type={}", pct_encode(v.as_bytes())));
        }
        let mut query: Vec<String> = Vec::new();
        if let Some(v) = &self.module_path {
            query.push(format!("module-path={}", pct_encode(v.to_string_lossy().as_bytes())));
        }
        if let Some(v) = &self.module_name {
            query.push(format!("module-name={}", pct_encode(v.as_bytes())));
        }
        if let Some(v) = &self.pin_source {
            query.push(format!("pin-source={}", pct_encode(v.as_bytes())));
        }
        write!(f, "{SCHEME}{}", path.join(";"))?;
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

fn pct_decode(s: &str) -> std::result::Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hexpair = b.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            let v =
                std::str::from_utf8(hexpair).ok().and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or("bad %-escape")?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Percent-encodes everything outside RFC 7512's unreserved characters and
/// the reserved ones it allows in values (`:`, `@`, `/` in paths, ...).
fn pct_encode(v: &[u8]) -> String {
    let mut s = String::new();
    for &b in v {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b':' | b'@' | b'!' | b'$' | b'*' | b'+' | b',')
        {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_and_query_attributes() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=My%20Token;object=root;id=%01%a2;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("My Token"));
        assert_eq!(u.object.as_deref(), Some("root"));
        assert_eq!(u.id.as_deref(), Some(&[0x01, 0xa2][..]));
        assert_eq!(u.object_type.as_deref(), Some("private"));
        assert_eq!(u.module_path.as_deref(), Some(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so")));
        assert_eq!(u.pin_source.as_deref(), Some("file:/run/pin"));
    }

    #[test]
    fn display_round_trips_and_never_shows_the_pin_value() {
        let u = Pkcs11Uri::parse("PKCS11:token=a;b%3Bc=1?pin-value=1234").err();
        assert!(u.unwrap().to_string().contains("unknown attribute \"b%3Bc\""));
        let u = Pkcs11Uri::parse("pkcs11:token=a%3Bb;object=k;slot-id=3?module-name=softhsm2&pin-value=1234").unwrap();
        let shown = u.to_string();
        assert_eq!(shown, "pkcs11:token=a%3Bb;slot-id=3;object=k?module-name=softhsm2");
        assert!(!format!("{u:?}").contains("1234"));
        let back = Pkcs11Uri::parse(&shown).unwrap();
        assert_eq!(back.token.as_deref(), Some("a;b"));
        assert_eq!(back.slot_id, Some(3));
    }

    #[test]
    fn refuses_unknown_repeated_and_malformed_attributes() {
        for (uri, want) in [
            ("pkcs11:objekt=root", "unknown attribute \"objekt\""),
            ("pkcs11:object=a;object=b", "object is given twice"),
            ("pkcs11:id=%zz", "bad %-escape"),
            ("pkcs11:id=%0", "truncated %-escape"),
            ("pkcs11:token", "is not name=value"),
            ("pkcs11:slot-id=x", "slot-id is not a number"),
            ("pkcs11:type=key", "unknown type"),
            ("pkcs11:token=t?pin-source=f&pin-value=1", "contradict"),
            ("pkcs11:token=t?module=x", "unknown query attribute"),
            ("file:/x", "must start with"),
        ] {
            let e = Pkcs11Uri::parse(uri).unwrap_err().to_string();
            assert!(e.contains(want), "{uri}: {e}");
        }
        assert!(Pkcs11Uri::parse("pkcs11:x-vendor=1;token=t").is_ok());
    }

    #[test]
    fn a_path_with_multibyte_characters_is_not_a_uri() {
        // Found by tests/proptest.rs: slicing the 7th byte panicked inside a character.
        assert!(!is_pkcs11_uri("®ꫛ𞋀"));
        assert!(!is_pkcs11_uri("pkcs1ꫛ"));
        assert!(is_pkcs11_uri("pKcS11:ꫛ"));
    }

    #[test]
    fn with_object_keeps_token_and_module() {
        let u = Pkcs11Uri::parse("pkcs11:token=t;object=signer;id=%01?module-path=/m.so").unwrap();
        let n = u.with_object("signer-2");
        assert_eq!(n.to_string(), "pkcs11:token=t;object=signer-2?module-path=/m.so");
    }

    #[test]
    fn a_module_name_that_is_a_path_is_refused() {
        // Issue 7: module-name=/abs/path loaded any library.
        for name in ["/tmp/evil.so", "../x", "x/../../tmp/evil.so", "..", "evil%00.so", "a\\b", ""] {
            let uri = format!("pkcs11:token=t;object=k?module-name={name}");
            let want = name.replace("%00", "\0");
            match Pkcs11Uri::parse(&uri) {
                Err(Error::ModuleNameNotBare { name }) => assert_eq!(name, want, "{uri}"),
                other => panic!("{uri}: {other:?}"),
            }
        }
        let e = Pkcs11Uri::parse("pkcs11:token=t?module-name=/tmp/evil.so").unwrap_err().to_string();
        assert_eq!(
            e,
            "PKCS#11: module-name \"/tmp/evil.so\" is not a bare file name: a module-name holds no \"/\", no \"..\" \
             and no NUL, and is looked up only in the PKCS#11 module directories"
        );
        // A bare name is fine (looked up later in MODULE_DIRS).
        let u = Pkcs11Uri::parse("pkcs11:token=t?module-name=softhsm2").unwrap();
        assert_eq!(u.module_name.as_deref(), Some("softhsm2"));
    }

    #[test]
    fn module_dirs_hold_only_files_written_plainly_inside_them() {
        assert!(in_module_dirs(Path::new("/usr/lib/softhsm/libsofthsm2.so")));
        assert!(in_module_dirs(Path::new("/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so")));
        for p in [
            "/tmp/evil.so",
            "/usr/lib/softhsm/../../../tmp/evil.so",
            "/usr/lib/softhsm/sub/evil.so",
            "/usr/lib/softhsm",
            "usr/lib/softhsm/libsofthsm2.so",
            "/usr/lib/libc.so.6",
        ] {
            assert!(!in_module_dirs(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn a_module_path_from_a_configuration_file_must_lie_in_the_module_dirs() {
        // Issue 7: module-path in tka-issuer.json (which an attacker with
        // write access to the home can edit) loaded any library.
        let text = "pkcs11:token=t;object=k?module-path=/tmp/evil.so";
        let from_config = Pkcs11Uri::from_config(text).unwrap();
        assert_eq!(from_config.source, UriSource::ConfigFile);
        match from_config.check_module_path(false) {
            Err(Error::ModulePathNotAllowed { path }) => assert_eq!(path, Path::new("/tmp/evil.so")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            from_config.check_module_path(false).unwrap_err().to_string(),
            "PKCS#11: module-path /tmp/evil.so comes from a configuration file and is outside the PKCS#11 module \
             directories: not loaded"
        );
        // The operator may vouch for it; the operator's own URI is trusted.
        assert!(from_config.check_module_path(true).is_ok());
        let typed = Pkcs11Uri::parse(text).unwrap();
        assert_eq!(typed.source, UriSource::Operator);
        assert!(typed.check_module_path(false).is_ok());
        // Inside a module directory, a configuration file may name it.
        let inside = Pkcs11Uri::from_config("pkcs11:token=t?module-path=/usr/lib/softhsm/libsofthsm2.so").unwrap();
        assert!(inside.check_module_path(false).is_ok());
        // The mark survives deriving another key's URI from it (rotation).
        assert!(matches!(
            from_config.with_object("k2").check_module_path(false),
            Err(Error::ModulePathNotAllowed { .. })
        ));
        // It is not part of the text written back to the file.
        assert_eq!(from_config.to_string(), text);
    }
}
