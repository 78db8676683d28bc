//! `RateLimitStore` over SQL: one counter row per bucket key and window.

use async_trait::async_trait;
use pwreset_domain::ports::{RateLimitStore, StoreError};
use pwreset_domain::{Bucket, Timestamp};

use crate::SqlStore;
use crate::driver::{Ty, Val};
use crate::list::Sql;
use crate::resets::db;

fn count_of(rows: Vec<Vec<Val>>) -> u64 {
    match rows.into_iter().next().and_then(|r| r.into_iter().next()) {
        Some(Val::Int(n)) => u64::try_from(n).unwrap_or(0),
        _ => 0,
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
            let k = sql.bind(b.key.as_str());
            let w = sql.bind(start);
            let e = sql.bind(start + b.limit.window);
            sql.push(&format!("({k}, {w}, {e}, 1)"));
        }
        sql.push(
            " ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limits.count + 1 \
             RETURNING key, window_start, count",
        );
        let mut conn = self.driver.connection().await.map_err(db)?;
        let rows = conn
            .fetch(&sql.text, sql.args, &[Ty::Text, Ty::Time, Ty::Int])
            .await
            .map_err(db)?;
        let mut counted: Vec<(String, Timestamp, u64)> = Vec::with_capacity(rows.len());
        for row in rows {
            if let [Val::Text(key), Val::Time(start), Val::Int(n)] = row.as_slice() {
                counted.push((key.clone(), *start, u64::try_from(*n).unwrap_or(0)));
            }
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
                        StoreError::unexpected(anyhow::anyhow!(
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
            let rows = conn
                .fetch(
                    "SELECT count FROM rate_limits WHERE key = $1 AND window_start = $2",
                    vec![b.key.clone().into(), b.window_start(now).into()],
                    &[Ty::Int],
                )
                .await
                .map_err(db)?;
            counts.push(count_of(rows));
        }
        Ok(counts)
    }
}
