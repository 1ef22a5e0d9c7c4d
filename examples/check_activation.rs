//! An application checking its activation at start, built against the
//! verifier-only library (no issuer code, no SQLite, no clap, no PKCS#11,
//! no aws-lc):
//!
//! ```text
//! cargo build --release --no-default-features --example check_activation
//! target/release/examples/check_activation STORE PRODUCT ROOT_FINGERPRINT
//! ```
//!
//! It reads this machine's identity for PRODUCT (`TKA_MACHINE_ID` names an
//! explicit one, as for the `tka` command), verifies the product's token in
//! the activation store STORE against the vendor root pinned by
//! ROOT_FINGERPRINT, raises the store's clock mark, and exits 0 (activated)
//! or 1 (not activated, with the reason) or 2 (could not check).
//! A real application compiles the fingerprint in instead of taking it as
//! an argument.

use std::process::ExitCode;
use tka::activation;
use tka::machine::{IdentifyOptions, MachineIdentity};
use tka::pki::RootFingerprint;
use tka::store::Store;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, product, fingerprint] = args.as_slice() else {
        eprintln!("usage: check_activation STORE PRODUCT ROOT_FINGERPRINT");
        return ExitCode::from(2);
    };
    let pins = match RootFingerprint::parse(fingerprint) {
        Ok(pin) => [pin],
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let machine = match MachineIdentity::identify(product, &IdentifyOptions::from_env()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match Store::open(std::path::Path::new(store)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match activation::check_activated(&store, product, &machine, &pins, tka::clock::now()) {
        Ok(verified) => {
            let until = verified.claims.exp.map_or("no expiry".to_string(), tka::clock::rfc3339);
            println!("activated: {product} (token {}, until {until})", verified.claims.jti);
            ExitCode::SUCCESS
        }
        Err(e) if e.is_verdict() => {
            println!("not activated: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
