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
//! * at least one component, every kind known (a row of [`KINDS`](super::kinds::KINDS));
//! * at most one value of each kind, except `mac` (one per physical NIC, at
//!   most [`MAX_MACS`](super::kinds::MAX_MACS); the table's `max_values`); no component twice;
//! * an explicit identity (`xid`) stands alone;
//! * every hash is the 16-character base64url of 12 bytes;
//! * the CMID is well-formed and is the one the components give;
//! * a *weak* binding — no explicit identity and no hardware anchor (`dmi`,
//!   `psn`, `bsn`, `csn`, `dsk`, `mac`), e.g. only the machine-id, root file
//!   system and CPU model that a disk clone carries along — is refused unless
//!   the issuer allows it explicitly, and a token records that choice.
//!
//! Which kinds exist, how many values each may have, which one stands alone
//! and which are hardware anchors all come from the kinds table
//! ([`KINDS`](super::kinds::KINDS)).

use super::component::ComponentHash;
use super::errors::BindingError;
use super::hash::{cmid_from_components, normalize_cmid, COMPONENT_HASH_BYTES};
use super::kinds::{spec, Evidence, KindSpec};

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

/// Checks that `components` (without a CMID) are a set a real machine can
/// produce, and says how strong it is. Weakness is reported, not refused:
/// see [`check_binding`].
pub fn check_components(components: &[ComponentHash]) -> Result<BindingStrength, BindingError> {
    if components.is_empty() {
        return Err(BindingError::NoComponents);
    }
    let mut counts: Vec<(&'static KindSpec, usize)> = Vec::new();
    for (i, c) in components.iter().enumerate() {
        if components[..i].contains(c) {
            return Err(BindingError::DuplicateComponent { kind: c.kind.clone() });
        }
        let Some(kind) = spec(&c.kind) else {
            return Err(BindingError::UnknownKind { kind: c.kind.clone() });
        };
        if !is_component_hash(&c.hash) {
            return Err(BindingError::MalformedHash { kind: c.kind.clone() });
        }
        match counts.iter_mut().find(|(k, _)| k.code == kind.code) {
            Some((_, n)) => *n += 1,
            None => counts.push((kind, 1)),
        }
    }
    for &(kind, count) in &counts {
        if kind.max_values > 1 {
            if count > kind.max_values {
                return Err(BindingError::TooManyMacs { count, limit: kind.max_values });
            }
        } else if count > 1 {
            return Err(BindingError::DuplicateKind { kind: kind.code.to_string(), count });
        }
    }
    if counts.iter().any(|(k, _)| k.evidence == Evidence::Explicit) {
        if counts.len() > 1 {
            let others = counts
                .iter()
                .filter(|(k, _)| k.evidence != Evidence::Explicit)
                .map(|(k, _)| k.code.to_string())
                .collect();
            return Err(BindingError::ExplicitMixed { others });
        }
        return Ok(BindingStrength::Explicit);
    }
    if counts.iter().any(|(k, _)| matches!(k.evidence, Evidence::Hardware { .. })) {
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

/// Whether `h` is what [`super::hash::hash_component`] produces: 12 bytes as 16
/// base64url characters (the last one carrying no stray bits).
fn is_component_hash(h: &str) -> bool {
    use base64::Engine as _;
    h.len() == 16
        && base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).is_ok_and(|b| b.len() == COMPONENT_HASH_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::machine::hash::hash_component;
    use crate::core::machine::kinds::MAX_MACS;

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
