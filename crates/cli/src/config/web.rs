//! `[web]`: who may read the Team members page and its API, how sessions and connect links
//! are signed, and where members reach this server: the section as written and validated.
//! Tokens and the signing secret are only named here (a file or a variable); the wiring
//! (`crate::wiring::web`) reads them.

use std::path::PathBuf;

use serde::Deserialize;

use super::{KeySource, parse_duration};

/// `[web]` as written.
#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawWeb {
    operator_token_file: Option<PathBuf>,
    operator_token_env: Option<String>,
    company_tokens_file: Option<PathBuf>,
    company_tokens_env: Option<String>,
    signing_key_file: Option<PathBuf>,
    signing_key_env: Option<String>,
    public_url: String,
    refresh: String,
    session_ttl: String,
    invite_ttl: String,
    connect_state_ttl: String,
    secure_cookie: bool,
    support_contact: Option<String>,
}

impl Default for RawWeb {
    fn default() -> Self {
        RawWeb {
            operator_token_file: None,
            operator_token_env: None,
            company_tokens_file: None,
            company_tokens_env: None,
            signing_key_file: None,
            signing_key_env: None,
            public_url: "http://127.0.0.1:9464".to_owned(),
            refresh: "30s".to_owned(),
            session_ttl: "12h".to_owned(),
            invite_ttl: "3d".to_owned(),
            connect_state_ttl: "10m".to_owned(),
            secure_cookie: false,
            support_contact: None,
        }
    }
}

/// `[web]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSection {
    pub operator_token: Option<KeySource>,
    pub company_tokens: Option<KeySource>,
    pub signing_key: Option<KeySource>,
    pub public_url: String,
    pub refresh_seconds: u32,
    pub session_ttl: time::Duration,
    pub invite_ttl: time::Duration,
    pub connect_state_ttl: time::Duration,
    pub secure_cookie: bool,
    /// Whom the Team members page tells a company admin to hand a red icon to.
    pub support_contact: Option<String>,
}

fn source(
    key: &'static str,
    file: Option<PathBuf>,
    env: Option<String>,
) -> Result<Option<KeySource>, (&'static str, String)> {
    match (file, env) {
        (None, None) => Ok(None),
        (Some(path), None) => Ok(Some(KeySource::File(path))),
        (None, Some(name)) if !name.trim().is_empty() => Ok(Some(KeySource::Env(name))),
        (None, Some(_)) => Err((key, "the variable name must not be empty".to_owned())),
        (Some(_), Some(_)) => Err((key, "give the _file or the _env key, not both".to_owned())),
    }
}

/// Checks `[web]`.
pub(crate) fn validate(raw: RawWeb) -> Result<WebSection, (&'static str, String)> {
    let public_url = raw.public_url.trim_end_matches('/').to_owned();
    if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
        return Err((
            "web.public_url",
            format!("{:?} must be an http:// or https:// URL", raw.public_url),
        ));
    }
    if public_url.starts_with("http://") && !loopback(&public_url) {
        return Err((
            "web.public_url",
            format!(
                "{:?} must be https:// (sessions, tokens and connect codes would cross the network in clear text); http:// is accepted only for a loopback host (127.0.0.1, [::1], localhost)",
                raw.public_url
            ),
        ));
    }
    let invite_ttl = parse_duration(&raw.invite_ttl).map_err(|d| ("web.invite_ttl", d))?;
    if invite_ttl <= time::Duration::ZERO || invite_ttl > time::Duration::days(7) {
        return Err((
            "web.invite_ttl",
            "must be more than 0s and at most 7d (a connect link is a credential: days, not weeks)"
                .to_owned(),
        ));
    }
    let support_contact = match raw.support_contact.as_deref().map(str::trim) {
        None => None,
        Some("") => {
            return Err((
                "web.support_contact",
                "must not be empty (leave it out to name \"your datacap operator\")".to_owned(),
            ));
        }
        Some(text) if text.chars().count() > 200 || text.chars().any(char::is_control) => {
            return Err((
                "web.support_contact",
                "must be one line of at most 200 characters (a team, an address or a phone number)"
                    .to_owned(),
            ));
        }
        Some(text) => Some(text.to_owned()),
    };
    let refresh = parse_duration(&raw.refresh).map_err(|detail| ("web.refresh", detail))?;
    let refresh_seconds = u32::try_from(refresh.whole_seconds())
        .ok()
        .filter(|seconds| (5..=3600).contains(seconds))
        .ok_or(("web.refresh", "must be 5s to 1h".to_owned()))?;
    Ok(WebSection {
        operator_token: source(
            "web.operator_token_file",
            raw.operator_token_file,
            raw.operator_token_env,
        )?,
        company_tokens: source(
            "web.company_tokens_file",
            raw.company_tokens_file,
            raw.company_tokens_env,
        )?,
        signing_key: source(
            "web.signing_key_file",
            raw.signing_key_file,
            raw.signing_key_env,
        )?,
        refresh_seconds,
        session_ttl: parse_duration(&raw.session_ttl).map_err(|d| ("web.session_ttl", d))?,
        invite_ttl,
        connect_state_ttl: parse_duration(&raw.connect_state_ttl)
            .map_err(|d| ("web.connect_state_ttl", d))?,
        // Secure whenever the server is reached over https, whatever the key says.
        secure_cookie: raw.secure_cookie || public_url.starts_with("https://"),
        public_url,
        support_contact,
    })
}

/// Whether an `http://` URL's host is loopback (`127.0.0.0/8`, `[::1]`, `localhost`).
fn loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(public_url: &str, invite_ttl: &str) -> RawWeb {
        RawWeb {
            public_url: public_url.to_owned(),
            invite_ttl: invite_ttl.to_owned(),
            ..RawWeb::default()
        }
    }

    #[test]
    fn the_public_url_is_https_unless_loopback() {
        for (url, ok) in [
            ("https://datacap.example.com", true),
            ("https://10.0.0.5:9464", true),
            ("http://127.0.0.1:9464", true),
            ("http://127.8.0.1", true),
            ("http://[::1]:9464/", true),
            ("http://localhost:9464", true),
            ("http://datacap.example.com", false),
            ("http://10.0.0.5:9464", false),
            ("http://0.0.0.0:9464", false),
            ("http://localhost.evil.example", false),
            ("ftp://127.0.0.1", false),
        ] {
            let checked = validate(raw(url, "3d"));
            assert_eq!(checked.is_ok(), ok, "{url}: {checked:?}");
            if !ok {
                assert_eq!(checked.unwrap_err().0, "web.public_url");
            }
        }
    }

    #[test]
    fn the_support_contact_is_one_short_line() {
        assert_eq!(validate(RawWeb::default()).unwrap().support_contact, None);
        let with = |text: &str| RawWeb {
            support_contact: Some(text.to_owned()),
            ..RawWeb::default()
        };
        assert_eq!(
            validate(with("  the IT desk (it@example.com) "))
                .unwrap()
                .support_contact
                .as_deref(),
            Some("the IT desk (it@example.com)")
        );
        for bad in ["", "   ", "two\nlines", &"x".repeat(201)] {
            assert_eq!(
                validate(with(bad)).unwrap_err().0,
                "web.support_contact",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cookies_are_secure_whenever_the_url_is_https() {
        assert!(
            validate(raw("https://datacap.example.com", "3d"))
                .unwrap()
                .secure_cookie
        );
        assert!(
            !validate(raw("http://127.0.0.1:9464", "3d"))
                .unwrap()
                .secure_cookie
        );
    }

    #[test]
    fn invites_expire_in_days_not_weeks() {
        assert_eq!(
            validate(RawWeb::default()).unwrap().invite_ttl,
            time::Duration::days(3)
        );
        assert!(validate(raw("http://127.0.0.1", "7d")).is_ok());
        for ttl in ["8d", "14d", "0s"] {
            assert_eq!(
                validate(raw("http://127.0.0.1", ttl)).unwrap_err().0,
                "web.invite_ttl"
            );
        }
    }
}
