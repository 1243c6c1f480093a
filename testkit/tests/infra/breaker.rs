//! The circuit breakers of the sagas (docs/design.md §6; issue 5) end to end: Overseerr goes down,
//! its breaker opens and the dashboard says so, the approved request waits instead of
//! failing, and once Overseerr is back it is forwarded exactly once and the breaker closes.

use std::time::{Duration, Instant};

use medianest_testkit::app::{eventually, TestApp, TestOptions};
use medianest_workers::BreakerConfig;
use reqwest::Method;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn options(cool_down: Duration) -> TestOptions {
    TestOptions {
        breaker: BreakerConfig {
            failure_threshold: 3,
            cool_down,
        },
        ..TestOptions::default()
    }
}

/// Overseerr's entry of the dashboard's services, as `token` sees it.
async fn overseerr_health(app: &TestApp, token: &str) -> Value {
    let view: Value = app
        .request_as(token, Method::GET, "/api/v1/dashboard")
        .send()
        .await
        .expect("GET reaches the app")
        .json()
        .await
        .expect("a JSON answer");
    view["services"]
        .as_array()
        .and_then(|services| services.iter().find(|s| s["service"] == "overseerr"))
        .cloned()
        .unwrap_or(Value::Null)
}

async fn wait_for_overseerr_state(app: &TestApp, state: &str) -> Value {
    eventually(&format!("overseerr {state}"), WAIT, || async {
        let health = overseerr_health(app, app.admin_token()).await;
        (health["state"] == state).then_some(health)
    })
    .await
}

fn create_calls(app: &TestApp) -> usize {
    app.sim()
        .received()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/request")
        .count()
}

async fn event_types(app: &TestApp, id: &str) -> Vec<String> {
    app.events_of("media_request", id)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

#[tokio::test]
async fn an_overseerr_outage_opens_the_breaker_and_the_request_waits_to_be_forwarded_once() {
    let app = TestApp::spawn_with(options(Duration::from_secs(2))).await;
    let user = app.sign_in_user("carol").await;
    // The worker reports the breaker closed from the start.
    let health = wait_for_overseerr_state(&app, "closed").await;
    assert_eq!(health["consecutive_failures"], 0);

    app.sim().set_down(true);
    let id = app.submit_and_approve(550, "Fight Club").await;

    // Three connection failures in a row open the breaker; the dashboard says so.
    let health = wait_for_overseerr_state(&app, "open").await;
    assert!(
        health["consecutive_failures"].as_i64().unwrap() >= 3,
        "{health}"
    );
    assert!(
        health["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{health}"
    );
    assert!(health["opened_at"].is_string() && health["since"].is_string());
    // A user sees the state, not the error (it may name internal addresses).
    let seen_by_user = overseerr_health(&app, &user.token).await;
    assert!(
        matches!(seen_by_user["state"].as_str(), Some("open" | "half_open")),
        "{seen_by_user}"
    );
    assert_eq!(seen_by_user["last_error"], Value::Null);

    // While Overseerr is down the request waits: through more than the retry policy's six
    // attempts' worth of time and a failed trial call, nothing is recorded as failed.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(event_types(&app, &id).await, ["submitted", "approved"]);
    assert_eq!(create_calls(&app), 0, "no call reached Overseerr");

    // Overseerr comes back: after the cool-down the trial call forwards the request.
    app.sim().set_down(false);
    let started = Instant::now();
    app.forwarded(&id).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let health = wait_for_overseerr_state(&app, "closed").await;
    assert_eq!(health["consecutive_failures"], 0, "{health}");
    assert!(health["last_success_at"].is_string(), "{health}");
    assert_eq!(create_calls(&app), 1, "forwarded exactly once");
    assert_eq!(app.sim().requests().len(), 1);
    assert_eq!(
        event_types(&app, &id).await,
        ["submitted", "approved", "forwarded"]
    );
    assert!(
        app.sim().violations().is_empty(),
        "{:?}",
        app.sim().violations()
    );
    app.stop().await;
}

#[tokio::test]
async fn four_hundreds_do_not_open_the_breaker() {
    let app = TestApp::spawn_with(options(Duration::from_secs(60))).await;
    // Four permanent failures in a row: each request fails at once, the breaker stays closed.
    app.sim().fail_next(4, 400);
    let mut ids = Vec::new();
    for (tmdb_id, title) in [
        (11, "Star Wars"),
        (12, "Finding Nemo"),
        (13, "Forrest Gump"),
    ] {
        ids.push(app.submit_and_approve(tmdb_id, title).await);
    }
    for id in &ids {
        app.wait_for_status(id, "failed", WAIT).await;
    }
    let health = wait_for_overseerr_state(&app, "closed").await;
    assert_eq!(health["consecutive_failures"], 0, "{health}");
    // The next request goes straight through (a 400 is left from the injection).
    let id = app.submit_and_approve(14, "American Beauty").await;
    app.wait_for_status(&id, "failed", WAIT).await;
    let next = app.submit_and_approve(15, "Citizen Kane").await;
    app.forwarded(&next).await;
    assert_eq!(
        wait_for_overseerr_state(&app, "closed").await["state"],
        "closed"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_shutdown_while_the_breaker_holds_a_request_back_is_quick_and_loses_nothing() {
    let mut app = TestApp::spawn_with(options(Duration::from_secs(3600))).await;
    app.sim().set_down(true);
    let id = app.submit_and_approve(603, "The Matrix").await;
    wait_for_overseerr_state(&app, "open").await;

    // The forwarder waits for an hour's cool-down; a graceful restart does not.
    let started = Instant::now();
    app.sim().set_down(false);
    app.restart().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the restart took {:?}",
        started.elapsed()
    );
    // The new process has a closed breaker and gets the unacknowledged event again.
    app.forwarded(&id).await;
    assert_eq!(app.sim().requests().len(), 1);
    assert_eq!(
        event_types(&app, &id).await,
        ["submitted", "approved", "forwarded"]
    );
    app.stop().await;
}
