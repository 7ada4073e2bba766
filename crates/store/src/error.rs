//! The store's error type: one enum with the expected failures named, so callers (the
//! worker, the binary) can tell a bad URL from a missing member from a database outage.
//!
//! Messages are lower-case, name the thing that is wrong and never carry a secret: a
//! database URL is reduced to its scheme, keys and tokens never appear.

use crate::crypto::CryptoError;
use crate::model::FailPoint;

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no backend this store speaks.
    #[error(
        "unsupported database url scheme {scheme:?}: use a sqlite: url, a file path, or postgres://"
    )]
    UnsupportedUrl { scheme: String },
    /// The database answered with an error (or could not be reached).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A write named a member the store does not know.
    #[error("unknown member {member_id:?}")]
    UnknownMember { member_id: String },
    /// A write named a company the store does not know.
    #[error("unknown company {company_id:?}")]
    UnknownCompany { company_id: String },
    /// A tenants file moves a member id from one company to another.
    #[error(
        "member {member_id:?} already belongs to company {existing:?}, the tenants file puts it in {requested:?}"
    )]
    MemberInOtherCompany {
        member_id: String,
        existing: String,
        requested: String,
    },
    /// A stored value is not one the schema allows (hand-edited rows, a newer schema).
    #[error("corrupt row: {table}.{column} holds {value:?}")]
    Corrupt {
        table: &'static str,
        column: &'static str,
        value: String,
    },
    /// Sealing or opening a stored secret failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A test asked the write to fail at this point (see [`crate::WriteOptions`]).
    #[error("injected failure at {0:?}")]
    InjectedFailure(FailPoint),
}

impl StoreError {
    /// A conflict between concurrent transactions (PostgreSQL deadlock or serialization
    /// failure, SQLite busy or locked): nothing was written, and the same call may
    /// succeed when retried.
    pub fn is_conflict(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(error)) => matches!(
                error.code().as_deref(),
                Some("40P01" | "40001" | "5" | "6" | "517")
            ),
            _ => false,
        }
    }
}

impl StoreError {
    /// The database could not be reached or stopped answering (no connection, a timeout,
    /// the pool closed): the same call fails the same way until it is back, whatever was
    /// written. Not an answer about the data.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Database(error) if !matches!(error, sqlx::Error::Database(_)))
    }
}

pub(crate) fn corrupt(table: &'static str, column: &'static str, value: &str) -> StoreError {
    StoreError::Corrupt {
        table,
        column,
        value: value.to_owned(),
    }
}
