//! The SQL storage adapter of pwreset, written once for every SQL database.
//!
//! [`SqlStore`] implements the domain's storage ports: every statement, every transaction
//! and the translation of typed list queries live here. What differs between databases
//! sits behind two traits the driver crates implement:
//! - [`Driver`]: connections and transactions that run a [`Sql`] statement and decode rows
//!   into [`Val`]s of the expected [`Ty`]s;
//! - [`Dialect`]: the few expressions that differ, and the atomic writes (create, create
//!   by address, complete), whose generic transactional form is [`atomic`] and which a
//!   driver may replace with a one-statement form of its database (Postgres does).
//!
//! Every value reaches a statement through the [`Sql`] builder, which numbers the
//! placeholders (`$1`, `$2`, ...; drivers render them for their database): no value is
//! ever spliced into SQL text, and no placeholder is numbered by hand.
//!
//! Modules, one job each: `sql` (the builder), `value` (bound and decoded values),
//! `driver` (`Driver` and `Dialect`), `error` (database errors to store errors), `rows` (entities to values and back),
//! `events`, `codec` (the outbox row format), `atomic` (the generic atomic writes), `list`
//! (list queries), and one module per port: `resets`, `customers`, `outbox`, `limits`,
//! `sessions` (clients and sessions).
//! Migrations belong to the driver crates (sqlx's migrator); `migrate` here only decides
//! whether an old release's migration record may be adopted.

pub mod atomic;
pub mod codec;
mod customers;
mod driver;
mod error;
mod events;
mod limits;
mod list;
mod migrate;
mod outbox;
mod resets;
pub mod rows;
mod sessions;
mod sql;
mod value;

pub use driver::{
    DbError, Dialect, Driver, Executor, PoolSettings, PoolStats, Transaction, Waiters,
};
pub use error::{CUSTOMER_EMAIL_KEY, db};
pub use events::insert_event;
pub use migrate::{LegacyMigration, LegacyRecord, adoptable};
pub use outbox::insert_outbox;
pub use resets::PURGE_ENDED_RESETS;
pub use sessions::PURGE_ENDED_SESSIONS;
pub use sql::Sql;
pub use value::{Ty, Typed, Val};

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

    /// The connection pool's state now.
    #[must_use]
    pub fn pool_stats(&self) -> PoolStats {
        self.driver.pool_stats()
    }
}
