//! `datacap migrate`, `apply` and `status` as processes: the real binary on a temporary
//! SQLite file, with its config from the environment or `--config`, checking stdout,
//! stderr, exit codes and that a bad file or config writes nothing.

use std::path::Path;
use std::process::Output;

use crate::harness::{datacap, ok, repo_file};

fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    String::from_utf8(output.stderr.clone()).expect("utf-8 stderr")
}

/// Asserts that `text` contains each of `parts`.
fn assert_contains_all(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} in {text}");
    }
}

/// A SQLite file in a temp dir, migrated, with `config/tenants.example.toml` applied.
struct Applied {
    dir: tempfile::TempDir,
    url: String,
    /// The example tenants file's path.
    example: String,
    /// What `apply` printed.
    stdout: String,
}

fn example_applied() -> Applied {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("datacap.sqlite").display());
    let env = [("DATACAP_DATABASE__URL", url.as_str())];
    ok(&datacap(dir.path(), &env, &["migrate"]));
    let example = repo_file("config/tenants.example.toml")
        .display()
        .to_string();
    let stdout = ok(&datacap(dir.path(), &env, &["apply", &example]));
    Applied {
        dir,
        url,
        example,
        stdout,
    }
}

#[test]
fn migrate_apply_status_on_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("datacap.sqlite").display());
    let env = [("DATACAP_DATABASE__URL", url.as_str())];

    let stdout = ok(&datacap(dir.path(), &env, &["migrate"]));
    assert_eq!(stdout.trim(), "migrated the sqlite database");
    // Migrating again is a no-op.
    ok(&datacap(dir.path(), &env, &["migrate"]));

    let example = repo_file("config/tenants.example.toml")
        .display()
        .to_string();
    let stdout = ok(&datacap(dir.path(), &env, &["apply", &example]));
    assert!(stdout.contains("3 companies, 4 members"), "{stdout}");

    let json: serde_json::Value = serde_json::from_str(&ok(&datacap(
        dir.path(),
        &env,
        &["status", "--format", "json"],
    )))
    .expect("status json");
    let companies = json["companies"].as_array().expect("companies");
    let ids: Vec<_> = companies
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "globex", "initech"]);
    let acme = &companies[0];
    assert_eq!(acme["provider"], "google_workspace");
    assert_eq!(acme["banners"][0]["code"], "members_seat_missing");
    for field in "code color count provider message resolution".split_whitespace() {
        assert!(!acme["banners"][0][field].is_null(), "banner.{field}");
    }
    let ana = &acme["members"][0];
    assert_eq!(ana["id"], "ana");
    assert_eq!(ana["email_address"], "ana@acme.example");
    assert_eq!(ana["email"]["reason"], "awaiting_first_import");
    for channel in ["capture", "email", "calendar"] {
        for field in ["color", "reason", "message", "resolution", "since"] {
            assert!(ana[channel][field].is_string(), "{channel}.{field}");
        }
        assert!(ana[channel].get("last_attempt_id").is_some());
    }
    assert_eq!(
        companies[1]["members"][0]["email"]["reason"],
        "member_not_connected"
    );
    assert_eq!(companies[2]["banners"][0]["code"], "provider_not_connected");

    let one = ok(&datacap(
        dir.path(),
        &env,
        &["status", "--company", "globex", "--format", "json"],
    ));
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["companies"].as_array().unwrap().len(), 1);

    let table = ok(&datacap(dir.path(), &env, &["status"]));
    assert!(
        table.contains("Acme Corporation (acme, Google Workspace, company_wide)"),
        "{table}"
    );
    assert!(table.contains("bob@acme.example"), "{table}");
    assert!(table.contains("yellow seat_missing"), "{table}");

    let stderr = failed(&datacap(dir.path(), &env, &["status", "--company", "nope"]));
    assert_eq!(
        stderr.trim(),
        "error: cannot read the status: unknown company \"nope\""
    );
}

#[test]
fn a_bad_tenants_file_names_line_and_field_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("datacap.sqlite").display());
    let env = [("DATACAP_DATABASE__URL", url.as_str())];
    ok(&datacap(dir.path(), &env, &["migrate"]));
    let apply = |path: &Path| datacap(dir.path(), &env, &["apply", path.to_str().unwrap()]);
    let good = std::fs::read_to_string(repo_file("config/tenants.example.toml")).unwrap();
    let good_path = dir.path().join("good.toml");
    std::fs::write(&good_path, &good).unwrap();
    ok(&apply(&good_path));
    let before = ok(&datacap(dir.path(), &env, &["status", "--format", "json"]));

    // bob's address broken, a misspelt key, a bad provider, and a new company listed
    // before them: every problem is printed, nothing of it lands.
    let bad = format!(
        "[[companies]]\nid = \"newco\"\nprovider = \"none\"\nconnection_mode = \"company_wide\"\nmembres = []\n{}",
        good.replace("email = \"bob@acme.example\"", "email = \"bob\"")
            .replacen("provider = \"microsoft_365\"", "provider = \"exchange\"", 1)
    );
    let line_of = |start: &str| {
        bad.lines()
            .position(|line| line.starts_with(start))
            .unwrap_or_else(|| panic!("{start:?} in the file"))
            + 1
    };
    let bad_path = dir.path().join("bad.toml");
    std::fs::write(&bad_path, &bad).unwrap();
    let stderr = failed(&apply(&bad_path));
    let file = bad_path.display();
    let mut expected = vec![
        (
            line_of("membres"),
            format!("error: {file}:5: companies[0].membres: unknown field `membres`"),
        ),
        (
            line_of("email = \"bob\""),
            format!(
                "error: {file}:{}: companies[1].members[1].email: \"bob\" is not an email address",
                line_of("email = \"bob\"")
            ),
        ),
        (
            line_of("provider = \"exchange\""),
            format!(
                "error: {file}:{}: companies[2].provider: unknown variant `exchange`",
                line_of("provider = \"exchange\"")
            ),
        ),
    ];
    expected.sort();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    for (line, (_, start)) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(start.as_str()),
            "{line:?} should start with {start:?}\n{stderr}"
        );
    }
    // An inline secret is refused the same way.
    let secret = good.replace(
        "client_secret_env = \"DATACAP_GLOBEX_CLIENT_SECRET\"",
        "client_secret = \"hunter2\"",
    );
    let secret_path = dir.path().join("secret.toml");
    std::fs::write(&secret_path, &secret).unwrap();
    let stderr = failed(&apply(&secret_path));
    assert!(
        stderr.contains("companies[1].credentials.client_secret: inline secrets are not allowed"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let after = ok(&datacap(dir.path(), &env, &["status", "--format", "json"]));
    assert_eq!(before, after);
}

#[test]
fn a_malformed_config_names_the_key_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("datacap.sqlite");
    let config = dir.path().join("datacap.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}\"\nmax_connections = \"lots\"\n",
            database.display()
        ),
    )
    .unwrap();
    let stderr = failed(&datacap(
        dir.path(),
        &[],
        &["--config", config.to_str().unwrap(), "migrate"],
    ));
    assert_eq!(
        stderr.trim(),
        format!(
            "error: {}:3: database.max_connections: invalid type: string \"lots\", expected i64",
            config.display()
        )
    );
    assert!(!database.exists(), "nothing is written");

    // The environment overrides the file, and names itself when it is the culprit.
    let env = [("DATACAP_DATABASE__MAX_CONNECTIONS", "2")];
    ok(&datacap(
        dir.path(),
        &env,
        &["--config", config.to_str().unwrap(), "migrate"],
    ));
    assert!(database.exists());
    let env = [("DATACAP_RETENTION__ATTEMPTS_MAX_AGE", "forever")];
    let stderr = failed(&datacap(dir.path(), &env, &["status"]));
    assert!(
        stderr.contains(
            "error: env DATACAP_RETENTION__ATTEMPTS_MAX_AGE: retention.attempts_max_age: "
        ),
        "{stderr}"
    );
}

#[test]
fn migrate_checks_the_encryption_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("datacap.sqlite").display());
    let key_path = dir.path().join("key");
    std::fs::write(&key_path, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=\n").unwrap();
    let env = [
        ("DATACAP_DATABASE__URL", url.as_str()),
        ("DATACAP_ENCRYPTION__KEY_FILE", key_path.to_str().unwrap()),
    ];
    ok(&datacap(dir.path(), &env, &["migrate"]));
    ok(&datacap(dir.path(), &env, &["migrate"]));

    // Another key under the same id: refused at start-up.
    std::fs::write(&key_path, "ZmVkY2JhWllYV1ZVVFNSUVBPTk1MS0pJSEdGRURDQkE=").unwrap();
    let stderr = failed(&datacap(dir.path(), &env, &["migrate"]));
    assert_eq!(
        stderr.trim(),
        "error: encryption key check failed: the configured encryption key \"primary\" is not the key this database was set up with"
    );
    // A missing key file or env var: a clear error, not plaintext.
    std::fs::remove_file(&key_path).unwrap();
    let stderr = failed(&datacap(dir.path(), &env, &["migrate"]));
    assert!(
        stderr.starts_with(&format!(
            "error: cannot read encryption key file {}",
            key_path.display()
        )),
        "{stderr}"
    );
    let env = [
        ("DATACAP_DATABASE__URL", url.as_str()),
        ("DATACAP_ENCRYPTION__KEY_ENV", "DATACAP_TEST_KEY"),
    ];
    let stderr = failed(&datacap(dir.path(), &env, &["migrate"]));
    assert!(
        stderr.starts_with("error: encryption key env var DATACAP_TEST_KEY is not set"),
        "{stderr}"
    );
    std::fs::write(&key_path, "c2hvcnQ=").unwrap();
    let env = [
        ("DATACAP_DATABASE__URL", url.as_str()),
        ("DATACAP_ENCRYPTION__KEY_FILE", key_path.to_str().unwrap()),
    ];
    let stderr = failed(&datacap(dir.path(), &env, &["migrate"]));
    assert!(stderr.contains("is not 32 bytes"), "{stderr}");
    assert!(!stderr.contains("c2hvcnQ"), "{stderr}");
}

#[test]
fn webhook_endpoints_are_applied_listed_and_redelivered() {
    let Applied {
        dir,
        url,
        example,
        stdout,
    } = example_applied();
    let env = [("DATACAP_DATABASE__URL", url.as_str())];
    let run = |args: &[&str]| datacap(dir.path(), &env, args);
    assert!(
        stdout
            .trim_end()
            .ends_with("; 1 webhook endpoints (0 deactivated)"),
        "{stdout}"
    );
    let list = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&ok(&datacap(
            dir,
            &env,
            &["webhooks", "list", "--format", "json"],
        )))
        .expect("webhooks json")
    };
    let before = list(dir.path());
    let endpoints = before["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 1, "{before}");
    let ops = &endpoints[0];
    assert_eq!(ops["company_id"], "acme");
    assert_eq!(ops["endpoint_id"], "ops");
    assert_eq!(ops["url"], "https://hooks.acme.example/datacap");
    assert_eq!(ops["active"], true);
    // Apply itself raised the seat banner (bob has no seat): one event waits.
    assert_eq!(ops["backlog"], 1);
    assert_eq!(ops["dead"], 0);
    assert!(ops["last_success_at"].is_null());
    let table = ok(&run(&["webhooks", "list"]));
    assert!(table.contains("acme") && table.contains("ops"), "{table}");

    // A bad endpoint: every problem named by line and field, nothing written.
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace(
            "url = \"https://hooks.acme.example/datacap\"",
            "url = \"ftp://hooks.acme.example/datacap\"",
        )
        .replace(
            "secret_file = \"/etc/datacap/acme-webhook.secret\"",
            "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
        )
        .replace(
            "events = [\"member.status_changed\", \"company.banner_changed\"]",
            "events = [\"member.deleted\"]",
        );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let stderr = failed(&run(&["apply", bad.to_str().unwrap()]));
    assert_contains_all(
        &stderr,
        &[
            "companies[0].webhooks[0]: missing secret",
            "companies[0].webhooks[0].url: \"ftp://hooks.acme.example/datacap\" is not an http:// or https:// url",
            "companies[0].webhooks[0].secret: inline secrets are not allowed",
            "companies[0].webhooks[0].events: unknown event `member.deleted`",
        ],
    );
    assert!(
        !stderr.contains("MfKQ9r8"),
        "the secret is never echoed: {stderr}"
    );
    assert_eq!(list(dir.path()), before, "nothing written");

    // Redelivery: an unknown event is an error; nothing dead yet is zero.
    let redeliver = |args: &[&str]| run(&[&["webhooks", "redeliver"], args].concat());
    let stderr = failed(&redeliver(&["--event", "evt_unknown"]));
    assert!(
        stderr.contains("event \"evt_unknown\": no delivery to send again"),
        "{stderr}"
    );
    let stdout = ok(&redeliver(&["--dead-since", "2026-01-01T00:00:00Z"]));
    assert!(
        stdout.starts_with("0 dead deliveries since 2026-01-01T00:00:00Z"),
        "{stdout}"
    );
    let stderr = failed(&redeliver(&["--dead-since", "yesterday"]));
    assert!(stderr.contains("is not an RFC 3339 time"), "{stderr}");
}

#[test]
fn status_of_one_member_shows_icons_history_and_attempts() {
    let Applied { dir, url, .. } = example_applied();
    let env = [("DATACAP_DATABASE__URL", url.as_str())];
    let run = |args: &[&str]| datacap(dir.path(), &env, args);
    let json: serde_json::Value = serde_json::from_str(&ok(&run(&[
        "status", "--member", "bob", "--format", "json",
    ])))
    .expect("member json");
    assert_eq!(json["company_id"], "acme");
    assert_eq!(json["member"]["id"], "bob");
    assert_eq!(json["member"]["capture"]["reason"], "seat_missing");
    assert!(json["member"]["email"]["last_success"].is_null());
    let history = json["history"].as_array().expect("history");
    assert_eq!(
        history.len(),
        3,
        "apply's first evaluation of each icon: {json}"
    );
    assert!(history.iter().all(|change| change["from_color"].is_null()));
    assert_eq!(json["attempts"], serde_json::json!([]));
    let table = ok(&run(&["status", "--member", "bob"]));
    assert!(
        table.starts_with("bob (bob@acme.example), company acme"),
        "{table}"
    );
    assert_contains_all(
        &table,
        &[
            "capture   yellow seat_missing since ",
            "email     gray awaiting_first_import since ",
            "; no success yet",
            "status history (newest first):",
            "(first) -> yellow seat_missing",
        ],
    );
    let stderr = failed(&run(&["status", "--member", "nobody"]));
    assert!(stderr.contains("no active member \"nobody\""), "{stderr}");
    // The forced full resync of a member's email.
    let stdout = ok(&run(&[
        "poll",
        "--member",
        "bob",
        "--channel",
        "email",
        "--full",
    ]));
    assert!(
        stdout.starts_with("member bob: email: 1 channel(s) due now, from the start (saved cursor dropped: a full pass)"),
        "{stdout}"
    );
}
