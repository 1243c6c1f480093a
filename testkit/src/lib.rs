pub mod app;
pub mod openapi;
pub mod overseerr_sim;
pub mod plex_sim;
pub mod problem;
