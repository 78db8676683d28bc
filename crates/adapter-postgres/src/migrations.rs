//! The Postgres schema: this crate's `migrations/` scripts, run by sqlx's migrator.
//!
//! sqlx records each applied script with its SHA-384 checksum in `_sqlx_migrations` (an
//! applied script that later changes is an error, not a silent drift) and holds a
//! session advisory lock while it works, so instances starting together take turns.
//! A database migrated by a release before this one is adopted first (see [`migrate`]).

use std::sync::LazyLock;

use anyhow::Context;
use pwreset_adapter_sql::{LegacyMigration, LegacyRecord, adoptable};
use sqlx::migrate::{Migrate, Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{ConnectOptions, Connection, SqlSafeStr};

/// sqlx's bookkeeping table (its default name).
const TABLE: &str = "_sqlx_migrations";

/// The scripts, in order: version, name (the file is `migrations/000N_name.sql`) and SQL.
const SCRIPTS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "outbox", include_str!("../migrations/0002_outbox.sql")),
    (
        3,
        "rate_limits",
        include_str!("../migrations/0003_rate_limits.sql"),
    ),
    (
        4,
        "self_service",
        include_str!("../migrations/0004_self_service.sql"),
    ),
    (
        5,
        "customer_index",
        include_str!("../migrations/0005_customer_index.sql"),
    ),
    (
        6,
        "sessions",
        include_str!("../migrations/0006_sessions.sql"),
    ),
    (
        7,
        "restated_events",
        include_str!("../migrations/0007_restated_events.sql"),
    ),
    (
        8,
        "customer_mode_indexes",
        include_str!("../migrations/0008_customer_mode_indexes.sql"),
    ),
];

/// What the releases before sqlx's migrator recorded in `pwreset_migrations` after running
/// the scripts above (their FNV-1a 64 checksums of these very files).
const LEGACY: &[LegacyMigration] = &[
    LegacyMigration {
        version: 1,
        name: "init",
        checksum: "f8e4a8c8296a3aa7",
    },
    LegacyMigration {
        version: 2,
        name: "outbox",
        checksum: "744fd57f8fcc01fc",
    },
    LegacyMigration {
        version: 3,
        name: "rate_limits",
        checksum: "d7cbcce24c9e92bf",
    },
    LegacyMigration {
        version: 4,
        name: "self_service",
        checksum: "d5d9ed587697f53c",
    },
    LegacyMigration {
        version: 5,
        name: "customer_index",
        checksum: "792ed38cb400fdd0",
    },
];

static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    Migrator::with_migrations(
        SCRIPTS
            .iter()
            .map(|&(version, name, sql)| {
                Migration::new(
                    version,
                    name.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
});

/// sqlx's migrator over this crate's scripts.
#[must_use]
pub fn migrator() -> &'static Migrator {
    &MIGRATOR
}

/// Applies every pending migration to the database `pool` reaches.
///
/// Runs on a connection of its own, so the advisory lock (the session's) ends with it
/// whatever happens. Under that lock, a database that still has the old runner's
/// `pwreset_migrations` table is adopted first: its rows must match this release's scripts
/// (see [`pwreset_adapter_sql::adoptable`]); they are entered into sqlx's table as applied,
/// and the old table is dropped, in one transaction. Then sqlx runs whatever is newer.
///
/// # Errors
/// When the database cannot be reached, the old record does not match the scripts, an
/// applied script has changed, or a script fails.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    let mut conn = pool
        .connect_options()
        .connect()
        .await
        .context("cannot connect to migrate")?;
    let outcome = locked(&mut conn).await;
    let _ = conn.close().await;
    outcome
}

async fn locked(conn: &mut PgConnection) -> anyhow::Result<()> {
    conn.lock().await?;
    adopt_legacy(conn).await?;
    // `run_direct` is `run` on a connection we hold (sqlx names it so to avoid a
    // higher-ranked `Acquire` bound that makes the future not `Send`).
    migrator()
        .run_direct(None, conn, false)
        .await
        .context("migration failed")?;
    conn.unlock().await?;
    Ok(())
}

async fn adopt_legacy(conn: &mut PgConnection) -> anyhow::Result<()> {
    let mut tx = conn.begin().await?;
    let legacy: bool = sqlx::query_scalar("SELECT to_regclass('pwreset_migrations') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await?;
    if !legacy {
        return Ok(());
    }
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT version, name, checksum FROM pwreset_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await?;
    let recorded: Vec<LegacyRecord> = rows
        .into_iter()
        .map(|(version, name, checksum)| LegacyRecord {
            version,
            name,
            checksum,
        })
        .collect();
    let versions = adoptable(&recorded, LEGACY).context("cannot adopt pwreset_migrations")?;
    Migrate::ensure_migrations_table(&mut *tx, TABLE).await?;
    for m in migrator().iter().filter(|m| versions.contains(&m.version)) {
        Migrate::skip(&mut *tx, TABLE, m).await?;
    }
    sqlx::query("DROP TABLE pwreset_migrations")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
