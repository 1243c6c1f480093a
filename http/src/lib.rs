//! HTTP plumbing shared by the command and query routers (docs/design.md §7): RFC 9457 problem
//! details, the authentication seam and the session authenticator, rate limits, the JSON
//! extractor with problem+json rejections, the check that request text is storable, the
//! request-id / tracing / body- and header-limit layers, and the health endpoints.

pub mod auth;
pub mod health;
pub mod json;
pub mod layers;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod ratelimit;
pub mod sessions;
pub mod shed;
pub mod text;

pub use auth::{Authenticated, Authenticator, Caller, Principal, StaticTokenAuthenticator};
pub use json::{object_body, optional_body, Json, Query};
pub use problem::{ApiError, ProblemType};
