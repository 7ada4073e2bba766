//! The Calendar import: `events.list` on the member's own calendar (its id is the member's
//! primary address, never `primary`, which is whoever's token this is: a token that is not
//! the member's can never import someone else's calendar under their name), a full pass
//! over the calendar window on the first run (or after a 410), the saved `syncToken`
//! afterwards.
//!
//! `nextSyncToken` only comes on the last page, and only then is it kept; a pass that does
//! not reach the last page within `max_pages` saves nothing and fails, so no event between
//! the cursor and the end is ever skipped. Cancelled events come back as items with
//! `cancelled: true`; the conference link is kept.

use std::collections::HashMap;

use datacap_connector::Failure;
use datacap_core::{CalendarItem, Channel, Outcome};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::errors::{Api, Verdict};
use crate::models::{Event, EventList, EventTime};
use crate::session::Session;
use crate::token::Purpose;

const PURPOSE: Purpose = Purpose::Mailbox(Channel::Calendar);

/// Imported events and the sync token to save.
pub(crate) struct CalendarPass {
    pub items: Vec<CalendarItem>,
    pub cursor: String,
}

enum Stop {
    Stale,
    Failed(Failure),
}

pub(crate) async fn import(session: &Session<'_>) -> Result<CalendarPass, Failure> {
    if let Some(token) = session.job.cursor.clone() {
        match pass(session, Some(&token)).await {
            Ok(pass) => return Ok(pass),
            Err(Stop::Stale) => {
                tracing::info!(
                    http_status = 410,
                    "calendar sync token is no longer valid; running a full pass"
                );
            }
            Err(Stop::Failed(failure)) => return Err(failure),
        }
    }
    match pass(session, None).await {
        Ok(pass) => Ok(pass),
        Err(Stop::Failed(failure)) => Err(failure),
        // A 410 without a sync token is not a cursor problem: an answer we do not expect.
        Err(Stop::Stale) => Err(Failure::new(
            Outcome::ProviderError,
            "calendar answered 410 to a full pass",
        )
        .with_answer(410, None)),
    }
}

/// `{calendar_base}/calendars/{member address}/events`, the address escaped as a path
/// segment (`@` → `%40`).
fn events_url(calendar_base: &str, member_address: &str) -> Option<String> {
    let mut url = reqwest::Url::parse(calendar_base).ok()?;
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(["calendars", member_address, "events"]);
    Some(url.to_string())
}

async fn pass(session: &Session<'_>, sync_token: Option<&str>) -> Result<CalendarPass, Stop> {
    let url = events_url(
        &session.inner.config.calendar_base,
        &session.job.member_address,
    )
    .ok_or_else(|| {
        Stop::Failed(Failure::new(
            Outcome::ProviderError,
            "the calendar base URL cannot carry a calendar id",
        ))
    })?;
    let config = &session.inner.config;
    let mut base_query = vec![
        ("maxResults", config.page_size.to_string()),
        ("singleEvents", "true".to_owned()),
    ];
    match sync_token {
        Some(token) => base_query.push(("syncToken", token.to_owned())),
        None => {
            let past = time::Duration::try_from(config.calendar_past).unwrap_or_default();
            let future = time::Duration::try_from(config.calendar_future).unwrap_or_default();
            let now = session.now();
            base_query.push(("timeMin", rfc3339(now - past)));
            base_query.push(("timeMax", rfc3339(now + future)));
        }
    }
    let max_pages = config.max_pages;
    // Keyed by id, latest answer wins (pages may repeat an item).
    let mut order: Vec<String> = Vec::new();
    let mut items: HashMap<String, CalendarItem> = HashMap::new();
    let mut page_token: Option<String> = None;
    for _ in 0..max_pages {
        let mut query = base_query.clone();
        if let Some(token) = &page_token {
            query.push(("pageToken", token.clone()));
        }
        let page: EventList = match session
            .get(PURPOSE, Api::CalendarEvents, &url, &query)
            .await
        {
            Ok(page) => page,
            Err(failure) if failure.verdict == Verdict::StaleCursor => {
                return Err(if sync_token.is_some() {
                    Stop::Stale
                } else {
                    Stop::Failed(failure.failure)
                });
            }
            Err(failure) => return Err(Stop::Failed(failure.failure)),
        };
        for event in page.items {
            let item = calendar_item(event);
            if !items.contains_key(&item.provider_id) {
                order.push(item.provider_id.clone());
            }
            items.insert(item.provider_id.clone(), item);
        }
        match (page.next_page_token, page.next_sync_token) {
            (Some(next), _) if !next.is_empty() => page_token = Some(next),
            (_, Some(cursor)) => {
                let items = order.iter().filter_map(|id| items.remove(id)).collect();
                return Ok(CalendarPass { items, cursor });
            }
            (_, None) => {
                return Err(Stop::Failed(Failure::new(
                    Outcome::ProviderError,
                    "calendar's last page carries no nextSyncToken",
                )));
            }
        }
    }
    Err(Stop::Failed(Failure::new(
        Outcome::ProviderError,
        format!("calendar pass did not reach its last page within {max_pages} pages"),
    )))
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn calendar_item(event: Event) -> CalendarItem {
    let cancelled = event.status.as_deref() == Some("cancelled");
    let conference_link = event.hangout_link.clone().or_else(|| {
        event.conference_data.as_ref().and_then(|data| {
            data.entry_points
                .iter()
                .find(|entry| entry.entry_point_type.as_deref() == Some("video"))
                .and_then(|entry| entry.uri.clone())
        })
    });
    let mut participants: Vec<String> = Vec::new();
    for attendee in &event.attendees {
        if let Some(email) = &attendee.email {
            let email = email.to_ascii_lowercase();
            if !participants.contains(&email) {
                participants.push(email);
            }
        }
    }
    CalendarItem {
        provider_id: event.id,
        starts_at: event.start.as_ref().and_then(instant),
        ends_at: event.end.as_ref().and_then(instant),
        organizer: event
            .organizer
            .and_then(|o| o.email)
            .map(|e| e.to_ascii_lowercase()),
        participants,
        subject: event.summary,
        conference_link,
        cancelled,
    }
}

/// A timed event's instant, or an all-day event's date at midnight UTC.
fn instant(at: &EventTime) -> Option<OffsetDateTime> {
    if let Some(text) = &at.date_time {
        return OffsetDateTime::parse(text, &Rfc3339).ok();
    }
    let date = Date::parse(
        at.date.as_deref()?,
        format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    Some(date.midnight().assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_url_names_the_members_calendar() {
        assert_eq!(
            events_url("https://www.googleapis.com/calendar/v3", "ada@acme.example").as_deref(),
            Some("https://www.googleapis.com/calendar/v3/calendars/ada@acme.example/events")
        );
        assert_eq!(
            events_url("http://127.0.0.1:9/google/calendar/v3/", "a/b c@x").as_deref(),
            Some("http://127.0.0.1:9/google/calendar/v3/calendars/a%2Fb%20c@x/events")
        );
        assert_eq!(events_url("not a url", "ada@acme.example"), None);
    }

    #[test]
    fn events_become_items() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "id": "e1",
            "status": "confirmed",
            "summary": "Standup",
            "start": {"dateTime": "2026-11-28T09:00:00Z"},
            "end": {"date": "2026-11-29"},
            "organizer": {"email": "Ada@Acme.example"},
            "attendees": [{"email": "b@acme.example"}, {"email": "B@acme.example"}, {}],
            "conferenceData": {"entryPoints": [
                {"entryPointType": "phone", "uri": "tel:+1"},
                {"entryPointType": "video", "uri": "https://meet.google.com/abc-defg-hij"}
            ]}
        }))
        .expect("event");
        let item = calendar_item(event);
        assert_eq!(item.organizer.as_deref(), Some("ada@acme.example"));
        assert_eq!(item.participants, ["b@acme.example"]);
        assert_eq!(
            item.conference_link.as_deref(),
            Some("https://meet.google.com/abc-defg-hij")
        );
        assert!(item.starts_at.is_some() && item.ends_at.is_some());
        assert!(!item.cancelled);

        let cancelled: Event =
            serde_json::from_value(serde_json::json!({"id": "e2", "status": "cancelled"}))
                .expect("event");
        let item = calendar_item(cancelled);
        assert!(item.cancelled);
        assert_eq!(item.provider_id, "e2");

        let hangout: Event = serde_json::from_value(
            serde_json::json!({"id": "e3", "hangoutLink": "https://meet.google.com/x"}),
        )
        .expect("event");
        assert_eq!(
            calendar_item(hangout).conference_link.as_deref(),
            Some("https://meet.google.com/x")
        );
    }
}
