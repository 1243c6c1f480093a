//! Given/when/then tests of the `user_session` aggregate: one test per transition and per
//! rejection (docs/design.md §3), the state `apply` leaves behind, then the wire shapes of events.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::{AggregateResultValidator, TestFramework};
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::json;
use uuid::Uuid;

use super::{
    Device, RevokeReason, SessionStatus, UserSession, UserSessionCommand, UserSessionError,
    UserSessionEvent, UserSessionServices, REFRESH_INTERVAL,
};
use crate::user_account::SignInMethod;
use crate::{Actor, ActorId, Role, UserId};

/// SHA-256 of the token of the session below (lower-case hex).
const TOKEN_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const IP: &str = "203.0.113.7";
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0";

// ---------------------------------------------------------------------------------------------
// The cast, and the clock.

/// The id of the account the session belongs to.
fn user_id() -> UserId {
    UserId::from(Uuid::from_u128(1))
}

/// The session's user.
fn the_user() -> Actor {
    Actor::user(user_id())
}

/// Another member of the household.
fn another_user() -> Actor {
    Actor::user(Uuid::from_u128(2))
}

fn admin() -> Actor {
    Actor::admin(Uuid::from_u128(3))
}

/// The worker that revokes the sessions of a disabled account.
fn the_account_worker() -> Actor {
    Actor {
        id: ActorId::system("account-sessions"),
        role: Role::Admin,
    }
}

/// When the session started.
fn started_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

/// `minutes` after the session started.
fn minutes_in(minutes: i64) -> DateTime<Utc> {
    started_at() + Duration::minutes(minutes)
}

/// Sessions last 30 days unless used.
fn lifetime() -> Duration {
    Duration::days(30)
}

/// The expiry the session started with.
fn first_expiry() -> DateTime<Utc> {
    started_at() + lifetime()
}

fn a_browser() -> Device {
    Device {
        client_id: Some("b9c1e2d4-client".to_string()),
        product: Some("Plex Web".to_string()),
        name: Some("Jane's laptop".to_string()),
        platform: Some("Firefox".to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// The framework and histories.

fn a_session() -> TestFramework<UserSession> {
    TestFramework::with(UserSessionServices)
}

/// A session started by a Plex sign-in at `started_at()`, expiring after `lifetime()`.
fn an_active_session() -> Vec<UserSessionEvent> {
    vec![starting().recorded()]
}

fn a_revoked_session() -> Vec<UserSessionEvent> {
    let mut history = an_active_session();
    history.push(revoked_by(the_user(), RevokeReason::Logout));
    history
}

fn an_expired_session() -> Vec<UserSessionEvent> {
    let mut history = an_active_session();
    history.push(UserSessionEvent::Expired);
    history
}

/// The aggregate after `history`, for the tests that look at state rather than events.
fn state_after(history: Vec<UserSessionEvent>) -> UserSession {
    let mut session = UserSession::default();
    for event in history {
        session.apply(event);
    }
    session
}

// ---------------------------------------------------------------------------------------------
// Commands.

/// A `Start` being built: a Plex sign-in from `a_browser()` at `started_at()`.
struct Start {
    method: SignInMethod,
    device: Device,
    ip: Option<String>,
    user_agent: Option<String>,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    token_sha256: String,
}

fn starting() -> Start {
    Start {
        method: SignInMethod::Plex,
        device: a_browser(),
        ip: Some(IP.to_string()),
        user_agent: Some(USER_AGENT.to_string()),
        now: started_at(),
        expires_at: first_expiry(),
        token_sha256: TOKEN_SHA256.to_string(),
    }
}

impl Start {
    fn by(self, method: SignInMethod) -> Self {
        Self { method, ..self }
    }

    fn on_device(self, device: Device) -> Self {
        Self { device, ..self }
    }

    fn at_ip(self, ip: Option<&str>) -> Self {
        Self {
            ip: ip.map(str::to_string),
            ..self
        }
    }

    fn with_user_agent(self, user_agent: Option<&str>) -> Self {
        Self {
            user_agent: user_agent.map(str::to_string),
            ..self
        }
    }

    fn expiring_at(self, expires_at: DateTime<Utc>) -> Self {
        Self { expires_at, ..self }
    }

    fn with_token_sha256(self, token_sha256: &str) -> Self {
        Self {
            token_sha256: token_sha256.to_string(),
            ..self
        }
    }

    /// The event this start records when nothing in it needs cleaning.
    fn recorded(&self) -> UserSessionEvent {
        UserSessionEvent::Started {
            user_id: user_id(),
            method: self.method,
            device: self.device.clone(),
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            expires_at: self.expires_at,
            token_sha256: self.token_sha256.clone(),
        }
    }
}

impl From<Start> for UserSessionCommand {
    fn from(start: Start) -> Self {
        Self::Start {
            user_id: user_id(),
            method: start.method,
            device: start.device,
            ip: start.ip,
            user_agent: start.user_agent,
            now: start.now,
            expires_at: start.expires_at,
            token_sha256: start.token_sha256,
        }
    }
}

/// The session is used `minutes` after it started, and its expiry slides to a full lifetime
/// from then.
fn used_at(minutes: i64) -> UserSessionCommand {
    UserSessionCommand::Refresh {
        now: minutes_in(minutes),
        expires_at: minutes_in(minutes) + lifetime(),
    }
}

fn refresh(now: DateTime<Utc>, expires_at: DateTime<Utc>) -> UserSessionCommand {
    UserSessionCommand::Refresh { now, expires_at }
}

fn revoke_by(by: Actor, reason: RevokeReason) -> UserSessionCommand {
    UserSessionCommand::Revoke { by, reason }
}

fn expire_at(now: DateTime<Utc>) -> UserSessionCommand {
    UserSessionCommand::Expire { now }
}

/// Every command but `Start`.
fn every_command_but_start() -> Vec<UserSessionCommand> {
    vec![
        used_at(60),
        revoke_by(the_user(), RevokeReason::Logout),
        revoke_by(admin(), RevokeReason::Revoked),
        expire_at(first_expiry()),
    ]
}

// ---------------------------------------------------------------------------------------------
// Events.

fn refreshed_until(expires_at: DateTime<Utc>) -> UserSessionEvent {
    UserSessionEvent::Refreshed { expires_at }
}

fn revoked_by(by: Actor, reason: RevokeReason) -> UserSessionEvent {
    UserSessionEvent::Revoked { by: by.id, reason }
}

// ---------------------------------------------------------------------------------------------
// Expected rejections.

/// Rejections whose exact message is not the point of the test.
trait ThenRejected {
    /// Expects `Invalid` naming `field`.
    fn then_expect_invalid(self, field: &str);
    /// Expects `Forbidden`, whatever the explanation.
    fn then_expect_forbidden(self);
}

impl ThenRejected for AggregateResultValidator<UserSession> {
    fn then_expect_invalid(self, field: &str) {
        match self.inspect_result() {
            Err(UserSessionError::Invalid { field: named, .. }) => assert_eq!(named, field),
            other => panic!("expected an invalid {field}, got {other:?}"),
        }
    }

    fn then_expect_forbidden(self) {
        match self.inspect_result() {
            Err(UserSessionError::Forbidden(_)) => {}
            other => panic!("expected forbidden, got {other:?}"),
        }
    }
}

// =============================================================================================
// Start.

#[test]
fn a_plex_sign_in_starts_a_session() {
    a_session()
        .given_no_previous_events()
        .when(starting().into())
        .then_expect_events(vec![starting().recorded()]);
}

#[test]
fn a_local_sign_in_without_device_ip_or_user_agent_starts_a_session() {
    let start = || {
        starting()
            .by(SignInMethod::Local)
            .on_device(Device::default())
            .at_ip(None)
            .with_user_agent(None)
    };
    a_session()
        .given_no_previous_events()
        .when(start().into())
        .then_expect_events(vec![start().recorded()]);
}

#[test]
fn the_device_fields_are_trimmed_and_blank_ones_dropped() {
    a_session()
        .given_no_previous_events()
        .when(
            starting()
                .on_device(Device {
                    client_id: Some("  b9c1e2d4-client\n".to_string()),
                    product: Some(" Plex Web ".to_string()),
                    name: Some(" \t ".to_string()),
                    platform: Some(String::new()),
                })
                .into(),
        )
        .then_expect_events(vec![starting()
            .on_device(Device {
                client_id: Some("b9c1e2d4-client".to_string()),
                product: Some("Plex Web".to_string()),
                name: None,
                platform: None,
            })
            .recorded()]);
}

#[test]
fn the_device_fields_are_clipped_to_200_characters() {
    let long = "é".repeat(250);
    let clipped = "é".repeat(200);
    a_session()
        .given_no_previous_events()
        .when(
            starting()
                .on_device(Device {
                    client_id: Some(long.clone()),
                    product: Some(long.clone()),
                    name: Some(long.clone()),
                    platform: Some(format!("  {long}")),
                })
                .into(),
        )
        .then_expect_events(vec![starting()
            .on_device(Device {
                client_id: Some(clipped.clone()),
                product: Some(clipped.clone()),
                name: Some(clipped.clone()),
                platform: Some(clipped),
            })
            .recorded()]);
}

#[test]
fn the_ip_is_trimmed_and_clipped_to_64_characters() {
    a_session()
        .given_no_previous_events()
        .when(
            starting()
                .at_ip(Some(&format!(" {} ", "1".repeat(70))))
                .into(),
        )
        .then_expect_events(vec![starting().at_ip(Some(&"1".repeat(64))).recorded()]);
    a_session()
        .given_no_previous_events()
        .when(starting().at_ip(Some("  ")).into())
        .then_expect_events(vec![starting().at_ip(None).recorded()]);
}

#[test]
fn the_user_agent_is_trimmed_and_clipped_to_512_characters() {
    a_session()
        .given_no_previous_events()
        .when(
            starting()
                .with_user_agent(Some(&format!("\t{}", "u".repeat(600))))
                .into(),
        )
        .then_expect_events(vec![starting()
            .with_user_agent(Some(&"u".repeat(512)))
            .recorded()]);
    a_session()
        .given_no_previous_events()
        .when(starting().with_user_agent(Some("")).into())
        .then_expect_events(vec![starting().with_user_agent(None).recorded()]);
}

#[test]
fn starting_a_started_session_is_rejected() {
    for history in [
        an_active_session(),
        a_revoked_session(),
        an_expired_session(),
    ] {
        a_session()
            .given(history)
            .when(starting().into())
            .then_expect_error(UserSessionError::AlreadyStarted);
    }
}

#[test]
fn an_expiry_that_is_not_after_now_is_invalid() {
    for expires_at in [started_at(), started_at() - Duration::seconds(1)] {
        a_session()
            .given_no_previous_events()
            .when(starting().expiring_at(expires_at).into())
            .then_expect_invalid("expires_at");
    }
}

#[test]
fn an_expiry_a_second_after_now_is_accepted() {
    let expires_at = started_at() + Duration::seconds(1);
    a_session()
        .given_no_previous_events()
        .when(starting().expiring_at(expires_at).into())
        .then_expect_events(vec![starting().expiring_at(expires_at).recorded()]);
}

#[test]
fn a_token_hash_that_is_not_64_lower_case_hex_characters_is_invalid() {
    let not_hashes = [
        String::new(),
        TOKEN_SHA256[..63].to_string(),
        format!("{TOKEN_SHA256}0"),
        TOKEN_SHA256.to_uppercase(),
        format!("g{}", &TOKEN_SHA256[1..]),
        format!(" {}", &TOKEN_SHA256[1..]),
        "é".repeat(32),
    ];
    for hash in not_hashes {
        a_session()
            .given_no_previous_events()
            .when(starting().with_token_sha256(&hash).into())
            .then_expect_invalid("token_sha256");
    }
}

// =============================================================================================
// Before Start.

#[test]
fn every_command_but_start_on_an_unstarted_session_is_not_found() {
    for command in every_command_but_start() {
        a_session()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(UserSessionError::NotFound);
    }
}

// =============================================================================================
// Refresh.

#[test]
fn a_use_an_hour_after_the_start_extends_the_expiry() {
    a_session()
        .given(an_active_session())
        .when(used_at(60))
        .then_expect_events(vec![refreshed_until(minutes_in(60) + lifetime())]);
}

#[test]
fn a_use_within_the_hour_writes_nothing() {
    for minutes in [0, 1, 59] {
        a_session()
            .given(an_active_session())
            .when(used_at(minutes))
            .then_expect_events(vec![]);
    }
    a_session()
        .given(an_active_session())
        .when(refresh(
            minutes_in(59),
            first_expiry() + REFRESH_INTERVAL - Duration::seconds(1),
        ))
        .then_expect_events(vec![]);
}

#[test]
fn the_hour_counts_from_the_last_refresh() {
    let refreshed_at_90 = refreshed_until(minutes_in(90) + lifetime());
    a_session()
        .given(an_active_session())
        .and(vec![refreshed_at_90.clone()])
        .when(used_at(149))
        .then_expect_events(vec![]);
    a_session()
        .given(an_active_session())
        .and(vec![refreshed_at_90])
        .when(used_at(150))
        .then_expect_events(vec![refreshed_until(minutes_in(150) + lifetime())]);
}

#[test]
fn an_earlier_expiry_writes_nothing() {
    a_session()
        .given(an_active_session())
        .when(refresh(minutes_in(120), first_expiry() - Duration::days(1)))
        .then_expect_events(vec![]);
}

#[test]
fn a_session_used_every_ten_minutes_for_five_hours_is_refreshed_once_an_hour() {
    let mut history = an_active_session();
    let mut refreshes = Vec::new();
    for minutes in (10..=300).step_by(10) {
        let written = a_session()
            .given(history.clone())
            .when(used_at(minutes))
            .inspect_result()
            .expect("an active session can be used");
        if !written.is_empty() {
            refreshes.push(minutes);
        }
        history.extend(written);
    }
    assert_eq!(refreshes, vec![60, 120, 180, 240, 300]);
    assert_eq!(
        state_after(history).expires_at(),
        Some(minutes_in(300) + lifetime())
    );
}

#[test]
fn refreshing_a_revoked_session_is_rejected() {
    a_session()
        .given(a_revoked_session())
        .when(used_at(120))
        .then_expect_error(UserSessionError::Ended("revoked"));
}

#[test]
fn refreshing_an_expired_session_is_rejected() {
    a_session()
        .given(an_expired_session())
        .when(refresh(
            first_expiry() + Duration::hours(1),
            first_expiry() + lifetime(),
        ))
        .then_expect_error(UserSessionError::Ended("expired"));
}

/// A session whose expiry has passed is over even before the expirer records it: its token
/// no longer works, and the error says it has expired.
#[test]
fn refreshing_a_session_past_its_expiry_is_rejected_as_expired() {
    for now in [first_expiry(), first_expiry() + Duration::minutes(1)] {
        a_session()
            .given(an_active_session())
            .when(refresh(now, now + lifetime()))
            .then_expect_error(UserSessionError::Ended("expired"));
    }
}

#[test]
fn refreshing_a_session_past_its_expiry_is_rejected_as_ended() {
    // The variant, whatever its detail: the token of such a session must not be revived.
    let result = a_session()
        .given(an_active_session())
        .when(refresh(first_expiry(), first_expiry() + lifetime()))
        .inspect_result();
    assert!(
        matches!(result, Err(UserSessionError::Ended(_))),
        "{result:?}"
    );
}

// =============================================================================================
// Revoke.

#[test]
fn the_user_logs_out_of_their_session() {
    a_session()
        .given(an_active_session())
        .when(revoke_by(the_user(), RevokeReason::Logout))
        .then_expect_events(vec![revoked_by(the_user(), RevokeReason::Logout)]);
}

#[test]
fn the_user_revokes_their_session_from_the_sessions_list() {
    a_session()
        .given(an_active_session())
        .and(vec![refreshed_until(minutes_in(60) + lifetime())])
        .when(revoke_by(the_user(), RevokeReason::Revoked))
        .then_expect_events(vec![revoked_by(the_user(), RevokeReason::Revoked)]);
}

#[test]
fn an_admin_revokes_a_users_session() {
    a_session()
        .given(an_active_session())
        .when(revoke_by(admin(), RevokeReason::Revoked))
        .then_expect_events(vec![revoked_by(admin(), RevokeReason::Revoked)]);
}

#[test]
fn the_sessions_of_a_disabled_account_are_revoked_by_a_system_admin() {
    a_session()
        .given(an_active_session())
        .when(revoke_by(
            the_account_worker(),
            RevokeReason::AccountDisabled,
        ))
        .then_expect_events(vec![revoked_by(
            the_account_worker(),
            RevokeReason::AccountDisabled,
        )]);
}

#[test]
fn another_user_cannot_revoke_a_session() {
    a_session()
        .given(an_active_session())
        .when(revoke_by(another_user(), RevokeReason::Revoked))
        .then_expect_forbidden();
    a_session()
        .given(a_revoked_session())
        .when(revoke_by(another_user(), RevokeReason::Logout))
        .then_expect_forbidden();
}

#[test]
fn revoking_a_revoked_session_writes_nothing() {
    a_session()
        .given(a_revoked_session())
        .when(revoke_by(the_user(), RevokeReason::Logout))
        .then_expect_events(vec![]);
    a_session()
        .given(a_revoked_session())
        .when(revoke_by(admin(), RevokeReason::Revoked))
        .then_expect_events(vec![]);
}

#[test]
fn revoking_an_expired_session_writes_nothing() {
    a_session()
        .given(an_expired_session())
        .when(revoke_by(the_user(), RevokeReason::Logout))
        .then_expect_events(vec![]);
    a_session()
        .given(an_expired_session())
        .when(revoke_by(admin(), RevokeReason::AccountDisabled))
        .then_expect_events(vec![]);
}

// =============================================================================================
// Expire.

#[test]
fn a_session_is_expired_at_its_expiry() {
    a_session()
        .given(an_active_session())
        .when(expire_at(first_expiry()))
        .then_expect_events(vec![UserSessionEvent::Expired]);
}

#[test]
fn a_session_is_expired_after_its_expiry() {
    a_session()
        .given(an_active_session())
        .when(expire_at(first_expiry() + Duration::days(3)))
        .then_expect_events(vec![UserSessionEvent::Expired]);
}

#[test]
fn a_session_before_its_expiry_is_not_expired() {
    a_session()
        .given(an_active_session())
        .when(expire_at(first_expiry() - Duration::seconds(1)))
        .then_expect_error(UserSessionError::NotExpired(first_expiry()));
}

#[test]
fn a_refreshed_session_expires_at_its_new_expiry() {
    let new_expiry = minutes_in(60) + lifetime();
    a_session()
        .given(an_active_session())
        .and(vec![refreshed_until(new_expiry)])
        .when(expire_at(first_expiry()))
        .then_expect_error(UserSessionError::NotExpired(new_expiry));
    a_session()
        .given(an_active_session())
        .and(vec![refreshed_until(new_expiry)])
        .when(expire_at(new_expiry))
        .then_expect_events(vec![UserSessionEvent::Expired]);
}

#[test]
fn expiring_an_ended_session_writes_nothing() {
    for history in [a_revoked_session(), an_expired_session()] {
        a_session()
            .given(history.clone())
            .when(expire_at(first_expiry()))
            .then_expect_events(vec![]);
        a_session()
            .given(history)
            .when(expire_at(started_at()))
            .then_expect_events(vec![]);
    }
}

// =============================================================================================
// State after a history.

#[test]
fn an_unstarted_session_has_no_state() {
    let session = UserSession::default();
    assert_eq!(session.user_id(), None);
    assert_eq!(session.status(), None);
    assert_eq!(session.expires_at(), None);
}

#[test]
fn a_started_session_is_active_until_its_first_expiry() {
    let session = state_after(an_active_session());
    assert_eq!(session.user_id(), Some(user_id()));
    assert_eq!(session.status(), Some(SessionStatus::Active));
    assert_eq!(session.expires_at(), Some(first_expiry()));
}

#[test]
fn a_refresh_moves_the_expiry() {
    let mut history = an_active_session();
    history.push(refreshed_until(minutes_in(60) + lifetime()));
    let session = state_after(history);
    assert_eq!(session.status(), Some(SessionStatus::Active));
    assert_eq!(session.expires_at(), Some(minutes_in(60) + lifetime()));
}

#[test]
fn a_revoked_session_is_revoked() {
    let session = state_after(a_revoked_session());
    assert_eq!(session.status(), Some(SessionStatus::Revoked));
    assert_eq!(session.user_id(), Some(user_id()));
    assert_eq!(session.expires_at(), Some(first_expiry()));
}

#[test]
fn an_expired_session_is_expired() {
    let session = state_after(an_expired_session());
    assert_eq!(session.status(), Some(SessionStatus::Expired));
    assert_eq!(session.expires_at(), Some(first_expiry()));
}

#[test]
fn events_before_the_start_change_nothing() {
    let session = state_after(vec![
        refreshed_until(first_expiry()),
        revoked_by(admin(), RevokeReason::Revoked),
        UserSessionEvent::Expired,
    ]);
    assert_eq!(session, UserSession::default());
}

// =============================================================================================
// Wire shapes.

/// Asserts `event` serialises to `wire`, decodes back from it, and is typed `type_name`
/// version `1.0`.
fn assert_wire_shape(event: &UserSessionEvent, type_name: &str, wire: serde_json::Value) {
    assert_eq!(event.type_name(), type_name);
    assert_eq!(event.event_type(), type_name);
    assert_eq!(event.event_version(), "1.0");
    assert_eq!(serde_json::to_value(event).unwrap(), wire);
    assert_eq!(
        &serde_json::from_value::<UserSessionEvent>(wire).unwrap(),
        event
    );
}

#[test]
fn a_start_serialises_as_started_with_every_field() {
    assert_wire_shape(
        &starting().recorded(),
        "started",
        json!({
            "started": {
                "user_id": user_id(),
                "method": "plex",
                "device": {
                    "client_id": "b9c1e2d4-client",
                    "product": "Plex Web",
                    "name": "Jane's laptop",
                    "platform": "Firefox",
                },
                "ip": IP,
                "user_agent": USER_AGENT,
                "expires_at": "2025-03-31T12:00:00Z",
                "token_sha256": TOKEN_SHA256,
            }
        }),
    );
}

#[test]
fn a_start_without_device_ip_or_user_agent_omits_them() {
    assert_wire_shape(
        &starting()
            .by(SignInMethod::Local)
            .on_device(Device::default())
            .at_ip(None)
            .with_user_agent(None)
            .recorded(),
        "started",
        json!({
            "started": {
                "user_id": user_id(),
                "method": "local",
                "device": {},
                "expires_at": "2025-03-31T12:00:00Z",
                "token_sha256": TOKEN_SHA256,
            }
        }),
    );
}

#[test]
fn a_refresh_serialises_as_refreshed() {
    assert_wire_shape(
        &refreshed_until(minutes_in(90) + lifetime()),
        "refreshed",
        json!({"refreshed": {"expires_at": "2025-03-31T13:30:00Z"}}),
    );
}

#[test]
fn a_revocation_serialises_as_revoked_with_a_snake_case_reason() {
    assert_wire_shape(
        &revoked_by(admin(), RevokeReason::AccountDisabled),
        "revoked",
        json!({"revoked": {"by": admin().id.to_string(), "reason": "account_disabled"}}),
    );
    assert_wire_shape(
        &revoked_by(the_user(), RevokeReason::Logout),
        "revoked",
        json!({"revoked": {"by": the_user().id.to_string(), "reason": "logout"}}),
    );
}

#[test]
fn an_expiry_serialises_as_a_bare_string() {
    assert_wire_shape(&UserSessionEvent::Expired, "expired", json!("expired"));
}

#[test]
fn an_event_with_an_unknown_field_does_not_decode() {
    let wire =
        json!({"refreshed": {"expires_at": "2025-03-31T13:30:00Z", "by": admin().id.to_string()}});
    assert!(serde_json::from_value::<UserSessionEvent>(wire).is_err());
    let mut started = serde_json::to_value(starting().recorded()).unwrap();
    started["started"]["device"]["serial"] = json!("123");
    assert!(serde_json::from_value::<UserSessionEvent>(started).is_err());
}

#[test]
fn statuses_and_reasons_serialise_as_their_wire_names() {
    for status in [
        SessionStatus::Active,
        SessionStatus::Revoked,
        SessionStatus::Expired,
    ] {
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            json!(status.as_str())
        );
    }
    for reason in [
        RevokeReason::Logout,
        RevokeReason::Revoked,
        RevokeReason::AccountDisabled,
    ] {
        assert_eq!(
            serde_json::to_value(reason).unwrap(),
            json!(reason.as_str())
        );
    }
}
