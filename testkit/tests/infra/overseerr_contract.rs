//! Contract tests: MediaNest's Overseerr client against the Overseerr simulator, both held to
//! `overseerr-api.yml` in the contracts directory (`MEDIANEST_CONTRACTS_DIR`, default
//! `../shared/contracts`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use medianest_integrations::overseerr::{
    media_status, request_status, CatalogItem, CatalogPage, CreateRequest, DiscoverList, MediaType,
    OverseerrClient, OverseerrConfig, OverseerrError, Seasons,
};
use medianest_testkit::overseerr_sim::{CatalogMovie, CatalogTv, OverseerrSim, SimOptions};
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
async fn deleting_a_request_removes_it_once_and_a_repeat_finds_nothing() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);
    let created = client.create_request(&movie(603)).await.unwrap();

    assert!(client.delete_request(created.id).await.unwrap());
    assert!(sim.requests().is_empty());
    assert!(
        !client.delete_request(created.id).await.unwrap(),
        "already gone"
    );
    assert!(matches!(
        client.get_request(created.id).await,
        Err(OverseerrError::Status { status: 404, .. })
    ));
    assert_no_violations(&sim);
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

// ---------------------------------------------------------------------------------------
// The catalogue: search, discover lists, movie/tv/season details.
// ---------------------------------------------------------------------------------------

fn titles(page: &CatalogPage) -> Vec<&str> {
    page.results
        .iter()
        .map(|item| item.title.as_str())
        .collect()
}

/// A raw GET on the simulator with the API key, answered as (status, JSON body).
async fn get_json(sim: &OverseerrSim, path_and_query: &str) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .get(format!("{}/api/v1{path_and_query}", sim.base_url()))
        .header("X-Api-Key", sim.api_key())
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

fn assert_status_error(err: OverseerrError, status: u16, message: &str) {
    match err {
        OverseerrError::Status {
            status: got,
            message: Some(got_message),
        } if got == status => assert_eq!(got_message, message),
        other => panic!("expected HTTP {status} {message:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn every_catalogue_answer_matches_the_spec_response_schemas() {
    let sim = OverseerrSim::start().await;
    // Requests create media rows, which Overseerr attaches as `mediaInfo`.
    let client = client(&sim);
    client.create_request(&movie(603)).await.unwrap();
    client
        .create_request(&series(1399, Seasons::List(vec![1])))
        .await
        .unwrap();
    let calls = [
        ("/search", "/search?query=matri&page=1"),
        ("/search", "/search?query=keanu%20reeves&page=1"),
        ("/search", "/search?query=nothing%20like%20this&page=1"),
        ("/discover/trending", "/discover/trending?page=1"),
        ("/discover/movies", "/discover/movies?page=1"),
        ("/discover/tv", "/discover/tv?page=1"),
        (
            "/discover/movies/upcoming",
            "/discover/movies/upcoming?page=1",
        ),
        ("/discover/tv/upcoming", "/discover/tv/upcoming?page=1"),
        ("/movie/{movieId}", "/movie/603"),
        ("/movie/{movieId}", "/movie/31047"),
        ("/movie/{movieId}", "/movie/216527"),
        ("/tv/{tvId}", "/tv/1399"),
        ("/tv/{tvId}", "/tv/224372"),
        ("/tv/{tvId}/season/{seasonId}", "/tv/1399/season/0"),
        ("/tv/{tvId}/season/{seasonId}", "/tv/1396/season/5"),
    ];

    for (template, path) in calls {
        let (status, body) = get_json(&sim, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(
            sim.spec()
                .validate_response_body("GET", template, 200, &body),
            Ok(()),
            "{path}"
        );
    }
    let (_, details) = get_json(&sim, "/movie/603").await;
    assert_eq!(details["mediaInfo"]["tmdbId"], 603);
    assert_eq!(details["mediaInfo"]["requests"][0]["id"], 1);
    let (_, search) = get_json(&sim, "/search?query=keanu&page=1").await;
    assert_eq!(search["results"][0]["mediaType"], "person");
    assert_eq!(search["results"][0]["knownFor"][0]["title"], "The Matrix");
    assert_no_violations(&sim);
}

#[tokio::test]
async fn a_search_finds_movies_and_series_by_word_most_popular_first_and_drops_people() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);

    let matrix = client.search("matrix", 1).await.unwrap();
    let matri = client.search("MATRI", 1).await.unwrap();
    let keanu = client.search("keanu", 1).await.unwrap();
    let thrones = client.search("game of", 1).await.unwrap();

    assert_eq!(
        titles(&matrix),
        [
            "The Matrix",
            "The Matrix Resurrections",
            "The Matrix Reloaded",
            "The Matrix Revolutions"
        ]
    );
    assert_eq!(
        (matrix.page, matrix.total_pages, matrix.total_results),
        (1, 1, 4)
    );
    assert_eq!(
        matrix.results[0],
        CatalogItem {
            media_type: MediaType::Movie,
            tmdb_id: 603,
            tvdb_id: None,
            title: "The Matrix".into(),
            year: Some(1999),
            overview: matrix.results[0].overview.clone(),
            poster_path: Some("/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg".into()),
            backdrop_path: matrix.results[0].backdrop_path.clone(),
        }
    );
    let matrimony = matri.results.last().unwrap();
    assert_eq!(
        (matrimony.title.as_str(), matrimony.tmdb_id),
        ("Matrimony", 31047)
    );
    assert_eq!(
        (matrimony.year, &matrimony.overview, &matrimony.poster_path),
        (None, &None, &None),
        "TMDB's empty date and absent images are None"
    );
    assert!(keanu.results.is_empty(), "people are dropped");
    assert_eq!(keanu.total_results, 1, "but still counted by Overseerr");
    assert_eq!(titles(&thrones), ["Game of Thrones"]);
    assert_eq!(thrones.results[0].media_type, MediaType::Tv);
    assert_eq!(
        thrones.results[0].tvdb_id, None,
        "lists carry no TheTVDB id"
    );
    assert_no_violations(&sim);
}

#[tokio::test]
async fn searches_are_paged_twenty_results_at_a_time() {
    let sim = OverseerrSim::start().await;
    for n in 1..=25u32 {
        sim.add_movie(CatalogMovie {
            popularity: f64::from(n) / 100.0,
            ..CatalogMovie::new(
                900_000 + u64::from(n),
                &format!("Matrix Fan Film {n}"),
                "2020-01-01",
            )
        });
    }
    let client = client(&sim);

    let first = client.search("matrix", 1).await.unwrap();
    let second = client.search("matrix", 2).await.unwrap();
    let beyond = client.search("matrix", 3).await.unwrap();

    assert_eq!(first.results.len(), 20);
    assert_eq!((first.total_pages, first.total_results), (2, 29));
    assert_eq!((second.page, second.results.len()), (2, 9));
    assert_eq!(second.results.last().unwrap().title, "Matrix Fan Film 1");
    assert!(beyond.results.is_empty());
    assert_no_violations(&sim);
}

#[tokio::test]
async fn each_discover_list_calls_its_route_and_holds_its_kind() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);

    let mut pages = Vec::new();
    for list in DiscoverList::ALL {
        pages.push(client.discover(list, 1).await.unwrap());
    }

    let [trending, movies, tv, upcoming_movies, upcoming_tv] = &pages[..] else {
        unreachable!("five lists")
    };
    assert_eq!(
        titles(trending)[..4],
        [
            "Game of Thrones",
            "House of the Dragon",
            "Breaking Bad",
            "Inception"
        ]
    );
    assert_eq!(trending.results.len(), 12, "Keanu Reeves is dropped");
    assert_eq!(trending.total_results, 13);
    assert_eq!(movies.results.len(), 8);
    assert!(movies
        .results
        .iter()
        .all(|item| item.media_type == MediaType::Movie));
    assert_eq!(
        titles(tv),
        [
            "Game of Thrones",
            "House of the Dragon",
            "Breaking Bad",
            "A Knight of the Seven Kingdoms"
        ]
    );
    assert!(tv
        .results
        .iter()
        .all(|item| item.media_type == MediaType::Tv));
    assert_eq!(titles(upcoming_movies), ["Avatar 4"]);
    assert!(upcoming_movies.results[0].year.is_some());
    assert_eq!(titles(upcoming_tv), ["A Knight of the Seven Kingdoms"]);
    let paths: Vec<String> = sim
        .received()
        .into_iter()
        .map(|call| format!("{}?{}", call.path, call.query.unwrap_or_default()))
        .collect();
    assert_eq!(
        paths,
        [
            "/api/v1/discover/trending?page=1",
            "/api/v1/discover/movies?page=1",
            "/api/v1/discover/tv?page=1",
            "/api/v1/discover/movies/upcoming?page=1",
            "/api/v1/discover/tv/upcoming?page=1",
        ]
    );
    assert_no_violations(&sim);
}

#[tokio::test]
async fn movie_series_and_season_details_are_decoded() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);

    let matrix = client.movie(603).await.unwrap();
    let matrimony = client.movie(31047).await.unwrap();
    let thrones = client.tv(1399).await.unwrap();
    let knight = client.tv(224372).await.unwrap();
    let specials = client.season(1399, 0).await.unwrap();
    let finale = client.season(1396, 5).await.unwrap();

    assert_eq!(matrix.item.title, "The Matrix");
    assert_eq!(matrix.item.year, Some(1999));
    assert_eq!(matrix.imdb_id.as_deref(), Some("tt0133093"));
    assert_eq!(matrix.runtime, Some(136));
    assert_eq!(matrix.release_date.as_deref(), Some("1999-03-31"));
    assert_eq!(matrix.genres, ["Action", "Science Fiction"]);
    assert_eq!(
        (matrimony.imdb_id, matrimony.runtime, matrimony.release_date),
        (None, None, None)
    );
    assert_eq!(thrones.item.tvdb_id, Some(121361));
    assert_eq!(thrones.item.year, Some(2011));
    assert_eq!(thrones.status.as_deref(), Some("Ended"));
    let numbers: Vec<(u32, u32)> = thrones
        .seasons
        .iter()
        .map(|season| (season.season_number, season.episode_count))
        .collect();
    assert_eq!(
        numbers,
        [
            (0, 14),
            (1, 10),
            (2, 10),
            (3, 10),
            (4, 10),
            (5, 10),
            (6, 10),
            (7, 7),
            (8, 6)
        ]
    );
    assert_eq!(thrones.seasons[0].name.as_deref(), Some("Specials"));
    assert_eq!(thrones.seasons[1].air_date.as_deref(), Some("2011-04-17"));
    assert_eq!(knight.item.tvdb_id, None);
    assert_eq!(specials.season_number, 0);
    assert_eq!(specials.episodes.len(), 14);
    assert_eq!(finale.name.as_deref(), Some("Season 5"));
    assert_eq!(
        finale
            .episodes
            .iter()
            .map(|episode| episode.episode_number)
            .collect::<Vec<_>>(),
        (1..=16).collect::<Vec<_>>()
    );
    assert_no_violations(&sim);
}

#[tokio::test]
async fn unknown_ids_are_the_500_that_overseerr_answers_not_a_404() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);

    let movie = client.movie(999_999_999).await.unwrap_err();
    let show = client.tv(603).await.unwrap_err();
    let season = client.season(1399, 9).await.unwrap_err();
    let season_of_unknown = client.season(42, 1).await.unwrap_err();

    assert_status_error(movie, 500, "Unable to retrieve movie.");
    assert_status_error(show, 500, "Unable to retrieve series.");
    assert_status_error(season, 500, "Unable to retrieve season.");
    assert_status_error(season_of_unknown, 500, "Unable to retrieve season.");
    assert_no_violations(&sim);
}

#[tokio::test]
async fn titles_added_or_removed_in_the_simulator_are_found_or_unknown() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);
    sim.add_movie(CatalogMovie {
        popularity: 99.0,
        poster_path: Some("/bladerunner.jpg".into()),
        runtime: Some(117),
        genres: vec!["Science Fiction".into()],
        ..CatalogMovie::new(78, "Blade Runner", "1982-06-25")
    });
    sim.add_tv(CatalogTv {
        tvdb_id: Some(75760),
        ..CatalogTv::new(
            1418,
            "The Big Bang Theory",
            "2007-09-24",
            vec![(1, 17), (2, 23)],
        )
    });

    assert!(sim.remove_catalog_item(MediaType::Movie, 603));
    assert!(!sim.remove_catalog_item(MediaType::Tv, 603));
    let movie_ids: Vec<u64> = sim.catalog_movies().iter().map(|m| m.tmdb_id).collect();
    assert!(
        movie_ids.contains(&78) && !movie_ids.contains(&603),
        "{movie_ids:?}"
    );
    assert_eq!(sim.catalog_tv().last().map(|show| show.tmdb_id), Some(1418));

    let blade_runner = client.movie(78).await.unwrap();
    assert_eq!(
        (blade_runner.item.year, blade_runner.runtime),
        (Some(1982), Some(117))
    );
    assert_eq!(client.tv(1418).await.unwrap().item.tvdb_id, Some(75760));
    assert_eq!(client.season(1418, 2).await.unwrap().episodes.len(), 23);
    assert_eq!(
        titles(&client.search("blade", 1).await.unwrap()),
        ["Blade Runner"]
    );
    let matrix = client.search("the matrix", 1).await.unwrap();
    assert!(!matrix.results.iter().any(|item| item.tmdb_id == 603));
    assert_status_error(
        client.movie(603).await.unwrap_err(),
        500,
        "Unable to retrieve movie.",
    );
    assert_no_violations(&sim);
}

#[tokio::test]
async fn malformed_catalogue_answers_are_decode_errors_and_are_recorded() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);

    sim.answer_next_raw(1, 200, "<html>Overseerr is starting</html>");
    let not_json = client.search("matrix", 1).await.unwrap_err();
    sim.answer_next_raw(1, 200, r#"{"page": 1, "results": 3}"#);
    let not_an_array = client
        .discover(DiscoverList::Trending, 1)
        .await
        .unwrap_err();
    sim.answer_next_raw(
        2,
        200,
        r#"{"page": 1, "results": [{"mediaType": "movie", "title": "No id"}]}"#,
    );
    let no_id = client
        .discover(DiscoverList::PopularMovies, 1)
        .await
        .unwrap_err();
    let no_id_in_search = client.search("x", 1).await.unwrap_err();
    sim.answer_next_raw(1, 200, r#"{"id": 603, "imdbId": "tt0133093"}"#);
    let no_title = client.movie(603).await.unwrap_err();
    sim.answer_next_raw(
        1,
        200,
        r#"{"id": 1399, "name": "GoT", "seasons": [{"name": "S1"}]}"#,
    );
    let no_season_number = client.tv(1399).await.unwrap_err();
    let recovered = client.movie(603).await.unwrap();

    for err in [
        not_json,
        not_an_array,
        no_id,
        no_id_in_search,
        no_title,
        no_season_number,
    ] {
        assert!(matches!(err, OverseerrError::Decode(_)), "{err:?}");
        assert!(!err.is_retryable());
    }
    assert_eq!(recovered.item.tmdb_id, 603);
    assert_eq!(sim.received().len(), 7);
    assert_no_violations(&sim);
}

#[tokio::test]
async fn an_injected_raw_error_answer_keeps_its_status_and_message() {
    let sim = OverseerrSim::start().await;
    sim.answer_next_raw(1, 503, r#"{"message": "TMDB is down"}"#);

    let err = client(&sim).tv(1399).await.unwrap_err();

    assert!(err.is_retryable());
    assert_status_error(err, 503, "TMDB is down");
}

#[tokio::test]
async fn a_hostile_search_query_arrives_at_overseerr_verbatim() {
    let sim = OverseerrSim::start().await;
    let mut query = String::from("Tom & Jerry #1 100% \"quoted\" 'single' déjà vu 東京 a+b=c?/\\;");
    while query.chars().count() < 200 {
        query.push('é');
    }

    let page = client(&sim).search(&query, 3).await.unwrap();

    assert!(page.results.is_empty());
    let received = sim.received();
    let call = received.last().unwrap();
    assert_eq!(call.path, "/api/v1/search");
    let url = reqwest::Url::parse(&format!(
        "http://sim/?{}",
        call.query.clone().unwrap_or_default()
    ))
    .unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        [
            ("query".to_string(), query.clone()),
            ("page".to_string(), "3".to_string())
        ]
    );
    assert_no_violations(&sim);
}

#[tokio::test]
async fn a_page_tmdb_refuses_is_an_empty_search_and_a_500_discover_list() {
    let sim = OverseerrSim::start().await;
    let client = client(&sim);

    let search = client.search("matrix", 501).await.unwrap();
    let discover = client
        .discover(DiscoverList::PopularMovies, 0)
        .await
        .unwrap_err();

    assert_eq!(
        (search.page, search.total_pages, search.total_results),
        (1, 1, 0)
    );
    assert!(search.results.is_empty());
    assert_status_error(discover, 500, "Unable to retrieve popular movies.");
    assert_no_violations(&sim);
}

#[tokio::test]
async fn a_non_numeric_id_is_refused_by_the_validator_and_is_a_violation() {
    let sim = OverseerrSim::start().await;

    let (status, body) = get_json(&sim, "/movie/the-matrix").await;

    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("movieId")),
        "{body}"
    );
    assert_eq!(
        sim.violations(),
        ["GET /api/v1/movie/the-matrix: params/movieId: must be number"]
    );
}

#[tokio::test]
async fn catalogue_routes_outside_medianests_use_are_still_not_simulated() {
    let sim = OverseerrSim::start().await;

    let (keyword, _) = get_json(&sim, "/search/keyword?query=matrix").await;
    let (similar, _) = get_json(&sim, "/movie/603/similar").await;

    assert_eq!((keyword, similar), (501, 501));
    assert_eq!(sim.violations().len(), 2, "{:?}", sim.violations());
}
