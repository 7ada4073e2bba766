//! The connector's configuration: every base URL (so tests point it at the sim), HTTP
//! limits, import windows and the bounds of every paging loop.
//!
//! Validation is pure (no network, no files, no credentials) and runs once in
//! [`crate::GoogleConnector::new`]; the rest of the crate trusts the values.

use std::time::Duration;

use datacap_connector::{HttpLimits, ThrottlePolicy};

/// Where Google lives and how much one attempt may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoogleConfig {
    /// OAuth token endpoint (`https://oauth2.googleapis.com/token`); also the JWT `aud`.
    pub token_url: String,
    /// OAuth authorize endpoint a member's browser signs in at
    /// (`https://accounts.google.com/o/oauth2/v2/auth`).
    pub authorize_url: String,
    /// Gmail API base, without trailing slash (`https://gmail.googleapis.com/gmail/v1`).
    pub gmail_base: String,
    /// Calendar API base (`https://www.googleapis.com/calendar/v3`).
    pub calendar_base: String,
    /// Directory API base (`https://admin.googleapis.com/admin/directory/v1`).
    pub directory_base: String,
    /// Timeouts and the body size limit of every call.
    pub http: HttpLimits,
    /// How far back a first Gmail pass reaches.
    pub mail_window: Duration,
    /// How far back a first Calendar pass reaches.
    pub calendar_past: Duration,
    /// How far ahead a first Calendar pass reaches.
    pub calendar_future: Duration,
    /// `maxResults` of every list call (Gmail ≤ 500, Calendar ≤ 2500, Directory ≤ 500).
    pub page_size: u32,
    /// Most pages one list loop reads in one attempt.
    pub max_pages: u32,
    /// A cached access token is replaced this long before it expires.
    pub token_refresh_margin: Duration,
    /// Throttled answers (429 or 403 rate limits, 503) carrying a `Retry-After` that are
    /// waited out and retried inside one attempt (google.md: "honour `Retry-After`").
    pub throttle_retries: u32,
    /// Longest `Retry-After` waited for inside an attempt; a longer one ends the attempt as
    /// `rate_limited` with the wait recorded for the schedule.
    pub max_retry_wait: Duration,
}

impl Default for GoogleConfig {
    /// Google's production endpoints and the defaults of issue 5.
    fn default() -> Self {
        GoogleConfig {
            token_url: "https://oauth2.googleapis.com/token".to_owned(),
            authorize_url: "https://accounts.google.com/o/oauth2/v2/auth".to_owned(),
            gmail_base: "https://gmail.googleapis.com/gmail/v1".to_owned(),
            calendar_base: "https://www.googleapis.com/calendar/v3".to_owned(),
            directory_base: "https://admin.googleapis.com/admin/directory/v1".to_owned(),
            http: HttpLimits::default(),
            mail_window: Duration::from_secs(30 * 86_400),
            calendar_past: Duration::from_secs(30 * 86_400),
            calendar_future: Duration::from_secs(90 * 86_400),
            page_size: 100,
            max_pages: 50,
            token_refresh_margin: Duration::from_secs(300),
            throttle_retries: ThrottlePolicy::DEFAULT.retries,
            max_retry_wait: ThrottlePolicy::DEFAULT.max_wait,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid google connector configuration: {field} {problem}")]
pub struct ConfigError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl GoogleConfig {
    /// The throttle waits a call may take ([`ThrottlePolicy`], shared with the other
    /// connector).
    pub fn throttle(&self) -> ThrottlePolicy {
        ThrottlePolicy {
            retries: self.throttle_retries,
            max_wait: self.max_retry_wait,
        }
    }

    /// The same configuration with every base URL taken from one place (a sim's endpoints).
    pub fn with_endpoints(
        self,
        token_url: impl Into<String>,
        gmail_base: impl Into<String>,
        calendar_base: impl Into<String>,
        directory_base: impl Into<String>,
    ) -> GoogleConfig {
        GoogleConfig {
            token_url: token_url.into(),
            gmail_base: gmail_base.into(),
            calendar_base: calendar_base.into(),
            directory_base: directory_base.into(),
            ..self
        }
    }

    /// Checks every value; pure.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem: &str| {
            Err(ConfigError {
                field,
                problem: problem.to_owned(),
            })
        };
        for (field, url) in [
            ("token_url", &self.token_url),
            ("gmail_base", &self.gmail_base),
            ("calendar_base", &self.calendar_base),
            ("directory_base", &self.directory_base),
        ] {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || reqwest::Url::parse(url).is_err() {
                return bad(field, "must be an http(s) URL");
            }
            if url.ends_with('/') {
                return bad(field, "must not end with a slash");
            }
        }
        if !(1..=500).contains(&self.page_size) {
            return bad("page_size", "must be between 1 and 500");
        }
        if self.max_pages == 0 {
            return bad("max_pages", "must be at least 1");
        }
        if self.mail_window.is_zero() {
            return bad("mail_window", "must be longer than zero");
        }
        if self.calendar_past.is_zero() && self.calendar_future.is_zero() {
            return bad("calendar_past", "and calendar_future cannot both be zero");
        }
        if self.token_refresh_margin >= Duration::from_secs(3000) {
            return bad("token_refresh_margin", "must be under 50 minutes");
        }
        if let Err((field, problem)) = self.throttle().check() {
            return bad(field, problem);
        }
        if self.http.max_body_bytes == 0 {
            return bad("http.max_body_bytes", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(change: impl FnOnce(&mut GoogleConfig), field: Option<&str>) {
        let mut config = GoogleConfig::default();
        change(&mut config);
        assert_eq!(config.validate().err().map(|e| e.field), field);
    }

    #[test]
    fn validation() {
        check(|_| {}, None);
        check(|c| c.token_url = "ftp://x".into(), Some("token_url"));
        check(|c| c.gmail_base = "not a url".into(), Some("gmail_base"));
        check(|c| c.calendar_base.push('/'), Some("calendar_base"));
        check(|c| c.page_size = 0, Some("page_size"));
        check(|c| c.page_size = 501, Some("page_size"));
        check(|c| c.max_pages = 0, Some("max_pages"));
        check(|c| c.mail_window = Duration::ZERO, Some("mail_window"));
        check(
            |c| c.token_refresh_margin = Duration::from_secs(3600),
            Some("token_refresh_margin"),
        );
        check(|c| c.throttle_retries = 3, Some("throttle_retries"));
        check(
            |c| c.max_retry_wait = Duration::from_secs(61),
            Some("max_retry_wait"),
        );
    }
}
