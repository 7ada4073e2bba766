//! `[smtp]`: the relay `datacap remind --send` and the reminders page mail members through,
//! as written and validated. The password is only named here (a file or an env var); the
//! wiring (`crate::wiring::smtp`) reads it.

use std::path::PathBuf;

use lettre::message::Mailbox;
use serde::Deserialize;

use super::{KeySource, parse_duration};

/// `[smtp]` as written.
#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawSmtp {
    host: Option<String>,
    port: i64,
    from: Option<String>,
    tls: String,
    username: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    timeout: String,
}

impl Default for RawSmtp {
    fn default() -> Self {
        RawSmtp {
            host: None,
            port: 587,
            from: None,
            tls: "starttls".to_owned(),
            username: None,
            password_file: None,
            password_env: None,
            timeout: "30s".to_owned(),
        }
    }
}

/// How the connection to the relay is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// STARTTLS required (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain text: only for a relay on loopback or a trusted network.
    None,
}

/// `[smtp]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpSection {
    pub host: Option<String>,
    pub port: u16,
    pub from: Option<String>,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<KeySource>,
    pub timeout: std::time::Duration,
}

/// Checks `[smtp]`.
pub(crate) fn validate(raw: RawSmtp) -> Result<SmtpSection, (&'static str, String)> {
    let port = u16::try_from(raw.port)
        .ok()
        .filter(|port| *port > 0)
        .ok_or(("smtp.port", format!("must be 1 to 65535, got {}", raw.port)))?;
    let tls = match raw.tls.as_str() {
        "starttls" => SmtpTls::Starttls,
        "tls" => SmtpTls::Tls,
        "none" => SmtpTls::None,
        other => {
            return Err((
                "smtp.tls",
                format!("must be starttls, tls or none, got {other:?}"),
            ));
        }
    };
    if let Some(from) = &raw.from {
        from.parse::<Mailbox>()
            .map_err(|_| ("smtp.from", format!("{from:?} is not an email address")))?;
    }
    let password = match (raw.password_file, raw.password_env) {
        (None, None) => None,
        (Some(path), None) => Some(KeySource::File(path)),
        (None, Some(name)) if !name.trim().is_empty() => Some(KeySource::Env(name)),
        _ => {
            return Err((
                "smtp.password_file",
                "give password_file or password_env, not both (nor an empty name)".to_owned(),
            ));
        }
    };
    if password.is_some() && raw.username.is_none() {
        return Err(("smtp.username", "a password needs a username".to_owned()));
    }
    let timeout = parse_duration(&raw.timeout)
        .ok()
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .ok_or((
            "smtp.timeout",
            format!("{:?} is not a duration", raw.timeout),
        ))?;
    Ok(SmtpSection {
        host: raw.host.filter(|host| !host.trim().is_empty()),
        port,
        from: raw.from,
        tls,
        username: raw.username,
        password,
        timeout,
    })
}
