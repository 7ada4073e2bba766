//! Entra ID's v2.0 authorize endpoint (`/microsoft/{tenant}/oauth2/v2.0/authorize`): the
//! consent screen of user-by-user connection, scripted by the scenario.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;

use super::find_tenant;
use crate::fault::{AnswerCtx, Endpoint, Fired};
use crate::json::J;
use crate::oauth::code;
use crate::oauth::{consent, oauth_faults, redirect_to};
use crate::scenario::Provider;
use crate::server::{ApiRequest, error_page};

pub(super) async fn authorize(request: ApiRequest, Path(tenant_segment): Path<String>) -> Response {
    let params = &request.params;
    let mut world = request.shared.lock();
    world.count(Endpoint::Authorize);
    let client_id = params.get("client_id").unwrap_or_default().to_owned();
    let Some(tenant) = find_tenant(&world, &tenant_segment, &client_id) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!("AADSTS90002: Tenant '{tenant_segment}' not found."),
        );
    };
    let client = world.tenants.get(tenant).and_then(|t| t.cfg.client.clone());
    let Some(client) = client.filter(|c| c.client_id == client_id) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!(
                "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tenant_segment}'."
            ),
        );
    };
    let redirect_uri = params.get("redirect_uri").unwrap_or_default().to_owned();
    if redirect_uri.is_empty()
        || !(client.redirect_uris.is_empty() || client.redirect_uris.contains(&redirect_uri))
    {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!(
                "AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'."
            ),
        );
    }
    let state = params.get("state").unwrap_or_default().to_owned();
    let Some(consent) = consent(&world, tenant, params) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "AADSTS50034: no user in this tenant can sign in",
        );
    };
    let mut ctx = AnswerCtx {
        client_id: client_id.clone(),
        tenant: tenant_segment.clone(),
        ..AnswerCtx::default()
    };
    if let Fired::Answer(answer, _) = oauth_faults(
        &mut world,
        Endpoint::Authorize,
        Provider::Microsoft,
        tenant,
        Some(consent.user),
        &mut ctx,
    ) {
        let field = |name: &str| match answer.body.get(name) {
            Some(J::Str(value)) => value.clone(),
            _ => String::new(),
        };
        let error = field("error");
        let description = field("error_description");
        return redirect_to(
            &redirect_uri,
            &[
                ("error", &error),
                ("error_description", &description),
                ("state", &state),
            ],
        );
    }
    let code = code::issue(
        &mut world,
        "0.sim-",
        tenant,
        consent,
        &client_id,
        &redirect_uri,
        params,
    );
    drop(world);
    let session_state = uuid::Uuid::new_v4().to_string();
    redirect_to(
        &redirect_uri,
        &[
            ("code", &code),
            ("state", &state),
            ("session_state", &session_state),
        ],
    )
}
