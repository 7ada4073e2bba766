//! Graph delta pages for mail (`mailFolders/inbox/messages/delta`) and calendar
//! (`calendarView/delta`): typed models of the fields we keep, and the sinks that turn
//! pages into datacap's items.
//!
//! A delta round may replay an item, send only its changed properties, or report it
//! `@removed` (providers/microsoft.md §3), so each sink keeps one entry per id, merges
//! replays into it and applies removals; the paging loop itself lives in the connector.

use std::collections::HashMap;

use datacap_core::{CalendarItem, EmailItem};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// The mail fields we store (`$select`); `id` always comes back.
pub(crate) const MAIL_SELECT: &str =
    "subject,from,toRecipients,ccRecipients,receivedDateTime,conversationId";

/// The paging links of one page.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Links {
    pub next: Option<String>,
    pub delta: Option<String>,
}

/// Receives the pages of one delta round.
pub(crate) trait DeltaSink: Default {
    /// What a page lists.
    type Entry: for<'de> Deserialize<'de>;

    /// Takes one entry of a page.
    fn take(&mut self, entry: Self::Entry);

    /// Forgets everything: the cursor expired and a full pass starts over.
    fn reset(&mut self) {
        *self = Self::default();
    }

    /// Takes one page; a body that is not a delta page is an error (and takes nothing).
    fn page(&mut self, body: &[u8]) -> Result<Links, serde_json::Error> {
        let (links, entries) = read_page::<Self::Entry>(body)?;
        for entry in entries {
            self.take(entry);
        }
        Ok(links)
    }
}

#[derive(Deserialize)]
struct Page<T> {
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
    value: Vec<T>,
}

fn read_page<T: for<'de> Deserialize<'de>>(
    body: &[u8],
) -> Result<(Links, Vec<T>), serde_json::Error> {
    let page: Page<T> = serde_json::from_slice(body)?;
    Ok((
        Links {
            next: page.next_link,
            delta: page.delta_link,
        },
        page.value,
    ))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct EmailAddress {
    #[serde(default)]
    address: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Recipient {
    #[serde(default)]
    email_address: Option<EmailAddress>,
}

impl Recipient {
    fn address(&self) -> Option<String> {
        self.email_address
            .as_ref()?
            .address
            .as_ref()
            .filter(|a| !a.is_empty())
            .cloned()
    }
}

/// A message as `$select` returns it (Graph `message` resource).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GraphMessage {
    id: String,
    #[serde(rename = "@removed", default)]
    removed: Option<serde_json::Value>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    from: Option<Recipient>,
    #[serde(default)]
    to_recipients: Option<Vec<Recipient>>,
    #[serde(default)]
    cc_recipients: Option<Vec<Recipient>>,
    #[serde(default)]
    received_date_time: Option<String>,
    #[serde(default)]
    conversation_id: Option<String>,
}

/// `dateTime` + `timeZone` (Graph `dateTimeTimeZone`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DateTimeTimeZone {
    date_time: String,
    #[serde(default)]
    time_zone: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnlineMeetingInfo {
    #[serde(default)]
    join_url: Option<String>,
}

/// An event as `calendarView/delta` returns it (Graph `event` resource).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GraphEvent {
    id: String,
    #[serde(rename = "@removed", default)]
    removed: Option<serde_json::Value>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    start: Option<DateTimeTimeZone>,
    #[serde(default)]
    end: Option<DateTimeTimeZone>,
    #[serde(default)]
    organizer: Option<Recipient>,
    #[serde(default)]
    attendees: Option<Vec<Recipient>>,
    #[serde(default)]
    is_cancelled: Option<bool>,
    #[serde(default)]
    online_meeting: Option<OnlineMeetingInfo>,
    #[serde(default)]
    online_meeting_url: Option<String>,
}

/// Graph times: `2026-11-28T10:00:00Z` on messages; `2026-11-28T10:00:00.0000000` plus a
/// `timeZone` on events. We ask for UTC (`Prefer: outlook.timezone="UTC"`); a time in any
/// other zone is left out rather than guessed.
fn event_time(value: &DateTimeTimeZone) -> Option<OffsetDateTime> {
    let zone = value.time_zone.as_deref().unwrap_or("UTC");
    if !(zone.eq_ignore_ascii_case("UTC") || zone.eq_ignore_ascii_case("Etc/UTC")) {
        return None;
    }
    let text = value.date_time.trim_end_matches('Z');
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let at = PrimitiveDateTime::parse(
        whole,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    )
    .ok()?;
    let digits: String = fraction.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse::<i64>().ok()?
    };
    Some(at.assume_utc() + time::Duration::nanoseconds(nanos))
}

/// One delta round's entries, one per id, in first-seen order; replays merge into the
/// entry and a removal empties it (keeping its place, so a later replay fills it again).
pub(crate) struct Collected<T> {
    order: Vec<String>,
    items: HashMap<String, Option<T>>,
    /// Entries reported `@removed` in this round.
    pub removed: usize,
}

impl<T> Default for Collected<T> {
    fn default() -> Self {
        Collected {
            order: Vec::new(),
            items: HashMap::new(),
            removed: 0,
        }
    }
}

impl<T> Collected<T> {
    fn upsert(&mut self, id: String, item: T, merge: impl FnOnce(&mut T, T)) {
        match self.items.get_mut(&id) {
            Some(Some(existing)) => merge(existing, item),
            Some(slot) => *slot = Some(item),
            None => {
                self.order.push(id.clone());
                self.items.insert(id, Some(item));
            }
        }
    }

    fn remove(&mut self, id: &str) {
        self.removed += 1;
        if let Some(slot) = self.items.get_mut(id) {
            *slot = None;
        }
    }

    /// The round's entries, in first-seen order.
    pub(crate) fn into_items(mut self) -> Vec<T> {
        self.order
            .iter()
            .filter_map(|id| self.items.remove(id).flatten())
            .collect()
    }
}

/// The recipients' addresses in order, each once.
fn distinct<'a>(recipients: impl Iterator<Item = &'a Recipient>) -> Vec<String> {
    let mut addresses: Vec<String> = Vec::new();
    for address in recipients.filter_map(Recipient::address) {
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    addresses
}

fn keep<T>(old: &mut Option<T>, new: Option<T>) {
    if new.is_some() {
        *old = new;
    }
}

/// A replay's participants replace the collected ones only when it listed them.
fn keep_listed(old: &mut Vec<String>, new: Vec<String>, listed: bool) {
    if listed {
        *old = new;
    }
}

/// Mail: `@removed` messages are dropped from what the attempt reports.
pub(crate) type MailSink = Collected<EmailItem>;

impl DeltaSink for MailSink {
    type Entry = GraphMessage;

    fn take(&mut self, message: GraphMessage) {
        if message.removed.is_some() {
            // EmailItem has no "deleted" flag: a message removed in this round is not
            // reported, and one seen earlier in the round is taken back.
            self.remove(&message.id);
            return;
        }
        let participants = distinct(
            message
                .to_recipients
                .iter()
                .flatten()
                .chain(message.cc_recipients.iter().flatten()),
        );
        let had_recipients = message.to_recipients.is_some() || message.cc_recipients.is_some();
        let item = EmailItem {
            provider_id: message.id.clone(),
            thread_id: message.conversation_id,
            sent_at: message
                .received_date_time
                .as_deref()
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
            sender: message.from.as_ref().and_then(Recipient::address),
            participants,
            subject: message.subject,
        };
        self.upsert(message.id, item, |old, new| {
            keep(&mut old.thread_id, new.thread_id);
            keep(&mut old.sent_at, new.sent_at);
            keep(&mut old.sender, new.sender);
            keep(&mut old.subject, new.subject);
            keep_listed(&mut old.participants, new.participants, had_recipients);
        });
    }
}

/// Calendar: `@removed` and cancelled events are reported with `cancelled: true`.
pub(crate) type CalendarSink = Collected<CalendarItem>;

impl DeltaSink for CalendarSink {
    type Entry = GraphEvent;

    fn take(&mut self, event: GraphEvent) {
        let removed = event.removed.is_some();
        let had_attendees = event.attendees.is_some();
        let participants = distinct(event.attendees.iter().flatten());
        let item = CalendarItem {
            provider_id: event.id.clone(),
            starts_at: event.start.as_ref().and_then(event_time),
            ends_at: event.end.as_ref().and_then(event_time),
            organizer: event.organizer.as_ref().and_then(Recipient::address),
            participants,
            subject: event.subject,
            conference_link: event
                .online_meeting
                .and_then(|m| m.join_url)
                .or(event.online_meeting_url)
                .filter(|link| !link.is_empty()),
            cancelled: removed || event.is_cancelled == Some(true),
        };
        self.upsert(event.id, item, |old, new| {
            keep(&mut old.starts_at, new.starts_at);
            keep(&mut old.ends_at, new.ends_at);
            keep(&mut old.organizer, new.organizer);
            keep(&mut old.subject, new.subject);
            keep(&mut old.conference_link, new.conference_link);
            keep_listed(&mut old.participants, new.participants, had_attendees);
            old.cancelled = new.cancelled;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn mail_page_with_replay_and_removal() {
        let mut sink = MailSink::default();
        let links = sink
            .page(br##"{"@odata.nextLink":"n","value":[
                {"id":"a","subject":"hi","from":{"emailAddress":{"name":"A","address":"a@x"}},
                 "toRecipients":[{"emailAddress":{"address":"b@x"}}],"ccRecipients":[{"emailAddress":{"address":"c@x"}},{"emailAddress":{"address":"b@x"}}],
                 "receivedDateTime":"2026-11-28T10:00:00Z","conversationId":"t1"},
                {"id":"b","subject":"gone soon"}]}"##)
            .expect("page");
        assert_eq!(
            links,
            Links {
                next: Some("n".into()),
                delta: None
            }
        );
        let links = sink
            .page(br##"{"@odata.deltaLink":"d","value":[
                {"id":"a","subject":"hi again"},
                {"@odata.type":"#microsoft.graph.message","id":"b","@removed":{"reason":"deleted"}},
                {"@odata.type":"#microsoft.graph.message","id":"z","@removed":{"reason":"deleted"}}]}"##)
            .expect("page");
        assert_eq!(links.delta.as_deref(), Some("d"));
        assert_eq!(sink.removed, 2);
        let items = sink.into_items();
        assert_eq!(items.len(), 1);
        let a = &items[0];
        assert_eq!(a.subject.as_deref(), Some("hi again"));
        assert_eq!(a.sender.as_deref(), Some("a@x"));
        assert_eq!(a.participants, ["b@x", "c@x"]);
        assert_eq!(a.thread_id.as_deref(), Some("t1"));
        assert_eq!(a.sent_at, Some(datetime!(2026-11-28 10:00 UTC)));
    }

    #[test]
    fn calendar_page() {
        let mut sink = CalendarSink::default();
        sink.page(br##"{"value":[
            {"id":"e1","subject":"sync","start":{"dateTime":"2026-11-28T10:00:00.5000000","timeZone":"UTC"},
             "end":{"dateTime":"2026-11-28T11:00:00.0000000","timeZone":"UTC"},
             "organizer":{"emailAddress":{"address":"o@x"}},"attendees":[{"type":"required","emailAddress":{"address":"p@x"}}],
             "isCancelled":false,"onlineMeeting":{"joinUrl":"https://teams.microsoft.com/l/meetup-join/1"}},
            {"id":"e2","subject":"off","isCancelled":true,"start":{"dateTime":"2026-11-28T10:00:00","timeZone":"Pacific Standard Time"}},
            {"id":"e1","subject":"sync"},
            {"@odata.type":"#microsoft.graph.event","id":"e3","@removed":{"reason":"deleted"}}]}"##)
            .expect("page");
        let items = sink.into_items();
        assert_eq!(items.len(), 3, "e1 deduplicated");
        let e1 = &items[0];
        assert_eq!(e1.starts_at, Some(datetime!(2026-11-28 10:00:00.5 UTC)));
        assert_eq!(e1.ends_at, Some(datetime!(2026-11-28 11:00 UTC)));
        assert_eq!(e1.participants, ["p@x"]);
        assert_eq!(e1.organizer.as_deref(), Some("o@x"));
        assert_eq!(
            e1.conference_link.as_deref(),
            Some("https://teams.microsoft.com/l/meetup-join/1")
        );
        assert!(!e1.cancelled);
        assert!(items[1].cancelled);
        assert_eq!(items[1].starts_at, None, "a non-UTC time is not guessed");
        assert!(items[2].cancelled);
        assert_eq!(items[2].provider_id, "e3");
    }

    #[test]
    fn malformed_pages_are_errors() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"value":[{"subject":"no id"}]}"#,
            br#"{"value":"x"}"#,
            br#"{}"#,
        ] {
            assert!(
                MailSink::default().page(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
            assert!(CalendarSink::default().page(bad).is_err());
        }
    }
}
