//! The narrow interface between the SQL written in this crate and a database: the
//! [`Driver`] that runs statements, and the [`Dialect`] of what differs.

use crate::sql::Sql;
use crate::value::{Ty, Val};
use async_trait::async_trait;
use pwreset_domain::AddressedReset;
use pwreset_domain::ports::{Completion, CompletionOutcome, StoreError};
use pwreset_domain::{
    ClientKey, NewSession, OutboxMessage, PasswordReset, RefreshRecord, ResetEvent, Rotation,
    Timestamp, TokenDigest,
};

/// How a driver's pool waits: how many connections at most, and the deadlines of a wait
/// for one and of one statement. Past either, the store answers
/// `StoreError::Unavailable` instead of waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: std::time::Duration,
    /// On Postgres the server's `statement_timeout`; on SQLite how long a statement waits
    /// for the file's lock held by another process.
    pub statement_timeout: std::time::Duration,
}

impl PoolSettings {
    /// `max_connections` with the default deadlines: 2 s to get a connection and 2 s per
    /// statement, so a request that waits for one connection and runs a statement or two
    /// stays within about 5 s.
    #[must_use]
    pub const fn new(max_connections: u32) -> Self {
        Self {
            max_connections,
            acquire_timeout: std::time::Duration::from_secs(2),
            statement_timeout: std::time::Duration::from_secs(2),
        }
    }
}

/// A pool's state now, for operators: connections open, idle among them, and callers
/// waiting for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    pub connections: u32,
    pub idle: u32,
    pub waiting: u32,
}

/// Counts the callers waiting for a connection: each [`Waiters::wait`] counts from its
/// start until its future ends or is dropped.
#[derive(Debug, Clone, Default)]
pub struct Waiters(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl Waiters {
    /// Runs `acquire`, counted while it waits.
    pub async fn wait<T>(&self, acquire: impl std::future::Future<Output = T>) -> T {
        struct Counted<'a>(&'a std::sync::atomic::AtomicU32);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _counted = Counted(&self.0);
        acquire.await
    }

    /// How many wait now.
    #[must_use]
    pub fn now(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A database failure, with the constraint violations the stores act on told apart.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A unique or primary key constraint, by its logical name (Postgres's constraint
    /// name, e.g. `customers_mode_email_key` or `reset_events_pkey`; SQLite drivers map
    /// the columns their message names to the same names).
    #[error("unique constraint {constraint} violated")]
    Unique { constraint: String },
    /// NULL written to a NOT NULL column, named `table.column`.
    #[error("NULL written to NOT NULL column {column}")]
    NotNull { column: String },
    /// The database cannot answer now (unreachable, restarting, a statement or the wait
    /// for a connection past its deadline): `StoreError::Unavailable`.
    #[error("database unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Runs statements: a pooled connection or an open transaction.
#[async_trait]
pub trait Executor: Send {
    /// Runs `sql` and returns the number of rows it changed.
    async fn execute(&mut self, sql: Sql) -> Result<u64, DbError>;

    /// Runs `sql` and decodes every row into values of the expected types (`Val::Null`
    /// where the column is NULL).
    async fn fetch(&mut self, sql: Sql, types: &[Ty]) -> Result<Vec<Vec<Val>>, DbError>;
}

/// An open transaction. Dropping it without `commit` rolls back.
#[async_trait]
pub trait Transaction: Executor {
    async fn commit(self: Box<Self>) -> Result<(), DbError>;
}

/// A database: where statements run.
#[async_trait]
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// The statements and expressions that differ on this database.
    fn dialect(&self) -> &dyn Dialect;

    /// A connection for statements that need no transaction.
    async fn connection(&self) -> Result<Box<dyn Executor>, DbError>;

    /// Starts a write transaction.
    async fn begin(&self) -> Result<Box<dyn Transaction>, DbError>;

    async fn ping(&self) -> anyhow::Result<()>;

    /// The pool's state now.
    fn pool_stats(&self) -> PoolStats;
}

/// What differs between databases, called by the generic stores, which hold no dialect
/// branches. The write methods are the atomic writes: [`crate::atomic`] has their generic
/// transactional form, which a dialect uses as is (SQLite) or replaces with a one-statement
/// form of its database (Postgres, with data-modifying CTEs, in its own crate next to the
/// rest of what speaks that dialect).
#[async_trait]
pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// `column -> key = value` for a JSON scalar: `key` and `value` are placeholders of
    /// the key (text) and the value (JSON text).
    fn json_key_eq(&self, column: &str, key: &str, value: &str) -> String;

    /// Appended to the subquery that picks the outbox messages a claim leases (e.g.
    /// `FOR UPDATE SKIP LOCKED`); empty where one writer at a time is all there is.
    fn claim_lock(&self) -> &'static str {
        ""
    }

    /// Appended to a `SELECT` of rows the transaction is about to delete, so that no other
    /// transaction can take a key-share lock on them meanwhile (`FOR UPDATE`); empty where
    /// one writer at a time is all there is.
    fn delete_lock(&self) -> &'static str {
        ""
    }

    /// A statement that lifts the per-statement deadline for the rest of the current
    /// transaction, for background work that may take longer than a request should (the
    /// retention purge); `None` where the deadline does not cut statements short.
    fn lift_statement_deadline(&self) -> Option<&'static str> {
        None
    }

    /// `ResetStore::create`: revoke the customer's outstanding resets, insert the reset,
    /// its event and its outbox messages, atomically.
    ///
    /// # Errors
    /// When the database fails; nothing is written then.
    async fn create(
        &self,
        driver: &dyn Driver,
        reset: &PasswordReset,
        event: &ResetEvent,
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError>;

    /// `ResetStore::create_for_email`: find the customer by address and, if there is one,
    /// create the reset and messages `request.for_customer` makes, as
    /// [`create`](Dialect::create) does.
    ///
    /// # Errors
    /// When the database fails; nothing is written then.
    async fn create_for_email(
        &self,
        driver: &dyn Driver,
        request: &AddressedReset,
    ) -> Result<Option<PasswordReset>, StoreError>;

    /// `ResetStore::complete`: the conditional update, and only if it matched, the
    /// password and its version, the revocation of the others and of the customer's
    /// sessions, the events and the notices, atomically.
    ///
    /// # Errors
    /// When the database fails; nothing is written then.
    async fn complete(
        &self,
        driver: &dyn Driver,
        c: &Completion,
    ) -> Result<CompletionOutcome, StoreError>;

    /// `SessionStore::open`: the session and its first refresh token, atomically.
    ///
    /// # Errors
    /// When the database fails; nothing is written then.
    async fn open_session(&self, driver: &dyn Driver, new: &NewSession) -> Result<(), StoreError>;

    /// `SessionStore::rotate`: the conditional use of the presented token, and only if it
    /// matched, the next token and the session's expiry; else reuse detection.
    ///
    /// # Errors
    /// When the database fails; nothing is written then.
    async fn rotate(
        &self,
        driver: &dyn Driver,
        presented: &[TokenDigest],
        client: ClientKey,
        next: &RefreshRecord,
        now: Timestamp,
    ) -> Result<Rotation, StoreError>;
}
