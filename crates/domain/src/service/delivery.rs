//! The outbox worker's use case: claim due messages, deliver each notification or run each
//! job, record the outcome.
//!
//! Delivery is at least once: a message is acknowledged only after the notifier returned,
//! so a worker that dies between claim and acknowledgement leaves the message to be
//! claimed again when its lease runs out, with the same idempotency key.

use std::sync::Arc;

use chrono::TimeDelta;

use super::SelfService;
use crate::models::{
    Job, Notification, OutboxMessage, Payload, RetryPolicy, jitter_for, to_millis,
};
use crate::ports::{BoxError, Clock, Notifier, OutboxStore, StoreError};

/// What one pass of the worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub claimed: usize,
    pub delivered: usize,
    pub retrying: usize,
    pub dead: usize,
}

/// Claims outbox messages, delivers notifications and runs jobs.
#[derive(Debug, Clone)]
pub struct DeliveryService {
    outbox: Arc<dyn OutboxStore>,
    notifier: Arc<dyn Notifier>,
    self_service: Option<SelfService>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    lease: TimeDelta,
    batch: u32,
}

/// Renders an error with its chain of causes, for the message's `last_error`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

impl DeliveryService {
    /// A worker claiming up to `batch` messages per pass, each for `lease` (longer than the
    /// slowest delivery, so a live worker never loses its message to another).
    #[must_use]
    pub fn new(
        outbox: Arc<dyn OutboxStore>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        retry: RetryPolicy,
        lease: TimeDelta,
        batch: u32,
    ) -> Self {
        Self {
            outbox,
            notifier,
            self_service: None,
            clock,
            retry,
            lease,
            batch,
        }
    }

    /// Runs self-service jobs with `service`. Without it such jobs fail (and are retried
    /// until they die), which happens only when self-service was switched off while
    /// requests were queued.
    #[must_use]
    pub fn with_self_service(mut self, service: SelfService) -> Self {
        self.self_service = Some(service);
        self
    }

    /// Delivers a notification or runs a job.
    async fn dispatch(&self, message: &OutboxMessage, key: &str) -> Result<(), BoxError> {
        match &message.payload {
            Payload::Notification(n) => Ok(self.notifier.deliver(n, key).await?),
            Payload::Job(Job::SelfServiceReset {
                mode,
                email,
                client_ip,
                ..
            }) => {
                let service = self
                    .self_service
                    .as_ref()
                    .ok_or("self-service requests are switched off; this one is not fulfilled")?;
                service.fulfil(*mode, email, *client_ip).await?;
                Ok(())
            }
        }
    }

    /// One pass: claims due messages and delivers them one by one.
    ///
    /// # Errors
    /// When the outbox cannot be read or written; delivery failures are not errors, they
    /// are retried.
    pub async fn run_once(&self) -> Result<DeliveryReport, StoreError> {
        let now = to_millis(self.clock.now());
        let messages = self.outbox.claim(now, self.lease, self.batch).await?;
        let mut report = DeliveryReport {
            claimed: messages.len(),
            ..DeliveryReport::default()
        };
        for message in messages {
            // A link that expired while the mail waited is worth nothing: park it.
            if let Some(Notification::ResetRequested { expires_at, .. }) = message.notification()
                && *expires_at < now
            {
                self.outbox
                    .failed(
                        message.id,
                        "the reset expired before its mail was delivered",
                        None,
                        now,
                    )
                    .await?;
                report.dead += 1;
                continue;
            }
            let key = message.idempotency_key();
            let outcome = self.dispatch(&message, &key).await;
            let now = to_millis(self.clock.now());
            match outcome {
                Ok(()) => {
                    self.outbox.delivered(message.id, now).await?;
                    report.delivered += 1;
                }
                Err(e) => {
                    let retry_at = self.retry.next_attempt(
                        message.attempts,
                        now,
                        jitter_for(message.id, message.attempts),
                    );
                    let error = chain(e.as_ref());
                    self.outbox
                        .failed(message.id, &error, retry_at, now)
                        .await?;
                    if retry_at.is_some() {
                        report.retrying += 1;
                    } else {
                        report.dead += 1;
                    }
                }
            }
        }
        Ok(report)
    }
}
