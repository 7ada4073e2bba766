//! The HTTP side: the router, request parameters, and the one place answers are written.
//!
//! Handlers decide *what* to answer (an [`Answer`] plus, maybe, a transport fault); this
//! module decides *how* it goes on the wire: each provider's content type and request-id
//! headers, and the transport faults (latency, a reset half-way through the body, truncated
//! JSON, an oversized body).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::Endpoints;
use crate::fault::{self, Answer, AnswerCtx, Endpoint, FaultKind};
use crate::scenario::{FaultSpec, Provider, RetryAfter};
use crate::state::World;

/// State shared by every handler.
pub(crate) struct Shared {
    world: Mutex<World>,
    pub urls: Endpoints,
    /// HS256 key of the Microsoft access tokens the sim mints.
    pub token_key: [u8; 32],
    /// RS256 key of the `id_token`s both providers' token endpoints issue.
    pub id_key: Option<Arc<crate::oidc::IdKey>>,
}

impl Shared {
    pub(crate) fn new(world: World, urls: Endpoints) -> Shared {
        let mut token_key = [0u8; 32];
        token_key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        token_key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let id_key = crate::oidc::IdKey::load();
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

/// How an answer is dressed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    GoogleToken,
    GoogleApi,
    EntraToken,
    Graph,
}

/// An answer ready to be written.
pub(crate) struct Reply {
    pub style: Style,
    pub answer: Answer,
    pub transport: Option<FaultSpec>,
    pub request_id: String,
    pub client_request_id: String,
    /// A mailbox concurrency slot, released once the answer is written.
    pub in_flight: Option<crate::state::InFlight>,
}

impl Reply {
    /// Applies what [`fire`] found: an answer fault becomes the reply (true: answer it
    /// now), a transport fault rides on whatever the handler answers.
    pub(crate) fn take_fault(&mut self, fired: Fired) -> bool {
        match fired {
            Fired::Answer(answer, transport) => {
                self.answer = answer;
                self.transport = transport;
                true
            }
            Fired::Transport(spec) => {
                self.transport = Some(spec);
                false
            }
            Fired::Nothing => false,
        }
    }
}

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

/// What a fault check found.
pub(crate) enum Fired {
    Nothing,
    /// An answer fault, with the transport fault (latency, …) to apply to it, if any.
    Answer(Answer, Option<FaultSpec>),
    Transport(FaultSpec),
}

/// Takes the first fault that applies and turns an answer fault into its answer.
pub(crate) fn fire(
    world: &mut World,
    tenant: usize,
    user: Option<usize>,
    endpoint: Endpoint,
    incremental: bool,
    provider: Provider,
    ctx: &mut AnswerCtx,
) -> Fired {
    let transport = world.take_fault(
        tenant,
        user,
        endpoint,
        incremental,
        fault::Effect::Transport,
    );
    match world.take_fault(tenant, user, endpoint, incremental, fault::Effect::Answer) {
        Some(spec) => {
            ctx.retry_after = spec.retry_after.as_ref().map(RetryAfter::header_value);
            Fired::Answer(fault::answer(spec.fault, provider, ctx), transport)
        }
        None => transport.map_or(Fired::Nothing, Fired::Transport),
    }
}

const GOOGLE_API_TYPE: &str = "application/json; charset=UTF-8";
const TOKEN_TYPE: &str = "application/json; charset=utf-8";
const GRAPH_TYPE: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Writes a reply, applying its transport fault.
pub(crate) async fn deliver(reply: Reply) -> Response {
    let Reply {
        style,
        answer,
        transport,
        request_id,
        client_request_id,
        in_flight,
    } = reply;
    // Released when this function returns, i.e. after any latency.
    let _in_flight = in_flight;
    let mut headers = HeaderMap::new();
    let content_type = match style {
        Style::GoogleApi => GOOGLE_API_TYPE,
        Style::GoogleToken | Style::EntraToken => TOKEN_TYPE,
        Style::Graph => GRAPH_TYPE,
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    match style {
        Style::Graph => {
            headers.insert("request-id", header_value(&request_id));
            headers.insert("client-request-id", header_value(&client_request_id));
            headers.insert(
                "x-ms-ags-diagnostic",
                HeaderValue::from_static(
                    r#"{"ServerInfo":{"DataCenter":"Loopback","Slice":"E","Ring":"0","ScaleUnit":"000","RoleInstance":"DATACAP-SIM"}}"#,
                ),
            );
            headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000"),
            );
        }
        Style::EntraToken => {
            headers.insert("x-ms-request-id", header_value(&request_id));
        }
        Style::GoogleApi | Style::GoogleToken => {
            headers.insert(
                header::VARY,
                HeaderValue::from_static("Origin, X-Origin, Referer"),
            );
        }
    }
    for (name, value) in &answer.headers {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.insert(name, header_value(value));
        }
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = answer.body.to_bytes();
    let Some(spec) = transport else {
        return (status, headers, body).into_response();
    };
    match spec.fault {
        FaultKind::Latency => {
            tokio::time::sleep(Duration::from_millis(
                spec.latency_ms.unwrap_or(1_000).min(600_000),
            ))
            .await;
            (status, headers, body).into_response()
        }
        FaultKind::TruncatedJson => {
            let half = body.len() / 2;
            let mut body = body;
            body.truncate(half);
            (status, headers, body).into_response()
        }
        FaultKind::ConnectionReset => {
            headers.insert(
                header::CONTENT_LENGTH,
                header_value(&body.len().to_string()),
            );
            let body = Bytes::from(body);
            let first = body.slice(..body.len() / 2);
            // The error comes after a pending poll, so hyper flushes the head and the first
            // half before it drops the connection: the client sees headers, then a reset.
            let stream = futures_util::stream::iter([Ok::<Bytes, std::io::Error>(first)]).chain(
                futures_util::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "datacap-sim: connection_reset fault",
                    ))
                }),
            );
            (status, headers, Body::from_stream(stream)).into_response()
        }
        FaultKind::OversizedBody => {
            let total = spec
                .bytes
                .unwrap_or(16 * 1024 * 1024 + 1)
                .clamp(32, 1 << 32);
            headers.insert(header::CONTENT_LENGTH, header_value(&total.to_string()));
            (StatusCode::OK, headers, oversized(total)).into_response()
        }
        _ => (status, headers, body).into_response(),
    }
}

/// `{"padding":"xxxx…"}` of exactly `total` bytes, streamed in 64 KiB chunks.
fn oversized(total: u64) -> Body {
    const CHUNK: u64 = 64 * 1024;
    let head = b"{\"padding\":\"";
    let tail = b"\"}";
    let fill = total.saturating_sub((head.len() + tail.len()) as u64);
    let chunk = Bytes::from(vec![b'x'; CHUNK as usize]);
    let full_chunks = fill / CHUNK;
    let rest = usize::try_from(fill % CHUNK).unwrap_or(0);
    let stream = futures_util::stream::iter(
        std::iter::once(Bytes::from_static(head))
            .chain((0..full_chunks).map(move |_| chunk.clone()))
            .chain(std::iter::once(Bytes::from(vec![b'x'; rest])))
            .chain(std::iter::once(Bytes::from_static(tail)))
            .map(Ok::<Bytes, std::io::Error>),
    );
    Body::from_stream(stream)
}

/// A plain-text error page (what the providers' authorize endpoints show a browser).
pub(crate) fn error_page(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_owned(),
    )
        .into_response()
}

/// The whole router.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::google::routes())
        .merge(crate::microsoft::routes())
        .merge(crate::oidc::routes())
        .merge(crate::control::routes())
        .fallback(unknown_path)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_quota_user,
        ))
        .with_state(state)
}

/// The segment Graph names in "Resource not found for the segment '…'": the first one
/// after `users/{id}` (or after the version) that the sim does not serve.
fn unknown_graph_segment(path: &str) -> String {
    const KNOWN: &[&str] = &[
        "users",
        "mailFolders",
        "messages",
        "calendarView",
        "delta",
        "delta()",
    ];
    let segments: Vec<&str> = path
        .trim_start_matches("/graph/")
        .split('/')
        .skip(1)
        .filter(|s| !s.is_empty())
        .collect();
    let unknown = segments.iter().enumerate().find(|(i, s)| {
        // `users/{id}` and `mailFolders/{folder}`: the segment after them is an id.
        let after_id = *i > 0
            && matches!(segments.get(i - 1), Some(&"users") | Some(&"mailFolders"))
            && **s != "delta"
            && **s != "delta()";
        !after_id && !KNOWN.contains(s)
    });
    unknown
        .or(segments.iter().enumerate().next_back())
        .map(|(_, s)| (*s).to_owned())
        .unwrap_or_default()
}

/// What a path the sim does not serve answers: each provider's own error envelope, so a
/// client that builds a wrong URL fails the way it would against the real host.
async fn unknown_path(uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let (style, answer, request_id, client_request_id) = if path.starts_with("/graph/") {
        // microsoft-graph-docs#21648, msgraph-beta-sdk-python#764: 400 `BadRequest`.
        let (request_id, client_request_id) = request_ids(&headers);
        let ctx = AnswerCtx {
            request_id: request_id.clone(),
            client_request_id: client_request_id.clone(),
            ..AnswerCtx::default()
        };
        let message = format!(
            "Resource not found for the segment '{}'.",
            unknown_graph_segment(path)
        );
        (
            Style::Graph,
            fault::graph_error(&ctx, 400, "BadRequest", &message, true),
            request_id,
            client_request_id,
        )
    } else if path.starts_with("/google/") {
        // The Google envelope's 404 (providers/google.md §6 "Calendar/resource not found").
        (
            Style::GoogleApi,
            fault::answer(
                FaultKind::CalendarNotFound,
                Provider::Google,
                &AnswerCtx::default(),
            ),
            String::new(),
            String::new(),
        )
    } else if path.starts_with("/_sim/") {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": format!("no control call at {path}") })),
        )
            .into_response();
    } else {
        // Entra's login host answers an unknown path with an HTML error page, not JSON.
        return error_page(
            StatusCode::NOT_FOUND,
            "datacap-sim: no such endpoint (see docs/sim.md)",
        );
    };
    deliver(Reply {
        style,
        answer,
        transport: None,
        request_id,
        client_request_id,
        in_flight: None,
    })
    .await
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
