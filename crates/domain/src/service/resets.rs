//! Use cases of `customer_password_resets`.

use std::sync::Arc;

use super::Ports;
use crate::models::{
    Bucket, Caller, DetailsPatch, EmailAddress, EventKind, ListQuery, Metadata, Notification,
    OutboxMessage, Page, Password, PasswordPolicy, PasswordRejection, PasswordReset, QueryError,
    RateLimited, RateLimits, RawListQuery, Reference, ResetDraft, ResetEvent, ResetId, ResetState,
    ResetToken, Timestamp, TokenPolicy, TokenRejection, WebhookTopic,
};
use crate::ports::{Completion, CompletionOutcome, OutboxStore, RateLimitStore, StoreError};

/// A request to start a reset for the customer with `email`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReset {
    pub email: EmailAddress,
    pub reference: Option<Reference>,
    pub reference_origin: Option<Reference>,
    pub metadata: Option<Metadata>,
}

/// A new reset and its raw token, which exists nowhere else.
#[derive(Debug, Clone)]
pub struct IssuedReset {
    pub reset: PasswordReset,
    pub token: ResetToken,
}

/// An attempt to complete a reset.
#[derive(Debug, Clone)]
pub struct CompleteReset {
    /// The token as presented; `None` when absent. Checked here, so every kind of bad
    /// token ends in the same error.
    pub token: Option<String>,
    pub password: Password,
    /// Merchant attributes changed in the same request.
    pub details: DetailsPatch,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestResetError {
    #[error("no customer has this email address")]
    UnknownCustomer,
    #[error("too many reset requests")]
    RateLimited(RateLimited),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum CompleteResetError {
    #[error("no such reset")]
    NotFound,
    /// The one answer for every bad token; the reason is for logs only.
    #[error("the reset token is invalid ({})", .0.as_str())]
    InvalidToken(TokenRejection),
    #[error("the new password {0}")]
    PasswordRejected(PasswordRejection),
    #[error("too many failed completions for this customer")]
    RateLimited(RateLimited),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum GetResetError {
    #[error("no such reset")]
    NotFound,
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ListResetsError {
    #[error(transparent)]
    InvalidQuery(QueryError),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateResetError {
    #[error("no such reset")]
    NotFound,
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteResetError {
    #[error("no such reset")]
    NotFound,
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bucket over its limit whose window ends last, if any.
fn exceeded(buckets: &[Bucket], counts: &[u64], now: crate::Timestamp) -> Option<RateLimited> {
    buckets
        .iter()
        .zip(counts)
        .filter(|(b, n)| **n > u64::from(b.limit.max))
        .map(|(b, _)| RateLimited {
            limit: b.limit,
            retry_after: b.retry_after(now),
        })
        .max_by_key(|r| r.retry_after)
}

fn unexpected(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Unexpected(e) => e,
        other => anyhow::Error::new(other),
    }
}

/// Which notifications the service enqueues, in the same transaction as the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NotificationPlan {
    /// Mail the reset link on request and a notice after every completed reset.
    pub mail: bool,
    /// Commerce Layer webhooks on create, reset_password and destroy.
    pub webhooks: bool,
}

/// The password reset use cases.
#[derive(Debug, Clone)]
pub struct ResetService {
    ports: Ports,
    tokens: TokenPolicy,
    passwords: Arc<PasswordPolicy>,
    plan: NotificationPlan,
    limits: Option<(Arc<dyn RateLimitStore>, Arc<RateLimits>)>,
    self_service: Option<Arc<dyn OutboxStore>>,
}

fn webhook(topic: WebhookTopic, reset: &PasswordReset, at: Timestamp) -> OutboxMessage {
    OutboxMessage::new(
        Notification::Webhook {
            topic,
            reset: Box::new(reset.clone()),
        },
        at,
    )
}

impl ResetService {
    #[must_use]
    pub fn new(ports: Ports, tokens: TokenPolicy, passwords: PasswordPolicy) -> Self {
        Self {
            ports,
            tokens,
            passwords: Arc::new(passwords),
            plan: NotificationPlan::default(),
            limits: None,
            self_service: None,
        }
    }

    /// Accept self-service requests, queued in `outbox` and fulfilled by the worker.
    /// Needs mail notifications: the customer only ever learns the token by mail.
    #[must_use]
    pub fn with_self_service(mut self, outbox: Arc<dyn OutboxStore>) -> Self {
        self.self_service = Some(outbox);
        self
    }

    #[must_use]
    pub fn self_service_enabled(&self) -> bool {
        self.self_service.is_some() && self.plan.mail
    }

    /// A storefront asks for a reset on a customer's behalf. The answer is the same
    /// whether the address belongs to a customer, to no one, or to a customer without a
    /// password, and so is the work done now: count the request, queue it. The worker
    /// looks the customer up later ([`ResetService::fulfil_self_service`]).
    ///
    /// # Errors
    /// `RateLimited`; `Unexpected` also when self-service is not enabled.
    pub async fn request_self_service(
        &self,
        caller: &Caller,
        email: EmailAddress,
    ) -> Result<(), RequestResetError> {
        let outbox = match &self.self_service {
            Some(o) if self.plan.mail => o,
            _ => {
                return Err(RequestResetError::Unexpected(anyhow::anyhow!(
                    "self-service requests are not enabled"
                )));
            }
        };
        let now = self.ports.now();
        self.count_request(caller, &email, now).await?;
        let message = OutboxMessage::new(
            Notification::SelfServiceRequest {
                reset_id: ResetId::new_at(now),
                mode: caller.mode,
                email,
                client_ip: caller.client_ip,
            },
            now,
        );
        outbox
            .enqueue(std::slice::from_ref(&message))
            .await
            .map_err(|e| RequestResetError::Unexpected(unexpected(e)))
    }

    /// The worker's half of a self-service request: a reset and its mail if the address
    /// belongs to a customer (with or without a password), nothing otherwise. Not rate
    /// limited again: the request was counted when it arrived.
    ///
    /// # Errors
    /// `Unexpected` on storage failures (the worker retries).
    pub async fn fulfil_self_service(
        &self,
        mode: crate::Mode,
        email: &EmailAddress,
        client_ip: Option<std::net::IpAddr>,
    ) -> Result<Option<ResetId>, RequestResetError> {
        let mut caller = Caller::new(mode);
        caller.client_ip = client_ip;
        match self
            .issue(
                &caller,
                NewReset {
                    email: email.clone(),
                    reference: None,
                    reference_origin: Some(
                        crate::Reference::parse("self_service").unwrap_or_else(|_| unreachable!()),
                    ),
                    metadata: None,
                },
            )
            .await
        {
            Ok(issued) => Ok(Some(issued.reset.id)),
            Err(RequestResetError::UnknownCustomer) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Enforce `limits`, counting in `store`.
    #[must_use]
    pub fn with_rate_limits(mut self, store: Arc<dyn RateLimitStore>, limits: RateLimits) -> Self {
        self.limits = Some((store, Arc::new(limits)));
        self
    }

    /// Counts one request against every applicable bucket; the first one over its limit
    /// (the one that frees up last) refuses it. Unknown addresses count exactly like known
    /// ones: this runs before any lookup.
    async fn count_request(
        &self,
        caller: &Caller,
        email: &EmailAddress,
        now: crate::Timestamp,
    ) -> Result<(), RequestResetError> {
        let Some((store, limits)) = &self.limits else {
            return Ok(());
        };
        let mut buckets: Vec<Bucket> = Vec::new();
        if !limits.per_email.is_empty() {
            let email_key = hex(self
                .ports
                .digester
                .fingerprint(email.normalized())
                .as_bytes());
            buckets.extend(limits.per_email.iter().map(|l| Bucket {
                key: format!("request:email:{}:{email_key}", l.window.num_seconds()),
                limit: *l,
            }));
        }
        if let (Some(l), Some(c)) = (limits.per_credential, caller.credential) {
            buckets.push(Bucket {
                key: format!("request:credential:{c:016x}"),
                limit: l,
            });
        }
        if let (Some(l), Some(ip)) = (limits.per_client, caller.client_ip) {
            buckets.push(Bucket {
                key: format!("request:client:{ip}"),
                limit: l,
            });
        }
        if buckets.is_empty() {
            // Every request limit is off: nothing to count, no round trip.
            return Ok(());
        }
        let counts = store
            .hit(&buckets, now)
            .await
            .map_err(|e| RequestResetError::Unexpected(unexpected(e)))?;
        match exceeded(&buckets, &counts, now) {
            Some(r) => Err(RequestResetError::RateLimited(r)),
            None => Ok(()),
        }
    }

    fn failure_bucket(
        &self,
        customer: crate::CustomerId,
    ) -> Option<(Arc<dyn RateLimitStore>, Bucket)> {
        let (store, limits) = self.limits.as_ref()?;
        let limit = limits.failures_per_customer?;
        Some((
            store.clone(),
            Bucket {
                key: format!("complete:failures:{customer}"),
                limit,
            },
        ))
    }

    /// Also enqueue these notifications.
    #[must_use]
    pub fn with_notifications(mut self, plan: NotificationPlan) -> Self {
        self.plan = plan;
        self
    }

    #[must_use]
    pub fn notifications(&self) -> NotificationPlan {
        self.plan
    }

    #[must_use]
    pub fn token_policy(&self) -> &TokenPolicy {
        &self.tokens
    }

    /// Starts a reset for the customer with `req.email` and returns it with its token.
    /// Earlier outstanding resets of that customer are revoked.
    ///
    /// # Errors
    /// `UnknownCustomer` when no customer in the caller's mode has that email.
    pub async fn request(
        &self,
        caller: &Caller,
        req: NewReset,
    ) -> Result<IssuedReset, RequestResetError> {
        self.count_request(caller, &req.email, self.ports.now())
            .await?;
        self.issue(caller, req).await
    }

    /// Creates the reset (and its notifications) for a known customer.
    async fn issue(
        &self,
        caller: &Caller,
        req: NewReset,
    ) -> Result<IssuedReset, RequestResetError> {
        let now = self.ports.now();
        let (token, token_digest) = self.ports.digester.issue();
        let draft = ResetDraft {
            id: ResetId::new_at(now),
            mode: caller.mode,
            token_digest,
            expires_at: self.tokens.expires_at(now),
            reference: req.reference,
            reference_origin: req.reference_origin,
            metadata: req.metadata,
            created_at: now,
        };
        let event = caller.event(draft.id, EventKind::Requested, None, now);
        if !self.plan.mail && !self.plan.webhooks {
            // Nothing to enqueue, so nothing depends on the customer's stored record: the
            // store finds the customer and writes the reset in one step.
            let reset = self
                .ports
                .resets
                .create_for_email(&req.email, &draft, &event)
                .await
                .map_err(|e| RequestResetError::Unexpected(unexpected(e)))?
                .ok_or(RequestResetError::UnknownCustomer)?;
            return Ok(IssuedReset { reset, token });
        }
        let customer = self
            .ports
            .customers
            .find_by_email(caller.mode, &req.email)
            .await
            .map_err(|e| RequestResetError::Unexpected(unexpected(e)))?
            .ok_or(RequestResetError::UnknownCustomer)?;
        // Mail goes to the address stored for the customer, never to the one in the request.
        let reset = draft.for_customer(customer.id, customer.email);
        let mut outbox = Vec::new();
        if self.plan.mail {
            outbox.push(OutboxMessage::new(
                Notification::ResetRequested {
                    reset_id: reset.id,
                    mode: reset.mode,
                    to: reset.customer_email.clone(),
                    token: token.clone(),
                    expires_at: reset.expires_at,
                },
                now,
            ));
        }
        if self.plan.webhooks {
            outbox.push(webhook(WebhookTopic::Create, &reset, now));
        }
        self.ports
            .resets
            .create(&reset, &event, &outbox)
            .await
            .map_err(|e| RequestResetError::Unexpected(unexpected(e)))?;
        Ok(IssuedReset { reset, token })
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
        use CompleteResetError as E;
        let reset = self
            .ports
            .resets
            .find(caller.mode, id)
            .await
            .map_err(|e| E::Unexpected(unexpected(e)))?
            .ok_or(E::NotFound)?;
        let now = self.ports.now();
        if let Some((store, bucket)) = self.failure_bucket(reset.customer_id) {
            let counts = store
                .peek(std::slice::from_ref(&bucket), now)
                .await
                .map_err(|e| E::Unexpected(unexpected(e)))?;
            // Would this attempt, if it failed too, go over the limit?
            let with_this: Vec<u64> = counts.iter().map(|c| c + 1).collect();
            if let Some(r) = exceeded(std::slice::from_ref(&bucket), &with_this, now) {
                // Leave a trace on the reset: this is what an attack looks like.
                let event = caller.event(
                    reset.id,
                    EventKind::CompletionFailed,
                    Some("throttled"),
                    now,
                );
                if let Err(e) = self
                    .ports
                    .resets
                    .record_failure(caller.mode, reset.id, false, &event)
                    .await
                {
                    return Err(E::Unexpected(unexpected(e)));
                }
                return Err(E::RateLimited(r));
            }
        }

        if let Err(rejection) = self.check_token(&reset, req.token.as_deref(), now) {
            return Err(self.reject(caller, &reset, rejection).await);
        }
        self.passwords
            .check(&req.password, &reset.customer_email)
            .map_err(E::PasswordRejected)?;
        let password_hash = self
            .ports
            .hasher
            .hash(&req.password)
            .await
            .map_err(E::Unexpected)?;

        // Time may have passed while hashing; the write checks expiry at this instant.
        let now = self.ports.now();
        let mut outbox = Vec::new();
        if self.plan.mail {
            outbox.push(OutboxMessage::new(
                Notification::PasswordChanged {
                    reset_id: reset.id,
                    mode: reset.mode,
                    to: reset.customer_email.clone(),
                    at: now,
                },
                now,
            ));
        }
        if self.plan.webhooks {
            let mut after = reset.clone();
            after.reset_password_at = Some(now);
            after.updated_at = now;
            after.reference = req.details.reference.apply(&after.reference);
            after.reference_origin = req.details.reference_origin.apply(&after.reference_origin);
            after.metadata = req.details.metadata.apply(&after.metadata);
            outbox.push(webhook(WebhookTopic::ResetPassword, &after, now));
        }
        let completion = Completion {
            mode: caller.mode,
            reset_id: reset.id,
            customer_id: reset.customer_id,
            token_digest: reset.token_digest,
            password_hash,
            details: req.details,
            now,
            max_failed_attempts: self.tokens.max_failed_attempts(),
            event: caller.event(reset.id, EventKind::Completed, None, now),
            outbox,
        };
        match self.ports.resets.complete(&completion).await {
            Ok(CompletionOutcome::Completed(done)) => Ok(*done),
            Ok(CompletionOutcome::NotApplied) => {
                let rejection = match reset.state(now, &self.tokens) {
                    ResetState::Expired => TokenRejection::Expired,
                    _ => TokenRejection::LostRace,
                };
                Err(self.reject(caller, &reset, rejection).await)
            }
            Err(e) => Err(E::Unexpected(unexpected(e))),
        }
    }

    fn check_token(
        &self,
        reset: &PasswordReset,
        presented: Option<&str>,
        now: crate::Timestamp,
    ) -> Result<(), TokenRejection> {
        let state = reset.state(now, &self.tokens);
        if state == ResetState::Exhausted {
            return Err(TokenRejection::Exhausted);
        }
        let token = ResetToken::parse(presented.ok_or(TokenRejection::Missing)?)
            .map_err(|_| TokenRejection::Malformed)?;
        // Check every active key's digest without stopping early.
        let matched = self
            .ports
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
    async fn reject(
        &self,
        caller: &Caller,
        reset: &PasswordReset,
        rejection: TokenRejection,
    ) -> CompleteResetError {
        let now = self.ports.now();
        let event = caller.event(
            reset.id,
            EventKind::CompletionFailed,
            Some(rejection.as_str()),
            now,
        );
        if rejection.counts_as_attempt()
            && let Some((store, bucket)) = self.failure_bucket(reset.customer_id)
            && let Err(e) = store.hit(std::slice::from_ref(&bucket), now).await
        {
            return CompleteResetError::Unexpected(unexpected(e));
        }
        match self
            .ports
            .resets
            .record_failure(caller.mode, reset.id, rejection.counts_as_attempt(), &event)
            .await
        {
            Ok(()) => CompleteResetError::InvalidToken(rejection),
            Err(e) => CompleteResetError::Unexpected(unexpected(e)),
        }
    }

    /// The reset with this id.
    ///
    /// # Errors
    /// `NotFound` when there is none in the caller's mode.
    pub async fn get(&self, caller: &Caller, id: ResetId) -> Result<PasswordReset, GetResetError> {
        self.ports
            .resets
            .find(caller.mode, id)
            .await
            .map_err(|e| GetResetError::Unexpected(unexpected(e)))?
            .ok_or(GetResetError::NotFound)
    }

    /// One page of resets matching `raw`.
    ///
    /// # Errors
    /// `InvalidQuery` naming the offending parameter.
    pub async fn list(
        &self,
        caller: &Caller,
        raw: &RawListQuery,
    ) -> Result<Page<PasswordReset>, ListResetsError> {
        let digester = &self.ports.digester;
        let query = ListQuery::parse(raw, &|t| digester.digests(t))
            .map_err(ListResetsError::InvalidQuery)?;
        self.ports
            .resets
            .list(caller.mode, &query)
            .await
            .map_err(|e| ListResetsError::Unexpected(unexpected(e)))
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
        self.ports
            .resets
            .update_details(caller.mode, id, &patch, self.ports.now())
            .await
            .map_err(|e| UpdateResetError::Unexpected(unexpected(e)))?
            .ok_or(UpdateResetError::NotFound)
    }

    /// Deletes a reset and its events.
    ///
    /// # Errors
    /// `NotFound` when there is no such reset in the caller's mode.
    pub async fn delete(&self, caller: &Caller, id: ResetId) -> Result<(), DeleteResetError> {
        let now = self.ports.now();
        let mut outbox = Vec::new();
        if self.plan.webhooks {
            let Some(reset) = self
                .ports
                .resets
                .find(caller.mode, id)
                .await
                .map_err(|e| DeleteResetError::Unexpected(unexpected(e)))?
            else {
                return Err(DeleteResetError::NotFound);
            };
            outbox.push(webhook(WebhookTopic::Destroy, &reset, now));
        }
        let event = caller.event(id, EventKind::Deleted, None, now);
        match self
            .ports
            .resets
            .delete(caller.mode, id, &event, &outbox)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(DeleteResetError::NotFound),
            Err(e) => Err(DeleteResetError::Unexpected(unexpected(e))),
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
        self.ports
            .resets
            .events(caller.mode, id)
            .await
            .map_err(|e| GetResetError::Unexpected(unexpected(e)))
    }
}
