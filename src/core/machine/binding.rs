//! Which bindings a real machine can produce, and how strong they are.
//!
//! An activation request is unsigned input: whoever sends it chooses the
//! component hashes in it. A set no real machine produces — two machine-ids,
//! an explicit identity mixed with hardware, hashes of sixteen machines —
//! would bind one token (and one counted seat) to several machines. So the
//! issuer checks every request with [`check_binding`] before it signs, and
//! the verifier checks every token's bound set with the same function
//! (defence in depth: a token no current issuer would sign is refused).
//!
//! The rules (docs/machine-identity.md, "What a request may bind"):
//! * at least one component, every kind known ([`kinds::ALL`]);
//! * at most one value of each kind, except `mac` (one per physical NIC, at
//!   most [`MAX_MACS`]); no component twice;
//! * an explicit identity (`xid`) stands alone;
//! * every hash is the 16-character base64url of 12 bytes;
//! * the CMID is well-formed and is the one the components give;
//! * a *weak* binding — no explicit identity and no hardware anchor (`dmi`,
//!   `psn`, `bsn`, `csn`, `dsk`, `mac`), e.g. only the machine-id, root file
//!   system and CPU model that a disk clone carries along — is refused unless
//!   the issuer allows it explicitly, and a token records that choice.

use super::{cmid_from_components, kinds, normalize_cmid, ComponentHash};
use std::fmt;

/// Most `mac` components one machine may bind (one per physical NIC). A
/// machine with more NICs binds the first `MAX_MACS` in hash order.
pub const MAX_MACS: usize = 16;

/// Kinds that are evidence of the hardware itself rather than of the disk
/// image: a copied disk or VM image does not carry them along.
pub const HARDWARE_ANCHORS: &[&str] = &[
    kinds::DMI_UUID,
    kinds::PRODUCT_SERIAL,
    kinds::BOARD_SERIAL,
    kinds::CHASSIS_SERIAL,
    kinds::DISK_SERIAL,
    kinds::MAC,
];

/// How strongly a valid component set identifies one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingStrength {
    /// One explicit identity (`xid`), chosen by the operator.
    Explicit,
    /// At least one hardware anchor is bound.
    Hardware,
    /// Neither: only components a disk clone carries along (machine-id,
    /// root file system, CPU model). Issued only when explicitly allowed.
    Weak,
}

/// Why a component set (with its CMID) is not one a real machine produces.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindingError {
    /// No components at all.
    NoComponents,
    /// A component kind tka does not know.
    UnknownKind {
        /// The kind code (escaped when shown).
        kind: String,
    },
    /// The same component (kind and hash) twice: a machine reports each
    /// once, and a repeated MAC would outweigh the others in the MAC vote.
    DuplicateComponent {
        /// Its kind.
        kind: String,
    },
    /// More than one value of a single-valued kind.
    DuplicateKind {
        /// The kind.
        kind: String,
        /// How many values were given.
        count: usize,
    },
    /// More MAC addresses than one machine binds.
    TooManyMacs {
        /// How many were given.
        count: usize,
        /// [`MAX_MACS`].
        limit: usize,
    },
    /// An explicit identity together with other components.
    ExplicitMixed {
        /// The other kinds present.
        others: Vec<String>,
    },
    /// A component hash that is not 16 base64url characters (12 bytes).
    MalformedHash {
        /// Its kind.
        kind: String,
    },
    /// The CMID is not a well-formed CMID in canonical form.
    MalformedCmid {
        /// The CMID given (escaped when shown).
        cmid: String,
    },
    /// The CMID is well-formed but not the one the components give.
    CmidMismatch {
        /// The CMID given.
        claimed: String,
        /// The CMID the components give.
        computed: String,
    },
    /// No explicit identity and no hardware anchor, and weak bindings were
    /// not allowed.
    WeakBinding {
        /// The kinds present.
        kinds: Vec<String>,
    },
}

impl fmt::Display for BindingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindingError::NoComponents => f.write_str("the binding has no components"),
            BindingError::UnknownKind { kind } => write!(f, "unknown component kind {kind:?}"),
            BindingError::DuplicateComponent { kind } => {
                write!(f, "the same {kind:?} component twice: a machine reports each once")
            }
            BindingError::DuplicateKind { kind, count } => {
                write!(f, "{count} values of component kind {kind:?}: a machine has one")
            }
            BindingError::TooManyMacs { count, limit } => {
                write!(f, "{count} MAC addresses: a machine binds at most {limit}")
            }
            BindingError::ExplicitMixed { others } => {
                write!(f, "an explicit identity (xid) must stand alone, but the binding also has {}", others.join(", "))
            }
            BindingError::MalformedHash { kind } => {
                write!(f, "a {kind:?} component hash is not 16 base64url characters")
            }
            BindingError::MalformedCmid { cmid } => write!(f, "malformed CMID {cmid:?}"),
            BindingError::CmidMismatch { claimed, computed } => {
                write!(f, "the CMID {claimed} does not match the components (which give {computed})")
            }
            BindingError::WeakBinding { kinds } => write!(
                f,
                "weak binding: only {} (no hardware anchor: DMI UUID, serial numbers, disk serial or MAC; \
                 no explicit identity), which a copied disk or VM image carries to other hardware",
                kinds.join(", ")
            ),
        }
    }
}

impl std::error::Error for BindingError {}

/// Checks that `components` (without a CMID) are a set a real machine can
/// produce, and says how strong it is. Weakness is reported, not refused:
/// see [`check_binding`].
pub fn check_components(components: &[ComponentHash]) -> Result<BindingStrength, BindingError> {
    if components.is_empty() {
        return Err(BindingError::NoComponents);
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for (i, c) in components.iter().enumerate() {
        if components[..i].contains(c) {
            return Err(BindingError::DuplicateComponent { kind: c.kind.clone() });
        }
        if !kinds::ALL.contains(&c.kind.as_str()) {
            return Err(BindingError::UnknownKind { kind: c.kind.clone() });
        }
        if !is_component_hash(&c.hash) {
            return Err(BindingError::MalformedHash { kind: c.kind.clone() });
        }
        match counts.iter_mut().find(|(k, _)| *k == c.kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((c.kind.as_str(), 1)),
        }
    }
    for &(kind, count) in &counts {
        if kind == kinds::MAC {
            if count > MAX_MACS {
                return Err(BindingError::TooManyMacs { count, limit: MAX_MACS });
            }
        } else if count > 1 {
            return Err(BindingError::DuplicateKind { kind: kind.to_string(), count });
        }
    }
    let has = |k: &str| counts.iter().any(|(c, _)| *c == k);
    if has(kinds::EXPLICIT) {
        if counts.len() > 1 {
            let others = counts.iter().filter(|(k, _)| *k != kinds::EXPLICIT).map(|(k, _)| k.to_string()).collect();
            return Err(BindingError::ExplicitMixed { others });
        }
        return Ok(BindingStrength::Explicit);
    }
    if HARDWARE_ANCHORS.iter().any(|k| has(k)) {
        Ok(BindingStrength::Hardware)
    } else {
        Ok(BindingStrength::Weak)
    }
}

/// Everything an issuer (and a verifier) requires of a binding: the
/// components pass [`check_components`], `cmid` is canonical and is the one
/// they give, and a weak binding is allowed only when `allow_weak` is set.
pub fn check_binding(
    cmid: &str,
    components: &[ComponentHash],
    allow_weak: bool,
) -> Result<BindingStrength, BindingError> {
    let strength = check_components(components)?;
    if normalize_cmid(cmid).as_deref() != Some(cmid) {
        return Err(BindingError::MalformedCmid { cmid: cmid.to_string() });
    }
    let computed = cmid_from_components(components).ok_or(BindingError::NoComponents)?;
    if computed != cmid {
        return Err(BindingError::CmidMismatch { claimed: cmid.to_string(), computed });
    }
    if strength == BindingStrength::Weak && !allow_weak {
        let mut kinds: Vec<String> = components.iter().map(|c| c.kind.clone()).collect();
        kinds.dedup();
        return Err(BindingError::WeakBinding { kinds });
    }
    Ok(strength)
}

/// Whether `h` is what [`super::hash_component`] produces: 12 bytes as 16
/// base64url characters (the last one carrying no stray bits).
fn is_component_hash(h: &str) -> bool {
    use base64::Engine as _;
    h.len() == 16
        && base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .is_ok_and(|b| b.len() == super::hash::COMPONENT_HASH_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::machine::hash_component;

    fn c(kind: &str, value: &str) -> ComponentHash {
        ComponentHash { kind: kind.into(), hash: hash_component("p", kind, value) }
    }

    fn bind(cs: &[ComponentHash], allow_weak: bool) -> Result<BindingStrength, BindingError> {
        let cmid = cmid_from_components(cs).unwrap_or_default();
        check_binding(&cmid, cs, allow_weak)
    }

    #[test]
    fn strengths() {
        assert_eq!(bind(&[c("mid", "a"), c("dmi", "b")], false), Ok(BindingStrength::Hardware));
        assert_eq!(bind(&[c("xid", "a")], false), Ok(BindingStrength::Explicit));
        assert_eq!(bind(&[c("mid", "a"), c("rfs", "b"), c("cpu", "c")], true), Ok(BindingStrength::Weak));
        assert_eq!(
            bind(&[c("mid", "a"), c("cpu", "c")], false),
            Err(BindingError::WeakBinding { kinds: vec!["mid".into(), "cpu".into()] })
        );
    }

    #[test]
    fn impossible_sets() {
        assert_eq!(check_components(&[]), Err(BindingError::NoComponents));
        assert_eq!(
            check_components(&[c("mid", "a"), c("mid", "b"), c("dmi", "c")]),
            Err(BindingError::DuplicateKind { kind: "mid".into(), count: 2 })
        );
        let macs: Vec<_> = (0..=MAX_MACS).map(|i| c("mac", &i.to_string())).collect();
        assert_eq!(check_components(&macs), Err(BindingError::TooManyMacs { count: MAX_MACS + 1, limit: MAX_MACS }));
        assert_eq!(check_components(&macs[..MAX_MACS]), Ok(BindingStrength::Hardware));
        assert_eq!(
            check_components(&[c("xid", "a"), c("dmi", "c")]),
            Err(BindingError::ExplicitMixed { others: vec!["dmi".into()] })
        );
        assert_eq!(check_components(&[c("zzz", "a")]), Err(BindingError::UnknownKind { kind: "zzz".into() }));
        let short = ComponentHash { kind: "dmi".into(), hash: "AAAA".into() };
        assert_eq!(check_components(&[short]), Err(BindingError::MalformedHash { kind: "dmi".into() }));
    }

    #[test]
    fn cmid_must_be_canonical_and_computed() {
        let cs = [c("mid", "a"), c("dmi", "b")];
        let right = cmid_from_components(&cs).unwrap();
        assert_eq!(check_binding(&right, &cs, false), Ok(BindingStrength::Hardware));
        let lower = right.to_lowercase();
        assert_eq!(check_binding(&lower, &cs, false), Err(BindingError::MalformedCmid { cmid: lower.clone() }));
        let other = cmid_from_components(&[c("mid", "x")]).unwrap();
        assert_eq!(
            check_binding(&other, &cs, false),
            Err(BindingError::CmidMismatch { claimed: other.clone(), computed: right })
        );
        let evil = "AAAA\nserial: 00\x1b[2J";
        assert_eq!(check_binding(evil, &cs, false), Err(BindingError::MalformedCmid { cmid: evil.into() }));
        assert!(!BindingError::MalformedCmid { cmid: evil.into() }.to_string().contains('\n'));
    }
}
