//! Recording a reset's events.

use crate::driver::{DbError, Executor};
use crate::rows::{EVENT_COLUMNS, event_values};
use crate::sql::Sql;
use pwreset_domain::ResetEvent;

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
