//! The catalogue (issue 11; docs/api.md "Catalogue"): what a member can request, found
//! through Overseerr's own API (which fronts TMDB) and joined with MediaNest's own read
//! models to say, for each movie and show, whether Plex has it, someone asked for it, or it
//! can be requested.
//!
//! - `GET /api/v1/catalog/search?q=&page=` — movies and shows (people left out), in
//!   Overseerr's order (overseerr-api.yml `GET /search`);
//! - `GET /api/v1/catalog/discover/{list}?page=` — `trending`, `popular-movies`,
//!   `popular-tv`, `upcoming-movies`, `upcoming-tv` (`GET /discover/trending`,
//!   `/discover/movies`, `/discover/tv`, `/discover/movies/upcoming`, `/discover/tv/upcoming`);
//! - `GET /api/v1/catalog/movie/{tmdb_id}`, `GET /api/v1/catalog/tv/{tmdb_id}` (with the
//!   seasons and their episode counts) and `GET /api/v1/catalog/tv/{tmdb_id}/season/{n}`
//!   (`GET /movie/{movieId}`, `/tv/{tvId}`, `/tv/{tvId}/season/{seasonId}`).
//!
//! **Availability** is MediaNest's, never Overseerr's `mediaInfo`: for HD and 4K
//! separately, `available` (the Plex library read model has it: the movie, or every season
//! TMDB lists for a show), else `requested` (an active request in the `requests` read model:
//! its id, status and whether it is the caller's), else `partially_available` (Plex has some
//! seasons), else `requestable`. Queries accept `min_position` (the `requests` read model).
//!
//! **Cache.** Overseerr's answers (not the availability, which is joined on every call) are
//! kept in a `moka` cache bounded in bytes ([`CatalogSettings::max_bytes`]), fresh for
//! [`CatalogSettings::list_ttl`] (lists and searches, default 30 minutes) or
//! [`CatalogSettings::details_ttl`] (details, default 6 hours) and kept for
//! [`CatalogSettings::stale_for`] beyond that. `X-Catalog-Cache` says `hit`, `miss` or
//! `stale`.
//!
//! **Outages never hang a caller.** Calls use the forwarder's Overseerr client (its timeout)
//! and circuit breaker, with at most [`CatalogSettings::retry`] attempts. While the breaker
//! is open no call is made. When Overseerr is down, slow past the timeout or its breaker is
//! open, a cached answer is served as `stale`; without one the answer is 503
//! `overseerr-unavailable` with `Retry-After`. An answer Overseerr sends that is not what its
//! spec describes is 502 `overseerr-bad-answer`; an id TMDB does not know is 404.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use medianest_domain::media_request::MediaType;
use medianest_domain::ActorId;
use medianest_http::{ApiError, Caller, ProblemType, Query};
use medianest_integrations::overseerr::{
    self, CatalogItem, CatalogPage, DiscoverList, MovieDetails, OverseerrClient, OverseerrError,
    SeasonDetails, TvDetails,
};
use medianest_store::plex_library::{self, InPlex};
use medianest_workers::breaker::{CircuitBreaker, Guarded};
use medianest_workers::RetryPolicy;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::search::search_text;
use crate::{wait_for_position, QueryState};

/// The header that says where a catalogue answer came from: `hit`, `miss` or `stale`.
pub const CACHE_HEADER: &str = "x-catalog-cache";

/// How long a list waits for the details of the shows on it that Plex has.
const SHOW_DETAILS_DEADLINE: Duration = Duration::from_secs(2);

/// Highest `page` (TMDB serves at most 500 pages of a list).
pub const MAX_PAGE: u32 = 500;

/// The routes of this module.
pub fn router() -> Router<QueryState> {
    Router::new()
        .route("/api/v1/catalog/search", get(search))
        .route("/api/v1/catalog/discover/{list}", get(discover))
        .route("/api/v1/catalog/movie/{tmdb_id}", get(movie))
        .route("/api/v1/catalog/tv/{tmdb_id}", get(tv))
        .route(
            "/api/v1/catalog/tv/{tmdb_id}/season/{season_number}",
            get(season),
        )
}

/// How the catalogue caches and calls Overseerr.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    /// How long a search or list answer is fresh (default 30 minutes).
    pub list_ttl: Duration,
    /// How long a movie, show or season answer is fresh (default 6 hours).
    pub details_ttl: Duration,
    /// How long an answer is kept past its freshness, to be served while Overseerr is down
    /// (default 7 days).
    pub stale_for: Duration,
    /// Upper bound of the cache, in bytes of the answers' JSON (default 32 MiB).
    pub max_bytes: u64,
    /// Attempts at one Overseerr call (transient failures only; default 2, 100 ms apart).
    pub retry: RetryPolicy,
    /// TMDB's image base, to which a size and the poster or backdrop path are appended
    /// (default `https://image.tmdb.org/t/p`).
    pub image_base_url: String,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            list_ttl: Duration::from_secs(30 * 60),
            details_ttl: Duration::from_secs(6 * 3600),
            stale_for: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 32 * 1024 * 1024,
            retry: RetryPolicy {
                attempts: 2,
                min_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(100),
            },
            image_base_url: "https://image.tmdb.org/t/p".to_string(),
        }
    }
}

/// An answer of Overseerr as cached.
#[derive(Debug, Clone)]
enum Answer {
    Page(CatalogPage),
    Movie(MovieDetails),
    Tv(TvDetails),
    Season(SeasonDetails),
}

#[derive(Debug)]
struct Cached {
    answer: Answer,
    fetched: Instant,
    fresh_for: Duration,
    bytes: u32,
}

/// Where an answer came from (the `X-Catalog-Cache` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Hit,
    Miss,
    Stale,
}

impl Origin {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
        })
    }
}

/// The catalogue's Overseerr access: client, breaker, retries and cache. Cheap to share.
pub struct Catalog {
    client: OverseerrClient,
    breaker: Arc<CircuitBreaker>,
    cache: moka::sync::Cache<String, Arc<Cached>>,
    settings: CatalogSettings,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("client", &self.client)
            .field("cached", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// A catalogue calling Overseerr with `client` through `breaker` (the forwarder's).
    pub fn new(
        client: OverseerrClient,
        breaker: Arc<CircuitBreaker>,
        settings: CatalogSettings,
    ) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|key: &String, value: &Arc<Cached>| {
                value
                    .bytes
                    .saturating_add(u32::try_from(key.len()).unwrap_or(u32::MAX))
            })
            .time_to_live(settings.details_ttl.max(settings.list_ttl) + settings.stale_for)
            .build();
        Self {
            client,
            breaker,
            cache,
            settings,
        }
    }

    /// The answer for `key`: fresh from the cache, else from Overseerr (cached), else stale
    /// from the cache when Overseerr cannot answer.
    async fn fetch<F, Fut>(
        &self,
        key: String,
        fresh_for: Duration,
        details: bool,
        call: F,
    ) -> Result<(Answer, Origin), ApiError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Answer, OverseerrError>>,
    {
        let cached = self.cache.get(&key);
        if let Some(hit) = cached
            .as_ref()
            .filter(|c| c.fetched.elapsed() < c.fresh_for)
        {
            return Ok((hit.answer.clone(), Origin::Hit));
        }
        match self.call(&call, details).await {
            Ok(answer) => {
                let bytes = estimated_bytes(&answer);
                self.cache.insert(
                    key,
                    Arc::new(Cached {
                        answer: answer.clone(),
                        fetched: Instant::now(),
                        fresh_for,
                        bytes,
                    }),
                );
                Ok((answer, Origin::Miss))
            }
            Err(failure) => match (failure, cached) {
                (Failure::Unavailable(_), Some(stale)) => Ok((stale.answer.clone(), Origin::Stale)),
                (failure, _) => Err(failure.problem()),
            },
        }
    }

    /// One Overseerr call: refused at once while the breaker is open; transient failures
    /// retried while it stays closed. For a movie, show or season (`details`), Overseerr's
    /// answer to an id TMDB does not know is not an outage (see [`unknown_title`]).
    async fn call<F, Fut>(&self, call: &F, details: bool) -> Result<Answer, Failure>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Answer, OverseerrError>>,
    {
        let unknown = |error: &OverseerrError| details && unknown_title(error);
        let transient = |error: &OverseerrError| error.is_retryable() && !unknown(error);
        let (result, _) = self
            .settings
            .retry
            .run(
                || async {
                    let Ok(permit) = self.breaker.try_acquire() else {
                        return Err(Guarded::Stopped);
                    };
                    let result = call().await;
                    permit.record(&result, transient);
                    result.map_err(Guarded::Failed)
                },
                |error| error.is_transient(transient),
            )
            .await;
        result.map_err(|error| match error {
            Guarded::Stopped => Failure::Unavailable(None),
            Guarded::Failed(error) if unknown(&error) => Failure::NotFound,
            Guarded::Failed(OverseerrError::Status { status: 404, .. }) => Failure::NotFound,
            Guarded::Failed(error) if error.is_retryable() => Failure::Unavailable(Some(error)),
            Guarded::Failed(error) => Failure::BadAnswer(error),
        })
    }

    fn image(&self, size: &str, path: Option<&str>) -> Option<String> {
        let path = path?.trim();
        if path.is_empty() || !path.starts_with('/') || path.contains("..") {
            return None;
        }
        Some(format!(
            "{}/{size}{path}",
            self.settings.image_base_url.trim_end_matches('/')
        ))
    }
}

/// Posters for notifications, through the same cache as the catalogue's details.
#[async_trait::async_trait]
impl medianest_workers::notifier::Posters for Catalog {
    async fn poster_url(
        &self,
        media_type: medianest_domain::media_request::MediaType,
        tmdb_id: u32,
    ) -> Option<String> {
        let id = u64::from(tmdb_id);
        let path = match media_type {
            medianest_domain::media_request::MediaType::Movie => {
                let (answer, _) = self
                    .fetch(
                        format!("movie:{id}"),
                        self.settings.details_ttl,
                        true,
                        || async move { self.client.movie(id).await.map(Answer::Movie) },
                    )
                    .await
                    .ok()?;
                match answer {
                    Answer::Movie(movie) => movie.item.poster_path,
                    _ => None,
                }
            }
            medianest_domain::media_request::MediaType::Tv => {
                tv_details(self, id).await.ok()?.0.item.poster_path
            }
        };
        self.image("w500", path.as_deref())
    }
}

/// Whether Overseerr's answer says it could not find a title in TMDB.
///
/// Overseerr has no 404 for an unknown TMDB id: `server/routes/movie.ts` and
/// `server/routes/tv.ts` (sct/overseerr) answer every failure of TMDB's lookup with 500
/// `{"message": "Unable to retrieve movie."}` (`… series.`, `… season.`), and TMDB's own 404
/// is the usual cause. Overseerr answered, so it is no outage: the catalogue says 404.
fn unknown_title(error: &OverseerrError) -> bool {
    matches!(
        error,
        OverseerrError::Status { status: 500, message: Some(message) }
            if message.starts_with("Unable to retrieve")
    )
}

/// Why Overseerr gave no usable answer.
#[derive(Debug)]
enum Failure {
    /// Down, slow or 5xx (the error), or its breaker open (`None`: not asked).
    Unavailable(Option<OverseerrError>),
    /// TMDB does not know the id.
    NotFound,
    /// An answer that is not what the spec describes, or a refusal (e.g. a wrong API key).
    BadAnswer(OverseerrError),
}

impl Failure {
    fn problem(self) -> ApiError {
        match self {
            Self::Unavailable(error) => {
                let cause: &dyn std::fmt::Display = match &error {
                    Some(error) => error,
                    None => &"Overseerr's circuit breaker is open",
                };
                tracing::info!(%cause, "catalogue answer without Overseerr");
                ApiError::new(ProblemType::OverseerrUnavailable, "Overseerr cannot answer now and nothing is cached for this query; try again later")
                .retry_after(30)
            }
            Self::NotFound => ApiError::not_found("TMDB knows no such title"),
            Self::BadAnswer(cause) => {
                tracing::warn!(%cause, "Overseerr's answer is unusable");
                ApiError::new(
                    ProblemType::OverseerrBadAnswer,
                    "Overseerr's answer was not what its API describes",
                )
            }
        }
    }
}

fn estimated_bytes(answer: &Answer) -> u32 {
    let json = match answer {
        Answer::Page(page) => serde_json::to_vec(page),
        Answer::Movie(movie) => serde_json::to_vec(movie),
        Answer::Tv(tv) => serde_json::to_vec(tv),
        Answer::Season(season) => serde_json::to_vec(season),
    };
    json.map(|bytes| u32::try_from(bytes.len()).unwrap_or(u32::MAX))
        .unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------
// Wire shapes
// ---------------------------------------------------------------------------------------

/// Availability of one version (HD or 4K) of a movie or show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Availability {
    /// Plex has it: the movie, or every season TMDB lists (specials aside).
    Available {
        /// The Plex item's `ratingKey`.
        plex_rating_key: String,
    },
    /// An active request exists.
    Requested {
        /// The request's id.
        request_id: Uuid,
        /// Its status (`pending`, `approved`, `forwarded`, `processing`,
        /// `partially_available`, `available`).
        request_status: String,
        /// Whether the caller made it.
        mine: bool,
        /// The seasons Plex already has (TV; empty otherwise).
        available_seasons: Vec<u32>,
    },
    /// Plex has some seasons of the show.
    PartiallyAvailable {
        /// The seasons Plex has.
        seasons: Vec<u32>,
        /// The Plex item's `ratingKey`.
        plex_rating_key: String,
    },
    /// Nothing in Plex, no active request.
    Requestable,
}

/// Availability in HD and in 4K.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Availabilities {
    /// The HD version.
    hd: Availability,
    /// The 4K version.
    #[serde(rename = "4k")]
    uhd: Availability,
}

/// A movie or show of the catalogue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Entry {
    /// `movie` or `tv`.
    media_type: String,
    /// TMDB id (what `POST /api/v1/requests` takes as `tmdb_id`).
    tmdb_id: u64,
    /// TheTVDB id, when known (shows' details).
    tvdb_id: Option<u64>,
    /// Title (a show's name).
    title: String,
    /// Year of release or first air date.
    year: Option<u16>,
    /// Overview.
    overview: Option<String>,
    /// Absolute poster URL (TMDB, `w500`).
    poster_url: Option<String>,
    /// Absolute backdrop URL (TMDB, `w1280`).
    backdrop_url: Option<String>,
    /// MediaNest's availability of this media.
    availability: Availabilities,
}

/// A page of movies and shows.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EntryPage {
    /// 1-based page number.
    page: u32,
    /// Pages in all.
    total_pages: u32,
    /// Results in all (people included, as Overseerr counts them).
    total_results: u64,
    /// The movies and shows of this page, in Overseerr's order.
    results: Vec<Entry>,
}

/// A movie with its details.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MovieEntry {
    #[serde(flatten)]
    entry: Entry,
    /// IMDb id.
    imdb_id: Option<String>,
    /// Minutes.
    runtime: Option<u32>,
    /// `YYYY-MM-DD`.
    release_date: Option<String>,
    /// Genre names.
    genres: Vec<String>,
}

/// One season of a show.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SeasonEntry {
    /// Season number (0: specials).
    season_number: u32,
    /// Episodes TMDB lists.
    episode_count: u32,
    /// Name.
    name: Option<String>,
    /// `YYYY-MM-DD`.
    air_date: Option<String>,
    /// Absolute poster URL.
    poster_url: Option<String>,
    /// Whether Plex has this season in HD.
    available: bool,
    /// Whether Plex has this season in 4K.
    available_4k: bool,
}

/// A show with its seasons.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TvEntry {
    #[serde(flatten)]
    entry: Entry,
    /// `YYYY-MM-DD`.
    first_air_date: Option<String>,
    /// TMDB's status, e.g. `Returning Series`, `Ended`.
    status: Option<String>,
    /// Genre names.
    genres: Vec<String>,
    /// The seasons TMDB lists, with their episode counts and Plex availability.
    seasons: Vec<SeasonEntry>,
}

/// One episode of a season.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EpisodeEntry {
    /// Episode number.
    episode_number: u32,
    /// Name.
    name: Option<String>,
    /// `YYYY-MM-DD`.
    air_date: Option<String>,
}

/// A season with its episodes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SeasonDetailsEntry {
    /// The show's TMDB id.
    tmdb_id: u64,
    /// Season number.
    season_number: u32,
    /// Name.
    name: Option<String>,
    /// Overview.
    overview: Option<String>,
    /// `YYYY-MM-DD`.
    air_date: Option<String>,
    /// Absolute poster URL.
    poster_url: Option<String>,
    /// Whether Plex has this season in HD.
    available: bool,
    /// Whether Plex has this season in 4K.
    available_4k: bool,
    /// Episodes.
    episodes: Vec<EpisodeEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchParams {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    min_position: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageParams {
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    min_position: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DetailParams {
    #[serde(default)]
    min_position: Option<i64>,
}

// ---------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------

fn catalog(state: &QueryState) -> Result<&Arc<Catalog>, ApiError> {
    state.catalog.as_ref().ok_or_else(|| {
        ApiError::new(ProblemType::CatalogDisabled, "the catalogue is answered through Overseerr: set MEDIANEST_OVERSEERR_URL and MEDIANEST_OVERSEERR_API_KEY")
    })
}

/// `page`: a whole number from 1 to [`MAX_PAGE`], default 1.
fn page_number(page: Option<&str>) -> Result<u32, ApiError> {
    let Some(page) = page else { return Ok(1) };
    page.trim()
        .parse::<u32>()
        .ok()
        .filter(|p| (1..=MAX_PAGE).contains(p))
        .ok_or_else(|| {
            ApiError::malformed(format!("page must be a whole number from 1 to {MAX_PAGE}"))
        })
}

/// A TMDB id from the path: a positive whole number that fits a request's `tmdb_id`;
/// anything else names nothing (404).
fn tmdb_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u32>()
        .ok()
        .filter(|id| *id > 0)
        .map(u64::from)
        .ok_or_else(|| ApiError::not_found("no such title: TMDB ids are positive whole numbers"))
}

fn with_origin(body: impl Serialize, origin: Origin) -> Response {
    let mut response = (StatusCode::OK, Json(body)).into_response();
    response.headers_mut().insert(CACHE_HEADER, origin.header());
    response
}

/// Search movies and shows.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/search",
    tag = "catalog",
    params(
        ("q" = String, Query, description = "1 to 200 characters"),
        ("page" = Option<u32>, Query, description = "1 to 500, default 1"),
        ("min_position" = Option<i64>, Query, description = "wait until the requests read model has this position")
    ),
    responses(
        (status = 200, description = "movies and shows in Overseerr's order; header X-Catalog-Cache: hit, miss or stale", body = EntryPage),
        (status = 400, description = "`q` missing, empty, over 200 characters or with control characters, or `page` out of range (`malformed-request`)"),
        (status = 502, description = "Overseerr's answer is not what its API describes (`overseerr-bad-answer`)"),
        (status = 503, description = "the catalogue is not configured (`catalog-disabled`), or Overseerr cannot answer and nothing is cached (`overseerr-unavailable`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn search(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    Query(params): Query<SearchParams>,
) -> Result<Response, ApiError> {
    let q = search_text(params.q.as_deref())?.to_string();
    let page = page_number(params.page.as_deref())?;
    let catalog = catalog(&state)?;
    wait_for_position(&state, "requests", params.min_position, &headers).await?;
    let key = format!("search:{page}:{}", q.to_lowercase());
    list_answer(&state, catalog, &caller.id, key, || {
        let q = q.clone();
        async move { catalog.client.search(&q, page).await }
    })
    .await
}

/// A discover list.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/discover/{list}",
    tag = "catalog",
    params(
        ("list" = String, Path, description = "trending, popular-movies, popular-tv, upcoming-movies or upcoming-tv"),
        ("page" = Option<u32>, Query, description = "1 to 500, default 1"),
        ("min_position" = Option<i64>, Query, description = "wait until the requests read model has this position")
    ),
    responses(
        (status = 200, description = "movies and shows; header X-Catalog-Cache", body = EntryPage),
        (status = 400, description = "`page` out of range (`malformed-request`)"),
        (status = 404, description = "no such list (`not-found`)"),
        (status = 502, description = "Overseerr's answer is not what its API describes (`overseerr-bad-answer`)"),
        (status = 503, description = "the catalogue is not configured (`catalog-disabled`), or Overseerr cannot answer and nothing is cached (`overseerr-unavailable`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn discover(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    Path(list): Path<String>,
    headers: HeaderMap,
    Query(params): Query<PageParams>,
) -> Result<Response, ApiError> {
    let Some(list) = DiscoverList::from_slug(&list) else {
        let lists: Vec<&str> = DiscoverList::ALL.iter().map(|l| l.slug()).collect();
        return Err(ApiError::not_found(format!(
            "no such list; the lists are {}",
            lists.join(", ")
        )));
    };
    let page = page_number(params.page.as_deref())?;
    let catalog = catalog(&state)?;
    wait_for_position(&state, "requests", params.min_position, &headers).await?;
    let key = format!("discover:{}:{page}", list.slug());
    list_answer(&state, catalog, &caller.id, key, || async move {
        catalog.client.discover(list, page).await
    })
    .await
}

/// A movie's details.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/movie/{tmdb_id}",
    tag = "catalog",
    params(
        ("tmdb_id" = u32, Path, description = "TMDB id"),
        ("min_position" = Option<i64>, Query, description = "wait until the requests read model has this position")
    ),
    responses(
        (status = 200, description = "the movie; header X-Catalog-Cache", body = MovieEntry),
        (status = 404, description = "TMDB does not know the movie, or the id is not a positive whole number (`not-found`)"),
        (status = 502, description = "Overseerr's answer is not what its API describes (`overseerr-bad-answer`)"),
        (status = 503, description = "the catalogue is not configured (`catalog-disabled`), or Overseerr cannot answer and nothing is cached (`overseerr-unavailable`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn movie(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<DetailParams>,
) -> Result<Response, ApiError> {
    let id = tmdb_id(&raw_id)?;
    let catalog = catalog(&state)?;
    wait_for_position(&state, "requests", params.min_position, &headers).await?;
    let (answer, origin) = catalog
        .fetch(
            format!("movie:{id}"),
            catalog.settings.details_ttl,
            true,
            || async move { catalog.client.movie(id).await.map(Answer::Movie) },
        )
        .await?;
    let Answer::Movie(movie) = answer else {
        return Err(other_kind());
    };
    let mut entries = entries(
        &state,
        catalog,
        &caller.id,
        std::slice::from_ref(&movie.item),
        &HashMap::new(),
    )
    .await?;
    let entry = entries
        .pop()
        .ok_or_else(|| ApiError::internal(&"no entry for the movie"))?;
    Ok(with_origin(
        MovieEntry {
            entry,
            imdb_id: movie.imdb_id,
            runtime: movie.runtime,
            release_date: movie.release_date,
            genres: movie.genres,
        },
        origin,
    ))
}

/// A show's details with its seasons.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/tv/{tmdb_id}",
    tag = "catalog",
    params(
        ("tmdb_id" = u32, Path, description = "TMDB id"),
        ("min_position" = Option<i64>, Query, description = "wait until the requests read model has this position")
    ),
    responses(
        (status = 200, description = "the show; header X-Catalog-Cache", body = TvEntry),
        (status = 404, description = "TMDB does not know the show, or the id is not a positive whole number (`not-found`)"),
        (status = 502, description = "Overseerr's answer is not what its API describes (`overseerr-bad-answer`)"),
        (status = 503, description = "the catalogue is not configured (`catalog-disabled`), or Overseerr cannot answer and nothing is cached (`overseerr-unavailable`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn tv(
    State(state): State<QueryState>,
    Caller(caller): Caller,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<DetailParams>,
) -> Result<Response, ApiError> {
    let id = tmdb_id(&raw_id)?;
    let catalog = catalog(&state)?;
    wait_for_position(&state, "requests", params.min_position, &headers).await?;
    let (show, origin) = tv_details(catalog, id).await?;
    let known = HashMap::from([(id, tmdb_seasons(&show))]);
    let mut entries = entries(
        &state,
        catalog,
        &caller.id,
        std::slice::from_ref(&show.item),
        &known,
    )
    .await?;
    let entry = entries
        .pop()
        .ok_or_else(|| ApiError::internal(&"no entry for the show"))?;
    let in_plex = plex_library::find(&state.pool, MediaType::Tv, to_i64(id))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let seasons = show
        .seasons
        .iter()
        .map(|season| {
            let (available, available_4k) = season_in_plex(&in_plex, season.season_number);
            SeasonEntry {
                season_number: season.season_number,
                episode_count: season.episode_count,
                name: season.name.clone(),
                air_date: season.air_date.clone(),
                poster_url: catalog.image("w500", season.poster_path.as_deref()),
                available,
                available_4k,
            }
        })
        .collect();
    Ok(with_origin(
        TvEntry {
            entry,
            first_air_date: show.first_air_date,
            status: show.status,
            genres: show.genres,
            seasons,
        },
        origin,
    ))
}

/// A season of a show with its episodes.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/tv/{tmdb_id}/season/{season_number}",
    tag = "catalog",
    params(
        ("tmdb_id" = u32, Path, description = "TMDB id of the show"),
        ("season_number" = u32, Path, description = "season number (0: specials)"),
        ("min_position" = Option<i64>, Query, description = "wait until the requests read model has this position")
    ),
    responses(
        (status = 200, description = "the season; header X-Catalog-Cache", body = SeasonDetailsEntry),
        (status = 404, description = "no such show or season (`not-found`)"),
        (status = 502, description = "Overseerr's answer is not what its API describes (`overseerr-bad-answer`)"),
        (status = 503, description = "the catalogue is not configured (`catalog-disabled`), or Overseerr cannot answer and nothing is cached (`overseerr-unavailable`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn season(
    State(state): State<QueryState>,
    Caller(_caller): Caller,
    Path((raw_id, raw_season)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<DetailParams>,
) -> Result<Response, ApiError> {
    let id = tmdb_id(&raw_id)?;
    let number = raw_season
        .parse::<u32>()
        .ok()
        .filter(|n| *n <= 1000)
        .ok_or_else(|| {
            ApiError::not_found("no such season: season numbers are whole numbers from 0")
        })?;
    let catalog = catalog(&state)?;
    wait_for_position(&state, "requests", params.min_position, &headers).await?;
    let (answer, origin) = catalog
        .fetch(
            format!("season:{id}:{number}"),
            catalog.settings.details_ttl,
            true,
            || async move { catalog.client.season(id, number).await.map(Answer::Season) },
        )
        .await?;
    let Answer::Season(season) = answer else {
        return Err(other_kind());
    };
    let in_plex = plex_library::find(&state.pool, MediaType::Tv, to_i64(id))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let (available, available_4k) = season_in_plex(&in_plex, season.season_number);
    Ok(with_origin(
        SeasonDetailsEntry {
            tmdb_id: id,
            season_number: season.season_number,
            name: season.name,
            overview: season.overview,
            air_date: season.air_date,
            poster_url: catalog.image("w500", season.poster_path.as_deref()),
            available,
            available_4k,
            episodes: season
                .episodes
                .into_iter()
                .map(|e| EpisodeEntry {
                    episode_number: e.episode_number,
                    name: e.name,
                    air_date: e.air_date,
                })
                .collect(),
        },
        origin,
    ))
}

/// A search or list answer: from the cache or Overseerr (`call`), with availability.
async fn list_answer<F, Fut>(
    state: &QueryState,
    catalog: &Catalog,
    caller: &ActorId,
    key: String,
    call: F,
) -> Result<Response, ApiError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<CatalogPage, OverseerrError>>,
{
    let (answer, origin) = catalog
        .fetch(key, catalog.settings.list_ttl, false, || async {
            call().await.map(Answer::Page)
        })
        .await?;
    let Answer::Page(page) = answer else {
        return Err(other_kind());
    };
    Ok(with_origin(
        entry_page(state, catalog, caller, page, origin).await?,
        origin,
    ))
}

/// A cache entry of another kind under a key (keys name their kind, so this is a bug).
fn other_kind() -> ApiError {
    ApiError::internal(&"cached answer of another kind")
}

// ---------------------------------------------------------------------------------------
// Availability
// ---------------------------------------------------------------------------------------

fn to_i64(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

async fn tv_details(catalog: &Catalog, id: u64) -> Result<(TvDetails, Origin), ApiError> {
    let (answer, origin) = catalog
        .fetch(
            format!("tv:{id}"),
            catalog.settings.details_ttl,
            true,
            || async move { catalog.client.tv(id).await.map(Answer::Tv) },
        )
        .await?;
    match answer {
        Answer::Tv(show) => Ok((show, origin)),
        _ => Err(other_kind()),
    }
}

/// The seasons TMDB lists for a show, specials aside.
fn tmdb_seasons(show: &TvDetails) -> Vec<u32> {
    show.seasons
        .iter()
        .map(|s| s.season_number)
        .filter(|n| *n > 0)
        .collect()
}

fn season_in_plex(in_plex: &InPlex, season: u32) -> (bool, bool) {
    let has = |p: Option<&plex_library::Presence>| p.is_some_and(|p| p.seasons.contains(&season));
    (has(in_plex.hd.as_ref()), has(in_plex.uhd.as_ref()))
}

async fn entry_page(
    state: &QueryState,
    catalog: &Catalog,
    caller: &ActorId,
    page: CatalogPage,
    origin: Origin,
) -> Result<EntryPage, ApiError> {
    // Shows Plex has: their TMDB season lists tell available from partial. They come from
    // the cache, else — unless Overseerr is already known to be failing (a stale list) —
    // from Overseerr, all at once and within SHOW_DETAILS_DEADLINE; a show whose list is
    // not had in time is shown as partially available.
    let shows: Vec<(MediaType, i64)> = page
        .results
        .iter()
        .filter(|i| i.media_type == overseerr::MediaType::Tv)
        .map(|i| (MediaType::Tv, to_i64(i.tmdb_id)))
        .collect();
    let in_plex = plex_library::find_many(&state.pool, &shows)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let ids: Vec<u64> = in_plex
        .keys()
        .filter_map(|(_, id)| u64::try_from(*id).ok())
        .collect();
    let mut known = HashMap::new();
    let mut missing = Vec::new();
    for id in ids {
        match catalog
            .cache
            .get(&format!("tv:{id}"))
            .map(|c| c.answer.clone())
        {
            Some(Answer::Tv(show)) => {
                known.insert(id, tmdb_seasons(&show));
            }
            _ => missing.push(id),
        }
    }
    if origin != Origin::Stale && !missing.is_empty() {
        let lookups = missing
            .into_iter()
            .map(|id| async move { (id, tv_details(catalog, id).await) });
        if let Ok(found) =
            tokio::time::timeout(SHOW_DETAILS_DEADLINE, futures::future::join_all(lookups)).await
        {
            for (id, show) in found {
                if let Ok((show, _)) = show {
                    known.insert(id, tmdb_seasons(&show));
                }
            }
        }
    }
    Ok(EntryPage {
        page: page.page,
        total_pages: page.total_pages,
        total_results: page.total_results,
        results: entries(state, catalog, caller, &page.results, &known).await?,
    })
}

/// One active request of the `requests` read model.
#[derive(Debug, sqlx::FromRow)]
struct ActiveRequest {
    id: Uuid,
    status: String,
    media_type: String,
    tmdb_id: i64,
    is_4k: bool,
    requested_by: String,
}

async fn active_requests(
    pool: &PgPool,
    keys: &[(MediaType, i64)],
) -> Result<Vec<ActiveRequest>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (types, ids) = plex_library::key_columns(keys);
    sqlx::query_as(
        "SELECT r.id, r.status, r.media_type, r.tmdb_id, r.is_4k, r.requested_by
           FROM requests r
           JOIN unnest($1::text[], $2::bigint[]) AS k(media_type, tmdb_id)
             ON r.media_type = k.media_type AND r.tmdb_id = k.tmdb_id
          WHERE r.status NOT IN ('declined', 'cancelled', 'failed')
          ORDER BY r.created_at",
    )
    .bind(types)
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// The entries of `items` with their availability; `tmdb_seasons` holds the TMDB season
/// lists of the shows known (a show Plex has is `available` only when it has all of them).
async fn entries(
    state: &QueryState,
    catalog: &Catalog,
    caller: &ActorId,
    items: &[CatalogItem],
    tmdb_seasons: &HashMap<u64, Vec<u32>>,
) -> Result<Vec<Entry>, ApiError> {
    let keys: Vec<(MediaType, i64)> = items
        .iter()
        .map(|i| (media_type(i), to_i64(i.tmdb_id)))
        .collect();
    let in_plex = plex_library::find_many(&state.pool, &keys)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let requests = active_requests(&state.pool, &keys)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(items
        .iter()
        .map(|item| {
            let key = (media_type(item), to_i64(item.tmdb_id));
            let plex = in_plex.get(&key);
            let seasons = tmdb_seasons.get(&item.tmdb_id).map(Vec::as_slice);
            let version = |is_4k: bool| {
                let request = requests.iter().rev().find(|r| {
                    r.media_type == key.0.as_str() && r.tmdb_id == key.1 && r.is_4k == is_4k
                });
                availability(
                    key.0,
                    plex.and_then(|p| p.for_4k(is_4k)),
                    request,
                    seasons,
                    caller,
                )
            };
            Entry {
                media_type: key.0.as_str().to_string(),
                tmdb_id: item.tmdb_id,
                tvdb_id: item.tvdb_id,
                title: item.title.clone(),
                year: item.year,
                overview: item.overview.clone(),
                poster_url: catalog.image("w500", item.poster_path.as_deref()),
                backdrop_url: catalog.image("w1280", item.backdrop_path.as_deref()),
                availability: Availabilities {
                    hd: version(false),
                    uhd: version(true),
                },
            }
        })
        .collect())
}

fn media_type(item: &CatalogItem) -> MediaType {
    match item.media_type {
        overseerr::MediaType::Movie => MediaType::Movie,
        overseerr::MediaType::Tv => MediaType::Tv,
    }
}

/// Available (Plex has all of it) > requested > partially available > requestable.
fn availability(
    media_type: MediaType,
    plex: Option<&plex_library::Presence>,
    request: Option<&ActiveRequest>,
    tmdb_seasons: Option<&[u32]>,
    caller: &ActorId,
) -> Availability {
    if let Some(plex) = plex {
        let complete = match media_type {
            MediaType::Movie => true,
            MediaType::Tv => tmdb_seasons
                .is_some_and(|all| !all.is_empty() && all.iter().all(|s| plex.seasons.contains(s))),
        };
        if complete {
            return Availability::Available {
                plex_rating_key: plex.rating_key.clone(),
            };
        }
    }
    let available_seasons = plex.map(|p| p.seasons.clone()).unwrap_or_default();
    if let Some(request) = request {
        return Availability::Requested {
            request_id: request.id,
            request_status: request.status.clone(),
            mine: request
                .requested_by
                .parse::<ActorId>()
                .is_ok_and(|owner| owner == *caller),
            available_seasons,
        };
    }
    match plex {
        Some(plex) if !plex.seasons.is_empty() => Availability::PartiallyAvailable {
            seasons: plex.seasons.clone(),
            plex_rating_key: plex.rating_key.clone(),
        },
        _ => Availability::Requestable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(seasons: &[u32]) -> plex_library::Presence {
        plex_library::Presence {
            rating_key: "42".to_string(),
            title: "Show".to_string(),
            seasons: seasons.to_vec(),
        }
    }

    fn me() -> ActorId {
        ActorId::user(Uuid::from_u128(1))
    }

    fn other() -> ActorId {
        ActorId::user(Uuid::from_u128(2))
    }

    fn request(by: &ActorId) -> ActiveRequest {
        ActiveRequest {
            id: Uuid::nil(),
            status: "approved".to_string(),
            media_type: "tv".to_string(),
            tmdb_id: 1,
            is_4k: false,
            requested_by: by.to_string(),
        }
    }

    #[test]
    fn a_show_is_available_only_with_every_tmdb_season_in_plex() {
        let plex = presence(&[0, 1, 2, 3]);
        assert!(matches!(
            availability(MediaType::Tv, Some(&plex), None, Some(&[1, 2, 3]), &me()),
            Availability::Available { .. }
        ));
        assert_eq!(
            availability(
                MediaType::Tv,
                Some(&presence(&[1, 2])),
                None,
                Some(&[1, 2, 3]),
                &me()
            ),
            Availability::PartiallyAvailable {
                seasons: vec![1, 2],
                plex_rating_key: "42".to_string()
            }
        );
        // Without TMDB's season list, what Plex has is only partial.
        assert!(matches!(
            availability(MediaType::Tv, Some(&plex), None, None, &me()),
            Availability::PartiallyAvailable { .. }
        ));
    }

    #[test]
    fn an_active_request_outranks_partial_availability_and_says_whose_it_is() {
        let answer = availability(
            MediaType::Tv,
            Some(&presence(&[1])),
            Some(&request(&me())),
            Some(&[1, 2]),
            &me(),
        );
        assert_eq!(
            answer,
            Availability::Requested {
                request_id: Uuid::nil(),
                request_status: "approved".to_string(),
                mine: true,
                available_seasons: vec![1]
            }
        );
        assert!(matches!(
            availability(
                MediaType::Movie,
                None,
                Some(&request(&other())),
                None,
                &me()
            ),
            Availability::Requested { mine: false, .. }
        ));
        assert_eq!(
            availability(MediaType::Movie, None, None, None, &me()),
            Availability::Requestable
        );
    }

    #[test]
    fn page_numbers_are_whole_numbers_from_1_to_500() {
        assert_eq!(page_number(None).unwrap(), 1);
        assert_eq!(page_number(Some("500")).unwrap(), 500);
        for bad in ["0", "501", "-1", "x", "1.5", ""] {
            assert_eq!(
                page_number(Some(bad)).unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    #[test]
    fn tmdb_ids_that_cannot_exist_are_not_found() {
        assert_eq!(tmdb_id("603").unwrap(), 603);
        for bad in ["0", "-1", "abc", "99999999999", "603.0", " 603"] {
            assert_eq!(
                tmdb_id(bad).unwrap_err().status(),
                StatusCode::NOT_FOUND,
                "{bad}"
            );
        }
    }
}
