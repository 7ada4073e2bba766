//! `GET /companies/{id}/members/{member}`: one member's page (icons, history, attempts),
//! and `POST …/resync`, which makes the member due now.

use super::*;

/// What a member's page adds to an icon: since when it shows, and its channel's last
/// successful import (`None` for capture, which imports nothing itself).
pub(super) struct MemberIcon {
    pub(super) since: TimeView,
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
    pub(super) icons: Vec<IconView<MemberIcon>>,
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
) -> Result<Response, Response> {
    let (app, principal) = reader(&state, &headers, Some(&company_id))?;
    let company = company_report(&app, &company_id).await?;
    let Some(member) = company.members.iter().find(|m| m.id == member_id) else {
        return Err(store_failure(&StoreError::UnknownMember { member_id }));
    };
    let rows = MEMBER_PAGE_ROWS;
    let history = stored(
        app.store
            .member_history(&company.id, &member.id, rows)
            .await,
    )?;
    let attempts = stored(
        app.store
            .member_attempts(&company.id, &member.id, rows)
            .await,
    )?;
    let icon = |kind: &'static str, icon: &IconReport| {
        let last_success = (kind != "capture").then(|| {
            icon.last_success
                .map(|success| (time_view(success.at), items_text(success.items)))
        });
        let since = time_view(icon.since);
        icon_face(
            kind,
            icon,
            MemberIcon {
                since,
                last_success,
            },
        )
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
            let context = stored(app.store.job_context(&member.id).await)?;
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
    Ok(render(StatusCode::OK, &page))
}

/// `POST /companies/{company}/members/{member}/resync`: the operator forces a full
/// resync of the member's channels (the saved cursors dropped, both due now; items stay
/// deduplicated), as `datacap poll --member ID --full` does. Admins read; only the
/// operator acts.
pub(crate) async fn resync(
    State(state): State<WebState>,
    Path((company_id, member_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let (app, principal) = reader(&state, &headers, Some(&company_id))?;
    if principal != Principal::Operator {
        return Err(denied(Denied::Forbidden));
    }
    match stored(app.store.job_context(&member_id).await)? {
        Some(context) if context.company_id == company_id && context.active => {}
        _ => return Err(store_failure(&StoreError::UnknownMember { member_id })),
    }
    let now = OffsetDateTime::now_utc();
    stored(app.store.make_due_full(&member_id, None, now).await)?;
    tracing::info!(company = %company_id, member = %member_id, "full resync scheduled from the member page");
    let target = format!(
        "/companies/{}/members/{}?resynced=1",
        encode_segment(&company_id),
        encode_segment(&member_id)
    );
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response())
}
