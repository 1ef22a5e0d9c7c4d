//! `tka cert`: inspect certificates and decide when to renew them.

use crate::args::JsonArg;
use crate::io::{duration, first_cert, now_or};
use crate::output::{say, say_json};
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tka::issuer::IssuerHome;
use tka::pki::CertInfo;
use tka::rotation::{self, RenewalPolicy};
use tka::{clock, Error, Result};

#[derive(Subcommand, Debug)]
pub enum CertCmd {
    /// Whether a certificate should be renewed now; answers with the exit code
    #[command(
        after_help = "Default: renew once 66% of the lifetime has passed. With --home, the signer is also due when it\ncan no longer cover the home's standard token lifetime.\n\nEXAMPLES:\n  tka cert needs-renewal signer.pem --expires-in 30d            # exit 1: not due yet\n  tka cert needs-renewal --home ~/tka-issuer --role signer      # exit 1: not due yet"
    )]
    NeedsRenewal {
        /// Certificate file (PEM or DER; the first certificate is checked); `-` for standard input
        #[arg(required_unless_present = "home", conflicts_with = "home")]
        cert: Option<PathBuf>,
        /// Check a certificate of this issuer home instead
        #[arg(long)]
        home: Option<PathBuf>,
        /// Which certificate of the home
        #[arg(long, requires = "home", default_value = "signer", value_parser = ["root", "ca", "signer", "cross"])]
        role: String,
        /// Renew when it expires within this duration (e.g. 30d)
        #[arg(long, conflicts_with = "percent")]
        expires_in: Option<String>,
        /// Renew when this percentage of its lifetime has passed
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
        percent: Option<u8>,
        /// Evaluate at this time (RFC 3339) instead of now
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Show what a certificate says (every certificate in the file)
    #[command(after_help = "EXAMPLES:\n  tka cert inspect root.pem\n  tka cert inspect ~/tka-issuer/chain.pem --json")]
    Inspect {
        /// Certificate file (PEM or DER); `-` for standard input
        cert: PathBuf,
        #[command(flatten)]
        out: JsonArg,
    },
}

pub fn run(cmd: CertCmd) -> Result<ExitCode> {
    match cmd {
        CertCmd::NeedsRenewal { cert, home, role, expires_in, percent, at, out } => {
            // Exit codes like step: 0 renew now, 1 not yet, 2 error (never 1 for an error).
            let result = (|| {
                let now = now_or(&at)?;
                let policy = match (&expires_in, percent) {
                    (Some(d), _) => Some(RenewalPolicy::ExpiresIn(duration(d)?)),
                    (None, Some(p)) => Some(RenewalPolicy::Percent(p)),
                    (None, None) => None,
                };
                let (path, check) = match (cert, home) {
                    (Some(c), _) => {
                        let info = first_cert(&c)?;
                        let policy = policy.unwrap_or(RenewalPolicy::Percent(rotation::DEFAULT_RENEW_PERCENT));
                        (c, rotation::needs_renewal(&info, policy, now)?)
                    }
                    (None, Some(h)) => {
                        let home = IssuerHome::open(&h)?;
                        let rel = match role.as_str() {
                            "root" => home.config.root_cert.clone(),
                            "ca" => home.config.ca_cert.clone(),
                            "cross" => home
                                .config
                                .cross_cert
                                .clone()
                                .ok_or_else(|| Error::Usage(format!("{} has no cross-certificate", h.display())))?,
                            _ => home.config.signer_cert.clone(),
                        };
                        let path = home.path(&rel);
                        let check = match (role.as_str(), policy) {
                            ("signer", None) => rotation::signer_needs_renewal(&home, now)?,
                            (_, p) => rotation::needs_renewal(
                                &first_cert(&path)?,
                                p.unwrap_or(RenewalPolicy::Percent(rotation::DEFAULT_RENEW_PERCENT)),
                                now,
                            )?,
                        };
                        (path, check)
                    }
                    (None, None) => return Err(Error::Usage("give a certificate file or --home DIR".into())),
                };
                Ok((path, check))
            })();
            let (path, check) = result.map_err(|e| match e {
                Error::Verify(v) => Error::Format { what: "certificate".into(), detail: v.to_string() },
                other => other,
            })?;
            if out.json {
                say_json(&json!({"certificate": path, "renew": check.renew, "reason": check.reason,
                    "not_after": clock::rfc3339(check.not_after), "remaining_days": check.remaining_secs.div_euclid(clock::DAY),
                    "elapsed_percent": check.elapsed_percent}));
            } else {
                let verdict = if check.renew { "renew now" } else { "not yet" };
                say(format!("{}: {verdict}: {}", path.display(), check.reason));
            }
            Ok(if check.renew { ExitCode::SUCCESS } else { crate::outcome::no() })
        }
        CertCmd::Inspect { cert, out } => {
            let ders = crate::io::read_certs(&cert)?;
            let infos = ders.iter().map(|d| CertInfo::parse(d)).collect::<std::result::Result<Vec<_>, _>>()?;
            let rows: Vec<serde_json::Value> = infos.iter().map(cert_json).collect();
            if out.json {
                say_json(&json!(rows));
            } else {
                for (i, r) in rows.iter().enumerate() {
                    if i > 0 {
                        say("");
                    }
                    for (k, v) in r.as_object().expect("object") {
                        let v = match (k.as_str(), &infos[i].delegation) {
                            ("delegation", Some(d)) => d.to_string(),
                            _ => match v {
                                serde_json::Value::String(s) => s.clone(),
                                serde_json::Value::Null => "-".into(),
                                other => other.to_string(),
                            },
                        };
                        say(format!("{k}: {v}"));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn cert_json(c: &CertInfo) -> serde_json::Value {
    let bits = c.rsa_public_key().ok().map(|k| tka::keys::public_bits(&k));
    json!({
        "subject": c.subject,
        "issuer": c.issuer,
        "role": rotation::cert_role(c),
        "serial": c.serial_hex,
        "fingerprint": c.fingerprint,
        "not_before": clock::rfc3339(c.not_before),
        "not_after": clock::rfc3339(c.not_after),
        "ca": c.is_ca,
        "path_len": c.path_len,
        "key_usage": c.key_usage.map(|(ds, cs, crl)| {
            [("digitalSignature", ds), ("keyCertSign", cs), ("cRLSign", crl)]
                .iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect::<Vec<_>>().join(",")
        }),
        "extended_key_usage": c.eku.as_ref().map(|e| e.join(",")),
        "key_bits": bits,
        "subject_key_id": c.ski.as_deref().map(hex),
        "authority_key_id": c.aki.as_deref().map(hex),
        "delegation": c.delegation,
    })
}
