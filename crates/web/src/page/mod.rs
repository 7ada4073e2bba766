//! The HTML side: the Team members page of a company, the operator's index of companies,
//! sign-in and sign-out, and the plain message page other handlers answer with.
//!
//! Templates are askama's (crates/web/templates/), checked against these structs at
//! compile time and HTML-escaped by default, so no provider message or member address can
//! inject markup. The pages' one script ([`PAGE_SCRIPT`]) fetches the page again every
//! `[web] refresh` and patches the parts marked `data-patch` (rows keyed by `data-key`),
//! keeping focus, scroll and unsubmitted controls; it also shows times in the reader's
//! zone. Without script the pages are complete, as of their load.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use datacap_core::{BannerCode, Color, Reason};
use datacap_store::{
    AttemptReport, CompanyReport, IconReport, MemberReport, StatusReport, StoreError,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::{Denied, Principal};
use crate::{App, WebState};

mod index;
mod login;
mod member;
mod members;
#[cfg(test)]
mod tests;
mod views;

pub(crate) use index::index;
pub(crate) use login::{denied, login, login_form, logout, page_principal};
pub(crate) use member::{member, resync};
pub(crate) use members::members;
pub use views::DEFAULT_SUPPORT;
pub(crate) use views::support_of;
use views::*;

/// The pages' one script, inlined in every page by base.html and allowed by its SHA-256 in
/// [`crate::CONTENT_SECURITY_POLICY`]: local and relative times, live updates, Esc on tips.
/// Without it (scripts off) every page still works; only live updates and local times stop.
pub const PAGE_SCRIPT: &str = include_str!("../../assets/page.js");

#[derive(Template)]
#[template(path = "message.html")]
pub(super) struct MessagePage<'a> {
    pub(super) title: &'a str,
    pub(super) text: &'a str,
    pub(super) detail: Option<&'a str>,
    pub(super) class: &'a str,
}

/// A small HTML page with a title and a sentence (errors, the connect flow's results).
pub(crate) fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    detail: Option<&str>,
) -> Response {
    let class = if status.is_success() { "" } else { "error" };
    render(
        status,
        &MessagePage {
            title,
            text,
            detail,
            class,
        },
    )
}

pub(crate) fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot render a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the page\n",
            )
                .into_response()
        }
    }
}

/// The app, or a 404 page when this server was started without one (a feature that is
/// not set up is not a server failure).
pub(crate) fn app_of(state: &WebState) -> Result<Arc<App>, Response> {
    state.app.clone().ok_or_else(|| {
        message(
            StatusCode::NOT_FOUND,
            "Not available",
            "This server only answers health, readiness and metrics.",
            None,
        )
    })
}

/// The app and who reads the page (`company`: the company it shows, which the reader
/// must be allowed to read), or the page to answer instead.
pub(crate) fn reader(
    state: &WebState,
    headers: &HeaderMap,
    company: Option<&str>,
) -> Result<(Arc<App>, Principal), Response> {
    let app = app_of(state)?;
    let principal = page_principal(&app, headers, company)?;
    Ok((app, principal))
}

/// A store read, its failure as the page to answer ([`store_failure`]).
pub(crate) fn stored<T>(read: Result<T, StoreError>) -> Result<T, Response> {
    read.map_err(|error| store_failure(&error))
}

/// One company's status report, or the page to answer (404 for an unknown company).
pub(crate) async fn company_report(app: &App, company_id: &str) -> Result<CompanyReport, Response> {
    let report: StatusReport = stored(app.store.status(Some(company_id)).await)?;
    report.companies.into_iter().next().ok_or_else(|| {
        store_failure(&StoreError::UnknownCompany {
            company_id: company_id.to_owned(),
        })
    })
}

/// The page for a store failure: 404 for an unknown company or member, else 500 (the
/// detail goes to the log, not to the browser).
pub(crate) fn store_failure(error: &StoreError) -> Response {
    match error {
        StoreError::UnknownCompany { .. } | StoreError::UnknownMember { .. } => message(
            StatusCode::NOT_FOUND,
            "Not found",
            &capitalized(&error.to_string()),
            None,
        ),
        other => {
            tracing::error!(error = %other, "the store failed");
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "datacap could not read its database; the operator finds the cause in the logs.",
                None,
            )
        }
    }
}

pub(super) fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// A path segment, percent-encoded.
pub(crate) fn encode_segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

pub(super) fn time_text(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

// ---- index ------------------------------------------------------------------------------
