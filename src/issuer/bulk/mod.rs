//! Issuance in volume: many requests (or renewals) in one run, signed in
//! parallel, recorded in batched transactions, written as token files.
//!
//! Each chunk of items is one `BEGIN IMMEDIATE` transaction: the seats are
//! checked and taken and the tokens' rows inserted, then the transaction
//! commits. Only **after** the commit are the chunk's token files written.
//! Signing is pipelined: while chunk *n* is recorded, a signing thread
//! signs chunk *n+1* on every core from a plan made *ahead*, outside any
//! transaction. The transaction takes that plan as it is when it can see
//! that nothing the plan read has changed since (SQLite: no other
//! connection committed, the chunk's entitlements are as planned, its
//! machines are in no earlier chunk); otherwise it plans the chunk again,
//! for real, and takes a token signed ahead only if its claims are what
//! that plan gives, and whatever else the plan needs is signed inside the
//! transaction. Signing ahead can waste a signature (another process took
//! the last seat or issued the same request meanwhile), never record one
//! that deciding inside the transaction would not give. So:
//!
//! - **No token file without its ledger row.** A crash, a full disk or a
//!   failed commit can leave committed rows whose files are missing (or, after
//!   a power failure, empty), never a file whose token the ledger does not
//!   know. Running the same batch again writes the missing files from the
//!   ledger (the same tokens) and consumes nothing. A token signed ahead and
//!   never recorded is only lost work: it was never written anywhere.
//! - **Counts are exact under concurrency.** Seats are counted inside the
//!   write transaction, so two processes on one ledger never exceed an
//!   entitlement's count; serials are the primary key, never duplicated.
//! - **Idempotent re-runs.** An item whose request already has a live token
//!   (not released, not revoked) gets that token again, unless
//!   [`BatchOptions::reissue`] asks for a fresh one; a machine already
//!   counted never consumes another seat.
//!
//! Token files are written atomically (temporary file, rename) but not
//! fsynced one by one: the ledger is the durable record, and the files are
//! its copies, rewritten on a re-run.

//!
//! The files: [`requests`] (reading requests), [`report`] (what a run
//! reports), [`batch`] (a batch of requests: the early refusals and the
//! run), [`renew`] (renewals from the ledger), `pipeline` (chunks,
//! signing ahead, the transactions, tuning) and [`files`] (token files and
//! the bundle). Each item's decision and record are the single issuance
//! path's ([`crate::issuer::issue`]).

pub mod batch;
pub mod files;
mod pipeline;
pub mod renew;
pub mod report;
pub mod requests;

pub use crate::core::bundle::BundleLine;
pub use crate::issuer::issue::{request_digest, IssuedItem, Seat};
pub use batch::{issue_batch, issue_batch_to, BatchOptions, DEFAULT_CHUNK};
pub use files::{bundle_text, token_file_name, write_bundle, write_token_file, Output};
pub use renew::{renew_batch, renew_batch_to, RenewOptions};
pub use report::{BatchReport, ItemReason, ItemReport, ItemStatus};
pub use requests::{read_requests_dir, read_requests_lines, synthetic_request, BatchInput};
