//! Microsoft's side of the connect flow: redeem the member's code, then ask Graph's `/me`
//! whose mailbox the new access token opens, and read the token's tenant (`tid`: read, not
//! verified; the token came over TLS from the token endpoint a moment ago, and Graph itself
//! checks it on `/me`).

use datacap_connector::{
    ConnectFailure, ConnectFuture, ConnectedGrant, MemberConnect, OAuthClient,
};
use datacap_core::{Outcome, Provider};
use secrecy::{ExposeSecret, SecretString};

use crate::MicrosoftConnector;
use crate::token::TokenClaims;

/// The largest `/me` answer read.
const IDENTITY_BODY_BYTES: usize = 1024 * 1024;

impl MemberConnect for MicrosoftConnector {
    fn provider(&self) -> Provider {
        Provider::Microsoft365
    }

    fn connect<'a>(
        &'a self,
        client: &'a OAuthClient,
        code: &'a str,
        redirect_uri: &'a str,
        verifier: &'a SecretString,
    ) -> ConnectFuture<'a> {
        Box::pin(async move {
            let grant = self
                .exchange_code(client, code, redirect_uri, verifier)
                .await
                .map_err(|error| ConnectFailure::Refused {
                    outcome: error.outcome().unwrap_or(Outcome::ProviderError),
                    message: error.to_string(),
                })?;
            let refresh_token = grant
                .refresh_token
                .ok_or_else(|| ConnectFailure::Unusable {
                    message: "the answer carries no refresh token".to_owned(),
                })?;
            let me = datacap_connector::identity_call(
                self.http()
                    .get(format!(
                        "{}/me?$select=mail,userPrincipalName",
                        self.config().graph_base.trim_end_matches('/')
                    ))
                    .bearer_auth(grant.access_token.expose_secret()),
                "graph's /me of the signed-in account",
                IDENTITY_BODY_BYTES,
            )
            .await?;
            Ok(ConnectedGrant {
                refresh_token,
                scopes: grant
                    .scope
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                addresses: ["mail", "userPrincipalName"]
                    .iter()
                    .filter_map(|field| me[*field].as_str())
                    .map(str::to_owned)
                    .collect(),
                tenant_id: TokenClaims::decode(grant.access_token.expose_secret())
                    .and_then(|claims| claims.tenant_id),
            })
        })
    }
}
