//! pwreset's cross-crate test binary (one binary links once: fast on two cores).
//!
//! - `storage`: the storage contract, written once and run against every storage adapter;
//!   each case appears as `storage::postgres::<case>` and `storage::sqlite::<case>`.
//! - `blackbox`: the real application on a random port over each database, driven over
//!   real HTTP; cases appear as `blackbox::postgres::<case>` and `blackbox::sqlite::<case>`.
//! - `delivery`: mail through a real local SMTP server and signed webhooks to a real local
//!   receiver, with the SMTP server down and back.
//! - `upgrade`: databases written by the release before sqlx's migrator, opened by today's
//!   code on each database: nothing lost, a second start changes nothing, concurrent starts
//!   take turns.

/// Instantiates each listed `async fn(TestDb)` case once per storage backend, as
/// `<module>::postgres::<case>` and `<module>::sqlite::<case>`, each on a fresh database.
macro_rules! per_backend {
    ($($case:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    pwreset_tests::with_db(pwreset_tests::Backend::Postgres, super::$case).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    pwreset_tests::with_db(pwreset_tests::Backend::Sqlite, super::$case).await;
                }
            )+
        }
    };
}

mod blackbox;
mod delivery;
mod storage;
mod upgrade;
