//! The pipeline of a batch: chunks, signing ahead on every core, one write
//! transaction per chunk (deciding and recording each item through the
//! single issuance path), token files after the commit.

use crate::core::error::Result;
use crate::core::token::Claims;
use crate::issuer::bulk::files::{file_jobs, write_token_file, BundleFile, FileJob};
use crate::issuer::bulk::report::{BatchReport, ItemReason, ItemStatus};
use crate::issuer::issue::{sign_claims, Decider, Decision, Item, Outcome, Presigned, Recorder, TokenSigner};
use crate::issuer::ledger::{Entitlement, Ledger};
use rayon::prelude::*;
use std::collections::HashMap;
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
                    let mut lines = String::new();
                    if bundling {
                        for &s in &slots {
                            if let Some(i) =
                                report.items[s].issued.as_ref().filter(|_| report.items[s].status == ItemStatus::Ok)
                            {
                                crate::core::bundle::push_line(&mut lines, &i.product, &i.cmid, &i.serial, &i.text);
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
                        report.items[s].reason = Some(ItemReason::Failed(why.clone()));
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

/// The signing job of a chunk: the items that deciding, outside any
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
    let Ok(read) = ledger.begin(false) else {
        return Vec::new();
    };
    let mut decider = Decider::new(read.db());
    let items: Vec<&Item> = batch.iter().map(|w| &w.item).collect();
    if decider.prefetch(&items, ents).is_err() {
        return Vec::new();
    }
    let mut job = Vec::with_capacity(batch.len());
    for w in batch {
        match decider.decide(&w.item, reissue, None, signer, now, ents) {
            Ok(Decision::Sign { claims, .. }) => job.push(Some((claims, w.item.opts.alg, w.item.opts.compact))),
            Ok(_) => job.push(None),
            Err(_) => return Vec::new(),
        }
    }
    job
}

/// One transaction: decide each item for real (the single issuance path's
/// decision, with the token signed ahead when it still fits), sign what
/// was not signed ahead, record, commit.
fn run_chunk(
    ledger: &mut Ledger,
    batch: &[Work],
    reissue: bool,
    signer: &TokenSigner,
    now: i64,
    headers: &mut Vec<(String, i64)>,
    mut presigned: Vec<Option<Presigned>>,
) -> Result<Vec<Outcome>> {
    // (Run again if PostgreSQL aborts the transaction: what was signed
    // ahead is used once, the rest is signed in place.)
    ledger.write(|db| {
        let mut decisions = Vec::with_capacity(batch.len());
        {
            // Entitlements as they are now, inside the write lock.
            let mut ents: HashMap<i64, Entitlement> = HashMap::new();
            let mut decider = Decider::new(db);
            let items: Vec<&Item> = batch.iter().map(|w| &w.item).collect();
            decider.prefetch(&items, &mut ents)?;
            for (i, w) in batch.iter().enumerate() {
                let ahead = presigned.get_mut(i).and_then(Option::take);
                decisions.push(decider.decide(&w.item, reissue, ahead, signer, now, &mut ents)?);
            }
        }
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
        Ok(outcomes)
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

    fn sign_ahead(job: SignJob, signer: &TokenSigner) -> Vec<Option<Presigned>> {
        job.into_iter()
            .map(|o| {
                o.map(|(claims, alg, compact)| {
                    let text = sign_claims(signer, &claims, alg, compact);
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
        let got: Vec<String> = out.iter().map(|o| issued(o).serial.clone()).collect();
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
        let other = synthetic_request("p", 9, now);
        issue_one(Some(&mut l), Some("e"), &other, &IssueOptions::default(), &signer, now).unwrap();
        let out = run_chunk(&mut l, &second, false, &signer, now, &mut Vec::new(), ahead).unwrap();
        let t = issued(&out[0]);
        assert_ne!(t.serial, serials[0]);
        let (_, claims) = crate::core::token::decode_unverified(&t.text).unwrap();
        assert_eq!(claims.tka.features, ["b"]);
        assert!(
            matches!(
                &out[1],
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
}
