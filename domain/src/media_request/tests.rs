//! Given/when/then tests of the `media_request` aggregate: one test per transition and per
//! rejection (docs/design.md §3), then the wire shapes of statuses, policies and events.

use cqrs_es::test::{AggregateResultValidator, TestFramework};
use cqrs_es::Aggregate;
use serde_json::json;
use uuid::Uuid;

use super::{
    AutoApprovePolicy, Media, MediaRequest, MediaRequestCommand, MediaRequestError,
    MediaRequestEvent, MediaRequestServices, MediaType, RequestStatus as Status, Seasons, Source,
    TmdbId,
};
use crate::public::{public_data, PublicFormError};
use crate::Actor;

/// The Overseerr request id the forwarder recorded in the histories below.
const OVERSEERR_ID: u64 = 42;

// ---------------------------------------------------------------------------------------------
// The cast.

fn member() -> Actor {
    Actor::user(Uuid::from_u128(1))
}

fn another_member() -> Actor {
    Actor::user(Uuid::from_u128(2))
}

fn admin() -> Actor {
    Actor::admin(Uuid::from_u128(3))
}

fn a_movie() -> Media {
    Media {
        media_type: MediaType::Movie,
        tmdb_id: TmdbId::new(603).expect("603 is a valid tmdb id"),
        tvdb_id: None,
        title: "The Matrix".to_string(),
        year: Some(1999),
    }
}

fn a_show() -> Media {
    Media {
        media_type: MediaType::Tv,
        tmdb_id: TmdbId::new(1399).expect("1399 is a valid tmdb id"),
        tvdb_id: Some(121_361),
        title: "Game of Thrones".to_string(),
        year: Some(2011),
    }
}

fn a_movie_titled(title: &str) -> Media {
    Media {
        title: title.to_string(),
        ..a_movie()
    }
}

fn a_movie_from(year: u16) -> Media {
    Media {
        year: Some(year),
        ..a_movie()
    }
}

fn seasons(numbers: &[u32]) -> Seasons {
    Seasons::List(numbers.to_vec())
}

// ---------------------------------------------------------------------------------------------
// The framework, under an auto-approval policy.

fn with_auto_approval(policy: AutoApprovePolicy) -> TestFramework<MediaRequest> {
    TestFramework::with(MediaRequestServices {
        auto_approve: policy,
    })
}

/// The aggregate under the default policy (admins' requests are approved on submit).
fn a_media_request() -> TestFramework<MediaRequest> {
    with_auto_approval(AutoApprovePolicy::default())
}

/// The history of a member's request for seasons 1 and 2 of a show that reached `status` by
/// the usual road.
fn a_request_that_is(status: Status) -> Vec<MediaRequestEvent> {
    let with = |before: Status, event: MediaRequestEvent| {
        let mut history = a_request_that_is(before);
        history.push(event);
        history
    };
    match status {
        Status::Pending => vec![submitted_by(member())],
        Status::Approved => with(Status::Pending, approved_by(admin())),
        Status::Declined => with(Status::Pending, declined_by(admin(), None)),
        Status::Cancelled => with(Status::Pending, cancelled_by(member())),
        Status::Forwarded => with(Status::Approved, forwarded_as(OVERSEERR_ID)),
        Status::Processing => with(Status::Forwarded, MediaRequestEvent::Processing),
        Status::PartiallyAvailable => with(Status::Processing, partially_available(&[1])),
        Status::Available => with(Status::PartiallyAvailable, available()),
        Status::Failed => with(Status::Forwarded, failed()),
    }
}

/// The aggregate after `history`, for the few tests that look at state rather than events.
fn state_after(history: Vec<MediaRequestEvent>) -> MediaRequest {
    let mut request = MediaRequest::default();
    for event in history {
        request.apply(event);
    }
    request
}

// ---------------------------------------------------------------------------------------------
// Commands.

/// A `Submit` being built: by `member()`, without seasons, note or 4K unless told otherwise.
struct Submission {
    requested_by: Actor,
    media: Media,
    seasons: Option<Seasons>,
    is_4k: bool,
    note: Option<String>,
}

fn submitting(media: Media) -> Submission {
    Submission {
        requested_by: member(),
        media,
        seasons: None,
        is_4k: false,
        note: None,
    }
}

impl Submission {
    fn by(self, requested_by: Actor) -> Self {
        Self {
            requested_by,
            ..self
        }
    }

    fn for_seasons(self, seasons: Seasons) -> Self {
        Self {
            seasons: Some(seasons),
            ..self
        }
    }

    fn in_4k(self) -> Self {
        Self {
            is_4k: true,
            ..self
        }
    }

    fn with_note(self, note: &str) -> Self {
        Self {
            note: Some(note.to_string()),
            ..self
        }
    }
}

impl From<Submission> for MediaRequestCommand {
    fn from(submission: Submission) -> Self {
        Self::Submit {
            requested_by: submission.requested_by,
            media: submission.media,
            seasons: submission.seasons,
            is_4k: submission.is_4k,
            note: submission.note,
        }
    }
}

fn approve_by(by: Actor) -> MediaRequestCommand {
    MediaRequestCommand::Approve { by }
}

fn decline_by(by: Actor, reason: Option<&str>) -> MediaRequestCommand {
    MediaRequestCommand::Decline {
        by,
        reason: reason.map(str::to_string),
    }
}

fn cancel_by(by: Actor) -> MediaRequestCommand {
    MediaRequestCommand::Cancel { by, reason: None }
}

fn retry_by(by: Actor) -> MediaRequestCommand {
    MediaRequestCommand::Retry { by }
}

fn record_forwarded(overseerr_request_id: u64) -> MediaRequestCommand {
    MediaRequestCommand::RecordForwarded {
        overseerr_request_id,
    }
}

fn record_forward_failed() -> MediaRequestCommand {
    MediaRequestCommand::RecordForwardFailed {
        attempt: 5,
        error: "overseerr answered 503".to_string(),
        retryable: true,
    }
}

fn record_processing() -> MediaRequestCommand {
    MediaRequestCommand::RecordProcessing
}

fn record_partially_available(seasons: &[u32]) -> MediaRequestCommand {
    MediaRequestCommand::RecordPartiallyAvailable {
        seasons: seasons.to_vec(),
    }
}

fn record_available() -> MediaRequestCommand {
    MediaRequestCommand::RecordAvailable {
        plex_rating_key: Some("5d776".to_string()),
        source: Source::Plex,
    }
}

fn record_failed() -> MediaRequestCommand {
    MediaRequestCommand::RecordFailed {
        reason: "no release found".to_string(),
        source: Source::Overseerr,
    }
}

/// Every command but `Submit`.
fn every_command_but_submit() -> Vec<MediaRequestCommand> {
    vec![
        approve_by(admin()),
        decline_by(admin(), None),
        cancel_by(admin()),
        record_forwarded(OVERSEERR_ID),
        record_forward_failed(),
        record_processing(),
        record_partially_available(&[1]),
        record_available(),
        record_failed(),
        retry_by(admin()),
    ]
}

// ---------------------------------------------------------------------------------------------
// Events.

fn submitted(requested_by: Actor, media: Media, seasons: Option<Seasons>) -> MediaRequestEvent {
    MediaRequestEvent::Submitted {
        requested_by: requested_by.id,
        media,
        seasons,
        is_4k: false,
        note: None,
    }
}

/// A show, seasons 1 and 2, submitted by `requested_by`.
fn submitted_by(requested_by: Actor) -> MediaRequestEvent {
    submitted(requested_by, a_show(), Some(seasons(&[1, 2])))
}

fn approved_by(by: Actor) -> MediaRequestEvent {
    MediaRequestEvent::Approved {
        by: by.id,
        auto: false,
    }
}

fn auto_approved_for(requester: Actor) -> MediaRequestEvent {
    MediaRequestEvent::Approved {
        by: requester.id,
        auto: true,
    }
}

fn declined_by(by: Actor, reason: Option<&str>) -> MediaRequestEvent {
    MediaRequestEvent::Declined {
        by: by.id,
        reason: reason.map(str::to_string),
    }
}

fn cancelled_by(by: Actor) -> MediaRequestEvent {
    MediaRequestEvent::Cancelled {
        by: by.id,
        reason: None,
    }
}

fn forwarded_as(overseerr_request_id: u64) -> MediaRequestEvent {
    MediaRequestEvent::Forwarded {
        overseerr_request_id,
    }
}

fn forward_failed() -> MediaRequestEvent {
    MediaRequestEvent::ForwardFailed {
        attempt: 5,
        error: "overseerr answered 503".to_string(),
        retryable: true,
    }
}

fn partially_available(seasons: &[u32]) -> MediaRequestEvent {
    MediaRequestEvent::PartiallyAvailable {
        seasons: seasons.to_vec(),
    }
}

fn available() -> MediaRequestEvent {
    MediaRequestEvent::Available {
        plex_rating_key: Some("5d776".to_string()),
        source: Source::Plex,
    }
}

fn failed() -> MediaRequestEvent {
    MediaRequestEvent::Failed {
        reason: "no release found".to_string(),
        source: Source::Overseerr,
    }
}

fn retried_by(by: Actor) -> MediaRequestEvent {
    MediaRequestEvent::Retried { by: by.id }
}

// ---------------------------------------------------------------------------------------------
// Expected rejections.

fn cannot(command: &'static str, status: Status) -> MediaRequestError {
    MediaRequestError::IllegalTransition { command, status }
}

/// Rejections whose exact message is not the point of the test.
trait ThenRejected {
    /// Expects `Invalid` naming `field`.
    fn then_expect_invalid(self, field: &str);
    /// Expects `Forbidden`, whatever the explanation.
    fn then_expect_forbidden(self);
}

impl ThenRejected for AggregateResultValidator<MediaRequest> {
    fn then_expect_invalid(self, field: &str) {
        match self.inspect_result() {
            Err(MediaRequestError::Invalid { field: named, .. }) => assert_eq!(named, field),
            other => panic!("expected an invalid {field}, got {other:?}"),
        }
    }

    fn then_expect_forbidden(self) {
        match self.inspect_result() {
            Err(MediaRequestError::Forbidden(_)) => {}
            other => panic!("expected forbidden, got {other:?}"),
        }
    }
}

// =============================================================================================
// Submission.

#[test]
fn submitting_a_movie_records_it_as_pending() {
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_movie()).by(member()).into())
        .then_expect_events(vec![submitted(member(), a_movie(), None)]);
}

#[test]
fn submitting_a_show_records_its_seasons_sorted_and_without_duplicates() {
    a_media_request()
        .given_no_previous_events()
        .when(
            submitting(a_show())
                .for_seasons(seasons(&[3, 1, 2, 1, 0]))
                .into(),
        )
        .then_expect_events(vec![submitted(
            member(),
            a_show(),
            Some(seasons(&[0, 1, 2, 3])),
        )]);
}

#[test]
fn submitting_a_show_for_all_seasons_records_all() {
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_show()).for_seasons(Seasons::ALL).into())
        .then_expect_events(vec![submitted(member(), a_show(), Some(Seasons::ALL))]);
}

#[test]
fn a_submission_records_4k_and_the_note_trimmed() {
    a_media_request()
        .given_no_previous_events()
        .when(
            submitting(a_movie_titled("  The Matrix \n"))
                .in_4k()
                .with_note("  the director's cut, please  ")
                .into(),
        )
        .then_expect_events(vec![MediaRequestEvent::Submitted {
            requested_by: member().id,
            media: a_movie(),
            seasons: None,
            is_4k: true,
            note: Some("the director's cut, please".to_string()),
        }]);
}

#[test]
fn a_blank_note_is_recorded_as_no_note() {
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_movie()).with_note(" \t ").into())
        .then_expect_events(vec![submitted(member(), a_movie(), None)]);
}

// Auto-approval.

#[test]
fn the_admins_policy_approves_an_admins_request_on_submit() {
    with_auto_approval(AutoApprovePolicy::Admins)
        .given_no_previous_events()
        .when(submitting(a_movie()).by(admin()).into())
        .then_expect_events(vec![
            submitted(admin(), a_movie(), None),
            auto_approved_for(admin()),
        ]);
}

#[test]
fn the_admins_policy_leaves_a_members_request_pending() {
    with_auto_approval(AutoApprovePolicy::Admins)
        .given_no_previous_events()
        .when(submitting(a_movie()).by(member()).into())
        .then_expect_events(vec![submitted(member(), a_movie(), None)]);
}

#[test]
fn the_all_policy_approves_a_members_request_on_submit() {
    with_auto_approval(AutoApprovePolicy::All)
        .given_no_previous_events()
        .when(submitting(a_movie()).by(member()).into())
        .then_expect_events(vec![
            submitted(member(), a_movie(), None),
            auto_approved_for(member()),
        ]);
}

#[test]
fn the_all_policy_approves_an_admins_request_on_submit() {
    with_auto_approval(AutoApprovePolicy::All)
        .given_no_previous_events()
        .when(submitting(a_movie()).by(admin()).into())
        .then_expect_events(vec![
            submitted(admin(), a_movie(), None),
            auto_approved_for(admin()),
        ]);
}

#[test]
fn the_none_policy_leaves_an_admins_request_pending() {
    with_auto_approval(AutoApprovePolicy::None)
        .given_no_previous_events()
        .when(submitting(a_movie()).by(admin()).into())
        .then_expect_events(vec![submitted(admin(), a_movie(), None)]);
}

#[test]
fn the_none_policy_leaves_a_members_request_pending() {
    with_auto_approval(AutoApprovePolicy::None)
        .given_no_previous_events()
        .when(submitting(a_movie()).by(member()).into())
        .then_expect_events(vec![submitted(member(), a_movie(), None)]);
}

// Invalid submissions.

#[test]
fn submitting_twice_is_rejected() {
    a_media_request()
        .given(a_request_that_is(Status::Pending))
        .when(submitting(a_movie()).into())
        .then_expect_error(MediaRequestError::AlreadySubmitted);
}

#[test]
fn an_empty_title_is_invalid() {
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_movie_titled("")).into())
        .then_expect_invalid("title");
}

#[test]
fn a_whitespace_title_is_invalid() {
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_movie_titled(" \t\n ")).into())
        .then_expect_invalid("title");
}

#[test]
fn a_title_over_300_characters_is_invalid() {
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_movie_titled(&"x".repeat(301))).into())
        .then_expect_invalid("title");
}

#[test]
fn a_title_of_300_characters_is_accepted_however_many_bytes_they_take() {
    let title = "é".repeat(300);
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_movie_titled(&title)).into())
        .then_expect_events(vec![submitted(member(), a_movie_titled(&title), None)]);
}

#[test]
fn a_tmdb_id_of_zero_is_invalid() {
    assert!(matches!(
        TmdbId::new(0),
        Err(MediaRequestError::Invalid {
            field: "tmdb_id",
            ..
        })
    ));
    assert_eq!(TmdbId::new(1).map(TmdbId::get), Ok(1));
}

#[test]
fn a_tvdb_id_of_zero_is_invalid() {
    let show = Media {
        tvdb_id: Some(0),
        ..a_show()
    };
    a_media_request()
        .given_no_previous_events()
        .when(submitting(show).for_seasons(Seasons::ALL).into())
        .then_expect_invalid("tvdb_id");
}

#[test]
fn a_show_without_seasons_is_invalid() {
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_show()).into())
        .then_expect_invalid("seasons");
}

#[test]
fn a_show_with_an_empty_season_list_is_invalid() {
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_show()).for_seasons(seasons(&[])).into())
        .then_expect_invalid("seasons");
}

#[test]
fn a_season_number_over_1000_is_invalid() {
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_show()).for_seasons(seasons(&[1, 1001])).into())
        .then_expect_invalid("seasons");
}

#[test]
fn a_movie_with_seasons_is_invalid() {
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_movie()).for_seasons(seasons(&[1])).into())
        .then_expect_invalid("seasons");
}

#[test]
fn a_note_over_1000_characters_is_invalid() {
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_movie()).with_note(&"n".repeat(1001)).into())
        .then_expect_invalid("note");
}

#[test]
fn a_year_before_1870_is_invalid() {
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_movie_from(1869)).into())
        .then_expect_invalid("year");
}

#[test]
fn a_year_after_2200_is_invalid() {
    a_media_request()
        .given_no_previous_events()
        .when(submitting(a_movie_from(2201)).into())
        .then_expect_invalid("year");
}

#[test]
fn the_years_1870_and_2200_are_accepted() {
    for year in [1870, 2200] {
        a_media_request()
            .given_no_previous_events()
            .when(submitting(a_movie_from(year)).into())
            .then_expect_events(vec![submitted(member(), a_movie_from(year), None)]);
    }
}

// =============================================================================================
// Before submission.

#[test]
fn every_command_but_submit_on_an_unsubmitted_request_is_not_found() {
    for command in every_command_but_submit() {
        a_media_request()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(MediaRequestError::NotFound);
    }
}

// =============================================================================================
// Approve and decline.

#[test]
fn an_admin_approves_a_pending_request() {
    a_media_request()
        .given(a_request_that_is(Status::Pending))
        .when(approve_by(admin()))
        .then_expect_events(vec![approved_by(admin())]);
}

#[test]
fn a_member_cannot_approve_a_request() {
    a_media_request()
        .given(a_request_that_is(Status::Pending))
        .when(approve_by(member()))
        .then_expect_forbidden();
}

#[test]
fn approving_a_request_that_is_not_pending_is_rejected() {
    for status in Status::ALL.into_iter().filter(|s| *s != Status::Pending) {
        a_media_request()
            .given(a_request_that_is(status))
            .when(approve_by(admin()))
            .then_expect_error(cannot("approve", status));
    }
}

#[test]
fn an_admin_declines_a_pending_request_with_a_trimmed_reason() {
    a_media_request()
        .given(a_request_that_is(Status::Pending))
        .when(decline_by(admin(), Some("  already on the server in 4K ")))
        .then_expect_events(vec![declined_by(
            admin(),
            Some("already on the server in 4K"),
        )]);
}

#[test]
fn a_member_cannot_decline_a_request() {
    a_media_request()
        .given(a_request_that_is(Status::Pending))
        .when(decline_by(member(), None))
        .then_expect_forbidden();
}

#[test]
fn declining_a_request_that_is_not_pending_is_rejected() {
    for status in Status::ALL.into_iter().filter(|s| *s != Status::Pending) {
        a_media_request()
            .given(a_request_that_is(status))
            .when(decline_by(admin(), None))
            .then_expect_error(cannot("decline", status));
    }
}

#[test]
fn a_decline_reason_over_1000_characters_is_invalid() {
    a_media_request()
        .given(a_request_that_is(Status::Pending))
        .when(decline_by(admin(), Some(&"r".repeat(1001))))
        .then_expect_invalid("reason");
}

// =============================================================================================
// Cancel.

#[test]
fn the_requester_cancels_a_pending_request() {
    a_media_request()
        .given(a_request_that_is(Status::Pending))
        .when(cancel_by(member()))
        .then_expect_events(vec![cancelled_by(member())]);
}

#[test]
fn an_admin_cancels_a_members_request() {
    a_media_request()
        .given(a_request_that_is(Status::Pending))
        .when(cancel_by(admin()))
        .then_expect_events(vec![cancelled_by(admin())]);
}

#[test]
fn another_member_cannot_cancel_a_request() {
    a_media_request()
        .given(a_request_that_is(Status::Pending))
        .when(cancel_by(another_member()))
        .then_expect_forbidden();
}

#[test]
fn an_approved_request_can_be_cancelled() {
    a_media_request()
        .given(a_request_that_is(Status::Approved))
        .when(cancel_by(member()))
        .then_expect_events(vec![cancelled_by(member())]);
}

#[test]
fn a_forwarded_request_can_be_cancelled() {
    a_media_request()
        .given(a_request_that_is(Status::Forwarded))
        .when(cancel_by(member()))
        .then_expect_events(vec![cancelled_by(member())]);
}

#[test]
fn a_processing_request_can_be_cancelled() {
    a_media_request()
        .given(a_request_that_is(Status::Processing))
        .when(cancel_by(member()))
        .then_expect_events(vec![cancelled_by(member())]);
}

#[test]
fn a_partially_available_request_can_be_cancelled() {
    a_media_request()
        .given(a_request_that_is(Status::PartiallyAvailable))
        .when(cancel_by(member()))
        .then_expect_events(vec![cancelled_by(member())]);
}

#[test]
fn cancelling_an_available_request_is_rejected() {
    a_media_request()
        .given(a_request_that_is(Status::Available))
        .when(cancel_by(member()))
        .then_expect_error(cannot("cancel", Status::Available));
}

#[test]
fn cancelling_a_declined_request_is_rejected() {
    a_media_request()
        .given(a_request_that_is(Status::Declined))
        .when(cancel_by(member()))
        .then_expect_error(cannot("cancel", Status::Declined));
}

#[test]
fn cancelling_a_cancelled_request_is_rejected() {
    a_media_request()
        .given(a_request_that_is(Status::Cancelled))
        .when(cancel_by(admin()))
        .then_expect_error(cannot("cancel", Status::Cancelled));
}

#[test]
fn cancelling_a_failed_request_is_rejected() {
    a_media_request()
        .given(a_request_that_is(Status::Failed))
        .when(cancel_by(member()))
        .then_expect_error(cannot("cancel", Status::Failed));
}

// =============================================================================================
// Forwarding to Overseerr.

#[test]
fn recording_forwarded_moves_an_approved_request_to_forwarded() {
    let history = a_request_that_is(Status::Approved);
    a_media_request()
        .given(history.clone())
        .when(record_forwarded(OVERSEERR_ID))
        .then_expect_events(vec![forwarded_as(OVERSEERR_ID)]);

    let request = state_after([history, vec![forwarded_as(OVERSEERR_ID)]].concat());
    assert_eq!(request.status(), Some(Status::Forwarded));
    assert_eq!(request.overseerr_request_id(), Some(OVERSEERR_ID));
}

#[test]
fn forwarded_recorded_after_processing_keeps_the_status_and_records_the_id() {
    // Overseerr's webhook can arrive while it is still answering the forwarder's POST.
    let history = vec![
        submitted_by(member()),
        approved_by(admin()),
        MediaRequestEvent::Processing,
    ];
    a_media_request()
        .given(history.clone())
        .when(record_forwarded(OVERSEERR_ID))
        .then_expect_events(vec![forwarded_as(OVERSEERR_ID)]);

    let request = state_after([history, vec![forwarded_as(OVERSEERR_ID)]].concat());
    assert_eq!(request.status(), Some(Status::Processing));
    assert_eq!(request.overseerr_request_id(), Some(OVERSEERR_ID));
}

#[test]
fn recording_the_same_overseerr_id_twice_writes_nothing() {
    a_media_request()
        .given(a_request_that_is(Status::Forwarded))
        .when(record_forwarded(OVERSEERR_ID))
        .then_expect_events(vec![]);
}

#[test]
fn recording_a_different_overseerr_id_is_rejected() {
    a_media_request()
        .given(a_request_that_is(Status::Forwarded))
        .when(record_forwarded(OVERSEERR_ID + 1))
        .then_expect_error(cannot("record_forwarded", Status::Forwarded));
}

#[test]
fn recording_forwarded_for_a_pending_request_is_rejected() {
    a_media_request()
        .given(a_request_that_is(Status::Pending))
        .when(record_forwarded(OVERSEERR_ID))
        .then_expect_error(cannot("record_forwarded", Status::Pending));
}

#[test]
fn recording_a_forward_failure_fails_an_approved_request() {
    let history = a_request_that_is(Status::Approved);
    a_media_request()
        .given(history.clone())
        .when(record_forward_failed())
        .then_expect_events(vec![forward_failed()]);

    let request = state_after([history, vec![forward_failed()]].concat());
    assert_eq!(request.status(), Some(Status::Failed));
}

#[test]
fn recording_a_forward_failure_for_a_request_that_is_not_approved_is_rejected() {
    // A failed request is left out: repeating the report is a separate case (see below).
    let not_approved = Status::ALL
        .into_iter()
        .filter(|s| !matches!(s, Status::Approved | Status::Failed));
    for status in not_approved {
        a_media_request()
            .given(a_request_that_is(status))
            .when(record_forward_failed())
            .then_expect_error(cannot("record_forward_failed", status));
    }
}

/// The module promises that a repeated `Record*` command writes nothing, so that a redelivered
/// saga step applies no effect twice. `RecordForwardFailed` breaks that promise: once the
/// request is failed, repeating it is an `IllegalTransition` (409), not a no-op.
#[test]
fn recording_the_same_forward_failure_twice_writes_nothing() {
    a_media_request()
        .given([a_request_that_is(Status::Approved), vec![forward_failed()]].concat())
        .when(record_forward_failed())
        .then_expect_events(vec![]);
}

// =============================================================================================
// Fulfilment reported by Overseerr and Plex.

#[test]
fn processing_is_recorded_for_an_approved_request() {
    a_media_request()
        .given(a_request_that_is(Status::Approved))
        .when(record_processing())
        .then_expect_events(vec![MediaRequestEvent::Processing]);
}

#[test]
fn processing_is_recorded_for_a_forwarded_request() {
    a_media_request()
        .given(a_request_that_is(Status::Forwarded))
        .when(record_processing())
        .then_expect_events(vec![MediaRequestEvent::Processing]);
}

#[test]
fn recording_processing_again_writes_nothing() {
    a_media_request()
        .given(a_request_that_is(Status::Processing))
        .when(record_processing())
        .then_expect_events(vec![]);
}

#[test]
fn processing_reported_after_availability_writes_nothing() {
    for status in [Status::PartiallyAvailable, Status::Available] {
        a_media_request()
            .given(a_request_that_is(status))
            .when(record_processing())
            .then_expect_events(vec![]);
    }
}

#[test]
fn partial_availability_is_recorded_with_seasons_sorted_and_without_duplicates() {
    a_media_request()
        .given(a_request_that_is(Status::Processing))
        .when(record_partially_available(&[2, 1, 2]))
        .then_expect_events(vec![partially_available(&[1, 2])]);
}

#[test]
fn recording_the_same_partial_availability_again_writes_nothing() {
    a_media_request()
        .given(a_request_that_is(Status::PartiallyAvailable))
        .when(record_partially_available(&[1, 1]))
        .then_expect_events(vec![]);
}

#[test]
fn more_seasons_becoming_available_are_recorded() {
    a_media_request()
        .given(a_request_that_is(Status::PartiallyAvailable))
        .when(record_partially_available(&[1, 2]))
        .then_expect_events(vec![partially_available(&[1, 2])]);
}

#[test]
fn availability_is_recorded_for_a_processing_request() {
    a_media_request()
        .given(a_request_that_is(Status::Processing))
        .when(record_available())
        .then_expect_events(vec![available()]);
}

#[test]
fn availability_is_recorded_for_a_partially_available_request() {
    a_media_request()
        .given(a_request_that_is(Status::PartiallyAvailable))
        .when(record_available())
        .then_expect_events(vec![available()]);
}

#[test]
fn availability_is_recorded_for_a_pending_request() {
    a_media_request()
        .given(a_request_that_is(Status::Pending))
        .when(record_available())
        .then_expect_events(vec![available()]);
}

#[test]
fn availability_is_recorded_for_a_failed_request() {
    a_media_request()
        .given(a_request_that_is(Status::Failed))
        .when(record_available())
        .then_expect_events(vec![available()]);
}

#[test]
fn recording_available_again_writes_nothing() {
    a_media_request()
        .given(a_request_that_is(Status::Available))
        .when(record_available())
        .then_expect_events(vec![]);
}

#[test]
fn a_failure_is_recorded_for_a_processing_request() {
    a_media_request()
        .given(a_request_that_is(Status::Processing))
        .when(record_failed())
        .then_expect_events(vec![failed()]);
}

#[test]
fn recording_a_failure_again_writes_nothing() {
    a_media_request()
        .given(a_request_that_is(Status::Failed))
        .when(record_failed())
        .then_expect_events(vec![]);
}

#[test]
fn processing_cannot_be_recorded_for_a_declined_request() {
    a_media_request()
        .given(a_request_that_is(Status::Declined))
        .when(record_processing())
        .then_expect_error(cannot("record_processing", Status::Declined));
}

#[test]
fn processing_cannot_be_recorded_for_a_cancelled_request() {
    a_media_request()
        .given(a_request_that_is(Status::Cancelled))
        .when(record_processing())
        .then_expect_error(cannot("record_processing", Status::Cancelled));
}

#[test]
fn availability_cannot_be_recorded_for_a_declined_request() {
    a_media_request()
        .given(a_request_that_is(Status::Declined))
        .when(record_available())
        .then_expect_error(cannot("record_available", Status::Declined));
}

#[test]
fn availability_cannot_be_recorded_for_a_cancelled_request() {
    a_media_request()
        .given(a_request_that_is(Status::Cancelled))
        .when(record_available())
        .then_expect_error(cannot("record_available", Status::Cancelled));
}

#[test]
fn a_failure_cannot_be_recorded_for_a_declined_request() {
    a_media_request()
        .given(a_request_that_is(Status::Declined))
        .when(record_failed())
        .then_expect_error(cannot("record_failed", Status::Declined));
}

#[test]
fn a_failure_cannot_be_recorded_for_a_cancelled_request() {
    a_media_request()
        .given(a_request_that_is(Status::Cancelled))
        .when(record_failed())
        .then_expect_error(cannot("record_failed", Status::Cancelled));
}

// =============================================================================================
// Retry.

#[test]
fn an_admin_retries_a_failed_request_which_is_approved_again_without_an_overseerr_id() {
    let history = a_request_that_is(Status::Failed);
    a_media_request()
        .given(history.clone())
        .when(retry_by(admin()))
        .then_expect_events(vec![retried_by(admin())]);

    let request = state_after([history, vec![retried_by(admin())]].concat());
    assert_eq!(request.status(), Some(Status::Approved));
    assert_eq!(request.overseerr_request_id(), None);
}

#[test]
fn after_a_retry_a_new_overseerr_id_can_be_recorded() {
    a_media_request()
        .given([a_request_that_is(Status::Failed), vec![retried_by(admin())]].concat())
        .when(record_forwarded(OVERSEERR_ID + 1))
        .then_expect_events(vec![forwarded_as(OVERSEERR_ID + 1)]);
}

#[test]
fn a_member_cannot_retry_a_request() {
    a_media_request()
        .given(a_request_that_is(Status::Failed))
        .when(retry_by(member()))
        .then_expect_forbidden();
}

#[test]
fn retrying_a_request_that_has_not_failed_is_rejected() {
    for status in Status::ALL.into_iter().filter(|s| *s != Status::Failed) {
        a_media_request()
            .given(a_request_that_is(status))
            .when(retry_by(admin()))
            .then_expect_error(cannot("retry", status));
    }
}

// =============================================================================================
// Wire shapes.

#[test]
fn every_request_status_round_trips_through_its_wire_name() {
    for status in Status::ALL {
        assert_eq!(status.as_str().parse::<Status>(), Ok(status));
        assert_eq!(status.to_string(), status.as_str());
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            json!(status.as_str())
        );
    }
    assert_eq!(Status::PartiallyAvailable.as_str(), "partially_available");
    assert!("Pending".parse::<Status>().is_err());
}

#[test]
fn the_auto_approve_policy_parses_admins_all_and_none_and_nothing_else() {
    assert_eq!("admins".parse(), Ok(AutoApprovePolicy::Admins));
    assert_eq!("all".parse(), Ok(AutoApprovePolicy::All));
    assert_eq!("none".parse(), Ok(AutoApprovePolicy::None));
    assert!("everyone".parse::<AutoApprovePolicy>().is_err());
    assert!("".parse::<AutoApprovePolicy>().is_err());
    assert_eq!(AutoApprovePolicy::default(), AutoApprovePolicy::Admins);
}

#[test]
fn a_submitted_show_serialises_as_its_snake_case_name_with_tv_and_all_seasons() {
    let event = submitted(member(), a_show(), Some(Seasons::ALL));
    let wire = json!({
        "submitted": {
            "requested_by": member().id.to_string(),
            "media": {
                "media_type": "tv",
                "tmdb_id": 1399,
                "tvdb_id": 121_361,
                "title": "Game of Thrones",
                "year": 2011,
            },
            "seasons": "all",
            "is_4k": false,
        }
    });
    assert_eq!(serde_json::to_value(&event).unwrap(), wire);
    assert_eq!(
        serde_json::from_value::<MediaRequestEvent>(wire).unwrap(),
        event
    );
}

#[test]
fn a_submitted_movie_omits_seasons_and_absent_optional_fields() {
    let movie = Media {
        year: None,
        ..a_movie()
    };
    let event = submitted(member(), movie, None);
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({
            "submitted": {
                "requested_by": member().id.to_string(),
                "media": {"media_type": "movie", "tmdb_id": 603, "title": "The Matrix"},
                "is_4k": false,
            }
        })
    );
}

#[test]
fn processing_serialises_as_a_bare_string() {
    assert_eq!(
        serde_json::to_value(MediaRequestEvent::Processing).unwrap(),
        json!("processing")
    );
}

#[test]
fn a_forward_failure_is_typed_forward_failed_version_1_0() {
    use cqrs_es::DomainEvent;

    let event = forward_failed();
    assert_eq!(event.event_type(), "forward_failed");
    assert_eq!(event.event_version(), "1.0");
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({"forward_failed": {"attempt": 5, "error": "overseerr answered 503", "retryable": true}})
    );
}

#[test]
fn the_public_data_of_a_media_request_event_is_its_inner_object() {
    let payload = serde_json::to_value(auto_approved_for(member())).unwrap();
    assert_eq!(
        public_data("media_request", &payload).unwrap(),
        json!({"by": member().id.to_string(), "auto": true})
    );
}

#[test]
fn a_media_request_event_decodes_back_from_its_public_form() {
    for event in [auto_approved_for(member()), MediaRequestEvent::Processing] {
        let payload = serde_json::to_value(&event).unwrap();
        let data = public_data("media_request", &payload).unwrap();
        let event_type = payload
            .as_object()
            .and_then(|tagged| tagged.keys().next().cloned())
            .or_else(|| payload.as_str().map(str::to_string))
            .unwrap();
        assert_eq!(
            crate::public::media_request_event(&event_type, &data).unwrap(),
            event
        );
    }
    assert!(crate::public::media_request_event("launched", &json!({})).is_err());
    assert!(crate::public::media_request_event("approved", &json!({"by": 7})).is_err());
}

#[test]
fn the_public_data_of_processing_is_an_empty_object() {
    assert_eq!(
        public_data("media_request", &json!("processing")).unwrap(),
        json!({})
    );
}

#[test]
fn public_data_of_an_unknown_aggregate_type_is_an_error() {
    let payload = serde_json::to_value(MediaRequestEvent::Processing).unwrap();
    assert!(matches!(
        public_data("spaceship", &payload),
        Err(PublicFormError::UnknownAggregate(name)) if name == "spaceship"
    ));
}

#[test]
fn public_data_of_an_undecodable_payload_is_an_error() {
    assert!(matches!(
        public_data("media_request", &json!({"launched": {}})),
        Err(PublicFormError::Payload { .. })
    ));
}

/// `TmdbId` is always positive, also when decoded from JSON (commands and events are).
#[test]
fn a_tmdb_id_of_zero_does_not_decode() {
    let decoded = serde_json::from_value::<Media>(json!({
        "media_type": "movie",
        "tmdb_id": 0,
        "title": "The Matrix",
    }));
    let error = decoded.expect_err("a tmdb id of 0 is refused").to_string();
    assert!(error.contains("tmdb_id"), "{error}");
}
