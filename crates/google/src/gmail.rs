//! The Gmail import: a full pass over the mail window on the first run (or when the saved
//! history id is gone), `history.list` from the saved id afterwards.
//!
//! The cursor is a Gmail history id. A full pass reads the profile's `historyId` *before*
//! listing, so nothing that arrives during the pass is missed (at worst it is seen twice,
//! and the store is idempotent on the message id). Every loop is bounded by
//! `max_pages`; message metadata only (never bodies).

use std::collections::HashSet;

use datacap_connector::Failure;
use datacap_core::{Channel, EmailItem};
use futures_util::StreamExt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::errors::{Api, Verdict};
use crate::models::{GmailMessage, GmailProfile, HistoryList, MessageList};
use crate::session::Session;
use crate::token::Purpose;

const PURPOSE: Purpose = Purpose::Mailbox(Channel::Email);

/// `messages.get` calls in flight per attempt: well under Gmail's per-user concurrency
/// limit ("Too many concurrent requests for user"), enough to hide loopback-to-Google
/// latency on a 30-day window.
const METADATA_CONCURRENCY: usize = 4;

/// Imported mail and the history id to save.
pub(crate) struct MailPass {
    pub items: Vec<EmailItem>,
    pub cursor: String,
}

pub(crate) async fn import(session: &Session<'_>) -> Result<MailPass, Failure> {
    if let Some(start) = session.job.cursor.clone() {
        match incremental(session, &start).await {
            Ok(pass) => return Ok(pass),
            Err(Stop::Stale) => {
                tracing::info!(
                    http_status = 404,
                    "gmail history id is no longer valid; running a full pass"
                );
            }
            Err(Stop::Failed(failure)) => return Err(failure),
        }
    }
    full(session).await
}

enum Stop {
    Stale,
    Failed(Failure),
}

fn base(session: &Session<'_>) -> String {
    format!(
        "{}/users/{}",
        session.inner.config.gmail_base,
        encode_path(&session.job.member_address)
    )
}

async fn full(session: &Session<'_>) -> Result<MailPass, Failure> {
    let base = base(session);
    let profile: GmailProfile = session
        .get(PURPOSE, Api::GmailProfile, &format!("{base}/profile"), &[])
        .await
        .map_err(|f| f.failure)?;
    let window = time::Duration::try_from(session.inner.config.mail_window)
        .unwrap_or(time::Duration::days(30));
    let since = session.now() - window;
    let page_size = session.inner.config.page_size.to_string();
    let mut ids: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let mut page_token: Option<String> = None;
    for _ in 0..session.inner.config.max_pages {
        let mut query = vec![
            ("maxResults", page_size.clone()),
            ("q", format!("after:{}", since.unix_timestamp())),
        ];
        if let Some(token) = &page_token {
            query.push(("pageToken", token.clone()));
        }
        let page: MessageList = session
            .get(
                PURPOSE,
                Api::GmailMessagesList,
                &format!("{base}/messages"),
                &query,
            )
            .await
            .map_err(|f| f.failure)?;
        for message in page.messages {
            if seen.insert(message.id.clone()) {
                ids.push(message.id);
            }
        }
        match page.next_page_token {
            Some(token) if !token.is_empty() => page_token = Some(token),
            _ => {
                page_token = None;
                break;
            }
        }
    }
    if page_token.is_some() {
        // Older messages than max_pages reach are outside what one pass imports; the
        // cursor is still right because it was read before listing.
        tracing::info!(
            max_pages = session.inner.config.max_pages,
            "gmail full pass stopped at the page limit"
        );
    }
    let items = fetch_all(session, &base, ids)
        .await?
        .into_iter()
        // Google's `after:` has day granularity in some clients; keep the window exact.
        .filter(|item| item.sent_at.is_none_or(|at| at >= since))
        .collect();
    Ok(MailPass {
        items,
        cursor: profile.history_id,
    })
}

async fn incremental(session: &Session<'_>, start: &str) -> Result<MailPass, Stop> {
    let base = base(session);
    let page_size = session.inner.config.page_size.to_string();
    let mut ids: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let mut page_token: Option<String> = None;
    let mut cursor: Option<String> = None;
    let mut last_record: Option<String> = None;
    for _ in 0..session.inner.config.max_pages {
        let mut query = vec![
            ("startHistoryId", start.to_owned()),
            ("historyTypes", "messageAdded".to_owned()),
            ("maxResults", page_size.clone()),
        ];
        if let Some(token) = &page_token {
            query.push(("pageToken", token.clone()));
        }
        let page: HistoryList = match session
            .get(
                PURPOSE,
                Api::GmailHistory,
                &format!("{base}/history"),
                &query,
            )
            .await
        {
            Ok(page) => page,
            Err(failure) if failure.verdict == Verdict::StaleCursor => return Err(Stop::Stale),
            Err(failure) => return Err(Stop::Failed(failure.failure)),
        };
        for record in page.history {
            for added in record.messages_added {
                if seen.insert(added.message.id.clone()) {
                    ids.push(added.message.id);
                }
            }
            last_record = Some(record.id);
        }
        match page.next_page_token {
            Some(token) if !token.is_empty() => page_token = Some(token),
            _ => {
                cursor = page.history_id;
                page_token = None;
                break;
            }
        }
    }
    // Stopped at the page limit: resume after the last record read.
    let cursor = match (page_token, cursor, last_record) {
        (None, Some(latest), _) => latest,
        (_, _, Some(last)) => last,
        _ => start.to_owned(),
    };
    let items = fetch_all(session, &base, ids).await.map_err(Stop::Failed)?;
    Ok(MailPass { items, cursor })
}

/// Metadata of every listed message, in list order, `METADATA_CONCURRENCY` calls at a
/// time; vanished messages are left out. The first failure ends the pass.
async fn fetch_all(
    session: &Session<'_>,
    base: &str,
    ids: Vec<String>,
) -> Result<Vec<EmailItem>, Failure> {
    let mut fetches = futures_util::stream::iter(ids)
        .map(|id| async move { metadata(session, base, &id).await })
        .buffered(METADATA_CONCURRENCY);
    let mut items = Vec::new();
    while let Some(fetched) = fetches.next().await {
        if let Some(item) = fetched? {
            items.push(item);
        }
    }
    Ok(items)
}

/// One message's metadata; `None` when it vanished (404) since it was listed.
async fn metadata(
    session: &Session<'_>,
    base: &str,
    id: &str,
) -> Result<Option<EmailItem>, Failure> {
    let query: Vec<(&str, String)> = ["From", "To", "Cc", "Subject", "Date"]
        .into_iter()
        .map(|header| ("metadataHeaders", header.to_owned()))
        .chain([("format", "metadata".to_owned())])
        .collect();
    let url = format!("{base}/messages/{}", encode_path(id));
    match session
        .get::<GmailMessage>(PURPOSE, Api::GmailMessageGet, &url, &query)
        .await
    {
        Ok(message) => Ok(Some(email_item(message))),
        Err(failure) if failure.verdict == Verdict::Vanished => Ok(None),
        Err(failure) => Err(failure.failure),
    }
}

pub(crate) fn email_item(message: GmailMessage) -> EmailItem {
    let headers = message
        .payload
        .map(|payload| payload.headers)
        .unwrap_or_default();
    let header = |name: &str| {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
            .collect::<Vec<_>>()
    };
    let sent_at = message
        .internal_date
        .as_deref()
        .and_then(|ms| ms.parse::<i128>().ok())
        // A huge `internalDate` is no date (and must not overflow), like an unparsable one.
        .and_then(|ms| ms.checked_mul(1_000_000))
        .and_then(|ns| OffsetDateTime::from_unix_timestamp_nanos(ns).ok())
        .or_else(|| {
            header("Date")
                .first()
                .and_then(|d| OffsetDateTime::parse(d, &Rfc2822).ok())
        });
    let mut participants = Vec::new();
    for value in header("To").into_iter().chain(header("Cc")) {
        for address in addresses(value) {
            if !participants.contains(&address) {
                participants.push(address);
            }
        }
    }
    EmailItem {
        provider_id: message.id,
        thread_id: message.thread_id,
        sent_at,
        sender: header("From")
            .first()
            .and_then(|v| addresses(v).into_iter().next()),
        participants,
        subject: header("Subject").first().map(|s| (*s).to_owned()),
    }
}

/// The addresses of an address-list header: `"Name, Jr" <a@x>, b@y` → `[a@x, b@y]`.
/// Commas inside quotes or angle brackets do not split.
pub(crate) fn addresses(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut angle = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .filter_map(|part| {
            let part = part.trim();
            let address = match (part.rfind('<'), part.rfind('>')) {
                (Some(open), Some(close)) if open < close => part.get(open + 1..close)?,
                _ => part,
            };
            let address = address.trim();
            address.contains('@').then(|| address.to_ascii_lowercase())
        })
        .collect()
}

/// Percent-encodes one path segment (addresses carry `@` and `+`).
pub(crate) fn encode_path(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(value: &str, expected: &[&str]) {
        assert_eq!(addresses(value), expected, "{value}");
    }

    #[test]
    fn address_lists() {
        check("a@x.example", &["a@x.example"]);
        check("Ada <Ada@X.example>", &["ada@x.example"]);
        check(
            "\"Lovelace, Ada\" <a@x.example>, b@y.example",
            &["a@x.example", "b@y.example"],
        );
        check("undisclosed-recipients:;", &[]);
        check("", &[]);
    }

    /// An `internalDate` of 38 digits overflowed (seen writing the `google_pages` fuzz target).
    #[test]
    fn a_huge_internal_date_falls_back_to_the_date_header() {
        let message: GmailMessage = serde_json::from_value(serde_json::json!({
            "id": "m1",
            "internalDate": "99999999999999999999999999999999999999",
            "payload": {"headers": [{"name": "Date", "value": "Tue, 1 Jul 2003 10:52:37 +0200"}]}
        }))
        .unwrap();
        let item = email_item(message);
        assert_eq!(
            item.sent_at.map(OffsetDateTime::unix_timestamp),
            Some(1_057_049_557)
        );
    }

    #[test]
    fn path_segments() {
        assert_eq!(encode_path("ada+x@acme.example"), "ada%2Bx@acme.example");
        assert_eq!(encode_path("a/b"), "a%2Fb");
    }
}
