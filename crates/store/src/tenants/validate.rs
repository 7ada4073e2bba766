//! Validating a read tenants file: what its shapes cannot say (ids, addresses, webhook
//! URLs, credentials that are references and never secrets, nothing declared twice),
//! every problem reported through the [`Reader`], and the [`Tenants`] built.

use std::collections::HashSet;

use datacap_core::{CompanySettings, MemberSettings};

use super::parse::Reader;
use super::raw::RawEntry;
use super::{TenantCompany, TenantMember, TenantWebhook, Tenants};
use crate::webhooks::{EventType, SecretRef};

/// Words that mark a credential key as holding a secret value rather than a reference.
const SECRET_WORDS: &[&str] = &[
    "secret",
    "password",
    "token",
    "private",
    "key",
    "credential",
];

pub(super) fn validate(raw: Vec<RawEntry>, reader: &mut Reader<'_>) -> Tenants {
    let mut company_ids = HashSet::new();
    let mut member_ids = HashSet::new();
    let mut companies = Vec::with_capacity(raw.len());
    for entry in raw {
        let c = entry.index;
        let at = |field: &str| format!("companies[{c}].{field}");
        if let Some(id) = &entry.id {
            if let Err(detail) = check_id(id) {
                reader.problem(&at("id"), detail);
            } else if !company_ids.insert(id.clone()) {
                reader.problem(&at("id"), format!("company id {id:?} appears twice"));
            }
        }
        for (key, value) in &entry.credentials {
            if let Err(detail) = check_credential(key, value) {
                reader.problem(&at(&format!("credentials.{key}")), detail);
            }
        }
        let mut emails = HashSet::new();
        let mut members = Vec::with_capacity(entry.members.len());
        for entry in entry.members {
            let m = entry.index;
            let at = |field: &str| format!("companies[{c}].members[{m}].{field}");
            if let Some(id) = &entry.id {
                if let Err(detail) = check_id(id) {
                    reader.problem(&at("id"), detail);
                } else if !member_ids.insert(id.clone()) {
                    reader.problem(&at("id"), format!("member id {id:?} appears twice"));
                }
            }
            if let Some(email) = &entry.email {
                if let Err(detail) = check_email(email) {
                    reader.problem(&at("email"), detail);
                } else if !emails.insert(email.to_lowercase()) {
                    reader.problem(
                        &at("email"),
                        format!("email {email:?} appears twice in this company"),
                    );
                }
            }
            let Some(member) = entry.member else {
                continue;
            };
            // Aliases follow the address's rules: well-formed, and no address twice in a
            // company (an alias that is a colleague's address would let the colleague
            // connect as this member).
            for (a, alias) in member.aliases.iter().enumerate() {
                let field = at(&format!("aliases[{a}]"));
                if let Err(detail) = check_email(alias) {
                    reader.problem(&field, detail);
                } else if alias.eq_ignore_ascii_case(&member.email) {
                    reader.problem(&field, format!("alias {alias:?} is the member's own email"));
                } else if !emails.insert(alias.to_lowercase()) {
                    reader.problem(
                        &field,
                        format!("address {alias:?} appears twice in this company"),
                    );
                }
            }
            members.push(TenantMember {
                id: member.id,
                email: member.email,
                aliases: member.aliases,
                settings: MemberSettings {
                    has_recording_seat: member.seat,
                    recording_enabled: member.recording_enabled,
                    email_import: member.email_import,
                    calendar_import: member.calendar_import,
                    import_non_recorded_meetings: member.import_non_recorded_meetings,
                    connection: None,
                },
                active: member.active,
            });
        }
        let mut webhook_ids = HashSet::new();
        let mut webhooks = Vec::with_capacity(entry.webhooks.len());
        for webhook_entry in entry.webhooks {
            let w = webhook_entry.index;
            let at = |field: &str| format!("companies[{c}].webhooks[{w}].{field}");
            let Some(raw) = webhook_entry.webhook else {
                continue;
            };
            let mut clean = true;
            let mut problem = |field: &str, detail: String| {
                reader.problem(&at(field), detail);
                clean = false;
            };
            if let Err(detail) = check_id(&raw.id) {
                problem("id", detail);
            } else if !webhook_ids.insert(raw.id.clone()) {
                problem(
                    "id",
                    format!("webhook id {:?} appears twice in this company", raw.id),
                );
            }
            if let Err(detail) = check_webhook_url(&raw.url) {
                problem("url", detail);
            }
            let secret = match (raw.secret_file, raw.secret_env) {
                (Some(path), None) => match check_credential("secret_file", &path) {
                    Ok(()) => Some(SecretRef::File(path)),
                    Err(detail) => {
                        problem("secret_file", detail);
                        None
                    }
                },
                (None, Some(name)) => match check_credential("secret_env", &name) {
                    Ok(()) => Some(SecretRef::Env(name)),
                    Err(detail) => {
                        problem("secret_env", detail);
                        None
                    }
                },
                (Some(_), Some(_)) => {
                    problem(
                        "secret_env",
                        "set only one of secret_file and secret_env".to_owned(),
                    );
                    None
                }
                (None, None) => {
                    reader.problem(
                        &format!("companies[{c}].webhooks[{w}]"),
                        "missing secret: set secret_file = \"/path\" or secret_env = \"VAR\" (a whsec_ secret)".to_owned(),
                    );
                    clean = false;
                    None
                }
            };
            let mut events = Vec::new();
            match raw.events {
                None => events.extend(EventType::ALL),
                Some(names) if names.is_empty() => {
                    reader.problem(&at("events"), "must name at least one event".to_owned());
                    clean = false;
                }
                Some(names) => {
                    for name in names {
                        match EventType::parse(&name) {
                            Some(event) if events.contains(&event) => {
                                reader.problem(
                                    &at("events"),
                                    format!("event `{name}` appears twice"),
                                );
                                clean = false;
                            }
                            Some(event) => events.push(event),
                            None => {
                                reader.problem(
                                    &at("events"),
                                    format!(
                                        "unknown event `{name}`, expected one of {}",
                                        EventType::ALL
                                            .iter()
                                            .map(|event| format!("`{}`", event.as_str()))
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    ),
                                );
                                clean = false;
                            }
                        }
                    }
                }
            }
            if let (true, Some(secret)) = (clean, secret) {
                webhooks.push(TenantWebhook {
                    id: raw.id,
                    url: raw.url,
                    secret,
                    events,
                });
            }
        }
        let Some(company) = entry.company else {
            continue;
        };
        let settings = company.settings;
        companies.push(TenantCompany {
            name: company.name.unwrap_or_else(|| company.id.clone()),
            id: company.id,
            settings: CompanySettings {
                provider: company.provider,
                connection_mode: company.connection_mode,
                permission_given: settings.permission_given,
                email_authorized: settings.email_authorized,
                calendar_authorized: settings.calendar_authorized,
                import_email: settings.import_email,
                import_calendar: settings.import_calendar,
                import_non_recorded_meetings: settings.import_non_recorded_meetings,
            },
            credentials: entry.credentials,
            members,
            webhooks,
        });
    }
    Tenants { companies }
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("must be 1 to 128 characters".to_owned());
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
    {
        return Err(format!(
            "{id:?} may only hold letters, digits, '-', '_', '.' and '@'"
        ));
    }
    Ok(())
}

/// A webhook URL: `http://` or `https://`, a host, no whitespace, and no user or password
/// (a secret in a URL would be stored and shown as written).
fn check_webhook_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return Err(format!("{url:?} is not an http:// or https:// url"));
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} holds whitespace"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(
            "must not carry a user or password; the endpoint authenticates us by the signature"
                .to_owned(),
        );
    }
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty())
        .map_or(authority, |(host, _)| host);
    if host.is_empty() || host == "[]" {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

fn check_email(email: &str) -> Result<(), String> {
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!("{email:?} is not an email address"))
    }
}

/// Credentials are references: `*_file` (a path the daemon reads), `*_env` (an
/// environment variable it reads), or plain identifiers (`client_id`, `tenant_id`,
/// `subject`). A key that names a secret without being a reference holds the secret
/// itself, which the file must never carry.
fn check_credential(key: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    if key.ends_with("_file") || key.ends_with("_env") {
        if key.ends_with("_env")
            && !value
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!(
                "must name an environment variable (A-Z, 0-9, _), got a value that looks like a secret; use {key} = \"NAME_OF_VAR\""
            ));
        }
        return Ok(());
    }
    let lower = key.to_ascii_lowercase();
    if SECRET_WORDS.iter().any(|word| lower.contains(word)) {
        return Err(format!(
            "inline secrets are not allowed; reference it with {key}_file = \"/path\" or {key}_env = \"VAR\""
        ));
    }
    Ok(())
}
