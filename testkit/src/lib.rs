pub mod app;
pub mod history;
pub mod media_server;
pub mod openapi;
pub mod overseerr_sim;
pub mod plex_sim;
pub mod problem;
pub mod sse;
