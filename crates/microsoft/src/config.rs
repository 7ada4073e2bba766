//! The Microsoft connector's configuration: where the Entra ID token endpoint and Graph
//! live, and every bound an attempt respects (page budget, page size, calendar window,
//! concurrency per mailbox, throttling waits).
//!
//! Base URLs are configuration because national clouds exist (`login.microsoftonline.us`,
//! `graph.microsoft.us`, …) and because that is how tests point the connector at the sim.
//! Validation is pure (no network, no credentials) and runs once in
//! [`crate::MicrosoftConnector::new`].

use std::time::Duration;

use datacap_connector::{HttpLimits, ThrottlePolicy};

/// Settings of [`crate::MicrosoftConnector`].
#[derive(Clone, Debug, PartialEq)]
pub struct MicrosoftConfig {
    /// Entra ID authority base, without the tenant: `https://login.microsoftonline.com`.
    /// Token requests go to `{login_base}/{tenant}/oauth2/v2.0/token`.
    pub login_base: String,
    /// Graph base including the version: `https://graph.microsoft.com/v1.0`. Paging links
    /// and saved cursors are only followed when they start with it.
    pub graph_base: String,
    /// Timeouts and body size limit of every call.
    pub http: HttpLimits,
    /// The calendar window reaches this far back from the attempt's `now`.
    pub calendar_past: time::Duration,
    /// The calendar window reaches this far ahead of the attempt's `now`.
    pub calendar_future: time::Duration,
    /// Most pages one attempt fetches; when reached, the attempt saves the next link as its
    /// cursor and the next attempt carries on from there.
    pub max_pages_per_attempt: u32,
    /// Sent as `Prefer: odata.maxpagesize` (delta endpoints reject `$top`).
    pub max_page_size: u32,
    /// Requests in flight per mailbox; Outlook allows 4 per app and mailbox.
    pub mailbox_concurrency: usize,
    /// A cached app token is replaced this long before it expires.
    pub token_refresh_margin: Duration,
    /// Throttled answers (429, or 503 with `Retry-After`) retried inside one attempt.
    pub throttle_retries: u32,
    /// Longest `Retry-After` waited for inside an attempt; a longer one ends the attempt as
    /// `rate_limited` with the wait recorded.
    pub max_retry_wait: Duration,
    /// Scopes asked for in user-by-user refresh and code grants.
    pub delegated_scope: String,
}

/// Outlook's documented concurrency limit per app and mailbox (providers/microsoft.md §4).
pub const OUTLOOK_MAILBOX_CONCURRENCY: usize = 4;

impl MicrosoftConfig {
    /// The throttle waits a call may take ([`ThrottlePolicy`], shared with the other
    /// connector).
    pub fn throttle(&self) -> ThrottlePolicy {
        ThrottlePolicy {
            retries: self.throttle_retries,
            max_wait: self.max_retry_wait,
        }
    }

    /// Microsoft's global cloud with the default bounds.
    pub fn public_cloud() -> MicrosoftConfig {
        MicrosoftConfig::with_bases(
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com/v1.0",
        )
    }

    /// The default bounds against other base URLs (a national cloud, the sim).
    pub fn with_bases(login_base: &str, graph_base: &str) -> MicrosoftConfig {
        MicrosoftConfig {
            login_base: login_base.trim_end_matches('/').to_owned(),
            graph_base: graph_base.trim_end_matches('/').to_owned(),
            http: HttpLimits::default(),
            calendar_past: time::Duration::days(30),
            calendar_future: time::Duration::days(90),
            max_pages_per_attempt: 200,
            max_page_size: 100,
            mailbox_concurrency: OUTLOOK_MAILBOX_CONCURRENCY,
            token_refresh_margin: Duration::from_secs(300),
            throttle_retries: ThrottlePolicy::DEFAULT.retries,
            max_retry_wait: ThrottlePolicy::DEFAULT.max_wait,
            delegated_scope: "offline_access https://graph.microsoft.com/Mail.Read https://graph.microsoft.com/Calendars.Read https://graph.microsoft.com/User.Read".to_owned(),
        }
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("login_base", &self.login_base),
            ("graph_base", &self.graph_base),
        ] {
            let url = reqwest::Url::parse(value).map_err(|error| ConfigError::Url {
                field,
                reason: error.to_string(),
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
                return Err(ConfigError::Url {
                    field,
                    reason: "not an http(s) base url".to_owned(),
                });
            }
            if url.query().is_some() || url.fragment().is_some() || value.ends_with('/') {
                return Err(ConfigError::Url {
                    field,
                    reason: "a base url has no query, fragment or trailing slash".to_owned(),
                });
            }
        }
        if self.calendar_past.is_negative() || self.calendar_future.is_negative() {
            return Err(ConfigError::Bound {
                field: "calendar_past/calendar_future",
                reason: "must not be negative",
            });
        }
        if self.calendar_past + self.calendar_future <= time::Duration::ZERO {
            return Err(ConfigError::Bound {
                field: "calendar_past/calendar_future",
                reason: "the window must not be empty",
            });
        }
        if self.max_pages_per_attempt == 0 {
            return Err(ConfigError::Bound {
                field: "max_pages_per_attempt",
                reason: "must be at least 1",
            });
        }
        if !(1..=1000).contains(&self.max_page_size) {
            return Err(ConfigError::Bound {
                field: "max_page_size",
                reason: "must be between 1 and 1000",
            });
        }
        if !(1..=OUTLOOK_MAILBOX_CONCURRENCY).contains(&self.mailbox_concurrency) {
            return Err(ConfigError::Bound {
                field: "mailbox_concurrency",
                reason: "must be between 1 and 4 (Outlook's limit per app and mailbox)",
            });
        }
        if let Err((field, reason)) = self.throttle().check() {
            return Err(ConfigError::Bound { field, reason });
        }
        if self.delegated_scope.split_whitespace().next().is_none() {
            return Err(ConfigError::Bound {
                field: "delegated_scope",
                reason: "must name at least one scope",
            });
        }
        Ok(())
    }
}

impl Default for MicrosoftConfig {
    fn default() -> Self {
        MicrosoftConfig::public_cloud()
    }
}

/// A configuration value that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A base URL is not usable.
    #[error("microsoft config field `{field}`: {reason}")]
    Url { field: &'static str, reason: String },
    /// A bound is out of range.
    #[error("microsoft config field `{field}`: {reason}")]
    Bound {
        field: &'static str,
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(change: impl FnOnce(&mut MicrosoftConfig), field: Option<&str>) {
        let mut config = MicrosoftConfig::public_cloud();
        change(&mut config);
        match (config.validate(), field) {
            (Ok(()), None) => {}
            (Err(error), Some(field)) => assert!(error.to_string().contains(field), "{error}"),
            (got, want) => panic!("got {got:?}, wanted an error naming {want:?}"),
        }
    }

    #[test]
    fn validation() {
        check(|_| {}, None);
        check(
            |c| c.graph_base = "https://graph.microsoft.us/v1.0".into(),
            None,
        );
        check(|c| c.graph_base = "graph".into(), Some("graph_base"));
        check(
            |c| c.login_base = "https://login/".into(),
            Some("login_base"),
        );
        check(|c| c.login_base = "ftp://login".into(), Some("login_base"));
        check(|c| c.mailbox_concurrency = 5, Some("mailbox_concurrency"));
        check(|c| c.mailbox_concurrency = 0, Some("mailbox_concurrency"));
        check(
            |c| c.max_pages_per_attempt = 0,
            Some("max_pages_per_attempt"),
        );
        check(|c| c.max_page_size = 0, Some("max_page_size"));
        check(|c| c.throttle_retries = 3, Some("throttle_retries"));
        check(
            |c| c.max_retry_wait = Duration::from_secs(61),
            Some("max_retry_wait"),
        );
        check(|c| c.delegated_scope = " ".into(), Some("delegated_scope"));
        check(
            |c| {
                c.calendar_past = time::Duration::ZERO;
                c.calendar_future = time::Duration::ZERO;
            },
            Some("calendar"),
        );
    }

    #[test]
    fn with_bases_trims_trailing_slashes() {
        let config =
            MicrosoftConfig::with_bases("http://127.0.0.1:1/microsoft/", "http://x/graph/v1.0/");
        assert_eq!(config.login_base, "http://127.0.0.1:1/microsoft");
        assert_eq!(config.graph_base, "http://x/graph/v1.0");
        assert_eq!(config.validate(), Ok(()));
    }
}
