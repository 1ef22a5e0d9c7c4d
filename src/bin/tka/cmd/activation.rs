//! The machine side's top-level verbs: `tka activate`, `status`, `list`
//! and `deactivate`, over this machine's activation store.

use crate::args::{JsonArg, MachineArgs, RootPinArgs, StoreArgs};
use crate::io::{identify_in, is_stdio, open_existing_store, open_input, open_store, read_certs, read_token_arg};
use crate::output::{
    bundle_json, print_bundle_scan, print_status, print_verified, say, say_json, say_row, status_json, verified_json,
};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tka::activation::{self, ClockMark, ProductStatus};
use tka::{clock, token, Error, Result, VerifyError};

/// `--clock-tolerance`: a duration within the library's limit.
fn clock_tolerance(s: &str) -> std::result::Result<i64, String> {
    tka::activation::check_clock_tolerance(tka::clock::parse_duration(s)?).map_err(|e| e.to_string())
}

#[derive(Args, Debug)]
pub struct ActivateArgs {
    /// Token file, `-` for standard input, or the token text itself
    #[arg(required_unless_present_any = ["bundle", "online"])]
    pub token: Option<String>,
    /// Activate online: send this machine's request and a product key to the activation service
    /// at URL (http://HOST:PORT or https://HOST:PORT, `tka serve`) and install the token it returns
    #[arg(long, value_name = "URL", conflicts_with_all = ["token", "bundle", "chain"], requires = "product")]
    pub online: Option<String>,
    /// With --online: the product key (XXXXX-XXXXX-XXXXX-XXXXX-XXXXX); visible to other users in the
    /// process list, prefer --key-file or TKA_ACTIVATION_KEY
    #[arg(long, value_name = "KEY", env = "TKA_ACTIVATION_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// With --online: read the product key from the first line of FILE
    #[arg(long, value_name = "FILE", requires = "online", conflicts_with = "key")]
    pub key_file: Option<PathBuf>,
    /// With an https:// --online URL: check the service's certificate as a web certificate
    /// against these CA certificates (PEM) instead of against the store's trusted roots
    #[arg(long, value_name = "PEM", requires = "online")]
    pub ca_file: Option<PathBuf>,
    /// Take this machine's token from a bundle (`-`: standard input) written by `token issue-bulk --bundle`: every
    /// line labelled for this machine is verified, the first that verifies is installed
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub bundle: Option<PathBuf>,
    /// Only a token for this product: a token for another is refused (and nothing installed);
    /// with --bundle, lines for other products are skipped unchecked; with --online, the product
    /// to activate
    #[arg(long)]
    pub product: Option<String>,
    /// Certificates (PEM, `-` for standard input: the issuer's signer and intermediate certificates) a compact token is
    /// verified with; kept in the store when the token activates, so later compact tokens from
    /// the same issuer need no --chain. Not trusted: the chain must still end at a trusted root
    #[arg(long, value_name = "FILE", conflicts_with = "bundle")]
    pub chain: Option<PathBuf>,
    /// Refuse as "clock moved backwards" when the clock is more than this far behind the latest
    /// time the store has seen (e.g. 12h); at most 1d
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = clock_tolerance)]
    pub clock_tolerance: i64,
    #[command(flatten)]
    pub pins: RootPinArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub machine: MachineArgs,
    #[command(flatten)]
    pub out: JsonArg,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Only this product
    #[arg(long)]
    pub product: Option<String>,
    /// Evaluate at this time (RFC 3339) instead of now; read-only. A time before the latest the
    /// store has seen is reported as "clock moved backwards"
    #[arg(long)]
    pub at: Option<String>,
    #[command(flatten)]
    pub pins: RootPinArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub machine: MachineArgs,
    #[command(flatten)]
    pub out: JsonArg,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub out: JsonArg,
}

#[derive(Args, Debug)]
pub struct DeactivateArgs {
    /// The product
    #[arg(long)]
    pub product: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn activate(args: ActivateArgs) -> Result<ExitCode> {
    if args.online.is_some() {
        return activate_online(args);
    }
    let ActivateArgs { token, bundle, product, chain, clock_tolerance, pins, store, machine, out, .. } = args;
    let chain = match &chain {
        Some(path) => read_certs(path)?,
        None => Vec::new(),
    };
    let store = open_store(&store)?;
    let ident = |product: &str| identify_in(product, &machine, Some(&store));
    let (pins, now) = (&pins.root_fingerprints, clock::now());
    let (v, from) = match (token, bundle) {
        (Some(t), _) => {
            let text = read_token_arg(&t)?;
            if let Some(p) = &product {
                // The guard: another product's token is refused before anything is read or written.
                let (_, claims) = token::decode_unverified(&text)?;
                if &claims.aud != p {
                    return Err(VerifyError::WrongProduct { expected: p.clone(), found: claims.aud }.into());
                }
            }
            (activation::activate_with_chain(&store, &text, &chain, &ident, pins, now, clock_tolerance)?, None)
        }
        (None, Some(b)) => {
            let name = b.display().to_string();
            let opts = activation::BundleOptions {
                name: &name,
                product: product.as_deref(),
                pinned_roots: pins,
                now,
                clock_tolerance,
            };
            let a = if is_stdio(&b) {
                let stdin = crate::io::take_stdin()?;
                activation::activate_from_bundle(&store, stdin.lock(), &ident, &opts)?
            } else {
                let reader = std::io::BufReader::with_capacity(1 << 16, open_input(&b)?);
                activation::activate_from_bundle(&store, reader, &ident, &opts)?
            };
            (a.verified, Some((a.line, a.scan)))
        }
        (None, None) => return Err(Error::Usage("give a TOKEN or --bundle FILE".into())),
    };
    crate::io::remember_container_warning(&store);
    if out.json {
        let mut j = verified_json(&v);
        if let Some((line, scan)) = &from {
            j["bundle"] = bundle_json(*line, scan);
        }
        say_json(&j);
    } else {
        say(format!("activated: {}", v.claims.aud));
        if let Some((line, scan)) = &from {
            print_bundle_scan(*line, scan);
        }
        print_verified(&v);
    }
    Ok(ExitCode::SUCCESS)
}

/// `tka activate --online URL`: the key is checked (its check character)
/// before anything else, so a typo exits 2 with no request sent.
fn activate_online(args: ActivateArgs) -> Result<ExitCode> {
    let ActivateArgs { online, key, key_file, ca_file, product, clock_tolerance, pins, store, machine, out, .. } = args;
    let (url, product) = (online.unwrap_or_default(), product.unwrap_or_default());
    let text = match (key_file, key) {
        (Some(f), _) => {
            let bytes = tka::fsutil::read_file(&f, 1024)?;
            String::from_utf8_lossy(&bytes).lines().next().unwrap_or("").to_string()
        }
        (None, Some(k)) => k,
        (None, None) => {
            return Err(Error::Usage(
                "--online needs a product key: --key-file FILE, TKA_ACTIVATION_KEY or --key".into(),
            ))
        }
    };
    let key = tka::product_key::ProductKey::parse(&text)?;
    let ca_roots = match &ca_file {
        Some(p) => Some(tka::issuer::read_cert_chain(p)?),
        None => None,
    };
    let store = open_store(&store)?;
    let ident = |product: &str| crate::io::identify(product, &machine);
    let opts = tka::activation::online::OnlineOptions {
        url,
        product,
        key,
        pinned_roots: pins.root_fingerprints,
        ca_roots,
        timeouts: Default::default(),
        clock_tolerance,
    };
    let v = tka::activation::online::activate_online(&store, &ident, &opts, &clock::now)?;
    if out.json {
        say_json(&verified_json(&v));
    } else {
        say(format!("activated: {}", v.claims.aud));
        print_verified(&v);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let StatusArgs { product, at, pins, store, machine, out } = args;
    let store = open_existing_store(&store)?;
    // An explicit time is asked about, not the clock: it raises no
    // mark and has no clock jitter to forgive.
    let (now, mark) = match &at {
        Some(s) => (clock::parse_rfc3339(s).map_err(Error::Usage)?, ClockMark::At),
        None => (clock::now(), ClockMark::Raise),
    };
    let products = product.map(|p| vec![p]);
    let ident = |p: &str| identify_in(p, &machine, Some(&store));
    let rows = activation::statuses(&store, products.as_deref(), &ident, &pins.root_fingerprints, now, mark)?;
    let all_ok = rows.iter().all(ProductStatus::is_active);
    if out.json {
        say_json(&json!(rows.iter().map(status_json).collect::<Vec<_>>()));
    } else if rows.is_empty() {
        say("no products are activated on this machine");
    } else {
        for st in &rows {
            print_status(st);
        }
    }
    Ok(if all_ok && !rows.is_empty() { ExitCode::SUCCESS } else { crate::outcome::no() })
}

pub fn list(args: ListArgs) -> Result<ExitCode> {
    let ListArgs { store, out } = args;
    let store = open_existing_store(&store)?;
    let tokens = store.tokens()?;
    if out.json {
        let rows: Vec<_> = tokens
            .iter()
            .map(|t| {
                let claims = token::decode_unverified(&t.token).ok().map(|(_, c)| c);
                // Serial and expiry are what the stored token claims, not
                // verified here (`tka status` verifies): labelled as such.
                json!({"product": t.product, "installed_at": clock::rfc3339(t.installed_at),
                       "unverified_serial": claims.as_ref().map(|c| c.jti.clone()),
                       "unverified_expires": claims.as_ref().and_then(|c| c.exp).map(clock::rfc3339)})
            })
            .collect();
        say_json(&json!(rows));
    } else {
        for t in &tokens {
            say_row(&[&t.product, &format!("installed {}", clock::rfc3339(t.installed_at))]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn deactivate(args: DeactivateArgs) -> Result<ExitCode> {
    let DeactivateArgs { product, store } = args;
    let store = open_existing_store(&store)?;
    if activation::deactivate(&store, &product)? {
        say(format!("deactivated: {product}"));
        Ok(ExitCode::SUCCESS)
    } else {
        Err(VerifyError::NotActivated { product }.into())
    }
}
