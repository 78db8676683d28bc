//! `ResetStore` over SQL. The atomic writes (create, create by address, complete) are the
//! driver's [`crate::Dialect`]'s; everything else is the same SQL on every database.

use async_trait::async_trait;
use pwreset_domain::AddressedReset;
use pwreset_domain::OutboxMessage;
use pwreset_domain::ports::{Completion, CompletionOutcome, ResetStore, StoreError};
use pwreset_domain::{
    DetailsPatch, ListQuery, Mode, Page, PasswordReset, ResetEvent, ResetField, ResetId, ResetSort,
    Timestamp,
};

use crate::SqlStore;
use crate::atomic::{one_reset, push_details};
use crate::error::db;
use crate::events::{delete_resets_keeping_trails, insert_event, trail};
use crate::list::Table;
use crate::outbox::insert_outbox;
use crate::rows::{RESET_COLUMNS, RESET_TYPES, reset_from_row};
use crate::sessions::purge_ended_sessions;
use crate::sql::Sql;

/// Appends the condition of resets that ended (used, revoked or expired) before
/// `cutoff`. A reset cannot end before it was created, so the `created_at` bound, with both
/// modes named, lets the purge walk the `(mode, created_at, id)` index over the old rows
/// instead of scanning the whole table every time it runs.
fn push_ended_before(sql: &mut Sql, cutoff: Timestamp) {
    let c = sql.bind(cutoff);
    sql.push("mode IN ('test', 'live') AND created_at < ")
        .push(&c)
        .push(" AND (reset_password_at < ")
        .push(&c)
        .push(" OR invalidated_at < ")
        .push(&c)
        .push(" OR expires_at < ")
        .push(&c)
        .push(")");
}

/// The retention purge's delete of ended resets with its cutoff as `$1`: the text
/// [`purge`](ResetStore::purge) runs (a unit test checks they are the same), public for
/// the query-plan test.
pub const PURGE_ENDED_RESETS: &str = "DELETE FROM password_resets WHERE mode IN ('test', 'live') \
     AND created_at < $1 AND (reset_password_at < $1 OR invalidated_at < $1 OR expires_at < $1)";

fn purge_ended_resets(cutoff: Timestamp) -> Sql {
    let mut sql = Sql::new("DELETE FROM password_resets WHERE ");
    push_ended_before(&mut sql, cutoff);
    sql
}

#[async_trait]
impl ResetStore for SqlStore {
    async fn create(
        &self,
        reset: &PasswordReset,
        event: &ResetEvent,
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError> {
        let driver = &*self.driver;
        driver.dialect().create(driver, reset, event, outbox).await
    }

    async fn create_for_email(
        &self,
        request: &AddressedReset,
    ) -> Result<Option<PasswordReset>, StoreError> {
        let driver = &*self.driver;
        driver.dialect().create_for_email(driver, request).await
    }

    async fn find(&self, mode: Mode, id: ResetId) -> Result<Option<PasswordReset>, StoreError> {
        let mut sql = Sql::new("SELECT ");
        sql.push(RESET_COLUMNS)
            .push(" FROM password_resets WHERE mode = ")
            .push_bind(mode.as_str())
            .push(" AND id = ")
            .push_bind(id.as_uuid());
        let mut conn = self.driver.connection().await.map_err(db)?;
        one_reset(conn.fetch(sql, RESET_TYPES).await.map_err(db)?)
    }

    async fn list(
        &self,
        mode: Mode,
        query: &ListQuery<ResetField, ResetSort>,
    ) -> Result<Page<PasswordReset>, StoreError> {
        const TABLE: Table = Table {
            name: "password_resets",
            columns: RESET_COLUMNS,
            types: RESET_TYPES,
        };
        self.page(&TABLE, mode, query, reset_from_row).await
    }

    async fn update_details(
        &self,
        mode: Mode,
        id: ResetId,
        patch: &DetailsPatch,
        now: Timestamp,
    ) -> Result<Option<PasswordReset>, StoreError> {
        let mut sql = Sql::new("UPDATE password_resets SET updated_at = ");
        sql.push_bind(now);
        push_details(&mut sql, patch);
        sql.push(" WHERE mode = ")
            .push_bind(mode.as_str())
            .push(" AND id = ")
            .push_bind(id.as_uuid())
            .push(" RETURNING ")
            .push(RESET_COLUMNS);
        let mut conn = self.driver.connection().await.map_err(db)?;
        one_reset(conn.fetch(sql, RESET_TYPES).await.map_err(db)?)
    }

    async fn delete(
        &self,
        mode: Mode,
        id: ResetId,
        event: &ResetEvent,
        outbox: &[OutboxMessage],
    ) -> Result<bool, StoreError> {
        let mut tx = self.driver.begin().await.map_err(db)?;
        let mut sql = Sql::new("DELETE FROM password_resets WHERE mode = ");
        sql.push_bind(mode.as_str())
            .push(" AND id = ")
            .push_bind(id.as_uuid());
        if delete_resets_keeping_trails(&mut *tx, sql)
            .await
            .map_err(db)?
            == 0
        {
            return Ok(false);
        }
        insert_event(&mut *tx, event).await.map_err(db)?;
        insert_outbox(&mut *tx, outbox).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn purge(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.driver.begin().await.map_err(db)?;
        // A purge after a busy week deletes many rows: no request deadline for it.
        if let Some(lift) = self.driver.dialect().lift_statement_deadline() {
            tx.execute(Sql::new(lift)).await.map_err(db)?;
        }
        let mut sql = Sql::new(
            "DELETE FROM reset_events WHERE reset_id IN (SELECT id FROM password_resets WHERE ",
        );
        push_ended_before(&mut sql, cutoff);
        sql.push(")");
        tx.execute(sql).await.map_err(db)?;
        let resets = tx.execute(purge_ended_resets(cutoff)).await.map_err(db)?;
        let mut sql = Sql::new("DELETE FROM reset_events WHERE created_at < ");
        sql.push_bind(cutoff).push(
            " AND NOT EXISTS (SELECT 1 FROM password_resets r WHERE r.id = reset_events.reset_id)",
        );
        tx.execute(sql).await.map_err(db)?;
        let mut sql = Sql::new("DELETE FROM outbox WHERE status <> 'pending' AND finished_at < ");
        sql.push_bind(cutoff);
        tx.execute(sql).await.map_err(db)?;
        let mut sql = Sql::new("DELETE FROM rate_limits WHERE expires_at < ");
        sql.push_bind(cutoff);
        tx.execute(sql).await.map_err(db)?;
        // The retention path of sessions too (`SessionStore::purge` on its own).
        tx.execute(purge_ended_sessions(cutoff)).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(resets)
    }

    async fn record_failure(
        &self,
        mode: Mode,
        id: ResetId,
        count_attempt: bool,
        event: &ResetEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.driver.begin().await.map_err(db)?;
        if count_attempt {
            let mut sql = Sql::new(
                "UPDATE password_resets SET failed_attempts = failed_attempts + 1 WHERE mode = ",
            );
            sql.push_bind(mode.as_str())
                .push(" AND id = ")
                .push_bind(id.as_uuid());
            tx.execute(sql).await.map_err(db)?;
        }
        insert_event(&mut *tx, event).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn complete(&self, c: &Completion) -> Result<CompletionOutcome, StoreError> {
        let driver = &*self.driver;
        driver.dialect().complete(driver, c).await
    }

    async fn events(&self, mode: Mode, id: ResetId) -> Result<Vec<ResetEvent>, StoreError> {
        let mut conn = self.driver.connection().await.map_err(db)?;
        trail(&mut *conn, mode, id).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_published_purge_statement_is_the_one_the_store_runs() {
        let sql = super::purge_ended_resets(chrono::Utc::now());
        assert_eq!(sql.text(), super::PURGE_ENDED_RESETS);
        assert_eq!(sql.args().len(), 1);
    }
}
