//! `[smtp]`: the relay `datacap remind --send` and the reminders page mail members through
//! (lettre, rustls with ring). The password is read from a file or env var named here,
//! never written in it.

use std::path::PathBuf;

use anyhow::Context;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::{KeySource, parse_duration, read_secret};

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

use datacap_web::Mail;

/// A connection to the configured relay.
pub struct Relay {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Relay {
    /// The relay `[smtp]` describes; an error when host or from is missing.
    pub fn new(section: &SmtpSection) -> anyhow::Result<Relay> {
        let host = section
            .host
            .as_deref()
            .context("[smtp] host is not set: datacap remind --send needs a relay")?;
        let from: Mailbox = section
            .from
            .as_deref()
            .context("[smtp] from is not set")?
            .parse()
            .context("[smtp] from is not an email address")?;
        let tls = |host: &str| {
            TlsParameters::new(host.to_owned()).context("cannot set up TLS for the smtp relay")
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(section.port)
            .timeout(Some(section.timeout));
        builder = match section.tls {
            SmtpTls::Starttls => builder.tls(Tls::Required(tls(host)?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls(host)?)),
            SmtpTls::None => builder.tls(Tls::None),
        };
        if let Some(username) = &section.username {
            let password = match &section.password {
                Some(source) => read_secret(source, "smtp password")?
                    .expose_secret()
                    .to_owned(),
                None => String::new(),
            };
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
        Ok(Relay {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one plain-text mail.
    pub async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        let to: Mailbox = mail
            .to
            .parse()
            .with_context(|| format!("{:?} is not an email address", mail.to))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .context("cannot build the mail")?;
        self.transport
            .send(message)
            .await
            .with_context(|| format!("the smtp relay refused the mail to {}", mail.to))?;
        Ok(())
    }
}

/// The reminders page sends through the same relay.
impl datacap_web::Mailer for Relay {
    fn send<'a>(&'a self, mail: &'a Mail) -> datacap_web::MailFuture<'a> {
        Box::pin(async move {
            Relay::send(self, mail)
                .await
                .map_err(|error| format!("{error:#}"))
        })
    }
}
