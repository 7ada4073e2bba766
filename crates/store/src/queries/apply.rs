//! `datacap apply`: the tenants file written in one transaction (companies, members,
//! their sync-state rows, webhook endpoints), then every listed company's statuses and
//! banners recomputed in that same transaction.

use std::collections::{HashMap, HashSet};

use datacap_core::Channel;
use time::OffsetDateTime;

use super::locked;
use crate::backend::{Backend, Dialect, Tx};
use crate::dbtime::DbTime;
use crate::error::StoreError;
use crate::model::ApplySummary;
use crate::sql::{Builder, query, query_as};
use crate::tenants::Tenants;

/// Members per multi-row statement of `apply` (12 parameters each): below both
/// databases' bind-parameter limits (SQLite 32,766, PostgreSQL 65,535).
const APPLY_CHUNK: usize = 1_000;

impl<D: Dialect> Backend<D> {
    /// Upserts the companies and members of a validated tenants file, deactivates the
    /// members (and companies) it no longer lists, and recomputes the statuses and banners
    /// of every listed company: all in one transaction.
    pub async fn apply_tenants(
        &self,
        tenants: &Tenants,
        now: OffsetDateTime,
    ) -> Result<ApplySummary, StoreError> {
        let at = DbTime::new(now);
        let mut tx = self.begin_write().await?;
        // The writers' lock order (see [`Dialect::LOCK_MEMBERS`]): every member row in id order,
        // then every company row in id order, before any row is written. Apply touches
        // any member (deactivation) and recomputes company after company, so it takes
        // them all up front; taking a company before a member would wait in a cycle
        // with an attempt write holding that member and waiting for the company.
        let select_members = locked(
            "SELECT id, company_id, active FROM members ORDER BY id",
            D::LOCK_ROWS,
        );
        let select_companies = locked("SELECT id, active FROM companies ORDER BY id", D::LOCK_ROWS);
        let existing_members: Vec<(String, String, bool)> =
            query_as(select_members).fetch_all(&mut tx).await?;
        let owners: HashMap<&str, &str> = existing_members
            .iter()
            .map(|(id, company, _)| (id.as_str(), company.as_str()))
            .collect();
        let existing_companies: Vec<(String, bool)> =
            query_as(select_companies).fetch_all(&mut tx).await?;

        let mut summary = ApplySummary::default();
        let mut declared_members = HashSet::new();
        for company in &tenants.companies {
            let settings = &company.settings;
            let credentials =
                serde_json::to_string(&company.credentials).unwrap_or_else(|_| "{}".to_owned());
            query(
                "INSERT INTO companies (id, name, provider, connection_mode, permission_given, \
                 email_authorized, calendar_authorized, import_email, import_calendar, \
                 import_non_recorded_meetings, credential_refs, active, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, TRUE, $12, $12) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 provider = excluded.provider, connection_mode = excluded.connection_mode, \
                 permission_given = excluded.permission_given, \
                 email_authorized = excluded.email_authorized, \
                 calendar_authorized = excluded.calendar_authorized, \
                 import_email = excluded.import_email, import_calendar = excluded.import_calendar, \
                 import_non_recorded_meetings = excluded.import_non_recorded_meetings, \
                 credential_refs = excluded.credential_refs, active = TRUE, \
                 updated_at = excluded.updated_at",
            )
            .bind(&company.id)
            .bind(&company.name)
            .bind(settings.provider.as_str())
            .bind(settings.connection_mode.as_str())
            .bind(settings.permission_given)
            .bind(settings.email_authorized)
            .bind(settings.calendar_authorized)
            .bind(settings.import_email)
            .bind(settings.import_calendar)
            .bind(settings.import_non_recorded_meetings)
            .bind(credentials)
            .bind(at)
            .execute(&mut tx)
            .await?;
            summary.companies += 1;

            for member in &company.members {
                if let Some(existing) = owners.get(member.id.as_str())
                    && *existing != company.id
                {
                    return Err(StoreError::MemberInOtherCompany {
                        member_id: member.id.clone(),
                        existing: (*existing).to_owned(),
                        requested: company.id.clone(),
                    });
                }
                declared_members.insert(member.id.as_str());
            }
            // Multi-row statements: a file of half a million members is a few thousand
            // statements, not a million.
            for chunk in company.members.chunks(APPLY_CHUNK) {
                let mut upsert = Builder::<D>::new(
                    "INSERT INTO members (id, company_id, email, aliases, has_recording_seat, \
                     recording_enabled, email_import, calendar_import, \
                     import_non_recorded_meetings, active, created_at, updated_at, \
                     deactivated_at) ",
                );
                upsert.push_values(chunk, |mut row, member| {
                    let settings = &member.settings;
                    row.push_bind(member.id.clone())
                        .push_bind(company.id.clone())
                        .push_bind(member.email.clone())
                        .push_bind(member.aliases.join(" "))
                        .push_bind(settings.has_recording_seat)
                        .push_bind(settings.recording_enabled)
                        .push_bind(settings.email_import)
                        .push_bind(settings.calendar_import)
                        .push_bind(settings.import_non_recorded_meetings)
                        .push_bind(member.active)
                        .push_bind(at)
                        .push_bind(at)
                        .push_bind((!member.active).then_some(at));
                });
                upsert.push(
                    " ON CONFLICT (id) DO UPDATE SET email = excluded.email, \
                     aliases = excluded.aliases, has_recording_seat = excluded.has_recording_seat, \
                     recording_enabled = excluded.recording_enabled, \
                     email_import = excluded.email_import, \
                     calendar_import = excluded.calendar_import, \
                     import_non_recorded_meetings = excluded.import_non_recorded_meetings, \
                     active = excluded.active, updated_at = excluded.updated_at, \
                     deactivated_at = CASE WHEN excluded.active THEN NULL \
                     WHEN members.active THEN excluded.updated_at \
                     ELSE members.deactivated_at END",
                );
                upsert.build().execute(&mut tx).await?;
                let mut sync =
                    Builder::<D>::new("INSERT INTO sync_state (member_id, channel, next_due_at) ");
                sync.push_values(
                    chunk
                        .iter()
                        .flat_map(|member| [(member, Channel::Email), (member, Channel::Calendar)]),
                    |mut row, (member, channel)| {
                        row.push_bind(member.id.clone())
                            .push_bind(channel.as_str())
                            .push_bind(at);
                    },
                );
                sync.push(" ON CONFLICT (member_id, channel) DO NOTHING");
                sync.build().execute(&mut tx).await?;
                summary.members += chunk.len();
            }
        }

        for (id, _, active) in &existing_members {
            if *active && !declared_members.contains(id.as_str()) {
                query(
                    "UPDATE members SET active = FALSE, deactivated_at = $2, updated_at = $2 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(at)
                .execute(&mut tx)
                .await?;
                summary.members_deactivated += 1;
            }
        }
        let declared_companies: HashSet<&str> = tenants
            .companies
            .iter()
            .map(|company| company.id.as_str())
            .collect();
        for (id, active) in &existing_companies {
            if *active && !declared_companies.contains(id.as_str()) {
                query("UPDATE companies SET active = FALSE, updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&mut tx)
                    .await?;
                query("DELETE FROM company_banners WHERE company_id = $1")
                    .bind(id)
                    .execute(&mut tx)
                    .await?;
                summary.companies_deactivated += 1;
            }
        }
        (summary.webhooks, summary.webhooks_deactivated) =
            self.apply_webhooks_in(&mut tx, tenants, at).await?;
        for company in &tenants.companies {
            self.recompute_company_in(&mut tx, &company.id, now).await?;
        }
        tx.commit().await?;
        Ok(summary)
    }

    /// Upserts every declared webhook endpoint and deactivates the ones the file no longer
    /// lists (their deliveries kept; declared again, they resume). Before the statuses
    /// are recomputed, so the changes `apply` itself causes reach the new endpoints.
    pub(super) async fn apply_webhooks_in(
        &self,
        tx: &mut Tx<D>,
        tenants: &Tenants,
        at: DbTime,
    ) -> Result<(usize, usize), StoreError> {
        let existing: Vec<(String, String)> =
            query_as("SELECT company_id, id FROM webhook_endpoints WHERE active")
                .fetch_all(&mut *tx)
                .await?;
        let mut declared = HashSet::new();
        for company in &tenants.companies {
            for webhook in &company.webhooks {
                let events: Vec<&str> = webhook.events.iter().map(|e| e.as_str()).collect();
                query(
                    "INSERT INTO webhook_endpoints (company_id, id, url, secret_ref, events,                      active, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, TRUE, $6, $6)                      ON CONFLICT (company_id, id) DO UPDATE SET url = excluded.url,                      secret_ref = excluded.secret_ref, events = excluded.events, active = TRUE,                      updated_at = excluded.updated_at",
                )
                .bind(&company.id)
                .bind(&webhook.id)
                .bind(&webhook.url)
                .bind(webhook.secret.to_json())
                .bind(serde_json::to_string(&events).unwrap_or_else(|_| "[]".to_owned()))
                .bind(at)
                .execute(&mut *tx)
                .await?;
                declared.insert((company.id.as_str(), webhook.id.as_str()));
            }
        }
        let mut deactivated = 0;
        for (company_id, id) in &existing {
            if !declared.contains(&(company_id.as_str(), id.as_str())) {
                deactivated += 1;
                query(
                    "UPDATE webhook_endpoints SET active = FALSE, updated_at = $3                      WHERE company_id = $1 AND id = $2",
                )
                .bind(company_id)
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
        }
        Ok((declared.len(), deactivated))
    }
}
