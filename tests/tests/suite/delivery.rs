//! Delivery with real parts: a real SMTP conversation with a local server, and a real
//! HTTP receiver for webhooks that checks the signature. Each case runs once per database.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pwreset_app::config::Delivery;
use pwreset_tests::sinks::{SmtpSink, WebhookSink};
use pwreset_tests::{TEST_DIGEST_KEY, TEST_SIGNING_KEY, TestDb, logs};
use serde_json::{Value, json};

use crate::blackbox::{Fixture, reset_doc, start_with};

per_backend!(
    mail_delivery_sends_the_link_to_the_stored_address_and_a_notice_after_the_reset,
    a_foreign_host_reaches_neither_the_mailed_link_nor_any_answer,
    with_the_smtp_server_down_create_still_answers_and_every_mail_arrives_once_when_it_returns,
    webhooks_are_signed_and_carry_the_resource_without_its_token,
    self_service_answers_alike_for_known_unknown_and_passwordless_addresses,
    self_service_answers_alike_while_the_mail_server_is_down,
    no_token_password_or_key_reaches_the_log_even_at_trace_level,
    a_mail_server_that_never_answers_costs_one_smtp_timeout_per_attempt,
);

const WAIT: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds, failing with `what` if it does not within `WAIT`.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn mail_app(db: &TestDb, smtp: std::net::SocketAddr) -> Fixture {
    start_with(db, |s| {
        s.delivery = Delivery::Mail;
        s.smtp_url = Some(format!("smtp://{smtp}?tls=none"));
        s.mail_from = "Shop <no-reply@shop.test>".into();
        s.public_url = Some("https://shop.test".into());
    })
    .await
}

/// `(id, token)` from the reset link in a mail.
fn link_parts(text: &str) -> (String, String) {
    let start = text
        .find("https://shop.test/reset-password?id=")
        .unwrap_or_else(|| panic!("no reset link in {text}"));
    let link: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<')
        .collect();
    let query = link.split_once('?').unwrap().1.replace("&amp;", "&");
    let mut id = String::new();
    let mut token = String::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("id", v)) => id = v.to_owned(),
            Some(("token", v)) => token = v.to_owned(),
            _ => {}
        }
    }
    (id, token)
}

/// Security item 18: links come from configuration (`PWRESET_PUBLIC_URL`), never from the
/// request's `Host` or `X-Forwarded-*` headers, in the mail, the API's `links` and the
/// pages' redirect.
async fn a_foreign_host_reaches_neither_the_mailed_link_nor_any_answer(db: TestDb) {
    let sink = SmtpSink::smtp("127.0.0.1:0").await;
    let f = mail_app(&db, sink.addr).await;
    f.customer("jane@example.com").await;
    let bearer = format!("Bearer {}", f.integration);
    let body = reset_doc("jane@example.com").to_string();
    let forged = [
        ("Host", "evil.example"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "http"),
        ("Forwarded", "host=evil.example;proto=http"),
    ];
    let mut headers = vec![
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/vnd.api+json"),
        ("Accept", "application/vnd.api+json"),
    ];
    headers.extend(forged);
    let res = pwreset_tests::http::send(
        f.app.addr,
        "POST",
        "/api/customer_password_resets",
        &headers,
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.body);
    assert!(!res.body.contains("evil.example"), "{}", res.body);
    assert!(
        res.body
            .contains("https://shop.test/api/customer_password_resets/"),
        "the resource's links use the configured URL: {}",
        res.body
    );

    let mail = sink.wait_for(1, WAIT).await[0].text();
    assert!(!mail.contains("evil.example"), "{mail}");
    let (id, token) = link_parts(&mail);
    assert_eq!(token.len(), 43, "{mail}");

    // The page that receives the link redirects to a path on this site, whatever the Host.
    let opened = pwreset_tests::http::send(
        f.app.addr,
        "GET",
        &format!("/reset-password?id={id}&token={token}"),
        &forged,
        None,
    )
    .await;
    assert_eq!(opened.status, 303, "{}", opened.body);
    assert_eq!(
        opened.header("location"),
        Some(format!("/reset-password?id={id}").as_str())
    );
}

async fn mail_delivery_sends_the_link_to_the_stored_address_and_a_notice_after_the_reset(
    db: TestDb,
) {
    let sink = SmtpSink::smtp("127.0.0.1:0").await;
    let f = mail_app(&db, sink.addr).await;
    // Unique per run, so the log audit below finds this run's address and nobody else's.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let stored = format!("Jane.Doe.{run}@Example.com");
    let sent = format!("JANE.DOE.{}@example.COM", run.to_uppercase());
    let lowercase = stored.to_lowercase();
    f.customer(&stored).await;
    let res = f
        .client
        .post(
            "/api/customer_password_resets",
            &f.integration,
            reset_doc(&sent),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    assert_eq!(
        res.json()["data"]["attributes"]["reset_password_token"],
        Value::Null,
        "with mail delivery the token never leaves in a response"
    );
    let reset_id = res.json()["data"]["id"].as_str().unwrap().to_owned();

    let mails = sink.wait_for(1, WAIT).await;
    assert_eq!(mails[0].to, vec![stored.clone()], "only the stored address");
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("Reset your password")
    );
    let (id, token) = link_parts(&mails[0].text());
    assert_eq!(id, reset_id);
    assert_eq!(token.len(), 43);
    // A couple of failed completions, so the log audit below covers them too.
    let wrong = format!(
        "{}{}",
        &token[..42],
        if token.ends_with('A') { 'E' } else { 'A' }
    );
    assert_eq!(
        f.complete(&id, &wrong, "a brand new password").await.status,
        422
    );
    assert_eq!(
        f.complete(&id, "not-a-token", "a brand new password")
            .await
            .status,
        422
    );

    let done = f.complete(&id, &token, "a brand new password").await;
    assert_eq!(done.status, 200, "{}", done.body);
    let mails = sink.wait_for(2, WAIT).await;
    assert_eq!(mails[1].to, vec![stored.clone()]);
    assert_eq!(
        mails[1].header("Subject").as_deref(),
        Some("Your password was changed")
    );
    // The reset ended every session (issue 11): the notice says so.
    assert!(
        mails[1].text().contains("you have been signed out"),
        "{}",
        mails[1].text()
    );
    assert_ne!(mails[0].header("Message-ID"), mails[1].header("Message-ID"));

    // Once delivered, no outbox row keeps the token; the trail shows both deliveries.
    eventually("no outbox row holding the token", || async {
        pwreset_tests::outbox_secrets(&db).await == 0
    })
    .await;
    let events = f
        .client
        .get(
            &format!("/api/customer_password_resets/{id}/events"),
            &f.integration,
        )
        .await
        .json();
    let delivered = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["attributes"]["name"] == "notification_delivered")
        .count();
    assert_eq!(delivered, 2);
    // A list query carrying the address and the token in its query string: the request is
    // logged (by its path), its query string is not.
    let marker = format!("query-string-{run}");
    let listed = f
        .client
        .get(
            &format!(
                "/api/customer_password_resets?filter[q][reference_eq]={marker}&filter[q][reset_password_token_eq]={token}&filter[q][customer_email_eq]={lowercase}"
            ),
            &f.integration,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);

    let logs = pwreset_tests::logs::text();
    assert!(
        logs.lines()
            .any(|l| l.contains("GET") && l.contains("/api/customer_password_resets")),
        "requests are logged"
    );
    let leaks: Vec<&str> = [
        ("the token", token.as_str()),
        ("the wrong token", wrong.as_str()),
        ("the address as stored", stored.as_str()),
        ("the address as sent", sent.as_str()),
        ("the address in lower case", lowercase.as_str()),
        ("the customer's first password", "an old password 1"),
        ("the new password", "a brand new password"),
        ("the query string", marker.as_str()),
    ]
    .into_iter()
    .filter(|(_, v)| logs.contains(v))
    .map(|(what, _)| what)
    .collect();
    assert!(leaks.is_empty(), "the log holds {leaks:?}");
    f.app.stop().await;
    sink.stop();
}

async fn with_the_smtp_server_down_create_still_answers_and_every_mail_arrives_once_when_it_returns(
    db: TestDb,
) {
    let sink = SmtpSink::smtp("127.0.0.1:0").await;
    sink.set_down(true);
    let f = mail_app(&db, sink.addr).await;
    for i in 0..3 {
        let email = format!("user{i}@example.com");
        f.customer(&email).await;
        // The mail server is down throughout: create does not wait for a delivery.
        let res = f
            .client
            .post(
                "/api/customer_password_resets",
                &f.integration,
                reset_doc(&email),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
    }
    eventually(
        "deliveries failing against the down server and retried",
        || async { pwreset_tests::outbox_max_attempts(&db).await >= 2 },
    )
    .await;
    assert!(sink.received().is_empty());
    sink.set_down(false);
    let mails = sink.wait_for(3, WAIT).await;
    // Nothing is left to send once no message is pending, so a duplicate would be here now.
    eventually("the outbox drained", || async {
        pwreset_tests::outbox_pending(&db).await == 0
    })
    .await;
    let mails_after = sink.received();
    assert_eq!(mails_after.len(), 3, "each message exactly once: {mails:?}");
    let mut recipients: Vec<String> = mails_after.iter().flat_map(|m| m.to.clone()).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        vec![
            "user0@example.com",
            "user1@example.com",
            "user2@example.com"
        ]
    );
    f.app.stop().await;
    sink.stop();
}

async fn webhooks_are_signed_and_carry_the_resource_without_its_token(db: TestDb) {
    let hooks = WebhookSink::webhooks().await;
    let secret = "whsec-test-secret";
    let f = start_with(&db, |s| {
        s.webhook_url = Some(hooks.url());
        s.webhook_secret = Some(secret.into());
    })
    .await;
    f.customer("jane@example.com").await;
    let (id, token) = f.reset("jane@example.com").await;
    assert_eq!(
        f.complete(&id, &token, "a brand new password").await.status,
        200
    );
    let gone = f
        .client
        .delete(
            &format!("/api/customer_password_resets/{id}"),
            &f.integration,
        )
        .await;
    assert_eq!(gone.status, 204);

    let received = hooks.wait_for(3, WAIT).await;
    let mut topics = Vec::new();
    for hook in &received {
        let signature = hook.header("X-CommerceLayer-Signature").expect("signed");
        assert_eq!(
            signature,
            pwreset_adapter_webhook::signature(secret.as_bytes(), &hook.body),
            "the signature verifies"
        );
        assert!(hook.header("X-Pwreset-Idempotency-Key").is_some());
        let body = String::from_utf8(hook.body.clone()).unwrap();
        assert!(!body.contains(&token), "the token is never in a webhook");
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["data"]["id"], id.as_str());
        assert_eq!(doc["data"]["type"], "customer_password_resets");
        assert_eq!(
            doc["data"]["attributes"]["reset_password_token"],
            Value::Null
        );
        topics.push(hook.header("X-CommerceLayer-Topic").unwrap().to_owned());
    }
    topics.sort();
    assert_eq!(
        topics,
        vec![
            "customer_password_resets.create",
            "customer_password_resets.destroy",
            "customer_password_resets.reset_password"
        ]
    );
    let completed = received
        .iter()
        .find(|h| {
            h.header("X-CommerceLayer-Topic") == Some("customer_password_resets.reset_password")
        })
        .unwrap();
    let doc: Value = serde_json::from_slice(&completed.body).unwrap();
    assert!(doc["data"]["attributes"]["reset_password_at"].is_string());
    f.app.stop().await;
    hooks.stop();
}

async fn self_service_app(db: &TestDb, smtp: std::net::SocketAddr) -> Fixture {
    start_with(db, |s| {
        s.delivery = Delivery::Mail;
        s.self_service = true;
        s.smtp_url = Some(format!("smtp://{smtp}?tls=none"));
        s.public_url = Some("https://shop.test".into());
        // The check sends hundreds of requests from one address.
        s.disable_rate_limits();
    })
    .await
}

async fn self_service_answers_alike_for_known_unknown_and_passwordless_addresses(db: TestDb) {
    const N: usize = 200;
    let sink = SmtpSink::smtp("127.0.0.1:0").await;
    let f = self_service_app(&db, sink.addr).await;
    for i in 0..N {
        f.customer(&format!("known{i}@example.com")).await;
    }
    let passwordless = f
        .client
        .post(
            "/api/customers",
            &f.integration,
            serde_json::json!({"data": {"type": "customers", "attributes": {"email": "guest@example.com"}}}),
        )
        .await;
    assert_eq!(passwordless.status, 201);

    // Equal time is measured by the benchmark (`pwreset-bench`, the self-service row),
    // not here: a test asserts what cannot vary with the machine's load.
    let ask = |email: String| {
        let client = &f.client;
        let token = f.sales.clone();
        async move {
            client
                .post("/api/customer_password_resets", &token, reset_doc(&email))
                .await
        }
    };
    // Warm up connections and caches on both paths.
    for i in 0..10 {
        ask(format!("warm{i}@example.com")).await;
    }
    let guest = ask("guest@example.com".into()).await;
    let mut bodies = std::collections::BTreeSet::new();
    bodies.insert(guest.body.clone());
    for i in 0..N {
        let pair = [
            format!("known{i}@example.com"),
            format!("nobody{i}@example.com"),
        ];
        for email in pair {
            let res = ask(email).await;
            assert_eq!(res.status, 202, "{}", res.body);
            bodies.insert(res.body);
        }
    }
    assert_eq!(bodies.len(), 1, "one body for every address: {bodies:?}");
    assert_eq!(guest.status, 202);
    // In the background: a mail for every customer (with or without a password), none for
    // the unknown addresses.
    let mails = sink.wait_for(N + 1, WAIT).await;
    // Nothing is left to send once no message or job is pending: count then.
    eventually("the outbox drained", || async {
        pwreset_tests::outbox_pending(&db).await == 0
    })
    .await;
    let mails_after = sink.received();
    assert_eq!(mails_after.len(), N + 1, "{} mails", mails.len());
    assert!(
        mails_after
            .iter()
            .all(|m| m.to[0].starts_with("known") || m.to[0] == "guest@example.com")
    );
    f.app.stop().await;
    sink.stop();
}

async fn self_service_answers_alike_while_the_mail_server_is_down(db: TestDb) {
    let sink = SmtpSink::smtp("127.0.0.1:0").await;
    sink.set_down(true);
    let f = self_service_app(&db, sink.addr).await;
    f.customer("jane@example.com").await;
    let mut bodies = std::collections::BTreeSet::new();
    for email in ["jane@example.com", "nobody@example.com"] {
        let res = f
            .client
            .post("/api/customer_password_resets", &f.sales, reset_doc(email))
            .await;
        assert_eq!(res.status, 202);
        bodies.insert(res.body);
    }
    assert_eq!(bodies.len(), 1);
    // The token still never shows up in an answer, and sales channels still cannot read.
    let list = f
        .client
        .get("/api/customer_password_resets", &f.sales)
        .await;
    assert_eq!(list.status, 401);
    f.app.stop().await;
    sink.stop();
}

/// Every secret one run configured, sent or received, in each form a log line could hold
/// it: as is, percent-encoded as in a URL (upper and lower case hex) and form-encoded.
#[derive(Debug, Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: &str, value: &str) {
        assert!(
            value.len() >= 8,
            "{what} is too short to search for: {value:?}"
        );
        let forms = [
            value.to_owned(),
            percent_encoded(value, false),
            percent_encoded(value, false).to_lowercase(),
            percent_encoded(value, true),
        ];
        for form in forms {
            if !self.0.iter().any(|(_, v)| *v == form) {
                self.0.push((what.to_owned(), form));
            }
        }
    }

    /// A key given as base64url: the text, the bytes as text, hex and `{:?}` of the bytes.
    fn add_key(&mut self, what: &str, base64url: &str) {
        self.add(what, base64url);
        let bytes = base64url_decode(base64url);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            self.add(what, text);
        }
        self.add(
            what,
            &bytes.iter().fold(String::new(), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            }),
        );
        self.add(what, &format!("{bytes:?}"));
    }

    /// Fails naming every secret found in the captured log, with the lines holding it.
    fn assert_none_logged(&self) {
        let log = logs::text();
        assert!(!log.is_empty(), "logs are being captured");
        let leaks: Vec<String> = self
            .0
            .iter()
            .filter(|(_, v)| log.contains(v.as_str()))
            .map(|(what, v)| format!("{what} {v:?} in {:#?}", logs::lines_with(v)))
            .collect();
        assert!(
            leaks.is_empty(),
            "{} of {} secret forms are in the log:\n{}",
            leaks.len(),
            self.0.len(),
            leaks.join("\n")
        );
    }
}

/// `s` as a URL would carry it: every byte outside the unreserved set as `%XX`; with
/// `form`, a space as `+`.
fn percent_encoded(s: &str, form: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            b' ' if form => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

fn base64url_decode(s: &str) -> Vec<u8> {
    let (mut acc, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {s}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from(acc >> bits).expect("one byte"));
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// `token` with its last character changed to another canonical one.
fn wrong_token(token: &str) -> String {
    let last = if token.ends_with('A') { 'E' } else { 'A' };
    format!("{}{last}", &token[..42])
}

async fn customer_with_password(f: &Fixture, email: &str, password: &str) -> String {
    let res = f
        .client
        .post(
            "/api/customers",
            &f.integration,
            json!({"data": {"type": "customers", "attributes": {"email": email, "password": password}}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.json()["data"]["id"].as_str().unwrap().to_owned()
}

/// The development mailer's `.eml` files in `dir`, oldest first, once there are `n`.
async fn eml_files(dir: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        if files.len() >= n {
            files.sort();
            return files
                .iter()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .unwrap()
                        .replace("=\r\n", "")
                        .replace("=3D", "=")
                })
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} mails in {}, found {}",
            dir.display(),
            files.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn no_token_password_or_key_reaches_the_log_even_at_trace_level(db: TestDb) {
    const WEBHOOK_SECRET: &str = "whsec-log-audit-3f9c1e";
    const SMTP_PASSWORD: &str = "smtp pässword/log-audit&7";
    let mut secrets = Secrets::default();
    for line in TEST_SIGNING_KEY
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
    {
        secrets.add("a line of the signing key", line);
    }
    secrets.add_key("the token digest key", TEST_DIGEST_KEY);
    secrets.add("the webhook secret", WEBHOOK_SECRET);
    secrets.add("the SMTP password", SMTP_PASSWORD);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let one = format!("log.one.{run}@example.com");
    let two = format!("log.two.{run}@example.com");

    // 1. The defaults: token delivery, no SMTP server, so the development mailer writes
    // each mail to a file.
    let data_dir = std::env::temp_dir().join(format!("pwreset-log-audit-{run}"));
    let mail_dir = data_dir.join("mail");
    let dev = start_with(&db, |s| {
        assert_eq!(s.delivery, Delivery::Token, "token delivery is the default");
        assert!(s.smtp_url.is_none());
        s.mail_preview = true;
        s.data_dir = data_dir.clone();
        s.public_url = Some("https://shop.test".into());
    })
    .await;
    for f in [&dev.integration, &dev.sales] {
        secrets.add("an API credential", f);
    }
    let password = format!("Créé au départ {run}");
    secrets.add("a customer password (create)", &password);
    let customer = customer_with_password(&dev, &one, &password).await;
    let password = format!("Changé par PATCH & co {run}");
    secrets.add("a customer password (update)", &password);
    let res = dev
        .client
        .patch(
            &format!("/api/customers/{customer}"),
            &dev.integration,
            json!({"data": {"type": "customers", "id": customer, "attributes": {"password": password}}}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let (id, token) = dev.reset(&one).await;
    secrets.add("a token from a create response", &token);
    let mails = eml_files(&mail_dir, 1).await;
    let (mailed_id, mailed_token) = link_parts(&mails[0]);
    assert_eq!(
        (mailed_id.as_str(), mailed_token.as_str()),
        (id.as_str(), token.as_str()),
        "the development mailer wrote the reset link"
    );
    // The link's path and query, as a browser would ask for it if the link pointed here:
    // the hosted page takes the token out of the address at once.
    let clicked = pwreset_tests::http::send(
        dev.app.addr,
        "GET",
        &format!("/reset-password?id={id}&token={token}"),
        &[],
        None,
    )
    .await;
    assert_eq!(clicked.status, 303, "{}", clicked.body);
    assert_eq!(
        clicked.header("location"),
        Some(format!("/reset-password?id={id}").as_str())
    );
    let wrong = wrong_token(&token);
    secrets.add("a wrong token", &wrong);
    let password = format!("Mot de passe refusé {run}");
    secrets.add("a password sent with a wrong token", &password);
    assert_eq!(dev.complete(&id, &wrong, &password).await.status, 422);
    let password = format!("Nouveau mot de passe {run}");
    secrets.add("a reset password (development mailer)", &password);
    let done = dev.complete(&id, &token, &password).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let mails = eml_files(&mail_dir, 2).await;
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Your password was changed"))
    );
    dev.app.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);

    // 2. Mail over SMTP, self-service, signed webhooks.
    let sink = SmtpSink::smtp("127.0.0.1:0").await;
    let hooks = WebhookSink::webhooks().await;
    let hooks_url = hooks.url();
    let mail = start_with(&db, |s| {
        s.delivery = Delivery::Mail;
        s.self_service = true;
        s.smtp_url = Some(format!("smtp://{}?tls=none", sink.addr));
        s.public_url = Some("https://shop.test".into());
        s.webhook_url = Some(hooks_url);
        s.webhook_secret = Some(WEBHOOK_SECRET.into());
    })
    .await;
    for f in [&mail.integration, &mail.sales] {
        secrets.add("an API credential", f);
    }
    let password = format!("Zweites Kundenkennwort {run}");
    secrets.add("a customer password (create)", &password);
    customer_with_password(&mail, &two, &password).await;
    let res = mail
        .client
        .post(
            "/api/customer_password_resets",
            &mail.integration,
            reset_doc(&two),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let mails = sink.wait_for(1, WAIT).await;
    let (by_integration, token) = link_parts(&mails[0].text());
    secrets.add("a mailed token", &token);
    for email in [one.clone(), format!("nobody.{run}@example.com")] {
        let res = mail
            .client
            .post(
                "/api/customer_password_resets",
                &mail.sales,
                reset_doc(&email),
            )
            .await;
        assert_eq!(res.status, 202, "{}", res.body);
    }
    let mails = sink.wait_for(2, WAIT).await;
    let (self_served, self_token) = link_parts(&mails[1].text());
    assert_eq!(mails[1].to, vec![one.clone()]);
    secrets.add("a self-service token", &self_token);
    let wrong = wrong_token(&self_token);
    secrets.add("a wrong token", &wrong);
    let password = format!("Falsches Token, Kennwort {run}");
    secrets.add("a password sent with a wrong token", &password);
    assert_eq!(
        mail.complete(&self_served, &wrong, &password).await.status,
        422
    );
    for (id, token) in [(&by_integration, &token), (&self_served, &self_token)] {
        let password = format!("Neues Kennwort für {id}");
        secrets.add("a reset password (SMTP)", &password);
        let done = mail.complete(id, token, &password).await;
        assert_eq!(done.status, 200, "{}", done.body);
    }
    sink.wait_for(4, WAIT).await;
    hooks.wait_for(4, WAIT).await;
    mail.app.stop().await;
    sink.stop();
    hooks.stop();

    // 3. An SMTP server that wants a password (this one offers no way to log in, so every
    // delivery fails after the greeting and is retried).
    let sink = SmtpSink::smtp("127.0.0.1:0").await;
    let authed = start_with(&db, |s| {
        s.delivery = Delivery::Mail;
        s.smtp_url = Some(format!(
            "smtp://log-audit:{}@{}?tls=none",
            percent_encoded(SMTP_PASSWORD, false),
            sink.addr
        ));
        s.public_url = Some("https://shop.test".into());
    })
    .await;
    let res = authed
        .client
        .post(
            "/api/customer_password_resets",
            &authed.integration,
            reset_doc(&two),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    eventually("the failing delivery retried", || async {
        pwreset_tests::outbox_max_attempts(&db).await >= 2
    })
    .await;
    assert!(
        sink.received().is_empty(),
        "nothing was sent without logging in"
    );
    authed.app.stop().await;
    sink.stop();

    secrets.assert_none_logged();
}

/// A mail server that accepts connections and never says a word: each delivery attempt
/// ends at PWRESET_SMTP_TIMEOUT (1 s here; 10 s by default, which would not fit two
/// attempts into the wait below) and is retried, and creates keep answering meanwhile.
async fn a_mail_server_that_never_answers_costs_one_smtp_timeout_per_attempt(db: TestDb) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let f = start_with(&db, |s| {
        s.delivery = Delivery::Mail;
        s.smtp_url = Some(format!("smtp://{addr}?tls=none"));
        s.smtp_timeout = chrono::TimeDelta::seconds(1);
        s.retry_base_ms = 100;
        s.mail_from = "Shop <no-reply@shop.test>".into();
        s.public_url = Some("https://shop.test".into());
    })
    .await;
    f.customer("jane@example.com").await;
    let res = f
        .client
        .post(
            "/api/customer_password_resets",
            &f.integration,
            reset_doc("jane@example.com"),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    eventually(
        "two delivery attempts, each ended by the SMTP timeout",
        || async { pwreset_tests::outbox_max_attempts(&db).await >= 2 },
    )
    .await;
    assert_eq!(
        pwreset_tests::outbox_pending(&db).await,
        1,
        "still to be sent"
    );
    f.customer("john@example.com").await;
    let res = f
        .client
        .post(
            "/api/customer_password_resets",
            &f.integration,
            reset_doc("john@example.com"),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    f.app.stop().await;
    silent.abort();
}
