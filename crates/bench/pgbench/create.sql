-- What Postgres alone does for one "create reset (token delivery)": the service's two
-- statements (crates/adapter-sql: the customer lookup by normalized email, then the
-- one-statement revoke + insert + events), with the same customers and row shapes, driven
-- by pgbench instead of the service. Ids are time-ordered like the service's UUIDv7s.
-- Keep in step with resets.rs (CREATE_PG) and customers.rs (find_by_email).
\set n random(0, :customers - 1)
SELECT id, mode, email, password_hash, reference, reference_origin, metadata, created_at, updated_at
  FROM customers WHERE mode = 'test' AND email_normalized = 'bench' || :n || '@example.com' \gset c_
WITH revoked AS (UPDATE password_resets SET invalidated_at = now(), updated_at = now()
      WHERE mode = 'test' AND customer_id = :c_id::uuid AND reset_password_at IS NULL
      AND invalidated_at IS NULL RETURNING id),
  revoked_events AS (INSERT INTO reset_events (id, reset_id, mode, kind, reason, client_ip, created_at)
      SELECT gen_random_uuid(), id, 'test', 'revoked', 'superseded', NULL, now() FROM revoked),
  new_reset AS (INSERT INTO password_resets (id, mode, customer_id, customer_email, token_digest,
      expires_at, reset_password_at, invalidated_at, failed_attempts, reference, reference_origin,
      metadata, created_at, updated_at, email_normalized)
      VALUES ((lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
               || substr(md5(random()::text), 1, 20))::uuid,
              'test', :c_id::uuid, :c_email, decode(md5(random()::text) || md5(random()::text), 'hex'),
              now() + interval '1 hour', NULL, NULL, 0, NULL, NULL, NULL, now(), now(), :c_email)
      RETURNING id)
INSERT INTO reset_events (id, reset_id, mode, kind, reason, client_ip, created_at)
  SELECT (lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
          || substr(md5(random()::text), 1, 20))::uuid,
         id, 'test', 'requested', NULL, NULL, now() FROM new_reset;
