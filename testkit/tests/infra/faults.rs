//! Outages (issue 12), against real PostgreSQL and NATS JetStream with the app reaching
//! PostgreSQL through a TCP fault proxy ([`medianest_testkit::fault_proxy`]): a saga whose
//! call is in flight when the database goes away records its effect once the database is
//! back — once, not twice, and without a restart.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use medianest_nats::{FeedEvent, LogFeed};
use medianest_store::{checkpoint, EventMetadata};
use medianest_testkit::app::{eventually, fresh_database, TestApp, TestOptions};
use medianest_workers::consumer::{self, Backoff, Saga, Step};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_while_overseerr_answers_loses_no_forward_and_repeats_none() {
    let app = TestApp::spawn_with(TestOptions {
        database_proxy: true,
        ..TestOptions::default()
    })
    .await;
    let proxy = app.db_proxy.as_ref().expect("a database proxy");
    let id = app.submit_movie(603, "The Matrix").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Overseerr is slow: the forwarder's call is in flight when the database goes away.
    app.sim().set_delay(Duration::from_secs(2));
    let approved = app
        .post_empty(&format!("/api/v1/requests/{id}/approve"))
        .await;
    assert_eq!(approved.status(), 200);
    eventually("the forwarder's call in flight", WAIT, || async {
        app.sim()
            .received()
            .iter()
            .any(|r| r.method == "POST" && r.path == "/api/v1/request")
            .then_some(())
    })
    .await;
    proxy.set_down(true);
    // Overseerr creates the request meanwhile; the forwarder cannot record it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(app.sim().requests().len(), 1);
    proxy.set_down(false);
    app.sim().set_delay(Duration::ZERO);

    let overseerr_id = app.forwarded(&id).await;
    let requests = app.sim().requests();
    assert_eq!(
        requests.len(),
        1,
        "Overseerr has the request once: {requests:?}"
    );
    assert_eq!(requests[0]["id"], overseerr_id);
    let events = app.events_of("media_request", &id).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        ["submitted", "approved", "forwarded"],
        "nothing failed, nothing twice"
    );
    assert!(
        app.sim().violations().is_empty(),
        "{:?}",
        app.sim().violations()
    );
}

/// A saga that fails transiently the first `failures` times it sees each event, and records
/// what it was handed.
struct Flaky {
    failures: usize,
    tries: AtomicUsize,
    handled: Mutex<Vec<String>>,
}

#[async_trait]
impl Saga for Flaky {
    fn name(&self) -> &'static str {
        "saga-flaky-test"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["media_request"]
    }

    fn wants(&self, event_type: &str) -> bool {
        event_type == "submitted"
    }

    async fn handle(&self, event: &FeedEvent, _shutdown: &CancellationToken) -> Step {
        self.handled
            .lock()
            .unwrap()
            .push(event.aggregate_id().to_string());
        let tries = self.tries.fetch_add(1, Ordering::SeqCst) + 1;
        if tries.is_multiple_of(self.failures + 1) {
            Step::Done
        } else {
            Step::retry(format!("try {tries} fails"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_skeleton_hands_a_failed_event_over_again_in_order_and_acks_only_when_done() {
    let (_url, pool) = fresh_database().await;
    let requests =
        medianest_store::media_requests::MediaRequests::new(pool.clone(), Default::default());
    let mut ids = Vec::new();
    for (tmdb_id, title) in [(603, "The Matrix"), (604, "The Matrix Reloaded")] {
        let id = uuid::Uuid::now_v7();
        let command = medianest_domain::media_request::MediaRequestCommand::Submit {
            requested_by: medianest_domain::Actor::admin(uuid::Uuid::now_v7()),
            media: medianest_domain::media_request::Media {
                media_type: medianest_domain::media_request::MediaType::Movie,
                tmdb_id: medianest_domain::media_request::TmdbId::new(tmdb_id).unwrap(),
                tvdb_id: None,
                title: title.to_string(),
                year: None,
            },
            seasons: None,
            is_4k: false,
            note: None,
        };
        requests
            .execute(id.into(), command, None, &EventMetadata::for_actor("admin"))
            .await
            .unwrap();
        ids.push(id.to_string());
    }
    let saga = Arc::new(Flaky {
        failures: 2,
        tries: AtomicUsize::new(0),
        handled: Mutex::new(Vec::new()),
    });
    let feed = LogFeed::new(pool.clone());
    let shutdown = CancellationToken::new();
    let backoff = Backoff {
        min: Duration::from_millis(20),
        max: Duration::from_millis(40),
    };
    let running = {
        let (saga, shutdown) = (Arc::clone(&saga), shutdown.clone());
        tokio::spawn(async move { consumer::run(saga.as_ref(), &feed, backoff, &shutdown).await })
    };
    eventually("both events handled", WAIT, || async {
        (saga.handled.lock().unwrap().len() >= 6).then_some(())
    })
    .await;
    let head = medianest_store::log::head_position(&pool).await.unwrap();
    eventually("the checkpoint at the last event", WAIT, || async {
        let at = checkpoint::load(&pool, "saga-flaky-test").await.unwrap();
        (at.position == head).then_some(at)
    })
    .await;
    shutdown.cancel();
    running.await.unwrap();
    let handled = saga.handled.lock().unwrap().clone();
    assert_eq!(
        handled,
        [&ids[0], &ids[0], &ids[0], &ids[1], &ids[1], &ids[1]].map(String::clone),
        "each event tried until done, the first before the second"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_left_approved_too_long_is_forwarded_by_the_reconciler_once() {
    use medianest_integrations::overseerr::{OverseerrClient, OverseerrConfig};
    use medianest_projections::requests::RequestsProjection;
    use medianest_projections::ProjectionRunner;
    use medianest_store::media_requests::MediaRequests;
    use medianest_testkit::overseerr_sim::OverseerrSim;
    use medianest_workers::{OverseerrForwarder, OverseerrReconciler, RetryPolicy};

    let (_url, pool) = fresh_database().await;
    let requests = Arc::new(MediaRequests::new(pool.clone(), Default::default()));
    let id = uuid::Uuid::now_v7();
    let submit = medianest_domain::media_request::MediaRequestCommand::Submit {
        requested_by: medianest_domain::Actor::admin(uuid::Uuid::now_v7()),
        media: medianest_domain::media_request::Media {
            media_type: medianest_domain::media_request::MediaType::Movie,
            tmdb_id: medianest_domain::media_request::TmdbId::new(603).unwrap(),
            tvdb_id: None,
            title: "The Matrix".to_string(),
            year: Some(1999),
        },
        seasons: None,
        is_4k: false,
        note: None,
    };
    // An admin's request is approved on submit; no forwarder ever sees its event here.
    requests
        .execute(id.into(), submit, None, &EventMetadata::for_actor("admin"))
        .await
        .unwrap();
    let runner = ProjectionRunner::new(
        pool.clone(),
        Arc::new(LogFeed::new(pool.clone())),
        Arc::new(RequestsProjection),
    );
    let name = runner.checkpoint_name();
    // The log is read behind the transaction fence, which other tests' transactions on the
    // same server can hold back for a moment.
    let stored = eventually("both events behind the fence", WAIT, || async {
        let events = medianest_store::log::read_after(&pool, Default::default(), 100, None)
            .await
            .unwrap();
        (events.len() == 2).then_some(events)
    })
    .await;
    for stored in stored {
        let event = FeedEvent::from_stored(&stored).unwrap();
        runner.apply_once(&name, &event).await.unwrap();
    }

    let sim = OverseerrSim::start().await;
    let client = OverseerrClient::new(OverseerrConfig {
        base_url: sim.base_url().parse().unwrap(),
        api_key: sim.api_key().to_string(),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let breaker = Arc::new(medianest_workers::CircuitBreaker::new(
        medianest_workers::Service::Overseerr,
        medianest_workers::BreakerConfig::default(),
    ));
    let forwarder = OverseerrForwarder::new(
        Arc::clone(&requests),
        client.clone(),
        Arc::new(LogFeed::new(pool.clone())),
        RetryPolicy {
            attempts: 1,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        },
        Arc::clone(&breaker),
    );
    let reconciler = |after| {
        OverseerrReconciler::new(
            pool.clone(),
            Arc::clone(&requests),
            client.clone(),
            Duration::from_secs(3600),
            Arc::clone(&breaker),
        )
        .with_redrive(forwarder.clone(), after)
    };

    // Not stuck for long enough yet: left alone.
    reconciler(Duration::from_secs(3600)).pass().await.unwrap();
    assert!(sim.requests().is_empty());

    let redriven = reconciler(Duration::ZERO).pass().await.unwrap();
    assert_eq!(redriven, 1, "the stuck request is re-driven");
    assert_eq!(
        sim.requests().len(),
        1,
        "received: {:?}",
        sim.received().len()
    );
    let kinds = |events: Vec<medianest_store::StoredEvent>| {
        events.into_iter().map(|e| e.event_type).collect::<Vec<_>>()
    };
    let events = eventually("the forwarded event behind the fence", WAIT, || async {
        let events = medianest_store::log::read_after(&pool, Default::default(), 100, None)
            .await
            .unwrap();
        (events.len() >= 3).then_some(events)
    })
    .await;
    assert_eq!(kinds(events), ["submitted", "approved", "forwarded"]);

    // The read model still says approved (no projection ran): a second pass finds the
    // request forwarded and does nothing.
    reconciler(Duration::ZERO).pass().await.unwrap();
    assert_eq!(sim.requests().len(), 1);
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(written, 3);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_overseerr_call_does_not_hold_up_other_requests() {
    let app = TestApp::spawn().await;
    app.sim().set_delay(Duration::from_millis(1500));
    let mut ids = Vec::new();
    for (tmdb_id, title) in [
        (550, "Fight Club"),
        (603, "The Matrix"),
        (27205, "Inception"),
    ] {
        ids.push(app.submit_and_approve(tmdb_id, title).await);
    }
    for id in &ids {
        app.forwarded(id).await;
    }
    assert!(
        app.sim().max_in_flight() >= 2,
        "the forwarder had several calls in flight at once: {}",
        app.sim().max_in_flight()
    );
    for id in &ids {
        let events = app.events_of("media_request", id).await;
        let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(kinds, ["submitted", "approved", "forwarded"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_saga_concurrency_of_one_overseerr_calls_come_one_at_a_time() {
    let app = TestApp::spawn_with(TestOptions {
        saga_concurrency: 1,
        ..TestOptions::default()
    })
    .await;
    app.sim().set_delay(Duration::from_millis(300));
    let mut ids = Vec::new();
    for (tmdb_id, title) in [(550, "Fight Club"), (603, "The Matrix")] {
        ids.push(app.submit_and_approve(tmdb_id, title).await);
    }
    for id in &ids {
        app.forwarded(id).await;
    }
    assert_eq!(app.sim().max_in_flight(), 1);
}

#[tokio::test]
async fn idempotency_keys_are_forgotten_after_their_time_to_live() {
    let (_url, pool) = fresh_database().await;
    for (key, age_hours) in [("old", 25.0_f64), ("fresh", 1.0)] {
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response,
                                           created_at, completed_at)
             VALUES ('user:submit', $1, 'h', 202, '{}',
                     now() - make_interval(secs => $2), now())",
        )
        .bind(key)
        .bind(age_hours * 3600.0)
        .execute(&pool)
        .await
        .unwrap();
    }
    let gone = medianest_store::idempotency::expire(&pool, Duration::from_secs(24 * 3600))
        .await
        .unwrap();
    assert_eq!(gone, 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, ["fresh"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_accepted_while_nats_is_away_and_everything_arrives_once_after() {
    let app = TestApp::spawn_with(TestOptions {
        nats_proxy: true,
        overseerr: false,
        ..TestOptions::default()
    })
    .await;
    let proxy = app.nats_proxy.as_ref().expect("a NATS proxy");
    proxy.set_down(true);
    let mut submitted = Vec::new();
    for (tmdb_id, title) in [
        (550, "Fight Club"),
        (603, "The Matrix"),
        (27205, "Inception"),
    ] {
        submitted.push(app.submit_movie(tmdb_id, title).await);
    }
    eventually("readiness to say NATS is away", WAIT, || async {
        (app.get("/readyz").await.status() == 503).then_some(())
    })
    .await;
    proxy.set_down(false);

    let written = app.event_count().await;
    let published = app
        .wait_for_stream(usize::try_from(written).unwrap(), WAIT)
        .await;
    let mut ids: Vec<String> = published.iter().filter_map(|m| m.msg_id.clone()).collect();
    let all = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all, "every event published once");
    assert_eq!(all, usize::try_from(written).unwrap());
    for answer in &submitted {
        let (id, position) = (
            answer["id"].as_str().unwrap(),
            answer["position"].as_i64().unwrap(),
        );
        let read = app
            .get(&format!("/api/v1/requests/{id}?min_position={position}"))
            .await;
        assert_eq!(read.status(), 200, "the read model caught up with {id}");
    }
    eventually("readiness back", WAIT, || async {
        (app.get("/readyz").await.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_a_quick_503_and_recovery_needs_no_restart() {
    let app = TestApp::spawn_with(TestOptions {
        database_proxy: true,
        overseerr: false,
        ..TestOptions::default()
    })
    .await;
    let proxy = app.db_proxy.as_ref().expect("a database proxy");
    let before = app.event_count().await;
    proxy.set_down(true);
    let submit = tokio::time::timeout(
        Duration::from_secs(10),
        app.post_json(
            "/api/v1/requests",
            &serde_json::json!({"media_type": "movie", "tmdb_id": 603, "title": "The Matrix"}),
        ),
    )
    .await
    .expect("answered without waiting out the outage");
    medianest_testkit::problem::assert_problem("a command", submit, 503, "unavailable").await;
    let read = tokio::time::timeout(Duration::from_secs(10), app.get("/api/v1/requests"))
        .await
        .expect("answered without waiting out the outage");
    medianest_testkit::problem::assert_problem("a query", read, 503, "unavailable").await;
    let ready = tokio::time::timeout(Duration::from_secs(10), app.get("/readyz"))
        .await
        .expect("answered");
    assert_eq!(ready.status(), 503);
    assert_eq!(app.event_count().await, before, "nothing was written");

    proxy.set_down(false);
    let accepted = eventually("commands accepted again", WAIT, || async {
        let answer = app
            .post_json(
                "/api/v1/requests",
                &serde_json::json!({"media_type": "movie", "tmdb_id": 603, "title": "The Matrix"}),
            )
            .await;
        (answer.status() == 202).then_some(answer)
    })
    .await;
    let id = accepted.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for_status(&id, "pending", WAIT).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn a_saga_consumer_made_for_one_event_at_a_time_is_updated_to_the_concurrency_asked_for() {
    use medianest_nats::feed::StartAt;
    use medianest_nats::{EventFeed, JetStreamFeed};

    let stream = medianest_testkit::app::fresh_stream().await;
    let feed = |n| {
        JetStreamFeed::new(
            stream.js.clone(),
            stream.name.clone(),
            stream.subjects.clone(),
        )
        .with_max_in_flight(n)
    };
    let max_ack_pending = || async {
        stream
            .js
            .get_stream(&stream.name)
            .await
            .unwrap()
            .consumer_info("saga-upgrade-test")
            .await
            .unwrap()
            .config
            .max_ack_pending
    };
    drop(
        feed(1)
            .subscribe("saga-upgrade-test", &["media_request"], StartAt::Beginning)
            .await
            .unwrap(),
    );
    assert_eq!(max_ack_pending().await, 1);
    drop(
        feed(4)
            .subscribe("saga-upgrade-test", &["media_request"], StartAt::Beginning)
            .await
            .unwrap(),
    );
    // Four lanes, each holding up to HELD_PER_LANE events unacknowledged.
    let held = i64::try_from(4 * medianest_nats::feed::HELD_PER_LANE).unwrap();
    assert_eq!(max_ack_pending().await, held);
}
