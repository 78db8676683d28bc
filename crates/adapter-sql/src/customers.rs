//! `CustomerStore` over SQL.

use async_trait::async_trait;
use pwreset_domain::ports::{CredentialChange, CustomerStore, StoreError};
use pwreset_domain::{
    Customer, CustomerField, CustomerId, CustomerSort, EmailAddress, ListQuery, Mode, Page,
    PasswordHash,
};

use crate::SqlStore;
use crate::atomic::{revoke_outstanding, revoke_sessions};
use crate::error::{customer_write, db};
use crate::events::delete_resets_keeping_trails;
use crate::list::Table;
use crate::rows::{
    CUSTOMER_COLUMNS, CUSTOMER_TYPES, customer_from_row, customer_values, json_of, text_of,
};
use crate::sql::Sql;
use crate::value::{Ty, Val};

fn one_customer(rows: Vec<Vec<Val>>) -> Result<Option<Customer>, StoreError> {
    let mut rows = rows.into_iter();
    let first = rows.next();
    if rows.next().is_some() {
        return Err(StoreError::unexpected(anyhow::anyhow!(
            "expected at most one customer, got several"
        )));
    }
    first
        .map(customer_from_row)
        .transpose()
        .map_err(StoreError::unexpected)
}

impl SqlStore {
    /// The customer in `mode` whose `column` is `value`.
    async fn find_customer_by(
        &self,
        mode: Mode,
        column: &'static str,
        value: Val,
    ) -> Result<Option<Customer>, StoreError> {
        let mut sql = Sql::new("SELECT ");
        sql.push(CUSTOMER_COLUMNS)
            .push(" FROM customers WHERE mode = ")
            .push_bind(mode.as_str())
            .push(" AND ")
            .push(column)
            .push(" = ")
            .push_bind(value);
        let mut conn = self.driver.connection().await.map_err(db)?;
        one_customer(conn.fetch(sql, CUSTOMER_TYPES).await.map_err(db)?)
    }
}

#[async_trait]
impl CustomerStore for SqlStore {
    async fn create(&self, c: &Customer) -> Result<(), StoreError> {
        let mut sql = Sql::new("INSERT INTO customers (");
        sql.push(CUSTOMER_COLUMNS)
            .push(", email_normalized) VALUES (")
            .push_binds(customer_values(c))
            .push(")");
        let mut conn = self.driver.connection().await.map_err(db)?;
        conn.execute(sql).await.map_err(customer_write)?;
        Ok(())
    }

    async fn find(&self, mode: Mode, id: CustomerId) -> Result<Option<Customer>, StoreError> {
        self.find_customer_by(mode, "id", id.as_uuid().into()).await
    }

    async fn find_by_email(
        &self,
        mode: Mode,
        email: &EmailAddress,
    ) -> Result<Option<Customer>, StoreError> {
        self.find_customer_by(mode, "email_normalized", email.normalized().into())
            .await
    }

    async fn list(
        &self,
        mode: Mode,
        query: &ListQuery<CustomerField, CustomerSort>,
    ) -> Result<Page<Customer>, StoreError> {
        const TABLE: Table = Table {
            name: "customers",
            columns: CUSTOMER_COLUMNS,
            types: CUSTOMER_TYPES,
        };
        self.page(&TABLE, mode, query, customer_from_row).await
    }

    async fn update(&self, c: &Customer, change: CredentialChange) -> Result<bool, StoreError> {
        let mut sql = Sql::new("UPDATE customers SET email = ");
        sql.push_bind(c.email.as_str())
            .push(", email_normalized = ")
            .push_bind(c.email.normalized())
            .push(", reference = ")
            .push_bind(text_of(c.reference.as_ref()))
            .push(", reference_origin = ")
            .push_bind(text_of(c.reference_origin.as_ref()))
            .push(", metadata = ")
            .push_bind(json_of(c.metadata.as_ref()))
            .push(", updated_at = ")
            .push_bind(c.updated_at);
        if change == CredentialChange::Password {
            // Only a password change writes the hash: any other update would write back
            // the hash it read, undoing a reset that completed meanwhile. The version is
            // counted in the store, so that concurrent changes all count.
            sql.push(", password_hash = ")
                .push_bind(c.password_hash.as_ref().map(|h| h.as_str().to_owned()))
                .push(", password_version = password_version + 1");
        }
        sql.push(" WHERE mode = ")
            .push_bind(c.mode.as_str())
            .push(" AND id = ")
            .push_bind(c.id.as_uuid());
        let mut tx = self.driver.begin().await.map_err(db)?;
        if tx.execute(sql).await.map_err(customer_write)? == 0 {
            return Ok(false);
        }
        if change != CredentialChange::None {
            revoke_outstanding(
                &mut *tx,
                c.mode,
                c.id,
                None,
                c.updated_at,
                "credentials_changed",
            )
            .await
            .map_err(db)?;
        }
        if change == CredentialChange::Password {
            revoke_sessions(&mut *tx, c.mode, c.id, c.updated_at)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn upgrade_hash(
        &self,
        mode: Mode,
        id: CustomerId,
        old: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError> {
        let mut sql = Sql::new("UPDATE customers SET password_hash = ");
        sql.push_bind(new.as_str())
            .push(" WHERE mode = ")
            .push_bind(mode.as_str())
            .push(" AND id = ")
            .push_bind(id.as_uuid())
            .push(" AND password_hash = ")
            .push_bind(old.as_str());
        let mut conn = self.driver.connection().await.map_err(db)?;
        Ok(conn.execute(sql).await.map_err(db)? > 0)
    }

    /// Deletes the customer; their sessions and refresh tokens go with them (the schema's
    /// cascades), and so do their resets, deleted first so that their trails stay. The
    /// customer is locked first: no reset can be created for them between the two deletes
    /// (its foreign-key check waits, then fails), and the locks are taken in the order a
    /// credential change takes them (customer, then resets).
    async fn delete(&self, mode: Mode, id: CustomerId) -> Result<bool, StoreError> {
        let mut tx = self.driver.begin().await.map_err(db)?;
        let mut lock = Sql::new("SELECT id FROM customers WHERE mode = ");
        lock.push_bind(mode.as_str())
            .push(" AND id = ")
            .push_bind(id.as_uuid())
            .push(self.driver.dialect().delete_lock());
        if tx.fetch(lock, &[Ty::Uuid]).await.map_err(db)?.is_empty() {
            return Ok(false);
        }
        // By customer only, as the schema's cascade would.
        let mut resets = Sql::new("DELETE FROM password_resets WHERE customer_id = ");
        resets.push_bind(id.as_uuid());
        delete_resets_keeping_trails(&mut *tx, resets)
            .await
            .map_err(db)?;
        let mut sql = Sql::new("DELETE FROM customers WHERE mode = ");
        sql.push_bind(mode.as_str())
            .push(" AND id = ")
            .push_bind(id.as_uuid());
        tx.execute(sql).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }
}
