//! `ClientStore` and `SessionStore` in memory.

use async_trait::async_trait;
use pwreset_domain::ports::{ClientStore, SessionStore, StoreError};
use pwreset_domain::{
    Client, ClientId, ClientKey, NewSession, RefreshRecord, Rotation, Session, SessionId,
    SessionStatus, Timestamp, TokenDigest,
};

use crate::MemoryStore;
use crate::state::{Conflict, RefreshRow};

/// Sessions that expired or were revoked before `cutoff`.
pub(crate) fn ended_before(s: &Session, cutoff: Timestamp) -> bool {
    s.expires_at < cutoff || s.revoked_at.is_some_and(|t| t < cutoff)
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn create(&self, client: &Client) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.clients.contains_key(&client.key) {
            return Err(Conflict::ClientKey(client.key).into());
        }
        if state.client_ids.contains_key(client.client_id.as_str()) {
            return Err(Conflict::ClientId.into());
        }
        state
            .client_ids
            .insert(client.client_id.as_str().to_owned(), client.key);
        state.clients.insert(client.key, client.clone());
        Ok(())
    }

    async fn find(&self, client_id: &ClientId) -> Result<Option<Client>, StoreError> {
        let state = self.lock();
        Ok(state
            .client_ids
            .get(client_id.as_str())
            .and_then(|key| state.clients.get(key))
            .cloned())
    }

    async fn list(&self) -> Result<Vec<Client>, StoreError> {
        let mut clients: Vec<Client> = self.lock().clients.values().cloned().collect();
        clients.sort_by_key(|c| (c.created_at, c.key));
        Ok(clients)
    }

    async fn revoke(&self, client_id: &ClientId, now: Timestamp) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some(key) = state.client_ids.get(client_id.as_str()).copied() else {
            return Ok(false);
        };
        match state.clients.get_mut(&key) {
            Some(c) if c.revoked_at.is_none() => {
                c.revoked_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn open(&self, new: &NewSession) -> Result<(), StoreError> {
        let mut state = self.lock();
        let s = &new.session;
        if state.sessions.contains_key(&s.id) {
            return Err(Conflict::SessionId(s.id).into());
        }
        let owners_exist = state.clients.contains_key(&s.client)
            && s.customer.is_none_or(|c| state.customers.contains_key(&c));
        if !owners_exist {
            return Err(Conflict::MissingSessionOwner(s.id).into());
        }
        if let Some(r) = &new.refresh
            && state.refresh.contains_key(&r.digest)
        {
            return Err(Conflict::RefreshDigest.into());
        }
        state.sessions.insert(s.id, s.clone());
        if let Some(r) = &new.refresh {
            state.refresh.insert(
                r.digest,
                RefreshRow {
                    session: s.id,
                    expires_at: r.expires_at,
                    used_at: None,
                },
            );
        }
        Ok(())
    }

    async fn status(&self, id: SessionId, now: Timestamp) -> Result<SessionStatus, StoreError> {
        let state = self.lock();
        let live = state
            .sessions
            .get(&id)
            .is_some_and(|s| state.session_live(s, now));
        Ok(if live {
            SessionStatus::Live
        } else {
            SessionStatus::Ended
        })
    }

    async fn find(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.lock().sessions.get(&id).cloned())
    }

    async fn find_by_refresh(
        &self,
        presented: &[TokenDigest],
    ) -> Result<Option<Session>, StoreError> {
        let state = self.lock();
        Ok(presented
            .iter()
            .find_map(|d| state.refresh.get(d))
            .and_then(|r| state.sessions.get(&r.session))
            .cloned())
    }

    async fn rotate(
        &self,
        presented: &[TokenDigest],
        client: ClientKey,
        next: &RefreshRecord,
        now: Timestamp,
    ) -> Result<Rotation, StoreError> {
        let mut state = self.lock();
        let Some((digest, row)) = presented
            .iter()
            .find_map(|d| state.refresh.get(d).map(|r| (*d, r)))
        else {
            return Ok(Rotation::Invalid);
        };
        let Some(session) = state.sessions.get(&row.session) else {
            return Ok(Rotation::Invalid);
        };
        if session.client != client {
            return Ok(Rotation::Invalid);
        }
        let id = session.id;
        if row.used_at.is_some() {
            // Reuse: the whole session ends (unless it had already).
            if let Some(s) = state.sessions.get_mut(&id)
                && s.revoked_at.is_none()
            {
                s.revoked_at = Some(now);
            }
            return Ok(Rotation::Reused(id));
        }
        if now >= row.expires_at || !state.session_live(session, now) {
            return Ok(Rotation::Invalid);
        }
        if state.refresh.contains_key(&next.digest) {
            return Err(Conflict::RefreshDigest.into());
        }
        if let Some(r) = state.refresh.get_mut(&digest) {
            r.used_at = Some(now);
        }
        state.refresh.insert(
            next.digest,
            RefreshRow {
                session: id,
                expires_at: next.expires_at,
                used_at: None,
            },
        );
        let Some(s) = state.sessions.get_mut(&id) else {
            return Ok(Rotation::Invalid);
        };
        s.expires_at = next.expires_at;
        Ok(Rotation::Rotated(s.clone()))
    }

    async fn revoke(&self, id: SessionId, now: Timestamp) -> Result<bool, StoreError> {
        let mut state = self.lock();
        match state.sessions.get_mut(&id) {
            Some(s) if s.revoked_at.is_none() => {
                s.revoked_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn purge(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        Ok(self.lock().remove_sessions(|s| ended_before(s, cutoff)))
    }
}
