//! Issuing a reset: a fresh token, the reset for the customer with the requested address,
//! the revocation of their earlier resets and the notifications, in one atomic write.
//! Shared by the merchant's request ([`super::ResetService::request`]) and the worker's
//! half of a self-service request ([`super::SelfService::fulfil`]).

use super::Ports;
use super::errors::RequestResetError;
use crate::models::OutboxComposer;
use crate::models::{
    AddressedReset, Caller, EmailAddress, EventKind, Metadata, PasswordReset, Reference,
    ResetDraft, ResetId, ResetToken, TokenPolicy,
};

/// A request to start a reset for the customer with `email`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewReset {
    pub email: EmailAddress,
    pub reference: Option<Reference>,
    pub reference_origin: Option<Reference>,
    pub metadata: Option<Metadata>,
}

impl NewReset {
    /// A request for `email` with no merchant attributes.
    #[must_use]
    pub fn for_email(email: EmailAddress) -> Self {
        Self {
            email,
            reference: None,
            reference_origin: None,
            metadata: None,
        }
    }
}

/// A new reset and its raw token, which exists nowhere else.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuedReset {
    pub reset: PasswordReset,
    pub token: ResetToken,
}

/// Issues resets; holds no state of its own.
#[derive(Debug, Clone)]
pub(crate) struct ResetIssuer {
    pub(crate) ports: Ports,
    pub(crate) tokens: TokenPolicy,
    pub(crate) composer: OutboxComposer,
}

impl ResetIssuer {
    /// Creates the reset (and its notifications) for the customer with `req.email` in the
    /// caller's mode; earlier outstanding resets of that customer are revoked.
    pub(crate) async fn issue(
        &self,
        caller: &Caller,
        req: NewReset,
    ) -> Result<IssuedReset, RequestResetError> {
        let now = self.ports.now();
        let (token, token_digest) = self.ports.digester.issue();
        let draft = ResetDraft {
            id: ResetId::new_at(now),
            mode: caller.mode,
            token_digest,
            expires_at: self.tokens.expires_at(now),
            reference: req.reference,
            reference_origin: req.reference_origin,
            metadata: req.metadata,
            created_at: now,
        };
        let event = caller.event(draft.id, EventKind::Requested, None, now);
        // The store binds the reset to the customer it finds and composes the messages for
        // them, so mail goes to the stored address, never to the one in the request.
        let request = AddressedReset::new(req.email, draft, event, self.composer, token.clone());
        let reset = self
            .ports
            .resets
            .create_for_email(&request)
            .await?
            .ok_or(RequestResetError::UnknownCustomer)?;
        Ok(IssuedReset { reset, token })
    }
}
