//! Contract tests: MediaNest's yt-dlp runner (`medianest_integrations::ytdlp`) driving the real
//! yt-dlp against the local media server of `medianest_testkit::media_server`
//! (docs/design.md §3 "Download", §6 "YouTube downloader", §8). No ffmpeg is needed.
//!
//! Each test has its own downloads root under the system temp dir, removed at the end.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use medianest_integrations::ytdlp::{
    DoneItem, DownloadJob, Finished, ProbeMode, ProbedKind, Progress, RunEvent, RunningDownload,
    YtDlp, YtDlpConfig, YtDlpError,
};
use medianest_testkit::media_server::{FeedItem, MediaServer};
use uuid::Uuid;

/// Upper bound for any one run, so a hung yt-dlp fails the test instead of blocking it.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// A fresh downloads root, removed on drop.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("medianest-ytdlp-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the temp downloads root");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn runner(root: &TempRoot) -> YtDlp {
    YtDlp::new(YtDlpConfig {
        program: PathBuf::from("yt-dlp"),
        downloads_root: root.path().to_path_buf(),
        probe_timeout: Duration::from_secs(30),
        proxy: None,
    })
}

fn job(url: String, playlist: bool) -> DownloadJob {
    DownloadJob {
        id: Uuid::now_v7().to_string(),
        url,
        playlist,
        max_height: Some(1080),
        container: "mp4".to_owned(),
        max_downloads: None,
    }
}

/// Reads every event, then waits.
async fn run_to_end(mut running: RunningDownload) -> (Vec<RunEvent>, Result<Finished, YtDlpError>) {
    tokio::time::timeout(RUN_LIMIT, async move {
        let mut events = Vec::new();
        while let Some(event) = running.next_event().await {
            events.push(event);
        }
        (events, running.wait().await)
    })
    .await
    .expect("yt-dlp finished in time")
}

fn done_items(events: &[RunEvent]) -> Vec<&DoneItem> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEvent::ItemDone(item) => Some(item),
            RunEvent::Progress(_) => None,
        })
        .collect()
}

fn archive_lines(yt: &YtDlp) -> Vec<String> {
    std::fs::read_to_string(yt.downloads_root().join(".medianest/archive.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn video_requests(server: &MediaServer) -> Vec<String> {
    server
        .received()
        .into_iter()
        .filter(|p| p.starts_with("/videos/"))
        .collect()
}

/// A server with videos `a`, `b`, `c` (5 000, 70 000 and 150 000 bytes) and feed `three`
/// ("Garden Diaries") listing them in that order.
async fn three_item_feed() -> MediaServer {
    let server = MediaServer::start().await;
    server.add_video("a", 5_000);
    server.add_video("b", 70_000);
    server.add_video("c", 150_000);
    server.add_feed(
        "three",
        "Garden Diaries",
        &[
            FeedItem::new("Planting Tomatoes", "vid-a", "a"),
            FeedItem::new("Pruning Roses", "vid-b", "b"),
            FeedItem::new("Winter Mulch", "vid-c", "c"),
        ],
    );
    server
}

/// The expected (guid, title, video) of [`three_item_feed`], in order.
const THREE: [(&str, &str, &str); 3] = [
    ("vid-a", "Planting Tomatoes", "a"),
    ("vid-b", "Pruning Roses", "b"),
    ("vid-c", "Winter Mulch", "c"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_downloads_every_item_into_the_playlist_folder() {
    let server = three_item_feed().await;
    let root = TempRoot::new();
    let yt = runner(&root);
    let job = job(server.feed_url("three"), true);

    let (events, outcome) = run_to_end(yt.spawn(&job).expect("spawn yt-dlp")).await;
    assert_eq!(outcome, Ok(Finished::Success));

    let done = done_items(&events);
    assert_eq!(done.len(), 3, "one ItemDone per item: {events:#?}");
    for (n, ((guid, title, video), item)) in THREE.iter().zip(&done).enumerate() {
        let expected_rel = format!("Garden Diaries/{title} [{guid}].mp4");
        assert_eq!(item.video_id, *guid);
        assert_eq!(item.title, *title);
        assert_eq!(item.relative_path, expected_rel);
        assert_eq!(item.folder, "Garden Diaries");
        assert_eq!(item.path, yt.downloads_root().join(&expected_rel));
        assert!(item.path.is_absolute());
        assert_eq!(item.index, n as u32 + 1);
        assert_eq!(item.total, Some(3));
        let served = server.video_bytes(video).unwrap();
        assert_eq!(item.bytes, served.len() as u64);
        assert_eq!(std::fs::read(&item.path).unwrap(), served, "{expected_rel}");

        // Progress for this item comes before its ItemDone and ends at its size.
        let done_at = events
            .iter()
            .position(|e| matches!(e, RunEvent::ItemDone(d) if d.video_id == *guid))
            .unwrap();
        let progress: Vec<&Progress> = events[..done_at]
            .iter()
            .filter_map(|e| match e {
                RunEvent::Progress(p) if p.video_id == *guid => Some(p),
                _ => None,
            })
            .collect();
        assert!(!progress.is_empty(), "no progress for {guid}");
        let last = progress.last().unwrap();
        assert_eq!(last.downloaded_bytes, served.len() as u64);
        assert_eq!(last.total_bytes, Some(served.len() as u64));
    }
    assert!(!yt
        .downloads_root()
        .join(".incomplete")
        .join(&job.id)
        .exists());
    let archive = archive_lines(&yt);
    assert_eq!(archive.len(), 3, "{archive:?}");
    for (guid, _, _) in THREE {
        assert!(archive.iter().any(|l| l.ends_with(guid)), "{archive:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stops_early_at_its_download_cap() {
    let server = three_item_feed().await;
    let root = TempRoot::new();
    let yt = runner(&root);
    let job = DownloadJob {
        max_downloads: Some(2),
        ..job(server.feed_url("three"), true)
    };
    let (events, outcome) = run_to_end(yt.spawn(&job).expect("spawn yt-dlp")).await;
    assert_eq!(
        outcome,
        Ok(Finished::StoppedEarly),
        "exit 101 is a fine stop"
    );
    assert_eq!(done_items(&events).len(), 2, "{events:#?}");
    assert_eq!(archive_lines(&yt).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_of_the_same_feed_downloads_nothing() {
    let server = three_item_feed().await;
    let root = TempRoot::new();
    let yt = runner(&root);
    let (events, outcome) =
        run_to_end(yt.spawn(&job(server.feed_url("three"), true)).unwrap()).await;
    assert_eq!(outcome, Ok(Finished::Success));
    assert_eq!(done_items(&events).len(), 3);
    let files: Vec<(PathBuf, SystemTime)> = done_items(&events)
        .iter()
        .map(|d| {
            (
                d.path.clone(),
                d.path.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    let first_run_video_requests = video_requests(&server).len();

    let second = job(server.feed_url("three"), true);
    let (events, outcome) = run_to_end(yt.spawn(&second).unwrap()).await;
    assert_eq!(outcome, Ok(Finished::Success));
    assert!(events.is_empty(), "nothing downloaded again: {events:#?}");
    // yt-dlp reads the feed again and, since a feed entry's id is only known once its URL is
    // opened, opens each video URL once more (headers only) before the archive tells it to
    // skip; it never downloads one again.
    let again: Vec<String> = video_requests(&server)[first_run_video_requests..].to_vec();
    for (_, _, video) in THREE {
        let path = format!("/videos/{video}.mp4");
        assert!(
            again.iter().filter(|p| **p == path).count() <= 1,
            "{again:?}"
        );
    }
    for (path, modified) in files {
        assert_eq!(path.metadata().unwrap().modified().unwrap(), modified);
    }
    assert_eq!(archive_lines(&yt).len(), 3);
    assert!(!yt
        .downloads_root()
        .join(".incomplete")
        .join(&second.id)
        .exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_item_fails_the_run_not_retryable_but_the_others_land() {
    let server = MediaServer::start().await;
    server.add_video("a", 6_000);
    server.add_video("c", 8_000);
    server.add_feed(
        "gap",
        "Holey Feed",
        &[
            FeedItem::new("First", "vid-a", "a"),
            FeedItem::new("Gone", "vid-b", "never-served"),
            FeedItem::new("Third", "vid-c", "c"),
        ],
    );
    let root = TempRoot::new();
    let yt = runner(&root);
    let job = job(server.feed_url("gap"), true);

    let (events, outcome) = run_to_end(yt.spawn(&job).unwrap()).await;
    let done = done_items(&events);
    let ids: Vec<&str> = done.iter().map(|d| d.video_id.as_str()).collect();
    assert_eq!(ids, ["vid-a", "vid-c"]);
    assert_eq!(
        done.iter().map(|d| d.index).collect::<Vec<_>>(),
        [1, 3],
        "indexes are playlist positions"
    );
    for item in &done {
        assert!(item.path.is_file());
    }
    match outcome {
        Err(
            ref err @ YtDlpError::Failed {
                ref message,
                retryable,
            },
        ) => {
            assert!(!retryable, "{message}");
            assert!(!err.is_retryable());
            assert!(message.contains("404"), "{message}");
            assert!(!message.starts_with("ERROR"), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(archive_lines(&yt).len(), 2);
    assert!(!yt
        .downloads_root()
        .join(".incomplete")
        .join(&job.id)
        .exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_video_lands_in_unsorted() {
    let server = MediaServer::start().await;
    server.add_video("clip-01", 12_345);
    let root = TempRoot::new();
    let yt = runner(&root);
    let job = DownloadJob {
        max_height: None,
        ..job(server.video_url("clip-01"), false)
    };

    let (events, outcome) = run_to_end(yt.spawn(&job).unwrap()).await;
    assert_eq!(outcome, Ok(Finished::Success));
    let done = done_items(&events);
    assert_eq!(done.len(), 1, "{events:#?}");
    let item = done[0];
    assert_eq!(item.video_id, "clip-01");
    assert_eq!(item.relative_path, "Unsorted/clip-01 [clip-01].mp4");
    assert_eq!(item.folder, "Unsorted");
    assert_eq!(item.index, 1);
    assert_eq!(item.total, None);
    assert_eq!(item.bytes, 12_345);
    assert_eq!(
        std::fs::read(yt.downloads_root().join("Unsorted/clip-01 [clip-01].mp4")).unwrap(),
        server.video_bytes("clip-01").unwrap()
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, RunEvent::Progress(p) if p.video_id == "clip-01")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_yt_dlp_and_leaves_no_partial_file() {
    let server = MediaServer::start().await;
    // 400 kB at 4 kB per 100 ms: about 10 s, far longer than the test needs.
    server.add_slow_video("slow", 400_000, 4_000, Duration::from_millis(100));
    let root = TempRoot::new();
    let yt = runner(&root);
    let job = job(server.video_url("slow"), false);

    let mut running = yt.spawn(&job).unwrap();
    let pid = running.pid().expect("yt-dlp has a pid");
    let first = tokio::time::timeout(RUN_LIMIT, running.next_event())
        .await
        .expect("progress in time");
    let Some(RunEvent::Progress(first)) = first else {
        panic!("expected a progress event first, got {first:?}");
    };
    assert_eq!(first.video_id, "slow");
    assert!(first.downloaded_bytes < 400_000);
    assert!(
        yt.downloads_root()
            .join(".incomplete")
            .join(&job.id)
            .exists(),
        "the temp dir exists while downloading"
    );

    tokio::time::timeout(Duration::from_secs(10), running.cancel())
        .await
        .expect("cancel in time")
        .expect("cancel");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "yt-dlp (pid {pid}) is gone"
    );
    assert!(!yt
        .downloads_root()
        .join("Unsorted/slow [slow].mp4")
        .exists());
    assert!(!yt
        .downloads_root()
        .join(".incomplete")
        .join(&job.id)
        .exists());
    assert!(archive_lines(&yt).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_tells_a_feed_from_a_video() {
    let server = three_item_feed().await;
    let root = TempRoot::new();
    let yt = runner(&root);

    let feed = yt
        .probe(&server.feed_url("three"), ProbeMode::Auto)
        .await
        .unwrap();
    assert_eq!(feed.kind, ProbedKind::Playlist);
    assert_eq!(feed.entries, Some(3));
    assert_eq!(feed.title.as_deref(), Some("Garden Diaries"));

    let video = yt
        .probe(&server.video_url("a"), ProbeMode::Auto)
        .await
        .unwrap();
    assert_eq!(video.kind, ProbedKind::Video);
    assert_eq!(video.id.as_deref(), Some("a"));
    assert_eq!(video.entries, None);

    // Metadata only: nothing lands on disk.
    assert!(archive_lines(&yt).is_empty());
    assert!(!yt.downloads_root().join("Unsorted").exists());
    assert!(!yt.downloads_root().join("Garden Diaries").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_of_a_missing_url_is_not_retryable() {
    let server = MediaServer::start().await;
    let root = TempRoot::new();
    let yt = runner(&root);

    let err = yt
        .probe(&server.video_url("nothing-here"), ProbeMode::Auto)
        .await
        .unwrap_err();
    match &err {
        YtDlpError::Failed { message, retryable } => {
            assert!(!retryable, "{message}");
            assert!(message.contains("404"), "{message}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_is_a_spawn_error() {
    let root = TempRoot::new();
    let yt = YtDlp::new(YtDlpConfig {
        program: PathBuf::from("/nonexistent/yt-dlp"),
        downloads_root: root.path().to_path_buf(),
        probe_timeout: Duration::from_secs(5),
        proxy: None,
    });
    let err = yt
        .spawn(&job("http://127.0.0.1:9/x.mp4".to_owned(), false))
        .unwrap_err();
    assert!(matches!(err, YtDlpError::Spawn(_)), "{err:?}");
    assert!(!err.is_retryable());
    let err = yt
        .probe("http://127.0.0.1:9/x.mp4", ProbeMode::Auto)
        .await
        .unwrap_err();
    assert!(matches!(err, YtDlpError::Spawn(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_attempts_partial_files_are_wiped() {
    let server = MediaServer::start().await;
    server.add_video("v", 3_000);
    let root = TempRoot::new();
    let yt = runner(&root);
    let job = job(server.video_url("v"), false);
    let stale = yt
        .downloads_root()
        .join(".incomplete")
        .join(&job.id)
        .join("Unsorted");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("v [v].mp4.part"), b"half").unwrap();

    let (events, outcome) = run_to_end(yt.spawn(&job).unwrap()).await;
    assert_eq!(outcome, Ok(Finished::Success));
    assert_eq!(done_items(&events)[0].bytes, 3_000);
    assert!(!yt
        .downloads_root()
        .join(".incomplete")
        .join(&job.id)
        .exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_egress_proxy_a_redirect_at_run_time_to_a_private_address_is_refused() {
    use medianest_integrations::egress::{EgressPolicy, EgressProxy};

    let server = MediaServer::start().await;
    server.add_video("a", 5_000);
    let proxy = EgressProxy::start(EgressPolicy::new(&[
        "127.0.0.1".to_string(),
        "localhost".to_string(),
    ]))
    .await
    .unwrap();
    let root = TempRoot::new();
    let yt = YtDlp::new(YtDlpConfig {
        program: PathBuf::from("yt-dlp"),
        downloads_root: root.path().to_path_buf(),
        probe_timeout: Duration::from_secs(30),
        proxy: Some(proxy.url()),
    });

    // An allowed IP literal goes through the proxy.
    let (events, outcome) = run_to_end(yt.spawn(&job(server.video_url("a"), false)).unwrap()).await;
    assert_eq!(outcome, Ok(Finished::Success));
    assert_eq!(done_items(&events)[0].bytes, 5_000);

    // A redirect, seen only when the download runs, to a name that resolves to loopback.
    let port = reqwest::Url::parse(&server.base_url())
        .unwrap()
        .port()
        .unwrap();
    let target = format!("http://localhost:{port}/videos/a.mp4");
    let redirect = reqwest::Url::parse_with_params(&server.url("/redirect"), &[("to", &target)])
        .unwrap()
        .to_string();
    let fetched = video_requests(&server).len();
    let (_, outcome) = run_to_end(yt.spawn(&job(redirect, false)).unwrap()).await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(
        video_requests(&server).len(),
        fetched,
        "the redirect's target was never fetched"
    );
    assert!(server.received().iter().any(|p| p.starts_with("/redirect")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_server_answers_ranges_redirects_and_404s() {
    let server = MediaServer::start().await;
    server.add_video("r", 1_000);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let full = server.video_bytes("r").unwrap();

    let whole = http.get(server.video_url("r")).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "video/mp4");
    assert_eq!(whole.headers()["content-length"], "1000");
    assert_eq!(whole.bytes().await.unwrap().to_vec(), full);

    let part = http
        .get(server.video_url("r"))
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 100-199/1000");
    assert_eq!(
        part.bytes().await.unwrap().to_vec(),
        full[100..200].to_vec()
    );

    let open = http
        .get(server.video_url("r"))
        .header("Range", "bytes=0-")
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 206);
    assert_eq!(open.bytes().await.unwrap().len(), 1_000);

    let redirect = http
        .get(server.url("/redirect?to=http://example.com/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 302);
    assert_eq!(redirect.headers()["location"], "http://example.com/x");

    let missing = http
        .get(server.url("/videos/nope.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        server.received(),
        [
            "/videos/r.mp4",
            "/videos/r.mp4",
            "/videos/r.mp4",
            "/redirect?to=http://example.com/x",
            "/videos/nope.mp4"
        ]
    );
}
