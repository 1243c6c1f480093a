//! The command line, one module per command: `medianest serve` ([`serve`]), `migrate`
//! ([`migrate`]), `users create` ([`users`]), and the admin commands over the log and the
//! read models: `projections status` ([`projections`]), `replay` ([`replay`]) and
//! `events tail|show` ([`events`]).
//!
//! The admin commands take `--json` for scripts (one JSON document, or one JSON object per
//! line for event listings) and draw a progress bar (indicatif, on standard error, only on a
//! terminal) on long work. Exit codes: [`Exit`] (0 success, 1 runtime failure, 2 invalid
//! configuration, usage or input, 3 "no", 4 busy).

pub mod events;
pub mod migrate;
pub mod projections;
pub mod replay;
pub mod serve;
pub mod users;

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use crate::config::ServeArgs;
use crate::exit::Exit;

/// MediaNest — the media-request backend beside your Plex Media Server.
#[derive(Debug, Parser)]
#[command(name = "medianest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP APIs, the relay and the workers (all roles, or those named by --role).
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Manage local accounts.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Inspect the projections (read models).
    #[command(subcommand)]
    Projections(projections::ProjectionsCommand),
    /// Rebuild read models from the event log (shadow tables swapped in atomically), or
    /// re-publish a range of the log to NATS.
    Replay(Box<replay::ReplayArgs>),
    /// Read the event log.
    #[command(subcommand)]
    Events(events::EventsCommand),
}

/// The PostgreSQL connection of a command other than `serve`.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL (postgres:// or postgresql://).
    #[arg(
        long,
        env = "MEDIANEST_DATABASE_URL",
        default_value = "postgres:///medianest",
        hide_env_values = true,
        value_parser = crate::config::parse::postgres_url
    )]
    pub database_url: SecretString,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    forget_empty_variables();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return refuse(&error),
    };
    init_logging(matches!(
        cli.command,
        Command::Serve(_) | Command::Migrate { .. }
    ));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return failure(&format!("cannot start the async runtime: {e}")),
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(*args)),
        Command::Migrate { db } => runtime.block_on(migrate::run(&db)),
        Command::Users(command) => runtime.block_on(users::run(command)),
        Command::Projections(command) => runtime.block_on(projections::run(command)),
        Command::Replay(args) => runtime.block_on(replay::run(*args)),
        Command::Events(command) => runtime.block_on(events::run(command)),
    }
}

/// An empty `MEDIANEST_*` variable counts as unset, so its default applies (as compose
/// files write `MEDIANEST_OVERSEERR_URL=` to leave a service out). clap would read it as an
/// empty value, which no number, URL or secret is. Runs first, while the process has one
/// thread.
fn forget_empty_variables() {
    let empty: Vec<std::ffi::OsString> = std::env::vars_os()
        .filter(|(name, value)| {
            value.is_empty() && name.to_string_lossy().starts_with("MEDIANEST_")
        })
        .map(|(name, _)| name)
        .collect();
    for name in empty {
        std::env::remove_var(name);
    }
}

/// Logs: `serve` and `migrate` log to standard output (info); the admin commands print their
/// results (and JSON) there, so they log to standard error, warnings only unless `RUST_LOG`
/// says otherwise.
fn init_logging(service: bool) {
    let default = if service { "info,sqlx=warn" } else { "warn" };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    if service {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
}

/// Prints clap's answer to a command line it refused (or `--help`, `--version`). A value
/// refused by its parser also names the variable it can come from, since most settings are
/// set in the environment: `MEDIANEST_SAGA_CONCURRENCY`, not `--saga-concurrency`.
fn refuse(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    if matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        if let Some(variable) = variable_of(error) {
            eprintln!("note: the value comes from {variable} or its flag");
        }
    }
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}

/// The environment variable of the argument an error is about, if it has one.
fn variable_of(error: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    // `--saga-concurrency <SAGA_CONCURRENCY>` → `saga-concurrency`.
    let long = arg.strip_prefix("--")?.split([' ', '=']).next()?;
    let command = Cli::command();
    let mut commands = vec![&command];
    while let Some(command) = commands.pop() {
        if let Some(found) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env())
        {
            return Some(found.to_string_lossy().into_owned());
        }
        commands.extend(command.get_subcommands());
    }
    None
}

/// Connects with a small pool; `migrate` applies pending migrations first (commands that
/// write). Read-only commands leave the schema alone: they need no DDL rights, and work
/// against a database a newer version has migrated.
async fn connect(db: &DatabaseArgs, migrate: bool) -> Result<PgPool, ExitCode> {
    let pool = medianest_store::connect(db.database_url.expose_secret(), 4)
        .await
        .map_err(|e| failure(&format!("MEDIANEST_DATABASE_URL: {e}")))?;
    if migrate {
        medianest_store::migrate(&pool)
            .await
            .map_err(|e| failure(&format!("applying migrations: {e}")))?;
    }
    Ok(pool)
}

/// Prints `error: …` and answers [`Exit::Failure`].
fn failure(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    Exit::Failure.into()
}

/// Prints `error: …` and answers [`Exit::Usage`].
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
