//! Where the configuration comes from: the file (`--config`, else the default path when it
//! exists) merged with `DATACAP_<SECTION>__<KEY>` variables, and every problem reported
//! with its key and its line (or the variable it came from), not only the first.

use super::*;

/// Loads the configuration: `explicit` (which must exist) or [`DEFAULT_PATH`] if present,
/// else the built-in defaults; then the `DATACAP_*__*` variables of `env` on top. Any
/// problem is an error listing every problem, one per line.
pub fn load(
    explicit: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Config> {
    let (source, text) = read_text(explicit)?;
    Ok(parse(&text, &source, env)?)
}

/// Like [`load`], and also every key's effective value (`section.key` → its value as
/// TOML, defaults included): what a SIGHUP reload compares to name the keys it changes.
pub fn load_with_values(
    explicit: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<(Config, BTreeMap<String, String>)> {
    let (source, text) = read_text(explicit)?;
    let env: Vec<(String, String)> = env.into_iter().collect();
    let config = parse(&text, &source, env.clone())?;
    Ok((config, effective_values(&text, env)))
}

/// The config file's name (for messages) and text: `explicit` (which must exist) or
/// [`DEFAULT_PATH`] if present, else empty (the built-in defaults).
fn read_text(explicit: Option<&Path>) -> anyhow::Result<(String, String)> {
    match explicit {
        Some(path) => Ok((
            path.display().to_string(),
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?,
        )),
        None => match std::fs::read_to_string(DEFAULT_PATH) {
            Ok(text) => Ok((DEFAULT_PATH.to_owned(), text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(("built-in defaults".to_owned(), String::new()))
            }
            Err(error) => {
                Err(error).with_context(|| format!("cannot read config file {DEFAULT_PATH}"))
            }
        },
    }
}

/// The sections this binary reads; any other top-level key is a problem (a misspelt
/// `[wokrer]` would otherwise silently leave its keys at their defaults).
pub const SECTIONS: &[&str] = &[
    "database",
    "encryption",
    "retention",
    "worker",
    "google",
    "microsoft",
    "log",
    "http",
    "web",
    "smtp",
    "webhooks",
];

/// One problem of a configuration: where (`FILE:LINE` or `env NAME`), which key, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    pub at: String,
    pub key: String,
    pub detail: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.key, self.detail)
    }
}

/// Every problem of a configuration (at least one), file problems in line order, then
/// the environment's; displays as one problem per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    pub problems: Vec<ConfigProblem>,
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

/// Every key's effective value of a configuration that [`parse`] accepted.
fn effective_values(text: &str, env: Vec<(String, String)>) -> BTreeMap<String, String> {
    let mut table: toml::Table = text.parse().unwrap_or_default();
    merge_env(&mut table, env);
    let raw: RawConfig = toml::Value::Table(table).try_into().unwrap_or_default();
    let mut values = BTreeMap::new();
    if let Ok(toml::Value::Table(sections)) = toml::Value::try_from(&raw) {
        for (section, keys) in sections {
            if let toml::Value::Table(keys) = keys {
                for (key, value) in keys {
                    values.insert(format!("{section}.{key}"), value.to_string());
                }
            }
        }
    }
    values
}

/// Puts the `DATACAP_<SECTION>__<KEY>` variables of known sections into `table`.
fn merge_env(table: &mut toml::Table, env: Vec<(String, String)>) {
    for (name, value) in env {
        let Some((section, key)) = name
            .strip_prefix(ENV_PREFIX)
            .and_then(|rest| rest.split_once("__"))
        else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        if !SECTIONS.contains(&section.as_str()) {
            continue;
        }
        if let toml::Value::Table(section_table) = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            section_table.insert(key, env_value(&value));
        }
    }
}

/// Parses config `text` (from `source`, for messages) with `env` overrides on top, and
/// reports every problem, not only the first: an unknown section or key, a value of the
/// wrong type, a value out of range. Each reported key is set aside (back to its default)
/// and the rest validated again, until the rest passes.
pub fn parse(
    text: &str,
    source: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let mut table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        let line = error
            .span()
            .map_or(1, |span| text[..span.start].matches('\n').count() + 1);
        ConfigErrors {
            problems: vec![ConfigProblem {
                at: format!("{source}:{line}"),
                key: "file".to_owned(),
                detail: error.message().lines().next().unwrap_or("").to_owned(),
            }],
        }
    })?;
    let mut problems = Vec::new();
    // Sections and their keys as written in the file, with their lines.
    let lines = KeyLines::of(text);
    let file_problem = |key: &str, detail: String| ConfigProblem {
        at: format!("{source}:{}", lines.line(key)),
        key: key.to_owned(),
        detail,
    };
    for section in table.keys() {
        if !SECTIONS.contains(&section.as_str()) {
            problems.push(file_problem(
                section,
                format!(
                    "unknown section, ignored by datacap (its keys would fall back to defaults); expected one of {}",
                    SECTIONS.join(", ")
                ),
            ));
        }
    }
    table.retain(|section, _| SECTIONS.contains(&section));
    let mut env_problems = Vec::new();
    let mut from_env: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        if !SECTIONS.contains(&section.as_str()) {
            // DATACAP_TEST_POSTGRES_URL-style variables are not config overrides; a
            // double underscore after an unknown section is a misspelt one.
            env_problems.push(ConfigProblem {
                at: format!("env {name}"),
                key: section,
                detail: format!("unknown section; expected one of {}", SECTIONS.join(", ")),
            });
            continue;
        }
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            env_problems.push(ConfigProblem {
                at: format!("env {name}"),
                key: section.clone(),
                detail: format!("[{section}] in {source} is not a table"),
            });
            continue;
        };
        section_table.insert(key.clone(), env_value(&value));
        from_env.insert(format!("{section}.{key}"), name);
    }
    // Each round takes the reported key (or its section) out, so this ends.
    loop {
        let (key, detail) = match read(table.clone()) {
            Ok(config) if problems.is_empty() && env_problems.is_empty() => return Ok(config),
            Ok(_) => break,
            Err(problem) => problem,
        };
        match from_env.get(&key) {
            Some(name) => env_problems.push(ConfigProblem {
                at: format!("env {name}"),
                key: key.clone(),
                detail,
            }),
            None => problems.push(file_problem(&key, detail)),
        }
        if !remove_key(&mut table, &key) {
            break;
        }
    }
    problems.sort_by_key(|problem| lines.line(&problem.key));
    problems.extend(env_problems);
    Err(ConfigErrors { problems })
}

/// Deserializes and validates the merged table; the first problem as (key, detail).
fn read(table: toml::Table) -> Result<Config, (String, String)> {
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|error| {
            let key = error.path().to_string();
            let detail = error
                .into_inner()
                .message()
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            (key, detail)
        })?;
    validate(raw).map_err(|(key, detail)| (key.to_owned(), detail))
}

/// Removes `section.key` (or the whole section when the key is not in it, as for
/// "[encryption] needs key_file or key_env"); false when there was nothing to remove.
fn remove_key(table: &mut toml::Table, key: &str) -> bool {
    let (section, field) = key.split_once('.').unwrap_or((key, ""));
    if let Some(toml::Value::Table(inner)) = table.get_mut(section)
        && inner.remove(field).is_some()
    {
        return true;
    }
    table.remove(section).is_some()
}

/// The lines of a config file's sections and keys.
struct KeyLines<'a> {
    text: &'a str,
    document: Option<toml::Spanned<toml::de::DeTable<'a>>>,
}

impl<'a> KeyLines<'a> {
    fn of(text: &'a str) -> KeyLines<'a> {
        KeyLines {
            text,
            document: toml::de::DeTable::parse(text).ok(),
        }
    }

    /// The 1-based line of `section.key`: the key's line, else its section's, else 1.
    fn line(&self, key: &str) -> usize {
        let Some(document) = &self.document else {
            return 1;
        };
        let (section, field) = key.split_once('.').unwrap_or((key, ""));
        let line = |offset: usize| {
            self.text[..offset.min(self.text.len())]
                .matches('\n')
                .count()
                + 1
        };
        let root = document.get_ref();
        let Some((section_key, section_value)) = root.get_key_value(section) else {
            return 1;
        };
        if let toml::de::DeValue::Table(inner) = section_value.get_ref()
            && let Some((field_key, _)) = inner.get_key_value(field)
        {
            return line(field_key.span().start);
        }
        line(section_key.span().start)
    }
}

/// Env values are TOML when they parse as a plain TOML value (`5`, `true`), else text.
fn env_value(text: &str) -> toml::Value {
    match format!("value = {text}").parse::<toml::Table>() {
        Ok(mut table) => match table.remove("value") {
            Some(
                value @ (toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Float(_)),
            ) => value,
            _ => toml::Value::String(text.to_owned()),
        },
        Err(_) => toml::Value::String(text.to_owned()),
    }
}
