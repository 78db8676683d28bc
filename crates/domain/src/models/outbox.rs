//! Notifications and the outbox messages that carry them, with their retry policy.

use std::fmt;

use chrono::TimeDelta;

use super::{EmailAddress, Mode, PasswordReset, ResetId, ResetToken, Timestamp};

/// A Commerce Layer webhook topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookTopic {
    Create,
    ResetPassword,
    Destroy,
}

impl WebhookTopic {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookTopic::Create => "customer_password_resets.create",
            WebhookTopic::ResetPassword => "customer_password_resets.reset_password",
            WebhookTopic::Destroy => "customer_password_resets.destroy",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Create, Self::ResetPassword, Self::Destroy]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// Something the service tells the outside world. Mail goes only to the customer's
/// stored address; webhooks carry the reset as it was, never its token.
// Not `#[non_exhaustive]`: every storage adapter encodes every variant, so a new one is
// meant to break their build rather than fail at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// "Reset your password": carries the raw token for the link.
    ResetRequested {
        reset_id: ResetId,
        mode: Mode,
        to: EmailAddress,
        token: ResetToken,
        expires_at: Timestamp,
    },
    /// "Your password was changed".
    PasswordChanged {
        reset_id: ResetId,
        mode: Mode,
        to: EmailAddress,
        at: Timestamp,
    },
    /// A webhook with the resource as it stood.
    Webhook {
        topic: WebhookTopic,
        reset: Box<PasswordReset>,
    },
}

/// Work the service does later, on its own behalf, through the outbox worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// A self-service request: the worker looks the address up and, if it belongs to a
    /// customer, issues a reset and mails it, so the request path does the same work
    /// whether or not the address belongs to anyone.
    SelfServiceReset {
        /// The id the reset will have, if there turns out to be a customer.
        reset_id: ResetId,
        mode: Mode,
        email: EmailAddress,
        client_ip: Option<std::net::IpAddr>,
    },
}

impl Job {
    /// A short name for logs and events.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Job::SelfServiceReset { .. } => "self_service_request",
        }
    }

    #[must_use]
    pub fn reset_id(&self) -> ResetId {
        match self {
            Job::SelfServiceReset { reset_id, .. } => *reset_id,
        }
    }

    #[must_use]
    pub fn mode(&self) -> Mode {
        match self {
            Job::SelfServiceReset { mode, .. } => *mode,
        }
    }
}

/// What an outbox message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Something to tell the outside world, through a [`crate::ports::Notifier`].
    Notification(Notification),
    /// Work for the service itself.
    Job(Job),
}

impl Payload {
    /// A short name for logs and events: the notification's or the job's.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Payload::Notification(n) => n.name(),
            Payload::Job(j) => j.name(),
        }
    }

    /// The reset the message is about.
    #[must_use]
    pub fn reset_id(&self) -> ResetId {
        match self {
            Payload::Notification(n) => n.reset_id(),
            Payload::Job(j) => j.reset_id(),
        }
    }

    #[must_use]
    pub fn mode(&self) -> Mode {
        match self {
            Payload::Notification(n) => n.mode(),
            Payload::Job(j) => j.mode(),
        }
    }
}

impl Notification {
    /// A short name for logs and events: `reset_requested`, `password_changed`, or the
    /// webhook topic.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Notification::ResetRequested { .. } => "reset_requested",
            Notification::PasswordChanged { .. } => "password_changed",
            Notification::Webhook { topic, .. } => topic.as_str(),
        }
    }

    #[must_use]
    pub fn reset_id(&self) -> ResetId {
        match self {
            Notification::ResetRequested { reset_id, .. }
            | Notification::PasswordChanged { reset_id, .. } => *reset_id,
            Notification::Webhook { reset, .. } => reset.id,
        }
    }

    #[must_use]
    pub fn mode(&self) -> Mode {
        match self {
            Notification::ResetRequested { mode, .. }
            | Notification::PasswordChanged { mode, .. } => *mode,
            Notification::Webhook { reset, .. } => reset.mode,
        }
    }
}

/// The id of an outbox message; also its idempotency key, passed to every delivery
/// attempt so receivers can drop duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutboxId(uuid::Uuid);

impl OutboxId {
    #[must_use]
    pub fn new_at(at: Timestamp) -> Self {
        Self(super::EventId::new_at(at).as_uuid())
    }

    #[must_use]
    pub fn from_uuid(id: uuid::Uuid) -> Self {
        Self(id)
    }

    #[must_use]
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl fmt::Display for OutboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A notification or a job waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: OutboxId,
    pub payload: Payload,
    /// Delivery attempts so far, including the one in progress after a claim.
    pub attempts: u32,
    pub created_at: Timestamp,
}

impl OutboxMessage {
    /// A new message carrying `notification`, created at `at`.
    #[must_use]
    pub fn new(notification: Notification, at: Timestamp) -> Self {
        Self::with_payload(Payload::Notification(notification), at)
    }

    /// A new message carrying `job`, created at `at`.
    #[must_use]
    pub fn job(job: Job, at: Timestamp) -> Self {
        Self::with_payload(Payload::Job(job), at)
    }

    /// A new message carrying `payload`, created at `at`, not yet attempted.
    #[must_use]
    pub fn with_payload(payload: Payload, at: Timestamp) -> Self {
        Self {
            id: OutboxId::new_at(at),
            payload,
            attempts: 0,
            created_at: at,
        }
    }

    /// The notification it carries, if it is one.
    #[must_use]
    pub fn notification(&self) -> Option<&Notification> {
        match &self.payload {
            Payload::Notification(n) => Some(n),
            Payload::Job(_) => None,
        }
    }

    #[must_use]
    pub fn idempotency_key(&self) -> String {
        self.id.to_string()
    }
}

/// Exponential backoff with jitter, then the message is parked as dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before a message is dead.
    pub max_attempts: u32,
    /// Delay after the first failure; doubles each time.
    pub base: TimeDelta,
    /// Longest delay.
    pub cap: TimeDelta,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base: TimeDelta::seconds(5),
            cap: TimeDelta::hours(1),
        }
    }
}

impl RetryPolicy {
    /// When to try again after the `attempts`-th failure, or `None` when that was the
    /// last allowed attempt. The delay is `min(cap, base * 2^(attempts-1))`, scaled into
    /// `[50%, 100%]` by `jitter` in `[0, 1)` so that failures do not retry in lockstep.
    #[must_use]
    pub fn next_attempt(&self, attempts: u32, now: Timestamp, jitter: f64) -> Option<Timestamp> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exp = attempts.saturating_sub(1).min(30);
        let full = self
            .base
            .checked_mul(1_i32 << exp)
            .map_or(self.cap, |d| d.min(self.cap));
        let factor = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_precision_loss,
            reason = "delays are at most an hour in milliseconds: far inside f64's exact range and i64"
        )]
        let millis = (full.num_milliseconds() as f64 * factor) as i64;
        Some(now + TimeDelta::milliseconds(millis.max(1)))
    }
}

/// A deterministic jitter in `[0, 1)` from a message id and attempt number: spreads retries
/// across messages without a random number generator in the domain.
#[must_use]
pub fn jitter_for(id: OutboxId, attempts: u32) -> f64 {
    let mut bytes = [0u8; 20];
    bytes[..16].copy_from_slice(id.as_uuid().as_bytes());
    bytes[16..].copy_from_slice(&attempts.to_le_bytes());
    let h = super::fnv1a64(&bytes);
    #[allow(
        clippy::cast_precision_loss,
        reason = "53 bits of the hash into an f64 mantissa: exact by construction"
    )]
    let unit = (h >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use proptest::prelude::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up() {
        let p = RetryPolicy::default();
        let now = Utc::now();
        assert_eq!(
            p.next_attempt(1, now, 0.999_999),
            Some(now + TimeDelta::milliseconds(4999))
        );
        assert_eq!(
            p.next_attempt(2, now, 0.0),
            Some(now + TimeDelta::seconds(5))
        );
        assert_eq!(
            p.next_attempt(3, now, 0.0),
            Some(now + TimeDelta::seconds(10))
        );
        assert_eq!(
            p.next_attempt(9, now, 0.0),
            Some(now + TimeDelta::seconds(640))
        );
        assert_eq!(p.next_attempt(10, now, 0.0), None);
        let capped = RetryPolicy {
            max_attempts: 100,
            ..p
        };
        assert_eq!(
            capped.next_attempt(60, now, 0.0),
            Some(now + TimeDelta::minutes(30))
        );
    }

    #[test]
    fn topics_round_trip() {
        for t in [
            WebhookTopic::Create,
            WebhookTopic::ResetPassword,
            WebhookTopic::Destroy,
        ] {
            assert_eq!(WebhookTopic::parse(t.as_str()), Some(t));
        }
    }

    proptest! {
        #[test]
        fn jitter_is_a_unit_fraction_and_delays_stay_in_bounds(id in any::<u128>(), attempts in 1u32..10) {
            let j = jitter_for(OutboxId::from_uuid(uuid::Uuid::from_u128(id)), attempts);
            prop_assert!((0.0..1.0).contains(&j));
            let p = RetryPolicy::default();
            let now = Utc::now();
            let at = p.next_attempt(attempts, now, j).unwrap();
            prop_assert!(at > now);
            prop_assert!(at - now <= p.cap);
        }
    }
}
