//! `medianest replay`: rebuild read models from the event log into shadow tables and swap
//! them in (or compare them, `--dry-run`), or re-publish a range of the log to NATS
//! (`--to-nats`) for integrators who missed it.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use medianest_nats::relay::{publish, Published};
use medianest_nats::Subjects;
use medianest_projections::replay::{Replay, ReplayError, ReplayOptions, ReplayReport};
use medianest_projections::Projection;
use medianest_store::{log, Cursor};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::PgPool;

use super::DatabaseArgs;
use crate::exit::Exit;

/// `medianest replay …`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("target").required(true).args(["projection", "all", "to_nats"])
))]
pub struct ReplayArgs {
    /// Rebuild this projection (requests, request_search, downloads, users, sessions,
    /// dashboard) into shadow tables and swap them in.
    #[arg(long, value_name = "NAME")]
    pub projection: Option<String>,
    /// Rebuild every projection, one after the other.
    #[arg(long)]
    pub all: bool,
    /// Rebuild and compare row by row with the live tables, then discard; nothing changes.
    /// Exits 3 when they differ.
    #[arg(long, conflicts_with = "to_nats")]
    pub dry_run: bool,
    /// Events per transaction of a rebuild.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub batch_size: i64,
    /// Re-publish a range of the log to NATS (same subjects, message ids and envelopes as
    /// the relay), for integrators who missed it.
    #[arg(long, requires = "from")]
    pub to_nats: bool,
    /// First global position to re-publish (with --to-nats).
    #[arg(long, value_name = "POSITION", requires = "to_nats", value_parser = clap::value_parser!(i64).range(1..))]
    pub from: Option<i64>,
    /// Last global position to re-publish (default: the head).
    #[arg(long, value_name = "POSITION", requires = "to_nats", value_parser = clap::value_parser!(i64).range(1..))]
    pub to: Option<i64>,
    /// Only events of this aggregate type (media_request, download, user_account,
    /// user_session).
    #[arg(long, value_name = "T", requires = "to_nats")]
    pub aggregate_type: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The database to read and rebuild.
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// NATS URL (with --to-nats).
    #[arg(
        long,
        env = "MEDIANEST_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true,
        value_parser = crate::config::parse::secret
    )]
    pub nats_url: SecretString,
    /// First subject token(s) of every subject (with --to-nats).
    #[arg(long, env = "MEDIANEST_SUBJECT_PREFIX", default_value = "medianest")]
    pub subject_prefix: String,
}

/// `medianest replay`.
pub async fn run(args: ReplayArgs) -> ExitCode {
    let selected: Vec<Arc<dyn Projection>> = if args.to_nats {
        Vec::new()
    } else if args.all {
        medianest_projections::all()
    } else {
        let name = args.projection.as_deref().unwrap_or_default();
        match medianest_projections::by_name(name) {
            Some(projection) => vec![projection],
            None => {
                let names: Vec<&str> = medianest_projections::all()
                    .iter()
                    .map(|p| p.name())
                    .collect();
                return super::usage(&format!(
                    "unknown projection {name:?}; one of: {}",
                    names.join(", ")
                ));
            }
        }
    };
    if let (Some(from), Some(to)) = (args.from, args.to) {
        if to < from {
            return super::usage("--to must not be below --from");
        }
    }
    let pool = match super::connect(&args.db, !args.to_nats).await {
        Ok(pool) => pool,
        Err(code) => return code,
    };
    if args.to_nats {
        return republish(&pool, &args).await;
    }
    let options = ReplayOptions {
        batch_size: args.batch_size,
        dry_run: args.dry_run,
        ..ReplayOptions::default()
    };
    let mut reports = Vec::new();
    let mut stopped = None;
    for projection in selected {
        let bar = super::progress_bar(0, args.json, projection.name());
        let replay = Replay::new(pool.clone(), projection.clone(), options);
        let result = replay
            .run(&|p| {
                bar.set_length(p.total);
                bar.set_position(p.read);
            })
            .await;
        bar.finish_and_clear();
        match result {
            Ok(report) => {
                if !args.json {
                    print_report(&report);
                }
                reports.push(report);
            }
            Err(error) => {
                // What was replayed before stays replayed: report it, then stop.
                let code = match error {
                    ReplayError::Busy(_) => Exit::Busy,
                    _ => Exit::Failure,
                };
                eprintln!("error: replaying {}: {error}", projection.name());
                stopped = Some((projection.name(), error.to_string(), code));
                break;
            }
        }
    }
    if args.json {
        let failed = stopped
            .as_ref()
            .map(|(name, error, _)| json!({ "projection": name, "error": error }));
        super::print_json(
            &json!({ "dry_run": args.dry_run, "replays": reports, "failed": failed }),
        );
    }
    if let Some((_, _, code)) = stopped {
        return code.into();
    }
    if args.dry_run && !reports.iter().all(ReplayReport::identical) {
        return Exit::No.into();
    }
    Exit::Ok.into()
}

fn print_report(report: &ReplayReport) {
    let rate = report.events as f64 / report.seconds.max(0.001);
    println!(
        "{}: {} events in {:.1} s ({rate:.0} events/s){}",
        report.projection,
        report.events,
        report.seconds,
        if report.skipped > 0 {
            format!(", {} skipped as undecodable", report.skipped)
        } else {
            String::new()
        }
    );
    for table in &report.tables {
        let verdict = if table.identical() {
            "identical".to_string()
        } else {
            format!(
                "{} rows only in the live table, {} only in the rebuilt one",
                table.only_live, table.only_rebuilt
            )
        };
        println!(
            "  {}: {} live rows, {} rebuilt rows: {verdict}",
            table.table, table.live_rows, table.rebuilt_rows
        );
    }
    match report.checkpoint {
        Some(checkpoint) if report.swapped => println!(
            "  swapped in; the live projection continues after position {}",
            checkpoint.position
        ),
        _ => println!("  dry run: nothing changed"),
    }
}

/// `medianest replay --to-nats`.
async fn republish(pool: &PgPool, args: &ReplayArgs) -> ExitCode {
    let from = args.from.unwrap_or(1);
    let client = match medianest_nats::connect(args.nats_url.expose_secret()).await {
        Ok(client) => client,
        Err(e) => return super::failure(&format!("MEDIANEST_NATS_URL: {e}")),
    };
    let js = async_nats::jetstream::new(client.clone());
    let subjects = Subjects::new(args.subject_prefix.clone());
    let total: i64 = match sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE global_position >= $1
            AND ($2::bigint IS NULL OR global_position <= $2)
            AND ($3::text IS NULL OR aggregate_type = $3)",
    )
    .bind(from)
    .bind(args.to)
    .bind(args.aggregate_type.as_deref())
    .fetch_one(pool)
    .await
    {
        Ok(total) => total,
        Err(e) => return super::failure(&e.to_string()),
    };
    let bar = super::progress_bar(u64::try_from(total).unwrap_or(0), args.json, "to NATS");
    let mut outcome = Published::default();
    let (mut cursor, mut first, mut last) = (Cursor::default(), None, None);
    let (mut read, mut waited) = (0i64, 0u32);
    loop {
        let batch = match log::read_range(
            pool,
            from,
            args.to,
            args.aggregate_type.as_deref(),
            cursor,
            500,
        )
        .await
        {
            Ok(batch) => batch,
            Err(e) => return super::failure(&e.to_string()),
        };
        let Some(tail) = batch.last() else {
            // Events of the range still behind the transaction fence (an open transaction
            // elsewhere) are waited for, at most 30 s: stopping short would skip them.
            if read < total && waited < 150 {
                waited += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
            break;
        };
        read += batch.len() as i64;
        cursor = tail.cursor();
        first = first.or(batch.first().map(|e| e.position));
        last = Some(tail.position);
        match publish(&js, &subjects, &batch).await {
            Ok(published) => outcome.add(published),
            Err(e) => return super::failure(&format!("publishing to NATS: {e}")),
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    if let Err(e) = client.flush().await {
        return super::failure(&format!("flushing NATS: {e}"));
    }
    if read < total {
        return super::failure(&format!(
            "only {read} of the {total} events of the range could be read: a transaction has \
             held the log's fence for 30 s; run the command again"
        ));
    }
    if args.json {
        super::print_json(&json!({
            "from": from, "to": args.to, "aggregate_type": args.aggregate_type,
            "first_position": first, "last_position": last, "published": outcome,
        }));
    } else {
        println!(
            "re-published {} events ({} stored, {} already in the stream, {} without a public form)",
            outcome.stored + outcome.duplicates,
            outcome.stored,
            outcome.duplicates,
            outcome.skipped
        );
    }
    Exit::Ok.into()
}
