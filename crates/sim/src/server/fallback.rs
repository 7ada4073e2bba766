//! What a path the sim does not serve answers: each provider's own error envelope.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{Reply, Style, deliver, error_page, request_ids};
use crate::fault::{AnswerCtx, FaultKind};
use crate::scenario::Provider;

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
pub(super) async fn unknown_path(uri: axum::http::Uri, headers: HeaderMap) -> Response {
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
            crate::microsoft::faults::graph_error(&ctx, 400, "BadRequest", &message, true),
            request_id,
            client_request_id,
        )
    } else if path.starts_with("/google/") {
        // The Google envelope's 404 (providers/google.md §6 "Calendar/resource not found").
        (
            Style::GoogleApi,
            crate::fault::answer(
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
