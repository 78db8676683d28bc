//! Composing messages from templates.

use std::path::Path;

use anyhow::Context;
use pwreset_domain::Notification;

const RESET_TXT: &str = include_str!("../templates/reset.txt");
const RESET_HTML: &str = include_str!("../templates/reset.html");
const CHANGED_TXT: &str = include_str!("../templates/changed.txt");
const CHANGED_HTML: &str = include_str!("../templates/changed.html");

/// Message templates. Text templates start with a `Subject: ...` line. Placeholders:
/// `{{email}}`, `{{link}}`, `{{expires_at}}` (reset), `{{changed_at}}` (notice).
#[derive(Debug, Clone)]
pub struct Templates {
    pub reset_text: String,
    pub reset_html: String,
    pub changed_text: String,
    pub changed_html: String,
}

impl Default for Templates {
    fn default() -> Self {
        Self {
            reset_text: RESET_TXT.to_owned(),
            reset_html: RESET_HTML.to_owned(),
            changed_text: CHANGED_TXT.to_owned(),
            changed_html: CHANGED_HTML.to_owned(),
        }
    }
}

impl Templates {
    /// The built-in templates, with any of `reset.txt`, `reset.html`, `changed.txt`,
    /// `changed.html` found in `dir` taking their place.
    ///
    /// # Errors
    /// When a file exists but cannot be read, or a text template lacks its subject line.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut t = Self::default();
        for (name, slot) in [
            ("reset.txt", &mut t.reset_text),
            ("reset.html", &mut t.reset_html),
            ("changed.txt", &mut t.changed_text),
            ("changed.html", &mut t.changed_html),
        ] {
            let path = dir.join(name);
            if path.exists() {
                *slot = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read mail template {}", path.display()))?;
                if name.ends_with(".txt") && split_subject(slot).is_none() {
                    anyhow::bail!("{} must start with a `Subject: ...` line", path.display());
                }
            }
        }
        Ok(t)
    }
}

fn split_subject(text: &str) -> Option<(&str, &str)> {
    let (first, rest) = text.split_once('\n')?;
    let subject = first.strip_prefix("Subject:")?.trim();
    Some((subject, rest.trim_start_matches(['\r', '\n'])))
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn fill(template: &str, values: &[(&str, &str)], html: bool) -> String {
    let mut out = template.to_owned();
    for (key, value) in values {
        let v = if html {
            escape_html(value)
        } else {
            (*value).to_owned()
        };
        out = out.replace(&format!("{{{{{key}}}}}"), &v);
    }
    out
}

/// A composed message. Its `Debug` shows only the message id: the bodies and the link hold
/// a working reset token, and the recipient is personal data.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// `<key@pwreset>`: the same for every delivery attempt of one outbox message.
    pub message_id: String,
    /// The reset link, when the message has one.
    pub link: Option<String>,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("message_id", &self.message_id)
            .field("has_link", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds messages from notifications.
#[derive(Debug, Clone)]
pub struct Composer {
    templates: Templates,
    link: String,
}

impl Composer {
    /// `link` is the reset link template with `{id}` and `{token}` placeholders, e.g.
    /// `https://shop.example.com/reset-password?id={id}&token={token}`.
    #[must_use]
    pub fn new(templates: Templates, link: impl Into<String>) -> Self {
        Self {
            templates,
            link: link.into(),
        }
    }

    /// The message for `notification`, or `None` for notifications that are not mail.
    #[must_use]
    pub fn compose(&self, notification: &Notification, key: &str) -> Option<Mail> {
        let stamp = |t: &pwreset_domain::Timestamp| t.format("%Y-%m-%d %H:%M UTC").to_string();
        let (to, text, html, link) = match notification {
            Notification::ResetRequested {
                reset_id,
                to,
                token,
                expires_at,
                ..
            } => {
                let link = self
                    .link
                    .replace("{id}", &reset_id.to_string())
                    .replace("{token}", token.expose_secret());
                let values = [
                    ("email", to.as_str()),
                    ("link", link.as_str()),
                    ("expires_at", &stamp(expires_at)),
                ];
                (
                    to,
                    fill(&self.templates.reset_text, &values, false),
                    fill(&self.templates.reset_html, &values, true),
                    Some(link),
                )
            }
            Notification::PasswordChanged { to, at, .. } => {
                let values = [("email", to.as_str()), ("changed_at", &stamp(at))];
                (
                    to,
                    fill(&self.templates.changed_text, &values, false),
                    fill(&self.templates.changed_html, &values, true),
                    None,
                )
            }
            Notification::Webhook { .. } => return None,
        };
        let (subject, body) = split_subject(&text).unwrap_or(("Your account", text.as_str()));
        Some(Mail {
            to: to.as_str().to_owned(),
            subject: subject.to_owned(),
            text: body.to_owned(),
            html,
            message_id: format!("<{key}@pwreset>"),
            link,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pwreset_domain::{EmailAddress, Mode, ResetId, ResetToken};

    fn reset_mail() -> Notification {
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .to_utc();
        Notification::ResetRequested {
            reset_id: ResetId::new_at(t),
            mode: Mode::Test,
            to: EmailAddress::parse("Jane@Example.com").unwrap(),
            token: ResetToken::parse(&"A".repeat(43)).unwrap(),
            expires_at: t,
        }
    }

    #[test]
    fn reset_mail_carries_the_link_and_goes_to_the_stored_address() {
        let c = Composer::new(
            Templates::default(),
            "https://shop.test/reset?id={id}&token={token}",
        );
        let m = c.compose(&reset_mail(), "k1").unwrap();
        assert_eq!(m.to, "Jane@Example.com");
        assert_eq!(m.subject, "Reset your password");
        let link = m.link.clone().unwrap();
        assert!(link.starts_with("https://shop.test/reset?id="));
        assert!(link.ends_with(&format!("&token={}", "A".repeat(43))));
        assert!(m.text.contains(&link));
        assert!(m.html.contains(&link.replace('&', "&amp;")));
        assert!(m.text.contains("2026-01-01 12:00 UTC"));
        assert_eq!(m.message_id, "<k1@pwreset>");
        let debug = format!("{m:?}");
        assert!(debug.contains("<k1@pwreset>"), "{debug}");
        assert!(
            !debug.contains(&"A".repeat(43)) && !debug.contains("Jane@"),
            "Debug shows neither the token nor the address: {debug}"
        );
    }

    #[test]
    fn templates_can_be_overridden_from_files() {
        let dir = std::env::temp_dir().join(format!("pwreset-templates-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("reset.txt"),
            "Subject: Hi {{email}}\n\nGo: {{link}}\n",
        )
        .unwrap();
        let t = Templates::load(&dir).unwrap();
        let m = Composer::new(t, "x/{token}")
            .compose(&reset_mail(), "k")
            .unwrap();
        assert_eq!(m.subject, "Hi Jane@Example.com");
        assert!(m.text.starts_with("Go: x/AAAA"));
        std::fs::write(dir.join("changed.txt"), "no subject").unwrap();
        assert!(Templates::load(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
