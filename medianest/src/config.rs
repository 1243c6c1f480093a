//! Configuration: one typed [`Settings`], read from `--flags` or `MEDIANEST_*` environment
//! variables (DESIGN.md §9) and validated at start-up; an invalid value stops start-up with a
//! message naming the variable. Secrets are never printed.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use medianest_domain::media_request::AutoApprovePolicy;

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
    /// Longest wait of a query for `min_position`, in milliseconds.
    #[arg(long, env = "MEDIANEST_MIN_POSITION_WAIT_MS", default_value = "5000")]
    pub min_position_wait_ms: String,
    /// Roles to run (repeatable); all of them when absent.
    #[arg(long = "role", value_enum)]
    pub roles: Vec<Role>,
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

impl Settings {
    /// Validates raw options.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable with an unusable value.
    pub fn from_args(args: ServeArgs) -> Result<Self, ConfigError> {
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
            min_position_wait: Duration::from_millis(wait),
            roles,
            forward_retry: medianest_workers::RetryPolicy::default(),
            relay: medianest_nats::RelayOptions::default(),
            duplicate_window: Duration::from_secs(600),
            consumer_ack_wait: Duration::from_secs(30),
        })
    }

    /// Whether `role` runs in this process.
    pub fn runs(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}
