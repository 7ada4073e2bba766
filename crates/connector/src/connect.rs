//! A member connecting their own account (user-by-user): the provider redeems the
//! authorization code and says who signed in, so the connect flow can refuse a grant for
//! anyone but the member before it stores anything. Each provider implements
//! [`MemberConnect`]; the binary dispatches by provider and names none.

use std::future::Future;
use std::pin::Pin;

use datacap_core::{Outcome, Provider};
use secrecy::SecretString;

use crate::job::OAuthClient;

/// A member's new grant and who signed in, as the provider said.
pub struct ConnectedGrant {
    /// The member's refresh token (store it encrypted).
    pub refresh_token: SecretString,
    /// The scopes the member granted.
    pub scopes: Vec<String>,
    /// The signed-in account's verified addresses (Google: tokeninfo's `email` when
    /// verified; Graph: `/me`'s `mail` and `userPrincipalName`).
    pub addresses: Vec<String>,
    /// The signed-in account's tenant (Microsoft: the access token's `tid`).
    pub tenant_id: Option<String>,
}

impl std::fmt::Debug for ConnectedGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectedGrant")
            .field("refresh_token", &"[redacted]")
            .field("scopes", &self.scopes)
            .field("addresses", &self.addresses)
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

/// Why connecting failed. The message names what went wrong, never a code or a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectFailure {
    /// The provider refused the code (or its answer was not a grant): `outcome` is what the
    /// answer maps to, for the code-exchange metric.
    #[error("{message}")]
    Refused { outcome: Outcome, message: String },
    /// The code was redeemed, but the grant cannot be used: no refresh token, a token for
    /// another client, or who signed in could not be established.
    #[error("{message}")]
    Unusable { message: String },
}

impl ConnectFailure {
    /// The provider refused the code: `error` says how, `outcome` is what it maps to.
    pub fn refused(outcome: Outcome, error: &impl std::fmt::Display) -> ConnectFailure {
        ConnectFailure::Refused {
            outcome,
            message: error.to_string(),
        }
    }
}

/// An authorization code to redeem: for which client, at the redirect URI it was issued
/// for, with the flow's PKCE verifier.
#[derive(Clone, Copy)]
pub struct CodeRedemption<'a> {
    pub client: &'a OAuthClient,
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub verifier: &'a SecretString,
}

/// The future a connect returns.
pub type ConnectFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ConnectedGrant, ConnectFailure>> + Send + 'a>>;

/// A provider's OAuth facts for a member's sign-in: where the browser is sent and what it
/// asks for. They belong to the provider's crate, so the binary and the web crate name no
/// provider's scopes or endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizeFacts {
    /// The provider's authorize endpoint.
    pub authorize_url: String,
    /// The scopes requested, space separated.
    pub scope: String,
    /// The scopes a grant must include to import both channels (compared without Graph's
    /// URL prefix, ignoring case).
    pub required_scopes: Vec<String>,
    /// Extra authorize parameters (Google: `access_type=offline`, `prompt=consent`).
    pub extra: Vec<(String, String)>,
}

/// A provider's side of the connect flow.
pub trait MemberConnect: Send + Sync {
    /// The provider this is.
    fn provider(&self) -> Provider;

    /// What the member's sign-in asks the provider for; `tenant` is the Entra tenant
    /// segment of the client (Microsoft only; `None`: `organizations`).
    fn authorize(&self, tenant: Option<&str>) -> AuthorizeFacts;

    /// Redeems the code (with the flow's PKCE verifier) for its client, then asks the
    /// provider who signed in.
    fn connect<'a>(&'a self, code: CodeRedemption<'a>) -> ConnectFuture<'a>;
}

/// Sends `request` (an identity read made with the new access token) and returns its JSON
/// answer, at most `max_body_bytes` long. Errors say `what` could not be read and why,
/// never the URL or the token.
pub async fn identity_call(
    request: reqwest::RequestBuilder,
    what: &str,
    max_body_bytes: usize,
) -> Result<serde_json::Value, ConnectFailure> {
    let failed = |detail: String| ConnectFailure::Unusable {
        message: format!("{what} could not be read: {detail}"),
    };
    let answer = request
        .send()
        .await
        .map_err(|error| failed(error.without_url().to_string()))?;
    let status = answer.status();
    if !status.is_success() {
        return Err(failed(format!("http {}", status.as_u16())));
    }
    let bytes = crate::http::read_body(answer, max_body_bytes)
        .await
        .map_err(|_| failed("the answer could not be read".to_owned()))?;
    serde_json::from_slice(&bytes).map_err(|_| failed("the answer is not json".to_owned()))
}
