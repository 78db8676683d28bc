-- Index every reset by customer, not only the outstanding ones.
--
-- Deleting a customer cascades to their resets with `DELETE ... WHERE customer_id = $1`,
-- which the partial index (outstanding resets only) cannot serve: Postgres scanned the
-- whole table for each deleted customer. A plain index serves the cascade and the revoke
-- query (a customer has few resets; the state conditions filter them), and updates of
-- reset_password_at and invalidated_at no longer touch an index predicate, so they can be
-- heap-only (HOT). Building it locks writes to password_resets for the build: seconds
-- per ten million rows.
CREATE INDEX password_resets_customer_idx ON password_resets (customer_id);
DROP INDEX password_resets_outstanding_idx;
