//! Async client for the part of Overseerr's API that MediaNest uses.
//!
//! This module owns the wire shapes and the HTTP calls of the Overseerr forwarder and
//! reconciler sagas (`../shared/DESIGN.md` §6): creating a request, reading one back, and
//! finding the request that already exists when Overseerr refuses a duplicate.
//!
//! The contract is Overseerr's own OpenAPI document, `../shared/contracts/overseerr-api.yml`
//! (its `servers` entry is `{server}/api/v1`, so spec paths such as `POST /request` are sent to
//! `<base_url>/api/v1/request`). Where the document is silent — error answers, the `type`,
//! `mediaType` and `status4k` fields, request status 4 — the shapes come from Overseerr's
//! source (`sct/overseerr`, `server/routes/request.ts`, `server/entity/*.ts`,
//! `server/constants/media.ts`) and are marked as such.
//!
//! Invariants:
//! - every call carries `X-Api-Key` (marked sensitive, never logged) and
//!   `Accept: application/json`, and is bounded by [`OverseerrConfig::timeout`];
//! - the client never retries: the saga owns retries, backoff and the circuit breaker, and
//!   every failure is returned as an [`OverseerrError`] that keeps the HTTP status;
//! - responses are read leniently: unknown fields are ignored and `null` is accepted wherever
//!   a value is optional, because Overseerr serialises its database entities as they are.

use std::fmt;
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Page size used by [`OverseerrClient::find_request`] (`take` of `GET /request`).
const FIND_PAGE_SIZE: u64 = 100;

/// Longest excerpt of an unexpected response body kept in an error.
const MAX_BODY_EXCERPT: usize = 512;

/// Where and how to reach Overseerr.
#[derive(Clone)]
pub struct OverseerrConfig {
    /// Overseerr's base URL *without* `/api/v1` (e.g. `http://overseerr:5055` or
    /// `https://home.example/overseerr`); the spec's `servers` entry `{server}/api/v1` is
    /// appended by the client.
    pub base_url: Url,
    /// The API key from Overseerr's *Settings → General*, sent as `X-Api-Key`
    /// (overseerr-api.yml, `components.securitySchemes.apiKey`). It acts as Overseerr's
    /// first administrator, so requests it creates are approved at once.
    pub api_key: String,
    /// Upper bound for one whole call (connect, send, read the answer).
    pub timeout: Duration,
}

impl fmt::Debug for OverseerrConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverseerrConfig")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The kind of media a request is for (overseerr-api.yml, `POST /request`, `mediaType`:
/// `enum: [movie, tv]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    /// A movie (`"movie"`); requests go to Radarr.
    Movie,
    /// A series (`"tv"`); requests go to Sonarr and name seasons.
    Tv,
}

impl MediaType {
    /// The wire name: `"movie"` or `"tv"`.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Movie => "movie",
            MediaType::Tv => "tv",
        }
    }

    /// Parses the wire name; any other value (newer Overseerr forks know more kinds) is `None`.
    pub fn from_wire(value: &str) -> Option<Self> {
        match value {
            "movie" => Some(MediaType::Movie),
            "tv" => Some(MediaType::Tv),
            _ => None,
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which seasons of a series to request (overseerr-api.yml, `POST /request`, `seasons`:
/// `oneOf: [array of number (minimum 0), string enum [all]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seasons {
    /// Every season Overseerr knows of, sent as `"all"`.
    All,
    /// These season numbers (0 is specials), sent as a JSON array.
    List(Vec<u32>),
}

impl Serialize for Seasons {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Seasons::All => serializer.serialize_str("all"),
            Seasons::List(seasons) => seasons.serialize(serializer),
        }
    }
}

/// Body of `POST /api/v1/request` (overseerr-api.yml, `POST /request`, `requestBody`).
///
/// Serialised with the spec's names — `mediaType`, `mediaId`, `tvdbId`, `seasons`, `is4k` —
/// and without the fields that are `None`. The spec's optional `serverId`, `profileId`,
/// `rootFolder`, `languageProfileId` and `userId` are not sent: Overseerr then uses its
/// default Radarr/Sonarr server and acts as the API key's user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateRequest {
    /// `mediaType`: movie or tv (required by the spec).
    #[serde(rename = "mediaType")]
    pub media_type: MediaType,
    /// `mediaId`: the TMDB id of the movie or series (required by the spec).
    #[serde(rename = "mediaId")]
    pub media_id: u64,
    /// `tvdbId`: the TheTVDB id of a series, if known (Overseerr looks it up otherwise).
    #[serde(rename = "tvdbId", skip_serializing_if = "Option::is_none")]
    pub tvdb_id: Option<u64>,
    /// `seasons`: required in practice for tv — Overseerr answers 500 without it — and
    /// ignored for movies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seasons: Option<Seasons>,
    /// `is4k`: request the 4K version (sent to the 4K Radarr/Sonarr).
    #[serde(rename = "is4k")]
    pub is_4k: bool,
}

/// Numbers of `MediaRequest.status`.
///
/// overseerr-api.yml, `components.schemas.MediaRequest.status`: "1 = PENDING APPROVAL,
/// 2 = APPROVED, 3 = DECLINED". Overseerr's source (`server/constants/media.ts`,
/// `MediaRequestStatus`) adds 4 = FAILED, set when Radarr/Sonarr refused the request.
pub mod request_status {
    /// 1 — waiting for an Overseerr admin to approve it.
    pub const PENDING_APPROVAL: u8 = 1;
    /// 2 — approved (and sent to Radarr/Sonarr); availability is tracked on the media.
    pub const APPROVED: u8 = 2;
    /// 3 — declined by an Overseerr admin.
    pub const DECLINED: u8 = 3;
    /// 4 — Radarr/Sonarr refused it (source only; not in the spec).
    pub const FAILED: u8 = 4;
}

/// Numbers of `MediaInfo.status` and `status4k`.
///
/// overseerr-api.yml, `components.schemas.MediaInfo.status`: "1 = `UNKNOWN`, 2 = `PENDING`,
/// 3 = `PROCESSING`, 4 = `PARTIALLY_AVAILABLE`, 5 = `AVAILABLE`" (the same as
/// `MediaStatus` in `server/constants/media.ts`).
pub mod media_status {
    /// 1 — nothing requested or known.
    pub const UNKNOWN: u8 = 1;
    /// 2 — requested, not approved yet.
    pub const PENDING: u8 = 2;
    /// 3 — approved and handed to Radarr/Sonarr, not in Plex yet.
    pub const PROCESSING: u8 = 3;
    /// 4 — some seasons of a series are in Plex.
    pub const PARTIALLY_AVAILABLE: u8 = 4;
    /// 5 — in Plex.
    pub const AVAILABLE: u8 = 5;
}

/// The fields of overseerr-api.yml's `components.schemas.MediaRequest` that MediaNest needs.
///
/// Answer of `POST /request` (201), `GET /request/{requestId}` (200) and the `results` of
/// `GET /request`. Unknown fields are ignored; `null` is accepted for every optional field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OverseerrRequest {
    /// `id`: Overseerr's request id (what `GET /request/{requestId}` takes).
    pub id: u64,
    /// `status`: see [`request_status`] (1 pending approval, 2 approved, 3 declined, 4 failed).
    pub status: u8,
    /// `is4k` (the spec's name): whether this is the 4K request.
    #[serde(rename = "is4k", default, deserialize_with = "null_as_default")]
    pub is_4k: bool,
    /// `type`: `movie` or `tv`. Not in the spec's `MediaRequest` schema but sent by every
    /// Overseerr (`server/entity/MediaRequest.ts`); `None` when absent or unknown.
    #[serde(rename = "type", default, deserialize_with = "lenient_media_type")]
    pub request_type: Option<MediaType>,
    /// `media`: the `MediaInfo` the request is for.
    #[serde(default)]
    pub media: Option<OverseerrMedia>,
    /// `createdAt`: ISO-8601 timestamp, as sent.
    #[serde(rename = "createdAt", default)]
    pub created_at: Option<String>,
    /// `updatedAt`: ISO-8601 timestamp, as sent.
    #[serde(rename = "updatedAt", default)]
    pub updated_at: Option<String>,
}

impl OverseerrRequest {
    /// The media type: `media.mediaType`, else the request's own `type`.
    pub fn media_type(&self) -> Option<MediaType> {
        self.media
            .as_ref()
            .and_then(|media| media.media_type)
            .or(self.request_type)
    }

    /// The TMDB id of the requested media (`media.tmdbId`).
    pub fn tmdb_id(&self) -> Option<u64> {
        self.media.as_ref().and_then(|media| media.tmdb_id)
    }

    /// The availability that concerns this request: `media.status4k` for a 4K request,
    /// `media.status` otherwise (see [`media_status`]); `None` without `media`.
    pub fn media_status(&self) -> Option<u8> {
        self.media.as_ref().map(|media| {
            if self.is_4k {
                media.status_4k
            } else {
                media.status
            }
        })
    }

    /// Whether this request is for `(media_type, tmdb_id, is_4k)` — the key Overseerr uses to
    /// refuse duplicates (`server/entity/MediaRequest.ts`, `MediaRequest.request`).
    pub fn is_for(&self, media_type: MediaType, tmdb_id: u64, is_4k: bool) -> bool {
        self.tmdb_id() == Some(tmdb_id)
            && self.media_type() == Some(media_type)
            && self.is_4k == is_4k
    }
}

/// The fields of overseerr-api.yml's `components.schemas.MediaInfo` that MediaNest needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OverseerrMedia {
    /// `id`: Overseerr's media id (not the TMDB id); 0 when absent.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: u64,
    /// `tmdbId`: the TMDB id.
    #[serde(rename = "tmdbId", default)]
    pub tmdb_id: Option<u64>,
    /// `tvdbId` (nullable in the spec): the TheTVDB id, for series.
    #[serde(rename = "tvdbId", default)]
    pub tvdb_id: Option<u64>,
    /// `mediaType`: not in the spec's `MediaInfo` schema but sent by every Overseerr
    /// (`server/entity/Media.ts`); `None` when absent or unknown.
    #[serde(rename = "mediaType", default, deserialize_with = "lenient_media_type")]
    pub media_type: Option<MediaType>,
    /// `status`: availability of the non-4K version, see [`media_status`]; 1 (unknown) when
    /// absent.
    #[serde(default = "unknown_status", deserialize_with = "status_or_unknown")]
    pub status: u8,
    /// `status4k`: availability of the 4K version, see [`media_status`]; not in the spec's
    /// `MediaInfo` schema but sent by every Overseerr; 1 (unknown) when absent.
    #[serde(
        rename = "status4k",
        default = "unknown_status",
        deserialize_with = "status_or_unknown"
    )]
    pub status_4k: u8,
}

/// overseerr-api.yml, `components.schemas.PageInfo` (plus `pageSize`, which Overseerr sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PageInfo {
    /// `page`: 1-based page number.
    #[serde(default, deserialize_with = "null_as_default")]
    pub page: u64,
    /// `pages`: number of pages.
    #[serde(default, deserialize_with = "null_as_default")]
    pub pages: u64,
    /// `results`: number of matching requests over all pages.
    #[serde(default, deserialize_with = "null_as_default")]
    pub results: u64,
    /// `pageSize`: the `take` Overseerr applied (source only).
    #[serde(rename = "pageSize", default)]
    pub page_size: Option<u64>,
}

/// One page of `GET /request` (overseerr-api.yml, `GET /request`, response 200).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RequestPage {
    /// `pageInfo`.
    #[serde(rename = "pageInfo")]
    pub page_info: PageInfo,
    /// `results`: the requests of this page.
    #[serde(default)]
    pub results: Vec<OverseerrRequest>,
}

/// Query of `GET /request` (overseerr-api.yml, `GET /request`, `parameters`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequests {
    /// `take`: page size.
    pub take: u64,
    /// `skip`: number of requests to skip.
    pub skip: u64,
    /// `filter`: one of the spec's `all, approved, available, pending, processing,
    /// unavailable, failed`.
    pub filter: &'static str,
    /// `sort`: `added` (newest request first) or `modified` (latest change first).
    pub sort: &'static str,
}

impl Default for ListRequests {
    fn default() -> Self {
        Self {
            take: FIND_PAGE_SIZE,
            skip: 0,
            filter: "all",
            sort: "added",
        }
    }
}

/// Why a call to Overseerr failed.
///
/// Callers match on the variant; [`OverseerrError::is_retryable`] says whether trying again
/// later can help (the saga's retry policy of DESIGN.md §6).
#[derive(Debug, thiserror::Error)]
pub enum OverseerrError {
    /// Overseerr answered with an unexpected HTTP status. `message` is the `message` (or
    /// `error`) field of its JSON error body — Overseerr answers `{"message": …}` from its
    /// error handler and `{"status": 403, "error": …}` from its permission check — or an
    /// excerpt of a non-JSON body.
    #[error("Overseerr answered HTTP {status}{}", fmt_message(.message))]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The error message Overseerr gave, if any.
        message: Option<String>,
    },
    /// Overseerr already has a request for this `(mediaType, mediaId, is4k)`: the 409
    /// "Request for this media already exists." of `POST /request`, or its 202 "No seasons
    /// available to request" when every requested season of a series is already requested.
    /// Resolve it with [`OverseerrClient::find_request`].
    #[error("Overseerr already has this request: {message}")]
    AlreadyExists {
        /// Overseerr's message.
        message: String,
    },
    /// No complete answer within [`OverseerrConfig::timeout`].
    #[error("Overseerr did not answer in time")]
    Timeout,
    /// The connection could not be made, or broke before a complete answer arrived.
    #[error("could not reach Overseerr: {0}")]
    Connect(String),
    /// The answer was not the JSON the spec describes.
    #[error("unexpected answer from Overseerr: {0}")]
    Decode(String),
    /// The [`OverseerrConfig`] cannot be used (bad URL, empty or invalid API key, zero timeout).
    #[error("invalid Overseerr configuration: {0}")]
    InvalidConfig(String),
}

impl OverseerrError {
    /// Whether the same call may succeed later: timeouts, connection failures and the
    /// retryable statuses of [`OverseerrError::status_is_retryable`]. Never for
    /// `AlreadyExists`, `Decode` or `InvalidConfig`.
    pub fn is_retryable(&self) -> bool {
        match self {
            OverseerrError::Status { status, .. } => Self::status_is_retryable(*status),
            OverseerrError::Timeout | OverseerrError::Connect(_) => true,
            OverseerrError::AlreadyExists { .. }
            | OverseerrError::Decode(_)
            | OverseerrError::InvalidConfig(_) => false,
        }
    }

    /// Whether an HTTP status is transient: 5xx, 408 Request Timeout and 429 Too Many
    /// Requests. Other 4xx answers repeat themselves and are not retried.
    pub fn status_is_retryable(status: u16) -> bool {
        matches!(status, 500..=599 | 408 | 429)
    }

    /// The HTTP status Overseerr answered, for `Status` (and 409 for `AlreadyExists`).
    pub fn status(&self) -> Option<u16> {
        match self {
            OverseerrError::Status { status, .. } => Some(*status),
            OverseerrError::AlreadyExists { .. } => Some(StatusCode::CONFLICT.as_u16()),
            _ => None,
        }
    }
}

fn fmt_message(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|message| format!(": {message}"))
        .unwrap_or_default()
}

/// Client for Overseerr's `/api/v1`. Cheap to clone (one shared connection pool).
#[derive(Clone)]
pub struct OverseerrClient {
    http: reqwest::Client,
    api_base: Url,
}

impl fmt::Debug for OverseerrClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverseerrClient")
            .field("api_base", &self.api_base.as_str())
            .finish_non_exhaustive()
    }
}

impl OverseerrClient {
    /// Builds a client for `cfg`.
    ///
    /// # Errors
    ///
    /// [`OverseerrError::InvalidConfig`] when the base URL is not `http(s)`, has a query or
    /// fragment, or already ends in `/api/v1`; when the API key is empty or not a valid header
    /// value; when the timeout is zero; or when the HTTP client cannot be built.
    pub fn new(cfg: OverseerrConfig) -> Result<Self, OverseerrError> {
        let api_base = api_base(&cfg.base_url)?;
        if cfg.timeout.is_zero() {
            return Err(OverseerrError::InvalidConfig(
                "timeout must be greater than zero".to_string(),
            ));
        }
        if cfg.api_key.trim().is_empty() {
            return Err(OverseerrError::InvalidConfig(
                "API key is empty".to_string(),
            ));
        }
        let mut api_key = HeaderValue::from_str(&cfg.api_key).map_err(|_| {
            OverseerrError::InvalidConfig("API key is not a valid header value".to_string())
        })?;
        api_key.set_sensitive(true);

        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", api_key);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));

        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("medianest/", env!("CARGO_PKG_VERSION")))
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .build()
            .map_err(|err| OverseerrError::InvalidConfig(err.to_string()))?;
        Ok(Self { http, api_base })
    }

    /// The API root the client calls, `<base_url>/api/v1/`.
    pub fn api_base(&self) -> &Url {
        &self.api_base
    }

    /// Creates an Overseerr request: overseerr-api.yml, `POST /request` (answer 201,
    /// `MediaRequest`).
    ///
    /// With the admin API key Overseerr approves the request at once (`status` 2).
    ///
    /// # Errors
    ///
    /// [`OverseerrError::AlreadyExists`] on 409 (movie already requested) and on Overseerr's
    /// 202 "No seasons available to request" (every season already requested) — resolve it
    /// with [`OverseerrClient::find_request`]; [`OverseerrError::Status`] on any other status
    /// (403: permission or quota; 500: e.g. unknown TMDB id or tv without seasons); and the
    /// transport errors.
    #[tracing::instrument(
        name = "overseerr.create_request",
        skip_all,
        fields(media_type = %req.media_type, tmdb_id = req.media_id, is_4k = req.is_4k)
    )]
    pub async fn create_request(
        &self,
        req: &CreateRequest,
    ) -> Result<OverseerrRequest, OverseerrError> {
        let url = self.endpoint(&["request"])?;
        let answer = self.send(self.http.post(url).json(req)).await?;
        match answer.status {
            StatusCode::CREATED | StatusCode::OK => answer.json(),
            // Overseerr's error handler passes `NoSeasonsAvailableError` on as a 202 with
            // `{"message": …}` and no request (server/routes/request.ts).
            StatusCode::CONFLICT | StatusCode::ACCEPTED => Err(OverseerrError::AlreadyExists {
                message: answer
                    .message()
                    .unwrap_or_else(|| "Request for this media already exists.".to_string()),
            }),
            _ => Err(answer.into_status_error()),
        }
    }

    /// Reads one request: overseerr-api.yml, `GET /request/{requestId}` (answer 200,
    /// `MediaRequest`).
    ///
    /// # Errors
    ///
    /// [`OverseerrError::Status`] with 404 ("Request not found.") for an unknown id, any other
    /// unexpected status, and the transport errors.
    #[tracing::instrument(name = "overseerr.get_request", skip(self))]
    pub async fn get_request(&self, id: u64) -> Result<OverseerrRequest, OverseerrError> {
        let url = self.endpoint(&["request", &id.to_string()])?;
        let answer = self.send(self.http.get(url)).await?;
        match answer.status {
            StatusCode::OK => answer.json(),
            _ => Err(answer.into_status_error()),
        }
    }

    /// Reads one page of requests: overseerr-api.yml, `GET /request` with `take`, `skip`,
    /// `filter` and `sort` (answer 200, `{pageInfo, results}`).
    ///
    /// # Errors
    ///
    /// [`OverseerrError::Status`] on any status but 200, and the transport errors.
    #[tracing::instrument(name = "overseerr.list_requests", skip(self))]
    pub async fn list_requests(&self, query: &ListRequests) -> Result<RequestPage, OverseerrError> {
        let mut url = self.endpoint(&["request"])?;
        url.query_pairs_mut()
            .append_pair("take", &query.take.to_string())
            .append_pair("skip", &query.skip.to_string())
            .append_pair("filter", query.filter)
            .append_pair("sort", query.sort);
        let answer = self.send(self.http.get(url)).await?;
        match answer.status {
            StatusCode::OK => answer.json(),
            _ => Err(answer.into_status_error()),
        }
    }

    /// Finds the request for `(media_type, tmdb_id, is_4k)` — how the forwarder resolves an
    /// [`OverseerrError::AlreadyExists`] answer.
    ///
    /// Pages through overseerr-api.yml's `GET /request` (`take=100`, `skip=N`, `filter=all`,
    /// `sort=added`, i.e. newest first) and compares `media.tmdbId`, the media type
    /// (`media.mediaType`, else the request's `type`) and `is4k`. The newest match that is not
    /// declined wins (a declined request does not block a new one in Overseerr); failing that,
    /// the newest declined match.
    ///
    /// # Errors
    ///
    /// As [`OverseerrClient::list_requests`].
    #[tracing::instrument(name = "overseerr.find_request", skip(self))]
    pub async fn find_request(
        &self,
        media_type: MediaType,
        tmdb_id: u64,
        is_4k: bool,
    ) -> Result<Option<OverseerrRequest>, OverseerrError> {
        let mut query = ListRequests::default();
        let mut declined = None;
        loop {
            let page = self.list_requests(&query).await?;
            let fetched = page.results.len() as u64;
            for request in page.results {
                if !request.is_for(media_type, tmdb_id, is_4k) {
                    continue;
                }
                if request.status != request_status::DECLINED {
                    return Ok(Some(request));
                }
                declined.get_or_insert(request);
            }
            query.skip += fetched;
            if fetched == 0 || query.skip >= page.page_info.results {
                return Ok(declined);
            }
        }
    }

    fn endpoint(&self, segments: &[&str]) -> Result<Url, OverseerrError> {
        let mut url = self.api_base.clone();
        url.path_segments_mut()
            .map_err(|()| OverseerrError::InvalidConfig("base URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, OverseerrError> {
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport_error)?;
        tracing::debug!(status = status.as_u16(), "overseerr answered");
        Ok(Answer {
            status,
            body: body.to_vec(),
        })
    }
}

/// A complete answer: status and body.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl Answer {
    fn json<T: DeserializeOwned>(&self) -> Result<T, OverseerrError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            OverseerrError::Decode(format!(
                "HTTP {}: {err}; body: {}",
                self.status.as_u16(),
                excerpt(&self.body)
            ))
        })
    }

    /// The `message` (or `error`) of a JSON error body, else an excerpt of the body.
    fn message(&self) -> Option<String> {
        let from_json = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|body| {
                ["message", "error"].iter().find_map(|key| {
                    body.get(key)
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_string)
                })
            });
        from_json.or_else(|| {
            let text = excerpt(&self.body);
            (!text.trim().is_empty()).then_some(text)
        })
    }

    fn into_status_error(self) -> OverseerrError {
        OverseerrError::Status {
            status: self.status.as_u16(),
            message: self.message(),
        }
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(MAX_BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

fn transport_error(err: reqwest::Error) -> OverseerrError {
    if err.is_timeout() {
        OverseerrError::Timeout
    } else if err.is_decode() {
        OverseerrError::Decode(err.to_string())
    } else {
        // Connection refused or reset, TLS failure, connection closed before the answer was
        // complete: all of them mean "Overseerr could not be reached properly".
        OverseerrError::Connect(error_chain(&err))
    }
}

/// The error and its sources, so "connection refused" is not hidden behind "error sending
/// request".
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `<base_url>/api/v1/`, refusing URLs the client cannot append paths to.
fn api_base(base_url: &Url) -> Result<Url, OverseerrError> {
    if !matches!(base_url.scheme(), "http" | "https") {
        return Err(OverseerrError::InvalidConfig(format!(
            "base URL must be http or https, not {}",
            base_url.scheme()
        )));
    }
    if base_url.query().is_some() || base_url.fragment().is_some() {
        return Err(OverseerrError::InvalidConfig(
            "base URL must not have a query or fragment".to_string(),
        ));
    }
    if base_url.path().trim_end_matches('/').ends_with("/api/v1") {
        return Err(OverseerrError::InvalidConfig(
            "base URL must not include /api/v1 (the client appends it)".to_string(),
        ));
    }
    let mut api_base = base_url.clone();
    api_base
        .path_segments_mut()
        .map_err(|()| OverseerrError::InvalidConfig("base URL cannot have a path".into()))?
        .pop_if_empty()
        .extend(["api", "v1", ""]);
    Ok(api_base)
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn unknown_status() -> u8 {
    media_status::UNKNOWN
}

fn status_or_unknown<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    Ok(Option::<u8>::deserialize(deserializer)?.unwrap_or(media_status::UNKNOWN))
}

fn lenient_media_type<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<MediaType>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?
        .as_deref()
        .and_then(MediaType::from_wire))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(base_url: &str) -> OverseerrConfig {
        OverseerrConfig {
            base_url: Url::parse(base_url).unwrap(),
            api_key: "key".to_string(),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_movie_request_uses_the_specs_camel_case_names_and_omits_absent_fields() {
        let body = CreateRequest {
            media_type: MediaType::Movie,
            media_id: 603,
            tvdb_id: None,
            seasons: None,
            is_4k: false,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"mediaType": "movie", "mediaId": 603, "is4k": false})
        );
    }

    #[test]
    fn tv_seasons_are_a_list_or_the_string_all() {
        let mut body = CreateRequest {
            media_type: MediaType::Tv,
            media_id: 1399,
            tvdb_id: Some(121361),
            seasons: Some(Seasons::List(vec![1, 2])),
            is_4k: true,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"mediaType": "tv", "mediaId": 1399, "tvdbId": 121361, "seasons": [1, 2], "is4k": true})
        );
        body.seasons = Some(Seasons::All);
        assert_eq!(
            serde_json::to_value(&body).unwrap()["seasons"],
            json!("all")
        );
    }

    #[test]
    fn a_media_request_with_nulls_and_unknown_fields_is_read() {
        let request: OverseerrRequest = serde_json::from_value(json!({
            "id": 7, "status": 2, "is4k": null, "type": "movie", "serverId": null,
            "createdAt": "2020-09-12T10:00:27.000Z", "modifiedBy": null, "tags": null,
            "media": {"id": 3, "tmdbId": 603, "tvdbId": null, "mediaType": "movie",
                      "status": 3, "status4k": null, "imdbId": null, "downloadStatus": []}
        }))
        .unwrap();
        assert_eq!(request.id, 7);
        assert!(!request.is_4k);
        assert_eq!(request.media_type(), Some(MediaType::Movie));
        assert_eq!(request.media_status(), Some(media_status::PROCESSING));
        let media = request.media.unwrap();
        assert_eq!(media.tvdb_id, None);
        assert_eq!(media.status_4k, media_status::UNKNOWN);
    }

    #[test]
    fn the_media_type_falls_back_to_the_request_type_and_tolerates_unknown_kinds() {
        let request: OverseerrRequest = serde_json::from_value(json!({
            "id": 1, "status": 1, "type": "tv", "media": {"id": 1, "tmdbId": 5, "mediaType": "music"}
        }))
        .unwrap();
        assert_eq!(request.media_type(), Some(MediaType::Tv));
        assert!(request.is_for(MediaType::Tv, 5, false));
    }

    #[test]
    fn retryable_statuses_are_5xx_408_and_429_only() {
        for status in [500, 502, 503, 504, 408, 429] {
            assert!(OverseerrError::status_is_retryable(status), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 422] {
            assert!(!OverseerrError::status_is_retryable(status), "{status}");
        }
        assert!(OverseerrError::Timeout.is_retryable());
        assert!(OverseerrError::Connect("refused".into()).is_retryable());
        assert!(!OverseerrError::AlreadyExists {
            message: "x".into()
        }
        .is_retryable());
        assert!(!OverseerrError::Decode("x".into()).is_retryable());
    }

    #[test]
    fn the_api_root_is_appended_to_the_base_url_with_or_without_a_path() {
        let client = OverseerrClient::new(config("http://overseerr:5055")).unwrap();
        assert_eq!(client.api_base().as_str(), "http://overseerr:5055/api/v1/");
        let client = OverseerrClient::new(config("https://home.example/overseerr/")).unwrap();
        assert_eq!(
            client.endpoint(&["request", "12"]).unwrap().as_str(),
            "https://home.example/overseerr/api/v1/request/12"
        );
    }

    #[test]
    fn unusable_configurations_are_refused() {
        for url in [
            "http://overseerr:5055/api/v1",
            "ftp://overseerr",
            "http://o/?a=b",
        ] {
            assert!(matches!(
                OverseerrClient::new(config(url)),
                Err(OverseerrError::InvalidConfig(_))
            ));
        }
        let mut cfg = config("http://overseerr:5055");
        cfg.api_key = " ".into();
        assert!(matches!(
            OverseerrClient::new(cfg),
            Err(OverseerrError::InvalidConfig(_))
        ));
    }

    #[test]
    fn the_api_key_never_appears_in_debug_output() {
        let mut cfg = config("http://overseerr:5055");
        cfg.api_key = "s3cret".into();
        assert!(!format!("{cfg:?}").contains("s3cret"));
        let client = OverseerrClient::new(cfg).unwrap();
        assert!(!format!("{client:?}").contains("s3cret"));
    }
}
