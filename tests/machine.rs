//! Machine identity: sources read from fake system roots, normalization,
//! hashing (golden vector), the CMID, matching rules, containers and VMs.
//! Nothing here reads the real machine's hardware.

mod tools;
use std::fs;
use std::path::Path;
use tempfile::TempDir;
use tka::machine::{
    default_rule_for, hash_component, kinds, normalize_cmid, validate_cmid, ComponentHash, IdentifyOptions,
    MachineError, MachineIdentity, MatchRule,
};

const PRODUCT: &str = "acme-cad";
const MID: &str = "4c4c4544004d3510804bb4c04f4e3332";
const DMI_UUID: &str = "4C4C4544-004D-3510-804B-B4C04F4E3332";
const ROOT_UUID: &str = "0b7f3c1e-5a2d-4f7e-9c11-2d3e4f5a6b7c";
const MAC1: &str = "3C:52:82:11:22:33";
const MAC2: &str = "00:1b:21:aa:bb:cc";
const CPU: &str = "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz";

// ---------------------------------------------------------------------------
// Fake system roots

struct Root {
    dir: TempDir,
}

impl Root {
    fn new() -> Self {
        Root { dir: tempfile::tempdir().unwrap() }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn file(&self, rel: &str, content: &str) -> &Self {
        let p = self.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
        self
    }
    fn mkdir(&self, rel: &str) -> &Self {
        fs::create_dir_all(self.path().join(rel)).unwrap();
        self
    }
    fn link(&self, target: &str, rel: &str) -> &Self {
        let p = self.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
        self
    }
    fn remove(&self, rel: &str) -> &Self {
        let p = self.path().join(rel);
        if p.is_dir() {
            fs::remove_dir_all(p).unwrap();
        } else {
            fs::remove_file(p).unwrap();
        }
        self
    }
    /// A physical NIC: has a `device` link, type 1, permanent address.
    fn nic(&self, name: &str, mac: &str) -> &Self {
        let d = format!("sys/class/net/{name}");
        self.file(&format!("{d}/address"), &format!("{mac}\n"))
            .file(&format!("{d}/type"), "1\n")
            .file(&format!("{d}/addr_assign_type"), "0\n")
            .link("../../../devices/pci0000:00/0000:00:1f.6", &format!("{d}/device"))
    }
    /// A virtual interface: no `device` link.
    fn virtual_nic(&self, name: &str, mac: &str) -> &Self {
        let d = format!("sys/class/net/{name}");
        self.file(&format!("{d}/address"), &format!("{mac}\n")).file(&format!("{d}/type"), "1\n")
    }
    fn opts(&self) -> IdentifyOptions {
        IdentifyOptions { sysroot: Some(self.path().to_path_buf()), ..Default::default() }
    }
    fn identify(&self) -> Result<MachineIdentity, MachineError> {
        MachineIdentity::identify(PRODUCT, &self.opts())
    }
}

fn mountinfo_root(dev: &str, majmin: &str, fstype: &str) -> String {
    format!(
        "25 1 {majmin} / / rw,relatime shared:1 - {fstype} {dev} rw,errors=remount-ro\n\
         26 25 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw\n\
         27 25 0:22 / /sys rw shared:7 - sysfs sysfs rw\n"
    )
}

/// A complete bare-metal machine on NVMe, with virtual interfaces that must be ignored.
fn bare_metal() -> Root {
    let r = Root::new();
    r.file("etc/machine-id", &format!("{MID}\n"))
        .file("sys/class/dmi/id/product_uuid", &format!("{DMI_UUID}\n"))
        .file("sys/class/dmi/id/product_serial", "5CD1234XYZ\n")
        .file("sys/class/dmi/id/board_serial", "/7XJ2Q3/CNFCW0012300AB/\n")
        .file("sys/class/dmi/id/chassis_serial", "To be filled by O.E.M.\n")
        .file("sys/class/dmi/id/sys_vendor", "Dell Inc.\n")
        .file("sys/class/dmi/id/product_name", "OptiPlex 7060\n")
        .nic("enp0s31f6", MAC1)
        .nic("enp3s0", MAC2)
        .virtual_nic("lo", "00:00:00:00:00:00")
        .virtual_nic("docker0", "02:42:5f:aa:bb:cc")
        .virtual_nic("veth1a2b3c", "1e:2f:3a:4b:5c:6d")
        .virtual_nic("br0", "52:54:00:12:34:56")
        .mkdir("sys/class/net/br0/bridge")
        .file("proc/self/mountinfo", &mountinfo_root("/dev/nvme0n1p2", "259:2", "ext4"))
        .link("../../devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1/nvme0n1p2", "sys/dev/block/259:2")
        .link("../../nvme0n1p2", &format!("dev/disk/by-uuid/{ROOT_UUID}"))
        .link("../../nvme0n1p1", "dev/disk/by-uuid/ABCD-1234")
        .mkdir("sys/block/nvme0n1/nvme0n1p2")
        .mkdir("sys/block/nvme0n1/nvme0n1p1")
        .file("sys/block/nvme0n1/device/serial", "S4EWNX0R123456      \n")
        .file(
            "proc/cpuinfo",
            &format!(
                "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: {CPU}\nflags\t\t: fpu vme sse2\n\n\
                 processor\t: 1\nmodel name\t: {CPU}\n"
            ),
        );
    r
}

fn kinds_of(id: &MachineIdentity) -> Vec<&str> {
    id.components().iter().map(|c| c.kind.as_str()).collect()
}

fn hash_of(kind: &str, value: &str) -> ComponentHash {
    ComponentHash { kind: kind.into(), hash: hash_component(PRODUCT, kind, value) }
}

fn raw(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

// ---------------------------------------------------------------------------
// Sources

#[test]
fn bare_metal_finds_every_source() {
    let id = bare_metal().identify().unwrap();
    assert_eq!(kinds_of(&id), ["mid", "dmi", "psn", "bsn", "mac", "mac", "rfs", "dsk", "cpu"]);
    assert_eq!(id.environment().kind(), "bare-metal");
    assert!(!id.binds_host_hardware());
    assert!(!id.is_explicit());
    let expected = [
        hash_of("mid", MID),
        hash_of("dmi", &DMI_UUID.to_lowercase()),
        hash_of("psn", "5cd1234xyz"),
        hash_of("bsn", "/7xj2q3/cnfcw0012300ab/"),
        hash_of("mac", &MAC1.to_lowercase()),
        hash_of("mac", MAC2),
        hash_of("rfs", ROOT_UUID),
        hash_of("dsk", "s4ewnx0r123456"),
        hash_of("cpu", &CPU.to_lowercase()),
    ];
    for e in &expected {
        assert!(id.components().contains(e), "missing {e:?}");
    }
}

#[test]
fn machine_id_falls_back_to_dbus_and_rejects_bad_values() {
    let r = Root::new();
    r.file("var/lib/dbus/machine-id", &format!("{MID}\n"));
    let id = r.identify().unwrap();
    assert_eq!(id.components(), &[hash_of("mid", MID)]);

    // An unusable /etc/machine-id ("uninitialized", empty) also falls back.
    r.file("etc/machine-id", "uninitialized\n");
    assert_eq!(r.identify().unwrap().components(), &[hash_of("mid", MID)]);
    r.file("etc/machine-id", "\n");
    assert_eq!(r.identify().unwrap().components(), &[hash_of("mid", MID)]);

    // Both bad: absent, and nothing else -> NoComponents.
    r.file("var/lib/dbus/machine-id", "00000000000000000000000000000000\n");
    assert_eq!(r.identify().unwrap_err(), MachineError::NoComponents);

    // Upper case is normalized.
    let r2 = Root::new();
    r2.file("etc/machine-id", &MID.to_uppercase());
    assert_eq!(r2.identify().unwrap().components(), &[hash_of("mid", MID)]);
}

#[test]
fn each_dmi_source_is_read_and_placeholders_are_absent() {
    for (file, kind) in
        [("product_uuid", "dmi"), ("product_serial", "psn"), ("board_serial", "bsn"), ("chassis_serial", "csn")]
    {
        let r = Root::new();
        r.file(&format!("sys/class/dmi/id/{file}"), "  ABC-12345-Q \n");
        let id = r.identify().unwrap();
        assert_eq!(id.components(), &[hash_of(kind, "abc-12345-q")], "{file}");

        for placeholder in [
            "To be filled by O.E.M.",
            "TO BE FILLED BY O.E.M.",
            "Default string",
            "None",
            "Not Specified",
            "System Serial Number",
            "0123456789",
            "00000000-0000-0000-0000-000000000000",
            "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
            "",
            "   \n",
        ] {
            r.file(&format!("sys/class/dmi/id/{file}"), placeholder);
            assert_eq!(r.identify().unwrap_err(), MachineError::NoComponents, "{file}: {placeholder:?}");
        }
    }
}

#[test]
fn placeholder_dmi_values_are_dropped_but_the_rest_still_identifies() {
    let r = bare_metal();
    r.file("sys/class/dmi/id/product_serial", "Default string\n")
        .file("sys/class/dmi/id/board_serial", "Not Specified\n")
        .file("sys/class/dmi/id/product_uuid", "03000200-0400-0500-0006-000700080009\n");
    let id = r.identify().unwrap();
    assert_eq!(kinds_of(&id), ["mid", "mac", "mac", "rfs", "dsk", "cpu"]);
    let dmi = id.sources().iter().find(|s| s.kind == "dmi").unwrap();
    assert_eq!(dmi.found(), 0);
    assert_eq!(dmi.notes, ["value ignored: placeholder value"]);
}

#[test]
fn unreadable_and_malformed_files_are_absent() {
    let r = bare_metal();
    // A directory where a file should be, binary garbage, control characters.
    r.remove("sys/class/dmi/id/product_uuid")
        .mkdir("sys/class/dmi/id/product_uuid")
        .file("sys/class/dmi/id/board_serial", "\u{1}\u{2}\u{3}garbage")
        .remove("sys/class/dmi/id/product_serial");
    fs::write(r.path().join("sys/class/dmi/id/product_serial"), [0xff, 0xfe, 0x00, 0x41]).unwrap();
    r.file("proc/self/mountinfo", "this is not mountinfo\n");
    let id = r.identify().unwrap();
    // rfs and dsk fall away with the garbled mountinfo (and no fstab).
    assert_eq!(kinds_of(&id), ["mid", "mac", "mac", "cpu"]);
}

#[test]
fn macs_only_from_physical_nics() {
    let r = Root::new();
    r.nic("eth0", "00:1B:21:AA:BB:CC")
        .virtual_nic("docker0", "00:11:22:33:44:55") // no device link
        .virtual_nic("bond0", "00:1b:21:aa:bb:dd") // bond master: virtual
        .nic("wlp2s0", "DA:A1:19:00:00:01") // locally administered (random)
        .nic("enp1s0", "52:54:00:12:34:56") // QEMU/KVM: locally administered too
        .nic("enx000000", "00:00:00:00:00:00") // all zero
        .nic("eth9", "00:24:d7:01:02:03")
        .file("sys/class/net/eth9/addr_assign_type", "1\n") // randomly assigned
        .nic("ib0", "00:25:90:01:02:03")
        .file("sys/class/net/ib0/type", "32\n") // infiniband
        .nic("br-lan", "00:25:90:09:09:09")
        .mkdir("sys/class/net/br-lan/bridge")
        .nic("veth9", "00:25:90:0a:0a:0a"); // name says virtual even with a device link
    let id = r.identify().unwrap();
    assert_eq!(id.components(), &[hash_of("mac", "00:1b:21:aa:bb:cc")]);
    let mac = id.sources().iter().find(|s| s.kind == "mac").unwrap();
    assert_eq!(mac.found(), 1);
    assert!(mac.notes.iter().any(|n| n.contains("locally administered")));
    assert!(mac.notes.iter().any(|n| n == "eth9: randomly assigned MAC, ignored"));
}

#[test]
fn bond_slaves_use_their_permanent_address_and_duplicates_count_once() {
    let r = Root::new();
    // Both slaves show the bond's MAC in `address`; their permanent addresses differ.
    r.nic("eno1", "00:1b:21:aa:bb:01")
        .file("sys/class/net/eno1/bonding_slave/perm_hwaddr", "00:1b:21:aa:bb:01\n")
        .nic("eno2", "00:1b:21:aa:bb:01")
        .file("sys/class/net/eno2/bonding_slave/perm_hwaddr", "00:1b:21:aa:bb:02\n")
        .virtual_nic("bond0", "00:1b:21:aa:bb:01")
        // Same MAC seen twice (e.g. VLAN-less duplicate reporting), different case/format.
        .nic("eno3", "00-1B-21-AA-BB-03")
        .nic("eno4", "001b.21aa.bb03");
    let id = r.identify().unwrap();
    let macs: Vec<_> =
        ["00:1b:21:aa:bb:01", "00:1b:21:aa:bb:02", "00:1b:21:aa:bb:03"].iter().map(|m| hash_of("mac", m)).collect();
    assert_eq!(id.components().len(), 3);
    for m in &macs {
        assert!(id.components().contains(m));
    }
    let mac = id.sources().iter().find(|s| s.kind == "mac").unwrap();
    assert!(mac.notes.contains(&"duplicate value counted once".to_string()));
}

#[test]
fn interface_order_and_mac_case_do_not_matter() {
    let a = Root::new();
    a.file("etc/machine-id", MID).nic("eth0", "00:1b:21:aa:bb:cc").nic("eth1", "3c:52:82:11:22:33");
    let b = Root::new();
    b.file("etc/machine-id", MID).nic("enp9s0", "3C-52-82-11-22-33").nic("enp1s0", "001B21AABBCC");
    let (ia, ib) = (a.identify().unwrap(), b.identify().unwrap());
    assert_eq!(ia.components(), ib.components());
    assert_eq!(ia.cmid(), ib.cmid());
}

#[test]
fn root_fs_uuid_via_dev_root_and_major_minor() {
    let r = Root::new();
    r.file("proc/self/mountinfo", &mountinfo_root("/dev/root", "8:2", "ext4"))
        .link("../../devices/pci0000:00/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda2", "sys/dev/block/8:2")
        .link("../../sda2", &format!("dev/disk/by-uuid/{ROOT_UUID}"))
        .link("../../sda1", "dev/disk/by-uuid/1111-2222");
    let id = r.identify().unwrap();
    assert_eq!(id.components(), &[hash_of("rfs", ROOT_UUID)]);
}

#[test]
fn root_fs_uuid_via_mapper_device_and_disk_serial_through_dm_slaves() {
    let r = Root::new();
    r.file("proc/self/mountinfo", &mountinfo_root("/dev/mapper/vg0-root", "253:0", "xfs"))
        .link("../dm-0", "dev/mapper/vg0-root")
        .link("../../dm-0", &format!("dev/disk/by-uuid/{ROOT_UUID}"))
        .mkdir("sys/block/dm-0/slaves/sda3")
        .mkdir("sys/block/sda/sda3")
        .link("../../sda", "dev/disk/by-id/ata-Samsung_SSD_860_EVO_500GB_S3Z1NB0K123456X")
        .link("../../sda3", "dev/disk/by-id/ata-Samsung_SSD_860_EVO_500GB_S3Z1NB0K123456X-part3")
        .link("../../sda", "dev/disk/by-id/wwn-0x5002538e40a1b2c3");
    let id = r.identify().unwrap();
    assert_eq!(
        id.components(),
        &[hash_of("rfs", ROOT_UUID), hash_of("dsk", "ata-samsung_ssd_860_evo_500gb_s3z1nb0k123456x")]
    );
}

#[test]
fn root_fs_uuid_from_fstab_when_mountinfo_is_missing() {
    let r = Root::new();
    r.file(
        "etc/fstab",
        &format!(
            "# /etc/fstab\nUUID=ABCD-1234 /boot/efi vfat umask=0077 0 1\nUUID={} / ext4 defaults 0 1\n",
            ROOT_UUID.to_uppercase()
        ),
    );
    let id = r.identify().unwrap();
    assert_eq!(id.components(), &[hash_of("rfs", ROOT_UUID)]);
}

#[test]
fn overlay_root_has_no_root_fs_or_disk() {
    let r = Root::new();
    r.file("etc/machine-id", MID)
        .file("proc/self/mountinfo", "600 500 0:52 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/x\n")
        .file("etc/fstab", &format!("UUID={ROOT_UUID} / ext4 defaults 0 1\n"));
    let id = r.identify().unwrap();
    assert_eq!(kinds_of(&id), ["mid"]);
}

#[test]
fn disk_serial_from_sysfs_serial_wwid_and_absent() {
    // virtio disk: serial directly under /sys/block/vda.
    let r = Root::new();
    r.file("proc/self/mountinfo", &mountinfo_root("/dev/vda1", "252:1", "ext4"))
        .mkdir("sys/block/vda/vda1")
        .file("sys/block/vda/serial", "vol-0abc123def\n");
    assert_eq!(r.identify().unwrap().components(), &[hash_of("dsk", "vol-0abc123def")]);

    // SCSI wwid when there is no serial.
    r.remove("sys/block/vda/serial").file("sys/block/vda/device/wwid", "naa.600508b1001c4d3f\n");
    assert_eq!(r.identify().unwrap().components(), &[hash_of("dsk", "naa.600508b1001c4d3f")]);

    // A placeholder serial and nothing else: absent.
    r.remove("sys/block/vda/device/wwid").file("sys/block/vda/serial", "00000000\n");
    assert_eq!(r.identify().unwrap_err(), MachineError::NoComponents);
}

#[test]
fn cpu_model_is_normalized() {
    let r = Root::new();
    r.file("proc/cpuinfo", "processor : 0\nmodel name  :   AMD  Ryzen 7 5800X 8-Core Processor  \n");
    assert_eq!(r.identify().unwrap().components(), &[hash_of("cpu", "amd ryzen 7 5800x 8-core processor")]);
    r.file("proc/cpuinfo", "processor : 0\nBogoMIPS : 48.00\n");
    assert_eq!(r.identify().unwrap_err(), MachineError::NoComponents);
}

#[test]
fn no_components_is_a_clear_error() {
    let r = Root::new();
    let err = r.identify().unwrap_err();
    assert_eq!(err, MachineError::NoComponents);
    let msg = err.to_string();
    assert!(msg.contains("cannot identify this machine"), "{msg}");
    assert!(msg.contains("explicit machine-id file"), "{msg}");
    assert!(msg.contains("TKA_MACHINE_ID"), "{msg}");
    assert!(!msg.contains("--"), "the library names no flag: {msg}");
    // Only virtual interfaces and placeholders: still nothing.
    r.virtual_nic("docker0", "00:11:22:33:44:55").file("sys/class/dmi/id/product_uuid", "Not Settable");
    r.file("sys/class/dmi/id/board_serial", "None");
    assert_eq!(r.identify().unwrap_err(), MachineError::NoComponents);
    assert!(MachineIdentity::try_from_raw(PRODUCT, &raw(&[("dmi", "To be filled by O.E.M.")])).is_err());
}

// ---------------------------------------------------------------------------
// Hashing, golden vector, CMID

/// Pins the hashing and CMID derivation. The expected strings are derived
/// independently from docs/machine-identity.md by the reference verifier
/// (`tests/reference/tka_ref.py golden`), and `scripts/crosscheck-vectors.sh`
/// fails unless each is pinned here. If this fails, every machine in the
/// field would be de-activated: fix the code, not the test.
#[test]
fn golden_vector() {
    let id = MachineIdentity::from_raw(
        "example-product",
        &raw(&[
            ("mid", "0123456789abcdef0123456789abcdef"),
            ("dmi", "4C4C4544-004D-3510-804B-B4C04F4E3332"),
            ("mac", "3C:52:82:11:22:33"),
            ("cpu", "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz"),
        ]),
    );
    let got: Vec<(&str, &str)> = id.components().iter().map(|c| (c.kind.as_str(), c.hash.as_str())).collect();
    assert_eq!(
        got,
        [
            ("mid", "iHGUKDlN4o9dRPmE"),
            ("dmi", "OIbss5umQOXUA3Kb"),
            ("mac", "jKA0yP1BhZSLi8Iz"),
            ("cpu", "qBEtCwqG0wlu2z9f"),
        ]
    );
    assert_eq!(id.cmid(), "F522-JJJH-JRY0-M7DR-M");
    assert_eq!(id.cmid_kinds(), ["mid", "dmi"]);

    let xid = MachineIdentity::from_raw("example-product", &raw(&[("xid", "fleet-node-0042")]));
    assert_eq!(xid.components()[0].hash, "os_ieW6IJwBztL6n");
    assert_eq!(xid.cmid(), "VEB6-Q5BG-Y3MC-F3RG-7");
}

#[test]
fn hash_follows_the_documented_framing() {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let salt = Sha256::digest([b"tka-machine-salt-v1\0".as_slice(), b"example-product"].concat());
    let mut h = Sha256::new();
    h.update(salt);
    h.update(3u32.to_be_bytes());
    h.update(b"mac");
    h.update(17u32.to_be_bytes());
    h.update(b"3c:52:82:11:22:33");
    let expect = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h.finalize()[..12]);
    assert_eq!(hash_component("example-product", "mac", "3c:52:82:11:22:33"), expect);
    assert_eq!(expect.len(), 16);
}

#[test]
fn hashes_and_cmid_are_product_scoped() {
    let pairs = raw(&[("mid", MID), ("dmi", DMI_UUID)]);
    let a = MachineIdentity::from_raw("product-a", &pairs);
    let b = MachineIdentity::from_raw("product-b", &pairs);
    assert_ne!(a.components()[0].hash, b.components()[0].hash);
    assert_ne!(a.cmid(), b.cmid());
    assert_eq!(a.product(), "product-a");
}

#[test]
fn identify_is_stable_and_equals_from_raw() {
    let r = bare_metal();
    let a = r.identify().unwrap();
    let b = r.identify().unwrap();
    assert_eq!(a.components(), b.components());
    assert_eq!(a.cmid(), b.cmid());
    let from_raw = MachineIdentity::from_raw(
        PRODUCT,
        &raw(&[
            ("cpu", CPU),
            ("mac", MAC2),
            ("mac", MAC1),
            ("rfs", ROOT_UUID),
            ("dsk", "S4EWNX0R123456"),
            ("mid", MID),
            ("dmi", DMI_UUID),
            ("psn", "5CD1234XYZ"),
            ("bsn", "/7XJ2Q3/CNFCW0012300AB/"),
        ]),
    );
    assert_eq!(a.components(), from_raw.components());
    assert_eq!(a.cmid(), from_raw.cmid());
}

#[test]
fn cmid_uses_machine_id_and_dmi_not_macs_or_cpu() {
    let r = bare_metal();
    let before = r.identify().unwrap();
    assert_eq!(before.cmid_kinds(), ["mid", "dmi"]);
    // Swap a NIC and the CPU: same CMID.
    r.remove("sys/class/net/enp3s0").nic("enp4s0", "00:1b:21:99:99:99");
    r.file("proc/cpuinfo", "model name : Intel(R) Core(TM) i9-9900K CPU @ 3.60GHz\n");
    assert_eq!(r.identify().unwrap().cmid(), before.cmid());
    // A different motherboard (DMI UUID): different CMID.
    r.file("sys/class/dmi/id/product_uuid", "9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0");
    assert_ne!(r.identify().unwrap().cmid(), before.cmid());
}

#[test]
fn cmid_fallback_order() {
    let id = MachineIdentity::from_raw(PRODUCT, &raw(&[("bsn", "BOARD123"), ("rfs", ROOT_UUID), ("mac", MAC1)]));
    assert_eq!(id.cmid_kinds(), ["bsn"]);
    let id = MachineIdentity::from_raw(PRODUCT, &raw(&[("rfs", ROOT_UUID), ("dsk", "DISK1"), ("mac", MAC1)]));
    assert_eq!(id.cmid_kinds(), ["rfs"]);
    let id = MachineIdentity::from_raw(PRODUCT, &raw(&[("mac", MAC1), ("cpu", CPU)]));
    assert_eq!(id.cmid_kinds(), ["mac", "cpu"]);
    assert!(id.warnings().iter().any(|w| w.contains("changes when a NIC is replaced")));
}

#[test]
fn cmid_format_and_check_character() {
    let id = bare_metal().identify().unwrap();
    let cmid = id.cmid();
    assert_eq!(cmid.len(), 21);
    let groups: Vec<&str> = cmid.split('-').collect();
    assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), [4, 4, 4, 4, 1]);
    assert!(cmid.chars().all(|c| c == '-' || "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c)));
    assert!(validate_cmid(cmid));
    // Typed sloppily: lower case, no hyphens, O for 0, l for 1.
    let sloppy = cmid.to_lowercase().replace('-', "").replace('0', "o").replace('1', "l");
    assert_eq!(normalize_cmid(&sloppy).as_deref(), Some(cmid));
    // Every single-character typo is caught.
    let alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    for (i, c) in cmid.char_indices().filter(|(_, c)| *c != '-') {
        for r in alphabet.chars().filter(|r| *r != c) {
            let mut typo = cmid.to_string();
            typo.replace_range(i..i + 1, &r.to_string());
            assert!(!validate_cmid(&typo), "{typo}");
        }
    }
    assert!(!validate_cmid(""));
    assert!(!validate_cmid(&cmid[..20]));
    assert!(!validate_cmid("ABCD-EFGH-JKMN-PQRS-U"));
}

// ---------------------------------------------------------------------------
// Matching

/// Six votes: mid, dmi, bsn, mac (two NICs), rfs, cpu.
fn six_votes() -> Vec<(String, String)> {
    raw(&[
        ("mid", MID),
        ("dmi", DMI_UUID),
        ("bsn", "BOARD-0001"),
        ("mac", MAC1),
        ("mac", MAC2),
        ("rfs", ROOT_UUID),
        ("cpu", CPU),
    ])
}

fn with_changed(base: &[(String, String)], changed: &[&str]) -> Vec<(String, String)> {
    base.iter()
        .map(|(k, v)| {
            if changed.contains(&k.as_str()) {
                let nv = if k == "mac" { format!("{}:99", &v[..14]) } else { format!("{v}-new") };
                (k.clone(), nv)
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

fn evaluate(rule: MatchRule, bound: &[(String, String)], current: &[(String, String)]) -> tka::machine::MatchReport {
    let b = MachineIdentity::from_raw(PRODUCT, bound);
    let c = MachineIdentity::from_raw(PRODUCT, current);
    rule.evaluate(b.components(), c.components())
}

#[test]
fn one_two_three_changes_under_each_rule() {
    let base = six_votes();
    // (changed kinds, rule, matched, required, is_match)
    let cases: &[(&[&str], MatchRule, usize, usize, bool)] = &[
        (&[], MatchRule::All, 6, 6, true),
        (&[], MatchRule::Most, 6, 4, true),
        (&[], MatchRule::AtLeast(4), 6, 4, true),
        // One change.
        (&["rfs"], MatchRule::All, 5, 6, false),
        (&["rfs"], MatchRule::Most, 5, 4, true),
        (&["rfs"], MatchRule::AtLeast(4), 5, 4, true),
        // Two changes.
        (&["rfs", "cpu"], MatchRule::All, 4, 6, false),
        (&["rfs", "cpu"], MatchRule::Most, 4, 4, true),
        (&["rfs", "cpu"], MatchRule::AtLeast(4), 4, 4, true),
        (&["rfs", "cpu"], MatchRule::AtLeast(5), 4, 5, false),
        // Three changes.
        (&["rfs", "cpu", "bsn"], MatchRule::All, 3, 6, false),
        (&["rfs", "cpu", "bsn"], MatchRule::Most, 3, 4, false),
        (&["rfs", "cpu", "bsn"], MatchRule::AtLeast(4), 3, 4, false),
        (&["rfs", "cpu", "bsn"], MatchRule::AtLeast(3), 3, 3, true),
    ];
    for (changed, rule, matched, required, ok) in cases {
        let current = with_changed(&base, changed);
        let rep = evaluate(*rule, &base, &current);
        assert_eq!(rep.total, 6, "{changed:?} {rule}");
        assert_eq!(rep.matched, *matched, "{changed:?} {rule}");
        assert_eq!(rep.required, *required, "{changed:?} {rule}");
        assert_eq!(rep.is_match(), *ok, "{changed:?} {rule}: {rep}");
        let mut want: Vec<&str> = changed.to_vec();
        want.sort_by_key(|k| kinds::rank(k));
        assert_eq!(rep.changed, want, "{changed:?} {rule}");
    }
}

#[test]
fn most_requires_the_dmi_uuid_when_bound() {
    let base = six_votes();
    let current = with_changed(&base, &["dmi"]);
    let most = evaluate(MatchRule::Most, &base, &current);
    assert_eq!((most.matched, most.required, most.total), (5, 4, 6));
    assert_eq!(most.anchor, ["dmi", "bsn", "mac"]);
    assert!(!most.anchor_matched, "2 of 3 hardware votes match, but not dmi");
    assert!(!most.is_match());
    assert!(
        most.to_string().contains("hardware anchor (most of dmi, bsn, mac; dmi required) does not match"),
        "{most}"
    );
    // N is a pure count: the explicit escape hatch.
    let n = evaluate(MatchRule::AtLeast(4), &base, &current);
    assert!(n.anchor.is_empty());
    assert!(n.is_match());
}

#[test]
fn replacing_one_nic_still_matches_under_most() {
    // Two NICs, one replaced: one of two bound MACs is not most of them, so
    // the mac vote changes (a token bound to the MACs of two machines must
    // match neither on it); `most` holds on the other five votes.
    let base = six_votes();
    let mut current = base.clone();
    current.retain(|(k, v)| !(k == "mac" && v == MAC2));
    current.push(("mac".into(), "00:1b:21:de:ad:01".into()));
    let rep = evaluate(MatchRule::Most, &base, &current);
    assert_eq!((rep.matched, rep.total), (5, 6));
    assert_eq!(rep.changed, ["mac"]);
    assert!(rep.is_match());
    assert!(!evaluate(MatchRule::All, &base, &current).is_match());

    // A single NIC, replaced: one vote changes, `most` holds; `all` does not.
    let r = bare_metal();
    r.remove("sys/class/net/enp3s0");
    let bound = r.identify().unwrap();
    r.remove("sys/class/net/enp0s31f6").nic("enp0s31f6", "00:1b:21:de:ad:02");
    let now = r.identify().unwrap();
    let rep = now.matches(MatchRule::Most, bound.components());
    assert_eq!((rep.matched, rep.required, rep.total), (7, 5, 8));
    assert_eq!(rep.changed, ["mac"]);
    assert!(rep.missing.is_empty());
    assert!(rep.is_match());
    assert!(!now.matches(MatchRule::All, bound.components()).is_match());
    assert_eq!(now.cmid(), bound.cmid());
}

#[test]
fn cloned_vm_disk_on_other_hardware_does_not_match() {
    let vm = Root::new();
    vm.file("etc/machine-id", MID)
        .file("sys/class/dmi/id/product_uuid", "564d8e2a-1b2c-3d4e-5f60-718293a4b5c6")
        .file("sys/class/dmi/id/sys_vendor", "VMware, Inc.\n")
        .file("sys/class/dmi/id/product_name", "VMware Virtual Platform\n")
        .nic("ens192", "00:50:56:12:34:56")
        .file("proc/self/mountinfo", &mountinfo_root("/dev/sda2", "8:2", "ext4"))
        .link("../../sda2", &format!("dev/disk/by-uuid/{ROOT_UUID}"))
        .file("proc/cpuinfo", &format!("model name : {CPU}\nflags : fpu hypervisor\n"));
    let original = vm.identify().unwrap();
    assert_eq!(kinds_of(&original), ["mid", "dmi", "mac", "rfs", "cpu"]);
    assert_eq!(original.environment().hypervisor.as_deref(), Some("VMware"));
    assert_eq!(original.environment().kind(), "vm");

    // The clone: same disk image (machine-id, root fs), same CPU model, new VM UUID and MAC.
    vm.file("sys/class/dmi/id/product_uuid", "564d0d1e-2f30-4152-6374-8596a7b8c9d0");
    vm.remove("sys/class/net/ens192").nic("ens192", "00:50:56:ab:cd:ef");
    let clone = vm.identify().unwrap();
    assert_ne!(clone.cmid(), original.cmid());

    let rule = default_rule_for(original.components());
    assert_eq!(rule, MatchRule::Most);
    let rep = clone.matches(rule, original.components());
    assert_eq!((rep.matched, rep.required, rep.total), (3, 3, 5));
    assert_eq!(rep.changed, ["dmi", "mac"]);
    assert!(!rep.anchor_matched);
    assert!(!rep.is_match());
    assert!(!clone.matches(MatchRule::All, original.components()).is_match());
}

#[test]
fn cloned_disk_without_dmi_still_fails_on_hardware_anchor() {
    // Unprivileged binding: no DMI, so the anchor is "most of dsk, mac".
    let bound = raw(&[("mid", MID), ("mac", MAC1), ("rfs", ROOT_UUID), ("dsk", "DISK-A"), ("cpu", CPU)]);
    let clone = with_changed(&bound, &["mac", "dsk"]);
    let rep = evaluate(MatchRule::Most, &bound, &clone);
    assert_eq!((rep.matched, rep.required, rep.total), (3, 3, 5));
    assert_eq!(rep.anchor, ["dsk", "mac"]);
    assert!(!rep.is_match());
    // The same machine with its only NIC replaced: one of its two hardware
    // votes is not more than half, so it no longer matches (a request made
    // as root also binds DMI and serials, and tolerates a NIC swap). The
    // price of the rule that keeps one token from matching two machines
    // that each hold half of its hardware.
    let nic_swap = with_changed(&bound, &["mac"]);
    let rep = evaluate(MatchRule::Most, &bound, &nic_swap);
    assert_eq!((rep.matched, rep.required), (4, 3));
    assert!(!rep.anchor_matched);
    assert!(!rep.is_match());
}

#[test]
fn os_reinstall_keeps_activation_under_most_but_changes_cmid() {
    let r = bare_metal();
    let bound = r.identify().unwrap();
    r.file("etc/machine-id", "fedcba9876543210fedcba9876543210\n")
        .remove(&format!("dev/disk/by-uuid/{ROOT_UUID}"))
        .link("../../nvme0n1p2", "dev/disk/by-uuid/99999999-8888-4777-a666-555555555555");
    let now = r.identify().unwrap();
    assert_ne!(now.cmid(), bound.cmid());
    let rep = now.matches(MatchRule::Most, bound.components());
    assert_eq!((rep.matched, rep.required, rep.total), (6, 5, 8));
    assert_eq!(rep.changed, ["mid", "rfs"]);
    assert!(rep.is_match());
}

#[test]
fn unreadable_component_counts_as_missing_not_matched() {
    let bound = six_votes();
    let mut current = bound.clone();
    current.retain(|(k, _)| k != "dmi");
    let rep = evaluate(MatchRule::Most, &bound, &current);
    assert_eq!(rep.changed, ["dmi"]);
    assert_eq!(rep.missing, ["dmi"]);
    assert!(!rep.is_match());
}

#[test]
fn rule_edge_cases_never_require_zero() {
    let one = raw(&[("mid", MID)]);
    let rep = evaluate(MatchRule::Most, &one, &one);
    assert_eq!((rep.matched, rep.required, rep.total), (1, 1, 1));
    assert!(rep.is_match());
    // N larger than the votes is clamped to all of them.
    let two = raw(&[("mid", MID), ("rfs", ROOT_UUID)]);
    let rep = evaluate(MatchRule::AtLeast(5), &two, &two);
    assert_eq!((rep.required, rep.total), (2, 2));
    assert!(rep.is_match());
    assert!(!evaluate(MatchRule::AtLeast(5), &two, &with_changed(&two, &["rfs"])).is_match());
    // AtLeast(0) constructed directly still requires one.
    assert_eq!(MatchRule::AtLeast(0).required_votes(3), 1);
    // Nothing bound: nothing matches.
    let rep = MatchRule::Most.evaluate(&[], &[hash_of("mid", MID)]);
    assert_eq!((rep.matched, rep.required, rep.total), (0, 1, 0));
    assert!(!rep.is_match());
    // Issuance-time checks.
    let id = MachineIdentity::from_raw(PRODUCT, &two);
    assert!(MatchRule::AtLeast(2).check_for(id.components()).is_ok());
    assert!(matches!(MatchRule::AtLeast(3).check_for(id.components()), Err(MachineError::BadRule(_))));
    assert_eq!(MatchRule::Most.check_for(&[]), Err(MachineError::NoComponents));
}

#[test]
fn rule_parsing_and_serde() {
    assert_eq!("all".parse::<MatchRule>().unwrap(), MatchRule::All);
    assert_eq!("MOST".parse::<MatchRule>().unwrap(), MatchRule::Most);
    assert_eq!("3".parse::<MatchRule>().unwrap(), MatchRule::AtLeast(3));
    assert_eq!("0".parse::<MatchRule>().unwrap_err(), MachineError::BadRule("0".into()));
    assert_eq!("any".parse::<MatchRule>().unwrap_err(), MachineError::BadRule("any".into()));
    assert_eq!("-1".parse::<MatchRule>().unwrap_err(), MachineError::BadRule("-1".into()));
    for (rule, json) in [(MatchRule::All, "\"all\""), (MatchRule::Most, "\"most\""), (MatchRule::AtLeast(2), "2")] {
        assert_eq!(serde_json::to_string(&rule).unwrap(), json);
        assert_eq!(serde_json::from_str::<MatchRule>(json).unwrap(), rule);
        assert_eq!(rule.to_string().parse::<MatchRule>().unwrap(), rule);
    }
    assert!(serde_json::from_str::<MatchRule>("0").is_err());
    assert!(serde_json::from_str::<MatchRule>("true").is_err());
    let c = hash_of("mid", MID);
    assert_eq!(serde_json::to_string(&c).unwrap(), format!("{{\"k\":\"mid\",\"h\":\"{}\"}}", c.hash));
}

// ---------------------------------------------------------------------------
// Containers and VMs

fn docker_container() -> Root {
    let r = Root::new();
    r.file(".dockerenv", "")
        .file("proc/1/cgroup", "12:pids:/docker/3f2a9c0d1e\n0::/docker/3f2a9c0d1e\n")
        .file("proc/self/mountinfo", "700 600 0:60 / / rw - overlay overlay rw,lowerdir=/l\n")
        .file("etc/machine-id", MID) // baked into the image
        .file("sys/class/dmi/id/product_uuid", DMI_UUID) // the host's
        .virtual_nic("eth0", "02:42:ac:11:00:02")
        .file("proc/cpuinfo", &format!("model name : {CPU}\n"));
    r
}

#[test]
fn container_without_explicit_id_binds_host_hardware_and_says_so() {
    let id = docker_container().identify().unwrap();
    assert_eq!(kinds_of(&id), ["mid", "dmi", "cpu"]);
    assert_eq!(id.environment().container.as_deref(), Some("docker"));
    assert_eq!(id.environment().kind(), "container");
    assert!(id.binds_host_hardware());
    assert!(!id.is_explicit());
    let w = id.warnings();
    assert!(w.iter().any(|w| w.contains("container") && w.contains("explicit machine-id file")), "{w:?}");
}

/// A verification with an explicit identity never needs the environment:
/// it is detected when first asked for, not by `identify` (which then reads
/// no /proc, /sys or DMI file for it). A hardware identity detects at once.
#[test]
fn an_explicit_identity_detects_the_environment_only_when_asked() {
    let r = docker_container();
    let opts = IdentifyOptions { explicit_id: Some("fleet-node-0042".into()), ..r.opts() };
    let explicit = MachineIdentity::identify(PRODUCT, &opts).unwrap();
    let hardware = r.identify().unwrap();
    // The container evidence goes away after both identities were made.
    r.remove(".dockerenv").remove("proc/1/cgroup").remove("proc/self/mountinfo");
    assert!(!explicit.binds_host_hardware());
    assert_eq!(explicit.environment().kind(), "bare-metal", "read at first use, after the evidence went");
    assert_eq!(hardware.environment().container.as_deref(), Some("docker"), "read by identify");
}

#[test]
fn container_with_explicit_id_uses_only_it() {
    let r = docker_container();
    let opts = IdentifyOptions { explicit_id: Some("  fleet-node-0042\n".into()), ..r.opts() };
    let id = MachineIdentity::identify(PRODUCT, &opts).unwrap();
    assert_eq!(id.components(), &[hash_of("xid", "fleet-node-0042")]);
    assert!(id.is_explicit());
    assert!(!id.binds_host_hardware());
    assert_eq!(id.environment().kind(), "container");
    assert_eq!(id.cmid_kinds(), ["xid"]);
    assert_eq!(id.cmid(), MachineIdentity::from_raw(PRODUCT, &raw(&[("xid", "fleet-node-0042")])).cmid());

    // From a file, which wins over the value.
    let f = r.path().join("explicit-id");
    fs::write(&f, "fleet-node-0099\n").unwrap();
    let opts = IdentifyOptions { explicit_id_file: Some(f.to_path_buf()), ..opts };
    let id = MachineIdentity::identify(PRODUCT, &opts).unwrap();
    assert_eq!(id.components(), &[hash_of("xid", "fleet-node-0099")]);

    // An empty or unreadable explicit identity is an error, never a silent fallback.
    fs::write(&f, " \n").unwrap();
    assert!(matches!(MachineIdentity::identify(PRODUCT, &opts), Err(MachineError::BadExplicitId(_))));
    let missing = IdentifyOptions { explicit_id_file: Some(r.path().join("nope")), ..r.opts() };
    assert!(matches!(MachineIdentity::identify(PRODUCT, &missing), Err(MachineError::BadExplicitId(_))));
    let empty = IdentifyOptions { explicit_id: Some("   ".into()), ..r.opts() };
    assert!(matches!(MachineIdentity::identify(PRODUCT, &empty), Err(MachineError::BadExplicitId(_))));
}

#[test]
fn explicit_id_works_even_with_no_hardware_at_all() {
    let r = Root::new();
    assert_eq!(r.identify().unwrap_err(), MachineError::NoComponents);
    let opts = IdentifyOptions { explicit_id: Some("k8s-pod-identity-7".into()), ..r.opts() };
    let id = MachineIdentity::identify(PRODUCT, &opts).unwrap();
    assert_eq!(kinds_of(&id), ["xid"]);
    let rep = id.matches(id.default_rule(), id.components());
    assert_eq!((rep.matched, rep.required, rep.total), (1, 1, 1));
    assert!(rep.is_match());
}

#[test]
fn other_container_markers() {
    for (setup, expect) in [
        (("run/.containerenv", ""), "podman"),
        (("proc/1/cgroup", "0::/kubepods/besteffort/pod1234/abcd\n"), "kubernetes"),
        (("proc/1/cgroup", "0::/lxc.payload.c1\n"), "lxc"),
        (("run/systemd/container", "systemd-nspawn\n"), "systemd-nspawn"),
    ] {
        let r = Root::new();
        r.file(setup.0, setup.1).file("etc/machine-id", MID);
        assert_eq!(r.identify().unwrap().environment().container.as_deref(), Some(expect), "{setup:?}");
    }
    // A host's own cgroup is not a container.
    let r = Root::new();
    r.file("proc/1/cgroup", "0::/init.scope\n").file("etc/machine-id", MID);
    assert_eq!(r.identify().unwrap().environment().container, None);
}

#[test]
fn hypervisor_detection() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("VMware, Inc.", "VMware Virtual Platform", Some("VMware")),
        ("innotek GmbH", "VirtualBox", Some("VirtualBox")),
        ("Xen", "HVM domU", Some("Xen")),
        ("Microsoft Corporation", "Virtual Machine", Some("Microsoft Hyper-V")),
        ("Amazon EC2", "m5.large", Some("Amazon EC2")),
        ("Google", "Google Compute Engine", Some("Google Compute Engine")),
        ("Microsoft Corporation", "Surface Laptop 4", None),
        ("Google", "Eve", None),
        ("LENOVO", "ThinkPad X1 Xenon Edition", None),
    ];
    for (vendor, product, expect) in cases {
        let r = Root::new();
        r.file("etc/machine-id", MID)
            .file("sys/class/dmi/id/sys_vendor", &format!("{vendor}\n"))
            .file("sys/class/dmi/id/product_name", &format!("{product}\n"));
        let env = r.identify().unwrap().environment().clone();
        assert_eq!(env.hypervisor.as_deref(), *expect, "{vendor} {product}");
    }
    // Only the CPU flag.
    let r = Root::new();
    r.file("etc/machine-id", MID).file("proc/cpuinfo", "model name : X\nflags : fpu hypervisor sse\n");
    let id = r.identify().unwrap();
    assert_eq!(id.environment().hypervisor.as_deref(), Some("unknown"));
    assert_eq!(id.environment().to_string(), "virtual machine (unknown)");
}

// ---------------------------------------------------------------------------
// Output and privacy

#[test]
fn explain_shows_sources_and_values_only_on_request() {
    let id = bare_metal().identify().unwrap();
    let quiet = id.explain(false);
    assert_eq!(quiet.cmid, id.cmid());
    assert_eq!(quiet.cmid_from, ["mid", "dmi"]);
    assert_eq!(quiet.sources.len(), 9);
    let csn = quiet.sources.iter().find(|s| s.kind == "csn").unwrap();
    assert_eq!(csn.found, 0);
    assert_eq!(csn.notes, ["value ignored: placeholder value"]);
    let text = quiet.to_string();
    let json = serde_json::to_string(&quiet).unwrap();
    for secret in [MID, "5cd1234xyz", "3c:52:82:11:22:33", ROOT_UUID] {
        assert!(!text.to_lowercase().contains(secret), "{secret} leaked in text");
        assert!(!json.to_lowercase().contains(secret), "{secret} leaked in json");
    }
    let loud = id.explain(true);
    let mac = loud.sources.iter().find(|s| s.kind == "mac").unwrap();
    // In read order (interface names sorted): enp0s31f6, enp3s0.
    assert_eq!(mac.values.as_deref().unwrap(), ["3c:52:82:11:22:33", "00:1b:21:aa:bb:cc"]);
    assert!(loud.to_string().contains(MID));
}

#[test]
fn json_and_debug_never_contain_raw_values() {
    let id = bare_metal().identify().unwrap();
    let v: serde_json::Value = serde_json::to_value(&id).unwrap();
    assert_eq!(v["cmid"], id.cmid());
    assert_eq!(v["product"], PRODUCT);
    assert_eq!(v["components"].as_array().unwrap().len(), 9);
    assert_eq!(v["environment"]["kind"], "bare-metal");
    let all = format!("{v} {id:?} {:?}", id.sources());
    for secret in [MID, "5cd1234xyz", "3c:52:82:11:22:33", ROOT_UUID, "s4ewnx0r123456"] {
        assert!(!all.to_lowercase().contains(secret), "{secret} leaked");
    }
}

/// Runs this test binary's test `name` alone in a child process with
/// `vars` set (`None`: removed), so no test changes the environment of the
/// process whose other tests run in parallel; the child sees
/// `TKA_TEST_CHILD=1`.
fn in_child_process(name: &str, vars: &[(&str, Option<&str>)]) {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", name, "--test-threads=1"]).env("TKA_TEST_CHILD", "1");
    for (k, v) in vars {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let o = c.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("1 passed"), "{out}{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn from_env_reads_sysroot_and_machine_id() {
    if std::env::var_os("TKA_TEST_CHILD").is_none() {
        let name = "from_env_reads_sysroot_and_machine_id";
        in_child_process(name, &[("TKA_SYSROOT", Some("/srv/fakeroot")), ("TKA_MACHINE_ID", Some("node-7"))]);
        in_child_process(name, &[("TKA_SYSROOT", None), ("TKA_MACHINE_ID", Some(""))]);
        return;
    }
    // In the child: the environment the parent gave it.
    let o = IdentifyOptions::from_env();
    let sysroot = std::env::var_os("TKA_SYSROOT");
    assert_eq!(o.sysroot.as_deref(), sysroot.as_deref().map(Path::new));
    match std::env::var("TKA_MACHINE_ID").as_deref() {
        Ok("node-7") => {
            assert_eq!(sysroot.as_deref(), Some(std::ffi::OsStr::new("/srv/fakeroot")));
            assert_eq!(o.explicit_id.as_deref(), Some("node-7"));
        }
        // Empty counts as not set.
        Ok("") => assert_eq!((o.sysroot, o.explicit_id), (None, None)),
        other => panic!("unexpected TKA_MACHINE_ID {other:?}"),
    }
    assert_eq!(o.explicit_id_file, None);
}

// ---------------------------------------------------------------------------
// The CLI names the flags the library's messages leave out

mod sandbox;

/// A machine nothing can be read from: the error names the explicit
/// identity in library words, the CLI's hint names its flag.
#[test]
fn cli_hints_the_machine_id_file_when_nothing_identifies_the_machine() {
    let s = sandbox::Sandbox::new();
    let empty = s.path("empty-root");
    fs::create_dir_all(&empty).unwrap();
    let r = sandbox::run(s.cmd(&["machine", "id", "--product", PRODUCT]).env("TKA_SYSROOT", &empty));
    assert_eq!(r.0, 2, "{r:?}");
    assert!(r.2.contains("error: cannot identify this machine"), "{r:?}");
    assert!(r.2.contains("explicit machine-id file or the TKA_MACHINE_ID environment variable"), "{r:?}");
    assert!(r.2.contains("hint: give this machine an explicit identity with --machine-id-file PATH"), "{r:?}");
    assert!(r.2.contains("TKA_MACHINE_ID"), "{r:?}");
}

/// In a container without an explicit identity the CLI warns (library
/// words) and hints its flag.
#[test]
fn cli_hints_the_machine_id_file_in_a_container() {
    let s = sandbox::Sandbox::new();
    let c = docker_container();
    let r = sandbox::run(s.cmd(&["machine", "id", "--product", PRODUCT]).env("TKA_SYSROOT", c.path()));
    assert_eq!(r.0, 0, "{r:?}");
    assert!(r.2.contains("warning: running in a container (docker)"), "{r:?}");
    assert!(r.2.contains("use an explicit machine-id file or TKA_MACHINE_ID"), "{r:?}");
    assert!(r.2.contains("hint: give each container its own identity with --machine-id-file PATH"), "{r:?}");
}
