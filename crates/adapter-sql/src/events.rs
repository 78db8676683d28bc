//! Recording a reset's events, and keeping the trail of resets that are deleted.
//!
//! A reset's row restates its `requested`, `completed` and `revoked` events
//! ([`RowTrail`]); every other event is a row of `reset_events`. While the reset exists its
//! trail is both, merged on read. When it is deleted (on its own or with its customer) the
//! restated events are written out as rows in the same transaction, so the trail outlives
//! the reset exactly as long as it did when every event was a row.

use crate::driver::{DbError, Executor};
use crate::error::db;
use crate::rows::{
    EVENT_COLUMNS, EVENT_TYPES, TRAIL_COLUMNS, TRAIL_TYPES, event_from_row, event_values,
    trail_from_row,
};
use crate::sql::Sql;
use pwreset_domain::ports::StoreError;
use pwreset_domain::{Mode, ResetEvent, ResetId, RowTrail, sort_trail};

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
/// and writes the events the deleted rows restated; how many resets it deleted. Call it
/// inside the transaction that makes the deletion.
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
        for event in trail_from_row(row).map_err(DbError::Other)?.events() {
            insert_event(ex, &event).await?;
        }
    }
    Ok(deleted)
}

/// The trail of reset `id` in `mode`, oldest first: the events its row restates (while
/// the reset exists) and its event rows.
///
/// # Errors
/// When a statement fails or a row does not decode.
pub async fn trail(
    ex: &mut dyn Executor,
    mode: Mode,
    id: ResetId,
) -> Result<Vec<ResetEvent>, StoreError> {
    let mut sql = Sql::new("SELECT ");
    sql.push(TRAIL_COLUMNS)
        .push(" FROM password_resets WHERE mode = ")
        .push_bind(mode.as_str())
        .push(" AND id = ")
        .push_bind(id.as_uuid());
    let mut events = Vec::new();
    for row in ex.fetch(sql, TRAIL_TYPES).await.map_err(db)? {
        let row: RowTrail = trail_from_row(row).map_err(StoreError::unexpected)?;
        events.extend(row.events());
    }
    let mut sql = Sql::new("SELECT ");
    sql.push(EVENT_COLUMNS)
        .push(" FROM reset_events WHERE mode = ")
        .push_bind(mode.as_str())
        .push(" AND reset_id = ")
        .push_bind(id.as_uuid());
    for row in ex.fetch(sql, EVENT_TYPES).await.map_err(db)? {
        events.push(event_from_row(row).map_err(StoreError::unexpected)?);
    }
    sort_trail(&mut events);
    Ok(events)
}
