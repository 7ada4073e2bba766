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

mod authorize;
mod invite;
mod redeem;
#[cfg(test)]
mod tests;

pub(crate) use authorize::start;
pub use invite::{CheckedInvite, InviteKey, InviteProblem};
pub(crate) use redeem::callback;

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

/// The path segment of a provider in connect URLs.
pub fn provider_segment(provider: Provider) -> &'static str {
    match provider {
        Provider::GoogleWorkspace => "google",
        Provider::Microsoft365 => "microsoft",
        Provider::None => "none",
    }
}

pub(super) fn provider_of_segment(segment: &str) -> Option<Provider> {
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

pub(super) fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

#[derive(askama::Template)]
#[template(path = "connect_result.html")]
pub(super) struct ConnectResult<'a> {
    title: &'a str,
    text: &'a str,
    details: &'a [&'a str],
    class: &'a str,
    /// `connected` or `refused`, for tests and styling.
    outcome: &'a str,
}

/// A page of the connect flow, for the member who followed their link.
pub(super) fn member_page(
    status: StatusCode,
    title: &str,
    text: &str,
    details: &[&str],
) -> Response {
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
pub(super) const CONTACT_ADMIN: &str = "If it fails again, contact your datacap admin (whoever sent you the link) and tell them what this page says.";

pub(super) fn refused(status: StatusCode, text: &str) -> Response {
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
pub(super) fn store_failure(error: &datacap_store::StoreError) -> Response {
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

/// The member's job context while they are still an active member of `company`; else the
/// refusal (404) that says `unknown`.
pub(super) async fn member_context(
    app: &crate::App,
    company: &str,
    member: &str,
    unknown: &str,
) -> Result<datacap_store::JobContext, Response> {
    match app.store.job_context(member).await {
        Ok(Some(context)) if context.company_id == company && context.active => Ok(context),
        Ok(_) => Err(refused(StatusCode::NOT_FOUND, unknown)),
        Err(error) => Err(store_failure(&error)),
    }
}

/// The app's connect flow and the provider a path segment names, or the member's page
/// saying why there is none.
pub(super) fn flow_of<'a>(
    app: &'a crate::App,
    segment: &str,
) -> Result<(&'a ConnectSetup, Provider), Response> {
    let Some(setup) = app.connect.as_ref() else {
        return Err(refused(StatusCode::NOT_FOUND, "Connecting is not set up."));
    };
    let Some(provider) = provider_of_segment(segment) else {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "datacap connects Google Workspace (google) and Microsoft 365 (microsoft) only.",
        ));
    };
    Ok((setup, provider))
}

/// The app, when it has a connect flow.
pub(super) fn setup_of(state: &WebState) -> Result<Arc<crate::App>, Response> {
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
