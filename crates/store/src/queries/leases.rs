//! Leases on due work: claiming due (member, channel) jobs fairly across companies,
//! extending and releasing their leases, the queue's lag, and making a member due again.

use datacap_core::Channel;
use time::OffsetDateTime;

use super::{known_member_in, parse_channel, to_u32};
use crate::backend::{Backend, Dialect};
use crate::dbtime::DbTime;
use crate::error::StoreError;
use crate::model::{DueReport, Job};
use crate::sql::{Builder, Param, query, query_as};

/// The due, unleased jobs a claim ranks: the oldest first, from companies not skipped.
macro_rules! claim_candidates {
    () => {
        "SELECT s.member_id, s.channel, s.next_due_at, m.company_id \
         FROM sync_state s JOIN members m ON m.id = s.member_id \
         JOIN companies c ON c.id = m.company_id \
         WHERE m.active AND c.active AND c.provider <> 'none' AND s.next_due_at <= "
    };
}

/// A due job's lease is free (never taken, released, or expired).
macro_rules! lease_free {
    () => {
        "(s.lease_owner IS NULL OR s.lease_expires_at IS NULL OR s.lease_expires_at <= "
    };
}

impl<D: Dialect> Backend<D> {
    /// Leases up to `limit` due (member, channel) jobs to `owner` until `now + lease`.
    /// A job whose lease expired is due again. Companies take turns (see
    /// [`Self::claim_due_fair`], with no company skipped and `limit` per company).
    pub async fn claim_due(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        self.claim_due_fair(owner, now, lease, limit, limit, &[])
            .await
    }

    /// Leases up to `limit` due jobs to `owner` until `now + lease`, round-robin across
    /// companies: each company's oldest due job first, then each one's second, and so on,
    /// at most `per_company` of any one company, none of the companies in `skip` (the
    /// worker's companies already at their share of its permits). Only the oldest due jobs
    /// (a few times `limit`) are ranked, so a claim costs the same whatever the backlog; a
    /// company whose backlog fills them is skipped by the next claim once it has its share.
    pub async fn claim_due_fair(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
        per_company: u32,
        skip: &[String],
    ) -> Result<Vec<Job>, StoreError> {
        let at = DbTime::new(now);
        let expires = DbTime::new(now + lease);
        let candidates = i64::from(limit.saturating_mul(4).max(64));
        let mut tx = self.begin_write().await?;
        let mut select = Builder::<D>::new(
            // The job's context (settings, grant state, credential references) comes
            // with it, so the worker reads nothing more before it runs the job.
            concat!(
                "SELECT s.member_id, s.channel, s.cursor, s.consecutive_transient_failures, \
                 s.lease_owner, ",
                super::context::context_columns!(),
                " FROM sync_state s JOIN members m ON m.id = s.member_id \
             JOIN companies c ON c.id = m.company_id \
             LEFT JOIN member_grants g ON g.member_id = m.id JOIN (SELECT d.member_id, d.channel, \
             d.next_due_at, row_number() OVER (PARTITION BY d.company_id \
             ORDER BY d.next_due_at, d.member_id, d.channel) AS turn FROM ("
            ),
        );
        select.push(claim_candidates!()).push_bind(at);
        select
            .push(concat!(" AND ", lease_free!()))
            .push_bind(at)
            .push(")");
        if !skip.is_empty() {
            select.push(" AND m.company_id NOT IN (");
            let mut companies = select.separated(", ");
            for company in skip {
                companies.push_bind(company.as_str());
            }
            select.push(")");
        }
        select
            .push(" ORDER BY s.next_due_at, s.member_id, s.channel LIMIT ")
            .push_bind(candidates)
            .push(") d) r ON r.member_id = s.member_id AND r.channel = s.channel WHERE r.turn <= ")
            .push_bind(i64::from(per_company))
            // Checked again on the locked row: another replica may have leased it since.
            .push(concat!(" AND ", lease_free!()))
            .push_bind(at)
            .push(") ORDER BY r.turn, r.next_due_at, s.member_id, s.channel LIMIT ")
            .push_bind(i64::from(limit));
        // PostgreSQL: replicas share the database, so skip rows another claimer is taking
        // (only `s` is locked; the ranking is a plain subquery).
        // SQLite: the single writer transaction already serializes claimers.
        select.push(D::SKIP_LOCKED_JOBS);
        let rows = select.build().fetch_all(&mut tx).await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            let channel: String = D::get(row, 1)?;
            let failures: i64 = D::get(row, 3)?;
            let context = super::context::context_from_row::<D>(row, 5)?;
            jobs.push(Job {
                channel: parse_channel(&channel)?,
                cursor: D::get(row, 2)?,
                consecutive_transient_failures: to_u32(failures),
                lease_owner: owner.to_owned(),
                lease_expires_at: expires.0,
                reclaimed_from: D::get(row, 4)?,
                context,
            });
        }
        // Every claimed row's lease in one statement, not one round trip per job.
        let keys = jobs
            .iter()
            .map(|job| {
                (
                    job.context.member_id.clone(),
                    job.channel.as_str().to_owned(),
                )
            })
            .collect();
        D::lease_rows(&mut tx, keys, owner, expires).await?;
        tx.commit().await?;
        Ok(jobs)
    }

    /// Extends `owner`'s lease on the job until `until`; false when the lease is no longer
    /// `owner`'s (it expired and another claimer took it, or it was released).
    pub async fn heartbeat(
        &self,
        job: &Job,
        owner: &str,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.update_own_lease(
            "UPDATE sync_state SET lease_expires_at = $4 \
             WHERE member_id = $1 AND channel = $2 AND lease_owner = $3",
            job,
            owner,
            DbTime::new(until),
        )
        .await
    }

    /// Gives `owner`'s lease back without an attempt (shutdown, skipped work), optionally
    /// moving the due time; false when the lease was not `owner`'s.
    pub async fn release(
        &self,
        job: &Job,
        owner: &str,
        next_due_at: Option<OffsetDateTime>,
    ) -> Result<bool, StoreError> {
        self.update_own_lease(
            "UPDATE sync_state SET lease_owner = NULL, lease_expires_at = NULL, \
             next_due_at = COALESCE($4, next_due_at) \
             WHERE member_id = $1 AND channel = $2 AND lease_owner = $3",
            job,
            owner,
            next_due_at.map(DbTime::new),
        )
        .await
    }

    /// Releases a user-by-user job that found no usable grant, due again at `recheck`,
    /// unless the member has a connected grant with a token by now: then the due time
    /// stays (the job is claimed again at once; a grant without a token would not end the
    /// skip, so it gets the recheck). The member may connect while the job is leased, when
    /// `make_due` leaves it alone; without this the first import would wait for `recheck`.
    pub async fn release_without_grant(
        &self,
        job: &Job,
        owner: &str,
        recheck: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.update_own_lease(
            "UPDATE sync_state SET lease_owner = NULL, lease_expires_at = NULL, \
             next_due_at = CASE WHEN EXISTS (SELECT 1 FROM member_grants g \
                 WHERE g.member_id = $1 AND g.state = 'connected' \
                 AND g.refresh_token_ciphertext IS NOT NULL) \
               THEN next_due_at ELSE $4 END \
             WHERE member_id = $1 AND channel = $2 AND lease_owner = $3",
            job,
            owner,
            DbTime::new(recheck),
        )
        .await
    }

    /// Runs `update`, a `sync_state` update of `job`'s row while `owner` holds its lease
    /// (`$1` the member, `$2` the channel, `$3` the owner, `$4` `value`), in a write
    /// transaction of its own; false when the lease was not `owner`'s.
    async fn update_own_lease(
        &self,
        update: &'static str,
        job: &Job,
        owner: &str,
        value: impl Param<'static>,
    ) -> Result<bool, StoreError> {
        let update = query(update)
            .bind(&job.context.member_id)
            .bind(job.channel.as_str())
            .bind(owner)
            .bind(value);
        Ok(self.write_one(update).await? > 0)
    }

    /// When the oldest job that is due at `now` and held by no live lease became due (the
    /// start of the queue lag); `None` when nothing waits. The claim's own filter, walked in
    /// `next_due_at` order on the `sync_state_due_order` index and stopped at the first match.
    pub async fn oldest_waiting_due_at(
        &self,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let row: Option<(DbTime,)> = query_as(
            "SELECT s.next_due_at FROM sync_state s JOIN members m ON m.id = s.member_id \
             JOIN companies c ON c.id = m.company_id \
             WHERE m.active AND c.active AND c.provider <> 'none' AND s.next_due_at <= $1 \
             AND (s.lease_owner IS NULL OR s.lease_expires_at IS NULL OR s.lease_expires_at <= $1) \
             ORDER BY s.next_due_at LIMIT 1",
        )
        .bind(DbTime::new(now))
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(|(at,)| at.0))
    }

    /// Sets `next_due_at = now` on the member's sync-state rows (one channel's, or both)
    /// that no live lease holds, in one transaction; counts the leased ones apart.
    pub async fn make_due(
        &self,
        member_id: &str,
        channel: Option<Channel>,
        now: OffsetDateTime,
        full: bool,
    ) -> Result<DueReport, StoreError> {
        let mut tx = self.begin_write().await?;
        known_member_in(&mut tx, member_id).await?;
        // One channel or both: `channel IN ($3, $4)` with the same value twice for one.
        let (first, second) = match channel {
            Some(channel) => (channel.as_str(), channel.as_str()),
            None => (Channel::Email.as_str(), Channel::Calendar.as_str()),
        };
        // `full`: the saved cursor goes too, so the next poll is a full pass (items are
        // upserted on their provider id, so what was imported before stays one row).
        let made_due = query(
            "UPDATE sync_state SET next_due_at = $2, \
             cursor = CASE WHEN $5 THEN NULL ELSE cursor END \
             WHERE member_id = $1 AND channel IN ($3, $4) \
             AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= $2)",
        )
        .bind(member_id)
        .bind(DbTime::new(now))
        .bind(first)
        .bind(second)
        .bind(full)
        .execute(&mut tx)
        .await?;
        let (leased,): (i64,) = query_as(
            "SELECT COUNT(*) FROM sync_state WHERE member_id = $1 AND channel IN ($3, $4) \
             AND lease_owner IS NOT NULL AND lease_expires_at > $2",
        )
        .bind(member_id)
        .bind(DbTime::new(now))
        .bind(first)
        .bind(second)
        .fetch_one(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(DueReport {
            made_due,
            leased: u64::try_from(leased).unwrap_or(0),
        })
    }
}
