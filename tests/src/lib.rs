//! Test harness shared by pwreset's cross-crate suites: a fresh store for every test.
//!
//! Memory: a new `pwreset-adapter-memory` store, empty and gone when the test ends.
//!
//! Postgres: the server comes from `PWRESET_TEST_DATABASE_URL` if set; otherwise the one
//! on 127.0.0.1:5432 if it answers; otherwise a throwaway cluster started from the
//! installed `initdb`/`postgres` binaries under `target/pwreset-test-pg` (as the
//! `postgres` user when running as root, since PostgreSQL refuses to run as root). If none
//! of that works the test fails with a message saying what to install; it never skips.
//! Each test gets its own database cloned from a migrated template (created once per
//! schema version) and dropped afterwards, even when the test panics.
//!
//! SQLite: each test gets its own database file in a temporary directory, migrated on
//! open (a few milliseconds) and deleted afterwards.
//!
//! A case sees the storage ports as trait objects ([`TestDb`]), so one case body runs on
//! every backend. The few checks no port exposes (outbox rows, query plans) go through
//! the functions at the end of this file, which look at each backend its own way.

#![allow(
    clippy::missing_panics_doc,
    reason = "a test harness: panicking with a message is how it fails the test that called it"
)]

pub mod http;
pub mod postgres;
pub mod proxy;
pub mod sinks;

use std::future::Future;
use std::panic::resume_unwind;
use std::path::PathBuf;
use std::sync::Arc;

use pwreset_adapter_memory::MemoryStore;
use pwreset_domain::ports::{
    ClientStore, CustomerStore, OutboxStore, RateLimitStore, ResetStore, SessionStore,
};

/// Which storage adapter a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Postgres,
    Sqlite,
}

/// A fresh, empty store of one backend, as the storage ports.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub backend: Backend,
    pub resets: Arc<dyn ResetStore>,
    pub customers: Arc<dyn CustomerStore>,
    pub outbox: Arc<dyn OutboxStore>,
    pub limits: Arc<dyn RateLimitStore>,
    pub clients: Arc<dyn ClientStore>,
    pub sessions: Arc<dyn SessionStore>,
    place: Place,
}

/// Where the data lives, for the checks that no port exposes.
#[derive(Debug, Clone)]
enum Place {
    Memory(MemoryStore),
    /// A database the application can be pointed at.
    Sql {
        url: String,
    },
}

impl TestDb {
    fn new<S>(backend: Backend, store: S, place: Place) -> Self
    where
        S: ResetStore
            + CustomerStore
            + OutboxStore
            + RateLimitStore
            + ClientStore
            + SessionStore
            + 'static,
    {
        let store = Arc::new(store);
        Self {
            backend,
            resets: store.clone(),
            customers: store.clone(),
            outbox: store.clone(),
            limits: store.clone(),
            clients: store.clone(),
            sessions: store,
            place,
        }
    }

    /// The ports over an existing SQL database at `url`, opened as `store`.
    #[must_use]
    pub fn sql(backend: Backend, store: pwreset_adapter_sql::SqlStore, url: String) -> Self {
        Self::new(backend, store, Place::Sql { url })
    }

    /// The database URL the application can be started with.
    ///
    /// # Panics
    /// On the memory backend, which no separate application can reach: cases that start
    /// the application run on the SQL backends only.
    #[must_use]
    pub fn url(&self) -> &str {
        match &self.place {
            Place::Sql { url } => url,
            Place::Memory(_) => panic!("the memory backend has no URL; run this case on SQL"),
        }
    }
}

/// Runs `case` against a fresh store of `backend`, then drops the database whatever the
/// outcome, then re-raises a panic from the case.
pub async fn with_db<F, Fut>(backend: Backend, case: F)
where
    F: FnOnce(TestDb) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    match backend {
        Backend::Memory => {
            let store = MemoryStore::new();
            let test_db = TestDb::new(backend, store.clone(), Place::Memory(store));
            if let Err(e) = tokio::spawn(case(test_db)).await {
                resume_unwind(e.into_panic());
            }
        }
        Backend::Postgres => {
            let db = postgres::fresh_database().await;
            let store = pwreset_adapter_postgres::connect(&db.url, 20)
                .await
                .unwrap_or_else(|e| panic!("cannot open test database {}: {e:#}", db.name));
            let url = db.url.clone();
            let test_db = TestDb::new(backend, store, Place::Sql { url });
            let outcome = tokio::spawn(case(test_db)).await;
            postgres::drop_database(&db.name).await;
            if let Err(e) = outcome {
                resume_unwind(e.into_panic());
            }
        }
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("pwreset-test-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).expect("cannot create a temporary directory");
            let path: PathBuf = dir.join("pwreset.db");
            let url = format!("sqlite://{}", path.display());
            let store = pwreset_adapter_sqlite::connect(&url, 8)
                .await
                .unwrap_or_else(|e| panic!("cannot open SQLite test database: {e:#}"));
            let test_db = TestDb::new(backend, store, Place::Sql { url });
            let outcome = tokio::spawn(case(test_db)).await;
            let _ = std::fs::remove_dir_all(&dir);
            if let Err(e) = outcome {
                resume_unwind(e.into_panic());
            }
        }
    }
}

/// Everything the service logged in this test process, at TRACE level.
pub mod logs {
    use std::io::Write;
    use std::sync::{Mutex, Once};

    static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    static INIT: Once = Once::new();

    struct Capture;

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            BUFFER
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Installs the capturing subscriber (once per process) at the most verbose level.
    pub fn capture() {
        INIT.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
                .with_ansi(false)
                .with_writer(|| Capture)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the test binary");
        });
    }

    /// The captured lines that contain `needle`.
    #[must_use]
    pub fn lines_with(needle: &str) -> Vec<String> {
        text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Everything captured so far.
    #[must_use]
    pub fn text() -> String {
        String::from_utf8_lossy(
            &BUFFER
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

/// A running application on a random port, over a test database.
#[derive(Debug)]
pub struct RunningApp {
    pub addr: std::net::SocketAddr,
    /// `/metrics` on its own listener, when the case set `metrics_bind`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub settings: pwreset_app::Settings,
    handle: pwreset_app::StopHandle,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The RSA key test applications sign access tokens with (PKCS#8 PEM), made once per test
/// process.
pub static TEST_SIGNING_KEY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    pwreset_adapter_crypto::generate_signing_key_pem().expect("an RSA key can be generated")
});
/// The token digest key test applications use (base64url of 32 bytes).
pub const TEST_DIGEST_KEY: &str = "dGVzdC1kaWdlc3Qta2V5LXRlc3QtZGlnZXN0LWtleSE";

impl RunningApp {
    /// Builds and starts the real application over `db` on 127.0.0.1:0.
    ///
    /// # Panics
    /// When it cannot start.
    pub async fn start(db: &TestDb, configure: impl FnOnce(&mut pwreset_app::Settings)) -> Self {
        logs::capture();
        let mut settings = pwreset_app::Settings::defaults();
        settings.bind = "127.0.0.1:0".into();
        settings.database_url = Some(db.url().to_owned());
        if db.backend == Backend::Postgres
            && let Ok(pooler) = std::env::var("PWRESET_TEST_POOLER")
        {
            // The cluster check runs the black-box cases once through PgBouncer in
            // transaction mode: the application's statements go through the pooler, its
            // migrations (and the cases' own checks) to Postgres directly.
            settings.database_url = Some(postgres::through(db.url(), &pooler));
            settings.database_migration_url = Some(db.url().to_owned());
            settings.db_transaction_pooler = true;
        }
        settings.data_dir = std::env::temp_dir().join("pwreset-test-unused-data-dir");
        settings.signing_keys = Some(TEST_SIGNING_KEY.clone());
        settings.token_digest_keys = Some(TEST_DIGEST_KEY.into());
        settings.workers = Some(1);
        settings.db_max_connections = 8;
        // The development mailer logs links; tests that want mail configure SMTP.
        settings.mail_preview = false;
        settings.outbox_poll_ms = 50;
        settings.retry_base_ms = 200;
        configure(&mut settings);
        let app = pwreset_app::Application::build(&settings)
            .await
            .unwrap_or_else(|e| panic!("application did not start: {e:#}"));
        let addr = app.addr();
        let metrics_addr = app.metrics_addr();
        let handle = app.handle();
        let running = tokio::spawn(app.run_until_stopped());
        Self {
            addr,
            metrics_addr,
            settings,
            handle,
            running,
        }
    }

    /// The access token signer this application uses (same keys, issuer, organization).
    ///
    /// # Panics
    /// When the test key does not load.
    #[must_use]
    pub fn signer(&self) -> pwreset_adapter_crypto::RsaAccessTokens {
        pwreset_adapter_crypto::RsaAccessTokens::from_pem(
            self.settings
                .signing_keys
                .as_deref()
                .unwrap_or(&TEST_SIGNING_KEY),
            self.settings.issuer(),
            pwreset_adapter_crypto::Organization::from_slug(&self.settings.organization),
        )
        .expect("the test signing key loads")
    }

    /// An operator bearer token for this application (as `pwreset token` makes), valid
    /// for an hour.
    ///
    /// # Panics
    /// When signing fails.
    #[must_use]
    pub fn token(&self, kind: pwreset_adapter_http::AppKind, mode: pwreset_domain::Mode) -> String {
        use pwreset_domain::ports::AccessTokens;
        let now = chrono::Utc::now().timestamp();
        self.signer()
            .sign(&pwreset_domain::AccessClaims {
                client: None,
                kind,
                mode,
                customer: None,
                session: None,
                issued_at: now,
                expires_at: now + 3600,
            })
            .expect("the test key signs")
    }

    /// Stops the application as SIGTERM would and waits until it has, in-flight requests
    /// finished.
    ///
    /// # Panics
    /// When the server failed or its task panicked.
    pub async fn stop(self) {
        self.handle.stop();
        self.running
            .await
            .expect("the application task panicked")
            .expect("the server failed");
    }
}

/// A raw-row check on a SQL backend (no port exposes rows, by design).
async fn scalar(db: &TestDb, sql: &'static str) -> i64 {
    match db.backend {
        Backend::Memory => panic!("no SQL on the memory backend: {sql}"),
        Backend::Postgres => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
                .await
                .expect("connect");
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&mut conn)
                .await
                .expect(sql)
        }
        Backend::Sqlite => {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(db.url())
                .await
                .expect("connect");
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&mut conn)
                .await
                .expect(sql)
        }
    }
}

/// Moves reset `id`'s expiry one second into the past, as if its lifetime had run out (a
/// SQL backend; black-box tests have no clock to turn).
///
/// # Panics
/// On the memory backend, or when no reset has that id.
pub async fn expire_reset(db: &TestDb, id: &str) {
    let id = uuid::Uuid::parse_str(id).expect("a reset id");
    let affected = match db.backend {
        Backend::Memory => panic!("no SQL on the memory backend"),
        Backend::Postgres => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
                .await
                .expect("connect");
            sqlx::query(
                "UPDATE password_resets SET expires_at = now() - interval '1 second' WHERE id = $1",
            )
            .bind(id)
            .execute(&mut conn)
            .await
            .expect("age a reset")
            .rows_affected()
        }
        Backend::Sqlite => {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(db.url())
                .await
                .expect("connect");
            sqlx::query(
                "UPDATE password_resets SET expires_at = \
                 (CAST(strftime('%s', 'now') AS INTEGER) - 1) * 1000 WHERE id = ?1",
            )
            .bind(id.to_string())
            .execute(&mut conn)
            .await
            .expect("age a reset")
            .rows_affected()
        }
    };
    assert_eq!(affected, 1, "no reset {id}");
}

/// The one argument of a query whose plan is asked for.
#[derive(Debug, Clone, Copy)]
pub enum PlanArg {
    Id(uuid::Uuid),
    Time(chrono::DateTime<chrono::Utc>),
    /// A mode (`$1`) and an id (`$2`).
    ModeId(&'static str, uuid::Uuid),
}

/// The query plan the database picks for `sql` (its bound arguments `arg`), as text. On
/// Postgres sequential scans are discouraged first, so an index that can serve the query
/// shows up however small the tables are, and the plan is the generic one, which is what
/// the service's cached statements run after their first executions.
pub async fn query_plan(db: &TestDb, sql: &str, arg: PlanArg) -> String {
    use sqlx::Row;
    match db.backend {
        Backend::Memory => panic!("query plans exist on the SQL backends only"),
        Backend::Postgres => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
                .await
                .expect("connect");
            sqlx::raw_sql("SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan")
                .execute(&mut conn)
                .await
                .expect("SET");
            let q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")));
            let q = match arg {
                PlanArg::Id(id) => q.bind(id),
                PlanArg::Time(t) => q.bind(t),
                PlanArg::ModeId(mode, id) => q.bind(mode).bind(id),
            };
            let rows = q.fetch_all(&mut conn).await.expect(sql);
            rows.iter()
                .map(|r| r.get::<String, _>(0))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Backend::Sqlite => {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(db.url())
                .await
                .expect("connect");
            let sql = sql.replace('$', "?");
            let q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
            // The SQLite driver stores ids as text and times as integer milliseconds.
            let q = match arg {
                PlanArg::Id(id) => q.bind(id.to_string()),
                PlanArg::Time(t) => q.bind(t.timestamp_millis()),
                PlanArg::ModeId(mode, id) => q.bind(mode).bind(id.to_string()),
            };
            let rows = q.fetch_all(&mut conn).await.expect(&sql);
            rows.iter()
                .map(|r| r.get::<String, _>(3))
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
}

/// The memory store's outbox counts, as the number a SQL `count(*)` would give.
fn memory_count(
    store: &MemoryStore,
    count: impl Fn(pwreset_adapter_memory::OutboxSummary) -> usize,
) -> i64 {
    i64::try_from(count(store.outbox_summary())).expect("a count fits in i64")
}

/// Outbox messages that still hold a raw token.
pub async fn outbox_secrets(db: &TestDb) -> i64 {
    match &db.place {
        Place::Memory(store) => memory_count(store, |s| s.holding_secret),
        Place::Sql { .. } => {
            scalar(db, "SELECT count(*) FROM outbox WHERE secret IS NOT NULL").await
        }
    }
}

/// All outbox messages, whatever their status.
pub async fn outbox_rows(db: &TestDb) -> i64 {
    match &db.place {
        Place::Memory(store) => memory_count(store, |s| s.messages),
        Place::Sql { .. } => scalar(db, "SELECT count(*) FROM outbox").await,
    }
}

/// Outbox messages still waiting for delivery (neither delivered nor dead). Once it is 0,
/// nothing more will be sent unless something new is queued.
pub async fn outbox_pending(db: &TestDb) -> i64 {
    match &db.place {
        Place::Memory(store) => memory_count(store, |s| s.pending),
        Place::Sql { .. } => {
            scalar(db, "SELECT count(*) FROM outbox WHERE status = 'pending'").await
        }
    }
}

/// The most delivery attempts any outbox message took.
pub async fn outbox_max_attempts(db: &TestDb) -> i64 {
    match &db.place {
        Place::Memory(store) => i64::from(store.outbox_summary().max_attempts),
        Place::Sql { .. } => scalar(db, "SELECT coalesce(max(attempts), 0) FROM outbox").await,
    }
}
