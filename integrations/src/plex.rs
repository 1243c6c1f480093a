//! Async clients for plex.tv (PIN sign-in, the account, its servers) and for a Plex Media
//! Server's identity.
//!
//! This module owns the wire shapes and the HTTP calls of MediaNest's Plex sign-in and of the
//! check that a configured Plex Media Server (PMS) answers with the expected identity
//! (`docs/design.md` §6, "Contracts"): create a PIN with
//! `POST {plex.tv}/api/v2/pins?strong=true`, send the user to [`PlexTvClient::auth_url`],
//! poll `GET /api/v2/pins/{id}` until `authToken` is set, then read the account with
//! `GET /api/v2/user` and its servers with `GET /api/v2/resources`; and read a PMS's
//! `MediaContainer` as JSON (`Accept: application/json`): its identity (`GET /`), its library
//! sections (`GET /library/sections`), for the Plex scanner a section scan
//! (`GET /library/sections/{key}/refresh?path=…`), and for the library sync the content of a
//! section, one page at a time ([`PmsClient::section_items`]:
//! `GET /library/sections/{key}/all?type=…&includeGuids=1`, paged with
//! `X-Plex-Container-Start`/`-Size`, optionally only what was added since a time).
//!
//! plex.tv publishes no machine-readable contract. The shapes follow Plex's own guide
//! "Authenticating with Plex" (forums.plex.tv/t/609370: the PIN flow, the `app.plex.tv/auth#?`
//! URL, `GET /api/v2/user` answering 200 or 401), and where it is silent the clients that have
//! used the API for years: python-plexapi (`plexapi/myplex.py`: `MyPlexPinLogin`,
//! `MyPlexResource` with `https://plex.tv/api/v2/resources?includeHttps=1&includeRelay=1`),
//! Overseerr (`src/utils/plex.ts`, `server/api/plexapi.ts`, `server/routes/settings`), and the
//! recorded plex.tv answers of the `plex-api` crate's test mocks (`pins_new.json`,
//! `pins_linked.json`, `resources.json`, `user_info_free.json`). The PMS library calls follow
//! python-plexapi `plexapi/library.py` (`Library.sections()`, `LibrarySection.update(path=)`,
//! `search(libtype='season')`, `totalViewSize()`; `plexapi/base.py` `fetchItems` for paging)
//! and Overseerr's `server/api/plexapi.ts` (`getLibraries()`, `getLibraryContents()`,
//! `getRecentlyAdded()`); the library listing's shapes also follow the community OpenAPI
//! document `plex-media-server.yaml` in the contracts directory (`MEDIANEST_CONTRACTS_DIR`,
//! default `../shared/contracts`; `/library/sections/{sectionId}/all`,
//! `MediaContainerWithMetadata`, `Metadata`, `Guid`, `Media`), which PMS itself does not
//! publish. plex.tv's error bodies are
//! `{"errors": [{"code": <n>, "message": <text>, "status": <http status>}]}`.
//!
//! Invariants:
//! - every call carries the `X-Plex-*` identification headers of [`PlexClientInfo`] and
//!   `Accept: application/json`, and is bounded by the configured timeout;
//! - tokens (`X-Plex-Token`, a PIN's `authToken`) are marked sensitive on the wire, never
//!   logged, never shown by `Debug` and scrubbed from error texts; redirects are only followed
//!   to the same host (and never from https to http), so a token cannot be forwarded elsewhere;
//! - the clients never retry: callers (sign-in handlers, sagas) own retries, backoff and the
//!   circuit breaker, and every failure is a [`PlexError`] whose
//!   [`is_retryable`](PlexError::is_retryable) says whether trying again can help;
//! - answers are read leniently: unknown fields are ignored, and `null` is accepted wherever a
//!   value is optional; a library item that cannot be used (no `ratingKey`, not an object) is
//!   skipped rather than failing its page, and odd external ids (`tmdb://abc`) read as none.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{redirect, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::cause::error_chain;

/// plex.tv's base URL, the default of [`PlexTvConfig::base_url`].
pub const PLEX_TV_URL: &str = "https://plex.tv";

/// The page of Plex's auth app that [`PlexTvClient::auth_url`] points at. The parameters go in
/// the fragment, after `#?` (Plex's guide, "Construct the Auth App URL").
pub const PLEX_AUTH_APP_URL: &str = "https://app.plex.tv/auth";

/// Timeout of [`PlexTvConfig::new`] and [`PmsConfig::new`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Header carrying a plex.tv or PMS token.
const X_PLEX_TOKEN: &str = "x-plex-token";

/// Longest excerpt of an unexpected response body kept in an error.
const MAX_BODY_EXCERPT: usize = 512;

/// Most redirects followed (same host only).
const MAX_REDIRECTS: usize = 5;

/// Service names used in error texts.
const PLEX_TV: &str = "plex.tv";
const PMS: &str = "Plex Media Server";

/// How MediaNest introduces itself to plex.tv and to a PMS.
///
/// Sent on every call as `X-Plex-Client-Identifier`, `X-Plex-Product`, `X-Plex-Version`,
/// `X-Plex-Platform`, `X-Plex-Device` and `X-Plex-Device-Name`. plex.tv lists the app under the
/// account's *Authorized Devices* by product and device name, and binds PINs to the client
/// identifier: the identifier must be generated once per installation, stored, and reused on
/// every call — a PIN created under one identifier cannot be read under another.
///
/// Every value must be a valid HTTP header value (visible ASCII); the identifier and the
/// product must not be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlexClientInfo {
    /// `X-Plex-Client-Identifier`: this installation's stable, unique id (a UUID is fine; Plex
    /// sets no format).
    pub client_identifier: String,
    /// `X-Plex-Product`: the app name shown to the user, e.g. `MediaNest`.
    pub product: String,
    /// `X-Plex-Version`: the app version, e.g. `0.1.0`.
    pub version: String,
    /// `X-Plex-Platform`: the platform, e.g. `Linux`.
    pub platform: String,
    /// `X-Plex-Device`: the kind of device, e.g. `Server`.
    pub device: String,
    /// `X-Plex-Device-Name`: a friendly name for this installation, e.g. `MediaNest`.
    pub device_name: String,
}

impl PlexClientInfo {
    /// MediaNest's identification with the given stored `client_identifier`: product
    /// `MediaNest`, this crate's version, the build's OS as platform (`linux` → `Linux`),
    /// device `Server` and device name `MediaNest`.
    pub fn medianest(client_identifier: impl Into<String>) -> Self {
        let os = std::env::consts::OS;
        let mut platform = String::with_capacity(os.len());
        let mut chars = os.chars();
        if let Some(first) = chars.next() {
            platform.extend(first.to_uppercase());
            platform.extend(chars);
        }
        Self {
            client_identifier: client_identifier.into(),
            product: "MediaNest".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            platform,
            device: "Server".to_string(),
            device_name: "MediaNest".to_string(),
        }
    }

    /// The identification headers plus `Accept: application/json`.
    fn headers(&self) -> Result<HeaderMap, PlexError> {
        if self.client_identifier.trim().is_empty() {
            return Err(PlexError::Config(
                "the X-Plex-Client-Identifier is empty".to_string(),
            ));
        }
        if self.product.trim().is_empty() {
            return Err(PlexError::Config("the X-Plex-Product is empty".to_string()));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-plex-client-identifier", &self.client_identifier),
            ("x-plex-product", &self.product),
            ("x-plex-version", &self.version),
            ("x-plex-platform", &self.platform),
            ("x-plex-device", &self.device),
            ("x-plex-device-name", &self.device_name),
        ] {
            let value = HeaderValue::from_str(value).map_err(|_| {
                PlexError::Config(format!(
                    "{name} is not a valid header value (visible ASCII only): {value:?}"
                ))
            })?;
            headers.insert(HeaderName::from_static(name), value);
        }
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        Ok(headers)
    }
}

/// Where and how to reach plex.tv.
#[derive(Debug, Clone)]
pub struct PlexTvConfig {
    /// plex.tv's base URL without `/api/v2` — [`PLEX_TV_URL`] in production, a simulator in
    /// tests. May carry a path prefix (a proxy); must not carry a query or fragment.
    pub base_url: Url,
    /// How MediaNest introduces itself (headers of every call, parameters of
    /// [`PlexTvClient::auth_url`]).
    pub client: PlexClientInfo,
    /// Upper bound for one whole call (connect, send, read the answer). Must not be zero.
    pub timeout: Duration,
}

impl PlexTvConfig {
    /// The production configuration: [`PLEX_TV_URL`] and [`DEFAULT_TIMEOUT`] (10 s).
    #[expect(clippy::expect_used, reason = "PLEX_TV_URL is a constant, valid URL")]
    pub fn new(client: PlexClientInfo) -> Self {
        Self {
            base_url: Url::parse(PLEX_TV_URL).expect("PLEX_TV_URL is a valid URL"),
            client,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Why a call to plex.tv or to a PMS failed.
///
/// Callers match on the variant; [`PlexError::is_retryable`] says whether trying again later
/// can help. No variant ever contains a token.
#[derive(Debug, thiserror::Error)]
pub enum PlexError {
    /// HTTP 404. From `GET /api/v2/pins/{id}`: the PIN does not exist, has expired (plex.tv
    /// keeps a PIN for its `expiresIn`, 30 minutes for strong PINs) or was created under
    /// another client identifier — start over with a new PIN. From a PMS (an HTML page):
    /// e.g. [`PmsClient::refresh_section`] of a section key the server does not have — find
    /// the section again. Not retryable.
    #[error("not found")]
    NotFound,
    /// HTTP 401: the token is wrong, expired or revoked (plex.tv:
    /// `{"errors": [{"code": 1001, "message": "User could not be authenticated"}]}`; PMS: an
    /// HTML page). Sign in again / fix the configured token. Not retryable.
    #[error("the Plex token was refused")]
    Unauthorized,
    /// No usable answer now: timeout, connection refused or broken, HTTP 408, 429 (plex.tv's
    /// rate limit, error code 1003) or 5xx. The text says which and is safe to log.
    /// Retryable.
    #[error("Plex is unavailable: {0}")]
    Unavailable(String),
    /// Any other unexpected status: other 4xx (e.g. plex.tv's 400 error code 1000,
    /// "X-Plex-Client-Identifier is missing"), or a redirect the client would not follow.
    /// `body` is an excerpt of the answer (at most 512 characters, tokens scrubbed). Not
    /// retryable: the same call gets the same answer.
    #[error("Plex answered HTTP {status}: {body}")]
    Rejected {
        /// The HTTP status code.
        status: u16,
        /// Excerpt of the answer body.
        body: String,
    },
    /// A success answer that is not the expected JSON (e.g. XML because a proxy dropped the
    /// `Accept` header, or a PMS root without `machineIdentifier`). The text names the
    /// problem without quoting string values. Not retryable.
    #[error("unexpected answer from Plex: {0}")]
    Decode(String),
    /// The configuration cannot be used: base URL not http(s) or with a query or fragment,
    /// empty or non-ASCII header values, empty PMS token, zero timeout. Not retryable.
    #[error("invalid Plex configuration: {0}")]
    Config(String),
}

impl PlexError {
    /// Whether the same call may succeed later: only [`PlexError::Unavailable`].
    pub fn is_retryable(&self) -> bool {
        matches!(self, PlexError::Unavailable(_))
    }
}

/// A plex.tv PIN (`POST /api/v2/pins`, `GET /api/v2/pins/{id}`), with the fields MediaNest
/// needs.
///
/// The wire object also has `product`, `trusted`, `qr`, `clientIdentifier`, `location`,
/// `expiresIn` (seconds left), `createdAt` and `newRegistration`; they are ignored. `Debug`
/// shows `auth_token` as `<redacted>`; `Serialize` writes it (as `authToken`), so a serialised
/// pin must be treated as a secret.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PlexPin {
    /// `id`: what [`PlexTvClient::pin`] takes (a large integer, e.g. `308667304`).
    pub id: u64,
    /// `code`: what the user authorises in Plex's auth app — 25 lower-case letters and digits
    /// for the strong PINs [`PlexTvClient::create_pin`] asks for (a 4-character code is the
    /// plex.tv/link kind).
    pub code: String,
    /// `authToken`: `null` until the user has authorised the PIN, then the account's token for
    /// this client. An empty string is read as `None`.
    #[serde(
        rename = "authToken",
        default,
        deserialize_with = "non_empty_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_token: Option<String>,
    /// `expiresAt`: when plex.tv forgets the PIN (UTC; sent as `2024-07-16T17:18:05Z`). Epoch
    /// seconds are accepted too; `None` when absent or unreadable.
    #[serde(rename = "expiresAt", default, deserialize_with = "lenient_timestamp")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for PlexPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlexPin")
            .field("id", &self.id)
            .field("code", &self.code)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl PlexPin {
    /// Whether the user has authorised the PIN (`authToken` is set).
    pub fn is_authorized(&self) -> bool {
        self.auth_token.is_some()
    }
}

/// The plex.tv account of a token (`GET /api/v2/user`), with the fields MediaNest needs.
///
/// The wire object also has the account's `authToken` (not kept), `friendlyName`, `locale`,
/// `confirmed`, `subscription`, `home`, `restricted` and many more; they are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlexUser {
    /// `id`: the account's numeric plex.tv id (what PMS and Overseerr call the Plex id).
    pub id: u64,
    /// `uuid`: the account's hexadecimal id (16 characters), as in its avatar URL.
    #[serde(default, deserialize_with = "null_as_default")]
    pub uuid: String,
    /// `username`: the plex.tv user name (for accounts created by e-mail, often the e-mail).
    #[serde(default, deserialize_with = "null_as_default")]
    pub username: String,
    /// `email`: the account's e-mail address, when plex.tv shares it.
    #[serde(default)]
    pub email: Option<String>,
    /// `thumb`: avatar URL, e.g. `https://plex.tv/users/<uuid>/avatar?c=<n>`.
    #[serde(default)]
    pub thumb: Option<String>,
    /// `title`: display name (the username unless the user set another).
    #[serde(default)]
    pub title: Option<String>,
}

/// One device of the account (`GET /api/v2/resources`): a PMS the account owns or that is
/// shared with it, or a player. The fields MediaNest needs.
///
/// The wire object also has `product` (`Plex Media Server` for servers), `productVersion`,
/// `accessToken` (a token for that server — deliberately not kept here), `connections`,
/// `ownerId`, `sourceTitle`, `presence` and more; they are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlexResource {
    /// `name`: the device's friendly name (a PMS's *Friendly name* setting).
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// `clientIdentifier`: the device's id — for a PMS its `machineIdentifier`, the value
    /// [`PmsClient::identity`] reads from the server itself.
    #[serde(
        rename = "clientIdentifier",
        default,
        deserialize_with = "null_as_default"
    )]
    pub client_identifier: String,
    /// `provides`: comma-separated roles, e.g. `server` for a PMS or
    /// `client,player,pubsub-player` for a player.
    #[serde(default, deserialize_with = "null_as_default")]
    pub provides: String,
    /// `owned`: whether the account owns the device (`false` for a server shared with it).
    #[serde(default, deserialize_with = "null_as_default")]
    pub owned: bool,
}

impl PlexResource {
    /// Whether the device is a Plex Media Server (`server` is one of the `provides` roles).
    pub fn is_server(&self) -> bool {
        self.provides.split(',').any(|role| role.trim() == "server")
    }
}

/// Client for plex.tv's `/api/v2`. Cheap to clone (one shared connection pool).
#[derive(Clone)]
pub struct PlexTvClient {
    http: reqwest::Client,
    base_url: Url,
    client: PlexClientInfo,
}

impl fmt::Debug for PlexTvClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlexTvClient")
            .field("base_url", &self.base_url.as_str())
            .field("client_identifier", &self.client.client_identifier)
            .finish_non_exhaustive()
    }
}

impl PlexTvClient {
    /// Builds a client for `cfg`.
    ///
    /// # Errors
    ///
    /// [`PlexError::Config`] when the base URL is not `http(s)` or has a query or fragment,
    /// when a [`PlexClientInfo`] value is not a valid header value (or the identifier or the
    /// product is empty), when the timeout is zero, or when the HTTP client cannot be built.
    pub fn new(cfg: PlexTvConfig) -> Result<Self, PlexError> {
        check_base_url(&cfg.base_url)?;
        let http = http_client(cfg.client.headers()?, cfg.timeout)?;
        Ok(Self {
            http,
            base_url: cfg.base_url,
            client: cfg.client,
        })
    }

    /// The `X-Plex-Client-Identifier` this client sends (PINs are bound to it).
    pub fn client_identifier(&self) -> &str {
        &self.client.client_identifier
    }

    /// Creates a strong PIN: `POST {base}/api/v2/pins?strong=true` (plex.tv answers 201 with
    /// the pin, `authToken` null, valid for `expiresIn` seconds). Send the user to
    /// [`auth_url`](Self::auth_url) with its `code`, then poll [`pin`](Self::pin) with its `id`.
    ///
    /// # Errors
    ///
    /// [`PlexError::Unavailable`] (timeout, connection, 408/429/5xx), [`PlexError::Rejected`]
    /// (other 4xx, e.g. 400 without a client identifier), [`PlexError::Decode`].
    #[tracing::instrument(name = "plex_tv.create_pin", skip_all)]
    pub async fn create_pin(&self) -> Result<PlexPin, PlexError> {
        let mut url = self.endpoint(&["pins"])?;
        url.query_pairs_mut().append_pair("strong", "true");
        let answer = send(PLEX_TV, self.http.post(url), None).await?;
        answer.success_json(PLEX_TV, "the new PIN")
    }

    /// Reads a PIN: `GET {base}/api/v2/pins/{id}` (200 with the pin). `auth_token` is `None`
    /// until the user has authorised it. Poll about once per second or two, and stop at
    /// `expires_at`.
    ///
    /// # Errors
    ///
    /// [`PlexError::NotFound`] when plex.tv answers 404 (`{"errors": [{"code": 1020,
    /// "message": "Code not found or expired"}]}`): unknown, expired, or created under another
    /// client identifier. Otherwise as [`create_pin`](Self::create_pin).
    #[tracing::instrument(name = "plex_tv.pin", skip(self))]
    pub async fn pin(&self, id: u64) -> Result<PlexPin, PlexError> {
        let url = self.endpoint(&["pins", &id.to_string()])?;
        let answer = send(PLEX_TV, self.http.get(url), None).await?;
        answer.success_json(PLEX_TV, "the PIN")
    }

    /// Reads the account of `token`: `GET {base}/api/v2/user` with `X-Plex-Token` (200 with
    /// the account; Plex's guide: 401 means the token is invalid). This is also how to check
    /// that a stored token is still valid.
    ///
    /// # Errors
    ///
    /// [`PlexError::Unauthorized`] on 401, and also without a call when `token` is empty or
    /// not a valid header value. Otherwise as [`create_pin`](Self::create_pin).
    #[tracing::instrument(name = "plex_tv.user", skip_all)]
    pub async fn user(&self, token: &str) -> Result<PlexUser, PlexError> {
        let url = self.endpoint(&["user"])?;
        let token_header = token_header(token)?;
        let request = self.http.get(url).header(X_PLEX_TOKEN, token_header);
        let answer = send(PLEX_TV, request, Some(token)).await?;
        answer.success_json(PLEX_TV, "the account")
    }

    /// Lists the account's devices:
    /// `GET {base}/api/v2/resources?includeHttps=1&includeRelay=1` with `X-Plex-Token` (200
    /// with a JSON array). Servers are those with [`PlexResource::is_server`]; a server whose
    /// `client_identifier` equals a PMS's [`PmsIdentity::machine_identifier`] is that PMS, and
    /// `owned` says whether the account owns it or has it shared.
    ///
    /// # Errors
    ///
    /// As [`user`](Self::user).
    #[tracing::instrument(name = "plex_tv.resources", skip_all)]
    pub async fn resources(&self, token: &str) -> Result<Vec<PlexResource>, PlexError> {
        let mut url = self.endpoint(&["resources"])?;
        url.query_pairs_mut()
            .append_pair("includeHttps", "1")
            .append_pair("includeRelay", "1");
        let token_header = token_header(token)?;
        let request = self.http.get(url).header(X_PLEX_TOKEN, token_header);
        let answer = send(PLEX_TV, request, Some(token)).await?;
        answer.success_json(PLEX_TV, "the resources")
    }

    /// The URL of Plex's auth app where the user signs in and authorises the PIN `code`:
    ///
    /// `https://app.plex.tv/auth#?clientID=<id>&code=<code>&context%5Bdevice%5D%5Bproduct%5D=<product>`
    /// and `&forwardUrl=<url>` when `forward_url` is given (the app sends the browser there
    /// afterwards). Values are percent-encoded like JavaScript's `encodeURIComponent` minus
    /// `!'()*` (only `A-Z a-z 0-9 - _ . ~` stay as they are; a space becomes `%20`). The URL is
    /// always Plex's [`PLEX_AUTH_APP_URL`], whatever [`PlexTvConfig::base_url`] is.
    pub fn auth_url(&self, code: &str, forward_url: Option<&str>) -> String {
        let mut url = format!(
            "{PLEX_AUTH_APP_URL}#?clientID={}&code={}&context%5Bdevice%5D%5Bproduct%5D={}",
            percent_encode(&self.client.client_identifier),
            percent_encode(code),
            percent_encode(&self.client.product),
        );
        if let Some(forward_url) = forward_url {
            url.push_str("&forwardUrl=");
            url.push_str(&percent_encode(forward_url));
        }
        url
    }

    /// `{base}/api/v2/<segments>`.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, PlexError> {
        join(&self.base_url, ["api", "v2"].iter().chain(segments))
    }
}

/// Where and how to reach a Plex Media Server.
#[derive(Clone)]
pub struct PmsConfig {
    /// The server's base URL, e.g. `http://plex:32400` or `https://host.example/plex`. Must not
    /// carry a query or fragment.
    pub base_url: Url,
    /// A token for this server, sent as `X-Plex-Token` (the owner's plex.tv token, or the
    /// server's `accessToken` from [`PlexTvClient::resources`]). Never shown by `Debug`.
    pub token: String,
    /// How MediaNest introduces itself.
    pub client: PlexClientInfo,
    /// Upper bound for one whole call. Must not be zero.
    pub timeout: Duration,
}

impl PmsConfig {
    /// A configuration with [`DEFAULT_TIMEOUT`] (10 s).
    pub fn new(base_url: Url, token: impl Into<String>, client: PlexClientInfo) -> Self {
        Self {
            base_url,
            token: token.into(),
            client,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl fmt::Debug for PmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PmsConfig")
            .field("base_url", &self.base_url.as_str())
            .field("token", &"<redacted>")
            .field("client", &self.client)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Who a Plex Media Server says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmsIdentity {
    /// `machineIdentifier`: the server's unique id (40 hex characters on real servers); equal
    /// to the `clientIdentifier` of the server in plex.tv's resources.
    pub machine_identifier: String,
    /// `version`: the PMS version, e.g. `1.41.3.9314-a0bfb8370`.
    pub version: Option<String>,
    /// `friendlyName`: the server's name as set in its settings.
    pub friendly_name: Option<String>,
}

/// One library section of a Plex Media Server: an element of `MediaContainer.Directory` in the
/// answer to `GET /library/sections` ([`PmsClient::library_sections`]).
///
/// On the wire (JSON, `Accept: application/json`):
///
/// ```json
/// {"MediaContainer": {"size": 1, "allowSync": false, "title1": "Plex Library",
///   "Directory": [{"key": "3", "type": "movie", "title": "YouTube",
///     "agent": "tv.plex.agents.none", "scanner": "Plex Video Files Scanner",
///     "language": "xn", "uuid": "…", "refreshing": false, "updatedAt": 1700000000,
///     "scannedAt": 1700000000, "Location": [{"id": 5, "path": "/data/youtube"}], …}]}}
/// ```
///
/// Other fields (`allowSync`, `art`, `composite`, `thumb`, `filters`, `refreshing`,
/// `language`, `uuid`, the timestamps, `hidden`, …) are ignored. An "Other Videos" library is
/// type `movie` with agent `tv.plex.agents.none` and scanner `Plex Video Files Scanner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibrarySection {
    /// `key`: the section id used in `/library/sections/{key}/…`, e.g. `"3"` (a string of
    /// digits on real servers; a JSON number is accepted too).
    #[serde(deserialize_with = "string_or_number")]
    pub key: String,
    /// `title`: the library's name as shown in Plex, e.g. `Movies`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub title: String,
    /// `type`: `movie`, `show`, `artist` or `photo`.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub section_type: String,
    /// `agent`: the metadata agent, e.g. `tv.plex.agents.movie` (`tv.plex.agents.none` for
    /// "Other Videos").
    #[serde(default)]
    pub agent: Option<String>,
    /// `scanner`: e.g. `Plex Movie` or `Plex Video Files Scanner`.
    #[serde(default)]
    pub scanner: Option<String>,
    /// `Location[].path`: the folders of the library, as the server sees them.
    #[serde(
        rename = "Location",
        default,
        deserialize_with = "location_paths",
        serialize_with = "serialize_location_paths"
    )]
    pub locations: Vec<String>,
}

/// Plex's metadata type numbers, sent as `type=` to choose what
/// [`PmsClient::section_items`] lists (1 movie, 2 show, 3 season, 4 episode).
///
/// Contract: `plex-media-server.yaml` (contracts directory), parameter `type` / schema
/// `MediaType`; python-plexapi `plexapi/utils.py` `SEARCHTYPES`. A movie section has only
/// type 1; a show section has 2, 3 and 4. Asking a section for a type it does not hold gives
/// an empty page, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// `type=1`: movies (items of `type` `movie`).
    Movie,
    /// `type=2`: shows (`type` `show`).
    Show,
    /// `type=3`: seasons (`type` `season`, with `index` and `parentRatingKey`).
    Season,
    /// `type=4`: episodes (`type` `episode`).
    Episode,
}

impl ItemKind {
    /// The number sent as `type=`: 1 movie, 2 show, 3 season, 4 episode.
    pub fn number(self) -> u8 {
        match self {
            ItemKind::Movie => 1,
            ItemKind::Show => 2,
            ItemKind::Season => 3,
            ItemKind::Episode => 4,
        }
    }
}

/// What [`PmsClient::section_items`] lists: one page of one kind of item of a section.
///
/// A full pass asks for `start` 0, `size`, 2 × `size`, … while
/// [`LibraryPage::has_more`] holds; a recently-added pass sets `added_since` and stops at the
/// same point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItems {
    /// `type=`: which kind of item to list.
    pub kind: ItemKind,
    /// `X-Plex-Container-Start`: the offset of the first item wanted (0-based).
    pub start: u64,
    /// `X-Plex-Container-Size`: how many items at most (the page size, e.g. 200). 0 asks for
    /// no item, only the total (python-plexapi's `totalViewSize` does that).
    pub size: u32,
    /// `Some(t)`: only items added after `t` (unix seconds), newest first — the filter
    /// `addedAt>>=t` with `sort=addedAt:desc`, as Overseerr's `getRecentlyAdded` asks. Plex's
    /// `>>=` on a date reads "is after"; an item added in the very second `t` may be left out,
    /// so callers should overlap (Overseerr goes back 10 minutes before its last scan).
    /// `None`: the whole section, in the server's order (title order on real servers).
    pub added_since: Option<i64>,
}

/// One element of `MediaContainer.Metadata` in the answer to
/// `GET /library/sections/{key}/all` ([`PmsClient::section_items`]).
///
/// On the wire (JSON, `Accept: application/json`, with `includeGuids=1`), a movie:
///
/// ```json
/// {"ratingKey": "1234", "key": "/library/metadata/1234", "guid": "plex://movie/5d7768…",
///  "type": "movie", "title": "The Matrix", "year": 1999, "addedAt": 1700000000,
///  "updatedAt": 1700000000, "Media": [{"id": 1, "videoResolution": "4k", …}],
///  "Guid": [{"id": "imdb://tt0133093"}, {"id": "tmdb://603"}]}
/// ```
///
/// a show adds `childCount` (seasons) and `leafCount` (episodes); a season has `index` (its
/// number), `parentRatingKey`, `parentTitle`, `parentGuid` and `leafCount`. Contract:
/// `plex-media-server.yaml` (contracts directory), schemas `Metadata`, `Guid`, `Media`; Overseerr
/// `server/api/plexapi.ts` (`PlexLibraryItem`, `PlexMetadata`). Everything else is ignored,
/// `null` reads as absent, and numbers sent as strings (or ids sent as numbers) are accepted;
/// a number that does not fit (e.g. a negative `year`) reads as `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryItem {
    /// `ratingKey`: the item's id on this server, e.g. `"1234"` (a string on real servers, a
    /// JSON number is accepted). Never empty: items without one are skipped.
    pub rating_key: String,
    /// `type`: `movie`, `show`, `season` or `episode` (empty when absent).
    pub item_type: String,
    /// `title` (empty when absent). A season's is e.g. `Season 1`.
    pub title: String,
    /// `year`: the release year (movies, shows).
    pub year: Option<u16>,
    /// `guid`: the agent's id of the item — `plex://movie/<24 hex>` for Plex's own agents, or
    /// a legacy agent's `com.plexapp.agents.imdb://tt0133093?lang=en`.
    pub guid: Option<String>,
    /// `Guid[].id`: the external ids, e.g. `tmdb://603`, `tvdb://121361`, `imdb://tt0133093`,
    /// in the server's order. Only sent with `includeGuids=1`, and only for items of Plex's
    /// own agents (legacy-agent items have none).
    pub guids: Vec<String>,
    /// `index`: a season's number (0 for specials); an episode's number.
    pub index: Option<u32>,
    /// `parentRatingKey`: a season's show, an episode's season.
    pub parent_rating_key: Option<String>,
    /// `leafCount`: for shows and seasons, how many episodes the server has.
    pub leaf_count: Option<u32>,
    /// `addedAt`: when the item was added to the library (unix seconds).
    pub added_at: Option<i64>,
    /// `updatedAt`: when its metadata last changed (unix seconds).
    pub updated_at: Option<i64>,
    /// `Media[].videoResolution`, one per version of the file: `4k`, `1080`, `720`, `480`,
    /// `sd`, … (movies and episodes; shows and seasons have no `Media`).
    pub video_resolutions: Vec<String>,
}

impl LibraryItem {
    /// The TMDB id of the first well-formed `tmdb://<n>` in [`guids`](Self::guids) (`n`
    /// decimal digits only, `n > 0`, fits in a `u64`). Odd values — `tmdb://abc`, `tmdb://0`,
    /// `tmdb://-3`, `tmdb://`, surrounding whitespace, overlong numbers — are skipped, so
    /// `None` when no well-formed one is left. The legacy [`guid`](Self::guid) is not read.
    pub fn tmdb_id(&self) -> Option<u64> {
        external_id(&self.guids, "tmdb")
    }

    /// The TVDB id of the first well-formed `tvdb://<n>` in [`guids`](Self::guids), read like
    /// [`tmdb_id`](Self::tmdb_id).
    pub fn tvdb_id(&self) -> Option<u64> {
        external_id(&self.guids, "tvdb")
    }

    /// Whether one of the item's versions is 4K: a [`video_resolutions`](Self::video_resolutions)
    /// entry equal to `4k`, ignoring case (Overseerr's scanner tests `videoResolution ===
    /// '4k'`).
    pub fn is_4k(&self) -> bool {
        self.video_resolutions
            .iter()
            .any(|resolution| resolution.eq_ignore_ascii_case("4k"))
    }
}

/// The numeric id of the first `<scheme>://<digits>` in `guids` (scheme compared without case),
/// with `0` and anything not made of digits only skipped.
fn external_id(guids: &[String], scheme: &str) -> Option<u64> {
    guids.iter().find_map(|guid| {
        let prefix = guid.get(..scheme.len())?;
        if !prefix.eq_ignore_ascii_case(scheme) {
            return None;
        }
        let digits = guid.get(scheme.len()..)?.strip_prefix("://")?;
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        digits.parse::<u64>().ok().filter(|id| *id > 0)
    })
}

/// One page of [`PmsClient::section_items`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryPage {
    /// The page's items in the server's order (newest first with
    /// [`ListItems::added_since`]); entries without a `ratingKey` are left out.
    pub items: Vec<LibraryItem>,
    /// The offset of the first item: `MediaContainer.offset`, else the
    /// `X-Plex-Container-Start` response header, else the requested start.
    pub start: u64,
    /// How many items match in all: `MediaContainer.totalSize`, else the
    /// `X-Plex-Container-Total-Size` response header; `None` when the server sent neither
    /// (real servers send both for paged requests).
    pub total_size: Option<u64>,
}

impl LibraryPage {
    /// Whether a next page (at `start + size`) exists, given the `size` this page was asked
    /// with: with a total, when `start + size < total`; without one, when the page is full
    /// (`items.len() == size`, Overseerr's rule). Never when `size` is 0, and never when the
    /// page holds more than `size` items — the server ignored the paging and sent everything,
    /// so asking again would loop.
    pub fn has_more(&self, size: u32) -> bool {
        let size = u64::from(size);
        let count = u64::try_from(self.items.len()).unwrap_or(u64::MAX);
        if size == 0 || count > size {
            return false;
        }
        match self.total_size {
            Some(total) => self.start.saturating_add(size) < total,
            None => count == size,
        }
    }
}

/// Client for one Plex Media Server. Cheap to clone (one shared connection pool): the
/// server's identity ([`identity`](Self::identity)), its library sections
/// ([`library_sections`](Self::library_sections), [`find_section`](Self::find_section)), their
/// scans ([`refresh_section`](Self::refresh_section)) and their content, page by page
/// ([`section_items`](Self::section_items)).
#[derive(Clone)]
pub struct PmsClient {
    http: reqwest::Client,
    base_url: Url,
    token: String,
}

impl fmt::Debug for PmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PmsClient")
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl PmsClient {
    /// Builds a client for `cfg`; the token is sent on every call as `X-Plex-Token`.
    ///
    /// # Errors
    ///
    /// [`PlexError::Config`] as for [`PlexTvClient::new`], and when the token is empty or not
    /// a valid header value.
    pub fn new(cfg: PmsConfig) -> Result<Self, PlexError> {
        check_base_url(&cfg.base_url)?;
        if cfg.token.trim().is_empty() {
            return Err(PlexError::Config("the PMS token is empty".to_string()));
        }
        let mut headers = cfg.client.headers()?;
        let token = token_header(&cfg.token).map_err(|_| {
            PlexError::Config("the PMS token is not a valid header value".to_string())
        })?;
        headers.insert(HeaderName::from_static(X_PLEX_TOKEN), token);
        let http = http_client(headers, cfg.timeout)?;
        Ok(Self {
            http,
            base_url: cfg.base_url,
            token: cfg.token,
        })
    }

    /// The server's base URL, as configured.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// Reads the server's identity **and checks the token**: `GET {base}/` with
    /// `Accept: application/json` and `X-Plex-Token`, answered with
    /// `{"MediaContainer": {"machineIdentifier": …, "version": …, "friendlyName": …,
    /// "myPlexUsername": …, "Directory": […], …}}`.
    ///
    /// The server root is used rather than `GET /identity` because a real PMS answers
    /// `/identity` (`{"MediaContainer": {"size": 0, "claimed": true, "machineIdentifier": …,
    /// "version": …}}`) to anyone, token or not, so it cannot tell a wrong token; the root
    /// answers 401 without a valid one. Overseerr checks its PMS the same way
    /// (`server/api/plexapi.ts`, `getStatus()` = `query('/')`, then
    /// `MediaContainer.machineIdentifier`). A server that lets the caller's network in
    /// without authentication (*List of IP addresses and networks that are allowed without
    /// auth*) accepts any token.
    ///
    /// # Errors
    ///
    /// [`PlexError::Unauthorized`] on 401 (wrong token, or a token without access to this
    /// server); [`PlexError::Unavailable`] (timeout, connection, 408/429/5xx);
    /// [`PlexError::Rejected`] (other 4xx, refused redirect); [`PlexError::Decode`] when the
    /// answer is not a JSON `MediaContainer` with a `machineIdentifier` (e.g. not a PMS).
    #[tracing::instrument(name = "pms.identity", skip_all, fields(base_url = %self.base_url))]
    pub async fn identity(&self) -> Result<PmsIdentity, PlexError> {
        let url = join(&self.base_url, [""])?;
        let answer = send(PMS, self.http.get(url), Some(&self.token)).await?;
        let container: MediaContainer<RootContainer> =
            answer.success_json(PMS, "the server root")?;
        let root = container.media_container;
        match root.machine_identifier.filter(|id| !id.trim().is_empty()) {
            Some(machine_identifier) => Ok(PmsIdentity {
                machine_identifier,
                version: root.version,
                friendly_name: root.friendly_name,
            }),
            None => Err(PlexError::Decode(
                "the server root has no machineIdentifier (is this a Plex Media Server?)"
                    .to_string(),
            )),
        }
    }
}

impl PmsClient {
    /// Lists the server's library sections: `GET {base}/library/sections` with
    /// `Accept: application/json` and `X-Plex-Token`, answered with
    /// `{"MediaContainer": {"size": N, "Directory": [<section>, …]}}` (see
    /// [`LibrarySection`]). A server without libraries may leave out `Directory` (or send
    /// `null`): that is an empty list. Entries without a `key` are skipped. The order is the
    /// server's.
    ///
    /// Sources: python-plexapi `plexapi/library.py` (`Library.sections()` reads
    /// `/library/sections`, one `LibrarySection` per `Directory` with `key`, `type`, `title`,
    /// `agent`, `scanner`, `Location`), Overseerr `server/api/plexapi.ts` (`getLibraries()` =
    /// `query('/library/sections')`, then `MediaContainer.Directory`).
    ///
    /// # Errors
    ///
    /// [`PlexError::Unauthorized`] on 401; [`PlexError::Unavailable`] (timeout, connection,
    /// 408/429/5xx); [`PlexError::NotFound`] on 404; [`PlexError::Rejected`] (other 4xx,
    /// refused redirect); [`PlexError::Decode`] when the answer is not a JSON
    /// `MediaContainer`.
    #[tracing::instrument(name = "pms.library_sections", skip_all, fields(base_url = %self.base_url))]
    pub async fn library_sections(&self) -> Result<Vec<LibrarySection>, PlexError> {
        let url = join(&self.base_url, ["library", "sections"])?;
        let answer = send(PMS, self.http.get(url), Some(&self.token)).await?;
        let container: MediaContainer<SectionsContainer> =
            answer.success_json(PMS, "the library sections")?;
        Ok(container
            .media_container
            .directory
            .unwrap_or_default()
            .into_iter()
            .filter(|section| !section.key.trim().is_empty())
            .collect())
    }

    /// Finds the section whose type equals `section_type` (e.g. `movie`) and whose title
    /// equals `title` case-insensitively, both titles trimmed (python-plexapi keys its
    /// sections by `title.lower().strip()` the same way). The first match in the server's order
    /// wins. `Ok(None)` when there is none — in particular when only a section of another type
    /// has that title.
    ///
    /// # Errors
    ///
    /// As [`library_sections`](Self::library_sections).
    #[tracing::instrument(name = "pms.find_section", skip(self), fields(base_url = %self.base_url))]
    pub async fn find_section(
        &self,
        section_type: &str,
        title: &str,
    ) -> Result<Option<LibrarySection>, PlexError> {
        let wanted = title.trim().to_lowercase();
        Ok(self.library_sections().await?.into_iter().find(|section| {
            section.section_type == section_type && section.title.trim().to_lowercase() == wanted
        }))
    }

    /// Asks the server to scan a library section: `GET {base}/library/sections/{key}/refresh`,
    /// or with `?path=<path>` to scan only that folder (a partial scan; `path` as the server
    /// sees it, inside one of the section's [`locations`](LibrarySection::locations)). The
    /// key is a path segment and the path a query value, both percent-encoded (everything but
    /// `A-Z a-z 0-9 - _ . ~`, so a space is `%20`, `[` is `%5B`). PMS starts the scan in the
    /// background and answers 200 with an empty body at once; the body is ignored.
    ///
    /// Sources: python-plexapi `plexapi/library.py` (`LibrarySection.update(path=None)` →
    /// `GET /library/sections/{key}/refresh?path=<quoted path>`), Plex's own partial-scan
    /// request ("Scan my library automatically" uses the same route).
    ///
    /// # Errors
    ///
    /// [`PlexError::Config`] without a call when `key` is empty;
    /// [`PlexError::NotFound`] on 404 (no section with that key — PMS answers an HTML 404
    /// page; find the section again). Otherwise as
    /// [`library_sections`](Self::library_sections) (except that the body is never decoded).
    #[tracing::instrument(name = "pms.refresh_section", skip(self), fields(base_url = %self.base_url))]
    pub async fn refresh_section(&self, key: &str, path: Option<&str>) -> Result<(), PlexError> {
        let key = key.trim();
        if key.is_empty() {
            return Err(PlexError::Config(
                "the library section key is empty".to_string(),
            ));
        }
        let mut url = join(&self.base_url, ["library", "sections", key, "refresh"])?;
        if let Some(path) = path {
            url.set_query(Some(&format!("path={}", percent_encode(path))));
        }
        let answer = send(PMS, self.http.get(url), Some(&self.token)).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(answer.status_error(PMS))
        }
    }
}

impl PmsClient {
    /// Lists one page of a library section's items: `GET
    /// {base}/library/sections/{section_key}/all?type=<n>&includeGuids=1[&sort=addedAt:desc&addedAt>>=<t>]&X-Plex-Container-Start=<start>&X-Plex-Container-Size=<size>`
    /// with `Accept: application/json` and `X-Plex-Token`, answered with
    /// `{"MediaContainer": {"size": n, "totalSize": N, "offset": start, "librarySectionID": …,
    /// "Metadata": [<item>, …]}}` and the headers `X-Plex-Container-Start` and
    /// `X-Plex-Container-Total-Size` (see [`LibraryItem`], [`LibraryPage`]). The key is a path
    /// segment and the values are form-encoded, so `sort=addedAt%3Adesc` and
    /// `addedAt%3E%3E=<t>` go on the wire, as python-plexapi writes them.
    ///
    /// **Paging goes as query parameters**, `X-Plex-Container-Start`/`-Size`, as the community
    /// spec documents them (`plex-media-server.yaml` in the contracts directory, parameters
    /// `X-Plex-Container-Start`/`-Size`, `in: query`). A real PMS reads them from the query
    /// or from headers alike: python-plexapi sent them as query parameters in `fetchItems`
    /// until 4.14 and still does on this very route (`LibrarySection.totalViewSize`,
    /// `_loadFilters`: `…/all?…&X-Plex-Container-Start=0&X-Plex-Container-Size=0`), while its
    /// `fetchItems` since 2023 and Overseerr (`getLibraryContents`, `getRecentlyAdded`) send
    /// them as headers. The query form is what the spec says and shows in logs and traces.
    ///
    /// Recently added (`added_since`) is Overseerr's `getRecentlyAdded` query
    /// (`server/api/plexapi.ts`: `type=…&sort=addedAt%3Adesc&addedAt>>=<seconds>`);
    /// seasons are python-plexapi's `searchSeasons` (`type=3`). `Metadata` absent or `null`
    /// is an empty page; entries without a `ratingKey` (or that are not objects) are skipped.
    ///
    /// # Errors
    ///
    /// [`PlexError::Config`] without a call when `section_key` is empty;
    /// [`PlexError::NotFound`] on 404 (no such section — PMS answers an HTML page);
    /// [`PlexError::Unauthorized`] on 401; [`PlexError::Unavailable`] (timeout, connection
    /// refused or dropped, 408/429/5xx); [`PlexError::Rejected`] (other 4xx, e.g. 400 for a
    /// filter the server does not know; a refused redirect); [`PlexError::Decode`] when the
    /// answer is not a JSON `MediaContainer` (XML, HTML, `Metadata` not an array, …).
    #[tracing::instrument(
        name = "pms.section_items",
        skip(self, query),
        fields(
            base_url = %self.base_url,
            kind = query.kind.number(),
            start = query.start,
            size = query.size,
            recent = query.added_since.is_some(),
        )
    )]
    pub async fn section_items(
        &self,
        section_key: &str,
        query: &ListItems,
    ) -> Result<LibraryPage, PlexError> {
        let key = section_key.trim();
        if key.is_empty() {
            return Err(PlexError::Config(
                "the library section key is empty".to_string(),
            ));
        }
        let mut url = join(&self.base_url, ["library", "sections", key, "all"])?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs
                .append_pair("type", &query.kind.number().to_string())
                .append_pair("includeGuids", "1");
            if let Some(since) = query.added_since {
                pairs
                    .append_pair("sort", "addedAt:desc")
                    .append_pair("addedAt>>", &since.to_string());
            }
            pairs
                .append_pair("X-Plex-Container-Start", &query.start.to_string())
                .append_pair("X-Plex-Container-Size", &query.size.to_string());
        }
        let answer = send(PMS, self.http.get(url), Some(&self.token)).await?;
        library_page(&answer, query.start)
    }

    /// Whether the server still has the item `rating_key`: `GET /library/metadata/{ratingKey}`
    /// (plex-media-server.yaml, `/library/metadata/{ids}`) answers 200 with the item, or PMS's
    /// HTML 404 when it is gone. The body is not read. The Plex sync asks this before taking
    /// an item a full pass did not see for removed (paging by offset can skip an item when
    /// the section changes between two pages).
    ///
    /// # Errors
    ///
    /// [`PlexError::Config`] without a call when `rating_key` is empty; otherwise as
    /// [`section_items`](Self::section_items), except that 404 is `Ok(false)`.
    #[tracing::instrument(name = "pms.has_item", skip(self), fields(base_url = %self.base_url))]
    pub async fn has_item(&self, rating_key: &str) -> Result<bool, PlexError> {
        let key = rating_key.trim();
        if key.is_empty() {
            return Err(PlexError::Config("the ratingKey is empty".to_string()));
        }
        let url = join(&self.base_url, ["library", "metadata", key])?;
        let answer = send(PMS, self.http.get(url), Some(&self.token)).await?;
        match answer.status {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(answer.status_error(PMS)),
        }
    }
}

/// Reads an answer of `GET /library/sections/{key}/all` asked from `requested_start`.
fn library_page(answer: &Answer, requested_start: u64) -> Result<LibraryPage, PlexError> {
    let container: MediaContainer<ItemsContainer> =
        answer.success_json(PMS, "the library items")?;
    let container = container.media_container;
    let entries = container.metadata.unwrap_or_default();
    let listed = entries.len();
    let items: Vec<LibraryItem> = entries
        .into_iter()
        .filter_map(|entry| WireItem::deserialize(entry).ok()?.into_item())
        .collect();
    if items.len() < listed {
        tracing::debug!(
            skipped = listed - items.len(),
            "skipped library items without a ratingKey"
        );
    }
    Ok(LibraryPage {
        items,
        start: container
            .offset
            .or_else(|| answer.header_number("x-plex-container-start"))
            .unwrap_or(requested_start),
        total_size: container
            .total_size
            .or_else(|| answer.header_number("x-plex-container-total-size")),
    })
}

/// `{"MediaContainer": …}`, the envelope of every PMS JSON answer.
#[derive(Deserialize)]
struct MediaContainer<T> {
    #[serde(rename = "MediaContainer")]
    media_container: T,
}

/// The fields of the PMS root container that [`PmsClient::identity`] reads.
#[derive(Deserialize)]
struct RootContainer {
    #[serde(rename = "machineIdentifier", default)]
    machine_identifier: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(rename = "friendlyName", default)]
    friendly_name: Option<String>,
}

/// The fields of the `GET /library/sections` container that [`PmsClient::library_sections`]
/// reads. `Directory` is absent (or `null`) on a server without libraries.
#[derive(Deserialize)]
struct SectionsContainer {
    #[serde(rename = "Directory", default)]
    directory: Option<Vec<LibrarySection>>,
}

/// The fields of the `GET /library/sections/{key}/all` container that
/// [`PmsClient::section_items`] reads. `Metadata` is absent on an empty page; its entries are
/// read one by one so that one odd entry does not spoil the page.
#[derive(Deserialize)]
struct ItemsContainer {
    #[serde(default, deserialize_with = "lenient_integer")]
    offset: Option<u64>,
    #[serde(rename = "totalSize", default, deserialize_with = "lenient_integer")]
    total_size: Option<u64>,
    #[serde(rename = "Metadata", default)]
    metadata: Option<Vec<serde_json::Value>>,
}

/// One `Metadata` entry as sent; every field is lenient, so only a non-object fails.
#[derive(Deserialize)]
struct WireItem {
    #[serde(rename = "ratingKey", default, deserialize_with = "lenient_text")]
    rating_key: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "lenient_text")]
    item_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    title: Option<String>,
    #[serde(default, deserialize_with = "lenient_integer")]
    year: Option<u16>,
    #[serde(default, deserialize_with = "lenient_text")]
    guid: Option<String>,
    #[serde(rename = "Guid", default, deserialize_with = "guid_ids")]
    guids: Vec<String>,
    #[serde(default, deserialize_with = "lenient_integer")]
    index: Option<u32>,
    #[serde(rename = "parentRatingKey", default, deserialize_with = "lenient_text")]
    parent_rating_key: Option<String>,
    #[serde(rename = "leafCount", default, deserialize_with = "lenient_integer")]
    leaf_count: Option<u32>,
    #[serde(rename = "addedAt", default, deserialize_with = "lenient_integer")]
    added_at: Option<i64>,
    #[serde(rename = "updatedAt", default, deserialize_with = "lenient_integer")]
    updated_at: Option<i64>,
    #[serde(rename = "Media", default, deserialize_with = "video_resolutions")]
    video_resolutions: Vec<String>,
}

impl WireItem {
    /// The item, or `None` without a (non-blank) `ratingKey`.
    fn into_item(self) -> Option<LibraryItem> {
        let rating_key = self.rating_key.filter(|key| !key.trim().is_empty())?;
        Some(LibraryItem {
            rating_key,
            item_type: self.item_type.unwrap_or_default(),
            title: self.title.unwrap_or_default(),
            year: self.year,
            guid: self.guid,
            guids: self.guids,
            index: self.index,
            parent_rating_key: self.parent_rating_key,
            leaf_count: self.leaf_count,
            added_at: self.added_at,
            updated_at: self.updated_at,
            video_resolutions: self.video_resolutions,
        })
    }
}

/// A complete answer: status, headers and body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The token sent with the call, scrubbed from any text taken from the body.
    secret: Option<String>,
}

impl Answer {
    /// The body as `T` for a 2xx answer; the status's error otherwise.
    fn success_json<T: DeserializeOwned>(&self, service: &str, what: &str) -> Result<T, PlexError> {
        if !self.status.is_success() {
            return Err(self.status_error(service));
        }
        serde_json::from_slice(&self.body).map_err(|err| {
            PlexError::Decode(format!(
                "{service} sent {what} as something else than the expected JSON (HTTP {}): {}",
                self.status.as_u16(),
                redact_quoted(&err.to_string())
            ))
        })
    }

    /// Header `name` read as a non-negative integer (surrounding blanks allowed); `None` when
    /// absent or not a number.
    fn header_number(&self, name: &str) -> Option<u64> {
        self.headers.get(name)?.to_str().ok()?.trim().parse().ok()
    }

    fn status_error(&self, service: &str) -> PlexError {
        let status = self.status.as_u16();
        match self.status {
            StatusCode::UNAUTHORIZED => PlexError::Unauthorized,
            StatusCode::NOT_FOUND => PlexError::NotFound,
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => PlexError::Unavailable(
                format!("{service} answered HTTP {status}: {}", self.excerpt()),
            ),
            _ if self.status.is_server_error() => PlexError::Unavailable(format!(
                "{service} answered HTTP {status}: {}",
                self.excerpt()
            )),
            _ => PlexError::Rejected {
                status,
                body: self.excerpt(),
            },
        }
    }

    /// At most [`MAX_BODY_EXCERPT`] characters of the body, with the sent token scrubbed.
    fn excerpt(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.body).into_owned();
        if let Some(secret) = self.secret.as_deref().filter(|secret| !secret.is_empty()) {
            text = text.replace(secret, "<redacted>");
        }
        match text.char_indices().nth(MAX_BODY_EXCERPT) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    }
}

/// Sends `request` and reads the whole answer. `secret` is the token the request carries, so
/// that error texts can scrub it.
async fn send(
    service: &str,
    request: reqwest::RequestBuilder,
    secret: Option<&str>,
) -> Result<Answer, PlexError> {
    let response = request
        .send()
        .await
        .map_err(|err| transport_error(service, &err))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|err| transport_error(service, &err))?;
    tracing::debug!(status = status.as_u16(), "{service} answered");
    Ok(Answer {
        status,
        headers,
        body: body.to_vec(),
        secret: secret.map(str::to_string),
    })
}

fn transport_error(service: &str, err: &reqwest::Error) -> PlexError {
    if err.is_timeout() {
        PlexError::Unavailable(format!("{service} did not answer in time"))
    } else {
        // Connection refused or reset, DNS or TLS failure, connection closed before the answer
        // was complete. URLs never carry a token (it travels in a header), so the chain is safe
        // to keep.
        PlexError::Unavailable(format!("could not reach {service}: {}", error_chain(err)))
    }
}

fn http_client(headers: HeaderMap, timeout: Duration) -> Result<reqwest::Client, PlexError> {
    if timeout.is_zero() {
        return Err(PlexError::Config(
            "timeout must be greater than zero".to_string(),
        ));
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .user_agent(concat!("medianest/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(same_host_redirects())
        .build()
        .map_err(|err| PlexError::Config(err.to_string()))
}

/// Follows at most [`MAX_REDIRECTS`] redirects, and only to the host (and port) the call was
/// made to, never from https to http: reqwest keeps custom headers such as `X-Plex-Token` on
/// redirects, so a redirect elsewhere would hand the token to another server. A refused
/// redirect is returned as the 3xx answer ([`PlexError::Rejected`]).
fn same_host_redirects() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.stop();
        };
        let next = attempt.url();
        let same_host = next.host_str() == first.host_str();
        let same_port = next.port_or_known_default() == first.port_or_known_default()
            || (first.scheme() == "http" && next.scheme() == "https");
        let downgrade = first.scheme() == "https" && next.scheme() != "https";
        if attempt.previous().len() > MAX_REDIRECTS || !same_host || !same_port || downgrade {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

fn token_header(token: &str) -> Result<HeaderValue, PlexError> {
    if token.trim().is_empty() {
        return Err(PlexError::Unauthorized);
    }
    let mut value = HeaderValue::from_str(token).map_err(|_| PlexError::Unauthorized)?;
    value.set_sensitive(true);
    Ok(value)
}

fn check_base_url(base_url: &Url) -> Result<(), PlexError> {
    if !matches!(base_url.scheme(), "http" | "https") {
        return Err(PlexError::Config(format!(
            "base URL must be http or https, not {}",
            base_url.scheme()
        )));
    }
    if base_url.query().is_some() || base_url.fragment().is_some() {
        return Err(PlexError::Config(
            "base URL must not have a query or fragment".to_string(),
        ));
    }
    if base_url.cannot_be_a_base() || base_url.host_str().is_none() {
        return Err(PlexError::Config("base URL has no host".to_string()));
    }
    Ok(())
}

/// `base` with `segments` appended to its path (a trailing slash of `base` is dropped first;
/// `[""]` gives `base/`).
fn join<I>(base: &Url, segments: I) -> Result<Url, PlexError>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| PlexError::Config("base URL cannot have a path".to_string()))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Percent-encodes everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - _ . ~`).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Replaces what serde_json quotes in its messages (string values, which may be tokens) with
/// `…`; field names (in backticks), positions and expectations stay.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for ch in message.chars() {
        if ch == '"' {
            if !inside {
                out.push_str("\"…\"");
            }
            inside = !inside;
        } else if !inside {
            out.push(ch);
        }
    }
    out
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn non_empty_string<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(deserializer)?.filter(|value| !value.is_empty()))
}

/// A string, or a number written as its decimal text.
fn string_or_number<'de, D>(deserializer: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        Some(serde_json::Value::String(text)) => Ok(text),
        Some(serde_json::Value::Number(number)) => Ok(number.to_string()),
        None | Some(serde_json::Value::Null) => Ok(String::new()),
        Some(_) => Err(D::Error::custom("expected a string or a number")),
    }
}

/// `Location: [{"id": 5, "path": "/data/movies"}, …]` as its paths (entries without a path are
/// skipped; absent or `null` is empty).
fn location_paths<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Location {
        #[serde(default)]
        path: Option<String>,
    }
    Ok(Option::<Vec<Location>>::deserialize(deserializer)?
        .unwrap_or_default()
        .into_iter()
        .filter_map(|location| location.path.filter(|path| !path.is_empty()))
        .collect())
}

/// The inverse of [`location_paths`]: `[{"path": …}, …]`.
fn serialize_location_paths<S>(paths: &[String], serializer: S) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
{
    use serde::ser::SerializeSeq;
    let mut seq = serializer.serialize_seq(Some(paths.len()))?;
    for path in paths {
        seq.serialize_element(&serde_json::json!({ "path": path }))?;
    }
    seq.end()
}

/// A string as it is, or a number as its decimal text; `null`, `""` and anything else are
/// `None`.
fn lenient_text<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(
        match Option::<serde_json::Value>::deserialize(deserializer)? {
            Some(serde_json::Value::String(text)) if !text.is_empty() => Some(text),
            Some(serde_json::Value::Number(number)) => Some(number.to_string()),
            _ => None,
        },
    )
}

/// An integer sent as a JSON number or as decimal text (blanks around allowed); `None` for
/// `null`, fractions, other types, and values that do not fit `T`.
fn lenient_integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    let wide: Option<i128> = match Option::<serde_json::Value>::deserialize(deserializer)? {
        Some(serde_json::Value::Number(number)) => number
            .as_i64()
            .map(i128::from)
            .or_else(|| number.as_u64().map(i128::from)),
        Some(serde_json::Value::String(text)) => text.trim().parse().ok(),
        _ => None,
    };
    Ok(wide.and_then(|wide| T::try_from(wide).ok()))
}

/// `Guid: [{"id": "tmdb://603"}, …]` as its ids; entries without a string `id` are skipped,
/// and anything but an array (absent, `null`) is empty.
fn guid_ids<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: Deserializer<'de>,
{
    array_field(deserializer, "id")
}

/// `Media: [{"videoResolution": "1080", …}, …]` as its resolutions (numbers as text);
/// entries without one are skipped, and anything but an array is empty.
fn video_resolutions<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: Deserializer<'de>,
{
    array_field(deserializer, "videoResolution")
}

/// The non-empty text (or number) `field` of each object of an array.
fn array_field<'de, D>(deserializer: D, field: &str) -> Result<Vec<String>, D::Error>
where
    D: Deserializer<'de>,
{
    let Some(serde_json::Value::Array(entries)) =
        Option::<serde_json::Value>::deserialize(deserializer)?
    else {
        return Ok(Vec::new());
    };
    Ok(entries
        .iter()
        .filter_map(|entry| match entry.get(field)? {
            serde_json::Value::String(text) if !text.is_empty() => Some(text.clone()),
            serde_json::Value::Number(number) => Some(number.to_string()),
            _ => None,
        })
        .collect())
}

/// An RFC 3339 string or epoch seconds; anything else (or unparsable) is `None`.
fn lenient_timestamp<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: Deserializer<'de>,
{
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(match value {
        Some(serde_json::Value::String(text)) => DateTime::parse_from_rfc3339(&text)
            .ok()
            .map(|at| at.with_timezone(&Utc)),
        Some(serde_json::Value::Number(number)) => number
            .as_i64()
            .and_then(|seconds| Utc.timestamp_opt(seconds, 0).single()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(percent_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn quoted_values_are_redacted_from_decode_messages() {
        assert_eq!(
            redact_quoted(r#"invalid type: string "secret-token", expected u64 at line 1"#),
            r#"invalid type: string "…", expected u64 at line 1"#
        );
        assert_eq!(
            redact_quoted("missing field `uuid`"),
            "missing field `uuid`"
        );
    }

    #[test]
    fn pins_read_plex_tv_json_leniently() {
        let pin: PlexPin = serde_json::from_str(
            r#"{"id": 111222333, "code": "abc", "product": "0", "trusted": false,
                "expiresIn": 900, "createdAt": "2022-02-01T00:00:00Z",
                "expiresAt": "2022-02-01T00:15:00Z", "authToken": null,
                "newRegistration": null}"#,
        )
        .unwrap();
        assert_eq!(pin.id, 111_222_333);
        assert_eq!(pin.auth_token, None);
        assert_eq!(
            pin.expires_at,
            Some(Utc.with_ymd_and_hms(2022, 2, 1, 0, 15, 0).unwrap())
        );
        let pin: PlexPin =
            serde_json::from_str(r#"{"id": 1, "code": "c", "authToken": "", "expiresAt": 0}"#)
                .unwrap();
        assert_eq!(pin.auth_token, None);
        assert_eq!(pin.expires_at, Some(Utc.timestamp_opt(0, 0).unwrap()));
    }

    #[test]
    fn library_sections_read_pms_json_leniently() {
        let container: MediaContainer<SectionsContainer> = serde_json::from_str(
            r#"{"MediaContainer": {"size": 2, "allowSync": false, "title1": "Plex Library",
                "Directory": [
                  {"allowSync": true, "key": "3", "type": "movie", "title": "YouTube",
                   "agent": "tv.plex.agents.none", "scanner": "Plex Video Files Scanner",
                   "language": "xn", "refreshing": false, "hidden": 0,
                   "Location": [{"id": 5, "path": "/data/youtube"}, {"id": 6, "path": "/b"}]},
                  {"key": 4, "type": "show", "title": null, "agent": null,
                   "Location": null}
                ]}}"#,
        )
        .unwrap();
        let sections = container.media_container.directory.unwrap();
        assert_eq!(
            sections[0],
            LibrarySection {
                key: "3".into(),
                title: "YouTube".into(),
                section_type: "movie".into(),
                agent: Some("tv.plex.agents.none".into()),
                scanner: Some("Plex Video Files Scanner".into()),
                locations: vec!["/data/youtube".into(), "/b".into()],
            }
        );
        assert_eq!(sections[1].key, "4");
        assert_eq!(sections[1].title, "");
        assert_eq!(sections[1].agent, None);
        assert!(sections[1].locations.is_empty());

        // A server without libraries leaves `Directory` out.
        let empty: MediaContainer<SectionsContainer> =
            serde_json::from_str(r#"{"MediaContainer": {"size": 0, "title1": "Plex Library"}}"#)
                .unwrap();
        assert!(empty.media_container.directory.is_none());

        // Serialised sections read back the same.
        let text = serde_json::to_string(&sections[0]).unwrap();
        assert!(
            text.contains(r#""Location":[{"path":"/data/youtube"}"#),
            "{text}"
        );
        let back: LibrarySection = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sections[0]);
    }

    fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> Answer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: body.as_bytes().to_vec(),
            secret: Some("secret-token".to_string()),
        }
    }

    fn item(rating_key: &str) -> LibraryItem {
        LibraryItem {
            rating_key: rating_key.to_string(),
            item_type: String::new(),
            title: String::new(),
            year: None,
            guid: None,
            guids: Vec::new(),
            index: None,
            parent_rating_key: None,
            leaf_count: None,
            added_at: None,
            updated_at: None,
            video_resolutions: Vec::new(),
        }
    }

    #[test]
    fn item_kinds_are_plex_type_numbers() {
        let numbers: Vec<u8> = [
            ItemKind::Movie,
            ItemKind::Show,
            ItemKind::Season,
            ItemKind::Episode,
        ]
        .into_iter()
        .map(ItemKind::number)
        .collect();
        assert_eq!(numbers, vec![1, 2, 3, 4]);
    }

    #[test]
    fn library_items_read_pms_json_movies_shows_and_seasons() {
        let page = library_page(
            &answer(
                200,
                &[],
                r#"{"MediaContainer": {"size": 3, "totalSize": 7, "offset": 4,
                    "allowSync": true, "librarySectionID": 1, "librarySectionTitle": "Movies",
                    "Metadata": [
                  {"ratingKey": "1234", "key": "/library/metadata/1234",
                   "guid": "plex://movie/5d7768ba96b655001fdc0408", "type": "movie",
                   "title": "The Matrix", "year": 1999, "addedAt": 1700000000,
                   "updatedAt": 1700000100, "studio": "Warner",
                   "Media": [{"id": 1, "videoResolution": "1080", "Part": []},
                             {"id": 2, "videoResolution": "4k"}],
                   "Guid": [{"id": "imdb://tt0133093"}, {"id": "tmdb://603"}]},
                  {"ratingKey": 77, "type": "show", "title": "Lost", "year": 2004,
                   "childCount": 6, "leafCount": 121,
                   "Guid": [{"id": "tvdb://73739"}, {"id": "tmdb://4607"}]},
                  {"ratingKey": "78", "type": "season", "title": "Season 1", "index": 1,
                   "parentRatingKey": "77", "parentTitle": "Lost", "leafCount": 25,
                   "addedAt": "1700000200", "updatedAt": null}
                ]}}"#,
            ),
            0,
        )
        .unwrap();

        assert_eq!(page.start, 4);
        assert_eq!(page.total_size, Some(7));
        assert_eq!(
            page.items[0],
            LibraryItem {
                rating_key: "1234".into(),
                item_type: "movie".into(),
                title: "The Matrix".into(),
                year: Some(1999),
                guid: Some("plex://movie/5d7768ba96b655001fdc0408".into()),
                guids: vec!["imdb://tt0133093".into(), "tmdb://603".into()],
                index: None,
                parent_rating_key: None,
                leaf_count: None,
                added_at: Some(1_700_000_000),
                updated_at: Some(1_700_000_100),
                video_resolutions: vec!["1080".into(), "4k".into()],
            }
        );
        assert_eq!(page.items[0].tmdb_id(), Some(603));
        assert_eq!(page.items[0].tvdb_id(), None);
        assert!(page.items[0].is_4k());

        let show = &page.items[1];
        assert_eq!(
            show.rating_key, "77",
            "a numeric ratingKey reads as its text"
        );
        assert_eq!(show.leaf_count, Some(121));
        assert_eq!(show.tvdb_id(), Some(73739));
        assert_eq!(show.tmdb_id(), Some(4607));
        assert!(show.video_resolutions.is_empty());
        assert!(!show.is_4k());

        let season = &page.items[2];
        assert_eq!(season.item_type, "season");
        assert_eq!(season.index, Some(1));
        assert_eq!(season.parent_rating_key.as_deref(), Some("77"));
        assert_eq!(season.leaf_count, Some(25));
        assert_eq!(
            season.added_at,
            Some(1_700_000_200),
            "numbers as text are read"
        );
        assert_eq!(season.updated_at, None);
        assert!(season.guids.is_empty(), "no Guid without includeGuids");
    }

    #[test]
    fn unusable_library_entries_are_skipped_and_odd_values_read_as_absent() {
        let page = library_page(
            &answer(
                200,
                &[],
                r#"{"MediaContainer": {"size": 6, "Metadata": [
                  {"type": "movie", "title": "No rating key"},
                  {"ratingKey": null, "title": "Null rating key"},
                  {"ratingKey": "  ", "title": "Blank rating key"},
                  "not an object",
                  {"ratingKey": "9", "title": null, "type": null, "year": -5,
                   "index": 1.5, "leafCount": "many", "addedAt": {"at": 1},
                   "guid": "com.plexapp.agents.imdb://tt0133093?lang=en",
                   "Guid": {"id": "tmdb://603"},
                   "Media": [{"id": 1}, {"videoResolution": null},
                             {"videoResolution": 720}, "odd"]},
                  {"ratingKey": "10", "Guid": null, "Media": null, "year": 70000}
                ]}}"#,
            ),
            40,
        )
        .unwrap();

        let keys: Vec<&str> = page.items.iter().map(|i| i.rating_key.as_str()).collect();
        assert_eq!(keys, vec!["9", "10"]);
        let odd = &page.items[0];
        assert_eq!(odd.title, "");
        assert_eq!(odd.item_type, "");
        assert_eq!(odd.year, None, "a negative year does not fit");
        assert_eq!(odd.index, None, "a fraction is no index");
        assert_eq!(odd.leaf_count, None);
        assert_eq!(odd.added_at, None);
        assert!(odd.guids.is_empty(), "Guid must be an array");
        assert_eq!(odd.video_resolutions, vec!["720"]);
        assert_eq!(
            odd.guid.as_deref(),
            Some("com.plexapp.agents.imdb://tt0133093?lang=en")
        );
        assert_eq!(odd.tmdb_id(), None, "the legacy guid is not read");
        assert_eq!(page.items[1].year, None, "a year beyond u16 does not fit");
        // No offset or totalSize in the body or the headers: the requested start, no total.
        assert_eq!(page.start, 40);
        assert_eq!(page.total_size, None);
    }

    #[test]
    fn an_empty_container_is_an_empty_page_and_paging_headers_are_read() {
        for body in [
            r#"{"MediaContainer": {"size": 0}}"#,
            r#"{"MediaContainer": {"size": 0, "Metadata": null}}"#,
            r#"{"MediaContainer": {"size": 0, "Metadata": []}}"#,
        ] {
            let page = library_page(
                &answer(
                    200,
                    &[
                        ("x-plex-container-start", "200"),
                        ("x-plex-container-total-size", " 250 "),
                    ],
                    body,
                ),
                0,
            )
            .unwrap();
            assert!(page.items.is_empty(), "{body}");
            assert_eq!(page.start, 200, "{body}");
            assert_eq!(page.total_size, Some(250), "{body}");
        }
        // The body wins over the headers.
        let page = library_page(
            &answer(
                200,
                &[
                    ("x-plex-container-start", "1"),
                    ("x-plex-container-total-size", "junk"),
                ],
                r#"{"MediaContainer": {"offset": "3", "totalSize": 9}}"#,
            ),
            0,
        )
        .unwrap();
        assert_eq!((page.start, page.total_size), (3, Some(9)));
    }

    #[test]
    fn answers_that_are_not_a_json_media_container_are_decode_errors() {
        for body in [
            r#"<?xml version="1.0"?><MediaContainer size="0"></MediaContainer>"#,
            "<html><body>secret-token</body></html>",
            r#"{"Directory": []}"#,
            r#"{"MediaContainer": null}"#,
            r#"{"MediaContainer": {"Metadata": {"ratingKey": "1"}}}"#,
            r#"[]"#,
            "",
        ] {
            let err = library_page(&answer(200, &[], body), 0).unwrap_err();
            assert!(matches!(err, PlexError::Decode(_)), "{body}: {err:?}");
            assert!(!err.to_string().contains("secret-token"), "{err}");
        }
        let err = library_page(&answer(404, &[], "<html>Not Found</html>"), 0).unwrap_err();
        assert!(matches!(err, PlexError::NotFound), "{err:?}");
        let err = library_page(&answer(503, &[], "starting"), 0).unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }

    #[test]
    fn odd_external_ids_never_panic_and_read_as_none() {
        let long = format!("tmdb://{}", "9".repeat(10_000));
        let odd = [
            "tmdb://abc",
            "tmdb://0",
            "tmdb://-3",
            "tmdb://+3",
            "tmdb://",
            "tmdb:/603",
            "tmdb:603",
            "tmdb",
            "",
            " tmdb://603",
            "tmdb://603 ",
            "tmdb:// 603",
            "tmdb://6 03",
            "tmdb://603?lang=en",
            "tmdb://18446744073709551616",
            "tmdb://١٢٣",
            "tmdé://603",
            "é",
            "themoviedb://603",
            "imdb://tt0133093",
            long.as_str(),
        ];
        for guid in odd {
            let mut movie = item("1");
            movie.guids = vec![guid.to_string()];
            assert_eq!(movie.tmdb_id(), None, "{guid:?}");
            movie.guids = vec![guid.replace("tmdb", "tvdb")];
            assert_eq!(movie.tvdb_id(), None, "{guid:?}");
        }
        let mut movie = item("1");
        movie.guids = vec![
            "tmdb://abc".into(),
            "TMDB://00603".into(),
            "tvdb://18446744073709551615".into(),
        ];
        assert_eq!(movie.tmdb_id(), Some(603), "the first well-formed id wins");
        assert_eq!(movie.tvdb_id(), Some(u64::MAX));
    }

    #[test]
    fn four_k_is_any_version_whose_resolution_is_4k_in_any_case() {
        let mut movie = item("1");
        assert!(!movie.is_4k());
        movie.video_resolutions = vec!["1080".into(), "sd".into(), "4K ".into()];
        assert!(!movie.is_4k());
        movie.video_resolutions.push("4K".into());
        assert!(movie.is_4k());
    }

    #[test]
    fn has_more_follows_the_total_and_else_a_full_page() {
        let page = |start: u64, count: usize, total: Option<u64>| LibraryPage {
            items: (0..count).map(|n| item(&n.to_string())).collect(),
            start,
            total_size: total,
        };
        // With a total: whether the next page would start before its end.
        assert!(page(0, 2, Some(5)).has_more(2));
        assert!(page(2, 2, Some(5)).has_more(2));
        assert!(!page(4, 1, Some(5)).has_more(2));
        assert!(!page(0, 2, Some(2)).has_more(2));
        assert!(!page(0, 0, Some(0)).has_more(2));
        // Skipped entries do not end a pass early when the total is known.
        assert!(page(0, 1, Some(5)).has_more(2));
        // Without a total: a full page may have a successor.
        assert!(page(0, 2, None).has_more(2));
        assert!(!page(0, 1, None).has_more(2));
        assert!(!page(0, 0, None).has_more(2));
        // A server that ignored the paging sent everything: nothing more to ask for.
        assert!(!page(0, 5, Some(500)).has_more(2));
        assert!(!page(0, 5, None).has_more(2));
        // Size 0 asks for the total only.
        assert!(!page(0, 0, Some(5)).has_more(0));
        assert!(!page(u64::MAX, 1, Some(u64::MAX)).has_more(2));
    }

    #[test]
    fn is_server_reads_the_provides_list() {
        let mut resource = PlexResource {
            name: "Box".into(),
            client_identifier: "m".into(),
            provides: "client, server".into(),
            owned: true,
        };
        assert!(resource.is_server());
        resource.provides = "client,player,pubsub-player".into();
        assert!(!resource.is_server());
    }
}
