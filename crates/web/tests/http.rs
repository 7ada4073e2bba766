//! HTTP tests of datacap-web over loopback against a real SQLite store: every route, every
//! auth case (401 without or with a wrong token, a signed-out page's redirect to sign-in,
//! 403 for another company, 404 for unknown company or member), bad input (filters,
//! limit), deep links through sign-in, the reminders page, the OpenAPI file against the router,
//! and the connect flow's refusals and success with a recording code exchange (the flow
//! through the real providers' sim is the binary's test, tests/e2e/web.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use datacap_core::{Channel, MemberConnection, Outcome, Provider};
use datacap_store::{AttemptRecord, EncryptionKey, Store, StoreOptions, WriteOptions};
use datacap_web::connect::{ConnectProvider, ExchangeFuture};
use datacap_web::{
    App, Auth, ConnectSetup, Exchange, ExchangeError, Exchanged, Identity, InviteKey, Mail,
    MailFuture, Mailer, SignIn, WebServer, WebState,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest;
use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;

#[path = "../../store/tests/support/attempt.rs"]
mod support;

const TENANTS: &str = include_str!("../../../tests/fixtures/web/tenants.toml");

const OPERATOR: &str = "operator-token-0123456789";
const ACME: &str = "acme-token-0123456789";
const GLOBEX: &str = "globex-token-0123456789";

/// What the recording exchange saw and answers.
#[derive(Default)]
struct Recorded {
    calls: Vec<(Provider, String, String, String)>,
    scopes: Vec<String>,
    account: Option<String>,
    fail: bool,
    /// What `sign_in` answers (the company's own client), if set.
    sign_in: Option<SignIn>,
}

struct RecordingExchange(Arc<Mutex<Recorded>>);

impl Exchange for RecordingExchange {
    fn sign_in(&self, _provider: Provider, _refs: &BTreeMap<String, String>) -> Option<SignIn> {
        self.0.lock().unwrap().sign_in.clone()
    }

    fn exchange<'a>(
        &'a self,
        provider: Provider,
        _refs: &'a BTreeMap<String, String>,
        code: &'a str,
        redirect_uri: &'a str,
        verifier: &'a SecretString,
    ) -> ExchangeFuture<'a> {
        Box::pin(async move {
            let mut recorded = self.0.lock().unwrap();
            recorded.calls.push((
                provider,
                code.to_owned(),
                redirect_uri.to_owned(),
                verifier.expose_secret().to_owned(),
            ));
            if recorded.fail {
                return Err(ExchangeError("invalid_grant".to_owned()));
            }
            Ok(Exchanged {
                refresh_token: SecretString::from("refresh-token-from-the-provider"),
                scopes: recorded.scopes.clone(),
                identity: Identity {
                    addresses: recorded.account.clone().into_iter().collect(),
                    tenant_id: None,
                },
            })
        })
    }
}

/// What the recording mailer was handed, and the address it refuses (if any).
#[derive(Default)]
struct Mails {
    sent: Vec<Mail>,
    refuse: Option<String>,
}

struct RecordingMailer(Arc<Mutex<Mails>>);

impl Mailer for RecordingMailer {
    fn send<'a>(&'a self, mail: &'a Mail) -> MailFuture<'a> {
        Box::pin(async move {
            let mut mails = self.0.lock().unwrap();
            if mails.refuse.as_deref() == Some(mail.to.as_str()) {
                return Err(format!("the smtp relay refused the mail to {}", mail.to));
            }
            mails.sent.push(mail.clone());
            Ok(())
        })
    }
}

struct Harness {
    addr: SocketAddr,
    mails: Arc<Mutex<Mails>>,
    store: Store,
    key: EncryptionKey,
    invites: InviteKey,
    exchange: Arc<Mutex<Recorded>>,
    attempts: Vec<String>,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// `member`'s email attempt (the store tests' plain one), a `backendError` when it failed.
fn attempt(member: &str, outcome: Outcome, at: OffsetDateTime) -> AttemptRecord {
    AttemptRecord {
        provider_error_code: (outcome != Outcome::Success).then(|| "backendError".to_owned()),
        ..support::attempt(member, Channel::Email, outcome, at)
    }
}

async fn harness_with(state_ttl: Duration) -> Harness {
    harness_limited(state_ttl, datacap_web::Limits::default()).await
}

async fn harness_limited(state_ttl: Duration, limits: datacap_web::Limits) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("web.sqlite").display());
    let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    let now = OffsetDateTime::now_utc();
    let tenants = datacap_store::parse_tenants(TENANTS).unwrap();
    store.apply_tenants(&tenants, now).await.unwrap();
    let mut attempts = Vec::new();
    let mut records = vec![attempt("ana", Outcome::Success, now - Duration::minutes(1))];
    for minutes in [4, 3, 2] {
        records.push(attempt(
            "bob",
            Outcome::ProviderError,
            now - Duration::minutes(minutes),
        ));
    }
    for record in &records {
        store
            .record_attempt(record, now, &WriteOptions::default())
            .await
            .unwrap();
        attempts.push(record.attempt_id.to_string());
    }
    let key = EncryptionKey::parse("primary", &SecretString::from("11".repeat(32))).unwrap();
    let mails = Arc::new(Mutex::new(Mails::default()));
    let exchange = Arc::new(Mutex::new(Recorded {
        scopes: vec![
            "https://graph.microsoft.com/Mail.Read".to_owned(),
            "https://graph.microsoft.com/Calendars.Read".to_owned(),
        ],
        account: Some("gil@globex.test".to_owned()),
        ..Recorded::default()
    }));
    let auth = test_auth();
    let provider = |url: &str, scope: &str, required: &[&str]| ConnectProvider {
        authorize_url: url.to_owned(),
        client_id: "client-1".to_owned(),
        scope: scope.to_owned(),
        required_scopes: required.iter().map(|s| (*s).to_owned()).collect(),
        extra: vec![("prompt".to_owned(), "consent".to_owned())],
    };
    let connect = ConnectSetup {
        public_url: "http://datacap.test".to_owned(),
        invites: InviteKey::new([5; 32]),
        invite_ttl: Duration::days(3),
        state_ttl,
        key: EncryptionKey::parse("primary", &SecretString::from("11".repeat(32))).unwrap(),
        google: Some(provider(
            "http://idp.test/google/authorize",
            "gmail calendar",
            &["gmail", "calendar"],
        )),
        microsoft: Some(provider(
            "http://idp.test/ms/authorize?tenant=x",
            "offline_access Mail.Read Calendars.Read",
            &["Mail.Read", "Calendars.Read"],
        )),
        exchange: Arc::new(RecordingExchange(exchange.clone())),
        mailer: Some(Arc::new(RecordingMailer(mails.clone()))),
    };
    let app = App {
        store: store.clone(),
        auth,
        refresh_seconds: 30,
        connect: Some(connect),
        public_url: Some("http://datacap.test".to_owned()),
        support_contact: Some("the Acme IT desk (it@acme.test)".to_owned()),
    };
    let state = WebState {
        ready: Arc::new(|| Ok(())),
        metrics: Arc::new(String::new),
        app: Some(Arc::new(app)),
    };
    let server = WebServer::bind("127.0.0.1:0".parse().unwrap(), state)
        .await
        .unwrap()
        .with_limits(limits);
    let addr = server.local_addr().unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(server.serve(cancel.clone()));
    Harness {
        addr,
        mails,
        store,
        key,
        invites: InviteKey::new([5; 32]),
        exchange,
        attempts,
        cancel,
        _dir: dir,
    }
}

/// The harness's tokens and session key.
fn test_auth() -> Auth {
    let companies = BTreeMap::from([
        ("acme".to_owned(), SecretString::from(ACME)),
        ("globex".to_owned(), SecretString::from(GLOBEX)),
    ]);
    Auth::new(
        Some(&SecretString::from(OPERATOR)),
        &companies,
        [9; 32],
        Duration::hours(8),
        false,
    )
}

async fn harness() -> Harness {
    harness_with(Duration::minutes(10)).await
}

/// One HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("json: {}", self.body))
    }
}

/// A plain HTTP/1.1 request over loopback.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    request(addr, "GET", path, headers, "").await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn openapi_lists_exactly_the_routes() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.yaml"
    ))
    .expect("docs/openapi.yaml");
    let document: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("valid yaml");
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_mapping().expect("paths") {
        for (method, _) in item.as_mapping().expect("path item") {
            let method = method.as_str().unwrap().to_ascii_uppercase();
            if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                documented.insert((method, path.as_str().unwrap().to_owned()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = datacap_web::routes()
        .into_iter()
        .map(|(method, path, _)| (method.to_string(), path.to_owned()))
        .collect();
    assert_eq!(
        documented, routed,
        "docs/openapi.yaml and datacap_web::routes() differ"
    );
    // And each documented route is served (not the fallback), with placeholders filled.
    let h = harness().await;
    for (method, path) in &documented {
        let concrete = path
            .replace("{company}", "acme")
            .replace("{member}", "ana")
            .replace("{provider}", "google");
        let answer = request(h.addr, method, &concrete, &[], "").await;
        assert!(
            !answer.body.contains("no such page"),
            "{method} {path} is not routed: {} {}",
            answer.status,
            answer.body
        );
    }
    assert_eq!(get(h.addr, "/nope", &[]).await.status, 404);
}

#[tokio::test]
async fn api_status_and_attempts_with_every_auth_case() {
    let h = harness().await;
    let status = "/api/v1/companies/acme/status";
    let none = get(h.addr, status, &[]).await;
    assert_eq!(none.status, 401);
    assert!(
        none.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert!(
        none.json()["error"]
            .as_str()
            .unwrap()
            .contains("bearer token")
    );
    for wrong in [
        "Bearer nope",
        "Basic b3BlcmF0b3I=",
        "Bearer",
        "operator-token-0123456789",
    ] {
        assert_eq!(
            get(h.addr, status, &[("Authorization", wrong)])
                .await
                .status,
            401,
            "{wrong}"
        );
    }
    // A session cookie does not open the API (bearer only).
    let login = request(
        h.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={OPERATOR}"),
    )
    .await;
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        get(h.addr, status, &[("Cookie", &cookie)]).await.status,
        401
    );
    assert_eq!(
        get(h.addr, status, &[("Authorization", &bearer(GLOBEX))])
            .await
            .status,
        403
    );
    let own = get(h.addr, status, &[("Authorization", &bearer(ACME))]).await;
    assert_eq!(own.status, 200, "{}", own.body);
    // The same JSON as `datacap status --company acme --format json` (the store's report).
    let report = h.store.status(Some("acme")).await.unwrap();
    assert_eq!(own.json(), serde_json::to_value(&report).unwrap());
    assert_eq!(
        own.json()["companies"][0]["members"][1]["email"]["color"],
        "red"
    );
    let operator = get(h.addr, status, &[("Authorization", &bearer(OPERATOR))]).await;
    assert_eq!(operator.status, 200);
    let unknown = get(
        h.addr,
        "/api/v1/companies/nope/status",
        &[("Authorization", &bearer(OPERATOR))],
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.json()["error"]
            .as_str()
            .unwrap()
            .contains("unknown company")
    );
    // A company token asking for an unknown company learns nothing: 403.
    assert_eq!(
        get(
            h.addr,
            "/api/v1/companies/nope/status",
            &[("Authorization", &bearer(ACME))]
        )
        .await
        .status,
        403
    );

    let attempts = "/api/v1/companies/acme/members/bob/attempts";
    assert_eq!(get(h.addr, attempts, &[]).await.status, 401);
    assert_eq!(
        get(h.addr, attempts, &[("Authorization", &bearer(GLOBEX))])
            .await
            .status,
        403
    );
    let all = get(h.addr, attempts, &[("Authorization", &bearer(ACME))]).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let list = all.json()["attempts"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["attempt_id"], h.attempts[3], "newest first");
    assert_eq!(list[0]["http_status"], 503);
    assert_eq!(list[0]["provider_error_code"], "backendError");
    assert_eq!(list[0]["outcome"], "provider_error");
    let one = get(
        h.addr,
        &format!("{attempts}?limit=1"),
        &[("Authorization", &bearer(OPERATOR))],
    )
    .await;
    assert_eq!(one.json()["attempts"].as_array().unwrap().len(), 1);
    for bad in [
        "limit=0",
        "limit=201",
        "limit=abc",
        "limit=-1",
        "limit=",
        "since=1",
    ] {
        let answer = get(
            h.addr,
            &format!("{attempts}?{bad}"),
            &[("Authorization", &bearer(ACME))],
        )
        .await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert!(answer.json()["error"].is_string());
    }
    let missing = get(
        h.addr,
        "/api/v1/companies/acme/members/zed/attempts",
        &[("Authorization", &bearer(ACME))],
    )
    .await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.json()["error"]
            .as_str()
            .unwrap()
            .contains("unknown member")
    );
    // gil is globex's: not found through acme, even for the operator.
    assert_eq!(
        get(
            h.addr,
            "/api/v1/companies/acme/members/gil/attempts",
            &[("Authorization", &bearer(OPERATOR))]
        )
        .await
        .status,
        404
    );
    assert_eq!(
        get(
            h.addr,
            "/api/v1/companies/nope/members/ana/attempts",
            &[("Authorization", &bearer(OPERATOR))]
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn page_signs_in_with_a_cookie_and_shows_icons_banners_and_filters() {
    let h = harness().await;
    let page = "/companies/acme/members";
    // Signed out: to the sign-in form, carrying the page.
    let anonymous = get(h.addr, page, &[]).await;
    assert_eq!(anonymous.status, 303);
    assert_eq!(
        anonymous.header("location"),
        Some("/login?next=%2Fcompanies%2Facme%2Fmembers")
    );
    let index = get(h.addr, "/", &[]).await;
    assert_eq!(index.status, 303);
    assert_eq!(index.header("location"), Some("/login"));
    assert_eq!(get(h.addr, "/login", &[]).await.status, 200);
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let wrong = request(h.addr, "POST", "/login", &form, "token=nope").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    assert!(wrong.body.contains("not valid"));
    let login = request(h.addr, "POST", "/login", &form, &format!("token={ACME}")).await;
    assert_eq!(login.status, 303);
    assert_eq!(login.header("location"), Some("/companies/acme/members"));
    let set_cookie = login.header("set-cookie").unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    assert!(!set_cookie.contains(ACME), "the token is not the cookie");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let tampered = format!("{cookie}x");
    assert_eq!(
        get(h.addr, page, &[("Cookie", &tampered)]).await.status,
        303
    );

    let shown = get(h.addr, page, &[("Cookie", &cookie)]).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    let html = &shown.body;
    assert!(
        html.contains("data-live=\"30\"") && !html.contains("http-equiv=\"refresh\""),
        "patches itself every 30 s, never reloads"
    );
    assert!(
        html.contains(&format!("<script>{}</script>", datacap_web::PAGE_SCRIPT)),
        "the page's one script"
    );
    assert!(html.contains("href=\"#main\""), "a skip link");
    assert!(
        html.contains("data-code=\"members_technical_problem\""),
        "the red banner"
    );
    // Each icon is a button named by its content (channel, colour word, human title) and
    // described by its tip (the message and resolution), never the same text twice.
    assert!(
        html.contains("<span class=\"visually-hidden\">Email: </span><span class=\"label\">Red · Imports keep failing</span>"),
        "{html}"
    );
    assert!(html.contains(
        "<span class=\"visually-hidden\">Capture: </span><span class=\"label\">Green · Importing</span>"
    ));
    assert!(
        html.contains("<button type=\"button\" class=\"icon red\""),
        "icons are buttons"
    );
    assert!(!html.contains("tabindex=\"0\""), "no focusable span");
    assert!(html.contains("role=\"tooltip\""));
    assert!(!html.contains("technical failure"), "no code-like label");
    // Red first: bob (red) comes before ana (green).
    let bob = html.find("data-member=\"bob\"").unwrap();
    let ana = html.find("data-member=\"ana\"").unwrap();
    assert!(bob < ana, "red rows first");
    // The red banner names its member and links to the page filtered to red.
    assert!(
        html.contains("href=\"/companies/acme/members?color=red\">bob</a>"),
        "{html}"
    );
    // A red icon: the provider's message, the attempt linked to the member's page, what
    // the admin checks and whom they hand it to (the configured support contact); the
    // engineer's step is the operator's only.
    assert!(html.contains(&format!(
        "href=\"/companies/acme/members/bob#attempt-{}\"",
        h.attempts[3]
    )));
    assert!(html.contains("hand it to the Acme IT desk (it@acme.test) with the attempt id"));
    assert!(
        !html.contains("Engineer's step"),
        "not for the company's admin"
    );
    assert!(
        html.contains(&format!("data-attempt=\"{}\"", h.attempts[3])),
        "the red icon's attempt"
    );
    assert!(html.contains("HTTP 503"));
    assert!(html.contains("backendError"));
    assert!(
        html.contains(", succeeded"),
        "last import outcomes in words"
    );
    assert!(
        html.contains("<time datetime=\"") && html.contains(" UTC</time>"),
        "times as ISO with a UTC fallback"
    );
    // The company's webhook endpoint and its health: nothing sent yet, events waiting.
    assert!(
        html.contains("data-endpoint=\"ops\" data-health=\"idle\""),
        "the endpoint's health: {html}"
    );
    assert!(html.contains("https://hooks.acme.test/in"));
    assert!(
        !html.contains("acme-hook.secret"),
        "not even the secret's reference"
    );
    assert!(
        html.contains(", succeeded; last success ")
            && html.contains(" (0 items)")
            && html.contains(", the provider failed; no success yet"),
        "each channel's last successful import beside its latest attempt: {html}"
    );
    // The company token cannot open globex's page; the operator index sends it home.
    assert_eq!(
        get(h.addr, "/companies/globex/members", &[("Cookie", &cookie)])
            .await
            .status,
        403
    );
    let home = get(h.addr, "/", &[("Cookie", &cookie)]).await;
    assert_eq!(home.status, 303);

    let red = get(h.addr, &format!("{page}?color=red"), &[("Cookie", &cookie)]).await;
    assert!(red.body.contains("data-member=\"bob\"") && !red.body.contains("data-member=\"ana\""));
    let importing = get(
        h.addr,
        &format!("{page}?color=&reason=importing"),
        &[("Cookie", &cookie)],
    )
    .await;
    assert!(
        importing.body.contains("data-member=\"ana\"")
            && !importing.body.contains("data-member=\"bob\"")
    );
    for bad in ["color=purple", "reason=sleepy", "colour=red"] {
        let answer = get(h.addr, &format!("{page}?{bad}"), &[("Cookie", &cookie)]).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert!(answer.body.contains("Bad filter"));
        assert!(!answer.body.contains("STATUS_MODEL"), "{}", answer.body);
    }
    let sleepy = get(
        h.addr,
        &format!("{page}?reason=sleepy"),
        &[("Cookie", &cookie)],
    )
    .await;
    assert!(
        sleepy
            .body
            .contains("There is no reason &#34;sleepy&#34;. Choose one in the Reason list")
            || sleepy
                .body
                .contains("There is no reason &quot;sleepy&quot;. Choose one in the Reason list"),
        "{}",
        sleepy.body
    );
    // The reason filter lists the reasons on this company only (plus the one selected).
    assert!(html.contains("<option value=\"technical_failure\">Imports keep failing</option>"));
    assert!(!html.contains("<option value=\"seat_missing\""), "{html}");
    let seat = get(
        h.addr,
        &format!("{page}?reason=seat_missing"),
        &[("Cookie", &cookie)],
    )
    .await;
    assert!(
        seat.body
            .contains("<option value=\"seat_missing\" selected>No recording seat</option>")
    );

    // The operator: bearer header on the page, the index, escaping, 404.
    let operator = bearer(OPERATOR);
    let index = get(h.addr, "/", &[("Authorization", &operator)]).await;
    assert_eq!(index.status, 200);
    assert!(index.body.contains("href=\"/companies/globex/members\""));
    assert!(
        index.body.contains("Globex &#60;Ltd&#62;") || index.body.contains("Globex &lt;Ltd&gt;"),
        "escaped"
    );
    let globex = get(
        h.addr,
        "/companies/globex/members",
        &[("Authorization", &operator)],
    )
    .await;
    assert_eq!(globex.status, 200);
    assert!(globex.body.contains("data-code=\"members_not_connected\""));
    let acme_for_operator = get(h.addr, page, &[("Authorization", &operator)]).await;
    assert!(
        acme_for_operator.body.contains("Engineer's step (operators only):</strong> No setting needs changing; an engineer traces the last attempt id in the logs."),
        "the operator keeps the engineer's step: {}",
        acme_for_operator.body
    );
    assert_eq!(
        get(
            h.addr,
            "/companies/nope/members",
            &[("Authorization", &operator)]
        )
        .await
        .status,
        404
    );
    assert_eq!(
        get(h.addr, page, &[("Authorization", "Bearer wrong")])
            .await
            .status,
        401
    );

    let logout = request(h.addr, "POST", "/logout", &[("Cookie", &cookie)], "").await;
    assert_eq!(logout.status, 303);
    assert!(logout.header("set-cookie").unwrap().contains("Max-Age=0"));
}

/// The query parameters of a URL.
fn params(url: &str) -> BTreeMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

async fn grant_row(h: &Harness) -> Option<(MemberConnection, Vec<String>, Option<String>)> {
    h.store
        .member_grant("gil", Some(&h.key))
        .await
        .unwrap()
        .map(|g| {
            (
                g.state,
                g.scopes,
                g.refresh_token.map(|t| t.expose_secret().to_owned()),
            )
        })
}

/// Starts the flow for gil; the provider's authorize URL.
async fn start(h: &Harness) -> String {
    let invite = h.invites.invite(
        "globex",
        "gil",
        OffsetDateTime::now_utc() + Duration::days(7),
    );
    let answer = get(
        h.addr,
        &format!("/connect/microsoft/start?invite={invite}"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let location = answer.header("location").unwrap().to_owned();
    // The state is bound to this browser by a cookie scoped to the connect flow.
    let state = params(&location)["state"].clone();
    let cookie = answer.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with(&format!("datacap_connect={};", h.invites.binding(&state))),
        "{cookie}"
    );
    assert!(
        cookie.contains("Path=/connect/; HttpOnly; SameSite=Lax"),
        "{cookie}"
    );
    location
}

/// The callback as the browser that started the flow sends it: with the binding cookie
/// of the path's state.
async fn callback(h: &Harness, path: &str) -> Answer {
    let state = params(path).get("state").cloned().unwrap_or_default();
    let cookie = format!("datacap_connect={}", h.invites.binding(&state));
    get(h.addr, path, &[("Cookie", &cookie)]).await
}

#[tokio::test]
async fn connect_flow_binds_state_checks_pkce_and_scopes_and_stores_only_on_success() {
    let h = harness().await;
    let location = start(&h).await;
    assert!(
        location.starts_with("http://idp.test/ms/authorize?tenant=x&"),
        "{location}"
    );
    let query = params(&location);
    assert_eq!(query["client_id"], "client-1");
    assert_eq!(
        query["redirect_uri"],
        "http://datacap.test/connect/microsoft/callback"
    );
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["login_hint"], "gil@globex.test");
    assert_eq!(query["prompt"], "consent");
    let state = query["state"].clone();

    // Forged state, and a state for another provider's callback.
    let forged = callback(&h, "/connect/microsoft/callback?state=forged&code=c").await;
    assert_eq!(forged.status, 400);
    assert!(forged.body.contains("not started by datacap"));
    let other = callback(
        &h,
        &format!("/connect/google/callback?state={state}&code=c"),
    )
    .await;
    assert_eq!(other.status, 400);
    assert!(other.body.contains("another provider"));
    // That consumed the state: single use.
    let replay = callback(
        &h,
        &format!("/connect/microsoft/callback?state={state}&code=c"),
    )
    .await;
    assert_eq!(replay.status, 400);
    assert!(h.exchange.lock().unwrap().calls.is_empty());
    assert_eq!(grant_row(&h).await, None);

    // The member declines.
    let declined = params(&start(&h).await)["state"].clone();
    let answer = callback(
        &h,
        &format!("/connect/microsoft/callback?state={declined}&error=access_denied"),
    )
    .await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("You declined access at Microsoft 365"));
    assert!(answer.body.contains("Nothing was stored"));
    // A page for the member: whom to contact, and no way into the operator's sign-in.
    assert!(
        answer.body.contains("contact your datacap admin"),
        "{}",
        answer.body
    );
    assert!(!answer.body.contains("href=\"/\""), "{}", answer.body);
    assert!(!answer.body.contains("Back to datacap"), "{}", answer.body);
    assert_eq!(grant_row(&h).await, None);

    // Granted without calendars.
    h.exchange.lock().unwrap().scopes = vec!["https://graph.microsoft.com/Mail.Read".to_owned()];
    let partial = params(&start(&h).await)["state"].clone();
    let answer = callback(
        &h,
        &format!("/connect/microsoft/callback?state={partial}&code=code-1"),
    )
    .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("without Calendars.Read"),
        "{}",
        answer.body
    );
    assert_eq!(grant_row(&h).await, None);

    // Signed in as someone else.
    {
        let mut recorded = h.exchange.lock().unwrap();
        recorded.scopes = vec!["Mail.Read".to_owned(), "Calendars.Read".to_owned()];
        recorded.account = Some("mallory@globex.test".to_owned());
    }
    let wrong = params(&start(&h).await)["state"].clone();
    let answer = callback(
        &h,
        &format!("/connect/microsoft/callback?state={wrong}&code=code-2"),
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer
            .body
            .contains("You signed in as mallory@globex.test, but this link is for gil@globex.test"),
        "{}",
        answer.body
    );
    assert_eq!(grant_row(&h).await, None);
    // Without any address the provider vouches for, nothing is stored either.
    h.exchange.lock().unwrap().account = None;
    let nobody = params(&start(&h).await)["state"].clone();
    let answer = callback(
        &h,
        &format!("/connect/microsoft/callback?state={nobody}&code=code-2b"),
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(grant_row(&h).await, None);

    // The provider refuses the code.
    h.exchange.lock().unwrap().fail = true;
    let refused = params(&start(&h).await)["state"].clone();
    let answer = callback(
        &h,
        &format!("/connect/microsoft/callback?state={refused}&code=code-3"),
    )
    .await;
    assert_eq!(answer.status, 502);
    assert_eq!(grant_row(&h).await, None);

    // Success: the verifier matches the challenge, the grant is stored sealed, gil is
    // connected and due now.
    {
        let mut recorded = h.exchange.lock().unwrap();
        recorded.fail = false;
        recorded.account = Some("GIL@globex.test".to_owned());
    }
    let good = params(&start(&h).await);
    let answer = callback(
        &h,
        &format!(
            "/connect/microsoft/callback?state={}&code=code-4",
            good["state"]
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer
            .body
            .contains("gil@globex.test is connected to Microsoft 365")
    );
    // The member's own page: connected, what happens now, close the tab; no link to the
    // operator's sign-in.
    assert!(answer.body.contains("You’re connected"), "{}", answer.body);
    assert!(
        answer
            .body
            .contains("datacap imports your email and calendar"),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("You can close this tab"),
        "{}",
        answer.body
    );
    assert!(!answer.body.contains("href=\"/"), "{}", answer.body);
    let (provider, code, redirect, verifier) =
        h.exchange.lock().unwrap().calls.last().cloned().unwrap();
    assert_eq!(
        (provider, code.as_str()),
        (Provider::Microsoft365, "code-4")
    );
    assert_eq!(redirect, "http://datacap.test/connect/microsoft/callback");
    let challenge = base64_url(&sha2::Sha256::digest(verifier.as_bytes()));
    assert_eq!(challenge, good["code_challenge"], "S256 of the verifier");
    assert!(verifier.len() >= 43, "RFC 7636 verifier length");
    let (state, scopes, token) = grant_row(&h).await.unwrap();
    assert_eq!(state, MemberConnection::Connected);
    assert_eq!(scopes, ["Mail.Read", "Calendars.Read"]);
    assert_eq!(token.as_deref(), Some("refresh-token-from-the-provider"));
    let status = h.store.status(Some("globex")).await.unwrap();
    assert_ne!(
        status.companies[0].members[0].email.reason,
        datacap_core::Reason::MemberNotConnected
    );
    let due = h
        .store
        .claim_due("t", OffsetDateTime::now_utc(), Duration::minutes(1), 10)
        .await
        .unwrap();
    assert!(
        due.iter().any(|job| job.context.member_id == "gil"),
        "an immediate poll is scheduled"
    );
    // The same state again: already used.
    let again = callback(
        &h,
        &format!(
            "/connect/microsoft/callback?state={}&code=code-4",
            good["state"]
        ),
    )
    .await;
    assert_eq!(again.status, 400);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn connect_start_refuses_bad_invites_and_expired_states() {
    let h = harness_with(Duration::seconds(-1)).await;
    let now = OffsetDateTime::now_utc();
    let cases = [
        ("/connect/microsoft/start".to_owned(), 400, "no invite"),
        (
            "/connect/microsoft/start?invite=abc".to_owned(),
            403,
            "not valid",
        ),
        (
            format!(
                "/connect/microsoft/start?invite={}",
                InviteKey::new([6; 32]).invite("globex", "gil", now + Duration::days(1))
            ),
            403,
            "not valid",
        ),
        (
            format!(
                "/connect/microsoft/start?invite={}",
                h.invites
                    .invite("globex", "gil", now - Duration::seconds(1))
            ),
            403,
            "expired",
        ),
        (
            format!(
                "/connect/google/start?invite={}",
                h.invites.invite("globex", "gil", now + Duration::days(1))
            ),
            400,
            "uses Microsoft 365",
        ),
        (
            format!(
                "/connect/google/start?invite={}",
                h.invites.invite("acme", "ana", now + Duration::days(1))
            ),
            400,
            "everyone at once",
        ),
        (
            format!(
                "/connect/microsoft/start?invite={}",
                h.invites.invite("acme", "gil", now + Duration::days(1))
            ),
            404,
            "does not know",
        ),
        ("/connect/yahoo/start?invite=x".to_owned(), 404, "only"),
    ];
    for (path, status, text) in cases {
        let answer = get(h.addr, &path, &[]).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(answer.body.contains(text), "{path}: {}", answer.body);
    }
    // With a state lifetime already over, the callback finds it expired.
    let location = start(&h).await;
    let state = params(&location)["state"].clone();
    let answer = callback(
        &h,
        &format!("/connect/microsoft/callback?state={state}&code=c"),
    )
    .await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("expired"), "{}", answer.body);
    assert_eq!(grant_row(&h).await, None);
    assert!(h.exchange.lock().unwrap().calls.is_empty());
}

#[tokio::test]
async fn connect_callback_needs_the_browser_that_started_the_flow() {
    let h = harness().await;
    let state = params(&start(&h).await)["state"].clone();
    let path = format!("/connect/microsoft/callback?state={state}&code=code-1");
    // Another browser (no cookie), a cookie of another state, a forged cookie: refused
    // before anything is read or written, and the state stays usable.
    let other_state = format!("datacap_connect={}", h.invites.binding("another-state"));
    for headers in [
        vec![],
        vec![("Cookie", other_state.as_str())],
        vec![("Cookie", "datacap_connect=forged")],
    ] {
        let answer = get(h.addr, &path, &headers).await;
        assert_eq!(answer.status, 400, "{headers:?}: {}", answer.body);
        assert!(
            answer.body.contains("not started in this browser"),
            "{}",
            answer.body
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"));
    }
    assert!(h.exchange.lock().unwrap().calls.is_empty());
    assert_eq!(grant_row(&h).await, None);
    // The browser that started it completes it.
    let answer = callback(&h, &path).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert!(grant_row(&h).await.is_some());
}

#[tokio::test]
async fn connect_callback_rechecks_the_member() {
    let h = harness().await;
    let state = params(&start(&h).await)["state"].clone();
    // gil leaves the company between start and callback.
    let without_gil = TENANTS.replace(
        "[[companies.members]]\nid = \"gil\"\nemail = \"gil@globex.test\"\n",
        "",
    );
    assert_ne!(without_gil, TENANTS);
    let tenants = datacap_store::parse_tenants(&without_gil).unwrap();
    h.store
        .apply_tenants(&tenants, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let answer = callback(
        &h,
        &format!("/connect/microsoft/callback?state={state}&code=code-1"),
    )
    .await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(
        h.exchange.lock().unwrap().calls.is_empty(),
        "no code redeemed"
    );
    assert_eq!(grant_row(&h).await, None);
}

/// The link a sign-in started from is checked again at the callback: revoked (`datacap
/// revoke-invites`) or expired between start and callback, nothing is redeemed or stored,
/// and the page says why.
#[tokio::test]
async fn connect_callback_rechecks_the_invite() {
    let h = harness().await;
    // Revoked while the member was at the provider.
    let state = params(&start(&h).await)["state"].clone();
    h.store
        .revoke_invites("gil", OffsetDateTime::now_utc())
        .await
        .unwrap();
    refused_before_redeeming(
        &h,
        &state,
        "was revoked, or used to connect, while you were signing in",
    )
    .await;

    // A link that expires while the member signs in (its expiry moved into the past in
    // the database file, rather than waiting for the clock).
    let later = OffsetDateTime::now_utc() + Duration::seconds(2);
    let invite = h
        .invites
        .invite_issued("globex", "gil", later, later + Duration::days(1));
    let answer = get(
        h.addr,
        &format!("/connect/microsoft/start?invite={invite}"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let state = params(answer.header("location").unwrap())["state"].clone();
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", h._dir.path().join("web.sqlite").display());
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let moved = sqlx::query("UPDATE connect_states SET invite_expires_at = $1")
            .bind((OffsetDateTime::now_utc() - Duration::seconds(1)).unix_timestamp())
            .execute(&mut db)
            .await
            .unwrap();
        assert_eq!(moved.rows_affected(), 1);
    }
    refused_before_redeeming(
        &h,
        &state,
        "The connect link you started from expired while you were signing in",
    )
    .await;
}

/// The callback of `state` is refused with `text` (403), before any code is redeemed, and
/// nothing is stored.
async fn refused_before_redeeming(h: &Harness, state: &str, text: &str) {
    let answer = callback(
        h,
        &format!("/connect/microsoft/callback?state={state}&code=code-1"),
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains(text), "{}", answer.body);
    assert!(
        answer.body.contains("Nothing was stored"),
        "{}",
        answer.body
    );
    assert!(
        h.exchange.lock().unwrap().calls.is_empty(),
        "no code redeemed"
    );
    assert_eq!(grant_row(h).await, None);
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let h = harness().await;
    let operator = bearer(OPERATOR);
    let invite = h.invites.invite(
        "globex",
        "gil",
        OffsetDateTime::now_utc() + Duration::days(1),
    );
    let start_path = format!("/connect/microsoft/start?invite={invite}");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/healthz", vec![]),
        ("/metrics", vec![]),
        ("/login", vec![]),
        ("/", vec![]),
        ("/", vec![("Authorization", &operator)]),
        (
            "/companies/acme/members",
            vec![("Authorization", &operator)],
        ),
        ("/api/v1/companies/acme/status", vec![]),
        (
            "/api/v1/companies/acme/status",
            vec![("Authorization", &operator)],
        ),
        ("/no/such/page", vec![]),
        (&start_path, vec![]),
        ("/connect/microsoft/callback?state=x&code=y", vec![]),
    ];
    for (path, headers) in cases {
        let answer = get(h.addr, path, &headers).await;
        assert_eq!(
            answer.header("content-security-policy"),
            Some(datacap_web::CONTENT_SECURITY_POLICY),
            "{path}"
        );
        assert!(datacap_web::CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            answer.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{path}");
    }
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let h = harness().await;
    let body = format!("token={OPERATOR}");
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    for headers in [
        vec![form, ("Origin", "https://evil.example")],
        vec![form, ("Sec-Fetch-Site", "cross-site")],
        vec![
            form,
            ("Sec-Fetch-Site", "same-site"),
            ("Origin", "http://datacap.test"),
        ],
    ] {
        for path in ["/login", "/logout"] {
            let answer = request(h.addr, "POST", path, &headers, &body).await;
            assert_eq!(answer.status, 403, "{path} {headers:?}: {}", answer.body);
            assert!(
                answer.header("set-cookie").is_none(),
                "no session for {headers:?}"
            );
        }
    }
    // The site's own form (its public origin, or the Host it was sent to) signs in.
    for headers in [
        vec![
            form,
            ("Origin", "http://datacap.test"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        vec![form, ("Origin", "http://x")],
        vec![form],
    ] {
        let answer = request(h.addr, "POST", "/login", &headers, &body).await;
        assert_eq!(answer.status, 303, "{headers:?}: {}", answer.body);
    }
}

#[tokio::test]
async fn request_bodies_are_bounded() {
    let h = harness().await;
    let body = format!("token={}", "a".repeat(17 * 1024));
    let answer = request(
        h.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &body,
    )
    .await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(
        answer.body.contains("too long to be a token"),
        "{}",
        answer.body
    );
    assert_eq!(
        answer.header("content-type"),
        Some("text/html; charset=utf-8")
    );
}

/// Issue 20 §5: a sign-in that is not the form (JSON, no token field, no content type)
/// gets the product's sign-in page with a 400, never axum's plain-text 415 or 422.
#[tokio::test]
async fn a_sign_in_that_is_not_the_form_gets_the_sign_in_page() {
    let h = harness().await;
    for (headers, body) in [
        (
            vec![("Content-Type", "application/json")],
            r#"{"token":"x"}"#,
        ),
        (
            vec![("Content-Type", "application/x-www-form-urlencoded")],
            "nottoken=x",
        ),
        (vec![], "token=x"),
    ] {
        let answer = request(h.addr, "POST", "/login", &headers, body).await;
        assert_eq!(answer.status, 400, "{headers:?}: {}", answer.body);
        assert_eq!(
            answer.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{headers:?}"
        );
        assert!(
            answer.body.contains("action=\"/login\"")
                && answer.body.contains("Sign in with the form"),
            "{}",
            answer.body
        );
    }
}

#[tokio::test]
async fn idle_and_slow_connections_do_not_take_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = datacap_web::Limits {
        header_read_timeout: std::time::Duration::from_secs(1),
        max_connections: 16,
        ..datacap_web::Limits::default()
    };
    let h = harness_limited(Duration::minutes(10), limits).await;
    // 100 connections: half say nothing, half send a request head that never ends
    // (slow loris); six times the connection limit.
    let mut idle = Vec::new();
    for n in 0..100 {
        let mut stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        if n % 2 == 1 {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
        }
        idle.push(stream);
    }
    // A real request is still answered: the idle ones are closed after the header-read
    // timeout and the limit lets the rest wait in the backlog instead of exhausting
    // descriptors. The deadline is generous; this asserts an answer, not a speed.
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        get(
            h.addr,
            "/api/v1/companies/acme/status",
            &[("Authorization", &bearer(OPERATOR))],
        ),
    )
    .await
    .expect("a real request is answered while idle connections are held");
    assert_eq!(answer.status, 200, "{}", answer.body);
    // And the idle connections were closed by the server, not left open.
    for mut stream in idle.drain(..10) {
        let mut buffer = Vec::new();
        let closed = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            stream.read_to_end(&mut buffer),
        )
        .await
        .expect("the server closes an idle connection");
        assert!(
            closed.is_err() || buffer.is_empty() || buffer.starts_with(b"HTTP/1.1 408"),
            "{:?}",
            String::from_utf8_lossy(&buffer)
        );
    }
}

#[tokio::test]
async fn sign_in_and_the_connect_flow_are_throttled_per_client() {
    let limits = datacap_web::Limits {
        throttle_per_minute: 3,
        ..datacap_web::Limits::default()
    };
    let h = harness_limited(Duration::minutes(10), limits).await;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    for _ in 0..3 {
        let answer = request(
            h.addr,
            "POST",
            "/login",
            &form,
            "token=wrong-token-0123456789",
        )
        .await;
        assert_eq!(answer.status, 401);
    }
    // The fourth try within the minute, even with the right token: 429.
    let body = format!("token={OPERATOR}");
    let answer = request(h.addr, "POST", "/login", &form, &body).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.header("retry-after"), Some("60"));
    assert!(answer.header("set-cookie").is_none());
    // The connect callback shares the client's budget; the API and page do not.
    let answer = get(h.addr, "/connect/microsoft/callback?state=x&code=y", &[]).await;
    assert_eq!(answer.status, 429);
    let answer = get(
        h.addr,
        "/api/v1/companies/acme/status",
        &[("Authorization", &bearer(OPERATOR))],
    )
    .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn connect_links_connect_once_and_can_be_revoked() {
    let h = harness().await;
    let now = OffsetDateTime::now_utc();
    let link = |issued: OffsetDateTime| {
        format!(
            "/connect/microsoft/start?invite={}",
            h.invites
                .invite_issued("globex", "gil", issued, now + Duration::days(1))
        )
    };
    let older = link(now - Duration::hours(2));
    let used = link(now - Duration::hours(1));
    // Revoked: links issued before the revocation are refused, later ones work.
    h.store
        .revoke_invites("gil", now - Duration::minutes(90))
        .await
        .unwrap();
    let answer = get(h.addr, &older, &[]).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer.body.contains("revoked or has been used"),
        "{}",
        answer.body
    );
    let answer = get(h.addr, &used, &[]).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    // Connecting with it uses it up: the same link starts nothing any more.
    let location = answer.header("location").unwrap().to_owned();
    let state = params(&location)["state"].clone();
    let answer = callback(
        &h,
        &format!("/connect/microsoft/callback?state={state}&code=code-1"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = get(h.addr, &used, &[]).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(h.store.invites_not_before("gil").await.unwrap().is_some());
}

#[tokio::test]
async fn connect_start_signs_in_with_the_companys_own_client() {
    let h = harness().await;
    h.exchange.lock().unwrap().sign_in = Some(SignIn {
        client_id: "globex-own-client".to_owned(),
        authorize_url: "http://idp.test/globex-tenant/authorize".to_owned(),
    });
    let location = start(&h).await;
    assert!(
        location.starts_with("http://idp.test/globex-tenant/authorize?"),
        "{location}"
    );
    assert_eq!(params(&location)["client_id"], "globex-own-client");
    // No client at all for the company: refused, nothing started.
    h.exchange.lock().unwrap().sign_in = Some(SignIn {
        client_id: String::new(),
        authorize_url: "http://idp.test/x".to_owned(),
    });
    let invite = h.invites.invite(
        "globex",
        "gil",
        OffsetDateTime::now_utc() + Duration::days(1),
    );
    let answer = get(
        h.addr,
        &format!("/connect/microsoft/start?invite={invite}"),
        &[],
    )
    .await;
    // A feature that is not set up is a documented 404 page, never a 5xx (issue 20 §5).
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(
        answer.body.contains("not set up for your company"),
        "{}",
        answer.body
    );
    assert!(answer.header("location").is_none());
}

#[tokio::test]
async fn api_history_and_webhooks_with_every_auth_case() {
    let h = harness().await;
    let history = "/api/v1/companies/acme/members/bob/history";
    let webhooks = "/api/v1/companies/acme/webhooks";
    for path in [history, webhooks] {
        assert_eq!(get(h.addr, path, &[]).await.status, 401, "{path}");
        assert_eq!(
            get(h.addr, path, &[("Authorization", "Bearer nope")])
                .await
                .status,
            401,
            "{path}"
        );
        // Another company's token: 403, whatever exists.
        assert_eq!(
            get(h.addr, path, &[("Authorization", &bearer(GLOBEX))])
                .await
                .status,
            403,
            "{path}"
        );
        assert_eq!(
            get(h.addr, path, &[("Authorization", &bearer(OPERATOR))])
                .await
                .status,
            200,
            "{path}"
        );
    }
    let own = get(h.addr, history, &[("Authorization", &bearer(ACME))]).await;
    assert_eq!(own.status, 200, "{}", own.body);
    let body = own.json();
    assert_eq!(
        (body["company_id"].as_str(), body["member_id"].as_str()),
        (Some("acme"), Some("bob"))
    );
    let changes = body["changes"].as_array().unwrap().clone();
    // Apply's first evaluation of the three icons, then email and capture turning red.
    assert_eq!(changes.len(), 5, "{body}");
    assert_eq!(changes[0]["to_color"], "red");
    assert_eq!(changes[0]["to_reason"], "technical_failure");
    let email_red = changes
        .iter()
        .find(|c| c["icon"] == "email" && c["to_color"] == "red")
        .expect("the email icon's red change");
    assert_eq!(email_red["from_color"], "gray");
    assert_eq!(email_red["from_reason"], "awaiting_first_import");
    assert_eq!(email_red["attempt_id"], h.attempts[3]);
    assert!(
        changes[4]["from_color"].is_null(),
        "the first evaluation has no from"
    );
    let one = get(
        h.addr,
        &format!("{history}?limit=1"),
        &[("Authorization", &bearer(ACME))],
    )
    .await;
    assert_eq!(one.json()["changes"].as_array().unwrap().len(), 1);
    assert_eq!(
        get(
            h.addr,
            &format!("{history}?limit=0"),
            &[("Authorization", &bearer(ACME))]
        )
        .await
        .status,
        400
    );
    // A member of another company through acme's path: not found, nothing told.
    let other = get(
        h.addr,
        "/api/v1/companies/acme/members/gil/history",
        &[("Authorization", &bearer(ACME))],
    )
    .await;
    assert_eq!(other.status, 404);
    assert_eq!(
        get(
            h.addr,
            "/api/v1/companies/nope/webhooks",
            &[("Authorization", &bearer(OPERATOR))]
        )
        .await
        .status,
        404
    );

    let endpoints = get(h.addr, webhooks, &[("Authorization", &bearer(ACME))]).await;
    assert_eq!(endpoints.status, 200, "{}", endpoints.body);
    let list = endpoints.json()["endpoints"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["endpoint_id"], "ops");
    assert_eq!(list[0]["url"], "https://hooks.acme.test/in");
    assert_eq!(list[0]["active"], true);
    assert!(
        list[0]["backlog"].as_u64().unwrap() >= 2,
        "bob's red changes wait"
    );
    assert!(
        !endpoints.body.contains("secret"),
        "not even the secret's reference: {}",
        endpoints.body
    );
    let globex = get(
        h.addr,
        "/api/v1/companies/globex/webhooks",
        &[("Authorization", &bearer(GLOBEX))],
    )
    .await;
    assert_eq!(globex.json()["endpoints"], serde_json::json!([]));
}

#[tokio::test]
async fn member_page_shows_icons_history_and_attempts_to_its_company_only() {
    let h = harness().await;
    let page = "/companies/acme/members/bob";
    let anonymous = get(h.addr, page, &[]).await;
    assert_eq!(anonymous.status, 303);
    assert_eq!(
        anonymous.header("location"),
        Some("/login?next=%2Fcompanies%2Facme%2Fmembers%2Fbob")
    );
    assert_eq!(
        get(h.addr, page, &[("Authorization", &bearer(GLOBEX))])
            .await
            .status,
        403
    );
    let shown = get(h.addr, page, &[("Authorization", &bearer(ACME))]).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    let html = &shown.body;
    assert!(html.contains("bob@acme.test"));
    assert!(
        html.contains("data-icon=\"email\" data-color=\"red\" data-reason=\"technical_failure\""),
        "{html}"
    );
    assert!(html.contains("id=\"history\""));
    assert!(
        html.contains("<td data-label=\"From\">Gray · Waiting for the first import</td><td data-label=\"To\">Red · Imports keep failing"),
        "{html}"
    );
    for attempt in &h.attempts[1..] {
        assert!(
            html.contains(&format!("data-attempt=\"{attempt}\"")),
            "attempt {attempt}"
        );
    }
    assert!(html.contains("backendError"));
    assert!(html.contains("the provider failed"), "outcomes in words");
    assert!(html.contains("none yet"), "bob never imported successfully");
    assert!(html.contains("data-live=\"30\"") && html.contains("href=\"#main\""));
    let operator = get(
        h.addr,
        "/companies/acme/members/ana",
        &[("Authorization", &bearer(OPERATOR))],
    )
    .await;
    assert_eq!(operator.status, 200);
    assert!(operator.body.contains("(0 items)"), "ana's last success");
    // Another company's member through acme's path, and an unknown member: 404.
    for path in [
        "/companies/acme/members/gil",
        "/companies/acme/members/nobody",
    ] {
        assert_eq!(
            get(h.addr, path, &[("Authorization", &bearer(ACME))])
                .await
                .status,
            404,
            "{path}"
        );
    }
    // The Team members page links to it.
    let team = get(
        h.addr,
        "/companies/acme/members",
        &[("Authorization", &bearer(ACME))],
    )
    .await;
    assert!(
        team.body.contains("href=\"/companies/acme/members/bob\""),
        "{}",
        team.body
    );
}

/// Issue 19 §7: a user-by-user member's page shows their grant state and a personal
/// connect link the admin can send (one the connect flow accepts); a company-wide
/// member's page has neither. Only the operator sees and can use the full-resync action:
/// signed out 401, the company's admin 403, another company's member 404; the operator's
/// POST drops the saved cursor and makes the member due, then the page says so.
#[tokio::test]
async fn member_page_connection_link_and_the_operators_full_resync() {
    let h = harness().await;
    let page = get(
        h.addr,
        "/companies/globex/members/gil",
        &[("Authorization", &bearer(GLOBEX))],
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("data-connection=\"not_connected\""),
        "{}",
        page.body
    );
    let link = page
        .body
        .split("id=\"connect-link\"")
        .nth(1)
        .and_then(|rest| rest.split("value=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("a connect link")
        .replace("&amp;", "&")
        .replace("&#x3D;", "=");
    let path = link
        .strip_prefix("http://datacap.test")
        .expect("on the public URL");
    assert!(
        path.starts_with("/connect/microsoft/start?invite="),
        "{path}"
    );
    let started = get(h.addr, path, &[]).await;
    assert_eq!(
        started.status, 303,
        "the link starts the flow: {}",
        started.body
    );
    assert!(
        !page.body.contains("Force a full resync"),
        "admins do not see the operator's action"
    );
    let acme = get(
        h.addr,
        "/companies/acme/members/ana",
        &[("Authorization", &bearer(OPERATOR))],
    )
    .await;
    assert!(
        !acme.body.contains("id=\"connection\""),
        "company-wide: no link"
    );
    assert!(acme.body.contains("Force a full resync"));

    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let with = |token: &'static str| {
        let mut headers = form.to_vec();
        headers.push(("Authorization", Box::leak(bearer(token).into_boxed_str())));
        headers
    };
    let resync = "/companies/acme/members/ana/resync";
    count(
        &h,
        "UPDATE sync_state SET cursor = 'saved' WHERE member_id = 'ana' RETURNING 1",
    )
    .await;
    assert_eq!(request(h.addr, "POST", resync, &form, "").await.status, 401);
    assert_eq!(
        request(h.addr, "POST", resync, &with(ACME), "")
            .await
            .status,
        403
    );
    assert_eq!(
        request(
            h.addr,
            "POST",
            "/companies/acme/members/gil/resync",
            &with(OPERATOR),
            ""
        )
        .await
        .status,
        404,
        "another company's member through acme's path"
    );
    assert_eq!(
        count(
            &h,
            "SELECT COUNT(*) FROM sync_state WHERE member_id = 'ana' AND cursor = 'saved'"
        )
        .await,
        2,
        "the refused tries dropped nothing"
    );
    let done = request(h.addr, "POST", resync, &with(OPERATOR), "").await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.header("location"),
        Some("/companies/acme/members/ana?resynced=1")
    );
    assert_eq!(
        count(
            &h,
            "SELECT COUNT(*) FROM sync_state WHERE member_id = 'ana' AND cursor IS NULL"
        )
        .await,
        2,
        "both saved cursors dropped: the next polls are full passes"
    );
    let after = get(
        h.addr,
        "/companies/acme/members/ana?resynced=1",
        &[("Authorization", &bearer(OPERATOR))],
    )
    .await;
    assert!(after.body.contains("id=\"resynced\""), "{}", after.body);
}

/// Runs one SQL statement on the harness's SQLite file and reads its first column (0
/// when it returns no row).
async fn count(h: &Harness, sql: &'static str) -> i64 {
    use sqlx::Connection;
    let url = format!("sqlite://{}", h._dir.path().join("web.sqlite").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_optional(&mut db)
        .await
        .unwrap()
        .unwrap_or(0)
}

/// `application/x-www-form-urlencoded` of the pairs.
fn form_body(pairs: &[(&str, &str)]) -> String {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        body.append_pair(name, value);
    }
    body.finish()
}

/// Signs in with `token` (and `next`); the answer.
async fn sign_in(h: &Harness, token: &str, next: Option<&str>) -> Answer {
    let mut pairs = vec![("token", token)];
    if let Some(next) = next {
        pairs.push(("next", next));
    }
    request(
        h.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form_body(&pairs),
    )
    .await
}

fn session_of(answer: &Answer) -> String {
    answer
        .header("set-cookie")
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_deep_link_survives_sign_in_and_never_leads_off_the_site() {
    let h = harness().await;
    // Signed out, a filtered page: to sign-in, carrying it.
    let deep = "/companies/acme/members?color=red";
    let answer = get(h.addr, deep, &[]).await;
    assert_eq!(answer.status, 303);
    let login = answer.header("location").unwrap().to_owned();
    assert_eq!(
        login,
        "/login?next=%2Fcompanies%2Facme%2Fmembers%3Fcolor%3Dred"
    );
    // The form carries it along...
    let form = get(h.addr, &login, &[]).await;
    assert_eq!(form.status, 200);
    assert!(
        form.body
            .contains("name=\"next\" value=\"/companies/acme/members?color=red\""),
        "{}",
        form.body
    );
    // ...through a wrong token too...
    let wrong = sign_in(&h, "wrong-token-0123456789", Some(deep)).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("name=\"next\""), "{}", wrong.body);
    // ...and the admin lands on it.
    let signed_in = sign_in(&h, ACME, Some(deep)).await;
    assert_eq!(signed_in.status, 303);
    assert_eq!(signed_in.header("location"), Some(deep));
    let cookie = session_of(&signed_in);
    let page = get(h.addr, deep, &[("Cookie", &cookie)]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    // A member's page, for the operator.
    let member = "/companies/globex/members/gil";
    assert_eq!(
        get(h.addr, member, &[]).await.header("location"),
        Some("/login?next=%2Fcompanies%2Fglobex%2Fmembers%2Fgil")
    );
    let operator = sign_in(&h, OPERATOR, Some(member)).await;
    assert_eq!(operator.header("location"), Some(member));
    // Without a target, each principal's own start page, as before.
    assert_eq!(
        sign_in(&h, ACME, None).await.header("location"),
        Some("/companies/acme/members")
    );
    assert_eq!(
        sign_in(&h, OPERATOR, None).await.header("location"),
        Some("/")
    );
    // A company's admin is not sent to another company's page (it would only say 403).
    assert_eq!(
        sign_in(&h, ACME, Some("/companies/globex/members"))
            .await
            .header("location"),
        Some("/companies/acme/members")
    );
    // No open redirect: anything a browser could read as another site is dropped, in the
    // form and after sign-in.
    for evil in [
        "//evil.test",
        "//evil.test/companies/acme/members",
        "https://evil.test",
        "http:evil.test",
        "/\\evil.test",
        "\\/evil.test",
        "/%2Fevil.test",
        "/%2f%2fevil.test",
        "%2F%2Fevil.test",
        "/%5Cevil.test",
        "/%255C%255Cevil.test",
        "/%252F%252Fevil.test",
        "/\t/evil.test",
        "/%09/evil.test",
        "/%0D%0ALocation:%20https://evil.test",
        "javascript:alert(1)",
        "evil.test",
    ] {
        let answer = sign_in(&h, ACME, Some(evil)).await;
        assert_eq!(answer.status, 303, "{evil:?}");
        assert_eq!(
            answer.header("location"),
            Some("/companies/acme/members"),
            "{evil:?}"
        );
        let form = get(
            h.addr,
            &format!("/login?{}", form_body(&[("next", evil)])),
            &[],
        )
        .await;
        assert_eq!(form.status, 200, "{evil:?}");
        assert!(!form.body.contains("evil.test"), "{evil:?}: {}", form.body);
        assert!(!form.body.contains("name=\"next\""), "{evil:?}");
    }
    // The API and a script with a wrong token keep their 401 (no redirect).
    let api = get(h.addr, "/api/v1/companies/acme/status", &[]).await;
    assert_eq!(api.status, 401);
    assert!(api.header("location").is_none());
    let script = get(
        h.addr,
        "/companies/acme/members",
        &[("Authorization", "Bearer wrong")],
    )
    .await;
    assert_eq!(script.status, 401);
    assert!(script.header("location").is_none());
}

/// The hidden form token of a reminders page.
fn form_token(body: &str) -> String {
    let (_, rest) = body
        .split_once("name=\"form_token\" value=\"")
        .unwrap_or_else(|| panic!("a form token: {body}"));
    rest.split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn admins_send_connect_reminders_from_the_page() {
    let h = harness().await;
    let page = "/companies/globex/reminders";
    let globex = bearer(GLOBEX);
    // The Team members page's "not connected" banner links here.
    let members = get(
        h.addr,
        "/companies/globex/members",
        &[("Authorization", &globex)],
    )
    .await;
    assert!(
        members
            .body
            .contains("href=\"/companies/globex/reminders\""),
        "{}",
        members.body
    );
    // Signed out: to sign-in and back; a post is refused.
    let anonymous = get(h.addr, page, &[]).await;
    assert_eq!(anonymous.status, 303);
    assert_eq!(
        anonymous.header("location"),
        Some("/login?next=%2Fcompanies%2Fglobex%2Freminders")
    );
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    assert_eq!(request(h.addr, "POST", page, &form, "").await.status, 401);
    // Another company's admin: refused, reading and sending.
    let acme = bearer(ACME);
    assert_eq!(
        get(h.addr, page, &[("Authorization", &acme)]).await.status,
        403
    );
    let acme_form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Authorization", acme.as_str()),
    ];
    assert_eq!(
        request(h.addr, "POST", page, &acme_form, "form_token=x")
            .await
            .status,
        403
    );
    // An unknown company.
    let operator = bearer(OPERATOR);
    assert_eq!(
        get(
            h.addr,
            "/companies/nope/reminders",
            &[("Authorization", &operator)]
        )
        .await
        .status,
        404
    );

    // The admin's list: gil, not connected, and the send button.
    let login = sign_in(&h, GLOBEX, Some(page)).await;
    assert_eq!(login.header("location"), Some(page));
    let cookie = session_of(&login);
    let listed = get(h.addr, page, &[("Cookie", &cookie)]).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(
        listed.body.contains("data-member=\"gil\""),
        "{}",
        listed.body
    );
    assert!(listed.body.contains("gil@globex.test"));
    assert!(listed.body.contains("not connected"));
    assert!(
        listed.body.contains("Mail 1 reminder(s)"),
        "{}",
        listed.body
    );
    let token = form_token(&listed.body);
    let with_cookie = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Cookie", cookie.as_str()),
    ];
    // No form token, a forged one, or another principal's: refused, nothing sent.
    for body in [
        String::new(),
        "form_token=".to_owned(),
        format!("form_token={token}x"),
        form_body(&[(
            "form_token",
            &form_token(
                &get(h.addr, page, &[("Authorization", &operator)])
                    .await
                    .body,
            ),
        )]),
    ] {
        let answer = request(h.addr, "POST", page, &with_cookie, &body).await;
        assert_eq!(answer.status, 403, "{body}: {}", answer.body);
        assert!(answer.body.contains("did not come from the reminders page"));
    }
    // A cross-site post, even with the token: refused by the guard.
    let cross = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Cookie", cookie.as_str()),
        ("Sec-Fetch-Site", "cross-site"),
    ];
    let body = form_body(&[("form_token", &token)]);
    assert_eq!(
        request(h.addr, "POST", page, &cross, &body).await.status,
        403
    );
    assert!(h.mails.lock().unwrap().sent.is_empty());

    // Sent: gil gets the reminder with a personal link that names gil.
    let sent = request(h.addr, "POST", page, &with_cookie, &body).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(
        sent.body.contains("1 member(s) were mailed"),
        "{}",
        sent.body
    );
    assert!(sent.body.contains("id=\"mailed\""));
    assert!(!sent.body.contains("id=\"failed\""));
    let mail = h.mails.lock().unwrap().sent.pop().expect("one mail");
    assert_eq!(mail.to, "gil@globex.test");
    assert_eq!(
        mail.subject,
        "Please connect your Microsoft 365 account to datacap"
    );
    let link = mail
        .body
        .lines()
        .find(|line| line.starts_with("http://datacap.test/connect/microsoft/start?invite="))
        .unwrap_or_else(|| panic!("a link: {}", mail.body));
    let invite = link.split_once("invite=").unwrap().1;
    assert_eq!(
        h.invites.check(invite, OffsetDateTime::now_utc()),
        Ok(("globex".to_owned(), "gil".to_owned()))
    );
    // The relay refuses gil: the page names who was not mailed, and why.
    h.mails.lock().unwrap().refuse = Some("gil@globex.test".to_owned());
    let failed = request(h.addr, "POST", page, &with_cookie, &body).await;
    assert_eq!(failed.status, 200);
    assert!(failed.body.contains("id=\"failed\""), "{}", failed.body);
    assert!(failed.body.contains("1 member(s) could not be mailed"));
    assert!(failed.body.contains("refused the mail to gil@globex.test"));
    assert!(failed.body.contains("Nobody was mailed."));

    // A company-wide company has nobody to remind: the page says so, a post is a 409.
    let acme_page = get(
        h.addr,
        "/companies/acme/reminders",
        &[("Authorization", &operator)],
    )
    .await;
    assert_eq!(acme_page.status, 200);
    assert!(
        acme_page.body.contains("connects company-wide"),
        "{}",
        acme_page.body
    );
    assert!(!acme_page.body.contains("name=\"form_token\""));
    // (A valid token, as the page would sign it, does not make it sendable.)
    let acme_token = test_auth().form_token(
        &datacap_web::Principal::Operator,
        "reminders:acme",
        OffsetDateTime::now_utc(),
    );
    let operator_form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Authorization", operator.as_str()),
    ];
    let answer = request(
        h.addr,
        "POST",
        "/companies/acme/reminders",
        &operator_form,
        &form_body(&[("form_token", &acme_token)]),
    )
    .await;
    assert_eq!(answer.status, 409, "{}", answer.body);
}
