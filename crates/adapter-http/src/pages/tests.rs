//! In-process tests of the pages through `actix_web::test`, over the domain's mocks: every
//! route and branch, the headers of every answer, and where the token may (not) appear.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use actix_web::{App, test, web};
use chrono::TimeDelta;
use pwreset_domain::ports::{
    MockClientStore, MockOutboxStore, MockRateLimitStore, MockSessionStore, StoreError,
};
use pwreset_domain::service::NotificationPlan;
use pwreset_domain::testing::{self, MockPorts, OTHER_TOKEN, RESET_ID, TOKEN};
use pwreset_domain::*;

use super::{CONTENT_SECURITY_POLICY, Pages, PagesConfig};
use crate::{ApiState, Readiness, Renderer};

struct Ready;

#[async_trait::async_trait]
impl Readiness for Ready {
    async fn check(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A password policy's list of common passwords: just one.
#[derive(Debug)]
struct OneCommon;

impl CommonPasswords for OneCommon {
    fn contains(&self, normalized: &str) -> bool {
        normalized == "correct horse battery"
    }
}

/// The reset of the tests: the fixture's, for a capitalised stored address.
fn reset() -> PasswordReset {
    let mut r = testing::reset();
    r.customer_email = EmailAddress::parse("Jane@Example.com").unwrap();
    r
}

/// What an app under test is built from.
struct Setup {
    ports: MockPorts,
    /// Self-service is on when there is an outbox.
    outbox: Option<MockOutboxStore>,
    limits: Option<MockRateLimitStore>,
    public_url: &'static str,
    signin_url: Option<String>,
    templates: Option<std::path::PathBuf>,
}

impl Setup {
    fn new() -> Self {
        Self {
            ports: MockPorts::new(),
            outbox: None,
            limits: None,
            public_url: "http://pwreset.test",
            signin_url: None,
            templates: None,
        }
    }

    /// The store holds `r` in its own mode.
    fn with_reset(mut self, r: PasswordReset) -> Self {
        self.ports
            .resets
            .expect_find()
            .returning(move |mode, id| Ok((mode == r.mode && id == r.id).then(|| r.clone())));
        self
    }

    fn with_self_service(mut self, outbox: MockOutboxStore) -> Self {
        self.outbox = Some(outbox);
        self
    }

    async fn app(
        self,
    ) -> impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    > {
        let passwords = PasswordPolicy::default().with_common_passwords(Arc::new(OneCommon));
        let ports = self.ports.into_ports();
        let mut resets = ResetService::new(ports.clone(), TokenPolicy::default(), passwords)
            .with_notifications(NotificationPlan::new(true, false));
        if let Some(limits) = self.limits {
            resets = resets.with_rate_limits(Arc::new(limits), RateLimits::default());
        }
        let self_service = self.outbox.and_then(|o| resets.self_service(Arc::new(o)));
        let sessions = crate::tests::session_service(
            ports.clone(),
            MockClientStore::new(),
            MockSessionStore::new(),
            crate::tests::mock_tokens(),
            None,
        );
        let state = web::Data::new(ApiState {
            resets,
            self_service,
            customers: CustomerService::new(ports, PasswordPolicy::default()),
            sessions,
            jwks: serde_json::json!({"keys": []}),
            renderer: Renderer {
                base: self.public_url.into(),
            },
            reveal_tokens: false,
            body_limit: 4096,
            trusted_proxies: vec![],
            readiness: Arc::new(Ready),
        });
        let mut config = PagesConfig::new(Mode::Live, self.public_url);
        config.signin_url = self.signin_url;
        config.templates = self.templates;
        let pages = web::Data::new(Pages::new(config).unwrap());
        test::init_service(
            App::new()
                .configure(super::configure(pages))
                .configure(crate::configure(state)),
        )
        .await
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn cookies(&self) -> Vec<&str> {
        self.headers
            .get_all("set-cookie")
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The headers every page answer carries.
    fn assert_page_headers(&self, https: bool) {
        assert_eq!(
            self.header("content-security-policy"),
            Some(CONTENT_SECURITY_POLICY)
        );
        assert_eq!(self.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(self.header("cache-control"), Some("no-store"));
        assert_eq!(self.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            self.header("strict-transport-security").is_some(),
            https,
            "HSTS exactly when the public URL is https"
        );
        if self.status != StatusCode::SEE_OTHER {
            let ct = self.header("content-type").unwrap_or_default();
            assert!(
                ct.starts_with("text/html") || ct.starts_with("text/css"),
                "{ct}"
            );
        }
    }

    /// No trace of `token` anywhere in the answer, headers included.
    fn assert_no_token(&self, token: &str) {
        assert!(!self.body.contains(token), "{}", self.body);
        for (name, value) in &self.headers {
            assert!(
                !value.to_str().unwrap_or_default().contains(token),
                "{name}: {value:?}"
            );
        }
    }
}

async fn call<S>(app: &S, req: test::TestRequest) -> Reply
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
        >,
{
    let res = test::call_service(app, req.to_request()).await;
    let status = res.status();
    let headers = res.headers().clone();
    let body = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

fn get(uri: &str) -> test::TestRequest {
    test::TestRequest::get().uri(uri)
}

/// The anti-forgery key the test browser holds, in its cookie and in every form it posts.
const FORM_KEY: &str = "0123456789abcdef0123456789abcdef";

/// A form post as our own page sends it: the form cookie and the `csrf` field agree.
fn post_form(uri: &str, body: &str) -> test::TestRequest {
    post_form_keyed(uri, body, Some(FORM_KEY), Some(FORM_KEY))
}

/// A form post with the given form cookie and `csrf` field (either may be absent).
fn post_form_keyed(
    uri: &str,
    body: &str,
    cookie: Option<&str>,
    field: Option<&str>,
) -> test::TestRequest {
    let body = match field {
        Some(k) => format!("{body}&csrf={k}"),
        None => body.to_owned(),
    };
    let req = test::TestRequest::post()
        .uri(uri)
        .insert_header(("content-type", "application/x-www-form-urlencoded"))
        .set_payload(body);
    match cookie {
        Some(k) => req.insert_header(("cookie", format!("pwreset_form={k}"))),
        None => req,
    }
}

fn with_token(req: test::TestRequest, token: &str) -> test::TestRequest {
    req.append_header(("cookie", format!("other=1; pwreset_reset={token}")))
}

fn form_uri() -> String {
    format!("/reset-password?id={RESET_ID}")
}

// ---- forgot password ----

#[actix_web::test]
async fn the_forgot_page_is_a_form_for_an_address() {
    let app = Setup::new()
        .with_self_service(MockOutboxStore::new())
        .app()
        .await;
    let res = call(&app, get("/forgot-password")).await;
    assert_eq!(res.status, StatusCode::OK);
    res.assert_page_headers(false);
    for part in [
        r#"<html lang="en">"#,
        r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#,
        r#"<form method="post" action="/forgot-password">"#,
        r#"<label for="email">"#,
        r#"<input id="email" name="email" type="email" autocomplete="username" required"#,
        r#"<button id="submit" type="submit">"#,
    ] {
        assert!(res.body.contains(part), "{part} in {}", res.body);
    }
    assert!(!res.body.contains("email-error"));
    assert!(!res.body.contains("<script"));
}

#[actix_web::test]
async fn without_self_service_the_forgot_page_is_not_found() {
    let app = Setup::new().app().await;
    for req in [
        get("/forgot-password"),
        post_form("/forgot-password", "email=jane%40example.com"),
    ] {
        let res = call(&app, req).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
        res.assert_page_headers(false);
        assert!(res.body.contains(r#"id="not-found""#), "{}", res.body);
    }
}

#[actix_web::test]
async fn asking_for_a_link_answers_the_same_bytes_for_any_address() {
    let mut outbox = MockOutboxStore::new();
    outbox
        .expect_enqueue()
        .withf(|m| {
            matches!(
                &m[0].payload,
                Payload::Job(Job::SelfServiceReset {
                    mode: Mode::Live,
                    ..
                })
            )
        })
        .times(2)
        .returning(|_| Ok(()));
    let mut setup = Setup::new().with_self_service(outbox);
    setup.ports.customers.expect_find_by_email().never();
    let app = setup.app().await;
    let known = call(
        &app,
        post_form("/forgot-password", "email=jane%40example.com")
            .insert_header(("origin", "http://pwreset.test")),
    )
    .await;
    let unknown = call(
        &app,
        post_form("/forgot-password", "email=nobody%40example.org"),
    )
    .await;
    assert_eq!(known.status, StatusCode::OK);
    known.assert_page_headers(false);
    assert!(known.body.contains(r#"id="sent""#), "{}", known.body);
    // A way back to the form, for a typo in the address.
    assert!(
        known
            .body
            .contains(r#"<a id="again" href="/forgot-password">"#),
        "{}",
        known.body
    );
    assert!(known.body.contains("If an account exists for that address"));
    assert_eq!((unknown.status, &unknown.body), (known.status, &known.body));
}

#[actix_web::test]
async fn a_malformed_address_gets_the_form_again_with_an_error() {
    let mut outbox = MockOutboxStore::new();
    outbox.expect_enqueue().never();
    let app = Setup::new().with_self_service(outbox).app().await;
    let res = call(&app, post_form("/forgot-password", "email=not+an+address")).await;
    assert_eq!(res.status, StatusCode::OK);
    res.assert_page_headers(false);
    assert!(res.body.contains(r#"id="email-error""#), "{}", res.body);
    assert!(res.body.contains("Enter an email address"));
    assert!(res.body.contains(r#"value="not an address""#));
}

#[actix_web::test]
async fn too_many_requests_get_the_throttled_page_with_retry_after() {
    let mut outbox = MockOutboxStore::new();
    outbox.expect_enqueue().never();
    let mut setup = Setup::new().with_self_service(outbox);
    setup
        .ports
        .digester
        .expect_fingerprint()
        .returning(|_| TokenDigest::from_bytes([5; 32]));
    let mut limits = MockRateLimitStore::new();
    limits
        .expect_hit()
        .returning(|b, _| Ok(vec![1000; b.len()]));
    setup.limits = Some(limits);
    let app = setup.app().await;
    let res = call(
        &app,
        post_form("/forgot-password", "email=jane%40example.com"),
    )
    .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    res.assert_page_headers(false);
    assert!(res.body.contains(r#"id="throttled""#), "{}", res.body);
    let retry: u64 = res.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=24 * 3600).contains(&retry), "{retry}");
}

#[actix_web::test]
async fn forms_sent_from_another_site_are_refused() {
    let mut outbox = MockOutboxStore::new();
    outbox.expect_enqueue().never();
    let mut setup = Setup::new().with_self_service(outbox);
    setup.ports.resets.expect_find().never();
    setup.ports.resets.expect_complete().never();
    let app = setup.app().await;
    for origin in [
        "https://evil.test",
        "http://pwreset.test:8080",
        "https://pwreset.test",
    ] {
        for req in [
            post_form("/forgot-password", "email=jane%40example.com"),
            with_token(
                post_form(&form_uri(), "password=a+fine+new+password"),
                TOKEN,
            ),
        ] {
            let res = call(&app, req.insert_header(("origin", origin))).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{origin}");
            res.assert_page_headers(false);
            assert!(res.body.contains(r#"id="forbidden""#), "{}", res.body);
        }
    }
    // Without the anti-forgery key, or with another one, a form is refused whatever its
    // Origin: `null` (what browsers send from our no-referrer pages) or none at all.
    let other = "ffffffffffffffffffffffffffffffff";
    for (cookie, field) in [
        (None, None),
        (Some(FORM_KEY), None),
        (None, Some(FORM_KEY)),
        (Some(FORM_KEY), Some(other)),
        (Some("not-a-key"), Some("not-a-key")),
    ] {
        for origin in [None, Some("null")] {
            for req in [
                post_form_keyed(
                    "/forgot-password",
                    "email=jane%40example.com",
                    cookie,
                    field,
                ),
                with_token(
                    post_form_keyed(&form_uri(), "password=a+fine+new+password", cookie, field),
                    TOKEN,
                ),
            ] {
                let req = match origin {
                    Some(o) => req.insert_header(("origin", o)),
                    None => req,
                };
                let res = call(&app, req).await;
                assert_eq!(
                    res.status,
                    StatusCode::FORBIDDEN,
                    "{cookie:?} {field:?} {origin:?}"
                );
            }
        }
    }
}

#[actix_web::test]
async fn a_second_form_cookie_is_refused_and_https_keys_are_host_only() {
    // Two form cookies: one may have been planted by a sibling host that knows its value.
    let mut outbox = MockOutboxStore::new();
    outbox.expect_enqueue().never();
    let app = Setup::new().with_self_service(outbox).app().await;
    let req = post_form("/forgot-password", "email=jane%40example.com")
        .append_header(("cookie", format!("pwreset_form={FORM_KEY}")));
    let res = call(&app, req).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);

    // Over https the key lives in a __Host- cookie: Secure, Path=/, this host only; the
    // plain name is not read.
    let mut setup = Setup::new().with_self_service(MockOutboxStore::new());
    setup.public_url = "https://shop.test";
    let app = setup.app().await;
    let res = call(&app, get("/forgot-password")).await;
    let cookie = res
        .headers
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.contains("pwreset_form="))
        .expect("a form cookie")
        .to_owned();
    assert!(cookie.starts_with("__Host-pwreset_form="), "{cookie}");
    assert!(
        cookie.contains("; Path=/;") && cookie.ends_with("; Secure"),
        "{cookie}"
    );
    let plain = call(
        &app,
        post_form("/forgot-password", "email=jane%40example.com")
            .insert_header(("origin", "https://shop.test")),
    )
    .await;
    assert_eq!(plain.status, StatusCode::FORBIDDEN, "{}", plain.body);
}

#[actix_web::test]
async fn a_form_with_its_key_is_accepted_from_a_no_referrer_page() {
    // Browsers send `Origin: null` for a form on a page with `Referrer-Policy:
    // no-referrer`; with the matching key the request goes through.
    let mut outbox = MockOutboxStore::new();
    outbox.expect_enqueue().times(1).returning(|_| Ok(()));
    let app = Setup::new().with_self_service(outbox).app().await;
    let res = call(
        &app,
        post_form("/forgot-password", "email=jane%40example.com").insert_header(("origin", "null")),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(res.body.contains(r#"id="sent""#), "{}", res.body);
}

#[actix_web::test]
async fn form_pages_carry_a_key_in_a_strict_cookie_and_the_form() {
    let app = Setup::new()
        .with_self_service(MockOutboxStore::new())
        .app()
        .await;
    let res = call(&app, get("/forgot-password")).await;
    let cookie = res
        .headers
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("pwreset_form="))
        .expect("a form cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let key = &cookie["pwreset_form=".len().."pwreset_form=".len() + 32];
    assert!(
        res.body.contains(&format!(r#"name="csrf" value="{key}""#)),
        "{}",
        res.body
    );
    // A browser that already holds a key keeps it: no new cookie, the same key in the form.
    let again = call(
        &app,
        get("/forgot-password").insert_header(("cookie", format!("pwreset_form={FORM_KEY}"))),
    )
    .await;
    assert!(
        again
            .headers
            .get_all("set-cookie")
            .all(|c| !c.to_str().unwrap_or("").starts_with("pwreset_form=")),
        "the key is not replaced"
    );
    assert!(again.body.contains(&format!(r#"value="{FORM_KEY}""#)));
}

// ---- the reset link ----

#[actix_web::test]
async fn the_mailed_link_moves_its_token_into_a_cookie_and_out_of_the_address() {
    let mut setup = Setup::new();
    setup.ports.resets.expect_find().never();
    let app = setup.app().await;
    let res = call(
        &app,
        get(&format!("/reset-password?id={RESET_ID}&token={TOKEN}")),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    res.assert_page_headers(false);
    assert_eq!(res.header("location"), Some(form_uri().as_str()));
    assert_eq!(
        res.cookies(),
        [format!(
            "pwreset_reset={TOKEN}; HttpOnly; SameSite=Lax; Path=/reset-password; Max-Age=900"
        )]
    );
    assert!(res.body.is_empty());

    // Over https the cookie is Secure and the answer carries HSTS.
    let mut setup = Setup::new();
    setup.public_url = "https://shop.test";
    let app = setup.app().await;
    let res = call(
        &app,
        get(&format!("/reset-password?token={TOKEN}&id={RESET_ID}")),
    )
    .await;
    res.assert_page_headers(true);
    assert_eq!(
        res.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    assert!(
        res.cookies()[0].ends_with("; Max-Age=900; Secure"),
        "{:?}",
        res.cookies()
    );

    // Something that is no token never reaches a header.
    let res = call(
        &app,
        get(&format!(
            "/reset-password?id={RESET_ID}&token=x%3B%20Domain%3Devil.test"
        )),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(res.cookies().is_empty());
    assert!(!format!("{:?}", res.headers).contains("evil"));
}

#[actix_web::test]
async fn a_valid_link_shows_the_form_with_the_stored_address_and_writes_nothing() {
    let mut setup = Setup::new().with_reset(reset());
    setup.ports.resets.expect_record_failure().never();
    setup.ports.resets.expect_complete().never();
    let app = setup.app().await;
    let res = call(&app, with_token(get(&form_uri()), TOKEN)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.assert_page_headers(false);
    for part in [
        format!(r#"<form method="post" action="/reset-password?id={RESET_ID}">"#),
        r#"<label for="username">"#.to_owned(),
        r#"<input id="username" name="username" autocomplete="username" readonly value="Jane@Example.com">"#.to_owned(),
        r#"<label for="password">"#.to_owned(),
        r#"<input id="password" name="password" type="password" autocomplete="new-password" required"#.to_owned(),
        r#"<button id="submit" type="submit">"#.to_owned(),
        "At least 8 characters".to_owned(),
    ] {
        assert!(res.body.contains(&part), "{part} in {}", res.body);
    }
    assert!(!res.body.contains("password-error"));
    res.assert_no_token(TOKEN);
}

/// The invalid-link page for a `GET` of the form with the reset `r` stored (or none)
/// and `token` in the cookie (or none).
async fn invalid_for(
    r: Option<PasswordReset>,
    uri: &str,
    token: Option<&str>,
    now: Timestamp,
) -> Reply {
    let mut setup = match r {
        Some(r) => Setup::new().with_reset(r),
        None => {
            let mut s = Setup::new();
            s.ports.resets.expect_find().returning(|_, _| Ok(None));
            s
        }
    };
    setup.ports.clock = testing::clock_at(now);
    setup
        .ports
        .resets
        .expect_record_failure()
        .returning(|_, _, _, _| Ok(()));
    setup.ports.resets.expect_complete().never();
    let app = setup.app().await;
    let req = match token {
        Some(t) => with_token(get(uri), t),
        None => get(uri),
    };
    call(&app, req).await
}

/// A cause, the stored reset, the URI, the cookie's token and the time.
type Case<'a> = (
    &'a str,
    Option<PasswordReset>,
    &'a str,
    Option<&'a str>,
    Timestamp,
);

#[actix_web::test]
async fn every_kind_of_bad_link_shows_the_one_invalid_page() {
    let t0 = testing::t0();
    let mut used = reset();
    used.reset_password_at = Some(t0);
    let mut revoked = reset();
    revoked.invalidated_at = Some(t0);
    let mut exhausted = reset();
    exhausted.failed_attempts = 5;
    let uri = form_uri();
    let cases: Vec<Case<'_>> = vec![
        ("no cookie", Some(reset()), &uri, None, t0),
        ("wrong token", Some(reset()), &uri, Some(OTHER_TOKEN), t0),
        ("malformed token", Some(reset()), &uri, Some("abc"), t0),
        ("used", Some(used), &uri, Some(TOKEN), t0),
        ("revoked", Some(revoked), &uri, Some(TOKEN), t0),
        (
            "expired",
            Some(reset()),
            &uri,
            Some(TOKEN),
            t0 + TimeDelta::hours(2),
        ),
        ("exhausted", Some(exhausted), &uri, Some(TOKEN), t0),
        ("unknown reset", None, &uri, Some(TOKEN), t0),
        (
            "not an id",
            Some(reset()),
            "/reset-password?id=nope",
            Some(TOKEN),
            t0,
        ),
        ("no id", Some(reset()), "/reset-password", Some(TOKEN), t0),
    ];
    let mut first: Option<Reply> = None;
    for (cause, r, uri, token, now) in cases {
        let res = invalid_for(r, uri, token, now).await;
        assert_eq!(res.status, StatusCode::GONE, "{cause}: {}", res.body);
        res.assert_page_headers(false);
        assert!(res.body.contains(r#"id="invalid""#), "{cause}");
        assert!(res.body.contains("This link is no longer valid"), "{cause}");
        assert!(
            res.body
                .contains(r#"<a id="request-new" class="button" href="/forgot-password">"#),
            "{cause}"
        );
        assert_eq!(
            res.cookies(),
            ["pwreset_reset=; HttpOnly; SameSite=Lax; Path=/reset-password; Max-Age=0"],
            "{cause}: the cookie is dropped"
        );
        res.assert_no_token(TOKEN);
        match &first {
            None => first = Some(res),
            Some(f) => assert_eq!(res.body, f.body, "{cause}: the same bytes for every cause"),
        }
    }
}

#[actix_web::test]
async fn checking_a_bad_link_counts_a_failed_attempt() {
    let mut setup = Setup::new().with_reset(reset());
    setup
        .ports
        .resets
        .expect_record_failure()
        .withf(|mode, _, counted, e| {
            *mode == Mode::Test && *counted && e.reason.as_deref() == Some("wrong")
        })
        .times(1)
        .returning(|_, _, _, _| Ok(()));
    let app = setup.app().await;
    let res = call(&app, with_token(get(&form_uri()), OTHER_TOKEN)).await;
    assert_eq!(res.status, StatusCode::GONE);
}

// ---- completing ----

async fn refused(password: &str) -> Reply {
    let mut setup = Setup::new().with_reset(reset());
    setup.ports.hasher.expect_hash().never();
    setup.ports.resets.expect_complete().never();
    setup.ports.resets.expect_record_failure().never();
    let app = setup.app().await;
    let body = format!(
        "username=Jane%40Example.com&password={}",
        password.replace(' ', "+").replace('@', "%40")
    );
    call(&app, with_token(post_form(&form_uri(), &body), TOKEN)).await
}

#[actix_web::test]
async fn a_refused_password_is_explained_in_words_next_to_the_field() {
    for (password, words) in [
        ("shrt7", "Too short: use at least 8 characters."),
        ("correct horse battery", "Too common"),
        (
            "my Jane@Example.com password",
            "Do not use your email address",
        ),
    ] {
        let res = refused(password).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{password}");
        res.assert_page_headers(false);
        let error = res
            .body
            .split(r#"<p class="error" id="password-error">"#)
            .nth(1)
            .unwrap_or_else(|| panic!("no password-error in {}", res.body));
        assert!(error.starts_with(words), "{password}: {error}");
        assert!(
            res.body.contains(r#"readonly value="Jane@Example.com">"#),
            "the address is kept"
        );
        let field = res
            .body
            .split(r#"<input id="password""#)
            .nth(1)
            .and_then(|rest| rest.split('>').next())
            .unwrap();
        assert!(
            !field.contains("value"),
            "the password field is empty: {field}"
        );
        if !password.contains("Jane@") {
            assert!(
                !res.body.contains(password),
                "the password is not sent back"
            );
        }
        assert!(res.body.contains(r#"aria-invalid="true""#));
        res.assert_no_token(TOKEN);
    }
}

#[actix_web::test]
async fn a_good_password_completes_and_redirects_with_the_cookie_cleared() {
    let mut setup = Setup::new().with_reset(reset());
    setup
        .ports
        .hasher
        .expect_hash()
        .withf(|p| p.expose_secret() == "a fine new passphrase")
        .times(1)
        .returning(|_| Ok(PasswordHash::new("$argon2id$x")));
    setup
        .ports
        .resets
        .expect_complete()
        .withf(|c| c.mode == Mode::Test && c.token_digest == testing::digest_of(TOKEN))
        .times(1)
        .returning(|_| {
            let mut r = reset();
            r.reset_password_at = Some(testing::t0());
            Ok(ports::CompletionOutcome::Completed(Box::new(r)))
        });
    let app = setup.app().await;
    let res = call(
        &app,
        with_token(
            post_form(&form_uri(), "password=a+fine+new+passphrase"),
            TOKEN,
        )
        .insert_header(("origin", "http://pwreset.test")),
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    res.assert_page_headers(false);
    assert_eq!(res.header("location"), Some("/reset-password/done"));
    assert_eq!(
        res.cookies(),
        ["pwreset_reset=; HttpOnly; SameSite=Lax; Path=/reset-password; Max-Age=0"]
    );
    res.assert_no_token(TOKEN);
}

#[actix_web::test]
async fn completing_with_a_bad_token_shows_the_same_invalid_page() {
    let reference = invalid_for(Some(reset()), &form_uri(), None, testing::t0()).await;
    let mut used = reset();
    used.reset_password_at = Some(testing::t0());
    for (r, token) in [
        (reset(), Some(OTHER_TOKEN)),
        (reset(), None),
        (used, Some(TOKEN)),
    ] {
        let mut setup = Setup::new().with_reset(r);
        setup.ports.hasher.expect_hash().never();
        setup.ports.resets.expect_complete().never();
        setup
            .ports
            .resets
            .expect_record_failure()
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        let app = setup.app().await;
        let req = post_form(&form_uri(), "password=a+fine+new+passphrase");
        let req = match token {
            Some(t) => with_token(req, t),
            None => req,
        };
        let res = call(&app, req).await;
        assert_eq!(res.status, StatusCode::GONE, "{token:?}");
        res.assert_page_headers(false);
        assert_eq!(res.body, reference.body);
        res.assert_no_token(TOKEN);
    }
}

// ---- password changed, languages, templates ----

#[actix_web::test]
async fn the_changed_page_offers_sign_in_only_when_configured() {
    let app = Setup::new().app().await;
    let res = call(&app, get("/reset-password/done")).await;
    assert_eq!(res.status, StatusCode::OK);
    res.assert_page_headers(false);
    assert!(res.body.contains(r#"id="changed""#));
    assert!(res.body.contains("Password changed"));
    assert!(!res.body.contains("signin"));

    let mut setup = Setup::new();
    setup.signin_url = Some(r#"https://shop.test/login?next="<x>""#.to_owned());
    let app = setup.app().await;
    let res = call(&app, get("/reset-password/done")).await;
    assert!(
        res.body.contains(
            r#"<a id="signin" class="button" href="https:&#x2f;&#x2f;shop.test&#x2f;login?next=&quot;&lt;x&gt;&quot;">"#
        ),
        "the URL is escaped: {}",
        res.body
    );
}

#[actix_web::test]
async fn pages_speak_italian_when_the_browser_prefers_it() {
    let app = Setup::new().app().await;
    for (accept, lang, text) in [
        ("it-IT,it;q=0.9,en;q=0.8", "it", "Password cambiata"),
        ("en;q=0.2, it;q=0.8", "it", "Password cambiata"),
        ("fr-FR, en;q=0.5", "en", "Password changed"),
        ("de", "en", "Password changed"),
        ("it;q=0, en", "en", "Password changed"),
        ("", "en", "Password changed"),
    ] {
        let res = call(
            &app,
            get("/reset-password/done").insert_header(("accept-language", accept)),
        )
        .await;
        assert!(
            res.body.contains(&format!(r#"<html lang="{lang}">"#)) && res.body.contains(text),
            "{accept}: {}",
            res.body
        );
    }
    let res = call(
        &app,
        with_token(get("/reset-password"), TOKEN).insert_header(("accept-language", "it")),
    )
    .await;
    assert!(
        res.body.contains("Questo link non è più valido"),
        "{}",
        res.body
    );
}

#[actix_web::test]
async fn operators_override_templates_and_add_a_language_with_a_file() {
    let dir = std::env::temp_dir().join(format!("pwreset-pages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("changed.html"),
        r#"{% extends "base.html" %}{% block content %}<h1 id="changed">{{ t.changed_title }}</h1><p>Shop branding</p>{% endblock %}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("de.json"),
        r#"{"changed_title": "Passwort geändert"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("pages.css"), "body{color:#000}").unwrap();
    let mut setup = Setup::new();
    setup.templates = Some(dir.clone());
    let app = setup.app().await;
    let res = call(
        &app,
        get("/reset-password/done").insert_header(("accept-language", "de-DE")),
    )
    .await;
    assert!(res.body.contains(r#"<html lang="de">"#), "{}", res.body);
    assert!(res.body.contains("Passwort geändert") && res.body.contains("Shop branding"));
    // Texts the new language lacks come from English.
    let res = call(
        &app,
        get("/forgot-password").insert_header(("accept-language", "de")),
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.body.contains("Page not found"), "{}", res.body);
    let css = call(&app, get("/assets/pages.css")).await;
    assert_eq!(css.body, "body{color:#000}");
    css.assert_page_headers(false);

    std::fs::write(dir.join("sent.html"), "{% if %}").unwrap();
    let mut config = PagesConfig::new(Mode::Live, "http://x");
    config.templates = Some(dir.clone());
    let err = Pages::new(config).unwrap_err();
    assert!(format!("{err:#}").contains("sent.html"), "{err:#}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[actix_web::test]
async fn the_style_sheet_and_unsupported_methods_carry_the_page_headers() {
    let app = Setup::new().app().await;
    let css = call(&app, get("/assets/pages.css")).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    css.assert_page_headers(false);
    assert!(css.body.contains(".error{min-height"));
    let res = call(&app, test::TestRequest::delete().uri("/reset-password")).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    res.assert_page_headers(false);
}

/// The form page's answer when the store's `find` fails with `error`.
async fn form_page_when_find_fails(error: fn() -> StoreError) -> Reply {
    let mut setup = Setup::new();
    setup
        .ports
        .resets
        .expect_find()
        .returning(move |_, _| Err(error()));
    let app = setup.app().await;
    call(&app, with_token(get(&form_uri()), TOKEN)).await
}

#[actix_web::test]
async fn a_database_that_cannot_answer_gets_the_try_again_page_with_503() {
    let res = form_page_when_find_fails(|| StoreError::unavailable("connection refused")).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert_eq!(res.header("retry-after"), Some("1"));
    res.assert_page_headers(false);
    assert!(res.body.contains("Please try again"), "{}", res.body);
    res.assert_no_token(TOKEN);

    // Any other failure stays a 500.
    let res =
        form_page_when_find_fails(|| StoreError::unexpected("a row that does not decode")).await;
    assert_eq!(
        res.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        res.body
    );
    assert_eq!(res.header("retry-after"), None);
}
