//! `tka revocations`: token revocation lists (issuer side) and importing
//! revocation data (machine side).

use crate::args::{HomeArg, JsonArg, LedgerLocationArg, MachineArgs, PassArgs, StoreArgs};
use crate::io::{check_new_out, duration, now_or, open_store, read_bytes_arg, read_certs, write_file, LazyPass};
use crate::output::{error_kind, say, say_err, say_json, say_row};
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use tka::revocation::{self, ImportOptions, RevokedToken};
use tka::{clock, Result};

#[derive(Subcommand, Debug)]
pub enum RevocationsCmd {
    /// Create a signed token revocation list from the ledger's revoked tokens (or --serial)
    #[command(
        after_help = "Signed by the home's current signer like a token; its sequence number (kept in DIR/revocations.json)\nincreases with every list.\n\nEXAMPLE:\n  tka revocations create --home ~/tka-issuer --out revoked.jws --next-update 30d"
    )]
    Create {
        #[command(flatten)]
        home: HomeArg,
        /// Output file; `-` for standard output
        #[arg(long)]
        out: PathBuf,
        /// When machines should expect the next list (e.g. 30d)
        #[arg(long, default_value = "30d")]
        next_update: String,
        /// Revoke this token serial too: SERIAL[:reason] (repeat for several)
        #[arg(long, value_name = "SERIAL[:REASON]")]
        serial: Vec<String>,
        /// Replace an existing file
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        pass: PassArgs,
        #[command(flatten)]
        ledger: LedgerLocationArg,
    },
    /// Install a CRL or token revocation list on this machine and re-check installed tokens
    #[command(
        after_help = "A CRL must be signed by a trusted root, or by a CA certificate given with --ca-cert (or as\nCERTIFICATE blocks in FILE) that chains to a trusted root. A list must be signed under a trusted\nroot and not be older (lower sequence) than the installed one. Stale data is installed with a\nwarning unless --require-fresh.\n\nEXAMPLES:\n  tka revocations import revoked.jws\n  tka revocations import crl.pem --ca-cert ca.pem --require-fresh"
    )]
    Import {
        /// CRL (PEM or DER) or token revocation list (JWS); `-` for standard input
        file: PathBuf,
        /// CA certificate(s) that may have signed the CRL (PEM; e.g. the issuing CA)
        #[arg(long)]
        ca_cert: Vec<PathBuf>,
        /// Refuse data past its next-update time
        #[arg(long)]
        require_fresh: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        machine: MachineArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// List installed CRLs and token revocation lists
    #[command(after_help = "EXAMPLES:\n  tka revocations list\n  tka revocations list --require-fresh --json")]
    List {
        /// Exit 1 if anything installed is past its next-update time
        #[arg(long)]
        require_fresh: bool,
        /// Evaluate at this time (RFC 3339) instead of now
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        out: JsonArg,
    },
}

pub fn run(cmd: RevocationsCmd) -> Result<ExitCode> {
    match cmd {
        RevocationsCmd::Create { home, out, next_update, serial, force, pass, ledger } => {
            check_new_out(&out, force)?;
            let now = clock::now();
            let h = home.open()?;
            let mut revoked = match &ledger.ledger {
                Some(l) => tka::issuer::revocation_list::revoked_from(
                    &tka::ledger::Ledger::open_location(&tka::ledger::LedgerLocation::parse(l), false)?,
                    now,
                )?,
                None => tka::issuer::revocation_list::revoked_from_ledger(&h, now)?,
            };
            let from_ledger = revoked.len();
            for s in &serial {
                revoked.push(RevokedToken::parse_arg(s, now)?);
            }
            let passphrase = LazyPass::new(&pass);
            let signer = passphrase.retry(|u| h.token_signer(u))?;
            let (text, claims) =
                tka::issuer::revocation_list::create_list(&h, &signer, revoked, now, now + duration(&next_update)?)?;
            write_file(&out, &(text + "\n"), force)?;
            say(format!("list id: {}", claims.iss));
            say(format!("sequence: {}", claims.seq));
            say(format!("revoked tokens: {} ({from_ledger} from the ledger)", claims.revoked.len()));
            say(format!("next update: {}", clock::rfc3339(claims.next_update)));
            say(format!("revocations: {}", out.display()));
            Ok(ExitCode::SUCCESS)
        }
        RevocationsCmd::Import { file, ca_cert, require_fresh, store, machine, out } => {
            let store = open_store(&store)?;
            // Bounded like everything else the machine reads: CRLs and lists are
            // stored up to 1 MiB, so a larger file is refused unread.
            let bytes = read_bytes_arg(&file, tka::store::MAX_REVOCATION_FILE, "revocation file")?;
            let mut ca_certs = Vec::new();
            for c in &ca_cert {
                ca_certs.extend(read_certs(c)?);
            }
            let opts = ImportOptions { require_fresh, ca_certs };
            let ident = |product: &str| crate::io::identify_in(product, &machine, Some(&store));
            let now = clock::now();
            tka::activation::observe_clock(&store, now)?;
            let r = revocation::import(&store, &bytes, &opts, &ident, now)?;
            crate::io::remember_container_warning(&store);
            for w in &r.warnings {
                say_err(format!("warning: {w}"));
            }
            if out.json {
                say_json(&json!({
                    "imported": r.imported.iter().map(|i| i.describe()).collect::<Vec<_>>(),
                    "warnings": r.warnings,
                    "deactivated": r.deactivated.iter().map(|(p, e)| json!({"product": p, "error": e.to_string(), "kind": error_kind(e)})).collect::<Vec<_>>(),
                    "still_active": r.still_active,
                }));
            } else {
                for i in &r.imported {
                    say(format!("installed: {}", i.describe()));
                }
                for (p, e) in &r.deactivated {
                    say(format!("{p}: NOT activated any more: {e}"));
                }
                for p in &r.still_active {
                    say(format!("{p}: still activated"));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RevocationsCmd::List { require_fresh, at, store, out } => {
            let store = crate::io::open_existing_store(&store)?;
            let now = now_or(&at)?;
            let rows = revocation::installed(&store, now)?;
            let bad = rows.iter().any(|r| r.problem.is_some() || (require_fresh && r.stale));
            if out.json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        json!({"kind": r.kind, "id": r.key, "root": r.root, "issuer": r.issuer, "number": r.number,
                               "issued": clock::rfc3339(r.issued), "next_update": r.next_update.map(clock::rfc3339),
                               "entries": r.entries, "stale": r.stale, "problem": r.problem})
                    })
                    .collect();
                say_json(&json!(v));
            } else {
                if rows.is_empty() {
                    say("no revocation data installed");
                }
                for r in &rows {
                    let next = r.next_update.map(clock::rfc3339).unwrap_or_else(|| "-".into());
                    let stale = if r.stale { " STALE" } else { "" };
                    say_row(&[
                        r.kind,
                        &r.issuer,
                        &format!("number {}", r.number.as_deref().unwrap_or("-")),
                        &format!("{} entries", r.entries),
                        &format!("next update {next}{stale}"),
                    ]);
                    if let Some(p) = &r.problem {
                        say(format!("  problem: {p}"));
                    }
                }
            }
            Ok(if bad { crate::outcome::no() } else { ExitCode::SUCCESS })
        }
    }
}
