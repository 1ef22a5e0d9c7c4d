//! The `tka` command: parses arguments, calls the library, prints results.
//! No activation, PKI or verification decision is made here.

mod cli;

use clap::Parser;
use cli::*;
use serde_json::json;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tka::activation::{self, ProductStatus, TrustData};
use tka::issuer::{read_cert_chain, write_public, InitOptions, IssuerHome};
use tka::keys::{
    load_private_key, save_private_key, KeyProtection, Passphrase, SignatureAlgorithm, Signer, SoftwareKey,
};
use tka::machine::{IdentifyOptions, MachineIdentity};
use tka::pki::{self, pem, CertInfo, CertKind, CertRequest, Crl, TrustAnchors};
use tka::request::ActivationRequest;
use tka::store::Store;
use tka::token::{self, IssueOptions, TokenLifetime, TokenSigner};
use tka::verify::{verify_token, MachineCheck, VerifiedToken, VerifyContext};
use tka::{clock, Error, Result, VerifyError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(if e.is_verdict() { 1 } else { 2 })
        }
    }
}

/// Prints a line to standard output; a closed pipe ends the program quietly.
fn say(s: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{}", s.as_ref()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

fn say_json(v: &serde_json::Value) {
    say(serde_json::to_string_pretty(v).expect("JSON value prints"));
}

fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Key(KeyCmd::Generate { bits, out, force, pass }) => {
            if !force && out.exists() {
                return Err(Error::Exists { path: out });
            }
            let passphrase = new_key_passphrase(&pass)?;
            let key = SoftwareKey::generate(bits)?;
            save_private_key(&out, &key, protection(&passphrase), force)?;
            say(format!("key: {}", out.display()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Ca(ca) => run_ca(ca),
        Command::Issuer(IssuerCmd::Init { home, org, root_bits, ca_bits, signer_bits, pass }) => {
            let passphrase = new_key_passphrase(&pass)?;
            let opts = InitOptions { org, root_bits, ca_bits, signer_bits, ..Default::default() };
            let h = IssuerHome::init(&home, &opts, protection(&passphrase), clock::now())?;
            say(format!("home: {}", h.dir().display()));
            say(format!("signer: {}", h.path(&h.config.signer_cert).display()));
            say(format!("root: {}", h.root_cert_path().display()));
            Ok(ExitCode::SUCCESS)
        }
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
                None => print!("{body}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(t) => run_token(t),
        Command::Trust(t) => run_trust(t),
        Command::Activate { token, store, machine, out } => {
            let store = open_store(&store)?;
            let text = read_token_arg(&token)?;
            let ident = |product: &str| identify(product, &machine);
            let v = activation::activate(&store, &text, &ident, clock::now())?;
            if out.json {
                say_json(&verified_json(&v));
            } else {
                say(format!("activated: {}", v.claims.aud));
                print_verified(&v);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { product, at, store, machine, out } => {
            let store = open_store(&store)?;
            let now = match &at {
                Some(s) => clock::parse_rfc3339(s).map_err(Error::Usage)?,
                None => {
                    activation::observe_clock(&store, clock::now())?;
                    clock::now()
                }
            };
            let trust = TrustData::from_store(&store)?;
            let state = store.state()?;
            let clock_check =
                at.is_none().then_some((state.clock_high_water, tka::store::DEFAULT_CLOCK_TOLERANCE_SECS));
            let products: Vec<String> = match product {
                Some(p) => vec![p],
                None => store.tokens()?.into_iter().map(|t| t.product).collect(),
            };
            let mut all_ok = true;
            let mut rows = Vec::new();
            for p in &products {
                let id = identify(p, &machine)?;
                let st = activation::status_with(&store, &trust, p, &id, now, clock_check)?;
                all_ok &= st.is_active();
                rows.push(st);
            }
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
                        json!({"product": t.product, "installed_at": clock::rfc3339(t.installed_at),
                               "serial": claims.as_ref().map(|c| c.jti.clone()),
                               "expires": claims.as_ref().and_then(|c| c.exp).map(clock::rfc3339)})
                    })
                    .collect();
                say_json(&json!(rows));
            } else {
                for t in &tokens {
                    say(format!("{}\tinstalled {}", t.product, clock::rfc3339(t.installed_at)));
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
        CaCmd::Root { key, cert, pass } => (CertKind::Root, key, None, cert, pass, pki::lifetimes::ROOT_DAYS),
        CaCmd::Intermediate { ca_cert, ca_key, key, cert, pass } => {
            (CertKind::Intermediate, key, Some((ca_cert, ca_key)), cert, pass, pki::lifetimes::INTERMEDIATE_DAYS)
        }
        CaCmd::Signer { ca_cert, ca_key, key, cert, pass } => {
            (CertKind::Signer, key, Some((ca_cert, ca_key)), cert, pass, pki::lifetimes::SIGNER_DAYS)
        }
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
        None => pki::create_certificate(&req, subject_key.public_key(), None, &subject_key)?,
        Some((ca_cert, ca_key)) => {
            let ca_der = read_cert_chain(&ca_cert)?.remove(0);
            let ca_info = CertInfo::parse(&ca_der)?;
            let ca_key = passphrase.load(&ca_key)?;
            pki::create_certificate(&req, subject_key.public_key(), Some(&ca_info), &ca_key)?
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
            grace_days,
            alg,
            out,
            force,
            pass,
        } => {
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
                    (passphrase.retry(|p| home.token_signer(p, pass.insecure_key_permissions))?, Some(days))
                }
                (None, Some(cert), Some(key)) => {
                    let mut ders = read_cert_chain(&cert)?;
                    ders.truncate(1);
                    if let Some(c) = &chain {
                        ders.extend(read_cert_chain(c)?);
                    }
                    let key = passphrase.load(&key)?;
                    (TokenSigner::new(Box::new(key), ders)?, None)
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
                grace_days,
                alg: SignatureAlgorithm::from_jws_name(&alg).expect("clap restricts --alg"),
                serial: None,
            };
            let issued = token::issue_token(&req, &opts, &signer, clock::now())?;
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
        TokenCmd::Verify { token, trust, product, machine, crl, at, machine_args, out } => {
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
                now,
                product: product.as_deref(),
                machine: machine_check,
                crls: &crls,
                revoked_serials: &revoked,
                clock: None,
            };
            match verify_token(&text, &ctx) {
                Ok(v) => {
                    if out.json {
                        say_json(&verified_json(&v));
                    } else {
                        say("valid");
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
        TrustCmd::Add { root, fingerprint, store } => {
            let store = open_store(&store)?;
            let ders = read_cert_chain(&root)?;
            if ders.len() != 1 {
                return Err(Error::Usage(format!(
                    "{} holds {} certificates; give exactly one root",
                    root.display(),
                    ders.len()
                )));
            }
            let info = CertInfo::parse(&ders[0])?;
            if let Some(expected) = fingerprint {
                let want = expected.replace(':', "").to_ascii_lowercase();
                if want != info.fingerprint {
                    return Err(VerifyError::UntrustedRoot {
                        issuer: format!(
                            "{} (fingerprint {} is not the expected {want})",
                            info.subject, info.fingerprint
                        ),
                    }
                    .into());
                }
            }
            pki::check_root(&info)?;
            let fp = store.lock()?.add_root(&info.der)?;
            say(format!("trusted: {}", info.subject));
            say(format!("fingerprint: {fp}"));
            Ok(ExitCode::SUCCESS)
        }
        TrustCmd::List { store, out } => {
            let store = open_store(&store)?;
            let roots = store.roots()?;
            let infos: Vec<_> = roots.iter().map(|r| CertInfo::parse(&r.der)).collect::<std::result::Result<_, _>>()?;
            if out.json {
                let rows: Vec<_> = infos
                    .iter()
                    .map(|c: &CertInfo| {
                        json!({"subject": c.subject, "fingerprint": c.fingerprint,
                        "not_after": clock::rfc3339(c.not_after)})
                    })
                    .collect();
                say_json(&json!(rows));
            } else {
                for c in &infos {
                    say(format!("{}\t{}\texpires {}", c.fingerprint, c.subject, clock::rfc3339(c.not_after)));
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

// ---- plumbing: inputs, passphrases, output ----

fn protection(p: &Option<Passphrase>) -> KeyProtection<'_> {
    match p {
        Some(p) => KeyProtection::Passphrase(p),
        None => KeyProtection::InsecurePlaintext,
    }
}

fn env_passphrase() -> Option<Passphrase> {
    std::env::var("TKA_PASSPHRASE").ok().filter(|s| !s.is_empty()).map(Passphrase::new)
}

/// The passphrase for new keys: file, TKA_PASSPHRASE, or a confirmed prompt;
/// `None` only with --insecure-no-passphrase.
fn new_key_passphrase(args: &NewKeyPassArgs) -> Result<Option<Passphrase>> {
    if args.insecure_no_passphrase {
        if args.passphrase_file.is_some() {
            return Err(Error::Usage("--insecure-no-passphrase and --passphrase-file contradict each other".into()));
        }
        return Ok(None);
    }
    if let Some(f) = &args.passphrase_file {
        return Passphrase::from_file(f).map(Some);
    }
    if let Some(p) = env_passphrase() {
        return Ok(Some(p));
    }
    if std::io::stdin().is_terminal() {
        let a = prompt("New key passphrase: ")?;
        let b = prompt("Repeat passphrase: ")?;
        if a.is_empty() || a != b {
            return Err(Error::Usage("the passphrases are empty or do not match".into()));
        }
        return Ok(Some(Passphrase::new(a)));
    }
    Err(Error::Usage(
        "no passphrase for the new key: use --passphrase-file FILE or TKA_PASSPHRASE (or --insecure-no-passphrase)"
            .into(),
    ))
}

fn prompt(label: &str) -> Result<String> {
    rpassword::prompt_password(label).map_err(|e| Error::Usage(format!("cannot read passphrase: {e}")))
}

/// Passphrase for existing keys, asked for only when a key turns out to be encrypted.
struct LazyPass<'a> {
    args: &'a PassArgs,
    cached: std::cell::RefCell<Option<Passphrase>>,
}

impl<'a> LazyPass<'a> {
    fn new(args: &'a PassArgs) -> Self {
        let cached = std::cell::RefCell::new(None);
        LazyPass { args, cached }
    }

    fn known(&self) -> Result<Option<Passphrase>> {
        if let Some(f) = &self.args.passphrase_file {
            return Passphrase::from_file(f).map(Some);
        }
        Ok(env_passphrase())
    }

    fn retry<T>(&self, f: impl Fn(Option<&Passphrase>) -> Result<T>) -> Result<T> {
        if self.cached.borrow().is_none() {
            *self.cached.borrow_mut() = self.known()?;
        }
        match f(self.cached.borrow().as_ref()) {
            Err(Error::PassphraseRequired { path }) if std::io::stdin().is_terminal() => {
                let p = Passphrase::new(prompt(&format!("Passphrase for {}: ", path.display()))?);
                let r = f(Some(&p));
                *self.cached.borrow_mut() = Some(p);
                r
            }
            other => other,
        }
    }

    fn load(&self, path: &Path) -> Result<SoftwareKey> {
        self.retry(|p| load_private_key(path, p, self.args.insecure_key_permissions))
    }
}

fn identify(product: &str, args: &MachineArgs) -> Result<MachineIdentity> {
    let mut opts = IdentifyOptions::from_env();
    opts.explicit_id_file = args.machine_id_file.clone();
    let id = MachineIdentity::identify(product, &opts)?;
    if id.binds_host_hardware() {
        for w in id.warnings() {
            eprintln!("warning: {w}");
        }
    }
    Ok(id)
}

fn open_store(args: &StoreArgs) -> Result<Store> {
    let dir = match &args.store {
        Some(d) => d.clone(),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from);
            Store::default_dir_for(is_root(), home.as_deref(), xdg.as_deref())
        }
    };
    Ok(Store::open(&dir)?)
}

fn is_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // The owner of a fresh /proc/self is our effective uid.
        std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
    }
    #[cfg(not(unix))]
    false
}

/// Reads a file or standard input (`-`), refusing more than `limit` bytes.
fn read_input(arg: &str, limit: usize, what: &'static str) -> Result<String> {
    let bytes = if arg == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(limit as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::Usage(format!("standard input: {e}")))?;
        buf
    } else {
        let path = Path::new(arg);
        match std::fs::File::open(path) {
            Ok(f) => {
                let mut buf = Vec::new();
                f.take(limit as u64 + 1).read_to_end(&mut buf).map_err(|e| Error::Usage(format!("{arg}: {e}")))?;
                buf
            }
            Err(e) => return Err(Error::Usage(format!("{arg}: {e}"))),
        }
    };
    if bytes.len() > limit {
        return Err(VerifyError::TooLarge { what, limit }.into());
    }
    String::from_utf8(bytes).map_err(|_| VerifyError::Malformed { what, detail: "not UTF-8 text".into() }.into())
}

/// A token argument: `-`, a file, or the token text itself.
fn read_token_arg(arg: &str) -> Result<String> {
    let looks_like_jws =
        arg.len() > 20 && arg.matches('.').count() == 2 && !arg.contains('/') && !Path::new(arg).exists();
    if looks_like_jws {
        return Ok(arg.to_string());
    }
    Ok(read_input(arg, tka::jws::MAX_JWS_SIZE, "token")?.trim().to_string())
}

fn read_trust_path(path: &Path) -> Result<Vec<Vec<u8>>> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pem" || x == "crt" || x == "der"))
            .collect();
        entries.sort();
        let mut out = Vec::new();
        for e in entries {
            out.extend(read_cert_chain(&e)?);
        }
        if out.is_empty() {
            return Err(Error::Usage(format!("{} holds no .pem, .crt or .der certificates", path.display())));
        }
        Ok(out)
    } else {
        read_cert_chain(path)
    }
}

fn read_crls(path: &Path) -> Result<Vec<Crl>> {
    let bytes = std::fs::read(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let ders = match std::str::from_utf8(&bytes) {
        Ok(t) if t.contains("-----BEGIN") => pem::decode_all(t, "X509 CRL")?,
        _ => vec![bytes],
    };
    Ok(ders.iter().map(|d| Crl::parse(d)).collect::<std::result::Result<_, _>>()?)
}

fn write_file(path: &Path, text: &str, force: bool) -> Result<()> {
    if force && path.exists() {
        std::fs::remove_file(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    }
    write_public(path, text)
}

fn error_kind(e: &VerifyError) -> String {
    let dbg = format!("{e:?}");
    dbg.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("").to_string()
}

fn verified_json(v: &VerifiedToken) -> serde_json::Value {
    let c = &v.claims;
    json!({
        "valid": true,
        "product": c.aud,
        "machine": c.sub,
        "serial": c.jti,
        "features": c.tka.features,
        "edition": c.tka.edition,
        "issued": clock::rfc3339(c.iat),
        "expires": c.exp.map(clock::rfc3339),
        "in_grace": v.in_grace,
        "renew_after": c.tka.renew_after.map(clock::rfc3339),
        "alg": v.alg.jws_name(),
        "signer": v.signer.subject,
        "path": v.path,
        "machine_match": v.machine_match,
    })
}

fn print_verified(v: &VerifiedToken) {
    let c = &v.claims;
    say(format!("product: {}", c.aud));
    say(format!("machine: {}", c.sub));
    say(format!("serial: {}", c.jti));
    if !c.tka.features.is_empty() {
        say(format!("features: {}", c.tka.features.join(",")));
    }
    say(format!("expires: {}", c.exp.map(clock::rfc3339).unwrap_or_else(|| "never".into())));
    if v.in_grace {
        say("warning: the token has expired and is in its grace period: renew it");
    }
    if let Some(m) = &v.machine_match {
        say(format!("machine match: {} of {} components ({} required)", m.matched, m.total, m.required));
    }
    say(format!("signer: {}", v.signer.subject));
}

fn status_json(st: &ProductStatus) -> serde_json::Value {
    match st {
        ProductStatus::Active(v) => {
            let mut j = verified_json(v);
            j["activated"] = true.into();
            j
        }
        ProductStatus::Invalid { product, reason } => {
            json!({"product": product, "activated": false, "error": reason.to_string(), "kind": error_kind(reason)})
        }
        ProductStatus::NotInstalled { product } => {
            json!({"product": product, "activated": false, "error": "not activated", "kind": "NotActivated"})
        }
    }
}

fn print_status(st: &ProductStatus) {
    match st {
        ProductStatus::Active(v) => {
            let exp = v.claims.exp.map(clock::rfc3339).unwrap_or_else(|| "never".into());
            let grace = if v.in_grace { " (IN GRACE PERIOD: renew now)" } else { "" };
            say(format!("{}: activated, expires {exp}{grace}", v.claims.aud));
        }
        ProductStatus::Invalid { product, reason } => say(format!("{product}: NOT activated: {reason}")),
        ProductStatus::NotInstalled { product } => say(format!("{product}: NOT activated: no token installed")),
    }
}

fn print_identity(id: &MachineIdentity, explain: bool, show_values: bool, json_out: bool) {
    if json_out {
        let mut j = json!({
            "product": id.product(),
            "cmid": id.cmid(),
            "components": id.components(),
            "environment": id.environment(),
        });
        if explain {
            j["sources"] = json!(id
                .sources()
                .iter()
                .map(|s| {
                    let mut o = json!({"kind": s.kind, "name": s.name, "location": s.location,
                                       "found": s.found(), "hashes": s.hashes, "notes": s.notes});
                    if show_values {
                        o["values"] = json!(s.values());
                    }
                    o
                })
                .collect::<Vec<_>>());
        }
        say_json(&j);
        return;
    }
    say(format!("cmid: {}", id.cmid()));
    say(format!("environment: {}", id.environment()));
    for c in id.components() {
        say(format!("{}: {}", c.kind, c.hash));
    }
    if explain {
        for s in id.sources() {
            let status = if s.found() > 0 { format!("found {}", s.found()) } else { "absent".into() };
            say(format!("source {} ({}) at {}: {status}", s.kind, s.name, s.location));
            for n in &s.notes {
                say(format!("  note: {n}"));
            }
            if show_values {
                for v in s.values() {
                    say(format!("  value: {v}"));
                }
            }
        }
    }
}
