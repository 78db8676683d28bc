//! The atomic writes in their generic form: one transaction each, the same SQL on every
//! database. A [`crate::Dialect`] either uses these for its write methods or has a
//! one-statement form of its own, and may fall back to these.

use pwreset_domain::AddressedReset;
use pwreset_domain::ports::{Completion, CompletionOutcome, StoreError};
use pwreset_domain::{
    CustomerId, DetailsPatch, EmailAddress, EventId, EventKind, Mode, OutboxMessage, PasswordReset,
    Patch, ResetEvent, ResetId, Timestamp,
};

use crate::driver::{DbError, Driver, Executor};
use crate::error::db;
use crate::events::insert_event;
use crate::outbox::insert_outbox;
use crate::rows::{RESET_COLUMNS, RESET_TYPES, json_of, reset_from_row, reset_values, text_of};
use crate::sql::Sql;
use crate::value::{Ty, Val};

/// Revokes the customer's outstanding resets other than `keep` and records why, one
/// `revoked` event each (ids made here, UUIDv7 at `now`).
///
/// # Errors
/// When a statement fails.
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
        .push(" WHERE mode = ")
        .push_bind(mode.as_str())
        .push(" AND customer_id = ")
        .push_bind(customer_id.as_uuid());
    if let Some(keep) = keep {
        sql.push(" AND id <> ").push_bind(keep.as_uuid());
    }
    sql.push(" AND reset_password_at IS NULL AND invalidated_at IS NULL RETURNING id");
    for row in ex.fetch(sql, &[Ty::Uuid]).await? {
        let [Val::Uuid(id)] = row.as_slice() else {
            return Err(DbError::Other(anyhow::anyhow!(
                "revocation returned {row:?}"
            )));
        };
        let event = ResetEvent {
            id: EventId::new_at(now),
            reset_id: ResetId::from_uuid(*id),
            mode,
            kind: EventKind::Revoked,
            reason: Some(reason.to_owned()),
            client_ip: None,
            created_at: now,
        };
        insert_event(ex, &event).await?;
    }
    Ok(())
}

/// Inserts a reset.
///
/// # Errors
/// When the insert fails.
pub async fn insert_reset(ex: &mut dyn Executor, reset: &PasswordReset) -> Result<(), DbError> {
    let mut sql = Sql::new("INSERT INTO password_resets (");
    sql.push(RESET_COLUMNS)
        .push(", email_normalized) VALUES (")
        .push_binds(reset_values(reset))
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
/// was checked; it returns the used reset's [`RESET_COLUMNS`].
pub fn push_completion_update(sql: &mut Sql, c: &Completion) -> CompletionBinds {
    sql.push("UPDATE password_resets SET reset_password_at = ");
    let now = sql.bind(c.now);
    sql.push(&now).push(", updated_at = ").push(&now);
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
/// by `reset`), then insert `reset`, its event and its messages.
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
    insert_reset(ex, reset).await?;
    insert_event(ex, event).await?;
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
        .push(", updated_at = ")
        .push_bind(c.now)
        .push(" WHERE mode = ")
        .push_bind(c.mode.as_str())
        .push(" AND id = ")
        .push_bind(c.customer_id.as_uuid());
    tx.execute(sql).await.map_err(db)?;
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
    insert_event(&mut *tx, &c.event).await.map_err(db)?;
    insert_outbox(&mut *tx, &c.outbox).await.map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(CompletionOutcome::Completed(Box::new(done)))
}
