//! The recent end of a database's log, read once for every tail of this process.
//!
//! Each tail ([`super::LogTail`]) used to read the log itself: in `serve`, six projections,
//! the relay and the live stream each asked PostgreSQL for the same few events every
//! [`super::PACE`], and each decoded them. Measured with `pg_stat_statements` at 500
//! commands/s, those reads were the second most costly statement after the submission
//! itself (16 % of the statements' time, 7,800 calls in 15 s; docs/benchmarks.md).
//!
//! A [`Window`] keeps the last events read (at most [`KEPT`]) as one run of the log: every
//! committed event after its `start`, up to its `end`, in log order. Reads behind the
//! transaction fence never see an event appear behind one already read (docs/design.md §2),
//! so a run read after `end` extends the window with nothing missing. A tail whose cursor
//! is inside the window takes the events after it from memory; a tail at its end reads the
//! log after `end` (one at a time: the window is locked meanwhile, and the tails that wait
//! find the new events in memory); a tail elsewhere (behind the window, catching up, or
//! past it after a replay moved its checkpoint) reads the log directly, and a tail past
//! the window starts it again from its own cursor.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock};

use sqlx::PgPool;

use super::{per_database, read_after, Cursor, PerDatabase, StoredEvent};
use crate::StoreError;

/// The most events a window keeps. A tail further behind reads the log itself.
pub(super) const KEPT: usize = 512;

/// What a read answers: the events after the cursor (at most the limit asked for) and
/// whether they reach the head of the log as last read (a batch cut by the limit does not).
pub(super) struct Read {
    pub(super) events: Vec<StoredEvent>,
    pub(super) at_head: bool,
}

/// The shared recent end of one database's log (see the module).
pub(super) struct Window {
    run: tokio::sync::Mutex<Run>,
}

/// The events after `start` up to `end`, with none missing.
struct Run {
    /// Empty at first: the window begins at the first cursor a tail reads from.
    start: Option<Cursor>,
    events: VecDeque<StoredEvent>,
    /// Whether the last read of the log after the end reached the head (was not full).
    at_head: bool,
}

impl Run {
    fn end(&self) -> Option<Cursor> {
        self.events.back().map(|e| e.cursor()).or(self.start)
    }

    /// Up to `limit` events after `after`, which lies within the run.
    fn after(&self, after: Cursor, limit: usize) -> Read {
        let first = self.events.partition_point(|e| e.cursor() <= after);
        let events: Vec<StoredEvent> = self.events.range(first..).take(limit).cloned().collect();
        let at_head = first + events.len() == self.events.len() && self.at_head;
        Read { events, at_head }
    }

    /// Adds `read`, the events after the run's end, and keeps the last [`KEPT`]. A full
    /// page (`full`: its reader is catching up, the head is further) is not kept: the run
    /// starts again after it, so a backlog's pages are not copied for nobody.
    fn extend(&mut self, read: &[StoredEvent], full: bool) {
        self.at_head = !full;
        if full {
            if let Some(last) = read.last() {
                self.start = Some(last.cursor());
                self.events.clear();
            }
            return;
        }
        self.events.extend(read.iter().cloned());
        while self.events.len() > KEPT {
            if let Some(dropped) = self.events.pop_front() {
                self.start = Some(dropped.cursor());
            }
        }
    }
}

/// The window of each database (host, port, database, user) while a tail of it exists.
static WINDOWS: PerDatabase<Window> = LazyLock::new(Default::default);

impl Window {
    /// The window of `pool`'s database, a new one if no tail holds it.
    pub(super) fn of(pool: &PgPool) -> Arc<Self> {
        per_database(
            &WINDOWS,
            pool,
            |_| true,
            || {
                Arc::new(Self {
                    run: tokio::sync::Mutex::new(Run {
                        start: None,
                        events: VecDeque::new(),
                        at_head: false,
                    }),
                })
            },
        )
    }

    /// Up to `limit` committed events after `after`, in log order, from memory when the
    /// window holds them, else from the log on `pool`.
    ///
    /// # Errors
    /// The database error.
    pub(super) async fn read(
        &self,
        pool: &PgPool,
        after: Cursor,
        limit: usize,
    ) -> Result<Read, StoreError> {
        let mut run = self.run.lock().await;
        let start = run.start.unwrap_or(after);
        let end = run.end().unwrap_or(after);
        if start <= after && after < end {
            return Ok(run.after(after, limit));
        }
        let page = i64::try_from(limit).unwrap_or(i64::MAX);
        if after < start {
            // Behind the window: read the log directly, the window stays.
            drop(run);
            let events = read_after(pool, after, page, None).await?;
            let at_head = events.len() < limit;
            return Ok(Read { events, at_head });
        }
        // At the window's end, or past it (the window begins again here).
        let events = read_after(pool, after, page, None).await?;
        let full = events.len() >= limit;
        if after > end || run.start.is_none() {
            run.start = Some(after);
            run.events.clear();
        }
        run.extend(&events, full);
        Ok(Read {
            events,
            at_head: !full,
        })
    }
}
