//! A reset link opened in a browser (the hosted pages): the link carries no credentials,
//! so its reset is found in either mode, and its token is checked before the form is shown
//! with the accounting of a completion.

use std::net::IpAddr;

use super::errors::{CompleteResetError, GetResetError};
use super::resets::{CompleteReset, ResetService};
use crate::models::{Caller, EventKind, Mode, PasswordReset, ResetId, TokenRejection};

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
    /// and the accounting of [`Self::complete`]: the same failure limit, and a wrong or
    /// malformed token recorded and counted exactly like a failed completion, so the page is
    /// no free guessing oracle. No token at all is recorded but not counted (see
    /// [`Self::complete_link`]). A valid token is never consumed and the reset is not
    /// written.
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
        let Some(token) = token else {
            return Err(self.without_token(&caller, &reset, now).await);
        };
        if let Err(rejection) = self.check_token(&reset, Some(token), now) {
            return Err(self.reject(&caller, &reset, rejection).await);
        }
        Ok(reset)
    }

    /// [`Self::complete`] for a link opened in a browser: the reset is found in either mode
    /// ([`Self::find_link`]) and completed in its own.
    ///
    /// A request without a token (the token cookie never arrived: a mail scanner that
    /// follows the link without keeping cookies, an expired cookie, or anyone who only
    /// knows a reset's id) fails with `InvalidToken(Missing)`, recorded as an event but not
    /// counted: nothing was guessed, and counting it would let anyone who knows an id use
    /// up a customer's reset and their failure limit without credentials.
    ///
    /// # Errors
    /// As [`Self::complete`].
    pub async fn complete_link(
        &self,
        client_ip: Option<IpAddr>,
        id: ResetId,
        req: CompleteReset,
    ) -> Result<PasswordReset, CompleteResetError> {
        let reset = match self.find_link(id).await {
            Ok(Some(reset)) => reset,
            Ok(None) | Err(GetResetError::NotFound) => return Err(CompleteResetError::NotFound),
            Err(GetResetError::Unexpected(e)) => return Err(CompleteResetError::Unexpected(e)),
        };
        let caller = link_caller(reset.mode, client_ip);
        if req.token.is_none() {
            let now = self.ports().now();
            return Err(self.without_token(&caller, &reset, now).await);
        }
        // The reset was just read in its mode: complete it without reading it again.
        self.complete_found(&caller, reset, req).await
    }

    /// Records that a link was used without a token, without counting an attempt.
    async fn without_token(
        &self,
        caller: &Caller,
        reset: &PasswordReset,
        now: crate::models::Timestamp,
    ) -> CompleteResetError {
        let rejection = TokenRejection::Missing;
        let event = caller.event(
            reset.id,
            EventKind::CompletionFailed,
            Some(rejection.as_str()),
            now,
        );
        match self
            .ports()
            .resets
            .record_failure(caller.mode, reset.id, false, &event)
            .await
        {
            Ok(()) => CompleteResetError::InvalidToken(rejection),
            Err(e) => e.into(),
        }
    }
}

/// The caller behind a link opened in a browser: no credential, the reset's own mode.
fn link_caller(mode: Mode, client_ip: Option<IpAddr>) -> Caller {
    let mut caller = Caller::new(mode);
    caller.client_ip = client_ip;
    caller
}
