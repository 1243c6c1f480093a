//! `application/problem+json` errors (RFC 9457) with stable `type` URIs.
//!
//! The `type` of each problem is `urn:medianest:problem:<slug>`; slugs never change meaning
//! (clients match on them). Every problem type — slug, title and status — is one variant of
//! [`ProblemType`], the one place they are written; docs/api.md's "Problems" table lists the
//! same (a test compares the two). Internal causes are logged where the error is made, never
//! sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// Declares [`ProblemType`] from one table: variant, status, slug, title.
macro_rules! problem_types {
    ($($(#[doc = $doc:literal])+ $variant:ident = ($status:ident, $slug:literal, $title:literal),)+) => {
        /// Every problem type MediaNest answers: its slug (`urn:medianest:problem:<slug>`),
        /// title and HTTP status. docs/api.md's "Problems" table lists the same.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemType {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl ProblemType {
            /// Every problem type, in the order of docs/api.md's table.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant,)+];

            /// The stable slug of `type`.
            pub fn slug(self) -> &'static str {
                match self {
                    $(ProblemType::$variant => $slug,)+
                }
            }

            /// Short, human summary of the problem type.
            pub fn title(self) -> &'static str {
                match self {
                    $(ProblemType::$variant => $title,)+
                }
            }

            /// The HTTP status it is answered with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ProblemType::$variant => StatusCode::$status,)+
                }
            }
        }
    };
}

problem_types! {
    /// Not JSON (or not UTF-8), unknown fields, wrong types, bad query parameters or headers.
    MalformedRequest = (BAD_REQUEST, "malformed-request", "Malformed request"),
    /// Text MediaNest cannot store (a NUL, bytes that are not UTF-8); `field` names where.
    InvalidText = (BAD_REQUEST, "invalid-text", "Text MediaNest cannot store"),
    /// No event has the `min_position` asked for.
    UnknownMinPosition = (BAD_REQUEST, "unknown-min-position", "Unknown position"),
    /// No event has the stream's `Last-Event-ID`.
    UnknownLastEventId = (BAD_REQUEST, "unknown-last-event-id", "Unknown Last-Event-ID"),
    /// No, unknown, expired or revoked token, or a disabled account.
    Unauthenticated = (UNAUTHORIZED, "unauthenticated", "Authentication required"),
    /// Unknown username or wrong password.
    InvalidCredentials = (UNAUTHORIZED, "invalid-credentials", "Invalid credentials"),
    /// plex.tv refused the PIN's token.
    PlexTokenRejected = (UNAUTHORIZED, "plex-token-rejected", "Plex rejected the sign-in"),
    /// A webhook's secret does not match.
    WebhookUnauthenticated = (UNAUTHORIZED, "webhook-unauthenticated", "Webhook not authenticated"),
    /// The caller may not do this.
    Forbidden = (FORBIDDEN, "forbidden", "Not allowed"),
    /// The request quota is used up.
    QuotaExceeded = (FORBIDDEN, "quota-exceeded", "Request quota exceeded"),
    /// Sign-in of a disabled account.
    AccountDisabled = (FORBIDDEN, "account-disabled", "Account disabled"),
    /// The Plex account neither owns nor shares the Plex server.
    NoServerAccess = (FORBIDDEN, "no-server-access", "No access to this Plex server"),
    /// Unknown or expired Plex PIN.
    PinNotFound = (NOT_FOUND, "pin-not-found", "PIN not found"),
    /// Unknown id.
    NotFound = (NOT_FOUND, "not-found", "Not found"),
    /// A notification channel in the path that does not exist.
    UnknownChannel = (NOT_FOUND, "unknown-channel", "Unknown channel"),
    /// An active request for the same media exists.
    DuplicateRequest = (CONFLICT, "duplicate-request", "Duplicate request"),
    /// Plex already has the media.
    AlreadyAvailable = (CONFLICT, "already-available", "Already available in Plex"),
    /// The aggregate a creating command names exists already.
    AlreadyExists = (CONFLICT, "already-exists", "Already exists"),
    /// Not possible in the current status.
    IllegalTransition = (CONFLICT, "illegal-transition", "Not possible in the current status"),
    /// The URL is already queued or running for the caller.
    DuplicateDownload = (CONFLICT, "duplicate-download", "Already downloading"),
    /// Lost a race five times.
    ConcurrentModification = (CONFLICT, "concurrent-modification", "Concurrent modification"),
    /// The first request with this `Idempotency-Key` is still running.
    IdempotencyKeyInProgress = (CONFLICT, "idempotency-key-in-progress", "Request in progress"),
    /// The Plex PIN is not authorised yet.
    PinNotAuthorized = (CONFLICT, "pin-not-authorized", "PIN not yet authorised"),
    /// The Plex PIN was already exchanged.
    PinAlreadyUsed = (CONFLICT, "pin-already-used", "PIN already used"),
    /// A test message for a channel that is not configured.
    ChannelNotConfigured = (CONFLICT, "channel-not-configured", "Channel not configured"),
    /// A retry of a delivery that is neither `dead` nor `retrying`.
    DeliveryNotRetryable = (CONFLICT, "delivery-not-retryable", "Delivery not retryable"),
    /// `If-Match` is stale.
    VersionMismatch = (PRECONDITION_FAILED, "version-mismatch", "Version mismatch"),
    /// The body is too large.
    BodyTooLarge = (PAYLOAD_TOO_LARGE, "body-too-large", "Request body too large"),
    /// A header, or all of them, over the limits of [`crate::layers`].
    HeadersTooLarge = (REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large", "Request headers too large"),
    /// The body is not of the media type the route takes.
    UnsupportedMediaType = (UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type"),
    /// A rule is broken (`field`).
    ValidationFailed = (UNPROCESSABLE_ENTITY, "validation-failed", "Invalid request"),
    /// The `Idempotency-Key` was used with another body.
    IdempotencyKeyReused = (UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency key reused"),
    /// A show request names seasons Plex already has.
    SeasonsAvailable = (UNPROCESSABLE_ENTITY, "seasons-available", "Seasons already available in Plex"),
    /// A download URL leaves the allow-list or resolves to a private address.
    DownloadUrlRefused = (UNPROCESSABLE_ENTITY, "download-url-refused", "Download URL refused"),
    /// yt-dlp finds nothing to download at the URL.
    DownloadUrlUnusable = (UNPROCESSABLE_ENTITY, "download-url-unusable", "Nothing to download at this URL"),
    /// A playlist with more items than allowed.
    PlaylistTooLarge = (UNPROCESSABLE_ENTITY, "playlist-too-large", "Playlist too large"),
    /// A member's notification choices name a channel that does not exist (`field`).
    UnknownChannelChoice = (UNPROCESSABLE_ENTITY, "unknown-channel", "Unknown channel"),
    /// A notification type that does not exist (`field`).
    UnknownNotificationType = (UNPROCESSABLE_ENTITY, "unknown-notification-type", "Unknown notification type"),
    /// Household types on a channel without a household destination (`field`).
    NoHouseholdDestination = (UNPROCESSABLE_ENTITY, "no-household-destination", "Notification settings refused"),
    /// A channel test with nowhere to send it.
    NoTestDestination = (UNPROCESSABLE_ENTITY, "no-test-destination", "Nowhere to send a test"),
    /// Unknown or malformed channel settings (`field`).
    InvalidChannelSettings = (UNPROCESSABLE_ENTITY, "invalid-channel-settings", "Notification settings refused"),
    /// A malformed e-mail address in channel settings or choices (`field`).
    InvalidEmail = (UNPROCESSABLE_ENTITY, "invalid-email", "Notification settings refused"),
    /// A destination that is not `https` (`field`).
    InsecureDestination = (UNPROCESSABLE_ENTITY, "insecure-destination", "Notification settings refused"),
    /// A destination with a private, loopback or link-local address (`field`).
    PrivateDestination = (UNPROCESSABLE_ENTITY, "private-destination", "Notification settings refused"),
    /// A secret the channel needs is not set (`field`).
    MissingSecret = (UNPROCESSABLE_ENTITY, "missing-secret", "Notification settings refused"),
    /// A secret's name among the readable settings (`field`).
    SecretInSettings = (UNPROCESSABLE_ENTITY, "secret-in-settings", "Notification settings refused"),
    /// A setting over 2,048 bytes (`field`).
    FieldTooLong = (UNPROCESSABLE_ENTITY, "field-too-long", "Notification settings refused"),
    /// A member's address on a channel that is malformed (`field`).
    InvalidAddress = (UNPROCESSABLE_ENTITY, "invalid-address", "Notification settings refused"),
    /// A member's address on a channel that reaches the household only (`field`).
    NotAPersonalChannel = (UNPROCESSABLE_ENTITY, "not-a-personal-channel", "Notification settings refused"),
    /// Downloads per hour used up.
    DownloadLimitExceeded = (TOO_MANY_REQUESTS, "download-limit-exceeded", "Download limit reached"),
    /// Too many failed sign-ins or API calls.
    RateLimited = (TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
    /// plex.tv or the Plex server answered something unexpected.
    PlexError = (BAD_GATEWAY, "plex-error", "Unexpected answer from Plex"),
    /// Overseerr's catalogue answer is not what its API describes.
    OverseerrBadAnswer = (BAD_GATEWAY, "overseerr-bad-answer", "Overseerr answered unexpectedly"),
    /// A notification service did not take a test message.
    NotificationFailed = (BAD_GATEWAY, "notification-failed", "The service did not take the message"),
    /// An unexpected failure on our side (the cause is logged, never sent).
    Internal = (INTERNAL_SERVER_ERROR, "internal", "Internal error"),
    /// Not now: `min_position` not reached, read models lagging, session store down.
    Unavailable = (SERVICE_UNAVAILABLE, "unavailable", "Temporarily unavailable"),
    /// More API requests at once than the server takes (load shedding).
    Overloaded = (SERVICE_UNAVAILABLE, "overloaded", "Too many requests at once"),
    /// plex.tv or the Plex server did not answer.
    PlexUnavailable = (SERVICE_UNAVAILABLE, "plex-unavailable", "Plex is unavailable"),
    /// Plex sign-in is not configured.
    PlexSignInUnavailable = (SERVICE_UNAVAILABLE, "plex-sign-in-unavailable", "Plex sign-in is not configured"),
    /// Downloads are not configured.
    DownloadsDisabled = (SERVICE_UNAVAILABLE, "downloads-disabled", "Downloads are not configured"),
    /// The catalogue is not configured.
    CatalogDisabled = (SERVICE_UNAVAILABLE, "catalog-disabled", "The catalogue is not configured"),
    /// Overseerr cannot answer and nothing is cached.
    OverseerrUnavailable = (SERVICE_UNAVAILABLE, "overseerr-unavailable", "Overseerr is unavailable"),
    /// A Plex sync was asked for while it is off.
    PlexDisabled = (SERVICE_UNAVAILABLE, "plex-disabled", "The Plex sync is off"),
    /// Notifications are off.
    NotificationsDisabled = (SERVICE_UNAVAILABLE, "notifications-disabled", "Notifications are off"),
}

impl ProblemType {
    /// The full `type` URI, `urn:medianest:problem:<slug>`.
    pub fn type_uri(self) -> String {
        format!("urn:medianest:problem:{}", self.slug())
    }
}

/// Members defined by RFC 9457 itself.
const RESERVED: [&str; 5] = ["type", "title", "status", "detail", "instance"];

/// An HTTP error answered as problem+json.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The problem type: slug, title and status.
    pub problem: ProblemType,
    /// What happened this time.
    pub detail: String,
    /// Extension members (e.g. `existing_request_id`).
    pub extensions: Map<String, Value>,
    /// `Retry-After` seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A problem of type `problem` with `detail`.
    pub fn new(problem: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            problem,
            detail: detail.into(),
            extensions: Map::new(),
            retry_after: None,
        }
    }

    /// Adds an extension member. The RFC 9457 members (`type`, `title`, `status`, `detail`,
    /// `instance`) cannot be overridden this way.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        debug_assert!(
            !RESERVED.contains(&key),
            "`{key}` is a standard problem member, not an extension"
        );
        if !RESERVED.contains(&key) {
            self.extensions.insert(key.to_string(), value.into());
        }
        self
    }

    /// 415 `unsupported-media-type`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            ProblemType::UnsupportedMediaType,
            "send the body as application/json",
        )
    }

    /// 413 `body-too-large`.
    pub fn too_large() -> Self {
        Self::new(
            ProblemType::BodyTooLarge,
            "the request body is larger than the 64 KiB this API accepts",
        )
    }

    /// Sets `Retry-After`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 400 `malformed-request`: the request could not be read.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::MalformedRequest, detail)
    }

    /// 400 `invalid-text` naming the field: text PostgreSQL cannot store, a NUL character
    /// (U+0000) or bytes that are not UTF-8 (see [`crate::text`]).
    pub fn invalid_text(field: &str, detail: impl Into<String>) -> Self {
        Self::new(ProblemType::InvalidText, detail).with("field", field)
    }

    /// 431 `headers-too-large`: a header field, or all of them, over the limits of
    /// [`crate::layers`].
    pub fn headers_too_large(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::HeadersTooLarge, detail)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated() -> Self {
        Self::new(
            ProblemType::Unauthenticated,
            "a valid bearer token is required",
        )
    }

    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::Forbidden, detail)
    }

    /// 404 `not-found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::NotFound, detail)
    }

    /// 422 `validation-failed` naming the field.
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::new(ProblemType::ValidationFailed, detail).with("field", field)
    }

    /// 503 `unavailable` with `Retry-After`.
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        Self::new(ProblemType::Unavailable, detail).retry_after(retry_after)
    }

    /// 503 `overloaded` with `Retry-After`: more requests are being worked on than the
    /// server takes at once ([`crate::shed`]).
    pub fn overloaded(retry_after: u64) -> Self {
        Self::new(
            ProblemType::Overloaded,
            "the server is working on as many requests as it takes at once; try again shortly",
        )
        .retry_after(retry_after)
    }

    /// 500 `internal`: logs `cause`, sends nothing of it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(ProblemType::Internal, "something went wrong on our side")
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.problem.status()
    }

    /// The stable slug of `type`.
    pub fn slug(&self) -> &'static str {
        self.problem.slug()
    }

    /// The full `type` URI.
    pub fn type_uri(&self) -> String {
        self.problem.type_uri()
    }

    /// The problem document.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".into(), self.type_uri().into());
        body.insert("title".into(), self.problem.title().into());
        body.insert("status".into(), self.status().as_u16().into());
        body.insert("detail".into(), self.detail.clone().into());
        for (key, value) in &self.extensions {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The `(status, slug)` rows of docs/api.md's "Problems" table.
    fn documented() -> BTreeSet<(u16, String)> {
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"));
        let section = doc
            .split("\n## Problems")
            .nth(1)
            .expect("docs/api.md has a Problems section");
        let section = section.split("\n## ").next().unwrap_or(section);
        section
            .lines()
            .filter_map(|line| {
                let mut cells = line.trim().strip_prefix('|')?.split('|');
                let status = cells.next()?.trim().parse::<u16>().ok()?;
                let slug = cells.next()?.trim().trim_matches('`').to_string();
                Some((status, slug))
            })
            .collect()
    }

    #[test]
    fn every_problem_type_is_in_the_docs_table_with_its_status_and_no_other_is() {
        let documented = documented();
        let coded: BTreeSet<(u16, String)> = ProblemType::ALL
            .iter()
            .map(|t| (t.status().as_u16(), t.slug().to_string()))
            .collect();
        assert_eq!(
            coded.len(),
            ProblemType::ALL.len(),
            "a (status, slug) twice"
        );
        let undocumented: Vec<_> = coded.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "not in docs/api.md: {undocumented:?}"
        );
        let unknown: Vec<_> = documented.difference(&coded).collect();
        assert!(unknown.is_empty(), "not a ProblemType: {unknown:?}");
    }

    #[test]
    fn slugs_are_kebab_case_and_titles_are_set() {
        for problem in ProblemType::ALL {
            let slug = problem.slug();
            assert!(
                !slug.is_empty() && slug.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{slug}"
            );
            assert!(!problem.title().is_empty(), "{slug}");
        }
    }

    #[test]
    fn an_api_error_answers_its_types_status_slug_and_title() {
        let error = ApiError::new(ProblemType::DuplicateRequest, "already requested");
        assert_eq!(error.status(), StatusCode::CONFLICT);
        let body = error.body();
        assert_eq!(body["type"], "urn:medianest:problem:duplicate-request");
        assert_eq!(body["title"], "Duplicate request");
        assert_eq!(body["status"], 409);
        assert_eq!(body["detail"], "already requested");
    }
}
