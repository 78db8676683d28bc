//! Mail adapters for pwreset's notification port.
//!
//! - [`SmtpMailer`] sends over SMTP with lettre (STARTTLS, implicit TLS, or plain for local
//!   sinks; optional auth), configured from one URL such as
//!   `smtp://user:pass@mail.example.com:587?tls=starttls`.
//! - [`DevMailer`] is the development default: it writes each message to
//!   `<dir>/<time>-<key>.eml` and logs the file's path, never its link: a new user opens
//!   the file to follow the link, and the log, which may go to third parties, holds no
//!   token.
//!
//! Both compose the same messages ([`Composer`]): a "reset your password" mail with the
//! link and its expiry, and a "your password was changed" notice, in plain text and HTML,
//! from built-in templates or files that override them. Mail only ever goes to the
//! customer's stored address, which the notification carries. Each message's `Message-ID`
//! is derived from the outbox idempotency key, so a redelivery is recognisably the same
//! message.

mod compose;
mod dev;
mod smtp;

pub use compose::{Composer, Mail, Templates};
pub use dev::DevMailer;
pub use smtp::{SmtpConfig, SmtpMailer, Tls};
