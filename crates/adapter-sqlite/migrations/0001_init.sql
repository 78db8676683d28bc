-- Customers, password resets and their event trail (SQLite form of the Postgres schema).
-- Ids are canonical hyphenated UUID text, timestamps are integer Unix milliseconds,
-- metadata is JSON text. Only keyed token digests are stored, never raw tokens.

CREATE TABLE customers (
    id                TEXT    PRIMARY KEY,
    mode              TEXT    NOT NULL CHECK (mode IN ('test', 'live')),
    email             TEXT    NOT NULL,
    email_normalized  TEXT    NOT NULL,
    password_hash     TEXT,
    reference         TEXT,
    reference_origin  TEXT,
    metadata          TEXT    CHECK (metadata IS NULL OR json_valid(metadata)),
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    CONSTRAINT customers_mode_email_key UNIQUE (mode, email_normalized)
);
CREATE INDEX customers_mode_created_idx   ON customers (mode, created_at, id);
CREATE INDEX customers_mode_reference_idx ON customers (mode, reference);

CREATE TABLE password_resets (
    id                 TEXT    PRIMARY KEY,
    mode               TEXT    NOT NULL CHECK (mode IN ('test', 'live')),
    customer_id        TEXT    NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    customer_email     TEXT    NOT NULL,
    email_normalized   TEXT    NOT NULL,
    token_digest       BLOB    NOT NULL CHECK (length(token_digest) = 32),
    expires_at         INTEGER NOT NULL,
    reset_password_at  INTEGER,
    invalidated_at     INTEGER,
    failed_attempts    INTEGER NOT NULL DEFAULT 0,
    reference          TEXT,
    reference_origin   TEXT,
    metadata           TEXT    CHECK (metadata IS NULL OR json_valid(metadata)),
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE UNIQUE INDEX password_resets_token_digest_key ON password_resets (token_digest);
CREATE INDEX password_resets_mode_email_idx     ON password_resets (mode, email_normalized, created_at);
CREATE INDEX password_resets_mode_reference_idx ON password_resets (mode, reference);
CREATE INDEX password_resets_mode_created_idx   ON password_resets (mode, created_at, id);
CREATE INDEX password_resets_outstanding_idx    ON password_resets (customer_id)
    WHERE reset_password_at IS NULL AND invalidated_at IS NULL;

CREATE TABLE reset_events (
    id          TEXT    PRIMARY KEY,
    reset_id    TEXT    NOT NULL REFERENCES password_resets (id) ON DELETE CASCADE,
    mode        TEXT    NOT NULL CHECK (mode IN ('test', 'live')),
    kind        TEXT    NOT NULL,
    reason      TEXT,
    client_ip   TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX reset_events_reset_idx ON reset_events (reset_id, created_at);
