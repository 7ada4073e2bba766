//! Signing in and out: the login form, the token check that opens a session, the page
//! that says why access was denied, and which principal a page request carries.

use super::*;

#[derive(Template)]
#[template(path = "login.html")]
pub(super) struct LoginPage<'a> {
    pub(super) error: Option<&'a str>,
    /// The page to land on after signing in (a safe relative path), carried by the form.
    pub(super) next: Option<&'a str>,
}

pub(super) fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    login_page_to(status, error, None)
}

pub(super) fn login_page_to(
    status: StatusCode,
    error: Option<&str>,
    next: Option<&str>,
) -> Response {
    let next = next.and_then(crate::signin::safe_next);
    render(status, &LoginPage { error, next })
}

/// A refused page request: 401 shows the sign-in form, 403 says whose data it is not.
pub(crate) fn denied(denied: Denied) -> Response {
    match denied {
        Denied::Unauthenticated => login_page(StatusCode::UNAUTHORIZED, None),
        Denied::Forbidden => message(
            StatusCode::FORBIDDEN,
            "Not your company",
            "Your token gives access to another company's page only.",
            None,
        ),
    }
}

/// The page's principal, checked to read `company` when given.
pub(crate) fn page_principal(
    app: &App,
    headers: &HeaderMap,
    company: Option<&str>,
) -> Result<Principal, Response> {
    let principal = app
        .auth
        .page(headers, OffsetDateTime::now_utc())
        .map_err(denied)?;
    if let Some(company) = company
        && !principal.may_read(company)
    {
        return Err(denied(Denied::Forbidden));
    }
    Ok(principal)
}

/// `GET /login[?next=/a/page]`.
pub(crate) async fn login_form(Query(query): Query<HashMap<String, String>>) -> Response {
    login_page_to(StatusCode::OK, None, query.get("next").map(String::as_str))
}

/// The sign-in form's body.
#[derive(serde::Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    /// Where to land once signed in (followed only when [`crate::signin::safe_next`]).
    #[serde(default)]
    next: Option<String>,
}

pub(crate) async fn login(
    State(state): State<WebState>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let app = match app_of(&state) {
        Ok(app) => app,
        Err(response) => return response,
    };
    // Not the sign-in form (another content type, no `token` field, a body over the
    // limit): the sign-in page again saying so, never the framework's plain text.
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            let too_large = rejection.status() == StatusCode::PAYLOAD_TOO_LARGE;
            return login_page(
                if too_large {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                },
                Some(if too_large {
                    "That was too long to be a token."
                } else {
                    "Sign in with the form: paste your token and press the button."
                }),
            );
        }
    };
    let Some(principal) = app.auth.principal_of_token(&form.token) else {
        tracing::info!("a sign-in with a wrong token was refused");
        return login_page_to(
            StatusCode::UNAUTHORIZED,
            Some("That token is not valid. Check it and try again."),
            form.next.as_deref(),
        );
    };
    let target = crate::signin::landing(&principal, form.next.as_deref());
    let cookie = app
        .auth
        .session_cookie(&principal, OffsetDateTime::now_utc());
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, target)],
    )
        .into_response()
}

pub(crate) async fn logout(State(state): State<WebState>) -> Response {
    let app = match app_of(&state) {
        Ok(app) => app,
        Err(response) => return response,
    };
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, app.auth.clear_cookie()),
            (header::LOCATION, "/login".to_owned()),
        ],
    )
        .into_response()
}
