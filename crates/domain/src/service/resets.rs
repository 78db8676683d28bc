//! The `customer_password_resets` use cases: request, complete, read, edit, delete.
//!
//! [`ResetService`] holds the ports and policies and delegates what is not CRUD to one
//! part each: [`super::RateLimiter`] (limits), [`super::OutboxComposer`] (what the outbox
//! receives), the issuer (token and reset creation, shared with [`super::SelfService`]).

use std::sync::Arc;

use super::Ports;
use super::errors::{
    CompleteResetError, DeleteResetError, GetResetError, ListResetsError, RequestResetError,
    UpdateResetError,
};
use super::issue::{IssuedReset, NewReset, ResetIssuer};
use super::limiter::{LimitError, RateLimiter};
use super::self_service::SelfService;
use crate::models::{
    Caller, DetailsPatch, EventKind, FilterValue, ListQuery, Page, Password, PasswordPolicy,
    PasswordReset, RateLimits, ResetEvent, ResetField, ResetId, ResetSort, ResetState, ResetToken,
    Timestamp, TokenPolicy, TokenRejection,
};
use crate::models::{NotificationPlan, OutboxComposer};
use crate::ports::{Completion, CompletionOutcome, OutboxStore, RateLimitStore};

/// An attempt to complete a reset.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CompleteReset {
    /// The token as presented; `None` when absent. Checked here, so every kind of bad
    /// token ends in the same error.
    pub token: Option<String>,
    pub password: Password,
    /// Merchant attributes changed in the same request.
    pub details: DetailsPatch,
}

impl CompleteReset {
    /// An attempt with `token` (as presented) and the new `password`, changing nothing else.
    #[must_use]
    pub fn new(token: Option<String>, password: Password) -> Self {
        Self {
            token,
            password,
            details: DetailsPatch::default(),
        }
    }
}

/// The password reset use cases.
///
/// Built from [`Ports`] (the adapters) and the two policies; everything else is opt-in:
/// [`ResetService::with_notifications`], [`ResetService::with_rate_limits`],
/// [`ResetService::self_service`].
///
/// ```
/// # use std::sync::Arc;
/// # use pwreset_adapter_crypto::{Argon2Hasher, HmacDigester};
/// # use pwreset_adapter_memory::MemoryStore;
/// use pwreset_domain::ports::{CustomerStore, SystemClock};
/// use pwreset_domain::service::{CompleteReset, NewReset, Ports, ResetService};
/// use pwreset_domain::{Caller, Customer, CustomerId, EmailAddress, Mode, Password};
/// use pwreset_domain::{PasswordPolicy, TokenPolicy, to_millis};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Arc::new(MemoryStore::new());
/// # let now = to_millis(chrono::Utc::now());
/// # store.create(&Customer { id: CustomerId::new_at(now), mode: Mode::Test,
/// #     email: EmailAddress::parse("jane@example.com")?, password_hash: None,
/// #     password_version: 0, reference: None, reference_origin: None, metadata: None,
/// #     created_at: now, updated_at: now }).await?;
/// let ports = Ports::new(
///     store.clone(),
///     store,
///     Arc::new(Argon2Hasher::owasp_minimum()),
///     Arc::new(HmacDigester::new(vec![vec![7; 32]])?),
///     Arc::new(SystemClock),
/// );
/// let resets = ResetService::new(ports, TokenPolicy::default(), PasswordPolicy::default());
///
/// let caller = Caller::new(Mode::Test);
/// let email = EmailAddress::parse("Jane@example.com")?;
/// let issued = resets.request(&caller, NewReset::for_email(email)).await?;
/// let token = Some(issued.token.expose_secret().to_owned());
/// let attempt = CompleteReset::new(token, Password::new("a brand new passphrase"));
/// let done = resets.complete(&caller, issued.reset.id, attempt.clone()).await?;
/// assert!(done.reset_password_at.is_some());
/// // Single use: the same token again is refused.
/// assert!(resets.complete(&caller, issued.reset.id, attempt).await.is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ResetService {
    issuer: ResetIssuer,
    passwords: Arc<PasswordPolicy>,
    limiter: RateLimiter,
}

impl ResetService {
    /// The use cases over `ports`, with no notifications and no rate limits.
    #[must_use]
    pub fn new(ports: Ports, tokens: TokenPolicy, passwords: PasswordPolicy) -> Self {
        let limiter = RateLimiter::off(ports.digester.clone());
        Self {
            issuer: ResetIssuer {
                ports,
                tokens,
                composer: OutboxComposer::default(),
            },
            passwords: Arc::new(passwords),
            limiter,
        }
    }

    /// Also enqueue these notifications.
    #[must_use]
    pub fn with_notifications(mut self, plan: NotificationPlan) -> Self {
        self.issuer.composer = OutboxComposer::new(plan);
        self
    }

    /// Enforce `limits`, counting in `store`.
    #[must_use]
    pub fn with_rate_limits(mut self, store: Arc<dyn RateLimitStore>, limits: RateLimits) -> Self {
        self.limiter = RateLimiter::new(store, limits, self.issuer.ports.digester.clone());
        self
    }

    /// The self-service use case, queueing requests in `outbox`; `None` unless the service
    /// mails resets itself, since the customer only ever learns the token by mail.
    #[must_use]
    pub fn self_service(&self, outbox: Arc<dyn OutboxStore>) -> Option<SelfService> {
        self.issuer
            .composer
            .plan()
            .mail
            .then(|| SelfService::new(self.issuer.clone(), self.limiter.clone(), outbox))
    }

    #[must_use]
    pub fn notifications(&self) -> NotificationPlan {
        self.issuer.composer.plan()
    }

    /// The rules a new password must meet.
    #[must_use]
    pub fn password_policy(&self) -> &PasswordPolicy {
        &self.passwords
    }

    #[must_use]
    pub fn token_policy(&self) -> &TokenPolicy {
        &self.issuer.tokens
    }

    pub(super) fn ports(&self) -> &Ports {
        &self.issuer.ports
    }

    /// Starts a reset for the customer with `req.email` and returns it with its token.
    /// Earlier outstanding resets of that customer are revoked.
    ///
    /// # Errors
    /// `UnknownCustomer` when no customer in the caller's mode has that email;
    /// `RateLimited` when a limit is exceeded (unknown addresses count the same).
    pub async fn request(
        &self,
        caller: &Caller,
        req: NewReset,
    ) -> Result<IssuedReset, RequestResetError> {
        self.limiter
            .count_request(caller, &req.email, self.ports().now())
            .await?;
        self.issuer.issue(caller, req).await
    }

    /// Completes reset `id`: checks the token (constant time), the reset's state and the
    /// password policy, hashes the password, then marks the reset used and sets the
    /// password in one conditional write. A refused password does not use up the token.
    ///
    /// # Errors
    /// `NotFound` for an unknown id; `InvalidToken` for every token failure (the reason
    /// is recorded as an event); `PasswordRejected` when the policy refuses the password.
    pub async fn complete(
        &self,
        caller: &Caller,
        id: ResetId,
        req: CompleteReset,
    ) -> Result<PasswordReset, CompleteResetError> {
        let reset = self
            .ports()
            .resets
            .find(caller.mode, id)
            .await?
            .ok_or(CompleteResetError::NotFound)?;
        self.complete_found(caller, reset, req).await
    }

    /// [`Self::complete`] of a reset already read in the caller's mode.
    pub(super) async fn complete_found(
        &self,
        caller: &Caller,
        reset: PasswordReset,
        req: CompleteReset,
    ) -> Result<PasswordReset, CompleteResetError> {
        use CompleteResetError as E;
        let ports = self.ports();
        let now = ports.now();
        self.guard_failures(caller, &reset, now).await?;
        if let Err(rejection) = self.check_token(&reset, req.token.as_deref(), now) {
            return Err(self.reject(caller, &reset, rejection).await);
        }
        self.passwords
            .check(&req.password, &reset.customer_email)
            .map_err(E::PasswordRejected)?;
        let password_hash = ports.hasher.hash(&req.password).await?;

        // Time may have passed while hashing; the write checks expiry at this instant.
        let now = ports.now();
        let outbox = self.issuer.composer.completed(&reset, &req.details, now);
        let completion = Completion {
            mode: caller.mode,
            reset_id: reset.id,
            customer_id: reset.customer_id,
            token_digest: reset.token_digest,
            password_hash,
            details: req.details,
            now,
            max_failed_attempts: self.token_policy().max_failed_attempts(),
            event: caller.event(reset.id, EventKind::Completed, None, now),
            sessions_event: caller.event(reset.id, EventKind::SessionsRevoked, None, now),
            outbox,
        };
        match ports.resets.complete(&completion).await? {
            CompletionOutcome::Completed(done) => Ok(*done),
            CompletionOutcome::NotApplied => {
                let rejection = match reset.state(now, self.token_policy()) {
                    ResetState::Expired => TokenRejection::Expired,
                    _ => TokenRejection::LostRace,
                };
                Err(self.reject(caller, &reset, rejection).await)
            }
        }
    }

    /// Whether this attempt, if it failed too, would go over the customer's failure limit;
    /// a refusal leaves a `throttled` trace on the reset (what an attack looks like).
    pub(super) async fn guard_failures(
        &self,
        caller: &Caller,
        reset: &PasswordReset,
        now: Timestamp,
    ) -> Result<(), CompleteResetError> {
        match self.limiter.check_failures(reset.customer_id, now).await {
            Ok(()) => Ok(()),
            Err(LimitError::Store(e)) => Err(e.into()),
            Err(LimitError::Exceeded(r)) => {
                let event = caller.event(
                    reset.id,
                    EventKind::CompletionFailed,
                    Some("throttled"),
                    now,
                );
                self.ports()
                    .resets
                    .record_failure(caller.mode, reset.id, false, &event)
                    .await?;
                Err(CompleteResetError::RateLimited(r))
            }
        }
    }

    pub(super) fn check_token(
        &self,
        reset: &PasswordReset,
        presented: Option<&str>,
        now: Timestamp,
    ) -> Result<(), TokenRejection> {
        let state = reset.state(now, self.token_policy());
        if state == ResetState::Exhausted {
            return Err(TokenRejection::Exhausted);
        }
        let token = ResetToken::parse(presented.ok_or(TokenRejection::Missing)?)
            .map_err(|_| TokenRejection::Malformed)?;
        // Check every active key's digest without stopping early.
        let matched = self
            .ports()
            .digester
            .digests(&token)
            .iter()
            .fold(false, |acc, d| d.ct_eq(&reset.token_digest) | acc);
        if !matched {
            return Err(TokenRejection::Wrong);
        }
        match state {
            ResetState::Outstanding => Ok(()),
            ResetState::Used => Err(TokenRejection::Used),
            ResetState::Revoked => Err(TokenRejection::Revoked),
            ResetState::Expired => Err(TokenRejection::Expired),
            ResetState::Exhausted => Err(TokenRejection::Exhausted),
        }
    }

    /// Records a failed completion and returns the caller's (uniform) error.
    pub(super) async fn reject(
        &self,
        caller: &Caller,
        reset: &PasswordReset,
        rejection: TokenRejection,
    ) -> CompleteResetError {
        let now = self.ports().now();
        let event = caller.event(
            reset.id,
            EventKind::CompletionFailed,
            Some(rejection.as_str()),
            now,
        );
        if rejection.counts_as_attempt()
            && let Err(e) = self.limiter.count_failure(reset.customer_id, now).await
        {
            return e.into();
        }
        match self
            .ports()
            .resets
            .record_failure(caller.mode, reset.id, rejection.counts_as_attempt(), &event)
            .await
        {
            Ok(()) => CompleteResetError::InvalidToken(rejection),
            Err(e) => e.into(),
        }
    }

    /// The reset with this id.
    ///
    /// # Errors
    /// `NotFound` when there is none in the caller's mode.
    pub async fn get(&self, caller: &Caller, id: ResetId) -> Result<PasswordReset, GetResetError> {
        self.ports()
            .resets
            .find(caller.mode, id)
            .await?
            .ok_or(GetResetError::NotFound)
    }

    /// One page of resets matching `query`. Token filters (`FilterValue::Tokens`) are
    /// turned into digests under every active key here, so no store ever sees a token.
    ///
    /// # Errors
    /// `Unexpected` when the store fails.
    pub async fn list(
        &self,
        caller: &Caller,
        mut query: ListQuery<ResetField, ResetSort>,
    ) -> Result<Page<PasswordReset>, ListResetsError> {
        let digester = &self.ports().digester;
        for filter in &mut query.filters {
            if let FilterValue::Tokens(tokens) = &filter.value {
                filter.value =
                    FilterValue::Digests(tokens.iter().flat_map(|t| digester.digests(t)).collect());
            }
        }
        Ok(self.ports().resets.list(caller.mode, &query).await?)
    }

    /// Changes `reference`, `reference_origin` or `metadata`; never the reset state.
    ///
    /// # Errors
    /// `NotFound` when there is no such reset in the caller's mode.
    pub async fn update_details(
        &self,
        caller: &Caller,
        id: ResetId,
        patch: DetailsPatch,
    ) -> Result<PasswordReset, UpdateResetError> {
        let ports = self.ports();
        ports
            .resets
            .update_details(caller.mode, id, &patch, ports.now())
            .await?
            .ok_or(UpdateResetError::NotFound)
    }

    /// Deletes a reset and its events.
    ///
    /// # Errors
    /// `NotFound` when there is no such reset in the caller's mode.
    pub async fn delete(&self, caller: &Caller, id: ResetId) -> Result<(), DeleteResetError> {
        let ports = self.ports();
        let now = ports.now();
        let composer = &self.issuer.composer;
        let outbox = if composer.needs_deleted_reset() {
            let Some(reset) = ports.resets.find(caller.mode, id).await? else {
                return Err(DeleteResetError::NotFound);
            };
            composer.deleted(&reset, now)
        } else {
            Vec::new()
        };
        let event = caller.event(id, EventKind::Deleted, None, now);
        if ports
            .resets
            .delete(caller.mode, id, &event, &outbox)
            .await?
        {
            Ok(())
        } else {
            Err(DeleteResetError::NotFound)
        }
    }

    /// The trail of a reset, oldest first.
    ///
    /// # Errors
    /// `NotFound` when there is no such reset in the caller's mode.
    pub async fn events(
        &self,
        caller: &Caller,
        id: ResetId,
    ) -> Result<Vec<ResetEvent>, GetResetError> {
        self.get(caller, id).await?;
        Ok(self.ports().resets.events(caller.mode, id).await?)
    }
}
