//! Black-box tests: the real application on a random port over a real database (SQLite and
//! Postgres), driven over real HTTP exactly as a client would. Each case runs once per
//! database, as `blackbox::postgres::<case>` and `blackbox::sqlite::<case>`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use pwreset_adapter_http::AppKind;
use pwreset_domain::Mode;
use pwreset_tests::http::Response;
use pwreset_tests::{RunningApp, TestDb, logs};
use serde_json::{Value, json};

per_backend!(
    the_whole_reset_flow_works_and_the_token_is_shown_exactly_once,
    a_sales_channel_may_only_complete_resets,
    bad_credentials_are_invalid_tokens,
    test_and_live_data_never_meet,
    lists_filter_sort_and_paginate_over_http,
    include_and_sparse_fieldsets_shape_the_document,
    deleting_a_reset_makes_it_gone,
    bad_input_always_gets_a_4xx_json_api_error,
    every_bad_token_gets_the_same_answer_and_five_failures_kill_the_reset,
    used_revoked_foreign_and_expired_tokens_get_the_answer_a_wrong_token_gets,
    metadata_only_updates_leave_the_reset_usable,
    concurrent_completions_over_http_leave_the_winners_password,
    health_and_readiness_answer_without_credentials,
    metrics_count_requests_by_route_and_status_and_show_queues_and_pools,
    reset_requests_are_limited_per_address_whether_or_not_it_is_known,
    completions_are_limited_per_customer,
    the_client_address_is_the_peer_unless_a_trusted_proxy_forwarded_it,
    reset_requests_are_limited_per_credential,
    digest_keys_rotate_without_breaking_outstanding_tokens,
    links_come_from_configuration_never_from_the_host_header,
    password_hashing_never_stalls_other_requests,
    a_customer_resets_a_password_on_the_hosted_pages,
    a_database_past_its_deadline_gets_a_503_and_nothing_is_written,
);

const JSONAPI: &str = "application/vnd.api+json";

/// Talks to one running app, remembering every response body it saw.
pub(crate) struct Client {
    addr: SocketAddr,
    pub(crate) seen: Arc<Mutex<Vec<String>>>,
}

/// Every request of this suite, through the client or raw: security item 22 says every
/// `/api` answer, refusals included, carries `no-store` and `no-referrer`, so each one here
/// is checked for both.
pub(crate) async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let res = pwreset_tests::http::send(addr, method, path, headers, body).await;
    if path.starts_with("/api") {
        assert_eq!(
            res.header("cache-control"),
            Some("no-store"),
            "{method} {path}"
        );
        assert_eq!(
            res.header("referrer-policy"),
            Some("no-referrer"),
            "{method} {path}"
        );
    }
    res
}

impl Client {
    fn new(app: &RunningApp) -> Self {
        Self {
            addr: app.addr,
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = vec![("Accept", JSONAPI)];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let bytes = body.map(|b| b.to_string().into_bytes());
        if bytes.is_some() {
            headers.push(("Content-Type", JSONAPI));
        }
        let res = send(self.addr, method, path, &headers, bytes.as_deref()).await;
        assert!(
            res.status < 500,
            "{method} {path} gave {}: {}",
            res.status,
            res.body
        );
        if path.starts_with("/api") && !res.body.is_empty() {
            assert_eq!(res.header("content-type"), Some(JSONAPI), "{method} {path}");
        }
        self.seen.lock().unwrap().push(res.body.clone());
        res
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> Response {
        self.call("GET", path, Some(token), None).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.call("POST", path, Some(token), Some(&body)).await
    }

    pub(crate) async fn patch(&self, path: &str, token: &str, body: Value) -> Response {
        self.call("PATCH", path, Some(token), Some(&body)).await
    }

    pub(crate) async fn delete(&self, path: &str, token: &str) -> Response {
        self.call("DELETE", path, Some(token), None).await
    }
}

pub(crate) struct Fixture {
    pub(crate) app: RunningApp,
    pub(crate) client: Client,
    pub(crate) integration: String,
    pub(crate) sales: String,
}

async fn start(db: &TestDb) -> Fixture {
    start_with(db, |_| {}).await
}

pub(crate) async fn start_with(
    db: &TestDb,
    configure: impl FnOnce(&mut pwreset_app::Settings),
) -> Fixture {
    let app = RunningApp::start(db, configure).await;
    let client = Client::new(&app);
    let integration = app.token(AppKind::Integration, Mode::Test);
    let sales = app.token(AppKind::SalesChannel, Mode::Test);
    Fixture {
        app,
        client,
        integration,
        sales,
    }
}

fn customer_doc(email: &str, password: Option<&str>) -> Value {
    let mut attributes = json!({ "email": email });
    if let Some(p) = password {
        attributes["password"] = json!(p);
    }
    json!({ "data": { "type": "customers", "attributes": attributes } })
}

pub(crate) fn reset_doc(email: &str) -> Value {
    json!({ "data": { "type": "customer_password_resets", "attributes": { "customer_email": email }, "relationships": {} } })
}

pub(crate) fn complete_doc(id: &str, token: &Value, password: &str) -> Value {
    json!({ "data": { "type": "customer_password_resets", "id": id, "attributes": {
        "customer_password": password, "_reset_password_token": token } } })
}

impl Fixture {
    pub(crate) async fn customer(&self, email: &str) -> String {
        let res = self
            .client
            .post(
                "/api/customers",
                &self.integration,
                customer_doc(email, Some("an old password 1")),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        res.json()["data"]["id"].as_str().unwrap().to_owned()
    }

    /// Creates a reset; returns (id, token).
    pub(crate) async fn reset(&self, email: &str) -> (String, String) {
        let res = self
            .client
            .post(
                "/api/customer_password_resets",
                &self.integration,
                reset_doc(email),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        let doc = res.json();
        (
            doc["data"]["id"].as_str().unwrap().to_owned(),
            doc["data"]["attributes"]["reset_password_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    }

    pub(crate) async fn complete(&self, id: &str, token: &str, password: &str) -> Response {
        self.client
            .patch(
                &format!("/api/customer_password_resets/{id}"),
                &self.sales,
                complete_doc(id, &json!(token), password),
            )
            .await
    }
}

async fn the_whole_reset_flow_works_and_the_token_is_shown_exactly_once(db: TestDb) {
    let f = start(&db).await;
    let customer_id = f.customer("Jane.Doe@example.com").await;
    let (old_id, old_token) = f.reset("jane.doe@example.com").await;
    let (id, token) = f.reset("JANE.DOE@EXAMPLE.COM").await;
    assert_eq!(token.len(), 43);

    let fetched = f
        .client
        .get(
            &format!("/api/customer_password_resets/{id}"),
            &f.integration,
        )
        .await;
    assert_eq!(fetched.status, 200);
    let attrs = &fetched.json()["data"]["attributes"];
    assert_eq!(attrs["reset_password_token"], Value::Null);
    assert_eq!(attrs["customer_email"], "Jane.Doe@example.com");
    assert_eq!(attrs["reset_password_at"], Value::Null);
    for key in [
        "customer_email",
        "reset_password_token",
        "reset_password_at",
        "created_at",
        "updated_at",
        "reference",
        "reference_origin",
        "metadata",
    ] {
        assert!(
            attrs.get(key).is_some(),
            "attribute {key} is always present"
        );
    }

    // The superseded reset's token no longer works.
    let stale = f
        .complete(&old_id, &old_token, "a brand new password")
        .await;
    assert_eq!(stale.status, 422, "{}", stale.body);
    // ...nor on the new reset: a token belongs to one reset.
    let foreign = f.complete(&id, &old_token, "a brand new password").await;
    assert_eq!(foreign.status, 422, "{}", foreign.body);

    let done = f.complete(&id, &token, "a brand new password").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.header("set-cookie").is_none(),
        "a reset issues no credential"
    );
    let done = done.json();
    assert!(done["data"]["attributes"]["reset_password_at"].is_string());
    assert_eq!(
        done["data"]["attributes"]["reset_password_token"],
        Value::Null
    );
    assert!(
        !done.to_string().contains("a brand new password"),
        "the password is never echoed"
    );

    let again = f.complete(&id, &token, "another new password").await;
    assert_eq!(again.status, 422);
    assert_eq!(again.error_code().as_deref(), Some("VALIDATION_ERROR"));

    let customer = f
        .client
        .get(&format!("/api/customers/{customer_id}"), &f.integration)
        .await;
    assert_eq!(customer.json()["data"]["attributes"]["has_password"], true);

    let events = f
        .client
        .get(
            &format!("/api/customer_password_resets/{id}/events"),
            &f.integration,
        )
        .await;
    assert_eq!(events.status, 200);
    let names: Vec<String> = events.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["attributes"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        vec![
            "requested",
            "completion_failed",
            "completed",
            "completion_failed"
        ]
    );
    assert!(!events.body.contains(&token) && !events.body.to_lowercase().contains("jane.doe"));

    // The token was in exactly one response, and in no log line.
    let seen = f.client.seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|b| b.contains(&token)).count(), 1);
    let logged = logs::text();
    assert!(!logged.is_empty(), "logs are being captured");
    for secret in [
        &token,
        &old_token,
        "a brand new password",
        "Jane.Doe@example.com",
        "jane.doe@example.com",
    ] {
        assert!(!logged.contains(secret), "a log line holds {secret:?}");
    }
    f.app.stop().await;
}

async fn a_sales_channel_may_only_complete_resets(db: TestDb) {
    let f = start(&db).await;
    let customer_id = f.customer("jane@example.com").await;
    let (id, token) = f.reset("jane@example.com").await;
    let path = format!("/api/customer_password_resets/{id}");
    let refused = [
        f.client.get("/api/customer_password_resets", &f.sales).await,
        f.client.post("/api/customer_password_resets", &f.sales, reset_doc("jane@example.com")).await,
        f.client.get(&path, &f.sales).await,
        f.client.get(&format!("{path}/customer"), &f.sales).await,
        f.client.get(&format!("{path}/events"), &f.sales).await,
        f.client.delete(&path, &f.sales).await,
        f.client.get("/api/customers", &f.sales).await,
        f.client.get(&format!("/api/customers/{customer_id}"), &f.sales).await,
        f.client
            .patch(&path, &f.sales, json!({"data": {"type": "customer_password_resets", "id": id, "attributes": {"reference": "x"}}}))
            .await,
    ];
    for res in refused {
        assert_eq!(res.status, 401, "{}", res.body);
        assert_eq!(res.error_code().as_deref(), Some("UNAUTHORIZED"));
    }
    let done = f.complete(&id, &token, "a brand new password").await;
    assert_eq!(done.status, 200, "{}", done.body);
    f.app.stop().await;
}

async fn bad_credentials_are_invalid_tokens(db: TestDb) {
    let f = start(&db).await;
    use pwreset_domain::ports::AccessTokens;
    let now = chrono::Utc::now().timestamp();
    let claims = |issued_at: i64| pwreset_domain::AccessClaims {
        client: None,
        kind: AppKind::Integration,
        mode: Mode::Test,
        customer: None,
        session: None,
        issued_at,
        expires_at: issued_at + 60,
    };
    let other_key = pwreset_adapter_crypto::RsaAccessTokens::from_pem(
        &pwreset_adapter_crypto::generate_signing_key_pem().unwrap(),
        f.app.settings.issuer(),
        pwreset_adapter_crypto::Organization::from_slug("x"),
    )
    .unwrap();
    let foreign = other_key.sign(&claims(now)).unwrap();
    let expired = f.app.signer().sign(&claims(now - 120)).unwrap();
    for token in [
        None,
        Some("garbage"),
        Some(foreign.as_str()),
        Some(expired.as_str()),
    ] {
        let res = f
            .client
            .call("GET", "/api/customer_password_resets", token, None)
            .await;
        assert_eq!(res.status, 401);
        assert_eq!(res.error_code().as_deref(), Some("INVALID_TOKEN"));
    }
    let basic = send(
        f.app.addr,
        "GET",
        "/api/customers",
        &[("Authorization", "Basic dXNlcjpwYXNz")],
        None,
    )
    .await;
    assert_eq!(basic.error_code().as_deref(), Some("INVALID_TOKEN"));
    f.app.stop().await;
}

async fn test_and_live_data_never_meet(db: TestDb) {
    let f = start(&db).await;
    f.customer("jane@example.com").await;
    let (id, token) = f.reset("jane@example.com").await;
    let live = f.app.token(AppKind::Integration, Mode::Live);
    let live_sales = f.app.token(AppKind::SalesChannel, Mode::Live);
    let path = format!("/api/customer_password_resets/{id}");
    assert_eq!(f.client.get(&path, &live).await.status, 404);
    let list = f.client.get("/api/customer_password_resets", &live).await;
    assert_eq!(list.json()["meta"]["record_count"], 0);
    let create = f
        .client
        .post(
            "/api/customer_password_resets",
            &live,
            reset_doc("jane@example.com"),
        )
        .await;
    assert_eq!(
        create.status, 422,
        "the test customer does not exist in live mode"
    );
    let foreign = f
        .client
        .patch(
            &path,
            &live_sales,
            complete_doc(&id, &json!(token), "a brand new password"),
        )
        .await;
    assert_eq!(foreign.status, 404);
    // Still usable in its own mode.
    assert_eq!(
        f.complete(&id, &token, "a brand new password").await.status,
        200
    );
    let fetched = f.client.get(&path, &f.integration).await.json();
    assert_eq!(fetched["data"]["meta"]["mode"], "test");
    f.app.stop().await;
}

async fn lists_filter_sort_and_paginate_over_http(db: TestDb) {
    let f = start(&db).await;
    for i in 0..3 {
        let email = format!("user{i}@example.com");
        f.customer(&email).await;
        let res = f
            .client
            .post(
                "/api/customer_password_resets",
                &f.integration,
                json!({"data": {"type": "customer_password_resets", "attributes": {
                    "customer_email": email, "reference": format!("ref-{i}"), "metadata": {"n": i}}}}),
            )
            .await;
        assert_eq!(res.status, 201);
    }
    let list = |q: &str| {
        let path = format!("/api/customer_password_resets?{q}");
        let token = f.integration.clone();
        let client = &f.client;
        async move { client.get(&path, &token).await }
    };
    let refs = |res: &Response| -> Vec<String> {
        res.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["attributes"]["reference"].as_str().unwrap().to_owned())
            .collect()
    };
    let res = list("filter%5Bq%5D%5Bcustomer_email_eq%5D=USER1%40example.com").await;
    assert_eq!(refs(&res), vec!["ref-1"]);
    let res = list("filter[q][reference_in]=ref-0,ref-2&sort=-reference").await;
    assert_eq!(refs(&res), vec!["ref-2", "ref-0"]);
    let res = list("filter[q][metadata_jcont]=%7B%22n%22%3A2%7D").await;
    assert_eq!(refs(&res), vec!["ref-2"]);
    let res = list("sort=-created_at&page[size]=2&page[number]=1").await;
    let doc = res.json();
    assert_eq!(refs(&res), vec!["ref-2", "ref-1"]);
    assert_eq!(doc["meta"]["record_count"], 3);
    assert_eq!(doc["meta"]["page_count"], 2);
    let next = doc["links"]["next"].as_str().unwrap();
    assert!(next.contains("page%5Bnumber%5D=2"), "{next}");
    let path = next
        .split_once("/api/")
        .map(|(_, p)| format!("/api/{p}"))
        .unwrap();
    let page2 = f.client.get(&path, &f.integration).await;
    assert_eq!(refs(&page2), vec!["ref-0"]);
    assert!(page2.json()["links"]["prev"].is_string());

    for (q, code) in [
        ("filter[q][password_eq]=x", "BAD_REQUEST"),
        ("sort=customer_email", "BAD_REQUEST"),
        ("page[size]=26", "BAD_REQUEST"),
        ("page[number]=0", "BAD_REQUEST"),
        ("colour=red", "PARAM_NOT_ALLOWED"),
        ("filter[q][created_at_gt]=yesterday", "BAD_REQUEST"),
    ] {
        let res = list(q).await;
        assert_eq!(res.status, 400, "{q}: {}", res.body);
        assert_eq!(res.error_code().as_deref(), Some(code), "{q}");
        assert!(
            res.json()["errors"][0]["source"]["parameter"].is_string(),
            "{q} names the offender"
        );
    }
    f.app.stop().await;
}

async fn include_and_sparse_fieldsets_shape_the_document(db: TestDb) {
    let f = start(&db).await;
    let customer_id = f.customer("jane@example.com").await;
    let (id, _) = f.reset("jane@example.com").await;
    let res = f
        .client
        .get(
            &format!("/api/customer_password_resets/{id}?include=customer&fields[customer_password_resets]=customer_email,reset_password_at&fields[customers]=email"),
            &f.integration,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let doc = res.json();
    let attrs = doc["data"]["attributes"].as_object().unwrap();
    assert_eq!(
        attrs.keys().collect::<Vec<_>>(),
        vec!["customer_email", "reset_password_at"]
    );
    assert_eq!(
        doc["data"]["relationships"]["customer"]["data"],
        json!({"type": "customers", "id": customer_id})
    );
    let included = doc["included"].as_array().unwrap();
    assert_eq!(included.len(), 1);
    assert_eq!(included[0]["id"], customer_id.as_str());
    assert_eq!(
        included[0]["attributes"],
        json!({"email": "jane@example.com"})
    );
    let related = f
        .client
        .get(
            &format!("/api/customer_password_resets/{id}/customer"),
            &f.integration,
        )
        .await;
    assert_eq!(related.json()["data"]["id"], customer_id.as_str());
    f.app.stop().await;
}

async fn deleting_a_reset_makes_it_gone(db: TestDb) {
    let f = start(&db).await;
    f.customer("jane@example.com").await;
    let (id, token) = f.reset("jane@example.com").await;
    let path = format!("/api/customer_password_resets/{id}");
    let res = f.client.delete(&path, &f.integration).await;
    assert_eq!(res.status, 204);
    assert!(res.body.is_empty());
    assert_eq!(f.client.get(&path, &f.integration).await.status, 404);
    assert_eq!(f.client.delete(&path, &f.integration).await.status, 404);
    assert_eq!(
        f.complete(&id, &token, "a brand new password").await.status,
        404
    );
    f.app.stop().await;
}

async fn bad_input_always_gets_a_4xx_json_api_error(db: TestDb) {
    let f = start(&db).await;
    f.customer("jane@example.com").await;
    let (id, _) = f.reset("jane@example.com").await;
    let auth = format!("Bearer {}", f.integration);
    let resets = "/api/customer_password_resets";
    let one = format!("{resets}/{id}");
    let raw = |method: &'static str,
               path: String,
               ct: Option<&'static str>,
               accept: Option<&'static str>,
               body: Vec<u8>| {
        let auth = auth.clone();
        let addr = f.app.addr;
        async move {
            let mut headers = vec![("Authorization", auth.as_str())];
            if let Some(c) = ct {
                headers.push(("Content-Type", c));
            }
            if let Some(a) = accept {
                headers.push(("Accept", a));
            }
            send(addr, method, &path, &headers, Some(&body)).await
        }
    };
    let big = format!(
        r#"{{"data":{{"type":"customer_password_resets","attributes":{{"customer_email":"jane@example.com","reference":"{}"}}}}}}"#,
        "x".repeat(70 * 1024)
    );
    let cases: Vec<(&str, Response, u16, &str)> = vec![
        ("malformed JSON", raw("POST", resets.into(), Some(JSONAPI), None, b"{\"data\":".to_vec()).await, 400, "BAD_REQUEST"),
        ("empty body", raw("POST", resets.into(), Some(JSONAPI), None, vec![]).await, 400, "BAD_REQUEST"),
        ("not JSON:API media type", raw("POST", resets.into(), Some("application/json"), None, reset_doc("jane@example.com").to_string().into_bytes()).await, 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("no content type", raw("POST", resets.into(), None, None, reset_doc("jane@example.com").to_string().into_bytes()).await, 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("unacceptable Accept", raw("GET", resets.into(), None, Some("text/html"), vec![]).await, 406, "NOT_ACCEPTABLE"),
        ("oversized body", raw("POST", resets.into(), Some(JSONAPI), None, big.into_bytes()).await, 413, "PAYLOAD_TOO_LARGE"),
        ("array email", raw("POST", resets.into(), Some(JSONAPI), None, json!({"data": {"type": "customer_password_resets", "attributes": {"customer_email": ["jane@example.com", "evil@example.com"]}}}).to_string().into_bytes()).await, 422, "VALIDATION_ERROR"),
        ("number email", raw("POST", resets.into(), Some(JSONAPI), None, json!({"data": {"type": "customer_password_resets", "attributes": {"customer_email": 5}}}).to_string().into_bytes()).await, 422, "VALIDATION_ERROR"),
        ("implausible email", raw("POST", resets.into(), Some(JSONAPI), None, reset_doc("not-an-email").to_string().into_bytes()).await, 422, "VALIDATION_ERROR"),
        ("unknown email", raw("POST", resets.into(), Some(JSONAPI), None, reset_doc("nobody@example.com").to_string().into_bytes()).await, 422, "VALIDATION_ERROR"),
        ("unknown attribute", raw("POST", resets.into(), Some(JSONAPI), None, json!({"data": {"type": "customer_password_resets", "attributes": {"customer_email": "jane@example.com", "admin": true}}}).to_string().into_bytes()).await, 400, "PARAM_NOT_ALLOWED"),
        ("wrong type", raw("POST", resets.into(), Some(JSONAPI), None, json!({"data": {"type": "orders", "attributes": {}}}).to_string().into_bytes()).await, 400, "INVALID_RESOURCE"),
        ("client id on create", raw("POST", resets.into(), Some(JSONAPI), None, json!({"data": {"type": "customer_password_resets", "id": "x", "attributes": {"customer_email": "jane@example.com"}}}).to_string().into_bytes()).await, 400, "PARAM_NOT_ALLOWED"),
        ("writing the customer relationship", raw("POST", resets.into(), Some(JSONAPI), None, json!({"data": {"type": "customer_password_resets", "attributes": {"customer_email": "jane@example.com"}, "relationships": {"customer": {"data": {"type": "customers", "id": "x"}}}}}).to_string().into_bytes()).await, 400, "PARAM_NOT_ALLOWED"),
        ("metadata array", raw("POST", resets.into(), Some(JSONAPI), None, json!({"data": {"type": "customer_password_resets", "attributes": {"customer_email": "jane@example.com", "metadata": [1]}}}).to_string().into_bytes()).await, 422, "VALIDATION_ERROR"),
        ("id mismatch", raw("PATCH", one.clone(), Some(JSONAPI), None, json!({"data": {"type": "customer_password_resets", "id": "other", "attributes": {"reference": "x"}}}).to_string().into_bytes()).await, 400, "KEY_NOT_INCLUDED_IN_URL"),
        ("password not a string", raw("PATCH", one.clone(), Some(JSONAPI), None, json!({"data": {"type": "customer_password_resets", "id": id, "attributes": {"customer_password": 12345678, "_reset_password_token": "x"}}}).to_string().into_bytes()).await, 422, "VALIDATION_ERROR"),
        ("unknown id", raw("GET", format!("{resets}/not-a-uuid"), None, None, vec![]).await, 404, "RECORD_NOT_FOUND"),
        ("unknown route", raw("GET", "/api/orders".into(), None, None, vec![]).await, 404, "NOT_FOUND"),
        ("unsupported method", raw("PUT", one.clone(), Some(JSONAPI), None, b"{}".to_vec()).await, 405, "METHOD_NOT_ALLOWED"),
        ("duplicate customer email", raw("POST", "/api/customers".into(), Some(JSONAPI), None, customer_doc("JANE@example.com", None).to_string().into_bytes()).await, 422, "VALIDATION_ERROR"),
        ("weak customer password", raw("POST", "/api/customers".into(), Some(JSONAPI), None, customer_doc("john@example.com", Some("short")).to_string().into_bytes()).await, 422, "PASSWORD_REJECTED"),
        ("common customer password", raw("POST", "/api/customers".into(), Some(JSONAPI), None, customer_doc("john@example.com", Some("password123")).to_string().into_bytes()).await, 422, "PASSWORD_REJECTED"),
    ];
    for (what, res, status, code) in cases {
        assert_eq!(res.status, status, "{what}: {}", res.body);
        assert_eq!(res.header("content-type"), Some(JSONAPI), "{what}");
        assert_eq!(res.error_code().as_deref(), Some(code), "{what}");
        assert_eq!(
            res.json()["errors"][0]["status"],
            status.to_string(),
            "{what}"
        );
    }
    // None of that left anything behind.
    let list = f.client.get(resets, &f.integration).await.json();
    assert_eq!(list["meta"]["record_count"], 1);
    let customers = f.client.get("/api/customers", &f.integration).await.json();
    assert_eq!(customers["meta"]["record_count"], 1);
    f.app.stop().await;
}

async fn every_bad_token_gets_the_same_answer_and_five_failures_kill_the_reset(db: TestDb) {
    let f = start(&db).await;
    f.customer("jane@example.com").await;
    let (id, token) = f.reset("jane@example.com").await;
    let path = format!("/api/customer_password_resets/{id}");
    let stored_digest_like = "A".repeat(43);
    let attempts = [
        json!(null),
        json!("short"),
        json!(["array"]),
        json!(stored_digest_like),
        // The right token with its last character changed (to another canonical one).
        json!(format!(
            "{}{}",
            &token[..42],
            if token.ends_with('A') { 'E' } else { 'A' }
        )),
    ];
    let mut bodies = Vec::new();
    for bad in &attempts {
        let res = f
            .client
            .patch(
                &path,
                &f.sales,
                complete_doc(&id, bad, "a brand new password"),
            )
            .await;
        assert_eq!(res.status, 422, "{bad}: {}", res.body);
        bodies.push(res.body);
    }
    // Missing token entirely.
    let res = f
        .client
        .patch(&path, &f.sales, json!({"data": {"type": "customer_password_resets", "id": id, "attributes": {"customer_password": "a brand new password"}}}))
        .await;
    bodies.push(res.body);
    // The right token, now that the reset is dead.
    let dead = f.complete(&id, &token, "a brand new password").await;
    assert_eq!(dead.status, 422);
    bodies.push(dead.body);
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every failure looks the same: {bodies:?}"
    );
    // A refused password is its own answer and does not use up a token.
    f.customer("john@example.com").await;
    let (id2, token2) = f.reset("john@example.com").await;
    let weak = f.complete(&id2, &token2, "short").await;
    assert_eq!(weak.status, 422);
    assert_eq!(weak.error_code().as_deref(), Some("PASSWORD_REJECTED"));
    assert_eq!(
        weak.json()["errors"][0]["source"]["pointer"],
        "/data/attributes/customer_password"
    );
    assert_eq!(
        f.complete(&id2, &token2, "a brand new password")
            .await
            .status,
        200
    );
    f.app.stop().await;
}

async fn used_revoked_foreign_and_expired_tokens_get_the_answer_a_wrong_token_gets(db: TestDb) {
    let f = start(&db).await;
    let mut answers = Vec::new();
    let mut refused = |what: &'static str, res: Response| {
        assert_eq!(res.status, 422, "{what}: {}", res.body);
        answers.push((what, res.body));
    };
    // The reference: a well-formed token that is not this reset's.
    f.customer("wrong@example.com").await;
    let (target, token) = f.reset("wrong@example.com").await;
    refused(
        "a wrong token",
        f.complete(&target, &wrong_token(&token), "a brand new password")
            .await,
    );
    // Used: completed once, presented again.
    f.customer("used@example.com").await;
    let (used, used_token) = f.reset("used@example.com").await;
    let done = f.complete(&used, &used_token, "a brand new password").await;
    assert_eq!(done.status, 200, "{}", done.body);
    refused(
        "a used token",
        f.complete(&used, &used_token, "another new password").await,
    );
    // Revoked: a newer reset for the same customer revokes the older one.
    f.customer("revoked@example.com").await;
    let (revoked, revoked_token) = f.reset("revoked@example.com").await;
    let (_newer, newer_token) = f.reset("revoked@example.com").await;
    refused(
        "a revoked token",
        f.complete(&revoked, &revoked_token, "a brand new password")
            .await,
    );
    // Another reset's token, itself outstanding and valid.
    refused(
        "another reset's token",
        f.complete(&target, &newer_token, "a brand new password")
            .await,
    );
    // Expired: the right token after the reset's lifetime ran out.
    f.customer("expired@example.com").await;
    let (expired, expired_token) = f.reset("expired@example.com").await;
    pwreset_tests::expire_reset(&db, &expired).await;
    refused(
        "an expired token",
        f.complete(&expired, &expired_token, "a brand new password")
            .await,
    );
    let (_, reference) = &answers[0];
    for (what, body) in &answers[1..] {
        assert_eq!(body, reference, "{what} is told apart from a wrong token");
    }
    f.app.stop().await;
}

/// `token` with its last character changed to another canonical one.
fn wrong_token(token: &str) -> String {
    let last = if token.ends_with('A') { 'E' } else { 'A' };
    format!("{}{last}", &token[..42])
}

async fn concurrent_completions_over_http_leave_the_winners_password(db: TestDb) {
    use pwreset_domain::ports::PasswordHasher as _;
    let f = start(&db).await;
    let customer = f.customer("jane@example.com").await;
    let (id, token) = f.reset("jane@example.com").await;
    let addr = f.app.addr;
    let auth = format!("Bearer {}", f.sales);
    let candidates: Vec<String> = (0..12).map(|i| format!("candidate password {i}")).collect();
    let tasks: Vec<_> = candidates
        .iter()
        .map(|password| {
            let body = complete_doc(&id, &json!(token), password).to_string();
            let path = format!("/api/customer_password_resets/{id}");
            let auth = auth.clone();
            tokio::spawn(async move {
                send(
                    addr,
                    "PATCH",
                    &path,
                    &[("Authorization", auth.as_str()), ("Content-Type", JSONAPI)],
                    Some(body.as_bytes()),
                )
                .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut refusals = std::collections::BTreeSet::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let res = t.await.unwrap();
        match res.status {
            200 => winners.push(i),
            422 => {
                refusals.insert(res.body);
            }
            other => panic!("{other}: {}", res.body),
        }
    }
    assert_eq!(winners.len(), 1, "one winner: {winners:?}");
    assert_eq!(
        refusals.len(),
        1,
        "every loser gets the one 422: {refusals:?}"
    );
    let events = f
        .client
        .get(
            &format!("/api/customer_password_resets/{id}/events"),
            &f.integration,
        )
        .await
        .json();
    let completed = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["attributes"]["name"] == "completed")
        .count();
    assert_eq!(completed, 1);
    // The stored hash verifies the winner's password, and no loser's.
    let stored = db
        .customers
        .find(Mode::Test, customer.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
        .password_hash
        .unwrap();
    let hasher = pwreset_adapter_crypto::Argon2Hasher::owasp_minimum();
    for (i, password) in candidates.iter().enumerate() {
        let verifies = hasher
            .verify(&pwreset_domain::Password::new(password.clone()), &stored)
            .await
            .unwrap();
        assert_eq!(verifies, i == winners[0], "candidate {i}");
    }
    f.app.stop().await;
}

async fn metadata_only_updates_leave_the_reset_usable(db: TestDb) {
    let f = start(&db).await;
    f.customer("jane@example.com").await;
    let (id, token) = f.reset("jane@example.com").await;
    let path = format!("/api/customer_password_resets/{id}");
    let res = f
        .client
        .patch(&path, &f.integration, json!({"data": {"type": "customer_password_resets", "id": id, "attributes": {"reference": "crm-1", "metadata": {"source": "test"}}}}))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let attrs = res.json()["data"]["attributes"].clone();
    assert_eq!(attrs["reference"], "crm-1");
    assert_eq!(attrs["metadata"], json!({"source": "test"}));
    assert_eq!(attrs["reset_password_at"], Value::Null);
    // Reads never consume the token nor count as failed attempts: every kind of read, each
    // one more time than the five failures that would kill the reset (a token filter with
    // a wrong token included), and the token still completes.
    let wrong = format!(
        "{}{}",
        &token[..42],
        if token.ends_with('A') { 'E' } else { 'A' }
    );
    let reads = [
        path.clone(),
        format!("{path}?include=customer"),
        format!("{path}/customer"),
        format!("{path}/events"),
        format!("/api/customer_password_resets?filter[q][reset_password_token_eq]={token}"),
        format!("/api/customer_password_resets?filter[q][reset_password_token_eq]={wrong}"),
        format!("/api/customer_password_resets?filter[q][id_eq]={id}&include=customer"),
    ];
    for _ in 0..6 {
        for read in &reads {
            let res = f.client.get(read, &f.integration).await;
            assert_eq!(res.status, 200, "{read}: {}", res.body);
        }
    }
    let found = f
        .client
        .get(
            &format!("/api/customer_password_resets?filter[q][reset_password_token_eq]={token}"),
            &f.integration,
        )
        .await;
    assert_eq!(
        found.json()["meta"]["record_count"],
        1,
        "filtering by token works via its digest"
    );
    assert_eq!(
        f.complete(&id, &token, "a brand new password").await.status,
        200
    );
    f.app.stop().await;
}

async fn health_and_readiness_answer_without_credentials(db: TestDb) {
    let f = start(&db).await;
    let health = send(f.app.addr, "GET", "/health", &[], None).await;
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, json!("ok"))
    );
    let ready = send(f.app.addr, "GET", "/ready", &[], None).await;
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (200, json!("ready"))
    );
    f.app.stop().await;
}

/// The value of the sample `series` (name and labels exactly as rendered) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

async fn metrics_count_requests_by_route_and_status_and_show_queues_and_pools(db: TestDb) {
    // The recorder is the process's, shared with the cases running beside this one, so
    // counters are compared before and after, never taken as absolute.
    let f = start(&db).await;
    let scrape = |addr| async move {
        let res = send(addr, "GET", "/metrics", &[], None).await;
        assert_eq!(res.status, 200, "{}", res.body);
        assert_eq!(
            res.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        res.body
    };
    let created = r#"pwreset_http_requests_total{method="POST",route="/api/customer_password_resets",status="201"}"#;
    let refused = r#"pwreset_http_requests_total{method="GET",route="/api/customer_password_resets/{id}",status="401"}"#;
    let before = scrape(f.app.addr).await;
    f.customer("metrics@example.com").await;
    f.reset("metrics@example.com").await;
    let id = "0190b6c5-0000-7000-8000-000000000000";
    let res = send(
        f.app.addr,
        "GET",
        &format!("/api/customer_password_resets/{id}"),
        &[],
        None,
    )
    .await;
    assert_eq!(res.status, 401);
    let after = scrape(f.app.addr).await;
    let grew = |series: &str| {
        sample(&after, series).unwrap_or(0.0) - sample(&before, series).unwrap_or(0.0)
    };
    assert!(grew(created) >= 1.0, "{after}");
    assert!(grew(refused) >= 1.0, "{after}");
    assert!(
        !after.contains(id),
        "routes are patterns, never paths with ids: {after}"
    );
    for series in [
        r#"pwreset_http_request_duration_seconds_bucket{method="POST",route="/api/customer_password_resets",status="201",le="+Inf"}"#,
        r#"pwreset_db_pool_connections{state="in_use"}"#,
        r#"pwreset_db_pool_connections{state="idle"}"#,
        "pwreset_db_pool_waiting",
        "pwreset_outbox_pending",
        "pwreset_outbox_oldest_pending_age_seconds",
        "pwreset_outbox_backlog_readable",
        "pwreset_hash_queue_length",
        "pwreset_hash_wait_seconds_count",
    ] {
        assert!(sample(&after, series).is_some(), "{series} in {after}");
    }
    assert_eq!(sample(&after, "pwreset_outbox_backlog_readable"), Some(1.0));
    f.app.stop().await;

    // On a listener of its own, and then not on the API's.
    let f = start_with(&db, |s| s.metrics_bind = Some("127.0.0.1:0".into())).await;
    let own = f
        .app
        .metrics_addr
        .expect("PWRESET_METRICS_BIND opens a listener");
    assert!(scrape(own).await.contains("pwreset_http_requests_total"));
    assert_eq!(
        send(f.app.addr, "GET", "/metrics", &[], None).await.status,
        404
    );
    f.app.stop().await;
}

async fn reset_requests_are_limited_per_address_whether_or_not_it_is_known(db: TestDb) {
    let f = start(&db).await;
    f.customer("jane@example.com").await;
    for (email, first_status) in [("jane@example.com", 201), ("ghost@example.com", 422)] {
        for _ in 0..3 {
            let res = f
                .client
                .post(
                    "/api/customer_password_resets",
                    &f.integration,
                    reset_doc(email),
                )
                .await;
            assert_eq!(res.status, first_status, "{email}: {}", res.body);
        }
        // The fourth within 15 minutes is refused, known address or not.
        let res = f
            .client
            .post(
                "/api/customer_password_resets",
                &f.integration,
                reset_doc(&email.to_uppercase()),
            )
            .await;
        assert_eq!(res.status, 429, "{email}: {}", res.body);
        assert_eq!(res.error_code().as_deref(), Some("TOO_MANY_REQUESTS"));
        assert_eq!(res.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(res.header("x-ratelimit-interval"), Some("900"));
        assert_eq!(res.header("x-ratelimit-remaining"), Some("0"));
        let retry: u64 = res.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=900).contains(&retry), "{retry}");
    }
    // Other addresses are not affected.
    f.customer("john@example.com").await;
    assert_eq!(f.reset("john@example.com").await.1.len(), 43);
    f.app.stop().await;
}

fn limit(max: u32) -> pwreset_app::config::LimitList {
    pwreset_app::config::LimitList(vec![pwreset_domain::Limit::new(
        max,
        chrono::TimeDelta::hours(1),
    )])
}

/// A reset request for `email` sent with `X-Forwarded-For: forwarded` (if any), as
/// `token`'s caller.
async fn request_forwarded(
    f: &Fixture,
    token: &str,
    email: &str,
    forwarded: Option<&str>,
) -> Response {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str()), ("Content-Type", JSONAPI)];
    if let Some(xff) = forwarded {
        headers.push(("X-Forwarded-For", xff));
    }
    let body = reset_doc(email).to_string();
    send(
        f.app.addr,
        "POST",
        "/api/customer_password_resets",
        &headers,
        Some(body.as_bytes()),
    )
    .await
}

/// The `client_ip` of a reset's `requested` event.
async fn requested_from(f: &Fixture, res: &Response) -> String {
    assert_eq!(res.status, 201, "{}", res.body);
    let id = res.json()["data"]["id"].as_str().unwrap().to_owned();
    let events = f
        .client
        .get(
            &format!("/api/customer_password_resets/{id}/events"),
            &f.integration,
        )
        .await
        .json();
    let requested = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["attributes"]["name"] == "requested")
        .unwrap_or_else(|| panic!("no requested event: {events}"))
        .clone();
    requested["attributes"]["client_ip"]
        .as_str()
        .unwrap_or_else(|| panic!("no client_ip: {requested}"))
        .to_owned()
}

async fn the_client_address_is_the_peer_unless_a_trusted_proxy_forwarded_it(db: TestDb) {
    // No trusted proxy (the default): X-Forwarded-For is anyone's to write, and ignored.
    let f = start_with(&db, |s| {
        s.disable_rate_limits();
        s.limit_client = limit(2);
    })
    .await;
    f.customer("jane@example.com").await;
    for i in 0..2 {
        let xff = format!("203.0.113.{i}");
        let res = request_forwarded(&f, &f.integration, "jane@example.com", Some(&xff)).await;
        assert_eq!(requested_from(&f, &res).await, "127.0.0.1");
    }
    // Every request came from the one peer, whatever it claimed: its bucket is full.
    let res = request_forwarded(&f, &f.integration, "jane@example.com", Some("203.0.113.9")).await;
    assert_eq!(res.status, 429, "{}", res.body);
    f.app.stop().await;

    // The peer is a trusted proxy: the nearest untrusted hop is the client.
    let f = start_with(&db, |s| {
        s.disable_rate_limits();
        s.limit_client = limit(2);
        s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let chain = "198.51.100.7, 203.0.113.5, 127.0.0.1";
    for _ in 0..2 {
        let res = request_forwarded(&f, &f.integration, "jane@example.com", Some(chain)).await;
        assert_eq!(requested_from(&f, &res).await, "203.0.113.5");
    }
    // That client's bucket is full; another client's is not.
    let res = request_forwarded(&f, &f.integration, "jane@example.com", Some("203.0.113.5")).await;
    assert_eq!(res.status, 429, "{}", res.body);
    assert_eq!(res.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(res.header("x-ratelimit-interval"), Some("3600"));
    let res = request_forwarded(&f, &f.integration, "jane@example.com", Some("203.0.113.6")).await;
    assert_eq!(requested_from(&f, &res).await, "203.0.113.6");
    // A request the proxy forwards for nobody is its own, counted in the bucket the first
    // app filled for 127.0.0.1 (limits live in the database), not in nobody's.
    let res = request_forwarded(&f, &f.integration, "jane@example.com", None).await;
    assert_eq!(res.status, 429, "{}", res.body);
    f.app.stop().await;
}

async fn reset_requests_are_limited_per_credential(db: TestDb) {
    let f = start_with(&db, |s| {
        s.disable_rate_limits();
        s.limit_credential = limit(2);
        // Each request from its own client, so only the credential is shared.
        s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    for i in 0..4 {
        f.customer(&format!("user{i}@example.com")).await;
    }
    for i in 0..2 {
        let res = request_forwarded(
            &f,
            &f.integration,
            &format!("user{i}@example.com"),
            Some(&format!("203.0.113.{i}")),
        )
        .await;
        assert_eq!(res.status, 201, "{}", res.body);
    }
    let res = request_forwarded(&f, &f.integration, "user2@example.com", Some("203.0.113.2")).await;
    assert_eq!(res.status, 429, "{}", res.body);
    assert_eq!(res.header("x-ratelimit-limit"), Some("2"));
    // Another integration (a client of its own) has its own count.
    let other = crate::blackbox_signin::new_client_token(&f, "integration").await;
    let res = request_forwarded(&f, &other, "user3@example.com", Some("203.0.113.3")).await;
    assert_eq!(res.status, 201, "{}", res.body);
    f.app.stop().await;
}

async fn completions_are_limited_per_customer(db: TestDb) {
    let f = start_with(&db, |s| {
        s.limit_customer_failures =
            pwreset_app::config::LimitList(vec![pwreset_domain::Limit::new(
                6,
                chrono::TimeDelta::hours(1),
            )]);
    })
    .await;
    f.customer("jane@example.com").await;
    let (first, _) = f.reset("jane@example.com").await;
    for _ in 0..5 {
        let res = f
            .complete(&first, &"A".repeat(43), "a brand new password")
            .await;
        assert_eq!(res.status, 422);
    }
    // A new reset for the same customer gets one more failure before the customer limit.
    let (second, token) = f.reset("jane@example.com").await;
    assert_eq!(
        f.complete(&second, &"A".repeat(43), "a brand new password")
            .await
            .status,
        422
    );
    let blocked = f.complete(&second, &token, "a brand new password").await;
    assert_eq!(blocked.status, 429, "{}", blocked.body);
    assert!(blocked.header("retry-after").is_some());
    f.app.stop().await;
}

async fn digest_keys_rotate_without_breaking_outstanding_tokens(db: TestDb) {
    const OLD: &str = "b2xkLWtleS1vbGQta2V5LW9sZC1rZXktb2xkLWtleSE";
    const NEW: &str = "bmV3LWtleS1uZXcta2V5LW5ldy1rZXktbmV3LWtleSE";
    let with_keys = |keys: &'static str| {
        move |s: &mut pwreset_app::Settings| s.token_digest_keys = Some(keys.into())
    };

    let old = start_with(&db, with_keys(OLD)).await;
    old.customer("jane@example.com").await;
    old.customer("john@example.com").await;
    let (jane_reset, jane_token) = old.reset("jane@example.com").await;
    let (john_reset, john_token) = old.reset("john@example.com").await;
    old.app.stop().await;

    // Rotation: sign with the new key, still accept the old one.
    let rotating = start_with(&db, with_keys("bmV3LWtleS1uZXcta2V5LW5ldy1rZXktbmV3LWtleSE,b2xkLWtleS1vbGQta2V5LW9sZC1rZXktb2xkLWtleSE")).await;
    assert_eq!(
        rotating
            .complete(&jane_reset, &jane_token, "a brand new password")
            .await
            .status,
        200
    );
    rotating.customer("anna@example.com").await;
    let (anna_reset, anna_token) = rotating.reset("anna@example.com").await;
    rotating.app.stop().await;

    // The old key is gone: tokens issued under it fail like any bad token.
    let new = start_with(&db, with_keys(NEW)).await;
    let refused = new
        .complete(&john_reset, &john_token, "a brand new password")
        .await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.error_code().as_deref(), Some("VALIDATION_ERROR"));
    assert_eq!(
        new.complete(&anna_reset, &anna_token, "a brand new password")
            .await
            .status,
        200
    );
    new.app.stop().await;
}

async fn links_come_from_configuration_never_from_the_host_header(db: TestDb) {
    let f = start_with(&db, |s| {
        s.public_url = Some("https://resets.shop.test".into())
    })
    .await;
    f.customer("jane@example.com").await;
    let auth = format!("Bearer {}", f.integration);
    let res = send(
        f.app.addr,
        "POST",
        "/api/customer_password_resets",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", JSONAPI),
            ("Host", "evil.example"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Proto", "http"),
        ],
        Some(reset_doc("jane@example.com").to_string().as_bytes()),
    )
    .await;
    assert_eq!(res.status, 201);
    assert!(!res.body.contains("evil.example"));
    assert!(
        res.json()["data"]["links"]["self"]
            .as_str()
            .unwrap()
            .starts_with("https://resets.shop.test/api/")
    );
    f.app.stop().await;
}

async fn password_hashing_never_stalls_other_requests(db: TestDb) {
    // One HTTP worker and one hash at a time: if hashing ran on the worker, /health would
    // queue behind the hashes, so the completions would be done before the healths; off the
    // worker, /health answers while the queue of hashes is still being worked through. (That
    // a hash never runs on the thread that asked for it is shown deterministically by
    // `adapter-crypto hash::tests::a_hash_leaves_the_runtime_that_asked_for_it_free`.)
    let f = start_with(&db, |s| s.hash_concurrency = 1).await;
    let mut resets = Vec::new();
    for i in 0..12 {
        let email = format!("user{i}@example.com");
        f.customer(&email).await;
        resets.push(f.reset(&email).await);
    }
    let addr = f.app.addr;
    let sales = f.sales.clone();
    let mut completions = tokio::task::JoinSet::new();
    for (id, token) in resets {
        let auth = format!("Bearer {sales}");
        completions.spawn(async move {
            let body = complete_doc(&id, &json!(token), "a brand new password").to_string();
            send(
                addr,
                "PATCH",
                &format!("/api/customer_password_resets/{id}"),
                &[("Authorization", auth.as_str()), ("Content-Type", JSONAPI)],
                Some(body.as_bytes()),
            )
            .await
        });
    }
    // Hashing is under way once one completion is back: the other eleven hashes are queued.
    let first = completions.join_next().await.unwrap().unwrap();
    assert_eq!(first.status, 200);
    for _ in 0..10 {
        let res = send(addr, "GET", "/health", &[], None).await;
        assert_eq!(res.status, 200);
    }
    let mut done = 0;
    while let Some(c) = completions.try_join_next() {
        assert_eq!(c.unwrap().status, 200);
        done += 1;
    }
    assert!(
        !completions.is_empty(),
        "all {done} other hashes were done before ten /health requests were answered"
    );
    while let Some(c) = completions.join_next().await {
        assert_eq!(c.unwrap().status, 200);
    }
    f.app.stop().await;
}

/// A page request as a browser without JavaScript sends it.
/// The anti-forgery key the black-box browser holds, and its cookie.
const PAGE_FORM_KEY: &str = "00112233445566778899aabbccddeeff";
const PAGE_FORM_COOKIE: &str = "pwreset_form=00112233445566778899aabbccddeeff";

async fn page(
    addr: SocketAddr,
    method: &str,
    target: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> Response {
    // Like a browser that got its anti-forgery key from an earlier page: the form cookie
    // on every request, the same key in every form it posts, and `Origin: null` as
    // browsers send from a no-referrer page.
    let cookie = match cookie {
        Some(c) => format!("{PAGE_FORM_COOKIE}; pwreset_reset={c}"),
        None => PAGE_FORM_COOKIE.to_owned(),
    };
    let mut headers: Vec<(&str, &str)> = vec![("Accept", "text/html"), ("Cookie", &cookie)];
    let form = form.map(|f| format!("{f}&csrf={PAGE_FORM_KEY}"));
    if form.is_some() {
        headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        headers.push(("Origin", "null"));
    }
    let res = send(
        addr,
        method,
        target,
        &headers,
        form.as_deref().map(str::as_bytes),
    )
    .await;
    assert_eq!(
        res.header("cache-control"),
        Some("no-store"),
        "{method} {target}"
    );
    assert!(
        res.header("content-security-policy")
            .is_some_and(|c| c.starts_with("default-src 'none'")),
        "{method} {target}"
    );
    res
}

async fn a_customer_resets_a_password_on_the_hosted_pages(db: TestDb) {
    use pwreset_domain::ports::PasswordHasher as _;

    let sink = pwreset_tests::sinks::SmtpSink::smtp("127.0.0.1:0").await;
    let f = start_with(&db, |s| {
        s.delivery = pwreset_app::config::Delivery::Mail;
        s.self_service = true;
        s.smtp_url = Some(format!("smtp://{}?tls=none", sink.addr));
        s.public_url = Some("http://pwreset.test".into());
        s.pages_mode = pwreset_app::config::PagesMode::Test;
    })
    .await;
    let addr = f.app.addr;
    let customer: pwreset_domain::CustomerId =
        f.customer("Jane.Doe@Example.com").await.parse().unwrap();

    // Forgot password: the form, then the request.
    let form = page(addr, "GET", "/forgot-password", None, None).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(
        form.body
            .contains(r#"<input id="email" name="email" type="email""#)
    );
    assert!(
        form.body
            .contains(&format!(r#"name="csrf" value="{PAGE_FORM_KEY}""#)),
        "the form carries the browser's key: {}",
        form.body
    );
    let sent = page(
        addr,
        "POST",
        "/forgot-password",
        None,
        Some("email=jane.doe%40example.com"),
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(sent.body.contains(r#"id="sent""#), "{}", sent.body);

    // The mail's link, opened: the token moves to a cookie and leaves the address.
    let mail = sink.wait_for(1, std::time::Duration::from_secs(10)).await[0].text();
    let start = mail
        .find("http://pwreset.test/reset-password?id=")
        .unwrap_or_else(|| panic!("no link in {mail}"));
    let link: String = mail[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let target = link.trim_start_matches("http://pwreset.test");
    let token = target.split("&token=").nth(1).unwrap().to_owned();
    assert_eq!(token.len(), 43, "{link}");
    let opened = page(addr, "GET", target, None, None).await;
    assert_eq!(opened.status, 303, "{}", opened.body);
    let location = opened.header("location").unwrap().to_owned();
    assert!(location.starts_with("/reset-password?id=") && !location.contains(&token));
    let cookie = opened.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert_eq!(
        cookie.split(';').next(),
        Some(format!("pwreset_reset={token}").as_str())
    );

    // The form, then a weak password, then a good one.
    let shown = page(addr, "GET", &location, Some(&token), None).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(
        shown
            .body
            .contains(r#"readonly value="Jane.Doe@Example.com""#),
        "{}",
        shown.body
    );
    let weak = page(
        addr,
        "POST",
        &location,
        Some(&token),
        Some("username=x&password=short"),
    )
    .await;
    assert_eq!(weak.status, 422, "{}", weak.body);
    assert!(
        weak.body.contains(r#"id="password-error">Too short"#),
        "{}",
        weak.body
    );
    let password = "a brand new hosted passphrase";
    let done = page(
        addr,
        "POST",
        &location,
        Some(&token),
        Some("password=a+brand+new+hosted+passphrase"),
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.header("location"), Some("/reset-password/done"));
    assert!(done.header("set-cookie").unwrap().contains("Max-Age=0"));
    let changed = page(addr, "GET", "/reset-password/done", None, None).await;
    assert!(changed.body.contains(r#"id="changed""#), "{}", changed.body);

    // The link is spent: the form and a second completion get the invalid page.
    let again = page(
        addr,
        "POST",
        &location,
        Some(&token),
        Some("password=another+fine+passphrase"),
    )
    .await;
    assert_eq!(again.status, 410, "{}", again.body);
    assert!(again.body.contains(r#"id="invalid""#));
    let reopened = page(addr, "GET", &location, Some(&token), None).await;
    assert_eq!((reopened.status, &reopened.body), (410, &again.body));

    // The stored password is the new one.
    let stored = db
        .customers
        .find(pwreset_domain::Mode::Test, customer)
        .await
        .unwrap()
        .unwrap();
    let hash = stored.password_hash.unwrap();
    let hasher = pwreset_adapter_crypto::Argon2Hasher::owasp_minimum();
    assert!(
        hasher
            .verify(&pwreset_domain::Password::new(password), &hash)
            .await
            .unwrap()
    );
    assert!(
        !hasher
            .verify(&pwreset_domain::Password::new("an old password 1"), &hash)
            .await
            .unwrap()
    );

    // No answer after the redirect, and no log line, carries the token.
    for res in [&shown, &weak, &done, &changed, &again, &reopened] {
        assert!(!res.body.contains(&token));
        assert!(res.headers.iter().all(|(_, v)| !v.contains(&token)));
    }
    assert!(!logs::text().contains(&token), "the token is in the log");
    f.app.stop().await;
    sink.stop();
}

/// Postgres reached over a path that goes silent (a partition: no refusal, no reset,
/// nothing): requests end with a 503 within the statement deadline and the driver's
/// margin, never hang, and once the path is back the same pool serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_gets_503s_within_the_deadline_and_the_pool_recovers() {
    pwreset_tests::with_db(pwreset_tests::Backend::Postgres, |db| async move {
        let direct = db.url().to_owned();
        let after_at = direct.rsplit_once('@').map_or(direct.as_str(), |(_, r)| r);
        let upstream: std::net::SocketAddr = after_at
            .split('/')
            .next()
            .and_then(|hostport| hostport.parse().ok())
            .expect("the test server's URL names an IP and port");
        let path = pwreset_tests::proxy::Freezer::start(upstream).await;
        let through = pwreset_tests::postgres::through(&direct, &path.addr.to_string());
        let f = start_with(&db, |s| {
            s.database_url = Some(through.clone());
            s.database_migration_url = Some(direct.clone());
            s.db_statement_timeout = chrono::TimeDelta::milliseconds(300);
            s.db_acquire_timeout = chrono::TimeDelta::milliseconds(500);
        })
        .await;
        let create = |email: &'static str| {
            let f = &f;
            async move {
                let started = std::time::Instant::now();
                // Raw: the suite's client takes any 5xx for a failure.
                let auth = format!("Bearer {}", f.integration);
                let body = customer_doc(email, None).to_string();
                let res = send(
                    f.app.addr,
                    "POST",
                    "/api/customers",
                    &[
                        ("Accept", JSONAPI),
                        ("Content-Type", JSONAPI),
                        ("Authorization", &auth),
                    ],
                    Some(body.as_bytes()),
                )
                .await;
                (res, started.elapsed())
            }
        };
        let (res, _) = create("before@example.com").await;
        assert_eq!(res.status, 201, "{}", res.body);
        // The pool's connections idle (sqlx checks each one it takes back), so the next
        // request takes an open one and its statement is what meets the silence.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;

        path.freeze(true);
        for email in ["during1@example.com", "during2@example.com"] {
            let (res, took) = create(email).await;
            assert_eq!(res.status, 503, "{}", res.body);
            assert_eq!(
                res.json()["errors"][0]["code"],
                json!("SERVICE_UNAVAILABLE")
            );
            // 0.5 s to acquire, 0.3 s + 1 s margin per statement; a create runs one
            // statement, and a few.
            assert!(took < std::time::Duration::from_secs(4), "took {took:?}");
        }
        let ready = send(f.app.addr, "GET", "/ready", &[], None).await;
        assert_eq!(ready.status, 503, "{}", ready.body);

        path.freeze(false);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let (res, _) = create("after@example.com").await;
            if res.status == 201 {
                break;
            }
            assert_eq!(res.status, 503, "{}", res.body);
            assert!(
                std::time::Instant::now() < deadline,
                "the pool did not recover: {}",
                res.body
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        f.app.stop().await;
        path.stop();
    })
    .await;
}

/// Holds the lock a reset's write needs, from a connection of the test's own, until
/// `release` is sent: Postgres locks the resets table, SQLite takes the file's write lock.
async fn hold_write_lock(
    db: &TestDb,
    release: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    async fn hold<C>(
        mut conn: C,
        begin: &'static str,
        locked: tokio::sync::oneshot::Sender<()>,
        release: tokio::sync::oneshot::Receiver<()>,
    ) where
        C: sqlx::Connection,
        for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    {
        sqlx::raw_sql(begin).execute(&mut conn).await.unwrap();
        locked.send(()).unwrap();
        let _ = release.await;
        sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
    }
    use sqlx::Connection;
    let (locked, is_locked) = tokio::sync::oneshot::channel();
    let url = db.url().to_owned();
    let task = match db.backend {
        pwreset_tests::Backend::Postgres => {
            let conn = sqlx::PgConnection::connect(&url).await.unwrap();
            tokio::spawn(hold(
                conn,
                "BEGIN; LOCK TABLE password_resets, rate_limits IN ACCESS EXCLUSIVE MODE",
                locked,
                release,
            ))
        }
        _ => {
            let conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            tokio::spawn(hold(conn, "BEGIN IMMEDIATE", locked, release))
        }
    };
    is_locked.await.expect("the lock is held");
    task
}

/// A write that cannot get its lock within PWRESET_DB_STATEMENT_TIMEOUT is answered 503
/// with a JSON:API error and `Retry-After`, never a 500 or a hang; nothing is written,
/// and the same request succeeds once the lock is gone.
async fn a_database_past_its_deadline_gets_a_503_and_nothing_is_written(db: TestDb) {
    let f = start_with(&db, |s| {
        s.db_statement_timeout = chrono::TimeDelta::milliseconds(300);
    })
    .await;
    f.customer("jane@example.com").await;
    let (release, released) = tokio::sync::oneshot::channel();
    let holder = hold_write_lock(&db, released).await;
    // Raw: the suite's client takes any 5xx for a failure.
    let auth = format!("Bearer {}", f.integration);
    let body = reset_doc("jane@example.com").to_string();
    let res = send(
        f.client.addr,
        "POST",
        "/api/customer_password_resets",
        &[
            ("Accept", JSONAPI),
            ("Content-Type", JSONAPI),
            ("Authorization", &auth),
        ],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(res.status, 503, "{}", res.body);
    assert_eq!(res.header("retry-after"), Some("1"));
    assert_eq!(res.header("content-type"), Some(JSONAPI));
    assert_eq!(res.json()["errors"][0]["code"], "SERVICE_UNAVAILABLE");
    release.send(()).unwrap();
    holder.await.unwrap();

    let list = f
        .client
        .get(
            "/api/customer_password_resets?filter[q][customer_email_eq]=jane@example.com",
            &f.integration,
        )
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(
        list.json()["meta"]["record_count"],
        0,
        "nothing was written"
    );
    f.reset("jane@example.com").await;
    f.app.stop().await;
}
