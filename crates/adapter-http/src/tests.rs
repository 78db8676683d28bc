//! In-process tests of every route through `actix_web::test`, with the domain's mockall
//! mocks behind the services, and insta snapshots of representative documents so the wire
//! format cannot drift silently.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use chrono::Utc;
use pwreset_domain::ports::*;
use pwreset_domain::testing::{self, CUSTOMER_ID, MockPorts, RESET_ID, TOKEN};
use pwreset_domain::*;
use serde_json::{Value, json};

use crate::{ApiState, AppKind, JwtKey, Readiness, Renderer, configure};

/// The shared customer, with a capitalised address and a password.
fn customer() -> Customer {
    let mut c = testing::customer();
    c.email = EmailAddress::parse("Jane@example.com").unwrap();
    c.password_hash = Some(PasswordHash::new("$argon2id$x"));
    c
}

/// The shared reset, with merchant attributes to render.
fn reset() -> PasswordReset {
    let mut r = testing::reset();
    r.customer_email = EmailAddress::parse("Jane@example.com").unwrap();
    r.reference = Some(Reference::parse("crm-1").unwrap());
    r.metadata = Some(Metadata::parse(json!({"source": "checkout"})).unwrap());
    r
}

struct Ready(bool);

#[async_trait::async_trait]
impl Readiness for Ready {
    async fn check(&self) -> anyhow::Result<()> {
        if self.0 {
            Ok(())
        } else {
            Err(anyhow::anyhow!("database down"))
        }
    }
}

struct Mocks {
    ports: MockPorts,
    ready: bool,
}

impl std::ops::Deref for Mocks {
    type Target = MockPorts;
    fn deref(&self) -> &MockPorts {
        &self.ports
    }
}

impl std::ops::DerefMut for Mocks {
    fn deref_mut(&mut self) -> &mut MockPorts {
        &mut self.ports
    }
}

impl Mocks {
    fn new() -> Self {
        Self {
            ports: MockPorts::new(),
            ready: true,
        }
    }

    fn state(self) -> web::Data<ApiState> {
        let ports = self.ports.into_ports();
        web::Data::new(ApiState {
            resets: ResetService::new(
                ports.clone(),
                TokenPolicy::default(),
                PasswordPolicy::default(),
            ),
            self_service: None,
            customers: CustomerService::new(ports, PasswordPolicy::default()),
            jwt: key(),
            renderer: Renderer {
                base: "https://pwreset.test".into(),
            },
            reveal_tokens: true,
            body_limit: 1024,
            trusted_proxies: vec![],
            readiness: Arc::new(Ready(self.ready)),
        })
    }
}

fn key() -> JwtKey {
    JwtKey::new(vec![5; 32]).unwrap()
}

fn bearer(kind: AppKind) -> (&'static str, String) {
    let t = key().sign(kind, Mode::Test, "acme", Utc::now().timestamp(), 600);
    ("Authorization", format!("Bearer {t}"))
}

struct Reply {
    status: StatusCode,
    headers: actix_web::http::header::HeaderMap,
    body: Value,
}

async fn call(state: web::Data<ApiState>, req: test::TestRequest) -> Reply {
    let app = test::init_service(App::new().configure(configure(state))).await;
    let res = test::call_service(&app, req.to_request()).await;
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = test::read_body(res).await;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn jsonapi(req: test::TestRequest, kind: AppKind) -> test::TestRequest {
    req.insert_header(bearer(kind))
        .insert_header(("Content-Type", crate::JSONAPI))
        .insert_header(("Accept", crate::JSONAPI))
}

fn post(path: &str, body: &Value) -> test::TestRequest {
    jsonapi(test::TestRequest::post().uri(path), AppKind::Integration).set_payload(body.to_string())
}

fn patch(path: &str, body: &Value, kind: AppKind) -> test::TestRequest {
    jsonapi(test::TestRequest::patch().uri(path), kind).set_payload(body.to_string())
}

fn get(path: &str, kind: AppKind) -> test::TestRequest {
    jsonapi(test::TestRequest::get().uri(path), kind)
}

/// Replaces generated ids so snapshots are stable.
fn stable(mut v: Value, ids: &[(&str, &str)]) -> Value {
    let mut text = v.to_string();
    for (from, to) in ids {
        text = text.replace(from, to);
    }
    v = serde_json::from_str(&text).unwrap();
    v
}

#[actix_web::test]
async fn create_returns_the_token_once_in_a_json_api_document() {
    let mut m = Mocks::new();
    m.resets
        .expect_create_for_email()
        .times(1)
        .returning(|r| Ok(Some(r.for_customer(customer().id, customer().email).0)));
    let body = json!({"data": {"type": "customer_password_resets", "attributes": {"customer_email": "JANE@example.com", "reference": "crm-1"}, "relationships": {}}});
    let reply = call(m.state(), post("/api/customer_password_resets", &body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.headers.get("cache-control").unwrap(), "no-store");
    assert_eq!(reply.headers.get("referrer-policy").unwrap(), "no-referrer");
    assert_eq!(reply.headers.get("content-type").unwrap(), crate::JSONAPI);
    let id = reply.body["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        reply.headers.get("location").unwrap().to_str().unwrap(),
        format!("https://pwreset.test/api/customer_password_resets/{id}")
    );
    insta::assert_json_snapshot!("create_reset", stable(reply.body, &[(&id, "<reset-id>")]));
}

#[actix_web::test]
async fn retrieve_with_include_and_sparse_fields() {
    let mut m = Mocks::new();
    m.resets.expect_find().returning(|_, _| Ok(Some(reset())));
    m.customers
        .expect_find()
        .returning(|_, _| Ok(Some(customer())));
    let reply = call(
        m.state(),
        get(
            &format!("/api/customer_password_resets/{RESET_ID}?include=customer&fields%5Bcustomers%5D=email"),
            AppKind::Integration,
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    insta::assert_json_snapshot!("retrieve_reset_with_customer", reply.body);
}

#[actix_web::test]
async fn list_reports_counts_and_page_links() {
    let mut m = Mocks::new();
    m.resets.expect_list().returning(|_, q| {
        Ok(Page {
            items: vec![reset()],
            record_count: 7,
            request: q.page,
        })
    });
    let reply = call(
        m.state(),
        get(
            "/api/customer_password_resets?filter[q][reference_eq]=crm-1&page[number]=2&page[size]=3&fields[customer_password_resets]=reference",
            AppKind::Integration,
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    insta::assert_json_snapshot!("list_resets_page_2", reply.body);
}

#[actix_web::test]
async fn completing_with_a_bad_token_gives_the_uniform_error() {
    let mut m = Mocks::new();
    m.resets.expect_find().returning(|_, _| Ok(Some(reset())));
    m.resets
        .expect_record_failure()
        .returning(|_, _, _, _| Ok(()));
    let state = m.state();
    let mut bodies = Vec::new();
    for token in [
        json!("B".repeat(42) + "A"),
        json!("short"),
        json!(7),
        json!(null),
    ] {
        let body = json!({"data": {"type": "customer_password_resets", "id": RESET_ID, "attributes": {"customer_password": "a long new password", "_reset_password_token": token}}});
        let reply = call(
            state.clone(),
            patch(
                &format!("/api/customer_password_resets/{RESET_ID}"),
                &body,
                AppKind::SalesChannel,
            ),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
        bodies.push(reply.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    insta::assert_json_snapshot!("invalid_reset_token", bodies[0]);
}

#[actix_web::test]
async fn completing_with_the_right_token_sets_the_password() {
    let mut m = Mocks::new();
    m.resets.expect_find().returning(|_, _| Ok(Some(reset())));
    m.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$new")));
    m.resets.expect_complete().times(1).returning(|c| {
        let mut r = reset();
        r.reset_password_at = Some(c.now);
        r.updated_at = c.now;
        Ok(CompletionOutcome::Completed(Box::new(r)))
    });
    let body = json!({"data": {"type": "customer_password_resets", "id": RESET_ID, "attributes": {"customer_password": "a long new password", "_reset_password_token": TOKEN}}});
    let reply = call(
        m.state(),
        patch(
            &format!("/api/customer_password_resets/{RESET_ID}"),
            &body,
            AppKind::SalesChannel,
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["data"]["attributes"]["reset_password_at"],
        "2026-01-01T12:00:00.000Z"
    );
    assert_eq!(
        reply.body["data"]["attributes"]["reset_password_token"],
        Value::Null
    );
}

#[actix_web::test]
async fn protocol_errors_have_json_api_bodies() {
    let bad_json = jsonapi(
        test::TestRequest::post().uri("/api/customer_password_resets"),
        AppKind::Integration,
    )
    .set_payload("{\"data\":");
    let too_big = jsonapi(
        test::TestRequest::post().uri("/api/customer_password_resets"),
        AppKind::Integration,
    )
    .set_payload("x".repeat(2048));
    let cases: Vec<(&str, test::TestRequest)> = vec![
        (
            "no credentials",
            test::TestRequest::get().uri("/api/customer_password_resets"),
        ),
        (
            "sales channel listing",
            get("/api/customer_password_resets", AppKind::SalesChannel),
        ),
        (
            "html accept",
            get("/api/customer_password_resets", AppKind::Integration)
                .insert_header(("Accept", "text/html")),
        ),
        (
            "json content type",
            post("/api/customers", &json!({})).insert_header(("Content-Type", "application/json")),
        ),
        ("malformed json", bad_json),
        ("too big", too_big),
        (
            "unknown parameter",
            get(
                "/api/customer_password_resets?colour=red",
                AppKind::Integration,
            ),
        ),
        (
            "unknown filter",
            get(
                "/api/customer_password_resets?filter[q][secret_eq]=x",
                AppKind::Integration,
            ),
        ),
        (
            "unknown id",
            get("/api/customer_password_resets/42", AppKind::Integration),
        ),
        (
            "id mismatch",
            patch(
                &format!("/api/customer_password_resets/{RESET_ID}"),
                &json!({"data": {"type": "customer_password_resets", "id": CUSTOMER_ID}}),
                AppKind::Integration,
            ),
        ),
        (
            "array email",
            post(
                "/api/customer_password_resets",
                &json!({"data": {"type": "customer_password_resets", "attributes": {"customer_email": ["a@example.com"]}}}),
            ),
        ),
        ("unknown route", get("/api/orders", AppKind::Integration)),
    ];
    let mut seen = serde_json::Map::new();
    for (name, req) in cases {
        let reply = call(Mocks::new().state(), req).await;
        assert!(reply.status.is_client_error(), "{name}: {}", reply.status);
        assert_eq!(
            reply.headers.get("content-type").unwrap(),
            crate::JSONAPI,
            "{name}"
        );
        assert_eq!(
            reply.body["errors"][0]["status"],
            reply.status.as_u16().to_string(),
            "{name}"
        );
        seen.insert(name.to_owned(), reply.body);
    }
    insta::assert_json_snapshot!("protocol_errors", Value::Object(seen));
}

#[actix_web::test]
async fn storage_failures_are_generic_500s() {
    let mut m = Mocks::new();
    m.resets
        .expect_find()
        .returning(|_, _| Err(StoreError::unexpected("password=hunter2 host=db")));
    let reply = call(
        m.state(),
        get(
            &format!("/api/customer_password_resets/{RESET_ID}"),
            AppKind::Integration,
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!reply.body.to_string().contains("hunter2"));
    assert_eq!(reply.body["errors"][0]["code"], "INTERNAL_SERVER_ERROR");
}

#[actix_web::test]
async fn customers_routes_create_read_update_and_delete() {
    let mut m = Mocks::new();
    m.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$h")));
    m.customers.expect_create().returning(|_| Ok(()));
    m.customers
        .expect_find()
        .returning(|_, _| Ok(Some(customer())));
    m.customers.expect_update().returning(|_, _| Ok(true));
    m.customers.expect_delete().returning(|_, _| Ok(true));
    let state = m.state();
    let created = call(
        state.clone(),
        post(
            "/api/customers",
            &json!({"data": {"type": "customers", "attributes": {"email": "john@example.com", "password": "a long password"}}}),
        ),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["data"]["attributes"]["has_password"], true);
    assert!(created.body["data"]["attributes"].get("password").is_none());
    let path = format!("/api/customers/{CUSTOMER_ID}");
    assert_eq!(
        call(state.clone(), get(&path, AppKind::Integration))
            .await
            .status,
        StatusCode::OK
    );
    let updated = call(
        state.clone(),
        patch(
            &path,
            &json!({"data": {"type": "customers", "id": CUSTOMER_ID, "attributes": {"reference": "crm-9"}}}),
            AppKind::Integration,
        ),
    )
    .await;
    assert_eq!(updated.body["data"]["attributes"]["reference"], "crm-9");
    let deleted = call(
        state,
        jsonapi(test::TestRequest::delete().uri(&path), AppKind::Integration),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
}

#[actix_web::test]
async fn health_is_always_up_and_ready_follows_the_database() {
    let up = call(
        Mocks::new().state(),
        test::TestRequest::get().uri("/health"),
    )
    .await;
    assert_eq!(up.status, StatusCode::OK);
    let ready = call(Mocks::new().state(), test::TestRequest::get().uri("/ready")).await;
    assert_eq!(ready.status, StatusCode::OK);
    let mut down = Mocks::new();
    down.ready = false;
    let not_ready = call(down.state(), test::TestRequest::get().uri("/ready")).await;
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(not_ready.body["status"], "unavailable");
}

#[actix_web::test]
async fn the_openapi_document_matches_the_routes() {
    let doc = crate::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 9);
    for (path, item) in paths {
        let concrete = path.replace("{id}", RESET_ID);
        let allowed: Vec<String> = ["get", "post", "patch", "delete"]
            .into_iter()
            .filter(|m| item.get(*m).is_some())
            .map(str::to_uppercase)
            .collect();
        for method in ["get", "post", "patch", "delete", "put", "trace"] {
            let documented = item.get(method).is_some();
            // A method the path does not take is a 405 whatever the body says it is.
            let media = if documented {
                crate::JSONAPI
            } else {
                "text/plain"
            };
            let req = test::TestRequest::default()
                .method(method.to_uppercase().parse().unwrap())
                .uri(&concrete)
                .insert_header(("Content-Type", media))
                .insert_header(("Accept", crate::JSONAPI))
                .set_payload("x");
            // Unauthenticated: a real route answers 401 (or 200 for the open ones), never
            // "no such route" or "method not allowed".
            let reply = call(Mocks::new().state(), req).await;
            if documented {
                assert!(
                    reply.status != StatusCode::METHOD_NOT_ALLOWED
                        && reply.body["errors"][0]["code"] != "NOT_FOUND",
                    "{method} {path} is documented but not routed: {}",
                    reply.status
                );
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is routed but not documented"
                );
                // RFC 9110: a 405 names the methods the path does take.
                assert_eq!(
                    reply.headers.get("allow").map(|v| v.to_str().unwrap()),
                    Some(allowed.join(", ").as_str()),
                    "{method} {path}"
                );
            }
        }
    }
    let served = call(
        Mocks::new().state(),
        test::TestRequest::get().uri("/openapi.json"),
    )
    .await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, doc);
}

#[::core::prelude::v1::test]
fn no_operation_documents_an_internal_error_and_every_429_names_its_headers() {
    // A documented 500 would let the fuzz run accept one; bad input must be a 4xx instead.
    let doc = crate::openapi::document();
    let mut limited = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(responses) = operation.get("responses").and_then(|r| r.as_object()) else {
                continue;
            };
            for (status, response) in responses {
                let allowed_5xx = path == "/ready" && status == "503";
                assert!(
                    !status.starts_with('5') || allowed_5xx,
                    "{method} {path} documents {status}"
                );
                if status == "429" {
                    limited += 1;
                    for name in [
                        "Retry-After",
                        "X-Ratelimit-Limit",
                        "X-Ratelimit-Interval",
                        "X-Ratelimit-Remaining",
                    ] {
                        assert_eq!(
                            response["headers"][name]["required"], true,
                            "{method} {path} 429 {name}"
                        );
                    }
                }
            }
        }
    }
    assert_eq!(limited, 12, "every /api operation may answer 429");
}

#[actix_web::test]
async fn refusals_at_the_media_type_edge_carry_no_store_and_no_referrer_too() {
    // Security item 22 covers every /api answer, the middleware's own refusals included.
    let wrong_accept = get("/api/customer_password_resets", AppKind::Integration)
        .insert_header(("Accept", "text/html"));
    let wrong_type = post(
        "/api/customer_password_resets",
        &json!({"data": {"type": "customer_password_resets", "attributes": {"customer_email": "jane@example.com"}}}),
    )
    .insert_header(("Content-Type", "application/json"));
    for (req, status) in [
        (wrong_accept, StatusCode::NOT_ACCEPTABLE),
        (wrong_type, StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ] {
        let reply = call(Mocks::new().state(), req).await;
        assert_eq!(reply.status, status, "{}", reply.body);
        assert_eq!(
            reply.headers.get("cache-control").unwrap(),
            "no-store",
            "{status}"
        );
        assert_eq!(
            reply.headers.get("referrer-policy").unwrap(),
            "no-referrer",
            "{status}"
        );
    }
}
