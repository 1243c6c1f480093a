//! `medianest migrate`: applies the pending database migrations and exits.

use std::process::ExitCode;

use super::DatabaseArgs;
use crate::exit::Exit;

/// Runs `migrate`: [`Exit::Ok`] once the schema is current, [`Exit::Failure`] when the
/// database cannot be reached or a migration fails.
pub async fn run(db: &DatabaseArgs) -> ExitCode {
    match super::connect(db, true).await {
        Ok(_) => {
            println!("migrations applied");
            Exit::Ok.into()
        }
        Err(code) => code,
    }
}
