-- What Postgres alone does for one "create reset (token delivery)": the service's one
-- statement (crates/adapter-postgres dialect.rs, create_for_email_statement: customer
-- lookup by normalized address, revocation of the customer's outstanding reset with its
-- reason, the new reset with its requester's address; the row restates the `requested`
-- and `revoked` events, so no event rows), with the same customers and row shapes, driven
-- by pgbench instead of the service. Ids are time-ordered like the service's UUIDv7s.
-- Keep in step with dialect.rs.
\set n random(0, :customers - 1)
WITH customer AS (SELECT id, email FROM customers
      WHERE mode = 'test' AND email_normalized = 'bench' || :n || '@example.com'),
  revoked AS (UPDATE password_resets SET invalidated_at = now(), updated_at = now(),
      invalidated_reason = 'superseded'
      WHERE mode = 'test' AND customer_id = (SELECT id FROM customer)
      AND reset_password_at IS NULL AND invalidated_at IS NULL),
  new_reset AS (INSERT INTO password_resets (id, mode, customer_id, customer_email, token_digest,
      expires_at, reset_password_at, invalidated_at, failed_attempts, reference, reference_origin,
      metadata, created_at, updated_at, email_normalized, requested_ip)
      SELECT (lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
              || substr(md5(random()::text), 1, 20))::uuid,
             'test', customer.id, customer.email,
             decode(md5(random()::text) || md5(random()::text), 'hex'),
             now() + interval '1 hour', NULL, NULL, 0, NULL, NULL, NULL, now(), now(),
             'bench' || :n || '@example.com', NULL
        FROM customer)
SELECT id, email FROM customer;
