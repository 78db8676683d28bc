//! The development mailer: messages become files, each named in a log line (never its
//! link), and nothing leaves the machine.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use lettre::message::Mailbox;
use pwreset_domain::Notification;
use pwreset_domain::ports::{DeliveryError, Notifier};

use crate::compose::Composer;
use crate::smtp::message;

/// Writes each message to `<dir>/<time>-<key>.eml` and logs the file's path, nothing else:
/// a reset link is a working credential, and logs go to third parties, so the link (and the
/// subject, which a custom template may fill from it, and the recipient) are only ever in
/// the file. For local development only: nothing is sent.
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
            .compose(notification, key)?
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
            notification = notification.name(),
            "development mailer: message written (nothing was sent); open the file for its link"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Templates;
    use pwreset_domain::{EmailAddress, Mode, ResetId, ResetToken};

    /// Collects what the `tracing` subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn messages_become_eml_files_and_the_log_names_the_file_never_the_link() {
        let captured = Captured::default();
        let writer = captured.clone();
        let _logging = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish(),
        );
        let dir = std::env::temp_dir().join(format!("pwreset-devmail-{}", std::process::id()));
        let mailer = DevMailer::new(
            dir.clone(),
            "pwreset <no-reply@example.com>",
            Composer::new(
                &Templates::default(),
                "http://localhost/reset?id={id}&token={token}",
            )
            .unwrap(),
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
        // The bodies are quoted-printable: undo its soft line breaks and `=3D` to read the link.
        let decoded = text.replace("=\r\n", "").replace("=3D", "=");
        assert!(
            decoded.contains(&format!("&token={}", "A".repeat(43))),
            "{text}"
        );
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let name = files[0].file_name();
        assert!(
            logged.contains(name.to_str().unwrap()),
            "the log names the file: {logged}"
        );
        assert!(logged.contains("reset_requested"), "{logged}");
        for secret in ["A".repeat(43), "token=".into(), "jane@example.com".into()] {
            assert!(
                !logged.contains(&secret),
                "{secret:?} is in the log: {logged}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
