//! `Retry-After` in every form the providers send it: whole seconds, fractional seconds,
//! and an HTTP date.

use serde::Deserialize;
use time::OffsetDateTime;
use time::macros::format_description;

/// `Retry-After` as written in the scenario: `10`, `2.128`, or a string sent verbatim
/// (`"date+30"` becomes an HTTP date 30 s from the moment of the answer).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RetryAfter {
    /// Whole seconds.
    Seconds(u64),
    /// Fractional seconds (`2.128`).
    Fraction(f64),
    /// Sent as is, except `date+N`.
    Text(String),
}

impl RetryAfter {
    /// The header value at this moment.
    pub fn header_value(&self) -> String {
        match self {
            RetryAfter::Seconds(secs) => secs.to_string(),
            RetryAfter::Fraction(secs) => secs.to_string(),
            RetryAfter::Text(text) => match text.strip_prefix("date+") {
                Some(secs) => http_date_in(secs.trim().parse().unwrap_or(0)),
                None => text.clone(),
            },
        }
    }
}

/// Formats `Retry-After` as an HTTP date `secs` seconds from now.
pub(crate) fn http_date_in(secs: u64) -> String {
    let now = OffsetDateTime::now_utc();
    let when = now
        .checked_add(time::Duration::seconds(i64::try_from(secs).unwrap_or(0)))
        .unwrap_or(now);
    when.format(format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(RetryAfter::Seconds(10).header_value(), "10");
        assert_eq!(RetryAfter::Fraction(2.128).header_value(), "2.128");
        assert_eq!(
            RetryAfter::Text("Wed, 21 Oct 2026 07:28:00 GMT".into()).header_value(),
            "Wed, 21 Oct 2026 07:28:00 GMT"
        );
        assert!(
            RetryAfter::Text("date+30".into())
                .header_value()
                .ends_with(" GMT")
        );
    }
}
