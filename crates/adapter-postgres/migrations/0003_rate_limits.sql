-- Fixed-window rate-limit counters, shared by every instance. Keys never hold a raw email:
-- addresses are keyed-hashed before they become part of a key.

CREATE TABLE rate_limits (
    key           text        NOT NULL,
    window_start  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    count         bigint      NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE INDEX rate_limits_expires_idx ON rate_limits (expires_at);
