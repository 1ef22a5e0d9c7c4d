//! What a batch reports: per item and in total.

use crate::core::error::{Error, IssueRefusal};
use crate::issuer::issue::{IssuedItem, Seat};
use serde::Serialize;
use std::path::PathBuf;

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

/// Why an item was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemReason {
    /// Refused: the issuance path's refusal (nothing recorded for it).
    Refused(IssueRefusal),
    /// Failed to run: signing, the ledger or writing the token file.
    Failed(String),
}

impl ItemReason {
    /// The refusal, if the item was refused.
    pub fn refusal(&self) -> Option<&IssueRefusal> {
        match self {
            ItemReason::Refused(r) => Some(r),
            ItemReason::Failed(_) => None,
        }
    }

    /// The reason of an item refused by the issuance path with `e`: its
    /// [`IssueRefusal`], or, for a request that cannot be issued at all,
    /// [`IssueRefusal::Invalid`] with the error's message.
    pub(crate) fn refused(e: Error) -> Self {
        ItemReason::Refused(match e {
            Error::Issue(r) => r,
            e => IssueRefusal::Invalid { detail: e.to_string() },
        })
    }
}

impl std::fmt::Display for ItemReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ItemReason::Refused(r) => r.fmt(f),
            ItemReason::Failed(s) => f.write_str(s),
        }
    }
}

impl Serialize for ItemReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
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
    /// Why it was refused or failed (serialized as its message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<ItemReason>,
    /// The token itself (not in the JSON report).
    #[serde(skip)]
    pub issued: Option<IssuedItem>,
}

impl ItemReport {
    /// The reason as text (what the JSON report holds).
    pub fn reason_text(&self) -> Option<String> {
        self.reason.as_ref().map(ToString::to_string)
    }

    /// Marks the item refused with `reason`.
    pub(crate) fn refuse(&mut self, reason: IssueRefusal) {
        self.status = ItemStatus::Refused;
        self.reason = Some(ItemReason::Refused(reason));
    }
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
    pub(crate) fn new(entitlement: Option<i64>, items: Vec<ItemReport>) -> Self {
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

    pub(crate) fn tally(&mut self) {
        let count = |s| self.items.iter().filter(|i| i.status == s).count();
        self.ok = count(ItemStatus::Ok);
        self.refused = count(ItemStatus::Refused);
        self.errors = count(ItemStatus::Error);
        self.new_seats = self.items.iter().filter(|i| i.status == ItemStatus::Ok && i.seat == Some(Seat::New)).count();
        self.existing = self.items.iter().filter(|i| i.status == ItemStatus::Ok && i.existing).count();
        self.signed = self.items.iter().filter(|i| i.issued.is_some() && !i.existing).count();
    }
}

/// The report line of item `slot` before anything is decided.
pub(crate) fn blank_item(slot: usize, source: String) -> ItemReport {
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
