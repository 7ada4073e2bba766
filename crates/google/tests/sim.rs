//! The Google connector against datacap-sim over real HTTP on loopback: incremental
//! correctness, stale cursors, auth and token caching, the Directory check, one row per
//! Google fault the sim can produce, and that no secret reaches a log.
//!
//! No mocks: every test starts its own sim on port 0 and drives it through the control
//! endpoint, the way an operator would.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datacap_connector::{
    Attempt, Auth, Connector, HttpLimits, ImportJob, OAuthClient, ServiceAccountKey,
};
use datacap_core::{Channel, Outcome};
use datacap_google::{CALENDAR_SCOPE, GMAIL_SCOPE, GoogleConfig, GoogleConnector};
use datacap_sim::{Scenario, Sim, SimHandle};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use time::OffsetDateTime;

#[path = "../../connector/tests/support/sim_tests.rs"]
mod sim_tests;
use sim_tests::{CountingGate, added_ids, assert_no_failures, item_ids};

const KEY_PEM: &str =
    include_str!("../../../config/sim/keys/FAKE-TEST-ONLY-google-service-account.key.pem");
const CLIENT_ID: &str = "sim-google-client.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "sim-google-secret";
const REDIRECT: &str = "http://127.0.0.1:8080/oauth/google/callback";

fn scenario_text(token_lifetime: u64) -> String {
    include_str!("../../../tests/fixtures/google/scenario.toml")
        .replace("@TOKEN_LIFETIME@", &token_lifetime.to_string())
        .replace("@CLIENT_ID@", CLIENT_ID)
        .replace("@CLIENT_SECRET@", CLIENT_SECRET)
        .replace("@REDIRECT@", REDIRECT)
}

struct Harness {
    sim: SimHandle,
    connector: GoogleConnector,
    http: reqwest::Client,
}

fn config_for(sim: &SimHandle) -> GoogleConfig {
    let endpoints = sim.endpoints();
    GoogleConfig {
        page_size: 5,
        // Throttled answers end the attempt at once here; the retry inside an attempt has
        // its own test (`a_short_retry_after_is_waited_out_inside_the_attempt`).
        throttle_retries: 0,
        http: HttpLimits {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            max_body_bytes: 1024 * 1024,
        },
        ..GoogleConfig::default().with_endpoints(
            endpoints.google_token_url.clone(),
            endpoints.gmail_base.clone(),
            endpoints.calendar_base.clone(),
            endpoints.directory_base.clone(),
        )
    }
}

async fn start_with(token_lifetime: u64) -> Harness {
    start_scenario(&scenario_text(token_lifetime)).await
}

async fn start_scenario(text: &str) -> Harness {
    let base = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/sim"));
    let scenario = Scenario::from_toml(text, "google-tests", base).expect("scenario");
    let sim = Sim::start(scenario, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("sim starts");
    let connector = GoogleConnector::new(config_for(&sim)).expect("connector");
    datacap_connector::http::install_crypto_provider();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Harness {
        sim,
        connector,
        http,
    }
}

async fn start() -> Harness {
    start_with(3599).await
}

fn service_account(directory_admin: bool) -> Arc<ServiceAccountKey> {
    Arc::new(ServiceAccountKey {
        client_email: "datacap@datacap-sim.iam.gserviceaccount.com".to_owned(),
        private_key_pem: SecretString::from(KEY_PEM),
        private_key_id: Some("fake-test-key".to_owned()),
        directory_admin: directory_admin.then(|| "admin@acme.example".to_owned()),
    })
}

/// How a test job authenticates: the company's credentials and, user-by-user, the
/// member's refresh token.
type JobAuth = (Auth, Option<SecretString>);

fn delegation(directory_admin: bool) -> JobAuth {
    (
        Auth::GoogleServiceAccount(service_account(directory_admin)),
        None,
    )
}

fn job(member: &str, channel: Channel, auth: JobAuth, cursor: Option<String>) -> ImportJob {
    let (auth, refresh_token) = auth;
    ImportJob {
        attempt_id: uuid::Uuid::new_v4(),
        company_id: "acme".to_owned(),
        member_id: format!("m-{}", member.split('@').next().unwrap_or(member)),
        member_address: member.to_owned(),
        channel,
        auth,
        refresh_token,
        cursor,
        now: OffsetDateTime::now_utc(),
        gate: datacap_connector::Gate::open(),
    }
}

fn delegated(member: &str, channel: Channel, cursor: Option<String>) -> ImportJob {
    job(member, channel, delegation(false), cursor)
}

fn oauth_client() -> Arc<OAuthClient> {
    Arc::new(OAuthClient {
        client_id: CLIENT_ID.to_owned(),
        client_secret: SecretString::from(CLIENT_SECRET),
        tenant: None,
    })
}

fn member_auth(refresh_token: SecretString) -> JobAuth {
    (Auth::OAuthClient(oauth_client()), Some(refresh_token))
}

impl Harness {
    async fn control(&self, path: &str, body: Value) -> Value {
        sim_tests::control(&self.http, self.sim.control_url(), path, body).await
    }

    async fn count(&self, endpoint: &str) -> u64 {
        let stats: Value = self
            .http
            .get(format!("{}/stats", self.sim.control_url()))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json");
        stats["by_endpoint"][endpoint].as_u64().unwrap_or(0)
    }

    async fn gmail_calls(&self) -> u64 {
        let mut total = 0;
        for name in [
            "gmail.profile",
            "gmail.messages.list",
            "gmail.messages.get",
            "gmail.history.list",
        ] {
            total += self.count(name).await;
        }
        total
    }

    async fn reset_stats(&self) {
        self.control("stats/reset", json!({})).await;
    }

    async fn fault(&self, user: &str, spec: Value) {
        let mut body = json!({ "tenant": "acme", "user": user });
        if let (Some(target), Some(source)) = (body.as_object_mut(), spec.as_object()) {
            for (key, value) in source {
                target.insert(key.clone(), value.clone());
            }
        }
        self.control("faults", body).await;
    }

    async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/stats", self.sim.control_url()))
            .send()
            .await
            .expect("stats call")
            .json()
            .await
            .expect("stats body")
    }

    async fn clear_faults(&self) {
        self.control("faults/clear", json!({})).await;
    }

    /// Signs `user` in through the sim's consent screen and exchanges the code.
    async fn connect_member(&self, user: &str, scopes: &[&str]) -> datacap_google::CodeGrant {
        let code = self.code_for(user, scopes).await;
        self.connector
            .exchange_code(&oauth_client(), &code, REDIRECT, None)
            .await
            .expect("code exchange")
    }

    /// Signs `user` in through the sim's consent screen: the authorization code.
    async fn code_for(&self, user: &str, scopes: &[&str]) -> String {
        let response = self
            .http
            .get(&self.sim.endpoints().google_authorize_url)
            .query(&[
                ("client_id", CLIENT_ID),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", &scopes.join(" ")),
                ("login_hint", user),
                ("state", "s1"),
            ])
            .send()
            .await
            .expect("authorize");
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("redirect with a code")
            .to_owned();
        let url = reqwest::Url::parse(&location).expect("location url");
        url.query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("code in redirect")
    }
}

#[track_caller]
fn assert_unique(ids: &[String]) {
    let set: HashSet<&String> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "duplicates in {ids:?}");
}

#[tokio::test]
async fn delegation_email_full_pass_then_incremental() {
    let h = start().await;
    let first = h
        .connector
        .import(&delegated("ada@acme.example", Channel::Email, None))
        .await;
    assert_eq!(first.outcome, Outcome::Success, "{first:?}");
    assert_eq!(first.email_items.len(), 12);
    assert_unique(&item_ids(&first, Channel::Email));
    let item = &first.email_items[0];
    assert!(item.sender.is_some() && item.subject.is_some() && item.sent_at.is_some());
    assert!(item.thread_id.is_some());
    assert_eq!(item.participants, ["ada@acme.example"]);
    // 12 messages at 5 per page: three list pages.
    assert_eq!(h.count("gmail.messages.list").await, 3);
    let cursor = first.next_cursor.clone().expect("history id saved");

    let new_ids = added_ids(
        &h.control(
            "mail",
            json!({ "tenant": "acme", "user": "ada@acme.example", "add": 3 }),
        )
        .await,
        "id",
    );
    let second = h
        .connector
        .import(&delegated(
            "ada@acme.example",
            Channel::Email,
            Some(cursor.clone()),
        ))
        .await;
    assert_eq!(second.outcome, Outcome::Success, "{second:?}");
    let second_ids: HashSet<String> = item_ids(&second, Channel::Email).into_iter().collect();
    assert_eq!(second_ids, new_ids, "exactly the new messages, none missed");
    let next = second.next_cursor.clone().expect("cursor advanced");
    assert_ne!(next, cursor);
    assert!(
        first
            .email_items
            .iter()
            .all(|i| !second_ids.contains(&i.provider_id)),
        "nothing imported twice"
    );

    let third = h
        .connector
        .import(&delegated("ada@acme.example", Channel::Email, Some(next)))
        .await;
    assert_eq!(third.outcome, Outcome::Success);
    assert!(third.email_items.is_empty());
    h.sim.shutdown().await;
}

#[tokio::test]
async fn quota_is_charged_to_each_member() {
    // PROVIDERS.md, quotas: "With delegation, pass `quotaUser` so quota is charged per
    // member." The sim counts Gmail and Calendar calls by their quotaUser.
    let h = start().await;
    h.reset_stats().await;
    for channel in [Channel::Email, Channel::Calendar] {
        let attempt = h
            .connector
            .import(&delegated("ada@acme.example", channel, None))
            .await;
        assert_eq!(attempt.outcome, Outcome::Success, "{attempt:?}");
    }
    let stats: Value = h
        .http
        .get(format!("{}/stats", h.sim.control_url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    let by_quota_user = stats["quota_users"].as_object().expect("quota_users");
    assert_eq!(
        by_quota_user.keys().collect::<Vec<_>>(),
        ["m-ada"],
        "every Gmail and Calendar call names the member: {by_quota_user:?}"
    );
    assert!(by_quota_user["m-ada"].as_u64().unwrap_or(0) >= 2);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn gmail_history_404_runs_a_full_pass_in_the_same_attempt() {
    // PROVIDERS.md: "Google Gmail history.list 404 … run a full pass in the same attempt".
    let h = start().await;
    let first = h
        .connector
        .import(&delegated("ada@acme.example", Channel::Email, None))
        .await;
    let cursor = first.next_cursor.clone().expect("cursor");
    h.control(
        "expire",
        json!({ "tenant": "acme", "user": "ada@acme.example", "what": "cursors" }),
    )
    .await;
    h.reset_stats().await;
    let again = h
        .connector
        .import(&delegated(
            "ada@acme.example",
            Channel::Email,
            Some(cursor.clone()),
        ))
        .await;
    assert_eq!(again.outcome, Outcome::Success, "{again:?}");
    assert_eq!(again.email_items.len(), 12);
    assert_eq!(h.count("gmail.history.list").await, 1);
    assert_eq!(h.count("gmail.profile").await, 1);
    assert_ne!(again.next_cursor.as_deref(), Some(cursor.as_str()));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn gmail_vanished_message_is_skipped() {
    // PROVIDERS.md: "A 404 on a single messages.get … means that item vanished: skip it".
    let h = start().await;
    let first = h
        .connector
        .import(&delegated("ada@acme.example", Channel::Email, None))
        .await;
    let cursor = first.next_cursor.clone().expect("cursor");
    let added = h
        .control(
            "mail",
            json!({ "tenant": "acme", "user": "ada@acme.example", "add": 2 }),
        )
        .await;
    let gone = added["added"][0]["id"].as_str().expect("id").to_owned();
    let kept = added["added"][1]["id"].as_str().expect("id").to_owned();
    h.control(
        "mail",
        json!({ "tenant": "acme", "user": "ada@acme.example", "remove": [gone] }),
    )
    .await;
    let second = h
        .connector
        .import(&delegated("ada@acme.example", Channel::Email, Some(cursor)))
        .await;
    assert_eq!(second.outcome, Outcome::Success, "{second:?}");
    assert_eq!(item_ids(&second, Channel::Email), [kept]);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn delegation_calendar_full_pass_incremental_and_cancelled() {
    let h = start().await;
    let first = h
        .connector
        .import(&delegated("ada@acme.example", Channel::Calendar, None))
        .await;
    assert_eq!(first.outcome, Outcome::Success, "{first:?}");
    assert_eq!(first.calendar_items.len(), 6);
    assert_unique(&item_ids(&first, Channel::Calendar));
    // 6 events at 5 per page: the sync token only after the second page.
    assert_eq!(h.count("calendar.events.list").await, 2);
    assert!(
        first
            .calendar_items
            .iter()
            .all(|e| !e.cancelled && e.starts_at.is_some())
    );
    let cursor = first.next_cursor.clone().expect("sync token");

    let cancelled_id = first.calendar_items[0].provider_id.clone();
    let added = h
        .control(
            "events",
            json!({ "tenant": "acme", "user": "ada@acme.example", "add": 2, "remove": [cancelled_id.clone()] }),
        )
        .await;
    let mut expected = added_ids(&added, "id");
    expected.insert(cancelled_id.clone());
    let second = h
        .connector
        .import(&delegated(
            "ada@acme.example",
            Channel::Calendar,
            Some(cursor.clone()),
        ))
        .await;
    assert_eq!(second.outcome, Outcome::Success, "{second:?}");
    let got: HashSet<String> = item_ids(&second, Channel::Calendar).into_iter().collect();
    assert_eq!(got, expected);
    let cancelled = second
        .calendar_items
        .iter()
        .find(|e| e.provider_id == cancelled_id)
        .expect("cancelled event reported");
    assert!(cancelled.cancelled);
    let next = second.next_cursor.clone().expect("new sync token");
    assert_ne!(next, cursor);

    let third = h
        .connector
        .import(&delegated(
            "ada@acme.example",
            Channel::Calendar,
            Some(next),
        ))
        .await;
    assert_eq!(third.outcome, Outcome::Success);
    assert!(third.calendar_items.is_empty());
    h.sim.shutdown().await;
}

#[tokio::test]
async fn calendar_410_runs_a_full_pass() {
    // PROVIDERS.md: "Calendar 410 fullSyncRequired … run a full pass in the same attempt".
    let h = start().await;
    let first = h
        .connector
        .import(&delegated("ada@acme.example", Channel::Calendar, None))
        .await;
    let cursor = first.next_cursor.clone().expect("cursor");
    h.control(
        "expire",
        json!({ "tenant": "acme", "user": "ada@acme.example", "what": "cursors" }),
    )
    .await;
    let again = h
        .connector
        .import(&delegated(
            "ada@acme.example",
            Channel::Calendar,
            Some(cursor.clone()),
        ))
        .await;
    assert_eq!(again.outcome, Outcome::Success, "{again:?}");
    assert_eq!(again.calendar_items.len(), 6);
    assert_ne!(again.next_cursor.as_deref(), Some(cursor.as_str()));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn paging_quirks_import_each_item_once() {
    // Empty pages with a next link, and pages that repeat the previous page's last item.
    let h = start().await;
    h.fault("ada@acme.example", json!({ "fault": "empty_pages" }))
        .await;
    h.fault("ada@acme.example", json!({ "fault": "duplicate_items" }))
        .await;
    let mail = h
        .connector
        .import(&delegated("ada@acme.example", Channel::Email, None))
        .await;
    assert_eq!(mail.outcome, Outcome::Success, "{mail:?}");
    assert_eq!(mail.email_items.len(), 12);
    assert_unique(&item_ids(&mail, Channel::Email));
    let calendar = h
        .connector
        .import(&delegated("ada@acme.example", Channel::Calendar, None))
        .await;
    assert_eq!(calendar.outcome, Outcome::Success, "{calendar:?}");
    assert_eq!(calendar.calendar_items.len(), 6);
    assert_unique(&item_ids(&calendar, Channel::Calendar));
    h.sim.shutdown().await;
}

#[tokio::test]
async fn member_grant_good_revoked_and_missing_scope() {
    let h = start().await;
    let grant = h
        .connect_member("ada@acme.example", &[GMAIL_SCOPE, CALENDAR_SCOPE])
        .await;
    assert!(grant.scope.contains(GMAIL_SCOPE));
    let good = h
        .connector
        .import(&job(
            "ada@acme.example",
            Channel::Email,
            member_auth(grant.refresh_token.clone()),
            None,
        ))
        .await;
    assert_eq!(good.outcome, Outcome::Success, "{good:?}");
    assert_eq!(good.email_items.len(), 12);

    // PROVIDERS.md: refresh invalid_grant "Token has been expired or revoked." → grant_invalid.
    let revoked = h
        .connector
        .import(&job(
            "ada@acme.example",
            Channel::Email,
            member_auth(SecretString::from("1//revoked-long-ago")),
            None,
        ))
        .await;
    assert_eq!(revoked.outcome, Outcome::GrantInvalid, "{revoked:?}");
    assert_eq!(revoked.http_status, Some(400));
    assert_eq!(revoked.error_code.as_deref(), Some("invalid_grant"));

    // PROVIDERS.md: "Google refresh answer whose scope lacks the needed scope" → not_authorized,
    // before any Gmail call.
    let partial = h
        .connect_member("partial@acme.example", &[GMAIL_SCOPE, CALENDAR_SCOPE])
        .await;
    h.reset_stats().await;
    let missing = h
        .connector
        .import(&job(
            "partial@acme.example",
            Channel::Email,
            member_auth(partial.refresh_token.clone()),
            None,
        ))
        .await;
    assert_eq!(missing.outcome, Outcome::NotAuthorized, "{missing:?}");
    assert_eq!(h.gmail_calls().await, 0);
    let calendar = h
        .connector
        .import(&job(
            "partial@acme.example",
            Channel::Calendar,
            member_auth(partial.refresh_token),
            None,
        ))
        .await;
    assert_eq!(calendar.outcome, Outcome::Success, "{calendar:?}");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn member_token_still_401_after_one_refresh_is_grant_invalid() {
    // PROVIDERS.md: "user token still 401 at the API after one refresh" → grant_invalid.
    let h = start().await;
    let grant = h.connect_member("ada@acme.example", &[GMAIL_SCOPE]).await;
    h.fault(
        "ada@acme.example",
        json!({ "fault": "token_expired", "endpoint": "gmail" }),
    )
    .await;
    h.reset_stats().await;
    let attempt = h
        .connector
        .import(&job(
            "ada@acme.example",
            Channel::Email,
            member_auth(grant.refresh_token.clone()),
            None,
        ))
        .await;
    assert_eq!(attempt.outcome, Outcome::GrantInvalid, "{attempt:?}");
    assert_eq!(attempt.http_status, Some(401));
    assert_eq!(
        h.count("token").await,
        2,
        "one refresh, then one more after the 401"
    );
    assert_eq!(h.count("gmail.profile").await, 2);

    // A single 401 followed by a good token is just a refresh.
    h.clear_faults().await;
    h.fault(
        "ada@acme.example",
        json!({ "fault": "token_expired", "endpoint": "gmail", "times": 1 }),
    )
    .await;
    let recovered = h
        .connector
        .import(&job(
            "ada@acme.example",
            Channel::Email,
            member_auth(grant.refresh_token),
            None,
        ))
        .await;
    assert_eq!(recovered.outcome, Outcome::Success, "{recovered:?}");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn directory_suspended_unlicensed_and_missing_members_spend_no_gmail_quota() {
    // google.md §8: suspended / isMailboxSetup=false / absent ⇒ mailbox_unavailable.
    let h = start().await;
    for (member, channel, code) in [
        ("sus@acme.example", Channel::Email, "suspended"),
        ("sus@acme.example", Channel::Calendar, "suspended"),
        ("nomail@acme.example", Channel::Email, "isMailboxSetup"),
        ("ghost@acme.example", Channel::Email, "userNotFound"),
    ] {
        h.reset_stats().await;
        let attempt = h
            .connector
            .import(&job(member, channel, delegation(true), None))
            .await;
        assert_eq!(
            attempt.outcome,
            Outcome::MailboxUnavailable,
            "{member}: {attempt:?}"
        );
        assert_eq!(attempt.error_code.as_deref(), Some(code), "{member}");
        assert_eq!(h.gmail_calls().await, 0, "{member}");
        assert_eq!(h.count("calendar.events.list").await, 0, "{member}");
        assert_eq!(h.count("directory.users.list").await, 1, "{member}");
    }
    // A healthy member passes the check.
    let ok = h
        .connector
        .import(&job(
            "ada@acme.example",
            Channel::Email,
            delegation(true),
            None,
        ))
        .await;
    assert_eq!(ok.outcome, Outcome::Success, "{ok:?}");
    h.sim.shutdown().await;
}

#[tokio::test]
async fn tokens_are_cached_per_member_and_refreshed_once_in_flight() {
    let h = start().await;
    for _ in 0..3 {
        let attempt = h
            .connector
            .import(&delegated("ada@acme.example", Channel::Email, None))
            .await;
        assert_eq!(attempt.outcome, Outcome::Success);
    }
    assert_eq!(
        h.count("token").await,
        1,
        "one token call per member, not per attempt"
    );
    // Issue 18: the mailbox's other channel shares its token (both scopes in one
    // delegation token); another member is another token.
    let calendar = h
        .connector
        .import(&delegated("ada@acme.example", Channel::Calendar, None))
        .await;
    assert_eq!(calendar.outcome, Outcome::Success);
    assert_eq!(h.count("token").await, 1, "one token for both channels");
    h.connector
        .import(&delegated("admin@acme.example", Channel::Email, None))
        .await;
    assert_eq!(h.count("token").await, 2);

    // Four concurrent attempts of a fresh connector for one member: one token request.
    let fresh = GoogleConnector::new(config_for(&h.sim)).expect("connector");
    h.reset_stats().await;
    let jobs: Vec<ImportJob> = (0..4)
        .map(|_| delegated("ada@acme.example", Channel::Calendar, None))
        .collect();
    let attempts = futures_join(&fresh, &jobs).await;
    assert!(attempts.iter().all(|a| a.outcome == Outcome::Success));
    assert_eq!(h.count("token").await, 1, "one refresh in flight per key");
    h.sim.shutdown().await;
}

/// Issue 18: when the company's delegation allows Gmail only, Google refuses the shared
/// token for both scopes (`unauthorized_client`); the connector asks one scope at a time
/// from then on, so the email channel imports and the calendar channel alone shows the
/// missing scope, as it did with one token per scope.
#[tokio::test]
async fn a_scope_left_out_of_the_delegation_shows_on_its_own_channel_only() {
    let text = scenario_text(3599).replace(
        "  \"https://www.googleapis.com/auth/calendar.readonly\",\n  \"https://www.googleapis.com/auth/admin",
        "  \"https://www.googleapis.com/auth/admin",
    );
    assert!(!text.contains("auth/calendar.readonly\",\n  \"https://www.googleapis.com/auth/admin"));
    let h = start_scenario(&text).await;
    let email = h
        .connector
        .import(&delegated("ada@acme.example", Channel::Email, None))
        .await;
    assert_eq!(email.outcome, Outcome::Success, "{email:?}");
    // The refused shared request, then Gmail's own scope.
    assert_eq!(h.count("token").await, 2);
    let calendar = h
        .connector
        .import(&delegated("ada@acme.example", Channel::Calendar, None))
        .await;
    assert_eq!(calendar.outcome, Outcome::NotAuthorized, "{calendar:?}");
    assert_eq!(calendar.error_code.as_deref(), Some("unauthorized_client"));
    assert_eq!(h.count("calendar.events.list").await, 0, "no Calendar call");
    // The company's shared token is not asked again: one request for Calendar's scope.
    assert_eq!(h.count("token").await, 3);
    let again = h
        .connector
        .import(&delegated("admin@acme.example", Channel::Email, None))
        .await;
    assert_eq!(again.outcome, Outcome::Success, "{again:?}");
    assert_eq!(
        h.count("token").await,
        4,
        "another member: its own Gmail token only"
    );
    h.sim.shutdown().await;
}

async fn futures_join(connector: &GoogleConnector, jobs: &[ImportJob]) -> Vec<Attempt> {
    let (a, b, c, d) = tokio::join!(
        connector.import(&jobs[0]),
        connector.import(&jobs[1]),
        connector.import(&jobs[2]),
        connector.import(&jobs[3]),
    );
    vec![a, b, c, d]
}

#[tokio::test]
async fn a_token_close_to_expiry_is_replaced() {
    // Tokens live 330 s; with the 300 s margin a job 45 s later must mint a new one.
    let h = start_with(330).await;
    let now = OffsetDateTime::now_utc();
    let mut early = delegated("ada@acme.example", Channel::Calendar, None);
    early.now = now;
    assert_eq!(h.connector.import(&early).await.outcome, Outcome::Success);
    let mut soon = early.clone();
    soon.now = now + time::Duration::seconds(10);
    assert_eq!(h.connector.import(&soon).await.outcome, Outcome::Success);
    assert_eq!(h.count("token").await, 1);
    let mut later = early.clone();
    later.now = now + time::Duration::seconds(45);
    assert_eq!(h.connector.import(&later).await.outcome, Outcome::Success);
    assert_eq!(h.count("token").await, 2);
    h.sim.shutdown().await;
}

/// Issue 21 §4: every entry of the sim's copy of Google's API error catalogue (Gmail,
/// Calendar and Directory reasons) goes through the real connector over HTTP and comes out
/// as its mapping row says; every row of the table has a sim entry and every entry a row.
#[tokio::test]
async fn every_catalogue_reason_maps_through_the_connector() {
    use datacap_google::errors::{API_REASONS, api_reason};
    let h = start().await;
    let names = datacap_sim::catalogue_fault_names();
    let mut failures = Vec::new();
    for row in API_REASONS {
        if !names.contains(&format!("google:{}", row.reason)) {
            failures.push(format!("{} has a mapping row but no sim entry", row.reason));
        }
    }
    let mut tried = 0;
    for name in &names {
        let Some(reason) = name.strip_prefix("google:") else {
            continue;
        };
        let Some(row) = api_reason(reason) else {
            failures.push(format!("{name}: no mapping row"));
            continue;
        };
        tried += 1;
        for channel in [Channel::Email, Channel::Calendar] {
            h.clear_faults().await;
            let endpoint = match channel {
                Channel::Email => "gmail",
                Channel::Calendar => "calendar",
            };
            h.fault(
                "ada@acme.example",
                json!({ "fault": name, "endpoint": endpoint }),
            )
            .await;
            let connector = GoogleConnector::new(config_for(&h.sim)).expect("connector");
            let auth = delegation(false);
            let attempt = connector
                .import(&job("ada@acme.example", channel, auth, None))
                .await;
            if attempt.outcome != row.outcome || attempt.http_status.is_none() {
                failures.push(format!(
                    "{name} ({channel}): got {} {:?} {:?} {:?}, expected {} — {}",
                    attempt.outcome,
                    attempt.http_status,
                    attempt.error_code,
                    attempt.error_message,
                    row.outcome,
                    row.source
                ));
            }
        }
    }
    assert_no_failures("catalogue entries that map wrongly", &failures);
    assert_eq!(tried, API_REASONS.len());
    h.sim.shutdown().await;
}

/// How a fault-table row authenticates.
#[derive(Clone, Copy, Debug)]
enum RowAuth {
    Delegation,
    DelegationWithDirectory,
    Member,
}

struct Row {
    fault: Value,
    channel: Channel,
    auth: RowAuth,
    outcome: Outcome,
    http_status: Option<u16>,
    cite: &'static str,
}

fn row(
    fault: Value,
    channel: Channel,
    auth: RowAuth,
    outcome: Outcome,
    http_status: Option<u16>,
    cite: &'static str,
) -> Row {
    Row {
        fault,
        channel,
        auth,
        outcome,
        http_status,
        cite,
    }
}

#[tokio::test]
async fn every_google_fault_maps_to_its_outcome() {
    use Channel::*;
    use Outcome::*;
    use RowAuth::*;
    let h = start().await;
    let grant = h
        .connect_member("ada@acme.example", &[GMAIL_SCOPE, CALENDAR_SCOPE])
        .await;
    let rows = [
        row(
            json!({"fault": "delegation_unauthorized_client"}),
            Email,
            Delegation,
            NotAuthorized,
            Some(401),
            "PROVIDERS.md token 401 unauthorized_client; google.md §2 row 1",
        ),
        row(
            json!({"fault": "invalid_email"}),
            Email,
            Delegation,
            MailboxUnavailable,
            Some(400),
            "PROVIDERS.md \"Invalid email or User ID\"; google.md §2 (PSGSuite#267)",
        ),
        row(
            json!({"fault": "not_a_valid_email"}),
            Email,
            Delegation,
            MailboxUnavailable,
            Some(400),
            "PROVIDERS.md \"Not a valid email.\"; google.md §2",
        ),
        row(
            json!({"fault": "account_deleted"}),
            Calendar,
            Delegation,
            MailboxUnavailable,
            Some(400),
            "PROVIDERS.md \"The account has been deleted\"; google.md §2 (GAM#1171)",
        ),
        row(
            json!({"fault": "invalid_jwt_signature"}),
            Email,
            Delegation,
            CredentialRejected,
            Some(400),
            "PROVIDERS.md \"Invalid JWT Signature.\"; google.md §2",
        ),
        row(
            json!({"fault": "jwt_not_short_lived"}),
            Email,
            Delegation,
            CredentialRejected,
            Some(400),
            "PROVIDERS.md \"Invalid JWT: Token must be a short-lived token…\"; google.md §2",
        ),
        row(
            json!({"fault": "account_not_found"}),
            Email,
            Delegation,
            CredentialRejected,
            Some(400),
            "PROVIDERS.md \"Invalid grant: account not found\"; google.md §2",
        ),
        row(
            json!({"fault": "deleted_client"}),
            Email,
            Delegation,
            CredentialRejected,
            Some(401),
            "PROVIDERS.md deleted_client; google.md §2",
        ),
        row(
            json!({"fault": "invalid_client"}),
            Email,
            Member,
            CredentialRejected,
            Some(401),
            "PROVIDERS.md invalid_client (any provider); google.md §3",
        ),
        row(
            json!({"fault": "internal_failure"}),
            Email,
            Delegation,
            ProviderError,
            Some(500),
            "PROVIDERS.md internal_failure; google.md §2",
        ),
        row(
            json!({"fault": "admin_policy_enforced"}),
            Email,
            Member,
            AccessDenied,
            Some(400),
            "PROVIDERS.md token admin_policy_enforced; google.md §3",
        ),
        // Issue 21 §4/§5: the account itself is gone, on the member's refresh.
        row(
            json!({"fault": "account_deleted"}),
            Email,
            Member,
            MailboxUnavailable,
            Some(400),
            "google.md §2 \"The account has been deleted\" (GAM#1171, flowcrypt-browser#2269): an account that is gone",
        ),
        row(
            json!({"fault": "disabled_client"}),
            Email,
            Delegation,
            CredentialRejected,
            Some(401),
            "Google OAuth 2.0 errors: disabled_client \"The OAuth client was disabled.\"",
        ),
        row(
            json!({"fault": "domain_cannot_use_apis", "endpoint": "gmail"}),
            Email,
            Delegation,
            AccessDenied,
            Some(403),
            "Directory API common errors 403:domainCannotUseApis (the Workspace admin turned API access off)",
        ),
        row(
            json!({"fault": "invalid_grant_revoked"}),
            Email,
            Member,
            GrantInvalid,
            Some(400),
            "PROVIDERS.md refresh invalid_grant \"Token has been expired or revoked.\"; google.md §3",
        ),
        row(
            json!({"fault": "invalid_rapt"}),
            Calendar,
            Member,
            GrantInvalid,
            Some(400),
            "PROVIDERS.md invalid_rapt; google.md §3 (blobfile#2)",
        ),
        row(
            json!({"fault": "refresh_scope_missing"}),
            Email,
            Member,
            NotAuthorized,
            None,
            "PROVIDERS.md refresh answer whose scope lacks the needed scope; google.md §3",
        ),
        row(
            json!({"fault": "insufficient_permissions"}),
            Email,
            Delegation,
            NotAuthorized,
            Some(403),
            "PROVIDERS.md 403 insufficientPermissions; google.md §1.1 (php-samples#123)",
        ),
        row(
            json!({"fault": "insufficient_permissions_no_errors"}),
            Calendar,
            Delegation,
            NotAuthorized,
            Some(403),
            "PROVIDERS.md ACCESS_TOKEN_SCOPE_INSUFFICIENT; google.md §1.1 errors[] absent",
        ),
        row(
            json!({"fault": "domain_policy"}),
            Email,
            Delegation,
            AccessDenied,
            Some(403),
            "PROVIDERS.md Google 403 domainPolicy; google.md §4",
        ),
        row(
            json!({"fault": "mailbox_not_enabled"}),
            Email,
            Delegation,
            MailboxUnavailable,
            Some(400),
            "PROVIDERS.md Gmail 400 failedPrecondition \"Mail service not enabled\"; google.md §4",
        ),
        row(
            json!({"fault": "precondition_failed"}),
            Email,
            Delegation,
            ProviderError,
            Some(400),
            "google.md §4 \"Precondition check failed.\"; PROVIDERS.md any answer not listed",
        ),
        row(
            json!({"fault": "not_a_calendar_user"}),
            Calendar,
            Delegation,
            MailboxUnavailable,
            Some(403),
            "PROVIDERS.md Calendar 403 notACalendarUser; google.md §6",
        ),
        row(
            json!({"fault": "delegation_denied"}),
            Email,
            Delegation,
            ProviderError,
            Some(403),
            "PROVIDERS.md \"Delegation denied\" (our bug)",
        ),
        row(
            json!({"fault": "access_not_configured"}),
            Calendar,
            Delegation,
            ProviderError,
            Some(403),
            "PROVIDERS.md 403 accessNotConfigured/SERVICE_DISABLED; google.md §6",
        ),
        row(
            json!({"fault": "rate_limit_exceeded"}),
            Email,
            Delegation,
            RateLimited,
            Some(403),
            "PROVIDERS.md 403 rateLimitExceeded; google.md §6",
        ),
        row(
            json!({"fault": "user_rate_limit_exceeded"}),
            Calendar,
            Delegation,
            RateLimited,
            Some(403),
            "PROVIDERS.md 403 userRateLimitExceeded; google.md §6",
        ),
        row(
            json!({"fault": "daily_limit_exceeded"}),
            Email,
            Delegation,
            RateLimited,
            Some(403),
            "PROVIDERS.md 403 dailyLimitExceeded",
        ),
        row(
            json!({"fault": "quota_exceeded"}),
            Calendar,
            Delegation,
            RateLimited,
            Some(403),
            "PROVIDERS.md 403 quotaExceeded; google.md §6 \"Calendar usage limits exceeded.\"",
        ),
        row(
            json!({"fault": "too_many_concurrent_requests"}),
            Email,
            Delegation,
            RateLimited,
            Some(429),
            "PROVIDERS.md 429",
        ),
        row(
            json!({"fault": "rate_limited"}),
            Calendar,
            Delegation,
            RateLimited,
            Some(429),
            "PROVIDERS.md 429",
        ),
        row(
            json!({"fault": "server_error"}),
            Email,
            Delegation,
            ProviderError,
            Some(500),
            "PROVIDERS.md 5xx / backendError",
        ),
        row(
            json!({"fault": "service_unavailable"}),
            Calendar,
            Delegation,
            ProviderError,
            Some(503),
            "PROVIDERS.md 5xx",
        ),
        row(
            json!({"fault": "token_expired"}),
            Email,
            Member,
            GrantInvalid,
            Some(401),
            "PROVIDERS.md user token still 401 after one refresh; google.md §4",
        ),
        row(
            json!({"fault": "invalid_credentials_documented"}),
            Calendar,
            Member,
            GrantInvalid,
            Some(401),
            "PROVIDERS.md user token still 401 after one refresh; google.md §6 documented body",
        ),
        row(
            json!({"fault": "token_expired"}),
            Email,
            Delegation,
            ProviderError,
            Some(401),
            "PROVIDERS.md any answer not listed (delegated token refused twice)",
        ),
        row(
            json!({"fault": "token_expired", "times": 1}),
            Email,
            Delegation,
            Success,
            None,
            "google.md §4 \"retry once after token refresh\"",
        ),
        row(
            json!({"fault": "calendar_not_found"}),
            Calendar,
            Delegation,
            ProviderError,
            Some(404),
            "google.md §6 404 on primary; PROVIDERS.md any answer not listed",
        ),
        // Issue 21 §3: the Directory pre-check is optional; its refusal lets Gmail decide
        // (a_refused_directory_check_lets_gmail_and_calendar_decide has the variants).
        row(
            json!({"fault": "directory_not_authorized"}),
            Email,
            DelegationWithDirectory,
            Success,
            None,
            "google.md §8 Directory 403 forbidden: an optional check, passed over",
        ),
        row(
            json!({"fault": "truncated_json", "endpoint": "gmail"}),
            Email,
            Delegation,
            ProviderError,
            Some(200),
            "PROVIDERS.md a 2xx body that does not parse",
        ),
        row(
            json!({"fault": "truncated_json", "endpoint": "calendar"}),
            Calendar,
            Delegation,
            ProviderError,
            Some(200),
            "PROVIDERS.md a 2xx body that does not parse",
        ),
        row(
            json!({"fault": "truncated_json", "endpoint": "token"}),
            Email,
            Delegation,
            ProviderError,
            Some(200),
            "PROVIDERS.md a 2xx body that does not parse (token answer)",
        ),
        row(
            json!({"fault": "oversized_body", "endpoint": "gmail", "bytes": 2_097_152}),
            Email,
            Delegation,
            ProviderError,
            Some(200),
            "PROVIDERS.md a body over the size limit",
        ),
        row(
            json!({"fault": "connection_reset", "endpoint": "calendar"}),
            Calendar,
            Delegation,
            NetworkError,
            Some(200),
            "PROVIDERS.md connection reset mid-body",
        ),
        row(
            json!({"fault": "latency", "endpoint": "gmail", "latency_ms": 4000}),
            Email,
            Delegation,
            NetworkError,
            None,
            "PROVIDERS.md timeout (hung provider)",
        ),
    ];
    let mut failures = Vec::new();
    for row in rows {
        h.clear_faults().await;
        // Directory calls act as the Directory admin, so its faults are the admin's.
        let user = match row.auth {
            DelegationWithDirectory => "admin@acme.example",
            _ => "ada@acme.example",
        };
        h.fault(user, row.fault.clone()).await;
        // A fresh connector per row: a cached token must not hide a token-endpoint fault.
        let connector = GoogleConnector::new(config_for(&h.sim)).expect("connector");
        let auth = match row.auth {
            Delegation => delegation(false),
            DelegationWithDirectory => delegation(true),
            Member => member_auth(grant.refresh_token.clone()),
        };
        let attempt = connector
            .import(&job("ada@acme.example", row.channel, auth, None))
            .await;
        let ok = attempt.outcome == row.outcome
            && (row.http_status.is_none() || attempt.http_status == row.http_status);
        if !ok {
            failures.push(format!(
                "{} ({:?}, {:?}) [{}]: expected {} {:?}, got {} {:?} {:?} {:?}",
                row.fault,
                row.channel,
                row.auth,
                row.cite,
                row.outcome,
                row.http_status,
                attempt.outcome,
                attempt.http_status,
                attempt.error_code,
                attempt.error_message
            ));
        }
        if attempt.outcome != Success {
            assert!(
                attempt.next_cursor.is_none(),
                "a failure keeps the saved cursor"
            );
            assert!(
                attempt.error_message.is_some(),
                "{}: no message recorded",
                row.fault
            );
        }
    }
    h.sim.shutdown().await;
    assert_no_failures("rows that did not map", &failures);
}

#[tokio::test]
async fn rate_limit_records_retry_after() {
    let h = start().await;
    for (value, expected) in [
        (json!(7), Duration::from_secs(7)),
        (json!(2.128), Duration::from_secs_f64(2.128)),
    ] {
        h.clear_faults().await;
        h.fault(
            "ada@acme.example",
            json!({ "fault": "rate_limited", "retry_after": value }),
        )
        .await;
        let attempt = h
            .connector
            .import(&delegated("ada@acme.example", Channel::Email, None))
            .await;
        assert_eq!(attempt.outcome, Outcome::RateLimited);
        assert_eq!(attempt.http_status, Some(429));
        assert_eq!(attempt.error_code.as_deref(), Some("rateLimitExceeded"));
        assert_eq!(attempt.retry_after, Some(expected));
    }
    h.sim.shutdown().await;
}

/// google.md: rate limits are transient, "honour `Retry-After`". A short one is waited out
/// and the call retried inside the attempt, at most `throttle_retries` times; a third 429
/// ends the attempt `rate_limited`, and one longer than `max_retry_wait` ends it at once.
#[tokio::test]
async fn a_short_retry_after_is_waited_out_inside_the_attempt() {
    let h = start().await;
    let connector = GoogleConnector::new(GoogleConfig {
        throttle_retries: 2,
        max_retry_wait: Duration::from_secs(2),
        ..config_for(&h.sim)
    })
    .expect("connector");
    let fired = |stats: Value| stats["faults_fired"]["RateLimited"].as_u64().unwrap_or(0);
    for (times, retry_after, outcome, fired_429s) in [
        (2, 1, Outcome::Success, 2),
        (5, 1, Outcome::RateLimited, 3),
        (5, 3, Outcome::RateLimited, 1),
    ] {
        h.clear_faults().await;
        let before = fired(h.stats().await);
        h.fault(
            "ada@acme.example",
            json!({ "fault": "rate_limited", "retry_after": retry_after, "times": times }),
        )
        .await;
        let started = std::time::Instant::now();
        let attempt = connector
            .import(&delegated("ada@acme.example", Channel::Email, None))
            .await;
        let label = format!("{times} 429s of Retry-After {retry_after} s");
        assert_eq!(attempt.outcome, outcome, "{label}: {attempt:?}");
        assert_eq!(fired(h.stats().await) - before, fired_429s, "{label}");
        // Every 429 that was retried was waited out first (an open gate: the connector
        // sleeps it itself); the one that ended the attempt was not.
        let retried = if outcome == Outcome::Success {
            fired_429s
        } else {
            fired_429s - 1
        };
        let waited = Duration::from_secs(retry_after * retried);
        assert!(
            started.elapsed() >= waited,
            "{label}: {:?}",
            started.elapsed()
        );
    }
    h.sim.shutdown().await;
}

#[tokio::test]
async fn connection_refused_is_network_error() {
    let h = start().await;
    let config = config_for(&h.sim);
    h.sim.shutdown().await;
    let connector = GoogleConnector::new(config).expect("connector");
    let attempt = connector
        .import(&delegated("ada@acme.example", Channel::Email, None))
        .await;
    assert_eq!(attempt.outcome, Outcome::NetworkError, "{attempt:?}");
}

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut sink) = self.0.lock() {
            sink.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace,datacap_sim=off"))
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    // Global, not `set_default`: tracing caches callsite interest process-wide, and a
    // thread-local subscriber in a test binary running tests in parallel can miss events.
    // Other tests' logs land in the buffer too, which only widens the check.
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");

    let h = start().await;
    let grant = h.connect_member("ada@acme.example", &[GMAIL_SCOPE]).await;
    let mut attempts = vec![
        h.connector
            .import(&delegated("ada@acme.example", Channel::Email, None))
            .await,
        h.connector
            .import(&job(
                "ada@acme.example",
                Channel::Email,
                member_auth(grant.refresh_token.clone()),
                None,
            ))
            .await,
    ];
    h.fault(
        "ada@acme.example",
        json!({ "fault": "token_expired", "endpoint": "gmail" }),
    )
    .await;
    let member_job = job(
        "ada@acme.example",
        Channel::Email,
        member_auth(grant.refresh_token.clone()),
        None,
    );
    attempts.push(h.connector.import(&member_job).await);
    h.sim.shutdown().await;

    let logs = String::from_utf8(captured.0.lock().expect("logs").clone()).expect("utf-8");
    assert!(logs.contains("google_import"), "the import span is logged");
    assert!(
        logs.contains("http_status=401"),
        "call outcomes carry http_status"
    );
    let refresh = grant.refresh_token.expose_secret().to_owned();
    let key_line = KEY_PEM.lines().nth(3).expect("a line of the key");
    let debug = format!("{attempts:?} {member_job:?} {grant:?} {:?}", h.connector);
    for (name, secret) in [
        ("access token", "ya29."),
        ("refresh token", refresh.as_str()),
        ("client secret", CLIENT_SECRET),
        ("private key", key_line),
        ("bearer header", "Bearer ya29"),
    ] {
        assert!(!logs.contains(secret), "{name} in the logs");
        assert!(!debug.contains(secret), "{name} in a Debug output");
    }
}

#[tokio::test]
async fn cursor_faults_run_a_full_pass_in_the_same_attempt() {
    // PROVIDERS.md row 2: Gmail history.list 404; Calendar 410 fullSyncRequired /
    // updatedMinTooLongAgo ⇒ drop the cursor, full pass, then success.
    let h = start().await;
    for (fault, channel, full_items) in [
        ("history_not_found", Channel::Email, 12),
        ("cursor_expired", Channel::Email, 12),
        ("full_sync_required", Channel::Calendar, 6),
        ("updated_min_too_long_ago", Channel::Calendar, 6),
        ("cursor_expired", Channel::Calendar, 6),
    ] {
        h.clear_faults().await;
        let first = h
            .connector
            .import(&delegated("ada@acme.example", channel, None))
            .await;
        let cursor = first.next_cursor.clone().expect("cursor");
        h.fault("ada@acme.example", json!({ "fault": fault, "times": 1 }))
            .await;
        let again = h
            .connector
            .import(&delegated("ada@acme.example", channel, Some(cursor)))
            .await;
        assert_eq!(again.outcome, Outcome::Success, "{fault}: {again:?}");
        let items = again.email_items.len() + again.calendar_items.len();
        assert_eq!(items, full_items, "{fault}: the full pass ran");
        assert!(again.next_cursor.is_some(), "{fault}");
    }
    h.sim.shutdown().await;
}

#[tokio::test]
async fn code_exchange_checks_pkce_and_single_use() {
    let h = start().await;
    let verifier = "a-verifier-of-at-least-forty-three-characters-xyz";
    let authorize = |challenge: &'static str| {
        h.http
            .get(&h.sim.endpoints().google_authorize_url)
            .query(&[
                ("client_id", CLIENT_ID),
                ("redirect_uri", REDIRECT),
                ("response_type", "code"),
                ("scope", GMAIL_SCOPE),
                ("login_hint", "ada@acme.example"),
                ("code_challenge", challenge),
                ("code_challenge_method", "plain"),
            ])
            .send()
    };
    let code_of = |response: reqwest::Response| {
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("redirect")
            .to_owned();
        reqwest::Url::parse(&location)
            .expect("url")
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("code")
    };
    let code = code_of(
        authorize("a-verifier-of-at-least-forty-three-characters-xyz")
            .await
            .expect("authorize"),
    );
    let wrong = h
        .connector
        .exchange_code(
            &oauth_client(),
            &code,
            REDIRECT,
            Some(&SecretString::from("nope")),
        )
        .await
        .expect_err("wrong verifier");
    assert_eq!(wrong.0.outcome, Outcome::GrantInvalid);
    let grant = h
        .connector
        .exchange_code(
            &oauth_client(),
            &code,
            REDIRECT,
            Some(&SecretString::from(verifier)),
        )
        .await
        .expect("right verifier");
    assert_eq!(grant.scope, GMAIL_SCOPE);
    // google.md §3: "Code was already redeemed." → the grant is unusable.
    let again = h
        .connector
        .exchange_code(
            &oauth_client(),
            &code,
            REDIRECT,
            Some(&SecretString::from(verifier)),
        )
        .await
        .expect_err("single use");
    assert_eq!(again.0.outcome, Outcome::GrantInvalid);
    assert_eq!(
        again.0.error_message.as_deref(),
        Some("Code was already redeemed.")
    );
    h.sim.shutdown().await;
}

/// The connect flow's code exchange runs on the `oauth2` crate (issue 17 §2), and what the
/// status model reads still arrives: the HTTP status, `Retry-After`, the flat token
/// error's `error` and `error_description`, and an answer that is neither a token nor
/// that envelope (Google's 429 is the REST envelope).
#[tokio::test]
async fn the_code_exchange_keeps_the_status_headers_and_error_of_the_answer() {
    let h = start().await;
    let user = "ada@acme.example";
    let code = h.code_for(user, &[GMAIL_SCOPE]).await;
    h.fault(
        user,
        json!({ "fault": "rate_limited", "endpoint": "token", "times": 1, "retry_after": 7 }),
    )
    .await;
    let throttled = h
        .connector
        .exchange_code(&oauth_client(), &code, REDIRECT, None)
        .await
        .expect_err("throttled");
    assert_eq!(throttled.0.outcome, Outcome::RateLimited, "{throttled}");
    assert_eq!(throttled.0.http_status, Some(429));
    assert_eq!(throttled.0.retry_after, Some(Duration::from_secs(7)));

    h.fault(
        user,
        json!({ "fault": "invalid_client", "endpoint": "token", "times": 1 }),
    )
    .await;
    let refused = h
        .connector
        .exchange_code(&oauth_client(), &code, REDIRECT, None)
        .await
        .expect_err("unknown client");
    let envelope = datacap_google::TokenError {
        error: "invalid_client".to_owned(),
        error_description: Some("The OAuth client was not found.".to_owned()),
        error_subtype: None,
    };
    assert_eq!(
        refused.0.outcome,
        datacap_google::errors::token_outcome(datacap_google::errors::Grant::Code, 401, &envelope)
    );
    assert_eq!(refused.0.http_status, Some(401));
    assert_eq!(refused.0.error_code.as_deref(), Some("invalid_client"));
    assert_eq!(
        refused.0.error_message.as_deref(),
        Some("The OAuth client was not found.")
    );
    // The faults fired before the code was redeemed: it still works once.
    let grant = h
        .connector
        .exchange_code(&oauth_client(), &code, REDIRECT, None)
        .await
        .expect("redeemed");
    assert_eq!(grant.scope, GMAIL_SCOPE);
    assert!(!format!("{grant:?}").contains(grant.refresh_token.expose_secret()));
    h.sim.shutdown().await;
}

/// Issue 7: every request (token endpoint, Directory, each page) awaits the job's gate, and
/// a 429's Retry-After is reported to it.
#[tokio::test]
async fn every_request_awaits_the_gate_and_reports_retry_after() {
    let h = start().await;
    let requests_total = || async {
        let stats: Value = h
            .http
            .get(format!("{}/stats", h.sim.control_url()))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json");
        stats["requests_total"].as_u64().expect("requests_total")
    };
    for channel in [Channel::Email, Channel::Calendar] {
        h.reset_stats().await;
        let gate = Arc::new(CountingGate::default());
        let mut import = job("ada@acme.example", channel, delegation(true), None);
        import.gate = datacap_connector::Gate::new(gate.clone());
        let attempt = h.connector.import(&import).await;
        assert_eq!(attempt.outcome, Outcome::Success, "{attempt:?}");
        let through_gate = gate.requests();
        assert!(
            through_gate >= 3,
            "tokens, directory, pages: {through_gate}"
        );
        assert_eq!(through_gate, requests_total().await);
        assert_eq!(through_gate, u64::from(attempt.requests));
        assert!(gate.pauses.lock().expect("pauses").is_empty());
    }

    h.fault(
        "partial@acme.example",
        json!({ "fault": "rate_limited", "times": 1, "retry_after": 3 }),
    )
    .await;
    h.reset_stats().await;
    let gate = Arc::new(CountingGate::default());
    let mut import = delegated("partial@acme.example", Channel::Email, None);
    import.gate = datacap_connector::Gate::new(gate.clone());
    let attempt = h.connector.import(&import).await;
    assert_eq!(attempt.outcome, Outcome::RateLimited, "{attempt:?}");
    assert_eq!(gate.requests(), requests_total().await);
    // The sim's 429 is Gmail's "Rate Limit Exceeded": the project-wide limit, which
    // holds back every company on our Google project (docs/throttling.md).
    assert_eq!(
        *gate.pauses.lock().expect("pauses"),
        [(
            Duration::from_secs(3),
            datacap_connector::ThrottleScope::App
        )]
    );
    h.sim.shutdown().await;
}

/// Issue 21 §3: a Directory pre-check that is refused (the subject is no Directory admin,
/// the Directory scope is not delegated, the Admin SDK API is off) or fails never blocks
/// a working import: Gmail and Calendar run and decide, and the refusal travels on the
/// attempt for the worker to log and count.
#[tokio::test]
async fn a_refused_directory_check_lets_gmail_and_calendar_decide() {
    let h = start().await;
    // (fault on the Directory admin's calls, HTTP status the refusal carries, its code)
    let refusals = [
        // google.md §8: "Not Authorized to access this resource/api" (no Directory admin).
        (json!({"fault": "directory_not_authorized"}), Some(403)),
        // google.md §8 / reseller "Directory API common errors": the Admin SDK is off.
        (
            json!({"fault": "access_not_configured", "endpoint": "directory"}),
            Some(403),
        ),
        // google.md §2: the Directory scope is not on the delegation allow-list.
        (
            json!({"fault": "delegation_unauthorized_client", "endpoint": "token"}),
            Some(401),
        ),
        // A Directory backend error is no word about the member either.
        (
            json!({"fault": "server_error", "endpoint": "directory"}),
            Some(500),
        ),
    ];
    for (fault, status) in refusals {
        for channel in [Channel::Email, Channel::Calendar] {
            h.clear_faults().await;
            h.fault("admin@acme.example", fault.clone()).await;
            let connector = GoogleConnector::new(config_for(&h.sim)).expect("connector");
            let attempt = connector
                .import(&job("ada@acme.example", channel, delegation(true), None))
                .await;
            assert_eq!(
                attempt.outcome,
                Outcome::Success,
                "{fault} {channel:?}: {attempt:?}"
            );
            assert!(
                !attempt.email_items.is_empty() || !attempt.calendar_items.is_empty(),
                "{fault} {channel:?}: nothing imported"
            );
            assert_eq!(attempt.refused_checks.len(), 1, "{fault} {channel:?}");
            let refused = &attempt.refused_checks[0];
            assert_eq!(refused.check, "google_directory");
            assert_eq!(refused.failure.http_status, status, "{fault}: {refused:?}");
        }
    }
    // The Directory's own word about the member still ends the attempt.
    h.clear_faults().await;
    let connector = GoogleConnector::new(config_for(&h.sim)).expect("connector");
    let attempt = connector
        .import(&job(
            "nobody@acme.example",
            Channel::Email,
            delegation(true),
            None,
        ))
        .await;
    assert_eq!(attempt.outcome, Outcome::MailboxUnavailable, "{attempt:?}");
    assert!(attempt.refused_checks.is_empty());
    h.sim.shutdown().await;
}

/// Issue 17 §1: the Calendar import reads the member's own calendar by its id (the
/// member's address), not `primary`: a grant that is not the member's (partial's token on
/// ada's job) imports nothing of anyone's calendar, while Gmail's path names the member
/// too. The member's own grant imports its events.
#[tokio::test]
async fn a_token_that_is_not_the_members_imports_no_calendar() {
    let h = start().await;
    let partial = h
        .connect_member("partial@acme.example", &[GMAIL_SCOPE, CALENDAR_SCOPE])
        .await;
    for channel in [Channel::Calendar, Channel::Email] {
        let attempt = h
            .connector
            .import(&job(
                "ada@acme.example",
                channel,
                member_auth(partial.refresh_token.clone()),
                None,
            ))
            .await;
        assert_ne!(
            attempt.outcome,
            Outcome::Success,
            "{channel:?}: {attempt:?}"
        );
        assert!(
            attempt.calendar_items.is_empty() && attempt.email_items.is_empty(),
            "{channel:?}: partial's token imported something under ada's name"
        );
    }
    let ada = h
        .connect_member("ada@acme.example", &[GMAIL_SCOPE, CALENDAR_SCOPE])
        .await;
    let own = h
        .connector
        .import(&job(
            "ada@acme.example",
            Channel::Calendar,
            member_auth(ada.refresh_token.clone()),
            None,
        ))
        .await;
    assert_eq!(own.outcome, Outcome::Success, "{own:?}");
    assert!(
        !own.calendar_items.is_empty(),
        "ada's own events are imported"
    );
    h.sim.shutdown().await;
}
