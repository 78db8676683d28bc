-- create's statement as it was before the reset's row restated its events: the same
-- lookup, revocation and insert, plus a `revoked` event row per revoked reset and the
-- `requested` event row. Runs on today's schema (the restating columns stay NULL), so
-- the difference to ../create.sql is what the two event rows cost.
\set n random(0, :customers - 1)
WITH customer AS (SELECT id, email FROM customers
      WHERE mode = 'test' AND email_normalized = 'bench' || :n || '@example.com'),
  revoked AS (UPDATE password_resets SET invalidated_at = now(), updated_at = now()
      WHERE mode = 'test' AND customer_id = (SELECT id FROM customer)
      AND reset_password_at IS NULL AND invalidated_at IS NULL RETURNING id),
  revoked_events AS (INSERT INTO reset_events (id, reset_id, mode, kind, reason, client_ip, created_at)
      SELECT gen_random_uuid(), id, 'test', 'revoked', 'superseded', NULL, now() FROM revoked),
  new_reset AS (INSERT INTO password_resets (id, mode, customer_id, customer_email, token_digest,
      expires_at, reset_password_at, invalidated_at, failed_attempts, reference, reference_origin,
      metadata, created_at, updated_at, email_normalized)
      SELECT (lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
              || substr(md5(random()::text), 1, 20))::uuid,
             'test', customer.id, customer.email,
             decode(md5(random()::text) || md5(random()::text), 'hex'),
             now() + interval '1 hour', NULL, NULL, 0, NULL, NULL, NULL, now(), now(),
             'bench' || :n || '@example.com'
        FROM customer RETURNING id),
  requested AS (INSERT INTO reset_events (id, reset_id, mode, kind, reason, client_ip, created_at)
      SELECT (lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
              || substr(md5(random()::text), 1, 20))::uuid,
             id, 'test', 'requested', NULL, NULL, now() FROM new_reset)
SELECT id, email FROM customer;
