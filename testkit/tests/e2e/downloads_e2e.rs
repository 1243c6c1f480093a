//! End-to-end tests of issue 4's "Done when": real PostgreSQL, real NATS JetStream, the real
//! yt-dlp (against the local media server: an RSS feed is a playlist to its generic
//! extractor), and the PMS simulator.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use medianest_testkit::app::{TestApp, TestOptions, TestUser, PLEX_LIBRARY_KEY};
use medianest_testkit::media_server::{FeedItem, MediaServer};
use medianest_testkit::plex_sim::PmsSim;
use medianest_testkit::problem::assert_problem;
use reqwest::Method;
use serde_json::{json, Value};

/// An app with YouTube downloads on (a fresh downloads root, the local media server allowed).
pub async fn downloads_app() -> TestApp {
    TestApp::spawn_with(TestOptions {
        downloads: true,
        ..TestOptions::default()
    })
    .await
}

/// `POST /api/v1/downloads` as `user`.
async fn queue(app: &TestApp, user: &TestUser, body: &Value) -> reqwest::Response {
    app.request_as(&user.token, Method::POST, "/api/v1/downloads")
        .json(body)
        .send()
        .await
        .expect("POST reaches the app")
}

/// Polls the download's detail (as the admin) until `done` holds, at most `timeout`.
async fn wait_for_download(
    app: &TestApp,
    id: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let response = app.get(&format!("/api/v1/downloads/{id}")).await;
        if response.status() == 200 {
            last = response.json().await.expect("a JSON answer");
            if done(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("download {id} did not reach the expected state within {timeout:?}; last: {last}");
}

fn status_is(status: &'static str) -> impl Fn(&Value) -> bool {
    move |view: &Value| view["status"] == status
}

fn event_types(events: &[medianest_store::StoredEvent]) -> Vec<String> {
    events.iter().map(|e| e.event_type.clone()).collect()
}

/// Every regular file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap_or(&path);
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The library's files (outside MediaNest's hidden `.incomplete` and `.medianest` dirs).
fn library_files(root: &Path) -> Vec<String> {
    files_under(root)
        .into_iter()
        .filter(|f| !f.starts_with('.'))
        .collect()
}

/// Whether a process with `needle` in its command line is alive.
fn process_running(needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
            .unwrap_or(false)
    })
}

fn root(app: &TestApp) -> PathBuf {
    app.downloads_dir.clone().expect("downloads are on")
}

fn pms(app: &TestApp) -> &PmsSim {
    app.pms.as_ref().expect("a PMS simulator")
}

fn video_requests(media: &MediaServer) -> usize {
    media
        .received()
        .iter()
        .filter(|path| path.starts_with("/videos/"))
        .count()
}

#[tokio::test]
async fn a_playlist_lands_in_the_library_layout_with_progress_and_one_scan_and_is_not_downloaded_twice(
) {
    let app = downloads_app().await;
    let media = MediaServer::start().await;
    for name in ["one", "two", "three"] {
        // About 1.5 s each, so progress spans several throttle periods.
        media.add_slow_video(name, 96 * 1024, 8 * 1024, Duration::from_millis(120));
    }
    media.add_feed(
        "channel",
        "Test Channel",
        &[
            FeedItem::new("First Video", "vid-one", "one"),
            FeedItem::new("Second Video", "vid-two", "two"),
            FeedItem::new("Third Video", "vid-three", "three"),
        ],
    );
    let mut progress = app
        .nats
        .subscribe(app.subjects.progress("download", "*"))
        .await
        .expect("subscribe to progress");
    let user = app.sign_in_user("maria").await;

    let started_at = Instant::now();
    let response = queue(
        &app,
        &user,
        &json!({"url": media.feed_url("channel"), "quality": "720p", "container": "mp4"}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "queued");
    assert_eq!(answer["kind"], "playlist");
    let id = answer["id"].as_str().unwrap().to_string();

    let view = wait_for_download(&app, &id, Duration::from_secs(90), |v| {
        v["library_scan"]["status"] == "requested"
    })
    .await;
    let elapsed = started_at.elapsed();
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["kind"], "playlist");
    assert_eq!(view["quality"], "720p");
    assert_eq!(view["item_count"], 3, "{view}");
    assert_eq!(view["bytes"], 3 * 96 * 1024, "{view}");
    assert_eq!(view["total_items"], 3, "{view}");
    assert_eq!(view["attempt"], 1);
    let items = view["items"].as_array().expect("items in the detail");
    let paths: Vec<&str> = items.iter().map(|i| i["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "Test Channel/First Video [vid-one].mp4",
            "Test Channel/Second Video [vid-two].mp4",
            "Test Channel/Third Video [vid-three].mp4",
        ]
    );
    assert_eq!(items[1]["index"], 2);
    assert_eq!(items[1]["video_id"], "vid-two");

    // The files, byte for byte, in Plex's Personal Media layout; no partial file anywhere.
    let root = root(&app);
    for (title, guid, name) in [
        ("First Video", "vid-one", "one"),
        ("Second Video", "vid-two", "two"),
        ("Third Video", "vid-three", "three"),
    ] {
        let file = root.join(format!("Test Channel/{title} [{guid}].mp4"));
        assert_eq!(
            std::fs::read(&file).ok(),
            media.video_bytes(name),
            "{} holds the served bytes",
            file.display()
        );
    }
    assert_eq!(library_files(&root).len(), 3, "{:?}", files_under(&root));
    assert!(
        files_under(&root.join(".incomplete")).is_empty(),
        "partial files left: {:?}",
        files_under(&root)
    );

    // One scan of the download's folder, on the section found by type and title.
    let folder = root.join("Test Channel").to_string_lossy().into_owned();
    assert_eq!(
        pms(&app).refreshes(),
        vec![(PLEX_LIBRARY_KEY.to_string(), Some(folder.clone()))]
    );
    assert_eq!(view["library_scan"]["section_id"], PLEX_LIBRARY_KEY);
    assert_eq!(view["library_scan"]["path"], folder.as_str());

    let events = app.events_of("download", &id).await;
    assert_eq!(
        event_types(&events),
        [
            "queued",
            "started",
            "item_completed",
            "item_completed",
            "item_completed",
            "completed",
            "library_scan_requested"
        ]
    );
    assert_eq!(events[0].metadata["actor"], user.id.to_string());

    // Progress arrived on the progress subject, at most about one per second.
    let mut messages = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(200), progress.next()).await
    {
        assert_eq!(
            message.subject.as_str(),
            app.subjects.progress("download", &id)
        );
        messages.push(serde_json::from_slice::<Value>(&message.payload).unwrap());
    }
    assert!(!messages.is_empty(), "no progress message arrived");
    assert!(
        messages.len() as u64 <= elapsed.as_secs() + 2,
        "{} progress messages in {elapsed:?}: not throttled to one per second",
        messages.len()
    );
    for message in &messages {
        assert_eq!(message["download_id"], id.as_str());
        assert!(message["downloaded_bytes"].as_u64().is_some(), "{message}");
        assert!(
            ["vid-one", "vid-two", "vid-three"].contains(&message["video_id"].as_str().unwrap()),
            "{message}"
        );
    }

    // Queued again: the archive knows every item, nothing is downloaded or scanned. (The
    // feed's entries carry no id until their URL is opened, so yt-dlp opens each once, reads
    // the headers and skips it; a file written again would have a new modification time.)
    let fetched = video_requests(&media);
    let modified = |root: &Path| -> Vec<std::time::SystemTime> {
        library_files(root)
            .iter()
            .map(|f| std::fs::metadata(root.join(f)).unwrap().modified().unwrap())
            .collect()
    };
    let modified_before = modified(&root);
    let again = queue(&app, &user, &json!({"url": media.feed_url("channel")})).await;
    assert_eq!(again.status(), 202);
    let again: Value = again.json().await.unwrap();
    let again_id = again["id"].as_str().unwrap().to_string();
    assert_ne!(again_id, id);
    let view = wait_for_download(
        &app,
        &again_id,
        Duration::from_secs(60),
        status_is("completed"),
    )
    .await;
    assert_eq!(view["item_count"], 0, "{view}");
    assert_eq!(view["bytes"], 0);
    assert!(
        video_requests(&media) <= fetched + 3,
        "videos were fetched again: {:?}",
        media.received()
    );
    assert_eq!(library_files(&root).len(), 3);
    assert_eq!(modified(&root), modified_before, "a file was written again");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pms(&app).refreshes().len(), 1, "nothing new, no scan");
    assert_eq!(
        event_types(&app.events_of("download", &again_id).await),
        ["queued", "started", "completed"]
    );

    // The owner sees both downloads; the list filters by status.
    let list: Value = app
        .request_as(
            &user.token,
            Method::GET,
            "/api/v1/downloads?status=completed",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn a_cancel_mid_download_stops_yt_dlp_and_leaves_no_partial_file() {
    let app = downloads_app().await;
    let media = MediaServer::start().await;
    // About 20 s of streaming: the cancel comes long before the end.
    media.add_slow_video(
        "long",
        2 * 1024 * 1024,
        16 * 1024,
        Duration::from_millis(150),
    );
    let user = app.sign_in_user("paul").await;
    let url = media.video_url("long");
    let response = queue(&app, &user, &json!({"url": url})).await;
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["kind"], "video");
    let id = answer["id"].as_str().unwrap().to_string();

    // Running, with bytes on their way into the temp dir.
    let root = root(&app);
    let temp = root.join(".incomplete").join(&id);
    wait_for_download(&app, &id, Duration::from_secs(30), status_is("running")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_under(&temp).is_empty() {
        assert!(Instant::now() < deadline, "yt-dlp wrote nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(process_running(&url), "yt-dlp runs");

    let cancelled = app
        .request_as(
            &user.token,
            Method::POST,
            &format!("/api/v1/downloads/{id}/cancel"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    assert_eq!(
        cancelled.json::<Value>().await.unwrap()["status"],
        "cancelled"
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    while process_running(&url) || temp.exists() {
        assert!(
            Instant::now() < deadline,
            "yt-dlp still runs or its partial files remain: {:?}",
            files_under(&root)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(files_under(&root.join(".incomplete")).is_empty());
    assert!(
        library_files(&root).is_empty(),
        "{:?}",
        library_files(&root)
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        event_types(&app.events_of("download", &id).await),
        ["queued", "started", "cancelled"]
    );

    // A finished download cannot be cancelled again.
    let again = app
        .request_as(
            &user.token,
            Method::POST,
            &format!("/api/v1/downloads/{id}/cancel"),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(
        "cancel of a cancelled download",
        again,
        409,
        "illegal-transition",
    )
    .await;
    assert_eq!(problem.body["download_status"], "cancelled");
}

#[tokio::test]
async fn a_missing_playlist_item_fails_the_download_with_a_clear_error() {
    let app = downloads_app().await;
    let media = MediaServer::start().await;
    media.add_video("here", 40 * 1024);
    media.add_video("also-here", 30 * 1024);
    media.add_feed(
        "broken",
        "Broken Channel",
        &[
            FeedItem::new("Present", "p1", "here"),
            FeedItem::new("Gone", "g1", "not-served"),
            FeedItem::new("Present Too", "p2", "also-here"),
        ],
    );
    let user = app.sign_in_user("ines").await;
    let response = queue(&app, &user, &json!({"url": media.feed_url("broken")})).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let view = wait_for_download(&app, &id, Duration::from_secs(60), status_is("failed")).await;
    let error = view["error"].as_str().unwrap();
    assert!(error.contains("404"), "{error}");
    assert!(error.contains("g1"), "the error names the item: {error}");
    assert_eq!(view["retryable"], false);
    // The items that exist are in the library; nothing partial is left.
    assert_eq!(view["item_count"], 2, "{view}");
    let root = root(&app);
    assert_eq!(
        library_files(&root),
        [
            "Broken Channel/Present Too [p2].mp4",
            "Broken Channel/Present [p1].mp4"
        ]
    );
    assert!(files_under(&root.join(".incomplete")).is_empty());
    let events = app.events_of("download", &id).await;
    assert_eq!(
        event_types(&events),
        [
            "queued",
            "started",
            "item_completed",
            "item_completed",
            "failed"
        ]
    );
    // No scan for a failed download.
    assert!(pms(&app).refreshes().is_empty());
}

#[tokio::test]
async fn a_worker_crash_mid_download_is_retried_cleanly_without_a_duplicate_file() {
    let mut app = downloads_app().await;
    let media = MediaServer::start().await;
    media.add_video("quick", 20 * 1024);
    media.add_slow_video("slow", 512 * 1024, 16 * 1024, Duration::from_millis(100));
    media.add_feed(
        "mixed",
        "Mixed Channel",
        &[
            FeedItem::new("Quick", "q1", "quick"),
            FeedItem::new("Slow", "s1", "slow"),
        ],
    );
    let user = app.sign_in_user("lena").await;
    let response = queue(&app, &user, &json!({"url": media.feed_url("mixed")})).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The first item is in the library, the second half-way.
    wait_for_download(&app, &id, Duration::from_secs(30), |v| v["item_count"] == 1).await;
    let temp = root(&app).join(".incomplete").join(&id);
    let deadline = Instant::now() + Duration::from_secs(20);
    while files_under(&temp).is_empty() {
        assert!(Instant::now() < deadline, "the second item never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    app.crash_and_restart().await;

    let view = wait_for_download(&app, &id, Duration::from_secs(90), |v| {
        v["status"] == "completed" && !v["library_scan"].is_null()
    })
    .await;
    assert_eq!(view["attempt"], 2, "{view}");
    let root = root(&app);
    assert_eq!(
        library_files(&root),
        [
            "Mixed Channel/Quick [q1].mp4",
            "Mixed Channel/Slow [s1].mp4"
        ]
    );
    let landed = std::fs::read(root.join("Mixed Channel/Slow [s1].mp4")).unwrap();
    assert!(
        Some(&landed) == media.video_bytes("slow").as_ref(),
        "the restarted item is not the served file ({} bytes)",
        landed.len()
    );
    assert!(files_under(&root.join(".incomplete")).is_empty());
    let types = event_types(&app.events_of("download", &id).await);
    assert_eq!(
        types.iter().filter(|t| *t == "started").count(),
        2,
        "{types:?}"
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some("library_scan_requested"),
        "{types:?}"
    );
}

#[tokio::test]
async fn urls_off_the_allow_list_are_refused_before_anything_runs() {
    let app = downloads_app().await;
    let media = MediaServer::start().await;
    media.add_video("clip", 10 * 1024);
    let port = media.base_url().rsplit(':').next().unwrap().to_string();
    let user = app.sign_in_user("omar").await;
    let redirect_to = |target: &str| {
        let mut url = reqwest::Url::parse(&media.url("/redirect")).unwrap();
        url.query_pairs_mut().append_pair("to", target);
        url.to_string()
    };
    let cases = [
        (
            "file URL",
            "file:///etc/passwd".to_string(),
            "validation-failed",
        ),
        (
            "other host",
            "https://example.com/watch?v=x".to_string(),
            "validation-failed",
        ),
        (
            "private address literal",
            format!("http://10.0.0.8:{port}/videos/clip.mp4"),
            "validation-failed",
        ),
        (
            "credentials",
            format!("http://user:pw@127.0.0.1:{port}/videos/clip.mp4"),
            "validation-failed",
        ),
        (
            "name resolving to loopback",
            format!("http://localhost:{port}/videos/clip.mp4"),
            "download-url-refused",
        ),
        (
            "redirect off the list",
            redirect_to("https://example.com/video.mp4"),
            "download-url-refused",
        ),
        (
            "redirect to a file URL",
            redirect_to("file:///etc/passwd"),
            "download-url-refused",
        ),
        (
            "redirect to a private name",
            redirect_to(&format!("http://localhost:{port}/videos/clip.mp4")),
            "download-url-refused",
        ),
    ];
    for (case, url, slug) in cases {
        let response = queue(&app, &user, &json!({"url": url})).await;
        let problem = assert_problem(case, response, 422, slug).await;
        assert_eq!(problem.body["field"], "url", "{case}");
    }
    assert_eq!(video_requests(&media), 0, "a refused URL was fetched");
    let downloads: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'download'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(downloads, 0, "a refused URL wrote events");
    let ledger: i64 = sqlx::query_scalar("SELECT count(*) FROM download_ledger")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(ledger, 0);
    // A redirect that stays on the list is followed and accepted.
    let response = queue(
        &app,
        &user,
        &json!({"url": redirect_to(&media.video_url("clip"))}),
    )
    .await;
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn a_plex_library_new_webhook_marks_the_matching_request_available() {
    let app = downloads_app().await;
    let matrix = app.submit_movie(603, "The Matrix").await;
    let id = matrix["id"].as_str().unwrap();
    let approved = app
        .post_empty(&format!("/api/v1/requests/{id}/approve"))
        .await;
    assert_eq!(approved.status(), 200);
    app.wait_for_status(id, "forwarded", Duration::from_secs(15))
        .await;
    let other = app.submit_movie(604, "The Matrix Reloaded").await;

    let url = app.url(&format!(
        "/api/v1/webhooks/plex/{}",
        medianest_testkit::app::PLEX_WEBHOOK_SECRET
    ));
    // An event that is not library.new is accepted and ignored.
    let play = json!({"event": "media.play", "Metadata": {"type": "movie", "Guid": [{"id": "tmdb://603"}]}});
    let response = pms(&app).send_webhook(&url, &play, None).await;
    assert_eq!(response.status(), 204);

    let payload = PmsSim::library_new_payload(
        "movie",
        "The Matrix",
        Some(1999),
        "5012",
        &["imdb://tt0133093", "tmdb://603"],
    );
    let response = pms(&app)
        .send_webhook(&url, &payload, Some("application/json"))
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["updated"][0]["id"], id);
    assert_eq!(body["updated"][0]["status"], "available");
    let view = app
        .wait_for_status(id, "available", Duration::from_secs(10))
        .await;
    assert_eq!(view["status"], "available");
    let events = app.events_of("media_request", id).await;
    let available = events.last().unwrap();
    assert_eq!(available.event_type, "available");
    assert_eq!(available.payload["available"]["source"], "plex");
    assert_eq!(available.payload["available"]["plex_rating_key"], "5012");
    assert_eq!(available.metadata["actor"], "system:plex-webhook");

    // Without a part content type, as some PMS versions send it: the same result.
    let other_id = other["id"].as_str().unwrap();
    app.post_empty(&format!("/api/v1/requests/{other_id}/approve"))
        .await;
    app.wait_for_status(other_id, "forwarded", Duration::from_secs(15))
        .await;
    let payload = PmsSim::library_new_payload(
        "movie",
        "The Matrix Reloaded",
        Some(2003),
        "5013",
        &["tmdb://604"],
    );
    // With a poster as large as real ones (300 KiB) after the payload part.
    let boundary = "------------------------d41d8cd98f00b204";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"payload\"\r\n\r\n{payload}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"thumb\"; filename=\"image.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend(std::iter::repeat_n(0xa5u8, 300 * 1024));
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let response = app
        .http
        .post(&url)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    app.wait_for_status(other_id, "available", Duration::from_secs(10))
        .await;
}
