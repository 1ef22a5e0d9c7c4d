//! The pipeline of a batch: chunks, signing ahead on every core, one write
//! transaction per chunk (deciding and recording each item through the
//! single issuance path), token files after the commit.

use crate::core::error::Result;
use crate::core::token::Claims;
use crate::issuer::bulk::files::{file_jobs, write_token_file, BundleFile, FileJob};
use crate::issuer::bulk::report::{BatchReport, ItemReason, ItemStatus};
use crate::issuer::issue::{sign_claims, Decider, Decision, Item, Outcome, Presigned, Recorder, TokenSigner};
use crate::issuer::ledger::db::Db;
use crate::issuer::ledger::{find_entitlement, Entitlement, Ledger};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;

/// What the signing thread is asked to sign for one chunk: per item, the
/// claims and algorithm, or nothing.
/// One item of a batch and its position in the report.
pub(crate) struct Work {
    pub(crate) slot: usize,
    pub(crate) item: Item,
}

/// Claims to sign, with the algorithm and whether the token is compact.
type SignJob = Vec<Option<(Claims, crate::core::keys::SignatureAlgorithm, bool)>>;

/// Runs the batch as a pipeline of chunks. For each chunk:
///
/// 1. *plan ahead*: outside any transaction, decide from the ledger as it
///    is which items will probably need a new token, and build their claims;
/// 2. *sign*: a signing thread signs them on every core (rayon), while the
///    main thread records the previous chunk;
/// 3. *record*: one `BEGIN IMMEDIATE` transaction takes the plan's
///    decisions as they are when nothing they read can have changed since
///    (see [`Plan`]: SQLite only), or else plans the chunk again, for real
///    (seats, existing tokens, entitlement as it is now), takes each token
///    signed ahead whose claims are still what the plan gives and signs in
///    place whatever the plan needs and was not signed ahead; then it
///    inserts the rows and commits;
/// 4. after the commit, the chunk's token files go to a writer thread.
///
/// Signing ahead only ever wastes a signature (another process took the
/// last seat or issued the same request meanwhile): what is recorded is
/// what deciding inside the transaction gives, exactly as if everything
/// were decided and signed there.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
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
    let sizes = chunk_sizes(rest.len(), chunk);
    for &n in &sizes {
        chunks.push(rest.by_ref().take(n).collect());
    }
    let mut headers: Vec<(String, i64)> = Vec::new();
    let mut tuning = BulkTuning::apply(ledger);
    let checkpointer = tuning.checkpointer.take();
    // Files are written by a second thread, after their chunk committed.
    let bundling = bundle.is_some();
    let (file_tx, file_rx) = mpsc::channel::<(usize, Vec<FileJob>, String)>();
    let (ckpt_tx, ckpt_rx) = mpsc::channel::<Checkpoint>();
    // Bundle buffers come back from the writer, emptied, to hold the lines
    // of a later chunk: a chunk's lines (~2 MB for 512 tokens) are not
    // written into freshly mapped memory each time.
    let (spare_tx, spare_rx) = mpsc::channel::<String>();
    let written = std::thread::scope(|scope| {
        if let Some(conn) = checkpointer {
            // Checkpoints (WAL pages copied into the database file, which
            // is then fsynced) run here instead of in the commits: recording
            // the next chunk does not wait for them. One runs once
            // BULK_CHECKPOINT_ITEMS items were committed since the last,
            // one when FINAL_CHECKPOINT_ITEMS or fewer are left to record
            // (so that it runs while they are signed, and the one after
            // the last commit, which nothing else overlaps, copies only
            // what they add), and one after the last commit.
            scope.spawn(move || {
                let checkpoint = || drop(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())));
                let mut since = 0;
                for m in ckpt_rx {
                    match m {
                        Checkpoint::Committed(n) => since += n,
                        Checkpoint::NearTheEnd => since = since.max(BULK_CHECKPOINT_ITEMS),
                    }
                    if since >= BULK_CHECKPOINT_ITEMS {
                        since = 0;
                        checkpoint();
                    }
                }
                if since > 0 {
                    checkpoint();
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
                let mut lines = lines;
                lines.clear();
                let _ = spare_tx.send(lines);
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
                        o.map(|(claims, alg, compact)| {
                            let text = sign_claims(signer, &claims, alg, compact);
                            Presigned { claims, text }
                        })
                    })
                    .collect();
                if done_tx.send(signed).is_err() {
                    break;
                }
            }
        });
        // The plans of the chunks being signed, oldest first. Each plan
        // starts from the entitlements as its snapshot shows them plus the
        // seats the plans before it expect to take (not yet recorded): a
        // batch larger than what is left of an entitlement does not sign
        // tokens that would be refused.
        let mut plans: VecDeque<Option<Plan>> = VecDeque::new();
        let submit = move |ledger: &Ledger, batch: &[Work], independent: bool, plans: &mut VecDeque<Option<Plan>>| {
            let mut pending: HashMap<i64, u32> = HashMap::new();
            for (id, n) in plans.iter().flatten().flat_map(|p| &p.taken) {
                *pending.entry(*id).or_default() += n;
            }
            let (job, plan) = plan_ahead(ledger, batch, reissue, signer, now, &pending);
            plans.push_back(plan.map(|p| Plan { independent, ..p }));
            let _ = job_tx.send(job);
        };
        let independent = independent_chunks(&chunks);
        let near_the_end = near_the_end(&sizes);
        const AHEAD: usize = 3;
        for (batch, &ind) in chunks.iter().zip(&independent).take(AHEAD) {
            submit(ledger, batch, ind, &mut plans);
        }
        for i in 0..chunks.len() {
            let batch = &chunks[i];
            let slots: Vec<usize> = batch.iter().map(|w| w.slot).collect();
            let presigned = done_rx.recv().unwrap_or_default();
            let plan = plans.pop_front().flatten();
            match run_chunk(ledger, batch, reissue, signer, now, &mut headers, plan, presigned) {
                Ok(Recorded { outcomes: results, .. }) => {
                    for (w, r) in batch.iter().zip(results) {
                        let it = &mut report.items[w.slot];
                        match r {
                            Outcome::Issued { issued, seat, existing, .. } => {
                                it.status = ItemStatus::Ok;
                                it.serial = Some(issued.serial.clone());
                                it.seat = seat;
                                it.existing = existing;
                                it.issued = Some(issued);
                            }
                            Outcome::Refused(e) => {
                                it.status = ItemStatus::Refused;
                                it.reason = Some(ItemReason::refused(e));
                            }
                            Outcome::SigningFailed(e) => {
                                it.status = ItemStatus::Error;
                                it.reason = Some(ItemReason::Failed(format!("signing failed: {e}")));
                            }
                        }
                    }
                    let jobs = match out {
                        Some(dir) => file_jobs(dir, &slots, &mut report.items),
                        None => Vec::new(),
                    };
                    let mut lines = spare_rx.try_recv().unwrap_or_default();
                    if bundling {
                        for &s in &slots {
                            // The text moves into the line (as into a token
                            // file's job): kept, every token of a large batch
                            // would stay in memory, and each signing thread's
                            // heap would grow with every token it signs
                            // (aws-lc's temporary buffers then extend it on
                            // every signature: a system call and fresh pages).
                            let it = &mut report.items[s];
                            if let Some(i) = it.issued.as_mut().filter(|_| it.status == ItemStatus::Ok) {
                                let text = std::mem::take(&mut i.text);
                                crate::core::bundle::push_line(&mut lines, &i.product, &i.cmid, &i.serial, &text);
                            }
                        }
                    }
                    let _ = file_tx.send((slots.len(), jobs, lines));
                    let _ = ckpt_tx.send(Checkpoint::Committed(slots.len()));
                    if near_the_end == Some(i) {
                        let _ = ckpt_tx.send(Checkpoint::NearTheEnd);
                    }
                }
                Err(e) => {
                    let why = format!("not issued: the run stopped: {e}");
                    for s in chunks[i..].iter().flatten().map(|w| w.slot) {
                        report.items[s].status = ItemStatus::Error;
                        report.items[s].reason = Some(ItemReason::Failed(why.clone()));
                    }
                    report.aborted_reason = Some(e.to_string());
                    report.aborted = Some(e);
                    break;
                }
            }
            if let Some(next) = chunks.get(i + AHEAD) {
                submit(ledger, next, independent[i + AHEAD], &mut plans);
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
                it.reason = Some(ItemReason::Failed(format!(
                    "issued and recorded as serial {}, but writing {} failed: {e}; run the batch again to write it",
                    it.serial.as_deref().unwrap_or("?"),
                    p.display()
                )));
            }
        }
    }
    bundled.unwrap_or(Ok(()))
}

/// The chunk after whose commit the checkpoint before the last one runs:
/// the first that leaves [`FINAL_CHECKPOINT_ITEMS`] or fewer items (and at
/// least one) to record. `None` for a batch that small from the start.
fn near_the_end(sizes: &[usize]) -> Option<usize> {
    let mut left: usize = sizes.iter().sum();
    for (i, n) in sizes.iter().enumerate() {
        let before = left;
        left -= n;
        if left > 0 && left <= FINAL_CHECKPOINT_ITEMS {
            return (before > FINAL_CHECKPOINT_ITEMS).then_some(i);
        }
    }
    None
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

/// What the checkpoint thread of a bulk run is told.
enum Checkpoint {
    /// A chunk of this many items committed.
    Committed(usize),
    /// [`FINAL_CHECKPOINT_ITEMS`] or fewer items are left to record:
    /// checkpoint now what has committed.
    NearTheEnd,
}

/// Connection settings for the length of a bulk run, restored after it.
///
/// - `cache_size` of at least 64 MiB: the pages planning reads (request
///   digests, seats) are the ones the inserts then modify, and a ledger of a
///   million tokens has more interior index pages than the default 2 MiB.
/// - Checkpoints move to a second connection on a thread of their own
///   (`wal_autocheckpoint` is 0 on the writing connection meanwhile), one
///   per [`BULK_CHECKPOINT_ITEMS`] items committed, and the last one runs
///   before the batch returns. A page that several chunks modify (a seat
///   page of a large entitlement, an index's interior pages, the tables'
///   right edges) is then copied into the database file once per
///   checkpoint instead of once per chunk. Durability is unchanged:
///   commits are fsynced (`synchronous=FULL`) as always, and a checkpoint
///   is only a copy of committed WAL pages into the database file.
struct BulkTuning {
    cache_size: Option<i64>,
    autocheckpoint: Option<i64>,
    checkpointer: Option<rusqlite::Connection>,
}

/// Page cache of a bulk run (negative: KiB).
const BULK_CACHE_SIZE: i64 = -65536;

/// Items committed between two checkpoints of a bulk run. In a ledger of
/// 10,000,000 tokens an item writes ~2.5 pages to the log (~160 MiB of log
/// at most; ~0.6 page an item into a small ledger): checkpointing after
/// every chunk instead cost 0.75–0.80 s of system time per 10,000 tokens
/// against 0.44–0.47 s (docs/benchmarks.md, "A big ledger").
const BULK_CHECKPOINT_ITEMS: usize = 16_384;

/// Items left to record when the checkpoint before the last one runs: their
/// signing (~0.13 s on two cores) overlaps its copy and fsync, which after
/// 10,000 items into an empty ledger takes ~40 ms (3,800 pages), and the
/// last checkpoint, which nothing overlaps, then copies only what they add.
/// Before, it ran when the last (small) chunks were being signed, ~20 ms
/// before the end, and the last one waited for it.
const FINAL_CHECKPOINT_ITEMS: usize = 1_024;

impl BulkTuning {
    fn apply(ledger: &Ledger) -> Self {
        let mut t = BulkTuning { cache_size: None, autocheckpoint: None, checkpointer: None };
        // PostgreSQL has its own buffers and checkpoints.
        let Some(conn) = ledger.sqlite() else { return t };
        let get = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0)).ok();
        if let Some(old) = get("cache_size") {
            let bytes = |v: i64| if v < 0 { -v * 1024 } else { v * 4096 };
            if bytes(old) < bytes(BULK_CACHE_SIZE) && conn.pragma_update(None, "cache_size", BULK_CACHE_SIZE).is_ok() {
                t.cache_size = Some(old);
            }
        }
        let checkpointer = rusqlite::Connection::open_with_flags(
            ledger.path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| {
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            c.pragma_update(None, "synchronous", "FULL")?;
            Ok(c)
        });
        if let (Ok(c), Some(old)) = (checkpointer, get("wal_autocheckpoint")) {
            if conn.pragma_update(None, "wal_autocheckpoint", 0).is_ok() {
                t.autocheckpoint = Some(old);
                t.checkpointer = Some(c);
            }
        }
        t
    }

    fn restore(self, ledger: &Ledger) {
        let Some(conn) = ledger.sqlite() else { return };
        if let Some(v) = self.cache_size {
            let _ = conn.pragma_update(None, "cache_size", v);
        }
        if let Some(v) = self.autocheckpoint {
            let _ = conn.pragma_update(None, "wal_autocheckpoint", v);
        }
    }
}

/// What planning a chunk ahead decided, kept while its tokens are signed.
///
/// The transaction takes these decisions as they are, instead of deciding
/// every item again, only when it can see that deciding again would give
/// the very same ones: on SQLite, when
///
/// - no other connection committed to the ledger between the plan's
///   snapshot and the write lock (`PRAGMA data_version` unchanged: this
///   run's connection writes nothing but its own chunks meanwhile);
/// - the chunk's entitlements are, inside the write lock, exactly what the
///   plan started from (the seats it counted for the chunks before it
///   were recorded as planned); and
/// - no machine of the chunk is in an earlier chunk of the run (so the
///   chunks recorded since the plan's snapshot touch none of the rows its
///   decisions read: tokens, seats and revocations of its machines).
///
/// Otherwise (and always on PostgreSQL) the transaction decides again.
struct Plan {
    /// `PRAGMA data_version` read in the plan's snapshot (`None`: PostgreSQL).
    version: Option<i64>,
    /// The chunk's entitlements as the plan started from.
    ents: Vec<Entitlement>,
    /// Seats the plan takes, per entitlement.
    taken: HashMap<i64, u32>,
    /// Per item, what it decided (the claims of a token to sign went to the
    /// signing thread and come back with the signature).
    decisions: Vec<Planned>,
    /// No machine of the chunk is in an earlier chunk.
    independent: bool,
}

/// One item of a [`Plan`].
enum Planned {
    /// Sign: the claims are the ones sent to the signing thread.
    Sign { new_seat: bool, counted: bool },
    /// An existing token or a refusal.
    Decided(Box<Decision>),
}

/// For each chunk, whether none of its machines is in an earlier chunk
/// (true for every chunk of an issue batch: a machine is in it once).
fn independent_chunks(chunks: &[Vec<Work>]) -> Vec<bool> {
    let mut seen: HashSet<&str> = HashSet::new();
    chunks
        .iter()
        .map(|c| {
            let fresh = c.iter().all(|w| !seen.contains(w.item.req.cmid.as_str()));
            seen.extend(c.iter().map(|w| w.item.req.cmid.as_str()));
            fresh
        })
        .collect()
}

/// The signing job of a chunk (the items that deciding, outside any
/// transaction, expects to sign) and the plan it comes from. `pending`: the
/// seats the chunks planned before this one and not yet recorded take. A
/// ledger error here only means nothing is planned or signed ahead; the
/// transaction reports it.
fn plan_ahead(
    ledger: &Ledger,
    batch: &[Work],
    reissue: bool,
    signer: &TokenSigner,
    now: i64,
    pending: &HashMap<i64, u32>,
) -> (SignJob, Option<Plan>) {
    // One read transaction (one snapshot, one lock) for the whole chunk;
    // dropped, it rolls back: nothing is written here.
    let Ok(read) = ledger.begin(false) else {
        return (Vec::new(), None);
    };
    let db = read.db();
    // Read before anything else: if the snapshot starts after it, a commit
    // in between makes the transaction's number differ (it decides again).
    let Ok(version) = db.data_version() else {
        return (Vec::new(), None);
    };
    let mut ids: Vec<i64> = batch.iter().filter_map(|w| w.item.entitlement).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut ents: HashMap<i64, Entitlement> = HashMap::new();
    for id in ids {
        let Ok(Some(mut e)) = find_entitlement(db, &id.to_string()) else {
            return (Vec::new(), None);
        };
        e.used += pending.get(&id).copied().unwrap_or(0);
        ents.insert(id, e);
    }
    let start: Vec<Entitlement> = ents.values().cloned().collect();
    let mut decider = Decider::new(db);
    let items: Vec<&Item> = batch.iter().map(|w| &w.item).collect();
    if decider.prefetch(&items, &mut ents).is_err() {
        return (Vec::new(), None);
    }
    let mut job = Vec::with_capacity(batch.len());
    let mut decisions = Vec::with_capacity(batch.len());
    for w in batch {
        match decider.decide(&w.item, reissue, None, signer, now, &mut ents) {
            Ok(Decision::Sign { claims, new_seat, counted, .. }) => {
                job.push(Some((claims, w.item.opts.alg, w.item.opts.compact)));
                decisions.push(Planned::Sign { new_seat, counted });
            }
            Ok(d) => {
                job.push(None);
                decisions.push(Planned::Decided(Box::new(d)));
            }
            Err(_) => return (Vec::new(), None),
        }
    }
    let taken = start.iter().map(|e| (e.id, ents[&e.id].used - e.used)).collect();
    (job, Some(Plan { version, ents: start, taken, decisions, independent: false }))
}

/// What a chunk's transaction recorded.
struct Recorded {
    outcomes: Vec<Outcome>,
    /// The plan's decisions were taken as they are (not decided again;
    /// what the tests look at).
    #[cfg_attr(not(test), allow(dead_code))]
    planned: bool,
}

/// Whether the transaction (on `db`, holding the write lock) may take
/// `plan`'s decisions as they are: see [`Plan`]. Every token to sign must
/// have come back from the signing thread.
fn plan_holds(db: Db<'_>, plan: &Plan, presigned: &[Option<Presigned>]) -> bool {
    plan.independent
        && plan.version.is_some()
        && presigned.len() == plan.decisions.len()
        && plan.decisions.iter().zip(presigned).all(|(d, p)| !matches!(d, Planned::Sign { .. }) || p.is_some())
        && db.data_version().ok() == Some(plan.version)
        && plan.ents.iter().all(|e| find_entitlement(db, &e.id.to_string()).ok().flatten().as_ref() == Some(e))
}

/// One transaction: take the plan's decisions when they still hold, or
/// decide each item for real (the single issuance path's decision, with
/// the token signed ahead when it still fits) and sign what was not signed
/// ahead; record, commit.
#[allow(clippy::too_many_arguments)]
fn run_chunk(
    ledger: &mut Ledger,
    batch: &[Work],
    reissue: bool,
    signer: &TokenSigner,
    now: i64,
    headers: &mut Vec<(String, i64)>,
    mut plan: Option<Plan>,
    mut presigned: Vec<Option<Presigned>>,
) -> Result<Recorded> {
    // (Run again if PostgreSQL aborts the transaction: what was signed
    // ahead is used once, the rest is signed in place.)
    ledger.write(|db| {
        let mut decisions = Vec::with_capacity(batch.len());
        let planned = match plan.take() {
            Some(p) if plan_holds(db, &p, &presigned) => {
                for (d, ahead) in p.decisions.into_iter().zip(presigned.iter_mut()) {
                    decisions.push(match d {
                        Planned::Decided(d) => *d,
                        Planned::Sign { new_seat, counted } => {
                            let Presigned { claims, text } = ahead.take().expect("checked by plan_holds");
                            Decision::Sign { claims, new_seat, counted, text: Some(text) }
                        }
                    });
                }
                true
            }
            _ => {
                // Entitlements as they are now, inside the write lock.
                let mut ents: HashMap<i64, Entitlement> = HashMap::new();
                let mut decider = Decider::new(db);
                let items: Vec<&Item> = batch.iter().map(|w| &w.item).collect();
                decider.prefetch(&items, &mut ents)?;
                for (i, w) in batch.iter().enumerate() {
                    let ahead = presigned.get_mut(i).and_then(Option::take);
                    decisions.push(decider.decide(&w.item, reissue, ahead, signer, now, &mut ents)?);
                }
                false
            }
        };
        // Whatever the decisions need and was not signed ahead is signed here,
        // in parallel, inside the transaction: seats and rows commit together.
        // (Only when there is any: the pool is busy signing the next chunk.)
        if decisions.iter().any(|d| matches!(d, Decision::Sign { text: None, .. })) {
            decisions.par_iter_mut().zip(batch.par_iter()).for_each(|(d, w)| d.sign(signer, &w.item.opts));
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut chunk_headers = headers.clone();
        let mut recorder = Recorder::new(db, signer);
        for (d, w) in decisions.into_iter().zip(batch) {
            outcomes.push(recorder.record(&w.item, d, &mut chunk_headers, now)?);
        }
        recorder.finish()?;
        // Header ids are kept once they are committed with the chunk.
        *headers = chunk_headers;
        Ok(Recorded { outcomes, planned })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::bulk::requests::synthetic_request;
    use crate::issuer::issue::{issue_one, request_digest, test_signer, IssueOptions};
    use crate::issuer::ledger::{EntitlementUpdate, NewEntitlement};

    fn work(ent: i64, machines: std::ops::Range<u64>, now: i64) -> Vec<Work> {
        machines
            .enumerate()
            .map(|(slot, n)| {
                let req = synthetic_request("p", n, now);
                let item = Item {
                    digest: Some(request_digest(&req)),
                    nonce: Some(req.nonce.clone()),
                    req,
                    replaces: None,
                    entitlement: Some(ent),
                    opts: IssueOptions::default(),
                };
                Work { slot, item }
            })
            .collect()
    }

    fn issued(o: &Outcome) -> &crate::issuer::issue::IssuedItem {
        match o {
            Outcome::Issued { issued, .. } => issued,
            _ => panic!("not issued"),
        }
    }

    /// Plans `batch` ahead as a run does (`pending`: the seats of the
    /// chunks planned before it) and signs its tokens.
    fn plan_and_sign(
        l: &Ledger,
        batch: &[Work],
        signer: &TokenSigner,
        now: i64,
        pending: &HashMap<i64, u32>,
    ) -> (Option<Plan>, Vec<Option<Presigned>>) {
        let (job, plan) = plan_ahead(l, batch, false, signer, now, pending);
        let signed = job
            .into_iter()
            .map(|o| {
                o.map(|(claims, alg, compact)| {
                    let text = sign_claims(signer, &claims, alg, compact);
                    Presigned { claims, text }
                })
            })
            .collect();
        (plan.map(|p| Plan { independent: true, ..p }), signed)
    }

    fn serials(ahead: &[Option<Presigned>]) -> Vec<String> {
        ahead.iter().map(|p| p.as_ref().unwrap().claims.jti.clone()).collect()
    }

    fn ledger_with(machines: u32, now: i64) -> (tempfile::TempDir, Ledger, i64) {
        let d = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&d.path().join("l.sqlite")).unwrap();
        let new = NewEntitlement {
            product: "p".into(),
            machines,
            features: vec!["a".into()],
            name: Some("e".into()),
            ..Default::default()
        };
        let ent = l.add_entitlement(&new, now).unwrap();
        (d, l, ent.id)
    }

    /// When nothing changed, the plan's decisions are recorded as they are
    /// (with the tokens signed ahead), also after the run's own earlier
    /// chunks were recorded since the plan was made.
    #[test]
    fn a_plan_that_still_holds_is_recorded_without_deciding_again() {
        let now = 1_800_000_000;
        let (_d, mut l, ent) = ledger_with(4, now);
        let signer = test_signer(now);
        let (first, second) = (work(ent, 0..2, now), work(ent, 2..4, now));
        let (plan1, ahead1) = plan_and_sign(&l, &first, &signer, now, &HashMap::new());
        let taken = plan1.as_ref().unwrap().taken.clone();
        assert_eq!(taken[&ent], 2);
        let (plan2, ahead2) = plan_and_sign(&l, &second, &signer, now, &taken);
        let expected = [serials(&ahead1), serials(&ahead2)].concat();
        let r1 = run_chunk(&mut l, &first, false, &signer, now, &mut Vec::new(), plan1, ahead1).unwrap();
        let r2 = run_chunk(&mut l, &second, false, &signer, now, &mut Vec::new(), plan2, ahead2).unwrap();
        assert!(r1.planned && r2.planned);
        let got: Vec<String> = r1.outcomes.iter().chain(&r2.outcomes).map(|o| issued(o).serial.clone()).collect();
        assert_eq!(got, expected);
        assert_eq!(l.entitlement("e").unwrap().used, 4);
        assert_eq!(l.token_count().unwrap(), 4);
    }

    /// A commit by another connection between the plan and the transaction
    /// (here: a revocation, which changes no entitlement) makes the
    /// transaction decide again: the machine now revoked is refused.
    #[test]
    fn a_commit_by_another_connection_voids_the_plan() {
        let now = 1_800_000_000;
        let (d, mut l, ent) = ledger_with(4, now);
        let signer = test_signer(now);
        let old = l.issue(&synthetic_request("p", 0, now), Some("e"), &IssueOptions::default(), &signer, now).unwrap();
        let batch = work(ent, 0..2, now);
        let (plan, ahead) = plan_and_sign(&l, &batch, &signer, now, &HashMap::new());
        assert!(ahead.iter().all(Option::is_some), "both planned to be signed");
        let mut other = Ledger::open(&d.path().join("l.sqlite")).unwrap();
        other.revoke(&old.serial, "stolen", now).unwrap();
        let r = run_chunk(&mut l, &batch, false, &signer, now, &mut Vec::new(), plan, ahead).unwrap();
        assert!(!r.planned);
        assert!(
            matches!(
                &r.outcomes[0],
                Outcome::Refused(crate::core::error::Error::Issue(
                    crate::core::error::IssueRefusal::MachineRevoked { .. }
                ))
            ),
            "the machine revoked meanwhile is refused"
        );
        issued(&r.outcomes[1]);
        assert_eq!(l.token_count().unwrap(), 2);
    }

    /// A plan that counted seats for an earlier chunk which were not
    /// recorded (that chunk never committed) is decided again: its items
    /// planned as refused for a full entitlement are issued.
    #[test]
    fn seats_planned_for_a_chunk_not_recorded_void_the_plan() {
        let now = 1_800_000_000;
        let (_d, mut l, ent) = ledger_with(2, now);
        let signer = test_signer(now);
        let pending = HashMap::from([(ent, 2)]);
        let batch = work(ent, 2..4, now);
        let (plan, ahead) = plan_and_sign(&l, &batch, &signer, now, &pending);
        assert!(ahead.iter().all(Option::is_none), "planned as refused: the seats were expected taken");
        let r = run_chunk(&mut l, &batch, false, &signer, now, &mut Vec::new(), plan, ahead).unwrap();
        assert!(!r.planned);
        assert!(r
            .outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Issued { seat: Some(crate::issuer::issue::Seat::New), .. })));
        assert_eq!(l.entitlement("e").unwrap().used, 2);
    }

    /// A chunk with a machine of an earlier chunk is not independent (its
    /// plan is never taken as it is).
    #[test]
    fn a_machine_of_an_earlier_chunk_makes_its_chunk_dependent() {
        let now = 1_800_000_000;
        let w = |ms: &[u64]| -> Vec<Work> { ms.iter().flat_map(|&m| work(1, m..m + 1, now)).collect() };
        let chunks = vec![w(&[0, 1]), w(&[2]), w(&[3, 1]), w(&[4])];
        assert_eq!(independent_chunks(&chunks), [true, true, false, true]);
    }

    /// A token signed ahead yields to the transaction's decision when
    /// something changed (as another process could do between the plan and
    /// the transaction): changed features make it signed again, a seat
    /// taken meanwhile makes it refused.
    #[test]
    fn tokens_signed_ahead_yield_to_the_transaction() {
        let now = 1_800_000_000;
        let (d, mut l, ent) = ledger_with(2, now);
        let signer = test_signer(now);
        let first = work(ent, 0..2, now);
        let (plan, ahead) = plan_and_sign(&l, &first, &signer, now, &HashMap::new());
        run_chunk(&mut l, &first, false, &signer, now, &mut Vec::new(), plan, ahead).unwrap();

        // Two more seats; both machines are planned and signed ahead...
        let mut other = Ledger::open(&d.path().join("l.sqlite")).unwrap();
        let upd = EntitlementUpdate { machines: Some(4), ..Default::default() };
        other.update_entitlement("e", &upd, now).unwrap();
        let second = work(ent, 2..4, now);
        let (plan, ahead) = plan_and_sign(&l, &second, &signer, now, &HashMap::new());
        assert!(ahead.iter().all(Option::is_some));
        let serials = serials(&ahead);
        // ...then the features change and another machine takes a seat.
        let upd = EntitlementUpdate { features: Some(vec!["b".into()]), ..Default::default() };
        other.update_entitlement("e", &upd, now).unwrap();
        let req = synthetic_request("p", 9, now);
        issue_one(Some(&mut other), Some("e"), &req, &IssueOptions::default(), &signer, now).unwrap();
        let r = run_chunk(&mut l, &second, false, &signer, now, &mut Vec::new(), plan, ahead).unwrap();
        assert!(!r.planned);
        let t = issued(&r.outcomes[0]);
        assert_ne!(t.serial, serials[0]);
        let (_, claims) = crate::core::token::decode_unverified(&t.text).unwrap();
        assert_eq!(claims.tka.features, ["b"]);
        assert!(
            matches!(
                &r.outcomes[1],
                Outcome::Refused(crate::core::error::Error::Issue(
                    crate::core::error::IssueRefusal::EntitlementFull { .. }
                ))
            ),
            "the seat taken meanwhile refuses the second"
        );
        assert_eq!(l.entitlement("e").unwrap().used, 4);
        let rows = l.tokens(&crate::issuer::ledger::TokenFilter::default()).unwrap();
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|r| r.serial != serials[1]), "the refused token signed ahead is not recorded");
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

    /// The checkpoint before the last one follows the first chunk that
    /// leaves at most FINAL_CHECKPOINT_ITEMS to record, so it overlaps
    /// their signing; a batch of that size or less has only the last one.
    #[test]
    fn the_checkpoint_before_the_last_runs_while_the_last_items_are_signed() {
        let sizes = chunk_sizes(10_000, 512);
        let i = near_the_end(&sizes).expect("a batch of 10,000 has one");
        let left = |i: usize| sizes[i + 1..].iter().sum::<usize>();
        assert!(left(i) <= FINAL_CHECKPOINT_ITEMS && left(i) > 0, "{sizes:?}: {i}");
        assert!(left(i - 1) > FINAL_CHECKPOINT_ITEMS, "{sizes:?}: {i}");
        assert_eq!(near_the_end(&[600, 600, 600]), Some(1));
        assert_eq!(near_the_end(&[512, 512, 1]), Some(0));
        assert_eq!(near_the_end(&[1025, 7]), Some(0));
        for small in [vec![], vec![1024], vec![512, 512], vec![64, 960]] {
            assert_eq!(near_the_end(&small), None, "{small:?}");
        }
        assert_eq!(near_the_end(&[2048]), None, "one chunk: nothing is left after it");
    }
}
