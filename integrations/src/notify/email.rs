//! The e-mail channel: SMTP through `lettre` (RFC 5321 submission; STARTTLS per RFC 3207,
//! implicit TLS per RFC 8314, or plain for a relay on the LAN), one message per delivery with
//! a `text/plain` and a `text/html` alternative (RFC 2046).
//!
//! SMTP's reply classes decide the outcome: 4xx is transient (greylisting, a full mailbox,
//! a server busy), 5xx permanent (no such user, relaying denied); a connection that fails or
//! times out is transient.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::{
    html_escape, ConfigError, ConfigProblem, Message, Outcome, Secrets, To, MAX_FIELD_BYTES,
};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required); port 587 by default.
    Starttls,
    /// TLS from the first byte (SMTPS); port 465 by default.
    Tls,
    /// No encryption (a relay on the same host or LAN); port 25 by default.
    None,
}

/// The readable settings of the e-mail channel (the password is the secret `password`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// The SMTP server's host name or address.
    pub host: String,
    /// Its port (default by `security`: 587, 465 or 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// How the connection is secured (default `starttls`).
    #[serde(default = "default_security")]
    pub security: SmtpSecurity,
    /// The user for SMTP AUTH, if the server wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The sender, e.g. `MediaNest <medianest@example.com>`.
    pub from: String,
    /// Where the household's types go (e.g. the admins' shared mailbox), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household_to: Option<String>,
}

fn default_security() -> SmtpSecurity {
    SmtpSecurity::Starttls
}

impl EmailSettings {
    /// Checks the host and the addresses.
    ///
    /// # Errors
    /// [`ConfigError`] `invalid-channel-settings` or `invalid-email`.
    pub fn check(&self) -> Result<(), ConfigError> {
        let host = self.host.trim();
        if host.is_empty()
            || host.len() > 253
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        {
            return Err(ConfigError::settings(
                "settings.host",
                "must be a host name or address",
            ));
        }
        if self.port == Some(0) {
            return Err(ConfigError::settings("settings.port", "must be 1 to 65535"));
        }
        check_mailbox("settings.from", &self.from)?;
        if let Some(to) = &self.household_to {
            check_mailbox("settings.household_to", to)?;
        }
        Ok(())
    }

    fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        })
    }
}

/// Checks an e-mail address (`jane@example.com` or `Jane <jane@example.com>`).
pub(super) fn check_mailbox(field: &str, address: &str) -> Result<(), ConfigError> {
    if address.len() > MAX_FIELD_BYTES {
        return Err(ConfigError::too_long(field));
    }
    address.parse::<Mailbox>().map(|_| ()).map_err(|_| {
        ConfigError::new(
            ConfigProblem::InvalidEmail,
            field,
            "not a valid e-mail address".to_string(),
        )
    })
}

/// Sends `message` to `to` (the household's `household_to`, or a member's address).
pub(super) async fn send(
    settings: &EmailSettings,
    secrets: &Secrets,
    to: To<'_>,
    message: &Message,
    timeout: Duration,
) -> Outcome {
    let recipient = match to {
        To::Member(address) => address,
        To::Household => match &settings.household_to {
            Some(address) => address.as_str(),
            None => return Outcome::permanent("the channel has no household address"),
        },
    };
    let (Ok(from), Ok(recipient)) = (settings.from.parse::<Mailbox>(), recipient.parse()) else {
        return Outcome::permanent("an address is not valid");
    };
    let mail = lettre::Message::builder()
        .from(from)
        .to(recipient)
        .subject(message.title.clone())
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(plain_text(message)))
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html(message)),
                ),
        );
    let mail = match mail {
        Ok(mail) => mail,
        Err(error) => return Outcome::permanent(format!("cannot build the message: {error}")),
    };
    let host = settings.host.trim().trim_matches(['[', ']']);
    let builder = match settings.security {
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
        SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            host,
        )),
    };
    let mut builder = match builder {
        Ok(builder) => builder.port(settings.port()).timeout(Some(timeout)),
        Err(error) => return Outcome::permanent(format!("cannot set up TLS: {error}")),
    };
    if let Some(user) = &settings.username {
        let password = secrets.get("password").unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.clone(), password.to_string()));
    }
    let transport = builder.build();
    match tokio::time::timeout(timeout * 3, transport.send(mail)).await {
        Err(_) => Outcome::transient("the SMTP server did not answer in time"),
        Ok(Ok(_)) => Outcome::Sent,
        Ok(Err(error)) if error.is_permanent() => Outcome::permanent(format!("SMTP: {error}")),
        Ok(Err(error)) => Outcome::transient(format!("SMTP: {error}")),
    }
}

fn plain_text(message: &Message) -> String {
    let mut text = format!("{}\n\n{}\n", message.title, message.body);
    if let Some(link) = &message.url {
        text.push_str(&format!("\nOpen in MediaNest: {link}\n"));
    }
    text
}

fn html(message: &Message) -> String {
    let mut html = String::from("<!doctype html><html><body style=\"font-family:sans-serif\">");
    if let Some(image) = &message.image_url {
        html.push_str(&format!(
            "<img src=\"{}\" alt=\"\" width=\"154\" style=\"float:right;margin-left:12px\">",
            html_escape(image)
        ));
    }
    html.push_str(&format!(
        "<h2>{}</h2><p>{}</p>",
        html_escape(&message.title),
        html_escape(&message.body)
    ));
    if let Some(link) = &message.url {
        html.push_str(&format!(
            "<p><a href=\"{}\">Open in MediaNest</a></p>",
            html_escape(link)
        ));
    }
    html.push_str("</body></html>");
    html
}
