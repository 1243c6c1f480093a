//! The command line: `medianest serve`, `medianest migrate`, `medianest users create`, and
//! the admin commands over the log and read models (`projections status`, `replay`,
//! `events tail|show`; see [`crate::admin`]).
//!
//! Exit codes: [`Exit`] (0 success, 1 runtime failure, 2 invalid configuration, usage or
//! input, 3 "no", 4 busy).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ServeArgs, Settings};
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
        db: crate::admin::DatabaseArgs,
    },
    /// Manage local accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Inspect the projections (read models).
    #[command(subcommand)]
    Projections(crate::admin::ProjectionsCommand),
    /// Rebuild read models from the event log (shadow tables swapped in atomically), or
    /// re-publish a range of the log to NATS.
    Replay(Box<crate::admin::ReplayArgs>),
    /// Read the event log.
    #[command(subcommand)]
    Events(crate::admin::EventsCommand),
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a local account (for bootstrap and offline installs); the password is read
    /// from standard input.
    Create {
        /// The username: letters, digits, '.', '_' and '-'.
        #[arg(long)]
        username: String,
        /// An e-mail address.
        #[arg(long)]
        email: Option<String>,
        /// Make the account an admin.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input (required).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Print the created account as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: crate::admin::DatabaseArgs,
    },
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_) | Command::Migrate { .. }) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,sqlx=warn".into());
        tracing_subscriber::fmt().with_env_filter(filter).init();
    } else {
        // The admin commands print their results (and JSON) on standard output: logs go to
        // standard error, warnings only unless RUST_LOG says otherwise.
        let filter =
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Failure.into();
        }
    };
    match cli.command {
        Command::Serve(args) => {
            let settings = match Settings::from_args(*args) {
                Ok(settings) => settings,
                Err(e) => {
                    eprintln!("error: invalid configuration: {e}");
                    return Exit::Usage.into();
                }
            };
            runtime.block_on(serve(settings))
        }
        Command::Migrate { db } => runtime.block_on(migrate(&db.database_url)),
        Command::Projections(command) => runtime.block_on(crate::admin::projections(command)),
        Command::Replay(args) => runtime.block_on(crate::admin::replay(*args)),
        Command::Events(command) => runtime.block_on(crate::admin::events(command)),
        Command::Users(UsersCommand::Create {
            username,
            email,
            admin,
            password_stdin: _,
            json,
            db,
        }) => {
            let mut password = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut password) {
                eprintln!("error: cannot read the password from standard input: {e}");
                return Exit::Usage.into();
            }
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            runtime.block_on(create_user(
                &db.database_url,
                &username,
                email,
                admin,
                password,
                json,
            ))
        }
    }
}

async fn create_user(
    database_url: &str,
    username: &str,
    email: Option<String>,
    admin: bool,
    password: String,
    json: bool,
) -> ExitCode {
    let pool = match medianest_store::connect(database_url, 2).await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("error: MEDIANEST_DATABASE_URL: {e}");
            return Exit::Failure.into();
        }
    };
    if let Err(e) = medianest_store::migrate(&pool).await {
        eprintln!("error: applying migrations: {e}");
        return Exit::Failure.into();
    }
    match crate::users::create_user(&pool, username, email, admin, password).await {
        Ok(created) => {
            if json {
                println!("{}", serde_json::to_string(&created).unwrap_or_default());
            } else {
                println!(
                    "created {} {} ({})",
                    created.role, created.username, created.id
                );
            }
            Exit::Ok.into()
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code().into()
        }
    }
}

async fn serve(settings: Settings) -> ExitCode {
    let mut running = match crate::start(settings).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Exit::Failure.into();
        }
    };
    let token = running.shutdown_token();
    tokio::select! {
        () = crate::shutdown::signal() => tracing::info!("shutting down: finishing in-flight work"),
        () = token.cancelled() => {}
    }
    token.cancel();
    running.join().await;
    Exit::Ok.into()
}

async fn migrate(database_url: &str) -> ExitCode {
    let result = async {
        let pool = medianest_store::connect(database_url, 2).await?;
        medianest_store::migrate(&pool).await
    }
    .await;
    match result {
        Ok(()) => {
            println!("migrations applied");
            Exit::Ok.into()
        }
        Err(e) => {
            eprintln!("error: MEDIANEST_DATABASE_URL: {e}");
            Exit::Failure.into()
        }
    }
}
