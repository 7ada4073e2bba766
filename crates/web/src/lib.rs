//! datacap-web: what `datacap run` serves over HTTP. For now `/healthz` (the process is
//! alive), `/readyz` (the database is reachable and the scheduler makes progress) and
//! `/metrics` (Prometheus text); the Team members page and its JSON API arrive later on
//! the same router.
//!
//! The crate knows neither the worker nor the metrics exporter: the binary hands it two
//! functions, one that says whether the daemon is ready and one that renders the metrics,
//! so this stays a thin HTTP edge that tests drive with plain requests.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// Says whether the daemon is ready, or why not.
pub type ReadyFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;
/// Renders the metrics in Prometheus' text format.
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// What the endpoints read.
#[derive(Clone)]
pub struct WebState {
    pub ready: ReadyFn,
    pub metrics: MetricsFn,
}

/// Liveness: 200 while the process serves HTTP (deploy/ probes it).
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness: 200 once the daemon is ready, 503 with the reason otherwise.
pub const READYZ_PATH: &str = "/readyz";
/// Prometheus metrics in the text format (deploy/ annotates it for scraping).
pub const METRICS_PATH: &str = "/metrics";

/// The router: `/healthz`, `/readyz`, `/metrics`.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route(HEALTHZ_PATH, get(healthz))
        .route(READYZ_PATH, get(readyz))
        .route(METRICS_PATH, get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<WebState>) -> Response {
    match (state.ready)() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<WebState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        (state.metrics)(),
    )
        .into_response()
}

/// A bound listener serving the router until `cancel` fires.
pub struct WebServer {
    listener: tokio::net::TcpListener,
    state: WebState,
}

impl WebServer {
    /// Binds `addr` (port 0 picks a free one).
    pub async fn bind(addr: SocketAddr, state: WebState) -> std::io::Result<WebServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(WebServer { listener, state })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `cancel` fires.
    pub async fn serve(self, cancel: CancellationToken) -> std::io::Result<()> {
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A plain HTTP/1.1 GET; the whole answer as text.
    async fn get(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let state = WebState {
            ready: Arc::new(move || {
                if flag.load(Ordering::Relaxed) {
                    Ok(())
                } else {
                    Err("database unreachable".to_owned())
                }
            }),
            metrics: Arc::new(|| "datacap_attempts_total 1\n".to_owned()),
        };
        let server = WebServer::bind("127.0.0.1:0".parse().unwrap(), state)
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server.serve(cancel.clone()));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let not_ready = get(addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        assert!(not_ready.contains("database unreachable"));
        ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.contains("datacap_attempts_total 1"));
        cancel.cancel();
        task.await.unwrap().unwrap();
    }
}
