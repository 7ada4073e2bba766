//! Graph calendar: `calendarView/delta` inside the window its first request names.

use axum::extract::Path;
use axum::response::Response;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::delta::{DeltaState, delta_page, read_delta, removed};
use super::faults::graph_error;
use super::{graph, graph_time};
use crate::fault::{Answer, Endpoint};
use crate::json::{J, obj};
use crate::paging::PageAt;
use crate::server::{ApiRequest, deliver};

pub(super) fn parse_graph_time(value: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{value}Z"), &Rfc3339))
        .ok()
}

pub(super) fn graph_event(event: &crate::state::CalEvent, owner: &str, owner_name: &str) -> J {
    let when = |t: OffsetDateTime| {
        let text = t
            .format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].0000000"
            ))
            .unwrap_or_default();
        obj! { "dateTime" => text, "timeZone" => "UTC" }
    };
    obj! {
        "@odata.type" => "#microsoft.graph.event",
        "@odata.etag" => format!("W/\"DwAAABYAAAD{}\"", event.seq),
        "createdDateTime" => graph_time(event.created),
        "lastModifiedDateTime" => graph_time(event.updated),
        "changeKey" => format!("DwAAABYAAAD{}", event.seq),
        "categories" => Vec::<J>::new(),
        "originalStartTimeZone" => "UTC",
        "originalEndTimeZone" => "UTC",
        "iCalUId" => format!("040000008200E00074C5B7101A82E008{}", event.id),
        "reminderMinutesBeforeStart" => 15i64,
        "isReminderOn" => true,
        "hasAttachments" => false,
        "subject" => event.summary.as_str(),
        "bodyPreview" => "",
        "importance" => "normal",
        "sensitivity" => "normal",
        "isAllDay" => false,
        "isCancelled" => false,
        "isOrganizer" => true,
        "responseRequested" => true,
        "seriesMasterId" => J::Null,
        "showAs" => "busy",
        "type" => "singleInstance",
        "webLink" => format!("https://outlook.office365.com/owa/?itemid={}&exvsurl=1&path=/calendar/item", event.graph_id),
        "isOnlineMeeting" => false,
        "responseStatus" => obj! { "response" => "organizer", "time" => "0001-01-01T00:00:00Z" },
        "start" => when(event.start),
        "end" => when(event.end),
        "location" => obj! { "displayName" => "", "locationType" => "default", "uniqueIdType" => "unknown" },
        "locations" => Vec::<J>::new(),
        "attendees" => Vec::<J>::new(),
        "organizer" => obj! { "emailAddress" => obj! { "name" => owner_name, "address" => owner } },
        "id" => event.graph_id.as_str(),
    }
}

pub(super) async fn calendar_delta(request: ApiRequest, Path(id): Path<String>) -> Response {
    let params = &request.params;
    let incremental = params.get("$deltatoken").is_some() || params.get("$skiptoken").is_some();
    let link_base = format!(
        "{}/users/{id}/calendarView/delta",
        request.shared.urls.graph_base
    );
    let reply = graph(
        &request,
        Endpoint::GraphCalendar,
        Some(&id),
        incremental,
        |call, ctx| {
            let Some(user) = call.user else {
                return Answer::new(200, J::Null);
            };
            let cal = &user.cal;
            let state = match read_delta(params, "c", cal.epoch, cal.seq, ctx) {
                Ok(Some(state)) => state,
                Ok(None) => {
                    let start = params.get("startDateTime").and_then(parse_graph_time);
                    let end = params.get("endDateTime").and_then(parse_graph_time);
                    let (Some(start), Some(end)) = (start, end) else {
                        return graph_error(
                            ctx,
                            400,
                            "ErrorInvalidParameter",
                            "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
                            true,
                        );
                    };
                    DeltaState {
                        epoch: cal.epoch,
                        since: 0,
                        snapshot: cal.seq,
                        at: PageAt::default(),
                        size: None,
                        window: Some((start.unix_timestamp(), end.unix_timestamp())),
                        options: String::new(),
                    }
                }
                Err(answer) => return answer,
            };
            let (start, end) = state.window.unwrap_or((i64::MIN, i64::MAX));
            let inside = |e: &crate::state::CalEvent| {
                e.end.unix_timestamp() > start && e.start.unix_timestamp() < end
            };
            let mut changed: Vec<&crate::state::CalEvent> = cal
                .events
                .iter()
                .filter(|e| e.seq > state.since && e.seq <= state.snapshot)
                .filter(|e| state.since > 0 || (!e.cancelled && inside(e)))
                .collect();
            changed.sort_by_key(|e| e.seq);
            let items: Vec<J> = changed
                .iter()
                .map(|e| {
                    if e.cancelled || !inside(e) {
                        removed("#microsoft.graph.event", &e.graph_id)
                    } else {
                        graph_event(e, &user.cfg.email, &user.cfg.name)
                    }
                })
                .collect();
            delta_page(
                &link_base,
                "c",
                "https://graph.microsoft.com/v1.0/$metadata#Collection(event)",
                &state,
                items,
                call,
            )
        },
    );
    deliver(reply).await
}
