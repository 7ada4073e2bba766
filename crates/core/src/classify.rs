//! The classifier: STATUS_MODEL.md's rules as a pure function from settings, recent
//! attempts and `now` to each member's three icons and the company's banners.
//!
//! Everything the rules need comes in as arguments (no clock, no IO), so the worker, the
//! store's recomputation, `datacap classify` and the property tests all run the same code.

use time::OffsetDateTime;

use crate::model::{
    AttemptSummary, BannerCode, Channel, CompanySettings, ConnectionMode, MemberConnection,
    MemberSettings, Outcome, Provider, Reason, Thresholds,
};

/// One member's three icons. Each icon's colour is its reason's colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub capture: Reason,
    pub email: Reason,
    pub calendar: Reason,
    /// `seat_missing` was among the capture candidates (counted by `members_seat_missing`
    /// even when a worse reason won the microphone icon).
    pub seat_missing: bool,
}

impl MemberStatus {
    /// The reason of an imported channel's icon.
    pub fn channel(&self, channel: Channel) -> Reason {
        match channel {
            Channel::Email => self.email,
            Channel::Calendar => self.calendar,
        }
    }
}

/// Classifies one member. `attempts` may hold both channels in any order; they are
/// ordered by `at`, keeping input order between equal times.
pub fn classify_member(
    company: &CompanySettings,
    member: &MemberSettings,
    attempts: &[AttemptSummary],
    now: OffsetDateTime,
    thresholds: &Thresholds,
) -> MemberStatus {
    let sorted_copy;
    let ordered: &[AttemptSummary] = if attempts.is_sorted_by_key(|attempt| attempt.at) {
        attempts
    } else {
        let mut copy = attempts.to_vec();
        // `sort_by_key` is stable: equal times keep their input order.
        copy.sort_by_key(|attempt| attempt.at);
        sorted_copy = copy;
        &sorted_copy
    };

    let email = classify_channel(Channel::Email, company, member, ordered, now, thresholds);
    let calendar = classify_channel(Channel::Calendar, company, member, ordered, now, thresholds);
    let seat_missing = member.recording_enabled && !member.has_recording_seat;

    let mut capture = if email.is_worse_than(calendar) {
        email
    } else {
        calendar
    };
    if seat_missing && Reason::SeatMissing.is_worse_than(capture) {
        capture = Reason::SeatMissing;
    }
    MemberStatus {
        capture,
        email,
        calendar,
        seat_missing,
    }
}

/// Rules 1 to 11 for `email` or `calendar`; `attempts` are ordered by time, latest last.
fn classify_channel(
    channel: Channel,
    company: &CompanySettings,
    member: &MemberSettings,
    attempts: &[AttemptSummary],
    now: OffsetDateTime,
    thresholds: &Thresholds,
) -> Reason {
    // 1. Off.
    let off = match channel {
        Channel::Email => !member.email_import || !company.import_email,
        Channel::Calendar => {
            !(member.calendar_import
                || member.recording_enabled
                || member.import_non_recorded_meetings)
        }
    };
    if off {
        return Reason::Disabled;
    }
    // 2, 3.
    if company.provider == Provider::None {
        return Reason::ProviderNotConnected;
    }
    if !company.permission_given {
        return Reason::CompanyPermissionMissing;
    }
    // 4, 5, 6.
    match company.connection_mode {
        ConnectionMode::CompanyWide => {
            let authorized = match channel {
                Channel::Email => company.email_authorized,
                Channel::Calendar => company.calendar_authorized,
            };
            if !authorized {
                return not_authorized(channel);
            }
        }
        ConnectionMode::UserByUser => {
            match member.connection.unwrap_or(MemberConnection::NotConnected) {
                MemberConnection::NotConnected => return Reason::MemberNotConnected,
                MemberConnection::Invalid => return Reason::MemberConnectionInvalid,
                MemberConnection::Connected => {}
            }
        }
    }
    // 7, 8.
    if channel == Channel::Calendar {
        if member.calendar_import && !company.import_calendar {
            return Reason::CompanyCalendarImportDisabled;
        }
        if member.import_non_recorded_meetings && !company.import_non_recorded_meetings {
            return Reason::CompanyNonRecordedImportDisabled;
        }
    }

    // 9, 10, 11: the channel's attempts, latest first.
    let mut latest_first = attempts
        .iter()
        .rev()
        .filter(|attempt| attempt.channel == channel);
    let Some(latest) = latest_first.next() else {
        return Reason::AwaitingFirstImport;
    };
    if now - latest.at > thresholds.stall_after {
        return Reason::ImportStalled;
    }
    let mut transient_run: u32 = 0;
    let mut last_non_transient = None;
    for attempt in std::iter::once(latest).chain(latest_first) {
        if attempt.outcome.is_transient() {
            transient_run = transient_run.saturating_add(1);
        } else {
            last_non_transient = Some(attempt.outcome);
            break;
        }
    }
    if transient_run >= thresholds.red_after_consecutive_failures {
        return Reason::TechnicalFailure;
    }
    match last_non_transient {
        None => Reason::AwaitingFirstImport,
        Some(Outcome::Success) => Reason::Importing,
        Some(Outcome::NotAuthorized) => match company.connection_mode {
            ConnectionMode::CompanyWide => not_authorized(channel),
            ConnectionMode::UserByUser => Reason::MemberConnectionInvalid,
        },
        Some(Outcome::GrantInvalid) => Reason::MemberConnectionInvalid,
        Some(Outcome::AccessDenied) => Reason::ProviderPermissionDenied,
        Some(Outcome::MailboxUnavailable) => Reason::MailboxUnavailable,
        Some(Outcome::CredentialRejected) => Reason::AppCredentialInvalid,
        // Transient outcomes never end the search above.
        Some(Outcome::RateLimited | Outcome::ProviderError | Outcome::NetworkError) => {
            Reason::AwaitingFirstImport
        }
    }
}

fn not_authorized(channel: Channel) -> Reason {
    match channel {
        Channel::Email => Reason::EmailNotAuthorized,
        Channel::Calendar => Reason::CalendarNotAuthorized,
    }
}

/// A company banner with its count (always above zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Banner {
    pub code: BannerCode,
    pub count: u32,
}

/// Counts banners over a company's members, one `add` per member.
#[derive(Clone, Debug, Default)]
pub struct BannerTally {
    counts: [u32; BannerCode::ALL.len()],
}

impl BannerTally {
    /// Counts one member: at most once per banner, whatever both channels say.
    pub fn add(&mut self, status: &MemberStatus) {
        let mut seen = crate::derive::channel_banners([status.email, status.calendar]);
        if status.seat_missing {
            seen[BannerCode::MembersSeatMissing as usize] = true;
        }
        for (count, hit) in self.counts.iter_mut().zip(seen) {
            *count += u32::from(hit);
        }
    }

    /// The banners whose count is above zero, in display order.
    pub fn banners(&self) -> Vec<Banner> {
        BannerCode::ALL
            .iter()
            .zip(self.counts)
            .filter(|(_, count)| *count > 0)
            .map(|(code, count)| Banner { code: *code, count })
            .collect()
    }
}

/// The banners over a list of member statuses.
pub fn banners<'a>(statuses: impl IntoIterator<Item = &'a MemberStatus>) -> Vec<Banner> {
    let mut tally = BannerTally::default();
    statuses.into_iter().for_each(|status| tally.add(status));
    tally.banners()
}

/// The banner that counts a channel with this reason, if any.
pub const fn banner_for(reason: Reason) -> Option<BannerCode> {
    match reason {
        Reason::ProviderNotConnected => Some(BannerCode::ProviderNotConnected),
        Reason::CompanyPermissionMissing => Some(BannerCode::CompanyPermissionMissing),
        Reason::EmailNotAuthorized => Some(BannerCode::EmailNotAuthorized),
        Reason::CalendarNotAuthorized => Some(BannerCode::CalendarNotAuthorized),
        Reason::MemberNotConnected => Some(BannerCode::MembersNotConnected),
        Reason::MemberConnectionInvalid => Some(BannerCode::MembersConnectionInvalid),
        Reason::MailboxUnavailable => Some(BannerCode::MembersMailboxUnavailable),
        Reason::AppCredentialInvalid
        | Reason::ProviderPermissionDenied
        | Reason::TechnicalFailure
        | Reason::ImportStalled => Some(BannerCode::MembersTechnicalProblem),
        Reason::SeatMissing
        | Reason::CompanyCalendarImportDisabled
        | Reason::CompanyNonRecordedImportDisabled
        | Reason::Importing
        | Reason::AwaitingFirstImport
        | Reason::Disabled => None,
    }
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
