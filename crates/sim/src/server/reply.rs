//! The one place answers are written: each provider's content type and request-id
//! headers, then the transport fault, if any ([`crate::fault::apply_transport`]).

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::fault::{Answer, Fired};
use crate::scenario::FaultSpec;

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
    /// An answer with the request's ids (`(request-id, client-request-id)`) and no fault.
    pub(crate) fn plain(style: Style, answer: Answer, ids: (String, String)) -> Reply {
        Reply {
            style,
            answer,
            transport: None,
            request_id: ids.0,
            client_request_id: ids.1,
            in_flight: None,
        }
    }

    /// Applies what [`crate::fault::fire`] found: an answer fault becomes the reply (true: answer it
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
    match transport {
        None => (status, headers, body).into_response(),
        Some(spec) => crate::fault::apply_transport(spec, status, headers, body).await,
    }
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
