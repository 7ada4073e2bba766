//! The members' connect flow (user-by-user companies):
//!
//! 1. A member opens their personal connect link, `/connect/{provider}/start?invite=…`.
//!    The invite is an HMAC-signed, expiring token naming company and member (the key is
//!    `[web]`'s signing key), so nobody can make a link for someone else.
//! 2. `start` stores a single-use, expiring `state` (only its SHA-256; `connect_states`)
//!    with a sealed PKCE verifier, and redirects to the provider's authorize URL (built by
//!    the `oauth2` crate) with the S256 challenge and the member's address as login hint.
//! 3. `callback` takes the state back (once: a replay finds nothing), checks it has not
//!    expired and names this provider, that the member and the link it started from still
//!    hold (not revoked or expired meanwhile), refuses a provider error (`access_denied`), redeems
//!    the code with the verifier (through [`Exchange`], which the binary implements with
//!    the connectors), checks that the account the provider says signed in is the
//!    member's (its primary address or a known alias from the tenants file) and the
//!    granted scopes. Only then does it store the sealed refresh
//!    token (the member becomes connected) and make the member due for an immediate poll.
//!
//! Every refusal is a page saying what happened and what to do; none stores a grant. The
//! pages of the flow are the member's own (`connect_result.html`): the member is no
//! datacap user, so they say what to do next or whom to contact (their admin), and never
//! link to the operator's sign-in.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datacap_core::{ConnectionMode, MemberConnection, Provider};
use datacap_store::{EncryptionKey, NewConnectState};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;

use crate::WebState;
use crate::auth::{b64, random_bytes, sign, unb64, verify};
use crate::page::render;

/// What a code exchange gave.
pub struct Exchanged {
    pub refresh_token: SecretString,
    /// The scopes the member granted.
    pub scopes: Vec<String>,
    /// Who signed in, as the provider's own identity endpoint says with the new token.
    pub identity: Identity,
}

/// The account a code exchange signed in, as the mailbox itself reports it with the new
/// access token (Google `tokeninfo`'s verified `email`; Graph `/me` and the token's `tid`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// Its addresses: Gmail's `emailAddress`; Graph's `mail` and `userPrincipalName`.
    pub addresses: Vec<String>,
    /// Microsoft: the tenant (`tid`) of the access token.
    pub tenant_id: Option<String>,
}

/// The client the connect flow signs a company's members in with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignIn {
    pub client_id: String,
    /// The provider's authorize endpoint (Microsoft: the company's tenant when known).
    pub authorize_url: String,
}

/// A code exchange the provider refused or that failed; the text is for the log and the
/// page, and never holds a secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExchangeError(pub String);

/// A boxed future, as [`Exchange`] returns.
pub type ExchangeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Exchanged, ExchangeError>> + Send + 'a>>;

/// Redeems an authorization code with its PKCE verifier and learns who signed in (the
/// binary implements it with the Google and Microsoft connectors and the providers'
/// identity endpoints; tests with the sim behind them).
pub trait Exchange: Send + Sync {
    /// The client a company signs in with, from its credential references (the tenants
    /// file): its own OAuth client and (Microsoft) tenant when it has them; `None` keeps
    /// the [`ConnectProvider`]'s defaults.
    fn sign_in(
        &self,
        _provider: Provider,
        _credential_refs: &BTreeMap<String, String>,
    ) -> Option<SignIn> {
        None
    }

    /// Redeems `code` with the client [`Exchange::sign_in`] chose for the company, then
    /// asks the provider whose mailbox the new token opens.
    fn exchange<'a>(
        &'a self,
        provider: Provider,
        credential_refs: &'a BTreeMap<String, String>,
        code: &'a str,
        redirect_uri: &'a str,
        verifier: &'a SecretString,
    ) -> ExchangeFuture<'a>;
}

/// One provider's side of the flow.
#[derive(Clone, Debug)]
pub struct ConnectProvider {
    /// The provider's authorize endpoint.
    pub authorize_url: String,
    pub client_id: String,
    /// Scopes requested, space separated.
    pub scope: String,
    /// Scopes the grant must include (compared without Graph's URL prefix, ignoring case).
    pub required_scopes: Vec<String>,
    /// Extra authorize parameters (Google: `access_type=offline`, `prompt=consent`).
    pub extra: Vec<(String, String)>,
}

/// Signs and checks the members' personal connect links.
pub struct InviteKey {
    key: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for InviteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InviteKey([redacted])")
    }
}

/// Why an invite does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteProblem {
    Malformed,
    BadSignature,
    Expired,
}

impl InviteKey {
    pub fn new(key: [u8; 32]) -> InviteKey {
        InviteKey {
            key: SecretBox::new(Box::new(key)),
        }
    }

    /// An invite for (`company`, `member`) issued now and valid until `expires_at`.
    pub fn invite(&self, company: &str, member: &str, expires_at: OffsetDateTime) -> String {
        self.invite_issued(company, member, OffsetDateTime::now_utc(), expires_at)
    }

    /// An invite for (`company`, `member`) issued at `issued_at` (a revocation voids the
    /// invites issued before it) and valid until `expires_at`.
    pub fn invite_issued(
        &self,
        company: &str,
        member: &str,
        issued_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> String {
        let payload = format!(
            "{}.{}.{}.{}",
            b64(company.as_bytes()),
            b64(member.as_bytes()),
            expires_at.unix_timestamp(),
            issued_at.unix_timestamp()
        );
        let signature = sign(self.key.expose_secret(), "invite", &payload);
        format!("{payload}.{}", b64(&signature))
    }

    /// The value of the connect cookie that binds `state` to the browser that started the
    /// flow: an HMAC of the state, so the callback checks it without reading anything.
    pub fn binding(&self, state: &str) -> String {
        b64(&sign(self.key.expose_secret(), "connect-binding", state))
    }

    fn binding_holds(&self, state: &str, cookie: &str) -> bool {
        unb64(cookie).is_some_and(|signature| {
            verify(
                self.key.expose_secret(),
                "connect-binding",
                state,
                &signature,
            )
        })
    }

    /// A member's personal connect link on the server at `public_url`.
    pub fn link(
        &self,
        public_url: &str,
        provider: Provider,
        company: &str,
        member: &str,
        expires_at: OffsetDateTime,
    ) -> String {
        format!(
            "{}/connect/{}/start?invite={}",
            public_url.trim_end_matches('/'),
            provider_segment(provider),
            self.invite(company, member, expires_at)
        )
    }

    /// The (company, member) of a valid invite.
    pub fn check(
        &self,
        invite: &str,
        now: OffsetDateTime,
    ) -> Result<(String, String), InviteProblem> {
        self.check_issued(invite, now)
            .map(|(company, member, _)| (company, member))
    }

    /// The (company, member, issue time in Unix seconds) of a valid invite; links made
    /// before invites carried their issue time count as issued at the beginning of time,
    /// so any revocation voids them.
    pub fn check_issued(
        &self,
        invite: &str,
        now: OffsetDateTime,
    ) -> Result<(String, String, i64), InviteProblem> {
        self.check_invite(invite, now)
            .map(|checked| (checked.company, checked.member, checked.issued))
    }

    /// A valid invite, with its issue and expiry times.
    pub fn check_invite(
        &self,
        invite: &str,
        now: OffsetDateTime,
    ) -> Result<CheckedInvite, InviteProblem> {
        let (payload, signature) = invite.rsplit_once('.').ok_or(InviteProblem::Malformed)?;
        let signature = unb64(signature).ok_or(InviteProblem::Malformed)?;
        if !verify(self.key.expose_secret(), "invite", payload, &signature) {
            return Err(InviteProblem::BadSignature);
        }
        let mut parts = payload.split('.');
        let text = |part: Option<&str>| {
            part.and_then(unb64)
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or(InviteProblem::Malformed)
        };
        let company = text(parts.next())?;
        let member = text(parts.next())?;
        let expires: i64 = parts
            .next()
            .and_then(|e| e.parse().ok())
            .ok_or(InviteProblem::Malformed)?;
        let issued: i64 = match parts.next() {
            None => i64::MIN,
            Some(text) => text.parse().map_err(|_| InviteProblem::Malformed)?,
        };
        if parts.next().is_some() {
            return Err(InviteProblem::Malformed);
        }
        if expires <= now.unix_timestamp() {
            return Err(InviteProblem::Expired);
        }
        Ok(CheckedInvite {
            company,
            member,
            issued,
            expires,
        })
    }
}

/// What a valid invite names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedInvite {
    pub company: String,
    pub member: String,
    /// Unix seconds (`i64::MIN` for links made before invites carried it).
    pub issued: i64,
    /// Unix seconds.
    pub expires: i64,
}

/// The path segment of a provider in connect URLs.
pub fn provider_segment(provider: Provider) -> &'static str {
    match provider {
        Provider::GoogleWorkspace => "google",
        Provider::Microsoft365 => "microsoft",
        Provider::None => "none",
    }
}

fn provider_of_segment(segment: &str) -> Option<Provider> {
    match segment {
        "google" => Some(Provider::GoogleWorkspace),
        "microsoft" => Some(Provider::Microsoft365),
        _ => None,
    }
}

/// Everything the connect flow needs.
pub struct ConnectSetup {
    /// Where members reach this server (`https://datacap.example.com`), for the
    /// redirect URI and the connect links.
    pub public_url: String,
    pub invites: InviteKey,
    /// How long the connect links the member page hands out live (`web.invite_ttl`).
    pub invite_ttl: time::Duration,
    /// How long a pending sign-in (`state`) lives.
    pub state_ttl: time::Duration,
    /// Seals PKCE verifiers and refresh tokens.
    pub key: EncryptionKey,
    pub google: Option<ConnectProvider>,
    pub microsoft: Option<ConnectProvider>,
    pub exchange: Arc<dyn Exchange>,
    /// Mails connect reminders from the page (the `[smtp]` relay); `None` when mail is
    /// not set up, which the reminders page says.
    pub mailer: Option<Arc<dyn crate::remind::Mailer>>,
}

impl ConnectSetup {
    /// A member's personal connect link on this server, valid until `expires_at`.
    pub fn link(
        &self,
        provider: Provider,
        company: &str,
        member: &str,
        expires_at: OffsetDateTime,
    ) -> String {
        self.invites
            .link(&self.public_url, provider, company, member, expires_at)
    }

    fn provider(&self, provider: Provider) -> Option<&ConnectProvider> {
        match provider {
            Provider::GoogleWorkspace => self.google.as_ref(),
            Provider::Microsoft365 => self.microsoft.as_ref(),
            Provider::None => None,
        }
    }

    /// The redirect URI registered with the provider for this server.
    pub fn redirect_uri(&self, provider: Provider) -> String {
        format!(
            "{}/connect/{}/callback",
            self.public_url.trim_end_matches('/'),
            provider_segment(provider)
        )
    }
}

/// The cookie that binds a pending sign-in to the browser that started it.
pub const CONNECT_COOKIE: &str = "datacap_connect";

fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

#[derive(askama::Template)]
#[template(path = "connect_result.html")]
struct ConnectResult<'a> {
    title: &'a str,
    text: &'a str,
    details: &'a [&'a str],
    class: &'a str,
    /// `connected` or `refused`, for tests and styling.
    outcome: &'a str,
}

/// A page of the connect flow, for the member who followed their link.
fn member_page(status: StatusCode, title: &str, text: &str, details: &[&str]) -> Response {
    let (class, outcome) = if status.is_success() {
        ("", "connected")
    } else {
        ("error", "refused")
    };
    render(
        status,
        &ConnectResult {
            title,
            text,
            details,
            class,
            outcome,
        },
    )
}

/// Whom a member turns to when the flow fails.
const CONTACT_ADMIN: &str = "If it fails again, contact your datacap admin (whoever sent you the link) and tell them what this page says.";

fn refused(status: StatusCode, text: &str) -> Response {
    member_page(
        status,
        "Not connected",
        text,
        &[
            "Nothing was stored. Open your personal connect link again to retry, or ask your admin for a new one.",
            CONTACT_ADMIN,
        ],
    )
}

/// A store failure during the flow, for the member: 404 for a company or member datacap
/// does not know, else 500 (the detail goes to the log, for the operator).
fn store_failure(error: &datacap_store::StoreError) -> Response {
    use datacap_store::StoreError;
    match error {
        StoreError::UnknownCompany { .. } | StoreError::UnknownMember { .. } => refused(
            StatusCode::NOT_FOUND,
            "This connect link names a member datacap does not know (any more).",
        ),
        other => {
            tracing::error!(error = %other, "the store failed during the connect flow");
            member_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Not connected",
                "datacap could not read or save your connection just now. Nothing was stored.",
                &[
                    "Try your personal connect link again in a few minutes.",
                    CONTACT_ADMIN,
                ],
            )
        }
    }
}

/// The app, when it has a connect flow.
fn setup_of(state: &WebState) -> Result<Arc<crate::App>, Response> {
    let not_set_up = || {
        member_page(
            StatusCode::NOT_FOUND,
            "Connecting is not set up",
            "This datacap cannot connect accounts yet, so your link does not work here.",
            &[
                "Nothing was stored. Contact your datacap admin (whoever sent you the link): their operator sets up the connect flow ([web] signing key, public_url, [encryption] and the providers' OAuth clients).",
            ],
        )
    };
    let app = crate::page::app_of(state).map_err(|_| not_set_up())?;
    if app.connect.is_none() {
        return Err(not_set_up());
    }
    Ok(app)
}

/// `GET /connect/{provider}/start?invite=…`.
pub(crate) async fn start(
    State(state): State<WebState>,
    Path(segment): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let app = match setup_of(&state) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(setup) = app.connect.as_ref() else {
        return refused(StatusCode::NOT_FOUND, "Connecting is not set up.");
    };
    let Some(provider) = provider_of_segment(&segment) else {
        return refused(
            StatusCode::NOT_FOUND,
            "datacap connects Google Workspace (google) and Microsoft 365 (microsoft) only.",
        );
    };
    let Some(client) = setup.provider(provider) else {
        return refused(
            StatusCode::NOT_FOUND,
            &format!(
                "Connecting to {} is not set up on this datacap.",
                provider.display_name()
            ),
        );
    };
    let now = OffsetDateTime::now_utc();
    let Some(invite) = query.get("invite") else {
        return refused(
            StatusCode::BAD_REQUEST,
            "This link has no invite: use the personal connect link your admin sent you.",
        );
    };
    let CheckedInvite {
        company: company_id,
        member: member_id,
        issued,
        expires: invite_expires,
    } = match setup.invites.check_invite(invite, now) {
        Ok(found) => found,
        Err(InviteProblem::Expired) => {
            return refused(StatusCode::FORBIDDEN, "This connect link has expired.");
        }
        Err(_) => {
            return refused(StatusCode::FORBIDDEN, "This connect link is not valid.");
        }
    };
    let context = match app.store.job_context(&member_id).await {
        Ok(Some(context)) if context.company_id == company_id && context.active => context,
        Ok(_) => {
            return refused(
                StatusCode::NOT_FOUND,
                "This connect link names a member datacap does not know (any more).",
            );
        }
        Err(error) => return store_failure(&error),
    };
    if context.company.connection_mode != ConnectionMode::UserByUser {
        return refused(
            StatusCode::BAD_REQUEST,
            "Your company connects for everyone at once: there is nothing for you to connect.",
        );
    }
    // A link connects once, and an admin can void a member's links (`datacap
    // revoke-invites`): links issued before the member's revocation time, or in the same
    // second (issue times are whole seconds), are refused.
    match app.store.invites_not_before(&member_id).await {
        Ok(Some(not_before)) if issued <= not_before.unix_timestamp() => {
            tracing::info!(company = %company_id, member = %member_id, "a revoked or used connect link was refused");
            return refused(
                StatusCode::FORBIDDEN,
                "This connect link was revoked or has been used already: ask your admin for a new one.",
            );
        }
        Ok(_) => {}
        Err(error) => return store_failure(&error),
    }
    if context.company.provider != provider {
        return refused(
            StatusCode::BAD_REQUEST,
            &format!(
                "Your company uses {}, not {}.",
                context.company.provider.display_name(),
                provider.display_name()
            ),
        );
    }
    let (state_bytes, verifier_bytes) = match (random_bytes(), random_bytes()) {
        (Ok(state), Ok(verifier)) => (state, verifier),
        _ => {
            return refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "datacap could not make a sign-in request.",
            );
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
        return store_failure(&error);
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
        return refused(
            StatusCode::NOT_FOUND,
            &format!(
                "Connecting to {} is not set up for your company yet: your admin must configure its OAuth client.",
                provider.display_name()
            ),
        );
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
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "Connecting to {} is misconfigured on this datacap: its {what} is not a URL.",
                    provider.display_name()
                ),
            );
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
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response()
}

/// What the provider's authorize URL carries.
struct AuthorizeRequest<'a> {
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
fn authorize_location(request: &AuthorizeRequest<'_>) -> Result<String, &'static str> {
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

/// A granted scope in the form the required list uses.
fn normalized(scope: &str) -> String {
    scope
        .strip_prefix("https://graph.microsoft.com/")
        .unwrap_or(scope)
        .to_ascii_lowercase()
}

/// `GET /connect/{provider}/callback?state=…&code=…` (or `&error=…`).
pub(crate) async fn callback(
    State(state): State<WebState>,
    Path(segment): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let app = match setup_of(&state) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(setup) = app.connect.as_ref() else {
        return refused(StatusCode::NOT_FOUND, "Connecting is not set up.");
    };
    let Some(provider) = provider_of_segment(&segment) else {
        return refused(
            StatusCode::NOT_FOUND,
            "datacap connects Google Workspace (google) and Microsoft 365 (microsoft) only.",
        );
    };
    let Some(state_text) = query.get("state").filter(|s| !s.is_empty()) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "The provider's answer carries no state.",
        );
    };
    // Before any read: the sign-in must have been started in this browser.
    let bound = crate::auth::cookie(&headers, CONNECT_COOKIE)
        .is_some_and(|cookie| setup.invites.binding_holds(state_text, &cookie));
    if !bound {
        tracing::warn!(provider = %provider, "connect callback without the browser's binding cookie refused");
        return refused(
            StatusCode::BAD_REQUEST,
            "This sign-in was not started in this browser: open your personal connect link here and sign in again.",
        );
    }
    let pending = match app
        .store
        .take_connect_state(&state_hash(state_text), &setup.key)
        .await
    {
        Ok(Some(pending)) => pending,
        Ok(None) => {
            tracing::info!(provider = %provider, "connect callback with an unknown or used state");
            return refused(
                StatusCode::BAD_REQUEST,
                "This sign-in was already completed or was not started by datacap.",
            );
        }
        Err(error) => return store_failure(&error),
    };
    let now = OffsetDateTime::now_utc();
    if pending.expires_at <= now {
        return refused(
            StatusCode::BAD_REQUEST,
            "This sign-in took too long and has expired.",
        );
    }
    if pending.provider != provider {
        return refused(
            StatusCode::BAD_REQUEST,
            "This sign-in was started for another provider.",
        );
    }
    let (company, member) = (pending.company_id.as_str(), pending.member_id.as_str());
    // What `start` checked may have changed meanwhile: check it again before redeeming.
    let context = match app.store.job_context(member).await {
        Ok(Some(context)) if context.company_id == company && context.active => context,
        Ok(_) => {
            return refused(
                StatusCode::NOT_FOUND,
                "datacap does not know this member (any more).",
            );
        }
        Err(error) => return store_failure(&error),
    };
    if context.company.connection_mode != ConnectionMode::UserByUser
        || context.company.provider != provider
    {
        return refused(
            StatusCode::BAD_REQUEST,
            "Your company no longer connects member by member with this provider.",
        );
    }
    // The link the sign-in started from must still hold: it may have expired, or been
    // revoked (`datacap revoke-invites`, or used to connect in another tab) meanwhile.
    if pending
        .invite_expires
        .is_some_and(|expires| expires <= now.unix_timestamp())
    {
        tracing::info!(company, member, provider = %provider, "connect callback refused: the link it started from expired meanwhile");
        return refused(
            StatusCode::FORBIDDEN,
            "The connect link you started from expired while you were signing in: ask your admin for a new one.",
        );
    }
    match app.store.invites_not_before(member).await {
        Ok(Some(not_before))
            if pending.invite_issued.unwrap_or(i64::MIN) <= not_before.unix_timestamp() =>
        {
            tracing::info!(company, member, provider = %provider, "connect callback refused: the link it started from was revoked or used meanwhile");
            return refused(
                StatusCode::FORBIDDEN,
                "The connect link you started from was revoked, or used to connect, while you were signing in: ask your admin for a new one.",
            );
        }
        Ok(_) => {}
        Err(error) => return store_failure(&error),
    }
    if let Some(error) = query.get("error") {
        tracing::info!(company, member, provider = %provider, error = %error, "connect flow refused by the provider");
        let text = if error == "access_denied" {
            format!(
                "You declined access at {}, so datacap cannot import your email and calendar.",
                provider.display_name()
            )
        } else {
            format!(
                "{} answered with the error {error:?}.",
                provider.display_name()
            )
        };
        return refused(StatusCode::BAD_REQUEST, &text);
    }
    let Some(code) = query.get("code").filter(|c| !c.is_empty()) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "The provider's answer carries no authorization code.",
        );
    };
    let Some(client) = setup.provider(provider) else {
        return refused(
            StatusCode::NOT_FOUND,
            "Connecting to this provider is not set up.",
        );
    };
    let redirect_uri = setup.redirect_uri(provider);
    let grant = match setup
        .exchange
        .exchange(
            provider,
            &context.credential_refs,
            code,
            &redirect_uri,
            &pending.verifier,
        )
        .await
    {
        Ok(grant) => grant,
        Err(error) => {
            tracing::warn!(company, member, provider = %provider, %error, "connect code exchange failed");
            return refused(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "{} did not accept the sign-in: {error}",
                    provider.display_name()
                ),
            );
        }
    };
    // The member's known aliases (the tenants file's `aliases`) count as the member's.
    let aliases = match app.store.member_aliases(member).await {
        Ok(aliases) => aliases,
        Err(error) => return store_failure(&error),
    };
    if let Err(problem) = whose_mailbox(
        &grant.identity,
        &context.member_email,
        &aliases,
        context.credential_refs.get("tenant_id").map(String::as_str),
    ) {
        let signed_in = grant.identity.addresses.first().map_or("", String::as_str);
        tracing::warn!(
            company,
            member,
            provider = %provider,
            signed_in,
            signed_in_tenant = grant.identity.tenant_id.as_deref(),
            "connect flow refused: the account that signed in is not the member's"
        );
        let text = match problem {
            Mismatch::Address => format!(
                "You signed in as {}, but this link is for {}. Sign out at {} and sign in as {}.",
                if signed_in.is_empty() {
                    "an account without an address"
                } else {
                    signed_in
                },
                context.member_email,
                provider.display_name(),
                context.member_email
            ),
            Mismatch::Tenant => format!(
                "You signed in with an account of another organization than your company's. Sign in as {} with your work account.",
                context.member_email
            ),
        };
        return refused(StatusCode::FORBIDDEN, &text);
    }
    let granted: Vec<String> = grant.scopes.iter().map(|s| normalized(s)).collect();
    let missing: Vec<&str> = client
        .required_scopes
        .iter()
        .filter(|needed| !granted.contains(&normalized(needed)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        tracing::info!(company, member, provider = %provider, missing = ?missing, "connect flow lacks scopes");
        return refused(
            StatusCode::BAD_REQUEST,
            &format!(
                "Access was granted without {}: tick every permission on {}'s consent screen.",
                missing.join(", "),
                provider.display_name()
            ),
        );
    }
    if let Err(error) = app
        .store
        .put_member_grant(
            member,
            MemberConnection::Connected,
            &grant.scopes,
            Some(&grant.refresh_token),
            &setup.key,
            now,
        )
        .await
    {
        return store_failure(&error);
    }
    if let Err(error) = app.store.make_due(member, None, now).await {
        tracing::warn!(company, member, %error, "connected, but the immediate poll could not be scheduled");
    }
    // The link has done its job: it (and every older one) connects nobody again.
    if let Err(error) = app.store.revoke_invites(member, now).await {
        tracing::warn!(company, member, %error, "connected, but the used connect link could not be voided");
    }
    tracing::info!(company, member, provider = %provider, "member connected");
    member_page(
        StatusCode::OK,
        "You’re connected",
        &format!(
            "{} is connected to {}: datacap imports your email and calendar from there, starting in a moment.",
            context.member_email,
            provider.display_name()
        ),
        &["You can close this tab: there is nothing else to do."],
    )
}

/// Why the signed-in account is not the member's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mismatch {
    /// None of its addresses is the member's.
    Address,
    /// Its Microsoft tenant is not the company's.
    Tenant,
}

/// The account that signed in must be the member's mailbox: one of its addresses is the
/// member's address or one of the member's known aliases (compared without case), and
/// (Microsoft, when the company's tenant is known) its `tid` is the company's tenant.
fn whose_mailbox(
    identity: &Identity,
    member_email: &str,
    member_aliases: &[String],
    company_tenant: Option<&str>,
) -> Result<(), Mismatch> {
    let members: Vec<&str> = std::iter::once(member_email)
        .chain(member_aliases.iter().map(String::as_str))
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .collect();
    if !identity.addresses.iter().any(|address| {
        members
            .iter()
            .any(|own| address.trim().eq_ignore_ascii_case(own))
    }) {
        return Err(Mismatch::Address);
    }
    if let Some(expected) = company_tenant
        && !identity
            .tenant_id
            .as_deref()
            .is_some_and(|tid| tid.eq_ignore_ascii_case(expected))
    {
        return Err(Mismatch::Tenant);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn invites_are_signed_bound_and_expire() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let key = InviteKey::new([3; 32]);
        let invite = key.invite("acme", "ana", now + time::Duration::days(1));
        assert_eq!(
            key.check(&invite, now),
            Ok(("acme".to_owned(), "ana".to_owned()))
        );
        assert_eq!(
            key.check(&invite, now + time::Duration::days(2)),
            Err(InviteProblem::Expired)
        );
        assert_eq!(
            InviteKey::new([4; 32]).check(&invite, now),
            Err(InviteProblem::BadSignature)
        );
        // Swapping the member keeps the signature of another payload: refused.
        let (payload, signature) = invite.rsplit_once('.').unwrap();
        let forged = payload.replace(&b64(b"ana"), &b64(b"bob"));
        assert_eq!(
            key.check(&format!("{forged}.{signature}"), now),
            Err(InviteProblem::BadSignature)
        );
        assert_eq!(key.check("nonsense", now), Err(InviteProblem::Malformed));
        // The issue time travels signed with the invite.
        let issued = key.invite_issued(
            "acme",
            "ana",
            now - time::Duration::hours(1),
            now + time::Duration::days(1),
        );
        assert_eq!(
            key.check_issued(&issued, now),
            Ok((
                "acme".to_owned(),
                "ana".to_owned(),
                (now - time::Duration::hours(1)).unix_timestamp()
            ))
        );
        assert!(!format!("{key:?}").contains('3'));
    }

    /// One row: the identity the provider reported, the member's address and the
    /// company's tenant, and the verdict.
    fn check(
        addresses: &[&str],
        tid: Option<&str>,
        member: &str,
        tenant: Option<&str>,
    ) -> Result<(), Mismatch> {
        check_aliased(addresses, tid, member, &[], tenant)
    }

    /// The same, with the member's known aliases.
    fn check_aliased(
        addresses: &[&str],
        tid: Option<&str>,
        member: &str,
        aliases: &[&str],
        tenant: Option<&str>,
    ) -> Result<(), Mismatch> {
        let identity = Identity {
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            tenant_id: tid.map(str::to_owned),
        };
        let aliases: Vec<String> = aliases.iter().map(|a| (*a).to_owned()).collect();
        whose_mailbox(&identity, member, &aliases, tenant)
    }

    #[test]
    fn a_known_alias_is_the_members_own_address() {
        const T: &str = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d";
        let peter = "peter@initech.example";
        let aliases = ["P.Gibbons@initech.example", "peter@initech-old.example"];
        // Google's tokeninfo reports the alias the member is declared under, case aside.
        assert_eq!(
            check_aliased(&["p.gibbons@initech.example"], None, peter, &aliases, None),
            Ok(())
        );
        assert_eq!(
            check_aliased(&["peter@initech-old.example"], None, peter, &aliases, None),
            Ok(())
        );
        // The primary address still counts beside the aliases.
        assert_eq!(check_aliased(&[peter], None, peter, &aliases, None), Ok(()));
        // An address that is neither.
        assert_eq!(
            check_aliased(&["mallory@initech.example"], None, peter, &aliases, None),
            Err(Mismatch::Address)
        );
        // An empty alias is no wildcard.
        assert_eq!(
            check_aliased(&[""], None, peter, &["", " "], None),
            Err(Mismatch::Address)
        );
        // Graph: the alias as `mail`; the tenant still decides.
        assert_eq!(
            check_aliased(
                &["megan.b@contoso.example", "0f1e@contoso.example"],
                Some(T),
                "megan@contoso.example",
                &["megan.b@contoso.example"],
                Some(T)
            ),
            Ok(())
        );
        assert_eq!(
            check_aliased(
                &["megan.b@contoso.example"],
                Some("00000000-0000-0000-0000-000000000001"),
                "megan@contoso.example",
                &["megan.b@contoso.example"],
                Some(T)
            ),
            Err(Mismatch::Tenant)
        );
    }

    #[test]
    fn only_the_members_own_mailbox_in_the_companys_tenant_is_accepted() {
        const T: &str = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d";
        // Gmail's emailAddress, case aside.
        assert_eq!(
            check(
                &["Peter@initech.example"],
                None,
                "peter@initech.example",
                None
            ),
            Ok(())
        );
        // A colleague (issue 17, finding 1).
        assert_eq!(
            check(
                &["mallory@initech.example"],
                None,
                "peter@initech.example",
                None
            ),
            Err(Mismatch::Address)
        );
        // No address at all is never the member.
        assert_eq!(
            check(&[], None, "peter@initech.example", None),
            Err(Mismatch::Address)
        );
        assert_eq!(check(&[""], None, "", None), Err(Mismatch::Address));
        // Graph: mail or userPrincipalName may be the member's address.
        assert_eq!(
            check(
                &["megan.b@contoso.example", "megan@contoso.example"],
                Some(T),
                "megan@contoso.example",
                Some(T)
            ),
            Ok(())
        );
        // The same address from another tenant (an outsider's look-alike account).
        assert_eq!(
            check(
                &["megan@contoso.example"],
                Some("00000000-0000-0000-0000-000000000001"),
                "megan@contoso.example",
                Some(T)
            ),
            Err(Mismatch::Tenant)
        );
        assert_eq!(
            check(
                &["megan@contoso.example"],
                None,
                "megan@contoso.example",
                Some(T)
            ),
            Err(Mismatch::Tenant)
        );
        // Without a known tenant only the address decides.
        assert_eq!(
            check(
                &["megan@contoso.example"],
                Some(T),
                "megan@contoso.example",
                None
            ),
            Ok(())
        );
    }

    #[test]
    fn the_binding_cookie_is_the_states_own() {
        let key = InviteKey::new([3; 32]);
        let cookie = key.binding("state-1");
        assert!(key.binding_holds("state-1", &cookie));
        assert!(!key.binding_holds("state-2", &cookie));
        assert!(!InviteKey::new([4; 32]).binding_holds("state-1", &cookie));
        assert!(!key.binding_holds("state-1", "garbage!"));
    }

    #[test]
    fn scopes_compare_without_the_graph_prefix() {
        assert_eq!(
            normalized("https://graph.microsoft.com/Mail.Read"),
            "mail.read"
        );
        assert_eq!(normalized("Mail.Read"), "mail.read");
    }
}
