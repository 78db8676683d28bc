//! The customer: the owner of the password that a reset changes.

use super::{CustomerId, EmailAddress, Metadata, Mode, PasswordHash, Reference, Timestamp};

/// A customer of the merchant. Emails are unique per mode after normalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: CustomerId,
    pub mode: Mode,
    pub email: EmailAddress,
    pub password_hash: Option<PasswordHash>,
    /// How many times the password has been changed (by a reset or an update). Sessions
    /// remember the version they began with; a newer one has ended them.
    pub password_version: i64,
    pub reference: Option<Reference>,
    pub reference_origin: Option<Reference>,
    pub metadata: Option<Metadata>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Customer {
    #[must_use]
    pub fn has_password(&self) -> bool {
        self.password_hash.is_some()
    }
}

/// A change to one optional attribute: leave it, or set it (to a value or to null).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Patch<T> {
    #[default]
    Keep,
    Set(Option<T>),
}

impl<T: Clone> Patch<T> {
    /// The value after applying this change to `current`.
    #[must_use]
    pub fn apply(&self, current: &Option<T>) -> Option<T> {
        match self {
            Patch::Keep => current.clone(),
            Patch::Set(v) => v.clone(),
        }
    }

    #[must_use]
    pub fn is_keep(&self) -> bool {
        matches!(self, Patch::Keep)
    }
}

/// Changes to the merchant-owned attributes shared by resets and customers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DetailsPatch {
    pub reference: Patch<Reference>,
    pub reference_origin: Patch<Reference>,
    pub metadata: Patch<Metadata>,
}

impl DetailsPatch {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.reference.is_keep() && self.reference_origin.is_keep() && self.metadata.is_keep()
    }
}
