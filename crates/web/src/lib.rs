//! datacap-web: what `datacap run` and `datacap demo` serve over HTTP, on one listener:
//! - `/healthz`, `/readyz`, `/metrics` for probes and Prometheus (no auth);
//! - the Team members page per company and an index of companies (server-rendered HTML,
//!   askama templates, patched in place by their one script), with `/login` and `/logout`
//!   (a signed-out deep link goes through sign-in and lands where it pointed) and the
//!   company's connect reminders page;
//! - the JSON API `/api/v1/…` (status of a company, a member's recent attempts);
//! - the members' connect flow `/connect/{provider}/…`.
//!
//! The crate knows neither the worker nor the metrics exporter nor the providers' clients:
//! the binary hands it functions (ready, metrics), the store, the tokens and, for the
//! connect flow, something that redeems authorization codes. Every route is listed in
//! [`routes`], which builds the router and which a test holds against docs/openapi.yaml.

// Handlers return a finished error page or JSON answer as `Err(Response)`, once per
// request; boxing it would buy nothing.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod auth;
pub mod connect;
mod guard;
mod listener;
mod page;
pub mod remind;
mod signin;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::handler::Handler;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, on};
use datacap_store::Store;
use tokio_util::sync::CancellationToken;

pub use auth::{Auth, Denied, Principal};
pub use connect::{
    CheckedInvite, ConnectSetup, Exchange, ExchangeError, Exchanged, Identity, InviteKey, SignIn,
};
pub use guard::CONTENT_SECURITY_POLICY;
pub use listener::Limits;
pub use page::{DEFAULT_SUPPORT, PAGE_SCRIPT};
pub use remind::{Mail, MailFuture, Mailer};

/// Says whether the daemon is ready, or why not.
pub type ReadyFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;
/// Renders the metrics in Prometheus' text format.
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// What the page, the API and the connect flow read.
pub struct App {
    pub store: Store,
    pub auth: Auth,
    /// Seconds between the pages' live updates.
    pub refresh_seconds: u32,
    /// The connect flow; without it `/connect/…` answers that connecting is not set up.
    pub connect: Option<ConnectSetup>,
    /// Where people reach this server (`https://datacap.example.com`): a `POST` must come
    /// from its origin (or the `Host` it was sent to).
    pub public_url: Option<String>,
    /// Whom a company admin hands a red icon to (`[web] support_contact`); `None` names
    /// "your datacap operator".
    pub support_contact: Option<String>,
}

/// What the endpoints read.
#[derive(Clone)]
pub struct WebState {
    pub ready: ReadyFn,
    pub metrics: MetricsFn,
    /// The page, API and connect flow; `None` serves only health, readiness and metrics.
    pub app: Option<Arc<App>>,
}

/// Liveness: 200 while the process serves HTTP (deploy/ probes it).
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness: 200 once the daemon is ready, 503 with the reason otherwise.
pub const READYZ_PATH: &str = "/readyz";
/// Prometheus metrics in the text format (deploy/ annotates it for scraping).
pub const METRICS_PATH: &str = "/metrics";

/// A route: method, path (axum's `{param}` syntax, as in OpenAPI) and handler.
pub type Route = (Method, &'static str, MethodRouter<WebState>);

/// A `GET` route.
fn get_at<H: Handler<T, WebState>, T: 'static>(path: &'static str, handler: H) -> Route {
    (Method::GET, path, get(handler))
}

/// A `POST` route (a form the pages send).
fn post_at<H: Handler<T, WebState>, T: 'static>(path: &'static str, handler: H) -> Route {
    (Method::POST, path, on(MethodFilter::POST, handler))
}

/// Every route.
pub fn routes() -> Vec<Route> {
    vec![
        get_at(HEALTHZ_PATH, healthz),
        get_at(READYZ_PATH, readyz),
        get_at(METRICS_PATH, metrics),
        get_at("/", page::index),
        get_at("/login", page::login_form),
        post_at("/login", page::login),
        post_at("/logout", page::logout),
        get_at("/companies/{company}/members", page::members),
        get_at("/companies/{company}/members/{member}", page::member),
        post_at("/companies/{company}/members/{member}/resync", page::resync),
        get_at("/companies/{company}/reminders", remind::page),
        post_at("/companies/{company}/reminders", remind::send),
        get_at("/api/v1/companies/{company}/status", api::status),
        get_at(
            "/api/v1/companies/{company}/members/{member}/attempts",
            api::member_rows::<api::Attempts>,
        ),
        get_at(
            "/api/v1/companies/{company}/members/{member}/history",
            api::member_rows::<api::History>,
        ),
        get_at("/api/v1/companies/{company}/webhooks", api::webhooks),
        get_at("/connect/{provider}/start", connect::start),
        get_at("/connect/{provider}/callback", connect::callback),
    ]
}

/// Which routes a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Serves {
    /// Every route.
    All,
    /// Every route but `/metrics` (served on a listener of its own).
    AllButMetrics,
    /// `/healthz`, `/readyz` and `/metrics` only (the metrics listener).
    Probes,
}

/// The router of [`routes`], with a plain 404 for anything else, behind the guard layers
/// (security headers, cross-site check, throttle, in-flight bound, request timeout, body
/// limit) with the default [`Limits`].
pub fn router(state: WebState) -> Router {
    guarded(state, &Limits::default(), Serves::All)
}

fn guarded(state: WebState, limits: &Limits, serves: Serves) -> Router {
    let public_url = state.app.as_ref().and_then(|app| app.public_url.clone());
    let guard = Arc::new(guard::Guard::new(limits, public_url.as_deref()));
    let mut router = Router::new();
    for (_, path, handler) in routes() {
        let probe = matches!(path, HEALTHZ_PATH | READYZ_PATH | METRICS_PATH);
        let wanted = match serves {
            Serves::All => true,
            Serves::AllButMetrics => path != METRICS_PATH,
            Serves::Probes => probe,
        };
        if wanted {
            router = router.route(path, handler);
        }
    }
    router
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page\n") })
        .with_state(state)
        .layer(axum::middleware::from_fn(signin::deep_links))
        .layer(axum::extract::DefaultBodyLimit::max(limits.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            guard.clone(),
            guard::checks,
        ))
        .layer(axum::middleware::from_fn_with_state(guard, guard::bounds))
        .layer(axum::middleware::from_fn(guard::headers))
        .layer(axum::middleware::from_fn(http_metrics))
}

/// HTTP requests answered, by route template (`unmatched` for no route), method and status.
pub const HTTP_REQUESTS: &str = "datacap_http_requests_total";
/// Seconds from a request's arrival to its answer's head, by route template (histogram).
pub const HTTP_DURATION: &str = "datacap_http_request_duration_seconds";

/// The web side's metric families with their type and `# HELP` text.
pub const METRIC_FAMILIES: &[(&str, &str, &str)] = &[
    (
        HTTP_REQUESTS,
        "counter",
        "HTTP requests answered, by route template, method and status.",
    ),
    (
        HTTP_DURATION,
        "histogram",
        "Seconds from a request's arrival to its answer, by route template.",
    ),
];

/// Describes [`METRIC_FAMILIES`] to the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(HTTP_REQUESTS, METRIC_FAMILIES[0].2);
    metrics::describe_histogram!(HTTP_DURATION, metrics::Unit::Seconds, METRIC_FAMILIES[1].2);
}

/// Counts every answer (the guards' refusals included: this layer is the outermost) by
/// the route's template, never the raw path, so labels stay bounded.
async fn http_metrics(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics::counter!(
        HTTP_REQUESTS,
        "route" => route.clone(),
        "method" => method,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
    response
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
    limits: Limits,
    serves: Serves,
}

impl WebServer {
    /// Binds `addr` (port 0 picks a free one); serves every route with the default
    /// [`Limits`].
    pub async fn bind(addr: SocketAddr, state: WebState) -> std::io::Result<WebServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(WebServer {
            listener,
            state,
            limits: Limits::default(),
            serves: Serves::All,
        })
    }

    /// Serves within `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: Limits) -> WebServer {
        self.limits = limits;
        self
    }

    /// Leaves `/metrics` to a listener of its own ([`WebServer::probes_only`]).
    pub fn without_metrics(mut self) -> WebServer {
        self.serves = Serves::AllButMetrics;
        self
    }

    /// Serves only `/healthz`, `/readyz` and `/metrics` (the metrics listener).
    pub fn probes_only(mut self) -> WebServer {
        self.serves = Serves::Probes;
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `cancel` fires.
    pub async fn serve(self, cancel: CancellationToken) -> std::io::Result<()> {
        let router = guarded(self.state, &self.limits, self.serves);
        listener::serve(self.listener, router, &self.limits, cancel).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A plain HTTP/1.1 GET over loopback; the whole answer as text (the guard's tests
    /// send theirs with it too).
    pub(crate) async fn get(addr: SocketAddr, path: &str) -> String {
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
            app: None,
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
        // Without the app, the page says so (a 404 page: nothing is failing).
        let page = get(addr, "/companies/acme/members").await;
        assert!(page.starts_with("HTTP/1.1 404"), "{page}");
        assert!(
            page.contains("only answers health, readiness and metrics"),
            "{page}"
        );
        let connect = get(addr, "/connect/microsoft/start?invite=x").await;
        assert!(connect.starts_with("HTTP/1.1 404"), "{connect}");
        cancel.cancel();
        task.await.unwrap().unwrap();
    }
}
