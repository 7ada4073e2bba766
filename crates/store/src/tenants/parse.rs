//! Reading a tenants file: TOML text to the [`raw`](super::raw) shapes, every problem
//! collected with the line it is on (not only the first), then validated.

use std::collections::BTreeMap;

use super::raw::{MemberEntry, RawCompany, RawEntry, RawMember, RawWebhook, WebhookEntry};
use super::validate::validate;
use super::{Tenants, TenantsError, TenantsErrors};

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
            reader.tables_of(&mut company, "members", &at, |reader, index, member, at| {
                let text_of = |key: &str| {
                    member
                        .get(key)
                        .and_then(toml::Value::as_str)
                        .map(str::to_owned)
                };
                let (id, email) = (text_of("id"), text_of("email"));
                members.push(MemberEntry {
                    index,
                    id,
                    email,
                    member: reader.read::<RawMember>(member, at),
                });
            });
            let mut webhooks = Vec::new();
            reader.tables_of(&mut company, "webhooks", &at, |reader, index, mut webhook, at| {
                // A secret written into the file is refused by name, not as an unknown key
                // (and never echoed).
                if webhook.remove("secret").is_some() {
                    reader.problem(
                        &format!("{at}.secret"),
                        "inline secrets are not allowed; reference it with secret_file = \"/path\" or secret_env = \"VAR\"".to_owned(),
                    );
                }
                webhooks.push(WebhookEntry {
                    index,
                    webhook: reader.read::<RawWebhook>(webhook, at),
                });
            });
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
pub(super) struct Reader<'a> {
    text: &'a str,
    root: &'a toml::de::DeTable<'a>,
    problems: Vec<TenantsError>,
}

impl Reader<'_> {
    pub(super) fn problem(&mut self, field: &str, detail: String) {
        self.problems.push(TenantsError {
            line: locate(self.text, self.root, field),
            field: field.to_owned(),
            detail,
        });
    }

    /// Takes `company[key]`, an array of tables (`[[companies.<key>]]`), and hands `each`
    /// every table with its index and field path; an item that is not a table, or a value
    /// that is not an array, is a problem. A missing key has no tables.
    fn tables_of(
        &mut self,
        company: &mut toml::Table,
        key: &str,
        at: &str,
        mut each: impl FnMut(&mut Self, usize, toml::Table, &str),
    ) {
        match company.remove(key) {
            None => {}
            Some(toml::Value::Array(items)) => {
                for (index, item) in items.into_iter().enumerate() {
                    let at = format!("{at}.{key}[{index}]");
                    match item {
                        toml::Value::Table(table) => each(self, index, table, &at),
                        _ => self.problem(&at, "must be a table".to_owned()),
                    }
                }
            }
            Some(_) => self.problem(
                &format!("{at}.{key}"),
                format!("must be an array of tables ([[companies.{key}]])"),
            ),
        }
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
