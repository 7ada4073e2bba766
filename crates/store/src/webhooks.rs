//! The webhook vocabulary the store keeps and hands out: event types, where an endpoint's
//! signing secret is read from, the event bodies the outbox stores, and what the delivery
//! task claims and reports back (issue 19).
//!
//! An event's body is built once, when the status change that causes it is written, in
//! the same transaction; the delivery task signs and sends exactly those bytes, so every
//! try and every redelivery carries the same `webhook-id` and body. Nothing here reads a
//! secret: the binary resolves a [`SecretRef`] when it sends.

use serde::Serialize;
use time::OffsetDateTime;

/// The events an endpoint can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum EventType {
    /// One of a member's icons changed colour or reason (a change back to green is a
    /// recovery).
    #[serde(rename = "member.status_changed")]
    MemberStatusChanged,
    /// A company banner appeared, changed its count, or cleared.
    #[serde(rename = "company.banner_changed")]
    CompanyBannerChanged,
}

impl EventType {
    /// Every event type, in documentation order.
    pub const ALL: [EventType; 2] = [
        EventType::MemberStatusChanged,
        EventType::CompanyBannerChanged,
    ];

    /// The wire name (`member.status_changed`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MemberStatusChanged => "member.status_changed",
            EventType::CompanyBannerChanged => "company.banner_changed",
        }
    }

    /// The event type a wire name names.
    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|event| event.as_str() == text)
    }
}

/// Where an endpoint's `whsec_` signing secret is read from: a file or an environment
/// variable the daemon reads, never the secret itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    File(String),
    Env(String),
}

impl SecretRef {
    /// As stored in `webhook_endpoints.secret_ref`: `{"secret_file": "/path"}` or
    /// `{"secret_env": "VAR"}`.
    pub(crate) fn to_json(&self) -> String {
        let (key, value) = match self {
            SecretRef::File(path) => ("secret_file", path),
            SecretRef::Env(name) => ("secret_env", name),
        };
        serde_json::json!({ key: value }).to_string()
    }

    pub(crate) fn from_json(text: &str) -> Option<SecretRef> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        if let Some(path) = value.get("secret_file").and_then(|v| v.as_str()) {
            return Some(SecretRef::File(path.to_owned()));
        }
        value
            .get("secret_env")
            .and_then(|v| v.as_str())
            .map(|name| SecretRef::Env(name.to_owned()))
    }

    /// `secret_file /path` or `secret_env VAR`, for messages (a reference, not a secret).
    pub fn describe(&self) -> String {
        match self {
            SecretRef::File(path) => format!("secret_file {path}"),
            SecretRef::Env(name) => format!("secret_env {name}"),
        }
    }
}

/// A delivery the task has leased: the head of its endpoint's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub delivery_id: i64,
    /// The `webhook-id`: the same on every try and redelivery.
    pub event_id: String,
    pub event_type: String,
    /// The exact bytes to sign and send.
    pub body: String,
    pub company_id: String,
    pub endpoint_id: String,
    pub url: String,
    pub secret: SecretRef,
    /// Tries made so far in this run.
    pub tries: u32,
    /// When this run of tries began: the give-up clock starts here.
    pub pending_since: OffsetDateTime,
    pub lease_owner: String,
}

/// One try of a delivery, as the task saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTry {
    pub tried_at: OffsetDateTime,
    /// The answer's status; `None` when no answer came (refused, timeout, our own error).
    pub http_status: Option<u16>,
    /// What went wrong, for the operator (never a secret, never the receiver's body).
    pub error: Option<String>,
    pub duration: std::time::Duration,
}

/// What becomes of a delivery after a try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryNext {
    /// A 2xx answer: done.
    Delivered,
    /// Try again at this time.
    Retry(OffsetDateTime),
    /// Given up: `give_up_after` has passed since `pending_since`.
    Dead,
}

/// One endpoint as `datacap webhooks` and the page show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointReport {
    pub company_id: String,
    pub endpoint_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub active: bool,
    /// Events not yet delivered (pending).
    pub backlog: u64,
    /// Events given up on.
    pub dead: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest_pending_since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_failure_at: Option<OffsetDateTime>,
    /// The last failed try's status or error.
    pub last_failure: Option<String>,
}

/// One outbox event as the queries build it.
pub(crate) struct OutboxEvent {
    pub company_id: String,
    pub event_type: EventType,
    pub body: String,
}

/// The RFC 3339 text of an event time (UTC, microseconds).
fn wire_time(at: OffsetDateTime) -> String {
    crate::dbtime::DbTime::new(at)
        .0
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The envelope of every event (Standard Webhooks' recommended shape): `type`,
/// `timestamp`, `data`, plus our own `id` so that a stored body names its event.
fn envelope(
    id: &str,
    event_type: EventType,
    at: OffsetDateTime,
    data: serde_json::Value,
) -> String {
    serde_json::json!({
        "id": id,
        "type": event_type.as_str(),
        "timestamp": wire_time(at),
        "data": data,
    })
    .to_string()
}

/// What a `member.status_changed` event says.
pub(crate) struct StatusChange<'a> {
    pub company_id: &'a str,
    pub member_id: &'a str,
    pub member_email: &'a str,
    pub icon: &'static str,
    pub from_color: &'a str,
    pub from_reason: &'a str,
    pub to_color: &'static str,
    pub to_reason: &'static str,
    pub message: &'a str,
    pub resolution: &'a str,
    pub attempt_id: Option<&'a str>,
}

pub(crate) fn status_changed(
    id: &str,
    change: &StatusChange<'_>,
    at: OffsetDateTime,
) -> OutboxEvent {
    let data = serde_json::json!({
        "company_id": change.company_id,
        "member_id": change.member_id,
        "member_email": change.member_email,
        "icon": change.icon,
        "from": {"color": change.from_color, "reason": change.from_reason},
        "to": {"color": change.to_color, "reason": change.to_reason},
        "recovery": change.to_color == "green" && change.from_color != "green",
        "message": change.message,
        "resolution": change.resolution,
        "attempt_id": change.attempt_id,
        "changed_at": wire_time(at),
    });
    OutboxEvent {
        company_id: change.company_id.to_owned(),
        event_type: EventType::MemberStatusChanged,
        body: envelope(id, EventType::MemberStatusChanged, at, data),
    }
}

/// What a `company.banner_changed` event says.
pub(crate) struct BannerChange<'a> {
    pub company_id: &'a str,
    pub code: &'static str,
    pub color: &'static str,
    pub provider: &'static str,
    pub from_count: i64,
    pub to_count: i64,
    pub message: &'a str,
    pub resolution: &'a str,
}

pub(crate) fn banner_changed(
    id: &str,
    change: &BannerChange<'_>,
    at: OffsetDateTime,
) -> OutboxEvent {
    let kind = match (change.from_count, change.to_count) {
        (0, _) => "appeared",
        (_, 0) => "cleared",
        _ => "changed",
    };
    let data = serde_json::json!({
        "company_id": change.company_id,
        "code": change.code,
        "color": change.color,
        "provider": change.provider,
        "change": kind,
        "from_count": change.from_count,
        "to_count": change.to_count,
        "message": change.message,
        "resolution": change.resolution,
        "changed_at": wire_time(at),
    });
    OutboxEvent {
        company_id: change.company_id.to_owned(),
        event_type: EventType::CompanyBannerChanged,
        body: envelope(id, EventType::CompanyBannerChanged, at, data),
    }
}

/// A fresh event id (`evt_` and 32 hex digits of a random UUID): the `webhook-id`.
pub(crate) fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn event_names_round_trip() {
        for event in EventType::ALL {
            assert_eq!(EventType::parse(event.as_str()), Some(event));
        }
        assert_eq!(EventType::parse("member.status"), None);
    }

    #[test]
    fn secret_refs_round_trip_through_their_json() {
        for reference in [
            SecretRef::File("/etc/datacap/hook.secret".to_owned()),
            SecretRef::Env("ACME_HOOK_SECRET".to_owned()),
        ] {
            assert_eq!(SecretRef::from_json(&reference.to_json()), Some(reference));
        }
        assert_eq!(SecretRef::from_json("{}"), None);
    }

    #[test]
    fn a_change_back_to_green_is_a_recovery() {
        let at = datetime!(2026-11-28 12:00:00.5 UTC);
        let change = StatusChange {
            company_id: "acme",
            member_id: "ana",
            member_email: "ana@acme.test",
            icon: "email",
            from_color: "red",
            from_reason: "technical_failure",
            to_color: "green",
            to_reason: "importing",
            message: "m",
            resolution: "r",
            attempt_id: Some("a1"),
        };
        let event = status_changed("evt_1", &change, at);
        let body: serde_json::Value = serde_json::from_str(&event.body).unwrap();
        assert_eq!(body["type"], "member.status_changed");
        assert_eq!(body["id"], "evt_1");
        assert_eq!(body["timestamp"], "2026-11-28T12:00:00.5Z");
        assert_eq!(body["data"]["recovery"], true);
        assert_eq!(body["data"]["from"]["reason"], "technical_failure");
        assert_eq!(body["data"]["to"]["color"], "green");
        let worse = StatusChange {
            from_color: "green",
            to_color: "red",
            ..change
        };
        let body: serde_json::Value =
            serde_json::from_str(&status_changed("evt_2", &worse, at).body).unwrap();
        assert_eq!(body["data"]["recovery"], false);
    }

    #[test]
    fn banner_changes_say_whether_they_appeared_changed_or_cleared() {
        let kind = |from, to| {
            let change = BannerChange {
                company_id: "acme",
                code: "members_technical_problem",
                color: "red",
                provider: "google_workspace",
                from_count: from,
                to_count: to,
                message: "m",
                resolution: "r",
            };
            let event = banner_changed("evt", &change, datetime!(2026-11-28 12:00 UTC));
            let body: serde_json::Value = serde_json::from_str(&event.body).unwrap();
            body["data"]["change"].as_str().unwrap().to_owned()
        };
        assert_eq!(kind(0, 2), "appeared");
        assert_eq!(kind(2, 3), "changed");
        assert_eq!(kind(3, 0), "cleared");
    }
}
