//! The relay from the PostgreSQL log into JetStream, against real PostgreSQL and NATS.

use std::time::Duration;

use medianest_domain::media_request::{
    Media, MediaRequestCommand, MediaRequestServices, MediaType, TmdbId,
};
use medianest_domain::{Actor, RequestId};
use medianest_nats::{Relay, RelayError, RelayOptions};
use medianest_store::lock::InstanceLock;
use medianest_store::media_requests::MediaRequests;
use medianest_store::{checkpoint, EventMetadata};
use medianest_testkit::app::{fresh_database, fresh_stream, stream_messages, TestStream};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Writes `n` submitted movie requests (one event each).
async fn write_requests(pool: &PgPool, n: u32) {
    let requests = MediaRequests::new(pool.clone(), MediaRequestServices::default());
    for i in 1..=n {
        requests
            .execute(
                RequestId::new(),
                MediaRequestCommand::Submit {
                    requested_by: Actor::user(Uuid::now_v7()),
                    media: Media {
                        media_type: MediaType::Movie,
                        tmdb_id: TmdbId::new(1000 + i).expect("positive"),
                        tvdb_id: None,
                        title: format!("Movie {i}"),
                        year: None,
                    },
                    seasons: None,
                    is_4k: false,
                    note: None,
                },
                None,
                &EventMetadata::default(),
            )
            .await
            .expect("submitted");
    }
    // The log's readers see an event once no older transaction is open on the server (the
    // fence): a test beside this one can hold it back for a moment, and a relay started
    // then would read shorter batches than the tests count on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while medianest_store::log::read_after(pool, medianest_store::Cursor::default(), 100, None)
        .await
        .expect("read the log")
        .len()
        < n as usize
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Setup {
    pool: PgPool,
    nats: async_nats::Client,
    relay: Relay,
    stream: String,
    subjects: medianest_nats::Subjects,
}

async fn setup(options: RelayOptions) -> Setup {
    let (_, pool) = fresh_database().await;
    let TestStream {
        nats,
        js,
        name: stream,
        subjects,
    } = fresh_stream().await;
    let relay = Relay::new(pool.clone(), js, stream.clone(), subjects.clone(), options);
    Setup {
        pool,
        nats,
        relay,
        stream,
        subjects,
    }
}

fn quick(crash_after_publish: Option<usize>) -> RelayOptions {
    RelayOptions {
        batch_size: 2,
        poll_interval: Duration::from_millis(20),
        retry_delay: Duration::from_millis(50),
        crash_after_publish,
    }
}

#[tokio::test]
async fn a_relay_killed_between_publish_and_cursor_save_leaves_every_event_once() {
    let setup = setup(quick(Some(3))).await;
    write_requests(&setup.pool, 5).await;

    // Batches of 2: the first is published and saved, the second published (and the third
    // sent while its acks were awaited) and then the relay dies before saving its cursor.
    let crashed = setup.relay.run(CancellationToken::new()).await;
    assert!(
        matches!(crashed, Err(RelayError::InjectedCrash(4))),
        "{crashed:?}"
    );
    let saved = checkpoint::load(&setup.pool, &setup.relay.checkpoint_name())
        .await
        .expect("checkpoint");
    assert!(saved.position > 0, "the first batch's cursor was saved");
    let second: i64 = sqlx::query_scalar(
        "SELECT global_position FROM events ORDER BY tx_id, global_position OFFSET 1 LIMIT 1",
    )
    .fetch_one(&setup.pool)
    .await
    .expect("log");
    assert_eq!(
        saved.position, second,
        "only the first batch's cursor was saved"
    );
    assert!(stream_messages(&setup.nats, &setup.stream).await.len() >= 4);

    // Restarted, it publishes the unsaved batch again (dropped as duplicates) and the rest.
    let shutdown = CancellationToken::new();
    let relay = Relay::new(
        setup.pool.clone(),
        async_nats::jetstream::new(setup.nats.clone()),
        setup.stream.clone(),
        setup.subjects.clone(),
        quick(None),
    );
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { relay.run(shutdown).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let messages = loop {
        let saved = checkpoint::load(&setup.pool, &setup.relay.checkpoint_name())
            .await
            .expect("checkpoint");
        let head = medianest_store::log::head_position(&setup.pool)
            .await
            .expect("head");
        if saved.position == head || tokio::time::Instant::now() > deadline {
            break stream_messages(&setup.nats, &setup.stream).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    shutdown.cancel();
    running.await.expect("task").expect("relay stopped cleanly");

    let mut ids: Vec<String> = messages.iter().filter_map(|m| m.msg_id.clone()).collect();
    assert_eq!(ids.len(), 5, "every event exactly once: {ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    for message in &messages {
        assert_eq!(message.body["specversion"], "1.0");
        assert_eq!(
            message.msg_id.as_deref(),
            message.body["id"].as_str(),
            "Nats-Msg-Id is the CloudEvent id"
        );
    }
}

#[tokio::test]
async fn only_one_relay_is_active_at_a_time() {
    let setup = setup(quick(None)).await;
    write_requests(&setup.pool, 3).await;
    let name = setup.relay.checkpoint_name();
    let held = InstanceLock::try_acquire(&setup.pool, &name)
        .await
        .expect("db")
        .expect("the lock is free");

    // A relay started while another instance holds the lock waits and publishes nothing.
    let shutdown = CancellationToken::new();
    let relay = setup.relay.clone();
    let standby = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { relay.run(shutdown).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(stream_messages(&setup.nats, &setup.stream).await.is_empty());

    // When the active one goes away, the standby takes over.
    held.release().await.expect("release");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stream_messages(&setup.nats, &setup.stream).await.len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "standby never took over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    standby.await.expect("task").expect("clean stop");
    assert_eq!(stream_messages(&setup.nats, &setup.stream).await.len(), 3);
}
