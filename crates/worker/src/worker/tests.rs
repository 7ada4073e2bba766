//! Unit tests of the worker's pure parts: the fair share and the settings check.

use std::collections::BTreeMap;

use datacap_core::{CompanySettings, MemberSettings};
use time::macros::datetime;

use super::claim::Share;
use super::*;

fn context(mode: ConnectionMode, connection: Option<MemberConnection>) -> JobContext {
    JobContext {
        company_id: "acme".to_owned(),
        member_id: "ana".to_owned(),
        member_email: "ana@acme.example".to_owned(),
        company: CompanySettings::importing(Provider::GoogleWorkspace, mode),
        member: MemberSettings::importing(connection),
        credential_refs: BTreeMap::new(),
        active: true,
    }
}

/// Whether `channel` of the changed context may be imported.
fn check(change: impl FnOnce(&mut JobContext), channel: Channel, expected: bool) {
    let mut context = context(ConnectionMode::CompanyWide, None);
    change(&mut context);
    let now = datetime!(2026-11-29 12:00 UTC);
    assert_eq!(
        datacap_core::may_import(
            &context.company,
            &context.member,
            context.active,
            channel,
            now,
            &Thresholds::default()
        ),
        expected,
        "{context:?} {channel}"
    );
}

#[test]
fn permits_are_shared_among_companies() {
    let share = |concurrency, companies| {
        let share = Share::new(concurrency, companies);
        (share.per_company, share.reserve)
    };
    // Alone, a company may use every permit.
    assert_eq!(share(16, 1), (16, 0));
    assert_eq!(share(16, 0), (16, 0));
    // Two tenants, four permits: two each; one more may be lent, one stays free.
    assert_eq!(share(4, 2), (2, 1));
    assert_eq!(share(16, 2), (8, 1));
    assert_eq!(share(16, 5), (4, 4));
    // More companies than permits: one each, one permit kept for the others.
    assert_eq!(share(16, 100), (1, 1));
    // A single permit is never held back.
    assert_eq!(share(1, 3), (1, 0));
}

#[test]
fn settings_decide_whether_a_job_runs() {
    check(|_| {}, Channel::Email, true);
    check(|_| {}, Channel::Calendar, true);
    // Rule 1: switched off.
    check(|c| c.member.email_import = false, Channel::Email, false);
    check(|c| c.member.email_import = false, Channel::Calendar, true);
    check(|c| c.company.import_email = false, Channel::Email, false);
    check(
        |c| {
            c.member.calendar_import = false;
            c.member.recording_enabled = false;
        },
        Channel::Calendar,
        false,
    );
    // Rules 2–4: the company's connection.
    check(
        |c| c.company.provider = Provider::None,
        Channel::Email,
        false,
    );
    check(
        |c| c.company.permission_given = false,
        Channel::Calendar,
        false,
    );
    check(
        |c| c.company.email_authorized = false,
        Channel::Email,
        false,
    );
    check(
        |c| c.company.email_authorized = false,
        Channel::Calendar,
        true,
    );
    // Rules 5–6: the member's own grant (user-by-user only).
    let by_user = |connection| {
        move |c: &mut JobContext| {
            c.company.connection_mode = ConnectionMode::UserByUser;
            c.member.connection = connection;
        }
    };
    check(by_user(None), Channel::Email, false);
    check(
        by_user(Some(MemberConnection::NotConnected)),
        Channel::Email,
        false,
    );
    check(
        by_user(Some(MemberConnection::Invalid)),
        Channel::Email,
        false,
    );
    check(
        by_user(Some(MemberConnection::Connected)),
        Channel::Email,
        true,
    );
    // Rules 7–8: company calendar settings.
    check(
        |c| c.company.import_calendar = false,
        Channel::Calendar,
        false,
    );
    check(|c| c.company.import_calendar = false, Channel::Email, true);
    check(
        |c| c.member.import_non_recorded_meetings = true,
        Channel::Calendar,
        false,
    );
    // A deactivated member or company is never polled.
    check(|c| c.active = false, Channel::Email, false);
}
