//! `RateLimitStore` in memory: one counter per bucket key and window.

use async_trait::async_trait;
use pwreset_domain::ports::{RateLimitStore, StoreError};
use pwreset_domain::{Bucket, Timestamp};

use crate::MemoryStore;
use crate::state::Counter;

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn hit(&self, buckets: &[Bucket], now: Timestamp) -> Result<Vec<u64>, StoreError> {
        let mut state = self.lock();
        // Limits that share a counter (same key and window) count one hit, once.
        let mut counted: Vec<(&str, Timestamp)> = Vec::with_capacity(buckets.len());
        for b in buckets {
            let start = b.window_start(now);
            if counted.contains(&(b.key.as_str(), start)) {
                continue;
            }
            counted.push((b.key.as_str(), start));
            let counter = state
                .counters
                .entry((b.key.clone(), start))
                .or_insert(Counter {
                    count: 0,
                    expires_at: start + b.limit.window,
                });
            counter.count = counter.count.saturating_add(1);
        }
        Ok(counts(&state.counters, buckets, now))
    }

    async fn peek(&self, buckets: &[Bucket], now: Timestamp) -> Result<Vec<u64>, StoreError> {
        Ok(counts(&self.lock().counters, buckets, now))
    }
}

/// Each bucket's count in the window containing `now`, in order (0 for no counter).
fn counts(
    counters: &std::collections::HashMap<(String, Timestamp), Counter>,
    buckets: &[Bucket],
    now: Timestamp,
) -> Vec<u64> {
    buckets
        .iter()
        .map(|b| {
            counters
                .get(&(b.key.clone(), b.window_start(now)))
                .map_or(0, |c| c.count)
        })
        .collect()
}
