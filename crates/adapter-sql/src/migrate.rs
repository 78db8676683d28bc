//! Adopting a database that today's drivers did not migrate themselves.
//!
//! Migrations run through sqlx's migrator (each driver crate owns its scripts and the
//! `Migrator` built from them; sqlx checksums every applied script and, on Postgres, holds
//! an advisory lock while it works). Releases before that recorded their migrations in a
//! table of their own, `pwreset_migrations (version, name, checksum)`, with a 64-bit FNV-1a
//! checksum. [`adoptable`] decides, from that record, which versions may be entered into
//! sqlx's table as already applied; the drivers read the record and write the adoption.

/// A migration as the releases before sqlx's migrator recorded it: what they wrote into
/// `pwreset_migrations` after running the script that is still embedded today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyMigration {
    pub version: i64,
    pub name: &'static str,
    /// The hex FNV-1a 64 checksum the old runner stored for this very script.
    pub checksum: &'static str,
}

/// One row of `pwreset_migrations` as found in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyRecord {
    pub version: i64,
    pub name: String,
    pub checksum: String,
}

/// The versions to adopt, in order, when the database holds `recorded`.
///
/// Every recorded row must be a migration the driver still embeds, with the same version,
/// the same name and the very checksum the old runner stored for that script (so the
/// schema is the one the embedded scripts make), and the recorded versions must be
/// `1..=n` without a gap (the old runner applied them in order, all or nothing).
///
/// # Errors
/// When a row is unknown (a database from another release or another program) or its name
/// or checksum differs, or versions are missing.
pub fn adoptable(recorded: &[LegacyRecord], known: &[LegacyMigration]) -> anyhow::Result<Vec<i64>> {
    let mut versions = Vec::with_capacity(recorded.len());
    for (i, row) in recorded.iter().enumerate() {
        let Some(k) = known.iter().find(|k| k.version == row.version) else {
            anyhow::bail!(
                "pwreset_migrations records version {} ({}), which this release does not know",
                row.version,
                row.name
            );
        };
        if k.name != row.name || k.checksum != row.checksum {
            anyhow::bail!(
                "pwreset_migrations records version {} as {:?} with checksum {}, but this \
                 release's script {} is {:?} with checksum {}",
                row.version,
                row.name,
                row.checksum,
                k.version,
                k.name,
                k.checksum
            );
        }
        let expected = i64::try_from(i).unwrap_or(i64::MAX).saturating_add(1);
        if row.version != expected {
            anyhow::bail!(
                "pwreset_migrations skips version {expected}: found {} next",
                row.version
            );
        }
        versions.push(row.version);
    }
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[LegacyMigration] = &[
        LegacyMigration {
            version: 1,
            name: "init",
            checksum: "aa",
        },
        LegacyMigration {
            version: 2,
            name: "outbox",
            checksum: "bb",
        },
    ];

    fn row(version: i64, name: &str, checksum: &str) -> LegacyRecord {
        LegacyRecord {
            version,
            name: name.into(),
            checksum: checksum.into(),
        }
    }

    #[test]
    fn a_matching_record_is_adopted_in_order() {
        let rows = [row(1, "init", "aa"), row(2, "outbox", "bb")];
        assert_eq!(adoptable(&rows, KNOWN).unwrap(), vec![1, 2]);
        assert_eq!(adoptable(&rows[..1], KNOWN).unwrap(), vec![1]);
        assert!(adoptable(&[], KNOWN).unwrap().is_empty());
    }

    #[test]
    fn unknown_renamed_changed_or_missing_versions_are_refused() {
        for rows in [
            vec![row(1, "init", "aa"), row(3, "later", "cc")],
            vec![row(1, "first", "aa")],
            vec![row(1, "init", "ab")],
            vec![row(2, "outbox", "bb")],
        ] {
            assert!(adoptable(&rows, KNOWN).is_err(), "{rows:?}");
        }
    }
}
