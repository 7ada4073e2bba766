//! Claiming: permits first (a job is claimed only when one is free), then due jobs under a
//! lease, shared fairly among companies (`Share`).

use super::*;

/// How one worker's permits are shared among companies. A company's share is
/// `concurrency / companies` (rounded up, at least one): a company with that many attempts
/// in flight is skipped by the claims, and the claims take turns across the others, so a
/// slow tenant's backlog cannot take every permit while the others have due work. Permits
/// nobody else claims may be lent beyond a share, but `reserve` of them (one per other
/// company, at most a share) are never lent, so a company whose jobs fall due while
/// another's slow attempts run finds a free permit at the next claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Share {
    pub(super) per_company: usize,
    pub(super) reserve: usize,
}

impl Share {
    pub(super) fn new(concurrency: usize, companies: usize) -> Share {
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

impl Worker {
    /// Waits for one free permit (or cancellation).
    pub(super) async fn first_permit(
        &self,
        cancel: &CancellationToken,
    ) -> Option<OwnedSemaphorePermit> {
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
    pub(super) async fn gather_permits(&self, cancel: &CancellationToken) {
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
    pub(super) fn claim_limit(&self) -> u32 {
        let free = self.inner.permits.available_permits().saturating_add(1);
        u32::try_from(free)
            .unwrap_or(u32::MAX)
            .min(self.inner.config.claim_batch)
    }

    /// Claims up to `limit` jobs (one per free permit), companies sharing the permits
    /// (see `Share`): companies at their share are skipped and the others take turns;
    /// when that leaves permits over, companies may borrow them beyond their share, except
    /// `reserve` kept free for the other companies' next due jobs.
    pub(super) async fn claim(&self, limit: u32) -> Result<Vec<Job>, datacap_store::StoreError> {
        let result = self.claim_fair(limit).await;
        match &result {
            Ok(jobs) => {
                self.inner.health.progress();
                let reclaimed = jobs.iter().filter(|job| job.reclaimed_from.is_some());
                for job in reclaimed.clone() {
                    info!(
                        company = %job.context.company_id,
                        member = %job.context.member_id,
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

    pub(super) async fn claim_fair(
        &self,
        limit: u32,
    ) -> Result<Vec<Job>, datacap_store::StoreError> {
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
                .entry(job.context.company_id.clone())
                .or_insert_with(|| in_flight.get(&job.context.company_id).copied().unwrap_or(0));
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
    pub(super) fn set_companies(&self, companies: usize) {
        self.inner
            .companies
            .store(companies.max(1), Ordering::Relaxed);
    }
}
