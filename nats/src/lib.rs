//! MediaNest on NATS JetStream (docs/design.md §4).
//!
//! Owns: the stream and consumer set-up, the subject scheme, the CloudEvents envelope of
//! published events, progress messages on core NATS, the relay that copies the PostgreSQL global log into JetStream, and the
//! [`EventFeed`] abstraction every reader of events uses, with its two implementations
//! (a JetStream durable consumer and a direct tail of the global log).

pub mod envelope;
pub mod feed;
pub mod progress;
pub mod relay;
pub mod stream;
pub mod subjects;

pub use envelope::CloudEvent;
pub use feed::{EventFeed, FeedError, FeedEvent, JetStreamFeed, LogFeed};
pub use progress::ProgressBoard;
pub use relay::{Relay, RelayError, RelayOptions};
pub use stream::{connect, ensure_stream, StreamSettings};
pub use subjects::Subjects;
