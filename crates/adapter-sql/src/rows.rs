//! Column lists and the mapping between rows and domain entities.

use anyhow::{Context, anyhow};
use pwreset_domain::{
    Customer, CustomerId, EmailAddress, EventId, EventKind, Metadata, Mode, PasswordHash,
    PasswordReset, Reference, ResetEvent, ResetId, Timestamp, TokenDigest,
};
use uuid::Uuid;

use crate::driver::{Ty, Val};

pub(crate) const RESET_COLUMNS: &str = "id, mode, customer_id, customer_email, token_digest, \
    expires_at, reset_password_at, invalidated_at, failed_attempts, reference, \
    reference_origin, metadata, created_at, updated_at";

pub(crate) const RESET_TYPES: &[Ty] = &[
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

pub(crate) const CUSTOMER_COLUMNS: &str = "id, mode, email, password_hash, reference, \
    reference_origin, metadata, created_at, updated_at";

pub(crate) const CUSTOMER_TYPES: &[Ty] = &[
    Ty::Uuid,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Json,
    Ty::Time,
    Ty::Time,
];

pub(crate) const EVENT_COLUMNS: &str = "id, reset_id, mode, kind, reason, client_ip, created_at";

pub(crate) const EVENT_TYPES: &[Ty] = &[
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

pub(crate) fn reset_from_row(row: Vec<Val>) -> anyhow::Result<PasswordReset> {
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

pub(crate) fn customer_from_row(row: Vec<Val>) -> anyhow::Result<Customer> {
    let mut c = Cells(row.into_iter());
    Ok(Customer {
        id: CustomerId::from_uuid(c.uuid()?),
        mode: c.mode()?,
        email: c.email()?,
        password_hash: c.opt_text()?.map(PasswordHash::new),
        reference: c.reference()?,
        reference_origin: c.reference()?,
        metadata: c.metadata()?,
        created_at: c.time()?,
        updated_at: c.time()?,
    })
}

pub(crate) fn event_from_row(row: Vec<Val>) -> anyhow::Result<ResetEvent> {
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
        client_ip: c
            .opt_text()?
            .map(|s| s.parse().context("stored client ip is invalid"))
            .transpose()?,
        created_at: c.time()?,
    })
}

pub(crate) fn text_of(r: Option<&Reference>) -> Val {
    r.map(|r| r.as_str().to_owned()).into()
}

pub(crate) fn json_of(m: Option<&Metadata>) -> Val {
    m.map_or(Val::Null(Ty::Json), |m| Val::Json(m.to_value()))
}
