//! Component kinds: one table, [`KINDS`], that everything else reads.
//!
//! A row says what a kind is (its code and description), how its raw values
//! are normalized, which CMID tier it belongs to, whether it is evidence of
//! the hardware itself (a *hardware anchor*), of the disk image, or an
//! explicit identity, and how many values of it one machine binds.
//! Normalization ([`normalize`]), the CMID ([`super::hash::cmid_basis`]),
//! the binding rules ([`super::binding::check_components`]), the hardware
//! anchor of `most` ([`super::matching::MatchRule::evaluate`]) and the
//! identity's warnings all read it. Adding a kind means adding one row here
//! and a source that reads it (`sources.rs`, `platform.rs`).
//!
//! Codes are short on purpose: they travel in every request and token.

use super::normalize::{normalize_explicit, normalize_mac, normalize_machine_id, normalize_text, Rejection};

/// An explicit identity given by the operator (an explicit machine-id file, `TKA_MACHINE_ID`).
pub const EXPLICIT: &str = "xid";
/// OS installation id: `/etc/machine-id` (Windows: MachineGuid).
pub const MACHINE_ID: &str = "mid";
/// DMI/SMBIOS product UUID (macOS: IOPlatformUUID).
pub const DMI_UUID: &str = "dmi";
/// DMI product (system) serial number (macOS: IOPlatformSerialNumber).
pub const PRODUCT_SERIAL: &str = "psn";
/// DMI baseboard serial number.
pub const BOARD_SERIAL: &str = "bsn";
/// DMI chassis serial number.
pub const CHASSIS_SERIAL: &str = "csn";
/// MAC address of a physical NIC (one component per NIC).
pub const MAC: &str = "mac";
/// UUID of the root file system.
pub const ROOT_FS: &str = "rfs";
/// Serial number / WWID of the disk holding the root file system.
pub const DISK_SERIAL: &str = "dsk";
/// CPU model string.
pub const CPU_MODEL: &str = "cpu";

/// Most `mac` components one machine may bind (one per physical NIC). A
/// machine with more NICs binds the first `MAX_MACS` in hash order.
pub const MAX_MACS: usize = 16;

/// Normalizes one raw value of a kind (after the control-character check
/// every kind shares, see [`normalize`]).
pub type Normalizer = fn(&str) -> Result<String, Rejection>;

/// Where a kind stands in the CMID derivation
/// ([`super::hash::cmid_basis`]); the tiers are tried in order and the first
/// that has a component gives the CMID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmidTier {
    /// Tier 1: the CMID comes from this kind alone (the explicit identity).
    Alone,
    /// Tier 2: the CMID comes from every present kind of this tier together.
    Together,
    /// Tier 3: the CMID comes from the first present kind of this tier, in
    /// the order of the number (lowest first).
    FirstOf(u8),
    /// Tier 4: never used while a kind of tiers 1–3 is present; when none
    /// is, the CMID comes from every component.
    Rest,
}

impl CmidTier {
    /// The tier's number, 1 to 4.
    pub const fn number(self) -> u8 {
        match self {
            CmidTier::Alone => 1,
            CmidTier::Together => 2,
            CmidTier::FirstOf(_) => 3,
            CmidTier::Rest => 4,
        }
    }
}

/// What a kind is evidence of, which decides how strong a binding is
/// ([`super::binding::BindingStrength`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// An identity chosen by the operator; it stands alone in a binding.
    Explicit,
    /// The hardware itself: a copied disk or VM image does not carry it
    /// along. A *hardware anchor*; `listed` orders the anchors in
    /// [`HARDWARE_ANCHORS`] and in a match report.
    Hardware {
        /// Position in [`HARDWARE_ANCHORS`].
        listed: u8,
    },
    /// The disk image or OS install: a clone carries it to other hardware.
    /// A binding of only such kinds is *weak*.
    Image,
}

/// How a kind's vote counts in matching ([`super::matching::MatchRule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchTier {
    /// An ordinary vote.
    Vote,
    /// A hardware vote: under `most`, more than half of the bound hardware
    /// votes must match.
    Anchor,
    /// A hardware vote that, under `most`, must itself match whenever it is
    /// bound (the DMI product UUID).
    KeyAnchor,
}

/// One row of the kinds table.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    /// The short code that travels in requests and tokens.
    pub code: &'static str,
    /// A human description.
    pub description: &'static str,
    /// How raw values are normalized.
    pub normalizer: Normalizer,
    /// Where the kind stands in the CMID derivation.
    pub cmid: CmidTier,
    /// What the kind is evidence of (hardware anchor, weak, explicit).
    pub evidence: Evidence,
    /// How its vote counts in matching.
    pub match_tier: MatchTier,
    /// How many values of the kind one machine binds (`mac`: one per NIC,
    /// at most [`MAX_MACS`]; every other kind: one).
    pub max_values: usize,
}

/// Every known kind, in display / priority order (the order components are
/// sorted in).
pub static KINDS: &[KindSpec] = &[
    KindSpec {
        code: EXPLICIT,
        description: "explicit identity",
        normalizer: normalize_explicit,
        cmid: CmidTier::Alone,
        evidence: Evidence::Explicit,
        match_tier: MatchTier::Vote,
        max_values: 1,
    },
    KindSpec {
        code: MACHINE_ID,
        description: "OS installation id (machine-id)",
        normalizer: normalize_machine_id,
        cmid: CmidTier::Together,
        evidence: Evidence::Image,
        match_tier: MatchTier::Vote,
        max_values: 1,
    },
    KindSpec {
        code: DMI_UUID,
        description: "DMI product UUID",
        normalizer: normalize_text,
        cmid: CmidTier::Together,
        evidence: Evidence::Hardware { listed: 0 },
        match_tier: MatchTier::KeyAnchor,
        max_values: 1,
    },
    KindSpec {
        code: PRODUCT_SERIAL,
        description: "DMI product serial number",
        normalizer: normalize_text,
        cmid: CmidTier::FirstOf(1),
        evidence: Evidence::Hardware { listed: 1 },
        match_tier: MatchTier::Anchor,
        max_values: 1,
    },
    KindSpec {
        code: BOARD_SERIAL,
        description: "DMI baseboard serial number",
        normalizer: normalize_text,
        cmid: CmidTier::FirstOf(0),
        evidence: Evidence::Hardware { listed: 2 },
        match_tier: MatchTier::Anchor,
        max_values: 1,
    },
    KindSpec {
        code: CHASSIS_SERIAL,
        description: "DMI chassis serial number",
        normalizer: normalize_text,
        cmid: CmidTier::FirstOf(2),
        evidence: Evidence::Hardware { listed: 3 },
        match_tier: MatchTier::Anchor,
        max_values: 1,
    },
    KindSpec {
        code: MAC,
        description: "MAC address of a physical NIC",
        normalizer: normalize_mac,
        cmid: CmidTier::Rest,
        evidence: Evidence::Hardware { listed: 5 },
        match_tier: MatchTier::Anchor,
        max_values: MAX_MACS,
    },
    KindSpec {
        code: ROOT_FS,
        description: "root file system UUID",
        normalizer: normalize_text,
        cmid: CmidTier::FirstOf(3),
        evidence: Evidence::Image,
        match_tier: MatchTier::Vote,
        max_values: 1,
    },
    KindSpec {
        code: DISK_SERIAL,
        description: "serial number of the root disk",
        normalizer: normalize_text,
        cmid: CmidTier::FirstOf(4),
        evidence: Evidence::Hardware { listed: 4 },
        match_tier: MatchTier::Anchor,
        max_values: 1,
    },
    KindSpec {
        code: CPU_MODEL,
        description: "CPU model",
        normalizer: normalize_text,
        cmid: CmidTier::Rest,
        evidence: Evidence::Image,
        match_tier: MatchTier::Vote,
        max_values: 1,
    },
];

const KIND_COUNT: usize = KINDS.len();

const fn all_codes() -> [&'static str; KIND_COUNT] {
    let mut out = [""; KIND_COUNT];
    let mut i = 0;
    while i < KIND_COUNT {
        out[i] = KINDS[i].code;
        i += 1;
    }
    out
}

const ALL_CODES: [&str; KIND_COUNT] = all_codes();

/// All known kinds in display / priority order (the codes of [`KINDS`]).
pub const ALL: &[&str] = &ALL_CODES;

const fn anchor_count() -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < KIND_COUNT {
        if let Evidence::Hardware { .. } = KINDS[i].evidence {
            n += 1;
        }
        i += 1;
    }
    n
}

const ANCHOR_COUNT: usize = anchor_count();

const fn anchor_codes() -> [&'static str; ANCHOR_COUNT] {
    let mut out = [""; ANCHOR_COUNT];
    let mut i = 0;
    while i < KIND_COUNT {
        if let Evidence::Hardware { listed } = KINDS[i].evidence {
            out[listed as usize] = KINDS[i].code;
        }
        i += 1;
    }
    out
}

const ANCHOR_CODES: [&str; ANCHOR_COUNT] = anchor_codes();

/// Kinds that are evidence of the hardware itself rather than of the disk
/// image: a copied disk or VM image does not carry them along (the kinds of
/// [`KINDS`] with [`Evidence::Hardware`], in their `listed` order).
pub const HARDWARE_ANCHORS: &[&str] = &ANCHOR_CODES;

/// The table row of a kind code, if the kind is known.
pub fn spec(kind: &str) -> Option<&'static KindSpec> {
    KINDS.iter().find(|s| s.code == kind)
}

/// Sort rank of a kind (unknown kinds sort last).
pub fn rank(kind: &str) -> usize {
    KINDS.iter().position(|s| s.code == kind).unwrap_or(KINDS.len())
}

/// A human description of a kind code.
pub fn describe(kind: &str) -> &'static str {
    spec(kind).map_or("unknown component kind", |s| s.description)
}

/// The CMID tiers 1–3 as the table gives them, in the order they are tried:
/// the kinds of tier 1, of tier 2, then each kind of tier 3 on its own (the
/// first present one wins). Kinds of tier 4 are used only when none of
/// these has a component.
pub fn cmid_steps() -> Vec<Vec<&'static str>> {
    let of = |pick: fn(CmidTier) -> bool| KINDS.iter().filter(move |s| pick(s.cmid)).map(|s| s.code);
    let mut steps = vec![of(|t| t == CmidTier::Alone).collect(), of(|t| t == CmidTier::Together).collect()];
    let mut firsts: Vec<(u8, &'static str)> = KINDS
        .iter()
        .filter_map(|s| match s.cmid {
            CmidTier::FirstOf(n) => Some((n, s.code)),
            _ => None,
        })
        .collect();
    firsts.sort();
    steps.extend(firsts.into_iter().map(|(_, code)| vec![code]));
    steps
}

/// Normalizes a raw value of component `kind`.
///
/// * every kind: rejects values with control characters;
/// * then the kind's [`KindSpec::normalizer`]: `xid` (explicit identity)
///   trimmed only — case is kept, placeholders are not second-guessed;
///   `mac`: see [`normalize_mac`]; `mid`: must be 32 hex digits (systemd's
///   `uninitialized` is rejected);
/// * everything else (and unknown kinds): whitespace trimmed and collapsed,
///   lowercased, placeholders rejected.
pub fn normalize(kind: &str, raw: &str) -> Result<String, Rejection> {
    if raw.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err(Rejection::Malformed);
    }
    let normalizer = spec(kind).map_or(normalize_text as Normalizer, |s| s.normalizer);
    normalizer(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_consistent() {
        for (i, s) in KINDS.iter().enumerate() {
            assert!(!KINDS[..i].iter().any(|o| o.code == s.code), "code {} twice", s.code);
            assert!(
                s.code.len() == 3 && s.code.chars().all(|c| c.is_ascii_lowercase()),
                "{}: codes are three lower-case letters",
                s.code
            );
            assert!(!s.description.is_empty(), "{}", s.code);
            assert_eq!(describe(s.code), s.description);
            assert_eq!(rank(s.code), i);
            // Every normalizer refuses what no machine reports.
            assert_eq!(normalize(s.code, "  "), Err(Rejection::Empty), "{}", s.code);
            assert_eq!(normalize(s.code, "a\u{1}b"), Err(Rejection::Malformed), "{}", s.code);
            assert!(s.max_values >= 1, "{}", s.code);
            let hardware = matches!(s.evidence, Evidence::Hardware { .. });
            assert_eq!(hardware, s.match_tier != MatchTier::Vote, "{}: hardware anchor <=> anchor vote", s.code);
            if hardware {
                // A hardware kind's placeholder is refused, not hashed.
                assert!(normalize(s.code, "00:00:00:00:00:00").is_err(), "{}", s.code);
            }
            // The explicit identity, and only it, stands alone in the CMID.
            assert_eq!(s.evidence == Evidence::Explicit, s.cmid == CmidTier::Alone, "{}", s.code);
            if s.evidence == Evidence::Explicit {
                assert_eq!(s.max_values, 1, "{}", s.code);
            }
        }
        let firsts: Vec<u8> = KINDS
            .iter()
            .filter_map(|s| match s.cmid {
                CmidTier::FirstOf(n) => Some(n),
                _ => None,
            })
            .collect();
        let mut sorted = firsts.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), firsts.len(), "tier 3 positions are distinct");
        let mut listed: Vec<u8> = KINDS
            .iter()
            .filter_map(|s| match s.evidence {
                Evidence::Hardware { listed } => Some(listed),
                _ => None,
            })
            .collect();
        listed.sort();
        assert_eq!(listed, (0..listed.len() as u8).collect::<Vec<_>>(), "anchor positions are 0..n");
        assert_eq!(ALL.len(), KINDS.len());
        assert!(HARDWARE_ANCHORS.iter().all(|k| spec(k).is_some()));
        assert!(!HARDWARE_ANCHORS.contains(&""));
    }

    #[test]
    fn the_derived_lists_are_the_documented_ones() {
        assert_eq!(ALL, ["xid", "mid", "dmi", "psn", "bsn", "csn", "mac", "rfs", "dsk", "cpu"]);
        assert_eq!(HARDWARE_ANCHORS, ["dmi", "psn", "bsn", "csn", "dsk", "mac"]);
        assert_eq!(describe("zzz"), "unknown component kind");
        assert_eq!(rank("zzz"), KINDS.len());
    }

    /// The CMID tiers the table gives are the ones docs/machine-identity.md
    /// documents ("Components used, in priority order").
    #[test]
    fn cmid_tiers_match_the_documentation() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/machine-identity.md")).unwrap();
        let start = doc.find("Components used, in priority order:").expect("the CMID order in the docs");
        let mut tiers: Vec<Vec<String>> = Vec::new();
        for line in doc[start..].lines().skip(1) {
            let line = line.trim();
            if line.is_empty() && !tiers.is_empty() {
                break;
            }
            let codes = |text: &str| -> Vec<String> {
                text.split('`').skip(1).step_by(2).filter(|c| spec(c).is_some()).map(String::from).collect()
            };
            match line.split_once(". ") {
                Some((n, rest)) if n.parse::<usize>() == Ok(tiers.len() + 1) => tiers.push(codes(rest)),
                _ if !tiers.is_empty() => tiers.last_mut().unwrap().extend(codes(line)),
                _ => {}
            }
        }
        let steps = cmid_steps();
        let tier_of = |n: u8| -> Vec<String> {
            let mut v: Vec<(u8, usize, &str)> = KINDS
                .iter()
                .enumerate()
                .filter(|(_, s)| s.cmid.number() == n)
                .map(|(i, s)| (if let CmidTier::FirstOf(p) = s.cmid { p } else { 0 }, i, s.code))
                .collect();
            v.sort();
            v.into_iter().map(|(.., c)| c.to_string()).collect()
        };
        assert_eq!(tiers.len(), 4, "{tiers:?}");
        assert_eq!(tiers[0], tier_of(1));
        assert_eq!(tiers[1], tier_of(2));
        assert_eq!(tiers[2], tier_of(3));
        assert_eq!(steps[0], tier_of(1));
        assert_eq!(steps[1], tier_of(2));
        assert_eq!(steps[2..].concat(), tier_of(3));
        // Tier 4, "only MACs / CPU model", is the rest.
        assert_eq!(tier_of(4), ["mac", "cpu"]);
        assert_eq!(tiers[3], tier_of(4), "the docs name the tier-4 kinds: {:?}", tiers[3]);
    }

    #[test]
    fn placeholders() {
        for p in [
            "To be filled by O.E.M.",
            "  DEFAULT STRING ",
            "None",
            "Not Specified",
            "System Serial Number",
            "0123456789",
            "00000000-0000-0000-0000-000000000000",
            "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
            "xxxxxxxx",
            "03000200-0400-0500-0006-000700080009",
        ] {
            assert_eq!(normalize(DMI_UUID, p), Err(Rejection::Placeholder), "{p}");
        }
        assert_eq!(normalize(DMI_UUID, " \n"), Err(Rejection::Empty));
        assert_eq!(normalize(BOARD_SERIAL, "ab\u{1}cd"), Err(Rejection::Malformed));
    }

    #[test]
    fn machine_id_and_others() {
        let id = "0123456789ABCDEF0123456789abcdef\n";
        assert_eq!(normalize(MACHINE_ID, id).unwrap(), "0123456789abcdef0123456789abcdef");
        assert_eq!(normalize(MACHINE_ID, "uninitialized\n"), Err(Rejection::Malformed));
        assert_eq!(normalize(CPU_MODEL, "  Intel(R)  Core(TM)   i7 ").unwrap(), "intel(r) core(tm) i7");
        assert_eq!(normalize(EXPLICIT, "  Fleet-Node-07 \n").unwrap(), "Fleet-Node-07");
    }
}
