-- Self-service requests travel through the outbox too (SQLite: changing a CHECK means
-- rebuilding the table).
CREATE TABLE outbox_new (
    id               TEXT    PRIMARY KEY,
    mode             TEXT    NOT NULL CHECK (mode IN ('test', 'live')),
    reset_id         TEXT    NOT NULL,
    kind             TEXT    NOT NULL CHECK (kind IN ('reset_requested', 'password_changed', 'webhook', 'self_service_request')),
    topic            TEXT,
    recipient        TEXT,
    secret           TEXT,
    payload          TEXT    NOT NULL CHECK (json_valid(payload)),
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    claimed_until    INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    CHECK (status = 'pending' OR secret IS NULL)
);
INSERT INTO outbox_new SELECT id, mode, reset_id, kind, topic, recipient, secret, payload, status,
    attempts, next_attempt_at, claimed_until, last_error, created_at, finished_at FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_finished_idx ON outbox (finished_at) WHERE status <> 'pending';
