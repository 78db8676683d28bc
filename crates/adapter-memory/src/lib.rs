//! The in-memory storage adapter of pwreset: every storage port of the domain
//! ([`ResetStore`], [`CustomerStore`], [`RateLimitStore`], [`OutboxStore`], [`ClientStore`]
//! and [`SessionStore`]) over plain
//! Rust collections.
//!
//! It is for tests, examples and services that embed the core in one process and want no
//! database: it keeps **nothing across restarts**, and two processes never share it. It
//! honours the same contract as the SQL adapter (`pwreset-adapter-sql`), checked by the same
//! storage contract suite (`tests/tests/suite/storage.rs`): revocation on create, completion
//! and credential change; mode isolation; the conditional completion; every list filter,
//! sort and page; outbox leases, retries and secret erasure; purge and rate-limit windows.
//!
//! One [`std::sync::Mutex`] guards the whole state. Every port method takes it once, checks
//! everything that could refuse the write (duplicate ids, a taken email, a missing
//! customer), and only then changes anything, so each call is atomic and all-or-nothing, as
//! a database transaction is. The lock is never held across an `.await` (the methods do not
//! await at all). A panic while holding it cannot leave a half-applied write, so a poisoned
//! lock is simply taken over.
//!
//! Ids the store makes itself (the events of revocations and deliveries) are UUIDv7 from
//! the time of the change, like every other id in pwreset.
//!
//! ```
//! use pwreset_adapter_memory::MemoryStore;
//! use pwreset_domain::ports::CustomerStore;
//! use pwreset_domain::{Customer, CustomerId, EmailAddress, Mode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! let now = pwreset_domain::to_millis(chrono::Utc::now());
//! let jane = Customer {
//!     id: CustomerId::new_at(now),
//!     mode: Mode::Test,
//!     email: EmailAddress::parse("Jane@Example.com")?,
//!     password_hash: None,
//!     password_version: 0,
//!     reference: None,
//!     reference_origin: None,
//!     metadata: None,
//!     created_at: now,
//!     updated_at: now,
//! };
//! store.create(&jane).await?;
//! let found = store
//!     .find_by_email(Mode::Test, &EmailAddress::parse("jane@example.com")?)
//!     .await?;
//! assert_eq!(found, Some(jane));
//! # Ok(())
//! # }
//! ```
//!
//! The domain's services take the ports as `Arc<dyn Port>`; one `Arc<MemoryStore>` serves
//! them all, since clones share one state.
//!
//! [`ResetStore`]: pwreset_domain::ports::ResetStore
//! [`CustomerStore`]: pwreset_domain::ports::CustomerStore
//! [`RateLimitStore`]: pwreset_domain::ports::RateLimitStore
//! [`OutboxStore`]: pwreset_domain::ports::OutboxStore
//! [`ClientStore`]: pwreset_domain::ports::ClientStore
//! [`SessionStore`]: pwreset_domain::ports::SessionStore

mod customers;
mod limits;
mod list;
mod outbox;
mod resets;
mod sessions;
mod state;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use state::{State, Status};

/// Every storage port over one shared in-memory state. Clones share the state.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The state, for one atomic operation. A panic cannot leave a write half done (every
    /// operation checks before it changes anything), so a poisoned lock is taken over.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts over the outbox that no port exposes: for tests and for monitoring.
    #[must_use]
    pub fn outbox_summary(&self) -> OutboxSummary {
        let state = self.lock();
        let mut summary = OutboxSummary::default();
        for row in state.outbox.values() {
            summary.messages += 1;
            if row.status == Status::Pending {
                summary.pending += 1;
            }
            if row.holds_secret() {
                summary.holding_secret += 1;
            }
            summary.max_attempts = summary.max_attempts.max(row.attempts);
        }
        summary
    }
}

impl fmt::Debug for MemoryStore {
    /// Sizes only: the state holds tokens of pending mails.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryStore")
            .field("customers", &state.customers.len())
            .field("resets", &state.resets.len())
            .field("outbox", &state.outbox.len())
            .field("rate_limit_counters", &state.counters.len())
            .field("clients", &state.clients.len())
            .field("sessions", &state.sessions.len())
            .finish_non_exhaustive()
    }
}

/// What the outbox holds, by count (see [`MemoryStore::outbox_summary`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxSummary {
    /// Every message not yet purged, whatever its status.
    pub messages: usize,
    /// Messages still waiting for delivery.
    pub pending: usize,
    /// Messages that still hold a raw reset token (pending reset mails).
    pub holding_secret: usize,
    /// The most delivery attempts any message took.
    pub max_attempts: u32,
}
