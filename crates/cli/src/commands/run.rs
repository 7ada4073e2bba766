//! `datacap run`: the daemon. It builds the worker from the configuration (connectors at
//! the configured base URLs, the credential resolver, the encryption key), serves
//! `/healthz`, `/readyz` and `/metrics`, and polls until SIGTERM or SIGINT, then drains
//! within the grace period and exits 0. `datacap run --once` claims everything due now,
//! polls it, writes the statuses and exits 0.
//!
//! Under systemd (`Type=notify`) it reports `READY=1` once the database answered and the
//! listener is bound, and `STOPPING=1` at shutdown ([`crate::notify`]). On SIGHUP it
//! re-reads and fully validates its config file: a file with any problem is refused (every
//! problem logged, the running config kept); otherwise the keys that can change at run
//! time ([`RELOADABLE`]: the log filter and the worker's schedule) are applied and every
//! other changed key is logged by name as needing a restart.
//!
//! Also home of what `datacap demo` shares with it: building the worker, logging, metrics
//! and the signal handling.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use datacap_store::{EncryptionKey, Store};
use datacap_web::{WebServer, WebState};
use datacap_worker::{CycleReport, ScheduleConfig, Worker, WorkerConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::commands::migrate::{open, say};
use crate::config::{self, Config, LogConfig};
use crate::credentials::FileAndEnvResolver;
use crate::notify::Notifier;

/// The config keys a SIGHUP applies to the running daemon: the log filter and the
/// worker's schedule (intervals, jitter, backoff; the next scheduling decisions use them,
/// due times already stored stay). Concurrency, the tenant limits, leases and
/// `max_retry_after` are fixed when the worker is built (its semaphore, rate limiter and
/// claim loop hold them), so they, and every other key, take effect at the next restart.
pub(crate) const RELOADABLE: &[&str] = &[
    "log.level",
    "worker.email_interval",
    "worker.calendar_interval",
    "worker.jitter",
    "worker.backoff_base",
    "worker.backoff_cap",
    "worker.recheck_interval",
];

/// Arguments of `datacap run`.
#[derive(clap::Args)]
pub struct Args {
    /// Claim everything due now, poll it, write statuses, and exit.
    #[arg(long)]
    once: bool,
}

/// Runs the command.
pub fn run(args: Args, config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (config, values) = config::load_with_values(config_path, std::env::vars())?;
    let log_filter = init_logging(&config.log)?;
    let notifier = Notifier::from_env();
    let key = config
        .encryption
        .as_ref()
        .map(config::load_key)
        .transpose()?;
    runtime()?.block_on(async {
        let store = open(&config).await?;
        if store.autovacuum_off().await {
            tracing::warn!(
                "PostgreSQL's autovacuum is off: every poll leaves a dead row version in \
                 sync_state that nothing removes, and each claim reads more of them; turn \
                 autovacuum on (docs/database.md)"
            );
        }
        if let Some(key) = &key {
            store
                .verify_key(key, time::OffsetDateTime::now_utc())
                .await
                .context("encryption key check failed")?;
        }
        // A second copy of the key seals tokens Microsoft rotates mid-attempt.
        let sink = match &config.encryption {
            Some(encryption) => Some(datacap_worker::store_token_sink(
                store.clone(),
                config::load_key(encryption)?,
            )),
            None => None,
        };
        let connectors = crate::wiring::connectors::build(&config, sink)?;
        let worker = build_worker(&config, store.clone(), connectors.registry(), key)?;
        let cancel = CancellationToken::new();
        shutdown_on_signals(cancel.clone(), notifier.clone())?;
        if args.once {
            let report = worker
                .run_once(cancel)
                .await
                .context("the poll cycle failed")?;
            say(&summary(&report))?;
        } else {
            let metrics = install_metrics()?;
            // The web app's own copy of the key seals the grants members connect.
            let web_key = config
                .encryption
                .as_ref()
                .map(config::load_key)
                .transpose()?;
            let app = crate::wiring::web::build_app(&config, store.clone(), web_key, &connectors)?;
            reload_on_sighup(
                config_path.map(Path::to_path_buf),
                values,
                log_filter,
                worker.clone(),
                notifier.clone(),
                cancel.clone(),
            )?;
            let deliverer = webhook_deliverer(&config, store.clone())?;
            let webhooks = tokio::spawn({
                let cancel = cancel.clone();
                async move { deliverer.run(cancel).await }
            });
            serve_and_poll(&worker, &config, metrics, app, cancel, notifier).await?;
            let _ = webhooks.await;
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// The worker's runtime ([`datacap_worker::runtime`]), sized for a small machine.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    datacap_worker::runtime().context("cannot start the async runtime")
}

/// Serves the HTTP endpoints (health, metrics, the Team members page, its API and the
/// connect flow) and runs the daemon until `cancel` fires; tells `notifier` (systemd) it
/// is ready once the listener is bound (the store answered before this is called).
pub(crate) async fn serve_and_poll(
    worker: &Worker,
    config: &Config,
    metrics: PrometheusHandle,
    app: datacap_web::App,
    cancel: CancellationToken,
    notifier: Notifier,
) -> anyhow::Result<()> {
    let health = worker.health();
    let render = metrics.clone();
    let state = WebState {
        ready: Arc::new(move || health.ready().map_err(|reason| reason.as_str().to_owned())),
        metrics: Arc::new(move || render.render()),
        app: Some(Arc::new(app)),
    };
    let server = WebServer::bind(config.http.listen, state.clone())
        .await
        .with_context(|| format!("cannot listen on http.listen {}", config.http.listen))?
        .with_limits(config.http.limits.clone());
    let bound = server
        .local_addr()
        .context("cannot read the bound address")?;
    let web_stop = CancellationToken::new();
    let (server, probes) = match config.http.metrics_listen {
        Some(address) => {
            let probes = WebServer::bind(address, state)
                .await
                .with_context(|| format!("cannot listen on http.metrics_listen {address}"))?
                .with_limits(config.http.limits.clone())
                .probes_only();
            info!(address = %bound, "serving the Team members page, /api/v1, /connect, /healthz and /readyz");
            info!(address = %address, "serving /healthz, /readyz and /metrics");
            (
                server.without_metrics(),
                Some(tokio::spawn(probes.serve(web_stop.clone()))),
            )
        }
        None => {
            info!(address = %bound, "serving the Team members page, /api/v1, /connect, /healthz, /readyz and /metrics");
            (server, None)
        }
    };
    let web = tokio::spawn(server.serve(web_stop.clone()));
    notifier.ready();
    notifier.spawn_watchdog(web_stop.clone());
    let upkeep_stop = web_stop.clone();
    let upkeep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                () = upkeep_stop.cancelled() => break,
                _ = tick.tick() => metrics.run_upkeep(),
            }
        }
    });
    worker.run(cancel).await;
    web_stop.cancel();
    if let Ok(Err(error)) = web.await {
        warn!(%error, "http server stopped with an error");
    }
    if let Some(probes) = probes
        && let Ok(Err(error)) = probes.await
    {
        warn!(%error, "metrics listener stopped with an error");
    }
    let _ = upkeep.await;
    Ok(())
}

/// The webhook delivery task `[webhooks]` describes, reading secrets from the files and
/// variables the tenants file names.
pub(crate) fn webhook_deliverer(
    config: &Config,
    store: Store,
) -> anyhow::Result<datacap_worker::WebhookDeliverer> {
    let section = &config.webhooks;
    datacap_worker::WebhookDeliverer::new(
        store,
        Arc::new(crate::credentials::WebhookSecretFiles),
        datacap_worker::WebhookConfig {
            owner: worker_config(config).owner,
            poll_interval: section.poll_interval,
            lease: section.lease,
            batch: section.batch,
            connect_timeout: section.connect_timeout,
            request_timeout: section.request_timeout,
            backoff_base: section.backoff_base,
            backoff_cap: section.backoff_cap,
            give_up_after: section.give_up_after,
        },
    )
    .context("invalid [webhooks] configuration")
}

/// The worker the configuration describes.
pub(crate) fn build_worker(
    config: &Config,
    store: Store,
    connectors: datacap_connector::Registry,
    key: Option<EncryptionKey>,
) -> anyhow::Result<Worker> {
    let resolver = Arc::new(FileAndEnvResolver::new(config));
    Worker::new(store, connectors, resolver, key, worker_config(config))
        .context("invalid [worker] configuration")
}

/// `[worker]` as the worker's own config.
pub(crate) fn worker_config(config: &Config) -> WorkerConfig {
    let section = &config.worker;
    let defaults = WorkerConfig::default();
    WorkerConfig {
        owner: section
            .owner
            .clone()
            .unwrap_or_else(|| format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple())),
        concurrency: section.concurrency,
        claim_batch: section.claim_batch,
        lease: section.lease,
        heartbeat: section.heartbeat,
        grace: section.grace,
        idle_wait: section.idle_wait,
        once_pause_wait: section.once_pause_wait,
        invalid_grant_recheck: section.invalid_grant_recheck,
        stall_pass_interval: section.stall_pass_interval,
        attempts_max_age: std::time::Duration::try_from(config.retention.attempts_max_age).ok(),
        tenant_rate_per_second: section.tenant_rate_per_second,
        tenant_burst: section.tenant_burst,
        schedule: ScheduleConfig {
            email_interval: section.email_interval,
            calendar_interval: section.calendar_interval,
            jitter: section.jitter,
            backoff_base: section.backoff_base,
            backoff_cap: section.backoff_cap,
            recheck_interval: section.recheck_interval,
            max_retry_after: section.max_retry_after,
        },
        thresholds: config::thresholds(config),
        ..defaults
    }
}

/// Swaps the log filter of the running subscriber (SIGHUP reload of `log.level`).
pub(crate) type LogFilter = Box<dyn Fn(&str) -> anyhow::Result<()> + Send + Sync>;

/// Structured logs on stderr: human by default, JSON (with the attempt's span fields on
/// every line) when `[log] format = "json"`. The filter can be swapped later.
pub(crate) fn init_logging(log: &LogConfig) -> anyhow::Result<LogFilter> {
    let filter = log_filter(&log.level)?;
    // Colours only for a person at a terminal, never in log files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let started = |result: Result<(), _>| {
        result.map_err(|error| anyhow::anyhow!("cannot start logging: {error}"))
    };
    if log.json {
        let builder = builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter_reloading();
        let handle = builder.reload_handle();
        started(builder.try_init())?;
        Ok(swapper(handle))
    } else {
        let builder = builder.with_filter_reloading();
        let handle = builder.reload_handle();
        started(builder.try_init())?;
        Ok(swapper(handle))
    }
}

/// The [`LogFilter`] of a reloadable filter `handle` (of either log format).
fn swapper<S: 'static>(
    handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>,
) -> LogFilter {
    Box::new(move |level| {
        handle
            .reload(log_filter(level)?)
            .context("cannot swap the log filter")
    })
}

fn log_filter(level: &str) -> anyhow::Result<tracing_subscriber::EnvFilter> {
    tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("log.level {level:?} is not a tracing filter"))
}

/// On SIGHUP (until `stop`): `RELOADING=1`, [`reload`], `READY=1`.
fn reload_on_sighup(
    config_path: Option<std::path::PathBuf>,
    mut running: std::collections::BTreeMap<String, String>,
    log_filter: LogFilter,
    worker: Worker,
    notifier: Notifier,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                received = hangup.recv() => if received.is_none() { break },
            }
            notifier.reloading();
            reload(config_path.as_deref(), &mut running, &log_filter, &worker);
            notifier.ready();
        }
    });
    Ok(())
}

/// Re-reads and validates the config file; applies the changed [`RELOADABLE`] keys and
/// names the other changed keys. `running` holds the effective values in use.
fn reload(
    config_path: Option<&Path>,
    running: &mut std::collections::BTreeMap<String, String>,
    log_filter: &LogFilter,
    worker: &Worker,
) {
    info!(signal = "SIGHUP", "reloading the config file");
    let (config, values) = match config::load_with_values(config_path, std::env::vars()) {
        Ok(loaded) => loaded,
        Err(problems) => {
            for problem in format!("{problems:#}").lines() {
                error!(problem, "config reload refused, the running config stays");
            }
            return;
        }
    };
    let mut keys: Vec<&String> = running.keys().chain(values.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|key| running.get(*key) != values.get(*key))
        .cloned()
        .collect();
    let (reloadable, pending): (Vec<&String>, Vec<&String>) = changed
        .iter()
        .partition(|key| RELOADABLE.contains(&key.as_str()));
    // Each group of reloadable keys is applied at once: the log filter, the schedule.
    let log_result = if reloadable.iter().any(|key| key.starts_with("log.")) {
        log_filter(&config.log.level)
    } else {
        Ok(())
    };
    let schedule_result = if reloadable.iter().any(|key| key.starts_with("worker.")) {
        worker
            .set_schedule(worker_config(&config).schedule)
            .map_err(anyhow::Error::from)
    } else {
        Ok(())
    };
    for key in reloadable {
        let result = if key.starts_with("log.") {
            &log_result
        } else {
            &schedule_result
        };
        match result {
            Ok(()) => {
                let value = values.get(key).cloned().unwrap_or_default();
                info!(key = %key, value = %value, "config key applied");
                running.insert(key.clone(), value);
            }
            Err(problem) => {
                error!(key = %key, problem = %format!("{problem:#}"), "config key not applied");
            }
        }
    }
    for key in &pending {
        warn!(key = %key, "config key changed but needs a restart to take effect");
    }
    info!(
        changed = changed.len(),
        needs_restart = pending.len(),
        "config reloaded"
    );
}

/// `datacap_build_info{version} 1`: which build a daemon runs.
pub(crate) const BUILD_INFO: &str = "datacap_build_info";

/// The Prometheus recorder, with explicit buckets for the attempt and HTTP durations,
/// every family described (`# HELP`) and every series of known labels at 0.
pub(crate) fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(datacap_worker::events::ATTEMPT_DURATION.to_owned()),
            datacap_worker::events::HISTOGRAM_BUCKETS,
        )
        .context("invalid histogram buckets")?
        .set_buckets_for_metric(
            Matcher::Full(datacap_web::HTTP_DURATION.to_owned()),
            datacap_worker::events::HISTOGRAM_BUCKETS,
        )
        .context("invalid histogram buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    datacap_worker::events::describe_and_zero();
    datacap_web::describe_metrics();
    metrics::describe_gauge!(BUILD_INFO, "Always 1; the version label names the build.");
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// Cancels `cancel` on SIGTERM or SIGINT, telling systemd the daemon is stopping.
pub(crate) fn shutdown_on_signals(
    cancel: CancellationToken,
    notifier: Notifier,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => info!(signal = "SIGTERM", "shutting down"),
            _ = interrupt.recv() => info!(signal = "SIGINT", "shutting down"),
        }
        notifier.stopping();
        cancel.cancel();
    });
    Ok(())
}

/// One line about a cycle: `polled 12 member-channels: 9 success, 3 network_error; …`.
pub(crate) fn summary(report: &CycleReport) -> String {
    let outcomes: Vec<String> = report
        .attempts
        .iter()
        .map(|(outcome, count)| format!("{count} {outcome}"))
        .collect();
    format!(
        "polled {} member-channels{}{}; not polled: {} by settings, {} without a grant, {} paused by the provider past worker.once_pause_wait; {} not run (failures of our own), {} abandoned",
        report.total_attempts(),
        if outcomes.is_empty() { "" } else { ": " },
        outcomes.join(", "),
        report.skipped_by_settings,
        report.skipped_no_grant,
        report.paused_past_bound,
        report.own_failures,
        report.abandoned
    )
}
