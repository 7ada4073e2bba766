//! Calendar: `events.list` on the primary calendar, full and incremental (`syncToken`),
//! and the 400s it answers before looking at any event.

use axum::extract::Path;
use axum::response::Response;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{api, bad_request, google_time, page_size};
use crate::fault::{Answer, AnswerCtx, Endpoint, FaultKind};
use crate::json::{J, obj};
use crate::paging::{self, PageAt};
use crate::scenario::Provider;
use crate::server::{ApiRequest, Params, deliver};

/// An event's `start` / `end` `dateTime` in a UTC calendar: whole seconds, `Z`.
pub(super) fn google_seconds(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default()
}

pub(super) fn calendar_event(event: &crate::state::CalEvent, owner: &str) -> J {
    let etag = format!("\"{}\"", 3_000_000_000_000_000u64 + event.seq);
    if event.cancelled {
        return obj! {
            "kind" => "calendar#event",
            "etag" => etag,
            "id" => event.id.as_str(),
            "status" => "cancelled",
        };
    }
    obj! {
        "kind" => "calendar#event",
        "etag" => etag,
        "id" => event.id.as_str(),
        "status" => "confirmed",
        "htmlLink" => format!("https://www.google.com/calendar/event?eid={}", event.id),
        "created" => google_time(event.created),
        "updated" => google_time(event.updated),
        "summary" => event.summary.as_str(),
        "creator" => obj! { "email" => owner, "self" => true },
        "organizer" => obj! { "email" => owner, "self" => true },
        "start" => obj! { "dateTime" => google_seconds(event.start), "timeZone" => "UTC" },
        "end" => obj! { "dateTime" => google_seconds(event.end), "timeZone" => "UTC" },
        "iCalUID" => format!("{}@google.com", event.id),
        "sequence" => 0i64,
        "reminders" => obj! { "useDefault" => true },
        "eventType" => "default",
    }
}

pub(super) async fn events_list(request: ApiRequest, Path(calendar_id): Path<String>) -> Response {
    let params = &request.params;
    let incremental = params.get("syncToken").is_some();
    let reply = api(
        &request,
        Endpoint::CalendarEvents,
        Some(&calendar_id),
        incremental,
        |call| {
            let user = call.user;
            if let Err(answer) = calendar_params(params) {
                return answer;
            }
            let cal = &user.cal;
            let epoch = cal.epoch.to_string();
            // Mode: full (since 0, no cancelled) or incremental (since the sync token).
            let (since, snapshot, at) = match (params.get("pageToken"), params.get("syncToken")) {
                (Some(token), _) => match paging::decode(token, "e") {
                    Some(f) if f.get(1) == Some(&epoch) => {
                        let since = f.get(2).and_then(|v| v.parse::<u64>().ok());
                        let snapshot = f.get(3).and_then(|v| v.parse::<u64>().ok());
                        match (since, snapshot, PageAt::parse(f.get(4), f.get(5))) {
                            (Some(since), Some(snapshot), Some(at)) => (since, snapshot, at),
                            _ => {
                                return bad_request(
                                    "invalid",
                                    "Invalid page token value.",
                                    Some("pageToken"),
                                );
                            }
                        }
                    }
                    Some(_) => {
                        return crate::fault::answer(
                            FaultKind::FullSyncRequired,
                            Provider::Google,
                            &AnswerCtx::default(),
                        );
                    }
                    None => {
                        return bad_request(
                            "invalid",
                            "Invalid page token value.",
                            Some("pageToken"),
                        );
                    }
                },
                (None, Some(token)) => match paging::decode(token, "s") {
                    Some(f) if f.get(1) == Some(&epoch) => {
                        match f.get(2).and_then(|v| v.parse::<u64>().ok()) {
                            Some(since) => (since, cal.seq, PageAt::default()),
                            None => {
                                return crate::fault::answer(
                                    FaultKind::FullSyncRequired,
                                    Provider::Google,
                                    &AnswerCtx::default(),
                                );
                            }
                        }
                    }
                    _ => {
                        return crate::fault::answer(
                            FaultKind::FullSyncRequired,
                            Provider::Google,
                            &AnswerCtx::default(),
                        );
                    }
                },
                (None, None) => (0, cal.seq, PageAt::default()),
            };
            let full = since == 0;
            let time = |key: &str| {
                params
                    .get(key)
                    .and_then(|v| OffsetDateTime::parse(v, &Rfc3339).ok())
            };
            let (time_min, time_max, updated_min) =
                (time("timeMin"), time("timeMax"), time("updatedMin"));
            // Entries deleted since `updatedMin` are always included (events.list reference).
            let show_deleted =
                !full || updated_min.is_some() || params.get("showDeleted") == Some("true");
            let text = params.get("q").map(str::to_lowercase);
            let mut items: Vec<&crate::state::CalEvent> = cal
                .events
                .iter()
                .filter(|e| e.seq > since && e.seq <= snapshot)
                .filter(|e| show_deleted || !e.cancelled)
                .filter(|e| {
                    time_min.is_none_or(|t| e.end > t) && time_max.is_none_or(|t| e.start < t)
                })
                .filter(|e| updated_min.is_none_or(|t| e.updated >= t))
                .filter(|e| {
                    text.as_deref()
                        .is_none_or(|q| e.summary.to_lowercase().contains(q))
                })
                .collect();
            match params.get("orderBy") {
                Some("updated") => items.sort_by_key(|e| (e.updated, e.seq)),
                Some(_) => items.sort_by_key(|e| (e.start, e.seq)),
                None if full => items.sort_by_key(|e| (e.start, e.seq)),
                None => {}
            }
            let (range, next) =
                paging::cut(items.len(), page_size(params, 250, 2500), at, call.quirks);
            let listed: Vec<J> = items
                .get(range)
                .unwrap_or_default()
                .iter()
                .map(|e| calendar_event(e, &user.cfg.email))
                .collect();
            let updated = cal
                .events
                .iter()
                .map(|e| e.updated)
                .max()
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let mut body = obj! {
                "kind" => "calendar#events",
                "etag" => format!("\"{}\"", 3_000_000_000_000_000u64 + cal.seq),
                "summary" => user.cfg.email.as_str(),
                "description" => "",
                "updated" => google_time(updated),
                "timeZone" => "UTC",
                "accessRole" => "owner",
                "defaultReminders" => vec![obj! { "method" => "popup", "minutes" => 10i64 }],
            };
            match next {
                Some(next) => {
                    let [offset, empty] = next.fields();
                    body.push(
                        "nextPageToken",
                        paging::encode(&[
                            "e",
                            &epoch,
                            &since.to_string(),
                            &snapshot.to_string(),
                            &offset,
                            &empty,
                        ]),
                    );
                }
                None => body.push(
                    "nextSyncToken",
                    paging::encode(&["s", &epoch, &snapshot.to_string()]),
                ),
            }
            body.push("items", listed);
            Answer::new(200, body)
        },
    );
    deliver(reply).await
}

/// Parameters `syncToken` may not be combined with (events.list reference: "There are
/// several query parameters that cannot be specified together with nextSyncToken").
pub(super) const NOT_WITH_SYNC_TOKEN: &[&str] = &[
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
];

/// The 400s `events.list` answers before looking at any event (docs/sim.md, "What the sim
/// refuses").
pub(super) fn calendar_params(params: &Params) -> Result<(), Answer> {
    let with_token = params.get("syncToken").is_some();
    if with_token
        && (NOT_WITH_SYNC_TOKEN.iter().any(|k| params.get(k).is_some())
            || params.get("showDeleted") == Some("false"))
    {
        // Observed text and reason (qiita.com/shiraily/items/6762046f041551c269da).
        let message = "Sync token cannot be used with other request restrictions.";
        return Err(crate::google::faults::google_error(
            400,
            message,
            Some(vec![
                obj! { "domain" => "calendar", "reason" => "syncTokenWithRequestRestrictions", "message" => message },
            ]),
            None,
            None,
        ));
    }
    // RFC 3339 "with mandatory time zone offset" (events.list reference); without one
    // Google answers a bare "Bad Request" (google-api-python-client#779).
    let mut times = Vec::new();
    for key in ["timeMin", "timeMax", "updatedMin"] {
        if let Some(value) = params.get(key) {
            match OffsetDateTime::parse(value, &Rfc3339) {
                Ok(t) => times.push((key, t)),
                Err(_) => {
                    return Err(crate::google::faults::google_error(
                        400,
                        "Bad Request",
                        Some(vec![crate::google::faults::item(
                            "global",
                            "badRequest",
                            "Bad Request",
                        )]),
                        None,
                        None,
                    ));
                }
            }
        }
    }
    let find = |key: &str| times.iter().find(|(k, _)| *k == key).map(|(_, t)| *t);
    if let (Some(min), Some(max)) = (find("timeMin"), find("timeMax"))
        && max <= min
    {
        // The Calendar errors guide's example.
        let message = "The specified time range is empty.";
        return Err(crate::google::faults::google_error(
            400,
            message,
            Some(vec![obj! {
                "domain" => "calendar",
                "reason" => "timeRangeEmpty",
                "message" => message,
                "locationType" => "parameter",
                "location" => "timeMax",
            }]),
            None,
            None,
        ));
    }
    match params.get("orderBy") {
        None | Some("updated") => Ok(()),
        Some("startTime") if params.get("singleEvents") == Some("true") => Ok(()),
        Some(other) => {
            // googleworkspace/java-samples#52, google-api-nodejs-client#771.
            let message = if other == "startTime" {
                "The requested ordering is not available for the particular query.".to_owned()
            } else {
                format!(
                    "Invalid value '{other}'. Values must match the following regular expression: '(startTime|updated)'"
                )
            };
            Err(crate::google::faults::google_error(
                400,
                &message,
                Some(vec![obj! {
                    "domain" => "global",
                    "reason" => "invalid",
                    "message" => message.as_str(),
                    "locationType" => "parameter",
                    "location" => "orderBy",
                }]),
                None,
                None,
            ))
        }
    }
}
