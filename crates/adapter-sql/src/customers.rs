//! `CustomerStore` over SQL.

use async_trait::async_trait;
use pwreset_domain::ports::{CredentialChange, CustomerStore, StoreError};
use pwreset_domain::{
    Customer, CustomerField, CustomerId, CustomerSort, EmailAddress, ListQuery, Mode, Page,
};

use crate::SqlStore;
use crate::driver::{DbError, Val};
use crate::resets::{db, revoke_outstanding};
use crate::rows::{CUSTOMER_COLUMNS, CUSTOMER_TYPES, customer_from_row, json_of, text_of};

fn unique_is_email(e: DbError) -> StoreError {
    match e {
        DbError::UniqueViolation => StoreError::DuplicateEmail,
        other => db(other),
    }
}

fn one_customer(rows: Vec<Vec<Val>>) -> Result<Option<Customer>, StoreError> {
    rows.into_iter()
        .next()
        .map(customer_from_row)
        .transpose()
        .map_err(StoreError::unexpected)
}

impl SqlStore {
    async fn find_customer_where(
        &self,
        condition: &str,
        args: Vec<Val>,
    ) -> Result<Option<Customer>, StoreError> {
        let mut conn = self.driver.connection().await.map_err(db)?;
        let rows = conn
            .fetch(
                &format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE {condition}"),
                args,
                CUSTOMER_TYPES,
            )
            .await
            .map_err(db)?;
        one_customer(rows)
    }
}

#[async_trait]
impl CustomerStore for SqlStore {
    async fn create(&self, c: &Customer) -> Result<(), StoreError> {
        let mut conn = self.driver.connection().await.map_err(db)?;
        conn.execute(
            &format!(
                "INSERT INTO customers ({CUSTOMER_COLUMNS}, email_normalized) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            vec![
                c.id.as_uuid().into(),
                c.mode.as_str().into(),
                c.email.as_str().into(),
                c.password_hash
                    .as_ref()
                    .map(|h| h.as_str().to_owned())
                    .into(),
                text_of(c.reference.as_ref()),
                text_of(c.reference_origin.as_ref()),
                json_of(c.metadata.as_ref()),
                c.created_at.into(),
                c.updated_at.into(),
                c.email.normalized().into(),
            ],
        )
        .await
        .map_err(unique_is_email)?;
        Ok(())
    }

    async fn find(&self, mode: Mode, id: CustomerId) -> Result<Option<Customer>, StoreError> {
        self.find_customer_where(
            "mode = $1 AND id = $2",
            vec![mode.as_str().into(), id.as_uuid().into()],
        )
        .await
    }

    async fn find_by_email(
        &self,
        mode: Mode,
        email: &EmailAddress,
    ) -> Result<Option<Customer>, StoreError> {
        self.find_customer_where(
            "mode = $1 AND email_normalized = $2",
            vec![mode.as_str().into(), email.normalized().into()],
        )
        .await
    }

    async fn list(
        &self,
        mode: Mode,
        query: &ListQuery<CustomerField, CustomerSort>,
    ) -> Result<Page<Customer>, StoreError> {
        const TABLE: crate::Table = crate::Table {
            name: "customers",
            columns: CUSTOMER_COLUMNS,
            types: CUSTOMER_TYPES,
        };
        self.page(&TABLE, mode, query, customer_from_row).await
    }

    async fn update(&self, c: &Customer, change: CredentialChange) -> Result<bool, StoreError> {
        let mut tx = self.driver.begin().await.map_err(db)?;
        let n = tx
            .execute(
                "UPDATE customers SET email = $1, email_normalized = $2, password_hash = $3, \
                 reference = $4, reference_origin = $5, metadata = $6, updated_at = $7 \
                 WHERE mode = $8 AND id = $9",
                vec![
                    c.email.as_str().into(),
                    c.email.normalized().into(),
                    c.password_hash
                        .as_ref()
                        .map(|h| h.as_str().to_owned())
                        .into(),
                    text_of(c.reference.as_ref()),
                    text_of(c.reference_origin.as_ref()),
                    json_of(c.metadata.as_ref()),
                    c.updated_at.into(),
                    c.mode.as_str().into(),
                    c.id.as_uuid().into(),
                ],
            )
            .await
            .map_err(unique_is_email)?;
        if n == 0 {
            return Ok(false);
        }
        if change == CredentialChange::Changed {
            revoke_outstanding(
                &mut *tx,
                c.mode,
                c.id.as_uuid(),
                None,
                c.updated_at,
                "credentials_changed",
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn delete(&self, mode: Mode, id: CustomerId) -> Result<bool, StoreError> {
        let mut conn = self.driver.connection().await.map_err(db)?;
        let n = conn
            .execute(
                "DELETE FROM customers WHERE mode = $1 AND id = $2",
                vec![mode.as_str().into(), id.as_uuid().into()],
            )
            .await
            .map_err(db)?;
        Ok(n > 0)
    }
}
