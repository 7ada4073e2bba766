//! Microsoft's side of the connect flow: redeem the member's code, then ask Graph's `/me`
//! whose mailbox the new access token opens, and read the token's tenant (`tid`: read, not
//! verified; the token came over TLS from the token endpoint a moment ago, and Graph itself
//! checks it on `/me`).

use datacap_connector::{
    AuthorizeFacts, CodeRedemption, ConnectFailure, ConnectFuture, ConnectedGrant, MemberConnect,
};
use datacap_core::{Outcome, Provider};
use secrecy::ExposeSecret;

use crate::MicrosoftConnector;
use crate::token::TokenClaims;

/// The largest `/me` answer read.
const IDENTITY_BODY_BYTES: usize = 1024 * 1024;

impl MemberConnect for MicrosoftConnector {
    fn provider(&self) -> Provider {
        Provider::Microsoft365
    }

    /// The delegated scopes (`offline_access`, without which no refresh token comes back:
    /// microsoft.md, token endpoint success bodies; Mail.Read, Calendars.Read, User.Read for
    /// `/me`) at the tenant's authorize endpoint (`organizations`: any work account).
    fn authorize(&self, tenant: Option<&str>) -> AuthorizeFacts {
        let config = self.config();
        AuthorizeFacts {
            authorize_url: format!(
                "{}/{}/oauth2/v2.0/authorize",
                config.login_base.trim_end_matches('/'),
                tenant.unwrap_or("organizations")
            ),
            scope: config.delegated_scope.clone(),
            required_scopes: vec!["Mail.Read".to_owned(), "Calendars.Read".to_owned()],
            extra: Vec::new(),
        }
    }

    fn connect<'a>(&'a self, code: CodeRedemption<'a>) -> ConnectFuture<'a> {
        Box::pin(async move {
            let grant = self
                .exchange_code(code.client, code.code, code.redirect_uri, code.verifier)
                .await
                .map_err(|error| {
                    let outcome = error.outcome().unwrap_or(Outcome::ProviderError);
                    ConnectFailure::refused(outcome, &error)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_in_goes_to_the_clients_tenant_and_asks_for_a_refresh_token() {
        let connector = MicrosoftConnector::new(crate::MicrosoftConfig::with_bases(
            "https://login.example/",
            "https://graph.example/v1.0",
        ))
        .expect("connector");
        let facts = connector.authorize(Some("contoso.example"));
        assert_eq!(
            facts.authorize_url,
            "https://login.example/contoso.example/oauth2/v2.0/authorize"
        );
        assert_eq!(
            connector.authorize(None).authorize_url,
            "https://login.example/organizations/oauth2/v2.0/authorize"
        );
        let scopes: Vec<&str> = facts.scope.split(' ').collect();
        assert!(scopes.contains(&"offline_access"), "{scopes:?}");
        assert_eq!(facts.required_scopes, ["Mail.Read", "Calendars.Read"]);
        assert!(facts.extra.is_empty());
    }
}
