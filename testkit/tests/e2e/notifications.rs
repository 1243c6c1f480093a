//! Notifications end to end (issue 14), on real PostgreSQL and NATS, with a real SMTP server
//! ([`SmtpSink`]) and the push services' simulators ([`NotifySim`]) started by the tests:
//! e-mail and the signed webhook when a request becomes available, Discord for admins when
//! a member submits, retries through an outage delivering exactly once, a member's opt-out,
//! a dead delivery retried by an admin after fixing the URL, a crash mid-delivery, service
//! health from the breakers; and the bad input of the settings routes.

use std::time::{Duration, SystemTime};

use medianest_testkit::app::{eventually, TestApp, TestOptions, TestUser, PUBLIC_URL};
use medianest_testkit::history::submit_as;
use medianest_testkit::notify_sim::{verify_standard_webhook, Fault, NotifySim, Service};
use medianest_testkit::overseerr_sim::CatalogMovie;
use medianest_testkit::problem;
use medianest_testkit::smtp_sink::SmtpSink;
use reqwest::{Method, Response};
use serde_json::{json, Value};

/// A Standard Webhooks secret (24-byte key).
const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(20);
const CHANNELS: &str = "/api/v1/admin/notifications/channels";
const DELIVERIES: &str = "/api/v1/admin/notifications/deliveries";

/// An app with auto-approval off, the SMTP server and the push services.
struct Household {
    app: TestApp,
    smtp: SmtpSink,
    sim: NotifySim,
}

impl Household {
    async fn start() -> Self {
        Self::start_with(TestOptions::default()).await
    }

    async fn start_with(options: TestOptions) -> Self {
        let (smtp, sim) = (SmtpSink::start().await, NotifySim::start().await);
        Self {
            app: TestApp::spawn_with(options).await,
            smtp,
            sim,
        }
    }

    async fn put_channel(&self, channel: &str, body: Value) -> Response {
        self.app
            .request(Method::PUT, &format!("{CHANNELS}/{channel}"))
            .json(&body)
            .send()
            .await
            .expect("PUT reaches the app")
    }

    async fn configure(&self, channel: &str, body: Value) {
        let response = self.put_channel(channel, body).await;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "saving {channel}: {text}");
    }

    /// E-mail through the SMTP sink, no household address.
    async fn email(&self) {
        self.configure(
            "email",
            json!({
                "enabled": true,
                "settings": {
                    "host": "127.0.0.1", "port": self.smtp.port(), "security": "none",
                    "from": "MediaNest <medianest@household.example>"
                }
            }),
        )
        .await;
    }

    /// The signed webhook carrying `types` for the household, at `/webhook/<name>`.
    async fn webhook(&self, name: &str, types: &[&str]) {
        self.configure(
            "webhook",
            json!({
                "enabled": true,
                "types": types,
                "settings": { "url": format!("{}/webhook/{name}", self.sim.base_url()) },
                "secrets": { "signing_secret": SIGNING_SECRET }
            }),
        )
        .await;
    }

    async fn deliveries(&self, query: &str) -> Vec<Value> {
        let page: Value = self
            .app
            .get(&format!("{DELIVERIES}{query}"))
            .await
            .json()
            .await
            .expect("a JSON page");
        page["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the deliveries matching `query` are `n` and all `status`.
    async fn settled(&self, query: &str, n: usize, status: &str) -> Vec<Value> {
        eventually(
            &format!("{n} {status} deliveries ({query})"),
            WAIT,
            || async {
                let items = self.deliveries(query).await;
                (items.len() == n && items.iter().all(|d| d["status"] == status)).then_some(items)
            },
        )
        .await
    }

    /// `user` submits a movie (as `history::submit_as`, 1999); answers the request id.
    async fn submitted_by(&self, user: &TestUser, tmdb_id: u32, title: &str) -> String {
        let answer = submit_as(&self.app, user, tmdb_id, title).await;
        answer["id"].as_str().expect("an id").to_string()
    }

    /// The admin approves request `id` (200).
    async fn approve(&self, id: &str) {
        let approved = self
            .app
            .post_empty(&format!("/api/v1/requests/{id}/approve"))
            .await;
        assert_eq!(approved.status(), 200, "approval of {id}");
    }

    /// `user` submits a movie; the admin approves it; Overseerr takes it and reports it
    /// available. Answers the request id.
    async fn request_until_available(&self, user: &TestUser, tmdb_id: u32, title: &str) -> String {
        let id = self.submitted_by(user, tmdb_id, title).await;
        self.approve(&id).await;
        let overseerr_id = self.app.forwarded(&id).await;
        let hook = self
            .app
            .overseerr_webhook("MEDIA_AVAILABLE", overseerr_id)
            .await;
        assert!(
            hook.status().is_success(),
            "webhook answered {}",
            hook.status()
        );
        self.app.wait_for_status(&id, "available", WAIT).await;
        id
    }
}

fn header(received: &medianest_testkit::notify_sim::Received, name: &str) -> String {
    received
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_made_available_is_emailed_to_its_requester_and_posted_once_to_the_signed_webhook(
) {
    let house = Household::start().await;
    house.email().await;
    house.webhook("household", &["request_available"]).await;
    let jane = house
        .app
        .sign_in_with_email("jane", "jane@household.example", false)
        .await;
    house.app.sim().add_movie(CatalogMovie {
        poster_path: Some("/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg".to_string()),
        ..CatalogMovie::new(603, "The Matrix", "1999-03-31")
    });

    let id = house
        .request_until_available(&jane, 603, "The Matrix")
        .await;

    // Jane's defaults: e-mail for her request's approval and availability.
    let mails = house.smtp.wait_for(2, WAIT).await;
    let available = mails
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some("The Matrix (1999) is available"))
        .unwrap_or_else(|| panic!("no availability mail among {mails:?}"));
    assert_eq!(
        available.rcpt_to,
        vec!["jane@household.example".to_string()]
    );
    assert!(available
        .header("From")
        .is_some_and(|f| f.contains("medianest@household.example")));
    assert!(available
        .header("To")
        .is_some_and(|t| t.contains("jane@household.example")));
    let text = available.text_body().expect("a text/plain part");
    assert!(
        text.contains("The movie The Matrix (1999) is now in Plex"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{PUBLIC_URL}/requests/{id}")),
        "{text}"
    );
    assert!(available.html_body().is_some(), "an HTML alternative");
    assert!(mails
        .iter()
        .any(|m| m.header("Subject").as_deref() == Some("The Matrix (1999) was approved")));

    // The household webhook: one signed body that verifies.
    let hooks = house.sim.wait_for(Service::Webhook, 1, WAIT).await;
    let hook = &hooks[0];
    verify_standard_webhook(
        SIGNING_SECRET,
        &hook.headers,
        &hook.body,
        SystemTime::now(),
        Duration::from_secs(300),
    )
    .expect("the signature verifies");
    let body = hook.json();
    assert_eq!(body["type"], "request.available");
    assert_eq!(body["data"]["request"]["id"], id.as_str());
    assert_eq!(body["data"]["media"]["title"], "The Matrix");
    assert_eq!(body["data"]["media"]["tmdb_id"], 603);
    assert_eq!(body["data"]["url"], format!("{PUBLIC_URL}/requests/{id}"));
    assert_eq!(
        body["data"]["image_url"],
        "https://image.tmdb.org/t/p/w500/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg",
        "the poster, from the catalogue"
    );
    assert!(available
        .html_body()
        .is_some_and(|html| html.contains("w500/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg")));
    assert!(header(hook, "webhook-id").starts_with("msg_"));

    house.settled("?channel=webhook", 1, "sent").await;
    house.settled("?channel=email", 2, "sent").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(house.sim.received(Service::Webhook).len(), 1, "posted once");
    assert_eq!(house.smtp.messages().len(), 2, "mailed once each");
    assert!(
        house.sim.violations().is_empty(),
        "{:?}",
        house.sim.violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_get_a_members_pending_request_on_the_household_discord() {
    let house = Household::start().await;
    let url = format!(
        "{}/discord/api/webhooks/1234567890/household-token",
        house.sim.base_url()
    );
    house
        .configure(
            "discord",
            json!({"enabled": true, "types": ["request_pending"], "secrets": {"webhook_url": url}}),
        )
        .await;
    let bob = house.app.sign_in_user("bob").await;
    let response = house
        .app
        .request_as(&bob.token, Method::POST, "/api/v1/requests")
        .json(&json!({"media_type": "movie", "tmdb_id": 27205, "title": "Inception", "year": 2010, "is_4k": true}))
        .send()
        .await
        .expect("submit");
    assert_eq!(response.status(), 202);

    let posts = house.sim.wait_for(Service::Discord, 1, WAIT).await;
    let body = posts[0].json();
    assert_eq!(body["embeds"][0]["title"], "New request: Inception (2010)");
    assert!(body["embeds"][0]["description"]
        .as_str()
        .is_some_and(|d| d.contains("in 4K") && d.contains("approval")));
    assert_eq!(body["allowed_mentions"]["parse"], json!([]));
    assert!(
        house.sim.violations().is_empty(),
        "{:?}",
        house.sim.violations()
    );

    // The admin's own submission is approved at once (`admins` policy): no pending notice.
    house.settled("?channel=discord", 1, "sent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_receiver_down_for_a_while_gets_the_notification_exactly_once_after_retries() {
    let house = Household::start().await;
    house.webhook("flaky", &["request_approved"]).await;
    let discord = format!("{}/discord/api/webhooks/1/tok", house.sim.base_url());
    house
        .configure(
            "discord",
            json!({"enabled": true, "types": ["request_approved"], "secrets": {"webhook_url": discord}}),
        )
        .await;
    house.sim.set_fault(Service::Webhook, Fault::Status(503));

    house.app.submit_and_approve(550, "Fight Club").await;
    eventually("three failed attempts", WAIT, || async {
        (house.sim.received(Service::Webhook).len() >= 3).then_some(())
    })
    .await;
    // One channel's outage does not hold up another.
    house.settled("?channel=discord", 1, "sent").await;
    let retrying = house.deliveries("?channel=webhook").await;
    assert_eq!(retrying.len(), 1);
    assert_eq!(retrying[0]["status"], "retrying");
    assert!(retrying[0]["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("503")));

    house.sim.set_fault(Service::Webhook, Fault::None);
    let sent = house.settled("?channel=webhook", 1, "sent").await;
    assert!(sent[0]["attempts"].as_i64().unwrap_or(0) >= 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = house.sim.received(Service::Webhook);
    let delivered: Vec<_> = calls
        .iter()
        .filter(|c| c.status == 200 || c.status == 204)
        .collect();
    assert_eq!(delivered.len(), 1, "delivered exactly once");
    let ids: std::collections::HashSet<String> =
        calls.iter().map(|c| header(c, "webhook-id")).collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same webhook-id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_turned_availability_email_off_gets_none() {
    let house = Household::start().await;
    house.email().await;
    house.webhook("household", &["request_available"]).await;
    let jane = house
        .app
        .sign_in_with_email("jane", "jane@household.example", false)
        .await;
    let response = house
        .app
        .request_as(&jane.token, Method::PUT, "/api/v1/me/notifications")
        .json(&json!({"channels": {"email": {"types": ["request_approved"]}}}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status(), 200);
    let saved: Value = response.json().await.expect("JSON");
    assert_eq!(saved["customised"], true);
    assert_eq!(
        saved["channels"]["email"]["types"],
        json!(["request_approved"])
    );

    house
        .request_until_available(&jane, 603, "The Matrix")
        .await;
    // The household webhook got the availability: the notifier has handled that event.
    house.sim.wait_for(Service::Webhook, 1, WAIT).await;
    house.settled("?channel=email", 1, "sent").await;
    let mails = house.smtp.messages();
    assert_eq!(mails.len(), 1, "only the approval: {mails:?}");
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("The Matrix (1999) was approved")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_delivery_shows_in_the_admin_list_and_a_retry_after_the_fix_sends_it() {
    let house = Household::start().await;
    let broken = format!("{}/discord/api/webhooks/111/revoked", house.sim.base_url());
    house
        .configure(
            "discord",
            json!({"enabled": true, "types": ["request_approved"], "secrets": {"webhook_url": broken}}),
        )
        .await;
    house.sim.set_fault(Service::Discord, Fault::Status(404));
    house.app.submit_and_approve(13, "Forrest Gump").await;

    let dead = house.settled("?status=dead", 1, "dead").await;
    assert_eq!(dead[0]["channel"], "discord");
    assert_eq!(dead[0]["attempts"], 1, "a 4xx is not retried");
    assert!(dead[0]["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("404")));
    let dashboard: Value = house
        .app
        .get("/api/v1/dashboard?scope=all")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dashboard["dead_notifications"], 1);

    // The admin fixes the URL, then retries.
    house.sim.set_fault(Service::Discord, Fault::None);
    let fixed = format!(
        "{}/discord/api/webhooks/222/fresh-token",
        house.sim.base_url()
    );
    house
        .configure(
            "discord",
            json!({"enabled": true, "types": ["request_approved"], "secrets": {"webhook_url": fixed}}),
        )
        .await;
    let id = dead[0]["id"].as_str().expect("an id");
    let retried = house
        .app
        .post_empty(&format!("{DELIVERIES}/{id}/retry"))
        .await;
    assert_eq!(retried.status(), 202);
    house.settled("?channel=discord", 1, "sent").await;
    let posts = house.sim.received(Service::Discord);
    assert_eq!(posts.len(), 2, "the refused call and the retried one");
    assert!(
        posts[1].path.contains("/222/fresh-token"),
        "{}",
        posts[1].path
    );

    let again = house
        .app
        .post_empty(&format!("{DELIVERIES}/{id}/retry"))
        .await;
    problem::assert_problem("a second retry", again, 409, "delivery-not-retryable").await;
    let dashboard: Value = house
        .app
        .get("/api/v1/dashboard?scope=all")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dashboard["dead_notifications"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_of_the_worker_mid_delivery_loses_nothing() {
    let mut house = Household::start().await;
    house.webhook("slow", &["request_approved"]).await;
    house.sim.set_fault(Service::Webhook, Fault::Hang);
    house.app.submit_and_approve(680, "Pulp Fiction").await;
    // The call is in flight (the receiver holds it) when the process dies.
    eventually("a call in flight", WAIT, || async {
        (!house.sim.received(Service::Webhook).is_empty()).then_some(())
    })
    .await;
    house.app.crash_and_restart().await;
    house.sim.set_fault(Service::Webhook, Fault::None);

    house.settled("?channel=webhook", 1, "sent").await;
    let calls = house.sim.received(Service::Webhook);
    let ids: std::collections::HashSet<String> =
        calls.iter().map(|c| header(c, "webhook-id")).collect();
    assert_eq!(
        ids.len(),
        1,
        "the repeat carries the same webhook-id: {calls:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered = house
        .sim
        .received(Service::Webhook)
        .into_iter()
        .filter(|c| (200..300).contains(&c.status))
        .count();
    assert_eq!(delivered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_breaker_tells_the_admins_once_and_its_closing_once() {
    let house = Household::start().await;
    house
        .webhook("health", &["service_down", "service_up"])
        .await;
    let mark = |state: &'static str| {
        let pool = house.app.pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO service_health (service, state, consecutive_failures, last_error,
                     opened_at, state_since, updated_at)
                 VALUES ('plex', $1, 5, 'connection refused',
                         CASE WHEN $1 = 'open' THEN now() END, now(), now())
                 ON CONFLICT (service) DO UPDATE SET state = EXCLUDED.state,
                     opened_at = COALESCE(EXCLUDED.opened_at, service_health.opened_at),
                     state_since = EXCLUDED.state_since, updated_at = EXCLUDED.updated_at",
            )
            .bind(state)
            .execute(&pool)
            .await
            .expect("health row");
        }
    };
    mark("open").await;
    let down = house.sim.wait_for(Service::Webhook, 1, WAIT).await;
    assert_eq!(down[0].json()["type"], "service.down");
    assert!(down[0].json()["data"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("connection refused")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    mark("closed").await;
    let both = house.sim.wait_for(Service::Webhook, 2, WAIT).await;
    assert_eq!(both[1].json()["type"], "service.up");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(house.sim.received(Service::Webhook).len(), 2, "once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_write_only_and_a_test_message_reaches_the_channel() {
    let house = Household::start().await;
    house.webhook("household", &[]).await;
    let read: Value = house
        .app
        .get(&format!("{CHANNELS}/webhook"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["secrets_set"], json!(["signing_secret"]));
    assert!(
        !read
            .to_string()
            .contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "{read}"
    );
    let all: Value = house.app.get(CHANNELS).await.json().await.unwrap();
    assert!(!all.to_string().contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    assert_eq!(all["items"].as_array().map(Vec::len), Some(8));

    // A PUT without secrets keeps the stored one.
    house
        .configure(
            "webhook",
            json!({"enabled": true, "settings": {"url": format!("{}/webhook/renamed", house.sim.base_url())}}),
        )
        .await;
    let tested = house
        .app
        .post_empty(&format!("{CHANNELS}/webhook/test"))
        .await;
    assert_eq!(tested.status(), 200);
    let hooks = house.sim.wait_for(Service::Webhook, 1, WAIT).await;
    assert!(hooks[0].path.ends_with("/webhook/renamed"));
    verify_standard_webhook(
        SIGNING_SECRET,
        &hooks[0].headers,
        &hooks[0].body,
        SystemTime::now(),
        Duration::from_secs(300),
    )
    .expect("signed with the kept secret");

    // A member cannot read or change the household's channels.
    let bob = house.app.sign_in_user("bob").await;
    let response = house
        .app
        .request_as(&bob.token, Method::GET, CHANNELS)
        .send()
        .await
        .unwrap();
    problem::assert_problem("a member reading channels", response, 403, "forbidden").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_with_a_stable_type_and_change_nothing() {
    let house = Household::start().await;
    let long = "a".repeat(3000);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("fax", json!({"enabled": true}), 404, "unknown-channel"),
        (
            "email",
            json!({"enabled": true, "settings": {"host": "127.0.0.1", "from": "not an address"}}),
            422,
            "invalid-email",
        ),
        (
            "webhook",
            json!({"enabled": true, "settings": {"url": "http://hooks.example.com/x"}, "secrets": {"signing_secret": SIGNING_SECRET}}),
            422,
            "insecure-destination",
        ),
        (
            "webhook",
            json!({"enabled": true, "settings": {"url": "https://10.0.0.7/x"}, "secrets": {"signing_secret": SIGNING_SECRET}}),
            422,
            "private-destination",
        ),
        (
            "webhook",
            json!({"enabled": true, "settings": {"url": "https://169.254.169.254/latest"}, "secrets": {"signing_secret": SIGNING_SECRET}}),
            422,
            "private-destination",
        ),
        (
            "webhook",
            json!({"enabled": true, "settings": {"url": format!("https://example.com/{long}")}, "secrets": {"signing_secret": SIGNING_SECRET}}),
            422,
            "field-too-long",
        ),
        (
            "webhook",
            json!({"enabled": true, "settings": {"url": format!("{}/webhook/x", house.sim.base_url())}}),
            422,
            "missing-secret",
        ),
        (
            "webhook",
            json!({"enabled": true, "types": ["request_exploded"], "settings": {"url": format!("{}/webhook/x", house.sim.base_url())}, "secrets": {"signing_secret": SIGNING_SECRET}}),
            422,
            "unknown-notification-type",
        ),
        (
            "telegram",
            json!({"enabled": true, "settings": {"bot_token": "123:abc"}}),
            422,
            "secret-in-settings",
        ),
        (
            "email",
            json!({"enabled": true, "types": ["request_pending"], "settings": {"host": "127.0.0.1", "from": "m@household.example"}}),
            422,
            "no-household-destination",
        ),
        (
            "ntfy",
            json!({"enabled": true, "settings": {"server_url": "https://ntfy.example", "surprise": 1}}),
            422,
            "invalid-channel-settings",
        ),
    ];
    for (channel, body, status, slug) in cases {
        let response = house.put_channel(channel, body.clone()).await;
        problem::assert_problem(&format!("{channel} {body}"), response, status, slug).await;
    }
    let all: Value = house.app.get(CHANNELS).await.json().await.unwrap();
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["configured"] == false),
        "nothing saved: {all}"
    );

    // A member's own preferences.
    let bob = house.app.sign_in_user("bob").await;
    let put = |body: Value| {
        house
            .app
            .request_as(&bob.token, Method::PUT, "/api/v1/me/notifications")
            .json(&body)
            .send()
    };
    for (body, status, slug) in [
        (
            json!({"channels": {"email": {"address": "bob at home", "types": []}}}),
            422,
            "invalid-email",
        ),
        (
            json!({"channels": {"fax": {"types": []}}}),
            422,
            "unknown-channel",
        ),
        (
            json!({"channels": {"slack": {"address": "x", "types": []}}}),
            422,
            "not-a-personal-channel",
        ),
        (
            json!({"channels": {"telegram": {"address": "12 34", "types": []}}}),
            422,
            "invalid-address",
        ),
        (
            json!({"channels": {"email": {"types": ["everything"]}}}),
            422,
            "unknown-notification-type",
        ),
        (
            json!({"channels": {"discord": {"types": ["request_available"]}}}),
            422,
            "validation-failed",
        ),
        (
            json!({"channels": {}, "extra": true}),
            400,
            "malformed-request",
        ),
    ] {
        problem::assert_problem(
            &body.to_string(),
            put(body.clone()).await.unwrap(),
            status,
            slug,
        )
        .await;
    }
    let mine: Value = house
        .app
        .request_as(&bob.token, Method::GET, "/api/v1/me/notifications")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["customised"], false, "nothing saved: {mine}");
    assert_eq!(mine["channels"], json!({}), "no e-mail known: no defaults");
}

const DISCORD_USER: &str = "80351110224678912";
const PUSHOVER_APP: &str = "azGDORePK8gMaC0QOYAMyEEuzJnyUi";
const PUSHOVER_USER: &str = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG";
const BOT_TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

impl Household {
    /// Discord, Slack, Telegram, ntfy, Gotify and Pushover on the simulator, each carrying
    /// `types` for the household.
    async fn push_services(&self, types: &[&str]) {
        let base = self.sim.base_url();
        for (channel, body) in [
            (
                "discord",
                json!({"secrets": {"webhook_url": format!("{base}/discord/api/webhooks/1/tok")}}),
            ),
            (
                "slack",
                json!({"secrets": {"webhook_url": format!("{base}/slack/services/T1/B1/x1")}}),
            ),
            (
                "telegram",
                json!({"settings": {"api_url": format!("{base}/telegram"), "chat_id": "-1001234567890"}, "secrets": {"bot_token": BOT_TOKEN}}),
            ),
            (
                "ntfy",
                json!({"settings": {"server_url": format!("{base}/ntfy"), "topic": "household"}}),
            ),
            (
                "gotify",
                json!({"settings": {"server_url": format!("{base}/gotify")}, "secrets": {"app_token": "AqF0.bA3x9F2kWm"}}),
            ),
            (
                "pushover",
                json!({"settings": {"api_url": format!("{base}/pushover"), "user_key": PUSHOVER_USER}, "secrets": {"app_token": PUSHOVER_APP}}),
            ),
        ] {
            let mut body = body;
            body["enabled"] = json!(true);
            body["types"] = json!(types);
            self.configure(channel, body).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_push_service_gets_the_call_its_api_documents() {
    let house = Household::start().await;
    house.push_services(&["request_approved"]).await;
    house.sim.expect_telegram_token(BOT_TOKEN);
    let id = house.app.submit_and_approve(603, "The Matrix").await;

    for service in [
        Service::Discord,
        Service::Slack,
        Service::Telegram,
        Service::Ntfy,
        Service::Gotify,
        Service::Pushover,
    ] {
        let calls = house.sim.wait_for(service, 1, WAIT).await;
        assert_eq!(
            calls[0].status / 100,
            2,
            "{service:?} answered {}",
            calls[0].status
        );
    }
    assert!(
        house.sim.violations().is_empty(),
        "{:?}",
        house.sim.violations()
    );
    let link = format!("{PUBLIC_URL}/requests/{id}");
    let slack = house.sim.received(Service::Slack)[0].json();
    assert_eq!(slack["text"], "The Matrix (1999) was approved");
    let telegram = house.sim.received(Service::Telegram)[0].json();
    assert_eq!(telegram["chat_id"], -1_001_234_567_890_i64);
    assert_eq!(telegram["parse_mode"], "HTML");
    assert!(telegram["text"].as_str().unwrap().contains(&link));
    let ntfy = house.sim.received(Service::Ntfy)[0].json();
    assert_eq!(
        (ntfy["topic"].as_str(), ntfy["click"].as_str()),
        (Some("household"), Some(link.as_str()))
    );
    let gotify = &house.sim.received(Service::Gotify)[0];
    assert_eq!(header(gotify, "x-gotify-key"), "AqF0.bA3x9F2kWm");
    assert_eq!(gotify.json()["title"], "The Matrix (1999) was approved");
    let pushover: std::collections::HashMap<String, String> = house.sim.received(Service::Pushover)
        [0]
    .form()
    .into_iter()
    .collect();
    assert_eq!(pushover["token"], PUSHOVER_APP);
    assert_eq!(pushover["user"], PUSHOVER_USER);
    assert_eq!(pushover["url"], link);
    house.settled("?status=sent", 6, "sent").await;

    // A test message through each.
    for channel in ["discord", "slack", "telegram", "ntfy", "gotify", "pushover"] {
        let tested = house
            .app
            .post_empty(&format!("{CHANNELS}/{channel}/test"))
            .await;
        assert_eq!(tested.status(), 200, "{channel}");
    }
    assert!(
        house.sim.violations().is_empty(),
        "{:?}",
        house.sim.violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_reached_at_their_own_addresses_on_the_channels_they_chose() {
    let house = Household::start().await;
    house.push_services(&[]).await;
    let jane = house.app.sign_in_user("jane").await;
    let choices = json!({"channels": {
        "discord": {"address": DISCORD_USER, "types": ["request_approved"]},
        "telegram": {"address": "123456789", "types": ["request_approved"]},
        "ntfy": {"address": "jane-alerts", "types": ["request_approved"]},
        "pushover": {"address": "gznej3rKEVAvPUxu9vvNnqpmZpokzF", "types": ["request_approved", "request_declined"]},
    }});
    let saved = house
        .app
        .request_as(&jane.token, Method::PUT, "/api/v1/me/notifications")
        .json(&choices)
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    let submitted: Value = house
        .app
        .request_as(&jane.token, Method::POST, "/api/v1/requests")
        .json(&json!({"media_type": "tv", "tmdb_id": 1399, "title": "Game of Thrones", "year": 2011, "seasons": [1, 2], "is_4k": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = submitted["id"].as_str().unwrap();
    house.approve(id).await;

    let discord = house.sim.wait_for(Service::Discord, 1, WAIT).await[0].json();
    assert!(discord["content"]
        .as_str()
        .unwrap()
        .starts_with(&format!("<@{DISCORD_USER}>")));
    assert_eq!(discord["allowed_mentions"]["users"], json!([DISCORD_USER]));
    assert_eq!(
        discord["embeds"][0]["title"],
        "Game of Thrones (2011) was approved"
    );
    let telegram = house.sim.wait_for(Service::Telegram, 1, WAIT).await[0].json();
    assert_eq!(telegram["chat_id"], 123_456_789);
    let ntfy = house.sim.wait_for(Service::Ntfy, 1, WAIT).await[0].json();
    assert_eq!(ntfy["topic"], "jane-alerts");
    let pushover: std::collections::HashMap<String, String> =
        house.sim.wait_for(Service::Pushover, 1, WAIT).await[0]
            .form()
            .into_iter()
            .collect();
    assert_eq!(pushover["user"], "gznej3rKEVAvPUxu9vvNnqpmZpokzF");
    // A delivery is marked sent after the service answered: wait for the fourth mark.
    let mine = house.settled("?status=sent", 4, "sent").await;
    assert_eq!(mine.len(), 4);
    assert!(mine.iter().all(|d| d["recipient"] == jane.id.to_string()));
    assert!(
        house.sim.received(Service::Slack).is_empty(),
        "Slack is household-only"
    );
    assert!(
        house.sim.violations().is_empty(),
        "{:?}",
        house.sim.violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_defers_is_retried_and_one_that_refuses_is_not() {
    let house = Household::start().await;
    house.email().await;
    let jane = house
        .app
        .sign_in_with_email("jane", "jane@household.example", false)
        .await;
    // 4xx: greylisted, then accepted.
    house
        .smtp
        .reply_to_rcpt(Some((450, "4.2.1 mailbox busy, try later".to_string())));
    let first = house.submitted_by(&jane, 603, "The Matrix").await;
    house.approve(&first).await;
    let retrying = house.settled("?channel=email", 1, "retrying").await;
    assert!(retrying[0]["last_error"].as_str().unwrap().contains("450"));
    house.smtp.reply_to_rcpt(None);
    house.settled("?channel=email", 1, "sent").await;

    // Declined with a reason: the reason is in the mail.
    let second = house.submitted_by(&jane, 604, "The Matrix Reloaded").await;
    let declined = house
        .app
        .request(Method::POST, &format!("/api/v1/requests/{second}/decline"))
        .json(&json!({"reason": "We already have it on disc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(declined.status(), 200);
    let mails = house.smtp.wait_for(2, WAIT).await;
    let mail = mails
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some("The Matrix Reloaded (1999) was declined"))
        .expect("the decline");
    assert!(mail
        .text_body()
        .unwrap()
        .contains("We already have it on disc"));

    // 5xx: refused for good at once.
    house
        .smtp
        .reply_to_rcpt(Some((550, "5.1.1 no such user".to_string())));
    let third = house
        .submitted_by(&jane, 605, "The Matrix Revolutions")
        .await;
    house.approve(&third).await;
    let dead = house.settled("?status=dead", 1, "dead").await;
    assert_eq!(dead[0]["attempts"], 1);
    assert!(dead[0]["last_error"].as_str().unwrap().contains("550"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_download_and_a_failed_one_are_mailed_to_who_queued_them() {
    let house = Household::start_with(TestOptions {
        downloads: true,
        ..TestOptions::default()
    })
    .await;
    house.email().await;
    let media = medianest_testkit::media_server::MediaServer::start().await;
    media.add_video("clip", 64 * 1024);
    media.add_feed(
        "broken",
        "Broken Channel",
        &[medianest_testkit::media_server::FeedItem::new(
            "Gone",
            "g1",
            "not-served",
        )],
    );
    let jane = house
        .app
        .sign_in_with_email("jane", "jane@household.example", false)
        .await;
    let saved = house
        .app
        .request_as(&jane.token, Method::PUT, "/api/v1/me/notifications")
        .json(&json!({"channels": {"email": {"types": ["download_completed", "download_failed"]}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    for url in [media.video_url("clip"), media.feed_url("broken")] {
        let queued = house
            .app
            .request_as(&jane.token, Method::POST, "/api/v1/downloads")
            .json(&json!({"url": url}))
            .send()
            .await
            .unwrap();
        assert_eq!(queued.status(), 202, "{url}");
    }

    let mails = house.smtp.wait_for(2, Duration::from_secs(90)).await;
    let subjects: std::collections::BTreeSet<String> =
        mails.iter().filter_map(|m| m.header("Subject")).collect();
    assert_eq!(
        subjects,
        ["Your download failed", "Your download is in Plex"]
            .map(str::to_string)
            .into()
    );
    let done = mails
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some("Your download is in Plex"))
        .unwrap();
    let text = done.text_body().unwrap();
    assert!(
        text.contains(&format!(
            "1 file from {} is in the Plex library",
            media.video_url("clip")
        )),
        "{text}"
    );
    assert!(text.contains(&format!("{PUBLIC_URL}/downloads/")), "{text}");
}
