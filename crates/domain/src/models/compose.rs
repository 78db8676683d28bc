//! What the outbox receives for each change to a reset, decided once by the
//! [`NotificationPlan`] and written in the same atomic write as the change. Pure: the use
//! cases call it, and so do storage adapters for a reset whose customer only they look up
//! (`ResetStore::create_for_email`).

use super::{
    DetailsPatch, Notification, OutboxMessage, PasswordReset, ResetToken, Timestamp, WebhookTopic,
};

/// Which notifications the service enqueues, in the same transaction as the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NotificationPlan {
    /// Mail the reset link on request and a notice after every completed reset.
    pub mail: bool,
    /// Commerce Layer webhooks on create, reset_password and destroy.
    pub webhooks: bool,
}

impl NotificationPlan {
    /// Nothing enqueued: the merchant gets the token in the create response.
    pub const NONE: Self = Self {
        mail: false,
        webhooks: false,
    };

    /// A plan with mail and webhooks switched on or off.
    #[must_use]
    pub const fn new(mail: bool, webhooks: bool) -> Self {
        Self { mail, webhooks }
    }
}

/// Composes the outbox messages of each change according to a [`NotificationPlan`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxComposer {
    plan: NotificationPlan,
}

fn webhook(topic: WebhookTopic, reset: &PasswordReset, at: Timestamp) -> OutboxMessage {
    OutboxMessage::new(
        Notification::Webhook {
            topic,
            reset: Box::new(reset.clone()),
        },
        at,
    )
}

impl OutboxComposer {
    #[must_use]
    pub fn new(plan: NotificationPlan) -> Self {
        Self { plan }
    }

    #[must_use]
    pub fn plan(&self) -> NotificationPlan {
        self.plan
    }

    /// Whether nothing is ever enqueued, so no message depends on the customer's stored
    /// record.
    #[must_use]
    pub fn is_silent(&self) -> bool {
        !self.plan.mail && !self.plan.webhooks
    }

    /// A new reset: the mail with its link (to the customer's stored address) and the
    /// `create` webhook.
    #[must_use]
    pub fn requested(
        &self,
        reset: &PasswordReset,
        token: &ResetToken,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        let mut outbox = Vec::new();
        if self.plan.mail {
            outbox.push(OutboxMessage::new(
                Notification::ResetRequested {
                    reset_id: reset.id,
                    mode: reset.mode,
                    to: reset.customer_email.clone(),
                    token: token.clone(),
                    expires_at: reset.expires_at,
                },
                now,
            ));
        }
        if self.plan.webhooks {
            outbox.push(webhook(WebhookTopic::Create, reset, now));
        }
        outbox
    }

    /// A completed reset (`before` as read, completed at `now` with `details` applied):
    /// the "password changed" notice and the `reset_password` webhook.
    #[must_use]
    pub fn completed(
        &self,
        before: &PasswordReset,
        details: &DetailsPatch,
        now: Timestamp,
    ) -> Vec<OutboxMessage> {
        let mut outbox = Vec::new();
        if self.plan.mail {
            outbox.push(OutboxMessage::new(
                Notification::PasswordChanged {
                    reset_id: before.id,
                    mode: before.mode,
                    to: before.customer_email.clone(),
                    at: now,
                },
                now,
            ));
        }
        if self.plan.webhooks {
            let mut after = before.clone();
            after.reset_password_at = Some(now);
            after.updated_at = now;
            after.reference = details.reference.apply(&after.reference);
            after.reference_origin = details.reference_origin.apply(&after.reference_origin);
            after.metadata = details.metadata.apply(&after.metadata);
            outbox.push(webhook(WebhookTopic::ResetPassword, &after, now));
        }
        outbox
    }

    /// Whether deleting needs the reset as it stood (for the `destroy` webhook).
    #[must_use]
    pub fn needs_deleted_reset(&self) -> bool {
        self.plan.webhooks
    }

    /// A deleted reset: the `destroy` webhook.
    #[must_use]
    pub fn deleted(&self, reset: &PasswordReset, now: Timestamp) -> Vec<OutboxMessage> {
        if self.plan.webhooks {
            vec![webhook(WebhookTopic::Destroy, reset, now)]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TOKEN, reset, t0};

    #[test]
    fn a_request_mails_the_link_to_the_resets_address_and_announces_it_by_webhook() {
        let mut r = reset();
        r.customer_email = crate::EmailAddress::parse("Stored@Example.com").unwrap();
        let token = ResetToken::parse(TOKEN).unwrap();
        let both = OutboxComposer::new(NotificationPlan::new(true, true));
        let outbox = both.requested(&r, &token, t0());
        assert_eq!(outbox.len(), 2);
        assert!(matches!(
            outbox[0].notification(),
            Some(Notification::ResetRequested { to, token: t, expires_at, reset_id, .. })
                if to.as_str() == "Stored@Example.com" && t.expose_secret() == TOKEN
                    && *expires_at == r.expires_at && *reset_id == r.id
        ));
        assert!(matches!(
            outbox[1].notification(),
            Some(Notification::Webhook { topic: WebhookTopic::Create, reset }) if **reset == r
        ));
        assert!(outbox.iter().all(|m| m.created_at == t0()));

        let mail_only = OutboxComposer::new(NotificationPlan::new(true, false));
        assert_eq!(mail_only.requested(&r, &token, t0()).len(), 1);
        let silent = OutboxComposer::default();
        assert!(silent.is_silent());
        assert!(silent.requested(&r, &token, t0()).is_empty());
        assert!(
            silent
                .completed(&r, &DetailsPatch::default(), t0())
                .is_empty()
        );
        assert!(silent.deleted(&r, t0()).is_empty());
    }
}
