//! The retry policies both connectors follow, written once so that Google and Microsoft
//! cannot drift apart: waiting out a short `Retry-After` inside an attempt a bounded number
//! of times, and renewing a token that the API refused once before judging the grant.
//!
//! Sources: google.md ("rate limits are transient: honour `Retry-After`") and
//! microsoft.md (throttling: "wait the number of seconds in `Retry-After`"); PROVIDERS.md
//! ("a user token still 401 at the API after one refresh" is `grant_invalid`).

use std::time::Duration;

use datacap_core::Outcome;

/// Most throttled answers one call waits out; more belong to the scheduler.
pub const MAX_THROTTLE_RETRIES: u32 = 2;
/// Longest `Retry-After` a configuration may allow to be waited out inside an attempt.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// How a connector answers a throttled answer that carries a `Retry-After`: wait it out
/// and call again, at most `retries` times per call and only when the wait is at most
/// `max_wait`; otherwise the call ends `rate_limited` and the wait goes to the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub retries: u32,
    pub max_wait: Duration,
}

impl ThrottlePolicy {
    /// Two waits of at most 10 s each.
    pub const DEFAULT: ThrottlePolicy = ThrottlePolicy {
        retries: 2,
        max_wait: Duration::from_secs(10),
    };

    /// The bounds a configuration must keep: the field at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.retries > MAX_THROTTLE_RETRIES {
            return Err(("throttle_retries", "must be at most 2"));
        }
        if self.max_wait > MAX_RETRY_WAIT {
            return Err((
                "max_retry_wait",
                "must be at most 60 s (longer waits belong to the scheduler)",
            ));
        }
        Ok(())
    }

    /// The waits one call may still take.
    pub fn waits(self) -> ThrottleWaits {
        ThrottleWaits {
            policy: self,
            taken: 0,
        }
    }
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy::DEFAULT
    }
}

/// The throttle waits of one call.
#[derive(Debug)]
pub struct ThrottleWaits {
    policy: ThrottlePolicy,
    taken: u32,
}

impl ThrottleWaits {
    /// Whether the call may be tried again after a throttled answer asking to wait
    /// `retry_after`. When it may, the part of the wait that the request gate did not
    /// already take (`gate_pause`: the tenant's gate paused every request of the company
    /// for it, this retry included) is slept here, so nothing waits twice.
    pub async fn wait_out(
        &mut self,
        retry_after: Option<Duration>,
        gate_pause: Option<Duration>,
    ) -> bool {
        let Some(wait) = retry_after else {
            return false;
        };
        if self.taken >= self.policy.retries || wait > self.policy.max_wait {
            return false;
        }
        self.taken += 1;
        tracing::info!(
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "throttled; waiting as Retry-After asks"
        );
        if gate_pause.is_none_or(|pause| pause < wait) {
            tokio::time::sleep(wait).await;
        }
        true
    }
}

/// A token the API refused (401) is renewed once per call; a second refusal is judged by
/// [`refused_after_renewal`].
#[derive(Debug, Default)]
pub struct RenewOnce {
    renewed: bool,
}

impl RenewOnce {
    /// True the first time only: renew the token and call again.
    pub fn may_renew(&mut self) -> bool {
        !std::mem::replace(&mut self.renewed, true)
    }
}

/// What a renewed token that the API still refuses means: the member's own grant is dead
/// (`grant_invalid`, PROVIDERS.md "user token still 401 at the API after one refresh");
/// a company-wide token the token endpoint just issued is a problem of ours or the
/// provider's (`provider_error`), never the member's.
pub fn refused_after_renewal(member_grant: bool) -> Outcome {
    if member_grant {
        Outcome::GrantInvalid
    } else {
        Outcome::ProviderError
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_waits_out_at_most_the_policys_retries_and_never_a_long_wait() {
        let policy = ThrottlePolicy {
            retries: 2,
            max_wait: Duration::from_secs(600),
        };
        let mut waits = policy.waits();
        let start = std::time::Instant::now();
        assert!(waits.wait_out(Some(Duration::from_millis(20)), None).await);
        assert!(
            start.elapsed() >= Duration::from_millis(20),
            "slept the wait"
        );
        // The gate took the whole pause: nothing is slept twice (a sleep here would take
        // ten minutes, far past the timeout).
        let second = waits.wait_out(
            Some(Duration::from_secs(600)),
            Some(Duration::from_secs(600)),
        );
        let second = tokio::time::timeout(Duration::from_secs(60), second).await;
        assert_eq!(second, Ok(true), "the gate's pause is not slept again");
        assert!(
            !waits.wait_out(Some(Duration::from_millis(1)), None).await,
            "a third"
        );

        let mut waits = ThrottlePolicy::DEFAULT.waits();
        assert!(
            !waits.wait_out(Some(Duration::from_secs(11)), None).await,
            "too long"
        );
        assert!(!waits.wait_out(None, None).await, "no Retry-After");
        assert!(waits.wait_out(Some(Duration::from_millis(1)), None).await);
    }

    #[test]
    fn a_token_is_renewed_once_and_a_second_refusal_is_the_members_only_for_their_grant() {
        let mut renew = RenewOnce::default();
        assert!(renew.may_renew());
        assert!(!renew.may_renew());
        assert!(!renew.may_renew());
        assert_eq!(refused_after_renewal(true), Outcome::GrantInvalid);
        assert_eq!(refused_after_renewal(false), Outcome::ProviderError);
    }

    #[test]
    fn configurations_beyond_the_bounds_name_their_field() {
        assert_eq!(ThrottlePolicy::DEFAULT.check(), Ok(()));
        let too_many = ThrottlePolicy {
            retries: 3,
            ..ThrottlePolicy::DEFAULT
        };
        assert_eq!(too_many.check().map_err(|e| e.0), Err("throttle_retries"));
        let too_long = ThrottlePolicy {
            max_wait: Duration::from_secs(61),
            ..ThrottlePolicy::DEFAULT
        };
        assert_eq!(too_long.check().map_err(|e| e.0), Err("max_retry_wait"));
    }
}
