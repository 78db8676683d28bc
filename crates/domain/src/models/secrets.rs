//! The secrets a reset handles: the raw token, its keyed digest, the new password and its
//! hash. Each redacts itself in `Debug`, has no `Display`, and is read only through
//! `expose_secret()` (or, for digests, compared in constant time).

use std::fmt;

use subtle::ConstantTimeEq;

/// Number of characters in a reset token: 32 bytes in unpadded base64url.
pub const TOKEN_LEN: usize = 43;

/// A raw reset token: 43 characters of unpadded base64url encoding exactly 32 bytes.
/// It is a secret: it exists only in memory and in the one response that hands it out,
/// redacts itself in `Debug`, and has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ResetToken(String);

/// The text is not a well-formed reset token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reset token is not 43 characters of base64url")]
pub struct TokenFormatError;

fn base64url_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

impl ResetToken {
    /// Accepts exactly the canonical encoding of 32 bytes: 43 base64url characters whose
    /// last character carries no stray bits, so every token has a single spelling.
    ///
    /// # Errors
    /// When `s` is not such a string.
    pub fn parse(s: &str) -> Result<Self, TokenFormatError> {
        let bytes = s.as_bytes();
        if bytes.len() != TOKEN_LEN {
            return Err(TokenFormatError);
        }
        let mut last = 0;
        for &b in bytes {
            last = base64url_value(b).ok_or(TokenFormatError)?;
        }
        // 43 chars hold 258 bits; the 2 bits past the 256th must be zero.
        if last & 0b11 != 0 {
            return Err(TokenFormatError);
        }
        Ok(Self(s.to_owned()))
    }

    /// The raw token, for the single place that must see it (digesting, the create
    /// response, the outbox message).
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ResetToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResetToken(<redacted>)")
    }
}

/// A keyed digest (HMAC-SHA256) of a reset token: the only form in which a token is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// From a stored value; `None` unless exactly 32 bytes.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hexadecimal, 64 characters: how digests travel in text (bucket keys,
    /// webhook snapshots).
    #[must_use]
    pub fn to_hex(&self) -> String {
        use fmt::Write as _;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// The digest written by [`TokenDigest::to_hex`]; `None` unless exactly 64 hex digits.
    #[must_use]
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// Compares in constant time, so the comparison leaks nothing of how much matched.
    #[must_use]
    pub fn ct_eq(&self, other: &TokenDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A new password as submitted: a secret until hashed. Checked by [`crate::PasswordPolicy`].
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    #[must_use]
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A password hash in PHC string format (`$argon2id$v=19$...`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    #[must_use]
    pub fn new(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}
