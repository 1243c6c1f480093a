//! Given/when/then tests of the `user_account` aggregate: one test per transition and per
//! rejection (docs/design.md §3), the state `apply` leaves behind, then the wire shapes of events.

use cqrs_es::test::{AggregateResultValidator, TestFramework};
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::json;
use uuid::Uuid;

use super::{
    Quota, Quotas, SignInMethod, UserAccount, UserAccountCommand, UserAccountError,
    UserAccountEvent, MAX_QUOTA_DAYS, MAX_QUOTA_LIMIT,
};
use crate::media_request::MediaType;
use crate::{Actor, ActorId, Role, UserId};

/// The plex.tv id of the Plex account in the histories below.
const PLEX_ID: u64 = 9_876_543;
/// A well-formed argon2id PHC string.
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
const EMAIL: &str = "jane@example.com";
const AVATAR: &str = "https://plex.tv/users/0a1b2c/avatar?c=1700000000";

// ---------------------------------------------------------------------------------------------
// The cast.

/// The id of the account under test.
fn account_id() -> UserId {
    UserId::from(Uuid::from_u128(1))
}

/// The person the account belongs to, signed in as a member.
fn the_holder() -> Actor {
    Actor::user(account_id())
}

/// The person the account belongs to, signed in as an admin.
fn the_holder_as_admin() -> Actor {
    Actor::admin(account_id())
}

/// Another member of the household.
fn member() -> Actor {
    Actor::user(Uuid::from_u128(2))
}

fn admin() -> Actor {
    Actor::admin(Uuid::from_u128(3))
}

fn quota(limit: u32, days: u32) -> Quota {
    Quota::new(limit, days).expect("a valid quota")
}

fn quotas(movie: Option<Quota>, tv: Option<Quota>) -> Quotas {
    Quotas { movie, tv }
}

// ---------------------------------------------------------------------------------------------
// The framework and histories.

fn an_account() -> TestFramework<UserAccount> {
    TestFramework::with(super::UserAccountServices)
}

/// A member's Plex account with an e-mail address and an avatar.
fn a_plex_account() -> Vec<UserAccountEvent> {
    vec![registering_from_plex().recorded()]
}

/// A member's local account (no e-mail, no avatar).
fn a_local_account() -> Vec<UserAccountEvent> {
    vec![registering_locally().recorded()]
}

/// A Plex account registered with `role`.
fn a_plex_account_of(role: Role) -> Vec<UserAccountEvent> {
    vec![registering_from_plex().in_role(role).recorded()]
}

/// A member's Plex account an admin disabled.
fn a_disabled_account() -> Vec<UserAccountEvent> {
    let mut history = a_plex_account();
    history.push(disabled_by(admin()));
    history
}

/// The aggregate after `history`, for the tests that look at state rather than events.
fn state_after(history: Vec<UserAccountEvent>) -> UserAccount {
    let mut account = UserAccount::default();
    for event in history {
        account.apply(event);
    }
    account
}

// ---------------------------------------------------------------------------------------------
// Commands.

/// A `Register` being built.
struct Registration {
    plex_id: Option<u64>,
    username: String,
    email: Option<String>,
    avatar: Option<String>,
    role: Role,
    password_hash: Option<String>,
}

/// A member's first Plex sign-in, with e-mail and avatar.
fn registering_from_plex() -> Registration {
    Registration {
        plex_id: Some(PLEX_ID),
        username: "jane".to_string(),
        email: Some(EMAIL.to_string()),
        avatar: Some(AVATAR.to_string()),
        role: Role::User,
        password_hash: None,
    }
}

/// `medianest users create` of a member's local account, without e-mail or avatar.
fn registering_locally() -> Registration {
    Registration {
        plex_id: None,
        username: "jane.doe".to_string(),
        email: None,
        avatar: None,
        role: Role::User,
        password_hash: Some(HASH.to_string()),
    }
}

impl Registration {
    fn named(self, username: &str) -> Self {
        Self {
            username: username.to_string(),
            ..self
        }
    }

    fn with_email(self, email: &str) -> Self {
        Self {
            email: Some(email.to_string()),
            ..self
        }
    }

    fn with_avatar(self, avatar: &str) -> Self {
        Self {
            avatar: Some(avatar.to_string()),
            ..self
        }
    }

    fn in_role(self, role: Role) -> Self {
        Self { role, ..self }
    }

    fn with_plex_id(self, plex_id: Option<u64>) -> Self {
        Self { plex_id, ..self }
    }

    fn with_password_hash(self, hash: Option<&str>) -> Self {
        Self {
            password_hash: hash.map(str::to_string),
            ..self
        }
    }

    /// The event this registration records when nothing in it needs cleaning.
    fn recorded(&self) -> UserAccountEvent {
        UserAccountEvent::Registered {
            user_id: account_id(),
            plex_id: self.plex_id,
            username: self.username.clone(),
            email: self.email.clone(),
            avatar: self.avatar.clone(),
            role: self.role,
            password_hash: self.password_hash.clone(),
        }
    }
}

impl From<Registration> for UserAccountCommand {
    fn from(registration: Registration) -> Self {
        Self::Register {
            user_id: account_id(),
            plex_id: registration.plex_id,
            username: registration.username,
            email: registration.email,
            avatar: registration.avatar,
            role: registration.role,
            password_hash: registration.password_hash,
        }
    }
}

fn update_profile(
    username: Option<&str>,
    email: Option<&str>,
    avatar: Option<&str>,
) -> UserAccountCommand {
    UserAccountCommand::UpdateProfile {
        username: username.map(str::to_string),
        email: email.map(str::to_string),
        avatar: avatar.map(str::to_string),
    }
}

fn change_role(role: Role, by: Actor) -> UserAccountCommand {
    UserAccountCommand::ChangeRole { role, by }
}

fn change_quota(quotas: Quotas, by: Actor) -> UserAccountCommand {
    UserAccountCommand::ChangeQuota { quotas, by }
}

fn disable_by(by: Actor) -> UserAccountCommand {
    UserAccountCommand::Disable { by }
}

fn enable_by(by: Actor) -> UserAccountCommand {
    UserAccountCommand::Enable { by }
}

/// Every command but `Register`.
fn every_command_but_register() -> Vec<UserAccountCommand> {
    vec![
        update_profile(Some("jane"), None, None),
        change_role(Role::Admin, admin()),
        change_quota(quotas(Some(quota(5, 7)), None), admin()),
        disable_by(admin()),
        enable_by(admin()),
    ]
}

// ---------------------------------------------------------------------------------------------
// Events.

fn profile_updated(
    username: Option<&str>,
    email: Option<&str>,
    avatar: Option<&str>,
) -> UserAccountEvent {
    UserAccountEvent::ProfileUpdated {
        username: username.map(str::to_string),
        email: email.map(str::to_string),
        avatar: avatar.map(str::to_string),
    }
}

fn role_changed(role: Role, by: Actor) -> UserAccountEvent {
    UserAccountEvent::RoleChanged { role, by: by.id }
}

fn quota_changed(quotas: Quotas, by: Actor) -> UserAccountEvent {
    UserAccountEvent::QuotaChanged {
        movie: quotas.movie,
        tv: quotas.tv,
        by: by.id,
    }
}

fn disabled_by(by: Actor) -> UserAccountEvent {
    UserAccountEvent::Disabled { by: by.id }
}

fn enabled_by(by: Actor) -> UserAccountEvent {
    UserAccountEvent::Enabled { by: by.id }
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

impl ThenRejected for AggregateResultValidator<UserAccount> {
    fn then_expect_invalid(self, field: &str) {
        match self.inspect_result() {
            Err(UserAccountError::Invalid { field: named, .. }) => assert_eq!(named, field),
            other => panic!("expected an invalid {field}, got {other:?}"),
        }
    }

    fn then_expect_forbidden(self) {
        match self.inspect_result() {
            Err(UserAccountError::Forbidden(_)) => {}
            other => panic!("expected forbidden, got {other:?}"),
        }
    }
}

// =============================================================================================
// Register.

#[test]
fn a_plex_sign_in_registers_a_plex_account() {
    an_account()
        .given_no_previous_events()
        .when(registering_from_plex().into())
        .then_expect_events(vec![registering_from_plex().recorded()]);
}

#[test]
fn a_local_account_is_registered_with_its_argon2id_hash() {
    an_account()
        .given_no_previous_events()
        .when(registering_locally().in_role(Role::Admin).into())
        .then_expect_events(vec![UserAccountEvent::Registered {
            user_id: account_id(),
            plex_id: None,
            username: "jane.doe".to_string(),
            email: None,
            avatar: None,
            role: Role::Admin,
            password_hash: Some(HASH.to_string()),
        }]);
}

#[test]
fn a_registration_records_username_email_and_avatar_trimmed() {
    an_account()
        .given_no_previous_events()
        .when(
            registering_from_plex()
                .named("  Jane Doe \t")
                .with_email(" jane@example.com\n")
                .with_avatar("  https://plex.tv/users/0a1b2c/avatar?c=1700000000 ")
                .into(),
        )
        .then_expect_events(vec![registering_from_plex().named("Jane Doe").recorded()]);
}

#[test]
fn a_blank_email_and_avatar_are_recorded_as_none() {
    an_account()
        .given_no_previous_events()
        .when(
            registering_from_plex()
                .with_email("   ")
                .with_avatar("")
                .into(),
        )
        .then_expect_events(vec![UserAccountEvent::Registered {
            user_id: account_id(),
            plex_id: Some(PLEX_ID),
            username: "jane".to_string(),
            email: None,
            avatar: None,
            role: Role::User,
            password_hash: None,
        }]);
}

#[test]
fn registering_twice_is_rejected() {
    for history in [a_plex_account(), a_local_account(), a_disabled_account()] {
        an_account()
            .given(history)
            .when(registering_from_plex().into())
            .then_expect_error(UserAccountError::AlreadyRegistered);
    }
}

#[test]
fn a_registration_without_plex_id_or_password_hash_is_invalid() {
    an_account()
        .given_no_previous_events()
        .when(registering_from_plex().with_plex_id(None).into())
        .then_expect_invalid("plex_id");
}

#[test]
fn a_registration_with_both_plex_id_and_password_hash_is_invalid() {
    an_account()
        .given_no_previous_events()
        .when(
            registering_from_plex()
                .with_password_hash(Some(HASH))
                .into(),
        )
        .then_expect_invalid("plex_id");
}

#[test]
fn a_password_hash_that_is_not_argon2id_is_invalid() {
    let not_argon2id = [
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$L9ZpxGNVEXAMPLE",
        "$argon2d$v=19$m=16,t=2,p=1$c29tZXNhbHQ$L9ZpxGNVEXAMPLE",
        "hunter2",
        "",
        " $argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub",
    ];
    for hash in not_argon2id {
        an_account()
            .given_no_previous_events()
            .when(registering_locally().with_password_hash(Some(hash)).into())
            .then_expect_invalid("password_hash");
    }
}

#[test]
fn an_empty_username_is_invalid() {
    for username in ["", " \t\n "] {
        an_account()
            .given_no_previous_events()
            .when(registering_from_plex().named(username).into())
            .then_expect_invalid("username");
    }
}

#[test]
fn a_username_over_64_characters_is_invalid() {
    an_account()
        .given_no_previous_events()
        .when(registering_from_plex().named(&"j".repeat(65)).into())
        .then_expect_invalid("username");
    an_account()
        .given_no_previous_events()
        .when(registering_locally().named(&"j".repeat(65)).into())
        .then_expect_invalid("username");
}

#[test]
fn a_username_of_64_characters_is_accepted_however_many_bytes_they_take() {
    let username = "é".repeat(64);
    an_account()
        .given_no_previous_events()
        .when(registering_from_plex().named(&username).into())
        .then_expect_events(vec![registering_from_plex().named(&username).recorded()]);
}

#[test]
fn a_username_with_a_control_character_is_invalid() {
    for username in ["jane\ndoe", "jane\u{7}", "ja\u{0}ne", "jane\u{1b}[31m"] {
        an_account()
            .given_no_previous_events()
            .when(registering_from_plex().named(username).into())
            .then_expect_invalid("username");
    }
}

#[test]
fn a_local_username_with_characters_outside_letters_digits_dot_underscore_dash_is_invalid() {
    for username in [
        "jane doe",
        "jané",
        "jane@home",
        "jane/doe",
        "jane+1",
        "ジェーン",
    ] {
        an_account()
            .given_no_previous_events()
            .when(registering_locally().named(username).into())
            .then_expect_invalid("username");
    }
}

#[test]
fn a_local_username_of_letters_digits_dots_underscores_and_dashes_is_accepted() {
    an_account()
        .given_no_previous_events()
        .when(registering_locally().named("Jane_Doe-2.0").into())
        .then_expect_events(vec![registering_locally().named("Jane_Doe-2.0").recorded()]);
}

#[test]
fn a_plex_username_may_have_spaces_and_any_letters() {
    for username in ["Jane Doe", "Zoë Ångström", "ジェーン", "jane@home"] {
        an_account()
            .given_no_previous_events()
            .when(registering_from_plex().named(username).into())
            .then_expect_events(vec![registering_from_plex().named(username).recorded()]);
    }
}

#[test]
fn a_malformed_email_is_invalid() {
    for email in [
        "jane",
        "@example.com",
        "jane@",
        "@",
        "jane doe@example.com",
        "jane@exa\u{7}mple.com",
    ] {
        an_account()
            .given_no_previous_events()
            .when(registering_from_plex().with_email(email).into())
            .then_expect_invalid("email");
    }
}

#[test]
fn an_email_over_254_bytes_is_invalid() {
    let email = format!("{}@example.com", "j".repeat(243));
    assert_eq!(email.len(), 255);
    an_account()
        .given_no_previous_events()
        .when(registering_from_plex().with_email(&email).into())
        .then_expect_invalid("email");
}

#[test]
fn an_email_of_254_bytes_is_accepted() {
    let email = format!("{}@example.com", "j".repeat(242));
    assert_eq!(email.len(), 254);
    an_account()
        .given_no_previous_events()
        .when(registering_from_plex().with_email(&email).into())
        .then_expect_events(vec![registering_from_plex().with_email(&email).recorded()]);
}

#[test]
fn an_avatar_that_is_not_an_http_url_is_invalid() {
    for avatar in [
        "ftp://plex.tv/avatar.png",
        "javascript:alert(1)",
        "plex.tv/users/0a1b2c/avatar",
        "/users/0a1b2c/avatar",
        "data:image/png;base64,AAAA",
    ] {
        an_account()
            .given_no_previous_events()
            .when(registering_from_plex().with_avatar(avatar).into())
            .then_expect_invalid("avatar");
    }
}

#[test]
fn an_avatar_over_2048_bytes_is_invalid() {
    let avatar = format!(
        "https://plex.tv/{}",
        "a".repeat(2049 - "https://plex.tv/".len())
    );
    assert_eq!(avatar.len(), 2049);
    an_account()
        .given_no_previous_events()
        .when(registering_from_plex().with_avatar(&avatar).into())
        .then_expect_invalid("avatar");
}

#[test]
fn an_http_avatar_of_2048_bytes_is_accepted() {
    let avatar = format!(
        "http://plex.tv/{}",
        "a".repeat(2048 - "http://plex.tv/".len())
    );
    an_account()
        .given_no_previous_events()
        .when(registering_from_plex().with_avatar(&avatar).into())
        .then_expect_events(vec![registering_from_plex()
            .with_avatar(&avatar)
            .recorded()]);
}

// =============================================================================================
// Before registration.

#[test]
fn every_command_but_register_on_an_unregistered_account_is_not_found() {
    for command in every_command_but_register() {
        an_account()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(UserAccountError::NotFound);
    }
}

// =============================================================================================
// UpdateProfile.

#[test]
fn a_new_username_updates_only_the_username() {
    an_account()
        .given(a_plex_account())
        .when(update_profile(Some("Jane Doe"), Some(EMAIL), Some(AVATAR)))
        .then_expect_events(vec![profile_updated(Some("Jane Doe"), None, None)]);
}

#[test]
fn a_new_email_updates_only_the_email() {
    an_account()
        .given(a_plex_account())
        .when(update_profile(
            Some("jane"),
            Some("jane@plex.example"),
            Some(AVATAR),
        ))
        .then_expect_events(vec![profile_updated(None, Some("jane@plex.example"), None)]);
}

#[test]
fn a_new_avatar_updates_only_the_avatar() {
    let avatar = "https://plex.tv/users/0a1b2c/avatar?c=1800000000";
    an_account()
        .given(a_plex_account())
        .when(update_profile(None, None, Some(avatar)))
        .then_expect_events(vec![profile_updated(None, None, Some(avatar))]);
}

#[test]
fn every_changed_field_is_recorded_trimmed_in_one_event() {
    an_account()
        .given(a_plex_account())
        .when(update_profile(
            Some(" Jane D. "),
            Some(" jd@example.com "),
            Some(" http://avatars.example/jd.png "),
        ))
        .then_expect_events(vec![profile_updated(
            Some("Jane D."),
            Some("jd@example.com"),
            Some("http://avatars.example/jd.png"),
        )]);
}

#[test]
fn a_first_email_and_avatar_are_recorded_for_an_account_without_them() {
    an_account()
        .given(a_local_account())
        .when(update_profile(None, Some(EMAIL), Some(AVATAR)))
        .then_expect_events(vec![profile_updated(None, Some(EMAIL), Some(AVATAR))]);
}

#[test]
fn a_profile_update_that_changes_nothing_writes_nothing() {
    an_account()
        .given(a_plex_account())
        .when(update_profile(Some("jane"), Some(EMAIL), Some(AVATAR)))
        .then_expect_events(vec![]);
}

#[test]
fn a_profile_update_equal_after_trimming_writes_nothing() {
    an_account()
        .given(a_plex_account())
        .when(update_profile(
            Some("  jane "),
            Some(" jane@example.com"),
            Some(&format!("{AVATAR}\n")),
        ))
        .then_expect_events(vec![]);
}

#[test]
fn an_empty_profile_update_writes_nothing() {
    an_account()
        .given(a_plex_account())
        .when(update_profile(None, None, None))
        .then_expect_events(vec![]);
}

#[test]
fn a_blank_email_or_avatar_keeps_the_current_one() {
    an_account()
        .given(a_plex_account())
        .when(update_profile(None, Some("  "), Some("")))
        .then_expect_events(vec![]);
}

#[test]
fn a_profile_update_sees_the_previous_updates() {
    an_account()
        .given(a_plex_account())
        .and(vec![profile_updated(Some("Jane Doe"), None, None)])
        .when(update_profile(Some("Jane Doe"), Some(EMAIL), None))
        .then_expect_events(vec![]);
}

#[test]
fn a_profile_update_with_an_empty_username_is_invalid() {
    an_account()
        .given(a_plex_account())
        .when(update_profile(Some("   "), None, None))
        .then_expect_invalid("username");
}

#[test]
fn a_profile_update_with_a_malformed_email_is_invalid() {
    an_account()
        .given(a_plex_account())
        .when(update_profile(None, Some("jane.example.com"), None))
        .then_expect_invalid("email");
}

#[test]
fn a_profile_update_with_a_non_http_avatar_is_invalid() {
    an_account()
        .given(a_plex_account())
        .when(update_profile(None, None, Some("file:///etc/passwd")))
        .then_expect_invalid("avatar");
}

#[test]
fn a_local_accounts_new_username_follows_the_local_rule() {
    an_account()
        .given(a_local_account())
        .when(update_profile(Some("Jane Doe"), None, None))
        .then_expect_invalid("username");
    an_account()
        .given(a_local_account())
        .when(update_profile(Some("jane_doe"), None, None))
        .then_expect_events(vec![profile_updated(Some("jane_doe"), None, None)]);
}

// =============================================================================================
// ChangeRole.

#[test]
fn an_admin_makes_a_member_an_admin() {
    an_account()
        .given(a_plex_account())
        .when(change_role(Role::Admin, admin()))
        .then_expect_events(vec![role_changed(Role::Admin, admin())]);
}

#[test]
fn an_admin_makes_another_admin_a_member() {
    an_account()
        .given(a_plex_account_of(Role::Admin))
        .when(change_role(Role::User, admin()))
        .then_expect_events(vec![role_changed(Role::User, admin())]);
}

#[test]
fn giving_the_current_role_writes_nothing() {
    an_account()
        .given(a_plex_account())
        .when(change_role(Role::User, admin()))
        .then_expect_events(vec![]);
    an_account()
        .given(a_plex_account())
        .and(vec![role_changed(Role::Admin, admin())])
        .when(change_role(Role::Admin, admin()))
        .then_expect_events(vec![]);
}

#[test]
fn a_member_cannot_change_a_role() {
    an_account()
        .given(a_plex_account())
        .when(change_role(Role::Admin, member()))
        .then_expect_forbidden();
}

#[test]
fn a_member_cannot_make_themselves_an_admin() {
    an_account()
        .given(a_plex_account())
        .when(change_role(Role::Admin, the_holder()))
        .then_expect_forbidden();
}

#[test]
fn an_admin_cannot_change_their_own_role() {
    an_account()
        .given(a_plex_account_of(Role::Admin))
        .when(change_role(Role::User, the_holder_as_admin()))
        .then_expect_forbidden();
}

// =============================================================================================
// ChangeQuota.

#[test]
fn an_admin_sets_a_movie_quota() {
    let new = quotas(Some(quota(5, 7)), None);
    an_account()
        .given(a_plex_account())
        .when(change_quota(new, admin()))
        .then_expect_events(vec![quota_changed(new, admin())]);
}

#[test]
fn an_admin_sets_movie_and_tv_quotas() {
    let new = quotas(Some(quota(10, 30)), Some(quota(2, 14)));
    an_account()
        .given(a_plex_account())
        .when(change_quota(new, admin()))
        .then_expect_events(vec![quota_changed(new, admin())]);
}

#[test]
fn an_admin_resets_quotas_to_the_default() {
    an_account()
        .given(a_plex_account())
        .and(vec![quota_changed(
            quotas(Some(quota(5, 7)), Some(quota(2, 7))),
            admin(),
        )])
        .when(change_quota(Quotas::default(), admin()))
        .then_expect_events(vec![quota_changed(Quotas::default(), admin())]);
}

#[test]
fn the_extreme_quotas_are_accepted() {
    let new = quotas(
        Some(quota(1, 1)),
        Some(quota(MAX_QUOTA_LIMIT, MAX_QUOTA_DAYS)),
    );
    an_account()
        .given(a_plex_account())
        .when(change_quota(new, admin()))
        .then_expect_events(vec![quota_changed(new, admin())]);
}

#[test]
fn an_admin_may_set_their_own_quota() {
    let new = quotas(None, Some(quota(3, 7)));
    an_account()
        .given(a_plex_account_of(Role::Admin))
        .when(change_quota(new, the_holder_as_admin()))
        .then_expect_events(vec![quota_changed(new, the_holder_as_admin())]);
}

#[test]
fn setting_the_current_quotas_writes_nothing() {
    an_account()
        .given(a_plex_account())
        .when(change_quota(Quotas::default(), admin()))
        .then_expect_events(vec![]);
    let current = quotas(Some(quota(5, 7)), None);
    an_account()
        .given(a_plex_account())
        .and(vec![quota_changed(current, admin())])
        .when(change_quota(current, admin()))
        .then_expect_events(vec![]);
}

#[test]
fn a_quota_limit_of_zero_is_invalid() {
    an_account()
        .given(a_plex_account())
        .when(change_quota(
            quotas(Some(Quota { limit: 0, days: 7 }), None),
            admin(),
        ))
        .then_expect_invalid("limit");
}

#[test]
fn a_quota_limit_over_1000_is_invalid() {
    an_account()
        .given(a_plex_account())
        .when(change_quota(
            quotas(
                None,
                Some(Quota {
                    limit: 1001,
                    days: 7,
                }),
            ),
            admin(),
        ))
        .then_expect_invalid("limit");
}

#[test]
fn a_quota_window_of_zero_days_is_invalid() {
    an_account()
        .given(a_plex_account())
        .when(change_quota(
            quotas(Some(Quota { limit: 5, days: 0 }), None),
            admin(),
        ))
        .then_expect_invalid("days");
}

#[test]
fn a_quota_window_over_365_days_is_invalid() {
    an_account()
        .given(a_plex_account())
        .when(change_quota(
            quotas(
                Some(quota(5, 7)),
                Some(Quota {
                    limit: 5,
                    days: 366,
                }),
            ),
            admin(),
        ))
        .then_expect_invalid("days");
}

#[test]
fn a_member_cannot_change_a_quota() {
    an_account()
        .given(a_plex_account())
        .when(change_quota(quotas(Some(quota(50, 1)), None), member()))
        .then_expect_forbidden();
    an_account()
        .given(a_plex_account())
        .when(change_quota(quotas(Some(quota(50, 1)), None), the_holder()))
        .then_expect_forbidden();
}

#[test]
fn quota_new_names_the_field_out_of_range() {
    let field = |limit, days| match Quota::new(limit, days) {
        Err(UserAccountError::Invalid { field, .. }) => field,
        other => panic!("expected invalid, got {other:?}"),
    };
    assert_eq!(field(0, 7), "limit");
    assert_eq!(field(1001, 7), "limit");
    assert_eq!(field(5, 0), "days");
    assert_eq!(field(5, 366), "days");
    assert_eq!(
        Quota::new(1000, 365),
        Ok(Quota {
            limit: 1000,
            days: 365
        })
    );
}

#[test]
fn quotas_of_picks_the_media_types_quota() {
    let both = quotas(Some(quota(5, 7)), Some(quota(2, 14)));
    assert_eq!(both.of(MediaType::Movie), Some(quota(5, 7)));
    assert_eq!(both.of(MediaType::Tv), Some(quota(2, 14)));
    assert_eq!(Quotas::default().of(MediaType::Movie), None);
}

// =============================================================================================
// Disable and Enable.

#[test]
fn an_admin_disables_an_account() {
    an_account()
        .given(a_plex_account())
        .when(disable_by(admin()))
        .then_expect_events(vec![disabled_by(admin())]);
}

#[test]
fn disabling_a_disabled_account_writes_nothing() {
    an_account()
        .given(a_disabled_account())
        .when(disable_by(admin()))
        .then_expect_events(vec![]);
}

#[test]
fn an_account_enabled_again_can_be_disabled_again() {
    an_account()
        .given(a_disabled_account())
        .and(vec![enabled_by(admin())])
        .when(disable_by(admin()))
        .then_expect_events(vec![disabled_by(admin())]);
}

#[test]
fn an_admin_cannot_disable_their_own_account() {
    an_account()
        .given(a_plex_account_of(Role::Admin))
        .when(disable_by(the_holder_as_admin()))
        .then_expect_forbidden();
}

#[test]
fn a_member_cannot_disable_an_account() {
    an_account()
        .given(a_plex_account())
        .when(disable_by(member()))
        .then_expect_forbidden();
    an_account()
        .given(a_plex_account())
        .when(disable_by(the_holder()))
        .then_expect_forbidden();
}

#[test]
fn an_admin_enables_a_disabled_account() {
    an_account()
        .given(a_disabled_account())
        .when(enable_by(admin()))
        .then_expect_events(vec![enabled_by(admin())]);
}

#[test]
fn enabling_an_account_that_is_not_disabled_writes_nothing() {
    an_account()
        .given(a_plex_account())
        .when(enable_by(admin()))
        .then_expect_events(vec![]);
    an_account()
        .given(a_disabled_account())
        .and(vec![enabled_by(admin())])
        .when(enable_by(admin()))
        .then_expect_events(vec![]);
}

#[test]
fn a_member_cannot_enable_an_account() {
    an_account()
        .given(a_disabled_account())
        .when(enable_by(member()))
        .then_expect_forbidden();
    an_account()
        .given(a_disabled_account())
        .when(enable_by(the_holder()))
        .then_expect_forbidden();
}

// =============================================================================================
// State after a history.

#[test]
fn an_unregistered_account_has_no_state() {
    let account = UserAccount::default();
    assert!(!account.is_registered());
    assert_eq!(account.id(), None);
    assert_eq!(account.role(), None);
    assert_eq!(account.username(), None);
    assert_eq!(account.email(), None);
    assert_eq!(account.avatar(), None);
    assert_eq!(account.plex_id(), None);
    assert_eq!(account.password_hash(), None);
    assert_eq!(account.quotas(), Quotas::default());
    assert!(!account.is_disabled());
}

#[test]
fn a_registered_plex_account_holds_its_profile() {
    let account = state_after(a_plex_account());
    assert!(account.is_registered());
    assert_eq!(account.id(), Some(&ActorId::user(account_id())));
    assert_eq!(account.role(), Some(Role::User));
    assert_eq!(account.username(), Some("jane"));
    assert_eq!(account.email(), Some(EMAIL));
    assert_eq!(account.avatar(), Some(AVATAR));
    assert_eq!(account.plex_id(), Some(PLEX_ID));
    assert_eq!(account.password_hash(), None);
    assert_eq!(account.quotas(), Quotas::default());
    assert!(!account.is_disabled());
}

#[test]
fn a_registered_local_account_holds_its_password_hash() {
    let account = state_after(a_local_account());
    assert_eq!(account.username(), Some("jane.doe"));
    assert_eq!(account.password_hash(), Some(HASH));
    assert_eq!(account.plex_id(), None);
    assert_eq!(account.email(), None);
}

#[test]
fn a_profile_update_changes_only_the_fields_it_names() {
    let mut history = a_plex_account();
    history.push(profile_updated(Some("Jane Doe"), None, None));
    let account = state_after(history.clone());
    assert_eq!(account.username(), Some("Jane Doe"));
    assert_eq!(account.email(), Some(EMAIL));
    assert_eq!(account.avatar(), Some(AVATAR));

    history.push(profile_updated(
        None,
        Some("jd@example.com"),
        Some("http://a.example/x"),
    ));
    let account = state_after(history);
    assert_eq!(account.username(), Some("Jane Doe"));
    assert_eq!(account.email(), Some("jd@example.com"));
    assert_eq!(account.avatar(), Some("http://a.example/x"));
}

#[test]
fn a_role_change_changes_the_role() {
    let mut history = a_plex_account();
    history.push(role_changed(Role::Admin, admin()));
    assert_eq!(state_after(history.clone()).role(), Some(Role::Admin));
    history.push(role_changed(Role::User, admin()));
    assert_eq!(state_after(history).role(), Some(Role::User));
}

#[test]
fn a_quota_change_replaces_both_quotas() {
    let mut history = a_plex_account();
    history.push(quota_changed(
        quotas(Some(quota(5, 7)), Some(quota(2, 7))),
        admin(),
    ));
    assert_eq!(
        state_after(history.clone()).quotas(),
        quotas(Some(quota(5, 7)), Some(quota(2, 7)))
    );
    history.push(quota_changed(quotas(None, Some(quota(1, 30))), admin()));
    assert_eq!(
        state_after(history).quotas(),
        quotas(None, Some(quota(1, 30)))
    );
}

#[test]
fn disabling_and_enabling_toggle_is_disabled() {
    let mut history = a_disabled_account();
    assert!(state_after(history.clone()).is_disabled());
    history.push(enabled_by(admin()));
    let account = state_after(history);
    assert!(!account.is_disabled());
    assert_eq!(account.username(), Some("jane"));
}

#[test]
fn events_before_registration_change_nothing() {
    let account = state_after(vec![
        role_changed(Role::Admin, admin()),
        disabled_by(admin()),
    ]);
    assert_eq!(account, UserAccount::default());
}

// =============================================================================================
// Wire shapes.

/// Asserts `event` serialises to `wire`, decodes back from it, and is typed `type_name`
/// version `1.0`.
fn assert_wire_shape(event: &UserAccountEvent, type_name: &str, wire: serde_json::Value) {
    assert_eq!(event.type_name(), type_name);
    assert_eq!(event.event_type(), type_name);
    assert_eq!(event.event_version(), "1.0");
    assert_eq!(serde_json::to_value(event).unwrap(), wire);
    assert_eq!(
        &serde_json::from_value::<UserAccountEvent>(wire).unwrap(),
        event
    );
}

#[test]
fn a_plex_registration_serialises_as_registered_without_a_password_hash() {
    assert_wire_shape(
        &registering_from_plex().recorded(),
        "registered",
        json!({
            "registered": {
                "user_id": account_id(),
                "plex_id": PLEX_ID,
                "username": "jane",
                "email": EMAIL,
                "avatar": AVATAR,
                "role": "user",
            }
        }),
    );
}

#[test]
fn a_local_registration_serialises_with_its_hash_and_without_absent_fields() {
    assert_wire_shape(
        &registering_locally().in_role(Role::Admin).recorded(),
        "registered",
        json!({
            "registered": {
                "user_id": account_id(),
                "username": "jane.doe",
                "role": "admin",
                "password_hash": HASH,
            }
        }),
    );
}

#[test]
fn a_profile_update_serialises_as_profile_updated_with_only_the_changed_fields() {
    assert_wire_shape(
        &profile_updated(Some("Jane Doe"), None, None),
        "profile_updated",
        json!({"profile_updated": {"username": "Jane Doe"}}),
    );
    assert_wire_shape(
        &profile_updated(None, Some(EMAIL), Some(AVATAR)),
        "profile_updated",
        json!({"profile_updated": {"email": EMAIL, "avatar": AVATAR}}),
    );
}

#[test]
fn a_role_change_serialises_as_role_changed() {
    assert_wire_shape(
        &role_changed(Role::Admin, admin()),
        "role_changed",
        json!({"role_changed": {"role": "admin", "by": admin().id.to_string()}}),
    );
}

#[test]
fn a_quota_change_serialises_as_quota_changed_with_null_for_the_default() {
    assert_wire_shape(
        &quota_changed(quotas(Some(quota(5, 7)), None), admin()),
        "quota_changed",
        json!({
            "quota_changed": {
                "movie": {"limit": 5, "days": 7},
                "tv": null,
                "by": admin().id.to_string(),
            }
        }),
    );
}

#[test]
fn disabling_and_enabling_serialise_as_disabled_and_enabled() {
    assert_wire_shape(
        &disabled_by(admin()),
        "disabled",
        json!({"disabled": {"by": admin().id.to_string()}}),
    );
    assert_wire_shape(
        &enabled_by(admin()),
        "enabled",
        json!({"enabled": {"by": admin().id.to_string()}}),
    );
}

#[test]
fn an_event_with_an_unknown_field_does_not_decode() {
    let wire = json!({"disabled": {"by": admin().id.to_string(), "reason": "spam"}});
    assert!(serde_json::from_value::<UserAccountEvent>(wire).is_err());
    let wire = json!({"quota_changed": {
        "movie": {"limit": 5, "days": 7, "period": "week"}, "tv": null, "by": admin().id.to_string()
    }});
    assert!(serde_json::from_value::<UserAccountEvent>(wire).is_err());
}

#[test]
fn sign_in_methods_are_plex_and_local_on_the_wire() {
    for method in [SignInMethod::Plex, SignInMethod::Local] {
        assert_eq!(
            serde_json::to_value(method).unwrap(),
            json!(method.as_str())
        );
    }
    assert_eq!(SignInMethod::Plex.as_str(), "plex");
    assert_eq!(SignInMethod::Local.as_str(), "local");
}
