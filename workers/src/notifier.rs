//! Notifications (issue 14): the notifier saga turns events into deliveries, the dispatcher
//! sends them, and the health watcher turns circuit-breaker transitions into
//! `service_down` / `service_up`.
//!
//! **No notification lost, none sent twice in the normal course.** The saga
//! ([`Notifier`], on the saga skeleton) records one delivery per (event, recipient,
//! channel) in PostgreSQL (`notification_deliveries`, unique on that triple) *before* the
//! event is acknowledged; a database failure answers [`Step::Retry`], so the event comes
//! again. The saga calls no outside service: everything that can fail outside is the
//! dispatcher's, per delivery. The [`Dispatcher`] claims due deliveries channel by channel —
//! one task per channel, so one channel's outage does not delay the others — sends each
//! ([`medianest_integrations::notify::Sender`]) and records the outcome: `sent`; `retrying`
//! with exponential backoff and full jitter (at least the service's `Retry-After`) until
//! the delivery's retry window ends (default 24 h), then `dead`; or `dead` at once for a
//! permanent failure, with the error. A redelivered event inserts nothing, so a `sent`
//! delivery is never sent again; a crash between sending and recording repeats that one
//! message when its claim runs out, with the same `webhook-id`.
//!
//! Who gets what: [`NotificationType::audience`] (requester, admins) decides the people;
//! each person's preferences (or the defaults: e-mail for their own requests' approved,
//! declined, available and failed, and for admins pending and failed requests and service
//! health, when an address is known) decide the personal channels; each enabled channel's
//! household `types` add one household delivery. Disabled accounts get nothing; a channel
//! the admin has not enabled sends nothing.

use medianest_integrations::cause::Context;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use medianest_domain::media_request::{MediaType, RequestStatus};
use medianest_domain::notification::NotificationType;
use medianest_domain::ActorId;
use medianest_integrations::notify::{
    Channel, ChannelConfig, Message, Outcome, Secrets, Sender, To,
};
use medianest_nats::{EventFeed, FeedEvent};
use medianest_store::downloads::Downloads;
use medianest_store::media_requests::MediaRequests;
use medianest_store::notifications::{self as store, Attempt, NewDelivery, Recipient};
use rand::Rng;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::consumer::{self, Backoff, Saga, Step};

/// The consumer name.
pub const NAME: &str = "saga-notifier";

/// The recipient of a channel's household delivery.
pub const HOUSEHOLD: &str = "household";

/// Looks up a poster for a message (the catalogue's cache of Overseerr's details).
#[async_trait]
pub trait Posters: Send + Sync {
    /// The absolute poster URL of the movie or show, if known; `None` when it cannot be
    /// found now (a message goes without a poster rather than wait).
    async fn poster_url(&self, media_type: MediaType, tmdb_id: u32) -> Option<String>;
}

/// How the notifier works.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// `MEDIANEST_PUBLIC_URL`: the base of the links in messages; none without it.
    pub public_url: Option<String>,
    /// How long transient failures are retried (`MEDIANEST_NOTIFY_RETRY_HOURS`, default 24 h).
    pub retry_for: Duration,
    /// The first retry's wait (default 10 s); it doubles per attempt, with full jitter.
    pub backoff_min: Duration,
    /// The longest wait between attempts (default 30 min).
    pub backoff_max: Duration,
    /// How often the dispatcher looks for due deliveries without being woken (default 1 s),
    /// and the health watcher at `service_health`.
    pub poll: Duration,
    /// How long a dispatcher holds a claimed delivery before another may take it (default
    /// 60 s; more than a send's timeout).
    pub claim_for: Duration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            retry_for: Duration::from_secs(24 * 3600),
            backoff_min: Duration::from_secs(10),
            backoff_max: Duration::from_secs(30 * 60),
            poll: Duration::from_secs(1),
            claim_for: Duration::from_secs(60),
        }
    }
}

/// The notifier saga: events → deliveries.
#[derive(Clone)]
pub struct Notifier {
    pool: PgPool,
    requests: Arc<MediaRequests>,
    downloads: Option<Arc<Downloads>>,
    feed: Arc<dyn EventFeed>,
    posters: Option<Arc<dyn Posters>>,
    config: NotifierConfig,
    wake: Arc<Notify>,
}

impl Notifier {
    /// A notifier fed by `feed`; `downloads` when downloads are on; `posters` when the
    /// catalogue is configured; `wake` is shared with the [`Dispatcher`], which it wakes
    /// when it records deliveries.
    pub fn new(
        pool: PgPool,
        requests: Arc<MediaRequests>,
        downloads: Option<Arc<Downloads>>,
        feed: Arc<dyn EventFeed>,
        posters: Option<Arc<dyn Posters>>,
        config: NotifierConfig,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            requests,
            downloads,
            feed,
            posters,
            config,
            wake,
        }
    }

    /// Consumes events until `shutdown` on the saga skeleton.
    pub async fn run(&self, shutdown: CancellationToken) {
        consumer::run(self, self.feed.as_ref(), Backoff::default(), &shutdown).await;
    }

    /// What `event` tells whom, or `None` when it tells nobody (a request no longer pending,
    /// a download of a system actor).
    async fn subject(
        &self,
        kind: NotificationType,
        event: &FeedEvent,
    ) -> Result<Option<Subject>, String> {
        let id: Uuid = event
            .aggregate_id()
            .parse()
            .map_err(|_| "malformed aggregate id".to_string())?;
        let data = event.data();
        let link = |path: &str| {
            self.config
                .public_url
                .as_ref()
                .map(|base| format!("{}/{path}/{id}", base.trim_end_matches('/')))
        };
        if event.aggregate_type() == "download" {
            let Some(downloads) = &self.downloads else {
                return Ok(None);
            };
            let (download, _) = downloads
                .load(id.into())
                .await
                .map_err(|e| format!("cannot load the download: {e}"))?;
            let url = download.url().unwrap_or_default().to_string();
            let (title, body) = match kind {
                NotificationType::DownloadCompleted => {
                    let files = data["items"].as_u64().unwrap_or(0);
                    (
                        "Your download is in Plex".to_string(),
                        format!(
                            "{files} file{} from {url} {} in the Plex library.",
                            if files == 1 { "" } else { "s" },
                            if files == 1 { "is" } else { "are" }
                        ),
                    )
                }
                _ => (
                    "Your download failed".to_string(),
                    format!(
                        "The download of {url} failed: {}",
                        data["error"].as_str().unwrap_or("unknown error")
                    ),
                ),
            };
            return Ok(Some(Subject {
                requester: download
                    .requested_by()
                    .and_then(ActorId::user_id)
                    .map(Uuid::from),
                poster_of: None,
                message: self.message(
                    kind,
                    event,
                    title,
                    body,
                    link("downloads"),
                    None,
                    json!({
                        "download": { "id": id, "url": url, "status": event.event_type() },
                    }),
                ),
            }));
        }
        let (request, _) = self
            .requests
            .load(id.into())
            .await
            .map_err(|e| format!("cannot load the request: {e}"))?;
        let Some(media) = request.media() else {
            return Ok(None);
        };
        if kind == NotificationType::RequestPending
            && request.status() != Some(RequestStatus::Pending)
        {
            debug!("no longer pending (auto-approved or decided): no pending notice");
            return Ok(None);
        }
        let name = match media.year {
            Some(year) => format!("{} ({year})", media.title),
            None => media.title.clone(),
        };
        let quality = if request.is_4k() { " in 4K" } else { "" };
        let what = match media.media_type {
            MediaType::Movie => "the movie",
            MediaType::Tv => "the show",
        };
        let reason = data["reason"]
            .as_str()
            .or_else(|| data["error"].as_str())
            .map(str::to_string);
        let (title, body) = match kind {
            NotificationType::RequestPending => (
                format!("New request: {name}"),
                format!("A member requested {what} {name}{quality}. It waits for an admin's approval."),
            ),
            NotificationType::RequestApproved => (
                format!("{name} was approved"),
                format!(
                    "The request for {what} {name}{quality} was approved{}. You will be told when it is available.",
                    if data["auto"].as_bool() == Some(true) { " automatically" } else { "" }
                ),
            ),
            NotificationType::RequestDeclined => (
                format!("{name} was declined"),
                match &reason {
                    Some(reason) => format!("The request for {what} {name}{quality} was declined: {reason}"),
                    None => format!("The request for {what} {name}{quality} was declined."),
                },
            ),
            NotificationType::RequestAvailable => (
                format!("{name} is available"),
                format!("{} {name} is now in Plex{quality}. Enjoy!", capitalised(what)),
            ),
            NotificationType::RequestPartiallyAvailable => {
                let seasons: Vec<String> = data["seasons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64)
                    .map(|s| s.to_string())
                    .collect();
                (
                    format!("{name} is partly available"),
                    format!(
                        "Season{} {} of {name} {} now in Plex{quality}.",
                        if seasons.len() == 1 { "" } else { "s" },
                        seasons.join(", "),
                        if seasons.len() == 1 { "is" } else { "are" }
                    ),
                )
            }
            _ => (
                format!("{name} could not be fulfilled"),
                format!(
                    "The request for {what} {name}{quality} failed: {}",
                    reason.as_deref().unwrap_or("no reason given")
                ),
            ),
        };
        Ok(Some(Subject {
            requester: request.requested_by().and_then(ActorId::user_id)
                    .map(Uuid::from),
            poster_of: Some((media.media_type, media.tmdb_id.get())),
            message: self.message(kind, event, title, body, link("requests"), None, json!({
                "request": { "id": id, "status": request.status().map(RequestStatus::as_str), "is_4k": request.is_4k() },
                "media": { "media_type": media.media_type.as_str(), "tmdb_id": media.tmdb_id.get(), "tvdb_id": media.tvdb_id, "title": media.title, "year": media.year },
            })),
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn message(
        &self,
        kind: NotificationType,
        event: &FeedEvent,
        title: String,
        body: String,
        url: Option<String>,
        image_url: Option<String>,
        mut data: Value,
    ) -> Message {
        data["event_id"] = json!(event.event.id);
        data["event_type"] = json!(format!("{}.{}", event.aggregate_type(), event.event_type()));
        Message {
            notification_type: kind.as_str().to_string(),
            title,
            body,
            url,
            image_url,
            time: event.time().to_rfc3339(),
            data,
        }
    }
}

/// What an event tells: the message, whose request or download it is, and the media whose
/// poster the message shows (looked up only when someone is to be told).
struct Subject {
    requester: Option<Uuid>,
    poster_of: Option<(MediaType, u32)>,
    message: Message,
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

#[async_trait]
impl Saga for Notifier {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["media_request", "download"]
    }

    fn wants(&self, event_type: &str) -> bool {
        ["media_request", "download"]
            .iter()
            .any(|a| NotificationType::for_event(a, event_type).is_some())
    }

    async fn handle(&self, event: &FeedEvent, _shutdown: &CancellationToken) -> Step {
        let Some(kind) = NotificationType::for_event(event.aggregate_type(), event.event_type())
        else {
            return Step::Done;
        };
        let mut subject = match self.subject(kind, event).await {
            Ok(Some(subject)) => subject,
            Ok(None) => return Step::Done,
            Err(error) => return Step::retry(error),
        };
        let planned = match plan(&self.pool, kind, subject.requester).await {
            Ok(planned) if planned.is_empty() => return Step::Done,
            Ok(planned) => planned,
            Err(error) => return Step::retry(Context::new("cannot plan deliveries", error)),
        };
        if let (Some(posters), Some((media_type, tmdb_id))) = (&self.posters, subject.poster_of) {
            subject.message.image_url = posters.poster_url(media_type, tmdb_id).await;
        }
        let event_id = event.event.id.clone();
        match record(
            &self.pool,
            &planned,
            kind,
            (&event_id, event.cursor.position),
            &subject.message,
            self.config.retry_for,
        )
        .await
        {
            Ok(0) => Step::Done,
            Ok(recorded) => {
                info!(%event_id, kind = %kind, recorded, "deliveries recorded");
                self.wake.notify_one();
                Step::Done
            }
            Err(error) => Step::retry(Context::new("cannot record deliveries", error)),
        }
    }
}

/// One delivery to make: the recipient (a user id or [`HOUSEHOLD`]), the channel and the
/// personal address.
type Planned = (String, Channel, Option<String>);

/// The deliveries of one notification of `kind`: the people of its audience by their
/// preferences, and the household destinations of the enabled channels carrying it.
async fn plan(
    pool: &PgPool,
    kind: NotificationType,
    requester: Option<Uuid>,
) -> Result<Vec<Planned>, sqlx::Error> {
    let channels = store::channels(pool).await?;
    let enabled: HashMap<Channel, Vec<String>> = channels
        .iter()
        .filter(|c| c.enabled)
        .filter_map(|c| Channel::parse(&c.channel).map(|ch| (ch, c.types.clone())))
        .collect();
    if enabled.is_empty() {
        return Ok(Vec::new());
    }
    let mut planned = Vec::new();
    for (channel, types) in &enabled {
        if types.iter().any(|t| t == kind.as_str()) {
            planned.push((HOUSEHOLD.to_string(), *channel, None));
        }
    }
    let audience = kind.audience();
    let ids: Vec<Uuid> = requester
        .filter(|_| audience.requester)
        .into_iter()
        .collect();
    for person in store::recipients(pool, &ids, audience.admins).await? {
        for (channel, address) in personal_channels(&person, kind) {
            if enabled.contains_key(&channel) {
                planned.push((person.id.to_string(), channel, Some(address)));
            }
        }
    }
    Ok(planned)
}

/// Records `planned` deliveries of `message` for the event `(id, global position)`; answers
/// how many were new.
async fn record(
    pool: &PgPool,
    planned: &[Planned],
    kind: NotificationType,
    (event_id, position): (&str, i64),
    message: &Message,
    retry_for: Duration,
) -> Result<u64, sqlx::Error> {
    let give_up_at = Utc::now() + chrono::Duration::from_std(retry_for).unwrap_or_default();
    let message = serde_json::to_value(message).unwrap_or_default();
    let new: Vec<NewDelivery> = planned
        .iter()
        .map(|(recipient, channel, address)| NewDelivery {
            event_id: event_id.to_string(),
            event_position: position,
            notification_type: kind.as_str().to_string(),
            recipient: recipient.clone(),
            channel: channel.as_str().to_string(),
            address: address.clone(),
            message: message.clone(),
            give_up_at,
        })
        .collect();
    if new.is_empty() {
        return Ok(0);
    }
    store::insert_deliveries(pool, &new).await
}

/// A member's stored preferences: per personal channel, the address (e-mail: the account's
/// when absent) and the types wanted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChannelChoice {
    /// The address on that channel (`None` for e-mail: the account's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The notification types wanted there.
    pub types: BTreeSet<NotificationType>,
}

/// The defaults of a member who chose nothing: e-mail, when the account has an address.
pub fn default_choices(admin: bool, email_known: bool) -> HashMap<Channel, ChannelChoice> {
    let mut out = HashMap::new();
    if email_known {
        out.insert(
            Channel::Email,
            ChannelChoice {
                address: None,
                types: NotificationType::ALL
                    .into_iter()
                    .filter(|t| t.emailed_by_default(admin))
                    .collect(),
            },
        );
    }
    out
}

/// The personal channels and addresses on which `person` gets `kind`.
fn personal_channels(person: &Recipient, kind: NotificationType) -> Vec<(Channel, String)> {
    let choices: HashMap<Channel, ChannelChoice> = person
        .preferences
        .as_ref()
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .unwrap_or_else(|| default_choices(person.admin, person.email.is_some()));
    let mut out: Vec<(Channel, String)> = choices
        .into_iter()
        .filter(|(_, choice)| choice.types.contains(&kind))
        .filter_map(|(channel, choice)| {
            let address = match channel {
                Channel::Email => choice.address.or_else(|| person.email.clone()),
                _ => choice.address,
            }?;
            Some((channel, address))
        })
        .collect();
    out.sort();
    out
}

/// Sends due deliveries, one task per channel.
#[derive(Clone)]
pub struct Dispatcher {
    pool: PgPool,
    sender: Sender,
    config: NotifierConfig,
    wake: Arc<Notify>,
    running: Arc<Mutex<HashSet<String>>>,
}

impl Dispatcher {
    /// A dispatcher sending through `sender`, woken by the [`Notifier`] through `wake`.
    pub fn new(pool: PgPool, sender: Sender, config: NotifierConfig, wake: Arc<Notify>) -> Self {
        Self {
            pool,
            sender,
            config,
            wake,
            running: Arc::default(),
        }
    }

    /// Sends until `shutdown`; a send in progress is finished (and recorded) first.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            match store::channels_due(&self.pool).await {
                Ok(due) => {
                    for channel in due {
                        if self
                            .running
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(channel.clone())
                        {
                            let this = self.clone();
                            let stop = shutdown.clone();
                            tasks.spawn(async move {
                                this.drain(&channel, &stop).await;
                                this.running
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .remove(&channel);
                            });
                        }
                    }
                }
                Err(error) => warn!(%error, "cannot look for due deliveries"),
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.poll) => {}
                () = shutdown.cancelled() => break,
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Sends the due deliveries of `channel` until none is left.
    async fn drain(&self, channel: &str, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            let batch = match store::claim_due(
                &self.pool,
                channel,
                16,
                self.config.claim_for.as_secs_f64(),
            )
            .await
            {
                Ok(batch) if batch.is_empty() => return,
                Ok(batch) => batch,
                Err(error) => {
                    warn!(%error, channel, "cannot claim deliveries");
                    return;
                }
            };
            // The settings as they are now: an admin's fix applies to the next attempt.
            let config = self.channel_config(channel).await;
            for delivery in batch {
                let outcome = match &config {
                    Ok(config) => {
                        let to = delivery
                            .address
                            .as_deref()
                            .map_or(To::Household, To::Member);
                        let message: Result<Message, _> =
                            serde_json::from_value(delivery.message.clone());
                        match message {
                            Ok(message) => {
                                self.sender
                                    .send(config, to, &message, &delivery.id.to_string())
                                    .await
                            }
                            Err(error) => Outcome::Permanent {
                                error: format!("unreadable message: {error}"),
                            },
                        }
                    }
                    Err(outcome) => outcome.clone(),
                };
                let attempt = match &outcome {
                    Outcome::Sent => Attempt::Sent,
                    Outcome::Permanent { error } => Attempt::Dead {
                        error: error.clone(),
                    },
                    Outcome::Transient { error, retry_after } => Attempt::Retry {
                        error: error.clone(),
                        next_at: Utc::now() + self.backoff(delivery.attempts, *retry_after),
                    },
                };
                match store::record_attempt(&self.pool, delivery.id, &attempt).await {
                    Ok(status) => {
                        metrics::counter!(
                            "medianest_notifications_total",
                            "channel" => channel.to_string(),
                            "outcome" => status.clone(),
                        )
                        .increment(1);
                        if status == "sent" {
                            debug!(id = %delivery.id, channel, "delivered");
                        } else {
                            warn!(id = %delivery.id, channel, status, error = ?attempt, "not delivered");
                        }
                    }
                    // Left claimed: sent again (same webhook-id) when the claim runs out.
                    Err(error) => warn!(%error, id = %delivery.id, "cannot record the attempt"),
                }
            }
        }
    }

    /// The parsed configuration of `channel`, or the outcome every delivery of it gets.
    async fn channel_config(&self, channel: &str) -> Result<ChannelConfig, Outcome> {
        let transient = |error: String| Outcome::Transient {
            error,
            retry_after: None,
        };
        let Some(parsed) = Channel::parse(channel) else {
            return Err(Outcome::Permanent {
                error: format!("unknown channel {channel}"),
            });
        };
        let (row, secrets) = match store::channel_with_secrets(&self.pool, channel).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err(Outcome::Permanent {
                    error: "the channel is not configured".to_string(),
                })
            }
            Err(error) => return Err(transient(format!("cannot read the channel: {error}"))),
        };
        if !row.enabled {
            return Err(Outcome::Permanent {
                error: "the channel is disabled".to_string(),
            });
        }
        let secrets: Secrets = serde_json::from_value(secrets).unwrap_or_default();
        ChannelConfig::parse(parsed, &row.settings, secrets, self.sender.policy())
            .await
            .map_err(|error| Outcome::Permanent {
                error: format!("the channel's settings are refused: {error}"),
            })
    }

    /// The wait before attempt `attempts + 1`: full jitter over `min · 2^attempts` capped at
    /// `max`, and at least the service's `Retry-After`.
    fn backoff(&self, attempts: i32, retry_after: Option<Duration>) -> chrono::Duration {
        let exp = self
            .config
            .backoff_min
            .saturating_mul(1u32 << attempts.clamp(0, 20))
            .min(self.config.backoff_max);
        let jittered = exp.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
        let wait = retry_after.map_or(jittered, |r| r.max(jittered));
        chrono::Duration::from_std(wait).unwrap_or_default()
    }
}

/// A `service_health` row that may notify.
#[derive(sqlx::FromRow)]
struct Transition {
    service: String,
    state: String,
    last_error: Option<String>,
    opened_at: Option<DateTime<Utc>>,
    state_since: DateTime<Utc>,
}

/// Turns circuit-breaker transitions (`service_health`) into `service_down` / `service_up`
/// deliveries to the admins: a service whose breaker opened (once per opening), and one
/// whose breaker closed again after an opening, within the last `recent`.
#[derive(Clone)]
pub struct HealthWatcher {
    pool: PgPool,
    config: NotifierConfig,
    wake: Arc<Notify>,
}

impl HealthWatcher {
    /// A watcher sharing the dispatcher's `wake`.
    pub fn new(pool: PgPool, config: NotifierConfig, wake: Arc<Notify>) -> Self {
        Self { pool, config, wake }
    }

    /// Watches until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.pass().await {
                warn!(%error, "health watcher pass failed");
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.poll.max(Duration::from_secs(1))) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One look at `service_health`; answers how many deliveries were recorded. The
    /// delivery key is `service_down:<service>:<opened at>` or
    /// `service_up:<service>:<closed at>`, so each transition notifies once.
    ///
    /// # Errors
    /// The database error.
    pub async fn pass(&self) -> Result<u64, sqlx::Error> {
        let rows: Vec<Transition> = sqlx::query_as(
            "SELECT service, state, last_error, opened_at, state_since FROM service_health
                  WHERE state_since > now() - interval '1 hour'
                    AND (state = 'open' OR (state = 'closed' AND opened_at IS NOT NULL
                                            AND opened_at < state_since))",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut recorded = 0;
        for Transition {
            service,
            state,
            last_error,
            opened_at,
            state_since,
        } in rows
        {
            let (kind, at) = if state == "open" {
                (
                    NotificationType::ServiceDown,
                    opened_at.unwrap_or(state_since),
                )
            } else {
                (NotificationType::ServiceUp, state_since)
            };
            let name = match service.as_str() {
                "overseerr" => "Overseerr",
                "plex" => "Plex",
                "ytdlp" => "yt-dlp",
                other => other,
            };
            let (title, body) = if kind == NotificationType::ServiceDown {
                (
                    format!("{name} is down"),
                    format!(
                        "MediaNest cannot reach {name} and holds its calls back: {}",
                        last_error.as_deref().unwrap_or("no answer")
                    ),
                )
            } else {
                (
                    format!("{name} is back"),
                    format!("{name} answers again; held-back work goes on."),
                )
            };
            let event_id = format!("{}:{service}:{}", kind.as_str(), at.timestamp_micros());
            let message = Message {
                notification_type: kind.as_str().to_string(),
                title,
                body,
                url: None,
                image_url: None,
                time: at.to_rfc3339(),
                data: json!({ "service": service, "state": state, "since": at }),
            };
            let planned = plan(&self.pool, kind, None).await?;
            recorded += record(
                &self.pool,
                &planned,
                kind,
                (&event_id, 0),
                &message,
                self.config.retry_for,
            )
            .await?;
        }
        if recorded > 0 {
            self.wake.notify_one();
        }
        Ok(recorded)
    }
}
