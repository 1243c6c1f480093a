//! Contract tests: MediaNest's plex.tv and Plex Media Server clients against the simulators of
//! `medianest_testkit::plex_sim`, both held to the Plex contract of DESIGN.md §6 (PIN sign-in,
//! `/api/v2/user`, `/api/v2/resources`, PMS JSON `MediaContainer`s).

use std::time::{Duration, Instant};

use chrono::Utc;
use medianest_integrations::plex::{
    PlexClientInfo, PlexError, PlexPin, PlexTvClient, PlexTvConfig, PmsClient, PmsConfig,
};
use medianest_testkit::plex_sim::{PlexTvSim, PmsSim, SimAccount, PMS_VERSION};
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
// PMS library sections, section scans (the Plex scanner) and webhooks (DESIGN.md §6).
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
