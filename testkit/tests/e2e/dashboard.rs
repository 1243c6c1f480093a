//! `GET /api/v1/dashboard` and the `dashboard` read model (issue 5), against real PostgreSQL
//! and NATS JetStream, the Overseerr and Plex simulators and the real yt-dlp: exact figures
//! after a scripted history, each user's slice against the admin's view, read-your-writes,
//! the refusals, and a read model that redelivered events and a replay leave unchanged.

use std::sync::Arc;
use std::time::Duration;

use medianest_nats::{FeedEvent, LogFeed};
use medianest_projections::dashboard::DashboardProjection;
use medianest_projections::{Projection, ProjectionRunner};
use medianest_store::{Cursor, StoredEvent};
use medianest_testkit::app::{eventually, TestApp, TestOptions, TestUser, PLEX_WEBHOOK_SECRET};
use medianest_testkit::media_server::{FeedItem, MediaServer};
use medianest_testkit::plex_sim::PmsSim;
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// `POST path` with `body` as `user`; the 2xx answer.
async fn post_as(app: &TestApp, user: &TestUser, path: &str, body: &Value) -> Value {
    let response = app
        .request_as(&user.token, Method::POST, path)
        .json(body)
        .send()
        .await
        .expect("POST reaches the app");
    assert!(
        response.status().is_success(),
        "POST {path} answered {}",
        response.status()
    );
    response.json().await.expect("a JSON answer")
}

async fn submit_movie(app: &TestApp, user: &TestUser, tmdb_id: u32, title: &str) -> String {
    let body = json!({"media_type": "movie", "tmdb_id": tmdb_id, "title": title, "year": 1999});
    post_as(app, user, "/api/v1/requests", &body).await["id"]
        .as_str()
        .expect("an id")
        .to_string()
}

async fn wait_for_download(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually("the download's state", Duration::from_secs(60), || async {
        let view: Value = app
            .get(&format!("/api/v1/downloads/{id}"))
            .await
            .json()
            .await
            .ok()?;
        done(&view).then_some(view)
    })
    .await
}

/// `GET /api/v1/dashboard<query>` as `token`.
async fn dashboard_as(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.request_as(token, Method::GET, &format!("/api/v1/dashboard{query}"))
        .send()
        .await
        .expect("GET reaches the app")
}

async fn dashboard_json(app: &TestApp, token: &str, query: &str) -> Value {
    let response = dashboard_as(app, token, query).await;
    assert_eq!(response.status(), 200, "GET /api/v1/dashboard{query}");
    response.json().await.expect("a JSON answer")
}

async fn head_position(app: &TestApp) -> i64 {
    medianest_store::log::head_position(&app.pool)
        .await
        .expect("the log head")
}

fn statuses(pairs: &[(&str, i64)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect(),
    )
}

fn request_statuses(overrides: &[(&str, i64)]) -> Value {
    let mut all: Vec<(&str, i64)> = [
        "approved",
        "available",
        "cancelled",
        "declined",
        "failed",
        "forwarded",
        "partially_available",
        "pending",
        "processing",
    ]
    .iter()
    .map(|s| (*s, 0))
    .collect();
    for (status, n) in overrides {
        all.iter_mut()
            .find(|(s, _)| s == status)
            .expect("a status")
            .1 = *n;
    }
    statuses(&all)
}

fn download_statuses(overrides: &[(&str, i64)]) -> Value {
    let mut all: Vec<(&str, i64)> = ["cancelled", "completed", "failed", "queued", "running"]
        .iter()
        .map(|s| (*s, 0))
        .collect();
    for (status, n) in overrides {
        all.iter_mut()
            .find(|(s, _)| s == status)
            .expect("a status")
            .1 = *n;
    }
    statuses(&all)
}

/// The per-day series: 30 days, today (the answer's UTC day) last, everything else zero.
fn today_bucket(view: &Value) -> Value {
    let days = view["per_day"].as_array().expect("per_day");
    assert_eq!(days.len(), 30, "{view}");
    let today = &view["generated_at"].as_str().expect("generated_at")[..10];
    let last = days.last().expect("a day");
    assert_eq!(last["date"], today);
    let dates: Vec<&str> = days.iter().map(|d| d["date"].as_str().unwrap()).collect();
    let mut sorted = dates.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(dates, sorted, "30 distinct days, oldest first");
    for day in &days[..29] {
        assert_eq!(
            (
                &day["requests"],
                &day["available"],
                &day["downloads"],
                &day["downloads_completed"]
            ),
            (&json!(0), &json!(0), &json!(0), &json!(0)),
            "{day}"
        );
    }
    last.clone()
}

/// Every row of the dashboard tables, in a stable order, as JSON text.
async fn dashboard_rows(app: &TestApp, schema: &str) -> Vec<String> {
    let mut rows = Vec::new();
    for table in DashboardProjection.tables() {
        let text: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT row_to_json(t)::text FROM {schema}.{table} t ORDER BY 1"
        ))
        .fetch_all(&app.pool)
        .await
        .expect("read the table");
        rows.extend(text);
    }
    rows
}

async fn events_of_interest(app: &TestApp) -> Vec<StoredEvent> {
    medianest_store::log::read_after_types(
        &app.pool,
        Cursor::default(),
        100_000,
        &["media_request".to_string(), "download".to_string()],
    )
    .await
    .expect("read the log")
}

#[tokio::test]
async fn the_dashboard_shows_exact_figures_to_admins_and_each_user_their_own_slice() {
    let app = TestApp::spawn_with(TestOptions {
        downloads: true,
        ..TestOptions::default()
    })
    .await;
    let admin = app.admin.clone();
    let alice = app.sign_in_user("alice").await;
    let bob = app.sign_in_user("bob").await;

    // Requests: alice three movies, bob a movie and a series, the admin one movie.
    let matrix = submit_movie(&app, &alice, 603, "The Matrix").await;
    let reloaded = submit_movie(&app, &alice, 604, "The Matrix Reloaded").await;
    let revolutions = submit_movie(&app, &alice, 605, "The Matrix Revolutions").await;
    let fight_club = submit_movie(&app, &bob, 550, "Fight Club").await;
    let got = json!({"media_type": "tv", "tmdb_id": 1399, "tvdb_id": 121361,
                     "title": "Game of Thrones", "seasons": [1, 2]});
    post_as(&app, &bob, "/api/v1/requests", &got).await;
    let forrest = submit_movie(&app, &admin, 13, "Forrest Gump").await;

    // The admin approves three and declines one; the admin's own is cancelled.
    for id in [&matrix, &reloaded, &fight_club] {
        post_as(
            &app,
            &admin,
            &format!("/api/v1/requests/{id}/approve"),
            &json!({}),
        )
        .await;
    }
    post_as(
        &app,
        &admin,
        &format!("/api/v1/requests/{revolutions}/decline"),
        &json!({"reason": "one is enough"}),
    )
    .await;

    // The Matrix becomes available through Overseerr's webhook, Fight Club through Plex's.
    let overseerr_id = app.forwarded(&matrix).await;
    let webhook = app.overseerr_webhook("MEDIA_AVAILABLE", overseerr_id).await;
    assert_eq!(webhook.status(), 202);
    app.forwarded(&reloaded).await;
    app.forwarded(&fight_club).await;
    let payload =
        PmsSim::library_new_payload("movie", "Fight Club", Some(1999), "6001", &["tmdb://550"]);
    let pms = app.pms.as_ref().expect("a PMS simulator");
    let response = pms
        .send_webhook(
            &app.url(&format!("/api/v1/webhooks/plex/{PLEX_WEBHOOK_SECRET}")),
            &payload,
            Some("application/json"),
        )
        .await;
    assert_eq!(response.status(), 202);
    app.wait_for_status(&matrix, "available", WAIT).await;
    app.wait_for_status(&fight_club, "available", WAIT).await;

    // Downloads: alice's video lands (16 KiB); bob's playlist fails on a missing item after
    // one 8 KiB file.
    let media = MediaServer::start().await;
    media.add_video("clip", 16 * 1024);
    media.add_video("here", 8 * 1024);
    media.add_feed(
        "broken",
        "Broken Channel",
        &[
            FeedItem::new("Present", "p1", "here"),
            FeedItem::new("Gone", "g1", "not-served"),
        ],
    );
    let clip = post_as(
        &app,
        &alice,
        "/api/v1/downloads",
        &json!({"url": media.video_url("clip")}),
    )
    .await["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let broken = post_as(
        &app,
        &bob,
        "/api/v1/downloads",
        &json!({"url": media.feed_url("broken")}),
    )
    .await["id"]
        .as_str()
        .expect("an id")
        .to_string();
    // Completed and scanned (the scan is the download's last event).
    wait_for_download(&app, &clip, |v| {
        v["status"] == "completed" && !v["library_scan"].is_null()
    })
    .await;
    wait_for_download(&app, &broken, |v| v["status"] == "failed").await;

    // Read-your-writes: the last write is seen at once with its position.
    let cancelled = post_as(
        &app,
        &admin,
        &format!("/api/v1/requests/{forrest}/cancel"),
        &json!({}),
    )
    .await;
    let position = cancelled["position"].as_i64().expect("a position");
    let view = dashboard_json(&app, &admin.token, &format!("?min_position={position}")).await;
    assert_eq!(view["requests"]["by_status"]["cancelled"], 1, "{view}");
    assert!(view["position"].as_i64().unwrap() >= position);
    // So is the header form.
    let response = app
        .request_as(&admin.token, Method::GET, "/api/v1/dashboard")
        .header("X-Min-Position", position.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The admin's view: everything.
    let head = head_position(&app).await;
    let view = dashboard_json(&app, &admin.token, &format!("?min_position={head}")).await;
    assert_eq!(view["scope"], "all");
    assert_eq!(view["requests"]["total"], 6, "{view}");
    assert_eq!(
        view["requests"]["by_status"],
        request_statuses(&[
            ("pending", 1),
            ("declined", 1),
            ("cancelled", 1),
            ("forwarded", 1),
            ("available", 2)
        ]),
        "{view}"
    );
    assert_eq!(
        view["requests"]["by_media_type"],
        json!({"movie": 5, "tv": 1})
    );
    let tta = &view["time_to_available"];
    assert_eq!(tta["samples"], 2, "{view}");
    let median = tta["median_seconds"].as_f64().expect("a median");
    let p90 = tta["p90_seconds"].as_f64().expect("a p90");
    assert!(median > 0.0 && median <= p90, "{tta}");
    assert_eq!(view["downloads"]["total"], 2, "{view}");
    assert_eq!(
        view["downloads"]["by_status"],
        download_statuses(&[("completed", 1), ("failed", 1)])
    );
    assert_eq!(view["downloads"]["bytes"], 24 * 1024, "{view}");
    assert_eq!(view["downloads"]["items"], 2);
    let today = today_bucket(&view);
    assert_eq!(
        today,
        json!({"date": today["date"], "requests": 6, "available": 2, "downloads": 2,
               "downloads_completed": 1})
    );
    let top = view["top_requesters"].as_array().expect("top requesters");
    let top: Vec<(&str, i64, &str)> = top
        .iter()
        .map(|r| {
            (
                r["username"].as_str().unwrap_or_default(),
                r["requests"].as_i64().unwrap(),
                r["user_id"].as_str().unwrap(),
            )
        })
        .collect();
    let (alice_id, bob_id, admin_id) = (
        alice.id.to_string(),
        bob.id.to_string(),
        admin.id.to_string(),
    );
    assert_eq!(
        top,
        vec![
            ("alice", 3, alice_id.as_str()),
            ("bob", 2, bob_id.as_str()),
            ("admin", 1, admin_id.as_str())
        ]
    );
    // Every configured service is reported, closed, from the workers' breakers.
    let services = eventually("the services' health", WAIT, || async {
        let view = dashboard_json(&app, &admin.token, "").await;
        let services = view["services"].as_array()?.clone();
        services
            .iter()
            .all(|s| s["state"] == "closed")
            .then_some(services)
    })
    .await;
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["overseerr", "plex", "ytdlp"]);
    for service in &services {
        assert_eq!(service["consecutive_failures"], 0, "{service}");
        assert!(service["since"].is_string(), "{service}");
    }

    // Alice's slice: her three requests and her download; no top requesters.
    let mine = dashboard_json(&app, &alice.token, &format!("?min_position={head}")).await;
    assert_eq!(mine["scope"], "own");
    assert_eq!(mine["requests"]["total"], 3);
    assert_eq!(
        mine["requests"]["by_status"],
        request_statuses(&[("available", 1), ("forwarded", 1), ("declined", 1)])
    );
    assert_eq!(mine["time_to_available"]["samples"], 1);
    assert_eq!(
        mine["time_to_available"]["median_seconds"], mine["time_to_available"]["p90_seconds"],
        "one sample"
    );
    assert_eq!(
        mine["downloads"]["by_status"],
        download_statuses(&[("completed", 1)])
    );
    assert_eq!(mine["downloads"]["bytes"], 16 * 1024);
    assert!(mine.get("top_requesters").is_none(), "{mine}");
    let today = today_bucket(&mine);
    assert_eq!(
        (&today["requests"], &today["available"], &today["downloads"]),
        (&json!(3), &json!(1), &json!(1))
    );
    assert_eq!(mine["services"].as_array().unwrap().len(), 3);

    // Bob's slice.
    let his = dashboard_json(&app, &bob.token, "").await;
    assert_eq!(
        his["requests"]["by_status"],
        request_statuses(&[("available", 1), ("pending", 1)])
    );
    assert_eq!(
        his["requests"]["by_media_type"],
        json!({"movie": 1, "tv": 1})
    );
    assert_eq!(
        his["downloads"]["by_status"],
        download_statuses(&[("failed", 1)])
    );
    assert_eq!(his["downloads"]["bytes"], 8 * 1024);
    assert_eq!(his["downloads"]["items"], 1);

    // An admin may ask for their own slice; a user may not ask for everyone's.
    let own = dashboard_json(&app, &admin.token, "?scope=own").await;
    assert_eq!(own["scope"], "own");
    assert_eq!(own["requests"]["total"], 1);
    assert_eq!(own["requests"]["by_status"]["cancelled"], 1);
    assert!(own.get("top_requesters").is_none());
    let refused = dashboard_as(&app, &alice.token, "?scope=all").await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );

    // Redelivery: applying events again (under a fresh checkpoint, so only the rows'
    // version guard stands in the way, then again under it) changes no row.
    let before = dashboard_rows(&app, "public").await;
    let runner = ProjectionRunner::new(
        app.pool.clone(),
        Arc::new(LogFeed::new(app.pool.clone())),
        Arc::new(DashboardProjection),
    );
    let events = events_of_interest(&app).await;
    let redelivered: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| {
            matches!(
                e.event_type.as_str(),
                "submitted" | "available" | "item_completed" | "started" | "completed"
            )
        })
        .collect();
    assert!(redelivered.len() >= 8, "{}", redelivered.len());
    for stored in &redelivered {
        let event = FeedEvent::from_stored(stored).expect("a public form");
        for _ in 0..2 {
            runner
                .apply_once("projection-dashboard-redelivery", &event)
                .await
                .expect("applied");
            runner
                .apply_once(&runner.checkpoint_name(), &event)
                .await
                .expect("applied");
        }
    }
    assert_eq!(dashboard_rows(&app, "public").await, before);

    // A replay into shadow tables, as `medianest replay` runs it (search_path = shadow,
    // public), builds the same rows: every time is the event's.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("CREATE SCHEMA dashboard_shadow")
        .execute(&mut *tx)
        .await
        .unwrap();
    for table in DashboardProjection.tables() {
        sqlx::query(&format!(
            "CREATE TABLE dashboard_shadow.{table} (LIKE public.{table} INCLUDING ALL)"
        ))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    sqlx::query("SET LOCAL search_path = dashboard_shadow, public")
        .execute(&mut *tx)
        .await
        .unwrap();
    for stored in &events {
        let event = FeedEvent::from_stored(stored).expect("a public form");
        DashboardProjection
            .apply(&mut tx, &event)
            .await
            .expect("applied");
    }
    tx.commit().await.unwrap();
    assert_eq!(dashboard_rows(&app, "dashboard_shadow").await, before);

    // The migration that added the pre-aggregated figures builds them from the slim rows of
    // an earlier version: the same figures as the projection's (its rows of zero aside).
    let figures = || async {
        let mut rows = Vec::new();
        for (table, nonzero) in [
            ("dashboard_totals", "count <> 0 OR bytes <> 0 OR items <> 0"),
            ("dashboard_days", "true"),
            ("dashboard_available_times", "count <> 0"),
            ("dashboard_requesters", "requests <> 0"),
        ] {
            let text: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT row_to_json(t)::text FROM {table} t WHERE {nonzero} ORDER BY 1"
            ))
            .fetch_all(&app.pool)
            .await
            .expect("read the figures");
            rows.extend(text);
        }
        rows
    };
    let projected = figures().await;
    assert!(projected.len() > 8, "{projected:?}");
    sqlx::query(
        "TRUNCATE dashboard_totals, dashboard_days, dashboard_available_times, dashboard_requesters",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let migration = include_str!("../../../migrations/20261207000002_dashboard_totals.sql");
    let (_, backfill) = migration
        .split_once("-- Built from the slim rows an earlier version wrote.")
        .expect("the backfill part");
    sqlx::raw_sql(backfill).execute(&app.pool).await.unwrap();
    assert_eq!(figures().await, projected);
    app.stop().await;
}

#[tokio::test]
async fn a_cached_dashboard_is_dropped_when_its_read_model_changes() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in_user("alice").await;
    submit_movie(&app, &alice, 603, "The Matrix").await;
    let position = head_position(&app).await;
    dashboard_json(&app, &alice.token, &format!("?min_position={position}")).await;
    let cached = dashboard_json(&app, &alice.token, "").await;
    assert_eq!(cached["requests"]["total"], 1, "{cached}");
    // Cached now; a second request changes the read model, and the next dashboard without
    // `min_position` (which would skip the cache) must already count it.
    submit_movie(&app, &alice, 604, "The Matrix Reloaded").await;
    let position = head_position(&app).await;
    let fresh = dashboard_json(&app, &alice.token, &format!("?min_position={position}")).await;
    assert_eq!(fresh["requests"]["total"], 2, "{fresh}");
    let again = dashboard_json(&app, &alice.token, "").await;
    assert_eq!(
        again["requests"]["total"], 2,
        "not the stale cached summary: {again}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_dashboard_refuses_strangers_and_unknown_parameters() {
    let app = TestApp::spawn_with(TestOptions {
        overseerr: false,
        plex: false,
        min_position_wait: Duration::from_millis(500),
        ..TestOptions::default()
    })
    .await;
    let anonymous = app
        .http
        .get(app.url("/api/v1/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );
    let bad_token = dashboard_as(&app, "not-a-session", "").await;
    assert_eq!(bad_token.status(), 401);
    for query in [
        "?foo=1",
        "?scope=everyone",
        "?min_position=abc",
        "?scope=all&since=yesterday",
    ] {
        let response = dashboard_as(&app, &app.admin.token, query).await;
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{query}"
        );
    }
    let response = app
        .request(Method::GET, "/api/v1/dashboard")
        .header("X-Min-Position", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // An empty installation: zeros, a zero-filled series, no samples, services unknown
    // (none is configured).
    let view = dashboard_json(&app, &app.admin.token, "").await;
    assert_eq!(view["requests"]["total"], 0);
    assert_eq!(view["requests"]["by_status"], request_statuses(&[]));
    assert_eq!(
        view["time_to_available"],
        json!({"median_seconds": null, "p90_seconds": null, "samples": 0})
    );
    assert_eq!(view["downloads"]["by_status"], download_statuses(&[]));
    today_bucket(&view);
    assert_eq!(view["top_requesters"], json!([]));
    let states: Vec<(&str, &str)> = view["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["service"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("overseerr", "unknown"),
            ("plex", "unknown"),
            ("ytdlp", "unknown")
        ]
    );

    // The OpenAPI document describes the route and its answer.
    let document: Value = app.openapi_document().await;
    let operation = &document["paths"]["/api/v1/dashboard"]["get"];
    assert!(operation["responses"]["200"].is_object(), "{operation}");
    assert!(
        document["components"]["schemas"]["DashboardView"]["properties"]["time_to_available"]
            .is_object()
    );

    // min_position beyond the log: no wait can reach it, so a 400 at once rather than
    // stale figures or a wait for nothing.
    let beyond = app
        .request(Method::GET, "/api/v1/dashboard?min_position=999999999")
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 400);
    let problem: Value = beyond.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "urn:medianest:problem:unknown-min-position"
    );
    app.stop().await;
}
