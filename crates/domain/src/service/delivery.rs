//! The outbox worker's use case: claim due messages, deliver each, record the outcome.
//!
//! Delivery is at least once: a message is acknowledged only after the notifier returned,
//! so a worker that dies between claim and acknowledgement leaves the message to be
//! claimed again when its lease runs out, with the same idempotency key.

use std::sync::Arc;

use chrono::TimeDelta;

use crate::models::{Notification, RetryPolicy, jitter_for, to_millis};
use crate::ports::{Clock, Notifier, OutboxStore, StoreError};

/// What one pass of the worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub claimed: usize,
    pub delivered: usize,
    pub retrying: usize,
    pub dead: usize,
}

/// Claims and delivers outbox messages.
#[derive(Debug, Clone)]
pub struct DeliveryService {
    outbox: Arc<dyn OutboxStore>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    lease: TimeDelta,
    batch: u32,
}

fn cause(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Unexpected(e) => e,
        other => anyhow::Error::new(other),
    }
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
            clock,
            retry,
            lease,
            batch,
        }
    }

    /// One pass: claims due messages and delivers them one by one.
    ///
    /// # Errors
    /// When the outbox cannot be read or written; delivery failures are not errors, they
    /// are retried.
    pub async fn run_once(&self) -> anyhow::Result<DeliveryReport> {
        let now = to_millis(self.clock.now());
        let messages = self
            .outbox
            .claim(now, self.lease, self.batch)
            .await
            .map_err(cause)?;
        let mut report = DeliveryReport {
            claimed: messages.len(),
            ..DeliveryReport::default()
        };
        for message in messages {
            // A link that expired while the mail waited is worth nothing: park it.
            if let Notification::ResetRequested { expires_at, .. } = &message.notification
                && *expires_at < now
            {
                self.outbox
                    .failed(
                        message.id,
                        "the reset expired before its mail was delivered",
                        None,
                        now,
                    )
                    .await
                    .map_err(cause)?;
                report.dead += 1;
                continue;
            }
            let key = message.idempotency_key();
            let outcome = self.notifier.deliver(&message.notification, &key).await;
            let now = to_millis(self.clock.now());
            match outcome {
                Ok(()) => {
                    self.outbox
                        .delivered(message.id, now)
                        .await
                        .map_err(cause)?;
                    report.delivered += 1;
                }
                Err(e) => {
                    let retry_at = self.retry.next_attempt(
                        message.attempts,
                        now,
                        jitter_for(message.id, message.attempts),
                    );
                    let error = format!("{e:#}");
                    self.outbox
                        .failed(message.id, &error, retry_at, now)
                        .await
                        .map_err(cause)?;
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
