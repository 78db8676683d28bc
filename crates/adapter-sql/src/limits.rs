//! `RateLimitStore` over SQL: one upsert per bucket and window.

use async_trait::async_trait;
use pwreset_domain::ports::{RateLimitStore, StoreError};
use pwreset_domain::{Bucket, Timestamp};

use crate::SqlStore;
use crate::driver::{Ty, Val};
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
        let mut tx = self.driver.begin().await.map_err(db)?;
        let mut counts = Vec::with_capacity(buckets.len());
        for b in buckets {
            let start = b.window_start(now);
            let rows = tx
                .fetch(
                    "INSERT INTO rate_limits (key, window_start, expires_at, count) \
                     VALUES ($1, $2, $3, 1) ON CONFLICT (key, window_start) \
                     DO UPDATE SET count = rate_limits.count + 1 RETURNING count",
                    vec![
                        b.key.clone().into(),
                        start.into(),
                        (start + b.limit.window).into(),
                    ],
                    &[Ty::Int],
                )
                .await
                .map_err(db)?;
            counts.push(count_of(rows));
        }
        tx.commit().await.map_err(db)?;
        Ok(counts)
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
