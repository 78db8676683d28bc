//! Values bound to statements and read from rows, and the column types rows decode to.

use pwreset_domain::Timestamp;
use uuid::Uuid;

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
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
