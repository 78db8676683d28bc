//! Translation of the domain's typed list queries into SQL with bound parameters.

use pwreset_domain::{
    CustomerField, CustomerSort, Field, Filter, FilterValue, Mode, Predicate, ResetField,
    ResetSort, Sort, SortKey,
};

use crate::driver::{Dialect, Val};

/// SQL text being assembled, with its arguments. Placeholders are `$n`.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    pub args: Vec<Val>,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    /// Adds `v` as an argument and returns its placeholder.
    pub(crate) fn bind(&mut self, v: impl Into<Val>) -> String {
        self.args.push(v.into());
        format!("${}", self.args.len())
    }

    pub(crate) fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }
}

/// The column behind a filterable or sortable attribute.
pub(crate) trait Column: Copy {
    fn column(self) -> &'static str;
}

impl Column for ResetField {
    fn column(self) -> &'static str {
        match self {
            ResetField::Id => "id",
            ResetField::CustomerEmail => "email_normalized",
            ResetField::Reference => "reference",
            ResetField::ReferenceOrigin => "reference_origin",
            ResetField::ResetPasswordToken => "token_digest",
            ResetField::ResetPasswordAt => "reset_password_at",
            ResetField::CreatedAt => "created_at",
            ResetField::UpdatedAt => "updated_at",
            ResetField::Metadata => "metadata",
        }
    }
}

impl Column for ResetSort {
    fn column(self) -> &'static str {
        match self {
            ResetSort::Id => "id",
            ResetSort::Reference => "reference",
            ResetSort::ResetPasswordAt => "reset_password_at",
            ResetSort::CreatedAt => "created_at",
            ResetSort::UpdatedAt => "updated_at",
        }
    }
}

impl Column for CustomerField {
    fn column(self) -> &'static str {
        match self {
            CustomerField::Id => "id",
            CustomerField::Email => "email_normalized",
            CustomerField::Reference => "reference",
            CustomerField::ReferenceOrigin => "reference_origin",
            CustomerField::CreatedAt => "created_at",
            CustomerField::UpdatedAt => "updated_at",
            CustomerField::Metadata => "metadata",
        }
    }
}

impl Column for CustomerSort {
    fn column(self) -> &'static str {
        match self {
            CustomerSort::Id => "id",
            CustomerSort::Email => "email_normalized",
            CustomerSort::Reference => "reference",
            CustomerSort::CreatedAt => "created_at",
            CustomerSort::UpdatedAt => "updated_at",
        }
    }
}

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn scalar(value: &FilterValue) -> Val {
    match value {
        FilterValue::Text(s) => Val::Text(s.clone()),
        FilterValue::Id(u) => Val::Uuid(*u),
        FilterValue::Time(t) => Val::Time(*t),
        // Parsing pairs predicates with value shapes; other shapes never reach scalars.
        _ => Val::Null(crate::driver::Ty::Text),
    }
}

fn list_vals(value: &FilterValue) -> Vec<Val> {
    match value {
        FilterValue::TextList(v) => v.iter().cloned().map(Val::Text).collect(),
        FilterValue::IdList(v) => v.iter().copied().map(Val::Uuid).collect(),
        FilterValue::Digests(v) => v
            .iter()
            .map(|d| Val::Bytes(d.as_bytes().to_vec()))
            .collect(),
        other => vec![scalar(other)],
    }
}

/// Appends ` WHERE mode = .. AND <filters>` to `sql`.
pub(crate) fn push_where<F: Field + Column>(
    sql: &mut Sql,
    dialect: Dialect,
    mode: Mode,
    filters: &[Filter<F>],
) {
    let m = sql.bind(mode.as_str());
    sql.push(&format!(" WHERE mode = {m}"));
    for f in filters {
        let col = f.field.column();
        let cond = condition(sql, dialect, col, f);
        sql.push(" AND ");
        sql.push(&cond);
    }
}

fn condition<F: Field>(sql: &mut Sql, dialect: Dialect, col: &str, f: &Filter<F>) -> String {
    let flag = matches!(f.value, FilterValue::Flag(true));
    let like = |sql: &mut Sql, pattern: String| {
        let p = sql.bind(pattern);
        format!("{col} LIKE {p} ESCAPE '\\'")
    };
    let text = |v: &FilterValue| match v {
        FilterValue::Text(s) => s.clone(),
        _ => String::new(),
    };
    match f.predicate {
        Predicate::Eq if matches!(f.value, FilterValue::Digests(_)) => in_list(sql, col, &f.value),
        Predicate::Eq => format!("{col} = {}", sql.bind(scalar(&f.value))),
        Predicate::NotEq => format!("{col} <> {}", sql.bind(scalar(&f.value))),
        Predicate::Gt => format!("{col} > {}", sql.bind(scalar(&f.value))),
        Predicate::Gteq => format!("{col} >= {}", sql.bind(scalar(&f.value))),
        Predicate::Lt => format!("{col} < {}", sql.bind(scalar(&f.value))),
        Predicate::Lteq => format!("{col} <= {}", sql.bind(scalar(&f.value))),
        Predicate::Matches => {
            let p = sql.bind(text(&f.value));
            format!("{col} LIKE {p}")
        }
        Predicate::Cont => like(sql, format!("%{}%", like_escape(&text(&f.value)))),
        Predicate::Start => like(sql, format!("{}%", like_escape(&text(&f.value)))),
        Predicate::End => like(sql, format!("%{}", like_escape(&text(&f.value)))),
        Predicate::In => in_list(sql, col, &f.value),
        Predicate::Null if flag => format!("{col} IS NULL"),
        Predicate::Null => format!("{col} IS NOT NULL"),
        Predicate::NotNull if flag => format!("{col} IS NOT NULL"),
        Predicate::NotNull => format!("{col} IS NULL"),
        Predicate::Present if flag => format!("({col} IS NOT NULL AND {col} <> '')"),
        Predicate::Present => format!("({col} IS NULL OR {col} = '')"),
        Predicate::Blank if flag => format!("({col} IS NULL OR {col} = '')"),
        Predicate::Blank => format!("({col} IS NOT NULL AND {col} <> '')"),
        Predicate::Jcont => {
            let FilterValue::Json(pairs) = &f.value else {
                return "1 = 0".to_owned();
            };
            let parts: Vec<String> = pairs
                .iter()
                .map(|(k, v)| {
                    let kp = sql.bind(k.as_str());
                    let vp = sql.bind(v.to_string());
                    dialect.json_key_eq(col, &kp, &vp)
                })
                .collect();
            format!("({})", parts.join(" AND "))
        }
    }
}

fn in_list(sql: &mut Sql, col: &str, value: &FilterValue) -> String {
    let vals = list_vals(value);
    if vals.is_empty() {
        return "1 = 0".to_owned();
    }
    let ps: Vec<String> = vals.into_iter().map(|v| sql.bind(v)).collect();
    format!("{col} IN ({})", ps.join(", "))
}

/// ` ORDER BY` the requested keys, then `created_at`, then `id`; NULLs last ascending and
/// first descending on every database.
pub(crate) fn order_by<S: SortKey + Column>(sorts: &[Sort<S>]) -> String {
    let mut cols: Vec<(&str, bool)> = sorts
        .iter()
        .map(|s| (s.key.column(), s.descending))
        .collect();
    for tie in ["created_at", "id"] {
        if !cols.iter().any(|(c, _)| *c == tie) {
            cols.push((tie, false));
        }
    }
    let parts: Vec<String> = cols
        .iter()
        .map(|(c, desc)| {
            if *desc {
                format!("{c} DESC NULLS FIRST")
            } else {
                format!("{c} ASC NULLS LAST")
            }
        })
        .collect();
    format!(" ORDER BY {}", parts.join(", "))
}
