//! End-to-end tests over HTTP: MediaNest started in-process against PostgreSQL, NATS
//! JetStream and the simulators, one module per area.
//!
//! One binary with modules instead of a binary per file: each test binary links the whole
//! workspace, which on a two-core machine cost more than compiling the tests themselves
//! (docs/decisions.md, "Fewer test binaries").

mod auth_bad_input;
mod auth_e2e;
mod bad_input;
mod dashboard;
mod discover;
mod downloads_bad_input;
mod downloads_e2e;
mod downloads_sagas;
mod notifications;
mod requests_e2e;
mod search;
mod stream;
