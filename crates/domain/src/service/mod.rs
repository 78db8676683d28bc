//! The use cases. [`ResetService`] requests, completes, reads, edits and deletes password
//! resets; [`CustomerService`] manages the customers whose passwords they reset. Each
//! operation has its own error enum: named business variants plus one opaque `Unexpected`
//! carrying the cause for the logs.

mod customers;
mod delivery;
mod resets;

use std::sync::Arc;

pub use customers::*;
pub use delivery::*;
pub use resets::*;

use crate::models::{Timestamp, to_millis};
use crate::ports::{Clock, CustomerStore, PasswordHasher, ResetStore, TokenDigester};

/// The adapters a service needs, held as trait objects.
#[derive(Debug, Clone)]
pub struct Ports {
    pub resets: Arc<dyn ResetStore>,
    pub customers: Arc<dyn CustomerStore>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub digester: Arc<dyn TokenDigester>,
    pub clock: Arc<dyn Clock>,
}

impl Ports {
    /// The clock's time at the precision everything is stored with.
    fn now(&self) -> Timestamp {
        to_millis(self.clock.now())
    }
}

#[cfg(test)]
mod tests;
