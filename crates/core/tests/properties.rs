//! Property tests of the status model's invariants (STATUS_MODEL.md), over generated
//! companies, members and attempt histories.

use proptest::prelude::*;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use datacap_core::wire::{ClassifyRequest, MemberRequest, classify_request};
use datacap_core::{
    AttemptSummary, BannerCode, Channel, CompanySettings, ConnectionMode, MemberConnection,
    MemberSettings, Outcome, Provider, Reason, Thresholds, banner_for, classify_member,
};

const NOW: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);

fn provider() -> impl Strategy<Value = Provider> {
    prop::sample::select(Provider::ALL.to_vec())
}

fn mode() -> impl Strategy<Value = ConnectionMode> {
    prop::sample::select(ConnectionMode::ALL.to_vec())
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop::sample::select(Outcome::ALL.to_vec())
}

fn channel() -> impl Strategy<Value = Channel> {
    prop::sample::select(Channel::ALL.to_vec())
}

prop_compose! {
    fn company()(
        provider in provider(),
        connection_mode in mode(),
        flags in prop::array::uniform6(prop::bool::weighted(0.8)),
    ) -> CompanySettings {
        CompanySettings {
            provider,
            connection_mode,
            permission_given: flags[0],
            email_authorized: flags[1],
            calendar_authorized: flags[2],
            import_email: flags[3],
            import_calendar: flags[4],
            import_non_recorded_meetings: flags[5],
        }
    }
}

prop_compose! {
    fn member()(
        flags in prop::array::uniform5(prop::bool::weighted(0.7)),
        connection in prop::option::of(prop::sample::select(MemberConnection::ALL.to_vec())),
    ) -> MemberSettings {
        MemberSettings {
            has_recording_seat: flags[0],
            recording_enabled: flags[1],
            email_import: flags[2],
            calendar_import: flags[3],
            import_non_recorded_meetings: flags[4],
            connection,
        }
    }
}

prop_compose! {
    /// An attempt up to two hours old (so some are stalled).
    fn attempt()(channel in channel(), seconds_ago in 0i64..7_200, outcome in outcome()) -> AttemptSummary {
        AttemptSummary { channel, at: NOW - Duration::seconds(seconds_ago), outcome }
    }
}

prop_compose! {
    fn thresholds()(red in 1u32..6, stall_minutes in 1i64..180) -> Thresholds {
        Thresholds { red_after_consecutive_failures: red, stall_after: Duration::minutes(stall_minutes) }
    }
}

fn transient() -> impl Strategy<Value = Outcome> {
    prop::sample::select(vec![
        Outcome::RateLimited,
        Outcome::ProviderError,
        Outcome::NetworkError,
    ])
}

proptest! {
    /// A run of transient outcomes shorter than the threshold never changes the colour
    /// that the attempts before it gave (when the history before it ends in a
    /// non-transient outcome, and nothing is stalled).
    #[test]
    fn a_short_transient_run_never_changes_the_colour(
        company in company(),
        member in member(),
        channel in channel(),
        history in prop::collection::vec((outcome(), 0i64..600), 0..6),
        last in outcome().prop_filter("non-transient", |o| !o.is_transient()),
        red in 2u32..6,
        tail in prop::collection::vec(transient(), 1..5),
    ) {
        let thresholds = Thresholds { red_after_consecutive_failures: red, stall_after: Duration::hours(1) };
        prop_assume!((tail.len() as u32) < red);
        // History 20..30 minutes ago, its last entry 15 minutes ago, the tail after it.
        let mut attempts: Vec<AttemptSummary> = history
            .iter()
            .map(|&(outcome, seconds)| AttemptSummary { channel, at: NOW - Duration::minutes(20) - Duration::seconds(seconds), outcome })
            .collect();
        attempts.push(AttemptSummary { channel, at: NOW - Duration::minutes(15), outcome: last });
        let before = classify_member(&company, &member, &attempts, NOW, &thresholds);
        for (index, outcome) in tail.iter().enumerate() {
            attempts.push(AttemptSummary { channel, at: NOW - Duration::minutes(10) + Duration::seconds(index as i64), outcome: *outcome });
        }
        let after = classify_member(&company, &member, &attempts, NOW, &thresholds);
        prop_assert_eq!(before.channel(channel).color(), after.channel(channel).color());
        prop_assert_eq!(before.capture.color(), after.capture.color());
    }

    /// A transient outcome never turns a member yellow.
    #[test]
    fn a_transient_outcome_never_turns_a_channel_yellow(
        company in company(),
        member in member(),
        channel in channel(),
        tail in prop::collection::vec(transient(), 1..8),
        thresholds in thresholds(),
    ) {
        let attempts: Vec<AttemptSummary> = tail
            .iter()
            .map(|outcome| AttemptSummary { channel, at: NOW, outcome: *outcome })
            .collect();
        let none = classify_member(&company, &member, &[], NOW, &thresholds);
        let some = classify_member(&company, &member, &attempts, NOW, &thresholds);
        if none.channel(channel).color() != datacap_core::Color::Yellow {
            prop_assert_ne!(some.channel(channel).color(), datacap_core::Color::Yellow);
        }
    }

    /// `capture` is never better than the worse of `email` and `calendar`.
    #[test]
    fn capture_is_never_better_than_its_channels(
        company in company(),
        member in member(),
        attempts in prop::collection::vec(attempt(), 0..10),
        thresholds in thresholds(),
    ) {
        let status = classify_member(&company, &member, &attempts, NOW, &thresholds);
        let worst = status.email.color().severity().max(status.calendar.color().severity());
        prop_assert!(status.capture.color().severity() >= worst);
        prop_assert!(status.capture == status.email || status.capture == status.calendar || status.capture == Reason::SeatMissing);
    }

    /// Members come out in input order, and every banner count equals the number of
    /// members with a matching reason.
    #[test]
    fn members_keep_order_and_banners_count_members(
        company in company(),
        members in prop::collection::vec((member(), prop::collection::vec(attempt(), 0..6)), 0..25),
        thresholds in thresholds(),
    ) {
        let company = CompanySettings { ..company };
        let request = ClassifyRequest {
            now: NOW,
            thresholds,
            company_id: None,
            company,
            members: members
                .iter()
                .enumerate()
                .map(|(index, (settings, attempts))| MemberRequest {
                    id: format!("m{index}"),
                    email: None,
                    settings: *settings,
                    attempts: attempts.clone(),
                })
                .collect(),
        };
        let response = classify_request(&request);
        let ids: Vec<&str> = response.members.iter().map(|m| m.id.as_str()).collect();
        let expected: Vec<String> = (0..members.len()).map(|i| format!("m{i}")).collect();
        prop_assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>());

        for code in BannerCode::ALL {
            let counted = members
                .iter()
                .filter(|(settings, attempts)| {
                    let status = classify_member(&company, settings, attempts, NOW, &thresholds);
                    let by_reason = [status.email, status.calendar]
                        .into_iter()
                        .any(|reason| banner_for(reason) == Some(*code));
                    let by_seat = *code == BannerCode::MembersSeatMissing && status.seat_missing;
                    by_reason || by_seat
                })
                .count() as u32;
            let banner = response.banners.iter().find(|banner| banner.code == *code);
            match banner {
                Some(banner) => {
                    prop_assert_eq!(banner.count, counted);
                    prop_assert!(counted > 0);
                    prop_assert_eq!(banner.color, code.color());
                    prop_assert_eq!(banner.provider, company.provider);
                }
                None => prop_assert_eq!(counted, 0),
            }
        }
        let order: Vec<BannerCode> = response.banners.iter().map(|banner| banner.code).collect();
        let mut sorted = order.clone();
        sorted.sort();
        prop_assert_eq!(order, sorted);
    }
}
