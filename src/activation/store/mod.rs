//! The machine's activation store: trusted roots, installed tokens,
//! revocation data and a small state file, in one directory.
//!
//! This module is storage only. It never verifies a signature, a chain or a
//! token; the verification layer does that and then calls a [`StoreLock`]
//! method to record the result. What it does guarantee is that whatever was
//! recorded is read back exactly, survives a crash, and is never lost to a
//! concurrent writer.
//!
//! # Location
//!
//! [`Store::default_dir_for`] gives the documented default: `/var/lib/tka`
//! for root, otherwise `$XDG_DATA_HOME/tka` (when that is set to an absolute
//! path) or `~/.local/share/tka`. The CLI lets `--store DIR` or `TKA_STORE`
//! override it.
//!
//! # Layout (version 1)
//!
//! ```text
//! <dir>/                     0700; created by Store::open if missing
//!   version                  "1\n": the layout version (see below)
//!   lock                     empty, 0600; every writer holds an exclusive lock on it
//!   state.json               StoreState: clock high-water mark, revocation sequences
//!   agent.json               optional CachedHost: the activation host that answered
//!                            the agent last {"host": .., "port": .., "when": <unix secs>}
//!   container-warning-shown  optional, empty: the container warning was shown once
//!                            (CONTAINER_WARNING_FILE); not shown again for this store
//!   roots/<fp>.pem           trusted roots, one PEM CERTIFICATE each, 0644;
//!                            <fp> is the lowercase hex SHA-256 of the DER
//!   roots/<fp>.json          optional product scope of that root:
//!                            {"products": ["a", "b"]}; none: every product
//!   roots/<fp>.cross         optional vouching chain of a root trusted through a
//!                            cross-certificate (PEM CERTIFICATEs: the cross, the
//!                            root that signed it, and that root's own chain);
//!                            none: a root trusted on its own
//!   tokens/<product>.json    the installed token for <product>:
//!                            {"product": .., "installed_at": <unix secs>, "token": ".."}
//!   crls/<key>.der           X.509 CRLs (DER), one per issuer key
//!   revocations/<key>.jws    token revocation lists (JWS compact text); <key> is
//!                            <root fp>-<list id> (see list_key), or a bare list id
//!                            in stores written before lists were bound to roots
//!   certs/<fp>.pem           known certificates, one PEM CERTIFICATE each, 0644
//!                            (at most MAX_KNOWN_CERTS): public issuer certificates
//!                            the chains of compact tokens are built from; not trusted
//! ```
//!
//! Subdirectories are 0755 and data files 0644 (except `lock`): the top
//! directory's 0700 is the single access gate, so an administrator who wants
//! unprivileged programs to read activations loosens that one directory.
//! Product names are file names: 1 to 64 characters from `A-Z a-z 0-9 . _ -`,
//! not starting with `.` ([`StoreError::BadProduct`] otherwise). Revocation
//! keys are 1 to 128 lowercase hex digits chosen by the caller
//! ([`StoreError::BadKey`]).
//!
//! # Guarantees
//!
//! - **Atomic and durable writes.** Every file is written through
//!   `fsutil::write_atomic`: temporary file in the same directory, fsync,
//!   rename over the target, fsync of the directory. A reader, or the store
//!   after a crash or power cut, sees the old file or the new one, never a
//!   mix. Removals fsync the directory too.
//! - **Serialized writers.** Every write method lives on [`StoreLock`],
//!   which holds an exclusive `flock` on `<dir>/lock` ([`Store::lock`]
//!   blocks, [`Store::try_lock`] does not). The lock is per open file, so it
//!   serializes threads (even on one [`Store`]) as well as processes, and
//!   the kernel drops it if the holder dies. A read-modify-write of the
//!   state done under one lock loses no concurrent update.
//! - **Lock-free reads.** Because every file is replaced atomically, the read
//!   methods on [`Store`] need no lock. A file removed between listing and
//!   reading is simply skipped.
//! - **State only moves forward.** [`StoreLock::save_state`] refuses
//!   ([`StoreError::Regression`]) to lower the clock high-water mark or any
//!   revocation sequence number, or to drop one; [`StoreState::observe`]
//!   never lowers the mark. [`StoreLock::replace_state`] is the explicit,
//!   unchecked escape hatch for an administrator repairing a clock that was
//!   once set far into the future.
//! - **Nothing is silently repaired.** A missing or unparsable `state.json`,
//!   a root whose content does not match its file name, a token file naming
//!   another product, an unexpected file in a store directory or a file over
//!   its size limit is reported as [`StoreError::Corrupt`] with its path;
//!   the store never resets or ignores it. (Deleting `state.json` is the
//!   obvious way to reset the clock high-water mark, so a missing one is an
//!   error, not a fresh start.) Likewise a store that holds roots, tokens,
//!   CRLs or revocation lists but no `version` file (with or without
//!   `state.json`) is [`StoreError::Corrupt`] from [`Store::open`], never
//!   re-initialised: data is only written into an initialised store, so it
//!   has lost files.
//! - **Bounded reads.** Files are read with a size limit and never loaded
//!   whole when larger: tokens and state 64 KiB ([`MAX_TOKEN_FILE`],
//!   [`MAX_STATE_FILE`]), roots 64 KiB ([`MAX_ROOT_FILE`]), known
//!   certificates 32 KiB ([`MAX_CERT_FILE`]), CRLs and revocation lists
//!   1 MiB ([`MAX_REVOCATION_FILE`]).
//! - **No temporary files left.** A successful write leaves none; a failed
//!   one removes its own; one left by a writer killed mid-write is removed by
//!   the next [`Store::lock`] (a status check that finds the clock mark
//!   already at its time writes nothing and leaves them to the next
//!   writer). Readers skip names starting with `.`.
//! - **Deterministic reads.** Lists come back sorted: roots by fingerprint,
//!   tokens by product, revocation data by key.
//! - **Versioned layout.** A store whose `version` is newer than
//!   [`LAYOUT_VERSION`] is refused ([`StoreError::NewerVersion`]) and left
//!   untouched.
//! - **Safe initialisation.** [`Store::open`] initialises a missing or
//!   empty directory (or finishes one whose initialisation was
//!   interrupted, holding no data yet) (under the lock, so concurrent first runs agree), but
//!   refuses ([`StoreError::NotAStore`]) a non-empty directory that is not a
//!   store, and any store directory writable by group or others
//!   ([`StoreError::InsecurePermissions`]).
//!
//! The store is tamper-evident against mistakes and naive edits, not
//! tamper-proof: root on the machine can rewrite any of these files.
//!
//! # Example
//!
//! ```
//! use tka::store::{check_clock, Store, DEFAULT_CLOCK_TOLERANCE_SECS};
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path().join("store");
//! let store = Store::open(&dir)?;
//! let now = 1_750_000_000;
//! {
//!     // ... the verification layer has accepted `token` for "office" ...
//!     let lock = store.lock()?;
//!     let mut state = lock.state()?;
//!     check_clock(&state, now, DEFAULT_CLOCK_TOLERANCE_SECS).expect("clock");
//!     state.observe(now);
//!     lock.save_state(&state)?;
//!     lock.put_token("office", "eyJ...header.payload.sig", now)?;
//! } // lock released here
//! assert_eq!(store.token("office")?.unwrap().installed_at, now);
//! # Ok::<(), tka::store::StoreError>(())
//! ```

mod cached_host;
mod clock;
mod files;
mod lock;
mod names;
mod notices;

pub use crate::core::store_error::StoreError;
pub use cached_host::{CachedHost, CACHED_HOST_FILE, MAX_CACHED_HOST_FILE};
pub use clock::{check_clock, StoreState, DEFAULT_CLOCK_TOLERANCE_SECS};
pub use files::*;
pub use lock::StoreLock;
pub use notices::CONTAINER_WARNING_FILE;
