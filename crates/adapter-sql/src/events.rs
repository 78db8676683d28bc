//! Recording a reset's events, and keeping the trail of resets that are deleted.
//!
//! A reset's row restates its `requested`, `completed` and `revoked` events
//! ([`RowTrail`]); every other event is a row of `reset_events`. While the reset exists its
//! trail is both, merged on read. When it is deleted (on its own or with its customer) the
//! restated events are written out as rows in the same transaction, so the trail outlives
//! the reset exactly as long as it did when every event was a row.
//!
//! An event row of a restated kind takes precedence over the row's restatement of it.
//! Instances of a release before the restating columns, still running beside this one
//! during a rolling upgrade, write such rows (and leave the columns empty); their trails
//! then read as they wrote them, once.

use crate::driver::{DbError, Executor};
use crate::error::db;
use crate::rows::{EVENT_COLUMNS, TRAIL_COLUMNS, TRAIL_TYPES, event_values, trail_from_row};
use crate::sql::Sql;
use crate::value::{Ty, Val};
use pwreset_domain::ports::StoreError;
use pwreset_domain::{EventId, EventKind, Mode, ResetEvent, ResetId, sort_trail};

/// Inserts one event.
///
/// # Errors
/// When the insert fails.
pub async fn insert_event(ex: &mut dyn Executor, e: &ResetEvent) -> Result<(), DbError> {
    let mut sql = Sql::new("INSERT INTO reset_events (");
    sql.push(EVENT_COLUMNS).push(") VALUES (");
    sql.push_binds(event_values(e)).push(")");
    ex.execute(sql).await.map(drop)
}

/// Runs `delete`, a `DELETE FROM password_resets WHERE ...` without a `RETURNING` clause,
/// and writes the events the deleted rows restated (each unless the reset already has an
/// event row of its kind); how many resets it deleted. Call it inside the transaction
/// that makes the deletion.
///
/// # Errors
/// When a statement fails or a deleted row does not decode.
pub async fn delete_resets_keeping_trails(
    ex: &mut dyn Executor,
    mut delete: Sql,
) -> Result<u64, DbError> {
    delete.push(" RETURNING ").push(TRAIL_COLUMNS);
    let rows = ex.fetch(delete, TRAIL_TYPES).await?;
    let deleted = rows.len() as u64;
    for row in rows {
        for e in trail_from_row(row).map_err(DbError::Other)?.events() {
            let mut sql = Sql::new("INSERT INTO reset_events (");
            sql.push(EVENT_COLUMNS)
                .push(") SELECT ")
                .push_binds(event_values(&e))
                .push(" WHERE NOT EXISTS (SELECT 1 FROM reset_events WHERE reset_id = ")
                .push_bind(e.reset_id.as_uuid())
                .push(" AND kind = ")
                .push_bind(e.kind.as_str())
                .push(")");
            ex.execute(sql).await?;
        }
    }
    Ok(deleted)
}

/// The trail of reset `id` in `mode`, oldest first: the events its row restates (while
/// the reset exists) and its event rows, read in one statement (one snapshot, so a
/// deletion or completion committing meanwhile is seen whole or not at all).
///
/// # Errors
/// When the statement fails or a row does not decode.
pub async fn trail(
    ex: &mut dyn Executor,
    mode: Mode,
    id: ResetId,
) -> Result<Vec<ResetEvent>, StoreError> {
    let mut sql = Sql::default();
    let m = sql.bind(mode.as_str());
    let r = sql.bind(id.as_uuid());
    let reset = format!(" FROM password_resets WHERE mode = {m} AND id = {r}");
    sql.push("SELECT CAST(NULL AS uuid) AS id, 'requested' AS kind, NULL AS reason, requested_ip, created_at")
        .push(&reset)
        .push(" UNION ALL SELECT NULL, 'completed', NULL, completed_ip, reset_password_at")
        .push(&reset)
        .push(" AND reset_password_at IS NOT NULL")
        .push(" UNION ALL SELECT NULL, 'revoked', invalidated_reason, NULL, invalidated_at")
        .push(&reset)
        .push(" AND invalidated_at IS NOT NULL")
        .push(" UNION ALL SELECT id, kind, reason, client_ip, created_at FROM reset_events")
        .push(" WHERE mode = ")
        .push(&m)
        .push(" AND reset_id = ")
        .push(&r);
    const TYPES: &[Ty] = &[Ty::Uuid, Ty::Text, Ty::Text, Ty::Text, Ty::Time];
    let rows = ex.fetch(sql, TYPES).await.map_err(db)?;
    let mut stored = Vec::new();
    let mut restated = Vec::new();
    for row in rows {
        let (event, is_row) = trail_event(mode, id, row).map_err(StoreError::unexpected)?;
        if is_row {
            stored.push(event);
        } else {
            restated.push(event);
        }
    }
    restated.retain(|e| !stored.iter().any(|s| s.kind == e.kind));
    stored.extend(restated);
    sort_trail(&mut stored);
    Ok(stored)
}

/// One row of [`trail`]'s statement: the event, and whether it is an event row (it has
/// an id) rather than the reset row's restatement (whose id is derived).
fn trail_event(mode: Mode, reset_id: ResetId, row: Vec<Val>) -> anyhow::Result<(ResetEvent, bool)> {
    let [id, kind, reason, ip, at] = <[Val; 5]>::try_from(row)
        .map_err(|row| anyhow::anyhow!("trail row has {} columns", row.len()))?;
    let kind = match kind {
        Val::Text(k) => EventKind::parse(&k)
            .ok_or_else(|| anyhow::anyhow!("stored event kind {k:?} is invalid"))?,
        other => anyhow::bail!("event kind is {other:?}"),
    };
    let Val::Time(created_at) = at else {
        anyhow::bail!("event time is {at:?}");
    };
    let text = |v: Val| match v {
        Val::Text(s) => Ok(Some(s)),
        Val::Null(_) => Ok(None),
        other => Err(anyhow::anyhow!("expected text, got {other:?}")),
    };
    let client_ip = text(ip)?
        .map(|s| {
            s.parse()
                .map_err(|_| anyhow::anyhow!("stored client ip {s:?} is invalid"))
        })
        .transpose()?;
    let (id, is_row) = match id {
        Val::Uuid(u) => (EventId::from_uuid(u), true),
        Val::Null(_) => (EventId::restated(reset_id, kind, created_at), false),
        other => anyhow::bail!("event id is {other:?}"),
    };
    Ok((
        ResetEvent {
            id,
            reset_id,
            mode,
            kind,
            reason: text(reason)?,
            client_ip,
            created_at,
        },
        is_row,
    ))
}
