//! Company-wide discovery: who the tenant's directory lists, with guests and disabled
//! accounts flagged, from Graph `GET /users?$select=id,userPrincipalName,mail,
//! accountEnabled,userType`.
//!
//! Guests have no mailbox in the tenant and disabled accounts cannot be read
//! (providers/microsoft.md §8: contrib#405, #5146), so the caller can show them as such
//! instead of importing them into `mailbox_unavailable` one by one.

use serde::Deserialize;

/// The fields discovery asks for.
pub(crate) const USER_SELECT: &str = "id,userPrincipalName,mail,accountEnabled,userType";

/// One directory user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryUser {
    /// Graph object id.
    pub id: String,
    /// Sign-in name; the address the connector's mailbox calls use.
    pub user_principal_name: String,
    /// Primary SMTP address, when the user has one.
    pub mail: Option<String>,
    /// `accountEnabled` as Graph reported it.
    pub account_enabled: Option<bool>,
    /// `userType` as Graph reported it (`Member`, `Guest`).
    pub user_type: Option<String>,
    /// A B2B guest (no mailbox in this tenant).
    pub guest: bool,
    /// Sign-in blocked (`accountEnabled: false`).
    pub disabled: bool,
}

impl DirectoryUser {
    /// Neither a guest nor disabled: worth importing.
    pub fn importable(&self) -> bool {
        !self.guest && !self.disabled
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphUser {
    id: String,
    #[serde(default)]
    user_principal_name: Option<String>,
    #[serde(default)]
    mail: Option<String>,
    #[serde(default)]
    account_enabled: Option<bool>,
    #[serde(default)]
    user_type: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct UsersPage {
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
    value: Vec<GraphUser>,
}

impl UsersPage {
    pub(crate) fn parse(body: &[u8]) -> Result<UsersPage, serde_json::Error> {
        serde_json::from_slice(body)
    }

    pub(crate) fn users(&self) -> impl Iterator<Item = DirectoryUser> + '_ {
        self.value.iter().map(|user| {
            let upn = user.user_principal_name.clone().unwrap_or_default();
            let guest = user
                .user_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("guest"))
                || upn.to_ascii_uppercase().contains("#EXT#");
            DirectoryUser {
                id: user.id.clone(),
                user_principal_name: upn,
                mail: user.mail.clone(),
                account_enabled: user.account_enabled,
                user_type: user.user_type.clone(),
                guest,
                disabled: user.account_enabled == Some(false),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let page = UsersPage::parse(br#"{"value":[
            {"id":"1","userPrincipalName":"a@x","mail":"a@x","accountEnabled":true,"userType":"Member"},
            {"id":"2","userPrincipalName":"v_p.example#EXT#@x","mail":"v@p.example","accountEnabled":true,"userType":"Guest"},
            {"id":"3","userPrincipalName":"s@x","mail":null,"accountEnabled":false,"userType":"Member"}]}"#)
        .expect("page");
        let users: Vec<DirectoryUser> = page.users().collect();
        assert_eq!(
            users
                .iter()
                .map(DirectoryUser::importable)
                .collect::<Vec<_>>(),
            [true, false, false]
        );
        assert!(users[1].guest && !users[1].disabled);
        assert!(users[2].disabled && !users[2].guest);
        assert_eq!(users[2].mail, None);
        assert!(UsersPage::parse(b"{\"value\":[{}]}").is_err());
    }
}
