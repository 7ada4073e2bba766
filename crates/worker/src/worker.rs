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

use datacap_connector::{Attempt, Auth, ImportJob, Registry, RotatedToken};
use datacap_core::{
    Channel, ConnectionMode, Icon, MemberConnection, Outcome, Provider, Reason, Thresholds,
};
use datacap_store::{AttemptRecord, BackendKind, EncryptionKey, Job, JobContext, Store};
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};
use uuid::Uuid;

use crate::credentials::{CompanyCredentials, CredentialError, CredentialResolver};
use crate::events;
use crate::health::Health;
use crate::limits::{Holder, TenantLimits, app_key};
use crate::schedule::{self, ScheduleConfig};
use crate::writer::{AttemptWriter, WriteError};

mod auth;
mod claim;
mod config;
mod heartbeat;
mod job;
mod passes;
#[cfg(test)]
mod tests;

pub use config::{ConfigError, WorkerConfig};
use job::{InFlight, JobSlot};

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
type CachedCredentials = (Instant, Result<Auth, CredentialError>);

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
                .partition(|job| seen.insert((job.context.member_id.clone(), job.channel)));
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

    fn take_report(&self) -> CycleReport {
        let mut report = lock(&self.inner.report);
        std::mem::take(&mut *report)
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
                running: Some(InFlight::start(
                    &self.inner.in_flight,
                    &job.context.company_id,
                )),
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
