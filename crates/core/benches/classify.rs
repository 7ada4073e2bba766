//! Classifier throughput: 1,000,000 members with five attempts each, on one core.
//!
//! Run with `cargo bench -p datacap-core --bench classify` (release build). Prints members
//! per second; the target (issue 2) is at least 1,000,000 members/s on one core.

#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use datacap_core::{
    AttemptSummary, BannerTally, Channel, CompanySettings, ConnectionMode, MemberConnection,
    MemberSettings, Outcome, Provider, Thresholds, classify_member,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const MEMBERS: usize = 1_000_000;
const NOW: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);

/// A small deterministic generator, so every run classifies the same population.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn main() {
    let mut random = SplitMix(7);
    let company = CompanySettings {
        provider: Provider::GoogleWorkspace,
        connection_mode: ConnectionMode::UserByUser,
        permission_given: true,
        email_authorized: true,
        calendar_authorized: true,
        import_email: true,
        import_calendar: true,
        import_non_recorded_meetings: true,
    };
    let population: Vec<(MemberSettings, Vec<AttemptSummary>)> = (0..MEMBERS)
        .map(|_| {
            let bits = random.next();
            let member = MemberSettings {
                has_recording_seat: bits & 0xF != 0,
                recording_enabled: bits & 0x10 != 0,
                email_import: bits & 0x60 != 0,
                calendar_import: bits & 0x180 != 0,
                import_non_recorded_meetings: bits & 0x200 != 0,
                connection: Some(MemberConnection::ALL[(bits >> 10) as usize % 3]),
            };
            let attempts = (0..5)
                .map(|_| {
                    let bits = random.next();
                    AttemptSummary {
                        channel: Channel::ALL[(bits & 1) as usize],
                        at: NOW - Duration::seconds((bits >> 8) as i64 % 5_400),
                        outcome: Outcome::ALL[(bits >> 1) as usize % Outcome::ALL.len()],
                    }
                })
                .collect();
            (member, attempts)
        })
        .collect();

    let thresholds = Thresholds::default();
    for round in 1..=3 {
        let started = Instant::now();
        let mut tally = BannerTally::default();
        for (member, attempts) in &population {
            let status = classify_member(&company, member, attempts, NOW, &thresholds);
            tally.add(black_box(&status));
        }
        let elapsed = started.elapsed();
        black_box(tally.banners());
        println!(
            "round {round}: classified {MEMBERS} members (5 attempts each) in {:.3} s: {:.0} members/s on one core",
            elapsed.as_secs_f64(),
            MEMBERS as f64 / elapsed.as_secs_f64()
        );
    }
}
