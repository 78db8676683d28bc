//! The transactional outbox over SQL: rows written inside the state change's transaction,
//! claimed by workers with a lease (the dialect's claim lock, `FOR UPDATE SKIP LOCKED` on
//! Postgres; SQLite's single writer serializes claims), and cleared of their secret once
//! delivered or dead.

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::TimeDelta;
use pwreset_domain::ports::{OutboxBacklog, OutboxStore, StoreError};
use pwreset_domain::{EventId, EventKind, OutboxId, OutboxMessage, ResetEvent, ResetId, Timestamp};

use crate::SqlStore;
use crate::codec::{self, INSERT_COLUMNS};
use crate::driver::{DbError, Executor};
use crate::error::db;
use crate::events::insert_event;
use crate::sql::Sql;
use crate::value::{Ty, Val};

/// Enqueues messages inside the caller's transaction.
///
/// # Errors
/// When an insert fails.
pub async fn insert_outbox(
    ex: &mut dyn Executor,
    messages: &[OutboxMessage],
) -> Result<(), DbError> {
    for m in messages {
        let mut sql = Sql::new("INSERT INTO outbox (");
        sql.push(INSERT_COLUMNS).push(") VALUES (");
        codec::push_row(&mut sql, m);
        sql.push(")");
        ex.execute(sql).await?;
    }
    Ok(())
}

/// Records an event about the message's reset (the event table keeps events of deleted
/// resets until they are purged, so this never fails for a missing reset).
async fn message_event(
    ex: &mut dyn Executor,
    id: OutboxId,
    kind: EventKind,
    now: Timestamp,
) -> Result<(), DbError> {
    let mut sql = Sql::new("SELECT mode, reset_id, kind, topic FROM outbox WHERE id = ");
    sql.push_bind(id.as_uuid());
    let rows = ex
        .fetch(sql, &[Ty::Text, Ty::Uuid, Ty::Text, Ty::Text])
        .await?;
    let row = match rows.as_slice() {
        [row] => row,
        [] => {
            return Err(DbError::Other(anyhow!(
                "outbox message {id} does not exist"
            )));
        }
        _ => return Err(DbError::Other(anyhow!("outbox id {id} is not unique"))),
    };
    let [Val::Text(mode), Val::Uuid(reset_id), Val::Text(k), topic] = row.as_slice() else {
        return Err(DbError::Other(anyhow!(
            "outbox row {id} has unexpected types: {row:?}"
        )));
    };
    let reason = match topic {
        Val::Text(t) => t.clone(),
        Val::Null(_) => k.clone(),
        other => return Err(DbError::Other(anyhow!("outbox topic of {id} is {other:?}"))),
    };
    let event = ResetEvent {
        id: EventId::new_at(now),
        reset_id: ResetId::from_uuid(*reset_id),
        mode: mode
            .parse()
            .map_err(|_| DbError::Other(anyhow!("outbox mode")))?,
        kind,
        reason: Some(reason),
        client_ip: None,
        created_at: now,
    };
    insert_event(ex, &event).await
}

#[async_trait]
impl OutboxStore for SqlStore {
    async fn backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let sql = Sql::new("SELECT count(*), min(created_at) FROM outbox WHERE status = 'pending'");
        let mut conn = self.driver.connection().await.map_err(db)?;
        let rows = conn.fetch(sql, &[Ty::Int, Ty::Time]).await.map_err(db)?;
        match rows.first().map(Vec::as_slice) {
            Some([Val::Int(n), oldest]) => Ok(OutboxBacklog {
                pending: u64::try_from(*n).unwrap_or_default(),
                oldest: match oldest {
                    Val::Time(t) => Some(*t),
                    _ => None,
                },
            }),
            other => Err(StoreError::unexpected(anyhow!(
                "outbox backlog: unexpected row {other:?}"
            ))),
        }
    }

    async fn enqueue(&self, messages: &[OutboxMessage]) -> Result<(), StoreError> {
        let mut tx = self.driver.begin().await.map_err(db)?;
        insert_outbox(&mut *tx, messages).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn claim(
        &self,
        now: Timestamp,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut sql = Sql::new("UPDATE outbox SET claimed_until = ");
        sql.push_bind(now + lease)
            .push(", attempts = attempts + 1 WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= ");
        let now = sql.bind(now);
        sql.push(&now)
            .push(" AND (claimed_until IS NULL OR claimed_until <= ")
            .push(&now)
            .push(") ORDER BY next_attempt_at, id LIMIT ")
            .push_bind(i64::from(limit))
            .push(self.driver.dialect().claim_lock())
            .push(") RETURNING ")
            .push(codec::COLUMNS);
        let mut tx = self.driver.begin().await.map_err(db)?;
        let rows = tx.fetch(sql, codec::TYPES).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        let mut messages = rows
            .into_iter()
            .map(codec::message_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::unexpected)?;
        messages.sort_by_key(|m| (m.created_at, m.id));
        Ok(messages)
    }

    async fn delivered(&self, id: OutboxId, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.driver.begin().await.map_err(db)?;
        let mut sql = Sql::new(
            "UPDATE outbox SET status = 'delivered', secret = NULL, claimed_until = NULL, \
             finished_at = ",
        );
        sql.push_bind(now)
            .push(" WHERE id = ")
            .push_bind(id.as_uuid());
        tx.execute(sql).await.map_err(db)?;
        message_event(&mut *tx, id, EventKind::NotificationDelivered, now)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn failed(
        &self,
        id: OutboxId,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(1000).collect();
        let mut tx = self.driver.begin().await.map_err(db)?;
        match retry_at {
            Some(at) => {
                let mut sql = Sql::new("UPDATE outbox SET next_attempt_at = ");
                sql.push_bind(at)
                    .push(", claimed_until = NULL, last_error = ")
                    .push_bind(error)
                    .push(" WHERE id = ")
                    .push_bind(id.as_uuid());
                tx.execute(sql).await.map_err(db)?;
            }
            None => {
                let mut sql = Sql::new(
                    "UPDATE outbox SET status = 'dead', secret = NULL, claimed_until = NULL, \
                     last_error = ",
                );
                sql.push_bind(error)
                    .push(", finished_at = ")
                    .push_bind(now)
                    .push(" WHERE id = ")
                    .push_bind(id.as_uuid());
                tx.execute(sql).await.map_err(db)?;
                message_event(&mut *tx, id, EventKind::NotificationDead, now)
                    .await
                    .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)
    }
}
