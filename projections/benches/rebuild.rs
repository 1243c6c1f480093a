//! Benchmark: rebuilding the `requests` read model from a generated log of (by default)
//! 1,000,000 events, beside a plain `SELECT` scan of the same rows in the same run.
//!
//! Run with `cargo bench -p medianest-projections --bench rebuild` (PostgreSQL at
//! `MEDIANEST_BENCH_DATABASE_URL`, else `MEDIANEST_TEST_DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`; it
//! creates and drops a database of its own). `MEDIANEST_BENCH_EVENTS` changes the log size
//! (a multiple of 5: each request has submitted, approved, forwarded, processing and
//! available). Results are recorded in docs/benchmarks.md.
//!
//! Under `cargo test` (no `--bench` argument) it runs once on 5,000 events, as a smoke test
//! of the benchmark itself.

use std::time::Instant;

use futures::TryStreamExt;
use medianest_projections::replay::{Replay, ReplayOptions};
use medianest_store::StoredEvent;
use sqlx::PgPool;

const REQUESTER: &str = "01a1fca1-0d53-75ee-ac89-31047ed37289";
const ADMIN: &str = "01a1fca1-0ba7-7112-96f6-91c99742cd65";

/// Writes `requests` media requests of five events each, 50,000 requests per statement.
async fn generate(pool: &PgPool, requests: i64) -> Result<(), sqlx::Error> {
    let chunk = 50_000;
    let mut first = 1;
    while first <= requests {
        let last = (first + chunk - 1).min(requests);
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
              ORDER BY g, e.seq",
        )
        .bind(first)
        .bind(last)
        .bind(REQUESTER)
        .bind(ADMIN)
        .execute(pool)
        .await?;
        first = last + 1;
    }
    sqlx::query("ANALYZE events").execute(pool).await?;
    Ok(())
}

/// The plain scan: every event of the log in log order, decoded as the replay decodes them.
async fn scan(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut rows = sqlx::query_as::<_, StoredEvent>(
        "SELECT global_position AS position, tx_id::text::bigint AS tx_id, aggregate_type,
                aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at
           FROM events WHERE aggregate_type = 'media_request'
          ORDER BY tx_id, global_position",
    )
    .fetch(pool);
    let mut n = 0u64;
    while let Some(event) = rows.try_next().await? {
        std::hint::black_box(&event);
        n += 1;
    }
    Ok(n)
}

/// Peak resident memory of this process, in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let admin_url = std::env::var("MEDIANEST_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("MEDIANEST_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let events: i64 = if benchmarking {
        std::env::var("MEDIANEST_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    } else {
        5_000
    };
    let requests = (events / 5).max(1);
    let name = format!("medianest_bench_{}", uuid::Uuid::now_v7().simple());
    let admin = medianest_store::connect(&admin_url, 1).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    let (base, _) = admin_url
        .rsplit_once('/')
        .ok_or("the URL names a database")?;
    let pool = medianest_store::connect(&format!("{base}/{name}"), 4).await?;
    let result = async {
        medianest_store::migrate(&pool).await?;
        let started = Instant::now();
        generate(&pool, requests).await?;
        println!(
            "generated {} events ({requests} requests) in {:.1} s",
            requests * 5,
            started.elapsed().as_secs_f64()
        );

        let started = Instant::now();
        let scanned = scan(&pool).await?;
        let scan_seconds = started.elapsed().as_secs_f64();
        println!(
            "plain SELECT scan: {scanned} events in {scan_seconds:.1} s = {:.0} events/s",
            scanned as f64 / scan_seconds
        );

        let projection = medianest_projections::by_name("requests").ok_or("no projection")?;
        let started = Instant::now();
        let report = Replay::new(pool.clone(), projection, ReplayOptions::default())
            .run(&|_| {})
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM requests")
            .fetch_one(&pool)
            .await?;
        println!(
            "replay (rebuild into shadow tables + swap): {} events in {seconds:.1} s = {:.0} events/s; {rows} rows; {:.1}x the scan's time",
            report.events,
            report.events as f64 / seconds,
            seconds / scan_seconds
        );
        if let Some(peak) = peak_rss_mib() {
            println!("peak resident memory of the benchmark process: {peak:.0} MiB");
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    }
    .await;
    pool.close().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&admin)
        .await?;
    result
}
