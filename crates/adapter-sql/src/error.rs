//! From database failures to the storage ports' errors.

use pwreset_domain::ports::StoreError;

use crate::driver::DbError;

/// The logical name of the unique constraint on a customer's address in a mode. Drivers
/// report unique violations by these names: Postgres has them from the server, SQLite
/// maps the columns its message names to the same names.
pub const CUSTOMER_EMAIL_KEY: &str = "customers_mode_email_key";

/// A database failure as a store error: unavailable when the database could not answer,
/// otherwise unexpected, naming the constraint if one failed.
pub fn db(e: DbError) -> StoreError {
    match e {
        DbError::Unique { constraint } => {
            StoreError::unexpected(anyhow::anyhow!("unique constraint {constraint} violated"))
        }
        DbError::NotNull { column } => {
            StoreError::unexpected(anyhow::anyhow!("NULL written to NOT NULL column {column}"))
        }
        DbError::Unavailable(e) => StoreError::unavailable(e),
        DbError::Other(e) => StoreError::unexpected(e),
    }
}

/// [`db`], except that the customers' address constraint is a duplicate email.
pub(crate) fn customer_write(e: DbError) -> StoreError {
    match e {
        DbError::Unique { constraint } if constraint == CUSTOMER_EMAIL_KEY => {
            StoreError::DuplicateEmail
        }
        other => db(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_address_constraint_is_a_duplicate_email() {
        let unique = |c: &str| DbError::Unique {
            constraint: c.to_owned(),
        };
        assert!(matches!(
            customer_write(unique(CUSTOMER_EMAIL_KEY)),
            StoreError::DuplicateEmail
        ));
        let other = customer_write(unique("customers_pkey"));
        let StoreError::Unexpected(e) = other else {
            panic!("a primary key violation is not a duplicate email: {other:?}");
        };
        assert!(e.to_string().contains("customers_pkey"), "{e}");
    }
}
