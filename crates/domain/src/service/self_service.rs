//! Self-service requests: a storefront asks for a reset on a customer's behalf and never
//! sees a token. The request path only counts the request and queues a [`Job`]; the
//! outbox worker fulfils it later, so the answer and the work done while the caller waits
//! are the same whether the address belongs to a customer, to no one, or to a customer
//! without a password.

use std::net::IpAddr;
use std::sync::Arc;

use super::errors::RequestResetError;
use super::issue::{NewReset, ResetIssuer};
use super::limiter::RateLimiter;
use crate::models::{Caller, EmailAddress, Job, Mode, OutboxMessage, Reference, ResetId};
use crate::ports::OutboxStore;

/// The self-service use case. It exists only when the service mails resets itself (the
/// customer learns the token only by mail): see [`super::ResetService::self_service`].
#[derive(Debug, Clone)]
pub struct SelfService {
    issuer: ResetIssuer,
    limiter: RateLimiter,
    outbox: Arc<dyn OutboxStore>,
}

impl SelfService {
    pub(crate) fn new(
        issuer: ResetIssuer,
        limiter: RateLimiter,
        outbox: Arc<dyn OutboxStore>,
    ) -> Self {
        Self {
            issuer,
            limiter,
            outbox,
        }
    }

    /// Counts the request against the same limits as a merchant's, then queues it.
    ///
    /// # Errors
    /// `RateLimited` when a limit is exceeded; `Unexpected` when the store fails.
    pub async fn request(
        &self,
        caller: &Caller,
        email: EmailAddress,
    ) -> Result<(), RequestResetError> {
        let now = self.issuer.ports.now();
        self.limiter.count_request(caller, &email, now).await?;
        let job = Job::SelfServiceReset {
            reset_id: ResetId::new_at(now),
            mode: caller.mode,
            email,
            client_ip: caller.client_ip,
        };
        self.outbox
            .enqueue(std::slice::from_ref(&OutboxMessage::job(job, now)))
            .await?;
        Ok(())
    }

    /// The worker's half: a reset and its mail if the address belongs to a customer (with
    /// or without a password), nothing otherwise. Not counted again: the request was
    /// counted when it arrived. Returns the new reset's id, if there was a customer.
    ///
    /// # Errors
    /// `Unexpected` on storage failures (the worker retries the job).
    pub async fn fulfil(
        &self,
        mode: Mode,
        email: &EmailAddress,
        client_ip: Option<IpAddr>,
    ) -> Result<Option<ResetId>, RequestResetError> {
        let mut caller = Caller::new(mode);
        caller.client_ip = client_ip;
        let mut req = NewReset::for_email(email.clone());
        req.reference_origin = Some(Reference::self_service());
        match self.issuer.issue(&caller, req).await {
            Ok(issued) => Ok(Some(issued.reset.id)),
            Err(RequestResetError::UnknownCustomer) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
