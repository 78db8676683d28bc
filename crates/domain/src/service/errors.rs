//! The error enum of each reset use case: named business variants plus one opaque
//! `Unexpected` carrying the cause for the logs. Adapter failures become `Unexpected`
//! through `From`, so use cases propagate them with `?`.
//!
//! These enums are deliberately not `#[non_exhaustive]`: the HTTP adapter maps every
//! variant to a status in one table, and a new variant must force a decision there rather
//! than fall into a catch-all 500.

use crate::models::{PasswordRejection, RateLimited, TokenRejection};
use crate::ports::{StoreError, StoreUnavailable};

/// The cause of an adapter failure, as the use cases report it (an unavailable store as
/// [`StoreUnavailable`], which adapters look for).
pub(crate) fn cause(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Unexpected(e) => anyhow::Error::from_boxed(e),
        StoreError::Unavailable(e) => anyhow::Error::new(StoreUnavailable(e)),
        other => anyhow::Error::new(other),
    }
}

/// `From<StoreError>` (and `From<HashError>`) for use-case errors whose `Unexpected`
/// variant carries an `anyhow::Error`.
macro_rules! unexpected_from_ports {
    ($($error:ty),+ $(,)?) => {$(
        impl From<$crate::ports::StoreError> for $error {
            fn from(e: $crate::ports::StoreError) -> Self {
                Self::Unexpected($crate::service::errors::cause(e))
            }
        }
        impl From<$crate::ports::HashError> for $error {
            fn from(e: $crate::ports::HashError) -> Self {
                Self::Unexpected(anyhow::Error::from_boxed(e.0))
            }
        }
    )+};
}
pub(crate) use unexpected_from_ports;

#[derive(Debug, thiserror::Error)]
pub enum RequestResetError {
    #[error("no customer has this email address")]
    UnknownCustomer,
    #[error("too many reset requests")]
    RateLimited(RateLimited),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum CompleteResetError {
    #[error("no such reset")]
    NotFound,
    /// The one answer for every bad token; the reason is for logs only.
    #[error("the reset token is invalid ({})", .0.as_str())]
    InvalidToken(TokenRejection),
    #[error("the new password {0}")]
    PasswordRejected(PasswordRejection),
    #[error("too many failed completions for this customer")]
    RateLimited(RateLimited),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum GetResetError {
    #[error("no such reset")]
    NotFound,
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ListResetsError {
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateResetError {
    #[error("no such reset")]
    NotFound,
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteResetError {
    #[error("no such reset")]
    NotFound,
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

unexpected_from_ports!(
    RequestResetError,
    CompleteResetError,
    GetResetError,
    ListResetsError,
    UpdateResetError,
    DeleteResetError,
);
