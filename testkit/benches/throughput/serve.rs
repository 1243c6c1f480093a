//! The `serve` section: `medianest serve` as its own process (the release binary beside the
//! harness, `cargo build --release -p medianest`), driven by wrk from another process — the
//! issue's own measurement — rather than by the harness's in-process client, which competes
//! with the server for the same two cores. `POST /api/v1/requests` from `CONNECTIONS`
//! connections for `seconds`, each a new movie (wrk's Lua script numbers them per thread),
//! against pgbench's minimum submit in the same run; and the server's resident memory, as
//! `/proc` reports it: idle after a sign-in, the most seen during the load (sampled every
//! 100 ms), after it, and at its peak (`VmHWM`, which the sign-in's argon2id block sets).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use medianest_testkit::app::{fresh_database, nats_url, password_of, unique_stream};
use serde_json::{json, Value};

use super::{pgbench, row, rss_mib, times, Row, CONNECTIONS};

/// The allocator setting of the image (Dockerfile), so the figures are of `serve` as it is
/// deployed.
const GLIBC_TUNABLES: &str = "glibc.malloc.mmap_threshold=1048576:glibc.malloc.arena_max=1";

/// wrk's script: one new movie per request, ids unique per thread and request.
const SCRIPT: &str = r#"
local threads = 0
function setup(thread)
  thread:set("number", threads)
  threads = threads + 1
end
function init(args)
  token = args[1]
  sent = 0
end
function request()
  sent = sent + 1
  local tmdb = number * 100000000 + sent
  local body = string.format(
    '{"media_type":"movie","tmdb_id":%d,"title":"Film %d","year":2000,"is_4k":false}',
    tmdb, tmdb)
  return wrk.format("POST", "/api/v1/requests",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
"#;

/// The `medianest` binary beside this harness (`target/<profile>/medianest`).
fn binary() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or("the harness has no target directory")?;
    let binary = profile_dir.join("medianest");
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!(
            "{} is missing: build it first (cargo build --release -p medianest)",
            binary.display()
        )
        .into())
    }
}

/// What wrk printed: requests per second, the p99 latency line and the non-2xx count.
fn parse_wrk(text: &str) -> Result<(f64, String, u64), Box<dyn std::error::Error>> {
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix).map(str::trim))
    };
    let per_second: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("wrk printed no rate: {text}"))?;
    let p99 = field("99%").unwrap_or("?").to_string();
    let p50 = field("50%").unwrap_or("?").to_string();
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((per_second, format!("p50 {p50}, p99 {p99}"), non_2xx))
}

/// Runs the section and adds its rows.
pub(super) async fn serve(
    seconds: u64,
    rows: &mut Vec<Row>,
) -> Result<(), Box<dyn std::error::Error>> {
    let binary = binary()?;
    let (database_url, pool) = fresh_database().await;
    let (stream, subjects) = unique_stream();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = tokio::process::Command::new(&binary)
        .arg("serve")
        .env("MEDIANEST_DATABASE_URL", &database_url)
        .env("MEDIANEST_NATS_URL", nats_url())
        .env("MEDIANEST_STREAM", &stream)
        .env("MEDIANEST_SUBJECT_PREFIX", subjects.prefix())
        .env("MEDIANEST_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("MEDIANEST_API_RATE_LIMIT", "1000000")
        .env("MEDIANEST_NOTIFICATIONS", "false")
        .env("RUST_LOG", "warn")
        // As the image runs it (Dockerfile; docs/operations.md, "Memory").
        .env("GLIBC_TUNABLES", GLIBC_TUNABLES)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = server.id().ok_or("serve exited at once")?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if started.elapsed() > Duration::from_secs(60) {
            return Err("medianest serve did not become ready in 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    medianest::users::create_user(&pool, "bench", None, true, password_of("bench")).await?;
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "bench", "password": password_of("bench")}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["token"].as_str().ok_or("no token")?.to_string();
    let idle = rss_mib(&pid.to_string(), "VmRSS:");
    let script = std::env::temp_dir().join(format!("medianest-wrk-{}.lua", uuid::Uuid::now_v7()));
    std::fs::write(&script, SCRIPT)?;
    // The largest resident size seen during the load, sampled every 100 ms. `VmHWM` cannot
    // tell it: the sign-in above (argon2id's 19 MiB block) already set it.
    let load_over = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (pid, load_over) = (pid.to_string(), load_over.clone());
        tokio::spawn(async move {
            let mut largest: Option<f64> = None;
            while !load_over.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(now) = rss_mib(&pid, "VmRSS:") {
                    largest = Some(largest.map_or(now, |l| l.max(now)));
                }
            }
            largest
        })
    };
    let output = tokio::process::Command::new("wrk")
        .args(["-t", "2", "-c", &CONNECTIONS.to_string(), "--latency", "-d"])
        .arg(format!("{seconds}s"))
        .arg("-s")
        .arg(&script)
        .arg(&base)
        .arg("--")
        .arg(&token)
        .output()
        .await?;
    let _ = std::fs::remove_file(&script);
    let after = rss_mib(&pid.to_string(), "VmRSS:");
    let peak = rss_mib(&pid.to_string(), "VmHWM:");
    load_over.store(true, Ordering::Relaxed);
    let during = sampler.await?;
    server.kill().await?;
    pool.close().await;
    let (per_second, latency, non_2xx) = parse_wrk(&String::from_utf8_lossy(&output.stdout))?;
    let tps = pgbench(seconds).await?;
    rows.push(row(
        format!("`medianest serve` + wrk: POST /api/v1/requests, {CONNECTIONS} connections"),
        format!("{per_second:.0} commands/s, {latency}, {non_2xx} not 2xx"),
        format!("pgbench minimum submit {tps:.0} tps"),
        times(per_second, tps),
    ));
    let mib = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.0} MiB"));
    rows.push(row(
        "`medianest serve` resident memory",
        format!(
            "idle {}, at most {} during the load, {} after it; peak {} (the sign-in's \
             argon2id block included)",
            mib(idle),
            mib(during),
            mib(after),
            mib(peak)
        ),
        "issue 13: 21 MB idle, 32 MB after the load".to_string(),
        String::new(),
    ));
    Ok(())
}
