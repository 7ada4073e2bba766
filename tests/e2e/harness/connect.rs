//! The user-by-user harness: members who connect one by one through the sim's consent
//! screens with their personal links, as a browser would, through a running daemon.

use std::net::SocketAddr;

use serde_json::Value;

use super::{
    Daemon, Harness, USER_BY_USER_SCENARIO, USER_BY_USER_TENANTS, free_port, get_redirect,
    get_with, header, split_url,
};

/// A user-by-user harness: [`USER_BY_USER_SCENARIO`] and its tenants file, applied, with
/// the encryption key, our OAuth clients and the connect flow configured; `web` is where
/// the daemon that serves the connect flow must listen (the links point there).
pub struct UserByUser {
    pub h: Harness,
    pub web: SocketAddr,
}

impl UserByUser {
    pub fn new(postgres: bool) -> UserByUser {
        let mut h = Harness::new(USER_BY_USER_SCENARIO, postgres);
        let web = free_port();
        let dir = h.dir.path().to_owned();
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let e = h.sim.as_ref().unwrap().endpoints().clone();
        let env = [
            (
                "DATACAP_ENCRYPTION__KEY_ENV",
                "TEST_ENCRYPTION_KEY".to_owned(),
            ),
            ("TEST_ENCRYPTION_KEY", "42".repeat(32)),
            ("DATACAP_GOOGLE__AUTHORIZE_URL", e.google_authorize_url),
            (
                "DATACAP_GOOGLE__OAUTH_CLIENT_ID",
                "initech-client.apps.googleusercontent.com".to_owned(),
            ),
            (
                "DATACAP_GOOGLE__OAUTH_CLIENT_SECRET_FILE",
                file("google-secret", "initech-secret"),
            ),
            (
                "DATACAP_MICROSOFT__OAUTH_CLIENT_ID",
                "cc11dd22-ee33-4f44-8a55-bb6677889900".to_owned(),
            ),
            (
                "DATACAP_MICROSOFT__OAUTH_CLIENT_SECRET_ENV",
                "CONTOSO_SECRET".to_owned(),
            ),
            (
                "DATACAP_WEB__OPERATOR_TOKEN_FILE",
                file("operator-token", "operator-token-of-the-user-by-user-test"),
            ),
            (
                "DATACAP_WEB__SIGNING_KEY_FILE",
                file(
                    "signing-key",
                    "signing-key-of-the-user-by-user-test-0123456789",
                ),
            ),
            ("DATACAP_WEB__PUBLIC_URL", format!("http://{web}")),
            ("INITECH_SECRET", "initech-secret".to_owned()),
            ("CONTOSO_SECRET", "contoso-secret".to_owned()),
        ];
        h.env
            .extend(env.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let ubu = UserByUser { h, web };
        ubu.apply_tenants(true);
        ubu
    }

    /// Applies the tenants file, with initech's calendar import on or off.
    pub fn apply_tenants(&self, import_calendar: bool) {
        let text = USER_BY_USER_TENANTS.replace("@IMPORT_CALENDAR@", &import_calendar.to_string());
        std::fs::write(&self.h.tenants, text).unwrap();
        self.h.apply();
    }

    /// A daemon that serves the connect flow at `web`.
    pub fn daemon(&self, name: &str, extra_env: &[(&str, &str)]) -> Daemon {
        self.h.daemon_at(name, self.web, extra_env)
    }

    /// Connects `members` of `company` the way members do, through a running daemon: the
    /// personal link `datacap remind` lists, the sim's consent screen, the callback.
    pub fn connect(&self, company: &str, members: &[&str]) {
        let listed: Value = serde_json::from_str(
            &self
                .h
                .datacap(&[], &["remind", "--company", company, "--format", "json"]),
        )
        .expect("remind json");
        for member in members {
            let link = listed
                .as_array()
                .unwrap()
                .iter()
                .find(|row| row["member_id"] == *member)
                .unwrap_or_else(|| panic!("{member} is not listed to connect: {listed}"))["link"]
                .as_str()
                .unwrap()
                .to_owned();
            let (addr, path) = split_url(&link);
            let (status, headers, body) = get_with(addr, &path, &[]);
            assert_eq!(status, 303, "{member} start: {body}");
            let location = header(&headers, "location");
            // The browser's binding cookie goes back with the callback.
            let cookie = header(&headers, "set-cookie");
            let cookie = cookie.split(';').next().unwrap_or_default().to_owned();
            let (sim, path) = split_url(&location);
            let (status, location, body) = get_redirect(sim, &path);
            assert_eq!(status, 302, "{member} at the consent screen: {body}");
            let (addr, path) = split_url(&location);
            let (status, _, body) = get_with(addr, &path, &[("Cookie", &cookie)]);
            assert_eq!(status, 200, "{member} callback: {body}");
        }
    }
}
