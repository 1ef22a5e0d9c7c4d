//! The `tka` command: parses arguments, calls the library, prints results.
//! No activation, PKI or verification decision is made here.

mod cli;
mod cmd_ledger;
mod cmd_rotation;
mod io;
mod output;

use clap::Parser;
use cli::*;
use io::*;
use output::*;
use serde_json::json;
use std::io::IsTerminal;
use std::process::ExitCode;
use tka::activation::{self, ClockMark, ProductStatus};
use tka::issuer::issue::{IssueOptions, TokenLifetime, TokenSigner};
use tka::issuer::{read_cert_chain, InitOptions, IssuerHome};
use tka::issuer::{CertKind, CertRequest};
use tka::keys::{save_private_key, KeyRef, SignatureAlgorithm, SoftwareKey};
use tka::pki::{pem, CertInfo, TrustAnchors};
use tka::request::ActivationRequest;
use tka::token;
use tka::verify::{verify_token, MachineCheck, VerifyContext};
use tka::{clock, Error, Result, VerifyError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            say_err(format!("error: {e}"));
            if let Some(hint) = cli_hint(&e).or_else(|| e.hint()) {
                say_err(format!("hint: {hint}"));
            }
            ExitCode::from(if e.is_verdict() { 1 } else { 2 })
        }
    }
}

/// Hints that name this binary's flags, for errors whose library hint cannot.
fn cli_hint(e: &Error) -> Option<&'static str> {
    match e {
        Error::ModulePathNotAllowed { .. } => Some(
            "name the module with module-name= or a module-path= inside a PKCS#11 module directory \
             (docs/pkcs11.md), or pass --allow-config-module-path if you trust this tka-issuer.json",
        ),
        Error::ModuleNameNotBare { .. } => Some("give a module file elsewhere with module-path=/path/to/module.so"),
        Error::Machine(tka::machine::MachineError::NoComponents) => {
            Some("give this machine an explicit identity with --machine-id-file PATH or TKA_MACHINE_ID=value")
        }
        Error::NoLedger { .. } => Some("a ledger is created by `tka entitlement add` or `tka token issue --home`"),
        Error::AmbiguousSeat { .. } => Some("name the entitlement with --entitlement"),
        Error::UnknownEntitlement { .. } => Some("`tka entitlement list` shows them"),
        Error::ReasonRequired { .. } => Some("give the reason with --reason TEXT"),
        Error::MatchRuleDoesNotFit { .. } => Some("choose a --match rule the request's components can meet"),
        _ => None,
    }
}

fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Key(KeyCmd::Generate { bits, out, force, pass }) => {
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
            if !force && out.exists() {
                return Err(Error::Exists { path: out });
            }
            let passphrase = new_key_passphrase(&pass)?;
            let key = SoftwareKey::generate(bits)?;
            save_private_key(&out, &key, protection(&passphrase), force)?;
            say(format!("key: {}", out.display()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Pkcs11(Pkcs11Cmd::List { module, login, pin_file, insecure_key_permissions, out }) => {
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
        Command::Ca(c @ (CaCmd::Renew { .. } | CaCmd::Rekey { .. })) => cmd_rotation::ca(c),
        Command::Ca(ca) => run_ca(ca),
        Command::Issuer(IssuerCmd::Init { home, org, root_bits, ca_bits, signer_bits, pkcs11, pass }) => {
            let pkcs11 = pkcs11.as_deref().map(tka::pkcs11::Pkcs11Uri::parse).transpose()?;
            // Keys on a token need no file passphrase.
            let passphrase = if pkcs11.is_some() { None } else { new_key_passphrase(&pass)? };
            let opts = InitOptions { org, root_bits, ca_bits, signer_bits, pkcs11, ..Default::default() };
            let unlock = LazyPass::for_new_keys(passphrase, pass.insecure_key_permissions);
            let h = unlock.retry(|u| IssuerHome::init(&home, &opts, u, clock::now()))?;
            say(format!("home: {}", h.dir().display()));
            say(format!("signer: {}", h.path(&h.config.signer_cert).display()));
            say(format!("root: {}", h.root_cert_path().display()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Issuer(c) => cmd_rotation::issuer(c),
        Command::Cert(c) => cmd_rotation::cert(c),
        Command::Crl(c) => cmd_rotation::crl(c),
        Command::Revocations(c) => cmd_rotation::revocations(c),
        Command::Machine(MachineCmd::Id { product, explain, show_values, machine, out }) => {
            let id = identify(&product, &machine)?;
            print_identity(&id, explain, show_values, out.json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Request(RequestCmd::Create { product, out, text, hostname, force, machine }) => {
            let id = identify(&product, &machine)?;
            let req = ActivationRequest::new(&id, clock::now(), hostname);
            let body = if text { req.to_text()? + "\n" } else { req.to_json() };
            match out {
                Some(path) => {
                    write_file(&path, &body, force)?;
                    say(format!("request: {}", path.display()));
                }
                None if text => say(body.trim_end()),
                None => say_json_text(&body),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Request(RequestCmd::GenerateTest { product, count, out, first }) => {
            cmd_ledger::generate_test_requests(&product, count, first, &out)
        }
        Command::Entitlement(c) => cmd_ledger::entitlement(c),
        Command::Ledger(c) => cmd_ledger::ledger(c),
        Command::Token(t) => run_token(t),
        Command::Trust(t) => run_trust(t),
        Command::Activate { token, bundle, product, clock_tolerance, pins, store, machine, out } => {
            let store = open_store(&store)?;
            let ident = |product: &str| identify(product, &machine);
            let (pins, now) = (&pins.root_fingerprints, clock::now());
            let (v, from) = match (token, bundle) {
                (Some(t), _) => {
                    let text = read_token_arg(&t)?;
                    (activation::activate_with_tolerance(&store, &text, &ident, pins, now, clock_tolerance)?, None)
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
                    let reader = std::io::BufReader::with_capacity(1 << 16, open_input(&b)?);
                    let a = activation::activate_from_bundle(&store, reader, &ident, &opts)?;
                    (a.verified, Some((a.line, a.scan)))
                }
                (None, None) => return Err(Error::Usage("give a TOKEN or --bundle FILE".into())),
            };
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
        Command::Status { product, at, pins, store, machine, out } => {
            let store = open_store(&store)?;
            // An explicit time is asked about, not the clock: it raises no
            // mark and has no clock jitter to forgive.
            let (now, mark) = match &at {
                Some(s) => (clock::parse_rfc3339(s).map_err(Error::Usage)?, ClockMark::At),
                None => (clock::now(), ClockMark::Raise),
            };
            let products = product.map(|p| vec![p]);
            let ident = |p: &str| identify(p, &machine);
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
            Ok(if all_ok && !rows.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::List { store, out } => {
            let store = open_store(&store)?;
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
        Command::Deactivate { product, store } => {
            let store = open_store(&store)?;
            if activation::deactivate(&store, &product)? {
                say(format!("deactivated: {product}"));
                Ok(ExitCode::SUCCESS)
            } else {
                Err(VerifyError::NotActivated { product }.into())
            }
        }
    }
}

fn run_ca(cmd: CaCmd) -> Result<ExitCode> {
    let now = clock::now();
    let (kind, key_path, ca, cert, pass, default_days) = match cmd {
        CaCmd::Root { key, cert, pass } => (CertKind::Root, key, None, cert, pass, tka::issuer::lifetimes::ROOT_DAYS),
        CaCmd::Intermediate { ca_cert, ca_key, key, cert, pass } => (
            CertKind::Intermediate,
            key,
            Some((ca_cert, ca_key)),
            cert,
            pass,
            tka::issuer::lifetimes::INTERMEDIATE_DAYS,
        ),
        CaCmd::Signer { ca_cert, ca_key, key, cert, pass } => {
            (CertKind::Signer, key, Some((ca_cert, ca_key)), cert, pass, tka::issuer::lifetimes::SIGNER_DAYS)
        }
        c @ (CaCmd::Renew { .. } | CaCmd::Rekey { .. }) => return cmd_rotation::ca(c),
    };
    if !cert.force && cert.out.exists() {
        return Err(Error::Exists { path: cert.out });
    }
    let days = cert.days.unwrap_or(default_days);
    if days < 1 {
        return Err(Error::Usage("--days must be at least 1".into()));
    }
    let passphrase = LazyPass::new(&pass);
    let subject_key = passphrase.load(&key_path)?;
    let req = CertRequest { kind, subject: &cert.subject, not_before: now - 300, not_after: now + days * clock::DAY };
    let der = match ca {
        None => tka::issuer::create_certificate(&req, subject_key.public_key(), None, subject_key.as_ref())?,
        Some((ca_cert, ca_key)) => {
            let ca_der = read_cert_chain(&ca_cert)?.remove(0);
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

fn run_token(cmd: TokenCmd) -> Result<ExitCode> {
    match cmd {
        TokenCmd::Issue {
            request,
            home,
            signer_cert,
            signer_key,
            chain,
            days,
            perpetual,
            features,
            edition,
            match_rule,
            allow_weak_binding,
            grace_days,
            alg,
            out,
            force,
            pass,
            record,
        } => {
            let home_dir = home.clone();
            if let Some(o) = &out {
                if !force && o.exists() {
                    return Err(Error::Exists { path: o.clone() });
                }
            }
            let req_text = read_input(&request, tka::request::MAX_REQUEST_SIZE, "request")?;
            let req = ActivationRequest::parse(&req_text)?;
            let passphrase = LazyPass::new(&pass);
            let (signer, home_days) = match (home, signer_cert, signer_key) {
                (Some(h), _, _) => {
                    let home = IssuerHome::open(&h)?;
                    let days = home.config.token_days;
                    (passphrase.retry(|u| home.token_signer(u))?, Some(days))
                }
                (None, Some(cert), Some(key)) => {
                    let mut ders = read_cert_chain(&cert)?;
                    ders.truncate(1);
                    if let Some(c) = &chain {
                        ders.extend(read_cert_chain(c)?);
                    }
                    let key = passphrase.load(&key)?;
                    (TokenSigner::new(key, ders)?, None)
                }
                _ => return Err(Error::Usage("give --home DIR, or --signer-cert and --signer-key".into())),
            };
            let lifetime = if perpetual {
                TokenLifetime::Perpetual
            } else {
                TokenLifetime::Days(days.or(home_days).unwrap_or(180))
            };
            let opts = IssueOptions {
                lifetime,
                features: features.into_iter().filter(|f| !f.is_empty()).collect(),
                edition,
                entitlement: None,
                match_rule: match_rule.map(|m| m.parse()).transpose()?,
                grace_secs: u64::from(grace_days) * 86_400,
                renew_after_secs: None,
                alg: SignatureAlgorithm::from_jws_name(&alg).expect("clap restricts --alg"),
                serial: None,
                allow_weak_binding,
            };
            let issued = cmd_ledger::issue_one(&record, home_dir.as_deref(), &req, &opts, &signer, clock::now())?;
            match out {
                Some(path) => {
                    write_file(&path, &(issued.text.clone() + "\n"), force)?;
                    say(format!("token: {}", path.display()));
                    say(format!("serial: {}", issued.claims.jti));
                    say(format!("machine: {}", issued.claims.sub));
                    say(format!(
                        "expires: {}",
                        issued.claims.exp.map(clock::rfc3339).unwrap_or_else(|| format!(
                            "never (valid while the signer certificate is, until {})",
                            clock::rfc3339(signer.certificate().not_after)
                        ))
                    ));
                }
                None => say(&issued.text),
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCmd::IssueBulk(a) => cmd_ledger::issue_bulk(a),
        TokenCmd::RenewBulk(a) => cmd_ledger::renew_bulk(a),
        TokenCmd::Inspect { token, out } => {
            let text = read_token_arg(&token)?;
            let (jws, claims) = token::decode_unverified(&text)?;
            let chain: Vec<serde_json::Value> = jws
                .x5c
                .iter()
                .map(|d| match CertInfo::parse(d) {
                    Ok(c) => json!({"subject": c.subject, "issuer": c.issuer, "serial": c.serial_hex,
                                    "fingerprint": c.fingerprint, "not_after": clock::rfc3339(c.not_after)}),
                    Err(e) => json!({"error": e.to_string()}),
                })
                .collect();
            let mut header = jws.header.clone();
            header.remove("x5c");
            if out.json {
                say_json(&json!({"header": header, "x5c": chain, "claims": claims}));
            } else {
                say("(decoded only: no signature or trust check; use `tka token verify`)");
                say(format!("alg: {}", jws.alg.jws_name()));
                say(format!("serial: {}", claims.jti));
                say(format!("product: {}", claims.aud));
                say(format!("machine: {}", claims.sub));
                say(format!("issued: {}", clock::rfc3339(claims.iat)));
                say(format!("expires: {}", claims.exp.map(clock::rfc3339).unwrap_or_else(|| "never".into())));
                say(format!("features: {}", claims.tka.features.join(",")));
                say(format!("match: {} of {} components", claims.tka.match_rule, claims.tka.components.len()));
                for c in chain {
                    say(format!("certificate: {}", c["subject"].as_str().unwrap_or("?")));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCmd::Verify { token, trust, product, machine, crl, at, pins, machine_args, out } => {
            let now = match &at {
                Some(s) => clock::parse_rfc3339(s).map_err(Error::Usage)?,
                None => clock::now(),
            };
            let mut roots = Vec::new();
            for t in &trust {
                roots.extend(read_trust_path(t)?);
            }
            let anchors = TrustAnchors::from_der(&roots)?;
            let mut crls = Vec::new();
            for c in &crl {
                crls.extend(read_crls(c)?);
            }
            let text = read_token_arg(&token)?;
            let identity;
            let machine_check = match machine.as_deref() {
                None => MachineCheck::Skip,
                Some("current") => {
                    let p = match &product {
                        Some(p) => p.clone(),
                        None => token::decode_unverified(&text)?.1.aud,
                    };
                    identity = identify(&p, &machine_args)?;
                    MachineCheck::Identity(&identity)
                }
                Some(cmid) => MachineCheck::Cmid(cmid),
            };
            let revoked = Default::default();
            let ctx = VerifyContext {
                anchors: &anchors,
                pinned_roots: &pins.root_fingerprints,
                now,
                product: product.as_deref(),
                machine: machine_check,
                crls: &crls,
                revoked_serials: &revoked,
                clock: None,
            };
            match verify_token(&text, &ctx) {
                Ok(v) => {
                    let binding_checked = !matches!(machine_check, MachineCheck::Skip);
                    if out.json {
                        let mut j = verified_json(&v);
                        j["binding_checked"] = binding_checked.into();
                        say_json(&j);
                    } else {
                        say(if binding_checked {
                            "valid"
                        } else {
                            "valid signature and chain; machine binding not checked"
                        });
                        print_verified(&v);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) if out.json => {
                    say_json(&json!({"valid": false, "error": e.to_string(), "kind": error_kind(&e)}));
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

fn run_trust(cmd: TrustCmd) -> Result<ExitCode> {
    match cmd {
        TrustCmd::Add { root, fingerprint, cross, products, all_products, store } => {
            cmd_rotation::trust_add(root, fingerprint, cross, products, all_products, store)
        }
        TrustCmd::List { store, out } => {
            let store = open_store(&store)?;
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
