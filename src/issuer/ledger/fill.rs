//! Synthetic tokens for benchmarks that need a large ledger.
//!
//! The rows are made so that filling stays an append: serials, CMIDs and
//! times all grow with the row number, so every B-tree (the table, the
//! serial key, `seats`, `tokens_machine`, `tokens_expires`,
//! `tokens_entitlement_issued`) is extended at its right edge instead of
//! being modified at random pages. A serial is made the way issuance makes
//! one ([`crate::issuer::signer::SerialSequence`]: the issue time, then 64
//! random bits), so a real token issued later sorts after every synthetic
//! one, as it would in a real ledger. CMIDs are spread evenly over their
//! 80 bits (`i × 2⁸⁰/count` plus a random offset below the next one), so a
//! real machine lands between synthetic ones.

use super::sql::sqlite_err;
use super::{Entitlement, Ledger, NewEntitlement};
use crate::core::error::{Error, Result};
use crate::core::machine::cmid_from_value;
use crate::issuer::signer::serial_text;

/// Rows per transaction: bounds the write-ahead log (each commit is
/// checkpointed before the next one reuses the log).
const FILL_CHUNK: u64 = 100_000;

/// Seconds between two synthetic tokens' issue times.
const FILL_SPACING: i64 = 1;

/// Lifetime of a synthetic token: a year, so none falls due for renewal
/// within weeks.
const FILL_LIFETIME: i64 = 365 * 86_400;

/// A small fast generator (SplitMix64) seeded from the operating system:
/// the rows need spread, not secrecy.
struct Mix(u64);

impl Mix {
    fn new() -> Mix {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("operating system random number generator");
        Mix(u64::from_le_bytes(b))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }

    /// `n` random bytes as lower-case hex, appended to `out`.
    fn hex(&mut self, n: usize, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut left = n;
        while left > 0 {
            let v = self.next();
            for k in 0..left.min(8) {
                let b = (v >> (8 * k)) as u8;
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
            left = left.saturating_sub(8);
        }
    }
}

impl Ledger {
    /// Fills the ledger with `count` synthetic tokens (and their seats)
    /// under a new entitlement named `name` (product `bench-fill`), without
    /// signing: for benchmarks that need a large ledger. Token `i` (from 0)
    /// was issued at `now - count + i` seconds and expires a year later;
    /// its serial is made as issuance makes one at that time, CMIDs are
    /// spread over their whole space in increasing order and well-formed, request digests and nonces random of
    /// their real size. The token text is ~1.2 KB of random hex like a real
    /// token's (~2.2 KB of disk per token), or with `lean` 49 bytes (~0.5 KB
    /// of disk per token; no query looks into the text). Commits every
    /// 100,000 tokens, the entitlement's count with them. SQLite ledgers
    /// only.
    #[doc(hidden)]
    pub fn bench_fill(&mut self, name: &str, count: u64, lean: bool, now: i64) -> Result<Entitlement> {
        if self.sqlite().is_none() {
            return Err(Error::Usage("synthetic filling is for SQLite ledgers".into()));
        }
        let machines = u32::try_from(count).map_err(|_| {
            Error::Usage(format!("{count} synthetic tokens: an entitlement counts at most {}", u32::MAX))
        })?;
        let ent = self.add_entitlement(
            &NewEntitlement { product: "bench-fill".into(), machines, name: Some(name.into()), ..Default::default() },
            now,
        )?;
        let path = self.path().to_path_buf();
        let conn = self.sqlite().expect("an SQLite ledger");
        let err = |e| sqlite_err(&path, e);
        conn.execute("INSERT OR IGNORE INTO jws_headers (header) VALUES ('bench-fill')", []).map_err(err)?;
        let header: i64 =
            conn.query_row("SELECT id FROM jws_headers WHERE header = 'bench-fill'", [], |r| r.get(0)).map_err(err)?;
        let mut mix = Mix::new();
        let n = u128::from(count.max(1));
        let cmid_step = (1u128 << 80) / n;
        let first = now - i64::try_from(count).unwrap_or(i64::MAX).saturating_mul(FILL_SPACING);
        let mut start = 0;
        while start < count {
            let end = count.min(start + FILL_CHUNK);
            conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
            let r = (|| -> rusqlite::Result<()> {
                let mut seat =
                    conn.prepare_cached("INSERT INTO seats (entitlement_id, cmid, counted_at) VALUES (?1, ?2, ?3)")?;
                let mut token = conn.prepare_cached(
                    "INSERT INTO tokens (serial, entitlement_id, product, cmid, components, issued_at, not_before,
                                         expires, signer, header_id, body, request_nonce, request_digest)
                     VALUES (?1, ?2, 'bench-fill', ?3, '[]', ?4, ?4, ?5, 'bench-fill', ?6, ?7, ?8, ?9)",
                )?;
                let (mut body, mut nonce, mut digest) = (String::new(), String::new(), String::new());
                for i in start..end {
                    let i128 = u128::from(i);
                    let cmid = cmid_from_value(i128 * cmid_step + mix.next128() % cmid_step);
                    let issued = first + i64::try_from(i).unwrap_or(i64::MAX) * FILL_SPACING;
                    // One token a second: the second's first serial.
                    let serial = serial_text(u64::try_from(issued).unwrap_or(0) << 32, mix.next());
                    body.clear();
                    nonce.clear();
                    digest.clear();
                    let (payload, signature) = if lean { (16, 8) } else { (350, 256) };
                    mix.hex(payload, &mut body);
                    body.push('.');
                    mix.hex(signature, &mut body);
                    mix.hex(8, &mut nonce);
                    mix.hex(32, &mut digest);
                    seat.execute(rusqlite::params![ent.id, cmid, issued])?;
                    token.execute(rusqlite::params![
                        serial,
                        ent.id,
                        cmid,
                        issued,
                        issued + FILL_LIFETIME,
                        header,
                        body,
                        nonce,
                        digest
                    ])?;
                }
                conn.execute(
                    "UPDATE entitlements SET used = ?1 WHERE id = ?2",
                    rusqlite::params![i64::from(u32::try_from(end).unwrap_or(u32::MAX)), ent.id],
                )?;
                Ok(())
            })()
            .and_then(|()| conn.execute_batch("COMMIT"));
            if let Err(e) = r {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(err(e));
            }
            start = end;
        }
        // Leave the log empty: the file alone holds the ledger.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(err)?;
        self.entitlement_by_id(ent.id)
    }
}

#[cfg(test)]
mod tests {
    use crate::core::machine::validate_cmid;
    use crate::issuer::ledger::sql::args;
    use crate::issuer::ledger::Ledger;

    /// Synthetic tokens grow with their issue time in serial and CMID
    /// (every fill is an append), serials made as issuance makes them at
    /// the token's issue time, CMIDs spread over their whole space, carry
    /// well-formed CMIDs and a seat each, and the ledger opens again.
    #[test]
    fn synthetic_tokens_are_ordered_spread_and_counted() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("ledger.sqlite");
        let mut l = Ledger::open(&path).unwrap();
        let e = l.bench_fill("fill", 16, true, 1_000_000).unwrap();
        assert_eq!((e.used, e.machines), (16, 16));
        let rows = l
            .db()
            .query(
                "SELECT serial, cmid, issued_at, expires, length(body) FROM tokens WHERE entitlement_id = ?1
                 ORDER BY issued_at",
                args![e.id],
            )
            .unwrap();
        assert_eq!(rows.len(), 16);
        for (i, r) in rows.iter().enumerate() {
            let (serial, cmid) = (r.text(0).unwrap(), r.text(1).unwrap());
            // Token i's serial starts with its issue time and counter 0 (as
            // the first serial issuance makes in that second); its CMID with
            // Crockford symbol 2i or 2i + 1 (32 symbols, 16 tokens).
            assert_eq!(serial.len(), 32);
            assert_eq!(serial[..16], format!("{:08x}00000000", 1_000_000 - 16 + i), "{serial}");
            assert!(serial.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')), "{serial}");
            let first = "0123456789ABCDEFGHJKMNPQRSTVWXYZ".find(&cmid[..1]).unwrap();
            assert_eq!(first / 2, i, "{cmid}");
            assert!(validate_cmid(&cmid), "{cmid}");
            assert_eq!(r.i64(2).unwrap(), 1_000_000 - 16 + i as i64);
            assert_eq!(r.i64(3).unwrap() - r.i64(2).unwrap(), 365 * 86_400);
            assert_eq!(r.i64(4).unwrap(), 49);
        }
        let seats = l.seats(e.id).unwrap();
        assert_eq!(seats.len(), 16);
        drop(l);
        assert_eq!(Ledger::open_existing(&path).unwrap().token_count().unwrap(), 16);
    }

    /// Without `lean`, the token text has a real token's size.
    #[test]
    fn full_synthetic_tokens_have_a_real_texts_size() {
        let d = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&d.path().join("ledger.sqlite")).unwrap();
        l.bench_fill("fill", 2, false, 1_000_000).unwrap();
        let r = l.db().query_one("SELECT min(length(body)), max(length(body)) FROM tokens", &[]).unwrap();
        assert_eq!((r.i64(0).unwrap(), r.i64(1).unwrap()), (1213, 1213));
    }
}
