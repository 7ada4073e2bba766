//! The import attempt the store's, the web's and the worker's tests record (included by
//! path from each, so that one builder serves every crate that writes attempts): each
//! test changes the fields it is about with struct update syntax.

use datacap_core::{Channel, Outcome};
use datacap_store::AttemptRecord;
use time::{Duration, OffsetDateTime};

/// `member`'s attempt on `channel`, started a second before `at` and finished at `at`
/// with `outcome` (HTTP 200 on success, else 503), nothing imported, no provider error,
/// request id or cursor, due again five minutes later.
pub fn attempt(
    member: &str,
    channel: Channel,
    outcome: Outcome,
    at: OffsetDateTime,
) -> AttemptRecord {
    AttemptRecord {
        attempt_id: uuid::Uuid::now_v7(),
        member_id: member.to_owned(),
        channel,
        started_at: at - Duration::seconds(1),
        finished_at: at,
        outcome,
        http_status: Some(if outcome == Outcome::Success {
            200
        } else {
            503
        }),
        provider_error_code: None,
        provider_error_message: None,
        provider_request_id: None,
        email_items: Vec::new(),
        calendar_items: Vec::new(),
        next_cursor: None,
        next_due_at: at + Duration::minutes(5),
        lease_owner: None,
    }
}
