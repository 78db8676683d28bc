//! The stored state, its indexes, and the checks and writes that several ports share.
//!
//! Writes come in two steps: `check_*` methods find every reason a write would be refused
//! without changing anything, then the writing methods cannot fail. A port method runs all
//! its checks before its first write, which makes it all-or-nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use pwreset_domain::ports::StoreError;
use pwreset_domain::{
    Client, ClientKey, Customer, CustomerId, EventId, EventKind, Mode, Notification, OutboxId,
    OutboxMessage, PasswordReset, Payload, ResetEvent, ResetId, Session, SessionId, Timestamp,
    TokenDigest,
};

/// Why a write was refused: a uniqueness or reference rule the SQL schema enforces too.
/// Reported as [`StoreError::Unexpected`]: the domain never provokes these.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Conflict {
    #[error("a customer with id {0} already exists")]
    CustomerId(CustomerId),
    #[error("a password reset with id {0} already exists")]
    ResetId(ResetId),
    #[error("another password reset has the same token digest")]
    TokenDigest,
    #[error("password reset {reset} names customer {customer}, which does not exist")]
    MissingCustomer {
        reset: ResetId,
        customer: CustomerId,
    },
    #[error("an event with id {0} already exists")]
    EventId(EventId),
    #[error("an outbox message with id {0} already exists")]
    OutboxId(OutboxId),
    #[error("a client with id {0} already exists")]
    ClientKey(ClientKey),
    #[error("a client with this client id already exists")]
    ClientId,
    #[error("a session with id {0} already exists")]
    SessionId(SessionId),
    #[error("another refresh token has the same digest")]
    RefreshDigest,
    #[error("session {0} names a client or customer that does not exist")]
    MissingSessionOwner(SessionId),
}

impl From<Conflict> for StoreError {
    fn from(c: Conflict) -> Self {
        StoreError::Unexpected(c.into())
    }
}

/// Where an outbox message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Pending,
    Delivered,
    Dead,
}

/// One outbox message and its delivery bookkeeping.
#[derive(Debug)]
pub(crate) struct OutboxRow {
    pub mode: Mode,
    pub reset_id: ResetId,
    /// [`Payload::name`]: the reason of the delivery events.
    pub name: &'static str,
    /// The message while it may still be delivered. Taken away (with the raw token a reset
    /// mail holds) once the message is delivered or dead.
    pub payload: Option<Payload>,
    pub status: Status,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub claimed_until: Option<Timestamp>,
    pub last_error: Option<String>,
    pub finished_at: Option<Timestamp>,
}

impl OutboxRow {
    fn new(m: &OutboxMessage) -> Self {
        Self {
            mode: m.payload.mode(),
            reset_id: m.payload.reset_id(),
            name: m.payload.name(),
            payload: Some(m.payload.clone()),
            status: Status::Pending,
            attempts: m.attempts,
            created_at: m.created_at,
            next_attempt_at: m.created_at,
            claimed_until: None,
            last_error: None,
            finished_at: None,
        }
    }

    pub(crate) fn holds_secret(&self) -> bool {
        matches!(
            self.payload,
            Some(Payload::Notification(Notification::ResetRequested { .. }))
        )
    }

    /// Ends the message: no further delivery, and no secret kept.
    pub(crate) fn finish(&mut self, status: Status, now: Timestamp) {
        self.status = status;
        self.payload = None;
        self.claimed_until = None;
        self.finished_at = Some(now);
    }
}

/// One refresh token: current while `used_at` is `None`, kept after rotation to recognise
/// reuse.
#[derive(Debug)]
pub(crate) struct RefreshRow {
    pub session: SessionId,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

/// One rate-limit counter.
#[derive(Debug)]
pub(crate) struct Counter {
    pub count: u64,
    /// The end of its window; purged after that.
    pub expires_at: Timestamp,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub customers: BTreeMap<CustomerId, Customer>,
    /// `(mode, normalized email)` to customer: emails are unique per mode.
    pub emails: HashMap<(Mode, String), CustomerId>,
    pub resets: BTreeMap<ResetId, PasswordReset>,
    /// Token digests are unique across all resets.
    pub digests: HashSet<TokenDigest>,
    /// Every reset of each customer, whatever its state.
    pub by_customer: HashMap<CustomerId, BTreeSet<ResetId>>,
    /// Events by the reset they are about; they outlive deleted resets until purged.
    pub events: HashMap<ResetId, Vec<ResetEvent>>,
    pub event_ids: HashSet<EventId>,
    pub outbox: BTreeMap<OutboxId, OutboxRow>,
    /// Rate-limit counters by key and window start.
    pub counters: HashMap<(String, Timestamp), Counter>,
    pub clients: BTreeMap<ClientKey, Client>,
    /// Public client id to client: client ids are unique.
    pub client_ids: HashMap<String, ClientKey>,
    pub sessions: BTreeMap<SessionId, Session>,
    /// Refresh tokens by digest, current and rotated.
    pub refresh: HashMap<TokenDigest, RefreshRow>,
}

impl State {
    /// Refuses a reset whose id or digest is taken or whose customer does not exist.
    pub(crate) fn check_new_reset(&self, r: &PasswordReset) -> Result<(), Conflict> {
        if self.resets.contains_key(&r.id) {
            return Err(Conflict::ResetId(r.id));
        }
        if self.digests.contains(&r.token_digest) {
            return Err(Conflict::TokenDigest);
        }
        if !self.customers.contains_key(&r.customer_id) {
            return Err(Conflict::MissingCustomer {
                reset: r.id,
                customer: r.customer_id,
            });
        }
        Ok(())
    }

    /// Refuses events whose ids are taken, or repeated among them.
    pub(crate) fn check_new_events<'a>(
        &self,
        events: impl IntoIterator<Item = &'a ResetEvent>,
    ) -> Result<(), Conflict> {
        let mut seen = HashSet::new();
        for e in events {
            if self.event_ids.contains(&e.id) || !seen.insert(e.id) {
                return Err(Conflict::EventId(e.id));
            }
        }
        Ok(())
    }

    /// Refuses messages whose ids are taken, or repeated among them.
    pub(crate) fn check_new_messages(&self, messages: &[OutboxMessage]) -> Result<(), Conflict> {
        let mut seen = HashSet::new();
        for m in messages {
            if self.outbox.contains_key(&m.id) || !seen.insert(m.id) {
                return Err(Conflict::OutboxId(m.id));
            }
        }
        Ok(())
    }

    /// Stores a reset checked by [`State::check_new_reset`].
    pub(crate) fn insert_reset(&mut self, r: PasswordReset) {
        self.digests.insert(r.token_digest);
        self.by_customer
            .entry(r.customer_id)
            .or_default()
            .insert(r.id);
        self.resets.insert(r.id, r);
    }

    /// Removes a reset; its events stay.
    pub(crate) fn remove_reset(&mut self, id: ResetId) -> Option<PasswordReset> {
        let r = self.resets.remove(&id)?;
        self.digests.remove(&r.token_digest);
        if let Some(ids) = self.by_customer.get_mut(&r.customer_id) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_customer.remove(&r.customer_id);
            }
        }
        Some(r)
    }

    /// Stores an event checked by [`State::check_new_events`].
    pub(crate) fn push_event(&mut self, e: ResetEvent) {
        self.event_ids.insert(e.id);
        self.events.entry(e.reset_id).or_default().push(e);
    }

    /// Removes every event about `reset_id` for which `doomed` holds.
    pub(crate) fn remove_events(
        &mut self,
        reset_id: ResetId,
        doomed: impl Fn(&ResetEvent) -> bool,
    ) {
        let Some(events) = self.events.get_mut(&reset_id) else {
            return;
        };
        let ids = &mut self.event_ids;
        events.retain(|e| {
            let gone = doomed(e);
            if gone {
                ids.remove(&e.id);
            }
            !gone
        });
        if events.is_empty() {
            self.events.remove(&reset_id);
        }
    }

    /// Enqueues messages checked by [`State::check_new_messages`].
    pub(crate) fn enqueue(&mut self, messages: &[OutboxMessage]) {
        for m in messages {
            self.outbox.insert(m.id, OutboxRow::new(m));
        }
    }

    /// Revokes the customer's outstanding resets in `mode` other than `keep` at `now`, with
    /// a `revoked` event for each giving `reason`.
    pub(crate) fn revoke_outstanding(
        &mut self,
        mode: Mode,
        customer: CustomerId,
        keep: Option<ResetId>,
        now: Timestamp,
        reason: &str,
    ) {
        let Some(ids) = self.by_customer.get(&customer) else {
            return;
        };
        let mut revoked = Vec::new();
        for id in ids {
            if Some(*id) == keep {
                continue;
            }
            let Some(r) = self.resets.get_mut(id) else {
                continue;
            };
            if r.mode == mode && r.reset_password_at.is_none() && r.invalidated_at.is_none() {
                r.invalidated_at = Some(now);
                r.updated_at = now;
                revoked.push(*id);
            }
        }
        for id in revoked {
            self.push_event(ResetEvent {
                id: EventId::restated(id, EventKind::Revoked, now),
                reset_id: id,
                mode,
                kind: EventKind::Revoked,
                reason: Some(reason.to_owned()),
                client_ip: None,
                created_at: now,
            });
        }
    }

    /// Whether access tokens of `s` count at `now`, as `SessionStore::status` defines it.
    pub(crate) fn session_live(&self, s: &Session, now: Timestamp) -> bool {
        let client_live = self
            .clients
            .get(&s.client)
            .is_some_and(|c| c.revoked_at.is_none());
        let customer_same = s.customer.is_none_or(|id| {
            self.customers
                .get(&id)
                .is_some_and(|c| c.mode == s.mode && c.password_version == s.password_version)
        });
        s.revoked_at.is_none() && now < s.expires_at && client_live && customer_same
    }

    /// The customer's live sessions in `mode` (not revoked, unexpired) at `now`.
    pub(crate) fn live_sessions_of(
        &self,
        mode: Mode,
        customer: CustomerId,
        now: Timestamp,
    ) -> Vec<SessionId> {
        self.sessions
            .values()
            .filter(|s| {
                s.mode == mode
                    && s.customer == Some(customer)
                    && s.revoked_at.is_none()
                    && now < s.expires_at
            })
            .map(|s| s.id)
            .collect()
    }

    /// Revokes the customer's live sessions at `now`; how many.
    pub(crate) fn revoke_sessions(
        &mut self,
        mode: Mode,
        customer: CustomerId,
        now: Timestamp,
    ) -> u64 {
        let ids = self.live_sessions_of(mode, customer, now);
        for id in &ids {
            if let Some(s) = self.sessions.get_mut(id) {
                s.revoked_at = Some(now);
            }
        }
        u64::try_from(ids.len()).unwrap_or(u64::MAX)
    }

    /// Removes the sessions for which `doomed` holds, with their refresh tokens; how many.
    pub(crate) fn remove_sessions(&mut self, doomed: impl Fn(&Session) -> bool) -> u64 {
        let before = self.sessions.len();
        self.sessions.retain(|_, s| !doomed(s));
        let sessions = &self.sessions;
        self.refresh
            .retain(|_, r| sessions.contains_key(&r.session));
        u64::try_from(before - self.sessions.len()).unwrap_or(u64::MAX)
    }

    /// Records an event about an outbox message's reset (events outlive their reset, so
    /// this works for deleted resets too). Nothing when there is no such message.
    pub(crate) fn message_event(&mut self, id: OutboxId, kind: EventKind, now: Timestamp) {
        let Some(row) = self.outbox.get(&id) else {
            return;
        };
        let event = ResetEvent {
            id: EventId::new_at(now),
            reset_id: row.reset_id,
            mode: row.mode,
            kind,
            reason: Some(row.name.to_owned()),
            client_ip: None,
            created_at: now,
        };
        self.push_event(event);
    }
}
