//! The one way values get into a statement: [`Sql`], a driver-neutral query builder.

use crate::value::Val;

/// SQL text being assembled with its bound values, in the style of sqlx's `QueryBuilder`
/// but for every driver: text goes in with [`push`](Sql::push), values only with
/// [`bind`](Sql::bind) / [`push_bind`](Sql::push_bind), which number the placeholders
/// (`$1`, `$2`, ...; drivers render them for their database). A value used twice is
/// referenced through the placeholder `bind` returned. Nothing else may put a `$n` in the
/// text, and no value is ever formatted into it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sql {
    text: String,
    args: Vec<Val>,
}

impl Sql {
    /// A statement starting with `text`.
    #[must_use]
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    /// Appends SQL text (never a value).
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Binds `v` and returns its placeholder, to be pushed (once or more) where it is used.
    #[must_use = "the placeholder must be pushed where the value is used"]
    pub fn bind(&mut self, v: impl Into<Val>) -> String {
        self.args.push(v.into());
        format!("${}", self.args.len())
    }

    /// Binds `v` and appends its placeholder.
    pub fn push_bind(&mut self, v: impl Into<Val>) -> &mut Self {
        let p = self.bind(v);
        self.push(&p)
    }

    /// Binds each value and appends their placeholders separated by `, `.
    pub fn push_binds(&mut self, values: impl IntoIterator<Item = Val>) -> &mut Self {
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push_bind(v);
        }
        self
    }

    /// The text so far.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The values bound so far, in placeholder order.
    #[must_use]
    pub fn args(&self) -> &[Val] {
        &self.args
    }

    /// The text and its values, for a driver to run.
    #[must_use]
    pub fn into_parts(self) -> (String, Vec<Val>) {
        (self.text, self.args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_binds_and_can_be_reused() {
        let mut sql = Sql::new("UPDATE t SET a = ");
        let now = sql.bind(5_i64);
        sql.push(&now)
            .push(", b = ")
            .push(&now)
            .push(" WHERE id IN (");
        sql.push_binds(["x".into(), "y".into()]).push(") AND c = ");
        sql.push_bind("z");
        let (text, args) = sql.into_parts();
        assert_eq!(
            text,
            "UPDATE t SET a = $1, b = $1 WHERE id IN ($2, $3) AND c = $4"
        );
        assert_eq!(args, vec![Val::Int(5), "x".into(), "y".into(), "z".into()]);
    }
}
