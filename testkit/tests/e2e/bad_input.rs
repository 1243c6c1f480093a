//! Bad input over HTTP (docs/design.md §7): every request MediaNest cannot or must not act on is
//! answered with `application/problem+json`, the right status and a stable
//! `urn:medianest:problem:<slug>` type — and writes no event.
//!
//! Tests that move requests through approve/decline/cancel run without the Overseerr
//! simulator, so no saga writes events (or moves a request on) while a test counts them.
//! The `schemathesis` module fuzzes the served OpenAPI document against the API.

use std::time::{Duration, Instant};

use medianest_integrations::overseerr::{
    CreateRequest, MediaType, OverseerrClient, OverseerrConfig,
};
use medianest_testkit::app::{TestApp, TestOptions, WEBHOOK_SECRET};
use medianest_testkit::problem;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use uuid::Uuid;

mod schemathesis;

const REQUESTS: &str = "/api/v1/requests";
const ACTIONS: [&str; 4] = ["approve", "decline", "cancel", "retry"];

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// An app whose Overseerr sagas are idle: nothing but the test writes events.
async fn spawn_without_sagas() -> TestApp {
    TestApp::spawn_with(TestOptions {
        overseerr: false,
        ..TestOptions::default()
    })
    .await
}

/// A valid movie submission.
fn movie(tmdb_id: u32, title: &str) -> Value {
    json!({"media_type": "movie", "tmdb_id": tmdb_id, "title": title, "year": 1999})
}

/// `POST path` as the admin with a raw body and, when given, a `Content-Type`.
fn post_raw(app: &TestApp, path: &str, content_type: Option<&str>, body: &str) -> RequestBuilder {
    let request = app.request(Method::POST, path).body(body.to_string());
    match content_type {
        Some(content_type) => request.header(CONTENT_TYPE, content_type),
        None => request,
    }
}

/// `POST path` as the admin with a JSON body.
fn post(app: &TestApp, path: &str, body: &Value) -> RequestBuilder {
    app.request(Method::POST, path).json(body)
}

/// `POST /api/v1/requests/{id}/{action}` as the admin, without a body.
fn command(app: &TestApp, id: &str, action: &str) -> RequestBuilder {
    app.request(Method::POST, &format!("{REQUESTS}/{id}/{action}"))
}

async fn send(case: &str, request: RequestBuilder) -> Response {
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{case}: the request reaches the app: {e}"))
}

/// Asserts that `response` is a problem+json document with `status` and type
/// `urn:medianest:problem:<slug>`, and returns the document.
async fn assert_problem(case: &str, response: Response, status: u16, slug: &str) -> Value {
    problem::assert_problem(case, response, status, slug)
        .await
        .body
}

/// Sends `request`, asserts the problem (see [`assert_problem`]) and that no event was
/// written; returns the problem document.
async fn refused(
    app: &TestApp,
    case: &str,
    request: RequestBuilder,
    status: u16,
    slug: &str,
) -> Value {
    let before = app.event_count().await;
    let problem = assert_problem(case, send(case, request).await, status, slug).await;
    assert_eq!(app.event_count().await, before, "{case}: no event written");
    problem
}

/// Sends `request` and asserts a 204 without a body and that no event was written.
async fn ignored(app: &TestApp, case: &str, request: RequestBuilder) {
    let before = app.event_count().await;
    let response = send(case, request).await;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, 204, "{case}: status (body: {text})");
    assert!(text.is_empty(), "{case}: no body, got {text}");
    assert_eq!(app.event_count().await, before, "{case}: no event written");
}

/// Submits a movie and returns the new pending request's id.
async fn pending_request(app: &TestApp, tmdb_id: u32) -> String {
    let submitted = app.submit_movie(tmdb_id, "The Matrix").await;
    submitted["id"].as_str().expect("an id").to_string()
}

/// Runs `action` on request `id` and expects a 200.
async fn succeed(app: &TestApp, id: &str, action: &str) -> Value {
    let response = send(action, command(app, id, action)).await;
    assert_eq!(response.status(), 200, "{action} {id}");
    response.json().await.expect("a JSON answer")
}

/// A request that is approved (and stays so: the sagas are idle).
async fn approved_request(app: &TestApp, tmdb_id: u32) -> String {
    let id = pending_request(app, tmdb_id).await;
    succeed(app, &id, "approve").await;
    id
}

// ---------------------------------------------------------------------------------------
// POST /api/v1/requests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unreadable_submission_is_a_400_malformed_request_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            "malformed JSON",
            r#"{"media_type": "movie", "tmdb_id": 603,"#,
        ),
        ("an empty body", ""),
        ("a JSON array", "[]"),
        (
            "an unknown field",
            r#"{"media_type": "movie", "tmdb_id": 603, "title": "The Matrix", "rating": 5}"#,
        ),
        (
            "a string tmdb_id",
            r#"{"media_type": "movie", "tmdb_id": "abc", "title": "The Matrix"}"#,
        ),
        (
            "a negative tmdb_id",
            r#"{"media_type": "movie", "tmdb_id": -603, "title": "The Matrix"}"#,
        ),
        (
            "a missing title",
            r#"{"media_type": "movie", "tmdb_id": 603}"#,
        ),
        (
            "a missing media_type",
            r#"{"tmdb_id": 603, "title": "The Matrix"}"#,
        ),
        (
            "an unknown media_type",
            r#"{"media_type": "book", "tmdb_id": 603, "title": "The Matrix"}"#,
        ),
    ];
    for (case, body) in cases {
        refused(
            &app,
            case,
            post_raw(&app, REQUESTS, Some("application/json"), body),
            400,
            "malformed-request",
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_submission_that_is_not_json_is_a_415_unsupported_media_type_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let body = movie(603, "The Matrix").to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        refused(
            &app,
            &format!("Content-Type {content_type:?}"),
            post_raw(&app, REQUESTS, content_type, &body),
            415,
            "unsupported-media-type",
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_submission_over_64_kib_is_a_413_problem_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let mut body = movie(603, "The Matrix");
    body["note"] = json!("x".repeat(64 * 1024 + 1));
    refused(
        &app,
        "a 64 KiB note",
        post(&app, REQUESTS, &body),
        413,
        "body-too-large",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_submission_breaking_a_rule_is_a_422_naming_the_field_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let tv = |seasons: Option<Value>| {
        let mut body = json!({
            "media_type": "tv", "tmdb_id": 1399, "tvdb_id": 121361, "title": "Game of Thrones"
        });
        if let Some(seasons) = seasons {
            body["seasons"] = seasons;
        }
        body
    };
    let with = |key: &str, value: Value| {
        let mut body = movie(603, "The Matrix");
        body[key] = value;
        body
    };
    let cases = [
        ("tv without seasons", tv(None), "seasons"),
        ("tv with no season", tv(Some(json!([]))), "seasons"),
        (
            "a movie with seasons",
            with("seasons", json!([1])),
            "seasons",
        ),
        ("an empty title", with("title", json!("")), "title"),
        ("a blank title", with("title", json!("   ")), "title"),
        ("tmdb_id 0", with("tmdb_id", json!(0)), "tmdb_id"),
        ("tvdb_id 0", with("tvdb_id", json!(0)), "tvdb_id"),
        ("year 1800", with("year", json!(1800)), "year"),
        (
            "a note over 1000 chars",
            with("note", json!("n".repeat(1001))),
            "note",
        ),
    ];
    for (case, body, field) in cases {
        let problem = refused(
            &app,
            case,
            post(&app, REQUESTS, &body),
            422,
            "validation-failed",
        )
        .await;
        assert_eq!(problem["field"], field, "{case}: {problem}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_submission_without_a_valid_bearer_token_is_a_401_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let body = movie(603, "The Matrix");
    let anonymous = || app.http.post(app.url(REQUESTS)).json(&body);
    let cases = [
        ("no Authorization", anonymous()),
        (
            "a wrong bearer token",
            anonymous().bearer_auth("not-the-token"),
        ),
        (
            "an empty bearer token",
            anonymous().header(AUTHORIZATION, "Bearer "),
        ),
        (
            "the token without Bearer",
            anonymous().header(AUTHORIZATION, app.admin_token()),
        ),
        (
            "the token as Basic credentials",
            anonymous().basic_auth("admin", Some(app.admin_token())),
        ),
    ];
    for (case, request) in cases {
        refused(&app, case, request, 401, "unauthenticated").await;
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// POST /api/v1/requests/{id}/approve|decline|cancel|retry
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn commands_on_an_unknown_or_non_uuid_request_id_are_404_not_found_and_write_nothing() {
    let app = spawn_without_sagas().await;
    pending_request(&app, 603).await;
    let unknown = Uuid::now_v7().to_string();
    for id in [unknown.as_str(), "not-a-uuid", "12345"] {
        for action in ACTIONS {
            refused(
                &app,
                &format!("{action} {id}"),
                command(&app, id, action),
                404,
                "not-found",
            )
            .await;
        }
    }
    app.stop().await;
}

/// `action` on request `id` is refused 409 `illegal-transition` naming `status`, writing
/// nothing.
async fn assert_illegal(app: &TestApp, id: &str, case: &str, action: &str, status: &str) {
    let problem = refused(
        app,
        case,
        command(app, id, action),
        409,
        "illegal-transition",
    )
    .await;
    assert_request_status_named(&problem, status);
}

#[tokio::test]
async fn approving_an_approved_request_is_a_409_illegal_transition_naming_its_status() {
    let app = spawn_without_sagas().await;
    let id = approved_request(&app, 603).await;
    assert_illegal(&app, &id, "approve twice", "approve", "approved").await;
    app.stop().await;
}

#[tokio::test]
async fn declining_an_approved_request_is_a_409_illegal_transition_naming_its_status() {
    let app = spawn_without_sagas().await;
    let id = approved_request(&app, 603).await;
    assert_illegal(&app, &id, "decline after approve", "decline", "approved").await;
    app.stop().await;
}

#[tokio::test]
async fn retrying_a_pending_request_is_a_409_illegal_transition_naming_its_status() {
    let app = spawn_without_sagas().await;
    let id = pending_request(&app, 603).await;
    assert_illegal(&app, &id, "retry a pending request", "retry", "pending").await;
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_cancelled_request_is_a_409_illegal_transition_naming_its_status() {
    let app = spawn_without_sagas().await;
    let id = pending_request(&app, 603).await;
    succeed(&app, &id, "cancel").await;
    assert_illegal(&app, &id, "cancel twice", "cancel", "cancelled").await;
    app.stop().await;
}

/// The `illegal-transition` problem names the request's current status in its detail and
/// in the `request_status` extension member. (RFC 9457 reserves `status` for the HTTP
/// status code, which [`assert_problem`] checks is a number equal to 409.)
fn assert_request_status_named(problem: &Value, status: &str) {
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(status),
        "the detail names the status {status}: {problem}"
    );
    assert_eq!(
        problem["request_status"], status,
        "the request's status as an extension member: {problem}"
    );
}

#[tokio::test]
async fn a_command_body_of_the_wrong_shape_is_a_400_and_leaves_the_request_pending() {
    let app = spawn_without_sagas().await;
    let id = pending_request(&app, 603).await;
    let cases = [
        (
            "decline",
            r#"{"reason": "no", "because": "no"}"#,
            "an unknown field",
        ),
        ("decline", r#"{"reason": 5}"#, "a numeric reason"),
        ("decline", r#"{"reason": "no""#, "malformed JSON"),
        ("cancel", r#"{"why": "no"}"#, "an unknown field"),
        ("approve", r#"{"auto": true}"#, "an unknown field"),
    ];
    for (action, body, what) in cases {
        refused(
            &app,
            &format!("{action} with {what}"),
            post_raw(
                &app,
                &format!("{REQUESTS}/{id}/{action}"),
                Some("application/json"),
                body,
            ),
            400,
            "malformed-request",
        )
        .await;
    }
    let events = app.events_of("media_request", &id).await;
    assert_eq!(events.len(), 1, "only the submission: {events:?}");
    app.stop().await;
}

#[tokio::test]
async fn if_match_with_a_stale_version_is_a_412_naming_the_current_version() {
    let app = spawn_without_sagas().await;
    let id = approved_request(&app, 603).await;
    for (case, if_match) in [("a stale version", "\"1\""), ("a future version", "\"7\"")] {
        let problem = refused(
            &app,
            case,
            command(&app, &id, "cancel").header(IF_MATCH, if_match),
            412,
            "version-mismatch",
        )
        .await;
        assert_eq!(problem["current_version"], 2, "{case}: {problem}");
    }
    app.stop().await;
}

#[tokio::test]
async fn if_match_that_is_not_a_version_is_a_400_and_writes_nothing() {
    let app = spawn_without_sagas().await;
    let id = pending_request(&app, 603).await;
    for if_match in ["abc", "\"one\"", "-1", "\"1.5\""] {
        refused(
            &app,
            &format!("If-Match: {if_match}"),
            command(&app, &id, "approve").header(IF_MATCH, if_match),
            400,
            "malformed-request",
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn if_match_with_the_current_version_succeeds_and_the_etag_names_the_new_version() {
    let app = spawn_without_sagas().await;
    let id = pending_request(&app, 603).await;
    for (action, if_match, version) in [("approve", "\"1\"", 2), ("cancel", "W/\"2\"", 3)] {
        let response = send(
            action,
            command(&app, &id, action).header(IF_MATCH, if_match),
        )
        .await;
        assert_eq!(response.status(), 200, "{action} with If-Match {if_match}");
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let answer: Value = response.json().await.expect("a JSON answer");
        assert_eq!(answer["version"], version, "{action}: {answer}");
        assert_eq!(
            etag,
            Some(format!("\"{}\"", answer["version"])),
            "{action}: the ETag is the answer's version"
        );
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Idempotency-Key
// ---------------------------------------------------------------------------------------

/// Sends `request` and returns its status, content type and JSON body.
async fn answer_of(case: &str, request: RequestBuilder) -> (u16, Option<String>, Value) {
    let response = send(case, request).await;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.json().await.expect("a JSON answer");
    (status, content_type, body)
}

#[tokio::test]
async fn repeating_a_submission_with_its_idempotency_key_replays_the_answer_and_writes_once() {
    let app = spawn_without_sagas().await;
    let body = movie(603, "The Matrix");
    let submit = || post(&app, REQUESTS, &body).header("Idempotency-Key", "submit-603");
    let before = app.event_count().await;

    let first = answer_of("first", submit()).await;
    let second = answer_of("second", submit()).await;

    assert_eq!(first.0, 202, "{first:?}");
    assert_eq!(second, first, "same status, content type and body");
    assert_eq!(app.event_count().await, before + 1, "one submitted event");
    let id = first.2["id"].as_str().expect("an id");
    let types: Vec<_> = app
        .events_of("media_request", id)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types, ["submitted"]);
    app.stop().await;
}

#[tokio::test]
async fn reusing_an_idempotency_key_with_another_body_is_a_422_and_writes_nothing() {
    let app = spawn_without_sagas().await;
    let with_key = |body: &Value| post(&app, REQUESTS, body).header("Idempotency-Key", "k-1");
    let first = send("first", with_key(&movie(603, "The Matrix"))).await;
    assert_eq!(first.status(), 202);

    refused(
        &app,
        "same key, another body",
        with_key(&movie(604, "The Matrix Reloaded")),
        422,
        "idempotency-key-reused",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn repeating_an_approval_with_its_idempotency_key_replays_the_200_instead_of_a_409() {
    let app = spawn_without_sagas().await;
    let id = pending_request(&app, 603).await;
    let approve = || command(&app, &id, "approve").header("Idempotency-Key", "approve-once");

    let first = answer_of("first", approve()).await;
    let before = app.event_count().await;
    let second = answer_of("second", approve()).await;

    assert_eq!(first.0, 200, "{first:?}");
    assert_eq!(second, first, "same status, content type and body");
    assert_eq!(app.event_count().await, before, "no second approval");
    // Without the key, approving again is refused as usual (the problem itself is checked
    // by `approving_an_approved_request_is_a_409_illegal_transition_naming_its_status`).
    let again = send("approve again", command(&app, &id, "approve")).await;
    assert_eq!(again.status(), 409, "approving again without the key");
    assert_eq!(app.event_count().await, before, "still one approval");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// POST /api/v1/webhooks/overseerr
// ---------------------------------------------------------------------------------------

/// A request made directly in Overseerr (not through MediaNest); returns its Overseerr id.
async fn overseerr_only_request(app: &TestApp, tmdb_id: u64) -> u64 {
    let client = OverseerrClient::new(OverseerrConfig {
        base_url: app.sim().base_url().parse().expect("the simulator's URL"),
        api_key: app.sim().api_key().to_string(),
        timeout: Duration::from_secs(5),
    })
    .expect("an Overseerr client");
    client
        .create_request(&CreateRequest {
            media_type: MediaType::Movie,
            media_id: tmdb_id,
            tvdb_id: None,
            seasons: None,
            is_4k: false,
        })
        .await
        .expect("the simulator creates the request")
        .id
}

fn webhook(app: &TestApp, authorization: Option<&str>, body: &str) -> RequestBuilder {
    let request = app
        .http
        .post(app.overseerr_webhook_url())
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string());
    match authorization {
        Some(authorization) => request.header(AUTHORIZATION, authorization),
        None => request,
    }
}

#[tokio::test]
async fn the_overseerr_webhook_without_its_secret_is_a_401_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let id = pending_request(&app, 603).await;
    // A notification that names MediaNest's request by its media, as Overseerr would send it.
    let overseerr_id = overseerr_only_request(&app, 603).await;
    let payload = app
        .sim()
        .webhook_payload("MEDIA_AVAILABLE", overseerr_id)
        .expect("a payload")
        .to_string();
    let events = app.events_of("media_request", &id).await;

    let bearer = format!("Bearer {WEBHOOK_SECRET}");
    let almost = format!("{WEBHOOK_SECRET}x");
    let cases = [
        ("a wrong secret", Some("not-the-secret")),
        ("a longer secret", Some(almost.as_str())),
        ("no Authorization", None),
        ("an empty Authorization", Some("")),
        ("the secret as a bearer token", Some(bearer.as_str())),
        ("the admin token", Some(app.admin_token())),
    ];
    for (case, authorization) in cases {
        refused(
            &app,
            case,
            webhook(&app, authorization, &payload),
            401,
            "webhook-unauthenticated",
        )
        .await;
    }
    assert_eq!(app.events_of("media_request", &id).await, events);
    app.stop().await;
}

#[tokio::test]
async fn an_unreadable_overseerr_webhook_with_its_secret_is_a_400_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let id = pending_request(&app, 603).await;
    let events = app.events_of("media_request", &id).await;
    let cases = [
        (
            "malformed JSON",
            r#"{"notification_type": "MEDIA_AVAILABLE""#,
        ),
        ("an empty body", ""),
        (
            "no notification_type",
            r#"{"media": {"media_type": "movie", "tmdbId": "603"}}"#,
        ),
        ("a numeric notification_type", r#"{"notification_type": 5}"#),
    ];
    for (case, body) in cases {
        refused(
            &app,
            case,
            webhook(&app, Some(WEBHOOK_SECRET), body),
            400,
            "malformed-request",
        )
        .await;
    }
    assert_eq!(app.events_of("media_request", &id).await, events);
    app.stop().await;
}

#[tokio::test]
async fn a_test_notification_is_answered_204_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let id = pending_request(&app, 603).await;
    let events = app.events_of("media_request", &id).await;
    let payload = app
        .sim()
        .webhook_payload("TEST_NOTIFICATION", 0)
        .expect("a payload");
    ignored(
        &app,
        "TEST_NOTIFICATION",
        webhook(&app, Some(WEBHOOK_SECRET), &payload.to_string()),
    )
    .await;
    assert_eq!(app.events_of("media_request", &id).await, events);
    app.stop().await;
}

#[tokio::test]
async fn a_notification_for_a_request_medianest_does_not_know_is_answered_204_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let id = pending_request(&app, 603).await;
    let events = app.events_of("media_request", &id).await;
    // Someone requested Inception in Overseerr itself.
    let overseerr_id = overseerr_only_request(&app, 27205).await;
    for notification in [
        "MEDIA_APPROVED",
        "MEDIA_AVAILABLE",
        "MEDIA_FAILED",
        "MEDIA_DECLINED",
    ] {
        let payload = app
            .sim()
            .webhook_payload(notification, overseerr_id)
            .expect("a payload");
        ignored(
            &app,
            notification,
            webhook(&app, Some(WEBHOOK_SECRET), &payload.to_string()),
        )
        .await;
    }
    let bare = json!({"notification_type": "MEDIA_AVAILABLE", "media": null, "request": null});
    ignored(
        &app,
        "MEDIA_AVAILABLE without media or request",
        webhook(&app, Some(WEBHOOK_SECRET), &bare.to_string()),
    )
    .await;
    assert_eq!(app.events_of("media_request", &id).await, events);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Query API
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn listing_requests_with_bad_query_parameters_is_a_400() {
    let app = TestApp::spawn().await;
    pending_request(&app, 603).await;
    let cases = [
        ("an unknown parameter", "?sort=title"),
        ("an unknown status", "?status=lost"),
        ("an unknown media_type", "?media_type=book"),
        ("limit 0", "?limit=0"),
        ("limit 101", "?limit=101"),
        ("a negative limit", "?limit=-1"),
        ("a non-numeric limit", "?limit=ten"),
        ("a cursor that is not a uuid", "?cursor=abc"),
        ("a non-numeric min_position", "?min_position=abc"),
    ];
    for (case, query) in cases {
        refused(
            &app,
            case,
            app.request(Method::GET, &format!("{REQUESTS}{query}")),
            400,
            "malformed-request",
        )
        .await;
    }
    // The edges of `limit` are accepted.
    for query in ["?limit=1", "?limit=100"] {
        let response = app.get(&format!("{REQUESTS}{query}")).await;
        assert_eq!(response.status(), 200, "{query}");
    }
    app.stop().await;
}

#[tokio::test]
async fn reading_a_request_with_an_unknown_query_parameter_is_a_400() {
    let app = TestApp::spawn().await;
    let id = pending_request(&app, 603).await;
    for path in [
        format!("{REQUESTS}/{id}?expand=events"),
        format!("{REQUESTS}/{id}/history?expand=events"),
    ] {
        refused(
            &app,
            &path,
            app.request(Method::GET, &path),
            400,
            "malformed-request",
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn reading_an_unknown_or_non_uuid_request_or_its_history_is_a_404() {
    let app = TestApp::spawn().await;
    pending_request(&app, 603).await;
    let unknown = Uuid::now_v7();
    for path in [
        format!("{REQUESTS}/{unknown}"),
        format!("{REQUESTS}/not-a-uuid"),
        format!("{REQUESTS}/{unknown}/history"),
        format!("{REQUESTS}/not-a-uuid/history"),
    ] {
        refused(
            &app,
            &path,
            app.request(Method::GET, &path),
            404,
            "not-found",
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn queries_without_a_valid_bearer_token_are_a_401() {
    let app = TestApp::spawn().await;
    let id = pending_request(&app, 603).await;
    for path in [
        REQUESTS.to_string(),
        format!("{REQUESTS}/{id}"),
        format!("{REQUESTS}/{id}/history"),
    ] {
        refused(
            &app,
            &format!("{path} without a token"),
            app.http.get(app.url(&path)),
            401,
            "unauthenticated",
        )
        .await;
        refused(
            &app,
            &format!("{path} with a wrong token"),
            app.http.get(app.url(&path)).bearer_auth("not-the-token"),
            401,
            "unauthenticated",
        )
        .await;
    }
    app.stop().await;
}

/// Holds the checkpoint row of every projection locked, as a projection applying an event
/// does: no read model moves until the transaction is dropped.
async fn hold_read_models(app: &TestApp) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = app.pool.begin().await.expect("a transaction");
    for projection in medianest_projections::all() {
        let name = format!("projection-{}", projection.name());
        medianest_store::checkpoint::load_for_update(&mut tx, &name)
            .await
            .expect("the checkpoint row, locked");
    }
    tx
}

/// Leaves a gap in `global_position`: an insert that rolls back still uses up its identity
/// value (as a command that loses a race does). Answers the lost position.
async fn rolled_back_position(app: &TestApp) -> i64 {
    let mut tx = app.pool.begin().await.expect("a transaction");
    let position: i64 = sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('media_request', $1, 1, 'submitted', '1.0', '{}', '{}')
         RETURNING global_position",
    )
    .bind(Uuid::now_v7().to_string())
    .fetch_one(&mut *tx)
    .await
    .expect("an insert");
    tx.rollback().await.expect("a rollback");
    position
}

#[tokio::test]
async fn a_read_waiting_for_a_position_its_read_model_has_not_reached_is_a_503_with_retry_after() {
    let wait = Duration::from_millis(300);
    let app = TestApp::spawn_with(TestOptions {
        min_position_wait: wait,
        ..TestOptions::default()
    })
    .await;
    let id = pending_request(&app, 603).await;
    let read_models = hold_read_models(&app).await;
    let position = app.submit_movie(604, "The Matrix Reloaded").await["position"]
        .as_i64()
        .expect("a position");
    let cases = [
        (
            "list, min_position",
            app.request(Method::GET, &format!("{REQUESTS}?min_position={position}")),
        ),
        (
            "detail, X-Min-Position",
            app.request(Method::GET, &format!("{REQUESTS}/{id}"))
                .header("X-Min-Position", position.to_string()),
        ),
    ];
    for (case, request) in cases {
        let started = Instant::now();
        let response = send(case, request).await;
        let elapsed = started.elapsed();
        let problem = problem::assert_problem(case, response, 503, "unavailable").await;
        assert!(
            problem.retry_after.is_some_and(|s| s >= 1),
            "{case}: Retry-After in seconds, got {:?}",
            problem.retry_after
        );
        assert!(
            elapsed >= wait,
            "{case}: waited the configured {wait:?}, took {elapsed:?}"
        );
    }
    drop(read_models);
    let response = app
        .get(&format!("{REQUESTS}?min_position={position}"))
        .await;
    assert_eq!(response.status(), 200, "answered once the read model moves");
    app.stop().await;
}

#[tokio::test]
async fn a_request_beyond_the_in_flight_limit_is_a_503_overloaded_at_once_and_writes_nothing() {
    let wait = Duration::from_secs(5);
    let app = TestApp::spawn_with(TestOptions {
        min_position_wait: wait,
        http_max_in_flight: 1,
        ..TestOptions::default()
    })
    .await;
    let read_models = hold_read_models(&app).await;
    let position = app.submit_movie(603, "The Matrix").await["position"]
        .as_i64()
        .expect("a position");
    // A read waiting for a position its read model has not reached holds the only slot. It
    // may lose the slot to a probe sent at the same moment (and be refused itself): then it
    // is sent again, until a probe is refused while it waits.
    let hold = || {
        tokio::spawn(
            app.request(Method::GET, &format!("{REQUESTS}?min_position={position}"))
                .send(),
        )
    };
    let mut waiting = hold();
    let mut attempts = 0;
    loop {
        attempts += 1;
        assert!(attempts < 50, "no read was refused while the slot was held");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if waiting.is_finished() {
            waiting = hold();
        } else if app.get(REQUESTS).await.status() == 503 {
            break;
        }
    }
    let before = app.event_count().await;
    let started = Instant::now();
    let submit = app.request(Method::POST, REQUESTS).json(&json!({
        "media_type": "movie", "tmdb_id": 604, "title": "The Matrix Reloaded",
        "year": 2003, "is_4k": false, "note": null
    }));
    let response = send("submit while the slot is held", submit).await;
    let elapsed = started.elapsed();
    let problem = problem::assert_problem("shed", response, 503, "overloaded").await;
    assert_eq!(problem.retry_after, Some(1), "Retry-After: 1");
    assert!(elapsed < wait / 2, "refused at once, took {elapsed:?}");
    // Health is not behind the limit.
    let health = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200, "health answers while the API is full");

    drop(read_models);
    let waited = waiting.await.expect("the task").expect("the waiting read");
    assert_eq!(waited.status(), 200, "the admitted read is answered");
    assert_eq!(
        app.event_count().await,
        before,
        "the refused submit wrote nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_min_position_no_event_has_is_a_400_at_once_instead_of_a_wait() {
    // A wait that would outlast the test: the answer must not come from waiting.
    let app = TestApp::spawn_with(TestOptions {
        min_position_wait: Duration::from_secs(30),
        ..TestOptions::default()
    })
    .await;
    let id = pending_request(&app, 603).await;
    let gap = rolled_back_position(&app).await;
    let head = app.submit_movie(604, "The Matrix Reloaded").await["position"]
        .as_i64()
        .expect("a position");
    assert!(gap < head, "the gap {gap} lies below the head {head}");
    let far = 1_000_000_000_i64;
    let cases = [
        (
            "list, beyond the head",
            format!("{REQUESTS}?min_position={far}"),
            None,
            far,
        ),
        (
            "detail, beyond the head",
            format!("{REQUESTS}/{id}?min_position={}", head + 1),
            None,
            head + 1,
        ),
        (
            "history, i64::MAX",
            format!("{REQUESTS}/{id}/history?min_position={}", i64::MAX),
            None,
            i64::MAX,
        ),
        (
            "detail, X-Min-Position beyond the head",
            format!("{REQUESTS}/{id}"),
            Some(far),
            far,
        ),
        (
            "the larger of query and header wins",
            format!("{REQUESTS}/{id}?min_position={head}"),
            Some(far),
            far,
        ),
        (
            "a rolled-back position below the head",
            format!("{REQUESTS}?min_position={gap}"),
            None,
            gap,
        ),
        (
            "dashboard",
            format!("/api/v1/dashboard?min_position={far}"),
            None,
            far,
        ),
        ("me", format!("/api/v1/me?min_position={far}"), None, far),
        (
            "search",
            format!("/api/v1/search?q=matrix&min_position={far}"),
            None,
            far,
        ),
        (
            "downloads",
            format!("/api/v1/downloads?min_position={far}"),
            None,
            far,
        ),
    ];
    for (case, path, header, asked) in cases {
        let mut request = app.request(Method::GET, &path);
        if let Some(header) = header {
            request = request.header("X-Min-Position", header.to_string());
        }
        let before = app.event_count().await;
        let response = tokio::time::timeout(Duration::from_secs(10), send(case, request))
            .await
            .unwrap_or_else(|_| panic!("{case}: answered without waiting for the position"));
        let problem = assert_problem(case, response, 400, "unknown-min-position").await;
        assert_eq!(problem["min_position"], asked, "{case}: {problem}");
        assert!(
            problem["head"].as_i64().is_some_and(|h| h >= head),
            "{case}: {problem}"
        );
        assert_eq!(app.event_count().await, before, "{case}: no event written");
    }
    // A position a command answered is still waited for and read.
    let response = app
        .get(&format!("{REQUESTS}/{id}?min_position={head}"))
        .await;
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_min_position_that_is_negative_huge_or_not_a_number_is_a_400() {
    let app = TestApp::spawn().await;
    let id = pending_request(&app, 603).await;
    let values = [
        "-1",
        "-9223372036854775808",
        "9223372036854775808",
        "99999999999999999999",
        "abc",
        "1.5",
        "1e3",
        "",
    ];
    for path in [REQUESTS.to_string(), format!("{REQUESTS}/{id}")] {
        for value in values {
            let case = format!("{path}?min_position={value:?}");
            // `""` as a query value is "no value": only the header form is malformed.
            if !value.is_empty() {
                refused(
                    &app,
                    &case,
                    app.request(Method::GET, &format!("{path}?min_position={value}")),
                    400,
                    "malformed-request",
                )
                .await;
            }
            refused(
                &app,
                &format!("{path} with X-Min-Position: {value:?}"),
                app.request(Method::GET, &path)
                    .header("X-Min-Position", value),
                400,
                "malformed-request",
            )
            .await;
        }
    }
    // 0 is the start of the log (an empty log's dashboard answers it): nothing to wait for.
    for request in [
        app.request(Method::GET, &format!("{REQUESTS}?min_position=0")),
        app.request(Method::GET, REQUESTS)
            .header("X-Min-Position", "0"),
    ] {
        assert_eq!(send("min_position 0", request).await.status(), 200);
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// The OpenAPI document lists what the routes answer
// ---------------------------------------------------------------------------------------

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every operation of the document: `(method, path template, operation)`.
fn operations(document: &Value) -> Vec<(&str, &str, &Value)> {
    let paths = document["paths"].as_object().expect("paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if item[method].is_object() {
                out.push((method, path.as_str(), &item[method]));
            }
        }
    }
    out
}

fn is_secured(operation: &Value) -> bool {
    operation["security"].as_array().is_some_and(|s| {
        s.iter()
            .any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
    })
}

fn parameter<'a>(operation: &'a Value, location: &str, name: &str) -> Option<&'a Value> {
    operation["parameters"].as_array()?.iter().find(|p| {
        p["in"] == location
            && p["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

/// Asserts the document lists `status` for `method path`.
fn assert_listed(document: &Value, case: &str, method: &str, path: &str, status: u16) {
    let responses = &document["paths"][path][method]["responses"];
    assert!(
        responses[status.to_string()].is_object(),
        "{case}: {} {path} answered {status}, which its OpenAPI entry does not list: {responses}",
        method.to_uppercase()
    );
}

/// A concrete path for a template (path parameters filled with values the route accepts).
fn concrete(path: &str) -> String {
    let action = if path.starts_with("/api/v1/downloads") {
        "cancel"
    } else {
        "approve"
    };
    path.replace("{id}", &Uuid::now_v7().to_string())
        .replace("{action}", action)
        .replace("{list}", "trending")
        .replace("{tmdb_id}", "603")
        .replace("{season_number}", "1")
        .replace("{secret}", "not-the-secret")
}

#[tokio::test]
async fn the_openapi_document_lists_the_answers_every_operation_shares() {
    let app = spawn_without_sagas().await;
    let document = app.openapi_document().await;
    let operations = operations(&document);
    assert!(operations.len() >= 30, "every route is described");
    let problem_ref = json!({"$ref": "#/components/schemas/Problem"});
    assert!(document["components"]["schemas"]["Problem"].is_object());
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut secured = 0;
    let mut waiting = 0;
    for (method, path, operation) in operations {
        let case = format!("{} {path}", method.to_uppercase());
        let responses = operation["responses"].as_object().expect("responses");
        let lists = |status: &str| responses.contains_key(status);
        for status in ["413", "500"] {
            assert!(lists(status), "{case}: every route can answer {status}");
        }
        if is_secured(operation) {
            secured += 1;
            for status in ["401", "429", "503"] {
                assert!(lists(status), "{case}: needs a session, so lists {status}");
            }
        }
        if let Some(min_position) = parameter(operation, "query", "min_position") {
            waiting += 1;
            for status in ["400", "503"] {
                assert!(
                    lists(status),
                    "{case}: takes min_position, so lists {status}"
                );
            }
            assert_eq!(
                min_position["schema"]["minimum"], 0,
                "{case}: {min_position}"
            );
            let header = parameter(operation, "header", "X-Min-Position")
                .unwrap_or_else(|| panic!("{case}: X-Min-Position is documented"));
            assert_eq!(header["schema"]["minimum"], 0, "{case}: {header}");
        }
        if parameter(operation, "header", "If-Match").is_some() {
            assert!(lists("412"), "{case}: takes If-Match, so lists 412");
        }
        if parameter(operation, "header", "Idempotency-Key").is_some() {
            assert!(
                lists("409") && lists("422"),
                "{case}: takes Idempotency-Key"
            );
        }
        let reads_query = operation["parameters"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["in"] == "query"));
        if reads_query || operation["requestBody"].is_object() {
            assert!(lists("400"), "{case}: reads input, so lists 400");
        }
        for (status, answer) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    answer["content"][problem::PROBLEM_JSON]["schema"],
                    problem_ref,
                    "{case}: {status} has a problem+json body: {answer}"
                );
                assert!(
                    answer["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{case}: {status} says when: {answer}"
                );
            }
        }
    }
    assert!(secured >= 25, "{secured} operations need a session");
    assert!(waiting >= 14, "{waiting} operations take min_position");
    app.stop().await;
}

#[tokio::test]
async fn the_statuses_routes_answer_are_the_ones_their_openapi_entries_list() {
    // Nothing optional configured: no Overseerr (catalogue), no Plex, no downloads.
    let app = TestApp::spawn_with(TestOptions {
        overseerr: false,
        plex: false,
        min_position_wait: Duration::from_millis(300),
        ..TestOptions::default()
    })
    .await;
    let document = app.openapi_document().await;

    // Without a session, every operation that needs one is a 401.
    for (method, path, operation) in operations(&document) {
        if !is_secured(operation) {
            continue;
        }
        let case = format!("{} {path} without a token", method.to_uppercase());
        let verb = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
        let response = send(&case, app.http.request(verb, app.url(&concrete(path)))).await;
        assert_problem(&case, response, 401, "unauthenticated").await;
        assert_listed(&document, &case, method, path, 401);
    }

    // While the read models stand still, every operation taking min_position is a 503.
    let id = pending_request(&app, 603).await;
    let read_models = hold_read_models(&app).await;
    let position = app.submit_movie(604, "The Matrix Reloaded").await["position"]
        .as_i64()
        .expect("a position");
    let waits: Vec<_> = operations(&document)
        .into_iter()
        .filter(|(_, _, operation)| parameter(operation, "query", "min_position").is_some())
        .map(|(method, path, _)| {
            let separator = if path.contains("search") {
                "?q=matrix&"
            } else {
                "?"
            };
            let url = format!("{}{separator}min_position={position}", concrete(path));
            let request = app.request(Method::GET, &url);
            async move { (method, path, send(path, request).await) }
        })
        .collect();
    assert!(waits.len() >= 14, "every min_position operation is tried");
    for (method, path, response) in futures::future::join_all(waits).await {
        let case = format!("{path} with min_position not reached");
        let slug = if path.starts_with("/api/v1/catalog") {
            "catalog-disabled"
        } else {
            "unavailable"
        };
        assert_problem(&case, response, 503, slug).await;
        assert_listed(&document, &case, method, path, 503);
    }
    drop(read_models);

    // What is not configured, and other answers every route of a kind can give.
    let big = "x".repeat(70 * 1024);
    let cases = [
        (
            "downloads not configured",
            "post",
            "/api/v1/downloads",
            app.request(Method::POST, "/api/v1/downloads")
                .json(&json!({"url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ"})),
            503,
            "downloads-disabled",
        ),
        (
            "download commands, downloads not configured",
            "post",
            "/api/v1/downloads/{id}/cancel",
            app.request(
                Method::POST,
                &format!("/api/v1/downloads/{}/cancel", Uuid::now_v7()),
            ),
            503,
            "downloads-disabled",
        ),
        (
            "Plex PIN, Plex not configured",
            "post",
            "/api/v1/auth/plex/pins",
            app.http.post(app.url("/api/v1/auth/plex/pins")),
            503,
            "plex-sign-in-unavailable",
        ),
        (
            "Plex PIN exchange, Plex not configured",
            "post",
            "/api/v1/auth/plex/pins/{id}/session",
            app.http.post(app.url("/api/v1/auth/plex/pins/1/session")),
            503,
            "plex-sign-in-unavailable",
        ),
        (
            "Plex sync, Plex not configured",
            "post",
            "/api/v1/admin/plex/sync",
            app.request(Method::POST, "/api/v1/admin/plex/sync"),
            503,
            "plex-disabled",
        ),
        (
            "catalogue, Overseerr not configured",
            "get",
            "/api/v1/catalog/search",
            app.request(Method::GET, "/api/v1/catalog/search?q=matrix"),
            503,
            "catalog-disabled",
        ),
        (
            "min_position beyond the head",
            "get",
            "/api/v1/requests/{id}",
            app.request(
                Method::GET,
                &format!("{REQUESTS}/{id}?min_position=1000000000"),
            ),
            400,
            "unknown-min-position",
        ),
        (
            "negative min_position",
            "get",
            "/api/v1/dashboard",
            app.request(Method::GET, "/api/v1/dashboard?min_position=-1"),
            400,
            "malformed-request",
        ),
        (
            "stale If-Match",
            "post",
            "/api/v1/requests/{id}/approve",
            command(&app, &id, "approve").header(IF_MATCH, "\"7\""),
            412,
            "version-mismatch",
        ),
        (
            "a body over 64 KiB",
            "post",
            "/api/v1/auth/login",
            app.http
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"username": big, "password": "x"})),
            413,
            "body-too-large",
        ),
        (
            "a body that is not JSON",
            "put",
            "/api/v1/admin/users/{id}/role",
            app.request(
                Method::PUT,
                &format!("/api/v1/admin/users/{}/role", app.admin.id),
            )
            .body("role=user"),
            400,
            "malformed-request",
        ),
        (
            "sign-in without a JSON content type",
            "post",
            "/api/v1/auth/login",
            post_raw(&app, "/api/v1/auth/login", Some("text/plain"), "{}"),
            415,
            "unsupported-media-type",
        ),
    ];
    for (case, method, path, request, status, slug) in cases {
        refused(&app, case, request, status, slug).await;
        assert_listed(&document, case, method, path, status);
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Text PostgreSQL cannot store, Last-Event-ID, oversized headers (issue 12)
// ---------------------------------------------------------------------------------------

/// Asserts a 400 `invalid-text` naming `field`, with no event written.
async fn refused_text(app: &TestApp, case: &str, request: RequestBuilder, field: &str) {
    let problem = refused(app, case, request, 400, "invalid-text").await;
    assert_eq!(problem["field"], field, "{case}: {problem}");
}

#[tokio::test]
async fn a_nul_in_the_text_or_keys_of_a_submission_is_a_400_invalid_text_naming_the_field() {
    let app = spawn_without_sagas().await;
    let with = |key: &str, value: Value| {
        let mut body = movie(603, "The Matrix");
        body[key] = value;
        body
    };
    let mut nul_key = movie(603, "The Matrix");
    nul_key["ye\u{0}ar"] = json!(1999);
    let cases = [
        (
            "a NUL in the title",
            with("title", json!("The\u{0}Matrix")),
            "title",
        ),
        (
            "a NUL alone as the title",
            with("title", json!("\u{0}")),
            "title",
        ),
        (
            "a NUL in the note",
            with("note", json!("soon\u{0}")),
            "note",
        ),
        (
            "a NUL in an unknown field's value",
            with("extra", json!({"deep": ["\u{0}"]})),
            "extra.deep.0",
        ),
        ("a NUL in a key", nul_key, "ye\\0ar"),
    ];
    for (case, body, field) in cases {
        refused_text(&app, case, post(&app, REQUESTS, &body), field).await;
    }
    // A body that is not UTF-8 is not JSON at all.
    refused(
        &app,
        "a title that is not UTF-8",
        app.request(Method::POST, REQUESTS)
            .header(CONTENT_TYPE, "application/json")
            .body(b"{\"media_type\": \"movie\", \"tmdb_id\": 603, \"title\": \"\xff\"}".to_vec()),
        400,
        "malformed-request",
    )
    .await;
    // The same, with an Idempotency-Key: refused alike, and the refusal replays.
    let body = with("note", json!("\u{0}"));
    for attempt in ["first", "again"] {
        refused_text(
            &app,
            &format!("a NUL in the note, keyed, {attempt}"),
            post(&app, REQUESTS, &body).header("Idempotency-Key", "nul-note"),
            "note",
        )
        .await;
    }
    // Text without a NUL is stored as given, whatever else it holds.
    let odd = "Amélie 🎬 \\u0000 \u{1}";
    let answer = app.submit_movie(194, odd).await;
    let (id, position) = (&answer["id"], &answer["position"]);
    let id = id.as_str().expect("an id");
    let response = app
        .get(&format!("{REQUESTS}/{id}?min_position={position}"))
        .await;
    let view: Value = response.json().await.expect("a JSON answer");
    assert_eq!(view["media"]["title"], odd, "{view}");
    app.stop().await;
}

#[tokio::test]
async fn a_nul_in_a_decline_or_cancel_reason_is_a_400_invalid_text_and_leaves_the_request_pending()
{
    let app = spawn_without_sagas().await;
    let id = pending_request(&app, 603).await;
    for action in ["decline", "cancel"] {
        refused_text(
            &app,
            &format!("{action} with a NUL in the reason"),
            post(
                &app,
                &format!("{REQUESTS}/{id}/{action}"),
                &json!({"reason": "no\u{0}"}),
            ),
            "reason",
        )
        .await;
    }
    assert_eq!(app.events_of("media_request", &id).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_nul_or_invalid_utf8_in_a_path_id_is_a_400_invalid_text_and_writes_nothing() {
    let app = spawn_without_sagas().await;
    let id = pending_request(&app, 603).await;
    for raw in ["%00", &format!("{id}%00"), "%FF", "%C3%28"] {
        for action in ACTIONS {
            refused_text(
                &app,
                &format!("{action} {raw}"),
                command(&app, raw, action),
                "path",
            )
            .await;
        }
        for path in [
            format!("{REQUESTS}/{raw}"),
            format!("{REQUESTS}/{raw}/history"),
        ] {
            refused_text(&app, &path, app.request(Method::GET, &path), "path").await;
        }
    }
    assert_eq!(app.events_of("media_request", &id).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_nul_or_invalid_utf8_in_a_query_parameter_is_a_400_invalid_text_naming_it() {
    let app = TestApp::spawn().await;
    pending_request(&app, 603).await;
    let cases = [
        ("a NUL in a value", "?status=pending%00", "status"),
        ("a NUL in a cursor", "?cursor=%00", "cursor"),
        ("a NUL in a name", "?sta%00tus=pending", "sta\\0tus"),
        ("a value that is not UTF-8", "?media_type=%FF", "media_type"),
        (
            "a NUL in min_position",
            "?min_position=1%00",
            "min_position",
        ),
    ];
    for (case, query, field) in cases {
        refused_text(
            &app,
            case,
            app.request(Method::GET, &format!("{REQUESTS}{query}")),
            field,
        )
        .await;
    }
    refused_text(
        &app,
        "a NUL in a command's query",
        post(&app, &format!("{REQUESTS}?x=%00"), &movie(604, "Heat")),
        "x",
    )
    .await;
    app.stop().await;
}

/// Sends `head` (a request without a body) over a new connection, for what reqwest will
/// not send; answers the status line's code and the whole answer.
async fn raw_answer(app: &TestApp, head: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the app");
    stream.write_all(head).await.expect("send the request");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer, got {answer:?}"));
    (status, answer)
}

#[tokio::test]
async fn an_idempotency_key_with_a_nul_or_not_visible_ascii_is_a_400_and_writes_nothing() {
    let app = spawn_without_sagas().await;
    let id = pending_request(&app, 603).await;
    let body = movie(604, "Heat");
    for (case, key) in [
        ("a key that is not ASCII", "schlüssel".as_bytes()),
        (
            "a key with a byte that is not UTF-8",
            b"key-\xff".as_slice(),
        ),
    ] {
        let key = reqwest::header::HeaderValue::from_bytes(key).expect("obs-text is sendable");
        refused(
            &app,
            &format!("submit, {case}"),
            post(&app, REQUESTS, &body).header("Idempotency-Key", key.clone()),
            400,
            "malformed-request",
        )
        .await;
        refused(
            &app,
            &format!("approve, {case}"),
            command(&app, &id, "approve").header("Idempotency-Key", key),
            400,
            "malformed-request",
        )
        .await;
    }
    // A NUL in a header never reaches MediaNest: hyper refuses the request line by line.
    let before = app.event_count().await;
    let head = format!(
        "POST {REQUESTS}/{id}/approve HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer \
         {token}\r\nIdempotency-Key: key-\0-1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        host = app.base_url.trim_start_matches("http://"),
        token = app.admin_token(),
    );
    let (status, answer) = raw_answer(&app, head.as_bytes()).await;
    assert_eq!(status, 400, "a NUL in Idempotency-Key: {answer}");
    assert_eq!(app.event_count().await, before, "no event written");
    // The control: the same request without the NUL approves.
    let (status, answer) = raw_answer(&app, head.replace('\0', "").as_bytes()).await;
    assert_eq!(status, 200, "the same request without the NUL: {answer}");
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_last_event_id_is_a_400_problem_and_writes_nothing() {
    let app = spawn_without_sagas().await;
    pending_request(&app, 603).await;
    let stream = |query: &str| app.request(Method::GET, &format!("/api/v1/stream{query}"));
    let header_cases = [
        ("text", "abc"),
        ("negative", "-1"),
        ("a fraction", "1.5"),
        ("beyond i64", "99999999999999999999"),
        ("two ids", "1, 2"),
        ("hexadecimal", "0x10"),
    ];
    for (case, value) in header_cases {
        refused(
            &app,
            &format!("Last-Event-ID {case}"),
            stream("").header("Last-Event-ID", value),
            400,
            "malformed-request",
        )
        .await;
        refused(
            &app,
            &format!("?last_event_id= {case}"),
            stream(&format!("?last_event_id={}", value.replace(' ', "%20"))),
            400,
            "malformed-request",
        )
        .await;
    }
    let not_ascii = reqwest::header::HeaderValue::from_bytes(b"1\xff").expect("obs-text");
    refused(
        &app,
        "Last-Event-ID not ASCII",
        stream("").header("Last-Event-ID", not_ascii),
        400,
        "malformed-request",
    )
    .await;
    for (case, query) in [
        ("a NUL", "?last_event_id=1%00"),
        ("not UTF-8", "?last_event_id=%FF"),
    ] {
        refused_text(
            &app,
            &format!("?last_event_id= {case}"),
            stream(query),
            "last_event_id",
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_64_kib_header_is_a_431_headers_too_large_and_writes_nothing() {
    let app = spawn_without_sagas().await;
    let id = pending_request(&app, 603).await;
    let huge = "x".repeat(64 * 1024);
    let body = movie(604, "Heat");
    for header in [
        "User-Agent",
        "X-Request-Id",
        "X-Correlation-Id",
        "traceparent",
        "Idempotency-Key",
        "X-Anything",
    ] {
        refused(
            &app,
            &format!("submit with a 64 KiB {header}"),
            post(&app, REQUESTS, &body).header(header, huge.as_str()),
            431,
            "headers-too-large",
        )
        .await;
    }
    let cases = [
        (
            "approve with a 64 KiB If-Match",
            command(&app, &id, "approve").header(IF_MATCH, huge.as_str()),
        ),
        (
            "a read with a 64 KiB X-Min-Position",
            app.request(Method::GET, REQUESTS)
                .header("X-Min-Position", huge.as_str()),
        ),
        (
            "the stream with a 64 KiB Last-Event-ID",
            app.request(Method::GET, "/api/v1/stream")
                .header("Last-Event-ID", huge.as_str()),
        ),
        (
            "a 64 KiB bearer token",
            app.http.get(app.url(REQUESTS)).bearer_auth(&huge),
        ),
        (
            "the Overseerr webhook with a 64 KiB Authorization",
            webhook(&app, Some(&huge), "{}"),
        ),
        (
            "eight 8,000-byte headers",
            (0..8).fold(app.request(Method::GET, REQUESTS), |request, n| {
                request.header(format!("x-part-{n}"), "y".repeat(8000))
            }),
        ),
    ];
    for (case, request) in cases {
        refused(&app, case, request, 431, "headers-too-large").await;
    }
    assert_eq!(app.events_of("media_request", &id).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_nul_in_the_overseerr_webhook_body_is_a_400_invalid_text_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let id = pending_request(&app, 603).await;
    let events = app.events_of("media_request", &id).await;
    let cases = [
        (
            "a NUL in notification_type",
            json!({"notification_type": "MEDIA_AVAILABLE\u{0}",
                   "media": {"media_type": "movie", "tmdbId": "603"}}),
            "notification_type",
        ),
        (
            "a NUL in the tmdbId",
            json!({"notification_type": "MEDIA_AVAILABLE",
                   "media": {"media_type": "movie", "tmdbId": "603\u{0}"}}),
            "media.tmdbId",
        ),
        (
            "a NUL in a field MediaNest ignores",
            json!({"notification_type": "MEDIA_AVAILABLE", "message": "\u{0}",
                   "media": {"media_type": "movie", "tmdbId": "603"}}),
            "message",
        ),
        (
            "a NUL in a key",
            json!({"notification_type": "MEDIA_AVAILABLE", "ex\u{0}tra": {}}),
            "ex\\0tra",
        ),
    ];
    for (case, body, field) in cases {
        refused_text(
            &app,
            case,
            webhook(&app, Some(WEBHOOK_SECRET), &body.to_string()),
            field,
        )
        .await;
    }
    assert_eq!(app.events_of("media_request", &id).await, events);
    app.stop().await;
}
