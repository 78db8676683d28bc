-- What Postgres alone does for one "retrieve by id": the service's select of a reset by
-- mode and id (crates/adapter-sql resets.rs, find). pgbench cannot hold a list of UUIDs,
-- so the id comes from the numbered copy made by ids.sql, looked up in the same statement:
-- one small extra index probe, which makes this ceiling slightly lower than the real one.
\set n random(1, :ids)
SELECT id, mode, customer_id, customer_email, token_digest, expires_at, reset_password_at,
       invalidated_at, failed_attempts, reference, reference_origin, metadata, created_at, updated_at
  FROM password_resets WHERE mode = 'test' AND id = (SELECT id FROM bench_ids WHERE n = :n);
