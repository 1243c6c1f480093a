//! The `medianest` binary's own tests: start-up and shutdown of `serve`, the admin commands
//! and the user commands, one module each, in one test binary (each binary links the whole
//! workspace; docs/decisions.md, "Fewer test binaries").

// Helpers of a test may unwrap and expect: a failed expectation is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod serve;
mod users;
