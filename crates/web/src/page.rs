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

/// The pages' one script, inlined in every page by base.html and allowed by its SHA-256 in
/// [`crate::CONTENT_SECURITY_POLICY`]: local and relative times, live updates, Esc on tips.
/// Without it (scripts off) every page still works; only live updates and local times stop.
pub const PAGE_SCRIPT: &str = include_str!("../assets/page.js");

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
    /// The page to land on after signing in (a safe relative path), carried by the form.
    next: Option<&'a str>,
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    login_page_to(status, error, None)
}

fn login_page_to(status: StatusCode, error: Option<&str>, next: Option<&str>) -> Response {
    let next = next.and_then(crate::signin::safe_next);
    render(status, &LoginPage { error, next })
}

/// A refused page request: 401 shows the sign-in form, 403 says whose data it is not.
pub(crate) fn denied(denied: Denied) -> Response {
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
pub(crate) fn page_principal(
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

/// `GET /login[?next=/a/page]`.
pub(crate) async fn login_form(Query(query): Query<HashMap<String, String>>) -> Response {
    login_page_to(StatusCode::OK, None, query.get("next").map(String::as_str))
}

/// The sign-in form's body.
#[derive(serde::Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    /// Where to land once signed in (followed only when [`crate::signin::safe_next`]).
    #[serde(default)]
    next: Option<String>,
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
        return login_page_to(
            StatusCode::UNAUTHORIZED,
            Some("That token is not valid. Check it and try again."),
            form.next.as_deref(),
        );
    };
    let target = crate::signin::landing(&principal, form.next.as_deref());
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
    generated_at: TimeView,
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
            generated_at: time_view(OffsetDateTime::now_utc()),
            refresh_seconds: app.refresh_seconds,
        },
    )
}

// ---- the Team members page ---------------------------------------------------------------

/// A banner's members, named: "ada, bob and 2 more".
fn named(ids: &[&str], count: usize) -> String {
    let shown: Vec<&str> = ids.iter().take(NAMED_PER_BANNER).copied().collect();
    let more = count.saturating_sub(shown.len());
    match (shown.as_slice(), more) {
        ([], _) => String::new(),
        ([one], 0) => (*one).to_owned(),
        (names, 0) => {
            let (last, rest) = names.split_last().unwrap_or((&"", &[]));
            format!("{} and {last}", rest.join(", "))
        }
        (names, more) => format!("{} and {more} more", names.join(", ")),
    }
}

/// How many members a banner names before "and N more".
const NAMED_PER_BANNER: usize = 3;

struct BannerView {
    code: &'static str,
    color: &'static str,
    /// The non-colour cue: "Problem" (red) or "Action needed" (yellow).
    kind_word: &'static str,
    shape: &'static str,
    count: u32,
    message: String,
    resolution: String,
    /// "ada, bob and 2 more" (empty when none of them is on the page's data).
    who: String,
    /// The page filtered to the banner's members.
    filter_link: String,
}

struct SelectOption {
    value: &'static str,
    label: String,
    selected: bool,
}

/// A time as the server renders it: ISO 8601 for `<time datetime>` and a UTC fallback
/// that the page's script rewrites into the reader's zone with a relative form.
struct TimeView {
    iso: String,
    text: String,
}

fn time_view(at: OffsetDateTime) -> TimeView {
    let at = at.to_offset(time::UtcOffset::UTC);
    TimeView {
        iso: time_text(at),
        text: format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute()
        ),
    }
}

/// What a red icon's admin reads beside it: the provider's answer, when, which attempt,
/// what to check and whom to hand it to.
struct RedDetail {
    attempt_id: Option<String>,
    at: Option<TimeView>,
    http_status: Option<String>,
    error_code: Option<String>,
    provider_message: Option<String>,
    /// The admin's own step (what to check at the provider).
    admin_step: String,
    /// The catalogue's resolution: the engineer's step, shown to the operator only.
    engineer_step: Option<String>,
}

struct IconView {
    kind: &'static str,
    kind_label: &'static str,
    glyph: &'static str,
    shape: &'static str,
    color: &'static str,
    color_label: &'static str,
    reason: &'static str,
    title: &'static str,
    message: String,
    resolution: String,
    /// The element ids of the button and of its tip (its description).
    id: String,
    tip_id: String,
    red: Option<RedDetail>,
}

/// A non-green icon that no banner explains: its row says what is wrong, visibly.
struct Explanation {
    kind_label: &'static str,
    title: &'static str,
    message: String,
    resolution: String,
}

struct LastImport {
    /// The channel's latest attempt: when and how it ended.
    latest: Option<(TimeView, &'static str)>,
    /// Its last successful import and the items it brought ("1 item", "12 items").
    success: Option<(TimeView, String)>,
}

struct MemberRow {
    id: String,
    /// The id as a URL path segment.
    path: String,
    email_address: String,
    /// The row's worst colour (red first on the page).
    worst: &'static str,
    icons: Vec<IconView>,
    explanations: Vec<Explanation>,
    /// `email` and `calendar`: each channel's latest attempt and last success.
    lasts: Vec<(&'static str, LastImport)>,
}

/// One webhook endpoint's health, as the company's admin sees it.
struct EndpointView {
    id: String,
    url: String,
    /// `ok`, `failing` (the last try failed), `dead` (events given up on) or `idle`.
    health: &'static str,
    backlog: u64,
    dead: u64,
    last_success: Option<TimeView>,
    last_failure: Option<(TimeView, String)>,
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
        last_success: endpoint.last_success_at.map(time_view),
        last_failure: match (endpoint.last_failure_at, &endpoint.last_failure) {
            (Some(at), Some(what)) => Some((time_view(at), what.clone())),
            _ => None,
        },
    }
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    operator: bool,
    company_name: String,
    provider: &'static str,
    mode: &'static str,
    banners: Vec<BannerView>,
    colors: Vec<SelectOption>,
    reasons: Vec<SelectOption>,
    members: Vec<MemberRow>,
    shown: usize,
    total: usize,
    generated_at: TimeView,
    refresh_seconds: u32,
    endpoints: Vec<EndpointView>,
    /// The company id as a URL path segment.
    company_path: String,
    /// Whom an admin hands a red icon to.
    support: String,
}

/// Material Design icon paths (Apache-2.0): microphone, envelope, calendar.
const MICROPHONE: &str = "M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5.3-3A5.3 5.3 0 0 1 12 16.1 5.3 5.3 0 0 1 6.7 11H5c0 3.4 2.7 6.2 6 6.7V21h2v-3.3c3.3-.5 6-3.3 6-6.7h-1.7z";
const ENVELOPE: &str = "M20 4H4a2 2 0 0 0-2 2v12a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2V6a2 2 0 0 0-2-2zm0 4-8 5-8-5V6l8 5 8-5v2z";
const CALENDAR: &str = "M19 3h-1V1h-2v2H8V1H6v2H5a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2V5a2 2 0 0 0-2-2zm0 16H5V8h14v11zM7 10h5v5H7z";

/// The non-colour cue of each colour, a shape that reads in greyscale (Material Design
/// paths, Apache-2.0): an octagon with "!" (red), a triangle with "!" (yellow), a tick
/// (green), a dash in a circle (gray).
fn shape(color: Color) -> &'static str {
    match color {
        Color::Red => {
            "M15.73 3H8.27L3 8.27v7.46L8.27 21h7.46L21 15.73V8.27L15.73 3zM13 17h-2v-2h2v2zm0-4h-2V7h2v6z"
        }
        Color::Yellow => "M1 21h22L12 2 1 21zm12-3h-2v-2h2v2zm0-4h-2v-4h2v4z",
        Color::Green => "M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4z",
        Color::Gray => "M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm5 11H7v-2h10v2z",
    }
}

fn color_label(color: Color) -> &'static str {
    match color {
        Color::Green => "Green",
        Color::Yellow => "Yellow",
        Color::Red => "Red",
        Color::Gray => "Gray",
    }
}

/// Red first, then yellow, green and gray.
fn color_rank(color: Color) -> u8 {
    match color {
        Color::Red => 0,
        Color::Yellow => 1,
        Color::Green => 2,
        Color::Gray => 3,
    }
}

/// "1 item", "12 items".
fn items_text(items: u64) -> String {
    if items == 1 {
        "1 item".to_owned()
    } else {
        format!("{items} items")
    }
}

/// An attempt's outcome in words.
fn outcome_label(outcome: datacap_core::Outcome) -> &'static str {
    use datacap_core::Outcome;
    match outcome {
        Outcome::Success => "succeeded",
        Outcome::NotAuthorized => "not authorized",
        Outcome::GrantInvalid => "the member's grant is invalid",
        Outcome::AccessDenied => "refused by a provider policy",
        Outcome::MailboxUnavailable => "no usable mailbox",
        Outcome::CredentialRejected => "the app's credential was refused",
        Outcome::RateLimited => "throttled by the provider",
        Outcome::ProviderError => "the provider failed",
        Outcome::NetworkError => "no answer from the provider",
    }
}

/// Which members the page shows: any of whose icons has this colour and reason.
#[derive(Default)]
struct Filter {
    color: Option<Color>,
    reason: Option<Reason>,
}

impl Filter {
    /// The `color` and `reason` query parameters (empty means any); anything else, or
    /// an unknown value, is an error an admin can read.
    fn parse(query: &HashMap<String, String>) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for (name, value) in query {
            match (name.as_str(), value.as_str()) {
                (_, "") => {}
                ("color", value) => {
                    filter.color = Some(Color::parse(value).ok_or_else(|| {
                        format!(
                            "There is no colour {value:?}. Choose red, yellow, green or gray in the Colour list, or any colour."
                        )
                    })?);
                }
                ("reason", value) => {
                    filter.reason = Some(Reason::parse(value).ok_or_else(|| {
                        format!(
                            "There is no reason {value:?}. Choose one in the Reason list, or any reason."
                        )
                    })?);
                }
                (other, _) => {
                    return Err(format!(
                        "The page has no filter {other:?}: filter by colour or by reason."
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

/// The banner that explains an icon with this reason, if any (STATUS_MODEL.md's table).
fn banner_of(reason: Reason) -> Option<BannerCode> {
    Some(match reason {
        Reason::ProviderNotConnected => BannerCode::ProviderNotConnected,
        Reason::CompanyPermissionMissing => BannerCode::CompanyPermissionMissing,
        Reason::EmailNotAuthorized => BannerCode::EmailNotAuthorized,
        Reason::CalendarNotAuthorized => BannerCode::CalendarNotAuthorized,
        Reason::MemberNotConnected => BannerCode::MembersNotConnected,
        Reason::MemberConnectionInvalid => BannerCode::MembersConnectionInvalid,
        Reason::MailboxUnavailable => BannerCode::MembersMailboxUnavailable,
        Reason::SeatMissing => BannerCode::MembersSeatMissing,
        Reason::AppCredentialInvalid
        | Reason::ProviderPermissionDenied
        | Reason::TechnicalFailure
        | Reason::ImportStalled => BannerCode::MembersTechnicalProblem,
        _ => return None,
    })
}

/// The filter that shows a banner's members, and whether a member belongs to it.
fn banner_filter(code: BannerCode) -> (&'static str, &'static str) {
    match code {
        BannerCode::MembersTechnicalProblem => ("color", "red"),
        BannerCode::ProviderNotConnected => ("reason", "provider_not_connected"),
        BannerCode::CompanyPermissionMissing => ("reason", "company_permission_missing"),
        BannerCode::EmailNotAuthorized => ("reason", "email_not_authorized"),
        BannerCode::CalendarNotAuthorized => ("reason", "calendar_not_authorized"),
        BannerCode::MembersNotConnected => ("reason", "member_not_connected"),
        BannerCode::MembersConnectionInvalid => ("reason", "member_connection_invalid"),
        BannerCode::MembersMailboxUnavailable => ("reason", "mailbox_unavailable"),
        BannerCode::MembersSeatMissing => ("reason", "seat_missing"),
    }
}

fn in_banner(code: BannerCode, member: &MemberReport) -> bool {
    let channels = [&member.email, &member.calendar];
    match code {
        BannerCode::MembersTechnicalProblem => channels.iter().any(|i| i.color == Color::Red),
        // A candidate of the capture icon; the page sees it when it is the capture's reason.
        BannerCode::MembersSeatMissing => member.capture.reason == Reason::SeatMissing,
        other => channels
            .iter()
            .any(|icon| banner_of(icon.reason) == Some(other)),
    }
}

struct IconContext<'a> {
    attempts: &'a BTreeMap<&'a str, &'a AttemptReport>,
    provider: datacap_core::Provider,
    operator: bool,
}

fn icon_view(member: &str, kind: &'static str, icon: &IconReport, cx: &IconContext) -> IconView {
    let (kind_label, glyph) = match kind {
        "capture" => ("Capture", MICROPHONE),
        "email" => ("Email", ENVELOPE),
        _ => ("Calendar", CALENDAR),
    };
    // The capture icon summarises email and calendar: their rows carry the details.
    let red = (icon.color == Color::Red && kind != "capture").then(|| {
        let attempt = icon
            .last_attempt_id
            .as_deref()
            .and_then(|id| cx.attempts.get(id));
        RedDetail {
            attempt_id: icon.last_attempt_id.clone(),
            at: attempt.map(|a| time_view(a.finished_at)),
            http_status: attempt.and_then(|a| a.http_status).map(|s| s.to_string()),
            error_code: attempt.and_then(|a| a.provider_error_code.clone()),
            provider_message: attempt.and_then(|a| a.provider_error_message.clone()),
            admin_step: datacap_core::admin_step(icon.reason, cx.provider)
                .unwrap_or_else(|| icon.resolution.clone()),
            engineer_step: cx.operator.then(|| icon.resolution.clone()),
        }
    });
    let segment = encode_segment(member);
    IconView {
        kind,
        kind_label,
        glyph,
        shape: shape(icon.color),
        color: icon.color.as_str(),
        color_label: color_label(icon.color),
        reason: icon.reason.as_str(),
        title: datacap_core::reason_title(icon.reason),
        message: icon.message.clone(),
        resolution: icon.resolution.clone(),
        id: format!("icon-{segment}-{kind}"),
        tip_id: format!("tip-{segment}-{kind}"),
        red,
    }
}

/// An icon's latest attempt and its channel's last successful import.
fn last_import(icon: &IconReport, attempts: &BTreeMap<&str, &AttemptReport>) -> LastImport {
    LastImport {
        latest: icon
            .last_attempt_id
            .as_deref()
            .and_then(|id| attempts.get(id))
            .map(|attempt| {
                (
                    time_view(attempt.finished_at),
                    outcome_label(attempt.outcome),
                )
            }),
        success: icon
            .last_success
            .map(|success| (time_view(success.at), items_text(success.items))),
    }
}

/// Whom an admin hands a problem to: `[web] support_contact`, or the operator.
pub(crate) fn support_of(app: &App) -> String {
    app.support_contact
        .clone()
        .unwrap_or_else(|| DEFAULT_SUPPORT.to_owned())
}

/// Whom the page names when `[web] support_contact` is not set.
pub const DEFAULT_SUPPORT: &str = "your datacap operator";

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
            return message(StatusCode::BAD_REQUEST, "Bad filter", &problem, None);
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
    let endpoints = match app.store.webhook_endpoints(Some(&company.id)).await {
        Ok(endpoints) => endpoints
            .iter()
            .filter(|endpoint| endpoint.active)
            .map(endpoint_view)
            .collect(),
        Err(error) => return store_failure(&error),
    };
    let operator = principal == Principal::Operator;
    let company_path = encode_segment(&company.id);
    // Red first, then yellow, green and gray; by member id within a colour.
    let mut sorted: Vec<&MemberReport> = company.members.iter().collect();
    let worst = |m: &MemberReport| {
        [&m.capture, &m.email, &m.calendar]
            .iter()
            .map(|icon| color_rank(icon.color))
            .min()
            .unwrap_or(3)
    };
    sorted.sort_by(|a, b| worst(a).cmp(&worst(b)).then_with(|| a.id.cmp(&b.id)));
    let present: std::collections::BTreeSet<BannerCode> =
        company.banners.iter().map(|banner| banner.code).collect();
    let cx = IconContext {
        attempts: &by_id,
        provider: company.provider,
        operator,
    };
    let total = company.members.len();
    let members: Vec<MemberRow> = sorted
        .iter()
        .filter(|m| filter.keeps([&m.capture, &m.email, &m.calendar]))
        .map(|m| {
            let icons = vec![
                icon_view(&m.id, "capture", &m.capture, &cx),
                icon_view(&m.id, "email", &m.email, &cx),
                icon_view(&m.id, "calendar", &m.calendar, &cx),
            ];
            // Yellow icons no banner explains say what is wrong in their row (red ones
            // carry their details; gray ones say it in their title).
            let mut explanations: Vec<Explanation> = Vec::new();
            // Email and calendar first: the capture icon only summarises them.
            for (icon, report) in icons
                .iter()
                .zip([&m.capture, &m.email, &m.calendar])
                .cycle()
                .skip(1)
                .take(3)
            {
                let explained =
                    banner_of(report.reason).is_some_and(|code| present.contains(&code));
                let repeated = explanations.iter().any(|e| e.title == icon.title);
                if report.color == Color::Yellow && !explained && !repeated {
                    explanations.push(Explanation {
                        kind_label: icon.kind_label,
                        title: icon.title,
                        message: icon.message.clone(),
                        resolution: icon.resolution.clone(),
                    });
                }
            }
            MemberRow {
                id: m.id.clone(),
                path: encode_segment(&m.id),
                email_address: m.email_address.clone(),
                worst: match worst(m) {
                    0 => "red",
                    1 => "yellow",
                    2 => "green",
                    _ => "gray",
                },
                icons,
                explanations,
                lasts: vec![
                    ("email", last_import(&m.email, &by_id)),
                    ("calendar", last_import(&m.calendar, &by_id)),
                ],
            }
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
    // Only the reasons this company's icons have, plus the one selected.
    let on_page: std::collections::BTreeSet<Reason> = company
        .members
        .iter()
        .flat_map(|m| [m.capture.reason, m.email.reason, m.calendar.reason])
        .chain(filter.reason)
        .collect();
    let mut reasons = vec![SelectOption {
        value: "",
        label: "any reason".to_owned(),
        selected: filter.reason.is_none(),
    }];
    reasons.extend(
        Reason::ALL
            .iter()
            .filter(|reason| on_page.contains(reason))
            .map(|&reason| SelectOption {
                value: reason.as_str(),
                label: datacap_core::reason_title(reason).to_owned(),
                selected: filter.reason == Some(reason),
            }),
    );
    // Banners in STATUS_MODEL.md's order, the red one first.
    let mut banner_reports: Vec<&datacap_store::BannerReport> = company.banners.iter().collect();
    banner_reports.sort_by_key(|banner| color_rank(banner.color));
    let banners = banner_reports
        .iter()
        .map(|banner| {
            let ids: Vec<&str> = sorted
                .iter()
                .filter(|m| in_banner(banner.code, m))
                .map(|m| m.id.as_str())
                .collect();
            let (name, value) = banner_filter(banner.code);
            BannerView {
                code: banner.code.as_str(),
                color: banner.color.as_str(),
                kind_word: if banner.color == Color::Red {
                    "Problem"
                } else {
                    "Action needed"
                },
                shape: shape(banner.color),
                count: banner.count,
                message: banner.message.clone(),
                resolution: banner.resolution.clone(),
                who: named(
                    &ids,
                    usize::try_from(banner.count)
                        .unwrap_or(usize::MAX)
                        .max(ids.len()),
                ),
                filter_link: format!("/companies/{company_path}/members?{name}={value}"),
            }
        })
        .collect();
    let page = MembersPage {
        operator,
        banners,
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
        generated_at: time_view(OffsetDateTime::now_utc()),
        refresh_seconds: app.refresh_seconds,
        endpoints,
        company_path,
        support: support_of(&app),
    };
    render(StatusCode::OK, &page)
}

struct MemberIconView {
    kind: &'static str,
    kind_label: &'static str,
    glyph: &'static str,
    shape: &'static str,
    color: &'static str,
    color_label: &'static str,
    reason: &'static str,
    title: &'static str,
    message: String,
    resolution: String,
    since: TimeView,
    /// `None` for capture, which imports nothing itself.
    last_success: Option<Option<(TimeView, String)>>,
}

struct ChangeView {
    at: TimeView,
    icon: &'static str,
    from: String,
    to: String,
    attempt: String,
}

struct AttemptView {
    id: String,
    at: TimeView,
    channel: &'static str,
    outcome: &'static str,
    outcome_label: &'static str,
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
    refresh_seconds: u32,
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
    let icon = |kind: &'static str, icon: &IconReport| {
        let (kind_label, glyph) = match kind {
            "capture" => ("Capture", MICROPHONE),
            "email" => ("Email", ENVELOPE),
            _ => ("Calendar", CALENDAR),
        };
        MemberIconView {
            kind,
            kind_label,
            glyph,
            shape: shape(icon.color),
            color: icon.color.as_str(),
            color_label: color_label(icon.color),
            reason: icon.reason.as_str(),
            title: datacap_core::reason_title(icon.reason),
            message: icon.message.clone(),
            resolution: icon.resolution.clone(),
            since: time_view(icon.since),
            last_success: (kind != "capture").then(|| {
                icon.last_success
                    .map(|success| (time_view(success.at), items_text(success.items)))
            }),
        }
    };
    let change_side = |color: Color, reason: Reason| {
        format!(
            "{} · {}",
            color_label(color),
            datacap_core::reason_title(reason)
        )
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
        refresh_seconds: app.refresh_seconds,
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
                at: time_view(change.changed_at),
                icon: change.icon.as_str(),
                from: match (change.from_color, change.from_reason) {
                    (Some(color), Some(reason)) => change_side(color, reason),
                    _ => "(first)".to_owned(),
                },
                to: change_side(change.to_color, change.to_reason),
                attempt: change.attempt_id.clone().unwrap_or_else(|| "-".to_owned()),
            })
            .collect(),
        attempts: attempts
            .iter()
            .map(|attempt| AttemptView {
                id: attempt.attempt_id.clone(),
                at: time_view(attempt.finished_at),
                channel: attempt.channel.as_str(),
                outcome: attempt.outcome.as_str(),
                outcome_label: outcome_label(attempt.outcome),
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sha2::Digest;

    #[test]
    fn the_policy_allows_exactly_the_page_script() {
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(PAGE_SCRIPT.as_bytes()));
        let source = format!("script-src 'sha256-{hash}';");
        assert!(
            crate::CONTENT_SECURITY_POLICY.contains(&source),
            "assets/page.js changed: put {source} in guard.rs's CONTENT_SECURITY_POLICY"
        );
        let page = MessagePage {
            title: "t",
            text: "x",
            detail: None,
            class: "",
        }
        .render()
        .unwrap();
        assert!(
            page.contains(&format!("<script>{PAGE_SCRIPT}</script>")),
            "the script is inlined as is (the hash covers exactly it)"
        );
    }

    #[test]
    fn a_banner_names_three_members_then_counts_the_rest() {
        assert_eq!(named(&["ada"], 1), "ada");
        assert_eq!(named(&["ada", "bob"], 2), "ada and bob");
        assert_eq!(named(&["ada", "bob", "cy"], 3), "ada, bob and cy");
        assert_eq!(
            named(&["ada", "bob", "cy", "dan"], 4),
            "ada, bob, cy and 1 more"
        );
        assert_eq!(named(&["ada", "bob"], 4), "ada, bob and 2 more");
        assert_eq!(named(&[], 4), "");
    }

    #[test]
    fn a_bad_filter_reads_as_a_sentence() {
        let query = |name: &str, value: &str| HashMap::from([(name.to_owned(), value.to_owned())]);
        let Err(reason) = Filter::parse(&query("reason", "bogus")) else {
            panic!("bogus is no reason");
        };
        assert_eq!(
            reason,
            "There is no reason \"bogus\". Choose one in the Reason list, or any reason."
        );
        assert!(!reason.contains("STATUS_MODEL"));
        let Err(color) = Filter::parse(&query("color", "purple")) else {
            panic!("purple is no colour");
        };
        assert!(color.contains("red, yellow, green or gray"), "{color}");
        assert!(Filter::parse(&query("reason", "seat_missing")).is_ok());
    }

    #[test]
    fn times_render_as_iso_with_a_utc_fallback() {
        let at = OffsetDateTime::from_unix_timestamp(1_764_763_260).unwrap();
        let view = time_view(at);
        assert_eq!(view.iso, "2025-12-03T12:01:00Z");
        assert_eq!(view.text, "2025-12-03 12:01 UTC");
    }
}
