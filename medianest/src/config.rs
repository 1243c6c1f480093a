//! Configuration: one typed [`Settings`], read from `--flags` or `MEDIANEST_*` environment
//! variables (docs/design.md §9) and validated at start-up; an invalid value stops start-up with a
//! message naming the variable. Secrets are never printed.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{BoolishValueParser, RangedU64ValueParser};
use clap::{ArgAction, Args, ValueEnum};
use medianest_domain::media_request::AutoApprovePolicy;
use medianest_domain::user_account::{Quota, Quotas};
use reqwest::Url;
use secrecy::SecretString;

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

/// Longest interval or timeout in seconds a setting accepts (a year).
const MAX_SECS: u64 = 365 * 24 * 3600;
/// Longest period in hours a setting accepts (ten years).
const MAX_HOURS: u64 = 10 * 365 * 24;

/// Options of `medianest serve`, as clap reads them from flags or `MEDIANEST_*` variables.
///
/// Each value is parsed and range-checked here, by clap's value parsers (numbers with ranges,
/// URLs, addresses, paths) or by the parsers of [`parse`]; an empty variable counts as unset
/// (clap's rule), so its default applies. Rules that join several values (a URL needs its
/// key) are checked by [`Settings::from_args`]. Secrets are [`SecretString`]s: their `Debug`
/// says `[REDACTED]` and `--help` does not show their values.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// PostgreSQL URL (postgres:// or postgresql://).
    #[arg(
        long,
        env = "MEDIANEST_DATABASE_URL",
        default_value = "postgres:///medianest",
        hide_env_values = true,
        value_parser = parse::postgres_url
    )]
    pub database_url: SecretString,
    /// Connections of the PostgreSQL pool of `serve` (every role shares it).
    #[arg(
        long,
        env = "MEDIANEST_DATABASE_POOL_SIZE",
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(4..=1000)
    )]
    pub database_pool_size: u32,
    /// NATS URL.
    #[arg(
        long,
        env = "MEDIANEST_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true,
        value_parser = parse::secret
    )]
    pub nats_url: SecretString,
    /// JetStream stream name.
    #[arg(long, env = "MEDIANEST_STREAM", default_value = "MEDIANEST_EVENTS", value_parser = parse::stream_name)]
    pub stream: String,
    /// First subject token(s) of every subject.
    #[arg(long, env = "MEDIANEST_SUBJECT_PREFIX", default_value = "medianest", value_parser = parse::subject_prefix)]
    pub subject_prefix: String,
    /// Listen address of the HTTP routers (command and query merged), like 127.0.0.1:8080.
    #[arg(long, env = "MEDIANEST_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// API requests worked on at once; more are answered 503 `overloaded` at once (the live
    /// stream and the webhooks are exempt).
    #[arg(
        long,
        env = "MEDIANEST_HTTP_MAX_IN_FLIGHT",
        default_value_t = 64,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000)
    )]
    pub http_max_in_flight: usize,
    /// Bootstrap admin bearer token (until user sessions exist).
    #[arg(long, env = "MEDIANEST_ADMIN_TOKEN", hide_env_values = true, value_parser = parse::secret)]
    pub admin_token: Option<SecretString>,
    /// Overseerr base URL, without /api/v1; the forwarder and reconciler are idle without it.
    #[arg(long, env = "MEDIANEST_OVERSEERR_URL", value_parser = parse::http_url)]
    pub overseerr_url: Option<Url>,
    /// Overseerr API key (Settings → General).
    #[arg(long, env = "MEDIANEST_OVERSEERR_API_KEY", hide_env_values = true, value_parser = parse::secret)]
    pub overseerr_api_key: Option<SecretString>,
    /// Seconds one Overseerr call may take (connecting included).
    #[arg(
        long,
        env = "MEDIANEST_OVERSEERR_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub overseerr_timeout_secs: u64,
    /// Expected Authorization value of Overseerr's webhook; the webhook is refused without it.
    #[arg(
        long,
        env = "MEDIANEST_OVERSEERR_WEBHOOK_SECRET",
        hide_env_values = true,
        value_parser = parse::secret
    )]
    pub overseerr_webhook_secret: Option<SecretString>,
    /// Which submissions are approved on submit: admins, all or none.
    #[arg(long, env = "MEDIANEST_AUTO_APPROVE", default_value = "admins")]
    pub auto_approve: AutoApprovePolicy,
    /// Seconds between reconciler passes over requests Overseerr owns.
    #[arg(
        long,
        env = "MEDIANEST_RECONCILE_INTERVAL_SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=MAX_SECS)
    )]
    pub reconcile_interval_secs: u64,
    /// How many aggregates each saga works on at once (events of one aggregate stay in
    /// order).
    #[arg(
        long,
        env = "MEDIANEST_SAGA_CONCURRENCY",
        default_value_t = 16,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024)
    )]
    pub saga_concurrency: usize,
    /// Hours an `Idempotency-Key` is remembered.
    #[arg(
        long,
        env = "MEDIANEST_IDEMPOTENCY_TTL_HOURS",
        default_value_t = 24,
        value_parser = clap::value_parser!(u64).range(1..=MAX_HOURS)
    )]
    pub idempotency_ttl_hours: u64,
    /// Seconds a request may stay approved but not forwarded before the reconciler forwards
    /// it again.
    #[arg(
        long,
        env = "MEDIANEST_REDRIVE_AFTER_SECS",
        default_value_t = 600,
        value_parser = clap::value_parser!(u64).range(1..=MAX_SECS)
    )]
    pub redrive_after_secs: u64,
    /// Whether notifications are on (e-mail, webhooks, push services; configured through
    /// the admin API): true or false.
    #[arg(long, env = "MEDIANEST_NOTIFICATIONS", default_value_t = true, action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub notifications: bool,
    /// MediaNest's public URL, the base of the links in notifications.
    #[arg(long, env = "MEDIANEST_PUBLIC_URL", value_parser = parse::http_url)]
    pub public_url: Option<Url>,
    /// Hosts (names or IP literals, comma-separated) notifications may reach although they
    /// are private, or over http (a Gotify or ntfy on the LAN).
    #[arg(long, env = "MEDIANEST_NOTIFY_ALLOW_HOSTS", default_value = "")]
    pub notify_allow_hosts: String,
    /// Hours a notification that fails transiently is retried before it is dead.
    #[arg(
        long,
        env = "MEDIANEST_NOTIFY_RETRY_HOURS",
        default_value_t = 24,
        value_parser = clap::value_parser!(u64).range(1..=MAX_HOURS)
    )]
    pub notify_retry_hours: u64,
    /// Seconds one notification call may take.
    #[arg(
        long,
        env = "MEDIANEST_NOTIFY_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub notify_timeout_secs: u64,
    /// Longest wait of a query for `min_position`, in milliseconds.
    #[arg(
        long,
        env = "MEDIANEST_MIN_POSITION_WAIT_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(0..=60_000)
    )]
    pub min_position_wait_ms: u64,
    /// Roles to run (repeatable); all of them when absent.
    #[arg(long = "role", value_enum)]
    pub roles: Vec<Role>,
    /// Plex Media Server URL (e.g. http://127.0.0.1:32400); Plex sign-in needs it.
    #[arg(long, env = "MEDIANEST_PLEX_URL", value_parser = parse::http_url)]
    pub plex_url: Option<Url>,
    /// Plex Media Server token (X-Plex-Token of the server's owner).
    #[arg(long, env = "MEDIANEST_PLEX_TOKEN", hide_env_values = true, value_parser = parse::secret)]
    pub plex_token: Option<SecretString>,
    /// Seconds one plex.tv or Plex Media Server call may take.
    #[arg(
        long,
        env = "MEDIANEST_PLEX_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub plex_timeout_secs: u64,
    /// plex.tv base URL.
    #[arg(long, env = "MEDIANEST_PLEXTV_URL", default_value = "https://plex.tv", value_parser = parse::http_url)]
    pub plextv_url: Url,
    /// Hours a session lives without being used (its expiry slides on use).
    #[arg(
        long,
        env = "MEDIANEST_SESSION_TTL_HOURS",
        default_value_t = 720,
        value_parser = clap::value_parser!(u64).range(1..=MAX_HOURS)
    )]
    pub session_ttl_hours: u64,
    /// Movie quota of users without their own, as LIMIT/DAYS (e.g. 10/7); unset: unlimited.
    #[arg(long, env = "MEDIANEST_DEFAULT_MOVIE_QUOTA", value_parser = parse::quota)]
    pub default_movie_quota: Option<Quota>,
    /// TV quota of users without their own, as LIMIT/DAYS; unset: unlimited.
    #[arg(long, env = "MEDIANEST_DEFAULT_TV_QUOTA", value_parser = parse::quota)]
    pub default_tv_quota: Option<Quota>,
    /// Failed sign-ins allowed per account in the window (then the account is locked).
    #[arg(
        long,
        env = "MEDIANEST_SIGNIN_ATTEMPTS",
        default_value_t = 5,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000)
    )]
    pub signin_attempts: usize,
    /// Failed sign-ins allowed per client address in the window, over all accounts.
    #[arg(
        long,
        env = "MEDIANEST_SIGNIN_ATTEMPTS_PER_ADDRESS",
        default_value_t = 30,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000)
    )]
    pub signin_attempts_per_address: usize,
    /// The failed sign-in window, in seconds.
    #[arg(
        long,
        env = "MEDIANEST_SIGNIN_WINDOW_SECS",
        default_value_t = 900,
        value_parser = clap::value_parser!(u64).range(1..=MAX_SECS)
    )]
    pub signin_window_secs: u64,
    /// API calls allowed per user per minute.
    #[arg(
        long,
        env = "MEDIANEST_API_RATE_LIMIT",
        default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    pub api_rate_limit: u32,
    /// Seconds between session expirer passes.
    #[arg(
        long,
        env = "MEDIANEST_SESSION_EXPIRER_INTERVAL_SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=MAX_SECS)
    )]
    pub session_expirer_interval_secs: u64,
    /// Trust the last X-Forwarded-For entry as the client address (behind a reverse proxy):
    /// true or false.
    #[arg(long, env = "MEDIANEST_TRUST_PROXY", default_value_t = false, action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub trust_proxy: bool,
    /// Root of the YouTube library (yt-dlp's output), an absolute path; downloads are off
    /// without it.
    #[arg(long, env = "MEDIANEST_DOWNLOADS_DIR", value_parser = parse::absolute_path)]
    pub downloads_dir: Option<PathBuf>,
    /// The yt-dlp program (a name on PATH or a path).
    #[arg(long, env = "MEDIANEST_YTDLP", default_value = "yt-dlp", value_parser = parse::text)]
    pub ytdlp: String,
    /// Hosts a download URL may name, comma-separated (exact, case-insensitive).
    #[arg(
        long,
        env = "MEDIANEST_YOUTUBE_ALLOWED_HOSTS",
        default_value = "youtube.com,www.youtube.com,m.youtube.com,music.youtube.com,youtu.be"
    )]
    pub youtube_allowed_hosts: String,
    /// Downloads a user (not an admin) may queue per rolling hour; 0: unlimited.
    #[arg(
        long,
        env = "MEDIANEST_DOWNLOAD_LIMIT_PER_HOUR",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(0..=100_000)
    )]
    pub download_limit_per_hour: u32,
    /// The most items a playlist may have to be queued.
    #[arg(
        long,
        env = "MEDIANEST_PLAYLIST_MAX_ITEMS",
        default_value_t = 200,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub playlist_max_items: u32,
    /// yt-dlp processes at once.
    #[arg(
        long,
        env = "MEDIANEST_DOWNLOAD_CONCURRENCY",
        default_value_t = 2,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=64)
    )]
    pub download_concurrency: usize,
    /// Title of the Plex "Other Videos" library that holds the downloads.
    #[arg(long, env = "MEDIANEST_PLEX_LIBRARY", default_value = "YouTube", value_parser = parse::text)]
    pub plex_library: String,
    /// The downloads root as the Plex server sees it (when mounted elsewhere there), an
    /// absolute path.
    #[arg(long, env = "MEDIANEST_PLEX_DOWNLOADS_DIR", value_parser = parse::absolute_path)]
    pub plex_downloads_dir: Option<PathBuf>,
    /// Secret last path segment of the Plex webhook URL; the webhook is refused without it.
    #[arg(long, env = "MEDIANEST_PLEX_WEBHOOK_SECRET", hide_env_values = true, value_parser = parse::secret)]
    pub plex_webhook_secret: Option<SecretString>,
    /// Transient failures in a row (5xx, timeouts, connection errors) that open the circuit
    /// breaker of an external service (Overseerr, Plex, yt-dlp).
    #[arg(
        long,
        env = "MEDIANEST_BREAKER_FAILURES",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub breaker_failures: u32,
    /// Seconds an open circuit breaker holds calls back before one trial call.
    #[arg(
        long,
        env = "MEDIANEST_BREAKER_COOLDOWN_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=MAX_SECS)
    )]
    pub breaker_cooldown_secs: u64,
    /// Whether the Plex library is synced into MediaNest (when a Plex Media Server is
    /// configured): true or false.
    #[arg(long, env = "MEDIANEST_PLEX_SYNC", default_value_t = true, action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub plex_sync: bool,
    /// Seconds between recently-added passes of the Plex sync.
    #[arg(
        long,
        env = "MEDIANEST_PLEX_RECENT_INTERVAL_SECS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..=MAX_SECS)
    )]
    pub plex_recent_interval_secs: u64,
    /// Hours between full passes of the Plex sync (which also notice removals).
    #[arg(
        long,
        env = "MEDIANEST_PLEX_FULL_INTERVAL_HOURS",
        default_value_t = 24,
        value_parser = clap::value_parser!(u64).range(1..=MAX_HOURS)
    )]
    pub plex_full_interval_hours: u64,
    /// Comma-separated keys or titles of the Plex library sections that hold 4K copies.
    #[arg(long, env = "MEDIANEST_PLEX_4K_SECTIONS", default_value = "")]
    pub plex_4k_sections: String,
    /// Seconds a catalogue search or discover list stays fresh in the cache.
    #[arg(
        long,
        env = "MEDIANEST_CATALOG_LIST_TTL_SECS",
        default_value_t = 1800,
        value_parser = clap::value_parser!(u64).range(1..=MAX_SECS)
    )]
    pub catalog_list_ttl_secs: u64,
    /// Seconds a catalogue movie, show or season stays fresh in the cache.
    #[arg(
        long,
        env = "MEDIANEST_CATALOG_DETAILS_TTL_SECS",
        default_value_t = 21600,
        value_parser = clap::value_parser!(u64).range(1..=MAX_SECS)
    )]
    pub catalog_details_ttl_secs: u64,
    /// Size of the catalogue cache, in MiB of answers.
    #[arg(
        long,
        env = "MEDIANEST_CATALOG_CACHE_MIB",
        default_value_t = 32,
        value_parser = clap::value_parser!(u64).range(1..=65_536)
    )]
    pub catalog_cache_mib: u64,
    /// TMDB's image base URL (posters and backdrops).
    #[arg(
        long,
        env = "MEDIANEST_TMDB_IMAGE_URL",
        default_value = "https://image.tmdb.org/t/p",
        value_parser = parse::http_url
    )]
    pub tmdb_image_url: Url,
}

/// The value parsers of [`ServeArgs`] that clap does not have: each takes the raw text and
/// answers the value, or what is wrong with it (clap adds the flag, and the CLI the variable).
pub mod parse {
    use std::path::PathBuf;

    use medianest_domain::user_account::Quota;
    use reqwest::Url;
    use secrecy::SecretString;

    /// Non-empty text, trimmed.
    ///
    /// # Errors
    /// When only white space is left.
    pub fn text(value: &str) -> Result<String, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(value.to_string())
    }

    /// A non-empty secret, trimmed.
    ///
    /// # Errors
    /// When only white space is left.
    pub fn secret(value: &str) -> Result<SecretString, String> {
        text(value).map(SecretString::from)
    }

    /// A `postgres://` or `postgresql://` URL, kept secret (it may hold a password).
    ///
    /// # Errors
    /// When empty or of another scheme.
    pub fn postgres_url(value: &str) -> Result<SecretString, String> {
        let value = text(value)?;
        if !(value.starts_with("postgres://") || value.starts_with("postgresql://")) {
            return Err("must be a postgres:// or postgresql:// URL".into());
        }
        Ok(value.into())
    }

    /// An absolute `http` or `https` URL.
    ///
    /// # Errors
    /// When not a URL, or of another scheme.
    pub fn http_url(value: &str) -> Result<Url, String> {
        let url: Url = value
            .trim()
            .parse()
            .map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be an http(s) URL".into());
        }
        Ok(url)
    }

    /// A JetStream stream name: no `.`, space or wildcard.
    ///
    /// # Errors
    /// When empty or holding one of those.
    pub fn stream_name(value: &str) -> Result<String, String> {
        let value = text(value)?;
        if value.contains(['.', ' ', '*', '>']) {
            return Err("must not contain '.', spaces or wildcards".into());
        }
        Ok(value)
    }

    /// Dot-separated subject tokens without wildcards.
    ///
    /// # Errors
    /// When empty, holding a wildcard or a space, or ending with a dot.
    pub fn subject_prefix(value: &str) -> Result<String, String> {
        let value = text(value)?;
        if value.contains(['*', '>', ' ']) || value.ends_with('.') {
            return Err("must be dot-separated tokens without wildcards".into());
        }
        Ok(value)
    }

    /// An absolute path.
    ///
    /// # Errors
    /// When empty or relative.
    pub fn absolute_path(value: &str) -> Result<PathBuf, String> {
        let path = PathBuf::from(text(value)?);
        if !path.is_absolute() {
            return Err("must be an absolute path".into());
        }
        Ok(path)
    }

    /// A quota as `LIMIT/DAYS`, e.g. `10/7` (see [`Quota::new`] for the ranges).
    ///
    /// # Errors
    /// When not two whole numbers around a slash, or out of [`Quota::new`]'s ranges.
    pub fn quota(value: &str) -> Result<Quota, String> {
        let value = value.trim();
        let shape = || format!("`{value}` is not LIMIT/DAYS, e.g. 10/7");
        let (limit, days) = value.split_once('/').ok_or_else(shape)?;
        let limit: u32 = limit.trim().parse().map_err(|_| shape())?;
        let days: u32 = days.trim().parse().map_err(|_| shape())?;
        Quota::new(limit, days).map_err(|e| e.to_string())
    }
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
#[derive(Debug, Clone)]
pub struct OverseerrSettings {
    /// Base URL without `/api/v1`.
    pub url: Url,
    /// API key.
    pub api_key: SecretString,
    /// Upper bound of one call, connecting included.
    pub timeout: Duration,
}

/// Plex Media Server connection settings.
#[derive(Debug, Clone)]
pub struct PlexSettings {
    /// Base URL.
    pub url: Url,
    /// X-Plex-Token.
    pub token: SecretString,
}

/// Sessions, sign-in and rate limits.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Plex Media Server whose users may sign in with Plex.
    pub plex: Option<PlexSettings>,
    /// plex.tv base URL.
    pub plextv_url: Url,
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

/// YouTube download settings (issue 4).
#[derive(Debug, Clone)]
pub struct DownloadSettings {
    /// The library root; `None` turns downloads off (routes answer 503, sagas idle).
    pub dir: Option<PathBuf>,
    /// The yt-dlp program.
    pub ytdlp: PathBuf,
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
    pub plex_dir: Option<PathBuf>,
    /// The Plex webhook's secret path segment.
    pub plex_webhook_secret: Option<SecretString>,
    /// Retries of Plex scan requests.
    pub scan_retry: medianest_workers::RetryPolicy,
    /// Timeout of one hop of the URL check.
    pub url_check_timeout: Duration,
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

/// Validated settings of `medianest serve`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// PostgreSQL URL.
    pub database_url: SecretString,
    /// Connections of the PostgreSQL pool.
    pub database_pool_size: u32,
    /// NATS URL.
    pub nats_url: SecretString,
    /// Stream name.
    pub stream: String,
    /// Subject prefix.
    pub subject_prefix: String,
    /// HTTP listen address (port 0 picks a free port).
    pub http_addr: SocketAddr,
    /// API requests worked on at once ([`medianest_http::shed`]).
    pub http_max_in_flight: usize,
    /// Bootstrap admin token.
    pub admin_token: Option<SecretString>,
    /// Overseerr, when configured.
    pub overseerr: Option<OverseerrSettings>,
    /// Overseerr webhook secret.
    pub overseerr_webhook_secret: Option<SecretString>,
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

/// The non-empty items of a comma-separated list, trimmed.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|item| item.trim().to_string())
        .filter(|item| !item.is_empty())
        .collect()
}

/// Hours as a duration.
fn hours(hours: u64) -> Duration {
    Duration::from_secs(hours.saturating_mul(3600))
}

/// Both of a pair, or neither: a URL and the key or token it needs.
fn pair<A, B>(
    first: Option<A>,
    second: Option<B>,
    names: (&'static str, &'static str),
) -> Result<Option<(A, B)>, ConfigError> {
    match (first, second) {
        (None, None) => Ok(None),
        (Some(first), Some(second)) => Ok(Some((first, second))),
        (Some(_), None) => Err(bad(names.1, format!("is required when {} is set", names.0))),
        (None, Some(_)) => Err(bad(names.0, format!("is required when {} is set", names.1))),
    }
}

fn download_settings(args: &ServeArgs) -> Result<DownloadSettings, ConfigError> {
    let allowed_hosts: Vec<String> = list(&args.youtube_allowed_hosts)
        .into_iter()
        .map(|host| host.to_ascii_lowercase())
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
    Ok(DownloadSettings {
        dir: args.downloads_dir.clone(),
        ytdlp: args.ytdlp.clone().into(),
        allowed_hosts,
        limit_per_hour: NonZeroU32::new(args.download_limit_per_hour),
        max_playlist_items: args.playlist_max_items,
        downloader: medianest_workers::DownloaderConfig {
            concurrency: args.download_concurrency,
            max_items: args.playlist_max_items,
            ..Default::default()
        },
        plex_library: args.plex_library.clone(),
        plex_dir: args.plex_downloads_dir.clone(),
        plex_webhook_secret: args.plex_webhook_secret.clone(),
        ..Default::default()
    })
}

fn auth_settings(args: &ServeArgs) -> Result<AuthSettings, ConfigError> {
    let plex = pair(
        args.plex_url.clone(),
        args.plex_token.clone(),
        ("MEDIANEST_PLEX_URL", "MEDIANEST_PLEX_TOKEN"),
    )?
    .map(|(url, token)| PlexSettings { url, token });
    Ok(AuthSettings {
        plex,
        plextv_url: args.plextv_url.clone(),
        session_ttl: hours(args.session_ttl_hours),
        default_quotas: Quotas {
            movie: args.default_movie_quota,
            tv: args.default_tv_quota,
        },
        signin_attempts: args.signin_attempts,
        signin_attempts_per_address: args.signin_attempts_per_address,
        signin_window: Duration::from_secs(args.signin_window_secs),
        api_rate_limit: NonZeroU32::new(args.api_rate_limit).unwrap_or(NonZeroU32::MIN),
        session_expirer_interval: Duration::from_secs(args.session_expirer_interval_secs),
        trust_proxy: args.trust_proxy,
        plex_timeout: Duration::from_secs(args.plex_timeout_secs),
    })
}

impl Settings {
    /// Checks the rules that join several options (a URL needs its key or token; the
    /// YouTube hosts are host names) and builds the settings.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable with an unusable value.
    pub fn from_args(args: ServeArgs) -> Result<Self, ConfigError> {
        let auth = auth_settings(&args)?;
        let downloads = download_settings(&args)?;
        let overseerr = pair(
            args.overseerr_url,
            args.overseerr_api_key,
            ("MEDIANEST_OVERSEERR_URL", "MEDIANEST_OVERSEERR_API_KEY"),
        )?
        .map(|(url, api_key)| OverseerrSettings {
            url,
            api_key,
            timeout: Duration::from_secs(args.overseerr_timeout_secs),
        });
        let breaker = medianest_workers::BreakerConfig {
            failure_threshold: args.breaker_failures,
            cool_down: Duration::from_secs(args.breaker_cooldown_secs),
        };
        let plex_sync = args.plex_sync.then(|| medianest_workers::PlexSyncConfig {
            recent_interval: Duration::from_secs(args.plex_recent_interval_secs),
            full_interval: hours(args.plex_full_interval_hours),
            sections_4k: list(&args.plex_4k_sections),
            ..medianest_workers::PlexSyncConfig::default()
        });
        let catalog = medianest_query_api::catalog::CatalogSettings {
            list_ttl: Duration::from_secs(args.catalog_list_ttl_secs),
            details_ttl: Duration::from_secs(args.catalog_details_ttl_secs),
            max_bytes: args.catalog_cache_mib.saturating_mul(1024 * 1024),
            image_base_url: args
                .tmdb_image_url
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            ..medianest_query_api::catalog::CatalogSettings::default()
        };
        let public_url = args
            .public_url
            .as_ref()
            .map(|url| url.as_str().trim_end_matches('/').to_string());
        let notifications = args.notifications.then(|| NotificationSettings {
            worker: medianest_workers::NotifierConfig {
                public_url,
                retry_for: hours(args.notify_retry_hours),
                ..medianest_workers::NotifierConfig::default()
            },
            allow_hosts: list(&args.notify_allow_hosts),
            timeout: Duration::from_secs(args.notify_timeout_secs),
        });
        let roles = if args.roles.is_empty() {
            vec![Role::CommandApi, Role::QueryApi, Role::Workers, Role::Relay]
        } else {
            args.roles
        };
        Ok(Self {
            database_url: args.database_url,
            database_pool_size: args.database_pool_size,
            nats_url: args.nats_url,
            stream: args.stream,
            subject_prefix: args.subject_prefix,
            http_addr: args.http_addr,
            http_max_in_flight: args.http_max_in_flight,
            admin_token: args.admin_token,
            overseerr,
            overseerr_webhook_secret: args.overseerr_webhook_secret,
            auto_approve: args.auto_approve,
            reconcile_interval: Duration::from_secs(args.reconcile_interval_secs),
            redrive_after: Duration::from_secs(args.redrive_after_secs),
            saga_concurrency: args.saga_concurrency,
            idempotency_ttl: hours(args.idempotency_ttl_hours),
            min_position_wait: Duration::from_millis(args.min_position_wait_ms),
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

#[cfg(test)]
mod tests {
    use clap::Parser;
    use secrecy::ExposeSecret;

    use super::*;

    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    /// The settings of these flags, or the error clap or [`Settings::from_args`] gives. Flags
    /// win over `MEDIANEST_*` variables, so only defaults could come from the environment.
    fn settings(flags: &[&str]) -> Result<Settings, String> {
        let parsed = Serve::try_parse_from(std::iter::once("serve").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())?;
        Settings::from_args(parsed.args).map_err(|e| e.to_string())
    }

    type Check = fn(&Settings);

    #[test]
    fn accepted_values_become_these_settings() {
        let cases: &[(&[&str], Check)] = &[
            (&[], |s| {
                assert_eq!(s.database_pool_size, 16);
                assert_eq!(s.saga_concurrency, 16);
                assert_eq!(s.http_addr, "127.0.0.1:8080".parse().unwrap());
                assert_eq!(s.roles.len(), 4);
                assert!(s.overseerr.is_none() && s.auth.plex.is_none());
                assert!(s.notifications.is_some() && s.plex_sync.is_some());
                assert_eq!(s.auth.default_quotas, Quotas::default());
                assert_eq!(s.downloads.limit_per_hour, NonZeroU32::new(5));
                assert_eq!(s.auth.plex_timeout, Duration::from_secs(10));
                assert_eq!(s.min_position_wait, Duration::from_millis(5000));
                assert_eq!(s.http_max_in_flight, 64);
            }),
            (
                &[
                    "--overseerr-url",
                    "http://overseerr:5055",
                    "--overseerr-api-key",
                    " key ",
                    "--overseerr-timeout-secs",
                    "3",
                ],
                |s| {
                    let o = s.overseerr.as_ref().unwrap();
                    assert_eq!(o.url.as_str(), "http://overseerr:5055/");
                    assert_eq!(o.api_key.expose_secret(), "key");
                    assert_eq!(o.timeout, Duration::from_secs(3));
                },
            ),
            (
                &[
                    "--plex-url",
                    "http://127.0.0.1:32400",
                    "--plex-token",
                    "t",
                    "--plex-timeout-secs",
                    "4",
                ],
                |s| {
                    assert_eq!(s.auth.plex.as_ref().unwrap().token.expose_secret(), "t");
                    assert_eq!(s.auth.plex_timeout, Duration::from_secs(4));
                },
            ),
            (&["--database-pool-size", "40"], |s| {
                assert_eq!(s.database_pool_size, 40)
            }),
            (&["--notifications", "false", "--plex-sync", "no"], |s| {
                assert!(s.notifications.is_none() && s.plex_sync.is_none())
            }),
            (&["--trust-proxy", "yes"], |s| assert!(s.auth.trust_proxy)),
            (
                &[
                    "--default-movie-quota",
                    "10/7",
                    "--default-tv-quota",
                    " 2 / 30 ",
                ],
                |s| {
                    assert_eq!(s.auth.default_quotas.movie, Quota::new(10, 7).ok());
                    assert_eq!(s.auth.default_quotas.tv, Quota::new(2, 30).ok());
                },
            ),
            (&["--download-limit-per-hour", "0"], |s| {
                assert_eq!(s.downloads.limit_per_hour, None)
            }),
            (
                &["--session-ttl-hours", "2", "--notify-retry-hours", "3"],
                |s| {
                    assert_eq!(s.auth.session_ttl, Duration::from_secs(7200));
                    let notify = s.notifications.as_ref().unwrap();
                    assert_eq!(notify.worker.retry_for, Duration::from_secs(3 * 3600));
                },
            ),
            (
                &[
                    "--youtube-allowed-hosts",
                    "YouTube.com, ,youtu.be",
                    "--role",
                    "relay",
                ],
                |s| {
                    assert_eq!(s.downloads.allowed_hosts, ["youtube.com", "youtu.be"]);
                    assert_eq!(s.roles, [Role::Relay]);
                },
            ),
            (
                &[
                    "--public-url",
                    "https://nest.example/",
                    "--plex-4k-sections",
                    "4K, 7",
                ],
                |s| {
                    let notify = s.notifications.as_ref().unwrap();
                    assert_eq!(
                        notify.worker.public_url.as_deref(),
                        Some("https://nest.example")
                    );
                    assert_eq!(s.plex_sync.as_ref().unwrap().sections_4k, ["4K", "7"]);
                },
            ),
            (
                &["--auto-approve", "all", "--min-position-wait-ms", "0"],
                |s| {
                    assert_eq!(s.auto_approve, AutoApprovePolicy::All);
                    assert_eq!(s.min_position_wait, Duration::ZERO);
                },
            ),
        ];
        for (flags, check) in cases {
            match settings(flags) {
                Ok(settings) => check(&settings),
                Err(e) => panic!("{flags:?} was refused: {e}"),
            }
        }
    }

    #[test]
    fn refused_values_name_the_option_and_the_problem() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["--saga-concurrency", "0"],
                &["--saga-concurrency", "1..=1024"],
            ),
            (&["--saga-concurrency", "many"], &["--saga-concurrency"]),
            (
                &["--database-pool-size", "2"],
                &["--database-pool-size", "4..=1000"],
            ),
            (
                &["--signin-attempts-per-address", "0"],
                &["--signin-attempts-per-address"],
            ),
            (
                &["--overseerr-timeout-secs", "0"],
                &["--overseerr-timeout-secs"],
            ),
            (
                &["--min-position-wait-ms=60001"],
                &["--min-position-wait-ms", "0..=60000"],
            ),
            (
                &["--overseerr-url", "http://o:5055"],
                &[
                    "MEDIANEST_OVERSEERR_API_KEY",
                    "is required when MEDIANEST_OVERSEERR_URL",
                ],
            ),
            (
                &["--plex-token", "t"],
                &["MEDIANEST_PLEX_URL", "is required"],
            ),
            (
                &["--overseerr-url", "ftp://o"],
                &["--overseerr-url", "http(s)"],
            ),
            (
                &["--plextv-url", "not a url"],
                &["--plextv-url", "not a URL"],
            ),
            (
                &["--database-url", "mysql://db"],
                &["--database-url", "postgres://"],
            ),
            (&["--stream", "A.B"], &["--stream", "wildcards"]),
            (&["--subject-prefix", "medianest."], &["--subject-prefix"]),
            (&["--http-addr", "not-an-address"], &["--http-addr"]),
            (&["--auto-approve", "sometimes"], &["--auto-approve"]),
            (
                &["--default-tv-quota", "10"],
                &["--default-tv-quota", "LIMIT/DAYS"],
            ),
            (&["--default-tv-quota", "0/7"], &["--default-tv-quota"]),
            (
                &["--downloads-dir", "relative/dir"],
                &["--downloads-dir", "absolute"],
            ),
            (
                &["--youtube-allowed-hosts", "https://youtube.com"],
                &["MEDIANEST_YOUTUBE_ALLOWED_HOSTS", "not a host name"],
            ),
            (
                &["--youtube-allowed-hosts", " , "],
                &["MEDIANEST_YOUTUBE_ALLOWED_HOSTS", "at least one host"],
            ),
            (&["--trust-proxy", "maybe"], &["--trust-proxy"]),
            (
                &["--admin-token", "  "],
                &["--admin-token", "must not be empty"],
            ),
            (&["--ytdlp", ""], &["--ytdlp"]),
        ];
        for (flags, expected) in cases {
            let error = match settings(flags) {
                Ok(_) => panic!("{flags:?} was accepted"),
                Err(error) => error,
            };
            for part in *expected {
                assert!(error.contains(part), "{flags:?}: {error:?} lacks {part:?}");
            }
        }
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let settings = settings(&[
            "--database-url",
            "postgres://medianest:db-password@db/medianest",
            "--nats-url",
            "nats://user:nats-password@nats:4222",
            "--admin-token",
            "admin-token-value",
            "--overseerr-url",
            "http://overseerr:5055",
            "--overseerr-api-key",
            "overseerr-key-value",
            "--overseerr-webhook-secret",
            "webhook-secret-value",
            "--plex-url",
            "http://plex:32400",
            "--plex-token",
            "plex-token-value",
            "--plex-webhook-secret",
            "plex-webhook-value",
        ])
        .unwrap();
        let debug = format!("{settings:?}");
        for secret in [
            "db-password",
            "nats-password",
            "admin-token-value",
            "overseerr-key-value",
            "webhook-secret-value",
            "plex-token-value",
            "plex-webhook-value",
        ] {
            assert!(!debug.contains(secret), "Debug shows {secret}");
        }
        assert!(
            debug.contains("\"overseerr\"") && debug.contains("5055"),
            "{debug}"
        );
    }
}
