//! Bad input to sign-in, sessions and user management (issue 3, docs/design.md §7): forged,
//! truncated, reused and disabled users' tokens, bad logins, PINs that do not exist, are not
//! yet authorised, expired or used, a plex.tv that times out or fails, and bad admin
//! commands. Each is answered with `application/problem+json`, the right status and a stable
//! `urn:medianest:problem:<slug>` type — and creates no account, no session and no event.
//!
//! The apps run without the Overseerr simulator (no saga writes while a test counts) and
//! with a sign-in limit far out of the way, so many failed sign-ins in one test are answered
//! for what they are rather than 429.

use std::time::Duration;

use medianest_testkit::app::{
    password_of, test_user, TestApp, TestOptions, TestUser, ADMIN_TOKEN, PMS_MACHINE_ID,
};
use medianest_testkit::plex_sim::SimAccount;
use medianest_testkit::problem::{assert_problem, Problem};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use uuid::Uuid;

const LOGIN: &str = "/api/v1/auth/login";
const LOGOUT: &str = "/api/v1/auth/logout";
const PINS: &str = "/api/v1/auth/plex/pins";
const ME: &str = "/api/v1/me";
const MY_SESSIONS: &str = "/api/v1/me/sessions";
const ADMIN_USERS: &str = "/api/v1/admin/users";
/// Longer than the test apps' 2 s plex.tv timeout.
const PLEX_TV_HANG: Duration = Duration::from_secs(4);
/// A PIN id the plex.tv simulator never hands out (its ids start at 308,667,301).
const UNKNOWN_PIN: u64 = 999_999_999;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// An app with Plex sign-in, without Overseerr sagas, and with the sign-in limit out of the
/// way.
async fn spawn() -> TestApp {
    spawn_with(TestOptions::default()).await
}

async fn spawn_with(options: TestOptions) -> TestApp {
    TestApp::spawn_with(TestOptions {
        overseerr: false,
        signin_attempts: 10_000,
        signin_attempts_per_address: 10_000,
        ..options
    })
    .await
}

async fn send(case: &str, request: RequestBuilder) -> Response {
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{case}: the request reaches the app: {e}"))
}

/// What a refused request must leave untouched.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    events: i64,
    user_session_events: i64,
    sessions: i64,
    users: i64,
    identities: i64,
    pins_used: i64,
}

/// The read models the footprint counts (`users`, `sessions`).
const READ_MODELS: [&str; 2] = ["projection-users", "projection-sessions"];

/// The footprint once the read models have caught up with every event written so far, so
/// that only what a request writes can change it.
async fn footprint(app: &TestApp) -> Footprint {
    let head: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(&app.pool)
        .await
        .expect("the head of the log (the harness's admin signed in)");
    let outcome = medianest_store::checkpoint::wait_until_reached(
        &app.pool,
        &READ_MODELS,
        head,
        Duration::from_secs(10),
    )
    .await
    .expect("read the checkpoints");
    assert_eq!(
        outcome,
        medianest_store::checkpoint::WaitOutcome::Reached,
        "the read models reach position {head}"
    );
    let (user_session_events, sessions, users, identities, pins_used): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM events WHERE aggregate_type = 'user_session'),
                    (SELECT count(*) FROM sessions),
                    (SELECT count(*) FROM users),
                    (SELECT count(*) FROM user_identities),
                    (SELECT count(*) FROM plex_pins_used)",
        )
        .fetch_one(&app.pool)
        .await
        .expect("read the footprint");
    Footprint {
        events: app.event_count().await,
        user_session_events,
        sessions,
        users,
        identities,
        pins_used,
    }
}

/// Sends `request`, asserts the problem (see [`assert_problem`]), that it sets no session
/// cookie, and that it wrote nothing: no event, no session, no account, no used PIN.
async fn refused(
    app: &TestApp,
    case: &str,
    request: RequestBuilder,
    status: u16,
    slug: &str,
) -> Problem {
    let before = footprint(app).await;
    let problem = assert_problem(case, send(case, request).await, status, slug).await;
    assert!(!problem.sets_cookie, "{case}: no session cookie");
    assert_eq!(footprint(app).await, before, "{case}: nothing written");
    problem
}

/// [`refused`] as 503 `slug` with a `Retry-After` of at least a second.
async fn unavailable(app: &TestApp, case: &str, request: RequestBuilder, slug: &str) {
    let problem = refused(app, case, request, 503, slug).await;
    assert!(
        problem.retry_after.is_some_and(|s| s >= 1),
        "{case}: Retry-After in seconds, got {:?}",
        problem.retry_after
    );
}

/// How a request presents a token.
#[derive(Debug, Clone)]
enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// A raw `Authorization` header.
    Authorization(String),
    /// A raw `Cookie` header.
    Cookie(String),
}

impl Credential {
    fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Self::Bearer(token) => request.bearer_auth(token),
            Self::Authorization(value) => request.header(AUTHORIZATION, value),
            Self::Cookie(value) => request.header(COOKIE, value),
        }
    }
}

fn with(app: &TestApp, credential: &Credential, method: Method, path: &str) -> RequestBuilder {
    credential.apply(app.http.request(method, app.url(path)))
}

/// Asserts that `credential` gets 401 `unauthenticated` everywhere — reading the account
/// and its sessions, logging out, ending session `session_id` — writing nothing.
async fn assert_locked_out(app: &TestApp, case: &str, credential: &Credential, session_id: Uuid) {
    let end_session = format!("{MY_SESSIONS}/{session_id}");
    for (method, path) in [
        (Method::GET, ME),
        (Method::GET, MY_SESSIONS),
        (Method::POST, LOGOUT),
        (Method::DELETE, end_session.as_str()),
    ] {
        refused(
            app,
            &format!("{case}: {method} {path}"),
            with(app, credential, method.clone(), path),
            401,
            "unauthenticated",
        )
        .await;
    }
}

/// Asserts that `credential` reads the account of `user` (the control of a refusal).
async fn assert_let_in(app: &TestApp, case: &str, credential: &Credential, user: &TestUser) {
    let response = send(case, with(app, credential, Method::GET, ME)).await;
    assert_eq!(response.status(), 200, "{case}: GET {ME}");
    let me: Value = response.json().await.expect("a JSON answer");
    assert_eq!(me["id"], user.id.to_string(), "{case}: {me}");
}

fn bearer(user: &TestUser) -> Credential {
    Credential::Bearer(user.token.clone())
}

/// A well-formed token no session has: `mn_` and 64 random hex digits.
fn forged_token() -> String {
    format!("mn_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// Signs `username` in once more (a second session) and returns it.
async fn another_session(app: &TestApp, username: &str) -> TestUser {
    let response = app.login(username, &password_of(username)).await;
    assert_eq!(response.status(), 200, "login of {username}");
    test_user(response.json().await.expect("a JSON answer"))
}

/// `POST path` without credentials, with a raw body and, when given, a `Content-Type`.
fn post_raw(app: &TestApp, path: &str, content_type: Option<&str>, body: &str) -> RequestBuilder {
    let request = app.http.post(app.url(path)).body(body.to_string());
    match content_type {
        Some(content_type) => request.header(CONTENT_TYPE, content_type),
        None => request,
    }
}

/// Creates a PIN through MediaNest and returns its id.
async fn new_pin(app: &TestApp) -> u64 {
    let response = send("create a PIN", app.http.post(app.url(PINS))).await;
    assert_eq!(response.status(), 201, "create a PIN");
    let pin: Value = response.json().await.expect("a JSON answer");
    pin["id"].as_u64().expect("a PIN id")
}

/// `POST /api/v1/auth/plex/pins/{pin}/session`.
fn exchange(app: &TestApp, pin: impl std::fmt::Display) -> RequestBuilder {
    app.http.post(app.url(&format!("{PINS}/{pin}/session")))
}

/// A plex.tv account the Plex server is shared with.
fn plex_member(app: &TestApp, id: u64, username: &str) -> SimAccount {
    let account = SimAccount::new(id, username);
    app.plex_tv().add_account(account.clone());
    app.plex_tv().grant_server(id, PMS_MACHINE_ID, false);
    account
}

/// A PIN `account` authorised at app.plex.tv.
async fn authorised_pin(app: &TestApp, account: &SimAccount) -> u64 {
    let pin = new_pin(app).await;
    app.plex_tv().authorize_pin(pin, account.id);
    pin
}

/// Exchanges `pin` and expects a session (the control of a refusal).
async fn exchanged(app: &TestApp, case: &str, pin: u64) -> TestUser {
    let response = send(case, exchange(app, pin)).await;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{case}: the PIN is exchanged (body: {text})");
    test_user(serde_json::from_str(&text).expect("a JSON answer"))
}

/// An admin command on user `id`, as `token`.
fn admin_command(app: &TestApp, token: &str, id: &str, command: &str) -> RequestBuilder {
    let request = |method, path: String| app.request_as(token, method, &path);
    match command {
        "role" => {
            request(Method::PUT, format!("{ADMIN_USERS}/{id}/role")).json(&json!({"role": "admin"}))
        }
        "quota" => request(Method::PUT, format!("{ADMIN_USERS}/{id}/quota"))
            .json(&json!({"movie": {"limit": 5, "days": 7}, "tv": null})),
        "disable" | "enable" => request(Method::POST, format!("{ADMIN_USERS}/{id}/{command}")),
        other => panic!("no admin command {other}"),
    }
}

const ADMIN_COMMANDS: [&str; 4] = ["role", "quota", "disable", "enable"];

/// `PUT /api/v1/admin/users/{id}/{what}` as the admin with a raw JSON body.
fn put_raw(app: &TestApp, id: Uuid, what: &str, body: &str) -> RequestBuilder {
    app.request(Method::PUT, &format!("{ADMIN_USERS}/{id}/{what}"))
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string())
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn forged_tokens_are_401_unauthenticated_and_write_nothing() {
    let app = spawn().await;
    let cases = [
        ("a random mn_ token", Credential::Bearer(forged_token())),
        (
            "a random string",
            Credential::Bearer(Uuid::new_v4().simple().to_string()),
        ),
        (
            "the bootstrap token once an admin exists",
            Credential::Bearer(ADMIN_TOKEN.to_string()),
        ),
        (
            "a random mn_ token as the session cookie",
            Credential::Cookie(format!("medianest_session={}", forged_token())),
        ),
    ];
    for (case, credential) in cases {
        assert_locked_out(&app, case, &credential, app.admin.session_id).await;
    }
    assert_let_in(
        &app,
        "the admin's own token",
        &bearer(&app.admin),
        &app.admin,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn truncated_or_altered_tokens_are_401_unauthenticated_and_write_nothing() {
    let app = spawn().await;
    let alice = app.sign_in_user("alice").await;
    let token = &alice.token;
    let mut altered = token.clone();
    let last = altered.pop().expect("a token");
    altered.push(if last == '0' { '1' } else { '0' });
    let cases = [
        (
            "the token minus its last character",
            token[..token.len() - 1].to_string(),
        ),
        (
            "the token minus its prefix",
            token["mn_".len()..].to_string(),
        ),
        ("the token with its last character changed", altered),
        ("the token with a character more", format!("{token}0")),
        ("the token in upper case", token.to_uppercase()),
    ];
    for (case, forged) in cases {
        assert_locked_out(&app, case, &Credential::Bearer(forged), alice.session_id).await;
    }
    assert_let_in(&app, "the whole token", &bearer(&alice), &alice).await;
    app.stop().await;
}

#[tokio::test]
async fn a_token_reused_after_logout_is_401_unauthenticated_and_writes_nothing() {
    let app = spawn().await;
    let alice = app.sign_in_user("alice").await;
    let response = send("logout", app.request_as(&alice.token, Method::POST, LOGOUT)).await;
    assert_eq!(response.status(), 204, "logout");
    assert_locked_out(&app, "after logout", &bearer(&alice), alice.session_id).await;
    let cookie = Credential::Cookie(format!("medianest_session={}", alice.token));
    assert_locked_out(&app, "after logout, as cookie", &cookie, alice.session_id).await;
    app.stop().await;
}

#[tokio::test]
async fn a_token_reused_after_its_session_was_ended_is_401_unauthenticated_and_writes_nothing() {
    let app = spawn().await;
    let laptop = app.sign_in_user("alice").await;
    let phone = another_session(&app, "alice").await;
    let response = send(
        "end the phone's session",
        app.request_as(
            &laptop.token,
            Method::DELETE,
            &format!("{MY_SESSIONS}/{}", phone.session_id),
        ),
    )
    .await;
    assert_eq!(response.status(), 204, "end the phone's session");
    assert_locked_out(&app, "the ended session", &bearer(&phone), phone.session_id).await;
    assert_let_in(&app, "the other session", &bearer(&laptop), &laptop).await;
    app.stop().await;
}

#[tokio::test]
async fn tokens_of_a_disabled_user_are_401_unauthenticated_and_write_nothing() {
    let app = spawn().await;
    let alice = app.sign_in_user("alice").await;
    let second = another_session(&app, "alice").await;
    let response = app
        .post_empty(&format!("{ADMIN_USERS}/{}/disable", alice.id))
        .await;
    assert_eq!(response.status(), 200, "disable alice");
    for (case, session) in [("first session", &alice), ("second session", &second)] {
        assert_locked_out(&app, case, &bearer(session), session.session_id).await;
    }
    let password = password_of("alice");
    refused(
        &app,
        "login of a disabled account with its password",
        app.http
            .post(app.url(LOGIN))
            .json(&json!({"username": "alice", "password": password})),
        403,
        "account-disabled",
    )
    .await;
    // Enabling the account again does not bring the revoked sessions back.
    let response = app
        .post_empty(&format!("{ADMIN_USERS}/{}/enable", alice.id))
        .await;
    assert_eq!(response.status(), 200, "enable alice");
    assert_locked_out(&app, "after enable", &bearer(&alice), alice.session_id).await;
    app.stop().await;
}

#[tokio::test]
async fn an_empty_bearer_or_a_token_in_the_wrong_cookie_is_401_unauthenticated() {
    let app = spawn().await;
    let alice = app.sign_in_user("alice").await;
    let token = &alice.token;
    let cases = [
        (
            "an empty bearer",
            Credential::Authorization("Bearer ".into()),
        ),
        (
            "a blank bearer",
            Credential::Authorization("Bearer    ".into()),
        ),
        ("Bearer alone", Credential::Authorization("Bearer".into())),
        (
            "an empty session cookie",
            Credential::Cookie("medianest_session=".into()),
        ),
        (
            "the token in a cookie named session",
            Credential::Cookie(format!("session={token}")),
        ),
        (
            "the token in a cookie named token",
            Credential::Cookie(format!("token={token}")),
        ),
        (
            "the token in a cookie named Medianest_Session",
            Credential::Cookie(format!("Medianest_Session={token}")),
        ),
        (
            "the token in a cookie named medianest_session_old",
            Credential::Cookie(format!("medianest_session_old={token}")),
        ),
    ];
    for (case, credential) in cases {
        assert_locked_out(&app, case, &credential, alice.session_id).await;
    }
    let right = Credential::Cookie(format!("theme=dark; medianest_session={token}"));
    assert_let_in(&app, "the token in the session cookie", &right, &alice).await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// POST /api/v1/auth/login
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_user_and_a_wrong_password_get_the_same_401_invalid_credentials() {
    let app = spawn().await;
    app.create_local_user("alice", false).await;
    app.create_local_user("bob", false).await;
    let login = |username: &str, password: &str| {
        app.http
            .post(app.url(LOGIN))
            .json(&json!({"username": username, "password": password}))
    };
    let alice_password = password_of("alice");
    let cases = [
        ("an unknown user", login("mallory", "password-of-mallory")),
        (
            "an unknown user with a real password",
            login("mallory", &alice_password),
        ),
        ("a wrong password", login("alice", "not-the-password")),
        ("another user's password", login("bob", &alice_password)),
        (
            "the password with a trailing space",
            login("alice", &format!("{alice_password} ")),
        ),
        ("an empty password", login("alice", "")),
        ("an empty username", login("", &alice_password)),
    ];
    let mut answers = Vec::new();
    for (case, request) in cases {
        let problem = refused(&app, case, request, 401, "invalid-credentials").await;
        answers.push((case, problem.body));
    }
    let (first_case, first) = &answers[0];
    for (case, body) in &answers[1..] {
        assert_eq!(
            body, first,
            "{case} is answered exactly like {first_case}: nothing tells them apart"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unreadable_login_is_a_400_malformed_request_and_writes_nothing() {
    let app = spawn().await;
    app.create_local_user("alice", false).await;
    let password = password_of("alice");
    let cases = [
        (
            "malformed JSON",
            format!(r#"{{"username": "alice", "password": "{password}""#),
        ),
        ("an empty body", String::new()),
        ("a JSON string", r#""alice""#.to_string()),
        ("a missing password", r#"{"username": "alice"}"#.to_string()),
        (
            "a missing username",
            format!(r#"{{"password": "{password}"}}"#),
        ),
        (
            "an unknown field",
            format!(r#"{{"username": "alice", "password": "{password}", "remember": true}}"#),
        ),
        (
            "a numeric username",
            format!(r#"{{"username": 5, "password": "{password}"}}"#),
        ),
        (
            "a null password",
            r#"{"username": "alice", "password": null}"#.to_string(),
        ),
        (
            "a numeric password",
            r#"{"username": "alice", "password": 12345678}"#.to_string(),
        ),
        (
            "an array password",
            format!(r#"{{"username": "alice", "password": ["{password}"]}}"#),
        ),
        // The fields in order, as an array: serde's derived structs accept it unless told not.
        ("a JSON array", format!(r#"["alice", "{password}"]"#)),
    ];
    for (case, body) in cases {
        refused(
            &app,
            case,
            post_raw(&app, LOGIN, Some("application/json"), &body),
            400,
            "malformed-request",
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_login_that_is_not_json_is_a_415_and_writes_nothing() {
    let app = spawn().await;
    app.create_local_user("alice", false).await;
    let body = json!({"username": "alice", "password": password_of("alice")}).to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        refused(
            &app,
            &format!("Content-Type {content_type:?}"),
            post_raw(&app, LOGIN, content_type, &body),
            415,
            "unsupported-media-type",
        )
        .await;
    }
    // The same body as JSON signs in: the refusals were about the content type.
    let response = send(
        "as JSON",
        post_raw(&app, LOGIN, Some("application/json"), &body),
    )
    .await;
    assert_eq!(response.status(), 200, "the same body as application/json");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Plex PIN sign-in
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn exchanging_a_pin_that_does_not_exist_is_a_404_pin_not_found_and_writes_nothing() {
    let app = spawn().await;
    plex_member(&app, 1001, "alice");
    let pin = new_pin(&app).await; // the simulator knows one PIN
    let cases = [
        ("an unknown PIN id", UNKNOWN_PIN.to_string()),
        ("the next PIN id", (pin + 1).to_string()),
        ("PIN id 0", "0".to_string()),
        ("a non-numeric id", "abc".to_string()),
        ("a negative id", "-1".to_string()),
        ("a fractional id", format!("{pin}.5")),
        (
            "an id beyond 64 bits",
            "99999999999999999999999".to_string(),
        ),
    ];
    for (case, id) in cases {
        refused(&app, case, exchange(&app, &id), 404, "pin-not-found").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn exchanging_a_pin_not_yet_authorised_is_a_409_and_leaves_the_pin_usable() {
    let app = spawn().await;
    let alice = plex_member(&app, 1001, "alice");
    let pin = new_pin(&app).await;
    for attempt in 1..=2 {
        refused(
            &app,
            &format!("attempt {attempt} before authorisation"),
            exchange(&app, pin),
            409,
            "pin-not-authorized",
        )
        .await;
    }
    app.plex_tv().authorize_pin(pin, alice.id);
    exchanged(&app, "after authorisation", pin).await;
    app.stop().await;
}

#[tokio::test]
async fn exchanging_an_expired_pin_is_a_404_pin_not_found_and_writes_nothing() {
    let app = spawn().await;
    let alice = plex_member(&app, 1001, "alice");
    let pin = authorised_pin(&app, &alice).await;
    app.plex_tv().expire_pin(pin);
    refused(
        &app,
        "an expired, authorised PIN",
        exchange(&app, pin),
        404,
        "pin-not-found",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn exchanging_a_pin_twice_is_a_409_pin_already_used_and_writes_nothing() {
    let app = spawn().await;
    let alice = plex_member(&app, 1001, "alice");
    let pin = authorised_pin(&app, &alice).await;
    let signed_in = exchanged(&app, "the first exchange", pin).await;
    for attempt in 2..=3 {
        refused(
            &app,
            &format!("exchange {attempt}"),
            exchange(&app, pin),
            409,
            "pin-already-used",
        )
        .await;
    }
    let account = app
        .events_of("user_account", &signed_in.id.to_string())
        .await;
    assert!(!account.is_empty(), "the first exchange registered alice");
    let active: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = $1")
        .bind(signed_in.id)
        .fetch_one(&app.pool)
        .await
        .expect("count sessions");
    assert_eq!(active, 1, "one PIN, one session");
    assert_let_in(&app, "the first session", &bearer(&signed_in), &signed_in).await;
    app.stop().await;
}

#[tokio::test]
async fn a_plex_tv_that_times_out_is_a_503_plex_unavailable_with_retry_after() {
    let app = spawn().await;
    let alice = plex_member(&app, 1001, "alice");
    let pin = authorised_pin(&app, &alice).await;
    app.plex_tv().set_delay(PLEX_TV_HANG);
    unavailable(
        &app,
        "exchange while plex.tv hangs",
        exchange(&app, pin),
        "plex-unavailable",
    )
    .await;
    unavailable(
        &app,
        "create a PIN while plex.tv hangs",
        app.http.post(app.url(PINS)),
        "plex-unavailable",
    )
    .await;
    // A transient failure does not use the PIN up.
    app.plex_tv().set_delay(Duration::ZERO);
    exchanged(&app, "once plex.tv answers again", pin).await;
    app.stop().await;
}

#[tokio::test]
async fn a_plex_tv_answering_5xx_is_a_503_plex_unavailable_with_retry_after() {
    let app = spawn().await;
    let alice = plex_member(&app, 1001, "alice");
    let pin = authorised_pin(&app, &alice).await;
    for status in [500, 502, 503] {
        app.plex_tv().fail_next(1, status);
        unavailable(
            &app,
            &format!("exchange while plex.tv answers {status}"),
            exchange(&app, pin),
            "plex-unavailable",
        )
        .await;
        app.plex_tv().fail_next(1, status);
        unavailable(
            &app,
            &format!("create a PIN while plex.tv answers {status}"),
            app.http.post(app.url(PINS)),
            "plex-unavailable",
        )
        .await;
    }
    exchanged(&app, "once plex.tv answers again", pin).await;
    app.stop().await;
}

#[tokio::test]
async fn plex_tv_refusing_to_create_a_pin_is_a_502_plex_error_not_the_callers_mistake() {
    let app = spawn().await;
    // Creating a PIN sends no token and names no PIN: a 401 or 404 from plex.tv there is an
    // answer MediaNest cannot use, not a `plex-token-rejected` or `pin-not-found`.
    for status in [401, 404] {
        app.plex_tv().fail_next(1, status);
        refused(
            &app,
            &format!("create a PIN while plex.tv answers {status}"),
            app.http.post(app.url(PINS)),
            502,
            "plex-error",
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_plex_account_without_access_to_the_server_is_a_403_and_writes_nothing() {
    let app = spawn().await;
    let stranger = SimAccount::new(4242, "stranger");
    app.plex_tv().add_account(stranger.clone());
    app.plex_tv()
        .grant_server(stranger.id, "some-other-server-0001", true);
    let pin = authorised_pin(&app, &stranger).await;
    refused(
        &app,
        "an account with another server only",
        exchange(&app, pin),
        403,
        "no-server-access",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn plex_sign_in_without_plex_configured_is_a_503_plex_sign_in_unavailable() {
    let app = spawn_with(TestOptions {
        plex: false,
        ..TestOptions::default()
    })
    .await;
    refused(
        &app,
        "create a PIN",
        app.http.post(app.url(PINS)),
        503,
        "plex-sign-in-unavailable",
    )
    .await;
    refused(
        &app,
        "exchange a PIN",
        exchange(&app, UNKNOWN_PIN),
        503,
        "plex-sign-in-unavailable",
    )
    .await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Admin user management
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_commands_on_an_unknown_or_non_uuid_user_are_404_and_write_nothing() {
    let app = spawn().await;
    app.create_local_user("alice", false).await;
    let unknown = Uuid::now_v7().to_string();
    let session_id = app.admin.session_id.to_string();
    for id in [unknown.as_str(), "not-a-uuid", "12345", session_id.as_str()] {
        for command in ADMIN_COMMANDS {
            refused(
                &app,
                &format!("{command} of {id}"),
                admin_command(&app, app.admin_token(), id, command),
                404,
                "not-found",
            )
            .await;
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_quota_out_of_range_is_a_422_naming_the_field_and_writes_nothing() {
    let app = spawn().await;
    let alice = app.create_local_user("alice", false).await;
    let cases = [
        (
            "movie limit 0",
            json!({"movie": {"limit": 0, "days": 7}, "tv": null}),
            "limit",
        ),
        (
            "movie limit 1001",
            json!({"movie": {"limit": 1001, "days": 7}, "tv": null}),
            "limit",
        ),
        (
            "tv limit 0",
            json!({"movie": null, "tv": {"limit": 0, "days": 7}}),
            "limit",
        ),
        (
            "movie days 366",
            json!({"movie": {"limit": 5, "days": 366}, "tv": null}),
            "days",
        ),
        (
            "tv days 366",
            json!({"movie": null, "tv": {"limit": 5, "days": 366}}),
            "days",
        ),
        (
            "tv days 0",
            json!({"movie": null, "tv": {"limit": 5, "days": 0}}),
            "days",
        ),
    ];
    for (case, body, field) in cases {
        let problem = refused(
            &app,
            case,
            put_raw(&app, alice, "quota", &body.to_string()),
            422,
            "validation-failed",
        )
        .await;
        let named = problem.body["field"].as_str().unwrap_or_default();
        assert!(
            named == field || named.ends_with(&format!(".{field}")),
            "{case}: the problem names {field}: {}",
            problem.body
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unreadable_quota_or_role_body_is_a_400_malformed_request_and_writes_nothing() {
    let app = spawn().await;
    let alice = app.create_local_user("alice", false).await;
    let cases = [
        (
            "quota",
            r#"{"movie": {"limit": 5, "days": 7}}"#,
            "quota without tv",
        ),
        ("quota", r#"{"tv": null}"#, "quota without movie"),
        ("quota", "{}", "an empty quota object"),
        (
            "quota",
            r#"{"movie": null, "tv": null, "music": null}"#,
            "an unknown quota member",
        ),
        (
            "quota",
            r#"{"movie": {"limit": 5, "days": 7, "hours": 1}, "tv": null}"#,
            "an unknown field in a quota",
        ),
        (
            "quota",
            r#"{"movie": {"limit": 5}, "tv": null}"#,
            "a quota without days",
        ),
        (
            "quota",
            r#"{"movie": {"limit": "5", "days": 7}, "tv": null}"#,
            "a string limit",
        ),
        (
            "quota",
            r#"{"movie": {"limit": -1, "days": 7}, "tv": null}"#,
            "a negative limit",
        ),
        ("quota", r#"{"movie": null, "tv": null"#, "malformed JSON"),
        ("quota", "", "an empty body"),
        ("role", r#"{"role": "superuser"}"#, "role superuser"),
        ("role", r#"{"role": "Admin"}"#, "role Admin"),
        ("role", r#"{"role": null}"#, "a null role"),
        ("role", r#"{"role": 1}"#, "a numeric role"),
        ("role", "{}", "no role"),
        (
            "role",
            r#"{"role": "admin", "reason": "trust"}"#,
            "an unknown field",
        ),
        ("role", r#"{"role": "admin""#, "malformed JSON"),
        ("quota", "[null, null]", "a JSON array"),
        ("role", r#"["admin"]"#, "a JSON array"),
    ];
    for (what, body, case) in cases {
        refused(
            &app,
            &format!("{what}: {case}"),
            put_raw(&app, alice, what, body),
            400,
            "malformed-request",
        )
        .await;
    }
    for command in ["disable", "enable"] {
        refused(
            &app,
            &format!("{command} with an unknown field"),
            app.request(Method::POST, &format!("{ADMIN_USERS}/{alice}/{command}"))
                .header(CONTENT_TYPE, "application/json")
                .body(r#"{"reason": "spam"}"#),
            400,
            "malformed-request",
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn admin_endpoints_called_by_a_user_are_403_forbidden_and_write_nothing() {
    let app = spawn().await;
    let alice = app.sign_in_user("alice").await;
    let bob = app.create_local_user("bob", false).await.to_string();
    let me = alice.id.to_string();
    let admin = app.admin.id.to_string();
    for target in [me.as_str(), bob.as_str(), admin.as_str()] {
        for command in ADMIN_COMMANDS {
            refused(
                &app,
                &format!("alice: {command} of {target}"),
                admin_command(&app, &alice.token, target, command),
                403,
                "forbidden",
            )
            .await;
        }
    }
    refused(
        &app,
        "alice: list users",
        app.request_as(&alice.token, Method::GET, ADMIN_USERS),
        403,
        "forbidden",
    )
    .await;
    let response = send("alice: me", app.request_as(&alice.token, Method::GET, ME)).await;
    let me: Value = response.json().await.expect("a JSON answer");
    assert_eq!(me["role"], "user", "alice is still a user: {me}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// DELETE /api/v1/me/sessions/{id}
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn ending_an_unknown_non_uuid_or_foreign_session_is_a_404_and_writes_nothing() {
    let app = spawn().await;
    let alice = app.sign_in_user("alice").await;
    let bob = app.sign_in_user("bob").await;
    let unknown = Uuid::now_v7().to_string();
    let bobs = bob.session_id.to_string();
    let alices_account = alice.id.to_string();
    let cases = [
        ("an unknown session id", unknown.as_str()),
        ("a non-UUID id", "not-a-uuid"),
        ("a number", "12345"),
        ("another user's session", bobs.as_str()),
        ("the caller's account id", alices_account.as_str()),
    ];
    for (case, id) in cases {
        refused(
            &app,
            case,
            app.request_as(&alice.token, Method::DELETE, &format!("{MY_SESSIONS}/{id}")),
            404,
            "not-found",
        )
        .await;
    }
    assert_let_in(&app, "bob's session", &bearer(&bob), &bob).await;
    assert_let_in(&app, "alice's session", &bearer(&alice), &alice).await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Text PostgreSQL cannot store, oversized headers (issue 12)
// ---------------------------------------------------------------------------------------

/// [`refused`] as 400 `invalid-text` naming `field`.
async fn refused_text(app: &TestApp, case: &str, request: RequestBuilder, field: &str) {
    let problem = refused(app, case, request, 400, "invalid-text").await;
    assert_eq!(problem.body["field"], field, "{case}: {}", problem.body);
}

#[tokio::test]
async fn a_login_with_a_nul_in_the_username_or_password_is_a_400_invalid_text_and_writes_nothing() {
    let app = spawn().await;
    app.create_local_user("alice", false).await;
    let password = password_of("alice");
    let cases = [
        (
            "a NUL in the username",
            json!({"username": "alice\u{0}", "password": password}),
            "username",
        ),
        (
            "a NUL as the username",
            json!({"username": "\u{0}", "password": password}),
            "username",
        ),
        (
            "a NUL in the password",
            json!({"username": "alice", "password": format!("{password}\u{0}")}),
            "password",
        ),
        (
            "a NUL in a key",
            json!({"username": "alice", "password": password, "\u{0}": true}),
            "\\0",
        ),
    ];
    for (case, body, field) in cases {
        let request = post_raw(&app, LOGIN, Some("application/json"), &body.to_string());
        refused_text(&app, case, request, field).await;
    }
    let not_utf8 = b"{\"username\": \"alice\xff\", \"password\": \"x\"}".to_vec();
    refused(
        &app,
        "a username that is not UTF-8",
        app.http
            .post(app.url(LOGIN))
            .header(CONTENT_TYPE, "application/json")
            .body(not_utf8),
        400,
        "malformed-request",
    )
    .await;
    // The control: the same account signs in without the NUL.
    let response = app.login("alice", &password).await;
    assert_eq!(response.status(), 200, "alice signs in");
    app.stop().await;
}

#[tokio::test]
async fn a_nul_in_an_admin_command_or_a_session_or_pin_id_is_a_400_invalid_text() {
    let app = spawn().await;
    let alice = app.sign_in_user("alice").await;
    let cases = [
        (
            "a NUL in the role",
            put_raw(&app, alice.id, "role", r#"{"role": "admin\u0000"}"#),
            "role",
        ),
        (
            "a NUL in a quota key",
            put_raw(&app, alice.id, "quota", r#"{"mo\u0000vie": null}"#),
            "mo\\0vie",
        ),
        (
            "a NUL as the user id",
            app.request(Method::POST, &format!("{ADMIN_USERS}/%00/disable")),
            "path",
        ),
        (
            "a NUL in a session id",
            app.request(
                Method::DELETE,
                &format!("{MY_SESSIONS}/{}%00", alice.session_id),
            ),
            "path",
        ),
        ("a NUL as a PIN id", exchange(&app, "1%00"), "path"),
        (
            "a NUL in a query parameter",
            app.request(Method::GET, &format!("{MY_SESSIONS}?all=%00")),
            "all",
        ),
    ];
    for (case, request, field) in cases {
        refused_text(&app, case, request, field).await;
    }
    app.stop().await;
}

/// The `user_agent` of the caller's current session (`GET /api/v1/me/sessions`).
async fn current_user_agent(app: &TestApp, user: &TestUser) -> Value {
    let response = send(
        "my sessions",
        app.request_as(&user.token, Method::GET, MY_SESSIONS),
    )
    .await;
    let list: Value = response.json().await.expect("a JSON answer");
    let sessions = list["sessions"].as_array().expect("sessions");
    let current = sessions
        .iter()
        .find(|s| s["current"] == true)
        .unwrap_or_else(|| panic!("the current session in {list}"));
    current["user_agent"].clone()
}

#[tokio::test]
async fn a_user_agent_that_is_not_visible_ascii_is_dropped_and_the_sign_in_succeeds() {
    let app = spawn().await;
    app.create_local_user("alice", false).await;
    let body = json!({"username": "alice", "password": password_of("alice")}).to_string();
    let login = |user_agent: reqwest::header::HeaderValue| {
        post_raw(&app, LOGIN, Some("application/json"), &body)
            .header(reqwest::header::USER_AGENT, user_agent)
    };
    for (case, user_agent, stored) in [
        (
            "a user agent in UTF-8",
            "Fernseher über".as_bytes(),
            Value::Null,
        ),
        (
            "a user agent with a byte that is not UTF-8",
            b"TV \xff",
            Value::Null,
        ),
        (
            "an ASCII user agent",
            b"Mozilla/5.0 (TV)",
            json!("Mozilla/5.0 (TV)"),
        ),
    ] {
        let user_agent = reqwest::header::HeaderValue::from_bytes(user_agent).expect("obs-text");
        let response = send(case, login(user_agent)).await;
        assert_eq!(response.status(), 200, "{case}");
        let user = test_user(response.json().await.expect("a JSON answer"));
        assert_eq!(current_user_agent(&app, &user).await, stored, "{case}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_login_with_a_64_kib_user_agent_is_a_431_and_writes_nothing() {
    let app = spawn().await;
    app.create_local_user("alice", false).await;
    let body = json!({"username": "alice", "password": password_of("alice")}).to_string();
    let huge = "u".repeat(64 * 1024);
    for header in ["User-Agent", "X-Plex-Device-Name", "X-Forwarded-For"] {
        refused(
            &app,
            &format!("a 64 KiB {header}"),
            post_raw(&app, LOGIN, Some("application/json"), &body).header(header, huge.as_str()),
            431,
            "headers-too-large",
        )
        .await;
    }
    app.stop().await;
}
