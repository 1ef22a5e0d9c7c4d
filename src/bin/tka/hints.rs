//! What to do about an error, in this binary's words: the library's errors
//! name no flag or command, so the hints that do live here. `main` prints
//! the one for the error it reports as a `hint: ...` line.

use tka::machine::BindingError;
use tka::store::StoreError;
use tka::{Error, VerifyError};

/// How `tka::pkcs11::plan_mechanism` ends its message for a token without PSS.
const NO_PS256: &str = "it cannot make PS256 signatures";
/// How `tka::issuer::create_certificate` starts its refusal of a certificate
/// outliving its CA.
const OUTLIVES_ISSUER: &str = "certificate would outlive its issuer";

/// A hint on what to do about `e`, if there is a useful one.
pub fn hint(e: &Error) -> Option<&'static str> {
    match e {
        Error::Machine(tka::machine::MachineError::NoComponents) => {
            Some("give this machine an explicit identity with --machine-id-file PATH or TKA_MACHINE_ID=value")
        }
        Error::Agent(tka::AgentError::Discovery { .. }) => {
            Some("check the SRV records _tka._tcp.DOMAIN (and --dns), or name the host with --host HOST:PORT")
        }
        Error::Agent(tka::AgentError::NoHostReachable { .. }) => Some(
            "check that an activation host runs there and that its port is open; `tka agent run` retries by itself",
        ),
        Error::Agent(tka::AgentError::TlsMismatch { host_requires_tls: true, .. }) => {
            Some("connect with --tls, or give the host as https://HOST:PORT")
        }
        Error::Agent(tka::AgentError::TlsMismatch { host_requires_tls: false, .. }) => {
            Some("this host serves plain HTTP: drop --tls (or https://), or start it with `tka host serve --tls`")
        }
        Error::Agent(tka::AgentError::UntrustedHost { .. }) => {
            Some("the host's certificate must come from a root this machine trusts (`tka trust list`) and be delegated the product")
        }
        Error::NotAnIssuerHome { .. } => Some("create one with `tka issuer init`"),
        Error::NoTrustedRoot => Some("install the issuer's root first: `tka trust add ROOT.pem`"),
        Error::NoLedger { .. } => Some("a ledger is created by `tka entitlement add` or `tka token issue --home`"),
        Error::AmbiguousSeat { .. } => Some("name the entitlement with --entitlement"),
        Error::UnknownEntitlement { .. } => Some("`tka entitlement list` shows them"),
        Error::ReasonRequired { .. } => Some("give the reason with --reason TEXT"),
        Error::MatchRuleDoesNotFit { .. } => Some("choose a --match rule the request's components can meet"),
        Error::Exists { .. } => Some("choose another path, or replace it with --force where the command offers it"),
        Error::PassphraseRequired { .. } => {
            Some("give the passphrase with --passphrase-file FILE or TKA_PASSPHRASE, or run on a terminal")
        }
        Error::PinRequired { .. } => {
            Some("give the PIN with pin-source=file:PATH in the URI or TKA_PKCS11_PIN, or run on a terminal")
        }
        Error::WrongPin { .. } => Some("check the PIN before trying again: the token locks after a few wrong PINs"),
        Error::InsecureKeyPermissions { .. } => Some("run chmod 600 on the key, or pass --insecure-key-permissions"),
        Error::Binding(BindingError::WeakBinding { .. }) => Some(
            "make the request as root (DMI and serials readable) or with an explicit identity; \
             or issue with --allow-weak-binding (or an entitlement that allows it) if a disk copy may pass",
        ),
        Error::InsecureSecretPermissions { .. } => {
            Some("run chmod 600 on the file, or pass --insecure-key-permissions")
        }
        Error::Store(StoreError::Corrupt { path, .. })
            if path.file_name().is_some_and(|n| n == "version" || n == "state.json") =>
        {
            Some(
                "restore the activation store from a backup; tka never resets or repairs it by itself, \
                 and deleting files from it undoes its clock and revocation protections",
            )
        }
        Error::KeysLeftOnToken { .. } => {
            Some("delete the keys named above with the token's tools (`tka pkcs11 list --login` shows them)")
        }
        Error::Verify(VerifyError::ClockRollback { .. }) => Some("set the system clock to the right time"),
        Error::WouldOutliveIssuer { .. } => {
            Some("pass --shorten to let it end with its issuer, give fewer --days, or rotate the issuer first")
        }
        Error::HomeBusy { .. } => {
            Some("wait for it to finish and run the command again, or wait longer with --lock-wait")
        }
        Error::Verify(VerifyError::NoTokenInBundle { scan, .. }) if scan.unchecked > 0 => {
            Some("name the product to activate: lines for other products are then skipped unchecked")
        }
        Error::Verify(VerifyError::NoTokenInBundle { .. }) => {
            Some("ask the issuer for a token for this machine (send it a `tka request create` request)")
        }
        Error::Verify(VerifyError::UnknownSigner { .. }) => Some(
            "this is a compact token: give the issuer's certificate chain once with --chain CHAIN.pem \
             (the issuer home's chain.pem)",
        ),
        Error::Verify(VerifyError::UntrustedRoot { .. }) => {
            Some("install the issuer's root with `tka trust add ROOT.pem`")
        }
        Error::ModulePathNotAllowed { .. } => Some(
            "name the module with module-name= or a module-path= inside a PKCS#11 module directory \
             (docs/pkcs11.md), or pass --allow-config-module-path if you trust this tka-issuer.json",
        ),
        Error::ModuleNameNotBare { .. } => Some("give a module file elsewhere with module-path=/path/to/module.so"),
        // The library reports these two as text (they have no variant of
        // their own yet); the tests below keep the texts in step.
        Error::Pkcs11(m) if m.ends_with(NO_PS256) => Some("try --alg RS256 where the command offers it"),
        Error::Refused(m) if m.starts_with(OUTLIVES_ISSUER) => Some("shorten --days or renew the CA"),
        _ => None,
    }
}

/// An issuance refusal as the CLI prints it: the library's words and,
/// where a flag would help, the flag.
pub fn refusal_text(r: &tka::IssueRefusal) -> String {
    match r {
        tka::IssueRefusal::OutlivesEntitlement { .. } => format!("{r} (--days)"),
        tka::IssueRefusal::MachineRevoked { .. } => format!("{r} (--allow-revoked-machine)"),
        _ => r.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_without_pss_gets_the_alg_hint() {
        let e = tka::pkcs11::plan_mechanism(&[], tka::keys::SignatureAlgorithm::Ps256).unwrap_err();
        assert!(!e.to_string().contains("--"), "{e}");
        assert_eq!(hint(&e), Some("try --alg RS256 where the command offers it"), "{e}");
        let e = tka::pkcs11::plan_mechanism(&[], tka::keys::SignatureAlgorithm::Rs256).unwrap_err();
        assert_eq!(hint(&e), None, "{e}");
    }
}
