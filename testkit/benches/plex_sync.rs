//! Benchmark: a full pass of the Plex sync over a simulated library of (by default) 2,000
//! and then 20,000 movies, in one run, reporting the time and the memory the pass added to
//! the process (RSS before the pass, and the peak RSS during it; the simulator's own library
//! is already in memory before). Flat memory shows as a peak no higher than the RSS before
//! it, whatever the size. Beside it,
//! in the same run, the plain paging of the same library through the same client (no
//! database), so the pass's cost is read as a ratio to what fetching alone costs.
//!
//! Run with `cargo bench -p medianest-testkit --bench plex_sync` (PostgreSQL at
//! `MEDIANEST_TEST_DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`; each
//! size gets a fresh database). `MEDIANEST_BENCH_ITEMS` (comma-separated) changes the sizes.
//! Results are recorded in docs/benchmarks.md.
//!
//! Under `cargo test` (no `--bench` argument) it runs once on 300 items, as a smoke test of
//! the benchmark itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use medianest_domain::media_request::MediaRequestServices;
use medianest_integrations::plex::{ItemKind, ListItems, PlexClientInfo, PmsClient, PmsConfig};
use medianest_store::media_requests::MediaRequests;
use medianest_store::plex_library;
use medianest_testkit::app::{fresh_database, PMS_TOKEN};
use medianest_testkit::plex_sim::PmsSim;
use medianest_workers::{
    BreakerConfig, CircuitBreaker, PlexSync, PlexSyncConfig, RetryPolicy, Service,
};
use tokio_util::sync::CancellationToken;

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(field)?
                    .trim_start_matches(':')
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// Resets the peak RSS (`VmHWM`) to the current RSS (Linux `clear_refs`, value 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Run {
    items: usize,
    paging: f64,
    seconds: f64,
    pages: u64,
    before_kib: u64,
    peak_kib: u64,
}

async fn run(items: usize) -> Result<Run, Box<dyn std::error::Error>> {
    let (_url, pool) = fresh_database().await;
    medianest_store::migrate(&pool).await?;
    let pms = PmsSim::start("bench-pms", PMS_TOKEN).await;
    pms.add_section("1", "Movies", "movie", "/data/movies");
    pms.add_movies_bulk("1", items, 100_000);
    let client = PmsClient::new(PmsConfig::new(
        pms.base_url().parse()?,
        PMS_TOKEN,
        PlexClientInfo::medianest("bench".to_string()),
    ))?;
    let sync = PlexSync::new(
        pool.clone(),
        client.clone(),
        Arc::new(MediaRequests::new(
            pool.clone(),
            MediaRequestServices::default(),
        )),
        Arc::new(CircuitBreaker::new(Service::Plex, BreakerConfig::default())),
        RetryPolicy {
            attempts: 1,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        },
        PlexSyncConfig::default(),
    );
    let started = Instant::now();
    let mut start = 0;
    loop {
        let page = client
            .section_items(
                "1",
                &ListItems {
                    kind: ItemKind::Movie,
                    start,
                    size: PlexSyncConfig::default().page_size,
                    added_since: None,
                },
            )
            .await?;
        start += page.items.len() as u64;
        if page.items.is_empty() || start >= page.total_size.unwrap_or(0) {
            break;
        }
    }
    let paging = started.elapsed().as_secs_f64();
    let before = status_kib("VmRSS");
    reset_peak();
    let started = Instant::now();
    let report = sync.full_pass(&CancellationToken::new()).await?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM");
    let stored = plex_library::count(&pool).await?;
    assert_eq!(
        usize::try_from(stored)?,
        items,
        "every item is in the read model"
    );
    pool.close().await;
    Ok(Run {
        items,
        paging,
        seconds,
        pages: report.pages,
        before_kib: before,
        peak_kib: peak,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = if benchmarking {
        std::env::var("MEDIANEST_BENCH_ITEMS")
            .ok()
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![2_000, 20_000])
    } else {
        vec![300]
    };
    println!("| items | pages | paging alone | full pass | pass ÷ paging | items/s | RSS before the pass | peak RSS during it |");
    println!("|---|---|---|---|---|---|---|---|");
    for items in sizes {
        let run = run(items).await?;
        println!(
            "| {} | {} | {:.2} s | {:.2} s | {:.1}× | {:.0} | {:.1} MiB | {:.1} MiB |",
            run.items,
            run.pages,
            run.paging,
            run.seconds,
            run.seconds / run.paging.max(f64::EPSILON),
            run.items as f64 / run.seconds.max(f64::EPSILON),
            run.before_kib as f64 / 1024.0,
            run.peak_kib as f64 / 1024.0,
        );
    }
    Ok(())
}
