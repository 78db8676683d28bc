//! Upgrading in place: a database written by the release before sqlx's migrator (its own
//! `pwreset_migrations` table, versions 1-5; fixtures in `tests/fixtures/upgrade/`) is
//! opened by today's code exactly as the binary opens it (`pwreset_app::open_store`, what
//! `pwreset serve` and `pwreset migrate` run first), then served by the real application.
//! Nothing may be lost, a second start must change nothing, and instances starting
//! together must not fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use pwreset_domain::ports::{CustomerStore, ResetStore};
use pwreset_domain::{EmailAddress, EventKind, Mode, ResetId};
use pwreset_tests::{Backend, TestDb};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};

/// The token digest key the fixtures were made with (see the fixtures' README).
const FIXTURE_KEY: &str = "dXBncmFkZS1maXh0dXJlLWRpZ2VzdC1rZXktMzJieXQ";

/// What each fixture holds.
struct Fixture {
    file: &'static str,
    customer_id: &'static str,
    reset_id: &'static str,
    token: &'static str,
}

const SQLITE: Fixture = Fixture {
    file: "sqlite.sql",
    customer_id: "01a22d9a-2be7-7ccb-b375-7f021c0aabe8",
    reset_id: "01a22d9a-2bf1-751d-8b46-8071201c4a48",
    token: "h-OFkIuUFljMjEkcB7sW_whAGaVSPRPg7mYWhilz2YM",
};

const POSTGRES: Fixture = Fixture {
    file: "postgres.sql",
    customer_id: "01a22d9a-3442-7d14-95fb-0dc5140e9330",
    reset_id: "01a22d9a-344d-77dd-9610-60a09c89805b",
    token: "73H7PhRFzGT_q36RlaPrZTt__hQBPFHNoa0iF9yZyU4",
};

fn fixture_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/upgrade")
        .join(file)
}

/// A database that is dropped (Postgres) or deleted (SQLite) when the test ends.
struct Scratch {
    backend: Backend,
    url: String,
    name: String,
}

impl Scratch {
    /// A new, empty database of `backend`.
    async fn empty(backend: Backend) -> Self {
        let name = format!("pwreset_upgrade_{}", uuid::Uuid::new_v4().simple());
        match backend {
            Backend::Postgres => {
                let server = pwreset_tests::postgres::server().await;
                let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
                    .await
                    .expect("admin connection");
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create database");
                let _ = admin.close().await;
                Self {
                    backend,
                    url: format!("{server}/{name}"),
                    name,
                }
            }
            Backend::Memory => unreachable!("upgrades are of databases, not of the memory store"),
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(&name);
                std::fs::create_dir_all(&dir).expect("temporary directory");
                Self {
                    backend,
                    url: format!("sqlite://{}", dir.join("pwreset.db").display()),
                    name,
                }
            }
        }
    }

    /// A new database holding `fixture`, loaded the way each dump is meant to be restored.
    async fn with(backend: Backend, fixture: &Fixture) -> Self {
        let db = Self::empty(backend).await;
        let path = fixture_path(fixture.file);
        match backend {
            Backend::Postgres => {
                let out = Command::new(psql())
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
                    .arg(&path)
                    .output()
                    .expect("run psql");
                assert!(
                    out.status.success(),
                    "psql could not load {}: {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Backend::Memory => unreachable!("upgrades are of databases, not of the memory store"),
            Backend::Sqlite => {
                let sql = std::fs::read_to_string(&path).expect("read fixture");
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(db.url.trim_start_matches("sqlite://"))
                    .create_if_missing(true);
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .expect("open SQLite file");
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .expect("load fixture");
                let _ = conn.close().await;
            }
        }
        db
    }

    /// One text value from `sql` (a raw look at what no port shows).
    async fn text(&self, postgres: &str, sqlite: &str) -> String {
        match self.backend {
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .expect("connect");
                let v: Option<String> = sqlx::query_scalar(AssertSqlSafe(postgres.to_owned()))
                    .fetch_one(&mut conn)
                    .await
                    .expect(postgres);
                let _ = conn.close().await;
                v.unwrap_or_default()
            }
            Backend::Memory => unreachable!("upgrades are of databases, not of the memory store"),
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url)
                    .await
                    .expect("connect");
                let v: Option<String> = sqlx::query_scalar(AssertSqlSafe(sqlite.to_owned()))
                    .fetch_one(&mut conn)
                    .await
                    .expect(sqlite);
                let _ = conn.close().await;
                v.unwrap_or_default()
            }
        }
    }

    /// Every row of sqlx's migration table, as text.
    async fn applied(&self) -> String {
        self.text(
            "SELECT string_agg(version || ':' || description || ':' || success || ':' \
             || encode(checksum, 'hex') || ':' || installed_on || ':' || execution_time, \
             ',' ORDER BY version) FROM _sqlx_migrations",
            "SELECT group_concat(version || ':' || description || ':' || success || ':' \
             || hex(checksum) || ':' || installed_on || ':' || execution_time, ',') \
             FROM (SELECT * FROM _sqlx_migrations ORDER BY version)",
        )
        .await
    }

    /// Whether the old runner's table is still there.
    async fn legacy_table(&self) -> String {
        self.text(
            "SELECT coalesce(to_regclass('pwreset_migrations')::text, 'gone')",
            "SELECT coalesce((SELECT name FROM sqlite_master WHERE name = 'pwreset_migrations'), 'gone')",
        )
        .await
    }

    /// Every table's row count, as text.
    async fn counts(&self) -> String {
        let sql = "SELECT (SELECT count(*) FROM customers) || ',' || \
                   (SELECT count(*) FROM password_resets) || ',' || \
                   (SELECT count(*) FROM reset_events) || ',' || \
                   (SELECT count(*) FROM outbox) || ',' || (SELECT count(*) FROM rate_limits)";
        self.text(sql, sql).await
    }

    fn settings(&self) -> pwreset_app::Settings {
        let mut settings = pwreset_app::Settings::defaults();
        settings.database_url = Some(self.url.clone());
        settings.db_max_connections = 4;
        settings
    }

    async fn drop(self) {
        match self.backend {
            Backend::Postgres => pwreset_tests::postgres::drop_database(&self.name).await,
            Backend::Memory => unreachable!("upgrades are of databases, not of the memory store"),
            Backend::Sqlite => {
                let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&self.name));
            }
        }
    }
}

/// psql, on PATH or where Debian installs the server's client binaries.
fn psql() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("psql"))
            .find(|p| p.is_file())
    });
    if let Some(p) = on_path {
        return p;
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().expect(
        "psql is needed to restore the Postgres fixture (apt-get install postgresql-client)",
    )
}

/// Every migration today's code has: the old release's 1-5, adopted, then the newer ones.
const ALL_VERSIONS: &str = "1,2,3,4,5,6,7,8";

async fn upgrades_in_place(backend: Backend, fixture: &Fixture) {
    let db = Scratch::with(backend, fixture).await;
    let before = db.counts().await;
    assert_eq!(
        before, "1,1,1,0,4",
        "the fixture as the old release left it"
    );

    // First start of today's code: the old record is adopted.
    let store = pwreset_app::open_store(&db.settings())
        .await
        .unwrap_or_else(|e| panic!("{backend:?}: the old database did not open: {e:#}"));
    assert_eq!(db.legacy_table().await, "gone");
    let applied = db.applied().await;
    let versions: Vec<&str> = applied
        .split(',')
        .map(|row| row.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(versions.join(","), ALL_VERSIONS, "{applied}");
    assert!(
        applied
            .split(',')
            .all(|row| row.contains(":true:") || row.contains(":1:")),
        "every adopted version is recorded as a success: {applied}"
    );
    // Adoption touches no data; of the newer migrations only 0007 moves rows: the reset's
    // `requested` event now lives on the reset's row (read back below, unchanged).
    let after = "1,1,0,0,4";
    assert_eq!(
        db.counts().await,
        after,
        "no row lost but the restated event"
    );

    // A second start is a no-op: the same record, the same rows.
    let again = pwreset_app::open_store(&db.settings())
        .await
        .expect("second start");
    assert_eq!(db.applied().await, applied);
    assert_eq!(db.counts().await, after);
    drop(again);

    // The customer and the reset are there as they were.
    let jane = CustomerStore::find_by_email(
        &store,
        Mode::Test,
        &EmailAddress::parse("jane@example.com").unwrap(),
    )
    .await
    .unwrap()
    .expect("the customer survived");
    assert_eq!(jane.id.to_string(), fixture.customer_id);
    assert!(jane.password_hash.is_some());
    assert_eq!(
        jane.password_version, 0,
        "existing customers start at version 0"
    );
    let reset_id: ResetId = fixture.reset_id.parse().unwrap();
    let reset = ResetStore::find(&store, Mode::Test, reset_id)
        .await
        .unwrap()
        .expect("the reset survived");
    assert_eq!(reset.customer_id, jane.id);
    assert_eq!(
        (reset.reset_password_at, reset.invalidated_at),
        (None, None)
    );
    let events = ResetStore::events(&store, Mode::Test, reset_id)
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![EventKind::Requested]
    );
    // Moved onto the row by migration 0007 with its address and time (the fixture's
    // event row says 127.0.0.1 at the reset's creation).
    assert_eq!(events[0].client_ip, Some([127, 0, 0, 1].into()));
    assert_eq!(events[0].created_at, reset.created_at);

    // The reset expired an hour after the fixture was made; give it time again, then
    // complete it through the real application with the token the old release issued.
    let sqlite_later = "UPDATE password_resets SET expires_at = \
                        (CAST(strftime('%s', 'now') AS INTEGER) + 3600) * 1000 RETURNING 'ok'";
    let postgres_later =
        "UPDATE password_resets SET expires_at = now() + interval '1 hour' RETURNING 'ok'";
    assert_eq!(db.text(postgres_later, sqlite_later).await, "ok");
    let test_db = TestDb::sql(backend, store.clone(), db.url.clone());
    let app = crate::blackbox::start_with(&test_db, |s| {
        s.token_digest_keys = Some(FIXTURE_KEY.into());
    })
    .await;
    let res = app
        .client
        .patch(
            &format!("/api/customer_password_resets/{}", fixture.reset_id),
            &app.sales,
            crate::blackbox::complete_doc(
                fixture.reset_id,
                &json!(fixture.token),
                "a brand new password",
            ),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(
        res.json()["data"]["attributes"]["reset_password_at"].is_string(),
        "{}",
        res.body
    );
    app.app.stop().await;
    assert_eq!(
        db.applied().await,
        applied,
        "the application's start changed nothing"
    );
    drop(store);
    db.drop().await;
}

/// Several instances starting on one database at once: each must succeed, and the
/// scripts run once.
async fn concurrent_starts_take_turns(backend: Backend, fixture: Option<&Fixture>) {
    let db = match fixture {
        Some(f) => Scratch::with(backend, f).await,
        None => Scratch::empty(backend).await,
    };
    if backend == Backend::Sqlite {
        // Create the file first, as one SQLite process does before others share it.
        drop(
            pwreset_adapter_sqlite::SqliteDriver::connect(&db.url, 1)
                .await
                .unwrap(),
        );
    }
    let settings = db.settings();
    let starts = (0..4).map(|_| {
        let settings = settings.clone();
        tokio::spawn(async move { pwreset_app::open_store(&settings).await.map(drop) })
    });
    for start in starts {
        start
            .await
            .expect("no panic")
            .unwrap_or_else(|e| panic!("{backend:?}: a concurrent start failed: {e:#}"));
    }
    let applied = db.applied().await;
    assert_eq!(
        applied.matches(',').count() + 1,
        ALL_VERSIONS.split(',').count(),
        "{applied}"
    );
    assert_eq!(db.legacy_table().await, "gone");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_database_of_the_old_release_upgrades_in_place() {
    upgrades_in_place(Backend::Sqlite, &SQLITE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database_of_the_old_release_upgrades_in_place() {
    upgrades_in_place(Backend::Postgres, &POSTGRES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_starts_on_an_old_database_take_turns() {
    concurrent_starts_take_turns(Backend::Postgres, Some(&POSTGRES)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_starts_on_an_empty_database_take_turns() {
    concurrent_starts_take_turns(Backend::Postgres, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_starts_on_an_old_database_take_turns() {
    concurrent_starts_take_turns(Backend::Sqlite, Some(&SQLITE)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_starts_on_an_empty_database_take_turns() {
    concurrent_starts_take_turns(Backend::Sqlite, None).await;
}
