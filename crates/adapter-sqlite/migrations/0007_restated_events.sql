-- A reset's row restates three of its events: `requested` (at created_at), `completed`
-- (at reset_password_at) and `revoked` (at invalidated_at); the row now keeps what each
-- adds (who asked, who completed, why it was revoked) instead of an event row of its own
-- (SQLite form of the Postgres migration, which explains why).

ALTER TABLE password_resets ADD COLUMN requested_ip TEXT;
ALTER TABLE password_resets ADD COLUMN completed_ip TEXT;
ALTER TABLE password_resets ADD COLUMN invalidated_reason TEXT;

UPDATE password_resets SET
    requested_ip = (SELECT e.client_ip FROM reset_events e
                     WHERE e.reset_id = password_resets.id AND e.kind = 'requested'),
    completed_ip = (SELECT e.client_ip FROM reset_events e
                     WHERE e.reset_id = password_resets.id AND e.kind = 'completed'),
    invalidated_reason = (SELECT e.reason FROM reset_events e
                           WHERE e.reset_id = password_resets.id AND e.kind = 'revoked');
DELETE FROM reset_events
    WHERE kind IN ('requested', 'completed', 'revoked')
      AND reset_id IN (SELECT id FROM password_resets);
