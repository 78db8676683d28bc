//! `ClientStore` and `SessionStore` over SQL. Opening a session and rotating a refresh
//! token are the driver's [`crate::Dialect`]'s atomic writes; the rest is the same SQL on
//! every database.

use async_trait::async_trait;
use pwreset_domain::ports::{ClientStore, SessionStore, StoreError};
use pwreset_domain::{
    Client, ClientId, ClientKey, NewSession, RefreshRecord, Rotation, Session, SessionId,
    SessionStatus, Timestamp, TokenDigest,
};

use crate::SqlStore;
use crate::atomic::{digest_values, one_session, push_live_sessions};
use crate::error::db;
use crate::rows::{
    CLIENT_COLUMNS, CLIENT_TYPES, SESSION_COLUMNS, SESSION_TYPES, client_from_row, client_values,
};
use crate::sql::Sql;
use crate::value::{Ty, Val};

/// The retention purge's delete of sessions with its cutoff as `$1`: the text
/// `purge_ended_sessions` makes (a unit test checks they are the same), public for the
/// query-plan test.
pub const PURGE_ENDED_SESSIONS: &str =
    "DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1";

/// The retention purge's delete of sessions that expired or were revoked before `cutoff`
/// (their refresh tokens go with them, by the foreign key's cascade). Each half of the
/// condition has its index (`sessions_expires_idx`, the partial `sessions_revoked_idx`).
pub(crate) fn purge_ended_sessions(cutoff: Timestamp) -> Sql {
    let mut sql = Sql::new("DELETE FROM sessions WHERE expires_at < ");
    let c = sql.bind(cutoff);
    sql.push(&c).push(" OR revoked_at < ").push(&c);
    sql
}

fn clients_from_rows(rows: Vec<Vec<Val>>) -> Result<Vec<Client>, StoreError> {
    rows.into_iter()
        .map(|r| client_from_row(r).map_err(StoreError::unexpected))
        .collect()
}

#[async_trait]
impl ClientStore for SqlStore {
    async fn create(&self, client: &Client) -> Result<(), StoreError> {
        let mut sql = Sql::new("INSERT INTO clients (");
        sql.push(CLIENT_COLUMNS)
            .push(") VALUES (")
            .push_binds(client_values(client))
            .push(")");
        let mut conn = self.driver.connection().await.map_err(db)?;
        conn.execute(sql).await.map_err(db)?;
        Ok(())
    }

    async fn find(&self, client_id: &ClientId) -> Result<Option<Client>, StoreError> {
        let mut sql = Sql::new("SELECT ");
        sql.push(CLIENT_COLUMNS)
            .push(" FROM clients WHERE client_id = ")
            .push_bind(client_id.as_str());
        let mut conn = self.driver.connection().await.map_err(db)?;
        let mut clients = clients_from_rows(conn.fetch(sql, CLIENT_TYPES).await.map_err(db)?)?;
        if clients.len() > 1 {
            return Err(StoreError::unexpected(anyhow::anyhow!(
                "several clients have one client id"
            )));
        }
        Ok(clients.pop())
    }

    async fn list(&self) -> Result<Vec<Client>, StoreError> {
        let mut sql = Sql::new("SELECT ");
        sql.push(CLIENT_COLUMNS)
            .push(" FROM clients ORDER BY created_at, id");
        let mut conn = self.driver.connection().await.map_err(db)?;
        clients_from_rows(conn.fetch(sql, CLIENT_TYPES).await.map_err(db)?)
    }

    async fn revoke(&self, client_id: &ClientId, now: Timestamp) -> Result<bool, StoreError> {
        let mut sql = Sql::new("UPDATE clients SET revoked_at = ");
        sql.push_bind(now)
            .push(" WHERE client_id = ")
            .push_bind(client_id.as_str())
            .push(" AND revoked_at IS NULL");
        let mut conn = self.driver.connection().await.map_err(db)?;
        Ok(conn.execute(sql).await.map_err(db)? > 0)
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn open(&self, new: &NewSession) -> Result<(), StoreError> {
        let driver = &*self.driver;
        driver.dialect().open_session(driver, new).await
    }

    async fn status(&self, id: SessionId, now: Timestamp) -> Result<SessionStatus, StoreError> {
        let mut sql = Sql::default();
        let at = sql.bind(now);
        push_live_sessions(&mut sql, &at);
        sql.push(" AND s.id = ").push_bind(id.as_uuid());
        let mut conn = self.driver.connection().await.map_err(db)?;
        let rows = conn.fetch(sql, &[Ty::Uuid]).await.map_err(db)?;
        Ok(if rows.is_empty() {
            SessionStatus::Ended
        } else {
            SessionStatus::Live
        })
    }

    async fn find(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        let mut sql = Sql::new("SELECT ");
        sql.push(SESSION_COLUMNS)
            .push(" FROM sessions WHERE id = ")
            .push_bind(id.as_uuid());
        let mut conn = self.driver.connection().await.map_err(db)?;
        one_session(conn.fetch(sql, SESSION_TYPES).await.map_err(db)?)
    }

    async fn find_by_refresh(
        &self,
        presented: &[TokenDigest],
    ) -> Result<Option<Session>, StoreError> {
        if presented.is_empty() {
            return Ok(None);
        }
        let mut sql = Sql::new("SELECT ");
        sql.push(SESSION_COLUMNS)
            .push(" FROM sessions WHERE id IN (SELECT session_id FROM refresh_tokens WHERE digest IN (")
            .push_binds(digest_values(presented))
            .push("))");
        let mut conn = self.driver.connection().await.map_err(db)?;
        one_session(conn.fetch(sql, SESSION_TYPES).await.map_err(db)?)
    }

    async fn rotate(
        &self,
        presented: &[TokenDigest],
        client: ClientKey,
        next: &RefreshRecord,
        now: Timestamp,
    ) -> Result<Rotation, StoreError> {
        if presented.is_empty() {
            return Ok(Rotation::Invalid);
        }
        let driver = &*self.driver;
        driver
            .dialect()
            .rotate(driver, presented, client, next, now)
            .await
    }

    async fn revoke(&self, id: SessionId, now: Timestamp) -> Result<bool, StoreError> {
        let mut sql = Sql::new("UPDATE sessions SET revoked_at = ");
        sql.push_bind(now)
            .push(" WHERE id = ")
            .push_bind(id.as_uuid())
            .push(" AND revoked_at IS NULL");
        let mut conn = self.driver.connection().await.map_err(db)?;
        Ok(conn.execute(sql).await.map_err(db)? > 0)
    }

    async fn purge(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.driver.begin().await.map_err(db)?;
        if let Some(lift) = self.driver.dialect().lift_statement_deadline() {
            tx.execute(Sql::new(lift)).await.map_err(db)?;
        }
        let purged = tx.execute(purge_ended_sessions(cutoff)).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_published_purge_statement_is_the_one_the_store_runs() {
        let sql = super::purge_ended_sessions(chrono::Utc::now());
        assert_eq!(sql.text(), super::PURGE_ENDED_SESSIONS);
        assert_eq!(sql.args().len(), 1);
    }
}
