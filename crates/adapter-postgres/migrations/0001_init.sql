-- Customers, password resets and their event trail. Every row carries its mode and every
-- query is scoped by it. Only keyed token digests are stored, never raw tokens.
-- Text that is filtered or sorted uses the "C" collation: byte order, the same on every
-- server locale and the same as SQLite, so pages and ranges never depend on the host.

CREATE TABLE customers (
    id                uuid        PRIMARY KEY,
    mode              text        NOT NULL CHECK (mode IN ('test', 'live')),
    email             text        NOT NULL,
    email_normalized  text COLLATE "C"        NOT NULL,
    password_hash     text,
    reference         text COLLATE "C",
    reference_origin  text COLLATE "C",
    metadata          jsonb,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    CONSTRAINT customers_mode_email_key UNIQUE (mode, email_normalized)
);
CREATE INDEX customers_mode_created_idx   ON customers (mode, created_at, id);
CREATE INDEX customers_mode_reference_idx ON customers (mode, reference);

CREATE TABLE password_resets (
    id                 uuid        PRIMARY KEY,
    mode               text        NOT NULL CHECK (mode IN ('test', 'live')),
    customer_id        uuid        NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    customer_email     text        NOT NULL,
    email_normalized   text COLLATE "C"        NOT NULL,
    token_digest       bytea       NOT NULL CHECK (length(token_digest) = 32),
    expires_at         timestamptz NOT NULL,
    reset_password_at  timestamptz,
    invalidated_at     timestamptz,
    failed_attempts    bigint      NOT NULL DEFAULT 0,
    reference          text COLLATE "C",
    reference_origin   text COLLATE "C",
    metadata           jsonb,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE UNIQUE INDEX password_resets_token_digest_key ON password_resets (token_digest);
CREATE INDEX password_resets_mode_email_idx     ON password_resets (mode, email_normalized, created_at);
CREATE INDEX password_resets_mode_reference_idx ON password_resets (mode, reference);
CREATE INDEX password_resets_mode_created_idx   ON password_resets (mode, created_at, id);
CREATE INDEX password_resets_outstanding_idx    ON password_resets (customer_id)
    WHERE reset_password_at IS NULL AND invalidated_at IS NULL;

CREATE TABLE reset_events (
    id          uuid        PRIMARY KEY,
    reset_id    uuid        NOT NULL REFERENCES password_resets (id) ON DELETE CASCADE,
    mode        text        NOT NULL CHECK (mode IN ('test', 'live')),
    kind        text        NOT NULL,
    reason      text,
    client_ip   text,
    created_at  timestamptz NOT NULL
);
CREATE INDEX reset_events_reset_idx ON reset_events (reset_id, created_at);
