//! The notification channels (issue 14): how each service is configured, where it may send,
//! and one call that delivers a rendered [`Message`] through it.
//!
//! Channels and their contracts:
//!
//! - `email`: SMTP through `lettre` (STARTTLS, implicit TLS or none; optional AUTH), a
//!   `text/plain` and a `text/html` part (RFC 5321/5322).
//! - `webhook`: `POST` of `{"type","timestamp","data"}` JSON, signed as the Standard Webhooks
//!   specification says (standardwebhooks.com, `spec/standard-webhooks.md`): headers
//!   `webhook-id` (`msg_<delivery id>`, the same on every attempt), `webhook-timestamp` (Unix
//!   seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
//!   keyed with the base64 part of the `whsec_…` secret).
//! - `discord`: Execute Webhook (discord.com/developers/docs/resources/webhook, "Execute
//!   Webhook"): `content` with the member's mention and one embed; 204.
//! - `slack`: incoming webhook (api.slack.com/messaging/webhooks): `text` plus blocks; 200 `ok`.
//! - `telegram`: Bot API `sendMessage` (core.telegram.org/bots/api#sendmessage), HTML parse
//!   mode; `{"ok":true}`.
//! - `ntfy`: publish as JSON to the server root (docs.ntfy.sh/publish, "Publish as JSON").
//! - `gotify`: `POST /message` with the application token in `X-Gotify-Key` (gotify.net API
//!   docs, `createMessage`).
//! - `pushover`: `POST /1/messages.json`, form-encoded (pushover.net/api).
//!
//! Outcomes are classified for the dispatcher ([`Outcome`]): a 2xx (and the service's own
//! success flag) is sent; timeouts, connection failures, 408, 5xx, 429 (with its
//! `Retry-After`) and SMTP 4xx are transient; every other 4xx, a redirect (never followed),
//! SMTP 5xx and a destination the address rule refuses are permanent.
//!
//! The address rule ([`DestinationPolicy`]), at save time and at send time: a destination URL
//! is `https`, and its host resolves only to public addresses ([`crate::egress::is_public`]),
//! unless the admin's allow-list (`MEDIANEST_NOTIFY_ALLOW_HOSTS`) names the host — then `http`
//! and private addresses are allowed (a Gotify or ntfy on the LAN). At send time the HTTP
//! client resolves names through the same rule, so a name rebound to a private address after
//! it was saved is refused. Secrets are `Debug`-redacted and never leave this module in an
//! error text.

mod email;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::egress::is_public;

pub use email::{EmailSettings, SmtpSecurity};

/// The longest text of a message title, in characters (Discord's embed title limit).
pub const MAX_TITLE_CHARS: usize = 256;
/// The longest message body, in characters (Pushover's message limit, the smallest).
pub const MAX_BODY_CHARS: usize = 1024;
/// The longest single setting or address, in bytes.
pub const MAX_FIELD_BYTES: usize = 2048;

/// A notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// E-mail over SMTP.
    Email,
    /// A signed JSON webhook (Standard Webhooks).
    Webhook,
    /// A Discord incoming webhook.
    Discord,
    /// A Slack incoming webhook.
    Slack,
    /// A Telegram bot.
    Telegram,
    /// An ntfy server.
    Ntfy,
    /// A Gotify server.
    Gotify,
    /// Pushover.
    Pushover,
}

impl Channel {
    /// Every channel, in the order the API lists them.
    pub const ALL: [Channel; 8] = [
        Channel::Email,
        Channel::Webhook,
        Channel::Discord,
        Channel::Slack,
        Channel::Telegram,
        Channel::Ntfy,
        Channel::Gotify,
        Channel::Pushover,
    ];

    /// The wire name (`email`, `webhook`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
            Channel::Discord => "discord",
            Channel::Slack => "slack",
            Channel::Telegram => "telegram",
            Channel::Ntfy => "ntfy",
            Channel::Gotify => "gotify",
            Channel::Pushover => "pushover",
        }
    }

    /// The channel named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Whether members may have personal deliveries on it, and what their address is: an
    /// e-mail address, a Discord user id (mentioned in the household's Discord channel), a
    /// Telegram chat id, an ntfy topic or a Pushover user key. Webhook, Slack and Gotify
    /// reach the household's destination only.
    pub fn personal(self) -> bool {
        matches!(
            self,
            Channel::Email
                | Channel::Discord
                | Channel::Telegram
                | Channel::Ntfy
                | Channel::Pushover
        )
    }

    /// Checks a member's personal address for this channel.
    ///
    /// # Errors
    /// [`ConfigError`] when the channel has no personal deliveries or the address is not of
    /// its form.
    pub fn check_address(self, address: &str) -> Result<(), ConfigError> {
        let field = format!("{}.address", self.as_str());
        if address.len() > MAX_FIELD_BYTES {
            return Err(ConfigError::too_long(&field));
        }
        let ok = match self {
            Channel::Email => return email::check_mailbox(&field, address),
            Channel::Discord => is_snowflake(address),
            Channel::Telegram => is_chat_id(address),
            Channel::Ntfy => is_ntfy_topic(address),
            Channel::Pushover => is_pushover_key(address),
            Channel::Webhook | Channel::Slack | Channel::Gotify => {
                return Err(ConfigError::new(
                    ConfigProblem::NotAPersonalChannel,
                    &field,
                    format!("{} reaches the household only", self.as_str()),
                ))
            }
        };
        if ok {
            Ok(())
        } else {
            Err(ConfigError::new(
                ConfigProblem::InvalidAddress,
                &field,
                format!("not a valid {} address", self.as_str()),
            ))
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rule a channel's settings, a secret or an address breaks; the HTTP API answers
/// each as the problem type of the same name (`medianest_http::ProblemType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigProblem {
    /// Unknown or malformed settings.
    InvalidChannelSettings,
    /// A malformed e-mail address.
    InvalidEmail,
    /// A destination that is not `https` (and not allow-listed).
    InsecureDestination,
    /// A destination with a private, loopback or link-local address (not allow-listed).
    PrivateDestination,
    /// A secret the channel needs is not set.
    MissingSecret,
    /// A secret's name among the readable settings.
    SecretInSettings,
    /// A value over [`MAX_FIELD_BYTES`].
    FieldTooLong,
    /// A malformed address on a channel.
    InvalidAddress,
    /// An address on a channel that reaches the household only.
    NotAPersonalChannel,
}

/// Why a channel's settings, a secret or an address cannot be used: the rule broken, the
/// field and a human-readable detail (never a secret's value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct ConfigError {
    /// The rule broken.
    pub problem: ConfigProblem,
    /// The offending field, e.g. `settings.url`.
    pub field: String,
    /// What is wrong.
    pub detail: String,
}

impl ConfigError {
    fn new(problem: ConfigProblem, field: &str, detail: String) -> Self {
        Self {
            problem,
            field: field.to_string(),
            detail,
        }
    }

    fn too_long(field: &str) -> Self {
        Self::new(
            ConfigProblem::FieldTooLong,
            field,
            format!("longer than {MAX_FIELD_BYTES} bytes"),
        )
    }

    fn settings(field: &str, detail: impl Into<String>) -> Self {
        Self::new(ConfigProblem::InvalidChannelSettings, field, detail.into())
    }
}

/// Secrets, redacted in `Debug`; values are never put in an error or a log.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secrets(BTreeMap<String, String>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Secrets {
    /// The secret `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The names of the secrets that are set, sorted (what a read answer shows).
    pub fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    /// These secrets updated by `changes`: a string sets one, `null` removes one; names a
    /// channel does not know are refused by [`ChannelConfig::parse`] afterwards.
    ///
    /// # Errors
    /// [`ConfigError`] when `changes` is not an object of strings and nulls, or a value is
    /// too long.
    pub fn merged(&self, changes: &Value) -> Result<Self, ConfigError> {
        let mut out = self.0.clone();
        let Some(object) = changes.as_object() else {
            return Err(ConfigError::settings("secrets", "must be an object"));
        };
        for (name, value) in object {
            let field = format!("secrets.{name}");
            match value {
                Value::Null => {
                    out.remove(name);
                }
                Value::String(s) if s.len() > MAX_FIELD_BYTES => {
                    return Err(ConfigError::too_long(&field))
                }
                Value::String(s) => {
                    out.insert(name.clone(), s.clone());
                }
                _ => return Err(ConfigError::settings(&field, "must be a string or null")),
            }
        }
        Ok(Self(out))
    }
}

/// The secret names of each channel (write-only values).
pub fn secret_names(channel: Channel) -> &'static [&'static str] {
    match channel {
        Channel::Email => &["password"],
        Channel::Webhook => &["signing_secret"],
        Channel::Discord | Channel::Slack => &["webhook_url"],
        Channel::Telegram => &["bot_token"],
        Channel::Ntfy => &["access_token"],
        Channel::Gotify | Channel::Pushover => &["app_token"],
    }
}

/// The readable settings of the webhook channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where to `POST` (https, public; or an allow-listed host).
    pub url: String,
}

/// The readable settings of Discord and Slack (their webhook URL holds a token: it is a
/// secret, `webhook_url`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// The readable settings of Telegram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    /// The Bot API's base URL (default `https://api.telegram.org`).
    #[serde(default = "telegram_api")]
    pub api_url: String,
    /// The household's chat (a group or channel id), for the household's types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_id: Option<String>,
}

/// The readable settings of ntfy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtfySettings {
    /// The server (default `https://ntfy.sh`).
    #[serde(default = "ntfy_server")]
    pub server_url: String,
    /// The household's topic, for the household's types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// The readable settings of Gotify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GotifySettings {
    /// The server, e.g. `https://gotify.example`.
    pub server_url: String,
    /// Gotify's priority for the messages (0–10, default 5).
    #[serde(default = "gotify_priority")]
    pub priority: u8,
}

/// The readable settings of Pushover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushoverSettings {
    /// The API's base URL (default `https://api.pushover.net`).
    #[serde(default = "pushover_api")]
    pub api_url: String,
    /// The household's user or group key, for the household's types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_key: Option<String>,
}

fn telegram_api() -> String {
    "https://api.telegram.org".to_string()
}
fn ntfy_server() -> String {
    "https://ntfy.sh".to_string()
}
fn pushover_api() -> String {
    "https://api.pushover.net".to_string()
}
fn gotify_priority() -> u8 {
    5
}

/// A channel's parsed, checked configuration: what it takes to send through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelConfig {
    /// SMTP, with its password if any.
    Email(EmailSettings, Secrets),
    /// The signed webhook and its `whsec_…` signing secret.
    Webhook(WebhookSettings, Secrets),
    /// Discord (the webhook URL is a secret).
    Discord(Secrets),
    /// Slack (the webhook URL is a secret).
    Slack(Secrets),
    /// Telegram and its bot token.
    Telegram(TelegramSettings, Secrets),
    /// ntfy and its optional access token.
    Ntfy(NtfySettings, Secrets),
    /// Gotify and its application token.
    Gotify(GotifySettings, Secrets),
    /// Pushover and its application token.
    Pushover(PushoverSettings, Secrets),
}

impl ChannelConfig {
    /// Parses and checks `channel`'s readable `settings` and its `secrets`, applying the
    /// address rule to every destination URL (save-time check; the send-time check is the
    /// [`Sender`]'s).
    ///
    /// # Errors
    /// [`ConfigError`]: unknown or malformed settings, a secret put among the settings, a
    /// missing secret, a bad URL or e-mail address, a destination the rule refuses.
    pub async fn parse(
        channel: Channel,
        settings: &Value,
        secrets: Secrets,
        policy: &DestinationPolicy,
    ) -> Result<Self, ConfigError> {
        if let Some(object) = settings.as_object() {
            for (name, value) in object {
                if secret_names(channel).contains(&name.as_str()) {
                    return Err(ConfigError::new(
                        ConfigProblem::SecretInSettings,
                        &format!("settings.{name}"),
                        format!("{name} is write-only: send it in `secrets`"),
                    ));
                }
                if value.as_str().is_some_and(|s| s.len() > MAX_FIELD_BYTES) {
                    return Err(ConfigError::too_long(&format!("settings.{name}")));
                }
            }
        }
        for name in secrets.0.keys() {
            if !secret_names(channel).contains(&name.as_str()) {
                return Err(ConfigError::settings(
                    &format!("secrets.{name}"),
                    format!("{channel} has no secret named {name}"),
                ));
            }
        }
        let config = match channel {
            Channel::Email => {
                let s: EmailSettings = typed(settings)?;
                s.check()?;
                ChannelConfig::Email(s, secrets)
            }
            Channel::Webhook => {
                let s: WebhookSettings = typed(settings)?;
                policy.check_url("settings.url", &s.url).await?;
                let secret = required(&secrets, "signing_secret")?;
                signing_key(secret).ok_or_else(|| {
                    ConfigError::settings(
                        "secrets.signing_secret",
                        "must be `whsec_` followed by a base64 key of 24 to 64 bytes",
                    )
                })?;
                ChannelConfig::Webhook(s, secrets)
            }
            Channel::Discord | Channel::Slack => {
                let _: NoSettings = typed(settings)?;
                let url = required(&secrets, "webhook_url")?;
                policy.check_url("secrets.webhook_url", url).await?;
                if channel == Channel::Discord {
                    ChannelConfig::Discord(secrets)
                } else {
                    ChannelConfig::Slack(secrets)
                }
            }
            Channel::Telegram => {
                let s: TelegramSettings = typed(settings)?;
                policy.check_url("settings.api_url", &s.api_url).await?;
                if let Some(chat) = &s.chat_id {
                    Channel::Telegram.check_address(chat)?;
                }
                let token = required(&secrets, "bot_token")?;
                if !is_bot_token(token) {
                    return Err(ConfigError::settings(
                        "secrets.bot_token",
                        "must be a Telegram bot token (`<bot id>:<key>`)",
                    ));
                }
                ChannelConfig::Telegram(s, secrets)
            }
            Channel::Ntfy => {
                let s: NtfySettings = typed(settings)?;
                policy
                    .check_url("settings.server_url", &s.server_url)
                    .await?;
                if let Some(topic) = &s.topic {
                    Channel::Ntfy.check_address(topic)?;
                }
                ChannelConfig::Ntfy(s, secrets)
            }
            Channel::Gotify => {
                let s: GotifySettings = typed(settings)?;
                policy
                    .check_url("settings.server_url", &s.server_url)
                    .await?;
                if s.priority > 10 {
                    return Err(ConfigError::settings(
                        "settings.priority",
                        "must be 0 to 10",
                    ));
                }
                required(&secrets, "app_token")?;
                ChannelConfig::Gotify(s, secrets)
            }
            Channel::Pushover => {
                let s: PushoverSettings = typed(settings)?;
                policy.check_url("settings.api_url", &s.api_url).await?;
                if let Some(key) = &s.user_key {
                    Channel::Pushover.check_address(key)?;
                }
                if !is_pushover_key(required(&secrets, "app_token")?) {
                    return Err(ConfigError::settings(
                        "secrets.app_token",
                        "must be a Pushover application token (30 letters and digits)",
                    ));
                }
                ChannelConfig::Pushover(s, secrets)
            }
        };
        Ok(config)
    }

    /// The channel.
    pub fn channel(&self) -> Channel {
        match self {
            ChannelConfig::Email(..) => Channel::Email,
            ChannelConfig::Webhook(..) => Channel::Webhook,
            ChannelConfig::Discord(_) => Channel::Discord,
            ChannelConfig::Slack(_) => Channel::Slack,
            ChannelConfig::Telegram(..) => Channel::Telegram,
            ChannelConfig::Ntfy(..) => Channel::Ntfy,
            ChannelConfig::Gotify(..) => Channel::Gotify,
            ChannelConfig::Pushover(..) => Channel::Pushover,
        }
    }

    /// Whether it has a household destination (the household's types need one): always
    /// for the webhook, Discord, Slack and Gotify; e-mail with `household_to`; Telegram with
    /// `chat_id`; ntfy with `topic`; Pushover with `user_key`.
    pub fn has_household_destination(&self) -> bool {
        match self {
            ChannelConfig::Email(s, _) => s.household_to.is_some(),
            ChannelConfig::Telegram(s, _) => s.chat_id.is_some(),
            ChannelConfig::Ntfy(s, _) => s.topic.is_some(),
            ChannelConfig::Pushover(s, _) => s.user_key.is_some(),
            ChannelConfig::Webhook(..)
            | ChannelConfig::Discord(_)
            | ChannelConfig::Slack(_)
            | ChannelConfig::Gotify(..) => true,
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(settings: &Value) -> Result<T, ConfigError> {
    let settings = if settings.is_null() {
        json!({})
    } else {
        settings.clone()
    };
    serde_json::from_value(settings).map_err(|e| ConfigError::settings("settings", e.to_string()))
}

fn required<'a>(secrets: &'a Secrets, name: &str) -> Result<&'a str, ConfigError> {
    secrets.get(name).filter(|s| !s.is_empty()).ok_or_else(|| {
        ConfigError::new(
            ConfigProblem::MissingSecret,
            &format!("secrets.{name}"),
            format!("{name} is required and has not been set"),
        )
    })
}

fn is_snowflake(s: &str) -> bool {
    (17..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_chat_id(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let numeric = (1..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    let username = s.strip_prefix('@').is_some_and(|u| {
        (5..=32).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    numeric || username
}

fn is_ntfy_topic(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_pushover_key(s: &str) -> bool {
    s.len() == 30 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_bot_token(s: &str) -> bool {
    s.split_once(':').is_some_and(|(id, key)| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && (30..=64).contains(&key.len())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The HMAC key of a `whsec_<base64>` Standard Webhooks secret (24 to 64 bytes).
fn signing_key(secret: &str) -> Option<Vec<u8>> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_")?)
        .ok()?;
    (24..=64).contains(&key.len()).then_some(key)
}

/// The Standard Webhooks signature header value for `body` sent as message `id` at
/// `timestamp` (Unix seconds): `v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>`.
///
/// # Panics
/// Never: HMAC takes a key of any length.
pub fn sign_webhook(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    #[expect(clippy::expect_used, reason = "HMAC takes a key of any length")]
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Where notifications may be sent: `https` to public addresses, or anything on the
/// allow-list (host names or IP literals, lower-case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    allowed_hosts: Arc<Vec<String>>,
}

impl DestinationPolicy {
    /// A policy that also allows `allowed_hosts` (`MEDIANEST_NOTIFY_ALLOW_HOSTS`).
    pub fn new(allowed_hosts: &[String]) -> Self {
        Self {
            allowed_hosts: Arc::new(
                allowed_hosts
                    .iter()
                    .map(|h| h.trim().trim_matches(['[', ']']).to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect(),
            ),
        }
    }

    fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        self.allowed_hosts.contains(&host)
    }

    /// Checks destination `url` (named `field` in errors): a URL, `https` unless its host is
    /// allow-listed, no credentials, and a host that is allow-listed or resolves only to
    /// public addresses.
    ///
    /// # Errors
    /// [`ConfigError`] `invalid-channel-settings`, `insecure-destination` or
    /// `private-destination`.
    pub async fn check_url(&self, field: &str, url: &str) -> Result<Url, ConfigError> {
        let parsed =
            Url::parse(url).map_err(|e| ConfigError::settings(field, format!("not a URL: {e}")))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| ConfigError::settings(field, "the URL has no host"))?
            .to_string();
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ConfigError::settings(
                field,
                "the URL must not hold credentials",
            ));
        }
        let allowed = self.allows_host(&host);
        match parsed.scheme() {
            "https" => {}
            "http" if allowed => {}
            scheme => {
                return Err(ConfigError::new(
                    ConfigProblem::InsecureDestination,
                    field,
                    format!("{scheme} is not allowed: use https (or allow-list the host)"),
                ))
            }
        }
        if !allowed {
            let port = parsed.port_or_known_default().unwrap_or(443);
            self.public_addresses(&host, port).await.map_err(|detail| {
                ConfigError::new(ConfigProblem::PrivateDestination, field, detail)
            })?;
        }
        Ok(parsed)
    }

    /// The addresses of `host:port` when every one is public.
    async fn public_addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let bare = host.trim_matches(['[', ']']);
        let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| format!("{host} cannot be resolved: {e}"))?
                .collect(),
        };
        if addresses.is_empty() {
            return Err(format!("{host} resolves to no address"));
        }
        if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
            return Err(format!(
                "{host} is or resolves to {}, which is not public (allow-list it to send there)",
                private.ip()
            ));
        }
        Ok(addresses)
    }
}

/// The send-time half of the rule: names resolve only to public addresses unless allow-listed.
impl reqwest::dns::Resolve for DestinationPolicy {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addresses: Vec<SocketAddr> = if policy.allows_host(&host) {
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect()
            } else {
                policy
                    .public_addresses(&host, 0)
                    .await
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?
            };
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A rendered notification, the same for every channel (each lays it out its own way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The notification type, e.g. `request_available`.
    pub notification_type: String,
    /// One line: `The Matrix (1999) is available`.
    pub title: String,
    /// A few sentences: what happened, to what, and why where there is a reason.
    pub body: String,
    /// A link to the media, request or download in MediaNest (`MEDIANEST_PUBLIC_URL`), when
    /// a public URL is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The poster, an absolute URL, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// When it happened (RFC 3339).
    pub time: String,
    /// Facts for machines: the webhook's `data` carries them (ids, media, status).
    pub data: Value,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The service accepted it.
    Sent,
    /// Try again later (after at least `retry_after` when the service said so).
    Transient {
        /// What went wrong.
        error: String,
        /// The service's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Trying again cannot help (until the settings change).
    Permanent {
        /// What went wrong.
        error: String,
    },
}

impl Outcome {
    fn transient(error: impl Into<String>) -> Self {
        Outcome::Transient {
            error: error.into(),
            retry_after: None,
        }
    }
    fn permanent(error: impl Into<String>) -> Self {
        Outcome::Permanent {
            error: error.into(),
        }
    }
}

/// Who a delivery goes to on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To<'a> {
    /// The channel's household destination.
    Household,
    /// A member's personal address on the channel ([`Channel::personal`]).
    Member(&'a str),
}

/// Sends messages through configured channels: one HTTP client (redirects off, the address
/// rule in its resolver, `timeout` per call) and SMTP connections per message.
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    policy: DestinationPolicy,
    timeout: Duration,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("policy", &self.policy)
            .finish()
    }
}

/// Longest excerpt of an answer body kept in an error.
const MAX_EXCERPT: usize = 300;

impl Sender {
    /// A sender applying `policy`, each call bounded by `timeout`.
    ///
    /// # Panics
    /// When the TLS backend cannot be initialised (a broken build).
    #[expect(
        clippy::expect_used,
        reason = "only a TLS backend that cannot start (a broken build) fails here"
    )]
    pub fn new(policy: DestinationPolicy, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(policy.clone()))
            .user_agent(concat!("MediaNest/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Self {
            http,
            policy,
            timeout,
        }
    }

    /// The address rule this sender applies.
    pub fn policy(&self) -> &DestinationPolicy {
        &self.policy
    }

    /// Sends `message` through `config` to `to`; `delivery_id` names the delivery (the
    /// webhook's `webhook-id` is `msg_<delivery_id>`, the same on every attempt).
    pub async fn send(
        &self,
        config: &ChannelConfig,
        to: To<'_>,
        message: &Message,
        delivery_id: &str,
    ) -> Outcome {
        match self.request(config, to, message, delivery_id) {
            Ok(Some((url, request))) => {
                if let Err(refused) = self.policy.check_url("url", url.as_str()).await {
                    return Outcome::permanent(format!("destination refused: {}", refused.detail));
                }
                self.call(config.channel(), request).await
            }
            Ok(None) => match config {
                ChannelConfig::Email(settings, secrets) => {
                    email::send(settings, secrets, to, message, self.timeout).await
                }
                _ => Outcome::permanent("nothing to send"),
            },
            Err(outcome) => outcome,
        }
    }

    /// The HTTP request for an HTTP channel (`None` for e-mail), or why there is none.
    fn request(
        &self,
        config: &ChannelConfig,
        to: To<'_>,
        message: &Message,
        delivery_id: &str,
    ) -> Result<Option<(Url, reqwest::RequestBuilder)>, Outcome> {
        let household = |what: Option<&String>| -> Result<String, Outcome> {
            match to {
                To::Member(address) => Ok(address.to_string()),
                To::Household => what
                    .cloned()
                    .ok_or_else(|| Outcome::permanent("the channel has no household destination")),
            }
        };
        let url = |raw: &str| -> Result<Url, Outcome> {
            Url::parse(raw).map_err(|e| Outcome::permanent(format!("bad URL: {e}")))
        };
        let secret = |secrets: &Secrets, name: &str| -> Result<String, Outcome> {
            secrets
                .get(name)
                .map(str::to_string)
                .ok_or_else(|| Outcome::permanent(format!("{name} is not set")))
        };
        let built = match config {
            ChannelConfig::Email(..) => return Ok(None),
            ChannelConfig::Webhook(settings, secrets) => {
                let key = signing_key(&secret(secrets, "signing_secret")?)
                    .ok_or_else(|| Outcome::permanent("the signing secret is malformed"))?;
                let id = format!("msg_{delivery_id}");
                let timestamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let body = serde_json::to_vec(&json!({
                    "type": message.notification_type.replacen('_', ".", 1),
                    "timestamp": message.time,
                    "data": webhook_data(message),
                }))
                .unwrap_or_default();
                let mut headers = HeaderMap::new();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                let signature = sign_webhook(&key, &id, timestamp, &body);
                for (name, value) in [
                    ("webhook-id", id),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signature),
                ] {
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        headers.insert(name, value);
                    }
                }
                let target = url(&settings.url)?;
                let request = self.http.post(target.clone()).headers(headers).body(body);
                (target, request)
            }
            ChannelConfig::Discord(secrets) => {
                let target = url(&secret(secrets, "webhook_url")?)?;
                let mention = match to {
                    To::Member(user) => format!("<@{user}> "),
                    To::Household => String::new(),
                };
                let mut embed = json!({
                    "title": truncate(&message.title, MAX_TITLE_CHARS),
                    "description": truncate(&message.body, 4096),
                    "timestamp": message.time,
                    "color": 0x00E5_A00D,
                });
                if let Some(link) = &message.url {
                    embed["url"] = json!(link);
                }
                if let Some(image) = &message.image_url {
                    embed["thumbnail"] = json!({ "url": image });
                }
                let mentions: Vec<&str> = match to {
                    To::Member(user) => vec![user],
                    To::Household => vec![],
                };
                let body = json!({
                    "content": truncate(&format!("{mention}{}", message.title), 2000),
                    "embeds": [embed],
                    "allowed_mentions": { "parse": [], "users": mentions },
                });
                (target.clone(), self.http.post(target).json(&body))
            }
            ChannelConfig::Slack(secrets) => {
                let target = url(&secret(secrets, "webhook_url")?)?;
                let mut section = json!({
                    "type": "section",
                    "text": { "type": "mrkdwn", "text": format!("*{}*\n{}", slack_escape(&message.title), slack_escape(&message.body)) },
                });
                if let Some(image) = &message.image_url {
                    section["accessory"] =
                        json!({ "type": "image", "image_url": image, "alt_text": "poster" });
                }
                let mut blocks = vec![section];
                if let Some(link) = &message.url {
                    blocks.push(json!({
                        "type": "actions",
                        "elements": [{ "type": "button", "text": { "type": "plain_text", "text": "Open in MediaNest" }, "url": link }],
                    }));
                }
                let body = json!({ "text": message.title, "blocks": blocks });
                (target.clone(), self.http.post(target).json(&body))
            }
            ChannelConfig::Telegram(settings, secrets) => {
                let chat = household(settings.chat_id.as_ref())?;
                let token = secret(secrets, "bot_token")?;
                let target = url(&format!(
                    "{}/bot{token}/sendMessage",
                    settings.api_url.trim_end_matches('/')
                ))?;
                let mut text = format!(
                    "<b>{}</b>\n{}",
                    html_escape(&message.title),
                    html_escape(&message.body)
                );
                if let Some(link) = &message.url {
                    text.push_str(&format!(
                        "\n<a href=\"{}\">Open in MediaNest</a>",
                        html_escape(link)
                    ));
                }
                let chat_id: Value = chat
                    .parse::<i64>()
                    .map_or_else(|_| json!(chat), |n| json!(n));
                let mut body = json!({
                    "chat_id": chat_id,
                    "text": truncate(&text, 4096),
                    "parse_mode": "HTML",
                });
                if let Some(image) = &message.image_url {
                    body["link_preview_options"] =
                        json!({ "url": image, "prefer_large_media": true });
                }
                (target.clone(), self.http.post(target).json(&body))
            }
            ChannelConfig::Ntfy(settings, secrets) => {
                let topic = household(settings.topic.as_ref())?;
                let target = url(&format!("{}/", settings.server_url.trim_end_matches('/')))?;
                let mut body = json!({
                    "topic": topic,
                    "title": message.title,
                    "message": message.body,
                    "tags": ["clapper"],
                });
                if let Some(link) = &message.url {
                    body["click"] = json!(link);
                }
                if let Some(image) = &message.image_url {
                    body["attach"] = json!(image);
                }
                let mut request = self.http.post(target.clone()).json(&body);
                if let Some(token) = secrets.get("access_token") {
                    request = request.bearer_auth(token);
                }
                (target, request)
            }
            ChannelConfig::Gotify(settings, secrets) => {
                let target = url(&format!(
                    "{}/message",
                    settings.server_url.trim_end_matches('/')
                ))?;
                let mut extras = json!({ "client::display": { "contentType": "text/plain" } });
                if let Some(link) = &message.url {
                    extras["client::notification"] = json!({ "click": { "url": link } });
                }
                if let Some(image) = &message.image_url {
                    extras["client::notification"]["bigImageUrl"] = json!(image);
                }
                let body = json!({
                    "title": message.title,
                    "message": message.body,
                    "priority": settings.priority,
                    "extras": extras,
                });
                let request = self
                    .http
                    .post(target.clone())
                    .header("X-Gotify-Key", secret(secrets, "app_token")?)
                    .json(&body);
                (target, request)
            }
            ChannelConfig::Pushover(settings, secrets) => {
                let user = household(settings.user_key.as_ref())?;
                let target = url(&format!(
                    "{}/1/messages.json",
                    settings.api_url.trim_end_matches('/')
                ))?;
                let mut form = vec![
                    ("token", secret(secrets, "app_token")?),
                    ("user", user),
                    ("title", truncate(&message.title, 250)),
                    ("message", truncate(&message.body, MAX_BODY_CHARS)),
                ];
                if let Some(link) = &message.url {
                    form.push(("url", truncate(link, 512)));
                    form.push(("url_title", "Open in MediaNest".to_string()));
                }
                (target.clone(), self.http.post(target).form(&form))
            }
        };
        Ok(Some(built))
    }

    /// Sends `request` and classifies the answer.
    async fn call(&self, channel: Channel, request: reqwest::RequestBuilder) -> Outcome {
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if error.is_builder() => return Outcome::permanent(error.to_string()),
            Err(error) => return Outcome::transient(without_url(&error)),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        classify(channel, status, retry_after, &body)
    }
}

/// What an HTTP answer means for a delivery.
fn classify(
    channel: Channel,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> Outcome {
    let excerpt: String = body.chars().take(MAX_EXCERPT).collect();
    let json: Option<Value> = serde_json::from_str(body).ok();
    if status.is_success() {
        // Services that answer 200 with a failure flag.
        let refused = match channel {
            Channel::Telegram => json.as_ref().and_then(|j| j["ok"].as_bool()) == Some(false),
            Channel::Pushover => json.as_ref().and_then(|j| j["status"].as_i64()) != Some(1),
            _ => false,
        };
        return if refused {
            Outcome::permanent(format!("{status}: {excerpt}"))
        } else {
            Outcome::Sent
        };
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        let said = json.as_ref().and_then(|j| {
            j["retry_after"]
                .as_f64()
                .or_else(|| j["parameters"]["retry_after"].as_f64())
        });
        return Outcome::Transient {
            error: format!("{status}: {excerpt}"),
            retry_after: retry_after.or_else(|| said.map(Duration::from_secs_f64)),
        };
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Outcome::Transient {
            error: format!("{status}: {excerpt}"),
            retry_after,
        };
    }
    if status.is_redirection() {
        return Outcome::permanent(format!("{status}: redirects are not followed"));
    }
    Outcome::permanent(format!("{status}: {excerpt}"))
}

/// `Retry-After` in seconds (the HTTP-date form is not used by these services).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// A reqwest error's text without its URL (which may hold a token: Telegram's, Discord's).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// The webhook's `data`: the message's facts plus its human-readable text.
fn webhook_data(message: &Message) -> Value {
    let mut data = message.data.clone();
    if !data.is_object() {
        data = json!({});
    }
    data["notification_type"] = json!(message.notification_type);
    data["subject"] = json!(message.title);
    data["message"] = json!(message.body);
    if let Some(link) = &message.url {
        data["url"] = json!(link);
    }
    if let Some(image) = &message.image_url {
        data["image_url"] = json!(image);
    }
    data
}

/// At most `max` characters of `s`, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `s` safe inside HTML text and attributes.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `s` safe in Slack's mrkdwn (its three control characters).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_status_and_the_services_own_flags() {
        let ok = StatusCode::OK;
        assert_eq!(classify(Channel::Slack, ok, None, "ok"), Outcome::Sent);
        assert!(matches!(
            classify(Channel::Telegram, ok, None, r#"{"ok":false}"#),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            classify(Channel::Pushover, ok, None, r#"{"status":0}"#),
            Outcome::Permanent { .. }
        ));
        assert_eq!(
            classify(
                Channel::Discord,
                StatusCode::TOO_MANY_REQUESTS,
                None,
                r#"{"retry_after":1.5}"#
            ),
            Outcome::Transient {
                error: r#"429 Too Many Requests: {"retry_after":1.5}"#.to_string(),
                retry_after: Some(Duration::from_millis(1500)),
            }
        );
        assert!(matches!(
            classify(Channel::Webhook, StatusCode::BAD_GATEWAY, None, ""),
            Outcome::Transient { .. }
        ));
        assert!(matches!(
            classify(Channel::Webhook, StatusCode::NOT_FOUND, None, ""),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            classify(Channel::Webhook, StatusCode::FOUND, None, ""),
            Outcome::Permanent { .. }
        ));
    }

    #[test]
    fn personal_addresses_are_checked_per_channel() {
        assert!(Channel::Discord.check_address("80351110224678912").is_ok());
        assert!(Channel::Discord.check_address("jane").is_err());
        assert!(Channel::Telegram.check_address("-1001234567890").is_ok());
        assert!(Channel::Telegram.check_address("@medianest_bot").is_ok());
        assert!(Channel::Ntfy.check_address("household-alerts").is_ok());
        assert!(Channel::Ntfy.check_address("a/b").is_err());
        assert!(Channel::Pushover
            .check_address("uQiRzpo4DXghDmr9QzzfQu27cmVRsG")
            .is_ok());
        assert_eq!(
            Channel::Slack.check_address("x").unwrap_err().problem,
            ConfigProblem::NotAPersonalChannel
        );
        assert_eq!(
            Channel::Email
                .check_address("not an address")
                .unwrap_err()
                .problem,
            ConfigProblem::InvalidEmail
        );
    }

    #[tokio::test]
    async fn destinations_must_be_https_and_public_unless_allow_listed() {
        let policy = DestinationPolicy::new(&["127.0.0.1".to_string()]);
        assert!(policy
            .check_url("url", "http://127.0.0.1:9/hook")
            .await
            .is_ok());
        let strict = DestinationPolicy::default();
        for (url, problem) in [
            (
                "http://203.0.113.9/hook",
                ConfigProblem::InsecureDestination,
            ),
            ("https://127.0.0.1/hook", ConfigProblem::PrivateDestination),
            ("https://10.1.2.3/hook", ConfigProblem::PrivateDestination),
            ("https://[::1]/hook", ConfigProblem::PrivateDestination),
            (
                "https://169.254.169.254/latest",
                ConfigProblem::PrivateDestination,
            ),
            (
                "https://user:pw@example.com/",
                ConfigProblem::InvalidChannelSettings,
            ),
            ("not a url", ConfigProblem::InvalidChannelSettings),
        ] {
            assert_eq!(
                strict.check_url("url", url).await.unwrap_err().problem,
                problem,
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn a_destination_refused_at_send_time_is_a_permanent_failure() {
        // Saved while 127.0.0.1 was allow-listed; the allow-list no longer names it.
        let sender = Sender::new(DestinationPolicy::default(), Duration::from_secs(1));
        let config = ChannelConfig::Webhook(
            WebhookSettings {
                url: "http://127.0.0.1:9/hook".to_string(),
            },
            Secrets::default()
                .merged(&json!({"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}))
                .unwrap(),
        );
        let message = Message {
            notification_type: "test".to_string(),
            title: "t".to_string(),
            body: "b".to_string(),
            url: None,
            image_url: None,
            time: "2026-12-07T00:00:00Z".to_string(),
            data: json!({}),
        };
        match sender.send(&config, To::Household, &message, "1").await {
            Outcome::Permanent { error } => {
                assert!(error.contains("destination refused"), "{error}")
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn the_webhook_signature_follows_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (spec/standard-webhooks.md,
        // "Signature scheme"): secret `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, id
        // `msg_p5jXN8AQM9LWM0D4loKWxJek`, timestamp 1614265330 and body
        // `{"test": 2432232314}`.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign_webhook(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
