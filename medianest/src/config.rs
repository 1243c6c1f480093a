//! Configuration: one typed [`Settings`], read from `--flags` or `MEDIANEST_*` environment
//! variables (docs/design.md §9) and validated at start-up; an invalid value stops start-up with a
//! message naming the variable. Secrets are never printed.

use std::net::SocketAddr;
use std::time::Duration;

use std::num::NonZeroU32;

use clap::{Args, ValueEnum};
use medianest_domain::media_request::AutoApprovePolicy;
use medianest_domain::user_account::{Quota, Quotas};

/// A role of `medianest serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Role {
    /// The command HTTP API.
    CommandApi,
    /// The query HTTP API.
    QueryApi,
    /// Projection and saga workers.
    Workers,
    /// The relay from the PostgreSQL log to JetStream.
    Relay,
}

/// Raw options of `medianest serve`, as clap reads them.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// PostgreSQL URL.
    #[arg(
        long,
        env = "MEDIANEST_DATABASE_URL",
        default_value = "postgres:///medianest",
        hide_env_values = true
    )]
    pub database_url: String,
    /// NATS URL.
    #[arg(
        long,
        env = "MEDIANEST_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true
    )]
    pub nats_url: String,
    /// JetStream stream name.
    #[arg(long, env = "MEDIANEST_STREAM", default_value = "MEDIANEST_EVENTS")]
    pub stream: String,
    /// First subject token(s) of every subject.
    #[arg(long, env = "MEDIANEST_SUBJECT_PREFIX", default_value = "medianest")]
    pub subject_prefix: String,
    /// Listen address of the HTTP routers (command and query merged).
    #[arg(long, env = "MEDIANEST_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: String,
    /// Bootstrap admin bearer token (until user sessions exist).
    #[arg(long, env = "MEDIANEST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Overseerr base URL, without /api/v1; the forwarder and reconciler are idle without it.
    #[arg(long, env = "MEDIANEST_OVERSEERR_URL")]
    pub overseerr_url: Option<String>,
    /// Overseerr API key (Settings → General).
    #[arg(long, env = "MEDIANEST_OVERSEERR_API_KEY", hide_env_values = true)]
    pub overseerr_api_key: Option<String>,
    /// Expected Authorization value of Overseerr's webhook; the webhook is refused without it.
    #[arg(
        long,
        env = "MEDIANEST_OVERSEERR_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub overseerr_webhook_secret: Option<String>,
    /// Which submissions are approved on submit: admins, all or none.
    #[arg(long, env = "MEDIANEST_AUTO_APPROVE", default_value = "admins")]
    pub auto_approve: String,
    /// Seconds between reconciler passes over requests Overseerr owns.
    #[arg(long, env = "MEDIANEST_RECONCILE_INTERVAL_SECS", default_value = "60")]
    pub reconcile_interval_secs: String,
    /// How many aggregates each saga works on at once (events of one aggregate stay in
    /// order).
    #[arg(long, env = "MEDIANEST_SAGA_CONCURRENCY", default_value = "16")]
    pub saga_concurrency: String,
    /// Hours an `Idempotency-Key` is remembered.
    #[arg(long, env = "MEDIANEST_IDEMPOTENCY_TTL_HOURS", default_value = "24")]
    pub idempotency_ttl_hours: String,
    /// Seconds a request may stay approved but not forwarded before the reconciler forwards
    /// it again.
    #[arg(long, env = "MEDIANEST_REDRIVE_AFTER_SECS", default_value = "600")]
    pub redrive_after_secs: String,
    /// Whether notifications are on (e-mail, webhooks, push services; configured through
    /// the admin API).
    #[arg(long, env = "MEDIANEST_NOTIFICATIONS", default_value = "true")]
    pub notifications: String,
    /// MediaNest's public URL, the base of the links in notifications.
    #[arg(long, env = "MEDIANEST_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Hosts (names or IP literals, comma-separated) notifications may reach although they
    /// are private, or over http (a Gotify or ntfy on the LAN).
    #[arg(long, env = "MEDIANEST_NOTIFY_ALLOW_HOSTS", default_value = "")]
    pub notify_allow_hosts: String,
    /// Hours a notification that fails transiently is retried before it is dead.
    #[arg(long, env = "MEDIANEST_NOTIFY_RETRY_HOURS", default_value = "24")]
    pub notify_retry_hours: String,
    /// Seconds one notification call may take.
    #[arg(long, env = "MEDIANEST_NOTIFY_TIMEOUT_SECS", default_value = "10")]
    pub notify_timeout_secs: String,
    /// Longest wait of a query for `min_position`, in milliseconds.
    #[arg(long, env = "MEDIANEST_MIN_POSITION_WAIT_MS", default_value = "5000")]
    pub min_position_wait_ms: String,
    /// Roles to run (repeatable); all of them when absent.
    #[arg(long = "role", value_enum)]
    pub roles: Vec<Role>,
    /// Plex Media Server URL (e.g. http://127.0.0.1:32400); Plex sign-in needs it.
    #[arg(long, env = "MEDIANEST_PLEX_URL")]
    pub plex_url: Option<String>,
    /// Plex Media Server token (X-Plex-Token of the server's owner).
    #[arg(long, env = "MEDIANEST_PLEX_TOKEN", hide_env_values = true)]
    pub plex_token: Option<String>,
    /// plex.tv base URL.
    #[arg(long, env = "MEDIANEST_PLEXTV_URL", default_value = "https://plex.tv")]
    pub plextv_url: String,
    /// Hours a session lives without being used (its expiry slides on use).
    #[arg(long, env = "MEDIANEST_SESSION_TTL_HOURS", default_value = "720")]
    pub session_ttl_hours: String,
    /// Movie quota of users without their own, as LIMIT/DAYS (e.g. 10/7); empty: unlimited.
    #[arg(long, env = "MEDIANEST_DEFAULT_MOVIE_QUOTA", default_value = "")]
    pub default_movie_quota: String,
    /// TV quota of users without their own, as LIMIT/DAYS; empty: unlimited.
    #[arg(long, env = "MEDIANEST_DEFAULT_TV_QUOTA", default_value = "")]
    pub default_tv_quota: String,
    /// Failed sign-ins allowed per account in the window (then the account is locked).
    #[arg(long, env = "MEDIANEST_SIGNIN_ATTEMPTS", default_value = "5")]
    pub signin_attempts: String,
    /// Failed sign-ins allowed per client address in the window, over all accounts.
    #[arg(
        long,
        env = "MEDIANEST_SIGNIN_ATTEMPTS_PER_ADDRESS",
        default_value = "30"
    )]
    pub signin_attempts_per_address: String,
    /// The failed sign-in window, in seconds.
    #[arg(long, env = "MEDIANEST_SIGNIN_WINDOW_SECS", default_value = "900")]
    pub signin_window_secs: String,
    /// API calls allowed per user per minute.
    #[arg(long, env = "MEDIANEST_API_RATE_LIMIT", default_value = "100")]
    pub api_rate_limit: String,
    /// Seconds between session expirer passes.
    #[arg(
        long,
        env = "MEDIANEST_SESSION_EXPIRER_INTERVAL_SECS",
        default_value = "60"
    )]
    pub session_expirer_interval_secs: String,
    /// Trust the last X-Forwarded-For entry as the client address (behind a reverse proxy).
    #[arg(long, env = "MEDIANEST_TRUST_PROXY", default_value = "false")]
    pub trust_proxy: String,
    /// Root of the YouTube library (yt-dlp's output); downloads are off without it.
    #[arg(long, env = "MEDIANEST_DOWNLOADS_DIR")]
    pub downloads_dir: Option<String>,
    /// The yt-dlp program (a name on PATH or a path).
    #[arg(long, env = "MEDIANEST_YTDLP", default_value = "yt-dlp")]
    pub ytdlp: String,
    /// Hosts a download URL may name, comma-separated (exact, case-insensitive).
    #[arg(
        long,
        env = "MEDIANEST_YOUTUBE_ALLOWED_HOSTS",
        default_value = "youtube.com,www.youtube.com,m.youtube.com,music.youtube.com,youtu.be"
    )]
    pub youtube_allowed_hosts: String,
    /// Downloads a user (not an admin) may queue per rolling hour; 0: unlimited.
    #[arg(long, env = "MEDIANEST_DOWNLOAD_LIMIT_PER_HOUR", default_value = "5")]
    pub download_limit_per_hour: String,
    /// The most items a playlist may have to be queued.
    #[arg(long, env = "MEDIANEST_PLAYLIST_MAX_ITEMS", default_value = "200")]
    pub playlist_max_items: String,
    /// yt-dlp processes at once.
    #[arg(long, env = "MEDIANEST_DOWNLOAD_CONCURRENCY", default_value = "2")]
    pub download_concurrency: String,
    /// Title of the Plex "Other Videos" library that holds the downloads.
    #[arg(long, env = "MEDIANEST_PLEX_LIBRARY", default_value = "YouTube")]
    pub plex_library: String,
    /// The downloads root as the Plex server sees it (when mounted elsewhere there).
    #[arg(long, env = "MEDIANEST_PLEX_DOWNLOADS_DIR")]
    pub plex_downloads_dir: Option<String>,
    /// Secret last path segment of the Plex webhook URL; the webhook is refused without it.
    #[arg(long, env = "MEDIANEST_PLEX_WEBHOOK_SECRET", hide_env_values = true)]
    pub plex_webhook_secret: Option<String>,
    /// Transient failures in a row (5xx, timeouts, connection errors) that open the circuit
    /// breaker of an external service (Overseerr, Plex, yt-dlp).
    #[arg(long, env = "MEDIANEST_BREAKER_FAILURES", default_value = "5")]
    pub breaker_failures: String,
    /// Seconds an open circuit breaker holds calls back before one trial call.
    #[arg(long, env = "MEDIANEST_BREAKER_COOLDOWN_SECS", default_value = "30")]
    pub breaker_cooldown_secs: String,
    /// Whether the Plex library is synced into MediaNest (when a Plex Media Server is
    /// configured): `true` or `false`.
    #[arg(long, env = "MEDIANEST_PLEX_SYNC", default_value = "true")]
    pub plex_sync: String,
    /// Seconds between recently-added passes of the Plex sync.
    #[arg(
        long,
        env = "MEDIANEST_PLEX_RECENT_INTERVAL_SECS",
        default_value = "300"
    )]
    pub plex_recent_interval_secs: String,
    /// Hours between full passes of the Plex sync (which also notice removals).
    #[arg(long, env = "MEDIANEST_PLEX_FULL_INTERVAL_HOURS", default_value = "24")]
    pub plex_full_interval_hours: String,
    /// Comma-separated keys or titles of the Plex library sections that hold 4K copies.
    #[arg(long, env = "MEDIANEST_PLEX_4K_SECTIONS", default_value = "")]
    pub plex_4k_sections: String,
    /// Seconds a catalogue search or discover list stays fresh in the cache.
    #[arg(long, env = "MEDIANEST_CATALOG_LIST_TTL_SECS", default_value = "1800")]
    pub catalog_list_ttl_secs: String,
    /// Seconds a catalogue movie, show or season stays fresh in the cache.
    #[arg(
        long,
        env = "MEDIANEST_CATALOG_DETAILS_TTL_SECS",
        default_value = "21600"
    )]
    pub catalog_details_ttl_secs: String,
    /// Size of the catalogue cache, in MiB of answers.
    #[arg(long, env = "MEDIANEST_CATALOG_CACHE_MIB", default_value = "32")]
    pub catalog_cache_mib: String,
    /// TMDB's image base URL (posters and backdrops).
    #[arg(
        long,
        env = "MEDIANEST_TMDB_IMAGE_URL",
        default_value = "https://image.tmdb.org/t/p"
    )]
    pub tmdb_image_url: String,
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable (and flag) at fault.
    pub variable: &'static str,
    /// What is wrong.
    pub problem: String,
}

fn bad(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

/// Overseerr connection settings.
#[derive(Clone)]
pub struct OverseerrSettings {
    /// Base URL without `/api/v1`.
    pub url: reqwest::Url,
    /// API key.
    pub api_key: String,
}

impl std::fmt::Debug for OverseerrSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverseerrSettings")
            .field("url", &self.url.as_str())
            .field("api_key", &"<redacted>")
            .finish()
    }
}

/// Plex Media Server connection settings.
#[derive(Clone)]
pub struct PlexSettings {
    /// Base URL.
    pub url: reqwest::Url,
    /// X-Plex-Token.
    pub token: String,
}

impl std::fmt::Debug for PlexSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlexSettings")
            .field("url", &self.url.as_str())
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Sessions, sign-in and rate limits.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Plex Media Server whose users may sign in with Plex.
    pub plex: Option<PlexSettings>,
    /// plex.tv base URL.
    pub plextv_url: reqwest::Url,
    /// Session lifetime without use.
    pub session_ttl: Duration,
    /// Quotas of users without their own.
    pub default_quotas: Quotas,
    /// Failed sign-ins allowed per account in `signin_window`.
    pub signin_attempts: usize,
    /// Failed sign-ins allowed per client address in `signin_window`, over all accounts.
    pub signin_attempts_per_address: usize,
    /// The failed sign-in window.
    pub signin_window: Duration,
    /// API calls per user per minute.
    pub api_rate_limit: NonZeroU32,
    /// Session expirer interval.
    pub session_expirer_interval: Duration,
    /// Whether X-Forwarded-For names the client.
    pub trust_proxy: bool,
    /// Upper bound of one plex.tv or Plex Media Server call.
    pub plex_timeout: Duration,
}

impl Default for AuthSettings {
    #[expect(clippy::expect_used, reason = "a constant, valid URL")]
    fn default() -> Self {
        Self {
            plex: None,
            plextv_url: "https://plex.tv".parse().expect("a URL"),
            session_ttl: medianest_store::sessions::DEFAULT_TTL,
            default_quotas: Quotas::default(),
            signin_attempts: 5,
            signin_attempts_per_address: 30,
            signin_window: Duration::from_secs(900),
            api_rate_limit: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
            session_expirer_interval: Duration::from_secs(60),
            trust_proxy: false,
            plex_timeout: Duration::from_secs(10),
        }
    }
}

/// YouTube download settings (issue 4). `Debug` leaves the webhook secret out.
#[derive(Clone)]
pub struct DownloadSettings {
    /// The library root; `None` turns downloads off (routes answer 503, sagas idle).
    pub dir: Option<std::path::PathBuf>,
    /// The yt-dlp program.
    pub ytdlp: std::path::PathBuf,
    /// Lower-case hosts a URL may name.
    pub allowed_hosts: Vec<String>,
    /// Downloads per user per rolling hour (admins exempt); `None`: unlimited.
    pub limit_per_hour: Option<NonZeroU32>,
    /// The most items of a playlist.
    pub max_playlist_items: u32,
    /// yt-dlp processes at once, progress throttle and cancel poll.
    pub downloader: medianest_workers::DownloaderConfig,
    /// The Plex library section title.
    pub plex_library: String,
    /// The root as Plex sees it; `None`: the same path.
    pub plex_dir: Option<std::path::PathBuf>,
    /// The Plex webhook's secret path segment.
    pub plex_webhook_secret: Option<String>,
    /// Retries of Plex scan requests.
    pub scan_retry: medianest_workers::RetryPolicy,
    /// Timeout of one hop of the URL check.
    pub url_check_timeout: Duration,
}

impl std::fmt::Debug for DownloadSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadSettings")
            .field("dir", &self.dir)
            .field("ytdlp", &self.ytdlp)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("limit_per_hour", &self.limit_per_hour)
            .field("max_playlist_items", &self.max_playlist_items)
            .field("plex_library", &self.plex_library)
            .field("plex_dir", &self.plex_dir)
            .field(
                "plex_webhook_secret",
                &self.plex_webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl Default for DownloadSettings {
    fn default() -> Self {
        Self {
            dir: None,
            ytdlp: "yt-dlp".into(),
            allowed_hosts: medianest_domain::download::DEFAULT_ALLOWED_HOSTS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            limit_per_hour: NonZeroU32::new(medianest_store::downloads::DEFAULT_LIMIT_PER_HOUR),
            max_playlist_items: 200,
            downloader: medianest_workers::DownloaderConfig::default(),
            plex_library: "YouTube".to_string(),
            plex_dir: None,
            plex_webhook_secret: None,
            scan_retry: medianest_workers::RetryPolicy::default(),
            url_check_timeout: Duration::from_secs(10),
        }
    }
}

fn download_settings(args: &ServeArgs) -> Result<DownloadSettings, ConfigError> {
    let allowed_hosts: Vec<String> = args
        .youtube_allowed_hosts
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if allowed_hosts.is_empty() {
        return Err(bad(
            "MEDIANEST_YOUTUBE_ALLOWED_HOSTS",
            "must name at least one host",
        ));
    }
    if let Some(bad_host) = allowed_hosts
        .iter()
        .find(|h| h.contains(['/', ':', ' ', '*', '@']) && !h.starts_with('['))
    {
        return Err(bad(
            "MEDIANEST_YOUTUBE_ALLOWED_HOSTS",
            format!("`{bad_host}` is not a host name (no scheme, port, path or wildcard)"),
        ));
    }
    let limit = number(
        "MEDIANEST_DOWNLOAD_LIMIT_PER_HOUR",
        &args.download_limit_per_hour,
    )?;
    let max_items = positive("MEDIANEST_PLAYLIST_MAX_ITEMS", &args.playlist_max_items)?;
    let concurrency = positive("MEDIANEST_DOWNLOAD_CONCURRENCY", &args.download_concurrency)?;
    let ytdlp = non_empty("MEDIANEST_YTDLP", &args.ytdlp)?;
    let plex_library = non_empty("MEDIANEST_PLEX_LIBRARY", &args.plex_library)?;
    let absolute = |variable: &'static str, value: Option<String>| {
        optional(value)
            .map(|dir| {
                let path = std::path::PathBuf::from(dir);
                if path.is_absolute() {
                    Ok(path)
                } else {
                    Err(bad(variable, "must be an absolute path"))
                }
            })
            .transpose()
    };
    Ok(DownloadSettings {
        dir: absolute("MEDIANEST_DOWNLOADS_DIR", args.downloads_dir.clone())?,
        ytdlp: ytdlp.into(),
        allowed_hosts,
        limit_per_hour: NonZeroU32::new(u32::try_from(limit).unwrap_or(u32::MAX)),
        max_playlist_items: u32::try_from(max_items).unwrap_or(u32::MAX),
        downloader: medianest_workers::DownloaderConfig {
            concurrency: usize::try_from(concurrency).unwrap_or(usize::MAX),
            max_items: u32::try_from(max_items).unwrap_or(u32::MAX),
            ..Default::default()
        },
        plex_library,
        plex_dir: absolute(
            "MEDIANEST_PLEX_DOWNLOADS_DIR",
            args.plex_downloads_dir.clone(),
        )?,
        plex_webhook_secret: optional(args.plex_webhook_secret.clone()),
        ..Default::default()
    })
}

/// Validated settings of `medianest serve`.
#[derive(Clone)]
pub struct Settings {
    /// PostgreSQL URL.
    pub database_url: String,
    /// NATS URL.
    pub nats_url: String,
    /// Stream name.
    pub stream: String,
    /// Subject prefix.
    pub subject_prefix: String,
    /// HTTP listen address (port 0 picks a free port).
    pub http_addr: SocketAddr,
    /// Bootstrap admin token.
    pub admin_token: Option<String>,
    /// Overseerr, when configured.
    pub overseerr: Option<OverseerrSettings>,
    /// Overseerr webhook secret.
    pub overseerr_webhook_secret: Option<String>,
    /// Auto-approval policy.
    pub auto_approve: AutoApprovePolicy,
    /// Reconciler interval.
    pub reconcile_interval: Duration,
    /// How long a request may stay approved but not forwarded before the reconciler
    /// forwards it again.
    pub redrive_after: Duration,
    /// How many aggregates each saga works on at once.
    pub saga_concurrency: usize,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// Longest `min_position` wait.
    pub min_position_wait: Duration,
    /// Roles to run.
    pub roles: Vec<Role>,
    /// Retries of Overseerr calls by the forwarder.
    pub forward_retry: medianest_workers::RetryPolicy,
    /// Relay tuning.
    pub relay: medianest_nats::RelayOptions,
    /// JetStream duplicate window.
    pub duplicate_window: Duration,
    /// How long a consumer's unacknowledged event waits before redelivery.
    pub consumer_ack_wait: Duration,
    /// Sessions, sign-in and rate limits.
    pub auth: AuthSettings,
    /// YouTube downloads, the Plex scanner and the Plex webhook.
    pub downloads: DownloadSettings,
    /// The circuit breakers of Overseerr, Plex and yt-dlp.
    pub breaker: medianest_workers::BreakerConfig,
    /// The Plex library sync; `None` turns it off (it also needs a Plex Media Server).
    pub plex_sync: Option<medianest_workers::PlexSyncConfig>,
    /// The catalogue's cache and image URLs.
    pub catalog: medianest_query_api::catalog::CatalogSettings,
    /// Notifications; `None` turns them off.
    pub notifications: Option<NotificationSettings>,
}

/// Notification settings of `medianest serve`.
#[derive(Debug, Clone)]
pub struct NotificationSettings {
    /// The notifier's, dispatcher's and health watcher's settings.
    pub worker: medianest_workers::NotifierConfig,
    /// The destination allow-list.
    pub allow_hosts: Vec<String>,
    /// The longest notification call.
    pub timeout: Duration,
}

impl NotificationSettings {
    /// The sender these settings describe.
    pub fn sender(&self) -> medianest_integrations::notify::Sender {
        medianest_integrations::notify::Sender::new(
            medianest_integrations::notify::DestinationPolicy::new(&self.allow_hosts),
            self.timeout,
        )
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("http_addr", &self.http_addr)
            .field("overseerr", &self.overseerr)
            .field("auto_approve", &self.auto_approve)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

fn non_empty(variable: &'static str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(bad(variable, "must not be empty"));
    }
    Ok(value.to_string())
}

fn optional(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn number(variable: &'static str, value: &str) -> Result<u64, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| bad(variable, format!("`{value}` is not a whole number")))
}

fn positive(variable: &'static str, value: &str) -> Result<u64, ConfigError> {
    let n = number(variable, value)?;
    if n == 0 {
        return Err(bad(variable, "must be at least 1"));
    }
    Ok(n)
}

fn http_url(variable: &'static str, value: &str) -> Result<reqwest::Url, ConfigError> {
    let url: reqwest::Url = value
        .trim()
        .parse()
        .map_err(|e| bad(variable, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(variable, "must be an http(s) URL"));
    }
    Ok(url)
}

/// `true`/`1`/`yes` or `false`/`0`/`no`/empty.
fn boolean(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        other => Err(bad(variable, format!("`{other}` is not true or false"))),
    }
}

/// `LIMIT/DAYS` (e.g. `10/7`), or empty for none.
fn quota(variable: &'static str, value: &str) -> Result<Option<Quota>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let (limit, days) = value
        .split_once('/')
        .ok_or_else(|| bad(variable, format!("`{value}` is not LIMIT/DAYS, e.g. 10/7")))?;
    let limit = u32::try_from(number(variable, limit)?).unwrap_or(u32::MAX);
    let days = u32::try_from(number(variable, days)?).unwrap_or(u32::MAX);
    Quota::new(limit, days)
        .map(Some)
        .map_err(|e| bad(variable, e.to_string()))
}

fn auth_settings(args: &ServeArgs) -> Result<AuthSettings, ConfigError> {
    let plex = match (
        optional(args.plex_url.clone()),
        optional(args.plex_token.clone()),
    ) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "MEDIANEST_PLEX_TOKEN",
                "is required when MEDIANEST_PLEX_URL is set",
            ))
        }
        (None, Some(_)) => {
            return Err(bad(
                "MEDIANEST_PLEX_URL",
                "is required when MEDIANEST_PLEX_TOKEN is set",
            ))
        }
        (Some(url), Some(token)) => Some(PlexSettings {
            url: http_url("MEDIANEST_PLEX_URL", &url)?,
            token,
        }),
    };
    let ttl_hours = positive("MEDIANEST_SESSION_TTL_HOURS", &args.session_ttl_hours)?;
    let trust_proxy = boolean("MEDIANEST_TRUST_PROXY", &args.trust_proxy)?;
    let api_rate_limit = positive("MEDIANEST_API_RATE_LIMIT", &args.api_rate_limit)?;
    Ok(AuthSettings {
        plex,
        plextv_url: http_url("MEDIANEST_PLEXTV_URL", &args.plextv_url)?,
        session_ttl: Duration::from_secs(ttl_hours.saturating_mul(3600)),
        default_quotas: Quotas {
            movie: quota("MEDIANEST_DEFAULT_MOVIE_QUOTA", &args.default_movie_quota)?,
            tv: quota("MEDIANEST_DEFAULT_TV_QUOTA", &args.default_tv_quota)?,
        },
        signin_attempts: usize::try_from(positive(
            "MEDIANEST_SIGNIN_ATTEMPTS",
            &args.signin_attempts,
        )?)
        .unwrap_or(usize::MAX),
        signin_attempts_per_address: usize::try_from(positive(
            "MEDIANEST_SIGNIN_ATTEMPTS_PER_ADDRESS",
            &args.signin_attempts_per_address,
        )?)
        .unwrap_or(usize::MAX),
        signin_window: Duration::from_secs(positive(
            "MEDIANEST_SIGNIN_WINDOW_SECS",
            &args.signin_window_secs,
        )?),
        api_rate_limit: NonZeroU32::new(u32::try_from(api_rate_limit).unwrap_or(u32::MAX))
            .unwrap_or(NonZeroU32::MIN),
        session_expirer_interval: Duration::from_secs(positive(
            "MEDIANEST_SESSION_EXPIRER_INTERVAL_SECS",
            &args.session_expirer_interval_secs,
        )?),
        trust_proxy,
        plex_timeout: Duration::from_secs(10),
    })
}

impl Settings {
    /// Validates raw options.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable with an unusable value.
    pub fn from_args(args: ServeArgs) -> Result<Self, ConfigError> {
        let auth = auth_settings(&args)?;
        let downloads = download_settings(&args)?;
        let database_url = non_empty("MEDIANEST_DATABASE_URL", &args.database_url)?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(bad(
                "MEDIANEST_DATABASE_URL",
                "must be a postgres:// or postgresql:// URL",
            ));
        }
        let nats_url = non_empty("MEDIANEST_NATS_URL", &args.nats_url)?;
        let stream = non_empty("MEDIANEST_STREAM", &args.stream)?;
        if stream.contains(['.', ' ', '*', '>']) {
            return Err(bad(
                "MEDIANEST_STREAM",
                "must not contain '.', spaces or wildcards",
            ));
        }
        let subject_prefix = non_empty("MEDIANEST_SUBJECT_PREFIX", &args.subject_prefix)?;
        if subject_prefix.contains(['*', '>', ' ']) || subject_prefix.ends_with('.') {
            return Err(bad(
                "MEDIANEST_SUBJECT_PREFIX",
                "must be dot-separated tokens without wildcards",
            ));
        }
        let http_addr = args.http_addr.trim().parse().map_err(|_| {
            bad(
                "MEDIANEST_HTTP_ADDR",
                format!(
                    "`{}` is not a socket address like 127.0.0.1:8080",
                    args.http_addr
                ),
            )
        })?;
        let overseerr = match (
            optional(args.overseerr_url),
            optional(args.overseerr_api_key),
        ) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(bad(
                    "MEDIANEST_OVERSEERR_API_KEY",
                    "is required when MEDIANEST_OVERSEERR_URL is set",
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "MEDIANEST_OVERSEERR_URL",
                    "is required when MEDIANEST_OVERSEERR_API_KEY is set",
                ))
            }
            (Some(url), Some(api_key)) => {
                let url: reqwest::Url = url
                    .parse()
                    .map_err(|e| bad("MEDIANEST_OVERSEERR_URL", format!("not a URL: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(bad("MEDIANEST_OVERSEERR_URL", "must be an http(s) URL"));
                }
                Some(OverseerrSettings { url, api_key })
            }
        };
        let auto_approve = args
            .auto_approve
            .trim()
            .parse()
            .map_err(|e: String| bad("MEDIANEST_AUTO_APPROVE", e))?;
        let reconcile = number(
            "MEDIANEST_RECONCILE_INTERVAL_SECS",
            &args.reconcile_interval_secs,
        )?;
        if reconcile == 0 {
            return Err(bad(
                "MEDIANEST_RECONCILE_INTERVAL_SECS",
                "must be at least 1",
            ));
        }
        let wait = number("MEDIANEST_MIN_POSITION_WAIT_MS", &args.min_position_wait_ms)?;
        let breaker = medianest_workers::BreakerConfig {
            failure_threshold: u32::try_from(positive(
                "MEDIANEST_BREAKER_FAILURES",
                &args.breaker_failures,
            )?)
            .unwrap_or(u32::MAX),
            cool_down: Duration::from_secs(positive(
                "MEDIANEST_BREAKER_COOLDOWN_SECS",
                &args.breaker_cooldown_secs,
            )?),
        };
        let plex_sync = boolean("MEDIANEST_PLEX_SYNC", &args.plex_sync)?.then(|| {
            Ok::<_, ConfigError>(medianest_workers::PlexSyncConfig {
                recent_interval: Duration::from_secs(positive(
                    "MEDIANEST_PLEX_RECENT_INTERVAL_SECS",
                    &args.plex_recent_interval_secs,
                )?),
                full_interval: Duration::from_secs(
                    positive(
                        "MEDIANEST_PLEX_FULL_INTERVAL_HOURS",
                        &args.plex_full_interval_hours,
                    )?
                    .saturating_mul(3600),
                ),
                sections_4k: args
                    .plex_4k_sections
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                ..medianest_workers::PlexSyncConfig::default()
            })
        });
        let plex_sync = plex_sync.transpose()?;
        let catalog = medianest_query_api::catalog::CatalogSettings {
            list_ttl: Duration::from_secs(positive(
                "MEDIANEST_CATALOG_LIST_TTL_SECS",
                &args.catalog_list_ttl_secs,
            )?),
            details_ttl: Duration::from_secs(positive(
                "MEDIANEST_CATALOG_DETAILS_TTL_SECS",
                &args.catalog_details_ttl_secs,
            )?),
            max_bytes: positive("MEDIANEST_CATALOG_CACHE_MIB", &args.catalog_cache_mib)?
                .saturating_mul(1024 * 1024),
            image_base_url: http_url("MEDIANEST_TMDB_IMAGE_URL", &args.tmdb_image_url)?
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            ..medianest_query_api::catalog::CatalogSettings::default()
        };
        let public_url = optional(args.public_url)
            .map(|url| http_url("MEDIANEST_PUBLIC_URL", &url))
            .transpose()?
            .map(|url| url.as_str().trim_end_matches('/').to_string());
        let notifications = boolean("MEDIANEST_NOTIFICATIONS", &args.notifications)?.then(|| {
            Ok::<_, ConfigError>(NotificationSettings {
                worker: medianest_workers::NotifierConfig {
                    public_url,
                    retry_for: Duration::from_secs(
                        positive("MEDIANEST_NOTIFY_RETRY_HOURS", &args.notify_retry_hours)?
                            .saturating_mul(3600),
                    ),
                    ..medianest_workers::NotifierConfig::default()
                },
                allow_hosts: args
                    .notify_allow_hosts
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                timeout: Duration::from_secs(positive(
                    "MEDIANEST_NOTIFY_TIMEOUT_SECS",
                    &args.notify_timeout_secs,
                )?),
            })
        });
        let notifications = notifications.transpose()?;
        let roles = if args.roles.is_empty() {
            vec![Role::CommandApi, Role::QueryApi, Role::Workers, Role::Relay]
        } else {
            args.roles
        };
        Ok(Self {
            database_url,
            nats_url,
            stream,
            subject_prefix,
            http_addr,
            admin_token: optional(args.admin_token),
            overseerr,
            overseerr_webhook_secret: optional(args.overseerr_webhook_secret),
            auto_approve,
            reconcile_interval: Duration::from_secs(reconcile),
            redrive_after: Duration::from_secs(positive(
                "MEDIANEST_REDRIVE_AFTER_SECS",
                &args.redrive_after_secs,
            )?),
            saga_concurrency: usize::try_from(positive(
                "MEDIANEST_SAGA_CONCURRENCY",
                &args.saga_concurrency,
            )?)
            .unwrap_or(usize::MAX)
            .min(1024),
            idempotency_ttl: Duration::from_secs(
                positive(
                    "MEDIANEST_IDEMPOTENCY_TTL_HOURS",
                    &args.idempotency_ttl_hours,
                )?
                .saturating_mul(3600),
            ),
            min_position_wait: Duration::from_millis(wait),
            roles,
            forward_retry: medianest_workers::RetryPolicy::default(),
            relay: medianest_nats::RelayOptions::default(),
            duplicate_window: Duration::from_secs(600),
            consumer_ack_wait: Duration::from_secs(30),
            auth,
            downloads,
            breaker,
            plex_sync,
            catalog,
            notifications,
        })
    }

    /// Whether `role` runs in this process.
    pub fn runs(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}
