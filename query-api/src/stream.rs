//! `GET /api/v1/stream`: the live stream, as Server-Sent Events (issue 5, item 3).
//!
//! Each signed-in user receives the public events (the CloudEvents of docs/design.md §4) of their
//! own media requests and downloads, and the progress messages of their own downloads;
//! admins receive every public event and all progress. Frames:
//!
//! - first, always, the opening frame: `event: ready`, `id: <position of the start cursor>`,
//!   `data: {"position": <the same>}` (see **Resume**);
//! - an event: `id: <global position>`, `event: <CloudEvents type>` (e.g.
//!   `medianest.media_request.approved.v1`), `data: <the CloudEvent JSON>`;
//! - progress: `event: progress`, `data: <the progress message JSON>` (with `download_id`),
//!   and no `id`, so it does not move the client's `Last-Event-ID`;
//! - a `:` comment every 15 s as keep-alive (no `id`).
//!
//! **Resume.** `Last-Event-ID` (what `EventSource` sends when it reconnects) or, for a first
//! connect that cannot set headers, `?last_event_id=`; the header wins when both are given.
//! The value is a global position the stream sent (`0`: from the start of the log); the
//! stream continues with every later event the caller may see, exactly once, in log order.
//! A value that is not a non-negative integer is a 400 `malformed-request`; a position with
//! no event a 400 `unknown-last-event-id`. Without either, the stream starts at the head:
//! after the last event behind the transaction fence, so it carries every event committed
//! after the connect (and possibly a few committed just before it, while an older
//! transaction still held the fence back).
//!
//! The opening `ready` frame carries the id of where the stream starts: the resume position,
//! or, at the head, the global position of the last event behind the fence (`0` when there
//! is none). The log is ordered by `(tx_id, global_position)`, so that is the start cursor's
//! own position, not the largest position written; [`log::cursor_of`] maps it back to the
//! same cursor. So a client that loses the connection before any event it may see still
//! reconnects with a `Last-Event-ID` and misses nothing committed in between. Ids move
//! only with the frames that carry one (`ready` and the events the caller sees); keep-alives
//! are comments, so after a long stretch of events the caller may not see, a reconnect
//! resumes from the last id received and the catch-up reads past them again (correct, just
//! more work).
//!
//! **Design.** One [`StreamHub`] per process tails the PostgreSQL global log (one tail, not
//! one per client), resolves the owner of each event (`requested_by` of the aggregate's
//! first event, kept in a bounded cache) and broadcasts `(cursor, owner, frame)` in log
//! order. A client subscribes to that broadcast *first*, then catches up from the database
//! after its resume cursor (behind the same transaction fence as every log reader), then
//! forwards broadcast events whose cursor is above the last one it handled. The hub read
//! whatever it broadcast before the subscription behind an older fence than the catch-up's
//! last read, so catch-up and broadcast overlap or meet, never leave a gap, and the cursor
//! check drops the overlap. A client that falls behind the broadcast buffer
//! (`RecvError::Lagged`) catches up from the database again from its last cursor.
//!
//! A catch-up stops as soon as the connection is gone (checked between batches and while
//! waiting for the database), and a user's catch-up reads only the aggregate types users
//! may see (`media_request`, `download`), so an abandoned resume from `0` does not go on
//! scanning the log. Since it then skips the events that end a stream (of `user_session`
//! and `user_account`), a user's catch-up ends by looking those up directly: any of them
//! committed after the stream opened ends it.
//!
//! **Sessions.** A stream ends when the caller's session is revoked or expires, or the
//! account is disabled or changes role (events committed after the stream opened), when a
//! periodic re-check (every 30 s) no longer accepts the token or finds another role, and on
//! shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use medianest_domain::{Actor, ActorId};
use medianest_http::auth::{request_token, AuthRejection, Authenticated};
use medianest_http::{ApiError, Authenticator, ProblemType, Query};
use medianest_nats::progress::ProgressUpdate;
use medianest_nats::{CloudEvent, ProgressBoard};
use medianest_store::{log, Cursor, LogTail, StoreError, StoredEvent};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::QueryState;

/// The aggregate types whose events users see when they own the aggregate.
const OWNED: [&str; 2] = ["media_request", "download"];

/// Events read per catch-up query.
const CATCH_UP_BATCH: i64 = 500;

/// Frames buffered per client between its task and its connection.
const CLIENT_BUFFER: usize = 64;

/// Owners kept per cache generation (the cache holds at most twice this many).
const OWNER_CACHE: usize = 10_000;

/// The `medianest_sse_clients` gauge: open streams.
pub const CLIENTS_GAUGE: &str = "medianest_sse_clients";

/// The `medianest_sse_lagged_total` counter: how often a stream fell behind the broadcast
/// and caught up from the database.
pub const LAGGED_COUNTER: &str = "medianest_sse_lagged_total";

/// The event name of the opening frame of every stream.
pub const READY_EVENT: &str = "ready";

/// The `Last-Event-ID` request header.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The routes of this module.
pub fn router() -> Router<QueryState> {
    Router::new().route("/api/v1/stream", get(stream))
}

/// Tunables of a [`StreamHub`].
#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    /// How long the log tail waits without a NOTIFY before reading again (default 500 ms).
    pub poll_interval: Duration,
    /// Interval of keep-alive comments (default 15 s).
    pub keep_alive: Duration,
    /// How often a stream re-checks the caller's token (default 30 s).
    pub session_check: Duration,
    /// Events a client may fall behind the broadcast before it catches up from the
    /// database (default 1024).
    pub capacity: usize,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            keep_alive: Duration::from_secs(15),
            session_check: Duration::from_secs(30),
            capacity: 1024,
        }
    }
}

/// One public event as the hub broadcasts it.
#[derive(Debug)]
struct HubEvent {
    cursor: Cursor,
    aggregate_type: String,
    aggregate_id: String,
    /// The stored (`snake_case`) event type.
    kind: String,
    /// `requested_by` of the aggregate (media requests and downloads).
    owner: Option<Arc<str>>,
    frame: Event,
}

/// One progress message as the hub broadcasts it.
#[derive(Debug)]
struct HubProgress {
    owner: Option<Arc<str>>,
    frame: Event,
}

/// The live stream's one log tail per process, broadcasting to every open stream.
pub struct StreamHub {
    pool: PgPool,
    start: Cursor,
    events: broadcast::Sender<Arc<HubEvent>>,
    progress: broadcast::Sender<Arc<HubProgress>>,
    board: Option<Arc<ProgressBoard>>,
    owners: OwnerCache,
    shutdown: CancellationToken,
    settings: HubSettings,
}

impl std::fmt::Debug for StreamHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHub")
            .field("start", &self.start)
            .field("clients", &self.events.receiver_count())
            .field("settings", &self.settings)
            .finish()
    }
}

impl StreamHub {
    /// A hub that will broadcast every event after the current head of the log, and the
    /// progress `board` records (download progress), until `shutdown`; streams end on
    /// `shutdown` too. Spawn [`StreamHub::run`].
    ///
    /// The head is read here, before any stream can subscribe: a stream's catch-up then
    /// always reaches at least as far as the hub's first broadcast.
    ///
    /// # Errors
    /// The database error.
    pub async fn new(
        pool: PgPool,
        board: Option<Arc<ProgressBoard>>,
        shutdown: CancellationToken,
        settings: HubSettings,
    ) -> Result<Arc<Self>, StoreError> {
        let start = fenced_head(&pool).await?;
        let capacity = settings.capacity.max(16);
        Ok(Arc::new(Self {
            pool,
            start,
            events: broadcast::channel(capacity).0,
            progress: broadcast::channel(capacity).0,
            board,
            owners: OwnerCache::new(OWNER_CACHE),
            shutdown,
            settings,
        }))
    }

    /// How many streams are open (their tasks still running).
    pub fn streams(&self) -> usize {
        self.events.receiver_count()
    }

    /// Tails the log and relays progress until shutdown. Run it once.
    pub async fn run(self: Arc<Self>) {
        let updates = self.board.as_ref().map(|board| board.subscribe());
        tokio::join!(self.tail_log(), self.relay_progress(updates));
    }

    async fn tail_log(&self) {
        let mut tail = LogTail::new(self.pool.clone(), self.start)
            .poll_interval(self.settings.poll_interval)
            .batch_size(CATCH_UP_BATCH);
        loop {
            let batch = tokio::select! {
                batch = tail.next_batch() => batch,
                () = self.shutdown.cancelled() => return,
            };
            match batch {
                Ok(batch) => {
                    if !self.broadcast(&batch).await {
                        return;
                    }
                }
                Err(error) => {
                    warn!(%error, "live stream: cannot read the event log; retrying");
                    if !self.pause().await {
                        return;
                    }
                }
            }
        }
    }

    /// Broadcasts `batch` (already past the tail's cursor, so it must not be dropped: the
    /// owners are retried until found). False on shutdown.
    async fn broadcast(&self, batch: &[StoredEvent]) -> bool {
        let owners = loop {
            match self.owners_of(batch).await {
                Ok(owners) => break owners,
                Err(error) => {
                    warn!(%error, "live stream: cannot resolve event owners; retrying");
                    if !self.pause().await {
                        return false;
                    }
                }
            }
        };
        for (event, owner) in batch.iter().zip(owners) {
            let Some(frame) = event_frame(event) else {
                continue;
            };
            // No open stream is not an error.
            let _ = self.events.send(Arc::new(HubEvent {
                cursor: event.cursor(),
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: event.aggregate_id.clone(),
                kind: event.event_type.clone(),
                owner,
                frame,
            }));
        }
        true
    }

    /// Waits a second; false when shutdown came first.
    async fn pause(&self) -> bool {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => true,
            () = self.shutdown.cancelled() => false,
        }
    }

    async fn relay_progress(&self, updates: Option<broadcast::Receiver<ProgressUpdate>>) {
        let Some(mut updates) = updates else {
            return;
        };
        loop {
            let update = tokio::select! {
                update = updates.recv() => update,
                () = self.shutdown.cancelled() => return,
            };
            let ProgressUpdate {
                aggregate_id,
                mut message,
            } = match update {
                Ok(update) => update,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    debug!(missed, "live stream: progress messages skipped");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let owner = match self.owner_of("download", &aggregate_id).await {
                Ok(owner) => owner,
                Err(error) => {
                    // Progress is ephemeral: without its owner it goes to admins only.
                    debug!(%error, "live stream: no owner for a progress message");
                    None
                }
            };
            if let Value::Object(fields) = &mut message {
                fields
                    .entry("download_id")
                    .or_insert_with(|| Value::String(aggregate_id.clone()));
            }
            let frame = Event::default().event("progress").data(message.to_string());
            let _ = self.progress.send(Arc::new(HubProgress { owner, frame }));
        }
    }

    /// The owner of each event of `events` (`None` for aggregate types without owners).
    async fn owners_of(&self, events: &[StoredEvent]) -> Result<Vec<Option<Arc<str>>>, StoreError> {
        let mut known: HashMap<String, Arc<str>> = HashMap::new();
        let mut missing = Vec::new();
        for event in events {
            if !OWNED.contains(&event.aggregate_type.as_str()) {
                continue;
            }
            let key = owner_key(&event.aggregate_type, &event.aggregate_id);
            if known.contains_key(&key) {
                continue;
            }
            let found = if event.sequence == 1 {
                owner_in_payload(&event.payload).map(|owner| {
                    let owner: Arc<str> = owner.into();
                    self.owners.insert(key.clone(), owner.clone());
                    owner
                })
            } else {
                self.owners.get(&key)
            };
            match found {
                Some(owner) => {
                    known.insert(key, owner);
                }
                None => missing.push((event.aggregate_type.clone(), event.aggregate_id.clone())),
            }
        }
        missing.sort();
        missing.dedup();
        missing.retain(|(t, id)| !known.contains_key(&owner_key(t, id)));
        if !missing.is_empty() {
            let (types, ids): (Vec<String>, Vec<String>) = missing.into_iter().unzip();
            let rows: Vec<(String, String, Value)> = sqlx::query_as(
                "SELECT aggregate_type, aggregate_id, payload FROM events
                  WHERE sequence = 1
                    AND (aggregate_type, aggregate_id) IN
                        (SELECT * FROM unnest($1::text[], $2::text[]))",
            )
            .bind(&types)
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?;
            for (aggregate_type, aggregate_id, payload) in rows {
                if let Some(owner) = owner_in_payload(&payload) {
                    let key = owner_key(&aggregate_type, &aggregate_id);
                    let owner: Arc<str> = owner.into();
                    self.owners.insert(key.clone(), owner.clone());
                    known.insert(key, owner);
                }
            }
        }
        Ok(events
            .iter()
            .map(|event| {
                OWNED
                    .contains(&event.aggregate_type.as_str())
                    .then(|| known.get(&owner_key(&event.aggregate_type, &event.aggregate_id)))
                    .flatten()
                    .cloned()
            })
            .collect())
    }

    /// The owner of one aggregate.
    async fn owner_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<Arc<str>>, StoreError> {
        if let Some(owner) = self.owners.get(&owner_key(aggregate_type, aggregate_id)) {
            return Ok(Some(owner));
        }
        let payload: Option<Value> = sqlx::query_scalar(
            "SELECT payload FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = 1",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(payload.as_ref().and_then(owner_in_payload).map(|owner| {
            let owner: Arc<str> = owner.into();
            self.owners
                .insert(owner_key(aggregate_type, aggregate_id), owner.clone());
            owner
        }))
    }
}

/// The opening frame of a stream that starts after `start`: its id is `start`'s own
/// position (`0` for the start of the log), which [`resume_point`] maps back to `start`.
fn ready_frame(start: Cursor) -> Event {
    Event::default()
        .id(start.position.to_string())
        .event(READY_EVENT)
        .data(serde_json::json!({ "position": start.position }).to_string())
}

/// The SSE frame of a stored event; `None` when it has no public form (skipped, as the
/// relay skips it).
fn event_frame(event: &StoredEvent) -> Option<Event> {
    let envelope = match CloudEvent::from_stored(event) {
        Ok(envelope) => envelope,
        Err(error) => {
            debug!(%error, event = %event.event_id(), "no public form; not streamed");
            return None;
        }
    };
    let data = serde_json::to_string(&envelope).ok()?;
    Some(
        Event::default()
            .id(event.position.to_string())
            .event(&envelope.event_type)
            .data(data),
    )
}

fn owner_key(aggregate_type: &str, aggregate_id: &str) -> String {
    format!("{aggregate_type}/{aggregate_id}")
}

/// `requested_by` of a first event (`{"submitted": {"requested_by": …}}`,
/// `{"queued": {"requested_by": …}}`).
fn owner_in_payload(payload: &Value) -> Option<String> {
    payload
        .as_object()?
        .values()
        .next()?
        .get("requested_by")?
        .as_str()
        .map(str::to_string)
}

/// A bounded map of aggregate owners: two generations; when the current one is full it
/// becomes the previous one (and the previous one is dropped). Owners never change, so
/// entries never go stale.
#[derive(Debug)]
struct OwnerCache {
    capacity: usize,
    generations: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<String, Arc<str>>,
    previous: HashMap<String, Arc<str>>,
}

impl Generations {
    fn put(&mut self, capacity: usize, key: String, owner: Arc<str>) {
        self.current.insert(key, owner);
        if self.current.len() >= capacity {
            self.previous = std::mem::take(&mut self.current);
        }
    }
}

impl OwnerCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            generations: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, key: &str) -> Option<Arc<str>> {
        let mut generations = self.lock();
        if let Some(owner) = generations.current.get(key) {
            return Some(owner.clone());
        }
        let owner = generations.previous.remove(key)?;
        generations.put(self.capacity, key.to_string(), owner.clone());
        Some(owner)
    }

    fn insert(&self, key: String, owner: Arc<str>) {
        self.lock().put(self.capacity, key, owner);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let generations = self.lock();
        generations.current.len() + generations.previous.len()
    }
}

/// The cursor of the last event behind the transaction fence: everything at or before it
/// is committed and visible, everything committed later is after it.
async fn fenced_head(pool: &PgPool) -> Result<Cursor, StoreError> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT tx_id::text::bigint, global_position FROM events
          WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY events.tx_id DESC, events.global_position DESC
          LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row
        .map(|(tx_id, position)| Cursor { tx_id, position })
        .unwrap_or_default())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamParams {
    #[serde(default)]
    last_event_id: Option<String>,
}

/// Where a stream resumes: the `Last-Event-ID` header, else `?last_event_id=`; `None`
/// without either (start at the head).
///
/// # Errors
/// 400 `malformed-request` for a value that is not a non-negative integer, 400
/// `unknown-last-event-id` for a position without an event.
async fn resume_point(
    pool: &PgPool,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Cursor>, ApiError> {
    let header = match headers.get(&LAST_EVENT_ID) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::malformed("Last-Event-ID must be a global position (an integer)")
        })?),
    };
    let Some(raw) = header
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .or_else(|| query.map(str::trim).filter(|v| !v.is_empty()))
    else {
        return Ok(None);
    };
    let position = parse_position(raw)?;
    if position == 0 {
        return Ok(Some(Cursor::default()));
    }
    log::cursor_of(pool, position)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                ProblemType::UnknownLastEventId,
                format!(
                    "no event has global position {position}; reconnect without \
                     Last-Event-ID to start at the head"
                ),
            )
            .with("last_event_id", position)
        })
}

fn parse_position(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|p| *p >= 0).ok_or_else(|| {
        ApiError::malformed(format!(
            "Last-Event-ID must be a global position (a non-negative integer), not `{raw}`"
        ))
    })
}

/// The live stream of events and download progress (Server-Sent Events).
#[utoipa::path(
    get,
    path = "/api/v1/stream",
    tag = "stream",
    params(
        ("Last-Event-ID" = Option<i64>, Header, description = "resume after this global position (sent by EventSource on reconnect; 0: from the start of the log)"),
        ("last_event_id" = Option<i64>, Query, description = "the same, for a first connect that cannot set headers (the header wins)"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "first a `ready` frame (`id` = the position the stream starts after, `data` = `{\"position\": …}`), then events (`id` = global position, `event` = CloudEvents type, `data` = CloudEvent JSON) and `progress` frames (no `id`) until the session ends or the server shuts down"),
        (status = 400, description = "the id is not a non-negative integer (`malformed-request`), or no event has that position (`unknown-last-event-id`)"),
        (status = 503, description = "this process does not serve the stream (`unavailable`)"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn stream(
    State(state): State<QueryState>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Result<Response, ApiError> {
    let hub = state
        .stream
        .clone()
        .ok_or_else(|| ApiError::unavailable("the live stream is not enabled here", 5))?;
    let resume = resume_point(&state.pool, &headers, params.last_event_id.as_deref()).await?;
    let connected_at = fenced_head(&state.pool)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let token = request_token(&headers).ok_or_else(ApiError::unauthenticated)?;
    let client = Client {
        viewer: Viewer {
            actor: principal.actor,
            session_id: principal.session_id,
            token,
        },
        authenticator: state.authenticator.clone(),
        connected_at,
        hub,
    };
    let keep_alive = client.hub.settings.keep_alive;
    let (frames, mut receiver) = mpsc::channel(CLIENT_BUFFER);
    tokio::spawn(client.run(resume.unwrap_or(connected_at), frames));
    let frames =
        futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).map(Ok::<_, Infallible>);
    Ok((
        // Tells nginx-like proxies not to buffer the stream.
        [(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        )],
        Sse::new(frames).keep_alive(KeepAlive::new().interval(keep_alive)),
    )
        .into_response())
}

/// Who a stream is for.
struct Viewer {
    actor: Actor,
    session_id: Option<Uuid>,
    token: String,
}

impl Viewer {
    fn sees(&self, aggregate_type: &str, owner: Option<&str>) -> bool {
        self.actor.is_admin() || (OWNED.contains(&aggregate_type) && self.owns(owner))
    }

    fn sees_progress(&self, owner: Option<&str>) -> bool {
        self.actor.is_admin() || self.owns(owner)
    }

    /// Whether `owner` (an actor id as written on the wire) is the viewer.
    fn owns(&self, owner: Option<&str>) -> bool {
        owner
            .and_then(|owner| owner.parse::<ActorId>().ok())
            .is_some_and(|owner| owner == self.actor.id)
    }

    /// Whether an event (of type `kind`) ends the caller's right to this stream as opened:
    /// their session revoked or expired, their account disabled or its role changed. Only
    /// events committed after the stream opened count (a resumed stream reads older ones,
    /// which the authentication at connect has already judged).
    fn ended_by(&self, aggregate_type: &str, aggregate_id: &str, kind: &str) -> bool {
        match aggregate_type {
            "user_session" => {
                self.session_id
                    .is_some_and(|id| id.to_string() == aggregate_id)
                    && matches!(kind, "revoked" | "expired")
            }
            "user_account" => {
                self.actor
                    .id
                    .user_id()
                    .is_some_and(|me| aggregate_id.parse() == Ok(me))
                    && matches!(kind, "disabled" | "role_changed")
            }
            _ => false,
        }
    }
}

/// Counts an open stream in [`CLIENTS_GAUGE`] while alive.
struct Gauged;

impl Gauged {
    fn new() -> Self {
        metrics::gauge!(CLIENTS_GAUGE).increment(1.0);
        Self
    }
}

impl Drop for Gauged {
    fn drop(&mut self) {
        metrics::gauge!(CLIENTS_GAUGE).decrement(1.0);
    }
}

/// One open stream.
struct Client {
    hub: Arc<StreamHub>,
    viewer: Viewer,
    authenticator: Arc<dyn Authenticator>,
    /// The head of the log when the stream opened.
    connected_at: Cursor,
}

impl Client {
    /// Sends the frames after `cursor` until the connection closes, the session ends, the
    /// database fails (the client reconnects with its `Last-Event-ID`) or shutdown.
    async fn run(self, mut cursor: Cursor, frames: mpsc::Sender<Event>) {
        let _gauged = Gauged::new();
        // Subscribe first, then catch up: see the module documentation.
        let mut events = self.hub.events.subscribe();
        let mut progress = self.hub.progress.subscribe();
        let period = self
            .hub
            .settings
            .session_check
            .max(Duration::from_millis(100));
        let mut check = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The opening frame, so that `Last-Event-ID` is set before any event arrives.
        if !self.send(&frames, ready_frame(cursor)).await {
            return;
        }
        if !self.catch_up(&mut cursor, &frames).await {
            return;
        }
        loop {
            tokio::select! {
                biased;
                () = self.hub.shutdown.cancelled() => return,
                () = frames.closed() => return,
                received = events.recv() => match received {
                    Ok(event) => {
                        if event.cursor <= cursor {
                            continue; // already sent by the catch-up
                        }
                        cursor = event.cursor;
                        if event.cursor > self.connected_at
                            && self
                                .viewer
                                .ended_by(&event.aggregate_type, &event.aggregate_id, &event.kind)
                        {
                            return;
                        }
                        if self.viewer.sees(&event.aggregate_type, event.owner.as_deref())
                            && !self.send(&frames, event.frame.clone()).await
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        debug!(missed, "live stream client fell behind; catching up");
                        metrics::counter!(LAGGED_COUNTER).increment(1);
                        if !self.catch_up(&mut cursor, &frames).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                received = progress.recv() => match received {
                    Ok(message) => {
                        if self.viewer.sees_progress(message.owner.as_deref())
                            && !self.send(&frames, message.frame.clone()).await
                        {
                            return;
                        }
                    }
                    // Progress is ephemeral: the next message says more.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = check.tick() => {
                    if !self.still_signed_in().await {
                        return;
                    }
                }
            }
        }
    }

    /// Sends every visible event after `cursor` that is behind the fence now, advancing
    /// `cursor` over invisible ones too. False when the stream must end (including when the
    /// connection is gone: the catch-up stops there rather than read on).
    ///
    /// A user's catch-up reads only the [`OWNED`] aggregate types; `cursor` then stops at the
    /// last event of those types, which is as good since the others are invisible to them.
    async fn catch_up(&self, cursor: &mut Cursor, frames: &mpsc::Sender<Event>) -> bool {
        let admin = self.viewer.actor.is_admin();
        let types: Vec<String> = if admin {
            Vec::new() // all types
        } else {
            OWNED.iter().map(|t| (*t).to_string()).collect()
        };
        loop {
            if frames.is_closed() {
                return false;
            }
            let batch = tokio::select! {
                batch = log::read_after_types(&self.hub.pool, *cursor, CATCH_UP_BATCH, &types) => batch,
                () = frames.closed() => return false,
                () = self.hub.shutdown.cancelled() => return false,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    warn!(%error, "live stream: catch-up failed; ending the stream");
                    return false;
                }
            };
            if batch.is_empty() {
                break;
            }
            let owners = if admin {
                vec![None; batch.len()]
            } else {
                let owners = tokio::select! {
                    owners = self.hub.owners_of(&batch) => owners,
                    () = frames.closed() => return false,
                    () = self.hub.shutdown.cancelled() => return false,
                };
                match owners {
                    Ok(owners) => owners,
                    Err(error) => {
                        warn!(%error, "live stream: catch-up failed; ending the stream");
                        return false;
                    }
                }
            };
            for (event, owner) in batch.iter().zip(owners) {
                *cursor = event.cursor();
                if *cursor > self.connected_at
                    && self.viewer.ended_by(
                        &event.aggregate_type,
                        &event.aggregate_id,
                        &event.event_type,
                    )
                {
                    return false;
                }
                if !self.viewer.sees(&event.aggregate_type, owner.as_deref()) {
                    continue;
                }
                if let Some(frame) = event_frame(event) {
                    if !self.send(frames, frame).await {
                        return false;
                    }
                }
            }
        }
        if admin {
            // Read every type: the loop above has judged every event up to `cursor`.
            return true;
        }
        let ended = tokio::select! {
            ended = self.ended_since_connect() => ended,
            () = frames.closed() => return false,
            () = self.hub.shutdown.cancelled() => return false,
        };
        match ended {
            Ok(ended) => !ended,
            Err(error) => {
                warn!(%error, "live stream: catch-up failed; ending the stream");
                false
            }
        }
    }

    /// Whether an event that ends this stream (see [`Viewer::ended_by`]) was committed after
    /// it opened. A user's catch-up does not read those events (other aggregate types), and
    /// the broadcast skips whatever lies at or below the catch-up's cursor (or came before
    /// the subscription), so they are looked up here: by the aggregates' primary key, a few
    /// rows.
    async fn ended_since_connect(&self) -> Result<bool, StoreError> {
        let session = self.viewer.session_id.map(|id| id.to_string());
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT aggregate_type, aggregate_id, event_type FROM events
              WHERE ((aggregate_type = 'user_session' AND aggregate_id = $1)
                  OR (aggregate_type = 'user_account' AND aggregate_id = $2))
                AND (tx_id, global_position) > ($3::bigint::text::xid8, $4)",
        )
        .bind(session)
        .bind(self.viewer.actor.id.to_string())
        .bind(self.connected_at.tx_id)
        .bind(self.connected_at.position)
        .fetch_all(&self.hub.pool)
        .await?;
        Ok(rows.iter().any(|(aggregate_type, aggregate_id, kind)| {
            self.viewer.ended_by(aggregate_type, aggregate_id, kind)
        }))
    }

    /// False when the connection is gone or shutdown began.
    async fn send(&self, frames: &mpsc::Sender<Event>, frame: Event) -> bool {
        tokio::select! {
            sent = frames.send(frame) => sent.is_ok(),
            () = self.hub.shutdown.cancelled() => false,
        }
    }

    /// Whether the token still stands for the same caller (a transient failure of the
    /// session store keeps the stream open).
    async fn still_signed_in(&self) -> bool {
        match self.authenticator.authenticate(&self.viewer.token).await {
            Ok(principal) => principal.actor == self.viewer.actor,
            Err(AuthRejection::Invalid) => false,
            Err(AuthRejection::RateLimited { .. } | AuthRejection::Unavailable(_)) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_owner_is_the_requester_of_the_first_event() {
        let submitted = json!({"submitted": {"requested_by": "0193-user", "is_4k": false}});
        assert_eq!(owner_in_payload(&submitted).as_deref(), Some("0193-user"));
        let queued = json!({"queued": {"requested_by": "u2", "url": "https://youtu.be/x"}});
        assert_eq!(owner_in_payload(&queued).as_deref(), Some("u2"));
        assert_eq!(owner_in_payload(&json!("processing")), None);
        assert_eq!(owner_in_payload(&json!({"approved": {"by": "u"}})), None);
    }

    #[test]
    fn the_owner_cache_is_bounded_and_keeps_recent_owners() {
        let cache = OwnerCache::new(3);
        for i in 0..10 {
            cache.insert(format!("k{i}"), Arc::from(format!("o{i}").as_str()));
            assert!(cache.len() <= 6);
        }
        assert_eq!(cache.get("k9").as_deref(), Some("o9"));
        assert_eq!(cache.get("k0"), None);
        // A hit in the previous generation moves it to the current one.
        assert_eq!(cache.get("k6").as_deref(), Some("o6"));
    }

    #[test]
    fn positions_are_non_negative_integers() {
        assert_eq!(parse_position("42").unwrap(), 42);
        assert_eq!(parse_position("0").unwrap(), 0);
        for bad in ["-1", "abc", "1.5", "9999999999999999999999"] {
            let error = parse_position(bad).unwrap_err();
            assert_eq!(error.status(), axum::http::StatusCode::BAD_REQUEST);
            assert_eq!(error.slug(), "malformed-request");
        }
    }
}
