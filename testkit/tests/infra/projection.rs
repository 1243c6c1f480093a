//! The `requests` projection: read-model update and checkpoint in one transaction, so
//! redelivered events change nothing (docs/design.md §5).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use medianest_domain::media_request::{
    Media, MediaRequestCommand, MediaRequestServices, MediaType, Seasons, TmdbId,
};
use medianest_domain::{Actor, RequestId};
use medianest_nats::feed::StartAt;
use medianest_nats::{EventFeed, FeedEvent, JetStreamFeed, LogFeed, Relay, RelayOptions};
use medianest_projections::requests::{self, RequestRow, RequestsProjection};
use medianest_projections::ProjectionRunner;
use medianest_store::media_requests::MediaRequests;
use medianest_store::{checkpoint, EventMetadata};
use medianest_testkit::app::{eventually, fresh_database, fresh_stream, TestStream};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A tv request, submitted and approved by an admin: two events.
async fn a_tv_request(pool: &PgPool) -> Uuid {
    let requests = MediaRequests::new(pool.clone(), MediaRequestServices::default());
    let id = Uuid::now_v7();
    let admin = Actor::admin(Uuid::now_v7());
    requests
        .execute(
            id.into(),
            MediaRequestCommand::Submit {
                requested_by: admin.clone(),
                media: Media {
                    media_type: MediaType::Tv,
                    tmdb_id: TmdbId::new(1399).expect("positive"),
                    tvdb_id: Some(121361),
                    title: "Game of Thrones".to_string(),
                    year: Some(2011),
                },
                seasons: Some(Seasons::List(vec![2, 1])),
                is_4k: false,
                note: Some("all of it".to_string()),
            },
            None,
            &EventMetadata::default(),
        )
        .await
        .expect("submitted and auto-approved");
    id
}

async fn feed_events(pool: &PgPool, n: usize) -> Vec<FeedEvent> {
    let feed = LogFeed::new(pool.clone());
    let stream = feed
        .subscribe("test-reader", &[], StartAt::Beginning)
        .await
        .expect("subscribe");
    stream.take(n).map(|e| e.expect("an event")).collect().await
}

async fn row(pool: &PgPool, id: Uuid) -> RequestRow {
    requests::get(pool, id).await.expect("db").expect("a row")
}

#[tokio::test]
async fn applying_an_event_twice_changes_nothing() {
    let (_, pool) = fresh_database().await;
    let id = a_tv_request(&pool).await;
    let events = feed_events(&pool, 2).await;
    let runner = ProjectionRunner::new(
        pool.clone(),
        Arc::new(LogFeed::new(pool.clone())),
        Arc::new(RequestsProjection),
    );
    let name = runner.checkpoint_name();
    for event in &events {
        runner.apply_once(&name, event).await.expect("applied");
    }
    let first = row(&pool, id).await;
    assert_eq!(first.status, "approved");
    assert_eq!(first.version, 2);
    assert_eq!(first.seasons, Some(serde_json::json!([1, 2])));
    let checkpoint_after = checkpoint::load(&pool, &name).await.expect("checkpoint");
    assert_eq!(checkpoint_after, events[1].cursor);

    // Redelivered, in order or not: nothing changes.
    for event in events.iter().rev() {
        runner.apply_once(&name, event).await.expect("ignored");
    }
    assert_eq!(row(&pool, id).await, first);
    assert_eq!(
        checkpoint::load(&pool, &name).await.expect("checkpoint"),
        checkpoint_after
    );
}

#[tokio::test]
async fn a_consumer_redelivering_the_whole_stream_changes_nothing() {
    let (_, pool) = fresh_database().await;
    let TestStream {
        nats,
        js,
        name: stream,
        subjects,
    } = fresh_stream().await;
    let id = a_tv_request(&pool).await;
    let shutdown = CancellationToken::new();
    let relay = Relay::new(
        pool.clone(),
        js.clone(),
        stream.clone(),
        subjects.clone(),
        RelayOptions {
            poll_interval: Duration::from_millis(20),
            ..RelayOptions::default()
        },
    );
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move { relay.run(shutdown).await }
    });
    let feed = Arc::new(JetStreamFeed::new(
        js.clone(),
        stream.clone(),
        subjects.clone(),
    ));
    let runner = ProjectionRunner::new(pool.clone(), feed, Arc::new(RequestsProjection));
    let run = |runner: ProjectionRunner, token: CancellationToken| {
        tokio::spawn(async move { runner.run(token).await })
    };

    let first_run = CancellationToken::new();
    let task = run(runner.clone(), first_run.clone());
    let first = eventually("the projection", Duration::from_secs(10), || async {
        requests::get(&pool, id)
            .await
            .ok()
            .flatten()
            .filter(|r| r.version == 2)
    })
    .await;
    first_run.cancel();
    task.await.expect("task").expect("stopped");

    // Forget the consumer: JetStream delivers every event again from the start.
    js.get_stream(&stream)
        .await
        .expect("stream")
        .delete_consumer(&runner.checkpoint_name())
        .await
        .expect("consumer deleted");
    let second_run = CancellationToken::new();
    let task = run(runner.clone(), second_run.clone());
    eventually("the redelivery", Duration::from_secs(10), || async {
        let js = async_nats::jetstream::new(nats.clone());
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
            .get_stream(&stream)
            .await
            .ok()?
            .get_consumer(&runner.checkpoint_name())
            .await
            .ok()?;
        let info = consumer.info().await.ok()?;
        (info.ack_floor.stream_sequence >= 2).then_some(())
    })
    .await;
    second_run.cancel();
    task.await.expect("task").expect("stopped");
    shutdown.cancel();
    assert_eq!(
        row(&pool, id).await,
        first,
        "redelivered events changed nothing"
    );
}

/// A projection that records every event it applies, in the order applied, so that a skip
/// or a repeat shows; it can stop dead at its `block_at`-th call, like a process that
/// crashes there.
struct Recorder {
    block_at: Option<usize>,
    calls: std::sync::atomic::AtomicUsize,
    blocked: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl medianest_projections::Projection for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["media_request"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["projection_recorder"]
    }

    async fn apply(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &FeedEvent,
    ) -> Result<(), medianest_projections::ProjectionError> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        sqlx::query("INSERT INTO projection_recorder (position) VALUES ($1)")
            .bind(event.cursor.position)
            .execute(&mut *tx)
            .await?;
        if self.block_at == Some(call) {
            self.blocked.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

/// `n` movie requests by an admin (submitted and auto-approved: two events each).
async fn many_requests(pool: &PgPool, n: u32) {
    let requests = MediaRequests::new(pool.clone(), MediaRequestServices::default());
    let admin = Actor::admin(Uuid::now_v7());
    for tmdb_id in 1..=n {
        requests
            .execute(
                RequestId::new(),
                MediaRequestCommand::Submit {
                    requested_by: admin.clone(),
                    media: Media {
                        media_type: MediaType::Movie,
                        tmdb_id: TmdbId::new(tmdb_id).expect("positive"),
                        tvdb_id: None,
                        title: format!("Movie {tmdb_id}"),
                        year: Some(2000),
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_batch_neither_skips_nor_repeats_an_event() {
    let (_, pool) = fresh_database().await;
    sqlx::query(
        "CREATE TABLE projection_recorder (n bigserial PRIMARY KEY, position bigint NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("the recorder's table");
    many_requests(&pool, 600).await;
    let recorder = |block_at| {
        Arc::new(Recorder {
            block_at,
            calls: Default::default(),
            blocked: Default::default(),
        })
    };
    let feed = Arc::new(LogFeed::new(pool.clone()));

    // The first run dies in its third batch (batches of 500 events).
    let crashing = recorder(Some(1_100));
    let runner = ProjectionRunner::new(pool.clone(), feed.clone(), crashing.clone());
    let name = runner.checkpoint_name();
    let task = tokio::spawn({
        let runner = runner.clone();
        async move { runner.run(CancellationToken::new()).await }
    });
    tokio::time::timeout(Duration::from_secs(30), crashing.blocked.notified())
        .await
        .expect("the runner reached the crash point");
    task.abort();
    let _ = task.await;
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_recorder")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        recorded, 1_000,
        "two batches committed, the third rolled back"
    );
    let at = checkpoint::load(&pool, &name).await.unwrap();
    let thousandth: i64 = sqlx::query_scalar(
        "SELECT global_position FROM events ORDER BY tx_id, global_position OFFSET 999 LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        at.position, thousandth,
        "the checkpoint is the last committed batch's"
    );

    // The restarted runner goes on from the checkpoint to the head.
    let runner = ProjectionRunner::new(pool.clone(), feed.clone(), recorder(None));
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (runner, stop) = (runner.clone(), stop.clone());
        async move { runner.run(stop).await }
    });
    let head = medianest_store::log::head_position(&pool).await.unwrap();
    eventually("the head", Duration::from_secs(30), || async {
        (checkpoint::load(&pool, &name).await.ok()?.position == head).then_some(())
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM projection_recorder ORDER BY n")
            .fetch_all(&pool)
            .await
            .unwrap();
    let log: Vec<i64> = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE aggregate_type = 'media_request'
          ORDER BY tx_id, global_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(log.len(), 1_200);
    assert_eq!(applied, log, "every event once, in log order");

    // Delivered again: nothing changes.
    let again = feed_events(&pool, 1_200).await;
    assert_eq!(runner.apply_batch(&name, &again[..500]).await.unwrap(), 0);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_recorder")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1_200);
}
