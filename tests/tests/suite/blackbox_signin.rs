//! Black-box tests of sign-in: API clients made with the `pwreset client` command, the
//! OAuth endpoints (`/oauth/token`, `/oauth/revoke`, `/.well-known/jwks.json`) and what
//! their tokens may do, driven over real HTTP against the real application on each
//! database, as `blackbox_signin::postgres::<case>` and `blackbox_signin::sqlite::<case>`.

use chrono::TimeDelta;
use clap::Parser;
use pwreset_app::config::{Cli, Command};
use pwreset_tests::TestDb;
use pwreset_tests::http::{Response, send};
use serde_json::{Value, json};

use crate::blackbox::{Fixture, start_with};

per_backend!(
    clients_made_on_the_command_line_get_tokens_with_every_grant,
    a_wrong_password_and_an_unknown_address_get_the_same_bytes,
    refresh_tokens_rotate_and_a_reused_one_ends_the_session,
    revoked_tokens_are_refused,
    a_customer_token_reads_its_own_customer_and_nothing_else,
    a_reset_ends_every_session_and_only_the_new_password_signs_in,
    the_jwks_verifies_issued_tokens_and_holds_no_private_part,
    sign_in_is_throttled_per_address_and_per_client,
    a_revoked_client_is_refused_at_once,
);

const PASSWORD: &str = "an old password 1";

/// Runs `pwreset <args>` (a `client` command) in-process over the app's configuration and
/// returns what it prints, as JSON.
async fn cli(f: &Fixture, args: &[&str]) -> Value {
    let cli = Cli::try_parse_from(std::iter::once("pwreset").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let Some(Command::Client(command)) = cli.command else {
        panic!("{args:?} is not a client command");
    };
    let printed = pwreset_app::commands::client(&f.app.settings, command)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
    serde_json::from_str(&printed).unwrap()
}

/// A client made with `pwreset client create`: its id and secret.
struct Creds {
    id: String,
    secret: String,
}

async fn create_client(f: &Fixture, kind: &str) -> Creds {
    let made = cli(f, &["client", "create", "--kind", kind, "--name", "My app"]).await;
    let mut keys: Vec<&String> = made.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["client_id", "client_secret", "kind", "mode", "name"],
        "{made}"
    );
    assert_eq!(
        (&made["kind"], &made["mode"], &made["name"]),
        (&json!(kind), &json!("test"), &json!("My app"))
    );
    Creds {
        id: made["client_id"].as_str().unwrap().to_owned(),
        secret: made["client_secret"].as_str().unwrap().to_owned(),
    }
}

/// A new client of `kind` and a client-credentials access token for it: a credential of
/// its own, for tests about per-credential accounting.
pub(crate) async fn new_client_token(f: &Fixture, kind: &str) -> String {
    let creds = create_client(f, kind).await;
    let res = oauth(
        f,
        "/oauth/token",
        &json!({"grant_type": "client_credentials", "client_id": creds.id,
                "client_secret": creds.secret}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.json()["access_token"].as_str().unwrap().to_owned()
}

/// Posts `body` as JSON to an `/oauth` path; checks the headers every answer carries.
async fn oauth(f: &Fixture, path: &str, body: &Value) -> Response {
    let bytes = body.to_string().into_bytes();
    let res = send(
        f.app.addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(&bytes),
    )
    .await;
    assert!(res.status < 500, "{path} gave {}: {}", res.status, res.body);
    assert_eq!(res.header("cache-control"), Some("no-store"), "{path}");
    res
}

async fn password_grant(f: &Fixture, store: &Creds, email: &str, password: &str) -> Response {
    oauth(
        f,
        "/oauth/token",
        &json!({"grant_type": "password", "client_id": store.id,
                "username": email, "password": password}),
    )
    .await
}

async fn refresh(f: &Fixture, store: &Creds, token: &str) -> Response {
    oauth(
        f,
        "/oauth/token",
        &json!({"grant_type": "refresh_token", "client_id": store.id, "refresh_token": token}),
    )
    .await
}

fn oauth_error(res: &Response) -> (u16, String) {
    let e = &res.json()["errors"][0];
    assert_eq!(e["status"], json!(res.status), "{}", res.body);
    (
        res.status,
        e["title"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A signed-in customer: the grant's body.
async fn sign_in(f: &Fixture, store: &Creds, email: &str, password: &str) -> Value {
    let res = password_grant(f, store, email, password).await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.json()
}

async fn start(db: &TestDb) -> Fixture {
    start_with(db, |_| {}).await
}

async fn clients_made_on_the_command_line_get_tokens_with_every_grant(db: TestDb) {
    let f = start(&db).await;
    let backend = create_client(&f, "integration").await;
    let store = create_client(&f, "sales_channel").await;
    let listed = cli(&f, &["client", "list"]).await;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for c in listed {
        assert!(c.get("client_secret").is_none(), "no secrets: {c}");
        assert_eq!(c["revoked_at"], Value::Null);
    }
    assert!(
        !listed
            .to_vec()
            .iter()
            .any(|c| c.to_string().contains(&backend.secret))
    );

    // client_credentials: a token the API takes.
    let res = oauth(
        &f,
        "/oauth/token",
        &json!({"grant_type": "client_credentials", "client_id": backend.id, "client_secret": backend.secret}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let body = res.json();
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "access_token",
            "created_at",
            "expires_in",
            "scope",
            "token_type"
        ]
    );
    assert_eq!(
        (&body["token_type"], &body["expires_in"]),
        (&json!("bearer"), &json!(7200))
    );
    let integration = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        f.client.get("/api/customers", &integration).await.status,
        200
    );

    // password: a customer token with a refresh token.
    let id = f.customer("jane@example.com").await;
    let signed_in = sign_in(&f, &store, "Jane@Example.com", PASSWORD).await;
    assert_eq!(signed_in["owner_id"], json!(id));
    assert_eq!(signed_in["owner_type"], "customer");
    let refresh_token = signed_in["refresh_token"].as_str().unwrap();
    assert!(refresh_token.len() >= 43, "at least 256 bits");

    // refresh_token: a new pair for the same customer.
    let res = refresh(&f, &store, refresh_token).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let refreshed = res.json();
    assert_eq!(refreshed["owner_id"], json!(id));
    assert_ne!(refreshed["refresh_token"], signed_in["refresh_token"]);
    let own = format!("/api/customers/{id}");
    let access = refreshed["access_token"].as_str().unwrap();
    assert_eq!(f.client.get(&own, access).await.status, 200);

    // A confidential client without its secret, or with a wrong one, is invalid_client.
    for body in [
        json!({"grant_type": "client_credentials", "client_id": backend.id}),
        json!({"grant_type": "client_credentials", "client_id": backend.id, "client_secret": store.secret}),
    ] {
        let res = oauth(&f, "/oauth/token", &body).await;
        assert_eq!(oauth_error(&res), (401, "invalid_client".into()));
    }
    // An integration may not sign customers in.
    let res = oauth(
        &f,
        "/oauth/token",
        &json!({"grant_type": "password", "client_id": backend.id, "client_secret": backend.secret,
                "username": "jane@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(oauth_error(&res), (403, "unauthorized_client".into()));
    f.app.stop().await;
}

async fn a_wrong_password_and_an_unknown_address_get_the_same_bytes(db: TestDb) {
    let f = start(&db).await;
    let store = create_client(&f, "sales_channel").await;
    f.customer("jane@example.com").await;
    let wrong = password_grant(&f, &store, "jane@example.com", "not the password").await;
    let unknown = password_grant(&f, &store, "nobody@example.com", "not the password").await;
    assert_eq!(oauth_error(&wrong), (400, "invalid_grant".into()));
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body, "byte-identical bodies");
    let names = |r: &Response| {
        let mut h: Vec<String> = r
            .headers
            .iter()
            .map(|(k, _)| k.to_lowercase())
            .filter(|k| k != "date" && k != "x-request-id")
            .collect();
        h.sort();
        h
    };
    assert_eq!(names(&wrong), names(&unknown));
    f.app.stop().await;
}

async fn refresh_tokens_rotate_and_a_reused_one_ends_the_session(db: TestDb) {
    let f = start(&db).await;
    let store = create_client(&f, "sales_channel").await;
    let other_store = create_client(&f, "sales_channel").await;
    let id = f.customer("jane@example.com").await;
    let first = sign_in(&f, &store, "jane@example.com", PASSWORD).await;
    let first_refresh = first["refresh_token"].as_str().unwrap();

    // Bound to its client: another client cannot use it (and does not burn it).
    let res = refresh(&f, &other_store, first_refresh).await;
    assert_eq!(oauth_error(&res), (400, "invalid_grant".into()));

    let second = refresh(&f, &store, first_refresh).await.json();
    let second_refresh = second["refresh_token"].as_str().unwrap();
    let second_access = second["access_token"].as_str().unwrap();
    let own = format!("/api/customers/{id}");
    assert_eq!(f.client.get(&own, second_access).await.status, 200);

    // The rotated token again: refused, and the whole family with it.
    let reused = refresh(&f, &store, first_refresh).await;
    assert_eq!(oauth_error(&reused), (400, "invalid_grant".into()));
    let after = refresh(&f, &store, second_refresh).await;
    assert_eq!(oauth_error(&after), (400, "invalid_grant".into()));
    let res = f.client.get(&own, second_access).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code().as_deref(), Some("INVALID_TOKEN"));
    // Signing in again opens a new session.
    sign_in(&f, &store, "jane@example.com", PASSWORD).await;
    f.app.stop().await;
}

async fn revoked_tokens_are_refused(db: TestDb) {
    let f = start(&db).await;
    let store = create_client(&f, "sales_channel").await;
    let id = f.customer("jane@example.com").await;
    let own = format!("/api/customers/{id}");
    let signed_in = sign_in(&f, &store, "jane@example.com", PASSWORD).await;
    let access = signed_in["access_token"].as_str().unwrap();
    assert_eq!(f.client.get(&own, access).await.status, 200);

    // Unknown and malformed tokens: 200 {} (RFC 7009).
    for token in ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "junk"] {
        let res = oauth(
            &f,
            "/oauth/revoke",
            &json!({"client_id": store.id, "token": token}),
        )
        .await;
        assert_eq!((res.status, res.json()), (200, json!({})), "{token}");
    }
    // Revoking the access token ends it and its refresh token.
    let res = oauth(
        &f,
        "/oauth/revoke",
        &json!({"client_id": store.id, "token": access}),
    )
    .await;
    assert_eq!((res.status, res.json()), (200, json!({})));
    let res = f.client.get(&own, access).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code().as_deref(), Some("INVALID_TOKEN"));
    let res = refresh(&f, &store, signed_in["refresh_token"].as_str().unwrap()).await;
    assert_eq!(oauth_error(&res), (400, "invalid_grant".into()));

    // Revoking by refresh token ends the access token too.
    let again = sign_in(&f, &store, "jane@example.com", PASSWORD).await;
    let res = oauth(
        &f,
        "/oauth/revoke",
        &json!({"client_id": store.id, "token": again["refresh_token"]}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let res = f
        .client
        .get(&own, again["access_token"].as_str().unwrap())
        .await;
    assert_eq!(res.error_code().as_deref(), Some("INVALID_TOKEN"));
    f.app.stop().await;
}

async fn a_customer_token_reads_its_own_customer_and_nothing_else(db: TestDb) {
    let f = start(&db).await;
    let store = create_client(&f, "sales_channel").await;
    let jane = f.customer("jane@example.com").await;
    let john = f.customer("john@example.com").await;
    let (reset, reset_token) = f.reset("john@example.com").await;
    let signed_in = sign_in(&f, &store, "jane@example.com", PASSWORD).await;
    let token = signed_in["access_token"].as_str().unwrap();
    let res = f.client.get(&format!("/api/customers/{jane}"), token).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.json()["data"]["id"], json!(jane));
    let refused = [
        f.client.get(&format!("/api/customers/{john}"), token).await,
        f.client.get("/api/customers/not-an-id", token).await,
        f.client.get("/api/customers", token).await,
        f.client.get("/api/customer_password_resets", token).await,
        f.client
            .get(&format!("/api/customer_password_resets/{reset}"), token)
            .await,
        f.client
            .patch(
                &format!("/api/customers/{jane}"),
                token,
                json!({"data": {"type": "customers", "id": jane, "attributes": {"password": "a new one 12345"}}}),
            )
            .await,
        f.client.delete(&format!("/api/customers/{jane}"), token).await,
        // A customer token is a sales channel's, but completes nothing.
        f.client
            .patch(
                &format!("/api/customer_password_resets/{reset}"),
                token,
                crate::blackbox::complete_doc(&reset, &json!(reset_token), "a brand new password"),
            )
            .await,
        f.client
            .post(
                "/api/customer_password_resets",
                token,
                crate::blackbox::reset_doc("jane@example.com"),
            )
            .await,
    ];
    for res in refused {
        assert_eq!(res.status, 401, "{}", res.body);
        assert_eq!(res.error_code().as_deref(), Some("UNAUTHORIZED"));
    }
    // Nothing changed: the passwords still sign in.
    sign_in(&f, &store, "jane@example.com", PASSWORD).await;
    sign_in(&f, &store, "john@example.com", PASSWORD).await;
    f.app.stop().await;
}

async fn a_reset_ends_every_session_and_only_the_new_password_signs_in(db: TestDb) {
    let f = start(&db).await;
    let store = create_client(&f, "sales_channel").await;
    let id = f.customer("jane@example.com").await;
    let own = format!("/api/customers/{id}");
    let one = sign_in(&f, &store, "jane@example.com", PASSWORD).await;
    let two = sign_in(&f, &store, "jane@example.com", PASSWORD).await;
    let (reset, token) = f.reset("jane@example.com").await;
    // Opening a reset ends nothing: the customer may still remember the password.
    assert_eq!(
        f.client
            .get(&own, one["access_token"].as_str().unwrap())
            .await
            .status,
        200
    );
    let done = f.complete(&reset, &token, "a brand new password").await;
    assert_eq!(done.status, 200, "{}", done.body);

    for session in [&one, &two] {
        let res = f
            .client
            .get(&own, session["access_token"].as_str().unwrap())
            .await;
        assert_eq!(res.status, 401, "{}", res.body);
        assert_eq!(res.error_code().as_deref(), Some("INVALID_TOKEN"));
        let res = refresh(&f, &store, session["refresh_token"].as_str().unwrap()).await;
        assert_eq!(oauth_error(&res), (400, "invalid_grant".into()));
    }
    let old = password_grant(&f, &store, "jane@example.com", PASSWORD).await;
    assert_eq!(oauth_error(&old), (400, "invalid_grant".into()));
    let new = sign_in(&f, &store, "jane@example.com", "a brand new password").await;
    assert_eq!(
        f.client
            .get(&own, new["access_token"].as_str().unwrap())
            .await
            .status,
        200
    );
    let events = f
        .client
        .get(
            &format!("/api/customer_password_resets/{reset}/events"),
            &f.integration,
        )
        .await
        .json();
    let revoked: Vec<&Value> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["attributes"]["name"] == "sessions_revoked")
        .collect();
    assert_eq!(revoked.len(), 1, "{events}");
    assert_eq!(revoked[0]["attributes"]["reason"], "2");
    f.app.stop().await;
}

async fn the_jwks_verifies_issued_tokens_and_holds_no_private_part(db: TestDb) {
    let f = start(&db).await;
    let store = create_client(&f, "sales_channel").await;
    let id = f.customer("jane@example.com").await;
    let signed_in = sign_in(&f, &store, "jane@example.com", PASSWORD).await;
    let token = signed_in["access_token"].as_str().unwrap();
    let res = send(f.app.addr, "GET", "/.well-known/jwks.json", &[], None).await;
    assert_eq!(res.status, 200);
    let jwks = res.json();
    let key = &jwks["keys"][0];
    let mut names: Vec<&String> = key.as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(
        names,
        ["alg", "e", "kid", "kty", "n", "use"],
        "public half only"
    );

    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS512);
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
        key["n"].as_str().unwrap(),
        key["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS512);
    validation.set_issuer(&[f.app.settings.issuer()]);
    let claims = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["owner"], json!({"id": id, "type": "Customer"}));
    assert_eq!(claims["application"]["client_id"], json!(store.id));
    assert_eq!(claims["application"]["kind"], "sales_channel");
    assert_eq!(
        claims["organization"]["slug"],
        json!(f.app.settings.organization)
    );
    assert_eq!(claims["scope"], "market:all");
    assert_eq!(claims["test"], true);
    // Another token's signature does not verify this payload.
    let mut tampered: Vec<&str> = token.split('.').collect();
    let other = f.integration.split('.').nth(2).unwrap();
    tampered[2] = other;
    assert!(jsonwebtoken::decode::<Value>(&tampered.join("."), &decoding, &validation).is_err());
    f.app.stop().await;
}

async fn sign_in_is_throttled_per_address_and_per_client(db: TestDb) {
    // Day-long windows: counters are fixed windows aligned to the clock, and a boundary
    // crossed mid-test would reset them.
    let f = start_with(&db, |s| {
        s.limit_signin_email = "2/1d".parse_limits();
        s.limit_signin_client = "8/1d".parse_limits();
    })
    .await;
    let store = create_client(&f, "sales_channel").await;
    f.customer("jane@example.com").await;
    for _ in 0..2 {
        let res = password_grant(&f, &store, "jane@example.com", "wrong").await;
        assert_eq!(oauth_error(&res), (400, "invalid_grant".into()));
    }
    // Over the per-address limit even the right password is refused, under any spelling.
    let res = password_grant(&f, &store, "JANE@example.com", PASSWORD).await;
    assert_eq!(oauth_error(&res), (429, "too_many_requests".into()));
    let retry: u64 = res.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    // Another address is not throttled by it; unknown ones count alike.
    for _ in 0..2 {
        let res = password_grant(&f, &store, "ghost@example.com", "wrong").await;
        assert_eq!(oauth_error(&res), (400, "invalid_grant".into()));
    }
    let res = password_grant(&f, &store, "ghost@example.com", "wrong").await;
    assert_eq!(oauth_error(&res), (429, "too_many_requests".into()));
    // Six token requests so far from this address; the eighth is the last allowed.
    for _ in 0..2 {
        let res = oauth(
            &f,
            "/oauth/token",
            &json!({"grant_type": "client_credentials", "client_id": store.id}),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.body);
    }
    let res = oauth(
        &f,
        "/oauth/token",
        &json!({"grant_type": "client_credentials", "client_id": store.id}),
    )
    .await;
    assert_eq!(oauth_error(&res), (429, "too_many_requests".into()));
    let retry: u64 = res.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    f.app.stop().await;
}

async fn a_revoked_client_is_refused_at_once(db: TestDb) {
    // No cached session verdicts: the revocation must show on the very next request.
    let f = start_with(&db, |s| s.token_recheck = TimeDelta::zero()).await;
    let backend = create_client(&f, "integration").await;
    let store = create_client(&f, "sales_channel").await;
    f.customer("jane@example.com").await;
    let token = oauth(
        &f,
        "/oauth/token",
        &json!({"grant_type": "client_credentials", "client_id": backend.id, "client_secret": backend.secret}),
    )
    .await
    .json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let signed_in = sign_in(&f, &store, "jane@example.com", PASSWORD).await;
    assert_eq!(f.client.get("/api/customers", &token).await.status, 200);

    let revoked = cli(&f, &["client", "revoke", &backend.id]).await;
    assert_eq!(revoked["client_id"], json!(backend.id));
    cli(&f, &["client", "revoke", &store.id]).await;
    let res = f.client.get("/api/customers", &token).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.error_code().as_deref(), Some("INVALID_TOKEN"));
    let res = refresh(&f, &store, signed_in["refresh_token"].as_str().unwrap()).await;
    assert_eq!(oauth_error(&res), (401, "invalid_client".into()));
    let listed = cli(&f, &["client", "list"]).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["revoked_at"].is_string()),
        "{listed}"
    );
    f.app.stop().await;
}

/// Parses a limit setting the way `PWRESET_LIMIT_*` does.
trait ParseLimits {
    fn parse_limits(&self) -> pwreset_app::config::LimitList;
}

impl ParseLimits for &str {
    fn parse_limits(&self) -> pwreset_app::config::LimitList {
        let cli = Cli::try_parse_from(["pwreset", "--limit-signin-email", self]).unwrap();
        cli.settings.limit_signin_email
    }
}
