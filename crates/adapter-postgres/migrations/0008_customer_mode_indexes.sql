-- A customer's resets and sessions by customer and mode, in one index each.
--
-- Revoking a customer's outstanding resets (every create, every completion) and ending
-- their sessions (every completion) filter on mode and customer_id. With an index on
-- customer_id alone, a cached generic plan could pair it with an index that leads with
-- mode (BitmapAnd), and `mode = $1` matches every row of the mode: in the benchmark one
-- create in six read every reset of the table through password_resets_mode_reference_idx
-- (80 million index entries for 65 thousand creates), and completions read every live
-- session through sessions_expires_idx. One index on both columns answers both
-- conditions, so no plan gains anything by adding another. It still serves the cascades
-- from a deleted customer (customer_id leads). Building them locks writes to each table
-- for the build: seconds per ten million rows.
CREATE INDEX password_resets_customer_mode_idx ON password_resets (customer_id, mode);
DROP INDEX password_resets_customer_idx;
CREATE INDEX sessions_customer_mode_idx ON sessions (customer_id, mode);
DROP INDEX sessions_customer_idx;
