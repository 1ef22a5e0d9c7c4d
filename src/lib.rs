//! tka — token-based offline activation.
//!
//! An administrator runs a small PKI (root CA, issuing CA, token signer) and
//! issues signed **activation tokens** bound to a machine's identity. A
//! machine that never touches a network and trusts only the root
//! certificate verifies a token and activates locally.
//!
//! The whole flow, in process (the `tka` command does the same with files):
//!
//! ```
//! use tka::activation;
//! use tka::issuer::{InitOptions, IssuerHome};
//! use tka::keys::{KeyUnlock, Passphrase};
//! use tka::machine::MachineIdentity;
//! use tka::request::ActivationRequest;
//! use tka::store::Store;
//! use tka::issuer::issue::{issue_token, IssueOptions};
//!
//! # fn main() -> tka::Result<()> {
//! # let tmp = tempfile::tempdir().unwrap();
//! let now = 1_800_000_000; // time is always a parameter
//!
//! // Admin workstation: a PKI in one directory (small keys keep the example fast).
//! let opts = InitOptions { root_bits: 2048, ca_bits: 2048, ..Default::default() };
//! let pass = Passphrase::new("correct horse battery staple".into());
//! let unlock = KeyUnlock::with_passphrase(Some(&pass), false); // or a PKCS#11 PIN
//! let home = IssuerHome::init(&tmp.path().join("issuer"), &opts, &unlock, now)?;
//!
//! // Air-gapped machine: its identity (the CLI reads the real hardware) and a request.
//! let machine = MachineIdentity::from_raw(
//!     "example-pro",
//!     &[("mid".into(), "4f1d2c3b4a5968778695a4b3c2d1e0f1".into()),
//!       ("dmi".into(), "4c4c4544-0042-3510-8052-b4c04f4e4e32".into())],
//! );
//! let request = ActivationRequest::new(&machine, now, None);
//! let text = request.to_text()?; // one line, carried to the admin
//!
//! // Admin: issue a token for the request.
//! let signer = home.token_signer(&unlock)?;
//! let token = issue_token(&ActivationRequest::parse(&text)?, &IssueOptions::default(), &signer, now)?;
//!
//! // Machine: trust the root once, then activate.
//! let store = Store::open(&tmp.path().join("store"))?;
//! let root = tka::issuer::read_cert_chain(&home.root_cert_path())?.remove(0);
//! store.lock()?.add_root(&root)?;
//! let identify = |_product: &str| Ok(machine.clone());
//! activation::activate(&store, &token.text, &identify, &[], now + 60)?;
//!
//! // Any application: is the product activated here, by a token under the
//! // vendor's root? An application compiles the fingerprint in, e.g.
//! // `const VENDOR_ROOT: &str = "3f2a...";` (`tka trust list` shows it).
//! # let vendor_root = tka::pki::CertInfo::parse(&root)?.fingerprint;
//! # #[allow(non_snake_case)]
//! # let VENDOR_ROOT: &str = &vendor_root;
//! let pins = [tka::pki::RootFingerprint::parse(VENDOR_ROOT)?];
//! let verified = activation::check_activated(&store, "example-pro", &machine, &pins, now + 120)?;
//! assert_eq!(verified.claims.aud, "example-pro");
//! # Ok(())
//! # }
//! ```
//!
//! `check_activated` keeps the clock guard: it raises the store's clock
//! high-water mark to `now` under the store lock, and refuses a `now` more
//! than a day before the mark with [`VerifyError::ClockRollback`]. Raising
//! needs write access to the store; a process without it gets the store's
//! I/O error, or calls [`activation::check_activated_read_only`], which
//! writes nothing and checks against the mark as the last writer left it.
//!
//! Pin the vendor's root as above: the store belongs to whoever runs the
//! program, and any root it trusts can issue for any product. With pins, a
//! token whose chain ends at another root is refused with
//! [`VerifyError::WrongRoot`]; `&[]` accepts any root the store trusts.
//!
//! # The map: two wings over one core
//!
//! In the order of the flow (docs/design.md draws it):
//!
//! - **The core** (`src/core/`), which both wings stand on and which imports
//!   neither: [`keys`] (the [`keys::Signer`] seam; PKCS#8 files with the
//!   `issuer` feature), [`pkcs11`] (keys on smart cards and HSMs), [`pki`]
//!   (certificate profiles, path validation, CRL checks, root pins),
//!   [`machine`] (identity, from one table of kinds), [`request`], [`jws`],
//!   [`token`] (claims), [`bundle`], [`verify`] (the ordered checks),
//!   [`clock`], [`fsutil`]; errors are [`Error`], verdicts [`VerifyError`],
//!   issuance refusals [`IssueRefusal`].
//! - **The issuer wing** ([`issuer`](mod@issuer), feature `issuer`): the
//!   issuer home, certificate and CRL creation, [`rotation`], revocation
//!   lists, the [`ledger`], the one issuance path (`issuer::issue`) and the
//!   bulk pipeline over it (`issuer::bulk`).
//! - **The machine wing** ([`activation`]): the [`store`], root [`trust`],
//!   activation and status (verify, then store), and [`revocation`]
//!   import.
//!
//! Without default features the crate is the core plus the machine wing: a
//! verifier for embedding, with no issuer code (README, "The verifier for
//! embedding").
#![warn(missing_docs)]

// The core: formats, keys, certificates and the ordered checks. It reads
// nothing it is not given and imports neither wing.
mod core;
// The machine wing: the activation store, activation, revocation import
// and root trust on a machine that verifies.
pub mod activation;
// The issuer wing: the issuer home, its rotations, CRLs and revocation
// lists, the ledger and issuance. Behind the `issuer` feature.
#[cfg(feature = "issuer")]
pub mod issuer;

pub use crate::core::{bundle, clock, fsutil, jws, keys, machine, pkcs11, pki, product_key, request, token, verify};
pub use activation::{revocation, store, trust};
#[cfg(feature = "issuer")]
pub use issuer::{crl_number, ledger, rotation};

pub use crate::core::agent_error::AgentError;
pub use crate::core::error::{CrossLimit, Error, IssueRefusal, Result, VerifyError};
