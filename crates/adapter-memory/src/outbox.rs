//! The outbox in memory: messages stored in the same locked write as their cause, claimed
//! under a lease, and stripped of their secret once delivered or dead.

use async_trait::async_trait;
use chrono::TimeDelta;
use pwreset_domain::ports::{OutboxBacklog, OutboxStore, StoreError};
use pwreset_domain::{EventKind, OutboxId, OutboxMessage, Timestamp};

use crate::MemoryStore;
use crate::state::Status;

/// The longest delivery error kept, in characters.
const MAX_ERROR_CHARS: usize = 1000;

#[async_trait]
impl OutboxStore for MemoryStore {
    async fn backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let state = self.lock();
        let pending = state
            .outbox
            .values()
            .filter(|m| m.status == Status::Pending);
        Ok(
            pending.fold(OutboxBacklog::default(), |b, m| OutboxBacklog {
                pending: b.pending + 1,
                oldest: Some(b.oldest.map_or(m.created_at, |o| o.min(m.created_at))),
            }),
        )
    }

    async fn enqueue(&self, messages: &[OutboxMessage]) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.check_new_messages(messages)?;
        state.enqueue(messages);
        Ok(())
    }

    async fn claim(
        &self,
        now: Timestamp,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut state = self.lock();
        let mut due: Vec<(Timestamp, OutboxId)> = state
            .outbox
            .iter()
            .filter(|(_, m)| {
                m.status == Status::Pending
                    && m.next_attempt_at <= now
                    && m.claimed_until.is_none_or(|until| until <= now)
            })
            .map(|(id, m)| (m.next_attempt_at, *id))
            .collect();
        due.sort_unstable();
        due.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let mut claimed = Vec::with_capacity(due.len());
        for (_, id) in due {
            let Some(m) = state.outbox.get_mut(&id) else {
                continue;
            };
            let Some(payload) = m.payload.clone() else {
                continue;
            };
            m.claimed_until = Some(now + lease);
            m.attempts = m.attempts.saturating_add(1);
            claimed.push(OutboxMessage {
                id,
                payload,
                attempts: m.attempts,
                created_at: m.created_at,
            });
        }
        claimed.sort_by_key(|m| (m.created_at, m.id));
        Ok(claimed)
    }

    async fn delivered(&self, id: OutboxId, now: Timestamp) -> Result<(), StoreError> {
        let mut state = self.lock();
        let Some(m) = state.outbox.get_mut(&id) else {
            return Ok(());
        };
        m.finish(Status::Delivered, now);
        state.message_event(id, EventKind::NotificationDelivered, now);
        Ok(())
    }

    async fn failed(
        &self,
        id: OutboxId,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let Some(m) = state.outbox.get_mut(&id) else {
            return Ok(());
        };
        m.last_error = Some(error.chars().take(MAX_ERROR_CHARS).collect());
        match retry_at {
            Some(at) => {
                m.next_attempt_at = at;
                m.claimed_until = None;
            }
            None => {
                m.finish(Status::Dead, now);
                state.message_event(id, EventKind::NotificationDead, now);
            }
        }
        Ok(())
    }
}
