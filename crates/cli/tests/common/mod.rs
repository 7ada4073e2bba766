//! Helpers shared by the end-to-end tests of the `datacap` binary (worker.rs, crash.rs,
//! faults.rs): a sim on loopback with a scenario, a temp dir with the key and tenants files,
//! a fresh PostgreSQL database per test, `datacap` commands and `datacap run` daemons with
//! their logs, and polling helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use datacap_sim::{Scenario, Sim, SimHandle};
use serde_json::{Value, json};

pub const POSTGRES_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn repo_file(path: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../")).join(path)
}

/// Google and Microsoft company-wide tenants with one member per answer we check.
pub const SCENARIO: &str = r#"
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

pub fn tenants(key_file: &Path) -> String {
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
pub struct Harness {
    pub runtime: tokio::runtime::Runtime,
    pub sim: Option<SimHandle>,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    pub tenants: PathBuf,
    pub database: Option<TestDatabase>,
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
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let name = format!("datacap_worker_{}", uuid::Uuid::new_v4().simple());
        psql(&format!("CREATE DATABASE {name}"));
        TestDatabase {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }

    pub fn drop_database(&self) {
        let _ = try_psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

pub fn try_psql(sql: &str) -> Result<(), String> {
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

pub fn psql(sql: &str) {
    try_psql(sql).unwrap_or_else(|error| panic!("{sql}: {error}"));
}

impl Harness {
    pub fn new(scenario: &str, postgres: bool) -> Harness {
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

    pub fn command(&self, extra_env: &[(&str, &str)], args: &[&str]) -> Command {
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

    pub fn datacap(&self, extra_env: &[(&str, &str)], args: &[&str]) -> String {
        let output = self
            .command(extra_env, args)
            .output()
            .expect("datacap runs");
        ok(&output)
    }

    pub fn apply(&self) {
        let tenants = self.tenants.display().to_string();
        self.datacap(&[], &["apply", &tenants]);
    }

    pub fn status(&self) -> Value {
        serde_json::from_str(&self.datacap(&[], &["status", "--format", "json"]))
            .expect("status json")
    }

    /// POSTs `body` to the sim's control endpoint.
    pub fn control(&self, path: &str, body: Value) -> Value {
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

    pub fn database_url(&self) -> &str {
        &self.env[0].1
    }

    /// One number from the database the binary uses.
    pub fn count(&self, sql: &str) -> i64 {
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

impl Harness {
    /// One text column of every row from the database the binary uses (for failure messages).
    pub fn texts(&self, sql: &str) -> Vec<String> {
        let url = self.database_url().to_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::Connection;
            let query = sqlx::AssertSqlSafe(sql.to_owned());
            let rows: Vec<(String,)> = if url.starts_with("postgres") {
                let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query_as(query)
                    .fetch_all(&mut connection)
                    .await
                    .unwrap()
            } else {
                let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query_as(query)
                    .fetch_all(&mut connection)
                    .await
                    .unwrap()
            };
            rows.into_iter().map(|(text,)| text).collect()
        })
    }
}

pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        tail(&String::from_utf8_lossy(&output.stderr))
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A plain HTTP/1.1 request; the status and body.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
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

/// `member` of `company` in a status report.
pub fn member_status<'a>(status: &'a Value, company: &str, member: &str) -> &'a Value {
    let company = status["companies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == company)
        .unwrap_or_else(|| panic!("company {company}"));
    company["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == member)
        .unwrap_or_else(|| panic!("member {member}"))
}

/// The (email, calendar) reasons of `member` of `company`.
pub fn reasons(status: &Value, company: &str, member: &str) -> (String, String) {
    let member = member_status(status, company, member);
    (
        member["email"]["reason"].as_str().unwrap().to_owned(),
        member["calendar"]["reason"].as_str().unwrap().to_owned(),
    )
}

/// The microphone icon's reason of `member` of `company`.
pub fn capture_reason(status: &Value, company: &str, member: &str) -> String {
    member_status(status, company, member)["capture"]["reason"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn email_reason(status: &Value, company: &str, member: &str) -> String {
    reasons(status, company, member).0
}

/// Runs `check` until it returns true or `deadline` passes.
pub fn eventually(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not within {deadline:?}");
}

/// A child process (a daemon, chromedriver) killed and reaped when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `datacap run` daemon whose logs go to a file.
pub struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
    pub http: SocketAddr,
}

pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

impl Harness {
    pub fn daemon(&self, name: &str, extra_env: &[(&str, &str)]) -> Daemon {
        self.daemon_at(name, free_port(), extra_env)
    }

    /// A daemon serving HTTP at `http`.
    pub fn daemon_at(&self, name: &str, http: SocketAddr, extra_env: &[(&str, &str)]) -> Daemon {
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
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        std::net::TcpStream::connect(self.http).ok()?;
        Some(http(self.http, "GET", path, None))
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; `None` when it did not exit within `deadline`.
    pub fn wait(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `count` members with a little mail each, in one Google tenant.
pub fn many_members_scenario(count: usize) -> (String, Vec<String>) {
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

/// A scenario with a Google tenant (`globex`, domain-wide delegation; the first of
/// `google` is the Directory admin) and a Microsoft tenant (`fabrikam`, app-only), whose
/// users are `google` and `microsoft` (local parts) followed by `google_user` and
/// `microsoft_user` (scenario lines: data sizes, faults).
pub fn two_tenant_scenario(
    google: &[String],
    microsoft: &[String],
    google_user: &str,
    microsoft_user: &str,
) -> String {
    let mut scenario = SCENARIO.split("[[tenant.user]]").next().unwrap().to_owned();
    for (index, id) in google.iter().enumerate() {
        scenario.push_str(&format!(
            "[[tenant.user]]\nemail = \"{id}@globex.example\"\nadmin = {}\n{google_user}\n",
            index == 0
        ));
    }
    let fabrikam = &SCENARIO[SCENARIO.find("[[tenant]]\nname = \"fabrikam\"").unwrap()..];
    scenario.push_str(fabrikam.split("[[tenant.user]]").next().unwrap());
    for id in microsoft {
        scenario.push_str(&format!(
            "[[tenant.user]]\nemail = \"{id}@fabrikam.example\"\n{microsoft_user}\n"
        ));
    }
    scenario
}

/// The tenants file for [`two_tenant_scenario`]'s members (member id = local part).
pub fn two_tenant_file(h: &Harness, google: &[String], microsoft: &[String]) -> String {
    let mut text = String::new();
    if let Some(admin) = google.first() {
        text.push_str(&format!(
            "[[companies]]\nid = \"globex\"\nprovider = \"google_workspace\"\nconnection_mode = \"company_wide\"\n\
             settings = {{ permission_given = true, email_authorized = true, calendar_authorized = true }}\n\
             credentials = {{ service_account_key_file = \"{}\", subject = \"{admin}@globex.example\" }}\n\n",
            h.dir.path().join("globex-service-account.json").display()
        ));
    }
    for id in google {
        text.push_str(&format!(
            "[[companies.members]]\nid = \"{id}\"\nemail = \"{id}@globex.example\"\n\n"
        ));
    }
    if !microsoft.is_empty() {
        text.push_str(
            "[[companies]]\nid = \"fabrikam\"\nprovider = \"microsoft_365\"\nconnection_mode = \"company_wide\"\n\
             settings = { permission_given = true, email_authorized = true, calendar_authorized = true }\n\
             credentials = { tenant_id = \"0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9\", client_id = \"aa11bb22-cc33-4d44-8e55-ff6677889900\", client_secret_env = \"FABRIKAM_SECRET\" }\n\n",
        );
    }
    for id in microsoft {
        text.push_str(&format!(
            "[[companies.members]]\nid = \"{id}\"\nemail = \"{id}@fabrikam.example\"\n\n"
        ));
    }
    text
}

/// `count` ids `{prefix}00`, `{prefix}01`, …
pub fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:02}")).collect()
}

impl Harness {
    /// A harness for [`two_tenant_scenario`] with its tenants file applied.
    pub fn two_tenants(
        google: &[String],
        microsoft: &[String],
        google_user: &str,
        microsoft_user: &str,
        postgres: bool,
    ) -> Harness {
        let h = Harness::new(
            &two_tenant_scenario(google, microsoft, google_user, microsoft_user),
            postgres,
        );
        std::fs::write(&h.tenants, two_tenant_file(&h, google, microsoft)).unwrap();
        h.apply();
        h
    }

    /// What the sim holds: (member id = local part, messages, events) for every user.
    pub fn sim_holds(&self) -> Vec<(String, i64, i64)> {
        let (status, body) = self.sim_get("/_sim/users");
        assert_eq!(status, 200, "{body}");
        let users: Value = serde_json::from_str(&body).unwrap();
        users
            .as_array()
            .unwrap()
            .iter()
            .map(|user| {
                let email = user["email"].as_str().unwrap();
                (
                    email.split('@').next().unwrap().to_owned(),
                    user["messages"].as_i64().unwrap(),
                    user["events"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    /// GETs `path` from the sim.
    pub fn sim_get(&self, path: &str) -> (u16, String) {
        http(self.sim.as_ref().unwrap().local_addr(), "GET", path, None)
    }

    /// The sim's request count so far.
    pub fn sim_requests(&self) -> u64 {
        let (_, body) = self.sim_get("/_sim/stats");
        let stats: Value = serde_json::from_str(&body).unwrap();
        stats["requests_total"].as_u64().unwrap()
    }

    /// How often the sim has fired fault `kind` (`RateLimited`, …) since it started.
    pub fn sim_faults_fired(&self, kind: &str) -> u64 {
        let (_, body) = self.sim_get("/_sim/stats");
        let stats: Value = serde_json::from_str(&body).unwrap();
        stats["faults_fired"][kind].as_u64().unwrap_or(0)
    }

    /// How many members' `icon` ('email' or 'calendar') is red now.
    pub fn red(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM member_status WHERE color = 'red'")
    }

    /// How many status changes to red were ever written.
    pub fn turned_red(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM status_changes WHERE to_color = 'red'")
    }
}

impl Daemon {
    /// Still running (not exited, not crashed).
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// Google and Microsoft tenants whose members connect one by one (our OAuth clients), one
/// member per member-level answer. Faults on API calls are here; faults at the token
/// endpoint are added once the members have connected (they would refuse the code
/// exchange of the connect flow too).
pub const USER_BY_USER_SCENARIO: &str = r#"
seed = 13

[[tenant]]
name = "initech"
provider = "google"
domain = "initech.example"

[tenant.oauth_client]
client_id = "initech-client.apps.googleusercontent.com"
client_secret = "initech-secret"

[[tenant.user]]
email = "peter@initech.example"
messages = 3
events = 1

[[tenant.user]]
email = "newbie@initech.example"

[[tenant.user]]
email = "revoked@initech.example"

[[tenant.user]]
email = "scopeless@initech.example"

[[tenant.user]]
email = "badclient@initech.example"

[[tenant.user]]
email = "policy@initech.example"
[[tenant.user.fault]]
fault = "domain_policy"

[[tenant.user]]
email = "nomail@initech.example"
[[tenant.user.fault]]
fault = "mailbox_not_enabled"

[[tenant.user]]
email = "flaky@initech.example"
messages = 2
[[tenant.user.fault]]
fault = "server_error"

[[tenant.user]]
email = "singer@initech.example"
messages = 1

[[tenant.user]]
email = "nonrec@initech.example"
messages = 1

[[tenant.user]]
email = "quiet@initech.example"

[[tenant]]
name = "contoso"
provider = "microsoft"
domain = "contoso.example"
tenant_id = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"

[tenant.app]
client_id = "cc11dd22-ee33-4f44-8a55-bb6677889900"
client_secret = "contoso-secret"
roles = []

[[tenant.user]]
email = "megan@contoso.example"
messages = 4
events = 2

[[tenant.user]]
email = "adele@contoso.example"

[[tenant.user]]
email = "rex@contoso.example"

[[tenant.user]]
email = "nora@contoso.example"

[[tenant.user]]
email = "sam@contoso.example"

[[tenant.user]]
email = "pat@contoso.example"
[[tenant.user.fault]]
fault = "application_access_policy"

[[tenant.user]]
email = "nolicence@contoso.example"
[[tenant.user.fault]]
fault = "mailbox_not_enabled"
"#;

/// The tenants file of [`USER_BY_USER_SCENARIO`], plus a company whose permission is not
/// given and one without a provider (the reasons settings give).
pub const USER_BY_USER_TENANTS: &str = r#"
[[companies]]
id = "initech"
provider = "google_workspace"
connection_mode = "user_by_user"
settings = { permission_given = true, import_calendar = @IMPORT_CALENDAR@ }
credentials = { client_id = "initech-client.apps.googleusercontent.com", client_secret_env = "INITECH_SECRET" }

[[companies.members]]
id = "peter"
email = "peter@initech.example"
seat = true
recording_enabled = true

[[companies.members]]
id = "newbie"
email = "newbie@initech.example"

[[companies.members]]
id = "revoked"
email = "revoked@initech.example"

[[companies.members]]
id = "scopeless"
email = "scopeless@initech.example"

[[companies.members]]
id = "badclient"
email = "badclient@initech.example"

[[companies.members]]
id = "policy"
email = "policy@initech.example"

[[companies.members]]
id = "nomail"
email = "nomail@initech.example"

[[companies.members]]
id = "flaky"
email = "flaky@initech.example"

[[companies.members]]
id = "singer"
email = "singer@initech.example"
recording_enabled = true

[[companies.members]]
id = "nonrec"
email = "nonrec@initech.example"
import_non_recorded_meetings = true

[[companies.members]]
id = "quiet"
email = "quiet@initech.example"
email_import = false
calendar_import = false

[[companies]]
id = "contoso"
provider = "microsoft_365"
connection_mode = "user_by_user"
settings = { permission_given = true }
credentials = { tenant_id = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d", client_id = "cc11dd22-ee33-4f44-8a55-bb6677889900", client_secret_env = "CONTOSO_SECRET" }

[[companies.members]]
id = "megan"
email = "megan@contoso.example"

[[companies.members]]
id = "adele"
email = "adele@contoso.example"

[[companies.members]]
id = "rex"
email = "rex@contoso.example"

[[companies.members]]
id = "nora"
email = "nora@contoso.example"

[[companies.members]]
id = "sam"
email = "sam@contoso.example"

[[companies.members]]
id = "pat"
email = "pat@contoso.example"

[[companies.members]]
id = "nolicence"
email = "nolicence@contoso.example"

[[companies]]
id = "hooli"
provider = "microsoft_365"
connection_mode = "user_by_user"
settings = { permission_given = false }

[[companies.members]]
id = "gavin"
email = "gavin@hooli.example"

[[companies]]
id = "umbrella"
provider = "none"
connection_mode = "user_by_user"

[[companies.members]]
id = "alice"
email = "alice@umbrella.example"
"#;

/// A user-by-user harness: [`USER_BY_USER_SCENARIO`] and its tenants file, applied, with
/// the encryption key, our OAuth clients and the connect flow configured; `web` is where
/// the daemon that serves the connect flow must listen (the links point there).
pub struct UserByUser {
    pub h: Harness,
    pub web: SocketAddr,
}

impl UserByUser {
    pub fn new(postgres: bool) -> UserByUser {
        let mut h = Harness::new(USER_BY_USER_SCENARIO, postgres);
        let web = free_port();
        let dir = h.dir.path().to_owned();
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let e = h.sim.as_ref().unwrap().endpoints().clone();
        let env = [
            (
                "DATACAP_ENCRYPTION__KEY_ENV",
                "TEST_ENCRYPTION_KEY".to_owned(),
            ),
            ("TEST_ENCRYPTION_KEY", "42".repeat(32)),
            ("DATACAP_GOOGLE__AUTHORIZE_URL", e.google_authorize_url),
            (
                "DATACAP_GOOGLE__OAUTH_CLIENT_ID",
                "initech-client.apps.googleusercontent.com".to_owned(),
            ),
            (
                "DATACAP_GOOGLE__OAUTH_CLIENT_SECRET_FILE",
                file("google-secret", "initech-secret"),
            ),
            (
                "DATACAP_MICROSOFT__OAUTH_CLIENT_ID",
                "cc11dd22-ee33-4f44-8a55-bb6677889900".to_owned(),
            ),
            (
                "DATACAP_MICROSOFT__OAUTH_CLIENT_SECRET_ENV",
                "CONTOSO_SECRET".to_owned(),
            ),
            (
                "DATACAP_WEB__OPERATOR_TOKEN_FILE",
                file("operator-token", "operator-token-of-the-user-by-user-test"),
            ),
            (
                "DATACAP_WEB__SIGNING_KEY_FILE",
                file(
                    "signing-key",
                    "signing-key-of-the-user-by-user-test-0123456789",
                ),
            ),
            ("DATACAP_WEB__PUBLIC_URL", format!("http://{web}")),
            ("INITECH_SECRET", "initech-secret".to_owned()),
            ("CONTOSO_SECRET", "contoso-secret".to_owned()),
        ];
        h.env
            .extend(env.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let ubu = UserByUser { h, web };
        ubu.apply_tenants(true);
        ubu
    }

    /// Applies the tenants file, with initech's calendar import on or off.
    pub fn apply_tenants(&self, import_calendar: bool) {
        let text = USER_BY_USER_TENANTS.replace("@IMPORT_CALENDAR@", &import_calendar.to_string());
        std::fs::write(&self.h.tenants, text).unwrap();
        self.h.apply();
    }

    /// A daemon that serves the connect flow at `web`.
    pub fn daemon(&self, name: &str, extra_env: &[(&str, &str)]) -> Daemon {
        self.h.daemon_at(name, self.web, extra_env)
    }

    /// Connects `members` of `company` the way members do, through a running daemon: the
    /// personal link `datacap remind` lists, the sim's consent screen, the callback.
    pub fn connect(&self, company: &str, members: &[&str]) {
        let listed: Value = serde_json::from_str(
            &self
                .h
                .datacap(&[], &["remind", "--company", company, "--format", "json"]),
        )
        .expect("remind json");
        for member in members {
            let link = listed
                .as_array()
                .unwrap()
                .iter()
                .find(|row| row["member_id"] == *member)
                .unwrap_or_else(|| panic!("{member} is not listed to connect: {listed}"))["link"]
                .as_str()
                .unwrap()
                .to_owned();
            let (addr, path) = split_url(&link);
            let (status, headers, body) = get_with(addr, &path, &[]);
            assert_eq!(status, 303, "{member} start: {body}");
            let location = header(&headers, "location");
            // The browser's binding cookie goes back with the callback.
            let cookie = header(&headers, "set-cookie");
            let cookie = cookie.split(';').next().unwrap_or_default().to_owned();
            let (sim, path) = split_url(&location);
            let (status, location, body) = get_redirect(sim, &path);
            assert_eq!(status, 302, "{member} at the consent screen: {body}");
            let (addr, path) = split_url(&location);
            let (status, _, body) = get_with(addr, &path, &[("Cookie", &cookie)]);
            assert_eq!(status, 200, "{member} callback: {body}");
        }
    }
}

/// Splits an absolute `http://host:port/path?query` URL.
pub fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    (host.parse().expect("host:port"), format!("/{path}"))
}

/// A GET with extra headers: status, headers (names lower-cased) and body.
pub fn get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// The value of header `name` (lower-case) of an answer; empty when absent.
pub fn header(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
        .unwrap_or_default()
}

/// A GET whose answer is a redirect: status, `Location` (empty when absent) and body.
pub fn get_redirect(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = head
        .lines()
        .filter_map(|line| line.split_once(": "))
        .find(|(name, _)| name.eq_ignore_ascii_case("location"))
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    (status, location, body.to_owned())
}

/// One sample of `/metrics` text: the value of the series written exactly as `series`
/// (name and labels in the exporter's order); `None` when absent.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Every reason (email, calendar and capture) of every member in a status report.
pub fn reasons_seen(status: &Value) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    for company in status["companies"].as_array().unwrap() {
        for member in company["members"].as_array().unwrap() {
            for icon in ["capture", "email", "calendar"] {
                if let Some(reason) = member[icon]["reason"].as_str() {
                    seen.insert(reason.to_owned());
                }
            }
        }
    }
    seen
}
