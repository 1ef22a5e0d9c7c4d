//! A batch of requests: the early refusals (unreadable, not admitted,
//! duplicated within the batch), then the pipeline.

use crate::core::error::{Error, IssueRefusal, Result};
use crate::issuer::bulk::files::{prepare_output, Output};
use crate::issuer::bulk::pipeline::{run, Work};
use crate::issuer::bulk::report::{blank_item, BatchReport, ItemReason, ItemStatus};
use crate::issuer::bulk::requests::{seed_random_early, BatchInput};
use crate::issuer::issue::{admit, request_digest, IssueOptions, Item, TokenSigner};
use crate::issuer::ledger::Ledger;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// Items per transaction by default.
pub const DEFAULT_CHUNK: usize = 512;

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
    seed_random_early();
    let (out, bundle) = prepare_output(output)?;
    let ent = match &opts.entitlement {
        Some(sel) => Some(ledger.entitlement(sel)?),
        None => None,
    };
    let mut items = Vec::with_capacity(inputs.len());
    let mut work = Vec::with_capacity(inputs.len());
    // The digests and request checks, on every core.
    let allow_weak = opts.issue.allow_weak_binding || ent.as_ref().is_some_and(|e| e.allow_weak_binding);
    let checked: Vec<Option<(String, Option<Error>)>> = inputs
        .par_iter()
        .map(|i| i.request.as_ref().ok().map(|r| (request_digest(r), admit(r, ent.as_ref(), allow_weak).err())))
        .collect();
    let duplicates = duplicates(&inputs, &checked);
    for (((slot, input), checked), duplicate) in inputs.into_iter().enumerate().zip(checked).zip(duplicates) {
        let mut item = blank_item(slot, input.source);
        match input.request {
            Err(detail) => item.refuse(IssueRefusal::Unreadable { detail }),
            Ok(req) => {
                item.cmid = Some(req.cmid.clone());
                let (digest, refused) = checked.expect("checked with its request");
                if let Some(e) = refused {
                    item.status = ItemStatus::Refused;
                    item.reason = Some(ItemReason::refused(e));
                } else if let Some(Duplicate::Request(first)) = duplicate {
                    item.refuse(IssueRefusal::DuplicateRequest { first: first + 1 });
                } else if let Some(Duplicate::Machine(first)) = duplicate {
                    item.refuse(IssueRefusal::DuplicateMachine { cmid: req.cmid.clone(), first: first + 1 });
                } else {
                    let item = Item {
                        nonce: Some(req.nonce.clone()),
                        req,
                        digest: Some(digest),
                        replaces: None,
                        entitlement: ent.as_ref().map(|e| e.id),
                        opts: opts.issue.clone(),
                    };
                    work.push(Work { slot, item });
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

/// Why an item is a duplicate: the slot of the first item with the same
/// request, or else with the same machine (product and CMID).
#[derive(Clone, Copy)]
enum Duplicate {
    Request(usize),
    Machine(usize),
}

/// For each input, whether an earlier admitted one has the same request or
/// machine. Only admitted items (a readable request the checks let
/// through) count as the first of their request or machine. The keys are
/// borrowed from the inputs and the maps sized for all of them: this runs
/// on one core before the first signature.
fn duplicates(inputs: &[BatchInput], checked: &[Option<(String, Option<Error>)>]) -> Vec<Option<Duplicate>> {
    let mut by_digest: HashMap<&str, usize> = HashMap::with_capacity(inputs.len());
    let mut by_machine: HashMap<(&str, &str), usize> = HashMap::with_capacity(inputs.len());
    inputs
        .iter()
        .zip(checked)
        .enumerate()
        .map(|(slot, (input, checked))| {
            let (Ok(req), Some((digest, None))) = (&input.request, checked) else {
                return None;
            };
            if let Some(&first) = by_digest.get(digest.as_str()) {
                return Some(Duplicate::Request(first));
            }
            if let Some(&first) = by_machine.get(&(req.product.as_str(), req.cmid.as_str())) {
                return Some(Duplicate::Machine(first));
            }
            by_digest.insert(digest, slot);
            by_machine.insert((&req.product, &req.cmid), slot);
            None
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::bulk::requests::synthetic_request;
    use crate::issuer::issue::test_signer;
    use crate::issuer::ledger::NewEntitlement;

    /// A bundle written by the batch holds one line per issued item, in
    /// input order, with the token the ledger recorded; the report keeps no
    /// token text (the tokens are in the bundle: a large batch does not hold
    /// them all in memory). A batch that fails before issuing leaves no
    /// temporary file.
    #[test]
    fn bundle_output_is_written_by_the_batch() {
        let now = 1_800_000_000;
        let d = tempfile::tempdir().unwrap();
        let mut l = ledger_with_entitlement(d.path(), 9, now);
        let signer = test_signer(now);
        let inputs = five_requests(now, 0);
        let opts = BatchOptions { entitlement: Some("e".into()), chunk: 2, ..Default::default() };
        let path = d.path().join("b.jsonl");
        let r = issue_batch_to(&mut l, inputs.clone(), &opts, &signer, now, Output::Bundle(&path), &|_| {}).unwrap();
        assert_eq!(r.ok, 5);
        let mut expected = String::new();
        for it in &r.items {
            let i = it.issued.as_ref().unwrap();
            assert_eq!(i.text, "", "item {}: the token is in the bundle, not in the report", it.source);
            let recorded = l.token(&i.serial).unwrap().token;
            crate::core::bundle::push_line(&mut expected, &i.product, &i.cmid, &i.serial, &recorded);
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
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

    /// A ledger at `dir/l.sqlite` holding entitlement "e": `machines` seats of product "p".
    fn ledger_with_entitlement(dir: &std::path::Path, machines: u32, now: i64) -> Ledger {
        let mut l = Ledger::open(&dir.join("l.sqlite")).unwrap();
        let new = NewEntitlement { product: "p".into(), machines, name: Some("e".into()), ..Default::default() };
        l.add_entitlement(&new, now).unwrap();
        l
    }

    /// Five requests for product "p", machines `first` to `first + 4`.
    fn five_requests(now: i64, first: u64) -> Vec<BatchInput> {
        (first..first + 5)
            .map(|n| BatchInput { source: n.to_string(), request: Ok(synthetic_request("p", n, now)) })
            .collect()
    }

    /// The batch's last checkpoint runs before it returns: with the ledger
    /// still open, its database file alone (copied without the log) holds
    /// every token of a batch far smaller than a checkpoint's worth: in
    /// three chunks (all signed ahead at once), and in five (a checkpoint
    /// when the last ones are being signed, then the last one).
    #[test]
    fn the_database_file_holds_the_batch_when_it_returns() {
        let now = 1_800_000_000;
        for chunk in [2, 1] {
            let d = tempfile::tempdir().unwrap();
            let mut l = ledger_with_entitlement(d.path(), 9, now);
            let opts = BatchOptions { entitlement: Some("e".into()), chunk, ..Default::default() };
            let r = issue_batch(&mut l, five_requests(now, 0), &opts, &test_signer(now), now, None, &|_| {}).unwrap();
            assert_eq!(r.ok, 5);
            let copy = d.path().join("copy.sqlite");
            std::fs::copy(d.path().join("l.sqlite"), &copy).unwrap();
            let c = rusqlite::Connection::open(&copy).unwrap();
            assert_eq!(
                c.query_row("SELECT count(*) FROM tokens", [], |r| r.get::<_, i64>(0)).unwrap(),
                5,
                "chunk {chunk}"
            );
        }
    }

    /// Serials are distinct within a batch, and a later batch's (even at
    /// the same second) all sort after an earlier one's: new rows extend
    /// the serial index at its right edge.
    #[test]
    fn batch_serials_are_unique_and_time_ordered() {
        let now = 1_800_000_000;
        let d = tempfile::tempdir().unwrap();
        let mut l = ledger_with_entitlement(d.path(), 20, now);
        let opts = BatchOptions { entitlement: Some("e".into()), chunk: 2, ..Default::default() };
        let signer = test_signer(now);
        let serials =
            |r: &BatchReport| -> Vec<String> { r.items.iter().map(|i| i.serial.clone().expect("issued")).collect() };
        let a = serials(&issue_batch(&mut l, five_requests(now, 0), &opts, &signer, now, None, &|_| {}).unwrap());
        let b = serials(&issue_batch(&mut l, five_requests(now, 5), &opts, &signer, now, None, &|_| {}).unwrap());
        let distinct: std::collections::HashSet<&String> = a.iter().chain(&b).collect();
        assert_eq!(distinct.len(), 10);
        let (last_a, first_b) = (a.iter().max().unwrap(), b.iter().min().unwrap());
        assert!(last_a < first_b, "{last_a} then {first_b}");
    }
}
