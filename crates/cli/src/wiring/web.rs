//! Building datacap-web's [`App`] from `[web]` (`crate::config::web`): tokens read from
//! files or env and checked for strength, the session key, the connect flow wired to the
//! connectors, the mailer.
//!
//! Tokens and the signing secret are read at start-up and never logged; a missing file or
//! unset variable named here is an error naming the key, never the value.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use datacap_connector::OAuthClient;
use datacap_core::ConnectionMode;
use datacap_core::{Outcome, Provider};
use datacap_store::{EncryptionKey, Store};
use datacap_web::connect::{ConnectProvider, ExchangeFuture};
use datacap_web::{
    App, Auth, ConnectSetup, Exchange, ExchangeError, Exchanged, Identity, InviteKey, SignIn,
};
use datacap_worker::{CompanyAuth, CompanyCredentials, CredentialResolver};
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

fn microsoft_authorize_url(config: &Config, tenant: &str) -> String {
    format!(
        "{}/{tenant}/oauth2/v2.0/authorize",
        config.microsoft.login_base.trim_end_matches('/'),
    )
}

fn connect_setup(
    config: &Config,
    signing: [u8; 32],
    key: EncryptionKey,
    connectors: &super::connectors::Connectors,
) -> anyhow::Result<Option<ConnectSetup>> {
    // Read once so a missing secret stops the start-up with its key's name.
    let (google_client, microsoft_client) = clients(config)?;
    let google = ConnectProvider {
        authorize_url: config.google.authorize_url.clone(),
        client_id: google_client
            .as_ref()
            .map(|c| c.client_id.clone())
            .unwrap_or_default(),
        // `email`: the connect flow reads who signed in from tokeninfo.
        scope: format!(
            "{} {} email",
            datacap_google::GMAIL_SCOPE,
            datacap_google::CALENDAR_SCOPE
        ),
        required_scopes: vec![
            datacap_google::GMAIL_SCOPE.to_owned(),
            datacap_google::CALENDAR_SCOPE.to_owned(),
        ],
        extra: vec![
            ("access_type".to_owned(), "offline".to_owned()),
            ("prompt".to_owned(), "consent".to_owned()),
        ],
    };
    let microsoft = ConnectProvider {
        authorize_url: microsoft_authorize_url(config, &config.microsoft.oauth_tenant),
        client_id: microsoft_client
            .as_ref()
            .map(|c| c.client_id.clone())
            .unwrap_or_default(),
        scope: datacap_microsoft::MicrosoftConfig::default().delegated_scope,
        required_scopes: vec!["Mail.Read".to_owned(), "Calendars.Read".to_owned()],
        extra: Vec::new(),
    };
    let http = datacap_connector::build_client(&datacap_connector::HttpLimits::default())
        .map_err(|error| anyhow::anyhow!("cannot build the connect flow's http client: {error}"))?;
    Ok(Some(ConnectSetup {
        public_url: config.web.public_url.clone(),
        invites: InviteKey::new(signing),
        invite_ttl: config.web.invite_ttl,
        state_ttl: config.web.connect_state_ttl,
        key,
        google: Some(google),
        microsoft: Some(microsoft),
        exchange: Arc::new(ConnectorExchange {
            connectors: connectors.clone(),
            resolver: FileAndEnvResolver::new(config),
            http,
            google_tokeninfo: tokeninfo_url(&config.google.token_url),
            graph_base: config.microsoft.graph_base.trim_end_matches('/').to_owned(),
            authorize: (
                config.google.authorize_url.clone(),
                config.microsoft.login_base.trim_end_matches('/').to_owned(),
            ),
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

/// Redeems codes through the same connectors the worker polls with, with the client the
/// worker refreshes with (the company's own from the tenants file, else the config's), then
/// asks the provider whose mailbox the new token opens.
struct ConnectorExchange {
    connectors: super::connectors::Connectors,
    resolver: FileAndEnvResolver,
    http: reqwest::Client,
    /// Google's tokeninfo endpoint, beside its token endpoint.
    google_tokeninfo: String,
    graph_base: String,
    /// Google's authorize URL; Microsoft's login base.
    authorize: (String, String),
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
            Ok(CompanyAuth::OAuthClient(client)) => Ok(client),
            Ok(_) => Err(ExchangeError("this company has no oauth client".to_owned())),
            Err(error) => Err(ExchangeError(error.detail)),
        }
    }

    /// Sends `request` (an identity read made with the new access token); the JSON answer.
    /// Errors never show the URL or the token.
    async fn identity_call(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<serde_json::Value, ExchangeError> {
        let failed = |detail: String| ExchangeError(format!("{what} could not be read: {detail}"));
        let answer = request
            .send()
            .await
            .map_err(|error| failed(error.without_url().to_string()))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(failed(format!("http {}", status.as_u16())));
        }
        let bytes = datacap_connector::read_body(answer, 1024 * 1024)
            .await
            .map_err(|_| failed("the answer could not be read".to_owned()))?;
        serde_json::from_slice(&bytes).map_err(|_| failed("the answer is not json".to_owned()))
    }
}

/// Google's tokeninfo endpoint on the token endpoint's host: `…/token` → `…/tokeninfo`
/// (`https://oauth2.googleapis.com/tokeninfo`; the sim's `{base}/google/tokeninfo`).
fn tokeninfo_url(token_url: &str) -> String {
    let base = token_url.trim_end_matches('/');
    match base.strip_suffix("/token") {
        Some(host) => format!("{host}/tokeninfo"),
        None => format!("{base}info"),
    }
}

/// The `tid` claim of a Microsoft access token (read, not verified: the token came over
/// TLS from the token endpoint a moment ago, and Graph itself checks it on `/me`).
fn token_tenant(token: &SecretString) -> Option<String> {
    use base64::Engine as _;
    let payload = token.expose_secret().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["tid"].as_str().map(str::to_owned)
}

impl Exchange for ConnectorExchange {
    fn sign_in(&self, provider: Provider, refs: &BTreeMap<String, String>) -> Option<SignIn> {
        let client = self.client(provider, refs).ok()?;
        let authorize_url = match provider {
            Provider::Microsoft365 => format!(
                "{}/{}/oauth2/v2.0/authorize",
                self.authorize.1,
                client.tenant.as_deref().unwrap_or("organizations")
            ),
            _ => self.authorize.0.clone(),
        };
        Some(SignIn {
            client_id: client.client_id.clone(),
            authorize_url,
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
            match provider {
                Provider::GoogleWorkspace => {
                    let connector = self.connectors.google.as_ref().ok_or_else(missing)?;
                    let grant = connector
                        .exchange_code(&client, code, redirect_uri, Some(verifier))
                        .await;
                    datacap_worker::events::code_exchanged(
                        provider,
                        grant
                            .as_ref()
                            .map_or_else(|e| e.0.outcome, |_| Outcome::Success),
                    );
                    let grant = grant.map_err(|error| ExchangeError(error.to_string()))?;
                    // Who signed in: tokeninfo on the new access token (its `email`
                    // scope). Not Gmail's own profile: a mailbox whose Gmail is off or
                    // blocked by policy must still connect, so that its import shows why.
                    // POSTed, so the token is in no URL.
                    let info = self
                        .identity_call(
                            self.http
                                .post(&self.google_tokeninfo)
                                .form(&[("access_token", grant.access_token.expose_secret())]),
                            "google's tokeninfo of the signed-in account",
                        )
                        .await?;
                    // The token must be ours: issued to the client that signed in.
                    if info["aud"].as_str() != Some(client.client_id.as_str()) {
                        return Err(ExchangeError(
                            "google issued the token to another oauth client".to_owned(),
                        ));
                    }
                    let verified =
                        info["email_verified"] == "true" || info["email_verified"] == true;
                    Ok(Exchanged {
                        refresh_token: grant.refresh_token,
                        scopes: grant.scope.split_whitespace().map(str::to_owned).collect(),
                        identity: Identity {
                            addresses: info["email"]
                                .as_str()
                                .filter(|_| verified)
                                .map(str::to_owned)
                                .into_iter()
                                .collect(),
                            tenant_id: None,
                        },
                    })
                }
                Provider::Microsoft365 => {
                    let connector = self.connectors.microsoft.as_ref().ok_or_else(missing)?;
                    let grant = connector
                        .exchange_code(&client, code, redirect_uri, verifier)
                        .await;
                    datacap_worker::events::code_exchanged(
                        provider,
                        grant.as_ref().map_or_else(
                            |e| e.outcome().unwrap_or(Outcome::ProviderError),
                            |_| Outcome::Success,
                        ),
                    );
                    let grant = grant.map_err(|error| ExchangeError(error.to_string()))?;
                    let refresh_token = grant.refresh_token.ok_or_else(|| {
                        ExchangeError("the answer carries no refresh token".to_owned())
                    })?;
                    let me = self
                        .identity_call(
                            self.http
                                .get(format!(
                                    "{}/me?$select=mail,userPrincipalName",
                                    self.graph_base
                                ))
                                .bearer_auth(grant.access_token.expose_secret()),
                            "graph's /me of the signed-in account",
                        )
                        .await?;
                    let addresses = ["mail", "userPrincipalName"]
                        .iter()
                        .filter_map(|field| me[*field].as_str())
                        .map(str::to_owned)
                        .collect();
                    Ok(Exchanged {
                        refresh_token,
                        scopes: grant
                            .scope
                            .unwrap_or_default()
                            .split_whitespace()
                            .map(str::to_owned)
                            .collect(),
                        identity: Identity {
                            addresses,
                            tenant_id: token_tenant(&grant.access_token),
                        },
                    })
                }
                Provider::None => Err(missing()),
            }
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
