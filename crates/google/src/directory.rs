//! The Directory check of company-wide imports: before spending Gmail or Calendar quota,
//! `users.list` (as the configured Directory admin) says whether the member exists, is
//! suspended or has no mailbox (providers/google.md §8).
//!
//! A suspended member's token exchange usually succeeds and the APIs then fail in ways
//! that look like other problems, so Directory is the reliable source.
//!
//! The check is optional: when Directory refuses or fails (the subject is no Directory
//! admin, the Directory scope is not delegated, the Admin SDK API is off in the project,
//! a quota, a 5xx), the import goes on without it ([`Check::Refused`]); only a Directory
//! answer about the member ([`Check::Unavailable`]) ends the attempt.

use datacap_connector::Failure;
use datacap_core::Outcome;

use crate::errors::Api;
use crate::models::UserList;
use crate::session::Session;
use crate::token::Purpose;

/// The name of the check in logs and metrics.
pub(crate) const CHECK_NAME: &str = "google_directory";

/// Why the check did not pass.
pub(crate) enum Check {
    /// Directory says the member has no usable mailbox: the attempt ends with it.
    Unavailable(Failure),
    /// Directory could not be asked (refused, failed, did not end): passed over.
    Refused(Failure),
}

/// `Ok(())` when the member has a usable mailbox, [`Check::Unavailable`] when Directory
/// says they have none, [`Check::Refused`] when Directory did not answer the question.
pub(crate) async fn check_member(session: &Session<'_>) -> Result<(), Check> {
    let url = format!("{}/users", session.inner.config.directory_base);
    let address = session.job.member_address.clone();
    let mut page_token: Option<String> = None;
    for _ in 0..session.inner.config.max_pages {
        let mut query = vec![
            ("customer", "my_customer".to_owned()),
            ("query", format!("email:{address}")),
            ("maxResults", session.inner.config.page_size.to_string()),
            ("projection", "basic".to_owned()),
        ];
        if let Some(token) = &page_token {
            query.push(("pageToken", token.clone()));
        }
        let page: UserList = session
            .get(Purpose::Directory, Api::DirectoryUsers, &url, &query)
            .await
            .map_err(|f| Check::Refused(f.failure))?;
        if let Some(user) = page
            .users
            .iter()
            .find(|u| u.primary_email.eq_ignore_ascii_case(&address))
        {
            if user.suspended == Some(true) {
                return Err(Check::Unavailable(unavailable(
                    "suspended",
                    "the member is suspended in the Google directory",
                )));
            }
            if user.archived == Some(true) {
                return Err(Check::Unavailable(unavailable(
                    "archived",
                    "the member is archived in the Google directory",
                )));
            }
            if user.is_mailbox_setup == Some(false) {
                return Err(Check::Unavailable(unavailable(
                    "isMailboxSetup",
                    "the member has no Gmail mailbox (isMailboxSetup is false)",
                )));
            }
            return Ok(());
        }
        match page.next_page_token {
            Some(token) if !token.is_empty() => page_token = Some(token),
            _ => {
                return Err(Check::Unavailable(unavailable(
                    "userNotFound",
                    "the member is not in the Google directory",
                )));
            }
        }
    }
    Err(Check::Refused(Failure::new(
        Outcome::ProviderError,
        "the directory listing did not end within the page limit",
    )))
}

fn unavailable(code: &str, message: &str) -> Failure {
    Failure::new(Outcome::MailboxUnavailable, message).with_code(code)
}
