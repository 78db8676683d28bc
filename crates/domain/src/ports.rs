//! The ports: what the use cases need from the outside world, as object-safe traits.
//!
//! Adapters implement them (`pwreset-adapter-postgres`, `pwreset-adapter-sqlite`,
//! `pwreset-adapter-crypto`, ...); the use cases hold them as `Arc<dyn Port>`. Each method
//! documents its contract, including which [`StoreError`] variant it must return when.
//! With the `mocks` feature (and in this crate's tests) mockall generates `Mock*` types.
//!
//! Token digests and the clock are synchronous on purpose: they are CPU-only and
//! sub-microsecond, and an async signature would only add an allocation per call.

use std::fmt::Debug;

use async_trait::async_trait;

use chrono::TimeDelta;

use crate::models::{
    AccessClaims, AddressedReset, Bucket, Client, ClientId, ClientKey, Customer, CustomerField,
    CustomerId, CustomerSort, DetailsPatch, EmailAddress, ListQuery, Mode, NewSession,
    Notification, OutboxId, OutboxMessage, Page, Password, PasswordHash, PasswordReset,
    RefreshRecord, ResetEvent, ResetField, ResetId, ResetSort, ResetToken, Rotation, Session,
    SessionId, SessionStatus, Timestamp, TokenDigest,
};

/// The cause of an adapter failure that the domain cannot act on, kept for the logs.
///
/// A boxed standard error, so that adapters may use any error library (an `anyhow::Error`
/// converts with `.into()`) and the ports tie their implementers to none.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage failure. Adapters translate their errors into these variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another customer in the same mode already has this normalized email.
    #[error("a customer with this email already exists")]
    DuplicateEmail,
    /// The store cannot answer now: the database is unreachable or restarting, or the
    /// statement or the wait for a connection passed its deadline. Nothing was written;
    /// the same request may succeed shortly.
    #[error("the store is unavailable: {0}")]
    Unavailable(BoxError),
    /// Anything else (constraint that should not fail, a row that does not decode, ...).
    #[error(transparent)]
    Unexpected(BoxError),
}

/// What a use case's `Unexpected` carries when the cause was [`StoreError::Unavailable`],
/// so that an adapter can tell "try again shortly" (HTTP 503) from a fault (500) by
/// downcasting the cause.
#[derive(Debug, thiserror::Error)]
#[error("the store is unavailable: {0}")]
pub struct StoreUnavailable(pub BoxError);

impl StoreError {
    /// A [`StoreError::Unavailable`] failure with `cause`.
    pub fn unavailable(cause: impl Into<BoxError>) -> Self {
        Self::Unavailable(cause.into())
    }

    /// An [`StoreError::Unexpected`] failure with `cause`.
    pub fn unexpected(cause: impl Into<BoxError>) -> Self {
        Self::Unexpected(cause.into())
    }
}

/// A password hashing failure (the worker pool is gone, the stored hash is not a PHC
/// string, ...).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HashError(pub BoxError);

impl HashError {
    /// A hashing failure with `cause`.
    pub fn new(cause: impl Into<BoxError>) -> Self {
        Self(cause.into())
    }
}

/// A failed delivery attempt; the outbox worker retries it with backoff.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DeliveryError(pub BoxError);

impl DeliveryError {
    /// A delivery failure with `cause`.
    pub fn new(cause: impl Into<BoxError>) -> Self {
        Self(cause.into())
    }
}

/// Everything needed to finish a reset in one transaction.
#[derive(Debug, Clone)]
pub struct Completion {
    pub mode: Mode,
    pub reset_id: ResetId,
    pub customer_id: CustomerId,
    /// The digest the presented token matched; the update is conditional on it.
    pub token_digest: TokenDigest,
    pub password_hash: PasswordHash,
    /// Merchant attributes to change in the same write (PATCH may carry both).
    pub details: DetailsPatch,
    /// The reset must still be unexpired at this instant.
    pub now: Timestamp,
    /// The reset must have fewer failed attempts than this.
    pub max_failed_attempts: u32,
    /// The `completed` event to record.
    pub event: ResetEvent,
    /// The `sessions_revoked` event to record, with `reason` set to the number of sessions
    /// the completion ended, when it ended at least one. Completing bumps the customer's
    /// `password_version` and revokes every session of theirs that is not yet revoked,
    /// in the same transaction.
    pub sessions_event: ResetEvent,
    /// Messages to enqueue if (and only if) the completion applies.
    pub outbox: Vec<OutboxMessage>,
}

/// What a completion attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionOutcome {
    /// This call won: the reset is used and the password set. Holds the updated reset.
    Completed(Box<PasswordReset>),
    /// The conditional update matched no row (used, revoked, expired, exhausted, deleted or
    /// the digest changed since it was read): nothing was written.
    NotApplied,
}

/// Storage of password resets and their events.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ResetStore: Send + Sync + Debug {
    /// Inserts `reset`, its `requested` event and its `outbox` messages, and in the same
    /// transaction revokes every earlier outstanding reset of the same customer in the same
    /// mode (setting their `invalidated_at` to `reset.created_at`).
    ///
    /// # Errors
    /// `Unexpected` on any failure; nothing is written then.
    async fn create(
        &self,
        reset: &PasswordReset,
        event: &ResetEvent,
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError>;

    /// Finds the customer of `request.draft.mode` whose normalized address is
    /// `request.email`'s and, if there is one, creates the reset and the messages
    /// [`AddressedReset::for_customer`] makes for them (their id and *stored* address) as
    /// [`ResetStore::create`] does. Returns the stored reset, or `None` (and writes nothing)
    /// when no customer has the address.
    ///
    /// How lookup and write are done is the store's business (one round trip when the
    /// composer is silent, say); the use case only asks for a reset for an address.
    ///
    /// # Errors
    /// `Unexpected` on any failure; nothing is written then.
    async fn create_for_email(
        &self,
        request: &AddressedReset,
    ) -> Result<Option<PasswordReset>, StoreError>;

    /// The reset with this id in this mode, if any.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn find(&self, mode: Mode, id: ResetId) -> Result<Option<PasswordReset>, StoreError>;

    /// One page of the resets in `mode` that match every filter, in the query's order, then
    /// `created_at`, then `id`; and the count of all that match.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn list(
        &self,
        mode: Mode,
        query: &ListQuery<ResetField, ResetSort>,
    ) -> Result<Page<PasswordReset>, StoreError>;

    /// Applies `patch` and sets `updated_at = now`; never touches the reset state. `None`
    /// when no such reset exists.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn update_details(
        &self,
        mode: Mode,
        id: ResetId,
        patch: &DetailsPatch,
        now: Timestamp,
    ) -> Result<Option<PasswordReset>, StoreError>;

    /// Deletes the reset, records `event` (kept for the audit trail until purged) and
    /// enqueues `outbox`, atomically. `false` (and nothing written) when no such reset
    /// exists.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn delete(
        &self,
        mode: Mode,
        id: ResetId,
        event: &ResetEvent,
        outbox: &[OutboxMessage],
    ) -> Result<bool, StoreError>;

    /// Deletes resets used, revoked or expired before `cutoff` with their events, events of
    /// deleted resets older than `cutoff`, and finished outbox messages older than `cutoff`.
    /// Returns how many resets went.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn purge(&self, cutoff: Timestamp) -> Result<u64, StoreError>;

    /// Records a failed completion: adds one to `failed_attempts` when `count_attempt`, and
    /// stores `event`, atomically.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn record_failure(
        &self,
        mode: Mode,
        id: ResetId,
        count_attempt: bool,
        event: &ResetEvent,
    ) -> Result<(), StoreError>;

    /// In one transaction: marks the reset used with a conditional update (this mode and
    /// id, `token_digest` equal, not used, not revoked, `expires_at >= now`, attempts below
    /// the cap); only if that changed a row, sets the customer's password hash, revokes the
    /// customer's other outstanding resets, applies `details` and records the event.
    /// Concurrent calls for one reset yield at most one `Completed`.
    ///
    /// # Errors
    /// `Unexpected` on any failure; nothing is written then.
    async fn complete(&self, completion: &Completion) -> Result<CompletionOutcome, StoreError>;

    /// The reset's events, oldest first.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn events(&self, mode: Mode, id: ResetId) -> Result<Vec<ResetEvent>, StoreError>;
}

/// What changed about a customer besides its plain attributes, so the store can revoke
/// outstanding resets in the same transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialChange {
    None,
    /// The email changed: every outstanding reset is revoked.
    Email,
    /// The password changed (the email may have too): every outstanding reset is revoked,
    /// `password_version` goes up by one and every session of the customer is revoked.
    Password,
}

/// Storage of customers.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CustomerStore: Send + Sync + Debug {
    /// Inserts a new customer.
    ///
    /// # Errors
    /// `DuplicateEmail` when the normalized email is taken in this mode; else `Unexpected`.
    async fn create(&self, customer: &Customer) -> Result<(), StoreError>;

    /// The customer with this id in this mode, if any.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn find(&self, mode: Mode, id: CustomerId) -> Result<Option<Customer>, StoreError>;

    /// The customer whose normalized email equals `email`'s, in this mode.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn find_by_email(
        &self,
        mode: Mode,
        email: &EmailAddress,
    ) -> Result<Option<Customer>, StoreError>;

    /// One page of customers, as [`ResetStore::list`].
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn list(
        &self,
        mode: Mode,
        query: &ListQuery<CustomerField, CustomerSort>,
    ) -> Result<Page<Customer>, StoreError>;

    /// Replaces the stored customer (matched by mode and id) with `customer`, except
    /// `password_hash` and `password_version`, which only [`CredentialChange::Password`]
    /// writes (the hash as given, the version up by one in the store, so concurrent
    /// changes all count; any other update leaves the stored hash alone, so it can never
    /// write back a hash it read before a reset completed); with `Email` or `Password` also revokes
    /// its outstanding resets, and with `Password` its sessions, atomically.
    /// `false` when no such customer exists.
    ///
    /// # Errors
    /// `DuplicateEmail` when the new email is taken in this mode; else `Unexpected`.
    async fn update(
        &self,
        customer: &Customer,
        change: CredentialChange,
    ) -> Result<bool, StoreError>;

    /// Deletes the customer and its resets. `false` when no such customer exists.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn delete(&self, mode: Mode, id: CustomerId) -> Result<bool, StoreError>;

    /// Replaces the customer's password hash with `new` if it is still `old` (a rehash
    /// with stronger parameters after a sign-in: same password, so `password_version`,
    /// resets and sessions stay as they are). `false` when the hash changed meanwhile or
    /// the customer is gone.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn upgrade_hash(
        &self,
        mode: Mode,
        id: CustomerId,
        old: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError>;
}

/// Password hashing (argon2id). Slow by design: implementations must not block the async
/// executor.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync + Debug {
    /// A PHC string for `password` with a fresh salt.
    ///
    /// # Errors
    /// Only on an internal failure (e.g. the worker pool is gone).
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError>;

    /// Whether `password` matches `hash`.
    ///
    /// # Errors
    /// When `hash` is not a valid PHC string or on an internal failure.
    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, HashError>;

    /// Whether `hash` was made with weaker parameters (or another algorithm) than
    /// [`PasswordHasher::hash`] uses now, so a sign-in that proved the password should
    /// store a fresh hash. Cheap: it reads the PHC string only.
    fn needs_rehash(&self, hash: &PasswordHash) -> bool;
}

/// Reset tokens and their keyed digests, with key rotation.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenDigester: Send + Sync + Debug {
    /// A fresh token from 32 CSPRNG bytes and its digest under the current (first) key.
    fn issue(&self) -> (ResetToken, TokenDigest);

    /// The digests of `token` under every active key, current key first.
    fn digests(&self, token: &ResetToken) -> Vec<TokenDigest>;

    /// A keyed digest of any text under the current key, so identifiers such as email
    /// addresses can be counted without being stored.
    fn fingerprint(&self, text: &str) -> TokenDigest;
}

/// Rate-limit counters kept where every instance sees them.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RateLimitStore: Send + Sync + Debug {
    /// Adds one to each bucket's counter for the window containing `now` and returns the
    /// new counts, in order. Concurrent hits never lose a count.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn hit(&self, buckets: &[Bucket], now: Timestamp) -> Result<Vec<u64>, StoreError>;

    /// The current counts without changing them.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn peek(&self, buckets: &[Bucket], now: Timestamp) -> Result<Vec<u64>, StoreError>;
}

/// The current time, injectable so expiry is testable to the millisecond.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// Delivery of notifications (mail, webhook, log). Called by the outbox worker; may be
/// called more than once for one message, so implementations pass `idempotency_key` on.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Notifier: Send + Sync + Debug {
    /// Delivers one notification.
    ///
    /// # Errors
    /// Any delivery failure; the caller retries with backoff.
    async fn deliver(
        &self,
        notification: &Notification,
        idempotency_key: &str,
    ) -> Result<(), DeliveryError>;
}

/// The transactional outbox: messages written in the same transaction as the state change
/// that caused them (see [`ResetStore::create`], [`Completion::outbox`],
/// [`ResetStore::delete`]), delivered at least once by workers.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OutboxStore: Send + Sync + Debug {
    /// Enqueues messages on their own (not tied to a reset change).
    ///
    /// # Errors
    /// `Unexpected` on any failure; nothing is written then.
    async fn enqueue(&self, messages: &[OutboxMessage]) -> Result<(), StoreError>;

    /// Claims up to `limit` due messages (pending, `next_attempt_at <= now`, no live lease),
    /// oldest first: sets their lease to `now + lease` and counts the attempt. While a lease
    /// lasts no other caller, in this or another process, gets the same message; when it
    /// runs out (the worker died) the message is claimed again.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn claim(
        &self,
        now: Timestamp,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Marks a message delivered, erases any secret it held and records a
    /// `notification_delivered` event on its reset.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn delivered(&self, id: OutboxId, now: Timestamp) -> Result<(), StoreError>;

    /// Records a failed attempt: with `retry_at` the message waits until then; without, it
    /// is dead: its secret is erased and a `notification_dead` event recorded.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn failed(
        &self,
        id: OutboxId,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// What waits to be delivered: the pending messages (due, leased or waiting for a
    /// retry), for operators watching the queue.
    ///
    /// # Errors
    /// `Unavailable` or `Unexpected` when the store cannot answer.
    async fn backlog(&self) -> Result<OutboxBacklog, StoreError>;
}

/// The outbox's pending messages: how many, and when the oldest was enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxBacklog {
    pub pending: u64,
    pub oldest: Option<Timestamp>,
}

/// Storage of API clients. Secrets are stored only as keyed digests.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ClientStore: Send + Sync + Debug {
    /// Stores a new client.
    ///
    /// # Errors
    /// `Unexpected` on any failure, a taken `client_id` included.
    async fn create(&self, client: &Client) -> Result<(), StoreError>;

    /// The client with this public id, revoked or not.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn find(&self, client_id: &ClientId) -> Result<Option<Client>, StoreError>;

    /// Every client, oldest first, revoked ones included.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn list(&self) -> Result<Vec<Client>, StoreError>;

    /// Sets `revoked_at = now`. From then on none of its sessions is live and none of its
    /// refresh tokens rotates. `false` when there is no such client or it was revoked already.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn revoke(&self, client_id: &ClientId, now: Timestamp) -> Result<bool, StoreError>;
}

/// Storage of sessions and their refresh tokens (kept only as keyed digests).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SessionStore: Send + Sync + Debug {
    /// Stores a new session and its first refresh token, if it has one.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn open(&self, new: &NewSession) -> Result<(), StoreError>;

    /// Whether access tokens of session `id` still count at `now`: `Live` only when the
    /// session exists, is not revoked and `now < expires_at`, its client is not revoked,
    /// and for a customer session the customer still exists with the session's
    /// `password_version`. One read.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn status(&self, id: SessionId, now: Timestamp) -> Result<SessionStatus, StoreError>;

    /// The session with this id, whatever its status.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn find(&self, id: SessionId) -> Result<Option<Session>, StoreError>;

    /// The session one of `presented` (a refresh token's digests under every key) belongs
    /// to, current or already rotated, whatever its status.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn find_by_refresh(
        &self,
        presented: &[TokenDigest],
    ) -> Result<Option<Session>, StoreError>;

    /// Presents a refresh token, atomically (of any number of concurrent calls with one
    /// token, at most one rotates it):
    /// - current, unexpired at `now`, of `client`, and its session `Live` as
    ///   [`SessionStore::status`] says: it is marked used, `next` becomes the session's
    ///   refresh token, the session's `expires_at` becomes `next.expires_at`: `Rotated`;
    /// - used before (rotated, whether by an earlier or a concurrent call) and of `client`:
    ///   the session is revoked at `now`: `Reused`;
    /// - anything else (unknown, expired, another client's, session ended): `Invalid`,
    ///   and nothing is written.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn rotate(
        &self,
        presented: &[TokenDigest],
        client: ClientKey,
        next: &RefreshRecord,
        now: Timestamp,
    ) -> Result<Rotation, StoreError>;

    /// Revokes session `id` at `now` (its refresh token dies with it). `false` when there
    /// is no such session or it was revoked already.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn revoke(&self, id: SessionId, now: Timestamp) -> Result<bool, StoreError>;

    /// Deletes sessions (and their refresh tokens) that expired or were revoked before
    /// `cutoff`; how many.
    ///
    /// # Errors
    /// `Unexpected` on any failure.
    async fn purge(&self, cutoff: Timestamp) -> Result<u64, StoreError>;
}

/// A signed access token could not be made (a key problem, not the caller's).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SignError(pub BoxError);

impl SignError {
    /// A signing failure with `cause`.
    pub fn new(cause: impl Into<BoxError>) -> Self {
        Self(cause.into())
    }
}

/// Access tokens: signed, self-contained, verified without a store (a store says whether
/// their session still lives, [`SessionStore::status`]).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait AccessTokens: Send + Sync + Debug {
    /// The signed token carrying `claims`.
    ///
    /// # Errors
    /// When the signing key cannot sign.
    fn sign(&self, claims: &AccessClaims) -> Result<String, SignError>;

    /// The claims of `token` when it is well-formed, signed by one of the keys, of the
    /// expected algorithm and issuer, and unexpired at `now`; else `None`.
    fn verify(&self, token: &str, now: Timestamp) -> Option<AccessClaims>;
}
