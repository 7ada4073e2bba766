//! `datacap demo`: the whole system in one command, with no setup. It starts the provider
//! sim with config/demo/scenario.toml (compiled in), keeps everything in a SQLite file in
//! a state directory, applies config/demo/tenants.toml, connects the user-by-user members
//! through the sim's OAuth consent screen, runs the worker until the first cycle has
//! settled, prints the status table and banners (every reason code of STATUS_MODEL.md
//! shows up), then keeps polling and serving `/healthz`, `/readyz` and `/metrics` until
//! Ctrl-C. `--once` stops after the table (tests use it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use datacap_connector::{Auth, Connector, ImportJob, OAuthClient};
use datacap_core::{Channel, MemberConnection};
use datacap_sim::{Scenario, Sim};
use datacap_store::{AttemptRecord, EncryptionKey, Store, StoreOptions, WriteOptions};
use datacap_worker::{CompanyCredentials, CredentialResolver};
use secrecy::SecretString;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::commands::migrate::say;
use crate::commands::run::{
    build_worker, init_logging, install_metrics, runtime, serve_and_poll, shutdown_on_signals,
    summary,
};
use crate::commands::status;
use crate::config::{self, Config};
use crate::credentials::FileAndEnvResolver;
use crate::notify::Notifier;

const SCENARIO: &str = include_str!("../../../../config/demo/scenario.toml");
const TENANTS: &str = include_str!("../../../../config/demo/tenants.toml");
const SIM_PUBLIC_KEY: &str =
    include_str!("../../../../config/sim/keys/FAKE-TEST-ONLY-google-service-account.pub.pem");
const SIM_PRIVATE_KEY: &str =
    include_str!("../../../../config/sim/keys/FAKE-TEST-ONLY-google-service-account.key.pem");
const KEY_FILE_NAME: &str = "FAKE-TEST-ONLY-google-service-account.pub.pem";
/// The demo's operator token for the Team members page, in its state directory.
pub(crate) const OPERATOR_TOKEN_FILE: &str = "web-operator-token";

/// Writes a secret readable by its owner only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Arguments of `datacap demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Stop after printing the first cycle's status table.
    #[arg(long)]
    once: bool,
    /// Where the demo keeps its database and FAKE credentials (default: a new directory
    /// under the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Where to serve /healthz, /readyz and /metrics while the demo runs.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let state = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => {
            std::env::temp_dir().join(format!("datacap-demo-{}", uuid::Uuid::new_v4().simple()))
        }
    };
    prepare_state(&state)?;
    runtime()?.block_on(demo(args, state))
}

/// Writes the scenario, the FAKE keys and secrets, and the tenants file into `state`.
fn prepare_state(state: &Path) -> anyhow::Result<()> {
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    std::fs::create_dir_all(state.join("sim/keys"))
        .and_then(|()| std::fs::create_dir_all(state.join("demo")))
        .with_context(|| format!("cannot create the state directory {}", state.display()))?;
    write(state.join("demo/scenario.toml"), SCENARIO)?;
    write(state.join("sim/keys").join(KEY_FILE_NAME), SIM_PUBLIC_KEY)?;
    let key = serde_json::json!({
        "type": "service_account",
        "client_email": "datacap@globex-sim.iam.gserviceaccount.com",
        "private_key": SIM_PRIVATE_KEY,
        "private_key_id": "demo-key",
    });
    write(state.join("globex-service-account.json"), &key.to_string())?;
    write(state.join("initech-client-secret"), "initech-secret")?;
    write(state.join("fabrikam-client-secret"), "fabrikam-secret")?;
    // FAKE, like every secret here: the demo's webhook endpoint is never sent to.
    write_private(
        &state.join("globex-webhook-secret"),
        "whsec_ZGF0YWNhcC1kZW1vLXdlYmhvb2stc2VjcmV0LTAwMDE=",
    )?;
    let tenants = TENANTS.replace("@STATE@", &state.display().to_string());
    write(state.join("tenants.toml"), &tenants)?;
    for name in [OPERATOR_TOKEN_FILE, "web-signing-key"] {
        let secret = hex::encode(datacap_web::auth::random_bytes()?);
        write_private(&state.join(name), &secret)?;
    }
    Ok(())
}

async fn demo(args: Args, state: PathBuf) -> anyhow::Result<ExitCode> {
    let scenario =
        Scenario::from_file(&state.join("demo/scenario.toml")).context("invalid demo scenario")?;
    let sim = Sim::start(scenario, "127.0.0.1:0".parse().context("loopback")?)
        .await
        .context("cannot start the sim")?;
    let e = sim.endpoints().clone();
    let database = state.join("demo.sqlite");
    let mut overrides: Vec<(String, String)> = [
        (
            "DATACAP_DATABASE__URL",
            format!("sqlite://{}", database.display()),
        ),
        ("DATACAP_GOOGLE__TOKEN_URL", e.google_token_url.clone()),
        ("DATACAP_GOOGLE__GMAIL_BASE", e.gmail_base.clone()),
        ("DATACAP_GOOGLE__CALENDAR_BASE", e.calendar_base.clone()),
        ("DATACAP_GOOGLE__DIRECTORY_BASE", e.directory_base.clone()),
        (
            "DATACAP_MICROSOFT__LOGIN_BASE",
            e.microsoft_login_base.clone(),
        ),
        ("DATACAP_MICROSOFT__GRAPH_BASE", e.graph_base.clone()),
        // A lively demo: quick polls and short backoffs.
        ("DATACAP_WORKER__EMAIL_INTERVAL", "30s".to_owned()),
        ("DATACAP_WORKER__CALENDAR_INTERVAL", "1m".to_owned()),
        ("DATACAP_WORKER__BACKOFF_BASE", "1s".to_owned()),
        ("DATACAP_WORKER__BACKOFF_CAP", "1m".to_owned()),
        ("DATACAP_WORKER__RECHECK_INTERVAL", "5m".to_owned()),
        ("DATACAP_WORKER__STALL_PASS_INTERVAL", "10s".to_owned()),
        ("DATACAP_HTTP__LISTEN", args.listen.to_string()),
        // The pages patch themselves every 5 s: changes show while you look.
        ("DATACAP_WEB__REFRESH", "5s".to_owned()),
        // The page and API need a token even here: the demo writes one into its state
        // directory and prints where (never the token), and lets initech's members use
        // the connect flow through the sim's consent screen.
        (
            "DATACAP_WEB__OPERATOR_TOKEN_FILE",
            state.join(OPERATOR_TOKEN_FILE).display().to_string(),
        ),
        (
            "DATACAP_WEB__SIGNING_KEY_FILE",
            state.join("web-signing-key").display().to_string(),
        ),
        ("DATACAP_WEB__PUBLIC_URL", format!("http://{}", args.listen)),
        (
            "DATACAP_GOOGLE__AUTHORIZE_URL",
            e.google_authorize_url.clone(),
        ),
        (
            "DATACAP_GOOGLE__OAUTH_CLIENT_ID",
            "initech-client.apps.googleusercontent.com".to_owned(),
        ),
        (
            "DATACAP_GOOGLE__OAUTH_CLIENT_SECRET_FILE",
            state.join("initech-client-secret").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    // Only the log settings come from the caller's environment.
    overrides.extend(std::env::vars().filter(|(name, _)| name.starts_with("DATACAP_LOG__")));
    let config = config::parse("", "datacap demo", overrides)?;
    // The demo has no config file to reload, so the filter stays as started.
    let _log_filter = init_logging(&config.log)?;

    let key_text = SecretString::from(
        (0..32)
            .map(|_| format!("{:02x}", fastrand::u8(..)))
            .collect::<String>(),
    );
    let key =
        EncryptionKey::parse("demo", &key_text).context("cannot make the demo's encryption key")?;
    let store = Store::connect(
        &format!("sqlite://{}", database.display()),
        StoreOptions {
            max_connections: 4,
            thresholds: config::thresholds(&config),
        },
    )
    .await
    .context("cannot open the demo database")?;
    store
        .migrate()
        .await
        .context("cannot migrate the demo database")?;
    let now = OffsetDateTime::now_utc();
    store
        .verify_key(&key, now)
        .await
        .context("encryption key check failed")?;
    let tenants_text = std::fs::read_to_string(state.join("tenants.toml"))
        .context("cannot read the demo tenants file")?;
    let tenants = datacap_store::parse_tenants(&tenants_text)
        .map_err(|error| crate::commands::apply::tenants_problems("demo tenants file", &error))?;
    store
        .apply_tenants(&tenants, now)
        .await
        .context("cannot apply the demo tenants")?;

    let sink = datacap_worker::store_token_sink(
        store.clone(),
        EncryptionKey::parse("demo", &key_text).context("cannot copy the demo's key")?,
    );
    let connectors = crate::wiring::connectors::build(&config, Some(sink))?;
    connect_members(&store, &key, &e, &connectors, now).await?;
    backdate_stuck_member(&store, &config, &connectors).await?;

    let web_key = EncryptionKey::parse("demo", &key_text).context("cannot copy the demo's key")?;
    let app = crate::wiring::web::build_app(&config, store.clone(), Some(web_key), &connectors)?;
    let worker = build_worker(&config, store.clone(), connectors.registry(), Some(key))?;
    let cancel = CancellationToken::new();
    shutdown_on_signals(cancel.clone(), Notifier::default())?;
    say(&format!(
        "datacap demo: sim at {}, database {}",
        e.base,
        database.display()
    ))?;
    first_cycle(&worker, &config, &cancel).await?;
    let report = store.status(None).await.context("cannot read the status")?;
    say(status::table(&report).trim_end())?;
    if !args.once && !cancel.is_cancelled() {
        say(&format!(
            "polling on; the Team members page at http://{listen}/ (sign in with the operator \
             token in {}), /healthz, /readyz and /metrics at http://{listen}; Ctrl-C stops",
            state.join(OPERATOR_TOKEN_FILE).display(),
            listen = config.http.listen
        ))?;
        let metrics = install_metrics()?;
        serve_and_poll(&worker, &config, metrics, app, cancel, Notifier::default()).await?;
    }
    store.close().await;
    sim.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Runs cycles until the first has settled: transient outcomes are retried (after their
/// backoff) until they turn red, so the table shows `technical_failure` too. Bounded by
/// the number of cycles and a deadline.
async fn first_cycle(
    worker: &datacap_worker::Worker,
    config: &Config,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let needed = config.worker.red_after_consecutive_failures;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut transient_cycles = 0;
    let mut cycles = 0;
    while transient_cycles < needed && Instant::now() < deadline && cycles < 1000 {
        cycles += 1;
        let report = worker
            .run_once(cancel.clone())
            .await
            .context("the poll cycle failed")?;
        if cancel.is_cancelled() {
            break;
        }
        if report.total_attempts() > 0 {
            say(&summary(&report))?;
        }
        let transients = report
            .attempts
            .iter()
            .filter(|(outcome, _)| outcome.is_transient())
            .count();
        if transients > 0 {
            transient_cycles += 1;
        } else if report.total_attempts() == 0 {
            // Nothing was due: the backoff of a transient job is still running.
            tokio::time::sleep(Duration::from_millis(250)).await;
        } else if cycles > 1 {
            break;
        }
    }
    Ok(())
}

/// Signs the user-by-user members in through the sim's consent screen, as the connect
/// flow of the Team members page will: peter connects; revoked's token was revoked at
/// Google since (the sim does not know it any more); newbie never connects.
async fn connect_members(
    store: &Store,
    key: &EncryptionKey,
    endpoints: &datacap_sim::Endpoints,
    connectors: &crate::wiring::connectors::Connectors,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let google = connectors.google.as_ref().context("no google connector")?;
    let client = OAuthClient {
        client_id: "initech-client.apps.googleusercontent.com".to_owned(),
        client_secret: SecretString::from("initech-secret"),
        tenant: None,
    };
    let redirect = "http://127.0.0.1:9464/oauth/google/callback";
    let scopes = format!(
        "{} {}",
        datacap_google::GMAIL_SCOPE,
        datacap_google::CALENDAR_SCOPE
    );
    let http = datacap_connector::build_client(&datacap_connector::HttpLimits::default())
        .context("cannot build an http client")?;
    let answer = http
        .get(&endpoints.google_authorize_url)
        .query(&[
            ("client_id", client.client_id.as_str()),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("scope", scopes.as_str()),
            ("login_hint", "peter@initech.example"),
            ("state", "demo"),
        ])
        .send()
        .await
        .context("the sim's consent screen did not answer")?;
    let location = answer
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let query = location.split_once('?').map_or("", |(_, query)| query);
    let code = form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "code")
        .map(|(_, value)| value.into_owned())
        .context("the sim's consent screen gave no code")?;
    let grant = google
        .exchange_code(&client, &code, redirect, None)
        .await
        .context("the code exchange failed")?;
    let granted: Vec<String> = grant.scope.split_whitespace().map(str::to_owned).collect();
    store
        .put_member_grant(
            "peter",
            MemberConnection::Connected,
            &granted,
            Some(&grant.refresh_token),
            key,
            now,
        )
        .await
        .context("cannot store peter's grant")?;
    store
        .put_member_grant(
            "revoked",
            MemberConnection::Connected,
            &granted,
            Some(&SecretString::from("1//demo-token-the-member-revoked")),
            key,
            now,
        )
        .await
        .context("cannot store revoked's grant")?;
    Ok(())
}

/// Gives `stuck` one real import, dated two hours back, and pushes its next poll a week
/// out (as after an outage): the stall pass then shows `import_stalled`.
async fn backdate_stuck_member(
    store: &Store,
    config: &Config,
    connectors: &crate::wiring::connectors::Connectors,
) -> anyhow::Result<()> {
    let google = connectors.google.as_ref().context("no google connector")?;
    let context = store
        .job_context("stuck")
        .await
        .context("cannot read stuck's settings")?
        .context("the demo tenants have no member stuck")?;
    let auth = FileAndEnvResolver::new(config)
        .resolve(&CompanyCredentials {
            company_id: &context.company_id,
            provider: context.company.provider,
            connection_mode: context.company.connection_mode,
            refs: &context.credential_refs,
        })
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let Auth::GoogleServiceAccount(service_account) = auth else {
        anyhow::bail!("globex has no service account");
    };
    let then = OffsetDateTime::now_utc() - time::Duration::hours(2);
    for channel in [Channel::Email, Channel::Calendar] {
        let attempt_id = uuid::Uuid::now_v7();
        let attempt = google
            .import(&ImportJob {
                attempt_id,
                company_id: context.company_id.clone(),
                member_id: context.member_id.clone(),
                member_address: context.member_email.clone(),
                channel,
                auth: Auth::GoogleServiceAccount(service_account.clone()),
                refresh_token: None,
                cursor: None,
                now: then,
                gate: datacap_connector::Gate::open(),
            })
            .await;
        let record = AttemptRecord {
            attempt_id,
            member_id: context.member_id.clone(),
            channel,
            started_at: then,
            finished_at: then,
            outcome: attempt.outcome,
            http_status: attempt.http_status,
            provider_error_code: attempt.error_code,
            provider_error_message: attempt.error_message,
            provider_request_id: attempt.request_id,
            email_items: attempt.email_items,
            calendar_items: attempt.calendar_items,
            next_cursor: attempt.next_cursor,
            next_due_at: OffsetDateTime::now_utc() + time::Duration::days(7),
            lease_owner: None,
        };
        store
            .record_attempt(&record, then, &WriteOptions::default())
            .await
            .context("cannot write stuck's first import")?;
    }
    Ok(())
}
