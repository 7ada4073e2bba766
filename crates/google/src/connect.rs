//! Google's side of the connect flow: redeem the member's code, then ask Google's
//! `tokeninfo` whose account the new access token opens (its `email` scope) and that it
//! was issued to our client. Not Gmail's own profile: a mailbox whose Gmail is off or
//! blocked by policy must still connect, so that its import shows why.

use datacap_connector::{
    AuthorizeFacts, CodeRedemption, ConnectFailure, ConnectFuture, ConnectedGrant, MemberConnect,
};
use datacap_core::Provider;
use secrecy::ExposeSecret;

use crate::{CALENDAR_SCOPE, GMAIL_SCOPE, GoogleConnector};

/// The largest tokeninfo answer read.
const IDENTITY_BODY_BYTES: usize = 1024 * 1024;

/// Google's tokeninfo endpoint on the token endpoint's host: `…/token` → `…/tokeninfo`
/// (`https://oauth2.googleapis.com/tokeninfo`; the sim's `{base}/google/tokeninfo`).
pub(crate) fn tokeninfo_url(token_url: &str) -> String {
    let base = token_url.trim_end_matches('/');
    match base.strip_suffix("/token") {
        Some(host) => format!("{host}/tokeninfo"),
        None => format!("{base}info"),
    }
}

impl MemberConnect for GoogleConnector {
    fn provider(&self) -> Provider {
        Provider::GoogleWorkspace
    }

    /// Gmail and Calendar read-only, plus `email` (the connect flow reads who signed in
    /// from tokeninfo); `access_type=offline` with `prompt=consent`, so Google returns a
    /// refresh token on every sign-in, not only the first.
    fn authorize(&self, _tenant: Option<&str>) -> AuthorizeFacts {
        AuthorizeFacts {
            authorize_url: self.inner.config.authorize_url.clone(),
            scope: format!("{GMAIL_SCOPE} {CALENDAR_SCOPE} email"),
            required_scopes: vec![GMAIL_SCOPE.to_owned(), CALENDAR_SCOPE.to_owned()],
            extra: vec![
                ("access_type".to_owned(), "offline".to_owned()),
                ("prompt".to_owned(), "consent".to_owned()),
            ],
        }
    }

    fn connect<'a>(&'a self, code: CodeRedemption<'a>) -> ConnectFuture<'a> {
        Box::pin(async move {
            let grant = self
                .exchange_code(
                    code.client,
                    code.code,
                    code.redirect_uri,
                    Some(code.verifier),
                )
                .await
                .map_err(|error| ConnectFailure::refused(error.0.outcome, &error))?;
            // POSTed, so the token is in no URL.
            let info = datacap_connector::identity_call(
                self.inner
                    .http
                    .post(tokeninfo_url(&self.inner.config.token_url))
                    .form(&[("access_token", grant.access_token.expose_secret())]),
                "google's tokeninfo of the signed-in account",
                IDENTITY_BODY_BYTES,
            )
            .await?;
            // The token must be ours: issued to the client that signed in.
            if info["aud"].as_str() != Some(code.client.client_id.as_str()) {
                return Err(ConnectFailure::Unusable {
                    message: "google issued the token to another oauth client".to_owned(),
                });
            }
            let verified = info["email_verified"] == "true" || info["email_verified"] == true;
            Ok(ConnectedGrant {
                refresh_token: grant.refresh_token,
                scopes: grant.scope.split_whitespace().map(str::to_owned).collect(),
                addresses: info["email"]
                    .as_str()
                    .filter(|_| verified)
                    .map(str::to_owned)
                    .into_iter()
                    .collect(),
                tenant_id: None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokeninfo_sits_beside_the_token_endpoint() {
        assert_eq!(
            tokeninfo_url("https://oauth2.googleapis.com/token"),
            "https://oauth2.googleapis.com/tokeninfo"
        );
        assert_eq!(
            tokeninfo_url("http://127.0.0.1:9/google/token/"),
            "http://127.0.0.1:9/google/tokeninfo"
        );
    }

    #[test]
    fn the_sign_in_asks_for_both_channels_who_signed_in_and_a_refresh_token() {
        let connector = GoogleConnector::new(crate::GoogleConfig::default()).expect("connector");
        let facts = connector.authorize(Some("ignored"));
        assert_eq!(
            facts.authorize_url,
            "https://accounts.google.com/o/oauth2/v2/auth"
        );
        let scopes: Vec<&str> = facts.scope.split(' ').collect();
        assert_eq!(scopes, [GMAIL_SCOPE, CALENDAR_SCOPE, "email"]);
        assert_eq!(facts.required_scopes, [GMAIL_SCOPE, CALENDAR_SCOPE]);
        let extra: Vec<(&str, &str)> = facts
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(extra, [("access_type", "offline"), ("prompt", "consent")]);
    }
}
