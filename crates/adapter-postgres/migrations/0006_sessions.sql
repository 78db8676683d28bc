-- Sign-in: API clients, the sessions they open and their refresh tokens (keyed digests
-- only), and the customer's password version, which every change of password raises so
-- that sessions opened before it have ended.

ALTER TABLE customers ADD COLUMN password_version bigint NOT NULL DEFAULT 0;

CREATE TABLE clients (
    id             uuid        PRIMARY KEY,
    client_id      text COLLATE "C" NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('integration', 'sales_channel')),
    mode           text        NOT NULL CHECK (mode IN ('test', 'live')),
    name           text        NOT NULL,
    secret_digest  bytea       CHECK (secret_digest IS NULL OR length(secret_digest) = 32),
    created_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    CONSTRAINT clients_client_id_key UNIQUE (client_id)
);

CREATE TABLE sessions (
    id                uuid        PRIMARY KEY,
    client            uuid        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    mode              text        NOT NULL CHECK (mode IN ('test', 'live')),
    customer_id       uuid        REFERENCES customers (id) ON DELETE CASCADE,
    password_version  bigint      NOT NULL,
    created_at        timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    revoked_at        timestamptz
);
-- A customer's sessions: revoked on a new password, deleted with the customer.
CREATE INDEX sessions_customer_idx ON sessions (customer_id);
-- The retention purge: sessions that expired, or were revoked, before its cutoff.
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
CREATE INDEX sessions_revoked_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Every refresh token a session had: the current one (used_at NULL) and the rotated ones,
-- kept so that presenting one again is recognised as reuse.
CREATE TABLE refresh_tokens (
    digest      bytea       PRIMARY KEY CHECK (length(digest) = 32),
    session_id  uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
-- The cascade from a purged or deleted session.
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
