//! `tka ca`: create root, issuing-CA and signer certificates; re-issue
//! them (`renew`, `rekey`).

use crate::args::{CertDaysArg, PassArgs, ReissueArgs, SigningCaArgs};
use crate::io::{check_new_out, first_cert, read_certs, write_file, LazyPass};
use crate::output::say;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tka::issuer::{CertKind, CertRequest};
use tka::pki::{pem, CertInfo};
use tka::{clock, rotation, Result};

/// A new certificate: subject, lifetime and output file.
#[derive(Args, Debug, Clone)]
pub struct CertOut {
    /// Subject, RFC 4514 (e.g. "CN=Example Root CA,O=Example")
    #[arg(long)]
    pub subject: String,
    #[command(flatten)]
    pub days: CertDaysArg,
    /// Output certificate (PEM); `-` for standard output
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing file
    #[arg(long)]
    pub force: bool,
}

/// `--days` of `renew` and `rekey`.
const REISSUE_DAYS: &str =
    "Lifetime in days [default: the old certificate's; one ending after the CA is refused unless --shorten]";

#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Create a self-signed root CA certificate [default 7300 days]
    #[command(
        after_help = "EXAMPLE:\n  tka ca root --key root.key --subject \"CN=Example Root CA,O=Example\" --out root.pem"
    )]
    Root {
        /// The root's private key (file or pkcs11: URI)
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        cert: CertOut,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Create an issuing CA certificate signed by a CA [default 1825 days]
    #[command(
        after_help = "EXAMPLE:\n  tka ca intermediate --ca-cert root.pem --ca-key root.key --key ca.key --subject \"CN=Example Issuing CA\" --out ca.pem"
    )]
    Intermediate {
        #[command(flatten)]
        ca: SigningCaArgs,
        /// The new CA's private key, file or pkcs11: URI (its public half goes in the certificate)
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        cert: CertOut,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Re-issue an issuing-CA or signer certificate with the same key: new validity, new serial
    #[command(
        after_help = "EXAMPLE:\n  tka ca renew --cert signer.pem --ca-cert ca.pem --ca-key ca.key --out signer-new.pem",
        mut_arg("cert", |a| a.help("The certificate to renew")),
        mut_arg("days", |a| a.help(REISSUE_DAYS))
    )]
    Renew {
        #[command(flatten)]
        reissue: ReissueArgs,
    },
    /// Re-issue an issuing-CA or signer certificate for a new key (same subject and profile)
    #[command(
        after_help = "EXAMPLE:\n  tka key generate --bits 2048 --out signer2.key\n  tka ca rekey --cert signer.pem --key signer2.key --ca-cert ca.pem --ca-key ca.key --out signer2.pem",
        mut_arg("cert", |a| a.help("The certificate to replace")),
        mut_arg("days", |a| a.help(REISSUE_DAYS))
    )]
    Rekey {
        /// The new private key, file or pkcs11: URI (its public half goes in the certificate)
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        reissue: ReissueArgs,
    },
    /// Create a token-signer certificate (leaf, tka token-signing EKU) [default 400 days]
    #[command(
        after_help = "EXAMPLE:\n  tka ca signer --ca-cert ca.pem --ca-key ca.key --key signer.key --subject \"CN=Example Token Signer\" --out signer.pem"
    )]
    Signer {
        #[command(flatten)]
        ca: SigningCaArgs,
        /// The signer's private key (file or pkcs11: URI)
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        cert: CertOut,
        #[command(flatten)]
        pass: PassArgs,
    },
}

pub fn run(cmd: CaCmd) -> Result<ExitCode> {
    let now = clock::now();
    let (kind, key_path, ca, cert, pass, default_days) = match cmd {
        CaCmd::Root { key, cert, pass } => (CertKind::Root, key, None, cert, pass, tka::issuer::lifetimes::ROOT_DAYS),
        CaCmd::Intermediate { ca, key, cert, pass } => {
            (CertKind::Intermediate, key, Some(ca), cert, pass, tka::issuer::lifetimes::INTERMEDIATE_DAYS)
        }
        CaCmd::Signer { ca, key, cert, pass } => {
            (CertKind::Signer, key, Some(ca), cert, pass, tka::issuer::lifetimes::SIGNER_DAYS)
        }
        CaCmd::Renew { reissue } => return reissue_cert(reissue, None),
        CaCmd::Rekey { key, reissue } => return reissue_cert(reissue, Some(key)),
    };
    check_new_out(&cert.out, cert.force)?;
    let days = cert.days.days_or(default_days)?;
    let passphrase = LazyPass::new(&pass);
    let subject_key = passphrase.load(&key_path)?;
    let req = CertRequest {
        kind,
        subject: &cert.subject,
        not_before: now - 300,
        not_after: now + days * clock::DAY,
        delegation: None,
    };
    let der = match ca {
        None => tka::issuer::create_certificate(&req, subject_key.public_key(), None, subject_key.as_ref())?,
        Some(SigningCaArgs { ca_cert, ca_key }) => {
            let ca_der = read_certs(&ca_cert)?.remove(0);
            let ca_info = CertInfo::parse(&ca_der)?;
            let ca_key = passphrase.load(&ca_key)?;
            tka::issuer::create_certificate(&req, subject_key.public_key(), Some(&ca_info), ca_key.as_ref())?
        }
    };
    write_file(&cert.out, &pem::encode("CERTIFICATE", &der), cert.force)?;
    let info = CertInfo::parse(&der)?;
    say(format!("certificate: {}", cert.out.display()));
    say(format!("subject: {}", info.subject));
    say(format!("serial: {}", info.serial_hex));
    say(format!("fingerprint: {}", info.fingerprint));
    say(format!("expires: {}", clock::rfc3339(info.not_after)));
    Ok(ExitCode::SUCCESS)
}

/// `tka ca renew` (same key) and `tka ca rekey` (`new_key`).
fn reissue_cert(args: ReissueArgs, new_key: Option<PathBuf>) -> Result<ExitCode> {
    let ReissueArgs { cert, ca: SigningCaArgs { ca_cert, ca_key }, days, shorten, out, force, pass } = args;
    check_new_out(&out, force)?;
    let old = first_cert(&cert)?;
    let issuer = first_cert(&ca_cert)?;
    let passphrase = LazyPass::new(&pass);
    let issuer_key = passphrase.load(&ca_key)?;
    let new_key = new_key.map(|k| passphrase.load(&k)).transpose()?;
    let der = rotation::reissue(
        &old,
        new_key.as_ref().map(|k| k.public_key()),
        &issuer,
        issuer_key.as_ref(),
        days.days,
        shorten,
        clock::now(),
    )?;
    write_file(&out, &pem::encode("CERTIFICATE", &der), force)?;
    let info = CertInfo::parse(&der)?;
    say(format!("certificate: {}", out.display()));
    say(format!("subject: {}", info.subject));
    say(format!("serial: {}", info.serial_hex));
    say(format!("replaces serial: {}", old.serial_hex));
    let shortened =
        if shorten && info.not_after == issuer.not_after { " (shortened: ends with its issuer)" } else { "" };
    say(format!("expires: {}{shortened}", clock::rfc3339(info.not_after)));
    Ok(ExitCode::SUCCESS)
}
