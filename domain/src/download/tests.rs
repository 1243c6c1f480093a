//! Given/when/then tests of the `download` aggregate: one test per transition and per
//! rejection (docs/design.md §3), the state `apply` leaves behind, then the wire shapes of
//! qualities, containers, statuses and events.

use cqrs_es::test::{AggregateResultValidator, TestFramework};
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    Container, Download, DownloadCommand, DownloadError, DownloadEvent, DownloadKind,
    DownloadServices, DownloadStatus as Status, Quality, DEFAULT_ALLOWED_HOSTS, EVENT_VERSION,
    MAX_URL_BYTES,
};
use crate::public::public_data;
use crate::Actor;

const VIDEO_URL: &str = "https://www.youtube.com/watch?v=dQw4w9WgXcQ";
const PLAYLIST_URL: &str = "https://www.youtube.com/playlist?list=PLBCF2DAC6FFB574DE";

/// The local feed the end-to-end tests serve, allowed only by a custom allow-list.
const LOCAL_FEED_URL: &str = "http://127.0.0.1:8080/feed.rss";

/// Every status a download can be in.
const EVERY_STATUS: [Status; 5] = [
    Status::Queued,
    Status::Running,
    Status::Completed,
    Status::Failed,
    Status::Cancelled,
];

/// Every container.
const EVERY_CONTAINER: [Container; 3] = [Container::Mp4, Container::Mkv, Container::Webm];

// ---------------------------------------------------------------------------------------------
// The cast.

/// The member who queues the download.
fn member() -> Actor {
    Actor::user(Uuid::from_u128(1))
}

/// Another member of the household.
fn another_member() -> Actor {
    Actor::user(Uuid::from_u128(2))
}

fn admin() -> Actor {
    Actor::admin(Uuid::from_u128(3))
}

// ---------------------------------------------------------------------------------------------
// The framework and histories.

/// The aggregate under the default (YouTube) allow-list.
fn a_download() -> TestFramework<Download> {
    TestFramework::with(DownloadServices::default())
}

/// The aggregate under a custom allow-list.
fn with_allowed_hosts(hosts: &[&str]) -> TestFramework<Download> {
    TestFramework::with(DownloadServices {
        allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
    })
}

/// The history of `member()`'s video download that reached `status` by the usual road: one
/// start, one item of 1000 bytes before completing, the first attempt failing.
fn a_download_that_is(status: Status) -> Vec<DownloadEvent> {
    let with = |before: Status, more: Vec<DownloadEvent>| {
        let mut history = a_download_that_is(before);
        history.extend(more);
        history
    };
    match status {
        Status::Queued => vec![queueing(VIDEO_URL).recorded()],
        Status::Running => with(Status::Queued, vec![started(1)]),
        Status::Completed => with(
            Status::Running,
            vec![item("dQw4w9WgXcQ", 1000, 1), completed(1, 1000)],
        ),
        Status::Failed => with(Status::Running, vec![failed(1)]),
        Status::Cancelled => with(Status::Queued, vec![cancelled_by(member())]),
    }
}

/// `history` followed by `more`.
fn then(mut history: Vec<DownloadEvent>, more: Vec<DownloadEvent>) -> Vec<DownloadEvent> {
    history.extend(more);
    history
}

/// Every status but the ones listed.
fn every_status_but(allowed: &[Status]) -> impl Iterator<Item = Status> + '_ {
    EVERY_STATUS
        .into_iter()
        .filter(move |status| !allowed.contains(status))
}

/// The aggregate after `history`, for the tests that look at state rather than events.
fn state_after(history: Vec<DownloadEvent>) -> Download {
    let mut download = Download::default();
    for event in history {
        download.apply(event);
    }
    download
}

// ---------------------------------------------------------------------------------------------
// Commands.

/// A `Queue` being built: a video by `member()` in 1080p mp4 unless told otherwise.
struct Queueing {
    requested_by: Actor,
    url: String,
    kind: DownloadKind,
    quality: Quality,
    container: Container,
}

fn queueing(url: &str) -> Queueing {
    Queueing {
        requested_by: member(),
        url: url.to_string(),
        kind: DownloadKind::Video,
        quality: Quality::P1080,
        container: Container::Mp4,
    }
}

impl Queueing {
    fn by(self, requested_by: Actor) -> Self {
        Self {
            requested_by,
            ..self
        }
    }

    fn for_a_playlist(self) -> Self {
        Self {
            kind: DownloadKind::Playlist,
            ..self
        }
    }

    fn in_quality(self, quality: Quality) -> Self {
        Self { quality, ..self }
    }

    fn in_container(self, container: Container) -> Self {
        Self { container, ..self }
    }

    /// The event this queueing records when its URL needs no cleaning.
    fn recorded(&self) -> DownloadEvent {
        DownloadEvent::Queued {
            requested_by: self.requested_by.id.clone(),
            url: self.url.clone(),
            kind: self.kind,
            quality: self.quality,
            container: self.container,
        }
    }
}

impl From<Queueing> for DownloadCommand {
    fn from(queueing: Queueing) -> Self {
        Self::Queue {
            requested_by: queueing.requested_by,
            url: queueing.url,
            kind: queueing.kind,
            quality: queueing.quality,
            container: queueing.container,
        }
    }
}

fn start() -> DownloadCommand {
    DownloadCommand::Start
}

/// The item `video_id` of `bytes` bytes at playlist position `index`, total unknown.
fn record_item(video_id: &str, bytes: u64, index: u32) -> DownloadCommand {
    DownloadCommand::RecordItemCompleted {
        video_id: video_id.to_string(),
        title: format!("Video {video_id}"),
        path: format!("Uploads/Video {video_id} [{video_id}].mp4"),
        bytes,
        index,
        total: None,
    }
}

fn complete() -> DownloadCommand {
    DownloadCommand::Complete
}

fn fail() -> DownloadCommand {
    DownloadCommand::Fail {
        error: "ERROR: unable to download video data: HTTP Error 503".to_string(),
        retryable: true,
    }
}

fn cancel_by(by: Actor) -> DownloadCommand {
    DownloadCommand::Cancel { by }
}

fn retry_by(by: Actor) -> DownloadCommand {
    DownloadCommand::Retry { by }
}

fn record_scan_requested() -> DownloadCommand {
    DownloadCommand::RecordLibraryScanRequested {
        section_id: "7".to_string(),
        path: "/data/youtube/Uploads".to_string(),
    }
}

fn record_scan_failed() -> DownloadCommand {
    DownloadCommand::RecordLibraryScanFailed {
        error: "plex answered 401".to_string(),
    }
}

/// Every command but `Queue`.
fn every_command_but_queue() -> Vec<DownloadCommand> {
    vec![
        start(),
        record_item("dQw4w9WgXcQ", 1000, 1),
        complete(),
        fail(),
        cancel_by(admin()),
        retry_by(admin()),
        record_scan_requested(),
        record_scan_failed(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Events.

fn started(attempt: u32) -> DownloadEvent {
    DownloadEvent::Started { attempt }
}

/// What `record_item` records.
fn item(video_id: &str, bytes: u64, index: u32) -> DownloadEvent {
    DownloadEvent::ItemCompleted {
        video_id: video_id.to_string(),
        title: format!("Video {video_id}"),
        path: format!("Uploads/Video {video_id} [{video_id}].mp4"),
        bytes,
        index,
        total: None,
    }
}

fn completed(items: u32, bytes: u64) -> DownloadEvent {
    DownloadEvent::Completed { items, bytes }
}

/// What `fail` records for `attempt`.
fn failed(attempt: u32) -> DownloadEvent {
    DownloadEvent::Failed {
        error: "ERROR: unable to download video data: HTTP Error 503".to_string(),
        retryable: true,
        attempt,
    }
}

fn cancelled_by(by: Actor) -> DownloadEvent {
    DownloadEvent::Cancelled { by: by.id }
}

fn retried_by(by: Actor) -> DownloadEvent {
    DownloadEvent::Retried { by: by.id }
}

fn scan_requested() -> DownloadEvent {
    DownloadEvent::LibraryScanRequested {
        section_id: "7".to_string(),
        path: "/data/youtube/Uploads".to_string(),
    }
}

fn scan_failed() -> DownloadEvent {
    DownloadEvent::LibraryScanFailed {
        error: "plex answered 401".to_string(),
    }
}

/// One event of each type.
fn one_event_of_each_type() -> Vec<DownloadEvent> {
    vec![
        queueing(PLAYLIST_URL).for_a_playlist().recorded(),
        started(2),
        DownloadEvent::ItemCompleted {
            video_id: "dQw4w9WgXcQ".to_string(),
            title: "Never Gonna Give You Up".to_string(),
            path: "Rick Astley/Never Gonna Give You Up [dQw4w9WgXcQ].mp4".to_string(),
            bytes: 12_345_678,
            index: 2,
            total: Some(3),
        },
        completed(3, 37_000_000),
        failed(2),
        cancelled_by(admin()),
        retried_by(member()),
        scan_requested(),
        scan_failed(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Expected outcomes.

fn cannot(command: &'static str, status: Status) -> DownloadError {
    DownloadError::IllegalTransition { command, status }
}

/// Outcomes whose exact message or event is not the point of the test.
trait ThenOutcome {
    /// Expects `Invalid` naming `field`.
    fn then_expect_invalid(self, field: &str);
    /// Expects `Forbidden`, whatever the explanation.
    fn then_expect_forbidden(self);
    /// Expects one `Queued` event and answers its URL.
    fn then_expect_queued_url(self) -> String;
}

impl ThenOutcome for AggregateResultValidator<Download> {
    fn then_expect_invalid(self, field: &str) {
        match self.inspect_result() {
            Err(DownloadError::Invalid { field: named, .. }) => assert_eq!(named, field),
            other => panic!("expected an invalid {field}, got {other:?}"),
        }
    }

    fn then_expect_forbidden(self) {
        match self.inspect_result() {
            Err(DownloadError::Forbidden(_)) => {}
            other => panic!("expected forbidden, got {other:?}"),
        }
    }

    fn then_expect_queued_url(self) -> String {
        match self.inspect_result() {
            Ok(events) => match events.as_slice() {
                [DownloadEvent::Queued { url, .. }] => url.clone(),
                other => panic!("expected one queued event, got {other:?}"),
            },
            Err(error) => panic!("expected the download to be queued, got {error:?}"),
        }
    }
}

/// Queues `url` under the default allow-list and expects it refused as an invalid `url`.
fn assert_url_refused(url: &str) {
    a_download()
        .given_no_previous_events()
        .when(queueing(url).into())
        .then_expect_invalid("url");
}

// =============================================================================================
// Queue.

#[test]
fn queuing_a_video_records_it_as_queued() {
    a_download()
        .given_no_previous_events()
        .when(queueing(VIDEO_URL).into())
        .then_expect_events(vec![DownloadEvent::Queued {
            requested_by: member().id,
            url: VIDEO_URL.to_string(),
            kind: DownloadKind::Video,
            quality: Quality::P1080,
            container: Container::Mp4,
        }]);
}

#[test]
fn queuing_a_playlist_records_it_as_a_playlist() {
    let queue = || {
        queueing(PLAYLIST_URL)
            .for_a_playlist()
            .by(admin())
            .in_quality(Quality::Best)
            .in_container(Container::Mkv)
    };
    a_download()
        .given_no_previous_events()
        .when(queue().into())
        .then_expect_events(vec![queue().recorded()]);
}

#[test]
fn every_quality_and_container_is_recorded_and_round_trips_through_its_wire_name() {
    for quality in Quality::ALL {
        for container in EVERY_CONTAINER {
            let queue = || {
                queueing(VIDEO_URL)
                    .in_quality(quality)
                    .in_container(container)
            };
            a_download()
                .given_no_previous_events()
                .when(queue().into())
                .then_expect_events(vec![queue().recorded()]);

            let event = queue().recorded();
            let wire = serde_json::to_value(&event).unwrap();
            assert_eq!(wire["queued"]["quality"], json!(quality.as_str()));
            assert_eq!(wire["queued"]["container"], json!(container.as_str()));
            assert_eq!(
                serde_json::from_value::<DownloadEvent>(wire).unwrap(),
                event
            );
        }
    }
}

#[test]
fn the_url_is_recorded_trimmed() {
    a_download()
        .given_no_previous_events()
        .when(queueing(&format!(" \t{VIDEO_URL} \n")).into())
        .then_expect_events(vec![queueing(VIDEO_URL).recorded()]);
}

#[test]
fn every_default_host_is_allowed() {
    for host in DEFAULT_ALLOWED_HOSTS {
        let url = format!("https://{host}/watch?v=dQw4w9WgXcQ");
        a_download()
            .given_no_previous_events()
            .when(queueing(&url).into())
            .then_expect_events(vec![queueing(&url).recorded()]);
    }
}

#[test]
fn a_plain_http_url_is_allowed() {
    let url = "http://youtu.be/dQw4w9WgXcQ";
    a_download()
        .given_no_previous_events()
        .when(queueing(url).into())
        .then_expect_events(vec![queueing(url).recorded()]);
}

#[test]
fn hosts_are_compared_case_insensitively() {
    let url = a_download()
        .given_no_previous_events()
        .when(queueing("https://WWW.YouTube.COM/watch?v=dQw4w9WgXcQ").into())
        .then_expect_queued_url();
    assert!(url.eq_ignore_ascii_case(VIDEO_URL), "{url}");
}

#[test]
fn a_url_of_2048_bytes_is_accepted() {
    let url = format!("{VIDEO_URL}{}", "a".repeat(MAX_URL_BYTES - VIDEO_URL.len()));
    assert_eq!(url.len(), 2048);
    a_download()
        .given_no_previous_events()
        .when(queueing(&url).into())
        .then_expect_events(vec![queueing(&url).recorded()]);
}

#[test]
fn a_custom_allow_list_allows_a_local_address() {
    let queue = || queueing(LOCAL_FEED_URL).for_a_playlist();
    with_allowed_hosts(&["127.0.0.1"])
        .given_no_previous_events()
        .when(queue().into())
        .then_expect_events(vec![queue().recorded()]);
}

#[test]
fn a_custom_allow_list_replaces_the_default_one() {
    with_allowed_hosts(&["127.0.0.1"])
        .given_no_previous_events()
        .when(queueing(VIDEO_URL).into())
        .then_expect_invalid("url");
}

// Invalid URLs.

#[test]
fn text_that_is_not_a_url_is_invalid() {
    assert_url_refused("not a url");
}

#[test]
fn a_url_without_a_scheme_is_invalid() {
    assert_url_refused("www.youtube.com/watch?v=dQw4w9WgXcQ");
}

#[test]
fn a_blank_url_is_invalid() {
    assert_url_refused(" \t ");
}

#[test]
fn an_ftp_url_is_invalid() {
    assert_url_refused("ftp://www.youtube.com/watch?v=dQw4w9WgXcQ");
}

#[test]
fn a_file_url_is_invalid() {
    assert_url_refused("file:///etc/passwd");
}

#[test]
fn a_file_url_naming_an_allowed_host_is_invalid() {
    assert_url_refused("file://www.youtube.com/etc/passwd");
}

#[test]
fn a_host_off_the_allow_list_is_invalid() {
    assert_url_refused("https://evil.example/watch?v=dQw4w9WgXcQ");
}

#[test]
fn a_host_that_merely_starts_with_an_allowed_one_is_invalid() {
    assert_url_refused("https://youtube.com.evil.example/watch?v=dQw4w9WgXcQ");
}

#[test]
fn a_subdomain_of_an_allowed_host_is_invalid() {
    assert_url_refused("https://evil.youtube.com/watch?v=dQw4w9WgXcQ");
}

#[test]
fn an_allowed_host_in_the_path_is_invalid() {
    assert_url_refused("https://evil.example/www.youtube.com/watch?v=dQw4w9WgXcQ");
}

#[test]
fn the_loopback_address_is_invalid_unless_allowed() {
    assert_url_refused(LOCAL_FEED_URL);
    assert_url_refused("http://localhost:8080/feed.rss");
    assert_url_refused("http://[::1]:8080/feed.rss");
}

#[test]
fn a_private_address_is_invalid_unless_allowed() {
    assert_url_refused("http://10.0.0.1/feed.rss");
    assert_url_refused("http://192.168.1.10:32400/library/sections");
}

#[test]
fn a_loopback_address_in_another_notation_is_invalid_unless_allowed() {
    assert_url_refused("http://2130706433/feed.rss");
    assert_url_refused("http://0x7f.0.0.1/feed.rss");
}

#[test]
fn a_url_with_credentials_is_invalid() {
    assert_url_refused("https://jane:secret@www.youtube.com/watch?v=dQw4w9WgXcQ");
}

#[test]
fn a_url_with_only_a_user_name_is_invalid() {
    assert_url_refused("https://jane@www.youtube.com/watch?v=dQw4w9WgXcQ");
}

#[test]
fn an_allowed_host_posing_as_a_user_name_is_invalid() {
    assert_url_refused("https://www.youtube.com@evil.example/watch?v=dQw4w9WgXcQ");
}

#[test]
fn a_url_over_2048_bytes_is_invalid() {
    let url = format!(
        "{VIDEO_URL}{}",
        "a".repeat(MAX_URL_BYTES + 1 - VIDEO_URL.len())
    );
    assert_eq!(url.len(), 2049);
    assert_url_refused(&url);
}

#[test]
fn the_url_length_is_counted_in_bytes_not_characters() {
    let url = format!("{VIDEO_URL}{}", "é".repeat(1010));
    assert!(url.chars().count() <= MAX_URL_BYTES);
    assert!(url.len() > MAX_URL_BYTES);
    assert_url_refused(&url);
}

/// The WHATWG parser of the allow-list check reads `\` as `/` (host `www.youtube.com`), but
/// RFC 3986 parsers such as Python's `urllib.parse.urlsplit` read `evil.example` as the host.
/// The URL must be refused, or recorded as the check read it, never as written.
#[test]
fn a_backslash_cannot_smuggle_another_host_past_the_allow_list() {
    let outcome = a_download()
        .given_no_previous_events()
        .when(queueing("https://www.youtube.com\\@evil.example/watch?v=dQw4w9WgXcQ").into())
        .inspect_result();
    match outcome {
        Err(DownloadError::Invalid { field, .. }) => assert_eq!(field, "url"),
        Ok(events) => match events.as_slice() {
            [DownloadEvent::Queued { url, .. }] => {
                assert!(!url.contains('\\'), "recorded as written: {url}");
                assert_eq!(url::Url::parse(url).unwrap().as_str(), url);
            }
            other => panic!("expected one queued event, got {other:?}"),
        },
        Err(other) => panic!("expected an invalid url, got {other:?}"),
    }
}

/// The allow-list check's parser drops tabs and newlines inside a URL; the URL handed to
/// yt-dlp must be the one that was checked.
#[test]
fn a_url_with_a_tab_or_newline_inside_is_refused_or_recorded_as_checked() {
    for written in [
        "https://www.you\ntube.com/watch?v=dQw4w9WgXcQ",
        "https://www.youtube.com/watch?v=dQw4\tw9WgXcQ",
    ] {
        let outcome = a_download()
            .given_no_previous_events()
            .when(queueing(written).into())
            .inspect_result();
        match outcome {
            Err(DownloadError::Invalid { field, .. }) => assert_eq!(field, "url"),
            Ok(events) => match events.as_slice() {
                [DownloadEvent::Queued { url, .. }] => {
                    assert!(!url.contains(['\t', '\n']), "recorded as written: {url:?}");
                }
                other => panic!("expected one queued event, got {other:?}"),
            },
            Err(other) => panic!("expected an invalid url, got {other:?}"),
        }
    }
}

#[test]
fn queuing_a_download_again_is_rejected_whatever_its_status() {
    for status in EVERY_STATUS {
        a_download()
            .given(a_download_that_is(status))
            .when(queueing(VIDEO_URL).into())
            .then_expect_error(DownloadError::AlreadyQueued);
    }
}

#[test]
fn a_queued_download_remembers_what_was_asked_and_has_not_started() {
    let download = state_after(vec![queueing(PLAYLIST_URL)
        .for_a_playlist()
        .in_quality(Quality::P720)
        .in_container(Container::Webm)
        .recorded()]);
    assert_eq!(download.status(), Some(Status::Queued));
    assert_eq!(download.url(), Some(PLAYLIST_URL));
    assert_eq!(download.requested_by(), Some(&member().id));
    assert_eq!(download.kind(), Some(DownloadKind::Playlist));
    assert_eq!(download.format(), Some((Quality::P720, Container::Webm)));
    assert_eq!(download.attempt(), 0);
    assert!(download.items().is_empty());
    assert_eq!(download.bytes(), 0);
}

#[test]
fn a_download_that_was_never_queued_has_no_state() {
    let download = Download::default();
    assert_eq!(download.status(), None);
    assert_eq!(download.url(), None);
    assert_eq!(download.requested_by(), None);
    assert_eq!(download.kind(), None);
    assert_eq!(download.format(), None);
    assert_eq!(download.attempt(), 0);
    assert!(download.items().is_empty());
    assert_eq!(download.bytes(), 0);
}

// =============================================================================================
// Before Queue.

#[test]
fn every_command_but_queue_on_an_unqueued_download_is_not_found() {
    for command in every_command_but_queue() {
        a_download()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(DownloadError::NotFound);
    }
}

// =============================================================================================
// Start.

#[test]
fn starting_a_queued_download_is_attempt_1() {
    a_download()
        .given(a_download_that_is(Status::Queued))
        .when(start())
        .then_expect_events(vec![started(1)]);
}

#[test]
fn starting_a_running_download_is_a_restart_with_the_next_attempt() {
    a_download()
        .given(a_download_that_is(Status::Running))
        .when(start())
        .then_expect_events(vec![started(2)]);
}

#[test]
fn starting_a_finished_download_is_rejected() {
    for status in every_status_but(&[Status::Queued, Status::Running]) {
        a_download()
            .given(a_download_that_is(status))
            .when(start())
            .then_expect_error(cannot("start", status));
    }
}

#[test]
fn a_started_download_is_running_its_attempt() {
    let download = state_after(a_download_that_is(Status::Running));
    assert_eq!(download.status(), Some(Status::Running));
    assert_eq!(download.attempt(), 1);
}

// =============================================================================================
// RecordItemCompleted.

#[test]
fn an_item_of_a_running_download_is_recorded() {
    a_download()
        .given(a_download_that_is(Status::Running))
        .when(record_item("dQw4w9WgXcQ", 1000, 1))
        .then_expect_events(vec![item("dQw4w9WgXcQ", 1000, 1)]);
}

#[test]
fn an_item_of_a_playlist_is_recorded_with_its_position_and_total() {
    let command = DownloadCommand::RecordItemCompleted {
        video_id: "yPYZpwSpKmA".to_string(),
        title: "Together Forever".to_string(),
        path: "Rick Astley/Together Forever [yPYZpwSpKmA].webm".to_string(),
        bytes: 9_876_543,
        index: 2,
        total: Some(3),
    };
    a_download()
        .given(a_download_that_is(Status::Running))
        .when(command)
        .then_expect_events(vec![DownloadEvent::ItemCompleted {
            video_id: "yPYZpwSpKmA".to_string(),
            title: "Together Forever".to_string(),
            path: "Rick Astley/Together Forever [yPYZpwSpKmA].webm".to_string(),
            bytes: 9_876_543,
            index: 2,
            total: Some(3),
        }]);
}

#[test]
fn recording_the_same_item_again_writes_nothing() {
    a_download()
        .given(then(
            a_download_that_is(Status::Running),
            vec![item("dQw4w9WgXcQ", 1000, 1)],
        ))
        .when(record_item("dQw4w9WgXcQ", 1000, 1))
        .then_expect_events(vec![]);
}

#[test]
fn an_item_completed_in_an_earlier_attempt_is_recorded_again_after_a_restart() {
    a_download()
        .given(then(
            a_download_that_is(Status::Running),
            vec![item("dQw4w9WgXcQ", 1000, 1), started(2)],
        ))
        .when(record_item("dQw4w9WgXcQ", 1000, 1))
        .then_expect_events(vec![item("dQw4w9WgXcQ", 1000, 1)]);
}

#[test]
fn recording_an_item_of_a_download_that_is_not_running_is_rejected() {
    for status in every_status_but(&[Status::Running]) {
        a_download()
            .given(a_download_that_is(status))
            .when(record_item("yPYZpwSpKmA", 2000, 2))
            .then_expect_error(cannot("record_item_completed", status));
    }
}

#[test]
fn items_and_bytes_accumulate_in_order() {
    let download = state_after(then(
        a_download_that_is(Status::Running),
        vec![
            item("dQw4w9WgXcQ", 1000, 1),
            item("yPYZpwSpKmA", 2500, 2),
            item("AC3Ejf7vPEY", 500, 3),
        ],
    ));
    assert_eq!(
        download.items(),
        ["dQw4w9WgXcQ", "yPYZpwSpKmA", "AC3Ejf7vPEY"]
    );
    assert_eq!(download.bytes(), 4000);
}

#[test]
fn a_new_start_clears_the_items_and_bytes_of_the_last_attempt() {
    let download = state_after(then(
        a_download_that_is(Status::Running),
        vec![
            item("dQw4w9WgXcQ", 1000, 1),
            item("yPYZpwSpKmA", 2500, 2),
            started(2),
        ],
    ));
    assert!(download.items().is_empty());
    assert_eq!(download.bytes(), 0);
    assert_eq!(download.attempt(), 2);
}

// =============================================================================================
// Complete.

#[test]
fn completing_a_running_download_records_its_items_and_bytes() {
    a_download()
        .given(then(
            a_download_that_is(Status::Running),
            vec![item("dQw4w9WgXcQ", 1000, 1), item("yPYZpwSpKmA", 2500, 2)],
        ))
        .when(complete())
        .then_expect_events(vec![completed(2, 3500)]);
}

#[test]
fn completing_a_running_download_without_items_records_zero() {
    a_download()
        .given(a_download_that_is(Status::Running))
        .when(complete())
        .then_expect_events(vec![completed(0, 0)]);
}

#[test]
fn completing_after_a_restart_counts_only_the_last_attempt() {
    a_download()
        .given(then(
            a_download_that_is(Status::Running),
            vec![
                item("dQw4w9WgXcQ", 1000, 1),
                started(2),
                item("yPYZpwSpKmA", 2500, 2),
            ],
        ))
        .when(complete())
        .then_expect_events(vec![completed(1, 2500)]);
}

#[test]
fn completing_a_completed_download_again_writes_nothing() {
    a_download()
        .given(a_download_that_is(Status::Completed))
        .when(complete())
        .then_expect_events(vec![]);
}

#[test]
fn completing_a_download_that_is_not_running_is_rejected() {
    for status in every_status_but(&[Status::Running, Status::Completed]) {
        a_download()
            .given(a_download_that_is(status))
            .when(complete())
            .then_expect_error(cannot("complete", status));
    }
}

#[test]
fn a_completed_download_keeps_its_items() {
    let download = state_after(a_download_that_is(Status::Completed));
    assert_eq!(download.status(), Some(Status::Completed));
    assert_eq!(download.items(), ["dQw4w9WgXcQ"]);
    assert_eq!(download.bytes(), 1000);
    assert_eq!(download.folders(), ["Uploads"]);
}

#[test]
fn folders_are_listed_once_in_order_and_reset_by_a_new_attempt() {
    let history = then(
        a_download_that_is(Status::Running),
        vec![
            item("b1", 1, 1),
            item("b2", 1, 2),
            DownloadEvent::ItemCompleted {
                video_id: "c1".to_string(),
                title: "Elsewhere".to_string(),
                path: "Other Channel/Elsewhere [c1].mp4".to_string(),
                bytes: 5,
                index: 3,
                total: None,
            },
        ],
    );
    let download = state_after(history.clone());
    assert_eq!(download.folders(), ["Uploads", "Other Channel"]);
    let restarted = state_after(then(history, vec![started(2)]));
    assert!(restarted.folders().is_empty());
}

// =============================================================================================
// Fail.

#[test]
fn failing_a_running_download_records_the_error_and_attempt() {
    a_download()
        .given(a_download_that_is(Status::Running))
        .when(fail())
        .then_expect_events(vec![failed(1)]);
}

#[test]
fn failing_a_restarted_download_records_its_current_attempt() {
    a_download()
        .given(then(a_download_that_is(Status::Running), vec![started(2)]))
        .when(fail())
        .then_expect_events(vec![failed(2)]);
}

#[test]
fn a_failure_that_a_retry_cannot_help_is_recorded_as_not_retryable() {
    a_download()
        .given(a_download_that_is(Status::Running))
        .when(DownloadCommand::Fail {
            error: "ERROR: [youtube] dQw4w9WgXcQ: Video unavailable".to_string(),
            retryable: false,
        })
        .then_expect_events(vec![DownloadEvent::Failed {
            error: "ERROR: [youtube] dQw4w9WgXcQ: Video unavailable".to_string(),
            retryable: false,
            attempt: 1,
        }]);
}

#[test]
fn failing_a_queued_download_that_never_started_records_attempt_0() {
    a_download()
        .given(a_download_that_is(Status::Queued))
        .when(fail())
        .then_expect_events(vec![failed(0)]);
}

#[test]
fn failing_a_failed_download_again_writes_nothing() {
    a_download()
        .given(a_download_that_is(Status::Failed))
        .when(fail())
        .then_expect_events(vec![]);
}

#[test]
fn failing_a_completed_or_cancelled_download_is_rejected() {
    for status in [Status::Completed, Status::Cancelled] {
        a_download()
            .given(a_download_that_is(status))
            .when(fail())
            .then_expect_error(cannot("fail", status));
    }
}

#[test]
fn a_failed_download_is_failed() {
    let download = state_after(a_download_that_is(Status::Failed));
    assert_eq!(download.status(), Some(Status::Failed));
    assert_eq!(download.attempt(), 1);
}

// =============================================================================================
// Cancel.

#[test]
fn the_requester_cancels_a_queued_download() {
    a_download()
        .given(a_download_that_is(Status::Queued))
        .when(cancel_by(member()))
        .then_expect_events(vec![cancelled_by(member())]);
}

#[test]
fn the_requester_cancels_a_running_download() {
    a_download()
        .given(a_download_that_is(Status::Running))
        .when(cancel_by(member()))
        .then_expect_events(vec![cancelled_by(member())]);
}

#[test]
fn an_admin_cancels_a_members_queued_download() {
    a_download()
        .given(a_download_that_is(Status::Queued))
        .when(cancel_by(admin()))
        .then_expect_events(vec![cancelled_by(admin())]);
}

#[test]
fn an_admin_cancels_a_members_running_download() {
    a_download()
        .given(a_download_that_is(Status::Running))
        .when(cancel_by(admin()))
        .then_expect_events(vec![cancelled_by(admin())]);
}

#[test]
fn another_member_cannot_cancel_a_download() {
    for status in [Status::Queued, Status::Running] {
        a_download()
            .given(a_download_that_is(status))
            .when(cancel_by(another_member()))
            .then_expect_forbidden();
    }
}

#[test]
fn cancelling_a_finished_download_is_rejected() {
    for status in [Status::Completed, Status::Failed, Status::Cancelled] {
        a_download()
            .given(a_download_that_is(status))
            .when(cancel_by(member()))
            .then_expect_error(cannot("cancel", status));
    }
}

#[test]
fn the_refusal_to_cancel_a_finished_download_says_why() {
    assert_eq!(
        cannot("cancel", Status::Completed).to_string(),
        "cannot cancel a download that is completed"
    );
}

#[test]
fn a_cancelled_download_is_cancelled() {
    let download = state_after(a_download_that_is(Status::Cancelled));
    assert_eq!(download.status(), Some(Status::Cancelled));
}

// =============================================================================================
// Retry.

#[test]
fn the_requester_retries_a_failed_download() {
    a_download()
        .given(a_download_that_is(Status::Failed))
        .when(retry_by(member()))
        .then_expect_events(vec![retried_by(member())]);
}

#[test]
fn the_requester_retries_a_cancelled_download() {
    a_download()
        .given(a_download_that_is(Status::Cancelled))
        .when(retry_by(member()))
        .then_expect_events(vec![retried_by(member())]);
}

#[test]
fn an_admin_retries_a_members_failed_download() {
    a_download()
        .given(a_download_that_is(Status::Failed))
        .when(retry_by(admin()))
        .then_expect_events(vec![retried_by(admin())]);
}

#[test]
fn an_admin_retries_a_members_cancelled_download() {
    a_download()
        .given(a_download_that_is(Status::Cancelled))
        .when(retry_by(admin()))
        .then_expect_events(vec![retried_by(admin())]);
}

#[test]
fn another_member_cannot_retry_a_download() {
    for status in [Status::Failed, Status::Cancelled] {
        a_download()
            .given(a_download_that_is(status))
            .when(retry_by(another_member()))
            .then_expect_forbidden();
    }
}

#[test]
fn retrying_a_download_that_has_not_failed_or_been_cancelled_is_rejected() {
    for status in [Status::Queued, Status::Running, Status::Completed] {
        a_download()
            .given(a_download_that_is(status))
            .when(retry_by(member()))
            .then_expect_error(cannot("retry", status));
    }
}

#[test]
fn a_retried_download_is_queued_again() {
    let download = state_after(then(
        a_download_that_is(Status::Failed),
        vec![retried_by(member())],
    ));
    assert_eq!(download.status(), Some(Status::Queued));
    assert_eq!(download.attempt(), 1);
}

#[test]
fn starting_a_retried_download_is_the_next_attempt() {
    a_download()
        .given(then(
            a_download_that_is(Status::Failed),
            vec![retried_by(member())],
        ))
        .when(start())
        .then_expect_events(vec![started(2)]);
}

#[test]
fn a_retried_download_can_be_cancelled_again() {
    a_download()
        .given(then(
            a_download_that_is(Status::Cancelled),
            vec![retried_by(admin())],
        ))
        .when(cancel_by(member()))
        .then_expect_events(vec![cancelled_by(member())]);
}

// =============================================================================================
// RecordLibraryScanRequested and RecordLibraryScanFailed.

#[test]
fn a_library_scan_is_recorded_for_a_completed_download() {
    a_download()
        .given(a_download_that_is(Status::Completed))
        .when(record_scan_requested())
        .then_expect_events(vec![scan_requested()]);
}

#[test]
fn a_library_scan_failure_is_recorded_for_a_completed_download() {
    a_download()
        .given(a_download_that_is(Status::Completed))
        .when(record_scan_failed())
        .then_expect_events(vec![scan_failed()]);
}

#[test]
fn once_a_scan_is_recorded_further_scan_reports_write_nothing() {
    for recorded in [scan_requested(), scan_failed()] {
        for command in [record_scan_requested(), record_scan_failed()] {
            a_download()
                .given(then(
                    a_download_that_is(Status::Completed),
                    vec![recorded.clone()],
                ))
                .when(command)
                .then_expect_events(vec![]);
        }
    }
}

#[test]
fn a_scan_cannot_be_recorded_before_completion() {
    for status in every_status_but(&[Status::Completed]) {
        a_download()
            .given(a_download_that_is(status))
            .when(record_scan_requested())
            .then_expect_error(cannot("record_library_scan_requested", status));
    }
}

#[test]
fn a_scan_failure_cannot_be_recorded_before_completion() {
    for status in every_status_but(&[Status::Completed]) {
        a_download()
            .given(a_download_that_is(status))
            .when(record_scan_failed())
            .then_expect_error(cannot("record_library_scan_failed", status));
    }
}

#[test]
fn a_scanned_download_stays_completed() {
    let download = state_after(then(
        a_download_that_is(Status::Completed),
        vec![scan_requested()],
    ));
    assert_eq!(download.status(), Some(Status::Completed));
}

// =============================================================================================
// Wire shapes.

#[test]
fn every_quality_parses_from_its_wire_name() {
    let names = ["best", "2160p", "1440p", "1080p", "720p", "480p", "360p"];
    for (quality, name) in Quality::ALL.into_iter().zip(names) {
        assert_eq!(quality.as_str(), name);
        assert_eq!(name.parse::<Quality>(), Ok(quality));
        assert_eq!(serde_json::to_value(quality).unwrap(), json!(name));
        assert_eq!(
            serde_json::from_value::<Quality>(json!(name)).unwrap(),
            quality
        );
    }
}

#[test]
fn an_unsupported_quality_does_not_parse_or_decode() {
    for name in ["4320p", "1080", "4k", "Best", "BEST", " 720p", ""] {
        assert!(name.parse::<Quality>().is_err(), "{name:?}");
        assert!(
            serde_json::from_value::<Quality>(json!(name)).is_err(),
            "{name:?}"
        );
    }
}

#[test]
fn quality_caps_the_height_except_best() {
    let heights = [
        None,
        Some(2160),
        Some(1440),
        Some(1080),
        Some(720),
        Some(480),
        Some(360),
    ];
    for (quality, height) in Quality::ALL.into_iter().zip(heights) {
        assert_eq!(quality.max_height(), height);
    }
}

#[test]
fn every_container_round_trips_through_its_wire_name() {
    let names = ["mp4", "mkv", "webm"];
    for (container, name) in EVERY_CONTAINER.into_iter().zip(names) {
        assert_eq!(container.as_str(), name);
        assert_eq!(serde_json::to_value(container).unwrap(), json!(name));
        assert_eq!(
            serde_json::from_value::<Container>(json!(name)).unwrap(),
            container
        );
    }
}

#[test]
fn an_unsupported_container_does_not_decode() {
    for name in ["avi", "MP4", "flv", ""] {
        assert!(
            serde_json::from_value::<Container>(json!(name)).is_err(),
            "{name:?}"
        );
    }
}

#[test]
fn a_queue_command_with_an_unsupported_quality_or_container_does_not_decode() {
    let command = |quality: &str, container: &str| {
        json!({"Queue": {
            "requested_by": {"id": member().id.to_string(), "role": "user"},
            "url": VIDEO_URL,
            "kind": "video",
            "quality": quality,
            "container": container,
        }})
    };
    assert_eq!(
        serde_json::from_value::<DownloadCommand>(command("1080p", "mp4")).unwrap(),
        DownloadCommand::from(queueing(VIDEO_URL))
    );
    assert!(serde_json::from_value::<DownloadCommand>(command("4k", "mp4")).is_err());
    assert!(serde_json::from_value::<DownloadCommand>(command("1080p", "avi")).is_err());
}

#[test]
fn the_download_kinds_are_video_and_playlist() {
    assert_eq!(
        serde_json::to_value(DownloadKind::Video).unwrap(),
        json!("video")
    );
    assert_eq!(
        serde_json::to_value(DownloadKind::Playlist).unwrap(),
        json!("playlist")
    );
    assert!(serde_json::from_value::<DownloadKind>(json!("channel")).is_err());
}

#[test]
fn every_download_status_round_trips_through_its_wire_name() {
    let names = ["queued", "running", "completed", "failed", "cancelled"];
    for (status, name) in EVERY_STATUS.into_iter().zip(names) {
        assert_eq!(status.as_str(), name);
        assert_eq!(name.parse::<Status>(), Ok(status));
        assert_eq!(status.to_string(), name);
        assert_eq!(serde_json::to_value(status).unwrap(), json!(name));
        assert_eq!(
            serde_json::from_value::<Status>(json!(name)).unwrap(),
            status
        );
    }
}

#[test]
fn an_unknown_download_status_does_not_parse() {
    for name in ["Queued", "canceled", "pending", ""] {
        assert!(name.parse::<Status>().is_err(), "{name:?}");
    }
}

#[test]
fn every_event_has_its_snake_case_type_name_and_version_1_0() {
    let names = [
        "queued",
        "started",
        "item_completed",
        "completed",
        "failed",
        "cancelled",
        "retried",
        "library_scan_requested",
        "library_scan_failed",
    ];
    let events = one_event_of_each_type();
    assert_eq!(events.len(), names.len());
    for (event, name) in events.into_iter().zip(names) {
        assert_eq!(event.type_name(), name);
        assert_eq!(event.event_type(), name);
        assert_eq!(event.event_version(), "1.0");
        assert_eq!(EVENT_VERSION, "1.0");
        let wire = serde_json::to_value(&event).unwrap();
        assert_eq!(
            wire.as_object()
                .map(|tagged| tagged.keys().collect::<Vec<_>>()),
            Some(vec![&name.to_string()]),
            "{wire}"
        );
        assert_eq!(
            serde_json::from_value::<DownloadEvent>(wire).unwrap(),
            event
        );
    }
}

#[test]
fn a_queued_event_serialises_every_field_by_its_wire_name() {
    let event = queueing(PLAYLIST_URL)
        .for_a_playlist()
        .in_quality(Quality::P2160)
        .in_container(Container::Webm)
        .recorded();
    let wire = json!({
        "queued": {
            "requested_by": member().id.to_string(),
            "url": PLAYLIST_URL,
            "kind": "playlist",
            "quality": "2160p",
            "container": "webm",
        }
    });
    assert_eq!(serde_json::to_value(&event).unwrap(), wire);
    assert_eq!(
        serde_json::from_value::<DownloadEvent>(wire).unwrap(),
        event
    );
}

#[test]
fn an_item_without_a_known_total_omits_it() {
    assert_eq!(
        serde_json::to_value(item("dQw4w9WgXcQ", 1000, 1)).unwrap(),
        json!({"item_completed": {
            "video_id": "dQw4w9WgXcQ",
            "title": "Video dQw4w9WgXcQ",
            "path": "Uploads/Video dQw4w9WgXcQ [dQw4w9WgXcQ].mp4",
            "bytes": 1000,
            "index": 1,
        }})
    );
}

#[test]
fn an_event_with_an_unknown_field_does_not_decode() {
    let decoded = serde_json::from_value::<DownloadEvent>(json!({
        "started": {"attempt": 1, "pid": 4242}
    }));
    assert!(decoded.is_err());
}

#[test]
fn the_public_data_of_every_download_event_is_its_inner_object() {
    for event in one_event_of_each_type() {
        let payload = serde_json::to_value(&event).unwrap();
        let inner = payload[event.type_name()].clone();
        assert!(matches!(inner, Value::Object(_)), "{payload}");
        assert_eq!(public_data("download", &payload).unwrap(), inner);
    }
}

#[test]
fn the_public_data_of_a_completed_item_holds_every_field() {
    let payload = serde_json::to_value(&one_event_of_each_type()[2]).unwrap();
    assert_eq!(
        public_data("download", &payload).unwrap(),
        json!({
            "video_id": "dQw4w9WgXcQ",
            "title": "Never Gonna Give You Up",
            "path": "Rick Astley/Never Gonna Give You Up [dQw4w9WgXcQ].mp4",
            "bytes": 12_345_678,
            "index": 2,
            "total": 3,
        })
    );
}
