//! The exit codes of every `medianest` command, in one place: the command line's contract
//! with scripts and service managers (docs/operations.md).

use std::process::ExitCode;

/// How a command ended; its number is the process's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success (a dry run found the rebuilt read model identical to the live one).
    Ok = 0,
    /// 1: a runtime failure: PostgreSQL or NATS unreachable, a query failed.
    Failure = 1,
    /// 2: invalid configuration, usage or input (clap's own usage errors also exit 2).
    Usage = 2,
    /// 3: the answer is "no": the account already exists (`users create`), a dry run found
    /// differences (`replay --dry-run`), there is nothing to show (`events show`).
    No = 3,
    /// 4: another replay of the same projection is running.
    Busy = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}
