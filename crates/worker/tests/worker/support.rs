//! What the worker's tests share: the attempt they record for member ana.

use datacap_core::{Channel, Outcome};
use datacap_store::AttemptRecord;
use time::OffsetDateTime;

#[path = "../../../store/tests/support/attempt.rs"]
mod shared;

/// Ana's email attempt finished at `at` with `outcome` (the store tests' plain attempt).
pub fn attempt(outcome: Outcome, at: OffsetDateTime) -> AttemptRecord {
    shared::attempt("ana", Channel::Email, outcome, at)
}
