//! In-process tests of every route through `actix_web::test`, with the domain's mockall
//! mocks behind the services, and insta snapshots of representative documents so the wire
//! format cannot drift silently.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use pwreset_domain::ports::*;
use pwreset_domain::service::{RateLimiter, SessionService, SessionSettings};
use pwreset_domain::testing::{self, CUSTOMER_ID, MockPorts, RESET_ID, TOKEN};
use pwreset_domain::*;
use serde_json::{Value, json};

use crate::{ApiState, AppKind, Readiness, Renderer, configure};

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
    clients: MockClientStore,
    sessions: MockSessionStore,
    tokens: MockAccessTokens,
    limits: Option<MockRateLimitStore>,
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
            clients: MockClientStore::new(),
            sessions: MockSessionStore::new(),
            tokens: mock_tokens(),
            limits: None,
        }
    }

    fn state(self) -> web::Data<ApiState> {
        let ports = self.ports.into_ports();
        let sessions = session_service(
            ports.clone(),
            self.clients,
            self.sessions,
            self.tokens,
            self.limits,
        );
        web::Data::new(ApiState {
            resets: ResetService::new(
                ports.clone(),
                TokenPolicy::default(),
                PasswordPolicy::default(),
            ),
            self_service: None,
            customers: CustomerService::new(ports, PasswordPolicy::default()),
            sessions,
            jwks: json!({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS512", "use": "sig", "n": "AQAB", "e": "AQAB"}]}),
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

/// The key of the API client in the session tests.
pub(crate) const CLIENT_KEY: &str = "01a0c6a3-8a00-7000-8000-0000000000c1";
/// The session of every customer token in these tests.
pub(crate) const SESSION_ID: &str = "01a0c6a3-8a00-7000-8000-0000000000d1";

/// An access token verifier standing in for the RS512 one: `op-integration` and
/// `op-sales_channel` are operator tokens, `customer-<id>` a customer's token of session
/// [`SESSION_ID`]; anything else is not a token.
pub(crate) fn mock_tokens() -> MockAccessTokens {
    let mut t = MockAccessTokens::new();
    t.expect_verify().returning(|token, _| {
        let expires_at = testing::t0().timestamp() + 3600;
        let operator = |kind| AccessClaims {
            client: None,
            kind,
            mode: Mode::Test,
            customer: None,
            session: None,
            issued_at: 0,
            expires_at,
        };
        match token {
            "op-integration" => Some(operator(ClientKind::Integration)),
            "op-sales_channel" => Some(operator(ClientKind::SalesChannel)),
            t => Some(AccessClaims {
                client: Some((
                    CLIENT_KEY.parse().unwrap(),
                    ClientId::parse("client-1").unwrap(),
                )),
                customer: Some(t.strip_prefix("customer-")?.parse().ok()?),
                session: Some(SESSION_ID.parse().unwrap()),
                ..operator(ClientKind::SalesChannel)
            }),
        }
    });
    t
}

/// The session service over mocks (limits off unless a limit store is given).
pub(crate) fn session_service(
    ports: pwreset_domain::service::Ports,
    clients: MockClientStore,
    sessions: MockSessionStore,
    tokens: MockAccessTokens,
    limits: Option<MockRateLimitStore>,
) -> SessionService {
    let limiter = match limits {
        Some(store) => RateLimiter::new(
            Arc::new(store),
            RateLimits::default(),
            ports.digester.clone(),
        ),
        None => RateLimiter::off(ports.digester.clone()),
    };
    SessionService::new(
        ports,
        Arc::new(clients),
        Arc::new(sessions),
        Arc::new(tokens),
        limiter,
        SessionSettings::default(),
    )
}

fn bearer(kind: AppKind) -> (&'static str, String) {
    ("Authorization", format!("Bearer op-{}", kind.as_str()))
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
    assert_eq!(paths.len(), 12);
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
                // 503 (the database did not answer in time) is the only 5xx, and outside
                // `/ready` it names its Retry-After.
                assert!(
                    !status.starts_with('5') || status == "503",
                    "{method} {path} documents {status}"
                );
                if status == "503" && path != "/ready" {
                    assert_eq!(
                        response["headers"]["Retry-After"]["required"], true,
                        "{method} {path} 503 Retry-After"
                    );
                }
                if status == "429" && path == "/oauth/token" {
                    // Commerce Layer's OAuth errors carry only Retry-After.
                    assert_eq!(
                        response["headers"]["Retry-After"]["required"], true,
                        "{method} {path} 429 Retry-After"
                    );
                } else if status == "429" {
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

// ---- OAuth: /oauth/token, /oauth/revoke, the JWKS and customer tokens ----

/// The client secret of the test clients (stored as `digest_of` it).
const SECRET: &str = testing::OTHER_TOKEN;

fn client(kind: ClientKind) -> Client {
    Client {
        key: CLIENT_KEY.parse().unwrap(),
        client_id: ClientId::parse("client-1").unwrap(),
        kind,
        mode: Mode::Test,
        name: ClientName::parse("Shop").unwrap(),
        secret_digest: Some(testing::digest_of(SECRET)),
        created_at: testing::t0(),
        revoked_at: None,
    }
}

impl Mocks {
    /// The store knows `client-1` as a client of `kind`; grants open sessions and sign.
    fn with_client(mut self, kind: ClientKind) -> Self {
        self.clients
            .expect_find()
            .returning(move |id| Ok((id.as_str() == "client-1").then(|| client(kind))));
        self.sessions.expect_open().returning(|_| Ok(()));
        self.tokens
            .expect_sign()
            .returning(|c| Ok(format!("signed-for-{}", c.kind.as_str())));
        self
    }
}

fn token_request(body: &Value) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/oauth/token")
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body.to_string())
}

fn form(path: &str, body: &str) -> test::TestRequest {
    test::TestRequest::post()
        .uri(path)
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload(body.to_owned())
}

fn assert_oauth_error(reply: &Reply, status: u16, title: &str, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.body);
    let e = &reply.body["errors"][0];
    assert_eq!(
        (e["title"].as_str(), e["code"].as_str()),
        (Some(title), Some(code)),
        "{}",
        reply.body
    );
    assert_eq!(
        e["status"],
        json!(status),
        "a number, as Commerce Layer sends it"
    );
    assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(reply.headers.get("cache-control").unwrap(), "no-store");
}

#[actix_web::test]
async fn client_credentials_answer_exactly_commerce_layers_body() {
    let m = Mocks::new().with_client(ClientKind::Integration);
    let body = json!({"grant_type": "client_credentials", "client_id": "client-1", "client_secret": SECRET});
    let reply = call(m.state(), token_request(&body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers.get("cache-control").unwrap(), "no-store");
    assert_eq!(
        reply.body,
        json!({
            "access_token": "signed-for-integration",
            "token_type": "bearer",
            "expires_in": 7200,
            "scope": "market:all",
            "created_at": testing::t0().timestamp(),
        })
    );
}

#[actix_web::test]
async fn forms_and_http_basic_authenticate_clients_too() {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("client-1:{SECRET}"));
    let m = Mocks::new().with_client(ClientKind::Integration);
    let req = form("/oauth/token", "grant_type=client_credentials")
        .insert_header(("Authorization", format!("Basic {basic}")));
    let reply = call(m.state(), req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let m = Mocks::new().with_client(ClientKind::Integration);
    let req = form(
        "/oauth/token",
        &format!("grant_type=client_credentials&client_id=client-1&client_secret={SECRET}"),
    );
    assert_eq!(call(m.state(), req).await.status, StatusCode::OK);
    // A bearer token beside body credentials is not a second client authentication.
    let m = Mocks::new().with_client(ClientKind::Integration);
    let req = form(
        "/oauth/token",
        &format!("grant_type=client_credentials&client_id=client-1&client_secret={SECRET}"),
    )
    .insert_header(("Authorization", "Bearer op-integration"));
    let reply = call(m.state(), req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[actix_web::test]
async fn bad_client_authentication_is_invalid_client_with_the_rfc_detail() {
    let wrong = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "client-1:nope");
    for (i, req) in [
        token_request(
            &json!({"grant_type": "client_credentials", "client_id": "client-1", "client_secret": TOKEN}),
        ),
        token_request(&json!({"grant_type": "client_credentials", "client_id": "unknown"})),
        token_request(&json!({"grant_type": "client_credentials", "client_id": "client-1"})),
        token_request(&json!({"grant_type": "client_credentials"})),
        token_request(&json!({"grant_type": "client_credentials"}))
            .insert_header(("Authorization", format!("Basic {wrong}"))),
        token_request(&json!({"grant_type": "client_credentials"}))
            .insert_header(("Authorization", "Basic %%%")),
    ]
    .into_iter()
    .enumerate()
    {
        // The last two use HTTP Basic.
        let basic = i >= 4;
        let reply = call(
            Mocks::new().with_client(ClientKind::Integration).state(),
            req,
        )
        .await;
        assert_oauth_error(&reply, 401, "invalid_client", "UNAUTHORIZED");
        assert_eq!(
            reply.headers.contains_key("www-authenticate"),
            basic,
            "a challenge for HTTP Basic only"
        );
        assert_eq!(
            reply.body["errors"][0]["detail"],
            "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method."
        );
    }
}

#[actix_web::test]
async fn malformed_token_requests_are_invalid_request_or_unsupported_grant_type() {
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("client-1:{SECRET}"),
    );
    let cases = [
        (
            token_request(&json!({"client_id": "client-1"})),
            "invalid_request",
        ),
        (
            token_request(&json!({"grant_type": "implicit", "client_id": "client-1"})),
            "unsupported_grant_type",
        ),
        (
            token_request(&json!({"grant_type": 7, "client_id": "client-1"})),
            "invalid_request",
        ),
        (token_request(&json!(["grant_type"])), "invalid_request"),
        (
            token_request(
                &json!({"grant_type": "password", "client_id": "client-1", "username": "jane@example.com"}),
            ),
            "invalid_request",
        ),
        (
            token_request(&json!({"grant_type": "refresh_token", "client_id": "client-1"})),
            "invalid_request",
        ),
        (
            token_request(&json!({"grant_type": "client_credentials", "client_id": "client-1"}))
                .insert_header(("Authorization", format!("Basic {basic}"))),
            "invalid_request",
        ),
        (
            form(
                "/oauth/token",
                "grant_type=client_credentials&grant_type=password",
            ),
            "invalid_request",
        ),
        (
            token_request(&json!({})).insert_header(("Content-Type", "text/plain")),
            "invalid_request",
        ),
        (
            token_request(&json!({})).set_payload("x".repeat(2048)),
            "invalid_request",
        ),
    ];
    for (req, title) in cases {
        let reply = call(
            Mocks::new().with_client(ClientKind::SalesChannel).state(),
            req,
        )
        .await;
        let title_code = if title == "invalid_request" {
            "invalid_request"
        } else {
            "unsupported_grant_type"
        };
        assert_oauth_error(&reply, 400, title_code, "BAD_REQUEST");
    }
}

/// A sales channel signing `jane@example.com` in: `known` says whether the address has a
/// customer, `right` whether the password verifies.
fn signin_mocks(known: bool, right: bool) -> Mocks {
    let mut m = Mocks::new().with_client(ClientKind::SalesChannel);
    m.customers.expect_find_by_email().returning(move |_, _| {
        Ok(known.then(|| {
            let mut c = customer();
            c.password_version = 3;
            c
        }))
    });
    m.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$decoy")));
    m.hasher.expect_verify().returning(move |_, _| Ok(right));
    m.hasher.expect_needs_rehash().returning(|_| false);
    m
}

fn password_grant(username: &str, password: &str) -> test::TestRequest {
    token_request(&json!({
        "grant_type": "password", "client_id": "client-1",
        "username": username, "password": password,
    }))
}

#[actix_web::test]
async fn the_password_grant_signs_a_customer_in_with_a_refresh_token() {
    let mut m = signin_mocks(true, true);
    m.sessions.checkpoint();
    m.sessions
        .expect_open()
        .withf(|n| {
            n.session.customer == Some(CUSTOMER_ID.parse().unwrap())
                && n.session.password_version == 3
                && n.refresh.is_some()
        })
        .times(1)
        .returning(|_| Ok(()));
    let reply = call(m.state(), password_grant("JANE@example.com", "right")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut keys: Vec<&String> = reply.body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "access_token",
            "created_at",
            "expires_in",
            "owner_id",
            "owner_type",
            "refresh_token",
            "scope",
            "token_type"
        ]
    );
    assert_eq!(reply.body["owner_id"], CUSTOMER_ID);
    assert_eq!(reply.body["owner_type"], "customer");
    assert_eq!(reply.body["refresh_token"], TOKEN);
}

#[actix_web::test]
async fn a_wrong_password_and_an_unknown_address_get_the_same_bytes() {
    let app_wrong =
        test::init_service(App::new().configure(configure(signin_mocks(true, false).state())))
            .await;
    let app_unknown =
        test::init_service(App::new().configure(configure(signin_mocks(false, false).state())))
            .await;
    let wrong = test::call_service(
        &app_wrong,
        password_grant("jane@example.com", "wrong").to_request(),
    )
    .await;
    let unknown = test::call_service(
        &app_unknown,
        password_grant("nobody@example.com", "wrong").to_request(),
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(wrong.status(), unknown.status());
    let (wrong, unknown) = (test::read_body(wrong).await, test::read_body(unknown).await);
    assert_eq!(wrong, unknown);
    let body: Value = serde_json::from_slice(&wrong).unwrap();
    assert_eq!(body["errors"][0]["title"], "invalid_grant");
}

#[actix_web::test]
async fn integrations_may_not_use_the_password_grant() {
    let m = Mocks::new().with_client(ClientKind::Integration);
    let req = token_request(&json!({
        "grant_type": "password", "client_id": "client-1", "client_secret": SECRET,
        "username": "jane@example.com", "password": "x",
    }));
    assert_oauth_error(
        &call(m.state(), req).await,
        403,
        "unauthorized_client",
        "FORBIDDEN",
    );
}

#[actix_web::test]
async fn throttled_token_requests_get_429_with_retry_after() {
    let mut m = Mocks::new().with_client(ClientKind::SalesChannel);
    let mut limits = MockRateLimitStore::new();
    limits
        .expect_hit()
        .returning(|b, _| Ok(vec![1_000; b.len()]));
    m.limits = Some(limits);
    let req = password_grant("jane@example.com", "x").peer_addr("127.0.0.9:5000".parse().unwrap());
    let reply = call(m.state(), req).await;
    assert_oauth_error(&reply, 429, "too_many_requests", "TOO_MANY_REQUESTS");
    let retry: u64 = reply
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[actix_web::test]
async fn refresh_tokens_rotate_and_a_used_one_is_invalid_grant() {
    let mut m = Mocks::new().with_client(ClientKind::SalesChannel);
    m.sessions
        .expect_rotate()
        .returning(|presented, _, _, now| {
            if presented == [testing::digest_of(SECRET)] {
                Ok(Rotation::Rotated(Session {
                    id: SESSION_ID.parse().unwrap(),
                    client: CLIENT_KEY.parse().unwrap(),
                    mode: Mode::Test,
                    customer: Some(CUSTOMER_ID.parse().unwrap()),
                    password_version: 0,
                    created_at: now,
                    expires_at: now,
                    revoked_at: None,
                }))
            } else {
                Ok(Rotation::Reused(SESSION_ID.parse().unwrap()))
            }
        });
    let state = m.state();
    let refresh = |t: &str| {
        token_request(
            &json!({"grant_type": "refresh_token", "client_id": "client-1", "refresh_token": t}),
        )
    };
    let ok = call(state.clone(), refresh(SECRET)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["refresh_token"], TOKEN, "a new refresh token");
    assert_eq!(ok.body["owner_id"], CUSTOMER_ID);
    let reused = call(state.clone(), refresh(TOKEN)).await;
    assert_oauth_error(&reused, 400, "invalid_grant", "BAD_REQUEST");
    let junk = call(state, refresh("not a token")).await;
    assert_oauth_error(&junk, 400, "invalid_grant", "BAD_REQUEST");
}

#[actix_web::test]
async fn revoking_an_unknown_token_is_a_200_and_a_known_one_ends_its_session() {
    let mut m = Mocks::new().with_client(ClientKind::SalesChannel);
    m.sessions.expect_find_by_refresh().returning(|presented| {
        Ok(
            (presented == [testing::digest_of(SECRET)]).then(|| Session {
                id: SESSION_ID.parse().unwrap(),
                client: CLIENT_KEY.parse().unwrap(),
                mode: Mode::Test,
                customer: None,
                password_version: 0,
                created_at: testing::t0(),
                expires_at: testing::t0(),
                revoked_at: None,
            }),
        )
    });
    m.sessions
        .expect_revoke()
        .withf(|id, _| *id == SESSION_ID.parse().unwrap())
        .times(1)
        .returning(|_, _| Ok(true));
    let state = m.state();
    for token in [TOKEN, "garbage", SECRET] {
        let req = form(
            "/oauth/revoke",
            &format!("client_id=client-1&token={token}"),
        );
        let reply = call(state.clone(), req).await;
        assert_eq!(reply.status, StatusCode::OK, "{token}: {}", reply.body);
        assert_eq!(reply.body, json!({}));
        assert_eq!(reply.headers.get("cache-control").unwrap(), "no-store");
    }
    let no_token = call(state.clone(), form("/oauth/revoke", "client_id=client-1")).await;
    assert_oauth_error(&no_token, 400, "invalid_request", "BAD_REQUEST");
    let no_client = call(state, form("/oauth/revoke", &format!("token={TOKEN}"))).await;
    assert_oauth_error(&no_client, 401, "invalid_client", "UNAUTHORIZED");
}

#[actix_web::test]
async fn oauth_paths_answer_other_methods_with_json_and_no_store() {
    let reply = call(
        Mocks::new().state(),
        test::TestRequest::get().uri("/oauth/token"),
    )
    .await;
    assert_oauth_error(&reply, 405, "method_not_allowed", "METHOD_NOT_ALLOWED");
    let reply = call(
        Mocks::new().state(),
        test::TestRequest::post().uri("/oauth/nope"),
    )
    .await;
    assert_oauth_error(&reply, 404, "not_found", "NOT_FOUND");
}

#[actix_web::test]
async fn the_jwks_is_served_as_configured() {
    let reply = call(
        Mocks::new().state(),
        test::TestRequest::get().uri("/.well-known/jwks.json"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["keys"][0]["kid"], "k1");
}

fn as_customer(req: test::TestRequest, id: &str) -> test::TestRequest {
    req.insert_header(("Authorization", format!("Bearer customer-{id}")))
        .insert_header(("Accept", crate::JSONAPI))
}

#[actix_web::test]
async fn a_customer_token_reads_its_own_customer_and_nothing_else() {
    let mut m = Mocks::new();
    m.sessions
        .expect_status()
        .returning(|_, _| Ok(SessionStatus::Live));
    m.customers
        .expect_find()
        .returning(|_, _| Ok(Some(customer())));
    let state = m.state();
    let own = call(
        state.clone(),
        as_customer(
            test::TestRequest::get().uri(&format!("/api/customers/{CUSTOMER_ID}")),
            CUSTOMER_ID,
        ),
    )
    .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(own.body["data"]["id"], CUSTOMER_ID);
    let other = "01a0c6a3-8a00-7000-8000-0000000000ff";
    for req in [
        test::TestRequest::get().uri(&format!("/api/customers/{other}")),
        test::TestRequest::get().uri("/api/customers/not-an-id"),
        test::TestRequest::get().uri("/api/customers"),
        test::TestRequest::get().uri("/api/customer_password_resets"),
        test::TestRequest::delete().uri(&format!("/api/customers/{CUSTOMER_ID}")),
        test::TestRequest::patch()
            .uri(&format!("/api/customer_password_resets/{RESET_ID}"))
            .insert_header(("Content-Type", crate::JSONAPI))
            .set_payload(json!({"data": {"type": "customer_password_resets", "id": RESET_ID, "attributes": {"customer_password": "x", "_reset_password_token": TOKEN}}}).to_string()),
    ] {
        let reply = call(state.clone(), as_customer(req, CUSTOMER_ID)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
        assert_eq!(reply.body["errors"][0]["code"], "UNAUTHORIZED");
    }
}

#[actix_web::test]
async fn a_token_whose_session_ended_is_invalid_token() {
    let mut m = Mocks::new();
    m.sessions
        .expect_status()
        .returning(|_, _| Ok(SessionStatus::Ended));
    let reply = call(
        m.state(),
        as_customer(
            test::TestRequest::get().uri(&format!("/api/customers/{CUSTOMER_ID}")),
            CUSTOMER_ID,
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["errors"][0]["code"], "INVALID_TOKEN");
    let junk = call(
        Mocks::new().state(),
        get("/api/customers", AppKind::Integration).insert_header(("Authorization", "Bearer junk")),
    )
    .await;
    assert_eq!(junk.body["errors"][0]["code"], "INVALID_TOKEN");
}
