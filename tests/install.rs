//! Install and distribute: `tka completions SHELL` and `tka man` are
//! written from the command definitions; the Debian package metadata names
//! the files scripts/build-deb.sh makes; the test inputs live in the
//! repository.

mod sandbox;
mod tools;

use sandbox::BIN;
use std::process::Command;

fn tka(args: &[&str]) -> (i32, String, String) {
    sandbox::run(Command::new(BIN).args(args))
}

/// Each shell gets a script that completes every top-level command.
#[test]
fn completions_for_each_shell_name_the_commands() {
    for (shell, marker) in [
        ("bash", "complete -F _tka"),
        ("zsh", "#compdef tka"),
        ("fish", "complete -c tka"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let (code, out, err) = tka(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(marker), "{shell}: no {marker:?}");
        for cmd in ["activate", "trust", "issuer", "completions"] {
            assert!(out.contains(cmd), "{shell}: {cmd} not completed");
        }
    }
}

/// An unknown shell is a usage error naming the shells tka completes.
#[test]
fn completions_for_an_unknown_shell_is_a_usage_error() {
    let (code, _, err) = tka(&["completions", "tcsh"]);
    assert_eq!(code, 2);
    assert_eq!(
        err.lines().next().unwrap(),
        "error: invalid value 'tcsh' for '<bash|zsh|fish|powershell>': \"tcsh\" is not a shell tka completes: \
         bash, zsh, fish or powershell"
    );
}

/// The man page: a roff page tka(1) with a section per command, the
/// ENVIRONMENT text and the examples; `groff` reads it without warnings
/// where groff is installed.
#[test]
fn man_page_covers_every_command() {
    let (code, page, err) = tka(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH tka 1"), "{}", &page[..200.min(page.len())]);
    for section in [".SH \"TKA TRUST ADD\"", ".SH \"TKA ACTIVATE\"", ".SH \"TKA ISSUER INIT\"", ".SH \"TKA MAN\""] {
        assert!(page.contains(section), "no {section}");
    }
    assert!(page.contains("TKA_PASSPHRASE"), "the ENVIRONMENT section");
    let groff = Command::new("groff").args(["-man", "-Tutf8", "-ww", "-z"]).stdin(std::process::Stdio::piped()).spawn();
    if let Ok(mut child) = groff {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "groff: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `tka man | head -1`: the reader goes away, tka ends quietly.
#[test]
fn man_and_completions_into_a_closed_pipe_end_quietly() {
    for cmd in ["man", "completions bash"] {
        let out = Command::new("sh").arg("-c").arg(format!("'{BIN}' {cmd} | head -1")).output().unwrap();
        assert!(out.status.success(), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.is_empty(), "{cmd}: {err}");
    }
}

/// [package.metadata.deb] ships the binaries (`tka-full` where the `tka`
/// front looks for it), the man page, the completions
/// and both systemd units, and every asset it names that is not built is
/// in the repository; scripts/build-deb.sh writes the built ones.
#[test]
fn debian_package_ships_binary_man_page_completions_and_units() {
    let root = env!("CARGO_MANIFEST_DIR");
    let toml = std::fs::read_to_string(format!("{root}/Cargo.toml")).unwrap();
    let deb = toml.split("[package.metadata.deb]").nth(1).expect("[package.metadata.deb]");
    let script = std::fs::read_to_string(format!("{root}/scripts/build-deb.sh")).unwrap();
    for asset in [
        "target/release/tka\"",
        "target/release/tka-full\", \"usr/libexec/tka/\"",
        "tka.1.gz",
        "completions/tka",
        "_tka",
        "tka.fish",
        "tka-host.service",
        "tka-agent.service",
    ] {
        assert!(deb.contains(asset), "the package lacks {asset}");
    }
    for built in ["tka.1.gz", "tka.bash", "_tka", "tka.fish", "$unit.service"] {
        assert!(script.contains(&format!("$assets/{built}")), "build-deb.sh does not write {built}");
    }
    for unit in ["tka-host", "tka-agent"] {
        assert!(std::path::Path::new(&format!("{root}/packaging/{unit}.service")).exists());
    }
    let ci = std::fs::read_to_string(format!("{root}/.ci/run")).unwrap();
    assert!(ci.contains("bash scripts/build-deb.sh --install"), "CI builds and installs the package");
}

/// The test suites and benchmarks read nothing outside the repository.
#[test]
fn tests_need_nothing_outside_the_repository() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("Cargo.toml")];
    let mut dirs = vec![root.join("tests"), root.join("benches")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs" || x == "toml" || x == "sh") {
                files.push(p);
            }
        }
    }
    let outside = ["../", "shared/"].concat();
    let bad: Vec<_> =
        files.iter().filter(|p| std::fs::read_to_string(p).unwrap_or_default().contains(&outside)).collect();
    assert!(bad.is_empty(), "files naming {outside}: {bad:?}");
}
