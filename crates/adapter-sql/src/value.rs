//! Values bound to statements and read from rows, and the column types rows decode to.

use pwreset_domain::Timestamp;
use uuid::Uuid;

/// A value bound to a statement or read from a row.
///
/// Its `Debug` shows the kind and size of text, bytes and JSON, never their content: rows
/// hold reset tokens (the outbox), digests, password hashes and addresses, and a row that
/// does not decode ends up in an error message and so in the log.
#[derive(Clone, PartialEq)]
pub enum Val {
    /// NULL of a given type (databases with typed parameters need to know which).
    Null(Ty),
    Uuid(Uuid),
    Text(String),
    Time(Timestamp),
    Bytes(Vec<u8>),
    Int(i64),
    /// A JSON document (bound to a JSON column).
    Json(serde_json::Value),
    /// A list of ids, bound as one array (`uuid[]`) where the database has arrays; only
    /// dialect statements of such databases use it.
    Uuids(Vec<Uuid>),
}

impl std::fmt::Debug for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Null(ty) => write!(f, "Null({ty:?})"),
            Val::Uuid(u) => write!(f, "Uuid({u})"),
            Val::Text(s) => write!(f, "Text(<{} bytes>)", s.len()),
            Val::Time(t) => write!(f, "Time({t:?})"),
            Val::Bytes(b) => write!(f, "Bytes(<{} bytes>)", b.len()),
            Val::Int(i) => write!(f, "Int({i})"),
            Val::Json(j) => {
                let kind = match j {
                    serde_json::Value::Object(m) => format!("object of {} keys", m.len()),
                    serde_json::Value::Array(a) => format!("array of {}", a.len()),
                    _ => "scalar".to_owned(),
                };
                write!(f, "Json(<{kind}>)")
            }
            Val::Uuids(ids) => write!(f, "Uuids({ids:?})"),
        }
    }
}

/// Rust types with a column type, so that `None` binds as a typed NULL.
pub trait Typed: Into<Val> {
    const TY: Ty;
}

impl Typed for Uuid {
    const TY: Ty = Ty::Uuid;
}
impl Typed for String {
    const TY: Ty = Ty::Text;
}
impl Typed for &str {
    const TY: Ty = Ty::Text;
}
impl Typed for Timestamp {
    const TY: Ty = Ty::Time;
}
impl Typed for i64 {
    const TY: Ty = Ty::Int;
}

impl<T: Typed> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null(T::TY), Into::into)
    }
}

impl From<Uuid> for Val {
    fn from(v: Uuid) -> Self {
        Val::Uuid(v)
    }
}

impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_owned())
    }
}

impl From<Timestamp> for Val {
    fn from(v: Timestamp) -> Self {
        Val::Time(v)
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}

/// The type a statement expects in a result column; `nullable` columns may be `Val::Null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Uuid,
    Text,
    Time,
    Bytes,
    Int,
    Json,
}

#[cfg(test)]
mod tests {
    use super::Val;

    #[test]
    fn debug_never_shows_text_bytes_or_json_content() {
        let token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE";
        let shown = format!(
            "{:?}",
            vec![
                Val::Text(token.to_owned()),
                Val::Text("jane@example.com".to_owned()),
                Val::Bytes(vec![0xab; 32]),
                Val::Json(serde_json::json!({"secret": "value"})),
            ]
        );
        for hidden in [
            token,
            "jane@example.com",
            "ab",
            "AB",
            "171",
            "secret",
            "value",
        ] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
        assert!(shown.contains("Text(<43 bytes>)"), "{shown}");
    }
}
