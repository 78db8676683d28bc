//! The OpenAPI 3.1 description of the whole API, served at `GET /openapi.json`.
//!
//! Built in code so the attribute lists come from the same constants the renderer uses;
//! a test walks every documented path and method against the real routes, and the CI fuzz
//! run (schemathesis) checks every response against these schemas.

use serde_json::{Map, Value, json};

use crate::jsonapi::{CUSTOMER_ATTRIBUTES, EVENT_ATTRIBUTES, RESET_ATTRIBUTES};

const JSONAPI: &str = crate::JSONAPI;

fn content(schema: Value) -> Value {
    json!({ JSONAPI: { "schema": schema } })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": content(reference("Errors")) })
}

/// `success` answers, the error answers every `/api` operation may give, and `errors`.
///
/// A 500 is deliberately not among them: bad input of any kind is a 4xx, so a 500 is a
/// defect, and the fuzz run (which fails on any status the document does not list) says so.
/// A 503 is: the database could not answer within its deadline, whatever the input.
fn responses(success: &[(&str, Value)], errors: &[&str]) -> Value {
    let mut out = Map::new();
    for (status, response) in success {
        out.insert((*status).to_owned(), response.clone());
    }
    for status in ["400", "401", "406", "429", "503"].iter().chain(errors) {
        let description = match *status {
            "400" => "Malformed request or unknown parameter",
            "401" => "Missing, invalid or insufficient credentials",
            "404" => "No such resource in the caller's mode",
            "405" => "Method not allowed",
            "406" => "Accept excludes application/vnd.api+json",
            "413" => "Body too large",
            "415" => "Body is not application/vnd.api+json",
            "422" => "Unacceptable value",
            "429" => "Rate limited",
            "503" => "The database could not answer within its deadline; try again shortly",
            _ => "Error",
        };
        let mut response = error_response(description);
        if *status == "429" {
            let seconds = json!({ "required": true,
                "schema": { "type": "string", "pattern": "^[1-9][0-9]*$" } });
            response["headers"] = json!({
                "Retry-After": seconds,
                "X-Ratelimit-Limit": seconds,
                "X-Ratelimit-Interval": seconds,
                "X-Ratelimit-Remaining": { "required": true,
                    "schema": { "type": "string", "const": "0" } },
            });
        }
        if *status == "503" {
            response["headers"] = json!({ "Retry-After": { "required": true,
                "schema": { "type": "string", "const": "1" } } });
        }
        out.insert((*status).to_owned(), response);
    }
    Value::Object(out)
}

fn nullable(schema: Value) -> Value {
    json!({ "anyOf": [schema, { "type": "null" }] })
}

fn timestamp() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn attributes(names: &[&str], types: &[(&str, Value)]) -> Value {
    let props: Map<String, Value> = names
        .iter()
        .map(|n| {
            let t = types
                .iter()
                .find(|(k, _)| k == n)
                .map_or(json!({}), |(_, v)| v.clone());
            ((*n).to_owned(), t)
        })
        .collect();
    json!({ "type": "object", "properties": props })
}

fn links() -> Value {
    json!({ "type": "object", "properties": {
        "self": { "type": "string" }, "related": { "type": "string" } } })
}

fn resource(kind: &str, attrs: Value) -> Value {
    json!({
        "type": "object",
        "required": ["id", "type", "attributes"],
        "properties": {
            "id": { "type": "string" },
            "type": { "const": kind },
            "links": links(),
            "attributes": attrs,
            "relationships": { "type": "object" },
            "meta": { "type": "object", "properties": { "mode": { "enum": ["test", "live"] } } },
        }
    })
}

fn single(schema: &str) -> Value {
    json!({
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": reference(schema),
            "included": { "type": "array", "items": reference("Customer") },
        }
    })
}

fn collection(schema: &str) -> Value {
    json!({
        "type": "object",
        "required": ["data", "meta", "links"],
        "properties": {
            "data": { "type": "array", "items": reference(schema) },
            "included": { "type": "array", "items": reference("Customer") },
            "meta": { "type": "object", "required": ["record_count", "page_count"], "properties": {
                "record_count": { "type": "integer", "minimum": 0 },
                "page_count": { "type": "integer", "minimum": 0 } } },
            "links": { "type": "object" },
        }
    })
}

fn request_body(kind: &str, attrs: Value, required: &[&str], with_id: bool) -> Value {
    let mut data = json!({
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": { "const": kind },
            "attributes": {
                "type": "object",
                "properties": attrs,
                "required": required,
                "additionalProperties": false,
            },
            "relationships": { "type": "object", "maxProperties": 0 },
        },
        "additionalProperties": false,
    });
    if !required.is_empty() {
        data["required"] = json!(["type", "attributes"]);
    }
    if with_id {
        data["properties"]["id"] = json!({ "type": "string" });
        data["required"] = json!(["type", "id"]);
    }
    json!({
        "required": true,
        "content": content(json!({
            "type": "object",
            "required": ["data"],
            "properties": { "data": data },
            "additionalProperties": false,
        })),
    })
}

fn query(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false,
        "description": description, "schema": { "type": "string" } })
}

/// A query parameter whose accepted values are exactly those matching `pattern`, so the
/// fuzz run can hold the server to it both ways (valid accepted, invalid refused).
fn query_matching(name: &str, description: &str, pattern: &str) -> Value {
    let mut q = query(name, description);
    q["schema"]["pattern"] = json!(pattern);
    q
}

/// `,`-separated `names` as the parser reads them: empty items are skipped.
fn comma_list_pattern(names: &[&str]) -> String {
    let one = format!("({})", names.join("|"));
    format!("^,*({one}(,+{one})*)?,*$")
}

fn fields(kind: &str) -> Value {
    let known = match kind {
        "customer_password_resets" => RESET_ATTRIBUTES,
        "customers" => CUSTOMER_ATTRIBUTES,
        _ => EVENT_ATTRIBUTES,
    };
    query_matching(
        &format!("fields[{kind}]"),
        "Sparse fieldset",
        &comma_list_pattern(known),
    )
}

fn include() -> Value {
    query_matching("include", "`customer`", &comma_list_pattern(&["customer"]))
}

/// A `u32` as Rust parses one (optional `+`, leading zeros) in the range `range` spells.
fn page_parameter(name: &str, description: &str, range: &str) -> Value {
    query_matching(name, description, &format!("^\\+?0*({range})$"))
}

fn page_number() -> Value {
    page_parameter(
        "page[number]",
        "Page number, 1 to 1000000",
        "[1-9][0-9]{0,5}|1000000",
    )
}

fn page_size() -> Value {
    page_parameter(
        "page[size]",
        "Page size, 1 to 25 (default 10)",
        "[1-9]|1[0-9]|2[0-5]",
    )
}

/// What one `filter[q][name]` accepts, by the kind of its attribute and its predicate.
fn filter(name: &str) -> Value {
    let hyphenated = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
    let mut q = query(&format!("filter[q][{name}]"), "Filter (see docs/api.md)");
    let schema = &mut q["schema"];
    if name.ends_with("_null") {
        schema["pattern"] = json!("^(true|false|t|f|1|0)$");
    } else if name == "id_eq" {
        // Every spelling uuid's parser takes: simple, hyphenated, braced, URN.
        schema["pattern"] = json!(format!(
            "^([0-9a-fA-F]{{32}}|{hyphenated}|\\{{{hyphenated}\\}}|urn:uuid:{hyphenated})$"
        ));
    } else if name.ends_with("_in") {
        schema["pattern"] = json!("^[^,]*(,[^,]*){0,99}$");
    } else if name.starts_with("created_at") || name.starts_with("updated_at") {
        schema["format"] = json!("date-time");
    } else if name == "metadata_jcont" {
        q.as_object_mut().map(|o| o.remove("schema"));
        q["content"] = json!({ "application/json": { "schema": {
            "type": "object", "minProperties": 1, "maxProperties": 100,
            "additionalProperties": { "type": ["string", "number", "boolean", "null"] } } } });
    }
    q
}

/// `sort`: up to five of `keys`, each optionally prefixed with `-`, joined by `,`.
fn sort(keys: &[&str]) -> Value {
    let one = format!("-?({})", keys.join("|"));
    query_matching(
        "sort",
        &format!(
            "Comma-separated keys, `-` for descending: {}",
            keys.join(", ")
        ),
        &format!("^{one}(,{one}){{0,4}}$"),
    )
}

fn path_id() -> Value {
    json!({ "name": "id", "in": "path", "required": true,
        "schema": { "type": "string", "format": "uuid" } })
}

/// Links from a create response to the operations on the created resource, so stateful
/// fuzzing reaches real records.
fn links_from_create(operations: &[&str]) -> Value {
    let links: Map<String, Value> = operations
        .iter()
        .map(|op| {
            (
                (*op).to_owned(),
                json!({ "operationId": op, "parameters": { "id": "$response.body#/data/id" } }),
            )
        })
        .collect();
    Value::Object(links)
}

fn list_parameters(kind: &str, filters: &[&str], sorts: &[&str]) -> Value {
    let mut params = vec![page_number(), page_size(), sort(sorts), fields(kind)];
    if kind == "customer_password_resets" {
        params.push(include());
        params.push(fields("customers"));
    }
    params.extend(filters.iter().map(|f| filter(f)));
    Value::Array(params)
}

fn with_links(mut response: Value, operations: &[&str]) -> Value {
    response["links"] = links_from_create(operations);
    response
}

fn doc(schema: &str) -> Value {
    json!({ "description": "OK", "content": content(reference(schema)) })
}

/// The OpenAPI document.
#[must_use]
pub fn document() -> Value {
    let string = json!({ "type": "string" });
    let nullable_string = nullable(string.clone());
    let metadata = nullable(json!({ "type": "object" }));
    let email = json!({ "type": "string", "format": "email", "maxLength": 254 });
    let password = json!({ "type": "string", "minLength": 8, "maxLength": 256 });
    let reference_in = nullable(json!({ "type": "string", "minLength": 1, "maxLength": 255,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$" }));
    let reset_attrs = attributes(
        RESET_ATTRIBUTES,
        &[
            ("customer_email", string.clone()),
            ("reset_password_token", nullable_string.clone()),
            ("reset_password_at", nullable(timestamp())),
            ("created_at", timestamp()),
            ("updated_at", timestamp()),
            ("reference", nullable_string.clone()),
            ("reference_origin", nullable_string.clone()),
            ("metadata", metadata.clone()),
        ],
    );
    let customer_attrs = attributes(
        CUSTOMER_ATTRIBUTES,
        &[
            ("email", string.clone()),
            ("has_password", json!({ "type": "boolean" })),
            ("created_at", timestamp()),
            ("updated_at", timestamp()),
            ("reference", nullable_string.clone()),
            ("reference_origin", nullable_string.clone()),
            ("metadata", metadata.clone()),
        ],
    );
    let event_attrs = attributes(
        EVENT_ATTRIBUTES,
        &[
            ("name", string.clone()),
            ("reason", nullable_string.clone()),
            ("client_ip", nullable_string.clone()),
            ("mode", json!({ "enum": ["test", "live"] })),
            ("created_at", timestamp()),
        ],
    );
    let details = json!({
        "reference": reference_in, "reference_origin": reference_in, "metadata": metadata });
    let mut reset_create = details.clone();
    reset_create["customer_email"] = email.clone();
    let mut reset_update = details.clone();
    reset_update["customer_password"] = password.clone();
    reset_update["_reset_password_token"] =
        json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]{43}$" });
    let mut customer_write = details;
    customer_write["email"] = email;
    customer_write["password"] = password;
    let reset_filters = [
        "id_eq",
        "customer_email_eq",
        "customer_email_cont",
        "reference_eq",
        "reference_in",
        "reference_null",
        "reset_password_token_eq",
        "reset_password_at_null",
        "created_at_gt",
        "created_at_lt",
        "updated_at_gteq",
        "metadata_jcont",
    ];
    let customer_filters = [
        "id_eq",
        "email_eq",
        "email_end",
        "reference_eq",
        "created_at_gt",
    ];
    let no_content = json!({ "description": "Deleted" });
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "pwreset",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Commerce Layer compatible customer password resets. See docs/api.md.",
        },
        "security": [{ "bearer": [] }],
        "paths": {
            "/api/customer_password_resets": {
                "get": {
                    "operationId": "listResets",
                    "parameters": list_parameters("customer_password_resets", &reset_filters, &["id", "reference", "reset_password_at", "created_at", "updated_at"]),
                    "responses": responses(&[("200", doc("ResetCollection"))], &[]),
                },
                "post": {
                    "operationId": "createReset",
                    "parameters": [include(), fields("customer_password_resets")],
                    "requestBody": request_body("customer_password_resets", reset_create, &["customer_email"], false),
                    "responses": responses(&[
                        ("201", with_links(doc("ResetDocument"), &["getReset", "updateReset", "deleteReset", "getResetCustomer", "listResetEvents"])),
                        ("202", json!({ "description": "Self-service request accepted (same answer for every address)",
                            "content": content(reference("Accepted")) })),
                    ], &["413", "415", "422"]),
                },
            },
            "/api/customer_password_resets/{id}": {
                "parameters": [path_id()],
                "get": {
                    "operationId": "getReset",
                    "parameters": [include(), fields("customer_password_resets"), fields("customers")],
                    "responses": responses(&[("200", doc("ResetDocument"))], &["404"]),
                },
                "patch": {
                    "operationId": "updateReset",
                    "parameters": [include(), fields("customer_password_resets")],
                    "requestBody": request_body("customer_password_resets", reset_update, &[], true),
                    "responses": responses(&[("200", doc("ResetDocument"))], &["404", "413", "415", "422"]),
                },
                "delete": {
                    "operationId": "deleteReset",
                    "responses": responses(&[("204", no_content.clone())], &["404"]),
                },
            },
            "/api/customer_password_resets/{id}/customer": {
                "parameters": [path_id()],
                "get": {
                    "operationId": "getResetCustomer",
                    "parameters": [fields("customers")],
                    "responses": responses(&[("200", doc("CustomerDocument"))], &["404"]),
                },
            },
            "/api/customer_password_resets/{id}/events": {
                "parameters": [path_id()],
                "get": {
                    "operationId": "listResetEvents",
                    "parameters": [page_number(), page_size(), fields("events")],
                    "responses": responses(&[("200", doc("EventCollection"))], &["404"]),
                },
            },
            "/api/customers": {
                "get": {
                    "operationId": "listCustomers",
                    "parameters": list_parameters("customers", &customer_filters, &["id", "email", "reference", "created_at", "updated_at"]),
                    "responses": responses(&[("200", doc("CustomerCollection"))], &[]),
                },
                "post": {
                    "operationId": "createCustomer",
                    "parameters": [fields("customers")],
                    "requestBody": request_body("customers", customer_write.clone(), &["email"], false),
                    "responses": responses(&[("201", with_links(doc("CustomerDocument"), &["getCustomer", "updateCustomer", "deleteCustomer"]))], &["413", "415", "422"]),
                },
            },
            "/api/customers/{id}": {
                "parameters": [path_id()],
                "get": {
                    "operationId": "getCustomer",
                    "parameters": [fields("customers")],
                    "responses": responses(&[("200", doc("CustomerDocument"))], &["404"]),
                },
                "patch": {
                    "operationId": "updateCustomer",
                    "parameters": [fields("customers")],
                    "requestBody": request_body("customers", customer_write, &[], true),
                    "responses": responses(&[("200", doc("CustomerDocument"))], &["404", "413", "415", "422"]),
                },
                "delete": {
                    "operationId": "deleteCustomer",
                    "responses": responses(&[("204", no_content)], &["404"]),
                },
            },
            "/health": {
                "get": {
                    "operationId": "health", "security": [],
                    "responses": { "200": { "description": "Up", "content": { "application/json": { "schema": {
                        "type": "object", "properties": { "status": { "const": "ok" } } } } } } },
                },
            },
            "/ready": {
                "get": {
                    "operationId": "ready", "security": [],
                    "responses": {
                        "200": { "description": "Database reachable", "content": { "application/json": { "schema": { "type": "object" } } } },
                        "503": { "description": "Database unreachable", "content": { "application/json": { "schema": { "type": "object" } } } },
                    },
                },
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi", "security": [],
                    "responses": { "200": { "description": "This document", "content": { "application/json": { "schema": { "type": "object" } } } } },
                },
            },
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "Reset": resource("customer_password_resets", reset_attrs),
                "Customer": resource("customers", customer_attrs),
                "Event": resource("events", event_attrs),
                "ResetDocument": single("Reset"),
                "CustomerDocument": single("Customer"),
                "ResetCollection": collection("Reset"),
                "CustomerCollection": collection("Customer"),
                "EventCollection": collection("Event"),
                "Accepted": { "type": "object", "required": ["meta"], "properties": { "meta": { "type": "object" } } },
                "Errors": {
                    "type": "object",
                    "required": ["errors"],
                    "properties": { "errors": { "type": "array", "minItems": 1, "items": {
                        "type": "object",
                        "required": ["title", "detail", "code", "status"],
                        "properties": {
                            "title": { "type": "string" },
                            "detail": { "type": "string" },
                            "code": { "type": "string" },
                            "status": { "type": "string", "pattern": "^[45][0-9][0-9]$" },
                            "source": { "type": "object" },
                        },
                    } } },
                },
            },
        },
    });
    oauth(&mut doc);
    doc
}

/// `/oauth/token`, `/oauth/revoke` and `/.well-known/jwks.json`: JSON (or form) bodies,
/// Commerce Layer's OAuth error shape with a numeric `status`.
fn oauth(doc: &mut Value) {
    let string = json!({ "type": "string" });
    let errors = json!({
        "type": "object",
        "required": ["errors"],
        "properties": { "errors": { "type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["title", "detail", "code", "status"],
            "properties": {
                "title": string, "detail": string, "code": string,
                "status": { "type": "integer", "minimum": 400, "maximum": 599 },
            },
        } } },
    });
    let error = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": errors } } });
    let body = |properties: Value, required: &[&str]| {
        // Parameters are strings (RFC 6749 form parameters; in JSON a null counts as
        // absent), unknown ones included: they are ignored, but must be strings too.
        let schema = json!({ "type": "object", "properties": properties, "required": required,
            "additionalProperties": { "type": ["string", "null"] } });
        json!({ "required": true, "content": {
            "application/json": { "schema": schema },
            "application/x-www-form-urlencoded": { "schema": schema },
        } })
    };
    let token_body = body(
        json!({
            "grant_type": { "enum": ["client_credentials", "password", "refresh_token"] },
            "client_id": string, "client_secret": string, "scope": string,
            "username": string, "password": string, "refresh_token": string,
        }),
        &["grant_type"],
    );
    let grant = json!({
        "type": "object",
        "required": ["access_token", "token_type", "expires_in", "scope", "created_at"],
        "properties": {
            "access_token": string,
            "token_type": { "const": "bearer" },
            "expires_in": { "type": "integer" },
            "scope": string,
            "created_at": { "type": "integer" },
            "refresh_token": string,
            "owner_id": string,
            "owner_type": { "const": "customer" },
        },
    });
    let mut throttled = error("Too many token requests, or sign-in attempts for the address");
    throttled["headers"] =
        json!({ "Retry-After": { "required": true, "schema": { "type": "string" } } });
    let mut unavailable = error("temporarily_unavailable: the database could not answer in time");
    unavailable["headers"] = json!({ "Retry-After": { "required": true, "schema": { "type": "string", "const": "1" } } });
    // No 500 is documented: bad input of any kind is a 4xx, and the fuzzer must not accept
    // a 500 as an answer. Only the token endpoint counts requests, so only it may say 429.
    let failures = |extra: &[(&str, Value)], limited: bool| {
        let mut out = Map::new();
        out.insert(
            "400".into(),
            error("invalid_request, invalid_grant or unsupported_grant_type"),
        );
        out.insert("401".into(), error("invalid_client"));
        out.insert("403".into(), error("unauthorized_client"));
        if limited {
            out.insert("429".into(), throttled.clone());
        }
        out.insert("503".into(), unavailable.clone());
        for (k, v) in extra {
            out.insert((*k).to_owned(), v.clone());
        }
        Value::Object(out)
    };
    let ok = |description: &str, schema: Value| json!({ "description": description, "content": { "application/json": { "schema": schema } } });
    let jwk = json!({
        "type": "object",
        "required": ["kty", "kid", "use", "alg", "n", "e"],
        "properties": {
            "kty": { "const": "RSA" }, "kid": string, "use": { "const": "sig" },
            "alg": { "const": "RS512" }, "n": string, "e": string,
        },
    });
    let paths = &mut doc["paths"];
    paths["/oauth/token"] = json!({ "post": {
        "operationId": "createToken", "security": [{ "basic": [] }, {}],
        "requestBody": token_body,
        "responses": failures(&[("200", ok("Access token", grant))], true),
    } });
    paths["/oauth/revoke"] = json!({ "post": {
        "operationId": "revokeToken", "security": [{ "basic": [] }, {}],
        "requestBody": body(json!({ "client_id": string, "client_secret": string, "token": { "type": "string", "minLength": 1 } }), &["token"]),
        "responses": failures(&[("200", ok("Revoked, or not a known token (RFC 7009)", json!({ "type": "object", "maxProperties": 0 })))], false),
    } });
    paths["/.well-known/jwks.json"] = json!({ "get": {
        "operationId": "jwks", "security": [],
        "responses": { "200": ok("The public signing keys", json!({
            "type": "object", "required": ["keys"],
            "properties": { "keys": { "type": "array", "items": jwk } } })) },
    } });
    doc["components"]["securitySchemes"]["basic"] = json!({ "type": "http", "scheme": "basic" });
}
