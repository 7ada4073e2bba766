//! One claimed job from its settings to its written attempt: the settings check, the
//! credentials, a provider's pause, the import on the job's connector, a rotated token, the
//! next due time, the write and the metrics.

use super::*;

fn unreachable_connector(provider: Provider) -> Attempt {
    // `job_auth` refuses jobs without a connector before any attempt starts.
    Attempt::failed(datacap_connector::Failure::new(
        Outcome::ProviderError,
        format!("no connector for {provider}"),
    ))
}

/// One attempt in flight, counted for its company until dropped.
/// What a running job holds of the worker's limits: a permit and its company's count of
/// attempts in flight. Given back as soon as the provider's part of the job is done (the
/// write that follows holds a write slot instead), or when the job ends.
pub(super) struct JobSlot {
    pub(super) permit: Option<OwnedSemaphorePermit>,
    pub(super) running: Option<InFlight>,
}

impl JobSlot {
    /// Gives the permit and the company's count back (once) and wakes a claim waiting
    /// for them.
    pub(super) fn release(&mut self, ended: &tokio::sync::Notify) {
        if self.permit.take().is_some() {
            self.running.take();
            ended.notify_one();
        }
    }
}

pub(super) struct InFlight {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    company: String,
}

impl InFlight {
    pub(super) fn start(counts: &Arc<Mutex<HashMap<String, usize>>>, company: &str) -> InFlight {
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

impl Worker {
    /// Runs one claimed job to its end. Never panics; every path gives the lease back
    /// (by the attempt write, an explicit release, or — when the database is gone — by
    /// letting it expire).
    pub(super) async fn run_job(
        &self,
        job: Job,
        abandon: CancellationToken,
        slot: &mut JobSlot,
    ) -> JobEnd {
        let attempt_id = Uuid::now_v7();
        let span = info_span!(
            "attempt",
            company = %job.context.company_id,
            member = %job.context.member_id,
            channel = %job.channel,
            provider = %job.provider(),
            attempt_id = %attempt_id,
            request_id = tracing::field::Empty,
        );
        self.run_job_in_span(job, attempt_id, abandon, slot)
            .instrument(span)
            .await
    }

    pub(super) async fn run_job_in_span(
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
        let member_lock = self.member_lock(&job.context.member_id);
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
            lock(&inner.deferred).remove(&(job.context.member_id.clone(), job.channel));
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
        if !datacap_core::may_import(
            &context.company,
            &context.member,
            context.active,
            job.channel,
            now,
            &inner.config.thresholds,
        ) {
            debug!("settings forbid importing: re-checked later");
            drop(heartbeat);
            let recheck = schedule::recheck_at(&inner.schedule(), now, fastrand::f64());
            let _ = inner.store.release(&job, self.owner(), Some(recheck)).await;
            events::skipped(job.provider(), job.channel, "settings");
            return JobEnd::Skipped(Skip::Settings);
        }
        let (auth, refresh_token) = match self.job_auth(&context, &job, dead_grant).await {
            Ok(Some(auth)) => auth,
            Ok(None) => {
                drop(heartbeat);
                let recheck = schedule::recheck_at(&inner.schedule(), now, fastrand::f64());
                // A member who connects while this job is leased keeps it due.
                let _ = inner
                    .store
                    .release_without_grant(&job, self.owner(), recheck)
                    .await;
                events::skipped(job.provider(), job.channel, "no_grant");
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
            company: job.context.company_id.clone(),
            member: job.context.member_id.clone(),
            channel: job.channel,
            app: app_key(job.provider(), &auth),
        };
        if let Some(left) = inner.limits.paused_for(&holder) {
            let due = now + time::Duration::try_from(left).unwrap_or(time::Duration::ZERO);
            drop(heartbeat);
            let _ = inner.store.release(&job, self.owner(), Some(due)).await;
            events::rate_limit_wait(job.provider(), events::WaitCause::RetryAfter, left);
            events::skipped(job.provider(), job.channel, "paused");
            if inner.deferring.load(Ordering::Relaxed) {
                lock(&inner.deferred).insert(
                    (job.context.member_id.clone(), job.channel),
                    Instant::now() + left,
                );
            }
            return JobEnd::Skipped(Skip::Paused);
        }

        let started_at = OffsetDateTime::now_utc();
        let import_job = ImportJob {
            attempt_id,
            company_id: job.context.company_id.clone(),
            member_id: job.context.member_id.clone(),
            member_address: job.context.member_email.clone(),
            channel: job.channel,
            auth,
            refresh_token,
            cursor: job.cursor.clone(),
            now: started_at,
            gate: inner.limits.gate(holder, job.provider()),
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
        events::token_requests(job.provider(), &attempt.token_requests);
        for check in &attempt.refused_checks {
            let log = self.first_refusal_this_hour(&job.context.company_id, check.check);
            events::optional_check_refused(job.provider(), &job.context.company_id, check, log);
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
            member_id: job.context.member_id.clone(),
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
                events::AttemptWritten {
                    provider: job.provider(),
                    channel: job.channel,
                    outcome: attempt.outcome,
                    elapsed,
                    items,
                    http_status: attempt.http_status,
                    error_code: attempt.error_code.as_deref(),
                    request_id: attempt.request_id.as_deref(),
                    requests: attempt.requests,
                }
                .emit();
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
    pub(super) async fn record(
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
    pub(super) async fn import_or_abandon(
        &self,
        job: &Job,
        import_job: &ImportJob,
        abandon: &CancellationToken,
    ) -> Option<Attempt> {
        tokio::select! {
            attempt = self.import(job.provider(), import_job) => Some(attempt),
            () = abandon.cancelled() => None,
        }
    }

    /// Whether `company`'s refusal of `check` is the first in
    /// [`events::OPTIONAL_CHECK_LOG_EVERY`] (then it is logged with the answer).
    pub(super) fn first_refusal_this_hour(&self, company: &str, check: &'static str) -> bool {
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

    pub(super) async fn import(&self, provider: Provider, job: &ImportJob) -> Attempt {
        match self.inner.connectors.get(provider) {
            Some(connector) => connector.import(job).await,
            None => unreachable_connector(provider),
        }
    }

    pub(super) async fn abandon(&self, job: &Job) -> JobEnd {
        let _ = self.inner.store.release(job, self.owner(), None).await;
        events::abandoned();
        JobEnd::Abandoned
    }
}
