//! `tka trust`: the roots this machine trusts.

use crate::args::{JsonArg, StoreArgs};
use crate::io::open_store;
use crate::output::{products, say, say_err, say_json, say_row};
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tka::pki::CertInfo;
use tka::trust::{ProductScope, TrustRootOptions};
use tka::{clock, Error, Result};

#[derive(Subcommand, Debug)]
pub enum TrustCmd {
    /// Trust a root certificate on this machine
    #[command(
        after_help = "Shows the root's SHA-256 fingerprint. Compare it with the one the issuer gave you\n(`tka issuer init` printed it), or let tka compare it with --fingerprint. Without --fingerprint,\non a terminal, tka asks before trusting the root (--yes skips the question); off a terminal it\ntrusts the root and says on standard error that nobody checked the fingerprint.\n\nEXAMPLES:\n  tka trust add root.pem --yes\n  tka trust add root.pem --chain chain.pem --yes\n  tka trust add root.pem --fingerprint \"$(openssl x509 -in root.pem -noout -fingerprint -sha256)\""
    )]
    Add {
        /// Root certificate (PEM or DER); `-` for standard input
        root: PathBuf,
        /// Refuse unless the root's SHA-256 fingerprint is this: hex in any case, colons or spaces
        /// allowed, or openssl's `sha256 Fingerprint=AB:CD:...` line
        #[arg(long, value_name = "SHA256")]
        fingerprint: Option<String>,
        /// Trust the root without asking (scripts); the fingerprint is still shown
        #[arg(long, conflicts_with = "fingerprint")]
        yes: bool,
        /// Cross-certificate for the new root, signed by a root this store already trusts (root rollover)
        #[arg(long, value_name = "CROSS.pem")]
        cross: Option<PathBuf>,
        /// The issuer's chain (PEM: signer and intermediate certificates, `tka issuer init` wrote
        /// HOME/chain.pem), kept as known certificates so compact tokens (`--compact`) activate
        /// without --chain. Not trusted: a token's chain must still end at a trusted root
        #[arg(long, value_name = "CHAIN.pem")]
        chain: Option<PathBuf>,
        /// Trust this root only for these products (comma-separated). Default: a trusted root keeps
        /// its products, a root added with --cross takes those of the root that signed the
        /// cross-certificate, any other root may activate every product
        #[arg(long, value_name = "P1,P2", value_delimiter = ',')]
        products: Option<Vec<String>>,
        /// Trust this root for every product (drops a product limit it had)
        #[arg(long, conflicts_with = "products")]
        all_products: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List trusted roots
    #[command(after_help = "EXAMPLES:\n  tka trust list\n  tka trust list --json")]
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Stop trusting a root (by fingerprint or a unique prefix of it)
    #[command(after_help = "EXAMPLES:\n  tka trust remove 3f2a9c")]
    Remove {
        /// Fingerprint
        fingerprint: String,
        /// Allow removing the last trusted root
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub fn run(cmd: TrustCmd) -> Result<ExitCode> {
    match cmd {
        TrustCmd::Add { root, fingerprint, yes, cross, chain, products, all_products, store } => {
            // A failed `trust add` leaves no new store behind.
            let args = store.clone();
            crate::io::undo_new_store(&args, || {
                trust_add(root, fingerprint, yes, cross, chain, products, all_products, store)
            })
        }
        TrustCmd::List { store, out } => {
            let store = crate::io::open_existing_store(&store)?;
            let roots = store.roots()?;
            let infos: Vec<_> = roots.iter().map(|r| CertInfo::parse(&r.der)).collect::<std::result::Result<_, _>>()?;
            if out.json {
                let rows: Vec<_> = infos
                    .iter()
                    .zip(&roots)
                    .map(|(c, r): (&CertInfo, _)| {
                        json!({"subject": c.subject, "fingerprint": c.fingerprint,
                        "not_after": clock::rfc3339(c.not_after), "products": r.products,
                        "vouched_by": r.vouched_by()})
                    })
                    .collect();
                say_json(&json!(rows));
            } else {
                for (c, r) in infos.iter().zip(&roots) {
                    let expires = format!("expires {}", clock::rfc3339(c.not_after));
                    let products = format!("products {}", products(r.products.as_deref()));
                    match r.vouched_by() {
                        Some(by) => say_row(&[
                            &c.fingerprint,
                            &c.subject,
                            &expires,
                            &products,
                            &format!("through a cross-certificate from {by}"),
                        ]),
                        None => say_row(&[&c.fingerprint, &c.subject, &expires, &products]),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TrustCmd::Remove { fingerprint, force, store } => {
            let store = open_store(&store)?;
            store.lock()?.remove_root(&fingerprint, force)?;
            say(format!("removed: {fingerprint}"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

// Each argument is one flag of `trust add`.
#[allow(clippy::too_many_arguments)]
fn trust_add(
    root: PathBuf,
    fingerprint: Option<String>,
    yes: bool,
    cross: Option<PathBuf>,
    chain: Option<PathBuf>,
    products: Option<Vec<String>>,
    all_products: bool,
    store: StoreArgs,
) -> Result<ExitCode> {
    let ders = crate::io::read_certs(&root)?;
    if ders.len() != 1 {
        return Err(Error::Usage(format!(
            "{} holds {} certificates; give exactly one root",
            root.display(),
            ders.len()
        )));
    }
    let cross_der = match &cross {
        Some(c) => {
            let d = crate::io::read_certs(c)?;
            if d.len() != 1 {
                return Err(Error::Usage(format!(
                    "{} holds {} certificates; give exactly one cross-certificate",
                    c.display(),
                    d.len()
                )));
            }
            d.into_iter().next()
        }
        None => None,
    };
    let chain_ders = match &chain {
        Some(c) => crate::io::read_certs(c)?,
        None => Vec::new(),
    };
    if let Some(f) = &fingerprint {
        // A fingerprint that is no fingerprint is a usage error before anything is read.
        tka::pki::RootFingerprint::parse(f)?;
    }
    let info = CertInfo::parse(&ders[0])?;
    let unchecked = fingerprint.is_none() && !yes && cross.is_none() && !confirm_root(&info)?;
    let store = open_store(&store)?;
    let opts = TrustRootOptions {
        fingerprint: fingerprint.as_deref(),
        cross: cross_der.as_deref(),
        products: match (&products, all_products) {
            (Some(p), _) => ProductScope::Only(p),
            (None, true) => ProductScope::All,
            (None, false) => ProductScope::Unchanged,
        },
    };
    let added = tka::trust::trust_root(&store, &ders[0], &opts, clock::now())?;
    // The root itself is trusted above; the rest are known certificates.
    let known: Vec<Vec<u8>> = chain_ders.into_iter().filter(|d| *d != ders[0]).collect();
    let new_known = if known.is_empty() { 0 } else { store.add_certificates(&known)? };
    if unchecked {
        say_err(format!(
            "note: trusting {} (SHA-256 fingerprint {}) unchecked: compare the fingerprint with the issuer's, \
             or pass --fingerprint to have it compared (--yes: no note)",
            added.root.subject, added.root.fingerprint
        ));
    }
    if crate::output::json_mode() {
        say_json(&json!({"subject": added.root.subject, "fingerprint": added.root.fingerprint,
            "vouched_by": added.vouched_by, "products": added.products, "known_certificates_added": new_known}));
    } else {
        say(format!("trusted: {}", added.root.subject));
        say(format!("fingerprint: {}", added.root.fingerprint));
        say(format!("vouched for by: {}", added.vouched_by));
        say(format!("products: {}", crate::output::products(added.products.as_deref())));
        if chain.is_some() {
            say(format!("known certificates added: {new_known}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Trust on first use with eyes open: on a terminal, the root's subject and
/// fingerprint and a question (anything but `y`/`yes` refuses); `true` when
/// confirmed there, `false` off a terminal (nobody compared the fingerprint:
/// the caller says so once the root is trusted).
fn confirm_root(root: &CertInfo) -> Result<bool> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    say_err(format!("root: {}", root.subject));
    say_err(format!("SHA-256 fingerprint: {}", root.fingerprint));
    let answer = crate::io::ask("Is this the fingerprint the issuer gave you? Trust this root [y/N]: ")?;
    if matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes") {
        return Ok(true);
    }
    Err(Error::Refused(format!("root {} not trusted: not confirmed", root.subject)))
}
