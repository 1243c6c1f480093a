//! Media requests end to end, against real PostgreSQL and NATS JetStream and the Overseerr
//! simulator: HTTP command → event store → relay → JetStream → projection and forwarder saga
//! → Overseerr → webhook → read model.

use std::time::Duration;

use futures::StreamExt;
use medianest_testkit::app::{eventually, TestApp, TestOptions};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

fn event_types(history: &Value) -> Vec<String> {
    history["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn create_calls(app: &TestApp) -> Vec<Value> {
    app.sim()
        .received()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/request")
        .map(|r| r.body)
        .collect()
}

#[tokio::test]
async fn a_request_travels_from_http_through_overseerr_to_available() {
    let app = TestApp::spawn().await;
    let mut subscriber = app
        .nats
        .subscribe(app.subjects.all_events())
        .await
        .expect("subscribe");

    // Submit: auto-approval is off, so the request waits for an admin.
    let submitted = app.submit_movie(603, "The Matrix").await;
    let id = submitted["id"].as_str().expect("an id").to_string();
    assert_eq!(submitted["version"], 1);
    assert!(submitted["position"].as_i64().expect("a position") > 0);
    let detail = app
        .get(&format!(
            "/api/v1/requests/{id}?min_position={}",
            submitted["position"]
        ))
        .await;
    assert_eq!(detail.status(), 200);
    let detail: Value = detail.json().await.expect("json");
    assert_eq!(detail["status"], "pending");
    assert_eq!(detail["media"]["title"], "The Matrix");

    // Approve: the forwarder sends a spec-valid request to Overseerr.
    let approved = app
        .post_empty(&format!("/api/v1/requests/{id}/approve"))
        .await;
    assert_eq!(approved.status(), 200);
    let approved: Value = approved.json().await.expect("json");
    assert_eq!(approved["version"], 2);
    assert_eq!(approved["status"], "approved");

    let overseerr_id = app.forwarded(&id).await;
    assert_eq!(
        create_calls(&app),
        vec![json!({"mediaType": "movie", "mediaId": 603, "is4k": false})]
    );
    let create = app
        .sim()
        .received()
        .into_iter()
        .find(|r| r.path == "/api/v1/request")
        .expect("a create call");
    assert_eq!(
        create.headers.get("x-api-key").map(|v| v.as_bytes()),
        Some(app.sim().api_key().as_bytes())
    );
    assert!(
        app.sim().violations().is_empty(),
        "{:?}",
        app.sim().violations()
    );

    // Overseerr says the media is available, in its default template (all strings).
    let payload = app
        .sim()
        .webhook_payload("MEDIA_AVAILABLE", overseerr_id)
        .expect("a payload");
    assert_eq!(payload["request"]["request_id"], overseerr_id.to_string());
    let webhook = app.overseerr_webhook("MEDIA_AVAILABLE", overseerr_id).await;
    assert_eq!(webhook.status(), 202);
    let webhook: Value = webhook.json().await.expect("json");
    let detail = app
        .get(&format!(
            "/api/v1/requests/{id}?min_position={}",
            webhook["position"]
        ))
        .await;
    let detail: Value = detail.json().await.expect("json");
    assert_eq!(detail["status"], "available");
    assert_eq!(detail["overseerr_request_id"], overseerr_id);

    // The full history, with metadata.
    let history: Value = app
        .get(&format!("/api/v1/requests/{id}/history"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        event_types(&history),
        ["submitted", "approved", "forwarded", "available"]
    );
    let events = history["events"].as_array().expect("events");
    assert_eq!(events[0]["data"]["media"]["tmdb_id"], 603);
    assert_eq!(events[1]["data"]["auto"], false);
    assert_eq!(events[2]["metadata"]["actor"], "system:overseerr-forwarder");
    assert_eq!(
        events[2]["metadata"]["causation_id"],
        format!("media_request:{id}:2")
    );
    assert_eq!(events[3]["metadata"]["actor"], "system:overseerr-webhook");
    assert!(events[0]["metadata"]["request_id"].is_string());
    assert_eq!(
        events[0]["metadata"]["correlation_id"],
        events[0]["metadata"]["request_id"]
    );

    // A plain NATS subscriber saw every event of the request, in order, as CloudEvents.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let message = tokio::time::timeout(WAIT, subscriber.next())
            .await
            .expect("every event reaches NATS")
            .expect("subscription open");
        let event: Value = serde_json::from_slice(&message.payload).expect("JSON body");
        if event["subject"] == id.as_str() {
            assert_eq!(
                message.subject.as_str(),
                format!(
                    "{}.events.media_request.{id}.{}",
                    app.subjects.prefix(),
                    event["type"]
                        .as_str()
                        .unwrap_or_default()
                        .split('.')
                        .nth(2)
                        .unwrap_or_default()
                )
            );
            seen.push(event);
        }
    }
    let types: Vec<&str> = seen
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        [
            "medianest.media_request.submitted.v1",
            "medianest.media_request.approved.v1",
            "medianest.media_request.forwarded.v1",
            "medianest.media_request.available.v1"
        ]
    );
    for (index, event) in seen.iter().enumerate() {
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["id"], format!("media_request:{id}:{}", index + 1));
        assert_eq!(event["source"], "/medianest/media_request");
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(event["sequence"], index + 1);
        assert!(event["position"].as_i64().is_some());
        assert!(event["time"].is_string());
        assert!(event["correlationid"].is_string());
    }
    assert_eq!(seen[2]["data"]["overseerr_request_id"], overseerr_id);
    assert_eq!(seen[3]["data"]["source"], "overseerr");
    app.stop().await;
}

#[tokio::test]
async fn a_request_is_forwarded_once_after_overseerr_comes_back() {
    let app = TestApp::spawn().await;
    // First Overseerr answers 503 three times, then it is unreachable for a moment.
    app.sim().fail_next(3, 503);
    let id = app.submit_and_approve(550, "Fight Club").await;
    eventually("the failing calls", WAIT, || async {
        (app.sim().received().len() >= 3).then_some(())
    })
    .await;
    app.sim().set_down(true);
    tokio::time::sleep(Duration::from_millis(150)).await;
    app.sim().set_down(false);

    app.forwarded(&id).await;
    assert_eq!(
        app.sim().requests().len(),
        1,
        "exactly one Overseerr request"
    );
    let answered: Vec<_> = create_calls(&app);
    assert!(
        answered.len() >= 4,
        "three 503s then a success: {answered:?}"
    );
    let events = app.events_of("media_request", &id).await;
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["submitted", "approved", "forwarded"]);
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_forwarded_request_withdraws_it_from_overseerr() {
    let app = TestApp::spawn().await;
    let id = app.submit_and_approve(550, "Fight Club").await;
    let overseerr_id = app.forwarded(&id).await;
    assert_eq!(app.sim().requests().len(), 1);
    // A pending request, never forwarded, is cancelled without a call to Overseerr.
    let pending = app.submit_movie(603, "The Matrix").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cancelled = app
        .post_empty(&format!("/api/v1/requests/{pending}/cancel"))
        .await;
    assert_eq!(cancelled.status(), 200);

    // The first DELETE fails (Overseerr restarting): the saga tries again.
    app.sim().fail_next(1, 503);
    let cancelled = app
        .post_empty(&format!("/api/v1/requests/{id}/cancel"))
        .await;
    assert_eq!(cancelled.status(), 200);
    eventually("the request withdrawn from Overseerr", WAIT, || async {
        app.sim().requests().is_empty().then_some(())
    })
    .await;
    let deletes: Vec<String> = app
        .sim()
        .received()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path)
        .collect();
    assert_eq!(
        deletes,
        vec![format!("/api/v1/request/{overseerr_id}"); 2],
        "one failed and one successful DELETE, none for the pending request"
    );
    assert!(
        app.sim().violations().is_empty(),
        "{:?}",
        app.sim().violations()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_4xx_from_overseerr_fails_the_request_without_retrying() {
    let app = TestApp::spawn().await;
    app.sim().fail_next(1, 400);
    let id = app.submit_and_approve(13, "Forrest Gump").await;
    let detail = app.wait_for_status(&id, "failed", WAIT).await;
    assert!(detail["status_reason"]
        .as_str()
        .is_some_and(|r| r.contains("400")));
    assert_eq!(create_calls(&app).len(), 1, "a 4xx is not retried");
    let events = app.events_of("media_request", &id).await;
    assert_eq!(
        events.last().map(|e| e.event_type.as_str()),
        Some("forward_failed")
    );
    assert_eq!(
        events
            .last()
            .map(|e| e.payload["forward_failed"]["retryable"].clone()),
        Some(json!(false))
    );

    // An admin retries: it is forwarded again.
    let retried = app
        .post_empty(&format!("/api/v1/requests/{id}/retry"))
        .await;
    assert_eq!(retried.status(), 200);
    app.forwarded(&id).await;
    app.stop().await;
}

#[tokio::test]
async fn a_lost_webhook_is_made_up_for_by_the_reconciler() {
    let app = TestApp::spawn_with(TestOptions {
        reconcile_interval: Duration::from_millis(200),
        ..TestOptions::default()
    })
    .await;
    let id = app.submit_and_approve(27205, "Inception").await;
    let overseerr_id = app.forwarded(&id).await;
    // Overseerr makes the media available but its webhook never arrives.
    app.sim()
        .set_media_status(overseerr_id, 5)
        .expect("known request");
    app.wait_for_status(&id, "available", WAIT).await;
    let events = app.events_of("media_request", &id).await;
    let last = events.last().expect("events");
    assert_eq!(last.event_type, "available");
    assert_eq!(last.metadata["actor"], "system:overseerr-reconciler");
    // Further passes change nothing.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        app.events_of("media_request", &id).await.len(),
        events.len()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_duplicate_request_is_refused_naming_the_existing_one() {
    let app = TestApp::spawn().await;
    let first = app.submit_movie(603, "The Matrix").await;
    let before = app.event_count().await;
    let duplicate = app
        .post_json(
            "/api/v1/requests",
            &json!({"media_type": "movie", "tmdb_id": 603, "title": "The Matrix"}),
        )
        .await;
    assert_eq!(duplicate.status(), 409);
    assert_eq!(
        duplicate.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = duplicate.json().await.expect("json");
    assert_eq!(problem["type"], "urn:medianest:problem:duplicate-request");
    assert_eq!(problem["existing_request_id"], first["id"]);
    assert_eq!(app.event_count().await, before, "nothing written");

    // The 4K version is another request.
    let four_k = app
        .post_json(
            "/api/v1/requests",
            &json!({"media_type": "movie", "tmdb_id": 603, "title": "The Matrix", "is_4k": true}),
        )
        .await;
    assert_eq!(four_k.status(), 202);

    // Once the first is declined, the media may be requested again.
    let id = first["id"].as_str().expect("id");
    let declined = app
        .post_json(
            &format!("/api/v1/requests/{id}/decline"),
            &json!({"reason": "not in this house"}),
        )
        .await;
    assert_eq!(declined.status(), 200);
    app.submit_movie(603, "The Matrix").await;
    app.stop().await;
}

#[tokio::test]
async fn a_crash_mid_flow_loses_nothing_and_applies_nothing_twice() {
    let mut app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for (tmdb_id, title) in [
        (1891, "The Empire Strikes Back"),
        (1892, "Return of the Jedi"),
    ] {
        ids.push(app.submit_and_approve(tmdb_id, title).await);
    }
    // Crash while the relay, projection and forwarder are at work, then come back.
    app.crash_and_restart().await;
    let third = app.submit_and_approve(11, "Star Wars").await;
    ids.push(third);
    // And a graceful restart in the middle of the flow.
    app.restart().await;
    for id in &ids {
        app.forwarded(id).await;
    }
    assert_eq!(
        app.sim().requests().len(),
        3,
        "each request created once in Overseerr"
    );
    for id in &ids {
        let events = app.events_of("media_request", id).await;
        let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
        // After a restart the reconciler may record Overseerr's "approved" as processing.
        assert_eq!(
            types[..3],
            ["submitted", "approved", "forwarded"],
            "request {id}"
        );
        assert!(types[3..].iter().all(|t| *t == "processing"), "{types:?}");
        assert!(types.len() <= 4, "{types:?}");
    }
    // Every event is in the stream exactly once.
    let total = usize::try_from(app.event_count().await).expect("count");
    let messages = app.wait_for_stream(total, WAIT).await;
    let mut msg_ids: Vec<_> = messages.iter().filter_map(|m| m.msg_id.clone()).collect();
    assert_eq!(msg_ids.len(), total);
    msg_ids.sort();
    msg_ids.dedup();
    assert_eq!(msg_ids.len(), total, "no duplicates in the stream");
    app.stop().await;
}

#[tokio::test]
async fn health_readiness_metrics_and_the_openapi_document_are_served() {
    let app = TestApp::spawn().await;
    let submitted = app.submit_movie(329, "Jurassic Park").await;
    let id = submitted["id"].as_str().expect("id");
    app.wait_for_status(id, "pending", WAIT).await;

    let health = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let ready: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(
        ready,
        json!({"postgres": true, "nats": true, "ready": true})
    );

    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "medianest_http_requests_total",
        "medianest_http_request_duration_seconds",
        "medianest_relay_events_published_total",
        "medianest_projection_events_applied_total",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    assert!(
        metrics.contains(r#"path="/api/v1/requests""#),
        "requests are labelled by route template"
    );

    let document: Value = app.openapi_document().await;
    assert!(document["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.")));
    for path in [
        "/api/v1/requests",
        "/api/v1/requests/{id}",
        "/api/v1/requests/{id}/approve",
        "/api/v1/requests/{id}/decline",
        "/api/v1/requests/{id}/cancel",
        "/api/v1/requests/{id}/retry",
        "/api/v1/downloads/{id}/cancel",
        "/api/v1/downloads/{id}/retry",
        "/api/v1/requests/{id}/history",
        "/api/v1/webhooks/overseerr",
    ] {
        assert!(document["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    for schema in [
        "Problem",
        "SubmitBody",
        "CommandAnswer",
        "RequestView",
        "History",
    ] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "OpenAPI lacks the {schema} schema"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    app.stop().await;
}
