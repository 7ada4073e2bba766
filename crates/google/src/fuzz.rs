//! Entry points for the fuzz targets in `fuzz/` (not an API: hidden from the docs). Each
//! one parses a provider body with the exact types, mapping and item conversion that the
//! connector runs on a real answer, and throws the result away; a panic is a bug.

use crate::calendar::calendar_item;
use crate::errors::{self, Api, Grant};
use crate::gmail::email_item;
use crate::models::{
    ApiErrorEnvelope, EventList, GmailMessage, HistoryList, MessageList, TokenError,
};

/// A Gmail, Calendar or Directory error answer with `status`, as `Session::get` reads it.
pub fn api_error(api: Api, status: u16, body: &[u8]) {
    let parsed = serde_json::from_slice::<ApiErrorEnvelope>(body)
        .ok()
        .map(|envelope| envelope.error);
    let _ = errors::api_verdict(api, status, parsed.as_ref());
    if let Some(error) = &parsed {
        let _ = error.reason();
        let _ = error.best_message();
        let _ = error.detail_reasons().count();
    }
}

/// A token endpoint error answer, as the token request reads it.
pub fn token_error(grant: Grant, status: u16, body: &[u8]) {
    if let Ok(error) = serde_json::from_slice::<TokenError>(body) {
        let _ = errors::token_outcome(grant, status, &error);
    }
}

/// A `messages.list` page.
pub fn message_list(body: &[u8]) {
    if let Ok(page) = serde_json::from_slice::<MessageList>(body) {
        let _ = (page.messages.len(), page.next_page_token);
    }
}

/// A `history.list` page.
pub fn history_page(body: &[u8]) {
    if let Ok(page) = serde_json::from_slice::<HistoryList>(body) {
        let _ = (page.history.len(), page.next_page_token, page.history_id);
    }
}

/// A `messages.get` answer (metadata format), turned into an item.
pub fn message(body: &[u8]) {
    if let Ok(message) = serde_json::from_slice::<GmailMessage>(body) {
        let _ = email_item(message);
    }
}

/// An `events.list` page, every event turned into an item.
pub fn events_page(body: &[u8]) {
    if let Ok(page) = serde_json::from_slice::<EventList>(body) {
        for event in page.items {
            let _ = calendar_item(event);
        }
    }
}
