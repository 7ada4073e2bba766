//! The declarative tenants file behind `datacap apply`: companies, their settings and
//! credential references, and their members, in TOML.
//!
//! Parsing and validation are pure (text in, [`Tenants`] or [`TenantsErrors`] out, every
//! problem of the file and not only the first) so the whole file is checked before
//! anything is written, and every problem names its line and field. The binary reads the
//! file; the store writes the validated result in one transaction. The format is
//! documented in `config/tenants.example.toml`.

use std::collections::{BTreeMap, HashSet};

use datacap_core::{CompanySettings, ConnectionMode, MemberSettings, Provider};
use serde::Deserialize;

use crate::webhooks::{EventType, SecretRef};

/// A bad tenants file: where, which field, and what is wrong. Displays as
/// `LINE: FIELD: DETAIL`; the binary puts the file name in front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {field}: {detail}")]
pub struct TenantsError {
    /// 1-based line of the offending value (or of its table when the value is missing).
    pub line: usize,
    /// The field path, like `companies[0].members[3].email`.
    pub field: String,
    pub detail: String,
}

/// Every problem of a bad tenants file, in file order (at least one). Displays as one
/// [`TenantsError`] per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct TenantsErrors {
    pub problems: Vec<TenantsError>,
}

/// A validated tenants file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenants {
    pub companies: Vec<TenantCompany>,
}

/// One company of a tenants file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCompany {
    pub id: String,
    pub name: String,
    pub settings: CompanySettings,
    /// Credential references by name (`client_id`, `client_secret_env`, `key_file`, …);
    /// never a secret value.
    pub credentials: BTreeMap<String, String>,
    pub members: Vec<TenantMember>,
    /// The company's webhook endpoints (`[[companies.webhooks]]`).
    pub webhooks: Vec<TenantWebhook>,
}

/// One webhook endpoint of a company: where its events go, where the signing secret is
/// read from (never the secret), and which events it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantWebhook {
    /// Unique within the company; stable, so deliveries keep their endpoint across applies.
    pub id: String,
    /// An `http://` or `https://` URL without user or password.
    pub url: String,
    pub secret: SecretRef,
    /// At least one, each once, in the file's order.
    pub events: Vec<EventType>,
}

/// One member of a tenants file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantMember {
    pub id: String,
    pub email: String,
    /// Other addresses of the member's own mailbox (`aliases = [...]`): the connect flow
    /// accepts an account that signs in under one of them as the member's.
    pub aliases: Vec<String>,
    /// `connection` is always `None` here: a member's own grant is stored by the OAuth
    /// connect flow, not declared.
    pub settings: MemberSettings,
    pub active: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompany {
    id: String,
    #[serde(default)]
    name: Option<String>,
    provider: Provider,
    connection_mode: ConnectionMode,
    #[serde(default)]
    settings: RawCompanySettings,
    #[serde(default)]
    credentials: BTreeMap<String, String>,
    /// Taken out and read one by one (see [`parse_tenants`]); declared so that a
    /// misspelt key's message lists it.
    #[serde(default)]
    #[allow(dead_code)]
    members: Option<serde::de::IgnoredAny>,
    /// Taken out and read one by one, like `members`.
    #[serde(default)]
    #[allow(dead_code)]
    webhooks: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    id: String,
    url: String,
    #[serde(default)]
    secret_file: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompanySettings {
    #[serde(default)]
    permission_given: bool,
    #[serde(default)]
    email_authorized: bool,
    #[serde(default)]
    calendar_authorized: bool,
    #[serde(default = "yes")]
    import_email: bool,
    #[serde(default = "yes")]
    import_calendar: bool,
    #[serde(default)]
    import_non_recorded_meetings: bool,
}

impl Default for RawCompanySettings {
    fn default() -> Self {
        RawCompanySettings {
            permission_given: false,
            email_authorized: false,
            calendar_authorized: false,
            import_email: true,
            import_calendar: true,
            import_non_recorded_meetings: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    id: String,
    email: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default = "yes")]
    active: bool,
    /// The seat that recording needs.
    #[serde(default)]
    seat: bool,
    #[serde(default)]
    recording_enabled: bool,
    #[serde(default = "yes")]
    email_import: bool,
    #[serde(default = "yes")]
    calendar_import: bool,
    #[serde(default)]
    import_non_recorded_meetings: bool,
}

fn yes() -> bool {
    true
}

/// Words that mark a credential key as holding a secret value rather than a reference.
const SECRET_WORDS: &[&str] = &[
    "secret",
    "password",
    "token",
    "private",
    "key",
    "credential",
];

/// Parses and validates a tenants file; the error lists every problem with its line and
/// field. Each company and each member is read on its own, and a bad key is set aside and
/// the rest read again, so one mistake does not hide the next.
pub fn parse_tenants(text: &str) -> Result<Tenants, TenantsErrors> {
    let syntax = |error: toml::de::Error| TenantsErrors {
        problems: vec![TenantsError {
            line: line_at(text, error.span().map_or(0, |span| span.start)),
            field: "file".to_owned(),
            detail: first_line(error.message()),
        }],
    };
    let document = toml::de::DeTable::parse(text).map_err(syntax)?;
    let table: toml::Table = text.parse().map_err(syntax)?;
    let mut reader = Reader {
        text,
        root: document.get_ref(),
        problems: Vec::new(),
    };
    let mut companies = Vec::new();
    for (key, value) in table {
        if key != "companies" {
            reader.problem(&key, format!("unknown field `{key}`, expected `companies`"));
            continue;
        }
        let toml::Value::Array(items) = value else {
            reader.problem(
                "companies",
                "must be an array of tables ([[companies]])".to_owned(),
            );
            continue;
        };
        for (c, item) in items.into_iter().enumerate() {
            let at = format!("companies[{c}]");
            let toml::Value::Table(mut company) = item else {
                reader.problem(&at, "must be a table".to_owned());
                continue;
            };
            let mut members = Vec::new();
            match company.remove("members") {
                None => {}
                Some(toml::Value::Array(items)) => {
                    for (m, item) in items.into_iter().enumerate() {
                        let at = format!("{at}.members[{m}]");
                        match item {
                            toml::Value::Table(member) => {
                                let text_of = |key: &str| {
                                    member
                                        .get(key)
                                        .and_then(toml::Value::as_str)
                                        .map(str::to_owned)
                                };
                                let (id, email) = (text_of("id"), text_of("email"));
                                members.push(MemberEntry {
                                    index: m,
                                    id,
                                    email,
                                    member: reader.read::<RawMember>(member, &at),
                                });
                            }
                            _ => reader.problem(&at, "must be a table".to_owned()),
                        }
                    }
                }
                Some(_) => reader.problem(
                    &format!("{at}.members"),
                    "must be an array of tables ([[companies.members]])".to_owned(),
                ),
            }
            let mut webhooks = Vec::new();
            match company.remove("webhooks") {
                None => {}
                Some(toml::Value::Array(items)) => {
                    for (w, item) in items.into_iter().enumerate() {
                        let at = format!("{at}.webhooks[{w}]");
                        match item {
                            toml::Value::Table(mut webhook) => {
                                // A secret written into the file is refused by name, not
                                // as an unknown key (and never echoed).
                                if webhook.remove("secret").is_some() {
                                    reader.problem(
                                        &format!("{at}.secret"),
                                        "inline secrets are not allowed; reference it with secret_file = \"/path\" or secret_env = \"VAR\"".to_owned(),
                                    );
                                }
                                webhooks.push(WebhookEntry {
                                    index: w,
                                    webhook: reader.read::<RawWebhook>(webhook, &at),
                                });
                            }
                            _ => reader.problem(&at, "must be a table".to_owned()),
                        }
                    }
                }
                Some(_) => reader.problem(
                    &format!("{at}.webhooks"),
                    "must be an array of tables ([[companies.webhooks]])".to_owned(),
                ),
            }
            // A company that does not read still has its id, credentials and members
            // checked, so their problems are listed too.
            let id = company
                .get("id")
                .and_then(toml::Value::as_str)
                .map(str::to_owned);
            let credentials: BTreeMap<String, String> = company
                .get("credentials")
                .and_then(|value| value.clone().try_into().ok())
                .unwrap_or_default();
            let read = reader.read::<RawCompany>(company, &at);
            companies.push(RawEntry {
                index: c,
                id: read.as_ref().map(|company| company.id.clone()).or(id),
                credentials: read
                    .as_ref()
                    .map_or(credentials, |company| company.credentials.clone()),
                company: read,
                members,
                webhooks,
            });
        }
    }
    let tenants = validate(companies, &mut reader);
    if reader.problems.is_empty() {
        Ok(tenants)
    } else {
        reader.problems.sort_by_key(|problem| problem.line);
        Err(TenantsErrors {
            problems: reader.problems,
        })
    }
}

/// Collects the problems of one tenants file, each located in its text.
struct Reader<'a> {
    text: &'a str,
    root: &'a toml::de::DeTable<'a>,
    problems: Vec<TenantsError>,
}

impl Reader<'_> {
    fn problem(&mut self, field: &str, detail: String) {
        self.problems.push(TenantsError {
            line: locate(self.text, self.root, field),
            field: field.to_owned(),
            detail,
        });
    }

    /// Deserializes one table at `at`, reporting every bad key: each one reported is
    /// taken out and the rest read again (a missing field it causes is not reported
    /// twice). `None` when anything was wrong.
    fn read<T: serde::de::DeserializeOwned>(&mut self, table: toml::Table, at: &str) -> Option<T> {
        let mut table = table;
        let mut removed: Vec<String> = Vec::new();
        let mut clean = true;
        // Each round takes one key out, so this ends.
        loop {
            // Through TOML text again, not `toml::Value`, so the messages are the ones
            // the text deserializer gives (`unknown variant`, `invalid type: string
            // "yes", expected a boolean`); lines come from the original text (`locate`).
            let text = toml::to_string(&table).unwrap_or_default();
            let Ok(deserializer) = toml::Deserializer::parse(&text) else {
                return None;
            };
            let error = match serde_path_to_error::deserialize(deserializer) {
                Ok(value) => return clean.then_some(value),
                Err(error) => error,
            };
            let path = error.path().to_string();
            let detail = first_line(error.into_inner().message());
            let missing = detail
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
                .unwrap_or("");
            if !missing.is_empty() && removed.iter().any(|key| key == missing) {
                return None;
            }
            let field = if path == "." {
                at.to_owned()
            } else {
                format!("{at}.{path}")
            };
            self.problem(&field, detail);
            clean = false;
            if path == "." || !remove_path(&mut table, &path) {
                return None;
            }
            removed.push(path.split('.').next().unwrap_or("").to_owned());
        }
    }
}

/// Removes the value at `path` (`seat`, `settings.permission_given`) from `table`; false
/// when it is not there.
fn remove_path(table: &mut toml::Table, path: &str) -> bool {
    match path.split_once('.') {
        None => table.remove(path).is_some(),
        Some((head, rest)) => match table.get_mut(head) {
            Some(toml::Value::Table(inner)) => {
                remove_path(inner, rest) || table.remove(head).is_some()
            }
            Some(_) => table.remove(head).is_some(),
            None => false,
        },
    }
}

/// One `[[companies]]` entry as read: the company when it read cleanly, and what can be
/// checked of it either way.
struct RawEntry {
    index: usize,
    id: Option<String>,
    credentials: BTreeMap<String, String>,
    company: Option<RawCompany>,
    members: Vec<MemberEntry>,
    webhooks: Vec<WebhookEntry>,
}

/// One `[[companies.webhooks]]` entry as read.
struct WebhookEntry {
    index: usize,
    webhook: Option<RawWebhook>,
}

/// One `[[companies.members]]` entry as read, like [`RawEntry`].
struct MemberEntry {
    index: usize,
    id: Option<String>,
    email: Option<String>,
    member: Option<RawMember>,
}

fn validate(raw: Vec<RawEntry>, reader: &mut Reader<'_>) -> Tenants {
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

fn first_line(message: &str) -> String {
    message.trim().lines().next().unwrap_or("").to_owned()
}

fn line_at(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line of the deepest part of `field` (like `companies[0].members[3].email`) that
/// exists in the document: the value when present, else its table.
fn locate(text: &str, root: &toml::de::DeTable<'_>, field: &str) -> usize {
    let mut offset = 0;
    let mut table = Some(root);
    let mut array: Option<&toml::de::DeArray<'_>> = None;
    for segment in field.split('.') {
        let (name, indexes) = match segment.find('[') {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        let mut value = match (table, name.is_empty()) {
            (Some(current), false) => {
                match current
                    .iter()
                    .find(|(key, _)| key.get_ref().as_ref() == name)
                {
                    Some((key, value)) => {
                        offset = key.span().start;
                        value
                    }
                    None => break,
                }
            }
            _ => break,
        };
        for index in indexes
            .split(['[', ']'])
            .filter(|part| !part.is_empty())
            .filter_map(|part| part.parse::<usize>().ok())
        {
            array = match value.get_ref() {
                toml::de::DeValue::Array(items) => Some(items),
                _ => None,
            };
            match array.and_then(|items| items.get(index)) {
                Some(item) => {
                    offset = item.span().start;
                    value = item;
                }
                None => break,
            }
        }
        table = match value.get_ref() {
            toml::de::DeValue::Table(inner) => Some(inner),
            _ => None,
        };
    }
    let _ = array;
    line_at(text, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[companies]]
id = "acme"
name = "Acme"
provider = "google_workspace"
connection_mode = "company_wide"
settings = { permission_given = true, email_authorized = true, calendar_authorized = true }
credentials = { service_account_key_file = "/etc/datacap/acme.json", subject = "admin@acme.test" }

[[companies.members]]
id = "ana"
email = "ana@acme.test"
seat = true
recording_enabled = true

[[companies.members]]
id = "bob"
email = "bob@acme.test"
"#;

    fn check_error(text: &str, expected: &str) {
        let error = parse_tenants(text).unwrap_err();
        assert_eq!(error.to_string(), expected, "for input:\n{text}");
    }

    #[test]
    fn every_problem_is_listed_in_file_order() {
        let text = GOOD
            .replace("\"google_workspace\"", "\"gmail\"")
            .replace("seat = true", "seat = \"yes\"\nsaet = true")
            .replace("id = \"bob\"", "id = \"ana\"")
            .replace("bob@acme.test", "bob-at-acme")
            .replace("subject = ", "client_secret = ");
        check_error(
            &format!("{text}\n[extra]\nx = 1\n"),
            "5: companies[0].provider: unknown variant `gmail`, expected one of `google_workspace`, `microsoft_365`, `none`\n\
             8: companies[0].credentials.client_secret: inline secrets are not allowed; reference it with client_secret_file = \"/path\" or client_secret_env = \"VAR\"\n\
             13: companies[0].members[0].seat: invalid type: string \"yes\", expected a boolean\n\
             14: companies[0].members[0].saet: unknown field `saet`, expected one of `id`, `email`, `aliases`, `active`, `seat`, `recording_enabled`, `email_import`, `calendar_import`, `import_non_recorded_meetings`\n\
             18: companies[0].members[1].id: member id \"ana\" appears twice\n\
             19: companies[0].members[1].email: \"bob-at-acme\" is not an email address\n\
             21: extra: unknown field `extra`, expected `companies`",
        );
    }

    #[test]
    fn a_missing_field_is_reported_once() {
        check_error(
            "[[companies]]\nprovider = \"none\"\nconnection_mode = \"company_wide\"\n\n[[companies]]\nid = \"b\"\nprovider = 3\nconnection_mode = \"company_wide\"\n",
            "1: companies[0]: missing field `id`\n7: companies[1].provider: wanted string or table",
        );
    }

    const HOOKS: &str = r#"
[[companies.webhooks]]
id = "ops"
url = "https://hooks.acme.test/datacap"
secret_file = "/etc/datacap/acme-hook.secret"

[[companies.webhooks]]
id = "chat"
url = "http://127.0.0.1:9000/in"
secret_env = "ACME_CHAT_HOOK_SECRET"
events = ["company.banner_changed"]
"#;

    #[test]
    fn webhooks_are_read_with_their_secret_reference_and_events() {
        let tenants = parse_tenants(&format!("{GOOD}{HOOKS}")).unwrap();
        let hooks = &tenants.companies[0].webhooks;
        assert_eq!(hooks.len(), 2);
        assert_eq!(hooks[0].id, "ops");
        assert_eq!(
            hooks[0].secret,
            SecretRef::File("/etc/datacap/acme-hook.secret".to_owned())
        );
        assert_eq!(hooks[0].events, EventType::ALL);
        assert_eq!(
            hooks[1].secret,
            SecretRef::Env("ACME_CHAT_HOOK_SECRET".to_owned())
        );
        assert_eq!(hooks[1].events, [EventType::CompanyBannerChanged]);
        // Members after the webhooks still belong to the company.
        assert_eq!(tenants.companies[0].members.len(), 2);
    }

    #[test]
    fn bad_webhooks_name_their_line_and_field() {
        let check = |from: &str, to: &str, expected: &str| {
            check_error(&format!("{GOOD}{}", HOOKS.replace(from, to)), expected);
        };
        check(
            "https://hooks.acme.test/datacap",
            "ftp://hooks.acme.test/datacap",
            "22: companies[0].webhooks[0].url: \"ftp://hooks.acme.test/datacap\" is not an http:// or https:// url",
        );
        check(
            "https://hooks.acme.test/datacap",
            "https://user:pw@hooks.acme.test/",
            "22: companies[0].webhooks[0].url: must not carry a user or password; the endpoint authenticates us by the signature",
        );
        check(
            "https://hooks.acme.test/datacap",
            "https:///nohost",
            "22: companies[0].webhooks[0].url: \"https:///nohost\" has no host",
        );
        check(
            "secret_file = \"/etc/datacap/acme-hook.secret\"\n",
            "",
            "20: companies[0].webhooks[0]: missing secret: set secret_file = \"/path\" or secret_env = \"VAR\" (a whsec_ secret)",
        );
        check(
            "secret_file = \"/etc/datacap/acme-hook.secret\"",
            "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
            "20: companies[0].webhooks[0]: missing secret: set secret_file = \"/path\" or secret_env = \"VAR\" (a whsec_ secret)\n\
             23: companies[0].webhooks[0].secret: inline secrets are not allowed; reference it with secret_file = \"/path\" or secret_env = \"VAR\"",
        );
        check(
            "secret_env = \"ACME_CHAT_HOOK_SECRET\"",
            "secret_env = \"whsec_abc\"",
            "28: companies[0].webhooks[1].secret_env: must name an environment variable (A-Z, 0-9, _), got a value that looks like a secret; use secret_env = \"NAME_OF_VAR\"",
        );
        check(
            "[\"company.banner_changed\"]",
            "[\"company.banner_changed\", \"member.deleted\"]",
            "29: companies[0].webhooks[1].events: unknown event `member.deleted`, expected one of `member.status_changed`, `company.banner_changed`",
        );
        check(
            "[\"company.banner_changed\"]",
            "[]",
            "29: companies[0].webhooks[1].events: must name at least one event",
        );
        check(
            "id = \"chat\"",
            "id = \"ops\"",
            "26: companies[0].webhooks[1].id: webhook id \"ops\" appears twice in this company",
        );
        check(
            "id = \"chat\"",
            "id = \"chat\"\nretries = 3",
            "27: companies[0].webhooks[1].retries: unknown field `retries`, expected one of `id`, `url`, `secret_file`, `secret_env`, `events`",
        );
    }

    #[test]
    fn a_secret_value_never_appears_in_an_error() {
        let text = format!(
            "{GOOD}{}",
            HOOKS.replace(
                "secret_file = \"/etc/datacap/acme-hook.secret\"",
                "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\""
            )
        );
        let error = parse_tenants(&text).unwrap_err().to_string();
        assert!(!error.contains("MfKQ9r8"), "{error}");
    }

    #[test]
    fn aliases_are_addresses_by_the_same_rules() {
        let with = |aliases: &str| {
            GOOD.replace(
                "email = \"ana@acme.test\"",
                &format!("email = \"ana@acme.test\"\naliases = {aliases}"),
            )
        };
        let tenants =
            parse_tenants(&with("[\"Ana.Lopez@acme.test\", \"ana@acme-old.test\"]")).unwrap();
        assert_eq!(
            tenants.companies[0].members[0].aliases,
            ["Ana.Lopez@acme.test", "ana@acme-old.test"]
        );
        assert!(
            parse_tenants(GOOD).unwrap().companies[0].members[1]
                .aliases
                .is_empty()
        );
        check_error(
            &with("[\"ana.lopez\"]"),
            "13: companies[0].members[0].aliases[0]: \"ana.lopez\" is not an email address",
        );
        check_error(
            &with("[\"ANA@acme.test\"]"),
            "13: companies[0].members[0].aliases[0]: alias \"ANA@acme.test\" is the member's own email",
        );
        // A colleague's address, or the same alias twice, would make two members of one
        // mailbox (the later of the two is named).
        check_error(
            &with("[\"a@acme.test\", \"Bob@acme.test\"]"),
            "19: companies[0].members[1].email: email \"bob@acme.test\" appears twice in this company",
        );
        check_error(
            &GOOD.replace(
                "email = \"bob@acme.test\"",
                "email = \"bob@acme.test\"\naliases = [\"ANA@acme.test\"]",
            ),
            "19: companies[0].members[1].aliases[0]: address \"ANA@acme.test\" appears twice in this company",
        );
        check_error(
            &with("[\"a@acme.test\", \"A@acme.test\"]"),
            "13: companies[0].members[0].aliases[1]: address \"A@acme.test\" appears twice in this company",
        );
        check_error(
            &with("\"a@acme.test\""),
            "13: companies[0].members[0].aliases: invalid type: string \"a@acme.test\", expected a sequence",
        );
    }

    #[test]
    fn parses_a_good_file() {
        let tenants = parse_tenants(GOOD).unwrap();
        assert_eq!(tenants.companies.len(), 1);
        let acme = &tenants.companies[0];
        assert_eq!(acme.members.len(), 2);
        assert!(acme.settings.permission_given);
        assert!(acme.members[0].settings.has_recording_seat);
        assert!(acme.members[1].active);
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let text = include_str!("../../../config/tenants.example.toml");
        let tenants = parse_tenants(text).unwrap();
        let ids: Vec<_> = tenants.companies.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["acme", "globex", "initech"]);
    }

    #[test]
    fn errors_name_line_and_field() {
        check_error(
            &GOOD.replace("bob@acme.test", "bob-at-acme"),
            "18: companies[0].members[1].email: \"bob-at-acme\" is not an email address",
        );
        check_error(
            &GOOD.replace("\"google_workspace\"", "\"gmail\""),
            "5: companies[0].provider: unknown variant `gmail`, expected one of `google_workspace`, `microsoft_365`, `none`",
        );
        check_error(
            &GOOD.replace("id = \"bob\"", "id = \"ana\""),
            "17: companies[0].members[1].id: member id \"ana\" appears twice",
        );
        check_error(
            &GOOD.replace("subject = ", "client_secret = "),
            "8: companies[0].credentials.client_secret: inline secrets are not allowed; reference it with client_secret_file = \"/path\" or client_secret_env = \"VAR\"",
        );
        check_error(
            &GOOD.replace("seat = true", "seat = \"yes\""),
            "13: companies[0].members[0].seat: invalid type: string \"yes\", expected a boolean",
        );
        check_error(
            &GOOD.replace(
                "[[companies.members]]\nid = \"bob\"",
                "[[companies.members]]\nidd = \"bob\"",
            ),
            "16: companies[0].members[1]: missing field `id`\n17: companies[0].members[1].idd: unknown field `idd`, expected one of `id`, `email`, `aliases`, `active`, `seat`, `recording_enabled`, `email_import`, `calendar_import`, `import_non_recorded_meetings`",
        );
        check_error(
            "[[companies]]\nid = \"x\"\nprovider = ",
            "3: file: string values must be quoted, expected literal string",
        );
    }
}
