//! Wiring: one process runs the roles it is given — the HTTP routers (command and query
//! merged on one listener), the relay, and the projection and saga workers — and shuts them
//! down gracefully: the listener stops accepting, in-flight requests and events finish, then
//! the process exits.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use medianest_command_api::downloads::DownloadIntake;
use medianest_command_api::url_check::UrlCheck;
use medianest_command_api::CommandState;
use medianest_domain::download::DownloadServices;
use medianest_domain::media_request::MediaRequestServices;
use medianest_http::health::{self, Readiness};
use medianest_http::ratelimit::{ApiRateLimiter, SignInLimiter, SignInLimits};
use medianest_http::sessions::SessionAuthenticator;
use medianest_http::{layers, Authenticator};
use medianest_integrations::egress::{EgressPolicy, EgressProxy};
use medianest_integrations::overseerr::{OverseerrClient, OverseerrConfig};
use medianest_integrations::plex::{
    PlexClientInfo, PlexTvClient, PlexTvConfig, PmsClient, PmsConfig,
};
use medianest_integrations::ytdlp::{YtDlp, YtDlpConfig};
use medianest_nats::{
    EventFeed, JetStreamFeed, LogFeed, ProgressBoard, Relay, StreamSettings, Subjects,
};
use medianest_projections::ProjectionRunner;
use medianest_query_api::catalog::Catalog;
use medianest_query_api::QueryState;
use medianest_store::accounts::UserAccounts;
use medianest_store::downloads::Downloads;
use medianest_store::media_requests::MediaRequests;
use medianest_store::sessions::UserSessions;
use medianest_workers::notifier::Posters;
use medianest_workers::{
    CircuitBreaker, Dispatcher, Downloader, HealthWatcher, IdempotencySweeper, Notifier,
    OverseerrForwarder, OverseerrReconciler, PlexScanner, PlexSync, ProgressOut, ScanTarget,
    Service, SessionExpirer,
};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use utoipa::OpenApi;

use crate::config::{AuthSettings, Role, Settings};

/// How often the projection lag on `/metrics` is sampled.
const LAG_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// How long shutdown waits for in-flight work.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A started MediaNest process.
pub struct Running {
    /// The HTTP address actually bound (when an HTTP role runs).
    pub http_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    /// The yt-dlp egress proxy, kept for as long as the process runs.
    _egress: Option<EgressProxy>,
}

impl Running {
    /// The token that stops everything when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops every role and waits (at most 30 s) for in-flight work to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.join().await;
    }

    /// Waits until every task has ended (after the shutdown token is cancelled).
    pub async fn join(&mut self) {
        let drain = async {
            while let Some(result) = self.tasks.join_next().await {
                if let Err(e) = result {
                    if e.is_panic() {
                        error!(error = %e, "a task panicked");
                    }
                }
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            error!("shutdown grace period over; aborting the remaining tasks");
            self.tasks.abort_all();
        }
    }

    /// Ends every task at once, as a crash would (for tests of crash recovery).
    pub fn abort(mut self) {
        self.tasks.abort_all();
    }
}

/// Starts the configured roles and returns once the HTTP listener (if any) is bound.
///
/// # Errors
/// When PostgreSQL or NATS cannot be reached, migrations fail, the stream cannot be created,
/// or the HTTP address cannot be bound.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    let mut process = Process::connect(settings).await?;
    if process.settings.runs(Role::Relay) {
        process.spawn_relay();
    }
    if process.settings.runs(Role::Workers) {
        process.spawn_projections();
        process.spawn_housekeeping();
        process.spawn_overseerr_sagas();
        process.spawn_downloads()?;
        process.spawn_plex_sync()?;
        process.spawn_notifications();
    }
    let http_addr =
        if process.settings.runs(Role::CommandApi) || process.settings.runs(Role::QueryApi) {
            Some(process.serve_http().await?)
        } else {
            None
        };
    Ok(Running {
        http_addr,
        shutdown: process.shutdown,
        tasks: process.tasks,
        _egress: process.egress,
    })
}

/// One circuit breaker per external service, shared by everything in the process that calls
/// it (sagas, the Plex sync, the catalogue); each reports its state to `service_health` (the
/// dashboard shows it). Made on first use, so a service nothing calls is not reported.
struct Breakers {
    pool: PgPool,
    config: medianest_workers::BreakerConfig,
    overseerr: OnceLock<Arc<CircuitBreaker>>,
    plex: OnceLock<Arc<CircuitBreaker>>,
}

impl Breakers {
    fn make(&self, service: Service) -> Arc<CircuitBreaker> {
        Arc::new(CircuitBreaker::new(service, self.config).with_health_table(self.pool.clone()))
    }

    fn overseerr(&self) -> Arc<CircuitBreaker> {
        self.overseerr
            .get_or_init(|| self.make(Service::Overseerr))
            .clone()
    }

    fn plex(&self) -> Arc<CircuitBreaker> {
        self.plex.get_or_init(|| self.make(Service::Plex)).clone()
    }
}

/// What the roles of one process share: the connections, the aggregates' stores, the
/// clients of the external services and their breakers, the sagas' feed, and the tasks with
/// the token that stops them. Each role adds its tasks with one method.
struct Process {
    settings: Settings,
    pool: PgPool,
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    subjects: Subjects,
    requests: Arc<MediaRequests>,
    accounts: Arc<UserAccounts>,
    sessions: Arc<UserSessions>,
    overseerr: Option<OverseerrClient>,
    /// The yt-dlp egress proxy, kept for as long as the process runs.
    egress: Option<EgressProxy>,
    ytdlp: Option<YtDlp>,
    download_services: DownloadServices,
    downloads: Option<Arc<Downloads>>,
    breakers: Breakers,
    /// Sagas keep each aggregate's order themselves, so they may hold several events at once.
    saga_feed: Arc<dyn EventFeed>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Process {
    /// Connects to PostgreSQL (migrating it) and NATS (creating the stream), and builds what
    /// the roles share.
    async fn connect(settings: Settings) -> anyhow::Result<Self> {
        let pool = medianest_store::connect(
            settings.database_url.expose_secret(),
            settings.database_pool_size,
        )
        .await
        .context("MEDIANEST_DATABASE_URL: cannot connect to PostgreSQL")?;
        medianest_store::migrate(&pool)
            .await
            .context("applying database migrations")?;
        let nats = medianest_nats::connect(settings.nats_url.expose_secret())
            .await
            .context("MEDIANEST_NATS_URL: cannot connect to NATS")?;
        let js = async_nats::jetstream::new(nats.clone());
        let subjects = Subjects::new(settings.subject_prefix.clone());
        let mut stream_settings = StreamSettings::new(settings.stream.clone(), subjects.clone());
        stream_settings.duplicate_window = settings.duplicate_window;
        medianest_nats::ensure_stream(&js, &stream_settings)
            .await
            .map_err(|e| anyhow::anyhow!("creating JetStream stream {}: {e}", settings.stream))?;
        let requests = Arc::new(
            MediaRequests::new(
                pool.clone(),
                MediaRequestServices {
                    auto_approve: settings.auto_approve,
                },
            )
            .with_default_quotas(settings.auth.default_quotas),
        );
        let overseerr = settings
            .overseerr
            .as_ref()
            .map(|o| {
                OverseerrClient::new(OverseerrConfig {
                    base_url: o.url.clone(),
                    api_key: o.api_key.expose_secret().to_string(),
                    timeout: o.timeout,
                })
            })
            .transpose()
            .map_err(|e| anyhow::anyhow!("MEDIANEST_OVERSEERR_URL / _API_KEY: {e}"))?;
        // Every yt-dlp run goes through the egress proxy, so the download URL rule holds for
        // each connection it makes (a redirect or a playlist item seen only at run time).
        let egress = match &settings.downloads.dir {
            Some(_) => Some(
                EgressProxy::start(EgressPolicy::new(&settings.downloads.allowed_hosts))
                    .await
                    .context("starting the egress proxy for yt-dlp")?,
            ),
            None => None,
        };
        let ytdlp = settings.downloads.dir.as_ref().map(|dir| {
            YtDlp::new(YtDlpConfig {
                program: settings.downloads.ytdlp.clone(),
                downloads_root: dir.clone(),
                proxy: egress.as_ref().map(EgressProxy::url),
                ..YtDlpConfig::default()
            })
        });
        let download_services = DownloadServices {
            allowed_hosts: settings.downloads.allowed_hosts.clone(),
        };
        let downloads = ytdlp.as_ref().map(|_| {
            Arc::new(Downloads::new(
                pool.clone(),
                download_services.clone(),
                settings.downloads.limit_per_hour,
            ))
        });
        let saga_feed: Arc<dyn EventFeed> = Arc::new(
            JetStreamFeed::new(js.clone(), settings.stream.clone(), subjects.clone())
                .with_ack_wait(settings.consumer_ack_wait)
                .with_max_in_flight(settings.saga_concurrency),
        );
        Ok(Self {
            accounts: Arc::new(UserAccounts::new(pool.clone())),
            sessions: Arc::new(UserSessions::new(pool.clone(), settings.auth.session_ttl)),
            breakers: Breakers {
                pool: pool.clone(),
                config: settings.breaker,
                overseerr: OnceLock::new(),
                plex: OnceLock::new(),
            },
            settings,
            pool,
            nats,
            js,
            subjects,
            requests,
            overseerr,
            egress,
            ytdlp,
            download_services,
            downloads,
            saga_feed,
            shutdown: CancellationToken::new(),
            tasks: JoinSet::new(),
        })
    }

    /// The relay: the log into JetStream.
    fn spawn_relay(&mut self) {
        let relay = Relay::new(
            self.pool.clone(),
            self.js.clone(),
            self.settings.stream.clone(),
            self.subjects.clone(),
            self.settings.relay.clone(),
        );
        let token = self.shutdown.clone();
        self.tasks.spawn(async move {
            if let Err(e) = relay.run(token).await {
                error!(error = %e, "relay stopped");
            }
        });
    }

    /// The projections. They consume the PostgreSQL log from their own checkpoints, in order
    /// and in batches (one transaction per batch, the checkpoint its acknowledgement); they
    /// keep working while NATS is away. The public ones read the events' public forms.
    fn spawn_projections(&mut self) {
        let log_feed: Arc<dyn EventFeed> = Arc::new(LogFeed::new(self.pool.clone()));
        for projection in medianest_projections::all() {
            let name = projection.name();
            let runner =
                ProjectionRunner::new(self.pool.clone(), log_feed.clone(), projection.clone());
            let (token, db) = (self.shutdown.clone(), self.pool.clone());
            self.tasks.spawn(async move {
                // A read model added by an upgrade is built from the whole log first.
                match medianest_projections::replay::bootstrap(&db, projection).await {
                    Ok(Some(report)) => info!(
                        projection = name,
                        events = report.events,
                        "built the new read model from the event log"
                    ),
                    Ok(None) => {}
                    Err(e) => error!(error = %e, projection = name, "cannot build the read model from the log; starting from the feed"),
                }
                if let Err(e) = runner.run(token).await {
                    error!(error = %e, projection = name, "projection stopped");
                }
            });
        }
    }

    /// The session expirer and the idempotency-key sweeper.
    fn spawn_housekeeping(&mut self) {
        let expirer = SessionExpirer::new(
            self.pool.clone(),
            self.sessions.clone(),
            self.settings.auth.session_expirer_interval,
        );
        let token = self.shutdown.clone();
        self.tasks.spawn(async move { expirer.run(token).await });
        let sweeper = IdempotencySweeper::new(
            self.pool.clone(),
            self.settings.idempotency_ttl,
            Duration::from_secs(3600),
        );
        let token = self.shutdown.clone();
        self.tasks.spawn(async move { sweeper.run(token).await });
    }

    /// The Overseerr forwarder saga and its reconciler, when Overseerr is configured.
    fn spawn_overseerr_sagas(&mut self) {
        let Some(client) = &self.overseerr else {
            info!("MEDIANEST_OVERSEERR_URL not set: the Overseerr sagas are idle");
            return;
        };
        let forwarder = OverseerrForwarder::new(
            self.requests.clone(),
            client.clone(),
            self.saga_feed.clone(),
            self.settings.forward_retry,
            self.breakers.overseerr(),
        );
        let reconciler = OverseerrReconciler::new(
            self.pool.clone(),
            self.requests.clone(),
            client.clone(),
            self.settings.reconcile_interval,
            self.breakers.overseerr(),
        )
        .with_redrive(forwarder.clone(), self.settings.redrive_after);
        let token = self.shutdown.clone();
        self.tasks.spawn(async move { forwarder.run(token).await });
        let token = self.shutdown.clone();
        self.tasks.spawn(async move { reconciler.run(token).await });
    }

    /// The downloader saga and the Plex scanner, when downloads are on.
    fn spawn_downloads(&mut self) -> anyhow::Result<()> {
        let (Some(downloads), Some(ytdlp)) = (&self.downloads, &self.ytdlp) else {
            info!("MEDIANEST_DOWNLOADS_DIR not set: the downloader is idle");
            return Ok(());
        };
        let downloader = Downloader::new(
            downloads.clone(),
            ytdlp.clone(),
            self.saga_feed.clone(),
            ProgressOut {
                nats: self.nats.clone(),
                subjects: self.subjects.clone(),
            },
            self.pool.clone(),
            self.settings.downloads.downloader,
            self.breakers.make(Service::YtDlp),
        );
        let token = self.shutdown.clone();
        self.tasks.spawn(async move { downloader.run(token).await });
        let Some(pms) = pms_client(&self.settings, "medianest-plex-scanner")? else {
            info!("MEDIANEST_PLEX_URL not set: the Plex scanner is idle");
            return Ok(());
        };
        let scanner = PlexScanner::new(
            downloads.clone(),
            pms,
            self.saga_feed.clone(),
            ScanTarget {
                section_title: self.settings.downloads.plex_library.clone(),
                plex_root: self
                    .settings
                    .downloads
                    .plex_dir
                    .clone()
                    .unwrap_or_else(|| ytdlp.downloads_root().to_path_buf()),
            },
            self.settings.downloads.scan_retry,
            self.breakers.plex(),
        );
        let token = self.shutdown.clone();
        self.tasks.spawn(async move { scanner.run(token).await });
        Ok(())
    }

    /// The Plex library sync, when it is on and a Plex Media Server is configured.
    fn spawn_plex_sync(&mut self) -> anyhow::Result<()> {
        match (
            &self.settings.plex_sync,
            pms_client(&self.settings, "medianest-plex-sync")?,
        ) {
            (Some(config), Some(pms)) => {
                let sync = PlexSync::new(
                    self.pool.clone(),
                    pms,
                    self.requests.clone(),
                    self.breakers.plex(),
                    self.settings.forward_retry,
                    config.clone(),
                );
                let token = self.shutdown.clone();
                self.tasks.spawn(async move { sync.run(token).await });
            }
            (None, _) => info!("MEDIANEST_PLEX_SYNC is off: the Plex library is not synced"),
            (_, None) => info!("MEDIANEST_PLEX_URL not set: the Plex library is not synced"),
        }
        Ok(())
    }

    /// The catalogue of Overseerr's details (the query API's discovery and the notifier's
    /// posters), when Overseerr is configured.
    fn catalog(&self) -> Option<Arc<Catalog>> {
        self.overseerr.as_ref().map(|client| {
            Arc::new(Catalog::new(
                client.clone(),
                self.breakers.overseerr(),
                self.settings.catalog.clone(),
            ))
        })
    }

    /// The notifier saga, the per-channel dispatcher and the health watcher, when
    /// notifications are on.
    fn spawn_notifications(&mut self) {
        let Some(notify) = &self.settings.notifications else {
            info!("MEDIANEST_NOTIFICATIONS is off: nobody is notified");
            return;
        };
        let wake = Arc::new(tokio::sync::Notify::new());
        // Posters come from the catalogue's cache of Overseerr's details.
        let posters = self.catalog().map(|catalog| catalog as Arc<dyn Posters>);
        let notifier = Notifier::new(
            self.pool.clone(),
            self.requests.clone(),
            self.downloads.clone(),
            self.saga_feed.clone(),
            posters,
            notify.worker.clone(),
            wake.clone(),
        );
        let dispatcher = Dispatcher::new(
            self.pool.clone(),
            notify.sender(),
            notify.worker.clone(),
            wake.clone(),
        );
        let watcher = HealthWatcher::new(self.pool.clone(), notify.worker.clone(), wake);
        let token = self.shutdown.clone();
        self.tasks.spawn(async move { notifier.run(token).await });
        let token = self.shutdown.clone();
        self.tasks.spawn(async move { dispatcher.run(token).await });
        let token = self.shutdown.clone();
        self.tasks.spawn(async move { watcher.run(token).await });
    }

    /// The HTTP routers of the API roles (command, query or both) on one listener, with
    /// health, metrics and the OpenAPI document; answers the address bound.
    async fn serve_http(&mut self) -> anyhow::Result<SocketAddr> {
        let authenticator: Arc<dyn Authenticator> = Arc::new(
            SessionAuthenticator::new(self.pool.clone(), self.sessions.clone())
                .with_rate_limit(Arc::new(ApiRateLimiter::per_minute(
                    self.settings.auth.api_rate_limit,
                )))
                .with_bootstrap_token(
                    self.settings
                        .admin_token
                        .as_ref()
                        .map(|token| token.expose_secret().to_string()),
                ),
        );
        // The API routes; health and metrics are added past the load shedding below.
        let mut router = Router::new();
        // Projection lag and throughput on /metrics, read from the checkpoints (so they cover
        // the workers wherever they run).
        let monitor = medianest_projections::status::LagMonitor::new(
            self.pool.clone(),
            medianest_projections::all(),
            LAG_SAMPLE_INTERVAL,
        );
        let token = self.shutdown.clone();
        self.tasks.spawn(async move { monitor.run(token).await });
        if self.settings.runs(Role::CommandApi) {
            router = router.merge(medianest_command_api::router(CommandState {
                pool: self.pool.clone(),
                requests: self.requests.clone(),
                authenticator: authenticator.clone(),
                overseerr_webhook_secret: self
                    .settings
                    .overseerr_webhook_secret
                    .as_ref()
                    .map(|secret| Arc::from(secret.expose_secret())),
                accounts: self.accounts.clone(),
                sessions: self.sessions.clone(),
                plex: plex_sign_in(&self.pool, &self.settings.auth).await?,
                plex_sync: self.settings.auth.plex.is_some() && self.settings.plex_sync.is_some(),
                signin_limiter: Arc::new(SignInLimiter::new(SignInLimits {
                    per_account: self.settings.auth.signin_attempts,
                    per_address: self.settings.auth.signin_attempts_per_address,
                    window: self.settings.auth.signin_window,
                })),
                read_model_wait: self.settings.min_position_wait,
                trust_proxy: self.settings.auth.trust_proxy,
                downloads: match (&self.downloads, &self.ytdlp) {
                    (Some(service), Some(ytdlp)) => Some(DownloadIntake {
                        service: service.clone(),
                        ytdlp: ytdlp.clone(),
                        url_check: Arc::new(UrlCheck::new(
                            self.download_services.clone(),
                            self.settings.downloads.url_check_timeout,
                        )),
                        max_playlist_items: self.settings.downloads.max_playlist_items,
                    }),
                    _ => None,
                },
                plex_webhook_secret: self
                    .settings
                    .downloads
                    .plex_webhook_secret
                    .as_ref()
                    .map(|secret| Arc::from(secret.expose_secret())),
                notifications: self.settings.notifications.as_ref().map(|notify| {
                    medianest_command_api::notifications::NotificationSettings {
                        sender: notify.sender(),
                        retry_for: notify.worker.retry_for,
                        public_url: notify.worker.public_url.clone(),
                    }
                }),
            }));
        }
        if self.settings.runs(Role::QueryApi) {
            let board = Arc::new(ProgressBoard::new());
            let (follower, client, progress_subjects, token) = (
                board.clone(),
                self.nats.clone(),
                self.subjects.clone(),
                self.shutdown.clone(),
            );
            self.tasks.spawn(async move {
                follower
                    .follow(client, progress_subjects, "download", token)
                    .await;
            });
            // The live stream's one log tail; its streams end on shutdown, so open SSE
            // connections do not hold up the graceful shutdown of the HTTP server.
            let hub = medianest_query_api::stream::StreamHub::new(
                self.pool.clone(),
                Some(board.clone()),
                self.shutdown.clone(),
                medianest_query_api::stream::HubSettings::default(),
            )
            .await
            .context("starting the live stream")?;
            self.tasks.spawn(hub.clone().run());
            router = router.merge(medianest_query_api::router(QueryState {
                pool: self.pool.clone(),
                authenticator,
                min_position_wait: self.settings.min_position_wait,
                default_quotas: self.settings.auth.default_quotas,
                download_progress: Some(board),
                stream: Some(hub),
                catalog: self.catalog(),
                search_answers: Default::default(),
                dashboard_answers: Arc::new(medianest_query_api::dashboard::dashboard_answers()),
            }));
        }
        let document = openapi_document(
            self.settings.runs(Role::CommandApi),
            self.settings.runs(Role::QueryApi),
        );
        let router = medianest_http::shed::limit(router, self.settings.http_max_in_flight)
            .merge(health::router(Readiness {
                pool: self.pool.clone(),
                nats: Some(self.nats.clone()),
            }))
            .merge(medianest_http::metrics::router(
                medianest_http::metrics::install(),
            ));
        let router = layers::apply(router.merge(medianest_http::openapi::router(document)));
        let listener = tokio::net::TcpListener::bind(self.settings.http_addr)
            .await
            .with_context(|| {
                format!(
                    "MEDIANEST_HTTP_ADDR: cannot listen on {}",
                    self.settings.http_addr
                )
            })?;
        let addr = listener.local_addr()?;
        info!(%addr, "HTTP listening");
        let token = self.shutdown.clone();
        self.tasks.spawn(async move {
            let served = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
            if let Err(e) = served {
                error!(error = %e, "HTTP server stopped");
            }
        });
        Ok(addr)
    }
}

/// The OpenAPI document of the routes a process serves: the command routes, the query
/// routes, or both.
pub fn openapi_document(command: bool, query: bool) -> utoipa::openapi::OpenApi {
    let mut document = utoipa::openapi::OpenApi::default();
    if command {
        document.merge(medianest_command_api::CommandApiDoc::openapi());
    }
    if query {
        document.merge(medianest_query_api::QueryApiDoc::openapi());
    }
    document.info.title = "MediaNest".to_string();
    document.info.version = env!("CARGO_PKG_VERSION").to_string();
    document
}

/// The client of the configured Plex Media Server (for the scanner or the sync, named by
/// `client_identifier`), if any.
fn pms_client(settings: &Settings, client_identifier: &str) -> anyhow::Result<Option<PmsClient>> {
    let Some(plex) = &settings.auth.plex else {
        return Ok(None);
    };
    let client = PlexClientInfo::medianest(client_identifier.to_string());
    PmsClient::new(PmsConfig {
        base_url: plex.url.clone(),
        token: plex.token.expose_secret().to_string(),
        client,
        timeout: settings.auth.plex_timeout,
    })
    .map(Some)
    .map_err(|e| anyhow::anyhow!("MEDIANEST_PLEX_URL: {e}"))
}

/// The Plex sign-in of the command API, when a Plex Media Server is configured.
async fn plex_sign_in(
    pool: &sqlx::PgPool,
    auth: &AuthSettings,
) -> anyhow::Result<Option<Arc<medianest_command_api::PlexSignIn>>> {
    let Some(plex) = &auth.plex else {
        return Ok(None);
    };
    let client_identifier = medianest_store::accounts::installation_id(pool)
        .await
        .context("reading the installation id")?;
    let client = PlexClientInfo::medianest(client_identifier.to_string());
    let plex_tv = PlexTvClient::new(PlexTvConfig {
        base_url: auth.plextv_url.clone(),
        client: client.clone(),
        timeout: auth.plex_timeout,
    })
    .map_err(|e| anyhow::anyhow!("MEDIANEST_PLEXTV_URL: {e}"))?;
    let server = PmsClient::new(PmsConfig {
        base_url: plex.url.clone(),
        token: plex.token.expose_secret().to_string(),
        client,
        timeout: auth.plex_timeout,
    })
    .map_err(|e| anyhow::anyhow!("MEDIANEST_PLEX_URL: {e}"))?;
    Ok(Some(Arc::new(medianest_command_api::PlexSignIn::new(
        plex_tv, server,
    ))))
}
