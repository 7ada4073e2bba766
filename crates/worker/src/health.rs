//! What `/readyz` asks of the worker: is the database reachable, and is the scheduler still
//! making progress? The worker writes both as it runs; readers only load atomics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The worker's liveness facts, shared with the HTTP endpoints.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    database_ok: AtomicBool,
    /// Milliseconds since `started` of the last scheduler step that reached the database.
    last_progress_ms: AtomicU64,
    /// Not ready when the scheduler has not stepped for this long.
    stale_after: Duration,
}

/// Why the worker is not ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// The last database call failed.
    DatabaseUnreachable,
    /// The scheduler has not reached the database for longer than allowed.
    SchedulerStalled,
    /// No scheduler step has run yet.
    Starting,
}

impl NotReady {
    /// A short reason for `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotReady::DatabaseUnreachable => "database unreachable",
            NotReady::SchedulerStalled => "scheduler not making progress",
            NotReady::Starting => "starting",
        }
    }
}

impl Health {
    /// Health that goes stale when the scheduler has not stepped for `stale_after`.
    pub fn new(stale_after: Duration) -> Health {
        Health {
            started: Instant::now(),
            database_ok: AtomicBool::new(false),
            last_progress_ms: AtomicU64::new(u64::MAX),
            stale_after,
        }
    }

    /// The scheduler reached the database.
    pub fn progress(&self) {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_progress_ms.store(elapsed, Ordering::Relaxed);
        self.database_ok.store(true, Ordering::Relaxed);
    }

    /// A database call failed.
    pub fn database_failed(&self) {
        self.database_ok.store(false, Ordering::Relaxed);
    }

    /// Ready, or why not.
    pub fn ready(&self) -> Result<(), NotReady> {
        let last = self.last_progress_ms.load(Ordering::Relaxed);
        if last == u64::MAX {
            return Err(NotReady::Starting);
        }
        if !self.database_ok.load(Ordering::Relaxed) {
            return Err(NotReady::DatabaseUnreachable);
        }
        let since = self
            .started
            .elapsed()
            .saturating_sub(Duration::from_millis(last));
        if since > self.stale_after {
            return Err(NotReady::SchedulerStalled);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_database_and_progress() {
        let health = Health::new(Duration::from_secs(60));
        assert_eq!(health.ready(), Err(NotReady::Starting));
        health.progress();
        assert_eq!(health.ready(), Ok(()));
        health.database_failed();
        assert_eq!(health.ready(), Err(NotReady::DatabaseUnreachable));
        health.progress();
        assert_eq!(health.ready(), Ok(()));
        let stale = Health::new(Duration::ZERO);
        stale.progress();
        std::thread::yield_now();
        // With a zero allowance any elapsed time is stale, or exactly on time.
        assert!(matches!(
            stale.ready(),
            Ok(()) | Err(NotReady::SchedulerStalled)
        ));
    }
}
