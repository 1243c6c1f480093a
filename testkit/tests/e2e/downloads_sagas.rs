//! The downloader's live progress in the query API, and the Plex scanner's retries and
//! failures (issue 4, items 2, 4 and 5).

use std::time::{Duration, Instant};

use medianest_testkit::app::{TestApp, TestOptions, PLEX_LIBRARY_KEY};
use medianest_testkit::media_server::MediaServer;
use serde_json::{json, Value};

async fn downloads_app() -> TestApp {
    TestApp::spawn_with(TestOptions {
        downloads: true,
        ..TestOptions::default()
    })
    .await
}

async fn queue_video(app: &TestApp, url: &str) -> String {
    let response = app
        .post_json("/api/v1/downloads", &json!({"url": url}))
        .await;
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn wait_for(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let response = app.get(&format!("/api/v1/downloads/{id}")).await;
        if response.status() == 200 {
            last = response.json().await.unwrap();
            if done(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("download {id}: {what} did not happen; last: {last}");
}

#[tokio::test]
async fn a_running_download_shows_its_current_progress_and_a_finished_one_none() {
    let app = downloads_app().await;
    let media = MediaServer::start().await;
    media.add_slow_video("steady", 640 * 1024, 16 * 1024, Duration::from_millis(100));
    let id = queue_video(&app, &media.video_url("steady")).await;

    let view = wait_for(&app, &id, "progress while running", |v| {
        v["status"] == "running" && v["progress"]["downloaded_bytes"].as_u64().is_some()
    })
    .await;
    let progress = &view["progress"];
    assert_eq!(progress["download_id"], id.as_str());
    assert_eq!(progress["video_id"], "steady");
    assert_eq!(progress["total_bytes"], 640 * 1024);
    assert_eq!(progress["items_completed"], 0);
    assert!(progress["downloaded_bytes"].as_u64().unwrap() <= 640 * 1024);

    let view = wait_for(&app, &id, "completion", |v| v["status"] == "completed").await;
    assert!(view.get("progress").is_none(), "{view}");
    assert_eq!(view["items"][0]["path"], "Unsorted/steady [steady].mp4");
    assert_eq!(view["items"][0]["bytes"], 640 * 1024);
}

#[tokio::test]
async fn the_plex_scan_is_retried_through_transient_failures_and_recorded_once() {
    let app = downloads_app().await;
    let pms = app.pms.as_ref().unwrap();
    pms.fail_refreshes(2, 503);
    let media = MediaServer::start().await;
    media.add_video("clip", 16 * 1024);
    let id = queue_video(&app, &media.video_url("clip")).await;

    let view = wait_for(&app, &id, "a scan", |v| !v["library_scan"].is_null()).await;
    assert_eq!(view["library_scan"]["status"], "requested", "{view}");
    let folder = app.downloads_dir.as_ref().unwrap().join("Unsorted");
    assert_eq!(
        pms.refreshes(),
        vec![(
            PLEX_LIBRARY_KEY.to_string(),
            Some(folder.to_string_lossy().into_owned())
        )]
    );
    let refresh_calls = pms
        .received()
        .iter()
        .filter(|r| r.path.contains("/refresh"))
        .count();
    assert_eq!(refresh_calls, 3, "two failures, then the scan");
    let types: Vec<String> = app
        .events_of("download", &id)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types
            .iter()
            .filter(|t| t.starts_with("library_scan"))
            .count(),
        1,
        "{types:?}"
    );
}

#[tokio::test]
async fn a_missing_plex_library_is_recorded_as_a_failed_scan() {
    // MediaNest looks for a "Kids Videos" library of type movie; Plex has only a *show*
    // library of that title (and the YouTube one).
    let app = TestApp::spawn_with(TestOptions {
        downloads: true,
        plex_library: "Kids Videos".to_string(),
        ..TestOptions::default()
    })
    .await;
    let pms = app.pms.as_ref().unwrap();
    pms.add_section("9", "kids videos", "show", "/data/kids");
    let media = MediaServer::start().await;
    media.add_video("clip", 8 * 1024);
    let id = queue_video(&app, &media.video_url("clip")).await;

    let view = wait_for(&app, &id, "a scan outcome", |v| {
        !v["library_scan"].is_null()
    })
    .await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["library_scan"]["status"], "failed", "{view}");
    let error = view["library_scan"]["error"].as_str().unwrap();
    assert!(error.contains("Kids Videos"), "{error}");
    assert!(pms.refreshes().is_empty(), "no section was refreshed");
    let last = app.events_of("download", &id).await.pop().unwrap();
    assert_eq!(last.event_type, "library_scan_failed");
}
