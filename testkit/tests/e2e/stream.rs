//! `GET /api/v1/stream` (issue 5, item 3): the live stream of public events and download
//! progress, per caller, resumable with `Last-Event-ID` exactly once, against real
//! PostgreSQL and NATS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use medianest_domain::Actor;
use medianest_http::auth::{AuthRejection, Principal};
use medianest_http::Authenticator;
use medianest_query_api::stream::{HubSettings, StreamHub};
use medianest_query_api::QueryState;
use medianest_testkit::app::{fresh_database, TestApp, TestOptions};
use medianest_testkit::media_server::MediaServer;
use medianest_testkit::problem::assert_problem;
use medianest_testkit::sse::{SseFrame, SseStream};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// An app whose requests stay where commands put them (no Overseerr forwarding).
async fn quiet_app() -> TestApp {
    TestApp::spawn_with(TestOptions {
        overseerr: false,
        ..TestOptions::default()
    })
    .await
}

/// Submits a movie request as the holder of `token`; answers its id and position.
async fn submit_as(app: &TestApp, token: &str, tmdb_id: u32, title: &str) -> (String, i64) {
    let response = app
        .request_as(token, reqwest::Method::POST, "/api/v1/requests")
        .json(&json!({"media_type": "movie", "tmdb_id": tmdb_id, "title": title, "is_4k": false}))
        .send()
        .await
        .expect("POST reaches the app");
    assert_eq!(response.status(), 202, "submit {title}");
    let body: Value = response.json().await.expect("json");
    (
        body["id"].as_str().expect("an id").to_string(),
        body["position"].as_i64().expect("a position"),
    )
}

async fn approve(app: &TestApp, id: &str) -> i64 {
    let response = app
        .post_empty(&format!("/api/v1/requests/{id}/approve"))
        .await;
    assert_eq!(response.status(), 200, "approve {id}");
    let body: Value = response.json().await.expect("json");
    body["position"].as_i64().expect("a position")
}

fn is(frame: &SseFrame, subject: &str, event_type: &str) -> bool {
    frame.event.as_deref() == Some(event_type) && frame.json()["subject"] == subject
}

fn ids(frames: &[SseFrame]) -> Vec<i64> {
    frames
        .iter()
        .filter_map(|f| f.id.as_ref().map(|_| f.position().expect("an integer id")))
        .collect()
}

/// Every global position after `after` (0: from the start) in log order.
async fn log_after(pool: &PgPool, after: i64) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT global_position FROM events
          WHERE $1 = 0 OR (tx_id, global_position) >
                (SELECT tx_id, global_position FROM events WHERE global_position = $1)
          ORDER BY tx_id, global_position",
    )
    .bind(after)
    .fetch_all(pool)
    .await
    .expect("read the log")
}

/// `log` up to and including `last`.
fn through(mut log: Vec<i64>, last: i64) -> Vec<i64> {
    let end = log
        .iter()
        .position(|p| *p == last)
        .expect("the last position is in the log");
    log.truncate(end + 1);
    log
}

#[tokio::test]
async fn an_admin_receives_the_events_of_a_submit_and_approve_in_order() {
    let app = quiet_app().await;
    let mut stream = SseStream::open(&app, app.admin_token(), None).await;
    assert_eq!(stream.headers()["cache-control"], "no-cache");
    stream.ready().await;

    let (id, submitted) = submit_as(&app, app.admin_token(), 603, "The Matrix").await;
    let approved = approve(&app, &id).await;
    let frames = stream
        .until(WAIT, |f| is(f, &id, "medianest.media_request.approved.v1"))
        .await;
    let mine: Vec<&SseFrame> = frames
        .iter()
        .filter(|f| f.json()["subject"] == id.as_str())
        .collect();
    let types: Vec<&str> = mine.iter().map(|f| f.event_name()).collect();
    assert_eq!(
        types,
        [
            "medianest.media_request.submitted.v1",
            "medianest.media_request.approved.v1"
        ]
    );
    let stored: Vec<i64> = app
        .events_of("media_request", &id)
        .await
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(stored, [submitted, approved]);
    let received: Vec<i64> = mine.iter().map(|f| f.position().unwrap()).collect();
    assert_eq!(received, stored, "ids are the global positions");

    let event = mine[0].json();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], format!("media_request:{id}:1"));
    assert_eq!(event["type"], "medianest.media_request.submitted.v1");
    assert_eq!(event["position"], submitted);
    assert_eq!(event["sequence"], 1);
    assert_eq!(event["data"]["requested_by"], app.admin.id.to_string());
    assert_eq!(event["data"]["media"]["title"], "The Matrix");
    assert_eq!(mine[1].json()["data"]["by"], app.admin.id.to_string());

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("medianest_sse_clients"), "{metrics}");
}

#[tokio::test]
async fn users_receive_only_the_events_of_their_own_requests() {
    let app = quiet_app().await;
    let alice = app.sign_in_user("alice").await;
    let bob = app.sign_in_user("bob").await;
    let mut alices_stream = SseStream::open(&app, &alice.token, None).await;
    let mut bobs_stream = SseStream::open(&app, &bob.token, None).await;
    alices_stream.ready().await;
    bobs_stream.ready().await;

    let (bobs, _) = submit_as(&app, &bob.token, 11, "Bob's film").await;
    let (alices, _) = submit_as(&app, &alice.token, 12, "Alice's film").await;
    approve(&app, &alices).await;
    approve(&app, &bobs).await;

    let frames = alices_stream
        .until(WAIT, |f| {
            is(f, &alices, "medianest.media_request.approved.v1")
        })
        .await;
    let types: Vec<&str> = frames.iter().map(SseFrame::event_name).collect();
    assert_eq!(
        types,
        [
            "medianest.media_request.submitted.v1",
            "medianest.media_request.approved.v1"
        ],
        "alice sees her request's events and nothing else (no sign-ins, no bob): {frames:#?}"
    );
    assert!(frames
        .iter()
        .all(|f| f.json()["subject"] == alices.as_str()));
    let later = alices_stream.drain(Duration::from_millis(500)).await;
    assert!(
        later.is_empty(),
        "bob's approval is not alice's: {later:#?}"
    );

    let frames = bobs_stream
        .until(WAIT, |f| {
            is(f, &bobs, "medianest.media_request.approved.v1")
        })
        .await;
    assert_eq!(frames.len(), 2, "{frames:#?}");
    assert!(frames.iter().all(|f| f.json()["subject"] == bobs.as_str()));
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_receives_every_later_event_exactly_once() {
    let app = quiet_app().await;
    let admin = app.admin_token().to_string();
    let mut first = SseStream::open(&app, &admin, None).await;
    first.ready().await;
    let (r1, _) = submit_as(&app, &admin, 1, "One").await;
    let (r2, _) = submit_as(&app, &admin, 2, "Two").await;
    let before = first
        .until(WAIT, |f| is(f, &r2, "medianest.media_request.submitted.v1"))
        .await;
    let last = before.last().unwrap().position().unwrap();
    drop(first);

    // Committed while the client is away.
    approve(&app, &r1).await;
    submit_as(&app, &admin, 3, "Three").await;
    // And writes racing with the reconnect (its subscription and catch-up).
    let writer = {
        let (http, url, token) = (app.http.clone(), app.url("/api/v1/requests"), admin.clone());
        tokio::spawn(async move {
            for tmdb_id in 100..112 {
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"media_type": "movie", "tmdb_id": tmdb_id,
                                  "title": format!("Film {tmdb_id}"), "is_4k": false}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 202);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut second = SseStream::open(&app, &admin, Some(&last.to_string())).await;
    assert_eq!(
        second.ready().await,
        last,
        "`ready` names the resume position"
    );
    writer.await.unwrap();
    approve(&app, &r2).await;
    let (marker, marker_position) = submit_as(&app, &admin, 999, "Marker").await;

    let after = second
        .until(WAIT, |f| {
            is(f, &marker, "medianest.media_request.submitted.v1")
        })
        .await;
    let received = ids(&after);
    let expected = through(log_after(&app.pool, last).await, marker_position);
    assert_eq!(
        received, expected,
        "every event after Last-Event-ID {last}, once each, in log order"
    );
    assert!(
        ids(&before).iter().all(|id| !received.contains(id)),
        "nothing the first connection got comes again"
    );
    assert!(received.len() >= 16, "{received:?}");
}

#[tokio::test]
async fn the_query_parameter_resumes_too_and_the_header_wins_over_it() {
    let app = quiet_app().await;
    let admin = app.admin_token().to_string();
    let (id, submitted) = submit_as(&app, &admin, 603, "The Matrix").await;
    let approved = approve(&app, &id).await;

    let response =
        SseStream::request(&app, &admin, &format!("?last_event_id={submitted}"), None).await;
    let mut stream = SseStream::new(response);
    assert_eq!(stream.ready().await, submitted);
    let frames = stream.until(WAIT, |f| f.position() == Some(approved)).await;
    assert_eq!(
        ids(&frames),
        through(log_after(&app.pool, submitted).await, approved)
    );

    // EventSource reconnects to the same URL with the header: the header wins.
    let response = SseStream::request(
        &app,
        &admin,
        "?last_event_id=0",
        Some(&submitted.to_string()),
    )
    .await;
    let mut stream = SseStream::new(response);
    assert_eq!(stream.ready().await, submitted, "the header wins");
    let first = stream.next_within(WAIT).await.unwrap().unwrap();
    assert_eq!(
        first.position(),
        log_after(&app.pool, submitted).await.first().copied()
    );

    // 0: from the start of the log.
    let response = SseStream::request(&app, &admin, "?last_event_id=0", None).await;
    let mut stream = SseStream::new(response);
    assert_eq!(stream.ready().await, 0);
    let frames = stream.until(WAIT, |f| f.position() == Some(approved)).await;
    assert_eq!(
        ids(&frames),
        through(log_after(&app.pool, 0).await, approved)
    );
}

#[tokio::test]
async fn download_progress_reaches_its_owner_and_admins_but_no_other_user() {
    let app = TestApp::spawn_with(TestOptions {
        downloads: true,
        ..TestOptions::default()
    })
    .await;
    let alice = app.sign_in_user("alice").await;
    let bob = app.sign_in_user("bob").await;
    let mut alices_stream = SseStream::open(&app, &alice.token, None).await;
    let mut bobs_stream = SseStream::open(&app, &bob.token, None).await;
    let mut admins_stream = SseStream::open(&app, app.admin_token(), None).await;
    for stream in [&mut alices_stream, &mut bobs_stream, &mut admins_stream] {
        stream.ready().await;
    }

    let media = MediaServer::start().await;
    media.add_slow_video("steady", 640 * 1024, 16 * 1024, Duration::from_millis(100));
    let response = app
        .request_as(&alice.token, reqwest::Method::POST, "/api/v1/downloads")
        .json(&json!({"url": media.video_url("steady")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let frames = alices_stream
        .until(Duration::from_secs(60), |f| {
            is(f, &id, "medianest.download.completed.v1")
        })
        .await;
    let progress: Vec<Value> = frames
        .iter()
        .filter(|f| f.event_name() == "progress")
        .map(SseFrame::json)
        .collect();
    assert!(!progress.is_empty(), "progress while running: {frames:#?}");
    for message in &progress {
        assert_eq!(message["download_id"], id.as_str());
        assert_eq!(message["video_id"], "steady");
        assert_eq!(message["total_bytes"], 640 * 1024);
    }
    assert!(
        frames
            .iter()
            .filter(|f| f.event_name() == "progress")
            .all(|f| f.id.is_none()),
        "progress frames carry no id"
    );
    let events: Vec<&str> = frames
        .iter()
        .filter(|f| f.id.is_some())
        .map(SseFrame::event_name)
        .collect();
    assert_eq!(events.first(), Some(&"medianest.download.queued.v1"));
    assert!(
        events.contains(&"medianest.download.started.v1"),
        "{events:?}"
    );

    // A message published straight on core NATS (without `download_id`: the stream adds
    // it from the subject).
    app.nats
        .publish(
            app.subjects.progress("download", &id),
            json!({"downloaded_bytes": 7, "marker": true})
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    let frames = alices_stream
        .until(WAIT, |f| f.json()["marker"] == true)
        .await;
    let marker = frames.last().unwrap();
    assert_eq!(marker.event_name(), "progress");
    assert_eq!(marker.json()["download_id"], id.as_str());

    let admins = admins_stream
        .until(WAIT, |f| f.json()["marker"] == true)
        .await;
    assert!(
        admins
            .iter()
            .any(|f| f.event_name() == "progress" && f.json()["video_id"] == "steady"),
        "admins see all progress"
    );

    let bobs = bobs_stream.drain(Duration::from_secs(1)).await;
    assert!(
        bobs.is_empty(),
        "bob sees nothing of alice's download: {bobs:#?}"
    );
}

#[tokio::test]
async fn the_stream_needs_a_session() {
    let app = quiet_app().await;
    let response = app
        .http
        .get(app.url("/api/v1/stream"))
        .send()
        .await
        .unwrap();
    assert_problem("no token", response, 401, "unauthenticated").await;
    let response = SseStream::request(&app, "mn_not-a-session", "", None).await;
    assert_problem("unknown token", response, 401, "unauthenticated").await;

    let document: Value = app.openapi_document().await;
    let operation = &document["paths"]["/api/v1/stream"]["get"];
    assert!(
        operation["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{operation}"
    );
}

#[tokio::test]
async fn a_bad_last_event_id_is_a_400_problem() {
    let app = quiet_app().await;
    let admin = app.admin_token().to_string();
    let (_, submitted) = submit_as(&app, &admin, 603, "The Matrix").await;
    for (case, query, header, slug) in [
        ("text header", "", Some("abc"), "malformed-request"),
        ("negative header", "", Some("-1"), "malformed-request"),
        ("text query", "?last_event_id=x1", None, "malformed-request"),
        (
            "unknown query parameter",
            "?since=1",
            None,
            "malformed-request",
        ),
        (
            "no such position (header)",
            "",
            Some("99999999"),
            "unknown-last-event-id",
        ),
        (
            "no such position (query)",
            "?last_event_id=99999999",
            None,
            "unknown-last-event-id",
        ),
    ] {
        let response = SseStream::request(&app, &admin, query, header).await;
        assert_problem(case, response, 400, slug).await;
    }
    // A header that names an event wins over a bad query parameter.
    let response = SseStream::request(
        &app,
        &admin,
        "?last_event_id=x",
        Some(&submitted.to_string()),
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn signing_out_ends_the_stream() {
    let app = quiet_app().await;
    let alice = app.sign_in_user("alice").await;
    let mut stream = SseStream::open(&app, &alice.token, None).await;
    stream.ready().await;
    let response = app
        .request_as(&alice.token, reqwest::Method::POST, "/api/v1/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let end = stream.next_within(WAIT).await.expect("the stream ends");
    assert_eq!(end, None, "no frame after `ready`, just the end");
    let response = SseStream::request(&app, &alice.token, "", None).await;
    assert_problem("after logout", response, 401, "unauthenticated").await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_without_waiting_for_the_grace_period() {
    let app = quiet_app().await;
    let mut stream = SseStream::open(&app, app.admin_token(), None).await;
    stream.ready().await;
    // Past its catch-up: the stream is live.
    let (id, _) = submit_as(&app, app.admin_token(), 603, "The Matrix").await;
    stream
        .until(WAIT, |f| is(f, &id, "medianest.media_request.submitted.v1"))
        .await;
    let started = Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        started.elapsed()
    );
    assert_eq!(
        stream.next_within(Duration::from_secs(5)).await.unwrap(),
        None
    );
}

/// Tokens `admin` and `alice`/`bob` (users).
struct Tokens {
    alice: Uuid,
    bob: Uuid,
}

#[async_trait]
impl Authenticator for Tokens {
    async fn authenticate(&self, token: &str) -> Result<Principal, AuthRejection> {
        let actor = match token {
            "admin" => Actor::admin(Uuid::nil()),
            "alice" => Actor::user(self.alice),
            "bob" => Actor::user(self.bob),
            _ => return Err(AuthRejection::Invalid),
        };
        Ok(Principal {
            actor,
            session_id: None,
        })
    }
}

/// Writes `count` submitted (sequence 1) or approved (sequence 2) events of the requests
/// `1..=count`, odd ones alice's, even ones bob's, in one transaction.
async fn write_requests(pool: &PgPool, tokens: &Tokens, count: i64, approved: bool) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         SELECT 'media_request', '00000000-0000-7000-8000-' || lpad(i::text, 12, '0'),
                CASE WHEN $4 THEN 2 ELSE 1 END,
                CASE WHEN $4 THEN 'approved' ELSE 'submitted' END, '1.0',
                CASE WHEN $4
                  THEN jsonb_build_object('approved',
                         jsonb_build_object('by', $1::text, 'auto', false))
                  ELSE jsonb_build_object('submitted', jsonb_build_object(
                         'requested_by', CASE WHEN i % 2 = 1 THEN $2::text ELSE $3::text END,
                         'media', jsonb_build_object('media_type', 'movie', 'tmdb_id', i,
                                                     'title', 'Film ' || i),
                         'is_4k', false))
                END,
                '{}'::jsonb
           FROM generate_series(1, $5::bigint) AS i",
    )
    .bind(Uuid::nil().to_string())
    .bind(tokens.alice.to_string())
    .bind(tokens.bob.to_string())
    .bind(approved)
    .bind(count)
    .execute(pool)
    .await
    .expect("write events");
}

/// The `medianest_sse_lagged_total` counter of this process.
fn lagged_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("medianest_sse_lagged_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The query API with its own [`StreamHub`] on a database of the test's own, with [`Tokens`]
/// as the authenticator: for tests that write the log directly.
struct Server {
    hub: Arc<StreamHub>,
    url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(pool: &PgPool, tokens: Arc<Tokens>, settings: HubSettings) -> Self {
        let shutdown = CancellationToken::new();
        let hub = StreamHub::new(pool.clone(), None, shutdown.clone(), settings)
            .await
            .unwrap();
        tokio::spawn(hub.clone().run());
        let router = medianest_query_api::router(QueryState {
            pool: pool.clone(),
            authenticator: tokens,
            min_position_wait: Duration::from_secs(1),
            default_quotas: Default::default(),
            download_progress: None,
            stream: Some(hub.clone()),
            catalog: None,
            search_answers: Default::default(),
            dashboard_answers: Arc::new(medianest_query_api::dashboard::dashboard_answers()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/v1/stream", listener.local_addr().unwrap());
        let task = {
            let token = shutdown.clone();
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await
                    .unwrap();
            })
        };
        Self {
            hub,
            url,
            http: reqwest::Client::new(),
            shutdown,
            task,
        }
    }

    /// Opens the stream as `token` (`admin`, `alice`, `bob`).
    async fn open(&self, token: &str, last_event_id: Option<&str>) -> SseStream {
        SseStream::new(SseStream::request_url(&self.http, &self.url, token, last_event_id).await)
    }

    /// Waits until no stream task is left (at most `WAIT`); false when some still run.
    async fn streams_end(&self) -> bool {
        let deadline = Instant::now() + WAIT;
        while self.hub.streams() > 0 {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("open streams end on shutdown")
            .unwrap();
    }
}

#[tokio::test]
async fn clients_that_fall_behind_the_broadcast_catch_up_from_the_database_exactly_once() {
    const REQUESTS: i64 = 3000;
    let metrics = medianest_http::metrics::install();
    let lagged_before = lagged_total(&metrics.render());
    let (_, pool) = fresh_database().await;
    let tokens = Arc::new(Tokens {
        alice: Uuid::now_v7(),
        bob: Uuid::now_v7(),
    });
    // Submitted before the hub starts: their owners are not in its cache.
    write_requests(&pool, &tokens, REQUESTS, false).await;

    let server = Server::start(
        &pool,
        tokens.clone(),
        HubSettings {
            capacity: 16,
            poll_interval: Duration::from_millis(50),
            ..HubSettings::default()
        },
    )
    .await;
    let head: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    // Resuming after the last event written so far (a stream without Last-Event-ID starts
    // at the transaction fence, which other databases' transactions may hold back).
    let resume = head.to_string();
    let mut admin = server.open("admin", Some(&resume)).await;
    let mut alice = server.open("alice", Some(&resume)).await;
    assert_eq!(admin.ready().await, head);
    assert_eq!(alice.ready().await, head);

    // A burst far larger than the broadcast buffer, while neither client reads.
    write_requests(&pool, &tokens, REQUESTS, true).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let expected = log_after(&pool, head).await;
    assert_eq!(expected.len(), REQUESTS as usize);
    let last = *expected.last().unwrap();
    let frames = admin.until(WAIT, |f| f.position() == Some(last)).await;
    assert_eq!(
        ids(&frames),
        expected,
        "the admin gets every event once, in order"
    );

    let alices: Vec<i64> = sqlx::query_scalar(
        "SELECT e.global_position FROM events e
           JOIN events s ON s.aggregate_type = e.aggregate_type
                        AND s.aggregate_id = e.aggregate_id AND s.sequence = 1
          WHERE e.global_position > $1
            AND s.payload -> 'submitted' ->> 'requested_by' = $2
          ORDER BY e.tx_id, e.global_position",
    )
    .bind(head)
    .bind(tokens.alice.to_string())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(alices.len(), REQUESTS as usize / 2);
    let alices_last = *alices.last().unwrap();
    let frames = alice
        .until(WAIT, |f| f.position() == Some(alices_last))
        .await;
    assert_eq!(ids(&frames), alices, "alice gets her events once, in order");
    assert!(frames
        .iter()
        .all(|f| f.json()["type"] == "medianest.media_request.approved.v1"));

    assert!(
        lagged_total(&metrics.render()) > lagged_before,
        "the clients fell behind the broadcast (the case under test)"
    );
    server.stop().await;
}

/// Writes `count` submitted events of the requests `first..first + count`, all of `owner`,
/// in one transaction; answers their positions in log order.
async fn write_submitted<'e>(
    db: impl sqlx::PgExecutor<'e>,
    owner: Uuid,
    first: i64,
    count: i64,
) -> Vec<i64> {
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         SELECT 'media_request', '00000000-0000-7000-8000-' || lpad(i::text, 12, '0'), 1,
                'submitted', '1.0',
                jsonb_build_object('submitted', jsonb_build_object(
                    'requested_by', $1::text,
                    'media', jsonb_build_object('media_type', 'movie', 'tmdb_id', i,
                                                'title', 'Film ' || i),
                    'is_4k', false)),
                '{}'::jsonb
           FROM generate_series($2::bigint, $2::bigint + $3::bigint - 1) AS i
         RETURNING global_position",
    )
    .bind(owner.to_string())
    .bind(first)
    .bind(count)
    .fetch_all(db)
    .await
    .expect("write events")
}

/// Waits until every transaction up to `tx_id` is behind the transaction fence (readers of
/// the log see it).
async fn fence_passes(pool: &PgPool, tx_id: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let passed: bool =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint > $1")
                .bind(tx_id)
                .fetch_one(pool)
                .await
                .unwrap();
        if passed {
            return;
        }
        assert!(Instant::now() < deadline, "the fence stays behind {tx_id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_user_who_received_only_ready_resumes_from_its_id_without_losing_an_event() {
    let app = quiet_app().await;
    let alice = app.sign_in_user("alice").await;
    let bob = app.sign_in_user("bob").await;
    let mut stream = SseStream::open(&app, &alice.token, None).await;
    let ready = stream.ready().await;
    assert!(
        ready > 0,
        "the log has events (sign-ins): its head is named"
    );
    let more = stream.drain(Duration::from_millis(500)).await;
    assert!(more.is_empty(), "alice has nothing to see yet: {more:#?}");
    drop(stream);

    // Committed while alice is away, before she has received any event.
    let (hers, position) = submit_as(&app, &alice.token, 603, "The Matrix").await;
    submit_as(&app, &bob.token, 604, "Not hers").await;

    let mut stream = SseStream::open(&app, &alice.token, Some(&ready.to_string())).await;
    assert_eq!(
        stream.ready().await,
        ready,
        "the stream resumes where it was"
    );
    let frames = stream
        .until(WAIT, |f| {
            is(f, &hers, "medianest.media_request.submitted.v1")
        })
        .await;
    assert_eq!(
        ids(&frames),
        [position],
        "her event, and nothing before it: {frames:#?}"
    );
    let more = stream.drain(Duration::from_millis(500)).await;
    assert!(more.is_empty(), "her event comes once: {more:#?}");

    // Without `ready`, the reconnect (no Last-Event-ID) would have started at the head,
    // after her event.
    let mut fresh = SseStream::open(&app, &alice.token, None).await;
    let head = fresh.ready().await;
    assert!(
        log_after(&app.pool, ready).await.contains(&head),
        "the head moved on"
    );
    let more = fresh.drain(Duration::from_millis(500)).await;
    assert!(more.is_empty(), "{more:#?}");
}

#[tokio::test]
async fn the_ready_id_is_the_start_cursors_own_position_and_resumes_there() {
    let (_, pool) = fresh_database().await;
    let tokens = Arc::new(Tokens {
        alice: Uuid::now_v7(),
        bob: Uuid::now_v7(),
    });
    let server = Server::start(&pool, tokens.clone(), HubSettings::default()).await;

    // An empty log: the stream starts at its start, `0`.
    let mut empty = server.open("alice", None).await;
    assert_eq!(empty.ready().await, 0);
    drop(empty);

    // Two transactions, the older one committing last with the higher position: the log
    // (ordered by transaction) reads (older, p2), (younger, p1).
    let mut older = pool.begin().await.unwrap();
    let older_tx: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *older)
        .await
        .unwrap();
    let p1 = write_submitted(&pool, tokens.alice, 1, 1).await[0];
    let p2 = write_submitted(&mut *older, tokens.alice, 2, 1).await[0];
    older.commit().await.unwrap();
    assert!(p2 > p1);
    assert_eq!(log_after(&pool, 0).await, [p2, p1], "log order");
    let younger_tx: i64 =
        sqlx::query_scalar("SELECT tx_id::text::bigint FROM events WHERE global_position = $1")
            .bind(p1)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(younger_tx > older_tx);
    fence_passes(&pool, younger_tx).await;

    // Resuming from `0` (the empty log's `ready`) gets both, in log order.
    let mut all = server.open("alice", Some("0")).await;
    assert_eq!(all.ready().await, 0);
    let frames = all.until(WAIT, |f| f.position() == Some(p1)).await;
    assert_eq!(ids(&frames), [p2, p1]);
    drop(all);

    // At the head: the head is (younger, p1), so `ready` says p1, not the larger p2.
    let mut at_head = server.open("alice", None).await;
    assert_eq!(at_head.ready().await, p1, "the start cursor's own position");
    let more = at_head.drain(Duration::from_millis(300)).await;
    assert!(more.is_empty(), "nothing after the head yet: {more:#?}");
    drop(at_head);

    // A later event; resuming from p1 gets it and nothing before it (from p2 the stream
    // would send p1 again).
    let p3 = write_submitted(&pool, tokens.alice, 3, 1).await[0];
    let mut resumed = server.open("alice", Some(&p1.to_string())).await;
    assert_eq!(resumed.ready().await, p1);
    let frames = resumed.until(WAIT, |f| f.position() == Some(p3)).await;
    assert_eq!(ids(&frames), [p3], "exactly the event after the start");
    let more = resumed.drain(Duration::from_millis(300)).await;
    assert!(more.is_empty(), "{more:#?}");
    drop(resumed);
    server.stop().await;
}

/// Takes an `ACCESS EXCLUSIVE` lock on `events` in `lock`, then waits until another
/// backend of this database (the stream's catch-up) waits for it.
async fn hold_the_catch_up(pool: &PgPool, lock: &mut sqlx::PgConnection) {
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no catch-up waits for the lock: it ended before (write more events)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settings that keep the hub's own tail from reading while a test holds the log locked
/// (it reads on NOTIFY, and the tests write nothing meanwhile but in the lock's
/// transaction).
fn idle_hub() -> HubSettings {
    HubSettings {
        poll_interval: Duration::from_secs(3600),
        ..HubSettings::default()
    }
}

#[tokio::test]
async fn a_catch_up_stops_when_the_client_is_gone() {
    const BACKLOG: i64 = 30_000;
    let (_, pool) = fresh_database().await;
    let tokens = Arc::new(Tokens {
        alice: Uuid::now_v7(),
        bob: Uuid::now_v7(),
    });
    // A long log alice may see nothing of: her catch-up from `0` sends no frame.
    write_submitted(&pool, tokens.bob, 1, BACKLOG).await;
    let server = Server::start(&pool, tokens.clone(), idle_hub()).await;

    let mut stream = server.open("alice", Some("0")).await;
    assert_eq!(stream.ready().await, 0);
    assert_eq!(server.hub.streams(), 1);
    // The catch-up is under way; stop it inside a read of the log, then hang up.
    let mut lock = pool.begin().await.unwrap();
    hold_the_catch_up(&pool, &mut lock).await;
    drop(stream);
    let ended = server.streams_end().await;
    lock.rollback().await.unwrap();
    assert!(
        ended,
        "the catch-up stops when the client is gone, without reading on"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_users_catch_up_that_passes_an_ending_event_ends_the_stream() {
    const BACKLOG: i64 = 30_000;
    let (_, pool) = fresh_database().await;
    let tokens = Arc::new(Tokens {
        alice: Uuid::now_v7(),
        bob: Uuid::now_v7(),
    });
    write_submitted(&pool, tokens.bob, 1, BACKLOG).await;
    let server = Server::start(&pool, tokens.clone(), idle_hub()).await;

    let mut stream = server.open("alice", Some("0")).await;
    assert_eq!(stream.ready().await, 0);
    // While her catch-up is held, alice's account is disabled, followed by more events
    // (so the catch-up, which reads only requests and downloads for a user, reads past
    // it, and the broadcast, which skips what the catch-up has passed, does not judge it).
    let mut lock = pool.begin().await.unwrap();
    hold_the_catch_up(&pool, &mut lock).await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('user_account', $1, 2, 'disabled', '1.0',
                 jsonb_build_object('disabled', jsonb_build_object('by', $2::text)), '{}')",
    )
    .bind(tokens.alice.to_string())
    .bind(Uuid::nil().to_string())
    .execute(&mut *lock)
    .await
    .unwrap();
    write_submitted(&mut *lock, tokens.bob, BACKLOG + 1, 10).await;
    lock.commit().await.unwrap();

    let end = stream
        .next_within(WAIT)
        .await
        .expect("the stream ends (the authenticator would still accept alice)");
    assert_eq!(end, None, "no frame, just the end");
    server.stop().await;
}
