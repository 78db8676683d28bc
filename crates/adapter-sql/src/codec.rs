//! The outbox's row format: the values a message is stored as and the message decoded
//! from a row (an error for a row that does not fit), including the reset snapshot that
//! webhook messages carry.

use anyhow::{Context, anyhow};
use pwreset_domain::{
    EmailAddress, Job, Mode, Notification, OutboxId, OutboxMessage, PasswordReset, Payload,
    ResetId, ResetToken, Timestamp, WebhookTopic,
};
use serde_json::{Value, json};

use crate::sql::Sql;
use crate::value::{Ty, Val};

/// The columns a claim reads back, decoded by [`message_from_row`].
pub const COLUMNS: &str =
    "id, mode, reset_id, kind, topic, recipient, secret, payload, attempts, created_at";
/// The types of [`COLUMNS`].
pub const TYPES: &[Ty] = &[
    Ty::Uuid,
    Ty::Text,
    Ty::Uuid,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Json,
    Ty::Int,
    Ty::Time,
];

fn ts(t: &Timestamp) -> Value {
    json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn parse_ts(v: &Value) -> anyhow::Result<Timestamp> {
    let s = v
        .as_str()
        .ok_or_else(|| anyhow!("timestamp is not a string"))?;
    Ok(chrono::DateTime::parse_from_rfc3339(s)?.to_utc())
}

/// The reset as it stood, for webhook payloads (its serde form). No token: only its
/// digest exists.
fn snapshot(r: &PasswordReset) -> Value {
    // Plain data with string keys only: serializing it into a JSON value cannot fail.
    serde_json::to_value(r).expect("a reset serializes to JSON")
}

/// The reset a [`snapshot`] holds, every field checked again.
fn from_snapshot(v: &Value) -> anyhow::Result<PasswordReset> {
    serde_json::from_value(v.clone()).context("the webhook message's reset does not decode")
}

/// The columns an enqueued message sets; [`push_row`] binds their values.
pub const INSERT_COLUMNS: &str = "id, mode, reset_id, kind, topic, recipient, secret, payload, \
     attempts, created_at, status, next_attempt_at";

/// Appends the values of [`INSERT_COLUMNS`] for `m`, comma-separated (for a `VALUES` tuple
/// or a `SELECT` list): its ten values, `'pending'`, and its creation time again as the
/// first attempt's time.
pub fn push_row(sql: &mut Sql, m: &OutboxMessage) {
    sql.push_binds(row(m)).push(", ");
    let created = sql.bind(m.created_at);
    sql.push(&created).push(", 'pending', ").push(&created);
}

/// The first nine values of one message, in [`INSERT_COLUMNS`] order.
fn row(m: &OutboxMessage) -> Vec<Val> {
    let (kind, topic, recipient, secret, payload) = match &m.payload {
        Payload::Notification(Notification::ResetRequested {
            to,
            token,
            expires_at,
            ..
        }) => (
            "reset_requested",
            None,
            Some(to.as_str().to_owned()),
            Some(token.expose_secret().to_owned()),
            json!({ "expires_at": ts(expires_at) }),
        ),
        Payload::Notification(Notification::PasswordChanged { to, at, .. }) => (
            "password_changed",
            None,
            Some(to.as_str().to_owned()),
            None,
            json!({ "at": ts(at) }),
        ),
        Payload::Notification(Notification::Webhook { topic, reset }) => (
            "webhook",
            Some(topic.as_str().to_owned()),
            None,
            None,
            snapshot(reset),
        ),
        Payload::Job(Job::SelfServiceReset {
            email, client_ip, ..
        }) => (
            "self_service_request",
            None,
            Some(email.as_str().to_owned()),
            None,
            json!({ "client_ip": client_ip.map(|ip| ip.to_string()) }),
        ),
    };
    vec![
        m.id.as_uuid().into(),
        m.payload.mode().as_str().into(),
        m.payload.reset_id().as_uuid().into(),
        kind.into(),
        topic.into(),
        recipient.into(),
        secret.into(),
        Val::Json(payload),
        i64::from(m.attempts).into(),
    ]
}

/// The message a claimed row holds.
///
/// # Errors
/// When the row does not decode to a message.
pub fn message_from_row(row: Vec<Val>) -> anyhow::Result<OutboxMessage> {
    let mut it = row.into_iter();
    let mut next = || it.next().ok_or_else(|| anyhow!("outbox row too short"));
    let (Val::Uuid(id), Val::Text(mode), Val::Uuid(reset_id), Val::Text(kind)) =
        (next()?, next()?, next()?, next()?)
    else {
        return Err(anyhow!("outbox row has unexpected types"));
    };
    let opt_text = |v: Val| match v {
        Val::Text(s) => Ok(Some(s)),
        Val::Null(_) => Ok(None),
        other => Err(anyhow!("outbox text column holds {other:?}")),
    };
    let topic = opt_text(next()?)?;
    let recipient = opt_text(next()?)?;
    let secret = opt_text(next()?)?;
    let Val::Json(payload) = next()? else {
        return Err(anyhow!("outbox payload is not JSON"));
    };
    let Val::Int(attempts) = next()? else {
        return Err(anyhow!("outbox attempts is not an integer"));
    };
    let Val::Time(created_at) = next()? else {
        return Err(anyhow!("outbox created_at is not a time"));
    };
    let mode: Mode = mode.parse().map_err(|_| anyhow!("outbox mode"))?;
    let reset_id = ResetId::from_uuid(reset_id);
    let to = || -> anyhow::Result<EmailAddress> {
        Ok(EmailAddress::parse(
            recipient
                .as_deref()
                .ok_or_else(|| anyhow!("outbox recipient missing"))?,
        )?)
    };
    let payload = match kind.as_str() {
        "reset_requested" => Payload::Notification(Notification::ResetRequested {
            reset_id,
            mode,
            to: to()?,
            token: ResetToken::parse(
                secret
                    .as_deref()
                    .ok_or_else(|| anyhow!("pending reset mail lost its token"))?,
            )?,
            expires_at: parse_ts(&payload["expires_at"])?,
        }),
        "password_changed" => Payload::Notification(Notification::PasswordChanged {
            reset_id,
            mode,
            to: to()?,
            at: parse_ts(&payload["at"])?,
        }),
        "self_service_request" => Payload::Job(Job::SelfServiceReset {
            reset_id,
            mode,
            email: to()?,
            client_ip: payload["client_ip"]
                .as_str()
                .map(str::parse)
                .transpose()
                .map_err(|_| anyhow!("outbox client_ip"))?,
        }),
        "webhook" => Payload::Notification(Notification::Webhook {
            topic: topic
                .as_deref()
                .and_then(WebhookTopic::parse)
                .ok_or_else(|| anyhow!("outbox webhook topic"))?,
            reset: Box::new(from_snapshot(&payload)?),
        }),
        other => return Err(anyhow!("unknown outbox kind {other}")),
    };
    Ok(OutboxMessage {
        id: OutboxId::from_uuid(id),
        payload,
        attempts: u32::try_from(attempts)
            .map_err(|_| anyhow!("outbox attempts {attempts} out of range"))?,
        created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pwreset_domain::{CustomerId, Metadata, Reference, TokenDigest};

    #[test]
    fn snapshots_written_by_the_previous_release_still_decode() {
        // As the release before the serde form wrote them: millisecond RFC 3339 times.
        let old = json!({
            "id": "01a0c6a3-8a00-7000-8000-000000000001",
            "mode": "live",
            "customer_id": "01a0c6a3-8a00-7000-8000-000000000002",
            "customer_email": "Jane@example.com",
            "token_digest": "ab".repeat(32),
            "expires_at": "2026-03-01T10:00:00.000Z",
            "reset_password_at": null,
            "invalidated_at": "2026-03-01T09:30:00.250Z",
            "failed_attempts": 2,
            "reference": "r",
            "reference_origin": null,
            "metadata": {"a": 1},
            "created_at": "2026-03-01T09:00:00.000Z",
            "updated_at": "2026-03-01T09:30:00.250Z",
        });
        let r = from_snapshot(&old).unwrap();
        assert_eq!(r.customer_email.as_str(), "Jane@example.com");
        assert_eq!(r.token_digest, TokenDigest::from_bytes([0xab; 32]));
        assert_eq!(r.invalidated_at.unwrap().timestamp_subsec_millis(), 250);
        assert_eq!(r.failed_attempts, 2);
        assert_eq!(from_snapshot(&snapshot(&r)).unwrap(), r);
        // Every field is checked again: a bad address or digest is an error, not a default.
        let mut bad = old.clone();
        bad["customer_email"] = json!("not an address");
        assert!(from_snapshot(&bad).is_err());
        let mut bad = old;
        bad["token_digest"] = json!("abc");
        assert!(from_snapshot(&bad).is_err());
    }

    #[test]
    fn snapshots_round_trip() {
        let now = pwreset_domain::to_millis(chrono::Utc::now());
        let r = PasswordReset {
            id: ResetId::new_at(now),
            mode: Mode::Live,
            customer_id: CustomerId::new_at(now),
            customer_email: EmailAddress::parse("Jane@example.com").unwrap(),
            token_digest: TokenDigest::from_bytes([0xab; 32]),
            expires_at: now,
            reset_password_at: Some(now),
            invalidated_at: None,
            failed_attempts: 2,
            reference: Some(Reference::parse("r").unwrap()),
            reference_origin: None,
            metadata: Some(Metadata::parse(json!({"a": 1})).unwrap()),
            created_at: now,
            updated_at: now,
        };
        assert_eq!(from_snapshot(&snapshot(&r)).unwrap(), r);
    }
}
