//! The HTTP side: the state every handler shares, the router, and request parameters.
//!
//! Handlers decide *what* to answer (an [`crate::fault::Answer`] plus, maybe, a transport
//! fault); [`reply`] decides *how* it goes on the wire. [`fallback`] answers the paths the
//! sim does not serve, [`tls`] is the https listener.

mod fallback;
mod reply;
pub(crate) mod tls;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::Response;

pub(crate) use reply::{Reply, Style, deliver, error_page};

use crate::Endpoints;
use crate::state::World;

/// State shared by every handler.
pub(crate) struct Shared {
    world: Mutex<World>,
    pub urls: Endpoints,
    /// HS256 key of the Microsoft access tokens the sim mints.
    pub token_key: [u8; 32],
    /// RS256 key of the `id_token`s both providers' token endpoints issue.
    pub id_key: Option<Arc<crate::oauth::oidc::IdKey>>,
}

impl Shared {
    pub(crate) fn new(world: World, urls: Endpoints) -> Shared {
        let mut token_key = [0u8; 32];
        token_key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        token_key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let id_key = crate::oauth::oidc::IdKey::load();
        if id_key.is_none() {
            tracing::warn!("datacap-sim: the id_token key does not parse; no id_tokens");
        }
        Shared {
            world: Mutex::new(world),
            urls,
            token_key,
            id_key,
        }
    }

    /// Locks the world. A poisoned lock is still usable: no handler leaves it half-changed
    /// across a panic point, and no handler panics.
    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) type AppState = Arc<Shared>;

/// Query string or form body parameters, in order, repeated keys kept.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(bytes: &[u8]) -> Params {
        Params(
            form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .take(1_000)
                .collect(),
        )
    }

    pub(crate) fn from_query(query: Option<&str>) -> Params {
        Params::parse(query.unwrap_or_default().as_bytes())
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What every API handler reads from its request: the shared state, the headers and the
/// query string's parameters.
pub(crate) struct ApiRequest {
    pub shared: AppState,
    pub headers: HeaderMap,
    pub params: Params,
}

impl FromRequestParts<AppState> for ApiRequest {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<ApiRequest, Self::Rejection> {
        Ok(ApiRequest {
            shared: state.clone(),
            headers: parts.headers.clone(),
            params: Params::from_query(parts.uri.query()),
        })
    }
}

/// A request's ids: Graph echoes `client-request-id`, else repeats its own `request-id`.
pub(crate) fn request_ids(headers: &HeaderMap) -> (String, String) {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map_or_else(|| request_id.clone(), str::to_owned);
    (request_id, client)
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The whole router.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::google::routes())
        .merge(crate::microsoft::routes())
        .merge(crate::control::routes())
        .fallback(fallback::unknown_path)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_quota_user,
        ))
        .with_state(state)
}

/// Counts Gmail and Calendar calls by their `quotaUser` parameter, so tests can check that
/// quota is charged per member.
async fn count_quota_user(
    axum::extract::State(shared): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if path.starts_with("/google/gmail/") || path.starts_with("/google/calendar/") {
        let params = Params::from_query(request.uri().query());
        let quota_user = params.get("quotaUser").unwrap_or("").to_owned();
        *shared.lock().quota_users.entry(quota_user).or_insert(0) += 1;
    }
    next.run(request).await
}
