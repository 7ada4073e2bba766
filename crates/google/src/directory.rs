//! The Directory check of company-wide imports: before spending Gmail or Calendar quota,
//! `users.list` (as the configured Directory admin) says whether the member exists, is
//! suspended or has no mailbox (providers/google.md §8).
//!
//! A suspended member's token exchange usually succeeds and the APIs then fail in ways
//! that look like other problems, so Directory is the reliable source.

use datacap_connector::Failure;
use datacap_core::Outcome;

use crate::auth::Purpose;
use crate::mapping::Api;
use crate::models::UserList;
use crate::session::Session;

/// `Ok(())` when the member has a usable mailbox; `mailbox_unavailable` (or the outcome of
/// a failed Directory call) otherwise.
pub(crate) async fn check_member(session: &Session<'_>) -> Result<(), Failure> {
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
            .map_err(|f| f.failure)?;
        if let Some(user) = page
            .users
            .iter()
            .find(|u| u.primary_email.eq_ignore_ascii_case(&address))
        {
            if user.suspended == Some(true) {
                return Err(unavailable(
                    "suspended",
                    "the member is suspended in the Google directory",
                ));
            }
            if user.archived == Some(true) {
                return Err(unavailable(
                    "archived",
                    "the member is archived in the Google directory",
                ));
            }
            if user.is_mailbox_setup == Some(false) {
                return Err(unavailable(
                    "isMailboxSetup",
                    "the member has no Gmail mailbox (isMailboxSetup is false)",
                ));
            }
            return Ok(());
        }
        match page.next_page_token {
            Some(token) if !token.is_empty() => page_token = Some(token),
            _ => {
                return Err(unavailable(
                    "userNotFound",
                    "the member is not in the Google directory",
                ));
            }
        }
    }
    Err(Failure::new(
        Outcome::ProviderError,
        "the directory listing did not end within the page limit",
    ))
}

fn unavailable(code: &str, message: &str) -> Failure {
    Failure::new(Outcome::MailboxUnavailable, message).with_code(code)
}
