//! The password reset entity and the policies that decide what a reset and a new password
//! may be.

use chrono::TimeDelta;
use unicode_normalization::UnicodeNormalization;

use super::{
    CustomerId, EmailAddress, Metadata, Mode, OutboxComposer, OutboxMessage, Password, Reference,
    ResetEvent, ResetId, ResetToken, Timestamp, TokenDigest,
};

/// A request to reset one customer's password, identified by a single-use token of which
/// only the keyed digest is kept.
///
/// Its serde form (field names as here, RFC 3339 times, the digest in hex) is how a reset
/// travels inside a stored webhook message; every field is checked again when read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PasswordReset {
    pub id: ResetId,
    pub mode: Mode,
    pub customer_id: CustomerId,
    /// The customer's stored address when the reset was created.
    pub customer_email: EmailAddress,
    pub token_digest: TokenDigest,
    pub expires_at: Timestamp,
    /// When the reset was completed; `None` while outstanding.
    pub reset_password_at: Option<Timestamp>,
    /// When a newer reset, a completed reset or a credential change revoked this one.
    pub invalidated_at: Option<Timestamp>,
    /// Completions attempted with a wrong or malformed token.
    pub failed_attempts: u32,
    pub reference: Option<Reference>,
    pub reference_origin: Option<Reference>,
    pub metadata: Option<Metadata>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A new reset before it is bound to its customer: everything a request decides on its
/// own. [`ResetDraft::for_customer`] makes the outstanding [`PasswordReset`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetDraft {
    pub id: ResetId,
    pub mode: Mode,
    pub token_digest: TokenDigest,
    pub expires_at: Timestamp,
    pub reference: Option<Reference>,
    pub reference_origin: Option<Reference>,
    pub metadata: Option<Metadata>,
    pub created_at: Timestamp,
}

impl ResetDraft {
    /// The outstanding reset of this customer (`customer_email` as stored for them).
    #[must_use]
    pub fn for_customer(
        self,
        customer_id: CustomerId,
        customer_email: EmailAddress,
    ) -> PasswordReset {
        PasswordReset {
            id: self.id,
            mode: self.mode,
            customer_id,
            customer_email,
            token_digest: self.token_digest,
            expires_at: self.expires_at,
            reset_password_at: None,
            invalidated_at: None,
            failed_attempts: 0,
            reference: self.reference,
            reference_origin: self.reference_origin,
            metadata: self.metadata,
            created_at: self.created_at,
            updated_at: self.created_at,
        }
    }
}

/// A reset to create for whichever customer of `draft.mode` has `email` (see
/// `ResetStore::create_for_email`): the draft, its `requested` event, and what to enqueue
/// once the store knows the customer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AddressedReset {
    pub email: EmailAddress,
    pub draft: ResetDraft,
    pub event: ResetEvent,
    pub composer: OutboxComposer,
    pub token: ResetToken,
}

impl AddressedReset {
    #[must_use]
    pub fn new(
        email: EmailAddress,
        draft: ResetDraft,
        event: ResetEvent,
        composer: OutboxComposer,
        token: ResetToken,
    ) -> Self {
        Self {
            email,
            draft,
            event,
            composer,
            token,
        }
    }

    /// The reset bound to the customer a store found (their id and *stored* address) and
    /// the outbox messages to write with it.
    #[must_use]
    pub fn for_customer(
        &self,
        customer_id: CustomerId,
        stored_email: EmailAddress,
    ) -> (PasswordReset, Vec<OutboxMessage>) {
        let reset = self.draft.clone().for_customer(customer_id, stored_email);
        let outbox = self
            .composer
            .requested(&reset, &self.token, self.draft.created_at);
        (reset, outbox)
    }
}

/// Where a reset stands at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetState {
    /// Can still be completed with its token.
    Outstanding,
    Used,
    Revoked,
    Expired,
    /// Too many failed completions: dead even for the right token.
    Exhausted,
}

impl PasswordReset {
    /// The state at `now`. A reset is still valid at the exact instant it expires and
    /// invalid one millisecond later.
    #[must_use]
    pub fn state(&self, now: Timestamp, policy: &TokenPolicy) -> ResetState {
        if self.reset_password_at.is_some() {
            ResetState::Used
        } else if self.invalidated_at.is_some() {
            ResetState::Revoked
        } else if self.failed_attempts >= policy.max_failed_attempts() {
            ResetState::Exhausted
        } else if now > self.expires_at {
            ResetState::Expired
        } else {
            ResetState::Outstanding
        }
    }
}

/// Why a presented token did not complete a reset. Callers all get the same answer; this
/// reason goes to logs and to the reset's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    Missing,
    Malformed,
    Wrong,
    Used,
    Revoked,
    Expired,
    Exhausted,
    /// The token was right but a concurrent completion won the conditional update.
    LostRace,
}

impl TokenRejection {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRejection::Missing => "missing",
            TokenRejection::Malformed => "malformed",
            TokenRejection::Wrong => "wrong",
            TokenRejection::Used => "used",
            TokenRejection::Revoked => "revoked",
            TokenRejection::Expired => "expired",
            TokenRejection::Exhausted => "exhausted",
            TokenRejection::LostRace => "lost_race",
        }
    }

    /// Whether this failure counts against the reset's failed-attempt cap: guesses do,
    /// presenting a once-valid token after its reset ended does not change anything.
    #[must_use]
    pub fn counts_as_attempt(self) -> bool {
        matches!(
            self,
            TokenRejection::Missing | TokenRejection::Malformed | TokenRejection::Wrong
        )
    }
}

/// Lifetime bounds and attempt cap for reset tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    lifetime: TimeDelta,
    max_failed_attempts: u32,
}

/// The requested token lifetime is outside what the policy allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token lifetime must be between 5 minutes and 24 hours, got {seconds} seconds")]
pub struct TokenLifetimeError {
    pub seconds: i64,
}

impl TokenPolicy {
    pub const MIN_LIFETIME: TimeDelta = TimeDelta::minutes(5);
    pub const MAX_LIFETIME: TimeDelta = TimeDelta::hours(24);
    pub const DEFAULT_LIFETIME: TimeDelta = TimeDelta::hours(1);
    pub const MAX_FAILED_ATTEMPTS: u32 = 5;

    /// A policy with the given lifetime (5 minutes to 24 hours inclusive).
    ///
    /// # Errors
    /// When `lifetime` is outside those bounds.
    pub fn new(lifetime: TimeDelta) -> Result<Self, TokenLifetimeError> {
        if lifetime < Self::MIN_LIFETIME || lifetime > Self::MAX_LIFETIME {
            return Err(TokenLifetimeError {
                seconds: lifetime.num_seconds(),
            });
        }
        Ok(Self {
            lifetime,
            max_failed_attempts: Self::MAX_FAILED_ATTEMPTS,
        })
    }

    #[must_use]
    pub fn lifetime(&self) -> TimeDelta {
        self.lifetime
    }

    #[must_use]
    pub fn max_failed_attempts(&self) -> u32 {
        self.max_failed_attempts
    }

    #[must_use]
    pub fn expires_at(&self, created_at: Timestamp) -> Timestamp {
        created_at + self.lifetime
    }
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            lifetime: Self::DEFAULT_LIFETIME,
            max_failed_attempts: Self::MAX_FAILED_ATTEMPTS,
        }
    }
}

/// Why a new password was refused. Refusal never uses up a reset token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejection {
    #[error("is too short (minimum is {min} characters)")]
    TooShort { min: usize },
    #[error("is too long (maximum is {max} characters)")]
    TooLong { max: usize },
    #[error("must not contain the email address")]
    ContainsEmail,
    #[error("is too common")]
    Common,
}

/// A list of passwords too common to accept (shipped by an adapter or the app).
pub trait CommonPasswords: Send + Sync + std::fmt::Debug {
    /// Whether `normalized` (NFKC form of the candidate) is on the list.
    fn contains(&self, normalized: &str) -> bool;
}

/// The rules a new password must meet (NIST SP 800-63B style: length, no composition
/// rules, no truncation, no common or email-derived passwords).
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    min_chars: usize,
    common: Option<std::sync::Arc<dyn CommonPasswords>>,
}

/// The configured minimum length is below the floor of 8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("minimum password length must be at least 8, got {0}")]
pub struct PasswordPolicyError(pub usize);

impl PasswordPolicy {
    pub const FLOOR_MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 256;

    /// A policy with a minimum length of at least 8 code points.
    ///
    /// # Errors
    /// When `min_chars` is below 8 or above the 256 code points any password may have.
    pub fn new(min_chars: usize) -> Result<Self, PasswordPolicyError> {
        if !(Self::FLOOR_MIN_CHARS..=Self::MAX_CHARS).contains(&min_chars) {
            return Err(PasswordPolicyError(min_chars));
        }
        Ok(Self {
            min_chars,
            common: None,
        })
    }

    /// The fewest characters a password may have.
    #[must_use]
    pub fn min_chars(&self) -> usize {
        self.min_chars
    }

    /// Also refuse passwords on `list`.
    #[must_use]
    pub fn with_common_passwords(mut self, list: std::sync::Arc<dyn CommonPasswords>) -> Self {
        self.common = Some(list);
        self
    }

    /// Checks `password` for the customer with address `email`. Length is counted in
    /// Unicode code points after NFKC normalization.
    ///
    /// # Errors
    /// The first rule the password breaks: too short, too long, common, or containing
    /// the address's local part.
    pub fn check(
        &self,
        password: &Password,
        email: &EmailAddress,
    ) -> Result<(), PasswordRejection> {
        let normalized: String = password.expose_secret().nfkc().collect();
        let chars = normalized.chars().count();
        if chars < self.min_chars {
            return Err(PasswordRejection::TooShort {
                min: self.min_chars,
            });
        }
        if chars > Self::MAX_CHARS {
            return Err(PasswordRejection::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        let local = email.local_part();
        if local.chars().count() >= 3 && normalized.to_lowercase().contains(local) {
            return Err(PasswordRejection::ContainsEmail);
        }
        if let Some(list) = &self.common
            && list.contains(&normalized)
        {
            return Err(PasswordRejection::Common);
        }
        Ok(())
    }
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: Self::FLOOR_MIN_CHARS,
            common: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CustomerId, to_millis};
    use chrono::Utc;
    use proptest::prelude::*;

    fn reset_expiring_at(expires_at: Timestamp) -> PasswordReset {
        let now = to_millis(Utc::now());
        PasswordReset {
            id: ResetId::new_at(now),
            mode: Mode::Test,
            customer_id: CustomerId::new_at(now),
            customer_email: EmailAddress::parse("a@example.com").unwrap(),
            token_digest: TokenDigest::from_bytes([0; 32]),
            expires_at,
            reset_password_at: None,
            invalidated_at: None,
            failed_attempts: 0,
            reference: None,
            reference_origin: None,
            metadata: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn lifetime_bounds_are_inclusive() {
        assert!(TokenPolicy::new(TimeDelta::minutes(5)).is_ok());
        assert!(TokenPolicy::new(TimeDelta::hours(24)).is_ok());
        assert!(TokenPolicy::new(TimeDelta::minutes(5) - TimeDelta::seconds(1)).is_err());
        assert!(TokenPolicy::new(TimeDelta::hours(24) + TimeDelta::seconds(1)).is_err());
        assert_eq!(TokenPolicy::default().lifetime(), TimeDelta::hours(1));
        assert_eq!(TokenPolicy::default().max_failed_attempts(), 5);
    }

    #[test]
    fn a_reset_is_valid_at_its_expiry_instant_and_not_one_second_later() {
        let policy = TokenPolicy::default();
        let expires = to_millis(Utc::now());
        let reset = reset_expiring_at(expires);
        assert_eq!(reset.state(expires, &policy), ResetState::Outstanding);
        assert_eq!(
            reset.state(expires + TimeDelta::seconds(1), &policy),
            ResetState::Expired
        );
        // Millisecond precision: a second-precision comparison would pass the line above.
        assert_eq!(
            reset.state(expires + TimeDelta::milliseconds(1), &policy),
            ResetState::Expired
        );
        assert_eq!(
            reset.state(expires - TimeDelta::milliseconds(1), &policy),
            ResetState::Outstanding
        );
    }

    #[test]
    fn used_revoked_and_exhausted_take_precedence_over_expiry() {
        let policy = TokenPolicy::default();
        let now = to_millis(Utc::now());
        let mut r = reset_expiring_at(now + TimeDelta::hours(1));
        // The cap is exactly five: four failures leave the reset usable, five kill it.
        r.failed_attempts = 4;
        assert_eq!(r.state(now, &policy), ResetState::Outstanding);
        r.failed_attempts = 5;
        assert_eq!(r.state(now, &policy), ResetState::Exhausted);
        r.invalidated_at = Some(now);
        assert_eq!(r.state(now, &policy), ResetState::Revoked);
        r.reset_password_at = Some(now);
        assert_eq!(r.state(now, &policy), ResetState::Used);
    }

    #[test]
    fn password_policy_counts_code_points_after_nfkc() {
        let p = PasswordPolicy::default();
        let email = EmailAddress::parse("jane@example.com").unwrap();
        // Eight code points, more than eight bytes.
        assert!(p.check(&Password::new("ééééééé1"), &email).is_ok());
        assert_eq!(
            p.check(&Password::new("short"), &email),
            Err(PasswordRejection::TooShort { min: 8 })
        );
        assert!(p.check(&Password::new("x".repeat(256)), &email).is_ok());
        assert_eq!(
            p.check(&Password::new("x".repeat(257)), &email),
            Err(PasswordRejection::TooLong { max: 256 })
        );
        assert_eq!(
            p.check(&Password::new("my-JANE-password"), &email),
            Err(PasswordRejection::ContainsEmail)
        );
        assert!(PasswordPolicy::new(7).is_err());
    }

    #[test]
    fn length_is_counted_after_nfkc_on_inputs_that_nfkc_changes() {
        // Hand-computed, not derived from the implementation:
        let p = PasswordPolicy::default();
        let email = EmailAddress::parse("zq@example.com").unwrap();
        // "ﬃ" (U+FB03) is one code point that NFKC expands to "ffi": 3 + 5 = 8, accepted,
        // although the text as typed has 6 code points.
        assert_eq!("\u{FB03}abcde".chars().count(), 6);
        assert!(p.check(&Password::new("\u{FB03}abcde"), &email).is_ok());
        // "e" + COMBINING ACUTE (2 code points) composes to "é" (1): 7 typed pairs are 14
        // code points as typed but 7 after NFKC, too short.
        let combining = "e\u{301}".repeat(7);
        assert_eq!(combining.chars().count(), 14);
        assert_eq!(
            p.check(&Password::new(combining), &email),
            Err(PasswordRejection::TooShort { min: 8 })
        );
    }

    #[derive(Debug)]
    struct OneCommon;
    impl CommonPasswords for OneCommon {
        fn contains(&self, normalized: &str) -> bool {
            normalized == "password123"
        }
    }

    #[test]
    fn common_passwords_are_refused_when_a_list_is_configured() {
        let p = PasswordPolicy::default().with_common_passwords(std::sync::Arc::new(OneCommon));
        let email = EmailAddress::parse("jane@example.com").unwrap();
        assert_eq!(
            p.check(&Password::new("password123"), &email),
            Err(PasswordRejection::Common)
        );
        assert!(
            p.check(&Password::new("correct horse battery"), &email)
                .is_ok()
        );
    }

    /// Pieces of text and their length in code points after NFKC, each read off the
    /// Unicode Character Database by hand (decomposition mappings and composition), so the
    /// property below does not ask a normalizer what a normalizer should say.
    const NFKC_ATOMS: &[(&str, usize)] = &[
        ("a", 1),
        ("7", 1),
        ("\u{FF21}", 1),         // FULLWIDTH LATIN CAPITAL A -> A
        ("\u{FB03}", 3),         // LATIN SMALL LIGATURE FFI -> ffi
        ("\u{338F}", 2),         // SQUARE KG -> kg
        ("e\u{301}", 1),         // e + COMBINING ACUTE -> composed U+00E9
        ("\u{216B}", 3),         // ROMAN NUMERAL TWELVE -> XII
        ("\u{2026}", 3),         // HORIZONTAL ELLIPSIS -> ...
        ("\u{1100}\u{1161}", 1), // HANGUL CHOSEONG KIYEOK + JUNGSEONG A -> U+AC00
        ("\u{BD}", 3),           // VULGAR FRACTION ONE HALF -> 1, FRACTION SLASH, 2
        ("\u{FDFA}", 18),        // ARABIC LIGATURE SALLALLAHOU ALAYHE WASALLAM
        ("\u{2003}", 1),         // EM SPACE -> SPACE
        ("\u{1C6}", 2),          // LATIN SMALL LETTER DZ WITH CARON -> d, z with caron
        ("\u{212B}", 1),         // ANGSTROM SIGN -> U+00C5
        ("\u{FF8A}\u{FF9F}", 1), // HALFWIDTH KATAKANA HA + SEMI-VOICED MARK -> U+30D1
        ("\u{1F600}", 1),        // an emoji: unchanged
        ("\u{DF}", 1),           // sharp s: unchanged (NFKC does not case-fold)
    ];

    proptest! {
        #[test]
        fn expiry_is_exact_for_any_lifetime(secs in 300i64..=86_400) {
            let policy = TokenPolicy::new(TimeDelta::seconds(secs)).unwrap();
            let created = to_millis(Utc::now());
            let reset = reset_expiring_at(policy.expires_at(created));
            prop_assert_eq!(reset.state(created + TimeDelta::seconds(secs), &policy), ResetState::Outstanding);
            prop_assert_eq!(reset.state(created + TimeDelta::seconds(secs + 1), &policy), ResetState::Expired);
        }

        #[test]
        fn lifetimes_outside_bounds_are_refused(secs in prop_oneof![0i64..300, 86_401i64..1_000_000]) {
            prop_assert!(TokenPolicy::new(TimeDelta::seconds(secs)).is_err());
        }

        #[test]
        fn password_length_rule_matches_code_point_count(s in "[ -~]{0,300}") {
            // NFKC leaves ASCII as it is, so an ASCII password's length is its byte count.
            let email = EmailAddress::parse("zq@example.com").unwrap();
            let r = PasswordPolicy::default().check(&Password::new(s.clone()), &email);
            match s.len() {
                0..=7 => prop_assert!(matches!(r, Err(PasswordRejection::TooShort { .. })), "{:?}", r),
                257.. => prop_assert!(matches!(r, Err(PasswordRejection::TooLong { .. })), "{:?}", r),
                _ => prop_assert!(!matches!(r, Err(PasswordRejection::TooShort { .. } | PasswordRejection::TooLong { .. })), "{:?}", r),
            }
        }

        #[test]
        fn any_text_gets_a_verdict_without_panicking(s in "\\PC{0,300}") {
            let email = EmailAddress::parse("zq@example.com").unwrap();
            let _ = PasswordPolicy::default().check(&Password::new(s), &email);
        }

        #[test]
        fn password_length_after_nfkc_matches_an_independent_count(
            atoms in proptest::collection::vec(0usize..NFKC_ATOMS.len(), 0..120)
        ) {
            // The password is built from pieces whose NFKC length is known from the Unicode
            // tables (NFKC_ATOMS), not computed by any normalizer; no piece starts with a
            // combining mark or a jamo that could join the piece before it, so lengths add.
            let text: String = atoms.iter().map(|&i| NFKC_ATOMS[i].0).collect();
            let expected: usize = atoms.iter().map(|&i| NFKC_ATOMS[i].1).sum();
            let email = EmailAddress::parse("zq@example.com").unwrap();
            let r = PasswordPolicy::default().check(&Password::new(text.clone()), &email);
            match expected {
                0..=7 => prop_assert!(matches!(r, Err(PasswordRejection::TooShort { .. })), "{} -> {:?}", expected, r),
                257.. => prop_assert!(matches!(r, Err(PasswordRejection::TooLong { .. })), "{} -> {:?}", expected, r),
                // Within bounds: no length verdict (a common password is its own refusal).
                _ => prop_assert!(r.is_ok() || r == Err(PasswordRejection::Common), "{} -> {:?}", expected, r),
            }
        }
    }
}
