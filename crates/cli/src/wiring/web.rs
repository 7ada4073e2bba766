//! Building datacap-web's [`App`] from `[web]` (`crate::config::web`): tokens read from
//! files or env and checked for strength, the session key, the connect flow wired to the
//! connectors, the mailer.
//!
//! Tokens and the signing secret are read at start-up and never logged; a missing file or
//! unset variable named here is an error naming the key, never the value.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use datacap_connector::{CodeRedemption, ConnectFailure, OAuthClient};
use datacap_core::ConnectionMode;
use datacap_core::{Outcome, Provider};
use datacap_store::{EncryptionKey, Store};
use datacap_web::connect::{ConnectProvider, ExchangeFuture};
use datacap_web::{
    App, Auth, ConnectSetup, Exchange, ExchangeError, Exchanged, Identity, InviteKey, SignIn,
};
use datacap_worker::{CompanyCredentials, CredentialResolver};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Config, KeySource, read_secret};
use crate::credentials::FileAndEnvResolver;

/// The shortest token accepted, and the strength a token must have: 128 bits, estimated
/// as its length times the bits per character of the alphabet its characters come from
/// (hex 4, base64 6, ...). `datacap token` makes 256-bit ones.
const MIN_TOKEN_BITS: f64 = 128.0;

/// Whether `token` has at least 128 bits of entropy by that estimate; the problem if not.
pub(crate) fn check_token_strength(token: &str, what: &str) -> anyhow::Result<()> {
    let token = token.trim();
    let mut alphabet = 0_u32;
    if token.chars().any(|c| c.is_ascii_digit()) {
        alphabet += 10;
    }
    if token.chars().any(|c| c.is_ascii_lowercase()) {
        alphabet += 26;
    }
    if token.chars().any(|c| c.is_ascii_uppercase()) {
        alphabet += 26;
    }
    if token.chars().any(|c| !c.is_ascii_alphanumeric()) {
        alphabet += 32;
    }
    // A hex token is lower-case letters a-f and digits: 16 symbols, not 36.
    if token.chars().all(|c| c.is_ascii_hexdigit()) && !token.is_empty() {
        alphabet = 16;
    }
    let distinct = token
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let bits = f64::from(alphabet.max(1)).log2() * token.chars().count() as f64;
    if bits < MIN_TOKEN_BITS || distinct < 8 {
        anyhow::bail!(
            "{what} is too weak (about {bits:.0} bits; at least 128 are needed): make one with `datacap token`"
        );
    }
    Ok(())
}

/// Company id → token, from `company_tokens_file` (a TOML table `acme = "TOKEN"`) or
/// `company_tokens_env` (`acme=TOKEN,globex=TOKEN`).
fn company_tokens(source: &KeySource) -> anyhow::Result<BTreeMap<String, SecretString>> {
    let text = read_secret(source, "web company tokens")?;
    let mut tokens = BTreeMap::new();
    match source {
        KeySource::File(path) => {
            let table: toml::Table = text.expose_secret().parse().map_err(|_| {
                anyhow::anyhow!(
                    "web company tokens file {} is not a TOML table of company = \"token\"",
                    path.display()
                )
            })?;
            for (company, value) in table {
                let toml::Value::String(token) = value else {
                    anyhow::bail!(
                        "web company tokens file {}: {company} must be a string",
                        path.display()
                    );
                };
                tokens.insert(company, SecretString::from(token));
            }
        }
        KeySource::Env(name) => {
            for pair in text
                .expose_secret()
                .split(',')
                .filter(|p| !p.trim().is_empty())
            {
                let (company, token) = pair.split_once('=').with_context(|| {
                    format!("web company tokens env {name}: each entry is company=token")
                })?;
                tokens.insert(company.trim().to_owned(), SecretString::from(token.trim()));
            }
        }
    }
    for (company, token) in &tokens {
        check_token_strength(
            token.expose_secret(),
            &format!("web company token of {company}"),
        )?;
    }
    Ok(tokens)
}

/// The web app: tokens, session key and, when everything it needs is configured
/// (`signing_key`, `[encryption]`, an OAuth client), the connect flow.
pub(crate) fn build_app(
    config: &Config,
    store: Store,
    key: Option<EncryptionKey>,
    connectors: &super::connectors::Connectors,
) -> anyhow::Result<App> {
    let web = &config.web;
    let operator = web
        .operator_token
        .as_ref()
        .map(|source| read_secret(source, "web operator token"))
        .transpose()?;
    if let Some(token) = &operator {
        check_token_strength(token.expose_secret(), "web operator token")?;
    }
    let companies = match &web.company_tokens {
        Some(source) => company_tokens(source)?,
        None => BTreeMap::new(),
    };
    let signing = match &web.signing_key {
        Some(source) => {
            let secret = read_secret(source, "web signing key")?;
            if secret.expose_secret().len() < 32 {
                anyhow::bail!("web signing key is shorter than 32 characters");
            }
            Some(datacap_web::auth::signing_key(&secret))
        }
        None => None,
    };
    let session_key = match signing {
        Some(bytes) => bytes,
        // Sessions then last until the daemon restarts.
        None => datacap_web::auth::random_bytes()?,
    };
    let auth = Auth::new(
        operator.as_ref(),
        &companies,
        session_key,
        web.session_ttl,
        web.secure_cookie,
    );
    let connect = match (signing, key) {
        (Some(signing), Some(key)) => connect_setup(config, signing, key, connectors)?,
        // Never silently off: the log says which key the flow lacks.
        (None, _) => {
            tracing::warn!(
                "the connect flow is off: set [web] signing_key_file or signing_key_env (and [encryption]) for members to connect"
            );
            None
        }
        (Some(_), None) => {
            tracing::warn!(
                "the connect flow is off: set [encryption] key_file or key_env for members to connect"
            );
            None
        }
    };
    Ok(App {
        store,
        auth,
        refresh_seconds: web.refresh_seconds,
        connect,
        public_url: Some(web.public_url.clone()),
        support_contact: web.support_contact.clone(),
    })
}

/// The config's OAuth clients (`[google]`/`[microsoft]` `oauth_client_id` and secret):
/// the connect flow's fallback for companies without a client of their own.
fn clients(config: &Config) -> anyhow::Result<(Option<OAuthClient>, Option<OAuthClient>)> {
    let client = |oauth: &Option<crate::config::OAuthClientRef>, what: &str, tenant| {
        oauth
            .as_ref()
            .map(|oauth| {
                Ok::<_, anyhow::Error>(OAuthClient {
                    client_id: oauth.client_id.clone(),
                    client_secret: read_secret(&oauth.secret, what)?,
                    tenant,
                })
            })
            .transpose()
    };
    Ok((
        client(&config.google.oauth, "google oauth client secret", None)?,
        client(
            &config.microsoft.oauth,
            "microsoft oauth client secret",
            Some(config.microsoft.oauth_tenant.clone()),
        )?,
    ))
}

fn connect_setup(
    config: &Config,
    signing: [u8; 32],
    key: EncryptionKey,
    connectors: &super::connectors::Connectors,
) -> anyhow::Result<Option<ConnectSetup>> {
    // Read once so a missing secret stops the start-up with its key's name.
    let (google_client, microsoft_client) = clients(config)?;
    // Each provider's OAuth facts (endpoint, scopes, parameters) come from its connector.
    let provider = |provider: Provider, client: Option<OAuthClient>, tenant: Option<&str>| {
        connectors.member_connect(provider).map(|connect| {
            let facts = connect.authorize(tenant);
            ConnectProvider {
                authorize_url: facts.authorize_url,
                client_id: client.map(|c| c.client_id).unwrap_or_default(),
                scope: facts.scope,
                required_scopes: facts.required_scopes,
                extra: facts.extra,
            }
        })
    };
    let google = provider(Provider::GoogleWorkspace, google_client, None);
    let microsoft = provider(
        Provider::Microsoft365,
        microsoft_client,
        Some(&config.microsoft.oauth_tenant),
    );
    Ok(Some(ConnectSetup {
        public_url: config.web.public_url.clone(),
        invites: InviteKey::new(signing),
        invite_ttl: config.web.invite_ttl,
        state_ttl: config.web.connect_state_ttl,
        key,
        google,
        microsoft,
        exchange: Arc::new(ConnectorExchange {
            connectors: connectors.clone(),
            resolver: FileAndEnvResolver::new(config),
        }),
        mailer: mailer(config),
    }))
}

/// The `[smtp]` relay the reminders page mails through, when `[smtp] host` is set. A relay
/// set up half (e.g. without `from`, or an unreadable password) leaves the page without
/// mail, saying so, and the log says why: the imports do not stop for it.
fn mailer(config: &Config) -> Option<Arc<dyn datacap_web::Mailer>> {
    if config.smtp.host.is_none() {
        tracing::info!(
            "the reminders page cannot mail: set [smtp] host and from for admins to send connect reminders from the page"
        );
        return None;
    }
    match super::smtp::Relay::new(&config.smtp) {
        Ok(relay) => Some(Arc::new(relay)),
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "the reminders page cannot mail: [smtp] is not usable");
            None
        }
    }
}

/// Redeems codes through the same connectors the worker polls with (their
/// [`datacap_connector::MemberConnect`] side, which also asks the provider who signed in), with the client the
/// worker refreshes with (the company's own from the tenants file, else the config's).
struct ConnectorExchange {
    connectors: super::connectors::Connectors,
    resolver: FileAndEnvResolver,
}

impl ConnectorExchange {
    /// The company's OAuth client, as the worker resolves it for refreshes.
    fn client(
        &self,
        provider: Provider,
        refs: &BTreeMap<String, String>,
    ) -> Result<Arc<OAuthClient>, ExchangeError> {
        let company = CompanyCredentials {
            company_id: "",
            provider,
            connection_mode: ConnectionMode::UserByUser,
            refs,
        };
        match self.resolver.resolve(&company) {
            Ok(datacap_connector::Auth::OAuthClient(client)) => Ok(client),
            Ok(_) => Err(ExchangeError("this company has no oauth client".to_owned())),
            Err(error) => Err(ExchangeError(error.detail)),
        }
    }
}

impl Exchange for ConnectorExchange {
    fn sign_in(&self, provider: Provider, refs: &BTreeMap<String, String>) -> Option<SignIn> {
        let client = self.client(provider, refs).ok()?;
        let facts = self
            .connectors
            .member_connect(provider)?
            .authorize(client.tenant.as_deref());
        Some(SignIn {
            client_id: client.client_id.clone(),
            authorize_url: facts.authorize_url,
        })
    }

    fn exchange<'a>(
        &'a self,
        provider: Provider,
        refs: &'a BTreeMap<String, String>,
        code: &'a str,
        redirect_uri: &'a str,
        verifier: &'a SecretString,
    ) -> ExchangeFuture<'a> {
        Box::pin(async move {
            let missing = || ExchangeError("this provider is not set up".to_owned());
            let client = self.client(provider, refs)?;
            let connector = self
                .connectors
                .member_connect(provider)
                .ok_or_else(missing)?;
            let redemption = CodeRedemption {
                client: &client,
                code,
                redirect_uri,
                verifier,
            };
            let connected = connector.connect(redemption).await;
            // The code-exchange metric counts the token answer: a grant that cannot be used
            // afterwards (no refresh token, another client's, who signed in unreadable) was
            // still exchanged.
            datacap_worker::events::code_exchanged(
                provider,
                match &connected {
                    Err(ConnectFailure::Refused { outcome, .. }) => *outcome,
                    Ok(_) | Err(ConnectFailure::Unusable { .. }) => Outcome::Success,
                },
            );
            let grant = connected.map_err(|error| ExchangeError(error.to_string()))?;
            Ok(Exchanged {
                refresh_token: grant.refresh_token,
                scopes: grant.scopes,
                identity: Identity {
                    addresses: grant.addresses,
                    tenant_id: grant.tenant_id,
                },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_need_128_bits() {
        for (token, ok) in [
            // `datacap token`: 43 base64url characters, 256 bits.
            ("q7Zk3V9xP2mW8rT4yB6nC1dF5gH0jK-L_sA2eU7iO9w", true),
            // 32 hex digits: 128 bits exactly.
            ("0f1e2d3c4b5a69788796a5b4c3d2e1f0", true),
            ("operator-token-for-the-web-test", true),
            // 16 characters, the old minimum: about 95 bits at best.
            ("acme-token-12345", false),
            ("0123456789abcdef", false),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
            ("", false),
        ] {
            let checked = check_token_strength(token, "web operator token");
            assert_eq!(checked.is_ok(), ok, "{token}: {checked:?}");
        }
        let message = check_token_strength("short", "web operator token")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("datacap token") && !message.contains("short"),
            "{message}"
        );
    }
}
