//! Deep links through sign-in: a signed-out `GET` of a page answers `303 See Other` to
//! `/login?next=<the page>`, the sign-in form carries `next` along, and a successful
//! sign-in lands on it. Only a same-origin relative path is ever followed ([`safe_next`]):
//! anything that a browser could read as another site (`//evil`, `/\evil`, `https://evil`,
//! their percent-encoded forms, a tab or newline a browser strips) is dropped for the
//! principal's default page, so the sign-in is no open redirect.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::Principal;

/// The longest `next` followed (a page URL with a filter is far shorter).
const MAX_NEXT: usize = 2048;

/// `next` when it is a same-origin path (with its query) this server may send a browser
/// to, else `None`. Checked on the text as given and on every percent-decoding of it.
pub(crate) fn safe_next(next: &str) -> Option<&str> {
    if next.is_empty() || next.len() > MAX_NEXT {
        return None;
    }
    let mut text = next.to_owned();
    // A few rounds cover double and triple encoding; a value still changing after them is
    // refused rather than followed.
    for _ in 0..4 {
        if !plain_path(&text) {
            return None;
        }
        let decoded: String = percent_decode(&text)?;
        if decoded == text {
            return (!is_sign_in(next)).then_some(next);
        }
        text = decoded;
    }
    None
}

/// A path beginning with one `/` and no second `/` or `\` right after it, with no
/// backslash and no control character anywhere (browsers drop tabs and newlines, and read
/// `\` as `/`), so no scheme or host can come before the path.
fn plain_path(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && !text.chars().any(|c| c == '\\' || c.is_control())
}

/// `%XY` sequences decoded (as UTF-8, lossily); `None` for a broken escape.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The sign-in form itself is never a target (it would only show the form again).
fn is_sign_in(next: &str) -> bool {
    let path = next.split(['?', '#']).next().unwrap_or_default();
    path == "/login" || path == "/logout"
}

/// Where a signed-in `principal` lands: `next` when it is safe and (for a company) names
/// a page of its own company or no company at all, else its default page.
pub(crate) fn landing(principal: &Principal, next: Option<&str>) -> String {
    let default = match principal {
        Principal::Operator => "/".to_owned(),
        Principal::Company(id) => format!("/companies/{}/members", crate::page::encode_segment(id)),
    };
    let Some(next) = next.and_then(safe_next) else {
        return default;
    };
    if let Principal::Company(id) = principal
        && let Some(rest) = next.strip_prefix("/companies/")
    {
        let segment = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let named = percent_decode(segment).unwrap_or_default();
        if &named != id {
            return default;
        }
    }
    next.to_owned()
}

/// `/login?next=<path and query>`, the target form-encoded.
pub(crate) fn login_location(target: &str) -> String {
    let encoded: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", target)
        .finish();
    format!("/login?{encoded}")
}

/// Turns the sign-in page a signed-out `GET` of a page gets (401, HTML) into a redirect to
/// `/login?next=…`; the API, the connect flow and a request that presented a token (a
/// script with a wrong one wants its 401) keep their answers.
pub(crate) async fn deep_links(request: Request, next: Next) -> Response {
    let get = matches!(*request.method(), Method::GET | Method::HEAD);
    let path = request.uri().path();
    let page = !(path.starts_with("/api/") || path.starts_with("/connect/") || path == "/login");
    let token = request.headers().contains_key(header::AUTHORIZATION);
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| path.to_owned(), |pq| pq.as_str().to_owned());
    let response = next.run(request).await;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    if !(get && page && !token && html && response.status() == StatusCode::UNAUTHORIZED) {
        return response;
    }
    let location = match safe_next(&target) {
        Some(target) if target != "/" => login_location(target),
        _ => "/login".to_owned(),
    };
    match HeaderValue::from_str(&location) {
        Ok(value) => (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response(),
        Err(_) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_paths_are_followed() {
        for good in [
            "/",
            "/companies/acme/members",
            "/companies/acme/members?color=red&reason=member_not_connected",
            "/companies/acme/members/bob",
            "/companies/a%20b/members",
        ] {
            assert_eq!(safe_next(good), Some(good), "{good}");
        }
        for evil in [
            "",
            "//evil.example",
            "//evil.example/companies/acme/members",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "http:/evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/%2Fevil.example",
            "/%2fevil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "/%252F%252Fevil.example",
            "/%25252F%25252Fevil.example",
            "/\t/evil.example",
            "/%09/evil.example",
            "/\n/evil.example",
            "/%0d%0aSet-Cookie:x=1",
            "/%",
            "/%zz",
            "/login",
            "/login?next=/",
        ] {
            assert_eq!(safe_next(evil), None, "{evil:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(MAX_NEXT))), None);
    }

    #[test]
    fn a_company_lands_on_its_own_pages_only() {
        let acme = Principal::Company("acme".to_owned());
        for (next, lands) in [
            (
                "/companies/acme/members?color=red",
                "/companies/acme/members?color=red",
            ),
            ("/companies/acme/members/bob", "/companies/acme/members/bob"),
            ("/companies/globex/members", "/companies/acme/members"),
            ("/companies/%61cme/members", "/companies/%61cme/members"),
        ] {
            assert_eq!(landing(&acme, Some(next)), lands, "{next}");
        }
        assert_eq!(landing(&acme, Some("//evil")), "/companies/acme/members");
        assert_eq!(landing(&acme, None), "/companies/acme/members");
        assert_eq!(
            landing(&Principal::Operator, Some("/companies/globex/members")),
            "/companies/globex/members"
        );
        assert_eq!(landing(&Principal::Operator, Some("https://evil")), "/");
    }

    #[test]
    fn the_login_location_encodes_the_target() {
        assert_eq!(
            login_location("/companies/acme/members?color=red&reason=x"),
            "/login?next=%2Fcompanies%2Facme%2Fmembers%3Fcolor%3Dred%26reason%3Dx"
        );
    }
}
