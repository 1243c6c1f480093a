//! Replays (docs/design.md §5; issue 5): every read model equals what a full replay of the log
//! produces, row by row; a replay swapped in while commands keep arriving ends with the rows
//! of an uninterrupted run, with no gap and no double count; one replay of a projection runs
//! at a time; a damaged read model is repaired by a replay.

use std::sync::Arc;
use std::time::Duration;

use medianest_projections::replay::{Replay, ReplayError, ReplayOptions, ReplayReport};
use medianest_projections::Projection;
use medianest_store::lock::InstanceLock;
use medianest_testkit::app::TestApp;
use medianest_testkit::history::{projections_caught_up, scripted, submit_as};

/// An admin's movie request written through the store (no app): submitted and
/// auto-approved, two events.
async fn a_movie_request(pool: &sqlx::PgPool) -> uuid::Uuid {
    use medianest_domain::media_request::{Media, MediaRequestCommand, MediaType, TmdbId};
    let requests = medianest_store::media_requests::MediaRequests::new(
        pool.clone(),
        medianest_domain::media_request::MediaRequestServices::default(),
    );
    let id = uuid::Uuid::now_v7();
    let submit = MediaRequestCommand::Submit {
        requested_by: medianest_domain::Actor::admin(uuid::Uuid::now_v7()),
        media: Media {
            media_type: MediaType::Movie,
            tmdb_id: TmdbId::new(603).expect("id"),
            tvdb_id: None,
            title: "The Matrix".to_string(),
            year: Some(1999),
        },
        seasons: None,
        is_4k: false,
        note: None,
    };
    requests
        .execute(
            id.into(),
            submit,
            None,
            &medianest_store::EventMetadata::default(),
        )
        .await
        .expect("submitted and auto-approved");
    id
}

async fn dry_run(app: &TestApp, projection: Arc<dyn Projection>) -> ReplayReport {
    Replay::new(
        app.pool.clone(),
        projection,
        ReplayOptions {
            dry_run: true,
            ..ReplayOptions::default()
        },
    )
    .run(&|_| {})
    .await
    .expect("a dry run")
}

fn assert_identical(report: &ReplayReport) {
    for table in &report.tables {
        assert!(
            table.identical(),
            "{}.{} differs from its replay: {table:?}",
            report.projection,
            table.table
        );
    }
}

#[tokio::test]
async fn every_read_model_matches_a_full_replay_row_by_row() {
    let app = TestApp::spawn().await;
    let history = scripted(&app).await;
    projections_caught_up(&app).await;

    for projection in medianest_projections::all() {
        let report = dry_run(&app, projection.clone()).await;
        assert!(!report.swapped);
        assert_eq!(report.tables.len(), projection.tables().len());
        assert_identical(&report);
    }
    // The comparison is not vacuous: the tables hold the history.
    let rows = |table: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    assert_eq!(rows("requests").await, history.requests.len() as i64);
    assert_eq!(rows("downloads").await, history.downloads.len() as i64);
    assert_eq!(rows("users").await, 3, "the harness's admin, alice and bob");
    assert!(rows("sessions").await >= 3);
    // A dry run leaves nothing behind.
    let schemas: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'replay_%'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("schemas");
    assert_eq!(schemas, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_damaged_read_model_is_found_by_a_dry_run_and_repaired_by_a_replay() {
    let app = TestApp::spawn().await;
    let history = scripted(&app).await;
    projections_caught_up(&app).await;
    let matrix: uuid::Uuid = history.requests[0].parse().expect("a uuid");
    sqlx::query("UPDATE requests SET title = 'Teh Matrix', status = 'pending' WHERE id = $1")
        .bind(matrix)
        .execute(&app.pool)
        .await
        .expect("damage");
    sqlx::query("DELETE FROM downloads WHERE id = $1")
        .bind(history.downloads[1])
        .execute(&app.pool)
        .await
        .expect("damage");

    let requests = medianest_projections::by_name("requests").expect("requests");
    let report = dry_run(&app, requests.clone()).await;
    assert_eq!(report.tables[0].only_live, 1);
    assert_eq!(report.tables[0].only_rebuilt, 1);
    // The dry run changed nothing.
    let title: String = sqlx::query_scalar("SELECT title FROM requests WHERE id = $1")
        .bind(matrix)
        .fetch_one(&app.pool)
        .await
        .expect("title");
    assert_eq!(title, "Teh Matrix");

    for name in ["requests", "downloads"] {
        let projection = medianest_projections::by_name(name).expect("a projection");
        let report = Replay::new(app.pool.clone(), projection, ReplayOptions::default())
            .run(&|_| {})
            .await
            .expect("a replay");
        assert!(report.swapped);
        assert!(!report.identical(), "the replay changed the damaged rows");
    }
    let (title, status): (String, String) =
        sqlx::query_as("SELECT title, status FROM requests WHERE id = $1")
            .bind(matrix)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(
        (title.as_str(), status.as_str()),
        ("The Matrix", "available")
    );
    let cancelled: String = sqlx::query_scalar("SELECT status FROM downloads WHERE id = $1")
        .bind(history.downloads[1])
        .fetch_one(&app.pool)
        .await
        .expect("the deleted row is back");
    assert_eq!(cancelled, "cancelled");
    // The query API serves the swapped table.
    let detail: serde_json::Value = app
        .get(&format!("/api/v1/requests/{matrix}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(detail["media"]["title"], "The Matrix");
    // The swapped tables keep the migrations' index names.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'requests'
          ORDER BY indexname",
    )
    .fetch_all(&app.pool)
    .await
    .expect("indexes");
    assert_eq!(
        indexes,
        [
            "requests_media_idx",
            "requests_overseerr_idx",
            "requests_pkey",
            "requests_requested_by_idx",
            "requests_status_idx"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_replay_while_commands_arrive_ends_with_the_rows_of_an_uninterrupted_run() {
    let app = Arc::new(TestApp::spawn().await);
    let history = scripted(&app).await;
    // alice signed out at the end of the history.
    let alice = app.sign_in_user("carol").await;
    // The writer sends half of its commands, waits for the first round of replays to end,
    // sends the rest during the second, and ends only after it: the replays and the commands
    // overlap however fast either is.
    let rounds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let round_reached = |rounds: Arc<std::sync::atomic::AtomicUsize>, n: usize| async move {
        while rounds.load(std::sync::atomic::Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let writer = {
        let (app, alice, rounds) = (app.clone(), alice.clone(), Arc::clone(&rounds));
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..40u32 {
                if n == 20 {
                    round_reached(Arc::clone(&rounds), 1).await;
                }
                let submitted = submit_as(&app, &alice, 10_000 + n, &format!("Film {n}")).await;
                ids.push(submitted["id"].as_str().expect("an id").to_string());
                if n % 3 == 0 {
                    let approved = app
                        .post_empty(&format!("/api/v1/requests/{}/approve", ids[ids.len() - 1]))
                        .await;
                    assert_eq!(approved.status(), 200);
                }
            }
            round_reached(rounds, 2).await;
            ids
        })
    };
    // Small batches: the rebuild spans many transactions while the commands arrive.
    let options = ReplayOptions {
        batch_size: 3,
        ..ReplayOptions::default()
    };
    let mut swaps = 0;
    while !writer.is_finished() || swaps == 0 {
        for name in ["requests", "users", "sessions"] {
            let projection = medianest_projections::by_name(name).expect("a projection");
            let report = Replay::new(app.pool.clone(), projection.clone(), options)
                .run(&|_| {})
                .await
                .expect("a replay");
            assert!(report.swapped);
            // A dry run compares at the live checkpoint: exact even while commands arrive.
            let dry = ReplayOptions {
                dry_run: true,
                ..options
            };
            let report = Replay::new(app.pool.clone(), projection, dry)
                .run(&|_| {})
                .await
                .expect("a dry run");
            assert_identical(&report);
        }
        swaps += 1;
        rounds.store(swaps, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        swaps >= 2,
        "the replays overlapped the commands ({swaps} rounds)"
    );
    let written = writer.await.expect("the writer");
    projections_caught_up(&app).await;

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM requests")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count as usize, history.requests.len() + written.len());
    for name in ["requests", "users", "sessions"] {
        let projection = medianest_projections::by_name(name).expect("a projection");
        assert_identical(&dry_run(&app, projection).await);
    }
    // The live projection went on applying after the swaps: a new request shows up.
    let late = submit_as(&app, &alice, 20_000, "After the replay").await;
    let detail = app
        .get(&format!(
            "/api/v1/requests/{}?min_position={}",
            late["id"].as_str().expect("an id"),
            late["position"]
        ))
        .await;
    assert_eq!(detail.status(), 200);
    Arc::try_unwrap(app)
        .ok()
        .expect("the only handle")
        .stop()
        .await;
}

#[tokio::test]
async fn one_replay_of_a_projection_runs_at_a_time() {
    let app = TestApp::spawn().await;
    let held = InstanceLock::try_acquire(&app.pool, "replay:requests")
        .await
        .expect("a connection")
        .expect("the lock is free");
    let requests = medianest_projections::by_name("requests").expect("requests");
    let refused = Replay::new(app.pool.clone(), requests.clone(), ReplayOptions::default())
        .run(&|_| {})
        .await;
    assert!(
        matches!(refused, Err(ReplayError::Busy(ref name)) if name == "requests"),
        "{refused:?}"
    );
    held.release().await.expect("released");
    let report = Replay::new(app.pool.clone(), requests, ReplayOptions::default())
        .run(&|_| {})
        .await
        .expect("runs once the lock is free");
    assert!(report.swapped);
    app.stop().await;
}

#[tokio::test]
async fn status_measures_how_far_a_projection_is_behind_the_log() {
    let (_url, pool) = medianest_testkit::app::fresh_database().await;
    a_movie_request(&pool).await;
    let projection = medianest_projections::by_name("requests").expect("requests");
    let status = |pool: sqlx::PgPool, projection: Arc<dyn Projection>| async move {
        medianest_projections::status::status(&pool, &[projection])
            .await
            .expect("status")
            .remove(0)
    };
    // The log's fence (`tx_id < pg_snapshot_xmin(…)`) is the whole cluster's: a transaction
    // another test holds open keeps both events in front of it for a moment.
    let behind = medianest_testkit::app::eventually(
        "both events behind the fence",
        Duration::from_secs(20),
        || {
            let (pool, projection) = (pool.clone(), projection.clone());
            async move {
                let behind = status(pool, projection).await;
                (behind.lag_events == 2).then_some(behind)
            }
        },
    )
    .await;
    assert_eq!(behind.projection, "requests");
    assert_eq!(behind.lag_events, 2, "submitted and approved");
    assert_eq!(behind.head, 2);
    assert!(behind.lag_seconds >= 0.0);
    assert_eq!(behind.checkpoint, medianest_store::Cursor::default());

    let last = medianest_store::log::read_last(&pool, 1, None)
        .await
        .expect("the last event")[0]
        .cursor();
    medianest_store::checkpoint::save(&pool, "projection-requests", last)
        .await
        .expect("saved");
    let caught_up = status(pool.clone(), projection).await;
    assert_eq!(caught_up.lag_events, 0);
    assert_eq!(caught_up.lag_seconds, 0.0);
    assert_eq!(caught_up.checkpoint, last);
}

#[tokio::test]
async fn projection_lag_and_throughput_are_on_metrics() {
    let app = TestApp::spawn().await;
    app.submit_movie(603, "The Matrix").await;
    let metrics = medianest_testkit::app::eventually(
        "projection gauges on /metrics",
        Duration::from_secs(20),
        || async {
            let text = app.get("/metrics").await.text().await.ok()?;
            let complete = medianest_projections::all().iter().all(|p| {
                ["lag_events", "lag_seconds", "events_per_second"]
                    .iter()
                    .all(|gauge| {
                        text.contains(&format!(
                            "medianest_projection_{gauge}{{projection=\"{}\"}}",
                            p.name()
                        ))
                    })
            });
            complete.then_some(text)
        },
    )
    .await;
    assert!(metrics.contains("# TYPE medianest_projection_lag_events gauge"));
    app.stop().await;
}

#[tokio::test]
async fn a_projection_that_never_ran_is_built_from_the_whole_log_first() {
    let (_url, pool) = medianest_testkit::app::fresh_database().await;
    let id = a_movie_request(&pool).await;
    let search = medianest_projections::by_name("request_search").expect("search");
    let built = medianest_projections::replay::bootstrap(&pool, search.clone())
        .await
        .expect("bootstrap")
        .expect("built from the log");
    assert_eq!(built.events, 2, "submitted and approved");
    let title: String = sqlx::query_scalar("SELECT title FROM request_search WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("the request is searchable");
    assert_eq!(title, "The Matrix");
    let words: Vec<String> =
        sqlx::query_scalar("SELECT word FROM request_search_words WHERE word IN ('the', 'matrix')")
            .fetch_all(&pool)
            .await
            .expect("the vocabulary");
    assert_eq!(words.len(), 2, "built with the rows: {words:?}");
    let checkpoint = medianest_store::checkpoint::load(&pool, "projection-request_search")
        .await
        .expect("checkpoint");
    assert_eq!(checkpoint.position, 2);
    // Once it has a checkpoint, it is not built again.
    assert!(medianest_projections::replay::bootstrap(&pool, search)
        .await
        .expect("bootstrap")
        .is_none());
    // Nor is a projection whose aggregate types have no events yet.
    let downloads = medianest_projections::by_name("downloads").expect("downloads");
    assert!(medianest_projections::replay::bootstrap(&pool, downloads)
        .await
        .expect("bootstrap")
        .is_none());
}
