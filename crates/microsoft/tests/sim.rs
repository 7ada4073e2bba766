//! The Microsoft connector against datacap-sim over real HTTP on loopback: app-only and
//! user-by-user auth, mail and calendar delta across runs, resync, paging quirks,
//! throttling, per-mailbox concurrency, secrets kept out of logs, and one row per
//! Microsoft fault the sim can produce mapped to its outcome.
//!
//! Each fault row cites the PROVIDERS.md answer → outcome row and the providers/microsoft.md
//! section whose answer the sim reproduces.

use std::collections::HashSet;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datacap_connector::{
    Attempt, Auth, Connector, HttpLimits, ImportJob, MicrosoftAppCredential, OAuthClient,
    RefreshTokenSink, RotatedToken, SinkError,
};
use datacap_core::{Channel, Outcome};
use datacap_microsoft::{MicrosoftConfig, MicrosoftConnector, MicrosoftError};
use datacap_sim::{Scenario, Sim, SimHandle};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::Digest;
use uuid::Uuid;

#[path = "../../connector/tests/support/sim_tests.rs"]
mod sim_tests;
use sim_tests::{CountingGate, added_ids, assert_no_failures, item_ids};

const CONTOSO: &str = "8f3e1c52-2d4a-4c1e-9b7a-3f5d6e7a8b9c";
const CONTOSO_CLIENT: &str = "5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b";
const CONTOSO_SECRET: &str = "sim-microsoft-secret";
const NOROLES: &str = "22222222-3333-4444-8555-666666666666";
const NOROLES_CLIENT: &str = "99999999-8888-4777-8666-555555555555";
const FABRIKAM: &str = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";
const FABRIKAM_CLIENT: &str = "aa11bb22-cc33-4d44-8e55-ff6677889900";
const FABRIKAM_SECRET: &str = "fabrikam-secret";
const REDIRECT: &str = "http://127.0.0.1:9/oauth/microsoft/callback";

const SCENARIO: &str = include_str!("../../../tests/fixtures/microsoft/scenario.toml");

// ---- harness --------------------------------------------------------------------------

struct Env {
    sim: SimHandle,
    control: reqwest::Client,
}

impl Env {
    async fn start() -> Env {
        std::sync::LazyLock::force(&LOGS);
        let scenario = Scenario::from_toml(SCENARIO, "microsoft-tests", std::path::Path::new("."))
            .expect("scenario loads");
        let sim = Sim::start(scenario, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("sim starts");
        datacap_connector::http::install_crypto_provider();
        let control = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Env { sim, control }
    }

    /// Test bounds: short timeouts, a 1 MB body limit, no throttling waits unless a test
    /// asks for them.
    fn config(&self) -> MicrosoftConfig {
        let e = self.sim.endpoints();
        let mut config = MicrosoftConfig::with_bases(&e.microsoft_login_base, &e.graph_base);
        config.http = HttpLimits {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 1_000_000,
        };
        config.throttle_retries = 0;
        config.max_retry_wait = Duration::from_secs(1);
        config
    }

    fn connector(&self, change: impl FnOnce(&mut MicrosoftConfig)) -> MicrosoftConnector {
        let mut config = self.config();
        change(&mut config);
        MicrosoftConnector::new(config).expect("connector")
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        sim_tests::control(&self.control, self.sim.control_url(), path, body).await
    }

    async fn fault(&self, tenant: &str, user: Option<&str>, fault: &str, extra: Value) {
        let mut body = json!({ "tenant": tenant, "fault": fault });
        if let Some(user) = user {
            body["user"] = user.into();
        }
        if let Value::Object(extra) = extra {
            for (key, value) in extra {
                body[key] = value;
            }
        }
        self.post("faults", body).await;
    }

    /// Where a fault-table row's fault goes and how its import authenticates.
    async fn row_auth(
        &self,
        connector: &MicrosoftConnector,
        who: Who,
    ) -> (&'static str, Option<&'static str>, &'static str, JobAuth) {
        match who {
            Who::App => ("contoso", None, "row@contoso.example", contoso_app()),
            Who::AppMailbox => (
                "contoso",
                Some("row@contoso.example"),
                "row@contoso.example",
                contoso_app(),
            ),
            Who::Member => {
                let refresh = self.connect(connector, "row@fabrikam.example").await;
                (
                    "fabrikam",
                    Some("row@fabrikam.example"),
                    "row@fabrikam.example",
                    member(&refresh),
                )
            }
        }
    }

    async fn clear(&self) {
        self.post("faults/clear", json!({})).await;
    }

    async fn stats(&self) -> Value {
        let response = self
            .control
            .get(format!("{}/stats", self.sim.control_url()))
            .send()
            .await
            .expect("stats");
        response.json().await.expect("stats body")
    }

    /// The connect flow: authorize as `user` with PKCE, then `exchange_code`.
    async fn connect(&self, connector: &MicrosoftConnector, user: &str) -> SecretString {
        let (code, verifier) = self.authorize(user).await;
        let grant = connector
            .exchange_code(&fabrikam_client(), &code, REDIRECT, &verifier)
            .await
            .expect("code redeemed");
        grant
            .refresh_token
            .expect("offline_access gives a refresh token")
    }

    /// Authorizes `user` with PKCE on the sim's consent screen: the code and its verifier.
    async fn authorize(&self, user: &str) -> (String, SecretString) {
        let verifier = format!(
            "verifier-{}-0123456789abcdefghijklmnop",
            Uuid::new_v4().simple()
        );
        let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        let response = self
            .control
            .get(self.sim.endpoints().microsoft_authorize_url(FABRIKAM))
            .query(&[
                ("client_id", FABRIKAM_CLIENT),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", "offline_access Mail.Read Calendars.Read User.Read"),
                ("state", "s"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("login_hint", user),
            ])
            .send()
            .await
            .expect("authorize");
        assert_eq!(response.status(), 302);
        let location = response.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let location = reqwest::Url::parse(&location).expect("url");
        let code = location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("code");
        (code, SecretString::from(verifier))
    }
}

/// The connect flow's code redemption runs on the `oauth2` crate (issue 17 §2), and what
/// the status model reads still arrives: the HTTP status, `Retry-After`, and Entra's
/// `error`, `error_codes`, `suberror`, `trace_id` and `correlation_id`.
#[tokio::test]
async fn the_code_redemption_keeps_entras_error_codes_trace_and_retry_after() {
    let env = Env::start().await;
    let connector = env.connector(|_| {});
    let user = "megan@fabrikam.example";
    let (code, verifier) = env.authorize(user).await;
    env.fault(
        "fabrikam",
        Some(user),
        "consent_required",
        json!({ "endpoint": "token", "times": 1 }),
    )
    .await;
    let refused = connector
        .exchange_code(&fabrikam_client(), &code, REDIRECT, &verifier)
        .await
        .expect_err("consent required");
    let MicrosoftError::Provider(failure) = refused else {
        panic!("not a provider failure: {refused:?}");
    };
    // AADSTS65001 decides (the catalogue's row), not the `invalid_grant` class.
    assert_eq!(failure.outcome, Outcome::NotAuthorized, "{failure}");
    assert_eq!(failure.http_status, Some(400));
    assert_eq!(failure.error_code.as_deref(), Some("invalid_grant"));
    let message = failure.error_message.clone().unwrap_or_default();
    assert!(message.starts_with("AADSTS65001"), "{message}");
    for part in [
        "(suberror consent_required)",
        "; trace_id ",
        "; correlation_id ",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    assert!(
        failure.request_id.is_some(),
        "the trace id is the request id"
    );

    env.fault(
        "fabrikam",
        Some(user),
        "tenant_throttled",
        json!({ "endpoint": "token", "times": 1, "retry_after": 7 }),
    )
    .await;
    let throttled = connector
        .exchange_code(&fabrikam_client(), &code, REDIRECT, &verifier)
        .await
        .expect_err("throttled");
    let MicrosoftError::Provider(failure) = throttled else {
        panic!("not a provider failure: {throttled:?}");
    };
    assert_eq!(failure.outcome, Outcome::RateLimited, "{failure}");
    assert_eq!(failure.http_status, Some(429));
    assert_eq!(failure.retry_after, Some(Duration::from_secs(7)));

    // The faults fired before the code was redeemed: it still works, once.
    let grant = connector
        .exchange_code(&fabrikam_client(), &code, REDIRECT, &verifier)
        .await
        .expect("redeemed");
    assert!(grant.refresh_token.is_some());
    assert!(grant.scope.is_some_and(|scope| scope.contains("Mail.Read")));
    let again = connector
        .exchange_code(&fabrikam_client(), &code, REDIRECT, &verifier)
        .await
        .expect_err("single use");
    assert_eq!(again.outcome(), Some(Outcome::GrantInvalid));
    env.sim.shutdown().await;
}

/// How a test job authenticates: the company's credentials and, user-by-user, the
/// member's refresh token.
type JobAuth = (Auth, Option<SecretString>);

fn contoso_app() -> JobAuth {
    let credential = MicrosoftAppCredential {
        tenant: CONTOSO.into(),
        client_id: CONTOSO_CLIENT.into(),
        client_secret: SecretString::from(CONTOSO_SECRET),
    };
    (Auth::MicrosoftApp(Arc::new(credential)), None)
}

fn noroles_app() -> JobAuth {
    let credential = MicrosoftAppCredential {
        tenant: NOROLES.into(),
        client_id: NOROLES_CLIENT.into(),
        client_secret: SecretString::from("noroles-secret"),
    };
    (Auth::MicrosoftApp(Arc::new(credential)), None)
}

fn fabrikam_client() -> OAuthClient {
    OAuthClient {
        client_id: FABRIKAM_CLIENT.into(),
        client_secret: SecretString::from(FABRIKAM_SECRET),
        tenant: Some(FABRIKAM.into()),
    }
}

fn member(refresh_token: &SecretString) -> JobAuth {
    (
        Auth::OAuthClient(Arc::new(fabrikam_client())),
        Some(refresh_token.clone()),
    )
}

fn job(address: &str, channel: Channel, auth: JobAuth, cursor: Option<&str>) -> ImportJob {
    let (auth, refresh_token) = auth;
    ImportJob {
        attempt_id: Uuid::new_v4(),
        company_id: "company".into(),
        member_id: "member".into(),
        member_address: address.into(),
        channel,
        auth,
        refresh_token,
        cursor: cursor.map(str::to_owned),
        now: time::OffsetDateTime::now_utc(),
        gate: datacap_connector::Gate::open(),
    }
}

#[track_caller]
fn assert_success(attempt: &Attempt) {
    assert_eq!(
        attempt.outcome,
        Outcome::Success,
        "{:?} {:?} {:?}",
        attempt.http_status,
        attempt.error_code,
        attempt.error_message
    );
}

fn unique(ids: &[String]) -> bool {
    ids.iter().collect::<HashSet<_>>().len() == ids.len()
}

// ---- mail -----------------------------------------------------------------------------

#[tokio::test]
async fn app_only_mail_full_pass_then_incremental() {
    let env = Env::start().await;
    let connector = env.connector(|c| c.max_page_size = 5);
    let graph_base = env.sim.endpoints().graph_base.clone();

    let first = connector
        .import(&job(
            "alan@contoso.example",
            Channel::Email,
            contoso_app(),
            None,
        ))
        .await;
    assert_success(&first);
    assert_eq!(first.email_items.len(), 12);
    assert!(unique(&item_ids(&first, Channel::Email)));
    let cursor = first.next_cursor.clone().expect("cursor");
    assert!(
        cursor.starts_with(&graph_base) && cursor.contains("$deltatoken="),
        "{cursor}"
    );
    assert_eq!(
        first.requests,
        1 + 3,
        "one token call, then three pages of five"
    );
    assert!(first.request_id.is_some());
    let item = &first.email_items[0];
    assert!(item.subject.is_some() && item.sender.is_some() && item.sent_at.is_some());
    assert!(item.thread_id.is_some());
    assert_eq!(item.participants, ["alan@contoso.example"]);

    // Nothing changed: success, nothing new, a fresh cursor. The app token is cached.
    let again = connector
        .import(&job(
            "alan@contoso.example",
            Channel::Email,
            contoso_app(),
            Some(&cursor),
        ))
        .await;
    assert_success(&again);
    assert!(again.email_items.is_empty());
    assert_eq!(again.requests, 1, "cached token, one delta page");

    // Three new messages through the control endpoint arrive incrementally, once each.
    let added = env
        .post(
            "mail",
            json!({ "tenant": "contoso", "user": "alan@contoso.example", "add": 3 }),
        )
        .await;
    let added = added_ids(&added, "graph_id");
    let cursor = again.next_cursor.expect("cursor");
    let incremental = connector
        .import(&job(
            "alan@contoso.example",
            Channel::Email,
            contoso_app(),
            Some(&cursor),
        ))
        .await;
    assert_success(&incremental);
    let got: HashSet<String> = item_ids(&incremental, Channel::Email).into_iter().collect();
    assert_eq!(got, added);
    assert!(
        !first
            .email_items
            .iter()
            .any(|i| got.contains(&i.provider_id))
    );

    // A deleted message comes back `@removed`: no item for it, the cursor moves on.
    let victim = first.email_items[0].provider_id.clone();
    env.post(
        "mail",
        json!({ "tenant": "contoso", "user": "alan@contoso.example", "remove": [victim] }),
    )
    .await;
    let cursor = incremental.next_cursor.expect("cursor");
    let removed = connector
        .import(&job(
            "alan@contoso.example",
            Channel::Email,
            contoso_app(),
            Some(&cursor),
        ))
        .await;
    assert_success(&removed);
    assert!(removed.email_items.is_empty());
    assert_ne!(removed.next_cursor.as_deref(), Some(cursor.as_str()));
    env.sim.shutdown().await;
}

/// PROVIDERS.md: "Graph 410 (or any 4xx) SyncStateNotFound/resyncRequired/SyncStateInvalid
/// → drop the cursor, run a full pass in the same attempt" (microsoft.md §3).
#[tokio::test]
async fn expired_cursor_runs_a_full_pass_in_the_same_attempt() {
    let env = Env::start().await;
    let connector = env.connector(|_| {});
    let user = "resync@contoso.example";
    let first = connector
        .import(&job(user, Channel::Email, contoso_app(), None))
        .await;
    assert_success(&first);
    let cursor = first.next_cursor.clone().expect("cursor");

    // The sim's own expiry (epoch bump): the old delta link answers 410 SyncStateNotFound.
    env.post(
        "expire",
        json!({ "tenant": "contoso", "user": user, "what": "cursors" }),
    )
    .await;
    let attempt = connector
        .import(&job(user, Channel::Email, contoso_app(), Some(&cursor)))
        .await;
    assert_success(&attempt);
    assert_eq!(attempt.email_items.len(), 5, "the full pass again");
    assert_eq!(attempt.requests, 2, "the 410, then the full pass");
    let mut cursor = attempt.next_cursor.expect("cursor");

    // Each cursor answer, by fault name, on mail and on calendar.
    for fault in [
        "sync_state_not_found",
        "sync_state_not_found_400",
        "resync_required",
        "sync_state_invalid",
        "cursor_expired",
    ] {
        env.fault("contoso", Some(user), fault, json!({ "times": 1 }))
            .await;
        let attempt = connector
            .import(&job(user, Channel::Email, contoso_app(), Some(&cursor)))
            .await;
        assert_success(&attempt);
        assert_eq!(attempt.email_items.len(), 5, "{fault}: full pass");
        cursor = attempt.next_cursor.expect("cursor");
    }
    let first = connector
        .import(&job(user, Channel::Calendar, contoso_app(), None))
        .await;
    assert_success(&first);
    env.fault(
        "contoso",
        Some(user),
        "sync_state_not_found",
        json!({ "times": 1, "endpoint": "graph_calendar" }),
    )
    .await;
    let attempt = connector
        .import(&job(
            user,
            Channel::Calendar,
            contoso_app(),
            first.next_cursor.as_deref(),
        ))
        .await;
    assert_success(&attempt);
    assert_eq!(attempt.calendar_items.len(), 3);

    // A cursor fault that keeps firing on incremental calls still ends in a full pass
    // (the sim fires cursor faults only on incremental calls, so the pass is clean).
    env.fault(
        "contoso",
        Some(user),
        "sync_state_not_found_400",
        json!({ "endpoint": "graph_mail" }),
    )
    .await;
    let attempt = connector
        .import(&job(user, Channel::Email, contoso_app(), Some(&cursor)))
        .await;
    assert_success(&attempt);
    assert_eq!(attempt.email_items.len(), 5);
    env.sim.shutdown().await;
}

/// microsoft.md §3: empty pages that still carry a nextLink, and items repeated across
/// pages (msgraph-sdk-dotnet#3070, #1568).
#[tokio::test]
async fn empty_pages_and_duplicates_across_pages() {
    let env = Env::start().await;
    let connector = env.connector(|c| c.max_page_size = 4);
    let mail = connector
        .import(&job(
            "quirky@contoso.example",
            Channel::Email,
            contoso_app(),
            None,
        ))
        .await;
    assert_success(&mail);
    assert_eq!(mail.email_items.len(), 25);
    assert!(unique(&item_ids(&mail, Channel::Email)));
    assert!(
        mail.requests > 1 + 2 * 7,
        "empty pages were followed: {}",
        mail.requests
    );

    let calendar = connector
        .import(&job(
            "quirky@contoso.example",
            Channel::Calendar,
            contoso_app(),
            None,
        ))
        .await;
    assert_success(&calendar);
    let ids: Vec<String> = calendar
        .calendar_items
        .iter()
        .map(|i| i.provider_id.clone())
        .collect();
    assert_eq!(ids.len(), 12, "duplicates across pages deduplicated by id");
    assert!(unique(&ids));
    env.sim.shutdown().await;
}

/// The page budget bounds every attempt; the next link becomes the cursor and the next
/// attempt carries on, so a large first pass finishes over several attempts.
#[tokio::test]
async fn page_budget_checkpoints_and_resumes() {
    let env = Env::start().await;
    let connector = env.connector(|c| {
        c.max_page_size = 3;
        c.max_pages_per_attempt = 2;
    });
    let mut cursor: Option<String> = None;
    let mut ids = Vec::new();
    for round in 0..10 {
        let attempt = connector
            .import(&job(
                "alan@contoso.example",
                Channel::Email,
                contoso_app(),
                cursor.as_deref(),
            ))
            .await;
        assert_success(&attempt);
        assert!(
            attempt.requests <= 3,
            "round {round}: at most one token call and two pages"
        );
        ids.extend(item_ids(&attempt, Channel::Email));
        let next = attempt.next_cursor.expect("cursor");
        let done = next.contains("$deltatoken=");
        cursor = Some(next);
        if done {
            break;
        }
    }
    assert!(
        cursor
            .as_deref()
            .is_some_and(|c| c.contains("$deltatoken="))
    );
    assert_eq!(ids.len(), 12);
    assert!(unique(&ids));
    env.sim.shutdown().await;
}

// ---- auth -----------------------------------------------------------------------------

/// PROVIDERS.md: "refresh tokens rotate: persist the new one every time"; microsoft.md
/// §1.1 "Success bodies" and the fake-server note on rejecting a reused token (70000).
#[tokio::test]
async fn user_by_user_refresh_returns_every_rotated_token() {
    let env = Env::start().await;
    let connector = env.connector(|_| {});
    let first = env.connect(&connector, "megan@fabrikam.example").await;

    let attempt = connector
        .import(&job(
            "megan@fabrikam.example",
            Channel::Email,
            member(&first),
            None,
        ))
        .await;
    assert_success(&attempt);
    assert_eq!(attempt.email_items.len(), 5);
    let second = attempt
        .rotated_refresh_token
        .clone()
        .expect("rotated token returned")
        .0;
    assert_ne!(second.expose_secret(), first.expose_secret());

    // The tenant rejects a rotated-away token: AADSTS70000 → grant_invalid.
    let reused = connector
        .import(&job(
            "megan@fabrikam.example",
            Channel::Email,
            member(&first),
            None,
        ))
        .await;
    assert_eq!(reused.outcome, Outcome::GrantInvalid);
    assert_eq!(reused.error_code.as_deref(), Some("invalid_grant"));
    assert!(reused.rotated_refresh_token.is_none());

    // The new one works, and rotates again, on the calendar too.
    let calendar = connector
        .import(&job(
            "megan@fabrikam.example",
            Channel::Calendar,
            member(&second),
            None,
        ))
        .await;
    assert_success(&calendar);
    assert_eq!(calendar.calendar_items.len(), 3);
    let third = calendar
        .rotated_refresh_token
        .clone()
        .expect("rotated again")
        .0;
    assert_ne!(third.expose_secret(), second.expose_secret());

    // A refresh that succeeded is never lost, even when Graph then refuses the attempt:
    // the rotated token comes back with the failure, to be persisted before anything else.
    env.fault(
        "fabrikam",
        Some("megan@fabrikam.example"),
        "mailbox_not_enabled",
        json!({ "times": 1 }),
    )
    .await;
    let failed = connector
        .import(&job(
            "megan@fabrikam.example",
            Channel::Email,
            member(&third),
            None,
        ))
        .await;
    assert_eq!(failed.outcome, Outcome::MailboxUnavailable);
    let fourth = failed
        .rotated_refresh_token
        .clone()
        .expect("rotated token kept on failure")
        .0;
    let after = connector
        .import(&job(
            "megan@fabrikam.example",
            Channel::Email,
            member(&fourth),
            None,
        ))
        .await;
    assert_success(&after);

    // The connect flow refuses a wrong PKCE verifier (AADSTS501481).
    let refused = connector
        .exchange_code(
            &fabrikam_client(),
            "0.sim-unknown",
            REDIRECT,
            &SecretString::from("x"),
        )
        .await
        .expect_err("unknown code");
    assert_eq!(refused.outcome(), Some(Outcome::GrantInvalid));
    env.sim.shutdown().await;
}

/// Records rotated refresh tokens, as the store would.
#[derive(Default)]
struct Saved(Mutex<Vec<SecretString>>);

impl RefreshTokenSink for Saved {
    fn save<'a>(
        &'a self,
        member_id: &'a str,
        token: &'a RotatedToken,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>> {
        Box::pin(async move {
            assert_eq!(member_id, "member");
            self.0.lock().expect("saved").push(token.0.clone());
            Ok(())
        })
    }
}

/// The "a crash right after a refresh does not lose the new token": the attempt is
/// dropped mid-flight (Graph held for 5 s by the sim, the attempt abandoned after 300 ms),
/// yet the rotated token was already saved, and it is the one that works next.
#[tokio::test]
async fn a_rotated_token_survives_a_crash_right_after_the_refresh() {
    let env = Env::start().await;
    let saved = Arc::new(Saved::default());
    let connector = MicrosoftConnector::with_refresh_token_sink(env.config(), saved.clone())
        .expect("connector");
    let first = env.connect(&connector, "megan@fabrikam.example").await;
    env.fault(
        "fabrikam",
        Some("megan@fabrikam.example"),
        "latency",
        json!({ "latency_ms": 5000, "times": 1 }),
    )
    .await;
    let crashed = tokio::time::timeout(
        Duration::from_millis(300),
        connector.import(&job(
            "megan@fabrikam.example",
            Channel::Email,
            member(&first),
            None,
        )),
    )
    .await;
    assert!(crashed.is_err(), "the attempt never finished");
    let rotated = saved
        .0
        .lock()
        .expect("saved")
        .last()
        .cloned()
        .expect("saved before any Graph call");
    assert_ne!(rotated.expose_secret(), first.expose_secret());

    // The tenant refuses the old token; the saved one carries on.
    let old = connector
        .import(&job(
            "megan@fabrikam.example",
            Channel::Email,
            member(&first),
            None,
        ))
        .await;
    assert_eq!(old.outcome, Outcome::GrantInvalid);
    let next = connector
        .import(&job(
            "megan@fabrikam.example",
            Channel::Email,
            member(&rotated),
            None,
        ))
        .await;
    assert_success(&next);
    assert_eq!(
        saved
            .0
            .lock()
            .expect("saved")
            .last()
            .map(|t| t.expose_secret().to_owned()),
        next.rotated_refresh_token
            .map(|t| t.0.expose_secret().to_owned()),
        "every rotation is saved and returned"
    );
    env.sim.shutdown().await;
}

/// PROVIDERS.md: "Graph 403 ErrorAccessDenied and the access token's roles claim lacks the
/// needed permission → not_authorized"; "ErrorAccessDenied while the token has the
/// permission; any 403 whose message holds AccessPolicy/[RAOP]/… → access_denied"
/// (microsoft.md §2.2, §6).
#[tokio::test]
async fn missing_roles_versus_access_policy() {
    let env = Env::start().await;
    let connector = env.connector(|_| {});

    // Admin consent never granted the mail role: the token has no `roles`.
    let attempt = connector
        .import(&job(
            "nobody@noroles.example",
            Channel::Email,
            noroles_app(),
            None,
        ))
        .await;
    assert_eq!(attempt.outcome, Outcome::NotAuthorized);
    assert_eq!(attempt.http_status, Some(403));
    assert_eq!(attempt.error_code.as_deref(), Some("ErrorAccessDenied"));
    assert!(attempt.request_id.is_some());

    // Same body, but the token carries Mail.Read: this mailbox is scoped out.
    env.fault(
        "contoso",
        Some("row@contoso.example"),
        "access_denied",
        json!({ "times": 1 }),
    )
    .await;
    let attempt = connector
        .import(&job(
            "row@contoso.example",
            Channel::Email,
            contoso_app(),
            None,
        ))
        .await;
    assert_eq!(attempt.outcome, Outcome::AccessDenied);

    // Exchange application access policy, current text (no innerError).
    env.fault(
        "contoso",
        Some("row@contoso.example"),
        "application_access_policy",
        json!({ "times": 1 }),
    )
    .await;
    let attempt = connector
        .import(&job(
            "row@contoso.example",
            Channel::Calendar,
            contoso_app(),
            None,
        ))
        .await;
    assert_eq!(attempt.outcome, Outcome::AccessDenied);
    let message = attempt.error_message.as_deref().unwrap_or("");
    assert!(message.contains("[RAOP]"), "{message}");
    env.sim.shutdown().await;
}

/// PROVIDERS.md: "Graph 404 MailboxNotEnabledForRESTAPI … → mailbox_unavailable" for an
/// unlicensed member and a guest (microsoft.md §2.2, §8: python-o365#438, contrib#405).
#[tokio::test]
async fn members_without_a_mailbox() {
    let env = Env::start().await;
    let connector = env.connector(|_| {});
    for user in [
        "nolicence@contoso.example",
        "vendor@partner.example",
        "nobody-here@contoso.example",
    ] {
        for channel in [Channel::Email, Channel::Calendar] {
            let attempt = connector
                .import(&job(user, channel, contoso_app(), None))
                .await;
            assert_eq!(
                attempt.outcome,
                Outcome::MailboxUnavailable,
                "{user} {channel}"
            );
            assert_eq!(attempt.http_status, Some(404));
            assert!(attempt.next_cursor.is_none());
        }
    }
    env.sim.shutdown().await;
}

/// Company-wide discovery: `/users` with `$select`, guests and disabled accounts flagged;
/// PROVIDERS.md "Graph 403 Authorization_RequestDenied on /users → not_authorized".
#[tokio::test]
async fn users_discovery_flags_guests_and_disabled_accounts() {
    let env = Env::start().await;
    let connector = env.connector(|c| c.max_page_size = 3);
    let (Auth::MicrosoftApp(credential), _) = contoso_app() else {
        unreachable!("an app credential")
    };
    let users = connector
        .list_users(&credential, Uuid::new_v4())
        .await
        .expect("users");
    assert_eq!(users.len(), 9);
    let find = |upn: &str| {
        users
            .iter()
            .find(|u| u.user_principal_name.starts_with(upn))
            .expect(upn)
    };
    assert!(find("alan@").importable());
    assert!(find("vendor_partner.example#EXT#").guest);
    assert!(find("suspended@").disabled);
    assert!(!find("suspended@").importable());
    assert_eq!(users.iter().filter(|u| u.importable()).count(), 7);

    env.fault(
        "contoso",
        None,
        "authorization_request_denied",
        json!({ "times": 1 }),
    )
    .await;
    let refused = connector
        .list_users(&credential, Uuid::new_v4())
        .await
        .expect_err("refused");
    assert_eq!(refused.outcome(), Some(Outcome::NotAuthorized));

    let (Auth::MicrosoftApp(noroles), _) = noroles_app() else {
        unreachable!("an app credential")
    };
    let refused = connector
        .list_users(&noroles, Uuid::new_v4())
        .await
        .expect_err("no role");
    assert_eq!(refused.outcome(), Some(Outcome::NotAuthorized));
    env.sim.shutdown().await;
}

// ---- logs -----------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

/// Every log line of every test in this binary, at trace level for every crate. Installed
/// process-wide before any test logs (a per-test scoped subscriber misses callsites other
/// test threads registered first).
static LOGS: std::sync::LazyLock<Captured> = std::sync::LazyLock::new(|| {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
    captured
});

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of app-only and user-by-user imports (trace level, every crate): no
/// client secret, refresh token or access token (JWTs start `eyJ`) appears; each Graph
/// call is logged with its status and request id, and the sim echoes our attempt id as
/// `client-request-id`.
#[tokio::test]
async fn secrets_stay_out_of_logs_and_calls_carry_the_attempt_id() {
    let env = Env::start().await;

    let connector = env.connector(|_| {});
    let refresh = env.connect(&connector, "megan@fabrikam.example").await;
    let app_job = job("alan@contoso.example", Channel::Email, contoso_app(), None);
    let app = connector.import(&app_job).await;
    assert_success(&app);
    let member_job = job(
        "megan@fabrikam.example",
        Channel::Calendar,
        member(&refresh),
        None,
    );
    let user = connector.import(&member_job).await;
    assert_success(&user);
    let rotated = user.rotated_refresh_token.clone().expect("rotated").0;
    env.fault(
        "contoso",
        None,
        "invalid_client_secret",
        json!({ "times": 1 }),
    )
    .await;
    let fresh = env.connector(|_| {});
    let refused = fresh
        .import(&job(
            "alan@contoso.example",
            Channel::Email,
            contoso_app(),
            None,
        ))
        .await;
    assert_eq!(refused.outcome, Outcome::CredentialRejected);

    let logs = String::from_utf8(LOGS.0.lock().expect("log buffer").clone()).expect("utf-8");
    for secret in [
        CONTOSO_SECRET,
        FABRIKAM_SECRET,
        refresh.expose_secret(),
        rotated.expose_secret(),
        "eyJ",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
    for shown in [
        format!("{app:?}"),
        format!("{user:?}"),
        format!("{app_job:?}"),
        format!("{member_job:?}"),
        format!("{connector:?}"),
    ] {
        for secret in [
            CONTOSO_SECRET,
            FABRIKAM_SECRET,
            refresh.expose_secret(),
            rotated.expose_secret(),
        ] {
            assert!(!shown.contains(secret), "a secret in Debug output");
        }
    }
    assert!(
        logs.contains("graph call") && logs.contains("http_status=200"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("client_request_id=\"{}\"", app_job.attempt_id)),
        "our attempt id was echoed: {logs}"
    );
    assert!(logs.contains(&format!("attempt_id={}", member_job.attempt_id)));
    assert!(logs.contains("provider=\"microsoft_365\""));
    assert!(logs.contains("error_code=\"invalid_client\""), "{logs}");
    env.sim.shutdown().await;
}

// ---- calendar -------------------------------------------------------------------------

#[tokio::test]
async fn app_only_calendar_full_pass_then_incremental() {
    let env = Env::start().await;
    let connector = env.connector(|c| c.max_page_size = 4);
    let graph_base = env.sim.endpoints().graph_base.clone();
    let user = "alan@contoso.example";

    let first = connector
        .import(&job(user, Channel::Calendar, contoso_app(), None))
        .await;
    assert_success(&first);
    assert_eq!(first.calendar_items.len(), 6);
    let ids: Vec<String> = first
        .calendar_items
        .iter()
        .map(|i| i.provider_id.clone())
        .collect();
    assert!(unique(&ids));
    for item in &first.calendar_items {
        assert!(!item.cancelled);
        assert!(item.subject.is_some());
        assert_eq!(item.organizer.as_deref(), Some(user));
        let (Some(start), Some(end)) = (item.starts_at, item.ends_at) else {
            panic!("event times are read: {item:?}")
        };
        assert!(start < end);
    }
    let cursor = first.next_cursor.clone().expect("cursor");
    assert!(
        cursor.starts_with(&graph_base) && cursor.contains("$deltatoken="),
        "{cursor}"
    );
    assert_eq!(first.requests, 1 + 2);

    // Two new events and one cancellation, through the control endpoint.
    let cancelled = ids[0].clone();
    let changed = env
        .post(
            "events",
            json!({ "tenant": "contoso", "user": user, "add": 2, "remove": [cancelled] }),
        )
        .await;
    let added = added_ids(&changed, "graph_id");
    let incremental = connector
        .import(&job(user, Channel::Calendar, contoso_app(), Some(&cursor)))
        .await;
    assert_success(&incremental);
    assert_eq!(incremental.calendar_items.len(), 3);
    for item in &incremental.calendar_items {
        if item.provider_id == cancelled {
            assert!(item.cancelled, "@removed → cancelled: true");
        } else {
            assert!(added.contains(&item.provider_id));
            assert!(!item.cancelled);
        }
    }
    let cursor = incremental.next_cursor.expect("cursor");

    // Nothing new: success with no items.
    let quiet = connector
        .import(&job(user, Channel::Calendar, contoso_app(), Some(&cursor)))
        .await;
    assert_success(&quiet);
    assert!(quiet.calendar_items.is_empty());
    env.sim.shutdown().await;
}

// ---- throttling and concurrency -------------------------------------------------------

/// PROVIDERS.md: "429 … Graph TooManyRequests/ApplicationThrottled → rate_limited";
/// "Retry-After may be an integer, a fraction (2.128) or an HTTP date; honour it".
#[tokio::test]
async fn throttling_records_retry_after_in_every_form() {
    let env = Env::start().await;
    let connector = env.connector(|_| {});
    let user = "row@contoso.example";
    let cases: [(&str, Value, Duration, Duration); 3] = [
        (
            "rate_limited",
            json!(7),
            Duration::from_secs(7),
            Duration::from_secs(7),
        ),
        (
            "application_throttled",
            json!(2.128),
            Duration::from_millis(2128),
            Duration::from_millis(2128),
        ),
        (
            "rate_limited",
            json!("date+30"),
            Duration::from_secs(25),
            Duration::from_secs(31),
        ),
    ];
    for (fault, retry_after, low, high) in cases {
        env.fault(
            "contoso",
            Some(user),
            fault,
            json!({ "times": 1, "retry_after": retry_after }),
        )
        .await;
        let attempt = connector
            .import(&job(user, Channel::Email, contoso_app(), None))
            .await;
        assert_eq!(
            attempt.outcome,
            Outcome::RateLimited,
            "{fault} {retry_after}"
        );
        assert_eq!(attempt.http_status, Some(429));
        let wait = attempt.retry_after.expect("Retry-After recorded");
        assert!(low <= wait && wait <= high, "{retry_after}: {wait:?}");
        assert!(attempt.request_id.is_some());
        assert!(attempt.next_cursor.is_none());
    }
    env.sim.shutdown().await;
}

/// A short Retry-After is waited out inside the attempt, at most `throttle_retries` times;
/// a long one ends the attempt at once with the wait recorded.
#[tokio::test]
async fn throttling_waits_are_short_and_bounded() {
    let env = Env::start().await;
    let connector = env.connector(|c| {
        c.throttle_retries = 2;
        c.max_retry_wait = Duration::from_secs(1);
    });
    let user = "row@contoso.example";

    env.fault(
        "contoso",
        Some(user),
        "application_throttled",
        json!({ "times": 2, "retry_after": 0.2 }),
    )
    .await;
    let started = std::time::Instant::now();
    let attempt = connector
        .import(&job(user, Channel::Email, contoso_app(), None))
        .await;
    assert_success(&attempt);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "both waits honoured"
    );
    assert_eq!(
        attempt.requests,
        1 + 3,
        "a token, then one call and two retries"
    );

    env.clear().await;
    env.fault(
        "contoso",
        Some(user),
        "rate_limited",
        json!({ "retry_after": 0.1 }),
    )
    .await;
    let attempt = connector
        .import(&job(user, Channel::Email, contoso_app(), None))
        .await;
    assert_eq!(attempt.outcome, Outcome::RateLimited);
    assert_eq!(
        attempt.requests, 3,
        "cached token; one call and two retries, never more"
    );

    env.clear().await;
    env.fault(
        "contoso",
        Some(user),
        "rate_limited",
        json!({ "retry_after": 5 }),
    )
    .await;
    let started = std::time::Instant::now();
    let attempt = connector
        .import(&job(user, Channel::Email, contoso_app(), None))
        .await;
    assert_eq!(attempt.outcome, Outcome::RateLimited);
    assert_eq!(
        attempt.requests, 1,
        "a wait over the cap is left to the scheduler"
    );
    assert_eq!(attempt.retry_after, Some(Duration::from_secs(5)));
    assert!(started.elapsed() < Duration::from_secs(2));
    env.sim.shutdown().await;
}

/// microsoft.md §4: "4 concurrent requests per app + mailbox". Twelve imports of one
/// mailbox at once, each call held 100 ms by the sim: never more than four in flight, and
/// the limit is reached.
#[tokio::test]
async fn at_most_four_requests_in_flight_per_mailbox() {
    let env = Env::start().await;
    let connector = env.connector(|c| c.max_page_size = 2);
    let user = "busy@contoso.example";
    env.fault(
        "contoso",
        Some(user),
        "latency",
        json!({ "latency_ms": 100 }),
    )
    .await;
    let mut tasks = Vec::new();
    for index in 0..12 {
        let connector = connector.clone();
        let channel = if index % 2 == 0 {
            Channel::Email
        } else {
            Channel::Calendar
        };
        let job = job(user, channel, contoso_app(), None);
        tasks.push(tokio::spawn(async move { connector.import(&job).await }));
    }
    for task in tasks {
        let attempt = task.await.expect("import task");
        assert_success(&attempt);
    }
    assert_eq!(connector.peak_requests_in_flight(user), 4);
    assert_eq!(connector.peak_requests_in_flight("alan@contoso.example"), 0);
    env.sim.shutdown().await;
}

/// The app token is cached per tenant with one request in flight: eight imports at once
/// across two mailboxes cost one token call.
#[tokio::test]
async fn one_app_token_request_per_tenant() {
    let env = Env::start().await;
    let connector = env.connector(|_| {});
    env.post("stats/reset", json!({})).await;
    let mut tasks = Vec::new();
    for index in 0..8 {
        let connector = connector.clone();
        let user = if index % 2 == 0 {
            "alan@contoso.example"
        } else {
            "grace@contoso.example"
        };
        let job = job(user, Channel::Email, contoso_app(), None);
        tasks.push(tokio::spawn(async move { connector.import(&job).await }));
    }
    for task in tasks {
        assert_success(&task.await.expect("import task"));
    }
    let stats = env.stats().await;
    assert_eq!(stats["by_endpoint"]["token"], 1, "{stats}");

    // An expired token (the sim's clock) is replaced after one 401.
    env.post("expire", json!({ "tenant": "contoso", "what": "tokens" }))
        .await;
    let attempt = connector
        .import(&job(
            "alan@contoso.example",
            Channel::Email,
            contoso_app(),
            None,
        ))
        .await;
    assert_success(&attempt);
    assert_eq!(attempt.requests, 3, "401, a new token, the page again");
    env.sim.shutdown().await;
}

// ---- one row per Microsoft fault -------------------------------------------------------

/// Where a row's fault is set and who runs the import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// Tenant-wide fault, app-only import of row@contoso (token faults: no user yet).
    App,
    /// Fault on row@contoso, app-only import.
    AppMailbox,
    /// Fault on row@fabrikam, user-by-user import (its refresh grant names the user).
    Member,
}

struct Row {
    fault: &'static str,
    extra: Value,
    who: Who,
    channel: Channel,
    expected: Outcome,
    /// The PROVIDERS.md answer → outcome row, and the providers/microsoft.md row.
    cites: &'static str,
}

fn row(fault: &'static str, who: Who, expected: Outcome, cites: &'static str) -> Row {
    Row {
        fault,
        extra: json!({}),
        who,
        channel: Channel::Email,
        expected,
        cites,
    }
}

#[tokio::test]
async fn every_microsoft_fault_maps_to_its_outcome() {
    use Outcome::*;
    use Who::*;
    let env = Env::start().await;
    let with = |mut r: Row, extra: Value| {
        r.extra = extra;
        r
    };
    let calendar = |mut r: Row| {
        r.channel = Channel::Calendar;
        r
    };
    let rows = vec![
        // Entra token endpoint, providers/microsoft.md §1.2.
        row(
            "consent_required",
            App,
            NotAuthorized,
            "Entra invalid_grant + suberror consent_required; §1.2 AADSTS65001",
        ),
        row(
            "consent_required",
            Member,
            NotAuthorized,
            "Entra invalid_grant + suberror consent_required on refresh; §1.2 AADSTS65001 (python-o365#323)",
        ),
        row(
            "admin_consent_required",
            App,
            NotAuthorized,
            "Entra AADSTS90094; §1.2 admin consent required",
        ),
        row(
            "app_not_in_tenant",
            App,
            NotAuthorized,
            "AADSTS700016 (app not in tenant); §1.2",
        ),
        row(
            "conditional_access",
            Member,
            AccessDenied,
            "Entra AADSTS53003 conditional access; §1.2",
        ),
        row(
            "security_policy",
            App,
            AccessDenied,
            "Entra AADSTS530032; §1.2 blocked by security policy",
        ),
        row(
            "assignment_required",
            Member,
            AccessDenied,
            "Entra AADSTS50105 assignment required; §1.2",
        ),
        row(
            "app_disabled",
            App,
            AccessDenied,
            "Entra AADSTS7000112 app disabled; §1.2",
        ),
        row(
            "refresh_token_expired",
            Member,
            GrantInvalid,
            "refresh invalid_grant AADSTS700082; §1.2 inactivity (azure-cli#14244)",
        ),
        row(
            "grant_expired_or_revoked",
            Member,
            GrantInvalid,
            "refresh invalid_grant AADSTS70008; §1.2 expired or revoked",
        ),
        row(
            "fresh_token_needed",
            Member,
            GrantInvalid,
            "refresh invalid_grant AADSTS50173 (revoked: password change); §1.2",
        ),
        row(
            "invalid_refresh_token",
            Member,
            GrantInvalid,
            "refresh invalid_grant AADSTS70000; §1.2",
        ),
        row(
            "mfa_required",
            Member,
            GrantInvalid,
            "refresh invalid_grant AADSTS50076; §1.2 MFA required",
        ),
        // Issue 21 §4/§5: more of the Entra catalogue on the member's refresh.
        row(
            "password_expired",
            Member,
            GrantInvalid,
            "AADSTS50055 password expired (user_password_expired); Entra error codes reference",
        ),
        row(
            "sign_in_frequency",
            Member,
            GrantInvalid,
            "AADSTS70043 Conditional Access sign-in frequency; Entra error codes reference",
        ),
        row(
            "device_not_compliant",
            Member,
            AccessDenied,
            "AADSTS53000 device not compliant (an admin's Conditional Access policy); Entra error codes reference",
        ),
        row(
            "mfa_registration_required",
            Member,
            GrantInvalid,
            "refresh invalid_grant AADSTS50079; §1.2 MFA registration",
        ),
        row(
            "user_disabled",
            Member,
            MailboxUnavailable,
            "Entra AADSTS50057 user disabled; §1.2",
        ),
        row(
            "user_locked",
            Member,
            MailboxUnavailable,
            "Entra AADSTS50053 account locked; §1.2",
        ),
        row(
            "user_not_found",
            Member,
            MailboxUnavailable,
            "Entra AADSTS50034 user not in tenant; §1.2",
        ),
        row(
            "invalid_client_secret",
            App,
            CredentialRejected,
            "invalid_client AADSTS7000215 (wrong secret); §1.2 (sap-automation#418)",
        ),
        row(
            "client_secret_expired",
            App,
            CredentialRejected,
            "invalid_client AADSTS7000222 (secret expired); §1.2",
        ),
        row(
            "invalid_client",
            App,
            CredentialRejected,
            "invalid_client AADSTS70002; §1.2",
        ),
        row(
            "invalid_client",
            Member,
            CredentialRejected,
            "invalid_client (any provider) on the member's refresh; §1.2",
        ),
        row(
            "invalid_tenant",
            App,
            CredentialRejected,
            "AADSTS90002 InvalidTenantName: the company's tenant id names no tenant (issue 21 §4, Entra error codes reference)",
        ),
        with(
            row(
                "tenant_throttled",
                App,
                RateLimited,
                "Entra AADSTS90055 tenant throttled; §1.2",
            ),
            json!({ "retry_after": 3 }),
        ),
        row(
            "loop_detected",
            App,
            RateLimited,
            "Entra AADSTS50196 loop detected; §1.2",
        ),
        row(
            "temporarily_unavailable",
            App,
            ProviderError,
            "temporarily_unavailable (AADSTS50033, 503); §1.2 transient",
        ),
        // Graph, providers/microsoft.md §2.2 and §6.
        row(
            "access_denied",
            AppMailbox,
            AccessDenied,
            "Graph 403 ErrorAccessDenied while the token has Mail.Read; §6 RBAC for Applications",
        ),
        row(
            "access_denied",
            Member,
            AccessDenied,
            "Graph 403 ErrorAccessDenied while the token's scp has Mail.Read; §2.2",
        ),
        row(
            "application_access_policy",
            AppMailbox,
            AccessDenied,
            "403 message with [RAOP]/AccessPolicy; §2.2 application access policy",
        ),
        row(
            "application_access_policy_documented",
            AppMailbox,
            AccessDenied,
            "403 'Access to OData is disabled.'; §6 documented denial",
        ),
        calendar(row(
            "application_access_policy",
            AppMailbox,
            AccessDenied,
            "403 [RAOP] on calendarView; §6",
        )),
        row(
            "mailbox_not_enabled",
            AppMailbox,
            MailboxUnavailable,
            "Graph 404 MailboxNotEnabledForRESTAPI; §2.2 (E5SubBot#39)",
        ),
        calendar(row(
            "mailbox_not_enabled",
            AppMailbox,
            MailboxUnavailable,
            "Graph 404 MailboxNotEnabledForRESTAPI on calendarView; §2.2",
        )),
        row(
            "mailbox_not_enabled_legacy",
            AppMailbox,
            MailboxUnavailable,
            "Graph 404 MailboxNotEnabledForRESTAPI, older text; §2.2 (python-o365#438)",
        ),
        row(
            "mailbox_not_supported",
            AppMailbox,
            MailboxUnavailable,
            "Graph 404 MailboxNotSupportedForRESTAPI; §2.2",
        ),
        row(
            "invalid_user",
            AppMailbox,
            MailboxUnavailable,
            "Graph 404 ErrorInvalidUser; §2.2",
        ),
        row(
            "non_existent_mailbox",
            AppMailbox,
            MailboxUnavailable,
            "Graph 404 ErrorNonExistentMailbox; §2.2",
        ),
        with(
            row(
                "resource_not_found",
                AppMailbox,
                MailboxUnavailable,
                "Graph 404 Request_ResourceNotFound; §2.2 (corso)",
            ),
            json!({ "endpoint": "graph_mail" }),
        ),
        with(
            row(
                "rate_limited",
                AppMailbox,
                RateLimited,
                "429 TooManyRequests; §2.2 throttling",
            ),
            json!({ "retry_after": 1 }),
        ),
        with(
            row(
                "application_throttled",
                AppMailbox,
                RateLimited,
                "Graph ApplicationThrottled MailboxConcurrency; §2.2 (terraform-provider-outlook#21)",
            ),
            json!({ "retry_after": 1 }),
        ),
        with(
            row(
                "activity_limit_reached",
                AppMailbox,
                RateLimited,
                "Graph 429 activityLimitReached; Graph errors reference",
            ),
            json!({ "retry_after": 1 }),
        ),
        row(
            "access_denied_documented",
            AppMailbox,
            AccessDenied,
            "Graph 403 accessDenied (documented spelling) while the token holds the role; Graph errors reference",
        ),
        calendar(with(
            row(
                "rate_limited",
                AppMailbox,
                RateLimited,
                "429 on calendarView; §2.2",
            ),
            json!({ "retry_after": 2.128 }),
        )),
        row(
            "server_error",
            AppMailbox,
            ProviderError,
            "5xx generalException; §2.2 unspecified server error",
        ),
        row(
            "service_unavailable",
            AppMailbox,
            ProviderError,
            "503 ServiceUnavailable; §2.2 (msgraph-sdk-dotnet#1568)",
        ),
        row(
            "token_expired",
            AppMailbox,
            ProviderError,
            "401 InvalidAuthenticationToken after a new app token: not listed; §2.2 'if still failing TECH'",
        ),
        row(
            "invalid_authentication_token",
            AppMailbox,
            ProviderError,
            "401 'Access token validation failure.' after renewal; §2.2",
        ),
        row(
            "token_expired",
            Member,
            GrantInvalid,
            "user token still 401 at the API after one refresh; §2.2",
        ),
        row(
            "truncated_json",
            AppMailbox,
            ProviderError,
            "a 2xx body that does not parse",
        ),
        calendar(row(
            "truncated_json",
            AppMailbox,
            ProviderError,
            "a 2xx body that does not parse (calendar)",
        )),
        with(
            row(
                "oversized_body",
                AppMailbox,
                ProviderError,
                "a body over the size limit",
            ),
            json!({ "bytes": 2_000_000 }),
        ),
        row(
            "connection_reset",
            AppMailbox,
            NetworkError,
            "connection reset mid-body",
        ),
        calendar(row(
            "connection_reset",
            AppMailbox,
            NetworkError,
            "connection reset mid-body (calendar)",
        )),
        with(
            row(
                "latency",
                AppMailbox,
                Success,
                "slow but fine: 2xx pages to the end",
            ),
            json!({ "latency_ms": 50 }),
        ),
        row(
            "cursor_expired",
            AppMailbox,
            Success,
            "cursor faults fire only on incremental calls: a first pass succeeds",
        ),
    ];

    let mut failures = Vec::new();
    for row in &rows {
        env.clear().await;
        let connector = env.connector(|_| {});
        let (tenant, user, address, auth) = env.row_auth(&connector, row.who).await;
        env.fault(tenant, user, row.fault, row.extra.clone()).await;
        let job = job(address, row.channel, auth, None);
        let attempt = connector.import(&job).await;
        if attempt.outcome != row.expected {
            failures.push(format!(
                "{} ({:?}, {}): got {} ({:?} {:?} {:?}), expected {} — {}",
                row.fault,
                row.who,
                row.channel,
                attempt.outcome,
                attempt.http_status,
                attempt.error_code,
                attempt.error_message,
                row.expected,
                row.cites
            ));
            continue;
        }
        if attempt.outcome == Success {
            assert!(attempt.next_cursor.is_some(), "{}", row.fault);
            continue;
        }
        assert!(
            attempt.next_cursor.is_none(),
            "{}: a failure keeps the cursor",
            row.fault
        );
        // Every answered failure records its status and, for on-call, our attempt id
        // (Graph: client-request-id; Entra: the correlation id echoing it).
        if attempt.outcome != NetworkError
            && row.fault != "truncated_json"
            && row.fault != "oversized_body"
        {
            assert!(attempt.http_status.is_some(), "{}", row.fault);
            assert!(
                attempt.error_code.is_some(),
                "{}: error code recorded",
                row.fault
            );
            assert!(
                attempt.request_id.is_some(),
                "{}: request id recorded",
                row.fault
            );
            let message = attempt.error_message.as_deref().unwrap_or("");
            assert!(
                message.contains(&job.attempt_id.to_string()),
                "{}: {message}",
                row.fault
            );
        }
        if row.extra.get("retry_after").is_some() {
            assert!(
                attempt.retry_after.is_some(),
                "{}: Retry-After recorded",
                row.fault
            );
        }
    }
    assert_no_failures("rows that map wrongly", &failures);
    env.sim.shutdown().await;
}

/// Issue 21 §4: every entry of the sim's copy of Microsoft's published catalogues (Entra's
/// AADSTS codes, Graph's error codes) goes through the real connector over HTTP and comes
/// out as its mapping row says; every row of the mapping tables has an entry in the sim,
/// and every entry a row (none is left to the fallback's guess).
#[tokio::test]
async fn every_catalogue_entry_maps_through_the_connector() {
    use Outcome::*;
    use Who::*;
    use datacap_microsoft::errors::{ENTRA_CODES, GRAPH_CODES, GraphRule, entra_code, graph_code};
    let env = Env::start().await;
    let names = datacap_sim::catalogue_fault_names();
    let mut failures = Vec::new();
    for code in ENTRA_CODES {
        if !names.contains(&format!("aadsts:{}", code.code)) {
            failures.push(format!(
                "AADSTS{} has a mapping row but no sim entry",
                code.code
            ));
        }
    }
    for code in GRAPH_CODES {
        if !names.contains(&format!("graph:{}", code.code)) {
            failures.push(format!(
                "Graph {} has a mapping row but no sim entry",
                code.code
            ));
        }
    }
    let mut tried = (0, 0);
    for name in &names {
        let (who, expected, cites) = if let Some(code) = name.strip_prefix("aadsts:") {
            let Some(row) = code.parse().ok().and_then(entra_code) else {
                failures.push(format!("{name}: no mapping row"));
                continue;
            };
            tried.0 += 1;
            // A member's grant is refused on the member's refresh; the rest on the app's
            // client-credentials request.
            let who = if row.outcome == GrantInvalid {
                Member
            } else {
                App
            };
            (who, row.outcome, row.source)
        } else if let Some(code) = name.strip_prefix("graph:") {
            let Some(row) = graph_code(code) else {
                failures.push(format!("{name}: no mapping row"));
                continue;
            };
            tried.1 += 1;
            let expected = match row.rule {
                // cursor codes answer only incremental calls: a first pass succeeds
                GraphRule::Resync => Success,
                GraphRule::RateLimited => RateLimited,
                GraphRule::NotAuthorized => NotAuthorized,
                // contoso's app token holds Mail.Read: the mailbox is refused by policy
                GraphRule::PermissionOrPolicy | GraphRule::AccessDenied => AccessDenied,
                GraphRule::Mailbox => MailboxUnavailable,
                GraphRule::ProviderError => ProviderError,
            };
            (AppMailbox, expected, row.source)
        } else {
            continue;
        };
        env.clear().await;
        let connector = env.connector(|_| {});
        let (tenant, user, address, auth) = env.row_auth(&connector, who).await;
        env.fault(tenant, user, name, json!({})).await;
        let job = job(address, Channel::Email, auth, None);
        let attempt = connector.import(&job).await;
        if attempt.outcome != expected {
            failures.push(format!(
                "{name} ({who:?}): got {} ({:?} {:?} {:?}), expected {expected} — {cites}",
                attempt.outcome, attempt.http_status, attempt.error_code, attempt.error_message
            ));
        } else if expected != Success && attempt.http_status.is_none() {
            failures.push(format!("{name}: no HTTP status recorded"));
        }
    }
    assert_no_failures("catalogue entries that map wrongly", &failures);
    assert_eq!(tried, (ENTRA_CODES.len(), GRAPH_CODES.len()));
    env.sim.shutdown().await;
}

/// Issue 7: every request (the token request, each page, each retry after a throttle)
/// awaits the job's gate, and a 429's Retry-After is reported to it.
#[tokio::test]
async fn every_request_awaits_the_gate_and_reports_retry_after() {
    let env = Env::start().await;
    let connector = env.connector(|c| {
        c.max_page_size = 2;
        c.throttle_retries = 1;
        c.max_retry_wait = Duration::from_secs(1);
    });
    let user = "alan@contoso.example";
    env.fault(
        "contoso",
        Some(user),
        "application_throttled",
        json!({ "times": 1, "retry_after": 0.2 }),
    )
    .await;
    env.post("stats/reset", json!({})).await;
    let gate = Arc::new(CountingGate::default());
    let mut import = job(user, Channel::Email, contoso_app(), None);
    import.gate = datacap_connector::Gate::new(gate.clone());
    let attempt = connector.import(&import).await;
    assert_success(&attempt);
    let stats = env.stats().await;
    let served = stats["requests_total"].as_u64().expect("requests_total");
    let through_gate = gate.requests();
    assert!(
        attempt.requests >= 8,
        "a token, six pages of two, one retry: {}",
        attempt.requests
    );
    assert_eq!(through_gate, served, "{stats}");
    assert_eq!(through_gate, u64::from(attempt.requests));
    // "Application is over its MailboxConcurrency limit.": the mailbox's, no more.
    assert_eq!(
        *gate.pauses.lock().expect("pauses"),
        [(
            Duration::from_millis(200),
            datacap_connector::ThrottleScope::Mailbox
        )]
    );

    // A member's grant: the token endpoint goes through the gate too.
    let member_connector = env.connector(|c| c.max_page_size = 2);
    let refresh_token = env
        .connect(&member_connector, "megan@fabrikam.example")
        .await;
    env.post("stats/reset", json!({})).await;
    let gate = Arc::new(CountingGate::default());
    let mut import = job(
        "megan@fabrikam.example",
        Channel::Calendar,
        member(&refresh_token),
        None,
    );
    import.gate = datacap_connector::Gate::new(gate.clone());
    let attempt = member_connector.import(&import).await;
    assert_success(&attempt);
    let stats = env.stats().await;
    assert_eq!(
        gate.requests(),
        stats["requests_total"].as_u64().expect("requests_total"),
        "{stats}"
    );
    assert!(stats["by_endpoint"]["token"].as_u64() >= Some(1), "{stats}");
    assert!(gate.pauses.lock().expect("pauses").is_empty());
    env.sim.shutdown().await;
}
