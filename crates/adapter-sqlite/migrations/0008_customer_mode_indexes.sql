-- A customer's resets and sessions by customer and mode, in one index each (SQLite form
-- of the Postgres migration, which explains why).
CREATE INDEX password_resets_customer_mode_idx ON password_resets (customer_id, mode);
DROP INDEX password_resets_customer_idx;
CREATE INDEX sessions_customer_mode_idx ON sessions (customer_id, mode);
DROP INDEX sessions_customer_idx;
