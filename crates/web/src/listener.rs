//! The listener and its limits: what keeps a handful of idle or slow clients from taking
//! the server away from everyone else (issue 17, "no limits on the listener").
//!
//! - at most [`Limits::max_connections`] connections are served at once; past that the
//!   accept loop waits (the kernel's backlog holds the rest), so descriptors never run out;
//! - a connection must send a complete request head within
//!   [`Limits::header_read_timeout`] (hyper's timer, armed from the first byte awaited and
//!   again between keep-alive requests), so idle and slow-loris connections are closed;
//! - a request is answered within [`Limits::request_timeout`] (503 otherwise), at most
//!   [`Limits::max_in_flight`] run at once (503 with `Retry-After` past that), and a body
//!   is at most [`Limits::body_limit`] bytes (413);
//! - `/login` and the connect flow are throttled per client address
//!   ([`Limits::throttle_per_minute`], 429 with `Retry-After`).
//!
//! Every connection's request carries its peer address as axum's `ConnectInfo`, which the
//! throttle reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// The bounds every listener applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A connection that has not sent a whole request head in this time is closed.
    pub header_read_timeout: Duration,
    /// A request not answered in this time gets 503.
    pub request_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Requests handled at once; more get 503 at once.
    pub max_in_flight: usize,
    /// Largest request body, in bytes (413 above).
    pub body_limit: usize,
    /// Requests per minute per client address to `/login` and `/connect/…` (429 above).
    pub throttle_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_in_flight: 64,
            body_limit: 16 * 1024,
            throttle_per_minute: 30,
        }
    }
}

/// How long a stopping server waits for its open connections to finish.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` within `limits` until `cancel` fires, then lets open
/// connections finish (up to 10 s).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: &Limits,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let slot = tokio::select! {
            () = cancel.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(found) => found,
                Err(error) => {
                    // Out of descriptors or a connection reset before accept: wait a
                    // little rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let header_read_timeout = limits.header_read_timeout;
        let stop = cancel.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    router.clone().oneshot(request)
                });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .max_buf_size(64 * 1024);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                }
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, connection).await;
                }
            }
        });
    }
    // Every connection holds a slot until it ends: taking them all waits for the drain.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN + Duration::from_secs(1), slots.acquire_many(all)).await;
    Ok(())
}

/// The peer address of a request served by [`serve`].
pub(crate) fn peer(request: &axum::extract::Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}
