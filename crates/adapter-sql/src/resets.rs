//! `ResetStore` over SQL.

use async_trait::async_trait;
use pwreset_domain::OutboxMessage;
use pwreset_domain::ports::{Completion, CompletionOutcome, CustomerStore, ResetStore, StoreError};
use pwreset_domain::{
    CustomerId, DetailsPatch, EmailAddress, EventId, EventKind, ListQuery, Mode, Page,
    PasswordReset, Patch, ResetDraft, ResetEvent, ResetField, ResetId, ResetSort, Timestamp,
};

use std::sync::LazyLock;

use crate::SqlStore;
use crate::driver::Dialect;
use crate::driver::{DbError, Executor, Ty, Val};
use crate::list::Sql;
use crate::outbox::{INSERT_COLUMNS, insert_outbox, outbox_list, outbox_row, outbox_values};
use crate::rows::EVENT_COLUMNS;
use crate::rows::{RESET_COLUMNS, RESET_TYPES, event_from_row, json_of, reset_from_row, text_of};

pub(crate) fn db(e: DbError) -> StoreError {
    match e {
        DbError::UniqueViolation => StoreError::unexpected(anyhow::anyhow!("unique violation")),
        DbError::Other(e) => StoreError::unexpected(e),
    }
}

static INSERT_RESET: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO password_resets ({RESET_COLUMNS}, email_normalized) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    )
});

/// The revocation of a customer's outstanding resets (`$2` mode, `at` the time) and its
/// events, as the first CTEs of the Postgres one-statement creates; `customer` is the SQL of
/// the customer's id. A data-modifying CTE sees the statement's one snapshot, so the new
/// reset is never among those it revokes. (Revocation events get random v4 ids here; every
/// other field is as on the transactional path.)
fn revoke_ctes(customer: &str, at: &str) -> String {
    format!(
        "revoked AS (UPDATE password_resets SET invalidated_at = {at}, updated_at = {at} \
         WHERE mode = $2 AND customer_id = {customer} AND reset_password_at IS NULL \
         AND invalidated_at IS NULL RETURNING id), \
         revoked_events AS (INSERT INTO reset_events ({EVENT_COLUMNS}) \
         SELECT gen_random_uuid(), id, $2, 'revoked', 'superseded', NULL, {at} FROM revoked)"
    )
}

/// Postgres only: revoke, insert the reset ($1-$15), its event ($16-$22) and `outbox`
/// messages (ten values each from $23) in one statement.
fn create_pg(outbox: usize) -> String {
    let mut sql = format!(
        "WITH {}, new_reset AS ({})",
        revoke_ctes("$3", "$13"),
        INSERT_RESET.as_str()
    );
    for i in 0..outbox {
        sql.push_str(&format!(
            ", outbox_{i} AS (INSERT INTO outbox ({INSERT_COLUMNS}) VALUES {})",
            outbox_values(23 + 10 * i)
        ));
    }
    sql.push_str(&format!(
        " INSERT INTO reset_events ({EVENT_COLUMNS}) VALUES ($16, $17, $18, $19, $20, $21, $22)"
    ));
    sql
}

/// [`create_pg`] for the outbox sizes a create has (nothing, a mail, a webhook, both), so
/// the hot path does not format its SQL on every request.
static CREATE_PG: LazyLock<[String; 3]> = LazyLock::new(|| [0, 1, 2].map(create_pg));

/// Postgres only: find the customer by mode ($2) and normalized address ($9), and if there
/// is one, revoke, insert the reset ($1-$8: id, mode, token digest, expiry, reference,
/// reference origin, metadata, creation time) and its event ($10-$16) for them; returns the
/// customer's id and stored address, or no row.
static CREATE_FOR_EMAIL_PG: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH customer AS (SELECT id, email FROM customers \
         WHERE mode = $2 AND email_normalized = $9), {}, \
         new_reset AS (INSERT INTO password_resets ({RESET_COLUMNS}, email_normalized) \
         SELECT $1, $2, customer.id, customer.email, $3, $4, NULL, NULL, 0, $5, $6, $7, \
         $8, $8, $9 FROM customer RETURNING id), \
         requested AS (INSERT INTO reset_events ({EVENT_COLUMNS}) \
         SELECT $10, $11, $12, $13, $14, $15, $16 FROM new_reset) \
         SELECT id, email FROM customer",
        revoke_ctes("(SELECT id FROM customer)", "$8")
    )
});

static FIND_RESET: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {RESET_COLUMNS} FROM password_resets WHERE mode = $1 AND id = $2")
});

/// The values of `INSERT_RESET`, $1 to $15.
fn reset_args(reset: &PasswordReset) -> Vec<Val> {
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

fn event_args(e: &ResetEvent) -> Vec<Val> {
    vec![
        e.id.as_uuid().into(),
        e.reset_id.as_uuid().into(),
        e.mode.as_str().into(),
        e.kind.as_str().into(),
        e.reason.clone().into(),
        e.client_ip.map(|ip| ip.to_string()).into(),
        e.created_at.into(),
    ]
}

pub(crate) async fn insert_event(ex: &mut dyn Executor, e: &ResetEvent) -> Result<(), DbError> {
    ex.execute(
        &format!("INSERT INTO reset_events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
        event_args(e),
    )
    .await
    .map(drop)
}

/// Resets that ended (used, revoked or expired) before `$1`. A reset cannot end before it
/// was created, so the `created_at` bound, with both modes named, lets the purge walk the
/// `(mode, created_at, id)` index over the old rows instead of scanning the whole table
/// every time it runs.
macro_rules! ended_before {
    () => {
        "mode IN ('test', 'live') AND created_at < $1 \
         AND (reset_password_at < $1 OR invalidated_at < $1 OR expires_at < $1)"
    };
}
const ENDED_BEFORE: &str = ended_before!();

/// The retention purge's delete of ended resets. Public for the query-plan test.
pub const PURGE_ENDED_RESETS: &str = concat!("DELETE FROM password_resets WHERE ", ended_before!());

/// Revokes the customer's outstanding resets other than `keep` and records why.
pub(crate) async fn revoke_outstanding(
    ex: &mut dyn Executor,
    mode: Mode,
    customer_id: uuid::Uuid,
    keep: Option<ResetId>,
    now: Timestamp,
    reason: &str,
) -> Result<(), DbError> {
    let keep = keep.map_or(uuid::Uuid::nil(), |k| k.as_uuid());
    let revoked = ex
        .fetch(
            "UPDATE password_resets SET invalidated_at = $1, updated_at = $1 \
             WHERE mode = $2 AND customer_id = $3 AND id <> $4 \
             AND reset_password_at IS NULL AND invalidated_at IS NULL RETURNING id",
            vec![
                now.into(),
                mode.as_str().into(),
                customer_id.into(),
                keep.into(),
            ],
            &[Ty::Uuid],
        )
        .await?;
    for row in revoked {
        let Some(Val::Uuid(id)) = row.into_iter().next() else {
            continue;
        };
        let event = ResetEvent {
            id: EventId::new_at(now),
            reset_id: ResetId::from_uuid(id),
            mode,
            kind: EventKind::Revoked,
            reason: Some(reason.to_owned()),
            client_ip: None,
            created_at: now,
        };
        insert_event(ex, &event).await?;
    }
    Ok(())
}

/// The conditional update that uses a reset: it matches only while the reset is
/// outstanding, unexpired at `c.now`, below the attempt cap and still has the digest that
/// was checked. Returns the SQL with its `mode` and `id` placeholders.
fn conditional_completion(c: &Completion) -> (Sql, String, String) {
    let mut sql = Sql::new("UPDATE password_resets SET reset_password_at = $1, updated_at = $1");
    sql.args.push(c.now.into());
    push_details(&mut sql, &c.details);
    let mode = sql.bind(c.mode.as_str());
    let id = sql.bind(c.reset_id.as_uuid());
    let digest = sql.bind(Val::Bytes(c.token_digest.as_bytes().to_vec()));
    let max = sql.bind(i64::from(c.max_failed_attempts));
    sql.push(&format!(
        " WHERE mode = {mode} AND id = {id} AND token_digest = {digest} \
         AND reset_password_at IS NULL AND invalidated_at IS NULL \
         AND expires_at >= $1 AND failed_attempts < {max} RETURNING {RESET_COLUMNS}"
    ));
    (sql, mode, id)
}

/// Postgres only: the whole completion in one statement. Every write after the conditional
/// update is gated on its row (`FROM done` / `EXISTS`), so a completion that loses a race,
/// or finds the reset used, revoked, expired or exhausted, writes nothing; all parts see
/// one snapshot and commit together. Returns the used reset, or no row.
fn complete_pg(c: &Completion) -> Sql {
    let (update, mode, id) = conditional_completion(c);
    let mut sql = Sql {
        text: format!("WITH done AS ({}), ", update.text),
        args: update.args,
    };
    let customer = sql.bind(c.customer_id.as_uuid());
    let hash = sql.bind(c.password_hash.as_str());
    sql.push(&format!(
        "password AS (UPDATE customers SET password_hash = {hash}, updated_at = $1 \
         WHERE mode = {mode} AND id = {customer} AND EXISTS (SELECT 1 FROM done)), \
         revoked AS (UPDATE password_resets SET invalidated_at = $1, updated_at = $1 \
         WHERE mode = {mode} AND customer_id = {customer} AND id <> {id} \
         AND reset_password_at IS NULL AND invalidated_at IS NULL \
         AND EXISTS (SELECT 1 FROM done) RETURNING id), \
         revoked_events AS (INSERT INTO reset_events ({EVENT_COLUMNS}) \
         SELECT gen_random_uuid(), id, {mode}, 'revoked', 'password_changed', NULL, $1 \
         FROM revoked)"
    ));
    let event: Vec<String> = event_args(&c.event)
        .into_iter()
        .map(|v| sql.bind(v))
        .collect();
    sql.push(&format!(
        ", completed AS (INSERT INTO reset_events ({EVENT_COLUMNS}) SELECT {} FROM done)",
        event.join(", ")
    ));
    for (i, m) in c.outbox.iter().enumerate() {
        let first = sql.args.len() + 1;
        sql.args.extend(outbox_row(m));
        sql.push(&format!(
            ", outbox_{i} AS (INSERT INTO outbox ({INSERT_COLUMNS}) SELECT {} FROM done)",
            outbox_list(first)
        ));
    }
    sql.push(&format!(" SELECT {RESET_COLUMNS} FROM done"));
    sql
}

/// Appends `, col = $n` for each attribute the patch changes.
fn push_details(sql: &mut Sql, patch: &DetailsPatch) {
    if let Patch::Set(r) = &patch.reference {
        let p = sql.bind(text_of(r.as_ref()));
        sql.push(&format!(", reference = {p}"));
    }
    if let Patch::Set(r) = &patch.reference_origin {
        let p = sql.bind(text_of(r.as_ref()));
        sql.push(&format!(", reference_origin = {p}"));
    }
    if let Patch::Set(m) = &patch.metadata {
        let p = sql.bind(json_of(m.as_ref()));
        sql.push(&format!(", metadata = {p}"));
    }
}

fn one_reset(rows: Vec<Vec<Val>>) -> Result<Option<PasswordReset>, StoreError> {
    rows.into_iter()
        .next()
        .map(reset_from_row)
        .transpose()
        .map_err(StoreError::unexpected)
}

#[async_trait]
impl ResetStore for SqlStore {
    async fn create(
        &self,
        reset: &PasswordReset,
        event: &ResetEvent,
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError> {
        let reset_args = reset_args(reset);
        if self.driver.dialect() == Dialect::Postgres {
            // Revocation, the reset, both kinds of event and the outbox messages in one
            // atomic statement: one round trip instead of six or more.
            let mut args = reset_args;
            args.extend(event_args(event));
            for m in outbox {
                args.extend(outbox_row(m));
            }
            let mut conn = self.driver.connection().await.map_err(db)?;
            let built;
            let sql: &str = match CREATE_PG.get(outbox.len()) {
                Some(cached) => cached,
                None => {
                    built = create_pg(outbox.len());
                    &built
                }
            };
            conn.execute(sql, args).await.map_err(db)?;
            return Ok(());
        }
        let mut tx = self.driver.begin().await.map_err(db)?;
        revoke_outstanding(
            &mut *tx,
            reset.mode,
            reset.customer_id.as_uuid(),
            None,
            reset.created_at,
            "superseded",
        )
        .await
        .map_err(db)?;
        tx.execute(&INSERT_RESET, reset_args).await.map_err(db)?;
        insert_event(&mut *tx, event).await.map_err(db)?;
        insert_outbox(&mut *tx, outbox).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn create_for_email(
        &self,
        email: &EmailAddress,
        draft: &ResetDraft,
        event: &ResetEvent,
    ) -> Result<Option<PasswordReset>, StoreError> {
        if self.driver.dialect() != Dialect::Postgres {
            let Some(customer) = CustomerStore::find_by_email(self, draft.mode, email).await?
            else {
                return Ok(None);
            };
            let reset = draft.clone().for_customer(customer.id, customer.email);
            ResetStore::create(self, &reset, event, &[]).await?;
            return Ok(Some(reset));
        }
        // Lookup, revocation, the reset and its events in one round trip.
        let mut args: Vec<Val> = vec![
            draft.id.as_uuid().into(),
            draft.mode.as_str().into(),
            Val::Bytes(draft.token_digest.as_bytes().to_vec()),
            draft.expires_at.into(),
            text_of(draft.reference.as_ref()),
            text_of(draft.reference_origin.as_ref()),
            json_of(draft.metadata.as_ref()),
            draft.created_at.into(),
            email.normalized().into(),
        ];
        args.extend(event_args(event));
        let mut conn = self.driver.connection().await.map_err(db)?;
        let rows = conn
            .fetch(&CREATE_FOR_EMAIL_PG, args, &[Ty::Uuid, Ty::Text])
            .await
            .map_err(db)?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let [Val::Uuid(id), Val::Text(stored)] = row.as_slice() else {
            return Err(StoreError::unexpected(anyhow::anyhow!(
                "customer lookup returned unexpected types"
            )));
        };
        let stored = EmailAddress::parse(stored).map_err(StoreError::unexpected)?;
        Ok(Some(
            draft
                .clone()
                .for_customer(CustomerId::from_uuid(*id), stored),
        ))
    }

    async fn find(&self, mode: Mode, id: ResetId) -> Result<Option<PasswordReset>, StoreError> {
        let mut conn = self.driver.connection().await.map_err(db)?;
        let rows = conn
            .fetch(
                &FIND_RESET,
                vec![mode.as_str().into(), id.as_uuid().into()],
                RESET_TYPES,
            )
            .await
            .map_err(db)?;
        one_reset(rows)
    }

    async fn list(
        &self,
        mode: Mode,
        query: &ListQuery<ResetField, ResetSort>,
    ) -> Result<Page<PasswordReset>, StoreError> {
        const TABLE: crate::Table = crate::Table {
            name: "password_resets",
            columns: RESET_COLUMNS,
            types: RESET_TYPES,
        };
        self.page(&TABLE, mode, query, reset_from_row).await
    }

    async fn update_details(
        &self,
        mode: Mode,
        id: ResetId,
        patch: &DetailsPatch,
        now: Timestamp,
    ) -> Result<Option<PasswordReset>, StoreError> {
        let mut sql = Sql::new("UPDATE password_resets SET updated_at = $1");
        sql.args.push(now.into());
        push_details(&mut sql, patch);
        let m = sql.bind(mode.as_str());
        let i = sql.bind(id.as_uuid());
        sql.push(&format!(
            " WHERE mode = {m} AND id = {i} RETURNING {RESET_COLUMNS}"
        ));
        let mut conn = self.driver.connection().await.map_err(db)?;
        let rows = conn
            .fetch(&sql.text, sql.args, RESET_TYPES)
            .await
            .map_err(db)?;
        one_reset(rows)
    }

    async fn delete(
        &self,
        mode: Mode,
        id: ResetId,
        event: &ResetEvent,
        outbox: &[OutboxMessage],
    ) -> Result<bool, StoreError> {
        let mut tx = self.driver.begin().await.map_err(db)?;
        let n = tx
            .execute(
                "DELETE FROM password_resets WHERE mode = $1 AND id = $2",
                vec![mode.as_str().into(), id.as_uuid().into()],
            )
            .await
            .map_err(db)?;
        if n == 0 {
            return Ok(false);
        }
        insert_event(&mut *tx, event).await.map_err(db)?;
        insert_outbox(&mut *tx, outbox).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn purge(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.driver.begin().await.map_err(db)?;
        tx.execute(
            &format!(
                "DELETE FROM reset_events WHERE reset_id IN \
                 (SELECT id FROM password_resets WHERE {ENDED_BEFORE})"
            ),
            vec![cutoff.into()],
        )
        .await
        .map_err(db)?;
        let resets = tx
            .execute(PURGE_ENDED_RESETS, vec![cutoff.into()])
            .await
            .map_err(db)?;
        tx.execute(
            "DELETE FROM reset_events WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM password_resets r WHERE r.id = reset_events.reset_id)",
            vec![cutoff.into()],
        )
        .await
        .map_err(db)?;
        tx.execute(
            "DELETE FROM outbox WHERE status <> 'pending' AND finished_at < $1",
            vec![cutoff.into()],
        )
        .await
        .map_err(db)?;
        tx.execute(
            "DELETE FROM rate_limits WHERE expires_at < $1",
            vec![cutoff.into()],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(resets)
    }

    async fn record_failure(
        &self,
        mode: Mode,
        id: ResetId,
        count_attempt: bool,
        event: &ResetEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.driver.begin().await.map_err(db)?;
        if count_attempt {
            tx.execute(
                "UPDATE password_resets SET failed_attempts = failed_attempts + 1 \
                 WHERE mode = $1 AND id = $2",
                vec![mode.as_str().into(), id.as_uuid().into()],
            )
            .await
            .map_err(db)?;
        }
        insert_event(&mut *tx, event).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn complete(&self, c: &Completion) -> Result<CompletionOutcome, StoreError> {
        if self.driver.dialect() == Dialect::Postgres {
            let sql = complete_pg(c);
            let mut conn = self.driver.connection().await.map_err(db)?;
            let rows = conn
                .fetch(&sql.text, sql.args, RESET_TYPES)
                .await
                .map_err(db)?;
            return Ok(match one_reset(rows)? {
                Some(done) => CompletionOutcome::Completed(Box::new(done)),
                None => CompletionOutcome::NotApplied,
            });
        }
        let mut tx = self.driver.begin().await.map_err(db)?;
        let (sql, _, _) = conditional_completion(c);
        let rows = tx
            .fetch(&sql.text, sql.args, RESET_TYPES)
            .await
            .map_err(db)?;
        let Some(done) = one_reset(rows)? else {
            // Dropping the transaction rolls it back; nothing was written.
            return Ok(CompletionOutcome::NotApplied);
        };
        tx.execute(
            "UPDATE customers SET password_hash = $1, updated_at = $2 WHERE mode = $3 AND id = $4",
            vec![
                c.password_hash.as_str().into(),
                c.now.into(),
                c.mode.as_str().into(),
                c.customer_id.as_uuid().into(),
            ],
        )
        .await
        .map_err(db)?;
        revoke_outstanding(
            &mut *tx,
            c.mode,
            c.customer_id.as_uuid(),
            Some(c.reset_id),
            c.now,
            "password_changed",
        )
        .await
        .map_err(db)?;
        insert_event(&mut *tx, &c.event).await.map_err(db)?;
        insert_outbox(&mut *tx, &c.outbox).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(CompletionOutcome::Completed(Box::new(done)))
    }

    async fn events(&self, mode: Mode, id: ResetId) -> Result<Vec<ResetEvent>, StoreError> {
        let mut conn = self.driver.connection().await.map_err(db)?;
        let rows = conn
            .fetch(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM reset_events WHERE mode = $1 AND reset_id = $2 \
                     ORDER BY created_at, id"
                ),
                vec![mode.as_str().into(), id.as_uuid().into()],
                crate::rows::EVENT_TYPES,
            )
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|r| event_from_row(r).map_err(StoreError::unexpected))
            .collect()
    }
}
