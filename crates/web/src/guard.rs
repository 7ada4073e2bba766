//! What every answer and every request goes through before and after its handler: the
//! security headers, `Cache-Control: no-store`, the cross-site check of `POST` routes, the
//! per-client throttle of sign-in and the connect flow, the in-flight bound and the request
//! timeout (the listener's limits, `listener.rs`, are the rest).
//!
//! Headers on every answer (HTML, JSON and text alike): a `Content-Security-Policy` that
//! allows no script but the pages' own, no frame ancestor and no foreign form target; `X-Content-Type-Options:
//! nosniff`; `Referrer-Policy: no-referrer` (a connect link's invite never leaks to another
//! site); `X-Frame-Options: DENY` for old browsers; and `Cache-Control: no-store` unless the
//! handler chose otherwise, so no authenticated page, API answer or callback page is kept
//! by a browser or proxy.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use crate::listener::{Limits, peer};

/// The policy of every answer: one script only, the pages' own (`assets/page.js`, allowed
/// by its SHA-256, which a test recomputes), fetching only this origin; styles only inline
/// (the pages' one `<style>`), forms only to this origin, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'sha256-Vznnws3DTD+hitEAvEQJKzSOm4BC2sE7YmLCT3vUcsY='; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Shared state of the guard layers.
pub(crate) struct Guard {
    in_flight: Arc<Semaphore>,
    request_timeout: std::time::Duration,
    throttle: DefaultKeyedRateLimiter<IpAddr>,
    /// `scheme://host[:port]` of the public URL, when configured.
    public_origin: Option<String>,
}

impl Guard {
    pub(crate) fn new(limits: &Limits, public_url: Option<&str>) -> Guard {
        let per_minute =
            NonZeroU32::new(limits.throttle_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Guard {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            request_timeout: limits.request_timeout,
            throttle: RateLimiter::keyed(Quota::per_minute(per_minute)),
            public_origin: public_url.map(origin_of),
        }
    }
}

/// `scheme://host[:port]` of a URL (its path dropped), lower-cased.
pub(crate) fn origin_of(url: &str) -> String {
    let url = url.trim().to_ascii_lowercase();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            format!("{scheme}://{host}")
        }
        None => url,
    }
}

/// Adds the security headers (and `no-store` unless set) to every answer.
pub(crate) async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    set_security_headers(response.headers_mut());
    response
}

pub(crate) fn set_security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Bounds the requests in flight and the time each may take.
pub(crate) async fn bounds(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = guard.in_flight.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "busy, try again in a moment\n",
        )
            .into_response();
    };
    match tokio::time::timeout(guard.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!("a request was not answered within the request timeout");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the request took too long\n",
            )
                .into_response()
        }
    }
}

/// Whether `path` is throttled per client: sign-in and the connect flow.
fn throttled(method: &Method, path: &str) -> bool {
    (method == Method::POST && path == "/login") || path.starts_with("/connect/")
}

/// Throttles sign-in and the connect flow per client address, and refuses a cross-site
/// `POST`.
pub(crate) async fn checks(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    if throttled(request.method(), request.uri().path()) {
        let client =
            peer(&request).map_or(IpAddr::from([0, 0, 0, 0]), |addr: SocketAddr| addr.ip());
        if guard.throttle.check_key(&client).is_err() {
            tracing::warn!(client = %client, path = request.uri().path(), "client throttled");
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "60")],
                "too many attempts from your address; try again in a minute\n",
            )
                .into_response();
        }
        if guard.throttle.len() > 10_000 {
            guard.throttle.retain_recent();
        }
    }
    if request.method() == Method::POST
        && let Err(reason) = same_origin(request.headers(), guard.public_origin.as_deref())
    {
        tracing::warn!(
            path = request.uri().path(),
            reason,
            "cross-site request refused"
        );
        return (StatusCode::FORBIDDEN, "cross-site requests are refused\n").into_response();
    }
    next.run(request).await
}

/// A `POST` must come from this site. `Sec-Fetch-Site` (a header pages cannot set) decides
/// when the browser sends it: `same-origin` passes, anything but `none` (typed by the user)
/// is refused. Otherwise `Origin` (when sent) must be the public URL's origin or the origin
/// of the `Host` the request was sent to. (Under our `Referrer-Policy: no-referrer` a
/// browser sends `Origin: null` even for a same-origin form, so `Origin` alone cannot
/// vouch for it where `Sec-Fetch-Site` does.) A request with neither header (curl, a
/// script) passes: it carries no browser's ambient cookie that a third site could abuse,
/// and the session cookie is `SameSite=Strict` besides.
pub(crate) fn same_origin(headers: &HeaderMap, public: Option<&str>) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or_default();
        if site.eq_ignore_ascii_case("same-origin") {
            return Ok(());
        }
        if !site.eq_ignore_ascii_case("none") {
            return Err("sec-fetch-site is not same-origin");
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
    if public.is_some_and(|public| public == origin) {
        return Ok(());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let same_host = origin
        .split_once("://")
        .is_some_and(|(_, rest)| !host.is_empty() && rest == host);
    if same_host {
        Ok(())
    } else {
        Err("origin is another site")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::get;

    fn check(headers: &[(&'static str, &'static str)], public: Option<&str>) -> bool {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        same_origin(&map, public).is_ok()
    }

    #[test]
    fn cross_site_posts_are_told_apart() {
        let public = Some("https://datacap.example");
        assert!(check(&[], public), "no browser headers: a script");
        assert!(check(&[("sec-fetch-site", "same-origin")], public));
        assert!(check(&[("sec-fetch-site", "none")], public));
        assert!(!check(&[("sec-fetch-site", "cross-site")], public));
        assert!(!check(&[("sec-fetch-site", "same-site")], public));
        assert!(check(&[("origin", "https://datacap.example")], public));
        assert!(!check(&[("origin", "https://evil.example")], public));
        assert!(!check(&[("origin", "null")], public));
        // Chromium's same-origin form under Referrer-Policy: no-referrer (browser.rs).
        assert!(check(
            &[("sec-fetch-site", "same-origin"), ("origin", "null")],
            public
        ));
        assert!(!check(
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://datacap.example")
            ],
            public
        ));
        assert!(check(
            &[
                ("origin", "http://127.0.0.1:9464"),
                ("host", "127.0.0.1:9464")
            ],
            None
        ));
        assert!(!check(
            &[
                ("origin", "http://127.0.0.1:9999"),
                ("host", "127.0.0.1:9464")
            ],
            None
        ));
    }

    #[test]
    fn origins_drop_the_path() {
        assert_eq!(
            origin_of("https://Datacap.example/x/y"),
            "https://datacap.example"
        );
        assert_eq!(origin_of("http://127.0.0.1:9464"), "http://127.0.0.1:9464");
    }

    #[tokio::test]
    async fn requests_in_flight_and_their_time_are_bounded() {
        use axum::routing::get as route;
        let limits = Limits {
            max_in_flight: 1,
            request_timeout: std::time::Duration::from_secs(1),
            ..Limits::default()
        };
        let guard = Arc::new(Guard::new(&limits, None));
        let (entered, mut inside) = tokio::sync::mpsc::channel::<()>(1);
        // `/hang` never answers by itself; `/quick` answers at once.
        let router = axum::Router::new()
            .route(
                "/hang",
                route(move || {
                    let entered = entered.clone();
                    async move {
                        let _ = entered.send(()).await;
                        std::future::pending::<&'static str>().await
                    }
                }),
            )
            .route("/quick", route(|| async { "quick" }))
            .layer(axum::middleware::from_fn_with_state(guard, bounds))
            .layer(axum::middleware::from_fn(headers));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let stop = cancel.clone();
        let server =
            tokio::spawn(
                async move { crate::listener::serve(listener, router, &limits, stop).await },
            );
        let hanging = tokio::spawn(async move { get(addr, "/hang").await });
        inside
            .recv()
            .await
            .expect("the first request is in its handler");
        // The one slot is taken: the next request is shed at once, with Retry-After.
        let busy = get(addr, "/quick").await;
        assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
        assert!(
            busy.to_ascii_lowercase().contains("retry-after: 1"),
            "{busy}"
        );
        assert!(
            busy.contains("nosniff"),
            "shed answers carry the headers too: {busy}"
        );
        // The hanging request is ended by the request timeout, and frees its slot.
        let timed_out = hanging.await.unwrap();
        assert!(timed_out.starts_with("HTTP/1.1 503"), "{timed_out}");
        assert!(timed_out.contains("took too long"), "{timed_out}");
        let quick = get(addr, "/quick").await;
        assert!(quick.starts_with("HTTP/1.1 200"), "{quick}");
        cancel.cancel();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn throttled_paths() {
        assert!(throttled(&Method::POST, "/login"));
        assert!(!throttled(&Method::GET, "/login"));
        assert!(throttled(&Method::GET, "/connect/google/callback"));
        assert!(!throttled(&Method::GET, "/api/v1/companies/acme/status"));
    }
}
