//! Issue 4's bad input: every refusal is a problem+json with a stable type, writes no event
//! and starts no yt-dlp download (the media server is asked for no video).

use std::time::{Duration, Instant};

use medianest_testkit::app::{TestApp, TestOptions, PLEX_WEBHOOK_SECRET};
use medianest_testkit::media_server::{FeedItem, MediaServer};
use medianest_testkit::plex_sim::PmsSim;
use medianest_testkit::problem::assert_problem;
use reqwest::Method;
use serde_json::{json, Value};

async fn app_with(limit: u32) -> TestApp {
    TestApp::spawn_with(TestOptions {
        downloads: true,
        download_limit_per_hour: limit,
        playlist_max_items: 3,
        ..TestOptions::default()
    })
    .await
}

async fn download_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'download'")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

fn video_requests(media: &MediaServer) -> usize {
    media
        .received()
        .iter()
        .filter(|path| path.starts_with("/videos/"))
        .count()
}

#[tokio::test]
async fn malformed_queue_requests_are_refused_with_nothing_written_or_run() {
    let app = app_with(5).await;
    let media = MediaServer::start().await;
    media.add_video("clip", 10 * 1024);
    for n in 0..4 {
        media.add_video(&format!("v{n}"), 1024);
    }
    let items: Vec<FeedItem> = (0..4)
        .map(|n| FeedItem::new(&format!("Video {n}"), &format!("g{n}"), &format!("v{n}")))
        .collect();
    media.add_feed("big", "Big Channel", &items);
    let user = app.sign_in_user("bob").await;
    let clip = media.video_url("clip");
    let post = |body: String, content_type: &'static str| {
        app.request_as(&user.token, Method::POST, "/api/v1/downloads")
            .header("content-type", content_type)
            .body(body)
    };
    let json_cases: [(&str, Value, u16, &str, Option<&str>); 9] = [
        (
            "not a URL",
            json!({"url": "not a url"}),
            422,
            "validation-failed",
            Some("url"),
        ),
        (
            "no host",
            json!({"url": "http://"}),
            422,
            "validation-failed",
            Some("url"),
        ),
        (
            "backslash",
            json!({"url": "http://127.0.0.1\\@example.com/"}),
            422,
            "validation-failed",
            Some("url"),
        ),
        (
            "unsupported quality",
            json!({"url": clip, "quality": "4k"}),
            422,
            "validation-failed",
            Some("quality"),
        ),
        (
            "unsupported container",
            json!({"url": clip, "container": "avi"}),
            422,
            "validation-failed",
            Some("container"),
        ),
        (
            "playlist over the cap",
            json!({"url": media.feed_url("big")}),
            422,
            "playlist-too-large",
            Some("url"),
        ),
        (
            "a missing URL",
            json!({"quality": "best"}),
            400,
            "malformed-request",
            None,
        ),
        (
            "an unknown field",
            json!({"url": clip, "kind": "video"}),
            400,
            "malformed-request",
            None,
        ),
        (
            "a URL that is a number",
            json!({"url": 42}),
            400,
            "malformed-request",
            None,
        ),
    ];
    for (case, body, status, slug, field) in json_cases {
        let response = post(body.to_string(), "application/json")
            .send()
            .await
            .unwrap();
        let problem = assert_problem(case, response, status, slug).await;
        if let Some(field) = field {
            assert_eq!(problem.body["field"], field, "{case}");
        }
    }
    let response = post("url=x".to_string(), "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_problem("form body", response, 415, "unsupported-media-type").await;
    let response = post("{\"url\":".to_string(), "application/json")
        .send()
        .await
        .unwrap();
    assert_problem("truncated JSON", response, 400, "malformed-request").await;
    let response = post("[\"x\"]".to_string(), "application/json")
        .send()
        .await
        .unwrap();
    assert_problem("a JSON array", response, 400, "malformed-request").await;

    let problem = {
        let response = post(
            json!({"url": media.feed_url("big")}).to_string(),
            "application/json",
        )
        .send()
        .await
        .unwrap();
        assert_problem(
            "playlist over the cap, again",
            response,
            422,
            "playlist-too-large",
        )
        .await
    };
    assert_eq!(problem.body["items"], 4);
    assert_eq!(problem.body["max_items"], 3);

    assert_eq!(download_events(&app).await, 0);
    assert_eq!(
        video_requests(&media),
        0,
        "a refused request started a download"
    );
}

#[tokio::test]
async fn commands_on_downloads_that_are_not_yours_or_finished_are_refused() {
    let app = app_with(5).await;
    let media = MediaServer::start().await;
    media.add_video("clip", 8 * 1024);
    let owner = app.sign_in_user("carla").await;
    let other = app.sign_in_user("dave").await;
    let response = app
        .request_as(&owner.token, Method::POST, "/api/v1/downloads")
        .json(&json!({"url": media.video_url("clip")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view: Value = app
            .get(&format!("/api/v1/downloads/{id}"))
            .await
            .json()
            .await
            .unwrap_or(Value::Null);
        // Completed and scanned: no saga writes to it any more.
        if view["status"] == "completed" && !view["library_scan"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "not completed: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events_before = download_events(&app).await;
    let command = |token: &str, path: String| app.request_as(token, Method::POST, &path).send();
    let cases = [
        (
            "cancel a completed download",
            owner.token.clone(),
            format!("/api/v1/downloads/{id}/cancel"),
            409,
            "illegal-transition",
        ),
        (
            "retry a completed download",
            owner.token.clone(),
            format!("/api/v1/downloads/{id}/retry"),
            409,
            "illegal-transition",
        ),
        (
            "cancel another user's download",
            other.token.clone(),
            format!("/api/v1/downloads/{id}/cancel"),
            404,
            "not-found",
        ),
        (
            "an unknown id",
            owner.token.clone(),
            format!("/api/v1/downloads/{}/cancel", uuid::Uuid::now_v7()),
            404,
            "not-found",
        ),
        (
            "a malformed id",
            owner.token.clone(),
            "/api/v1/downloads/nope/cancel".to_string(),
            404,
            "not-found",
        ),
        (
            "an unknown command",
            owner.token.clone(),
            format!("/api/v1/downloads/{id}/pause"),
            404,
            "not-found",
        ),
    ];
    for (case, token, path, status, slug) in cases {
        let response = command(&token, path).await.unwrap();
        assert_problem(case, response, status, slug).await;
    }
    // Another user's download is invisible on the query side too.
    let response = app
        .request_as(
            &other.token,
            Method::GET,
            &format!("/api/v1/downloads/{id}"),
        )
        .send()
        .await
        .unwrap();
    assert_problem("another user's download", response, 404, "not-found").await;
    let list: Value = app
        .request_as(&other.token, Method::GET, "/api/v1/downloads")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
    let response = app.get("/api/v1/downloads?status=paused").await;
    assert_problem(
        "an unknown status filter",
        response,
        400,
        "malformed-request",
    )
    .await;
    assert_eq!(download_events(&app).await, events_before);
}

#[tokio::test]
async fn the_per_user_limit_and_duplicate_urls_are_refused_before_anything_runs() {
    let app = app_with(2).await;
    let media = MediaServer::start().await;
    media.add_slow_video("slow", 1024 * 1024, 8 * 1024, Duration::from_millis(200));
    media.add_video("a", 1024);
    media.add_video("b", 1024);
    let user = app.sign_in_user("erin").await;
    let queue = |url: String| {
        app.request_as(&user.token, Method::POST, "/api/v1/downloads")
            .json(&json!({"url": url}))
            .send()
    };
    let first = queue(media.video_url("slow")).await.unwrap();
    assert_eq!(first.status(), 202);
    let first_id = first.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The same URL while it is queued or running.
    let response = queue(media.video_url("slow")).await.unwrap();
    let problem = assert_problem("the same URL again", response, 409, "duplicate-download").await;
    assert_eq!(problem.body["existing_download_id"], first_id.as_str());

    let second = queue(media.video_url("a")).await.unwrap();
    assert_eq!(second.status(), 202);
    let response = queue(media.video_url("b")).await.unwrap();
    let problem = assert_problem(
        "a third in the hour",
        response,
        429,
        "download-limit-exceeded",
    )
    .await;
    assert_eq!(problem.body["limit"], 2);
    assert_eq!(problem.body["used"], 2);
    let next_slot = problem.body["next_slot_at"].as_str().expect("next_slot_at");
    let next_slot = chrono::DateTime::parse_from_rfc3339(next_slot).unwrap();
    let in_an_hour = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(
        next_slot <= in_an_hour && next_slot > chrono::Utc::now() + chrono::Duration::minutes(55)
    );
    let retry_after = problem.retry_after.expect("Retry-After");
    assert!((3000..=3600).contains(&retry_after), "{retry_after}");
    // The other downloads run meanwhile: count what the refusals could have written.
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'download' AND event_type = 'queued'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(queued, 2, "a refused download was queued");
    assert!(
        !media
            .received()
            .iter()
            .any(|path| path.contains("/videos/b.mp4")),
        "the refused download was fetched"
    );

    // Admins are exempt.
    let response = app
        .post_json("/api/v1/downloads", &json!({"url": media.video_url("b")}))
        .await;
    assert_eq!(response.status(), 202);

    // Cancelled, the slow one's URL may be queued again (a retry does not count against the
    // limit, but a new download would).
    let cancelled = app
        .request_as(
            &user.token,
            Method::POST,
            &format!("/api/v1/downloads/{first_id}/cancel"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    let retried = app
        .request_as(
            &user.token,
            Method::POST,
            &format!("/api/v1/downloads/{first_id}/retry"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    assert_eq!(retried.json::<Value>().await.unwrap()["status"], "queued");
    let cancelled = app
        .request_as(
            &user.token,
            Method::POST,
            &format!("/api/v1/downloads/{first_id}/cancel"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
}

#[tokio::test]
async fn plex_webhooks_with_a_wrong_secret_or_body_are_refused_with_nothing_written() {
    let app = app_with(5).await;
    let request = app.submit_movie(603, "The Matrix").await;
    let id = request["id"].as_str().unwrap();
    let pms = app.pms.as_ref().unwrap();
    let payload =
        PmsSim::library_new_payload("movie", "The Matrix", Some(1999), "1", &["tmdb://603"]);
    let good_url = app.url(&format!("/api/v1/webhooks/plex/{PLEX_WEBHOOK_SECRET}"));
    let events_before = app.events_of("media_request", id).await.len();

    let response = pms
        .send_webhook(
            &app.url("/api/v1/webhooks/plex/wrong-secret"),
            &payload,
            None,
        )
        .await;
    assert_problem("wrong secret", response, 401, "webhook-unauthenticated").await;

    let post = |content_type: &str, body: Vec<u8>| {
        app.http
            .post(&good_url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = post("application/json", payload.to_string().into_bytes())
        .await
        .unwrap();
    assert_problem(
        "JSON, not multipart",
        response,
        415,
        "unsupported-media-type",
    )
    .await;
    let response = post("multipart/form-data", b"--x\r\n".to_vec())
        .await
        .unwrap();
    assert_problem(
        "multipart without a boundary",
        response,
        400,
        "malformed-request",
    )
    .await;
    let body =
        b"--b\r\nContent-Disposition: form-data; name=\"thumb\"\r\n\r\nxx\r\n--b--\r\n".to_vec();
    let response = post("multipart/form-data; boundary=b", body).await.unwrap();
    assert_problem("no payload part", response, 400, "malformed-request").await;
    let body =
        b"--b\r\nContent-Disposition: form-data; name=\"payload\"\r\n\r\n{not json\r\n--b--\r\n"
            .to_vec();
    let response = post("multipart/form-data; boundary=b", body).await.unwrap();
    assert_problem(
        "a payload that is not JSON",
        response,
        400,
        "malformed-request",
    )
    .await;
    // Well-formed (with PMS's thumb part), but for a title nobody requested: ignored.
    let unrequested =
        PmsSim::library_new_payload("movie", "Heat", Some(1995), "2", &["tmdb://949"]);
    let (content_type, body) = PmsSim::webhook_multipart(&unrequested, None, true);
    let response = post(&content_type, body).await.unwrap();
    assert_eq!(response.status(), 204);

    assert_eq!(
        app.events_of("media_request", id).await.len(),
        events_before
    );
}

/// Asserts a 400 `invalid-text` problem naming `field`.
async fn assert_invalid_text(case: &str, response: reqwest::Response, field: &str) {
    let problem = assert_problem(case, response, 400, "invalid-text").await;
    assert_eq!(problem.body["field"], field, "{case}: {}", problem.body);
}

#[tokio::test]
async fn a_nul_in_a_download_url_id_or_listing_is_a_400_invalid_text_with_nothing_written() {
    let app = app_with(5).await;
    let media = MediaServer::start().await;
    media.add_video("clip", 1024);
    let user = app.sign_in_user("bob").await;
    let before = app.event_count().await;
    let url = media.video_url("clip");
    let cases = [
        (
            "a NUL in the URL",
            app.request_as(&user.token, Method::POST, "/api/v1/downloads")
                .json(&json!({"url": format!("{url}\u{0}")})),
            "url",
        ),
        (
            "a NUL in the quality",
            app.request_as(&user.token, Method::POST, "/api/v1/downloads")
                .json(&json!({"url": url, "quality": "\u{0}"})),
            "quality",
        ),
        (
            "a NUL as the download id",
            app.request_as(&user.token, Method::POST, "/api/v1/downloads/%00/cancel"),
            "path",
        ),
        (
            "a NUL in requested_by",
            app.request(Method::GET, "/api/v1/downloads?requested_by=%00"),
            "requested_by",
        ),
        (
            "a NUL inside requested_by",
            app.request(
                Method::GET,
                &format!("/api/v1/downloads?requested_by=user:{}%00", user.id),
            ),
            "requested_by",
        ),
        (
            "requested_by that is not UTF-8",
            app.request(Method::GET, "/api/v1/downloads?requested_by=%C3"),
            "requested_by",
        ),
        (
            "a NUL in a download id to read",
            app.request(Method::GET, "/api/v1/downloads/%00"),
            "path",
        ),
    ];
    for (case, request, field) in cases {
        assert_invalid_text(case, request.send().await.unwrap(), field).await;
    }
    assert_eq!(app.event_count().await, before, "no event written");
    assert_eq!(video_requests(&media), 0, "no download started");
    // The control: a requested_by without a NUL lists (nothing yet).
    let response = app.get("/api/v1/downloads?requested_by=nobody").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_plex_webhook_whose_payload_holds_a_nul_is_a_400_invalid_text_with_nothing_written() {
    let app = app_with(5).await;
    let request = app.submit_movie(603, "The Matrix").await;
    let id = request["id"].as_str().unwrap();
    let url = app.url(&format!("/api/v1/webhooks/plex/{PLEX_WEBHOOK_SECRET}"));
    let events_before = app.events_of("media_request", id).await.len();
    let payload =
        || PmsSim::library_new_payload("movie", "The Matrix", Some(1999), "1", &["tmdb://603"]);
    let with = |pointer: &str, value: Value| {
        let mut payload = payload();
        *payload
            .pointer_mut(pointer)
            .expect("the simulator's payload has it") = value;
        payload
    };
    let mut nul_key = payload();
    nul_key["Metadata"]["ti\u{0}tle"] = json!("x");
    let cases = [
        (
            "a NUL in the ratingKey",
            with("/Metadata/ratingKey", json!("1\u{0}")),
            "Metadata.ratingKey",
        ),
        (
            "a NUL in a guid",
            with("/Metadata/Guid/0/id", json!("tmdb://603\u{0}")),
            "Metadata.Guid.0.id",
        ),
        ("a NUL in a key", nul_key, "Metadata.ti\\0tle"),
    ];
    for (case, payload, field) in cases {
        let (content_type, body) = PmsSim::webhook_multipart(&payload, None, true);
        let response = app
            .http
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_invalid_text(case, response, field).await;
    }
    assert_eq!(
        app.events_of("media_request", id).await.len(),
        events_before
    );
    // The control: the same payload without the NUL marks the request available.
    let (content_type, body) = PmsSim::webhook_multipart(&payload(), None, true);
    let response = app
        .http
        .post(&url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}
