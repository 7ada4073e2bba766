//! The binary's [`CredentialResolver`]: turns a company's credential references (from the
//! tenants file) into credentials by reading the key files and environment variables they
//! name. Only this crate reads files and the environment; the worker just calls it.
//!
//! References by provider and connection mode:
//! - Google, company-wide: `service_account_key_file` (Google's JSON key: `client_email`,
//!   `private_key`, `private_key_id`) or `service_account_key_env` (the same JSON in a
//!   variable); `subject`: the Workspace admin the Directory check acts as (optional).
//! - Microsoft, company-wide: `tenant_id`, `client_id`, and `client_secret_env` or
//!   `client_secret_file`.
//! - Either provider, user-by-user: `client_id` with `client_secret_env`/`_file` (and
//!   Microsoft `tenant_id`) when the company has its own app; otherwise the `[google]` /
//!   `[microsoft]` OAuth client of the config.

use std::collections::BTreeMap;
use std::sync::Arc;

use datacap_connector::{Auth, MicrosoftAppCredential, OAuthClient, ServiceAccountKey};
use datacap_core::{ConnectionMode, Provider};
use datacap_worker::{CompanyCredentials, CredentialError, CredentialResolver};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::{Config, KeySource, OAuthClientRef, read_secret};

/// Reads credentials named by references, with the config's OAuth clients as fallback.
pub struct FileAndEnvResolver {
    google_oauth: Option<OAuthClientRef>,
    microsoft_oauth: Option<OAuthClientRef>,
    microsoft_tenant: String,
}

impl FileAndEnvResolver {
    pub fn new(config: &Config) -> FileAndEnvResolver {
        FileAndEnvResolver {
            google_oauth: config.google.oauth.clone(),
            microsoft_oauth: config.microsoft.oauth.clone(),
            microsoft_tenant: config.microsoft.oauth_tenant.clone(),
        }
    }
}

#[derive(Deserialize)]
struct GoogleKeyFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
}

impl CredentialResolver for FileAndEnvResolver {
    fn resolve(&self, company: &CompanyCredentials<'_>) -> Result<Auth, CredentialError> {
        let fail = |detail: String| CredentialError {
            company_id: company.company_id.to_owned(),
            detail,
        };
        let refs = company.refs;
        match (company.provider, company.connection_mode) {
            (Provider::GoogleWorkspace, ConnectionMode::CompanyWide) => {
                let text = secret_ref(refs, "service_account_key")
                    .ok_or_else(|| {
                        fail("needs service_account_key_file or service_account_key_env".into())
                    })?
                    .map_err(|error| fail(format!("{error:#}")))?;
                let key: GoogleKeyFile = serde_json::from_str(text.expose_secret())
                    .map_err(|_| {
                        fail("the service account key is not Google's JSON key format (client_email, private_key)".into())
                    })?;
                Ok(Auth::GoogleServiceAccount(Arc::new(ServiceAccountKey {
                    client_email: key.client_email,
                    private_key_pem: SecretString::from(key.private_key),
                    private_key_id: key.private_key_id,
                    directory_admin: refs.get("subject").cloned(),
                })))
            }
            (Provider::Microsoft365, ConnectionMode::CompanyWide) => {
                let tenant = refs
                    .get("tenant_id")
                    .cloned()
                    .ok_or_else(|| fail("needs tenant_id".into()))?;
                let client_id = refs
                    .get("client_id")
                    .cloned()
                    .ok_or_else(|| fail("needs client_id".into()))?;
                let client_secret = secret_ref(refs, "client_secret")
                    .ok_or_else(|| fail("needs client_secret_env or client_secret_file".into()))?
                    .map_err(|error| fail(format!("{error:#}")))?;
                Ok(Auth::MicrosoftApp(Arc::new(MicrosoftAppCredential {
                    tenant,
                    client_id,
                    client_secret,
                })))
            }
            (provider, ConnectionMode::UserByUser) => {
                let tenant = match provider {
                    Provider::Microsoft365 => Some(
                        refs.get("tenant_id")
                            .cloned()
                            .unwrap_or_else(|| self.microsoft_tenant.clone()),
                    ),
                    _ => None,
                };
                if let Some(client_id) = refs.get("client_id") {
                    let client_secret = secret_ref(refs, "client_secret")
                        .ok_or_else(|| {
                            fail("client_id needs client_secret_env or client_secret_file".into())
                        })?
                        .map_err(|error| fail(format!("{error:#}")))?;
                    return Ok(Auth::OAuthClient(Arc::new(OAuthClient {
                        client_id: client_id.clone(),
                        client_secret,
                        tenant,
                    })));
                }
                let configured = match provider {
                    Provider::GoogleWorkspace => &self.google_oauth,
                    Provider::Microsoft365 => &self.microsoft_oauth,
                    Provider::None => &None,
                };
                let Some(client) = configured else {
                    return Err(fail(format!(
                        "user-by-user needs an OAuth client: client_id and client_secret_env in the tenants file, or [{}] oauth_client_id in the config",
                        if provider == Provider::Microsoft365 {
                            "microsoft"
                        } else {
                            "google"
                        }
                    )));
                };
                let client_secret = read_secret(&client.secret, "oauth client secret")
                    .map_err(|error| fail(format!("{error:#}")))?;
                Ok(Auth::OAuthClient(Arc::new(OAuthClient {
                    client_id: client.client_id.clone(),
                    client_secret,
                    tenant,
                })))
            }
            (Provider::None, _) => Err(fail("no provider connected".into())),
        }
    }
}

/// `{name}_file` or `{name}_env` of `refs`, read; `None` when neither is given.
fn secret_ref(refs: &BTreeMap<String, String>, name: &str) -> Option<anyhow::Result<SecretString>> {
    let source = if let Some(path) = refs.get(&format!("{name}_file")) {
        KeySource::File(path.into())
    } else if let Some(variable) = refs.get(&format!("{name}_env")) {
        KeySource::Env(variable.clone())
    } else {
        return None;
    };
    Some(read_secret(&source, &name.replace('_', " ")))
}

/// The delivery task's [`datacap_worker::WebhookSecrets`]: reads the file or variable an
/// endpoint's `secret_file` / `secret_env` names, at every try (a rotated secret is used
/// from the next try on). Errors name the reference, never the value.
pub struct WebhookSecretFiles;

impl datacap_worker::WebhookSecrets for WebhookSecretFiles {
    fn secret(&self, reference: &datacap_store::SecretRef) -> Result<SecretString, String> {
        let source = match reference {
            datacap_store::SecretRef::File(path) => KeySource::File(path.into()),
            datacap_store::SecretRef::Env(name) => KeySource::Env(name.clone()),
        };
        read_secret(&source, "webhook secret").map_err(|error| format!("{error:#}"))
    }
}
