//! The list query string (`filter[q][attribute_predicate]=value`, `sort=-a,b`,
//! `page[number]`, `page[size]`) parsed into the domain's typed [`ListQuery`], with a
//! [`QueryError`] naming the offending parameter.

use chrono::DateTime;
use pwreset_domain::{
    Field, FieldKind, Filter, FilterValue, ListQuery, PageRequest, Predicate, QueryError,
    ResetToken, Sort, SortKey, normalize_email, to_millis,
};
use uuid::Uuid;

/// Query strings as they arrived, before any checking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawListQuery {
    /// `(key, value)` from `filter[q][key]=value`.
    pub filters: Vec<(String, String)>,
    pub sort: Option<String>,
    pub page_number: Option<String>,
    pub page_size: Option<String>,
}

/// The most values an `in` filter takes, and the most sort keys.
const MAX_LIST_VALUES: usize = 100;
const MAX_SORT_KEYS: usize = 5;

/// The most filters one query takes. With at most 100 values (or metadata keys) each, a
/// query binds at most a few thousand values, far below what either database accepts
/// (SQLite 32,766, Postgres 65,535); without it a long query string was a database error,
/// a 500, instead of a 400.
const MAX_FILTERS: usize = 20;

/// Parses the raw strings into a typed query for the attributes `F` and sort keys `S`.
///
/// # Errors
/// A [`QueryError`] naming the first parameter that does not parse.
pub fn parse<F: Field, S: SortKey>(raw: &RawListQuery) -> Result<ListQuery<F, S>, QueryError> {
    if raw.filters.len() > MAX_FILTERS {
        return Err(QueryError::TooManyFilters { max: MAX_FILTERS });
    }
    let filters = raw
        .filters
        .iter()
        .map(|(k, v)| parse_filter::<F>(k, v))
        .collect::<Result<Vec<_>, _>>()?;
    let sort = match &raw.sort {
        None => Vec::new(),
        Some(s) => parse_sort::<S>(s)?,
    };
    Ok(ListQuery {
        filters,
        sort,
        page: page_request(raw)?,
    })
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

fn parse_filter<F: Field>(key: &str, value: &str) -> Result<Filter<F>, QueryError> {
    let (field, predicate) = F::ALL
        .iter()
        .copied()
        .find_map(|f| {
            let rest = key.strip_prefix(f.name())?.strip_prefix('_')?;
            Predicate::from_name(rest).map(|p| (f, p))
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
            FilterValue::Tokens(
                tokens
                    .iter()
                    .filter_map(|t| ResetToken::parse(t).ok())
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
    Filter::new(field, predicate, value)
}

/// The page the raw `page[number]` and `page[size]` ask for (1 and 10 when absent).
///
/// # Errors
/// `InvalidPage` naming the parameter that is not a whole number or out of range.
pub fn page_request(raw: &RawListQuery) -> Result<PageRequest, QueryError> {
    let number = parse_page_param(raw.page_number.as_deref(), "page[number]", 1)?;
    let size = parse_page_param(
        raw.page_size.as_deref(),
        "page[size]",
        PageRequest::DEFAULT_SIZE,
    )?;
    PageRequest::new(number, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use pwreset_domain::{ResetField, ResetSort};

    type ResetQuery = ListQuery<ResetField, ResetSort>;

    fn parse_resets(raw: &RawListQuery) -> Result<ResetQuery, QueryError> {
        parse(raw)
    }

    fn raw_filter(k: &str, v: &str) -> RawListQuery {
        RawListQuery {
            filters: vec![(k.into(), v.into())],
            ..RawListQuery::default()
        }
    }

    #[test]
    fn field_names_with_shared_prefixes_resolve_to_the_longest_match() {
        let q = parse_resets(&raw_filter("reference_origin_not_eq", "x")).unwrap();
        assert_eq!(q.filters[0].field, ResetField::ReferenceOrigin);
        assert_eq!(q.filters[0].predicate, Predicate::NotEq);
        let q = parse_resets(&raw_filter("reference_eq", "x")).unwrap();
        assert_eq!(q.filters[0].field, ResetField::Reference);
    }

    #[test]
    fn unknown_attributes_and_predicates_are_named_in_the_error() {
        assert_eq!(
            parse_resets(&raw_filter("password_eq", "x")),
            Err(QueryError::UnknownFilter("password_eq".into()))
        );
        assert_eq!(
            parse_resets(&raw_filter("reference_like", "x")),
            Err(QueryError::UnknownFilter("reference_like".into()))
        );
        assert_eq!(
            parse_resets(&raw_filter("reset_password_token_cont", "x")),
            Err(QueryError::PredicateNotAllowed {
                attribute: "reset_password_token",
                predicate: "cont"
            })
        );
    }

    #[test]
    fn values_are_typed() {
        let q = parse_resets(&raw_filter("created_at_gt", "2026-01-01T00:00:00.123456Z")).unwrap();
        let FilterValue::Time(t) = q.filters[0].value else {
            panic!("not a time")
        };
        assert_eq!(t.timestamp_subsec_millis(), 123);
        assert_eq!(t.timestamp_subsec_nanos(), 123_000_000);
        assert!(matches!(
            parse_resets(&raw_filter("created_at_gt", "yesterday")),
            Err(QueryError::InvalidValue { .. })
        ));
        assert!(matches!(
            parse_resets(&raw_filter("id_eq", "nope")),
            Err(QueryError::InvalidValue { .. })
        ));
        let q = parse_resets(&raw_filter("customer_email_eq", " Jane@Example.com")).unwrap();
        assert_eq!(
            q.filters[0].value,
            FilterValue::Text("jane@example.com".into())
        );
        let q = parse_resets(&raw_filter("reference_null", "false")).unwrap();
        assert_eq!(q.filters[0].value, FilterValue::Flag(false));
        assert!(parse_resets(&raw_filter("metadata_jcont", "[1]")).is_err());
        assert!(parse_resets(&raw_filter("metadata_jcont", r#"{"a":{"b":1}}"#)).is_err());
    }

    #[test]
    fn a_query_with_more_filters_than_the_databases_can_bind_is_refused() {
        // Each `in` list may hold 100 values; 21 filters of them would be 2,100 binds, and
        // unbounded they overflowed the databases' parameter limits into a 500.
        let list = vec!["x"; 100].join(",");
        let many = RawListQuery {
            filters: (0..21)
                .map(|_| ("reference_in".to_owned(), list.clone()))
                .collect(),
            ..RawListQuery::default()
        };
        assert_eq!(
            parse_resets(&many),
            Err(QueryError::TooManyFilters { max: 20 })
        );
        let enough = RawListQuery {
            filters: many.filters[..20].to_vec(),
            ..RawListQuery::default()
        };
        assert_eq!(parse_resets(&enough).unwrap().filters.len(), 20);
    }

    #[test]
    fn token_filters_carry_well_formed_tokens_and_malformed_ones_match_nothing() {
        let good = "A".repeat(43);
        let q = parse_resets(&raw_filter("reset_password_token_eq", &good)).unwrap();
        assert_eq!(
            q.filters[0].value,
            FilterValue::Tokens(vec![ResetToken::parse(&good).unwrap()])
        );
        let q = parse_resets(&raw_filter("reset_password_token_eq", "short")).unwrap();
        assert_eq!(q.filters[0].value, FilterValue::Tokens(vec![]));
    }

    #[test]
    fn sort_and_pages_are_checked() {
        let raw = RawListQuery {
            sort: Some("-created_at,id".into()),
            page_number: Some("2".into()),
            page_size: Some("25".into()),
            ..RawListQuery::default()
        };
        let q = parse_resets(&raw).unwrap();
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
                parse_resets(&raw),
                Err(QueryError::InvalidPage { .. })
            ));
        }
        let raw = RawListQuery {
            sort: Some("customer_email".into()),
            ..RawListQuery::default()
        };
        assert_eq!(
            parse_resets(&raw),
            Err(QueryError::UnknownSortKey("customer_email".into()))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_filter_keys_never_panic(k in "\\PC{0,40}", v in "\\PC{0,40}") {
            let _ = parse_resets(&raw_filter(&k, &v));
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
            let parsed = parse_resets(&raw_filter(&key, &value));
            prop_assert_eq!(parsed.is_ok(), field.kind().allows(pred), "{} -> {:?}", key, parsed);
        }
    }
}
