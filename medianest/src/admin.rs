//! The admin commands over the event log and the read models: `projections status`,
//! `replay` (rebuild read models, or re-publish a range of the log to NATS), `events tail`
//! and `events show`.
//!
//! Each takes `--json` for scripts (one JSON document, or one JSON object per line for event
//! listings) and draws a progress bar (indicatif, on standard error, only on a terminal) on
//! long work. Exit codes: [`Exit`].

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use crate::exit::Exit;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use medianest_nats::relay::{publish, Published};
use medianest_nats::{CloudEvent, Subjects};
use medianest_projections::replay::{Replay, ReplayError, ReplayOptions, ReplayReport};
use medianest_projections::status::status;
use medianest_projections::Projection;
use medianest_store::{log, Cursor, LogTail, StoredEvent};
use serde_json::json;
use sqlx::PgPool;

/// The PostgreSQL connection of an admin command.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL.
    #[arg(
        long,
        env = "MEDIANEST_DATABASE_URL",
        default_value = "postgres:///medianest",
        hide_env_values = true
    )]
    pub database_url: String,
}

/// `medianest projections …`.
#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Each projection's checkpoint, the log head, and the lag in events and seconds.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// The database to read.
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

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
        hide_env_values = true
    )]
    pub nats_url: String,
    /// First subject token(s) of every subject (with --to-nats).
    #[arg(long, env = "MEDIANEST_SUBJECT_PREFIX", default_value = "medianest")]
    pub subject_prefix: String,
}

/// `medianest events …`.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The last events of the log, oldest first; with --follow, then every new one.
    Tail {
        /// Keep printing new events until interrupted.
        #[arg(long)]
        follow: bool,
        /// Only events of this aggregate type.
        #[arg(long, value_name = "T")]
        aggregate_type: Option<String>,
        /// How many past events to print first.
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(i64).range(0..=100_000))]
        lines: i64,
        /// One JSON object per line (the stored event).
        #[arg(long)]
        json: bool,
        /// The database to read.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// The history of one aggregate, in order. Exits 3 when it has no events.
    Show {
        /// The aggregate type (media_request, download, user_account, user_session).
        aggregate_type: String,
        /// The aggregate id.
        id: String,
        /// One JSON object per line (the stored event).
        #[arg(long)]
        json: bool,
        /// The database to read.
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// Connects; `migrate` applies pending migrations first (commands that write read models).
/// Read-only commands leave the schema alone: they need no DDL rights, and work against a
/// database a newer version has migrated.
async fn connect(db: &DatabaseArgs, migrate: bool) -> Result<PgPool, ExitCode> {
    let pool = medianest_store::connect(&db.database_url, 4)
        .await
        .map_err(|e| failure(&format!("MEDIANEST_DATABASE_URL: {e}")))?;
    if migrate {
        medianest_store::migrate(&pool)
            .await
            .map_err(|e| failure(&format!("applying migrations: {e}")))?;
    }
    Ok(pool)
}

fn failure(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    Exit::Failure.into()
}

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    Exit::Usage.into()
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// A progress bar of `total` steps on standard error, drawn only on a terminal and never
/// with `--json`.
fn progress_bar(total: u64, json: bool, what: &str) -> ProgressBar {
    let target = if json {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>16} [{bar:40}] {pos}/{len} events ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// `medianest projections status`.
pub async fn projections(command: ProjectionsCommand) -> ExitCode {
    let ProjectionsCommand::Status { json, db } = command;
    let pool = match connect(&db, false).await {
        Ok(pool) => pool,
        Err(code) => return code,
    };
    let statuses = match status(&pool, &medianest_projections::all()).await {
        Ok(statuses) => statuses,
        Err(e) => return failure(&e.to_string()),
    };
    if json {
        let head = statuses.first().map(|s| s.head).unwrap_or(0);
        print_json(&json!({ "head": head, "projections": statuses }));
    } else {
        println!(
            "{:<16} {:>12} {:>12} {:>12} {:>12}",
            "PROJECTION", "CHECKPOINT", "HEAD", "LAG EVENTS", "LAG SECONDS"
        );
        for s in &statuses {
            println!(
                "{:<16} {:>12} {:>12} {:>12} {:>12.1}",
                s.projection, s.checkpoint.position, s.head, s.lag_events, s.lag_seconds
            );
        }
    }
    Exit::Ok.into()
}

/// `medianest replay`.
pub async fn replay(args: ReplayArgs) -> ExitCode {
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
                return usage(&format!(
                    "unknown projection {name:?}; one of: {}",
                    names.join(", ")
                ));
            }
        }
    };
    if let (Some(from), Some(to)) = (args.from, args.to) {
        if to < from {
            return usage("--to must not be below --from");
        }
    }
    let pool = match connect(&args.db, !args.to_nats).await {
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
        let bar = progress_bar(0, args.json, projection.name());
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
        print_json(&json!({ "dry_run": args.dry_run, "replays": reports, "failed": failed }));
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
    let client = match medianest_nats::connect(&args.nats_url).await {
        Ok(client) => client,
        Err(e) => return failure(&format!("MEDIANEST_NATS_URL: {e}")),
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
        Err(e) => return failure(&e.to_string()),
    };
    let bar = progress_bar(u64::try_from(total).unwrap_or(0), args.json, "to NATS");
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
            Err(e) => return failure(&e.to_string()),
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
            Err(e) => return failure(&format!("publishing to NATS: {e}")),
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    if let Err(e) = client.flush().await {
        return failure(&format!("flushing NATS: {e}"));
    }
    if read < total {
        return failure(&format!(
            "only {read} of the {total} events of the range could be read: a transaction has \
             held the log's fence for 30 s; run the command again"
        ));
    }
    if args.json {
        print_json(&json!({
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

/// `medianest events …`.
pub async fn events(command: EventsCommand) -> ExitCode {
    match command {
        EventsCommand::Tail {
            follow,
            aggregate_type,
            lines,
            json,
            db,
        } => {
            let pool = match connect(&db, false).await {
                Ok(pool) => pool,
                Err(code) => return code,
            };
            tail(&pool, follow, aggregate_type, lines, json).await
        }
        EventsCommand::Show {
            aggregate_type,
            id,
            json,
            db,
        } => {
            let pool = match connect(&db, false).await {
                Ok(pool) => pool,
                Err(code) => return code,
            };
            match log::aggregate_events(&pool, &aggregate_type, &id).await {
                Ok(events) if events.is_empty() => {
                    eprintln!("no events for {aggregate_type} {id}");
                    Exit::No.into()
                }
                Ok(events) => {
                    let mut out = std::io::stdout().lock();
                    for event in &events {
                        print_event(&mut out, event, json);
                    }
                    Exit::Ok.into()
                }
                Err(e) => failure(&e.to_string()),
            }
        }
    }
}

async fn tail(
    pool: &PgPool,
    follow: bool,
    aggregate_type: Option<String>,
    lines: i64,
    json: bool,
) -> ExitCode {
    // Where following starts is read first: an event committed while the last ones are
    // read is then either printed or followed, never neither.
    let newest = match log::read_last(pool, 1, None).await {
        Ok(newest) => newest.last().map(StoredEvent::cursor).unwrap_or_default(),
        Err(e) => return failure(&e.to_string()),
    };
    let last = match log::read_last(pool, lines, aggregate_type.as_deref()).await {
        Ok(last) => last,
        Err(e) => return failure(&e.to_string()),
    };
    {
        let mut out = std::io::stdout().lock();
        for event in &last {
            print_event(&mut out, event, json);
        }
    }
    if !follow {
        return Exit::Ok.into();
    }
    let start = last
        .last()
        .map(StoredEvent::cursor)
        .unwrap_or_default()
        .max(newest);
    let mut tail = LogTail::new(pool.clone(), start).aggregate_type(aggregate_type);
    loop {
        let batch = tokio::select! {
            batch = tail.next_batch() => batch,
            () = crate::shutdown::signal() => return Exit::Ok.into(),
        };
        match batch {
            Ok(batch) => {
                let mut out = std::io::stdout().lock();
                for event in &batch {
                    print_event(&mut out, event, json);
                }
            }
            Err(e) => return failure(&e.to_string()),
        }
    }
}

/// One event: a JSON object (the stored event plus its public CloudEvent `type`), or a line
/// `position  time  aggregate_type/id  #sequence  event_type  payload`.
fn print_event(out: &mut impl Write, event: &StoredEvent, json: bool) {
    let line = if json {
        let mut value = serde_json::to_value(event).unwrap_or_default();
        if let (Some(object), Ok(envelope)) =
            (value.as_object_mut(), CloudEvent::from_stored(event))
        {
            object.insert("type".into(), envelope.event_type.into());
        }
        serde_json::to_string(&value).unwrap_or_default()
    } else {
        format!(
            "{:>8}  {}  {}/{}  #{}  {}  {}",
            event.position,
            event
                .recorded_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event.aggregate_type,
            event.aggregate_id,
            event.sequence,
            event.event_type,
            event.payload
        )
    };
    // A closed pipe (`| head`) ends the output quietly.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
