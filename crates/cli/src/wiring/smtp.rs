//! The relay `datacap remind --send` and the reminders page mail members through (lettre,
//! rustls with ring), built from `[smtp]` (`crate::config::smtp`); the password is read
//! from the file or env var the section names.

use anyhow::Context;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::read_secret;
use crate::config::smtp::{SmtpSection, SmtpTls};

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
