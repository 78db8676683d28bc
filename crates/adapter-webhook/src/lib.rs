//! Commerce Layer style webhooks for pwreset's notification port.
//!
//! Each `Notification::Webhook` becomes a `POST` of the resource document (the same one the
//! API serves, rendered by `pwreset-jsonapi`; the token is never in it) with headers
//! `X-CommerceLayer-Topic` and `X-CommerceLayer-Signature` = Base64(HMAC-SHA256(shared
//! secret, raw body)), plus `X-Pwreset-Idempotency-Key` so receivers can drop repeats. The
//! receiver has 5 seconds to answer 2xx; anything else is a failure the outbox retries.

use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use pwreset_domain::Notification;
use pwreset_domain::ports::{DeliveryError, Notifier};
use pwreset_jsonapi::{Renderer, View};
use sha2::Sha256;

/// How long a receiver may take to answer, by default.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Base64 of HMAC-SHA256 of `body` under `secret`: the `X-CommerceLayer-Signature` value.
#[must_use]
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Posts webhooks to one endpoint.
#[derive(Clone)]
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
    renderer: Renderer,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookNotifier({})", self.url)
    }
}

impl WebhookNotifier {
    /// Webhooks to `url`, signed with `secret`; resource links under `renderer.base`.
    ///
    /// # Errors
    /// When the URL is not http(s) or the secret is empty.
    pub fn new(url: &str, secret: &[u8], renderer: Renderer) -> anyhow::Result<Self> {
        Self::with_timeout(url, secret, renderer, TIMEOUT)
    }

    /// [`WebhookNotifier::new`], with `timeout` for connecting and for the whole answer.
    ///
    /// # Errors
    /// When the URL is not http(s) or the secret is empty.
    pub fn with_timeout(
        url: &str,
        secret: &[u8],
        renderer: Renderer,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(anyhow!(
                "PWRESET_WEBHOOK_URL must be an http(s) URL, got {url}"
            ));
        }
        if secret.is_empty() {
            return Err(anyhow!("PWRESET_WEBHOOK_SECRET must not be empty"));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pwreset/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the webhook HTTP client")?;
        Ok(Self {
            client,
            url: url.to_owned(),
            secret: secret.to_vec(),
            renderer,
        })
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn deliver(&self, notification: &Notification, key: &str) -> Result<(), DeliveryError> {
        self.send(notification, key)
            .await
            .map_err(DeliveryError::new)
    }
}

impl WebhookNotifier {
    /// Delivers one notification (the [`Notifier`] contract).
    async fn send(&self, notification: &Notification, key: &str) -> anyhow::Result<()> {
        let Notification::Webhook { topic, reset } = notification else {
            return Err(anyhow!("{} is not a webhook", notification.name()));
        };
        let body =
            serde_json::json!({ "data": self.renderer.reset(reset, None, &View::default()) })
                .to_string();
        let response = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/vnd.api+json")
            .header("X-CommerceLayer-Topic", topic.as_str())
            .header(
                "X-CommerceLayer-Signature",
                signature(&self.secret, body.as_bytes()),
            )
            .header("X-Pwreset-Idempotency-Key", key)
            .body(body)
            .send()
            .await
            .map_err(|e| anyhow!("webhook to {} failed: {e}", self.url))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(anyhow!("webhook to {} answered {status}", self.url))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_base64_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let expected = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=";
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            expected
        );
    }

    #[test]
    fn only_http_urls_and_real_secrets_are_accepted() {
        let r = Renderer {
            base: "http://x".into(),
        };
        assert!(WebhookNotifier::new("ftp://x", b"s", r.clone()).is_err());
        assert!(WebhookNotifier::new("https://x", b"", r.clone()).is_err());
        assert!(WebhookNotifier::new("https://hooks.example.com/x", b"s", r).is_ok());
    }
}
