//! Contract tests: MediaNest's Overseerr client against the Overseerr simulator, both held to
//! `shared/contracts/overseerr-api.yml`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use medianest_integrations::overseerr::{
    media_status, request_status, CreateRequest, MediaType, OverseerrClient, OverseerrConfig,
    OverseerrError, Seasons,
};
use medianest_testkit::overseerr_sim::{OverseerrSim, SimOptions};
use serde_json::{json, Value};

fn client_with(sim: &OverseerrSim, api_key: &str, timeout: Duration) -> OverseerrClient {
    OverseerrClient::new(OverseerrConfig {
        base_url: sim.base_url().parse().unwrap(),
        api_key: api_key.to_string(),
        timeout,
    })
    .unwrap()
}

fn client(sim: &OverseerrSim) -> OverseerrClient {
    client_with(sim, sim.api_key(), Duration::from_secs(5))
}

fn movie(tmdb_id: u64) -> CreateRequest {
    CreateRequest {
        media_type: MediaType::Movie,
        media_id: tmdb_id,
        tvdb_id: None,
        seasons: None,
        is_4k: false,
    }
}

fn series(tmdb_id: u64, seasons: Seasons) -> CreateRequest {
    CreateRequest {
        media_type: MediaType::Tv,
        media_id: tmdb_id,
        tvdb_id: Some(tmdb_id + 100_000),
        seasons: Some(seasons),
        is_4k: false,
    }
}

fn assert_no_violations(sim: &OverseerrSim) {
    assert_eq!(sim.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn creating_a_movie_request_answers_an_approved_media_request() {
    let sim = OverseerrSim::start().await;

    let created = client(&sim).create_request(&movie(603)).await.unwrap();

    assert_eq!(created.id, 1);
    assert_eq!(created.status, request_status::APPROVED);
    assert!(!created.is_4k);
    assert_eq!(created.media_type(), Some(MediaType::Movie));
    assert_eq!(created.tmdb_id(), Some(603));
    assert_eq!(created.media_status(), Some(media_status::PENDING));
    assert_no_violations(&sim);
}

#[tokio::test]
async fn the_client_sends_the_spec_body_with_api_key_and_accept_headers() {
    let sim = OverseerrSim::start().await;

    client(&sim).create_request(&movie(603)).await.unwrap();

    let received = sim.received();
    assert_eq!(received.len(), 1);
    let call = &received[0];
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("POST", "/api/v1/request")
    );
    assert_eq!(call.headers["x-api-key"], sim.api_key());
    assert_eq!(call.headers["accept"], "application/json");
    assert_eq!(
        call.body,
        json!({"mediaType": "movie", "mediaId": 603, "is4k": false})
    );
}

#[tokio::test]
async fn the_simulators_answers_match_the_spec_response_schemas() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);
    client.create_request(&movie(603)).await.unwrap();
    client
        .create_request(&series(1399, Seasons::List(vec![1, 2])))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("{}/api/v1{path}", sim.base_url()))
            .header("X-Api-Key", sim.api_key())
            .send()
    };

    let one: Value = get("/request/2").await.unwrap().json().await.unwrap();
    let page: Value = get("/request?take=1&skip=1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let spec = sim.spec();
    assert_eq!(
        spec.validate_response_body("GET", "/request/{requestId}", 200, &one),
        Ok(())
    );
    assert_eq!(
        spec.validate_response_body("GET", "/request", 200, &page),
        Ok(())
    );
    for stored in sim.requests() {
        assert_eq!(
            spec.validate_response_body("POST", "/request", 201, &stored),
            Ok(())
        );
    }
    assert_eq!(
        page["pageInfo"],
        json!({"pages": 2, "pageSize": 1, "results": 2, "page": 2})
    );
    assert_eq!(page["results"][0]["id"], 1, "sort=added is newest first");
    assert_no_violations(&sim);
}

#[tokio::test]
async fn a_duplicate_movie_request_is_already_exists_and_find_request_resolves_it() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);
    let first = client.create_request(&movie(603)).await.unwrap();

    let err = client.create_request(&movie(603)).await.unwrap_err();

    match &err {
        OverseerrError::AlreadyExists { message } => {
            assert_eq!(message, "Request for this media already exists.")
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert!(!err.is_retryable());
    let found = client
        .find_request(MediaType::Movie, 603, false)
        .await
        .unwrap();
    assert_eq!(found.map(|request| request.id), Some(first.id));
    assert_eq!(
        client
            .find_request(MediaType::Movie, 603, true)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        client
            .find_request(MediaType::Tv, 603, false)
            .await
            .unwrap(),
        None
    );
    assert_no_violations(&sim);
}

#[tokio::test]
async fn a_4k_request_is_not_a_duplicate_of_the_non_4k_one() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);
    client.create_request(&movie(603)).await.unwrap();

    let four_k = client
        .create_request(&CreateRequest {
            is_4k: true,
            ..movie(603)
        })
        .await
        .unwrap();

    assert!(four_k.is_4k);
    assert_eq!(
        four_k.media.as_ref().map(|media| media.status_4k),
        Some(media_status::PENDING)
    );
    let found = client
        .find_request(MediaType::Movie, 603, true)
        .await
        .unwrap();
    assert_eq!(found.map(|request| request.id), Some(four_k.id));
}

#[tokio::test]
async fn requesting_already_requested_seasons_again_is_already_exists() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);
    let first = client
        .create_request(&series(1399, Seasons::List(vec![1, 2])))
        .await
        .unwrap();
    assert_eq!(first.media_type(), Some(MediaType::Tv));

    let err = client
        .create_request(&series(1399, Seasons::List(vec![2, 1])))
        .await
        .unwrap_err();
    let more = client
        .create_request(&series(1399, Seasons::All))
        .await
        .unwrap();

    assert!(
        matches!(err, OverseerrError::AlreadyExists { .. }),
        "{err:?}"
    );
    assert_eq!(
        sim.requests()[1]["seasons"].as_array().map(Vec::len),
        Some(1)
    );
    let found = client
        .find_request(MediaType::Tv, 1399, false)
        .await
        .unwrap();
    assert_eq!(
        found.map(|request| request.id),
        Some(more.id),
        "newest first"
    );
    assert_no_violations(&sim);
}

#[tokio::test]
async fn find_request_pages_through_all_requests() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);
    for tmdb_id in 1..=150 {
        client.create_request(&movie(tmdb_id)).await.unwrap();
    }

    let oldest = client
        .find_request(MediaType::Movie, 1, false)
        .await
        .unwrap();

    assert_eq!(oldest.map(|request| request.id), Some(1));
    let queries: Vec<String> = sim
        .received()
        .into_iter()
        .filter(|call| call.method == "GET")
        .filter_map(|call| call.query)
        .collect();
    assert_eq!(
        queries,
        [
            "take=100&skip=0&filter=all&sort=added",
            "take=100&skip=100&filter=all&sort=added"
        ]
    );
    assert_eq!(
        client
            .find_request(MediaType::Movie, 151, false)
            .await
            .unwrap(),
        None
    );
    assert_no_violations(&sim);
}

#[tokio::test]
async fn a_wrong_api_key_is_a_403_that_is_not_retried() {
    let sim = OverseerrSim::start().await;

    let err = client_with(&sim, "not-the-key", Duration::from_secs(5))
        .create_request(&movie(603))
        .await
        .unwrap_err();

    match &err {
        OverseerrError::Status {
            status: 403,
            message,
        } => assert_eq!(
            message.as_deref(),
            Some("You do not have permission to access this endpoint")
        ),
        other => panic!("expected a 403 Status, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn a_call_without_api_key_is_refused_like_overseerrs_validator_does() {
    let sim = OverseerrSim::start().await;

    let answer = reqwest::Client::new()
        .get(format!("{}/api/v1/request/1", sim.base_url()))
        .send()
        .await
        .unwrap();

    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["message"],
        "cookie 'connect.sid' required"
    );
}

#[tokio::test]
async fn injected_503s_are_retryable_status_errors_and_then_calls_succeed() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);
    sim.fail_next(2, 503);

    for _ in 0..2 {
        let err = client.create_request(&movie(603)).await.unwrap_err();
        assert!(
            matches!(err, OverseerrError::Status { status: 503, .. }),
            "{err:?}"
        );
        assert!(err.is_retryable());
    }
    let created = client.create_request(&movie(603)).await.unwrap();

    assert_eq!(created.id, 1);
    assert_eq!(sim.received().len(), 3);
}

#[tokio::test]
async fn an_unknown_request_id_is_a_404_status() {
    let sim = OverseerrSim::start().await;

    let err = client(&sim).get_request(42).await.unwrap_err();

    match &err {
        OverseerrError::Status {
            status: 404,
            message,
        } => {
            assert_eq!(message.as_deref(), Some("Request not found."))
        }
        other => panic!("expected a 404 Status, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_no_violations(&sim);
}

#[tokio::test]
async fn get_request_reflects_status_changes_made_in_the_simulator() {
    let sim = OverseerrSim::start_with(SimOptions {
        auto_approve: false,
        ..SimOptions::default()
    })
    .await;
    let client = client(&sim);
    let created = client.create_request(&movie(603)).await.unwrap();
    assert_eq!(created.status, request_status::PENDING_APPROVAL);

    sim.set_request_status(created.id, request_status::APPROVED)
        .unwrap();
    sim.set_media_status(created.id, media_status::PARTIALLY_AVAILABLE)
        .unwrap();
    let read = client.get_request(created.id).await.unwrap();

    assert_eq!(read.status, request_status::APPROVED);
    assert_eq!(read.media_status(), Some(media_status::PARTIALLY_AVAILABLE));
    assert!(sim.set_media_status(99, media_status::AVAILABLE).is_err());
}

#[tokio::test]
async fn an_approved_request_is_processing_on_the_next_read() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);
    let created = client.create_request(&movie(603)).await.unwrap();

    let read = client.get_request(created.id).await.unwrap();

    assert_eq!(created.media_status(), Some(media_status::PENDING));
    assert_eq!(read.media_status(), Some(media_status::PROCESSING));
}

#[tokio::test]
async fn a_down_simulator_is_a_retryable_connect_error_until_it_is_back() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);
    client.create_request(&movie(603)).await.unwrap();

    sim.set_down(true);
    let err = client.get_request(1).await.unwrap_err();
    sim.set_down(false);
    let read = client.get_request(1).await.unwrap();

    assert!(matches!(err, OverseerrError::Connect(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(read.id, 1);
}

#[tokio::test]
async fn a_slow_answer_is_a_retryable_timeout() {
    let sim = OverseerrSim::start().await;
    sim.set_delay(Duration::from_millis(500));

    let err = client_with(&sim, sim.api_key(), Duration::from_millis(100))
        .get_request(1)
        .await
        .unwrap_err();

    assert!(matches!(err, OverseerrError::Timeout), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn valid_calls_leave_no_violations() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);

    client.create_request(&movie(603)).await.unwrap();
    client
        .create_request(&series(1399, Seasons::All))
        .await
        .unwrap();
    client.get_request(2).await.unwrap();
    client
        .find_request(MediaType::Tv, 1399, false)
        .await
        .unwrap();
    client.get_request(7).await.unwrap_err();

    assert_eq!(sim.received().len(), 5);
    assert_no_violations(&sim);
}

#[tokio::test]
async fn an_invalid_body_is_a_400_and_a_recorded_violation() {
    let sim = OverseerrSim::start().await;

    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/request", sim.base_url()))
        .header("X-Api-Key", sim.api_key())
        .json(&json!({"media_type": "movie", "tmdb_id": 603, "is4k": "no"}))
        .send()
        .await
        .unwrap();

    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let body: Value = answer.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("mediaType")),
        "{body}"
    );
    let violations = sim.violations().join("\n");
    assert!(
        violations.contains("POST /api/v1/request: body/mediaType: required"),
        "{violations}"
    );
    assert!(
        violations.contains("body/mediaId: required"),
        "{violations}"
    );
    assert!(
        violations.contains("body/is4k: expected boolean"),
        "{violations}"
    );
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn a_tv_request_without_seasons_is_a_500_and_a_violation() {
    let sim = OverseerrSim::start().await;

    let err = client(&sim)
        .create_request(&CreateRequest {
            seasons: None,
            ..series(1399, Seasons::All)
        })
        .await
        .unwrap_err();

    assert!(
        matches!(err, OverseerrError::Status { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(sim.violations().len(), 1);
}

#[tokio::test]
async fn paths_outside_the_spec_and_unknown_query_parameters_are_violations() {
    let sim = OverseerrSim::start().await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("{}{path}", sim.base_url()))
            .header("X-Api-Key", sim.api_key())
            .send()
    };

    let missing = get("/api/v1/requests").await.unwrap();
    let bad_query = get("/api/v1/request?filter=everything").await.unwrap();
    let not_simulated = get("/api/v1/request/count").await.unwrap();

    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(bad_query.status(), StatusCode::BAD_REQUEST);
    assert_eq!(not_simulated.status(), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(sim.violations().len(), 3, "{:?}", sim.violations());
}

/// A webhook receiver on port 0 that keeps what it gets.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<(HeaderMap, Value)>>>) {
    let got: Arc<Mutex<Vec<(HeaderMap, Value)>>> = Arc::default();
    let sink = Arc::clone(&got);
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

#[tokio::test]
async fn a_media_available_webhook_uses_the_default_template_and_updates_the_simulator() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);
    let created = client.create_request(&movie(603)).await.unwrap();
    let (url, got) = webhook_receiver().await;

    let answer = sim
        .send_webhook(&url, "hook-secret", "MEDIA_AVAILABLE", created.id)
        .await
        .unwrap();

    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    let (headers, body) = got.lock().unwrap().pop().unwrap();
    assert_eq!(headers["authorization"], "hook-secret");
    assert_eq!(
        body,
        json!({
            "notification_type": "MEDIA_AVAILABLE",
            "event": "Movie Request Now Available",
            "subject": "Movie 603",
            "message": "Simulated overview of TMDB movie 603.",
            "image": "https://image.tmdb.org/t/p/w600_and_h900_bestv2/603.jpg",
            "media": {"media_type": "movie", "tmdbId": "603", "tvdbId": "",
                      "status": "AVAILABLE", "status4k": "UNKNOWN"},
            "request": {"request_id": "1", "requestedBy_email": "admin@overseerr.sim",
                        "requestedBy_username": "admin",
                        "requestedBy_avatar": "https://plex.tv/users/0000000000000001/avatar?c=1",
                        "requestedBy_settings_discordId": "",
                        "requestedBy_settings_telegramChatId": ""},
            "issue": null,
            "comment": null,
            "extra": []
        })
    );
    let read = client.get_request(created.id).await.unwrap();
    assert_eq!(read.media_status(), Some(media_status::AVAILABLE));
}

#[tokio::test]
async fn webhook_payloads_can_be_inspected_without_changing_the_simulator() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);
    let created = client
        .create_request(&series(1399, Seasons::List(vec![1, 2])))
        .await
        .unwrap();

    let declined = sim.webhook_payload("MEDIA_DECLINED", created.id).unwrap();
    let test = sim.webhook_payload("TEST_NOTIFICATION", 0).unwrap();

    assert_eq!(declined["event"], "Series Request Declined");
    assert_eq!(declined["media"]["tvdbId"], "101399");
    assert_eq!(
        declined["extra"],
        json!([{"name": "Requested Seasons", "value": "1, 2"}])
    );
    assert_eq!(test["media"], Value::Null);
    assert_eq!(test["subject"], "Test Notification");
    assert!(sim.webhook_payload("ISSUE_CREATED", created.id).is_err());
    let read = client.get_request(created.id).await.unwrap();
    assert_eq!(read.status, request_status::APPROVED);
}
