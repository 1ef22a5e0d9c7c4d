//! The ledger schema and its versioned migrations.
//!
//! `PRAGMA user_version` holds the schema version; `PRAGMA application_id`
//! marks the file as a tka ledger. Migrations run in order, each in its own
//! `BEGIN IMMEDIATE` transaction, and only forwards: a ledger written by a
//! newer tka (a higher version) is refused, never downgraded.

/// `PRAGMA application_id` of a tka ledger ("TKAL").
pub const APPLICATION_ID: i64 = 0x544b_414c;

/// The schema version this tka writes.
pub const SCHEMA_VERSION: i64 = 1;

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
];
