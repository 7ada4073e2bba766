//! When a (member, channel) is polled next, and how long the daemon waits after a failure
//! of its own: pure functions of the outcome, `now` and a random number, so every
//! decision is tested without a runtime or a clock (sans-IO, like quinn-proto).
//!
//! The rules: a success polls again after the channel's interval; a transient outcome
//! backs off exponentially from `backoff_base` up to `backoff_cap`, never sooner than a
//! `Retry-After` the provider sent; any other outcome (someone must change a setting or
//! fix something) is re-checked on the slower `recheck_interval`. Every delay carries
//! jitter and is at least [`MIN_DELAY`]: nothing retries in a tight loop.

use std::time::Duration;

use datacap_core::{Channel, Outcome};
use time::OffsetDateTime;

/// No job is ever due again sooner than this after an attempt.
pub const MIN_DELAY: Duration = Duration::from_secs(1);

/// The scheduling knobs (`[worker]` in the config).
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleConfig {
    /// A healthy email channel is polled this often.
    pub email_interval: Duration,
    /// A healthy calendar channel is polled this often.
    pub calendar_interval: Duration,
    /// Each delay is spread by up to ± this fraction (0 to 1).
    pub jitter: f64,
    /// The first transient failure waits about this long.
    pub backoff_base: Duration,
    /// Transient backoff never exceeds this.
    pub backoff_cap: Duration,
    /// Non-transient failures, and jobs the settings forbid, are re-checked this often.
    pub recheck_interval: Duration,
    /// A provider's `Retry-After` is honoured up to this long (and pauses the company's
    /// requests that long at most); kept below the classifier's `stall_after`.
    pub max_retry_after: Duration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            email_interval: Duration::from_secs(300),
            calendar_interval: Duration::from_secs(900),
            jitter: 0.1,
            backoff_base: Duration::from_secs(30),
            backoff_cap: Duration::from_secs(1800),
            recheck_interval: Duration::from_secs(1800),
            max_retry_after: Duration::from_secs(900),
        }
    }
}

impl ScheduleConfig {
    /// The poll interval of a healthy channel.
    pub fn interval(&self, channel: Channel) -> Duration {
        match channel {
            Channel::Email => self.email_interval,
            Channel::Calendar => self.calendar_interval,
        }
    }
}

/// When the job is due after an attempt with `outcome`. `transients_before` is the run of
/// transient outcomes before this one; `random` is uniform in `[0, 1)`.
pub fn next_due(
    config: &ScheduleConfig,
    channel: Channel,
    outcome: Outcome,
    transients_before: u32,
    retry_after: Option<Duration>,
    now: OffsetDateTime,
    random: f64,
) -> OffsetDateTime {
    let delay = if outcome == Outcome::Success {
        spread(config.interval(channel), config.jitter, random)
    } else if outcome.is_transient() {
        let backoff = backoff(
            config.backoff_base,
            config.backoff_cap,
            transients_before.saturating_add(1),
            random,
        );
        let asked = retry_after.map_or(Duration::ZERO, |wait| wait.min(config.max_retry_after));
        backoff.max(asked)
    } else {
        spread(config.recheck_interval, config.jitter, random)
    };
    at(now, delay)
}

/// When a job that its settings forbid (or whose credentials could not be read) is looked
/// at again.
pub fn recheck_at(config: &ScheduleConfig, now: OffsetDateTime, random: f64) -> OffsetDateTime {
    at(now, spread(config.recheck_interval, config.jitter, random))
}

/// Exponential backoff with "equal jitter": the `failures`-th failure (1-based) waits
/// between half and all of `base · 2^(failures-1)`, capped at `cap`, and at least
/// [`MIN_DELAY`]. Also the daemon's wait after its own failures (database down).
pub fn backoff(base: Duration, cap: Duration, failures: u32, random: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exponent).min(cap);
    full.mul_f64(0.5 + 0.5 * unit(random)).max(MIN_DELAY)
}

/// `interval` spread by ± `jitter` (a fraction), at least [`MIN_DELAY`].
fn spread(interval: Duration, jitter: f64, random: f64) -> Duration {
    let jitter = unit(jitter);
    let factor = 1.0 + jitter * (2.0 * unit(random) - 1.0);
    interval.mul_f64(factor).max(MIN_DELAY)
}

/// `random` forced into `[0, 1]` (NaN counts as 0).
fn unit(random: f64) -> f64 {
    if random.is_nan() {
        0.0
    } else {
        random.clamp(0.0, 1.0)
    }
}

fn at(now: OffsetDateTime, delay: Duration) -> OffsetDateTime {
    let delay = time::Duration::try_from(delay).unwrap_or(time::Duration::days(365));
    now.checked_add(delay).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-29 12:00:00 UTC);

    fn config() -> ScheduleConfig {
        ScheduleConfig::default()
    }

    /// Seconds from `NOW` until the job is due.
    fn check(
        channel: Channel,
        outcome: Outcome,
        transients_before: u32,
        retry_after: Option<u64>,
        random: f64,
        expected_secs: f64,
    ) {
        let due = next_due(
            &config(),
            channel,
            outcome,
            transients_before,
            retry_after.map(Duration::from_secs),
            NOW,
            random,
        );
        let got = (due - NOW).as_seconds_f64();
        assert!(
            (got - expected_secs).abs() < 0.001,
            "{channel} {outcome} after {transients_before} transients, retry_after {retry_after:?}, random {random}: got {got}s, expected {expected_secs}s"
        );
    }

    #[test]
    fn success_polls_after_the_channel_interval_with_jitter() {
        check(Channel::Email, Outcome::Success, 0, None, 0.5, 300.0);
        check(Channel::Email, Outcome::Success, 0, None, 0.0, 270.0);
        check(Channel::Email, Outcome::Success, 0, None, 1.0, 330.0);
        check(Channel::Calendar, Outcome::Success, 0, None, 0.5, 900.0);
        // A success after transients resets: the interval, not a backoff.
        check(Channel::Email, Outcome::Success, 7, Some(60), 0.5, 300.0);
    }

    #[test]
    fn transient_outcomes_back_off_exponentially_up_to_the_cap() {
        for outcome in [
            Outcome::RateLimited,
            Outcome::ProviderError,
            Outcome::NetworkError,
        ] {
            check(Channel::Email, outcome, 0, None, 1.0, 30.0);
            check(Channel::Email, outcome, 0, None, 0.0, 15.0);
            check(Channel::Email, outcome, 1, None, 1.0, 60.0);
            check(Channel::Email, outcome, 2, None, 1.0, 120.0);
            check(Channel::Email, outcome, 5, None, 1.0, 960.0);
            check(Channel::Email, outcome, 6, None, 1.0, 1800.0);
            check(Channel::Email, outcome, 60, None, 1.0, 1800.0);
            check(Channel::Email, outcome, u32::MAX, None, 0.0, 900.0);
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_cap() {
        // Longer than the backoff: the provider's wait wins.
        check(
            Channel::Email,
            Outcome::RateLimited,
            0,
            Some(120),
            1.0,
            120.0,
        );
        // Shorter than the backoff: the backoff wins.
        check(Channel::Email, Outcome::RateLimited, 3, Some(5), 1.0, 240.0);
        // Absurd waits are capped (below the default stall_after of an hour).
        check(
            Channel::Email,
            Outcome::RateLimited,
            0,
            Some(86_400),
            1.0,
            900.0,
        );
    }

    #[test]
    fn other_outcomes_are_rechecked_slowly() {
        for outcome in [
            Outcome::NotAuthorized,
            Outcome::GrantInvalid,
            Outcome::AccessDenied,
            Outcome::MailboxUnavailable,
            Outcome::CredentialRejected,
        ] {
            check(Channel::Email, outcome, 0, None, 0.5, 1800.0);
            check(Channel::Calendar, outcome, 2, Some(10), 0.0, 1620.0);
        }
        let due = recheck_at(&config(), NOW, 1.0);
        assert_eq!(due - NOW, time::Duration::seconds(1980));
    }

    #[test]
    fn nothing_is_ever_due_in_a_tight_loop() {
        let tiny = ScheduleConfig {
            email_interval: Duration::ZERO,
            calendar_interval: Duration::from_millis(1),
            jitter: 1.0,
            backoff_base: Duration::ZERO,
            backoff_cap: Duration::ZERO,
            recheck_interval: Duration::ZERO,
            max_retry_after: Duration::ZERO,
        };
        for outcome in Outcome::ALL {
            for channel in Channel::ALL {
                for random in [0.0, 0.3, 0.999] {
                    let due = next_due(&tiny, *channel, *outcome, 0, None, NOW, random);
                    assert!(due - NOW >= time::Duration::seconds(1), "{outcome}");
                }
            }
        }
        assert_eq!(
            backoff(Duration::ZERO, Duration::ZERO, 1, 0.0),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn own_failure_backoff_grows_and_caps() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(30);
        let waits: Vec<u64> = (1..=8)
            .map(|failures| backoff(base, cap, failures, 1.0).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn random_values_out_of_range_are_clamped() {
        check(Channel::Email, Outcome::Success, 0, None, -3.0, 270.0);
        check(Channel::Email, Outcome::Success, 0, None, 7.0, 330.0);
        check(Channel::Email, Outcome::Success, 0, None, f64::NAN, 270.0);
    }
}
