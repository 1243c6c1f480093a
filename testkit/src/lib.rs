//! The test kit: a MediaNest started in-process against fresh PostgreSQL databases and
//! JetStream streams ([`app`]), simulators of the services that cannot run here (Overseerr,
//! plex.tv and Plex Media Server, the push services), a real SMTP sink, a fault proxy that
//! cuts connections, and the contract documents they follow ([`contracts`]).

pub mod app;
pub mod contracts;
pub mod fault_proxy;
pub mod history;
pub mod media_server;
pub mod notify_sim;
pub mod openapi;
pub mod overseerr_sim;
pub mod plex_sim;
pub mod problem;
pub mod smtp_sink;
pub mod sse;
