//! The worker's throughput benchmark: polls per second and worker CPU per poll for N
//! member-channels (default 10,000; `DATACAP_BENCH_JOBS`) against the sim, on SQLite and
//! on PostgreSQL (`DATACAP_TEST_POSTGRES_URL`, default the local server), plus peak RSS.
//!
//! The sim runs in this process on its own runtime whose threads are named `sim`; the
//! worker's CPU is the process's CPU minus those threads' (read from /proc). Two cycles
//! are timed: the first full import (one message and one event per mailbox), then an
//! incremental cycle over the same jobs. Prints figures; asserts nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datacap_connector::ServiceAccountKey;
use datacap_google::{GoogleConfig, GoogleConnector};
use datacap_store::{Store, StoreOptions};
use datacap_worker::{
    CompanyAuth, CompanyCredentials, Connectors, CredentialError, CredentialResolver,
    ScheduleConfig, Worker, WorkerConfig,
};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

const KEY: &str =
    include_str!("../../../config/sim/keys/FAKE-TEST-ONLY-google-service-account.key.pem");

struct BenchResolver;

impl CredentialResolver for BenchResolver {
    fn resolve(&self, _company: &CompanyCredentials<'_>) -> Result<CompanyAuth, CredentialError> {
        Ok(CompanyAuth::GoogleServiceAccount(Arc::new(
            ServiceAccountKey {
                client_email: "datacap@bench-sim.iam.gserviceaccount.com".to_owned(),
                private_key_pem: SecretString::from(KEY),
                private_key_id: None,
                directory_admin: None,
            },
        )))
    }
}

fn scenario(members: usize) -> String {
    let mut text = String::from(
        "seed = 1\n[[tenant]]\nname = \"bench\"\nprovider = \"google\"\ndomain = \"bench.example\"\n\
         [tenant.service_account]\nclient_email = \"datacap@bench-sim.iam.gserviceaccount.com\"\n\
         client_id = \"1\"\npublic_key = \"keys/FAKE-TEST-ONLY-google-service-account.pub.pem\"\n\
         delegated_scopes = [\"https://www.googleapis.com/auth/gmail.readonly\", \"https://www.googleapis.com/auth/calendar.readonly\"]\n",
    );
    for index in 0..members {
        text.push_str(&format!(
            "[[tenant.user]]\nemail = \"u{index}@bench.example\"\nmessages = 1\nevents = 1\n"
        ));
    }
    text
}

fn tenants(members: usize) -> String {
    let mut text = String::from(
        "[[companies]]\nid = \"bench\"\nprovider = \"google_workspace\"\nconnection_mode = \"company_wide\"\n\
         settings = { permission_given = true, email_authorized = true, calendar_authorized = true }\n\
         credentials = { service_account_key_file = \"/unused\" }\n",
    );
    for index in 0..members {
        text.push_str(&format!(
            "[[companies.members]]\nid = \"u{index}\"\nemail = \"u{index}@bench.example\"\n"
        ));
    }
    text
}

/// CPU seconds of this process and of its threads named `sim`.
fn cpu_seconds() -> (f64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    let read = |path: &str| -> Option<f64> {
        let stat = std::fs::read_to_string(path).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let user: f64 = fields.get(11)?.parse().ok()?;
        let system: f64 = fields.get(12)?.parse().ok()?;
        Some((user + system) / ticks)
    };
    let total = read("/proc/self/stat").unwrap_or(0.0);
    let mut sim = 0.0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let path = task.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if comm.trim() == "sim" {
                sim += read(&path.join("stat").display().to_string()).unwrap_or(0.0);
            }
        }
    }
    (total, sim)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
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

fn main() {
    let members: usize = std::env::var("DATACAP_BENCH_JOBS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10_000)
        / 2;
    let sim_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sim")
        .enable_all()
        .build()
        .unwrap();
    let scenario = datacap_sim::Scenario::from_toml(
        &scenario(members),
        "bench.toml",
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/sim")),
    )
    .expect("scenario");
    let sim = sim_runtime
        .block_on(datacap_sim::Sim::start(
            scenario,
            "127.0.0.1:0".parse().unwrap(),
        ))
        .expect("sim");
    let endpoints = sim.endpoints().clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("worker")
        .enable_all()
        .build()
        .unwrap();
    let tenants = datacap_store::parse_tenants(&tenants(members)).expect("tenants");
    let postgres_admin = std::env::var("DATACAP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let database = format!("datacap_bench_{}", uuid::Uuid::new_v4().simple());
    let backends = [
        (
            "sqlite",
            format!("sqlite://{}", dir.path().join("bench.sqlite").display()),
        ),
        ("postgres", {
            let base = postgres_admin
                .rsplit_once('/')
                .map_or(postgres_admin.as_str(), |(b, _)| b);
            format!("{base}/{database}")
        }),
    ];
    for (name, url) in backends {
        runtime.block_on(async {
            if name == "postgres" {
                use sqlx::Connection;
                let mut admin = sqlx::PgConnection::connect(&postgres_admin).await.expect("postgres");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
                    .execute(&mut admin)
                    .await
                    .expect("create database");
            }
            let store = Store::connect(&url, StoreOptions { max_connections: 8, ..StoreOptions::default() })
                .await
                .expect("store");
            store.migrate().await.expect("migrate");
            store
                .apply_tenants(&tenants, time::OffsetDateTime::now_utc())
                .await
                .expect("apply");
            let google = GoogleConnector::new(GoogleConfig::default().with_endpoints(
                &endpoints.google_token_url,
                &endpoints.gmail_base,
                &endpoints.calendar_base,
                &endpoints.directory_base,
            ))
            .expect("connector");
            let config = WorkerConfig {
                concurrency: 64,
                claim_batch: 256,
                tenant_rate_per_second: 1_000_000,
                tenant_burst: 1_000_000,
                schedule: ScheduleConfig {
                    email_interval: Duration::from_secs(1),
                    calendar_interval: Duration::from_secs(1),
                    jitter: 0.0,
                    ..ScheduleConfig::default()
                },
                ..WorkerConfig::default()
            };
            let worker = Worker::new(
                store.clone(),
                Connectors { google: Some(Arc::new(google)), microsoft: None },
                Arc::new(BenchResolver),
                None,
                config,
            )
            .expect("worker");
            for cycle in ["full import", "incremental"] {
                if cycle == "incremental" {
                    tokio::time::sleep(Duration::from_millis(1100)).await;
                }
                let (cpu_before, sim_before) = cpu_seconds();
                let started = Instant::now();
                let report = worker.run_once(CancellationToken::new()).await.expect("cycle");
                let elapsed = started.elapsed().as_secs_f64();
                let (cpu_after, sim_after) = cpu_seconds();
                let polls = f64::from(report.total_attempts()).max(1.0);
                let worker_cpu = (cpu_after - cpu_before) - (sim_after - sim_before);
                #[allow(clippy::print_stdout)]
                {
                    println!(
                        "{name:8} {cycle:12}: {polls} polls in {elapsed:.1} s = {:.0} polls/s; worker CPU {:.0} µs/poll (sim {:.0} µs/poll); outcomes {:?}; peak RSS {:.0} MiB",
                        polls / elapsed,
                        worker_cpu / polls * 1e6,
                        (sim_after - sim_before) / polls * 1e6,
                        report.attempts.iter().map(|(o, n)| (o.as_str(), *n)).collect::<BTreeMap<_, _>>(),
                        peak_rss_mib(),
                    );
                }
            }
            store.close().await;
            if name == "postgres" {
                use sqlx::Connection;
                let mut admin = sqlx::PgConnection::connect(&postgres_admin).await.expect("postgres");
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")))
                    .execute(&mut admin)
                    .await;
            }
        });
    }
    sim_runtime.block_on(sim.shutdown());
}
