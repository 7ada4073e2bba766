//! Gmail: `users.getProfile`, `messages.list` (with `q` and `labelIds`), `messages.get`
//! and `history.list`, over the user's generated mailbox.

use axum::extract::Path;
use axum::response::Response;
use time::format_description::well_known::Rfc2822;

use super::{api, bad_request, now, page_size};
use crate::fault::{Answer, AnswerCtx, Endpoint, FaultKind};
use crate::json::{J, obj};
use crate::paging;
use crate::scenario::Provider;
use crate::server::{ApiRequest, deliver};

pub(super) async fn profile(request: ApiRequest, Path(user_id): Path<String>) -> Response {
    let reply = api(
        &request,
        Endpoint::GmailProfile,
        Some(&user_id),
        false,
        |call| {
            let user = call.user;
            let live: Vec<_> = user.mail.messages.iter().filter(|m| !m.deleted).collect();
            let mut threads: Vec<&str> = live.iter().map(|m| m.thread_id.as_str()).collect();
            threads.sort_unstable();
            threads.dedup();
            Answer::new(
                200,
                obj! {
                    "emailAddress" => user.cfg.email.as_str(),
                    "messagesTotal" => i64::try_from(live.len()).unwrap_or(0),
                    "threadsTotal" => i64::try_from(threads.len()).unwrap_or(0),
                    "historyId" => user.mail.history_id.to_string(),
                },
            )
        },
    );
    deliver(reply).await
}

pub(super) async fn messages_list(request: ApiRequest, Path(user_id): Path<String>) -> Response {
    let params = &request.params;
    let reply = api(
        &request,
        Endpoint::GmailMessages,
        Some(&user_id),
        false,
        |call| {
            let user = call.user;
            let Ok(at) = paging::read_page(params.get("pageToken"), "l", &[]) else {
                return bad_request("invalid", "Invalid pageToken", Some("pageToken"));
            };
            // `labelIds` must name labels the mailbox has (sim mailboxes have only the
            // system labels); each one must be on a listed message.
            let label_ids = params.all("labelIds");
            if let Some(unknown) = label_ids
                .iter()
                .find(|l| !crate::google::search::GMAIL_SYSTEM_LABELS.contains(l))
            {
                return invalid_label(unknown);
            }
            let query =
                crate::google::search::GmailQuery::parse(params.get("q").unwrap_or(""), now());
            // Newest first, as Gmail lists.
            let live: Vec<&crate::state::MailMessage> = user
                .mail
                .messages
                .iter()
                .rev()
                .filter(|m| !m.deleted)
                .filter(|m| {
                    label_ids.iter().all(|l| MESSAGE_LABELS.contains(l))
                        && query.matches(&crate::google::search::MailView {
                            received: m.received.unix_timestamp(),
                            labels: MESSAGE_LABELS,
                            from: &m.from_address,
                            to: &user.cfg.email,
                            subject: &m.subject,
                        })
                })
                .collect();
            let (range, next) =
                paging::cut(live.len(), page_size(params, 100, 500), at, call.quirks);
            let items: Vec<J> = live
                .get(range)
                .unwrap_or_default()
                .iter()
                .map(|m| obj! { "id" => m.id.as_str(), "threadId" => m.thread_id.as_str() })
                .collect();
            let mut body = obj! {};
            if !items.is_empty() {
                body.push("messages", items);
            }
            if let Some(next) = next {
                body.push("nextPageToken", paging::page_token("l", &[], next));
            }
            body.push("resultSizeEstimate", i64::try_from(live.len()).unwrap_or(0));
            Answer::new(200, body)
        },
    );
    deliver(reply).await
}

/// The labels every generated message carries.
pub(super) const MESSAGE_LABELS: &[&str] = &["UNREAD", "INBOX"];

/// Gmail's 400 for a `labelIds` / `labelId` it does not know (GAM-team/GAM#365,
/// GAM-team/got-your-back#135: "Invalid label: …", reason `invalidArgument`).
pub(super) fn invalid_label(label: &str) -> Answer {
    let message = format!("Invalid label: {label}");
    crate::google::faults::google_error(
        400,
        &message,
        Some(vec![
            obj! { "message" => message.as_str(), "domain" => "global", "reason" => "invalidArgument" },
        ]),
        Some("INVALID_ARGUMENT"),
        None,
    )
}

pub(super) fn gmail_message(
    message: &crate::state::MailMessage,
    owner: &str,
    format: &str,
    wanted: &[&str],
) -> J {
    let labels = vec![J::from("UNREAD"), J::from("INBOX")];
    let mut body = obj! {
        "id" => message.id.as_str(),
        "threadId" => message.thread_id.as_str(),
        "labelIds" => labels,
        "snippet" => format!("{} — generated by datacap-sim", message.subject),
    };
    if format != "minimal" {
        let date = message.received.format(&Rfc2822).unwrap_or_default();
        let all = [
            (
                "From",
                format!("{} <{}>", message.from_name, message.from_address),
            ),
            ("To", owner.to_owned()),
            ("Subject", message.subject.clone()),
            ("Date", date),
            (
                "Message-ID",
                format!("<{}@sim.datacap.example>", message.id),
            ),
        ];
        let headers: Vec<J> = all
            .iter()
            .filter(|(name, _)| {
                wanted.is_empty() || wanted.iter().any(|w| w.eq_ignore_ascii_case(name))
            })
            .map(|(name, value)| obj! { "name" => *name, "value" => value.as_str() })
            .collect();
        body.push(
            "payload",
            obj! {
                "partId" => "",
                "mimeType" => "multipart/alternative",
                "filename" => "",
                "headers" => headers,
                "body" => obj! { "size" => 0i64 },
            },
        );
    }
    body.push("sizeEstimate", message.size);
    body.push("historyId", message.changed.to_string());
    body.push(
        "internalDate",
        (message.received.unix_timestamp() * 1000).to_string(),
    );
    body
}

pub(super) async fn message_get(
    request: ApiRequest,
    Path((user_id, id)): Path<(String, String)>,
) -> Response {
    let params = &request.params;
    let reply = api(
        &request,
        Endpoint::GmailMessage,
        Some(&user_id),
        false,
        |call| {
            let user = call.user;
            match user.mail.messages.iter().find(|m| m.id == id && !m.deleted) {
                Some(message) => Answer::new(
                    200,
                    gmail_message(
                        message,
                        &user.cfg.email,
                        params.get("format").unwrap_or("full"),
                        &params.all("metadataHeaders"),
                    ),
                ),
                None => crate::fault::answer(
                    FaultKind::HistoryNotFound,
                    Provider::Google,
                    &AnswerCtx::default(),
                ),
            }
        },
    );
    deliver(reply).await
}

pub(super) async fn history_list(request: ApiRequest, Path(user_id): Path<String>) -> Response {
    let params = &request.params;
    let reply = api(
        &request,
        Endpoint::GmailHistory,
        Some(&user_id),
        true,
        |call| {
            let user = call.user;
            let Some(start) = params
                .get("startHistoryId")
                .and_then(|v| v.parse::<u64>().ok())
            else {
                return bad_request(
                    "invalidArgument",
                    "Missing/invalid parameter: startHistoryId",
                    None,
                );
            };
            if start < user.mail.floor {
                return crate::fault::answer(
                    FaultKind::HistoryNotFound,
                    Provider::Google,
                    &AnswerCtx::default(),
                );
            }
            let start_text = start.to_string();
            let Ok(at) = paging::read_page(params.get("pageToken"), "h", &[&start_text]) else {
                return bad_request("invalid", "Invalid pageToken", Some("pageToken"));
            };
            let label = params.get("labelId");
            if let Some(label) =
                label.filter(|l| !crate::google::search::GMAIL_SYSTEM_LABELS.contains(l))
            {
                return invalid_label(label);
            }
            // Every generated message carries the same labels, deleted or not.
            let labelled = |_added: bool| label.is_none_or(|l| MESSAGE_LABELS.contains(&l));
            let types = params.all("historyTypes");
            let wants = |added: bool| {
                types.is_empty()
                    || types.iter().any(|t| {
                        if added {
                            t.eq_ignore_ascii_case("messageAdded")
                        } else {
                            t.eq_ignore_ascii_case("messageDeleted")
                        }
                    })
            };
            let records: Vec<_> = user
                .mail
                .history
                .iter()
                .filter(|r| r.id > start && wants(r.added) && labelled(r.added))
                .collect();
            let (range, next) =
                paging::cut(records.len(), page_size(params, 100, 500), at, call.quirks);
            let history: Vec<J> = records
            .get(range)
            .unwrap_or_default()
            .iter()
            .filter_map(|record| {
                let message = user.mail.messages.get(record.message)?;
                let short = obj! { "id" => message.id.as_str(), "threadId" => message.thread_id.as_str() };
                let labels: Vec<J> = if record.added {
                    vec![J::from("UNREAD"), J::from("INBOX")]
                } else {
                    Vec::new()
                };
                let full = obj! {
                    "id" => message.id.as_str(),
                    "threadId" => message.thread_id.as_str(),
                    "labelIds" => labels,
                };
                let key = if record.added { "messagesAdded" } else { "messagesDeleted" };
                let mut item = obj! { "id" => record.id.to_string(), "messages" => vec![short] };
                item.push(key, vec![obj! { "message" => full }]);
                Some(item)
            })
            .collect();
            let mut body = obj! {};
            if !history.is_empty() {
                body.push("history", history);
            }
            if let Some(next) = next {
                body.push(
                    "nextPageToken",
                    paging::page_token("h", &[&start_text], next),
                );
            }
            body.push("historyId", user.mail.history_id.to_string());
            Answer::new(200, body)
        },
    );
    deliver(reply).await
}
