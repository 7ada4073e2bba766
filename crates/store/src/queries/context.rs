//! What the worker reads before it runs a claimed job: the company's and member's settings
//! (to skip work that the settings forbid, STATUS_MODEL.md rules 1–8), the company's
//! credential references (resolved by the binary, never here) and the list of companies
//! (for the periodic stall pass).

use std::collections::BTreeMap;

use super::{parse_connection, settings_at};
use crate::backend::{Backend, Dialect};
use crate::error::{StoreError, corrupt};
use crate::model::JobContext;
use crate::sql::{query, query_as};

/// The columns [`context_from_row`] reads, in its order, from `members m`, `companies c`
/// and `member_grants g` (left joined): the job context's query and the claim's.
macro_rules! context_columns {
    () => {
        "m.id, m.company_id, m.email, m.has_recording_seat, m.recording_enabled, \
         m.email_import, m.calendar_import, m.import_non_recorded_meetings, c.provider, \
         c.connection_mode, c.permission_given, c.email_authorized, c.calendar_authorized, \
         c.import_email, c.import_calendar, c.import_non_recorded_meetings, \
         c.credential_refs, g.state, m.active, c.active"
    };
}
pub(super) use context_columns;

impl<D: Dialect> Backend<D> {
    /// The settings and credential references a job of `member_id` runs with; `None`
    /// when the member is unknown.
    pub async fn job_context(&self, member_id: &str) -> Result<Option<JobContext>, StoreError> {
        let row = query(concat!(
            "SELECT ",
            context_columns!(),
            " FROM members m JOIN companies c ON c.id = m.company_id \
             LEFT JOIN member_grants g ON g.member_id = m.id WHERE m.id = $1"
        ))
        .bind(member_id)
        .fetch_optional(self.reader())
        .await?;
        row.map(|row| context_from_row::<D>(&row, 0)).transpose()
    }

    /// The ids of every active company, sorted.
    pub async fn active_company_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = query_as("SELECT id FROM companies WHERE active ORDER BY id")
            .fetch_all(self.reader())
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// A cheap round trip to the database (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }
}

/// A [`JobContext`] from [`context_columns`], the first of them at index `at` of `row`.
pub(super) fn context_from_row<D: Dialect>(
    row: &D::Row,
    at: usize,
) -> Result<JobContext, StoreError> {
    let refs: Option<String> = D::get(row, at + 16)?;
    let connection = parse_connection(D::get(row, at + 17)?)?;
    let credential_refs: BTreeMap<String, String> = match refs.as_deref() {
        None | Some("") => BTreeMap::new(),
        Some(text) => serde_json::from_str(text)
            .map_err(|_| corrupt("companies", "credential_refs", "(not a json object)"))?,
    };
    let member_id = D::get(row, at)?;
    let company_id = D::get(row, at + 1)?;
    let member_email = D::get(row, at + 2)?;
    let (member, company) = settings_at::<D>(row, at + 3, connection)?;
    Ok(JobContext {
        member_id,
        company_id,
        member_email,
        member,
        company,
        credential_refs,
        active: D::get::<bool>(row, at + 18)? && D::get::<bool>(row, at + 19)?,
    })
}
