//! One HTTP server standing in for the push services MediaNest notifies, for tests: Discord,
//! Slack, Telegram, ntfy, Gotify, Pushover and a plain webhook receiver. Each route checks a
//! call against the service's documented rules and answers a malformed one as the service
//! would (its status and error body), recording a violation the test can assert on:
//!
//! - Discord, "Execute Webhook" (discord.com/developers/docs/resources/webhook#execute-webhook;
//!   limits from docs/resources/message#embed-object-embed-limits): `POST
//!   /discord/api/webhooks/{id}/{token}`, JSON with `content` (≤ 2,000 characters) and/or
//!   `embeds` (≤ 10; title ≤ 256, description ≤ 4,096, ≤ 25 fields, ≤ 6,000 characters in all);
//!   204, or 200 with the message under `?wait=true`; 400 `{"code":50006}` for an empty message,
//!   `{"code":50035,"message":"Invalid Form Body"}` otherwise.
//! - Slack incoming webhooks (api.slack.com/messaging/webhooks): `POST
//!   /slack/services/{t}/{b}/{x}`, JSON with `text` or `blocks`; 200 `ok`; 400 `no_text` /
//!   `invalid_payload`.
//! - Telegram Bot API `sendMessage` (core.telegram.org/bots/api#sendmessage): `POST
//!   /telegram/bot{token}/sendMessage`, `chat_id` (integer or `@username`), `text` 1–4,096
//!   characters, `parse_mode` in `HTML`, `MarkdownV2`, `Markdown`; `{"ok":true,"result":…}`;
//!   400 / 401 `{"ok":false,"error_code":…,"description":…}`.
//! - ntfy, publish as JSON (docs.ntfy.sh/publish/#publish-as-json): `POST /ntfy/`, `topic`
//!   required (`[-_A-Za-z0-9]{1,64}`), `priority` 1–5, `tags` strings, `click`/`attach`/`icon`
//!   URLs; 200 with the message; 400 `{"code":40001,"http":400,"error":…}`.
//! - Gotify `POST /message` (gotify.net/api-docs, `createMessage`): `POST /gotify/message`
//!   with the application token in `X-Gotify-Key` (or `?token=`), `message` required, `title`,
//!   `priority` an integer, `extras` an object; 200 with the message; 401 without a token.
//! - Pushover (pushover.net/api): `POST /pushover/1/messages.json`, form-encoded `token` and
//!   `user` (30 letters and digits), `message` (≤ 1,024), `title` (≤ 250), `url` (≤ 512),
//!   `url_title` (≤ 100); `{"status":1,"request":…}`; 400 `{"status":0,"errors":[…]}`.
//! - `POST /webhook/{name}`: any body, recorded as it came (the signed webhook; check it with
//!   [`verify_standard_webhook`]).
//!
//! Every call is recorded ([`NotifySim::received`]) with the status answered, also calls
//! answered by an injected [`Fault`] (an outage, a 404 for a revoked webhook, a 429, a hang).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// A simulated service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Discord's Execute Webhook.
    Discord,
    /// Slack's incoming webhooks.
    Slack,
    /// Telegram's Bot API.
    Telegram,
    /// An ntfy server.
    Ntfy,
    /// A Gotify server.
    Gotify,
    /// Pushover's API.
    Pushover,
    /// A plain webhook receiver.
    Webhook,
}

/// What a service answers instead of doing its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Work normally.
    None,
    /// Answer this status with a short text body (503: down; 404: an unknown webhook).
    Status(u16),
    /// 429 with `Retry-After` (and the service's own JSON form of it).
    TooManyRequests {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// Never answer (the call is held for a minute).
    Hang,
}

/// One call as it came, with the status answered.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path, e.g. `/discord/api/webhooks/1/token`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: Bytes,
    /// The status answered (for a hung call: 0 until it is given up).
    pub status: u16,
}

impl Received {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as form fields.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

#[derive(Default)]
struct Inner {
    received: HashMap<Service, Vec<Received>>,
    violations: Vec<String>,
    faults: HashMap<Service, Fault>,
    telegram_token: Option<String>,
}

type Shared = Arc<Mutex<Inner>>;

/// The running simulator (stops when dropped).
pub struct NotifySim {
    addr: SocketAddr,
    inner: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for NotifySim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl NotifySim {
    /// Starts the simulator on `127.0.0.1` (a free port).
    ///
    /// # Panics
    /// When it cannot listen.
    pub async fn start() -> Self {
        let inner: Shared = Arc::default();
        let app = Router::new()
            .route("/discord/api/webhooks/{id}/{token}", post(discord))
            .route("/slack/services/{t}/{b}/{x}", post(slack))
            .route("/telegram/{bot}/sendMessage", post(telegram))
            .route("/ntfy/", post(ntfy))
            .route("/gotify/message", post(gotify))
            .route("/pushover/1/messages.json", post(pushover))
            .route("/webhook/{name}", post(webhook))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the notification simulator");
        let addr = listener.local_addr().expect("an address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            inner,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every call to `service` so far, in order.
    pub fn received(&self, service: Service) -> Vec<Received> {
        self.lock()
            .received
            .get(&service)
            .cloned()
            .unwrap_or_default()
    }

    /// Why calls were refused as malformed.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Makes `service` answer with `fault` from now on.
    pub fn set_fault(&self, service: Service, fault: Fault) {
        self.lock().faults.insert(service, fault);
    }

    /// Accepts only this Telegram bot token (default: any well-formed token).
    pub fn expect_telegram_token(&self, token: &str) {
        self.lock().telegram_token = Some(token.to_string());
    }

    /// Waits until `service` has been called `n` times (at most `timeout`); answers the calls.
    ///
    /// # Panics
    /// When it is not, with what was received.
    pub async fn wait_for(&self, service: Service, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let calls = self.received(service);
            if calls.len() >= n {
                return calls;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{service:?} got {} calls, not {n}, within {timeout:?}: {calls:?}; violations {:?}",
                calls.len(),
                self.violations()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("simulator state")
    }
}

/// Records a call, applies the fault, or runs `check` and answers what it says.
async fn handle(
    inner: &Shared,
    service: Service,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    check: impl FnOnce(&Inner) -> Check,
) -> Response {
    let fault = inner
        .lock()
        .expect("state")
        .faults
        .get(&service)
        .copied()
        .unwrap_or(Fault::None);
    let index = {
        let mut state = inner.lock().expect("state");
        let calls = state.received.entry(service).or_default();
        calls.push(Received {
            path,
            query,
            headers,
            body,
            status: 0,
        });
        calls.len() - 1
    };
    let response = match fault {
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Fault::Status(status) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            format!("simulated {status}"),
        )
            .into_response(),
        Fault::TooManyRequests { retry_after_secs } => {
            let body = match service {
                Service::Discord => {
                    json!({"message": "You are being rate limited.", "retry_after": retry_after_secs as f64, "global": false})
                }
                Service::Telegram => {
                    json!({"ok": false, "error_code": 429, "description": format!("Too Many Requests: retry after {retry_after_secs}"), "parameters": {"retry_after": retry_after_secs}})
                }
                _ => json!({"error": "too many requests"}),
            };
            let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
            response.headers_mut().insert(
                "retry-after",
                HeaderValue::from_str(&retry_after_secs.to_string()).expect("a number"),
            );
            response
        }
        Fault::None => {
            let state = inner.lock().expect("state");
            match check(&state) {
                Ok(response) => response,
                Err(refused) => {
                    let (response, violation) = *refused;
                    drop(state);
                    inner
                        .lock()
                        .expect("state")
                        .violations
                        .push(format!("{service:?}: {violation}"));
                    response
                }
            }
        }
    };
    if let Some(call) = inner
        .lock()
        .expect("state")
        .received
        .get_mut(&service)
        .and_then(|calls| calls.get_mut(index))
    {
        call.status = response.status().as_u16();
    }
    response
}

/// A route's verdict: the answer, or the refusal and why (boxed: a response is large).
type Check = Result<Response, Box<(Response, String)>>;

fn refuse(status: StatusCode, body: Value, why: impl Into<String>) -> Check {
    Err(Box::new((
        (status, axum::Json(body)).into_response(),
        why.into(),
    )))
}

fn chars(value: &Value) -> usize {
    value.as_str().map_or(0, |s| s.chars().count())
}

fn json_body(body: &Bytes) -> Option<serde_json::Map<String, Value>> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.as_object().cloned())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

async fn discord(
    State(inner): State<Shared>,
    Path((_id, _token)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = uri.query().map(str::to_string);
    let wait = query.as_deref().is_some_and(|q| q.contains("wait=true"));
    let checked = body.clone();
    let json_ct = is_json(&headers);
    handle(&inner, Service::Discord, uri.path().to_string(), query, headers, body, move |_| {
        let invalid = |why: String| {
            refuse(
                StatusCode::BAD_REQUEST,
                json!({"code": 50035, "message": "Invalid Form Body", "errors": {"_errors": [{"message": why.clone()}]}}),
                why,
            )
        };
        if !json_ct {
            return invalid("Content-Type is not application/json".to_string());
        }
        let Some(message) = json_body(&checked) else {
            return invalid("the body is not a JSON object".to_string());
        };
        let content = message.get("content").cloned().unwrap_or(Value::Null);
        let embeds = message
            .get("embeds")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if chars(&content) == 0 && embeds.is_empty() {
            return refuse(
                StatusCode::BAD_REQUEST,
                json!({"code": 50006, "message": "Cannot send an empty message"}),
                "an empty message",
            );
        }
        if chars(&content) > 2000 {
            return invalid("content over 2000 characters".to_string());
        }
        if embeds.len() > 10 {
            return invalid("more than 10 embeds".to_string());
        }
        let mut total = 0;
        for embed in &embeds {
            let (title, description) = (chars(&embed["title"]), chars(&embed["description"]));
            if title > 256 || description > 4096 {
                return invalid("embed title over 256 or description over 4096".to_string());
            }
            let fields = embed["fields"].as_array().cloned().unwrap_or_default();
            if fields.len() > 25 {
                return invalid("more than 25 embed fields".to_string());
            }
            total += title + description;
            for field in &fields {
                total += chars(&field["name"]) + chars(&field["value"]);
            }
            if !embed["color"].is_null() && !embed["color"].is_u64() {
                return invalid("embed color is not an integer".to_string());
            }
            if let Some(time) = embed["timestamp"].as_str() {
                if chrono::DateTime::parse_from_rfc3339(time).is_err() {
                    return invalid("embed timestamp is not ISO 8601".to_string());
                }
            }
        }
        if total > 6000 {
            return invalid("embeds over 6000 characters".to_string());
        }
        if let Some(mentions) = message.get("allowed_mentions") {
            if !mentions.is_object() {
                return invalid("allowed_mentions is not an object".to_string());
            }
        }
        Ok(if wait {
            axum::Json(json!({"id": "1", "content": content, "embeds": embeds})).into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        })
    })
    .await
}

async fn slack(
    State(inner): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let checked = body.clone();
    handle(
        &inner,
        Service::Slack,
        uri.path().to_string(),
        None,
        headers,
        body,
        move |_| {
            let plain = |status: StatusCode, text: &'static str| {
                Err(Box::new(((status, text).into_response(), text.to_string())))
            };
            let Some(message) = json_body(&checked) else {
                return plain(StatusCode::BAD_REQUEST, "invalid_payload");
            };
            let blocks_ok = message.get("blocks").is_none_or(Value::is_array);
            if !blocks_ok {
                return plain(StatusCode::BAD_REQUEST, "invalid_blocks");
            }
            if chars(message.get("text").unwrap_or(&Value::Null)) == 0
                && message.get("blocks").is_none()
            {
                return plain(StatusCode::BAD_REQUEST, "no_text");
            }
            Ok((StatusCode::OK, "ok").into_response())
        },
    )
    .await
}

async fn telegram(
    State(inner): State<Shared>,
    Path(bot): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let checked = body.clone();
    handle(
        &inner,
        Service::Telegram,
        uri.path().to_string(),
        None,
        headers,
        body,
        move |state| {
            let error = |status: StatusCode, description: &str| {
                refuse(
                    status,
                    json!({"ok": false, "error_code": status.as_u16(), "description": description}),
                    description.to_string(),
                )
            };
            let token = bot.strip_prefix("bot").unwrap_or_default();
            let well_formed = token.split_once(':').is_some_and(|(id, key)| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && key.len() >= 30
            });
            if !well_formed || state.telegram_token.as_deref().is_some_and(|t| t != token) {
                return error(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
            let Some(message) = json_body(&checked) else {
                return error(StatusCode::BAD_REQUEST, "Bad Request: invalid JSON");
            };
            let chat = message.get("chat_id").cloned().unwrap_or(Value::Null);
            if !(chat.is_i64() || chat.as_str().is_some_and(|s| s.starts_with('@'))) {
                return error(StatusCode::BAD_REQUEST, "Bad Request: chat not found");
            }
            let text = chars(message.get("text").unwrap_or(&Value::Null));
            if text == 0 {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: message text is empty",
                );
            }
            if text > 4096 {
                return error(StatusCode::BAD_REQUEST, "Bad Request: message is too long");
            }
            if let Some(mode) = message.get("parse_mode") {
                if !matches!(mode.as_str(), Some("HTML" | "MarkdownV2" | "Markdown")) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "Bad Request: unsupported parse_mode",
                    );
                }
            }
            Ok(axum::Json(json!({"ok": true, "result": {
            "message_id": 1, "chat": {"id": chat}, "date": now_secs(), "text": message.get("text")
        }}))
        .into_response())
        },
    )
    .await
}

async fn ntfy(
    State(inner): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let checked = body.clone();
    handle(
        &inner,
        Service::Ntfy,
        uri.path().to_string(),
        None,
        headers,
        body,
        move |_| {
            let error = |why: &str| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    json!({"code": 40001, "http": 400, "error": why}),
                    why.to_string(),
                )
            };
            let Some(message) = json_body(&checked) else {
                return error("invalid request: request body must be message JSON");
            };
            let topic = message
                .get("topic")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if topic.is_empty()
                || topic.len() > 64
                || !topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return error("invalid request: topic invalid");
            }
            if let Some(priority) = message.get("priority") {
                if !priority.as_u64().is_some_and(|p| (1..=5).contains(&p)) {
                    return error("invalid priority");
                }
            }
            if let Some(tags) = message.get("tags") {
                if !tags
                    .as_array()
                    .is_some_and(|t| t.iter().all(Value::is_string))
                {
                    return error("invalid request: tags must be strings");
                }
            }
            for field in ["click", "attach", "icon"] {
                if let Some(url) = message.get(field) {
                    if url.as_str().is_none_or(|u| reqwest::Url::parse(u).is_err()) {
                        return error("invalid request: not a URL");
                    }
                }
            }
            Ok(axum::Json(
                json!({"id": "sim", "time": now_secs(), "event": "message", "topic": topic,
            "title": message.get("title"), "message": message.get("message")}),
            )
            .into_response())
        },
    )
    .await
}

async fn gotify(
    State(inner): State<Shared>,
    RawQuery(query): RawQuery,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let checked = body.clone();
    let token = headers
        .get("x-gotify-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            query.as_deref().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v.into_owned())
            })
        });
    handle(&inner, Service::Gotify, uri.path().to_string(), query.clone(), headers, body, move |_| {
        if token.is_none_or(|t| t.is_empty()) {
            return refuse(
                StatusCode::UNAUTHORIZED,
                json!({"error": "Unauthorized", "errorCode": 401, "errorDescription": "you need to provide a valid access token or user credentials to access this api"}),
                "no application token",
            );
        }
        let error = |why: &str| {
            refuse(
                StatusCode::BAD_REQUEST,
                json!({"error": "Bad Request", "errorCode": 400, "errorDescription": why}),
                why.to_string(),
            )
        };
        let Some(message) = json_body(&checked) else {
            return error("invalid JSON");
        };
        if chars(message.get("message").unwrap_or(&Value::Null)) == 0 {
            return error("Field 'message' is required");
        }
        if message.get("priority").is_some_and(|p| !p.is_i64()) {
            return error("Field 'priority' must be an integer");
        }
        if message.get("extras").is_some_and(|e| !e.is_object()) {
            return error("Field 'extras' must be an object");
        }
        Ok(axum::Json(json!({"id": 1, "appid": 1, "message": message.get("message"),
            "title": message.get("title"), "priority": message.get("priority"), "date": chrono::Utc::now()}))
        .into_response())
    })
    .await
}

async fn pushover(
    State(inner): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let checked = body.clone();
    let form_ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    handle(
        &inner,
        Service::Pushover,
        uri.path().to_string(),
        None,
        headers,
        body,
        move |_| {
            let error = |field: &str, why: &str| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    json!({field: "invalid", "errors": [why], "status": 0, "request": "sim"}),
                    why.to_string(),
                )
            };
            if !form_ct {
                return error("message", "the body is not form-encoded");
            }
            let form: HashMap<String, String> =
                form_urlencoded::parse(&checked).into_owned().collect();
            let key = |s: Option<&String>| {
                s.is_some_and(|k| k.len() == 30 && k.bytes().all(|b| b.is_ascii_alphanumeric()))
            };
            if !key(form.get("token")) {
                return error("token", "application token is invalid");
            }
            if !key(form.get("user")) {
                return error("user", "user identifier is invalid");
            }
            let len = |f: &str| form.get(f).map_or(0, |v| v.chars().count());
            if len("message") == 0 {
                return error("message", "message cannot be blank");
            }
            for (field, max) in [
                ("message", 1024),
                ("title", 250),
                ("url", 512),
                ("url_title", 100),
            ] {
                if len(field) > max {
                    return error(field, "too long");
                }
            }
            Ok(axum::Json(json!({"status": 1, "request": "sim"})).into_response())
        },
    )
    .await
}

async fn webhook(
    State(inner): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(
        &inner,
        Service::Webhook,
        uri.path().to_string(),
        uri.query().map(str::to_string),
        headers,
        body,
        |_| Ok(StatusCode::NO_CONTENT.into_response()),
    )
    .await
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Verifies a Standard Webhooks signature (standardwebhooks.com, `spec/standard-webhooks.md`,
/// "Verifying"), written from the specification independently of MediaNest's signer: the key
/// is the base64 after `whsec_`; the signed content `{webhook-id}.{webhook-timestamp}.{body}`;
/// `webhook-signature` a space-separated list of `v1,<base64 HMAC-SHA256>`, one of which must
/// match; the timestamp within `tolerance` of `now`.
///
/// # Errors
/// Why it does not verify.
pub fn verify_standard_webhook(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("no {name} header"))
    };
    let (id, timestamp, signatures) = (
        header("webhook-id")?,
        header("webhook-timestamp")?,
        header("webhook-signature")?,
    );
    let sent: u64 = timestamp
        .parse()
        .map_err(|_| format!("webhook-timestamp {timestamp:?} is not a number"))?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if now.abs_diff(sent) > tolerance.as_secs() {
        return Err(format!("timestamp {sent} is too far from now ({now})"));
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(
            secret
                .strip_prefix("whsec_")
                .ok_or("the secret has no whsec_ prefix")?,
        )
        .map_err(|e| format!("the secret is not base64: {e}"))?;
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    for signature in signatures.split(' ') {
        let Some(encoded) = signature.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
        mac.update(&content);
        if mac.verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(format!("no signature in {signatures:?} matches"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_example_verifies_and_a_changed_body_does_not() {
        // spec/standard-webhooks.md, "Signature scheme" example.
        let mut headers = HeaderMap::new();
        headers.insert(
            "webhook-id",
            HeaderValue::from_static("msg_p5jXN8AQM9LWM0D4loKWxJek"),
        );
        headers.insert("webhook-timestamp", HeaderValue::from_static("1614265330"));
        headers.insert(
            "webhook-signature",
            HeaderValue::from_static("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        );
        let at = UNIX_EPOCH + Duration::from_secs(1_614_265_330);
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let tolerance = Duration::from_secs(300);
        verify_standard_webhook(secret, &headers, br#"{"test": 2432232314}"#, at, tolerance)
            .expect("verifies");
        assert!(
            verify_standard_webhook(secret, &headers, br#"{"test": 1}"#, at, tolerance).is_err()
        );
        let late = at + Duration::from_secs(600);
        assert!(verify_standard_webhook(
            secret,
            &headers,
            br#"{"test": 2432232314}"#,
            late,
            tolerance
        )
        .is_err());
    }
}
