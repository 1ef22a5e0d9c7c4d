//! The sources for this platform ([`platform_sources`]): the Linux ones
//! (`sources.rs`), or the Windows and macOS ones here. These shell out to
//! the system's own tools (`reg`, `powershell`, `ioreg`) so tka needs no
//! platform crates. The output
//! parsers are plain functions compiled everywhere so they are unit-tested
//! on Linux too; only the sources themselves are behind `cfg`.

#![cfg_attr(not(any(windows, target_os = "macos")), allow(dead_code))]

use super::sources::{linux_sources, ComponentSource};
use std::path::PathBuf;

/// The sources for this platform. With an explicit `sysroot` the Linux
/// sources are used on every platform (a sysroot is a Linux file tree);
/// otherwise Windows and macOS use their native sources.
pub fn platform_sources(sysroot: Option<&PathBuf>) -> Vec<Box<dyn ComponentSource>> {
    if sysroot.is_some() {
        return linux_sources();
    }
    #[cfg(windows)]
    {
        windows_sources()
    }
    #[cfg(target_os = "macos")]
    {
        macos_sources()
    }
    #[cfg(not(any(windows, target_os = "macos")))]
    {
        linux_sources()
    }
}

/// Extracts `MachineGuid` from `reg query HKLM\SOFTWARE\Microsoft\Cryptography /v MachineGuid`:
/// a line like `    MachineGuid    REG_SZ    6f0d...`.
pub(crate) fn parse_reg_query(output: &str, value_name: &str) -> Option<String> {
    output.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        if it.next()? != value_name {
            return None;
        }
        let _type = it.next().filter(|t| t.starts_with("REG_"))?;
        let rest: Vec<&str> = it.collect();
        (!rest.is_empty()).then(|| rest.join(" "))
    })
}

/// Extracts `"key" = "value"` from `ioreg -rd1 -c IOPlatformExpertDevice`.
pub(crate) fn parse_ioreg(output: &str, key: &str) -> Option<String> {
    let quoted = format!("\"{key}\"");
    output.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        if k.trim() != quoted {
            return None;
        }
        Some(v.trim().trim_matches('"').to_string())
    })
}

/// The first non-empty line of command output after any header line equal
/// to `header` (for `wmic`-style tables); used as a generic fallback.
pub(crate) fn first_value_line(output: &str, header: &str) -> Option<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.eq_ignore_ascii_case(header))
        .map(str::to_string)
        .next()
}

#[cfg(any(windows, target_os = "macos"))]
fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()
}

#[cfg(windows)]
mod windows {
    use super::super::kinds;
    use super::super::sources::{ComponentSource, RawReading};
    use super::*;
    use std::path::Path;

    /// `HKLM\SOFTWARE\Microsoft\Cryptography\MachineGuid` (per Windows install).
    pub struct MachineGuidSource;

    impl ComponentSource for MachineGuidSource {
        fn kind(&self) -> &'static str {
            kinds::MACHINE_ID
        }
        fn name(&self) -> &'static str {
            "Windows MachineGuid"
        }
        fn location(&self) -> &'static str {
            "HKLM\\SOFTWARE\\Microsoft\\Cryptography\\MachineGuid"
        }
        fn read(&self, _root: &Path) -> RawReading {
            let mut r = RawReading::default();
            let out = run("reg", &["query", "HKLM\\SOFTWARE\\Microsoft\\Cryptography", "/v", "MachineGuid", "/reg:64"]);
            match out.as_deref().and_then(|o| parse_reg_query(o, "MachineGuid")) {
                Some(v) => r.values.push(v),
                None => r.notes.push("reg query MachineGuid failed".into()),
            }
            r
        }
    }

    /// SMBIOS system UUID (`Win32_ComputerSystemProduct.UUID`).
    pub struct SmbiosUuidSource;

    impl ComponentSource for SmbiosUuidSource {
        fn kind(&self) -> &'static str {
            kinds::DMI_UUID
        }
        fn name(&self) -> &'static str {
            "SMBIOS system UUID"
        }
        fn location(&self) -> &'static str {
            "Win32_ComputerSystemProduct.UUID"
        }
        fn read(&self, _root: &Path) -> RawReading {
            let mut r = RawReading::default();
            let out = run(
                "powershell",
                &[
                    "-NoProfile",
                    "-NonInteractive",
                    "-Command",
                    "(Get-CimInstance -ClassName Win32_ComputerSystemProduct).UUID",
                ],
            );
            match out.as_deref().and_then(|o| first_value_line(o, "UUID")) {
                Some(v) => r.values.push(v),
                None => r.notes.push("could not query the SMBIOS UUID".into()),
            }
            r
        }
    }
}

#[cfg(windows)]
pub(crate) fn windows_sources() -> Vec<Box<dyn ComponentSource>> {
    vec![Box::new(windows::MachineGuidSource), Box::new(windows::SmbiosUuidSource)]
}

#[cfg(target_os = "macos")]
mod macos {
    use super::super::kinds;
    use super::super::sources::{ComponentSource, RawReading};
    use super::*;
    use std::path::Path;

    /// An `IOPlatformExpertDevice` property.
    pub struct IoregSource {
        pub kind: &'static str,
        pub key: &'static str,
        pub name: &'static str,
    }

    impl ComponentSource for IoregSource {
        fn kind(&self) -> &'static str {
            self.kind
        }
        fn name(&self) -> &'static str {
            self.name
        }
        fn location(&self) -> &'static str {
            "ioreg -rd1 -c IOPlatformExpertDevice"
        }
        fn read(&self, _root: &Path) -> RawReading {
            let mut r = RawReading::default();
            let out = run("ioreg", &["-rd1", "-c", "IOPlatformExpertDevice"]);
            match out.as_deref().and_then(|o| parse_ioreg(o, self.key)) {
                Some(v) => r.values.push(v),
                None => r.notes.push(format!("ioreg has no {}", self.key)),
            }
            r
        }
    }
}

#[cfg(target_os = "macos")]
pub(crate) fn macos_sources() -> Vec<Box<dyn ComponentSource>> {
    use super::kinds;
    vec![
        Box::new(macos::IoregSource {
            kind: kinds::DMI_UUID,
            key: "IOPlatformUUID",
            name: "macOS hardware UUID (IOPlatformUUID)",
        }),
        Box::new(macos::IoregSource {
            kind: kinds::PRODUCT_SERIAL,
            key: "IOPlatformSerialNumber",
            name: "macOS serial number",
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reg_query_output() {
        let out = "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography\r\n    MachineGuid    REG_SZ    6f0d1c2e-1111-2222-3333-444455556666\r\n\r\n";
        assert_eq!(parse_reg_query(out, "MachineGuid").as_deref(), Some("6f0d1c2e-1111-2222-3333-444455556666"));
        assert_eq!(parse_reg_query("ERROR: nope", "MachineGuid"), None);
    }

    #[test]
    fn ioreg_output() {
        let out = "+-o MacBookPro18,3  <class IOPlatformExpertDevice>\n    {\n      \"IOPlatformSerialNumber\" = \"C02XXXXXXXX\"\n      \"IOPlatformUUID\" = \"A1B2C3D4-0000-1111-2222-333344445555\"\n    }\n";
        assert_eq!(parse_ioreg(out, "IOPlatformUUID").as_deref(), Some("A1B2C3D4-0000-1111-2222-333344445555"));
        assert_eq!(parse_ioreg(out, "IOPlatformSerialNumber").as_deref(), Some("C02XXXXXXXX"));
        assert_eq!(parse_ioreg(out, "Missing"), None);
    }

    #[test]
    fn value_line() {
        assert_eq!(first_value_line("UUID\r\n\r\nABCD-1\r\n", "UUID").as_deref(), Some("ABCD-1"));
        assert_eq!(first_value_line("\n\n", "UUID"), None);
    }
}
