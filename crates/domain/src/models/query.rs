//! The typed list query: filters by attribute and predicate, sort keys, and pagination.
//!
//! Attribute and predicate names are Commerce Layer's vocabulary (`reference`, `cont`);
//! the query-string syntax around them (`filter[q][reference_cont]`, `sort=-created_at`,
//! `page[number]`) is parsed by the HTTP adapter, which hands over a typed [`ListQuery`].
//! Storage adapters translate a [`ListQuery`] into their own queries.

use std::fmt::Debug;

use uuid::Uuid;

use super::{ResetToken, Timestamp, TokenDigest};

/// A comparison in a filter, named as in Commerce Layer's `filter[q][attr_predicate]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Predicate {
    Eq,
    NotEq,
    Matches,
    Cont,
    Start,
    End,
    Gt,
    Gteq,
    Lt,
    Lteq,
    In,
    Null,
    NotNull,
    Present,
    Blank,
    /// JSON containment of top-level keys (metadata only).
    Jcont,
}

impl Predicate {
    pub const ALL: [Predicate; 16] = [
        Predicate::Eq,
        Predicate::NotEq,
        Predicate::Matches,
        Predicate::Cont,
        Predicate::Start,
        Predicate::End,
        Predicate::Gt,
        Predicate::Gteq,
        Predicate::Lt,
        Predicate::Lteq,
        Predicate::In,
        Predicate::Null,
        Predicate::NotNull,
        Predicate::Present,
        Predicate::Blank,
        Predicate::Jcont,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Predicate::Eq => "eq",
            Predicate::NotEq => "not_eq",
            Predicate::Matches => "matches",
            Predicate::Cont => "cont",
            Predicate::Start => "start",
            Predicate::End => "end",
            Predicate::Gt => "gt",
            Predicate::Gteq => "gteq",
            Predicate::Lt => "lt",
            Predicate::Lteq => "lteq",
            Predicate::In => "in",
            Predicate::Null => "null",
            Predicate::NotNull => "not_null",
            Predicate::Present => "present",
            Predicate::Blank => "blank",
            Predicate::Jcont => "jcont",
        }
    }

    /// The predicate with this name, as in `filter[q][reference_cont]`.
    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// How an attribute is compared, which decides the predicates it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Id,
    Text,
    /// Text matched in normalized form (NFKC + lowercase).
    Email,
    Time,
    /// A reset token, matched by digest; never compared as text.
    Token,
    Metadata,
}

impl FieldKind {
    #[must_use]
    pub fn allows(self, p: Predicate) -> bool {
        use Predicate::*;
        match self {
            FieldKind::Id => matches!(p, Eq | NotEq | In | Gt | Gteq | Lt | Lteq),
            FieldKind::Text => matches!(
                p,
                Eq | NotEq | Matches | Cont | Start | End | In | Null | NotNull | Present | Blank
            ),
            FieldKind::Email => matches!(p, Eq | NotEq | Cont | Start | End | In),
            FieldKind::Time => matches!(p, Eq | NotEq | Gt | Gteq | Lt | Lteq | Null | NotNull),
            FieldKind::Token => matches!(p, Eq | In),
            FieldKind::Metadata => matches!(p, Jcont),
        }
    }
}

/// A filterable attribute of some resource.
pub trait Field: Copy + Eq + Debug + Send + Sync + 'static {
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
    fn kind(self) -> FieldKind;
}

/// A sortable attribute of some resource.
pub trait SortKey: Copy + Eq + Debug + Send + Sync + 'static {
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

macro_rules! field_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => ($text:literal, $kind:ident)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl Field for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn name(self) -> &'static str { match self { $($name::$variant => $text),+ } }
            fn kind(self) -> FieldKind { match self { $($name::$variant => FieldKind::$kind),+ } }
        }
    };
}

macro_rules! sort_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl SortKey for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn name(self) -> &'static str { match self { $($name::$variant => $text),+ } }
        }
    };
}

field_enum!(
    /// Filterable attributes of `customer_password_resets`.
    ResetField {
        Id => ("id", Id),
        CustomerEmail => ("customer_email", Email),
        Reference => ("reference", Text),
        ReferenceOrigin => ("reference_origin", Text),
        ResetPasswordToken => ("reset_password_token", Token),
        ResetPasswordAt => ("reset_password_at", Time),
        CreatedAt => ("created_at", Time),
        UpdatedAt => ("updated_at", Time),
        Metadata => ("metadata", Metadata),
    }
);

sort_enum!(
    /// Sortable attributes of `customer_password_resets`.
    ResetSort {
        Id => "id",
        Reference => "reference",
        ResetPasswordAt => "reset_password_at",
        CreatedAt => "created_at",
        UpdatedAt => "updated_at",
    }
);

field_enum!(
    /// Filterable attributes of `customers`.
    CustomerField {
        Id => ("id", Id),
        Email => ("email", Email),
        Reference => ("reference", Text),
        ReferenceOrigin => ("reference_origin", Text),
        CreatedAt => ("created_at", Time),
        UpdatedAt => ("updated_at", Time),
        Metadata => ("metadata", Metadata),
    }
);

sort_enum!(
    /// Sortable attributes of `customers`.
    CustomerSort {
        Id => "id",
        Email => "email",
        Reference => "reference",
        CreatedAt => "created_at",
        UpdatedAt => "updated_at",
    }
);

/// A typed filter operand.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    Text(String),
    TextList(Vec<String>),
    Id(Uuid),
    IdList(Vec<Uuid>),
    Time(Timestamp),
    /// For `null`, `not_null`, `present`, `blank`: `false` inverts the predicate.
    Flag(bool),
    /// Tokens as presented (well formed). The use case turns them into [`FilterValue::Digests`]
    /// before a store sees the query: tokens are never compared as text.
    Tokens(Vec<ResetToken>),
    /// Digests of the presented token under every active key; empty matches nothing.
    Digests(Vec<TokenDigest>),
    /// Top-level key/value pairs that must all be present with equal values.
    Json(Vec<(String, serde_json::Value)>),
}

/// One condition of a list query.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter<F> {
    pub field: F,
    pub predicate: Predicate,
    pub value: FilterValue,
}

impl<F: Field> Filter<F> {
    /// A condition on `field`.
    ///
    /// # Errors
    /// `PredicateNotAllowed` when the attribute's kind does not take `predicate`.
    pub fn new(field: F, predicate: Predicate, value: FilterValue) -> Result<Self, QueryError> {
        if !field.kind().allows(predicate) {
            return Err(QueryError::PredicateNotAllowed {
                attribute: field.name(),
                predicate: predicate.as_str(),
            });
        }
        Ok(Self {
            field,
            predicate,
            value,
        })
    }
}

/// One sort key and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort<S> {
    pub key: S,
    pub descending: bool,
}

/// Which page of results: `number` from 1, `size` from 1 to 25 (default 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    number: u32,
    size: u32,
}

impl PageRequest {
    pub const DEFAULT_SIZE: u32 = 10;
    pub const MAX_SIZE: u32 = 25;
    /// Pages beyond this are refused rather than turned into enormous offsets.
    pub const MAX_NUMBER: u32 = 1_000_000;

    /// Page `number` (from 1) of `size` items (1 to 25).
    ///
    /// # Errors
    /// `InvalidPage` naming `page[number]` or `page[size]` when out of range.
    pub fn new(number: u32, size: u32) -> Result<Self, QueryError> {
        if number == 0 || number > Self::MAX_NUMBER {
            return Err(QueryError::InvalidPage {
                parameter: "page[number]",
                reason: format!("must be between 1 and {}", Self::MAX_NUMBER),
            });
        }
        if size == 0 || size > Self::MAX_SIZE {
            return Err(QueryError::InvalidPage {
                parameter: "page[size]",
                reason: format!("must be between 1 and {}", Self::MAX_SIZE),
            });
        }
        Ok(Self { number, size })
    }

    #[must_use]
    pub fn number(&self) -> u32 {
        self.number
    }

    #[must_use]
    pub fn size(&self) -> u32 {
        self.size
    }

    #[must_use]
    pub fn offset(&self) -> u64 {
        u64::from(self.number - 1) * u64::from(self.size)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            number: 1,
            size: Self::DEFAULT_SIZE,
        }
    }
}

/// A typed, validated list query. Results are ordered by `sort`, then by `created_at` and
/// `id` so that pages are stable.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery<F, S> {
    pub filters: Vec<Filter<F>>,
    pub sort: Vec<Sort<S>>,
    pub page: PageRequest,
}

impl<F, S> Default for ListQuery<F, S> {
    fn default() -> Self {
        Self {
            filters: Vec::new(),
            sort: Vec::new(),
            page: PageRequest::default(),
        }
    }
}

/// A list query that cannot be run, naming the offending parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("filter `{0}` is not a filterable attribute with a known predicate")]
    UnknownFilter(String),
    #[error("predicate `{predicate}` cannot be used on `{attribute}`")]
    PredicateNotAllowed {
        attribute: &'static str,
        predicate: &'static str,
    },
    #[error("filter `{filter}` has an invalid value: {reason}")]
    InvalidValue { filter: String, reason: String },
    #[error("at most {max} filters per request")]
    TooManyFilters { max: usize },
    #[error("`{0}` is not a sortable attribute")]
    UnknownSortKey(String),
    #[error("{parameter} {reason}")]
    InvalidPage {
        parameter: &'static str,
        reason: String,
    },
}

/// One page of results and the total they were drawn from.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub record_count: u64,
    pub request: PageRequest,
}

impl<T> Page<T> {
    /// Number of pages at the requested size (0 when there are no records).
    #[must_use]
    pub fn page_count(&self) -> u64 {
        self.record_count.div_ceil(u64::from(self.request.size()))
    }

    #[must_use]
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            record_count: self.record_count,
            request: self.request,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn filters_refuse_predicates_their_attribute_does_not_allow() {
        assert!(
            Filter::new(
                ResetField::Reference,
                Predicate::Cont,
                FilterValue::Text("x".into())
            )
            .is_ok()
        );
        assert_eq!(
            Filter::new(
                ResetField::ResetPasswordToken,
                Predicate::Cont,
                FilterValue::Text("x".into())
            ),
            Err(QueryError::PredicateNotAllowed {
                attribute: "reset_password_token",
                predicate: "cont"
            })
        );
    }

    #[test]
    fn page_count_rounds_up_and_is_zero_without_records() {
        let page = |n| Page::<()> {
            items: vec![],
            record_count: n,
            request: PageRequest::new(1, 10).unwrap(),
        };
        assert_eq!(page(0).page_count(), 0);
        assert_eq!(page(10).page_count(), 1);
        assert_eq!(page(11).page_count(), 2);
    }

    proptest! {
        #[test]
        fn valid_page_requests_have_consistent_offsets(n in 1u32..1000, s in 1u32..=25) {
            let p = PageRequest::new(n, s).unwrap();
            prop_assert_eq!(p.offset(), u64::from(n - 1) * u64::from(s));
        }
    }
}
