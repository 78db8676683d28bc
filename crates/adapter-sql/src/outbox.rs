//! The transactional outbox over SQL: rows written inside the state change's transaction,
//! claimed by workers with a lease (`FOR UPDATE SKIP LOCKED` on Postgres; SQLite's single
//! writer serializes claims), and cleared of their secret once delivered or dead.

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use chrono::TimeDelta;
use pwreset_domain::ports::{OutboxStore, StoreError};
use pwreset_domain::{
    CustomerId, EmailAddress, EventId, EventKind, Job, Metadata, Mode, Notification, OutboxId,
    OutboxMessage, PasswordReset, Payload, Reference, ResetEvent, ResetId, ResetToken, Timestamp,
    TokenDigest, WebhookTopic,
};
use serde_json::{Value, json};

use crate::SqlStore;
use crate::driver::{DbError, Dialect, Executor, Ty, Val};
use crate::resets::{db, insert_event};

const COLUMNS: &str =
    "id, mode, reset_id, kind, topic, recipient, secret, payload, attempts, created_at";
const TYPES: &[Ty] = &[
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

fn opt_ts(t: Option<&Timestamp>) -> Value {
    t.map_or(Value::Null, ts)
}

fn parse_ts(v: &Value) -> anyhow::Result<Timestamp> {
    let s = v
        .as_str()
        .ok_or_else(|| anyhow!("timestamp is not a string"))?;
    Ok(chrono::DateTime::parse_from_rfc3339(s)?.to_utc())
}

fn parse_opt_ts(v: &Value) -> anyhow::Result<Option<Timestamp>> {
    if v.is_null() {
        Ok(None)
    } else {
        parse_ts(v).map(Some)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// The reset as it stood, for webhook payloads. No token: only its digest exists.
fn snapshot(r: &PasswordReset) -> Value {
    json!({
        "id": r.id.to_string(),
        "mode": r.mode.as_str(),
        "customer_id": r.customer_id.to_string(),
        "customer_email": r.customer_email.as_str(),
        "token_digest": hex(r.token_digest.as_bytes()),
        "expires_at": ts(&r.expires_at),
        "reset_password_at": opt_ts(r.reset_password_at.as_ref()),
        "invalidated_at": opt_ts(r.invalidated_at.as_ref()),
        "failed_attempts": r.failed_attempts,
        "reference": r.reference.as_ref().map(Reference::as_str),
        "reference_origin": r.reference_origin.as_ref().map(Reference::as_str),
        "metadata": r.metadata.as_ref().map(Metadata::to_value),
        "created_at": ts(&r.created_at),
        "updated_at": ts(&r.updated_at),
    })
}

fn text<'a>(v: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    v[key]
        .as_str()
        .ok_or_else(|| anyhow!("snapshot field {key} is missing"))
}

fn reference(v: &Value) -> anyhow::Result<Option<Reference>> {
    v.as_str()
        .map(Reference::parse)
        .transpose()
        .context("snapshot reference")
}

fn from_snapshot(v: &Value) -> anyhow::Result<PasswordReset> {
    Ok(PasswordReset {
        id: text(v, "id")?.parse().map_err(|_| anyhow!("snapshot id"))?,
        mode: text(v, "mode")?
            .parse()
            .map_err(|_| anyhow!("snapshot mode"))?,
        customer_id: text(v, "customer_id")?
            .parse::<CustomerId>()
            .map_err(|_| anyhow!("snapshot customer_id"))?,
        customer_email: EmailAddress::parse(text(v, "customer_email")?)?,
        token_digest: unhex(text(v, "token_digest")?)
            .as_deref()
            .and_then(TokenDigest::from_slice)
            .ok_or_else(|| anyhow!("snapshot token_digest"))?,
        expires_at: parse_ts(&v["expires_at"])?,
        reset_password_at: parse_opt_ts(&v["reset_password_at"])?,
        invalidated_at: parse_opt_ts(&v["invalidated_at"])?,
        failed_attempts: v["failed_attempts"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or_default(),
        reference: reference(&v["reference"])?,
        reference_origin: reference(&v["reference_origin"])?,
        metadata: match &v["metadata"] {
            Value::Null => None,
            m => Some(Metadata::parse(m.clone())?),
        },
        created_at: parse_ts(&v["created_at"])?,
        updated_at: parse_ts(&v["updated_at"])?,
    })
}

/// The columns an enqueued message sets; [`outbox_row`] gives the values of the first ten,
/// and the last two are `'pending'` and the tenth value again.
pub(crate) const INSERT_COLUMNS: &str = "id, mode, reset_id, kind, topic, recipient, secret, payload, attempts, created_at, \
     status, next_attempt_at";

/// The `$n, ..., 'pending', $n+9` list for one message whose ten values start at `$first`.
pub(crate) fn outbox_list(first: usize) -> String {
    let p: Vec<String> = (first..first + 10).map(|i| format!("${i}")).collect();
    format!("{}, 'pending', ${}", p.join(", "), first + 9)
}

/// [`outbox_list`] as a `VALUES` tuple.
pub(crate) fn outbox_values(first: usize) -> String {
    format!("({})", outbox_list(first))
}

/// The ten bound values of one message, in [`INSERT_COLUMNS`] order.
pub(crate) fn outbox_row(m: &OutboxMessage) -> Vec<Val> {
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
        m.created_at.into(),
    ]
}

/// Enqueues messages inside the caller's transaction.
pub(crate) async fn insert_outbox(
    ex: &mut dyn Executor,
    messages: &[OutboxMessage],
) -> Result<(), DbError> {
    for m in messages {
        ex.execute(
            &format!(
                "INSERT INTO outbox ({INSERT_COLUMNS}) VALUES {}",
                outbox_values(1)
            ),
            outbox_row(m),
        )
        .await?;
    }
    Ok(())
}

fn message_from_row(row: Vec<Val>) -> anyhow::Result<OutboxMessage> {
    let mut it = row.into_iter();
    let mut next = || it.next().ok_or_else(|| anyhow!("outbox row too short"));
    let (Val::Uuid(id), Val::Text(mode), Val::Uuid(reset_id), Val::Text(kind)) =
        (next()?, next()?, next()?, next()?)
    else {
        return Err(anyhow!("outbox row has unexpected types"));
    };
    let opt_text = |v: Val| match v {
        Val::Text(s) => Some(s),
        _ => None,
    };
    let topic = opt_text(next()?);
    let recipient = opt_text(next()?);
    let secret = opt_text(next()?);
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
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        created_at,
    })
}

/// Records an event about the message's reset (the event table keeps events of deleted
/// resets until they are purged, so this never fails for a missing reset).
async fn message_event(
    ex: &mut dyn Executor,
    id: OutboxId,
    kind: EventKind,
    now: Timestamp,
) -> Result<(), DbError> {
    let rows = ex
        .fetch(
            "SELECT mode, reset_id, kind, topic FROM outbox WHERE id = $1",
            vec![id.as_uuid().into()],
            &[Ty::Text, Ty::Uuid, Ty::Text, Ty::Text],
        )
        .await?;
    let Some(row) = rows.into_iter().next() else {
        return Ok(());
    };
    let (Some(Val::Text(mode)), Some(Val::Uuid(reset_id)), Some(Val::Text(k)), topic) = (
        row.first().cloned(),
        row.get(1).cloned(),
        row.get(2).cloned(),
        row.get(3).cloned(),
    ) else {
        return Ok(());
    };
    let reason = match topic {
        Some(Val::Text(t)) => t,
        _ => k,
    };
    let event = ResetEvent {
        id: EventId::new_at(now),
        reset_id: ResetId::from_uuid(reset_id),
        mode: mode
            .parse()
            .map_err(|_| DbError::Other(anyhow!("outbox mode")))?,
        kind,
        reason: Some(reason),
        client_ip: None,
        created_at: now,
    };
    insert_event(ex, &event).await
}

#[async_trait]
impl OutboxStore for SqlStore {
    async fn enqueue(&self, messages: &[OutboxMessage]) -> Result<(), StoreError> {
        let mut tx = self.driver.begin().await.map_err(db)?;
        insert_outbox(&mut *tx, messages).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn claim(
        &self,
        now: Timestamp,
        lease: TimeDelta,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let lock = match self.driver.dialect() {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "UPDATE outbox SET claimed_until = $1, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' \
             AND next_attempt_at <= $2 AND (claimed_until IS NULL OR claimed_until <= $2) \
             ORDER BY next_attempt_at, id LIMIT $3{lock}) RETURNING {COLUMNS}"
        );
        let mut tx = self.driver.begin().await.map_err(db)?;
        let rows = tx
            .fetch(
                &sql,
                vec![(now + lease).into(), now.into(), i64::from(limit).into()],
                TYPES,
            )
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let mut messages = rows
            .into_iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::unexpected)?;
        messages.sort_by_key(|m| (m.created_at, m.id));
        Ok(messages)
    }

    async fn delivered(&self, id: OutboxId, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.driver.begin().await.map_err(db)?;
        tx.execute(
            "UPDATE outbox SET status = 'delivered', secret = NULL, claimed_until = NULL, \
             finished_at = $1 WHERE id = $2",
            vec![now.into(), id.as_uuid().into()],
        )
        .await
        .map_err(db)?;
        message_event(&mut *tx, id, EventKind::NotificationDelivered, now)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn failed(
        &self,
        id: OutboxId,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(1000).collect();
        let mut tx = self.driver.begin().await.map_err(db)?;
        match retry_at {
            Some(at) => {
                tx.execute(
                    "UPDATE outbox SET next_attempt_at = $1, claimed_until = NULL, last_error = $2 \
                     WHERE id = $3",
                    vec![at.into(), error.into(), id.as_uuid().into()],
                )
                .await
                .map_err(db)?;
            }
            None => {
                tx.execute(
                    "UPDATE outbox SET status = 'dead', secret = NULL, claimed_until = NULL, \
                     last_error = $1, finished_at = $2 WHERE id = $3",
                    vec![error.into(), now.into(), id.as_uuid().into()],
                )
                .await
                .map_err(db)?;
                message_event(&mut *tx, id, EventKind::NotificationDead, now)
                    .await
                    .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
