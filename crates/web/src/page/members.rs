//! `GET /companies/{id}/members`: a company's Team members page.

use super::*;

pub(crate) async fn members(
    State(state): State<WebState>,
    Path(company_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let (app, principal) = reader(&state, &headers, Some(&company_id))?;
    let filter = Filter::parse(&query)
        .map_err(|problem| message(StatusCode::BAD_REQUEST, "Bad filter", &problem, None))?;
    let company = company_report(&app, &company_id).await?;
    let ids: Vec<String> = company
        .members
        .iter()
        .flat_map(|m| [&m.capture, &m.email, &m.calendar])
        .filter_map(|icon| icon.last_attempt_id.clone())
        .collect();
    let attempts = stored(app.store.attempts_by_id(&ids).await)?;
    let by_id: BTreeMap<&str, &AttemptReport> = attempts
        .iter()
        .map(|attempt| (attempt.attempt_id.as_str(), attempt))
        .collect();
    let endpoints = stored(app.store.webhook_endpoints(Some(&company.id)).await)?
        .iter()
        .filter(|endpoint| endpoint.active)
        .map(endpoint_view)
        .collect();
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
    Ok(render(StatusCode::OK, &page))
}
