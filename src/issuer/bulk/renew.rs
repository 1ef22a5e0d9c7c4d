//! Renewal: a new token, from the ledger alone, for every machine whose
//! newest live token expires soon.

use crate::core::error::VerifyError;
use crate::core::error::{IssueRefusal, Result};
use crate::core::jws::{self, TOKEN_TYP};
use crate::core::request::ActivationRequest;
use crate::core::token::Claims;
use crate::core::token::TokenLifetime;
use crate::issuer::bulk::files::{prepare_output, Output};
use crate::issuer::bulk::pipeline::{run, Work};
use crate::issuer::bulk::report::{blank_item, BatchReport};
use crate::issuer::bulk::requests::seed_random_early;
use crate::issuer::issue::{json_list, jws_header};
use crate::issuer::issue::{IssueOptions, Item, TokenSigner};
use crate::issuer::ledger::sql::args;
use crate::issuer::ledger::{row_components, Ledger};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

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
    seed_random_early();
    let ent_filter = match &opts.entitlement {
        Some(sel) => Some(ledger.entitlement(sel)?.id),
        None => None,
    };
    let (out, bundle) = prepare_output(output)?;
    let due = renewal_due(ledger, now.saturating_add(opts.within), ent_filter, opts.product.as_deref())?;
    let decoded = decode_due(ledger, &due)?;
    let mut items = Vec::with_capacity(due.len());
    let mut work = Vec::new();
    for (slot, (rec, old)) in due.into_iter().zip(decoded).enumerate() {
        let mut item = blank_item(slot, format!("renewal of {}", rec.serial));
        item.cmid = Some(rec.cmid.clone());
        match old {
            Err(e) => item.refuse(IssueRefusal::UnreadableToken { serial: rec.serial.clone(), detail: e.to_string() }),
            Ok((head, old)) => {
                let lifetime = opts.lifetime.unwrap_or_else(|| match old.exp {
                    Some(exp) => TokenLifetime::Seconds(
                        (exp - old.iat).max(crate::core::token::MIN_TOKEN_LIFETIME_SECS as i64) as u64,
                    ),
                    None => TokenLifetime::Perpetual,
                });
                let issue = IssueOptions {
                    // Renewal re-issues what the ledger holds; a revoked
                    // token is never selected for renewal.
                    allow_revoked_machine: true,
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
                    // A renewal keeps the compact form only when the same
                    // signer signs it: that machine knows its chain. A new
                    // signer's token carries its chain.
                    compact: head.compact && head.kid.as_deref() == Some(signer.certificate().fingerprint.as_str()),
                };
                let req = ActivationRequest {
                    version: 1,
                    product: rec.product.clone(),
                    cmid: rec.cmid.clone(),
                    components: rec.components,
                    created: rec.issued_at,
                    nonce: String::new(),
                    hostname: None,
                };
                let item = Item {
                    req,
                    digest: None,
                    nonce: None,
                    replaces: Some(rec.serial.clone()),
                    entitlement: rec.entitlement,
                    opts: issue,
                };
                work.push(Work { slot, item });
            }
        }
        items.push(item);
    }
    let mut report = BatchReport::new(ent_filter, items);
    let bundled = run(ledger, work, true, opts.chunk, signer, now, out, bundle, progress, &mut report);
    report.tally();
    bundled.map(|()| report)
}

/// A token due for renewal, as the ledger records it: what renewing it
/// reads. The token's text is not assembled: its header (the signer's,
/// with its chain: ~3.5 KB, the same for every token of the signer) is
/// decoded once per header row ([`decode_due`]), the body once per token.
struct DueToken {
    serial: String,
    entitlement: Option<i64>,
    product: String,
    cmid: String,
    components: Vec<crate::core::machine::ComponentHash>,
    issued_at: i64,
    expires: Option<i64>,
    header_id: i64,
    /// `payload.signature`.
    body: String,
}

/// What renewal reads of an old token's header.
struct OldHeader {
    /// No `x5c`: a compact token.
    compact: bool,
    kid: Option<String>,
}

/// The newest live token of every machine whose newest token expires at
/// or before `limit`, by expiry then serial: a live token (not released,
/// not revoked) is due when it expires by `limit` and its machine (CMID,
/// product, entitlement) has no newer live token (one expiring later, or
/// at the same second with a greater serial, or never).
///
/// Read in three steps, none of which reads a machine's history more than
/// once: the live tokens expiring by `limit` (`tokens_expires`; serials,
/// machines and expiries only), of which each machine's newest is kept
/// (every other one has a newer live token: that one); then, by
/// `tokens_machine`, which of those machines hold a live token expiring
/// after `limit` or never (that token is newer: the machine is not due);
/// then the rows of the due tokens by serial. A query that checked, for
/// each token expiring by `limit`, every token of its machine read the
/// renewed tokens of every earlier renewal again at each run (a machine
/// renewed every week: its whole history, for each token of it).
fn renewal_due(ledger: &Ledger, limit: i64, entitlement: Option<i64>, product: Option<&str>) -> Result<Vec<DueToken>> {
    let db = ledger.db();
    let pg = db.is_pg();
    // Each machine's newest live token expiring by `limit`.
    let mut newest: HashMap<(String, String, Option<i64>), (i64, String)> = HashMap::new();
    for r in db.query(RENEWAL_CANDIDATES_SQL, args![limit, entitlement, product])? {
        let key = (r.text(1)?, r.text(2)?, r.opt_i64(3)?);
        let at = (r.i64(4)?, r.text(0)?);
        match newest.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if at > *o.get() {
                    o.insert(at);
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(at);
            }
        }
    }
    // Machines with a live token after `limit`: not due.
    let cmids: Vec<&str> = {
        let mut v: Vec<&str> = newest.keys().map(|k| k.0.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut later: std::collections::HashSet<(String, String, Option<i64>)> = std::collections::HashSet::new();
    let sql = format!("{RENEWAL_LATER_SQL}{}", json_list(pg));
    for part in cmids.chunks(RENEWAL_LOOKUP_BATCH) {
        let list = serde_json::to_string(part).expect("strings serialize");
        for r in db.query(&sql, args![list, limit])? {
            later.insert((r.text(0)?, r.text(1)?, r.opt_i64(2)?));
        }
    }
    let mut serials: Vec<String> =
        newest.into_iter().filter(|(k, _)| !later.contains(k)).map(|(_, (_, serial))| serial).collect();
    serials.sort_unstable();
    let sql = format!("{RENEWAL_SELECT}{}", json_list(pg));
    let mut due: Vec<DueToken> = Vec::with_capacity(serials.len());
    for part in serials.chunks(RENEWAL_LOOKUP_BATCH) {
        let list = serde_json::to_string(part).expect("strings serialize");
        for r in db.query(&sql, args![list])? {
            let serial = r.text(0)?;
            let components = row_components(&serial, &r.text(4)?)?;
            due.push(DueToken {
                entitlement: r.opt_i64(1)?,
                product: r.text(2)?,
                cmid: r.text(3)?,
                components,
                issued_at: r.i64(5)?,
                expires: r.opt_i64(6)?,
                header_id: r.i64(7)?,
                body: r.text(8)?,
                serial,
            });
        }
    }
    due.sort_by(|a, b| (a.expires, &a.serial).cmp(&(b.expires, &b.serial)));
    Ok(due)
}

/// The old tokens of `due`, decoded as `decode_unverified` decodes a
/// token's text (the same checks, the same errors), without assembling
/// the text: each distinct header once, then every token's body on every
/// core. Nothing is signed before this is done.
#[allow(clippy::type_complexity)]
fn decode_due(
    ledger: &Ledger,
    due: &[DueToken],
) -> Result<Vec<std::result::Result<(Arc<OldHeader>, Claims), VerifyError>>> {
    let mut headers: HashMap<i64, std::result::Result<Arc<OldHeader>, VerifyError>> = HashMap::new();
    for d in due {
        if headers.contains_key(&d.header_id) {
            continue;
        }
        let head = jws::decode_header_part(&jws_header(ledger.db(), d.header_id)?, TOKEN_TYP)
            .map(|(kid, x5c)| Arc::new(OldHeader { compact: x5c.is_empty(), kid }));
        headers.insert(d.header_id, head);
    }
    Ok(due
        .par_iter()
        .map(|d| {
            let head = headers[&d.header_id].clone()?;
            let claims = crate::core::token::parse_claims(&jws::decode_body_payload(&d.body)?)?;
            Ok((head, claims))
        })
        .collect())
}

/// Machines or serials per statement of [`renewal_due`]'s second and third
/// steps.
const RENEWAL_LOOKUP_BATCH: usize = 4096;

/// The live tokens expiring by `?1` (of entitlement `?2`, product `?3`,
/// when given): serial, CMID, product, entitlement, expiry.
const RENEWAL_CANDIDATES_SQL: &str = "SELECT t.serial, t.cmid, t.product, t.entitlement_id, t.expires
     FROM tokens t LEFT JOIN revocations r ON r.serial = t.serial
     WHERE t.released_at IS NULL AND r.serial IS NULL AND t.expires IS NOT NULL AND t.expires <= ?1
       AND (CAST(?2 AS BIGINT) IS NULL OR t.entitlement_id = ?2)
       AND (CAST(?3 AS TEXT) IS NULL OR t.product = ?3)";

/// The machines (CMID, product, entitlement) of the CMIDs in `?1` with a
/// live token expiring after `?2` or never; the CMID list follows.
const RENEWAL_LATER_SQL: &str = "SELECT DISTINCT n.cmid, n.product, n.entitlement_id
     FROM tokens n LEFT JOIN revocations nr ON nr.serial = n.serial
     WHERE n.released_at IS NULL AND nr.serial IS NULL AND (n.expires IS NULL OR n.expires > ?2) AND n.cmid IN ";

/// The columns of a [`DueToken`], by serial (the list follows).
const RENEWAL_SELECT: &str = "SELECT t.serial, t.entitlement_id, t.product, t.cmid, t.components, t.issued_at,
        t.expires, t.header_id, t.body
     FROM tokens t WHERE t.serial IN ";

#[cfg(test)]
mod tests {
    use super::{RENEWAL_CANDIDATES_SQL, RENEWAL_LATER_SQL};
    use crate::issuer::issue::JSON_LIST_SQLITE;
    use crate::issuer::ledger::sql::{args, Val};
    use crate::issuer::ledger::Ledger;

    fn plan(ledger: &Ledger, sql: &str, args: &[Val]) -> String {
        let rows = ledger.db().query(&format!("EXPLAIN QUERY PLAN {sql}"), args).unwrap();
        rows.iter().map(|r| r.text(3).unwrap()).collect::<Vec<_>>().join("; ")
    }

    /// The renewal look-ups find the tokens expiring by the limit by
    /// `tokens_expires` and the machines' later tokens by `tokens_machine`,
    /// never by scanning the table or an entitlement.
    #[test]
    fn renewal_due_looks_machines_up_by_index() {
        let d = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&d.path().join("ledger.sqlite")).unwrap();
        let first = plan(&ledger, RENEWAL_CANDIDATES_SQL, args![1i64, None::<i64>, None::<String>]);
        assert!(first.contains("SEARCH t USING INDEX tokens_expires"), "{first}");
        let later = plan(&ledger, &format!("{RENEWAL_LATER_SQL}{JSON_LIST_SQLITE}"), args!["[\"a\"]", 1i64]);
        assert!(later.contains("SEARCH n USING INDEX tokens_machine (cmid=?)"), "{later}");
        for p in [&first, &later] {
            assert!(!p.contains("SCAN t") && !p.contains("SCAN n") && !p.contains("tokens_entitlement_issued"), "{p}");
        }
    }
}
