//! Column lists and the mapping between entities and rows: the values a statement binds
//! for an entity, and the entity decoded from a row (an error, never a default, for a row
//! that does not fit).

use std::net::IpAddr;

use anyhow::{Context, anyhow};
use pwreset_domain::{
    Client, ClientId, ClientKey, ClientKind, ClientName, Customer, CustomerId, EmailAddress,
    EventId, EventKind, Metadata, Mode, PasswordHash, PasswordReset, Reference, ResetEvent,
    ResetId, RowTrail, Session, SessionId, Timestamp, TokenDigest,
};
use uuid::Uuid;

use crate::value::{Ty, Val};

/// The columns of a reset that are read back; [`reset_values`] binds these and then
/// `email_normalized`.
pub const RESET_COLUMNS: &str = "id, mode, customer_id, customer_email, token_digest, \
    expires_at, reset_password_at, invalidated_at, failed_attempts, reference, \
    reference_origin, metadata, created_at, updated_at";

pub const RESET_TYPES: &[Ty] = &[
    Ty::Uuid,
    Ty::Text,
    Ty::Uuid,
    Ty::Text,
    Ty::Bytes,
    Ty::Time,
    Ty::Time,
    Ty::Time,
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Json,
    Ty::Time,
    Ty::Time,
];

pub const CUSTOMER_COLUMNS: &str = "id, mode, email, password_hash, password_version, \
    reference, reference_origin, metadata, created_at, updated_at";

pub const CUSTOMER_TYPES: &[Ty] = &[
    Ty::Uuid,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Json,
    Ty::Time,
    Ty::Time,
];

pub const CLIENT_COLUMNS: &str =
    "id, client_id, kind, mode, name, secret_digest, created_at, revoked_at";

pub const CLIENT_TYPES: &[Ty] = &[
    Ty::Uuid,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Bytes,
    Ty::Time,
    Ty::Time,
];

pub const SESSION_COLUMNS: &str =
    "id, client, mode, customer_id, password_version, created_at, expires_at, revoked_at";

pub const SESSION_TYPES: &[Ty] = &[
    Ty::Uuid,
    Ty::Uuid,
    Ty::Text,
    Ty::Uuid,
    Ty::Int,
    Ty::Time,
    Ty::Time,
    Ty::Time,
];

/// The columns of a reset that restate its `requested`, `completed` and `revoked` events
/// (see [`RowTrail`]), in the order [`trail_from_row`] reads them.
pub const TRAIL_COLUMNS: &str = "id, mode, created_at, requested_ip, reset_password_at, \
    completed_ip, invalidated_at, invalidated_reason";

pub const TRAIL_TYPES: &[Ty] = &[
    Ty::Uuid,
    Ty::Text,
    Ty::Time,
    Ty::Text,
    Ty::Time,
    Ty::Text,
    Ty::Time,
    Ty::Text,
];

pub const EVENT_COLUMNS: &str = "id, reset_id, mode, kind, reason, client_ip, created_at";

pub const EVENT_TYPES: &[Ty] = &[
    Ty::Uuid,
    Ty::Uuid,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Time,
];

/// Reads one row's values in order.
struct Cells(std::vec::IntoIter<Val>);

impl Cells {
    fn next(&mut self) -> anyhow::Result<Val> {
        self.0
            .next()
            .ok_or_else(|| anyhow!("row has too few columns"))
    }

    fn uuid(&mut self) -> anyhow::Result<Uuid> {
        match self.next()? {
            Val::Uuid(u) => Ok(u),
            other => Err(anyhow!("expected a uuid, got {other:?}")),
        }
    }

    fn opt_text(&mut self) -> anyhow::Result<Option<String>> {
        match self.next()? {
            Val::Text(s) => Ok(Some(s)),
            Val::Null(_) => Ok(None),
            other => Err(anyhow!("expected text, got {other:?}")),
        }
    }

    fn text(&mut self) -> anyhow::Result<String> {
        self.opt_text()?
            .ok_or_else(|| anyhow!("unexpected NULL text"))
    }

    fn opt_time(&mut self) -> anyhow::Result<Option<Timestamp>> {
        match self.next()? {
            Val::Time(t) => Ok(Some(t)),
            Val::Null(_) => Ok(None),
            other => Err(anyhow!("expected a timestamp, got {other:?}")),
        }
    }

    fn time(&mut self) -> anyhow::Result<Timestamp> {
        self.opt_time()?
            .ok_or_else(|| anyhow!("unexpected NULL timestamp"))
    }

    fn int(&mut self) -> anyhow::Result<i64> {
        match self.next()? {
            Val::Int(i) => Ok(i),
            other => Err(anyhow!("expected an integer, got {other:?}")),
        }
    }

    fn bytes(&mut self) -> anyhow::Result<Vec<u8>> {
        match self.next()? {
            Val::Bytes(b) => Ok(b),
            other => Err(anyhow!("expected bytes, got {other:?}")),
        }
    }

    fn opt_uuid(&mut self) -> anyhow::Result<Option<Uuid>> {
        match self.next()? {
            Val::Uuid(u) => Ok(Some(u)),
            Val::Null(_) => Ok(None),
            other => Err(anyhow!("expected a uuid, got {other:?}")),
        }
    }

    fn opt_bytes(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        match self.next()? {
            Val::Bytes(b) => Ok(Some(b)),
            Val::Null(_) => Ok(None),
            other => Err(anyhow!("expected bytes, got {other:?}")),
        }
    }

    fn opt_json(&mut self) -> anyhow::Result<Option<serde_json::Value>> {
        match self.next()? {
            Val::Json(j) => Ok(Some(j)),
            Val::Null(_) => Ok(None),
            other => Err(anyhow!("expected JSON, got {other:?}")),
        }
    }

    fn mode(&mut self) -> anyhow::Result<Mode> {
        let s = self.text()?;
        s.parse()
            .map_err(|_| anyhow!("stored mode {s:?} is invalid"))
    }

    fn email(&mut self) -> anyhow::Result<EmailAddress> {
        EmailAddress::parse(&self.text()?).context("stored email is invalid")
    }

    fn reference(&mut self) -> anyhow::Result<Option<Reference>> {
        self.opt_text()?
            .map(|s| Reference::parse(&s).context("stored reference is invalid"))
            .transpose()
    }

    fn metadata(&mut self) -> anyhow::Result<Option<Metadata>> {
        self.opt_json()?
            .map(|j| Metadata::parse(j).context("stored metadata is invalid"))
            .transpose()
    }
}

/// Decodes a row selected with the reset column list.
///
/// # Errors
/// When a column is missing, has an unexpected type, or holds a value the domain refuses.
pub fn reset_from_row(row: Vec<Val>) -> anyhow::Result<PasswordReset> {
    let mut c = Cells(row.into_iter());
    Ok(PasswordReset {
        id: ResetId::from_uuid(c.uuid()?),
        mode: c.mode()?,
        customer_id: CustomerId::from_uuid(c.uuid()?),
        customer_email: c.email()?,
        token_digest: TokenDigest::from_slice(&c.bytes()?)
            .ok_or_else(|| anyhow!("stored token digest is not 32 bytes"))?,
        expires_at: c.time()?,
        reset_password_at: c.opt_time()?,
        invalidated_at: c.opt_time()?,
        failed_attempts: u32::try_from(c.int()?).context("failed_attempts out of range")?,
        reference: c.reference()?,
        reference_origin: c.reference()?,
        metadata: c.metadata()?,
        created_at: c.time()?,
        updated_at: c.time()?,
    })
}

/// Decodes a row selected with the customer column list.
///
/// # Errors
/// When a column is missing, has an unexpected type, or holds a value the domain refuses.
pub fn customer_from_row(row: Vec<Val>) -> anyhow::Result<Customer> {
    let mut c = Cells(row.into_iter());
    Ok(Customer {
        id: CustomerId::from_uuid(c.uuid()?),
        mode: c.mode()?,
        email: c.email()?,
        password_hash: c.opt_text()?.map(PasswordHash::new),
        password_version: c.int()?,
        reference: c.reference()?,
        reference_origin: c.reference()?,
        metadata: c.metadata()?,
        created_at: c.time()?,
        updated_at: c.time()?,
    })
}

/// Decodes a row selected with the client column list.
///
/// # Errors
/// When a column is missing, has an unexpected type, or holds a value the domain refuses.
pub fn client_from_row(row: Vec<Val>) -> anyhow::Result<Client> {
    let mut c = Cells(row.into_iter());
    Ok(Client {
        key: ClientKey::from_uuid(c.uuid()?),
        client_id: ClientId::parse(&c.text()?).context("stored client id is invalid")?,
        kind: {
            let k = c.text()?;
            ClientKind::parse(&k).ok_or_else(|| anyhow!("stored client kind {k:?} is invalid"))?
        },
        mode: c.mode()?,
        name: ClientName::parse(&c.text()?).context("stored client name is invalid")?,
        secret_digest: c
            .opt_bytes()?
            .map(|b| {
                TokenDigest::from_slice(&b)
                    .ok_or_else(|| anyhow!("stored secret digest is not 32 bytes"))
            })
            .transpose()?,
        created_at: c.time()?,
        revoked_at: c.opt_time()?,
    })
}

/// The values of [`CLIENT_COLUMNS`].
#[must_use]
pub fn client_values(c: &Client) -> Vec<Val> {
    vec![
        c.key.as_uuid().into(),
        c.client_id.as_str().into(),
        c.kind.as_str().into(),
        c.mode.as_str().into(),
        c.name.as_str().into(),
        c.secret_digest
            .map_or(Val::Null(Ty::Bytes), |d| Val::Bytes(d.as_bytes().to_vec())),
        c.created_at.into(),
        c.revoked_at.into(),
    ]
}

/// Decodes a row selected with the session column list.
///
/// # Errors
/// When a column is missing, has an unexpected type, or holds a value the domain refuses.
pub fn session_from_row(row: Vec<Val>) -> anyhow::Result<Session> {
    let mut c = Cells(row.into_iter());
    Ok(Session {
        id: SessionId::from_uuid(c.uuid()?),
        client: ClientKey::from_uuid(c.uuid()?),
        mode: c.mode()?,
        customer: c.opt_uuid()?.map(CustomerId::from_uuid),
        password_version: c.int()?,
        created_at: c.time()?,
        expires_at: c.time()?,
        revoked_at: c.opt_time()?,
    })
}

/// The values of [`SESSION_COLUMNS`].
#[must_use]
pub fn session_values(s: &Session) -> Vec<Val> {
    vec![
        s.id.as_uuid().into(),
        s.client.as_uuid().into(),
        s.mode.as_str().into(),
        s.customer.map(|c| c.as_uuid()).into(),
        s.password_version.into(),
        s.created_at.into(),
        s.expires_at.into(),
        s.revoked_at.into(),
    ]
}

/// Decodes a row selected with the event column list.
///
/// # Errors
/// When a column is missing, has an unexpected type, or holds a value the domain refuses.
pub fn event_from_row(row: Vec<Val>) -> anyhow::Result<ResetEvent> {
    let mut c = Cells(row.into_iter());
    Ok(ResetEvent {
        id: EventId::from_uuid(c.uuid()?),
        reset_id: ResetId::from_uuid(c.uuid()?),
        mode: c.mode()?,
        kind: {
            let k = c.text()?;
            EventKind::parse(&k).ok_or_else(|| anyhow!("stored event kind {k:?} is invalid"))?
        },
        reason: c.opt_text()?,
        client_ip: ip_of(c.opt_text()?)?,
        created_at: c.time()?,
    })
}

/// Decodes a row selected with [`TRAIL_COLUMNS`].
///
/// # Errors
/// When a column is missing, has an unexpected type, or holds a value the domain refuses.
pub fn trail_from_row(row: Vec<Val>) -> anyhow::Result<RowTrail> {
    let mut c = Cells(row.into_iter());
    let reset_id = ResetId::from_uuid(c.uuid()?);
    let mode = c.mode()?;
    let created_at = c.time()?;
    let requested_ip = ip_of(c.opt_text()?)?;
    let completed_at = c.opt_time()?;
    let completed_ip = ip_of(c.opt_text()?)?;
    let revoked_at = c.opt_time()?;
    let reason = c.opt_text()?;
    Ok(RowTrail {
        reset_id,
        mode,
        created_at,
        requested_ip,
        completed: completed_at.map(|at| (at, completed_ip)),
        revoked: revoked_at.map(|at| (at, reason)),
    })
}

fn ip_of(stored: Option<String>) -> anyhow::Result<Option<IpAddr>> {
    stored
        .map(|s| s.parse().context("stored client ip is invalid"))
        .transpose()
}

/// A client address as stored.
#[must_use]
pub fn ip_value(ip: Option<IpAddr>) -> Val {
    ip.map(|ip| ip.to_string()).into()
}

pub fn text_of(r: Option<&Reference>) -> Val {
    r.map(|r| r.as_str().to_owned()).into()
}

pub fn json_of(m: Option<&Metadata>) -> Val {
    m.map_or(Val::Null(Ty::Json), |m| Val::Json(m.to_value()))
}

/// The values of [`RESET_COLUMNS`] and then `email_normalized`, for an insert.
#[must_use]
pub fn reset_values(reset: &PasswordReset) -> Vec<Val> {
    vec![
        reset.id.as_uuid().into(),
        reset.mode.as_str().into(),
        reset.customer_id.as_uuid().into(),
        reset.customer_email.as_str().into(),
        Val::Bytes(reset.token_digest.as_bytes().to_vec()),
        reset.expires_at.into(),
        reset.reset_password_at.into(),
        reset.invalidated_at.into(),
        i64::from(reset.failed_attempts).into(),
        text_of(reset.reference.as_ref()),
        text_of(reset.reference_origin.as_ref()),
        json_of(reset.metadata.as_ref()),
        reset.created_at.into(),
        reset.updated_at.into(),
        reset.customer_email.normalized().into(),
    ]
}

/// The values of [`EVENT_COLUMNS`].
#[must_use]
pub fn event_values(e: &ResetEvent) -> Vec<Val> {
    vec![
        e.id.as_uuid().into(),
        e.reset_id.as_uuid().into(),
        e.mode.as_str().into(),
        e.kind.as_str().into(),
        e.reason.clone().into(),
        ip_value(e.client_ip),
        e.created_at.into(),
    ]
}

/// The values of [`CUSTOMER_COLUMNS`] and then `email_normalized`, for an insert.
#[must_use]
pub fn customer_values(c: &Customer) -> Vec<Val> {
    vec![
        c.id.as_uuid().into(),
        c.mode.as_str().into(),
        c.email.as_str().into(),
        c.password_hash
            .as_ref()
            .map(|h| h.as_str().to_owned())
            .into(),
        c.password_version.into(),
        text_of(c.reference.as_ref()),
        text_of(c.reference_origin.as_ref()),
        json_of(c.metadata.as_ref()),
        c.created_at.into(),
        c.updated_at.into(),
        c.email.normalized().into(),
    ]
}
