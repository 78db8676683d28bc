//! `CustomerStore` in memory.

use async_trait::async_trait;
use pwreset_domain::ports::{CredentialChange, CustomerStore, StoreError};
use pwreset_domain::{
    Customer, CustomerField, CustomerId, CustomerSort, EmailAddress, ListQuery, Mode, Page,
    PasswordHash,
};

use crate::MemoryStore;
use crate::list::page;
use crate::state::Conflict;

fn email_key(mode: Mode, email: &EmailAddress) -> (Mode, String) {
    (mode, email.normalized().to_owned())
}

#[async_trait]
impl CustomerStore for MemoryStore {
    async fn create(&self, c: &Customer) -> Result<(), StoreError> {
        let mut state = self.lock();
        let key = email_key(c.mode, &c.email);
        if state.emails.contains_key(&key) {
            return Err(StoreError::DuplicateEmail);
        }
        if state.customers.contains_key(&c.id) {
            return Err(Conflict::CustomerId(c.id).into());
        }
        state.emails.insert(key, c.id);
        state.customers.insert(c.id, c.clone());
        Ok(())
    }

    async fn find(&self, mode: Mode, id: CustomerId) -> Result<Option<Customer>, StoreError> {
        Ok(self
            .lock()
            .customers
            .get(&id)
            .filter(|c| c.mode == mode)
            .cloned())
    }

    async fn find_by_email(
        &self,
        mode: Mode,
        email: &EmailAddress,
    ) -> Result<Option<Customer>, StoreError> {
        let state = self.lock();
        Ok(state
            .emails
            .get(&email_key(mode, email))
            .and_then(|id| state.customers.get(id))
            .cloned())
    }

    async fn list(
        &self,
        mode: Mode,
        query: &ListQuery<CustomerField, CustomerSort>,
    ) -> Result<Page<Customer>, StoreError> {
        let state = self.lock();
        Ok(page(
            state.customers.values().filter(|c| c.mode == mode),
            query,
        ))
    }

    async fn update(&self, c: &Customer, change: CredentialChange) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some(old_key) = state
            .customers
            .get(&c.id)
            .filter(|stored| stored.mode == c.mode)
            .map(|stored| email_key(stored.mode, &stored.email))
        else {
            return Ok(false);
        };
        let new_key = email_key(c.mode, &c.email);
        if state
            .emails
            .get(&new_key)
            .is_some_and(|owner| *owner != c.id)
        {
            return Err(StoreError::DuplicateEmail);
        }
        let Some(stored) = state.customers.get_mut(&c.id) else {
            return Ok(false);
        };
        // Mode, id and creation time are what the customer is matched by and stay.
        stored.email = c.email.clone();
        stored.reference = c.reference.clone();
        stored.reference_origin = c.reference_origin.clone();
        stored.metadata = c.metadata.clone();
        stored.updated_at = c.updated_at;
        if change == CredentialChange::Password {
            // Only a password change writes the hash (see the port's contract).
            stored.password_hash = c.password_hash.clone();
            stored.password_version = stored.password_version.saturating_add(1);
        }
        state.emails.remove(&old_key);
        state.emails.insert(new_key, c.id);
        if change != CredentialChange::None {
            state.revoke_outstanding(c.mode, c.id, None, c.updated_at, "credentials_changed");
        }
        if change == CredentialChange::Password {
            state.revoke_sessions(c.mode, c.id, c.updated_at);
        }
        Ok(true)
    }

    async fn delete(&self, mode: Mode, id: CustomerId) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some(c) = state.customers.get(&id).filter(|c| c.mode == mode) else {
            return Ok(false);
        };
        let key = email_key(c.mode, &c.email);
        state.customers.remove(&id);
        state.emails.remove(&key);
        // The customer's resets go with it; their events stay until purged.
        let resets = state.by_customer.remove(&id).unwrap_or_default();
        for reset in resets {
            state.remove_reset(reset);
        }
        // And their sessions with their refresh tokens.
        state.remove_sessions(|s| s.customer == Some(id));
        Ok(true)
    }

    async fn upgrade_hash(
        &self,
        mode: Mode,
        id: CustomerId,
        old: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some(c) = state
            .customers
            .get_mut(&id)
            .filter(|c| c.mode == mode && c.password_hash.as_ref() == Some(old))
        else {
            return Ok(false);
        };
        c.password_hash = Some(new.clone());
        Ok(true)
    }
}
