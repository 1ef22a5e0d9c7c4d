//! Renewal: a new token, from the ledger alone, for every machine whose
//! newest live token expires soon.

use crate::core::error::{IssueRefusal, Result};
use crate::core::request::ActivationRequest;
use crate::core::token::TokenLifetime;
use crate::issuer::bulk::files::{prepare_output, Output};
use crate::issuer::bulk::pipeline::{run, Work};
use crate::issuer::bulk::report::{blank_item, BatchReport};
use crate::issuer::bulk::requests::seed_random_early;
use crate::issuer::issue::{IssueOptions, Item, TokenSigner};
use crate::issuer::ledger::sql::args;
use crate::issuer::ledger::{token_row, Ledger, TokenRecord, TOKEN_SELECT};
use rayon::prelude::*;
use std::path::Path;

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
    // Decoding the old tokens (base64 and JSON of each) runs on every core:
    // nothing is signed before it is done.
    let decoded: Vec<_> = due.par_iter().map(|rec| crate::core::token::decode_unverified(&rec.token)).collect();
    let mut items = Vec::with_capacity(due.len());
    let mut work = Vec::new();
    for (slot, (rec, old)) in due.into_iter().zip(decoded).enumerate() {
        let mut item = blank_item(slot, format!("renewal of {}", rec.serial));
        item.cmid = Some(rec.cmid.clone());
        match old {
            Err(e) => item.refuse(IssueRefusal::UnreadableToken { serial: rec.serial.clone(), detail: e.to_string() }),
            Ok((old_jws, old)) => {
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
                    compact: old_jws.x5c.is_empty()
                        && old_jws.kid.as_deref() == Some(signer.certificate().fingerprint.as_str()),
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

/// The newest live token of every machine whose newest token expires at
/// or before `limit`, by expiry then serial. Sorted here, not by the query:
/// SQLite's sorter would carry every row's token text (~4.7 KB; 470 MB
/// for 100,000 renewals), which took as long as the rest of the query.
fn renewal_due(
    ledger: &Ledger,
    limit: i64,
    entitlement: Option<i64>,
    product: Option<&str>,
) -> Result<Vec<TokenRecord>> {
    let mut due: Vec<TokenRecord> = ledger
        .db()
        .query(&renewal_due_sql(), args![limit, entitlement, product])?
        .iter()
        .map(token_row)
        .collect::<Result<_>>()?;
    due.sort_by(|a, b| (a.expires, &a.serial).cmp(&(b.expires, &b.serial)));
    Ok(due)
}

/// The query of [`renewal_due`]. The newer-token subquery looks the
/// machine up by `tokens_machine` (cmid, product): `+n.entitlement_id`
/// keeps SQLite from scanning the whole entitlement through
/// `tokens_entitlement_issued` instead, once per candidate (quadratic: an
/// entitlement of 100,000 machines did not finish in minutes).
fn renewal_due_sql() -> String {
    // `+n.entitlement_id`: the unary plus keeps SQLite from looking the
    // newer tokens up by entitlement (a scan of the whole entitlement per
    // candidate); they are found by `tokens_machine` (cmid, product).
    format!(
        "{} WHERE t.released_at IS NULL AND r.serial IS NULL AND t.expires IS NOT NULL AND t.expires <= ?1
           AND (CAST(?2 AS BIGINT) IS NULL OR t.entitlement_id = ?2)
           AND (CAST(?3 AS TEXT) IS NULL OR t.product = ?3)
           AND NOT EXISTS (SELECT 1 FROM tokens n LEFT JOIN revocations nr ON nr.serial = n.serial
                           WHERE n.cmid = t.cmid AND n.product = t.product
                             AND +n.entitlement_id IS NOT DISTINCT FROM t.entitlement_id AND n.released_at IS NULL
                             AND nr.serial IS NULL AND n.serial != t.serial
                             AND (n.expires IS NULL OR n.expires > t.expires
                                  OR (n.expires = t.expires AND n.serial > t.serial)))",
        TOKEN_SELECT
    )
}

#[cfg(test)]
mod tests {
    use super::renewal_due_sql;
    use crate::issuer::ledger::sql::args;
    use crate::issuer::ledger::Ledger;

    /// The renewal query finds candidates by expiry and each machine's
    /// newer tokens by `tokens_machine`, never by scanning the entitlement.
    #[test]
    fn renewal_due_looks_machines_up_by_index() {
        let d = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&d.path().join("ledger.sqlite")).unwrap();
        let rows = ledger
            .db()
            .query(&format!("EXPLAIN QUERY PLAN {}", renewal_due_sql()), args![1i64, None::<i64>, None::<String>])
            .unwrap();
        let plan: Vec<String> = rows.iter().map(|r| r.text(3).unwrap()).collect();
        let plan = plan.join("; ");
        assert!(plan.contains("SEARCH t USING INDEX tokens_expires"), "{plan}");
        assert!(plan.contains("SEARCH n USING INDEX tokens_machine (cmid=? AND product=?)"), "{plan}");
        assert!(!plan.contains("tokens_entitlement_issued"), "{plan}");
    }
}
