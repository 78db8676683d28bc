//! What differs between databases, as one trait the generic stores call.
//!
//! The stores in this crate hold no dialect branches: where a statement or expression is
//! not the same SQL everywhere they call the driver's [`Dialect`]. Its write methods have a
//! generic transactional implementation here ([`crate::atomic`]); a driver whose database
//! can do the same write in one statement (Postgres, with data-modifying CTEs) overrides
//! them in its own crate, next to the rest of what speaks its dialect.

use async_trait::async_trait;
use pwreset_domain::ports::{Completion, CompletionOutcome, StoreError};
use pwreset_domain::{EmailAddress, OutboxMessage, PasswordReset, ResetDraft, ResetEvent};

use crate::atomic;
use crate::driver::Driver;

/// The statements and expressions that differ on one database.
#[async_trait]
pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// `column -> key = value` for a JSON scalar: `key` and `value` are placeholders of
    /// the key (text) and the value (JSON text).
    fn json_key_eq(&self, column: &str, key: &str, value: &str) -> String;

    /// Appended to the subquery that picks the outbox messages a claim leases (e.g.
    /// `FOR UPDATE SKIP LOCKED`); empty where one writer at a time is all there is.
    fn claim_lock(&self) -> &'static str {
        ""
    }

    /// `ResetStore::create`: revoke the customer's outstanding resets, insert the reset,
    /// its event and its outbox messages, atomically.
    ///
    /// # Errors
    /// When the database fails; nothing is written then.
    async fn create(
        &self,
        driver: &dyn Driver,
        reset: &PasswordReset,
        event: &ResetEvent,
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError> {
        atomic::create(driver, reset, event, outbox).await
    }

    /// `ResetStore::create_for_email`: find the customer by address and, if there is one,
    /// create the reset for them as [`create`](Dialect::create) does (no outbox).
    ///
    /// # Errors
    /// When the database fails; nothing is written then.
    async fn create_for_email(
        &self,
        driver: &dyn Driver,
        email: &EmailAddress,
        draft: &ResetDraft,
        event: &ResetEvent,
    ) -> Result<Option<PasswordReset>, StoreError> {
        atomic::create_for_email(driver, email, draft, event).await
    }

    /// `ResetStore::complete`: the conditional update, and only if it matched, the
    /// password, the revocation of the others, the event and the notices, atomically.
    ///
    /// # Errors
    /// When the database fails; nothing is written then.
    async fn complete(
        &self,
        driver: &dyn Driver,
        c: &Completion,
    ) -> Result<CompletionOutcome, StoreError> {
        atomic::complete(driver, c).await
    }
}
