-- Customers for the write-cost runs (pwreset-bench --write-costs): bench0..bench{n-1},
-- as the benchmark's API seeding makes them, with no resets yet.
\set ON_ERROR_STOP on
TRUNCATE customers CASCADE;
TRUNCATE reset_events;
INSERT INTO customers (id, mode, email, email_normalized, created_at, updated_at)
SELECT gen_random_uuid(), 'test', 'bench' || i || '@example.com', 'bench' || i || '@example.com',
       now(), now()
FROM generate_series(0, :customers - 1) AS i;
ANALYZE customers;
