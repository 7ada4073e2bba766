//! What the Team members page, its JSON API and `datacap status` read: the status report
//! (companies, banners, members' icons as stored), the count of icons per reason (the
//! members gauge), a member's recent import attempts and status history (on-call traces a
//! red icon to the attempt), and attempts by id (the page shows the HTTP status and
//! provider error code of each red icon's attempt). Reads only, on the read pool.

use datacap_core::{BannerCode, Channel, Color, ConnectionMode, Icon, Outcome, Reason};

use super::{parse_provider, parse_reason, to_u32};
use crate::backend::{Backend, Dialect};
use crate::dbtime::DbTime;
use crate::error::{StoreError, corrupt};
use crate::model::{
    AttemptReport, BannerReport, CompanyReport, IconReport, LastSuccess, MemberReport,
    StatusChangeReport, StatusReport,
};
use crate::sql::{Builder, query_as};

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

impl<D: Dialect> Backend<D> {
    /// The latest `limit` attempts of `member_id` in `company_id`, newest first. An
    /// unknown company, or a member that is not that company's, is an error.
    pub async fn member_attempts(
        &self,
        company_id: &str,
        member_id: &str,
        limit: u32,
    ) -> Result<Vec<AttemptReport>, StoreError> {
        let company: Option<(String,)> =
            query_as("SELECT id FROM companies WHERE id = $1 AND active")
                .bind(company_id)
                .fetch_optional(self.reader())
                .await?;
        if company.is_none() {
            return Err(StoreError::UnknownCompany {
                company_id: company_id.to_owned(),
            });
        }
        let member: Option<(String,)> =
            query_as("SELECT id FROM members WHERE id = $1 AND company_id = $2")
                .bind(member_id)
                .bind(company_id)
                .fetch_optional(self.reader())
                .await?;
        if member.is_none() {
            return Err(StoreError::UnknownMember {
                member_id: member_id.to_owned(),
            });
        }
        let rows: Vec<AttemptReadRow> = query_as(concat!(
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
        let rows: Vec<ChangeReadRow> = query_as(
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
                        Color::parse(text).ok_or_else(|| corrupt("status_changes", "color", text))
                    };
                    let reason = |text: &str| {
                        Reason::parse(text).ok_or_else(|| corrupt("status_changes", "reason", text))
                    };
                    Ok(StatusChangeReport {
                        icon: Icon::parse(&icon)
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
            let mut query: Builder<D> = Builder::new(concat!(attempt_select!(), " WHERE id IN ("));
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

impl<D: Dialect> Backend<D> {
    /// The Team members page as data: active companies (or one), their banners in display
    /// order and their active members' icons.
    pub async fn status(&self, company_id: Option<&str>) -> Result<StatusReport, StoreError> {
        let companies: Vec<(String, String, String, String)> = query_as(
            "SELECT id, name, provider, connection_mode FROM companies \
             WHERE active AND ($1 IS NULL OR id = $1) ORDER BY id",
        )
        .bind(company_id)
        .fetch_all(self.reader())
        .await?;
        if let Some(company_id) = company_id
            && companies.is_empty()
        {
            return Err(StoreError::UnknownCompany {
                company_id: company_id.to_owned(),
            });
        }
        let mut report = StatusReport {
            companies: Vec::with_capacity(companies.len()),
        };
        for (id, name, provider, mode) in companies {
            let banner_rows: Vec<(String, String, i64, String, String, String, DbTime)> = query_as(
                "SELECT code, color, count, provider, message, resolution, since \
                     FROM company_banners WHERE company_id = $1 ORDER BY position",
            )
            .bind(&id)
            .fetch_all(self.reader())
            .await?;
            let mut banners = Vec::with_capacity(banner_rows.len());
            for (code, color, count, provider, message, resolution, since) in banner_rows {
                banners.push(BannerReport {
                    code: BannerCode::parse(&code)
                        .ok_or_else(|| corrupt("company_banners", "code", &code))?,
                    color: Color::parse(&color)
                        .ok_or_else(|| corrupt("company_banners", "color", &color))?,
                    count: to_u32(count),
                    provider: parse_provider(&provider)?,
                    message,
                    resolution,
                    since: since.0,
                });
            }
            let icon_rows: Vec<IconReadRow> = query_as(
                "SELECT m.id, m.email, s.icon, s.color, s.reason, s.message, s.resolution, \
                 s.since, s.last_attempt_id, s.evaluated_at, ss.last_success_at, \
                 ss.last_success_items \
                 FROM members m JOIN member_status s ON s.member_id = m.id \
                 LEFT JOIN sync_state ss ON ss.member_id = m.id AND ss.channel = s.icon \
                 WHERE m.company_id = $1 AND m.active ORDER BY m.id",
            )
            .bind(&id)
            .fetch_all(self.reader())
            .await?;
            report.companies.push(CompanyReport {
                provider: parse_provider(&provider)?,
                connection_mode: ConnectionMode::parse(&mode)
                    .ok_or_else(|| corrupt("companies", "connection_mode", &mode))?,
                id,
                name,
                banners,
                members: members_from_rows(icon_rows)?,
            });
        }
        Ok(report)
    }

    /// How many active members' icons show each (icon, reason): the members gauge, one
    /// grouped read instead of the whole status report.
    pub async fn status_counts(&self) -> Result<Vec<(Icon, Reason, u64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = query_as(
            "SELECT s.icon, s.reason, COUNT(*) FROM member_status s \
             JOIN members m ON m.id = s.member_id JOIN companies c ON c.id = m.company_id \
             WHERE m.active AND c.active GROUP BY s.icon, s.reason",
        )
        .fetch_all(self.reader())
        .await?;
        rows.into_iter()
            .map(|(icon, reason, count)| {
                let icon =
                    Icon::parse(&icon).ok_or_else(|| corrupt("member_status", "icon", &icon))?;
                Ok((
                    icon,
                    parse_reason("member_status", &reason)?,
                    u64::try_from(count).unwrap_or(0),
                ))
            })
            .collect()
    }
}

/// member id, email, icon, color, reason, message, resolution, since, last attempt, evaluated.
type IconReadRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    DbTime,
    Option<String>,
    DbTime,
    Option<DbTime>,
    Option<i64>,
);

fn members_from_rows(rows: Vec<IconReadRow>) -> Result<Vec<MemberReport>, StoreError> {
    let mut members: Vec<(String, String, [Option<IconReport>; 3])> = Vec::new();
    for (
        member_id,
        email,
        icon,
        color,
        reason,
        message,
        resolution,
        since,
        last,
        evaluated,
        success_at,
        success_items,
    ) in rows
    {
        let icon = Icon::parse(&icon).ok_or_else(|| corrupt("member_status", "icon", &icon))?;
        let report = IconReport {
            color: Color::parse(&color).ok_or_else(|| corrupt("member_status", "color", &color))?,
            reason: parse_reason("member_status", &reason)?,
            message,
            resolution,
            since: since.0,
            last_attempt_id: last,
            evaluated_at: evaluated.0,
            last_success: success_at.map(|at| LastSuccess {
                at: at.0,
                items: u64::try_from(success_items.unwrap_or(0)).unwrap_or(0),
            }),
        };
        if members.last().is_none_or(|(id, _, _)| *id != member_id) {
            members.push((member_id, email, [None, None, None]));
        }
        if let Some((_, _, icons)) = members.last_mut() {
            let slot = match icon {
                Icon::Capture => 0,
                Icon::Email => 1,
                Icon::Calendar => 2,
            };
            icons[slot] = Some(report);
        }
    }
    Ok(members
        .into_iter()
        .filter_map(|(id, email_address, [capture, email, calendar])| {
            Some(MemberReport {
                id,
                email_address,
                capture: capture?,
                email: email?,
                calendar: calendar?,
            })
        })
        .collect())
}
