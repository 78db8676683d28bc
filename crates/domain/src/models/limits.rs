//! Abuse limits: fixed-window counters kept by the store, so they hold across instances.

use chrono::TimeDelta;

use super::Timestamp;

/// At most `max` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: TimeDelta,
}

impl Limit {
    #[must_use]
    pub const fn new(max: u32, window: TimeDelta) -> Self {
        Self { max, window }
    }
}

/// The limits the reset service enforces. `None` switches one off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Reset requests per target address (normalized; unknown addresses count the same).
    pub per_email: Vec<Limit>,
    /// Reset requests per API credential.
    pub per_credential: Option<Limit>,
    /// Reset requests per client address.
    pub per_client: Option<Limit>,
    /// Failed completions per customer, across all of their resets.
    pub failures_per_customer: Option<Limit>,
    /// Sign-in attempts (password grants) per email address, normalized; unknown addresses
    /// count alike. Counted before the password is checked, so concurrent guesses cannot
    /// overtake the count; while over it, even the right password is refused.
    pub signin_attempts_per_email: Option<Limit>,
    /// Token requests (`/oauth/token`, every grant) per client address.
    pub token_requests_per_client: Option<Limit>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            per_email: vec![
                Limit::new(3, TimeDelta::minutes(15)),
                Limit::new(10, TimeDelta::hours(24)),
            ],
            per_credential: Some(Limit::new(10_000, TimeDelta::minutes(15))),
            per_client: Some(Limit::new(300, TimeDelta::minutes(15))),
            failures_per_customer: Some(Limit::new(100, TimeDelta::hours(1))),
            signin_attempts_per_email: Some(Limit::new(10, TimeDelta::minutes(15))),
            // Commerce Layer documents 30 requests per minute per address on /oauth/token.
            token_requests_per_client: Some(Limit::new(30, TimeDelta::minutes(1))),
        }
    }
}

/// One counter: a key and the window it counts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// An opaque key; never a raw email (emails are keyed-hashed first).
    pub key: String,
    pub limit: Limit,
}

impl Bucket {
    /// The start of the window containing `now`.
    #[must_use]
    pub fn window_start(&self, now: Timestamp) -> Timestamp {
        let w = self.limit.window.num_milliseconds().max(1);
        let t = now.timestamp_millis();
        let start = t - t.rem_euclid(w);
        chrono::DateTime::from_timestamp_millis(start).unwrap_or(now)
    }

    /// Time left in the window containing `now`.
    #[must_use]
    pub fn retry_after(&self, now: Timestamp) -> TimeDelta {
        self.window_start(now) + self.limit.window - now
    }
}

/// A limit was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    pub limit: Limit,
    /// Time until the window that was exceeded ends.
    pub retry_after: TimeDelta,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn windows_are_aligned_and_retry_after_counts_to_their_end() {
        let b = Bucket {
            key: "k".into(),
            limit: Limit::new(3, TimeDelta::minutes(15)),
        };
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 10, 7, 30).unwrap();
        assert_eq!(
            b.window_start(now),
            Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap()
        );
        assert_eq!(b.retry_after(now), TimeDelta::seconds(7 * 60 + 30));
    }
}
