//! Directory: `users.list` of the Admin SDK (`customer` or `domain`, `query`, paging).

use axum::response::Response;

use super::{api, bad_request, google_time, page_size};
use crate::fault::{Answer, AnswerCtx, Endpoint, FaultKind};
use crate::json::{J, obj};
use crate::paging;
use crate::scenario::Provider;
use crate::server::{ApiRequest, deliver};

pub(super) fn directory_user(user: &crate::state::UserState, customer: &str) -> J {
    let cfg = &user.cfg;
    let mut names = cfg.name.splitn(2, ' ');
    let given = names.next().unwrap_or_default().to_owned();
    let family = names.next().unwrap_or_default().to_owned();
    let mut body = obj! {
        "kind" => "admin#directory#user",
        "id" => user.id.as_str(),
        "etag" => format!("\"sim-{}\"", user.id),
        "primaryEmail" => cfg.email.as_str(),
        "name" => obj! { "givenName" => given, "familyName" => family, "fullName" => cfg.name.as_str() },
        "isAdmin" => cfg.admin,
        "isDelegatedAdmin" => false,
        "lastLoginTime" => "1970-01-01T00:00:00.000Z",
        "creationTime" => google_time(cfg.created_at),
        "agreedToTerms" => true,
        "suspended" => cfg.suspended,
    };
    if cfg.suspended {
        body.push("suspensionReason", "ADMIN");
    }
    for (key, value) in [
        ("archived", J::from(false)),
        ("changePasswordAtNextLogin", J::from(false)),
        ("ipWhitelisted", J::from(false)),
        (
            "emails",
            J::Arr(vec![
                obj! { "address" => cfg.email.as_str(), "primary" => true },
            ]),
        ),
        ("customerId", J::from(customer)),
        ("orgUnitPath", J::from("/")),
        ("isMailboxSetup", J::from(cfg.mailbox && cfg.licensed)),
        ("isEnrolledIn2Sv", J::from(false)),
        ("isEnforcedIn2Sv", J::from(false)),
        ("includeInGlobalAddressList", J::from(true)),
    ] {
        body.push(key, value);
    }
    body
}

pub(super) async fn directory_users(request: ApiRequest) -> Response {
    let params = &request.params;
    let reply = api(&request, Endpoint::Directory, None, false, |call| {
        let tenant = call.tenant;
        let customer = tenant.cfg.tenant_id.as_str();
        match (params.get("customer"), params.get("domain")) {
            (None, None) => {
                return crate::google::faults::google_error(
                    400,
                    "Bad Request",
                    Some(vec![
                        obj! { "message" => "Bad Request", "domain" => "global", "reason" => "badRequest" },
                    ]),
                    None,
                    None,
                );
            }
            (Some(c), _) if c != "my_customer" && c != customer => {
                return crate::fault::answer(
                    FaultKind::DirectoryNotAuthorized,
                    Provider::Google,
                    &AnswerCtx::default(),
                );
            }
            (None, Some(d)) if !d.eq_ignore_ascii_case(&tenant.cfg.domain) => {
                return crate::fault::answer(
                    FaultKind::DirectoryNotAuthorized,
                    Provider::Google,
                    &AnswerCtx::default(),
                );
            }
            _ => {}
        }
        let Ok(query) =
            crate::google::search::DirectoryQuery::parse(params.get("query").unwrap_or(""))
        else {
            // google-api-java-client#1020: a query the Directory cannot read.
            return crate::google::faults::google_error(
                400,
                "Invalid Input: query",
                Some(vec![
                    obj! { "message" => "Invalid Input: query", "domain" => "global", "reason" => "invalid" },
                ]),
                None,
                None,
            );
        };
        let mut users: Vec<&crate::state::UserState> = tenant
            .users
            .iter()
            .filter(|u| !(u.cfg.deleted || u.cfg.guest))
            .filter(|u| {
                let (given, family) = u.cfg.name.split_once(' ').unwrap_or((&u.cfg.name, ""));
                query.matches(&crate::google::search::PersonView {
                    email: &u.cfg.email,
                    given_name: given,
                    family_name: family,
                    admin: u.cfg.admin,
                    suspended: u.cfg.suspended,
                })
            })
            .collect();
        users.sort_by(|a, b| a.cfg.email.cmp(&b.cfg.email));
        let Ok(at) = paging::read_page(params.get("pageToken"), "d", &[]) else {
            return bad_request("invalid", "Invalid Input: pageToken", Some("pageToken"));
        };
        let (range, next) = paging::cut(users.len(), page_size(params, 100, 500), at, call.quirks);
        let listed: Vec<J> = users
            .get(range)
            .unwrap_or_default()
            .iter()
            .map(|u| directory_user(u, customer))
            .collect();
        let mut body = obj! { "kind" => "admin#directory#users", "etag" => "\"sim-directory\"" };
        if !listed.is_empty() {
            body.push("users", listed);
        }
        if let Some(next) = next {
            body.push("nextPageToken", paging::page_token("d", &[], next));
        }
        Answer::new(200, body)
    });
    deliver(reply).await
}
