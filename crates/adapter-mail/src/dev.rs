//! The development mailer: messages become files and log lines, nothing leaves the machine.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use lettre::message::Mailbox;
use pwreset_domain::Notification;
use pwreset_domain::ports::{DeliveryError, Notifier};

use crate::compose::Composer;
use crate::smtp::message;

/// Writes each message to `<dir>/<time>-<key>.eml` and logs it with its link. For local
/// development only: the log line holds a working reset link.
#[derive(Debug, Clone)]
pub struct DevMailer {
    dir: PathBuf,
    from: Mailbox,
    composer: Composer,
}

impl DevMailer {
    /// # Errors
    /// When `from` is not a mailbox.
    pub fn new(dir: PathBuf, from: &str, composer: Composer) -> anyhow::Result<Self> {
        let from = from
            .parse()
            .with_context(|| format!("PWRESET_MAIL_FROM is not a mail address: {from}"))?;
        Ok(Self {
            dir,
            from,
            composer,
        })
    }
}

#[async_trait]
impl Notifier for DevMailer {
    async fn deliver(&self, notification: &Notification, key: &str) -> Result<(), DeliveryError> {
        self.send(notification, key)
            .await
            .map_err(DeliveryError::new)
    }
}

impl DevMailer {
    /// Delivers one notification (the [`Notifier`] contract).
    async fn send(&self, notification: &Notification, key: &str) -> anyhow::Result<()> {
        let mail = self
            .composer
            .compose(notification, key)
            .ok_or_else(|| anyhow!("{} is not a mail notification", notification.name()))?;
        let bytes = message(&self.from, &mail)?.formatted();
        tokio::fs::create_dir_all(&self.dir)
            .await
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let path = self.dir.join(format!("{stamp}-{key}.eml"));
        tokio::fs::write(&path, bytes)
            .await
            .with_context(|| format!("cannot write {}", path.display()))?;
        tracing::info!(
            path = %path.display(),
            subject = %mail.subject,
            link = mail.link.as_deref().unwrap_or("-"),
            "development mailer: message written (nothing was sent)"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Templates;
    use pwreset_domain::{EmailAddress, Mode, ResetId, ResetToken};

    #[tokio::test]
    async fn messages_become_eml_files() {
        let dir = std::env::temp_dir().join(format!("pwreset-devmail-{}", std::process::id()));
        let mailer = DevMailer::new(
            dir.clone(),
            "pwreset <no-reply@example.com>",
            Composer::new(
                Templates::default(),
                "http://localhost/reset?id={id}&token={token}",
            ),
        )
        .unwrap();
        let t = chrono::Utc::now();
        let n = Notification::ResetRequested {
            reset_id: ResetId::new_at(t),
            mode: Mode::Test,
            to: EmailAddress::parse("jane@example.com").unwrap(),
            token: ResetToken::parse(&"A".repeat(43)).unwrap(),
            expires_at: t,
        };
        mailer.deliver(&n, "key-1").await.unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].path()).unwrap();
        assert!(text.contains("To: jane@example.com"));
        assert!(text.contains("Message-ID: <key-1@pwreset>"));
        assert!(text.contains(&"A".repeat(43)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
