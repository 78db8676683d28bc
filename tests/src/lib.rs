//! Test harness shared by pwreset's cross-crate suites: fresh databases for every test.
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

pub mod postgres;

use std::future::Future;
use std::panic::resume_unwind;
use std::path::PathBuf;
use std::sync::Arc;

use pwreset_adapter_sql::SqlStore;

/// Which storage adapter a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A fresh, migrated database and the store over it.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub backend: Backend,
    pub store: SqlStore,
    /// A URL the application can be pointed at.
    pub url: String,
}

/// Runs `case` against a fresh database of `backend`, then drops the database whatever
/// the outcome, then re-raises a panic from the case.
pub async fn with_db<F, Fut>(backend: Backend, case: F)
where
    F: FnOnce(TestDb) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    match backend {
        Backend::Postgres => {
            let db = postgres::fresh_database().await;
            let store = pwreset_adapter_postgres::connect(&db.url, 20)
                .await
                .unwrap_or_else(|e| panic!("cannot open test database {}: {e:#}", db.name));
            let test_db = TestDb {
                backend,
                store,
                url: db.url.clone(),
            };
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
            let test_db = TestDb {
                backend,
                store,
                url,
            };
            let outcome = tokio::spawn(case(test_db)).await;
            let _ = std::fs::remove_dir_all(&dir);
            if let Err(e) = outcome {
                resume_unwind(e.into_panic());
            }
        }
    }
}

/// The store as both storage ports.
#[must_use]
pub fn ports(
    store: &SqlStore,
) -> (
    Arc<dyn pwreset_domain::ports::ResetStore>,
    Arc<dyn pwreset_domain::ports::CustomerStore>,
) {
    let s = Arc::new(store.clone());
    (s.clone(), s)
}
