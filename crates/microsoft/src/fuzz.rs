//! Entry points for the fuzz targets in `fuzz/` (not an API: hidden from the docs). Each
//! one feeds bodies to the exact parsers and sinks the connector runs on real answers and
//! throws the result away; a panic is a bug.

use crate::delta::{CalendarSink, DeltaSink, MailSink};
use crate::errors::{GraphErrorInfo, TokenErrorBody, classify_graph_error, classify_token_error};
use crate::token::TokenClaims;

/// Pages of one delta round, in order: what a sink reads before it returns its items
/// (at most this many, as the fuzz input is split into pages).
const MAX_PAGES: usize = 8;

fn round(sink: &mut impl DeltaSink, pages: &[&[u8]]) {
    for page in pages.iter().take(MAX_PAGES) {
        if sink.page(page).is_err() {
            sink.reset();
        }
    }
}

/// A mail delta round (`messages/delta`) made of `pages`.
pub fn mail_delta(pages: &[&[u8]]) {
    let mut sink = MailSink::default();
    round(&mut sink, pages);
    let _ = sink.into_items();
}

/// A calendar delta round (`calendarView/delta`) made of `pages`.
pub fn calendar_delta(pages: &[&[u8]]) {
    let mut sink = CalendarSink::default();
    round(&mut sink, pages);
    let _ = sink.into_items();
}

/// A Graph error answer with `status`.
pub fn graph_error(status: u16, body: &[u8]) {
    let info = GraphErrorInfo::parse(body);
    for grants in [None, Some(false), Some(true)] {
        let _ = classify_graph_error(status, info.as_ref(), grants);
    }
    let _ = info.as_ref().and_then(GraphErrorInfo::code);
}

/// An Entra token endpoint error answer with `status`.
pub fn token_error(status: u16, body: &[u8]) {
    let parsed = TokenErrorBody::parse(body);
    let _ = classify_token_error(status, parsed.as_ref());
    let _ = parsed.as_ref().map(TokenErrorBody::summary);
}

/// An access token whose claims the connector reads (`roles` / `scp`).
pub fn access_token(text: &str) {
    if let Some(claims) = TokenClaims::decode(text) {
        let _ = claims.permissions().count();
    }
}
