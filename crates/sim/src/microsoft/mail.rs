//! Graph mail: `messages/delta` of the inbox, with the query options Graph keeps inside
//! its links (`$filter`, `$orderby`, `changeType`, `$top`, `$select`).

use axum::extract::Path;
use axum::response::Response;

use super::delta::{DeltaState, delta_page, read_delta, removed};
use super::faults::graph_error;
use super::{graph, graph_time};
use crate::fault::{Answer, AnswerCtx, Endpoint};
use crate::json::{J, obj};
use crate::paging::PageAt;
use crate::server::{ApiRequest, Params, deliver};

/// Message delta's query options (learn.microsoft.com/graph/delta-query-messages).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct MailOptions {
    /// `$filter=receivedDateTime ge|gt …`: (seconds, strict).
    pub(super) received: Option<(i64, bool)>,
    /// `$orderby=receivedDateTime desc`.
    pub(super) newest_first: bool,
    pub(super) change_type: Option<crate::microsoft::search::ChangeType>,
    pub(super) top: Option<usize>,
    /// `$select`, comma-separated as sent.
    pub(super) select: Option<String>,
}

impl MailOptions {
    /// Reads the options of a round's first request; `Err` is Graph's 400.
    pub(super) fn from_params(params: &Params, ctx: &AnswerCtx) -> Result<MailOptions, Answer> {
        let refuse = |message: &str| {
            Err(graph_error(
                ctx,
                400,
                "ErrorInvalidUrlQuery",
                message,
                false,
            ))
        };
        let mut options = MailOptions::default();
        if let Some(filter) = params.get("$filter") {
            match crate::microsoft::search::graph_received_filter(filter) {
                Some(received) => options.received = Some(received),
                // The live text (msgraph-sdk-dotnet#1512, microsoft-graph-docs#18636).
                None => {
                    return refuse(
                        "The '$filter' parameter value is not supported for 'Messages' resource; only a value of 'receivedDateTime ge value' is supported.",
                    );
                }
            }
        }
        if let Some(orderby) = params.get("$orderby") {
            if !crate::microsoft::search::graph_orderby_ok(orderby) {
                return refuse(
                    "The '$orderby' parameter value is not supported for 'Messages' resource; only a value of 'receivedDateTime desc' is supported.",
                );
            }
            options.newest_first = true;
        }
        if let Some(change_type) = params.get("changeType") {
            match crate::microsoft::search::ChangeType::parse(change_type) {
                Some(kind) => options.change_type = Some(kind),
                None => {
                    return refuse(
                        "The 'changeType' parameter value is not supported; supported values are 'created', 'updated' and 'deleted'.",
                    );
                }
            }
        }
        if let Some(top) = params.get("$top") {
            match top.parse::<usize>() {
                Ok(n) if n > 0 => options.top = Some(n.min(1000)),
                _ => return refuse("The query parameter '$top' is invalid."),
            }
        }
        // Property names only: nothing that could break the option record's separators.
        options.select = params
            .get("$select")
            .filter(|s| {
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == ',' || c == ' ')
            })
            .map(|s| s.replace(' ', ""));
        Ok(options)
    }

    pub(super) fn encode(&self) -> String {
        let mut parts = Vec::new();
        if let Some((at, strict)) = self.received {
            parts.push(format!("f={}:{at}", if strict { "gt" } else { "ge" }));
        }
        if self.newest_first {
            parts.push("o=desc".to_owned());
        }
        if let Some(kind) = self.change_type {
            parts.push(format!("c={}", kind.name()));
        }
        if let Some(top) = self.top {
            parts.push(format!("t={top}"));
        }
        if let Some(select) = &self.select {
            parts.push(format!("s={select}"));
        }
        parts.join(";")
    }

    pub(super) fn decode(text: &str) -> MailOptions {
        let mut options = MailOptions::default();
        for part in text.split(';') {
            match part.split_once('=') {
                Some(("f", value)) => {
                    options.received = value
                        .split_once(':')
                        .and_then(|(op, at)| Some((at.parse().ok()?, op == "gt")));
                }
                Some(("o", _)) => options.newest_first = true,
                Some(("c", kind)) => {
                    options.change_type = crate::microsoft::search::ChangeType::parse(kind)
                }
                Some(("t", top)) => options.top = top.parse().ok(),
                Some(("s", select)) => options.select = Some(select.to_owned()),
                _ => {}
            }
        }
        options
    }

    pub(super) fn keeps(&self, message: &crate::state::MailMessage) -> bool {
        use crate::microsoft::search::ChangeType;
        let received = message.received.unix_timestamp();
        let in_filter = self.received.is_none_or(|(at, strict)| {
            if strict {
                received > at
            } else {
                received >= at
            }
        });
        // Sim messages are only ever added or deleted, never updated in place.
        let kind = match self.change_type {
            None => true,
            Some(ChangeType::Created) => !message.deleted,
            Some(ChangeType::Updated) => false,
            Some(ChangeType::Deleted) => message.deleted,
        };
        in_filter && kind
    }
}

pub(super) fn graph_message(
    message: &crate::state::MailMessage,
    owner: &str,
    owner_name: &str,
) -> J {
    let received = graph_time(message.received);
    let address = |name: &str, address: &str| obj! { "emailAddress" => obj! { "name" => name, "address" => address } };
    obj! {
        "@odata.type" => "#microsoft.graph.message",
        "@odata.etag" => format!("W/\"CQAAABYAAAD{}\"", message.changed),
        "createdDateTime" => received.as_str(),
        "lastModifiedDateTime" => received.as_str(),
        "changeKey" => format!("CQAAABYAAAD{}", message.changed),
        "categories" => Vec::<J>::new(),
        "receivedDateTime" => received.as_str(),
        "sentDateTime" => received.as_str(),
        "hasAttachments" => false,
        "internetMessageId" => format!("<{}@sim.datacap.example>", message.id),
        "subject" => message.subject.as_str(),
        "bodyPreview" => format!("{} — generated by datacap-sim", message.subject),
        "importance" => "normal",
        "parentFolderId" => "AQMkADAwATNiZmYAZC1pbmJveAAuAAAD",
        "conversationId" => format!("AAQkAD{}", message.thread_id),
        "isReadReceiptRequested" => false,
        "isRead" => false,
        "isDraft" => false,
        "webLink" => format!("https://outlook.office365.com/owa/?ItemID={}&viewmodel=ReadMessageItem", message.graph_id),
        "inferenceClassification" => "focused",
        "sender" => address(&message.from_name, &message.from_address),
        "from" => address(&message.from_name, &message.from_address),
        "toRecipients" => vec![address(owner_name, owner)],
        "ccRecipients" => Vec::<J>::new(),
        "bccRecipients" => Vec::<J>::new(),
        "replyTo" => Vec::<J>::new(),
        "id" => message.graph_id.as_str(),
    }
}

pub(super) async fn mail_delta(
    request: ApiRequest,
    Path((id, folder)): Path<(String, String)>,
) -> Response {
    let params = &request.params;
    let incremental = params.get("$deltatoken").is_some() || params.get("$skiptoken").is_some();
    let link_base = format!(
        "{}/users/{id}/mailFolders/{folder}/messages/delta",
        request.shared.urls.graph_base
    );
    let reply = graph(
        &request,
        Endpoint::GraphMail,
        Some(&id),
        incremental,
        |call, ctx| {
            if !folder.eq_ignore_ascii_case("inbox") {
                return graph_error(
                    ctx,
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                    true,
                );
            }
            let Some(user) = call.user else {
                return Answer::new(200, J::Null);
            };
            let mail = &user.mail;
            let state = match read_delta(params, "m", mail.epoch, mail.history_id, ctx) {
                Ok(Some(state)) => state,
                Ok(None) => {
                    let options = match MailOptions::from_params(params, ctx) {
                        Ok(options) => options,
                        Err(answer) => return answer,
                    };
                    DeltaState {
                        epoch: mail.epoch,
                        since: 0,
                        snapshot: mail.history_id,
                        at: PageAt::default(),
                        size: None,
                        window: None,
                        options: options.encode(),
                    }
                }
                Err(answer) => return answer,
            };
            let options = MailOptions::decode(&state.options);
            // The round's `$select` lives in its links; one sent again with a link wins.
            let select: Vec<&str> = params
                .get("$select")
                .or(options.select.as_deref())
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|f| !f.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let mut changed: Vec<&crate::state::MailMessage> = mail
                .messages
                .iter()
                .filter(|m| m.changed > state.since && m.changed <= state.snapshot)
                .filter(|m| state.since > 0 || !m.deleted)
                .filter(|m| options.keeps(m))
                .collect();
            if options.newest_first {
                changed.sort_by_key(|m| (std::cmp::Reverse(m.received), m.changed));
            } else {
                changed.sort_by_key(|m| m.changed);
            }
            let items: Vec<J> = changed
                .iter()
                .map(|m| {
                    if m.deleted {
                        removed("#microsoft.graph.message", &m.graph_id)
                    } else {
                        let body = graph_message(m, &user.cfg.email, &user.cfg.name);
                        if select.is_empty() {
                            body
                        } else {
                            body.select(&select, &["@odata.type", "@odata.etag", "id"])
                        }
                    }
                })
                .collect();
            delta_page(
                &link_base,
                "m",
                "https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
                &state,
                items,
                call,
            )
        },
    );
    deliver(reply).await
}
