//! Entities, value objects, policies and request types: the vocabulary of the domain.
//!
//! Every value that crosses into the domain is parsed into a type whose constructor checks
//! it (`EmailAddress::parse`, `ResetToken::parse`, ...), so the use cases never handle a
//! raw, unchecked string. Secrets (`ResetToken`, `Password`, `PasswordHash`) redact
//! themselves in `Debug` and have no `Display`.

mod auth;
mod compose;
mod customer;
mod email;
mod event;
mod limits;
mod outbox;
mod query;
mod reset;
mod secrets;
mod values;

pub use auth::*;
pub use compose::{NotificationPlan, OutboxComposer};
pub use customer::*;
pub use email::*;
pub use event::*;
pub use limits::*;
pub use outbox::*;
pub use query::*;
pub use reset::*;
pub use secrets::*;
pub use values::*;
