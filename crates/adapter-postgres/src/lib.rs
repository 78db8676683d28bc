//! The PostgreSQL driver of pwreset's SQL storage adapter.
//!
//! [`PgDriver`] implements `pwreset_adapter_sql::Driver` over an sqlx pool with native
//! types (uuid, timestamptz, jsonb, bytea). [`connect`] opens a pool, applies the embedded
//! migrations and returns a ready [`SqlStore`]; [`migrate`] and [`migrator`] are also exposed for an
//! explicit `migrate` command.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pwreset_adapter_sql::{
    DbError, Dialect, Driver, Executor, PoolSettings, PoolStats, Sql, SqlStore, Transaction, Ty,
    Val, Waiters,
};
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgDatabaseError, PgPool, PgPoolOptions, PgSslMode,
};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, Row};
use uuid::Uuid;

mod dialect;
mod migrations;

pub use dialect::PgDialect;
pub use migrations::{migrate, migrator};

/// The statement that lifts the statement deadline for the rest of a transaction (the
/// retention purge's); the driver's own deadline is lifted with it.
pub(crate) const LIFT_DEADLINE: &str = "SET LOCAL statement_timeout = 0";

/// How much longer than the server's `statement_timeout` the driver waits for an answer
/// before it gives up on its own: the server's deadline fires first and keeps the
/// connection; the driver's covers a server (or a pooler, or a network) that says nothing.
const DEADLINE_MARGIN: Duration = Duration::from_secs(1);

/// Runs `op` within `deadline` (none when `None`): past it, the database is unavailable.
async fn within<T>(
    deadline: Option<Duration>,
    op: impl std::future::Future<Output = Result<T, DbError>>,
) -> Result<T, DbError> {
    match deadline {
        None => op.await,
        Some(d) => tokio::time::timeout(d, op).await.unwrap_or_else(|_| {
            Err(DbError::Unavailable(anyhow::anyhow!(
                "no answer from the database within {} ms",
                d.as_millis()
            )))
        }),
    }
}

/// A Postgres database reached through an sqlx pool.
#[derive(Debug, Clone)]
pub struct PgDriver {
    pool: PgPool,
    /// Behind a transaction pooler: the statement that opens every transaction (with the
    /// statement deadline set for it), and every statement runs in one. `None` when the
    /// URL reaches Postgres itself.
    pooled_begin: Option<String>,
    waiters: Waiters,
    /// How long one statement, `BEGIN` or `COMMIT` may take from this side (the
    /// statement deadline and a margin); `None` without a statement deadline.
    deadline: Option<Duration>,
}

/// Where the database URL leads: to Postgres itself, or to a pooler such as PgBouncer in
/// `pool_mode = transaction`, which hands out a server connection per transaction.
///
/// sqlx parses a statement in one round trip and binds it in the next; between the two, a
/// transaction pooler may hand the client's next message to another server connection,
/// where the statement does not exist (PgBouncer before 1.21 cannot track them). Behind
/// such a pooler the driver therefore keeps no named statements, runs every statement
/// inside a transaction of its own (so it stays on one server connection), sets the
/// statement deadline per transaction (`SET LOCAL`, since a pooler refuses or drops the
/// startup `options` that carry it otherwise), and sends no startup parameter PgBouncer
/// does not know. Session state (advisory locks, `SET`) cannot be used through it, so
/// migrations need a URL of the server itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Route {
    /// The URL reaches Postgres: named statements cached per connection.
    #[default]
    Direct,
    /// The URL reaches a transaction pooler.
    TransactionPooler,
}

impl PgDriver {
    /// Opens a pool of at most `max_connections` to `url`, with the default deadlines.
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached in time.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        Self::connect_with(url, &PoolSettings::new(max_connections)).await
    }

    /// [`PgDriver::connect_with`] for a URL that leads where `route` says.
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached in time.
    pub async fn connect_routed(
        url: &str,
        pool: &PoolSettings,
        route: Route,
    ) -> anyhow::Result<Self> {
        let deadline = pool.statement_timeout.as_millis();
        let (options, pooled_begin) = match route {
            // 0 is Postgres's "no deadline".
            Route::Direct => (
                connect_options(url)?.options([("statement_timeout", format!("{deadline}ms"))]),
                None,
            ),
            Route::TransactionPooler => (
                connect_options(url)?
                    .statement_cache_capacity(0)
                    .extra_float_digits(None),
                Some(format!("BEGIN; SET LOCAL statement_timeout = {deadline}")),
            ),
        };
        let pg = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            // sqlx pings every connection it hands out by default: a second round trip per
            // query. Broken connections surface as an error on their next query instead
            // (and are then dropped), and idle ones are recycled after 10 minutes.
            .test_before_acquire(false)
            .idle_timeout(Duration::from_secs(600))
            .connect_with(options)
            .await
            .map_err(|e| {
                let hint = tls_hint(&e);
                anyhow::Error::new(e).context(format!(
                    "cannot connect to Postgres at {}{hint}",
                    redact_url(url)
                ))
            })?;
        Ok(Self {
            pool: pg,
            pooled_begin,
            waiters: Waiters::default(),
            deadline: (!pool.statement_timeout.is_zero())
                .then(|| pool.statement_timeout + DEADLINE_MARGIN),
        })
    }

    /// Opens a pool to `url` as `pool` says: its size, how long a request waits for a
    /// connection, and each statement's `statement_timeout`.
    ///
    /// # Errors
    /// When the URL is invalid or the server cannot be reached in time.
    pub async fn connect_with(url: &str, pool: &PoolSettings) -> anyhow::Result<Self> {
        Self::connect_routed(url, pool, Route::Direct).await
    }

    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Opens `url`, applies pending migrations and returns the store.
///
/// # Errors
/// When the database cannot be reached or a migration fails.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<SqlStore> {
    connect_with(url, &PoolSettings::new(max_connections)).await
}

/// [`connect`] with the pool's size and deadlines. Migrations run first, on a connection
/// of their own without the statement deadline (building an index on a large table takes
/// longer than any request should).
///
/// # Errors
/// When the database cannot be reached or a migration fails.
pub async fn connect_with(url: &str, pool: &PoolSettings) -> anyhow::Result<SqlStore> {
    connect_routed(url, pool, Route::Direct, None).await
}

/// [`connect_with`] for a URL that leads where `route` says. Migrations run over
/// `migration_url` when given, else over `url`; behind a transaction pooler they need a
/// URL of Postgres itself (they hold a session's advisory lock), so one is required then.
///
/// # Errors
/// When the database cannot be reached, a migration fails, or a pooler's URL comes
/// without a migration URL.
pub async fn connect_routed(
    url: &str,
    pool: &PoolSettings,
    route: Route,
    migration_url: Option<&str>,
) -> anyhow::Result<SqlStore> {
    let migration_url = match (route, migration_url) {
        (_, Some(direct)) => direct,
        (Route::Direct, None) => url,
        (Route::TransactionPooler, None) => anyhow::bail!(
            "behind a transaction pooler (PWRESET_DB_TRANSACTION_POOLER) migrations need a \
             URL of Postgres itself, not of the pooler: set PWRESET_DATABASE_MIGRATION_URL"
        ),
    };
    {
        let migrations = PgDriver::connect_with(
            migration_url,
            &PoolSettings {
                max_connections: 1,
                acquire_timeout: Duration::from_secs(30),
                statement_timeout: Duration::ZERO,
            },
        )
        .await?;
        migrate(migrations.pool()).await?;
        migrations.pool().close().await;
    }
    let driver = PgDriver::connect_routed(url, pool, route).await?;
    Ok(SqlStore::new(std::sync::Arc::new(driver)))
}

/// The connection options of `url`. When neither the URL nor `PGSSLMODE` names an
/// `sslmode`, it is `disable`, not libpq's `prefer`: `prefer` encrypts without checking
/// who answers (so it keeps out no one who can sit on the path), and against a local
/// server with TLS on (Debian's default) it cost a third of the throughput. TLS is for a
/// URL (or environment) that asks for it, best with `verify-full`.
///
/// # Errors
/// When the URL does not parse.
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid Postgres URL {}: {e}", redact_url(url)))?;
    Ok(
        if names_ssl_mode(url) || std::env::var_os("PGSSLMODE").is_some() {
            options
        } else {
            options.ssl_mode(PgSslMode::Disable)
        },
    )
}

/// Whether `url`'s query names an `sslmode`, as sqlx reads it (percent-decoded keys, the
/// fragment not part of the query).
fn names_ssl_mode(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        u.query_pairs()
            .any(|(key, _)| key == "sslmode" || key == "ssl-mode")
    })
}

/// What to check when a connection failed on the server's certificate: the TLS library's
/// own words name the problem (an unknown issuer, a name the certificate does not cover),
/// not the URL parameters that decide it.
fn tls_hint(e: &sqlx::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("UnknownIssuer") || text.contains("unknown issuer") {
        " (TLS: the server's certificate is not signed by the CA in `sslrootcert`, or by a \
         public root when there is none; name the CA that signed it)"
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        " (TLS: the host name in the URL is not one the server's certificate names; connect \
         by a name it has, or use sslmode=verify-ca to check the CA only)"
    } else if text.contains("certificate") || text.contains("Certificate") {
        " (TLS: the server's certificate was refused; check `sslmode` and `sslrootcert`)"
    } else {
        ""
    }
}

/// The URL without its password (in the user part or a `password=` parameter), for
/// messages.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &base[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &base[..scheme + 3], &base[at..])
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key == "password" => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

type PgQuery = Query<'static, Postgres, PgArguments>;

fn bind(q: PgQuery, v: Val) -> PgQuery {
    match v {
        Val::Null(Ty::Uuid) => q.bind(None::<Uuid>),
        Val::Null(Ty::Text) => q.bind(None::<String>),
        Val::Null(Ty::Time) => q.bind(None::<DateTime<Utc>>),
        Val::Null(Ty::Bytes) => q.bind(None::<Vec<u8>>),
        Val::Null(Ty::Int) => q.bind(None::<i64>),
        Val::Null(Ty::Json) => q.bind(None::<Json<serde_json::Value>>),
        Val::Uuid(u) => q.bind(u),
        Val::Text(s) => q.bind(s),
        Val::Time(t) => q.bind(t),
        Val::Bytes(b) => q.bind(b),
        Val::Int(i) => q.bind(i),
        Val::Json(j) => q.bind(Json(j)),
        Val::Uuids(ids) => q.bind(ids),
    }
}

/// The query of `sql`, kept prepared on its connection when `persistent` (sqlx names it
/// then, even with its statement cache off), else parsed as the unnamed statement.
fn build(sql: Sql, persistent: bool) -> PgQuery {
    let (text, args) = sql.into_parts();
    args.into_iter()
        .fold(sqlx::query(AssertSqlSafe(text)), bind)
        .persistent(persistent)
}

/// Whether `e` says the server could not answer now rather than refused the statement:
/// no connection (refused, reset, TLS, the pool's wait past its deadline), or the server
/// ended or cancelled it (class 08 connection exceptions, shutdown, "cannot connect now",
/// too many connections, the statement timeout).
fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(&*code, "57P01" | "57P02" | "57P03" | "57014" | "53300")
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
                    constraint: d.constraint().unwrap_or("unnamed").to_owned(),
                };
            }
            sqlx::error::ErrorKind::NotNullViolation => {
                if let Some(pg) = d.try_downcast_ref::<PgDatabaseError>()
                    && let (Some(table), Some(column)) = (pg.table(), pg.column())
                {
                    return DbError::NotNull {
                        column: format!("{table}.{column}"),
                    };
                }
            }
            _ => {}
        }
    }
    DbError::Other(anyhow::Error::new(e))
}

fn decode(row: &sqlx::postgres::PgRow, types: &[Ty]) -> Result<Vec<Val>, sqlx::Error> {
    types
        .iter()
        .enumerate()
        .map(|(i, &ty)| {
            let null = Val::Null(ty);
            Ok(match ty {
                Ty::Uuid => row.try_get::<Option<Uuid>, _>(i)?.map_or(null, Val::Uuid),
                Ty::Text => row.try_get::<Option<String>, _>(i)?.map_or(null, Val::Text),
                Ty::Time => row
                    .try_get::<Option<DateTime<Utc>>, _>(i)?
                    .map_or(null, Val::Time),
                Ty::Bytes => row
                    .try_get::<Option<Vec<u8>>, _>(i)?
                    .map_or(null, Val::Bytes),
                Ty::Int => row.try_get::<Option<i64>, _>(i)?.map_or(null, Val::Int),
                Ty::Json => row
                    .try_get::<Option<Json<serde_json::Value>>, _>(i)?
                    .map_or(null, |j| Val::Json(j.0)),
            })
        })
        .collect()
}

async fn execute(conn: &mut PgConnection, sql: Sql, persistent: bool) -> Result<u64, DbError> {
    build(sql, persistent)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(err)
}

async fn fetch(
    conn: &mut PgConnection,
    sql: Sql,
    types: &[Ty],
    persistent: bool,
) -> Result<Vec<Vec<Val>>, DbError> {
    let rows = build(sql, persistent).fetch_all(conn).await.map_err(err)?;
    rows.iter().map(|r| decode(r, types).map_err(err)).collect()
}

/// A pooled connection or an open transaction: both are a `PgConnection` underneath.
struct Exec<C> {
    conn: C,
    /// Whether statements stay prepared on it (not behind a transaction pooler).
    persistent: bool,
    /// The driver's deadline per statement, until a statement lifts it.
    deadline: Option<Duration>,
}

#[async_trait]
impl<C> Executor for Exec<C>
where
    C: std::ops::DerefMut<Target = PgConnection> + Send,
{
    async fn execute(&mut self, sql: Sql) -> Result<u64, DbError> {
        if sql.text() == LIFT_DEADLINE {
            self.deadline = None;
        }
        within(self.deadline, execute(&mut self.conn, sql, self.persistent)).await
    }
    async fn fetch(&mut self, sql: Sql, types: &[Ty]) -> Result<Vec<Vec<Val>>, DbError> {
        within(
            self.deadline,
            fetch(&mut self.conn, sql, types, self.persistent),
        )
        .await
    }
}

/// Behind a transaction pooler, statements outside a transaction: each one in a
/// transaction of its own, committed at once, so its parse and its execution reach the
/// same server connection.
struct Autocommit {
    driver: PgDriver,
}

#[async_trait]
impl Executor for Autocommit {
    async fn execute(&mut self, sql: Sql) -> Result<u64, DbError> {
        let mut tx = self.driver.transaction().await?;
        let n = tx.execute(sql).await?;
        tx.commit_now().await?;
        Ok(n)
    }
    async fn fetch(&mut self, sql: Sql, types: &[Ty]) -> Result<Vec<Vec<Val>>, DbError> {
        let mut tx = self.driver.transaction().await?;
        let rows = tx.fetch(sql, types).await?;
        tx.commit_now().await?;
        Ok(rows)
    }
}

type PgTransaction = Exec<sqlx::Transaction<'static, Postgres>>;

impl PgTransaction {
    async fn commit_now(self) -> Result<(), DbError> {
        within(self.deadline, async {
            self.conn.commit().await.map_err(err)
        })
        .await
    }
}

impl PgDriver {
    /// A transaction (`BEGIN` with the statement deadline behind a pooler), started
    /// within the acquire deadline and then the driver's.
    async fn transaction(&self) -> Result<PgTransaction, DbError> {
        let begin = async {
            match &self.pooled_begin {
                None => self.pool.begin().await,
                Some(begin) => self.pool.begin_with(AssertSqlSafe(begin.clone())).await,
            }
            .map_err(err)
        };
        // The wait for a connection has its own deadline (the pool's acquire timeout), so
        // the driver's covers only what follows; sqlx does both in one call, so both
        // deadlines bound it here.
        let bound = self
            .deadline
            .map(|d| d + self.pool.options().get_acquire_timeout());
        let conn = Box::pin(self.waiters.wait(within(bound, begin))).await?;
        Ok(Exec {
            conn,
            persistent: self.pooled_begin.is_none(),
            deadline: self.deadline,
        })
    }
}

#[async_trait]
impl Transaction for PgTransaction {
    async fn commit(self: Box<Self>) -> Result<(), DbError> {
        (*self).commit_now().await
    }
}

#[async_trait]
impl Driver for PgDriver {
    fn dialect(&self) -> &dyn Dialect {
        &PgDialect
    }

    async fn connection(&self) -> Result<Box<dyn Executor>, DbError> {
        Ok(match &self.pooled_begin {
            None => Box::new(Exec {
                conn: self.waiters.wait(self.pool.acquire()).await.map_err(err)?,
                persistent: true,
                deadline: self.deadline,
            }),
            Some(_) => Box::new(Autocommit {
                driver: self.clone(),
            }),
        })
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>, DbError> {
        Ok(Box::new(self.transaction().await?))
    }

    async fn ping(&self) -> anyhow::Result<()> {
        // The simple protocol: one message, so it holds behind a transaction pooler too.
        within(self.deadline, async {
            sqlx::raw_sql("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(err)
        })
        .await?;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            connections: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            waiting: self.waiters.now(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_is_off_unless_the_url_asks_for_it() {
        use super::names_ssl_mode as named;
        assert!(!named("postgres://u@db:5432/pwreset"));
        assert!(!named("postgres://u@db/pwreset?application_name=x"));
        assert!(named("postgres://u@db/pwreset?sslmode=prefer"));
        assert!(named(
            "postgres://u@db/pwreset?application_name=x&sslmode=verify-full"
        ));
        assert!(named("postgres://u@db/pwreset?ssl-mode=require"));
        // As sqlx reads it: percent-decoded keys count, a fragment does not.
        assert!(named("postgres://u@db/pwreset?ssl%6Dode=require"));
        assert!(!named("postgres://u@db/pwreset#?sslmode=require"));
        assert!(!named("postgres://u@db/pwreset?notsslmode=require"));
        if std::env::var_os("PGSSLMODE").is_none() {
            use sqlx::postgres::PgSslMode;
            let mode = |url: &str| super::connect_options(url).unwrap().get_ssl_mode();
            assert!(matches!(
                mode("postgres://u@db/pwreset"),
                PgSslMode::Disable
            ));
            assert!(matches!(
                mode("postgres://u@db/pwreset?sslmode=verify-full"),
                PgSslMode::VerifyFull
            ));
        }
        assert!(super::connect_options("postgres://u@db:notaport/x").is_err());
    }

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            super::redact_url("postgres://app:s3cret@db:5432/pw"),
            "postgres://app:***@db:5432/pw"
        );
        assert_eq!(super::redact_url("postgres://db/pw"), "postgres://db/pw");
        assert_eq!(
            super::redact_url("postgres://app@db/pw?sslmode=require&password=s3cret&x=1"),
            "postgres://app:***@db/pw?sslmode=require&password=***&x=1"
        );
        assert_eq!(
            super::redact_url("postgres://app:s3cret@db/pw?sslrootcert=/a@b/ca.pem"),
            "postgres://app:***@db/pw?sslrootcert=/a@b/ca.pem"
        );
    }
}
