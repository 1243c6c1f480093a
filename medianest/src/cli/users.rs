//! `medianest users create`: a local account, for bootstrap and offline installs (the account
//! service is [`crate::users`]).

use std::process::ExitCode;

use clap::Subcommand;

use super::DatabaseArgs;
use crate::exit::Exit;

/// `medianest users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
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
        /// The database to write.
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// Runs `users create`: [`Exit::Ok`] with the account printed, [`Exit::Usage`] for input the
/// account rules refuse, [`Exit::Failure`] when the database fails (see
/// [`crate::users::CreateUserError`]).
pub async fn run(command: UsersCommand) -> ExitCode {
    let UsersCommand::Create {
        username,
        email,
        admin,
        password_stdin: _,
        json,
        db,
    } = command;
    let mut password = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut password) {
        return super::usage(&format!(
            "cannot read the password from standard input: {e}"
        ));
    }
    let password = password.trim_end_matches(['\r', '\n']).to_string();
    let pool = match super::connect(&db, true).await {
        Ok(pool) => pool,
        Err(code) => return code,
    };
    match crate::users::create_user(&pool, &username, email, admin, password).await {
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
