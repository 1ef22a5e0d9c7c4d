//! `tka host`: an activation host's delegated signer certificate: the
//! host's key and request (`init`), the issuer's certificate for it
//! (`certify`), and its installation (`install`).

use crate::args::{HomeArg, PassArgs};
use crate::io::{write_file, LazyPass};
use crate::output::say;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use tka::issuer::host::{self, CertifyOptions, HostDir, HostInitOptions};
use tka::keys::Passphrase;
use tka::pki::{pem, CertInfo, Delegation};
use tka::{clock, Error, Result};

#[derive(Subcommand, Debug)]
pub enum HostCmd {
    /// Make the host's key and its host request (PKCS#10) in a new host directory
    #[command(
        after_help = "The key file (HOSTDIR/host.key, 0600) is unencrypted unless --passphrase-file is given: a host\n\
restarts unattended, like an SSH host key; --pkcs11 keeps the key on a token instead. An existing host key\n\
is never replaced. Prints `request: PATH`, the file to give the issuer.\n\n\
EXAMPLES:\n  tka host init --dir /var/lib/tka-host\n  tka host init --dir /var/lib/tka-host --subject \"CN=kms1.example.lan\" \
--pkcs11 'pkcs11:token=host;object=tka-host?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:pin.txt'"
    )]
    Init {
        /// Host directory (created; must not hold a host key yet)
        #[arg(long, value_name = "HOSTDIR")]
        dir: PathBuf,
        /// Generate the key on this PKCS#11 token (label: the URI's object, default "tka-host")
        #[arg(long, value_name = "URI")]
        pkcs11: Option<String>,
        /// Subject of the host request, RFC 4514
        #[arg(long, default_value = "CN=tka activation host")]
        subject: String,
        /// Key size
        #[arg(long, default_value_t = 2048, value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["2048", "3072", "4096"]), |s| s.parse::<usize>().unwrap()))]
        bits: usize,
        /// Encrypt the key file with the passphrase on the first line of FILE (the host then needs it to start)
        #[arg(long, value_name = "FILE", conflicts_with = "pkcs11")]
        passphrase_file: Option<PathBuf>,
        /// Accept a passphrase or PIN file that group or others can read
        #[arg(long)]
        insecure_key_permissions: bool,
    },
    /// Issue a host's delegated token-signer certificate from the issuer home's issuing CA
    #[command(
        after_help = "The certificate carries the tka delegation extension (critical): the products the host may\n\
sign for and the longest token lifetime; every machine refuses a token outside it. --seats records a cap\n\
on the machines the host activates (the host enforces it). --out gets the host certificate, then the\n\
issuing CA (no root).\n\n\
EXAMPLE:\n  tka host certify --home ~/tka-issuer --request host.csr --products acme,acme-cad --max-lifetime 180d --days 365 --out host.pem"
    )]
    Certify {
        #[command(flatten)]
        home: HomeArg,
        /// The host request (PKCS#10, from `tka host init`)
        #[arg(long, value_name = "HOSTREQ")]
        request: PathBuf,
        /// Products the host may sign tokens for, comma-separated
        #[arg(long, value_delimiter = ',', required = true)]
        products: Vec<String>,
        /// Longest token lifetime the host may sign: 90m, 12h, 180d, 2w, 3600s
        #[arg(long, value_name = "DURATION", value_parser = crate::args::token_duration)]
        max_lifetime: u64,
        /// Certificate lifetime in days (not past the issuing CA's)
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Cap on the machines the host activates at once (recorded in the certificate)
        #[arg(long, value_name = "N")]
        seats: Option<u32>,
        /// Output certificate chain (PEM)
        #[arg(long, value_name = "HOSTCERT")]
        out: PathBuf,
        /// Replace an existing --out file
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Install the host's certificate (from `tka host certify`) in its host directory
    #[command(
        after_help = "Checks that the certificate is a delegated token signer for this host's key, then writes\n\
HOSTDIR/chain.pem.\n\nEXAMPLE:\n  tka host install host.pem --dir /var/lib/tka-host"
    )]
    Install {
        /// The certificate chain file (PEM)
        #[arg(value_name = "HOSTCERT")]
        cert: PathBuf,
        /// Host directory
        #[arg(long, value_name = "HOSTDIR")]
        dir: PathBuf,
    },
}

pub fn run(cmd: HostCmd) -> Result<ExitCode> {
    match cmd {
        HostCmd::Init { dir, pkcs11, subject, bits, passphrase_file, insecure_key_permissions } => {
            let pkcs11 = pkcs11.as_deref().map(tka::pkcs11::Pkcs11Uri::parse).transpose()?;
            let passphrase =
                passphrase_file.map(|f| Passphrase::from_file(&f, insecure_key_permissions)).transpose()?;
            let opts = HostInitOptions { subject, bits, pkcs11 };
            let unlock = LazyPass::for_new_keys(passphrase, insecure_key_permissions);
            let h = unlock.retry(|u| HostDir::init(&dir, &opts, u, clock::now()))?;
            say(format!("dir: {}", h.dir().display()));
            say(format!("key: {}", h.key_ref()?));
            say(format!("request: {}", h.request_path().display()));
            Ok(ExitCode::SUCCESS)
        }
        HostCmd::Certify { home, request, products, max_lifetime, days, seats, out, force, pass } => {
            if !force && out.exists() {
                return Err(Error::Exists { path: out });
            }
            let home = home.open()?;
            let bytes = tka::fsutil::read_file(&request, host::MAX_HOST_REQUEST as u64)?;
            let req = host::read_host_request(&bytes)
                .map_err(|e| Error::Format { what: request.display().to_string(), detail: e.to_string() })?;
            let opts =
                CertifyOptions { delegation: Delegation { products, max_lifetime_secs: max_lifetime, seats }, days };
            let unlock = LazyPass::new(&pass);
            let chain = unlock.retry(|u| host::certify(&home, &req, &opts, u, clock::now()))?;
            let text: String = chain.iter().map(|d| pem::encode("CERTIFICATE", d)).collect();
            write_file(&out, &text, force)?;
            let cert = CertInfo::parse(&chain[0])?;
            say(format!("certificate: {}", out.display()));
            say(format!("subject: {}", cert.subject));
            say(format!("serial: {}", cert.serial_hex));
            say(format!("fingerprint: {}", cert.fingerprint));
            say(format!("expires: {}", clock::rfc3339(cert.not_after)));
            say(format!("delegation: {}", opts.delegation));
            Ok(ExitCode::SUCCESS)
        }
        HostCmd::Install { cert, dir } => {
            let mut h = HostDir::open(&dir)?;
            let installed = h.install(&cert)?;
            say(format!("chain: {}", h.chain_path().display()));
            say(format!("subject: {}", installed.subject));
            say(format!("fingerprint: {}", installed.fingerprint));
            say(format!("expires: {}", installed.not_after));
            say(format!("delegation: {}", installed.delegation));
            Ok(ExitCode::SUCCESS)
        }
    }
}
