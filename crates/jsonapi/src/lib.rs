//! JSON:API documents of pwreset's resources, as Commerce Layer shapes them.
//!
//! Pure rendering from domain entities to `serde_json::Value`, shared by the HTTP adapter
//! (responses) and the webhook adapter (payloads), so the two can never disagree on the
//! wire format. No I/O, no HTTP types.

use std::collections::HashMap;

use pwreset_domain::{
    Customer, Metadata, PasswordReset, Reference, ResetEvent, ResetToken, Timestamp,
};
use serde_json::{Map, Value, json};

pub const RESETS: &str = "customer_password_resets";
pub const CUSTOMERS: &str = "customers";
pub const EVENTS: &str = "events";

pub const RESET_ATTRIBUTES: &[&str] = &[
    "customer_email",
    "reset_password_token",
    "reset_password_at",
    "created_at",
    "updated_at",
    "reference",
    "reference_origin",
    "metadata",
];

pub const CUSTOMER_ATTRIBUTES: &[&str] = &[
    "email",
    "has_password",
    "created_at",
    "updated_at",
    "reference",
    "reference_origin",
    "metadata",
];

pub const EVENT_ATTRIBUTES: &[&str] = &["name", "reason", "client_ip", "mode", "created_at"];

/// ISO 8601 UTC with milliseconds and `Z`, as Commerce Layer prints them.
#[must_use]
pub fn timestamp(t: &Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn opt_timestamp(t: Option<&Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(timestamp(t)))
}

fn opt_reference(r: Option<&Reference>) -> Value {
    r.map_or(Value::Null, |r| Value::String(r.as_str().to_owned()))
}

fn opt_metadata(m: Option<&Metadata>) -> Value {
    m.map_or(Value::Null, Metadata::to_value)
}

/// Which attributes to show (sparse fieldsets, by resource type) and whether the reset's
/// customer is included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// `fields[type]=a,b`.
    pub fields: HashMap<String, Vec<String>>,
    /// `include=customer`.
    pub include_customer: bool,
}

fn sparse(attributes: Map<String, Value>, fields: Option<&Vec<String>>) -> Value {
    match fields {
        None => Value::Object(attributes),
        Some(keep) => Value::Object(
            attributes
                .into_iter()
                .filter(|(k, _)| keep.iter().any(|f| f == k))
                .collect(),
        ),
    }
}

// ---- resource objects ----

/// Builds resource objects with links under the configured public base URL.
#[derive(Debug, Clone)]
pub struct Renderer {
    pub base: String,
}

impl Renderer {
    /// An absolute URL under `/api`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/{path}", self.base)
    }

    fn relationship(&self, kind: &str, id: &str, name: &str, data: Option<Value>) -> Value {
        let mut rel = json!({
            "links": {
                "self": self.url(&format!("{kind}/{id}/relationships/{name}")),
                "related": self.url(&format!("{kind}/{id}/{name}")),
            }
        });
        if let Some(d) = data {
            rel["data"] = d;
        }
        rel
    }

    /// A `customer_password_resets` resource. `token` is shown only when given (the create
    /// response to an integration caller); it is `null` everywhere else.
    #[must_use]
    pub fn reset(&self, r: &PasswordReset, token: Option<&ResetToken>, view: &View) -> Value {
        let id = r.id.to_string();
        let mut attributes = Map::new();
        attributes.insert("customer_email".into(), json!(r.customer_email.as_str()));
        attributes.insert(
            "reset_password_token".into(),
            token.map_or(Value::Null, |t| json!(t.expose_secret())),
        );
        attributes.insert(
            "reset_password_at".into(),
            opt_timestamp(r.reset_password_at.as_ref()),
        );
        attributes.insert("created_at".into(), json!(timestamp(&r.created_at)));
        attributes.insert("updated_at".into(), json!(timestamp(&r.updated_at)));
        attributes.insert("reference".into(), opt_reference(r.reference.as_ref()));
        attributes.insert(
            "reference_origin".into(),
            opt_reference(r.reference_origin.as_ref()),
        );
        attributes.insert("metadata".into(), opt_metadata(r.metadata.as_ref()));
        let customer_data = view
            .include_customer
            .then(|| json!({ "type": CUSTOMERS, "id": r.customer_id.to_string() }));
        json!({
            "id": id,
            "type": RESETS,
            "links": { "self": self.url(&format!("{RESETS}/{id}")) },
            "attributes": sparse(attributes, view.fields.get(RESETS)),
            "relationships": {
                "customer": self.relationship(RESETS, &id, "customer", customer_data),
                "events": self.relationship(RESETS, &id, "events", None),
            },
            "meta": { "mode": r.mode.as_str() },
        })
    }

    /// A `customers` resource (the password is write-only).
    #[must_use]
    pub fn customer(&self, c: &Customer, view: &View) -> Value {
        let id = c.id.to_string();
        let mut attributes = Map::new();
        attributes.insert("email".into(), json!(c.email.as_str()));
        attributes.insert("has_password".into(), json!(c.has_password()));
        attributes.insert("created_at".into(), json!(timestamp(&c.created_at)));
        attributes.insert("updated_at".into(), json!(timestamp(&c.updated_at)));
        attributes.insert("reference".into(), opt_reference(c.reference.as_ref()));
        attributes.insert(
            "reference_origin".into(),
            opt_reference(c.reference_origin.as_ref()),
        );
        attributes.insert("metadata".into(), opt_metadata(c.metadata.as_ref()));
        json!({
            "id": id,
            "type": CUSTOMERS,
            "links": { "self": self.url(&format!("{CUSTOMERS}/{id}")) },
            "attributes": sparse(attributes, view.fields.get(CUSTOMERS)),
            "relationships": {
                "customer_password_resets":
                    self.relationship(CUSTOMERS, &id, "customer_password_resets", None),
            },
            "meta": { "mode": c.mode.as_str() },
        })
    }

    /// An `events` resource.
    #[must_use]
    pub fn event(&self, e: &ResetEvent, view: &View) -> Value {
        let id = e.id.to_string();
        let mut attributes = Map::new();
        attributes.insert("name".into(), json!(e.kind.as_str()));
        attributes.insert("reason".into(), json!(e.reason));
        attributes.insert(
            "client_ip".into(),
            json!(e.client_ip.map(|ip| ip.to_string())),
        );
        attributes.insert("mode".into(), json!(e.mode.as_str()));
        attributes.insert("created_at".into(), json!(timestamp(&e.created_at)));
        json!({
            "id": id,
            "type": EVENTS,
            "links": { "self": self.url(&format!("{EVENTS}/{id}")) },
            "attributes": sparse(attributes, view.fields.get(EVENTS)),
            "meta": { "mode": e.mode.as_str() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pwreset_domain::{CustomerId, EmailAddress, Mode, ResetDraft, ResetId, TokenDigest};

    fn reset() -> PasswordReset {
        let t = chrono::DateTime::parse_from_rfc3339("2018-01-01T12:00:00Z")
            .unwrap()
            .to_utc();
        ResetDraft {
            id: ResetId::new_at(t),
            mode: Mode::Live,
            token_digest: TokenDigest::from_bytes([1; 32]),
            expires_at: t,
            reference: None,
            reference_origin: None,
            metadata: None,
            created_at: t,
        }
        .for_customer(
            CustomerId::new_at(t),
            EmailAddress::parse("a@example.com").unwrap(),
        )
    }

    #[test]
    fn all_eight_attributes_are_present_and_the_token_only_when_given() {
        let r = Renderer {
            base: "https://x.test".into(),
        };
        let doc = r.reset(&reset(), None, &View::default());
        let attrs = doc["attributes"].as_object().unwrap();
        assert_eq!(attrs.len(), RESET_ATTRIBUTES.len());
        assert!(RESET_ATTRIBUTES.iter().all(|a| attrs.contains_key(*a)));
        assert_eq!(attrs["reset_password_token"], Value::Null);
        assert_eq!(attrs["created_at"], "2018-01-01T12:00:00.000Z");
        assert_eq!(doc["meta"]["mode"], "live");
        let token = ResetToken::parse(&"A".repeat(43)).unwrap();
        let shown = r.reset(&reset(), Some(&token), &View::default());
        assert_eq!(shown["attributes"]["reset_password_token"], "A".repeat(43));
    }

    #[test]
    fn sparse_views_keep_only_the_listed_attributes() {
        let r = Renderer {
            base: "https://x.test".into(),
        };
        let mut view = View::default();
        view.fields.insert(RESETS.into(), vec!["reference".into()]);
        let doc = r.reset(&reset(), None, &view);
        assert_eq!(doc["attributes"], json!({ "reference": null }));
    }
}
