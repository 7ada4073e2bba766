//! `datacap run` end to end: the real binary against the real sim over loopback and a real
//! database (a SQLite file, or a fresh PostgreSQL database per test), going through
//! `apply` → `run --once` → `status --format json` and checking the reasons that real
//! provider answers produce, that a second run imports nothing twice, recovery, stall
//! detection, graceful shutdown, two daemons sharing PostgreSQL, a database that drops its
//! connections mid-run, and `datacap demo --once`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use datacap_sim::{Scenario, Sim, SimHandle};
use serde_json::{Value, json};

const POSTGRES_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn repo_file(path: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../")).join(path)
}

/// Google and Microsoft company-wide tenants with one member per answer we check.
const SCENARIO: &str = r#"
seed = 11

[[tenant]]
name = "globex"
provider = "google"
domain = "globex.example"

[tenant.service_account]
client_email = "datacap@globex-sim.iam.gserviceaccount.com"
client_id = "100000000000000000042"
public_key = "keys/FAKE-TEST-ONLY-google-service-account.pub.pem"
delegated_scopes = [
  "https://www.googleapis.com/auth/gmail.readonly",
  "https://www.googleapis.com/auth/calendar.readonly",
  "https://www.googleapis.com/auth/admin.directory.user.readonly",
]

[[tenant.user]]
email = "admin@globex.example"
admin = true
messages = 6
events = 3

[[tenant.user]]
email = "ada@globex.example"
messages = 9
events = 4

[[tenant.user]]
email = "nodwd@globex.example"
[[tenant.user.fault]]
fault = "delegation_unauthorized_client"

[[tenant.user]]
email = "policy@globex.example"
[[tenant.user.fault]]
fault = "domain_policy"

[[tenant.user]]
email = "unlicensed@globex.example"
licensed = false

[[tenant.user]]
email = "badsig@globex.example"
[[tenant.user.fault]]
fault = "invalid_jwt_signature"

[[tenant.user]]
email = "flaky@globex.example"
messages = 3
[[tenant.user.fault]]
fault = "server_error"

[[tenant]]
name = "fabrikam"
provider = "microsoft"
domain = "fabrikam.example"
tenant_id = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"

[tenant.app]
client_id = "aa11bb22-cc33-4d44-8e55-ff6677889900"
client_secret = "fabrikam-secret"
roles = ["User.Read.All", "Mail.Read", "Calendars.Read"]

[[tenant.user]]
email = "megan@fabrikam.example"
messages = 7
events = 2

[[tenant.user]]
email = "raop@fabrikam.example"
[[tenant.user.fault]]
fault = "application_access_policy"

[[tenant.user]]
email = "nolicence@fabrikam.example"
licensed = false
"#;

fn tenants(key_file: &Path) -> String {
    let member = |id: &str, domain: &str| {
        format!(
            "[[companies.members]]\nid = \"{id}\"\nemail = \"{id}@{domain}\"\nseat = true\nrecording_enabled = true\n\n"
        )
    };
    let mut text = format!(
        "[[companies]]\nid = \"globex\"\nprovider = \"google_workspace\"\nconnection_mode = \"company_wide\"\n\
         settings = {{ permission_given = true, email_authorized = true, calendar_authorized = true }}\n\
         credentials = {{ service_account_key_file = \"{}\", subject = \"admin@globex.example\" }}\n\n",
        key_file.display()
    );
    for id in [
        "admin",
        "ada",
        "nodwd",
        "policy",
        "unlicensed",
        "badsig",
        "flaky",
    ] {
        text.push_str(&member(id, "globex.example"));
    }
    text.push_str(
        "[[companies]]\nid = \"fabrikam\"\nprovider = \"microsoft_365\"\nconnection_mode = \"company_wide\"\n\
         settings = { permission_given = true, email_authorized = true, calendar_authorized = true }\n\
         credentials = { tenant_id = \"0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9\", client_id = \"aa11bb22-cc33-4d44-8e55-ff6677889900\", client_secret_env = \"FABRIKAM_SECRET\" }\n\n",
    );
    for id in ["megan", "raop", "nolicence"] {
        text.push_str(&member(id, "fabrikam.example"));
    }
    text
}

/// A running sim, a temp dir with the key file and tenants file, and the environment that
/// points the binary at both and at a database.
struct Harness {
    runtime: tokio::runtime::Runtime,
    sim: Option<SimHandle>,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    tenants: PathBuf,
    database: Option<TestDatabase>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.runtime.block_on(sim.shutdown());
        }
        if let Some(database) = self.database.take() {
            database.drop_database();
        }
    }
}

/// A fresh PostgreSQL database, dropped at the end.
struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    fn create() -> TestDatabase {
        let name = format!("datacap_worker_{}", uuid::Uuid::new_v4().simple());
        psql(&format!("CREATE DATABASE {name}"));
        TestDatabase {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }

    fn drop_database(&self) {
        let _ = try_psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

fn try_psql(sql: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(POSTGRES_ADMIN)
            .await
            .map_err(|error| format!("PostgreSQL at {POSTGRES_ADMIN} is not reachable: {error}"))?;
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
        Ok(())
    })
}

fn psql(sql: &str) {
    try_psql(sql).unwrap_or_else(|error| panic!("{sql}: {error}"));
}

impl Harness {
    fn new(scenario: &str, postgres: bool) -> Harness {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let scenario =
            Scenario::from_toml(scenario, "test.toml", &repo_file("config/sim")).expect("scenario");
        let sim = runtime
            .block_on(Sim::start(scenario, "127.0.0.1:0".parse().unwrap()))
            .expect("sim starts");
        let dir = tempfile::tempdir().unwrap();
        let private_key = std::fs::read_to_string(repo_file(
            "config/sim/keys/FAKE-TEST-ONLY-google-service-account.key.pem",
        ))
        .unwrap();
        let key_file = dir.path().join("globex-service-account.json");
        std::fs::write(
            &key_file,
            json!({
                "type": "service_account",
                "client_email": "datacap@globex-sim.iam.gserviceaccount.com",
                "private_key": private_key,
                "private_key_id": "sim-key-1",
            })
            .to_string(),
        )
        .unwrap();
        let tenants = dir.path().join("tenants.toml");
        std::fs::write(&tenants, self::tenants(&key_file)).unwrap();
        let database = postgres.then(TestDatabase::create);
        let url = match &database {
            Some(database) => database.url.clone(),
            None => format!("sqlite://{}", dir.path().join("datacap.sqlite").display()),
        };
        let e = sim.endpoints().clone();
        let env = [
            ("DATACAP_DATABASE__URL", url),
            ("DATACAP_GOOGLE__TOKEN_URL", e.google_token_url),
            ("DATACAP_GOOGLE__GMAIL_BASE", e.gmail_base),
            ("DATACAP_GOOGLE__CALENDAR_BASE", e.calendar_base),
            ("DATACAP_GOOGLE__DIRECTORY_BASE", e.directory_base),
            ("DATACAP_MICROSOFT__LOGIN_BASE", e.microsoft_login_base),
            ("DATACAP_MICROSOFT__GRAPH_BASE", e.graph_base),
            // Everything is due again a second after it ran (a run polls each job once).
            ("DATACAP_WORKER__EMAIL_INTERVAL", "1s".to_owned()),
            ("DATACAP_WORKER__CALENDAR_INTERVAL", "1s".to_owned()),
            ("DATACAP_WORKER__BACKOFF_BASE", "1s".to_owned()),
            ("DATACAP_WORKER__BACKOFF_CAP", "1s".to_owned()),
            ("DATACAP_HTTP__LISTEN", "127.0.0.1:0".to_owned()),
            ("FABRIKAM_SECRET", "fabrikam-secret".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Harness {
            runtime,
            sim: Some(sim),
            dir,
            env,
            tenants,
            database,
        }
    }

    fn command(&self, extra_env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_datacap"));
        command
            .current_dir(self.dir.path())
            .env_clear()
            .env("DATACAP_LOG__LEVEL", "info")
            .args(args);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        for (name, value) in extra_env {
            command.env(name, value);
        }
        command
    }

    fn datacap(&self, extra_env: &[(&str, &str)], args: &[&str]) -> String {
        let output = self
            .command(extra_env, args)
            .output()
            .expect("datacap runs");
        ok(&output)
    }

    fn apply(&self) {
        let tenants = self.tenants.display().to_string();
        self.datacap(&[], &["apply", &tenants]);
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.datacap(&[], &["status", "--format", "json"]))
            .expect("status json")
    }

    /// POSTs `body` to the sim's control endpoint.
    fn control(&self, path: &str, body: Value) -> Value {
        let addr = self.sim.as_ref().unwrap().local_addr();
        let (status, text) = http(
            addr,
            "POST",
            &format!("/_sim/{path}"),
            Some(&body.to_string()),
        );
        assert!(
            (200..300).contains(&status),
            "control {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    fn database_url(&self) -> &str {
        &self.env[0].1
    }

    /// One number from the database the binary uses.
    fn count(&self, sql: &str) -> i64 {
        let url = self.database_url().to_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::Connection;
            if url.starts_with("postgres") {
                let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
                let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_one(&mut connection)
                    .await
                    .unwrap();
                count
            } else {
                let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
                let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_one(&mut connection)
                    .await
                    .unwrap();
                count
            }
        })
    }
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        tail(&String::from_utf8_lossy(&output.stderr))
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A plain HTTP/1.1 request; the status and body.
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    // Chunked bodies (axum's JSON) are small here: strip the chunk size lines.
    let body = if answer
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.lines()
            .filter(|line| usize::from_str_radix(line.trim(), 16).is_err())
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        body
    };
    (status, body)
}

/// The (email, calendar) reasons of `member` of `company`.
fn reasons(status: &Value, company: &str, member: &str) -> (String, String) {
    let company = status["companies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == company)
        .unwrap_or_else(|| panic!("company {company}"));
    let member = company["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == member)
        .unwrap_or_else(|| panic!("member {member}"));
    (
        member["email"]["reason"].as_str().unwrap().to_owned(),
        member["calendar"]["reason"].as_str().unwrap().to_owned(),
    )
}

fn email_reason(status: &Value, company: &str, member: &str) -> String {
    reasons(status, company, member).0
}

/// Runs `check` until it returns true or `deadline` passes.
fn eventually(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not within {deadline:?}");
}

fn check_first_cycle(h: &Harness) {
    h.apply();
    let output = h.command(&[], &["run", "--once"]).output().unwrap();
    let summary = ok(&output);
    assert!(
        summary.starts_with("polled 20 member-channels"),
        "{summary}\n{}",
        tail(&String::from_utf8_lossy(&output.stderr))
    );
    let status = h.status();
    for (member, email, calendar) in [
        ("admin", "importing", "importing"),
        ("ada", "importing", "importing"),
        // PROVIDERS.md: delegation `unauthorized_client` → not_authorized.
        ("nodwd", "email_not_authorized", "calendar_not_authorized"),
        // Gmail 403 domainPolicy → access_denied.
        ("policy", "provider_permission_denied", "importing"),
        // Directory / Gmail: no licence → mailbox_unavailable.
        ("unlicensed", "mailbox_unavailable", "mailbox_unavailable"),
        // "Invalid JWT Signature" → credential_rejected.
        ("badsig", "app_credential_invalid", "app_credential_invalid"),
    ] {
        assert_eq!(
            reasons(&status, "globex", member),
            (email.to_owned(), calendar.to_owned()),
            "globex/{member}"
        );
    }
    // One 500: a short run of transients, not red yet.
    assert_eq!(
        email_reason(&status, "globex", "flaky"),
        "awaiting_first_import"
    );
    for (member, email) in [
        ("megan", "importing"),
        // Exchange application access policy → access_denied.
        ("raop", "provider_permission_denied"),
        ("nolicence", "mailbox_unavailable"),
    ] {
        assert_eq!(
            email_reason(&status, "fabrikam", member),
            email,
            "fabrikam/{member}"
        );
    }
    let globex_banners: Vec<&str> = status["companies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "globex")
        .unwrap()["banners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        globex_banners,
        [
            "email_not_authorized",
            "calendar_not_authorized",
            "members_mailbox_unavailable",
            "members_technical_problem"
        ]
    );
}

fn company_wide_cycle(postgres: bool) {
    let h = Harness::new(SCENARIO, postgres);
    check_first_cycle(&h);
    let items = h.count("SELECT COUNT(*) FROM email_items");
    assert_eq!(items, 6 + 9 + 7, "every healthy member's mail, once");

    // A second run (everything due again) imports nothing twice.
    let due_now = [
        ("DATACAP_WORKER__EMAIL_INTERVAL", "1s"),
        ("DATACAP_WORKER__CALENDAR_INTERVAL", "1s"),
    ];
    let attempts_before = h.count("SELECT COUNT(*) FROM import_attempts");
    let with_items = h.count("SELECT COUNT(*) FROM import_attempts WHERE items_imported > 0");
    eventually(
        "a second cycle polls again",
        Duration::from_secs(30),
        || {
            h.datacap(&due_now, &["run", "--once"]);
            h.count("SELECT COUNT(*) FROM import_attempts") >= attempts_before + 6
        },
    );
    assert_eq!(h.count("SELECT COUNT(*) FROM email_items"), items);
    assert_eq!(
        h.count("SELECT COUNT(*) FROM import_attempts WHERE items_imported > 0"),
        with_items,
        "the incremental passes found nothing new"
    );

    // New mail arrives: the next poll imports exactly it.
    h.control(
        "mail",
        json!({"tenant": "globex", "user": "ada@globex.example", "add": 2}),
    );
    eventually(
        "ada's new mail is imported",
        Duration::from_secs(30),
        || {
            h.datacap(&due_now, &["run", "--once"]);
            h.count("SELECT COUNT(*) FROM email_items") == items + 2
        },
    );

    // Transients in a row turn red; the backoff is 1 s here.
    eventually("flaky turns red", Duration::from_secs(30), || {
        h.datacap(&[], &["run", "--once"]);
        email_reason(&h.status(), "globex", "flaky") == "technical_failure"
    });

    // Recovery: the fault is removed at the provider → green on the next run.
    h.control(
        "faults/clear",
        json!({"tenant": "globex", "user": "flaky@globex.example"}),
    );
    eventually("flaky recovers", Duration::from_secs(30), || {
        h.datacap(&[], &["run", "--once"]);
        email_reason(&h.status(), "globex", "flaky") == "importing"
    });
    // Stall: nothing is polled (long intervals) and the threshold is tiny.
    let stalled = [
        ("DATACAP_WORKER__STALL_AFTER", "1s"),
        ("DATACAP_WORKER__EMAIL_INTERVAL", "1h"),
    ];
    eventually("admin's email stalls", Duration::from_secs(30), || {
        h.datacap(&stalled, &["run", "--once"]);
        email_reason(&h.status(), "globex", "admin") == "import_stalled"
    });
}

#[test]
fn company_wide_google_and_microsoft_on_sqlite() {
    company_wide_cycle(false);
}

#[test]
fn company_wide_google_and_microsoft_on_postgres() {
    company_wide_cycle(true);
}

/// Every reason code of STATUS_MODEL.md, as the status table prints them.
const EVERY_REASON: [&str; 17] = [
    "provider_not_connected",
    "company_permission_missing",
    "email_not_authorized",
    "calendar_not_authorized",
    "member_not_connected",
    "member_connection_invalid",
    "seat_missing",
    "company_calendar_import_disabled",
    "company_non_recorded_import_disabled",
    "mailbox_unavailable",
    "app_credential_invalid",
    "provider_permission_denied",
    "technical_failure",
    "import_stalled",
    "importing",
    "awaiting_first_import",
    "disabled",
];

#[test]
fn demo_once_prints_every_reason_code() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let output = Command::new(env!("CARGO_BIN_EXE_datacap"))
        .current_dir(dir.path())
        .env_clear()
        .args(["demo", "--once", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .output()
        .expect("datacap demo runs");
    let stdout = ok(&output);
    for reason in EVERY_REASON {
        assert!(
            stdout.contains(&format!(" {reason}")),
            "{reason} missing from the demo's table:\n{stdout}"
        );
    }
    assert!(stdout.contains("[red]"), "a red banner:\n{stdout}");
    assert!(state.join("demo.sqlite").exists());
}

/// A `datacap run` daemon whose logs go to a file.
struct Daemon {
    child: std::process::Child,
    log: PathBuf,
    http: SocketAddr,
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

impl Harness {
    fn daemon(&self, name: &str, extra_env: &[(&str, &str)]) -> Daemon {
        let http = free_port();
        let log = self.dir.path().join(format!("{name}.log"));
        let listen = http.to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("DATACAP_HTTP__LISTEN", listen.as_str()),
            ("DATACAP_WORKER__OWNER", name),
        ];
        env.extend_from_slice(extra_env);
        let child = self
            .command(&env, &["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("datacap run starts");
        Daemon { child, log, http }
    }
}

impl Daemon {
    fn get(&self, path: &str) -> Option<(u16, String)> {
        std::net::TcpStream::connect(self.http).ok()?;
        Some(http(self.http, "GET", path, None))
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; `None` when it did not exit within `deadline`.
    fn wait(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One slow member (every Gmail answer takes 20 s) among fast ones.
fn slow_scenario() -> String {
    SCENARIO.replace(
        "[[tenant.user]]\nemail = \"ada@globex.example\"\nmessages = 9\nevents = 4\n",
        "[[tenant.user]]\nemail = \"ada@globex.example\"\nmessages = 9\nevents = 4\n\
         [[tenant.user.fault]]\nfault = \"latency\"\nlatency_ms = 20000\nendpoint = \"gmail\"\n",
    )
}

#[test]
fn sigterm_drains_within_the_grace_period_and_writes_nothing_partial() {
    let h = Harness::new(&slow_scenario(), false);
    h.apply();
    let mut daemon = h.daemon("drain", &[("DATACAP_WORKER__GRACE", "1s")]);
    eventually("the daemon is ready", Duration::from_secs(30), || {
        daemon
            .get("/readyz")
            .is_some_and(|(status, _)| status == 200)
    });
    assert_eq!(daemon.get("/healthz").unwrap().0, 200);
    // Everything but ada's email is written; ada's email is in flight.
    eventually(
        "the fast attempts are written",
        Duration::from_secs(30),
        || {
            h.count(
                "SELECT COUNT(*) FROM (SELECT DISTINCT member_id, channel FROM import_attempts) AS jobs",
            ) >= 19
        },
    );
    let mut metrics = String::new();
    eventually("the metrics show attempts", Duration::from_secs(30), || {
        let (status, text) = daemon.get("/metrics").unwrap();
        metrics = text;
        status == 200
            && metrics.contains("datacap_attempts_total{provider=\"google_workspace\",channel=\"email\",outcome=\"success\"}")
    });
    assert!(
        metrics.contains("datacap_attempt_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "datacap_members{icon=\"email\",color=\"gray\",reason=\"awaiting_first_import\"}"
        ),
        "{metrics}"
    );
    for member in ["admin", "ada", "nodwd", "megan"] {
        assert!(!metrics.contains(member), "no member ids in metrics");
    }
    assert_eq!(
        h.count(
            "SELECT COUNT(*) FROM import_attempts WHERE member_id = 'ada' AND channel = 'email'"
        ),
        0
    );
    let started = Instant::now();
    daemon.signal("-TERM");
    let status = daemon
        .wait(Duration::from_secs(8))
        .unwrap_or_else(|| panic!("no exit after SIGTERM:\n{}", tail(&daemon.logs())));
    assert!(
        status.success(),
        "exit {status:?}\n{}",
        tail(&daemon.logs())
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // Abandoned: no attempt, no items, no status change, lease released.
    assert_eq!(
        h.count(
            "SELECT COUNT(*) FROM import_attempts WHERE member_id = 'ada' AND channel = 'email'"
        ),
        0
    );
    assert_eq!(
        h.count("SELECT COUNT(*) FROM email_items WHERE member_id = 'ada'"),
        0
    );
    assert_eq!(
        h.count("SELECT COUNT(*) FROM sync_state WHERE lease_owner IS NOT NULL"),
        0
    );
    assert_eq!(
        email_reason(&h.status(), "globex", "ada"),
        "awaiting_first_import"
    );
    assert!(
        daemon.logs().contains("abandoned"),
        "{}",
        tail(&daemon.logs())
    );
}

/// `count` members with a little mail each, in one Google tenant.
fn many_members_scenario(count: usize) -> (String, Vec<String>) {
    let mut scenario = SCENARIO.split("[[tenant.user]]").next().unwrap().to_owned();
    let mut ids = Vec::new();
    for index in 0..count {
        let id = format!("m{index:03}");
        scenario.push_str(&format!(
            "[[tenant.user]]\nemail = \"{id}@globex.example\"\nmessages = 2\nevents = 1\n\
             [[tenant.user.fault]]\nfault = \"latency\"\nlatency_ms = 100\n\n"
        ));
        ids.push(id);
    }
    (scenario, ids)
}

#[test]
fn two_daemons_on_postgres_share_the_work_and_never_poll_the_same_job_at_once() {
    let (scenario, ids) = many_members_scenario(30);
    let h = Harness::new(&scenario, true);
    let mut tenants = format!(
        "[[companies]]\nid = \"globex\"\nprovider = \"google_workspace\"\nconnection_mode = \"company_wide\"\n\
         settings = {{ permission_given = true, email_authorized = true, calendar_authorized = true }}\n\
         credentials = {{ service_account_key_file = \"{}\" }}\n\n",
        h.dir.path().join("globex-service-account.json").display()
    );
    for id in &ids {
        tenants.push_str(&format!(
            "[[companies.members]]\nid = \"{id}\"\nemail = \"{id}@globex.example\"\n\n"
        ));
    }
    std::fs::write(&h.tenants, tenants).unwrap();
    h.apply();
    // Every job is due again a second after it ran: both daemons keep claiming.
    let env = [
        ("DATACAP_WORKER__CONCURRENCY", "4"),
        ("DATACAP_WORKER__CLAIM_BATCH", "4"),
        // Long enough that a loaded machine never lets a heartbeat lapse (the SIGKILL
        // test covers expiry and reclaim).
        ("DATACAP_WORKER__LEASE", "30s"),
        ("DATACAP_WORKER__HEARTBEAT", "1s"),
    ];
    let a = h.daemon("daemon-a", &env);
    let b = h.daemon("daemon-b", &env);
    eventually("every job polled twice", Duration::from_secs(60), || {
        h.count(
            "SELECT COUNT(*) FROM (SELECT member_id, channel FROM import_attempts \
             GROUP BY member_id, channel HAVING COUNT(*) >= 2) AS done",
        ) == 60
    });
    drop(a);
    drop(b);
    // No two attempts of one (member, channel) overlap in time.
    let overlaps = h.count(
        "SELECT COUNT(*) FROM import_attempts x JOIN import_attempts y \
         ON x.member_id = y.member_id AND x.channel = y.channel AND x.id < y.id \
         AND x.started_at < y.finished_at AND y.started_at < x.finished_at",
    );
    assert_eq!(
        overlaps, 0,
        "a member-channel was polled by two daemons at once"
    );
    assert_eq!(
        h.count("SELECT COUNT(*) FROM member_status WHERE color = 'red'"),
        0
    );
    for name in ["daemon-a", "daemon-b"] {
        let log = std::fs::read_to_string(h.dir.path().join(format!("{name}.log"))).unwrap();
        let written = log.matches("attempt written").count();
        assert!(
            written > 5,
            "{name} wrote {written} attempts:\n{}",
            tail(&log)
        );
    }
}

#[test]
fn a_database_outage_is_never_a_member_failure_and_the_daemon_resumes() {
    let h = Harness::new(SCENARIO, true);
    h.apply();
    let database = h.database.as_ref().unwrap().name.clone();
    let daemon = h.daemon(
        "outage",
        &[
            ("DATACAP_WORKER__LEASE", "3s"),
            ("DATACAP_WORKER__HEARTBEAT", "1s"),
        ],
    );
    eventually("the daemon is ready", Duration::from_secs(30), || {
        daemon
            .get("/readyz")
            .is_some_and(|(status, _)| status == 200)
    });
    eventually("a first round is written", Duration::from_secs(30), || {
        h.count("SELECT COUNT(*) FROM import_attempts") >= 20
    });
    // The database goes away: no new connections, every open one dropped.
    psql(&format!(
        "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
    ));
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    ));
    eventually(
        "the daemon reports not ready",
        Duration::from_secs(30),
        || {
            daemon
                .get("/readyz")
                .is_some_and(|(status, _)| status == 503)
        },
    );
    assert_eq!(daemon.get("/healthz").unwrap().0, 200, "alive all along");
    psql(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"));
    let before = h.count("SELECT COUNT(*) FROM import_attempts");
    eventually("the daemon resumes", Duration::from_secs(60), || {
        daemon
            .get("/readyz")
            .is_some_and(|(status, _)| status == 200)
            && h.count("SELECT COUNT(*) FROM import_attempts") > before + 5
    });
    let healthy_red = "SELECT COUNT(*) FROM member_status \
         WHERE member_id IN ('admin', 'ada', 'megan') AND color <> 'green'";
    // Jobs whose write failed in the outage run again once their lease expires.
    eventually(
        "every healthy member is green",
        Duration::from_secs(60),
        || h.count(healthy_red) == 0,
    );
    assert_eq!(
        h.count("SELECT COUNT(*) FROM status_changes WHERE member_id IN ('admin', 'ada', 'megan') AND to_color = 'red'"),
        0,
        "no healthy member ever turned red because of our database"
    );
    let status = h.status();
    assert_eq!(email_reason(&status, "fabrikam", "megan"), "importing");
    assert!(
        daemon.logs().contains("failure of our own"),
        "{}",
        tail(&daemon.logs())
    );
}

#[test]
fn a_daemon_killed_mid_attempt_leaves_its_job_to_another_after_the_lease() {
    // ada's first Gmail answer takes 20 s; later ones are quick.
    let scenario = SCENARIO.replace(
        "[[tenant.user]]\nemail = \"ada@globex.example\"\nmessages = 9\nevents = 4\n",
        "[[tenant.user]]\nemail = \"ada@globex.example\"\nmessages = 9\nevents = 4\n\
         [[tenant.user.fault]]\nfault = \"latency\"\nlatency_ms = 20000\nendpoint = \"gmail\"\ntimes = 1\n",
    );
    let h = Harness::new(&scenario, true);
    h.apply();
    let env = [
        ("DATACAP_WORKER__LEASE", "3s"),
        ("DATACAP_WORKER__HEARTBEAT", "1s"),
    ];
    let mut first = h.daemon("first", &env);
    eventually(
        "the first daemon holds ada's email",
        Duration::from_secs(30),
        || {
            h.count(
            "SELECT COUNT(*) FROM sync_state WHERE member_id = 'ada' AND channel = 'email' \
             AND lease_owner = 'first'",
        ) == 1
            && h.count("SELECT COUNT(*) FROM (SELECT DISTINCT member_id, channel FROM import_attempts) AS j") >= 19
        },
    );
    first.signal("-KILL");
    first.wait(Duration::from_secs(10)).expect("killed");
    let started = Instant::now();
    let second = h.daemon("second", &env);
    eventually(
        "the second daemon imports ada's email",
        Duration::from_secs(60),
        || email_reason(&h.status(), "globex", "ada") == "importing",
    );
    // Not before the first daemon's lease ran out.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        h.count(
            "SELECT COUNT(*) FROM import_attempts WHERE member_id = 'ada' AND channel = 'email'"
        ),
        1,
        "the killed daemon wrote nothing for the job it held"
    );
    assert!(
        second.logs().contains("member=ada channel=email"),
        "{}",
        tail(&second.logs())
    );
}
