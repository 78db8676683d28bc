//! The SQL storage adapter of pwreset, written once for every SQL database.
//!
//! [`SqlStore`] implements the domain's `ResetStore` and `CustomerStore` ports: every
//! statement, every transaction and the translation of typed list queries live here. What
//! differs between databases is small and sits behind the [`Driver`] trait, which the
//! driver crates implement:
//! - `pwreset-adapter-postgres`: connection pool, migrations, native types (uuid,
//!   timestamptz, jsonb, bytea);
//! - `pwreset-adapter-sqlite`: the same over an embedded file (text ids, integer
//!   millisecond timestamps, JSON text).
//!
//! Statements are written with `$1`-style placeholders; drivers render them for their
//! database. Values travel as [`Val`] and rows come back as `Vec<Val>` decoded by the
//! driver according to the [`Ty`] list the statement expects. Only bound parameters are
//! used: no value is ever spliced into SQL text.

mod customers;
mod driver;
mod limits;
mod list;
mod migrate;
mod outbox;
mod resets;
mod rows;

pub use driver::{DbError, Dialect, Driver, Executor, Transaction, Ty, Typed, Val};
pub use migrate::{LegacyMigration, LegacyRecord, adoptable};
pub use resets::PURGE_ENDED_RESETS;

use std::sync::Arc;

/// The storage ports over a SQL database reached through `driver`.
#[derive(Debug, Clone)]
pub struct SqlStore {
    driver: Arc<dyn Driver>,
}

impl SqlStore {
    #[must_use]
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        Self { driver }
    }

    /// Whether the database answers a trivial query.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.driver.ping().await
    }
}

/// A `Table` a list query runs against: its name, selected columns and their types.
pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static str,
    pub types: &'static [Ty],
}

impl SqlStore {
    /// One page of `table`'s rows in `mode` matching `query`, decoded by `decode`, and the
    /// count of all that match.
    pub(crate) async fn page<F, S, T>(
        &self,
        table: &Table,
        mode: pwreset_domain::Mode,
        query: &pwreset_domain::ListQuery<F, S>,
        decode: fn(Vec<Val>) -> anyhow::Result<T>,
    ) -> Result<pwreset_domain::Page<T>, pwreset_domain::ports::StoreError>
    where
        F: pwreset_domain::Field + list::Column,
        S: pwreset_domain::SortKey + list::Column,
    {
        let dialect = self.driver.dialect();
        let mut count = list::Sql::new(&format!("SELECT count(*) FROM {}", table.name));
        list::push_where(&mut count, dialect, mode, &query.filters);
        let mut select = list::Sql::new(&format!("SELECT {} FROM {}", table.columns, table.name));
        list::push_where(&mut select, dialect, mode, &query.filters);
        select.push(&list::order_by(&query.sort));
        let limit = select.bind(i64::from(query.page.size()));
        let offset = select.bind(i64::try_from(query.page.offset()).unwrap_or(i64::MAX));
        select.push(&format!(" LIMIT {limit} OFFSET {offset}"));

        let mut conn = self.driver.connection().await.map_err(resets::db)?;
        let total = count_rows(&mut *conn, count).await?;
        let rows = conn
            .fetch(&select.text, select.args, table.types)
            .await
            .map_err(resets::db)?;
        let items = rows
            .into_iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(pwreset_domain::Page {
            items,
            record_count: total,
            request: query.page,
        })
    }
}

/// Runs a `SELECT count(*)` statement.
async fn count_rows(
    ex: &mut dyn Executor,
    sql: list::Sql,
) -> Result<u64, pwreset_domain::ports::StoreError> {
    let rows = ex
        .fetch(&sql.text, sql.args, &[Ty::Int])
        .await
        .map_err(resets::db)?;
    match rows.into_iter().next().and_then(|r| r.into_iter().next()) {
        Some(Val::Int(n)) => Ok(u64::try_from(n).unwrap_or(0)),
        other => Err(anyhow::anyhow!("count returned {other:?}").into()),
    }
}
