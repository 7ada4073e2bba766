//! The daemon's configuration: one TOML file (`config/datacap.toml`, every key documented
//! there with its default) with every key overridable by an environment variable
//! `DATACAP_<SECTION>__<KEY>` (for example `DATACAP_DATABASE__URL`).
//!
//! Two phases, as in ripgrep's low/high args: the file and the environment are merged
//! into raw values first, then validated once into a [`Config`]. Loading never writes
//! anything, and a bad value is one error naming its key (and the variable it came from).
//! This is the only module that reads the config file and the environment; secrets are
//! read only when a command asks for them ([`load_key`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use datacap_store::{BackendKind, EncryptionKey};
use secrecy::SecretString;
use serde::Deserialize;

/// Where `--config` points when it is not given (used only if the file exists).
pub const DEFAULT_PATH: &str = "config/datacap.toml";
const ENV_PREFIX: &str = "DATACAP_";

/// The validated configuration of the sections this binary knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub database: DatabaseConfig,
    pub encryption: Option<EncryptionConfig>,
    pub retention: RetentionConfig,
}

/// `[database]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `sqlite://FILE`, a plain file path, or `postgres://…`.
    pub url: String,
    pub backend: BackendKind,
    pub max_connections: u32,
    /// Apply pending migrations before a command uses the database.
    pub migrate_on_start: bool,
}

/// `[encryption]`: where the key that seals stored secrets comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionConfig {
    pub key_id: String,
    pub source: KeySource,
}

/// The key's location; the key itself is never in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Env(String),
}

/// `[retention]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Attempts older than this are pruned (the latest per member and channel is kept).
    pub attempts_max_age: time::Duration,
}

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    encryption: Option<RawEncryption>,
    #[serde(default)]
    retention: RawRetention,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    #[serde(default = "default_url")]
    url: String,
    #[serde(default = "default_max_connections")]
    max_connections: i64,
    #[serde(default = "default_true")]
    migrate_on_start: bool,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            url: default_url(),
            max_connections: default_max_connections(),
            migrate_on_start: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncryption {
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    key_env: Option<String>,
    #[serde(default = "default_key_id")]
    key_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    #[serde(default = "default_max_age")]
    attempts_max_age: String,
}

impl Default for RawRetention {
    fn default() -> Self {
        RawRetention {
            attempts_max_age: default_max_age(),
        }
    }
}

fn default_url() -> String {
    "sqlite://datacap.sqlite".to_owned()
}
fn default_max_connections() -> i64 {
    8
}
fn default_true() -> bool {
    true
}
fn default_key_id() -> String {
    "primary".to_owned()
}
fn default_max_age() -> String {
    "30d".to_owned()
}

/// Loads the configuration: `explicit` (which must exist) or [`DEFAULT_PATH`] if present,
/// else the built-in defaults; then the `DATACAP_*__*` variables of `env` on top.
pub fn load(
    explicit: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Config> {
    let (path, text) = match explicit {
        Some(path) => (
            Some(path.to_owned()),
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?,
        ),
        None => {
            let path = PathBuf::from(DEFAULT_PATH);
            match std::fs::read_to_string(&path) {
                Ok(text) => (Some(path), text),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => (None, String::new()),
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("cannot read config file {}", path.display()));
                }
            }
        }
    };
    let source = path.as_ref().map_or_else(
        || "built-in defaults".to_owned(),
        |p| p.display().to_string(),
    );
    parse(&text, &source, env)
}

/// Parses config `text` (from `source`, for messages) with `env` overrides on top.
pub fn parse(
    text: &str,
    source: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Config> {
    let mut table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        let line = error
            .span()
            .map_or(1, |span| text[..span.start].matches('\n').count() + 1);
        anyhow::anyhow!(
            "{source}:{line}: {}",
            error.message().lines().next().unwrap_or("")
        )
    })?;
    let mut from_env: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            bail!("{name}: [{section}] in {source} is not a table");
        };
        section_table.insert(key.clone(), env_value(&value));
        from_env.insert(format!("{section}.{key}"), name);
    }
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|error| {
            let key = error.path().to_string();
            let origin = from_env
                .get(&key)
                .map_or_else(|| source.to_owned(), |name| format!("env {name}"));
            anyhow::anyhow!(
                "config {key} ({origin}): {}",
                error.into_inner().message().lines().next().unwrap_or("")
            )
        })?;
    let origin = |key: &str| {
        from_env
            .get(key)
            .map_or_else(|| source.to_owned(), |name| format!("env {name}"))
    };
    validate(raw)
        .map_err(|(key, detail)| anyhow::anyhow!("config {key} ({}): {detail}", origin(key)))
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

fn validate(raw: RawConfig) -> Result<Config, (&'static str, String)> {
    let backend = BackendKind::of_url(&raw.database.url)
        .map_err(|error| ("database.url", error.to_string()))?;
    let max_connections = u32::try_from(raw.database.max_connections)
        .ok()
        .filter(|count| (1..=1000).contains(count))
        .ok_or_else(|| {
            (
                "database.max_connections",
                format!("must be 1 to 1000, got {}", raw.database.max_connections),
            )
        })?;
    let encryption = match raw.encryption {
        None => None,
        Some(encryption) => {
            if encryption.key_id.trim().is_empty() {
                return Err(("encryption.key_id", "must not be empty".to_owned()));
            }
            let source = match (encryption.key_file, encryption.key_env) {
                (Some(path), None) => KeySource::File(path),
                (None, Some(name)) if !name.trim().is_empty() => KeySource::Env(name),
                (None, Some(_)) => {
                    return Err(("encryption.key_env", "must not be empty".to_owned()));
                }
                (Some(_), Some(_)) => {
                    return Err((
                        "encryption.key_file",
                        "give key_file or key_env, not both".to_owned(),
                    ));
                }
                (None, None) => {
                    return Err((
                        "encryption.key_file",
                        "[encryption] needs key_file or key_env".to_owned(),
                    ));
                }
            };
            Some(EncryptionConfig {
                key_id: encryption.key_id,
                source,
            })
        }
    };
    let attempts_max_age = parse_duration(&raw.retention.attempts_max_age)
        .map_err(|detail| ("retention.attempts_max_age", detail))?;
    Ok(Config {
        database: DatabaseConfig {
            url: raw.database.url,
            backend,
            max_connections,
            migrate_on_start: raw.database.migrate_on_start,
        },
        encryption,
        retention: RetentionConfig { attempts_max_age },
    })
}

/// `90s`, `45m`, `12h`, `30d`: a positive whole number and one unit.
pub fn parse_duration(text: &str) -> Result<time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let count: i64 = number
        .parse()
        .ok()
        .filter(|count| *count > 0)
        .ok_or_else(|| {
            format!("{text:?} is not a duration like \"30d\", \"12h\", \"45m\" or \"90s\"")
        })?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?} is not a duration like \"30d\", \"12h\", \"45m\" or \"90s\""
            ));
        }
    };
    count
        .checked_mul(seconds)
        .map(time::Duration::seconds)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Reads the encryption key from the file or env var the config names. A missing file,
/// an unset variable or a malformed key is an error; the key text is never printed.
pub fn load_key(encryption: &EncryptionConfig) -> anyhow::Result<EncryptionKey> {
    let text = match &encryption.source {
        KeySource::File(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read encryption key file {}", path.display()))?,
        KeySource::Env(name) => std::env::var(name)
            .with_context(|| format!("encryption key env var {name} is not set"))?,
    };
    Ok(EncryptionKey::parse(
        &encryption.key_id,
        &SecretString::from(text),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn check_error(text: &str, vars: &[(&str, &str)], expected: &str) {
        let error = parse(text, "datacap.toml", env(vars)).unwrap_err();
        assert_eq!(format!("{error:#}"), expected);
    }

    #[test]
    fn defaults_without_a_file() {
        let config = parse("", "built-in defaults", env(&[])).unwrap();
        assert_eq!(config.database.url, "sqlite://datacap.sqlite");
        assert_eq!(config.database.backend, BackendKind::Sqlite);
        assert_eq!(config.database.max_connections, 8);
        assert!(config.database.migrate_on_start);
        assert_eq!(config.encryption, None);
        assert_eq!(config.retention.attempts_max_age, time::Duration::days(30));
    }

    #[test]
    fn the_shipped_file_is_valid() {
        let text = include_str!("../../../config/datacap.toml");
        let config = parse(text, "config/datacap.toml", env(&[])).unwrap();
        assert_eq!(config, parse("", "x", env(&[])).unwrap());
    }

    #[test]
    fn env_overrides_the_file() {
        let config = parse(
            "[database]\nurl = \"sqlite://a.sqlite\"\nmax_connections = 2\n",
            "datacap.toml",
            env(&[
                ("DATACAP_DATABASE__URL", "postgres://db/datacap"),
                ("DATACAP_DATABASE__MAX_CONNECTIONS", "16"),
                ("DATACAP_ENCRYPTION__KEY_ENV", "DATACAP_KEY"),
                ("DATACAP_RETENTION__ATTEMPTS_MAX_AGE", "12h"),
                ("DATACAP_TEST_POSTGRES_URL", "ignored: no section"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(config.database.backend, BackendKind::Postgres);
        assert_eq!(config.database.max_connections, 16);
        assert_eq!(
            config.encryption.unwrap().source,
            KeySource::Env("DATACAP_KEY".to_owned())
        );
        assert_eq!(config.retention.attempts_max_age, time::Duration::hours(12));
    }

    #[test]
    fn errors_name_the_key() {
        check_error(
            "[database]\nmax_connections = \"many\"\n",
            &[],
            "config database.max_connections (datacap.toml): invalid type: string \"many\", expected i64",
        );
        check_error(
            "",
            &[("DATACAP_DATABASE__MAX_CONNECTIONS", "0")],
            "config database.max_connections (env DATACAP_DATABASE__MAX_CONNECTIONS): must be 1 to 1000, got 0",
        );
        check_error(
            "[database]\nurl = \"mysql://root:pw@db/x\"\n",
            &[],
            "config database.url (datacap.toml): unsupported database url scheme \"mysql\": use a sqlite: url, a file path, or postgres://",
        );
        check_error(
            "[database]\nulr = \"x\"\n",
            &[],
            "config database.ulr (datacap.toml): unknown field `ulr`, expected one of `url`, `max_connections`, `migrate_on_start`",
        );
        check_error(
            "[encryption]\nkey_id = \"k\"\n",
            &[],
            "config encryption.key_file (datacap.toml): [encryption] needs key_file or key_env",
        );
        check_error(
            "[retention]\nattempts_max_age = \"a month\"\n",
            &[],
            "config retention.attempts_max_age (datacap.toml): \"a month\" is not a duration like \"30d\", \"12h\", \"45m\" or \"90s\"",
        );
        check_error(
            "[database\n",
            &[],
            "datacap.toml:1: unclosed table, expected `]`",
        );
    }
}
