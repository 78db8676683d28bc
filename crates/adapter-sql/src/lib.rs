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
pub use migrate::{Migration, migrate};

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

/// Runs a `SELECT count(*)` statement.
async fn count(
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
