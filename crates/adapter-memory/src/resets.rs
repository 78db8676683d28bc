//! `ResetStore` in memory.

use async_trait::async_trait;
use pwreset_domain::AddressedReset;
use pwreset_domain::ports::{Completion, CompletionOutcome, ResetStore, StoreError};
use pwreset_domain::{
    DetailsPatch, ListQuery, Mode, OutboxMessage, Page, PasswordReset, ResetEvent, ResetField,
    ResetId, ResetSort, Timestamp,
};

use crate::MemoryStore;
use crate::list::page;
use crate::state::{State, Status};

/// Applies the attributes a patch changes.
fn apply(r: &mut PasswordReset, patch: &DetailsPatch) {
    r.reference = patch.reference.apply(&r.reference);
    r.reference_origin = patch.reference_origin.apply(&r.reference_origin);
    r.metadata = patch.metadata.apply(&r.metadata);
}

/// Resets used, revoked or expired before `cutoff`. A reset cannot end before it was
/// created; the bound is kept so the rule reads as the SQL adapter's.
fn ended_before(r: &PasswordReset, cutoff: Timestamp) -> bool {
    r.created_at < cutoff
        && (r.reset_password_at.is_some_and(|t| t < cutoff)
            || r.invalidated_at.is_some_and(|t| t < cutoff)
            || r.expires_at < cutoff)
}

/// `create`'s write: revokes the customer's earlier outstanding resets, stores the reset,
/// its event and messages; nothing when any of them is refused.
fn create(
    state: &mut State,
    reset: &PasswordReset,
    event: &ResetEvent,
    outbox: &[OutboxMessage],
) -> Result<(), StoreError> {
    state.check_new_reset(reset)?;
    state.check_new_events([event])?;
    state.check_new_messages(outbox)?;
    state.revoke_outstanding(
        reset.mode,
        reset.customer_id,
        None,
        reset.created_at,
        "superseded",
    );
    state.insert_reset(reset.clone());
    state.push_event(event.clone());
    state.enqueue(outbox);
    Ok(())
}

/// Whether the conditional completion matches: this mode and id, the checked digest, not
/// used, not revoked, unexpired at `c.now` (inclusive) and below the attempt cap.
fn completable(r: &PasswordReset, c: &Completion) -> bool {
    r.mode == c.mode
        && r.token_digest == c.token_digest
        && r.reset_password_at.is_none()
        && r.invalidated_at.is_none()
        && r.expires_at >= c.now
        && r.failed_attempts < c.max_failed_attempts
}

#[async_trait]
impl ResetStore for MemoryStore {
    async fn create(
        &self,
        reset: &PasswordReset,
        event: &ResetEvent,
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError> {
        create(&mut self.lock(), reset, event, outbox)
    }

    async fn create_for_email(
        &self,
        request: &AddressedReset,
    ) -> Result<Option<PasswordReset>, StoreError> {
        let mut state = self.lock();
        let key = (request.draft.mode, request.email.normalized().to_owned());
        let Some(customer) = state
            .emails
            .get(&key)
            .and_then(|id| state.customers.get(id))
        else {
            return Ok(None);
        };
        let (reset, outbox) = request.for_customer(customer.id, customer.email.clone());
        create(&mut state, &reset, &request.event, &outbox)?;
        Ok(Some(reset))
    }

    async fn find(&self, mode: Mode, id: ResetId) -> Result<Option<PasswordReset>, StoreError> {
        Ok(self
            .lock()
            .resets
            .get(&id)
            .filter(|r| r.mode == mode)
            .cloned())
    }

    async fn list(
        &self,
        mode: Mode,
        query: &ListQuery<ResetField, ResetSort>,
    ) -> Result<Page<PasswordReset>, StoreError> {
        let state = self.lock();
        Ok(page(
            state.resets.values().filter(|r| r.mode == mode),
            query,
        ))
    }

    async fn update_details(
        &self,
        mode: Mode,
        id: ResetId,
        patch: &DetailsPatch,
        now: Timestamp,
    ) -> Result<Option<PasswordReset>, StoreError> {
        let mut state = self.lock();
        let Some(r) = state.resets.get_mut(&id).filter(|r| r.mode == mode) else {
            return Ok(None);
        };
        apply(r, patch);
        r.updated_at = now;
        Ok(Some(r.clone()))
    }

    async fn delete(
        &self,
        mode: Mode,
        id: ResetId,
        event: &ResetEvent,
        outbox: &[OutboxMessage],
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if !state.resets.get(&id).is_some_and(|r| r.mode == mode) {
            return Ok(false);
        }
        state.check_new_events([event])?;
        state.check_new_messages(outbox)?;
        state.remove_reset(id);
        state.push_event(event.clone());
        state.enqueue(outbox);
        Ok(true)
    }

    async fn purge(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let ended: Vec<ResetId> = state
            .resets
            .values()
            .filter(|r| ended_before(r, cutoff))
            .map(|r| r.id)
            .collect();
        for id in &ended {
            state.remove_reset(*id);
            state.remove_events(*id, |_| true);
        }
        // Events of resets deleted earlier go once they are older than the cutoff.
        let orphans: Vec<ResetId> = state
            .events
            .keys()
            .filter(|id| !state.resets.contains_key(id))
            .copied()
            .collect();
        for id in orphans {
            state.remove_events(id, |e| e.created_at < cutoff);
        }
        // Delivered and dead messages go once they finished before the cutoff.
        state.outbox.retain(|_, m| {
            let finished_before =
                m.status != Status::Pending && m.finished_at.is_some_and(|t| t < cutoff);
            !finished_before
        });
        // Rate-limit counters go once their window ended before the cutoff.
        state.counters.retain(|_, c| c.expires_at >= cutoff);
        // Sessions go once they expired or were revoked before it.
        state.remove_sessions(|s| crate::sessions::ended_before(s, cutoff));
        Ok(u64::try_from(ended.len()).unwrap_or(u64::MAX))
    }

    async fn record_failure(
        &self,
        mode: Mode,
        id: ResetId,
        count_attempt: bool,
        event: &ResetEvent,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.check_new_events([event])?;
        if count_attempt && let Some(r) = state.resets.get_mut(&id).filter(|r| r.mode == mode) {
            r.failed_attempts = r.failed_attempts.saturating_add(1);
        }
        state.push_event(event.clone());
        Ok(())
    }

    async fn complete(&self, c: &Completion) -> Result<CompletionOutcome, StoreError> {
        let mut state = self.lock();
        if !state
            .resets
            .get(&c.reset_id)
            .is_some_and(|r| completable(r, c))
        {
            return Ok(CompletionOutcome::NotApplied);
        }
        let ending = state.live_sessions_of(c.mode, c.customer_id, c.now).len();
        if ending > 0 {
            state.check_new_events([&c.event, &c.sessions_event])?;
        } else {
            state.check_new_events([&c.event])?;
        }
        state.check_new_messages(&c.outbox)?;
        let Some(r) = state.resets.get_mut(&c.reset_id) else {
            return Ok(CompletionOutcome::NotApplied);
        };
        r.reset_password_at = Some(c.now);
        r.updated_at = c.now;
        apply(r, &c.details);
        let done = r.clone();
        if let Some(customer) = state
            .customers
            .get_mut(&c.customer_id)
            .filter(|x| x.mode == c.mode)
        {
            customer.password_hash = Some(c.password_hash.clone());
            customer.password_version = customer.password_version.saturating_add(1);
            customer.updated_at = c.now;
        }
        let ended = state.revoke_sessions(c.mode, c.customer_id, c.now);
        state.revoke_outstanding(
            c.mode,
            c.customer_id,
            Some(c.reset_id),
            c.now,
            "password_changed",
        );
        state.push_event(c.event.clone());
        if ended > 0 {
            state.push_event(ResetEvent {
                reason: Some(ended.to_string()),
                ..c.sessions_event.clone()
            });
        }
        state.enqueue(&c.outbox);
        Ok(CompletionOutcome::Completed(Box::new(done)))
    }

    async fn events(&self, mode: Mode, id: ResetId) -> Result<Vec<ResetEvent>, StoreError> {
        let state = self.lock();
        let mut events: Vec<ResetEvent> = state
            .events
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|e| e.mode == mode)
            .cloned()
            .collect();
        events.sort_by_key(|e| (e.created_at, e.id));
        Ok(events)
    }
}
