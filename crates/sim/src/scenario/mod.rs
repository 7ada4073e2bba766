//! The scenario file: who exists in the simulated tenants and what goes wrong for them.
//!
//! A scenario is TOML (format in docs/sim.md, examples in config/sim/). It is parsed in two
//! phases, like the rest of datacap's configuration: serde reads the raw file (unknown keys
//! and unknown fault names are errors that name the line), then `validate` checks what
//! serde cannot (duplicates, a fault used with the wrong provider, a key file that does not
//! parse) and reports the line of the offending field. Loading never panics.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use toml::Spanned;

mod keys;
mod raw;

use crate::SimError;
use crate::fault::{EndpointSel, FaultKind};
use keys::rsa_public_key_der;
use raw::{RawClient, RawFault, RawScenario};

/// Most messages or events generated for one user (keeps every loop bounded).
pub const MAX_GENERATED: u32 = 100_000;

/// Which provider a tenant simulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Google Workspace: OAuth token endpoint, Gmail, Calendar, Directory.
    Google,
    /// Microsoft 365: Entra ID token endpoint and Microsoft Graph.
    Microsoft,
}

/// A whole scenario, validated.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Seed of the generated mail and events.
    pub seed: u64,
    /// The instant generated mail ends and generated events are centred on.
    pub epoch: OffsetDateTime,
    /// `expires_in` of the access tokens the sim issues.
    pub access_token_lifetime_secs: u64,
    /// The tenants.
    pub tenants: Vec<Tenant>,
}

/// One company at one provider.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// Name used in the control endpoint and in fault addressing.
    pub name: String,
    /// Provider simulated.
    pub provider: Provider,
    /// Primary domain of the users.
    pub domain: String,
    /// Microsoft tenant id (GUID) or Google customer id.
    pub tenant_id: String,
    /// Google: the service account used for domain-wide delegation.
    pub service_account: Option<ServiceAccount>,
    /// Google: the OAuth client for user-by-user consent; Microsoft: the app registration.
    pub client: Option<Client>,
    /// Users of the tenant.
    pub users: Vec<User>,
    /// Faults that apply to every user of the tenant.
    pub faults: Vec<FaultSpec>,
}

/// A Google service account with domain-wide delegation.
#[derive(Clone, Debug)]
pub struct ServiceAccount {
    /// `iss` of its JWTs.
    pub client_email: String,
    /// Numeric client id (shown in the Admin console).
    pub client_id: String,
    /// Key its JWTs must be signed with.
    /// The service account's RSA public key as PKCS#1 `RSAPublicKey` DER (what ring
    /// verifies with).
    pub public_key: Vec<u8>,
    /// Scopes the Admin console allows for delegation; empty means delegation not granted.
    pub delegated_scopes: Vec<String>,
}

/// An OAuth client (Google) or an app registration (Microsoft).
#[derive(Clone, Debug)]
pub struct Client {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Accepted redirect URIs; empty accepts any.
    pub redirect_uris: Vec<String>,
    /// Microsoft: application roles granted by admin consent (the `roles` claim).
    pub roles: Vec<String>,
    /// Scopes a user may consent to (delegated); empty accepts whatever is requested.
    pub consent_scopes: Vec<String>,
    /// The user the authorize endpoint signs in when no `login_hint` names one.
    pub consent_user: Option<String>,
    /// Microsoft: reject a refresh token once it has been rotated (AADSTS70000).
    pub reject_reused_refresh_tokens: bool,
    /// Microsoft: requests in flight per mailbox before Graph answers 429
    /// `ApplicationThrottled` (Outlook's limit is 4); 0 means unlimited.
    pub mailbox_concurrency: u32,
}

/// One member.
#[derive(Clone, Debug)]
pub struct User {
    /// Primary address (Google `primaryEmail`, Microsoft `userPrincipalName`).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Directory admin (Google `isAdmin`).
    pub admin: bool,
    /// Has a mailbox (and calendar).
    pub mailbox: bool,
    /// Holds a mail licence.
    pub licensed: bool,
    /// Suspended (Google) or `accountEnabled=false` (Microsoft).
    pub suspended: bool,
    /// Guest (Microsoft `userType=Guest`; no mailbox in this tenant).
    pub guest: bool,
    /// Deleted: token requests for it fail and directory listings omit it.
    pub deleted: bool,
    /// Creation time (Google `creationTime`, Graph `createdDateTime`).
    pub created_at: OffsetDateTime,
    /// Messages generated at start.
    pub messages: u32,
    /// Events generated at start.
    pub events: u32,
    /// Scopes this user ticks on the consent screen; `None` grants all requested.
    pub granted_scopes: Option<Vec<String>>,
    /// Faults for this user only.
    pub faults: Vec<FaultSpec>,
}

pub use crate::fault::RetryAfter;

/// One fault, as in a scenario's `[[…fault]]` table or a control request.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The fault's name (docs/sim.md has the table).
    pub fault: FaultKind,
    /// Where it applies; each name has a default.
    #[serde(default)]
    pub endpoint: Option<EndpointSel>,
    /// Fire this many times, then recover; absent means until cleared.
    #[serde(default)]
    pub times: Option<u32>,
    /// `Retry-After` to send with rate limits and 5xx.
    #[serde(default)]
    pub retry_after: Option<RetryAfter>,
    /// Delay for `latency`.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Body size for `oversized_body`.
    #[serde(default)]
    pub bytes: Option<u64>,
}

impl FaultSpec {
    /// A fault with defaults for everything but the name.
    pub fn new(fault: FaultKind) -> FaultSpec {
        FaultSpec {
            fault,
            endpoint: None,
            times: None,
            retry_after: None,
            latency_ms: None,
            bytes: None,
        }
    }

    /// Where the fault applies.
    pub(crate) fn selector(&self) -> EndpointSel {
        self.endpoint
            .unwrap_or_else(|| self.fault.default_endpoint())
    }
}

/// Turns byte offsets into 1-based line and column numbers for error messages.
struct Locator<'a> {
    path: String,
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, offset: usize, message: impl Into<String>) -> SimError {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        SimError::Scenario {
            path: self.path.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    fn at<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> SimError {
        self.error(spanned.span().start, message)
    }
}

impl Scenario {
    /// Reads and validates a scenario file; key paths are relative to its folder.
    pub fn from_file(path: &Path) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Scenario::from_toml(&text, &path.display().to_string(), &base)
    }

    /// Parses and validates scenario text. `name` labels errors; `base` resolves key paths.
    pub fn from_toml(text: &str, name: &str, base: &Path) -> Result<Scenario, SimError> {
        let locate = Locator {
            path: name.to_owned(),
            text,
        };
        let raw: RawScenario = toml::from_str(text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            let line_start = text
                .get(..offset)
                .and_then(|t| t.rfind('\n'))
                .map_or(0, |i| i + 1);
            let field_line = text
                .get(line_start..)
                .and_then(|rest| rest.lines().next())
                .map(str::trim)
                .unwrap_or_default();
            let mut message = error.message().trim().to_owned();
            // serde lists every variant; the fault table in docs/sim.md is the readable list.
            if let Some(cut) = message.find(", expected one of") {
                message.truncate(cut);
                message.push_str(" (docs/sim.md lists the names)");
            }
            if field_line.is_empty() {
                locate.error(offset, message)
            } else {
                locate.error(offset, format!("{message} (at `{field_line}`)"))
            }
        })?;
        validate(raw, &locate, base)
    }
}

fn parse_time(
    value: &Spanned<String>,
    field: &str,
    locate: &Locator<'_>,
) -> Result<OffsetDateTime, SimError> {
    OffsetDateTime::parse(value.get_ref(), &Rfc3339).map_err(|error| {
        locate.at(
            value,
            format!(
                "field `{field}`: `{}` is not an RFC 3339 time: {error}",
                value.get_ref()
            ),
        )
    })
}

fn load_key(
    path: &Spanned<String>,
    base: &Path,
    locate: &Locator<'_>,
) -> Result<Vec<u8>, SimError> {
    let full: PathBuf = base.join(path.get_ref());
    let pem = std::fs::read_to_string(&full).map_err(|error| {
        locate.at(
            path,
            format!(
                "field `public_key`: cannot read {}: {error}",
                full.display()
            ),
        )
    })?;
    rsa_public_key_der(pem.as_bytes()).map_err(|error| {
        locate.at(
            path,
            format!(
                "field `public_key`: {} is not an RSA public key in PEM: {error}",
                full.display()
            ),
        )
    })
}

fn convert_faults(
    raw: Vec<RawFault>,
    provider: Provider,
    locate: &Locator<'_>,
) -> Result<Vec<FaultSpec>, SimError> {
    raw.into_iter()
        .map(|fault| {
            let kind = *fault.fault.get_ref();
            if !kind.valid_for(provider) {
                return Err(locate.at(
                    &fault.fault,
                    format!("field `fault`: {kind:?} does not exist at provider {provider:?}"),
                ));
            }
            Ok(FaultSpec {
                fault: kind,
                endpoint: fault.endpoint,
                times: fault.times,
                retry_after: fault.retry_after,
                latency_ms: fault.latency_ms,
                bytes: fault.bytes,
            })
        })
        .collect()
}

fn convert_client(raw: RawClient) -> Client {
    Client {
        client_id: raw.client_id,
        client_secret: raw.client_secret,
        redirect_uris: raw.redirect_uris,
        roles: raw.roles,
        consent_scopes: raw.consent_scopes,
        consent_user: raw.consent_user.map(Spanned::into_inner),
        reject_reused_refresh_tokens: raw.reject_reused_refresh_tokens,
        mailbox_concurrency: raw.mailbox_concurrency,
    }
}

fn validate(raw: RawScenario, locate: &Locator<'_>, base: &Path) -> Result<Scenario, SimError> {
    let epoch = match &raw.epoch {
        None => today(),
        Some(value) if value.get_ref() == "today" => today(),
        Some(value) => parse_time(value, "epoch", locate)?,
    };
    let mut tenants: Vec<Tenant> = Vec::with_capacity(raw.tenant.len());
    for tenant in raw.tenant {
        if tenants.iter().any(|t| t.name == *tenant.name.get_ref()) {
            return Err(locate.at(
                &tenant.name,
                format!(
                    "field `name`: tenant `{}` is declared twice",
                    tenant.name.get_ref()
                ),
            ));
        }
        let provider = tenant.provider;
        let (client, service_account) = match provider {
            Provider::Google => {
                if tenant.app.is_some() {
                    return Err(locate.at(&tenant.name, "field `app`: a Google tenant has `oauth_client` and `service_account`, not `app`"));
                }
                let service_account = match tenant.service_account {
                    Some(sa) => Some(ServiceAccount {
                        public_key: load_key(&sa.public_key, base, locate)?,
                        client_email: sa.client_email,
                        client_id: sa.client_id,
                        delegated_scopes: sa.delegated_scopes,
                    }),
                    None => None,
                };
                (tenant.oauth_client.map(convert_client), service_account)
            }
            Provider::Microsoft => {
                if tenant.service_account.is_some() || tenant.oauth_client.is_some() {
                    return Err(locate.at(&tenant.name, "field `app`: a Microsoft tenant has `app`, not `service_account` or `oauth_client`"));
                }
                if tenant.tenant_id.is_none() {
                    return Err(locate.at(
                        &tenant.name,
                        "field `tenant_id`: a Microsoft tenant needs its tenant id",
                    ));
                }
                (tenant.app.map(convert_client), None)
            }
        };
        let mut users: Vec<User> = Vec::with_capacity(tenant.user.len());
        let mut seen = std::collections::HashSet::with_capacity(tenant.user.len());
        for user in tenant.user {
            let email = user.email.get_ref().to_ascii_lowercase();
            if !seen.insert(email.clone()) {
                return Err(locate.at(
                    &user.email,
                    format!("field `email`: user `{email}` is declared twice"),
                ));
            }
            for (count, field) in [(&user.messages, "messages"), (&user.events, "events")] {
                let Some(count) = count else { continue };
                if *count.get_ref() > MAX_GENERATED {
                    return Err(
                        locate.at(count, format!("field `{field}`: at most {MAX_GENERATED}"))
                    );
                }
            }
            let created_at = match &user.created_at {
                Some(value) => parse_time(value, "created_at", locate)?,
                None => epoch - time::Duration::days(365),
            };
            users.push(User {
                name: user.name.unwrap_or_else(|| display_name(&email)),
                email,
                admin: user.admin,
                mailbox: user.mailbox,
                licensed: user.licensed,
                suspended: user.suspended,
                guest: user.guest,
                deleted: user.deleted,
                created_at,
                messages: user.messages.as_ref().map_or(0, |c| *c.get_ref()),
                events: user.events.as_ref().map_or(0, |c| *c.get_ref()),
                granted_scopes: user.granted_scopes,
                faults: convert_faults(user.fault, provider, locate)?,
            });
        }
        if let Some(client) = &client
            && let Some(consent_user) = &client.consent_user
            && !users
                .iter()
                .any(|u| u.email.eq_ignore_ascii_case(consent_user))
        {
            return Err(locate.at(
                &tenant.name,
                format!("field `consent_user`: `{consent_user}` is not a user of this tenant"),
            ));
        }
        tenants.push(Tenant {
            name: tenant.name.into_inner(),
            provider,
            domain: tenant.domain,
            tenant_id: tenant.tenant_id.unwrap_or_else(|| "my_customer".to_owned()),
            service_account,
            client,
            users,
            faults: convert_faults(tenant.fault, provider, locate)?,
        });
    }
    Ok(Scenario {
        seed: raw.seed,
        epoch,
        access_token_lifetime_secs: raw.access_token_lifetime_secs.unwrap_or(3599),
        tenants,
    })
}

fn today() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_time(time::Time::MIDNIGHT)
}

/// "ada.lovelace@x" → "Ada Lovelace".
fn display_name(email: &str) -> String {
    let local = email.split('@').next().unwrap_or(email);
    local
        .split(['.', '_', '-'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().collect::<String>() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_error(text: &str, line: usize, needle: &str) {
        match Scenario::from_toml(text, "test.toml", Path::new(".")) {
            Ok(_) => panic!("expected an error containing {needle:?}"),
            Err(SimError::Scenario {
                line: got, message, ..
            }) => {
                assert_eq!(got, line, "{message}");
                assert!(message.contains(needle), "{message}");
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn unknown_fault_names_the_line_and_field() {
        check_error(
            "[[tenant]]\nname = \"a\"\nprovider = \"google\"\ndomain = \"a.example\"\n[[tenant.user]]\nemail = \"x@a.example\"\n[[tenant.user.fault]]\nfault = \"no_such_fault\"\n",
            8,
            "fault = \"no_such_fault\"",
        );
    }

    #[test]
    fn fault_of_the_other_provider_is_rejected() {
        check_error(
            "[[tenant]]\nname = \"a\"\nprovider = \"google\"\ndomain = \"a.example\"\n[[tenant.fault]]\nfault = \"application_access_policy\"\n",
            6,
            "field `fault`",
        );
    }

    #[test]
    fn unknown_key_and_bad_time_and_duplicates() {
        check_error("seed = 1\ncolour = 3\n", 2, "colour");
        check_error(
            "[[tenant]]\nname = \"a\"\nprovider = \"google\"\ndomain = \"d\"\n[[tenant.user]]\nemail = \"x@d\"\ncreated_at = \"yesterday\"\n",
            7,
            "created_at",
        );
        check_error(
            "[[tenant]]\nname = \"a\"\nprovider = \"google\"\ndomain = \"d\"\n[[tenant.user]]\nemail = \"x@d\"\n[[tenant.user]]\nemail = \"X@d\"\n",
            8,
            "declared twice",
        );
        check_error(
            "[[tenant]]\nname = \"m\"\nprovider = \"microsoft\"\ndomain = \"d\"\n",
            2,
            "tenant_id",
        );
    }

    #[test]
    fn missing_key_file_names_the_field() {
        check_error(
            "[[tenant]]\nname = \"a\"\nprovider = \"google\"\ndomain = \"d\"\n[tenant.service_account]\nclient_email = \"sa@x\"\nclient_id = \"1\"\npublic_key = \"nope.pem\"\n",
            8,
            "public_key",
        );
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name("ada.lovelace@x"), "Ada Lovelace");
    }
}
