//! Notification wiring: which notifiers exist, the router between them, and the background
//! jobs (outbox worker, retention purge).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use chrono::TimeDelta;
use pwreset_adapter_mail::{Composer, DevMailer, SmtpConfig, SmtpMailer, Templates};
use pwreset_adapter_sql::SqlStore;
use pwreset_adapter_webhook::WebhookNotifier;
use pwreset_domain::ports::{
    Clock, DeliveryError, Notifier, OutboxBacklog, OutboxStore, ResetStore, StoreError, SystemClock,
};
use pwreset_domain::service::{DeliveryService, NotificationPlan, SelfService};
use pwreset_domain::{Notification, OutboxId, OutboxMessage, RetryPolicy, Timestamp};
use pwreset_jsonapi::Renderer;
use tokio::task::JoinHandle;

use crate::Settings;
use crate::config::Delivery;

/// Sends mail notifications to the mailer and webhooks to the webhook endpoint.
#[derive(Debug)]
pub struct Router {
    mail: Option<Arc<dyn Notifier>>,
    webhooks: Option<Arc<dyn Notifier>>,
}

#[async_trait]
impl Notifier for Router {
    async fn deliver(&self, notification: &Notification, key: &str) -> Result<(), DeliveryError> {
        let target = match notification {
            Notification::Webhook { .. } => self.webhooks.as_ref(),
            Notification::ResetRequested { .. } | Notification::PasswordChanged { .. } => {
                self.mail.as_ref()
            }
        };
        match target {
            Some(n) => n.deliver(notification, key).await,
            None => Err(DeliveryError::new(format!(
                "no notifier is configured for {}",
                notification.name()
            ))),
        }
    }
}

/// What the configuration asks for: the plan the services follow and the router the
/// worker delivers through.
#[derive(Debug)]
pub struct Notifications {
    pub plan: NotificationPlan,
    pub router: Arc<Router>,
    /// Whether create responses may carry the token.
    pub reveal_tokens: bool,
}

/// Builds the notifiers from the settings.
///
/// # Errors
/// On an invalid SMTP URL, sender, template directory or webhook setting, naming the
/// variable.
pub fn notifications(settings: &Settings, public_base: &str) -> anyhow::Result<Notifications> {
    let slowest = settings.smtp_timeout.max(settings.webhook_timeout);
    anyhow::ensure!(
        settings.outbox_lease >= slowest * 2,
        "PWRESET_OUTBOX_LEASE ({}s) must be at least twice the longer of PWRESET_SMTP_TIMEOUT and \
         PWRESET_WEBHOOK_TIMEOUT ({}s), or a message still being delivered can be claimed again",
        settings.outbox_lease.num_seconds(),
        slowest.num_seconds()
    );
    let templates = match &settings.mail_templates {
        Some(dir) => Templates::load(dir).context("PWRESET_MAIL_TEMPLATES")?,
        None => Templates::default(),
    };
    let link = settings
        .reset_link
        .clone()
        .unwrap_or_else(|| format!("{public_base}/reset-password?id={{id}}&token={{token}}"));
    let composer = Composer::new(&templates, link).context("PWRESET_MAIL_TEMPLATES")?;
    let smtp = settings
        .smtp_url
        .as_deref()
        .map(|url| SmtpConfig::parse(url).map_err(|e| anyhow!("PWRESET_SMTP_URL: {e}")))
        .transpose()?
        .map(|config| SmtpConfig {
            timeout: settings.smtp_timeout.to_std().unwrap_or_default(),
            ..config
        });
    if settings.self_service && settings.delivery != Delivery::Mail {
        anyhow::bail!(
            "PWRESET_SELF_SERVICE=true needs PWRESET_DELIVERY=mail: self-service tokens only ever travel by mail"
        );
    }
    let mail_on = match settings.delivery {
        Delivery::Mail => true,
        Delivery::Token => smtp.is_none() && settings.mail_preview,
    };
    let mail: Option<Arc<dyn Notifier>> = if !mail_on {
        None
    } else if let Some(config) = &smtp {
        tracing::info!(smtp = ?config, "mail goes out over SMTP");
        Some(Arc::new(SmtpMailer::new(
            config,
            &settings.mail_from,
            composer,
        )?))
    } else {
        let dir = settings.data_dir.join("mail");
        tracing::warn!(
            dir = %dir.display(),
            "development mailer: reset mails are written to files in this directory (the log \
             names each file, never its link), nothing is sent; set PWRESET_SMTP_URL (or \
             PWRESET_MAIL_PREVIEW=false) for production"
        );
        Some(Arc::new(DevMailer::new(
            dir,
            &settings.mail_from,
            composer,
        )?))
    };
    let webhooks: Option<Arc<dyn Notifier>> =
        match (&settings.webhook_url, &settings.webhook_secret) {
            (None, None) => None,
            (Some(url), Some(secret)) => Some(Arc::new(WebhookNotifier::with_timeout(
                url,
                secret.as_bytes(),
                Renderer {
                    base: public_base.to_owned(),
                },
                settings.webhook_timeout.to_std().unwrap_or_default(),
            )?)),
            (Some(_), None) => {
                anyhow::bail!("PWRESET_WEBHOOK_SECRET is required with PWRESET_WEBHOOK_URL")
            }
            (None, Some(_)) => {
                anyhow::bail!("PWRESET_WEBHOOK_URL is required with PWRESET_WEBHOOK_SECRET")
            }
        };
    Ok(Notifications {
        plan: NotificationPlan::new(mail.is_some(), webhooks.is_some()),
        reveal_tokens: settings.delivery == Delivery::Token,
        router: Arc::new(Router { mail, webhooks }),
    })
}

/// Replaces anything that looks like an email address, for log lines built from remote
/// error messages (an SMTP server may quote the recipient).
#[must_use]
pub fn redact_addresses(text: &str) -> String {
    text.split_inclusive(|c: char| c.is_whitespace() || "<>\"'(),;[]".contains(c))
        .map(|part| {
            let word =
                part.trim_end_matches(|c: char| c.is_whitespace() || "<>\"'(),;[]".contains(c));
            if word.contains('@') {
                part.replacen(word, "<address>", 1)
            } else {
                part.to_owned()
            }
        })
        .collect()
}

/// The background jobs of one instance.
#[derive(Debug)]
pub struct Jobs {
    handles: Vec<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Waits `d`, or less if the jobs are told to stop; true when they are.
async fn wait_or_stop(stop: &mut tokio::sync::watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// The outbox as the delivery worker uses it, with one difference: the mark that a
/// message was delivered, which follows a mail already handed to the server, is tried
/// again while the database is unavailable (a restart, a pooler restart), for up to
/// `patience`. A mark given up on means the mail goes out a second time when the lease
/// runs out.
#[derive(Debug)]
struct MarkPersistently {
    store: SqlStore,
    patience: Duration,
}

#[async_trait]
impl OutboxStore for MarkPersistently {
    async fn enqueue(&self, messages: &[OutboxMessage]) -> Result<(), StoreError> {
        self.store.enqueue(messages).await
    }

    async fn claim(
        &self,
        now: Timestamp,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.store.claim(now, lease, limit).await
    }

    async fn delivered(&self, id: OutboxId, now: Timestamp) -> Result<(), StoreError> {
        let give_up = tokio::time::Instant::now() + self.patience;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.store.delivered(id, now).await {
                Err(StoreError::Unavailable(e))
                    if tokio::time::Instant::now() + pause < give_up =>
                {
                    tracing::warn!(error = %e, message = %id, "cannot record a delivered message yet; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    async fn failed(
        &self,
        id: OutboxId,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.store.failed(id, error, retry_at, now).await
    }

    async fn backlog(&self) -> Result<OutboxBacklog, StoreError> {
        self.store.backlog().await
    }
}

impl Jobs {
    /// Starts the outbox worker (running self-service jobs with `self_service`, when
    /// present) and the retention purge.
    #[must_use]
    pub fn start(
        settings: &Settings,
        store: &SqlStore,
        router: Arc<Router>,
        self_service: Option<SelfService>,
    ) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let retry = RetryPolicy {
            base: TimeDelta::milliseconds(i64::try_from(settings.retry_base_ms).unwrap_or(5000)),
            ..RetryPolicy::default()
        };
        let mut worker = DeliveryService::new(
            Arc::new(MarkPersistently {
                store: store.clone(),
                // Half the lease: the mark lands before another worker may take the message.
                patience: (settings.outbox_lease / 2).to_std().unwrap_or_default(),
            }),
            router,
            clock,
            retry,
            settings.outbox_lease,
            16,
        );
        if let Some(service) = self_service {
            worker = worker.with_self_service(service);
        }
        let poll = Duration::from_millis(settings.outbox_poll_ms.max(10));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut outbox_stop = stopped.clone();
        let outbox = tokio::spawn(async move {
            while !*outbox_stop.borrow() {
                match worker.run_once().await {
                    Ok(r) if r.claimed > 0 => {
                        crate::metrics::record_deliveries(r.delivered, r.retrying, r.dead);
                        tracing::info!(
                            delivered = r.delivered,
                            retrying = r.retrying,
                            dead = r.dead,
                            "outbox pass"
                        );
                        if r.delivered == r.claimed {
                            continue;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        error = redact_addresses(&format!("{e:#}")),
                        "outbox pass failed; retrying"
                    ),
                }
                if wait_or_stop(&mut outbox_stop, poll).await {
                    break;
                }
            }
        });
        let retention = settings.retention;
        let purge_store = store.clone();
        let mut purge_stop = stopped;
        let purge = tokio::spawn(async move {
            loop {
                let cutoff = chrono::Utc::now() - retention;
                match ResetStore::purge(&purge_store, cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(resets = n, "purged ended resets past retention"),
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "retention purge failed"),
                }
                if wait_or_stop(&mut purge_stop, Duration::from_secs(600)).await {
                    break;
                }
            }
        });
        Self {
            handles: vec![outbox, purge],
            stop,
        }
    }

    /// Stops the jobs: each finishes the pass it is in (up to 10 seconds, then it is
    /// cancelled) and starts no other. A message cut off mid-delivery is delivered again
    /// after its lease runs out (at least once).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for mut h in self.handles {
            if tokio::time::timeout(Duration::from_secs(10), &mut h)
                .await
                .is_err()
            {
                h.abort();
                let _ = h.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_addresses;

    #[test]
    fn addresses_in_error_text_are_redacted() {
        assert_eq!(
            redact_addresses("550 5.1.1 <jane@example.com>: Recipient address rejected"),
            "550 5.1.1 <<address>>: Recipient address rejected"
        );
        assert_eq!(redact_addresses("connection refused"), "connection refused");
    }
}
