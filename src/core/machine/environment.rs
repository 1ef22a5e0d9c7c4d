//! Detection of containers and virtual machines (Linux, relative to a sysroot).

use super::sources::read_text;
use serde::Serialize;
use std::fmt;
use std::path::Path;

/// What kind of system the identity was read on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// The container runtime if running in a container (`docker`, `podman`,
    /// `kubernetes`, `lxc`, `containerd`, `systemd-nspawn`, or
    /// `unknown (overlay root)`).
    pub container: Option<String>,
    /// The hypervisor if running in a VM (`QEMU`, `KVM`, `VMware`,
    /// `VirtualBox`, `Xen`, `Microsoft Hyper-V`, `Amazon EC2`,
    /// `Google Compute Engine`, ..., or `unknown` when only the CPU's
    /// `hypervisor` flag says so).
    pub hypervisor: Option<String>,
    /// The evidence found, for `--explain` (paths and markers, no identifiers).
    pub evidence: Vec<String>,
}

impl Environment {
    /// `container`, `vm` or `bare-metal` (a container takes precedence: it
    /// is what decides which identity sources are meaningful).
    pub fn kind(&self) -> &'static str {
        if self.container.is_some() {
            "container"
        } else if self.hypervisor.is_some() {
            "vm"
        } else {
            "bare-metal"
        }
    }
    /// Whether a container was detected.
    pub fn is_container(&self) -> bool {
        self.container.is_some()
    }
    /// Whether a hypervisor was detected.
    pub fn is_vm(&self) -> bool {
        self.hypervisor.is_some()
    }
}

impl Serialize for Environment {
    /// `{"kind": "container"|"vm"|"bare-metal", "container", "hypervisor", "evidence"}`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Environment", 4)?;
        st.serialize_field("kind", self.kind())?;
        st.serialize_field("container", &self.container)?;
        st.serialize_field("hypervisor", &self.hypervisor)?;
        st.serialize_field("evidence", &self.evidence)?;
        st.end()
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.container, &self.hypervisor) {
            (Some(c), Some(h)) => write!(f, "container ({c}) in a virtual machine ({h})"),
            (Some(c), None) => write!(f, "container ({c})"),
            (None, Some(h)) => write!(f, "virtual machine ({h})"),
            (None, None) => f.write_str("bare metal (no container or hypervisor detected)"),
        }
    }
}

/// DMI vendor/product substrings (lowercase) and the hypervisor they name.
const DMI_HYPERVISORS: &[(&str, &str)] = &[
    ("amazon ec2", "Amazon EC2"),
    ("google compute engine", "Google Compute Engine"),
    ("vmware", "VMware"),
    ("virtualbox", "VirtualBox"),
    ("innotek", "VirtualBox"),
    ("qemu", "QEMU"),
    ("kvm", "KVM"),
    ("bochs", "Bochs"),
    ("xen", "Xen"),
    ("parallels", "Parallels"),
    ("openstack", "OpenStack"),
    ("digitalocean", "DigitalOcean"),
    ("bhyve", "bhyve"),
    ("apple virtualization", "Apple Virtualization"),
];

/// Detects container and hypervisor markers under `root`.
pub fn detect(root: &Path) -> Environment {
    let mut env = Environment::default();
    detect_container(root, &mut env);
    detect_hypervisor(root, &mut env);
    env
}

fn detect_container(root: &Path, env: &mut Environment) {
    let set = |env: &mut Environment, what: &str, evidence: String| {
        if env.container.is_none() {
            env.container = Some(what.to_string());
        }
        env.evidence.push(evidence);
    };
    if root.join(".dockerenv").exists() {
        set(env, "docker", "/.dockerenv exists".into());
    }
    if root.join("run/.containerenv").exists() {
        set(env, "podman", "/run/.containerenv exists".into());
    }
    if let Some(c) = read_text(&root.join("run/systemd/container")) {
        let c = c.trim();
        if !c.is_empty() {
            set(env, c, format!("/run/systemd/container says {c:?}"));
        }
    }
    if let Some(cg) = read_text(&root.join("proc/1/cgroup")) {
        let cg = cg.to_lowercase();
        for (marker, what) in [
            ("kubepods", "kubernetes"),
            ("docker", "docker"),
            ("libpod", "podman"),
            ("lxc", "lxc"),
            ("containerd", "containerd"),
        ] {
            if cg.contains(marker) {
                set(env, what, format!("/proc/1/cgroup mentions {marker:?}"));
                break;
            }
        }
    }
    if let Some(mi) = read_text(&root.join("proc/self/mountinfo")) {
        if let Some(m) = super::sources::root_mount(&mi) {
            if m.fstype == "overlay" || m.fstype == "aufs" {
                set(env, "unknown (overlay root)", format!("root file system is {}", m.fstype));
            }
        }
    }
}

/// Whether `text` contains `phrase` as whole words (so `xen` doesn't match
/// `xenon`).
fn contains_words(text: &str, phrase: &str) -> bool {
    let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let want: Vec<&str> = phrase.split(' ').collect();
    words.windows(want.len()).any(|w| w == want.as_slice())
}

fn detect_hypervisor(root: &Path, env: &mut Environment) {
    let dmi = root.join("sys/class/dmi/id");
    let mut text = String::new();
    for f in ["sys_vendor", "product_name", "board_vendor", "bios_vendor", "product_version"] {
        if let Some(v) = read_text(&dmi.join(f)) {
            text.push_str(&v.to_lowercase());
            text.push('\n');
        }
    }
    let sys_vendor = read_text(&dmi.join("sys_vendor")).unwrap_or_default().to_lowercase();
    let product = read_text(&dmi.join("product_name")).unwrap_or_default().to_lowercase();
    if sys_vendor.contains("microsoft") && product.contains("virtual machine") {
        env.hypervisor = Some("Microsoft Hyper-V".into());
        env.evidence.push("DMI: Microsoft Virtual Machine".into());
    } else if let Some((m, name)) = DMI_HYPERVISORS.iter().find(|(m, _)| contains_words(&text, m)) {
        env.hypervisor = Some((*name).to_string());
        env.evidence.push(format!("DMI vendor/product strings mention {m:?}"));
    }
    if env.hypervisor.is_none() {
        if let Some(t) = read_text(&root.join("sys/hypervisor/type")) {
            let t = t.trim();
            if !t.is_empty() {
                env.hypervisor = Some(if t == "xen" { "Xen".into() } else { t.to_string() });
                env.evidence.push(format!("/sys/hypervisor/type is {t:?}"));
            }
        }
    }
    if let Some(ci) = read_text(&root.join("proc/cpuinfo")) {
        let flagged = ci.lines().any(|l| {
            let mut kv = l.splitn(2, ':');
            let k = kv.next().unwrap_or("").trim();
            (k == "flags" || k == "Features") && kv.next().unwrap_or("").split_whitespace().any(|f| f == "hypervisor")
        });
        if flagged {
            env.evidence.push("CPU has the hypervisor flag".into());
            if env.hypervisor.is_none() {
                env.hypervisor = Some("unknown".into());
            }
        }
    }
}
