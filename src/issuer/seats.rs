//! The seat rule: when a machine that already holds a seat gets another
//! token without consuming one.

use crate::core::error::{Error, IssueRefusal, Result};
use crate::core::machine::{ComponentHash, MatchRule};
use crate::core::request::ActivationRequest;
use crate::issuer::ledger::db::Db;
use crate::issuer::ledger::sql::args;
use crate::issuer::ledger::Entitlement;

/// The query [`seat_tokens`] runs: the tokens of a seat not released,
/// oldest first, of those issued at the same second the smallest serial
/// first (`?1` entitlement, `?2` CMID, `?3` product).
const SEAT_TOKENS_SQL: &str = "SELECT t.serial, t.components, t.body, t.replaces FROM tokens t
     WHERE t.cmid = ?2 AND t.product = ?3 AND +t.entitlement_id = ?1 AND t.released_at IS NULL
     ORDER BY t.issued_at, t.serial";

/// A recorded token of a seat, as the seat rule reads it.
pub(crate) struct SeatToken {
    pub(crate) serial: String,
    /// Bound components (JSON, as recorded).
    pub(crate) components: String,
    /// `payload.signature`.
    pub(crate) body: String,
    /// The serial this token renewed, if it is a renewal.
    pub(crate) replaces: Option<String>,
}

/// The tokens of the machine's seat not released, revoked and expired
/// ones included, oldest first (then by serial): the seat rule names the
/// first one the request does not pass.
pub(crate) fn seat_tokens(db: Db<'_>, e: &Entitlement, req: &ActivationRequest) -> Result<Vec<SeatToken>> {
    let seat = db
        .query(SEAT_TOKENS_SQL, args![e.id, &req.cmid, &req.product])?
        .iter()
        .map(|r| {
            Ok(SeatToken { serial: r.text(0)?, components: r.text(1)?, body: r.text(2)?, replaces: r.opt_text(3)? })
        })
        .collect::<Result<_>>()?;
    Ok(without_renewals(seat))
}

/// The tokens of `seat` (oldest first) the seat rule has to read: a
/// renewal that binds exactly the components of the token it renewed, in
/// the same seat, is left out. Renewal copies the old token's components
/// and match rule into the new one (`issuer::bulk::renew`; nothing else
/// records `replaces`), so the request passes the renewal exactly when it
/// passes the older token, which is read first: the verdict, and the
/// serial a refusal names, are unchanged, and a machine renewed every week
/// is not checked against every token of its history each time.
pub(crate) fn without_renewals(seat: Vec<SeatToken>) -> Vec<SeatToken> {
    let components: std::collections::HashMap<&str, &str> =
        seat.iter().map(|t| (t.serial.as_str(), t.components.as_str())).collect();
    let renewal =
        |t: &SeatToken| t.replaces.as_deref().and_then(|old| components.get(old)).is_some_and(|c| *c == t.components);
    let keep: Vec<bool> = seat.iter().map(|t| !renewal(t)).collect();
    seat.into_iter().zip(keep).filter_map(|(t, k)| k.then_some(t)).collect()
}

/// A machine that already holds a seat (same CMID) is given another token
/// without consuming a seat only if the request binds exactly the hardware
/// (DMI UUID, serials, disk, MACs) of every token of that seat not released
/// — revoked and expired ones included — and passes each of them under its
/// own match rule. Hardware never drifts within a seat, so every machine
/// that passes any token of the seat holds more than half of the same
/// hardware values (`most`'s anchor) and no two machines with different
/// hardware share a seat, however the requests are sequenced; a machine
/// whose hardware changed is moved by releasing the seat. `seat` holds
/// those tokens ([`seat_tokens`]). Returns the refusal, if any.
pub(crate) fn seat_held_elsewhere(
    seat: Vec<SeatToken>,
    e: &Entitlement,
    req: &ActivationRequest,
) -> Result<Option<IssueRefusal>> {
    for SeatToken { serial, components, body, .. } in seat {
        let bound: Vec<ComponentHash> =
            serde_json::from_str(&components).map_err(|err| Error::format(format!("ledger token {serial}"), err))?;
        let rule = token_rule(&body).map_err(|err| Error::format(format!("ledger token {serial}"), err))?;
        let (old_hw, new_hw) = (hardware_of(&bound), hardware_of(&req.components));
        if old_hw != new_hw {
            let mut changed: Vec<&str> = old_hw.symmetric_difference(&new_hw).map(|c| c.0).collect();
            changed.sort_by_key(|k| crate::core::machine::kinds::rank(k));
            changed.dedup();
            return Ok(Some(IssueRefusal::SeatHardwareChanged {
                cmid: req.cmid.clone(),
                entitlement: e.label(),
                serial,
                changed: changed.into_iter().map(str::to_string).collect(),
            }));
        }
        let report = rule.evaluate(&bound, &req.components);
        if !report.is_match() {
            return Ok(Some(IssueRefusal::SeatHeldByAnotherMachine {
                cmid: req.cmid.clone(),
                entitlement: e.label(),
                serial,
                report: report.to_string(),
            }));
        }
    }
    Ok(None)
}

/// The hardware components of a binding, as (kind, hash) pairs.
fn hardware_of(components: &[ComponentHash]) -> std::collections::BTreeSet<(&str, &str)> {
    components
        .iter()
        .filter(|c| crate::core::machine::HARDWARE_ANCHORS.contains(&c.kind.as_str()))
        .map(|c| (c.kind.as_str(), c.hash.as_str()))
        .collect()
}

/// The match rule of a recorded token, from its body (`payload.signature`).
fn token_rule(body: &str) -> std::result::Result<MatchRule, String> {
    let payload = body.split('.').next().unwrap_or_default();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
        .map_err(|e| format!("payload is not base64url: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    crate::core::token::parse_claims(&v).map(|c| c.tka.match_rule).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::{without_renewals, SeatToken};

    fn token(serial: &str, components: &str, replaces: Option<&str>) -> SeatToken {
        SeatToken {
            serial: serial.into(),
            components: components.into(),
            body: String::new(),
            replaces: replaces.map(str::to_string),
        }
    }

    /// Only a renewal binding exactly what it renewed, renewed in the same
    /// seat, is left out; the order stays oldest first.
    #[test]
    fn only_renewals_of_the_same_binding_in_the_seat_are_left_out() {
        let seat = vec![
            token("a", "X", None),
            token("b", "X", Some("a")),
            token("c", "Y", Some("b")),
            token("d", "X", Some("gone")),
            token("e", "X", Some("b")),
        ];
        let kept: Vec<String> = without_renewals(seat).into_iter().map(|t| t.serial).collect();
        assert_eq!(kept, ["a", "c", "d"]);
    }
}
