//! The declarative tenants file behind `datacap apply`: companies, their settings and
//! credential references, and their members, in TOML.
//!
//! Parsing and validation are pure (text in, [`Tenants`] or one [`TenantsError`] out) so
//! the whole file is checked before anything is written, and every error names its line
//! and field. The binary reads the file; the store writes the validated result in one
//! transaction. The format is documented in `config/tenants.example.toml`.

use std::collections::{BTreeMap, HashSet};

use datacap_core::{CompanySettings, ConnectionMode, MemberSettings, Provider};
use serde::Deserialize;

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
}

/// One member of a tenants file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantMember {
    pub id: String,
    pub email: String,
    /// `connection` is always `None` here: a member's own grant is stored by the OAuth
    /// connect flow, not declared.
    pub settings: MemberSettings,
    pub active: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    companies: Vec<RawCompany>,
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
    #[serde(default)]
    members: Vec<RawMember>,
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

/// Parses and validates a tenants file; the error names the first bad line and field.
pub fn parse_tenants(text: &str) -> Result<Tenants, TenantsError> {
    let document = toml::de::DeTable::parse(text).map_err(|error| TenantsError {
        line: line_at(text, error.span().map_or(0, |span| span.start)),
        field: "file".to_owned(),
        detail: first_line(error.message()),
    })?;
    let deserializer = toml::Deserializer::parse(text).map_err(|error| TenantsError {
        line: line_at(text, error.span().map_or(0, |span| span.start)),
        field: "file".to_owned(),
        detail: first_line(error.message()),
    })?;
    let raw: RawFile = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let field = if path == "." { "file".to_owned() } else { path };
        let line = match inner.span() {
            Some(span) => line_at(text, span.start),
            None => locate(text, document.get_ref(), &field),
        };
        TenantsError {
            line,
            field,
            detail: first_line(inner.message()),
        }
    })?;
    let fail = |field: String, detail: String| TenantsError {
        line: locate(text, document.get_ref(), &field),
        field,
        detail,
    };
    validate(raw, fail)
}

fn validate(
    raw: RawFile,
    fail: impl Fn(String, String) -> TenantsError,
) -> Result<Tenants, TenantsError> {
    let mut company_ids = HashSet::new();
    let mut member_ids = HashSet::new();
    let mut companies = Vec::with_capacity(raw.companies.len());
    for (c, company) in raw.companies.into_iter().enumerate() {
        let at = |field: &str| format!("companies[{c}].{field}");
        check_id(&company.id).map_err(|detail| fail(at("id"), detail))?;
        if !company_ids.insert(company.id.clone()) {
            return Err(fail(
                at("id"),
                format!("company id {:?} appears twice", company.id),
            ));
        }
        for (key, value) in &company.credentials {
            check_credential(key, value)
                .map_err(|detail| fail(at(&format!("credentials.{key}")), detail))?;
        }
        let mut emails = HashSet::new();
        let mut members = Vec::with_capacity(company.members.len());
        for (m, member) in company.members.into_iter().enumerate() {
            let at = |field: &str| format!("companies[{c}].members[{m}].{field}");
            check_id(&member.id).map_err(|detail| fail(at("id"), detail))?;
            if !member_ids.insert(member.id.clone()) {
                return Err(fail(
                    at("id"),
                    format!("member id {:?} appears twice", member.id),
                ));
            }
            check_email(&member.email).map_err(|detail| fail(at("email"), detail))?;
            if !emails.insert(member.email.to_lowercase()) {
                return Err(fail(
                    at("email"),
                    format!("email {:?} appears twice in this company", member.email),
                ));
            }
            members.push(TenantMember {
                id: member.id,
                email: member.email,
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
            credentials: company.credentials,
            members,
        });
    }
    Ok(Tenants { companies })
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
            "17: companies[0].members[1].idd: unknown field `idd`, expected one of `id`, `email`, `active`, `seat`, `recording_enabled`, `email_import`, `calendar_import`, `import_non_recorded_meetings`",
        );
        check_error(
            "[[companies]]\nid = \"x\"\nprovider = ",
            "3: file: string values must be quoted, expected literal string",
        );
    }
}
