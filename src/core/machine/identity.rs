//! The identity of one machine for one product: reading the sources,
//! normalizing and hashing what they give, the CMID, warnings and the
//! `explain` view.

use super::binding::{check_components, BindingStrength};
use super::component::ComponentHash;
use super::environment::{self, Environment};
use super::errors::MachineError;
use super::hash::{cmid_basis, cmid_from_components, hash_component};
use super::kinds::{self, normalize, CmidTier};
use super::matching::{default_rule_for, MatchRule};
use super::platform::platform_sources;
use super::report::MatchReport;
use super::sources::{ComponentSource, RawReading};
use serde::ser::SerializeStruct;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where and how to look for identity components.
#[derive(Debug, Clone, Default)]
pub struct IdentifyOptions {
    /// Root of the file system to read from; `/` when `None`. Test builds
    /// only (cargo feature `test-hooks`): in a shipped build the machine is
    /// always read from `/`, so no user can make tka see another machine.
    #[cfg(feature = "test-hooks")]
    pub sysroot: Option<PathBuf>,
    /// An explicit identity that replaces hardware sources (containers).
    pub explicit_id: Option<String>,
    /// A file holding the explicit identity (the explicit machine-id file); takes
    /// precedence over [`Self::explicit_id`]. Read as given (not under the
    /// sysroot), trimmed; must not be empty.
    pub explicit_id_file: Option<PathBuf>,
}

/// Maximum size of an explicit identity file.
const MAX_EXPLICIT_ID_FILE: u64 = 64 * 1024;

impl IdentifyOptions {
    /// Options from the environment: `TKA_MACHINE_ID` (the explicit
    /// identity value itself) and, in test builds only (cargo feature
    /// `test-hooks`), `TKA_SYSROOT` (system root); a shipped build ignores
    /// `TKA_SYSROOT`. Empty variables count as unset. A caller then sets
    /// `explicit_id_file` (the CLI from its machine-id file option), which
    /// wins over `TKA_MACHINE_ID`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        IdentifyOptions {
            #[cfg(feature = "test-hooks")]
            sysroot: var("TKA_SYSROOT").map(PathBuf::from),
            explicit_id: var("TKA_MACHINE_ID"),
            explicit_id_file: None,
        }
    }

    /// The fake system root of a test build.
    #[cfg(feature = "test-hooks")]
    fn sysroot(&self) -> Option<&PathBuf> {
        self.sysroot.as_ref()
    }

    /// No fake system root: a shipped build always reads the real machine.
    #[cfg(not(feature = "test-hooks"))]
    fn sysroot(&self) -> Option<&PathBuf> {
        None
    }

    /// The root directory sources read from: `/`, or the fake system root
    /// of a test build.
    pub fn root(&self) -> PathBuf {
        self.sysroot().cloned().unwrap_or_else(|| PathBuf::from("/"))
    }

    /// The explicit identity, if one was given: the file wins over the value.
    pub fn explicit_identity(&self) -> Result<Option<String>, MachineError> {
        if let Some(path) = &self.explicit_id_file {
            let shown = path.display();
            // A regular file only (a FIFO or /dev/zero is refused before any
            // read), read through a cap whatever size it claims.
            let bytes = crate::core::fsutil::read_bounded(path, MAX_EXPLICIT_ID_FILE)
                .map_err(|e| MachineError::BadExplicitId(format!("cannot read {shown}: {e}")))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| MachineError::BadExplicitId(format!("cannot read {shown}: it is not UTF-8 text")))?;
            return normalize(kinds::EXPLICIT, &text)
                .map(Some)
                .map_err(|r| MachineError::BadExplicitId(format!("{shown}: {}", r.describe())));
        }
        match &self.explicit_id {
            None => Ok(None),
            Some(v) => normalize(kinds::EXPLICIT, v)
                .map(Some)
                .map_err(|r| MachineError::BadExplicitId(format!("TKA_MACHINE_ID: {}", r.describe()))),
        }
    }
}

/// What one source contributed, for `--explain`.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceReport {
    /// Kind code.
    pub kind: String,
    /// Human name of the source.
    pub name: String,
    /// Where it reads from.
    pub location: String,
    /// Hashes of the accepted values (same order as the values).
    pub hashes: Vec<String>,
    /// Why values were absent or rejected (never contains identifier values).
    pub notes: Vec<String>,
    values: Vec<String>,
}

impl SourceReport {
    /// Number of accepted values.
    pub fn found(&self) -> usize {
        self.values.len()
    }
    /// The accepted normalized values. Local use only (`--show-values`):
    /// these are the raw identifiers the hashes protect.
    pub fn values(&self) -> &[String] {
        &self.values
    }
}

impl fmt::Debug for SourceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceReport")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("found", &self.values.len())
            .field("hashes", &self.hashes)
            .field("notes", &self.notes)
            .finish()
    }
}

/// The identity of one machine for one product.
#[derive(Clone)]
pub struct MachineIdentity {
    product: String,
    cmid: String,
    components: Vec<ComponentHash>,
    sources: Vec<SourceReport>,
    /// Detected on first use ([`Self::environment`]): a verification with
    /// an explicit identity never needs it, and detection reads /proc and
    /// /sys files (`/proc/cpuinfo`, `/proc/self/mountinfo`, DMI).
    environment: OnceLock<Environment>,
    /// The root detection reads from; `None`: no detection (the default
    /// environment).
    environment_root: Option<PathBuf>,
    explicit: bool,
}

impl PartialEq for MachineIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.product == other.product
            && self.cmid == other.cmid
            && self.components == other.components
            && self.sources == other.sources
            && self.explicit == other.explicit
            && self.environment() == other.environment()
    }
}

impl Eq for MachineIdentity {}

impl fmt::Debug for MachineIdentity {
    // Hand-written so raw values never end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineIdentity")
            .field("product", &self.product)
            .field("cmid", &self.cmid)
            .field("components", &self.components)
            .field("environment", self.environment())
            .field("explicit", &self.explicit)
            .finish()
    }
}

impl MachineIdentity {
    /// Reads this machine's components and hashes them for `product`.
    ///
    /// With an explicit identity only that is used (kind `xid`). Otherwise
    /// every source is read; absent or placeholder values are skipped. Fails
    /// with [`MachineError::NoComponents`] if nothing usable is found, and
    /// with [`MachineError::BadExplicitId`] if an explicit identity was given
    /// but is unusable (never silently falling back to hardware).
    pub fn identify(product: &str, opts: &IdentifyOptions) -> Result<Self, MachineError> {
        let root = opts.root();
        // An explicit identity detects the environment when first asked for
        // (`machine id --explain`): a verification never needs it.
        let environment_root =
            (opts.sysroot().is_some() || cfg!(not(any(windows, target_os = "macos")))).then(|| root.clone());
        if let Some(xid) = opts.explicit_identity()? {
            let reading = RawReading { values: vec![xid], notes: Vec::new() };
            let location =
                if opts.explicit_id_file.is_some() { "the explicit machine-id file" } else { "TKA_MACHINE_ID" };
            let mut id =
                Self::build(product, vec![(kinds::EXPLICIT, kinds::describe(kinds::EXPLICIT), location, reading)]);
            id.environment_root = environment_root;
            id.explicit = true;
            return Ok(id);
        }
        // The sources and the environment detection read some files in
        // turn (/proc/cpuinfo, /proc/self/mountinfo, DMI): each once.
        super::sources::with_read_memo(|| {
            let readings = platform_sources(opts.sysroot())
                .iter()
                .map(|s| (s.kind(), s.name(), s.location(), s.read(&root)))
                .collect();
            let mut id = Self::build(product, readings);
            if id.components.is_empty() {
                return Err(MachineError::NoComponents);
            }
            // A hardware identity: the container warning needs it now, while
            // the sources just read are what it describes.
            id.environment_root = environment_root;
            id.environment();
            Ok(id)
        })
    }

    /// Reads components with caller-supplied sources (embedding, custom
    /// sources). No environment detection, no explicit identity.
    pub fn identify_with(
        product: &str,
        root: &Path,
        sources: &[Box<dyn ComponentSource>],
    ) -> Result<Self, MachineError> {
        let readings = sources.iter().map(|s| (s.kind(), s.name(), s.location(), s.read(root))).collect();
        let id = Self::build(product, readings);
        if id.components.is_empty() {
            return Err(MachineError::NoComponents);
        }
        Ok(id)
    }

    /// Builds an identity from raw (kind, value) pairs; for tests and
    /// embedding. Values are normalized exactly as [`Self::identify`] does
    /// (placeholders and invalid values are dropped), so the same raw values
    /// give the same hashes and CMID. If nothing usable remains the identity
    /// has no components and an empty CMID; use [`Self::try_from_raw`] to get
    /// an error instead.
    pub fn from_raw(product: &str, raw: &[(String, String)]) -> Self {
        let mut readings: Vec<(&str, &'static str, &'static str, RawReading)> = Vec::new();
        for (k, v) in raw {
            match readings.iter_mut().find(|(rk, ..)| rk == k) {
                Some((.., r)) => r.values.push(v.clone()),
                None => readings.push((
                    k.as_str(),
                    kinds::describe(k),
                    "supplied by the caller",
                    RawReading { values: vec![v.clone()], notes: Vec::new() },
                )),
            }
        }
        let explicit = raw.iter().any(|(k, _)| k == kinds::EXPLICIT);
        let mut id = Self::build(product, readings);
        id.explicit = explicit;
        id
    }

    /// Like [`Self::from_raw`] but fails with [`MachineError::NoComponents`]
    /// when no usable component remains.
    pub fn try_from_raw(product: &str, raw: &[(String, String)]) -> Result<Self, MachineError> {
        let id = Self::from_raw(product, raw);
        if id.components.is_empty() {
            Err(MachineError::NoComponents)
        } else {
            Ok(id)
        }
    }

    fn build(product: &str, readings: Vec<(&str, &'static str, &'static str, RawReading)>) -> Self {
        let mut sources = Vec::new();
        let mut components: Vec<ComponentHash> = Vec::new();
        for (kind, name, location, reading) in readings {
            let mut report = SourceReport {
                kind: kind.to_string(),
                name: name.to_string(),
                location: location.to_string(),
                hashes: Vec::new(),
                notes: reading.notes,
                values: Vec::new(),
            };
            for raw in &reading.values {
                match normalize(kind, raw) {
                    Ok(v) => {
                        let c = ComponentHash { kind: kind.to_string(), hash: hash_component(product, kind, &v) };
                        if components.contains(&c) {
                            report.notes.push("duplicate value counted once".into());
                            continue;
                        }
                        report.values.push(v);
                        report.hashes.push(c.hash.clone());
                        components.push(c);
                    }
                    Err(why) => report.notes.push(format!("value ignored: {}", why.describe())),
                }
            }
            sources.push(report);
        }
        components
            .sort_by(|a, b| (kinds::rank(&a.kind), &a.kind, &a.hash).cmp(&(kinds::rank(&b.kind), &b.kind, &b.hash)));
        // A machine binds at most `max_values` of a multi-valued kind (MAX_MACS
        // NICs: the first in hash order), so every identity it reports is one
        // an issuer accepts.
        let mut taken: Vec<(&str, usize)> = Vec::new();
        components.retain(|c| {
            let Some(s) = kinds::spec(&c.kind).filter(|s| s.max_values > 1) else {
                return true;
            };
            match taken.iter_mut().find(|(k, _)| *k == s.code) {
                Some((_, n)) => {
                    *n += 1;
                    *n <= s.max_values
                }
                None => {
                    taken.push((s.code, 1));
                    true
                }
            }
        });
        let cmid = cmid_from_components(&components).unwrap_or_default();
        MachineIdentity {
            product: product.to_string(),
            cmid,
            components,
            sources,
            environment: OnceLock::new(),
            environment_root: None,
            explicit: false,
        }
    }

    /// The product this identity is scoped to.
    pub fn product(&self) -> &str {
        &self.product
    }
    /// The short human form of the identity (`XXXX-XXXX-XXXX-XXXX-C`).
    pub fn cmid(&self) -> &str {
        &self.cmid
    }
    /// The hashed components, sorted by kind priority then hash.
    pub fn components(&self) -> &[ComponentHash] {
        &self.components
    }
    /// What each source contributed (for `--explain`).
    pub fn sources(&self) -> &[SourceReport] {
        &self.sources
    }
    /// The detected environment (container / VM / bare metal).
    pub fn environment(&self) -> &Environment {
        self.environment.get_or_init(|| self.environment_root.as_deref().map(environment::detect).unwrap_or_default())
    }
    /// Whether the identity is an explicit one (`xid`) rather than hardware.
    pub fn is_explicit(&self) -> bool {
        self.explicit
    }
    /// True in a container without an explicit identity: the components
    /// then describe the image and the host's hardware, which every container
    /// on that host shares. The CLI should warn.
    pub fn binds_host_hardware(&self) -> bool {
        !self.explicit && self.environment().is_container()
    }
    /// Kinds the CMID was derived from (see [`cmid_basis`]).
    pub fn cmid_kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = cmid_basis(&self.components).iter().map(|c| c.kind.clone()).collect();
        k.dedup();
        k
    }
    /// How strongly this machine's components identify it; `None` when it
    /// has none, or a set no issuer accepts (see [`check_components`]).
    pub fn binding_strength(&self) -> Option<BindingStrength> {
        check_components(&self.components).ok()
    }
    /// [`Self::binding_strength`] as a word: `explicit`, `hardware`, `weak`
    /// or `none`.
    pub fn binding_label(&self) -> &'static str {
        match self.binding_strength() {
            Some(BindingStrength::Explicit) => "explicit",
            Some(BindingStrength::Hardware) => "hardware",
            Some(BindingStrength::Weak) => "weak",
            None => "none",
        }
    }
    /// The default match rule for this machine's components.
    pub fn default_rule(&self) -> MatchRule {
        default_rule_for(&self.components)
    }
    /// Compares components bound in a token with this machine under `rule`.
    pub fn matches(&self, rule: MatchRule, bound: &[ComponentHash]) -> MatchReport {
        rule.evaluate(bound, &self.components)
    }

    /// The warning that this identity binds to the host (see
    /// [`Self::binds_host_hardware`]), if it does; the first of
    /// [`Self::warnings`].
    pub fn container_warning(&self) -> Option<String> {
        self.binds_host_hardware().then(|| {
            format!(
                "running in a {}: without an explicit identity this binds to the container image and the \
                 host's hardware, which every container on the host shares; use an explicit machine-id file or \
                 TKA_MACHINE_ID",
                self.environment()
            )
        })
    }

    /// Warnings worth showing the operator.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        w.extend(self.container_warning());
        if self.explicit {
            w.push("using only the explicit identity; hardware sources are ignored".into());
        }
        let root_only = self
            .sources
            .iter()
            .filter(|s| s.found() == 0 && s.notes.iter().any(|n| n.contains("permission denied")))
            .map(|s| s.kind.as_str())
            .collect::<Vec<_>>();
        if !root_only.is_empty() {
            w.push(format!(
                "not readable without root: {}; requests and verification should run with the same privileges",
                root_only.join(", ")
            ));
        }
        if self.binding_strength() == Some(BindingStrength::Weak) {
            w.push(
                "weak binding: no hardware anchor (DMI UUID, serial numbers, disk serial or physical MAC) was \
                 readable, so a copy of this disk would pass as this machine; issuers refuse such a request \
                 unless they allow weak bindings (run as root, or use an explicit identity)"
                    .into(),
            );
        }
        // The CMID comes from tier-4 kinds only (MACs, CPU model).
        let basis = self.cmid_kinds();
        if !self.components.is_empty() && basis.iter().all(|k| kinds::spec(k).is_some_and(|s| s.cmid == CmidTier::Rest))
        {
            w.push("only MAC addresses / CPU model found: the CMID changes when a NIC is replaced".into());
        }
        w
    }

    /// A description of what was found, for `tka machine id --explain`.
    /// Raw values are included only when `show_values` is true.
    pub fn explain(&self, show_values: bool) -> Explanation {
        Explanation {
            product: self.product.clone(),
            cmid: self.cmid.clone(),
            cmid_from: self.cmid_kinds(),
            environment: self.environment().clone(),
            explicit_identity: self.explicit,
            binds_host_hardware: self.binds_host_hardware(),
            sources: self
                .sources
                .iter()
                .map(|s| ExplainedSource {
                    kind: s.kind.clone(),
                    name: s.name.clone(),
                    location: s.location.clone(),
                    found: s.found(),
                    hashes: s.hashes.clone(),
                    values: show_values.then(|| s.values.clone()),
                    notes: s.notes.clone(),
                })
                .collect(),
            warnings: self.warnings(),
        }
    }
}

impl Serialize for MachineIdentity {
    /// `{"product", "cmid", "components": [{"k","h"}], "environment", "explicit"}`
    /// — never raw values.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("MachineIdentity", 6)?;
        st.serialize_field("product", &self.product)?;
        st.serialize_field("cmid", &self.cmid)?;
        st.serialize_field("components", &self.components)?;
        st.serialize_field("environment", self.environment())?;
        st.serialize_field("explicit", &self.explicit)?;
        st.serialize_field("binding", self.binding_label())?;
        st.end()
    }
}

/// The `--explain` view of an identity.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// Product the hashes are scoped to.
    pub product: String,
    /// The CMID.
    pub cmid: String,
    /// Kinds the CMID was derived from.
    pub cmid_from: Vec<String>,
    /// Detected environment.
    pub environment: Environment,
    /// Whether an explicit identity is in use.
    pub explicit_identity: bool,
    /// Container without explicit identity (see [`MachineIdentity::binds_host_hardware`]).
    pub binds_host_hardware: bool,
    /// Every source consulted, found or not.
    pub sources: Vec<ExplainedSource>,
    /// Operator warnings.
    pub warnings: Vec<String>,
}

/// One source in an [`Explanation`].
#[derive(Debug, Clone, Serialize)]
pub struct ExplainedSource {
    /// Kind code.
    pub kind: String,
    /// Human name.
    pub name: String,
    /// Where it reads from.
    pub location: String,
    /// Number of values found.
    pub found: usize,
    /// Their hashes.
    pub hashes: Vec<String>,
    /// The normalized raw values (only with `--show-values`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// Why something was absent or ignored.
    pub notes: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "product:     {}", self.product)?;
        writeln!(f, "CMID:        {} (from {})", self.cmid, self.cmid_from.join(" + "))?;
        writeln!(f, "environment: {}", self.environment)?;
        for e in &self.environment.evidence {
            writeln!(f, "             - {e}")?;
        }
        writeln!(f, "sources:")?;
        for s in &self.sources {
            let status = if s.found == 0 { "absent".to_string() } else { format!("found {}", s.found) };
            writeln!(f, "  [{}] {:<7} {} ({})", s.kind, status, s.name, s.location)?;
            if let Some(values) = &s.values {
                for (v, h) in values.iter().zip(&s.hashes) {
                    writeln!(f, "        {v}  ->  {h}")?;
                }
            }
            for n in &s.notes {
                writeln!(f, "        note: {n}")?;
            }
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}
