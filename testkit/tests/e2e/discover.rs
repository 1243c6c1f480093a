//! Discover and request (issue 11), end to end against real PostgreSQL and NATS JetStream,
//! with the Overseerr and Plex Media Server simulators: the catalogue (search, discover
//! lists, details) with MediaNest's own availability, its cache when Overseerr is down, the
//! Plex library sync (recently added, full passes, removals, 4K, items without guids, a pass
//! cut short by a crash), availability driving requests, the submit rule for what Plex
//! already has, and bad input that changes nothing.

use std::time::Duration;

use medianest_domain::media_request::MediaRequestServices;
use medianest_integrations::plex::{PlexClientInfo, PmsClient, PmsConfig};
use medianest_store::media_requests::MediaRequests;
use medianest_store::plex_library;
use medianest_testkit::app::{
    eventually, fresh_database, TestApp, TestOptions, TestUser, PLEX_WEBHOOK_SECRET, PMS_TOKEN,
};
use medianest_testkit::plex_sim::{PmsSim, SimMovie, SimShow};
use medianest_testkit::problem::assert_problem;
use medianest_workers::{BreakerConfig, CircuitBreaker, PlexSync, RetryPolicy, Service};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// An app whose Plex sync runs every few hundred milliseconds, with a movie section "1", a
/// show section "2" and a 4K movie section "3" on the PMS simulator.
async fn spawn_with_sync() -> TestApp {
    let mut sync = TestOptions::quick_plex_sync();
    sync.sections_4k = vec!["Movies 4K".to_string()];
    let app = TestApp::spawn_with(TestOptions {
        plex_sync: Some(sync),
        ..TestOptions::default()
    })
    .await;
    let pms = pms(&app);
    pms.add_section("1", "Movies", "movie", "/data/movies");
    pms.add_section("2", "TV Shows", "show", "/data/tv");
    pms.add_section("3", "Movies 4K", "movie", "/data/movies-4k");
    app
}

fn pms(app: &TestApp) -> &PmsSim {
    app.pms.as_ref().expect("the app has a PMS simulator")
}

async fn get_as(app: &TestApp, who: &TestUser, path: &str) -> reqwest::Response {
    app.request_as(&who.token, Method::GET, path)
        .send()
        .await
        .expect("the app answers")
}

async fn json_of(response: reqwest::Response) -> Value {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("a JSON answer")
}

/// The entry for `(media_type, tmdb_id)` in a page's `results`.
fn entry<'a>(page: &'a Value, media_type: &str, tmdb_id: u64) -> &'a Value {
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|e| e["media_type"] == media_type && e["tmdb_id"] == tmdb_id)
        .unwrap_or_else(|| panic!("{media_type} {tmdb_id} in {page}"))
}

async fn submit_as(app: &TestApp, who: &TestUser, body: Value) -> reqwest::Response {
    app.request_as(&who.token, Method::POST, "/api/v1/requests")
        .json(&body)
        .send()
        .await
        .expect("the app answers")
}

fn matrix() -> Value {
    json!({"media_type": "movie", "tmdb_id": 603, "title": "The Matrix", "year": 1999, "is_4k": false})
}

fn thrones(seasons: Value) -> Value {
    json!({"media_type": "tv", "tmdb_id": 1399, "tvdb_id": 121361, "title": "Game of Thrones",
           "year": 2011, "seasons": seasons, "is_4k": false})
}

// ---------------------------------------------------------------------------------------
// The issue's end-to-end story
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_finds_the_matrix_requests_it_and_sees_it_arrive_from_plex() {
    let app = spawn_with_sync().await;
    let alice = app.sign_in_user("alice").await;

    let page = json_of(get_as(&app, &alice, "/api/v1/catalog/search?q=matrix").await).await;
    let found = entry(&page, "movie", 603);
    assert_eq!(found["title"], "The Matrix");
    assert_eq!(found["year"], 1999);
    assert!(
        found["poster_url"]
            .as_str()
            .is_some_and(|url| url.starts_with("https://image.tmdb.org/t/p/w500/")),
        "{found}"
    );
    assert_eq!(
        found["availability"]["hd"],
        json!({"status": "requestable"})
    );
    assert_eq!(
        found["availability"]["4k"],
        json!({"status": "requestable"})
    );
    assert!(
        page["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["media_type"] == "movie" || e["media_type"] == "tv"),
        "people are left out: {page}"
    );

    let response = submit_as(&app, &alice, matrix()).await;
    assert_eq!(response.status(), 202);
    let submitted: Value = response.json().await.unwrap();
    let id = submitted["id"].as_str().unwrap().to_string();
    let position = submitted["position"].as_i64().unwrap();

    let page = json_of(
        get_as(
            &app,
            &alice,
            &format!("/api/v1/catalog/search?q=matrix&min_position={position}"),
        )
        .await,
    )
    .await;
    let hd = &entry(&page, "movie", 603)["availability"]["hd"];
    assert_eq!(hd["status"], "requested");
    assert_eq!(hd["request_id"], id.as_str());
    assert_eq!(hd["request_status"], "pending");
    assert_eq!(hd["mine"], true);
    let page = json_of(app.get("/api/v1/catalog/search?q=matrix").await).await;
    assert_eq!(
        entry(&page, "movie", 603)["availability"]["hd"]["mine"],
        false
    );

    // Plex gains the film: within one recently-added pass the request is available.
    let rating_key = pms(&app).add_movie("1", SimMovie::new("The Matrix", 1999, 603));
    app.wait_for_status(&id, "available", WAIT).await;
    let events = app.events_of("media_request", &id).await;
    let available = events.last().unwrap();
    assert_eq!(available.event_type, "available");
    assert_eq!(available.payload["available"]["source"], "plex");
    assert_eq!(
        available.payload["available"]["plex_rating_key"],
        rating_key.as_str()
    );
    assert_eq!(available.metadata["actor"], "system:plex-sync");

    let page = json_of(get_as(&app, &alice, "/api/v1/catalog/search?q=matrix").await).await;
    let found = entry(&page, "movie", 603);
    assert_eq!(
        found["availability"]["hd"],
        json!({"status": "available", "plex_rating_key": rating_key})
    );
    // Plex has it in HD only: the 4K version can still be asked for.
    assert_eq!(
        found["availability"]["4k"],
        json!({"status": "requestable"})
    );

    // Asking again — by anyone — is refused, naming the Plex item, and writes nothing.
    let bob = app.sign_in_user("bob").await;
    let before = app.event_count().await;
    let problem = assert_problem(
        "a film Plex has",
        submit_as(&app, &bob, matrix()).await,
        409,
        "already-available",
    )
    .await;
    assert_eq!(problem.body["plex_rating_key"], rating_key.as_str());
    assert_eq!(problem.body["plex_title"], "The Matrix");
    // A full re-sync writes nothing new either.
    let pass = plex_library::sync_state(&app.pool).await.unwrap().pass;
    assert_eq!(
        app.post_empty("/api/v1/admin/plex/sync").await.status(),
        202
    );
    eventually("the full re-sync", WAIT, || async {
        let state = plex_library::sync_state(&app.pool).await.unwrap();
        (state.pass > pass && !state.full_running).then_some(())
    })
    .await;
    assert_eq!(app.event_count().await, before);
    assert_eq!(
        app.events_of("media_request", &id).await.len(),
        events.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_show_becomes_partially_then_fully_available_as_plex_gains_its_seasons() {
    let app = spawn_with_sync().await;
    let response = app
        .post_json("/api/v1/requests", &thrones(json!([1, 2, 3])))
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let approved = app
        .post_empty(&format!("/api/v1/requests/{id}/approve"))
        .await;
    assert_eq!(approved.status(), 200);
    app.forwarded(&id).await;
    let sent = app
        .sim()
        .received()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/api/v1/request")
        .expect("forwarded to Overseerr");
    assert_eq!(sent.body["seasons"], json!([1, 2, 3]));

    let show = pms(&app).add_show("2", SimShow::new("Game of Thrones", 2011, 1399, 121361));
    pms(&app).add_season(&show, 1, 10);
    pms(&app).add_season(&show, 2, 10);
    let view = app.wait_for_status(&id, "partially_available", WAIT).await;
    assert_eq!(view["available_seasons"], json!([1, 2]));

    pms(&app).add_season(&show, 3, 10);
    app.wait_for_status(&id, "available", WAIT).await;
    let events = app.events_of("media_request", &id).await;
    let available = events.last().unwrap();
    assert_eq!(available.payload["available"]["source"], "plex");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == "partially_available")
            .count(),
        1
    );

    // The show's page: which seasons Plex has; the show is not complete (TMDB lists 8).
    let detail = json_of(app.get("/api/v1/catalog/tv/1399").await).await;
    assert_eq!(detail["tvdb_id"], 121361);
    let seasons = detail["seasons"].as_array().unwrap();
    let season = |n: u64| seasons.iter().find(|s| s["season_number"] == n).unwrap();
    assert_eq!(season(1)["available"], true);
    assert_eq!(season(3)["available"], true);
    assert_eq!(season(4)["available"], false);
    assert!(season(1)["episode_count"].as_u64().unwrap() > 0);
    assert_eq!(detail["availability"]["hd"]["status"], "requested");
    assert_eq!(detail["availability"]["hd"]["request_status"], "available");
    assert_eq!(
        detail["availability"]["hd"]["available_seasons"],
        json!([1, 2, 3])
    );

    // What Plex has is refused; some of it, listed; the rest is a duplicate of this request.
    let bob = app.sign_in_user("bob").await;
    assert_problem(
        "every season in Plex",
        submit_as(&app, &bob, thrones(json!([1, 3]))).await,
        409,
        "already-available",
    )
    .await;
    let problem = assert_problem(
        "some seasons in Plex",
        submit_as(&app, &bob, thrones(json!([3, 4]))).await,
        422,
        "seasons-available",
    )
    .await;
    assert_eq!(problem.body["available_seasons"], json!([3]));
    let problem = assert_problem(
        "all seasons",
        submit_as(&app, &bob, thrones(json!("all"))).await,
        422,
        "seasons-available",
    )
    .await;
    assert_eq!(problem.body["available_seasons"], json!([1, 2, 3]));
    assert_problem(
        "the rest",
        submit_as(&app, &bob, thrones(json!([4, 5]))).await,
        409,
        "duplicate-request",
    )
    .await;
    assert!(
        app.sim().violations().is_empty(),
        "{:?}",
        app.sim().violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plexs_webhook_for_a_new_show_brings_a_recently_added_pass_at_once() {
    let mut sync = TestOptions::quick_plex_sync();
    sync.recent_interval = Duration::from_secs(3600);
    let app = TestApp::spawn_with(TestOptions {
        plex_sync: Some(sync),
        ..TestOptions::default()
    })
    .await;
    pms(&app).add_section("2", "TV Shows", "show", "/data/tv");
    let id = app
        .post_json("/api/v1/requests", &thrones(json!([1])))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.post_empty(&format!("/api/v1/requests/{id}/approve"))
        .await;
    app.forwarded(&id).await;
    // The first full pass ran at start, before the show existed.
    eventually("the first full pass", WAIT, || async {
        let state = plex_library::sync_state(&app.pool).await.unwrap();
        (state.pass >= 1 && !state.full_running).then_some(())
    })
    .await;
    let show = pms(&app).add_show("2", SimShow::new("Game of Thrones", 2011, 1399, 121361));
    pms(&app).add_season(&show, 1, 10);
    let payload = pms(&app).library_new_event(
        "show",
        "Game of Thrones",
        Some(2011),
        &show,
        &["tmdb://1399", "tvdb://121361"],
    );
    let url = app.url(&format!("/api/v1/webhooks/plex/{PLEX_WEBHOOK_SECRET}"));
    let response = pms(&app).send_webhook(&url, &payload, None).await;
    assert_eq!(response.status(), 204, "a show is left to the sync");
    app.wait_for_status(&id, "available", WAIT).await;
}

// ---------------------------------------------------------------------------------------
// The cache when Overseerr is down
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_overseerr_down_cached_answers_are_served_stale_and_uncached_ones_are_503() {
    let mut options = TestOptions::default();
    options.catalog.list_ttl = Duration::from_millis(1);
    options.catalog.details_ttl = Duration::from_millis(1);
    let app = TestApp::spawn_with(options).await;
    let first = app.get("/api/v1/catalog/search?q=matrix").await;
    assert_eq!(first.headers()["x-catalog-cache"], "miss");
    let cached = json_of(first).await;
    assert_eq!(
        json_of(app.get("/api/v1/catalog/movie/603").await).await["title"],
        "The Matrix"
    );
    let calls = app.sim().received().len();

    app.sim().set_down(true);
    let answer = tokio::time::timeout(WAIT, app.get("/api/v1/catalog/search?q=matrix"))
        .await
        .expect("no hang");
    assert_eq!(answer.headers()["x-catalog-cache"], "stale");
    assert_eq!(json_of(answer).await["results"], cached["results"]);
    let answer = app.get("/api/v1/catalog/movie/603").await;
    assert_eq!(answer.headers()["x-catalog-cache"], "stale");
    let uncached = tokio::time::timeout(WAIT, app.get("/api/v1/catalog/search?q=breaking"))
        .await
        .expect("no hang");
    let problem = assert_problem("nothing cached", uncached, 503, "overseerr-unavailable").await;
    assert!(problem.retry_after.is_some());
    assert_problem(
        "nothing cached",
        app.get("/api/v1/catalog/tv/1396").await,
        503,
        "overseerr-unavailable",
    )
    .await;
    // Enough failures open the breaker: then nothing is even tried, and answers stay quick.
    for _ in 0..6 {
        app.get("/api/v1/catalog/discover/trending").await;
    }
    assert_problem(
        "breaker open",
        app.get("/api/v1/catalog/discover/trending").await,
        503,
        "overseerr-unavailable",
    )
    .await;
    eventually("the breaker reported open", WAIT, || async {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM service_health WHERE service = 'overseerr'")
                .fetch_optional(&app.pool)
                .await
                .unwrap();
        (state.as_deref() == Some("open")).then_some(())
    })
    .await;

    app.sim().set_down(false);
    let fresh = eventually("Overseerr back", WAIT, || async {
        let answer = app.get("/api/v1/catalog/search?q=breaking").await;
        (answer.status() == 200).then_some(answer)
    })
    .await;
    assert_eq!(fresh.headers()["x-catalog-cache"], "miss");
    assert!(app.sim().received().len() > calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_lists_answer_in_overseerrs_order_and_details_carry_seasons() {
    let app = TestApp::spawn().await;
    for list in [
        "trending",
        "popular-movies",
        "popular-tv",
        "upcoming-movies",
        "upcoming-tv",
    ] {
        let page = json_of(
            app.get(&format!("/api/v1/catalog/discover/{list}?page=1"))
                .await,
        )
        .await;
        assert_eq!(page["page"], 1, "{list}");
        let results = page["results"].as_array().unwrap();
        assert!(!results.is_empty(), "{list}: {page}");
        let want = match list {
            "popular-movies" | "upcoming-movies" => Some("movie"),
            "popular-tv" | "upcoming-tv" => Some("tv"),
            _ => None,
        };
        for result in results {
            if let Some(want) = want {
                assert_eq!(result["media_type"], want, "{list}");
            }
            assert_eq!(result["availability"]["hd"]["status"], "requestable");
        }
    }
    let paths: Vec<String> = app.sim().received().into_iter().map(|r| r.path).collect();
    for path in [
        "/api/v1/discover/trending",
        "/api/v1/discover/movies",
        "/api/v1/discover/tv",
        "/api/v1/discover/movies/upcoming",
        "/api/v1/discover/tv/upcoming",
    ] {
        assert!(paths.iter().any(|p| p == path), "{path} in {paths:?}");
    }
    // A second read is a cache hit: Overseerr is not asked again.
    let calls = app.sim().received().len();
    let again = app.get("/api/v1/catalog/discover/trending?page=1").await;
    assert_eq!(again.headers()["x-catalog-cache"], "hit");
    assert_eq!(app.sim().received().len(), calls);

    let show = json_of(app.get("/api/v1/catalog/tv/1396").await).await;
    assert_eq!(show["title"], "Breaking Bad");
    assert_eq!(show["seasons"].as_array().unwrap().len(), 5);
    let season = json_of(app.get("/api/v1/catalog/tv/1396/season/1").await).await;
    assert_eq!(season["season_number"], 1);
    assert!(!season["episodes"].as_array().unwrap().is_empty());
    let movie = json_of(app.get("/api/v1/catalog/movie/603").await).await;
    assert_eq!(movie["title"], "The Matrix");
    assert_eq!(movie["availability"]["4k"]["status"], "requestable");
    assert!(
        app.sim().violations().is_empty(),
        "{:?}",
        app.sim().violations()
    );
}

// ---------------------------------------------------------------------------------------
// The Plex sync
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_keys_items_by_guid_marks_4k_skips_legacy_items_and_notices_removals() {
    let app = spawn_with_sync().await;
    let pms = pms(&app);
    let hd = pms.add_movie("1", SimMovie::new("The Matrix", 1999, 603));
    let reloaded = pms.add_movie(
        "1",
        SimMovie::new("The Matrix Reloaded", 2003, 604).with_resolution("4k"),
    );
    let in_4k_section = pms.add_movie("3", SimMovie::new("The Matrix Revolutions", 2003, 605));
    pms.add_movie("1", SimMovie::legacy("Home Movie", 2001));
    let mut odd = SimMovie::new("Odd Guids", 2001, 1);
    odd.guids = vec![
        "tmdb://abc".into(),
        "tmdb://-5".into(),
        "tmdb://".into(),
        format!("tmdb://{}", "9".repeat(40)),
    ];
    pms.add_movie("1", odd);

    // A reservation whose request was never written (a submission cut off by a crash) must
    // not stop the sync.
    sqlx::query(
        "INSERT INTO media_request_reservations (media_type, tmdb_id, is_4k, request_id)
         VALUES ('movie', 550, false, gen_random_uuid())",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let fight_club = pms.add_movie("1", SimMovie::new("Fight Club", 1999, 550));
    let show = pms.add_show("2", SimShow::new("Breaking Bad", 2008, 1396, 81189));
    pms.add_season(&show, 1, 7);
    let season_two = pms.add_season(&show, 2, 13);
    let member = app.sign_in_user("carol").await;
    let events_before = app.event_count().await;
    assert_problem(
        "non-admin",
        app.request_as(&member.token, Method::POST, "/api/v1/admin/plex/sync")
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    let asked = app.post_empty("/api/v1/admin/plex/sync").await;
    assert_eq!(asked.status(), 202);
    let rows = eventually("the full pass", WAIT, || async {
        let rows: Vec<(String, i64, bool, bool)> = sqlx::query_as(
            "SELECT rating_key, tmdb_id, has_hd, has_4k FROM plex_library ORDER BY tmdb_id",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap();
        (rows.len() == 5).then_some(rows)
    })
    .await;
    assert_eq!(
        rows,
        vec![
            (fight_club.clone(), 550, true, false),
            (hd.clone(), 603, true, false),
            (reloaded.clone(), 604, false, true),
            (in_4k_section.clone(), 605, false, true),
            (show.clone(), 1396, true, false),
        ]
    );
    let state = plex_library::sync_state(&app.pool).await.unwrap();
    assert_eq!(state.last_error, None);
    assert_eq!(
        app.event_count().await,
        events_before,
        "items without guids, and a reservation without a request, write nothing"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let skipped: f64 = metrics
        .lines()
        .find(|l| l.starts_with("medianest_plex_items_skipped_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(
        skipped >= 2.0,
        "the legacy and the odd item are counted: {metrics}"
    );

    // The catalogue says what Plex has, per version.
    let page = json_of(app.get("/api/v1/catalog/search?q=matrix").await).await;
    assert_eq!(
        entry(&page, "movie", 604)["availability"]["hd"]["status"],
        "requestable"
    );
    assert_eq!(
        entry(&page, "movie", 604)["availability"]["4k"]["status"],
        "available"
    );
    // A 4K request for what Plex has in HD only is accepted.
    let response = app
        .post_json(
            "/api/v1/requests",
            &json!({"media_type": "movie", "tmdb_id": 603, "title": "The Matrix", "is_4k": true}),
        )
        .await;
    assert_eq!(response.status(), 202);

    // Removed from Plex: gone after the next full pass (a season too).
    pms.remove_item(&hd);
    pms.remove_item(&season_two);
    let state = plex_library::sync_state(&app.pool).await.unwrap();
    app.post_empty("/api/v1/admin/plex/sync").await;
    eventually("the removal", WAIT, || async {
        let now = plex_library::sync_state(&app.pool).await.unwrap();
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM plex_library WHERE rating_key = $1")
                .bind(&hd)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        (now.pass > state.pass && !now.full_running && left == 0).then_some(())
    })
    .await;
    assert_eq!(plex_library::count(&app.pool).await.unwrap(), 4);
    let seasons: Vec<i32> = sqlx::query_scalar(
        "SELECT season_number FROM plex_library_seasons WHERE show_rating_key = $1 ORDER BY 1",
    )
    .bind(&show)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(seasons, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pass_cut_short_by_a_crash_resumes_where_it_stopped_and_repeats_nothing() {
    let (_url, pool) = fresh_database().await;
    medianest_store::migrate(&pool).await.unwrap();
    let pms = PmsSim::start("crash-test-pms", PMS_TOKEN).await;
    pms.add_section("1", "Movies", "movie", "/data/movies");
    pms.add_movies_bulk("1", 120, 10_000);
    let requests = Arc::new(MediaRequests::new(
        pool.clone(),
        MediaRequestServices::default(),
    ));
    let client = PmsClient::new(PmsConfig::new(
        pms.base_url().parse().unwrap(),
        PMS_TOKEN,
        PlexClientInfo::medianest("crash-test".to_string()),
    ))
    .unwrap();
    let mut config = TestOptions::quick_plex_sync();
    config.page_size = 50;
    let sync = PlexSync::new(
        pool.clone(),
        client,
        requests,
        Arc::new(CircuitBreaker::new(Service::Plex, BreakerConfig::default())),
        RetryPolicy {
            attempts: 1,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        },
        config,
    );

    // Each PMS call takes a while; the pass is killed after its first page is saved.
    pms.set_delay(Duration::from_millis(300));
    let running = {
        let sync = sync.clone();
        tokio::spawn(async move { sync.full_pass(&CancellationToken::new()).await })
    };
    eventually("the first page saved", WAIT, || async {
        let progress = plex_library::progress(&pool, 1, "1", 1).await.unwrap();
        (progress.next_start == 50).then_some(())
    })
    .await;
    running.abort();
    let _ = running.await;
    assert_eq!(plex_library::count(&pool).await.unwrap(), 50);
    let state = plex_library::sync_state(&pool).await.unwrap();
    assert!(state.full_running, "the pass is still under way");

    // Rows the pass will not see in section 1: one the server has (in another section, as
    // an item skipped by paging would be), one it does not.
    pms.add_section("2", "More Movies", "movie", "/data/more");
    let elsewhere = pms.add_movie("2", SimMovie::new("Fight Club", 1999, 550));
    for (rating_key, tmdb_id) in [(elsewhere.as_str(), 550_i64), ("999999", 551)] {
        sqlx::query(
            "INSERT INTO plex_library (rating_key, section_key, media_type, tmdb_id, title, has_hd,
                                       has_4k, last_seen_pass)
             VALUES ($1, '1', 'movie', $2, 'x', true, false, 0)",
        )
        .bind(rating_key)
        .bind(tmdb_id)
        .execute(&pool)
        .await
        .unwrap();
    }
    pms.set_delay(Duration::ZERO);
    let calls_before = pms.received().len();
    let report = sync.full_pass(&CancellationToken::new()).await.unwrap();
    assert_eq!(report.pass, 1, "the same pass is resumed");
    assert_eq!(
        report.items, 71,
        "only what was left is read again (and section 2)"
    );
    assert_eq!(
        report.removed, 1,
        "only what the server no longer has is removed"
    );
    assert_eq!(plex_library::count(&pool).await.unwrap(), 121);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM plex_library WHERE rating_key = $1")
        .bind(&elsewhere)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    let starts: Vec<String> = pms.received()[calls_before..]
        .iter()
        .filter(|r| r.path.contains("/library/sections/1/all"))
        .filter_map(|r| {
            let url = reqwest::Url::parse(&format!("http://pms{}", r.path)).ok()?;
            url.query_pairs()
                .find(|(name, _)| name == "X-Plex-Container-Start")
                .map(|(_, value)| value.into_owned())
        })
        .collect();
    assert_eq!(starts, vec!["50", "100"], "no page is read twice");
    let state = plex_library::sync_state(&pool).await.unwrap();
    assert!(!state.full_running);
    assert_eq!(state.pass, 1);
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_catalogue_input_gets_a_clear_problem_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let before = app.event_count().await;
    let long = "a".repeat(201);
    for (case, path, status, slug) in [
        (
            "no q",
            "/api/v1/catalog/search".to_string(),
            400,
            "malformed-request",
        ),
        (
            "empty q",
            "/api/v1/catalog/search?q=".to_string(),
            400,
            "malformed-request",
        ),
        (
            "blank q",
            "/api/v1/catalog/search?q=%20%20".to_string(),
            400,
            "malformed-request",
        ),
        (
            "long q",
            format!("/api/v1/catalog/search?q={long}"),
            400,
            "malformed-request",
        ),
        (
            "control",
            "/api/v1/catalog/search?q=ma%01trix".to_string(),
            400,
            "malformed-request",
        ),
        (
            "NUL",
            "/api/v1/catalog/search?q=ma%00trix".to_string(),
            400,
            "invalid-text",
        ),
        (
            "page 0",
            "/api/v1/catalog/search?q=matrix&page=0".to_string(),
            400,
            "malformed-request",
        ),
        (
            "page 501",
            "/api/v1/catalog/search?q=matrix&page=501".to_string(),
            400,
            "malformed-request",
        ),
        (
            "page x",
            "/api/v1/catalog/discover/trending?page=x".to_string(),
            400,
            "malformed-request",
        ),
        (
            "unknown parameter",
            "/api/v1/catalog/search?q=matrix&sort=1".to_string(),
            400,
            "malformed-request",
        ),
        (
            "unknown list",
            "/api/v1/catalog/discover/popular".to_string(),
            404,
            "not-found",
        ),
        (
            "non-numeric id",
            "/api/v1/catalog/movie/abc".to_string(),
            404,
            "not-found",
        ),
        (
            "zero id",
            "/api/v1/catalog/tv/0".to_string(),
            404,
            "not-found",
        ),
        (
            "huge id",
            "/api/v1/catalog/movie/99999999999999999999".to_string(),
            404,
            "not-found",
        ),
        (
            "unknown movie",
            "/api/v1/catalog/movie/999999".to_string(),
            404,
            "not-found",
        ),
        (
            "unknown show",
            "/api/v1/catalog/tv/999999".to_string(),
            404,
            "not-found",
        ),
        (
            "unknown season",
            "/api/v1/catalog/tv/1396/season/99".to_string(),
            404,
            "not-found",
        ),
    ] {
        assert_problem(case, app.get(&path).await, status, slug).await;
    }
    let anonymous = app
        .http
        .get(app.url("/api/v1/catalog/search?q=matrix"))
        .send()
        .await
        .unwrap();
    assert_problem("anonymous", anonymous, 401, "unauthenticated").await;

    // Overseerr answering what its API does not describe: 502, never 500.
    for body in [
        "{not json",
        r#"{"page": 1, "results": "nope"}"#,
        r#"{"page": 1, "totalPages": 1, "totalResults": 1, "results": [{"mediaType": "movie"}]}"#,
        "<html>proxy error</html>",
    ] {
        app.sim().answer_next_raw(1, 200, body);
        assert_problem(
            body,
            app.get("/api/v1/catalog/search?q=unusual").await,
            502,
            "overseerr-bad-answer",
        )
        .await;
    }
    app.sim().answer_next_raw(1, 200, r#"{"id": "x"}"#);
    assert_problem(
        "a movie of another shape",
        app.get("/api/v1/catalog/movie/604").await,
        502,
        "overseerr-bad-answer",
    )
    .await;
    app.sim()
        .answer_next_raw(1, 404, r#"{"message": "Not Found"}"#);
    assert_problem(
        "Overseerr's 404",
        app.get("/api/v1/catalog/movie/605").await,
        404,
        "not-found",
    )
    .await;

    // Hostile but valid queries reach Overseerr verbatim.
    for q in [
        "'; DROP TABLE requests; --",
        "<script>alert(1)</script>",
        "Amélie & co #1 100%",
        "\"quoted\" ?x=y",
    ] {
        let url = reqwest::Url::parse_with_params(&app.url("/api/v1/catalog/search"), &[("q", q)])
            .unwrap();
        let answer = app
            .http
            .get(url)
            .bearer_auth(&app.admin.token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{q}");
        let sent = app
            .sim()
            .received()
            .into_iter()
            .rev()
            .find(|r| r.path == "/api/v1/search")
            .unwrap();
        let query: Vec<(String, String)> =
            reqwest::Url::parse(&format!("http://sim/?{}", sent.query.unwrap_or_default()))
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
        assert!(
            query.contains(&("query".to_string(), q.to_string())),
            "{q}: {query:?}"
        );
    }
    assert_eq!(app.event_count().await, before, "nothing was written");

    // Without Overseerr there is no catalogue.
    let bare = TestApp::spawn_with(TestOptions {
        overseerr: false,
        ..TestOptions::default()
    })
    .await;
    assert_problem(
        "no Overseerr",
        bare.get("/api/v1/catalog/search?q=matrix").await,
        503,
        "catalog-disabled",
    )
    .await;
}
