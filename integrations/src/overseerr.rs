//! Async client for the part of Overseerr's API that MediaNest uses.
//!
//! This module owns the wire shapes and the HTTP calls of
//!
//! - the Overseerr forwarder and reconciler sagas (`docs/design.md` §6): creating a
//!   request, reading one back, and finding the request that already exists when Overseerr
//!   refuses a duplicate;
//! - catalogue browsing, answered through Overseerr (which asks TMDB): `GET /search`
//!   ([`OverseerrClient::search`]), the five `GET /discover/*` lists of [`DiscoverList`]
//!   ([`OverseerrClient::discover`]), `GET /movie/{movieId}`, `GET /tv/{tvId}` and
//!   `GET /tv/{tvId}/season/{seasonId}` ([`OverseerrClient::movie`], [`OverseerrClient::tv`],
//!   [`OverseerrClient::season`]). Lists are TMDB pages of [`CATALOG_PAGE_SIZE`] results;
//!   people and other kinds are dropped, so a [`CatalogPage`] only holds movies and series.
//!   Overseerr has no 404 for an id TMDB does not know: it answers 500 "Unable to retrieve
//!   movie." (`server/routes/movie.ts`, `server/routes/tv.ts`), which the client returns as
//!   [`OverseerrError::Status`] like any other status.
//!
//! The contract is Overseerr's own OpenAPI document, `overseerr-api.yml` in the contracts
//! directory (`MEDIANEST_CONTRACTS_DIR`, default `../shared/contracts`; not in the repository,
//! see docs/design.md §6). Its `servers` entry is `{server}/api/v1`, so spec paths such as
//! `POST /request` are sent to `<base_url>/api/v1/request`. Where the document is silent —
//! error answers, the `type`, `mediaType` and `status4k` fields, request status 4, the
//! catalogue's error answers — the shapes come from Overseerr's source (`sct/overseerr`,
//! `server/routes/request.ts`, `server/routes/{search,discover,movie,tv}.ts`,
//! `server/models/{Search,Movie,Tv}.ts`, `server/entity/*.ts`, `server/constants/media.ts`)
//! and are marked as such.
//!
//! Invariants:
//! - every call carries `X-Api-Key` (marked sensitive, never logged) and
//!   `Accept: application/json`, and is bounded by [`OverseerrConfig::timeout`];
//! - the client never retries: the saga owns retries, backoff and the circuit breaker, and
//!   every failure is returned as an [`OverseerrError`] that keeps the HTTP status;
//! - responses are read leniently: unknown fields are ignored and `null` is accepted wherever
//!   a value is optional, because Overseerr serialises its database entities (and TMDB's
//!   answers) as they are; what a value cannot do without — a numeric `id`, a title, an
//!   array of `results` — missing or mistyped is [`OverseerrError::Decode`], never a panic.

use std::fmt;
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cause::{error_chain, BoxError, Context};

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

/// TMDB's fixed page size, which Overseerr passes through for `GET /search` and the
/// `GET /discover/*` lists: every page but the last holds 20 results (people included, so a
/// [`CatalogPage`] may hold fewer once they are dropped).
pub const CATALOG_PAGE_SIZE: u32 = 20;

/// The discover lists MediaNest offers, each one of Overseerr's `GET /discover/*` operations
/// (overseerr-api.yml, tag `search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiscoverList {
    /// `GET /discover/trending` — TMDB's `/trending/all/day`: movies, series and people.
    Trending,
    /// `GET /discover/movies` — TMDB's `/discover/movie` sorted by `popularity.desc`.
    PopularMovies,
    /// `GET /discover/tv` — TMDB's `/discover/tv` sorted by `popularity.desc`.
    PopularTv,
    /// `GET /discover/movies/upcoming` — movies released on or after today, by popularity.
    UpcomingMovies,
    /// `GET /discover/tv/upcoming` — series first aired on or after today, by popularity.
    UpcomingTv,
}

impl DiscoverList {
    /// Every list, in the order MediaNest shows them.
    pub const ALL: [DiscoverList; 5] = [
        DiscoverList::Trending,
        DiscoverList::PopularMovies,
        DiscoverList::PopularTv,
        DiscoverList::UpcomingMovies,
        DiscoverList::UpcomingTv,
    ];

    /// The name MediaNest uses for the list in URLs: `"trending"`, `"popular-movies"`,
    /// `"popular-tv"`, `"upcoming-movies"` or `"upcoming-tv"`.
    pub fn slug(self) -> &'static str {
        match self {
            DiscoverList::Trending => "trending",
            DiscoverList::PopularMovies => "popular-movies",
            DiscoverList::PopularTv => "popular-tv",
            DiscoverList::UpcomingMovies => "upcoming-movies",
            DiscoverList::UpcomingTv => "upcoming-tv",
        }
    }

    /// The list named `slug` (exactly as [`DiscoverList::slug`] spells it), if any.
    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|list| list.slug() == slug)
    }

    /// The single kind of media the list holds, or `None` for [`DiscoverList::Trending`],
    /// which mixes movies and series (and people, which the client drops).
    pub fn media_type(self) -> Option<MediaType> {
        match self {
            DiscoverList::Trending => None,
            DiscoverList::PopularMovies | DiscoverList::UpcomingMovies => Some(MediaType::Movie),
            DiscoverList::PopularTv | DiscoverList::UpcomingTv => Some(MediaType::Tv),
        }
    }

    /// The path segments of the list's operation under `/api/v1`.
    fn segments(self) -> &'static [&'static str] {
        match self {
            DiscoverList::Trending => &["discover", "trending"],
            DiscoverList::PopularMovies => &["discover", "movies"],
            DiscoverList::PopularTv => &["discover", "tv"],
            DiscoverList::UpcomingMovies => &["discover", "movies", "upcoming"],
            DiscoverList::UpcomingTv => &["discover", "tv", "upcoming"],
        }
    }
}

impl fmt::Display for DiscoverList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// One movie or series of a discover list or a search: overseerr-api.yml's
/// `components.schemas.MovieResult` / `TvResult`, or the same fields of `MovieDetails` /
/// `TvDetails`. People (`PersonResult`) and other kinds (`collection`) are dropped by the
/// client.
///
/// Optional strings that Overseerr sends as `null`, absent or `""` are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogItem {
    /// `mediaType`: movie or tv (for the single-kind discover lists, the list's kind when an
    /// item has no `mediaType`).
    pub media_type: MediaType,
    /// `id`: the TMDB id.
    pub tmdb_id: u64,
    /// `externalIds.tvdbId`: the TheTVDB id of a series. Only the details of a series carry
    /// it ([`OverseerrClient::tv`]); `None` in lists, searches and for movies.
    pub tvdb_id: Option<u64>,
    /// `title` of a movie, `name` of a series.
    pub title: String,
    /// The year of `releaseDate` (movie) or `firstAirDate` (series), both `"YYYY-MM-DD"`;
    /// `None` when the date is `null`, absent, `""` (TMDB's "unknown") or not a date.
    pub year: Option<u16>,
    /// `overview`: TMDB's plot summary.
    pub overview: Option<String>,
    /// `posterPath`: a TMDB image path as sent (e.g. `"/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"`), to
    /// be appended to an image base such as `https://image.tmdb.org/t/p/w500`.
    pub poster_path: Option<String>,
    /// `backdropPath`: a TMDB image path as sent.
    pub backdrop_path: Option<String>,
}

/// One page of a discover list or a search (the `{page, totalPages, totalResults, results}`
/// answer of `GET /search` and `GET /discover/*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogPage {
    /// `page`: 1-based page number (the requested page when Overseerr sends none).
    pub page: u32,
    /// `totalPages`: number of pages ([`CATALOG_PAGE_SIZE`] results each); 0 when absent.
    pub total_pages: u32,
    /// `totalResults`: number of results over all pages, *people included*; 0 when absent.
    pub total_results: u64,
    /// The movies and series of this page, in Overseerr's order (people dropped).
    pub results: Vec<CatalogItem>,
}

/// A movie's details: overseerr-api.yml, `GET /movie/{movieId}`, `MovieDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovieDetails {
    /// The movie as in lists (`tvdb_id` is always `None`).
    pub item: CatalogItem,
    /// `imdbId` (else `externalIds.imdbId`), e.g. `"tt0133093"`.
    pub imdb_id: Option<String>,
    /// `runtime` in minutes; `None` when absent, `null` or 0 (TMDB's "unknown").
    pub runtime: Option<u32>,
    /// `releaseDate` as sent, `"YYYY-MM-DD"`.
    pub release_date: Option<String>,
    /// The `name`s of `genres`, in TMDB's order.
    pub genres: Vec<String>,
}

/// One season of a series' details: overseerr-api.yml, `components.schemas.Season` without
/// `episodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeasonSummary {
    /// `seasonNumber`: 0 is TMDB's "Specials".
    pub season_number: u32,
    /// `episodeCount` (0 when absent).
    pub episode_count: u32,
    /// `name`, e.g. `"Season 1"` or `"Specials"`.
    pub name: Option<String>,
    /// `airDate` as sent, `"YYYY-MM-DD"`.
    pub air_date: Option<String>,
    /// `posterPath`: a TMDB image path as sent.
    pub poster_path: Option<String>,
}

/// A series' details: overseerr-api.yml, `GET /tv/{tvId}`, `TvDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TvDetails {
    /// The series as in lists, with `tvdb_id` from `externalIds.tvdbId`.
    pub item: CatalogItem,
    /// `seasons`, specials (season 0) included, in TMDB's order.
    pub seasons: Vec<SeasonSummary>,
    /// `firstAirDate` as sent, `"YYYY-MM-DD"`.
    pub first_air_date: Option<String>,
    /// `status`: TMDB's words, e.g. `"Returning Series"`, `"Ended"`, `"In Production"`.
    pub status: Option<String>,
    /// The `name`s of `genres`, in TMDB's order.
    pub genres: Vec<String>,
}

/// One episode of a season: overseerr-api.yml, `components.schemas.Episode` (the fields
/// MediaNest shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EpisodeSummary {
    /// `episodeNumber`, 1-based within the season.
    pub episode_number: u32,
    /// `name`.
    pub name: Option<String>,
    /// `airDate` as sent, `"YYYY-MM-DD"` (`null` for unaired episodes).
    pub air_date: Option<String>,
}

/// A season with its episodes: overseerr-api.yml, `GET /tv/{tvId}/season/{seasonId}`,
/// `Season`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeasonDetails {
    /// `seasonNumber`: 0 is TMDB's "Specials".
    pub season_number: u32,
    /// `name`, e.g. `"Season 1"`.
    pub name: Option<String>,
    /// `overview`.
    pub overview: Option<String>,
    /// `airDate` as sent, `"YYYY-MM-DD"`.
    pub air_date: Option<String>,
    /// `posterPath`: a TMDB image path as sent.
    pub poster_path: Option<String>,
    /// `episodes`, in TMDB's order (empty when absent or `null`).
    pub episodes: Vec<EpisodeSummary>,
}

/// Why a call to Overseerr failed.
///
/// Callers match on the variant; [`OverseerrError::is_retryable`] says whether trying again
/// later can help (the saga's retry policy of docs/design.md §6).
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
    /// The transport's error is the source (its whole chain is in the text).
    #[error("could not reach Overseerr: {}", error_chain(.0))]
    Connect(#[source] reqwest::Error),
    /// The answer was not the JSON the spec describes: the decoding error (with the status and
    /// an excerpt of the body) or a sentence saying what is wrong.
    #[error("unexpected answer from Overseerr: {0}")]
    Decode(#[source] BoxError),
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
        self.send(self.http.get(url)).await?.ok_json()
    }

    /// Removes a request: overseerr-api.yml, `DELETE /request/{requestId}` (answer 204). The
    /// admin API key may remove any request (`server/routes/request.ts`). Answers `false`
    /// when Overseerr no longer has it (404 "Request not found."), so a repeated delete is
    /// not an error.
    ///
    /// # Errors
    ///
    /// [`OverseerrError::Status`] on any other status, and the transport errors.
    #[tracing::instrument(name = "overseerr.delete_request", skip(self))]
    pub async fn delete_request(&self, id: u64) -> Result<bool, OverseerrError> {
        let url = self.endpoint(&["request", &id.to_string()])?;
        let answer = self.send(self.http.delete(url)).await?;
        match answer.status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
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
        self.send(self.http.get(url)).await?.ok_json()
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

    /// Searches movies, series and people: overseerr-api.yml, `GET /search?query=&page=`
    /// (answer 200, `{page, totalPages, totalResults, results}` with `MovieResult`,
    /// `TvResult` and `PersonResult` items, each tagged by `mediaType`).
    ///
    /// `query` is sent percent-encoded as typed (Overseerr hands it to TMDB's `/search/multi`;
    /// a query such as `tmdb:603` or `imdb:tt0133093` is an id look-up there). People and
    /// other kinds are dropped from `results`, but still count in `total_results`. Overseerr
    /// answers a page TMDB refuses (0 or above 500) or a TMDB outage with an empty page 1,
    /// not an error (`server/api/themoviedb/index.ts`, `searchMulti`).
    ///
    /// # Errors
    ///
    /// [`OverseerrError::Status`] on any status but 200 (500 "Unable to retrieve search
    /// results."); [`OverseerrError::Decode`] when the answer is not JSON, `results` is not
    /// an array, or a movie or series lacks a numeric `id` or its `title`/`name`; and the
    /// transport errors.
    #[tracing::instrument(
        name = "overseerr.search",
        skip(self, query),
        fields(query_chars = query.chars().count())
    )]
    pub async fn search(&self, query: &str, page: u32) -> Result<CatalogPage, OverseerrError> {
        let url = self.search_url(query, page)?;
        let answer = self.send(self.http.get(url)).await?;
        answer.ok_json::<WirePage>()?.decode(page, None)
    }

    /// Reads one page of a discover list: overseerr-api.yml, `GET /discover/trending`,
    /// `/discover/movies`, `/discover/tv`, `/discover/movies/upcoming` or
    /// `/discover/tv/upcoming` with `page` (answer 200, `{page, totalPages, totalResults,
    /// results}`).
    ///
    /// People (which `trending` holds, as TMDB's `/trending/all` does) are dropped from
    /// `results` but count in `total_results`.
    ///
    /// # Errors
    ///
    /// [`OverseerrError::Status`] on any status but 200 — Overseerr answers 500 ("Unable to
    /// retrieve popular movies." and the like) when TMDB refuses the page (0 or above 500) or
    /// cannot be reached; [`OverseerrError::Decode`] as for [`OverseerrClient::search`]; and
    /// the transport errors.
    #[tracing::instrument(name = "overseerr.discover", skip(self), fields(list = %list))]
    pub async fn discover(
        &self,
        list: DiscoverList,
        page: u32,
    ) -> Result<CatalogPage, OverseerrError> {
        let mut url = self.endpoint(list.segments())?;
        url.query_pairs_mut().append_pair("page", &page.to_string());
        let answer = self.send(self.http.get(url)).await?;
        answer
            .ok_json::<WirePage>()?
            .decode(page, list.media_type())
    }

    /// Reads a movie's details: overseerr-api.yml, `GET /movie/{movieId}` (answer 200,
    /// `MovieDetails`).
    ///
    /// # Errors
    ///
    /// [`OverseerrError::Status`] on any status but 200. For a TMDB id TMDB does not know,
    /// Overseerr answers **500** `{"message": "Unable to retrieve movie."}` — the same answer
    /// as for a TMDB outage (`server/routes/movie.ts`); there is no 404.
    /// [`OverseerrError::Decode`] when the answer is not JSON or lacks a numeric `id` or the
    /// `title`; and the transport errors.
    #[tracing::instrument(name = "overseerr.movie", skip(self))]
    pub async fn movie(&self, tmdb_id: u64) -> Result<MovieDetails, OverseerrError> {
        let url = self.endpoint(&["movie", &tmdb_id.to_string()])?;
        let answer = self.send(self.http.get(url)).await?;
        Ok(answer.ok_json::<WireMovieDetails>()?.into())
    }

    /// Reads a series' details: overseerr-api.yml, `GET /tv/{tvId}` (answer 200,
    /// `TvDetails`), with its seasons and TheTVDB id.
    ///
    /// # Errors
    ///
    /// [`OverseerrError::Status`] on any status but 200. For a TMDB id TMDB does not know,
    /// Overseerr answers **500** `{"message": "Unable to retrieve series."}`
    /// (`server/routes/tv.ts`); there is no 404. [`OverseerrError::Decode`] when the answer
    /// is not JSON, lacks a numeric `id` or the `name`, or a season lacks `seasonNumber`; and
    /// the transport errors.
    #[tracing::instrument(name = "overseerr.tv", skip(self))]
    pub async fn tv(&self, tmdb_id: u64) -> Result<TvDetails, OverseerrError> {
        let url = self.endpoint(&["tv", &tmdb_id.to_string()])?;
        let answer = self.send(self.http.get(url)).await?;
        Ok(answer.ok_json::<WireTvDetails>()?.into())
    }

    /// Reads one season of a series with its episodes: overseerr-api.yml,
    /// `GET /tv/{tvId}/season/{seasonId}` (answer 200, `Season`; `seasonId` is the season
    /// *number*, 0 for specials).
    ///
    /// # Errors
    ///
    /// [`OverseerrError::Status`] on any status but 200. For an unknown series or season
    /// Overseerr answers **500** `{"message": "Unable to retrieve season."}`
    /// (`server/routes/tv.ts`). [`OverseerrError::Decode`] when the answer is not JSON or it
    /// or an episode lacks its number; and the transport errors.
    #[tracing::instrument(name = "overseerr.season", skip(self))]
    pub async fn season(
        &self,
        tmdb_id: u64,
        season_number: u32,
    ) -> Result<SeasonDetails, OverseerrError> {
        let url = self.endpoint(&[
            "tv",
            &tmdb_id.to_string(),
            "season",
            &season_number.to_string(),
        ])?;
        let answer = self.send(self.http.get(url)).await?;
        Ok(answer.ok_json::<WireSeasonDetails>()?.into())
    }

    /// `<api>/search?query=<query>&page=<page>`, form-encoded (space as `+`, everything else
    /// outside `[A-Za-z0-9*-._]` as `%XX` of its UTF-8 bytes), which Overseerr's `qs` decodes.
    fn search_url(&self, query: &str, page: u32) -> Result<Url, OverseerrError> {
        let mut url = self.endpoint(&["search"])?;
        url.query_pairs_mut()
            .append_pair("query", query)
            .append_pair("page", &page.to_string());
        Ok(url)
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
            OverseerrError::Decode(Box::new(Context::new(
                format!(
                    "HTTP {}, body {}",
                    self.status.as_u16(),
                    excerpt(&self.body)
                ),
                err,
            )))
        })
    }

    /// The body as `T` when the status is 200; otherwise the status as an error.
    fn ok_json<T: DeserializeOwned>(self) -> Result<T, OverseerrError> {
        match self.status {
            StatusCode::OK => self.json(),
            _ => Err(self.into_status_error()),
        }
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
        OverseerrError::Decode(Box::new(err))
    } else {
        // Connection refused or reset, TLS failure, connection closed before the answer was
        // complete: all of them mean "Overseerr could not be reached properly".
        OverseerrError::Connect(err)
    }
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

/// The `{page, totalPages, totalResults, results}` answer of `GET /search` and
/// `GET /discover/*`; items are kept as JSON until their `mediaType` is known.
#[derive(Deserialize)]
struct WirePage {
    #[serde(default)]
    page: Option<u32>,
    #[serde(rename = "totalPages", default)]
    total_pages: Option<u32>,
    #[serde(rename = "totalResults", default)]
    total_results: Option<u64>,
    results: Vec<serde_json::Value>,
}

impl WirePage {
    /// The page with its movies and series; `list_kind` is the kind of an item without
    /// `mediaType` (`None`: such items are dropped).
    fn decode(
        self,
        requested_page: u32,
        list_kind: Option<MediaType>,
    ) -> Result<CatalogPage, OverseerrError> {
        let mut results = Vec::with_capacity(self.results.len());
        for (index, value) in self.results.into_iter().enumerate() {
            let item = catalog_item(value, list_kind)
                .map_err(|err| OverseerrError::Decode(format!("results[{index}]: {err}").into()))?;
            results.extend(item);
        }
        Ok(CatalogPage {
            page: self.page.unwrap_or(requested_page),
            total_pages: self.total_pages.unwrap_or_default(),
            total_results: self.total_results.unwrap_or_default(),
            results,
        })
    }
}

/// One result of a list: a movie, a series, or `None` for people and other kinds.
fn catalog_item(
    value: serde_json::Value,
    list_kind: Option<MediaType>,
) -> Result<Option<CatalogItem>, String> {
    if !value.is_object() {
        return Err(format!("expected an object, got {value}"));
    }
    let kind = match value.get("mediaType") {
        None | Some(serde_json::Value::Null) => list_kind,
        // `person`, `collection` and whatever newer Overseerr versions add are dropped.
        Some(serde_json::Value::String(kind)) => MediaType::from_wire(kind),
        Some(other) => return Err(format!("`mediaType` is not a string: {other}")),
    };
    let item = match kind {
        None => return Ok(None),
        Some(MediaType::Movie) => serde_json::from_value::<WireMovie>(value).map(CatalogItem::from),
        Some(MediaType::Tv) => serde_json::from_value::<WireTv>(value).map(CatalogItem::from),
    };
    item.map(Some).map_err(|err| err.to_string())
}

/// The fields of `MovieResult` (and `MovieDetails`) a [`CatalogItem`] needs.
#[derive(Deserialize)]
struct WireMovie {
    id: u64,
    title: String,
    #[serde(rename = "releaseDate", default)]
    release_date: Option<String>,
    #[serde(default)]
    overview: Option<String>,
    #[serde(rename = "posterPath", default)]
    poster_path: Option<String>,
    #[serde(rename = "backdropPath", default)]
    backdrop_path: Option<String>,
}

impl From<WireMovie> for CatalogItem {
    fn from(movie: WireMovie) -> Self {
        CatalogItem {
            media_type: MediaType::Movie,
            tmdb_id: movie.id,
            tvdb_id: None,
            title: movie.title,
            year: year_of(movie.release_date.as_deref()),
            overview: non_empty(movie.overview),
            poster_path: non_empty(movie.poster_path),
            backdrop_path: non_empty(movie.backdrop_path),
        }
    }
}

/// The fields of `TvResult` (and `TvDetails`) a [`CatalogItem`] needs.
#[derive(Deserialize)]
struct WireTv {
    id: u64,
    name: String,
    #[serde(rename = "firstAirDate", default)]
    first_air_date: Option<String>,
    #[serde(default)]
    overview: Option<String>,
    #[serde(rename = "posterPath", default)]
    poster_path: Option<String>,
    #[serde(rename = "backdropPath", default)]
    backdrop_path: Option<String>,
}

impl From<WireTv> for CatalogItem {
    fn from(show: WireTv) -> Self {
        CatalogItem {
            media_type: MediaType::Tv,
            tmdb_id: show.id,
            tvdb_id: None,
            title: show.name,
            year: year_of(show.first_air_date.as_deref()),
            overview: non_empty(show.overview),
            poster_path: non_empty(show.poster_path),
            backdrop_path: non_empty(show.backdrop_path),
        }
    }
}

/// overseerr-api.yml, `components.schemas.Genre` (only the name is kept).
#[derive(Deserialize)]
struct WireGenre {
    #[serde(default)]
    name: Option<String>,
}

/// overseerr-api.yml, `components.schemas.ExternalIds` (the ids MediaNest keeps).
#[derive(Deserialize)]
struct WireExternalIds {
    #[serde(rename = "imdbId", default)]
    imdb_id: Option<String>,
    #[serde(rename = "tvdbId", default)]
    tvdb_id: Option<u64>,
}

/// overseerr-api.yml, `components.schemas.MovieDetails` (the fields MediaNest shows).
#[derive(Deserialize)]
struct WireMovieDetails {
    #[serde(flatten)]
    movie: WireMovie,
    #[serde(rename = "imdbId", default)]
    imdb_id: Option<String>,
    #[serde(default)]
    runtime: Option<u32>,
    #[serde(default)]
    genres: Option<Vec<WireGenre>>,
    #[serde(rename = "externalIds", default)]
    external_ids: Option<WireExternalIds>,
}

impl From<WireMovieDetails> for MovieDetails {
    fn from(details: WireMovieDetails) -> Self {
        let external_imdb_id = details.external_ids.and_then(|ids| ids.imdb_id);
        let release_date = non_empty(details.movie.release_date.clone());
        MovieDetails {
            item: details.movie.into(),
            imdb_id: non_empty(details.imdb_id).or_else(|| non_empty(external_imdb_id)),
            runtime: details.runtime.filter(|minutes| *minutes > 0),
            release_date,
            genres: genre_names(details.genres),
        }
    }
}

/// overseerr-api.yml, `components.schemas.TvDetails` (the fields MediaNest shows).
#[derive(Deserialize)]
struct WireTvDetails {
    #[serde(flatten)]
    show: WireTv,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    genres: Option<Vec<WireGenre>>,
    #[serde(default)]
    seasons: Option<Vec<WireSeason>>,
    #[serde(rename = "externalIds", default)]
    external_ids: Option<WireExternalIds>,
}

impl From<WireTvDetails> for TvDetails {
    fn from(details: WireTvDetails) -> Self {
        let first_air_date = non_empty(details.show.first_air_date.clone());
        let mut item = CatalogItem::from(details.show);
        item.tvdb_id = details.external_ids.and_then(|ids| ids.tvdb_id);
        TvDetails {
            item,
            seasons: details
                .seasons
                .unwrap_or_default()
                .into_iter()
                .map(|season| SeasonSummary {
                    season_number: season.season_number,
                    episode_count: season.episode_count.unwrap_or_default(),
                    name: non_empty(season.name),
                    air_date: non_empty(season.air_date),
                    poster_path: non_empty(season.poster_path),
                })
                .collect(),
            first_air_date,
            status: non_empty(details.status),
            genres: genre_names(details.genres),
        }
    }
}

/// overseerr-api.yml, `components.schemas.Season` as listed in `TvDetails.seasons`.
#[derive(Deserialize)]
struct WireSeason {
    #[serde(rename = "seasonNumber")]
    season_number: u32,
    #[serde(rename = "episodeCount", default)]
    episode_count: Option<u32>,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "airDate", default)]
    air_date: Option<String>,
    #[serde(rename = "posterPath", default)]
    poster_path: Option<String>,
}

/// overseerr-api.yml, `components.schemas.Season` with `episodes`.
#[derive(Deserialize)]
struct WireSeasonDetails {
    #[serde(flatten)]
    season: WireSeason,
    #[serde(default)]
    overview: Option<String>,
    #[serde(default)]
    episodes: Option<Vec<WireEpisode>>,
}

impl From<WireSeasonDetails> for SeasonDetails {
    fn from(details: WireSeasonDetails) -> Self {
        SeasonDetails {
            season_number: details.season.season_number,
            name: non_empty(details.season.name),
            overview: non_empty(details.overview),
            air_date: non_empty(details.season.air_date),
            poster_path: non_empty(details.season.poster_path),
            episodes: details
                .episodes
                .unwrap_or_default()
                .into_iter()
                .map(|episode| EpisodeSummary {
                    episode_number: episode.episode_number,
                    name: non_empty(episode.name),
                    air_date: non_empty(episode.air_date),
                })
                .collect(),
        }
    }
}

/// overseerr-api.yml, `components.schemas.Episode` (the fields MediaNest shows).
#[derive(Deserialize)]
struct WireEpisode {
    #[serde(rename = "episodeNumber")]
    episode_number: u32,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "airDate", default)]
    air_date: Option<String>,
}

/// `None` for an absent, `null` or blank string (TMDB sends `""` for "unknown").
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.trim().is_empty())
}

/// The year of a TMDB date, `"YYYY-MM-DD"` (or a bare `"YYYY"`); `None` for anything else.
fn year_of(date: Option<&str>) -> Option<u16> {
    let date = date?.trim();
    let (year, rest) = date.split_at_checked(4)?;
    if !year.bytes().all(|byte| byte.is_ascii_digit())
        || !(rest.is_empty() || rest.starts_with('-'))
    {
        return None;
    }
    year.parse().ok()
}

fn genre_names(genres: Option<Vec<WireGenre>>) -> Vec<String> {
    genres
        .unwrap_or_default()
        .into_iter()
        .filter_map(|genre| non_empty(genre.name))
        .collect()
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
    use serde_json::{json, Value};

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
        let refused = reqwest::Client::new()
            .get("no scheme")
            .build()
            .expect_err("a relative URL is refused");
        assert!(OverseerrError::Connect(refused).is_retryable());
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

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn page_of(body: Value, list_kind: Option<MediaType>) -> Result<CatalogPage, OverseerrError> {
        answer(200, &body.to_string())
            .ok_json::<WirePage>()?
            .decode(1, list_kind)
    }

    fn assert_decode_error<T>(result: Result<T, OverseerrError>, needle: &str) {
        match result.err() {
            Some(error @ OverseerrError::Decode(_)) => {
                let message = error.to_string();
                assert!(
                    message.contains(needle),
                    "{message:?} should mention {needle:?}"
                )
            }
            other => panic!("expected a Decode error, got {other:?} (None: Ok)"),
        }
    }

    #[test]
    fn discover_slugs_round_trip_and_unknown_slugs_are_none() {
        for list in DiscoverList::ALL {
            assert_eq!(DiscoverList::from_slug(list.slug()), Some(list));
            assert_eq!(list.to_string(), list.slug());
        }
        let slugs: Vec<&str> = DiscoverList::ALL.iter().map(|list| list.slug()).collect();
        assert_eq!(
            slugs,
            [
                "trending",
                "popular-movies",
                "popular-tv",
                "upcoming-movies",
                "upcoming-tv"
            ]
        );
        assert_eq!(DiscoverList::from_slug("Trending"), None);
        assert_eq!(DiscoverList::from_slug("popular"), None);
    }

    #[test]
    fn each_discover_list_calls_its_own_overseerr_path() {
        let client = OverseerrClient::new(config("http://overseerr:5055")).unwrap();
        let paths: Vec<String> = DiscoverList::ALL
            .iter()
            .map(|list| client.endpoint(list.segments()).unwrap().path().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "/api/v1/discover/trending",
                "/api/v1/discover/movies",
                "/api/v1/discover/tv",
                "/api/v1/discover/movies/upcoming",
                "/api/v1/discover/tv/upcoming",
            ]
        );
    }

    #[test]
    fn a_search_page_keeps_movies_and_series_and_drops_people_and_collections() {
        let page = page_of(
            json!({"page": 1, "totalPages": 1, "totalResults": 4, "results": [
                {"id": 603, "mediaType": "movie", "title": "The Matrix",
                 "releaseDate": "1999-03-31", "overview": "Neo.",
                 "posterPath": "/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg", "backdropPath": "/bd.jpg", "popularity": 85.3, "mediaInfo": {"status": 5}},
                {"id": 6384, "mediaType": "person", "name": "Keanu Reeves", "knownFor": []},
                {"id": 2344, "mediaType": "collection", "title": "The Matrix Collection"},
                {"id": 1399, "mediaType": "tv", "name": "Game of Thrones",
                 "firstAirDate": "2011-04-17"}
            ]}),
            None,
        )
        .unwrap();

        assert_eq!((page.page, page.total_pages, page.total_results), (1, 1, 4));
        assert_eq!(
            page.results,
            [
                CatalogItem {
                    media_type: MediaType::Movie,
                    tmdb_id: 603,
                    tvdb_id: None,
                    title: "The Matrix".into(),
                    year: Some(1999),
                    overview: Some("Neo.".into()),
                    poster_path: Some("/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg".into()),
                    backdrop_path: Some("/bd.jpg".into()),
                },
                CatalogItem {
                    media_type: MediaType::Tv,
                    tmdb_id: 1399,
                    tvdb_id: None,
                    title: "Game of Thrones".into(),
                    year: Some(2011),
                    overview: None,
                    poster_path: None,
                    backdrop_path: None,
                },
            ]
        );
    }

    #[test]
    fn people_and_unknown_kinds_are_dropped_even_when_they_are_malformed() {
        let page = page_of(
            json!({"page": 1, "totalPages": 1, "totalResults": 2, "results": [
                {"id": "not-a-number", "mediaType": "person"},
                {"mediaType": "music"}
            ]}),
            None,
        )
        .unwrap();
        assert!(page.results.is_empty());
        assert_eq!(page.total_results, 2);
    }

    #[test]
    fn years_come_from_tmdb_dates_and_empty_or_odd_dates_have_none() {
        for (date, year) in [
            (json!("1999-03-31"), Some(1999)),
            (json!("2031"), Some(2031)),
            (json!(""), None),
            (json!(null), None),
            (json!("soon"), None),
            (json!("99-03-31"), None),
            (json!("19990331"), None),
        ] {
            let page = page_of(
                json!({"results": [
                    {"id": 1, "mediaType": "movie", "title": "T", "releaseDate": date}
                ]}),
                None,
            )
            .unwrap();
            assert_eq!(page.results[0].year, year, "{date}");
        }
    }

    #[test]
    fn nulls_absent_fields_and_empty_strings_are_none_and_the_requested_page_fills_in() {
        let page = page_of(
            json!({"results": [{"id": 1396, "mediaType": "tv", "name": "Breaking Bad",
                                "firstAirDate": null, "overview": "", "posterPath": null,
                                "backdropPath": null}]}),
            None,
        )
        .unwrap();
        assert_eq!((page.page, page.total_pages, page.total_results), (1, 0, 0));
        let show = &page.results[0];
        assert_eq!(
            (show.year, &show.overview, &show.poster_path),
            (None, &None, &None)
        );
    }

    #[test]
    fn items_without_media_type_take_the_kind_of_a_single_kind_list_and_are_dropped_elsewhere() {
        let body = json!({"results": [{"id": 603, "title": "The Matrix"}]});
        let movies = page_of(body.clone(), Some(MediaType::Movie)).unwrap();
        assert_eq!(movies.results[0].media_type, MediaType::Movie);
        assert!(page_of(body, None).unwrap().results.is_empty());
    }

    #[test]
    fn malformed_pages_are_decode_errors() {
        assert_decode_error(page_of(json!({"results": {"id": 1}}), None), "");
        assert_decode_error(page_of(json!({"page": 1}), None), "results");
        assert_decode_error(
            page_of(
                json!({"results": [{"mediaType": "movie", "title": "No id"}]}),
                None,
            ),
            "results[0]: missing field `id`",
        );
        assert_decode_error(
            page_of(
                json!({"results": [{"id": "603", "mediaType": "movie", "title": "T"}]}),
                None,
            ),
            "results[0]",
        );
        assert_decode_error(
            page_of(
                json!({"results": [{"id": 1, "mediaType": "tv", "name": "ok"},
                                        {"id": 603, "mediaType": "movie"}]}),
                None,
            ),
            "results[1]: missing field `title`",
        );
        assert_decode_error(
            page_of(
                json!({"results": [{"id": 1, "mediaType": 7, "title": "T"}]}),
                None,
            ),
            "`mediaType` is not a string",
        );
        assert_decode_error(
            page_of(json!({"results": [42]}), None),
            "expected an object",
        );
        assert_decode_error(
            answer(200, "<html>Overseerr</html>").ok_json::<WirePage>(),
            "HTTP 200",
        );
    }

    #[test]
    fn an_error_status_is_a_status_error_with_overseerrs_message() {
        let err = answer(500, r#"{"message": "Unable to retrieve movie."}"#)
            .ok_json::<WireMovieDetails>()
            .err();
        match err {
            Some(OverseerrError::Status { status, message }) => {
                assert_eq!(
                    (status, message.as_deref()),
                    (500, Some("Unable to retrieve movie."))
                )
            }
            other => panic!("expected a Status error, got {other:?}"),
        }
    }

    #[test]
    fn movie_details_read_imdb_id_runtime_and_genres() {
        let details: MovieDetails = answer(
            200,
            &json!({"id": 603, "title": "The Matrix", "releaseDate": "1999-03-31", "imdbId": null,
                    "runtime": 136,
                    "genres": [{"id": 28, "name": "Action"}, {"id": 878, "name": "Science Fiction"},
                               {"id": 1}],
                    "externalIds": {"imdbId": "tt0133093", "facebookId": null},
                    "credits": {"cast": [], "crew": []}, "mediaInfo": null})
            .to_string(),
        )
        .ok_json::<WireMovieDetails>()
        .unwrap()
        .into();

        assert_eq!(details.item.tmdb_id, 603);
        assert_eq!(details.item.year, Some(1999));
        assert_eq!(details.item.tvdb_id, None);
        assert_eq!(details.imdb_id.as_deref(), Some("tt0133093"));
        assert_eq!(details.runtime, Some(136));
        assert_eq!(details.release_date.as_deref(), Some("1999-03-31"));
        assert_eq!(details.genres, ["Action", "Science Fiction"]);
    }

    #[test]
    fn a_zero_or_null_runtime_and_an_empty_release_date_are_unknown() {
        for runtime in [json!(0), json!(null)] {
            let details: MovieDetails = answer(
                200,
                &json!({"id": 31047, "title": "Matrimony", "releaseDate": "", "runtime": runtime,
                        "genres": null})
                .to_string(),
            )
            .ok_json::<WireMovieDetails>()
            .unwrap()
            .into();
            assert_eq!(
                (details.runtime, details.release_date, details.item.year),
                (None, None, None)
            );
            assert!(details.genres.is_empty());
        }
    }

    #[test]
    fn tv_details_take_the_tvdb_id_from_external_ids_and_list_every_season() {
        let details: TvDetails = answer(
            200,
            &json!({"id": 1399, "name": "Game of Thrones", "firstAirDate": "2011-04-17",
            "status": "Ended", "genres": [{"id": 18, "name": "Drama"}],
            "externalIds": {"tvdbId": 121361, "imdbId": "tt0944947"},
            "seasons": [
                {"id": 3627, "seasonNumber": 0, "episodeCount": 14, "name": "Specials",
                 "airDate": null},
                {"id": 3624, "seasonNumber": 1, "episodeCount": 10, "name": "Season 1",
                 "airDate": "2011-04-17", "posterPath": "/s1.jpg"}
            ]})
            .to_string(),
        )
        .ok_json::<WireTvDetails>()
        .unwrap()
        .into();

        assert_eq!(details.item.tvdb_id, Some(121361));
        assert_eq!(details.item.media_type, MediaType::Tv);
        assert_eq!(details.first_air_date.as_deref(), Some("2011-04-17"));
        assert_eq!(details.status.as_deref(), Some("Ended"));
        assert_eq!(details.genres, ["Drama"]);
        assert_eq!(
            details.seasons,
            [
                SeasonSummary {
                    season_number: 0,
                    episode_count: 14,
                    name: Some("Specials".into()),
                    air_date: None,
                    poster_path: None,
                },
                SeasonSummary {
                    season_number: 1,
                    episode_count: 10,
                    name: Some("Season 1".into()),
                    air_date: Some("2011-04-17".into()),
                    poster_path: Some("/s1.jpg".into()),
                },
            ]
        );
    }

    #[test]
    fn malformed_details_are_decode_errors() {
        let decode = |body: Value| answer(200, &body.to_string());
        assert_decode_error(
            decode(json!({"id": 603})).ok_json::<WireMovieDetails>(),
            "title",
        );
        assert_decode_error(
            decode(json!({"title": "The Matrix"})).ok_json::<WireMovieDetails>(),
            "id",
        );
        assert_decode_error(
            decode(json!({"id": 1399, "name": "GoT", "seasons": [{"episodeCount": 10}]}))
                .ok_json::<WireTvDetails>(),
            "seasonNumber",
        );
        assert_decode_error(
            decode(json!({"id": 1399, "name": "GoT", "seasons": "all"})).ok_json::<WireTvDetails>(),
            "",
        );
        assert_decode_error(
            decode(json!({"seasonNumber": 1, "episodes": [{"name": "Winter Is Coming"}]}))
                .ok_json::<WireSeasonDetails>(),
            "episodeNumber",
        );
        assert_decode_error(answer(200, "").ok_json::<WireSeasonDetails>(), "HTTP 200");
    }

    #[test]
    fn season_details_list_episodes_with_nulls_tolerated() {
        let season: SeasonDetails = answer(
            200,
            &json!({"id": 3624, "seasonNumber": 1, "name": "Season 1", "overview": "",
            "airDate": "2011-04-17", "posterPath": "/s1.jpg",
            "externalIds": {"tvdbId": 364731},
            "episodes": [
                {"id": 63056, "episodeNumber": 1, "name": "Winter Is Coming",
                 "airDate": "2011-04-17", "stillPath": null},
                {"id": 63057, "episodeNumber": 2, "name": null, "airDate": null}
            ]})
            .to_string(),
        )
        .ok_json::<WireSeasonDetails>()
        .unwrap()
        .into();

        assert_eq!(season.season_number, 1);
        assert_eq!(season.overview, None);
        assert_eq!(
            season.episodes,
            [
                EpisodeSummary {
                    episode_number: 1,
                    name: Some("Winter Is Coming".into()),
                    air_date: Some("2011-04-17".into()),
                },
                EpisodeSummary {
                    episode_number: 2,
                    name: None,
                    air_date: None,
                },
            ]
        );
        let empty: SeasonDetails = answer(200, r#"{"seasonNumber": 0, "episodes": null}"#)
            .ok_json::<WireSeasonDetails>()
            .unwrap()
            .into();
        assert!(empty.episodes.is_empty());
    }

    #[test]
    fn search_queries_are_percent_encoded_so_they_arrive_intact() {
        let client = OverseerrClient::new(config("http://overseerr:5055")).unwrap();
        let query = "Tom & Jerry #1 100% \"déjà vu\" 東京+";
        let url = client.search_url(query, 2).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("query".to_string(), query.to_string()),
                ("page".to_string(), "2".to_string())
            ]
        );
        assert!(!url.as_str().contains(['#', '"', ' ']), "{url}");
    }
}
