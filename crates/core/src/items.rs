//! The metadata datacap imports: one email or one calendar event, as connectors report
//! them and the store keeps them (idempotent on the member and the provider's id).
//!
//! Only metadata: who, when, what subject, which conference link. Bodies and attachments
//! are never fetched.

use time::OffsetDateTime;

/// Metadata of one email.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmailItem {
    /// The provider's message id (Gmail message id, Graph message id).
    pub provider_id: String,
    pub thread_id: Option<String>,
    /// When the message was sent or received (Gmail `internalDate`, Graph `receivedDateTime`).
    pub sent_at: Option<OffsetDateTime>,
    pub sender: Option<String>,
    /// Every To and Cc address.
    pub participants: Vec<String>,
    pub subject: Option<String>,
}

/// Metadata of one calendar event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CalendarItem {
    /// The provider's event id.
    pub provider_id: String,
    pub starts_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
    pub organizer: Option<String>,
    /// Every attendee's address.
    pub participants: Vec<String>,
    pub subject: Option<String>,
    /// Google Meet / Teams / other join link.
    pub conference_link: Option<String>,
    /// The event was cancelled or removed at the provider.
    pub cancelled: bool,
}
