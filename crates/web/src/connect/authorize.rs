//! `GET /connect/{provider}/start`: the invite checked, a single-use state stored (its
//! hash, with the sealed PKCE verifier) and bound to the browser by a cookie, and the
//! redirect to the provider's authorize URL (built by the `oauth2` crate).

use super::*;

/// `GET /connect/{provider}/start?invite=…`.
pub(crate) async fn start(
    State(state): State<WebState>,
    Path(segment): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Response> {
    let app = setup_of(&state)?;
    let (setup, provider) = flow_of(&app, &segment)?;
    let Some(client) = setup.provider(provider) else {
        return Err(refused(
            StatusCode::NOT_FOUND,
            &format!(
                "Connecting to {} is not set up on this datacap.",
                provider.display_name()
            ),
        ));
    };
    let now = OffsetDateTime::now_utc();
    let Some(invite) = query.get("invite") else {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "This link has no invite: use the personal connect link your admin sent you.",
        ));
    };
    let CheckedInvite {
        company: company_id,
        member: member_id,
        issued,
        expires: invite_expires,
    } = match setup.invites.check_invite(invite, now) {
        Ok(found) => found,
        Err(InviteProblem::Expired) => {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "This connect link has expired.",
            ));
        }
        Err(_) => {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "This connect link is not valid.",
            ));
        }
    };
    let unknown = "This connect link names a member datacap does not know (any more).";
    let context = member_context(&app, &company_id, &member_id, unknown).await?;
    if context.company.connection_mode != ConnectionMode::UserByUser {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "Your company connects for everyone at once: there is nothing for you to connect.",
        ));
    }
    // A link connects once, and an admin can void a member's links (`datacap
    // revoke-invites`): links issued before the member's revocation time, or in the same
    // second (issue times are whole seconds), are refused.
    match app.store.invites_not_before(&member_id).await {
        Ok(Some(not_before)) if issued <= not_before.unix_timestamp() => {
            tracing::info!(company = %company_id, member = %member_id, "a revoked or used connect link was refused");
            return Err(refused(
                StatusCode::FORBIDDEN,
                "This connect link was revoked or has been used already: ask your admin for a new one.",
            ));
        }
        Ok(_) => {}
        Err(error) => return Err(store_failure(&error)),
    }
    if context.company.provider != provider {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            &format!(
                "Your company uses {}, not {}.",
                context.company.provider.display_name(),
                provider.display_name()
            ),
        ));
    }
    let (state_bytes, verifier_bytes) = match (random_bytes(), random_bytes()) {
        (Ok(state), Ok(verifier)) => (state, verifier),
        _ => {
            return Err(refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "datacap could not make a sign-in request.",
            ));
        }
    };
    let state_text = b64(&state_bytes);
    let verifier = SecretString::from(b64(&verifier_bytes));
    let pending = NewConnectState {
        state_hash: &state_hash(&state_text),
        provider,
        company_id: &company_id,
        member_id: &member_id,
        verifier: &verifier,
        expires_at: now + setup.state_ttl,
        invite_issued: issued,
        invite_expires,
    };
    if let Err(error) = app.store.put_connect_state(&pending, &setup.key, now).await {
        return Err(store_failure(&error));
    }
    let redirect_uri = setup.redirect_uri(provider);
    let sign_in = setup
        .exchange
        .sign_in(provider, &context.credential_refs)
        .unwrap_or_else(|| SignIn {
            client_id: client.client_id.clone(),
            authorize_url: client.authorize_url.clone(),
        });
    if sign_in.client_id.is_empty() {
        tracing::warn!(company = %company_id, provider = %provider, "connect flow has no oauth client for this company");
        return Err(refused(
            StatusCode::NOT_FOUND,
            &format!(
                "Connecting to {} is not set up for your company yet: your admin must configure its OAuth client.",
                provider.display_name()
            ),
        ));
    }
    let location = match authorize_location(&AuthorizeRequest {
        sign_in: &sign_in,
        redirect_uri: &redirect_uri,
        scope: &client.scope,
        state: &state_text,
        verifier: &verifier,
        member_email: &context.member_email,
        // Google: only accounts of the member's own Workspace domain on the account
        // chooser (`hd`; a hint, checked for real after the exchange).
        hosted_domain: (provider == Provider::GoogleWorkspace)
            .then(|| {
                context
                    .member_email
                    .rsplit_once('@')
                    .map(|(_, domain)| domain)
            })
            .flatten(),
        extra: &client.extra,
    }) {
        Ok(location) => location,
        Err(what) => {
            tracing::warn!(company = %company_id, provider = %provider, what, "connect flow cannot build the authorize url");
            return Err(refused(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "Connecting to {} is misconfigured on this datacap: its {what} is not a URL.",
                    provider.display_name()
                ),
            ));
        }
    };
    tracing::info!(company = %company_id, member = %member_id, provider = %provider, "connect flow started");
    // `SameSite=Lax`: the provider's redirect back is a cross-site top-level navigation,
    // which a `Strict` cookie would not accompany.
    let cookie = format!(
        "{CONNECT_COOKIE}={}; Path=/connect/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        setup.invites.binding(&state_text),
        setup.state_ttl.whole_seconds().max(0),
        if setup.public_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        }
    );
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response())
}

/// What the provider's authorize URL carries.
pub(super) struct AuthorizeRequest<'a> {
    sign_in: &'a SignIn,
    redirect_uri: &'a str,
    /// Space separated.
    scope: &'a str,
    state: &'a str,
    /// The PKCE verifier (43 base64url characters of 32 random bytes); the URL carries
    /// its S256 challenge.
    verifier: &'a SecretString,
    member_email: &'a str,
    hosted_domain: Option<&'a str>,
    extra: &'a [(String, String)],
}

/// The provider's authorize URL with the request's parameters, built by the `oauth2`
/// crate (response type, client, redirect URI, scopes, state, the S256 challenge of the
/// verifier); `Err` names the value that is not a URL.
pub(super) fn authorize_location(request: &AuthorizeRequest<'_>) -> Result<String, &'static str> {
    use oauth2::{
        AuthUrl, ClientId, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    };
    let auth_url =
        AuthUrl::new(request.sign_in.authorize_url.clone()).map_err(|_| "authorize endpoint")?;
    let redirect_uri =
        RedirectUrl::new(request.redirect_uri.to_owned()).map_err(|_| "redirect URI")?;
    let client = oauth2::basic::BasicClient::new(ClientId::new(request.sign_in.client_id.clone()))
        .set_auth_uri(auth_url)
        .set_redirect_uri(redirect_uri);
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
        request.verifier.expose_secret().to_owned(),
    ));
    let state = request.state.to_owned();
    let mut authorize = client
        .authorize_url(|| CsrfToken::new(state))
        .add_scopes(
            request
                .scope
                .split_whitespace()
                .map(|s| Scope::new(s.to_owned())),
        )
        .set_pkce_challenge(challenge)
        .add_extra_param("login_hint", request.member_email);
    if let Some(domain) = request.hosted_domain {
        authorize = authorize.add_extra_param("hd", domain);
    }
    for (name, value) in request.extra {
        authorize = authorize.add_extra_param(name.as_str(), value.as_str());
    }
    let (url, _) = authorize.url();
    Ok(url.into())
}
