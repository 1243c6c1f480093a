//! The state of a media request: what was submitted, its lifecycle status and its accessors,
//! with the value types they are made of.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::MediaRequest;
use crate::ActorId;

/// State that exists once a request is submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Submitted {
    pub(super) requested_by: ActorId,
    pub(super) media: Media,
    pub(super) seasons: Option<Seasons>,
    pub(super) is_4k: bool,
    pub(super) status: RequestStatus,
    pub(super) overseerr_request_id: Option<u64>,
    pub(super) available_seasons: Vec<u32>,
}

impl MediaRequest {
    /// The current status, `None` before submission.
    pub fn status(&self) -> Option<RequestStatus> {
        self.submitted.as_ref().map(|s| s.status)
    }

    /// What was requested, `None` before submission.
    pub fn media(&self) -> Option<&Media> {
        self.submitted.as_ref().map(|s| &s.media)
    }

    /// The requested seasons (TV), `None` for movies and before submission.
    pub fn seasons(&self) -> Option<&Seasons> {
        self.submitted.as_ref().and_then(|s| s.seasons.as_ref())
    }

    /// Whether the 4K version is requested.
    pub fn is_4k(&self) -> bool {
        self.submitted.as_ref().is_some_and(|s| s.is_4k)
    }

    /// Who requested it.
    pub fn requested_by(&self) -> Option<&ActorId> {
        self.submitted.as_ref().map(|s| &s.requested_by)
    }

    /// Overseerr's request id, once forwarded.
    pub fn overseerr_request_id(&self) -> Option<u64> {
        self.submitted.as_ref().and_then(|s| s.overseerr_request_id)
    }
}

/// Movie or TV show, Overseerr's `mediaType` (`overseerr-api.yml`, `POST /request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaType {
    /// A movie (`movie`).
    Movie,
    /// A TV show (`tv`).
    Tv,
}

impl MediaType {
    /// The wire name: `movie` or `tv`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Movie => "movie",
            Self::Tv => "tv",
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MediaType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "movie" => Ok(Self::Movie),
            "tv" => Ok(Self::Tv),
            other => Err(format!(
                "unknown media type `{other}` (expected movie or tv)"
            )),
        }
    }
}

/// A The Movie Database id (`tmdbId`), always positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct TmdbId(u32);

impl TryFrom<u32> for TmdbId {
    type Error = super::MediaRequestError;

    fn try_from(raw: u32) -> Result<Self, Self::Error> {
        Self::new(raw)
    }
}

impl From<TmdbId> for u32 {
    fn from(id: TmdbId) -> Self {
        id.0
    }
}

impl TmdbId {
    /// Validates a raw id.
    ///
    /// # Errors
    /// [`super::MediaRequestError::Invalid`] when the id is zero.
    pub fn new(raw: u32) -> Result<Self, super::MediaRequestError> {
        if raw == 0 {
            return Err(super::MediaRequestError::invalid(
                "tmdb_id",
                "must be a positive integer",
            ));
        }
        Ok(Self(raw))
    }

    /// The raw number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for TmdbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What is requested: `{media_type, tmdb_id, tvdb_id?, title, year?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    /// Movie or TV.
    pub media_type: MediaType,
    /// TMDB id of the movie or show.
    pub tmdb_id: TmdbId,
    /// TheTVDB id, for TV shows when known (Overseerr forwards it to Sonarr).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tvdb_id: Option<u32>,
    /// Display title, 1 to 300 characters.
    pub title: String,
    /// Release year, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<u16>,
}

/// The seasons of a TV request: a list of season numbers, or `"all"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Seasons {
    /// Specific seasons (0 is "Specials"), sorted and without duplicates once validated.
    List(Vec<u32>),
    /// Every season, present and future: the string `"all"`.
    All(AllSeasons),
}

/// The literal `"all"` of [`Seasons::All`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllSeasons {
    /// `"all"`.
    All,
}

impl Seasons {
    /// Every season.
    pub const ALL: Seasons = Seasons::All(AllSeasons::All);
}

/// Where an availability or failure was learnt from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Overseerr (webhook or reconciler).
    Overseerr,
    /// Plex Media Server (webhook).
    Plex,
    /// MediaNest itself.
    Medianest,
}

/// The lifecycle status of a request, as on the wire (docs/design.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for an admin.
    Pending,
    /// Approved, not yet accepted by Overseerr.
    Approved,
    /// Declined by an admin (terminal).
    Declined,
    /// Cancelled by the requester or an admin (terminal).
    Cancelled,
    /// Accepted by Overseerr, which now drives Sonarr/Radarr.
    Forwarded,
    /// Overseerr reports the media as being processed.
    Processing,
    /// Some requested seasons are available.
    PartiallyAvailable,
    /// Available in Plex.
    Available,
    /// Forwarding or fulfilment failed (terminal until retried).
    Failed,
}

impl RequestStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RequestStatus; 9] = [
        Self::Pending,
        Self::Approved,
        Self::Declined,
        Self::Cancelled,
        Self::Forwarded,
        Self::Processing,
        Self::PartiallyAvailable,
        Self::Available,
        Self::Failed,
    ];

    /// The wire name, e.g. `partially_available`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::Cancelled => "cancelled",
            Self::Forwarded => "forwarded",
            Self::Processing => "processing",
            Self::PartiallyAvailable => "partially_available",
            Self::Available => "available",
            Self::Failed => "failed",
        }
    }

    /// Whether a request in this status still blocks a new request for the same media
    /// (`(media_type, tmdb_id, is_4k)` uniqueness). Declined, cancelled and failed requests
    /// do not; an available one does, because the media is already there.
    pub fn is_active(self) -> bool {
        !matches!(self, Self::Declined | Self::Cancelled | Self::Failed)
    }

    /// Whether the status has passed the point where Overseerr owns the request.
    pub(crate) fn is_fulfilling(self) -> bool {
        matches!(
            self,
            Self::Approved | Self::Forwarded | Self::Processing | Self::PartiallyAvailable
        )
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown request status `{s}`"))
    }
}
