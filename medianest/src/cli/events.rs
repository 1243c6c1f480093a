//! `medianest events tail` and `events show`: the log as lines or JSON, the last events (and
//! then every new one, `--follow`) or one aggregate's history.

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use medianest_nats::CloudEvent;
use medianest_store::{log, LogTail, StoredEvent};
use sqlx::PgPool;

use super::DatabaseArgs;
use crate::exit::Exit;

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

/// `medianest events …`.
pub async fn run(command: EventsCommand) -> ExitCode {
    match command {
        EventsCommand::Tail {
            follow,
            aggregate_type,
            lines,
            json,
            db,
        } => {
            let pool = match super::connect(&db, false).await {
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
            let pool = match super::connect(&db, false).await {
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
                Err(e) => super::failure(&e.to_string()),
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
        Err(e) => return super::failure(&e.to_string()),
    };
    let last = match log::read_last(pool, lines, aggregate_type.as_deref()).await {
        Ok(last) => last,
        Err(e) => return super::failure(&e.to_string()),
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
            Err(e) => return super::failure(&e.to_string()),
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
