//! Issuance in volume: many requests (or renewals) in one run, signed in
//! parallel, recorded in batched transactions, written as token files.
//!
//! Each chunk of items is one `BEGIN IMMEDIATE` transaction: the seats are
//! checked and taken and the tokens' rows inserted, then the transaction
//! commits. Only **after** the commit are the chunk's token files written.
//! Signing is pipelined: while chunk *n* is recorded, a signing thread
//! signs chunk *n+1* on every core from a plan made *ahead*, outside any
//! transaction. The transaction then plans the chunk again, for real, and
//! takes a token signed ahead only if its claims are what that plan gives;
//! whatever else the plan needs is signed inside the transaction. Signing
//! ahead can waste a signature (another process took the last seat or
//! issued the same request meanwhile), never record one the transaction
//! did not decide. So:
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

use super::{db_err, find_entitlement, Entitlement, Ledger};
use crate::core::error::{Error, Result};
use crate::core::jws::TOKEN_TYP;
use crate::core::request::{ActivationRequest, MAX_REQUEST_SIZE};
use crate::core::token::{build_claims, Claims, IssueOptions, TokenLifetime, TokenSigner};
use rayon::prelude::*;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Items per transaction by default.
pub const DEFAULT_CHUNK: usize = 512;

/// One request of a batch, as read (or the reason it could not be read).
#[derive(Debug, Clone)]
pub struct BatchInput {
    /// Where it came from: a file name, or `FILE:LINE`.
    pub source: String,
    /// The parsed request, or why it is not one.
    pub request: std::result::Result<ActivationRequest, String>,
}

/// How a batch is issued.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Entitlement (id or name) every machine is counted against.
    pub entitlement: Option<String>,
    /// Token options. Empty `features` means the entitlement's features;
    /// otherwise they must be among the entitlement's. `entitlement` and
    /// `serial` are ignored (set by the ledger).
    pub issue: IssueOptions,
    /// Sign fresh tokens for requests that already have one (still consuming no seat).
    pub reissue: bool,
    /// Items per transaction.
    pub chunk: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions { entitlement: None, issue: IssueOptions::default(), reissue: false, chunk: DEFAULT_CHUNK }
    }
}

/// Outcome of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    /// Issued (or an existing token returned) and written.
    Ok,
    /// Refused by policy or malformed input; nothing recorded for it.
    Refused,
    /// Failed to run (the ledger or the output failed); see `reason`.
    Error,
}

/// How an item's machine was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Seat {
    /// The machine took a new seat.
    New,
    /// The machine was already counted: nothing consumed.
    Counted,
}

/// A token handed out by a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedItem {
    /// Serial.
    pub serial: String,
    /// The JWS compact text (empty once written to a file by a batch with an output directory).
    pub text: String,
    /// Product.
    pub product: String,
    /// Machine.
    pub cmid: String,
    /// Expiry.
    pub expires: Option<i64>,
}

/// The report line of one item.
#[derive(Debug, Clone, Serialize)]
pub struct ItemReport {
    /// Position in the batch, from 1.
    pub index: usize,
    /// Where the request came from.
    pub source: String,
    /// ok, refused or error.
    pub status: ItemStatus,
    /// The machine, when the request could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmid: Option<String>,
    /// The token's serial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The token file written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Whether the machine took a new seat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seat: Option<Seat>,
    /// True when the token was issued by an earlier run and returned again.
    pub existing: bool,
    /// Why it was refused or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The token itself (not in the JSON report).
    #[serde(skip)]
    pub issued: Option<IssuedItem>,
}

/// The report of a batch.
#[derive(Debug, Serialize)]
pub struct BatchReport {
    /// The entitlement counted against.
    pub entitlement: Option<i64>,
    /// Items in the batch.
    pub total: usize,
    /// Items ok.
    pub ok: usize,
    /// Items refused.
    pub refused: usize,
    /// Items that failed.
    pub errors: usize,
    /// Seats taken by this run.
    pub new_seats: usize,
    /// Tokens signed by this run.
    pub signed: usize,
    /// Existing tokens returned.
    pub existing: usize,
    /// Why the run stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted_reason: Option<String>,
    /// Per item, in input order.
    pub items: Vec<ItemReport>,
    /// The error that stopped the run (items not reached are `error`).
    #[serde(skip)]
    pub aborted: Option<Error>,
}

impl BatchReport {
    fn new(entitlement: Option<i64>, items: Vec<ItemReport>) -> Self {
        BatchReport {
            entitlement,
            total: items.len(),
            ok: 0,
            refused: 0,
            errors: 0,
            new_seats: 0,
            signed: 0,
            existing: 0,
            aborted_reason: None,
            items,
            aborted: None,
        }
    }

    fn tally(&mut self) {
        let count = |s| self.items.iter().filter(|i| i.status == s).count();
        self.ok = count(ItemStatus::Ok);
        self.refused = count(ItemStatus::Refused);
        self.errors = count(ItemStatus::Error);
        self.new_seats = self.items.iter().filter(|i| i.status == ItemStatus::Ok && i.seat == Some(Seat::New)).count();
        self.existing = self.items.iter().filter(|i| i.status == ItemStatus::Ok && i.existing).count();
        self.signed = self.items.iter().filter(|i| i.issued.is_some() && !i.existing).count();
    }
}

/// One item ready for planning.
struct Work {
    slot: usize,
    req: ActivationRequest,
    digest: Option<String>,
    nonce: Option<String>,
    replaces: Option<String>,
    entitlement: Option<i64>,
    opts: IssueOptions,
}

/// SHA-256 (hex) of a request's canonical JSON: the same request in text or
/// JSON form has the same digest. It identifies the request across runs.
pub fn request_digest(req: &ActivationRequest) -> String {
    let json = serde_json::to_string(req).expect("a request always serializes");
    hex(&Sha256::digest(json.as_bytes()))
}

fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(DIGITS[usize::from(x >> 4)] as char);
        s.push(DIGITS[usize::from(x & 15)] as char);
    }
    s
}

/// Reads every regular, non-hidden file in `dir` (sorted by name) as one request.
pub fn read_requests_dir(dir: &Path) -> Result<Vec<BatchInput>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|p| {
            let source = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let request = match crate::core::fsutil::read_bounded(&p, MAX_REQUEST_SIZE as u64) {
                Ok(b) => match String::from_utf8(b) {
                    Ok(t) => ActivationRequest::parse(&t).map_err(|e| e.to_string()),
                    Err(_) => Err("malformed request: not UTF-8 text".into()),
                },
                Err(e) => Err(format!("cannot read {}: {e}", p.display())),
            };
            BatchInput { source, request }
        })
        .collect())
}

/// Reads one request per line (text form, or JSON on one line); blank lines
/// and lines starting with `#` are skipped. `label` names the input in sources.
///
/// A line longer than [`MAX_REQUEST_SIZE`] is refused as an item without
/// being held in memory (its bytes are skipped up to the next newline).
pub fn read_requests_lines(mut input: impl BufRead, label: &str) -> Result<Vec<BatchInput>> {
    use std::io::Read;
    let mut out = Vec::new();
    for i in 0.. {
        let mut line = Vec::new();
        let limit = MAX_REQUEST_SIZE as u64 + 2; // the request, "\r\n"
        let n = (&mut input).take(limit).read_until(b'\n', &mut line).map_err(|e| Error::io(label, e))?;
        if n == 0 {
            break;
        }
        let source = format!("{label}:{}", i + 1);
        if line.last() != Some(&b'\n') && n as u64 == limit {
            skip_line(&mut input).map_err(|e| Error::io(label, e))?;
            let e = crate::VerifyError::TooLarge { what: "request", limit: MAX_REQUEST_SIZE };
            out.push(BatchInput { source, request: Err(e.to_string()) });
            continue;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let request = match std::str::from_utf8(&line) {
            Ok(t) => {
                let t = t.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                ActivationRequest::parse(t).map_err(|e| e.to_string())
            }
            Err(_) => Err("malformed request: not UTF-8 text".into()),
        };
        out.push(BatchInput { source, request });
    }
    Ok(out)
}

/// Consumes input up to and including the next newline, without keeping it.
fn skip_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(p) => {
                input.consume(p + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

/// The token file name for a machine and product: `<product>_<cmid>.jws`,
/// with anything but letters, digits, `.`, `-` and `_` replaced by `_`.
pub fn token_file_name(product: &str, cmid: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
    };
    let p = clean(product);
    let p = p.trim_start_matches('.');
    format!("{p}_{}.jws", clean(cmid))
}

/// Issues a token for every request in `inputs`, counting each machine
/// against the entitlement, and writes `<out>/<product>_<cmid>.jws` for
/// every item that is ok (when `out` is given). `progress` is called with
/// the number of items finished, as they finish.
///
/// Malformed, duplicated (the same request, or the same machine twice) and
/// wrong-product requests are refused one by one while the rest proceed.
/// An error that stops the run (the ledger fails) is returned in
/// [`BatchReport::aborted`]; what committed before it stays committed.
pub fn issue_batch(
    ledger: &mut Ledger,
    inputs: Vec<BatchInput>,
    opts: &BatchOptions,
    signer: &TokenSigner,
    now: i64,
    out: Option<&Path>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BatchReport> {
    issue_batch_to(ledger, inputs, opts, signer, now, out.map_or(Output::Nothing, Output::Dir), progress)
}

/// Where a batch writes its tokens.
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    /// Nowhere: the tokens are in the report.
    Nothing,
    /// `<dir>/<product>_<cmid>.jws`, one file per token.
    Dir(&'a Path),
    /// One bundle (JSON Lines, see [`BundleLine`]), written as the chunks
    /// commit and then made durable and put in place atomically, as
    /// [`write_bundle`] writes it. A failure to write it is returned as
    /// the batch's error (the rows committed stay committed; the same batch
    /// run again returns the same tokens).
    Bundle(&'a Path),
}

/// [`issue_batch`] with any [`Output`].
pub fn issue_batch_to(
    ledger: &mut Ledger,
    inputs: Vec<BatchInput>,
    opts: &BatchOptions,
    signer: &TokenSigner,
    now: i64,
    output: Output<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BatchReport> {
    let (out, bundle) = prepare_output(output)?;
    let ent = match &opts.entitlement {
        Some(sel) => Some(ledger.entitlement(sel)?),
        None => None,
    };
    let mut items = Vec::with_capacity(inputs.len());
    let mut work = Vec::new();
    let mut by_digest: HashMap<String, usize> = HashMap::new();
    let mut by_machine: HashMap<(String, String), usize> = HashMap::new();
    // The digests and request checks, on every core.
    let allow_weak = opts.issue.allow_weak_binding || ent.as_ref().is_some_and(|e| e.allow_weak_binding);
    let checked: Vec<Option<(String, Option<String>)>> = inputs
        .par_iter()
        .map(|i| {
            i.request.as_ref().ok().map(|r| {
                (request_digest(r), crate::core::token::check_request(r, allow_weak).err().map(|e| e.to_string()))
            })
        })
        .collect();
    for ((slot, input), checked) in inputs.into_iter().enumerate().zip(checked) {
        let mut item = blank_item(slot, input.source);
        let refuse = |item: &mut ItemReport, why: String| {
            item.status = ItemStatus::Refused;
            item.reason = Some(why);
        };
        match input.request {
            Err(why) => refuse(&mut item, why),
            Ok(req) => {
                item.cmid = Some(req.cmid.clone());
                let (digest, mismatch) = checked.expect("checked with its request");
                if let Some(e) = ent.as_ref().filter(|e| e.product != req.product) {
                    refuse(
                        &mut item,
                        format!(
                            "wrong product: the request is for {:?}, {} is for {:?}",
                            req.product,
                            e.label(),
                            e.product
                        ),
                    );
                } else if let Some(why) = mismatch {
                    refuse(&mut item, why);
                } else if let Some(first) = by_digest.get(&digest) {
                    refuse(&mut item, format!("duplicate: the same request as item {}", first + 1));
                } else if let Some(first) = by_machine.get(&(req.product.clone(), req.cmid.clone())) {
                    refuse(
                        &mut item,
                        format!("duplicate: machine {} is already asked for by item {}", req.cmid, first + 1),
                    );
                } else {
                    by_digest.insert(digest.clone(), slot);
                    by_machine.insert((req.product.clone(), req.cmid.clone()), slot);
                    work.push(Work {
                        slot,
                        nonce: Some(req.nonce.clone()),
                        req,
                        digest: Some(digest),
                        replaces: None,
                        entitlement: ent.as_ref().map(|e| e.id),
                        opts: opts.issue.clone(),
                    });
                }
            }
        }
        items.push(item);
    }
    let mut report = BatchReport::new(ent.as_ref().map(|e| e.id), items);
    let refused_early = report.items.iter().filter(|i| i.status == ItemStatus::Refused).count();
    if refused_early > 0 {
        progress(refused_early as u64);
    }
    let bundled = run(ledger, work, opts.reissue, opts.chunk, signer, now, out, bundle, progress, &mut report);
    report.tally();
    bundled.map(|()| report)
}

/// The output directory (prepared) and the bundle (its temporary file created).
fn prepare_output(output: Output<'_>) -> Result<(Option<&Path>, Option<BundleFile>)> {
    Ok(match output {
        Output::Nothing => (None, None),
        Output::Dir(dir) => {
            prepare_out_dir(dir)?;
            (Some(dir), None)
        }
        Output::Bundle(path) => (None, Some(BundleFile::create(path).map_err(|e| Error::io(path, e))?)),
    })
}

/// Which tokens [`renew_batch`] renews.
#[derive(Debug, Clone)]
pub struct RenewOptions {
    /// Renew machines whose newest token expires before `now + within` (seconds),
    /// including those already expired.
    pub within: i64,
    /// Only this entitlement (id or name).
    pub entitlement: Option<String>,
    /// Only this product.
    pub product: Option<String>,
    /// Lifetime of the new tokens; `None` keeps each old token's lifetime.
    pub lifetime: Option<TokenLifetime>,
    /// Signature algorithm.
    pub alg: crate::core::keys::SignatureAlgorithm,
    /// Items per transaction.
    pub chunk: usize,
}

/// Re-issues, from the ledger alone, a token for every machine whose newest
/// live token (not released, not revoked) expires within the window. The new
/// token keeps the machine's components, match rule, edition and grace, takes
/// the entitlement's current features, and records which serial it renews.
/// Machines are already counted: nothing is consumed. Re-running renews only
/// what is still due, so it is idempotent.
pub fn renew_batch(
    ledger: &mut Ledger,
    opts: &RenewOptions,
    signer: &TokenSigner,
    now: i64,
    out: Option<&Path>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BatchReport> {
    renew_batch_to(ledger, opts, signer, now, out.map_or(Output::Nothing, Output::Dir), progress)
}

/// [`renew_batch`] with any [`Output`].
pub fn renew_batch_to(
    ledger: &mut Ledger,
    opts: &RenewOptions,
    signer: &TokenSigner,
    now: i64,
    output: Output<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BatchReport> {
    let ent_filter = match &opts.entitlement {
        Some(sel) => Some(ledger.entitlement(sel)?.id),
        None => None,
    };
    let (out, bundle) = prepare_output(output)?;
    let due = ledger.renewal_due(now.saturating_add(opts.within), ent_filter, opts.product.as_deref())?;
    let mut items = Vec::with_capacity(due.len());
    let mut work = Vec::new();
    for (slot, rec) in due.into_iter().enumerate() {
        let mut item = blank_item(slot, format!("renewal of {}", rec.serial));
        item.cmid = Some(rec.cmid.clone());
        match crate::core::token::decode_unverified(&rec.token) {
            Err(e) => {
                item.status = ItemStatus::Refused;
                item.reason = Some(format!("the ledger's token {} cannot be read: {e}", rec.serial));
            }
            Ok((_, old)) => {
                let lifetime = opts.lifetime.unwrap_or_else(|| match old.exp {
                    Some(exp) => TokenLifetime::Seconds(
                        (exp - old.iat).max(crate::core::token::MIN_TOKEN_LIFETIME_SECS as i64) as u64,
                    ),
                    None => TokenLifetime::Perpetual,
                });
                let issue = IssueOptions {
                    lifetime,
                    features: if rec.entitlement.is_some() { Vec::new() } else { old.tka.features.clone() },
                    edition: old.tka.edition.clone(),
                    entitlement: None,
                    match_rule: Some(old.tka.match_rule),
                    grace_secs: old.tka.grace.max(0) as u64,
                    renew_after_secs: None,
                    alg: opts.alg,
                    serial: None,
                    // A renewal keeps the binding; a weak one stays allowed
                    // only if the old token recorded the issuer's choice.
                    allow_weak_binding: old.tka.weak_binding,
                };
                let req = ActivationRequest {
                    version: 1,
                    product: rec.product.clone(),
                    cmid: rec.cmid.clone(),
                    components: rec.components.clone(),
                    created: rec.issued_at,
                    nonce: String::new(),
                    hostname: None,
                };
                work.push(Work {
                    slot,
                    req,
                    digest: None,
                    nonce: None,
                    replaces: Some(rec.serial.clone()),
                    entitlement: rec.entitlement,
                    opts: issue,
                });
            }
        }
        items.push(item);
    }
    let mut report = BatchReport::new(ent_filter, items);
    let bundled = run(ledger, work, true, opts.chunk, signer, now, out, bundle, progress, &mut report);
    report.tally();
    bundled.map(|()| report)
}

impl Ledger {
    /// The newest live token of every machine whose newest token expires at or before `limit`.
    fn renewal_due(
        &self,
        limit: i64,
        entitlement: Option<i64>,
        product: Option<&str>,
    ) -> Result<Vec<super::TokenRecord>> {
        let sql = format!(
            "{} WHERE t.released_at IS NULL AND r.serial IS NULL AND t.expires IS NOT NULL AND t.expires <= ?1
               AND (?2 IS NULL OR t.entitlement_id = ?2) AND (?3 IS NULL OR t.product = ?3)
               AND NOT EXISTS (SELECT 1 FROM tokens n LEFT JOIN revocations nr ON nr.serial = n.serial
                               WHERE n.cmid = t.cmid AND n.product = t.product
                                 AND n.entitlement_id IS t.entitlement_id AND n.released_at IS NULL
                                 AND nr.serial IS NULL AND n.serial != t.serial
                                 AND (n.expires IS NULL OR n.expires > t.expires
                                      OR (n.expires = t.expires AND n.serial > t.serial)))
             ORDER BY t.expires, t.serial",
            super::TOKEN_SELECT
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = st.query_map(params![limit, entitlement, product], super::token_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }
}

fn blank_item(slot: usize, source: String) -> ItemReport {
    ItemReport {
        index: slot + 1,
        source,
        status: ItemStatus::Ok,
        cmid: None,
        serial: None,
        file: None,
        seat: None,
        existing: false,
        reason: None,
        issued: None,
    }
}

/// The seat rule: a machine that already holds a seat (same CMID) is given
/// another token without consuming a seat only if the request binds exactly
/// the hardware (DMI UUID, serials, disk, MACs) of every token of that seat
/// not released — revoked and expired ones included — and passes each of
/// them under its own match rule. Hardware never drifts within a seat, so
/// every machine that passes any token of the seat holds more than half of
/// the same hardware values (`most`'s anchor) and no two machines with
/// different hardware share a seat, however the requests are sequenced; a
/// machine whose hardware changed is moved by releasing the seat. Returns
/// the refusal, if any.
fn seat_held_elsewhere(
    st: &mut rusqlite::CachedStatement<'_>,
    e: &Entitlement,
    req: &ActivationRequest,
    dberr: impl Fn(rusqlite::Error) -> Error + Copy,
) -> Result<Option<String>> {
    let rows = st
        .query_map(params![e.id, req.cmid, req.product], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })
        .map_err(dberr)?;
    for row in rows {
        let (serial, components, body) = row.map_err(dberr)?;
        let bound: Vec<crate::core::machine::ComponentHash> =
            serde_json::from_str(&components).map_err(|err| Error::format(format!("ledger token {serial}"), err))?;
        let rule = token_rule(&body).map_err(|err| Error::format(format!("ledger token {serial}"), err))?;
        let (old_hw, new_hw) = (hardware_of(&bound), hardware_of(&req.components));
        if old_hw != new_hw {
            let mut changed: Vec<&str> = old_hw.symmetric_difference(&new_hw).map(|c| c.0).collect();
            changed.sort_by_key(|k| crate::core::machine::kinds::rank(k));
            changed.dedup();
            return Ok(Some(format!(
                "machine {} holds a seat in {} through token {serial}, bound to other hardware (changed: {}): \
                 a machine's hardware stays the same within a seat; if this is that machine with new \
                 hardware, release the seat first (tka ledger release)",
                req.cmid,
                e.label(),
                changed.join(", ")
            )));
        }
        let report = rule.evaluate(&bound, &req.components);
        if !report.is_match() {
            return Ok(Some(format!(
                "machine {} holds a seat in {} through token {serial}, which this request's machine does not \
                 pass ({report}): it is another machine with the same CMID (a disk or VM copy needs its own \
                 machine-id), or release the seat first (tka ledger release)",
                req.cmid,
                e.label()
            )));
        }
    }
    Ok(None)
}

/// The hardware components of a binding, as (kind, hash) pairs.
fn hardware_of(components: &[crate::core::machine::ComponentHash]) -> std::collections::BTreeSet<(&str, &str)> {
    components
        .iter()
        .filter(|c| crate::core::machine::HARDWARE_ANCHORS.contains(&c.kind.as_str()))
        .map(|c| (c.kind.as_str(), c.hash.as_str()))
        .collect()
}

/// The match rule of a recorded token, from its body (`payload.signature`).
fn token_rule(body: &str) -> std::result::Result<crate::core::machine::MatchRule, String> {
    let payload = body.split('.').next().unwrap_or_default();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
        .map_err(|e| format!("payload is not base64url: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    crate::core::token::parse_claims(&v).map(|c| c.tka.match_rule).map_err(|e| e.to_string())
}

/// What planning decided for one item. (Short-lived, one per item of a
/// chunk: the size difference between variants does not matter.)
#[allow(clippy::large_enum_variant)]
enum Plan {
    Existing {
        serial: String,
        text: String,
        expires: Option<i64>,
        counted: bool,
    },
    /// `text` is the token when it was signed ahead of the transaction.
    Sign {
        claims: Claims,
        new_seat: bool,
        counted: bool,
        text: Option<Result<String>>,
    },
    Refuse(String),
}

/// A token signed ahead of its transaction, from a plan made outside it.
struct Presigned {
    claims: Claims,
    text: Result<String>,
}

/// What the signing thread is asked to sign for one chunk: per item, the
/// claims and algorithm, or nothing.
type SignJob = Vec<Option<(Claims, crate::core::keys::SignatureAlgorithm)>>;

fn sign_claims(signer: &TokenSigner, claims: &Claims, alg: crate::core::keys::SignatureAlgorithm) -> Result<String> {
    serde_json::to_value(claims)
        .map_err(|e| Error::format("token claims", e))
        .and_then(|v| signer.sign_payload(&v, TOKEN_TYP, alg))
}

/// Runs the batch as a pipeline of chunks. For each chunk:
///
/// 1. *plan ahead*: outside any transaction, decide from the ledger as it
///    is which items will probably need a new token, and build their claims;
/// 2. *sign*: a signing thread signs them on every core (rayon), while the
///    main thread records the previous chunk;
/// 3. *record*: one `BEGIN IMMEDIATE` transaction plans the chunk again, for
///    real (seats, existing tokens, entitlement as it is now), takes each
///    token signed ahead whose claims are still what the plan gives, signs
///    in place whatever the plan needs and was not signed ahead, inserts
///    the rows and commits;
/// 4. after the commit, the chunk's token files go to a writer thread.
///
/// Signing ahead only ever wastes a signature (another process took the
/// last seat or issued the same request meanwhile): what is recorded is
/// decided inside the transaction, exactly as if everything were signed
/// there.
#[allow(clippy::too_many_arguments)]
fn run(
    ledger: &mut Ledger,
    work: Vec<Work>,
    reissue: bool,
    chunk: usize,
    signer: &TokenSigner,
    now: i64,
    out: Option<&Path>,
    bundle: Option<BundleFile>,
    progress: &(dyn Fn(u64) + Sync),
    report: &mut BatchReport,
) -> Result<()> {
    use std::sync::mpsc;
    let mut chunks: Vec<Vec<Work>> = Vec::new();
    let mut rest = work.into_iter();
    for n in chunk_sizes(rest.len(), chunk) {
        chunks.push(rest.by_ref().take(n).collect());
    }
    let mut headers: Vec<(String, i64)> = Vec::new();
    let mut tuning = BulkTuning::apply(ledger);
    let checkpointer = tuning.checkpointer.take();
    // Files are written by a second thread, after their chunk committed.
    let bundling = bundle.is_some();
    let (file_tx, file_rx) = mpsc::channel::<(usize, Vec<FileJob>, String)>();
    let (ckpt_tx, ckpt_rx) = mpsc::channel::<()>();
    let written = std::thread::scope(|scope| {
        if let Some(conn) = checkpointer {
            // Checkpoints (WAL pages copied into the database file, which
            // is then fsynced) run here, after each commit, instead of in
            // the commit itself: recording the next chunk does not wait for them.
            scope.spawn(move || {
                while ckpt_rx.recv().is_ok() {
                    while ckpt_rx.try_recv().is_ok() {}
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            });
        }
        let writer = scope.spawn(move || {
            let mut bundle = bundle;
            let mut results = Vec::new();
            for (n, jobs, lines) in file_rx {
                results.extend(jobs.into_iter().map(|(s, p, text)| {
                    let r = write_token_file(&p, &text);
                    (s, p, r)
                }));
                if let Some(b) = &mut bundle {
                    b.append(&lines);
                }
                progress(n as u64);
            }
            (results, bundle.map(BundleFile::finish))
        });
        let (job_tx, job_rx) = mpsc::channel::<SignJob>();
        let (done_tx, done_rx) = mpsc::channel::<Vec<Option<Presigned>>>();
        scope.spawn(move || {
            for job in job_rx {
                let signed: Vec<Option<Presigned>> = job
                    .into_par_iter()
                    .map(|o| {
                        o.map(|(claims, alg)| {
                            let text = sign_claims(signer, &claims, alg);
                            Presigned { claims, text }
                        })
                    })
                    .collect();
                if done_tx.send(signed).is_err() {
                    break;
                }
            }
        });
        // Entitlements as the planning ahead sees them, with the seats it
        // expects this run to take: a batch larger than what is left of an
        // entitlement does not sign tokens that would be refused.
        let mut ahead_ents: HashMap<i64, Entitlement> = HashMap::new();
        let submit = move |ledger: &Ledger, batch: &[Work], ents: &mut HashMap<i64, Entitlement>| {
            let job = plan_ahead(ledger, batch, reissue, signer, now, ents);
            let _ = job_tx.send(job);
        };
        const AHEAD: usize = 3;
        for batch in chunks.iter().take(AHEAD) {
            submit(ledger, batch, &mut ahead_ents);
        }
        for i in 0..chunks.len() {
            let batch = &chunks[i];
            let slots: Vec<usize> = batch.iter().map(|w| w.slot).collect();
            let presigned = done_rx.recv().unwrap_or_default();
            match run_chunk(ledger, batch, reissue, signer, now, &mut headers, presigned) {
                Ok(results) => {
                    for (w, r) in batch.iter().zip(results) {
                        let it = &mut report.items[w.slot];
                        it.status = r.status;
                        it.reason = r.reason;
                        it.serial = r.issued.as_ref().map(|i| i.serial.clone());
                        it.seat = r.seat;
                        it.existing = r.existing;
                        it.issued = r.issued;
                    }
                    let jobs = match out {
                        Some(dir) => file_jobs(dir, &slots, &mut report.items),
                        None => Vec::new(),
                    };
                    let mut lines = String::new();
                    if bundling {
                        for &s in &slots {
                            if let Some(i) =
                                report.items[s].issued.as_ref().filter(|_| report.items[s].status == ItemStatus::Ok)
                            {
                                push_bundle_line(&mut lines, i);
                            }
                        }
                    }
                    let _ = file_tx.send((slots.len(), jobs, lines));
                    let _ = ckpt_tx.send(());
                }
                Err(e) => {
                    let why = format!("not issued: the run stopped: {e}");
                    for s in chunks[i..].iter().flatten().map(|w| w.slot) {
                        report.items[s].status = ItemStatus::Error;
                        report.items[s].reason = Some(why.clone());
                    }
                    report.aborted_reason = Some(e.to_string());
                    report.aborted = Some(e);
                    break;
                }
            }
            if let Some(next) = chunks.get(i + AHEAD) {
                submit(ledger, next, &mut ahead_ents);
            }
        }
        // Stops the signing thread (after its current chunk, if the run stopped).
        drop(submit);
        drop(done_rx);
        drop(file_tx);
        drop(ckpt_tx);
        writer.join().expect("the file writer does not panic")
    });
    tuning.restore(ledger);
    let (written, bundled) = written;
    for (s, p, r) in written {
        let it = &mut report.items[s];
        match r {
            Ok(()) => it.file = Some(p),
            Err(e) => {
                it.status = ItemStatus::Error;
                it.reason = Some(format!(
                    "issued and recorded as serial {}, but writing {} failed: {e}; run the batch again to write it",
                    it.serial.as_deref().unwrap_or("?"),
                    p.display()
                ));
            }
        }
    }
    bundled.unwrap_or(Ok(()))
}

/// How `total` items are cut into transactions of at most `chunk`: a small
/// first one, so that signing starts early, full ones, then the last full
/// one cut in halves (down to 32 items), so that little is left to record
/// once the last signature is made.
fn chunk_sizes(total: usize, chunk: usize) -> Vec<usize> {
    const SMALL: usize = 64;
    let chunk = chunk.max(1);
    let mut sizes = Vec::with_capacity(total / chunk + 8);
    let mut left = total;
    if left > chunk {
        sizes.push(SMALL.min(chunk));
        left -= SMALL.min(chunk);
    }
    while left > 0 {
        let n = if left > chunk {
            chunk
        } else if left >= 2 * (SMALL / 2) {
            left / 2
        } else {
            left
        };
        sizes.push(n);
        left -= n;
    }
    sizes
}

/// Connection settings for the length of a bulk run, restored after it.
///
/// - `cache_size` of at least 64 MiB: the pages planning reads (request
///   digests, seats) are the ones the inserts then modify, and a ledger of a
///   million tokens has more interior index pages than the default 2 MiB.
/// - Checkpoints move to a second connection on a thread of their own
///   (`wal_autocheckpoint` is 0 on the writing connection meanwhile); the
///   last one runs before the batch returns. Durability is unchanged:
///   commits are fsynced (`synchronous=FULL`) as always, and a checkpoint
///   is only a copy of committed WAL pages into the database file.
struct BulkTuning {
    cache_size: Option<i64>,
    autocheckpoint: Option<i64>,
    checkpointer: Option<rusqlite::Connection>,
}

/// Page cache of a bulk run (negative: KiB).
const BULK_CACHE_SIZE: i64 = -65536;

impl BulkTuning {
    fn apply(ledger: &Ledger) -> Self {
        let get = |name: &str| ledger.conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0)).ok();
        let mut t = BulkTuning { cache_size: None, autocheckpoint: None, checkpointer: None };
        if let Some(old) = get("cache_size") {
            let bytes = |v: i64| if v < 0 { -v * 1024 } else { v * 4096 };
            if bytes(old) < bytes(BULK_CACHE_SIZE)
                && ledger.conn.pragma_update(None, "cache_size", BULK_CACHE_SIZE).is_ok()
            {
                t.cache_size = Some(old);
            }
        }
        let checkpointer = rusqlite::Connection::open_with_flags(
            &ledger.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| {
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            c.pragma_update(None, "synchronous", "FULL")?;
            Ok(c)
        });
        if let (Ok(c), Some(old)) = (checkpointer, get("wal_autocheckpoint")) {
            if ledger.conn.pragma_update(None, "wal_autocheckpoint", 0).is_ok() {
                t.autocheckpoint = Some(old);
                t.checkpointer = Some(c);
            }
        }
        t
    }

    fn restore(self, ledger: &Ledger) {
        if let Some(v) = self.cache_size {
            let _ = ledger.conn.pragma_update(None, "cache_size", v);
        }
        if let Some(v) = self.autocheckpoint {
            let _ = ledger.conn.pragma_update(None, "wal_autocheckpoint", v);
        }
    }
}

/// The signing job of a chunk: the items that planning, outside any
/// transaction, expects to sign. A ledger error here only means nothing is
/// signed ahead; the transaction reports it.
fn plan_ahead(
    ledger: &Ledger,
    batch: &[Work],
    reissue: bool,
    signer: &TokenSigner,
    now: i64,
    ents: &mut HashMap<i64, Entitlement>,
) -> SignJob {
    // One read transaction (one snapshot, one lock) for the whole chunk;
    // dropped, it rolls back: nothing is written here.
    let Ok(read) = ledger.conn.unchecked_transaction() else {
        return Vec::new();
    };
    match plan_batch(&read, &ledger.path, batch, reissue, signer, now, ents, Vec::new()) {
        Ok(plans) => plans
            .into_iter()
            .zip(batch)
            .map(|(p, w)| match p {
                Plan::Sign { claims, .. } => Some((claims, w.opts.alg)),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

type FileJob = (usize, PathBuf, String);

struct Outcome {
    status: ItemStatus,
    reason: Option<String>,
    issued: Option<IssuedItem>,
    seat: Option<Seat>,
    existing: bool,
}

/// Decides every item of `batch` against the ledger as `conn` sees it:
/// the existing token to return, the claims to sign (and whether the
/// machine takes a new seat), or why it is refused. `ents` caches the
/// entitlements read and counts the seats taken (`used`). A token in
/// `presigned` (same position) is used when its claims carry what the plan
/// gives (entitlement, features); otherwise fresh claims are built.
#[allow(clippy::too_many_arguments)]
fn plan_batch(
    conn: &rusqlite::Connection,
    path: &Path,
    batch: &[Work],
    reissue: bool,
    signer: &TokenSigner,
    now: i64,
    ents: &mut HashMap<i64, Entitlement>,
    mut presigned: Vec<Option<Presigned>>,
) -> Result<Vec<Plan>> {
    let dberr = |e| db_err(path, e);
    let mut plans = Vec::with_capacity(batch.len());
    let mut existing_st = conn
        .prepare_cached(
            "SELECT t.serial, h.header || '.' || t.body, t.expires FROM tokens t
               JOIN jws_headers h ON h.id = t.header_id
             WHERE t.cmid = ?3 AND t.product = ?4 AND +t.request_digest = ?1 AND +t.entitlement_id IS ?2
               AND t.released_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.serial = t.serial)
             ORDER BY t.issued_at DESC, t.serial LIMIT 1",
        )
        .map_err(dberr)?;
    let mut seat_st = conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM seats WHERE entitlement_id = ?1 AND cmid = ?2)")
        .map_err(dberr)?;
    let mut seat_tokens_st = conn
        .prepare_cached(
            "SELECT t.serial, t.components, t.body FROM tokens t
             WHERE t.cmid = ?2 AND t.product = ?3 AND +t.entitlement_id = ?1 AND t.released_at IS NULL",
        )
        .map_err(dberr)?;
    for (i, w) in batch.iter().enumerate() {
        let ahead = presigned.get_mut(i).and_then(Option::take);
        let ent = match w.entitlement {
            None => None,
            Some(id) => match ents.entry(id) {
                std::collections::hash_map::Entry::Occupied(o) => Some(o.into_mut()),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let e = find_entitlement(conn, &id.to_string())
                        .map_err(dberr)?
                        .ok_or_else(|| Error::Usage(format!("entitlement {id} vanished from the ledger")))?;
                    Some(v.insert(e))
                }
            },
        };
        if !reissue {
            if let Some(d) = &w.digest {
                let found: Option<(String, String, Option<i64>)> = existing_st
                    .query_row(params![d, w.entitlement, w.req.cmid, w.req.product], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                    .map_err(dberr)?;
                if let Some((serial, text, expires)) = found {
                    plans.push(Plan::Existing { serial, text, expires, counted: ent.is_some() });
                    continue;
                }
            }
        }
        let mut o = w.opts.clone();
        o.serial = None;
        o.entitlement = w.entitlement.map(|id| id.to_string());
        if let Some(e) = &ent {
            o.allow_weak_binding |= e.allow_weak_binding;
            if o.features.is_empty() {
                o.features = e.features.clone();
            } else if let Some(f) = o.features.iter().find(|f| !e.features.contains(f)) {
                plans.push(Plan::Refuse(format!(
                    "feature {f:?} is not in {} (features: {})",
                    e.label(),
                    if e.features.is_empty() { "none".to_string() } else { e.features.join(",") }
                )));
                continue;
            }
        }
        // Claims depend on the request, the options, the signer and `now`
        // (the same for the whole run) and on the entitlement and features.
        let ahead = ahead.filter(|p| p.claims.tka.features == o.features && p.claims.tka.entitlement == o.entitlement);
        let (claims, text) = match ahead {
            Some(p) => (p.claims, Some(p.text)),
            None => match build_claims(&w.req, &o, signer.certificate(), now) {
                Ok(c) => (c, None),
                Err(e) => {
                    plans.push(Plan::Refuse(e.to_string()));
                    continue;
                }
            },
        };
        let Some(e) = ent else {
            plans.push(Plan::Sign { claims, new_seat: false, counted: false, text });
            continue;
        };
        if let Some(x) = e.expires {
            if now >= x {
                plans.push(Plan::Refuse(format!("{} expired at {}", e.label(), crate::core::clock::rfc3339(x))));
                continue;
            }
            let until = claims.exp.map(|exp| exp + claims.tka.grace);
            if until.is_none_or(|u| u > x) {
                plans.push(Plan::Refuse(format!(
                    "a token valid until {} would outlive {} (expires {}): issue shorter tokens (--days)",
                    until.map(crate::core::clock::rfc3339).unwrap_or_else(|| "forever".into()),
                    e.label(),
                    crate::core::clock::rfc3339(x)
                )));
                continue;
            }
        }
        let counted: bool = seat_st.query_row(params![e.id, w.req.cmid], |r| r.get(0)).map_err(dberr)?;
        if counted {
            if let Some(why) = seat_held_elsewhere(&mut seat_tokens_st, e, &w.req, dberr)? {
                plans.push(Plan::Refuse(why));
                continue;
            }
            plans.push(Plan::Sign { claims, new_seat: false, counted: true, text });
        } else if e.used < e.machines {
            e.used += 1;
            plans.push(Plan::Sign { claims, new_seat: true, counted: true, text });
        } else {
            plans.push(Plan::Refuse(format!(
                "{} is exhausted: all {} machines are counted ({} of {} used); release a machine or raise the count",
                e.label(),
                e.machines,
                e.used,
                e.machines
            )));
        }
    }
    Ok(plans)
}

/// One transaction: plan for real, sign what was not signed ahead, insert, commit.
fn run_chunk(
    ledger: &mut Ledger,
    batch: &[Work],
    reissue: bool,
    signer: &TokenSigner,
    now: i64,
    headers: &mut Vec<(String, i64)>,
    presigned: Vec<Option<Presigned>>,
) -> Result<Vec<Outcome>> {
    let path = ledger.path.clone();
    let dberr = |e| db_err(&path, e);
    let fingerprint = signer.certificate().fingerprint.clone();
    let tx = ledger.write_tx()?;
    // Entitlements as they are now, inside the write lock.
    let mut ents: HashMap<i64, Entitlement> = HashMap::new();
    let mut plans = plan_batch(&tx, &path, batch, reissue, signer, now, &mut ents, presigned)?;
    // Whatever the plan needs and was not signed ahead is signed here, in
    // parallel, inside the transaction: seats and rows commit together.
    // (Only when there is any: the pool is busy signing the next chunk.)
    if plans.iter().any(|p| matches!(p, Plan::Sign { text: None, .. })) {
        plans.par_iter_mut().zip(batch.par_iter()).for_each(|(p, w)| {
            if let Plan::Sign { claims, text: text @ None, .. } = p {
                *text = Some(sign_claims(signer, claims, w.opts.alg));
            }
        });
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut ins_token = tx
            .prepare_cached(
                "INSERT INTO tokens (serial, entitlement_id, product, cmid, components, issued_at, not_before, expires,
                                     signer, header_id, body, request_nonce, request_digest, replaces)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .map_err(dberr)?;
        let mut ins_seat = tx
            .prepare_cached("INSERT INTO seats (entitlement_id, cmid, counted_at) VALUES (?1, ?2, ?3)")
            .map_err(dberr)?;
        let mut taken: HashMap<i64, i64> = HashMap::new();
        for (plan, w) in plans.into_iter().zip(batch) {
            let outcome = match plan {
                Plan::Refuse(why) => Outcome {
                    status: ItemStatus::Refused,
                    reason: Some(why),
                    issued: None,
                    seat: None,
                    existing: false,
                },
                Plan::Existing { serial, text, expires, counted } => Outcome {
                    status: ItemStatus::Ok,
                    reason: None,
                    issued: Some(IssuedItem {
                        serial,
                        text,
                        product: w.req.product.clone(),
                        cmid: w.req.cmid.clone(),
                        expires,
                    }),
                    seat: counted.then_some(Seat::Counted),
                    existing: true,
                },
                Plan::Sign { text: Some(Err(e)), .. } => Outcome {
                    status: ItemStatus::Error,
                    reason: Some(format!("signing failed: {e}")),
                    issued: None,
                    seat: None,
                    existing: false,
                },
                Plan::Sign { claims, new_seat, counted, text: Some(Ok(text)) } => {
                    let (header, body) = text.split_once('.').expect("a JWS has dots");
                    let header_id = match headers.iter().find(|(h, _)| h == header) {
                        Some((_, id)) => *id,
                        None => {
                            tx.execute("INSERT OR IGNORE INTO jws_headers (header) VALUES (?1)", [header])
                                .map_err(dberr)?;
                            let id: i64 = tx
                                .query_row("SELECT id FROM jws_headers WHERE header = ?1", [header], |r| r.get(0))
                                .map_err(dberr)?;
                            headers.push((header.to_string(), id));
                            id
                        }
                    };
                    let components = serde_json::to_string(&claims.tka.components).expect("components serialize");
                    ins_token
                        .execute(params![
                            claims.jti,
                            w.entitlement,
                            claims.aud,
                            claims.sub,
                            components,
                            claims.iat,
                            claims.nbf,
                            claims.exp,
                            fingerprint,
                            header_id,
                            body,
                            w.nonce,
                            w.digest,
                            w.replaces
                        ])
                        .map_err(dberr)?;
                    if new_seat {
                        let id = w.entitlement.expect("a seat belongs to an entitlement");
                        ins_seat.execute(params![id, claims.sub, now]).map_err(dberr)?;
                        *taken.entry(id).or_default() += 1;
                    }
                    Outcome {
                        status: ItemStatus::Ok,
                        reason: None,
                        issued: Some(IssuedItem {
                            serial: claims.jti.clone(),
                            text,
                            product: claims.aud.clone(),
                            cmid: claims.sub.clone(),
                            expires: claims.exp,
                        }),
                        seat: counted.then_some(if new_seat { Seat::New } else { Seat::Counted }),
                        existing: false,
                    }
                }
                Plan::Sign { text: None, .. } => unreachable!("every Sign plan was signed"),
            };
            outcomes.push(outcome);
        }
        for (id, n) in taken {
            tx.execute("UPDATE entitlements SET used = used + ?1 WHERE id = ?2", params![n, id]).map_err(dberr)?;
        }
    }
    tx.commit().map_err(dberr)?;
    Ok(outcomes)
}

/// The token files of the ok items among `slots`, to write after their commit.
/// The text moves to the job: a large batch does not keep every token in memory.
fn file_jobs(dir: &Path, slots: &[usize], items: &mut [ItemReport]) -> Vec<FileJob> {
    slots
        .iter()
        .filter_map(|&s| {
            let it = &mut items[s];
            if it.status != ItemStatus::Ok {
                return None;
            }
            let issued = it.issued.as_mut()?;
            let mut text = std::mem::take(&mut issued.text);
            text.push('\n');
            Some((s, dir.join(token_file_name(&issued.product, &issued.cmid)), text))
        })
        .collect()
}

/// Creates the output directory and removes temporary files an earlier,
/// interrupted run left behind (`.<name>.<12 hex>.tmp`, as written by
/// [`write_token_file`]); the tokens they were meant to hold are in the
/// ledger and are written again by this run.
fn prepare_out_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name.starts_with('.')
            && name.ends_with(".tmp")
            && name.len() > 18
            && name[name.len() - 17..name.len() - 4].starts_with('.')
            && name[name.len() - 16..name.len() - 4].bytes().all(|b| b.is_ascii_hexdigit());
        if stale {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// Writes a token file unless it already holds exactly `text`, always
/// atomically (temporary file, rename): a process killed mid-write leaves
/// no empty or truncated token file under the final name, only a `.tmp`
/// file (tests/crash.rs). Not fsynced: the ledger is the durable copy, and
/// a re-run rewrites what is missing.
pub fn write_token_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if std::fs::read(path).is_ok_and(|cur| cur == text.as_bytes()) {
        return Ok(());
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).expect("operating system random number generator");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", hex(&rnd)));
    let result = (|| {
        let mut f = crate::core::fsutil::create_new_with_mode(&tmp, 0o644)?;
        f.write_all(text.as_bytes())?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A request from synthetic machine number `n` (three components derived
/// from `n`), for benchmarks and tests that need many distinct machines.
#[doc(hidden)]
pub fn synthetic_request(product: &str, n: u64, now: i64) -> ActivationRequest {
    let raw = [
        ("mid".to_string(), format!("{:032x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15 + 1)),
        ("dmi".to_string(), format!("00000000-0000-4000-8000-{:012x}", n)),
        (
            "mac".to_string(),
            format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", (n >> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff),
        ),
    ];
    let id = crate::core::machine::MachineIdentity::from_raw(product, &raw);
    ActivationRequest::new(&id, now, None)
}

/// One line of a token bundle (JSON Lines): every token of a batch in one
/// file, the offline counterpart of a proxy-activation confirmation file.
/// Each machine picks its own line (`tka activate --bundle FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BundleLine {
    /// Product.
    pub product: String,
    /// The machine the token is for.
    pub cmid: String,
    /// Token serial.
    pub serial: String,
    /// The token (JWS compact).
    pub token: String,
}

/// A bundle being written: a temporary file next to its final name, filled
/// chunk by chunk (each chunk's data flushed to disk as it goes, so the end
/// of the run does not wait for all of it), then fsynced, renamed into
/// place and its directory fsynced.
struct BundleFile {
    path: PathBuf,
    dir: PathBuf,
    tmp: PathBuf,
    file: Option<std::fs::File>,
    failed: Option<std::io::Error>,
}

impl BundleFile {
    fn create(path: &Path) -> std::io::Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut rnd = [0u8; 6];
        getrandom::fill(&mut rnd).expect("operating system random number generator");
        let tmp = dir.join(format!(".{name}.{}.tmp", hex(&rnd)));
        let file = crate::core::fsutil::create_new_with_mode(&tmp, 0o644)?;
        Ok(BundleFile { path: path.to_path_buf(), dir, tmp, file: Some(file), failed: None })
    }

    fn append(&mut self, lines: &str) {
        use std::io::Write;
        if let (Some(f), None) = (&mut self.file, &self.failed) {
            if !lines.is_empty() {
                if let Err(e) = f.write_all(lines.as_bytes()).and_then(|()| f.sync_data()) {
                    self.failed = Some(e);
                }
            }
        }
    }

    fn finish(mut self) -> Result<()> {
        let result = match (self.failed.take(), self.file.take()) {
            (Some(e), _) => Err(e),
            (None, None) => Ok(()),
            (None, Some(f)) => f.sync_all().and_then(|()| {
                drop(f);
                std::fs::rename(&self.tmp, &self.path)?;
                crate::core::fsutil::sync_dir(&self.dir)
            }),
        };
        result.map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for BundleFile {
    /// A bundle not put in place (the batch failed before, or writing it
    /// failed) leaves no temporary file behind.
    fn drop(&mut self) {
        if self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes [`bundle_text`] to `path` atomically and durably (replacing an
/// earlier bundle of the same batch): a temporary file in the same
/// directory, fsynced, renamed, and the directory fsynced.
pub fn write_bundle(path: &Path, report: &BatchReport) -> Result<()> {
    let mut bundle = BundleFile::create(path).map_err(|e| Error::io(path, e))?;
    bundle.append(&bundle_text(report));
    bundle.finish()
}

/// The bundle of a batch run without an output directory: one JSON line per
/// item that has a token, in input order.
pub fn bundle_text(report: &BatchReport) -> String {
    let mut out = String::new();
    for it in report.items.iter().filter(|i| i.status == ItemStatus::Ok) {
        if let Some(i) = &it.issued {
            push_bundle_line(&mut out, i);
        }
    }
    out
}

/// Appends the [`BundleLine`] of `i` and a newline, as `serde_json` writes
/// it. A JWS compact text is base64url and dots, which JSON never escapes,
/// so the (large) token goes in as it is; anything else takes the general path.
fn push_bundle_line(out: &mut String, i: &IssuedItem) {
    let json = |s: &str| serde_json::to_string(s).expect("a string serializes");
    // Checked 64 bytes at a time without branching, so that it vectorizes.
    let plain = i.text.as_bytes().chunks(64).all(|c| {
        c.iter().fold(true, |ok, &b| ok & (b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_') | (b == b'.')))
    });
    if plain {
        out.push_str("{\"product\":");
        out.push_str(&json(&i.product));
        out.push_str(",\"cmid\":");
        out.push_str(&json(&i.cmid));
        out.push_str(",\"serial\":");
        out.push_str(&json(&i.serial));
        out.push_str(",\"token\":\"");
        out.push_str(&i.text);
        out.push_str("\"}");
    } else {
        let line = BundleLine {
            product: i.product.clone(),
            cmid: i.cmid.clone(),
            serial: i.serial.clone(),
            token: i.text.clone(),
        };
        out.push_str(&serde_json::to_string(&line).expect("a bundle line serializes"));
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::ledger::{EntitlementUpdate, NewEntitlement};

    fn test_signer(now: i64) -> TokenSigner {
        use crate::core::keys::{Signer, SoftwareKey};
        use crate::core::pki::CertInfo;
        use crate::issuer::certs::{create_certificate, CertKind, CertRequest};
        let key = |name: &str| {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("certs/test/{name}.key"));
            SoftwareKey::from_pkcs8_pem(&std::fs::read_to_string(&path).unwrap(), None, &path).unwrap()
        };
        let (ik, sk) = (key("intermediate"), key("signer"));
        let req =
            |kind, subject| CertRequest { kind, subject, not_before: now - 86_400, not_after: now + 3650 * 86_400 };
        let ca = create_certificate(&req(CertKind::Root, "CN=T Root"), ik.public_key(), None, &ik).unwrap();
        let ca_info = CertInfo::parse(&ca).unwrap();
        let der =
            create_certificate(&req(CertKind::Signer, "CN=T Signer"), sk.public_key(), Some(&ca_info), &ik).unwrap();
        TokenSigner::new(Box::new(sk), vec![der, ca]).unwrap()
    }

    fn work(ent: i64, machines: std::ops::Range<u64>, now: i64) -> Vec<Work> {
        machines
            .enumerate()
            .map(|(slot, n)| {
                let req = synthetic_request("p", n, now);
                Work {
                    slot,
                    digest: Some(request_digest(&req)),
                    nonce: Some(req.nonce.clone()),
                    req,
                    replaces: None,
                    entitlement: Some(ent),
                    opts: IssueOptions::default(),
                }
            })
            .collect()
    }

    fn sign_ahead(job: SignJob, signer: &TokenSigner) -> Vec<Option<Presigned>> {
        job.into_iter()
            .map(|o| {
                o.map(|(claims, alg)| {
                    let text = sign_claims(signer, &claims, alg);
                    Presigned { claims, text }
                })
            })
            .collect()
    }

    /// A token signed ahead is recorded as it is when nothing changed, and
    /// yields to the transaction's plan when something did (as another
    /// process could do between the plan ahead and the transaction): changed
    /// features make it signed again, a seat taken meanwhile makes it refused.
    #[test]
    fn tokens_signed_ahead_yield_to_the_transaction() {
        let now = 1_800_000_000;
        let d = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&d.path().join("l.sqlite")).unwrap();
        let new = NewEntitlement {
            product: "p".into(),
            machines: 2,
            features: vec!["a".into()],
            name: Some("e".into()),
            ..Default::default()
        };
        let ent = l.add_entitlement(&new, now).unwrap();
        let signer = test_signer(now);

        // Nothing changes: the tokens signed ahead are the ones recorded.
        let first = work(ent.id, 0..2, now);
        let ahead = sign_ahead(plan_ahead(&l, &first, false, &signer, now, &mut HashMap::new()), &signer);
        let serials: Vec<String> = ahead.iter().map(|p| p.as_ref().unwrap().claims.jti.clone()).collect();
        let out = run_chunk(&mut l, &first, false, &signer, now, &mut Vec::new(), ahead).unwrap();
        let got: Vec<String> = out.iter().map(|o| o.issued.as_ref().unwrap().serial.clone()).collect();
        assert_eq!(got, serials);

        // Two more seats; both machines are planned and signed ahead...
        let upd = EntitlementUpdate { machines: Some(4), ..Default::default() };
        l.update_entitlement("e", &upd, now).unwrap();
        let second = work(ent.id, 2..4, now);
        let ahead = sign_ahead(plan_ahead(&l, &second, false, &signer, now, &mut HashMap::new()), &signer);
        assert!(ahead.iter().all(Option::is_some));
        let serials: Vec<String> = ahead.iter().map(|p| p.as_ref().unwrap().claims.jti.clone()).collect();
        // ...then the features change and another machine takes a seat.
        let upd = EntitlementUpdate { features: Some(vec!["b".into()]), ..Default::default() };
        l.update_entitlement("e", &upd, now).unwrap();
        let other = vec![BatchInput { source: "other".into(), request: Ok(synthetic_request("p", 9, now)) }];
        let opts = BatchOptions { entitlement: Some("e".into()), ..Default::default() };
        assert_eq!(issue_batch(&mut l, other, &opts, &signer, now, None, &|_| {}).unwrap().ok, 1);
        let out = run_chunk(&mut l, &second, false, &signer, now, &mut Vec::new(), ahead).unwrap();
        assert_eq!(out[0].status, ItemStatus::Ok);
        let t = out[0].issued.as_ref().unwrap();
        assert_ne!(t.serial, serials[0]);
        let (_, claims) = crate::core::token::decode_unverified(&t.text).unwrap();
        assert_eq!(claims.tka.features, ["b"]);
        assert_eq!(out[1].status, ItemStatus::Refused);
        assert!(out[1].reason.as_deref().unwrap().contains("is exhausted"), "{:?}", out[1].reason);
        assert_eq!(l.entitlement("e").unwrap().used, 4);
        let rows = l.tokens(&crate::issuer::ledger::TokenFilter::default()).unwrap();
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|r| r.serial != serials[1]), "the refused token signed ahead is not recorded");
    }

    /// A bundle written by the batch is `bundle_text` of its report; a batch
    /// that fails before issuing leaves no temporary file.
    #[test]
    fn bundle_output_is_written_by_the_batch() {
        let now = 1_800_000_000;
        let d = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&d.path().join("l.sqlite")).unwrap();
        let new = NewEntitlement { product: "p".into(), machines: 9, name: Some("e".into()), ..Default::default() };
        l.add_entitlement(&new, now).unwrap();
        let signer = test_signer(now);
        let inputs: Vec<BatchInput> =
            (0..5).map(|n| BatchInput { source: n.to_string(), request: Ok(synthetic_request("p", n, now)) }).collect();
        let opts = BatchOptions { entitlement: Some("e".into()), chunk: 2, ..Default::default() };
        let path = d.path().join("b.jsonl");
        let r = issue_batch_to(&mut l, inputs.clone(), &opts, &signer, now, Output::Bundle(&path), &|_| {}).unwrap();
        assert_eq!(r.ok, 5);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), bundle_text(&r));
        let bad = BatchOptions { entitlement: Some("nope".into()), ..opts };
        let other = d.path().join("c.jsonl");
        assert!(issue_batch_to(&mut l, inputs, &bad, &signer, now, Output::Bundle(&other), &|_| {}).is_err());
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.retain(|n| !n.starts_with("l.sqlite"));
        assert_eq!(names, ["b.jsonl"]);
    }

    #[test]
    fn chunks_cover_the_batch_and_respect_the_limit() {
        for total in [0, 1, 2, 63, 64, 65, 100, 511, 512, 513, 1000, 10_000] {
            for chunk in [1, 2, 64, 100, 512] {
                let sizes = chunk_sizes(total, chunk);
                assert_eq!(sizes.iter().sum::<usize>(), total, "{total} / {chunk}");
                assert!(sizes.iter().all(|&n| n >= 1 && n <= chunk), "{total} / {chunk}: {sizes:?}");
            }
        }
        assert_eq!(chunk_sizes(10_000, 512)[0], 64);
        assert!(*chunk_sizes(10_000, 512).last().unwrap() <= 64);
    }

    /// The fast bundle line is exactly what `serde_json` writes for a [`BundleLine`].
    #[test]
    fn bundle_line_is_serde_json() {
        for (product, cmid, text) in [
            ("bench", "AB12-cd", "eyJh.eyJi.c2ln-_"),
            ("we\"ird\\é\u{1}", "c\nmid", "eyJh.eyJi.c2ln"),
            ("p", "c", "not \"plain\" token\n"),
            ("p", "c", ""),
        ] {
            let i = IssuedItem {
                serial: "0123abcd".into(),
                text: text.into(),
                product: product.into(),
                cmid: cmid.into(),
                expires: None,
            };
            let mut fast = String::new();
            push_bundle_line(&mut fast, &i);
            let line =
                BundleLine { product: product.into(), cmid: cmid.into(), serial: i.serial.clone(), token: text.into() };
            assert_eq!(fast, serde_json::to_string(&line).unwrap() + "\n");
            assert_eq!(serde_json::from_str::<BundleLine>(fast.trim_end()).unwrap(), line);
        }
    }
}
