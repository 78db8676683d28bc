//! Rate limiting of reset requests and failed completions: which counters a request
//! touches (its buckets) and whether one of them is over its limit.
//!
//! Counters live behind the [`RateLimitStore`] port, so limits hold across every instance
//! that shares a store. Unknown addresses are counted exactly like known ones: counting
//! happens before any lookup.

use std::sync::Arc;

use super::errors::RequestResetError;
use crate::models::{Bucket, Caller, CustomerId, EmailAddress, RateLimited, RateLimits, Timestamp};
use crate::ports::{RateLimitStore, StoreError, TokenDigester};

/// Counts requests and failures against [`RateLimits`]. A limiter without a store counts
/// nothing and refuses nothing.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    counters: Option<(Arc<dyn RateLimitStore>, Arc<RateLimits>)>,
    digester: Arc<dyn TokenDigester>,
}

/// Why a limiter refused or could not decide.
#[derive(Debug)]
pub(crate) enum LimitError {
    Exceeded(RateLimited),
    Store(StoreError),
}

impl From<StoreError> for LimitError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// A refused or failed request count, as the request use cases report it.
impl From<LimitError> for RequestResetError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Exceeded(r) => Self::RateLimited(r),
            LimitError::Store(e) => e.into(),
        }
    }
}

/// How a client address is counted: IPv4 as is, IPv6 by its /64 prefix (one subscriber's
/// network hands out a whole /64, so counting single addresses would let one client use
/// 2^64 counters).
fn client_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The bucket over its limit whose window ends last, if any.
fn exceeded(buckets: &[Bucket], counts: &[u64], now: Timestamp) -> Option<RateLimited> {
    buckets
        .iter()
        .zip(counts)
        .filter(|(b, n)| **n > u64::from(b.limit.max))
        .map(|(b, _)| RateLimited {
            limit: b.limit,
            retry_after: b.retry_after(now),
        })
        .max_by_key(|r| r.retry_after)
}

impl RateLimiter {
    /// A limiter that counts nothing.
    #[must_use]
    pub fn off(digester: Arc<dyn TokenDigester>) -> Self {
        Self {
            counters: None,
            digester,
        }
    }

    /// A limiter enforcing `limits`, counting in `store`. Email addresses are counted under
    /// their keyed fingerprint (`digester`), never in the clear.
    #[must_use]
    pub fn new(
        store: Arc<dyn RateLimitStore>,
        limits: RateLimits,
        digester: Arc<dyn TokenDigester>,
    ) -> Self {
        Self {
            counters: Some((store, Arc::new(limits))),
            digester,
        }
    }

    /// The counters one reset request for `email` by `caller` adds to.
    #[must_use]
    pub fn request_buckets(&self, caller: &Caller, email: &EmailAddress) -> Vec<Bucket> {
        let Some((_, limits)) = &self.counters else {
            return Vec::new();
        };
        let mut buckets = Vec::new();
        if !limits.per_email.is_empty() {
            let email_key = self.digester.fingerprint(email.normalized()).to_hex();
            buckets.extend(limits.per_email.iter().map(|l| Bucket {
                key: format!("request:email:{}:{email_key}", l.window.num_seconds()),
                limit: *l,
            }));
        }
        if let (Some(l), Some(c)) = (limits.per_credential, caller.credential) {
            buckets.push(Bucket {
                key: format!("request:credential:{c:016x}"),
                limit: l,
            });
        }
        if let (Some(l), Some(ip)) = (limits.per_client, caller.client_ip) {
            buckets.push(Bucket {
                key: format!("request:client:{}", client_key(ip)),
                limit: l,
            });
        }
        buckets
    }

    /// Counts one request against every applicable bucket; the one over its limit that
    /// frees up last refuses it.
    pub(crate) async fn count_request(
        &self,
        caller: &Caller,
        email: &EmailAddress,
        now: Timestamp,
    ) -> Result<(), LimitError> {
        let buckets = self.request_buckets(caller, email);
        let Some((store, _)) = &self.counters else {
            return Ok(());
        };
        if buckets.is_empty() {
            // Every request limit is off: nothing to count, no round trip.
            return Ok(());
        }
        let counts = store.hit(&buckets, now).await?;
        match exceeded(&buckets, &counts, now) {
            Some(r) => Err(LimitError::Exceeded(r)),
            None => Ok(()),
        }
    }

    fn failure_bucket(&self, customer: CustomerId) -> Option<(&dyn RateLimitStore, Bucket)> {
        let (store, limits) = self.counters.as_ref()?;
        let limit = limits.failures_per_customer?;
        Some((
            store.as_ref(),
            Bucket {
                key: format!("complete:failures:{customer}"),
                limit,
            },
        ))
    }

    /// Whether one more failed completion for `customer` would go over the limit; checked
    /// before an attempt, without counting it.
    pub(crate) async fn check_failures(
        &self,
        customer: CustomerId,
        now: Timestamp,
    ) -> Result<(), LimitError> {
        let Some((store, bucket)) = self.failure_bucket(customer) else {
            return Ok(());
        };
        let counts = store.peek(std::slice::from_ref(&bucket), now).await?;
        let with_this: Vec<u64> = counts.iter().map(|c| c + 1).collect();
        match exceeded(std::slice::from_ref(&bucket), &with_this, now) {
            Some(r) => Err(LimitError::Exceeded(r)),
            None => Ok(()),
        }
    }

    /// Counts one failed completion for `customer`.
    pub(crate) async fn count_failure(
        &self,
        customer: CustomerId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if let Some((store, bucket)) = self.failure_bucket(customer) {
            store.hit(std::slice::from_ref(&bucket), now).await?;
        }
        Ok(())
    }

    /// Counts one token request from `caller`'s address; refused over the limit.
    pub(crate) async fn count_token_request(
        &self,
        caller: &Caller,
        now: Timestamp,
    ) -> Result<(), LimitError> {
        let Some((store, limits)) = &self.counters else {
            return Ok(());
        };
        let (Some(limit), Some(ip)) = (limits.token_requests_per_client, caller.client_ip) else {
            return Ok(());
        };
        let bucket = Bucket {
            key: format!("token:client:{}", client_key(ip)),
            limit,
        };
        let counts = store.hit(std::slice::from_ref(&bucket), now).await?;
        match exceeded(std::slice::from_ref(&bucket), &counts, now) {
            Some(r) => Err(LimitError::Exceeded(r)),
            None => Ok(()),
        }
    }

    /// The sign-in attempt counter of a username: its keyed fingerprint, normalized when it
    /// parses as an address, else trimmed and lower-cased, so any spelling counts alike.
    fn signin_bucket(&self, username: &str) -> Option<(&dyn RateLimitStore, Bucket)> {
        let (store, limits) = self.counters.as_ref()?;
        let limit = limits.signin_attempts_per_email?;
        let key = match EmailAddress::parse(username) {
            Ok(email) => self.digester.fingerprint(email.normalized()),
            Err(_) => self.digester.fingerprint(&username.trim().to_lowercase()),
        };
        Some((
            store.as_ref(),
            Bucket {
                key: format!("signin:attempts:{}", key.to_hex()),
                limit,
            },
        ))
    }

    /// Counts one sign-in attempt for `username` before its password is checked, and
    /// refuses it (even with the right password) when that goes over the limit. Counting
    /// first, atomically in the store, means concurrent guesses cannot all pass a check
    /// made before any of them is counted.
    pub(crate) async fn count_signin(
        &self,
        username: &str,
        now: Timestamp,
    ) -> Result<(), LimitError> {
        let Some((store, bucket)) = self.signin_bucket(username) else {
            return Ok(());
        };
        let counts = store.hit(std::slice::from_ref(&bucket), now).await?;
        match exceeded(std::slice::from_ref(&bucket), &counts, now) {
            Some(r) => Err(LimitError::Exceeded(r)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_addresses_count_alone_and_ipv6_by_their_64_prefix() {
        let key = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_ne!(key("203.0.113.7"), key("203.0.113.8"));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn a_bucket_is_exceeded_only_past_its_maximum() {
        let now = crate::models::to_millis(chrono::Utc::now());
        let bucket = Bucket {
            key: "request:client:203.0.113.9".into(),
            limit: crate::models::Limit::new(3, chrono::TimeDelta::minutes(15)),
        };
        assert_eq!(exceeded(std::slice::from_ref(&bucket), &[3], now), None);
        let over = exceeded(std::slice::from_ref(&bucket), &[4], now).unwrap();
        assert_eq!(over.limit, bucket.limit);
    }
}
