//! `tka trust`: the roots this machine trusts.

use crate::args::{JsonArg, StoreArgs};
use crate::io::open_store;
use crate::output::{products, say, say_json, say_row};
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
    #[command(after_help = "EXAMPLE:\n  tka trust add root.pem --fingerprint 3f2a...e9")]
    Add {
        /// Root certificate (PEM or DER); `-` for standard input
        root: PathBuf,
        /// Refuse unless the root's SHA-256 fingerprint is this (hex, colons allowed)
        #[arg(long)]
        fingerprint: Option<String>,
        /// Cross-certificate for the new root, signed by a root this store already trusts (root rollover)
        #[arg(long, value_name = "CROSS.pem")]
        cross: Option<PathBuf>,
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
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Stop trusting a root (by fingerprint or a unique prefix of it)
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
        TrustCmd::Add { root, fingerprint, cross, products, all_products, store } => {
            // A failed `trust add` leaves no new store behind.
            let args = store.clone();
            crate::io::undo_new_store(&args, || trust_add(root, fingerprint, cross, products, all_products, store))
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

fn trust_add(
    root: PathBuf,
    fingerprint: Option<String>,
    cross: Option<PathBuf>,
    products: Option<Vec<String>>,
    all_products: bool,
    store: StoreArgs,
) -> Result<ExitCode> {
    let store = open_store(&store)?;
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
    say(format!("trusted: {}", added.root.subject));
    say(format!("fingerprint: {}", added.root.fingerprint));
    say(format!("vouched for by: {}", added.vouched_by));
    say(format!("products: {}", crate::output::products(added.products.as_deref())));
    Ok(ExitCode::SUCCESS)
}
