//! JSON:API at the edge: query parameters in, request documents in, resource documents out.
//!
//! Request bodies are parsed as untyped JSON first and checked field by field, so every
//! shape error (wrong type, array where a string belongs, unknown attribute) becomes a
//! precise 4xx with a `source.pointer`, never a generic deserialization failure.

use pwreset_domain::{Metadata, Page, Patch, Reference};
pub use pwreset_jsonapi::{
    CUSTOMER_ATTRIBUTES, CUSTOMERS, EVENT_ATTRIBUTES, EVENTS, RESET_ATTRIBUTES, RESETS, Renderer,
    View, timestamp,
};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, Source};
use crate::query::RawListQuery;

// ---- query parameters ----

/// The query parameters of a request, checked against what the endpoint accepts.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pub list: RawListQuery,
    /// Sparse fieldsets and includes.
    pub view: View,
    /// The raw pairs, for pagination links.
    pub pairs: Vec<(String, String)>,
}

/// What an endpoint accepts besides `fields[...]`.
#[derive(Debug, Clone, Copy)]
pub struct Accepts {
    /// `filter[q][...]`, `sort`, `page[...]`.
    pub list: bool,
    /// The relationships that may be included.
    pub includes: &'static [&'static str],
}

fn known_attributes(resource: &str) -> Option<&'static [&'static str]> {
    match resource {
        RESETS => Some(RESET_ATTRIBUTES),
        CUSTOMERS => Some(CUSTOMER_ATTRIBUTES),
        EVENTS => Some(EVENT_ATTRIBUTES),
        _ => None,
    }
}

/// Parses a query string (percent-encoded brackets decode).
///
/// # Errors
/// `PARAM_NOT_ALLOWED` naming any parameter the endpoint does not take, `BAD_REQUEST` for
/// a malformed query string or unknown field/include names.
pub fn parse_params(query: &str, accepts: Accepts) -> Result<Params, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| ApiError::bad_request("the query string is malformed"))?;
    let mut params = Params {
        pairs: pairs.clone(),
        ..Params::default()
    };
    let not_allowed = |k: &str| ApiError::param_not_allowed(k, Source::Parameter(k.to_owned()));
    for (key, value) in pairs {
        if let Some(rest) = key
            .strip_prefix("filter[q][")
            .and_then(|r| r.strip_suffix(']'))
        {
            if !accepts.list || rest.is_empty() || rest.contains(['[', ']']) {
                return Err(not_allowed(&key));
            }
            params.list.filters.push((rest.to_owned(), value));
        } else if let Some(kind) = key
            .strip_prefix("fields[")
            .and_then(|r| r.strip_suffix(']'))
        {
            let known = known_attributes(kind).ok_or_else(|| not_allowed(&key))?;
            let names: Vec<String> = value
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(bad) = names.iter().find(|n| !known.contains(&n.as_str())) {
                return Err(
                    ApiError::bad_request(format!("{bad} is not an attribute of {kind}"))
                        .with_source(Source::Parameter(key.clone())),
                );
            }
            params.view.fields.insert(kind.to_owned(), names);
        } else {
            match key.as_str() {
                "sort" if accepts.list => params.list.sort = Some(value),
                "page[number]" if accepts.list => params.list.page_number = Some(value),
                "page[size]" if accepts.list => params.list.page_size = Some(value),
                "include" => {
                    for name in value.split(',').filter(|s| !s.is_empty()) {
                        if !accepts.includes.contains(&name) {
                            return Err(ApiError::bad_request(format!(
                                "{name} is not an includable relationship"
                            ))
                            .with_source(Source::Parameter("include".into())));
                        }
                        if name == "customer" {
                            params.view.include_customer = true;
                        }
                    }
                }
                _ => return Err(not_allowed(&key)),
            }
        }
    }
    Ok(params)
}

/// `meta` and `links` of a collection page, keeping the other query parameters.
#[must_use]
pub fn page_meta<T>(
    renderer: &Renderer,
    path: &str,
    page: &Page<T>,
    params: &Params,
) -> (Value, Value) {
    let count = page.page_count();
    let link = |n: u64| {
        let mut pairs: Vec<(String, String)> = params
            .pairs
            .iter()
            .filter(|(k, _)| k != "page[number]" && k != "page[size]")
            .cloned()
            .collect();
        pairs.push(("page[number]".into(), n.to_string()));
        pairs.push(("page[size]".into(), page.request.size().to_string()));
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        Value::String(format!("{}?{query}", renderer.url(path)))
    };
    let number = u64::from(page.request.number());
    let last = count.max(1);
    let mut links = Map::new();
    links.insert("first".into(), link(1));
    if number > 1 {
        links.insert("prev".into(), link((number - 1).min(last)));
    }
    if number < count {
        links.insert("next".into(), link(number + 1));
    }
    links.insert("last".into(), link(last));
    (
        json!({ "record_count": page.record_count, "page_count": count }),
        Value::Object(links),
    )
}

// ---- request documents ----

/// A checked request document: its id (if any) and its attributes.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    pub id: Option<String>,
    pub attributes: Map<String, Value>,
}

/// Parses a request body as a JSON:API document for `kind`.
///
/// # Errors
/// `BAD_REQUEST` for malformed JSON; `INVALID_RESOURCE` for a wrong shape or type;
/// `KEY_NOT_INCLUDED_IN_URL` when the id does not match `url_id`; `PARAM_NOT_ALLOWED` for
/// attributes outside `allowed` or any relationship linkage.
pub fn parse_document(
    body: &[u8],
    kind: &str,
    url_id: Option<&str>,
    allowed: &[&str],
) -> Result<Incoming, ApiError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(mut top) = doc else {
        return Err(ApiError::invalid_resource(
            "the document must be a JSON object",
            "",
        ));
    };
    if let Some(key) = top
        .keys()
        .find(|k| !matches!(k.as_str(), "data" | "meta" | "jsonapi"))
    {
        return Err(ApiError::param_not_allowed(
            key,
            Source::Pointer(format!("/{key}")),
        ));
    }
    let Some(Value::Object(mut data)) = top.remove("data") else {
        return Err(ApiError::invalid_resource(
            "data must be a resource object",
            "/data",
        ));
    };
    if let Some(key) = data.keys().find(|k| {
        !matches!(
            k.as_str(),
            "type" | "id" | "attributes" | "relationships" | "meta" | "links"
        )
    }) {
        return Err(ApiError::param_not_allowed(
            key,
            Source::Pointer(format!("/data/{key}")),
        ));
    }
    match data.get("type") {
        Some(Value::String(t)) if t == kind => {}
        _ => {
            return Err(ApiError::invalid_resource(
                format!("data.type must be {kind}"),
                "/data/type",
            ));
        }
    }
    let id = match (data.remove("id"), url_id) {
        (None, _) => None,
        (Some(Value::String(id)), Some(expected)) if id == expected => Some(id),
        (Some(_), Some(_)) => {
            return Err(ApiError::key_not_in_url(
                "data.id must match the id in the URL",
            ));
        }
        (Some(_), None) => {
            return Err(ApiError::param_not_allowed(
                "id",
                Source::Pointer("/data/id".into()),
            ));
        }
    };
    match data.remove("relationships") {
        None => {}
        Some(Value::Object(rels)) => {
            if let Some(name) = rels.keys().next() {
                return Err(ApiError::param_not_allowed(
                    name,
                    Source::Pointer(format!("/data/relationships/{name}")),
                ));
            }
        }
        Some(_) => {
            return Err(ApiError::invalid_resource(
                "relationships must be an object",
                "/data/relationships",
            ));
        }
    }
    let attributes = match data.remove("attributes") {
        None => Map::new(),
        Some(Value::Object(a)) => a,
        Some(_) => {
            return Err(ApiError::invalid_resource(
                "attributes must be an object",
                "/data/attributes",
            ));
        }
    };
    if let Some(name) = attributes.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::param_not_allowed(
            name,
            Source::Pointer(format!("/data/attributes/{name}")),
        ));
    }
    Ok(Incoming { id, attributes })
}

impl Incoming {
    /// A required string attribute.
    ///
    /// # Errors
    /// 422 when absent, null or not a string.
    pub fn required_string(&self, name: &str) -> Result<&str, ApiError> {
        match self.attributes.get(name) {
            Some(Value::String(s)) => Ok(s),
            None | Some(Value::Null) => Err(ApiError::validation(name, "can't be blank")),
            Some(_) => Err(ApiError::validation(name, "must be a string")),
        }
    }

    /// An optional string attribute (absent or a string; null is refused).
    ///
    /// # Errors
    /// 422 when present but not a string.
    pub fn optional_string(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.attributes.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::validation(name, "must be a string")),
        }
    }

    /// A nullable reference attribute as a patch.
    ///
    /// # Errors
    /// 422 when not a string or null, or not an acceptable reference.
    pub fn reference(&self, name: &str) -> Result<Patch<Reference>, ApiError> {
        match self.attributes.get(name) {
            None => Ok(Patch::Keep),
            Some(Value::Null) => Ok(Patch::Set(None)),
            Some(Value::String(s)) => Reference::parse(s)
                .map(|r| Patch::Set(Some(r)))
                .map_err(|e| ApiError::validation(name, &e.to_string())),
            Some(_) => Err(ApiError::validation(name, "must be a string")),
        }
    }

    /// A nullable metadata attribute as a patch.
    ///
    /// # Errors
    /// 422 when not an object or null, or too large.
    pub fn metadata(&self) -> Result<Patch<Metadata>, ApiError> {
        match self.attributes.get("metadata") {
            None => Ok(Patch::Keep),
            Some(Value::Null) => Ok(Patch::Set(None)),
            Some(v) => Metadata::parse(v.clone())
                .map(|m| Patch::Set(Some(m)))
                .map_err(|e| ApiError::validation("metadata", &e.to_string())),
        }
    }

    /// Whether any of `names` is present.
    #[must_use]
    pub fn has_any(&self, names: &[&str]) -> bool {
        names.iter().any(|n| self.attributes.contains_key(*n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: Accepts = Accepts {
        list: true,
        includes: &["customer"],
    };

    #[test]
    fn percent_encoded_brackets_decode() {
        let p = parse_params(
            "filter%5Bq%5D%5Breference_eq%5D=a%20b&page%5Bsize%5D=5&include=customer",
            LIST,
        )
        .unwrap();
        assert_eq!(p.list.filters, vec![("reference_eq".into(), "a b".into())]);
        assert_eq!(p.list.page_size.as_deref(), Some("5"));
        assert!(p.view.include_customer);
    }

    #[test]
    fn unknown_parameters_are_named() {
        let e = parse_params("colour=red", LIST).unwrap_err();
        assert_eq!(e.code, "PARAM_NOT_ALLOWED");
        assert_eq!(e.source, Some(Source::Parameter("colour".into())));
        let one = Accepts {
            list: false,
            includes: &[],
        };
        assert_eq!(
            parse_params("sort=id", one).unwrap_err().code,
            "PARAM_NOT_ALLOWED"
        );
        assert!(parse_params("fields[customer_password_resets]=password", LIST).is_err());
        assert!(parse_params("include=orders", LIST).is_err());
        assert!(parse_params("fields[orders]=x", LIST).is_err());
    }

    #[test]
    fn documents_are_checked_field_by_field() {
        let allowed = &["customer_email"];
        let ok = br#"{"data":{"type":"customer_password_resets","attributes":{"customer_email":"a@b.co"},"relationships":{}}}"#;
        assert!(parse_document(ok, RESETS, None, allowed).is_ok());
        let cases: [(&[u8], &str); 8] = [
            (b"{", "BAD_REQUEST"),
            (b"[]", "INVALID_RESOURCE"),
            (br#"{"data":[]}"#, "INVALID_RESOURCE"),
            (br#"{"data":{"type":"orders"}}"#, "INVALID_RESOURCE"),
            (br#"{"data":{"type":"customer_password_resets","id":"x"}}"#, "PARAM_NOT_ALLOWED"),
            (br#"{"data":{"type":"customer_password_resets","attributes":{"admin":true}}}"#, "PARAM_NOT_ALLOWED"),
            (br#"{"data":{"type":"customer_password_resets","attributes":[]}}"#, "INVALID_RESOURCE"),
            (br#"{"data":{"type":"customer_password_resets","relationships":{"customer":{"data":null}}}}"#, "PARAM_NOT_ALLOWED"),
        ];
        for (body, code) in cases {
            let e = parse_document(body, RESETS, None, allowed).unwrap_err();
            assert_eq!(e.code, code, "{}", String::from_utf8_lossy(body));
        }
        let patch = br#"{"data":{"type":"customer_password_resets","id":"abc"}}"#;
        assert_eq!(
            parse_document(patch, RESETS, Some("def"), allowed)
                .unwrap_err()
                .code,
            "KEY_NOT_INCLUDED_IN_URL"
        );
    }

    #[test]
    fn attributes_have_the_right_json_types() {
        let doc = parse_document(
            br#"{"data":{"type":"customer_password_resets","attributes":{"customer_email":["a@b.co"],"reference":5,"metadata":[1]}}}"#,
            RESETS,
            None,
            &["customer_email", "reference", "metadata"],
        )
        .unwrap();
        assert_eq!(
            doc.required_string("customer_email")
                .unwrap_err()
                .status
                .as_u16(),
            422
        );
        assert!(doc.reference("reference").is_err());
        assert!(doc.metadata().is_err());
    }

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        let t = chrono::DateTime::parse_from_rfc3339("2018-01-01T12:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(timestamp(&t), "2018-01-01T12:00:00.000Z");
    }
}
