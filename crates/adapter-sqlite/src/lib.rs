//! The SQLite driver of pwreset's SQL storage adapter: the embedded default, so the
//! service runs with nothing installed.
//!
//! [`SqliteDriver`] implements `pwreset_adapter_sql::Driver` on a database file in WAL
//! mode. Ids are stored as canonical UUID text, timestamps as integer Unix milliseconds
//! and metadata as JSON text; `LIKE` is made case-sensitive so filters behave exactly as
//! on Postgres.
//!
//! SQLite lets one writer at a time hold the file's write lock, and a writer that finds it
//! taken sleeps and retries (the busy handler), so under load some writers retry many
//! times while later ones walk in: at 64 connections the p99 of creates was 14 times their
//! mean. Here every write goes through one writer connection, handed out in arrival order
//! by a fair pool of one, so writes queue in order and never meet the lock held by another
//! connection of this process; reads run on their own pool of connections beside it (WAL
//! readers never wait for the writer). Write transactions still start with
//! `BEGIN IMMEDIATE`, for other processes on the same file (the `pwreset` CLI).

use std::str::FromStr;

use anyhow::Context;
use async_trait::async_trait;
use chrono::DateTime;
use pwreset_adapter_sql::atomic;
use pwreset_adapter_sql::{
    CUSTOMER_EMAIL_KEY, DbError, Dialect, Driver, Executor, PoolSettings, PoolStats, Sql, SqlStore,
    Transaction, Ty, Val, Waiters,
};
use pwreset_domain::AddressedReset;
use pwreset_domain::ports::{Completion, CompletionOutcome, StoreError};
use pwreset_domain::{
    ClientKey, NewSession, OutboxMessage, PasswordReset, RefreshRecord, ResetEvent, Rotation,
    Timestamp, TokenDigest,
};
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, Sqlite};
use uuid::Uuid;

mod migrations;

pub use migrations::{migrate, migrator};

/// An SQLite database file: a pool of readers and one writer connection.
#[derive(Debug, Clone)]
pub struct SqliteDriver {
    readers: SqlitePool,
    /// One connection, handed out in the order it was asked for.
    writer: SqlitePool,
    waiters: Waiters,
}

impl SqliteDriver {
    /// Opens (creating if missing) the database at `url` (`sqlite://path` or a plain path)
    /// with up to `max_connections` readers and one writer.
    ///
    /// # Errors
    /// When the file cannot be opened or created.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        Self::connect_with(url, &PoolSettings::new(max_connections)).await
    }

    /// [`SqliteDriver::connect`] with the pool's size and deadlines: how long a request
    /// waits for a connection (the writer included), and how long a statement waits for
    /// the file's lock held by another process.
    ///
    /// # Errors
    /// When the file cannot be opened or created.
    pub async fn connect_with(url: &str, pool: &PoolSettings) -> anyhow::Result<Self> {
        let max_connections = pool.max_connections;
        let url = if url.starts_with("sqlite:") {
            url.to_owned()
        } else {
            format!("sqlite://{url}")
        };
        let options = SqliteConnectOptions::from_str(&url)
            .with_context(|| format!("invalid SQLite URL {url}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(pool.statement_timeout)
            .foreign_keys(true)
            .pragma("case_sensitive_like", "ON");
        let acquire = pool.acquire_timeout;
        let pool = |size: u32| {
            SqlitePoolOptions::new()
                .max_connections(size)
                // An embedded file does not drop connections; no need to ping before use.
                .test_before_acquire(false)
                .acquire_timeout(acquire)
        };
        // The writer first: it creates the file and switches it to WAL.
        let writer = pool(1)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open SQLite database {url}"))?;
        let readers = pool(max_connections.max(1))
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open SQLite database {url}"))?;
        Ok(Self {
            readers,
            writer,
            waiters: Waiters::default(),
        })
    }

    /// The writer's pool (of one connection), for migrations and anything else that
    /// writes outside the store.
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }
}

/// Whether `sql` only reads: a plain `SELECT` (every write of the stores starts with
/// `INSERT`, `UPDATE`, `DELETE` or `WITH`, and anything not recognised goes to the writer,
/// which is always correct, only not concurrent).
fn reads_only(sql: &Sql) -> bool {
    sql.text()
        .trim_start()
        .get(..7)
        .is_some_and(|head| head.eq_ignore_ascii_case("SELECT "))
}

/// Opens `url`, applies pending migrations and returns the store.
///
/// # Errors
/// When the file cannot be opened or a migration fails.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<SqlStore> {
    connect_with(url, &PoolSettings::new(max_connections)).await
}

/// [`connect`] with the pool's size and deadlines.
///
/// # Errors
/// When the file cannot be opened or a migration fails.
pub async fn connect_with(url: &str, pool: &PoolSettings) -> anyhow::Result<SqlStore> {
    let driver = SqliteDriver::connect_with(url, pool).await?;
    migrate(driver.pool()).await?;
    Ok(SqlStore::new(std::sync::Arc::new(driver)))
}

/// `$1`-style placeholders become SQLite's numbered `?1`, which may repeat.
fn render(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

type SqliteQuery = Query<'static, Sqlite, SqliteArguments>;

fn bind(q: SqliteQuery, v: Val) -> SqliteQuery {
    match v {
        Val::Null(Ty::Bytes) => q.bind(None::<Vec<u8>>),
        Val::Null(Ty::Int | Ty::Time) => q.bind(None::<i64>),
        Val::Null(_) => q.bind(None::<String>),
        Val::Uuid(u) => q.bind(u.hyphenated().to_string()),
        Val::Text(s) => q.bind(s),
        Val::Time(t) => q.bind(t.timestamp_millis()),
        Val::Bytes(b) => q.bind(b),
        Val::Int(i) => q.bind(i),
        Val::Json(j) => q.bind(j.to_string()),
        // SQLite has no arrays; no statement of this driver binds one.
        Val::Uuids(ids) => q.bind(
            serde_json::Value::from(ids.iter().map(ToString::to_string).collect::<Vec<_>>())
                .to_string(),
        ),
    }
}

fn build(sql: Sql) -> SqliteQuery {
    let (text, args) = sql.into_parts();
    args.into_iter()
        .fold(sqlx::query(AssertSqlSafe(render(&text))), bind)
}

/// SQLite names the columns of a violated unique constraint (`UNIQUE constraint failed:
/// customers.mode, customers.email_normalized`), not the constraint: these are the
/// schema's unique constraints by their columns, under the names Postgres gives them.
const UNIQUE_CONSTRAINTS: &[(&str, &str)] = &[
    (
        "customers.mode, customers.email_normalized",
        CUSTOMER_EMAIL_KEY,
    ),
    ("customers.id", "customers_pkey"),
    ("password_resets.id", "password_resets_pkey"),
    (
        "password_resets.token_digest",
        "password_resets_token_digest_key",
    ),
    ("reset_events.id", "reset_events_pkey"),
    ("outbox.id", "outbox_pkey"),
    (
        "rate_limits.key, rate_limits.window_start",
        "rate_limits_pkey",
    ),
    ("clients.id", "clients_pkey"),
    ("clients.client_id", "clients_client_id_key"),
    ("sessions.id", "sessions_pkey"),
    ("refresh_tokens.digest", "refresh_tokens_pkey"),
];

/// The logical constraint a unique violation's message names (the columns themselves
/// when the schema has no such constraint).
fn unique_constraint(message: &str) -> String {
    let columns = message
        .split_once("failed: ")
        .map_or(message, |(_, columns)| columns)
        .trim();
    UNIQUE_CONSTRAINTS
        .iter()
        .find(|(c, _)| *c == columns)
        .map_or_else(
            || format!("unique({columns})"),
            |(_, name)| (*name).to_owned(),
        )
}

/// Whether `e` says the file could not be used now: the wait for a connection or for the
/// lock (`SQLITE_BUSY`, `SQLITE_LOCKED`, held by another process) passed its deadline.
fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|code| {
            // The primary result code is the low byte of an extended one.
            code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
        }),
        _ => false,
    }
}

fn err(e: sqlx::Error) -> DbError {
    if unavailable(&e) {
        return DbError::Unavailable(anyhow::Error::new(e));
    }
    if let sqlx::Error::Database(d) = &e {
        match d.kind() {
            sqlx::error::ErrorKind::UniqueViolation => {
                return DbError::Unique {
                    constraint: unique_constraint(d.message()),
                };
            }
            sqlx::error::ErrorKind::NotNullViolation => {
                let column = d.message().split_once("failed: ").map(|(_, c)| c.trim());
                if let Some(column) = column {
                    return DbError::NotNull {
                        column: column.to_owned(),
                    };
                }
            }
            _ => {}
        }
    }
    DbError::Other(anyhow::Error::new(e))
}

fn decode(row: &sqlx::sqlite::SqliteRow, types: &[Ty]) -> anyhow::Result<Vec<Val>> {
    types
        .iter()
        .enumerate()
        .map(|(i, &ty)| {
            let null = Val::Null(ty);
            Ok(match ty {
                Ty::Uuid => match row.try_get::<Option<String>, _>(i)? {
                    Some(s) => Val::Uuid(Uuid::parse_str(&s).context("stored id is not a UUID")?),
                    None => null,
                },
                Ty::Text => row.try_get::<Option<String>, _>(i)?.map_or(null, Val::Text),
                Ty::Time => match row.try_get::<Option<i64>, _>(i)? {
                    Some(ms) => Val::Time(
                        DateTime::from_timestamp_millis(ms)
                            .context("stored timestamp out of range")?,
                    ),
                    None => null,
                },
                Ty::Bytes => row
                    .try_get::<Option<Vec<u8>>, _>(i)?
                    .map_or(null, Val::Bytes),
                Ty::Int => row.try_get::<Option<i64>, _>(i)?.map_or(null, Val::Int),
                Ty::Json => match row.try_get::<Option<String>, _>(i)? {
                    Some(s) => {
                        Val::Json(serde_json::from_str(&s).context("stored JSON is invalid")?)
                    }
                    None => null,
                },
            })
        })
        .collect()
}

async fn execute(conn: &mut SqliteConnection, sql: Sql) -> Result<u64, DbError> {
    build(sql)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(err)
}

async fn fetch(
    conn: &mut SqliteConnection,
    sql: Sql,
    types: &[Ty],
) -> Result<Vec<Vec<Val>>, DbError> {
    let rows = build(sql).fetch_all(conn).await.map_err(err)?;
    rows.iter()
        .map(|r| decode(r, types).map_err(DbError::Other))
        .collect()
}

/// A pooled connection or an open transaction: both are a `SqliteConnection` underneath.
struct Exec<C>(C);

#[async_trait]
impl<C> Executor for Exec<C>
where
    C: std::ops::DerefMut<Target = SqliteConnection> + Send,
{
    async fn execute(&mut self, sql: Sql) -> Result<u64, DbError> {
        execute(&mut self.0, sql).await
    }
    async fn fetch(&mut self, sql: Sql, types: &[Ty]) -> Result<Vec<Vec<Val>>, DbError> {
        fetch(&mut self.0, sql, types).await
    }
}

impl SqliteDriver {
    /// The writer connection, in its turn.
    async fn writer(&self) -> Result<PoolConnection<Sqlite>, DbError> {
        self.waiters.wait(self.writer.acquire()).await.map_err(err)
    }
}

/// The executor of statements outside a transaction: reads on a reader connection (taken
/// at the first read and kept), each write on the writer, in its turn.
struct Routed {
    driver: SqliteDriver,
    reader: Option<PoolConnection<Sqlite>>,
}

impl Routed {
    async fn reader(&mut self) -> Result<&mut SqliteConnection, DbError> {
        if self.reader.is_none() {
            let driver = &self.driver;
            self.reader = Some(
                driver
                    .waiters
                    .wait(driver.readers.acquire())
                    .await
                    .map_err(err)?,
            );
        }
        Ok(self.reader.as_mut().expect("acquired above"))
    }
}

#[async_trait]
impl Executor for Routed {
    async fn execute(&mut self, sql: Sql) -> Result<u64, DbError> {
        let mut writer = self.driver.writer().await?;
        execute(&mut writer, sql).await
    }
    async fn fetch(&mut self, sql: Sql, types: &[Ty]) -> Result<Vec<Vec<Val>>, DbError> {
        if reads_only(&sql) {
            fetch(self.reader().await?, sql, types).await
        } else {
            let mut writer = self.driver.writer().await?;
            fetch(&mut writer, sql, types).await
        }
    }
}

#[async_trait]
impl Transaction for Exec<sqlx::Transaction<'static, Sqlite>> {
    async fn commit(self: Box<Self>) -> Result<(), DbError> {
        self.0.commit().await.map_err(err)
    }
}

/// SQLite's dialect: its JSON expression; every atomic write is the generic transaction
/// (`BEGIN IMMEDIATE`, so it never fails to upgrade its lock), and claims need no row
/// lock because SQLite has one writer at a time.
#[derive(Debug, Clone, Copy)]
pub struct SqliteDialect;

#[async_trait]
impl Dialect for SqliteDialect {
    fn json_key_eq(&self, column: &str, key: &str, value: &str) -> String {
        format!("({column} -> {key}) = json({value})")
    }

    async fn create(
        &self,
        driver: &dyn Driver,
        reset: &PasswordReset,
        event: &ResetEvent,
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError> {
        atomic::create(driver, reset, event, outbox).await
    }

    async fn create_for_email(
        &self,
        driver: &dyn Driver,
        request: &AddressedReset,
    ) -> Result<Option<PasswordReset>, StoreError> {
        atomic::create_for_email(driver, request).await
    }

    async fn complete(
        &self,
        driver: &dyn Driver,
        c: &Completion,
    ) -> Result<CompletionOutcome, StoreError> {
        atomic::complete(driver, c).await
    }

    async fn open_session(&self, driver: &dyn Driver, new: &NewSession) -> Result<(), StoreError> {
        atomic::open_session(driver, new).await
    }

    async fn rotate(
        &self,
        driver: &dyn Driver,
        presented: &[TokenDigest],
        client: ClientKey,
        next: &RefreshRecord,
        now: Timestamp,
    ) -> Result<Rotation, StoreError> {
        atomic::rotate(driver, presented, client, next, now).await
    }
}

#[async_trait]
impl Driver for SqliteDriver {
    fn dialect(&self) -> &dyn Dialect {
        &SqliteDialect
    }

    async fn connection(&self) -> Result<Box<dyn Executor>, DbError> {
        Ok(Box::new(Routed {
            driver: self.clone(),
            reader: None,
        }))
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>, DbError> {
        Ok(Box::new(Exec(
            self.waiters
                .wait(self.writer.begin_with("BEGIN IMMEDIATE"))
                .await
                .map_err(err)?,
        )))
    }

    async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        let idle = self.readers.num_idle() + self.writer.num_idle();
        PoolStats {
            connections: self.readers.size() + self.writer.size(),
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            waiting: self.waiters.now(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unique_violations_are_named_like_the_postgres_constraints() {
        assert_eq!(
            super::unique_constraint(
                "UNIQUE constraint failed: customers.mode, customers.email_normalized"
            ),
            pwreset_adapter_sql::CUSTOMER_EMAIL_KEY
        );
        assert_eq!(
            super::unique_constraint("UNIQUE constraint failed: customers.id"),
            "customers_pkey"
        );
        assert_eq!(
            super::unique_constraint("UNIQUE constraint failed: t.a, t.b"),
            "unique(t.a, t.b)"
        );
    }

    #[test]
    fn only_plain_selects_go_to_the_readers() {
        use pwreset_adapter_sql::Sql;
        assert!(super::reads_only(&Sql::new("SELECT id FROM t")));
        assert!(super::reads_only(&Sql::new("  select 1")));
        for write in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1 RETURNING id",
            "DELETE FROM t",
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
            "SELECTED",
            "",
        ] {
            assert!(!super::reads_only(&Sql::new(write)), "{write}");
        }
    }

    #[test]
    fn placeholders_become_numbered_question_marks() {
        assert_eq!(
            super::render("a = $1 AND b >= $12 AND c = '$x'"),
            "a = ?1 AND b >= ?12 AND c = '$x'"
        );
    }
}
