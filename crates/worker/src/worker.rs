//! The poll loop: claim due (member, channel) jobs under a lease, run each on its
//! provider's connector within the limits, write each attempt atomically, schedule the
//! next poll; plus the periodic stall pass and a graceful shutdown.
//!
//! Limits, outermost first: a global semaphore (`concurrency`) caps attempts in flight,
//! and a job is only claimed when a permit is free, so the daemon never holds leases it
//! cannot work on; companies share the permits fairly (see `Share`: claims take turns
//! across companies, and a company at its share of the permits is skipped, so a slow
//! tenant's backlog never holds every permit while another tenant has work); one attempt per member at a time (so with the connectors' own bounds a
//! mailbox never sees more than four requests in flight); a token bucket per company
//! (`governor`, in `limits.rs`) spaces every provider request of a tenant, and a provider's
//! `Retry-After` pauses what its answer names (a member's channel, a mailbox, the tenant or
//! our app; docs/throttling.md). While an attempt runs, a
//! heartbeat extends its lease outside the attempt's transaction (underway/apalis style).
//!
//! Failures of our own (the database unreachable, a full disk, a key file missing) are
//! never written as a member's outcome: they are logged and counted, the daemon backs off
//! and reports not-ready, and the job's lease simply runs out so it is claimed again.
//!
//! Shutdown: when the [`CancellationToken`] fires the loop stops claiming; attempts in
//! flight get `grace` to finish and write; after that they are abandoned (the connector's
//! future is dropped, nothing is written) and their leases released.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datacap_connector::{Attempt, ImportJob, JobAuth, Registry, RotatedToken};
use datacap_core::{
    Channel, ConnectionMode, Icon, MemberConnection, Outcome, Provider, Reason, Thresholds,
    classify_member,
};
use datacap_store::{AttemptRecord, BackendKind, EncryptionKey, Job, JobContext, Store};
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};
use uuid::Uuid;

use crate::credentials::{CompanyAuth, CompanyCredentials, CredentialError, CredentialResolver};
use crate::events;
use crate::health::Health;
use crate::limits::{Holder, TenantLimits, app_key};
use crate::schedule::{self, ScheduleConfig};
use crate::writer::{AttemptWriter, WriteError};

/// Everything the worker is tuned by (`[worker]` in the config), validated by
/// [`Worker::new`].
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The lease owner name of this process (unique per daemon).
    pub owner: String,
    /// Attempts in flight at most (the global cap).
    pub concurrency: usize,
    /// Jobs claimed per database round trip at most.
    pub claim_batch: u32,
    /// A claimed job's lease lasts this long unless its heartbeat extends it.
    pub lease: Duration,
    /// While an attempt runs its lease is extended this often.
    pub heartbeat: Duration,
    /// On shutdown, attempts in flight get this long to finish.
    pub grace: Duration,
    /// With nothing due the loop looks again after this long.
    pub idle_wait: Duration,
    /// [`Worker::run_once`] waits for a provider's pause on a job that was due for at
    /// most this long after it started; a job still paused then is left for the next run
    /// and counted in [`CycleReport::paused_past_bound`].
    pub once_pause_wait: Duration,
    /// A user-by-user grant the provider declared dead (`member_grants.state` =
    /// `invalid`) is tried again at most this often, until the member connects again.
    pub invalid_grant_recheck: Duration,
    /// Every status is re-evaluated against `now` this often (stall detection).
    pub stall_pass_interval: Duration,
    /// The daemon deletes attempts older than this (each channel keeps what the
    /// classifier reads; status history is kept); `None` keeps every attempt.
    pub attempts_max_age: Option<Duration>,
    /// The daemon prunes old attempts this often.
    pub retention_pass_interval: Duration,
    /// Attempts started per second per company (token bucket rate).
    pub tenant_rate_per_second: u32,
    /// Token bucket size per company.
    pub tenant_burst: u32,
    /// After a failure of our own the loop waits from this …
    pub own_failure_backoff_base: Duration,
    /// … up to this.
    pub own_failure_backoff_cap: Duration,
    /// Resolved company credentials are reused for this long.
    pub credentials_ttl: Duration,
    /// When jobs are due again.
    pub schedule: ScheduleConfig,
    /// The classifier's thresholds (for the settings check before a job runs).
    pub thresholds: Thresholds,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            owner: format!("datacap-{}", Uuid::new_v4().simple()),
            concurrency: 16,
            claim_batch: 64,
            lease: Duration::from_secs(120),
            heartbeat: Duration::from_secs(30),
            grace: Duration::from_secs(20),
            idle_wait: Duration::from_secs(1),
            once_pause_wait: Duration::from_secs(120),
            invalid_grant_recheck: Duration::from_secs(24 * 3600),
            stall_pass_interval: Duration::from_secs(60),
            attempts_max_age: None,
            retention_pass_interval: Duration::from_secs(3600),
            tenant_rate_per_second: 50,
            tenant_burst: 100,
            own_failure_backoff_base: Duration::from_secs(1),
            own_failure_backoff_cap: Duration::from_secs(30),
            credentials_ttl: Duration::from_secs(300),
            schedule: ScheduleConfig::default(),
            thresholds: Thresholds::default(),
        }
    }
}

/// A worker configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid worker configuration: {field} {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: &'static str,
}

/// What stops [`Worker::run_once`] (the daemon never stops on these: it backs off).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The database could not be reached to claim work.
    #[error("cannot claim due jobs: {0}")]
    Claim(#[source] datacap_store::StoreError),
}

/// What one `run_once` cycle did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CycleReport {
    /// Attempts written, by outcome.
    pub attempts: BTreeMap<Outcome, u32>,
    /// Jobs skipped because the settings forbid importing (re-checked later).
    pub skipped_by_settings: u32,
    /// User-by-user jobs skipped because the member has no usable grant (re-checked
    /// later).
    pub skipped_no_grant: u32,
    /// Jobs a provider's pause still held back when `run_once`'s wait for pauses
    /// (`once_pause_wait`) ran out: left for the next run. (A paused job that was polled
    /// once its pause ended counts as its attempt.)
    pub paused_past_bound: u32,
    /// Jobs not run because of a failure of our own (credentials, database).
    pub own_failures: u32,
    /// Jobs abandoned at shutdown.
    pub abandoned: u32,
}

impl CycleReport {
    /// Attempts written in all.
    pub fn total_attempts(&self) -> u32 {
        self.attempts.values().sum()
    }
}

/// The poller. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    connectors: Registry,
    resolver: Arc<dyn CredentialResolver>,
    key: Option<Arc<EncryptionKey>>,
    config: WorkerConfig,
    /// `config.schedule` as swapped at run time ([`Worker::set_schedule`]); every
    /// scheduling decision reads this one.
    schedule: std::sync::RwLock<ScheduleConfig>,
    permits: Arc<Semaphore>,
    /// Attempts done at the provider and waiting for their write, at most `concurrency`
    /// (the write backlog; see [`JobSlot`]).
    write_slots: Arc<Semaphore>,
    limits: Arc<TenantLimits>,
    member_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Attempts in flight per company (the claims' fair share is counted against it).
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
    /// Active companies at the last look (the fair share divides the permits by it).
    companies: AtomicUsize,
    /// Signalled whenever an attempt's task ends (a company's share frees up).
    job_ended: tokio::sync::Notify,
    credentials: Mutex<HashMap<String, CachedCredentials>>,
    health: Arc<Health>,
    report: Mutex<CycleReport>,
    /// The daemon's first stall pass (a full recompute) has been done.
    full_pass_done: AtomicBool,
    /// The (icon, reason) pairs the members gauge was last set for.
    members_shown: Mutex<std::collections::BTreeSet<(Icon, Reason)>>,
    /// Writes finished attempts in batches; started on the first write (inside the
    /// runtime), ends when the worker is dropped.
    writer: std::sync::OnceLock<AttemptWriter>,
    /// When each (company, optional check) refusal was last logged.
    refusals_logged: Mutex<HashMap<(String, &'static str), Instant>>,
    /// Set while [`Worker::run_once`] runs: paused jobs are noted in `deferred`.
    deferring: AtomicBool,
    /// Jobs of this `run_once` given back because of a provider's pause, and when the
    /// pause ends.
    deferred: Mutex<HashMap<(String, Channel), Instant>>,
}

impl Inner {
    /// The schedule in force now (see [`Worker::set_schedule`]).
    fn schedule(&self) -> ScheduleConfig {
        self.schedule
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Attempts written per transaction at most.
const WRITE_BATCH: usize = 100;

/// Batches written at once on PostgreSQL (see [`AttemptWriter`]).
const POSTGRES_WRITERS: usize = 2;

/// How long a claim waits for more permits to free up at most (see
/// [`Worker::gather_permits`]): short against an attempt's duration, long enough for a
/// busy daemon's attempts to end by the dozen.
const CLAIM_GATHER: Duration = Duration::from_millis(5);

/// A company's resolved credentials (or why not) and when they were resolved.
type CachedCredentials = (Instant, Result<CompanyAuth, CredentialError>);

/// How one job ended.
enum JobEnd {
    Written(Outcome),
    Skipped(Skip),
    OwnFailure,
    Abandoned,
}

/// Why a claimed job was given back without an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    Settings,
    NoGrant,
    /// A provider's pause holds the job back.
    Paused,
}

impl Worker {
    /// Validates `config` and builds the worker.
    pub fn new(
        store: Store,
        connectors: Registry,
        resolver: Arc<dyn CredentialResolver>,
        key: Option<EncryptionKey>,
        config: WorkerConfig,
    ) -> Result<Worker, ConfigError> {
        let fail = |field, problem| Err(ConfigError { field, problem });
        if config.concurrency == 0 || config.concurrency > Semaphore::MAX_PERMITS {
            return fail("concurrency", "must be at least 1");
        }
        if config.claim_batch == 0 {
            return fail("claim_batch", "must be at least 1");
        }
        if config.lease < Duration::from_secs(1) {
            return fail("lease", "must be at least 1s");
        }
        if config.heartbeat.is_zero() || config.heartbeat >= config.lease {
            return fail("heartbeat", "must be above zero and shorter than the lease");
        }
        if config.retention_pass_interval.is_zero() {
            return fail("retention_pass_interval", "must be above zero");
        }
        if config.idle_wait.is_zero() || config.stall_pass_interval.is_zero() {
            return fail("idle_wait/stall_pass_interval", "must be above zero");
        }
        if !(0.0..=1.0).contains(&config.schedule.jitter) {
            return fail("jitter", "must be between 0 and 1");
        }
        let (Some(rate), Some(burst)) = (
            NonZeroU32::new(config.tenant_rate_per_second),
            NonZeroU32::new(config.tenant_burst),
        ) else {
            return fail("tenant_rate_per_second/tenant_burst", "must be at least 1");
        };
        if config.schedule.max_retry_after >= config.thresholds.stall_after.unsigned_abs() {
            // A Retry-After that long would leave channels without an attempt past
            // `stall_after`: they would show `import_stalled` for a provider's pause.
            return fail("max_retry_after", "must be shorter than stall_after");
        }
        let stale_after = (config.idle_wait * 10)
            .max(config.lease)
            .max(Duration::from_secs(30));
        Ok(Worker {
            inner: Arc::new(Inner {
                store,
                connectors,
                resolver,
                key: key.map(Arc::new),
                permits: Arc::new(Semaphore::new(config.concurrency)),
                write_slots: Arc::new(Semaphore::new(config.concurrency)),
                limits: Arc::new(TenantLimits::new(
                    rate,
                    burst,
                    config.schedule.max_retry_after,
                )),
                member_locks: Mutex::new(HashMap::new()),
                in_flight: Arc::new(Mutex::new(HashMap::new())),
                companies: AtomicUsize::new(1),
                job_ended: tokio::sync::Notify::new(),
                credentials: Mutex::new(HashMap::new()),
                health: Arc::new(Health::new(stale_after)),
                report: Mutex::new(CycleReport::default()),
                writer: std::sync::OnceLock::new(),
                refusals_logged: Mutex::new(HashMap::new()),
                deferring: AtomicBool::new(false),
                deferred: Mutex::new(HashMap::new()),
                members_shown: Mutex::new(std::collections::BTreeSet::new()),
                full_pass_done: AtomicBool::new(false),
                schedule: std::sync::RwLock::new(config.schedule.clone()),
                config,
            }),
        })
    }

    /// Swaps the intervals, jitter and backoff the next scheduling decisions use (a
    /// config reload); due times already stored stay as they are. `max_retry_after` is
    /// kept: the tenant limits were built with it.
    pub fn set_schedule(&self, schedule: ScheduleConfig) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&schedule.jitter) {
            return Err(ConfigError {
                field: "jitter",
                problem: "must be between 0 and 1",
            });
        }
        let mut current = self
            .inner
            .schedule
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = ScheduleConfig {
            max_retry_after: current.max_retry_after,
            ..schedule
        };
        Ok(())
    }

    /// Liveness facts for `/readyz`.
    pub fn health(&self) -> Arc<Health> {
        self.inner.health.clone()
    }

    /// The lease owner name of this worker.
    pub fn owner(&self) -> &str {
        &self.inner.config.owner
    }

    /// Claims every job due now, runs them, re-evaluates every status against `now`, and
    /// returns what happened. A job is run at most once per call. `cancel` stops it early
    /// (attempts in flight get the grace period).
    pub async fn run_once(&self, cancel: CancellationToken) -> Result<CycleReport, WorkerError> {
        self.take_report();
        if let Ok(companies) = self.inner.store.active_company_ids().await {
            self.set_companies(companies.len());
        }
        let tracker = TaskTracker::new();
        let abandon = CancellationToken::new();
        let mut seen: HashSet<(String, Channel)> = HashSet::new();
        // Jobs held back by a provider's pause are polled once it is over, up to this.
        let pause_deadline = Instant::now() + self.inner.config.once_pause_wait;
        lock(&self.inner.deferred).clear();
        self.inner.deferring.store(true, Ordering::Relaxed);
        let result = loop {
            if cancel.is_cancelled() {
                break Ok(());
            }
            let Some(permit) = self.first_permit(&cancel).await else {
                break Ok(());
            };
            self.gather_permits(&cancel).await;
            let limit = self.claim_limit();
            let jobs = match self.claim(limit).await {
                Ok(jobs) => jobs,
                Err(error) => break Err(WorkerError::Claim(error)),
            };
            let (fresh, repeat): (Vec<Job>, Vec<Job>) = jobs
                .into_iter()
                .partition(|job| seen.insert((job.member_id.clone(), job.channel)));
            for job in &repeat {
                // Already polled in this run (due again quickly): leave it for the next.
                let _ = self.inner.store.release(job, self.owner(), None).await;
            }
            if fresh.is_empty() {
                drop(permit);
                if tracker.is_empty() {
                    // Everything due has run, except jobs a pause gave back: wait for the
                    // first pause to end (within the bound) and claim them again.
                    match self.next_deferred(&mut seen, pause_deadline) {
                        Some(until) => {
                            tokio::select! {
                                () = cancel.cancelled() => break Ok(()),
                                () = tokio::time::sleep_until(until.into()) => continue,
                            }
                        }
                        None => break Ok(()),
                    }
                }
                // Due jobs may be held back by their company's share (or the reserve)
                // while attempts run: look again when one of them ends (or shortly, in
                // case the last one ended just before we started waiting).
                tokio::select! {
                    () = cancel.cancelled() => break Ok(()),
                    () = self.inner.job_ended.notified() => continue,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
            self.spawn_jobs(&tracker, fresh, permit, &abandon).await;
        };
        self.drain(tracker, abandon, &cancel).await;
        self.inner.deferring.store(false, Ordering::Relaxed);
        let past_bound = std::mem::take(&mut *lock(&self.inner.deferred)).len();
        lock(&self.inner.report).paused_past_bound += u32::try_from(past_bound).unwrap_or(u32::MAX);
        if result.is_ok() {
            self.stall_pass_of(false).await;
        }
        result.map(|()| self.take_report())
    }

    /// The end of the earliest pause among `run_once`'s deferred jobs, if it ends by
    /// `deadline`; those jobs may be claimed again (they leave `seen`). `None`: nothing
    /// to wait for (the jobs still deferred are paused past the bound).
    fn next_deferred(
        &self,
        seen: &mut HashSet<(String, Channel)>,
        deadline: Instant,
    ) -> Option<Instant> {
        let deferred = lock(&self.inner.deferred);
        let until = deferred
            .values()
            .copied()
            .filter(|until| *until <= deadline)
            .min()?;
        for key in deferred.keys() {
            seen.remove(key);
        }
        // The released job's due time is the pause's end; look a moment after it.
        Some(until + Duration::from_millis(50))
    }

    /// The daemon: polls until `cancel` fires, then drains within the grace period and
    /// returns. Never returns early because of a database outage: it backs off and
    /// resumes.
    pub async fn run(&self, cancel: CancellationToken) {
        let tracker = TaskTracker::new();
        let abandon = CancellationToken::new();
        let mut own_failures: u32 = 0;
        let mut next_retention_pass = Instant::now();
        info!(owner = %self.owner(), concurrency = self.inner.config.concurrency, "worker started");
        let queue_lag = self.spawn_queue_lag(cancel.clone());
        let stall_passes = self.spawn_stall_passes(cancel.clone());
        loop {
            if cancel.is_cancelled() {
                break;
            }
            if Instant::now() >= next_retention_pass {
                self.retention_pass().await;
                next_retention_pass = Instant::now() + self.inner.config.retention_pass_interval;
            }
            let Some(permit) = self.first_permit(&cancel).await else {
                break;
            };
            self.gather_permits(&cancel).await;
            let limit = self.claim_limit();
            match self.claim(limit).await {
                Err(error) => {
                    drop(permit);
                    own_failures = own_failures.saturating_add(1);
                    let wait = schedule::backoff(
                        self.inner.config.own_failure_backoff_base,
                        self.inner.config.own_failure_backoff_cap,
                        own_failures,
                        fastrand::f64(),
                    );
                    events::own_failure("claim", &error, Some(wait));
                    if sleep_or_cancel(wait, &cancel).await {
                        break;
                    }
                }
                Ok(jobs) if jobs.is_empty() => {
                    own_failures = 0;
                    drop(permit);
                    if sleep_or_cancel(self.inner.config.idle_wait, &cancel).await {
                        break;
                    }
                }
                Ok(jobs) => {
                    own_failures = 0;
                    self.spawn_jobs(&tracker, jobs, permit, &abandon).await;
                }
            }
        }
        info!(owner = %self.owner(), in_flight = tracker.len(), "worker stopping: no more claims");
        self.drain(tracker, abandon, &cancel).await;
        let _ = queue_lag.await;
        let _ = stall_passes.await;
        info!(owner = %self.owner(), "worker stopped");
    }

    /// Runs a stall pass every `stall_pass_interval` (the first at once, in full) until
    /// `cancel` fires, in a task of its own: claims never wait for a pass, and a pass
    /// over a large company never holds up the poll loop.
    fn spawn_stall_passes(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let worker = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = worker.stall_pass() => {}
                }
                if sleep_or_cancel(worker.inner.config.stall_pass_interval, &cancel).await {
                    break;
                }
            }
        })
    }

    /// Samples the queue lag every [`events::QUEUE_LAG_INTERVAL`] until `cancel` fires, in
    /// a task of its own, so a daemon whose permits are all busy still reports its backlog.
    fn spawn_queue_lag(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let worker = self.clone();
        tokio::spawn(async move {
            loop {
                worker.sample_queue_lag().await;
                if sleep_or_cancel(events::QUEUE_LAG_INTERVAL, &cancel).await {
                    break;
                }
            }
        })
    }

    /// Sets the queue-lag gauge: the age of the oldest due job no live lease holds (0
    /// when none waits). One index-backed read; a failure is our own (logged, counted).
    pub async fn sample_queue_lag(&self) {
        let now = OffsetDateTime::now_utc();
        match self.inner.store.oldest_waiting_due_at(now).await {
            Ok(oldest) => {
                let lag = oldest.map_or(Duration::ZERO, |due| {
                    Duration::try_from(now - due).unwrap_or(Duration::ZERO)
                });
                events::queue_lag(lag);
            }
            Err(error) => {
                self.inner.health.database_failed();
                events::own_failure("queue_lag", &error, None);
            }
        }
    }

    /// Deletes attempts older than `attempts_max_age` (each channel keeps the attempts its
    /// status depends on; status history is kept). Returns how many went, or `None` when
    /// retention is off or the database failed (a failure of our own: logged, not fatal).
    pub async fn retention_pass(&self) -> Option<u64> {
        let max_age = time::Duration::try_from(self.inner.config.attempts_max_age?).ok()?;
        let cutoff = OffsetDateTime::now_utc().checked_sub(max_age)?;
        match self.inner.store.prune_attempts(cutoff).await {
            Ok(pruned) => {
                info!(pruned, "retention pass: old attempts deleted");
                // Webhook events by the same age, once every endpoint has them or gave up.
                match self.inner.store.prune_webhooks(cutoff).await {
                    Ok(events) => info!(events, "retention pass: settled webhook events deleted"),
                    Err(error) => events::own_failure("retention_pass", &error, None),
                }
                Some(pruned)
            }
            Err(error) => {
                self.inner.health.database_failed();
                events::own_failure("retention_pass", &error, None);
                None
            }
        }
    }

    /// Re-evaluates statuses against `now`, so a channel that nothing polls turns
    /// `import_stalled`. The daemon's first pass recomputes every active member (statuses
    /// then follow thresholds changed while it was down); later passes, and
    /// [`Worker::run_once`]'s, recompute only the members time may have changed
    /// ([`Store::recompute_stale`]), so a pass costs nothing while imports run on schedule,
    /// whatever the number of members. Failures are our own: logged, not fatal.
    pub async fn stall_pass(&self) {
        let full = !self.inner.full_pass_done.load(Ordering::Relaxed);
        self.stall_pass_of(full).await;
    }

    async fn stall_pass_of(&self, full: bool) {
        let now = OffsetDateTime::now_utc();
        let companies = match self.inner.store.active_company_ids().await {
            Ok(companies) => {
                self.set_companies(companies.len());
                companies
            }
            Err(error) => {
                self.inner.health.database_failed();
                events::own_failure("stall_pass", &error, None);
                return;
            }
        };
        let recomputed = if full {
            async {
                for company_id in &companies {
                    self.inner.store.recompute_company(company_id, now).await?;
                }
                self.inner.full_pass_done.store(true, Ordering::Relaxed);
                Ok(None)
            }
            .await
        } else {
            self.inner.store.recompute_stale(now).await.map(Some)
        };
        match recomputed {
            Ok(members) => debug!(full, members = ?members, "stall pass done"),
            Err(error) => {
                self.inner.health.database_failed();
                events::own_failure("stall_pass", &error, None);
                return;
            }
        }
        self.inner.health.progress();
        self.inner.limits.prune();
        events::stall_pass();
        match self.inner.store.status_counts().await {
            Ok(rows) => {
                let mut counts: BTreeMap<(Icon, Reason), u64> = BTreeMap::new();
                for (icon, reason, count) in rows {
                    *counts.entry((icon, reason)).or_default() += count;
                }
                let mut shown = lock(&self.inner.members_shown);
                for gone in shown.iter().filter(|key| !counts.contains_key(key)) {
                    events::members(gone.0, gone.1, 0);
                }
                for ((icon, reason), count) in &counts {
                    events::members(*icon, *reason, *count);
                }
                *shown = counts.into_keys().collect();
            }
            Err(error) => events::own_failure("member_gauges", &error, None),
        }
    }

    fn take_report(&self) -> CycleReport {
        let mut report = lock(&self.inner.report);
        std::mem::take(&mut *report)
    }

    /// Waits for one free permit (or cancellation).
    async fn first_permit(&self, cancel: &CancellationToken) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            permit = self.inner.permits.clone().acquire_owned() => permit.ok(),
        }
    }

    /// With one permit held and attempts in flight, waits up to [`CLAIM_GATHER`] for a
    /// quarter of the permits to be free (attempts end one by one), so a busy daemon claims
    /// a batch per round trip instead of a job or two, and still never claims a job it has
    /// no permit for. An idle daemon (most permits free) does not wait.
    async fn gather_permits(&self, cancel: &CancellationToken) {
        let config = &self.inner.config;
        let want = (config.concurrency / 4)
            .clamp(1, usize::try_from(config.claim_batch).unwrap_or(usize::MAX));
        let deadline = tokio::time::Instant::now() + CLAIM_GATHER;
        // One permit is held by the caller.
        while self.inner.permits.available_permits() + 1 < want {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.inner.job_ended.notified() => {}
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// As many jobs as there are free permits (one is already held), up to the batch size.
    fn claim_limit(&self) -> u32 {
        let free = self.inner.permits.available_permits().saturating_add(1);
        u32::try_from(free)
            .unwrap_or(u32::MAX)
            .min(self.inner.config.claim_batch)
    }

    /// Claims up to `limit` jobs (one per free permit), companies sharing the permits
    /// (see `Share`): companies at their share are skipped and the others take turns;
    /// when that leaves permits over, companies may borrow them beyond their share, except
    /// `reserve` kept free for the other companies' next due jobs.
    async fn claim(&self, limit: u32) -> Result<Vec<Job>, datacap_store::StoreError> {
        let result = self.claim_fair(limit).await;
        match &result {
            Ok(jobs) => {
                self.inner.health.progress();
                let reclaimed = jobs.iter().filter(|job| job.reclaimed_from.is_some());
                for job in reclaimed.clone() {
                    info!(
                        company = %job.company_id,
                        member = %job.member_id,
                        channel = job.channel.as_str(),
                        expired_owner = job.reclaimed_from.as_deref().unwrap_or_default(),
                        "reclaimed a job whose lease had expired"
                    );
                }
                events::claimed(jobs.len(), reclaimed.count());
            }
            Err(_) => self.inner.health.database_failed(),
        }
        result
    }

    async fn claim_fair(&self, limit: u32) -> Result<Vec<Job>, datacap_store::StoreError> {
        let inner = &self.inner;
        let now = OffsetDateTime::now_utc();
        let lease =
            time::Duration::try_from(inner.config.lease).unwrap_or(time::Duration::minutes(2));
        let share = Share::new(
            inner.config.concurrency,
            inner.companies.load(Ordering::Relaxed),
        );
        let in_flight = lock(&inner.in_flight).clone();
        let skip: Vec<String> = in_flight
            .iter()
            .filter(|(_, running)| **running >= share.per_company)
            .map(|(company, _)| company.clone())
            .collect();
        let per_company = u32::try_from(share.per_company).unwrap_or(u32::MAX);
        let claimed = inner
            .store
            .claim_due_fair(self.owner(), now, lease, limit, per_company, &skip)
            .await?;
        // A company with attempts in flight may have been given more than its share left:
        // the excess goes back at once (still due).
        let mut held: HashMap<String, usize> = HashMap::new();
        let mut jobs = Vec::with_capacity(claimed.len());
        let mut at_share = !skip.is_empty();
        for job in claimed {
            let running = held
                .entry(job.company_id.clone())
                .or_insert_with(|| in_flight.get(&job.company_id).copied().unwrap_or(0));
            if *running >= share.per_company {
                at_share = true;
                let _ = inner.store.release(&job, self.owner(), None).await;
            } else {
                *running += 1;
                at_share |= *running >= share.per_company;
                jobs.push(job);
            }
        }
        let room = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(jobs.len());
        if at_share && room > share.reserve {
            // Nobody else has due work for these permits: lend them, keeping the reserve.
            let lend = u32::try_from(room - share.reserve).unwrap_or(u32::MAX);
            let borrowed = inner
                .store
                .claim_due_fair(self.owner(), now, lease, lend, lend, &[])
                .await?;
            jobs.extend(borrowed);
        }
        Ok(jobs)
    }

    /// Records how many companies are active (the fair share divides the permits by it).
    fn set_companies(&self, companies: usize) {
        self.inner
            .companies
            .store(companies.max(1), Ordering::Relaxed);
    }

    async fn spawn_jobs(
        &self,
        tracker: &TaskTracker,
        jobs: Vec<Job>,
        first: OwnedSemaphorePermit,
        abandon: &CancellationToken,
    ) {
        let mut first = Some(first);
        for job in jobs {
            let permit = match first.take() {
                Some(permit) => permit,
                // The claim asked for no more jobs than there were free permits, and only
                // this loop takes permits, so this does not wait.
                None => match self.inner.permits.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let worker = self.clone();
            let abandon = abandon.clone();
            // Counted before the next claim looks at the company's share.
            let mut slot = JobSlot {
                permit: Some(permit),
                running: Some(InFlight::start(&self.inner.in_flight, &job.company_id)),
            };
            tracker.spawn(async move {
                let end = worker.run_job(job, abandon, &mut slot).await;
                slot.release(&worker.inner.job_ended);
                worker.count(end);
            });
        }
    }

    fn count(&self, end: JobEnd) {
        let mut report = lock(&self.inner.report);
        match end {
            JobEnd::Written(outcome) => *report.attempts.entry(outcome).or_default() += 1,
            JobEnd::Skipped(Skip::Settings) => report.skipped_by_settings += 1,
            JobEnd::Skipped(Skip::NoGrant) => report.skipped_no_grant += 1,
            // `run_once` polls it again once the pause is over, or counts it as paused
            // past the bound at its end.
            JobEnd::Skipped(Skip::Paused) => {}
            JobEnd::OwnFailure => report.own_failures += 1,
            JobEnd::Abandoned => report.abandoned += 1,
        }
    }

    /// Waits for attempts in flight: `grace` to finish, then abandons the rest.
    async fn drain(
        &self,
        tracker: TaskTracker,
        abandon: CancellationToken,
        cancel: &CancellationToken,
    ) {
        tracker.close();
        // Without a shutdown request (run_once finishing normally) wait for everything;
        // every attempt is bounded by the connectors' own timeouts.
        tokio::select! {
            () = tracker.wait() => return,
            () = cancel.cancelled() => {}
        }
        if tokio::time::timeout(self.inner.config.grace, tracker.wait())
            .await
            .is_err()
        {
            warn!(
                in_flight = tracker.len(),
                grace_ms = self.inner.config.grace.as_millis() as u64,
                "grace period over: abandoning attempts in flight"
            );
            abandon.cancel();
            // Abandoning only releases leases: a few quick database calls at most.
            let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
        }
    }

    fn member_lock(&self, member_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = lock(&self.inner.member_locks);
        // Drop locks no attempt holds any more, so the map stays as small as the work.
        if locks.len() > 4 * self.inner.config.concurrency {
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        locks.entry(member_id.to_owned()).or_default().clone()
    }

    /// Runs one claimed job to its end. Never panics; every path gives the lease back
    /// (by the attempt write, an explicit release, or — when the database is gone — by
    /// letting it expire).
    async fn run_job(&self, job: Job, abandon: CancellationToken, slot: &mut JobSlot) -> JobEnd {
        let attempt_id = Uuid::now_v7();
        let span = info_span!(
            "attempt",
            company = %job.company_id,
            member = %job.member_id,
            channel = %job.channel,
            provider = %job.provider,
            attempt_id = %attempt_id,
            request_id = tracing::field::Empty,
        );
        self.run_job_in_span(job, attempt_id, abandon, slot)
            .instrument(span)
            .await
    }

    async fn run_job_in_span(
        &self,
        job: Job,
        attempt_id: Uuid,
        abandon: CancellationToken,
        slot: &mut JobSlot,
    ) -> JobEnd {
        let inner = &self.inner;
        // The lease is kept alive from the claim on (issue 21 §6): a job that waits for
        // its member's lock (the member's other channel is running) must not let it expire
        // for another daemon to claim the same member-channel meanwhile. `stop` fires at
        // shutdown, or as soon as the heartbeat finds the lease taken over.
        let stop = abandon.child_token();
        let heartbeat = self.start_heartbeat(&job, stop.clone());
        let member_lock = self.member_lock(&job.member_id);
        let _member_guard = match Arc::clone(&member_lock).try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                let guard = tokio::select! {
                    guard = member_lock.lock_owned() => guard,
                    () = stop.cancelled() => {
                        drop(heartbeat);
                        return self.abandon(&job).await;
                    }
                };
                // It waited: before the first provider call, make sure the lease is
                // still ours (a heartbeat that failed meanwhile could have let it go).
                if !self.lease_still_held(&job).await {
                    drop(heartbeat);
                    return self.abandon(&job).await;
                }
                guard
            }
        };
        if inner.deferring.load(Ordering::Relaxed) {
            // Claimed again after its pause: no longer waiting (noted again if still
            // paused).
            lock(&inner.deferred).remove(&(job.member_id.clone(), job.channel));
        }
        // The claim read the job's context with it (one query for the batch, not one
        // per job); settings that change meanwhile apply from the next claim.
        let mut context = job.context.clone();
        // A grant the provider declared dead is judged by the settings as if connected:
        // whether it is tried (a slow recheck) is `job_auth`'s decision, and a skip is
        // counted as "without a grant", not "by settings".
        let user_by_user = context.company.connection_mode == ConnectionMode::UserByUser;
        let dead_grant =
            user_by_user && context.member.connection == Some(MemberConnection::Invalid);
        // Likewise a member who had not connected when the job was claimed: they may be
        // connecting right now, so whether there is a grant is `job_auth`'s fresh read,
        // and a skip without one keeps the job due if the grant lands meanwhile
        // (`release_without_grant`); judged "not connected" here, the settings skip would
        // push a job their connect could not make due (it was leased) to the recheck.
        let unconnected = user_by_user
            && matches!(
                context.member.connection,
                None | Some(MemberConnection::NotConnected)
            );
        if dead_grant || unconnected {
            context.member.connection = Some(MemberConnection::Connected);
        }
        let now = OffsetDateTime::now_utc();
        if !may_import(&context, job.channel, now, &inner.config.thresholds) {
            debug!("settings forbid importing: re-checked later");
            drop(heartbeat);
            let recheck = schedule::recheck_at(&inner.schedule(), now, fastrand::f64());
            let _ = inner.store.release(&job, self.owner(), Some(recheck)).await;
            events::skipped(job.provider, job.channel, "settings");
            return JobEnd::Skipped(Skip::Settings);
        }
        let auth = match self.job_auth(&context, &job, dead_grant).await {
            Ok(Some(auth)) => auth,
            Ok(None) => {
                drop(heartbeat);
                let recheck = schedule::recheck_at(&inner.schedule(), now, fastrand::f64());
                // A member who connects while this job is leased keeps it due.
                let _ = inner
                    .store
                    .release_without_grant(&job, self.owner(), recheck)
                    .await;
                events::skipped(job.provider, job.channel, "no_grant");
                return JobEnd::Skipped(Skip::NoGrant);
            }
            Err(problem) => {
                events::own_failure_text("credentials", &problem);
                drop(heartbeat);
                let recheck = schedule::recheck_at(&inner.schedule(), now, fastrand::f64());
                let _ = inner.store.release(&job, self.owner(), Some(recheck)).await;
                return JobEnd::OwnFailure;
            }
        };

        // A provider's Retry-After paused what holds this job back (its channel, its
        // mailbox, its company or our app): give the job back until the pause is over
        // instead of holding a permit (requests already under way wait in their gate).
        let holder = Holder {
            company: job.company_id.clone(),
            member: job.member_id.clone(),
            channel: job.channel,
            app: app_key(job.provider, &auth),
        };
        if let Some(left) = inner.limits.paused_for(&holder) {
            let due = now + time::Duration::try_from(left).unwrap_or(time::Duration::ZERO);
            drop(heartbeat);
            let _ = inner.store.release(&job, self.owner(), Some(due)).await;
            events::rate_limit_wait(job.provider, events::WaitCause::RetryAfter, left);
            events::skipped(job.provider, job.channel, "paused");
            if inner.deferring.load(Ordering::Relaxed) {
                lock(&inner.deferred)
                    .insert((job.member_id.clone(), job.channel), Instant::now() + left);
            }
            return JobEnd::Skipped(Skip::Paused);
        }

        let started_at = OffsetDateTime::now_utc();
        let import_job = ImportJob {
            attempt_id,
            company_id: job.company_id.clone(),
            member_id: job.member_id.clone(),
            member_address: job.member_email.clone(),
            channel: job.channel,
            auth,
            cursor: job.cursor.clone(),
            now: started_at,
            gate: inner.limits.gate(holder, job.provider),
        };
        let clock = Instant::now();
        let Some(attempt) = self.import_or_abandon(&job, &import_job, &stop).await else {
            drop(heartbeat);
            return self.abandon(&job).await;
        };
        let elapsed = clock.elapsed();
        // The provider's part is done. Once the write backlog has room, the permit goes
        // back, so the next jobs' provider calls overlap this write instead of waiting
        // for its batch to commit. The member's lock and the lease stay held until the
        // attempt is written.
        let _write_slot = inner.write_slots.clone().acquire_owned().await.ok();
        slot.release(&inner.job_ended);
        let finished_at = OffsetDateTime::now_utc();
        events::token_requests(job.provider, &attempt.token_requests);
        for check in &attempt.refused_checks {
            let log = self.first_refusal_this_hour(&job.company_id, check.check);
            events::optional_check_refused(job.provider, &job.company_id, check, log);
        }
        if let Some(request_id) = &attempt.request_id {
            tracing::Span::current().record("request_id", request_id.as_str());
        }

        if let Some(rotated) = &attempt.rotated_refresh_token {
            self.save_rotated_token(&job, rotated, finished_at).await;
        }

        let next_due_at = schedule::next_due(
            &inner.schedule(),
            job.channel,
            attempt.outcome,
            job.consecutive_transient_failures,
            attempt.retry_after,
            finished_at,
            fastrand::f64(),
        );
        let items = attempt.email_items.len() + attempt.calendar_items.len();
        let record = AttemptRecord {
            attempt_id,
            member_id: job.member_id.clone(),
            channel: job.channel,
            started_at,
            finished_at,
            outcome: attempt.outcome,
            http_status: attempt.http_status,
            provider_error_code: attempt.error_code.clone(),
            provider_error_message: attempt.error_message.clone(),
            provider_request_id: attempt.request_id.clone(),
            email_items: attempt.email_items,
            calendar_items: attempt.calendar_items,
            next_cursor: attempt.next_cursor,
            next_due_at,
            lease_owner: Some(self.owner().to_owned()),
        };
        // The write is never abandoned: it is one transaction, all or nothing.
        let written = self.record(record, finished_at).await;
        drop(heartbeat);
        match written {
            Ok(result) => {
                inner.health.progress();
                if !result.sync_state_updated {
                    warn!(
                        "lease was taken over while the attempt ran: attempt written, schedule left to the new holder"
                    );
                    events::lease_lost();
                }
                events::attempt(
                    job.provider,
                    job.channel,
                    attempt.outcome,
                    elapsed,
                    items,
                    attempt.http_status,
                    attempt.error_code.as_deref(),
                    attempt.request_id.as_deref(),
                    attempt.requests,
                );
                JobEnd::Written(attempt.outcome)
            }
            Err(error) => {
                // Nothing of the attempt is kept; the lease expires and the job is
                // claimed again. The member's status is untouched.
                inner.health.database_failed();
                events::own_failure("record_attempt", &error, None);
                JobEnd::OwnFailure
            }
        }
    }

    /// Writes an attempt through the batch writer (see [`AttemptWriter`]): in one
    /// transaction with the other attempts that finished meanwhile, all or nothing.
    async fn record(
        &self,
        record: AttemptRecord,
        now: OffsetDateTime,
    ) -> Result<datacap_store::RecordResult, WriteError> {
        let writer = self.inner.writer.get_or_init(|| {
            let writers = match self.inner.store.kind() {
                BackendKind::Postgres => POSTGRES_WRITERS,
                // One writer at a time is all SQLite allows.
                BackendKind::Sqlite => 1,
            };
            AttemptWriter::start(self.inner.store.clone(), WRITE_BATCH, writers)
        });
        writer.write(record, now).await
    }

    /// Runs the connector; `None` when abandoned.
    async fn import_or_abandon(
        &self,
        job: &Job,
        import_job: &ImportJob,
        abandon: &CancellationToken,
    ) -> Option<Attempt> {
        tokio::select! {
            attempt = self.import(job.provider, import_job) => Some(attempt),
            () = abandon.cancelled() => None,
        }
    }

    /// Whether this worker still holds `job`'s lease (extending it). A lease found taken
    /// over is logged and counted as lost by a live holder; a database failure counts as
    /// not held (the attempt cannot be written either).
    async fn lease_still_held(&self, job: &Job) -> bool {
        let inner = &self.inner;
        let until = OffsetDateTime::now_utc()
            + time::Duration::try_from(inner.config.lease).unwrap_or(time::Duration::minutes(2));
        match inner.store.heartbeat(job, self.owner(), until).await {
            Ok(true) => true,
            Ok(false) => {
                warn!("lease lost while the job waited for its member: not polling");
                events::lease_lost();
                false
            }
            Err(error) => {
                inner.health.database_failed();
                events::own_failure("heartbeat", &error, None);
                false
            }
        }
    }

    /// Extends `job`'s lease every `heartbeat` until the returned guard is dropped. The
    /// heartbeat runs as its own task, outside the attempt's transaction: a heartbeat
    /// that waits on the row the attempt's write is updating never holds the write up.
    /// When the lease turns out to be another worker's, `lost` is cancelled so the
    /// attempt stops instead of polling beside the new holder.
    fn start_heartbeat(&self, job: &Job, lost: CancellationToken) -> HeartbeatGuard {
        let stop = CancellationToken::new();
        let worker = self.clone();
        let job = job.clone();
        let stopped = stop.clone();
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                let inner = &worker.inner;
                let mut tick = tokio::time::interval_at(
                    tokio::time::Instant::now() + inner.config.heartbeat,
                    inner.config.heartbeat,
                );
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = stopped.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let until = OffsetDateTime::now_utc()
                        + time::Duration::try_from(inner.config.lease)
                            .unwrap_or(time::Duration::minutes(2));
                    let result = inner.store.heartbeat(&job, worker.owner(), until).await;
                    if stopped.is_cancelled() {
                        // The attempt was written (and its lease released) meanwhile.
                        break;
                    }
                    match result {
                        Ok(true) => debug!("lease extended"),
                        Ok(false) => {
                            warn!("lease lost while the job was held: stopping it");
                            events::lease_lost();
                            lost.cancel();
                            break;
                        }
                        Err(error) => {
                            inner.health.database_failed();
                            events::own_failure("heartbeat", &error, None);
                        }
                    }
                }
            }
            .instrument(span),
        );
        HeartbeatGuard(stop)
    }

    /// Whether `company`'s refusal of `check` is the first in
    /// [`events::OPTIONAL_CHECK_LOG_EVERY`] (then it is logged with the answer).
    fn first_refusal_this_hour(&self, company: &str, check: &'static str) -> bool {
        let mut logged = lock(&self.inner.refusals_logged);
        let now = Instant::now();
        logged.retain(|_, at| now.duration_since(*at) < events::OPTIONAL_CHECK_LOG_EVERY);
        match logged.entry((company.to_owned(), check)) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(now);
                true
            }
        }
    }

    async fn import(&self, provider: Provider, job: &ImportJob) -> Attempt {
        match self.inner.connectors.get(provider) {
            Some(connector) => connector.import(job).await,
            None => unreachable_connector(provider),
        }
    }

    async fn abandon(&self, job: &Job) -> JobEnd {
        let _ = self.inner.store.release(job, self.owner(), None).await;
        events::abandoned();
        JobEnd::Abandoned
    }

    /// How the job authenticates: the company's credentials, plus the member's refresh
    /// token for user-by-user. `Ok(None)`: the member has no usable grant (re-checked
    /// later). `Err`: a failure of our own (credentials unreadable, no connector, no key).
    async fn job_auth(
        &self,
        context: &JobContext,
        job: &Job,
        dead_grant: bool,
    ) -> Result<Option<JobAuth>, String> {
        let inner = &self.inner;
        if !inner.connectors.has(job.provider) {
            return Err(format!("no connector configured for {}", job.provider));
        }
        let company_auth = self
            .company_auth(context)
            .map_err(|error| error.to_string())?;
        match (context.company.connection_mode, company_auth) {
            (ConnectionMode::CompanyWide, CompanyAuth::GoogleServiceAccount(key)) => {
                Ok(Some(JobAuth::GoogleServiceAccount(key)))
            }
            (ConnectionMode::CompanyWide, CompanyAuth::MicrosoftApp(credential)) => {
                Ok(Some(JobAuth::MicrosoftApp(credential)))
            }
            (ConnectionMode::UserByUser, CompanyAuth::OAuthClient(client)) => {
                let grant = inner
                    .store
                    .member_grant(&job.member_id, inner.key.as_deref())
                    .await
                    .map_err(|error| {
                        if matches!(error, datacap_store::StoreError::Database(_)) {
                            inner.health.database_failed();
                        }
                        error.to_string()
                    })?;
                let Some(grant) = grant else {
                    return Ok(None);
                };
                // A member who disconnected is not polled, whatever token is left.
                if grant.state == MemberConnection::NotConnected {
                    return Ok(None);
                }
                // A grant the provider declared dead is not sent on every poll: only a
                // slow recheck, in case the member's admin restored it (issue 21 §5). The
                // claim's view of the grant decides, so both channels of a batch claimed
                // while it was connected are tried alike.
                if dead_grant && grant.state == MemberConnection::Invalid {
                    let recheck = time::Duration::try_from(inner.config.invalid_grant_recheck)
                        .unwrap_or(time::Duration::DAY);
                    if OffsetDateTime::now_utc() < grant.updated_at + recheck {
                        return Ok(None);
                    }
                    info!("rechecking a grant the provider declared dead");
                }
                match grant.refresh_token {
                    Some(refresh_token) => Ok(Some(JobAuth::Member {
                        client,
                        refresh_token,
                    })),
                    None => Ok(None),
                }
            }
            (mode, _) => Err(format!(
                "credentials of company {} do not fit its {} connection",
                context.company_id, mode
            )),
        }
    }

    fn company_auth(&self, context: &JobContext) -> Result<CompanyAuth, CredentialError> {
        let ttl = self.inner.config.credentials_ttl;
        if let Some((at, cached)) = lock(&self.inner.credentials).get(&context.company_id)
            && at.elapsed() < ttl
        {
            return cached.clone();
        }
        let resolved = self.inner.resolver.resolve(&CompanyCredentials {
            company_id: &context.company_id,
            provider: context.company.provider,
            connection_mode: context.company.connection_mode,
            refs: &context.credential_refs,
        });
        lock(&self.inner.credentials).insert(
            context.company_id.clone(),
            (Instant::now(), resolved.clone()),
        );
        resolved
    }

    /// Persists a refresh token the provider rotated, sealed, before the attempt is
    /// written (so a crash in between never loses it).
    async fn save_rotated_token(&self, job: &Job, token: &RotatedToken, now: OffsetDateTime) {
        let inner = &self.inner;
        let Some(key) = inner.key.as_deref() else {
            error!("a rotated refresh token cannot be stored: no encryption key configured");
            return;
        };
        match crate::rotation::seal(&inner.store, key, &job.member_id, token, now).await {
            Ok(()) => events::token_rotated(job.provider),
            Err(error) => events::own_failure("rotated_token", &error, None),
        }
    }
}

/// Whether the settings allow importing this channel at all: STATUS_MODEL.md rules 1–8
/// give no reason (the classifier, with no attempts, says `awaiting_first_import`).
pub fn may_import(
    context: &JobContext,
    channel: Channel,
    now: OffsetDateTime,
    thresholds: &Thresholds,
) -> bool {
    context.active
        && classify_member(&context.company, &context.member, &[], now, thresholds).channel(channel)
            == Reason::AwaitingFirstImport
}

fn unreachable_connector(provider: Provider) -> Attempt {
    // `job_auth` refuses jobs without a connector before any attempt starts.
    Attempt::failed(datacap_connector::Failure::new(
        Outcome::ProviderError,
        format!("no connector for {provider}"),
    ))
}

/// How one worker's permits are shared among companies. A company's share is
/// `concurrency / companies` (rounded up, at least one): a company with that many attempts
/// in flight is skipped by the claims, and the claims take turns across the others, so a
/// slow tenant's backlog cannot take every permit while the others have due work. Permits
/// nobody else claims may be lent beyond a share, but `reserve` of them (one per other
/// company, at most a share) are never lent, so a company whose jobs fall due while
/// another's slow attempts run finds a free permit at the next claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Share {
    per_company: usize,
    reserve: usize,
}

impl Share {
    fn new(concurrency: usize, companies: usize) -> Share {
        let companies = companies.max(1);
        let per_company = concurrency.div_ceil(companies).max(1);
        Share {
            per_company,
            reserve: per_company
                .min(companies - 1)
                .min(concurrency.saturating_sub(1)),
        }
    }
}

/// One attempt in flight, counted for its company until dropped.
/// What a running job holds of the worker's limits: a permit and its company's count of
/// attempts in flight. Given back as soon as the provider's part of the job is done (the
/// write that follows holds a write slot instead), or when the job ends.
struct JobSlot {
    permit: Option<OwnedSemaphorePermit>,
    running: Option<InFlight>,
}

impl JobSlot {
    /// Gives the permit and the company's count back (once) and wakes a claim waiting
    /// for them.
    fn release(&mut self, ended: &tokio::sync::Notify) {
        if self.permit.take().is_some() {
            self.running.take();
            ended.notify_one();
        }
    }
}

struct InFlight {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    company: String,
}

impl InFlight {
    fn start(counts: &Arc<Mutex<HashMap<String, usize>>>, company: &str) -> InFlight {
        *lock(counts).entry(company.to_owned()).or_default() += 1;
        InFlight {
            counts: Arc::clone(counts),
            company: company.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(running) = counts.get_mut(&self.company) {
            *running = running.saturating_sub(1);
            if *running == 0 {
                counts.remove(&self.company);
            }
        }
    }
}

/// Stops a job's heartbeat task when dropped.
struct HeartbeatGuard(CancellationToken);

impl Drop for HeartbeatGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Sleeps `wait`; true when cancelled first.
async fn sleep_or_cancel(wait: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datacap_core::{CompanySettings, MemberSettings};
    use time::macros::datetime;

    use super::*;

    fn context(mode: ConnectionMode, connection: Option<MemberConnection>) -> JobContext {
        JobContext {
            company_id: "acme".to_owned(),
            member_id: "ana".to_owned(),
            member_email: "ana@acme.example".to_owned(),
            company: CompanySettings {
                provider: Provider::GoogleWorkspace,
                connection_mode: mode,
                permission_given: true,
                email_authorized: true,
                calendar_authorized: true,
                import_email: true,
                import_calendar: true,
                import_non_recorded_meetings: false,
            },
            member: MemberSettings {
                has_recording_seat: true,
                recording_enabled: true,
                email_import: true,
                calendar_import: true,
                import_non_recorded_meetings: false,
                connection,
            },
            credential_refs: BTreeMap::new(),
            active: true,
        }
    }

    /// Whether `channel` of the changed context may be imported.
    fn check(change: impl FnOnce(&mut JobContext), channel: Channel, expected: bool) {
        let mut context = context(ConnectionMode::CompanyWide, None);
        change(&mut context);
        let now = datetime!(2026-11-29 12:00 UTC);
        assert_eq!(
            may_import(&context, channel, now, &Thresholds::default()),
            expected,
            "{context:?} {channel}"
        );
    }

    #[test]
    fn permits_are_shared_among_companies() {
        let share = |concurrency, companies| {
            let share = Share::new(concurrency, companies);
            (share.per_company, share.reserve)
        };
        // Alone, a company may use every permit.
        assert_eq!(share(16, 1), (16, 0));
        assert_eq!(share(16, 0), (16, 0));
        // Two tenants, four permits: two each; one more may be lent, one stays free.
        assert_eq!(share(4, 2), (2, 1));
        assert_eq!(share(16, 2), (8, 1));
        assert_eq!(share(16, 5), (4, 4));
        // More companies than permits: one each, one permit kept for the others.
        assert_eq!(share(16, 100), (1, 1));
        // A single permit is never held back.
        assert_eq!(share(1, 3), (1, 0));
    }

    #[test]
    fn settings_decide_whether_a_job_runs() {
        check(|_| {}, Channel::Email, true);
        check(|_| {}, Channel::Calendar, true);
        // Rule 1: switched off.
        check(|c| c.member.email_import = false, Channel::Email, false);
        check(|c| c.member.email_import = false, Channel::Calendar, true);
        check(|c| c.company.import_email = false, Channel::Email, false);
        check(
            |c| {
                c.member.calendar_import = false;
                c.member.recording_enabled = false;
            },
            Channel::Calendar,
            false,
        );
        // Rules 2–4: the company's connection.
        check(
            |c| c.company.provider = Provider::None,
            Channel::Email,
            false,
        );
        check(
            |c| c.company.permission_given = false,
            Channel::Calendar,
            false,
        );
        check(
            |c| c.company.email_authorized = false,
            Channel::Email,
            false,
        );
        check(
            |c| c.company.email_authorized = false,
            Channel::Calendar,
            true,
        );
        // Rules 5–6: the member's own grant (user-by-user only).
        let by_user = |connection| {
            move |c: &mut JobContext| {
                c.company.connection_mode = ConnectionMode::UserByUser;
                c.member.connection = connection;
            }
        };
        check(by_user(None), Channel::Email, false);
        check(
            by_user(Some(MemberConnection::NotConnected)),
            Channel::Email,
            false,
        );
        check(
            by_user(Some(MemberConnection::Invalid)),
            Channel::Email,
            false,
        );
        check(
            by_user(Some(MemberConnection::Connected)),
            Channel::Email,
            true,
        );
        // Rules 7–8: company calendar settings.
        check(
            |c| c.company.import_calendar = false,
            Channel::Calendar,
            false,
        );
        check(|c| c.company.import_calendar = false, Channel::Email, true);
        check(
            |c| c.member.import_non_recorded_meetings = true,
            Channel::Calendar,
            false,
        );
        // A deactivated member or company is never polled.
        check(|c| c.active = false, Channel::Email, false);
    }
}
