//! The trail of what happened to a reset. Events never hold a secret or a full email.

use std::net::IpAddr;

use super::{EventId, Mode, ResetId, Timestamp};
use uuid::Uuid;

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

    /// Every kind.
    pub const ALL: [EventKind; 8] = [
        EventKind::Requested,
        EventKind::Completed,
        EventKind::CompletionFailed,
        EventKind::Revoked,
        EventKind::Deleted,
        EventKind::NotificationDelivered,
        EventKind::NotificationDead,
        EventKind::SessionsRevoked,
    ];

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl EventKind {
    /// Whether a reset's own row restates every event of this kind: `requested` at its
    /// `created_at`, `completed` at its `reset_password_at` and `revoked` at its
    /// `invalidated_at` (with the address or the reason [`RowTrail`] keeps). A store may
    /// keep these on the row instead of as events of their own, so their ids are not
    /// random but [`EventId::restated`].
    #[must_use]
    pub fn is_restated(self) -> bool {
        matches!(
            self,
            EventKind::Requested | EventKind::Completed | EventKind::Revoked
        )
    }

    /// A distinct tag per restated kind, mixed into [`EventId::restated`].
    fn tag(self) -> u8 {
        match self {
            EventKind::Requested => 1,
            EventKind::Completed => 2,
            EventKind::Revoked => 3,
            _ => 0,
        }
    }
}

impl EventId {
    /// The id of the `kind` event of reset `reset_id` at `at`, for the kinds a reset's row
    /// restates: a UUIDv7 of `at` whose random bits are the reset id's, with the kind mixed
    /// in. The same reset, kind and time always give the same id, so an event rebuilt from
    /// the row on every read keeps one id; ids of different resets differ as their random
    /// bits do, and of one reset's kinds by the tag.
    #[must_use]
    pub fn restated(reset_id: ResetId, kind: EventKind, at: Timestamp) -> Self {
        let mut bytes = *reset_id.as_uuid().as_bytes();
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        // Keep the version (7) and variant bits; change only random ones.
        bytes[15] ^= kind.tag();
        Self::from_uuid(Uuid::from_bytes(bytes))
    }
}

/// What a reset's row keeps of its trail beside its timestamps: who asked for it, who
/// completed it and why it was revoked. From these and the row's `created_at`,
/// `reset_password_at` and `invalidated_at`, [`RowTrail::events`] rebuilds the reset's
/// `requested`, `completed` and `revoked` events exactly as they were recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowTrail {
    pub reset_id: ResetId,
    pub mode: Mode,
    pub created_at: Timestamp,
    pub requested_ip: Option<IpAddr>,
    /// `reset_password_at` and the completer's address.
    pub completed: Option<(Timestamp, Option<IpAddr>)>,
    /// `invalidated_at` and why (`superseded`, `password_changed`).
    pub revoked: Option<(Timestamp, Option<String>)>,
}

impl RowTrail {
    /// The restated events, oldest first.
    #[must_use]
    pub fn events(&self) -> Vec<ResetEvent> {
        let event = |kind, reason, client_ip, at| ResetEvent {
            id: EventId::restated(self.reset_id, kind, at),
            reset_id: self.reset_id,
            mode: self.mode,
            kind,
            reason,
            client_ip,
            created_at: at,
        };
        let mut events = vec![event(
            EventKind::Requested,
            None,
            self.requested_ip,
            self.created_at,
        )];
        if let Some((at, ip)) = self.completed {
            events.push(event(EventKind::Completed, None, ip, at));
        }
        if let Some((at, reason)) = &self.revoked {
            events.push(event(EventKind::Revoked, reason.clone(), None, *at));
        }
        sort_trail(&mut events);
        events
    }
}

/// Puts a trail in its order: by time, then by id (as every store lists it).
pub fn sort_trail(events: &mut [ResetEvent]) {
    events.sort_by_key(|e| (e.created_at, e.id));
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

    /// A new event about `reset_id` caused by this caller (with the id
    /// [`EventId::restated`] gives when the kind is one a reset's row restates).
    #[must_use]
    pub fn event(
        &self,
        reset_id: ResetId,
        kind: EventKind,
        reason: Option<&str>,
        at: Timestamp,
    ) -> ResetEvent {
        ResetEvent {
            id: if kind.is_restated() {
                EventId::restated(reset_id, kind, at)
            } else {
                EventId::new_at(at)
            },
            reset_id,
            mode: self.mode,
            kind,
            reason: reason.map(str::to_owned),
            client_ip: self.client_ip,
            created_at: at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone, Utc};

    fn t0() -> Timestamp {
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
    }

    #[test]
    fn restated_ids_are_uuidv7_of_their_time_stable_and_distinct() {
        let reset = ResetId::new_at(t0());
        let later = t0() + TimeDelta::milliseconds(1234);
        let id = EventId::restated(reset, EventKind::Completed, later);
        let uuid = id.as_uuid();
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
        assert_eq!(
            i64::try_from(secs).unwrap() * 1000 + i64::from(nanos / 1_000_000),
            later.timestamp_millis()
        );
        assert_eq!(id, EventId::restated(reset, EventKind::Completed, later));
        let others = [
            EventId::restated(reset, EventKind::Requested, later),
            EventId::restated(reset, EventKind::Revoked, later),
            EventId::restated(ResetId::new_at(t0()), EventKind::Completed, later),
        ];
        for other in others {
            assert_ne!(id, other);
        }
    }

    #[test]
    fn a_row_restates_requested_completed_and_revoked_in_order() {
        let reset = ResetId::new_at(t0());
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let trail = RowTrail {
            reset_id: reset,
            mode: Mode::Live,
            created_at: t0(),
            requested_ip: Some(ip),
            completed: None,
            revoked: Some((t0() + TimeDelta::minutes(5), Some("superseded".into()))),
        };
        let caller = Caller::new(Mode::Live);
        assert_eq!(
            trail.events(),
            vec![
                caller
                    .with_ip(ip)
                    .event(reset, EventKind::Requested, None, t0()),
                caller.event(
                    reset,
                    EventKind::Revoked,
                    Some("superseded"),
                    t0() + TimeDelta::minutes(5)
                ),
            ]
        );
        let completed = RowTrail {
            completed: Some((t0() + TimeDelta::minutes(2), Some(ip))),
            revoked: None,
            ..trail
        };
        let kinds: Vec<_> = completed.events().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Requested, EventKind::Completed]);
        assert_eq!(completed.events()[1].client_ip, Some(ip));
    }

    #[test]
    fn only_requested_completed_and_revoked_are_restated() {
        let restated: Vec<_> = EventKind::ALL
            .into_iter()
            .filter(|k| k.is_restated())
            .collect();
        assert_eq!(
            restated,
            [
                EventKind::Requested,
                EventKind::Completed,
                EventKind::Revoked
            ]
        );
        let caller = Caller::new(Mode::Test);
        let reset = ResetId::new_at(t0());
        let failed = caller.event(reset, EventKind::CompletionFailed, None, t0());
        assert_ne!(
            failed.id,
            EventId::restated(reset, EventKind::CompletionFailed, t0())
        );
    }
}
