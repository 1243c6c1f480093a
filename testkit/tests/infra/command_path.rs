//! The command path's transaction and connections (docs/decisions.md, "One transaction per
//! command"), against real PostgreSQL: a media-request command's reservation, quota-ledger
//! row and events commit together or not at all; concurrent submissions of one media accept
//! exactly one; a submission under an id already in use is refused as before; a submission
//! of media Plex has something of takes the transaction's path and is judged there; a pooled
//! connection that died while idle is replaced before use.

use std::time::Duration;

use medianest_domain::media_request::{
    Media, MediaRequest, MediaRequestCommand, MediaRequestError, MediaRequestServices, MediaType,
    TmdbId,
};
use medianest_domain::{Actor, RequestId};
use medianest_store::media_requests::{MediaRequestCommandError, MediaRequests};
use medianest_store::{Committed, EventMetadata, ExecuteError};
use medianest_testkit::app::fresh_database;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

fn submit(by: &Actor, tmdb_id: u32, title: &str) -> MediaRequestCommand {
    MediaRequestCommand::Submit {
        requested_by: by.clone(),
        media: Media {
            media_type: MediaType::Movie,
            tmdb_id: TmdbId::new(tmdb_id).expect("positive"),
            tvdb_id: None,
            title: title.to_string(),
            year: Some(1999),
        },
        seasons: None,
        is_4k: false,
        note: None,
    }
}

/// `(events, reservations, ledger rows)` of request `id`.
async fn rows_of(pool: &PgPool, id: Uuid) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM events
                  WHERE aggregate_type = 'media_request' AND aggregate_id = $1::text),
                (SELECT count(*) FROM media_request_reservations WHERE request_id = $1),
                (SELECT count(*) FROM request_quota_ledger WHERE request_id = $1)",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("count")
}

/// Runs `command` on request `id`, without an expected version or metadata.
async fn run(
    requests: &MediaRequests,
    id: Uuid,
    command: MediaRequestCommand,
) -> Result<Committed<MediaRequest>, MediaRequestCommandError> {
    requests
        .execute(id.into(), command, None, &EventMetadata::default())
        .await
}

#[tokio::test]
async fn a_refused_submission_leaves_no_reservation_and_no_ledger_row() {
    let (_, pool) = fresh_database().await;
    let requests = MediaRequests::new(pool.clone(), MediaRequestServices::default());
    let member = Actor::user(Uuid::now_v7());
    let id = Uuid::now_v7();
    // The aggregate refuses it after the reservation and the ledger row were written.
    let refused = run(&requests, id, submit(&member, 603, "   ")).await;
    assert!(
        matches!(
            refused,
            Err(MediaRequestCommandError::Execute(ExecuteError::Rejected(
                MediaRequestError::Invalid { field: "title", .. }
            )))
        ),
        "{refused:?}"
    );
    assert_eq!(rows_of(&pool, id).await, (0, 0, 0), "rolled back together");

    let accepted = Uuid::now_v7();
    run(&requests, accepted, submit(&member, 603, "The Matrix"))
        .await
        .expect("the media is free: nothing was left reserved");
    assert_eq!(rows_of(&pool, accepted).await, (1, 1, 1));
}

#[tokio::test]
async fn a_submission_of_what_plex_has_in_the_other_4k_ness_is_accepted_and_in_the_same_refused() {
    let (_, pool) = fresh_database().await;
    sqlx::query(
        "INSERT INTO plex_library (rating_key, section_key, media_type, tmdb_id, title, has_hd,
                                   has_4k, last_seen_pass)
         VALUES ('101', '1', 'movie', 603, 'The Matrix', true, false, 1)",
    )
    .execute(&pool)
    .await
    .expect("Plex has the movie in HD");
    let requests = MediaRequests::new(pool.clone(), MediaRequestServices::default());
    let admin = Actor::admin(Uuid::now_v7());
    // Plex has something of the media: the one-statement submission writes nothing and the
    // transaction judges it, here accepting the 4K request.
    let uhd = Uuid::now_v7();
    let MediaRequestCommand::Submit {
        requested_by,
        media,
        seasons,
        note,
        ..
    } = submit(&admin, 603, "The Matrix")
    else {
        unreachable!("a submission")
    };
    let uhd_submit = MediaRequestCommand::Submit {
        requested_by,
        media,
        seasons,
        is_4k: true,
        note,
    };
    run(&requests, uhd, uhd_submit)
        .await
        .expect("Plex has no 4K copy");
    // An admin's request is approved as it is submitted: two events.
    assert_eq!(rows_of(&pool, uhd).await, (2, 1, 1));
    let hd = Uuid::now_v7();
    let refused = run(&requests, hd, submit(&admin, 603, "The Matrix")).await;
    assert!(
        matches!(
            refused,
            Err(MediaRequestCommandError::AlreadyAvailable { ref rating_key, .. }) if rating_key == "101"
        ),
        "{refused:?}"
    );
    assert_eq!(rows_of(&pool, hd).await, (0, 0, 0));
    // Nothing stands in the way of another movie: one statement writes all three.
    let free = Uuid::now_v7();
    run(&requests, free, submit(&admin, 604, "The Matrix Reloaded"))
        .await
        .expect("accepted");
    assert_eq!(rows_of(&pool, free).await, (2, 1, 1));
}

#[tokio::test]
async fn a_submission_under_an_id_in_use_is_refused_and_changes_nothing() {
    let (_, pool) = fresh_database().await;
    let requests = MediaRequests::new(pool.clone(), MediaRequestServices::default());
    let member = Actor::user(Uuid::now_v7());
    let id = Uuid::now_v7();
    let first = run(&requests, id, submit(&member, 603, "The Matrix"))
        .await
        .expect("submitted");
    assert_eq!(first.version, 1);
    // Another media under the same id: the first attempt, decided without reading the log,
    // loses at the append; the second reads the request and the aggregate refuses.
    let again = run(&requests, id, submit(&member, 604, "The Matrix Reloaded")).await;
    assert!(
        matches!(
            again,
            Err(MediaRequestCommandError::Execute(ExecuteError::Rejected(
                MediaRequestError::AlreadySubmitted
            )))
        ),
        "{again:?}"
    );
    assert_eq!(rows_of(&pool, id).await, (1, 1, 1));
    let reserved: Vec<i64> =
        sqlx::query_scalar("SELECT tmdb_id FROM media_request_reservations ORDER BY tmdb_id")
            .fetch_all(&pool)
            .await
            .expect("reservations");
    assert_eq!(reserved, [603], "the refused media stays free");

    // `If-Match: "0"` on an existing request is a version mismatch naming the real version.
    let approve = requests
        .execute(
            id.into(),
            MediaRequestCommand::Approve {
                by: Actor::admin(Uuid::now_v7()),
            },
            Some(0),
            &EventMetadata::default(),
        )
        .await;
    assert!(
        matches!(
            approve,
            Err(MediaRequestCommandError::Execute(
                ExecuteError::VersionMismatch {
                    expected: 0,
                    actual: 1
                }
            ))
        ),
        "{approve:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_of_one_media_accept_exactly_one() {
    let (_, pool) = fresh_database().await;
    let requests = std::sync::Arc::new(MediaRequests::new(
        pool.clone(),
        MediaRequestServices::default(),
    ));
    let mut tasks = Vec::new();
    for n in 0..8 {
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let member = Actor::user(Uuid::now_v7());
            let id = RequestId::from(Uuid::now_v7());
            let title = format!("Spirited Away, take {n}");
            let result = requests
                .execute(
                    id,
                    submit(&member, 129, &title),
                    None,
                    &EventMetadata::default(),
                )
                .await;
            (id, result)
        }));
    }
    let mut accepted = Vec::new();
    let mut duplicates = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            (id, Ok(_)) => accepted.push(id),
            (_, Err(MediaRequestCommandError::Duplicate { existing })) => duplicates.push(existing),
            (_, Err(other)) => panic!("neither accepted nor a duplicate: {other:?}"),
        }
    }
    assert_eq!(accepted.len(), 1, "exactly one accepted");
    assert_eq!(duplicates, vec![accepted[0]; 7], "the rest name it");
    let (events, reservations, ledger): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM media_request_reservations),
                (SELECT count(*) FROM request_quota_ledger)",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!((events, reservations, ledger), (1, 1, 1));
}

#[tokio::test]
async fn a_pooled_connection_that_died_while_idle_is_replaced_before_use() {
    let (url, pool) = fresh_database().await;
    let before: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("a backend");
    // The server ends every backend of the pool (a restart, an idle timeout, a cut).
    let mut admin = PgConnection::connect(&url).await.expect("connect");
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut admin)
    .await
    .expect("terminate");
    assert!(ended >= 1, "the pool's connection was ended");
    tokio::time::sleep(medianest_store::pool::CHECK_AFTER_IDLE + Duration::from_millis(100)).await;
    let after: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("the dead connection was found by the check and replaced");
    assert_ne!(after, before);
}
