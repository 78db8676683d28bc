//! The domain's typed list queries over stored records, with SQL's meaning: a comparison
//! with a missing value (NULL) matches nothing, text compares in byte order and `LIKE`
//! patterns are case-sensitive; results are ordered NULLs last ascending and first
//! descending, then by `created_at` and `id`.

use std::cmp::Ordering;

use pwreset_domain::{
    Customer, CustomerField, CustomerSort, Field, Filter, FilterValue, ListQuery, Page,
    PasswordReset, Predicate, ResetField, ResetSort, Sort, SortKey, Timestamp,
};
use serde_json::{Map, Value};
use uuid::Uuid;

/// A stored attribute that lists filter or sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Column {
    Id,
    /// The normalized email (of the customer, or of the reset's customer when it was made).
    Email,
    Reference,
    ReferenceOrigin,
    TokenDigest,
    ResetPasswordAt,
    CreatedAt,
    UpdatedAt,
    Metadata,
}

/// Attributes of a query (filter fields and sort keys) and the column behind each.
pub(crate) trait HasColumn: Copy {
    fn column(self) -> Column;
}

impl HasColumn for ResetField {
    fn column(self) -> Column {
        match self {
            ResetField::Id => Column::Id,
            ResetField::CustomerEmail => Column::Email,
            ResetField::Reference => Column::Reference,
            ResetField::ReferenceOrigin => Column::ReferenceOrigin,
            ResetField::ResetPasswordToken => Column::TokenDigest,
            ResetField::ResetPasswordAt => Column::ResetPasswordAt,
            ResetField::CreatedAt => Column::CreatedAt,
            ResetField::UpdatedAt => Column::UpdatedAt,
            ResetField::Metadata => Column::Metadata,
        }
    }
}

impl HasColumn for ResetSort {
    fn column(self) -> Column {
        match self {
            ResetSort::Id => Column::Id,
            ResetSort::Reference => Column::Reference,
            ResetSort::ResetPasswordAt => Column::ResetPasswordAt,
            ResetSort::CreatedAt => Column::CreatedAt,
            ResetSort::UpdatedAt => Column::UpdatedAt,
        }
    }
}

impl HasColumn for CustomerField {
    fn column(self) -> Column {
        match self {
            CustomerField::Id => Column::Id,
            CustomerField::Email => Column::Email,
            CustomerField::Reference => Column::Reference,
            CustomerField::ReferenceOrigin => Column::ReferenceOrigin,
            CustomerField::CreatedAt => Column::CreatedAt,
            CustomerField::UpdatedAt => Column::UpdatedAt,
            CustomerField::Metadata => Column::Metadata,
        }
    }
}

impl HasColumn for CustomerSort {
    fn column(self) -> Column {
        match self {
            CustomerSort::Id => Column::Id,
            CustomerSort::Email => Column::Email,
            CustomerSort::Reference => Column::Reference,
            CustomerSort::CreatedAt => Column::CreatedAt,
            CustomerSort::UpdatedAt => Column::UpdatedAt,
        }
    }
}

/// A single value of a column. Values of one column always have the same variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar<'a> {
    Id(Uuid),
    Text(&'a str),
    Time(Timestamp),
    Digest(&'a [u8; 32]),
}

impl Scalar<'_> {
    /// The order of two values of one column; `None` for values of different kinds, which
    /// a parsed query never compares.
    fn compare(&self, other: &Scalar<'_>) -> Option<Ordering> {
        match (self, other) {
            (Scalar::Id(a), Scalar::Id(b)) => Some(a.cmp(b)),
            // `str` orders by bytes, as the "C" collation and SQLite do.
            (Scalar::Text(a), Scalar::Text(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (Scalar::Time(a), Scalar::Time(b)) => Some(a.cmp(b)),
            (Scalar::Digest(a), Scalar::Digest(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// A column's value in one record; `None` is NULL.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell<'a> {
    Scalar(Option<Scalar<'a>>),
    Json(Option<&'a Map<String, Value>>),
}

impl Cell<'_> {
    fn is_null(&self) -> bool {
        match self {
            Cell::Scalar(v) => v.is_none(),
            Cell::Json(v) => v.is_none(),
        }
    }
}

/// A record that lists can be drawn from.
pub(crate) trait Record: Clone {
    fn cell(&self, column: Column) -> Cell<'_>;
}

fn text(s: Option<&str>) -> Cell<'_> {
    Cell::Scalar(s.map(Scalar::Text))
}

fn time<'a>(t: Option<Timestamp>) -> Cell<'a> {
    Cell::Scalar(t.map(Scalar::Time))
}

impl Record for PasswordReset {
    fn cell(&self, column: Column) -> Cell<'_> {
        match column {
            Column::Id => Cell::Scalar(Some(Scalar::Id(self.id.as_uuid()))),
            Column::Email => text(Some(self.customer_email.normalized())),
            Column::Reference => text(self.reference.as_ref().map(|r| r.as_str())),
            Column::ReferenceOrigin => text(self.reference_origin.as_ref().map(|r| r.as_str())),
            Column::TokenDigest => Cell::Scalar(Some(Scalar::Digest(self.token_digest.as_bytes()))),
            Column::ResetPasswordAt => time(self.reset_password_at),
            Column::CreatedAt => time(Some(self.created_at)),
            Column::UpdatedAt => time(Some(self.updated_at)),
            Column::Metadata => Cell::Json(self.metadata.as_ref().map(|m| m.as_map())),
        }
    }
}

impl Record for Customer {
    fn cell(&self, column: Column) -> Cell<'_> {
        match column {
            Column::Id => Cell::Scalar(Some(Scalar::Id(self.id.as_uuid()))),
            Column::Email => text(Some(self.email.normalized())),
            Column::Reference => text(self.reference.as_ref().map(|r| r.as_str())),
            Column::ReferenceOrigin => text(self.reference_origin.as_ref().map(|r| r.as_str())),
            Column::CreatedAt => time(Some(self.created_at)),
            Column::UpdatedAt => time(Some(self.updated_at)),
            Column::Metadata => Cell::Json(self.metadata.as_ref().map(|m| m.as_map())),
            // Customers have no such attributes, and their queries cannot name them.
            Column::TokenDigest | Column::ResetPasswordAt => Cell::Scalar(None),
        }
    }
}

/// One page of `records` (already scoped to the mode) matching every filter, in the
/// query's order, and the count of all that match.
pub(crate) fn page<'a, R, F, S>(
    records: impl Iterator<Item = &'a R>,
    query: &ListQuery<F, S>,
) -> Page<R>
where
    R: Record + 'a,
    F: Field + HasColumn,
    S: SortKey + HasColumn,
{
    let mut matching: Vec<&R> = records
        .filter(|r| {
            query
                .filters
                .iter()
                .all(|f| matches(r.cell(f.field.column()), f))
        })
        .collect();
    let order = order(&query.sort);
    matching.sort_by(|a, b| {
        order
            .iter()
            .map(|&(column, descending)| compare(a.cell(column), b.cell(column), descending))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    let record_count = u64::try_from(matching.len()).unwrap_or(u64::MAX);
    let offset = usize::try_from(query.page.offset()).unwrap_or(usize::MAX);
    let size = usize::try_from(query.page.size()).unwrap_or(usize::MAX);
    Page {
        items: matching
            .into_iter()
            .skip(offset)
            .take(size)
            .cloned()
            .collect(),
        record_count,
        request: query.page,
    }
}

/// The requested keys, then `created_at`, then `id` (ascending) unless already named.
fn order<S: HasColumn>(sorts: &[Sort<S>]) -> Vec<(Column, bool)> {
    let mut order: Vec<(Column, bool)> = sorts
        .iter()
        .map(|s| (s.key.column(), s.descending))
        .collect();
    for tie in [Column::CreatedAt, Column::Id] {
        if !order.iter().any(|(c, _)| *c == tie) {
            order.push((tie, false));
        }
    }
    order
}

/// The order of two values of one sort column: NULLs last ascending, first descending.
fn compare(a: Cell<'_>, b: Cell<'_>, descending: bool) -> Ordering {
    let (Cell::Scalar(a), Cell::Scalar(b)) = (a, b) else {
        // JSON is not a sort key.
        return Ordering::Equal;
    };
    let ascending = match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => a.compare(&b).unwrap_or(Ordering::Equal),
    };
    if descending {
        ascending.reverse()
    } else {
        ascending
    }
}

/// The filter operand as a value of its column, when it is one.
fn operand(value: &FilterValue) -> Option<Scalar<'_>> {
    match value {
        FilterValue::Text(s) => Some(Scalar::Text(s)),
        FilterValue::Id(u) => Some(Scalar::Id(*u)),
        FilterValue::Time(t) => Some(Scalar::Time(*t)),
        _ => None,
    }
}

/// Whether a record whose filtered column holds `cell` passes `filter`.
fn matches<F>(cell: Cell<'_>, filter: &Filter<F>) -> bool {
    let flag = matches!(filter.value, FilterValue::Flag(true));
    match filter.predicate {
        Predicate::Null => cell.is_null() == flag,
        Predicate::NotNull => cell.is_null() != flag,
        Predicate::Present => is_blank(cell) != flag,
        Predicate::Blank => is_blank(cell) == flag,
        Predicate::Jcont => contains_pairs(cell, &filter.value),
        Predicate::In => in_list(cell, &filter.value),
        Predicate::Eq if matches!(filter.value, FilterValue::Digests(_)) => {
            in_list(cell, &filter.value)
        }
        Predicate::Eq => compared(cell, &filter.value, Ordering::is_eq),
        Predicate::NotEq => compared(cell, &filter.value, Ordering::is_ne),
        Predicate::Gt => compared(cell, &filter.value, Ordering::is_gt),
        Predicate::Gteq => compared(cell, &filter.value, Ordering::is_ge),
        Predicate::Lt => compared(cell, &filter.value, Ordering::is_lt),
        Predicate::Lteq => compared(cell, &filter.value, Ordering::is_le),
        Predicate::Matches => with_text(cell, &filter.value, like),
        Predicate::Cont => with_text(cell, &filter.value, |t, p| t.contains(p)),
        Predicate::Start => with_text(cell, &filter.value, |t, p| t.starts_with(p)),
        Predicate::End => with_text(cell, &filter.value, |t, p| t.ends_with(p)),
    }
}

/// NULL or empty text.
fn is_blank(cell: Cell<'_>) -> bool {
    match cell {
        Cell::Scalar(None) | Cell::Json(None) => true,
        Cell::Scalar(Some(Scalar::Text(t))) => t.is_empty(),
        Cell::Scalar(Some(_)) | Cell::Json(Some(_)) => false,
    }
}

/// The column's value ordered against the operand passes `test`; NULL never does.
fn compared(cell: Cell<'_>, value: &FilterValue, test: fn(Ordering) -> bool) -> bool {
    let (Cell::Scalar(Some(v)), Some(operand)) = (cell, operand(value)) else {
        return false;
    };
    v.compare(&operand).is_some_and(test)
}

/// The column's text and the operand's text pass `test`; NULL never does.
fn with_text(cell: Cell<'_>, value: &FilterValue, test: fn(&str, &str) -> bool) -> bool {
    match (cell, value) {
        (Cell::Scalar(Some(Scalar::Text(t))), FilterValue::Text(p)) => test(t, p),
        _ => false,
    }
}

/// The column's value is one of the listed ones; an empty list matches nothing.
fn in_list(cell: Cell<'_>, value: &FilterValue) -> bool {
    let Cell::Scalar(Some(v)) = cell else {
        return false;
    };
    let is = |other: Scalar<'_>| v.compare(&other) == Some(Ordering::Equal);
    match value {
        FilterValue::TextList(list) => list.iter().any(|s| is(Scalar::Text(s))),
        FilterValue::IdList(list) => list.iter().any(|u| is(Scalar::Id(*u))),
        FilterValue::Digests(list) => list.iter().any(|d| is(Scalar::Digest(d.as_bytes()))),
        other => operand(other).is_some_and(is),
    }
}

/// Every `(key, value)` pair is a top-level member of the JSON object (a member whose
/// value is `null` matches `null`; a missing one matches nothing).
fn contains_pairs(cell: Cell<'_>, value: &FilterValue) -> bool {
    let (Cell::Json(Some(map)), FilterValue::Json(pairs)) = (cell, value) else {
        return false;
    };
    pairs.iter().all(|(k, v)| map.get(k) == Some(v))
}

/// SQL `LIKE`, case-sensitive: `%` is any run of characters, `_` one character, and a
/// backslash makes the next character literal (a trailing one is itself).
fn like(text: &str, pattern: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Token {
        Any,
        One,
        Char(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '%' => Token::Any,
            '_' => Token::One,
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            c => Token::Char(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // Greedy matching with backtracking to the last `%`: linear in practice.
    let (mut t, mut p) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Any) => {
                resume = Some((p, t));
                p += 1;
            }
            Some(Token::One) => {
                t += 1;
                p += 1;
            }
            Some(Token::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match resume {
                Some((rp, rt)) => {
                    p = rp + 1;
                    t = rt + 1;
                    resume = Some((rp, rt + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|tok| *tok == Token::Any)
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_follows_sql() {
        for (text, pattern, expected) in [
            ("alpha", "al%", true),
            ("alpha", "AL%", false),
            ("al_pha%", "al\\_%", true),
            ("alpha", "al\\_%", false),
            ("alpha", "%ph_", true),
            ("alpha", "%ph", false),
            ("", "%", true),
            ("", "_", false),
            ("aXbXc", "a%b%c", true),
            ("abcabd", "%abd", true),
            ("é", "_", true),
            ("a\\", "a\\", true),
        ] {
            assert_eq!(like(text, pattern), expected, "{text:?} LIKE {pattern:?}");
        }
    }
}
