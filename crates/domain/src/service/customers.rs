//! Use cases of `customers`: the minimum a reset needs (integration callers only).

use std::sync::Arc;

use super::Ports;
use crate::models::{
    Caller, Customer, CustomerField, CustomerId, CustomerSort, DetailsPatch, EmailAddress,
    ListQuery, Metadata, Page, Password, PasswordPolicy, PasswordRejection, Reference,
};
use crate::ports::{CredentialChange, StoreError};

/// A customer to create.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub email: EmailAddress,
    pub password: Option<Password>,
    pub reference: Option<Reference>,
    pub reference_origin: Option<Reference>,
    pub metadata: Option<Metadata>,
}

/// Changes to a customer. A new email or password revokes outstanding resets.
#[derive(Debug, Clone, Default)]
pub struct CustomerPatch {
    pub email: Option<EmailAddress>,
    pub password: Option<Password>,
    pub details: DetailsPatch,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateCustomerError {
    #[error("a customer with this email already exists")]
    EmailTaken,
    #[error("the password {0}")]
    PasswordRejected(PasswordRejection),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum GetCustomerError {
    #[error("no such customer")]
    NotFound,
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ListCustomersError {
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateCustomerError {
    #[error("no such customer")]
    NotFound,
    #[error("a customer with this email already exists")]
    EmailTaken,
    #[error("the password {0}")]
    PasswordRejected(PasswordRejection),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteCustomerError {
    #[error("no such customer")]
    NotFound,
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

super::errors::unexpected_from_ports!(
    CreateCustomerError,
    GetCustomerError,
    ListCustomersError,
    UpdateCustomerError,
    DeleteCustomerError,
);

/// The customer use cases.
#[derive(Debug, Clone)]
pub struct CustomerService {
    ports: Ports,
    passwords: Arc<PasswordPolicy>,
}

impl CustomerService {
    #[must_use]
    pub fn new(ports: Ports, passwords: PasswordPolicy) -> Self {
        Self {
            ports,
            passwords: Arc::new(passwords),
        }
    }

    /// Creates a customer, hashing the password if one is given.
    ///
    /// # Errors
    /// `EmailTaken` when the normalized email exists in the caller's mode;
    /// `PasswordRejected` when the policy refuses the password.
    pub async fn create(
        &self,
        caller: &Caller,
        req: NewCustomer,
    ) -> Result<Customer, CreateCustomerError> {
        use CreateCustomerError as E;
        let password_hash = match &req.password {
            None => None,
            Some(p) => {
                self.passwords
                    .check(p, &req.email)
                    .map_err(E::PasswordRejected)?;
                Some(self.ports.hasher.hash(p).await?)
            }
        };
        let now = self.ports.now();
        let customer = Customer {
            id: CustomerId::new_at(now),
            mode: caller.mode,
            email: req.email,
            password_hash,
            password_version: 0,
            reference: req.reference,
            reference_origin: req.reference_origin,
            metadata: req.metadata,
            created_at: now,
            updated_at: now,
        };
        match self.ports.customers.create(&customer).await {
            Ok(()) => Ok(customer),
            Err(StoreError::DuplicateEmail) => Err(E::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// The customer with this id.
    ///
    /// # Errors
    /// `NotFound` when there is none in the caller's mode.
    pub async fn get(&self, caller: &Caller, id: CustomerId) -> Result<Customer, GetCustomerError> {
        self.ports
            .customers
            .find(caller.mode, id)
            .await?
            .ok_or(GetCustomerError::NotFound)
    }

    /// One page of customers matching `query`.
    ///
    /// # Errors
    /// `Unexpected` when the store fails.
    pub async fn list(
        &self,
        caller: &Caller,
        query: ListQuery<CustomerField, CustomerSort>,
    ) -> Result<Page<Customer>, ListCustomersError> {
        self.ports
            .customers
            .list(caller.mode, &query)
            .await
            .map_err(Into::into)
    }

    /// Applies `patch`. A changed email or password revokes the customer's outstanding
    /// resets in the same write; a new password also ends every session of theirs.
    ///
    /// # Errors
    /// `NotFound`, `EmailTaken`, `PasswordRejected`.
    pub async fn update(
        &self,
        caller: &Caller,
        id: CustomerId,
        patch: CustomerPatch,
    ) -> Result<Customer, UpdateCustomerError> {
        use UpdateCustomerError as E;
        let mut customer = self
            .ports
            .customers
            .find(caller.mode, id)
            .await?
            .ok_or(E::NotFound)?;
        let mut change = CredentialChange::None;
        if let Some(email) = patch.email {
            if email.normalized() != customer.email.normalized() {
                change = CredentialChange::Email;
            }
            customer.email = email;
        }
        if let Some(password) = &patch.password {
            self.passwords
                .check(password, &customer.email)
                .map_err(E::PasswordRejected)?;
            customer.password_hash = Some(self.ports.hasher.hash(password).await?);
            change = CredentialChange::Password;
        }
        customer.reference = patch.details.reference.apply(&customer.reference);
        customer.reference_origin = patch
            .details
            .reference_origin
            .apply(&customer.reference_origin);
        customer.metadata = patch.details.metadata.apply(&customer.metadata);
        customer.updated_at = self.ports.now();
        match self.ports.customers.update(&customer, change).await {
            Ok(true) => Ok(customer),
            Ok(false) => Err(E::NotFound),
            Err(StoreError::DuplicateEmail) => Err(E::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a customer and its resets.
    ///
    /// # Errors
    /// `NotFound` when there is no such customer in the caller's mode.
    pub async fn delete(&self, caller: &Caller, id: CustomerId) -> Result<(), DeleteCustomerError> {
        match self.ports.customers.delete(caller.mode, id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(DeleteCustomerError::NotFound),
            Err(e) => Err(e.into()),
        }
    }
}
