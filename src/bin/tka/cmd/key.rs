//! `tka key`: generate private keys (files or on a PKCS#11 token).

use crate::args::{NewKeyPassArgs, PassArgs};
use crate::io::{new_key_passphrase, protection, LazyPass};
use crate::output::say;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use tka::keys::{save_private_key, KeyRef, SoftwareKey};
use tka::{Error, Result};

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Generate an RSA key pair and write the private key (mode 0600), or generate it on a PKCS#11 token
    #[command(
        after_help = "With --out pkcs11:token=T;object=LABEL?module-path=M.so the key pair is generated on the token \
(private key sensitive and not extractable); the new key's URI is printed. The user PIN comes from the URI's \
pin-source=file:PATH, TKA_PKCS11_PIN, or a prompt.\n\nEXAMPLES:\n  tka key generate --bits 4096 --out root.key --passphrase-file pass.txt\n  TKA_PASSPHRASE=... tka key generate --out signer.key\n  tka key generate --bits 4096 --out 'pkcs11:token=ca;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:pin.txt'"
    )]
    Generate {
        /// Key size
        #[arg(long, default_value_t = 3072, value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["2048", "3072", "4096"]), |s| s.parse::<usize>().unwrap()))]
        bits: usize,
        /// Output file, or a pkcs11: URI naming the token and the new key's label (object=)
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file (never a key on a token)
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        pass: NewKeyPassArgs,
    },
}

pub fn run(cmd: KeyCmd) -> Result<ExitCode> {
    match cmd {
        KeyCmd::Generate { bits, out, force, pass } => {
            if let KeyRef::Pkcs11(uri) = KeyRef::from_path(&out)? {
                if force {
                    return Err(Error::Usage(
                        "--force cannot replace a key on a token: choose a new object= label".into(),
                    ));
                }
                let none = PassArgs {
                    passphrase_file: None,
                    insecure_key_permissions: pass.insecure_key_permissions,
                    allow_config_module_path: false,
                };
                let unlock = LazyPass::with_passphrase(&none, None);
                let (new_uri, public) =
                    unlock.retry(|u| tka::pkcs11::generate_rsa_key(&uri, bits, &u.pkcs11_options()))?;
                say(format!("key: {new_uri}"));
                say(format!("bits: {}", tka::keys::public_bits(&public)));
                return Ok(ExitCode::SUCCESS);
            }
            if crate::io::is_stdio(&out) {
                return Err(Error::Usage(
                    "--out -: a private key is not written to standard output; give a file (written 0600)".into(),
                ));
            }
            if !force && out.exists() {
                return Err(Error::Exists { path: out });
            }
            let passphrase = new_key_passphrase(&pass)?;
            let key = SoftwareKey::generate(bits)?;
            save_private_key(&out, &key, protection(&passphrase), force)?;
            say(format!("key: {}", out.display()));
            Ok(ExitCode::SUCCESS)
        }
    }
}
