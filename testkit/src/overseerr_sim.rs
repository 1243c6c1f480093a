//! A faithful, in-process simulator of the Overseerr API that MediaNest calls, and of the
//! webhooks Overseerr sends back.
//!
//! This module owns the simulator's HTTP server, its request/media state, its catalogue (what
//! TMDB knows), its control API for tests and its webhook sender. It follows the contract,
//! `overseerr-api.yml` in the contracts directory (`MEDIANEST_CONTRACTS_DIR`, default
//! `../shared/contracts`; see [`crate::contracts`]), and, where the spec is silent,
//! Overseerr's source (`sct/overseerr`):
//!
//! - **Gate** (in the order Overseerr's express middleware runs): every call is recorded
//!   ([`OverseerrSim::received`]); the configured delay and injected answers
//!   ([`OverseerrSim::fail_next`], [`OverseerrSim::answer_next_raw`]) apply; a path or
//!   method outside the spec answers 404/405; no `X-Api-Key` (and no session cookie) answers
//!   401 `{"message": "cookie 'connect.sid' required", "errors": […]}` like
//!   express-openapi-validator; a query or JSON body that does not fit the spec answers 400
//!   `{"message", "errors"}` **and is recorded as a contract violation**
//!   ([`OverseerrSim::violations`]); a wrong key answers 403
//!   `{"status": 403, "error": "You do not have permission to access this endpoint"}`
//!   (`server/middleware/auth.ts`).
//! - **`POST /api/v1/request`** (`server/entity/MediaRequest.ts`, `MediaRequest.request`):
//!   a movie with a non-declined request for the same `(mediaType, mediaId, is4k)` answers
//!   409 `{"message": "Request for this media already exists."}`; a series answers 202
//!   `{"message": "No seasons available to request"}` when every requested season is already
//!   requested, and 500 when `seasons` is missing (Overseerr crashes on it; also recorded as a
//!   violation). Otherwise 201 with a `MediaRequest` (ids from 1), status 2 (approved, as for
//!   the admin API key) or 1 when auto-approve is off. Like Overseerr, the 201 shows the media
//!   as `PENDING` (2) and an approved request then moves the stored media to `PROCESSING` (3),
//!   which the next `GET` shows.
//! - **`DELETE /api/v1/request/{requestId}`** removes a request (204; 404
//!   `{"message": "Request not found."}` for an unknown one), as for the admin API key.
//! - **`GET /api/v1/request/{requestId}`** (404 `{"message": "Request not found."}`) and
//!   **`GET /api/v1/request`** (`take` default 10, `skip`, `filter`, `sort` with the source's
//!   semantics: `added` is newest id first; `pageInfo {pages, pageSize, results, page}`).
//! - **Catalogue** (`server/routes/{search,discover,movie,tv}.ts`, `server/models/*.ts`),
//!   answered from a catalogue seeded with real titles — see [`OverseerrSim::start`] — and
//!   changed with [`OverseerrSim::add_movie`], [`OverseerrSim::add_tv`] and
//!   [`OverseerrSim::remove_catalog_item`]. Pages hold TMDB's 20 results, most popular first,
//!   as `{page, totalPages, totalResults, results}` with `mediaType` `movie`, `tv` or
//!   `person` on every result and `mediaInfo` where a request created media:
//!   - **`GET /api/v1/search`**: movies, series and people whose title or name has a word
//!     starting with each word of `query` (case-insensitive);
//!   - **`GET /api/v1/discover/trending`** (movies, series and people, as TMDB's
//!     `/trending/all`), **`/discover/movies`** and **`/discover/tv`** (every movie or
//!     series), **`/discover/movies/upcoming`** and **`/discover/tv/upcoming`** (release or
//!     first air date on or after today, UTC);
//!   - **`GET /api/v1/movie/{movieId}`** (`MovieDetails` with `externalIds`),
//!     **`GET /api/v1/tv/{tvId}`** (`TvDetails` with `seasons` and `externalIds.tvdbId`) and
//!     **`GET /api/v1/tv/{tvId}/season/{seasonId}`** (`Season` with `episodes`).
//!
//!   Like Overseerr, an id TMDB does not know is **not a 404**: the route's catch answers 500
//!   `{"message": "Unable to retrieve movie."}` (`series.`, `season.`); a page TMDB refuses
//!   (outside 1..=500) is an empty page 1 for `search` and a 500 ("Unable to retrieve popular
//!   movies.", …) for the discover lists. A non-numeric id answers the validator's 400 and is
//!   a violation.
//! - Other spec operations answer 501 and are recorded as violations, so a test notices that
//!   the simulator cannot stand in for them.
//!
//! There is no Radarr/Sonarr behind it: media stays where the last transition put it until a
//! test moves it ([`OverseerrSim::set_media_status`]) or sends a webhook that implies the move
//! ([`OverseerrSim::send_webhook`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail};
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Extension, Json, Router};
use chrono::{Days, NaiveDate, SecondsFormat, Utc};
use medianest_integrations::overseerr::{DiscoverList, MediaType};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::contracts;
use crate::openapi::OpenApiSpec;

/// The API key a simulator started with [`OverseerrSim::start`] accepts.
pub const DEFAULT_API_KEY: &str = "medianest-sim-overseerr-api-key";

/// The spec's `servers` prefix (`{server}/api/v1`).
const API_PREFIX: &str = "/api/v1";

/// Largest request body the simulator reads.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Overseerr's `MediaRequestStatus` (`server/constants/media.ts`).
const REQUEST_PENDING: u8 = 1;
const REQUEST_APPROVED: u8 = 2;
const REQUEST_DECLINED: u8 = 3;
const REQUEST_FAILED: u8 = 4;

/// Overseerr's `MediaStatus` (overseerr-api.yml, `MediaInfo.status`).
const MEDIA_UNKNOWN: u8 = 1;
const MEDIA_PENDING: u8 = 2;
const MEDIA_PROCESSING: u8 = 3;
const MEDIA_PARTIALLY_AVAILABLE: u8 = 4;
const MEDIA_AVAILABLE: u8 = 5;

/// How a simulator behaves; [`Default`] is what MediaNest meets in production.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The accepted `X-Api-Key`.
    pub api_key: String,
    /// Whether new requests are approved at once (status 2), as for Overseerr's admin API
    /// key; otherwise they wait for approval (status 1).
    pub auto_approve: bool,
    /// How many seasons (1..=n) a series has when a request asks for `"all"`.
    pub tv_seasons: u32,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            api_key: DEFAULT_API_KEY.to_string(),
            auto_approve: true,
            tv_seasons: 3,
        }
    }
}

/// One call the simulator received, as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// HTTP method, upper case.
    pub method: String,
    /// Path, with `/api/v1`, without the query.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// All request headers.
    pub headers: HeaderMap,
    /// The body as JSON; `Null` when empty, a JSON string holding the text when not JSON.
    pub body: Value,
}

/// A movie in the simulator's catalogue — what TMDB knows, and so what Overseerr's
/// `GET /search`, `GET /discover/*` and `GET /movie/{movieId}` answer from.
///
/// [`Default`] and [`CatalogMovie::new`] leave everything but the essentials empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogMovie {
    /// TMDB id (`id`).
    pub tmdb_id: u64,
    /// `title` (and `originalTitle`).
    pub title: String,
    /// `releaseDate`, `"YYYY-MM-DD"`; `None` is sent as `""`, TMDB's "unknown". A date on or
    /// after today puts the movie in `GET /discover/movies/upcoming`.
    pub release_date: Option<String>,
    /// `overview`; `None` is sent as `""`, as TMDB does.
    pub overview: Option<String>,
    /// `posterPath`, a TMDB image path such as `"/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"`; `None`
    /// leaves the field out (the spec's `string` is not nullable).
    pub poster_path: Option<String>,
    /// `backdropPath`; `None` leaves the field out.
    pub backdrop_path: Option<String>,
    /// `popularity`: the order of searches and lists (highest first).
    pub popularity: f64,
    /// `imdbId` and `externalIds.imdbId` of the details; `None` leaves `imdbId` out.
    pub imdb_id: Option<String>,
    /// `runtime` in minutes; `None` is sent as 0, TMDB's "unknown".
    pub runtime: Option<u32>,
    /// Genre names (`genres`, and `genreIds` through TMDB's genre ids; unknown names get 0).
    pub genres: Vec<String>,
}

impl CatalogMovie {
    /// A movie with a TMDB id, a title and a release date (`"YYYY-MM-DD"`, or `""` for none);
    /// popularity 0 and nothing else.
    pub fn new(tmdb_id: u64, title: &str, release_date: &str) -> Self {
        Self {
            tmdb_id,
            title: title.to_string(),
            release_date: non_empty(release_date),
            ..Self::default()
        }
    }
}

/// A series in the simulator's catalogue — what `GET /search`, `GET /discover/*`,
/// `GET /tv/{tvId}` and `GET /tv/{tvId}/season/{seasonId}` answer from.
///
/// Seasons are `(season_number, episode_count)`; season 0 is "Specials". Air dates are
/// derived from `first_air_date`: season `n ≥ 1` starts `52 × (n − 1)` weeks after it
/// (specials on it), and episode `e` airs `e − 1` weeks after its season starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogTv {
    /// TMDB id (`id`).
    pub tmdb_id: u64,
    /// TheTVDB id (`externalIds.tvdbId` of the details; `null` when `None`).
    pub tvdb_id: Option<u64>,
    /// `name` (and `originalName`).
    pub name: String,
    /// `firstAirDate`, `"YYYY-MM-DD"`; `None` is sent as `""`. A date on or after today puts
    /// the series in `GET /discover/tv/upcoming`.
    pub first_air_date: Option<String>,
    /// `overview`; `None` is sent as `""`.
    pub overview: Option<String>,
    /// `posterPath`; `None` leaves the field out.
    pub poster_path: Option<String>,
    /// `backdropPath`; `None` leaves the field out.
    pub backdrop_path: Option<String>,
    /// `popularity`: the order of searches and lists (highest first).
    pub popularity: f64,
    /// `(seasonNumber, episodeCount)` of every season, in order.
    pub seasons: Vec<(u32, u32)>,
    /// `status` (TMDB's words: `"Returning Series"`, `"Ended"`, `"In Production"`, …);
    /// `None` is sent as `"Returning Series"`.
    pub status: Option<String>,
    /// Genre names (`genres`, and `genreIds` through TMDB's genre ids; unknown names get 0).
    pub genres: Vec<String>,
}

impl CatalogTv {
    /// A series with a TMDB id, a name, a first air date (`"YYYY-MM-DD"`, or `""` for none)
    /// and `(season_number, episode_count)` seasons; popularity 0 and nothing else.
    pub fn new(tmdb_id: u64, name: &str, first_air_date: &str, seasons: Vec<(u32, u32)>) -> Self {
        Self {
            tmdb_id,
            name: name.to_string(),
            first_air_date: non_empty(first_air_date),
            seasons,
            ..Self::default()
        }
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// A running Overseerr simulator on `127.0.0.1` (random port). Stops when dropped.
pub struct OverseerrSim {
    addr: SocketAddr,
    api_key: String,
    shared: Arc<Shared>,
    http: reqwest::Client,
    server: JoinHandle<()>,
}

impl Drop for OverseerrSim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for OverseerrSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverseerrSim")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl OverseerrSim {
    /// Starts a simulator with [`SimOptions::default`].
    ///
    /// Every simulator starts with this catalogue (TMDB ids; "today" is the start date, UTC):
    ///
    /// | TMDB id | kind (TheTVDB id) | title | date | popularity |
    /// |---|---|---|---|---|
    /// | 603 | movie | The Matrix | 1999-03-31 | 85.3 |
    /// | 604 | movie | The Matrix Reloaded | 2003-05-15 | 45.2 |
    /// | 605 | movie | The Matrix Revolutions | 2003-11-05 | 40.1 |
    /// | 624860 | movie | The Matrix Resurrections | 2021-12-16 | 60.7 |
    /// | 31047 | movie | Matrimony (no images, overview, runtime) | `""` | 1.4 |
    /// | 550 | movie | Fight Club | 1999-10-15 | 70.9 |
    /// | 27205 | movie | Inception | 2010-07-15 | 95.2 |
    /// | 216527 | movie | Avatar 4 (no images) | today + 180 days | 30.5 |
    /// | 1399 | tv (121361) | Game of Thrones | 2011-04-17 | 350.1 |
    /// | 1396 | tv (81189) | Breaking Bad | 2008-01-20 | 280.4 |
    /// | 94997 | tv (371572) | House of the Dragon | 2022-08-21 | 300.2 |
    /// | 224372 | tv (none) | A Knight of the Seven Kingdoms | today + 90 days | 25.0 |
    /// | 6384 | person | Keanu Reeves (known for 603–605) | | 48.0 |
    ///
    /// Seasons (number: episodes): Game of Thrones 0 "Specials": 14, 1–6: 10 each, 7: 7,
    /// 8: 6; Breaking Bad 1: 7, 2–4: 13 each, 5: 16; House of the Dragon 1: 10, 2: 8;
    /// A Knight of the Seven Kingdoms 1: 6.
    ///
    /// # Panics
    ///
    /// When the spec cannot be loaded (see [`crate::contracts`]) or no port can be bound.
    pub async fn start() -> Self {
        Self::start_with(SimOptions::default()).await
    }

    /// Starts a simulator with `options`.
    ///
    /// # Panics
    ///
    /// When the spec cannot be loaded (see [`crate::contracts`]) or no port can be bound.
    pub async fn start_with(options: SimOptions) -> Self {
        let path = contracts::contract(contracts::OVERSEERR_API);
        let spec = OpenApiSpec::load(&path)
            .unwrap_or_else(|err| panic!("{}", contracts::missing(&path, err.root_cause())));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Overseerr simulator on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("the simulator's listener has an address");
        let down = Arc::new(AtomicBool::new(false));
        let api_key = options.api_key.clone();
        let shared = Arc::new(Shared {
            spec,
            down: Arc::clone(&down),
            state: Mutex::new(SimState::new(options)),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let app = router(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let listener = SwitchableListener {
                inner: listener,
                down,
            };
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(error = %err, "the Overseerr simulator stopped");
            }
        });
        Self {
            addr,
            api_key,
            shared,
            http: reqwest::Client::new(),
            server,
        }
    }

    /// Base URL to configure MediaNest with: `http://127.0.0.1:<port>`, without `/api/v1` and
    /// without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `X-Api-Key` the simulator accepts.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The spec the simulator validates against.
    pub fn spec(&self) -> &OpenApiSpec {
        &self.shared.spec
    }

    /// Every call received, in order (calls refused while [`set_down`](Self::set_down) are
    /// not seen and so not recorded).
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// Contract violations seen so far, as `"<METHOD> <path>: <problem>"`. A test that drives
    /// MediaNest against the simulator should end with this empty.
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// The next `n` calls (after being recorded and delayed) answer `status` with
    /// `{"message": "Simulated failure (HTTP <status>)"}`. Replaces an earlier injection
    /// (this one or [`answer_next_raw`](Self::answer_next_raw)); an invalid status is 500.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.inject(n, Injection::Failure(status_or_500(status)));
    }

    /// The next `n` calls (after being recorded and delayed, before any validation) answer
    /// `status` with exactly `body` and `Content-Type: application/json` — for malformed or
    /// unexpected answers (`"<html>"`, `{"results": 3}`). Replaces an earlier injection (this
    /// one or [`fail_next`](Self::fail_next)); an invalid status is 500.
    pub fn answer_next_raw(&self, n: usize, status: u16, body: &str) {
        self.inject(n, Injection::Raw(status_or_500(status), body.to_string()));
    }

    fn inject(&self, n: usize, injection: Injection) {
        self.shared.lock().injection = (n > 0).then_some((n, injection));
    }

    /// Adds `movie` to the catalogue the catalogue routes answer from, replacing the movie
    /// with the same TMDB id, if any.
    pub fn add_movie(&self, movie: CatalogMovie) {
        self.shared.lock().catalog.upsert_movie(movie);
    }

    /// Adds `show` to the catalogue the catalogue routes answer from, replacing the series
    /// with the same TMDB id, if any.
    pub fn add_tv(&self, show: CatalogTv) {
        self.shared.lock().catalog.upsert_tv(show);
    }

    /// Removes a movie or series from the catalogue, so TMDB (and so Overseerr) no longer
    /// knows it: its details answer 500 like an unknown id and searches and lists leave it
    /// out. Requests and media already stored are kept. Whether there was such an item.
    pub fn remove_catalog_item(&self, media_type: MediaType, tmdb_id: u64) -> bool {
        self.shared.lock().catalog.remove(media_type, tmdb_id)
    }

    /// The catalogue's movies, in the order they were added.
    pub fn catalog_movies(&self) -> Vec<CatalogMovie> {
        self.shared.lock().catalog.movies.clone()
    }

    /// The catalogue's series, in the order they were added.
    pub fn catalog_tv(&self) -> Vec<CatalogTv> {
        self.shared.lock().catalog.shows.clone()
    }

    /// Takes the simulator down (or back up). While down, new connections are accepted and
    /// closed at once and open keep-alive connections read end-of-file, so callers see a
    /// connection error without any HTTP answer — not a 503.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// The most calls the simulator was answering at the same time so far (a call counts
    /// from its arrival, through the configured delay, to its answer).
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every call waits this long before it is answered (zero: no wait).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().delay = delay;
    }

    /// Whether new requests are approved at once (status 2) or wait (status 1).
    pub fn set_auto_approve(&self, auto_approve: bool) {
        self.shared.lock().options.auto_approve = auto_approve;
    }

    /// Sets the availability of the media of request `request_id` — `status4k` for a 4K
    /// request, `status` otherwise — with nothing else changed (see
    /// [`send_webhook`](Self::send_webhook) for the consistent transitions).
    ///
    /// # Errors
    ///
    /// When there is no such request.
    pub fn set_media_status(&self, request_id: u64, media_status: u8) -> anyhow::Result<()> {
        let mut state = self.shared.lock();
        let (media_id, is_4k) = {
            let request = state.store.request(request_id)?;
            (request.media_id, request.is_4k)
        };
        let media = state.store.media_mut(media_id)?;
        *media.status_for(is_4k) = media_status;
        media.updated_at = now();
        Ok(())
    }

    /// Sets `status` of request `request_id` (and of its seasons), nothing else changed.
    ///
    /// # Errors
    ///
    /// When there is no such request.
    pub fn set_request_status(&self, request_id: u64, status: u8) -> anyhow::Result<()> {
        let mut state = self.shared.lock();
        state.store.request_mut(request_id)?.set_status(status);
        Ok(())
    }

    /// The stored requests, as `GET /api/v1/request/{requestId}` would answer them, by id.
    pub fn requests(&self) -> Vec<Value> {
        let state = self.shared.lock();
        state
            .store
            .requests
            .iter()
            .map(|request| state.store.render_request(request))
            .collect()
    }

    /// The webhook body Overseerr's default template would send for `notification_type`
    /// about request `request_id`, in the state the notification implies (e.g. media status
    /// `"AVAILABLE"` for `MEDIA_AVAILABLE`) — without changing the simulator's state. For
    /// tampering in tests; see [`send_webhook`](Self::send_webhook) for the rendering.
    ///
    /// # Errors
    ///
    /// When the notification type is not simulated or the request is unknown.
    pub fn webhook_payload(
        &self,
        notification_type: &str,
        request_id: u64,
    ) -> anyhow::Result<Value> {
        let mut store = self.shared.lock().store.clone();
        let notification = Notification::parse(notification_type)?;
        store.apply(notification, request_id)?;
        store.webhook_payload(notification, request_id)
    }

    /// Applies what `notification_type` means to request `request_id`, then POSTs the
    /// webhook Overseerr would send to `url`, with `Authorization: <authorization>` (no header
    /// when empty — Overseerr's "Authorization Header" setting).
    ///
    /// Transitions (from `server/entity/MediaRequest.ts` and `server/subscriber/MediaSubscriber.ts`):
    /// `MEDIA_PENDING` → request 1; `MEDIA_APPROVED`/`MEDIA_AUTO_APPROVED` → request 2 and
    /// media `PROCESSING` unless already (partially) available; `MEDIA_DECLINED` → request 3
    /// and media back to `UNKNOWN` (series: only if nothing else is pending); `MEDIA_FAILED` →
    /// request 4; `MEDIA_AVAILABLE` → media 5 and pending requests for it approved;
    /// `MEDIA_AUTO_REQUESTED` and `TEST_NOTIFICATION` change nothing (the latter ignores
    /// `request_id` and has `media`/`request` null).
    ///
    /// The body is Overseerr's **default webhook JSON payload** as of v1.34.0 (`sct/overseerr`,
    /// `server/lib/settings.ts`, `notifications.agents.webhook.options.jsonPayload`, base64 of
    /// a JSON string; the `*_settings_*` keys arrived with #3538 in July 2023, so instances
    /// set up earlier keep a template without them), rendered by
    /// `server/lib/notifications/agents/webhook.ts` — every placeholder is replaced inside a
    /// string, so every value is a string:
    ///
    /// ```json
    /// {
    ///   "notification_type": "{{notification_type}}",
    ///   "event": "{{event}}",
    ///   "subject": "{{subject}}",
    ///   "message": "{{message}}",
    ///   "image": "{{image}}",
    ///   "{{media}}": {
    ///     "media_type": "{{media_type}}",
    ///     "tmdbId": "{{media_tmdbid}}",
    ///     "tvdbId": "{{media_tvdbid}}",
    ///     "status": "{{media_status}}",
    ///     "status4k": "{{media_status4k}}"
    ///   },
    ///   "{{request}}": {
    ///     "request_id": "{{request_id}}",
    ///     "requestedBy_email": "{{requestedBy_email}}",
    ///     "requestedBy_username": "{{requestedBy_username}}",
    ///     "requestedBy_avatar": "{{requestedBy_avatar}}",
    ///     "requestedBy_settings_discordId": "{{requestedBy_settings_discordId}}",
    ///     "requestedBy_settings_telegramChatId": "{{requestedBy_settings_telegramChatId}}"
    ///   },
    ///   "{{issue}}": { "issue_id": "{{issue_id}}", … },
    ///   "{{comment}}": { "comment_message": "{{comment_message}}", … },
    ///   "{{extra}}": []
    /// }
    /// ```
    ///
    /// `{{media}}`, `{{request}}`, `{{issue}}` and `{{comment}}` become `media`, `request`,
    /// `issue` and `comment`, or `null` when the notification has none; `{{extra}}` becomes
    /// `extra` (series: `[{"name": "Requested Seasons", "value": "1, 2"}]`). Media statuses
    /// are `MediaStatus` *names* (`"AVAILABLE"`), not numbers; a missing value is `""`.
    ///
    /// # Errors
    ///
    /// When the notification type is not simulated, the request is unknown, or the POST
    /// fails at the transport level (an HTTP error status is returned as a response).
    pub async fn send_webhook(
        &self,
        url: &str,
        authorization: &str,
        notification_type: &str,
        request_id: u64,
    ) -> anyhow::Result<reqwest::Response> {
        let notification = Notification::parse(notification_type)?;
        let payload = {
            let mut state = self.shared.lock();
            state.store.apply(notification, request_id)?;
            state.store.webhook_payload(notification, request_id)?
        };
        Ok(self
            .send_webhook_payload(url, authorization, &payload)
            .await?)
    }

    /// POSTs `payload` as Overseerr's webhook agent does (JSON, `Authorization` header unless
    /// empty), without touching the simulator's state.
    ///
    /// # Errors
    ///
    /// When the POST fails at the transport level.
    pub async fn send_webhook_payload(
        &self,
        url: &str,
        authorization: &str,
        payload: &Value,
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = self.http.post(url).json(payload);
        if !authorization.is_empty() {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        request.send().await
    }
}

/// What the server task and the handle share.
struct Shared {
    spec: OpenApiSpec,
    down: Arc<AtomicBool>,
    state: Mutex<SimState>,
    /// Calls being answered now, and the most ever at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Counts a call as in flight until dropped.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// The state; a panic in another holder does not make it unusable for the test's report.
    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Control settings, the call log and the stored data.
struct SimState {
    options: SimOptions,
    received: Vec<Received>,
    violations: Vec<String>,
    injection: Option<(usize, Injection)>,
    delay: Duration,
    store: Store,
    catalog: Catalog,
}

/// An answer injected for the next calls.
#[derive(Clone)]
enum Injection {
    /// [`OverseerrSim::fail_next`]: `{"message": "Simulated failure (HTTP <status>)"}`.
    Failure(StatusCode),
    /// [`OverseerrSim::answer_next_raw`]: this body, as JSON.
    Raw(StatusCode, String),
}

impl Injection {
    fn answer(self) -> Response {
        match self {
            Injection::Failure(status) => {
                let message = format!("Simulated failure (HTTP {})", status.as_u16());
                json_answer(status, json!({ "message": message }))
            }
            Injection::Raw(status, body) => {
                (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
        }
    }
}

fn status_or_500(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl SimState {
    fn new(options: SimOptions) -> Self {
        Self {
            options,
            received: Vec::new(),
            violations: Vec::new(),
            injection: None,
            delay: Duration::ZERO,
            store: Store::new(),
            catalog: Catalog::seeded(today()),
        }
    }

    /// Consumes one injected answer, if any is left.
    fn take_injection(&mut self) -> Option<Injection> {
        let (left, injection) = self.injection.take()?;
        if left > 1 {
            self.injection = Some((left - 1, injection.clone()));
        }
        Some(injection)
    }
}

/// Overseerr's tables, reduced to what the simulated endpoints read and write.
#[derive(Clone)]
struct Store {
    media: Vec<MediaRow>,
    requests: Vec<RequestRow>,
    next_media_id: u64,
    next_request_id: u64,
    next_season_id: u64,
    admin_created_at: String,
}

/// One `Media` row (`server/entity/Media.ts`): one per `(tmdbId, mediaType)`, shared by the
/// 4K and non-4K requests.
#[derive(Clone)]
struct MediaRow {
    id: u64,
    media_type: String,
    tmdb_id: u64,
    tvdb_id: Option<u64>,
    status: u8,
    status_4k: u8,
    created_at: String,
    updated_at: String,
    media_added_at: Option<String>,
}

impl MediaRow {
    fn status_for(&mut self, is_4k: bool) -> &mut u8 {
        if is_4k {
            &mut self.status_4k
        } else {
            &mut self.status
        }
    }
}

/// One `MediaRequest` row (`server/entity/MediaRequest.ts`).
#[derive(Clone)]
struct RequestRow {
    id: u64,
    status: u8,
    media_id: u64,
    media_type: String,
    is_4k: bool,
    seasons: Vec<SeasonRow>,
    modified_by_admin: bool,
    /// `serverId`, `profileId`, `rootFolder`, `languageProfileId` as sent.
    options: serde_json::Map<String, Value>,
    created_at: String,
    updated_at: String,
}

impl RequestRow {
    fn set_status(&mut self, status: u8) {
        self.status = status;
        self.updated_at = now();
        for season in &mut self.seasons {
            season.status = status;
            season.updated_at = self.updated_at.clone();
        }
    }
}

/// One `SeasonRequest` row.
#[derive(Clone)]
struct SeasonRow {
    id: u64,
    season_number: u64,
    status: u8,
    created_at: String,
    updated_at: String,
}

/// An HTTP answer the store decided on, with the violation it implies, if any.
struct Refusal {
    status: StatusCode,
    body: Value,
    violation: Option<String>,
}

impl Refusal {
    fn message(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            body: json!({ "message": message }),
            violation: None,
        }
    }
}

impl Store {
    fn new() -> Self {
        Self {
            media: Vec::new(),
            requests: Vec::new(),
            next_media_id: 1,
            next_request_id: 1,
            next_season_id: 1,
            admin_created_at: now(),
        }
    }

    fn request(&self, id: u64) -> anyhow::Result<&RequestRow> {
        self.requests
            .iter()
            .find(|request| request.id == id)
            .ok_or_else(|| anyhow!("the Overseerr simulator has no request {id}"))
    }

    fn request_mut(&mut self, id: u64) -> anyhow::Result<&mut RequestRow> {
        self.requests
            .iter_mut()
            .find(|request| request.id == id)
            .ok_or_else(|| anyhow!("the Overseerr simulator has no request {id}"))
    }

    fn media(&self, id: u64) -> Option<&MediaRow> {
        self.media.iter().find(|media| media.id == id)
    }

    fn media_mut(&mut self, id: u64) -> anyhow::Result<&mut MediaRow> {
        self.media
            .iter_mut()
            .find(|media| media.id == id)
            .ok_or_else(|| anyhow!("the Overseerr simulator has no media {id}"))
    }

    /// `POST /request` after the gate: `MediaRequest.request` of Overseerr's source.
    fn create(&mut self, body: &Value, options: &SimOptions) -> Result<Value, Refusal> {
        // The gate validated the body against the spec, so these are present and typed.
        let media_type = body["mediaType"].as_str().unwrap_or("movie").to_string();
        let tmdb_id = as_id(&body["mediaId"]).unwrap_or(0);
        let is_4k = body["is4k"].as_bool().unwrap_or(false);
        let tvdb_id = as_id(&body["tvdbId"]);

        let existing_media = self
            .media
            .iter()
            .find(|media| media.tmdb_id == tmdb_id && media.media_type == media_type)
            .map(|media| media.id);
        let existing: Vec<&RequestRow> = self
            .requests
            .iter()
            .filter(|request| Some(request.media_id) == existing_media && request.is_4k == is_4k)
            .collect();

        let seasons = if media_type == "movie" {
            // Overseerr only looks at the oldest existing request here (`existing[0]`).
            if existing
                .first()
                .is_some_and(|request| request.status != REQUEST_DECLINED)
            {
                return Err(Refusal::message(
                    StatusCode::CONFLICT,
                    "Request for this media already exists.",
                ));
            }
            Vec::new()
        } else {
            let requested: Vec<u64> = match &body["seasons"] {
                Value::String(_) => (1..=u64::from(options.tv_seasons)).collect(),
                Value::Array(list) => list.iter().filter_map(as_id).collect(),
                _ => {
                    return Err(Refusal {
                        violation: Some(
                            "a tv request without `seasons` (Overseerr crashes with 500)"
                                .to_string(),
                        ),
                        ..Refusal::message(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Cannot read properties of undefined (reading 'filter')",
                        )
                    })
                }
            };
            let taken: Vec<u64> = existing
                .iter()
                .filter(|request| request.status != REQUEST_DECLINED)
                .flat_map(|request| request.seasons.iter().map(|season| season.season_number))
                .collect();
            let wanted: Vec<u64> = requested
                .into_iter()
                .filter(|season| !taken.contains(season))
                .collect();
            if wanted.is_empty() {
                // Overseerr passes `NoSeasonsAvailableError` to its error handler as a 202.
                return Err(Refusal::message(
                    StatusCode::ACCEPTED,
                    "No seasons available to request",
                ));
            }
            wanted
        };

        let stamp = now();
        let media_id = match existing_media {
            Some(id) => {
                let media = self.media_mut(id).map_err(|err| {
                    Refusal::message(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string())
                })?;
                let status = media.status_for(is_4k);
                if *status == MEDIA_UNKNOWN {
                    *status = MEDIA_PENDING;
                }
                media.updated_at = stamp.clone();
                id
            }
            None => {
                let id = self.next_media_id;
                self.next_media_id += 1;
                self.media.push(MediaRow {
                    id,
                    media_type: media_type.clone(),
                    tmdb_id,
                    tvdb_id,
                    status: if is_4k { MEDIA_UNKNOWN } else { MEDIA_PENDING },
                    status_4k: if is_4k { MEDIA_PENDING } else { MEDIA_UNKNOWN },
                    created_at: stamp.clone(),
                    updated_at: stamp.clone(),
                    media_added_at: None,
                });
                id
            }
        };

        let status = if options.auto_approve {
            REQUEST_APPROVED
        } else {
            REQUEST_PENDING
        };
        let seasons = seasons
            .into_iter()
            .map(|season_number| {
                let id = self.next_season_id;
                self.next_season_id += 1;
                SeasonRow {
                    id,
                    season_number,
                    status,
                    created_at: stamp.clone(),
                    updated_at: stamp.clone(),
                }
            })
            .collect();
        let request_options = ["serverId", "profileId", "rootFolder", "languageProfileId"]
            .iter()
            .filter_map(|key| {
                body.get(*key)
                    .filter(|value| !value.is_null())
                    .map(|value| (key.to_string(), value.clone()))
            })
            .collect();
        let request = RequestRow {
            id: self.next_request_id,
            status,
            media_id,
            media_type,
            is_4k,
            seasons,
            modified_by_admin: options.auto_approve,
            options: request_options,
            created_at: stamp.clone(),
            updated_at: stamp,
        };
        self.next_request_id += 1;
        let answer = self.render_request(&request);
        let approved = request.status == REQUEST_APPROVED;
        let request_id = request.id;
        self.requests.push(request);
        if approved {
            // `updateParentStatus` runs after the insert, on a freshly loaded media row: the
            // 201 above still shows PENDING, the next GET shows PROCESSING.
            self.mark_processing(request_id);
        }
        Ok(answer)
    }

    /// `GET /request` with Overseerr's filter and sort semantics (`server/routes/request.ts`).
    fn list(&self, query: &[(String, String)]) -> Value {
        let param = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
                .filter(|value| !value.is_empty())
        };
        let number = |name: &str| param(name).and_then(|value| value.parse::<f64>().ok());
        // `Number(take)`; a take of 0 would divide by zero in Overseerr — treat it as 1.
        let take = number("take").map_or(10, |take| take.max(1.0) as u64);
        let skip = number("skip").map_or(0, |skip| skip.max(0.0) as u64);
        let requested_by = number("requestedBy");

        let filter = param("filter").unwrap_or("all");
        let request_statuses: &[u8] = match filter {
            "approved" | "processing" | "available" => &[REQUEST_APPROVED],
            "pending" => &[REQUEST_PENDING],
            "unavailable" => &[REQUEST_PENDING, REQUEST_APPROVED],
            "failed" => &[REQUEST_FAILED],
            _ => &[
                REQUEST_PENDING,
                REQUEST_APPROVED,
                REQUEST_DECLINED,
                REQUEST_FAILED,
            ],
        };
        let media_statuses: &[u8] = match filter {
            "available" => &[MEDIA_AVAILABLE],
            "processing" | "unavailable" => &[
                MEDIA_UNKNOWN,
                MEDIA_PENDING,
                MEDIA_PROCESSING,
                MEDIA_PARTIALLY_AVAILABLE,
            ],
            _ => &[
                MEDIA_UNKNOWN,
                MEDIA_PENDING,
                MEDIA_PROCESSING,
                MEDIA_PARTIALLY_AVAILABLE,
                MEDIA_AVAILABLE,
            ],
        };

        let mut matching: Vec<&RequestRow> = self
            .requests
            .iter()
            .filter(|request| request_statuses.contains(&request.status))
            .filter(|request| {
                self.media(request.media_id).is_some_and(|media| {
                    let status = if request.is_4k {
                        media.status_4k
                    } else {
                        media.status
                    };
                    media_statuses.contains(&status)
                })
            })
            // Every request is the admin's (user 1), the user the API key acts as.
            .filter(|_| requested_by.is_none_or(|user| user == 1.0))
            .collect();
        if param("sort") == Some("modified") {
            matching.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        } else {
            matching.sort_by_key(|request| std::cmp::Reverse(request.id));
        }

        let total = matching.len() as u64;
        let results: Vec<Value> = matching
            .into_iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(usize::try_from(take).unwrap_or(usize::MAX))
            .map(|request| self.render_request(request))
            .collect();
        json!({
            "pageInfo": {
                "pages": total.div_ceil(take),
                "pageSize": take,
                "results": total,
                "page": skip.div_ceil(take) + 1,
            },
            "results": results,
        })
    }

    /// What a notification means for the stored state (see `OverseerrSim::send_webhook`).
    fn apply(&mut self, notification: Notification, request_id: u64) -> anyhow::Result<()> {
        if notification == Notification::Test {
            return Ok(());
        }
        let (media_id, is_4k) = {
            let request = self.request(request_id)?;
            (request.media_id, request.is_4k)
        };
        match notification {
            Notification::MediaPending => self.request_mut(request_id)?.set_status(REQUEST_PENDING),
            Notification::MediaApproved | Notification::MediaAutoApproved => {
                let request = self.request_mut(request_id)?;
                request.set_status(REQUEST_APPROVED);
                request.modified_by_admin = true;
                self.mark_processing(request_id);
            }
            Notification::MediaDeclined => {
                self.request_mut(request_id)?.set_status(REQUEST_DECLINED);
                let still_pending = self.requests.iter().any(|request| {
                    request.media_id == media_id && request.status == REQUEST_PENDING
                });
                let media = self.media_mut(media_id)?;
                let is_movie = media.media_type == "movie";
                let status = media.status_for(is_4k);
                if is_movie || (!still_pending && *status == MEDIA_PENDING) {
                    *status = MEDIA_UNKNOWN;
                    media.updated_at = now();
                }
            }
            Notification::MediaFailed => self.request_mut(request_id)?.set_status(REQUEST_FAILED),
            Notification::MediaAvailable => {
                let media = self.media_mut(media_id)?;
                *media.status_for(is_4k) = MEDIA_AVAILABLE;
                media.updated_at = now();
                media.media_added_at.get_or_insert_with(now);
                for request in &mut self.requests {
                    if request.media_id == media_id
                        && request.is_4k == is_4k
                        && request.status == REQUEST_PENDING
                    {
                        request.set_status(REQUEST_APPROVED);
                    }
                }
            }
            Notification::MediaAutoRequested | Notification::Test => {}
        }
        Ok(())
    }

    /// `updateParentStatus` for an approved request: its media becomes PROCESSING unless it
    /// is already (partially) available.
    fn mark_processing(&mut self, request_id: u64) {
        let Ok(request) = self.request(request_id) else {
            return;
        };
        let (media_id, is_4k) = (request.media_id, request.is_4k);
        if let Ok(media) = self.media_mut(media_id) {
            let status = media.status_for(is_4k);
            if *status != MEDIA_AVAILABLE && *status != MEDIA_PARTIALLY_AVAILABLE {
                *status = MEDIA_PROCESSING;
                media.updated_at = now();
            }
        }
    }

    /// The `User` the API key acts as (Overseerr's first administrator), as Overseerr
    /// serialises it (`email` and `plexId` are only filtered for other users).
    fn admin_json(&self) -> Value {
        json!({
            "permissions": 2,
            "id": 1,
            "email": "admin@overseerr.sim",
            "plexUsername": "admin",
            "userType": 1,
            "plexId": 1,
            "avatar": "https://plex.tv/users/0000000000000001/avatar?c=1",
            "movieQuotaLimit": null,
            "movieQuotaDays": null,
            "tvQuotaLimit": null,
            "tvQuotaDays": null,
            "createdAt": self.admin_created_at,
            "updatedAt": self.admin_created_at,
            "requestCount": self.requests.len(),
            "displayName": "admin",
        })
    }

    /// The `mediaInfo` Overseerr attaches to a catalogue answer for `(media_type, tmdb_id)`,
    /// if it has a media row: lists use `Media.getRelatedMedia` (the row alone), details
    /// `Media.getMedia` (with its `requests` and `issues`).
    fn media_info(&self, media_type: &str, tmdb_id: u64, with_requests: bool) -> Option<Value> {
        let media = self
            .media
            .iter()
            .find(|media| media.tmdb_id == tmdb_id && media.media_type == media_type)?;
        let mut info = self.render_media(media);
        if let (Value::Object(fields), true) = (&mut info, with_requests) {
            let requests: Vec<Value> = self
                .requests
                .iter()
                .filter(|request| request.media_id == media.id)
                .map(|request| {
                    // The relation is loaded from the media's side: no `media` inside.
                    let mut rendered = self.render_request(request);
                    if let Value::Object(request_fields) = &mut rendered {
                        request_fields.remove("media");
                    }
                    rendered
                })
                .collect();
            fields.insert("requests".to_string(), Value::Array(requests));
            fields.insert("issues".to_string(), json!([]));
        }
        Some(info)
    }

    fn render_media(&self, media: &MediaRow) -> Value {
        json!({
            "downloadStatus": [],
            "downloadStatus4k": [],
            "id": media.id,
            "mediaType": media.media_type,
            "tmdbId": media.tmdb_id,
            "tvdbId": media.tvdb_id,
            "imdbId": null,
            "status": media.status,
            "status4k": media.status_4k,
            "createdAt": media.created_at,
            "updatedAt": media.updated_at,
            "lastSeasonChange": media.created_at,
            "mediaAddedAt": media.media_added_at,
            "serviceId": null,
            "serviceId4k": null,
            "externalServiceId": null,
            "externalServiceId4k": null,
            "externalServiceSlug": null,
            "externalServiceSlug4k": null,
            "ratingKey": null,
            "ratingKey4k": null,
        })
    }

    /// A `MediaRequest` as Overseerr serialises it. Properties the spec types without
    /// `nullable` (`serverId`, `profileId`, `rootFolder`) are left out rather than `null`.
    fn render_request(&self, request: &RequestRow) -> Value {
        let media = self
            .media(request.media_id)
            .map_or(Value::Null, |media| self.render_media(media));
        let seasons: Vec<Value> = request
            .seasons
            .iter()
            .map(|season| {
                json!({
                    "id": season.id,
                    "seasonNumber": season.season_number,
                    "status": season.status,
                    "createdAt": season.created_at,
                    "updatedAt": season.updated_at,
                })
            })
            .collect();
        let mut rendered = json!({
            "id": request.id,
            "status": request.status,
            "createdAt": request.created_at,
            "updatedAt": request.updated_at,
            "type": request.media_type,
            "is4k": request.is_4k,
            "isAutoRequest": false,
            "seasonCount": seasons.len(),
            "seasons": seasons,
            "media": media,
            "requestedBy": self.admin_json(),
            "modifiedBy": if request.modified_by_admin { self.admin_json() } else { Value::Null },
        });
        if let Value::Object(fields) = &mut rendered {
            fields.extend(request.options.clone());
        }
        rendered
    }

    /// The default webhook template rendered for `notification` (see
    /// `OverseerrSim::send_webhook`).
    fn webhook_payload(
        &self,
        notification: Notification,
        request_id: u64,
    ) -> anyhow::Result<Value> {
        if notification == Notification::Test {
            return Ok(json!({
                "notification_type": notification.name(),
                "event": "",
                "subject": "Test Notification",
                "message": "Check check, 1, 2, 3. Are we coming in clear?",
                "image": "",
                "media": null,
                "request": null,
                "issue": null,
                "comment": null,
                "extra": [],
            }));
        }
        let request = self.request(request_id)?;
        let media = self
            .media(request.media_id)
            .ok_or_else(|| anyhow!("request {request_id} has no media"))?;
        let is_movie = media.media_type == "movie";
        let kind = if is_movie { "Movie" } else { "Series" };
        let four_k = if request.is_4k { "4K " } else { "" };
        let event = match notification {
            Notification::MediaPending => format!("New {four_k}{kind} Request"),
            Notification::MediaApproved => format!("{four_k}{kind} Request Approved"),
            Notification::MediaAutoApproved => {
                format!("{four_k}{kind} Request Automatically Approved")
            }
            Notification::MediaDeclined => format!("{four_k}{kind} Request Declined"),
            Notification::MediaFailed => format!("{four_k}{kind} Request Failed"),
            Notification::MediaAvailable => format!("{four_k}{kind} Request Now Available"),
            Notification::MediaAutoRequested => {
                format!("{four_k}{kind} Request Automatically Submitted")
            }
            Notification::Test => String::new(),
        };
        let extra = if is_movie {
            json!([])
        } else {
            let seasons: Vec<String> = request
                .seasons
                .iter()
                .map(|season| season.season_number.to_string())
                .collect();
            json!([{ "name": "Requested Seasons", "value": seasons.join(", ") }])
        };
        Ok(json!({
            "notification_type": notification.name(),
            "event": event,
            "subject": format!("{kind} {}", media.tmdb_id),
            "message": format!("Simulated overview of TMDB {} {}.", media.media_type, media.tmdb_id),
            "image": format!("https://image.tmdb.org/t/p/w600_and_h900_bestv2/{}.jpg", media.tmdb_id),
            "media": {
                "media_type": media.media_type,
                "tmdbId": media.tmdb_id.to_string(),
                "tvdbId": media.tvdb_id.map(|id| id.to_string()).unwrap_or_default(),
                "status": media_status_name(media.status),
                "status4k": media_status_name(media.status_4k),
            },
            "request": {
                "request_id": request.id.to_string(),
                "requestedBy_email": "admin@overseerr.sim",
                "requestedBy_username": "admin",
                "requestedBy_avatar": "https://plex.tv/users/0000000000000001/avatar?c=1",
                // The simulated admin has no Discord or Telegram settings.
                "requestedBy_settings_discordId": "",
                "requestedBy_settings_telegramChatId": "",
            },
            "issue": null,
            "comment": null,
            "extra": extra,
        }))
    }
}

/// The notification types the simulator can send (`server/lib/notifications/index.ts`,
/// `Notification`); issue notifications are not simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notification {
    MediaPending,
    MediaApproved,
    MediaAvailable,
    MediaFailed,
    Test,
    MediaDeclined,
    MediaAutoApproved,
    MediaAutoRequested,
}

impl Notification {
    const ALL: [Notification; 8] = [
        Notification::MediaPending,
        Notification::MediaApproved,
        Notification::MediaAvailable,
        Notification::MediaFailed,
        Notification::Test,
        Notification::MediaDeclined,
        Notification::MediaAutoApproved,
        Notification::MediaAutoRequested,
    ];

    fn name(self) -> &'static str {
        match self {
            Notification::MediaPending => "MEDIA_PENDING",
            Notification::MediaApproved => "MEDIA_APPROVED",
            Notification::MediaAvailable => "MEDIA_AVAILABLE",
            Notification::MediaFailed => "MEDIA_FAILED",
            Notification::Test => "TEST_NOTIFICATION",
            Notification::MediaDeclined => "MEDIA_DECLINED",
            Notification::MediaAutoApproved => "MEDIA_AUTO_APPROVED",
            Notification::MediaAutoRequested => "MEDIA_AUTO_REQUESTED",
        }
    }

    fn parse(name: &str) -> anyhow::Result<Self> {
        match Self::ALL.into_iter().find(|kind| kind.name() == name) {
            Some(kind) => Ok(kind),
            None => bail!("the Overseerr simulator does not send {name:?} notifications"),
        }
    }
}

/// `MediaStatus[n]` as the webhook agent renders it; JavaScript renders an unknown number's
/// missing name as `"undefined"`.
fn media_status_name(status: u8) -> &'static str {
    match status {
        MEDIA_UNKNOWN => "UNKNOWN",
        MEDIA_PENDING => "PENDING",
        MEDIA_PROCESSING => "PROCESSING",
        MEDIA_PARTIALLY_AVAILABLE => "PARTIALLY_AVAILABLE",
        MEDIA_AVAILABLE => "AVAILABLE",
        _ => "undefined",
    }
}

/// A JSON number used as an id (`type: number` in the spec, so `603.0` counts as 603).
fn as_id(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| *f >= 0.0 && f.fract() == 0.0)
            .map(|f| f as u64)
    })
}

/// Timestamps as Overseerr sends them: `2020-09-12T10:00:27.000Z`.
fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// express-openapi-validator's error shape.
fn validator_answer(status: StatusCode, path: &str, messages: &[String]) -> Response {
    let errors: Vec<Value> = messages
        .iter()
        .map(|message| {
            let (at, what) = message.split_once(": ").unwrap_or(("", message));
            json!({ "path": format!("/{at}"), "message": what })
        })
        .collect();
    let summary = if messages.is_empty() {
        format!("{path}: invalid request")
    } else {
        format!("request/{}", messages.join(", "))
    };
    json_answer(status, json!({ "message": summary, "errors": errors }))
}

/// The request body, parsed by the gate for the handlers.
#[derive(Clone)]
struct ParsedBody(Value);

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/api/v1/request",
            get(list_requests_handler).post(create_request_handler),
        )
        // Overseerr declares `/request/count` before `/request/:requestId`; keep it from being
        // read as a request id.
        .route("/api/v1/request/count", get(not_simulated))
        .route(
            "/api/v1/request/{requestId}",
            get(get_request_handler).delete(delete_request_handler),
        )
        .route("/api/v1/search", get(search_handler))
        .route(
            "/api/v1/discover/trending",
            discover_route(DiscoverList::Trending),
        )
        .route(
            "/api/v1/discover/movies",
            discover_route(DiscoverList::PopularMovies),
        )
        .route(
            "/api/v1/discover/tv",
            discover_route(DiscoverList::PopularTv),
        )
        .route(
            "/api/v1/discover/movies/upcoming",
            discover_route(DiscoverList::UpcomingMovies),
        )
        .route(
            "/api/v1/discover/tv/upcoming",
            discover_route(DiscoverList::UpcomingTv),
        )
        .route("/api/v1/movie/{movieId}", get(movie_handler))
        .route("/api/v1/tv/{tvId}", get(tv_handler))
        .route("/api/v1/tv/{tvId}/season/{seasonId}", get(season_handler))
        .fallback(not_simulated)
        .method_not_allowed_fallback(not_simulated)
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), gate))
        .with_state(shared)
}

/// Recording, delay, failure injection, then Overseerr's own middleware order: OpenAPI
/// validation (security presence, query, body), then the permission check.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let _in_flight = InFlight::enter(&shared);
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return json_answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({ "message": "request entity too large" }),
        );
    };
    let path = parts.uri.path().to_string();
    let method = parts.method.as_str().to_string();
    let parsed: Result<Value, String> = if bytes.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(&bytes).map_err(|err| err.to_string())
    };

    let (delay, injection) = {
        let mut state = shared.lock();
        state.received.push(Received {
            method: method.clone(),
            path: path.clone(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers.clone(),
            body: parsed
                .clone()
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        });
        let injection = state.take_injection();
        (state.delay, injection)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(injection) = injection {
        return injection.answer();
    }

    let violation = |problem: &str| {
        shared
            .lock()
            .violations
            .push(format!("{method} {path}: {problem}"));
    };
    let not_found = |status: StatusCode, what: &str| {
        validator_answer(
            status,
            &path,
            &[format!("{}: {what}", path.trim_start_matches('/'))],
        )
    };

    let Some(template) = path
        .strip_prefix(API_PREFIX)
        .and_then(|api_path| shared.spec.match_path(api_path))
    else {
        violation("the path is not in the spec");
        return not_found(StatusCode::NOT_FOUND, "not found");
    };
    let Some(operation) = shared.spec.operation(&method, &template) else {
        violation(&format!("{method} {template} is not in the spec"));
        return not_found(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{method} method not allowed"),
        );
    };
    let public = operation
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty);
    let api_key = parts
        .headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok());
    let has_session = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|cookies| cookies.contains("connect.sid="));
    if !public && api_key.is_none() && !has_session {
        return validator_answer(
            StatusCode::UNAUTHORIZED,
            &path,
            &[format!(
                "{}: cookie 'connect.sid' required",
                path.trim_start_matches('/')
            )],
        );
    }

    let mut problems = Vec::new();
    let query = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map(|Query(pairs)| pairs)
        .unwrap_or_default();
    if let Err(mut found) = shared.spec.validate_query(&method, &template, &query) {
        problems.append(&mut found);
    }
    let body = match parsed {
        Ok(body) => body,
        Err(err) => {
            violation(&format!("the body is not JSON: {err}"));
            return json_answer(StatusCode::BAD_REQUEST, json!({ "message": err }));
        }
    };
    if !body.is_null() {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("application/json") {
            violation(&format!("a JSON body sent as {content_type:?}"));
            return json_answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({ "message": format!("unsupported media type {content_type}") }),
            );
        }
    }
    if let Err(mut found) = shared.spec.validate_request_body(&method, &template, &body) {
        problems.append(&mut found);
    }
    if !problems.is_empty() {
        for problem in &problems {
            violation(problem);
        }
        return validator_answer(StatusCode::BAD_REQUEST, &path, &problems);
    }

    if !public && api_key != Some(shared.lock().options.api_key.as_str()) {
        return json_answer(
            StatusCode::FORBIDDEN,
            json!({ "status": 403, "error": "You do not have permission to access this endpoint" }),
        );
    }

    parts.extensions.insert(ParsedBody(body));
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn create_request_handler(
    State(shared): State<Arc<Shared>>,
    Extension(ParsedBody(body)): Extension<ParsedBody>,
) -> Response {
    let mut state = shared.lock();
    let options = state.options.clone();
    match state.store.create(&body, &options) {
        Ok(created) => json_answer(StatusCode::CREATED, created),
        Err(refusal) => {
            if let Some(violation) = refusal.violation {
                state
                    .violations
                    .push(format!("POST {API_PREFIX}/request: {violation}"));
            }
            json_answer(refusal.status, refusal.body)
        }
    }
}

async fn get_request_handler(
    State(shared): State<Arc<Shared>>,
    Path(request_id): Path<String>,
) -> Response {
    let state = shared.lock();
    // `Number(req.params.requestId)`: anything that is not a number finds nothing.
    let found = request_id
        .parse::<u64>()
        .ok()
        .and_then(|id| state.store.request(id).ok());
    match found {
        Some(request) => json_answer(StatusCode::OK, state.store.render_request(request)),
        None => json_answer(
            StatusCode::NOT_FOUND,
            json!({ "message": "Request not found." }),
        ),
    }
}

/// `DELETE /request/{requestId}` (`server/routes/request.ts`): the admin API key may remove
/// any request: 204 with no body; an unknown id (or one that is not a number) is 404
/// `{"message": "Request not found."}`.
async fn delete_request_handler(
    State(shared): State<Arc<Shared>>,
    Path(request_id): Path<String>,
) -> Response {
    let mut state = shared.lock();
    let before = state.store.requests.len();
    if let Ok(id) = request_id.parse::<u64>() {
        state.store.requests.retain(|request| request.id != id);
    }
    if state.store.requests.len() < before {
        StatusCode::NO_CONTENT.into_response()
    } else {
        json_answer(
            StatusCode::NOT_FOUND,
            json!({ "message": "Request not found." }),
        )
    }
}

async fn list_requests_handler(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    json_answer(StatusCode::OK, shared.lock().store.list(&query))
}

/// A spec operation the simulator does not implement: 501, and a violation so the test that
/// relied on it fails visibly.
async fn not_simulated(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let line = format!(
        "{} {}: in the spec but not simulated",
        request.method(),
        request.uri().path()
    );
    shared.lock().violations.push(line.clone());
    json_answer(StatusCode::NOT_IMPLEMENTED, json!({ "message": line }))
}

/// TMDB's page size, which Overseerr passes through for searches and discover lists.
const CATALOG_PAGE_SIZE: usize = 20;

/// The last page TMDB serves; TMDB refuses pages outside `1..=500`.
const TMDB_MAX_PAGE: f64 = 500.0;

/// TMDB's genre ids (`/genre/movie/list`, `/genre/tv/list`), for `genreIds` and `genres`.
const TMDB_GENRES: [(&str, u32); 21] = [
    ("Action", 28),
    ("Adventure", 12),
    ("Animation", 16),
    ("Comedy", 35),
    ("Crime", 80),
    ("Documentary", 99),
    ("Drama", 18),
    ("Family", 10751),
    ("Fantasy", 14),
    ("History", 36),
    ("Horror", 27),
    ("Music", 10402),
    ("Mystery", 9648),
    ("Romance", 10749),
    ("Science Fiction", 878),
    ("Thriller", 53),
    ("War", 10752),
    ("Western", 37),
    ("Action & Adventure", 10759),
    ("Sci-Fi & Fantasy", 10765),
    ("War & Politics", 10768),
];

/// A person of the catalogue: found by searches and trending, dropped by MediaNest.
#[derive(Clone)]
struct CatalogPerson {
    id: u64,
    name: String,
    popularity: f64,
    profile_path: Option<String>,
    /// TMDB ids of the catalogue's movies the person is known for (`knownFor`).
    known_for: Vec<u64>,
}

/// What TMDB knows, as far as the simulated catalogue routes need it.
#[derive(Clone)]
struct Catalog {
    movies: Vec<CatalogMovie>,
    shows: Vec<CatalogTv>,
    people: Vec<CatalogPerson>,
}

/// One search or list result, before rendering.
#[derive(Clone, Copy)]
enum Entry<'a> {
    Movie(&'a CatalogMovie),
    Tv(&'a CatalogTv),
    Person(&'a CatalogPerson),
}

impl<'a> Entry<'a> {
    fn popularity(self) -> f64 {
        match self {
            Entry::Movie(movie) => movie.popularity,
            Entry::Tv(show) => show.popularity,
            Entry::Person(person) => person.popularity,
        }
    }

    fn id(self) -> u64 {
        match self {
            Entry::Movie(movie) => movie.tmdb_id,
            Entry::Tv(show) => show.tmdb_id,
            Entry::Person(person) => person.id,
        }
    }

    fn name(self) -> &'a str {
        match self {
            Entry::Movie(movie) => &movie.title,
            Entry::Tv(show) => &show.name,
            Entry::Person(person) => &person.name,
        }
    }
}

impl Catalog {
    /// The default catalogue: real TMDB/TheTVDB ids and titles; the two upcoming titles are
    /// dated relative to `today` so they stay upcoming.
    fn seeded(today: NaiveDate) -> Self {
        let in_days = |days: u64| {
            let date = today.checked_add_days(Days::new(days)).unwrap_or(today);
            Some(format_date(date))
        };
        let text = |value: &str| Some(value.to_string());
        let names = |list: &[&str]| list.iter().map(|name| name.to_string()).collect();
        let matrix_sequel = names(&["Adventure", "Action", "Thriller", "Science Fiction"]);
        let movies = vec![
            CatalogMovie {
                tmdb_id: 603,
                title: "The Matrix".into(),
                release_date: text("1999-03-31"),
                overview: text("A computer hacker learns the true nature of his reality."),
                poster_path: text("/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"),
                backdrop_path: text("/ncEsesgOJDNrTUED89hYbA117wo.jpg"),
                popularity: 85.3,
                imdb_id: text("tt0133093"),
                runtime: Some(136),
                genres: names(&["Action", "Science Fiction"]),
            },
            CatalogMovie {
                tmdb_id: 604,
                title: "The Matrix Reloaded".into(),
                release_date: text("2003-05-15"),
                overview: text("Neo and the rebels fight to save Zion from the machines."),
                poster_path: text("/9TGHDvWrqKBzwDxDodHYXEmOE6J.jpg"),
                backdrop_path: text("/pdVHUsb2eEz9ALNTr6wfRJe5xVa.jpg"),
                popularity: 45.2,
                imdb_id: text("tt0234215"),
                runtime: Some(138),
                genres: matrix_sequel.clone(),
            },
            CatalogMovie {
                tmdb_id: 605,
                title: "The Matrix Revolutions".into(),
                release_date: text("2003-11-05"),
                overview: text("Zion defends itself against the invasion of the machines."),
                poster_path: text("/fgm8OZ7o4G1G1I9EeGcb85Noe6L.jpg"),
                backdrop_path: text("/533xAMhhVyjTy8hwMUFEt5TuDfR.jpg"),
                popularity: 40.1,
                imdb_id: text("tt0242653"),
                runtime: Some(129),
                genres: matrix_sequel,
            },
            CatalogMovie {
                tmdb_id: 624860,
                title: "The Matrix Resurrections".into(),
                release_date: text("2021-12-16"),
                overview: text("Plagued by strange memories, Neo finds himself back inside."),
                poster_path: text("/8c4a8kE7PizaGQQnditMmI1xbRp.jpg"),
                backdrop_path: text("/hv7o3VgfsairBoQFAawgaQ4cR1m.jpg"),
                popularity: 60.7,
                imdb_id: text("tt10838180"),
                runtime: Some(148),
                genres: names(&["Science Fiction", "Action", "Adventure"]),
            },
            // An obscure title as TMDB has many: no date (`""`), overview, images or runtime.
            CatalogMovie {
                popularity: 1.4,
                genres: names(&["Comedy"]),
                ..CatalogMovie::new(31047, "Matrimony", "")
            },
            CatalogMovie {
                tmdb_id: 550,
                title: "Fight Club".into(),
                release_date: text("1999-10-15"),
                overview: text("An insomniac and a soap salesman start an underground club."),
                poster_path: text("/pB8BM7pdSp6B6Ih7QZ4DrQ3PmJK.jpg"),
                backdrop_path: text("/hZkgoQYus5vegHoetLkCJzb17zJ.jpg"),
                popularity: 70.9,
                imdb_id: text("tt0137523"),
                runtime: Some(139),
                genres: names(&["Drama"]),
            },
            CatalogMovie {
                tmdb_id: 27205,
                title: "Inception".into(),
                release_date: text("2010-07-15"),
                overview: text("A thief who steals secrets through dreams is offered a way home."),
                poster_path: text("/oYuLEt3zVCKq57qu2F8dT7NIa6f.jpg"),
                backdrop_path: text("/8ZTVqvKDQ8emSGUEMjsS4yHAwrp.jpg"),
                popularity: 95.2,
                imdb_id: text("tt1375666"),
                runtime: Some(148),
                genres: names(&["Action", "Science Fiction", "Adventure"]),
            },
            // Unreleased: no images, IMDb id or runtime yet.
            CatalogMovie {
                release_date: in_days(180),
                popularity: 30.5,
                genres: names(&["Action", "Adventure", "Science Fiction", "Fantasy"]),
                ..CatalogMovie::new(216527, "Avatar 4", "")
            },
        ];

        let westeros = names(&["Sci-Fi & Fantasy", "Drama", "Action & Adventure"]);
        let shows = vec![
            CatalogTv {
                tmdb_id: 1399,
                tvdb_id: Some(121361),
                name: "Game of Thrones".into(),
                first_air_date: text("2011-04-17"),
                overview: text("Seven noble families fight for control of Westeros."),
                poster_path: text("/1XS1oqL89opfnbLl8WnZY1O1uJx.jpg"),
                backdrop_path: text("/2OMB0ynKlyIenMJWI2Dy9IWT4c.jpg"),
                popularity: 350.1,
                seasons: [(0, 14)]
                    .into_iter()
                    .chain((1..=6).map(|season| (season, 10)))
                    .chain([(7, 7), (8, 6)])
                    .collect(),
                status: text("Ended"),
                genres: westeros.clone(),
            },
            CatalogTv {
                tmdb_id: 1396,
                tvdb_id: Some(81189),
                name: "Breaking Bad".into(),
                first_air_date: text("2008-01-20"),
                overview: text("A chemistry teacher turns to making crystal meth."),
                poster_path: text("/ggFHVNu6YYI5L9pCfOacjizRGt.jpg"),
                backdrop_path: text("/tsRy63Mu5cu8etL1X7ZLyf7UP1M.jpg"),
                popularity: 280.4,
                seasons: vec![(1, 7), (2, 13), (3, 13), (4, 13), (5, 16)],
                status: text("Ended"),
                genres: names(&["Drama", "Crime"]),
            },
            CatalogTv {
                tmdb_id: 94997,
                tvdb_id: Some(371572),
                name: "House of the Dragon".into(),
                first_air_date: text("2022-08-21"),
                overview: text("The Targaryen dynasty, 172 years before Daenerys."),
                poster_path: text("/z2yahl2uefxDCl0nogcRBstwruJ.jpg"),
                backdrop_path: text("/etj8E2o0Bud0HkONVQPjyCkIvpv.jpg"),
                popularity: 300.2,
                seasons: vec![(1, 10), (2, 8)],
                status: text("Returning Series"),
                genres: westeros.clone(),
            },
            // Not aired yet: no TheTVDB id or images.
            CatalogTv {
                first_air_date: in_days(90),
                popularity: 25.0,
                status: text("In Production"),
                genres: westeros,
                ..CatalogTv::new(224372, "A Knight of the Seven Kingdoms", "", vec![(1, 6)])
            },
        ];

        Self {
            movies,
            shows,
            people: vec![CatalogPerson {
                id: 6384,
                name: "Keanu Reeves".to_string(),
                popularity: 48.0,
                profile_path: Some("/4D0PpNI0kmP58hgrwGC3wCjxhnm.jpg".to_string()),
                known_for: vec![603, 604, 605],
            }],
        }
    }

    fn upsert_movie(&mut self, movie: CatalogMovie) {
        match self
            .movies
            .iter_mut()
            .find(|known| known.tmdb_id == movie.tmdb_id)
        {
            Some(known) => *known = movie,
            None => self.movies.push(movie),
        }
    }

    fn upsert_tv(&mut self, show: CatalogTv) {
        match self
            .shows
            .iter_mut()
            .find(|known| known.tmdb_id == show.tmdb_id)
        {
            Some(known) => *known = show,
            None => self.shows.push(show),
        }
    }

    fn remove(&mut self, media_type: MediaType, tmdb_id: u64) -> bool {
        let before = self.movies.len() + self.shows.len();
        match media_type {
            MediaType::Movie => self.movies.retain(|movie| movie.tmdb_id != tmdb_id),
            MediaType::Tv => self.shows.retain(|show| show.tmdb_id != tmdb_id),
        }
        self.movies.len() + self.shows.len() < before
    }

    fn movie(&self, tmdb_id: u64) -> Option<&CatalogMovie> {
        self.movies.iter().find(|movie| movie.tmdb_id == tmdb_id)
    }

    fn show(&self, tmdb_id: u64) -> Option<&CatalogTv> {
        self.shows.iter().find(|show| show.tmdb_id == tmdb_id)
    }

    fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        self.movies
            .iter()
            .map(Entry::Movie)
            .chain(self.shows.iter().map(Entry::Tv))
            .chain(self.people.iter().map(Entry::Person))
    }

    /// TMDB's `/search/multi`, simplified: every word of the query (case-insensitive,
    /// split at anything but letters and digits) starts a word of the title or name; movies,
    /// series and people, most popular first. A query without words finds nothing.
    fn search(&self, query: &str) -> Vec<Entry<'_>> {
        let wanted = words(query);
        if wanted.is_empty() {
            return Vec::new();
        }
        let mut found: Vec<Entry<'_>> = self
            .entries()
            .filter(|entry| {
                let have = words(entry.name());
                wanted
                    .iter()
                    .all(|word| have.iter().any(|known| known.starts_with(word.as_str())))
            })
            .collect();
        by_popularity(&mut found);
        found
    }

    /// The entries of a discover list, most popular first: trending is everything (TMDB's
    /// `/trending/all` has people too), popular is every movie or series, upcoming those
    /// released or first aired on or after `today` (Overseerr's `primaryReleaseDateGte` /
    /// `firstAirDateGte` of `server/routes/discover.ts`).
    fn discover(&self, list: DiscoverList, today: NaiveDate) -> Vec<Entry<'_>> {
        let upcoming =
            |date: &Option<String>| parse_date(date.as_deref()).is_some_and(|date| date >= today);
        let mut found: Vec<Entry<'_>> = match list {
            DiscoverList::Trending => self.entries().collect(),
            DiscoverList::PopularMovies => self.movies.iter().map(Entry::Movie).collect(),
            DiscoverList::PopularTv => self.shows.iter().map(Entry::Tv).collect(),
            DiscoverList::UpcomingMovies => self
                .movies
                .iter()
                .filter(|movie| upcoming(&movie.release_date))
                .map(Entry::Movie)
                .collect(),
            DiscoverList::UpcomingTv => self
                .shows
                .iter()
                .filter(|show| upcoming(&show.first_air_date))
                .map(Entry::Tv)
                .collect(),
        };
        by_popularity(&mut found);
        found
    }
}

fn by_popularity(entries: &mut [Entry<'_>]) {
    entries.sort_by(|a, b| {
        b.popularity()
            .total_cmp(&a.popularity())
            .then(a.id().cmp(&b.id()))
    });
}

/// Lower-case words: runs of letters and digits.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn parse_date(date: Option<&str>) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(date?, "%Y-%m-%d").ok()
}

fn format_date(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// The simulator's "today" (UTC; Overseerr uses its server's local date).
fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn genres_json(genres: &[String]) -> (Value, Value) {
    let ids: Vec<u32> = genres.iter().map(|name| genre_id(name)).collect();
    let named: Vec<Value> = genres
        .iter()
        .zip(&ids)
        .map(|(name, id)| json!({ "id": id, "name": name }))
        .collect();
    (json!(ids), Value::Array(named))
}

fn genre_id(name: &str) -> u32 {
    TMDB_GENRES
        .iter()
        .find(|(known, _)| *known == name)
        .map_or(0, |(_, id)| *id)
}

/// Adds the fields that have a value: Overseerr sends TMDB's `null`s, but the spec types
/// these as non-nullable strings (or as `MediaInfo`), so the simulator leaves them out.
fn with_optional(
    mut value: Value,
    fields: impl IntoIterator<Item = (&'static str, Option<Value>)>,
) -> Value {
    if let Value::Object(object) = &mut value {
        for (name, field) in fields {
            if let Some(field) = field {
                object.insert(name.to_string(), field);
            }
        }
    }
    value
}

fn optional_text(text: &Option<String>) -> Option<Value> {
    text.as_ref().map(|text| Value::String(text.clone()))
}

/// `mapMovieResult` of `server/models/Search.ts`.
fn movie_result(movie: &CatalogMovie, media_info: Option<Value>) -> Value {
    let (genre_ids, _) = genres_json(&movie.genres);
    with_optional(
        json!({
            "id": movie.tmdb_id,
            "mediaType": "movie",
            "adult": false,
            "genreIds": genre_ids,
            "originalLanguage": "en",
            "originalTitle": movie.title,
            "overview": movie.overview.clone().unwrap_or_default(),
            "popularity": movie.popularity,
            "releaseDate": movie.release_date.clone().unwrap_or_default(),
            "title": movie.title,
            "video": false,
            "voteAverage": 0.0,
            "voteCount": 0,
        }),
        [
            ("backdropPath", optional_text(&movie.backdrop_path)),
            ("posterPath", optional_text(&movie.poster_path)),
            ("mediaInfo", media_info),
        ],
    )
}

/// `mapTvResult` of `server/models/Search.ts`.
fn tv_result(show: &CatalogTv, media_info: Option<Value>) -> Value {
    let (genre_ids, _) = genres_json(&show.genres);
    with_optional(
        json!({
            "id": show.tmdb_id,
            "firstAirDate": show.first_air_date.clone().unwrap_or_default(),
            "genreIds": genre_ids,
            "mediaType": "tv",
            "name": show.name,
            "originCountry": ["US"],
            "originalLanguage": "en",
            "originalName": show.name,
            "overview": show.overview.clone().unwrap_or_default(),
            "popularity": show.popularity,
            "voteAverage": 0.0,
            "voteCount": 0,
        }),
        [
            ("backdropPath", optional_text(&show.backdrop_path)),
            ("posterPath", optional_text(&show.poster_path)),
            ("mediaInfo", media_info),
        ],
    )
}

/// `mapPersonResult` of `server/models/Search.ts`; `knownFor` holds the catalogue's movies
/// (without `mediaInfo`, as Overseerr maps them).
fn person_result(person: &CatalogPerson, catalog: &Catalog) -> Value {
    let known_for: Vec<Value> = person
        .known_for
        .iter()
        .filter_map(|tmdb_id| catalog.movie(*tmdb_id))
        .map(|movie| movie_result(movie, None))
        .collect();
    with_optional(
        json!({
            "id": person.id,
            "name": person.name,
            "popularity": person.popularity,
            "adult": false,
            "mediaType": "person",
            "knownFor": known_for,
        }),
        [("profilePath", optional_text(&person.profile_path))],
    )
}

/// One page of `entries` as `GET /search` and `GET /discover/*` answer it.
fn catalog_page(entries: &[Entry<'_>], page: usize, catalog: &Catalog, store: &Store) -> Value {
    let results: Vec<Value> = entries
        .iter()
        .skip(page.saturating_sub(1).saturating_mul(CATALOG_PAGE_SIZE))
        .take(CATALOG_PAGE_SIZE)
        .map(|entry| match *entry {
            Entry::Movie(movie) => {
                movie_result(movie, store.media_info("movie", movie.tmdb_id, false))
            }
            Entry::Tv(show) => tv_result(show, store.media_info("tv", show.tmdb_id, false)),
            Entry::Person(person) => person_result(person, catalog),
        })
        .collect();
    json!({
        "page": page,
        "totalPages": entries.len().div_ceil(CATALOG_PAGE_SIZE).max(1),
        "totalResults": entries.len(),
        "results": results,
    })
}

/// `mapMovieDetails` of `server/models/Movie.ts`.
fn movie_details(movie: &CatalogMovie, media_info: Option<Value>, today: NaiveDate) -> Value {
    let (_, genres) = genres_json(&movie.genres);
    let released = parse_date(movie.release_date.as_deref()).is_none_or(|date| date <= today);
    let mut details = with_optional(
        json!({
            "id": movie.tmdb_id,
            "adult": false,
            "budget": 0,
            "genres": genres,
            "relatedVideos": [],
            "originalLanguage": "en",
            "originalTitle": movie.title,
            "popularity": movie.popularity,
            "productionCompanies": [],
            "productionCountries": [],
            "releaseDate": movie.release_date.clone().unwrap_or_default(),
            "releases": { "results": [] },
            "revenue": 0,
            "spokenLanguages": [],
            "status": if released { "Released" } else { "Post Production" },
            "title": movie.title,
            "video": false,
            "voteAverage": 0.0,
            "voteCount": 0,
            "homepage": "",
            "overview": movie.overview.clone().unwrap_or_default(),
            "runtime": movie.runtime.unwrap_or(0),
            "tagline": "",
            "credits": { "cast": [], "crew": [] },
            // TMDB's movie external ids have no TheTVDB, TVRage or Freebase ids.
            "externalIds": {
                "imdbId": movie.imdb_id,
                "facebookId": null,
                "instagramId": null,
                "twitterId": null,
            },
            "watchProviders": [],
            "keywords": [],
        }),
        [
            ("backdropPath", optional_text(&movie.backdrop_path)),
            ("posterPath", optional_text(&movie.poster_path)),
            ("mediaInfo", media_info),
        ],
    );
    if let (Value::Object(fields), Some(imdb_id)) = (&mut details, &movie.imdb_id) {
        fields.insert("imdbId".to_string(), Value::String(imdb_id.clone()));
    }
    details
}

/// When season `season_number` of `show` starts (see [`CatalogTv`]).
fn season_start(show: &CatalogTv, season_number: u32) -> Option<NaiveDate> {
    let first = parse_date(show.first_air_date.as_deref())?;
    first.checked_add_days(Days::new(364 * u64::from(season_number.saturating_sub(1))))
}

fn episode_air_date(season_start: Option<NaiveDate>, episode_number: u32) -> Option<NaiveDate> {
    season_start?.checked_add_days(Days::new(7 * u64::from(episode_number.saturating_sub(1))))
}

fn season_name(season_number: u32) -> String {
    if season_number == 0 {
        "Specials".to_string()
    } else {
        format!("Season {season_number}")
    }
}

/// TMDB-like ids for seasons and episodes, derived so they are stable.
fn season_id(show: &CatalogTv, season_number: u32) -> u64 {
    show.tmdb_id * 1_000 + u64::from(season_number)
}

/// `mapSeasonResult` of `server/models/Tv.ts` (a season of `TvDetails.seasons`).
fn season_summary(show: &CatalogTv, season_number: u32, episode_count: u32) -> Value {
    json!({
        "airDate": season_start(show, season_number).map(format_date),
        "episodeCount": episode_count,
        "id": season_id(show, season_number),
        "name": season_name(season_number),
        "overview": "",
        "seasonNumber": season_number,
    })
}

/// `mapTvDetails` of `server/models/Tv.ts`.
fn tv_details(show: &CatalogTv, media_info: Option<Value>, today: NaiveDate) -> Value {
    let (_, genres) = genres_json(&show.genres);
    let status = show
        .status
        .clone()
        .unwrap_or_else(|| "Returning Series".to_string());
    let regular = || show.seasons.iter().filter(|(number, _)| *number > 0);
    let last_aired = show
        .seasons
        .iter()
        .flat_map(|(number, count)| {
            let start = season_start(show, *number);
            (1..=*count).filter_map(move |episode| episode_air_date(start, episode))
        })
        .filter(|date| *date <= today)
        .max();
    let seasons: Vec<Value> = show
        .seasons
        .iter()
        .map(|(number, count)| season_summary(show, *number, *count))
        .collect();
    let mut details = with_optional(
        json!({
            "createdBy": [],
            "episodeRunTime": [],
            "firstAirDate": show.first_air_date.clone().unwrap_or_default(),
            "genres": genres,
            "relatedVideos": [],
            "homepage": "",
            "id": show.tmdb_id,
            "inProduction": status != "Ended" && status != "Canceled",
            "languages": ["en"],
            "name": show.name,
            "networks": [],
            "numberOfEpisodes": regular().map(|(_, count)| count).sum::<u32>(),
            // Overseerr's name; the spec misspells it `numberOfSeason`.
            "numberOfSeasons": regular().count(),
            "originCountry": ["US"],
            "originalLanguage": "en",
            "originalName": show.name,
            "tagline": "",
            "overview": show.overview.clone().unwrap_or_default(),
            "popularity": show.popularity,
            "productionCompanies": [],
            "productionCountries": [],
            "contentRatings": { "results": [] },
            "spokenLanguages": [],
            "seasons": seasons,
            "status": status,
            "type": "Scripted",
            "voteAverage": 0.0,
            "voteCount": 0,
            "credits": { "cast": [], "crew": [] },
            "externalIds": {
                "facebookId": null,
                "freebaseId": null,
                "freebaseMid": null,
                "imdbId": null,
                "instagramId": null,
                "tvdbId": show.tvdb_id,
                "tvrageId": null,
                "twitterId": null,
            },
            "keywords": [],
            "watchProviders": [],
        }),
        [
            ("backdropPath", optional_text(&show.backdrop_path)),
            ("posterPath", optional_text(&show.poster_path)),
            ("mediaInfo", media_info),
        ],
    );
    if let (Value::Object(fields), Some(date)) = (&mut details, last_aired) {
        fields.insert("lastAirDate".to_string(), Value::String(format_date(date)));
    }
    details
}

/// `mapSeasonWithEpisodes` of `server/models/Tv.ts`, or `None` for a season the series
/// does not have.
fn season_details(show: &CatalogTv, season_number: u32) -> Option<Value> {
    let (_, episode_count) = show
        .seasons
        .iter()
        .find(|(number, _)| *number == season_number)?;
    let start = season_start(show, season_number);
    let id = season_id(show, season_number);
    let episodes: Vec<Value> = (1..=*episode_count)
        .map(|episode| {
            // No `voteCount`: Overseerr reads TMDB's `vote_count` as `vote_cuont`.
            json!({
                "id": id * 1_000 + u64::from(episode),
                "airDate": episode_air_date(start, episode).map(format_date),
                "episodeNumber": episode,
                "name": format!("Episode {episode}"),
                "overview": "",
                "productionCode": "",
                "seasonNumber": season_number,
                "showId": show.tmdb_id,
                "voteAverage": 0.0,
                "stillPath": null,
            })
        })
        .collect();
    Some(json!({
        "airDate": start.map(format_date),
        "episodes": episodes,
        // TMDB's season external ids: TheTVDB's season id (unknown here), TVRage, Freebase.
        "externalIds": {
            "freebaseMid": null,
            "freebaseId": null,
            "tvdbId": null,
            "tvrageId": null,
        },
        "id": id,
        "name": season_name(season_number),
        "overview": "",
        "seasonNumber": season_number,
    }))
}

/// The `page` of a catalogue call as TMDB takes it: absent is 1 (Overseerr's web UI always
/// sends it); `None` when TMDB refuses it (not a whole number in `1..=500`).
fn tmdb_page(query: &[(String, String)]) -> Option<usize> {
    let Some((_, raw)) = query.iter().find(|(name, _)| name == "page") else {
        return Some(1);
    };
    let page = raw.parse::<f64>().ok()?;
    (page.fract() == 0.0 && (1.0..=TMDB_MAX_PAGE).contains(&page)).then_some(page as usize)
}

/// Numeric path parameters, `(name, raw)`, as express-openapi-validator checks them
/// (`type: number`): `Err` with the problems when one is not a number; `None` for a number
/// that is no TMDB id (TMDB then knows nothing).
fn path_numbers<const N: usize>(
    params: [(&str, &str); N],
) -> Result<[Option<u64>; N], Vec<String>> {
    let problems: Vec<String> = params
        .iter()
        .filter(|(_, raw)| !raw.parse::<f64>().is_ok_and(f64::is_finite))
        .map(|(name, _)| format!("params/{name}: must be number"))
        .collect();
    if problems.is_empty() {
        Ok(params.map(|(_, raw)| raw.parse::<u64>().ok()))
    } else {
        Err(problems)
    }
}

/// The validator's 400 for bad path parameters, recorded as a violation.
fn refuse_path(shared: &Shared, uri: &Uri, problems: &[String]) -> Response {
    let mut state = shared.lock();
    for problem in problems {
        state
            .violations
            .push(format!("GET {}: {problem}", uri.path()));
    }
    validator_answer(StatusCode::BAD_REQUEST, uri.path(), problems)
}

/// `GET /search` (`server/routes/search.ts`): TMDB's `/search/multi` through
/// `mapSearchResults`. Overseerr's `searchMulti` swallows TMDB errors (a refused page) into
/// an empty page 1. The `tmdb:`/`imdb:`/`tvdb:` id look-ups of `server/lib/search.ts` are not
/// simulated.
async fn search_handler(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let Some(page) = tmdb_page(&query) else {
        return json_answer(
            StatusCode::OK,
            json!({ "page": 1, "totalPages": 1, "totalResults": 0, "results": [] }),
        );
    };
    let text = query
        .iter()
        .find(|(name, _)| name == "query")
        .map_or("", |(_, value)| value.as_str());
    let state = shared.lock();
    let found = state.catalog.search(text);
    json_answer(
        StatusCode::OK,
        catalog_page(&found, page, &state.catalog, &state.store),
    )
}

/// A `GET /discover/*` route (`server/routes/discover.ts`) for `list`.
fn discover_route(list: DiscoverList) -> MethodRouter<Arc<Shared>> {
    get(move |state, query| discover_handler(list, state, query))
}

async fn discover_handler(
    list: DiscoverList,
    State(shared): State<Arc<Shared>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let Some(page) = tmdb_page(&query) else {
        // TMDB refuses the page; the route's catch answers 500 with its message.
        let message = match list {
            DiscoverList::Trending => "Unable to retrieve trending items.",
            DiscoverList::PopularMovies => "Unable to retrieve popular movies.",
            DiscoverList::PopularTv => "Unable to retrieve popular series.",
            DiscoverList::UpcomingMovies => "Unable to retrieve upcoming movies.",
            DiscoverList::UpcomingTv => "Unable to retrieve upcoming series.",
        };
        return json_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "message": message }),
        );
    };
    let state = shared.lock();
    let found = state.catalog.discover(list, today());
    let mut answer = catalog_page(&found, page, &state.catalog, &state.store);
    if let (Value::Object(fields), DiscoverList::PopularMovies | DiscoverList::PopularTv) =
        (&mut answer, list)
    {
        // The keyword details of a `keywords` filter, which MediaNest never sends.
        fields.insert("keywords".to_string(), json!([]));
    }
    json_answer(StatusCode::OK, answer)
}

/// `GET /movie/{movieId}` (`server/routes/movie.ts`): an id TMDB does not know is a 500
/// `{"message": "Unable to retrieve movie."}`.
async fn movie_handler(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    Path(movie_id): Path<String>,
) -> Response {
    let [id] = match path_numbers([("movieId", &movie_id)]) {
        Ok(ids) => ids,
        Err(problems) => return refuse_path(&shared, &uri, &problems),
    };
    let state = shared.lock();
    match id.and_then(|id| state.catalog.movie(id)) {
        Some(movie) => json_answer(
            StatusCode::OK,
            movie_details(
                movie,
                state.store.media_info("movie", movie.tmdb_id, true),
                today(),
            ),
        ),
        None => json_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "message": "Unable to retrieve movie." }),
        ),
    }
}

/// `GET /tv/{tvId}` (`server/routes/tv.ts`): an id TMDB does not know is a 500
/// `{"message": "Unable to retrieve series."}`.
async fn tv_handler(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    Path(tv_id): Path<String>,
) -> Response {
    let [id] = match path_numbers([("tvId", &tv_id)]) {
        Ok(ids) => ids,
        Err(problems) => return refuse_path(&shared, &uri, &problems),
    };
    let state = shared.lock();
    match id.and_then(|id| state.catalog.show(id)) {
        Some(show) => json_answer(
            StatusCode::OK,
            tv_details(
                show,
                state.store.media_info("tv", show.tmdb_id, true),
                today(),
            ),
        ),
        None => json_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "message": "Unable to retrieve series." }),
        ),
    }
}

/// `GET /tv/{tvId}/season/{seasonId}` (`server/routes/tv.ts`): an unknown series or season
/// is a 500 `{"message": "Unable to retrieve season."}`.
async fn season_handler(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    Path((tv_id, season_id)): Path<(String, String)>,
) -> Response {
    let [tv_id, season_number] = match path_numbers([("tvId", &tv_id), ("seasonId", &season_id)]) {
        Ok(ids) => ids,
        Err(problems) => return refuse_path(&shared, &uri, &problems),
    };
    let state = shared.lock();
    let season = tv_id
        .and_then(|id| state.catalog.show(id))
        .zip(season_number.and_then(|number| u32::try_from(number).ok()))
        .and_then(|(show, number)| season_details(show, number));
    match season {
        Some(season) => json_answer(StatusCode::OK, season),
        None => json_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "message": "Unable to retrieve season." }),
        ),
    }
}

/// Accepts connections, except while the simulator is down: then they are closed unanswered.
struct SwitchableListener {
    inner: TcpListener,
    down: Arc<AtomicBool>,
}

impl axum::serve::Listener for SwitchableListener {
    type Io = SwitchableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            if self.down.load(Ordering::SeqCst) {
                drop(stream);
                continue;
            }
            let down = Arc::clone(&self.down);
            return (
                SwitchableStream {
                    inner: stream,
                    down,
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that reads end-of-file (and refuses writes) once the simulator is down, so
/// kept-alive connections die too.
struct SwitchableStream {
    inner: TcpStream,
    down: Arc<AtomicBool>,
}

impl AsyncRead for SwitchableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.down.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SwitchableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.down.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
