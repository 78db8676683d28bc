//! Postgres's dialect: the atomic writes as one statement each, of data-modifying CTEs.
//!
//! On a shared box every round trip costs two wake-ups and every commit an fsync wait, so
//! the hot writes are one statement instead of a transaction of six or more: all CTEs see
//! one snapshot and commit together. Each is the same write as the generic transactional
//! form in `pwreset_adapter_sql::atomic` (the storage contract suite runs both).
//!
//! No event row is written for what a reset's row restates (requested, completed,
//! revoked: see `pwreset_domain::RowTrail`): the reset insert carries the requester's
//! address, the completion update the completer's, the revocation its reason.

use async_trait::async_trait;
use pwreset_adapter_sql::atomic::{
    self, REFRESH_COLUMNS, detect_reuse, one_reset, one_session, push_completion_update,
    push_refresh_use, refresh_values,
};
use pwreset_adapter_sql::codec::{self, INSERT_COLUMNS};
use pwreset_adapter_sql::rows::{
    EVENT_COLUMNS, RESET_COLUMNS, RESET_TYPES, SESSION_COLUMNS, SESSION_TYPES, event_values,
    ip_value, json_of, reset_values, session_values, text_of,
};
use pwreset_adapter_sql::{Dialect, Driver, Sql, Ty, Val, db};
use pwreset_domain::AddressedReset;
use pwreset_domain::ports::{Completion, CompletionOutcome, StoreError};
use pwreset_domain::{
    ClientKey, EmailAddress, NewSession, OutboxMessage, PasswordReset, RefreshRecord, ResetDraft,
    ResetEvent, Rotation, Timestamp, TokenDigest,
};

/// The revocation of a customer's outstanding resets, as a CTE (`revoked`); the text
/// pieces are placeholders or SQL expressions.
struct Revocation<'a> {
    mode: &'a str,
    customer: &'a str,
    /// A reset that stays (the one being completed).
    keep: Option<&'a str>,
    at: &'a str,
    reason: &'static str,
    /// Extra condition on the revocation (` AND EXISTS (...)`), or empty.
    only_if: &'a str,
}

impl Revocation<'_> {
    /// The one spelling of a revocation on Postgres. A data-modifying CTE sees the
    /// statement's snapshot, so a reset inserted by the same statement is never revoked.
    fn push(&self, sql: &mut Sql) {
        sql.push("revoked AS (UPDATE password_resets SET invalidated_at = ")
            .push(self.at)
            .push(", updated_at = ")
            .push(self.at)
            .push(", invalidated_reason = ")
            .push_bind(self.reason)
            .push(" WHERE mode = ")
            .push(self.mode)
            .push(" AND customer_id = ")
            .push(self.customer);
        if let Some(keep) = self.keep {
            sql.push(" AND id <> ").push(keep);
        }
        sql.push(" AND reset_password_at IS NULL AND invalidated_at IS NULL")
            .push(self.only_if)
            .push(")");
    }
}

/// Revocation, the reset (with its requester's address) and the outbox messages in one
/// statement.
fn create_statement(reset: &PasswordReset, event: &ResetEvent, outbox: &[OutboxMessage]) -> Sql {
    let mut sql = Sql::new("WITH ");
    let mode = sql.bind(reset.mode.as_str());
    let customer = sql.bind(reset.customer_id.as_uuid());
    let at = sql.bind(reset.created_at);
    Revocation {
        mode: &mode,
        customer: &customer,
        keep: None,
        at: &at,
        reason: "superseded",
        only_if: "",
    }
    .push(&mut sql);
    for (i, m) in outbox.iter().enumerate() {
        sql.push(&format!(", outbox_{i} AS (INSERT INTO outbox ("))
            .push(INSERT_COLUMNS)
            .push(") VALUES (");
        codec::push_row(&mut sql, m);
        sql.push("))");
    }
    sql.push(" INSERT INTO password_resets (")
        .push(RESET_COLUMNS)
        .push(", email_normalized, requested_ip) VALUES (")
        .push_binds(reset_values(reset))
        .push(", ")
        .push_bind(ip_value(event.client_ip))
        .push(")");
    sql
}

/// The customer found by mode and normalized address and, if there is one, revocation, the
/// reset for them; returns the customer's id and stored address, or no row.
fn create_for_email_statement(email: &EmailAddress, draft: &ResetDraft, event: &ResetEvent) -> Sql {
    let mut sql = Sql::new("WITH customer AS (SELECT id, email FROM customers WHERE mode = ");
    let mode = sql.bind(draft.mode.as_str());
    sql.push(&mode).push(" AND email_normalized = ");
    let normalized = sql.bind(email.normalized());
    sql.push(&normalized).push("), ");
    let at = sql.bind(draft.created_at);
    Revocation {
        mode: &mode,
        customer: "(SELECT id FROM customer)",
        keep: None,
        at: &at,
        reason: "superseded",
        only_if: "",
    }
    .push(&mut sql);
    sql.push(", new_reset AS (INSERT INTO password_resets (")
        .push(RESET_COLUMNS)
        .push(", email_normalized, requested_ip) SELECT ")
        .push_bind(draft.id.as_uuid())
        .push(", ")
        .push(&mode)
        .push(", customer.id, customer.email, ")
        .push_binds([
            Val::Bytes(draft.token_digest.as_bytes().to_vec()),
            draft.expires_at.into(),
        ])
        .push(", NULL, NULL, 0, ")
        .push_binds([
            text_of(draft.reference.as_ref()),
            text_of(draft.reference_origin.as_ref()),
            json_of(draft.metadata.as_ref()),
        ])
        .push(", ")
        .push(&at)
        .push(", ")
        .push(&at)
        .push(", ")
        .push(&normalized)
        .push(", ")
        .push_bind(ip_value(event.client_ip))
        .push(" FROM customer) SELECT id, email FROM customer");
    sql
}

/// The whole completion in one statement. Every write after the conditional update is
/// gated on its row (`FROM done` / `EXISTS`), so a completion that loses a race, or finds
/// the reset used, revoked, expired or exhausted, writes nothing; a concurrent completion
/// of the same reset waits on the row lock and then matches nothing. Returns the used
/// reset, or no row.
fn complete_statement(c: &Completion) -> Sql {
    let mut sql = Sql::new("WITH done AS (");
    let binds = push_completion_update(&mut sql, c);
    sql.push("), password AS (UPDATE customers SET password_hash = ")
        .push_bind(c.password_hash.as_str())
        .push(", password_version = password_version + 1, updated_at = ")
        .push(&binds.now)
        .push(" WHERE mode = ")
        .push(&binds.mode)
        .push(" AND id = ");
    let customer = sql.bind(c.customer_id.as_uuid());
    sql.push(&customer)
        .push(" AND EXISTS (SELECT 1 FROM done)), ");
    Revocation {
        mode: &binds.mode,
        customer: &customer,
        keep: Some(&binds.id),
        at: &binds.now,
        reason: "password_changed",
        only_if: " AND EXISTS (SELECT 1 FROM done)",
    }
    .push(&mut sql);
    // The customer's live sessions end, and the trail says how many when there were any.
    sql.push(", ended AS (UPDATE sessions SET revoked_at = ")
        .push(&binds.now)
        .push(" WHERE mode = ")
        .push(&binds.mode)
        .push(" AND customer_id = ")
        .push(&customer)
        .push(" AND revoked_at IS NULL AND expires_at > ")
        .push(&binds.now)
        .push(" AND EXISTS (SELECT 1 FROM done) RETURNING 1), ended_event AS (INSERT INTO reset_events (")
        .push(EVENT_COLUMNS)
        .push(") SELECT ");
    // The event's values in EVENT_COLUMNS order, its reason (the fifth) being the count.
    let values = event_values(&c.sessions_event);
    sql.push_binds(values.iter().take(4).cloned())
        .push(", (SELECT count(*) FROM ended)::text, ")
        .push_binds(values.into_iter().skip(5))
        .push(" WHERE EXISTS (SELECT 1 FROM ended))");
    for (i, m) in c.outbox.iter().enumerate() {
        sql.push(&format!(", outbox_{i} AS (INSERT INTO outbox ("))
            .push(INSERT_COLUMNS)
            .push(") SELECT ");
        codec::push_row(&mut sql, m);
        sql.push(" FROM done)");
    }
    sql.push(" SELECT ").push(RESET_COLUMNS).push(" FROM done");
    sql
}

/// A session and its first refresh token in one statement.
fn open_statement(new: &NewSession) -> Sql {
    let mut sql = Sql::default();
    if new.refresh.is_some() {
        sql.push("WITH new_session AS (");
    }
    sql.push("INSERT INTO sessions (")
        .push(SESSION_COLUMNS)
        .push(") VALUES (")
        .push_binds(session_values(&new.session))
        .push(")");
    if let Some(refresh) = &new.refresh {
        sql.push(") INSERT INTO refresh_tokens (")
            .push(REFRESH_COLUMNS)
            .push(") VALUES (")
            .push_binds(refresh_values(new.session.id, refresh))
            .push(")");
    }
    sql
}

/// The rotation in one statement: the conditional use of the presented token (`used`; of
/// concurrent rotations one matches, the others wait on its row lock and then match
/// nothing), and only if it matched, the next token and the session's new expiry. Returns
/// the rotated session, or no row.
fn rotate_statement(
    presented: &[TokenDigest],
    client: ClientKey,
    next: &RefreshRecord,
    now: Timestamp,
) -> Sql {
    let mut sql = Sql::new("WITH used AS (");
    let at = sql.bind(now);
    push_refresh_use(&mut sql, presented, client, &at);
    let expires = sql.bind(next.expires_at);
    sql.push("), next AS (INSERT INTO refresh_tokens (")
        .push(REFRESH_COLUMNS)
        .push(") SELECT ")
        .push_bind(pwreset_adapter_sql::Val::Bytes(
            next.digest.as_bytes().to_vec(),
        ))
        .push(", session_id, ")
        .push(&expires)
        .push(" FROM used) UPDATE sessions SET expires_at = ")
        .push(&expires)
        .push(" WHERE id IN (SELECT session_id FROM used) RETURNING ")
        .push(SESSION_COLUMNS);
    sql
}

/// Postgres: one-statement atomic writes, `->` on jsonb, and `SKIP LOCKED` claims.
#[derive(Debug, Clone, Copy)]
pub struct PgDialect;

impl PgDialect {
    /// `create_for_email` when messages depend on the customer: look them up, compose, then
    /// `create`'s one statement.
    async fn create_for_found_customer(
        &self,
        driver: &dyn Driver,
        request: &AddressedReset,
    ) -> Result<Option<PasswordReset>, StoreError> {
        let found = {
            let mut conn = driver.connection().await.map_err(db)?;
            atomic::customer_by_address(&mut *conn, request.draft.mode, &request.email).await?
        };
        let Some((id, stored)) = found else {
            return Ok(None);
        };
        let (reset, outbox) = request.for_customer(id, stored);
        self.create(driver, &reset, &request.event, &outbox).await?;
        Ok(Some(reset))
    }
}

#[async_trait]
impl Dialect for PgDialect {
    fn json_key_eq(&self, column: &str, key: &str, value: &str) -> String {
        format!("({column} -> {key}) = {value}::jsonb")
    }

    fn delete_lock(&self) -> &'static str {
        " FOR UPDATE"
    }

    fn lift_statement_deadline(&self) -> Option<&'static str> {
        Some(crate::LIFT_DEADLINE)
    }

    fn claim_lock(&self) -> &'static str {
        " FOR UPDATE SKIP LOCKED"
    }

    async fn create(
        &self,
        driver: &dyn Driver,
        reset: &PasswordReset,
        event: &ResetEvent,
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError> {
        let mut conn = driver.connection().await.map_err(db)?;
        conn.execute(create_statement(reset, event, outbox))
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn create_for_email(
        &self,
        driver: &dyn Driver,
        request: &AddressedReset,
    ) -> Result<Option<PasswordReset>, StoreError> {
        if !request.composer.is_silent() {
            // Messages are composed for the customer found, so look them up first (one
            // round trip), then write everything in one statement, as `create` does.
            return self.create_for_found_customer(driver, request).await;
        }
        let AddressedReset {
            email,
            draft,
            event,
            ..
        } = request;
        let rows = {
            let mut conn = driver.connection().await.map_err(db)?;
            conn.fetch(
                create_for_email_statement(email, draft, event),
                &[Ty::Uuid, Ty::Text],
            )
            .await
            .map_err(db)?
        };
        Ok(atomic::found_customer(&rows)?
            .map(|(id, stored)| draft.clone().for_customer(id, stored)))
    }

    async fn complete(
        &self,
        driver: &dyn Driver,
        c: &Completion,
    ) -> Result<CompletionOutcome, StoreError> {
        let rows = {
            let mut conn = driver.connection().await.map_err(db)?;
            conn.fetch(complete_statement(c), RESET_TYPES)
                .await
                .map_err(db)?
        };
        Ok(match one_reset(rows)? {
            Some(done) => CompletionOutcome::Completed(Box::new(done)),
            None => CompletionOutcome::NotApplied,
        })
    }

    async fn open_session(&self, driver: &dyn Driver, new: &NewSession) -> Result<(), StoreError> {
        let mut conn = driver.connection().await.map_err(db)?;
        conn.execute(open_statement(new)).await.map_err(db)?;
        Ok(())
    }

    async fn rotate(
        &self,
        driver: &dyn Driver,
        presented: &[TokenDigest],
        client: ClientKey,
        next: &RefreshRecord,
        now: Timestamp,
    ) -> Result<Rotation, StoreError> {
        let mut conn = driver.connection().await.map_err(db)?;
        let rows = conn
            .fetch(
                rotate_statement(presented, client, next, now),
                SESSION_TYPES,
            )
            .await
            .map_err(db)?;
        match one_session(rows)? {
            Some(session) => Ok(Rotation::Rotated(session)),
            // Not rotated: a reused token ends its session (a second round trip, but only
            // on this path, which is never the common one).
            None => detect_reuse(&mut *conn, presented, client, now).await,
        }
    }
}
