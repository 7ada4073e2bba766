//! The authorization-code redemption of the members' connect flow, on the `oauth2` crate
//! (the product brief names it; issue 17 §2), for both connectors.
//!
//! The crate builds the token request (grant, code, redirect URI, PKCE verifier, client
//! credentials in the body) and parses the answer into its standard token response or the
//! connector's own error envelope (`TE`: Google's `error`/`error_description`, Entra's
//! with `error_codes`, `suberror`, `trace_id` and `correlation_id`). What the crate's
//! error type cannot carry, the HTTP status and headers that the status model reads
//! (`Retry-After`, the request id), is kept by the HTTP hook this module hands it: the
//! workspace's one reqwest client (its timeouts, no redirects, rustls on ring), the
//! request gate before the call and after the answer, and a bounded body read. The
//! connectors then map the evidence with the same tables as every other token answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, EmptyExtraTokenFields, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, StandardRevocableToken, StandardTokenResponse, TokenResponse,
    TokenUrl,
};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};

/// The trait a token-error type implements to be parsed by the `oauth2` crate.
pub use oauth2::ErrorResponse;

use crate::{Failure, Gate, OAuthClient, ThrottleScope, read_body, transport_failure};
use datacap_core::Outcome;

/// One code redemption.
pub struct CodeRedemption<'a> {
    /// The provider's token endpoint.
    pub token_url: &'a str,
    pub client: &'a OAuthClient,
    pub code: &'a str,
    pub redirect_uri: &'a str,
    /// The PKCE verifier of the flow's challenge.
    pub verifier: Option<&'a SecretString>,
    /// More form fields (Entra: `scope`).
    pub extra_params: &'a [(&'a str, &'a str)],
    /// More request headers (Entra: `client-request-id`).
    pub headers: &'a [(&'static str, String)],
    /// Bodies over this many bytes are refused (`provider_error`).
    pub max_body_bytes: usize,
    /// Who a `429`/`503` with `Retry-After` pauses.
    pub throttle_scope: ThrottleScope,
}

/// What the token endpoint issued.
pub struct CodeTokens {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    /// The granted scopes, space separated, as the provider listed them.
    pub scope: Option<String>,
    pub expires_in: Option<u64>,
    /// The answer's status and headers.
    pub answer: Answer,
}

impl std::fmt::Debug for CodeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeTokens")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("scope", &self.scope)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// The HTTP status and headers of the token endpoint's answer, and its body when it was
/// not a success (a success body holds tokens and is not kept).
#[derive(Clone, Debug, Default)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub error_body: Vec<u8>,
}

/// Why a redemption gave no tokens.
#[derive(Debug)]
pub enum CodeError<TE> {
    /// The endpoint answered, but not with a token: `error` is its envelope when the body
    /// is one (`None`: no body, another shape, or a success body that is not a token).
    Answered { answer: Answer, error: Option<TE> },
    /// No complete answer (transport error, a body cut short or over the limit), or a
    /// request that could not be built; already an outcome.
    Failed(Failure),
}

/// The hook's error: a failure already mapped to an outcome.
#[derive(Debug)]
struct HookFailure(Failure);

impl std::fmt::Display for HookFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for HookFailure {}

/// The `oauth2` crate's HTTP client: our reqwest client, the gate, the bounded body read,
/// and the answer's status and headers kept for the mapping. A type of its own rather
/// than a closure so that its future is plainly `Send` (a closure's async block is not
/// provably `Send` for every lifetime, which the connect flow's boxed future needs).
struct Hook<'a> {
    http: &'a reqwest::Client,
    gate: &'a Gate,
    headers: &'a [(&'static str, String)],
    max_body_bytes: usize,
    throttle_scope: ThrottleScope,
    seen: Mutex<Option<Answer>>,
}

impl<'c> oauth2::AsyncHttpClient<'c> for Hook<'_> {
    type Error = HookFailure;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HookFailure>> + Send + 'c>>;

    fn call(&'c self, sent: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = sent.into_parts();
            let mut builder = self
                .http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body);
            for (name, value) in self.headers {
                builder = builder.header(*name, value);
            }
            self.gate.ready().await;
            let response = builder
                .send()
                .await
                .map_err(|error| HookFailure(transport_failure(&error)))?;
            let status = response.status();
            let headers = response.headers().clone();
            self.gate
                .answered(status.as_u16(), &headers, self.throttle_scope);
            let body = read_body(response, self.max_body_bytes)
                .await
                .map_err(HookFailure)?;
            if let Ok(mut slot) = self.seen.lock() {
                *slot = Some(Answer {
                    status: status.as_u16(),
                    headers: headers.clone(),
                    error_body: if status == reqwest::StatusCode::OK {
                        Vec::new()
                    } else {
                        body.clone()
                    },
                });
            }
            let mut answer = oauth2::HttpResponse::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok(answer)
        })
    }
}

type CodeClient<TE> = oauth2::Client<
    TE,
    StandardTokenResponse<EmptyExtraTokenFields, BasicTokenType>,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn bad_request(what: &str) -> Failure {
    Failure::new(
        Outcome::ProviderError,
        format!("the code redemption cannot be sent: {what} is not a url"),
    )
}

/// Redeems an authorization code at `request.token_url` with `http` (one of
/// [`crate::build_client`]'s clients), taking `gate` before the request and telling it
/// the answer.
pub async fn redeem_code<TE>(
    http: &reqwest::Client,
    gate: &Gate,
    request: &CodeRedemption<'_>,
) -> Result<CodeTokens, CodeError<TE>>
where
    TE: ErrorResponse + Send + 'static,
{
    let token_url = TokenUrl::new(request.token_url.to_owned())
        .map_err(|_| CodeError::Failed(bad_request("the token endpoint")))?;
    let redirect_uri = RedirectUrl::new(request.redirect_uri.to_owned())
        .map_err(|_| CodeError::Failed(bad_request("the redirect uri")))?;
    let client: CodeClient<TE> =
        oauth2::Client::new(ClientId::new(request.client.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                request.client.client_secret.expose_secret().to_owned(),
            ))
            // In the form body, as both providers document it (and not HTTP Basic).
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(token_url)
            .set_redirect_uri(redirect_uri);
    let mut exchange = client.exchange_code(AuthorizationCode::new(request.code.to_owned()));
    if let Some(verifier) = request.verifier {
        exchange =
            exchange.set_pkce_verifier(PkceCodeVerifier::new(verifier.expose_secret().to_owned()));
    }
    for (name, value) in request.extra_params {
        exchange = exchange.add_extra_param(*name, *value);
    }
    let hook = Hook {
        http,
        gate,
        headers: request.headers,
        max_body_bytes: request.max_body_bytes,
        throttle_scope: request.throttle_scope,
        seen: Mutex::new(None),
    };
    let result = exchange.request_async(&hook).await;
    let answer = hook.seen.lock().ok().and_then(|mut kept| kept.take());
    match result {
        Ok(tokens) => Ok(CodeTokens {
            access_token: SecretString::from(tokens.access_token().secret().clone()),
            refresh_token: tokens
                .refresh_token()
                .map(|token| token.secret().clone())
                .filter(|token| !token.is_empty())
                .map(SecretString::from),
            scope: tokens.scopes().map(|scopes| {
                scopes
                    .iter()
                    .map(|scope| scope.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            expires_in: tokens.expires_in().map(|left| left.as_secs()),
            answer: answer.unwrap_or_default(),
        }),
        Err(RequestTokenError::Request(HookFailure(failure))) => Err(CodeError::Failed(failure)),
        Err(RequestTokenError::ServerResponse(error)) => Err(CodeError::Answered {
            answer: answer.unwrap_or_default(),
            error: Some(error),
        }),
        // A body that is neither a token nor the envelope, an empty body, or a success
        // that is not JSON: the evidence is the status (the parser's own message is not
        // kept: it can quote the body, i.e. a token).
        Err(RequestTokenError::Parse(..) | RequestTokenError::Other(_)) => match answer {
            Some(answer) => Err(CodeError::Answered {
                answer,
                error: None,
            }),
            None => Err(CodeError::Failed(Failure::new(
                Outcome::ProviderError,
                "the code redemption could not be sent",
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// The connect flow hands the redemption to the web crate inside a boxed `Send`
    /// future: it must stay `Send` whatever the lifetimes (a compile-time check).
    #[test]
    fn the_redemption_is_send() {
        let http = crate::build_client(&crate::HttpLimits::default()).expect("client");
        let gate = Gate::open();
        let client = OAuthClient {
            client_id: "client".to_owned(),
            client_secret: SecretString::from("secret"),
            tenant: None,
        };
        let request = CodeRedemption {
            token_url: "http://127.0.0.1:9/token",
            client: &client,
            code: "code",
            redirect_uri: "http://127.0.0.1:9/callback",
            verifier: None,
            extra_params: &[],
            headers: &[],
            max_body_bytes: 1024,
            throttle_scope: ThrottleScope::App,
        };
        let redemption = redeem_code::<oauth2::basic::BasicErrorResponse>(&http, &gate, &request);
        assert_send(&redemption);
    }
}
