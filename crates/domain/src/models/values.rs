//! Validated value types (mode, ids, references, metadata) and the time and hashing
//! helpers everything shares. Each type has a private representation and a checking
//! constructor; emails live in `email.rs`, secrets in `secrets.rs`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use uuid::Uuid;

use super::{EmailAddress, TokenDigest};

/// A point in time, always UTC and always truncated to whole milliseconds, which is the
/// precision of the wire format and of every storage adapter.
pub type Timestamp = DateTime<Utc>;

/// FNV-1a, 64 bits: a fast, stable, non-cryptographic hash for spreading values (retry
/// jitter) and telling them apart (credential fingerprints). Not a security boundary.
#[must_use]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Truncates a time to the millisecond precision used everywhere in pwreset.
#[must_use]
pub fn to_millis(t: DateTime<Utc>) -> Timestamp {
    t.trunc_subsecs(3)
}

/// Serializes as its text and deserializes through its checking parser, so a stored or
/// received value is validated exactly like one from a caller.
macro_rules! serde_as_checked_text {
    ($name:ident, $to_text:expr, $parse:expr) => {
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let to_text: fn(&$name) -> String = $to_text;
                s.serialize_str(&to_text(self))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                let parse: fn(&str) -> Option<$name> = $parse;
                parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(concat!("not a valid ", stringify!($name)))
                })
            }
        }
    };
}

serde_as_checked_text!(EmailAddress, |e| e.as_str().to_owned(), |s| {
    EmailAddress::parse(s).ok()
});
serde_as_checked_text!(Reference, |r| r.as_str().to_owned(), |s| Reference::parse(
    s
)
.ok());
serde_as_checked_text!(TokenDigest, TokenDigest::to_hex, TokenDigest::from_hex);

impl Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_map().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Metadata::parse(value).map_err(serde::de::Error::custom)
    }
}

/// Which credentials a row belongs to. Commerce Layer keeps test and live data apart; so do
/// we: every row carries its mode and every query is scoped by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is neither `test` nor `live`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mode must be `test` or `live`")]
pub struct ModeError;

impl FromStr for Mode {
    type Err = ModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "test" => Ok(Mode::Test),
            "live" => Ok(Mode::Live),
            _ => Err(ModeError),
        }
    }
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new time-ordered (UUIDv7) id for something created at `at`.
            #[must_use]
            pub fn new_at(at: Timestamp) -> Self {
                let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
                let ts = uuid::Timestamp::from_unix(uuid::NoContext, millis / 1000, ((millis % 1000) as u32) * 1_000_000);
                Self(Uuid::new_v7(ts))
            }

            #[must_use]
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            #[must_use]
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                // Only the canonical hyphenated form: one id, one spelling.
                if s.len() != 36 {
                    return Err(IdError);
                }
                Uuid::parse_str(s).map(Self).map_err(|_| IdError)
            }
        }
    };
}

id_type!(
    /// The id of a password reset (UUIDv7).
    ResetId
);
id_type!(
    /// The id of a customer (UUIDv7).
    CustomerId
);
id_type!(
    /// The id of an event in a reset's trail (UUIDv7).
    EventId
);
id_type!(
    /// The id of an API client ("application" in Commerce Layer's tokens; UUIDv7).
    ClientKey
);
id_type!(
    /// The id of a session: what one grant and all of its refreshes share (UUIDv7).
    SessionId
);

/// The text is not a canonical hyphenated UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id")]
pub struct IdError;

/// The longest `reference` or `reference_origin`, in characters.
pub const REFERENCE_MAX_CHARS: usize = 255;

/// A merchant's own reference (`reference`, `reference_origin`): free text, 1 to 255
/// characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference(String);

/// Why a text is not an acceptable reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {REFERENCE_MAX_CHARS} characters")]
    TooLong,
    #[error("must not contain control characters")]
    ControlCharacter,
}

impl Reference {
    /// The `reference_origin` of resets issued for self-service requests.
    #[must_use]
    pub fn self_service() -> Self {
        Self("self_service".to_owned())
    }

    /// A reference from caller input.
    ///
    /// # Errors
    /// When `s` is empty, too long or holds a control character.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.chars().count() > REFERENCE_MAX_CHARS {
            return Err(ReferenceError::TooLong);
        }
        if s.chars().any(char::is_control) {
            return Err(ReferenceError::ControlCharacter);
        }
        Ok(Self(s.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Reference {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The largest metadata object, serialized, in bytes.
pub const METADATA_MAX_BYTES: usize = 8 * 1024;

/// Free-form merchant metadata: a JSON object (never an array or scalar) of bounded size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata(serde_json::Map<String, serde_json::Value>);

/// Why a JSON value is not acceptable metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("must be a JSON object")]
    NotAnObject,
    #[error("must be at most {METADATA_MAX_BYTES} bytes when serialized")]
    TooLarge,
}

impl Metadata {
    /// Merchant metadata: a JSON object of bounded size.
    ///
    /// # Errors
    /// When `value` is not an object or is too large.
    pub fn parse(value: serde_json::Value) -> Result<Self, MetadataError> {
        let serde_json::Value::Object(map) = value else {
            return Err(MetadataError::NotAnObject);
        };
        let size = serde_json::to_vec(&map).map_or(usize::MAX, |v| v.len());
        if size > METADATA_MAX_BYTES {
            return Err(MetadataError::TooLarge);
        }
        Ok(Self(map))
    }

    #[must_use]
    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }

    #[must_use]
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::Value::Object(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{
        EMAIL_MAX_BYTES, EmailAddress, EmailError, Password, PasswordHash, ResetToken, TOKEN_LEN,
        TokenDigest, normalize_email,
    };
    use proptest::prelude::*;

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        // From the FNV reference test suite: "" and "a" under FNV-1a 64.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn digests_round_trip_through_hex_and_refuse_anything_else() {
        let d = TokenDigest::from_bytes(core::array::from_fn(|i| u8::try_from(i * 7).unwrap()));
        let hex = d.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("00070e15"));
        assert_eq!(TokenDigest::from_hex(&hex), Some(d));
        assert_eq!(TokenDigest::from_hex(&hex[..62]), None);
        assert_eq!(TokenDigest::from_hex(&format!("{}zz", &hex[..62])), None);
        assert_eq!(TokenDigest::from_hex(&"é".repeat(32)), None);
    }

    #[test]
    fn email_matching_is_case_insensitive_after_nfkc() {
        let a = EmailAddress::parse("Jane.Doe@Example.COM").unwrap();
        let b = EmailAddress::parse("jane.doe@example.com").unwrap();
        assert_eq!(a.normalized(), b.normalized());
        assert_eq!(a.as_str(), "Jane.Doe@Example.COM");
        // Fullwidth letters fold to ASCII under NFKC.
        let c = EmailAddress::parse("ｊａｎｅ.doe@example.com").unwrap();
        assert_eq!(c.normalized(), "jane.doe@example.com");
    }

    #[test]
    fn dotless_i_does_not_collide_with_i() {
        let dotless = EmailAddress::parse("m\u{131}ke@example.com").unwrap();
        let plain = EmailAddress::parse("mike@example.com").unwrap();
        assert_ne!(dotless.normalized(), plain.normalized());
    }

    #[test]
    fn implausible_emails_are_rejected() {
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@@b.com",
            "a@.b.com",
            "a@b.com.",
            "a b@c.com",
            "a@b..com",
            "a@b.com,c@d.com",
            "a\n@b.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&long), Err(EmailError::TooLong));
    }

    #[test]
    fn masked_email_hides_the_local_part() {
        let e = EmailAddress::parse("jane@example.com").unwrap();
        assert_eq!(e.masked(), "j***@example.com");
        assert!(!format!("{e:?}").contains("jane"));
    }

    #[test]
    fn secrets_redact_themselves_in_debug() {
        let t = ResetToken::parse(&"A".repeat(43)).unwrap();
        assert!(!format!("{t:?}").contains("AAAA"));
        let p = Password::new("hunter2hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
        let h = PasswordHash::new("$argon2id$v=19$secret");
        assert!(!format!("{h:?}").contains("secret"));
    }

    #[test]
    fn token_format_is_exact() {
        assert!(ResetToken::parse(&"A".repeat(42)).is_err());
        assert!(ResetToken::parse(&"A".repeat(44)).is_err());
        assert!(ResetToken::parse(&format!("{}=", "A".repeat(42))).is_err());
        assert!(ResetToken::parse(&format!("{}+", "A".repeat(42))).is_err());
        // Last character with stray low bits is not canonical.
        assert!(ResetToken::parse(&format!("{}B", "A".repeat(42))).is_err());
        assert!(ResetToken::parse(&format!("{}E", "A".repeat(42))).is_ok());
    }

    #[test]
    fn metadata_must_be_a_bounded_object() {
        assert!(Metadata::parse(serde_json::json!({"a": 1})).is_ok());
        assert_eq!(
            Metadata::parse(serde_json::json!([1])),
            Err(MetadataError::NotAnObject)
        );
        assert_eq!(
            Metadata::parse(serde_json::json!("x")),
            Err(MetadataError::NotAnObject)
        );
        let big = serde_json::json!({"a": "x".repeat(METADATA_MAX_BYTES)});
        assert_eq!(Metadata::parse(big), Err(MetadataError::TooLarge));
    }

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let t1 = to_millis(Utc::now());
        let t2 = t1 + chrono::TimeDelta::milliseconds(5);
        let a = ResetId::new_at(t1);
        let b = ResetId::new_at(t2);
        assert!(a < b);
        assert_eq!(a.to_string().parse::<ResetId>().unwrap(), a);
        assert!("not-a-uuid".parse::<ResetId>().is_err());
        assert!(a.as_uuid().simple().to_string().parse::<ResetId>().is_err());
    }

    const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    proptest! {
        #[test]
        fn any_canonical_token_parses(body in proptest::collection::vec(0usize..64, 42), last in 0usize..16) {
            let mut s: String = body.iter().map(|&i| B64.as_bytes()[i] as char).collect();
            s.push(B64.as_bytes()[last * 4] as char);
            let token = ResetToken::parse(&s).unwrap();
            prop_assert_eq!(token.expose_secret(), s.as_str());
        }

        #[test]
        fn tokens_of_other_lengths_never_parse(s in "[A-Za-z0-9_-]{0,80}") {
            prop_assume!(s.len() != TOKEN_LEN);
            prop_assert!(ResetToken::parse(&s).is_err());
        }

        #[test]
        fn email_parsing_never_panics_and_normalization_is_idempotent(s in "\\PC{0,80}") {
            if let Ok(e) = EmailAddress::parse(&s) {
                prop_assert_eq!(normalize_email(e.normalized()), e.normalized());
                prop_assert!(e.as_str().len() <= EMAIL_MAX_BYTES);
            }
        }

        #[test]
        fn emails_differing_only_in_ascii_case_match(local in "[a-zA-Z0-9.]{1,20}", domain in "[a-zA-Z]{1,10}\\.[a-zA-Z]{2,5}") {
            prop_assume!(!local.starts_with('.'));
            let upper = EmailAddress::parse(&format!("{}@{}", local.to_uppercase(), domain.to_uppercase())).unwrap();
            let lower = EmailAddress::parse(&format!("{}@{}", local.to_lowercase(), domain)).unwrap();
            prop_assert_eq!(upper.normalized(), lower.normalized());
        }

        #[test]
        fn references_respect_their_bound(s in "\\PC{0,300}") {
            match Reference::parse(&s) {
                Ok(r) => prop_assert!(!r.as_str().is_empty() && r.as_str().chars().count() <= REFERENCE_MAX_CHARS),
                Err(_) => prop_assert!(s.is_empty() || s.chars().count() > REFERENCE_MAX_CHARS),
            }
        }
    }

    #[test]
    fn a_token_is_canonical_exactly_when_its_last_character_carries_no_stray_bits() {
        // The alphabet in its RFC 4648 order, so each character's value is its position
        // here, not what the parser computes; 43 characters hold 258 bits, so the last one
        // may only have its two low bits clear.
        const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (value, last) in ALPHABET.chars().enumerate() {
            let token = format!("{}{last}", "A".repeat(42));
            assert_eq!(
                ResetToken::parse(&token).is_ok(),
                value % 4 == 0,
                "last character {last:?} (value {value})"
            );
            let inside = format!("{last}{}", "A".repeat(42));
            assert!(
                ResetToken::parse(&inside).is_ok(),
                "{last:?} inside a token"
            );
        }
        for bad in ['=', '+', '/', '.', ' ', '\u{e9}'] {
            assert!(
                ResetToken::parse(&format!("{bad}{}", "A".repeat(42))).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_address_may_be_254_bytes_before_and_after_normalization_and_no_more() {
        let domain_of = |n: usize| format!("{}.com", "d".repeat(n - 4));
        // "a@" + domain: exactly 254 bytes, accepted; one more, refused.
        assert!(EmailAddress::parse(&format!("a@{}", domain_of(252))).is_ok());
        assert_eq!(
            EmailAddress::parse(&format!("a@{}", domain_of(253))),
            Err(EmailError::TooLong)
        );
        // 256 bytes as given, 254 after NFKC (each U+338F SQUARE KG, 3 bytes, becomes "kg"):
        // the address as given is still too long.
        let shrinking = format!("\u{338F}\u{338F}@{}", domain_of(249));
        assert_eq!(shrinking.len(), 256);
        assert_eq!(normalize_email(&shrinking).len(), 254);
        assert_eq!(EmailAddress::parse(&shrinking), Err(EmailError::TooLong));
        // 252 bytes as given, 282 after NFKC (U+FDFA, 3 bytes, becomes 33): too long, which
        // is decided before the spaces it expands to make the address malformed.
        let growing = format!("\u{FDFA}@{}", domain_of(248));
        assert!(growing.len() <= 254);
        assert!(normalize_email(&growing).len() > 254);
        assert_eq!(EmailAddress::parse(&growing), Err(EmailError::TooLong));
    }

    #[test]
    fn angle_brackets_commas_and_controls_make_an_address_malformed() {
        for bad in [
            "a<b@example.com",
            "a>b@example.com",
            "a,b@example.com",
            "a\u{7}b@example.com",
            "a b@example.com",
        ] {
            assert_eq!(
                EmailAddress::parse(bad),
                Err(EmailError::Malformed),
                "{bad:?}"
            );
        }
        assert!(EmailAddress::parse("a.b+c@example.com").is_ok());
    }

    #[test]
    fn a_reference_may_be_255_characters_and_metadata_8_kib_and_no_more() {
        assert!(Reference::parse(&"é".repeat(REFERENCE_MAX_CHARS)).is_ok());
        assert_eq!(
            Reference::parse(&"é".repeat(REFERENCE_MAX_CHARS + 1)),
            Err(ReferenceError::TooLong)
        );
        // {"k":"..."} is 8 bytes of JSON around the value; 8 KiB written out, not taken
        // from the constant under test.
        let fits = serde_json::json!({ "k": "v".repeat(8192 - 8) });
        assert_eq!(serde_json::to_vec(&fits).unwrap().len(), 8192);
        assert!(Metadata::parse(fits).is_ok());
        let over = serde_json::json!({ "k": "v".repeat(8192 - 7) });
        assert_eq!(Metadata::parse(over), Err(MetadataError::TooLarge));
        // A stored digest is 64 hex digits exactly, ASCII only.
        assert!(TokenDigest::from_hex(&"ab".repeat(32)).is_some());
        assert_eq!(TokenDigest::from_hex(&"ab".repeat(31)), None);
        assert_eq!(TokenDigest::from_hex(&"é".repeat(32)), None);
    }
}
