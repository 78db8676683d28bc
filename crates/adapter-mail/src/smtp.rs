//! SMTP delivery with lettre.

use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use pwreset_domain::Notification;
use pwreset_domain::ports::{DeliveryError, Notifier};

use crate::compose::{Composer, Mail};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain connection upgraded with STARTTLS (required).
    StartTls,
    /// TLS from the first byte (SMTPS).
    Implicit,
    /// No TLS: only for local sinks and tests.
    None,
}

/// Where and how to send mail, parsed from `smtp://user:pass@host:port?tls=starttls`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub credentials: Option<(String, String)>,
    /// How long sending one message (connecting and the whole exchange) may take before
    /// the attempt fails and is retried later (default 10 s).
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

impl SmtpConfig {
    /// Parses `smtp://[user:pass@]host[:port][?tls=starttls|implicit|none]` (`smtps://`
    /// means implicit TLS). Default ports: 587 (STARTTLS), 465 (implicit), 25 (none).
    ///
    /// # Errors
    /// When the URL is malformed, the scheme or `tls` value is unknown, or the host is
    /// missing.
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(raw).map_err(|e| anyhow!("not a URL ({e})"))?;
        let mut tls = match url.scheme() {
            "smtp" => Tls::StartTls,
            "smtps" => Tls::Implicit,
            other => return Err(anyhow!("scheme must be smtp or smtps, got {other}")),
        };
        for (k, v) in url.query_pairs() {
            match (k.as_ref(), v.as_ref()) {
                ("tls", "starttls") => tls = Tls::StartTls,
                ("tls", "implicit") => tls = Tls::Implicit,
                ("tls", "none") => tls = Tls::None,
                ("tls", other) => {
                    return Err(anyhow!(
                        "tls must be starttls, implicit or none, got {other}"
                    ));
                }
                (other, _) => return Err(anyhow!("unknown parameter {other}")),
            }
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| anyhow!("the URL has no host"))?
            .to_owned();
        let port = url.port().unwrap_or(match tls {
            Tls::StartTls => 587,
            Tls::Implicit => 465,
            Tls::None => 25,
        });
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let credentials = (!url.username().is_empty()).then(|| {
            (
                decode(url.username()),
                decode(url.password().unwrap_or_default()),
            )
        });
        Ok(Self {
            host,
            port,
            tls,
            credentials,
            timeout: Duration::from_secs(10),
        })
    }
}

/// Builds a lettre message from a composed mail.
///
/// # Errors
/// When an address does not parse for lettre.
pub(crate) fn message(from: &Mailbox, mail: &Mail) -> anyhow::Result<Message> {
    let to: Mailbox = mail
        .to
        .parse()
        .with_context(|| "the stored address is not accepted by the mailer")?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .message_id(Some(mail.message_id.clone()))
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .context("cannot build the message")
}

/// Sends notification mail over SMTP.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    composer: Composer,
    target: String,
    /// The deadline of one message's whole SMTP exchange.
    timeout: Duration,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmtpMailer({})", self.target)
    }
}

impl SmtpMailer {
    /// A mailer sending from `from` through `config`.
    ///
    /// # Errors
    /// When `from` is not a mailbox or the TLS setup fails.
    pub fn new(config: &SmtpConfig, from: &str, composer: Composer) -> anyhow::Result<Self> {
        let from: Mailbox = from
            .parse()
            .with_context(|| format!("PWRESET_MAIL_FROM is not a mail address: {from}"))?;
        let mut builder = match config.tls {
            Tls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)?,
            Tls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)?,
            Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
        }
        .port(config.port)
        .timeout(Some(config.timeout));
        if let Some((user, pass)) = &config.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
        }
        Ok(Self {
            timeout: config.timeout,
            transport: builder.build(),
            from,
            composer,
            target: format!("{}:{} ({:?})", config.host, config.port, config.tls),
        })
    }
}

#[async_trait]
impl Notifier for SmtpMailer {
    async fn deliver(&self, notification: &Notification, key: &str) -> Result<(), DeliveryError> {
        self.send(notification, key)
            .await
            .map_err(DeliveryError::new)
    }
}

impl SmtpMailer {
    /// Delivers one notification (the [`Notifier`] contract).
    async fn send(&self, notification: &Notification, key: &str) -> anyhow::Result<()> {
        let mail = self
            .composer
            .compose(notification, key)?
            .ok_or_else(|| anyhow!("{} is not a mail notification", notification.name()))?;
        let message = message(&self.from, &mail)?;
        // lettre's own timeout bounds connecting, not a server that accepts and then says
        // nothing (seen: such a server held the delivery worker indefinitely), so the whole
        // exchange has the deadline too.
        tokio::time::timeout(self.timeout, self.transport.send(message))
            .await
            .map_err(|_| {
                anyhow!(
                    "SMTP delivery through {} timed out after {:?}",
                    self.target,
                    self.timeout
                )
            })?
            .with_context(|| format!("SMTP delivery through {} failed", self.target))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_parse_with_tls_modes_and_default_ports() {
        let c = SmtpConfig::parse("smtp://us%40er:p%3Ass@mail.example.com?tls=starttls").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.tls),
            ("mail.example.com", 587, Tls::StartTls)
        );
        assert_eq!(c.credentials, Some(("us@er".into(), "p:ss".into())));
        assert!(
            !format!("{c:?}").contains("p:ss"),
            "Debug hides the password"
        );
        let c = SmtpConfig::parse("smtps://mail.example.com").unwrap();
        assert_eq!((c.port, c.tls), (465, Tls::Implicit));
        let c = SmtpConfig::parse("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!((c.port, c.tls, c.credentials), (2525, Tls::None, None));
        for bad in ["http://x", "smtp://x?tls=maybe", "smtp://x?foo=1", "nope"] {
            assert!(SmtpConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
