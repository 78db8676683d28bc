-- The transactional outbox, and an event trail that outlives deleted resets (SQLite form:
-- dropping a foreign key means rebuilding the table).

CREATE TABLE reset_events_new (
    id          TEXT    PRIMARY KEY,
    reset_id    TEXT    NOT NULL,
    mode        TEXT    NOT NULL CHECK (mode IN ('test', 'live')),
    kind        TEXT    NOT NULL,
    reason      TEXT,
    client_ip   TEXT,
    created_at  INTEGER NOT NULL
);
INSERT INTO reset_events_new SELECT id, reset_id, mode, kind, reason, client_ip, created_at FROM reset_events;
DROP TABLE reset_events;
ALTER TABLE reset_events_new RENAME TO reset_events;
CREATE INDEX reset_events_reset_idx ON reset_events (reset_id, created_at);
CREATE INDEX reset_events_created_idx ON reset_events (created_at);

CREATE TABLE outbox (
    id               TEXT    PRIMARY KEY,
    mode             TEXT    NOT NULL CHECK (mode IN ('test', 'live')),
    reset_id         TEXT    NOT NULL,
    kind             TEXT    NOT NULL CHECK (kind IN ('reset_requested', 'password_changed', 'webhook')),
    topic            TEXT,
    recipient        TEXT,
    -- The raw token of a pending reset mail; erased once delivered or dead.
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
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_finished_idx ON outbox (finished_at) WHERE status <> 'pending';
