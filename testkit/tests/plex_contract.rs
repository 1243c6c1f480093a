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
