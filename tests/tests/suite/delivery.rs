//! Delivery with real parts: a real SMTP conversation with a local server, and a real
//! HTTP receiver for webhooks that checks the signature. Each case runs once per database.

use std::time::{Duration, Instant};

use pwreset_app::config::Delivery;
use pwreset_tests::TestDb;
use pwreset_tests::sinks::{SmtpSink, WebhookSink};
use serde_json::Value;

use crate::blackbox::{Fixture, reset_doc, start_with};

macro_rules! delivery {
    ($($case:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    pwreset_tests::with_db(pwreset_tests::Backend::Postgres, super::$case).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    pwreset_tests::with_db(pwreset_tests::Backend::Sqlite, super::$case).await;
                }
            )+
        }
    };
}

delivery!(
    mail_delivery_sends_the_link_to_the_stored_address_and_a_notice_after_the_reset,
    with_the_smtp_server_down_create_answers_at_once_and_every_mail_arrives_once_when_it_returns,
    webhooks_are_signed_and_carry_the_resource_without_its_token,
);

const WAIT: Duration = Duration::from_secs(20);

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

async fn mail_delivery_sends_the_link_to_the_stored_address_and_a_notice_after_the_reset(
    db: TestDb,
) {
    let sink = SmtpSink::start("127.0.0.1:0").await;
    let f = mail_app(&db, sink.addr).await;
    f.customer("Jane.Doe@Example.com").await;
    let res = f
        .client
        .post(
            "/api/customer_password_resets",
            &f.integration,
            reset_doc("JANE.DOE@example.COM"),
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
    assert_eq!(
        mails[0].to,
        vec!["Jane.Doe@Example.com"],
        "only the stored address"
    );
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("Reset your password")
    );
    let (id, token) = link_parts(&mails[0].text());
    assert_eq!(id, reset_id);
    assert_eq!(token.len(), 43);

    let done = f.complete(&id, &token, "a brand new password").await;
    assert_eq!(done.status, 200, "{}", done.body);
    let mails = sink.wait_for(2, WAIT).await;
    assert_eq!(mails[1].to, vec!["Jane.Doe@Example.com"]);
    assert_eq!(
        mails[1].header("Subject").as_deref(),
        Some("Your password was changed")
    );
    assert_ne!(mails[0].header("Message-ID"), mails[1].header("Message-ID"));

    // Once delivered, no outbox row keeps the token; the trail shows both deliveries.
    let deadline = Instant::now() + WAIT;
    while pwreset_tests::outbox_secrets(&db).await > 0 {
        assert!(Instant::now() < deadline, "the token stayed in the outbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let logs = pwreset_tests::logs::text();
    assert!(!logs.contains(&token), "a log line holds the token");
    assert!(
        !logs.contains("Jane.Doe@Example.com"),
        "a log line holds the email"
    );
    f.app.stop().await;
    sink.stop();
}

async fn with_the_smtp_server_down_create_answers_at_once_and_every_mail_arrives_once_when_it_returns(
    db: TestDb,
) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let f = mail_app(&db, port).await;
    for i in 0..3 {
        let email = format!("user{i}@example.com");
        f.customer(&email).await;
        let started = Instant::now();
        let res = f
            .client
            .post(
                "/api/customer_password_resets",
                &f.integration,
                reset_doc(&email),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "create waited on the mail server: {:?}",
            started.elapsed()
        );
    }
    // Let the worker fail a few times against the closed port.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let sink = SmtpSink::start(&port.to_string()).await;
    let mails = sink.wait_for(3, WAIT).await;
    // Give any duplicate a chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mails_after = sink.received();
    assert_eq!(mails_after.len(), 3, "each message exactly once: {mails:?}");
    assert!(
        pwreset_tests::outbox_max_attempts(&db).await >= 2,
        "deliveries failed while the server was down and were retried"
    );
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
    let hooks = WebhookSink::start().await;
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
