//! What the Team members page and its JSON API read besides the status report: a member's
//! recent import attempts (on-call traces a red icon to the attempt), and attempts by id
//! (the page shows the HTTP status and provider error code of each red icon's attempt).
//!
//! Compiled once per backend, like `shared.rs`: `sqlite.rs` and `postgres.rs` each declare
//! it as their `reads` module after defining `Backend` and `Db`.

use datacap_core::{Channel, Outcome};
use sqlx::QueryBuilder;

use super::{Backend, Db};
use crate::dbtime::DbTime;
use crate::error::{StoreError, corrupt};
use crate::model::{AttemptReport, StatusChangeReport};

/// `import_attempts` columns in [`AttemptReport`] order.
macro_rules! attempt_select {
    () => {
        "SELECT id, member_id, channel, started_at, finished_at, outcome, http_status, \
         provider_error_code, provider_error_message, provider_request_id, items_imported \
         FROM import_attempts"
    };
}

type AttemptReadRow = (
    String,
    String,
    String,
    DbTime,
    DbTime,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

fn attempt_report(row: AttemptReadRow) -> Result<AttemptReport, StoreError> {
    let (id, member_id, channel, started, finished, outcome, status, code, message, request, n) =
        row;
    Ok(AttemptReport {
        channel: Channel::parse(&channel)
            .ok_or_else(|| corrupt("import_attempts", "channel", &channel))?,
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| corrupt("import_attempts", "outcome", &outcome))?,
        attempt_id: id,
        member_id,
        started_at: started.0,
        finished_at: finished.0,
        http_status: status.and_then(|status| u16::try_from(status).ok()),
        provider_error_code: code,
        provider_error_message: message,
        provider_request_id: request,
        items_imported: u64::try_from(n).unwrap_or(0),
    })
}

impl Backend {
    /// The latest `limit` attempts of `member_id` in `company_id`, newest first. An
    /// unknown company, or a member that is not that company's, is an error.
    pub async fn member_attempts(
        &self,
        company_id: &str,
        member_id: &str,
        limit: u32,
    ) -> Result<Vec<AttemptReport>, StoreError> {
        let company: Option<(String,)> =
            sqlx::query_as("SELECT id FROM companies WHERE id = $1 AND active")
                .bind(company_id)
                .fetch_optional(self.reader())
                .await?;
        if company.is_none() {
            return Err(StoreError::UnknownCompany {
                company_id: company_id.to_owned(),
            });
        }
        let member: Option<(String,)> =
            sqlx::query_as("SELECT id FROM members WHERE id = $1 AND company_id = $2")
                .bind(member_id)
                .bind(company_id)
                .fetch_optional(self.reader())
                .await?;
        if member.is_none() {
            return Err(StoreError::UnknownMember {
                member_id: member_id.to_owned(),
            });
        }
        let rows: Vec<AttemptReadRow> = sqlx::query_as(concat!(
            attempt_select!(),
            " WHERE member_id = $1 ORDER BY finished_at DESC, id DESC LIMIT $2"
        ))
        .bind(member_id)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(attempt_report).collect()
    }

    /// The latest `limit` status changes of `member_id` in `company_id` (the
    /// `status_changes` history: every change of an icon's colour or reason, the first
    /// evaluation included), newest first. Unknown company or member: an error.
    pub async fn member_history(
        &self,
        company_id: &str,
        member_id: &str,
        limit: u32,
    ) -> Result<Vec<StatusChangeReport>, StoreError> {
        // The same checks as the attempts read: the member must be the company's.
        self.member_attempts(company_id, member_id, 1).await?;
        type ChangeReadRow = (
            String,
            Option<String>,
            Option<String>,
            String,
            String,
            Option<String>,
            DbTime,
        );
        let rows: Vec<ChangeReadRow> = sqlx::query_as(
            "SELECT icon, from_color, from_reason, to_color, to_reason, attempt_id, changed_at \
             FROM status_changes WHERE member_id = $1 ORDER BY changed_at DESC, id DESC LIMIT $2",
        )
        .bind(member_id)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.into_iter()
            .map(
                |(icon, from_color, from_reason, to_color, to_reason, attempt_id, at)| {
                    let color = |text: &str| {
                        datacap_core::Color::parse(text)
                            .ok_or_else(|| corrupt("status_changes", "color", text))
                    };
                    let reason = |text: &str| {
                        datacap_core::Reason::parse(text)
                            .ok_or_else(|| corrupt("status_changes", "reason", text))
                    };
                    Ok(StatusChangeReport {
                        icon: datacap_core::Icon::parse(&icon)
                            .ok_or_else(|| corrupt("status_changes", "icon", &icon))?,
                        from_color: from_color.as_deref().map(color).transpose()?,
                        from_reason: from_reason.as_deref().map(reason).transpose()?,
                        to_color: color(&to_color)?,
                        to_reason: reason(&to_reason)?,
                        attempt_id,
                        changed_at: at.0,
                    })
                },
            )
            .collect()
    }

    /// The attempts with these ids (those retention has not pruned), in no set order.
    pub async fn attempts_by_id(&self, ids: &[String]) -> Result<Vec<AttemptReport>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut reports = Vec::with_capacity(ids.len());
        // Chunks stay far below either database's bind-parameter limit.
        for chunk in ids.chunks(500) {
            let mut query: QueryBuilder<Db> =
                QueryBuilder::new(concat!(attempt_select!(), " WHERE id IN ("));
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(id.as_str());
            }
            query.push(")");
            let rows: Vec<AttemptReadRow> = query.build_query_as().fetch_all(self.reader()).await?;
            for row in rows {
                reports.push(attempt_report(row)?);
            }
        }
        Ok(reports)
    }
}
