//! `datacap bench`: the throughput harness. It starts the provider sim as a child process
//! (`datacap sim`, so its CPU and memory are its own) with N Google Workspace members,
//! sets up a throwaway database (a SQLite file, or a database created on a PostgreSQL
//! server and dropped after), runs the worker for a full cycle (first import of every
//! mailbox) and an incremental cycle, and measures, per cycle: polls/s, the worker's CPU
//! per poll, p50/p99 attempt latency (connector start to finish, from the attempt rows),
//! database rows written per second, and the sim's and (on a local server) PostgreSQL's
//! CPU per poll. Then a plain HTTP load loop (as many connections as the worker's
//! concurrency) repeating the requests an incremental poll makes (Gmail `history.list`,
//! Calendar `events.list` with a sync token) gives the sim's raw request rate, and the
//! ratio worker polls/s ÷ raw requests/s. Peak RSS is this process's (the worker; the load loop adds little).
//! Figures go to stdout and, with `--out`, to a JSON file. docs/performance.md says how
//! to run it and what the figures were.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use datacap_connector::http::{HttpLimits, build_client, install_crypto_provider};
use datacap_connector::{Auth, ServiceAccountKey};
use datacap_core::{CompanySettings, ConnectionMode, MemberSettings, Provider};
use datacap_google::{CALENDAR_SCOPE, GMAIL_SCOPE, GoogleConfig, GoogleConnector};
use datacap_store::{Store, StoreOptions, TenantCompany, TenantMember, Tenants};
use datacap_worker::{
    CompanyCredentials, CredentialError, CredentialResolver, ScheduleConfig, Worker, WorkerConfig,
};
use secrecy::SecretString;
use serde::Serialize;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use crate::commands::migrate::say;
use crate::commands::run::runtime;

const SIM_PUBLIC_KEY: &str =
    include_str!("../../../../config/sim/keys/FAKE-TEST-ONLY-google-service-account.pub.pem");
const SIM_PRIVATE_KEY: &str =
    include_str!("../../../../config/sim/keys/FAKE-TEST-ONLY-google-service-account.key.pem");
const CLIENT_EMAIL: &str = "datacap@bench-sim.iam.gserviceaccount.com";
const DOMAIN: &str = "bench.example";

/// Arguments of `datacap bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Members in the sim and the database; each has an email and a calendar channel, so
    /// a cycle polls twice as many member-channels.
    #[arg(long, default_value_t = 5_000)]
    members: usize,
    /// `sqlite` (a file in a temporary directory) or a `postgres://` URL of a server on
    /// which a throwaway database is created and dropped afterwards.
    #[arg(long, default_value = "sqlite")]
    database: String,
    /// Messages and events per mailbox in the sim (0 for a reduced payload at 1M).
    #[arg(long, default_value_t = 1)]
    items: usize,
    /// Attempts in flight at most (the worker's concurrency).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long the raw HTTP load loop against the sim runs, in seconds.
    #[arg(long, default_value_t = 5)]
    load_seconds: u64,
    /// Write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report {
    members: usize,
    member_channels: usize,
    database: &'static str,
    concurrency: usize,
    items_per_mailbox: usize,
    setup_seconds: f64,
    cycles: Vec<CycleFigures>,
    sim_raw_requests_per_second: f64,
    /// Full-cycle polls/s ÷ the sim's raw request rate.
    ratio_full: f64,
    /// Incremental-cycle polls/s ÷ the sim's raw request rate.
    ratio_incremental: f64,
    peak_rss_mib: f64,
    /// The PostgreSQL server's settings that matter at scale (empty on SQLite).
    database_settings: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct CycleFigures {
    cycle: &'static str,
    polls: u64,
    seconds: f64,
    polls_per_second: f64,
    worker_cpu_us_per_poll: f64,
    sim_cpu_us_per_poll: f64,
    /// PostgreSQL's CPU per poll (every `postgres` process on this machine: the server
    /// must be local and otherwise idle); `None` on SQLite (it runs inside the worker, so
    /// the worker's figure includes it) or when no local server process is readable.
    database_cpu_us_per_poll: Option<f64>,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    rows_written: i64,
    rows_per_second: f64,
    sim_requests_per_poll: f64,
    own_failures: u32,
    outcomes: std::collections::BTreeMap<String, u32>,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.members == 0 || args.concurrency == 0 {
        anyhow::bail!("--members and --concurrency must be at least 1");
    }
    let postgres = match args.database.as_str() {
        "sqlite" => false,
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => true,
        _ => anyhow::bail!("--database must be `sqlite` or a postgres:// url"),
    };
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut sim = SimProcess::start(dir.path(), args.members, args.items)?;
    let result = runtime()?.block_on(bench(&args, postgres, dir.path(), &sim));
    sim.stop();
    let report = result?;
    let json = serde_json::to_string_pretty(&report).context("cannot encode the figures")?;
    if let Some(out) = &args.out {
        std::fs::write(out, format!("{json}\n"))
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    print_table(&report)?;
    Ok(ExitCode::SUCCESS)
}

fn print_table(report: &Report) -> anyhow::Result<()> {
    say(&format!(
        "{} member-channels ({} members), {}, concurrency {}, setup {:.1} s",
        report.member_channels,
        report.members,
        report.database,
        report.concurrency,
        report.setup_seconds
    ))?;
    if !report.database_settings.is_empty() {
        let settings: Vec<String> = report
            .database_settings
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        say(&format!("server: {}", settings.join(" ")))?;
    }
    for cycle in &report.cycles {
        say(&format!(
            "{:<12} {:>7} polls in {:>6.1} s = {:>6.0} polls/s; worker CPU {:>5.0} µs/poll; sim CPU {:>5.0} µs/poll; database CPU {} µs/poll; latency p50 {:.1} ms p99 {:.1} ms; {:.0} rows/s; {:.1} sim requests/poll; own failures {}",
            cycle.cycle,
            cycle.polls,
            cycle.seconds,
            cycle.polls_per_second,
            cycle.worker_cpu_us_per_poll,
            cycle.sim_cpu_us_per_poll,
            cycle
                .database_cpu_us_per_poll
                .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.0}")),
            cycle.latency_p50_ms,
            cycle.latency_p99_ms,
            cycle.rows_per_second,
            cycle.sim_requests_per_poll,
            cycle.own_failures,
        ))?;
    }
    say(&format!(
        "sim raw rate {:.0} requests/s (an incremental poll's requests, {} connections); ratio polls/s ÷ raw: full {:.2}, incremental {:.2}; peak RSS {:.0} MiB",
        report.sim_raw_requests_per_second,
        report.concurrency,
        report.ratio_full,
        report.ratio_incremental,
        report.peak_rss_mib
    ))
}

/// The sim, run as `datacap sim` in a child process.
struct SimProcess {
    child: Child,
    base: String,
}

impl SimProcess {
    fn start(dir: &Path, members: usize, items: usize) -> anyhow::Result<SimProcess> {
        std::fs::create_dir_all(dir.join("keys")).context("cannot create the sim directory")?;
        std::fs::write(
            dir.join("keys/FAKE-TEST-ONLY-google-service-account.pub.pem"),
            SIM_PUBLIC_KEY,
        )
        .context("cannot write the sim key")?;
        let scenario = dir.join("scenario.toml");
        std::fs::write(&scenario, scenario_text(members, items))
            .context("cannot write the sim scenario")?;
        // A free port: bind, read it, let it go for the child.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("no free port for the sim")?
            .port();
        let exe = std::env::current_exe().context("cannot find the datacap binary")?;
        let child = std::process::Command::new(exe)
            .arg("sim")
            .arg("--scenario")
            .arg(&scenario)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the sim")?;
        let mut sim = SimProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        // Large scenarios take a while to build: wait generously.
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = sim.child.try_wait() {
                anyhow::bail!("the sim exited before serving: {status}");
            }
            if started.elapsed() > Duration::from_secs(600) {
                sim.stop();
                anyhow::bail!("the sim did not start serving within 600 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(sim)
    }

    fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(&format!("/proc/{}/stat", self.child.id()))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scenario_text(members: usize, items: usize) -> String {
    let mut text = format!(
        "seed = 1\n[[tenant]]\nname = \"bench\"\nprovider = \"google\"\ndomain = \"{DOMAIN}\"\n\
         [tenant.service_account]\nclient_email = \"{CLIENT_EMAIL}\"\n\
         client_id = \"1\"\npublic_key = \"keys/FAKE-TEST-ONLY-google-service-account.pub.pem\"\n\
         delegated_scopes = [\"https://www.googleapis.com/auth/gmail.readonly\", \"https://www.googleapis.com/auth/calendar.readonly\"]\n",
    );
    for index in 0..members {
        text.push_str(&format!(
            "[[tenant.user]]\nemail = \"u{index}@{DOMAIN}\"\nmessages = {items}\nevents = {items}\n"
        ));
    }
    text
}

/// The company of the sim's mailboxes, built directly (no tenants file to parse: at
/// half a million members that would cost seconds and hundreds of MiB of peak RSS that
/// the worker's figure would then include).
fn tenants(members: usize) -> Tenants {
    // The tenants file's defaults (no seat, recording off, both imports on).
    let member_settings = MemberSettings {
        has_recording_seat: false,
        recording_enabled: false,
        email_import: true,
        calendar_import: true,
        import_non_recorded_meetings: false,
        connection: None,
    };
    Tenants {
        companies: vec![TenantCompany {
            id: "bench".to_owned(),
            name: "bench".to_owned(),
            settings: CompanySettings {
                provider: Provider::GoogleWorkspace,
                connection_mode: ConnectionMode::CompanyWide,
                permission_given: true,
                email_authorized: true,
                calendar_authorized: true,
                import_email: true,
                import_calendar: true,
                import_non_recorded_meetings: false,
            },
            credentials: [("service_account_key_file".to_owned(), "/unused".to_owned())].into(),
            webhooks: Vec::new(),
            members: (0..members)
                .map(|index| TenantMember {
                    id: format!("u{index}"),
                    email: format!("u{index}@{DOMAIN}"),
                    aliases: Vec::new(),
                    settings: member_settings,
                    active: true,
                })
                .collect(),
        }],
    }
}

fn service_account() -> ServiceAccountKey {
    ServiceAccountKey {
        client_email: CLIENT_EMAIL.to_owned(),
        private_key_pem: SecretString::from(SIM_PRIVATE_KEY),
        private_key_id: None,
        directory_admin: None,
    }
}

/// Every company gets the sim's FAKE service account.
struct BenchResolver;

impl CredentialResolver for BenchResolver {
    fn resolve(&self, _company: &CompanyCredentials<'_>) -> Result<Auth, CredentialError> {
        Ok(Auth::GoogleServiceAccount(Arc::new(service_account())))
    }
}

/// Direct SQL for the figures the store API does not give (row counts, latencies).
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn count(&self, table: &str) -> anyhow::Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        Ok(match self {
            Raw::Sqlite(pool) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?
            }
            Raw::Postgres(pool) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    /// Rows written so far: attempts, items and history rows, plus the sync-state row and
    /// the three status rows every attempt updates.
    async fn rows(&self) -> anyhow::Result<i64> {
        let attempts = self.count("import_attempts").await?;
        Ok(attempts * 5
            + self.count("email_items").await?
            + self.count("calendar_items").await?
            + self.count("status_changes").await?)
    }

    /// The latest attempt id (UUIDv7 ids sort by time).
    async fn last_attempt_id(&self) -> anyhow::Result<String> {
        let sql = "SELECT COALESCE(MAX(id), '') FROM import_attempts";
        Ok(match self {
            Raw::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Raw::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        })
    }

    /// Seconds from start to finish of every attempt after `after`, sorted.
    async fn latencies(&self, after: &str) -> anyhow::Result<Vec<f64>> {
        let mut latencies: Vec<f64> = match self {
            Raw::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT (julianday(finished_at) - julianday(started_at)) * 86400.0 \
                     FROM import_attempts WHERE id > $1",
                )
                .bind(after)
                .fetch_all(pool)
                .await?
            }
            Raw::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT EXTRACT(EPOCH FROM finished_at - started_at)::float8 \
                     FROM import_attempts WHERE id > $1",
                )
                .bind(after)
                .fetch_all(pool)
                .await?
            }
        };
        latencies.sort_by(f64::total_cmp);
        Ok(latencies)
    }

    async fn close(&self) {
        match self {
            Raw::Sqlite(pool) => pool.close().await,
            Raw::Postgres(pool) => pool.close().await,
        }
    }
}

fn percentile_ms(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)] * 1000.0
}

async fn bench(
    args: &Args,
    postgres: bool,
    dir: &Path,
    sim: &SimProcess,
) -> anyhow::Result<Report> {
    let throwaway = format!("datacap_bench_{}", uuid::Uuid::new_v4().simple());
    let url = if postgres {
        let mut admin = sqlx::PgConnection::connect(&args.database)
            .await
            .context("cannot connect to the --database server")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {throwaway}")))
            .execute(&mut admin)
            .await
            .context("cannot create the throwaway database")?;
        let base = args
            .database
            .rsplit_once('/')
            .map_or(args.database.as_str(), |(base, _)| base);
        format!("{base}/{throwaway}")
    } else {
        format!("sqlite://{}", dir.join("bench.sqlite").display())
    };
    let result = measure(args, &url, sim).await;
    if postgres && let Ok(mut admin) = sqlx::PgConnection::connect(&args.database).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {throwaway} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
    }
    result
}

async fn measure(args: &Args, url: &str, sim: &SimProcess) -> anyhow::Result<Report> {
    let setup = Instant::now();
    let store = Store::connect(
        url,
        StoreOptions {
            max_connections: 8,
            ..StoreOptions::default()
        },
    )
    .await
    .context("cannot open the bench database")?;
    store.migrate().await?;
    store
        .apply_tenants(&tenants(args.members), time::OffsetDateTime::now_utc())
        .await?;
    let raw = if url.starts_with("sqlite") {
        Raw::Sqlite(sqlx::SqlitePool::connect(url).await?)
    } else {
        Raw::Postgres(sqlx::PgPool::connect(url).await?)
    };
    let setup_seconds = setup.elapsed().as_secs_f64();
    let database_settings = store
        .server_settings()
        .await
        .context("cannot read the server's settings")?
        .into_iter()
        .collect();

    let base = &sim.base;
    let google = GoogleConnector::new(GoogleConfig::default().with_endpoints(
        format!("{base}/google/token"),
        format!("{base}/google/gmail/v1"),
        format!("{base}/google/calendar/v3"),
        format!("{base}/google/admin/directory/v1"),
    ))?;
    let interval = Duration::from_secs(1);
    let config = WorkerConfig {
        concurrency: args.concurrency,
        claim_batch: 256,
        tenant_rate_per_second: 1_000_000,
        tenant_burst: 1_000_000,
        schedule: ScheduleConfig {
            email_interval: interval,
            calendar_interval: interval,
            jitter: 0.0,
            ..ScheduleConfig::default()
        },
        ..WorkerConfig::default()
    };
    let worker = Worker::new(
        store.clone(),
        datacap_connector::Registry::new().with(Arc::new(google)),
        Arc::new(BenchResolver),
        None,
        config,
    )?;
    let client = build_client(&HttpLimits::default())?;
    let mut cycles = Vec::new();
    for cycle in ["full", "incremental"] {
        if cycle == "incremental" {
            // Everything is due again one interval after its first poll.
            tokio::time::sleep(interval + Duration::from_millis(100)).await;
        }
        let requests_before = sim_requests(&client, base).await;
        let rows_before = raw.rows().await?;
        let last_before = raw.last_attempt_id().await?;
        let (own_before, sim_before) = (cpu_seconds_of("/proc/self/stat"), sim.cpu_seconds());
        let database_before = postgres_cpu_seconds(url);
        let started = Instant::now();
        let report = worker.run_once(CancellationToken::new()).await?;
        let seconds = started.elapsed().as_secs_f64();
        let (own_after, sim_after) = (cpu_seconds_of("/proc/self/stat"), sim.cpu_seconds());
        let database_after = postgres_cpu_seconds(url);
        let requests = sim_requests(&client, base).await - requests_before;
        let rows = raw.rows().await? - rows_before;
        let latencies = raw.latencies(&last_before).await?;
        let polls = u64::from(report.total_attempts());
        let per_poll = |value: f64| value / polls.max(1) as f64;
        cycles.push(CycleFigures {
            cycle,
            polls,
            seconds,
            polls_per_second: polls as f64 / seconds,
            worker_cpu_us_per_poll: per_poll((own_after - own_before) * 1e6),
            sim_cpu_us_per_poll: per_poll((sim_after - sim_before) * 1e6),
            database_cpu_us_per_poll: database_before
                .zip(database_after)
                .map(|(before, after)| per_poll((after - before) * 1e6)),
            latency_p50_ms: percentile_ms(&latencies, 0.5),
            latency_p99_ms: percentile_ms(&latencies, 0.99),
            rows_written: rows,
            rows_per_second: rows as f64 / seconds,
            sim_requests_per_poll: per_poll(requests as f64),
            own_failures: report.own_failures,
            outcomes: report
                .attempts
                .iter()
                .map(|(outcome, count)| (outcome.as_str().to_owned(), *count))
                .collect(),
        });
    }
    raw.close().await;
    store.close().await;

    let raw_rate = raw_request_rate(&client, base, args).await?;
    let ratio = |cycle: usize| {
        cycles
            .get(cycle)
            .map_or(0.0, |figures| figures.polls_per_second / raw_rate.max(1e-9))
    };
    Ok(Report {
        members: args.members,
        member_channels: args.members * 2,
        database: if url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgresql"
        },
        concurrency: args.concurrency,
        items_per_mailbox: args.items,
        setup_seconds,
        ratio_full: ratio(0),
        ratio_incremental: ratio(1),
        cycles,
        sim_raw_requests_per_second: raw_rate,
        peak_rss_mib: peak_rss_mib(),
        database_settings,
    })
}

/// Requests the sim has answered so far (its `/_sim/stats` total), 0 when unreadable.
async fn sim_requests(client: &reqwest::Client, base: &str) -> u64 {
    let Ok(response) = client.get(format!("{base}/_sim/stats")).send().await else {
        return 0;
    };
    let Ok(stats) = response.json::<serde_json::Value>().await else {
        return 0;
    };
    stats["requests_total"].as_u64().unwrap_or(0)
}

/// Asks the sim for an access token for `subject` and `scope` (JWT bearer, as the
/// connector does).
async fn sim_token(
    client: &reqwest::Client,
    base: &str,
    subject: &str,
    scope: &str,
) -> anyhow::Result<String> {
    let token_url = format!("{base}/google/token");
    let assertion = datacap_google::service_account_assertion(
        &service_account(),
        subject,
        scope,
        &token_url,
        time::OffsetDateTime::now_utc(),
    )
    .context("cannot sign the sim assertion")?;
    let token: serde_json::Value = client
        .post(&token_url)
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ])
        .send()
        .await?
        .json()
        .await?;
    Ok(token["access_token"]
        .as_str()
        .context("the sim gave no access token")?
        .to_owned())
}

/// One load-loop connection's request: the URL and its bearer token.
struct LoadRequest {
    url: String,
    query: Vec<(&'static str, String)>,
    access: String,
}

/// The request an incremental poll of `channel` makes for mailbox `subject`, with the
/// cursor a first pass gives: Gmail `history.list` from the profile's history id, or
/// Calendar `events.list` with the sync token of a full listing.
async fn incremental_request(
    client: &reqwest::Client,
    base: &str,
    subject: &str,
    email: bool,
) -> anyhow::Result<LoadRequest> {
    let page_size = GoogleConfig::default().page_size.to_string();
    if email {
        let access = sim_token(client, base, subject, GMAIL_SCOPE).await?;
        let gmail = format!("{base}/google/gmail/v1/users/{subject}");
        let profile: serde_json::Value = client
            .get(format!("{gmail}/profile"))
            .bearer_auth(&access)
            .send()
            .await?
            .json()
            .await?;
        let history_id = profile["historyId"]
            .as_str()
            .context("the sim's profile has no historyId")?
            .to_owned();
        return Ok(LoadRequest {
            url: format!("{gmail}/history"),
            query: vec![
                ("startHistoryId", history_id),
                ("historyTypes", "messageAdded".to_owned()),
                ("maxResults", page_size),
            ],
            access,
        });
    }
    let access = sim_token(client, base, subject, CALENDAR_SCOPE).await?;
    let url = format!("{base}/google/calendar/v3/calendars/primary/events");
    let mut page_token: Option<String> = None;
    // A first pass, page by page (bounded), to its sync token.
    for _ in 0..1_000 {
        let mut query = vec![
            ("maxResults", page_size.clone()),
            ("singleEvents", "true".to_owned()),
        ];
        if let Some(token) = &page_token {
            query.push(("pageToken", token.clone()));
        }
        let page: serde_json::Value = client
            .get(&url)
            .query(&query)
            .bearer_auth(&access)
            .send()
            .await?
            .json()
            .await?;
        if let Some(sync_token) = page["nextSyncToken"].as_str() {
            return Ok(LoadRequest {
                url,
                query: vec![
                    ("maxResults", page_size),
                    ("singleEvents", "true".to_owned()),
                    ("syncToken", sync_token.to_owned()),
                ],
                access,
            });
        }
        page_token = Some(
            page["nextPageToken"]
                .as_str()
                .context("a calendar page with neither nextPageToken nor nextSyncToken")?
                .to_owned(),
        );
    }
    anyhow::bail!("the sim's calendar listing did not end within 1,000 pages")
}

/// The sim's raw rate: `concurrency` connections, each repeating the request an
/// incremental poll makes (Gmail `history.list` or Calendar `events.list` with a sync
/// token, half the connections each, as a cycle polls both channels) for its own mailbox
/// with its own access token, for `load_seconds`. The same requests as the worker's
/// incremental cycle, with nothing else around them.
async fn raw_request_rate(
    client: &reqwest::Client,
    base: &str,
    args: &Args,
) -> anyhow::Result<f64> {
    install_crypto_provider();
    let mut requests = Vec::with_capacity(args.concurrency);
    for connection in 0..args.concurrency {
        let subject = format!("u{}@{DOMAIN}", connection % args.members);
        requests.push(incremental_request(client, base, &subject, connection % 2 == 0).await?);
    }
    let answered = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.load_seconds.max(1));
    let started = Instant::now();
    let mut loops = Vec::new();
    for request in requests {
        let (client, answered) = (client.clone(), answered.clone());
        loops.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let sent = client
                    .get(&request.url)
                    .query(&request.query)
                    .bearer_auth(&request.access)
                    .send()
                    .await;
                let ok = match sent {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if ok {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in loops {
        let _ = task.await;
    }
    Ok(answered.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// User plus system CPU seconds from a `/proc/…/stat` file (0 when unreadable).
fn cpu_seconds_of(path: &str) -> f64 {
    stat_seconds(path, &[11, 12])
}

/// User plus system CPU seconds of a process and of its children it has waited for.
fn cpu_seconds_with_children(path: &str) -> f64 {
    stat_seconds(path, &[11, 12, 13, 14])
}

/// The sum of clock-tick fields of a `/proc/…/stat` file, counted from the field after the
/// command name (`utime` is 11, `stime` 12, `cutime` 13, `cstime` 14), in seconds.
fn stat_seconds(path: &str, indexes: &[usize]) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    indexes.iter().map(|index| field(*index)).sum::<f64>() / ticks
}

/// CPU seconds of every `postgres` process on this machine (the server's backends,
/// writers and checkpointer), when `url` is a PostgreSQL one and any is readable. Each
/// process counts its children that ended too (the postmaster's reaped backends: a pool
/// that closes a connection mid-cycle must not take its CPU out of the total).
fn postgres_cpu_seconds(url: &str) -> Option<f64> {
    if url.starts_with("sqlite") {
        return None;
    }
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let path = entry.path();
        let is_postgres = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|comm| comm.trim_end() == "postgres");
        if is_postgres {
            let stat = path.join("stat");
            *total.get_or_insert(0.0) += cpu_seconds_with_children(&stat.to_string_lossy());
        }
    }
    total
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
