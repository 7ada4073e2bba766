//! The HTML side: the Team members page of a company, the operator's index of companies,
//! sign-in and sign-out, and the plain message page other handlers answer with.
//!
//! Templates are askama's (crates/web/templates/), checked against these structs at
//! compile time and HTML-escaped by default, so no provider message or member address can
//! inject markup. Pages reload themselves with a meta refresh (no script needed), which
//! keeps the filter in the URL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use datacap_core::{Color, Reason};
use datacap_store::{AttemptReport, CompanyReport, IconReport, StatusReport, StoreError};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::{Denied, Principal};
use crate::{App, WebState};

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    text: &'a str,
    detail: Option<&'a str>,
    class: &'a str,
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

fn render(status: StatusCode, template: &impl Template) -> Response {
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

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    error: Option<&'a str>,
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    render(status, &LoginPage { error })
}

/// A refused page request: 401 shows the sign-in form, 403 says whose data it is not.
fn denied(denied: Denied) -> Response {
    match denied {
        Denied::Unauthenticated => login_page(StatusCode::UNAUTHORIZED, None),
        Denied::Forbidden => message(
            StatusCode::FORBIDDEN,
            "Not your company",
            "Your token gives access to another company's page only.",
            None,
        ),
    }
}

/// The page's principal, checked to read `company` when given.
fn page_principal(
    app: &App,
    headers: &HeaderMap,
    company: Option<&str>,
) -> Result<Principal, Response> {
    let principal = app
        .auth
        .page(headers, OffsetDateTime::now_utc())
        .map_err(denied)?;
    if let Some(company) = company
        && !principal.may_read(company)
    {
        return Err(denied(Denied::Forbidden));
    }
    Ok(principal)
}

pub(crate) async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

/// The sign-in form's body.
#[derive(serde::Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

pub(crate) async fn login(
    State(state): State<WebState>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let app = match app_of(&state) {
        Ok(app) => app,
        Err(response) => return response,
    };
    // Not the sign-in form (another content type, no `token` field, a body over the
    // limit): the sign-in page again saying so, never the framework's plain text.
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            let too_large = rejection.status() == StatusCode::PAYLOAD_TOO_LARGE;
            return login_page(
                if too_large {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                },
                Some(if too_large {
                    "That was too long to be a token."
                } else {
                    "Sign in with the form: paste your token and press the button."
                }),
            );
        }
    };
    let Some(principal) = app.auth.principal_of_token(&form.token) else {
        tracing::info!("a sign-in with a wrong token was refused");
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That token is not valid. Check it and try again."),
        );
    };
    let target = match &principal {
        Principal::Operator => "/".to_owned(),
        Principal::Company(id) => format!("/companies/{}/members", encode_segment(id)),
    };
    let cookie = app
        .auth
        .session_cookie(&principal, OffsetDateTime::now_utc());
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, target)],
    )
        .into_response()
}

pub(crate) async fn logout(State(state): State<WebState>) -> Response {
    let app = match app_of(&state) {
        Ok(app) => app,
        Err(response) => return response,
    };
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, app.auth.clear_cookie()),
            (header::LOCATION, "/login".to_owned()),
        ],
    )
        .into_response()
}

/// A path segment, percent-encoded.
pub(crate) fn encode_segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn now_text() -> String {
    time_text(OffsetDateTime::now_utc())
}

fn time_text(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

// ---- index ------------------------------------------------------------------------------

struct CompanyRow {
    id: String,
    name: String,
    provider: &'static str,
    members: usize,
    red: usize,
    yellow: usize,
    banners: usize,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    companies: Vec<CompanyRow>,
    generated_at: String,
    refresh_seconds: u32,
}

pub(crate) async fn index(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let app = match app_of(&state) {
        Ok(app) => app,
        Err(response) => return response,
    };
    let principal = match page_principal(&app, &headers, None) {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    if let Principal::Company(id) = &principal {
        let target = format!("/companies/{}/members", encode_segment(id));
        return (StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response();
    }
    let report = match app.store.status(None).await {
        Ok(report) => report,
        Err(error) => return store_failure(&error),
    };
    let worst = |company: &CompanyReport, color: Color| {
        company
            .members
            .iter()
            .filter(|member| member.capture.color == color)
            .count()
    };
    let companies = report
        .companies
        .iter()
        .map(|company| CompanyRow {
            id: company.id.clone(),
            name: company.name.clone(),
            provider: company.provider.display_name(),
            members: company.members.len(),
            red: worst(company, Color::Red),
            yellow: worst(company, Color::Yellow),
            banners: company.banners.len(),
        })
        .collect();
    render(
        StatusCode::OK,
        &IndexPage {
            companies,
            generated_at: now_text(),
            refresh_seconds: app.refresh_seconds,
        },
    )
}

// ---- the Team members page ---------------------------------------------------------------

struct BannerView {
    code: &'static str,
    color: &'static str,
    count: u32,
    message: String,
    resolution: String,
}

struct SelectOption {
    value: &'static str,
    label: String,
    selected: bool,
}

struct RedDetail {
    attempt_id: String,
    http_status: String,
    error_code: String,
}

struct IconView {
    kind: &'static str,
    kind_label: &'static str,
    glyph: &'static str,
    color: &'static str,
    color_label: &'static str,
    reason: &'static str,
    reason_label: String,
    message: String,
    resolution: String,
    tip_id: String,
    red: Option<RedDetail>,
}

struct MemberRow {
    id: String,
    /// The id as a URL path segment.
    path: String,
    email_address: String,
    icons: Vec<IconView>,
    last_email: String,
    last_calendar: String,
}

/// One webhook endpoint's health, as the company's admin sees it.
struct EndpointView {
    id: String,
    url: String,
    /// `ok`, `failing` (the last try failed), `dead` (events given up on) or `idle`.
    health: &'static str,
    backlog: u64,
    dead: u64,
    last_success: String,
    last_failure: String,
}

fn endpoint_view(endpoint: &datacap_store::EndpointReport) -> EndpointView {
    let failing = match (endpoint.last_failure_at, endpoint.last_success_at) {
        (Some(failure), Some(success)) => failure > success,
        (Some(_), None) => true,
        _ => false,
    };
    let health = if endpoint.dead > 0 {
        "dead"
    } else if failing {
        "failing"
    } else if endpoint.last_success_at.is_some() {
        "ok"
    } else {
        "idle"
    };
    EndpointView {
        id: endpoint.endpoint_id.clone(),
        url: endpoint.url.clone(),
        health,
        backlog: endpoint.backlog,
        dead: endpoint.dead,
        last_success: endpoint
            .last_success_at
            .map_or_else(|| "never".to_owned(), time_text),
        last_failure: match (endpoint.last_failure_at, &endpoint.last_failure) {
            (Some(at), Some(what)) => format!("{} ({what})", time_text(at)),
            _ => "none".to_owned(),
        },
    }
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    operator: bool,
    company_id: String,
    company_name: String,
    provider: &'static str,
    mode: &'static str,
    banners: Vec<BannerView>,
    colors: Vec<SelectOption>,
    reasons: Vec<SelectOption>,
    members: Vec<MemberRow>,
    shown: usize,
    total: usize,
    generated_at: String,
    refresh_seconds: u32,
    endpoints: Vec<EndpointView>,
    /// The company id as a URL path segment.
    company_path: String,
}

/// Material Design icon paths (Apache-2.0): microphone, envelope, calendar.
const MICROPHONE: &str = "M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5.3-3A5.3 5.3 0 0 1 12 16.1 5.3 5.3 0 0 1 6.7 11H5c0 3.4 2.7 6.2 6 6.7V21h2v-3.3c3.3-.5 6-3.3 6-6.7h-1.7z";
const ENVELOPE: &str = "M20 4H4a2 2 0 0 0-2 2v12a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2V6a2 2 0 0 0-2-2zm0 4-8 5-8-5V6l8 5 8-5v2z";
const CALENDAR: &str = "M19 3h-1V1h-2v2H8V1H6v2H5a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2V5a2 2 0 0 0-2-2zm0 16H5V8h14v11zM7 10h5v5H7z";

fn color_label(color: Color) -> &'static str {
    match color {
        Color::Green => "Green",
        Color::Yellow => "Yellow",
        Color::Red => "Red",
        Color::Gray => "Gray",
    }
}

/// `member_not_connected` → "member not connected".
fn reason_label(reason: Reason) -> String {
    reason.as_str().replace('_', " ")
}

/// Which members the page shows: any of whose icons has this colour and reason.
#[derive(Default)]
struct Filter {
    color: Option<Color>,
    reason: Option<Reason>,
}

impl Filter {
    /// The `color` and `reason` query parameters (empty means any); anything else, or
    /// an unknown value, is a clear error.
    fn parse(query: &HashMap<String, String>) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for (name, value) in query {
            match (name.as_str(), value.as_str()) {
                (_, "") => {}
                ("color", value) => {
                    filter.color = Some(Color::parse(value).ok_or_else(|| {
                        format!(
                            "color {value:?} is not one of {}",
                            Color::ALL
                                .iter()
                                .map(|c| c.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?);
                }
                ("reason", value) => {
                    filter.reason = Some(Reason::parse(value).ok_or_else(|| {
                        format!("reason {value:?} is not a reason of STATUS_MODEL.md")
                    })?);
                }
                (other, _) => {
                    return Err(format!(
                        "unknown query parameter {other:?} (use color and reason)"
                    ));
                }
            }
        }
        Ok(filter)
    }

    fn keeps(&self, icons: [&IconReport; 3]) -> bool {
        icons.iter().any(|icon| {
            self.color.is_none_or(|color| icon.color == color)
                && self.reason.is_none_or(|reason| icon.reason == reason)
        })
    }
}

fn icon_view(
    member: &str,
    kind: &'static str,
    icon: &IconReport,
    attempts: &BTreeMap<&str, &AttemptReport>,
) -> IconView {
    let (kind_label, glyph) = match kind {
        "capture" => ("Capture", MICROPHONE),
        "email" => ("Email", ENVELOPE),
        _ => ("Calendar", CALENDAR),
    };
    let red = (icon.color == Color::Red).then(|| {
        let attempt = icon
            .last_attempt_id
            .as_deref()
            .and_then(|id| attempts.get(id));
        RedDetail {
            attempt_id: icon
                .last_attempt_id
                .clone()
                .unwrap_or_else(|| "none".to_owned()),
            http_status: attempt
                .and_then(|a| a.http_status)
                .map_or_else(|| "none".to_owned(), |status| status.to_string()),
            error_code: attempt
                .and_then(|a| a.provider_error_code.clone())
                .unwrap_or_else(|| "none".to_owned()),
        }
    });
    IconView {
        kind,
        kind_label,
        glyph,
        color: icon.color.as_str(),
        color_label: color_label(icon.color),
        reason: icon.reason.as_str(),
        reason_label: reason_label(icon.reason),
        message: icon.message.clone(),
        resolution: icon.resolution.clone(),
        tip_id: format!("tip-{}-{kind}", encode_segment(member)),
        red,
    }
}

/// "2026-11-29T12:00:00Z (provider_error); last success 2026-11-29T11:00:00Z (12 items)"
/// for an icon's latest attempt and its channel's last successful import, or "never".
fn last_import(icon: &IconReport, attempts: &BTreeMap<&str, &AttemptReport>) -> String {
    let latest = icon
        .last_attempt_id
        .as_deref()
        .and_then(|id| attempts.get(id))
        .map_or_else(
            || "never".to_owned(),
            |attempt| format!("{} ({})", time_text(attempt.finished_at), attempt.outcome),
        );
    match icon.last_success {
        Some(success) => format!(
            "{latest}; last success {} ({} items)",
            time_text(success.at),
            success.items
        ),
        None if latest == "never" => latest,
        None => format!("{latest}; no success yet"),
    }
}

pub(crate) async fn members(
    State(state): State<WebState>,
    Path(company_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let app = match app_of(&state) {
        Ok(app) => app,
        Err(response) => return response,
    };
    let principal = match page_principal(&app, &headers, Some(&company_id)) {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let filter = match Filter::parse(&query) {
        Ok(filter) => filter,
        Err(problem) => {
            return message(
                StatusCode::BAD_REQUEST,
                "Bad filter",
                &capitalized(&problem),
                None,
            );
        }
    };
    let report: StatusReport = match app.store.status(Some(&company_id)).await {
        Ok(report) => report,
        Err(error) => return store_failure(&error),
    };
    let Some(company) = report.companies.into_iter().next() else {
        return store_failure(&StoreError::UnknownCompany { company_id });
    };
    let ids: Vec<String> = company
        .members
        .iter()
        .flat_map(|m| [&m.capture, &m.email, &m.calendar])
        .filter_map(|icon| icon.last_attempt_id.clone())
        .collect();
    let attempts = match app.store.attempts_by_id(&ids).await {
        Ok(attempts) => attempts,
        Err(error) => return store_failure(&error),
    };
    let by_id: BTreeMap<&str, &AttemptReport> = attempts
        .iter()
        .map(|attempt| (attempt.attempt_id.as_str(), attempt))
        .collect();
    let company_id_for_links = company.id.clone();
    let endpoints = match app.store.webhook_endpoints(Some(&company.id)).await {
        Ok(endpoints) => endpoints
            .iter()
            .filter(|endpoint| endpoint.active)
            .map(endpoint_view)
            .collect(),
        Err(error) => return store_failure(&error),
    };
    let total = company.members.len();
    let members: Vec<MemberRow> = company
        .members
        .iter()
        .filter(|m| filter.keeps([&m.capture, &m.email, &m.calendar]))
        .map(|m| MemberRow {
            id: m.id.clone(),
            path: encode_segment(&m.id),
            email_address: m.email_address.clone(),
            icons: vec![
                icon_view(&m.id, "capture", &m.capture, &by_id),
                icon_view(&m.id, "email", &m.email, &by_id),
                icon_view(&m.id, "calendar", &m.calendar, &by_id),
            ],
            last_email: last_import(&m.email, &by_id),
            last_calendar: last_import(&m.calendar, &by_id),
        })
        .collect();
    let mut colors = vec![SelectOption {
        value: "",
        label: "any colour".to_owned(),
        selected: filter.color.is_none(),
    }];
    colors.extend(Color::ALL.iter().map(|&color| SelectOption {
        value: color.as_str(),
        label: color_label(color).to_owned(),
        selected: filter.color == Some(color),
    }));
    let mut reasons = vec![SelectOption {
        value: "",
        label: "any reason".to_owned(),
        selected: filter.reason.is_none(),
    }];
    reasons.extend(Reason::ALL.iter().map(|&reason| SelectOption {
        value: reason.as_str(),
        label: reason_label(reason),
        selected: filter.reason == Some(reason),
    }));
    let page = MembersPage {
        operator: principal == Principal::Operator,
        banners: company
            .banners
            .iter()
            .map(|banner| BannerView {
                code: banner.code.as_str(),
                color: banner.color.as_str(),
                count: banner.count,
                message: banner.message.clone(),
                resolution: banner.resolution.clone(),
            })
            .collect(),
        company_id: company.id,
        company_name: company.name,
        provider: company.provider.display_name(),
        mode: match company.connection_mode {
            datacap_core::ConnectionMode::CompanyWide => "company-wide connection",
            datacap_core::ConnectionMode::UserByUser => "members connect one by one",
        },
        colors,
        reasons,
        shown: members.len(),
        members,
        total,
        generated_at: now_text(),
        refresh_seconds: app.refresh_seconds,
        endpoints,
        company_path: encode_segment(&company_id_for_links),
    };
    render(StatusCode::OK, &page)
}

struct MemberIconView {
    kind: &'static str,
    color: &'static str,
    reason: &'static str,
    message: String,
    resolution: String,
    since: String,
    last_success: String,
}

struct ChangeView {
    at: String,
    icon: &'static str,
    from: String,
    to: String,
    attempt: String,
}

struct AttemptView {
    id: String,
    at: String,
    channel: &'static str,
    outcome: &'static str,
    http: String,
    error_code: String,
    error_message: String,
    request_id: String,
}

#[derive(Template)]
#[template(path = "member.html")]
struct MemberPage {
    company_path: String,
    company_name: String,
    member_id: String,
    email_address: String,
    icons: Vec<MemberIconView>,
    history: Vec<ChangeView>,
    attempts: Vec<AttemptView>,
    /// User-by-user only: the member's own grant state (`connected`, `not_connected`,
    /// `invalid`).
    connection: Option<&'static str>,
    /// A personal connect link for the admin to send, when the connect flow is set up.
    connect_link: Option<String>,
    /// How long that link lives, in words.
    connect_link_ttl: String,
    /// The member is connected: the link reconnects them.
    reconnect: bool,
    member_path: String,
    /// The operator may force a full resync from here.
    operator: bool,
    /// A full resync was just scheduled.
    resynced: bool,
}

/// Rows of history and attempts the member page shows.
const MEMBER_PAGE_ROWS: u32 = 50;

/// `GET /companies/{company}/members/{member}`: one member's story for the company's
/// admin and on-call: the three icons with each channel's last successful import, the
/// status history (`status_changes`) and the recent attempts.
pub(crate) async fn member(
    State(state): State<WebState>,
    Path((company_id, member_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let app = match app_of(&state) {
        Ok(app) => app,
        Err(response) => return response,
    };
    let principal = match page_principal(&app, &headers, Some(&company_id)) {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let report: StatusReport = match app.store.status(Some(&company_id)).await {
        Ok(report) => report,
        Err(error) => return store_failure(&error),
    };
    let Some(company) = report.companies.into_iter().next() else {
        return store_failure(&StoreError::UnknownCompany { company_id });
    };
    let Some(member) = company.members.iter().find(|m| m.id == member_id) else {
        return store_failure(&StoreError::UnknownMember { member_id });
    };
    let history = match app
        .store
        .member_history(&company.id, &member.id, MEMBER_PAGE_ROWS)
        .await
    {
        Ok(history) => history,
        Err(error) => return store_failure(&error),
    };
    let attempts = match app
        .store
        .member_attempts(&company.id, &member.id, MEMBER_PAGE_ROWS)
        .await
    {
        Ok(attempts) => attempts,
        Err(error) => return store_failure(&error),
    };
    let icon = |kind: &'static str, icon: &IconReport| MemberIconView {
        kind,
        color: icon.color.as_str(),
        reason: icon.reason.as_str(),
        message: icon.message.clone(),
        resolution: icon.resolution.clone(),
        since: time_text(icon.since),
        last_success: match (kind, icon.last_success) {
            ("capture", _) => "-".to_owned(),
            (_, Some(success)) => format!("{} ({} items)", time_text(success.at), success.items),
            (_, None) => "none yet".to_owned(),
        },
    };
    // User-by-user: the member's grant state and, with the connect flow set up, a fresh
    // personal link (single use, revocable, expiring like `datacap remind`'s).
    let (connection, connect_link, connect_link_ttl) =
        if company.connection_mode == datacap_core::ConnectionMode::UserByUser {
            let context = match app.store.job_context(&member.id).await {
                Ok(context) => context,
                Err(error) => return store_failure(&error),
            };
            let state = context
                .and_then(|context| context.member.connection)
                .unwrap_or(datacap_core::MemberConnection::NotConnected);
            let link = app.connect.as_ref().and_then(|setup| {
                (company.provider != datacap_core::Provider::None).then(|| {
                    setup.link(
                        company.provider,
                        &company.id,
                        &member.id,
                        OffsetDateTime::now_utc() + setup.invite_ttl,
                    )
                })
            });
            let ttl = app.connect.as_ref().map_or_else(String::new, |setup| {
                let hours = setup.invite_ttl.whole_hours();
                if hours % 24 == 0 {
                    format!("{} days", hours / 24)
                } else {
                    format!("{hours} hours")
                }
            });
            (Some(state.as_str()), link, ttl)
        } else {
            (None, None, String::new())
        };
    let page = MemberPage {
        reconnect: connection == Some("connected"),
        member_path: encode_segment(&member.id),
        connection,
        connect_link,
        connect_link_ttl,
        operator: matches!(principal, Principal::Operator),
        resynced: query.contains_key("resynced"),
        company_path: encode_segment(&company.id),
        company_name: company.name.clone(),
        member_id: member.id.clone(),
        email_address: member.email_address.clone(),
        icons: vec![
            icon("capture", &member.capture),
            icon("email", &member.email),
            icon("calendar", &member.calendar),
        ],
        history: history
            .iter()
            .map(|change| ChangeView {
                at: time_text(change.changed_at),
                icon: change.icon.as_str(),
                from: match (change.from_color, change.from_reason) {
                    (Some(color), Some(reason)) => format!("{color} · {reason}"),
                    _ => "(first)".to_owned(),
                },
                to: format!("{} · {}", change.to_color, change.to_reason),
                attempt: change.attempt_id.clone().unwrap_or_else(|| "-".to_owned()),
            })
            .collect(),
        attempts: attempts
            .iter()
            .map(|attempt| AttemptView {
                id: attempt.attempt_id.clone(),
                at: time_text(attempt.finished_at),
                channel: attempt.channel.as_str(),
                outcome: attempt.outcome.as_str(),
                http: attempt
                    .http_status
                    .map_or_else(|| "-".to_owned(), |status| status.to_string()),
                error_code: attempt.provider_error_code.clone().unwrap_or_default(),
                error_message: attempt.provider_error_message.clone().unwrap_or_default(),
                request_id: attempt.provider_request_id.clone().unwrap_or_default(),
            })
            .collect(),
    };
    render(StatusCode::OK, &page)
}

/// `POST /companies/{company}/members/{member}/resync`: the operator forces a full
/// resync of the member's channels (the saved cursors dropped, both due now; items stay
/// deduplicated), as `datacap poll --member ID --full` does. Admins read; only the
/// operator acts.
pub(crate) async fn resync(
    State(state): State<WebState>,
    Path((company_id, member_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let app = match app_of(&state) {
        Ok(app) => app,
        Err(response) => return response,
    };
    match page_principal(&app, &headers, Some(&company_id)) {
        Ok(Principal::Operator) => {}
        Ok(_) => return denied(Denied::Forbidden),
        Err(response) => return response,
    }
    match app.store.job_context(&member_id).await {
        Ok(Some(context)) if context.company_id == company_id && context.active => {}
        Ok(_) => return store_failure(&StoreError::UnknownMember { member_id }),
        Err(error) => return store_failure(&error),
    }
    if let Err(error) = app
        .store
        .make_due_full(&member_id, None, OffsetDateTime::now_utc())
        .await
    {
        return store_failure(&error);
    }
    tracing::info!(company = %company_id, member = %member_id, "full resync scheduled from the member page");
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            format!(
                "/companies/{}/members/{}?resynced=1",
                encode_segment(&company_id),
                encode_segment(&member_id)
            ),
        )],
    )
        .into_response()
}
