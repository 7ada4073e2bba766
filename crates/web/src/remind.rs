//! Connect reminders, from the page and from `datacap remind`: who is reminded (members of
//! a user-by-user company whose email or calendar icon says `member_not_connected` or
//! `member_connection_invalid`), the mail they get with their personal signed link, and
//! `/companies/{company}/reminders`, where the company's admin (or the operator) sees that
//! list and mails it through the same relay as `datacap remind --send` (the binary hands
//! the relay in as a [`Mailer`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use datacap_core::{ConnectionMode, Provider, Reason};
use datacap_store::{CompanyReport, MemberReport};
use std::collections::HashMap;
use time::OffsetDateTime;

use crate::WebState;
use crate::auth::Principal;
use crate::page::{company_report, encode_segment, message, reader, render};

/// `member_not_connected` or `member_connection_invalid`, whichever of the member's email
/// and calendar icons has it: the members `datacap remind` and the page remind.
pub fn reason_to_remind(member: &MemberReport) -> Option<Reason> {
    [&member.email, &member.calendar]
        .into_iter()
        .map(|icon| icon.reason)
        .find(|reason| {
            matches!(
                reason,
                Reason::MemberNotConnected | Reason::MemberConnectionInvalid
            )
        })
}

/// One mail to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// The reminder a member gets: connect (or connect again) with their personal `link`,
/// valid until `expires_at`.
pub fn reminder_mail(
    company_name: &str,
    provider: Provider,
    reason: Reason,
    to: &str,
    link: &str,
    expires_at: OffsetDateTime,
) -> Mail {
    let provider = provider.display_name();
    let what = if reason == Reason::MemberConnectionInvalid {
        "connect again"
    } else {
        "connect"
    };
    Mail {
        to: to.to_owned(),
        subject: format!("Please {what} your {provider} account to datacap"),
        body: format!(
            "Hello,\n\n{company_name} imports your email and calendar metadata from {provider} once you \
             allow it. Please {what} your account with your personal link (valid until {}):\n\n{link}\n\n\
             The link is for {to} only; do not forward it.\n",
            expires_at.date(),
        ),
    }
}

/// A boxed future, as [`Mailer::send`] returns; the error is a sentence for the page and
/// the log (never a secret).
pub type MailFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Sends one mail (the binary: the `[smtp]` relay of `datacap remind --send`).
pub trait Mailer: Send + Sync {
    fn send<'a>(&'a self, mail: &'a Mail) -> MailFuture<'a>;
}

/// The longest the page waits for the relay before it reports the mails still unanswered
/// (below the request timeout, so the admin always gets the confirmation).
const SEND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

struct Row {
    member_id: String,
    member_path: String,
    email_address: String,
    /// "not connected" or "connection no longer valid".
    why: &'static str,
    reason: Reason,
}

struct Failed {
    member_id: String,
    email_address: String,
    problem: String,
}

#[derive(Template)]
#[template(path = "reminders.html")]
struct RemindersPage {
    company_name: String,
    company_path: String,
    operator: bool,
    rows: Vec<Row>,
    /// Why the page cannot send, when it cannot.
    problem: Option<String>,
    /// The form token of the send button.
    form_token: String,
    /// How long the mailed links live, in words.
    link_ttl: String,
    /// After a send: who was mailed and who was not.
    sent: Option<Vec<Row>>,
    failed: Vec<Failed>,
}

fn ttl_words(ttl: time::Duration) -> String {
    let hours = ttl.whole_hours();
    if hours > 0 && hours % 24 == 0 {
        format!("{} days", hours / 24)
    } else {
        format!("{hours} hours")
    }
}

fn rows_of(company: &CompanyReport) -> Vec<Row> {
    company
        .members
        .iter()
        .filter_map(|member| {
            reason_to_remind(member).map(|reason| Row {
                member_id: member.id.clone(),
                member_path: encode_segment(&member.id),
                email_address: member.email_address.clone(),
                why: if reason == Reason::MemberConnectionInvalid {
                    "connection no longer valid"
                } else {
                    "not connected"
                },
                reason,
            })
        })
        .collect()
}

/// Why this company's reminders cannot be mailed from the page, if they cannot.
fn problem_of(app: &crate::App, company: &CompanyReport) -> Option<String> {
    if company.connection_mode != ConnectionMode::UserByUser {
        return Some(format!(
            "{} connects company-wide: its members have nothing to connect.",
            company.name
        ));
    }
    if company.provider == Provider::None {
        return Some(format!(
            "{} has no provider configured: there is nothing to connect to yet.",
            company.name
        ));
    }
    let Some(setup) = app.connect.as_ref() else {
        return Some(
            "Connect links cannot be made: the connect flow is not set up on this datacap ([web] signing key and [encryption]). Ask the operator."
                .to_owned(),
        );
    };
    if setup.mailer.is_none() {
        return Some(
            "Mail is not set up on this datacap ([smtp] host and from): the operator can set it up, or send the reminders with datacap remind --send. Each member's page also has their personal link to send yourself."
                .to_owned(),
        );
    }
    None
}

fn scope(company_id: &str) -> String {
    format!("reminders:{company_id}")
}

/// The company (checked readable by the request's principal) and the principal.
async fn company_of(
    state: &WebState,
    headers: &HeaderMap,
    company_id: String,
) -> Result<(Arc<crate::App>, Principal, CompanyReport), Response> {
    let (app, principal) = reader(state, headers, Some(&company_id))?;
    let company = company_report(&app, &company_id).await?;
    Ok((app, principal, company))
}

fn page_of(
    app: &crate::App,
    principal: &Principal,
    company: &CompanyReport,
    rows: Vec<Row>,
) -> RemindersPage {
    RemindersPage {
        company_name: company.name.clone(),
        company_path: encode_segment(&company.id),
        operator: *principal == Principal::Operator,
        rows,
        problem: problem_of(app, company),
        form_token: app
            .auth
            .form_token(principal, &scope(&company.id), OffsetDateTime::now_utc()),
        link_ttl: app
            .connect
            .as_ref()
            .map_or_else(String::new, |setup| ttl_words(setup.invite_ttl)),
        sent: None,
        failed: Vec::new(),
    }
}

/// `GET /companies/{company}/reminders`: who would be mailed, and the send button.
pub(crate) async fn page(
    State(state): State<WebState>,
    Path(company_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (app, principal, company) = match company_of(&state, &headers, company_id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let rows = rows_of(&company);
    render(StatusCode::OK, &page_of(&app, &principal, &company, rows))
}

/// `POST /companies/{company}/reminders` (form field `form_token`): mails every member the
/// page lists (read again now) their personal link, then names who was mailed and who not.
pub(crate) async fn send(
    State(state): State<WebState>,
    Path(company_id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (app, principal, company) = match company_of(&state, &headers, company_id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let token = form
        .ok()
        .and_then(|Form(mut fields)| fields.remove("form_token"))
        .unwrap_or_default();
    if !app.auth.form_token_holds(
        &token,
        &principal,
        &scope(&company.id),
        OffsetDateTime::now_utc(),
    ) {
        tracing::warn!(company = %company.id, "a reminders post without a valid form token was refused");
        return message(
            StatusCode::FORBIDDEN,
            "Not sent",
            "This request did not come from the reminders page, or the page is too old: open the reminders page again and send from there.",
            None,
        );
    }
    if let Some(problem) = problem_of(&app, &company) {
        return message(StatusCode::CONFLICT, "Not sent", &problem, None);
    }
    let (Some(setup), rows) = (app.connect.as_ref(), rows_of(&company)) else {
        return message(
            StatusCode::CONFLICT,
            "Not sent",
            "Connecting is not set up.",
            None,
        );
    };
    let Some(mailer) = setup.mailer.clone() else {
        return message(
            StatusCode::CONFLICT,
            "Not sent",
            "Mail is not set up.",
            None,
        );
    };
    let expires_at = OffsetDateTime::now_utc() + setup.invite_ttl;
    let mut tasks = tokio::task::JoinSet::new();
    for (index, row) in rows.iter().enumerate() {
        let link = setup.link(company.provider, &company.id, &row.member_id, expires_at);
        let mail = reminder_mail(
            &company.name,
            company.provider,
            row.reason,
            &row.email_address,
            &link,
            expires_at,
        );
        let mailer = mailer.clone();
        tasks.spawn(async move { (index, mailer.send(&mail).await) });
    }
    let mut outcomes: Vec<Option<Result<(), String>>> = vec![None; rows.len()];
    let deadline = tokio::time::Instant::now() + SEND_DEADLINE;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        if let Ok((index, outcome)) = joined {
            outcomes[index] = Some(outcome);
        }
    }
    tasks.abort_all();
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    for (row, outcome) in rows.into_iter().zip(outcomes) {
        match outcome {
            Some(Ok(())) => {
                tracing::info!(company = %company.id, member = %row.member_id, "connect reminder mailed from the page");
                sent.push(row);
            }
            other => {
                let problem = match other {
                    Some(Err(problem)) => problem,
                    _ => "the mail relay did not answer in time".to_owned(),
                };
                tracing::warn!(company = %company.id, member = %row.member_id, problem = %problem, "connect reminder not mailed");
                failed.push(Failed {
                    member_id: row.member_id,
                    email_address: row.email_address,
                    problem,
                });
            }
        }
    }
    let mut page = page_of(&app, &principal, &company, Vec::new());
    page.sent = Some(sent);
    page.failed = failed;
    render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_mail_carries_the_link_and_says_what_to_do() {
        let at = datetime!(2026-12-06 12:00 UTC);
        let mail = reminder_mail(
            "Initech",
            Provider::GoogleWorkspace,
            Reason::MemberNotConnected,
            "peter@initech.example",
            "https://d.example/connect/google/start?invite=abc",
            at,
        );
        assert_eq!(mail.to, "peter@initech.example");
        assert_eq!(
            mail.subject,
            "Please connect your Google Workspace account to datacap"
        );
        assert!(mail.body.contains("?invite=abc\n"), "{}", mail.body);
        assert!(
            mail.body.contains("valid until 2026-12-06"),
            "{}",
            mail.body
        );
        assert!(mail.body.contains("Initech imports"), "{}", mail.body);
        let again = reminder_mail(
            "Initech",
            Provider::Microsoft365,
            Reason::MemberConnectionInvalid,
            "peter@initech.example",
            "l",
            at,
        );
        assert!(
            again
                .subject
                .starts_with("Please connect again your Microsoft 365")
        );
    }

    #[test]
    fn link_lifetimes_read_in_days_or_hours() {
        assert_eq!(ttl_words(time::Duration::days(3)), "3 days");
        assert_eq!(ttl_words(time::Duration::hours(36)), "36 hours");
    }
}
