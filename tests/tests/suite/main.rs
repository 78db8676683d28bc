//! pwreset's cross-crate test binary (one binary links once: fast on two cores).
//!
//! - `storage`: the storage contract, written once and run against every storage adapter;
//!   each case appears as `storage::memory::<case>`, `storage::postgres::<case>` and
//!   `storage::sqlite::<case>` (the few cases about SQL itself on the last two only).
//! - `blackbox`: the real application on a random port over each database, driven over
//!   real HTTP; cases appear as `blackbox::postgres::<case>` and `blackbox::sqlite::<case>`.
//! - `blackbox_signin`: sign-in over real HTTP: clients made with `pwreset client`, the
//!   three grants, revocation, customer tokens, sessions ended by a reset, the JWKS and the
//!   sign-in limits, as `blackbox_signin::<backend>::<case>`.
//! - `delivery`: mail through a real local SMTP server and signed webhooks to a real local
//!   receiver, with the SMTP server down and back.
//! - `upgrade`: databases written by the release before sqlx's migrator, opened by today's
//!   code on each database: nothing lost, a second start changes nothing, concurrent starts
//!   take turns.

#![allow(
    clippy::unwrap_used,
    reason = "a test binary: helpers outside #[test] functions fail the test by panicking too"
)]

/// Instantiates each listed `async fn(TestDb)` case once per backend, as
/// `<module>::<backend>::<case>`, each on a fresh store.
///
/// - `per_backend!(a, b)`: on the databases, `postgres` and `sqlite` (cases that start the
///   application, which needs a database URL);
/// - `per_backend!(every: [a, b], sql_only: [c])`: `a` and `b` on `memory`, `postgres` and
///   `sqlite`; `c` (about SQL itself, e.g. query plans) on `postgres` and `sqlite` only.
macro_rules! per_backend {
    ($($case:ident),+ $(,)?) => {
        per_backend!(@module postgres Postgres [$($case),+]);
        per_backend!(@module sqlite Sqlite [$($case),+]);
    };
    (every: [$($case:ident),+ $(,)?], sql_only: [$($sql:ident),* $(,)?] $(,)?) => {
        per_backend!(@module memory Memory [$($case),+]);
        per_backend!(@module postgres Postgres [$($case),+ $(, $sql)*]);
        per_backend!(@module sqlite Sqlite [$($case),+ $(, $sql)*]);
    };
    (@module $module:ident $backend:ident [$($case:ident),+]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    pwreset_tests::with_db(pwreset_tests::Backend::$backend, super::$case).await;
                }
            )+
        }
    };
}

mod blackbox;
mod blackbox_signin;
mod delivery;
mod storage;
mod upgrade;
