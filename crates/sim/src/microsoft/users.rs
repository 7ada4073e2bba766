//! Graph users: `/users` (with `$select`, `$filter`, `$top`, paging), `/me`, and
//! `/users/delta`.

use axum::response::Response;

use super::delta::{DeltaState, delta_page, read_delta};
use super::faults::graph_error;
use super::{graph, graph_time};
use crate::fault::{Answer, Endpoint};
use crate::json::{J, obj};
use crate::paging::{self, PageAt};
use crate::server::{ApiRequest, deliver};

pub(super) fn graph_user(user: &crate::state::UserState, domain: &str) -> J {
    let cfg = &user.cfg;
    let mut names = cfg.name.splitn(2, ' ');
    let given = names.next().unwrap_or_default().to_owned();
    let family = names.next().unwrap_or_default().to_owned();
    let upn = if cfg.guest {
        format!("{}#EXT#@{domain}", cfg.email.replace('@', "_"))
    } else {
        cfg.email.clone()
    };
    let licences: Vec<J> = if cfg.licensed && !cfg.guest {
        vec![
            obj! { "disabledPlans" => Vec::<J>::new(), "skuId" => "c7df2760-2c81-4ef7-b578-5b5392b571df" },
        ]
    } else {
        Vec::new()
    };
    obj! {
        "businessPhones" => Vec::<J>::new(),
        "displayName" => cfg.name.as_str(),
        "givenName" => given,
        "jobTitle" => J::Null,
        "mail" => if cfg.mailbox || cfg.guest { J::from(cfg.email.as_str()) } else { J::Null },
        "mobilePhone" => J::Null,
        "officeLocation" => J::Null,
        "preferredLanguage" => J::Null,
        "surname" => family,
        "userPrincipalName" => upn,
        "id" => user.id.as_str(),
        "accountEnabled" => !cfg.suspended,
        "userType" => if cfg.guest { "Guest" } else { "Member" },
        "createdDateTime" => graph_time(cfg.created_at),
        "assignedLicenses" => licences,
    }
}

pub(super) const DEFAULT_USER_FIELDS: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

pub(super) async fn users(request: ApiRequest) -> Response {
    let params = &request.params;
    let base = request.shared.urls.graph_base.clone();
    let reply = graph(&request, Endpoint::GraphUsers, None, false, |call, ctx| {
        let tenant = call.tenant;
        let select: Vec<String> = params
            .get("$select")
            .map(|s| {
                s.split(',')
                    .map(|f| f.trim().to_owned())
                    .filter(|f| !f.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let select_refs: Vec<&str> = if select.is_empty() {
            DEFAULT_USER_FIELDS.to_vec()
        } else {
            select.iter().map(String::as_str).collect()
        };
        let Ok(at) = paging::read_page(params.get("$skiptoken"), "u", &[]) else {
            return graph_error(
                ctx,
                400,
                "Request_BadRequest",
                "Invalid paging token.",
                true,
            );
        };
        let size = params
            .get("$top")
            .and_then(|v| v.parse::<usize>().ok())
            .or(call.page_size)
            .unwrap_or(100)
            .clamp(1, 999);
        // `ConsistencyLevel: eventual` with `$count=true` turns on advanced queries
        // (`ne`, `endsWith`); learn.microsoft.com/graph/aad-advanced-queries.
        let advanced = request
            .headers
            .get("consistencylevel")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("eventual"))
            && params.get("$count") == Some("true");
        let filter = match params.get("$filter") {
            None => None,
            Some(text) => match crate::microsoft::search::UserFilter::parse(text, advanced) {
                Ok(filter) => Some(filter),
                // MicrosoftDocs/azure-docs#38560, microsoft/botframework-components#1108.
                Err(property) => {
                    return graph_error(
                        ctx,
                        400,
                        "Request_UnsupportedQuery",
                        &format!(
                            "Unsupported or invalid query filter clause specified for property '{property}' of resource 'User'."
                        ),
                        true,
                    );
                }
            },
        };
        let text = |body: &J, key: &str| match body.get(key) {
            Some(J::Str(s)) => s.clone(),
            _ => String::new(),
        };
        let listed: Vec<&crate::state::UserState> = tenant
            .users
            .iter()
            .filter(|u| !u.cfg.deleted)
            .filter(|u| {
                let Some(filter) = &filter else {
                    return true;
                };
                let body = graph_user(u, &tenant.cfg.domain);
                let mail = text(&body, "mail");
                filter.matches(&crate::microsoft::search::DirectoryUserView {
                    id: &text(&body, "id"),
                    user_principal_name: &text(&body, "userPrincipalName"),
                    mail: (!mail.is_empty()).then_some(mail.as_str()),
                    display_name: &text(&body, "displayName"),
                    given_name: &text(&body, "givenName"),
                    surname: &text(&body, "surname"),
                    account_enabled: body.get("accountEnabled") == Some(&J::Bool(true)),
                    user_type: &text(&body, "userType"),
                })
            })
            .collect();
        let (range, next) = paging::cut(listed.len(), size, at, call.quirks);
        let value: Vec<J> = listed
            .get(range)
            .unwrap_or_default()
            .iter()
            .map(|u| graph_user(u, &tenant.cfg.domain).select(&select_refs, &[]))
            .collect();
        let context = if select.is_empty() {
            "https://graph.microsoft.com/v1.0/$metadata#users".to_owned()
        } else {
            format!(
                "https://graph.microsoft.com/v1.0/$metadata#users({})",
                select.join(",")
            )
        };
        let mut body = obj! { "@odata.context" => context };
        if let Some(next) = next {
            let mut link = form_urlencoded::Serializer::new(String::new());
            if !select.is_empty() {
                link.append_pair("$select", &select.join(","));
            }
            if let Some(filter) = params.get("$filter") {
                link.append_pair("$filter", filter);
            }
            link.append_pair("$top", &size.to_string());
            link.append_pair("$skiptoken", &paging::page_token("u", &[], next));
            body.push("@odata.nextLink", format!("{base}/users?{}", link.finish()));
        }
        body.push("value", value);
        Answer::new(200, body)
    });
    deliver(reply).await
}

/// `GET /me`: the signed-in user of a delegated token (what a connect flow may ask to learn
/// whose mailbox a grant reaches); an app-only token answers Graph's 400 (microsoft.md
/// §2.2 "App-only token used with `/me`").
pub(super) async fn me(request: ApiRequest) -> Response {
    let params = &request.params;
    let reply = graph(&request, Endpoint::GraphMe, None, false, |call, ctx| {
        let user = call
            .token_user
            .filter(|_| !call.app_only)
            .and_then(|u| call.tenant.users.get(u));
        let Some(user) = user else {
            return graph_error(
                ctx,
                400,
                "BadRequest",
                "/me request is only valid with delegated authentication flow.",
                true,
            );
        };
        let select: Vec<&str> = params
            .get("$select")
            .map(|s| s.split(',').map(str::trim).collect())
            .unwrap_or_else(|| DEFAULT_USER_FIELDS.to_vec());
        let mut body = obj! {
            "@odata.context" => "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
        };
        if let J::Obj(fields) = graph_user(user, &call.tenant.cfg.domain).select(&select, &["id"]) {
            for (key, value) in fields {
                body.push(&key, value);
            }
        }
        Answer::new(200, body)
    });
    deliver(reply).await
}

/// `GET /users/delta` (learn.microsoft.com/graph/api/user-delta): every user on the first
/// round, paged with `$skiptoken`, then a `$deltatoken` link. Sim users never change
/// while it runs, so a later round answers an empty page and a fresh delta link.
pub(super) async fn users_delta(request: ApiRequest) -> Response {
    let params = &request.params;
    let link_base = format!("{}/users/delta", request.shared.urls.graph_base);
    let reply = graph(&request, Endpoint::GraphUsers, None, false, |call, ctx| {
        let tenant = call.tenant;
        let state = match read_delta(params, "ud", 0, 1, ctx) {
            Ok(Some(state)) => state,
            Ok(None) => DeltaState {
                epoch: 0,
                since: 0,
                snapshot: 1,
                at: PageAt::default(),
                size: None,
                window: None,
                options: params.get("$select").unwrap_or_default().to_owned(),
            },
            Err(answer) => return answer,
        };
        let select: Vec<&str> = if state.options.is_empty() {
            DEFAULT_USER_FIELDS.to_vec()
        } else {
            state.options.split(',').map(str::trim).collect()
        };
        let items: Vec<J> = if state.since > 0 {
            Vec::new()
        } else {
            tenant
                .users
                .iter()
                .filter(|u| !u.cfg.deleted)
                .map(|u| graph_user(u, &tenant.cfg.domain).select(&select, &["id"]))
                .collect()
        };
        delta_page(
            &link_base,
            "ud",
            "https://graph.microsoft.com/v1.0/$metadata#users",
            &state,
            items,
            call,
        )
    });
    deliver(reply).await
}
