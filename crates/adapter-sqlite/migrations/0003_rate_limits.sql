-- Fixed-window rate-limit counters. Keys never hold a raw email: addresses are
-- keyed-hashed before they become part of a key.

CREATE TABLE rate_limits (
    key           TEXT    NOT NULL,
    window_start  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE INDEX rate_limits_expires_idx ON rate_limits (expires_at);
