//! The atomic writes in their generic form: one transaction each, the same SQL on every
//! database. A [`crate::Dialect`] either uses these for its write methods or has a
//! one-statement form of its own, and may fall back to these.

use std::net::IpAddr;

use pwreset_domain::AddressedReset;
use pwreset_domain::ports::{Completion, CompletionOutcome, StoreError};
use pwreset_domain::{
    ClientKey, CustomerId, DetailsPatch, EmailAddress, Mode, NewSession, OutboxMessage,
    PasswordReset, Patch, RefreshRecord, ResetEvent, ResetId, Rotation, SessionId, Timestamp,
    TokenDigest,
};

use crate::driver::{DbError, Driver, Executor};
use crate::error::db;
use crate::events::insert_event;
use crate::outbox::insert_outbox;
use crate::rows::{
    RESET_COLUMNS, RESET_TYPES, SESSION_COLUMNS, SESSION_TYPES, ip_value, json_of, reset_from_row,
    reset_values, session_from_row, session_values, text_of,
};
use crate::sql::Sql;
use crate::value::{Ty, Val};

/// Revokes the customer's outstanding resets other than `keep` at `now`, for `reason`.
/// The row keeps the reason: with `invalidated_at` it restates the `revoked` event
/// ([`pwreset_domain::RowTrail`]), so no event row is written.
///
/// # Errors
/// When the statement fails.
pub async fn revoke_outstanding(
    ex: &mut dyn Executor,
    mode: Mode,
    customer_id: CustomerId,
    keep: Option<ResetId>,
    now: Timestamp,
    reason: &str,
) -> Result<(), DbError> {
    let mut sql = Sql::new("UPDATE password_resets SET invalidated_at = ");
    let at = sql.bind(now);
    sql.push(&at)
        .push(", updated_at = ")
        .push(&at)
        .push(", invalidated_reason = ")
        .push_bind(reason)
        .push(" WHERE mode = ")
        .push_bind(mode.as_str())
        .push(" AND customer_id = ")
        .push_bind(customer_id.as_uuid());
    if let Some(keep) = keep {
        sql.push(" AND id <> ").push_bind(keep.as_uuid());
    }
    sql.push(" AND reset_password_at IS NULL AND invalidated_at IS NULL");
    ex.execute(sql).await.map(drop)
}

/// Inserts a reset with the address it was requested from (which, with `created_at`,
/// restates its `requested` event).
///
/// # Errors
/// When the insert fails.
pub async fn insert_reset(
    ex: &mut dyn Executor,
    reset: &PasswordReset,
    requested_ip: Option<IpAddr>,
) -> Result<(), DbError> {
    let mut sql = Sql::new("INSERT INTO password_resets (");
    sql.push(RESET_COLUMNS)
        .push(", email_normalized, requested_ip) VALUES (")
        .push_binds(reset_values(reset))
        .push(", ")
        .push_bind(ip_value(requested_ip))
        .push(")");
    ex.execute(sql).await.map(drop)
}

/// Appends `, col = $n` for each attribute the patch changes.
pub fn push_details(sql: &mut Sql, patch: &DetailsPatch) {
    if let Patch::Set(r) = &patch.reference {
        sql.push(", reference = ").push_bind(text_of(r.as_ref()));
    }
    if let Patch::Set(r) = &patch.reference_origin {
        sql.push(", reference_origin = ")
            .push_bind(text_of(r.as_ref()));
    }
    if let Patch::Set(m) = &patch.metadata {
        sql.push(", metadata = ").push_bind(json_of(m.as_ref()));
    }
}

/// Placeholders of a completion's values, for the statements that follow its update.
#[derive(Debug, Clone)]
pub struct CompletionBinds {
    pub now: String,
    pub mode: String,
    pub id: String,
}

/// Appends the conditional update that uses a reset: it matches only while the reset is
/// outstanding, unexpired at `c.now`, below the attempt cap and still has the digest that
/// was checked; it returns the used reset's [`RESET_COLUMNS`]. The row then restates the
/// completion's `completed` event (its time and the completer's address).
pub fn push_completion_update(sql: &mut Sql, c: &Completion) -> CompletionBinds {
    sql.push("UPDATE password_resets SET reset_password_at = ");
    let now = sql.bind(c.now);
    sql.push(&now)
        .push(", updated_at = ")
        .push(&now)
        .push(", completed_ip = ")
        .push_bind(ip_value(c.event.client_ip));
    push_details(sql, &c.details);
    sql.push(" WHERE mode = ");
    let mode = sql.bind(c.mode.as_str());
    sql.push(&mode).push(" AND id = ");
    let id = sql.bind(c.reset_id.as_uuid());
    sql.push(&id)
        .push(" AND token_digest = ")
        .push_bind(Val::Bytes(c.token_digest.as_bytes().to_vec()))
        .push(" AND reset_password_at IS NULL AND invalidated_at IS NULL AND expires_at >= ")
        .push(&now)
        .push(" AND failed_attempts < ")
        .push_bind(i64::from(c.max_failed_attempts))
        .push(" RETURNING ")
        .push(RESET_COLUMNS);
    CompletionBinds { now, mode, id }
}

/// The one reset among `rows`, if any.
///
/// # Errors
/// When there are several, or the row does not decode.
pub fn one_reset(rows: Vec<Vec<Val>>) -> Result<Option<PasswordReset>, StoreError> {
    let mut rows = rows.into_iter();
    let first = rows.next();
    if rows.next().is_some() {
        return Err(StoreError::unexpected(anyhow::anyhow!(
            "expected at most one reset, got several"
        )));
    }
    first
        .map(reset_from_row)
        .transpose()
        .map_err(StoreError::unexpected)
}

/// `ResetStore::create` in one transaction.
///
/// # Errors
/// When the database fails; nothing is written then.
pub async fn create(
    driver: &dyn Driver,
    reset: &PasswordReset,
    event: &ResetEvent,
    outbox: &[OutboxMessage],
) -> Result<(), StoreError> {
    let mut tx = driver.begin().await.map_err(db)?;
    write_new_reset(&mut *tx, reset, event, outbox)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)
}

/// Inside the caller's transaction: revoke the customer's outstanding resets (superseded
/// by `reset`), then insert `reset` (whose row restates its `requested` event) and its
/// messages.
async fn write_new_reset(
    ex: &mut dyn Executor,
    reset: &PasswordReset,
    event: &ResetEvent,
    outbox: &[OutboxMessage],
) -> Result<(), DbError> {
    revoke_outstanding(
        ex,
        reset.mode,
        reset.customer_id,
        None,
        reset.created_at,
        "superseded",
    )
    .await?;
    insert_reset(ex, reset, event.client_ip).await?;
    insert_outbox(ex, outbox).await
}

/// The customer a `SELECT id, email FROM customers ...` found: its id and stored address,
/// `None` for no row.
///
/// # Errors
/// When there are several rows or the row does not decode.
pub fn found_customer(rows: &[Vec<Val>]) -> Result<Option<(CustomerId, EmailAddress)>, StoreError> {
    let (id, stored) = match rows {
        [] => return Ok(None),
        [row] => match row.as_slice() {
            [Val::Uuid(id), Val::Text(stored)] => (*id, stored),
            other => {
                return Err(StoreError::unexpected(anyhow::anyhow!(
                    "customer lookup returned {other:?}"
                )));
            }
        },
        _ => {
            return Err(StoreError::unexpected(anyhow::anyhow!(
                "several customers have one address"
            )));
        }
    };
    let stored = EmailAddress::parse(stored).map_err(StoreError::unexpected)?;
    Ok(Some((CustomerId::from_uuid(id), stored)))
}

/// The id and stored address of the customer of `mode` whose normalized address is
/// `email`'s.
///
/// # Errors
/// When the database fails or the row does not decode.
pub async fn customer_by_address(
    ex: &mut dyn Executor,
    mode: Mode,
    email: &EmailAddress,
) -> Result<Option<(CustomerId, EmailAddress)>, StoreError> {
    let mut sql = Sql::new("SELECT id, email FROM customers WHERE mode = ");
    sql.push_bind(mode.as_str())
        .push(" AND email_normalized = ")
        .push_bind(email.normalized());
    let rows = ex.fetch(sql, &[Ty::Uuid, Ty::Text]).await.map_err(db)?;
    found_customer(&rows)
}

/// `ResetStore::create_for_email` in one transaction: the lookup, then the writes with the
/// messages `composer` makes for the customer found.
///
/// # Errors
/// When the database fails; nothing is written then.
pub async fn create_for_email(
    driver: &dyn Driver,
    request: &AddressedReset,
) -> Result<Option<PasswordReset>, StoreError> {
    let mut tx = driver.begin().await.map_err(db)?;
    let found = customer_by_address(&mut *tx, request.draft.mode, &request.email).await?;
    let Some((id, stored)) = found else {
        return Ok(None);
    };
    let (reset, outbox) = request.for_customer(id, stored);
    write_new_reset(&mut *tx, &reset, &request.event, &outbox)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(Some(reset))
}

/// `ResetStore::complete` in one transaction.
///
/// # Errors
/// When the database fails; nothing is written then.
pub async fn complete(
    driver: &dyn Driver,
    c: &Completion,
) -> Result<CompletionOutcome, StoreError> {
    let mut tx = driver.begin().await.map_err(db)?;
    let mut update = Sql::default();
    push_completion_update(&mut update, c);
    let rows = tx.fetch(update, RESET_TYPES).await.map_err(db)?;
    let Some(done) = one_reset(rows)? else {
        // Dropping the transaction rolls it back; nothing was written.
        return Ok(CompletionOutcome::NotApplied);
    };
    let mut sql = Sql::new("UPDATE customers SET password_hash = ");
    sql.push_bind(c.password_hash.as_str())
        .push(", password_version = password_version + 1, updated_at = ")
        .push_bind(c.now)
        .push(" WHERE mode = ")
        .push_bind(c.mode.as_str())
        .push(" AND id = ")
        .push_bind(c.customer_id.as_uuid());
    tx.execute(sql).await.map_err(db)?;
    let ended = revoke_sessions(&mut *tx, c.mode, c.customer_id, c.now)
        .await
        .map_err(db)?;
    if ended > 0 {
        let event = ResetEvent {
            reason: Some(ended.to_string()),
            ..c.sessions_event.clone()
        };
        insert_event(&mut *tx, &event).await.map_err(db)?;
    }
    revoke_outstanding(
        &mut *tx,
        c.mode,
        c.customer_id,
        Some(c.reset_id),
        c.now,
        "password_changed",
    )
    .await
    .map_err(db)?;
    insert_outbox(&mut *tx, &c.outbox).await.map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(CompletionOutcome::Completed(Box::new(done)))
}

/// Appends `session_id IN (...)`'s subquery: the ids of sessions of `client` that are live
/// at `now` (the placeholders given), as [`SessionStore::status`] defines it: not revoked,
/// unexpired, client not revoked, and for a customer session the customer still there with
/// the session's password version.
///
/// [`SessionStore::status`]: pwreset_domain::ports::SessionStore::status
pub fn push_live_sessions(sql: &mut Sql, now: &str) {
    sql.push(
        "SELECT s.id FROM sessions s JOIN clients c ON c.id = s.client \
         LEFT JOIN customers u ON u.id = s.customer_id WHERE s.revoked_at IS NULL \
         AND s.expires_at > ",
    )
    .push(now)
    .push(
        " AND c.revoked_at IS NULL AND (s.customer_id IS NULL \
         OR (u.mode = s.mode AND u.password_version = s.password_version))",
    );
}

/// Revokes the customer's live sessions (not revoked, unexpired) at `now`; how many.
///
/// # Errors
/// When the statement fails.
pub async fn revoke_sessions(
    ex: &mut dyn Executor,
    mode: Mode,
    customer: CustomerId,
    now: Timestamp,
) -> Result<u64, DbError> {
    let mut sql = Sql::new("UPDATE sessions SET revoked_at = ");
    let at = sql.bind(now);
    sql.push(&at)
        .push(" WHERE mode = ")
        .push_bind(mode.as_str())
        .push(" AND customer_id = ")
        .push_bind(customer.as_uuid())
        .push(" AND revoked_at IS NULL AND expires_at > ")
        .push(&at);
    ex.execute(sql).await
}

/// The values of a stored refresh token: its digest, session and expiry (`used_at` NULL).
pub const REFRESH_COLUMNS: &str = "digest, session_id, expires_at";

/// The values of [`REFRESH_COLUMNS`] for `record` of session `id`.
#[must_use]
pub fn refresh_values(id: SessionId, record: &RefreshRecord) -> Vec<Val> {
    vec![
        Val::Bytes(record.digest.as_bytes().to_vec()),
        id.as_uuid().into(),
        record.expires_at.into(),
    ]
}

/// The presented digests as values, for `digest IN (...)`.
#[must_use]
pub fn digest_values(presented: &[TokenDigest]) -> Vec<Val> {
    presented
        .iter()
        .map(|d| Val::Bytes(d.as_bytes().to_vec()))
        .collect()
}

/// `SessionStore::open` in one transaction.
///
/// # Errors
/// When the database fails; nothing is written then.
pub async fn open_session(driver: &dyn Driver, new: &NewSession) -> Result<(), StoreError> {
    let mut tx = driver.begin().await.map_err(db)?;
    let mut sql = Sql::new("INSERT INTO sessions (");
    sql.push(SESSION_COLUMNS)
        .push(") VALUES (")
        .push_binds(session_values(&new.session))
        .push(")");
    tx.execute(sql).await.map_err(db)?;
    if let Some(refresh) = &new.refresh {
        let mut sql = Sql::new("INSERT INTO refresh_tokens (");
        sql.push(REFRESH_COLUMNS)
            .push(") VALUES (")
            .push_binds(refresh_values(new.session.id, refresh))
            .push(")");
        tx.execute(sql).await.map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

/// Appends the conditional update that uses a refresh token: it matches only the current
/// (unused), unexpired token among `presented` whose session is of `client` and live, and
/// returns its `session_id`. Of concurrent updates of one token at most one matches.
pub fn push_refresh_use(sql: &mut Sql, presented: &[TokenDigest], client: ClientKey, now: &str) {
    sql.push("UPDATE refresh_tokens SET used_at = ")
        .push(now)
        .push(" WHERE digest IN (")
        .push_binds(digest_values(presented))
        .push(") AND used_at IS NULL AND expires_at > ")
        .push(now)
        .push(" AND session_id IN (");
    push_live_sessions(sql, now);
    sql.push(" AND s.client = ")
        .push_bind(client.as_uuid())
        .push(") RETURNING session_id");
}

/// After a refresh token did not rotate: if it is one of `client`'s that was used before,
/// revokes its session at `now` (unless revoked already) and says `Reused`; else `Invalid`
/// and nothing is written.
///
/// # Errors
/// When a statement fails.
pub async fn detect_reuse(
    ex: &mut dyn Executor,
    presented: &[TokenDigest],
    client: ClientKey,
    now: Timestamp,
) -> Result<Rotation, StoreError> {
    let mut sql = Sql::new(
        "SELECT s.id FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
         WHERE r.digest IN (",
    );
    sql.push_binds(digest_values(presented))
        .push(") AND r.used_at IS NOT NULL AND s.client = ")
        .push_bind(client.as_uuid());
    let rows = ex.fetch(sql, &[Ty::Uuid]).await.map_err(db)?;
    let id = match rows.as_slice() {
        [] => return Ok(Rotation::Invalid),
        [row] => match row.as_slice() {
            [Val::Uuid(id)] => SessionId::from_uuid(*id),
            other => {
                return Err(StoreError::unexpected(anyhow::anyhow!(
                    "reuse lookup returned {other:?}"
                )));
            }
        },
        _ => {
            return Err(StoreError::unexpected(anyhow::anyhow!(
                "several refresh tokens match one presented token"
            )));
        }
    };
    let mut sql = Sql::new("UPDATE sessions SET revoked_at = ");
    sql.push_bind(now)
        .push(" WHERE id = ")
        .push_bind(id.as_uuid())
        .push(" AND revoked_at IS NULL");
    ex.execute(sql).await.map_err(db)?;
    Ok(Rotation::Reused(id))
}

/// `SessionStore::rotate` in one transaction: the conditional use of the token, then (only
/// if it matched) the next token and the session's new expiry; else reuse detection.
///
/// # Errors
/// When the database fails; nothing is written then.
pub async fn rotate(
    driver: &dyn Driver,
    presented: &[TokenDigest],
    client: ClientKey,
    next: &RefreshRecord,
    now: Timestamp,
) -> Result<Rotation, StoreError> {
    let mut tx = driver.begin().await.map_err(db)?;
    let mut sql = Sql::default();
    let at = sql.bind(now);
    push_refresh_use(&mut sql, presented, client, &at);
    let rows = tx.fetch(sql, &[Ty::Uuid]).await.map_err(db)?;
    let id = match rows.as_slice() {
        [] => {
            let outcome = detect_reuse(&mut *tx, presented, client, now).await?;
            if outcome != Rotation::Invalid {
                tx.commit().await.map_err(db)?;
            }
            return Ok(outcome);
        }
        [row] => match row.as_slice() {
            [Val::Uuid(id)] => SessionId::from_uuid(*id),
            other => {
                return Err(StoreError::unexpected(anyhow::anyhow!(
                    "refresh token use returned {other:?}"
                )));
            }
        },
        _ => {
            return Err(StoreError::unexpected(anyhow::anyhow!(
                "several refresh tokens match one presented token"
            )));
        }
    };
    let mut sql = Sql::new("INSERT INTO refresh_tokens (");
    sql.push(REFRESH_COLUMNS)
        .push(") VALUES (")
        .push_binds(refresh_values(id, next))
        .push(")");
    tx.execute(sql).await.map_err(db)?;
    let mut sql = Sql::new("UPDATE sessions SET expires_at = ");
    sql.push_bind(next.expires_at)
        .push(" WHERE id = ")
        .push_bind(id.as_uuid())
        .push(" RETURNING ")
        .push(SESSION_COLUMNS);
    let rows = tx.fetch(sql, SESSION_TYPES).await.map_err(db)?;
    let session = one_session(rows)?
        .ok_or_else(|| StoreError::unexpected(anyhow::anyhow!("rotated session vanished")))?;
    tx.commit().await.map_err(db)?;
    Ok(Rotation::Rotated(session))
}

/// The one session among `rows`, if any.
///
/// # Errors
/// When there are several, or the row does not decode.
pub fn one_session(rows: Vec<Vec<Val>>) -> Result<Option<pwreset_domain::Session>, StoreError> {
    let mut rows = rows.into_iter();
    let first = rows.next();
    if rows.next().is_some() {
        return Err(StoreError::unexpected(anyhow::anyhow!(
            "expected at most one session, got several"
        )));
    }
    first
        .map(session_from_row)
        .transpose()
        .map_err(StoreError::unexpected)
}
