-- Sign-in: API clients, the sessions they open and their refresh tokens (keyed digests
-- only), and the customer's password version, which every change of password raises so
-- that sessions opened before it have ended (SQLite form of the Postgres schema).

ALTER TABLE customers ADD COLUMN password_version INTEGER NOT NULL DEFAULT 0;

CREATE TABLE clients (
    id             TEXT    PRIMARY KEY,
    client_id      TEXT    NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('integration', 'sales_channel')),
    mode           TEXT    NOT NULL CHECK (mode IN ('test', 'live')),
    name           TEXT    NOT NULL,
    secret_digest  BLOB    CHECK (secret_digest IS NULL OR length(secret_digest) = 32),
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    CONSTRAINT clients_client_id_key UNIQUE (client_id)
);

CREATE TABLE sessions (
    id                TEXT    PRIMARY KEY,
    client            TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    mode              TEXT    NOT NULL CHECK (mode IN ('test', 'live')),
    customer_id       TEXT    REFERENCES customers (id) ON DELETE CASCADE,
    password_version  INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    revoked_at        INTEGER
);
-- A customer's sessions: revoked on a new password, deleted with the customer.
CREATE INDEX sessions_customer_idx ON sessions (customer_id);
-- The retention purge: sessions that expired, or were revoked, before its cutoff.
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
CREATE INDEX sessions_revoked_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Every refresh token a session had: the current one (used_at NULL) and the rotated ones,
-- kept so that presenting one again is recognised as reuse.
CREATE TABLE refresh_tokens (
    digest      BLOB    PRIMARY KEY CHECK (length(digest) = 32),
    session_id  TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
-- The cascade from a purged or deleted session.
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
