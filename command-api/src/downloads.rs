//! Download commands (issue 4; docs/design.md §3 Download, §9): `POST /api/v1/downloads`,
//! `POST /api/v1/downloads/{id}/cancel` and `POST /api/v1/downloads/{id}/retry`.
//!
//! Queueing checks everything before anything is written or run, cheapest first:
//! the body (strict JSON; `quality` one of `best`, `2160p` … `360p`, default `best`;
//! `container` one of `mp4`, `mkv`, `webm`, default `mp4`), the URL against the allow-list,
//! the per-user limit and the one-active-URL rule, the URL's network path (see
//! [`crate::url_check`]: every redirect hop and every address the host resolves to), then
//! a metadata-only yt-dlp probe that says
//! whether the URL is a video or a playlist and how long the playlist is (refused above the
//! cap). Only then is `Queued` written; the downloader saga starts yt-dlp from it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use medianest_domain::download::{
    Container, Download, DownloadCommand, DownloadError, DownloadKind, Quality,
};
use medianest_domain::Actor;
use medianest_http::{optional_body, ApiError, ProblemType};
use medianest_integrations::ytdlp::{ProbeMode, ProbedKind, YtDlp, YtDlpError};
use medianest_store::downloads::{DownloadCommandError, Downloads};
use medianest_store::Committed;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::call::{command_route, CommandCall, CommandHeaders};
use crate::errors::executor_problem;
use crate::idempotency::{idempotent, Answer};
use crate::requests::{expected_version, http_metadata, is_json};
use crate::url_check::UrlCheck;
use crate::CommandState;

/// What the download commands need; absent when `MEDIANEST_DOWNLOADS_DIR` is not set (the
/// routes then answer 503).
#[derive(Clone)]
pub struct DownloadIntake {
    /// The command service (per-user limit, one active download per URL).
    pub service: Arc<Downloads>,
    /// yt-dlp, for the metadata probe.
    pub ytdlp: YtDlp,
    /// The URL check (allow-list on every hop, no private addresses).
    pub url_check: Arc<UrlCheck>,
    /// The most items a playlist may have.
    pub max_playlist_items: u32,
}

/// The routes of this module.
pub fn router() -> Router<CommandState> {
    Router::new()
        .route("/api/v1/downloads", post(queue))
        .route("/api/v1/downloads/{id}/cancel", post(cancel))
        .route("/api/v1/downloads/{id}/retry", post(retry))
}

/// Body of `POST /api/v1/downloads` (docs/design.md §9). Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueBody {
    /// An http(s) URL whose host is on the allow-list (`MEDIANEST_YOUTUBE_ALLOWED_HOSTS`).
    #[schema(example = "https://www.youtube.com/playlist?list=PL590L5WQmH8fJ54F369BLDSqIwcs-TCfs")]
    url: String,
    /// `best` (default), `2160p`, `1440p`, `1080p`, `720p`, `480p` or `360p`.
    #[serde(default)]
    #[schema(example = "1080p")]
    quality: Option<String>,
    /// `mp4` (default), `mkv` or `webm`.
    #[serde(default)]
    #[schema(example = "mp4")]
    container: Option<String>,
}

/// What every accepted download command answers (also `ETag: "<version>"`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DownloadAnswer {
    /// The download id.
    id: Uuid,
    /// The aggregate version after the command.
    version: i64,
    /// The global position of the last event written (for `min_position`).
    position: i64,
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    status: Option<String>,
    /// `video` or `playlist`.
    kind: Option<String>,
}

impl DownloadAnswer {
    fn of(id: Uuid, committed: &Committed<Download>) -> serde_json::Value {
        let answer = Self {
            id,
            version: committed.version,
            position: committed.position,
            status: committed.aggregate.status().map(|s| s.as_str().to_string()),
            kind: committed.aggregate.kind().map(|k| kind_name(k).to_string()),
        };
        serde_json::to_value(answer).unwrap_or_default()
    }
}

fn kind_name(kind: DownloadKind) -> &'static str {
    match kind {
        DownloadKind::Video => "video",
        DownloadKind::Playlist => "playlist",
    }
}

/// Optional (empty) body of cancel and retry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

fn intake(state: &CommandState) -> Result<&DownloadIntake, ApiError> {
    state.downloads.as_ref().ok_or_else(|| {
        ApiError::new(
            ProblemType::DownloadsDisabled,
            "YouTube downloads are off: MEDIANEST_DOWNLOADS_DIR is not set",
        )
    })
}

/// Queue a YouTube video or playlist for download into the Plex library.
#[utoipa::path(
    post,
    path = "/api/v1/downloads",
    tag = "downloads",
    request_body = QueueBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes the call repeatable")),
    responses(
        (status = 202, description = "queued", body = DownloadAnswer),
        (status = 409, description = "the URL is already queued or running for you (`duplicate-download`)"),
        (status = 422, description = "URL refused by the allow-list, unsupported quality or container (`validation-failed`), a redirect or address outside the allow-list (`download-url-refused`), nothing to download (`download-url-unusable`), playlist too large (`playlist-too-large`)"),
        (status = 429, description = "the per-user download limit is reached (`download-limit-exceeded`, `next_slot_at`)"),
        (status = 503, description = "downloads are not configured (`downloads-disabled`), or the URL's site could not be asked (`unavailable`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn queue(
    State(state): State<CommandState>,
    medianest_http::Caller(caller): medianest_http::Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let scope = format!("{}:queue-download", caller.id);
    let fingerprint: [&[u8]; 2] = [b"POST /api/v1/downloads", &body];
    idempotent(&state.pool, &scope, &headers, &fingerprint, async {
        let intake = intake(&state)?;
        if !is_json(&headers) {
            return Err(ApiError::unsupported_media_type());
        }
        let body: QueueBody = medianest_http::object_body(&body)?;
        let quality = match body.quality.as_deref() {
            None => Quality::Best,
            Some(q) => q
                .parse()
                .map_err(|e: String| ApiError::invalid("quality", e))?,
        };
        let container = match body.container.as_deref() {
            None => Container::Mp4,
            Some(c) => c
                .parse()
                .map_err(|e: String| ApiError::invalid("container", e))?,
        };
        let url = intake
            .service
            .check_url(&body.url)
            .map_err(|e| rejected(e, "no such download"))?;
        let id = Uuid::now_v7();
        intake
            .service
            .precheck(id.into(), &caller, &url)
            .await
            .map_err(problem)?;
        intake.url_check.check(&url).await?;
        let kind = probe(intake, &url).await?;
        let command = DownloadCommand::Queue {
            requested_by: caller.clone(),
            url,
            kind,
            quality,
            container,
        };
        run(intake, id, command, &headers, &caller, true).await
    })
    .await
}

/// Asks yt-dlp (metadata only) what the URL is; a playlist above the cap is refused.
async fn probe(intake: &DownloadIntake, url: &str) -> Result<DownloadKind, ApiError> {
    let probe = intake
        .ytdlp
        .probe(url, ProbeMode::Auto)
        .await
        .map_err(|error| match error {
            YtDlpError::Failed {
                message,
                retryable: false,
            } => ApiError::new(
                ProblemType::DownloadUrlUnusable,
                format!("yt-dlp cannot download this URL: {message}"),
            )
            .with("field", "url"),
            error if error.is_retryable() => ApiError::unavailable(
                format!("the URL's site could not be asked what it holds: {error}"),
                30,
            ),
            error => ApiError::internal(&error),
        })?;
    match probe.kind {
        ProbedKind::Video => Ok(DownloadKind::Video),
        ProbedKind::Playlist => {
            let items = probe.entries.unwrap_or(0);
            if items > intake.max_playlist_items {
                return Err(ApiError::new(
                    ProblemType::PlaylistTooLarge,
                    format!(
                        "the playlist has {items} items; at most {} may be downloaded at once",
                        intake.max_playlist_items
                    ),
                )
                .with("field", "url")
                .with("items", items)
                .with("max_items", intake.max_playlist_items));
            }
            Ok(DownloadKind::Playlist)
        }
    }
}

async fn run(
    intake: &DownloadIntake,
    id: Uuid,
    command: DownloadCommand,
    headers: &HeaderMap,
    caller: &Actor,
    created: bool,
) -> Answer {
    let expected = expected_version(headers)?;
    let metadata = http_metadata(&caller.id.to_string(), headers);
    let committed = intake
        .service
        .execute(id.into(), command, expected, &metadata)
        .await
        .map_err(problem)?;
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, DownloadAnswer::of(id, &committed)))
}

command_route! {
    /// Cancel a queued or running download (the requester or an admin); no body.
    cancel => Action::Cancel,
    path = "/api/v1/downloads/{id}/cancel",
    tag = "downloads",
    id = "download id",
    answers = [
        (status = 200, description = "cancelled", body = DownloadAnswer),
        (status = 400, description = "the body is neither empty nor `{}` (`malformed-request`)"),
        (status = 404, description = "unknown id, or another user's download (`not-found`)"),
        (status = 409, description = "not possible in the current status (`illegal-transition`), or lost a race five times (`concurrent-modification`)"),
        (status = 503, description = "downloads are not configured (`downloads-disabled`)"),
    ],
}

command_route! {
    /// Retry a failed or cancelled download as a new attempt (the requester or an admin); no
    /// body.
    retry => Action::Retry,
    path = "/api/v1/downloads/{id}/retry",
    tag = "downloads",
    id = "download id",
    answers = [
        (status = 200, description = "queued again", body = DownloadAnswer),
        (status = 400, description = "the body is neither empty nor `{}` (`malformed-request`)"),
        (status = 404, description = "unknown id, or another user's download (`not-found`)"),
        (status = 409, description = "not possible in the current status (`illegal-transition`), the URL is active again (`duplicate-download`), or lost a race five times (`concurrent-modification`)"),
        (status = 503, description = "downloads are not configured (`downloads-disabled`)"),
    ],
}

/// The commands on an existing download: the last path segment.
#[derive(Debug, Clone, Copy)]
enum Action {
    Cancel,
    Retry,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Retry => "retry",
        }
    }
}

/// What cancel and retry share: the idempotency scope and fingerprint, the empty body, who
/// may act, and the command itself.
async fn act(state: &CommandState, call: CommandCall, action: Action) -> Response {
    let CommandCall {
        caller,
        id: raw_id,
        headers,
        body,
    } = call;
    let name = action.name();
    let scope = format!("{}:download-{name}", caller.id);
    let path = format!("{} /api/v1/downloads/{raw_id}/{name}", Method::POST);
    let fingerprint: [&[u8]; 2] = [path.as_bytes(), &body];
    idempotent(&state.pool, &scope, &headers, &fingerprint, async {
        let intake = intake(state)?;
        let id: Uuid = raw_id
            .parse()
            .map_err(|_| ApiError::not_found("no such download"))?;
        optional_body::<EmptyBody>(&body)?;
        let by = caller.clone();
        let command = match action {
            Action::Cancel => DownloadCommand::Cancel { by },
            Action::Retry => DownloadCommand::Retry { by },
        };
        visible_to(intake, id, &caller).await?;
        run(intake, id, command, &headers, &caller, false).await
    })
    .await
}

/// Users act only on their own downloads: another user's is answered 404, as the query side
/// does, so ids cannot be probed.
async fn visible_to(intake: &DownloadIntake, id: Uuid, caller: &Actor) -> Result<(), ApiError> {
    if caller.is_admin() {
        return Ok(());
    }
    let (download, _) = intake
        .service
        .load(id.into())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    match download.requested_by() {
        Some(by) if *by == caller.id => Ok(()),
        _ => Err(ApiError::not_found("no such download")),
    }
}

/// The HTTP problem of a refused download command.
pub(crate) fn problem(error: DownloadCommandError) -> ApiError {
    match error {
        DownloadCommandError::Duplicate { existing } => ApiError::new(
            ProblemType::DuplicateDownload,
            format!("this URL is already queued or running for you: {existing}"),
        )
        .with("existing_download_id", existing.to_string()),
        DownloadCommandError::LimitExceeded {
            limit,
            used,
            next_slot_at,
        } => {
            let wait = (next_slot_at - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .as_secs()
                .max(1);
            let at = next_slot_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            ApiError::new(ProblemType::DownloadLimitExceeded, format!(
                    "you may queue {limit} downloads per hour and have queued {used}; the next slot frees at {at}"),
            )
            .with("limit", limit)
            .with("used", used)
            .with("next_slot_at", at)
            .retry_after(wait)
        }
        DownloadCommandError::Execute(error) => executor_problem(error, "download", |rejection| {
            rejected(rejection, "no such download")
        }),
    }
}

fn rejected(rejection: DownloadError, not_found: &str) -> ApiError {
    let detail = rejection.to_string();
    match rejection {
        DownloadError::NotFound => ApiError::not_found(not_found.to_string()),
        DownloadError::AlreadyQueued => ApiError::new(ProblemType::AlreadyExists, detail),
        DownloadError::IllegalTransition { status, .. } => {
            ApiError::new(ProblemType::IllegalTransition, detail)
                .with("download_status", status.as_str())
        }
        DownloadError::Forbidden(why) => ApiError::forbidden(why),
        DownloadError::Invalid { field, .. } => ApiError::invalid(field, detail),
    }
}
