//! The use cases, one job per type:
//! - [`ResetService`] (`resets.rs`): request, complete, read, edit and delete resets;
//! - [`SelfService`] (`self_service.rs`): a storefront's token-less request, queued as a
//!   [`crate::models::Job`] and fulfilled by the outbox worker;
//! - [`RateLimiter`] (`limiter.rs`): which counters a request touches, and the verdict;
//! - [`OutboxComposer`] (in `models`): the notifications each change enqueues;
//! - links (`links.rs`): [`ResetService::check_link`] and [`ResetService::complete_link`],
//!   a reset link opened in a browser, found in either mode;
//! - the issuer (`issue.rs`): token and reset creation, shared by the first two;
//! - [`CustomerService`] (`customers.rs`): the customers whose passwords are reset;
//! - [`DeliveryService`] (`delivery.rs`): one pass of the outbox worker;
//! - [`SessionService`] (`sessions.rs`): API clients, sign-in (the OAuth grants), refresh
//!   rotation, revocation and the check of every request's access token.
//!
//! Each operation has its own error enum (`errors.rs` for resets): named business variants
//! plus one opaque `Unexpected` carrying the cause for the logs.

mod customers;
mod delivery;
mod errors;
mod issue;
mod limiter;
mod links;
mod resets;
mod self_service;
mod sessions;

use std::sync::Arc;

pub use crate::models::{NotificationPlan, OutboxComposer};
pub use customers::*;
pub use delivery::*;
pub use errors::*;
pub use issue::{IssuedReset, NewReset};
pub use limiter::RateLimiter;
pub use resets::*;
pub use self_service::SelfService;
pub use sessions::*;

use crate::models::{Timestamp, to_millis};
use crate::ports::{Clock, CustomerStore, PasswordHasher, ResetStore, TokenDigester};

/// The adapters a service needs, held as trait objects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Ports {
    pub resets: Arc<dyn ResetStore>,
    pub customers: Arc<dyn CustomerStore>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub digester: Arc<dyn TokenDigester>,
    pub clock: Arc<dyn Clock>,
}

impl Ports {
    /// The ports a service needs.
    #[must_use]
    pub fn new(
        resets: Arc<dyn ResetStore>,
        customers: Arc<dyn CustomerStore>,
        hasher: Arc<dyn PasswordHasher>,
        digester: Arc<dyn TokenDigester>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            resets,
            customers,
            hasher,
            digester,
            clock,
        }
    }

    /// The clock's time at the precision everything is stored with.
    fn now(&self) -> Timestamp {
        to_millis(self.clock.now())
    }
}

#[cfg(test)]
mod tests;
