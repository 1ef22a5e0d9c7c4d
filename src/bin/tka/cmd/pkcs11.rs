//! `tka pkcs11`: what a PKCS#11 module offers.

use crate::args::JsonArg;
use crate::io::{env_pin, prompt};
use crate::output::print_pkcs11_list;
use clap::Subcommand;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use tka::{Error, Result};

#[derive(Subcommand, Debug)]
pub enum Pkcs11Cmd {
    /// Show the slots, tokens, keys and certificates a PKCS#11 module offers, with their URIs
    #[command(
        after_help = "Private keys are listed only with --login (PIN from TKA_PKCS11_PIN, --pin-file or a prompt).\n\nEXAMPLE:\n  tka pkcs11 list --module /usr/lib/softhsm/libsofthsm2.so --login"
    )]
    List {
        /// The PKCS#11 module (shared library)
        #[arg(long, env = "TKA_PKCS11_MODULE")]
        module: PathBuf,
        /// Log in to list private keys too
        #[arg(long)]
        login: bool,
        /// Read the user PIN from the first line of FILE (else TKA_PKCS11_PIN, else a prompt)
        #[arg(long, value_name = "FILE")]
        pin_file: Option<PathBuf>,
        /// Accept a PIN file that group or others can read
        #[arg(long)]
        insecure_key_permissions: bool,
        #[command(flatten)]
        out: JsonArg,
    },
}

pub fn run(cmd: Pkcs11Cmd) -> Result<ExitCode> {
    match cmd {
        Pkcs11Cmd::List { module, login, pin_file, insecure_key_permissions, out } => {
            let pin = match (login, pin_file) {
                (false, _) => None,
                (true, Some(f)) => Some(tka::keys::Passphrase::from_file(&f, insecure_key_permissions)?),
                (true, None) => match env_pin() {
                    Some(p) => Some(p),
                    None if std::io::stdin().is_terminal() => Some(tka::keys::Passphrase::new(prompt("User PIN: ")?)),
                    None => return Err(Error::Usage("--login needs a PIN: --pin-file FILE or TKA_PKCS11_PIN".into())),
                },
            };
            let tokens = tka::pkcs11::list(&module, pin.as_ref())?;
            print_pkcs11_list(&tokens, out.json);
            Ok(ExitCode::SUCCESS)
        }
    }
}
