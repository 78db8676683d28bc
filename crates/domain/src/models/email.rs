//! Email addresses: kept as given for mail, normalized (NFKC, lowercase) for matching.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// The longest email address accepted, in bytes (RFC 5321 path limit minus the brackets).
pub const EMAIL_MAX_BYTES: usize = 254;

/// A plausible email address, kept as given and in normalized form (NFKC, then lowercased)
/// for matching. Mail goes to the stored customer's address, never to a submitted string.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    original: String,
    normalized: String,
}

/// Why a text is not an acceptable email address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("email address is empty")]
    Empty,
    #[error("email address is longer than {EMAIL_MAX_BYTES} bytes")]
    TooLong,
    #[error("email address is not of the form local@domain.tld")]
    Malformed,
}

/// Normalizes an email-like text the way stored addresses are normalized: NFKC, lowercase,
/// NFKC again (lowercasing can denormalize). Used for matching, including filter values.
#[must_use]
pub fn normalize_email(s: &str) -> String {
    let lowered: String = s.nfkc().collect::<String>().to_lowercase();
    lowered.nfkc().collect()
}

impl EmailAddress {
    /// Parses an address. Surrounding white space is trimmed; the rest must be one `@`
    /// between a non-empty local part (at most 64 bytes) and a dotted domain, with no white
    /// space or control characters anywhere.
    ///
    /// # Errors
    /// Naming the first rule the address breaks.
    pub fn parse(s: &str) -> Result<Self, EmailError> {
        let original = s.trim();
        if original.is_empty() {
            return Err(EmailError::Empty);
        }
        if original.len() > EMAIL_MAX_BYTES {
            return Err(EmailError::TooLong);
        }
        let normalized = normalize_email(original);
        if normalized.len() > EMAIL_MAX_BYTES {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = normalized.split_once('@').ok_or(EmailError::Malformed)?;
        let plausible = !local.is_empty()
            && local.len() <= 64
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !normalized
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',');
        if !plausible {
            return Err(EmailError::Malformed);
        }
        Ok(Self {
            original: original.to_owned(),
            normalized,
        })
    }

    /// The address as the customer gave it (trimmed).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The normalized form used for uniqueness and matching.
    #[must_use]
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The normalized local part (before the `@`).
    #[must_use]
    pub fn local_part(&self) -> &str {
        self.normalized.split('@').next().unwrap_or_default()
    }

    /// A form safe for logs: first character of the local part, then the domain.
    #[must_use]
    pub fn masked(&self) -> String {
        let (local, domain) = self.normalized.split_once('@').unwrap_or(("", ""));
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.masked())
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.original
    }
}
