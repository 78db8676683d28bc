//! The trail of what happened to a reset. Events never hold a secret or a full email.

use std::net::IpAddr;

use super::{EventId, Mode, ResetId, Timestamp};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Requested,
    Completed,
    CompletionFailed,
    /// The reset was revoked by a newer reset or a completed one.
    Revoked,
    Deleted,
    NotificationDelivered,
    /// A notification could not be delivered after every retry.
    NotificationDead,
    /// Completing the reset ended the customer's sessions; `reason` holds how many.
    SessionsRevoked,
}

impl EventKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Requested => "requested",
            EventKind::Completed => "completed",
            EventKind::CompletionFailed => "completion_failed",
            EventKind::Revoked => "revoked",
            EventKind::Deleted => "deleted",
            EventKind::NotificationDelivered => "notification_delivered",
            EventKind::NotificationDead => "notification_dead",
            EventKind::SessionsRevoked => "sessions_revoked",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [
            EventKind::Requested,
            EventKind::Completed,
            EventKind::CompletionFailed,
            EventKind::Revoked,
            EventKind::Deleted,
            EventKind::NotificationDelivered,
            EventKind::NotificationDead,
            EventKind::SessionsRevoked,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One entry in a reset's trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetEvent {
    pub id: EventId,
    pub reset_id: ResetId,
    pub mode: Mode,
    pub kind: EventKind,
    /// For failures: the specific reason (e.g. `expired`), never the token itself.
    pub reason: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub created_at: Timestamp,
}

/// Who is asking: the mode from their credentials, an opaque id of the credential, and,
/// when known, their address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub mode: Mode,
    pub client_ip: Option<IpAddr>,
    /// A stable fingerprint of the API credential, for per-credential limits.
    pub credential: Option<u64>,
}

impl Caller {
    #[must_use]
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            client_ip: None,
            credential: None,
        }
    }

    #[must_use]
    pub fn with_credential(mut self, fingerprint: u64) -> Self {
        self.credential = Some(fingerprint);
        self
    }

    #[must_use]
    pub fn with_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    /// A new event about `reset_id` caused by this caller.
    #[must_use]
    pub fn event(
        &self,
        reset_id: ResetId,
        kind: EventKind,
        reason: Option<&str>,
        at: Timestamp,
    ) -> ResetEvent {
        ResetEvent {
            id: EventId::new_at(at),
            reset_id,
            mode: self.mode,
            kind,
            reason: reason.map(str::to_owned),
            client_ip: self.client_ip,
            created_at: at,
        }
    }
}
