//! Contract tests: MediaNest's plex.tv and Plex Media Server clients against the simulators of
//! `medianest_testkit::plex_sim`, both held to the Plex contract of docs/design.md §6 (PIN sign-in,
//! `/api/v2/user`, `/api/v2/resources`, PMS JSON `MediaContainer`s).

use std::time::{Duration, Instant};

use chrono::Utc;
use medianest_integrations::plex::{
    ItemKind, LibraryItem, LibraryPage, ListItems, PlexClientInfo, PlexError, PlexPin,
    PlexTvClient, PlexTvConfig, PmsClient, PmsConfig,
};
use medianest_testkit::contracts::{self, PLEX_MEDIA_SERVER};
use medianest_testkit::openapi::{Direction, OpenApiSpec};
use medianest_testkit::plex_sim::{
    PlexTvSim, PmsFault, PmsSim, SimAccount, SimMovie, SimShow, PMS_VERSION,
};
use serde_json::Value;

const CLIENT_ID: &str = "medianest-contract-test-0001";

fn client_info(client_identifier: &str) -> PlexClientInfo {
    PlexClientInfo {
        client_identifier: client_identifier.to_string(),
        product: "MediaNest".to_string(),
        version: "0.1.0".to_string(),
        platform: "Linux".to_string(),
        device: "Server".to_string(),
        device_name: "MediaNest Test".to_string(),
    }
}

fn tv_client_with(sim: &PlexTvSim, client_identifier: &str, timeout: Duration) -> PlexTvClient {
    PlexTvClient::new(PlexTvConfig {
        base_url: sim.base_url().parse().unwrap(),
        client: client_info(client_identifier),
        timeout,
    })
    .unwrap()
}

fn tv_client(sim: &PlexTvSim) -> PlexTvClient {
    tv_client_with(sim, CLIENT_ID, Duration::from_secs(5))
}

fn pms_client(sim: &PmsSim, token: &str) -> PmsClient {
    PmsClient::new(PmsConfig {
        base_url: sim.base_url().parse().unwrap(),
        token: token.to_string(),
        client: client_info(CLIENT_ID),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn assert_identification_headers(headers: &std::collections::BTreeMap<String, String>) {
    let expected = [
        ("x-plex-client-identifier", CLIENT_ID),
        ("x-plex-product", "MediaNest"),
        ("x-plex-version", "0.1.0"),
        ("x-plex-platform", "Linux"),
        ("x-plex-device", "Server"),
        ("x-plex-device-name", "MediaNest Test"),
        ("accept", "application/json"),
    ];
    for (name, value) in expected {
        assert_eq!(
            headers.get(name).map(String::as_str),
            Some(value),
            "header {name} in {headers:?}"
        );
    }
}

#[tokio::test]
async fn the_full_pin_flow_yields_the_account_and_its_servers() {
    let sim = PlexTvSim::start().await;
    let alice = SimAccount::new(1001, "alice");
    let bob = SimAccount::new(1002, "bob");
    sim.add_account(alice.clone());
    sim.add_account(bob.clone());
    sim.grant_server(alice.id, "machine-aaaa", true);
    sim.grant_server(bob.id, "machine-aaaa", false);
    sim.set_server_name("machine-aaaa", "Alice's Plex");
    let client = tv_client(&sim);

    let pin = client.create_pin().await.unwrap();
    assert_eq!(sim.pins_created(), 1);
    assert_eq!(pin.auth_token, None);
    assert_eq!(pin.code.len(), 25, "strong pins have long codes: {pin:?}");
    assert!(pin
        .code
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    let expires_at = pin.expires_at.expect("plex.tv sends expiresAt");
    assert!(expires_at > Utc::now() + chrono::Duration::minutes(25));

    let polled = client.pin(pin.id).await.unwrap();
    assert_eq!(polled.id, pin.id);
    assert_eq!(polled.code, pin.code);
    assert_eq!(polled.auth_token, None, "not authorised yet");
    assert!(!polled.is_authorized());

    sim.authorize_pin(pin.id, alice.id);
    let authorised = client.pin(pin.id).await.unwrap();
    let token = authorised.auth_token.clone().expect("authorised");
    assert_eq!(token, alice.token);

    let user = client.user(&token).await.unwrap();
    assert_eq!(user.id, alice.id);
    assert_eq!(user.uuid, alice.uuid);
    assert_eq!(user.uuid.len(), 16);
    assert_eq!(user.username, "alice");
    assert_eq!(user.email.as_deref(), Some("alice@example.com"));
    assert_eq!(user.title.as_deref(), Some("alice"));
    assert_eq!(user.thumb.as_deref(), Some(alice.thumb.as_str()));

    let resources = client.resources(&token).await.unwrap();
    let servers: Vec<_> = resources.iter().filter(|r| r.is_server()).collect();
    assert_eq!(servers.len(), 1, "{resources:?}");
    assert_eq!(servers[0].client_identifier, "machine-aaaa");
    assert_eq!(servers[0].name, "Alice's Plex");
    assert_eq!(servers[0].provides, "server");
    assert!(servers[0].owned);
    assert!(
        resources.iter().any(|r| !r.is_server()),
        "the account's player is listed but is no server: {resources:?}"
    );

    // The same server, shared with bob: listed, not owned.
    let bob_resources = client.resources(&bob.token).await.unwrap();
    let shared: Vec<_> = bob_resources.iter().filter(|r| r.is_server()).collect();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].client_identifier, "machine-aaaa");
    assert!(!shared[0].owned);
}

#[tokio::test]
async fn the_resources_answer_has_plex_tv_device_fields() {
    let sim = PlexTvSim::start().await;
    let alice = SimAccount::new(7, "alice");
    sim.add_account(alice.clone());
    sim.grant_server(7, "machine-bbbb", true);

    let answer: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/v2/resources?includeHttps=1&includeRelay=1",
            sim.base_url()
        ))
        .header("X-Plex-Client-Identifier", CLIENT_ID)
        .header("X-Plex-Token", &alice.token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let server = &answer.as_array().unwrap()[0];
    assert_eq!(server["product"], "Plex Media Server");
    assert_eq!(server["clientIdentifier"], "machine-bbbb");
    assert_eq!(server["provides"], "server");
    assert_eq!(server["owned"], true);
    assert_eq!(server["accessToken"], alice.token.as_str());
    assert!(!server["connections"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn every_call_carries_the_identification_headers_and_a_stable_client_identifier() {
    let tv = PlexTvSim::start().await;
    let alice = SimAccount::new(1, "alice");
    tv.add_account(alice.clone());
    let client = tv_client(&tv);

    let pin = client.create_pin().await.unwrap();
    client.pin(pin.id).await.unwrap();
    client.user(&alice.token).await.unwrap();
    client.resources(&alice.token).await.unwrap();
    assert_eq!(client.client_identifier(), CLIENT_ID);

    let received = tv.received();
    let calls: Vec<(&str, &str)> = received
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    let pin_path = format!("/api/v2/pins/{}", pin.id);
    assert_eq!(
        calls,
        vec![
            ("POST", "/api/v2/pins?strong=true"),
            ("GET", pin_path.as_str()),
            ("GET", "/api/v2/user"),
            ("GET", "/api/v2/resources?includeHttps=1&includeRelay=1"),
        ]
    );
    for call in &received {
        assert_identification_headers(&call.headers);
    }
    // The token travels in a header, only where needed, and never in the URL.
    assert_eq!(received[0].header("X-Plex-Token"), None);
    assert_eq!(received[1].header("X-Plex-Token"), None);
    assert_eq!(
        received[2].header("X-Plex-Token"),
        Some(alice.token.as_str())
    );
    assert_eq!(
        received[3].header("X-Plex-Token"),
        Some(alice.token.as_str())
    );
    assert!(received.iter().all(|r| !r.path.contains(&alice.token)));

    let pms = PmsSim::start("machine-cccc", "pms-token").await;
    pms_client(&pms, "pms-token").identity().await.unwrap();
    let received = pms.received();
    assert_eq!(received.len(), 1);
    assert_identification_headers(&received[0].headers);
    assert_eq!(received[0].header("x-plex-token"), Some("pms-token"));
}

#[tokio::test]
async fn an_unknown_pin_is_not_found() {
    let sim = PlexTvSim::start().await;

    let err = tv_client(&sim).pin(42).await.unwrap_err();

    assert!(matches!(err, PlexError::NotFound), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_unknown_pin_answers_plex_tv_error_body() {
    let sim = PlexTvSim::start().await;

    let answer = reqwest::Client::new()
        .get(format!("{}/api/v2/pins/42", sim.base_url()))
        .header("X-Plex-Client-Identifier", CLIENT_ID)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();

    assert_eq!(answer.status(), 404);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "errors": [{ "code": 1020, "message": "Code not found or expired", "status": 404 }]
        })
    );
}

#[tokio::test]
async fn a_pin_read_under_another_client_identifier_is_not_found() {
    let sim = PlexTvSim::start().await;
    let pin = tv_client(&sim).create_pin().await.unwrap();

    let other = tv_client_with(&sim, "some-other-installation", Duration::from_secs(5));
    let err = other.pin(pin.id).await.unwrap_err();

    assert!(matches!(err, PlexError::NotFound), "{err:?}");
    // The creator still reads it.
    tv_client(&sim).pin(pin.id).await.unwrap();
}

#[tokio::test]
async fn an_expired_pin_is_not_found() {
    let sim = PlexTvSim::start().await;
    let client = tv_client(&sim);
    let pin = client.create_pin().await.unwrap();

    sim.expire_pin(pin.id);

    assert!(matches!(
        client.pin(pin.id).await.unwrap_err(),
        PlexError::NotFound
    ));
}

#[tokio::test]
async fn a_bad_token_is_unauthorized() {
    let sim = PlexTvSim::start().await;
    sim.add_account(SimAccount::new(1, "alice"));
    let client = tv_client(&sim);

    for err in [
        client.user("not-a-token").await.unwrap_err(),
        client.resources("not-a-token").await.unwrap_err(),
        client.user("").await.unwrap_err(),
    ] {
        assert!(matches!(err, PlexError::Unauthorized), "{err:?}");
        assert!(!err.is_retryable());
    }
    // The empty token is refused without a call.
    assert_eq!(sim.received().len(), 2);
}

#[tokio::test]
async fn a_bad_token_answers_plex_tv_error_body() {
    let sim = PlexTvSim::start().await;

    let answer = reqwest::Client::new()
        .get(format!("{}/api/v2/user", sim.base_url()))
        .header("X-Plex-Client-Identifier", CLIENT_ID)
        .header("X-Plex-Token", "nope")
        .send()
        .await
        .unwrap();

    assert_eq!(answer.status(), 401);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], 1001);
    assert_eq!(
        body["errors"][0]["message"],
        "User could not be authenticated"
    );
}

#[tokio::test]
async fn plex_tv_refuses_calls_without_a_client_identifier() {
    let sim = PlexTvSim::start().await;

    let answer = reqwest::Client::new()
        .post(format!("{}/api/v2/pins?strong=true", sim.base_url()))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();

    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], 1000);
    assert_eq!(
        body["errors"][0]["message"],
        "X-Plex-Client-Identifier is missing"
    );
    assert_eq!(sim.pins_created(), 0);

    // The client never gets that far: an empty identifier is a configuration error.
    let err = PlexTvClient::new(PlexTvConfig {
        base_url: sim.base_url().parse().unwrap(),
        client: client_info("  "),
        timeout: Duration::from_secs(1),
    })
    .unwrap_err();
    assert!(matches!(err, PlexError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn a_plex_tv_slower_than_the_timeout_is_unavailable() {
    let sim = PlexTvSim::start().await;
    sim.set_delay(Duration::from_secs(3));
    let client = tv_client_with(&sim, CLIENT_ID, Duration::from_millis(300));

    let started = Instant::now();
    let err = client.create_pin().await.unwrap_err();

    assert!(matches!(err, PlexError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the timeout"
    );
    // The client did not retry on its own.
    assert_eq!(sim.received().len(), 1);
}

#[tokio::test]
async fn an_unreachable_plex_tv_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = PlexTvClient::new(PlexTvConfig {
        base_url: format!("http://127.0.0.1:{port}").parse().unwrap(),
        client: client_info(CLIENT_ID),
        timeout: Duration::from_secs(2),
    })
    .unwrap();

    let err = client.create_pin().await.unwrap_err();

    assert!(matches!(err, PlexError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retryable_other_4xx_are_not() {
    let sim = PlexTvSim::start().await;
    let client = tv_client(&sim);

    sim.fail_next(1, 429);
    let err = client.create_pin().await.unwrap_err();
    assert!(matches!(err, PlexError::Unavailable(ref text) if text.contains("429")));
    assert!(err.is_retryable());

    sim.fail_next(1, 503);
    let err = client.create_pin().await.unwrap_err();
    assert!(matches!(err, PlexError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());

    sim.fail_next(1, 422);
    let err = client.create_pin().await.unwrap_err();
    assert!(
        matches!(err, PlexError::Rejected { status: 422, ref body } if body.contains("Simulated")),
        "{err:?}"
    );
    assert!(!err.is_retryable());

    // Failures are consumed; the next call works.
    client.create_pin().await.unwrap();
}

#[tokio::test]
async fn pms_identity_reads_the_server_and_checks_the_token() {
    let pms = PmsSim::start("0123456789abcdef0123456789abcdef01234567", "pms-token").await;
    pms.set_friendly_name("Living Room");

    let identity = pms_client(&pms, pms.token()).identity().await.unwrap();

    assert_eq!(identity.machine_identifier, pms.machine_identifier());
    assert_eq!(identity.version.as_deref(), Some(PMS_VERSION));
    assert_eq!(identity.friendly_name.as_deref(), Some("Living Room"));

    let err = pms_client(&pms, "wrong-token")
        .identity()
        .await
        .unwrap_err();
    assert!(matches!(err, PlexError::Unauthorized), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn pms_answers_identity_without_a_token_and_xml_without_accept_json() {
    // What a real PMS does, and why PmsClient::identity reads the (authenticated) root.
    let pms = PmsSim::start("machine-dddd", "pms-token").await;
    let http = reqwest::Client::new();

    let json: Value = http
        .get(format!("{}/identity", pms.base_url()))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["MediaContainer"]["machineIdentifier"], "machine-dddd");
    assert_eq!(json["MediaContainer"]["claimed"], true);

    let xml = http
        .get(format!("{}/identity", pms.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(xml.contains("<MediaContainer"), "{xml}");
    assert!(xml.contains("machineIdentifier=\"machine-dddd\""), "{xml}");
    assert!(xml.contains("claimed=\"1\""), "{xml}");

    let root = http
        .get(format!("{}/", pms.base_url()))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 401);

    let root: Value = http
        .get(format!("{}/?X-Plex-Token=pms-token", pms.base_url()))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["MediaContainer"]["machineIdentifier"], "machine-dddd");
    assert!(root["MediaContainer"]["Directory"].is_array());
}

#[tokio::test]
async fn a_slow_pms_is_unavailable() {
    let pms = PmsSim::start("machine-eeee", "pms-token").await;
    pms.set_delay(Duration::from_secs(3));
    let client = PmsClient::new(PmsConfig {
        base_url: pms.base_url().parse().unwrap(),
        token: "pms-token".to_string(),
        client: client_info(CLIENT_ID),
        timeout: Duration::from_millis(300),
    })
    .unwrap();

    let err = client.identity().await.unwrap_err();

    assert!(matches!(err, PlexError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn the_auth_url_has_plex_shape_and_percent_encodes_values() {
    let sim = PlexTvSim::start().await;
    let client = PlexTvClient::new(PlexTvConfig {
        base_url: sim.base_url().parse().unwrap(),
        client: PlexClientInfo {
            product: "Media Nest & Co".to_string(),
            ..client_info("id with spaces/+")
        },
        timeout: Duration::from_secs(1),
    })
    .unwrap();

    assert_eq!(
        client.auth_url("abc123", None),
        "https://app.plex.tv/auth#?clientID=id%20with%20spaces%2F%2B&code=abc123\
         &context%5Bdevice%5D%5Bproduct%5D=Media%20Nest%20%26%20Co"
    );
    assert_eq!(
        client.auth_url("abc123", Some("https://medianest.example/setup?step=2&x=y")),
        "https://app.plex.tv/auth#?clientID=id%20with%20spaces%2F%2B&code=abc123\
         &context%5Bdevice%5D%5Bproduct%5D=Media%20Nest%20%26%20Co\
         &forwardUrl=https%3A%2F%2Fmedianest.example%2Fsetup%3Fstep%3D2%26x%3Dy"
    );
}

#[tokio::test]
async fn tokens_never_show_in_debug_output() {
    let secret = "super-secret-plex-token";
    let pin = PlexPin {
        id: 1,
        code: "code".to_string(),
        auth_token: Some(secret.to_string()),
        expires_at: None,
    };
    assert!(!format!("{pin:?}").contains(secret), "{pin:?}");
    assert!(format!("{pin:?}").contains("<redacted>"));

    let pms = PmsSim::start("machine-ffff", secret).await;
    let cfg = PmsConfig {
        base_url: pms.base_url().parse().unwrap(),
        token: secret.to_string(),
        client: client_info(CLIENT_ID),
        timeout: Duration::from_secs(5),
    };
    assert!(!format!("{cfg:?}").contains(secret), "{cfg:?}");
    let client = PmsClient::new(cfg).unwrap();
    assert!(!format!("{client:?}").contains(secret), "{client:?}");

    let tv = PlexTvSim::start().await;
    let tv_client = tv_client(&tv);
    let err = tv_client.user(secret).await.unwrap_err();
    assert!(!format!("{err:?} {err}").contains(secret));
    assert!(!format!("{tv_client:?}").contains(secret));
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed_so_the_token_stays_home() {
    // plex.tv simulator reached as `localhost`; the redirecting server as `127.0.0.1`.
    let tv = PlexTvSim::start().await;
    let alice = SimAccount::new(1, "alice");
    tv.add_account(alice.clone());
    let elsewhere = tv.base_url().replace("127.0.0.1", "localhost");
    let app = axum::Router::new().fallback(move || {
        let target = format!("{elsewhere}/api/v2/user");
        async move {
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, target)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = PlexTvClient::new(PlexTvConfig {
        base_url: format!("http://{addr}").parse().unwrap(),
        client: client_info(CLIENT_ID),
        timeout: Duration::from_secs(5),
    })
    .unwrap();

    let err = client.user(&alice.token).await.unwrap_err();

    assert!(
        matches!(err, PlexError::Rejected { status: 302, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(tv.received().is_empty(), "the token went to the other host");
    server.abort();
}

// ---------------------------------------------------------------------------------------------
// PMS library sections, section scans (the Plex scanner) and webhooks (docs/design.md §6).
// ---------------------------------------------------------------------------------------------

const PMS_TOKEN: &str = "pms-token";

/// A PMS with a movie library, a TV library and an "Other Videos" library for downloads.
async fn pms_with_libraries() -> PmsSim {
    let pms = PmsSim::start("machine-libr", PMS_TOKEN).await;
    pms.add_section("1", "Movies", "movie", "/data/movies");
    pms.add_location("1", "/mnt/more-movies");
    pms.add_section("2", "TV Shows", "show", "/data/tv");
    pms.add_other_videos_section("3", "YouTube", "/data/youtube");
    pms
}

#[tokio::test]
async fn library_sections_lists_the_sections_with_types_agents_and_locations() {
    let pms = pms_with_libraries().await;

    let sections = pms_client(&pms, PMS_TOKEN)
        .library_sections()
        .await
        .unwrap();

    let summary: Vec<(&str, &str, &str)> = sections
        .iter()
        .map(|s| (s.key.as_str(), s.section_type.as_str(), s.title.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("1", "movie", "Movies"),
            ("2", "show", "TV Shows"),
            ("3", "movie", "YouTube"),
        ]
    );
    assert_eq!(sections[0].agent.as_deref(), Some("tv.plex.agents.movie"));
    assert_eq!(sections[0].scanner.as_deref(), Some("Plex Movie"));
    assert_eq!(
        sections[0].locations,
        vec!["/data/movies", "/mnt/more-movies"]
    );
    assert_eq!(sections[1].agent.as_deref(), Some("tv.plex.agents.series"));
    assert_eq!(sections[1].scanner.as_deref(), Some("Plex TV Series"));
    assert_eq!(sections[1].locations, vec!["/data/tv"]);
    assert_eq!(sections[2].agent.as_deref(), Some("tv.plex.agents.none"));
    assert_eq!(
        sections[2].scanner.as_deref(),
        Some("Plex Video Files Scanner")
    );
    assert_eq!(sections[2].locations, vec!["/data/youtube"]);

    let received = pms.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "GET");
    assert_eq!(received[0].path, "/library/sections");
    assert_identification_headers(&received[0].headers);
    assert_eq!(received[0].header("x-plex-token"), Some(PMS_TOKEN));
}

#[tokio::test]
async fn a_server_without_libraries_lists_no_sections() {
    let pms = PmsSim::start("machine-empty", PMS_TOKEN).await;
    let client = pms_client(&pms, PMS_TOKEN);

    assert!(client.library_sections().await.unwrap().is_empty());
    assert_eq!(client.find_section("movie", "Movies").await.unwrap(), None);

    // PMS leaves `Directory` out when there is none.
    let raw: Value = reqwest::Client::new()
        .get(format!("{}/library/sections", pms.base_url()))
        .header("X-Plex-Token", PMS_TOKEN)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw["MediaContainer"]["size"], 0);
    assert!(raw["MediaContainer"].get("Directory").is_none(), "{raw}");
}

#[tokio::test]
async fn pms_answers_library_sections_in_plex_json_and_xml() {
    let pms = pms_with_libraries().await;
    let http = reqwest::Client::new();

    let json: Value = http
        .get(format!("{}/library/sections", pms.base_url()))
        .header("X-Plex-Token", PMS_TOKEN)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let container = &json["MediaContainer"];
    assert_eq!(container["size"], 3);
    assert_eq!(container["allowSync"], false);
    assert_eq!(container["title1"], "Plex Library");
    let youtube = &container["Directory"][2];
    for (field, value) in [
        ("key", "3"),
        ("type", "movie"),
        ("title", "YouTube"),
        ("agent", "tv.plex.agents.none"),
        ("scanner", "Plex Video Files Scanner"),
        ("language", "xn"),
    ] {
        assert_eq!(youtube[field], value, "{field} in {youtube}");
    }
    for field in [
        "allowSync",
        "art",
        "composite",
        "filters",
        "refreshing",
        "thumb",
        "uuid",
        "updatedAt",
        "createdAt",
        "scannedAt",
        "content",
        "directory",
        "contentChangedAt",
        "hidden",
    ] {
        assert!(youtube.get(field).is_some(), "{field} in {youtube}");
    }
    assert_eq!(youtube["Location"][0]["path"], "/data/youtube");
    assert!(youtube["Location"][0]["id"].is_u64());

    let xml = http
        .get(format!(
            "{}/library/sections?X-Plex-Token={PMS_TOKEN}",
            pms.base_url()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(xml.contains("<MediaContainer "), "{xml}");
    assert!(xml.contains(" size=\"3\""), "{xml}");
    assert!(xml.contains("<Directory "), "{xml}");
    assert!(xml.contains("agent=\"tv.plex.agents.none\""), "{xml}");
    assert!(xml.contains("path=\"/data/youtube\""), "{xml}");
    assert!(xml.contains("<Location "), "{xml}");

    let refused = http
        .get(format!("{}/library/sections", pms.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn find_section_matches_type_and_title_case_insensitively() {
    let pms = pms_with_libraries().await;
    let client = pms_client(&pms, PMS_TOKEN);

    let youtube = client
        .find_section("movie", "  youtube ")
        .await
        .unwrap()
        .expect("found");
    assert_eq!(youtube.key, "3");
    assert_eq!(youtube.locations, vec!["/data/youtube"]);
    let tv = client.find_section("show", "TV SHOWS").await.unwrap();
    assert_eq!(tv.map(|s| s.key), Some("2".to_string()));

    // Same title, other type: none.
    assert_eq!(client.find_section("show", "YouTube").await.unwrap(), None);
    assert_eq!(client.find_section("artist", "Movies").await.unwrap(), None);
    assert_eq!(client.find_section("movie", "Music").await.unwrap(), None);
}

#[tokio::test]
async fn refresh_section_sends_the_key_the_encoded_path_and_the_token() {
    let pms = pms_with_libraries().await;
    let client = pms_client(&pms, PMS_TOKEN);

    client.refresh_section("3", None).await.unwrap();
    client
        .refresh_section("3", Some("/data/youtube/Test Channel [x]"))
        .await
        .unwrap();
    client
        .refresh_section("1", Some("/data/movies/Amélie & Co + 100% (2001)"))
        .await
        .unwrap();

    assert_eq!(
        pms.refreshes(),
        vec![
            ("3".to_string(), None),
            (
                "3".to_string(),
                Some("/data/youtube/Test Channel [x]".to_string())
            ),
            (
                "1".to_string(),
                Some("/data/movies/Amélie & Co + 100% (2001)".to_string())
            ),
        ]
    );
    let received = pms.received();
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/library/sections/3/refresh",
            "/library/sections/3/refresh?path=%2Fdata%2Fyoutube%2FTest%20Channel%20%5Bx%5D",
            "/library/sections/1/refresh?path=%2Fdata%2Fmovies%2FAm%C3%A9lie%20%26%20Co%20%2B%20100%25%20%282001%29",
        ]
    );
    for call in &received {
        assert_eq!(call.method, "GET");
        assert_identification_headers(&call.headers);
        assert_eq!(call.header("x-plex-token"), Some(PMS_TOKEN));
        assert!(!call.path.contains(PMS_TOKEN));
    }
}

#[tokio::test]
async fn refreshing_an_unknown_section_is_an_error_that_is_not_retryable() {
    let pms = pms_with_libraries().await;
    let client = pms_client(&pms, PMS_TOKEN);

    let err = client
        .refresh_section("99", Some("/data/youtube/x"))
        .await
        .unwrap_err();

    assert!(matches!(err, PlexError::NotFound), "{err:?}");
    assert!(!err.is_retryable());
    assert!(pms.refreshes().is_empty());

    // An empty key is refused without a call.
    let err = client.refresh_section(" ", None).await.unwrap_err();
    assert!(matches!(err, PlexError::Config(_)), "{err:?}");
    assert_eq!(pms.received().len(), 1);
}

#[tokio::test]
async fn injected_refresh_failures_are_retryable_and_then_the_refresh_goes_through() {
    let pms = pms_with_libraries().await;
    let client = pms_client(&pms, PMS_TOKEN);

    pms.fail_refreshes(2, 503);
    for _ in 0..2 {
        let err = client
            .refresh_section("3", Some("/data/youtube/a"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, PlexError::Unavailable(ref text) if text.contains("503")),
            "{err:?}"
        );
        assert!(err.is_retryable());
    }
    assert!(pms.refreshes().is_empty());

    client
        .refresh_section("3", Some("/data/youtube/a"))
        .await
        .unwrap();
    assert_eq!(
        pms.refreshes(),
        vec![("3".to_string(), Some("/data/youtube/a".to_string()))]
    );
    assert_eq!(pms.received().len(), 3);

    // Other statuses map as everywhere else.
    pms.fail_refreshes(1, 400);
    let err = client.refresh_section("3", None).await.unwrap_err();
    assert!(
        matches!(err, PlexError::Rejected { status: 400, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn library_calls_with_a_wrong_token_are_unauthorized() {
    let pms = pms_with_libraries().await;
    let client = pms_client(&pms, "wrong-token");

    for err in [
        client.library_sections().await.unwrap_err(),
        client.find_section("movie", "Movies").await.unwrap_err(),
        client
            .refresh_section("3", Some("/data/youtube"))
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, PlexError::Unauthorized), "{err:?}");
        assert!(!err.is_retryable());
    }
    assert!(pms.refreshes().is_empty());
}

#[tokio::test]
async fn a_slow_refresh_is_unavailable() {
    let pms = pms_with_libraries().await;
    pms.set_delay(Duration::from_secs(3));
    let client = PmsClient::new(PmsConfig {
        base_url: pms.base_url().parse().unwrap(),
        token: PMS_TOKEN.to_string(),
        client: client_info(CLIENT_ID),
        timeout: Duration::from_millis(300),
    })
    .unwrap();

    let err = client.refresh_section("3", None).await.unwrap_err();

    assert!(matches!(err, PlexError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
}

/// One part of a `multipart/form-data` body: its header lines and its content.
struct Part {
    headers: Vec<String>,
    content: Vec<u8>,
}

impl Part {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A minimal RFC 7578 parse that insists on exact framing: `--b CRLF`, parts separated by
/// `CRLF --b CRLF`, `CRLF --b-- CRLF` at the end, headers ending with an empty line.
fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("not a multipart content type: {content_type}"));
    assert!(!boundary.is_empty() && boundary.len() <= 70, "{boundary}");
    let open = format!("--{boundary}\r\n");
    let close = format!("\r\n--{boundary}--\r\n");
    let separator = format!("\r\n--{boundary}\r\n");
    assert!(body.starts_with(open.as_bytes()), "framing at the start");
    assert!(body.ends_with(close.as_bytes()), "framing at the end");
    let mut rest = &body[open.len()..body.len() - close.len()];
    let mut raw_parts = Vec::new();
    while let Some(at) = find(rest, separator.as_bytes()) {
        raw_parts.push(&rest[..at]);
        rest = &rest[at + separator.len()..];
    }
    raw_parts.push(rest);
    raw_parts
        .into_iter()
        .map(|raw| {
            let split = find(raw, b"\r\n\r\n").expect("a part's headers end with an empty line");
            let headers = String::from_utf8(raw[..split].to_vec())
                .unwrap()
                .split("\r\n")
                .map(str::to_string)
                .collect();
            Part {
                headers,
                content: raw[split + 4..].to_vec(),
            }
        })
        .collect()
}

#[tokio::test]
async fn webhook_multipart_bodies_have_rfc_7578_framing() {
    let payload = PmsSim::library_new_payload(
        "movie",
        "The Matrix",
        Some(1999),
        "1234",
        &["imdb://tt0133093", "tmdb://603", "tvdb://169"],
    );

    // As PMS sends it: a `payload` part without a content type, no thumb.
    let (content_type, body) = PmsSim::webhook_multipart(&payload, None, false);
    let parts = parse_multipart(&content_type, &body);
    assert_eq!(parts.len(), 1);
    assert_eq!(
        parts[0].headers,
        vec!["Content-Disposition: form-data; name=\"payload\"".to_string()]
    );
    assert_eq!(parts[0].header("content-type"), None);
    let read: Value = serde_json::from_slice(&parts[0].content).unwrap();
    assert_eq!(read, payload);

    // With a part content type and a thumb.
    let (content_type, body) = PmsSim::webhook_multipart(&payload, Some("application/json"), true);
    let parts = parse_multipart(&content_type, &body);
    assert_eq!(parts.len(), 2);
    assert_eq!(
        parts[0].header("content-disposition"),
        Some("form-data; name=\"payload\"")
    );
    assert_eq!(parts[0].header("content-type"), Some("application/json"));
    let read: Value = serde_json::from_slice(&parts[0].content).unwrap();
    assert_eq!(read, payload);
    assert_eq!(
        parts[1].header("content-disposition"),
        Some("form-data; name=\"thumb\"; filename=\"image.jpg\"")
    );
    assert_eq!(parts[1].header("content-type"), Some("image/jpeg"));
    assert!(parts[1].content.starts_with(&[0xFF, 0xD8]), "a JPEG");
    assert!(parts[1].content.ends_with(&[0xFF, 0xD9]), "a whole JPEG");

    // Every body gets its own boundary.
    let (other, _) = PmsSim::webhook_multipart(&payload, None, false);
    assert_ne!(other, content_type);
}

#[tokio::test]
async fn library_new_payloads_have_plex_webhook_shape() {
    let movie = PmsSim::library_new_payload(
        "movie",
        "The Matrix",
        Some(1999),
        "1234",
        &["imdb://tt0133093", "tmdb://603"],
    );
    assert_eq!(movie["event"], "library.new");
    assert_eq!(movie["user"], true);
    assert_eq!(movie["owner"], true);
    assert!(movie["Account"]["id"].is_u64());
    assert!(movie["Account"]["title"].is_string());
    assert!(movie["Server"]["uuid"].is_string());
    assert!(movie.get("Player").is_none());
    let metadata = &movie["Metadata"];
    assert_eq!(metadata["librarySectionType"], "movie");
    assert_eq!(metadata["type"], "movie");
    assert_eq!(metadata["ratingKey"], "1234");
    assert_eq!(metadata["key"], "/library/metadata/1234");
    assert!(metadata["guid"]
        .as_str()
        .unwrap()
        .starts_with("plex://movie/"));
    assert_eq!(metadata["title"], "The Matrix");
    assert_eq!(metadata["year"], 1999);
    assert_eq!(
        metadata["Guid"],
        serde_json::json!([{ "id": "imdb://tt0133093" }, { "id": "tmdb://603" }])
    );
    assert!(metadata["librarySectionID"].is_u64());
    assert!(metadata["addedAt"].is_i64());

    let episode =
        PmsSim::library_new_payload("episode", "Breaking Bad", None, "5003", &["tvdb://349232"]);
    let metadata = &episode["Metadata"];
    assert_eq!(metadata["librarySectionType"], "show");
    assert_eq!(metadata["type"], "episode");
    assert_eq!(metadata["grandparentTitle"], "Breaking Bad");
    assert_eq!(metadata["grandparentRatingKey"], "5001");
    assert_eq!(metadata["parentRatingKey"], "5002");
    assert_eq!(metadata["grandparentKey"], "/library/metadata/5001");
    assert!(metadata["grandparentGuid"]
        .as_str()
        .unwrap()
        .starts_with("plex://show/"));
    assert_eq!(metadata["index"], 1);
    assert_eq!(metadata["parentIndex"], 1);
    assert!(metadata.get("year").is_none());
}

#[tokio::test]
async fn send_webhook_posts_multipart_as_pms_does() {
    let pms = pms_with_libraries().await;
    pms.set_friendly_name("Living Room");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/webhooks/plex/{secret}",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    tx.send((headers, body)).unwrap();
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("http://{addr}/webhooks/plex/s3cret");

    let payload = pms.library_new_event("movie", "Some Video", Some(2024), "77", &[]);
    assert_eq!(payload["Server"]["uuid"], pms.machine_identifier());
    assert_eq!(payload["Server"]["title"], "Living Room");
    assert_eq!(payload["Metadata"]["librarySectionID"], 1);
    assert_eq!(payload["Metadata"]["librarySectionTitle"], "Movies");

    let answer = pms.send_webhook(&url, &payload, None).await;
    assert_eq!(answer.status(), 204);
    let (headers, body) = rx.recv().await.unwrap();
    let user_agent = headers["user-agent"].to_str().unwrap();
    assert_eq!(user_agent, format!("PlexMediaServer/{PMS_VERSION}"));
    let content_type = headers["content-type"].to_str().unwrap();
    let parts = parse_multipart(content_type, &body);
    assert_eq!(parts.len(), 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&parts[0].content).unwrap(),
        payload
    );

    let answer = pms
        .send_webhook_with(&url, &payload, Some("application/json"), true)
        .await;
    assert_eq!(answer.status(), 204);
    let (headers, body) = rx.recv().await.unwrap();
    let parts = parse_multipart(headers["content-type"].to_str().unwrap(), &body);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].header("content-type"), Some("application/json"));
    server.abort();
}

// ---------------------------------------------------------------------------------------------
// PMS library content: `GET /library/sections/{key}/all`, paged, for the library sync.
// ---------------------------------------------------------------------------------------------

fn list(kind: ItemKind, start: u64, size: u32) -> ListItems {
    ListItems {
        kind,
        start,
        size,
        added_since: None,
    }
}

/// Every page of `query`'s listing, asked the way the sync worker does: from `query.start`
/// in steps of `query.size` while [`LibraryPage::has_more`].
async fn every_page(client: &PmsClient, section: &str, query: ListItems) -> Vec<LibraryPage> {
    let mut query = query;
    let mut pages = Vec::new();
    loop {
        let page = client.section_items(section, &query).await.unwrap();
        let more = page.has_more(query.size);
        pages.push(page);
        if !more {
            return pages;
        }
        query.start += u64::from(query.size);
        assert!(pages.len() < 10_000, "the paging never ends");
    }
}

fn flatten(pages: &[LibraryPage]) -> Vec<LibraryItem> {
    pages.iter().flat_map(|page| page.items.clone()).collect()
}

/// The decoded query pairs of a received request.
fn query_pairs(path: &str) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://sim{path}")).unwrap();
    url.query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// A raw JSON call to the simulator: status, headers and body.
async fn raw_pms(
    pms: &PmsSim,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .get(format!("{}{path_and_query}", pms.base_url()))
        .header("X-Plex-Token", PMS_TOKEN)
        .header("Accept", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

fn header_u64(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.parse().ok()
}

/// A PMS with a movie section "1" and a show section "2" (see [`pms_with_libraries`]) holding
/// a few movies and two shows with seasons. Returns the rating keys of the shows.
async fn pms_with_content() -> (PmsSim, String, String) {
    let pms = pms_with_libraries().await;
    pms.add_movie(
        "1",
        SimMovie::new("The Matrix", 1999, 603).with_resolution("4k"),
    );
    pms.add_movie("1", SimMovie::new("Alien", 1979, 348));
    pms.add_movie("1", SimMovie::new("Zodiac", 2007, 1949));
    pms.add_movie("1", SimMovie::legacy("Brazil", 1985));
    let lost = pms.add_show("2", SimShow::new("Lost", 2004, 4607, 73739));
    pms.add_season(&lost, 1, 25);
    pms.add_season(&lost, 2, 24);
    let office = pms.add_show("2", SimShow::new("The Office", 2005, 2316, 73244));
    pms.add_season(&office, 0, 3);
    pms.add_season(&office, 1, 6);
    (pms, lost, office)
}

#[tokio::test]
async fn paging_through_a_section_in_small_pages_returns_every_item_once_in_title_order() {
    let pms = pms_with_libraries().await;
    for n in 1..=23_u64 {
        pms.add_movie(
            "1",
            SimMovie::new(&format!("The Movie {n:02}"), 2000, 1000 + n),
        );
    }
    let client = pms_client(&pms, PMS_TOKEN);

    let pages = every_page(&client, "1", list(ItemKind::Movie, 0, 5)).await;

    assert_eq!(pages.len(), 5, "23 items in pages of 5");
    assert_eq!(pms.library_calls(), 5);
    let starts: Vec<u64> = pages.iter().map(|page| page.start).collect();
    assert_eq!(starts, vec![0, 5, 10, 15, 20]);
    assert!(pages.iter().all(|page| page.total_size == Some(23)));
    let items = flatten(&pages);
    let titles: Vec<&str> = items.iter().map(|item| item.title.as_str()).collect();
    let expected: Vec<String> = (1..=23).map(|n| format!("The Movie {n:02}")).collect();
    assert_eq!(titles, expected, "every item once, in title order");
    let mut keys: Vec<&str> = items.iter().map(|item| item.rating_key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 23, "rating keys are unique");
    assert!(items.iter().all(|item| item.item_type == "movie"));
    assert_eq!(items[0].tmdb_id(), Some(1001));
    assert_eq!(items[0].year, Some(2000));
    assert!(items[0].added_at.is_some());

    // On the wire: the section path, type, includeGuids and the paging as query parameters,
    // with the token and the identification headers.
    for (request, start) in pms.received().iter().zip([0, 5, 10, 15, 20]) {
        assert!(
            request.path.starts_with("/library/sections/1/all?"),
            "{}",
            request.path
        );
        let pairs = query_pairs(&request.path);
        assert_eq!(query_value(&pairs, "type"), Some("1"));
        assert_eq!(query_value(&pairs, "includeGuids"), Some("1"));
        assert_eq!(
            query_value(&pairs, "X-Plex-Container-Start"),
            Some(start.to_string().as_str())
        );
        assert_eq!(query_value(&pairs, "X-Plex-Container-Size"), Some("5"));
        assert_eq!(query_value(&pairs, "sort"), None);
        assert_identification_headers(&request.headers);
        assert_eq!(request.header("x-plex-token"), Some(PMS_TOKEN));
    }
}

#[tokio::test]
async fn the_simulator_pages_by_query_parameters_or_headers_like_pms() {
    let (pms, _, _) = pms_with_content().await;

    let (status, headers, by_query) = raw_pms(
        &pms,
        "/library/sections/1/all?X-Plex-Container-Start=1&X-Plex-Container-Size=2",
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (_, header_headers, by_headers) = raw_pms(
        &pms,
        "/library/sections/1/all",
        &[
            ("X-Plex-Container-Start", "1"),
            ("X-Plex-Container-Size", "2"),
        ],
    )
    .await;
    assert_eq!(by_query, by_headers);
    for headers in [&headers, &header_headers] {
        assert_eq!(header_u64(headers, "x-plex-container-start"), Some(1));
        assert_eq!(header_u64(headers, "x-plex-container-total-size"), Some(4));
    }
    let container = &by_query["MediaContainer"];
    assert_eq!(container["size"], 2);
    assert_eq!(container["totalSize"], 4);
    assert_eq!(container["offset"], 1);
    assert_eq!(container["librarySectionID"], 1);
    assert_eq!(container["librarySectionTitle"], "Movies");
    assert_eq!(container["Metadata"].as_array().unwrap().len(), 2);

    // Without paging: the whole section (default type: movies), and no paging fields.
    let (_, headers, whole) = raw_pms(&pms, "/library/sections/1/all", &[]).await;
    let container = &whole["MediaContainer"];
    assert_eq!(container["size"], 4);
    assert!(container.get("totalSize").is_none(), "{container}");
    assert!(headers.get("x-plex-container-total-size").is_none());
    let titles: Vec<&str> = container["Metadata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, vec!["Alien", "Brazil", "The Matrix", "Zodiac"]);

    // Past the end: an empty page without `Metadata`, still with the total.
    let (_, _, past) = raw_pms(
        &pms,
        "/library/sections/1/all?X-Plex-Container-Start=10&X-Plex-Container-Size=5",
        &[],
    )
    .await;
    assert_eq!(past["MediaContainer"]["size"], 0);
    assert_eq!(past["MediaContainer"]["totalSize"], 4);
    assert!(past["MediaContainer"].get("Metadata").is_none());

    // Size 0 asks for the total only (python-plexapi's totalViewSize).
    let (_, _, count) = raw_pms(
        &pms,
        "/library/sections/2/all?type=3&X-Plex-Container-Start=0&X-Plex-Container-Size=0",
        &[],
    )
    .await;
    assert_eq!(count["MediaContainer"]["totalSize"], 4);
    assert!(count["MediaContainer"].get("Metadata").is_none());
}

#[tokio::test]
async fn include_guids_adds_the_external_ids_and_without_it_there_are_none() {
    let (pms, _, _) = pms_with_content().await;

    let (_, _, with) = raw_pms(&pms, "/library/sections/1/all?includeGuids=1", &[]).await;
    let (_, _, without) = raw_pms(&pms, "/library/sections/1/all", &[]).await;
    let find = |body: &Value, title: &str| -> Value {
        body["MediaContainer"]["Metadata"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["title"] == title)
            .cloned()
            .unwrap()
    };
    let matrix = find(&with, "The Matrix");
    assert_eq!(
        matrix["Guid"],
        serde_json::json!([{"id": "imdb://tt0000603"}, {"id": "tmdb://603"}])
    );
    assert!(matrix["guid"]
        .as_str()
        .unwrap()
        .starts_with("plex://movie/"));
    assert_eq!(matrix["Media"][0]["videoResolution"], "4k");
    assert!(find(&without, "The Matrix").get("Guid").is_none());
    // A legacy-agent item has no Guid even when asked for.
    let brazil = find(&with, "Brazil");
    assert!(brazil.get("Guid").is_none(), "{brazil}");
    assert!(brazil["guid"]
        .as_str()
        .unwrap()
        .starts_with("com.plexapp.agents.imdb://tt"));

    // The client always asks with includeGuids=1.
    let client = pms_client(&pms, PMS_TOKEN);
    let items = client
        .section_items("1", &list(ItemKind::Movie, 0, 50))
        .await
        .unwrap()
        .items;
    let matrix = items
        .iter()
        .find(|item| item.title == "The Matrix")
        .unwrap();
    assert_eq!(matrix.guids, vec!["imdb://tt0000603", "tmdb://603"]);
    assert_eq!(matrix.tmdb_id(), Some(603));
    assert!(matrix.is_4k());
    let alien = items.iter().find(|item| item.title == "Alien").unwrap();
    assert!(!alien.is_4k());
    assert_eq!(alien.video_resolutions, vec!["1080"]);
    let brazil = items.iter().find(|item| item.title == "Brazil").unwrap();
    assert!(brazil.guids.is_empty());
    assert_eq!(brazil.tmdb_id(), None);
    assert!(brazil
        .guid
        .as_deref()
        .unwrap()
        .starts_with("com.plexapp.agents.imdb://"));
}

#[tokio::test]
async fn shows_and_seasons_carry_their_counts_parents_and_numbers() {
    let (pms, lost, office) = pms_with_content().await;
    let client = pms_client(&pms, PMS_TOKEN);

    let shows = flatten(&every_page(&client, "2", list(ItemKind::Show, 0, 200)).await);
    let summary: Vec<_> = shows
        .iter()
        .map(|show| {
            (
                show.title.as_str(),
                show.leaf_count,
                show.tmdb_id(),
                show.tvdb_id(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("Lost", Some(49), Some(4607), Some(73739)),
            ("The Office", Some(9), Some(2316), Some(73244)),
        ]
    );
    assert!(shows.iter().all(|show| show.item_type == "show"));

    // Seasons: type=3, in pages of 3 — each with its show and number.
    let pages = every_page(&client, "2", list(ItemKind::Season, 0, 3)).await;
    assert_eq!(pages.len(), 2);
    let seasons: Vec<_> = flatten(&pages)
        .into_iter()
        .map(|season| {
            assert_eq!(season.item_type, "season");
            (
                season.title,
                season.parent_rating_key,
                season.index,
                season.leaf_count,
            )
        })
        .collect();
    assert_eq!(
        seasons,
        vec![
            (
                "Season 1".to_string(),
                Some(lost.clone()),
                Some(1),
                Some(25)
            ),
            (
                "Season 2".to_string(),
                Some(lost.clone()),
                Some(2),
                Some(24)
            ),
            (
                "Specials".to_string(),
                Some(office.clone()),
                Some(0),
                Some(3)
            ),
            (
                "Season 1".to_string(),
                Some(office.clone()),
                Some(1),
                Some(6)
            ),
        ]
    );
    let pairs = query_pairs(&pms.received().last().unwrap().path);
    assert_eq!(query_value(&pairs, "type"), Some("3"));

    // The raw season has PMS's parent fields; the raw show its child count.
    let (_, _, raw) = raw_pms(&pms, "/library/sections/2/all?type=3", &[]).await;
    let season = &raw["MediaContainer"]["Metadata"][0];
    assert_eq!(season["parentTitle"], "Lost");
    assert!(season["parentGuid"]
        .as_str()
        .unwrap()
        .starts_with("plex://show/"));
    assert_eq!(raw["MediaContainer"]["viewGroup"], "season");
    let (_, _, raw) = raw_pms(&pms, "/library/sections/2/all", &[]).await;
    assert_eq!(raw["MediaContainer"]["Metadata"][0]["childCount"], 2);

    // Episodes: type=4.
    let episodes = flatten(&every_page(&client, "2", list(ItemKind::Episode, 0, 20)).await);
    assert_eq!(episodes.len(), 58);
    assert!(episodes.iter().all(|episode| episode.item_type == "episode"
        && episode.parent_rating_key.is_some()
        && episode.video_resolutions == ["1080"]));

    // A movie section holds no seasons: an empty page, not an error.
    let page = client
        .section_items("1", &list(ItemKind::Season, 0, 50))
        .await
        .unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.total_size, Some(0));
    assert!(!page.has_more(50));
}

#[tokio::test]
async fn recently_added_lists_only_newer_items_newest_first_and_stops_at_the_last_page() {
    let pms = pms_with_libraries().await;
    let now = Utc::now().timestamp();
    let since = now - 3_600;
    for (n, age) in [
        (1, 7_200),
        (2, 60),
        (3, 3_600),
        (4, 10),
        (5, 86_400),
        (6, 600),
        (7, 3_599),
    ] {
        pms.add_movie(
            "1",
            SimMovie::new(&format!("Movie {n}"), 2020, n).with_added_at(now - age),
        );
    }
    let client = pms_client(&pms, PMS_TOKEN);

    let query = ListItems {
        kind: ItemKind::Movie,
        start: 0,
        size: 2,
        added_since: Some(since),
    };
    let pages = every_page(&client, "1", query).await;

    let titles: Vec<String> = flatten(&pages).into_iter().map(|item| item.title).collect();
    // "Movie 3", added exactly at `since`, is not after it.
    assert_eq!(titles, vec!["Movie 4", "Movie 2", "Movie 6", "Movie 7"]);
    assert_eq!(pages.len(), 2, "the last page ends the pass");
    assert_eq!(pms.library_calls(), 2);
    let added: Vec<i64> = flatten(&pages)
        .iter()
        .map(|item| item.added_at.unwrap())
        .collect();
    assert!(added.windows(2).all(|pair| pair[0] >= pair[1]), "{added:?}");

    // On the wire: Overseerr's filter and sort, form-encoded as python-plexapi writes them.
    let request = &pms.received()[0];
    assert!(
        request
            .path
            .contains(&format!("sort=addedAt%3Adesc&addedAt%3E%3E={since}")),
        "{}",
        request.path
    );
    let pairs = query_pairs(&request.path);
    assert_eq!(
        query_value(&pairs, "addedAt>>"),
        Some(since.to_string().as_str())
    );

    // Overseerr's own spelling reaches the simulator the same way.
    let (_, _, raw) = raw_pms(
        &pms,
        &format!("/library/sections/1/all?type=1&sort=addedAt%3Adesc&addedAt>>={since}"),
        &[],
    )
    .await;
    assert_eq!(raw["MediaContainer"]["size"], 4);
    assert_eq!(raw["MediaContainer"]["Metadata"][0]["title"], "Movie 4");
}

#[tokio::test]
async fn recently_added_seasons_are_the_seasons_added_since() {
    let (pms, lost, office) = pms_with_content().await;
    let now = Utc::now().timestamp();
    // Every season so far is a day old; a new one arrives now.
    for season in flatten(
        &every_page(
            &pms_client(&pms, PMS_TOKEN),
            "2",
            list(ItemKind::Season, 0, 50),
        )
        .await,
    ) {
        pms.set_added_at(&season.rating_key, now - 86_400);
    }
    let fresh = pms.add_season(&lost, 3, 23);
    let client = pms_client(&pms, PMS_TOKEN);

    let seasons = flatten(
        &every_page(
            &client,
            "2",
            ListItems {
                kind: ItemKind::Season,
                start: 0,
                size: 50,
                added_since: Some(now - 3_600),
            },
        )
        .await,
    );

    assert_eq!(seasons.len(), 1, "{seasons:?}");
    assert_eq!(seasons[0].rating_key, fresh);
    assert_eq!(seasons[0].parent_rating_key.as_deref(), Some(lost.as_str()));
    assert_eq!(seasons[0].index, Some(3));
    assert_eq!(seasons[0].leaf_count, Some(23));
    assert_ne!(fresh, office);
}

#[tokio::test]
async fn removed_items_disappear_from_the_listing_with_their_seasons() {
    let (pms, lost, _) = pms_with_content().await;
    let client = pms_client(&pms, PMS_TOKEN);
    let movies = flatten(&every_page(&client, "1", list(ItemKind::Movie, 0, 50)).await);
    let alien = movies.iter().find(|item| item.title == "Alien").unwrap();

    pms.remove_item(&alien.rating_key);
    pms.remove_item(&lost);
    pms.remove_item("no-such-item");

    let movies = flatten(&every_page(&client, "1", list(ItemKind::Movie, 0, 50)).await);
    assert_eq!(movies.len(), 3);
    assert!(movies.iter().all(|item| item.title != "Alien"));
    let shows = flatten(&every_page(&client, "2", list(ItemKind::Show, 0, 50)).await);
    let titles: Vec<&str> = shows.iter().map(|show| show.title.as_str()).collect();
    assert_eq!(titles, vec!["The Office"]);
    let seasons = flatten(&every_page(&client, "2", list(ItemKind::Season, 0, 50)).await);
    assert_eq!(seasons.len(), 2);
    assert!(seasons
        .iter()
        .all(|season| season.parent_rating_key.as_deref() != Some(lost.as_str())));
    let episodes = flatten(&every_page(&client, "2", list(ItemKind::Episode, 0, 50)).await);
    assert_eq!(episodes.len(), 9);
}

#[tokio::test]
async fn odd_guids_reach_the_client_without_harm_and_give_no_ids() {
    let pms = pms_with_libraries().await;
    let long = format!("tmdb://{}", "7".repeat(5_000));
    let odd = [
        "tmdb://abc",
        "tmdb://0",
        "tmdb://-3",
        "tmdb://",
        " tmdb://603",
        "tmdb://603 ",
        long.as_str(),
        "tvdb://x1",
        "imdb://",
    ];
    let movie = SimMovie {
        guids: odd.iter().map(|guid| guid.to_string()).collect(),
        ..SimMovie::new("Odd", 2001, 1)
    };
    pms.add_movie("1", movie);
    let client = pms_client(&pms, PMS_TOKEN);

    let items = client
        .section_items("1", &list(ItemKind::Movie, 0, 10))
        .await
        .unwrap()
        .items;

    assert_eq!(items.len(), 1);
    assert_eq!(items[0].guids, odd, "the ids arrive as sent");
    assert_eq!(items[0].tmdb_id(), None);
    assert_eq!(items[0].tvdb_id(), None);
}

#[tokio::test]
async fn an_unknown_section_is_not_found_a_wrong_token_unauthorized_and_a_bad_filter_rejected() {
    let (pms, _, _) = pms_with_content().await;
    let client = pms_client(&pms, PMS_TOKEN);

    let err = client
        .section_items("99", &list(ItemKind::Movie, 0, 10))
        .await
        .unwrap_err();
    assert!(matches!(err, PlexError::NotFound), "{err:?}");
    assert!(!err.is_retryable());

    let err = pms_client(&pms, "wrong-token")
        .section_items("1", &list(ItemKind::Movie, 0, 10))
        .await
        .unwrap_err();
    assert!(matches!(err, PlexError::Unauthorized), "{err:?}");

    let err = client
        .section_items("  ", &list(ItemKind::Movie, 0, 10))
        .await
        .unwrap_err();
    assert!(matches!(err, PlexError::Config(_)), "{err:?}");
    assert_eq!(
        pms.library_calls(),
        2,
        "an empty key is refused without a call"
    );

    // PMS answers its HTML pages; the simulator refuses filters it does not know with 400.
    let (status, headers, body) = raw_pms(&pms, "/library/sections/99/all", &[]).await;
    assert_eq!(status, 404);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(body.as_str().unwrap().contains("404 Not Found"));
    let (status, _, _) = raw_pms(&pms, "/library/sections/1/all?addedAt>=5", &[]).await;
    assert_eq!(status, 400);
    let (status, _, _) = raw_pms(&pms, "/library/sections/1/all?sort=rating:desc", &[]).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn injected_library_failures_are_retryable_and_then_the_listing_goes_through() {
    let (pms, _, _) = pms_with_content().await;
    let client = pms_client(&pms, PMS_TOKEN);
    let query = list(ItemKind::Movie, 0, 10);

    pms.fail_library_calls(2, PmsFault::Status(500));
    for _ in 0..2 {
        let err = client.section_items("1", &query).await.unwrap_err();
        assert!(
            matches!(err, PlexError::Unavailable(ref text) if text.contains("500")),
            "{err:?}"
        );
        assert!(err.is_retryable());
    }
    assert_eq!(
        client.section_items("1", &query).await.unwrap().items.len(),
        4
    );

    pms.fail_library_calls(1, PmsFault::DropConnection);
    let err = client.section_items("1", &query).await.unwrap_err();
    assert!(matches!(err, PlexError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(
        client.section_items("1", &query).await.unwrap().items.len(),
        4
    );
    assert_eq!(pms.library_calls(), 5);
}

#[tokio::test]
async fn a_section_of_twenty_thousand_movies_pages_through_in_a_hundred_calls() {
    let pms = pms_with_libraries().await;
    let started = Instant::now();
    pms.add_movies_bulk("1", 20_000, 10_000);
    let filled = started.elapsed();
    let client = pms_client(&pms, PMS_TOKEN);

    let started = Instant::now();
    let pages = every_page(&client, "1", list(ItemKind::Movie, 0, 200)).await;
    let paged = started.elapsed();

    assert_eq!(pages.len(), 100);
    assert_eq!(pms.library_calls(), 100);
    let items = flatten(&pages);
    assert_eq!(items.len(), 20_000);
    let mut tmdb: Vec<u64> = items.iter().filter_map(LibraryItem::tmdb_id).collect();
    tmdb.sort_unstable();
    tmdb.dedup();
    assert_eq!(
        tmdb.len(),
        20_000,
        "every movie once, each with its TMDB id"
    );
    assert_eq!(tmdb.first(), Some(&10_000));
    assert_eq!(tmdb.last(), Some(&29_999));
    assert_eq!(items.iter().filter(|item| item.is_4k()).count(), 2_000);
    eprintln!("20,000 movies: filled in {filled:?}, paged through in {paged:?}");
    assert!(filled < Duration::from_secs(5), "filling took {filled:?}");
}

/// The community spec's schema of an answer, as a `$ref` the validator resolves.
fn metadata_container_schema() -> Value {
    serde_json::json!({ "$ref": "#/components/schemas/MediaContainerWithMetadata" })
}

#[tokio::test]
async fn library_answers_fit_the_community_spec() {
    // The repository's validator is written for OpenAPI 3.0; the PMS document is 3.1. It
    // loads it, and the part used here (MediaContainerWithMetadata, Metadata, Media, Part,
    // Guid, the paging parameters) uses no 3.1-only keyword, so it checks it as is. `pattern`
    // and `format` are not checked by the validator, so the Guid id pattern and the
    // required fields are also checked below by hand.
    let spec = OpenApiSpec::load(pms_spec_file()).unwrap();
    let template = "/library/sections/{sectionId}/all";
    assert_eq!(
        spec.match_path("/library/sections/2/all").as_deref(),
        Some(template)
    );
    // The validator does check this schema: an item without `key`, with a text `addedAt`
    // and a `Media` without `id` is refused.
    let broken = serde_json::json!({"MediaContainer": {"size": 1, "Metadata": [
        {"ratingKey": "1", "title": "T", "type": "movie", "addedAt": "yesterday",
         "Media": [{"videoResolution": "4k"}]}
    ]}});
    let errors = spec
        .validate_response_body("GET", template, 200, &broken)
        .unwrap_err();
    for expected in ["key: required", "addedAt: expected integer", "id: required"] {
        assert!(
            errors.iter().any(|error| error.contains(expected)),
            "{expected} not in {errors:#?}"
        );
    }

    let (pms, _, _) = pms_with_content().await;
    pms.add_movie("1", SimMovie::new("Old", 1950, 77).with_resolution("sd"));

    for (path, count) in [
        ("/library/sections/1/all?type=1&includeGuids=1&X-Plex-Container-Start=0&X-Plex-Container-Size=50", 5),
        ("/library/sections/1/all?type=1&includeGuids=1&sort=addedAt%3Adesc&addedAt%3E%3E=0&X-Plex-Container-Start=1&X-Plex-Container-Size=2", 2),
        ("/library/sections/2/all?type=2&includeGuids=1&X-Plex-Container-Start=0&X-Plex-Container-Size=50", 2),
        ("/library/sections/2/all?type=3&includeGuids=1&X-Plex-Container-Start=0&X-Plex-Container-Size=50", 4),
        ("/library/sections/2/all?type=4&includeGuids=1&X-Plex-Container-Start=0&X-Plex-Container-Size=5", 5),
        ("/library/sections/1/all?type=3&X-Plex-Container-Start=0&X-Plex-Container-Size=5", 0),
        ("/library/sections/1/all", 5),
    ] {
        let (status, headers, body) = raw_pms(&pms, path, &[]).await;
        assert_eq!(status, 200, "{path}");
        if let Err(errors) = spec.validate_response_body("GET", template, 200, &body) {
            panic!("{path}: the answer does not fit the spec: {errors:#?}\n{body:#}");
        }
        if let Err(errors) = spec.validate(&metadata_container_schema(), &body, Direction::Response, "response") {
            panic!("{path}: {errors:#?}");
        }
        let container = &body["MediaContainer"];
        assert_eq!(container["size"], count, "{path}");
        let items = container["Metadata"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), count, "{path}");
        for item in &items {
            for field in ["addedAt", "key", "title", "type"] {
                assert!(item.get(field).is_some(), "{path}: {field} missing in {item}");
            }
            assert!(item["ratingKey"].is_string(), "{path}: {item}");
            for guid in item["Guid"].as_array().into_iter().flatten() {
                let id = guid["id"].as_str().unwrap();
                let (scheme, rest) = id.split_once("://").unwrap();
                assert!(["imdb", "tmdb", "tvdb"].contains(&scheme) && !rest.is_empty(), "{id}");
            }
            for media in item["Media"].as_array().into_iter().flatten() {
                assert!(media["id"].is_u64(), "{media}");
                assert!(media["Part"][0]["id"].is_u64() && media["Part"][0]["key"].is_string());
            }
        }
        // Paged answers carry the spec's integer headers, equal to the container's fields.
        if path.contains("X-Plex-Container-Size") {
            assert_eq!(
                header_u64(&headers, "x-plex-container-start"),
                container["offset"].as_u64(),
                "{path}"
            );
            assert_eq!(
                header_u64(&headers, "x-plex-container-total-size"),
                container["totalSize"].as_u64(),
                "{path}"
            );
        }
    }

    // What the client sends fits the spec's parameters: the paging and includeGuids are
    // documented query parameters; type and sort belong to the `mediaQuery` object
    // (form-exploded, which the validator does not expand), so they are checked against its
    // properties; `addedAt>>` is the filter language the spec only describes in prose.
    let client = pms_client(&pms, PMS_TOKEN);
    client
        .section_items(
            "1",
            &ListItems {
                kind: ItemKind::Movie,
                start: 0,
                size: 200,
                added_since: Some(0),
            },
        )
        .await
        .unwrap();
    let pairs = query_pairs(&pms.received().last().unwrap().path);
    let (media_query, plain): (Vec<_>, Vec<_>) = pairs
        .into_iter()
        .partition(|(name, _)| ["type", "sort", "addedAt>>"].contains(&name.as_str()));
    spec.validate_query("GET", template, &plain).unwrap();
    let media_query_schema = &spec.document()["components"]["schemas"]["MediaQuery"];
    let object = serde_json::json!({
        "type": query_value(&media_query, "type").unwrap().parse::<u64>().unwrap(),
        "sort": query_value(&media_query, "sort").unwrap(),
    });
    spec.validate(media_query_schema, &object, Direction::Request, "query")
        .unwrap();
    assert_eq!(query_value(&media_query, "addedAt>>"), Some("0"));
}

/// The PMS spec's path in the contracts directory; the test fails when it is missing.
fn pms_spec_file() -> std::path::PathBuf {
    let path = contracts::contract(PLEX_MEDIA_SERVER);
    assert!(
        path.is_file(),
        "{}",
        contracts::missing(&path, "no such file")
    );
    path
}
