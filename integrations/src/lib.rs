//! MediaNest's clients for the services it talks to: Overseerr ([`overseerr`]); plex.tv and
//! Plex Media Server ([`plex`]: PIN sign-in, the account and its servers, a server's
//! identity); the yt-dlp runner joins them (`docs/design.md` §1, §6).
//!
//! Each module owns one external contract — its wire shapes, its HTTP calls and a typed error
//! whose variants say whether a retry can help. The clients never retry on their own: the
//! sagas in `medianest-workers` own timeouts' consequences, backoff and circuit breaking.
//! Those errors keep their causes (the transport's, I/O or JSON error) as `source()`, with
//! the types of [`cause`].

pub mod cause;
pub mod egress;
pub mod notify;
pub mod overseerr;
pub mod plex;
pub mod ytdlp;
