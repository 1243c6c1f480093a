//! Tests of the event flow and its infrastructure: the log, the relay, projections and
//! replays, sagas under faults, NATS permissions, and the third-party contracts.
//!
//! One binary with modules instead of a binary per file: each test binary links the whole
//! workspace, which on a two-core machine cost more than compiling the tests themselves
//! (docs/decisions.md, "Fewer test binaries").

mod breaker;
mod command_path;
mod event_log;
mod faults;
mod nats_permissions;
mod overseerr_contract;
mod plex_contract;
mod projection;
mod relay;
mod replay;
mod ytdlp_contract;
