//! The sim over real HTTP on loopback: token grants, every quoted error body, cursor
//! semantics, and conformance of success answers to independent typed models.
//!
//! Each error row cites the section of ../shared/providers/*.md whose body it mirrors.
//! Google success answers are read back through `google-gmail1` / `google-calendar3` types;
//! Microsoft ones through the Graph-shaped structs in `graph_models` below. Both checks
//! also re-serialise the typed value and require every key the sim sent to survive, so a
//! field the real API does not have fails the test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datacap_sim::{Endpoints, Scenario, Sim, SimHandle};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::Sha256;

mod support;
use support::sign;

const GMAIL: &str = "https://www.googleapis.com/auth/gmail.readonly";
const CALENDAR: &str = "https://www.googleapis.com/auth/calendar.readonly";
const DIRECTORY: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly";
const SA_SMALL: &str = "datacap@datacap-sim.iam.gserviceaccount.com";
const SA_FAULTS: &str = "datacap@globex-sim.iam.gserviceaccount.com";
const MS_TENANT: &str = "8f3e1c52-2d4a-4c1e-9b7a-3f5d6e7a8b9c";
const MS_CLIENT: &str = "5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b";
const FAB_TENANT: &str = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";
const FAB_CLIENT: &str = "aa11bb22-cc33-4d44-8e55-ff6677889900";

// ---- harness --------------------------------------------------------------------------

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/sim")
}

struct Env {
    sim: SimHandle,
    http: reqwest::Client,
    e: Endpoints,
}

async fn start(file: &str) -> Env {
    let scenario = Scenario::from_file(&config_dir().join(file)).expect("scenario loads");
    let sim = Sim::start(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sim starts");
    let e = sim.endpoints().clone();
    // The workspace's one TLS provider (PROVIDERS.md "TLS"); plain http needs none, but
    // reqwest refuses to build a client without one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Env { sim, http, e }
}

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn read(response: reqwest::Response) -> Got {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Got {
        status,
        headers,
        body,
        text,
    }
}

impl Env {
    async fn get(&self, url: &str, token: &str) -> Got {
        read(
            self.http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("send"),
        )
        .await
    }

    async fn get_with(&self, url: &str, token: &str, headers: &[(&str, &str)]) -> Got {
        let mut request = self.http.get(url).bearer_auth(token);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        read(request.send().await.expect("send")).await
    }

    async fn form(&self, url: &str, form: &[(&str, &str)]) -> Got {
        read(self.http.post(url).form(form).send().await.expect("send")).await
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/{path}", self.e.control_url))
            .json(&body)
            .send()
            .await
            .expect("control");
        assert!(
            response.status().is_success(),
            "control {path} failed: {:?}",
            response.text().await
        );
        response.json().await.unwrap_or(Value::Null)
    }

    async fn fault(&self, tenant: &str, user: Option<&str>, fault: Value) {
        let mut body = fault;
        body["tenant"] = json!(tenant);
        if let Some(user) = user {
            body["user"] = json!(user);
        }
        self.control("faults", body).await;
    }

    async fn clear(&self) {
        self.control("faults/clear", json!({})).await;
    }

    async fn google_token(&self, iss: &str, sub: Option<&str>, scopes: &[&str]) -> Got {
        let now = now();
        let mut claims = json!({
            "iss": iss, "scope": scopes.join(" "), "aud": self.e.google_token_url,
            "iat": now, "exp": now + 3600,
        });
        if let Some(sub) = sub {
            claims["sub"] = json!(sub);
        }
        self.jwt_grant(&claims).await
    }

    async fn jwt_grant(&self, claims: &Value) -> Got {
        self.form(
            &self.e.google_token_url,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", &sign(claims)),
            ],
        )
        .await
    }

    async fn google_access(&self, iss: &str, sub: &str) -> String {
        let got = self
            .google_token(iss, Some(sub), &[GMAIL, CALENDAR, DIRECTORY])
            .await;
        assert_eq!(got.status, 200, "{}", got.text);
        got.body["access_token"].as_str().unwrap().to_owned()
    }

    async fn ms_app_token(&self, tenant: &str, client: &str, secret: &str) -> Got {
        self.form(
            &self.e.microsoft_token_url(tenant),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client),
                ("client_secret", secret),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await
    }

    async fn ms_access(&self) -> String {
        let got = self
            .ms_app_token(MS_TENANT, MS_CLIENT, "sim-microsoft-secret")
            .await;
        assert_eq!(got.status, 200, "{}", got.text);
        got.body["access_token"].as_str().unwrap().to_owned()
    }

    async fn graph_user_id(&self, email: &str) -> String {
        let users: Value = self
            .http
            .get(format!("{}/users", self.e.control_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == email)
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .expect("user exists")
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Every path to a non-null leaf, with array indexes dropped.
fn key_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                key_paths(v, &format!("{prefix}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for item in items {
                key_paths(item, prefix, out);
            }
        }
        Value::Null => {}
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

/// Deserialises `body` into `T` and requires every key to survive a round trip.
fn conforms<T: serde::de::DeserializeOwned + serde::Serialize>(body: &Value) -> T {
    let typed: T = serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("does not deserialize: {e}\n{body:#}"));
    let back = serde_json::to_value(&typed).unwrap();
    let (mut sent, mut kept) = (BTreeSet::new(), BTreeSet::new());
    key_paths(body, "", &mut sent);
    key_paths(&back, "", &mut kept);
    let lost: Vec<_> = sent.difference(&kept).collect();
    assert!(
        lost.is_empty(),
        "keys the typed model does not know: {lost:?}"
    );
    typed
}

/// Polls the control endpoint until `done` holds (no sleeps to wait for state).
async fn wait_until(env: &Env, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats: Value = env
            .http
            .get(format!("{}/stats", env.e.control_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&stats) || Instant::now() > deadline {
            return stats;
        }
        tokio::task::yield_now().await;
    }
}

// ---- Google: tokens --------------------------------------------------------------------

#[tokio::test]
async fn google_jwt_bearer_issues_a_token_gmail_accepts() {
    let env = start("small.toml").await;
    let got = env
        .google_token(SA_SMALL, Some("ada@acme.example"), &[GMAIL])
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["token_type"], "Bearer");
    assert_eq!(got.body["expires_in"], 3599);
    assert!(
        got.body.get("refresh_token").is_none(),
        "JWT grant has no refresh token (google.md §2)"
    );
    let token = got.body["access_token"].as_str().unwrap();
    let profile = env
        .get(&format!("{}/users/me/profile", env.e.gmail_base), token)
        .await;
    assert_eq!(profile.status, 200, "{}", profile.text);
    let typed: google_gmail1::api::Profile = conforms(&profile.body);
    assert_eq!(typed.email_address.as_deref(), Some("ada@acme.example"));
    assert_eq!(typed.messages_total, Some(12));
    assert!(typed.history_id.is_some());
    env.sim.shutdown().await;
}

/// One row per refusal of the JWT-bearer grant (providers/google.md §2).
#[tokio::test]
async fn google_jwt_bearer_refusals() {
    let env = start("small.toml").await;
    let now = now();
    let base = |sub: &str| json!({"iss": SA_SMALL, "scope": GMAIL, "aud": env.e.google_token_url, "iat": now, "exp": now + 3600, "sub": sub});
    let short = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
    let mut long = base("ada@acme.example");
    long["exp"] = json!(now + 7200);
    let mut expired = base("ada@acme.example");
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let mut not_delegated = base("ada@acme.example");
    not_delegated["scope"] = json!("https://mail.google.com/");
    let mut wrong_aud = base("ada@acme.example");
    wrong_aud["aud"] = json!("https://example.invalid/token");
    let rows: Vec<(&str, Value, u16, Value)> = vec![
        // §2 "Clock skew / exp-iat > 1 h"
        (
            "exp-iat > 1h",
            long,
            400,
            json!({"error": "invalid_grant", "error_description": short}),
        ),
        (
            "expired",
            expired,
            400,
            json!({"error": "invalid_grant", "error_description": short}),
        ),
        // §2 "`sub` is not a user of the domain"
        (
            "unknown sub",
            base("nobody@acme.example"),
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid email or User ID"}),
        ),
        // §2 "`sub` malformed / not an email"
        (
            "malformed sub",
            base("not-an-email"),
            400,
            json!({"error": "invalid_grant", "error_description": "Not a valid email."}),
        ),
        // §2 "Client ID not in Admin console DWD list, or a requested scope not on its allow-list"
        (
            "scope not delegated",
            not_delegated,
            401,
            json!({"error": "unauthorized_client", "error_description": "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}),
        ),
        (
            "wrong aud",
            wrong_aud,
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid JWT: Failed audience check."}),
        ),
    ];
    for (name, claims, status, body) in rows {
        let got = env.jwt_grant(&claims).await;
        assert_eq!(got.status.as_u16(), status, "{name}: {}", got.text);
        assert_eq!(got.body, body, "{name}");
        assert_eq!(
            got.header("content-type"),
            "application/json; charset=utf-8",
            "{name}"
        );
    }
    // §2 "Signature doesn't verify": flip one byte of the signature.
    let mut assertion = sign(&base("ada@acme.example"));
    let last = assertion.pop().unwrap();
    assertion.push(if last == 'A' { 'B' } else { 'A' });
    let got = env
        .form(
            &env.e.google_token_url,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", &assertion),
            ],
        )
        .await;
    assert_eq!(got.status, 400);
    assert_eq!(
        got.body,
        json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    );
    // §2 "Key for unknown issuer"
    let got = env
        .google_token(
            "someone@else.iam.gserviceaccount.com",
            Some("ada@acme.example"),
            &[GMAIL],
        )
        .await;
    assert_eq!(
        got.body,
        json!({"error": "invalid_grant", "error_description": "Invalid JWT: No valid verifier found for issuer."})
    );
    env.sim.shutdown().await;
}

/// Authorization code with PKCE S256, then refresh (providers/google.md §3).
#[tokio::test]
async fn google_authorization_code_pkce_and_refresh() {
    let env = start("small.toml").await;
    let redirect = "http://127.0.0.1:8080/oauth/google/callback";
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gXk-bEjFw";
    let challenge = "KpbPxyScU-wBjVxu1S1lU4a6qU9hFH2RRaBpDCvD_KA"; // base64url(sha256(verifier))
    let response = env
        .http
        .get(&env.e.google_authorize_url)
        .query(&[
            ("client_id", "sim-google-client.apps.googleusercontent.com"),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("scope", &format!("openid email {GMAIL}")),
            ("state", "xyz"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("login_hint", "grace@acme.example"),
            ("access_type", "offline"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = reqwest::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(redirect));
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["state"], "xyz");
    let code = query["code"].clone();
    let exchange = |verifier: &'static str| {
        let code = code.clone();
        let env = &env;
        async move {
            env.form(
                &env.e.google_token_url,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("client_id", "sim-google-client.apps.googleusercontent.com"),
                    ("client_secret", "sim-google-secret"),
                    ("redirect_uri", redirect),
                    ("code_verifier", verifier),
                ],
            )
            .await
        }
    };
    let wrong = exchange("wrong-verifier-wrong-verifier-wrong-verifier-00").await;
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.body["error"], "invalid_grant");
    let got = exchange(verifier).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.body["scope"], format!("openid email {GMAIL}"));
    let refresh = got.body["refresh_token"].as_str().unwrap().to_owned();
    let again = exchange(verifier).await;
    assert_eq!(
        again.body,
        json!({"error": "invalid_grant", "error_description": "Code was already redeemed."})
    );
    let refreshed = env
        .form(
            &env.e.google_token_url,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", "sim-google-client.apps.googleusercontent.com"),
                ("client_secret", "sim-google-secret"),
            ],
        )
        .await;
    assert_eq!(refreshed.status, 200);
    assert_eq!(refreshed.body["scope"], format!("openid email {GMAIL}"));
    assert!(
        refreshed.body.get("refresh_token").is_none(),
        "Google does not rotate"
    );
    let token = refreshed.body["access_token"].as_str().unwrap();
    let profile = env
        .get(&format!("{}/users/me/profile", env.e.gmail_base), token)
        .await;
    assert_eq!(profile.body["emailAddress"], "grace@acme.example");
    // Wrong secret: 401 invalid_client (google.md §3 "Wrong client secret").
    let bad = env
        .form(
            &env.e.google_token_url,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", "sim-google-client.apps.googleusercontent.com"),
                ("client_secret", "nope"),
            ],
        )
        .await;
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.body,
        json!({"error": "invalid_client", "error_description": "Unauthorized"})
    );
    env.sim.shutdown().await;
}

// ---- Google: fault table ---------------------------------------------------------------

/// Every Google body quoted in providers/google.md that the sim produces, by fault name:
/// (fault, endpoint path suffix or "token", status, exact JSON, extra header checks).
#[tokio::test]
async fn google_quoted_bodies() {
    let env = start("small.toml").await;
    let user = "ada@acme.example";
    let token = env.google_access(SA_SMALL, user).await;
    let gmail = format!("{}/users/me/profile", env.e.gmail_base);
    let history = format!("{}/users/me/history?startHistoryId=1", env.e.gmail_base);
    let calendar = format!("{}/calendars/primary/events", env.e.calendar_base);
    let err = |code: u16, message: &str, errors: Value, status: Option<&str>| {
        let mut inner = json!({"code": code, "message": message, "errors": errors});
        if let Some(status) = status {
            inner["status"] = json!(status);
        }
        json!({"error": inner})
    };
    let item = |domain: &str, reason: &str, message: &str| json!([{"domain": domain, "reason": reason, "message": message}]);
    let rows: Vec<(&str, &str, u16, Value)> = vec![
        // §1.1 documented legacy shape / §4 "Domain policy blocks the app"
        (
            "domain_policy",
            &gmail,
            403,
            err(
                403,
                "The domain administrators have disabled Gmail apps.",
                item(
                    "global",
                    "domainPolicy",
                    "The domain administrators have disabled Gmail apps.",
                ),
                None,
            ),
        ),
        // §4 "Gmail disabled for the user / no Gmail licence"
        (
            "mailbox_not_enabled",
            &gmail,
            400,
            err(
                400,
                "Mail service not enabled",
                item("global", "failedPrecondition", "Mail service not enabled"),
                Some("FAILED_PRECONDITION"),
            ),
        ),
        // §4 "Service account token without sub"
        (
            "precondition_failed",
            &gmail,
            400,
            err(
                400,
                "Precondition check failed.",
                item("global", "failedPrecondition", "Precondition check failed."),
                Some("FAILED_PRECONDITION"),
            ),
        ),
        // §4 "`userId` in path ≠ token's subject"
        (
            "delegation_denied",
            &gmail,
            403,
            err(
                403,
                &format!("Delegation denied for {user}"),
                item(
                    "global",
                    "forbidden",
                    &format!("Delegation denied for {user}"),
                ),
                Some("PERMISSION_DENIED"),
            ),
        ),
        // §4 / §6 rate limits and quotas
        (
            "rate_limit_exceeded",
            &gmail,
            403,
            err(
                403,
                "Rate Limit Exceeded",
                item("usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
                None,
            ),
        ),
        (
            "user_rate_limit_exceeded",
            &gmail,
            403,
            err(
                403,
                "User Rate Limit Exceeded",
                item(
                    "usageLimits",
                    "userRateLimitExceeded",
                    "User Rate Limit Exceeded",
                ),
                None,
            ),
        ),
        (
            "daily_limit_exceeded",
            &gmail,
            403,
            err(
                403,
                "Daily Limit Exceeded",
                item("usageLimits", "dailyLimitExceeded", "Daily Limit Exceeded"),
                None,
            ),
        ),
        (
            "quota_exceeded",
            &calendar,
            403,
            err(
                403,
                "Calendar usage limits exceeded.",
                item(
                    "usageLimits",
                    "quotaExceeded",
                    "Calendar usage limits exceeded.",
                ),
                None,
            ),
        ),
        (
            "rate_limited",
            &gmail,
            429,
            err(
                429,
                "Rate Limit Exceeded",
                item("usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
                Some("RESOURCE_EXHAUSTED"),
            ),
        ),
        (
            "too_many_concurrent_requests",
            &gmail,
            429,
            err(
                429,
                "Too many concurrent requests for user",
                item(
                    "global",
                    "rateLimitExceeded",
                    "Too many concurrent requests for user",
                ),
                Some("RESOURCE_EXHAUSTED"),
            ),
        ),
        // §4 "Backend error"
        (
            "server_error",
            &gmail,
            500,
            err(
                500,
                "Backend Error",
                item("global", "backendError", "Backend Error"),
                None,
            ),
        ),
        // §4 history.list stale startHistoryId
        (
            "history_not_found",
            &history,
            404,
            err(
                404,
                "Requested entity was not found.",
                json!([{"message": "Requested entity was not found.", "domain": "global", "reason": "notFound"}]),
                Some("NOT_FOUND"),
            ),
        ),
        // §6 "Sync token invalid" (fires on a syncToken call; see the cursor test) and
        // "User has no Calendar service ... or is suspended"
        (
            "not_a_calendar_user",
            &calendar,
            403,
            err(
                403,
                "The user must be signed up for Google Calendar.",
                item(
                    "calendar",
                    "notACalendarUser",
                    "The user must be signed up for Google Calendar.",
                ),
                None,
            ),
        ),
        (
            "calendar_not_found",
            &calendar,
            404,
            err(
                404,
                "Not Found",
                item("global", "notFound", "Not Found"),
                None,
            ),
        ),
        // §6 "`updatedMin` too old"
        (
            "updated_min_too_long_ago",
            &calendar,
            410,
            err(
                410,
                "The requested minimum modification time lies too far in the past.",
                json!([{"domain": "calendar", "reason": "updatedMinTooLongAgo", "message": "The requested minimum modification time lies too far in the past.", "locationType": "parameter", "location": "updatedMin"}]),
                None,
            ),
        ),
        // §4 "Backend error" (503 variant)
        (
            "service_unavailable",
            &gmail,
            503,
            err(
                503,
                "The service is currently unavailable.",
                item(
                    "global",
                    "backendError",
                    "The service is currently unavailable.",
                ),
                Some("UNAVAILABLE"),
            ),
        ),
        // §4 documented 401
        (
            "invalid_credentials_documented",
            &gmail,
            401,
            err(
                401,
                "Invalid Credentials",
                json!([{"domain": "global", "reason": "authError", "message": "Invalid Credentials", "locationType": "header", "location": "Authorization"}]),
                None,
            ),
        ),
    ];
    for (fault, url, status, body) in rows {
        env.fault(
            "acme",
            Some(user),
            json!({"fault": fault, "endpoint": "api", "times": 1}),
        )
        .await;
        let got = env.get(url, &token).await;
        assert_eq!(got.status.as_u16(), status, "{fault}: {}", got.text);
        assert_eq!(got.body, body, "{fault}");
        assert_eq!(
            got.header("content-type"),
            "application/json; charset=UTF-8",
            "{fault}"
        );
        // fired once, then recovered
        let again = env.get(&gmail, &token).await;
        assert_eq!(again.status, 200, "{fault} should fire once only");
    }
    // The legacy domainPolicy quote keeps Google's key order: code, message, errors.
    env.fault(
        "acme",
        Some(user),
        json!({"fault": "domain_policy", "times": 1}),
    )
    .await;
    let got = env.get(&gmail, &token).await;
    assert_eq!(
        got.text,
        r#"{"error":{"code":403,"message":"The domain administrators have disabled Gmail apps.","errors":[{"domain":"global","reason":"domainPolicy","message":"The domain administrators have disabled Gmail apps."}]}}"#
    );
    // §1.1 scope failure (php-samples#123) with WWW-Authenticate insufficient_scope.
    for (fault, with_errors) in [
        ("insufficient_permissions", true),
        ("insufficient_permissions_no_errors", false),
    ] {
        env.fault("acme", Some(user), json!({"fault": fault, "times": 1}))
            .await;
        let got = env.get(&gmail, &token).await;
        assert_eq!(got.status, 403, "{fault}");
        let mut expected = json!({"error": {
            "code": 403,
            "message": "Request had insufficient authentication scopes.",
            "status": "PERMISSION_DENIED",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "domain": "googleapis.com",
                         "metadata": {"method": "caribou.api.proto.MailboxService.GetProfile", "service": "gmail.googleapis.com"}}]
        }});
        if with_errors {
            expected["error"]["errors"] = json!([{"message": "Insufficient Permission", "domain": "global", "reason": "insufficientPermissions"}]);
        }
        assert_eq!(got.body, expected, "{fault}");
        assert!(got.header("www-authenticate").starts_with("Bearer realm=\"https://accounts.google.com/\", error=\"insufficient_scope\", scope=\""), "{fault}");
    }
    // §4 accessNotConfigured + ErrorInfo SERVICE_DISABLED
    env.fault(
        "acme",
        Some(user),
        json!({"fault": "access_not_configured", "times": 1}),
    )
    .await;
    let got = env.get(&gmail, &token).await;
    assert_eq!(got.status, 403);
    assert_eq!(
        got.body["error"]["errors"][0]["reason"],
        "accessNotConfigured"
    );
    assert_eq!(got.body["error"]["errors"][0]["domain"], "usageLimits");
    assert_eq!(
        got.body["error"]["details"][0]["reason"],
        "SERVICE_DISABLED"
    );
    assert_eq!(
        got.body["error"]["details"][0]["metadata"]["service"],
        "gmail.googleapis.com"
    );
    assert!(
        got.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Gmail API has not been used in project")
    );
    env.sim.shutdown().await;
}

/// Token-endpoint bodies (providers/google.md §1.2, §2, §3), produced by name.
#[tokio::test]
async fn google_token_quoted_bodies() {
    let env = start("small.toml").await;
    let flat = |e: &str, d: &str| json!({"error": e, "error_description": d});
    let rows: Vec<(&str, u16, Value)> = vec![
        (
            "delegation_unauthorized_client",
            401,
            flat(
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
            ),
        ),
        (
            "invalid_grant_revoked",
            400,
            flat("invalid_grant", "Token has been expired or revoked."),
        ),
        (
            "invalid_email",
            400,
            flat("invalid_grant", "Invalid email or User ID"),
        ),
        (
            "not_a_valid_email",
            400,
            flat("invalid_grant", "Not a valid email."),
        ),
        (
            "account_deleted",
            400,
            flat("invalid_grant", "The account has been deleted"),
        ),
        (
            "invalid_jwt_signature",
            400,
            flat("invalid_grant", "Invalid JWT Signature."),
        ),
        (
            "jwt_not_short_lived",
            400,
            flat(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            ),
        ),
        (
            "account_not_found",
            400,
            flat("invalid_grant", "Invalid grant: account not found"),
        ),
        (
            "invalid_client",
            401,
            flat("invalid_client", "The OAuth client was not found."),
        ),
        (
            "deleted_client",
            401,
            flat("deleted_client", "The OAuth client was deleted."),
        ),
        (
            "internal_failure",
            500,
            flat("internal_failure", "Backend Error"),
        ),
    ];
    for (fault, status, body) in rows {
        env.fault(
            "acme",
            Some("ada@acme.example"),
            json!({"fault": fault, "times": 1}),
        )
        .await;
        let got = env
            .google_token(SA_SMALL, Some("ada@acme.example"), &[GMAIL])
            .await;
        assert_eq!(got.status.as_u16(), status, "{fault}");
        assert_eq!(got.body, body, "{fault}");
    }
    // §3 RAPT: error_subtype, and admin_policy_enforced.
    env.fault(
        "acme",
        Some("ada@acme.example"),
        json!({"fault": "invalid_rapt", "times": 1}),
    )
    .await;
    let got = env
        .google_token(SA_SMALL, Some("ada@acme.example"), &[GMAIL])
        .await;
    assert_eq!(
        got.body["error_description"],
        "reauth related error (invalid_rapt)"
    );
    assert_eq!(got.body["error_subtype"], "invalid_rapt");
    env.fault(
        "acme",
        Some("ada@acme.example"),
        json!({"fault": "admin_policy_enforced", "times": 1}),
    )
    .await;
    let got = env
        .google_token(SA_SMALL, Some("ada@acme.example"), &[GMAIL])
        .await;
    assert_eq!(
        (got.status.as_u16(), got.body["error"].as_str()),
        (400, Some("admin_policy_enforced"))
    );
    env.sim.shutdown().await;
}

/// Access tokens are checked: wrong, missing and expired tokens get the live 401
/// (providers/google.md §4 "Same, as actually sent today").
#[tokio::test]
async fn google_api_checks_access_tokens() {
    let env = start("small.toml").await;
    let expected = json!({"error": {
        "code": 401,
        "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError", "location": "Authorization", "locationType": "header"}],
        "status": "UNAUTHENTICATED"
    }});
    let url = format!("{}/users/me/profile", env.e.gmail_base);
    let got = env.get(&url, "ya29.not-a-token").await;
    assert_eq!(got.status, 401);
    assert_eq!(got.body, expected);
    assert!(
        got.header("www-authenticate")
            .starts_with("Bearer realm=\"https://accounts.google.com/\"")
    );
    let token = env.google_access(SA_SMALL, "ada@acme.example").await;
    assert_eq!(env.get(&url, &token).await.status, 200);
    env.control("expire", json!({"tenant": "acme", "what": "tokens"}))
        .await;
    let got = env.get(&url, &token).await;
    assert_eq!((got.status.as_u16(), &got.body), (401, &expected));
    // A token for Ada cannot read Grace's mailbox (§4 "Delegation denied").
    let token = env.google_access(SA_SMALL, "ada@acme.example").await;
    let got = env
        .get(
            &format!("{}/users/grace@acme.example/profile", env.e.gmail_base),
            &token,
        )
        .await;
    assert_eq!(got.status, 403);
    assert_eq!(
        got.body["error"]["message"],
        "Delegation denied for grace@acme.example"
    );
    // A token without the Gmail scope: 403 insufficientPermissions.
    let got = env
        .google_token(SA_SMALL, Some("ada@acme.example"), &[CALENDAR])
        .await;
    let calendar_only = got.body["access_token"].as_str().unwrap().to_owned();
    let got = env.get(&url, &calendar_only).await;
    assert_eq!(got.status, 403);
    assert_eq!(
        got.body["error"]["errors"][0]["reason"],
        "insufficientPermissions"
    );
    // A service-account token without `sub`: 400 "Precondition check failed." (§4).
    let got = env.google_token(SA_SMALL, None, &[GMAIL]).await;
    let no_sub = got.body["access_token"].as_str().unwrap().to_owned();
    let got = env.get(&url, &no_sub).await;
    assert_eq!(
        (got.status.as_u16(), got.body["error"]["message"].as_str()),
        (400, Some("Precondition check failed."))
    );
    env.sim.shutdown().await;
}

// ---- Google: cursors -------------------------------------------------------------------

#[tokio::test]
async fn gmail_full_pass_incremental_expiry_and_resync() {
    let env = start("small.toml").await;
    let token = env.google_access(SA_SMALL, "ada@acme.example").await;
    let base = &env.e.gmail_base;
    // Full pass: profile for the cursor, then messages.list pages + messages.get metadata.
    let profile: google_gmail1::api::Profile = conforms(
        &env.get(&format!("{base}/users/me/profile"), &token)
            .await
            .body,
    );
    let cursor = profile.history_id.unwrap();
    let mut ids = Vec::new();
    let mut page_token: Option<String> = None;
    for _ in 0..10 {
        let mut url = format!("{base}/users/me/messages?maxResults=5");
        if let Some(t) = &page_token {
            url.push_str(&format!("&pageToken={t}"));
        }
        let got = env.get(&url, &token).await;
        let list: google_gmail1::api::ListMessagesResponse = conforms(&got.body);
        assert_eq!(list.result_size_estimate, Some(12));
        ids.extend(
            list.messages
                .unwrap_or_default()
                .into_iter()
                .map(|m| m.id.unwrap()),
        );
        page_token = list.next_page_token;
        if page_token.is_none() {
            break;
        }
    }
    assert_eq!(ids.len(), 12);
    let got = env.get(&format!("{base}/users/me/messages/{}?format=metadata&metadataHeaders=Subject&metadataHeaders=From", ids[0]), &token).await;
    let message: google_gmail1::api::Message = conforms(&got.body);
    let headers = message.payload.unwrap().headers.unwrap();
    assert_eq!(headers.len(), 2);
    assert!(message.history_id.unwrap() <= cursor);
    assert!(message.internal_date.is_some());
    // Incremental with nothing new: empty history, same historyId.
    let got = env
        .get(
            &format!("{base}/users/me/history?startHistoryId={cursor}"),
            &token,
        )
        .await;
    let history: google_gmail1::api::ListHistoryResponse = conforms(&got.body);
    assert!(history.history.is_none());
    assert_eq!(history.history_id, Some(cursor));
    // New mail arrives (control endpoint), one message is deleted.
    let added = env
        .control(
            "mail",
            json!({"tenant": "acme", "user": "ada@acme.example", "add": 3, "remove": [ids[1]]}),
        )
        .await;
    assert_eq!(added["added"].as_array().unwrap().len(), 3);
    let got = env
        .get(
            &format!("{base}/users/me/history?startHistoryId={cursor}&maxResults=2"),
            &token,
        )
        .await;
    let first: google_gmail1::api::ListHistoryResponse = conforms(&got.body);
    assert_eq!(first.history.as_ref().unwrap().len(), 2);
    let next = first.next_page_token.clone().unwrap();
    let got = env
        .get(
            &format!(
                "{base}/users/me/history?startHistoryId={cursor}&maxResults=2&pageToken={next}"
            ),
            &token,
        )
        .await;
    let second: google_gmail1::api::ListHistoryResponse = conforms(&got.body);
    assert!(second.next_page_token.is_none());
    let records: Vec<_> = first
        .history
        .unwrap()
        .into_iter()
        .chain(second.history.unwrap())
        .collect();
    let added_count = records
        .iter()
        .filter(|r| r.messages_added.is_some())
        .count();
    let deleted: Vec<_> = records
        .iter()
        .filter_map(|r| r.messages_deleted.as_ref())
        .collect();
    assert_eq!((added_count, deleted.len()), (3, 1));
    assert_eq!(
        deleted[0][0].message.as_ref().unwrap().id.as_deref(),
        Some(ids[1].as_str())
    );
    let new_cursor = second.history_id.unwrap();
    assert!(new_cursor > cursor);
    // Deleted message: 404 on messages.get (skip, not a cursor reset).
    let got = env
        .get(&format!("{base}/users/me/messages/{}", ids[1]), &token)
        .await;
    assert_eq!(got.status, 404);
    // Expiry: old cursor answers 404 (google.md §4/§5), resync from the profile works.
    env.control(
        "expire",
        json!({"tenant": "acme", "user": "ada@acme.example", "what": "cursors"}),
    )
    .await;
    let got = env
        .get(
            &format!("{base}/users/me/history?startHistoryId={new_cursor}"),
            &token,
        )
        .await;
    assert_eq!(got.status, 404);
    assert_eq!(
        got.body,
        json!({"error": {"code": 404, "message": "Requested entity was not found.", "errors": [{"message": "Requested entity was not found.", "domain": "global", "reason": "notFound"}], "status": "NOT_FOUND"}})
    );
    let profile: google_gmail1::api::Profile = conforms(
        &env.get(&format!("{base}/users/me/profile"), &token)
            .await
            .body,
    );
    let resynced = profile.history_id.unwrap();
    let got = env
        .get(
            &format!("{base}/users/me/history?startHistoryId={resynced}"),
            &token,
        )
        .await;
    assert_eq!(got.status, 200);
    assert!(got.body.get("history").is_none());
    // Missing startHistoryId: 400 invalidArgument (§4).
    let got = env.get(&format!("{base}/users/me/history"), &token).await;
    assert_eq!(got.status, 400);
    assert_eq!(
        got.body["error"]["message"],
        "Missing/invalid parameter: startHistoryId"
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn calendar_full_pass_sync_token_expiry_and_resync() {
    let env = start("small.toml").await;
    let token = env.google_access(SA_SMALL, "ada@acme.example").await;
    let url = format!("{}/calendars/primary/events", env.e.calendar_base);
    // Full pass in pages of 4: nextSyncToken only on the last page.
    let mut seen = Vec::new();
    let mut page_token: Option<String> = None;
    let mut sync_token = None;
    for _ in 0..10 {
        let mut request = format!("{url}?maxResults=4");
        if let Some(t) = &page_token {
            request.push_str(&format!("&pageToken={t}"));
        }
        let events: google_calendar3::api::Events = conforms(&env.get(&request, &token).await.body);
        seen.extend(
            events
                .items
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.id.unwrap()),
        );
        match events.next_page_token {
            Some(next) => {
                assert!(
                    events.next_sync_token.is_none(),
                    "nextSyncToken only on the last page (google.md §7)"
                );
                page_token = Some(next);
            }
            None => {
                sync_token = events.next_sync_token;
                break;
            }
        }
    }
    assert_eq!(seen.len(), 6);
    let sync_token = sync_token.expect("last page has nextSyncToken");
    // New event and a cancellation: the incremental pass returns both, cancelled minimal.
    let added = env
        .control(
            "events",
            json!({"tenant": "acme", "user": "ada@acme.example", "add": 1, "remove": [seen[0]]}),
        )
        .await;
    let new_id = added["added"][0]["id"].as_str().unwrap().to_owned();
    let got = env
        .get(&format!("{url}?syncToken={sync_token}"), &token)
        .await;
    let events: google_calendar3::api::Events = conforms(&got.body);
    let items = events.items.unwrap();
    assert_eq!(items.len(), 2);
    let cancelled = items
        .iter()
        .find(|e| e.id.as_deref() == Some(seen[0].as_str()))
        .unwrap();
    assert_eq!(cancelled.status.as_deref(), Some("cancelled"));
    assert!(
        items
            .iter()
            .any(|e| e.id.as_deref() == Some(new_id.as_str())
                && e.status.as_deref() == Some("confirmed"))
    );
    let next_sync = events.next_sync_token.unwrap();
    // Nothing new: empty items, a sync token.
    let got = env
        .get(&format!("{url}?syncToken={next_sync}"), &token)
        .await;
    let events: google_calendar3::api::Events = conforms(&got.body);
    assert!(events.items.unwrap().is_empty());
    // Expiry: 410 fullSyncRequired, exactly as google.md §6 quotes it; resync works.
    env.control(
        "expire",
        json!({"tenant": "acme", "user": "ada@acme.example", "what": "cursors"}),
    )
    .await;
    let got = env
        .get(&format!("{url}?syncToken={next_sync}"), &token)
        .await;
    assert_eq!(got.status, 410);
    assert_eq!(
        got.body,
        json!({"error": {"code": 410, "message": "Sync token is no longer valid, a full sync is required.",
        "errors": [{"domain": "calendar", "reason": "fullSyncRequired", "message": "Sync token is no longer valid, a full sync is required.", "locationType": "parameter", "location": "syncToken"}]}})
    );
    let events: google_calendar3::api::Events = conforms(&env.get(&url, &token).await.body);
    assert_eq!(events.items.unwrap().len(), 6);
    let fresh = events.next_sync_token.unwrap();
    assert_eq!(
        env.get(&format!("{url}?syncToken={fresh}"), &token)
            .await
            .status,
        200
    );
    // The `cursor_expired` fault fires only on an incremental call.
    env.fault(
        "acme",
        Some("ada@acme.example"),
        json!({"fault": "cursor_expired", "times": 1}),
    )
    .await;
    assert_eq!(env.get(&url, &token).await.status, 200);
    assert_eq!(
        env.get(&format!("{url}?syncToken={fresh}"), &token)
            .await
            .status,
        410
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn directory_lists_members_and_refuses_non_admins() {
    let env = start("faults.toml").await;
    let admin = env.google_access(SA_FAULTS, "admin@globex.example").await;
    let url = format!(
        "{}/users?customer=my_customer&maxResults=500&orderBy=email",
        env.e.directory_base
    );
    let got = env.get(&url, &admin).await;
    assert_eq!(got.status, 200, "{}", got.text);
    let users = got.body["users"].as_array().unwrap();
    assert!(
        users
            .iter()
            .all(|u| u["primaryEmail"] != "gone@globex.example"),
        "deleted users are not listed"
    );
    let find = |email: &str| {
        users
            .iter()
            .find(|u| u["primaryEmail"] == email)
            .unwrap()
            .clone()
    };
    assert_eq!(find("suspended@globex.example")["suspended"], true);
    assert_eq!(find("unlicensed@globex.example")["isMailboxSetup"], false);
    assert_eq!(find("admin@globex.example")["isAdmin"], true);
    let active = env
        .get(&format!("{url}&query=isSuspended%3Dfalse"), &admin)
        .await;
    assert!(
        active.body["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["suspended"] == false)
    );
    // §8 "`sub` is not an admin"
    let member = env.google_access(SA_FAULTS, "quirky@globex.example").await;
    let got = env.get(&url, &member).await;
    assert_eq!(got.status, 403);
    assert_eq!(
        got.body,
        json!({"error": {"code": 403, "message": "Not Authorized to access this resource/api", "errors": [{"message": "Not Authorized to access this resource/api", "domain": "global", "reason": "forbidden"}]}})
    );
    env.sim.shutdown().await;
}

/// Paging quirks on Gmail: empty pages with a next link, and duplicates across pages.
#[tokio::test]
async fn gmail_paging_with_empty_pages_and_duplicates() {
    let env = start("faults.toml").await;
    let token = env.google_access(SA_FAULTS, "quirky@globex.example").await;
    let mut ids = Vec::new();
    let mut empty_pages_with_next = 0;
    let mut page_token: Option<String> = None;
    for _ in 0..100 {
        let mut url = format!("{}/users/me/messages?maxResults=10", env.e.gmail_base);
        if let Some(t) = &page_token {
            url.push_str(&format!("&pageToken={t}"));
        }
        let list: google_gmail1::api::ListMessagesResponse =
            conforms(&env.get(&url, &token).await.body);
        let page: Vec<String> = list
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.id.unwrap())
            .collect();
        if page.is_empty() && list.next_page_token.is_some() {
            empty_pages_with_next += 1;
        }
        ids.extend(page);
        page_token = list.next_page_token;
        if page_token.is_none() {
            break;
        }
    }
    assert!(empty_pages_with_next >= 2);
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 25, "every message is seen");
    assert!(ids.len() > 25, "some appear twice across pages");
    env.sim.shutdown().await;
}

/// Natural member states of faults.toml (providers/google.md §4, §6, §2 notes).
#[tokio::test]
async fn google_member_states() {
    let env = start("faults.toml").await;
    let profile = |token: String| {
        let env = &env;
        async move {
            env.get(&format!("{}/users/me/profile", env.e.gmail_base), &token)
                .await
        }
    };
    let unlicensed = env
        .google_access(SA_FAULTS, "unlicensed@globex.example")
        .await;
    let got = profile(unlicensed.clone()).await;
    assert_eq!(
        (got.status.as_u16(), got.body["error"]["message"].as_str()),
        (400, Some("Mail service not enabled"))
    );
    let got = env
        .get(
            &format!("{}/calendars/primary/events", env.e.calendar_base),
            &unlicensed,
        )
        .await;
    assert_eq!(
        (
            got.status.as_u16(),
            got.body["error"]["errors"][0]["reason"].as_str()
        ),
        (403, Some("notACalendarUser"))
    );
    let got = env
        .google_token(SA_FAULTS, Some("gone@globex.example"), &[GMAIL])
        .await;
    assert_eq!(
        got.body,
        json!({"error": "invalid_grant", "error_description": "The account has been deleted"})
    );
    let got = env
        .google_token(SA_FAULTS, Some("nodwd@globex.example"), &[GMAIL])
        .await;
    assert_eq!(got.status, 401);
    let got = env
        .google_token(SA_FAULTS, Some("badsig@globex.example"), &[GMAIL])
        .await;
    assert_eq!(got.body["error_description"], "Invalid JWT Signature.");
    env.sim.shutdown().await;
}

// ---- transport faults, fail-N-times, Retry-After -----------------------------------------

#[tokio::test]
async fn transport_faults_and_recovery() {
    let env = start("faults.toml").await;
    let url = format!("{}/users/me/profile", env.e.gmail_base);
    // Fail N times then recover: 3 × 429 with an HTTP-date Retry-After, then 200.
    let busy = env.google_access(SA_FAULTS, "busy@globex.example").await;
    for _ in 0..3 {
        let got = env.get(&url, &busy).await;
        assert_eq!(got.status, 429);
        let retry_after = got.header("retry-after");
        assert!(
            retry_after.ends_with(" GMT") && retry_after.len() == 29,
            "HTTP date: {retry_after}"
        );
    }
    assert_eq!(env.get(&url, &busy).await.status, 200);
    // Fractional Retry-After on 403 userRateLimitExceeded.
    let quota = env.google_access(SA_FAULTS, "quota@globex.example").await;
    let got = env.get(&url, &quota).await;
    assert_eq!(
        (got.status.as_u16(), got.header("retry-after")),
        (403, "2.128")
    );
    // 500 twice, then fine.
    let flaky = env.google_access(SA_FAULTS, "flaky@globex.example").await;
    assert_eq!(env.get(&url, &flaky).await.status, 500);
    assert_eq!(env.get(&url, &flaky).await.status, 500);
    assert_eq!(env.get(&url, &flaky).await.status, 200);
    // Truncated JSON: a 2xx whose body does not parse.
    let truncated = env
        .google_access(SA_FAULTS, "truncated@globex.example")
        .await;
    let got = env.get(&url, &truncated).await;
    assert_eq!(got.status, 200);
    assert!(serde_json::from_str::<Value>(&got.text).is_err());
    assert!(got.text.starts_with("{\"emailAddress\""));
    // Oversized body: valid JSON, 20 MB, announced in Content-Length.
    let huge = env.google_access(SA_FAULTS, "huge@globex.example").await;
    let response = env.http.get(&url).bearer_auth(&huge).send().await.unwrap();
    assert_eq!(response.content_length(), Some(20_000_000));
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len(), 20_000_000);
    // Connection reset mid-body: headers arrive, the body fails.
    let reset = env.google_access(SA_FAULTS, "reset@globex.example").await;
    let response = env.http.get(&url).bearer_auth(&reset).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.is_err(),
        "the body must not complete"
    );
    // Latency: the answer takes at least latency_ms.
    let slow = env.google_access(SA_FAULTS, "slow@globex.example").await;
    let started = Instant::now();
    assert_eq!(env.get(&url, &slow).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // The sim is still healthy after a reset, and counts what happened.
    let stats = wait_until(&env, |s| s["faults_fired"]["ConnectionReset"] == 1).await;
    assert_eq!(stats["faults_fired"]["RateLimited"], 3);
    assert_eq!(stats["faults_fired"]["ServerError"], 2);
    assert!(stats["by_endpoint"]["gmail.profile"].as_u64().unwrap() >= 12);
    env.sim.shutdown().await;
}

// ---- Microsoft: tokens -----------------------------------------------------------------

#[tokio::test]
async fn microsoft_client_credentials_issue_a_jwt_with_roles() {
    let env = start("small.toml").await;
    let got = env
        .ms_app_token(MS_TENANT, MS_CLIENT, "sim-microsoft-secret")
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["token_type"], "Bearer");
    assert_eq!(got.body["expires_in"], 3599);
    assert!(got.body.get("refresh_token").is_none());
    let claims = jwt_claims(got.body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["roles"],
        json!(["User.Read.All", "Mail.Read", "Calendars.Read"])
    );
    assert_eq!(claims["tid"], MS_TENANT);
    assert_eq!(claims["appid"], MS_CLIENT);
    // The tenant can also be named by its domain.
    assert_eq!(
        env.ms_app_token("contoso.example", MS_CLIENT, "sim-microsoft-secret")
            .await
            .status,
        200
    );
    env.sim.shutdown().await;
}

fn assert_entra(got: &Got, status: u16, error: &str, code: u64, suberror: Option<&str>) {
    assert_eq!(got.status.as_u16(), status, "AADSTS{code}: {}", got.text);
    assert_eq!(got.body["error"], error, "AADSTS{code}");
    assert_eq!(got.body["error_codes"], json!([code]));
    let description = got.body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert!(
        description.contains("\r\nTrace ID: ")
            && description.contains("\r\nCorrelation ID: ")
            && description.contains("\r\nTimestamp: ")
    );
    assert_eq!(
        got.body["error_uri"],
        format!("https://login.microsoftonline.com/error?code={code}")
    );
    assert_eq!(got.body["suberror"].as_str(), suberror, "AADSTS{code}");
    for key in ["timestamp", "trace_id", "correlation_id"] {
        assert!(got.body[key].is_string(), "{key}");
    }
    assert_eq!(got.header("cache-control"), "no-store, no-cache");
    assert_eq!(got.header("pragma"), "no-cache");
}

/// Entra token errors (providers/microsoft.md §1.1 envelope, §1.2 table), by fault name and
/// by natural cause.
#[tokio::test]
async fn microsoft_token_errors() {
    let env = start("small.toml").await;
    // Natural causes.
    assert_entra(
        &env.ms_app_token(MS_TENANT, MS_CLIENT, "wrong").await,
        401,
        "invalid_client",
        7000215,
        None,
    );
    assert_entra(
        &env.ms_app_token("no-such-tenant.example", MS_CLIENT, "x")
            .await,
        400,
        "invalid_request",
        90002,
        None,
    );
    assert_entra(
        &env.ms_app_token(MS_TENANT, "00000000-0000-0000-0000-000000000000", "x")
            .await,
        400,
        "unauthorized_client",
        700016,
        None,
    );
    let rows: Vec<(&str, u16, &str, u64, Option<&str>)> = vec![
        (
            "consent_required",
            400,
            "invalid_grant",
            65001,
            Some("consent_required"),
        ),
        ("admin_consent_required", 400, "invalid_grant", 90094, None),
        (
            "app_not_in_tenant",
            400,
            "unauthorized_client",
            700016,
            None,
        ),
        (
            "conditional_access",
            400,
            "invalid_grant",
            53003,
            Some("message_only"),
        ),
        ("security_policy", 400, "invalid_grant", 530032, None),
        ("assignment_required", 400, "invalid_grant", 50105, None),
        ("app_disabled", 400, "unauthorized_client", 7000112, None),
        (
            "refresh_token_expired",
            400,
            "invalid_grant",
            700082,
            Some("bad_token"),
        ),
        (
            "grant_expired_or_revoked",
            400,
            "invalid_grant",
            70008,
            Some("bad_token"),
        ),
        (
            "fresh_token_needed",
            400,
            "invalid_grant",
            50173,
            Some("bad_token"),
        ),
        ("invalid_refresh_token", 400, "invalid_grant", 70000, None),
        (
            "mfa_required",
            400,
            "invalid_grant",
            50076,
            Some("basic_action"),
        ),
        (
            "mfa_registration_required",
            400,
            "invalid_grant",
            50079,
            Some("basic_action"),
        ),
        ("user_disabled", 400, "invalid_grant", 50057, None),
        ("user_locked", 400, "invalid_grant", 50053, None),
        ("user_not_found", 400, "invalid_grant", 50034, None),
        (
            "invalid_client_secret",
            401,
            "invalid_client",
            7000215,
            None,
        ),
        (
            "client_secret_expired",
            401,
            "invalid_client",
            7000222,
            None,
        ),
        ("invalid_client", 401, "invalid_client", 70002, None),
        ("invalid_tenant", 400, "invalid_request", 90002, None),
        (
            "tenant_throttled",
            429,
            "temporarily_unavailable",
            90055,
            None,
        ),
        ("loop_detected", 400, "temporarily_unavailable", 50196, None),
        (
            "temporarily_unavailable",
            503,
            "temporarily_unavailable",
            50033,
            None,
        ),
    ];
    for (fault, status, error, code, suberror) in rows {
        env.fault("contoso", None, json!({"fault": fault, "times": 1}))
            .await;
        let got = env
            .ms_app_token(MS_TENANT, MS_CLIENT, "sim-microsoft-secret")
            .await;
        assert_entra(&got, status, error, code, suberror);
        if fault == "conditional_access" {
            assert!(
                got.body["claims"].is_string(),
                "53003 carries a claims challenge"
            );
        }
    }
    // The correlation id is the caller's client-request-id.
    env.fault(
        "contoso",
        None,
        json!({"fault": "user_disabled", "times": 1}),
    )
    .await;
    let got = read(
        env.http
            .post(env.e.microsoft_token_url(MS_TENANT))
            .header("client-request-id", "3f0c4a57-0000-4000-8000-000000000001")
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", MS_CLIENT),
                ("client_secret", "sim-microsoft-secret"),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        got.body["correlation_id"],
        "3f0c4a57-0000-4000-8000-000000000001"
    );
    // Tenant that never consented (faults.toml): AADSTS700016.
    let faults = start("faults.toml").await;
    let got = faults
        .ms_app_token(
            "11111111-2222-4333-8444-555555555555",
            FAB_CLIENT,
            "fabrikam-secret",
        )
        .await;
    assert_entra(&got, 400, "unauthorized_client", 700016, None);
    faults.sim.shutdown().await;
    env.sim.shutdown().await;
}

/// Authorization code + PKCE, then refresh with rotation (microsoft.md §1.1 "Success
/// bodies", §1.2 notes).
#[tokio::test]
async fn microsoft_authorization_code_and_rotating_refresh() {
    let env = start("faults.toml").await;
    let redirect = "http://127.0.0.1:9/callback";
    let verifier = "a-verifier-that-is-long-enough-to-be-valid-0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(<Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
    let response = env
        .http
        .get(env.e.microsoft_authorize_url(FAB_TENANT))
        .query(&[
            ("client_id", FAB_CLIENT),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("scope", "offline_access Mail.Read Calendars.Read User.Read"),
            ("state", "s1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("login_hint", "megan@fabrikam.example"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = reqwest::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["state"], "s1");
    let code = &query["code"];
    let token_url = env.e.microsoft_token_url(FAB_TENANT);
    let redeem = |verifier: String| {
        let env = &env;
        let token_url = token_url.clone();
        let code = code.clone();
        async move {
            env.form(
                &token_url,
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", FAB_CLIENT),
                    ("client_secret", "fabrikam-secret"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("code_verifier", &verifier),
                ],
            )
            .await
        }
    };
    assert_entra(
        &redeem("wrong".into()).await,
        400,
        "invalid_grant",
        501481,
        None,
    );
    let got = redeem(verifier.into()).await;
    assert_eq!(got.status, 200, "{}", got.text);
    let claims = jwt_claims(got.body["access_token"].as_str().unwrap());
    assert_eq!(claims["scp"], "Mail.Read Calendars.Read User.Read");
    assert_eq!(claims["upn"], "megan@fabrikam.example");
    assert_entra(
        &redeem(verifier.into()).await,
        400,
        "invalid_grant",
        54005,
        None,
    );
    let first = got.body["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |token: String| {
        let env = &env;
        let token_url = token_url.clone();
        async move {
            env.form(
                &token_url,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", FAB_CLIENT),
                    ("client_secret", "fabrikam-secret"),
                    ("refresh_token", &token),
                ],
            )
            .await
        }
    };
    let got = refresh(first.clone()).await;
    assert_eq!(got.status, 200);
    let second = got.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second, "refresh tokens rotate");
    // This tenant rejects a rotated token (reject_reused_refresh_tokens = true).
    assert_entra(&refresh(first).await, 400, "invalid_grant", 70000, None);
    let got = refresh(second).await;
    assert_eq!(got.status, 200);
    // The delegated token reads its own mailbox, not someone else's.
    let token = got.body["access_token"].as_str().unwrap().to_owned();
    let megan = env.graph_user_id("megan@fabrikam.example").await;
    let own = env
        .get(
            &format!(
                "{}/users/{megan}/mailFolders/inbox/messages/delta",
                env.e.graph_base
            ),
            &token,
        )
        .await;
    assert_eq!(own.status, 200);
    let other = env
        .get(
            &format!(
                "{}/users/raop@fabrikam.example/mailFolders/inbox/messages/delta",
                env.e.graph_base
            ),
            &token,
        )
        .await;
    assert_eq!(
        (other.status.as_u16(), other.body["error"]["code"].as_str()),
        (403, Some("ErrorAccessDenied"))
    );
    env.sim.shutdown().await;
}

// ---- Microsoft: Graph ------------------------------------------------------------------

mod graph_models {
    //! Graph resources as Microsoft documents them (learn.microsoft.com/graph/api/resources/
    //! user, message, event; delta-query-overview), written independently of the sim.
    //! `deny_unknown_fields` everywhere: the sim may only send documented properties.
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Page<T> {
        #[serde(rename = "@odata.context")]
        pub context: String,
        #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
        pub next_link: Option<String>,
        #[serde(rename = "@odata.deltaLink", skip_serializing_if = "Option::is_none")]
        pub delta_link: Option<String>,
        pub value: Vec<T>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct User {
        pub id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub business_phones: Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub display_name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub given_name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub surname: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub job_title: Option<Option<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub mail: Option<Option<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub mobile_phone: Option<Option<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub office_location: Option<Option<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub preferred_language: Option<Option<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub user_principal_name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub account_enabled: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub user_type: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub created_date_time: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub assigned_licenses: Option<Vec<AssignedLicense>>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct AssignedLicense {
        pub disabled_plans: Vec<String>,
        pub sku_id: String,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct EmailAddress {
        pub name: String,
        pub address: String,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Recipient {
        pub email_address: EmailAddress,
    }

    #[derive(Deserialize, Serialize)]
    pub struct Removed {
        pub reason: String,
    }

    /// A delta item: a full message or a removal.
    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Message {
        #[serde(rename = "@odata.type", skip_serializing_if = "Option::is_none")]
        pub odata_type: Option<String>,
        #[serde(rename = "@odata.etag", skip_serializing_if = "Option::is_none")]
        pub etag: Option<String>,
        #[serde(rename = "@removed", skip_serializing_if = "Option::is_none")]
        pub removed: Option<Removed>,
        pub id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub created_date_time: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub last_modified_date_time: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub change_key: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub categories: Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub received_date_time: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub sent_date_time: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub has_attachments: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub internet_message_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub subject: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub body_preview: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub importance: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub parent_folder_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub conversation_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub is_read_receipt_requested: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub is_read: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub is_draft: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub web_link: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub inference_classification: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub sender: Option<Recipient>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub from: Option<Recipient>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub to_recipients: Option<Vec<Recipient>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub cc_recipients: Option<Vec<Recipient>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub bcc_recipients: Option<Vec<Recipient>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reply_to: Option<Vec<Recipient>>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct DateTimeTimeZone {
        pub date_time: String,
        pub time_zone: String,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Location {
        pub display_name: String,
        pub location_type: String,
        pub unique_id_type: String,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct ResponseStatus {
        pub response: String,
        pub time: String,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Event {
        #[serde(rename = "@odata.type", skip_serializing_if = "Option::is_none")]
        pub odata_type: Option<String>,
        #[serde(rename = "@odata.etag", skip_serializing_if = "Option::is_none")]
        pub etag: Option<String>,
        #[serde(rename = "@removed", skip_serializing_if = "Option::is_none")]
        pub removed: Option<Removed>,
        pub id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub created_date_time: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub last_modified_date_time: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub change_key: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub categories: Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub original_start_time_zone: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub original_end_time_zone: Option<String>,
        #[serde(rename = "iCalUId", skip_serializing_if = "Option::is_none")]
        pub ical_uid: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reminder_minutes_before_start: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub is_reminder_on: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub has_attachments: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub subject: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub body_preview: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub importance: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub sensitivity: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub is_all_day: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub is_cancelled: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub is_organizer: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub response_requested: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub series_master_id: Option<Option<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub show_as: Option<String>,
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        pub event_type: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub web_link: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub is_online_meeting: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub response_status: Option<ResponseStatus>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub start: Option<DateTimeTimeZone>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub end: Option<DateTimeTimeZone>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub location: Option<Location>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub locations: Option<Vec<Value>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub attendees: Option<Vec<Value>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub organizer: Option<Recipient>,
    }
}

#[tokio::test]
async fn graph_users_with_select_and_paging() {
    let env = start("faults.toml").await;
    let got = env
        .ms_app_token(FAB_TENANT, FAB_CLIENT, "fabrikam-secret")
        .await;
    let token = got.body["access_token"].as_str().unwrap().to_owned();
    let mut url = format!(
        "{}/users?$select=id,userPrincipalName,mail,accountEnabled,userType&$top=2",
        env.e.graph_base
    );
    let mut users = Vec::new();
    for _ in 0..10 {
        let got = env.get(&url, &token).await;
        assert_eq!(got.status, 200, "{}", got.text);
        let page: graph_models::Page<graph_models::User> = conforms(&got.body);
        assert_eq!(
            page.context,
            "https://graph.microsoft.com/v1.0/$metadata#users(id,userPrincipalName,mail,accountEnabled,userType)"
        );
        assert!(
            page.value.iter().all(|u| u.display_name.is_none()),
            "$select limits the fields"
        );
        users.extend(page.value);
        match page.next_link {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(users.len(), 6);
    let guest = users
        .iter()
        .find(|u| u.user_type.as_deref() == Some("Guest"))
        .unwrap();
    assert_eq!(
        guest.user_principal_name.as_deref(),
        Some("vendor_partner.example#EXT#@fabrikam.example")
    );
    // Default properties without $select.
    let got = env
        .get(&format!("{}/users", env.e.graph_base), &token)
        .await;
    let page: graph_models::Page<graph_models::User> = conforms(&got.body);
    assert!(
        page.value
            .iter()
            .all(|u| u.display_name.is_some() && u.account_enabled.is_none())
    );
    env.sim.shutdown().await;
}

/// Graph error envelopes (providers/microsoft.md §2.1, §2.2, §6), by fault name.
#[tokio::test]
async fn graph_quoted_bodies() {
    let env = start("small.toml").await;
    let token = env.ms_access().await;
    let alan = env.graph_user_id("alan@contoso.example").await;
    let mail = format!(
        "{}/users/{alan}/mailFolders/inbox/messages/delta",
        env.e.graph_base
    );
    let users = format!("{}/users", env.e.graph_base);
    let rows: Vec<(&str, &str, u16, &str, &str, bool)> = vec![
        // §2.2 "Scope/app-role for mail or calendar missing"
        (
            "access_denied",
            &mail,
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
            true,
        ),
        // §2.2 / §6 Exchange Application Access Policy (live text, no innerError)
        (
            "application_access_policy",
            &mail,
            403,
            "ErrorAccessDenied",
            "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.",
            false,
        ),
        (
            "application_access_policy_documented",
            &mail,
            403,
            "ErrorAccessDenied",
            "Access to OData is disabled.",
            true,
        ),
        // §2.2 "Directory read permission missing"
        (
            "authorization_request_denied",
            &users,
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
            true,
        ),
        // §2.2 no Exchange Online mailbox (new and old text), personal account, user
        (
            "mailbox_not_enabled",
            &mail,
            404,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            true,
        ),
        (
            "mailbox_not_enabled_legacy",
            &mail,
            404,
            "MailboxNotEnabledForRESTAPI",
            "REST API is not yet supported for this mailbox.",
            true,
        ),
        (
            "mailbox_not_supported",
            &mail,
            404,
            "MailboxNotSupportedForRESTAPI",
            "The mailbox is not supported for REST API.",
            true,
        ),
        (
            "non_existent_mailbox",
            &mail,
            404,
            "ErrorNonExistentMailbox",
            "The SMTP address has no mailbox associated with it.",
            true,
        ),
        // §2.2 throttling and service errors
        (
            "application_throttled",
            &mail,
            429,
            "ApplicationThrottled",
            "Application is over its MailboxConcurrency limit.",
            false,
        ),
        (
            "service_unavailable",
            &mail,
            503,
            "ServiceUnavailable",
            "Service Unavailable",
            true,
        ),
        (
            "server_error",
            &mail,
            500,
            "generalException",
            "An unspecified error has occurred.",
            true,
        ),
        (
            "token_expired",
            &mail,
            401,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
            true,
        ),
    ];
    for (fault, url, status, code, message, inner) in rows {
        // `/users` is not about one member, so its faults are set on the tenant.
        let member = (url != users).then_some("alan@contoso.example");
        env.fault(
            "contoso",
            member,
            json!({"fault": fault, "endpoint": "any", "times": 1}),
        )
        .await;
        let got = env
            .get_with(
                url,
                &token,
                &[("client-request-id", "c0ffee00-0000-4000-8000-000000000001")],
            )
            .await;
        assert_eq!(got.status.as_u16(), status, "{fault}: {}", got.text);
        assert_eq!(got.body["error"]["code"], code, "{fault}");
        assert_eq!(got.body["error"]["message"], message, "{fault}");
        assert_eq!(
            got.header("client-request-id"),
            "c0ffee00-0000-4000-8000-000000000001",
            "{fault}"
        );
        let request_id = got.header("request-id").to_owned();
        assert_eq!(request_id.len(), 36, "{fault}");
        let keys: Vec<&String> = got.body["error"].as_object().unwrap().keys().collect();
        if inner {
            let inner = &got.body["error"]["innerError"];
            assert_eq!(inner["request-id"], request_id, "{fault}");
            assert_eq!(
                inner["client-request-id"], "c0ffee00-0000-4000-8000-000000000001",
                "{fault}"
            );
            assert_eq!(
                inner["date"].as_str().unwrap().len(),
                19,
                "no timezone suffix: {fault}"
            );
        } else {
            assert_eq!(keys.len(), 2, "{fault} has no innerError");
        }
        if status == 401 {
            assert_eq!(
                got.header("www-authenticate"),
                "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\""
            );
        }
    }
    // The RAOP denial is byte for byte the quoted body.
    env.fault(
        "contoso",
        Some("alan@contoso.example"),
        json!({"fault": "application_access_policy", "times": 1}),
    )
    .await;
    let got = env.get(&mail, &token).await;
    assert_eq!(
        got.text,
        r#"{"error":{"code":"ErrorAccessDenied","message":"Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings."}}"#
    );
    // §2.2 ErrorInvalidUser for an unknown user; Request_ResourceNotFound by name.
    let got = env
        .get(
            &format!(
                "{}/users/nobody@contoso.example/mailFolders/inbox/messages/delta",
                env.e.graph_base
            ),
            &token,
        )
        .await;
    assert_eq!(
        (got.status.as_u16(), got.body["error"]["message"].as_str()),
        (
            404,
            Some("The requested user 'nobody@contoso.example' is invalid.")
        )
    );
    env.fault(
        "contoso",
        None,
        json!({"fault": "resource_not_found", "times": 1}),
    )
    .await;
    let got = env.get(&users, &token).await;
    assert_eq!(
        (got.status.as_u16(), got.body["error"]["code"].as_str()),
        (404, Some("Request_ResourceNotFound"))
    );
    // §4 Retry-After: integer, fraction, HTTP date; throttling body from throttling.md.
    for (retry_after, expect) in [
        (json!(10), "10"),
        (json!(2.128), "2.128"),
        (
            json!("Wed, 21 Oct 2026 07:28:00 GMT"),
            "Wed, 21 Oct 2026 07:28:00 GMT",
        ),
    ] {
        env.fault(
            "contoso",
            Some("alan@contoso.example"),
            json!({"fault": "rate_limited", "times": 1, "retry_after": retry_after}),
        )
        .await;
        let got = env.get(&mail, &token).await;
        assert_eq!(
            (got.status.as_u16(), got.header("retry-after")),
            (429, expect)
        );
        assert_eq!(got.body["error"]["code"], "TooManyRequests");
        assert_eq!(got.body["error"]["message"], "Please retry again later.");
        assert_eq!(got.body["error"]["innerError"]["code"], "429");
        assert_eq!(got.body["error"]["innerError"]["status"], "429");
        assert_eq!(
            got.body["error"]["innerError"]["message"],
            "Please retry after"
        );
    }
    // Wrong and missing tokens, and a token without mail roles.
    let got = env.get(&mail, "eyJ.not.a-token").await;
    assert_eq!(
        (got.status.as_u16(), got.body["error"]["message"].as_str()),
        (401, Some("Access token validation failure."))
    );
    let got = read(env.http.get(&mail).send().await.unwrap()).await;
    assert_eq!(
        (got.status.as_u16(), got.body["error"]["message"].as_str()),
        (401, Some("Access token is empty."))
    );
    env.control("expire", json!({"tenant": "contoso", "what": "tokens"}))
        .await;
    let got = env.get(&mail, &token).await;
    assert_eq!(
        (got.status.as_u16(), got.body["error"]["message"].as_str()),
        (401, Some("Access token has expired or is not yet valid."))
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn graph_member_states() {
    let env = start("faults.toml").await;
    let token = env
        .ms_app_token(FAB_TENANT, FAB_CLIENT, "fabrikam-secret")
        .await
        .body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let delta = |user: &str| {
        format!(
            "{}/users/{user}/mailFolders/inbox/messages/delta",
            env.e.graph_base
        )
    };
    for user in ["nolicence@fabrikam.example", "vendor@partner.example"] {
        let got = env.get(&delta(user), &token).await;
        assert_eq!(
            (got.status.as_u16(), got.body["error"]["code"].as_str()),
            (404, Some("MailboxNotEnabledForRESTAPI")),
            "{user}"
        );
    }
    let got = env.get(&delta("raop@fabrikam.example"), &token).await;
    assert!(
        got.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[RAOP]")
    );
    // ApplicationThrottled twice with Retry-After: 1, then fine.
    for _ in 0..2 {
        let got = env.get(&delta("throttled@fabrikam.example"), &token).await;
        assert_eq!((got.status.as_u16(), got.header("retry-after")), (429, "1"));
    }
    assert_eq!(
        env.get(&delta("throttled@fabrikam.example"), &token)
            .await
            .status,
        200
    );
    env.sim.shutdown().await;
}

/// Follows a delta round to its deltaLink; returns (items, deltaLink, empty pages seen).
async fn delta_round<T: serde::de::DeserializeOwned + serde::Serialize>(
    env: &Env,
    first: &str,
    token: &str,
    page_size: usize,
) -> (Vec<T>, String, usize) {
    let prefer = format!("odata.maxpagesize={page_size}");
    let mut url = first.to_owned();
    let mut items = Vec::new();
    let mut empty = 0;
    for _ in 0..200 {
        let got = env.get_with(&url, token, &[("Prefer", &prefer)]).await;
        assert_eq!(got.status, 200, "{}", got.text);
        assert_eq!(got.header("preference-applied"), prefer);
        let page: graph_models::Page<T> = conforms(&got.body);
        assert!(page.value.len() <= page_size);
        if page.value.is_empty() && page.next_link.is_some() {
            empty += 1;
        }
        items.extend(page.value);
        match (page.next_link, page.delta_link) {
            (Some(next), None) => url = next,
            (None, Some(delta)) => return (items, delta, empty),
            other => panic!("a page has exactly one of nextLink / deltaLink: {other:?}"),
        }
    }
    panic!("delta round did not end");
}

#[tokio::test]
async fn graph_mail_delta_full_incremental_expiry_and_quirks() {
    let env = start("small.toml").await;
    let token = env.ms_access().await;
    let alan = env.graph_user_id("alan@contoso.example").await;
    let first = format!(
        "{}/users/{alan}/mailFolders/inbox/messages/delta",
        env.e.graph_base
    );
    // Full round in pages of 5.
    let (items, delta, _) = delta_round::<graph_models::Message>(&env, &first, &token, 5).await;
    assert_eq!(items.len(), 12);
    assert!(
        items
            .iter()
            .all(|m| m.removed.is_none() && m.subject.is_some() && m.received_date_time.is_some())
    );
    // No changes: an empty page that carries a deltaLink.
    let (none, delta, _) = delta_round::<graph_models::Message>(&env, &delta, &token, 5).await;
    assert!(none.is_empty());
    // New mail and a deletion: items plus an @removed entry.
    let removed_id = items[3].id.clone();
    env.control("mail", json!({"tenant": "contoso", "user": "alan@contoso.example", "add": 2, "remove": [removed_id]})).await;
    let (changes, delta, _) = delta_round::<graph_models::Message>(&env, &delta, &token, 5).await;
    assert_eq!(changes.len(), 3);
    let removed: Vec<_> = changes.iter().filter(|m| m.removed.is_some()).collect();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].id, removed_id);
    assert_eq!(removed[0].removed.as_ref().unwrap().reason, "deleted");
    // $select keeps id and the selected fields.
    let got = env
        .get(&format!("{first}?$select=subject,receivedDateTime"), &token)
        .await;
    let page: graph_models::Page<graph_models::Message> = conforms(&got.body);
    assert!(
        page.value
            .iter()
            .all(|m| m.subject.is_some() && m.is_read.is_none())
    );
    // ... and stays in the round's links: the next page is selected too.
    let next = page.next_link.expect("12 messages in pages of 10");
    let page: graph_models::Page<graph_models::Message> =
        conforms(&env.get(&next, &token).await.body);
    assert!(
        !page.value.is_empty()
            && page
                .value
                .iter()
                .all(|m| m.subject.is_some() && m.is_read.is_none())
    );
    // Expiry: 410 SyncStateNotFound (microsoft.md §2.2, §3), then a full resync works.
    env.control(
        "expire",
        json!({"tenant": "contoso", "user": "alan@contoso.example", "what": "cursors"}),
    )
    .await;
    let got = env.get(&delta, &token).await;
    assert_eq!(got.status, 410);
    assert_eq!(got.body["error"]["code"], "SyncStateNotFound");
    assert_eq!(
        got.body["error"]["message"],
        "The sync state generation is not found; generation=149;[highest=157][157][155][156]."
    );
    let (resync, _, _) = delta_round::<graph_models::Message>(&env, &first, &token, 50).await;
    assert_eq!(resync.len(), 13);
    // Quirks: empty pages that still carry a nextLink, and duplicates across pages.
    env.fault(
        "contoso",
        Some("alan@contoso.example"),
        json!({"fault": "empty_pages"}),
    )
    .await;
    env.fault(
        "contoso",
        Some("alan@contoso.example"),
        json!({"fault": "duplicate_items"}),
    )
    .await;
    let (quirky, _, empty) = delta_round::<graph_models::Message>(&env, &first, &token, 4).await;
    assert!(empty >= 3, "empty pages with a nextLink: {empty}");
    let unique: BTreeSet<_> = quirky.iter().map(|m| m.id.clone()).collect();
    assert_eq!(unique.len(), 13);
    assert!(quirky.len() > 13, "duplicates across pages");
    env.clear().await;
    // Variant: SyncStateNotFound as a 400 (microsoft.md §3 "any 4xx").
    env.fault(
        "contoso",
        Some("alan@contoso.example"),
        json!({"fault": "sync_state_not_found_400", "times": 1}),
    )
    .await;
    let (_, delta, _) = delta_round::<graph_models::Message>(&env, &first, &token, 50).await;
    let got = env.get(&delta, &token).await;
    assert_eq!(
        (got.status.as_u16(), got.body["error"]["code"].as_str()),
        (400, Some("SyncStateNotFound"))
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn graph_calendar_view_delta() {
    let env = start("small.toml").await;
    let token = env.ms_access().await;
    let alan = env.graph_user_id("alan@contoso.example").await;
    let base = format!("{}/users/{alan}/calendarView/delta", env.e.graph_base);
    // A window is required on the first call.
    let got = env.get(&base, &token).await;
    assert_eq!(
        (got.status.as_u16(), got.body["error"]["code"].as_str()),
        (400, Some("ErrorInvalidParameter"))
    );
    let first =
        format!("{base}?startDateTime=2000-01-01T00:00:00Z&endDateTime=2100-01-01T00:00:00Z");
    let (events, delta, _) = delta_round::<graph_models::Event>(&env, &first, &token, 4).await;
    assert_eq!(events.len(), 6);
    assert!(
        events
            .iter()
            .all(|e| e.start.as_ref().unwrap().time_zone == "UTC")
    );
    let added = env.control("events", json!({"tenant": "contoso", "user": "alan@contoso.example", "add": 1, "remove": [events[0].id]})).await;
    let (changes, delta, _) = delta_round::<graph_models::Event>(&env, &delta, &token, 4).await;
    assert_eq!(changes.len(), 2);
    assert!(
        changes
            .iter()
            .any(|e| e.removed.is_some() && e.id == events[0].id)
    );
    assert!(
        changes
            .iter()
            .any(|e| e.id == added["added"][0]["graph_id"])
    );
    // Fault: 410 on the next incremental call only.
    env.fault(
        "contoso",
        Some("alan@contoso.example"),
        json!({"fault": "sync_state_not_found", "times": 1}),
    )
    .await;
    assert_eq!(
        env.get(&first, &token).await.status,
        200,
        "a full round is not incremental"
    );
    let got = env.get(&delta, &token).await;
    assert_eq!(got.status, 410);
    assert_eq!(env.get(&delta, &token).await.status, 200);
    env.sim.shutdown().await;
}

// ---- scenario files and control ----------------------------------------------------------

#[test]
fn shipped_scenarios_load() {
    for entry in std::fs::read_dir(config_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Scenario::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

#[tokio::test]
async fn control_rejects_bad_requests_and_counts() {
    let env = start("small.toml").await;
    let post = |path: &str, body: Value| {
        let env = &env;
        let url = format!("{}/{path}", env.e.control_url);
        async move {
            env.http
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        post("faults", json!({"tenant": "acme", "fault": "no_such"})).await,
        400
    );
    assert_eq!(
        post(
            "faults",
            json!({"tenant": "acme", "fault": "application_access_policy"})
        )
        .await,
        400
    );
    assert_eq!(
        post("faults", json!({"tenant": "nope", "fault": "rate_limited"})).await,
        404
    );
    assert_eq!(
        post(
            "mail",
            json!({"tenant": "acme", "user": "nobody@acme.example", "add": 1})
        )
        .await,
        404
    );
    assert_eq!(
        post("expire", json!({"tenant": "acme", "what": "everything"})).await,
        400
    );
    let token = env.google_access(SA_SMALL, "ada@acme.example").await;
    env.get(&format!("{}/users/me/profile", env.e.gmail_base), &token)
        .await;
    let stats = wait_until(&env, |s| s["by_endpoint"]["gmail.profile"] == 1).await;
    assert_eq!(stats["by_endpoint"]["token"], 1);
    assert_eq!(stats["requests_total"], 2);
    // Unknown paths and garbage never crash the sim.
    let got = read(
        env.http
            .get(format!("{}/nothing/here", env.e.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 404);
    let got = env
        .get(
            &format!("{}/users/me/messages?pageToken=%%%", env.e.gmail_base),
            &token,
        )
        .await;
    assert_eq!(got.status, 400);
    let got = env
        .form(
            &env.e.google_token_url,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", "x.y.z"),
            ],
        )
        .await;
    assert_eq!(got.status, 400);
    env.sim.shutdown().await;
}

/// Consent refused on the authorize endpoints, and the other Graph resync codes
/// (google.md §3 consent-screen errors; microsoft.md §1.2 65004, §2.2 delta rows).
#[tokio::test]
async fn consent_denied_and_other_resync_codes() {
    let env = start("small.toml").await;
    env.fault("acme", None, json!({"fault": "consent_denied", "times": 1}))
        .await;
    let response = env
        .http
        .get(&env.e.google_authorize_url)
        .query(&[
            ("client_id", "sim-google-client.apps.googleusercontent.com"),
            (
                "redirect_uri",
                "http://127.0.0.1:8080/oauth/google/callback",
            ),
            ("response_type", "code"),
            ("scope", GMAIL),
            ("state", "st"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap();
    assert_eq!(
        location,
        "http://127.0.0.1:8080/oauth/google/callback?error=access_denied&state=st"
    );
    env.fault(
        "contoso",
        None,
        json!({"fault": "consent_denied", "times": 1}),
    )
    .await;
    let response = env
        .http
        .get(env.e.microsoft_authorize_url(MS_TENANT))
        .query(&[
            ("client_id", MS_CLIENT),
            (
                "redirect_uri",
                "http://127.0.0.1:8080/oauth/microsoft/callback",
            ),
            ("response_type", "code"),
            ("scope", "offline_access Mail.Read"),
            ("state", "st"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = reqwest::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["error"], "access_denied");
    assert!(query["error_description"].starts_with("AADSTS65004: "));
    assert_eq!(query["state"], "st");
    let token = env.ms_access().await;
    let alan = env.graph_user_id("alan@contoso.example").await;
    let first = format!(
        "{}/users/{alan}/mailFolders/inbox/messages/delta",
        env.e.graph_base
    );
    let (_, delta, _) = delta_round::<graph_models::Message>(&env, &first, &token, 50).await;
    for (fault, status, code) in [
        ("resync_required", 410, "resyncRequired"),
        ("sync_state_invalid", 400, "SyncStateInvalid"),
    ] {
        env.fault(
            "contoso",
            Some("alan@contoso.example"),
            json!({"fault": fault, "times": 1}),
        )
        .await;
        let got = env.get(&delta, &token).await;
        assert_eq!(
            (got.status.as_u16(), got.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{fault}"
        );
        assert_eq!(
            got.body["error"]["innerError"]["request-id"],
            got.header("request-id"),
            "{fault}"
        );
    }
    assert_eq!(env.get(&delta, &token).await.status, 200);
    env.sim.shutdown().await;
}

/// Hostile input never takes the sim down: every answer is an HTTP answer, and the sim
/// still serves afterwards.
#[tokio::test]
async fn garbage_in_answers_out() {
    let env = start("small.toml").await;
    let google = env.google_access(SA_SMALL, "ada@acme.example").await;
    let graph = env.ms_access().await;
    let alan = env.graph_user_id("alan@contoso.example").await;
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let g = &env.e.gmail_base;
    let c = &env.e.calendar_base;
    let m = format!(
        "{}/users/{alan}/mailFolders/inbox/messages/delta",
        env.e.graph_base
    );
    let v = format!("{}/users/{alan}/calendarView/delta", env.e.graph_base);
    let google_urls = vec![
        format!("{g}/users/me/history?startHistoryId=-1"),
        format!("{g}/users/me/history?startHistoryId=99999999999999999999999"),
        format!(
            "{g}/users/me/history?startHistoryId=1&maxResults=0&pageToken={}",
            b64("h|1|18446744073709551615|1")
        ),
        format!(
            "{g}/users/me/history?startHistoryId=1&pageToken={}",
            b64("h|1|x|y")
        ),
        format!(
            "{g}/users/me/messages?maxResults=-5&pageToken={}",
            b64("l|99999999999|0")
        ),
        format!("{g}/users/me/messages/%00%FF?format=raw"),
        format!("{g}/users/%E2%98%83/profile"),
        format!("{c}/calendars/primary/events?syncToken={}", b64("s|0|-1")),
        format!(
            "{c}/calendars/primary/events?pageToken={}",
            b64("e|0|5|1|99999999999999999999|0")
        ),
        format!("{c}/calendars/primary/events?timeMin=yesterday&maxResults=abc"),
        format!("{}/users?customer=%%", env.e.directory_base),
    ];
    for url in &google_urls {
        let got = env.get(url, &google).await;
        assert!(got.status.as_u16() < 500, "{url}: {}", got.status);
    }
    let graph_urls = vec![
        format!("{m}?$skiptoken=%%%"),
        format!(
            "{m}?$skiptoken={}",
            b64("m|0|0|0|5|1|18446744073709551615|0|0")
        ),
        format!(
            "{m}?$deltatoken={}",
            b64("m|-9223372036854775808|9223372036854775807|-1|x")
        ),
        format!("{m}?$select=,,,"),
        format!("{v}?startDateTime=2030-01-01T00:00:00Z&endDateTime=2020-01-01T00:00:00Z"),
        format!("{v}?startDateTime=not-a-date&endDateTime=2020-01-01"),
        format!(
            "{}/users?$top=-1&$skiptoken={}",
            env.e.graph_base,
            b64("u|x|1")
        ),
    ];
    for url in &graph_urls {
        for prefer in [
            "odata.maxpagesize=0",
            "odata.maxpagesize=99999999999999999999",
            "odata.maxpagesize=abc",
        ] {
            let got = env.get_with(url, &graph, &[("Prefer", prefer)]).await;
            assert!(got.status.as_u16() < 500, "{url}: {}", got.status);
        }
    }
    let claims = |iat: Value, exp: Value| {
        sign(
            &json!({"iss": SA_SMALL, "sub": "ada@acme.example", "scope": GMAIL, "aud": env.e.google_token_url, "iat": iat, "exp": exp}),
        )
    };
    let assertions = vec![
        claims(json!(i64::MAX), json!(i64::MIN)),
        claims(json!(i64::MIN), json!(i64::MAX)),
        claims(json!("soon"), json!(null)),
        "..".to_owned(),
        format!("{}.{}.", b64("{}"), b64("[1,2]")),
    ];
    for assertion in &assertions {
        let got = env
            .form(
                &env.e.google_token_url,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion),
                ],
            )
            .await;
        assert_eq!(got.status, 400, "{assertion}: {}", got.text);
    }
    for body in [
        &b""[..],
        &b"\xff\xfe\x00grant_type"[..],
        &b"grant_type=refresh_token&refresh_token="[..],
    ] {
        let got = read(
            env.http
                .post(&env.e.google_token_url)
                .body(body.to_vec())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(got.status.is_client_error(), "{:?}", got.text);
        let got = read(
            env.http
                .post(env.e.microsoft_token_url("common"))
                .body(body.to_vec())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(got.status.is_client_error(), "{:?}", got.text);
    }
    for url in [
        env.e.google_authorize_url.clone(),
        env.e.microsoft_authorize_url("%00"),
    ] {
        let got = read(env.http.get(&url).send().await.unwrap()).await;
        assert!(got.status.is_client_error(), "{url}");
    }
    for path in ["faults", "mail", "events", "expire", "faults/clear"] {
        let got = read(
            env.http
                .post(format!("{}/{path}", env.e.control_url))
                .body("{not json")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(got.status, 400, "{path}");
    }
    env.fault(
        "acme",
        Some("ada@acme.example"),
        json!({"fault": "rate_limited", "times": 1, "retry_after": "date+99999999999999"}),
    )
    .await;
    let got = env.get(&format!("{g}/users/me/profile"), &google).await;
    assert_eq!(got.status, 429);
    // Still alive and serving.
    assert_eq!(
        env.get(&format!("{g}/users/me/profile"), &google)
            .await
            .status,
        200
    );
    env.sim.shutdown().await;
}

/// A transport fault and an answer fault set together both apply: a slow 503.
#[tokio::test]
async fn latency_applies_to_error_answers_too() {
    let env = start("small.toml").await;
    let token = env.ms_access().await;
    let alan = env.graph_user_id("alan@contoso.example").await;
    let url = format!(
        "{}/users/{alan}/mailFolders/inbox/messages/delta",
        env.e.graph_base
    );
    env.fault(
        "contoso",
        Some("alan@contoso.example"),
        json!({"fault": "latency", "latency_ms": 300}),
    )
    .await;
    env.fault(
        "contoso",
        Some("alan@contoso.example"),
        json!({"fault": "service_unavailable", "times": 1, "retry_after": 2.128}),
    )
    .await;
    let started = Instant::now();
    let got = env.get(&url, &token).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        (got.status.as_u16(), got.header("retry-after")),
        (503, "2.128")
    );
    let started = Instant::now();
    assert_eq!(env.get(&url, &token).await.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "latency persists until cleared"
    );
    env.clear().await;
    env.sim.shutdown().await;
}

/// Outlook's 4 concurrent requests per app and mailbox (microsoft.md §4): the fifth
/// request in flight answers 429 `ApplicationThrottled` with `Retry-After: 1`.
#[tokio::test]
async fn graph_mailbox_concurrency_limit() {
    let env = start("small.toml").await;
    let token = env.ms_access().await;
    let alan = env.graph_user_id("alan@contoso.example").await;
    let url = format!(
        "{}/users/{alan}/mailFolders/inbox/messages/delta",
        env.e.graph_base
    );
    // Slow answers keep requests in flight long enough to overlap.
    env.fault(
        "contoso",
        Some("alan@contoso.example"),
        json!({"fault": "latency", "latency_ms": 1000}),
    )
    .await;
    let requests: Vec<_> = (0..6).map(|_| env.get(&url, &token)).collect();
    let answers = futures_util::future::join_all(requests).await;
    let throttled: Vec<_> = answers.iter().filter(|g| g.status == 429).collect();
    assert_eq!(answers.iter().filter(|g| g.status == 200).count(), 4);
    assert_eq!(throttled.len(), 2);
    assert_eq!(throttled[0].body["error"]["code"], "ApplicationThrottled");
    assert_eq!(throttled[0].header("retry-after"), "1");
    // Slots are released once the answers are written.
    env.clear().await;
    assert_eq!(env.get(&url, &token).await.status, 200);
    env.sim.shutdown().await;
}

// ---- strictness: what the providers filter and refuse (issue 16) -------------------------

/// Gmail `q` and `labelIds` filter `messages.list`; an unknown label is a 400.
#[tokio::test]
async fn gmail_filters_by_q_and_label_ids() {
    let env = start("small.toml").await;
    let token = env.google_access(SA_SMALL, "ada@acme.example").await;
    let base = format!("{}/users/me/messages", env.e.gmail_base);
    let ids = |got: &Got| -> Vec<String> {
        got.body["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["id"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let all = env.get(&base, &token).await;
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), 12);
    // The fourth newest message's internalDate (milliseconds) bounds `after:` (seconds).
    let fourth = env
        .get(&format!("{base}/{}?format=minimal", all_ids[3]), &token)
        .await;
    let at: i64 = fourth.body["internalDate"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let after = env
        .get(&format!("{base}?q=after:{}", at / 1000), &token)
        .await;
    assert_eq!(
        ids(&after),
        all_ids[..4].to_vec(),
        "after: is inclusive, newest first"
    );
    assert_eq!(after.body["resultSizeEstimate"], 4);
    let before = env
        .get(&format!("{base}?q=before:{}", at / 1000), &token)
        .await;
    assert_eq!(ids(&before).len(), 8);
    let check = async |query: &str, expected: usize| {
        let got = env.get(&format!("{base}?{query}"), &token).await;
        assert_eq!(got.status, 200, "{query}: {}", got.text);
        assert_eq!(ids(&got).len(), expected, "{query}");
    };
    check("q=in:inbox", 12).await;
    check("q=in:sent", 0).await;
    check("q=from:nobody@nowhere.example", 0).await;
    check("q=to:ada@acme.example%20is:unread", 12).await;
    check("labelIds=INBOX&labelIds=UNREAD", 12).await;
    check("labelIds=SENT", 0).await;
    // GAM-team/GAM#365: "Invalid label: …", invalidArgument.
    let got = env.get(&format!("{base}?labelIds=Label_42"), &token).await;
    assert_eq!(got.status, 400);
    assert_eq!(
        got.body,
        json!({"error": {"code": 400, "message": "Invalid label: Label_42", "errors": [{"message": "Invalid label: Label_42", "domain": "global", "reason": "invalidArgument"}], "status": "INVALID_ARGUMENT"}})
    );
    // history.list takes `labelId` the same way.
    let profile = env
        .get(&format!("{}/users/me/profile", env.e.gmail_base), &token)
        .await;
    let start = profile.body["historyId"].as_str().unwrap().to_owned();
    env.control(
        "mail",
        json!({"tenant": "acme", "user": "ada@acme.example", "add": 1}),
    )
    .await;
    let history = format!(
        "{}/users/me/history?startHistoryId={start}",
        env.e.gmail_base
    );
    let inbox = env.get(&format!("{history}&labelId=INBOX"), &token).await;
    assert_eq!(inbox.body["history"].as_array().unwrap().len(), 1);
    let sent = env.get(&format!("{history}&labelId=SENT"), &token).await;
    assert!(sent.body.get("history").is_none(), "{}", sent.text);
    let bad = env
        .get(&format!("{history}&labelId=Label_42"), &token)
        .await;
    assert_eq!(bad.status, 400);
    env.sim.shutdown().await;
}

/// Directory `query` filters `users.list`; a field the Directory does not search is a 400.
#[tokio::test]
async fn directory_filters_by_query() {
    let env = start("faults.toml").await;
    let admin = env.google_access(SA_FAULTS, "admin@globex.example").await;
    let url = format!("{}/users?customer=my_customer", env.e.directory_base);
    let emails = |got: &Got| -> Vec<String> {
        got.body["users"]
            .as_array()
            .map(|u| {
                u.iter()
                    .map(|u| u["primaryEmail"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let one = env
        .get(
            &format!("{url}&query=email:suspended@globex.example"),
            &admin,
        )
        .await;
    assert_eq!(emails(&one), vec!["suspended@globex.example"]);
    let admins = env
        .get(&format!("{url}&query=isAdmin%3Dtrue"), &admin)
        .await;
    assert_eq!(emails(&admins), vec!["admin@globex.example"]);
    let nobody = env
        .get(&format!("{url}&query=email:nobody@globex.example"), &admin)
        .await;
    assert_eq!(nobody.status, 200);
    assert!(nobody.body.get("users").is_none(), "{}", nobody.text);
    let all = emails(&env.get(&url, &admin).await);
    let suspended = emails(
        &env.get(&format!("{url}&query=isSuspended%3Dtrue"), &admin)
            .await,
    );
    let active = emails(
        &env.get(&format!("{url}&query=isSuspended%3Dfalse"), &admin)
            .await,
    );
    assert_eq!(suspended, vec!["suspended@globex.example"]);
    assert_eq!(active.len() + suspended.len(), all.len());
    // google-api-java-client#1020: "Invalid Input: query".
    let got = env.get(&format!("{url}&query=colour:blue"), &admin).await;
    assert_eq!(got.status, 400);
    assert_eq!(
        got.body,
        json!({"error": {"code": 400, "message": "Invalid Input: query", "errors": [{"message": "Invalid Input: query", "domain": "global", "reason": "invalid"}]}})
    );
    env.sim.shutdown().await;
}

/// `events.list` refuses the parameter combinations Google refuses, filters by `q` and
/// `updatedMin`, and writes timestamps with milliseconds.
#[tokio::test]
async fn calendar_refuses_what_google_refuses() {
    let env = start("small.toml").await;
    let token = env.google_access(SA_SMALL, "ada@acme.example").await;
    let url = format!("{}/calendars/primary/events", env.e.calendar_base);
    let full = env.get(&url, &token).await;
    assert_eq!(full.status, 200);
    let sync = full.body["nextSyncToken"].as_str().unwrap().to_owned();
    let event = &full.body["items"][0];
    for key in ["created", "updated"] {
        let text = event[key].as_str().unwrap();
        // 2024-01-18T14:52:12.409Z: three fractional digits, UTC.
        assert_eq!(text.len(), 24, "{key} = {text}");
        assert_eq!(&text[19..20], ".");
        assert!(text.ends_with('Z'));
    }
    assert_eq!(event["start"]["dateTime"].as_str().unwrap().len(), 20);
    // Sync tokens do not combine with restrictions (events.list reference).
    let restricted = json!({"error": {"code": 400, "message": "Sync token cannot be used with other request restrictions.", "errors": [{"domain": "calendar", "reason": "syncTokenWithRequestRestrictions", "message": "Sync token cannot be used with other request restrictions."}]}});
    for extra in [
        "timeMin=2026-01-01T00:00:00Z",
        "timeMax=2026-01-01T00:00:00Z",
        "orderBy=updated",
        "q=standup",
        "updatedMin=2026-01-01T00:00:00Z",
        "iCalUID=x%40google.com",
        "showDeleted=false",
    ] {
        let got = env
            .get(&format!("{url}?syncToken={sync}&{extra}"), &token)
            .await;
        assert_eq!(got.status, 400, "{extra}");
        assert_eq!(got.body, restricted, "{extra}");
    }
    let ok = env
        .get(
            &format!("{url}?syncToken={sync}&singleEvents=true&showDeleted=true"),
            &token,
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    // A time without offset: google-api-python-client#779.
    let got = env
        .get(&format!("{url}?timeMin=2026-01-01T00:00:00"), &token)
        .await;
    assert_eq!(got.status, 400);
    assert_eq!(
        got.body,
        json!({"error": {"code": 400, "message": "Bad Request", "errors": [{"domain": "global", "reason": "badRequest", "message": "Bad Request"}]}})
    );
    // orderBy=startTime needs singleEvents=true: googleworkspace/java-samples#52.
    let got = env.get(&format!("{url}?orderBy=startTime"), &token).await;
    assert_eq!(got.status, 400);
    assert_eq!(
        got.body,
        json!({"error": {"code": 400, "message": "The requested ordering is not available for the particular query.", "errors": [{"domain": "global", "reason": "invalid", "message": "The requested ordering is not available for the particular query.", "locationType": "parameter", "location": "orderBy"}]}})
    );
    let ordered = env
        .get(
            &format!("{url}?orderBy=startTime&singleEvents=true"),
            &token,
        )
        .await;
    assert_eq!(ordered.status, 200);
    // An empty range: the Calendar errors guide's timeRangeEmpty.
    let got = env
        .get(
            &format!("{url}?timeMin=2026-01-02T00:00:00Z&timeMax=2026-01-01T00:00:00Z"),
            &token,
        )
        .await;
    assert_eq!(got.status, 400);
    assert_eq!(got.body["error"]["errors"][0]["reason"], "timeRangeEmpty");
    // q and updatedMin filter.
    let summary = event["summary"].as_str().unwrap().to_owned();
    let by_text = env
        .get(
            &format!(
                "{url}?q={}",
                summary.replace(' ', "%20").replace('#', "%23")
            ),
            &token,
        )
        .await;
    let found = by_text.body["items"].as_array().unwrap();
    assert!(!found.is_empty() && found.iter().all(|e| e["summary"] == summary.as_str()));
    let future = env
        .get(&format!("{url}?updatedMin=2100-01-01T00:00:00Z"), &token)
        .await;
    assert_eq!(future.body["items"].as_array().unwrap().len(), 0);
    env.sim.shutdown().await;
}

/// Message delta's `$filter`, `$orderby`, `changeType` and `$top`, kept inside its links,
/// and the `delta()` function form msgraph-sdk sends.
#[tokio::test]
async fn graph_mail_delta_query_options() {
    let env = start("small.toml").await;
    let token = env.ms_access().await;
    let alan = env.graph_user_id("alan@contoso.example").await;
    let base = format!(
        "{}/users/{alan}/mailFolders/inbox/messages/delta",
        env.e.graph_base
    );
    let (all, _, _) = delta_round::<graph_models::Message>(&env, &base, &token, 5).await;
    assert_eq!(all.len(), 12);
    let mut received: Vec<String> = all
        .iter()
        .map(|m| m.received_date_time.clone().unwrap())
        .collect();
    received.sort();
    let cut = &received[8];
    // receivedDateTime ge: the four newest, on pages of 3 whose links keep the filter.
    let filtered = format!("{base}?$filter=receivedDateTime%20ge%20{cut}");
    let (newest, delta, _) = delta_round::<graph_models::Message>(&env, &filtered, &token, 3).await;
    assert_eq!(newest.len(), 4);
    assert!(
        newest
            .iter()
            .all(|m| m.received_date_time.as_deref() >= Some(cut.as_str()))
    );
    let strict = format!("{base}?$filter=receivedDateTime%20gt%20{cut}");
    let (three, _, _) = delta_round::<graph_models::Message>(&env, &strict, &token, 3).await;
    assert_eq!(three.len(), 3);
    // $orderby=receivedDateTime desc: newest first.
    let ordered = format!("{base}?$orderby=receivedDateTime%20desc");
    let (desc, _, _) = delta_round::<graph_models::Message>(&env, &ordered, &token, 20).await;
    let got: Vec<_> = desc
        .iter()
        .map(|m| m.received_date_time.clone().unwrap())
        .collect();
    let mut want = got.clone();
    want.sort_by(|a, b| b.cmp(a));
    assert_eq!(got, want);
    // $top sets the page size.
    let page = env.get(&format!("{base}?$top=2"), &token).await;
    assert_eq!(page.body["value"].as_array().unwrap().len(), 2);
    let next = page.body["@odata.nextLink"].as_str().unwrap();
    let second = env.get(next, &token).await;
    assert_eq!(
        second.body["value"].as_array().unwrap().len(),
        2,
        "the link keeps $top"
    );
    // changeType on the next round: created only, or deleted only.
    let gone = all[0].id.clone();
    env.control(
        "mail",
        json!({"tenant": "contoso", "user": "alan@contoso.example", "add": 2, "remove": [gone]}),
    )
    .await;
    let created = format!("{base}?changeType=created");
    let (_, created_delta, _) =
        delta_round::<graph_models::Message>(&env, &created, &token, 50).await;
    let deleted = format!("{base}?changeType=deleted");
    let (initial, deleted_delta, _) =
        delta_round::<graph_models::Message>(&env, &deleted, &token, 50).await;
    assert!(initial.is_empty(), "nothing is deleted in an initial round");
    env.control("mail", json!({"tenant": "contoso", "user": "alan@contoso.example", "add": 1, "remove": [all[1].id]})).await;
    let (new, _, _) = delta_round::<graph_models::Message>(&env, &created_delta, &token, 50).await;
    assert_eq!(new.len(), 1);
    assert!(new[0].removed.is_none());
    let (removed, _, _) =
        delta_round::<graph_models::Message>(&env, &deleted_delta, &token, 50).await;
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].id, all[1].id);
    // The filter survives into the delta link: new mail is older than nothing, so it shows.
    let (after, _, _) = delta_round::<graph_models::Message>(&env, &delta, &token, 3).await;
    assert!(after.iter().filter(|m| m.removed.is_none()).count() >= 3);
    // Refusals: the live $filter text (msgraph-sdk-dotnet#1512), no innerError.
    let got = env
        .get(&format!("{base}?$filter=subject%20eq%20'x'"), &token)
        .await;
    assert_eq!(got.status, 400);
    assert_eq!(
        got.body,
        json!({"error": {"code": "ErrorInvalidUrlQuery", "message": "The '$filter' parameter value is not supported for 'Messages' resource; only a value of 'receivedDateTime ge value' is supported."}})
    );
    for bad in ["$orderby=subject", "changeType=moved", "$top=zero"] {
        let got = env.get(&format!("{base}?{bad}"), &token).await;
        assert_eq!(got.status, 400, "{bad}");
        assert_eq!(got.body["error"]["code"], "ErrorInvalidUrlQuery", "{bad}");
    }
    // The OData function form.
    let function = format!("{base}()?$top=50");
    let got = env.get(&function, &token).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert!(got.body["@odata.deltaLink"].is_string());
    let calendar = format!(
        "{}/users/{alan}/calendarView/delta()?startDateTime=2000-01-01T00:00:00Z&endDateTime=2100-01-01T00:00:00Z",
        env.e.graph_base
    );
    let (events, _, _) = delta_round::<graph_models::Event>(&env, &calendar, &token, 50).await;
    assert_eq!(events.len(), 6);
    env.sim.shutdown().await;
}

/// `GET /users/delta` (and `delta()`): every user, paged, then an empty round.
#[tokio::test]
async fn graph_users_delta() {
    let env = start("small.toml").await;
    let token = env.ms_access().await;
    for path in ["users/delta", "users/delta()"] {
        let first = format!(
            "{}/{path}?$select=id,userPrincipalName,accountEnabled",
            env.e.graph_base
        );
        let (users, delta, _) = delta_round::<graph_models::User>(&env, &first, &token, 2).await;
        let listed = env
            .http
            .get(format!("{}/users", env.e.control_url))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["tenant"] == "contoso")
            .count();
        assert_eq!(users.len(), listed, "{path}");
        assert!(users.iter().all(|u| u.user_principal_name.is_some()));
        let (none, _, _) = delta_round::<graph_models::User>(&env, &delta, &token, 2).await;
        assert!(none.is_empty());
    }
    env.sim.shutdown().await;
}

/// A path the sim does not serve answers each provider's envelope, not plain text.
#[tokio::test]
async fn unknown_paths_answer_provider_envelopes() {
    let env = start("small.toml").await;
    let ms = env.ms_access().await;
    let got = env
        .get_with(
            &format!("{}/users/x/contacts", env.e.graph_base),
            &ms,
            &[("client-request-id", "c-1")],
        )
        .await;
    assert_eq!(got.status, 400);
    assert_eq!(got.body["error"]["code"], "BadRequest");
    assert_eq!(
        got.body["error"]["message"],
        "Resource not found for the segment 'contacts'."
    );
    assert_eq!(got.body["error"]["innerError"]["client-request-id"], "c-1");
    assert_eq!(got.header("client-request-id"), "c-1");
    let got = env.get(&format!("{}/teams", env.e.graph_base), &ms).await;
    assert_eq!(
        got.body["error"]["message"],
        "Resource not found for the segment 'teams'."
    );
    let google = env.google_access(SA_SMALL, "ada@acme.example").await;
    let got = env
        .get(&format!("{}/users/me/labels", env.e.gmail_base), &google)
        .await;
    assert_eq!(got.status, 404);
    assert_eq!(
        got.header("content-type"),
        "application/json; charset=UTF-8"
    );
    assert_eq!(
        got.body,
        json!({"error": {"code": 404, "message": "Not Found", "errors": [{"domain": "global", "reason": "notFound", "message": "Not Found"}]}})
    );
    let got = env.get(&format!("{}/nothing", env.e.control_url), "").await;
    assert_eq!(got.status, 404);
    assert!(got.body["error"].is_string());
    env.sim.shutdown().await;
}

// ---- OpenID Connect: discovery, JWKS, id_tokens (issue 16, for issue 17's verifier) ------

/// Verifies an RS256 JWT against the JWKS at `jwks_url` (with ring, the workspace's crypto)
/// and returns its header and claims.
async fn verify_id_token(env: &Env, jwks_url: &str, token: &str) -> (Value, Value) {
    let jwks = env.get(jwks_url, "").await;
    assert_eq!(jwks.status, 200, "{}", jwks.text);
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    let key = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the JWKS publishes the token's kid")
        .clone();
    assert_eq!(
        (key["kty"].as_str(), key["use"].as_str()),
        (Some("RSA"), Some("sig"))
    );
    let b64 = |field: &str| {
        URL_SAFE_NO_PAD
            .decode(key[field].as_str().unwrap())
            .unwrap()
    };
    let (input, signature) = token.rsplit_once('.').unwrap();
    ring::signature::RsaPublicKeyComponents {
        n: b64("n"),
        e: b64("e"),
    }
    .verify(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        input.as_bytes(),
        &URL_SAFE_NO_PAD.decode(signature).unwrap(),
    )
    .expect("the id_token verifies against the published key");
    (header, jwt_claims(token))
}

#[tokio::test]
async fn google_openid_discovery_and_id_token() {
    let env = start("small.toml").await;
    let issuer = env.e.google_issuer();
    let config = env.get(&env.e.google_openid_configuration_url(), "").await;
    assert_eq!(config.status, 200);
    assert_eq!(config.body["issuer"], issuer.as_str());
    assert_eq!(config.body["jwks_uri"], env.e.google_jwks_url().as_str());
    assert_eq!(
        config.body["token_endpoint"],
        env.e.google_token_url.as_str()
    );
    assert_eq!(
        config.body["authorization_endpoint"],
        env.e.google_authorize_url.as_str()
    );
    assert_eq!(
        config.body["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    let jwks = env.get(&env.e.google_jwks_url(), "").await;
    assert_eq!(jwks.body["keys"][0]["alg"], "RS256");
    // Authorization code with openid + nonce: the id_token carries Google's claims.
    let redirect = "http://127.0.0.1:8080/oauth/google/callback";
    let client = "sim-google-client.apps.googleusercontent.com";
    let response = env
        .http
        .get(&env.e.google_authorize_url)
        .query(&[
            ("client_id", client),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("scope", &format!("openid email profile {GMAIL}")),
            ("state", "s"),
            ("nonce", "n-0S6_WzA2Mj"),
            ("login_hint", "grace@acme.example"),
        ])
        .send()
        .await
        .unwrap();
    let location = reqwest::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    let got = env
        .form(
            &env.e.google_token_url,
            &[
                ("grant_type", "authorization_code"),
                ("code", &query["code"]),
                ("client_id", client),
                ("client_secret", "sim-google-secret"),
                ("redirect_uri", redirect),
            ],
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.text);
    let (_, claims) = verify_id_token(
        &env,
        &env.e.google_jwks_url(),
        got.body["id_token"].as_str().unwrap(),
    )
    .await;
    let users: Value = env
        .http
        .get(format!("{}/users", env.e.control_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grace_id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "grace@acme.example")
        .unwrap()["id"]
        .clone();
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["aud"], client);
    assert_eq!(claims["azp"], client);
    assert_eq!(claims["sub"], grace_id);
    assert_eq!(claims["hd"], "acme.example");
    assert_eq!(claims["email"], "grace@acme.example");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    // at_hash: base64url of the left half of SHA-256(access_token) (OIDC Core §3.1.3.6).
    let digest = <Sha256 as sha2::Digest>::digest(got.body["access_token"].as_str().unwrap());
    assert_eq!(claims["at_hash"], URL_SAFE_NO_PAD.encode(&digest[..16]));
    assert!(claims["name"].is_string());
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(iat <= now() + 1 && exp > now());
    // A refresh answer carries an id_token too (without the nonce); no openid, none.
    let refreshed = env
        .form(
            &env.e.google_token_url,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", got.body["refresh_token"].as_str().unwrap()),
                ("client_id", client),
                ("client_secret", "sim-google-secret"),
            ],
        )
        .await;
    let (_, claims) = verify_id_token(
        &env,
        &env.e.google_jwks_url(),
        refreshed.body["id_token"].as_str().unwrap(),
    )
    .await;
    assert!(claims.get("nonce").is_none());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn microsoft_openid_discovery_and_id_token() {
    let env = start("small.toml").await;
    let issuer = env.e.microsoft_issuer(MS_TENANT);
    for segment in [MS_TENANT, "contoso.example"] {
        let config = env
            .get(&env.e.microsoft_openid_configuration_url(segment), "")
            .await;
        assert_eq!(config.status, 200, "{segment}: {}", config.text);
        assert_eq!(config.body["issuer"], issuer.as_str());
        assert_eq!(
            config.body["token_endpoint"],
            env.e.microsoft_token_url(MS_TENANT).as_str()
        );
        assert_eq!(
            config.body["authorization_endpoint"],
            env.e.microsoft_authorize_url(MS_TENANT).as_str()
        );
        assert_eq!(
            config.body["jwks_uri"],
            env.e.microsoft_jwks_url(MS_TENANT).as_str()
        );
    }
    let common = env
        .get(&env.e.microsoft_openid_configuration_url("common"), "")
        .await;
    assert_eq!(
        common.body["issuer"],
        env.e.microsoft_issuer("{tenantid}").as_str()
    );
    // AADSTS90002 with the real body shape (Azure/azure-cli#22145).
    let got = env
        .get_with(
            &env.e.microsoft_openid_configuration_url("nosuch.example"),
            "",
            &[("client-request-id", "corr-1")],
        )
        .await;
    assert_eq!(got.status, 400);
    let keys: Vec<&str> = got
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys.iter().copied().collect::<BTreeSet<_>>(),
        [
            "correlation_id",
            "error",
            "error_codes",
            "error_description",
            "error_uri",
            "timestamp",
            "trace_id"
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(got.body["error"], "invalid_tenant");
    assert_eq!(got.body["error_codes"], json!([90002]));
    assert_eq!(got.body["correlation_id"], "corr-1");
    assert!(
        got.body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS90002: Tenant 'nosuch.example' not found. Check to make sure you have the correct tenant ID")
    );
    assert_eq!(
        env.get(&env.e.microsoft_jwks_url("nosuch.example"), "")
            .await
            .status,
        400
    );
    // Authorization code with openid + nonce.
    let redirect = "http://127.0.0.1:8080/oauth/microsoft/callback";
    let response = env
        .http
        .get(env.e.microsoft_authorize_url(MS_TENANT))
        .query(&[
            ("client_id", MS_CLIENT),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            (
                "scope",
                "openid profile email offline_access Mail.Read User.Read",
            ),
            ("state", "s"),
            ("nonce", "nonce-42"),
            ("login_hint", "katherine@contoso.example"),
        ])
        .send()
        .await
        .unwrap();
    let location = reqwest::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    let got = env
        .form(
            &env.e.microsoft_token_url(MS_TENANT),
            &[
                ("grant_type", "authorization_code"),
                ("client_id", MS_CLIENT),
                ("client_secret", "sim-microsoft-secret"),
                ("code", &query["code"]),
                ("redirect_uri", redirect),
            ],
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.text);
    let jwks = env.e.microsoft_jwks_url(MS_TENANT);
    let (_, claims) = verify_id_token(&env, &jwks, got.body["id_token"].as_str().unwrap()).await;
    let oid = env.graph_user_id("katherine@contoso.example").await;
    assert_eq!(claims["aud"], MS_CLIENT);
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["tid"], MS_TENANT);
    assert_eq!(claims["oid"], oid.as_str());
    assert_eq!(claims["preferred_username"], "katherine@contoso.example");
    assert_eq!(claims["email"], "katherine@contoso.example");
    assert_eq!(claims["nonce"], "nonce-42");
    assert_eq!(claims["ver"], "2.0");
    assert!(
        claims["sub"].is_string() && claims["sub"] != oid.as_str(),
        "sub is pairwise"
    );
    assert!(claims["exp"].as_i64().unwrap() > now());
    let jwk = env.get(&jwks, "").await;
    assert_eq!(jwk.body["keys"][0]["issuer"], issuer.as_str());
    // Refresh: a new id_token without the nonce; the same pairwise sub.
    let refreshed = env
        .form(
            &env.e.microsoft_token_url(MS_TENANT),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", MS_CLIENT),
                ("client_secret", "sim-microsoft-secret"),
                ("refresh_token", got.body["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    let (_, again) =
        verify_id_token(&env, &jwks, refreshed.body["id_token"].as_str().unwrap()).await;
    assert_eq!(again["sub"], claims["sub"]);
    assert!(again.get("nonce").is_none());
    // Graph /me names the signed-in user of a delegated token; an app token gets Graph's 400.
    let me = env
        .get(
            &format!("{}/me?$select=id,userPrincipalName,mail", env.e.graph_base),
            got.body["access_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(
        me.body,
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity", "mail": "katherine@contoso.example", "userPrincipalName": "katherine@contoso.example", "id": oid})
    );
    let app = env
        .ms_app_token(MS_TENANT, MS_CLIENT, "sim-microsoft-secret")
        .await;
    // Client credentials never carry an id_token.
    assert!(app.body.get("id_token").is_none());
    let me = env
        .get(
            &format!("{}/me", env.e.graph_base),
            app.body["access_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(me.status, 400);
    assert_eq!(me.body["error"]["code"], "BadRequest");
    assert_eq!(
        me.body["error"]["message"],
        "/me request is only valid with delegated authentication flow."
    );
    env.sim.shutdown().await;
}

/// The https listener: a client that trusts only the shipped test CA gets a token and a
/// Graph page over TLS.
#[tokio::test]
async fn https_listener_with_the_test_certificate() {
    let scenario = Scenario::from_file(&config_dir().join("small.toml")).expect("scenario loads");
    let sim = Sim::start_https(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sim starts over https");
    let e = sim.endpoints().clone();
    assert!(e.base.starts_with("https://127.0.0.1:"), "{}", e.base);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(datacap_sim::TEST_CA_PEM.as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("client");
    let token: Value = http
        .post(e.microsoft_token_url(MS_TENANT))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", MS_CLIENT),
            ("client_secret", "sim-microsoft-secret"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("https token request")
        .json()
        .await
        .unwrap();
    let page = http
        .get(format!("{}/users", e.graph_base))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let body: Value = page.json().await.unwrap();
    assert!(!body["value"].as_array().unwrap().is_empty());
    // A client without the CA refuses the certificate; the sim keeps serving.
    let stranger = reqwest::Client::builder()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .build()
        .unwrap();
    assert!(stranger.get(&e.graph_base).send().await.is_err());
    let again = http
        .get(format!("{}/_sim/stats", e.base))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    sim.shutdown().await;
}

// ---- the providers' own Python clients (tests/conformance/) -----------------------------

/// The conformance venv's python: `DATACAP_CONFORMANCE_VENV` or
/// `/var/tmp/datacap-conformance-venv` (.ci/run creates it from
/// tests/conformance/requirements.txt). Missing: under `CI=true` the test fails, else it is
/// skipped with a note.
fn conformance_python() -> Option<PathBuf> {
    let venv = std::env::var_os("DATACAP_CONFORMANCE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/datacap-conformance-venv"));
    let python = venv.join("bin/python");
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but the conformance venv {} is missing (.ci/run creates it: python3 -m venv + pip install -r tests/conformance/requirements.txt)",
        venv.display()
    );
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "python_conformance_suite skipped: no venv at {} (see tests/conformance/requirements.txt)",
            venv.display()
        );
    }
    None
}

/// google-auth, google-api-python-client, msal and msgraph-sdk against the sim over https.
#[tokio::test]
async fn python_conformance_suite() {
    let Some(python) = conformance_python() else {
        return;
    };
    let scenario = Scenario::from_file(&config_dir().join("small.toml")).expect("scenario loads");
    let sim = Sim::start_https(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sim starts over https");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("sim-ca.pem");
    std::fs::write(&ca, datacap_sim::TEST_CA_PEM).unwrap();
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance");
    let mut command = tokio::process::Command::new(python);
    command
        .arg("run.py")
        .args(
            std::env::var("DATACAP_CONFORMANCE_SUITES")
                .ok()
                .as_deref()
                .map(str::split_whitespace)
                .into_iter()
                .flatten(),
        )
        .current_dir(&suite)
        .env("SIM_BASE", &sim.endpoints().base)
        .env("SIM_CA", &ca)
        .env("SIM_CONFIG_DIR", config_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Nothing leaves loopback: no proxy, and the CA is the only trust anchor.
        .env("NO_PROXY", "*")
        .env("REQUESTS_CA_BUNDLE", &ca)
        .env("SSL_CERT_FILE", &ca)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the suite finishes within 5 minutes")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "conformance suite failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    // Each case's line, for the CI log (`cargo test` shows it with --nocapture).
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{stdout}");
    }
    sim.shutdown().await;
}

/// `/users` `$filter`: the basic operators filter (and stay in the nextLink); `ne` and
/// `endsWith` need the advanced-query headers; anything else is Graph's 400.
#[tokio::test]
async fn graph_users_filter() {
    let env = start("faults.toml").await;
    let token = env
        .ms_app_token(FAB_TENANT, FAB_CLIENT, "fabrikam-secret")
        .await
        .body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{}/users", env.e.graph_base);
    let names = async |query: &str, headers: &[(&str, &str)]| -> Got {
        env.get_with(&format!("{url}?{query}"), &token, headers)
            .await
    };
    let upns = |got: &Got| -> BTreeSet<String> {
        got.body["value"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", got.text))
            .iter()
            .map(|u| u["userPrincipalName"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = upns(&names("$select=userPrincipalName,accountEnabled,userType", &[]).await);
    let enabled = upns(&names("$filter=accountEnabled%20eq%20true", &[]).await);
    let disabled = upns(&names("$filter=accountEnabled%20eq%20false", &[]).await);
    assert!(!enabled.is_empty());
    assert_eq!(enabled.len() + disabled.len(), all.len());
    let members = upns(&names("$filter=userType%20eq%20'Member'", &[]).await);
    assert!(members.len() < all.len(), "faults.toml has a guest");
    // The filter is kept in the nextLink.
    let first = names("$filter=userType%20eq%20'Member'&$top=1", &[]).await;
    let mut seen = upns(&first);
    let mut next = first.body["@odata.nextLink"].as_str().map(str::to_owned);
    while let Some(link) = next {
        let page = env.get(&link, &token).await;
        seen.extend(upns(&page));
        next = page.body["@odata.nextLink"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, members);
    // `ne` without ConsistencyLevel + $count: microsoft-graph-docs#13583.
    let got = names("$filter=userType%20ne%20'Guest'", &[]).await;
    assert_eq!(got.status, 400);
    assert_eq!(got.body["error"]["code"], "Request_UnsupportedQuery");
    assert_eq!(
        got.body["error"]["message"],
        "Unsupported or invalid query filter clause specified for property 'userType' of resource 'User'."
    );
    let advanced = names(
        "$filter=userType%20ne%20'Guest'&$count=true",
        &[("ConsistencyLevel", "eventual")],
    )
    .await;
    assert_eq!(upns(&advanced), members);
    // A property the sim (and the basic query) does not filter on.
    let got = names("$filter=onPremisesSamAccountName%20eq%20'x'", &[]).await;
    assert_eq!(got.status, 400);
    assert_eq!(
        got.body["error"]["message"],
        "Unsupported or invalid query filter clause specified for property 'onPremisesSamAccountName' of resource 'User'."
    );
    env.sim.shutdown().await;
}
