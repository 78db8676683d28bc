//! Sign-in: API clients (Commerce Layer's "applications"), the sessions they open and what
//! an access token says about them.
//!
//! A session is one grant and every refresh of it. Every access token minted by
//! `/oauth/token` names its session, so ending the session ends every token of it: a
//! revoke, a reused refresh token, the client's revocation, or a new password for the
//! customer (sessions remember the customer's password version they were opened with).

use std::fmt;

use super::{ClientKey, CustomerId, Mode, SessionId, Timestamp, TokenDigest};

/// What kind of Commerce Layer application a client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKind {
    /// A merchant's trusted backend (confidential: it has a secret). May do everything.
    Integration,
    /// A storefront (public: its id is enough; a secret is optional). May complete resets
    /// and sign customers in.
    SalesChannel,
}

impl ClientKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Integration => "integration",
            ClientKind::SalesChannel => "sales_channel",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "integration" => Some(ClientKind::Integration),
            "sales_channel" => Some(ClientKind::SalesChannel),
            _ => None,
        }
    }

    /// Public clients may authenticate with their id alone.
    #[must_use]
    pub fn is_public(self) -> bool {
        self == ClientKind::SalesChannel
    }
}

/// The longest client id and client name, in characters.
pub const CLIENT_ID_MAX_CHARS: usize = 128;
pub const CLIENT_NAME_MAX_CHARS: usize = 100;

/// A client's public identifier, as sent in `client_id`: 1 to 128 characters of
/// `[A-Za-z0-9_-]`. Generated ones are 43 characters of base64url (256 random bits).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

/// The text is not a possible client id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a client id is 1 to {CLIENT_ID_MAX_CHARS} characters of A-Z, a-z, 0-9, `-` and `_`")]
pub struct ClientIdError;

impl ClientId {
    /// # Errors
    /// When `s` is empty, too long or has another character.
    pub fn parse(s: &str) -> Result<Self, ClientIdError> {
        let ok = !s.is_empty()
            && s.len() <= CLIENT_ID_MAX_CHARS
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ClientIdError)
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not a secret (it travels in tokens), but long: a prefix identifies it in logs.
        let end = self.0.len().min(8);
        write!(f, "ClientId({}…)", &self.0[..end])
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client's name for people: 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientName(String);

/// Why a text is not a client name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a client name is 1 to {CLIENT_NAME_MAX_CHARS} characters without control characters")]
pub struct ClientNameError;

impl ClientName {
    /// # Errors
    /// When `s` is blank, too long or holds a control character.
    pub fn parse(s: &str) -> Result<Self, ClientNameError> {
        let ok = !s.trim().is_empty()
            && s.chars().count() <= CLIENT_NAME_MAX_CHARS
            && !s.chars().any(char::is_control);
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ClientNameError)
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An API client. Its secret is kept only as a keyed digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The id tokens name it by (`application.id`).
    pub key: ClientKey,
    pub client_id: ClientId,
    pub kind: ClientKind,
    pub mode: Mode,
    pub name: ClientName,
    /// The keyed digest of its secret; `None` for a public client without one.
    pub secret_digest: Option<TokenDigest>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

impl Client {
    #[must_use]
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// One grant and every refresh of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub client: ClientKey,
    pub mode: Mode,
    /// The signed-in customer; `None` for a client credentials session.
    pub customer: Option<CustomerId>,
    /// The customer's password version when the session began: once the password changes
    /// the session has ended, whatever its rows say.
    pub password_version: i64,
    pub created_at: Timestamp,
    /// When it ends by itself: its access token's expiry without a refresh token, the
    /// newest refresh token's expiry with one.
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A session to open, with its first refresh token when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub session: Session,
    pub refresh: Option<RefreshRecord>,
}

/// A refresh token as stored: its keyed digest and when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshRecord {
    pub digest: TokenDigest,
    pub expires_at: Timestamp,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// It was current: it is now used up, `next` replaced it and the session lives on.
    Rotated(Session),
    /// It had been used before: the store ended its whole session (RFC 9700 reuse detection).
    Reused(SessionId),
    /// Unknown, expired, of another client, or its session, client or customer password
    /// has changed since: nothing was written.
    Invalid,
}

/// Where the API's access tokens stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Live,
    /// Revoked, expired, its client revoked, or its customer's password changed since.
    Ended,
}

/// What a verified access token says, whatever its encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The client it was issued to; `None` for tokens minted by an operator on the command
    /// line (`pwreset token`), which belong to no client and no session.
    pub client: Option<(ClientKey, ClientId)>,
    pub kind: ClientKind,
    pub mode: Mode,
    pub customer: Option<CustomerId>,
    pub session: Option<SessionId>,
    /// Seconds since the epoch, as in JWTs.
    pub issued_at: i64,
    pub expires_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_short_urlsafe_words() {
        for ok in ["a", "abc-DEF_123", &"x".repeat(CLIENT_ID_MAX_CHARS)] {
            assert_eq!(ClientId::parse(ok).map(|c| c.0), Ok(ok.to_owned()));
        }
        for bad in [
            "",
            " a",
            "a b",
            "a.b",
            "é",
            &"x".repeat(CLIENT_ID_MAX_CHARS + 1),
        ] {
            assert_eq!(ClientId::parse(bad), Err(ClientIdError), "{bad:?}");
        }
    }

    #[test]
    fn client_names_are_visible_text_of_bounded_length() {
        assert!(ClientName::parse("Storefront (EU)").is_ok());
        assert!(ClientName::parse(&"é".repeat(CLIENT_NAME_MAX_CHARS)).is_ok());
        for bad in ["", "   ", "a\nb", &"é".repeat(CLIENT_NAME_MAX_CHARS + 1)] {
            assert_eq!(ClientName::parse(bad), Err(ClientNameError), "{bad:?}");
        }
    }

    #[test]
    fn only_sales_channels_are_public() {
        assert!(ClientKind::SalesChannel.is_public());
        assert!(!ClientKind::Integration.is_public());
        for k in [ClientKind::Integration, ClientKind::SalesChannel] {
            assert_eq!(ClientKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ClientKind::parse("Integration"), None);
    }
}
