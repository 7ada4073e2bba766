//! What the worker's tests share: the attempt they record for member ana, and fresh
//! PostgreSQL databases (both the store tests' own).

use datacap_core::{Channel, Outcome};
use datacap_store::AttemptRecord;
use time::OffsetDateTime;

#[path = "../../../store/tests/support/attempt.rs"]
mod shared;

#[path = "../../../store/tests/support/postgres.rs"]
pub mod postgres;

/// Ana's email attempt finished at `at` with `outcome` (the store tests' plain attempt).
pub fn attempt(outcome: Outcome, at: OffsetDateTime) -> AttemptRecord {
    shared::attempt("ana", Channel::Email, outcome, at)
}
