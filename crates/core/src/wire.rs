//! The JSON contract of `datacap classify` (STATUS_MODEL.md): input parsing with errors
//! that name the offending field, and the output shape.
//!
//! Lives in core, not in the binary, so the contract is tested and fuzzed without a
//! process, and the binary stays glue: read stdin, call [`classify_json`], write stdout.

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::catalogue::{banner_text, reason_text};
use crate::classify::{BannerTally, classify_member};
use crate::model::{
    AttemptSummary, BannerCode, Channel, Color, CompanySettings, ConnectionMode, MemberConnection,
    MemberSettings, Outcome, Provider, Reason, Thresholds,
};

/// Bad input: which field, and what is wrong with it. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct InputError {
    /// The path of the field, like `members[2].attempts[0].outcome` (`input` for the whole).
    pub field: String,
    pub detail: String,
}

/// A parsed, validated `datacap classify` request.
#[derive(Debug, Clone)]
pub struct ClassifyRequest {
    pub now: OffsetDateTime,
    pub thresholds: Thresholds,
    pub company_id: Option<String>,
    pub company: CompanySettings,
    pub members: Vec<MemberRequest>,
}

/// One member of a request.
#[derive(Debug, Clone)]
pub struct MemberRequest {
    pub id: String,
    pub email: Option<String>,
    pub settings: MemberSettings,
    pub attempts: Vec<AttemptSummary>,
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(deserialize_with = "timestamp")]
    now: OffsetDateTime,
    #[serde(default)]
    thresholds: Option<RawThresholds>,
    company: RawCompany,
    members: Vec<RawMember>,
}

#[derive(Deserialize)]
struct RawThresholds {
    #[serde(default, deserialize_with = "at_least_one")]
    red_after_consecutive_failures: Option<i64>,
    #[serde(default, deserialize_with = "at_least_one")]
    stall_after_seconds: Option<i64>,
}

#[derive(Deserialize)]
struct RawCompany {
    #[serde(default)]
    id: Option<String>,
    provider: Provider,
    connection_mode: ConnectionMode,
    permission_given: bool,
    email_authorized: bool,
    calendar_authorized: bool,
    import_email: bool,
    import_calendar: bool,
    import_non_recorded_meetings: bool,
}

#[derive(Deserialize)]
struct RawMember {
    id: String,
    #[serde(default)]
    email: Option<String>,
    has_recording_seat: bool,
    recording_enabled: bool,
    email_import: bool,
    calendar_import: bool,
    import_non_recorded_meetings: bool,
    #[serde(default)]
    connection: Option<MemberConnection>,
    attempts: Vec<RawAttempt>,
}

#[derive(Deserialize)]
struct RawAttempt {
    channel: Channel,
    #[serde(deserialize_with = "timestamp")]
    at: OffsetDateTime,
    outcome: Outcome,
}

fn timestamp<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OffsetDateTime, D::Error> {
    let text = String::deserialize(deserializer)?;
    OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| {
        serde::de::Error::custom(format!(
            "bad timestamp {text:?}: expected RFC 3339, like \"2026-11-28T12:00:00Z\""
        ))
    })
}

fn at_least_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let value = i64::deserialize(deserializer)?;
    if value < 1 {
        return Err(serde::de::Error::custom(format!(
            "must be at least 1, got {value}"
        )));
    }
    Ok(Some(value))
}

/// Parses and validates a request; the error names the first bad field.
pub fn parse_request(input: &str) -> Result<ClassifyRequest, InputError> {
    let mut deserializer = serde_json::Deserializer::from_str(input);
    let raw: RawRequest = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        InputError {
            field: if path == "." {
                "input".to_owned()
            } else {
                path
            },
            detail: error.into_inner().to_string(),
        }
    })?;
    deserializer.end().map_err(|error| InputError {
        field: "input".to_owned(),
        detail: error.to_string(),
    })?;

    let mut thresholds = Thresholds::default();
    if let Some(raw_thresholds) = raw.thresholds {
        if let Some(count) = raw_thresholds.red_after_consecutive_failures {
            thresholds.red_after_consecutive_failures =
                u32::try_from(count).map_err(|_| InputError {
                    field: "thresholds.red_after_consecutive_failures".to_owned(),
                    detail: format!("must be at most {}, got {count}", u32::MAX),
                })?;
        }
        if let Some(seconds) = raw_thresholds.stall_after_seconds {
            thresholds.stall_after = time::Duration::seconds(seconds);
        }
    }

    let company = CompanySettings {
        provider: raw.company.provider,
        connection_mode: raw.company.connection_mode,
        permission_given: raw.company.permission_given,
        email_authorized: raw.company.email_authorized,
        calendar_authorized: raw.company.calendar_authorized,
        import_email: raw.company.import_email,
        import_calendar: raw.company.import_calendar,
        import_non_recorded_meetings: raw.company.import_non_recorded_meetings,
    };
    let mut members = Vec::with_capacity(raw.members.len());
    for (index, member) in raw.members.into_iter().enumerate() {
        if company.connection_mode == ConnectionMode::UserByUser && member.connection.is_none() {
            return Err(InputError {
                field: format!("members[{index}].connection"),
                detail: "missing field `connection` (required when company.connection_mode is user_by_user)".to_owned(),
            });
        }
        members.push(MemberRequest {
            id: member.id,
            email: member.email,
            settings: MemberSettings {
                has_recording_seat: member.has_recording_seat,
                recording_enabled: member.recording_enabled,
                email_import: member.email_import,
                calendar_import: member.calendar_import,
                import_non_recorded_meetings: member.import_non_recorded_meetings,
                connection: member.connection,
            },
            attempts: member
                .attempts
                .into_iter()
                .map(|attempt| AttemptSummary {
                    channel: attempt.channel,
                    at: attempt.at,
                    outcome: attempt.outcome,
                })
                .collect(),
        });
    }
    Ok(ClassifyRequest {
        now: raw.now,
        thresholds,
        company_id: raw.company.id,
        company,
        members,
    })
}

/// One icon in the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IconOutput {
    pub color: Color,
    pub reason: Reason,
    pub message: String,
    pub resolution: String,
}

impl IconOutput {
    /// The icon for `reason`, with the catalogue's words for `provider`.
    pub fn new(reason: Reason, provider: Provider) -> IconOutput {
        let text = reason_text(reason, provider);
        IconOutput {
            color: reason.color(),
            reason,
            message: text.message,
            resolution: text.resolution,
        }
    }
}

/// One member in the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberOutput {
    pub id: String,
    pub capture: IconOutput,
    pub email: IconOutput,
    pub calendar: IconOutput,
}

/// One banner in the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BannerOutput {
    pub code: BannerCode,
    pub color: Color,
    pub count: u32,
    pub provider: Provider,
    pub message: String,
    pub resolution: String,
}

impl BannerOutput {
    /// The banner `code` with `count`, with the catalogue's words for `provider`.
    pub fn new(code: BannerCode, count: u32, provider: Provider) -> BannerOutput {
        let text = banner_text(code, provider, count);
        BannerOutput {
            code,
            color: code.color(),
            count,
            provider,
            message: text.message,
            resolution: text.resolution,
        }
    }
}

/// The whole `datacap classify` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassifyResponse {
    pub members: Vec<MemberOutput>,
    pub banners: Vec<BannerOutput>,
}

/// Classifies every member of a request (in input order) and the company's banners.
pub fn classify_request(request: &ClassifyRequest) -> ClassifyResponse {
    let provider = request.company.provider;
    let mut tally = BannerTally::default();
    let members = request
        .members
        .iter()
        .map(|member| {
            let status = classify_member(
                &request.company,
                &member.settings,
                &member.attempts,
                request.now,
                &request.thresholds,
            );
            tally.add(&status);
            MemberOutput {
                id: member.id.clone(),
                capture: IconOutput::new(status.capture, provider),
                email: IconOutput::new(status.email, provider),
                calendar: IconOutput::new(status.calendar, provider),
            }
        })
        .collect();
    let banners = tally
        .banners()
        .into_iter()
        .map(|banner| BannerOutput::new(banner.code, banner.count, provider))
        .collect();
    ClassifyResponse { members, banners }
}

/// JSON in, JSON out: the whole of `datacap classify` but the process.
pub fn classify_json(input: &str) -> Result<String, InputError> {
    let request = parse_request(input)?;
    let response = classify_request(&request);
    // Serializing plain structs of strings, enums and integers cannot fail.
    serde_json::to_string_pretty(&response).map_err(|error| InputError {
        field: "output".to_owned(),
        detail: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    //! Each bad input names its field; good input follows STATUS_MODEL.md's example.

    use super::*;

    const EXAMPLE: &str = r#"{
      "now": "2026-11-28T12:00:00Z",
      "thresholds": {"red_after_consecutive_failures": 3, "stall_after_seconds": 3600},
      "company": {"id": "acme", "provider": "google_workspace", "connection_mode": "company_wide",
                  "permission_given": true, "email_authorized": true, "calendar_authorized": true,
                  "import_email": true, "import_calendar": true, "import_non_recorded_meetings": false},
      "members": [
        {"id": "m1", "email": "ana@acme.test", "has_recording_seat": true, "recording_enabled": true,
         "email_import": true, "calendar_import": true, "import_non_recorded_meetings": false,
         "connection": "connected",
         "attempts": [{"channel": "email", "at": "2026-11-28T11:55:00Z", "outcome": "success"}]}
      ]
    }"#;

    /// Replaces `from` by `to` in the example and expects an error on `field`.
    #[track_caller]
    fn check_error(from: &str, to: &str, field: &str, detail_contains: &str) {
        assert!(EXAMPLE.contains(from), "{from} not in example");
        let input = EXAMPLE.replacen(from, to, 1);
        let error = parse_request(&input).expect_err("must fail");
        assert_eq!(error.field, field, "{error}");
        assert!(
            error.detail.contains(detail_contains),
            "{error} should contain {detail_contains}"
        );
        assert!(!error.to_string().contains('\n'), "one line: {error}");
    }

    #[test]
    fn the_example_classifies_as_documented() {
        let response = classify_request(&parse_request(EXAMPLE).expect("valid"));
        let member = &response.members[0];
        assert_eq!(
            (
                member.capture.reason,
                member.email.reason,
                member.calendar.reason
            ),
            (
                Reason::Importing,
                Reason::Importing,
                Reason::AwaitingFirstImport
            )
        );
        assert_eq!(member.email.color, Color::Green);
        assert_eq!(member.calendar.color, Color::Gray);
        assert!(response.banners.is_empty());
        assert!(member.email.message.contains("Google Workspace"));
    }

    #[test]
    fn bad_input_names_the_field() {
        check_error(
            r#""outcome": "success""#,
            r#""outcome": "sucess""#,
            "members[0].attempts[0].outcome",
            "unknown variant",
        );
        check_error(
            r#""channel": "email""#,
            r#""channel": "capture""#,
            "members[0].attempts[0].channel",
            "unknown variant",
        );
        check_error(
            r#""provider": "google_workspace""#,
            r#""provider": "gmail""#,
            "company.provider",
            "unknown variant",
        );
        check_error(
            r#""connection_mode": "company_wide""#,
            r#""connection_mode": 3"#,
            "company.connection_mode",
            "expected value",
        );
        check_error(
            r#""at": "2026-11-28T11:55:00Z""#,
            r#""at": "yesterday""#,
            "members[0].attempts[0].at",
            "bad timestamp",
        );
        check_error(
            r#""now": "2026-11-28T12:00:00Z""#,
            r#""now": "2026-11-28 12:00""#,
            "now",
            "bad timestamp",
        );
        check_error(
            r#""has_recording_seat": true, "#,
            "",
            "members[0]",
            "has_recording_seat",
        );
        check_error(r#""import_email": true, "#, "", "company", "import_email");
        check_error(
            r#""red_after_consecutive_failures": 3"#,
            r#""red_after_consecutive_failures": -1"#,
            "thresholds.red_after_consecutive_failures",
            "at least 1",
        );
        check_error(
            r#""stall_after_seconds": 3600"#,
            r#""stall_after_seconds": 0"#,
            "thresholds.stall_after_seconds",
            "at least 1",
        );
        check_error(
            r#""red_after_consecutive_failures": 3"#,
            r#""red_after_consecutive_failures": 99999999999"#,
            "thresholds.red_after_consecutive_failures",
            "at most",
        );
    }

    #[test]
    fn user_by_user_requires_the_connection() {
        let input = EXAMPLE
            .replace(
                r#""connection_mode": "company_wide""#,
                r#""connection_mode": "user_by_user""#,
            )
            .replace(r#""connection": "connected","#, "");
        let error = parse_request(&input).expect_err("must fail");
        assert_eq!(error.field, "members[0].connection");
        // Company-wide may omit it.
        let input = EXAMPLE.replace(r#""connection": "connected","#, "");
        assert!(parse_request(&input).is_ok());
    }

    #[test]
    fn syntax_errors_and_trailing_data_are_errors() {
        for input in ["", "{", "[]", "null", "{\"now\": }"] {
            assert!(parse_request(input).is_err(), "{input:?}");
        }
        let error = parse_request(&format!("{EXAMPLE} {{}}")).expect_err("trailing data");
        assert_eq!(error.field, "input");
    }

    #[test]
    fn thresholds_are_optional() {
        let input = EXAMPLE.replace(
            r#""thresholds": {"red_after_consecutive_failures": 3, "stall_after_seconds": 3600},"#,
            "",
        );
        let request = parse_request(&input).expect("valid");
        assert_eq!(request.thresholds, Thresholds::default());
        let input = EXAMPLE.replace(
            r#""stall_after_seconds": 3600"#,
            r#""stall_after_seconds": 60"#,
        );
        let request = parse_request(&input).expect("valid");
        assert_eq!(request.thresholds.stall_after, time::Duration::minutes(1));
    }
}
