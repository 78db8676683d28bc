-- Self-service requests travel through the outbox too.
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('reset_requested', 'password_changed', 'webhook', 'self_service_request'));
