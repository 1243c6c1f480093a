//! The test harness: [`TestApp::spawn`] runs every MediaNest role in-process on port 0
//! against a fresh PostgreSQL database and a unique JetStream stream and subject prefix, so
//! tests run in parallel on one PostgreSQL and one NATS server.
//!
//! `MEDIANEST_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! names a database the harness can create databases from; `MEDIANEST_TEST_NATS_URL`
//! (default `nats://127.0.0.1:4222`) a NATS server with JetStream.

use std::time::Duration;

use medianest::config::{AuthSettings, DownloadSettings, OverseerrSettings, PlexSettings};
use medianest::{Role, Running, Settings};
use medianest_domain::media_request::AutoApprovePolicy;
use medianest_domain::user_account::Quotas;
use medianest_nats::{RelayOptions, Subjects};
use medianest_store::StoredEvent;
use medianest_workers::RetryPolicy;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::fault_proxy::FaultProxy;
use crate::overseerr_sim::OverseerrSim;
use crate::plex_sim::{PlexTvSim, PmsSim, SimAccount};

/// The bootstrap admin token of test apps (honoured only while no admin account exists).
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The username of the admin every test app signs in at start.
pub const ADMIN_USERNAME: &str = "admin";
/// The machine identifier of the test apps' Plex Media Server simulator.
pub const PMS_MACHINE_ID: &str = "medianest-test-pms-0001";
/// The token of the test apps' Plex Media Server simulator.
pub const PMS_TOKEN: &str = "medianest-test-pms-token";

/// The password the harness gives a local account named `username`.
pub fn password_of(username: &str) -> String {
    format!("password-of-{username}")
}
/// The Overseerr webhook secret of test apps.
pub const WEBHOOK_SECRET: &str = "test-webhook-secret";
/// The secret path segment of the Plex webhook of every test app.
pub const PLEX_WEBHOOK_SECRET: &str = "test-plex-webhook-secret";
/// The `MEDIANEST_PUBLIC_URL` of test apps (links in notifications).
pub const PUBLIC_URL: &str = "https://medianest.example";
/// The title of the PMS simulator's YouTube library when downloads are on.
pub const PLEX_LIBRARY: &str = "YouTube";
/// The key of that library section (a movie section `1` is added before it, so the scanner
/// must find it by type and title).
pub const PLEX_LIBRARY_KEY: &str = "7";

/// The admin database URL of the test PostgreSQL.
pub fn admin_database_url() -> String {
    std::env::var("MEDIANEST_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// The NATS URL of tests.
pub fn nats_url() -> String {
    std::env::var("MEDIANEST_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

/// Creates an empty, migrated database and returns its URL and a pool on it.
///
/// # Panics
/// When PostgreSQL is unreachable: tests need it (`scripts/test` starts it).
pub async fn fresh_database() -> (String, PgPool) {
    let admin_url = admin_database_url();
    let admin = medianest_store::connect(&admin_url, 1)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is needed for tests: {e}"));
    let name = format!("medianest_test_{}", Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create a test database");
    admin.close().await;
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("the admin URL ends with a database name");
    let url = format!("{base}/{name}");
    let pool = medianest_store::connect(&url, 8)
        .await
        .expect("connect to the test database");
    medianest_store::migrate(&pool).await.expect("migrate");
    (url, pool)
}

/// Logs of the app under test, shown for failing tests (`RUST_LOG` filters; default warn).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A unique stream name and subject prefix.
pub fn unique_stream() -> (String, Subjects) {
    let id = Uuid::now_v7().simple().to_string();
    (format!("TEST_{id}"), Subjects::new(format!("t{id}")))
}

/// How long a test's stream is kept on the machine's NATS after it was made.
const STREAM_KEPT_FOR: Duration = Duration::from_secs(3600);

/// Deletes, once per test process, the test streams (`TEST_<UUIDv7>`) made more than
/// [`STREAM_KEPT_FOR`] ago by earlier runs: a test leaves its stream behind (it may be
/// inspected after a failure), and without a sweep they pile up on the machine's JetStream
/// (seen: 27 streams, 2.4 GB). A stream's age is read from its name's UUIDv7. Failures are
/// ignored: the sweep only tidies.
async fn sweep_old_streams() {
    use futures::StreamExt;
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT
        .get_or_init(|| async {
            let Ok(nats) = medianest_nats::connect(&nats_url()).await else {
                return;
            };
            let js = async_nats::jetstream::new(nats);
            let names: Vec<String> = js
                .stream_names()
                .filter_map(|n| async { n.ok() })
                .collect()
                .await;
            let now = std::time::SystemTime::now();
            for name in names {
                let made = name
                    .strip_prefix("TEST_")
                    .and_then(|id| Uuid::parse_str(id).ok())
                    .and_then(|id| id.get_timestamp())
                    .map(|t| {
                        let (seconds, nanos) = t.to_unix();
                        std::time::UNIX_EPOCH + Duration::new(seconds, nanos)
                    });
                if made.is_some_and(|made| {
                    now.duration_since(made).unwrap_or_default() > STREAM_KEPT_FOR
                }) {
                    let _ = js.delete_stream(&name).await;
                }
            }
        })
        .await;
}

/// A NATS connection and a freshly created stream with a unique name and prefix.
pub struct TestStream {
    /// The connection.
    pub nats: async_nats::Client,
    /// JetStream on it.
    pub js: async_nats::jetstream::Context,
    /// The stream's name.
    pub name: String,
    /// The stream's subjects.
    pub subjects: Subjects,
}

/// Connects to the test NATS and creates a unique stream.
///
/// # Panics
/// When NATS is unreachable or JetStream refuses the stream.
pub async fn fresh_stream() -> TestStream {
    sweep_old_streams().await;
    let nats = medianest_nats::connect(&nats_url())
        .await
        .expect("NATS with JetStream is needed for tests");
    let js = async_nats::jetstream::new(nats.clone());
    let (name, subjects) = unique_stream();
    medianest_nats::ensure_stream(
        &js,
        &medianest_nats::StreamSettings::new(name.clone(), subjects.clone()),
    )
    .await
    .expect("create the stream");
    TestStream {
        nats,
        js,
        name,
        subjects,
    }
}

/// How a test app is set up.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// Auto-approval policy (default `none`, so requests stay pending).
    pub auto_approve: AutoApprovePolicy,
    /// Whether to start an Overseerr simulator and point MediaNest at it (default true).
    pub overseerr: bool,
    /// Reconciler interval (default one hour: only tests of the reconciler shorten it).
    pub reconcile_interval: Duration,
    /// How long a request may stay approved before the reconciler forwards it again
    /// (default one hour).
    pub redrive_after: Duration,
    /// Aggregates each saga works on at once (default 16, as in production).
    pub saga_concurrency: usize,
    /// Forwarder retries (default 6 attempts, 50 ms doubling to 400 ms).
    pub forward_retry: RetryPolicy,
    /// Roles (default all).
    pub roles: Vec<Role>,
    /// Longest `min_position` wait of queries (default 5 s).
    pub min_position_wait: Duration,
    /// API requests worked on at once (`MEDIANEST_HTTP_MAX_IN_FLIGHT`; default 256, above
    /// the hundred requests at once some tests send).
    pub http_max_in_flight: usize,
    /// Whether to start plex.tv and Plex Media Server simulators and enable Plex sign-in
    /// (default true).
    pub plex: bool,
    /// Session lifetime without use (default 30 days).
    pub session_ttl: Duration,
    /// API calls per user per minute (default 10,000, out of the way of other tests).
    pub api_rate_limit: u32,
    /// Failed sign-ins per account in the window (default 5 per 15 minutes).
    pub signin_attempts: usize,
    /// Failed sign-ins per client address in the window, over all accounts (default 30).
    pub signin_attempts_per_address: usize,
    /// Whether the app takes the client address from `X-Forwarded-For`
    /// (`MEDIANEST_TRUST_PROXY`; default false), so a test can sign in from several addresses.
    pub trust_proxy: bool,
    /// Quotas of users without their own (default none).
    pub default_quotas: Quotas,
    /// Session expirer interval (default 200 ms).
    pub session_expirer_interval: Duration,
    /// Whether YouTube downloads are on (default false): a fresh downloads root under the
    /// temp dir, yt-dlp from PATH, hosts `127.0.0.1` and `localhost` allowed (only the IP
    /// literal passes the private-address check), and a PMS "Other Videos" section titled
    /// [`PLEX_LIBRARY`] (key [`PLEX_LIBRARY_KEY`]) at that root.
    pub downloads: bool,
    /// Downloads per user per hour (default 5; 0: unlimited).
    pub download_limit_per_hour: u32,
    /// Playlist cap (default 10).
    pub playlist_max_items: u32,
    /// yt-dlp processes at once (default 2).
    pub download_concurrency: usize,
    /// The Plex library title MediaNest scans (default [`PLEX_LIBRARY`], the simulator's).
    pub plex_library: String,
    /// The circuit breakers of Overseerr, Plex and yt-dlp (default: open after 5 transient
    /// failures in a row, for 500 ms, so tests of outages do not wait the production 30 s).
    pub breaker: medianest_workers::BreakerConfig,
    /// The Plex library sync (default off, so tests that count PMS calls see only their
    /// own); [`TestOptions::quick_plex_sync`] is a setting for tests of the sync.
    pub plex_sync: Option<medianest_workers::PlexSyncConfig>,
    /// The catalogue's cache and retries (default: production TTLs, retries 10 ms apart).
    pub catalog: medianest_query_api::catalog::CatalogSettings,
    /// Whether the app reaches PostgreSQL through a [`FaultProxy`] ([`TestApp::db_proxy`]),
    /// for outage tests (default false). The test's own pool connects directly.
    pub database_proxy: bool,
    /// Whether the app reaches NATS through a [`FaultProxy`] ([`TestApp::nats_proxy`]), for
    /// outage tests (default false). The test's own client connects directly.
    pub nats_proxy: bool,
    /// Notifications (default on, with [`TestOptions::quick_notifications`]); `None` turns
    /// them off.
    pub notifications: Option<medianest::config::NotificationSettings>,
}

impl TestOptions {
    /// Notifications for tests: `127.0.0.1` allow-listed (the simulators), links under
    /// [`PUBLIC_URL`], calls bounded by 2 s, retries from 200 ms doubling to 1 s within an
    /// hour, the dispatcher looking every 100 ms and holding a claim for 3 s.
    pub fn quick_notifications() -> medianest::config::NotificationSettings {
        medianest::config::NotificationSettings {
            worker: medianest_workers::NotifierConfig {
                public_url: Some(PUBLIC_URL.to_string()),
                retry_for: Duration::from_secs(3600),
                backoff_min: Duration::from_millis(200),
                backoff_max: Duration::from_secs(1),
                poll: Duration::from_millis(100),
                claim_for: Duration::from_secs(3),
            },
            allow_hosts: vec!["127.0.0.1".to_string()],
            timeout: Duration::from_secs(2),
        }
    }

    /// A Plex sync that looks every 100 ms, runs a recently-added pass every 300 ms and a
    /// full pass at start (and when asked), in pages of 50.
    pub fn quick_plex_sync() -> medianest_workers::PlexSyncConfig {
        medianest_workers::PlexSyncConfig {
            recent_interval: Duration::from_millis(300),
            full_interval: Duration::from_secs(3600),
            tick: Duration::from_millis(100),
            page_size: 50,
            ..medianest_workers::PlexSyncConfig::default()
        }
    }
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            auto_approve: AutoApprovePolicy::None,
            overseerr: true,
            reconcile_interval: Duration::from_secs(3600),
            redrive_after: Duration::from_secs(3600),
            saga_concurrency: 16,
            forward_retry: RetryPolicy {
                attempts: 6,
                min_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(400),
            },
            roles: vec![Role::CommandApi, Role::QueryApi, Role::Workers, Role::Relay],
            min_position_wait: Duration::from_secs(5),
            http_max_in_flight: 256,
            plex: true,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            api_rate_limit: 10_000,
            signin_attempts: 5,
            signin_attempts_per_address: 30,
            trust_proxy: false,
            default_quotas: Quotas::default(),
            session_expirer_interval: Duration::from_millis(200),
            downloads: false,
            download_limit_per_hour: 5,
            playlist_max_items: 10,
            download_concurrency: 2,
            plex_library: PLEX_LIBRARY.to_string(),
            breaker: medianest_workers::BreakerConfig {
                failure_threshold: 5,
                cool_down: Duration::from_millis(500),
            },
            plex_sync: None,
            catalog: medianest_query_api::catalog::CatalogSettings {
                retry: RetryPolicy {
                    attempts: 2,
                    min_delay: Duration::from_millis(10),
                    max_delay: Duration::from_millis(10),
                },
                ..medianest_query_api::catalog::CatalogSettings::default()
            },
            database_proxy: false,
            nats_proxy: false,
            notifications: Some(Self::quick_notifications()),
        }
    }
}

/// A signed-in account of a test app.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// The account id.
    pub id: Uuid,
    /// The username.
    pub username: String,
    /// The session's bearer token.
    pub token: String,
    /// The session id.
    pub session_id: Uuid,
}

/// A running MediaNest with its own database, stream and (optionally) Overseerr simulator.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// A pool on the app's database.
    pub pool: PgPool,
    /// The app's database URL.
    pub database_url: String,
    /// A NATS client.
    pub nats: async_nats::Client,
    /// The app's subjects.
    pub subjects: Subjects,
    /// The app's stream.
    pub stream: String,
    /// The Overseerr simulator, when started.
    pub overseerr: Option<OverseerrSim>,
    /// The plex.tv simulator, when started.
    pub plex_tv: Option<PlexTvSim>,
    /// The Plex Media Server simulator, when started.
    pub pms: Option<PmsSim>,
    /// The admin the harness signed in at start (`request`, `get`, `post_json` use it).
    pub admin: TestUser,
    /// The downloads root, when downloads are on (removed on drop).
    pub downloads_dir: Option<std::path::PathBuf>,
    /// The proxy between the app and PostgreSQL, with [`TestOptions::database_proxy`].
    pub db_proxy: Option<FaultProxy>,
    /// The proxy between the app and NATS, with [`TestOptions::nats_proxy`].
    pub nats_proxy: Option<FaultProxy>,
    settings: Settings,
    running: Option<Running>,
}

impl TestApp {
    /// Spawns an app with [`TestOptions::default`].
    pub async fn spawn() -> Self {
        Self::spawn_with(TestOptions::default()).await
    }

    /// Spawns an app.
    ///
    /// # Panics
    /// When PostgreSQL or NATS is unreachable, or the app does not start.
    pub async fn spawn_with(options: TestOptions) -> Self {
        init_tracing();
        sweep_old_streams().await;
        let (database_url, pool) = fresh_database().await;
        let (app_nats_url, nats_proxy) = if options.nats_proxy {
            let url = reqwest::Url::parse(&nats_url()).expect("a NATS URL");
            let upstream = format!(
                "{}:{}",
                url.host_str().unwrap_or("127.0.0.1"),
                url.port().unwrap_or(4222)
            );
            let upstream = tokio::net::lookup_host(&upstream)
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .expect("NATS's address");
            let proxy = FaultProxy::start(upstream).await;
            (format!("nats://{}", proxy.addr()), Some(proxy))
        } else {
            (nats_url(), None)
        };
        let (app_database_url, db_proxy) = if options.database_proxy {
            let mut url = reqwest::Url::parse(&database_url).expect("a database URL");
            let upstream = format!(
                "{}:{}",
                url.host_str().unwrap_or("127.0.0.1"),
                url.port().unwrap_or(5432)
            );
            let upstream = tokio::net::lookup_host(&upstream)
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .expect("PostgreSQL's address");
            let proxy = FaultProxy::start(upstream).await;
            url.set_host(Some("127.0.0.1")).expect("a host");
            url.set_port(Some(proxy.addr().port())).expect("a port");
            (url.to_string(), Some(proxy))
        } else {
            (database_url.clone(), None)
        };
        let (stream, subjects) = unique_stream();
        let overseerr = if options.overseerr {
            Some(OverseerrSim::start().await)
        } else {
            None
        };
        let (plex_tv, pms) = if options.plex {
            (
                Some(PlexTvSim::start().await),
                Some(PmsSim::start(PMS_MACHINE_ID, PMS_TOKEN).await),
            )
        } else {
            (None, None)
        };
        let auth = AuthSettings {
            plex: pms.as_ref().map(|pms| PlexSettings {
                url: pms.base_url().parse().expect("the simulator's URL"),
                token: pms.token().into(),
            }),
            plextv_url: plex_tv
                .as_ref()
                .map(|sim| sim.base_url().parse().expect("the simulator's URL"))
                .unwrap_or_else(|| "https://plex.tv".parse().expect("a URL")),
            session_ttl: options.session_ttl,
            default_quotas: options.default_quotas,
            signin_attempts: options.signin_attempts,
            signin_attempts_per_address: options.signin_attempts_per_address,
            signin_window: Duration::from_secs(900),
            api_rate_limit: std::num::NonZeroU32::new(options.api_rate_limit.max(1))
                .expect("at least 1"),
            session_expirer_interval: options.session_expirer_interval,
            trust_proxy: options.trust_proxy,
            plex_timeout: Duration::from_secs(2),
        };
        let downloads_dir = options.downloads.then(|| {
            let dir = std::env::temp_dir().join(format!("medianest-test-{}", Uuid::now_v7()));
            std::fs::create_dir_all(&dir).expect("a downloads root");
            dir
        });
        if let (Some(pms), Some(dir)) = (&pms, &downloads_dir) {
            pms.add_section("1", "Movies", "movie", "/data/movies");
            pms.add_other_videos_section(PLEX_LIBRARY_KEY, PLEX_LIBRARY, &dir.to_string_lossy());
        }
        let downloads = DownloadSettings {
            dir: downloads_dir.clone(),
            allowed_hosts: vec!["127.0.0.1".to_string(), "localhost".to_string()],
            limit_per_hour: std::num::NonZeroU32::new(options.download_limit_per_hour),
            max_playlist_items: options.playlist_max_items,
            downloader: medianest_workers::DownloaderConfig {
                concurrency: options.download_concurrency,
                progress_interval: Duration::from_secs(1),
                cancel_poll: Duration::from_millis(200),
                max_items: options.playlist_max_items,
                ..medianest_workers::DownloaderConfig::default()
            },
            plex_library: options.plex_library.clone(),
            plex_dir: None,
            plex_webhook_secret: Some(PLEX_WEBHOOK_SECRET.into()),
            scan_retry: RetryPolicy {
                attempts: 4,
                min_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(200),
            },
            ..DownloadSettings::default()
        };
        let settings = Settings {
            database_url: app_database_url.into(),
            database_pool_size: 16,
            nats_url: app_nats_url.into(),
            stream: stream.clone(),
            subject_prefix: subjects.prefix().to_string(),
            http_addr: "127.0.0.1:0".parse().expect("an address"),
            http_max_in_flight: options.http_max_in_flight,
            admin_token: Some(ADMIN_TOKEN.into()),
            overseerr: overseerr.as_ref().map(|sim| OverseerrSettings {
                url: sim.base_url().parse().expect("the simulator's URL"),
                api_key: sim.api_key().into(),
                timeout: Duration::from_secs(10),
            }),
            overseerr_webhook_secret: Some(WEBHOOK_SECRET.into()),
            auto_approve: options.auto_approve,
            reconcile_interval: options.reconcile_interval,
            redrive_after: options.redrive_after,
            saga_concurrency: options.saga_concurrency,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            min_position_wait: options.min_position_wait,
            roles: options.roles,
            forward_retry: options.forward_retry,
            relay: RelayOptions {
                poll_interval: Duration::from_millis(50),
                retry_delay: Duration::from_millis(100),
                ..RelayOptions::default()
            },
            duplicate_window: Duration::from_secs(600),
            consumer_ack_wait: Duration::from_secs(1),
            auth,
            downloads,
            breaker: options.breaker,
            plex_sync: options.plex_sync,
            catalog: options.catalog,
            notifications: options.notifications,
        };
        let nats = medianest_nats::connect(&nats_url())
            .await
            .expect("NATS with JetStream is needed for tests");
        let mut app = Self {
            base_url: String::new(),
            http: reqwest::Client::new(),
            pool,
            database_url,
            nats,
            subjects,
            stream,
            overseerr,
            plex_tv,
            pms,
            admin: TestUser {
                id: Uuid::nil(),
                username: ADMIN_USERNAME.to_string(),
                token: String::new(),
                session_id: Uuid::nil(),
            },
            downloads_dir,
            db_proxy,
            nats_proxy,
            settings,
            running: None,
        };
        app.start().await;
        app.admin = app.sign_in_local(ADMIN_USERNAME, true).await;
        app
    }

    async fn start(&mut self) {
        let running = medianest::start(self.settings.clone())
            .await
            .expect("MediaNest starts");
        let addr = running.http_addr.expect("an HTTP role runs");
        self.base_url = format!("http://{addr}");
        self.running = Some(running);
    }

    /// Stops gracefully (in-flight work finishes) and starts again on a new port.
    pub async fn restart(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
        self.start().await;
    }

    /// Kills every task at once, as a crash would, and starts again.
    pub async fn crash_and_restart(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
        }
        self.start().await;
    }

    /// Stops the app gracefully.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// The simulator (panics when the app has none).
    pub fn sim(&self) -> &OverseerrSim {
        self.overseerr
            .as_ref()
            .expect("this app has an Overseerr simulator")
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// An authenticated request builder (the harness's admin).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_as(&self.admin.token, method, path)
    }

    /// A request builder with `token` as bearer.
    pub fn request_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(token)
    }

    /// The admin's session token.
    pub fn admin_token(&self) -> &str {
        &self.admin.token
    }

    /// Creates a local account (password [`password_of`]`(username)`) with the CLI's code.
    ///
    /// # Panics
    /// When the account cannot be created.
    pub async fn create_local_user(&self, username: &str, admin: bool) -> Uuid {
        medianest::users::create_user(&self.pool, username, None, admin, password_of(username))
            .await
            .unwrap_or_else(|e| panic!("create {username}: {e}"))
            .id
            .into()
    }

    /// `POST /api/v1/auth/login` with `username` and `password`.
    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .expect("POST reaches the app")
    }

    /// Creates a local account and signs it in.
    ///
    /// # Panics
    /// When either fails.
    pub async fn sign_in_local(&self, username: &str, admin: bool) -> TestUser {
        self.create_local_user(username, admin).await;
        let mut response = self.login(username, &password_of(username)).await;
        // A 503 says the read models lag (tests with a short `min_position_wait` on a busy
        // machine): a client tries again after `Retry-After`.
        for _ in 0..10 {
            if response.status() != 503 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            response = self.login(username, &password_of(username)).await;
        }
        assert_eq!(response.status(), 200, "login of {username}");
        test_user(response.json().await.expect("a JSON answer"))
    }

    /// Creates a local account with e-mail address `email` and signs it in.
    ///
    /// # Panics
    /// When either fails.
    pub async fn sign_in_with_email(&self, username: &str, email: &str, admin: bool) -> TestUser {
        medianest::users::create_user(
            &self.pool,
            username,
            Some(email.to_string()),
            admin,
            password_of(username),
        )
        .await
        .unwrap_or_else(|e| panic!("create {username}: {e}"));
        let response = self.login(username, &password_of(username)).await;
        assert_eq!(response.status(), 200, "login of {username}");
        test_user(response.json().await.expect("a JSON answer"))
    }

    /// Creates a user (not an admin) and signs them in.
    pub async fn sign_in_user(&self, username: &str) -> TestUser {
        self.sign_in_local(username, false).await
    }

    /// Creates another admin and signs them in.
    pub async fn sign_in_admin(&self, username: &str) -> TestUser {
        self.sign_in_local(username, true).await
    }

    /// The plex.tv simulator (panics when the app has none).
    pub fn plex_tv(&self) -> &PlexTvSim {
        self.plex_tv
            .as_ref()
            .expect("this app has a plex.tv simulator")
    }

    /// Runs the whole Plex PIN flow for `account` (added to the plex.tv simulator if new):
    /// create a PIN, authorise it at "app.plex.tv", exchange it. Answers the exchange.
    pub async fn plex_sign_in(&self, account: &SimAccount) -> reqwest::Response {
        let sim = self.plex_tv();
        sim.add_account(account.clone());
        let pin: Value = self
            .http
            .post(self.url("/api/v1/auth/plex/pins"))
            .send()
            .await
            .expect("POST reaches the app")
            .json()
            .await
            .expect("a JSON answer");
        let pin_id = pin["id"].as_u64().expect("a PIN id");
        sim.authorize_pin(pin_id, account.id);
        self.http
            .post(self.url(&format!("/api/v1/auth/plex/pins/{pin_id}/session")))
            .send()
            .await
            .expect("POST reaches the app")
    }

    /// `POST path` with a JSON body, as the admin.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("POST reaches the app")
    }

    /// `POST path` without a body, as the admin.
    pub async fn post_empty(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .send()
            .await
            .expect("POST reaches the app")
    }

    /// `GET path`, as the admin.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET reaches the app")
    }

    /// Submits a movie request and returns the 202 body (`id`, `version`, `position`).
    ///
    /// # Panics
    /// When the answer is not 202.
    pub async fn submit_movie(&self, tmdb_id: u32, title: &str) -> Value {
        let response = self
            .post_json(
                "/api/v1/requests",
                &serde_json::json!({
                    "media_type": "movie", "tmdb_id": tmdb_id, "title": title,
                    "year": 1999, "is_4k": false, "note": null
                }),
            )
            .await;
        assert_eq!(
            response.status(),
            202,
            "submit answered {}",
            response.status()
        );
        response.json().await.expect("a JSON answer")
    }

    /// Waits (at most 30 s) until request `id` has been forwarded to Overseerr, and answers
    /// its Overseerr request id.
    ///
    /// # Panics
    /// When it is not forwarded in time.
    pub async fn forwarded(&self, id: &str) -> u64 {
        eventually(
            "the Overseerr request id",
            Duration::from_secs(30),
            || async {
                let detail: Value = self
                    .get(&format!("/api/v1/requests/{id}"))
                    .await
                    .json()
                    .await
                    .ok()?;
                detail["overseerr_request_id"].as_u64()
            },
        )
        .await
    }

    /// Sends Overseerr's default-template webhook `notification` (`MEDIA_AVAILABLE`, …) for
    /// its request `overseerr_id` to this app, with the app's secret, applying it to the
    /// simulator first ([`OverseerrSim::send_webhook`]); answers the app's response.
    ///
    /// # Panics
    /// When the app has no Overseerr simulator or the POST cannot be sent.
    pub async fn overseerr_webhook(
        &self,
        notification: &str,
        overseerr_id: u64,
    ) -> reqwest::Response {
        self.sim()
            .send_webhook(
                &self.overseerr_webhook_url(),
                WEBHOOK_SECRET,
                notification,
                overseerr_id,
            )
            .await
            .expect("webhook sent")
    }

    /// `GET /api/openapi.json` (no authentication), parsed.
    ///
    /// # Panics
    /// When it is not served as JSON.
    pub async fn openapi_document(&self) -> Value {
        self.http
            .get(self.url("/api/openapi.json"))
            .send()
            .await
            .expect("GET reaches the app")
            .json()
            .await
            .expect("a JSON document")
    }

    /// Submits a movie request as the admin and approves it (with auto-approval off),
    /// answering its id.
    ///
    /// # Panics
    /// When either is refused.
    pub async fn submit_and_approve(&self, tmdb_id: u32, title: &str) -> String {
        let submitted = self.submit_movie(tmdb_id, title).await;
        let id = submitted["id"].as_str().expect("an id").to_string();
        let approved = self
            .post_empty(&format!("/api/v1/requests/{id}/approve"))
            .await;
        assert_eq!(approved.status(), 200);
        id
    }

    /// Polls `GET /api/v1/requests/{id}` until its status is `status` (at most `timeout`),
    /// returning the detail.
    ///
    /// # Panics
    /// When the status is not reached in time.
    pub async fn wait_for_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            let response = self.get(&format!("/api/v1/requests/{id}")).await;
            if response.status() == 200 {
                last = response.json().await.expect("a JSON answer");
                if last["status"] == status {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("request {id} did not become {status} within {timeout:?}; last seen: {last}");
    }

    /// The stored events of an aggregate, in order.
    pub async fn events_of(&self, aggregate_type: &str, id: &str) -> Vec<StoredEvent> {
        medianest_store::log::aggregate_events(&self.pool, aggregate_type, id)
            .await
            .expect("read the event store")
    }

    /// The number of rows in the `events` table.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("count events")
    }

    /// The Overseerr webhook URL of this app.
    pub fn overseerr_webhook_url(&self) -> String {
        self.url("/api/v1/webhooks/overseerr")
    }
}

/// The signed-in user of a sign-in answer (`token`, `session_id`, `user.id`).
///
/// # Panics
/// When the answer lacks them.
pub fn test_user(answer: Value) -> TestUser {
    TestUser {
        id: answer["user"]["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("user.id"),
        username: answer["user"]["username"]
            .as_str()
            .expect("user.username")
            .to_string(),
        token: answer["token"].as_str().expect("token").to_string(),
        session_id: answer["session_id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("session_id"),
    }
}

/// One message of a JetStream stream, decoded.
#[derive(Debug, Clone)]
pub struct StreamedEvent {
    /// The subject.
    pub subject: String,
    /// The `Nats-Msg-Id` header.
    pub msg_id: Option<String>,
    /// The JSON body (a CloudEvent).
    pub body: Value,
}

/// Every message currently in `stream`, in stream order.
///
/// # Panics
/// When the stream cannot be read.
pub async fn stream_messages(nats: &async_nats::Client, stream: &str) -> Vec<StreamedEvent> {
    let js = async_nats::jetstream::new(nats.clone());
    let mut stream = js.get_stream(stream).await.expect("the stream exists");
    let last = stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    let mut out = Vec::new();
    for sequence in 1..=last {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        out.push(StreamedEvent {
            subject: message.subject.to_string(),
            msg_id: message
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_string()),
            body: serde_json::from_slice(&message.payload).unwrap_or(Value::Null),
        });
    }
    out
}

impl TestApp {
    /// Every message in this app's stream.
    pub async fn stream_messages(&self) -> Vec<StreamedEvent> {
        stream_messages(&self.nats, &self.stream).await
    }

    /// Waits until the stream holds at least `count` messages (at most `timeout`).
    ///
    /// # Panics
    /// When it does not in time.
    pub async fn wait_for_stream(&self, count: usize, timeout: Duration) -> Vec<StreamedEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.stream_messages().await;
            if messages.len() >= count || tokio::time::Instant::now() >= deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `check` every 50 ms until it answers `Some` (at most `timeout`).
///
/// # Panics
/// With `what` when the time runs out.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(dir) = &self.downloads_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
