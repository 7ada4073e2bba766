//! `GET /`: the operator's index of companies with their banners.

use super::*;

pub(super) struct CompanyRow {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) provider: &'static str,
    pub(super) members: usize,
    pub(super) red: usize,
    pub(super) yellow: usize,
    pub(super) banners: usize,
}

#[derive(Template)]
#[template(path = "index.html")]
pub(super) struct IndexPage {
    pub(super) companies: Vec<CompanyRow>,
    pub(super) generated_at: TimeView,
    pub(super) refresh_seconds: u32,
}

pub(crate) async fn index(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let (app, principal) = reader(&state, &headers, None)?;
    if let Principal::Company(id) = &principal {
        let target = format!("/companies/{}/members", encode_segment(id));
        return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response());
    }
    let report = stored(app.store.status(None).await)?;
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
    let page = IndexPage {
        companies,
        generated_at: time_view(OffsetDateTime::now_utc()),
        refresh_seconds: app.refresh_seconds,
    };
    Ok(render(StatusCode::OK, &page))
}

// ---- the Team members page ---------------------------------------------------------------
