//! Translation of the domain's typed list queries into SQL with bound parameters, and
//! the paged select that runs them.

use anyhow::anyhow;
use pwreset_domain::ports::StoreError;
use pwreset_domain::{
    CustomerField, CustomerSort, Field, Filter, FilterValue, ListQuery, Mode, Page, Predicate,
    ResetField, ResetSort, Sort, SortKey,
};

use crate::SqlStore;
use crate::driver::Dialect;
use crate::error::db;
use crate::sql::Sql;
use crate::value::{Ty, Val};

/// A table a list query runs against: its name, selected columns and their types.
pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static str,
    pub types: &'static [Ty],
}

impl SqlStore {
    /// One page of `table`'s rows in `mode` matching `query`, decoded by `decode`, and the
    /// count of all that match.
    pub(crate) async fn page<F, S, T>(
        &self,
        table: &Table,
        mode: Mode,
        query: &ListQuery<F, S>,
        decode: fn(Vec<Val>) -> anyhow::Result<T>,
    ) -> Result<Page<T>, StoreError>
    where
        F: Field + Column,
        S: SortKey + Column,
    {
        let dialect = self.driver.dialect();
        let mut count = Sql::new("SELECT count(*) FROM ");
        count.push(table.name);
        push_where(&mut count, dialect, mode, &query.filters)?;
        let mut select = Sql::new("SELECT ");
        select.push(table.columns).push(" FROM ").push(table.name);
        push_where(&mut select, dialect, mode, &query.filters)?;
        select
            .push(&order_by(&query.sort))
            .push(" LIMIT ")
            .push_bind(i64::from(query.page.size()))
            .push(" OFFSET ")
            .push_bind(i64::try_from(query.page.offset()).map_err(|_| {
                StoreError::unexpected(anyhow!("page offset {} out of range", query.page.offset()))
            })?);

        let mut conn = self.driver.connection().await.map_err(db)?;
        let total = match conn.fetch(count, &[Ty::Int]).await.map_err(db)?.as_slice() {
            [row] => match row.as_slice() {
                [Val::Int(n)] => u64::try_from(*n)
                    .map_err(|_| StoreError::unexpected(anyhow!("count returned {n}")))?,
                other => return Err(StoreError::unexpected(anyhow!("count returned {other:?}"))),
            },
            other => {
                return Err(StoreError::unexpected(anyhow!(
                    "count returned {} rows",
                    other.len()
                )));
            }
        };
        let rows = conn.fetch(select, table.types).await.map_err(db)?;
        let items = rows
            .into_iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::unexpected)?;
        Ok(Page {
            items,
            record_count: total,
            request: query.page,
        })
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

/// A value shape the query parser never pairs with the predicate: a bug, reported.
fn impossible(col: &str, value: &FilterValue) -> StoreError {
    StoreError::unexpected(anyhow!(
        "filter on {col} has an impossible value shape {value:?}"
    ))
}

fn scalar(col: &str, value: &FilterValue) -> Result<Val, StoreError> {
    match value {
        FilterValue::Text(s) => Ok(Val::Text(s.clone())),
        FilterValue::Id(u) => Ok(Val::Uuid(*u)),
        FilterValue::Time(t) => Ok(Val::Time(*t)),
        other => Err(impossible(col, other)),
    }
}

fn text<'v>(col: &str, value: &'v FilterValue) -> Result<&'v str, StoreError> {
    match value {
        FilterValue::Text(s) => Ok(s),
        other => Err(impossible(col, other)),
    }
}

fn list_vals(col: &str, value: &FilterValue) -> Result<Vec<Val>, StoreError> {
    Ok(match value {
        FilterValue::TextList(v) => v.iter().cloned().map(Val::Text).collect(),
        FilterValue::IdList(v) => v.iter().copied().map(Val::Uuid).collect(),
        FilterValue::Digests(v) => v
            .iter()
            .map(|d| Val::Bytes(d.as_bytes().to_vec()))
            .collect(),
        other => vec![scalar(col, other)?],
    })
}

/// Appends ` WHERE mode = .. AND <filters>` to `sql`.
fn push_where<F: Field + Column>(
    sql: &mut Sql,
    dialect: &dyn Dialect,
    mode: Mode,
    filters: &[Filter<F>],
) -> Result<(), StoreError> {
    sql.push(" WHERE mode = ").push_bind(mode.as_str());
    for f in filters {
        sql.push(" AND ");
        push_condition(sql, dialect, f.field.column(), f)?;
    }
    Ok(())
}

fn push_condition<F: Field>(
    sql: &mut Sql,
    dialect: &dyn Dialect,
    col: &str,
    f: &Filter<F>,
) -> Result<(), StoreError> {
    let flag = matches!(f.value, FilterValue::Flag(true));
    let compare = |sql: &mut Sql, op: &str| -> Result<(), StoreError> {
        sql.push(col).push(op).push_bind(scalar(col, &f.value)?);
        Ok(())
    };
    let like = |sql: &mut Sql, pattern: String| {
        sql.push(col)
            .push(" LIKE ")
            .push_bind(pattern)
            .push(" ESCAPE '\\'");
    };
    match f.predicate {
        Predicate::Eq if matches!(f.value, FilterValue::Digests(_)) => {
            push_in_list(sql, col, &f.value)?;
        }
        Predicate::Eq => compare(sql, " = ")?,
        Predicate::NotEq => compare(sql, " <> ")?,
        Predicate::Gt => compare(sql, " > ")?,
        Predicate::Gteq => compare(sql, " >= ")?,
        Predicate::Lt => compare(sql, " < ")?,
        Predicate::Lteq => compare(sql, " <= ")?,
        Predicate::Matches => {
            sql.push(col).push(" LIKE ").push_bind(text(col, &f.value)?);
        }
        Predicate::Cont => like(sql, format!("%{}%", like_escape(text(col, &f.value)?))),
        Predicate::Start => like(sql, format!("{}%", like_escape(text(col, &f.value)?))),
        Predicate::End => like(sql, format!("%{}", like_escape(text(col, &f.value)?))),
        Predicate::In => push_in_list(sql, col, &f.value)?,
        Predicate::Null | Predicate::NotNull | Predicate::Present | Predicate::Blank => {
            let FilterValue::Flag(_) = f.value else {
                return Err(impossible(col, &f.value));
            };
            let is_null = format!("{col} IS NULL");
            let not_null = format!("{col} IS NOT NULL");
            let blank = format!("({col} IS NULL OR {col} = '')");
            let present = format!("({col} IS NOT NULL AND {col} <> '')");
            sql.push(match (f.predicate, flag) {
                (Predicate::Null, true) | (Predicate::NotNull, false) => &is_null,
                (Predicate::Null | Predicate::NotNull, _) => &not_null,
                (Predicate::Present, true) | (Predicate::Blank, false) => &present,
                _ => &blank,
            });
        }
        Predicate::Jcont => {
            let FilterValue::Json(pairs) = &f.value else {
                return Err(impossible(col, &f.value));
            };
            if pairs.is_empty() {
                return Err(impossible(col, &f.value));
            }
            sql.push("(");
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    sql.push(" AND ");
                }
                let kp = sql.bind(k.as_str());
                let vp = sql.bind(v.to_string());
                sql.push(&dialect.json_key_eq(col, &kp, &vp));
            }
            sql.push(")");
        }
    }
    Ok(())
}

fn push_in_list(sql: &mut Sql, col: &str, value: &FilterValue) -> Result<(), StoreError> {
    let vals = list_vals(col, value)?;
    if vals.is_empty() {
        // `IN ()` is not SQL; an empty list matches nothing.
        sql.push("1 = 0");
    } else {
        sql.push(col).push(" IN (").push_binds(vals).push(")");
    }
    Ok(())
}

/// ` ORDER BY` the requested keys, then `created_at`, then `id`; NULLs last ascending and
/// first descending on every database.
fn order_by<S: SortKey + Column>(sorts: &[Sort<S>]) -> String {
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
