//! A reset link opened in a browser (the hosted pages): the link carries no credentials,
//! so its reset is found in either mode, and its token is checked before the form is shown
//! with the accounting of a completion.

use std::net::IpAddr;

use super::errors::{CompleteResetError, GetResetError};
use super::resets::{CompleteReset, ResetService};
use crate::models::{Caller, Mode, PasswordReset, ResetId};

impl ResetService {
    /// The reset a link names, looked up in every mode: a link opened in a browser carries
    /// no credentials, and ids are unique across modes.
    ///
    /// # Errors
    /// `Unexpected` when the store fails.
    pub async fn find_link(&self, id: ResetId) -> Result<Option<PasswordReset>, GetResetError> {
        for mode in [Mode::Live, Mode::Test] {
            if let Some(reset) = self.ports().resets.find(mode, id).await?
                && reset.mode == mode
            {
                return Ok(Some(reset));
            }
        }
        Ok(None)
    }

    /// Checks a link's token before its page shows the new-password form, with the checks
    /// and the accounting of [`Self::complete`]: the same failure limit, and a failed check
    /// recorded and counted exactly like a failed completion, so the page is no free
    /// guessing oracle. A valid token is never consumed and the reset is not written.
    /// `client_ip` is the browser's address, for the trail; the reset is found in either
    /// mode ([`Self::find_link`]). Returns the reset, whose stored address the form shows.
    ///
    /// # Errors
    /// As [`Self::complete`] before the password: `NotFound`, `RateLimited`, or
    /// `InvalidToken` for every token failure.
    pub async fn check_link(
        &self,
        client_ip: Option<IpAddr>,
        id: ResetId,
        token: Option<&str>,
    ) -> Result<PasswordReset, CompleteResetError> {
        let reset = self
            .find_link(id)
            .await
            .map_err(|e| match e {
                GetResetError::NotFound => CompleteResetError::NotFound,
                GetResetError::Unexpected(e) => CompleteResetError::Unexpected(e),
            })?
            .ok_or(CompleteResetError::NotFound)?;
        let caller = link_caller(reset.mode, client_ip);
        let now = self.ports().now();
        self.guard_failures(&caller, &reset, now).await?;
        if let Err(rejection) = self.check_token(&reset, token, now) {
            return Err(self.reject(&caller, &reset, rejection).await);
        }
        Ok(reset)
    }

    /// [`Self::complete`] for a link opened in a browser: the reset is found in either mode
    /// ([`Self::find_link`]) and completed in its own.
    ///
    /// # Errors
    /// As [`Self::complete`].
    pub async fn complete_link(
        &self,
        client_ip: Option<IpAddr>,
        id: ResetId,
        req: CompleteReset,
    ) -> Result<PasswordReset, CompleteResetError> {
        let mode = match self.find_link(id).await {
            Ok(Some(reset)) => reset.mode,
            Ok(None) | Err(GetResetError::NotFound) => return Err(CompleteResetError::NotFound),
            Err(GetResetError::Unexpected(e)) => return Err(CompleteResetError::Unexpected(e)),
        };
        self.complete(&link_caller(mode, client_ip), id, req).await
    }
}

/// The caller behind a link opened in a browser: no credential, the reset's own mode.
fn link_caller(mode: Mode, client_ip: Option<IpAddr>) -> Caller {
    let mut caller = Caller::new(mode);
    caller.client_ip = client_ip;
    caller
}
