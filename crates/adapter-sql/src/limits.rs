//! `RateLimitStore` over SQL: one counter row per bucket key and window.

use anyhow::anyhow;
use async_trait::async_trait;
use pwreset_domain::ports::{RateLimitStore, StoreError};
use pwreset_domain::{Bucket, Timestamp};

use crate::SqlStore;
use crate::error::db;
use crate::sql::Sql;
use crate::value::{Ty, Val};

/// A stored count, which is never negative.
fn count(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n)
        .map_err(|_| StoreError::unexpected(anyhow!("rate limit count {n} is negative")))
}

/// The count of a peek: no row is a window nobody hit yet.
fn count_of(rows: &[Vec<Val>]) -> Result<u64, StoreError> {
    match rows {
        [] => Ok(0),
        [row] => match row.as_slice() {
            [Val::Int(n)] => count(*n),
            other => Err(StoreError::unexpected(anyhow!(
                "rate limit count is {other:?}"
            ))),
        },
        _ => Err(StoreError::unexpected(anyhow!(
            "several rate limit rows for one key and window"
        ))),
    }
}

#[async_trait]
impl RateLimitStore for SqlStore {
    async fn hit(&self, buckets: &[Bucket], now: Timestamp) -> Result<Vec<u64>, StoreError> {
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        // One multi-row upsert: a single statement is atomic on its own, so no
        // transaction and one round trip whatever the number of buckets. Limits that share
        // a counter (same key and window) count one hit, once.
        let mut counters: Vec<(&str, Timestamp)> = Vec::with_capacity(buckets.len());
        let mut sql =
            Sql::new("INSERT INTO rate_limits (key, window_start, expires_at, count) VALUES ");
        for b in buckets {
            let start = b.window_start(now);
            if counters.contains(&(b.key.as_str(), start)) {
                continue;
            }
            if !counters.is_empty() {
                sql.push(", ");
            }
            counters.push((b.key.as_str(), start));
            sql.push("(")
                .push_binds([
                    b.key.as_str().into(),
                    start.into(),
                    (start + b.limit.window).into(),
                ])
                .push(", 1)");
        }
        sql.push(
            " ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limits.count + 1 \
             RETURNING key, window_start, count",
        );
        let mut conn = self.driver.connection().await.map_err(db)?;
        let rows = conn
            .fetch(sql, &[Ty::Text, Ty::Time, Ty::Int])
            .await
            .map_err(db)?;
        let mut counted: Vec<(String, Timestamp, u64)> = Vec::with_capacity(rows.len());
        for row in rows {
            let [Val::Text(key), Val::Time(start), Val::Int(n)] = row.as_slice() else {
                return Err(StoreError::unexpected(anyhow!(
                    "rate limit upsert returned {row:?}"
                )));
            };
            counted.push((key.clone(), *start, count(*n)?));
        }
        buckets
            .iter()
            .map(|b| {
                let start = b.window_start(now);
                counted
                    .iter()
                    .find(|(k, s, _)| *k == b.key && *s == start)
                    .map(|(_, _, n)| *n)
                    .ok_or_else(|| {
                        StoreError::unexpected(anyhow!(
                            "rate limit upsert returned no count for {}",
                            b.key
                        ))
                    })
            })
            .collect()
    }

    async fn peek(&self, buckets: &[Bucket], now: Timestamp) -> Result<Vec<u64>, StoreError> {
        let mut conn = self.driver.connection().await.map_err(db)?;
        let mut counts = Vec::with_capacity(buckets.len());
        for b in buckets {
            let mut sql = Sql::new("SELECT count FROM rate_limits WHERE key = ");
            sql.push_bind(b.key.as_str())
                .push(" AND window_start = ")
                .push_bind(b.window_start(now));
            let rows = conn.fetch(sql, &[Ty::Int]).await.map_err(db)?;
            counts.push(count_of(&rows)?);
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_counter_is_zero_and_a_bad_one_an_error() {
        assert_eq!(count_of(&[]).unwrap(), 0);
        assert_eq!(count_of(&[vec![Val::Int(3)]]).unwrap(), 3);
        assert!(count_of(&[vec![Val::Int(-1)]]).is_err());
        assert!(count_of(&[vec![Val::Null(Ty::Int)]]).is_err());
        assert!(count_of(&[vec![Val::Int(1)], vec![Val::Int(2)]]).is_err());
    }
}
