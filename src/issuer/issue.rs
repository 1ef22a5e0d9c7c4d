//! Issuance: the one path that issues a token for a request under a policy.
//!
//! [`issue_one`] takes a request, the token options, optionally a ledger
//! and an entitlement in it, and either returns the issued token (recorded
//! in the ledger when there is one, the machine counted against the
//! entitlement) or refuses: a policy refusal is [`Error::Issue`] with an
//! [`IssueRefusal`] (entitlement full, expired, wrong product, a feature it
//! does not grant, the seat rule, ...); a request that cannot be issued at
//! all is the error itself ([`Error::Binding`], [`Error::Format`],
//! [`Error::InvalidLifetime`], a token that would outlive its signer, ...).
//!
//! Bulk issuance and renewal ([`crate::issuer::bulk`]) are a pipeline on
//! top of the same decision (`Decider`) and record (`Recorder`): they
//! sign in parallel and in chunks, but what is issued, counted and recorded
//! is decided here, item by item: inside the ledger's write transaction,
//! or ahead of it on a read snapshot when the transaction can see that
//! nothing those decisions read has changed since (`bulk`'s pipeline).
//!
//! **Concurrency.** A [`Ledger`] is one connection (SQLite, or PostgreSQL
//! from a small pool): one per thread (each worker of a network service
//! opens its own with [`Ledger::open`] or [`Ledger::open_url`]). The
//! decision and the record of each token are one write transaction
//! (`BEGIN IMMEDIATE` on SQLite; on PostgreSQL one that locks the
//! entitlement's row, retried on a serialization failure or deadlock), so
//! any number of workers and processes on one ledger never exceed an
//! entitlement's count. The signature is made ahead, outside the
//! write lock, from a plan on a read snapshot, and used only if the
//! transaction's own decision gives the same claims.

pub use crate::core::error::IssueRefusal;
pub use crate::core::token::TokenLifetime;
pub use crate::issuer::claims::{
    build_claims, check_request, issue_token, realtime_issue_time, IssueOptions, IssuedToken, REALTIME_BACKDATE_SECS,
};
pub use crate::issuer::signer::{new_serial, TokenSigner};

use crate::core::error::{Error, Result};
use crate::core::keys::SignatureAlgorithm;
use crate::core::request::ActivationRequest;
use crate::core::token::Claims;
use crate::issuer::ledger::db::Db;
use crate::issuer::ledger::sql::{args, Val};
use crate::issuer::ledger::{find_entitlement, Entitlement, Ledger};
use crate::issuer::seats::{seat_held_elsewhere, seat_tokens, without_renewals, SeatToken};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

/// A token handed out by the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedItem {
    /// Serial.
    pub serial: String,
    /// The JWS compact text (empty once a batch wrote it to its output:
    /// a token file or the bundle).
    pub text: String,
    /// Product.
    pub product: String,
    /// Machine.
    pub cmid: String,
    /// Expiry.
    pub expires: Option<i64>,
}

/// How a token's machine was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Seat {
    /// The machine took a new seat.
    New,
    /// The machine was already counted: nothing consumed.
    Counted,
}

/// Issues one token for `req` under `opts`.
///
/// Without a ledger this is [`issue_token`] (and an `entitlement` is a
/// usage error: entitlements are counted in a ledger). With one, the
/// machine is counted against `entitlement` (id or name) when one is given,
/// and the token is recorded; a fresh token is always signed (a machine
/// already counted consumes no seat). Returns the token, or the refusal:
/// [`Error::Issue`] for the policy's, the error itself for a request that
/// cannot be issued.
pub fn issue_one(
    ledger: Option<&mut Ledger>,
    entitlement: Option<&str>,
    req: &ActivationRequest,
    opts: &IssueOptions,
    signer: &TokenSigner,
    now: i64,
) -> Result<IssuedToken> {
    let Some(ledger) = ledger else {
        if entitlement.is_some() {
            return Err(Error::Usage("an entitlement is counted in a ledger, and no ledger was given".into()));
        }
        return issue_token(req, opts, signer, now);
    };
    let ent = entitlement.map(|sel| ledger.entitlement(sel)).transpose()?;
    let allow_weak = opts.allow_weak_binding || ent.as_ref().is_some_and(|e| e.allow_weak_binding);
    admit(req, ent.as_ref(), allow_weak)?;
    let item = Item {
        digest: Some(request_digest(req)),
        nonce: Some(req.nonce.clone()),
        req: req.clone(),
        replaces: None,
        entitlement: ent.map(|e| e.id),
        opts: opts.clone(),
    };
    // Signed ahead, outside the write lock, from a plan on a read snapshot.
    let mut ahead = {
        let read = ledger.begin(false)?;
        let decision = Decider::new(read.db()).decide(&item, true, None, signer, now, &mut HashMap::new())?;
        drop(read);
        match decision {
            Decision::Sign { claims, .. } => {
                let text = sign_claims(signer, &claims, item.opts.alg, item.opts.compact);
                Some(Presigned { claims, text })
            }
            _ => None,
        }
    };
    // Decided and recorded in one write transaction (run again if
    // PostgreSQL aborts it; the token signed ahead is used once).
    let outcome = ledger.write(|db| {
        let mut decision = Decider::new(db).decide(&item, true, ahead.take(), signer, now, &mut HashMap::new())?;
        decision.sign(signer, &item.opts);
        let mut recorder = Recorder::new(db, signer);
        let outcome = recorder.record(&item, decision, &mut Vec::new(), now)?;
        recorder.finish()?;
        match outcome {
            Outcome::Issued { .. } => Ok(outcome),
            Outcome::Refused(e) | Outcome::SigningFailed(e) => Err(e),
        }
    })?;
    match outcome {
        Outcome::Issued { issued, claims: Some(claims), .. } => Ok(IssuedToken { text: issued.text, claims }),
        _ => unreachable!("a fresh token is always signed, and refusals are errors"),
    }
}

impl Ledger {
    /// [`issue_one`] with this ledger: issues one token for `req` and
    /// records it, counting the machine against `entitlement` (id or name)
    /// when one is given.
    pub fn issue(
        &mut self,
        req: &ActivationRequest,
        entitlement: Option<&str>,
        opts: &IssueOptions,
        signer: &TokenSigner,
        now: i64,
    ) -> Result<IssuedItem> {
        let t = issue_one(Some(self), entitlement, req, opts, signer, now)?;
        Ok(IssuedItem {
            serial: t.claims.jti,
            text: t.text,
            product: t.claims.aud,
            cmid: t.claims.sub,
            expires: t.claims.exp,
        })
    }
}

/// SHA-256 (hex) of a request's canonical JSON: the same request in text or
/// JSON form has the same digest. It identifies the request across runs.
pub fn request_digest(req: &ActivationRequest) -> String {
    let json = serde_json::to_string(req).expect("a request always serializes");
    crate::core::hex::lower_hex(&Sha256::digest(json.as_bytes()))
}

/// Whether a request may be issued under an entitlement at all: for its
/// product ([`IssueRefusal::WrongProduct`]), with well-formed fields and a
/// binding a real machine produces ([`check_request`]). Pure: a batch runs
/// it on every core before it looks at the ledger.
pub(crate) fn admit(req: &ActivationRequest, ent: Option<&Entitlement>, allow_weak: bool) -> Result<()> {
    if let Some(e) = ent.filter(|e| e.product != req.product) {
        return Err(Error::Issue(IssueRefusal::WrongProduct {
            requested: req.product.clone(),
            entitlement: e.label(),
            product: e.product.clone(),
        }));
    }
    check_request(req, allow_weak).map(|_| ())
}

/// One request under its policy, ready to decide.
pub(crate) struct Item {
    pub(crate) req: ActivationRequest,
    /// [`request_digest`] (absent for renewals).
    pub(crate) digest: Option<String>,
    /// The request's nonce (absent for renewals).
    pub(crate) nonce: Option<String>,
    /// The serial this token renews.
    pub(crate) replaces: Option<String>,
    /// The entitlement the machine is counted against.
    pub(crate) entitlement: Option<i64>,
    pub(crate) opts: IssueOptions,
}

/// A token signed ahead of its transaction, from a plan made outside it.
pub(crate) struct Presigned {
    pub(crate) claims: Claims,
    pub(crate) text: Result<String>,
}

/// What the path decided for one item. (Short-lived: the size difference
/// between variants does not matter.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Decision {
    /// Return the live token an earlier run issued for the same request.
    Existing { serial: String, text: String, expires: Option<i64>, counted: bool },
    /// Sign (or take the token signed ahead, `text`) and record.
    Sign { claims: Claims, new_seat: bool, counted: bool, text: Option<Result<String>> },
    /// Refused: [`Error::Issue`] by policy, or why the request cannot be issued.
    Refuse(Error),
}

impl Decision {
    /// Signs the token of a `Sign` decision that has none yet.
    pub(crate) fn sign(&mut self, signer: &TokenSigner, opts: &IssueOptions) {
        if let Decision::Sign { claims, text: text @ None, .. } = self {
            *text = Some(sign_claims(signer, claims, opts.alg, opts.compact));
        }
    }
}

/// Signs token claims with `alg`, as a full token or a compact one.
pub(crate) fn sign_claims(
    signer: &TokenSigner,
    claims: &Claims,
    alg: SignatureAlgorithm,
    compact: bool,
) -> Result<String> {
    serde_json::to_value(claims)
        .map_err(|e| Error::format("token claims", e))
        .and_then(|v| signer.sign_token(&v, alg, compact))
}

/// The query of a live token an earlier run issued for the same request
/// (`?1` request digest, `?2` entitlement, `?3` CMID, `?4` product).
const EXISTING_SQL: &str = "SELECT t.serial, h.header || '.' || t.body, t.expires FROM tokens t
       JOIN jws_headers h ON h.id = t.header_id
     WHERE t.cmid = ?3 AND t.product = ?4 AND +t.request_digest = ?1 AND +t.entitlement_id IS NOT DISTINCT FROM ?2
       AND t.released_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.serial = t.serial)
     ORDER BY t.issued_at DESC, t.serial LIMIT 1";

/// The machine's tokens in the entitlement for the product, each with
/// whether it is revoked, newest first (`?1` entitlement, `?2` CMID, `?3`
/// product). The machine is refused as revoked when it has tokens there
/// and every one of them is revoked (a machine issued a fresh token after a
/// revocation, as allowed, holds an unrevoked one and is no longer
/// refused). Looked up by the `tokens_machine` index (CMID, product); the
/// rule is applied in Rust, so no plan ever scans the table.
const MACHINE_TOKENS_SQL: &str = "SELECT t.serial, EXISTS(SELECT 1 FROM revocations r WHERE r.serial = t.serial)
     FROM tokens t WHERE t.cmid = ?2 AND t.product = ?3 AND +t.entitlement_id = ?1
     ORDER BY t.issued_at DESC, t.serial";

/// The ledger rows the decisions of a chunk read, fetched for the whole
/// chunk in two statements ([`Decider::prefetch`]): every token of the
/// chunk's machines and their seats in the chunk's entitlements.
struct Known {
    tokens: HashMap<String, Vec<KnownToken>>,
    seats: HashSet<(i64, String)>,
    /// The JWS headers of those tokens, by id (one per signer: each
    /// token's text is its header, '.', its body, assembled only for the
    /// token a decision returns).
    headers: HashMap<i64, String>,
    /// The bodies of the tokens the decisions read them of (a seat's
    /// tokens the seat rule reads, a token the same request was issued),
    /// by serial: not every body of a machine renewed many times.
    bodies: HashMap<String, String>,
}

/// A token of [`Known`], with what the three token rules read.
struct KnownToken {
    serial: String,
    product: String,
    entitlement: Option<i64>,
    digest: Option<String>,
    released: bool,
    revoked: bool,
    issued_at: i64,
    expires: Option<i64>,
    header_id: i64,
    components: String,
    replaces: Option<String>,
}

/// The tokens of a chunk's machines (`?1`: a JSON array of CMIDs), by the
/// `tokens_machine` index: the columns, then the PostgreSQL and the SQLite
/// condition (each backend spells a JSON array's elements its own way).
const CHUNK_TOKENS_SQL: &str = "SELECT t.serial, t.cmid, t.product, t.entitlement_id, t.request_digest,
            t.released_at IS NULL, EXISTS(SELECT 1 FROM revocations r WHERE r.serial = t.serial), t.issued_at,
            t.expires, t.header_id, t.components, t.replaces
     FROM tokens t
     WHERE t.cmid IN ";
/// The bodies of tokens (`?1`: a JSON array of serials), by serial.
const CHUNK_BODIES_SQL: &str = "SELECT t.serial, t.body FROM tokens t WHERE t.serial IN ";
/// The strings of a JSON array in `?1` (CMIDs, serials), as the subquery
/// an `IN` takes: PostgreSQL's and SQLite's spelling.
const JSON_LIST_PG: &str = "(SELECT json_array_elements_text(CAST(?1 AS TEXT)::json))";
pub(crate) const JSON_LIST_SQLITE: &str = "(SELECT value FROM json_each(?1))";

/// [`JSON_LIST_PG`] or [`JSON_LIST_SQLITE`], for the ledger's database.
pub(crate) fn json_list(pg: bool) -> &'static str {
    if pg {
        JSON_LIST_PG
    } else {
        JSON_LIST_SQLITE
    }
}

/// A stored JWS header (the base64url part before a token's body) by its id.
pub(crate) fn jws_header(db: Db<'_>, id: i64) -> Result<String> {
    db.query_one("SELECT header FROM jws_headers WHERE id = ?1", args![id])?.text(0)
}

/// The seats of a chunk's machines (`?1`: a JSON array of
/// `[entitlement, CMID]` pairs), by the primary key (PostgreSQL, SQLite:
/// whose plan of the `IN` form above searches the key by its first column
/// only, every seat of the entitlement, so it is a join in that order).
const CHUNK_SEATS_PG: &str = "SELECT entitlement_id, cmid FROM seats
     WHERE (entitlement_id, cmid) IN (SELECT (p ->> 0)::BIGINT, p ->> 1 FROM json_array_elements(CAST(?1 AS TEXT)::json) p)";
const CHUNK_SEATS_SQLITE: &str = "SELECT s.entitlement_id, s.cmid FROM json_each(?1) p
     CROSS JOIN seats s ON s.entitlement_id = p.value ->> 0 AND s.cmid = p.value ->> 1";

/// Decides items against the ledger as one connection (or transaction) sees it.
pub(crate) struct Decider<'c> {
    db: Db<'c>,
    /// The chunk's rows, read at once (two statements instead of three per
    /// item: on PostgreSQL two round trips); `None`: each decision queries
    /// the ledger.
    known: Option<Known>,
}

impl<'c> Decider<'c> {
    pub(crate) fn new(db: Db<'c>) -> Self {
        Decider { db, known: None }
    }

    /// Reads at once what deciding `items` reads: their entitlements (into
    /// `ents`; in a PostgreSQL write transaction locked `FOR UPDATE`, in id
    /// order, before anything else is read, as each decision would lock
    /// it), every token of their machines and their seats. The decisions
    /// then answer from these rows exactly as their queries would: every
    /// decision of a chunk is made before any is recorded, so no decision
    /// reads what another one records.
    pub(crate) fn prefetch(&mut self, items: &[&Item], ents: &mut HashMap<i64, Entitlement>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let pg = self.db.is_pg();
        let mut ids: Vec<i64> = items.iter().filter_map(|w| w.entitlement).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if let std::collections::hash_map::Entry::Vacant(v) = ents.entry(id) {
                let e = find_entitlement(self.db, &id.to_string())?
                    .ok_or_else(|| Error::Usage(format!("entitlement {id} vanished from the ledger")))?;
                v.insert(e);
            }
        }
        let cmids: Vec<&str> = items.iter().map(|w| w.req.cmid.as_str()).collect();
        let cmids = serde_json::to_string(&cmids).expect("strings serialize");
        let mut tokens: HashMap<String, Vec<KnownToken>> = HashMap::new();
        let sql = format!("{CHUNK_TOKENS_SQL}{}", json_list(pg));
        for r in self.db.query(&sql, args![cmids])? {
            tokens.entry(r.text(1)?).or_default().push(KnownToken {
                serial: r.text(0)?,
                product: r.text(2)?,
                entitlement: r.opt_i64(3)?,
                digest: r.opt_text(4)?,
                released: !r.bool(5)?,
                revoked: r.bool(6)?,
                issued_at: r.i64(7)?,
                expires: r.opt_i64(8)?,
                header_id: r.i64(9)?,
                components: r.text(10)?,
                replaces: r.opt_text(11)?,
            });
        }
        // The queries' orders: newest first, then by serial.
        for list in tokens.values_mut() {
            list.sort_by(|a, b| b.issued_at.cmp(&a.issued_at).then_with(|| a.serial.cmp(&b.serial)));
        }
        let pairs: Vec<(i64, &str)> =
            items.iter().filter_map(|w| w.entitlement.map(|e| (e, w.req.cmid.as_str()))).collect();
        let mut seats = HashSet::new();
        if !pairs.is_empty() {
            let pairs = serde_json::to_string(&pairs).expect("pairs serialize");
            for r in self.db.query(if pg { CHUNK_SEATS_PG } else { CHUNK_SEATS_SQLITE }, args![pairs])? {
                seats.insert((r.i64(0)?, r.text(1)?));
            }
        }
        let mut headers = HashMap::new();
        for id in tokens.values().flatten().map(|t| t.header_id) {
            if let std::collections::hash_map::Entry::Vacant(v) = headers.entry(id) {
                v.insert(jws_header(self.db, id)?);
            }
        }
        let mut known = Known { tokens, seats, headers, bodies: HashMap::new() };
        let mut wanted: Vec<String> = Vec::new();
        for w in items {
            if let Some(d) = &w.digest {
                wanted.extend(
                    Self::known_tokens(&known, &w.req.cmid, &w.req.product, w.entitlement)
                        .filter(|t| t.digest.as_deref() == Some(d.as_str()))
                        .map(|t| t.serial.clone()),
                );
            }
            if let Some(e) = w.entitlement {
                wanted.extend(Self::known_seat(&known, e, &w.req).into_iter().map(|t| t.serial));
            }
        }
        if !wanted.is_empty() {
            let serials = serde_json::to_string(&wanted).expect("strings serialize");
            let sql = format!("{CHUNK_BODIES_SQL}{}", json_list(pg));
            let mut bodies = HashMap::new();
            for r in self.db.query(&sql, args![serials])? {
                bodies.insert(r.text(0)?, r.text(1)?);
            }
            known.bodies = bodies;
        }
        self.known = Some(known);
        Ok(())
    }

    /// The machine's tokens of `product` in entitlement `ent` (`None`: no
    /// entitlement), newest first.
    fn known_tokens<'k>(
        known: &'k Known,
        cmid: &str,
        product: &str,
        ent: Option<i64>,
    ) -> impl Iterator<Item = &'k KnownToken> + 'k {
        let product = product.to_string();
        known.tokens.get(cmid).into_iter().flatten().filter(move |t| t.product == product && t.entitlement == ent)
    }

    /// The token already issued for this very request (same digest, not
    /// released, not revoked), newest first: serial, text, expiry.
    fn existing(&self, w: &Item, digest: &str) -> Result<Option<(String, String, Option<i64>)>> {
        if let Some(k) = &self.known {
            return Self::known_tokens(k, &w.req.cmid, &w.req.product, w.entitlement)
                .find(|t| t.digest.as_deref() == Some(digest) && !t.released && !t.revoked)
                .map(|t| {
                    let text = format!("{}.{}", k.headers[&t.header_id], self.body(k, &t.serial)?);
                    Ok((t.serial.clone(), text, t.expires))
                })
                .transpose();
        }
        self.db
            .query_opt(EXISTING_SQL, args![digest, w.entitlement, &w.req.cmid, &w.req.product])?
            .map(|r| Ok((r.text(0)?, r.text(1)?, r.opt_i64(2)?)))
            .transpose()
    }

    /// The machine's tokens in the entitlement, newest first: serial and
    /// whether it is revoked.
    fn machine_tokens(&self, e: &Entitlement, req: &ActivationRequest) -> Result<Vec<(String, bool)>> {
        if let Some(k) = &self.known {
            return Ok(Self::known_tokens(k, &req.cmid, &req.product, Some(e.id))
                .map(|t| (t.serial.clone(), t.revoked))
                .collect());
        }
        self.db
            .query(MACHINE_TOKENS_SQL, args![e.id, &req.cmid, &req.product])?
            .iter()
            .map(|r| Ok((r.text(0)?, r.bool(1)?)))
            .collect()
    }

    /// Whether the machine holds a seat in the entitlement.
    fn seat_counted(&self, e: &Entitlement, cmid: &str) -> Result<bool> {
        if let Some(k) = &self.known {
            return Ok(k.seats.contains(&(e.id, cmid.to_string())));
        }
        self.db
            .query_one("SELECT EXISTS(SELECT 1 FROM seats WHERE entitlement_id = ?1 AND cmid = ?2)", args![e.id, cmid])?
            .bool(0)
    }

    /// The tokens of the machine's seat not released, oldest first, then
    /// by serial (the order of [`seat_tokens`]'s query).
    fn seat_tokens(&self, e: &Entitlement, req: &ActivationRequest) -> Result<Vec<SeatToken>> {
        if let Some(k) = &self.known {
            let mut seat = Self::known_seat(k, e.id, req);
            for t in &mut seat {
                t.body = self.body(k, &t.serial)?;
            }
            return Ok(seat);
        }
        seat_tokens(self.db, e, req)
    }

    /// [`Self::seat_tokens`] from the chunk's rows, bodies left empty.
    fn known_seat(k: &Known, ent: i64, req: &ActivationRequest) -> Vec<SeatToken> {
        let mut v: Vec<&KnownToken> =
            Self::known_tokens(k, &req.cmid, &req.product, Some(ent)).filter(|t| !t.released).collect();
        v.sort_by(|a, b| a.issued_at.cmp(&b.issued_at).then_with(|| a.serial.cmp(&b.serial)));
        without_renewals(
            v.into_iter()
                .map(|t| SeatToken {
                    serial: t.serial.clone(),
                    components: t.components.clone(),
                    body: String::new(),
                    replaces: t.replaces.clone(),
                })
                .collect(),
        )
    }

    /// A token's body: read with the chunk's rows, or else now.
    fn body(&self, k: &Known, serial: &str) -> Result<String> {
        match k.bodies.get(serial) {
            Some(b) => Ok(b.clone()),
            None => self.db.query_one("SELECT body FROM tokens WHERE serial = ?1", args![serial])?.text(0),
        }
    }

    /// Decides one item: the existing token to return (unless `reissue`),
    /// the claims to sign (and whether the machine takes a new seat), or
    /// why it is refused. `ents` caches the entitlements read and counts
    /// the seats taken (`used`) by the items decided so far. A token signed
    /// `ahead` is used when its claims carry what the decision gives
    /// (entitlement, features); otherwise fresh claims are built.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decide(
        &mut self,
        w: &Item,
        reissue: bool,
        ahead: Option<Presigned>,
        signer: &TokenSigner,
        now: i64,
        ents: &mut HashMap<i64, Entitlement>,
    ) -> Result<Decision> {
        let ent = match w.entitlement {
            None => None,
            Some(id) => match ents.entry(id) {
                std::collections::hash_map::Entry::Occupied(o) => Some(o.into_mut()),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let e = find_entitlement(self.db, &id.to_string())?
                        .ok_or_else(|| Error::Usage(format!("entitlement {id} vanished from the ledger")))?;
                    Some(v.insert(e))
                }
            },
        };
        if !reissue {
            if let Some(d) = &w.digest {
                if let Some((serial, text, expires)) = self.existing(w, d)? {
                    return Ok(Decision::Existing { serial, text, expires, counted: ent.is_some() });
                }
            }
        }
        let refuse = |r: IssueRefusal| Ok(Decision::Refuse(Error::Issue(r)));
        if let (Some(e), false) = (&ent, w.opts.allow_revoked_machine) {
            let tokens = self.machine_tokens(e, &w.req)?;
            if let Some((newest, _)) = tokens.first().filter(|_| tokens.iter().all(|(_, revoked)| *revoked)) {
                return refuse(IssueRefusal::MachineRevoked {
                    cmid: w.req.cmid.clone(),
                    entitlement: e.label(),
                    serial: newest.clone(),
                });
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
                return refuse(IssueRefusal::FeatureNotEntitled {
                    feature: f.clone(),
                    entitlement: e.label(),
                    features: e.features.clone(),
                });
            }
        }
        // Claims depend on the request, the options, the signer and `now`
        // (the same for the whole run) and on the entitlement and features.
        let ahead = ahead.filter(|p| p.claims.tka.features == o.features && p.claims.tka.entitlement == o.entitlement);
        let (claims, text) = match ahead {
            Some(p) => (p.claims, Some(p.text)),
            None => match build_claims(&w.req, &o, signer.certificate(), now)
                .and_then(|c| signer.check_delegation(&c).map(|()| c))
            {
                Ok(c) => (c, None),
                Err(e) => return Ok(Decision::Refuse(e)),
            },
        };
        let Some(e) = ent else {
            return Ok(Decision::Sign { claims, new_seat: false, counted: false, text });
        };
        if let Some(x) = e.expires {
            if now >= x {
                return refuse(IssueRefusal::EntitlementExpired { entitlement: e.label(), expired: x });
            }
            let until = claims.exp.map(|exp| exp + claims.tka.grace);
            if until.is_none_or(|u| u > x) {
                return refuse(IssueRefusal::OutlivesEntitlement { until, entitlement: e.label(), expires: x });
            }
        }
        if self.seat_counted(e, &w.req.cmid)? {
            if let Some(why) = seat_held_elsewhere(self.seat_tokens(e, &w.req)?, e, &w.req)? {
                return refuse(why);
            }
            Ok(Decision::Sign { claims, new_seat: false, counted: true, text })
        } else if e.used < e.machines {
            e.used += 1;
            Ok(Decision::Sign { claims, new_seat: true, counted: true, text })
        } else {
            refuse(IssueRefusal::EntitlementFull { entitlement: e.label(), machines: e.machines, used: e.used })
        }
    }
}

/// What recording a decision gave. (Short-lived, one per item of a chunk:
/// the size difference between variants does not matter.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outcome {
    /// Issued and recorded (or an existing token returned: `existing`).
    Issued { issued: IssuedItem, claims: Option<Claims>, seat: Option<Seat>, existing: bool },
    /// Refused; nothing recorded.
    Refused(Error),
    /// The signature failed; nothing recorded.
    SigningFailed(Error),
}

/// Records decisions in a write transaction: the token rows, the seats
/// taken; [`Recorder::finish`] counts the seats in their entitlements.
pub(crate) struct Recorder<'t> {
    db: Db<'t>,
    fingerprint: String,
    taken: HashMap<i64, i64>,
    /// On PostgreSQL, token and seat rows wait here and are inserted by
    /// [`Recorder::finish`] many to a statement (one round trip for many
    /// rows). Every decision of a chunk is made before any is recorded, so
    /// nothing reads them before.
    pending: Option<(Vec<Val>, Vec<Val>)>,
}

/// Rows per multi-row insert on PostgreSQL.
const ROWS_PER_INSERT: usize = 128;

/// `INSERT INTO table (columns) VALUES (?1, ...), (...)` for `rows` rows.
fn multi_insert(head: &str, columns: usize, rows: usize) -> String {
    let mut sql = String::from(head);
    for r in 0..rows {
        sql.push_str(if r == 0 { " VALUES (" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{}", r * columns + c + 1));
        }
        sql.push(')');
    }
    sql
}

const INSERT_TOKEN_HEAD: &str =
    "INSERT INTO tokens (serial, entitlement_id, product, cmid, components, issued_at, not_before, expires,
                         signer, header_id, body, request_nonce, request_digest, replaces)";
const TOKEN_COLUMNS: usize = 14;
const INSERT_TOKEN_SQL: &str =
    "INSERT INTO tokens (serial, entitlement_id, product, cmid, components, issued_at, not_before, expires,
                         signer, header_id, body, request_nonce, request_digest, replaces)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
const INSERT_SEAT_HEAD: &str = "INSERT INTO seats (entitlement_id, cmid, counted_at)";

impl<'t> Recorder<'t> {
    pub(crate) fn new(db: Db<'t>, signer: &TokenSigner) -> Self {
        let pending = db.is_pg().then(|| (Vec::new(), Vec::new()));
        Recorder { db, fingerprint: signer.certificate().fingerprint.clone(), taken: HashMap::new(), pending }
    }

    /// Records one decision (its token signed). `headers` caches the ids of
    /// the JWS protected headers stored.
    pub(crate) fn record(
        &mut self,
        w: &Item,
        decision: Decision,
        headers: &mut Vec<(String, i64)>,
        now: i64,
    ) -> Result<Outcome> {
        Ok(match decision {
            Decision::Refuse(e) => Outcome::Refused(e),
            Decision::Existing { serial, text, expires, counted } => Outcome::Issued {
                issued: IssuedItem { serial, text, product: w.req.product.clone(), cmid: w.req.cmid.clone(), expires },
                claims: None,
                seat: counted.then_some(Seat::Counted),
                existing: true,
            },
            Decision::Sign { text: Some(Err(e)), .. } => Outcome::SigningFailed(e),
            Decision::Sign { text: None, .. } => unreachable!("every Sign decision is signed before it is recorded"),
            Decision::Sign { claims, new_seat, counted, text: Some(Ok(text)) } => {
                // A header seen before is found as the text's prefix up to a
                // dot (base64url has none), without searching the ~3.5 KB
                // of a full token's header for its end first.
                let known = headers
                    .iter()
                    .find(|(h, _)| text.as_bytes().get(h.len()) == Some(&b'.') && text.starts_with(h.as_str()));
                let (header, body) = match known {
                    Some((h, _)) => text.split_at(h.len()),
                    None => text.split_once('.').map(|(h, _)| text.split_at(h.len())).expect("a JWS has dots"),
                };
                let body = &body[1..];
                let header_id = match known {
                    Some((_, id)) => *id,
                    None => {
                        self.db.execute(
                            "INSERT INTO jws_headers (header) VALUES (?1) ON CONFLICT DO NOTHING",
                            args![header],
                        )?;
                        let id =
                            self.db.query_one("SELECT id FROM jws_headers WHERE header = ?1", args![header])?.i64(0)?;
                        headers.push((header.to_string(), id));
                        id
                    }
                };
                let components = serde_json::to_string(&claims.tka.components).expect("components serialize");
                let row = args![
                    &claims.jti,
                    w.entitlement,
                    &claims.aud,
                    &claims.sub,
                    components,
                    claims.iat,
                    claims.nbf,
                    claims.exp,
                    &self.fingerprint,
                    header_id,
                    body,
                    &w.nonce,
                    &w.digest,
                    &w.replaces
                ];
                match &mut self.pending {
                    Some((tokens, _)) => tokens.extend_from_slice(row),
                    None => {
                        self.db.execute(INSERT_TOKEN_SQL, row)?;
                    }
                }
                if new_seat {
                    let id = w.entitlement.expect("a seat belongs to an entitlement");
                    let seat = args![id, &claims.sub, now];
                    match &mut self.pending {
                        Some((_, seats)) => seats.extend_from_slice(seat),
                        None => {
                            self.db.execute(
                                "INSERT INTO seats (entitlement_id, cmid, counted_at) VALUES (?1, ?2, ?3)",
                                seat,
                            )?;
                        }
                    }
                    *self.taken.entry(id).or_default() += 1;
                }
                Outcome::Issued {
                    issued: IssuedItem {
                        serial: claims.jti.clone(),
                        text,
                        product: claims.aud.clone(),
                        cmid: claims.sub.clone(),
                        expires: claims.exp,
                    },
                    claims: Some(claims),
                    seat: counted.then_some(if new_seat { Seat::New } else { Seat::Counted }),
                    existing: false,
                }
            }
        })
    }

    /// Counts the seats taken in their entitlements (before the commit).
    pub(crate) fn finish(self) -> Result<()> {
        if let Some((tokens, seats)) = &self.pending {
            for (head, columns, vals) in [(INSERT_TOKEN_HEAD, TOKEN_COLUMNS, tokens), (INSERT_SEAT_HEAD, 3, seats)] {
                for part in vals.chunks(columns * ROWS_PER_INSERT) {
                    self.db.execute(&multi_insert(head, columns, part.len() / columns), part)?;
                }
            }
        }
        for (id, n) in &self.taken {
            self.db.execute("UPDATE entitlements SET used = used + ?1 WHERE id = ?2", args![*n, *id])?;
        }
        Ok(())
    }
}

/// A token signer valid ten years from `now - 1 day` (TEST-ONLY keys from certs/test/).
#[cfg(test)]
pub(crate) fn test_signer(now: i64) -> TokenSigner {
    use crate::core::keys::{Signer, SoftwareKey};
    use crate::core::pki::CertInfo;
    use crate::issuer::certs::{create_certificate, CertKind, CertRequest};
    let key = |name: &str| {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("certs/test/{name}.key"));
        SoftwareKey::from_pkcs8_pem(&std::fs::read_to_string(&path).unwrap(), None, &path).unwrap()
    };
    let (ik, sk) = (key("intermediate"), key("signer"));
    let req = |kind, subject| CertRequest {
        kind,
        subject,
        not_before: now - 86_400,
        not_after: now + 3650 * 86_400,
        delegation: None,
    };
    let ca = create_certificate(&req(CertKind::Root, "CN=T Root"), ik.public_key(), None, &ik).unwrap();
    let ca_info = CertInfo::parse(&ca).unwrap();
    let der = create_certificate(&req(CertKind::Signer, "CN=T Signer"), sk.public_key(), Some(&ca_info), &ik).unwrap();
    TokenSigner::new(Box::new(sk), vec![der, ca]).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On SQLite, a chunk's two reads find its machines' tokens by
    /// `tokens_machine` and their seats by the whole primary key: neither
    /// scans the tokens nor every seat of an entitlement.
    #[test]
    fn chunk_reads_look_machines_up_by_key() {
        let d = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&d.path().join("ledger.sqlite")).unwrap();
        let plan = |sql: &str| -> String {
            let rows = ledger.db().query(&format!("EXPLAIN QUERY PLAN {sql}"), args!["[]"]).unwrap();
            rows.iter().map(|r| r.text(3).unwrap()).collect::<Vec<_>>().join("; ")
        };
        let tokens = plan(&format!("{CHUNK_TOKENS_SQL}{JSON_LIST_SQLITE}"));
        assert!(tokens.contains("SEARCH t USING INDEX tokens_machine (cmid=?)"), "{tokens}");
        let seats = plan(CHUNK_SEATS_SQLITE);
        assert!(seats.contains("SEARCH s USING PRIMARY KEY (entitlement_id=? AND cmid=?)"), "{seats}");
    }
}
