//! The narrow interface between the SQL written in this crate and a database driver.

use async_trait::async_trait;
use pwreset_domain::Timestamp;
use uuid::Uuid;

use crate::dialect::Dialect;
use crate::sql::Sql;

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// NULL of a given type (databases with typed parameters need to know which).
    Null(Ty),
    Uuid(Uuid),
    Text(String),
    Time(Timestamp),
    Bytes(Vec<u8>),
    Int(i64),
    /// A JSON document (bound to a JSON column).
    Json(serde_json::Value),
    /// A list of ids, bound as one array (`uuid[]`) where the database has arrays; only
    /// dialect statements of such databases use it.
    Uuids(Vec<Uuid>),
}

/// Rust types with a column type, so that `None` binds as a typed NULL.
pub trait Typed: Into<Val> {
    const TY: Ty;
}

impl Typed for Uuid {
    const TY: Ty = Ty::Uuid;
}
impl Typed for String {
    const TY: Ty = Ty::Text;
}
impl Typed for &str {
    const TY: Ty = Ty::Text;
}
impl Typed for Timestamp {
    const TY: Ty = Ty::Time;
}
impl Typed for i64 {
    const TY: Ty = Ty::Int;
}

impl<T: Typed> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null(T::TY), Into::into)
    }
}

impl From<Uuid> for Val {
    fn from(v: Uuid) -> Self {
        Val::Uuid(v)
    }
}

impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_owned())
    }
}

impl From<Timestamp> for Val {
    fn from(v: Timestamp) -> Self {
        Val::Time(v)
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}

/// The type a statement expects in a result column; `nullable` columns may be `Val::Null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Uuid,
    Text,
    Time,
    Bytes,
    Int,
    Json,
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
}
