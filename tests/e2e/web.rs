//! The Team members page, its API and the connect flow served by the real `datacap run`
//! against the real sim over loopback: members of a Google and a Microsoft user-by-user
//! company connect through the sim's consent screens with their personal links (PKCE,
//! single-use state), get polled at once and turn green; a declined consent, a consent
//! without every scope and a replayed callback store nothing; the API answers what
//! `datacap status --format json` prints; `datacap remind` lists the members to connect
//! with working links and mails them through an SMTP receiver on loopback, and so does the
//! reminders page an admin reaches through sign-in.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use datacap_sim::SimHandle;
use serde_json::Value;

use crate::harness::sim::{start_sim, with_sim_env};
use crate::harness::{free_port, get_with, ok, split_url};

const SCENARIO: &str = include_str!("../fixtures/e2e/web-scenario.toml");

const TENANTS: &str = include_str!("../fixtures/e2e/web-tenants.toml");

const OPERATOR: &str = "operator-token-for-the-web-test";
const SIGNING: &str = "signing-secret-for-the-web-test-0123456789";

fn location(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.clone())
        .expect("a Location header")
}

struct Web {
    _runtime: tokio::runtime::Runtime,
    sim: Option<SimHandle>,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    child: Option<std::process::Child>,
    http: SocketAddr,
}

impl Drop for Web {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(sim) = self.sim.take() {
            self._runtime.block_on(sim.shutdown());
        }
    }
}

impl Web {
    fn start() -> Web {
        Web::start_with(&[])
    }

    /// [`Web::start`] with more (or overriding) environment for the daemon.
    fn start_with(extra: &[(&str, String)]) -> Web {
        let (runtime, sim) = start_sim(SCENARIO, "web.toml");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tenants.toml"), TENANTS).unwrap();
        std::fs::write(dir.path().join("operator-token"), OPERATOR).unwrap();
        std::fs::write(dir.path().join("signing-key"), SIGNING).unwrap();
        std::fs::write(dir.path().join("google-secret"), "initech-secret").unwrap();
        let http = free_port();
        let e = sim.endpoints().clone();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let mut env = with_sim_env(
            e.clone(),
            [
                (
                    "DATACAP_DATABASE__URL",
                    format!("sqlite://{}", path("datacap.sqlite")),
                ),
                (
                    "DATACAP_ENCRYPTION__KEY_ENV",
                    "TEST_ENCRYPTION_KEY".to_owned(),
                ),
                ("TEST_ENCRYPTION_KEY", "42".repeat(32)),
                (
                    "DATACAP_GOOGLE__AUTHORIZE_URL",
                    e.google_authorize_url.clone(),
                ),
                // Not initech's client: the flow must sign initech's members in with the
                // company's own client from the tenants file.
                (
                    "DATACAP_GOOGLE__OAUTH_CLIENT_ID",
                    "config-default-client.apps.googleusercontent.com".to_owned(),
                ),
                (
                    "DATACAP_GOOGLE__OAUTH_CLIENT_SECRET_FILE",
                    path("google-secret"),
                ),
                (
                    "DATACAP_MICROSOFT__OAUTH_CLIENT_ID",
                    "cc11dd22-ee33-4f44-8a55-bb6677889900".to_owned(),
                ),
                (
                    "DATACAP_MICROSOFT__OAUTH_CLIENT_SECRET_ENV",
                    "CONTOSO_SECRET".to_owned(),
                ),
                ("DATACAP_WEB__OPERATOR_TOKEN_FILE", path("operator-token")),
                ("DATACAP_WEB__SIGNING_KEY_FILE", path("signing-key")),
                ("DATACAP_WEB__PUBLIC_URL", format!("http://{http}")),
                ("DATACAP_HTTP__LISTEN", http.to_string()),
                ("DATACAP_WORKER__IDLE_WAIT", "1s".to_owned()),
                ("INITECH_SECRET", "initech-secret".to_owned()),
                ("CONTOSO_SECRET", "contoso-secret".to_owned()),
                ("DATACAP_LOG__LEVEL", "info".to_owned()),
            ],
        );
        for (name, value) in extra {
            env.retain(|(k, _)| k != name);
            env.push(((*name).to_owned(), value.clone()));
        }
        let mut web = Web {
            _runtime: runtime,
            sim: Some(sim),
            dir,
            env,
            child: None,
            http,
        };
        let tenants = web.dir.path().join("tenants.toml").display().to_string();
        web.datacap(&["apply", &tenants]);
        web.spawn();
        web
    }

    /// Starts `datacap run` (logging to run.log) and waits for its listener.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("run.log"))
            .unwrap();
        let child = self
            .command(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("datacap run starts");
        self.child = Some(child);
        self.eventually("the daemon serves HTTP", || {
            std::net::TcpStream::connect(self.http).is_ok()
        });
    }

    /// Stops the daemon and starts it again (with the environment as it is now).
    fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_datacap"));
        command.current_dir(self.dir.path()).env_clear().args(args);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    fn datacap(&self, args: &[&str]) -> String {
        ok(&self.command(args).output().expect("datacap runs"))
    }

    fn datacap_with(&self, env: &[(&str, String)], args: &[&str]) -> Output {
        let mut command = self.command(args);
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("datacap runs")
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("run.log")).unwrap_or_default()
    }

    fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{what}: not within 120 s\n{}", self.logs());
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.datacap(&["status", "--format", "json"])).expect("json")
    }

    fn email_reason(&self, company: &str, member: &str) -> String {
        let status = self.status();
        status["companies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == company)
            .and_then(|c| {
                c["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["id"] == member)
            })
            .map(|m| m["email"]["reason"].as_str().unwrap().to_owned())
            .expect("member in status")
    }

    fn grants(&self) -> Vec<String> {
        let url = self.env[0].1.clone();
        self._runtime.block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT member_id, state FROM member_grants ORDER BY member_id")
                    .fetch_all(&mut connection)
                    .await
                    .unwrap();
            rows.into_iter().map(|(m, s)| format!("{m}:{s}")).collect()
        })
    }

    /// A member's personal connect link, signed with the configured key.
    fn link(&self, provider: &str, company: &str, member: &str) -> String {
        let key = datacap_web::InviteKey::new(datacap_web::auth::signing_key(
            &secrecy::SecretString::from(SIGNING),
        ));
        let invite = key.invite(
            company,
            member,
            time::OffsetDateTime::now_utc() + time::Duration::days(1),
        );
        format!("/connect/{provider}/start?invite={invite}")
    }

    /// [`Web::link`], issued a second from now: later than a revocation made now (issue
    /// times are whole seconds, and a link issued in the revocation's second is void).
    fn link_issued_after_now(&self, provider: &str, company: &str, member: &str) -> String {
        let key = datacap_web::InviteKey::new(datacap_web::auth::signing_key(
            &secrecy::SecretString::from(SIGNING),
        ));
        let now = time::OffsetDateTime::now_utc();
        let invite = key.invite_issued(
            company,
            member,
            now + time::Duration::seconds(1),
            now + time::Duration::days(1),
        );
        format!("/connect/{provider}/start?invite={invite}")
    }

    /// Follows a connect link through the sim's consent screen; the callback the sim
    /// sends the browser to, with the browser's binding cookie.
    fn consent(&self, link: &str) -> Callback {
        self.consent_as(link, None)
    }

    /// [`Web::consent`], with `someone` (an address) signing in at the consent screen
    /// instead of the member (the sim's `sim_sign_in_as`).
    fn consent_as(&self, link: &str, someone: Option<&str>) -> Callback {
        let (status, headers, body) = get_with(self.http, link, &[]);
        assert_eq!(status, 303, "start: {body}");
        let mut authorize = location(&headers);
        assert!(
            authorize.contains("code_challenge_method=S256"),
            "{authorize}"
        );
        let cookie = headers
            .iter()
            .find(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.split(';').next().unwrap_or_default().to_owned())
            .expect("the binding cookie");
        if let Some(someone) = someone {
            authorize.push_str(&format!("&sim_sign_in_as={someone}"));
        }
        let (sim, path) = split_url(&authorize);
        let (status, headers, body) = get_with(sim, &path, &[]);
        assert_eq!(status, 302, "the sim's consent screen: {body}");
        let callback = location(&headers);
        assert!(
            callback.starts_with(&format!("http://{}/connect/", self.http)),
            "{callback}"
        );
        Callback {
            path: split_url(&callback).1,
            cookie,
            authorize,
        }
    }

    /// The browser lands on the callback.
    fn finish(&self, callback: &Callback) -> (u16, Vec<(String, String)>, String) {
        get_with(self.http, &callback.path, &[("Cookie", &callback.cookie)])
    }
}

/// Where the consent screen sent the browser back to, and what the browser holds.
struct Callback {
    path: String,
    /// `datacap_connect=…`, as the start page set it.
    cookie: String,
    /// The authorize URL the start page sent the browser to.
    authorize: String,
}

#[test]
fn members_connect_through_both_providers_and_are_polled_at_once() {
    let web = Web::start();
    assert_eq!(web.email_reason("initech", "peter"), "member_not_connected");
    assert!(web.grants().is_empty());

    // Declined at Google's consent screen: a clear page, nothing stored.
    let declined = web.consent(&web.link("google", "initech", "denier"));
    assert!(
        declined.path.contains("error=access_denied"),
        "{}",
        declined.path
    );
    let (status, _, body) = web.finish(&declined);
    assert_eq!(status, 400);
    assert!(
        body.contains("You declined access at Google Workspace"),
        "{body}"
    );
    assert!(web.grants().is_empty());

    // Consented without the calendar scope: refused, nothing stored.
    let partial = web.consent(&web.link("google", "initech", "partial"));
    let (status, _, body) = web.finish(&partial);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("calendar.readonly"), "{body}");
    assert!(web.grants().is_empty());

    // Google: peter connects, is polled at once, and turns green.
    let peter = web.consent(&web.link("google", "initech", "peter"));
    // The company's own OAuth client from the tenants file, not the config's.
    let authorize = &peter.authorize;
    let client_id = "client_id=initech-client.apps.googleusercontent.com";
    assert!(authorize.contains(client_id), "{authorize}");
    assert!(authorize.contains("&hd=initech.example"), "{authorize}");
    let (status, _, body) = web.finish(&peter);
    assert_eq!(status, 200, "{body}\n{}", web.logs());
    assert!(body.contains("peter@initech.example is connected to Google Workspace"));
    assert_eq!(web.grants(), ["peter:connected"]);
    // The same callback again: the state was single use.
    let (status, _, body) = web.finish(&peter);
    assert_eq!(status, 400);
    assert!(body.contains("already completed"), "{body}");
    web.eventually("peter's email imports", || {
        web.email_reason("initech", "peter") == "importing"
    });

    // Microsoft: megan connects the same way.
    let megan = web.consent(&web.link("microsoft", "contoso", "megan"));
    // Signed in at the company's own tenant, not `organizations`.
    assert!(
        megan
            .authorize
            .contains("/5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d/oauth2/v2.0/authorize?"),
        "{}",
        megan.authorize
    );
    let (status, _, body) = web.finish(&megan);
    assert_eq!(status, 200, "{body}\n{}", web.logs());
    assert_eq!(web.grants(), ["megan:connected", "peter:connected"]);
    web.eventually("megan's email imports", || {
        web.email_reason("contoso", "megan") == "importing"
    });
    let logs = web.logs();
    assert!(
        !logs.contains(OPERATOR) && !logs.contains(SIGNING),
        "no secret in the logs"
    );
    assert!(!logs.contains("1//sim-"), "no refresh token in the logs");
}

#[test]
fn a_consent_by_someone_else_is_refused_on_both_providers() {
    let web = Web::start();
    for (provider, company, member, address, someone) in [
        (
            "google",
            "initech",
            "peter",
            "peter@initech.example",
            "mallory@initech.example",
        ),
        (
            "microsoft",
            "contoso",
            "megan",
            "megan@contoso.example",
            "mallory@contoso.example",
        ),
    ] {
        // The invite holder's link, but a colleague consents at the provider.
        let wrong = web.consent_as(&web.link(provider, company, member), Some(someone));
        let (status, headers, body) = web.finish(&wrong);
        assert_eq!(status, 403, "{provider}: {body}\n{}", web.logs());
        assert!(
            body.contains(&format!(
                "You signed in as {someone}, but this link is for {address}"
            )),
            "{provider}: {body}"
        );
        assert!(body.contains("Nothing was stored"), "{body}");
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "cache-control" && v == "no-store"),
            "{headers:?}"
        );
        assert!(web.grants().is_empty(), "{provider}: nothing stored");
        assert_eq!(web.email_reason(company, member), "member_not_connected");
        // The log says who tried, on whose link.
        web.eventually("the refusal is logged", || {
            web.logs().lines().any(|line| {
                line.contains("the account that signed in is not the member's")
                    && line.contains(someone)
                    && line.contains(member)
            })
        });
    }
    // The callback from another browser (without the start page's cookie) is refused
    // before anything is read; the member's own consent from their browser still works.
    let peter = web.consent(&web.link("google", "initech", "peter"));
    let (status, _, body) = get_with(web.http, &peter.path, &[]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not started in this browser"), "{body}");
    let (status, _, body) = web.finish(&peter);
    assert_eq!(status, 200, "{body}");
    assert_eq!(web.grants(), ["peter:connected"]);
    let logs = web.logs();
    assert!(!logs.contains("1//sim-"), "no refresh token in the logs");
}

/// A member's known alias (the tenants file's `aliases`) signs in as the member: the grant
/// is stored; an address that is neither the member's nor an alias still stores nothing.
#[test]
fn a_known_alias_connects_and_any_other_address_is_refused() {
    let web = Web::start();
    for (provider, company, member, alias, someone) in [
        (
            "google",
            "initech",
            "peter",
            "pgibbons@initech.example",
            "mallory@initech.example",
        ),
        (
            "microsoft",
            "contoso",
            "megan",
            "megan.b@contoso.example",
            "mallory@contoso.example",
        ),
    ] {
        let wrong = web.consent_as(&web.link(provider, company, member), Some(someone));
        let (status, _, body) = web.finish(&wrong);
        assert_eq!(status, 403, "{provider}: {body}");
        assert!(
            body.contains(&format!("You signed in as {someone}")),
            "{provider}: {body}"
        );
        assert!(
            !web.grants().iter().any(|grant| grant.starts_with(member)),
            "{provider}: nothing stored for {member}"
        );
        let aliased = web.consent_as(&web.link(provider, company, member), Some(alias));
        let (status, _, body) = web.finish(&aliased);
        assert_eq!(status, 200, "{provider}: {body}\n{}", web.logs());
        assert!(body.contains("is connected to"), "{provider}: {body}");
        assert!(
            web.grants().contains(&format!("{member}:connected")),
            "{provider}: {:?}",
            web.grants()
        );
    }
    assert_eq!(web.grants(), ["megan:connected", "peter:connected"]);
}

/// `datacap revoke-invites` while the member is at the provider's consent screen: the
/// callback redeems nothing, stores nothing and says why; a new link works.
#[test]
fn a_link_revoked_during_the_sign_in_connects_nobody() {
    let web = Web::start();
    let pending = web.consent(&web.link("google", "initech", "peter"));
    web.datacap(&["revoke-invites", "--member", "peter"]);
    let (status, _, body) = web.finish(&pending);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("was revoked, or used to connect, while you were signing in"),
        "{body}"
    );
    assert!(body.contains("Nothing was stored"), "{body}");
    assert!(web.grants().is_empty(), "nothing stored");
    assert_eq!(web.email_reason("initech", "peter"), "member_not_connected");
    // A link issued after the revocation (a later second) connects.
    let after = web.link_issued_after_now("google", "initech", "peter");
    let (status, _, body) = web.finish(&web.consent(&after));
    assert_eq!(status, 200, "{body}");
    assert_eq!(web.grants(), ["peter:connected"]);
}

#[test]
fn the_api_answers_what_datacap_status_prints_and_the_page_needs_a_token() {
    let web = Web::start();
    let bearer = format!("Bearer {OPERATOR}");
    let (status, _, body) = get_with(
        web.http,
        "/api/v1/companies/initech/status",
        &[("Authorization", &bearer)],
    );
    assert_eq!(status, 200, "{body}");
    let api: Value = serde_json::from_str(&body).unwrap();
    let cli: Value =
        serde_json::from_str(&web.datacap(&["status", "--company", "initech", "--format", "json"]))
            .unwrap();
    // Same shape and content (the daemon may re-evaluate between the two reads, so the
    // evaluation times are left out).
    let strip = |mut value: Value| {
        for member in value["companies"][0]["members"].as_array_mut().unwrap() {
            for icon in ["capture", "email", "calendar"] {
                member[icon].as_object_mut().unwrap().remove("evaluated_at");
            }
        }
        value
    };
    assert_eq!(strip(api), strip(cli));
    assert_eq!(
        get_with(web.http, "/api/v1/companies/initech/status", &[]).0,
        401
    );
    assert_eq!(
        get_with(
            web.http,
            "/api/v1/companies/nope/status",
            &[("Authorization", &bearer)]
        )
        .0,
        404
    );
    let (status, headers, _) = get_with(web.http, "/companies/initech/members", &[]);
    assert_eq!(status, 303);
    assert_eq!(
        location(&headers),
        "/login?next=%2Fcompanies%2Finitech%2Fmembers"
    );
    let (status, _, body) = get_with(
        web.http,
        "/companies/initech/members",
        &[("Authorization", &bearer)],
    );
    assert_eq!(status, 200);
    assert!(
        body.contains("data-code=\"members_not_connected\""),
        "{body}"
    );
    assert!(
        body.contains(
            "<span class=\"visually-hidden\">Email: </span><span class=\"label\">Yellow · Not connected yet</span>"
        ),
        "{body}"
    );
}

/// A raw HTTP/1.1 request (method, path, headers, body) and the whole answer as text.
fn raw_request(addr: SocketAddr, text: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    String::from_utf8_lossy(&raw).into_owned()
}

#[test]
fn idle_connections_do_not_take_the_daemon_and_metrics_has_its_own_listener() {
    let metrics = free_port();
    let web = Web::start_with(&[
        ("DATACAP_HTTP__HEADER_READ_TIMEOUT", "1s".to_owned()),
        ("DATACAP_HTTP__MAX_CONNECTIONS", "16".to_owned()),
        ("DATACAP_HTTP__METRICS_LISTEN", metrics.to_string()),
    ]);
    web.eventually("the metrics listener serves", || {
        std::net::TcpStream::connect(metrics).is_ok()
    });
    // 100 connections that never finish a request head: silent ones and slow lorises.
    let mut idle = Vec::new();
    for n in 0..100 {
        let mut stream = std::net::TcpStream::connect(web.http).expect("connect");
        if n % 2 == 1 {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
        }
        idle.push(stream);
    }
    // A real request is answered all the same (read timeout 60 s: a generous bound, an
    // answer is what this asserts).
    let bearer = format!("Bearer {OPERATOR}");
    let (status, headers, body) = get_with(
        web.http,
        "/api/v1/companies/initech/status",
        &[("Authorization", &bearer)],
    );
    assert_eq!(status, 200, "{body}");
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert!(
            headers.iter().any(|(k, v)| k == name && v == value),
            "{name}: {headers:?}"
        );
    }
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-security-policy" && v.contains("frame-ancestors 'none'")),
        "{headers:?}"
    );
    // The idle connections were closed by the daemon.
    for mut stream in idle.drain(..5) {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut buffer = Vec::new();
        let _ = stream.read_to_end(&mut buffer);
        assert!(
            buffer.is_empty() || buffer.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&buffer)
        );
    }
    drop(idle);
    // /metrics moved to its own listener, which serves only the probes and metrics.
    let (status, _, _) = get_with(web.http, "/metrics", &[]);
    assert_eq!(status, 404);
    let (status, _, body) = get_with(metrics, "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(body.contains("datacap_"), "{body}");
    assert_eq!(get_with(metrics, "/readyz", &[]).0, 200);
    assert_eq!(get_with(metrics, "/companies/initech/members", &[]).0, 404);
    assert_eq!(
        get_with(
            metrics,
            "/api/v1/companies/initech/status",
            &[("Authorization", &bearer)]
        )
        .0,
        404
    );
}

#[test]
fn sign_in_refuses_cross_site_posts_and_a_changed_token_ends_its_sessions() {
    let mut web = Web::start();
    let body = format!("token={OPERATOR}");
    let post = |origin: &str| {
        raw_request(
            web.http,
            &format!(
                "POST /login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{origin}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                web.http,
                body.len()
            ),
        )
    };
    let cross = post("Origin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\n");
    assert!(cross.starts_with("HTTP/1.1 403"), "{cross}");
    assert!(
        !cross.to_ascii_lowercase().contains("set-cookie"),
        "{cross}"
    );
    let own = post(&format!(
        "Origin: http://{}\r\nSec-Fetch-Site: same-origin\r\n",
        web.http
    ));
    assert!(own.starts_with("HTTP/1.1 303"), "{own}");
    let cookie = own
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: "))
        .and_then(|value| value.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let page = |web: &Web| {
        get_with(
            web.http,
            "/companies/initech/members",
            &[("Cookie", &cookie)],
        )
        .0
    };
    assert_eq!(page(&web), 200);
    // Secret files readable by others: the daemon says so at start, naming the file,
    // never its content; at 0600 it says nothing.
    let shared = |logs: &str| {
        logs.lines()
            .filter(|line| line.contains("a secret file is readable by its group or others"))
            .filter(|line| line.contains("operator-token") || line.contains("signing-key"))
            .count()
    };
    let state_dir = web.dir.path().to_path_buf();
    let chmod = |mode: u32| {
        use std::os::unix::fs::PermissionsExt as _;
        for name in ["operator-token", "signing-key", "google-secret"] {
            std::fs::set_permissions(state_dir.join(name), std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
    };
    chmod(0o644);
    let before = shared(&web.logs());
    web.restart();
    assert!(shared(&web.logs()) >= before + 2, "{}", web.logs());
    assert!(!web.logs().contains(SIGNING) && !web.logs().contains(OPERATOR));
    assert_eq!(page(&web), 200);
    chmod(0o600);
    let before = shared(&web.logs());
    // The same token after a restart: the session holds (the signing key is the same),
    // and 0600 files draw no warning.
    web.restart();
    assert_eq!(page(&web), 200);
    assert_eq!(shared(&web.logs()), before, "{}", web.logs());
    // The operator's token is rotated: the session it opened ends at its next request.
    std::fs::write(
        web.dir.path().join("operator-token"),
        "a-rotated-operator-token-0123456789",
    )
    .unwrap();
    web.restart();
    assert_eq!(page(&web), 303);
}

/// What a minimal SMTP receiver on loopback recorded: each mail's recipients and DATA.
#[derive(Clone, Debug, Default)]
struct Received {
    recipients: Vec<String>,
    data: String,
}

/// A minimal SMTP server: accepts sessions one after another on a thread, answers EHLO,
/// MAIL, RCPT, DATA and QUIT, and records every mail.
fn smtp_receiver() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<Received>>>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mails = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = mails.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            let mut mail = Received::default();
            let mut say = |text: &str| writer.write_all(format!("{text}\r\n").as_bytes());
            if say("220 receiver.test ESMTP").is_err() {
                continue;
            }
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let command = line.trim_end().to_ascii_uppercase();
                let answer = if command.starts_with("EHLO") || command.starts_with("HELO") {
                    "250 receiver.test"
                } else if command.starts_with("MAIL FROM") {
                    "250 ok"
                } else if command.starts_with("RCPT TO") {
                    let to = line.trim_end()[8..]
                        .trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>');
                    mail.recipients.push(to.to_owned());
                    "250 ok"
                } else if command == "DATA" {
                    let _ = say("354 go ahead");
                    let mut data = String::new();
                    loop {
                        let mut part = String::new();
                        if reader.read_line(&mut part).unwrap_or(0) == 0 || part == ".\r\n" {
                            break;
                        }
                        data.push_str(&part);
                    }
                    mail.data = data;
                    record.lock().unwrap().push(std::mem::take(&mut mail));
                    "250 queued"
                } else if command == "QUIT" {
                    let _ = say("221 bye");
                    break;
                } else {
                    "250 ok"
                };
                if say(answer).is_err() {
                    break;
                }
            }
        }
    });
    (addr, mails)
}

#[test]
fn remind_lists_members_to_connect_with_working_links_and_mails_them() {
    let web = Web::start();
    let listed: Value =
        serde_json::from_str(&web.datacap(&["remind", "--company", "initech", "--format", "json"]))
            .unwrap();
    let rows = listed.as_array().unwrap();
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["member_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["denier", "partial", "peter"]);
    assert!(rows.iter().all(|r| r["reason"] == "member_not_connected"));
    let peter = rows[2]["link"].as_str().unwrap();
    assert!(
        peter.starts_with(&format!("http://{}/connect/google/start?invite=", web.http)),
        "{peter}"
    );
    // The listed link works: peter connects with it.
    let callback = web.consent(&split_url(peter).1);
    let (status, _, body) = web.finish(&callback);
    assert_eq!(status, 200, "{body}");
    // A link connects once.
    let (status, _, body) = get_with(web.http, &split_url(peter).1, &[]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("revoked or has been used"), "{body}");
    // An admin voids denier's listed link; the next reminder's link works.
    let denier = rows[0]["link"].as_str().unwrap();
    assert_eq!(get_with(web.http, &split_url(denier).1, &[]).0, 303);
    let revoked = web.datacap(&["revoke-invites", "--member", "denier"]);
    assert!(
        revoked.contains("revoked every connect link of member denier"),
        "{revoked}"
    );
    assert_eq!(get_with(web.http, &split_url(denier).1, &[]).0, 403);
    // (Invites carry their issue time in seconds: wait for the next second.)
    std::thread::sleep(Duration::from_millis(1100));
    let again: Value =
        serde_json::from_str(&web.datacap(&["remind", "--company", "initech", "--format", "json"]))
            .unwrap();
    let fresh = again[0]["link"].as_str().unwrap();
    assert_eq!(get_with(web.http, &split_url(fresh).1, &[]).0, 303);
    let unknown = web.datacap_with(&[], &["revoke-invites", "--member", "nobody"]);
    assert!(!unknown.status.success());
    let csv = web.datacap(&["remind", "--company", "initech", "--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("member_id,email_address,reason,link"));
    assert_eq!(lines.count(), 2, "peter is connected now: {csv}");
    let table = web.datacap(&["remind", "--company", "initech"]);
    assert!(
        table.contains("denier@initech.example") && table.contains("/connect/google/start?invite=")
    );

    // --send mails each member their own link.
    let (smtp, mails) = smtp_receiver();
    let env = [
        ("DATACAP_SMTP__HOST", "127.0.0.1".to_owned()),
        ("DATACAP_SMTP__PORT", smtp.port().to_string()),
        ("DATACAP_SMTP__TLS", "none".to_owned()),
        ("DATACAP_SMTP__FROM", "datacap@initech.example".to_owned()),
    ];
    let output = web.datacap_with(
        &env,
        &[
            "remind",
            "--company",
            "initech",
            "--format",
            "json",
            "--send",
        ],
    );
    let stdout = ok(&output);
    assert!(stdout.contains("sent 2 reminder(s)"), "{stdout}");
    let listed: Value = serde_json::from_str(stdout.rsplit_once("\nsent").unwrap().0).unwrap();
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 2);
    for (mail, row) in mails.iter().zip(listed.as_array().unwrap()) {
        assert_eq!(mail.recipients, [row["email_address"].as_str().unwrap()]);
        // Long lines travel quoted-printable: undo its soft breaks and `=` escapes.
        let body = mail.data.replace("=\r\n", "").replace("=3D", "=");
        assert!(
            body.contains(row["link"].as_str().unwrap()),
            "the link in the body: {}",
            mail.data
        );
        assert!(mail.data.contains("From: datacap@initech.example"));
    }

    // Bad input: a company-wide or unknown company, --send without a relay.
    let unknown = web.datacap_with(&[], &["remind", "--company", "nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nope"));
    let no_relay = web.datacap_with(&[], &["remind", "--company", "initech", "--send"]);
    assert!(!no_relay.status.success());
    assert!(String::from_utf8_lossy(&no_relay.stderr).contains("[smtp] host"));
}

/// A form `POST` from the page itself (same origin), with the session cookie.
fn post_form(web: &Web, path: &str, cookie: &str, body: &str) -> (u16, String) {
    let answer = raw_request(
        web.http,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nSec-Fetch-Site: same-origin\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            web.http,
            body.len()
        ),
    );
    let status = answer.get(9..12).unwrap_or("0").parse().unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}

/// Signs in with the operator token through the form, landing on `next`; the session
/// cookie.
fn sign_in_to(web: &Web, next: &str) -> String {
    let body = format!(
        "token={OPERATOR}&next={}",
        next.replace('/', "%2F").replace('?', "%3F")
    );
    let answer = raw_request(
        web.http,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nSec-Fetch-Site: same-origin\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            web.http,
            body.len()
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    assert!(
        answer.contains(&format!("\r\nlocation: {next}\r\n")),
        "lands on {next}: {answer}"
    );
    answer
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: "))
        .and_then(|value| value.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

#[test]
fn admins_mail_connect_reminders_from_the_page_through_the_relay() {
    let (smtp, mails) = smtp_receiver();
    let web = Web::start_with(&[
        ("DATACAP_SMTP__HOST", "127.0.0.1".to_owned()),
        ("DATACAP_SMTP__PORT", smtp.port().to_string()),
        ("DATACAP_SMTP__TLS", "none".to_owned()),
        ("DATACAP_SMTP__FROM", "datacap@initech.example".to_owned()),
    ]);
    let page = "/companies/initech/reminders";
    // Signed out, the page goes through sign-in and back.
    let (status, headers, _) = get_with(web.http, page, &[]);
    assert_eq!(status, 303);
    assert_eq!(
        location(&headers),
        "/login?next=%2Fcompanies%2Finitech%2Freminders"
    );
    let cookie = sign_in_to(&web, page);
    let (status, _, body) = get_with(web.http, page, &[("Cookie", &cookie)]);
    assert_eq!(status, 200, "{body}");
    let listed: Vec<&str> = ["denier", "partial", "peter"]
        .into_iter()
        .filter(|id| body.contains(&format!("data-member=\"{id}\"")))
        .collect();
    // The set `datacap remind` lists.
    let remind: Value =
        serde_json::from_str(&web.datacap(&["remind", "--company", "initech", "--format", "json"]))
            .unwrap();
    let cli: Vec<&str> = remind
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["member_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, cli);
    let token = body
        .split_once("name=\"form_token\" value=\"")
        .and_then(|(_, rest)| rest.split('"').next())
        .expect("the send form")
        .to_owned();
    // No form token: refused, nothing mailed.
    let (status, _) = post_form(&web, page, &cookie, "");
    assert_eq!(status, 403);
    assert!(mails.lock().unwrap().is_empty());
    // Sent: each member gets their own working link over the relay.
    let (status, body) = post_form(&web, page, &cookie, &format!("form_token={token}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("3 member(s) were mailed"), "{body}");
    let mails = mails.lock().unwrap().clone();
    let mut recipients: Vec<String> = mails.iter().flat_map(|m| m.recipients.clone()).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        [
            "denier@initech.example",
            "partial@initech.example",
            "peter@initech.example"
        ]
    );
    let peter = mails
        .iter()
        .find(|m| m.recipients == ["peter@initech.example"])
        .unwrap();
    assert!(peter.data.contains("From: datacap@initech.example"));
    // Long lines travel quoted-printable: undo its soft breaks and `=` escapes.
    let text = peter.data.replace("=\r\n", "").replace("=3D", "=");
    let link = text
        .split_whitespace()
        .find(|word| word.starts_with(&format!("http://{}/connect/google/start?invite=", web.http)))
        .unwrap_or_else(|| panic!("a link: {text}"));
    // The link works: peter connects with it and gets a page meant for him.
    let callback = web.consent(&split_url(link).1);
    let (status, _, body) = web.finish(&callback);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("You’re connected"), "{body}");
    assert!(body.contains("You can close this tab"), "{body}");
    assert!(!body.contains("href=\"/"), "{body}");
    assert_eq!(web.grants(), ["peter:connected"]);
}

#[test]
fn without_a_relay_the_reminders_page_says_so() {
    let web = Web::start();
    let page = "/companies/initech/reminders";
    let cookie = sign_in_to(&web, page);
    let (status, _, body) = get_with(web.http, page, &[("Cookie", &cookie)]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Mail is not set up"), "{body}");
    assert!(body.contains("data-member=\"peter\""), "{body}");
    assert!(!body.contains("name=\"form_token\""), "{body}");
    let (status, body) = post_form(&web, page, &cookie, "form_token=x");
    assert_eq!(status, 403, "{body}");
    // Even with a valid form token (as the page would sign it): a 409 saying why.
    let auth = datacap_web::Auth::new(
        None,
        &std::collections::BTreeMap::new(),
        datacap_web::auth::signing_key(&secrecy::SecretString::from(SIGNING)),
        time::Duration::hours(1),
        false,
    );
    let token = auth.form_token(
        &datacap_web::Principal::Operator,
        "reminders:initech",
        time::OffsetDateTime::now_utc(),
    );
    let (status, body) = post_form(&web, page, &cookie, &format!("form_token={token}"));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("Mail is not set up"), "{body}");
}
