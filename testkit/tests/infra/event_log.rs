//! The global log reader behind the transaction fence (docs/design.md §2), against real
//! PostgreSQL: transactions that commit out of order lose nothing and repeat nothing.

use medianest_store::log::{read_after, LogTail};
use medianest_store::{checkpoint, Cursor};
use medianest_testkit::app::fresh_database;
use serde_json::json;
use sqlx::{PgConnection, PgPool};

/// Inserts an event and answers its global position.
async fn insert_event(conn: &mut PgConnection, aggregate_id: &str, sequence: i64) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('media_request', $1, $2, 'processing', '1.0', $3, $4)
         RETURNING global_position",
    )
    .bind(aggregate_id)
    .bind(sequence)
    .bind(json!("processing"))
    .bind(json!({"correlation_id": "c", "actor": "test"}))
    .fetch_one(conn)
    .await
    .expect("insert an event")
}

fn ids(batch: &[medianest_store::StoredEvent]) -> Vec<&str> {
    batch.iter().map(|e| e.aggregate_id.as_str()).collect()
}

async fn read_all(pool: &PgPool, cursor: &mut Cursor) -> Vec<medianest_store::StoredEvent> {
    let batch = read_after(pool, *cursor, 100, None).await.expect("read");
    if let Some(last) = batch.last() {
        *cursor = last.cursor();
    }
    batch
}

/// [`read_all`] until `expected` events have been read (at most 10 s): the fence is
/// server-wide, so a transaction of a test running beside this one (in another database)
/// can hold it back for a moment after a commit.
async fn read_settled(
    pool: &PgPool,
    cursor: &mut Cursor,
    expected: usize,
) -> Vec<medianest_store::StoredEvent> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut events = Vec::new();
    loop {
        events.extend(read_all(pool, cursor).await);
        if events.len() >= expected || tokio::time::Instant::now() >= deadline {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn transactions_committing_out_of_order_lose_nothing_and_repeat_nothing() {
    let (_, pool) = fresh_database().await;
    let mut cursor = Cursor::default();

    // A writes first (smaller global position) but commits last.
    let mut a = pool.begin().await.expect("begin A");
    let position_a = insert_event(&mut a, "a", 1).await;
    let mut b = pool.begin().await.expect("begin B");
    let position_b = insert_event(&mut b, "b", 1).await;
    assert!(position_a < position_b, "A holds the smaller position");
    b.commit().await.expect("commit B");

    // B is committed, but A (older) is still running: nothing may be read past the fence,
    // or A's event, whose position is smaller than B's, would be skipped for ever.
    assert!(read_all(&pool, &mut cursor).await.is_empty());
    a.commit().await.expect("commit A");
    let batch = read_settled(&pool, &mut cursor, 2).await;
    assert_eq!(ids(&batch), ["a", "b"], "both, in transaction order");
    assert!(
        read_all(&pool, &mut cursor).await.is_empty(),
        "nothing twice"
    );

    // A rolled-back transaction leaves a hole in the positions, never a stuck reader.
    let mut c = pool.begin().await.expect("begin C");
    insert_event(&mut c, "c", 1).await;
    c.rollback().await.expect("rollback C");
    let mut d = pool.begin().await.expect("begin D");
    insert_event(&mut d, "d", 1).await;
    d.commit().await.expect("commit D");
    assert_eq!(ids(&read_settled(&pool, &mut cursor, 1).await), ["d"]);
}

#[tokio::test]
async fn the_tail_wakes_up_for_new_events_and_resumes_from_a_checkpoint() {
    let (_, pool) = fresh_database().await;
    let mut tail = LogTail::new(pool.clone(), Cursor::default());
    let waiting = tokio::spawn(async move {
        let batch = tail.next_batch().await.expect("a batch");
        (batch, tail.cursor())
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut conn = pool.acquire().await.expect("conn");
    insert_event(&mut conn, "x", 1).await;
    let (batch, cursor) = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("woken in time")
        .expect("task");
    assert_eq!(ids(&batch), ["x"]);

    checkpoint::save(&pool, "reader", cursor)
        .await
        .expect("save");
    insert_event(&mut conn, "y", 1).await;
    let resumed = checkpoint::load(&pool, "reader").await.expect("load");
    assert_eq!(resumed, cursor);
    let mut cursor = resumed;
    assert_eq!(ids(&read_settled(&pool, &mut cursor, 1).await), ["y"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readers_of_a_database_share_one_listen_connection_and_each_is_woken() {
    let (_, pool) = fresh_database().await;
    // A poll interval far beyond the test's wait: only a notification can deliver in time.
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let mut tail = LogTail::new(pool.clone(), Cursor::default())
                .poll_interval(std::time::Duration::from_secs(600));
            tokio::spawn(async move { tail.next_batch().await.expect("a batch") })
        })
        .collect();
    let listening = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .fetch_one(&pool)
        .await
        .expect("count listeners")
    };
    medianest_testkit::app::eventually(
        "a LISTEN connection",
        std::time::Duration::from_secs(10),
        || async { (listening().await >= 1).then_some(()) },
    )
    .await;
    assert_eq!(
        listening().await,
        1,
        "one LISTEN connection for three readers"
    );
    // Events keep coming until every reader has one: a transaction of a test beside this one
    // can hold the fence back past one notification.
    let mut conn = pool.acquire().await.expect("conn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut sequence = 0;
    while readers.iter().any(|r| !r.is_finished()) {
        assert!(
            std::time::Instant::now() < deadline,
            "every reader woken in time"
        );
        sequence += 1;
        insert_event(&mut conn, "w", sequence).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for reader in readers {
        let batch = reader.await.expect("reader");
        assert_eq!(
            batch.first().map(|e| e.sequence),
            Some(1),
            "from the start, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_on_a_new_pool_is_woken_after_the_first_pool_of_its_database_closed() {
    let (url, first) = fresh_database().await;
    let long = std::time::Duration::from_secs(600);
    // A reader of the first pool that has waited once, and is kept (not dropped).
    let mut kept = LogTail::new(first.clone(), Cursor::default()).poll_interval(long);
    let waiting = tokio::spawn(async move {
        kept.next_batch().await.expect("a batch");
        kept
    });
    let mut conn = first.acquire().await.expect("conn");
    let mut sequence = 0;
    while !waiting.is_finished() {
        sequence += 1;
        insert_event(&mut conn, "a", sequence).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _kept = waiting.await.expect("reader");
    drop(conn);
    first.close().await;
    // The first pool's listening task ends with it; a reader of a second pool must get a
    // live one, not the ended task that the kept reader still refers to.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let second = medianest_store::connect(&url, 4).await.expect("connect");
    let mut reader = LogTail::new(second.clone(), Cursor::default()).poll_interval(long);
    // Read what is there (what the kept reader read comes from memory, the rest after).
    while !reader.poll().await.expect("read what is there").is_empty() {}
    let woken = tokio::spawn(async move { reader.next_batch().await.expect("a batch") });
    let mut conn = second.acquire().await.expect("conn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !woken.is_finished() {
        assert!(std::time::Instant::now() < deadline, "woken in time");
        sequence += 1;
        insert_event(&mut conn, "b", sequence).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        woken
            .await
            .expect("reader")
            .first()
            .map(|e| e.aggregate_id.as_str()),
        Some("b")
    );
}

#[tokio::test]
async fn a_checkpoint_never_moves_back() {
    let (_url, pool) = fresh_database().await;
    let ahead = Cursor {
        tx_id: 900,
        position: 12,
    };
    checkpoint::save(&pool, "reader", ahead)
        .await
        .expect("save");
    // A late ack of an earlier event (a replay's swap moved the checkpoint past it).
    let behind = Cursor {
        tx_id: 800,
        position: 7,
    };
    checkpoint::save(&pool, "reader", behind)
        .await
        .expect("save");
    assert_eq!(
        checkpoint::load(&pool, "reader").await.expect("load"),
        ahead
    );
    let later = Cursor {
        tx_id: 901,
        position: 13,
    };
    checkpoint::save(&pool, "reader", later)
        .await
        .expect("save");
    assert_eq!(
        checkpoint::load(&pool, "reader").await.expect("load"),
        later
    );
}

#[tokio::test]
async fn a_tail_at_the_head_takes_the_commits_of_its_pace_in_one_read() {
    let (_, pool) = fresh_database().await;
    let mut conn = pool.acquire().await.expect("conn");
    insert_event(&mut conn, "first", 1).await;
    let mut tail =
        LogTail::new(pool.clone(), Cursor::default()).pace(std::time::Duration::from_secs(1));
    assert_eq!(ids(&tail.next_batch().await.expect("a batch")), ["first"]);
    let waiting = tokio::spawn(async move { tail.next_batch().await.expect("a batch") });
    // Three commits, each waking the tail, within its pace after the last read.
    for id in ["a", "b", "c"] {
        insert_event(&mut conn, id, 1).await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let batch = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("read in time")
        .expect("task");
    assert_eq!(ids(&batch), ["a", "b", "c"], "one read for the three");
}

/// Inserts an event in its own transaction and answers its cursor.
async fn committed_event(pool: &PgPool, aggregate_id: &str) -> Cursor {
    let mut conn = pool.acquire().await.expect("conn");
    let position = insert_event(&mut conn, aggregate_id, 1).await;
    medianest_store::log::cursor_of(pool, position)
        .await
        .expect("read")
        .expect("committed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_follows_the_checkpoints_this_process_commits_of_its_own_database() {
    use checkpoint::{wait_until_reached, WaitOutcome};
    let long = std::time::Duration::from_secs(30);
    let (_, pool) = fresh_database().await;
    let (_, other) = fresh_database().await;
    let event = committed_event(&pool, "x").await;
    // The same reader name in another database moving past the position is not this one.
    checkpoint::committed(
        &other,
        "reader",
        Cursor {
            tx_id: i64::MAX,
            position: i64::MAX,
        },
    );
    let short = std::time::Duration::from_millis(300);
    assert_eq!(
        wait_until_reached(&pool, &["reader"], event.position, short)
            .await
            .expect("wait"),
        WaitOutcome::TimedOut
    );
    // Announced in this process (the table is not asked again for 50 ms, and it still
    // holds no checkpoint): the wait ends.
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(
            async move { wait_until_reached(&pool, &["reader"], event.position, long).await },
        )
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    checkpoint::committed(&pool, "reader", event);
    assert_eq!(
        waiting.await.expect("task").expect("wait"),
        WaitOutcome::Reached
    );
    // A reader of another process (only the table knows): found by asking the table.
    let later = committed_event(&pool, "y").await;
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move {
            wait_until_reached(&pool, &["elsewhere"], later.position, long).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    checkpoint::save(&pool, "elsewhere", later)
        .await
        .expect("save");
    assert_eq!(
        waiting.await.expect("task").expect("wait"),
        WaitOutcome::Reached
    );
}

/// Polls `tail` until `expected` events have been read (at most 10 s; see [`read_settled`]).
async fn poll_settled(tail: &mut LogTail, expected: usize) -> Vec<medianest_store::StoredEvent> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut events = Vec::new();
    while events.len() < expected && tokio::time::Instant::now() < deadline {
        events.extend(tail.poll().await.expect("read"));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    events
}

#[tokio::test]
async fn the_tails_of_a_database_share_what_one_of_them_read() {
    let (url, pool) = fresh_database().await;
    let before = committed_event(&pool, "before").await;
    // The window begins where the first tail reads from.
    let mut first = LogTail::new(pool.clone(), before);
    for id in ["a", "b", "c"] {
        committed_event(&pool, id).await;
    }
    assert_eq!(ids(&poll_settled(&mut first, 3).await), ["a", "b", "c"]);
    // A tail of the same database whose pool is closed: what the first one read needs no
    // connection.
    let closed = PgPool::connect_lazy(&url).expect("a pool");
    closed.close().await;
    let mut second = LogTail::new(closed.clone(), before);
    assert_eq!(
        ids(&second.poll().await.expect("from memory")),
        ["a", "b", "c"]
    );
    // At the window's end it asks the log, as does a tail behind the window's start.
    assert!(second.poll().await.is_err(), "read past the window");
    let mut behind = LogTail::new(closed.clone(), Cursor::default());
    assert!(behind.poll().await.is_err(), "read behind the window");
    // The first tail still reads on.
    committed_event(&pool, "d").await;
    assert_eq!(ids(&poll_settled(&mut first, 1).await), ["d"]);
    // A tail past the window's end (as after a replay moved its checkpoint) reads the log and
    // the window begins again at its cursor; the first tail, now behind it, reads the log.
    let e = committed_event(&pool, "e").await;
    committed_event(&pool, "f").await;
    let mut past = LogTail::new(pool.clone(), e);
    assert_eq!(ids(&poll_settled(&mut past, 1).await), ["f"]);
    assert_eq!(
        ids(&LogTail::new(closed, e).poll().await.expect("from memory")),
        ["f"]
    );
    assert_eq!(ids(&poll_settled(&mut first, 2).await), ["e", "f"]);
}
