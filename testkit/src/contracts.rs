//! Where the third-party contract files are: Overseerr's OpenAPI document and the community
//! OpenAPI document of the Plex Media Server, which the simulators and contract tests follow
//! (docs/design.md §6).
//!
//! They are not MediaNest's files and are not in the repository. One setting decides where
//! they are read from: `MEDIANEST_CONTRACTS_DIR`, by default `../shared/contracts` beside
//! the repository; a relative value is taken from the repository root. `scripts/test`
//! checks the files (pinned upstream versions and their SHA-256, in `scripts/services.sh`,
//! `ensure_contracts`) and says what to put where before any test runs.

use std::path::{Path, PathBuf};

/// Environment variable naming the contracts directory.
pub const CONTRACTS_DIR_ENV: &str = "MEDIANEST_CONTRACTS_DIR";

/// Overseerr's own OpenAPI 3.0 document (`sct/overseerr`, `overseerr-api.yml`).
pub const OVERSEERR_API: &str = "overseerr-api.yml";

/// The community OpenAPI 3.1 document of the Plex Media Server (`LukeHagar/plex-api-spec`,
/// `plex-api-spec.yaml`, kept under this name).
pub const PLEX_MEDIA_SERVER: &str = "plex-media-server.yaml";

/// The repository root: the folder above this crate's.
const REPOSITORY_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The contracts directory when `MEDIANEST_CONTRACTS_DIR` is not set, from the repository root.
const DEFAULT_FROM_ROOT: &str = "../shared/contracts";

/// The contracts directory: `$MEDIANEST_CONTRACTS_DIR` (relative to the repository root
/// unless absolute), else `../shared/contracts` beside the repository.
pub fn contracts_dir() -> PathBuf {
    let root = Path::new(REPOSITORY_ROOT);
    match std::env::var_os(CONTRACTS_DIR_ENV) {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join(DEFAULT_FROM_ROOT),
    }
}

/// The path of the contract file `file` (e.g. [`OVERSEERR_API`]) in [`contracts_dir`]. The
/// file may be missing; readers say so with [`missing`].
pub fn contract(file: &str) -> PathBuf {
    contracts_dir().join(file)
}

/// The message for a contract file at `path` that cannot be used, because of `reason`: the
/// file, the reason, the setting that decides the directory, and where to learn which file to
/// put there.
pub fn missing(path: &Path, reason: impl std::fmt::Display) -> String {
    format!(
        "cannot use the contract {}: {reason} (the contracts directory is {CONTRACTS_DIR_ENV}, \
         default ../shared/contracts beside the repository; scripts/test says which file to \
         put there)",
        path.display()
    )
}
