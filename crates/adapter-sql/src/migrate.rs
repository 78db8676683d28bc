//! A small, dependency-free migration runner shared by the SQL drivers.
//!
//! Migrations are SQL scripts compiled into the binary by each driver crate. They run in
//! order inside one transaction (on Postgres under an advisory lock, so several instances
//! starting together do not race), and each applied version is recorded in
//! `pwreset_migrations` with a checksum: an applied script that later changes is an error,
//! not a silent drift.

use crate::Dialect;
use crate::driver::{Driver, Ty, Val};

/// One migration script.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// A driver's embedded schema, in order: `migrations![1 => "init", 2 => "outbox"]` is the
/// files `migrations/0001_init.sql` and `migrations/0002_outbox.sql` of the crate that
/// invokes it. Versions 1 to 9: the tenth needs a wider prefix here (a missing file is a
/// compile error naming the path, never a silent skip).
#[macro_export]
macro_rules! migrations {
    ($($version:literal => $name:literal),* $(,)?) => {
        &[$($crate::Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/000",
                $version,
                "_",
                $name,
                ".sql"
            )),
        }),*]
    };
}

fn checksum(sql: &str) -> String {
    // FNV-1a 64: enough to notice an edited script; not a security boundary.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Applies every migration not yet applied. Returns how many ran.
///
/// # Errors
/// When a script fails (nothing of it is kept) or an applied script has changed.
pub async fn migrate(driver: &dyn Driver, migrations: &[Migration]) -> anyhow::Result<usize> {
    let mut tx = driver.begin().await?;
    if driver.dialect() == Dialect::Postgres {
        tx.execute("SELECT pg_advisory_xact_lock(7324150001)", vec![])
            .await?;
    }
    tx.script(
        "CREATE TABLE IF NOT EXISTS pwreset_migrations (\
         version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL)",
    )
    .await?;
    let applied = tx
        .fetch(
            "SELECT version, checksum FROM pwreset_migrations ORDER BY version",
            vec![],
            &[Ty::Int, Ty::Text],
        )
        .await?;
    let mut ran = 0;
    for m in migrations {
        let sum = checksum(m.sql);
        let done = applied
            .iter()
            .find(|row| row.first() == Some(&Val::Int(m.version)));
        if let Some(row) = done {
            if row.get(1) != Some(&Val::Text(sum.clone())) {
                anyhow::bail!(
                    "migration {} ({}) was changed after it was applied",
                    m.version,
                    m.name
                );
            }
            continue;
        }
        tx.script(m.sql)
            .await
            .map_err(|e| anyhow::anyhow!("migration {} ({}) failed: {e}", m.version, m.name))?;
        tx.execute(
            "INSERT INTO pwreset_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            vec![m.version.into(), m.name.into(), sum.into()],
        )
        .await?;
        ran += 1;
    }
    tx.commit().await?;
    Ok(ran)
}
