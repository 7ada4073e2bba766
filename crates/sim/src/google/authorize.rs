//! Google's authorize endpoint (`/google/authorize`): the consent screen of user-by-user
//! connection, scripted by the scenario (who signs in, what they tick).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::fault::{AnswerCtx, Endpoint, Fired, fire};
use crate::json::J;
use crate::oauth::code::CodeGrant;
use crate::oauth::{consent, redirect_to};
use crate::scenario::Provider;
use crate::server::{AppState, Params, error_page};

pub(super) async fn authorize(
    State(shared): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::from_query(query.as_deref());
    let mut world = shared.lock();
    world.count(Endpoint::Authorize);
    let client_id = params.get("client_id").unwrap_or_default();
    let Some(tenant) = world.tenants.iter().position(|t| {
        t.cfg.provider == Provider::Google
            && t.cfg
                .client
                .as_ref()
                .is_some_and(|c| c.client_id == client_id)
    }) else {
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
    let Some(consent) = consent(&world, tenant, &params) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: no user in this tenant can sign in",
        );
    };
    let mut ctx = AnswerCtx::default();
    if let Fired::Answer(answer, _) = fire(
        &mut world,
        tenant,
        Some(consent.user),
        Endpoint::Authorize,
        false,
        Provider::Google,
        &mut ctx,
    ) {
        let error = match answer.body.get("error") {
            Some(J::Str(error)) => error.clone(),
            _ => "server_error".to_owned(),
        };
        return redirect_to(&redirect_uri, &[("error", &error), ("state", &state)]);
    }
    let code = format!("4/sim-{}", uuid::Uuid::new_v4().simple());
    let challenge = params.get("code_challenge").map(|c| {
        (
            c.to_owned(),
            params
                .get("code_challenge_method")
                .unwrap_or("plain")
                .to_owned(),
        )
    });
    let scope = consent.scopes.join(" ");
    world.codes.insert(
        code.clone(),
        CodeGrant {
            tenant,
            user: consent.user,
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.clone(),
            scopes: consent.scopes,
            challenge,
            nonce: params.get("nonce").map(str::to_owned),
            used: false,
        },
    );
    drop(world);
    redirect_to(
        &redirect_uri,
        &[("state", &state), ("code", &code), ("scope", &scope)],
    )
}
