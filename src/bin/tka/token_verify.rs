//! `tka token verify`: the command scripts run and applications run at
//! every start. Free of clap, so that the `tka` executable (`front.rs`)
//! runs it without the full command (`tka-full`, `main.rs`) and its start-up
//! cost; `main.rs` runs the same [`run`] after clap parsed the line.
//!
//! [`parse_fast`] reads the command lines it is sure of and gives up on any
//! other (help, a flag it does not know, a repeated one, a value that looks
//! like a flag, an empty or non-UTF-8 argument): those go to the full command,
//! whose clap parse and words decide. Where it reads a line, it reads it as
//! clap does (`main.rs` tests: `fast_path_reads_lines_as_clap_does`).

use crate::input::{identify_machine, now_or, read_certs, read_crls, read_token_text, read_trust_path};
use crate::outcome::{CmdResult, Failure};
use crate::output::{error_kind, print_verified, say, say_err, say_json, verified_json};
use serde_json::json;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use tka::pki::{CertInfo, RootFingerprint, TrustAnchors};
use tka::token;
use tka::verify::{verify_token, MachineCheck, VerifyContext};

/// A `tka token verify` command line, read (the flags as in `--help`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyCommand {
    /// The token: a file, `-`, or the token text.
    pub token: String,
    /// `--trust`: root certificate files or directories.
    pub trust: Vec<PathBuf>,
    /// `--trust-any-anchor`.
    pub trust_any_anchor: bool,
    /// `--product`.
    pub product: Option<String>,
    /// `--machine`: `current` or a CMID.
    pub machine: Option<String>,
    /// `--crl`.
    pub crl: Vec<PathBuf>,
    /// `--chain`.
    pub chain: Vec<PathBuf>,
    /// `--at` (RFC 3339).
    pub at: Option<String>,
    /// `--root-fingerprint`.
    pub root_fingerprints: Vec<RootFingerprint>,
    /// `--machine-id-file`.
    pub machine_id_file: Option<PathBuf>,
    /// `--quiet`.
    pub quiet: bool,
    /// `--json`.
    pub json: bool,
}

/// Runs `tka token verify`.
pub fn run(cmd: VerifyCommand) -> CmdResult {
    let VerifyCommand {
        token,
        trust,
        trust_any_anchor,
        product,
        machine,
        crl,
        chain,
        at,
        root_fingerprints,
        machine_id_file,
        quiet,
        json,
    } = cmd;
    let now = now_or(&at)?;
    let mut roots = Vec::new();
    for t in &trust {
        roots.extend(read_trust_path(t)?);
    }
    // An anchor is a root, as `tka trust add` requires; a wrong one is
    // an error in the arguments (exit 2), not a verdict on the token.
    let mut certs = Vec::with_capacity(roots.len());
    for der in &roots {
        let cert = CertInfo::parse(der)?;
        if let Err(e) = tka::pki::check_root(&cert) {
            if !trust_any_anchor {
                return Err(Failure::Usage(e.into()));
            }
            say_err(format!("warning: {e}; trusted as an anchor anyway (--trust-any-anchor)"));
        }
        certs.push(cert);
    }
    let anchors = TrustAnchors::from_certs(certs);
    let mut crls = Vec::new();
    for c in &crl {
        crls.extend(read_crls(c)?);
    }
    let mut known = Vec::new();
    for c in &chain {
        known.extend(read_certs(c)?);
    }
    let text = read_token_text(&token)?;
    let identity;
    let machine_check = match machine.as_deref() {
        None => MachineCheck::Skip,
        Some("current") => {
            let p = match &product {
                Some(p) => p.clone(),
                None => token::decode_unverified(&text)?.1.aud,
            };
            identity = identify_machine(&p, machine_id_file.as_deref(), quiet, None)?;
            MachineCheck::Identity(&identity)
        }
        Some(cmid) => MachineCheck::Cmid(cmid),
    };
    let revoked = Default::default();
    let ctx = VerifyContext {
        anchors: &anchors,
        pinned_roots: &root_fingerprints,
        now,
        product: product.as_deref(),
        machine: machine_check,
        crls: &crls,
        revoked_serials: &revoked,
        clock: None,
        certificates: &known,
    };
    match tka::token::from_pasted(&text).and_then(|t| verify_token(&t, &ctx)) {
        Ok(v) => {
            let binding_checked = !matches!(machine_check, MachineCheck::Skip);
            if json {
                let mut j = verified_json(&v);
                j["binding_checked"] = binding_checked.into();
                say_json(&j);
            } else {
                say(if binding_checked { "valid" } else { "valid signature and chain; machine binding not checked" });
                print_verified(&v);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if json => {
            say_json(&json!({"valid": false, "error": e.to_string(), "kind": error_kind(&e)}));
            Ok(crate::outcome::no())
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs `args` (the whole command line) if [`parse_fast`] reads it, and
/// reports the result: its exit code, or `None` for a line left to clap.
pub fn run_line(args: &[OsString]) -> Option<ExitCode> {
    parse_fast(args).map(|cmd| crate::report::finish(run(cmd)))
}

/// `tka [--json] token [--json] verify ARGS` read without clap, or `None`
/// for any line this reading is not sure of (the full command reads it).
pub fn parse_fast(args: &[OsString]) -> Option<VerifyCommand> {
    let mut words = Vec::with_capacity(args.len());
    for a in args.iter().skip(1) {
        // Non-UTF-8 and empty arguments: clap's to judge.
        words.push(a.to_str().filter(|s| !s.is_empty())?);
    }
    let mut cmd = VerifyCommand::default();
    // `--json` is global: before `token`, between `token` and `verify`, or
    // among verify's arguments; once.
    let mut rest = words.as_slice();
    for noun in ["token", "verify"] {
        loop {
            match rest.split_first() {
                Some((&"--json", tail)) if !cmd.json => {
                    cmd.json = true;
                    rest = tail;
                }
                Some((word, tail)) if *word == noun => {
                    rest = tail;
                    break;
                }
                _ => return None,
            }
        }
    }
    let mut token = None;
    let mut trust_any_anchor = false;
    let mut quiet = false;
    let mut i = 0;
    while i < rest.len() {
        let word = rest[i];
        i += 1;
        let Some(flag) = word.strip_prefix("--") else {
            // The one positional argument; `-` (standard input) and other
            // words starting with `-` are left to clap.
            if word.starts_with('-') || token.replace(word).is_some() {
                return None;
            }
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag, None),
        };
        // Flags without a value: once each.
        let set = match name {
            "json" => Some(&mut cmd.json),
            "trust-any-anchor" => Some(&mut trust_any_anchor),
            "quiet" => Some(&mut quiet),
            _ => None,
        };
        if let Some(set) = set {
            if inline.is_some() || std::mem::replace(set, true) {
                return None;
            }
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = *rest.get(i)?;
                i += 1;
                v
            }
        };
        if value.is_empty() || value.starts_with('-') {
            return None;
        }
        match name {
            "trust" => cmd.trust.push(value.into()),
            "crl" => cmd.crl.push(value.into()),
            "chain" => cmd.chain.push(value.into()),
            "root-fingerprint" => cmd.root_fingerprints.push(RootFingerprint::parse(value).ok()?),
            "product" => once(&mut cmd.product, value)?,
            "machine" => once(&mut cmd.machine, value)?,
            "at" => once(&mut cmd.at, value)?,
            "machine-id-file" => {
                if cmd.machine_id_file.replace(value.into()).is_some() {
                    return None;
                }
            }
            _ => return None,
        }
    }
    if cmd.trust.is_empty() {
        return None;
    }
    cmd.token = token?.to_string();
    cmd.trust_any_anchor = trust_any_anchor;
    cmd.quiet = quiet;
    Some(cmd)
}

/// Sets a flag that may be given once; `None` the second time.
fn once(slot: &mut Option<String>, value: &str) -> Option<()> {
    slot.replace(value.to_string()).is_none().then_some(())
}
