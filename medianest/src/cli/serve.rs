//! `medianest serve`: checks the settings, starts the roles (see [`crate::app`]) and runs
//! until SIGTERM or Ctrl-C, then finishes in-flight work.

use std::process::ExitCode;

use crate::config::{ServeArgs, Settings};
use crate::exit::Exit;

/// Runs `serve`: [`Exit::Usage`] for settings that do not fit together, [`Exit::Failure`]
/// when start-up fails (a database or NATS that cannot be reached), [`Exit::Ok`] after a
/// graceful shutdown.
pub async fn run(args: ServeArgs) -> ExitCode {
    let settings = match Settings::from_args(args) {
        Ok(settings) => settings,
        Err(e) => return super::usage(&format!("invalid configuration: {e}")),
    };
    let mut running = match crate::start(settings).await {
        Ok(running) => running,
        Err(e) => return super::failure(&format!("{e:#}")),
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
