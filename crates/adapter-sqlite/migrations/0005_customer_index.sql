-- Index every reset by customer, not only the outstanding ones: the cascade from a deleted
-- customer (`DELETE ... WHERE customer_id = ?`) cannot use the partial index and scanned
-- the whole table. The plain index serves the cascade and the revoke query.
CREATE INDEX password_resets_customer_idx ON password_resets (customer_id);
DROP INDEX password_resets_outstanding_idx;
