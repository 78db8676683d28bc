-- Grows a migrated pwreset database to 1 million customers and 10 million password resets
-- (test mode), for `pwreset-bench --scale`. Ids are ordered UUIDs so the primary keys grow at
-- the right edge, as UUIDv7 ids do in production. Every seeded reset is already revoked,
-- so the benchmark's own resets behave as in a live system.
\set ON_ERROR_STOP on
INSERT INTO customers (id, mode, email, email_normalized, created_at, updated_at)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'test',
       'scale' || i || '@example.com', 'scale' || i || '@example.com',
       now() - make_interval(secs => 1000000 - i), now()
FROM generate_series(1, 1000000) AS i;

INSERT INTO password_resets (id, mode, customer_id, customer_email, email_normalized,
    token_digest, expires_at, invalidated_at, failed_attempts, reference, created_at, updated_at)
SELECT ('00000001-0000-7000-8000-' || lpad(to_hex(r), 12, '0'))::uuid, 'test',
       ('00000000-0000-7000-8000-' || lpad(to_hex(1 + r % 1000000), 12, '0'))::uuid,
       'scale' || (1 + r % 1000000) || '@example.com', 'scale' || (1 + r % 1000000) || '@example.com',
       sha256(('scale-token-' || r)::bytea),
       now() - interval '1 hour', now() - interval '2 hours', 0, 'ref-' || (r % 1000),
       now() - make_interval(secs => 10000000 - r), now() - interval '2 hours'
FROM generate_series(1, 10000000) AS r;

ANALYZE customers;
ANALYZE password_resets;
