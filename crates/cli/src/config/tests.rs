//! The configuration's own tests: parsing, the environment, every bad value named.

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
    let text = include_str!("../../../../config/datacap.toml");
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
        "datacap.toml:2: database.max_connections: invalid type: string \"many\", expected i64",
    );
    check_error(
        "",
        &[("DATACAP_DATABASE__MAX_CONNECTIONS", "0")],
        "env DATACAP_DATABASE__MAX_CONNECTIONS: database.max_connections: must be 1 to 1000, got 0",
    );
    check_error(
        "[database]\nurl = \"mysql://root:pw@db/x\"\n",
        &[],
        "datacap.toml:2: database.url: unsupported database url scheme \"mysql\": use a sqlite: url, a file path, or postgres://",
    );
    check_error(
        "[database]\nulr = \"x\"\n",
        &[],
        "datacap.toml:2: database.ulr: unknown field `ulr`, expected one of `url`, `max_connections`, `migrate_on_start`",
    );
    check_error(
        "[encryption]\nkey_id = \"k\"\n",
        &[],
        "datacap.toml:1: encryption.key_file: [encryption] needs key_file or key_env",
    );
    check_error(
        "[retention]\nattempts_max_age = \"a month\"\n",
        &[],
        "datacap.toml:2: retention.attempts_max_age: \"a month\" is not a duration like \"30d\", \"12h\", \"45m\" or \"90s\"",
    );
    check_error(
        "[database\n",
        &[],
        "datacap.toml:1: file: unclosed table, expected `]`",
    );
}

#[test]
fn unknown_sections_and_keys_are_problems_with_their_lines() {
    check_error(
        "[wokrer]\nconcurrency = 4\n\n[worker]\npoll_intervall = \"5m\"\nlease = \"soon\"\n",
        &[("DATACAP_WROKER__LEASE", "1m")],
        "datacap.toml:1: wokrer: unknown section, ignored by datacap (its keys would fall back to defaults); expected one of database, encryption, retention, worker, google, microsoft, log, http, web, smtp, webhooks\n\
         datacap.toml:5: worker.poll_intervall: unknown field `poll_intervall`, expected one of `owner`, `concurrency`, `claim_batch`, `email_interval`, `calendar_interval`, `jitter`, `backoff_base`, `backoff_cap`, `recheck_interval`, `max_retry_after`, `lease`, `heartbeat`, `grace`, `idle_wait`, `once_pause_wait`, `invalid_grant_recheck`, `stall_pass_interval`, `tenant_rate_per_second`, `tenant_burst`, `red_after_consecutive_failures`, `stall_after`\n\
         datacap.toml:6: worker.lease: \"soon\" is not a duration like \"30d\", \"12h\", \"45m\" or \"90s\"\n\
         env DATACAP_WROKER__LEASE: wroker: unknown section; expected one of database, encryption, retention, worker, google, microsoft, log, http, web, smtp, webhooks",
    );
}
