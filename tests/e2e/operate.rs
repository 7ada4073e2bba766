//! The operator commands of issue 9 as processes: `datacap check-config` on good and bad
//! config and tenants files (every problem with its line, exit 1, nothing touched), and
//! `datacap rotate-key` re-encrypting stored refresh tokens on a real SQLite file and a
//! fresh PostgreSQL database (`DATACAP_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; it fails without one, never skips), and
//! `datacap poll --member` making a member due again, and `datacap token` making tokens the
//! daemon accepts while it refuses guessable ones.

use std::path::Path;
use std::process::{Command, Output};

use datacap_core::MemberConnection;
use datacap_store::{EncryptionKey, Store, StoreOptions, parse_tenants};
use secrecy::{ExposeSecret, SecretString};

use crate::harness::{assert_printed_lines, datacap, free_port, repo_file};

#[path = "../../crates/store/tests/support/postgres.rs"]
mod postgres;

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ---------------------------------------------------------------------------------------
// check-config

#[test]
fn check_config_passes_the_shipped_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo_file("config/datacap.toml").display().to_string();
    let tenants = repo_file("config/tenants.example.toml")
        .display()
        .to_string();
    let output = datacap(
        dir.path(),
        &[],
        &["check-config", &config, "--tenants", &tenants],
    );
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        stdout(&output).trim_end().ends_with(": ok"),
        "{}",
        describe(&output)
    );
    // The example's user-by-user companies cannot connect with the shipped config, which
    // names no signing key: said, never silent (issue 17).
    let said = stdout(&output);
    if std::fs::read_to_string(&tenants)
        .unwrap()
        .contains("\"user_by_user\"")
    {
        assert!(
            said.contains("warning: ")
                && said.contains("the connect flow lacks web.signing_key_file"),
            "{said}"
        );
    }
    // Offline: nothing was created next to it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn check_config_passes_the_kubernetes_config_map() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_file("deploy/kubernetes/configmap.yaml")).unwrap();
    let start = text
        .find("datacap.toml: |\n")
        .expect("the ConfigMap's datacap.toml")
        + 16;
    let toml: String = text[start..]
        .lines()
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .map(|line| format!("{line}\n"))
        .collect();
    let path = dir.path().join("datacap.toml");
    std::fs::write(&path, toml).unwrap();
    let output = datacap(dir.path(), &[], &["check-config", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", describe(&output));
}

#[test]
fn check_config_lists_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[database]\nurl = \"mysql://root:hunter2@db/x\"\n\n[worker]\nlease = \"soon\"\n\n[htpp]\nlisten = \"0.0.0.0:1\"\n",
    )
    .unwrap();
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(
        &tenants,
        "[[companies]]\nid = \"acme\"\nprovider = \"google_workspace\"\nconnection_mode = \"company_wide\"\ncredentials = { client_secret = \"s3cret\" }\n\n\
         [[companies.members]]\nid = \"ana\"\nemail = \"ana-at-acme\"\nseat = \"yes\"\n\n\
         [[companies.members]]\nid = \"ana\"\nemail = \"bob@acme.test\"\n",
    )
    .unwrap();
    let output = datacap(
        dir.path(),
        &[("DATACAP_HTTP__LISTEN", "nowhere")],
        &[
            "check-config",
            config.to_str().unwrap(),
            "--tenants",
            tenants.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let printed = stdout(&output);
    let config = config.display().to_string();
    let tenants = tenants.display().to_string();
    let expected = [
        format!("{config}:7: htpp: unknown section"),
        format!("{config}:2: database.url: unsupported database url scheme \"mysql\""),
        format!("{config}:5: worker.lease: \"soon\" is not a duration"),
        "env DATACAP_HTTP__LISTEN: http.listen: \"nowhere\" is not an address".to_owned(),
        format!("{tenants}:5: companies[0].credentials.client_secret: inline secrets"),
        format!(
            "{tenants}:9: companies[0].members[0].email: \"ana-at-acme\" is not an email address"
        ),
        format!(
            "{tenants}:10: companies[0].members[0].seat: invalid type: string \"yes\", expected a boolean"
        ),
        format!("{tenants}:13: companies[0].members[1].id: member id \"ana\" appears twice"),
    ];
    assert_printed_lines(&printed, 8, &expected);
    // Secrets never appear, not even a password in a bad url or an inline secret.
    assert!(
        !printed.contains("hunter2") && !printed.contains("s3cret"),
        "{printed}"
    );
}

#[test]
fn check_config_reports_a_syntax_error_and_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "[database]\nurl = \n").unwrap();
    let output = datacap(dir.path(), &[], &["check-config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stdout(&output).starts_with(&format!("{}:2: ", config.display())),
        "{}",
        describe(&output)
    );
    let output = datacap(dir.path(), &[], &["check-config", "nowhere.toml"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot read config file nowhere.toml")
    );
}

// ---------------------------------------------------------------------------------------
// rotate-key

const TENANTS: &str = include_str!("../fixtures/e2e/rotate-key-tenants.toml");

const OLD_KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const NEW_KEY: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

fn key(id: &str, text: &str) -> EncryptionKey {
    EncryptionKey::parse(id, &SecretString::from(text.to_owned())).unwrap()
}

/// Two members with stored refresh tokens under key "k1", then `datacap rotate-key` to
/// "k2": both open with k2 only, the old key no longer starts the daemon's check for them,
/// and a second run changes nothing.
async fn rotate_key_round_trip(url: &str, dir: &Path) {
    let now = time::OffsetDateTime::now_utc();
    let old = key("k1", OLD_KEY);
    let store = Store::connect(url, StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    store
        .apply_tenants(&parse_tenants(TENANTS).unwrap(), now)
        .await
        .unwrap();
    store.verify_key(&old, now).await.unwrap();
    for member in ["gil", "hal"] {
        let token = SecretString::from(format!("1//refresh-{member}"));
        store
            .put_member_grant(
                member,
                MemberConnection::Connected,
                &["Mail.Read".to_owned()],
                Some(&token),
                &old,
                now,
            )
            .await
            .unwrap();
    }
    store.close().await;

    let key_file = dir.join("new.key");
    std::fs::write(&key_file, format!("{NEW_KEY}\n")).unwrap();
    let env = [
        ("DATACAP_DATABASE__URL", url),
        ("DATACAP_ENCRYPTION__KEY_ENV", "DATACAP_KEY"),
        ("DATACAP_ENCRYPTION__KEY_ID", "k1"),
        ("DATACAP_KEY", OLD_KEY),
    ];
    let rotate =
        |env: &[(&str, &str)], args: &[&str]| datacap(dir, env, &[&["rotate-key"], args].concat());
    let key_file = key_file.to_str().unwrap();
    // The same id again is refused before anything is touched.
    let output = rotate(&env, &["--new-key-id", "k1", "--new-key-file", key_file]);
    assert!(!output.status.success(), "{}", describe(&output));
    let output = rotate(&env, &["--new-key-id", "k2", "--new-key-file", key_file]);
    assert!(output.status.success(), "{}", describe(&output));
    let printed = stdout(&output);
    assert!(
        printed.starts_with(
            "re-encrypted 2 member secrets from key \"k1\" to key \"k2\" (0 were under it already)"
        ),
        "{printed}"
    );
    for secret in [OLD_KEY, NEW_KEY, "refresh-"] {
        assert!(!printed.contains(secret), "{printed}");
        assert!(!String::from_utf8_lossy(&output.stderr).contains(secret));
    }

    let store = Store::connect(url, StoreOptions::default()).await.unwrap();
    let new = key("k2", NEW_KEY);
    for member in ["gil", "hal"] {
        let grant = store
            .member_grant(member, Some(&new))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            grant.refresh_token.unwrap().expose_secret(),
            &format!("1//refresh-{member}")
        );
        assert!(store.member_grant(member, Some(&old)).await.is_err());
    }
    store.verify_key(&new, now).await.unwrap();
    store.close().await;

    // Again, now with the new key in the environment: nothing left to re-seal.
    let mut env = env.to_vec();
    env.push(("DATACAP_NEW", NEW_KEY));
    let output = rotate(
        &env,
        &["--new-key-id", "k2", "--new-key-env", "DATACAP_NEW"],
    );
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        stdout(&output).contains("re-encrypted 0 member secrets")
            && stdout(&output).contains("(2 were under it already)"),
        "{}",
        describe(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("datacap.sqlite").display());
    rotate_key_round_trip(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (name, url) = postgres::create_database("datacap_rotate").await;
    rotate_key_round_trip(&url, dir.path()).await;
    let _ = postgres::drop_database(&name).await;
}

// ---------------------------------------------------------------------------------------
// poll --member

#[test]
fn poll_member_makes_its_channels_due_now() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("datacap.sqlite").display());
    let env = [("DATACAP_DATABASE__URL", url.as_str())];
    let example = repo_file("config/tenants.example.toml")
        .display()
        .to_string();
    let output = datacap(dir.path(), &env, &["apply", &example]);
    assert!(output.status.success(), "{}", describe(&output));

    let poll = |args: &[&str]| datacap(dir.path(), &env, &[&["poll", "--member"], args].concat());
    let output = poll(&["ana"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        stdout(&output).starts_with(
            "member ana: email and calendar: 2 channel(s) due now, the next claim of a running daemon polls them; 0 being polled right now"
        ),
        "{}",
        describe(&output)
    );
    let output = poll(&["ana", "--channel", "calendar"]);
    assert!(
        stdout(&output).starts_with("member ana: calendar: 1 channel(s) due now"),
        "{}",
        describe(&output)
    );

    let output = poll(&["nobody"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unknown member \"nobody\""),
        "{}",
        describe(&output)
    );
    let output = poll(&["ana", "--channel", "fax"]);
    assert!(!output.status.success());
}

// ---------------------------------------------------------------------------------------
// docs/operations.md

/// Every key config/datacap.toml shows (set or commented out) has a row in
/// docs/operations.md, so the reference cannot silently fall behind the config.
#[test]
fn operations_md_documents_every_config_key() {
    let config = std::fs::read_to_string(repo_file("config/datacap.toml")).unwrap();
    let docs = std::fs::read_to_string(repo_file("docs/operations.md")).unwrap();
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in config.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            section = name.to_owned();
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if !section.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            keys.push(format!("{section}.{key}"));
        }
    }
    assert!(keys.len() > 40, "read the config's keys: {keys:?}");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|full| {
            let key = full.split_once('.').map_or(full.as_str(), |(_, key)| key);
            !docs.contains(&format!("`{key}`")) && !docs.contains(&format!("`{full}`"))
        })
        .collect();
    assert!(missing.is_empty(), "docs/operations.md lacks {missing:?}");
    assert!(docs.contains("`DATACAP_WORKER__CONCURRENCY`"));
}

// ---------------------------------------------------------------------------------------
// token

#[test]
fn token_makes_256_bit_tokens_and_the_daemon_refuses_weak_ones() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let first = datacap(dir.path(), &[], &["token"]);
    let second = datacap(dir.path(), &[], &["token"]);
    assert!(first.status.success(), "{}", describe(&first));
    let (first, second) = (stdout(&first), stdout(&second));
    for token in [&first, &second] {
        let token = token.trim();
        assert_eq!(token.len(), 43, "{token}: 32 bytes as unpadded base64url");
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{token}"
        );
    }
    assert_ne!(first, second);
    // --out: a new 0600 file, never an overwrite, and only its path printed.
    let path = dir.path().join("operator-token");
    let path_text = path.display().to_string();
    let written = datacap(dir.path(), &[], &["token", "--out", &path_text]);
    assert!(written.status.success(), "{}", describe(&written));
    let token = std::fs::read_to_string(&path).unwrap();
    assert_eq!(token.trim().len(), 43);
    assert!(
        !stdout(&written).contains(token.trim()),
        "the token is not printed"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = datacap(dir.path(), &[], &["token", "--out", &path_text]);
    assert!(!again.status.success(), "{}", describe(&again));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), token, "untouched");

    // The daemon refuses to start with a guessable token, naming it, never printing it.
    let database = format!("sqlite://{}", dir.path().join("d.sqlite").display());
    let mut run = Command::new(env!("CARGO_BIN_EXE_datacap"));
    run.current_dir(dir.path())
        .env_clear()
        .env("DATACAP_DATABASE__URL", &database)
        .env("DATACAP_HTTP__LISTEN", "127.0.0.1:0")
        .env("DATACAP_WEB__OPERATOR_TOKEN_ENV", "WEAK")
        .env("WEAK", "acme-token-12345")
        .arg("run")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = run.spawn().expect("datacap run starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("datacap run started with a 16-character token");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("web operator token is too weak") && stderr.contains("datacap token"),
        "{stderr}"
    );
    assert!(!stderr.contains("acme-token-12345"), "{stderr}");
    // And serves with the one `datacap token` made.
    let listen = free_port();
    let mut good = Command::new(env!("CARGO_BIN_EXE_datacap"))
        .current_dir(dir.path())
        .env_clear()
        .env("DATACAP_DATABASE__URL", &database)
        .env("DATACAP_HTTP__LISTEN", listen.to_string())
        .env("DATACAP_WEB__OPERATOR_TOKEN_FILE", &path_text)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("datacap run starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut serving = false;
    while std::time::Instant::now() < deadline && good.try_wait().unwrap().is_none() {
        if std::net::TcpStream::connect(listen).is_ok() {
            serving = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = good.kill();
    let _ = good.wait();
    assert!(serving, "datacap run serves with a generated token");
}
