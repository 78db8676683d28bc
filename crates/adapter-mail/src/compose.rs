//! Composing messages from templates, rendered by minijinja: `.html` templates with HTML
//! autoescaping, `.txt` templates as written.

use std::path::Path;

use anyhow::Context;
use minijinja::{Environment, Value, context};
use pwreset_domain::Notification;

const RESET_TXT: &str = include_str!("../templates/reset.txt");
const RESET_HTML: &str = include_str!("../templates/reset.html");
const CHANGED_TXT: &str = include_str!("../templates/changed.txt");
const CHANGED_HTML: &str = include_str!("../templates/changed.html");

/// Message templates, in minijinja's (Jinja) syntax. Text templates start with a
/// `Subject: ...` line. Values: `{{email}}`, `{{link}}`, `{{expires_at}}` (reset),
/// `{{changed_at}}` (notice); in HTML templates they are escaped.
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
    /// When a file exists but cannot be read or does not parse, or a text template lacks
    /// its subject line.
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
        t.environment()?;
        Ok(t)
    }

    /// The four templates in one environment, by file name (which picks the escaping).
    fn environment(&self) -> anyhow::Result<Environment<'static>> {
        let mut env = Environment::new();
        // Mails keep their last newline, as written.
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .build()?,
        );
        for (name, source) in [
            (RESET_TEXT, &self.reset_text),
            (RESET_HTML_NAME, &self.reset_html),
            (CHANGED_TEXT, &self.changed_text),
            (CHANGED_HTML_NAME, &self.changed_html),
        ] {
            env.add_template_owned(name, source.clone())
                .with_context(|| format!("mail template {name} does not parse"))?;
        }
        Ok(env)
    }
}

const RESET_TEXT: &str = "reset.txt";
const RESET_HTML_NAME: &str = "reset.html";
const CHANGED_TEXT: &str = "changed.txt";
const CHANGED_HTML_NAME: &str = "changed.html";

fn split_subject(text: &str) -> Option<(&str, &str)> {
    let (first, rest) = text.split_once('\n')?;
    let subject = first.strip_prefix("Subject:")?.trim();
    Some((subject, rest.trim_start_matches(['\r', '\n'])))
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
    env: Environment<'static>,
    link: String,
}

impl Composer {
    /// `link` is the reset link template with `{id}` and `{token}` placeholders, e.g.
    /// `https://shop.example.com/reset-password?id={id}&token={token}`.
    ///
    /// # Errors
    /// When a template does not parse.
    pub fn new(templates: &Templates, link: impl Into<String>) -> anyhow::Result<Self> {
        Ok(Self {
            env: templates.environment()?,
            link: link.into(),
        })
    }

    fn render(&self, name: &str, values: &Value) -> anyhow::Result<String> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(values))
            .with_context(|| format!("mail template {name} does not render"))
    }

    /// The message for `notification`, or `None` for notifications that are not mail.
    ///
    /// # Errors
    /// When a template does not render (for example a filter applied to the wrong value).
    pub fn compose(&self, notification: &Notification, key: &str) -> anyhow::Result<Option<Mail>> {
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
                let values = context! {
                    email => to.as_str(),
                    link => link.as_str(),
                    expires_at => stamp(expires_at),
                };
                (
                    to,
                    self.render(RESET_TEXT, &values)?,
                    self.render(RESET_HTML_NAME, &values)?,
                    Some(link),
                )
            }
            Notification::PasswordChanged { to, at, .. } => {
                let values = context! { email => to.as_str(), changed_at => stamp(at) };
                (
                    to,
                    self.render(CHANGED_TEXT, &values)?,
                    self.render(CHANGED_HTML_NAME, &values)?,
                    None,
                )
            }
            Notification::Webhook { .. } => return Ok(None),
        };
        let (subject, body) = split_subject(&text).unwrap_or(("Your account", text.as_str()));
        Ok(Some(Mail {
            to: to.as_str().to_owned(),
            subject: subject.to_owned(),
            text: body.to_owned(),
            html,
            message_id: format!("<{key}@pwreset>"),
            link,
        }))
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
            &Templates::default(),
            "https://shop.test/reset?id={id}&token={token}",
        )
        .unwrap();
        let m = c.compose(&reset_mail(), "k1").unwrap().unwrap();
        assert_eq!(m.to, "Jane@Example.com");
        assert_eq!(m.subject, "Reset your password");
        let link = m.link.clone().unwrap();
        assert!(link.starts_with("https://shop.test/reset?id="));
        assert!(link.ends_with(&format!("&token={}", "A".repeat(43))));
        assert!(m.text.contains(&link));
        // In HTML the link is escaped (`&` and `/` as entities), which a mail client undoes.
        let escaped = link.replace('&', "&amp;").replace('/', "&#x2f;");
        assert!(
            m.html.contains(&format!("href=\"{escaped}\"")),
            "{}",
            m.html
        );
        assert!(
            !m.html.contains("{{"),
            "every placeholder is filled: {}",
            m.html
        );
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
        let m = Composer::new(&t, "x/{token}")
            .unwrap()
            .compose(&reset_mail(), "k")
            .unwrap()
            .unwrap();
        assert_eq!(m.subject, "Hi Jane@Example.com");
        assert!(m.text.starts_with("Go: x/AAAA"));
        std::fs::write(dir.join("changed.txt"), "no subject").unwrap();
        assert!(Templates::load(&dir).is_err());
        std::fs::write(dir.join("changed.txt"), "Subject: x\n\n{% if %}").unwrap();
        let err = Templates::load(&dir).unwrap_err();
        assert!(format!("{err:#}").contains("does not parse"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn values_are_escaped_in_html_and_left_as_written_in_text() {
        let templates = Templates {
            reset_text: "Subject: For {{ email }}\n\n{{ link }}\n".to_owned(),
            reset_html: "<a href=\"{{ link }}\">{{ email }}</a>".to_owned(),
            ..Templates::default()
        };
        let m = Composer::new(&templates, "https://x.test/r?id={id}&token=<b>{token}")
            .unwrap()
            .compose(&reset_mail(), "k")
            .unwrap()
            .unwrap();
        assert!(m.text.contains("&token=<b>AAAA"), "{}", m.text);
        assert!(m.text.ends_with('\n'), "the trailing newline is kept");
        assert!(m.html.contains("&amp;token=&lt;b&gt;AAAA"), "{}", m.html);
        assert!(!m.html.contains("<b>"), "{}", m.html);
        let changed = Notification::PasswordChanged {
            reset_id: ResetId::new_at(chrono::Utc::now()),
            mode: Mode::Test,
            to: EmailAddress::parse("a@b.test").unwrap(),
            at: chrono::Utc::now(),
        };
        let m = Composer::new(&Templates::default(), "x")
            .unwrap()
            .compose(&changed, "k")
            .unwrap()
            .unwrap();
        assert_eq!(m.subject, "Your password was changed");
        assert!(m.text.contains("a@b.test") && m.html.contains("a@b.test"));
    }
}
