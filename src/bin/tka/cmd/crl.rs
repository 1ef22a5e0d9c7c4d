//! `tka crl`: X.509 certificate revocation lists.

use crate::args::PassArgs;
use crate::io::{duration, first_cert, write_file, LazyPass};
use crate::output::say;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use tka::issuer::{CrlEntry, CrlParams};
use tka::pki::pem;
use tka::{clock, Error, Result};

#[derive(Subcommand, Debug)]
pub enum CrlCmd {
    /// Create a CRL signed by a CA (openssl reads it)
    #[command(
        after_help = "SERIAL is hex as `openssl x509 -serial` or `tka cert inspect` prints it; reasons are the RFC 5280\nnames (keyCompromise, superseded, cessationOfOperation, ...).\n\nEXAMPLE:\n  tka crl create --ca-cert ca.pem --ca-key ca.key --revoke 5A3F0C9E2B7D41A8:keyCompromise --next-update 30d --out crl.pem"
    )]
    Create {
        /// Certificate of the CA that issued the revoked certificates
        #[arg(long)]
        ca_cert: PathBuf,
        /// Key of that CA (file or pkcs11: URI)
        #[arg(long)]
        ca_key: PathBuf,
        /// A certificate to revoke: SERIAL[:reason] (repeat for several)
        #[arg(long, value_name = "SERIAL[:REASON]")]
        revoke: Vec<String>,
        /// When machines should expect the next CRL (e.g. 30d)
        #[arg(long, default_value = "30d")]
        next_update: String,
        /// cRLNumber [default: the current Unix time, so it increases without state]
        #[arg(long)]
        number: Option<u64>,
        /// Output file (PEM); `-` for standard output
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        pass: PassArgs,
    },
}

pub fn run(cmd: CrlCmd) -> Result<ExitCode> {
    match cmd {
        CrlCmd::Create { ca_cert, ca_key, revoke, next_update, number, out, force, pass } => {
            crate::io::check_new_out(&out, force)?;
            if crate::io::is_stdio(&ca_cert) {
                // The CRL number counter is kept beside the CA certificate file.
                return Err(Error::Usage(
                    "--ca-cert -: the CRL number is kept beside the CA certificate, so give its file".into(),
                ));
            }
            let now = clock::now();
            let entries = revoke.iter().map(|r| CrlEntry::parse(r, now)).collect::<Result<Vec<_>>>()?;
            let issuer = first_cert(&ca_cert)?;
            let key = LazyPass::new(&pass).load(&ca_key)?;
            let next_update = now + duration(&next_update)?;
            let params =
                CrlParams { this_update: now, next_update, number: tka::crl_number::take_next(&ca_cert, number, now)? };
            let der = tka::issuer::create_crl(&issuer, key.as_ref(), &entries, &params)?;
            write_file(&out, &pem::encode("X509 CRL", &der), force)?;
            say(format!("issuer: {}", issuer.subject));
            say(format!("number: {}", params.number));
            for e in &entries {
                say(format!("revoked: {}{}", e.serial_hex, e.reason.map(|r| format!(" ({r})")).unwrap_or_default()));
            }
            say(format!("next update: {}", clock::rfc3339(params.next_update)));
            say(format!("crl: {}", out.display()));
            Ok(ExitCode::SUCCESS)
        }
    }
}
