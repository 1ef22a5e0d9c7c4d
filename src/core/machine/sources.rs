//! Component sources. Each source is a small type behind [`ComponentSource`];
//! the Linux ones read everything relative to a system root so tests can
//! build fake `/etc`, `/proc`, `/sys` and `/dev` trees.
//!
//! A missing or unreadable source is simply absent: sources never fail, they
//! return no values and (for `--explain`) a note saying why.

use super::kinds::{self, normalize};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

/// What a source read: zero or more raw (not yet normalized) values, and
/// human notes for `--explain` (never containing identifier values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawReading {
    /// Raw values, in the order read.
    pub values: Vec<String>,
    /// Why something was absent or skipped.
    pub notes: Vec<String>,
}

/// One source of identity components.
pub trait ComponentSource {
    /// The short kind code of the components this source yields (e.g. `mac`).
    fn kind(&self) -> &'static str;
    /// A human name, e.g. "MAC addresses of physical network interfaces".
    fn name(&self) -> &'static str;
    /// Where the values come from, e.g. `/etc/machine-id`.
    fn location(&self) -> &'static str;
    /// Reads the raw values. `root` is the system root (`/` normally); sources
    /// that do not read files (Windows registry, macOS ioreg) ignore it.
    fn read(&self, root: &Path) -> RawReading;
}

/// A file's bytes, or the kind and text of the error reading it.
type Read = Result<Vec<u8>, (io::ErrorKind, String)>;

thread_local! {
    /// The files read during one identification ([`with_read_memo`]).
    static MEMO: RefCell<Option<HashMap<PathBuf, Read>>> = const { RefCell::new(None) };
}

/// Runs `f` with every file it reads through [`read_file`] read once: the
/// environment detection and the sources read `/proc/cpuinfo`,
/// `/proc/self/mountinfo` and DMI files in turn, and the kernel writes a
/// `/proc` file anew for every read (`/proc/cpuinfo` costs tens of
/// microseconds). The memo lives only for `f`: a later identification
/// (a long-running agent) reads the machine again.
pub(crate) fn with_read_memo<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            MEMO.with(|m| *m.borrow_mut() = None);
        }
    }
    MEMO.with(|m| *m.borrow_mut() = Some(HashMap::new()));
    let _reset = Reset;
    f()
}

/// Reads a whole file (through the memo of [`with_read_memo`] when one is
/// active) in 8 KB reads until one returns nothing: `open`, `read`, `read`,
/// `close` for a sysfs or `/proc` file (which report size 0). Not
/// `read_to_end`, which first asks the file for its size and position (two
/// more system calls a file, a dozen files an identification).
fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let read = || -> Read {
        let whole = || -> io::Result<Vec<u8>> {
            let mut f = fs::File::open(path)?;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                match f.read(&mut chunk) {
                    Ok(0) => return Ok(buf),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        };
        whole().map_err(|e| (e.kind(), e.to_string()))
    };
    let r = MEMO.with(|m| match m.borrow_mut().as_mut() {
        Some(memo) => memo.entry(path.to_path_buf()).or_insert_with(read).clone(),
        None => read(),
    });
    r.map_err(|(kind, text)| io::Error::new(kind, text))
}

/// Reads a text file, `None` on any error.
pub(crate) fn read_text(path: &Path) -> Option<String> {
    read_file(path).ok().and_then(|b| String::from_utf8(b).ok())
}

/// Reads a text file under `root`, recording a note when it exists but can't
/// be read (permission denied, not UTF-8, not a file).
fn read_noted(root: &Path, rel: &str, notes: &mut Vec<String>) -> Option<String> {
    match read_file(&root.join(rel)) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Some(s),
            Err(_) => {
                notes.push(format!("/{rel}: not valid text"));
                None
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            notes.push(format!("/{rel}: permission denied (readable by root only)"));
            None
        }
        Err(e) => {
            notes.push(format!("/{rel}: unreadable ({e})"));
            None
        }
    }
}

/// Sorted entry names of a directory (empty if unreadable).
fn dir_names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(path)
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether a path exists as anything, including a dangling symlink.
fn present(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// The final component of a symlink's target (`../../sda2` -> `sda2`).
fn link_target_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    target.file_name()?.to_str().map(str::to_string)
}

// ---------------------------------------------------------------------------
// machine-id

/// `/etc/machine-id`, falling back to `/var/lib/dbus/machine-id`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineIdSource;

impl ComponentSource for MachineIdSource {
    fn kind(&self) -> &'static str {
        kinds::MACHINE_ID
    }
    fn name(&self) -> &'static str {
        "OS installation id (machine-id)"
    }
    fn location(&self) -> &'static str {
        "/etc/machine-id, /var/lib/dbus/machine-id"
    }
    fn read(&self, root: &Path) -> RawReading {
        let mut r = RawReading::default();
        for rel in ["etc/machine-id", "var/lib/dbus/machine-id"] {
            if let Some(v) = read_noted(root, rel, &mut r.notes) {
                match normalize(kinds::MACHINE_ID, &v) {
                    Ok(_) => {
                        r.values.push(v);
                        return r;
                    }
                    Err(why) => r.notes.push(format!("/{rel}: {}", why.describe())),
                }
            }
        }
        r
    }
}

// ---------------------------------------------------------------------------
// DMI

/// One file under `/sys/class/dmi/id/`.
#[derive(Debug, Clone, Copy)]
pub struct DmiSource {
    kind: &'static str,
    file: &'static str,
    name: &'static str,
    location: &'static str,
}

impl DmiSource {
    /// DMI product UUID (`product_uuid`).
    pub const PRODUCT_UUID: DmiSource = DmiSource {
        kind: kinds::DMI_UUID,
        file: "product_uuid",
        name: "DMI product UUID",
        location: "/sys/class/dmi/id/product_uuid",
    };
    /// DMI product serial (`product_serial`).
    pub const PRODUCT_SERIAL: DmiSource = DmiSource {
        kind: kinds::PRODUCT_SERIAL,
        file: "product_serial",
        name: "DMI product serial number",
        location: "/sys/class/dmi/id/product_serial",
    };
    /// DMI board serial (`board_serial`).
    pub const BOARD_SERIAL: DmiSource = DmiSource {
        kind: kinds::BOARD_SERIAL,
        file: "board_serial",
        name: "DMI baseboard serial number",
        location: "/sys/class/dmi/id/board_serial",
    };
    /// DMI chassis serial (`chassis_serial`).
    pub const CHASSIS_SERIAL: DmiSource = DmiSource {
        kind: kinds::CHASSIS_SERIAL,
        file: "chassis_serial",
        name: "DMI chassis serial number",
        location: "/sys/class/dmi/id/chassis_serial",
    };
}

impl ComponentSource for DmiSource {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn location(&self) -> &'static str {
        self.location
    }
    fn read(&self, root: &Path) -> RawReading {
        let mut r = RawReading::default();
        let rel = format!("sys/class/dmi/id/{}", self.file);
        if let Some(v) = read_noted(root, &rel, &mut r.notes) {
            r.values.push(v);
        }
        r
    }
}

// ---------------------------------------------------------------------------
// MAC addresses

/// Interface name prefixes that are always virtual, even if a `device` link
/// somehow exists.
const VIRTUAL_PREFIXES: &[&str] = &[
    "lo", "docker", "veth", "virbr", "br-", "vnet", "tap", "tun", "cni", "flannel", "cali", "weave", "vxlan", "podman",
    "lxc", "zt", "wg",
];

/// MAC addresses of physical NICs under `/sys/class/net`.
///
/// An interface counts when it has a `device` link (virtual interfaces —
/// bridges, veth, docker, tun/tap, bonds themselves — have none), is not a
/// bridge, is Ethernet-like (`type` 1) and its address was not randomly
/// assigned (`addr_assign_type` 1). A bond slave reports the bond's MAC in
/// `address`, so its permanent address (`bonding_slave/perm_hwaddr`) is used
/// instead. Locally administered and multicast MACs are dropped during
/// normalization; duplicates are counted once.
#[derive(Debug, Clone, Copy, Default)]
pub struct MacSource;

impl ComponentSource for MacSource {
    fn kind(&self) -> &'static str {
        kinds::MAC
    }
    fn name(&self) -> &'static str {
        "MAC addresses of physical network interfaces"
    }
    fn location(&self) -> &'static str {
        "/sys/class/net/*/address"
    }
    fn read(&self, root: &Path) -> RawReading {
        let mut r = RawReading::default();
        let net = root.join("sys/class/net");
        let mut skipped = Vec::new();
        for name in dir_names(&net) {
            let dir = net.join(&name);
            let virtual_name = name == "lo" || VIRTUAL_PREFIXES.iter().any(|p| name.starts_with(p));
            // Cheapest test first: the name, then two `lstat`s, and only
            // then a read of `type` (a sysfs read costs ~10 µs, an `lstat`
            // ~1 µs), so the loopback and a host's dozens of veth and
            // bridge interfaces cost no read at all. The verdict is the
            // same whichever order the tests are made in.
            let not_ether = || read_text(&dir.join("type")).is_some_and(|t| t.trim() != "1");
            if virtual_name || !present(&dir.join("device")) || present(&dir.join("bridge")) || not_ether() {
                skipped.push(name);
                continue;
            }
            if read_text(&dir.join("addr_assign_type")).is_some_and(|t| t.trim() == "1") {
                r.notes.push(format!("{name}: randomly assigned MAC, ignored"));
                continue;
            }
            let perm = read_text(&dir.join("bonding_slave/perm_hwaddr"));
            match perm.or_else(|| read_text(&dir.join("address"))) {
                Some(v) => r.values.push(v),
                None => r.notes.push(format!("{name}: address unreadable")),
            }
        }
        if !skipped.is_empty() {
            r.notes.push(format!("virtual interfaces ignored: {}", skipped.join(", ")));
        }
        r
    }
}

// ---------------------------------------------------------------------------
// Root file system and its disk

/// The root entry of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootMount {
    pub major_minor: String,
    pub fstype: String,
    pub source: String,
}

/// Parses the (last, i.e. top-most) `/` mount from mountinfo text.
pub(crate) fn root_mount(mountinfo: &str) -> Option<RootMount> {
    let mut found = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < 5 || sep < 5 || fields.len() < sep + 3 || fields[4] != "/" {
            continue;
        }
        found = Some(RootMount {
            major_minor: fields[2].to_string(),
            fstype: fields[sep + 1].to_string(),
            source: fields[sep + 2].to_string(),
        });
    }
    found
}

/// File system types whose root is not a block device.
const NON_BLOCK_FS: &[&str] =
    &["overlay", "aufs", "tmpfs", "ramfs", "rootfs", "nfs", "nfs4", "cifs", "9p", "virtiofs", "fuse"];

/// Resolves `/dev/...` (possibly a symlink such as `/dev/mapper/x` or
/// `/dev/disk/by-uuid/...`) to a kernel block device name.
fn dev_name(root: &Path, dev: &str) -> Option<String> {
    let rel = dev.strip_prefix("/dev/")?;
    if rel == "root" || rel.is_empty() {
        return None;
    }
    let p = root.join("dev").join(rel);
    link_target_name(&p).or_else(|| Path::new(rel).file_name()?.to_str().map(str::to_string))
}

/// The kernel name of the block device holding `/` (e.g. `nvme0n1p2`,
/// `dm-0`), and the fstab fallback's UUID if that is all there is.
fn root_device(root: &Path, notes: &mut Vec<String>) -> (Option<String>, Option<String>) {
    let mut mountinfo_says_no_block = false;
    if let Some(mi) = read_noted(root, "proc/self/mountinfo", notes) {
        match root_mount(&mi) {
            Some(m) if NON_BLOCK_FS.contains(&m.fstype.as_str()) || !m.source.starts_with("/dev/") => {
                notes.push(format!("root file system is {} (no block device)", m.fstype));
                mountinfo_says_no_block = true;
            }
            Some(m) => {
                let by_majmin = link_target_name(&root.join("sys/dev/block").join(&m.major_minor));
                if let Some(name) = by_majmin.or_else(|| dev_name(root, &m.source)) {
                    return (Some(name), None);
                }
            }
            None => notes.push("/proc/self/mountinfo: no root mount".into()),
        }
    }
    if mountinfo_says_no_block {
        return (None, None);
    }
    // Fallback: /etc/fstab.
    if let Some(fstab) = read_noted(root, "etc/fstab", notes) {
        for line in fstab.lines() {
            let line = line.split('#').next().unwrap_or("");
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 2 || f[1] != "/" {
                continue;
            }
            if let Some(u) = f[0].strip_prefix("UUID=") {
                let u = u.trim_matches('"');
                let dev = link_target_name(&root.join("dev/disk/by-uuid").join(u));
                return (dev, Some(u.to_string()));
            }
            if let Some(u) = f[0].strip_prefix("/dev/disk/by-uuid/") {
                let dev = link_target_name(&root.join("dev/disk/by-uuid").join(u));
                return (dev, Some(u.to_string()));
            }
            return (dev_name(root, f[0]), None);
        }
    }
    (None, None)
}

/// Finds the UUID of device `name` via `/dev/disk/by-uuid` symlinks.
fn uuid_of(root: &Path, name: &str) -> Option<String> {
    let dir = root.join("dev/disk/by-uuid");
    dir_names(&dir).into_iter().find(|u| link_target_name(&dir.join(u)).as_deref() == Some(name))
}

/// The root file system's UUID (from `/proc/self/mountinfo` or `/etc/fstab`,
/// mapped through `/dev/disk/by-uuid`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RootFsSource;

impl ComponentSource for RootFsSource {
    fn kind(&self) -> &'static str {
        kinds::ROOT_FS
    }
    fn name(&self) -> &'static str {
        "root file system UUID"
    }
    fn location(&self) -> &'static str {
        "/proc/self/mountinfo or /etc/fstab, /dev/disk/by-uuid"
    }
    fn read(&self, root: &Path) -> RawReading {
        let mut r = RawReading::default();
        let (dev, fstab_uuid) = root_device(root, &mut r.notes);
        if let Some(u) = dev.as_deref().and_then(|d| uuid_of(root, d)).or(fstab_uuid) {
            r.values.push(u);
        } else if dev.is_some() {
            r.notes.push("root device has no entry in /dev/disk/by-uuid".into());
        }
        r
    }
}

/// The whole disk under block device `name`: a partition's parent, and for
/// device-mapper / md devices the first underlying device (`slaves`).
fn whole_disk(root: &Path, name: &str, depth: u32) -> Option<String> {
    if depth > 8 {
        return None;
    }
    let block = root.join("sys/block");
    if present(&block.join(name)) {
        let slaves = dir_names(&block.join(name).join("slaves"));
        return match slaves.first() {
            Some(s) => whole_disk(root, s, depth + 1),
            None => Some(name.to_string()),
        };
    }
    // A partition: sysfs lists it as a subdirectory of its disk.
    dir_names(&block)
        .into_iter()
        .find(|d| present(&block.join(d).join(name)))
        .and_then(|d| whole_disk(root, &d, depth + 1))
}

/// `/dev/disk/by-id` prefixes, most preferred first (model + serial names
/// before WWNs).
const BY_ID_PREFERENCE: &[&str] = &["ata-", "nvme-", "scsi-", "virtio-", "mmc-", "usb-", "wwn-"];

/// The serial number (or WWID) of the disk holding `/`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskSerialSource;

impl ComponentSource for DiskSerialSource {
    fn kind(&self) -> &'static str {
        kinds::DISK_SERIAL
    }
    fn name(&self) -> &'static str {
        "serial number of the root disk"
    }
    fn location(&self) -> &'static str {
        "/sys/block/<disk>/device/serial or wwid, /dev/disk/by-id"
    }
    fn read(&self, root: &Path) -> RawReading {
        let mut r = RawReading::default();
        let (dev, _) = root_device(root, &mut Vec::new());
        let Some(dev) = dev else {
            r.notes.push("root block device not found".into());
            return r;
        };
        let Some(disk) = whole_disk(root, &dev, 0) else {
            r.notes.push("root disk not found in /sys/block".into());
            return r;
        };
        for f in ["device/serial", "serial", "device/wwid", "wwid"] {
            let rel = format!("sys/block/{disk}/{f}");
            if let Some(v) = read_noted(root, &rel, &mut r.notes) {
                if normalize(kinds::DISK_SERIAL, &v).is_ok() {
                    r.values.push(v);
                    return r;
                }
                r.notes.push(format!("/{rel}: placeholder or malformed"));
            }
        }
        let by_id = root.join("dev/disk/by-id");
        let mut candidates: Vec<(usize, String)> = dir_names(&by_id)
            .into_iter()
            .filter(|n| !n.contains("-part"))
            .filter(|n| link_target_name(&by_id.join(n)).as_deref() == Some(disk.as_str()))
            .filter_map(|n| BY_ID_PREFERENCE.iter().position(|p| n.starts_with(p)).map(|rank| (rank, n)))
            .collect();
        candidates.sort();
        match candidates.into_iter().next() {
            Some((_, n)) => r.values.push(n),
            None => r.notes.push(format!("no serial found for disk {disk}")),
        }
        r
    }
}

// ---------------------------------------------------------------------------
// CPU

/// The CPU model string (`model name` in `/proc/cpuinfo`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuModelSource;

impl ComponentSource for CpuModelSource {
    fn kind(&self) -> &'static str {
        kinds::CPU_MODEL
    }
    fn name(&self) -> &'static str {
        "CPU model"
    }
    fn location(&self) -> &'static str {
        "/proc/cpuinfo"
    }
    fn read(&self, root: &Path) -> RawReading {
        let mut r = RawReading::default();
        if let Some(ci) = read_noted(root, "proc/cpuinfo", &mut r.notes) {
            let model = ci.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.to_string())
            });
            match model {
                Some(m) => r.values.push(m),
                None => r.notes.push("/proc/cpuinfo has no \"model name\"".into()),
            }
        }
        r
    }
}

// ---------------------------------------------------------------------------

/// The Linux sources in priority order.
pub fn linux_sources() -> Vec<Box<dyn ComponentSource>> {
    vec![
        Box::new(MachineIdSource),
        Box::new(DmiSource::PRODUCT_UUID),
        Box::new(DmiSource::PRODUCT_SERIAL),
        Box::new(DmiSource::BOARD_SERIAL),
        Box::new(DmiSource::CHASSIS_SERIAL),
        Box::new(MacSource),
        Box::new(RootFsSource),
        Box::new(DiskSerialSource),
        Box::new(CpuModelSource),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_root() {
        let mi = "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n\
                  30 22 0:5 / /dev rw - devtmpfs udev rw\n";
        let m = root_mount(mi).unwrap();
        assert_eq!(m.major_minor, "259:2");
        assert_eq!(m.fstype, "ext4");
        assert_eq!(m.source, "/dev/nvme0n1p2");
        let overlay = "500 400 0:50 / / rw - overlay overlay rw,lowerdir=/a\n";
        assert_eq!(root_mount(overlay).unwrap().fstype, "overlay");
        assert!(root_mount("garbage\n\n1 2 3\n").is_none());
    }

    /// An interface the name, the missing `device` link or the `bridge`
    /// directory already marks as virtual is skipped without reading its
    /// `type`: only a candidate NIC's attributes are read.
    #[test]
    fn virtual_interfaces_are_skipped_without_reading_their_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("sys/class/net");
        for (name, device, bridge) in [
            ("lo", false, false),
            ("veth0", true, false),
            ("ifb0", false, false),
            ("br9", true, true),
            ("eth0", true, false),
        ] {
            let d = net.join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("type"), "1\n").unwrap();
            fs::write(d.join("addr_assign_type"), "0\n").unwrap();
            fs::write(d.join("address"), "00:1b:21:aa:bb:cc\n").unwrap();
            if device {
                fs::create_dir(d.join("device")).unwrap();
            }
            if bridge {
                fs::create_dir(d.join("bridge")).unwrap();
            }
        }
        let (reading, read) = with_read_memo(|| {
            let reading = MacSource.read(dir.path());
            let mut read: Vec<String> = MEMO.with(|m| {
                let memo = m.borrow();
                let paths = memo.as_ref().unwrap().keys();
                paths.map(|p| p.strip_prefix(&net).unwrap().display().to_string()).collect()
            });
            read.sort();
            (reading, read)
        });
        assert_eq!(reading.values, ["00:1b:21:aa:bb:cc\n"]);
        assert_eq!(
            read,
            ["eth0/addr_assign_type", "eth0/address", "eth0/bonding_slave/perm_hwaddr", "eth0/type"],
            "only the physical NIC's attributes are read"
        );
        assert!(reading.notes.contains(&"virtual interfaces ignored: br9, ifb0, lo, veth0".to_string()));
    }

    /// Within one identification a file is read once (the sources and the
    /// environment detection see the same bytes); after it, the machine is
    /// read anew; an error is remembered with its kind and text.
    #[test]
    fn the_read_memo_reads_a_file_once_per_identification() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cpuinfo");
        fs::write(&f, "model name : A\n").unwrap();
        let missing = dir.path().join("absent");
        let (first, second, gone) = with_read_memo(|| {
            let first = read_text(&f);
            fs::write(&f, "model name : B\n").unwrap();
            let gone = read_file(&missing).unwrap_err();
            fs::write(&missing, "now here").unwrap();
            (first, read_text(&f), (gone.kind(), read_file(&missing).unwrap_err().kind()))
        });
        assert_eq!(first.as_deref(), Some("model name : A\n"));
        assert_eq!(second, first, "read once within the memo");
        assert_eq!(gone, (io::ErrorKind::NotFound, io::ErrorKind::NotFound));
        assert_eq!(read_text(&f).as_deref(), Some("model name : B\n"), "read anew after it");
        assert_eq!(read_text(&missing).as_deref(), Some("now here"));
    }
}
