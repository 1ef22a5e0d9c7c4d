//! The ledger schema and its versioned migrations.
//!
//! `PRAGMA user_version` holds the schema version; `PRAGMA application_id`
//! marks the file as a tka ledger. Migrations run in order, each in its own
//! `BEGIN IMMEDIATE` transaction, and only forwards: a ledger written by a
//! newer tka (a higher version) is refused, never downgraded.

/// `PRAGMA application_id` of a tka ledger ("TKAL").
pub const APPLICATION_ID: i64 = 0x544b_414c;

/// The schema version this tka writes.
pub const SCHEMA_VERSION: i64 = 4;

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the first schema.
    r#"
CREATE TABLE entitlements (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT UNIQUE,
    product     TEXT NOT NULL,
    machines    INTEGER NOT NULL CHECK (machines >= 0),
    used        INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    features    TEXT NOT NULL DEFAULT '[]',
    expires     INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- One row per counted machine (distinct CMID) of an entitlement.
-- entitlements.used is the number of its rows, kept in the same transactions.
CREATE TABLE seats (
    entitlement_id INTEGER NOT NULL REFERENCES entitlements(id),
    cmid           TEXT NOT NULL,
    counted_at     INTEGER NOT NULL,
    PRIMARY KEY (entitlement_id, cmid)
) WITHOUT ROWID;

-- Protected headers (alg, typ, kid, x5c) are the same for every token of a
-- signer: stored once, the token text is header || '.' || body.
CREATE TABLE jws_headers (
    id      INTEGER PRIMARY KEY,
    header  TEXT NOT NULL UNIQUE
);

CREATE TABLE tokens (
    serial          TEXT PRIMARY KEY,
    entitlement_id  INTEGER REFERENCES entitlements(id),
    product         TEXT NOT NULL,
    cmid            TEXT NOT NULL,
    components      TEXT NOT NULL,
    issued_at       INTEGER NOT NULL,
    not_before      INTEGER NOT NULL,
    expires         INTEGER,
    signer          TEXT NOT NULL,
    header_id       INTEGER NOT NULL REFERENCES jws_headers(id),
    body            TEXT NOT NULL,
    request_nonce   TEXT,
    request_digest  TEXT,
    replaces        TEXT,
    released_at     INTEGER
);
CREATE INDEX tokens_machine ON tokens(cmid, product);
CREATE INDEX tokens_expires ON tokens(expires);
CREATE INDEX tokens_request ON tokens(request_digest) WHERE request_digest IS NOT NULL;
CREATE INDEX tokens_entitlement ON tokens(entitlement_id, cmid);

CREATE TABLE releases (
    id              INTEGER PRIMARY KEY,
    entitlement_id  INTEGER NOT NULL REFERENCES entitlements(id),
    cmid            TEXT NOT NULL,
    serial          TEXT REFERENCES tokens(serial),
    reason          TEXT NOT NULL,
    released_at     INTEGER NOT NULL
);
CREATE INDEX releases_machine ON releases(cmid);

CREATE TABLE revocations (
    serial      TEXT PRIMARY KEY REFERENCES tokens(serial),
    reason      TEXT NOT NULL,
    revoked_at  INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // 1 -> 2: fewer indexes keyed by random values, so an insert into a large
    // ledger dirties fewer pages. The existing-token lookup of a batch goes
    // through the machine (tokens_machine) and filters on the request digest;
    // tokens of an entitlement are found by (entitlement_id, issued_at),
    // which new rows of a batch extend in order.
    r#"
DROP INDEX tokens_request;
DROP INDEX tokens_entitlement;
CREATE INDEX tokens_entitlement_issued ON tokens(entitlement_id, issued_at);
"#,
    // 2 -> 3: an entitlement may allow weak bindings (no hardware anchor, no
    // explicit identity); off unless the administrator says so.
    r#"
ALTER TABLE entitlements ADD COLUMN allow_weak_binding INTEGER NOT NULL DEFAULT 0
    CHECK (allow_weak_binding IN (0, 1));
"#,
    // 3 -> 4: an entitlement may have a product key for online activation:
    // only its hash is stored (unique), and it can be disabled.
    r#"
ALTER TABLE entitlements ADD COLUMN key_hash TEXT;
ALTER TABLE entitlements ADD COLUMN key_disabled INTEGER NOT NULL DEFAULT 0 CHECK (key_disabled IN (0, 1));
CREATE UNIQUE INDEX entitlements_key ON entitlements(key_hash);
"#,
];

/// One object of a ledger's schema, as `sqlite_schema` lists it: type,
/// name, table and SQL text.
pub(crate) type SchemaObject = (String, String, String, Option<String>);

/// Every schema object of `conn` (tables, indexes, triggers, views, and
/// SQLite's own `sqlite_sequence` and automatic indexes), in a fixed order.
pub(crate) fn schema_objects(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<SchemaObject>> {
    let mut st = conn.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    rows.collect()
}

/// The schema objects a ledger of `version` (1..=[`SCHEMA_VERSION`]) holds:
/// what tka's own migrations create, applied to an empty in-memory
/// database. Computed once per process.
pub(crate) fn expected_objects(version: i64) -> &'static [SchemaObject] {
    static EXPECTED: std::sync::OnceLock<Vec<Vec<SchemaObject>>> = std::sync::OnceLock::new();
    let all = EXPECTED.get_or_init(|| {
        let conn = rusqlite::Connection::open_in_memory().expect("an in-memory SQLite database");
        let mut out = vec![Vec::new()];
        for sql in MIGRATIONS {
            conn.execute_batch(sql).expect("tka's own migrations apply");
            out.push(schema_objects(&conn).expect("sqlite_schema reads"));
        }
        out
    });
    usize::try_from(version).ok().and_then(|v| all.get(v)).map(Vec::as_slice).unwrap_or(&[])
}

/// The first difference between a ledger's schema objects and those its
/// version should have, in words ("an extra trigger \"t\""), or `None`.
pub(crate) fn schema_difference(found: &[SchemaObject], version: i64) -> Option<String> {
    let expected = expected_objects(version);
    if let Some(o) = found.iter().find(|o| !expected.contains(o)) {
        let same_name = expected.iter().any(|e| e.0 == o.0 && e.1 == o.1);
        return Some(if same_name {
            format!("its {} {:?} is not the one tka creates", o.0, o.1)
        } else {
            format!("it holds a {} {:?} tka did not create", o.0, o.1)
        });
    }
    expected.iter().find(|e| !found.contains(e)).map(|e| format!("its {} {:?} is missing", e.0, e.1))
}
