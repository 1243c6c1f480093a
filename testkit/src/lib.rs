pub mod app;
pub mod media_server;
pub mod openapi;
pub mod overseerr_sim;
pub mod plex_sim;
pub mod problem;
