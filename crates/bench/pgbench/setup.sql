-- The probe for the database's own single-row insert commit rate: a row about as wide as
-- a password reset, one index besides the key.
DROP TABLE IF EXISTS commit_probe;
CREATE TABLE commit_probe (
    id          bigserial   PRIMARY KEY,
    email       text        NOT NULL,
    digest      bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX commit_probe_email_idx ON commit_probe (email, created_at);
