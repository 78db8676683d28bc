//! The typed list query: filters by attribute and predicate, sort keys, and pagination.
//!
//! The HTTP adapter hands over the raw `filter[q][...]`, `sort` and `page[...]` strings as a
//! [`RawListQuery`]; [`ListQuery::parse`] turns them into typed values or a [`QueryError`]
//! naming the offender. Storage adapters translate a [`ListQuery`] into their own SQL.

use std::fmt::Debug;

use chrono::DateTime;
use uuid::Uuid;

use super::{ResetToken, Timestamp, TokenDigest, normalize_email, to_millis};

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

    fn parse(s: &str) -> Option<Self> {
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

/// Query strings as they arrived, before any checking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawListQuery {
    /// `(key, value)` from `filter[q][key]=value`.
    pub filters: Vec<(String, String)>,
    pub sort: Option<String>,
    pub page_number: Option<String>,
    pub page_size: Option<String>,
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
    #[error("`{0}` is not a sortable attribute")]
    UnknownSortKey(String),
    #[error("{parameter} {reason}")]
    InvalidPage {
        parameter: &'static str,
        reason: String,
    },
}

/// The most values an `in` filter takes, and the most sort keys.
const MAX_LIST_VALUES: usize = 100;
const MAX_SORT_KEYS: usize = 5;

impl<F: Field, S: SortKey> ListQuery<F, S> {
    /// Parses raw strings. `digests` turns a presented reset token into its digests under
    /// every active key (for `reset_password_token` filters).
    pub fn parse(
        raw: &RawListQuery,
        digests: &dyn Fn(&ResetToken) -> Vec<TokenDigest>,
    ) -> Result<Self, QueryError> {
        let filters = raw
            .filters
            .iter()
            .map(|(k, v)| parse_filter::<F>(k, v, digests))
            .collect::<Result<Vec<_>, _>>()?;
        let sort = match &raw.sort {
            None => Vec::new(),
            Some(s) => parse_sort::<S>(s)?,
        };
        let number = parse_page_param(raw.page_number.as_deref(), "page[number]", 1)?;
        let size = parse_page_param(
            raw.page_size.as_deref(),
            "page[size]",
            PageRequest::DEFAULT_SIZE,
        )?;
        Ok(Self {
            filters,
            sort,
            page: PageRequest::new(number, size)?,
        })
    }
}

fn parse_page_param(
    value: Option<&str>,
    parameter: &'static str,
    default: u32,
) -> Result<u32, QueryError> {
    match value {
        None => Ok(default),
        Some(v) => v.parse::<u32>().map_err(|_| QueryError::InvalidPage {
            parameter,
            reason: "must be a positive whole number".into(),
        }),
    }
}

fn parse_sort<S: SortKey>(s: &str) -> Result<Vec<Sort<S>>, QueryError> {
    let mut out: Vec<Sort<S>> = Vec::new();
    for part in s.split(',') {
        let (descending, name) = match part.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, part),
        };
        let key = S::ALL
            .iter()
            .copied()
            .find(|k| k.name() == name)
            .ok_or_else(|| QueryError::UnknownSortKey(part.to_owned()))?;
        if out.iter().any(|s| s.key == key) {
            continue;
        }
        out.push(Sort { key, descending });
    }
    if out.len() > MAX_SORT_KEYS {
        return Err(QueryError::UnknownSortKey(format!(
            "{s} (at most {MAX_SORT_KEYS} keys)"
        )));
    }
    Ok(out)
}

fn parse_filter<F: Field>(
    key: &str,
    value: &str,
    digests: &dyn Fn(&ResetToken) -> Vec<TokenDigest>,
) -> Result<Filter<F>, QueryError> {
    let (field, predicate) = F::ALL
        .iter()
        .copied()
        .find_map(|f| {
            let rest = key.strip_prefix(f.name())?.strip_prefix('_')?;
            Predicate::parse(rest).map(|p| (f, p))
        })
        .ok_or_else(|| QueryError::UnknownFilter(key.to_owned()))?;
    if !field.kind().allows(predicate) {
        return Err(QueryError::PredicateNotAllowed {
            attribute: field.name(),
            predicate: predicate.as_str(),
        });
    }
    let invalid = |reason: &str| QueryError::InvalidValue {
        filter: key.to_owned(),
        reason: reason.to_owned(),
    };
    let list = |v: &str| -> Result<Vec<String>, QueryError> {
        let items: Vec<String> = v.split(',').map(str::to_owned).collect();
        if items.len() > MAX_LIST_VALUES {
            return Err(invalid("too many values"));
        }
        Ok(items)
    };
    let value = match (field.kind(), predicate) {
        (_, Predicate::Null | Predicate::NotNull | Predicate::Present | Predicate::Blank) => {
            FilterValue::Flag(match value {
                "true" | "1" | "t" => true,
                "false" | "0" | "f" => false,
                _ => return Err(invalid("must be true or false")),
            })
        }
        (FieldKind::Id, Predicate::In) => FilterValue::IdList(
            list(value)?
                .iter()
                .map(|s| Uuid::parse_str(s).map_err(|_| invalid("not an id")))
                .collect::<Result<_, _>>()?,
        ),
        (FieldKind::Id, _) => {
            FilterValue::Id(Uuid::parse_str(value).map_err(|_| invalid("not an id"))?)
        }
        (FieldKind::Text, Predicate::In) => FilterValue::TextList(list(value)?),
        (FieldKind::Text, _) => FilterValue::Text(value.to_owned()),
        (FieldKind::Email, Predicate::In) => FilterValue::TextList(
            list(value)?
                .iter()
                .map(|s| normalize_email(s.trim()))
                .collect(),
        ),
        (FieldKind::Email, _) => FilterValue::Text(normalize_email(value.trim())),
        (FieldKind::Time, _) => FilterValue::Time(to_millis(
            DateTime::parse_from_rfc3339(value)
                .map_err(|_| invalid("not an ISO 8601 timestamp"))?
                .to_utc(),
        )),
        (FieldKind::Token, _) => {
            let tokens = if predicate == Predicate::In {
                list(value)?
            } else {
                vec![value.to_owned()]
            };
            // A value that is not a well-formed token matches nothing; it is not an error,
            // so the answer does not tell a well-formed guess from a malformed one.
            FilterValue::Digests(
                tokens
                    .iter()
                    .filter_map(|t| ResetToken::parse(t).ok())
                    .flat_map(|t| digests(&t))
                    .collect(),
            )
        }
        (FieldKind::Metadata, _) => {
            let parsed: serde_json::Value =
                serde_json::from_str(value).map_err(|_| invalid("must be a JSON object"))?;
            let serde_json::Value::Object(map) = parsed else {
                return Err(invalid("must be a JSON object"));
            };
            if map.is_empty() || map.len() > MAX_LIST_VALUES {
                return Err(invalid("must have between 1 and 100 keys"));
            }
            if map.values().any(|v| v.is_array() || v.is_object()) {
                return Err(invalid("values must be strings, numbers, booleans or null"));
            }
            FilterValue::Json(map.into_iter().collect())
        }
    };
    Ok(Filter {
        field,
        predicate,
        value,
    })
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

    type ResetQuery = ListQuery<ResetField, ResetSort>;

    fn no_digests(_: &ResetToken) -> Vec<TokenDigest> {
        vec![TokenDigest::from_bytes([7; 32])]
    }

    fn raw_filter(k: &str, v: &str) -> RawListQuery {
        RawListQuery {
            filters: vec![(k.into(), v.into())],
            ..RawListQuery::default()
        }
    }

    #[test]
    fn field_names_with_shared_prefixes_resolve_to_the_longest_match() {
        let q =
            ResetQuery::parse(&raw_filter("reference_origin_not_eq", "x"), &no_digests).unwrap();
        assert_eq!(q.filters[0].field, ResetField::ReferenceOrigin);
        assert_eq!(q.filters[0].predicate, Predicate::NotEq);
        let q = ResetQuery::parse(&raw_filter("reference_eq", "x"), &no_digests).unwrap();
        assert_eq!(q.filters[0].field, ResetField::Reference);
    }

    #[test]
    fn unknown_attributes_and_predicates_are_named_in_the_error() {
        assert_eq!(
            ResetQuery::parse(&raw_filter("password_eq", "x"), &no_digests),
            Err(QueryError::UnknownFilter("password_eq".into()))
        );
        assert_eq!(
            ResetQuery::parse(&raw_filter("reference_like", "x"), &no_digests),
            Err(QueryError::UnknownFilter("reference_like".into()))
        );
        assert_eq!(
            ResetQuery::parse(&raw_filter("reset_password_token_cont", "x"), &no_digests),
            Err(QueryError::PredicateNotAllowed {
                attribute: "reset_password_token",
                predicate: "cont"
            })
        );
    }

    #[test]
    fn values_are_typed() {
        let q = ResetQuery::parse(
            &raw_filter("created_at_gt", "2026-01-01T00:00:00.123456Z"),
            &no_digests,
        )
        .unwrap();
        let FilterValue::Time(t) = q.filters[0].value else {
            panic!("not a time")
        };
        assert_eq!(t.timestamp_subsec_millis(), 123);
        assert_eq!(t.timestamp_subsec_nanos(), 123_000_000);
        assert!(matches!(
            ResetQuery::parse(&raw_filter("created_at_gt", "yesterday"), &no_digests),
            Err(QueryError::InvalidValue { .. })
        ));
        assert!(matches!(
            ResetQuery::parse(&raw_filter("id_eq", "nope"), &no_digests),
            Err(QueryError::InvalidValue { .. })
        ));
        let q = ResetQuery::parse(
            &raw_filter("customer_email_eq", " Jane@Example.com"),
            &no_digests,
        )
        .unwrap();
        assert_eq!(
            q.filters[0].value,
            FilterValue::Text("jane@example.com".into())
        );
        let q = ResetQuery::parse(&raw_filter("reference_null", "false"), &no_digests).unwrap();
        assert_eq!(q.filters[0].value, FilterValue::Flag(false));
        assert!(ResetQuery::parse(&raw_filter("metadata_jcont", "[1]"), &no_digests).is_err());
        assert!(
            ResetQuery::parse(
                &raw_filter("metadata_jcont", r#"{"a":{"b":1}}"#),
                &no_digests
            )
            .is_err()
        );
    }

    #[test]
    fn token_filters_match_by_digest_and_malformed_tokens_match_nothing() {
        let good = "A".repeat(43);
        let q =
            ResetQuery::parse(&raw_filter("reset_password_token_eq", &good), &no_digests).unwrap();
        assert_eq!(
            q.filters[0].value,
            FilterValue::Digests(vec![TokenDigest::from_bytes([7; 32])])
        );
        let q = ResetQuery::parse(&raw_filter("reset_password_token_eq", "short"), &no_digests)
            .unwrap();
        assert_eq!(q.filters[0].value, FilterValue::Digests(vec![]));
    }

    #[test]
    fn sort_and_pages_are_checked() {
        let raw = RawListQuery {
            sort: Some("-created_at,id".into()),
            page_number: Some("2".into()),
            page_size: Some("25".into()),
            ..RawListQuery::default()
        };
        let q = ResetQuery::parse(&raw, &no_digests).unwrap();
        assert_eq!(
            q.sort,
            vec![
                Sort {
                    key: ResetSort::CreatedAt,
                    descending: true
                },
                Sort {
                    key: ResetSort::Id,
                    descending: false
                }
            ]
        );
        assert_eq!(q.page.offset(), 25);
        for (n, s) in [
            ("0", "10"),
            ("1", "26"),
            ("1", "0"),
            ("-1", "10"),
            ("x", "10"),
        ] {
            let raw = RawListQuery {
                page_number: Some(n.into()),
                page_size: Some(s.into()),
                ..RawListQuery::default()
            };
            assert!(matches!(
                ResetQuery::parse(&raw, &no_digests),
                Err(QueryError::InvalidPage { .. })
            ));
        }
        let raw = RawListQuery {
            sort: Some("customer_email".into()),
            ..RawListQuery::default()
        };
        assert_eq!(
            ResetQuery::parse(&raw, &no_digests),
            Err(QueryError::UnknownSortKey("customer_email".into()))
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
        fn arbitrary_filter_keys_never_panic(k in "\\PC{0,40}", v in "\\PC{0,40}") {
            let _ = ResetQuery::parse(&raw_filter(&k, &v), &no_digests);
        }

        #[test]
        fn every_allowed_field_predicate_pair_parses_with_a_suitable_value(
            fi in 0usize..ResetField::ALL.len(), pi in 0usize..Predicate::ALL.len()
        ) {
            let field = ResetField::ALL[fi];
            let pred = Predicate::ALL[pi];
            let value = match (field.kind(), pred) {
                (_, Predicate::Null | Predicate::NotNull | Predicate::Present | Predicate::Blank) => "true".to_string(),
                (FieldKind::Id, _) => "0190f5c2-7a4b-7c3d-8e9f-0123456789ab".to_string(),
                (FieldKind::Time, _) => "2026-01-01T00:00:00Z".to_string(),
                (FieldKind::Metadata, _) => r#"{"k":"v"}"#.to_string(),
                _ => "x".to_string(),
            };
            let key = format!("{}_{}", field.name(), pred.as_str());
            let parsed = ResetQuery::parse(&raw_filter(&key, &value), &no_digests);
            prop_assert_eq!(parsed.is_ok(), field.kind().allows(pred), "{} -> {:?}", key, parsed);
        }

        #[test]
        fn valid_page_requests_have_consistent_offsets(n in 1u32..1000, s in 1u32..=25) {
            let p = PageRequest::new(n, s).unwrap();
            prop_assert_eq!(p.offset(), u64::from(n - 1) * u64::from(s));
        }
    }
}
