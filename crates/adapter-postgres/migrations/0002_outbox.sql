-- The transactional outbox, and an event trail that outlives deleted resets (events of
-- deleted resets stay for the audit trail until the retention job purges them).

ALTER TABLE reset_events DROP CONSTRAINT reset_events_reset_id_fkey;

CREATE TABLE outbox (
    id               uuid        PRIMARY KEY,
    mode             text        NOT NULL CHECK (mode IN ('test', 'live')),
    reset_id         uuid        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('reset_requested', 'password_changed', 'webhook')),
    topic            text,
    recipient        text,
    -- The raw token of a pending reset mail; erased once delivered or dead.
    secret           text,
    payload          jsonb       NOT NULL,
    status           text        NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         bigint      NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    claimed_until    timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    CHECK (status = 'pending' OR secret IS NULL)
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_finished_idx ON outbox (finished_at) WHERE status <> 'pending';
CREATE INDEX reset_events_created_idx ON reset_events (created_at);
