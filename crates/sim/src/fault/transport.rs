//! The transport faults: latency, a reset half-way through the body, truncated JSON and
//! an oversized body, applied to whatever the handler answered as it goes on the wire.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::FaultKind;
use crate::scenario::FaultSpec;

/// Writes `status`, `headers` and `body` as the transport fault `spec` says.
pub(crate) async fn apply(
    spec: FaultSpec,
    status: StatusCode,
    mut headers: HeaderMap,
    body: Vec<u8>,
) -> Response {
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
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
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
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
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
