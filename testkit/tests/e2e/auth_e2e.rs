//! Users and sessions end to end (issue 3, docs/design.md §3 and §7), over HTTP against real
//! PostgreSQL and NATS JetStream and the plex.tv / Plex Media Server simulators: Plex PIN
//! sign-in and its access rule, roles and request visibility, quotas, logout, disable and
//! session revocation, sign-in and API rate limits, session expiry, the bootstrap token,
//! cookie authentication, and the public (NATS) form of account and session events.
//!
//! Tests that count events run without the Overseerr simulator, so no saga writes events
//! (or moves a request on) while a test counts them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use medianest_domain::media_request::AutoApprovePolicy;
use medianest_domain::user_account::{Quota, Quotas};
use medianest_store::credentials::token_sha256;
use medianest_store::StoredEvent;
use medianest_testkit::app::{
    eventually, password_of, test_user, TestApp, TestOptions, TestUser, ADMIN_TOKEN, PMS_MACHINE_ID,
};
use medianest_testkit::plex_sim::SimAccount;
use reqwest::header::{COOKIE, RETRY_AFTER, SET_COOKIE, USER_AGENT};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);
const REQUESTS: &str = "/api/v1/requests";
const ME: &str = "/api/v1/me";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// An app whose Overseerr sagas are idle: nothing but the test writes events.
async fn spawn_quiet(options: TestOptions) -> TestApp {
    TestApp::spawn_with(TestOptions {
        overseerr: false,
        ..options
    })
    .await
}

/// `method path` with `token` as bearer and, when given, a JSON body.
fn request(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> RequestBuilder {
    let request = app.request_as(token, method, path);
    match body {
        Some(body) => request.json(body),
        None => request,
    }
}

async fn send(request: RequestBuilder) -> Response {
    request.send().await.expect("the request reaches the app")
}

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Response {
    send(request(app, token, method, path, body)).await
}

/// `POST /api/v1/auth/login`.
fn login_request(app: &TestApp, username: &str, password: &str) -> RequestBuilder {
    app.http
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
}

async fn get_as(app: &TestApp, token: &str, path: &str) -> Response {
    call(app, token, Method::GET, path, None).await
}

async fn post_as(app: &TestApp, token: &str, path: &str) -> Response {
    call(app, token, Method::POST, path, None).await
}

async fn put_as(app: &TestApp, token: &str, path: &str, body: &Value) -> Response {
    call(app, token, Method::PUT, path, Some(body)).await
}

/// Asserts `response` has `status` and returns its JSON body.
async fn json_answer(case: &str, response: Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(actual, status, "{case}: status (body: {text})");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{case}: JSON ({e}): {text}"))
}

/// Asserts that `response` is a problem+json document with `status` and type
/// `urn:medianest:problem:<slug>`, and returns the document.
async fn assert_problem(case: &str, response: Response, status: u16, slug: &str) -> Value {
    medianest_testkit::problem::assert_problem(case, response, status, slug)
        .await
        .body
}

/// Sends `request`, asserts the problem and that no event was written.
async fn refused(
    app: &TestApp,
    case: &str,
    request: RequestBuilder,
    status: u16,
    slug: &str,
) -> Value {
    let before = app.event_count().await;
    let problem = assert_problem(case, send(request).await, status, slug).await;
    assert_eq!(app.event_count().await, before, "{case}: no event written");
    problem
}

/// The `Retry-After` of a 429 answer, in seconds (asserted present and positive).
fn retry_after(case: &str, response: &Response) -> u64 {
    let seconds: u64 = response
        .headers()
        .get(RETRY_AFTER)
        .unwrap_or_else(|| panic!("{case}: a Retry-After header"))
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{case}: Retry-After is a number of seconds"));
    assert!(seconds >= 1, "{case}: Retry-After {seconds}");
    seconds
}

/// A sign-in answer: asserts 200, the documented shape and the session cookie; returns the
/// body and the `Set-Cookie` value.
async fn signed_in(case: &str, response: Response) -> (Value, String) {
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().expect("an ASCII cookie").to_string())
        .unwrap_or_else(|| panic!("{case}: a Set-Cookie header"));
    let body = json_answer(case, response, 200).await;
    let token = body["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("{case}: a token in {body}"));
    assert!(
        body["session_id"]
            .as_str()
            .is_some_and(|s| s.parse::<uuid::Uuid>().is_ok()),
        "{case}: session_id in {body}"
    );
    expiry(&body);
    assert_eq!(
        keys(&body),
        ["expires_at", "session_id", "token", "user"],
        "{case}: {body}"
    );
    assert_eq!(
        keys(&body["user"]),
        ["id", "role", "username"],
        "{case}: {body}"
    );
    assert!(
        body["user"]["id"]
            .as_str()
            .is_some_and(|s| s.parse::<uuid::Uuid>().is_ok()),
        "{case}: user.id in {body}"
    );
    assert!(body["user"]["username"].is_string(), "{case}: {body}");
    assert!(
        matches!(body["user"]["role"].as_str(), Some("admin" | "user")),
        "{case}: user.role in {body}"
    );
    assert!(
        cookie.starts_with(&format!("medianest_session={token};")),
        "{case}: the cookie carries the token: {cookie}"
    );
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax"] {
        assert!(
            cookie.split(';').any(|a| a.trim() == attribute),
            "{case}: {attribute} in {cookie}"
        );
    }
    (body, cookie)
}

fn keys(object: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = object
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    keys
}

fn expiry(answer: &Value) -> DateTime<Utc> {
    answer["expires_at"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("expires_at in {answer}"))
}

/// Logs a local account in with its harness password, expecting success.
async fn log_in(app: &TestApp, username: &str) -> TestUser {
    let (answer, _) = signed_in(username, app.login(username, &password_of(username)).await).await;
    test_user(answer)
}

/// A plex.tv account with access to the test server (owned or shared).
fn plex_member(app: &TestApp, id: u64, username: &str, owned: bool) -> SimAccount {
    let account = SimAccount::new(id, username);
    app.plex_tv().add_account(account.clone());
    app.plex_tv().grant_server(id, PMS_MACHINE_ID, owned);
    account
}

/// Runs the Plex PIN flow for `account`, expecting success.
async fn plex_signed_in(app: &TestApp, account: &SimAccount) -> (Value, String) {
    signed_in(&account.username, app.plex_sign_in(account).await).await
}

/// `GET /api/v1/me` with `token`, expecting 200.
async fn me(app: &TestApp, token: &str) -> Value {
    json_answer("GET /api/v1/me", get_as(app, token, ME).await, 200).await
}

/// Asserts that `token` is refused with 401 `unauthenticated`.
async fn assert_unauthenticated(case: &str, app: &TestApp, token: &str) {
    assert_problem(case, get_as(app, token, ME).await, 401, "unauthenticated").await;
}

fn movie(tmdb_id: u32) -> Value {
    json!({"media_type": "movie", "tmdb_id": tmdb_id, "title": format!("Movie {tmdb_id}"), "year": 1999})
}

fn show(tmdb_id: u32) -> Value {
    json!({"media_type": "tv", "tmdb_id": tmdb_id, "title": format!("Show {tmdb_id}"), "seasons": [1]})
}

async fn submit_as(app: &TestApp, token: &str, body: &Value) -> Response {
    call(app, token, Method::POST, REQUESTS, Some(body)).await
}

/// Submits `body` with `token`, expecting 202; returns the answer (`id`, `status`, …).
async fn submitted(app: &TestApp, token: &str, body: &Value) -> Value {
    json_answer("submit", submit_as(app, token, body).await, 202).await
}

fn id_of(answer: &Value) -> String {
    answer["id"].as_str().expect("an id").to_string()
}

/// `POST /api/v1/requests/{id}/{action}` with `token`.
async fn act(app: &TestApp, token: &str, id: &str, action: &str) -> Response {
    post_as(app, token, &format!("{REQUESTS}/{id}/{action}")).await
}

fn types(events: &[StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

/// The stored payload of an event, without its `{"<type>": …}` wrapper.
fn data(event: &StoredEvent) -> &Value {
    &event.payload[&event.event_type]
}

async fn session_events(app: &TestApp, session_id: impl ToString) -> Vec<StoredEvent> {
    app.events_of("user_session", &session_id.to_string()).await
}

fn admin_path(user: impl std::fmt::Display, action: &str) -> String {
    format!("/api/v1/admin/users/{user}/{action}")
}

/// Sets `user`'s quotas as the harness's admin, expecting 200.
async fn set_quota(app: &TestApp, user: impl std::fmt::Display, quotas: &Value) {
    let response = put_as(app, app.admin_token(), &admin_path(user, "quota"), quotas).await;
    json_answer("PUT quota", response, 200).await;
}

// ---------------------------------------------------------------------------------------
// Plex sign-in
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn plex_sign_in_makes_the_server_owner_an_admin_and_a_shared_member_a_user() {
    let app = TestApp::spawn().await;
    let cases = [
        (plex_member(&app, 5001, "serverowner", true), "admin"),
        (plex_member(&app, 5002, "sharedfriend", false), "user"),
    ];
    for (account, role) in cases {
        let (answer, _) = plex_signed_in(&app, &account).await;
        let case = &account.username;
        assert_eq!(answer["user"]["role"], role, "{case}: {answer}");
        assert_eq!(answer["user"]["username"], account.username, "{case}");
        let month = Utc::now() + chrono::Duration::days(29);
        assert!(
            expiry(&answer) > month,
            "{case}: a 30-day session: {answer}"
        );

        // The token works at once, and the account is what plex.tv said.
        let token = answer["token"].as_str().expect("token");
        let profile = me(&app, token).await;
        assert_eq!(profile["id"], answer["user"]["id"], "{case}: {profile}");
        assert_eq!(profile["role"], role, "{case}: {profile}");
        assert_eq!(profile["username"], account.username, "{case}: {profile}");
        assert_eq!(profile["email"], account.email, "{case}: {profile}");
        assert_eq!(profile["method"], "plex", "{case}: {profile}");
        assert_eq!(profile["plex_id"], account.id, "{case}: {profile}");

        let user_id = answer["user"]["id"].as_str().expect("user.id");
        let registered = app.events_of("user_account", user_id).await;
        assert_eq!(types(&registered)[0], "registered", "{case}");
        assert_eq!(data(&registered[0])["role"], role, "{case}");
        let started = session_events(&app, answer["session_id"].as_str().expect("id")).await;
        assert_eq!(types(&started), ["started"], "{case}");
        assert_eq!(data(&started[0])["method"], "plex", "{case}");
        assert_eq!(data(&started[0])["user_id"], user_id, "{case}");
    }
    app.stop().await;
}

#[tokio::test]
async fn plex_sign_in_refuses_an_account_without_access_to_the_server() {
    let app = TestApp::spawn().await;
    let outsider = SimAccount::new(5003, "outsider");
    // Access to some other server does not count.
    app.plex_tv()
        .grant_server(outsider.id, "some-other-machine-0002", true);
    let before = app.event_count().await;
    let response = app.plex_sign_in(&outsider).await;
    let problem = assert_problem("no access", response, 403, "no-server-access").await;
    assert!(problem["detail"].is_string(), "{problem}");
    assert_eq!(app.event_count().await, before, "no event written");

    // No account and no session: only the harness's admin exists, with its one session.
    let users = json_answer("users", app.get("/api/v1/admin/users").await, 200).await;
    let names: Vec<&str> = users["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["admin"], "{users}");
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&app.pool)
        .await
        .expect("count sessions");
    assert_eq!(sessions, 1, "only the admin's session");
    app.stop().await;
}

#[tokio::test]
async fn plex_calls_carry_the_standard_client_headers_with_one_stable_identifier() {
    let app = TestApp::spawn().await;
    let member = plex_member(&app, 5004, "headerfriend", false);
    plex_signed_in(&app, &member).await;
    plex_signed_in(&app, &member).await;

    let received = app.plex_tv().received();
    assert!(
        received.len() >= 6,
        "two sign-ins make at least pin, pin, user, resources each: {received:?}"
    );
    let mut identifiers: Vec<&str> = Vec::new();
    for call in &received {
        let identifier = call
            .header("x-plex-client-identifier")
            .unwrap_or_else(|| panic!("X-Plex-Client-Identifier on {} {}", call.method, call.path));
        assert!(!identifier.is_empty(), "{call:?}");
        if !identifiers.contains(&identifier) {
            identifiers.push(identifier);
        }
        for header in ["x-plex-product", "x-plex-version"] {
            assert!(
                call.header(header).is_some_and(|v| !v.is_empty()),
                "{header} on {} {}",
                call.method,
                call.path
            );
        }
    }
    assert_eq!(
        identifiers.len(),
        1,
        "one stable identifier: {identifiers:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn signing_in_again_with_the_same_plex_account_reuses_the_account() {
    let app = TestApp::spawn().await;
    let member = plex_member(&app, 5005, "returning", false);
    let (first, _) = plex_signed_in(&app, &member).await;
    let (second, _) = plex_signed_in(&app, &member).await;

    assert_eq!(second["user"]["id"], first["user"]["id"]);
    assert_ne!(second["session_id"], first["session_id"], "a new session");
    assert_ne!(second["token"], first["token"], "a new token");
    let user_id = first["user"]["id"].as_str().expect("user.id");
    let account = app.events_of("user_account", user_id).await;
    assert_eq!(
        types(&account)
            .iter()
            .filter(|t| **t == "registered")
            .count(),
        1,
        "{:?}",
        types(&account)
    );
    for answer in [&first, &second] {
        let profile = me(&app, answer["token"].as_str().expect("token")).await;
        assert_eq!(profile["id"], user_id);
    }
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE plex_id = $1")
        .bind(i64::try_from(member.id).expect("a small id"))
        .fetch_one(&app.pool)
        .await
        .expect("count users");
    assert_eq!(accounts, 1);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Requests: auto-approval and visibility
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_admins_request_is_approved_on_submit_and_a_users_stays_pending() {
    let app = spawn_quiet(TestOptions {
        auto_approve: AutoApprovePolicy::Admins,
        ..TestOptions::default()
    })
    .await;
    let user = app.sign_in_user("alice").await;
    let cases = [(&app.admin, 603, "approved"), (&user, 604, "pending")];
    for (who, tmdb_id, status) in cases {
        let answer = submitted(&app, &who.token, &movie(tmdb_id)).await;
        assert_eq!(answer["status"], status, "{}: {answer}", who.username);
        let detail = get_as(
            &app,
            &who.token,
            &format!(
                "{REQUESTS}/{}?min_position={}",
                id_of(&answer),
                answer["position"]
            ),
        )
        .await;
        let detail = json_answer("detail", detail, 200).await;
        assert_eq!(detail["status"], status, "{}: {detail}", who.username);
        assert_eq!(detail["requested_by"], who.id.to_string());
    }
    app.stop().await;
}

#[tokio::test]
async fn a_user_cannot_see_cancel_or_approve_another_users_request() {
    let app = spawn_quiet(TestOptions::default()).await;
    let alice = app.sign_in_user("alice").await;
    let bob = app.sign_in_user("bob").await;
    let answer = submitted(&app, &alice.token, &movie(603)).await;
    let id = id_of(&answer);
    let path = format!("{REQUESTS}/{id}?min_position={}", answer["position"]);
    json_answer(
        "alice sees hers",
        get_as(&app, &alice.token, &path).await,
        200,
    )
    .await;

    // Bob neither sees it …
    assert_problem(
        "detail",
        get_as(&app, &bob.token, &path).await,
        404,
        "not-found",
    )
    .await;
    let history = format!("{REQUESTS}/{id}/history");
    assert_problem(
        "history",
        get_as(&app, &bob.token, &history).await,
        404,
        "not-found",
    )
    .await;
    let list = json_answer("list", get_as(&app, &bob.token, REQUESTS).await, 200).await;
    assert_eq!(list["items"], json!([]), "bob's list: {list}");

    // … nor acts on it, and nothing is written.
    let before = app.events_of("media_request", &id).await.len();
    let total = app.event_count().await;
    for action in ["cancel", "approve", "decline"] {
        let response = act(&app, &bob.token, &id, action).await;
        let status = response.status().as_u16();
        let slug = if status == 404 {
            "not-found"
        } else {
            "forbidden"
        };
        if action == "cancel" {
            assert!(matches!(status, 403 | 404), "cancel: {status}");
        } else {
            assert_eq!(status, 403, "{action}");
        }
        assert_problem(action, response, status, slug).await;
    }
    assert_eq!(app.events_of("media_request", &id).await.len(), before);
    assert_eq!(app.event_count().await, total, "nothing written");

    // Alice may cancel her own.
    let cancelled = json_answer("cancel", act(&app, &alice.token, &id, "cancel").await, 200).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        types(&app.events_of("media_request", &id).await),
        ["submitted", "cancelled"]
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Quotas
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_user_over_their_quota_gets_403_with_the_numbers_and_nothing_is_written() {
    let app = spawn_quiet(TestOptions::default()).await;
    let user = app.sign_in_user("alice").await;
    set_quota(
        &app,
        user.id,
        &json!({"movie": {"limit": 2, "days": 7}, "tv": null}),
    )
    .await;
    let first = submitted(&app, &user.token, &movie(601)).await;
    submitted(&app, &user.token, &movie(602)).await;

    let problem = refused(
        &app,
        "the third movie",
        request(&app, &user.token, Method::POST, REQUESTS, Some(&movie(603))),
        403,
        "quota-exceeded",
    )
    .await;
    assert_eq!(problem["media_type"], "movie", "{problem}");
    assert_eq!(problem["limit"], 2, "{problem}");
    assert_eq!(problem["days"], 7, "{problem}");
    assert_eq!(problem["used"], 2, "{problem}");
    let submitted_at = app.events_of("media_request", &id_of(&first)).await[0].recorded_at;
    let next_slot_at: DateTime<Utc> = problem["next_slot_at"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("next_slot_at in {problem}"));
    let off = (next_slot_at - (submitted_at + chrono::Duration::days(7))).num_seconds();
    assert!(
        off.abs() <= 5,
        "next slot {next_slot_at} vs first submission {submitted_at}"
    );
    // TV has no quota; `me` shows the movie quota used up.
    submitted(&app, &user.token, &show(1399)).await;
    let profile = me(&app, &user.token).await;
    let quota = &profile["quotas"]["movie"];
    assert_eq!(quota["limit"], 2, "{profile}");
    assert_eq!(quota["days"], 7, "{profile}");
    assert_eq!(quota["used"], 2, "{profile}");
    let shown: DateTime<Utc> = quota["next_slot_at"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("next_slot_at in {profile}"));
    assert!((shown - next_slot_at).num_seconds().abs() <= 1, "{profile}");
    assert_eq!(profile["quotas"]["tv"], Value::Null, "{profile}");
    app.stop().await;
}

#[tokio::test]
async fn a_declined_request_frees_its_quota_slot() {
    let app = spawn_quiet(TestOptions::default()).await;
    let user = app.sign_in_user("alice").await;
    set_quota(
        &app,
        user.id,
        &json!({"movie": {"limit": 1, "days": 7}, "tv": null}),
    )
    .await;
    let first = submitted(&app, &user.token, &movie(601)).await;
    refused(
        &app,
        "over the quota",
        request(&app, &user.token, Method::POST, REQUESTS, Some(&movie(602))),
        403,
        "quota-exceeded",
    )
    .await;

    let declined = act(&app, app.admin_token(), &id_of(&first), "decline").await;
    assert_eq!(
        json_answer("decline", declined, 200).await["status"],
        "declined"
    );
    let second = submitted(&app, &user.token, &movie(602)).await;
    assert_eq!(second["status"], "pending");
    app.stop().await;
}

#[tokio::test]
async fn admins_are_exempt_from_quotas() {
    let app = spawn_quiet(TestOptions {
        default_quotas: Quotas {
            movie: Some(Quota { limit: 1, days: 1 }),
            tv: None,
        },
        ..TestOptions::default()
    })
    .await;
    for tmdb_id in [601, 602, 603] {
        submitted(&app, app.admin_token(), &movie(tmdb_id)).await;
    }
    let profile = me(&app, app.admin_token()).await;
    assert_eq!(profile["quotas"]["movie"], Value::Null, "{profile}");
    app.stop().await;
}

#[tokio::test]
async fn the_default_quota_applies_to_users_without_their_own() {
    let app = spawn_quiet(TestOptions {
        default_quotas: Quotas {
            movie: Some(Quota { limit: 1, days: 1 }),
            tv: None,
        },
        ..TestOptions::default()
    })
    .await;
    let user = app.sign_in_user("alice").await;
    let profile = me(&app, &user.token).await;
    let quota = &profile["quotas"]["movie"];
    assert_eq!(
        (&quota["limit"], &quota["days"]),
        (&json!(1), &json!(1)),
        "{profile}"
    );
    assert_eq!(quota["used"], 0, "{profile}");
    assert_eq!(quota["source"], "default", "{profile}");

    submitted(&app, &user.token, &movie(601)).await;
    let problem = refused(
        &app,
        "over the default quota",
        request(&app, &user.token, Method::POST, REQUESTS, Some(&movie(602))),
        403,
        "quota-exceeded",
    )
    .await;
    assert_eq!(
        (&problem["limit"], &problem["days"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(problem["used"], 1, "{problem}");
    let profile = me(&app, &user.token).await;
    assert_eq!(profile["quotas"]["movie"]["used"], 1, "{profile}");
    assert!(
        profile["quotas"]["movie"]["next_slot_at"].is_string(),
        "{profile}"
    );

    // A quota of their own replaces the default.
    set_quota(
        &app,
        user.id,
        &json!({"movie": {"limit": 3, "days": 1}, "tv": null}),
    )
    .await;
    submitted(&app, &user.token, &movie(602)).await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Logout, disable, sessions
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn logout_makes_the_token_fail_at_once() {
    let app = TestApp::spawn().await;
    let user = app.sign_in_user("alice").await;
    me(&app, &user.token).await;

    let logout = post_as(&app, &user.token, "/api/v1/auth/logout").await;
    assert_eq!(logout.status(), 204);
    let cleared = logout
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap_or_default());
    assert!(
        cleared.is_some_and(|c| c.starts_with("medianest_session=;") && c.contains("Max-Age=0")),
        "the cookie is cleared: {cleared:?}"
    );
    assert_unauthenticated("after logout", &app, &user.token).await;
    let events = session_events(&app, user.session_id).await;
    assert_eq!(types(&events), ["started", "revoked"]);
    assert_eq!(data(&events[1])["reason"], "logout");
    app.stop().await;
}

#[tokio::test]
async fn disabling_a_user_ends_every_session_at_once_until_enabled() {
    let app = spawn_quiet(TestOptions::default()).await;
    let first = app.sign_in_user("alice").await;
    let second = log_in(&app, "alice").await;
    for token in [&first.token, &second.token] {
        me(&app, token).await;
    }

    let disabled = post_as(&app, app.admin_token(), &admin_path(first.id, "disable")).await;
    assert_eq!(
        json_answer("disable", disabled, 200).await["disabled"],
        true
    );
    for (case, token) in [("first", &first.token), ("second", &second.token)] {
        assert_unauthenticated(case, &app, token).await;
    }
    for session in [first.session_id, second.session_id] {
        let events = session_events(&app, session).await;
        assert_eq!(types(&events), ["started", "revoked"], "{session}");
        assert_eq!(data(&events[1])["reason"], "account_disabled");
    }
    refused(
        &app,
        "a disabled user logs in",
        login_request(&app, "alice", &password_of("alice")),
        403,
        "account-disabled",
    )
    .await;

    let enabled = post_as(&app, app.admin_token(), &admin_path(first.id, "enable")).await;
    assert_eq!(json_answer("enable", enabled, 200).await["disabled"], false);
    let again = log_in(&app, "alice").await;
    assert_eq!(me(&app, &again.token).await["id"], first.id.to_string());
    assert_unauthenticated("revoked stays revoked", &app, &first.token).await;
    app.stop().await;
}

#[tokio::test]
async fn a_user_ends_one_of_their_sessions_but_not_another_users() {
    let app = TestApp::spawn().await;
    let laptop = app.sign_in_user("alice").await;
    let phone = log_in(&app, "alice").await;
    let bob = app.sign_in_user("bob").await;

    let ended = call(
        &app,
        &laptop.token,
        Method::DELETE,
        &format!("/api/v1/me/sessions/{}", phone.session_id),
        None,
    )
    .await;
    assert_eq!(ended.status(), 204);
    assert_unauthenticated("the ended session", &app, &phone.token).await;
    me(&app, &laptop.token).await;
    let sessions = json_answer(
        "my sessions",
        get_as(&app, &laptop.token, "/api/v1/me/sessions").await,
        200,
    )
    .await;
    assert_eq!(
        sessions["sessions"],
        json!([sessions["sessions"][0]]),
        "one session left: {sessions}"
    );
    assert_eq!(sessions["sessions"][0]["id"], laptop.session_id.to_string());
    assert_eq!(sessions["sessions"][0]["current"], true);
    let events = session_events(&app, phone.session_id).await;
    assert_eq!(data(&events[1])["reason"], "revoked");

    refused(
        &app,
        "another user's session",
        request(
            &app,
            &laptop.token,
            Method::DELETE,
            &format!("/api/v1/me/sessions/{}", bob.session_id),
            None,
        ),
        404,
        "not-found",
    )
    .await;
    me(&app, &bob.token).await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Sign-in rate limits
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_sixth_bad_password_is_rate_limited_and_so_is_the_right_one_then() {
    let app = TestApp::spawn().await;
    app.create_local_user("alice", false).await;
    for attempt in 1..=5 {
        let response = app.login("alice", "wrong-password").await;
        assert_problem(
            &format!("bad password {attempt}"),
            response,
            401,
            "invalid-credentials",
        )
        .await;
    }
    for (case, password) in [
        ("the sixth bad password", "wrong-password".to_string()),
        ("the right password while blocked", password_of("alice")),
    ] {
        let before = app.event_count().await;
        let response = app.login("alice", &password).await;
        let wait = retry_after(case, &response);
        assert!(
            wait <= 900,
            "{case}: within the 15-minute window, got {wait}"
        );
        assert_problem(case, response, 429, "rate-limited").await;
        assert_eq!(app.event_count().await, before, "{case}: no session");
    }
    app.stop().await;
}

/// A login from `address`, as the reverse proxy names it in `X-Forwarded-For` (the app
/// must trust the proxy).
async fn login_from(app: &TestApp, address: &str, username: &str, password: &str) -> Response {
    send(login_request(app, username, password).header("x-forwarded-for", address)).await
}

/// Asserts a 429 `rate-limited` with `Retry-After` within the 15-minute window, and that no
/// event was written while answering it.
async fn assert_rate_limited(app: &TestApp, case: &str, request: RequestBuilder) {
    let before = app.event_count().await;
    let response = send(request).await;
    let wait = retry_after(case, &response);
    assert!(
        wait <= 900,
        "{case}: within the 15-minute window, got {wait}"
    );
    assert_problem(case, response, 429, "rate-limited").await;
    assert_eq!(app.event_count().await, before, "{case}: no session");
}

#[tokio::test]
async fn one_members_bad_passwords_lock_their_account_but_not_the_household() {
    // Every request comes from the test's one loopback address, as a household's from
    // behind its router.
    let app = TestApp::spawn().await;
    app.create_local_user("alice", false).await;
    app.create_local_user("bob", false).await;
    for attempt in 1..=7 {
        let response = app.login("alice", "wrong-password").await;
        let (status, slug) = if attempt <= 5 {
            (401, "invalid-credentials")
        } else {
            (429, "rate-limited")
        };
        assert_problem(&format!("alice's typo {attempt}"), response, status, slug).await;
    }
    let bob = log_in(&app, "bob").await;
    me(&app, &bob.token).await;
    let member = plex_member(&app, 5101, "carol", false);
    plex_signed_in(&app, &member).await;
    assert_rate_limited(
        &app,
        "alice's right password while her account is locked",
        login_request(&app, "alice", &password_of("alice")),
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn failed_sign_ins_over_several_accounts_refuse_the_address_at_its_limit() {
    let app = TestApp::spawn_with(TestOptions {
        signin_attempts_per_address: 8,
        trust_proxy: true,
        ..TestOptions::default()
    })
    .await;
    for name in ["alice", "bob"] {
        app.create_local_user(name, false).await;
    }
    let (household, elsewhere) = ("198.51.100.7", "203.0.113.9");
    // Eight failures, none of them an account's fifth: only the address reaches its limit.
    let guesses = ["alice", "nobody-1", "nobody-2", "nobody-3"];
    for (attempt, name) in guesses.iter().chain(&guesses).enumerate() {
        let response = login_from(&app, household, name, "guess").await;
        let case = format!("guess {} for {name}", attempt + 1);
        assert_problem(&case, response, 401, "invalid-credentials").await;
    }
    for name in ["bob", "alice"] {
        let request =
            login_request(&app, name, &password_of(name)).header("x-forwarded-for", household);
        assert_rate_limited(&app, &format!("{name} from the refused address"), request).await;
    }
    for name in ["bob", "alice"] {
        let response = login_from(&app, elsewhere, name, &password_of(name)).await;
        signed_in(&format!("{name} from another address"), response).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_successful_sign_in_clears_the_accounts_failures() {
    let app = TestApp::spawn().await;
    app.create_local_user("alice", false).await;
    let typos = |from: u32| {
        let app = &app;
        async move {
            for attempt in from..from + 4 {
                let response = app.login("alice", "wrong-password").await;
                let case = format!("typo {attempt}");
                assert_problem(&case, response, 401, "invalid-credentials").await;
            }
        }
    };
    typos(1).await;
    log_in(&app, "alice").await;
    // Four more typos are again below the account's five.
    typos(5).await;
    log_in(&app, "alice").await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_expired_session_gets_401_and_the_expirer_records_it() {
    let app = TestApp::spawn_with(TestOptions {
        session_ttl: Duration::from_secs(2),
        ..TestOptions::default()
    })
    .await;
    app.create_local_user("alice", false).await;
    let before = Utc::now();
    let (answer, _) = signed_in("alice", app.login("alice", &password_of("alice")).await).await;
    let after = Utc::now();
    let user = test_user(answer.clone());
    let expires_at = expiry(&answer);
    let ttl = chrono::Duration::seconds(2);
    assert!(
        before + ttl - chrono::Duration::milliseconds(5) <= expires_at && expires_at <= after + ttl,
        "expires_at {expires_at} is two seconds after the sign-in ({before} to {after})"
    );

    // Past the expiry (by the answer's own clock), the token is refused at once.
    let past = (expires_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(past + Duration::from_millis(250)).await;
    assert_unauthenticated("expired", &app, &user.token).await;

    let events = eventually("the expirer's `expired` event", WAIT, || async {
        let events = session_events(&app, user.session_id).await;
        (events.last()?.event_type == "expired").then_some(events)
    })
    .await;
    assert_eq!(types(&events), ["started", "expired"]);
    assert_unauthenticated("still expired", &app, &user.token).await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Roles and admin endpoints
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_admin_promotes_a_user_who_can_then_approve_requests() {
    let app = spawn_quiet(TestOptions::default()).await;
    let alice = app.sign_in_user("alice").await;
    let bob = app.sign_in_user("bob").await;
    let id = id_of(&submitted(&app, &bob.token, &movie(603)).await);
    refused(
        &app,
        "a user approves",
        request(
            &app,
            &alice.token,
            Method::POST,
            &format!("{REQUESTS}/{id}/approve"),
            None,
        ),
        403,
        "forbidden",
    )
    .await;

    let promoted = put_as(
        &app,
        app.admin_token(),
        &admin_path(alice.id, "role"),
        &json!({"role": "admin"}),
    )
    .await;
    assert_eq!(json_answer("promote", promoted, 200).await["role"], "admin");
    assert_eq!(me(&app, &alice.token).await["role"], "admin");
    let approved = act(&app, &alice.token, &id, "approve").await;
    assert_eq!(
        json_answer("approve", approved, 200).await["status"],
        "approved"
    );
    let account = app.events_of("user_account", &alice.id.to_string()).await;
    assert_eq!(types(&account), ["registered", "role_changed"]);
    assert_eq!(data(&account[1])["role"], "admin");
    app.stop().await;
}

#[tokio::test]
async fn a_user_gets_403_from_every_admin_endpoint_and_nothing_is_written() {
    let app = spawn_quiet(TestOptions::default()).await;
    let alice = app.sign_in_user("alice").await;
    let bob = app.sign_in_user("bob").await;
    let admin = app.admin.id;
    let (role, demote) = (json!({"role": "admin"}), json!({"role": "user"}));
    let quota = json!({"movie": {"limit": 100, "days": 1}, "tv": null});
    let cases: Vec<(&str, Method, String, Option<&Value>)> = vec![
        (
            "list users",
            Method::GET,
            "/api/v1/admin/users".into(),
            None,
        ),
        (
            "promote self",
            Method::PUT,
            admin_path(alice.id, "role"),
            Some(&role),
        ),
        (
            "promote another",
            Method::PUT,
            admin_path(bob.id, "role"),
            Some(&role),
        ),
        (
            "own quota",
            Method::PUT,
            admin_path(alice.id, "quota"),
            Some(&quota),
        ),
        (
            "disable another",
            Method::POST,
            admin_path(bob.id, "disable"),
            None,
        ),
        (
            "disable the admin",
            Method::POST,
            admin_path(admin, "disable"),
            None,
        ),
        (
            "enable another",
            Method::POST,
            admin_path(bob.id, "enable"),
            None,
        ),
        (
            "demote the admin",
            Method::PUT,
            admin_path(admin, "role"),
            Some(&demote),
        ),
    ];
    for (case, method, path, body) in cases {
        refused(
            &app,
            case,
            request(&app, &alice.token, method, &path, body),
            403,
            "forbidden",
        )
        .await;
    }
    assert_eq!(me(&app, &alice.token).await["role"], "user");
    me(&app, &bob.token).await;
    app.stop().await;
}

#[tokio::test]
async fn an_admin_cannot_change_their_own_role_or_disable_themselves() {
    let app = spawn_quiet(TestOptions::default()).await;
    let admin = app.admin.clone();
    refused(
        &app,
        "demote self",
        request(
            &app,
            &admin.token,
            Method::PUT,
            &admin_path(admin.id, "role"),
            Some(&json!({"role": "user"})),
        ),
        403,
        "forbidden",
    )
    .await;
    refused(
        &app,
        "disable self",
        request(
            &app,
            &admin.token,
            Method::POST,
            &admin_path(admin.id, "disable"),
            None,
        ),
        403,
        "forbidden",
    )
    .await;
    let profile = me(&app, &admin.token).await;
    assert_eq!(
        (&profile["role"], &profile["disabled"]),
        (&json!("admin"), &json!(false))
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// API rate limit, bootstrap token, cookie
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_api_rate_limit_is_per_user() {
    let app = TestApp::spawn_with(TestOptions {
        api_rate_limit: 3,
        ..TestOptions::default()
    })
    .await;
    let alice = app.sign_in_user("alice").await;
    let bob = app.sign_in_user("bob").await;
    for _ in 0..3 {
        me(&app, &alice.token).await;
    }
    let response = get_as(&app, &alice.token, ME).await;
    let wait = retry_after("the fourth call", &response);
    assert!(wait <= 60, "within the minute: {wait}");
    assert_problem("the fourth call", response, 429, "rate-limited").await;
    assert_eq!(me(&app, &bob.token).await["username"], "bob");
    app.stop().await;
}

#[tokio::test]
async fn the_bootstrap_token_is_refused_once_an_admin_exists() {
    let app = TestApp::spawn().await;
    assert_unauthenticated("the bootstrap token", &app, ADMIN_TOKEN).await;
    refused(
        &app,
        "a submission with the bootstrap token",
        request(&app, ADMIN_TOKEN, Method::POST, REQUESTS, Some(&movie(603))),
        401,
        "unauthenticated",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn the_session_cookie_authenticates() {
    let app = TestApp::spawn().await;
    app.create_local_user("alice", false).await;
    let (answer, set_cookie) =
        signed_in("alice", app.login("alice", &password_of("alice")).await).await;
    let pair = set_cookie.split(';').next().expect("name=value");
    let response = app
        .http
        .get(app.url(ME))
        .header(COOKIE, pair)
        .send()
        .await
        .expect("GET reaches the app");
    let profile = json_answer("cookie", response, 200).await;
    assert_eq!(profile["id"], answer["user"]["id"]);
    assert_eq!(profile["username"], "alice");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// The public (NATS) form
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_stream_carries_account_and_session_events_without_their_secrets() {
    let app = TestApp::spawn().await;
    let user_agent = "MediaNestSecretAgent/9.9 (auth-e2e)";

    // A local sign-in with a distinctive User-Agent, later disabled.
    app.create_local_user("dave", false).await;
    let response = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .header(USER_AGENT, user_agent)
        .json(&json!({"username": "dave", "password": password_of("dave")}))
        .send()
        .await
        .expect("POST reaches the app");
    let dave = test_user(signed_in("dave", response).await.0);
    // A Plex sign-in with an e-mail, logged out.
    let mut carol = plex_member(&app, 5006, "carol", false);
    carol.email = "carol.secret-mailbox@example.org".to_string();
    let (answer, _) = plex_signed_in(&app, &carol).await;
    let carol_token = answer["token"].as_str().expect("token").to_string();
    assert_eq!(
        post_as(&app, &carol_token, "/api/v1/auth/logout")
            .await
            .status(),
        204
    );
    let disabled = post_as(&app, app.admin_token(), &admin_path(dave.id, "disable")).await;
    assert_eq!(disabled.status(), 200);

    // The secrets are real: PostgreSQL holds them.
    let stored: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM events")
        .fetch_all(&app.pool)
        .await
        .expect("read the log");
    let stored = stored.join("\n");
    let tokens = [
        app.admin_token().to_string(),
        dave.token.clone(),
        carol_token,
    ];
    let mut secrets = vec![
        carol.email.clone(),
        "$argon2id".to_string(),
        "127.0.0.1".to_string(),
        user_agent.to_string(),
    ];
    for token in &tokens {
        assert!(
            stored.contains(&token_sha256(token)),
            "a token hash is stored"
        );
        secrets.push(token.clone());
        secrets.push(token_sha256(token));
    }
    for secret in &secrets[..4] {
        assert!(stored.contains(secret.as_str()), "{secret} is in the log");
    }

    let count = usize::try_from(app.event_count().await).expect("a count");
    let messages = app.wait_for_stream(count, WAIT).await;
    assert!(
        messages.len() >= count,
        "{} of {count} relayed",
        messages.len()
    );
    for subject_part in [".user_session.", ".user_account."] {
        assert!(
            messages.iter().any(|m| m.subject.contains(subject_part)),
            "{subject_part} on the stream"
        );
    }
    for event_type in ["registered", "disabled", "started", "revoked"] {
        assert!(
            messages
                .iter()
                .any(|m| m.subject.ends_with(&format!(".{event_type}"))),
            "a {event_type} event on the stream"
        );
    }
    // The public form keeps what integrators need.
    let started = messages
        .iter()
        .find(|m| {
            m.subject
                .ends_with(&format!(".user_session.{}.started", dave.session_id))
        })
        .expect("dave's session start on the stream");
    assert_eq!(
        started.body["data"]["user_id"],
        dave.id.to_string(),
        "{:?}",
        started.body
    );
    for message in &messages {
        let body = message.body.to_string();
        assert_ne!(
            message.body,
            Value::Null,
            "{}: a JSON body",
            message.subject
        );
        for secret in &secrets {
            assert!(
                !body.contains(secret.as_str()),
                "{} leaks {secret}: {body}",
                message.subject
            );
        }
    }
    app.stop().await;
}
