//! Typed serde models of the Google answers the connector reads, and nothing more.
//!
//! Only the fields we use are declared; everything is optional or defaulted where Google
//! may leave it out, so a sparse but valid answer parses, and an answer that does not
//! parse at all is a `provider_error` decided by the caller (never a panic). The two error
//! envelopes of providers/google.md §1 (flat OAuth token errors, the nested REST envelope)
//! each have their own type.

use serde::{Deserialize, Serialize};

// ---- token endpoint (providers/google.md §1.2, §2, §3) ------------------------------------

/// A successful token answer (JWT-bearer or refresh grant; the connect flow's code grant
/// is parsed by the `oauth2` crate).
#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// Granted scopes, space separated (refresh and code grants).
    #[serde(default)]
    pub scope: Option<String>,
}

/// The flat OAuth error: `{"error": "...", "error_description": "...", "error_subtype": ...}`.
/// Also the `oauth2` crate's error type of the connect flow's code redemption, so that
/// the mapping sees every field.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct TokenError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subtype: Option<String>,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)?;
        if let Some(description) = &self.error_description {
            write!(f, ": {description}")?;
        }
        Ok(())
    }
}

impl datacap_connector::code_flow::ErrorResponse for TokenError {}

// ---- REST envelope (providers/google.md §1.1) ----------------------------------------------

/// `{"error": {...}}` of Gmail, Calendar and Directory.
#[derive(Deserialize)]
pub(crate) struct ApiErrorEnvelope {
    pub error: ApiError,
}

/// The inner REST error: code, message, legacy `errors[]`, `status`, `details[]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub errors: Vec<ApiErrorItem>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub details: Vec<ApiErrorDetail>,
}

/// One legacy `errors[]` item.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ApiErrorItem {
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// One `details[]` entry; only `google.rpc.ErrorInfo` carries a `reason`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ApiErrorDetail {
    #[serde(rename = "@type", default)]
    pub type_url: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl ApiError {
    /// The reason to branch on (providers/google.md §1.1): `errors[0].reason`, else the
    /// ErrorInfo `details[].reason`, else `status`.
    pub fn reason(&self) -> Option<&str> {
        self.errors
            .first()
            .and_then(|item| item.reason.as_deref())
            .or_else(|| {
                self.details
                    .iter()
                    .find(|detail| {
                        detail
                            .type_url
                            .as_deref()
                            .is_none_or(|t| t.ends_with("google.rpc.ErrorInfo"))
                            && detail.reason.is_some()
                    })
                    .and_then(|detail| detail.reason.as_deref())
            })
            .or(self.status.as_deref())
    }

    /// The ErrorInfo reasons, for the checks that also look past `errors[0]`.
    pub fn detail_reasons(&self) -> impl Iterator<Item = &str> {
        self.details.iter().filter_map(|d| d.reason.as_deref())
    }

    /// The most specific message: the top one, else `errors[0].message`.
    pub fn best_message(&self) -> Option<&str> {
        self.message
            .as_deref()
            .or_else(|| self.errors.first().and_then(|i| i.message.as_deref()))
    }
}

// ---- Gmail (providers/google.md §4, §5) ------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GmailProfile {
    pub history_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageList {
    #[serde(default)]
    pub messages: Vec<MessageRef>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct MessageRef {
    pub id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GmailMessage {
    pub id: String,
    #[serde(default)]
    pub thread_id: Option<String>,
    /// Milliseconds since the epoch, as a decimal string.
    #[serde(default)]
    pub internal_date: Option<String>,
    /// Parsed for completeness; `EmailItem` has no field for it yet.
    #[serde(default)]
    #[allow(dead_code)]
    pub size_estimate: Option<u64>,
    #[serde(default)]
    pub payload: Option<MessagePayload>,
}

#[derive(Deserialize)]
pub(crate) struct MessagePayload {
    #[serde(default)]
    pub headers: Vec<MessageHeader>,
}

#[derive(Deserialize)]
pub(crate) struct MessageHeader {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HistoryList {
    #[serde(default)]
    pub history: Vec<HistoryRecord>,
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// The mailbox's current history id.
    #[serde(default)]
    pub history_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HistoryRecord {
    pub id: String,
    #[serde(default)]
    pub messages_added: Vec<HistoryMessage>,
}

#[derive(Deserialize)]
pub(crate) struct HistoryMessage {
    pub message: MessageRef,
}

// ---- Calendar (providers/google.md §6, §7) ---------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventList {
    #[serde(default)]
    pub items: Vec<Event>,
    #[serde(default)]
    pub next_page_token: Option<String>,
    #[serde(default)]
    pub next_sync_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Event {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub start: Option<EventTime>,
    #[serde(default)]
    pub end: Option<EventTime>,
    #[serde(default)]
    pub organizer: Option<Person>,
    #[serde(default)]
    pub attendees: Vec<Person>,
    #[serde(default)]
    pub hangout_link: Option<String>,
    #[serde(default)]
    pub conference_data: Option<ConferenceData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventTime {
    /// RFC 3339, timed events.
    #[serde(default)]
    pub date_time: Option<String>,
    /// `yyyy-mm-dd`, all-day events.
    #[serde(default)]
    pub date: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Person {
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConferenceData {
    #[serde(default)]
    pub entry_points: Vec<EntryPoint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EntryPoint {
    #[serde(default)]
    pub entry_point_type: Option<String>,
    #[serde(default)]
    pub uri: Option<String>,
}

// ---- Directory (providers/google.md §8) ------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserList {
    #[serde(default)]
    pub users: Vec<DirectoryUser>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirectoryUser {
    pub primary_email: String,
    #[serde(default)]
    pub suspended: Option<bool>,
    #[serde(default)]
    pub archived: Option<bool>,
    #[serde(default)]
    pub is_mailbox_setup: Option<bool>,
}
