//! `medianest projections status`: each projection's checkpoint, the log head, and the lag
//! in events and seconds.

use std::process::ExitCode;

use clap::Subcommand;
use medianest_projections::status::status;
use serde_json::json;

use super::DatabaseArgs;
use crate::exit::Exit;

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

/// `medianest projections status`.
pub async fn run(command: ProjectionsCommand) -> ExitCode {
    let ProjectionsCommand::Status { json, db } = command;
    let pool = match super::connect(&db, false).await {
        Ok(pool) => pool,
        Err(code) => return code,
    };
    let statuses = match status(&pool, &medianest_projections::all()).await {
        Ok(statuses) => statuses,
        Err(e) => return super::failure(&e.to_string()),
    };
    if json {
        let head = statuses.first().map(|s| s.head).unwrap_or(0);
        super::print_json(&json!({ "head": head, "projections": statuses }));
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
