//! The benchmark harness of event processing (issue 13): one run, one table of figures, each
//! with the ratio to a reference measured in the same run (these machines are shared and
//! noisy, so absolute figures drift; ratios hold).
//!
//! `cargo bench -p medianest-testkit --bench throughput [-- <section>…]`, sections (all by
//! default):
//!
//! - `projections`: a generated log of `MEDIANEST_BENCH_EVENTS` (default 100,000) events, a
//!   plain `SELECT` scan of it, then the `requests` projection's live runner from an empty
//!   checkpoint one event per transaction (the old path) and in batches (the new path), and
//!   the other public projections batched;
//! - `replay`: `Replay::run` of `requests` over the same log, against the scan;
//! - `relay`: the relay draining the same log into a fresh stream, against the scan;
//! - `commands`: `POST /api/v1/requests` from 32 connections for `MEDIANEST_BENCH_SECONDS`
//!   (default 10), against pgbench running the minimum SQL of one submit (the reservation,
//!   reading the aggregate's events, inserting the event, one transaction) with 32 clients on
//!   the same schema; then the projections' lag behind the log and the time to drain it;
//! - `latency`: 300 commands/s at a fixed rate (latency from each command's scheduled time,
//!   so a stall is not hidden), each followed by a read of its request with `min_position`:
//!   the event → read model latency;
//! - `queries`: `GET /api/v1/dashboard` and `GET /api/v1/requests?limit=20` from 32
//!   connections over the history the other sections left; then list, detail, search and
//!   dashboard at 1,000 req/s each for `MEDIANEST_BENCH_SECONDS`, after their first request
//!   (timed alone: nothing cached yet) and one second at the same rate that is not counted;
//! - `forwarder`: `MEDIANEST_BENCH_RATE × MEDIANEST_BENCH_SECONDS` approved requests written
//!   to the log at once, forwarded by the saga to an Overseerr simulator answering in 50 ms;
//! - `serve`: `medianest serve` as its own process driven by wrk, against pgbench, and its
//!   resident memory ([`serve`]; needs `cargo build --release -p medianest` and wrk).
//!
//! PostgreSQL and NATS as for the tests (`scripts/test`'s services); pgbench from Debian's
//! `postgresql` packages. Under `cargo test` (no `--bench`) every section runs once on a
//! tiny size, as a smoke test of the harness itself. Results: docs/benchmarks.md.

#[path = "throughput/serve.rs"]
mod serve;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use hdrhistogram::Histogram;
use medianest_nats::{EventFeed, LogFeed, Relay, RelayOptions};
use medianest_projections::replay::{Replay, ReplayOptions};
use medianest_projections::ProjectionRunner;
use medianest_store::{checkpoint, StoredEvent};
use medianest_testkit::app::{fresh_database, fresh_stream, TestApp, TestOptions};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const REQUESTER: &str = "01a1fca1-0d53-75ee-ac89-31047ed37289";
const ADMIN: &str = "01a1fca1-0ba7-7112-96f6-91c99742cd65";
const CONNECTIONS: usize = 32;
/// The status recorded for a request that got no answer (connection failed or timed out).
const UNANSWERED: u16 = 0;

/// The sizes of one run.
struct Sizes {
    events: i64,
    seconds: u64,
    rate: u64,
    /// The fixed rate of the query latencies (issue 13: p99 below 10 ms at 1,000 req/s).
    query_rate: u64,
}

/// One line of the table.
struct Row {
    what: String,
    figure: String,
    reference: String,
    ratio: String,
}

fn row(what: impl Into<String>, figure: String, reference: String, ratio: String) -> Row {
    Row {
        what: what.into(),
        figure,
        reference,
        ratio,
    }
}

/// Writes `requests` media requests of `events` events each (of: submitted, approved,
/// forwarded, processing, available), 50,000 requests per statement; tmdb ids from `first`.
async fn generate(
    pool: &PgPool,
    first: i64,
    requests: i64,
    events: i32,
) -> Result<(), sqlx::Error> {
    let chunk = 50_000;
    let (mut first, end) = (first, first + requests - 1);
    while first <= end {
        let last = (first + chunk - 1).min(end);
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata)
             SELECT 'media_request', md5(g::text)::uuid::text, e.seq, e.type, '1.0',
                    CASE e.seq
                      WHEN 1 THEN jsonb_build_object('submitted', jsonb_build_object(
                          'is_4k', false, 'requested_by', $3::text,
                          'media', jsonb_build_object('year', 1950 + g % 75,
                              'title', 'Film ' || g, 'tmdb_id', g, 'media_type', 'movie')))
                      WHEN 2 THEN jsonb_build_object('approved',
                          jsonb_build_object('by', $4::text, 'auto', false))
                      WHEN 3 THEN jsonb_build_object('forwarded',
                          jsonb_build_object('overseerr_request_id', g))
                      WHEN 4 THEN '\"processing\"'::jsonb
                      ELSE '{\"available\": {\"source\": \"overseerr\"}}'::jsonb
                    END,
                    jsonb_build_object('actor', $4::text)
               FROM generate_series($1::bigint, $2::bigint) g,
                    (VALUES (1, 'submitted'), (2, 'approved'), (3, 'forwarded'),
                            (4, 'processing'), (5, 'available')) e(seq, type)
              WHERE e.seq <= $5
              ORDER BY g, e.seq",
        )
        .bind(first)
        .bind(last)
        .bind(REQUESTER)
        .bind(ADMIN)
        .bind(events)
        .execute(pool)
        .await?;
        first = last + 1;
    }
    sqlx::query("ANALYZE events").execute(pool).await?;
    Ok(())
}

/// The plain scan: every event of the log in log order, decoded into a `StoredEvent`;
/// answers events per second.
async fn scan(pool: &PgPool) -> Result<f64, sqlx::Error> {
    let started = Instant::now();
    let mut rows = sqlx::query_as::<_, StoredEvent>(
        "SELECT global_position AS position, tx_id::text::bigint AS tx_id, aggregate_type,
                aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at
           FROM events ORDER BY tx_id, global_position",
    )
    .fetch(pool);
    let mut n = 0u64;
    while let Some(event) = rows.try_next().await? {
        std::hint::black_box(&event);
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Runs `projection` from an empty checkpoint (and empty tables) to the head of the log in
/// batches of at most `max_batch`; answers events per second.
async fn project(
    pool: &PgPool,
    name: &str,
    max_batch: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let projection = medianest_projections::by_name(name).ok_or("no such projection")?;
    for table in projection.tables() {
        sqlx::query(&format!("TRUNCATE {table}"))
            .execute(pool)
            .await?;
    }
    let runner = ProjectionRunner::new(
        pool.clone(),
        Arc::new(LogFeed::new(pool.clone())) as Arc<dyn EventFeed>,
        projection,
    )
    .with_max_batch(max_batch);
    let checkpoint_name = runner.checkpoint_name();
    sqlx::query("DELETE FROM checkpoints WHERE name = $1")
        .bind(&checkpoint_name)
        .execute(pool)
        .await?;
    let head = medianest_store::log::head_position(pool).await?;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { runner.run(stop).await }
    });
    loop {
        if checkpoint::load(pool, &checkpoint_name).await?.position >= head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.cancel();
    task.await??;
    Ok(events as f64 / seconds)
}

fn rate(per_second: f64) -> String {
    format!("{per_second:.0} events/s")
}

fn times(figure: f64, reference: f64) -> String {
    format!("{:.2}×", figure / reference.max(f64::EPSILON))
}

async fn log_sections(
    sizes: &Sizes,
    sections: &[String],
    rows: &mut Vec<Row>,
) -> Result<(), Box<dyn std::error::Error>> {
    let wants = |s: &str| sections.iter().any(|x| x == s);
    if !(wants("projections") || wants("replay") || wants("relay")) {
        return Ok(());
    }
    let (_, pool) = fresh_database().await;
    let started = Instant::now();
    generate(&pool, 1, sizes.events / 5, 5).await?;
    eprintln!(
        "generated {} events in {:.1} s",
        sizes.events,
        started.elapsed().as_secs_f64()
    );
    let scanned = scan(&pool).await?;
    let reference = format!("scan {}", rate(scanned));
    if wants("projections") {
        let old = project(&pool, "requests", 1).await?;
        let new = project(&pool, "requests", medianest_projections::runner::MAX_BATCH).await?;
        rows.push(row(
            "projection `requests`, one event per transaction (old path)",
            rate(old),
            reference.clone(),
            times(old, scanned),
        ));
        rows.push(row(
            "projection `requests`, batched (new path)",
            rate(new),
            format!("old path {}", rate(old)),
            format!("{} ({} of the scan)", times(new, old), times(new, scanned)),
        ));
        for name in ["request_search", "dashboard", "downloads"] {
            let batched = project(&pool, name, medianest_projections::runner::MAX_BATCH).await?;
            rows.push(row(
                format!("projection `{name}`, batched"),
                rate(batched),
                reference.clone(),
                times(batched, scanned),
            ));
        }
    }
    if wants("replay") {
        let projection = medianest_projections::by_name("requests").ok_or("no projection")?;
        let started = Instant::now();
        let report = Replay::new(pool.clone(), projection, ReplayOptions::default())
            .run(&|_| {})
            .await?;
        let replayed = report.events as f64 / started.elapsed().as_secs_f64();
        rows.push(row(
            "replay of `requests` (shadow tables, swap)",
            rate(replayed),
            reference.clone(),
            times(replayed, scanned),
        ));
    }
    if wants("relay") {
        let stream = fresh_stream().await;
        let relay = Relay::new(
            pool.clone(),
            stream.js.clone(),
            stream.name.clone(),
            stream.subjects.clone(),
            RelayOptions {
                batch_size: 1_000,
                poll_interval: Duration::from_millis(20),
                ..RelayOptions::default()
            },
        );
        let name = relay.checkpoint_name();
        let head = medianest_store::log::head_position(&pool).await?;
        let stop = CancellationToken::new();
        let started = Instant::now();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { relay.run(stop).await }
        });
        while checkpoint::load(&pool, &name).await?.position < head {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let relayed = sizes.events as f64 / started.elapsed().as_secs_f64();
        stop.cancel();
        task.await??;
        // A million events are not left on the machine's JetStream.
        stream.js.delete_stream(&stream.name).await?;
        rows.push(row(
            "relay draining the log to JetStream",
            rate(relayed),
            reference,
            times(relayed, scanned),
        ));
    }
    pool.close().await;
    Ok(())
}

/// Latencies and outcomes of an HTTP load.
struct Load {
    histogram: Histogram<u64>,
    ok: u64,
    server_errors: u64,
    unanswered: u64,
    other: u64,
    seconds: f64,
}

impl Load {
    fn new() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds"),
            ok: 0,
            server_errors: 0,
            unanswered: 0,
            other: 0,
            seconds: 0.0,
        }
    }

    fn record(&mut self, status: u16, started: Instant) {
        self.record_took(status, started.elapsed());
    }

    fn record_took(&mut self, status: u16, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let _ = self.histogram.record(micros.max(1));
        match status {
            200..=299 => self.ok += 1,
            UNANSWERED => self.unanswered += 1,
            500..=599 => self.server_errors += 1,
            _ => self.other += 1,
        }
    }

    fn merge(&mut self, other: &Load) {
        let _ = self.histogram.add(&other.histogram);
        self.ok += other.ok;
        self.server_errors += other.server_errors;
        self.unanswered += other.unanswered;
        self.other += other.other;
    }

    fn per_second(&self) -> f64 {
        self.ok as f64 / self.seconds.max(f64::EPSILON)
    }

    fn millis(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    fn describe(&self, unit: &str) -> String {
        format!(
            "{:.0} {unit}/s, p50 {:.1} ms, p99 {:.1} ms{}",
            self.per_second(),
            self.millis(0.5),
            self.millis(0.99),
            if self.server_errors + self.unanswered + self.other > 0 {
                format!(
                    ", {} 5xx, {} unanswered (the client gave up), {} other",
                    self.server_errors, self.unanswered, self.other
                )
            } else {
                String::new()
            }
        )
    }
}

/// `CONNECTIONS` clients sending `request(i)` back to back for `seconds`.
async fn closed_loop<F>(seconds: u64, request: F) -> Load
where
    F: Fn(u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (request, counter) = (request.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut load = Load::new();
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let sent = Instant::now();
                let status = match request(i).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => UNANSWERED,
                };
                load.record(status, sent);
            }
            load
        }));
    }
    let mut total = Load::new();
    for task in tasks {
        total.merge(&task.await.expect("a load task"));
    }
    total.seconds = started.elapsed().as_secs_f64();
    total
}

/// `request(i)` sent at a fixed `rate` per second for `seconds`, each on its own task; the
/// latency is counted from each request's scheduled time, so a stall is not hidden.
async fn fixed_rate<F>(rate: u64, seconds: u64, request: F) -> Load
where
    F: Fn(u64) -> reqwest::RequestBuilder,
{
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..rate * seconds {
        let scheduled = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let request = request(i);
        tasks.push(tokio::spawn(async move {
            let status = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let _ = response.bytes().await;
                    status
                }
                Err(_) => UNANSWERED,
            };
            (status, scheduled.elapsed())
        }));
    }
    let mut load = Load::new();
    for task in tasks {
        let (status, took) = task.await.expect("a request task");
        load.record_took(status, took);
    }
    load.seconds = started.elapsed().as_secs_f64();
    load
}

/// pgbench's minimum transaction of one submit, `CONNECTIONS` clients for `seconds`, on a
/// fresh database with MediaNest's schema; answers transactions per second.
async fn pgbench(seconds: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let (url, pool) = fresh_database().await;
    pool.close().await;
    let script =
        std::env::temp_dir().join(format!("medianest-submit-{}.sql", uuid::Uuid::now_v7()));
    std::fs::write(
        &script,
        r"\set tmdb random(1, 2000000000)
BEGIN;
INSERT INTO media_request_reservations (media_type, tmdb_id, is_4k, request_id)
  VALUES ('movie', :tmdb, false, gen_random_uuid()) ON CONFLICT DO NOTHING;
SELECT sequence, payload FROM events
 WHERE aggregate_type = 'media_request' AND aggregate_id = 'pgbench-' || :tmdb ORDER BY sequence;
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
  VALUES ('media_request', 'pgbench-' || :client_id || '-' || :tmdb, 1, 'submitted', '1.0',
          '{}', '{}');
COMMIT;
",
    )?;
    let output = tokio::process::Command::new("pgbench")
        .args(["-n", "-c", &CONNECTIONS.to_string(), "-j", "2", "-T"])
        .arg(seconds.to_string())
        .arg("-f")
        .arg(&script)
        .arg(&url)
        .output()
        .await?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .ok_or_else(|| {
            format!(
                "pgbench printed no tps: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into()
        })
}

/// How far the slowest projection is behind the head of the log: the committed events after
/// its checkpoint in log order (`(tx_id, global_position)`, as the projections read). Not the
/// difference of positions: a command's transaction takes its id before its event takes a
/// position, so a checkpoint may carry a lower position than events already applied.
async fn lag(pool: &PgPool) -> Result<i64, medianest_store::StoreError> {
    let mut worst = 0;
    for projection in medianest_projections::all() {
        let name = format!("projection-{}", projection.name());
        let cursor = medianest_store::checkpoint::load(pool, &name).await?;
        worst = worst.max(medianest_store::log::backlog(pool, cursor).await?.0);
    }
    Ok(worst)
}

fn submit(app: &TestApp, tmdb_id: u64) -> reqwest::RequestBuilder {
    app.http
        .post(app.url("/api/v1/requests"))
        .bearer_auth(&app.admin.token)
        .json(&json!({"media_type": "movie", "tmdb_id": tmdb_id, "title": format!("Film {tmdb_id}"), "year": 2000, "is_4k": false}))
}

async fn app_sections(
    sizes: &Sizes,
    sections: &[String],
    rows: &mut Vec<Row>,
) -> Result<(), Box<dyn std::error::Error>> {
    let wants = |s: &str| sections.iter().any(|x| x == s);
    if !(wants("commands") || wants("latency") || wants("queries")) {
        return Ok(());
    }
    let app = Arc::new(
        TestApp::spawn_with(TestOptions {
            overseerr: false,
            plex: false,
            api_rate_limit: u32::MAX,
            notifications: None,
            ..TestOptions::default()
        })
        .await,
    );
    let mut next_id = 1_000_000u64;
    if wants("commands") {
        let tps = pgbench(sizes.seconds).await?;
        let sampler = {
            let pool = app.pool.clone();
            tokio::spawn(async move {
                let mut worst = 0;
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    match lag(&pool).await {
                        Ok(lag) => worst = worst.max(lag),
                        Err(_) => return worst,
                    }
                    if pool.is_closed() {
                        return worst;
                    }
                }
            })
        };
        let base = next_id;
        let load = {
            let app = app.clone();
            closed_loop(sizes.seconds, move |i| submit(&app, base + i)).await
        };
        next_id += load.ok + load.server_errors + load.other + 1;
        let drain_started = Instant::now();
        let at_end = lag(&app.pool).await?;
        while lag(&app.pool).await? > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drain = drain_started.elapsed().as_secs_f64();
        sampler.abort();
        rows.push(row(
            format!("POST /api/v1/requests, {CONNECTIONS} connections"),
            load.describe("commands"),
            format!("pgbench minimum submit {tps:.0} tps"),
            times(load.per_second(), tps),
        ));
        rows.push(row(
            "projections behind the log when the load stopped",
            format!("{at_end} events, drained in {drain:.2} s"),
            format!("{} events written", load.ok),
            String::new(),
        ));
    }
    if wants("latency") {
        let interval = Duration::from_secs_f64(1.0 / sizes.rate as f64);
        let count = sizes.rate * sizes.seconds;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..count {
            let scheduled = started + interval.mul_f64(i as f64);
            tokio::time::sleep_until(scheduled.into()).await;
            let app = app.clone();
            let tmdb_id = next_id + i;
            tasks.push(tokio::spawn(async move {
                let response = submit(&app, tmdb_id).send().await;
                let Ok(response) = response else {
                    return (UNANSWERED, scheduled.elapsed(), None);
                };
                let status = response.status().as_u16();
                let answered = Instant::now();
                let took = answered - scheduled;
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                let (Some(id), Some(position)) = (body["id"].as_str(), body["position"].as_i64())
                else {
                    return (status, took, None);
                };
                let read = app
                    .http
                    .get(app.url(&format!("/api/v1/requests/{id}?min_position={position}")))
                    .bearer_auth(&app.admin.token)
                    .send()
                    .await;
                let read_ok = read.is_ok_and(|r| r.status().is_success());
                (status, took, read_ok.then(|| (answered, Instant::now())))
            }));
        }
        let mut commands = Load::new();
        let mut visible = Load::new();
        for task in tasks {
            let (status, took, read) = task.await?;
            commands.record_took(status, took);
            if let Some((answered, read_at)) = read {
                let micros = u64::try_from((read_at - answered).as_micros()).unwrap_or(u64::MAX);
                let _ = visible.histogram.record(micros.max(1));
                visible.ok += 1;
            }
        }
        commands.seconds = started.elapsed().as_secs_f64();
        visible.seconds = commands.seconds;
        rows.push(row(
            format!("POST /api/v1/requests at a fixed {} commands/s", sizes.rate),
            commands.describe("commands"),
            String::new(),
            String::new(),
        ));
        rows.push(row(
            "command answered → its read model row visible (`min_position`)",
            format!(
                "p50 {:.1} ms, p99 {:.1} ms",
                visible.millis(0.5),
                visible.millis(0.99)
            ),
            String::new(),
            String::new(),
        ));
    }
    if wants("commands") || wants("latency") {
        // Every batch of a projection reads its rows by id; a plan that scans the table
        // instead grows with the history (docs/decisions.md).
        let scans: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT relname::text, seq_scan, idx_scan FROM pg_stat_user_tables
              WHERE relname IN ('requests', 'request_search', 'dashboard_requests')
              ORDER BY relname",
        )
        .fetch_all(&app.pool)
        .await?;
        rows.push(row(
            "sequential scans of the read models' tables while the commands ran",
            scans
                .iter()
                .map(|(table, seq, idx)| format!("{table} {seq} ({idx} by index)"))
                .collect::<Vec<_>>()
                .join(", "),
            String::new(),
            String::new(),
        ));
    }
    if wants("queries") {
        let requests: i64 = sqlx::query_scalar("SELECT count(*) FROM requests")
            .fetch_one(&app.pool)
            .await?;
        for path in ["/api/v1/dashboard?scope=all", "/api/v1/requests?limit=20"] {
            let load = {
                let app = app.clone();
                closed_loop(sizes.seconds, move |_| {
                    app.http.get(app.url(path)).bearer_auth(&app.admin.token)
                })
                .await
            };
            rows.push(row(
                format!("GET {path}, {CONNECTIONS} connections, {requests} requests"),
                load.describe("req"),
                String::new(),
                String::new(),
            ));
        }
        let some: String = sqlx::query_scalar("SELECT id::text FROM requests LIMIT 1")
            .fetch_one(&app.pool)
            .await?;
        for path in [
            "/api/v1/requests?limit=20".to_string(),
            format!("/api/v1/requests/{some}"),
            "/api/v1/search?q=film&limit=20".to_string(),
            "/api/v1/dashboard?scope=all".to_string(),
        ] {
            let get = |_| app.http.get(app.url(&path)).bearer_auth(&app.admin.token);
            // The first request finds no cached answer; it is timed alone. Then a second
            // at the same rate, not counted, before the measured run: the figure is the
            // steady state, as after any warm-up.
            let first = Instant::now();
            get(0).send().await?.error_for_status()?.bytes().await?;
            let first = first.elapsed().as_secs_f64() * 1000.0;
            fixed_rate(sizes.query_rate, 1, get).await;
            let load = fixed_rate(sizes.query_rate, sizes.seconds, get).await;
            rows.push(row(
                format!("GET {path} at a fixed {} req/s", sizes.query_rate),
                load.describe("req"),
                format!("target p99 < 10 ms; the first request, uncached: {first:.1} ms"),
                String::new(),
            ));
        }
    }
    Ok(())
}

/// Approved requests the forwarder saga sends to Overseerr per second, against a simulator
/// that answers each call after 50 ms: `requests` submitted-and-approved requests written to
/// the log at once, timed until each has its `forwarded` event.
async fn forwarder(
    sizes: &Sizes,
    sections: &[String],
    rows: &mut Vec<Row>,
) -> Result<(), Box<dyn std::error::Error>> {
    if !sections.iter().any(|x| x == "forwarder") {
        return Ok(());
    }
    const DELAY: Duration = Duration::from_millis(50);
    let options = TestOptions {
        plex: false,
        notifications: None,
        ..TestOptions::default()
    };
    let concurrency = options.saga_concurrency;
    let app = TestApp::spawn_with(options).await;
    app.sim().set_delay(DELAY);
    let requests = (sizes.rate * sizes.seconds).max(1);
    let started = Instant::now();
    generate(&app.pool, 1, i64::try_from(requests)?, 2).await?;
    let deadline = started + Duration::from_secs(sizes.seconds * 10 + 60);
    loop {
        let forwarded: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'forwarded'")
                .fetch_one(&app.pool)
                .await?;
        if u64::try_from(forwarded)? >= requests {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {forwarded} of {requests} forwarded").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let per_second = requests as f64 / started.elapsed().as_secs_f64();
    let ideal = concurrency as f64 / DELAY.as_secs_f64();
    rows.push(row(
        format!("forwarder saga, {requests} approvals, Overseerr answering in 50 ms"),
        format!("{per_second:.0} approvals/s"),
        format!("{concurrency} calls at once: at most {ideal:.0}/s; target 200/s"),
        format!("{} of the target", times(per_second, 200.0)),
    ));
    Ok(())
}

/// Resident memory of `process` (`self` or a pid) as `/proc/<process>/status` reports it, in
/// MiB: `VmRSS:` now, or `VmHWM:` at its peak.
fn rss_mib(process: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let sizes = if benchmarking {
        Sizes {
            events: i64::try_from(env("MEDIANEST_BENCH_EVENTS", 100_000)).unwrap_or(100_000),
            seconds: env("MEDIANEST_BENCH_SECONDS", 10),
            rate: env("MEDIANEST_BENCH_RATE", 300),
            query_rate: 1_000,
        }
    } else {
        Sizes {
            events: 1_000,
            seconds: 1,
            rate: 20,
            query_rate: 20,
        }
    };
    let all = [
        "projections",
        "replay",
        "relay",
        "commands",
        "latency",
        "queries",
        "forwarder",
        "serve",
    ];
    let mut sections: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| all.contains(&a.as_str()))
        .collect();
    if sections.is_empty() {
        sections = all.iter().map(|s| s.to_string()).collect();
    }
    let mut rows = Vec::new();
    log_sections(&sizes, &sections, &mut rows).await?;
    app_sections(&sizes, &sections, &mut rows).await?;
    forwarder(&sizes, &sections, &mut rows).await?;
    if sections.iter().any(|s| s == "serve") {
        serve::serve(sizes.seconds, &mut rows).await?;
    }
    println!("| what | figure | reference (same run) | ratio |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} |",
            r.what, r.figure, r.reference, r.ratio
        );
    }
    if let Some(peak) = rss_mib("self", "VmHWM:") {
        println!("| peak RSS of the harness (app and load in one process) | {peak:.0} MiB | | |");
    }
    Ok(())
}
