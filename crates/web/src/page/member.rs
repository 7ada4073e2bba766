//! `GET /companies/{id}/members/{member}`: one member's page (icons, history, attempts),
//! and `POST …/resync`, which makes the member due now.

use super::*;

pub(super) struct MemberIconView {
    pub(super) kind: &'static str,
    pub(super) kind_label: &'static str,
    pub(super) glyph: &'static str,
    pub(super) shape: &'static str,
    pub(super) color: &'static str,
    pub(super) color_label: &'static str,
    pub(super) reason: &'static str,
    pub(super) title: &'static str,
    pub(super) message: String,
    pub(super) resolution: String,
    pub(super) since: TimeView,
    /// `None` for capture, which imports nothing itself.
    pub(super) last_success: Option<Option<(TimeView, String)>>,
}

pub(super) struct ChangeView {
    pub(super) at: TimeView,
    pub(super) icon: &'static str,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) attempt: String,
}

pub(super) struct AttemptView {
    pub(super) id: String,
    pub(super) at: TimeView,
    pub(super) channel: &'static str,
    pub(super) outcome: &'static str,
    pub(super) outcome_label: &'static str,
    pub(super) http: String,
    pub(super) error_code: String,
    pub(super) error_message: String,
    pub(super) request_id: String,
}

#[derive(Template)]
#[template(path = "member.html")]
pub(super) struct MemberPage {
    pub(super) company_path: String,
    pub(super) company_name: String,
    pub(super) member_id: String,
    pub(super) email_address: String,
    pub(super) icons: Vec<MemberIconView>,
    pub(super) history: Vec<ChangeView>,
    pub(super) attempts: Vec<AttemptView>,
    /// User-by-user only: the member's own grant state (`connected`, `not_connected`,
    /// `invalid`).
    pub(super) connection: Option<&'static str>,
    /// A personal connect link for the admin to send, when the connect flow is set up.
    pub(super) connect_link: Option<String>,
    /// How long that link lives, in words.
    pub(super) connect_link_ttl: String,
    /// The member is connected: the link reconnects them.
    pub(super) reconnect: bool,
    pub(super) member_path: String,
    /// The operator may force a full resync from here.
    pub(super) operator: bool,
    /// A full resync was just scheduled.
    pub(super) resynced: bool,
    pub(super) refresh_seconds: u32,
}

/// Rows of history and attempts the member page shows.
pub(super) const MEMBER_PAGE_ROWS: u32 = 50;

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
