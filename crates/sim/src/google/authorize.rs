//! Google's authorize endpoint (`/google/authorize`): the consent screen of user-by-user
//! connection, scripted by the scenario (who signs in, what they tick).

use axum::http::StatusCode;
use axum::response::Response;

use crate::fault::{AnswerCtx, Endpoint, Fired};
use crate::json::J;
use crate::oauth::code;
use crate::oauth::{consent, oauth_faults, redirect_to};
use crate::scenario::Provider;
use crate::server::{ApiRequest, error_page};

pub(super) async fn authorize(request: ApiRequest) -> Response {
    let params = &request.params;
    let mut world = request.shared.lock();
    world.count(Endpoint::Authorize);
    let client_id = params.get("client_id").unwrap_or_default();
    let Some(tenant) = super::tenant_of_client(&world, client_id) else {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "Error 401: invalid_client\nThe OAuth client was not found.",
        );
    };
    let redirect_uri = params.get("redirect_uri").unwrap_or_default().to_owned();
    let allowed = world
        .tenants
        .get(tenant)
        .and_then(|t| t.cfg.client.as_ref())
        .is_some_and(|c| c.redirect_uris.is_empty() || c.redirect_uris.contains(&redirect_uri));
    if redirect_uri.is_empty() || !allowed {
        return error_page(StatusCode::BAD_REQUEST, "Error 400: redirect_uri_mismatch");
    }
    if params.get("response_type") != Some("code") {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request\nresponse_type must be code",
        );
    }
    let state = params.get("state").unwrap_or_default().to_owned();
    let Some(consent) = consent(&world, tenant, params) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: no user in this tenant can sign in",
        );
    };
    let mut ctx = AnswerCtx::default();
    if let Fired::Answer(answer, _) = oauth_faults(
        &mut world,
        Endpoint::Authorize,
        Provider::Google,
        tenant,
        Some(consent.user),
        &mut ctx,
    ) {
        let error = match answer.body.get("error") {
            Some(J::Str(error)) => error.clone(),
            _ => "server_error".to_owned(),
        };
        return redirect_to(&redirect_uri, &[("error", &error), ("state", &state)]);
    }
    let scope = consent.scopes.join(" ");
    let code = code::issue(
        &mut world,
        "4/sim-",
        tenant,
        consent,
        client_id,
        &redirect_uri,
        params,
    );
    drop(world);
    redirect_to(
        &redirect_uri,
        &[("state", &state), ("code", &code), ("scope", &scope)],
    )
}
