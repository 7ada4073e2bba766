//! Table-driven tests of STATUS_MODEL.md: one `check` helper, one small case per rule,
//! reason, precedence tie and threshold. Each case names the rule it pins down.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::model::{Color, Icon};

const NOW: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);

fn company() -> CompanySettings {
    CompanySettings::importing(Provider::GoogleWorkspace, ConnectionMode::CompanyWide)
}

fn user_by_user() -> CompanySettings {
    CompanySettings {
        connection_mode: ConnectionMode::UserByUser,
        provider: Provider::Microsoft365,
        ..company()
    }
}

fn member() -> MemberSettings {
    MemberSettings::importing(Some(MemberConnection::Connected))
}

/// An attempt `minutes_ago` minutes before `NOW`.
fn attempt(channel: Channel, minutes_ago: i64, outcome: Outcome) -> AttemptSummary {
    AttemptSummary {
        channel,
        at: NOW - Duration::minutes(minutes_ago),
        outcome,
    }
}

fn email(minutes_ago: i64, outcome: Outcome) -> AttemptSummary {
    attempt(Channel::Email, minutes_ago, outcome)
}

fn calendar(minutes_ago: i64, outcome: Outcome) -> AttemptSummary {
    attempt(Channel::Calendar, minutes_ago, outcome)
}

/// Both channels succeeded a minute ago.
fn healthy() -> Vec<AttemptSummary> {
    vec![email(1, Success), calendar(1, Success)]
}

/// Classifies with default thresholds and compares all three icons.
#[track_caller]
fn check(
    company: CompanySettings,
    member: MemberSettings,
    attempts: &[AttemptSummary],
    expected: [Reason; 3],
) {
    check_with(company, member, attempts, Thresholds::default(), expected);
}

#[track_caller]
fn check_with(
    company: CompanySettings,
    member: MemberSettings,
    attempts: &[AttemptSummary],
    thresholds: Thresholds,
    [capture, email, calendar]: [Reason; 3],
) {
    let status = classify_member(&company, &member, attempts, NOW, &thresholds);
    assert_eq!(
        (status.capture, status.email, status.calendar),
        (capture, email, calendar),
        "capture, email, calendar"
    );
}

use Outcome::{
    AccessDenied, CredentialRejected, GrantInvalid, NetworkError, NotAuthorized, ProviderError,
    RateLimited, Success,
};
use Reason::*;

#[test]
fn everything_healthy_is_green() {
    check(
        company(),
        member(),
        &healthy(),
        [Importing, Importing, Importing],
    );
    check(
        user_by_user(),
        member(),
        &healthy(),
        [Importing, Importing, Importing],
    );
}

#[test]
fn rule_1_off() {
    // email: off when the member or the company switched it off.
    let no_member_email = MemberSettings {
        email_import: false,
        ..member()
    };
    check(
        company(),
        no_member_email,
        &healthy(),
        [Importing, Disabled, Importing],
    );
    let no_company_email = CompanySettings {
        import_email: false,
        ..company()
    };
    check(
        no_company_email,
        member(),
        &healthy(),
        [Importing, Disabled, Importing],
    );
    // calendar: off only when none of calendar import, recording, non-recorded is on.
    let no_calendar = MemberSettings {
        calendar_import: false,
        recording_enabled: false,
        import_non_recorded_meetings: false,
        ..member()
    };
    check(
        company(),
        no_calendar,
        &healthy(),
        [Importing, Importing, Disabled],
    );
    let recording_only = MemberSettings {
        calendar_import: false,
        ..member()
    };
    check(
        company(),
        recording_only,
        &healthy(),
        [Importing, Importing, Importing],
    );
    // Off comes before everything, even a missing provider.
    let nothing = CompanySettings {
        provider: Provider::None,
        import_email: false,
        ..company()
    };
    check(nothing, no_calendar, &[], [Disabled, Disabled, Disabled]);
}

#[test]
fn rule_2_provider_not_connected() {
    let none = CompanySettings {
        provider: Provider::None,
        permission_given: false,
        ..company()
    };
    check(
        none,
        member(),
        &healthy(),
        [
            ProviderNotConnected,
            ProviderNotConnected,
            ProviderNotConnected,
        ],
    );
}

#[test]
fn rule_3_company_permission_missing() {
    let no_permission = CompanySettings {
        permission_given: false,
        email_authorized: false,
        ..company()
    };
    check(
        no_permission,
        member(),
        &healthy(),
        [
            CompanyPermissionMissing,
            CompanyPermissionMissing,
            CompanyPermissionMissing,
        ],
    );
}

#[test]
fn rule_4_company_wide_not_authorized_per_channel() {
    let no_mail = CompanySettings {
        email_authorized: false,
        ..company()
    };
    check(
        no_mail,
        member(),
        &healthy(),
        [EmailNotAuthorized, EmailNotAuthorized, Importing],
    );
    let no_calendars = CompanySettings {
        calendar_authorized: false,
        ..company()
    };
    check(
        no_calendars,
        member(),
        &healthy(),
        [CalendarNotAuthorized, Importing, CalendarNotAuthorized],
    );
    // Ignored for user-by-user companies.
    let ignored = CompanySettings {
        email_authorized: false,
        calendar_authorized: false,
        ..user_by_user()
    };
    check(
        ignored,
        member(),
        &healthy(),
        [Importing, Importing, Importing],
    );
}

#[test]
fn rules_5_and_6_member_connection() {
    for (connection, reason) in [
        (Some(MemberConnection::NotConnected), MemberNotConnected),
        (None, MemberNotConnected),
        (Some(MemberConnection::Invalid), MemberConnectionInvalid),
    ] {
        let the_member = MemberSettings {
            connection,
            ..member()
        };
        check(
            user_by_user(),
            the_member,
            &healthy(),
            [reason, reason, reason],
        );
        // Ignored for company-wide companies.
        check(
            company(),
            the_member,
            &healthy(),
            [Importing, Importing, Importing],
        );
    }
}

#[test]
fn rule_7_company_calendar_import_disabled() {
    let no_company_calendar = CompanySettings {
        import_calendar: false,
        ..company()
    };
    check(
        no_company_calendar,
        member(),
        &healthy(),
        [
            CompanyCalendarImportDisabled,
            Importing,
            CompanyCalendarImportDisabled,
        ],
    );
    // Recording alone (member calendar import off) does not need the company setting.
    let recording_only = MemberSettings {
        calendar_import: false,
        ..member()
    };
    check(
        no_company_calendar,
        recording_only,
        &healthy(),
        [Importing, Importing, Importing],
    );
}

#[test]
fn rule_8_company_non_recorded_import_disabled() {
    let wants_non_recorded = MemberSettings {
        import_non_recorded_meetings: true,
        ..member()
    };
    check(
        company(),
        wants_non_recorded,
        &healthy(),
        [
            CompanyNonRecordedImportDisabled,
            Importing,
            CompanyNonRecordedImportDisabled,
        ],
    );
    let allowed = CompanySettings {
        import_non_recorded_meetings: true,
        ..company()
    };
    check(
        allowed,
        wants_non_recorded,
        &healthy(),
        [Importing, Importing, Importing],
    );
    // Rule 7 comes first.
    let neither = CompanySettings {
        import_calendar: false,
        ..company()
    };
    check(
        neither,
        wants_non_recorded,
        &healthy(),
        [
            CompanyCalendarImportDisabled,
            Importing,
            CompanyCalendarImportDisabled,
        ],
    );
}

#[test]
fn rule_9_awaiting_first_import() {
    check(
        company(),
        member(),
        &[],
        [
            AwaitingFirstImport,
            AwaitingFirstImport,
            AwaitingFirstImport,
        ],
    );
    // Attempts of the other channel don't count.
    check(
        company(),
        member(),
        &[email(1, Success)],
        [Importing, Importing, AwaitingFirstImport],
    );
}

#[test]
fn rule_10_import_stalled() {
    // Older than `now - stall_after` (1 h by default) is stalled; exactly 1 h is not.
    check(
        company(),
        member(),
        &[email(61, Success), calendar(60, Success)],
        [ImportStalled, ImportStalled, Importing],
    );
    // Stalled wins over a run of failures, and over a yellow outcome.
    check(
        company(),
        member(),
        &[
            email(90, NetworkError),
            email(80, NetworkError),
            email(70, NetworkError),
            calendar(61, Outcome::MailboxUnavailable),
        ],
        [ImportStalled, ImportStalled, ImportStalled],
    );
    // Only the latest attempt matters.
    check(
        company(),
        member(),
        &[email(500, Success), email(5, Success), calendar(1, Success)],
        [Importing, Importing, Importing],
    );
}

#[test]
fn rule_11_transient_runs() {
    // Three transients in a row: red, whatever came before.
    for before in [Success, GrantInvalid, Outcome::MailboxUnavailable] {
        check(
            company(),
            member(),
            &[
                email(10, before),
                email(3, RateLimited),
                email(2, ProviderError),
                email(1, NetworkError),
                calendar(1, Success),
            ],
            [TechnicalFailure, TechnicalFailure, Importing],
        );
    }
    // A shorter run keeps the colour of the outcome before it.
    check(
        company(),
        member(),
        &[
            email(10, Success),
            email(2, ProviderError),
            email(1, NetworkError),
            calendar(1, Success),
        ],
        [Importing, Importing, Importing],
    );
    // Only a short run of transients: nothing known yet.
    check(
        company(),
        member(),
        &[
            email(2, RateLimited),
            email(1, RateLimited),
            calendar(1, Success),
        ],
        [Importing, AwaitingFirstImport, Importing],
    );
    // A success ends the run.
    check(
        company(),
        member(),
        &[
            email(5, NetworkError),
            email(4, NetworkError),
            email(3, NetworkError),
            email(2, Success),
            email(1, NetworkError),
            calendar(1, Success),
        ],
        [Importing, Importing, Importing],
    );
}

#[test]
fn rule_11_last_non_transient_outcome() {
    // (company, outcome, expected email reason), each after a short transient run.
    let cases = [
        (company(), Success, Importing),
        (company(), NotAuthorized, EmailNotAuthorized),
        (user_by_user(), NotAuthorized, MemberConnectionInvalid),
        (company(), GrantInvalid, MemberConnectionInvalid),
        (user_by_user(), GrantInvalid, MemberConnectionInvalid),
        (company(), AccessDenied, ProviderPermissionDenied),
        (company(), Outcome::MailboxUnavailable, MailboxUnavailable),
        (company(), CredentialRejected, AppCredentialInvalid),
        (user_by_user(), CredentialRejected, AppCredentialInvalid),
    ];
    for (the_company, outcome, reason) in cases {
        for tail in [vec![], vec![email(1, RateLimited)]] {
            let mut attempts = vec![email(5, outcome), calendar(1, Success)];
            attempts.extend(tail);
            let status = classify_member(
                &the_company,
                &member(),
                &attempts,
                NOW,
                &Thresholds::default(),
            );
            assert_eq!(
                status.email, reason,
                "{outcome} in {:?}",
                the_company.connection_mode
            );
        }
    }
    // not_authorized on the calendar names the calendar grant.
    check(
        company(),
        member(),
        &[email(1, Success), calendar(1, NotAuthorized)],
        [CalendarNotAuthorized, Importing, CalendarNotAuthorized],
    );
}

#[test]
fn thresholds_can_be_overridden() {
    let strict = Thresholds {
        red_after_consecutive_failures: 1,
        stall_after: Duration::minutes(5),
    };
    check_with(
        company(),
        member(),
        &[
            email(2, Success),
            email(1, RateLimited),
            calendar(1, Success),
        ],
        strict,
        [TechnicalFailure, TechnicalFailure, Importing],
    );
    check_with(
        company(),
        member(),
        &[email(6, Success), calendar(1, Success)],
        strict,
        [ImportStalled, ImportStalled, Importing],
    );
    let lenient = Thresholds {
        red_after_consecutive_failures: 5,
        stall_after: Duration::hours(24),
    };
    let four_failures: Vec<_> = (1..=4)
        .map(|minutes| email(minutes, ProviderError))
        .chain([email(300, Success), calendar(300, Success)])
        .collect();
    check_with(
        company(),
        member(),
        &four_failures,
        lenient,
        [Importing, Importing, Importing],
    );
}

#[test]
fn attempts_out_of_order_are_sorted_by_time() {
    // Input order says failure last; time says success last.
    check(
        company(),
        member(),
        &[
            email(1, Success),
            email(4, NetworkError),
            email(3, NetworkError),
            email(2, NetworkError),
            calendar(1, Success),
        ],
        [Importing, Importing, Importing],
    );
    // And the other way round.
    check(
        company(),
        member(),
        &[
            email(2, NetworkError),
            email(9, Success),
            email(1, NetworkError),
            email(3, NetworkError),
            calendar(1, Success),
        ],
        [TechnicalFailure, TechnicalFailure, Importing],
    );
    // Equal times keep input order: the later entry is the latest.
    check(
        company(),
        member(),
        &[
            email(1, Outcome::MailboxUnavailable),
            email(1, Success),
            calendar(1, Success),
        ],
        [Importing, Importing, Importing],
    );
    check(
        company(),
        member(),
        &[
            email(1, Success),
            email(1, Outcome::MailboxUnavailable),
            calendar(1, Success),
        ],
        [MailboxUnavailable, MailboxUnavailable, Importing],
    );
}

#[test]
fn capture_is_the_worst_with_tie_breaks() {
    let no_seat = MemberSettings {
        has_recording_seat: false,
        ..member()
    };
    // seat_missing is a candidate only when recording is on and the seat is missing.
    check(
        company(),
        no_seat,
        &healthy(),
        [SeatMissing, Importing, Importing],
    );
    let no_seat_no_recording = MemberSettings {
        recording_enabled: false,
        ..no_seat
    };
    check(
        company(),
        no_seat_no_recording,
        &healthy(),
        [Importing, Importing, Importing],
    );
    // Yellow ties: the earlier reason in the order wins.
    let ties = [
        // (email, calendar, seat?, expected capture)
        (
            EmailNotAuthorized,
            CalendarNotAuthorized,
            false,
            EmailNotAuthorized,
        ),
        (MailboxUnavailable, MailboxUnavailable, true, SeatMissing),
        (
            MemberConnectionInvalid,
            MemberConnectionInvalid,
            true,
            MemberConnectionInvalid,
        ),
        (
            MailboxUnavailable,
            CompanyCalendarImportDisabled,
            false,
            CompanyCalendarImportDisabled,
        ),
        (
            AppCredentialInvalid,
            ImportStalled,
            false,
            AppCredentialInvalid,
        ),
        (
            TechnicalFailure,
            ProviderPermissionDenied,
            false,
            ProviderPermissionDenied,
        ),
        (ImportStalled, TechnicalFailure, false, TechnicalFailure),
        // Worse colours beat the order.
        (TechnicalFailure, MailboxUnavailable, true, TechnicalFailure),
        (Importing, AwaitingFirstImport, false, Importing),
        (Disabled, AwaitingFirstImport, false, AwaitingFirstImport),
        (Disabled, Disabled, true, SeatMissing),
    ];
    for (email_reason, calendar_reason, seat_missing, expected) in ties {
        let mut capture = if email_reason.is_worse_than(calendar_reason) {
            email_reason
        } else {
            calendar_reason
        };
        if seat_missing && SeatMissing.is_worse_than(capture) {
            capture = SeatMissing;
        }
        assert_eq!(capture, expected, "{email_reason} + {calendar_reason}");
    }
    // The same through the classifier: calendar import off at the company (rule 7) beats
    // a mailbox problem on email.
    let no_company_calendar = CompanySettings {
        import_calendar: false,
        ..company()
    };
    check(
        no_company_calendar,
        member(),
        &[email(1, Outcome::MailboxUnavailable)],
        [
            CompanyCalendarImportDisabled,
            MailboxUnavailable,
            CompanyCalendarImportDisabled,
        ],
    );
    // seat_missing (yellow) loses to a red channel.
    check(
        company(),
        no_seat,
        &[email(1, AccessDenied), calendar(1, Success)],
        [
            ProviderPermissionDenied,
            ProviderPermissionDenied,
            Importing,
        ],
    );
}

#[test]
fn every_reason_has_its_documented_colour() {
    let yellow = [
        ProviderNotConnected,
        CompanyPermissionMissing,
        EmailNotAuthorized,
        CalendarNotAuthorized,
        MemberNotConnected,
        MemberConnectionInvalid,
        SeatMissing,
        CompanyCalendarImportDisabled,
        CompanyNonRecordedImportDisabled,
        MailboxUnavailable,
    ];
    let red = [
        AppCredentialInvalid,
        ProviderPermissionDenied,
        TechnicalFailure,
        ImportStalled,
    ];
    for reason in Reason::ALL {
        let expected = if yellow.contains(reason) {
            Color::Yellow
        } else if red.contains(reason) {
            Color::Red
        } else if *reason == Importing {
            Color::Green
        } else {
            Color::Gray
        };
        assert_eq!(reason.color(), expected, "{reason}");
    }
    assert_eq!(Icon::from(Channel::Email), Icon::Email);
}

/// Counts banners over members given as (email, calendar, seat_missing).
#[track_caller]
fn check_banners(members: &[(Reason, Reason, bool)], expected: &[(BannerCode, u32)]) {
    let statuses: Vec<MemberStatus> = members
        .iter()
        .map(|&(email, calendar, seat_missing)| MemberStatus {
            capture: email,
            email,
            calendar,
            seat_missing,
        })
        .collect();
    let got: Vec<(BannerCode, u32)> = banners(&statuses)
        .into_iter()
        .map(|banner| (banner.code, banner.count))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn each_banner_counts_members_once() {
    use BannerCode as B;
    check_banners(&[(Importing, Importing, false)], &[]);
    check_banners(&[(Disabled, AwaitingFirstImport, false)], &[]);
    let single = [
        (ProviderNotConnected, B::ProviderNotConnected),
        (CompanyPermissionMissing, B::CompanyPermissionMissing),
        (EmailNotAuthorized, B::EmailNotAuthorized),
        (CalendarNotAuthorized, B::CalendarNotAuthorized),
        (MemberNotConnected, B::MembersNotConnected),
        (MemberConnectionInvalid, B::MembersConnectionInvalid),
        (MailboxUnavailable, B::MembersMailboxUnavailable),
        (AppCredentialInvalid, B::MembersTechnicalProblem),
        (ProviderPermissionDenied, B::MembersTechnicalProblem),
        (TechnicalFailure, B::MembersTechnicalProblem),
        (ImportStalled, B::MembersTechnicalProblem),
    ];
    for (reason, code) in single {
        // Both channels with the reason: counted once.
        check_banners(&[(reason, reason, false)], &[(code, 1)]);
        // On the calendar only, for two members.
        check_banners(
            &[(Importing, reason, false), (reason, Disabled, false)],
            &[(code, 2)],
        );
    }
    // Two different red reasons on one member: one technical problem.
    check_banners(
        &[(TechnicalFailure, ImportStalled, false)],
        &[(B::MembersTechnicalProblem, 1)],
    );
    // Reasons without a banner.
    for reason in [
        CompanyCalendarImportDisabled,
        CompanyNonRecordedImportDisabled,
        Importing,
        AwaitingFirstImport,
        Disabled,
    ] {
        check_banners(&[(reason, reason, false)], &[]);
    }
    // Seats are counted from the capture candidates, even under a worse reason.
    check_banners(
        &[
            (TechnicalFailure, Importing, true),
            (Importing, Importing, true),
            (Importing, Importing, false),
        ],
        &[(B::MembersSeatMissing, 2), (B::MembersTechnicalProblem, 1)],
    );
}

#[test]
fn banners_come_out_in_the_documented_order() {
    use BannerCode as B;
    check_banners(
        &[
            (ImportStalled, Importing, true),
            (MailboxUnavailable, Importing, false),
            (MemberConnectionInvalid, MemberNotConnected, false),
            (CalendarNotAuthorized, EmailNotAuthorized, false),
            (CompanyPermissionMissing, ProviderNotConnected, false),
            (MemberNotConnected, Importing, false),
        ],
        &[
            (B::ProviderNotConnected, 1),
            (B::CompanyPermissionMissing, 1),
            (B::EmailNotAuthorized, 1),
            (B::CalendarNotAuthorized, 1),
            (B::MembersNotConnected, 2),
            (B::MembersConnectionInvalid, 1),
            (B::MembersMailboxUnavailable, 1),
            (B::MembersSeatMissing, 1),
            (B::MembersTechnicalProblem, 1),
        ],
    );
    let colors: Vec<Color> = BannerCode::ALL.iter().map(|code| code.color()).collect();
    assert_eq!(colors.iter().filter(|c| **c == Color::Red).count(), 1);
    assert_eq!(B::MembersTechnicalProblem.color(), Color::Red);
}
