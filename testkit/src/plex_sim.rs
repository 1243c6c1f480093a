//! Faithful, in-process simulators of plex.tv (PIN sign-in, the account, its servers) and of a
//! Plex Media Server (its identity, library sections, their content, section scans, and the
//! webhooks it sends), for MediaNest's Plex clients and the flows built on them.
//!
//! This module owns both simulators' HTTP servers, their state and their control API for
//! tests. They follow the Plex contract of `docs/design.md` §6 and, since plex.tv
//! publishes no spec, the wire shapes documented in
//! `medianest_integrations::plex` (Plex's guide "Authenticating with Plex",
//! python-plexapi's `myplex.py`, Overseerr, and recorded plex.tv answers):
//!
//! **[`PlexTvSim`]** — every call is recorded ([`PlexTvSim::received`]) and waits for the
//! configured delay; then, like plex.tv:
//! - a call without `X-Plex-Client-Identifier` answers 400
//!   `{"errors": [{"code": 1000, "message": "X-Plex-Client-Identifier is missing", "status": 400}]}`;
//! - injected failures ([`PlexTvSim::fail_next`]) answer next;
//! - `POST /api/v2/pins[?strong=true]` answers 201 with a pin (`id`, `code`, `product`,
//!   `trusted`, `qr`, `clientIdentifier`, `location`, `expiresIn`, `createdAt`, `expiresAt`,
//!   `authToken: null`, `newRegistration: null`); a strong pin has a 25-character lower-case
//!   code and lives 1800 s, a plain one a 4-character upper-case code and 900 s. The pin is
//!   bound to the caller's client identifier;
//! - `GET /api/v2/pins/{id}` answers 200 with the pin (`expiresIn` counts down, `authToken`
//!   set once [`PlexTvSim::authorize_pin`] ran) — or 404
//!   `{"errors": [{"code": 1020, "message": "Code not found or expired", "status": 404}]}` for
//!   an unknown or expired pin, or one read under another client identifier;
//! - `GET /api/v2/user` with the `X-Plex-Token` of an account (header or query parameter)
//!   answers 200 with the account (`id`, `uuid`, `username`, `title`, `email`, `thumb`,
//!   `authToken`, `subscription`, …); otherwise 401
//!   `{"errors": [{"code": 1001, "message": "User could not be authenticated", "status": 401}]}`;
//! - `GET /api/v2/resources` (same token rule) answers a JSON array: one `Plex Media Server`
//!   device per [`PlexTvSim::grant_server`] (`provides: "server"`, `owned`, `accessToken`,
//!   `connections`, …) followed by one player device of the account (`Plex for iOS`,
//!   `provides: "client,player,pubsub-player"`);
//! - anything else answers 404 `{"errors": [{"code": 1002, "message": "The requested resource
//!   or endpoint could not be found", "status": 404}]}`.
//!
//! **[`PmsSim`]** — every call is recorded and delayed; then:
//! - `GET /identity` answers **without** a token, as a real PMS does:
//!   `{"MediaContainer": {"size": 0, "claimed": true, "machineIdentifier": …, "version": …}}`
//!   with `Accept: application/json`, the same as XML otherwise;
//! - `GET /` (the server root, which MediaNest's `PmsClient::identity` reads) needs the
//!   server's `X-Plex-Token` (header or query parameter) and answers the root
//!   `MediaContainer` (`machineIdentifier`, `version`, `friendlyName`, `Directory`, …) as JSON
//!   or XML; without the token it answers PMS's HTML 401 page;
//! - `GET /library/sections` (token required) answers the sections added with
//!   [`PmsSim::add_section`] / [`PmsSim::add_other_videos_section`] in python-plexapi's and
//!   Overseerr's shape: `{"MediaContainer": {"size": N, "allowSync": false, "title1": "Plex
//!   Library", "Directory": [{"key": "3", "type": "movie", "title": …, "agent": …, "scanner":
//!   …, "language", "uuid", "art", "thumb", "composite", timestamps, …, "Location": [{"id": 5,
//!   "path": "/data/youtube"}]}]}}` as JSON or XML; without sections `Directory` is left out;
//! - `GET /library/sections/{key}/refresh[?path=…]` (token required) answers 200 with an
//!   empty body for a known section and records the key and the decoded path
//!   ([`PmsSim::refreshes`]); an unknown key gets the HTML 404 page; the next refreshes can be
//!   made to fail ([`PmsSim::fail_refreshes`]);
//! - `GET /library/metadata/{ratingKey}` (token required) answers the item (with its
//!   `Guid`s) in a `MediaContainer`, or the HTML 404 page for a key the server does not have;
//! - `GET /library/sections/{key}/all` (token required) lists a section's content, filled
//!   with [`PmsSim::add_movie`], [`PmsSim::add_movies_bulk`], [`PmsSim::add_show`] and
//!   [`PmsSim::add_season`] (which also adds its episodes), emptied with
//!   [`PmsSim::remove_item`]. Rating keys are numbers handed out in order, unique on the
//!   server. The query, as PMS reads it:
//!   - `type=1|2|3|4` (movie, show, season, episode; absent: the section's own type, 1 or 2);
//!     a type the section does not hold (or 5–9) lists nothing; a non-number is a 400;
//!   - `includeGuids=1` adds `Guid: [{"id": "tmdb://603"}, …]` to movies and shows of Plex's
//!     own agents (legacy-agent items — [`SimMovie::legacy`] — never have one; seasons and
//!     episodes carry none here);
//!   - `sort=addedAt|updatedAt|titleSort|title[:asc|:desc]` (first field of a list; another
//!     field is a 400); the default order is PMS's title order (`titleSort`: without a
//!     leading article; seasons and episodes by their show's title, then number);
//!   - date filters `addedAt>>=<unix seconds>` (strictly after) and `addedAt<<=` (before),
//!     the same for `updatedAt`, percent-encoded or not (`addedAt%3E%3E=`); another operator
//!     on those fields is a 400; other parameters (`includeMeta`, …) change nothing;
//!   - paging: `X-Plex-Container-Start`/`-Size` as query parameters or as request headers
//!     (the query wins); without a size, everything from the start; size 0 lists nothing but
//!     still counts.
//!
//!   The answer is `{"MediaContainer": {"size", "allowSync", "art", "identifier",
//!   "librarySectionID" (a number), "librarySectionTitle", "librarySectionUUID",
//!   "mediaTagPrefix", "mediaTagVersion", "thumb", "title1", "title2", "viewGroup",
//!   "viewMode", "Metadata": […]}}`; a paged request also gets `totalSize` and `offset` in
//!   the container and the response headers `X-Plex-Container-Start` and
//!   `X-Plex-Container-Total-Size`; an empty page leaves `Metadata` out. Items: a movie has
//!   `ratingKey` (a string), `key`, `guid` (`plex://movie/<24 hex>`, or
//!   `com.plexapp.agents.imdb://tt…?lang=en` for a legacy agent), `type`, `title`,
//!   `titleSort` (when it differs), `year`, `summary`, `thumb`, `art`, `duration`,
//!   `addedAt`, `updatedAt` and `Media: [{"id", "videoResolution", "width", "height",
//!   "videoCodec", …, "Part": [{"id", "key", "file", "size", …}]}]`; a show has no `Media`
//!   but `childCount` (seasons) and `leafCount` (episodes); a season has `index`,
//!   `parentRatingKey`, `parentKey`, `parentGuid`, `parentTitle` and `leafCount`; an episode
//!   has `index`, `parentIndex`, `parent*`, `grandparent*` and `Media`. An unknown section
//!   gets the HTML 404 page; the next listings can be made to fail with a status or a
//!   dropped connection ([`PmsSim::fail_library_calls`]); [`PmsSim::library_calls`] counts
//!   them. In XML (without `Accept: application/json`) items are `<Metadata>` elements where
//!   PMS writes `<Video>`/`<Directory>`: MediaNest reads JSON only;
//! - anything else answers PMS's HTML 404 page.
//!
//! The library listing follows the community OpenAPI 3.1 document `plex-media-server.yaml`
//! in the contracts directory (`MEDIANEST_CONTRACTS_DIR`, default `../shared/contracts`; see
//! [`crate::contracts`]; path `/library/sections/{sectionId}/all`, schemas
//! `MediaContainerWithMetadata`, `Metadata`, `Media`, `Part`, `Guid`) and, where it is silent
//! or differs, what the real server does for python-plexapi (`plexapi/library.py`,
//! `plexapi/base.py` `fetchItems`) and Overseerr (`server/api/plexapi.ts`):
//! - the spec has `X-Plex-Container-Start`/`-Size` only as query parameters; a real PMS
//!   reads them from headers too (Overseerr and python-plexapi's `fetchItems` since 4.14
//!   send headers), so the simulator takes both;
//! - the spec says both "if not specified, all items will be returned" and "by default this
//!   is 50" for `X-Plex-Container-Size`; a real PMS returns the whole section, as here;
//! - the spec calls `totalSize`, `offset` and the two response headers "provided on all
//!   MediaContainer objects"; a real PMS adds them for paged requests (python-plexapi falls
//!   back to `size` when `totalSize` is missing), as here;
//! - field filters such as `addedAt>>=` appear in the spec only in the prose of the
//!   `mediaQuery` parameter, whose schema (`MediaQuery`, `additionalProperties: false`)
//!   admits only `type`, `sourceType`, `sort`, `group` and `limit`; a real PMS takes
//!   `<field><operator>=<value>` (Overseerr's `getRecentlyAdded`, python-plexapi's
//!   `_validateFilterField`, which writes `addedAt%3E%3E=`). Whether `>>=` ("is after") includes
//!   the very second is not documented; the simulator excludes it, the stricter reading;
//! - the spec's `Guid.id` pattern `^(imdb|tmdb|tvdb)://.+$` is kept by the simulator for
//!   its ready-made items, but any text given in [`SimMovie::guids`] is sent as is, so
//!   clients can be tested against odd ids.
//!
//! The webhook side: [`PmsSim::library_new_payload`] (and [`PmsSim::library_new_event`], with
//! this server's identity) builds Plex's documented `library.new` payload,
//! [`PmsSim::webhook_multipart`] the `multipart/form-data` body PMS POSTs (JSON in a `payload`
//! part, optionally a `thumb` JPEG part), and [`PmsSim::send_webhook`] POSTs it with PMS's
//! `User-Agent: PlexMediaServer/<version>`.
//!
//! **Extending [`PmsSim`]**: add authenticated routes in `pms_protected_routes` (they get the
//! token check of `pms_require_token`) and public ones in `pms_public_routes`; keep state in
//! `PmsState` (behind `PmsShared::lock`; library items in `PmsState::items`, rendered by
//! `PmsState::render_item`); render answers with `media_container`, which handles
//! the JSON/XML choice of `Accept` and renders arrays of objects (e.g. `"Directory": [...]`)
//! as child elements.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The PMS version the simulators report.
pub const PMS_VERSION: &str = "1.41.3.9314-a0bfb8370";

/// Lifetime of a strong pin (`strong=true`), in seconds.
const STRONG_PIN_SECONDS: i64 = 1800;

/// Lifetime of a plain (plex.tv/link) pin, in seconds.
const PLAIN_PIN_SECONDS: i64 = 900;

/// Length of a strong pin's code.
const STRONG_CODE_LEN: usize = 25;

/// Length of a plain pin's code.
const PLAIN_CODE_LEN: usize = 4;

/// The first pin id handed out (plex.tv's ids are large integers).
const FIRST_PIN_ID: u64 = 308_667_301;

/// The first library rating key a [`PmsSim`] hands out.
const FIRST_RATING_KEY: u64 = 101;

/// One call a simulator received, as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// Path with the query, e.g. `/api/v2/pins?strong=true`.
    pub path: String,
    /// Request headers by lower-cased name; repeated headers are joined with `", "`.
    pub headers: BTreeMap<String, String>,
}

impl ReceivedRequest {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// A plex.tv account of the [`PlexTvSim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimAccount {
    /// `id`: the numeric plex.tv id.
    pub id: u64,
    /// `uuid`: 16 hexadecimal characters.
    pub uuid: String,
    /// `username` (and `title`).
    pub username: String,
    /// `email`.
    pub email: String,
    /// `thumb`: the avatar URL.
    pub thumb: String,
    /// The account's token: what an authorised pin's `authToken` becomes, and what
    /// `/api/v2/user` and `/api/v2/resources` accept as `X-Plex-Token`.
    pub token: String,
}

impl SimAccount {
    /// An account with `id` and `username`; the rest derives from them: `uuid` 16 hex
    /// characters (a fixed mix of `id`), `email` `<username>@example.com`, `thumb`
    /// `https://plex.tv/users/<uuid>/avatar?c=1700000000`, `token` `plex-token-<id>`.
    pub fn new(id: u64, username: &str) -> Self {
        let uuid = format!("{:016x}", splitmix64(id));
        Self {
            id,
            thumb: format!("https://plex.tv/users/{uuid}/avatar?c=1700000000"),
            uuid,
            username: username.to_string(),
            email: format!("{username}@example.com"),
            token: format!("plex-token-{id}"),
        }
    }
}

/// A fixed bijective mix of 64 bits, so account uuids look random but are stable.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------------------
// Shared machinery: the HTTP server, the call log and the delay.
// ---------------------------------------------------------------------------------------------

/// A running axum server; aborted when the last handle goes.
struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Serves `app` on `127.0.0.1` (random port).
    async fn start(app: Router, name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|err| panic!("bind the {name} simulator on 127.0.0.1: {err}"));
        let addr = listener
            .local_addr()
            .expect("the simulator's listener has an address");
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(error = %err, "the {name} simulator stopped");
            }
        });
        Self { addr, task }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The call log and the answer delay, shared by both simulators' outermost middleware.
#[derive(Default)]
struct Recorder {
    received: Mutex<Vec<ReceivedRequest>>,
    delay: Mutex<Duration>,
}

impl Recorder {
    fn received(&self) -> Vec<ReceivedRequest> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap_or_else(PoisonError::into_inner) = delay;
    }
}

/// Records the call, then waits for the configured delay.
async fn record_and_delay(
    State(recorder): State<Arc<Recorder>>,
    request: Request,
    next: Next,
) -> Response {
    let mut headers = BTreeMap::<String, String>::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    let path = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    recorder
        .received
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(ReceivedRequest {
            method: request.method().as_str().to_string(),
            path,
            headers,
        });
    let delay = *recorder
        .delay
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    next.run(request).await
}

/// The `X-Plex-Token` of a call: the header, else the `X-Plex-Token` query parameter (both
/// plex.tv and PMS accept either).
fn plex_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(token) = headers
        .get("x-plex-token")
        .and_then(|value| value.to_str().ok())
    {
        return Some(token.to_string());
    }
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    pairs
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-plex-token"))
        .map(|(_, value)| value)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
}

/// Timestamps as plex.tv sends them: `2024-07-16T17:03:05Z`.
fn plex_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

// ---------------------------------------------------------------------------------------------
// plex.tv
// ---------------------------------------------------------------------------------------------

/// A running plex.tv simulator on `127.0.0.1` (random port). Clones share the simulator; it
/// stops when the last clone is dropped.
#[derive(Clone)]
pub struct PlexTvSim {
    shared: Arc<TvShared>,
    server: Arc<Server>,
}

impl std::fmt::Debug for PlexTvSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlexTvSim")
            .field("addr", &self.server.addr)
            .finish_non_exhaustive()
    }
}

struct TvShared {
    recorder: Arc<Recorder>,
    state: Mutex<TvState>,
}

impl TvShared {
    fn lock(&self) -> MutexGuard<'_, TvState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct TvState {
    accounts: BTreeMap<u64, SimAccount>,
    grants: Vec<Grant>,
    server_names: BTreeMap<String, String>,
    pins: BTreeMap<u64, SimPin>,
    next_pin_id: u64,
    failures: Option<(usize, StatusCode)>,
}

/// A server in an account's resources.
struct Grant {
    account_id: u64,
    machine_identifier: String,
    owned: bool,
    created_at: DateTime<Utc>,
}

struct SimPin {
    id: u64,
    code: String,
    client_identifier: String,
    product: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    auth_token: Option<String>,
}

impl TvState {
    fn take_failure(&mut self) -> Option<StatusCode> {
        let (left, status) = self.failures.as_mut()?;
        let status = *status;
        *left -= 1;
        if *left == 0 {
            self.failures = None;
        }
        Some(status)
    }

    fn account_by_token(&self, token: &str) -> Option<&SimAccount> {
        self.accounts
            .values()
            .find(|account| account.token == token)
    }

    fn server_name(&self, machine_identifier: &str) -> String {
        self.server_names
            .get(machine_identifier)
            .cloned()
            .unwrap_or_else(|| {
                let short: String = machine_identifier.chars().take(8).collect();
                format!("Plex Sim {short}")
            })
    }
}

impl PlexTvSim {
    /// Starts a simulator with no accounts.
    ///
    /// # Panics
    ///
    /// When no port can be bound on `127.0.0.1`.
    pub async fn start() -> Self {
        let recorder = Arc::new(Recorder::default());
        let shared = Arc::new(TvShared {
            recorder: Arc::clone(&recorder),
            state: Mutex::new(TvState {
                accounts: BTreeMap::new(),
                grants: Vec::new(),
                server_names: BTreeMap::new(),
                pins: BTreeMap::new(),
                next_pin_id: FIRST_PIN_ID,
                failures: None,
            }),
        });
        let app = Router::new()
            .route("/api/v2/pins", post(tv_create_pin))
            .route("/api/v2/pins/{id}", get(tv_get_pin))
            .route("/api/v2/user", get(tv_user))
            .route("/api/v2/resources", get(tv_resources))
            .fallback(tv_not_found)
            .method_not_allowed_fallback(tv_not_found)
            .layer(middleware::from_fn_with_state(Arc::clone(&shared), tv_gate))
            .layer(middleware::from_fn_with_state(recorder, record_and_delay))
            .with_state(Arc::clone(&shared));
        let server = Arc::new(Server::start(app, "plex.tv").await);
        Self { shared, server }
    }

    /// Base URL to configure the plex.tv client with: `http://127.0.0.1:<port>`, without a
    /// trailing slash.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Adds (or replaces) an account.
    pub fn add_account(&self, account: SimAccount) {
        self.shared.lock().accounts.insert(account.id, account);
    }

    /// Makes the server `machine_identifier` appear in the resources of account `account_id`,
    /// owned or shared with it. Its `accessToken` is the account's token when owned, else
    /// `plex-shared-token-<account_id>-<machine_identifier>`; a shared server names the
    /// account that owns it (`ownerId`, `sourceTitle`) when one was granted it as owned.
    /// Granting the same server to the same account again replaces `owned`.
    pub fn grant_server(&self, account_id: u64, machine_identifier: &str, owned: bool) {
        let mut state = self.shared.lock();
        if let Some(grant) = state.grants.iter_mut().find(|grant| {
            grant.account_id == account_id && grant.machine_identifier == machine_identifier
        }) {
            grant.owned = owned;
            return;
        }
        state.grants.push(Grant {
            account_id,
            machine_identifier: machine_identifier.to_string(),
            owned,
            created_at: Utc::now(),
        });
    }

    /// Sets the `name` of server `machine_identifier` in every account's resources (default
    /// `Plex Sim <first 8 characters of the machine identifier>`).
    pub fn set_server_name(&self, machine_identifier: &str, name: &str) {
        self.shared
            .lock()
            .server_names
            .insert(machine_identifier.to_string(), name.to_string());
    }

    /// What the user's "Allow" in Plex's auth app does: pin `pin_id`'s `authToken` becomes
    /// the token of account `account_id`.
    ///
    /// # Panics
    ///
    /// When there is no such pin or no such account.
    pub fn authorize_pin(&self, pin_id: u64, account_id: u64) {
        let mut state = self.shared.lock();
        let token = state
            .accounts
            .get(&account_id)
            .unwrap_or_else(|| panic!("the plex.tv simulator has no account {account_id}"))
            .token
            .clone();
        let pin = state
            .pins
            .get_mut(&pin_id)
            .unwrap_or_else(|| panic!("the plex.tv simulator has no pin {pin_id}"));
        pin.auth_token = Some(token);
    }

    /// Makes pin `pin_id` expire now: reads of it answer 404 from then on.
    ///
    /// # Panics
    ///
    /// When there is no such pin.
    pub fn expire_pin(&self, pin_id: u64) {
        let mut state = self.shared.lock();
        let pin = state
            .pins
            .get_mut(&pin_id)
            .unwrap_or_else(|| panic!("the plex.tv simulator has no pin {pin_id}"));
        pin.expires_at = Utc::now() - chrono::Duration::seconds(1);
    }

    /// Every answer waits this long first (zero: no wait) — a plex.tv that times out.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.recorder.set_delay(delay);
    }

    /// The next `n` calls (after being recorded, delayed and checked for a client identifier)
    /// answer `status` with a plex.tv error body — for 429 plex.tv's rate-limit error
    /// (`code` 1003, "API rate limit exceeded"). Replaces an earlier injection.
    pub fn fail_next(&self, n: usize, status: u16) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.shared.lock().failures = (n > 0).then_some((n, status));
    }

    /// Every call received, in order.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.shared.recorder.received()
    }

    /// How many pins were created.
    pub fn pins_created(&self) -> usize {
        self.shared.lock().pins.len()
    }
}

/// plex.tv's error body.
fn tv_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "errors": [{ "code": code, "message": message, "status": status.as_u16() }]
        })),
    )
        .into_response()
}

fn tv_json(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn pin_not_found() -> Response {
    tv_error(StatusCode::NOT_FOUND, 1020, "Code not found or expired")
}

fn tv_unauthorized() -> Response {
    tv_error(
        StatusCode::UNAUTHORIZED,
        1001,
        "User could not be authenticated",
    )
}

/// plex.tv refuses calls without a client identifier; then the injected failures.
async fn tv_gate(State(shared): State<Arc<TvShared>>, request: Request, next: Next) -> Response {
    if header_str(request.headers(), "x-plex-client-identifier").is_none() {
        return tv_error(
            StatusCode::BAD_REQUEST,
            1000,
            "X-Plex-Client-Identifier is missing",
        );
    }
    let failure = shared.lock().take_failure();
    if let Some(status) = failure {
        return if status == StatusCode::TOO_MANY_REQUESTS {
            tv_error(status, 1003, "API rate limit exceeded")
        } else {
            tv_error(
                status,
                0,
                &format!("Simulated failure (HTTP {})", status.as_u16()),
            )
        };
    }
    next.run(request).await
}

async fn tv_not_found() -> Response {
    tv_error(
        StatusCode::NOT_FOUND,
        1002,
        "The requested resource or endpoint could not be found",
    )
}

async fn tv_create_pin(
    State(shared): State<Arc<TvShared>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let strong = query
        .iter()
        .any(|(name, value)| name == "strong" && matches!(value.as_str(), "true" | "1"));
    let client_identifier = header_str(&headers, "x-plex-client-identifier")
        .unwrap_or_default()
        .to_string();
    let product = header_str(&headers, "x-plex-product")
        .unwrap_or("0")
        .to_string();
    let now = Utc::now();
    let (code, lifetime) = if strong {
        (
            random_code("abcdefghijklmnopqrstuvwxyz0123456789", STRONG_CODE_LEN),
            STRONG_PIN_SECONDS,
        )
    } else {
        (
            random_code("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", PLAIN_CODE_LEN),
            PLAIN_PIN_SECONDS,
        )
    };
    let mut state = shared.lock();
    let id = state.next_pin_id;
    state.next_pin_id += 1;
    let pin = SimPin {
        id,
        code,
        client_identifier,
        product,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(lifetime),
        auth_token: None,
    };
    let body = render_pin(&pin, now);
    state.pins.insert(id, pin);
    tv_json(StatusCode::CREATED, body)
}

async fn tv_get_pin(
    State(shared): State<Arc<TvShared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let client_identifier = header_str(&headers, "x-plex-client-identifier").unwrap_or_default();
    let now = Utc::now();
    let state = shared.lock();
    let found = id
        .parse::<u64>()
        .ok()
        .and_then(|id| state.pins.get(&id))
        .filter(|pin| pin.client_identifier == client_identifier && pin.expires_at > now);
    match found {
        Some(pin) => tv_json(StatusCode::OK, render_pin(pin, now)),
        None => pin_not_found(),
    }
}

async fn tv_user(State(shared): State<Arc<TvShared>>, headers: HeaderMap, uri: Uri) -> Response {
    let state = shared.lock();
    match plex_token(&headers, &uri).and_then(|token| state.account_by_token(&token)) {
        Some(account) => tv_json(StatusCode::OK, render_user(account)),
        None => tv_unauthorized(),
    }
}

async fn tv_resources(
    State(shared): State<Arc<TvShared>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let state = shared.lock();
    let Some(account) = plex_token(&headers, &uri).and_then(|token| state.account_by_token(&token))
    else {
        return tv_unauthorized();
    };
    let mut devices: Vec<Value> = state
        .grants
        .iter()
        .filter(|grant| grant.account_id == account.id)
        .map(|grant| render_server(&state, account, grant))
        .collect();
    devices.push(render_player(account));
    tv_json(StatusCode::OK, Value::Array(devices))
}

fn random_code(alphabet: &str, len: usize) -> String {
    let alphabet = alphabet.as_bytes();
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
        .collect()
}

/// A pin as plex.tv renders it (`pins_new.json` / `pins_linked.json` of the `plex-api` crate;
/// plexapi.dev "Get a Pin").
fn render_pin(pin: &SimPin, now: DateTime<Utc>) -> Value {
    json!({
        "id": pin.id,
        "code": pin.code,
        "product": pin.product,
        "trusted": false,
        "qr": format!("https://plex.tv/api/v2/pins/qr/{}", pin.code),
        "clientIdentifier": pin.client_identifier,
        "location": {
            "code": "US",
            "european_union_member": false,
            "continent_code": "NA",
            "country": "United States",
            "city": "Austin",
            "time_zone": "America/Chicago",
            "postal_code": "78701",
            "in_privacy_restricted_country": false,
            "in_privacy_restricted_region": false,
            "subdivisions": "Texas",
            "coordinates": "30.2672, -97.7431"
        },
        "expiresIn": (pin.expires_at - now).num_seconds().max(0),
        "createdAt": plex_time(pin.created_at),
        "expiresAt": plex_time(pin.expires_at),
        "authToken": pin.auth_token,
        "newRegistration": pin.auth_token.as_ref().map(|_| false),
    })
}

/// An account as `GET /api/v2/user` renders it (`user_info_free.json` of the `plex-api`
/// crate; python-plexapi `MyPlexAccount`).
fn render_user(account: &SimAccount) -> Value {
    json!({
        "id": account.id,
        "uuid": account.uuid,
        "username": account.username,
        "title": account.username,
        "email": account.email,
        "friendlyName": "",
        "locale": null,
        "confirmed": true,
        "joinedAt": 1_600_000_000,
        "emailOnlyAuth": false,
        "hasPassword": true,
        "protected": false,
        "thumb": account.thumb,
        "authToken": account.token,
        "mailingListStatus": "unsubscribed",
        "mailingListActive": false,
        "scrobbleTypes": "",
        "country": "US",
        "subscription": {
            "active": false,
            "subscribedAt": null,
            "status": "Inactive",
            "paymentService": null,
            "plan": null,
            "features": []
        },
        "subscriptionDescription": null,
        "restricted": false,
        "anonymous": null,
        "home": false,
        "guest": false,
        "homeSize": 1,
        "homeAdmin": false,
        "maxHomeSize": 15,
        "rememberExpiresAt": 1_900_000_000,
        "profile": {
            "autoSelectAudio": true,
            "defaultAudioLanguage": null,
            "defaultSubtitleLanguage": null,
            "autoSelectSubtitle": 0,
            "defaultSubtitleAccessibility": 0,
            "defaultSubtitleForced": 0
        },
        "entitlements": [],
        "roles": [],
        "services": [],
        "adsConsent": null,
        "adsConsentSetAt": null,
        "adsConsentReminderAt": null,
        "experimentalFeatures": false,
        "twoFactorEnabled": false,
        "backupCodesCreated": false
    })
}

/// A PMS device of `GET /api/v2/resources` (`resources.json` of the `plex-api` crate;
/// python-plexapi `MyPlexResource`, `ResourceConnection`).
fn render_server(state: &TvState, account: &SimAccount, grant: &Grant) -> Value {
    let machine = &grant.machine_identifier;
    let owner = (!grant.owned)
        .then(|| {
            state
                .grants
                .iter()
                .find(|other| other.owned && other.machine_identifier == *machine)
                .and_then(|other| state.accounts.get(&other.account_id))
        })
        .flatten();
    let access_token = if grant.owned {
        account.token.clone()
    } else {
        format!("plex-shared-token-{}-{machine}", account.id)
    };
    json!({
        "name": state.server_name(machine),
        "product": "Plex Media Server",
        "productVersion": PMS_VERSION,
        "platform": "Linux",
        "platformVersion": "6.8.0",
        "device": "Docker Container",
        "clientIdentifier": machine,
        "createdAt": plex_time(grant.created_at),
        "lastSeenAt": plex_time(Utc::now()),
        "provides": "server",
        "ownerId": owner.map(|owner| owner.id),
        "sourceTitle": owner.map(|owner| owner.username.clone()),
        "publicAddress": "203.0.113.10",
        "accessToken": access_token,
        "owned": grant.owned,
        "home": false,
        "synced": false,
        "relay": true,
        "presence": true,
        "httpsRequired": false,
        "publicAddressMatches": grant.owned,
        "dnsRebindingProtection": false,
        "natLoopbackSupported": false,
        "connections": [
            {
                "protocol": "https",
                "address": "172.17.0.2",
                "port": 32400,
                "uri": format!("https://172-17-0-2.{machine}.plex.direct:32400"),
                "local": true,
                "relay": false,
                "IPv6": false
            },
            {
                "protocol": "https",
                "address": "203.0.113.10",
                "port": 32400,
                "uri": format!("https://203-0-113-10.{machine}.plex.direct:32400"),
                "local": false,
                "relay": false,
                "IPv6": false
            }
        ]
    })
}

/// The account's phone, so that resources always hold a device that is not a server.
fn render_player(account: &SimAccount) -> Value {
    json!({
        "name": format!("{}'s iPhone", account.username),
        "product": "Plex for iOS",
        "productVersion": "8.40",
        "platform": "iOS",
        "platformVersion": "17.5",
        "device": "iPhone",
        "clientIdentifier": format!("sim-player-{}", account.id),
        "createdAt": "2024-01-01T00:00:00Z",
        "lastSeenAt": plex_time(Utc::now()),
        "provides": "client,player,pubsub-player",
        "ownerId": null,
        "sourceTitle": null,
        "publicAddress": "203.0.113.20",
        "accessToken": account.token,
        "owned": true,
        "home": false,
        "synced": false,
        "relay": false,
        "presence": false,
        "httpsRequired": false,
        "publicAddressMatches": false,
        "dnsRebindingProtection": false,
        "natLoopbackSupported": false,
        "connections": []
    })
}

// ---------------------------------------------------------------------------------------------
// Plex Media Server
// ---------------------------------------------------------------------------------------------

/// A running Plex Media Server simulator on `127.0.0.1` (random port). Clones share the
/// simulator; it stops when the last clone is dropped. See the module documentation for its
/// routes and for how to extend it.
#[derive(Clone)]
pub struct PmsSim {
    shared: Arc<PmsShared>,
    server: Arc<Server>,
}

impl std::fmt::Debug for PmsSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PmsSim")
            .field("addr", &self.server.addr)
            .field("machine_identifier", &self.shared.machine_identifier)
            .finish_non_exhaustive()
    }
}

/// What every PMS handler can reach: the fixed identity, the call log and the mutable state.
struct PmsShared {
    recorder: Arc<Recorder>,
    machine_identifier: String,
    token: String,
    state: Mutex<PmsState>,
}

impl PmsShared {
    fn lock(&self) -> MutexGuard<'_, PmsState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The simulated server's mutable state; library sections, scans etc. go here.
struct PmsState {
    friendly_name: String,
    /// Library sections in the order they were added (the order of `/library/sections`).
    sections: Vec<SimSection>,
    /// Ids handed to `Location`s, as PMS numbers its section locations.
    next_location_id: u64,
    /// Successful refresh calls: section key and decoded `path`.
    refreshes: Vec<(String, Option<String>)>,
    /// Injected failures of the next refresh calls.
    refresh_failures: Option<(usize, StatusCode)>,
    /// Library items (movies, shows, seasons, episodes of every section) by rating key.
    items: BTreeMap<u64, SimItem>,
    /// The next rating key handed out (one sequence for the whole server, as in PMS).
    next_rating_key: u64,
    /// Injected failures of the next library listings.
    library_failures: Option<(usize, PmsFault)>,
}

/// A library section of the [`PmsSim`].
struct SimSection {
    key: String,
    title: String,
    section_type: String,
    agent: String,
    scanner: String,
    language: String,
    uuid: String,
    locations: Vec<(u64, String)>,
    created_at: i64,
    scanned_at: i64,
}

impl SimSection {
    /// The section as an element of `/library/sections`'s `Directory`.
    fn render(&self) -> Value {
        let (art, thumb) = match self.section_type.as_str() {
            "show" => ("/:/resources/show-fanart.jpg", "/:/resources/show.png"),
            "artist" => ("/:/resources/artist-fanart.jpg", "/:/resources/artist.png"),
            "photo" => ("/:/resources/photo-fanart.jpg", "/:/resources/photo.png"),
            _ => ("/:/resources/movie-fanart.jpg", "/:/resources/movie.png"),
        };
        let locations: Vec<Value> = self
            .locations
            .iter()
            .map(|(id, path)| json!({ "id": id, "path": path }))
            .collect();
        json!({
            "allowSync": true,
            "art": art,
            "composite": format!("/library/sections/{}/composite/{}", self.key, self.scanned_at),
            "filters": true,
            "refreshing": false,
            "thumb": thumb,
            "key": self.key,
            "type": self.section_type,
            "title": self.title,
            "agent": self.agent,
            "scanner": self.scanner,
            "language": self.language,
            "uuid": self.uuid,
            "updatedAt": self.scanned_at,
            "createdAt": self.created_at,
            "scannedAt": self.scanned_at,
            "content": true,
            "directory": true,
            "contentChangedAt": 1000 + self.scanned_at % 100_000,
            "hidden": 0,
            "Location": locations,
        })
    }
}

/// Agent, scanner and language Plex picks for a new library of `section_type`.
fn default_agent(section_type: &str) -> (&'static str, &'static str, &'static str) {
    match section_type {
        "movie" => ("tv.plex.agents.movie", "Plex Movie", "en-US"),
        "show" => ("tv.plex.agents.series", "Plex TV Series", "en-US"),
        "artist" => ("tv.plex.agents.music", "Plex Music", "en-US"),
        "photo" => ("com.plexapp.agents.none", "Plex Photo Scanner", "xn"),
        _ => ("tv.plex.agents.none", "Plex Video Files Scanner", "xn"),
    }
}

/// A UUID-shaped string derived from `seed` (stable per seed, random-looking).
fn stable_uuid(seed: &str) -> String {
    let hash = fnv1a(seed);
    let (high, low) = (splitmix64(hash), splitmix64(hash ^ 0xA5A5_A5A5_A5A5_A5A5));
    let hex = format!("{high:016x}{low:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// FNV-1a, 64 bits.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

// ---------------------------------------------------------------------------------------------
// Plex Media Server: library content
// ---------------------------------------------------------------------------------------------

/// A movie to put in a movie section of a [`PmsSim`] ([`PmsSim::add_movie`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMovie {
    /// `title`, e.g. `The Matrix`.
    pub title: String,
    /// `year` (left out of the answer when `None`).
    pub year: Option<u16>,
    /// `Guid[].id`, e.g. `["imdb://tt0133093", "tmdb://603"]`, sent as given (odd values
    /// too). Empty: an item of a legacy agent, whose `guid` is
    /// `com.plexapp.agents.imdb://tt<7 digits>?lang=en` and which has no `Guid` at all;
    /// otherwise `guid` is Plex's own `plex://movie/<24 hex>`.
    pub guids: Vec<String>,
    /// `Media[0].videoResolution`: `1080`, `4k`, `720`, `sd`, …
    pub video_resolution: String,
    /// `addedAt` in unix seconds; `None`: when it is added.
    pub added_at: Option<i64>,
}

impl SimMovie {
    /// A 1080p movie of Plex's movie agent with ids `imdb://tt<tmdb_id as 7 digits>` and
    /// `tmdb://<tmdb_id>`, added now.
    pub fn new(title: &str, year: u16, tmdb_id: u64) -> Self {
        Self {
            title: title.to_string(),
            year: Some(year),
            guids: vec![
                format!("imdb://tt{:07}", tmdb_id % 10_000_000),
                format!("tmdb://{tmdb_id}"),
            ],
            video_resolution: "1080".to_string(),
            added_at: None,
        }
    }

    /// A 1080p movie matched by a legacy agent: no `Guid`, a `com.plexapp.agents.imdb://`
    /// `guid`.
    pub fn legacy(title: &str, year: u16) -> Self {
        Self {
            guids: Vec::new(),
            ..Self::new(title, year, 0)
        }
    }

    /// The same movie with `videoResolution` `resolution`, e.g. `4k`.
    pub fn with_resolution(mut self, resolution: &str) -> Self {
        self.video_resolution = resolution.to_string();
        self
    }

    /// The same movie, added at `added_at` (unix seconds).
    pub fn with_added_at(mut self, added_at: i64) -> Self {
        self.added_at = Some(added_at);
        self
    }
}

/// A show to put in a show section of a [`PmsSim`] ([`PmsSim::add_show`]); its seasons come
/// with [`PmsSim::add_season`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimShow {
    /// `title`, e.g. `Lost`.
    pub title: String,
    /// `year` of the first air date (left out when `None`).
    pub year: Option<u16>,
    /// `Guid[].id`, e.g. `["imdb://tt0411008", "tmdb://4607", "tvdb://73739"]`, sent as
    /// given. Empty: a legacy-agent show (`guid` `com.plexapp.agents.thetvdb://<n>?lang=en`,
    /// no `Guid`); otherwise `guid` is `plex://show/<24 hex>`.
    pub guids: Vec<String>,
    /// `videoResolution` of its episodes' `Media` (shows and seasons have no `Media`).
    pub video_resolution: String,
    /// `addedAt` in unix seconds; `None`: when it is added.
    pub added_at: Option<i64>,
}

impl SimShow {
    /// A show of Plex's TV agent with ids `imdb://tt<tvdb_id as 7 digits>`,
    /// `tmdb://<tmdb_id>` and `tvdb://<tvdb_id>`, 1080p episodes, added now.
    pub fn new(title: &str, year: u16, tmdb_id: u64, tvdb_id: u64) -> Self {
        Self {
            title: title.to_string(),
            year: Some(year),
            guids: vec![
                format!("imdb://tt{:07}", tvdb_id % 10_000_000),
                format!("tmdb://{tmdb_id}"),
                format!("tvdb://{tvdb_id}"),
            ],
            video_resolution: "1080".to_string(),
            added_at: None,
        }
    }

    /// A show matched by the legacy TheTVDB agent: no `Guid`.
    pub fn legacy(title: &str, year: u16) -> Self {
        Self {
            guids: Vec::new(),
            ..Self::new(title, year, 0, 0)
        }
    }

    /// The same show with episodes in `resolution`, e.g. `4k`.
    pub fn with_resolution(mut self, resolution: &str) -> Self {
        self.video_resolution = resolution.to_string();
        self
    }

    /// The same show, added at `added_at` (unix seconds).
    pub fn with_added_at(mut self, added_at: i64) -> Self {
        self.added_at = Some(added_at);
        self
    }
}

/// How an injected library failure ([`PmsSim::fail_library_calls`]) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmsFault {
    /// PMS's HTML error page with this status, e.g. 500 or 503 (a server that is starting).
    Status(u16),
    /// A 200 whose body breaks off: the connection is dropped after the headers.
    DropConnection,
}

/// The four metadata types a video library holds (`type=` 1 to 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SimKind {
    Movie,
    Show,
    Season,
    Episode,
}

impl SimKind {
    fn from_number(number: u8) -> Option<Self> {
        match number {
            1 => Some(SimKind::Movie),
            2 => Some(SimKind::Show),
            3 => Some(SimKind::Season),
            4 => Some(SimKind::Episode),
            _ => None,
        }
    }

    /// The item's `type`.
    fn name(self) -> &'static str {
        match self {
            SimKind::Movie => "movie",
            SimKind::Show => "show",
            SimKind::Season => "season",
            SimKind::Episode => "episode",
        }
    }

    /// The container's `title2` for a listing of this kind.
    fn all_title(self) -> &'static str {
        match self {
            SimKind::Movie => "All Movies",
            SimKind::Show => "All Shows",
            SimKind::Season => "All Seasons",
            SimKind::Episode => "All Episodes",
        }
    }
}

/// One metadata item of the simulated library.
struct SimItem {
    rating_key: u64,
    section_key: String,
    kind: SimKind,
    /// A season's show, an episode's season.
    parent: Option<u64>,
    /// An episode's show.
    grandparent: Option<u64>,
    /// A season's or an episode's number.
    index: Option<u32>,
    title: String,
    /// The title without a leading article ([`title_sort`]).
    title_sort: String,
    /// `title_sort` lower-cased: what the default order compares.
    sort_key: String,
    year: Option<u16>,
    guids: Vec<String>,
    video_resolution: String,
    added_at: i64,
    updated_at: i64,
}

/// `title` without a leading `The `, `A ` or `An ` (any case): Plex's English `titleSort`.
fn title_sort(title: &str) -> String {
    let title = title.trim();
    ["the ", "a ", "an "]
        .iter()
        .find_map(|article| {
            let head = title.get(..article.len())?;
            head.eq_ignore_ascii_case(article)
                .then(|| title[article.len()..].trim_start())
        })
        .unwrap_or(title)
        .to_string()
}

/// Width and height of a `videoResolution`.
fn frame_size(resolution: &str) -> (u32, u32) {
    match resolution.to_ascii_lowercase().as_str() {
        "4k" => (3840, 2160),
        "720" => (1280, 720),
        "576" => (720, 576),
        "480" | "sd" => (720, 480),
        _ => (1920, 1080),
    }
}

/// A field the simulator sorts or filters library items on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemField {
    AddedAt,
    UpdatedAt,
}

impl ItemField {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "addedAt" => Some(ItemField::AddedAt),
            "updatedAt" => Some(ItemField::UpdatedAt),
            _ => None,
        }
    }

    fn of(self, item: &SimItem) -> i64 {
        match self {
            ItemField::AddedAt => item.added_at,
            ItemField::UpdatedAt => item.updated_at,
        }
    }
}

/// The order of a listing: `sort=<field>[:desc]`, or the default (title order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemOrder {
    Title { descending: bool },
    Date { field: ItemField, descending: bool },
}

/// A `GET /library/sections/{key}/all` request, read from its query and headers.
struct ItemsQuery {
    /// `type=`; `None`: the section's own type.
    kind: Option<u8>,
    include_guids: bool,
    order: ItemOrder,
    /// `field>>=t` (after: `true`) and `field<<=t` (before: `false`) filters.
    date_filters: Vec<(ItemField, bool, i64)>,
    start: Option<u64>,
    size: Option<u64>,
}

impl ItemsQuery {
    /// Reads the query parameters (names and values decoded) and, for the container
    /// parameters, the headers. `Err` with the reason for PMS's 400.
    fn parse(params: &[(String, String)], headers: &HeaderMap) -> Result<Self, String> {
        let mut query = ItemsQuery {
            kind: None,
            include_guids: false,
            order: ItemOrder::Title { descending: false },
            date_filters: Vec::new(),
            start: None,
            size: None,
        };
        for (name, value) in params {
            match name.as_str() {
                "type" => {
                    query.kind = Some(
                        value
                            .trim()
                            .parse()
                            .map_err(|_| format!("type={value} is not a number"))?,
                    );
                }
                "includeGuids" => query.include_guids = value.trim() == "1",
                "sort" => query.order = parse_sort(value)?,
                _ if name.eq_ignore_ascii_case("x-plex-container-start") => {
                    query.start = Some(parse_count(name, value)?);
                }
                _ if name.eq_ignore_ascii_case("x-plex-container-size") => {
                    query.size = Some(parse_count(name, value)?);
                }
                _ => {
                    let field_name = name.trim_end_matches(['>', '<', '=', '!']);
                    let Some(field) = ItemField::parse(field_name) else {
                        // includeMeta, includeCollections, X-Plex-Token, … change nothing here.
                        continue;
                    };
                    let after = match &name[field_name.len()..] {
                        ">>" => true,
                        "<<" => false,
                        operator => {
                            return Err(format!("the operator {operator}= is not one for dates"))
                        }
                    };
                    let at = value
                        .trim()
                        .parse()
                        .map_err(|_| format!("{name}={value} is not unix seconds"))?;
                    query.date_filters.push((field, after, at));
                }
            }
        }
        for (name, slot) in [
            ("x-plex-container-start", &mut query.start),
            ("x-plex-container-size", &mut query.size),
        ] {
            if slot.is_none() {
                if let Some(value) = header_str(headers, name) {
                    *slot = Some(parse_count(name, value)?);
                }
            }
        }
        Ok(query)
    }

    /// Whether the caller asked for a page (then PMS adds `totalSize` and `offset`).
    fn is_paged(&self) -> bool {
        self.start.is_some() || self.size.is_some()
    }

    fn keeps(&self, item: &SimItem) -> bool {
        self.date_filters.iter().all(|(field, after, at)| {
            let value = field.of(item);
            if *after {
                value > *at
            } else {
                value < *at
            }
        })
    }
}

fn parse_count(name: &str, value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{name}={value} is not a count"))
}

/// `sort=<field>[:asc|:desc][,…]`; only the first field counts.
fn parse_sort(value: &str) -> Result<ItemOrder, String> {
    let first = value.split(',').next().unwrap_or_default().trim();
    let (field, direction) = first.split_once(':').unwrap_or((first, "asc"));
    let descending = match direction {
        "asc" => false,
        "desc" => true,
        other => return Err(format!("unknown sort direction {other}")),
    };
    match field {
        "titleSort" | "title" => Ok(ItemOrder::Title { descending }),
        _ => ItemField::parse(field)
            .map(|field| ItemOrder::Date { field, descending })
            .ok_or_else(|| format!("unknown sort field {field}")),
    }
}

/// What a new library item is given; the rest ([`SimItem`]'s keys and links) the state adds.
struct ItemFields {
    title: String,
    year: Option<u16>,
    guids: Vec<String>,
    video_resolution: String,
    added_at: i64,
}

impl ItemFields {
    /// A movie's fields, added now unless it says when.
    fn movie(movie: SimMovie) -> Self {
        Self {
            added_at: movie.added_at.unwrap_or_else(|| Utc::now().timestamp()),
            title: movie.title,
            year: movie.year,
            guids: movie.guids,
            video_resolution: movie.video_resolution,
        }
    }

    /// A show's fields, added now unless it says when.
    fn show(show: SimShow) -> Self {
        Self {
            added_at: show.added_at.unwrap_or_else(|| Utc::now().timestamp()),
            title: show.title,
            year: show.year,
            guids: show.guids,
            video_resolution: show.video_resolution,
        }
    }

    /// A season's or an episode's fields: no year, no external ids.
    fn child(title: String, video_resolution: &str, added_at: i64) -> Self {
        Self {
            title,
            year: None,
            guids: Vec::new(),
            video_resolution: video_resolution.to_string(),
            added_at,
        }
    }
}

/// Seasons and episodes of a show, episodes of a season.
#[derive(Default, Clone, Copy)]
struct ChildCounts {
    children: u32,
    leaves: u32,
}

impl PmsState {
    fn take_library_failure(&mut self) -> Option<PmsFault> {
        let (left, fault) = self.library_failures.as_mut()?;
        let fault = *fault;
        *left -= 1;
        if *left == 0 {
            self.library_failures = None;
        }
        Some(fault)
    }

    fn section(&self, key: &str) -> Option<&SimSection> {
        self.sections.iter().find(|section| section.key == key)
    }

    fn next_rating_key(&mut self) -> u64 {
        let key = self.next_rating_key;
        self.next_rating_key += 1;
        key
    }

    /// Adds an item of `kind` to `section_key`, which must be a section whose type holds it,
    /// and returns its new rating key.
    fn insert(&mut self, section_key: &str, kind: SimKind, fields: ItemFields) -> u64 {
        let ItemFields {
            title,
            year,
            guids,
            video_resolution,
            added_at,
        } = fields;
        let section = self
            .section(section_key)
            .unwrap_or_else(|| panic!("the PMS simulator has no section {section_key}"));
        let wanted = if kind == SimKind::Movie {
            "movie"
        } else {
            "show"
        };
        assert_eq!(
            section.section_type,
            wanted,
            "section {section_key} is a {} library and cannot hold a {}",
            section.section_type,
            kind.name()
        );
        let rating_key = self.next_rating_key();
        self.items.insert(
            rating_key,
            SimItem {
                rating_key,
                section_key: section_key.to_string(),
                kind,
                parent: None,
                grandparent: None,
                index: None,
                title_sort: title_sort(&title),
                sort_key: title_sort(&title).to_lowercase(),
                title,
                year,
                guids,
                video_resolution,
                added_at,
                updated_at: added_at,
            },
        );
        rating_key
    }

    /// Seasons and episodes per show, episodes per season.
    fn child_counts(&self) -> BTreeMap<u64, ChildCounts> {
        let mut counts = BTreeMap::<u64, ChildCounts>::new();
        for item in self.items.values() {
            match item.kind {
                SimKind::Season => {
                    if let Some(show) = item.parent {
                        counts.entry(show).or_default().children += 1;
                    }
                }
                SimKind::Episode => {
                    for ancestor in [item.parent, item.grandparent].into_iter().flatten() {
                        counts.entry(ancestor).or_default().leaves += 1;
                    }
                }
                SimKind::Movie | SimKind::Show => {}
            }
        }
        counts
    }

    /// The show an item belongs to (itself for a show).
    fn show_of<'a>(&'a self, item: &'a SimItem) -> &'a SimItem {
        let show = match item.kind {
            SimKind::Season => item.parent,
            SimKind::Episode => item.grandparent,
            SimKind::Movie | SimKind::Show => None,
        };
        show.and_then(|key| self.items.get(&key)).unwrap_or(item)
    }

    /// The items of `section` of `kind` that `query` keeps, in its order.
    fn listing(&self, section: &SimSection, kind: SimKind, query: &ItemsQuery) -> Vec<&SimItem> {
        let mut items: Vec<&SimItem> = self
            .items
            .values()
            .filter(|item| {
                item.kind == kind && item.section_key == section.key && query.keeps(item)
            })
            .collect();
        match query.order {
            ItemOrder::Title { descending } if matches!(kind, SimKind::Movie | SimKind::Show) => {
                items.sort_by(|a, b| {
                    let order = (&a.sort_key, a.rating_key).cmp(&(&b.sort_key, b.rating_key));
                    if descending {
                        order.reverse()
                    } else {
                        order
                    }
                });
            }
            ItemOrder::Title { descending } => {
                // Seasons and episodes in their show's title order, then by number.
                let mut keyed: Vec<_> = items
                    .into_iter()
                    .map(|item| {
                        let show = self.show_of(item);
                        let season = match item.kind {
                            SimKind::Season => item.index,
                            SimKind::Episode => {
                                item.parent.and_then(|key| self.items.get(&key)?.index)
                            }
                            SimKind::Movie | SimKind::Show => None,
                        };
                        let episode = (item.kind == SimKind::Episode).then_some(item.index);
                        ((&show.sort_key, season, episode, item.rating_key), item)
                    })
                    .collect();
                keyed.sort_by(|(a, _), (b, _)| if descending { b.cmp(a) } else { a.cmp(b) });
                items = keyed.into_iter().map(|(_, item)| item).collect();
            }
            ItemOrder::Date { field, descending } => {
                items.sort_by_key(|item| (field.of(item), item.rating_key));
                if descending {
                    items.reverse();
                }
            }
        }
        items
    }

    /// An item as an element of `MediaContainer.Metadata`, as PMS renders it.
    fn render_item(
        &self,
        item: &SimItem,
        include_guids: bool,
        counts: &BTreeMap<u64, ChildCounts>,
    ) -> Value {
        let key = item.rating_key;
        let show = self.show_of(item);
        let legacy = show.guids.is_empty();
        let guid = |item: &SimItem| -> String {
            if !legacy {
                return plex_guid(item.kind.name(), &item.rating_key.to_string());
            }
            match item.kind {
                SimKind::Movie => format!(
                    "com.plexapp.agents.imdb://tt{:07}?lang=en",
                    item.rating_key % 10_000_000
                ),
                SimKind::Show => {
                    format!("com.plexapp.agents.thetvdb://{}?lang=en", item.rating_key)
                }
                SimKind::Season => format!(
                    "com.plexapp.agents.thetvdb://{}/{}?lang=en",
                    show.rating_key,
                    item.index.unwrap_or_default()
                ),
                SimKind::Episode => format!(
                    "com.plexapp.agents.thetvdb://{}/{}?lang=en",
                    show.rating_key, item.rating_key
                ),
            }
        };
        let counts = counts.get(&key).copied().unwrap_or_default();
        let mut fields = json!({
            "ratingKey": key.to_string(),
            "key": match item.kind {
                SimKind::Show | SimKind::Season => format!("/library/metadata/{key}/children"),
                SimKind::Movie | SimKind::Episode => format!("/library/metadata/{key}"),
            },
            "guid": guid(item),
            "type": item.kind.name(),
            "title": item.title,
            "summary": "",
            "thumb": format!("/library/metadata/{key}/thumb/{}", item.updated_at),
            "addedAt": item.added_at,
            "updatedAt": item.updated_at,
        });
        let extra = match item.kind {
            SimKind::Movie => json!({
                "studio": "MediaNest Pictures",
                "contentRating": "PG-13",
                "art": format!("/library/metadata/{key}/art/{}", item.updated_at),
                "duration": 7_200_000,
                "Media": [self.render_media(item)],
            }),
            SimKind::Show => json!({
                "index": 1,
                "art": format!("/library/metadata/{key}/art/{}", item.updated_at),
                "childCount": counts.children,
                "leafCount": counts.leaves,
                "viewedLeafCount": 0,
            }),
            SimKind::Season => json!({
                "parentRatingKey": show.rating_key.to_string(),
                "parentKey": format!("/library/metadata/{}", show.rating_key),
                "parentGuid": guid(show),
                "parentTitle": show.title,
                "parentThumb": format!("/library/metadata/{}/thumb/{}", show.rating_key, show.updated_at),
                "index": item.index,
                "leafCount": counts.leaves,
                "viewedLeafCount": 0,
            }),
            SimKind::Episode => {
                let season = item.parent.and_then(|parent| self.items.get(&parent));
                json!({
                    "parentRatingKey": item.parent.map(|parent| parent.to_string()),
                    "parentKey": item.parent.map(|parent| format!("/library/metadata/{parent}")),
                    "parentGuid": season.map(guid),
                    "parentTitle": season.map(|season| season.title.clone()),
                    "parentIndex": season.and_then(|season| season.index),
                    "grandparentRatingKey": show.rating_key.to_string(),
                    "grandparentKey": format!("/library/metadata/{}", show.rating_key),
                    "grandparentGuid": guid(show),
                    "grandparentTitle": show.title,
                    "index": item.index,
                    "duration": 2_700_000,
                    "Media": [self.render_media(item)],
                })
            }
        };
        if let (Value::Object(fields), Value::Object(extra)) = (&mut fields, extra) {
            fields.extend(extra.into_iter().filter(|(_, value)| !value.is_null()));
        }
        if let Some(year) = item
            .year
            .or(show.year)
            .filter(|_| item.kind != SimKind::Season)
        {
            fields["year"] = json!(year);
        }
        if item.title_sort != item.title {
            fields["titleSort"] = json!(item.title_sort);
        }
        // Only items of Plex's own agents carry external ids, and only with includeGuids=1.
        if include_guids && !item.guids.is_empty() {
            let ids: Vec<Value> = item.guids.iter().map(|id| json!({ "id": id })).collect();
            fields["Guid"] = Value::Array(ids);
        }
        fields
    }

    /// One `Media` element (one version of the file) with its `Part`.
    fn render_media(&self, item: &SimItem) -> Value {
        let (width, height) = frame_size(&item.video_resolution);
        let media_id = item.rating_key * 10;
        let folder = self
            .section(&item.section_key)
            .and_then(|section| section.locations.first())
            .map_or("/data", |(_, path)| path.as_str());
        json!({
            "id": media_id,
            "duration": 7_200_000,
            "bitrate": if width >= 3840 { 40_000 } else { 8_000 },
            "width": width,
            "height": height,
            "aspectRatio": 1.78,
            "audioChannels": 6,
            "audioCodec": "eac3",
            "videoCodec": if width >= 3840 { "hevc" } else { "h264" },
            "videoResolution": item.video_resolution,
            "container": "mkv",
            "videoFrameRate": "24p",
            "videoProfile": "main",
            "Part": [{
                "id": media_id,
                "key": format!("/library/parts/{media_id}/{}/file.mkv", item.added_at),
                "duration": 7_200_000,
                "file": format!("{folder}/{}/{}.mkv", item.title, item.rating_key),
                "size": 4_000_000_000_u64,
                "container": "mkv",
                "videoProfile": "main",
            }],
        })
    }
}

impl PmsSim {
    /// Starts a server with `machine_identifier` that accepts `token` as `X-Plex-Token`.
    ///
    /// # Panics
    ///
    /// When no port can be bound on `127.0.0.1`.
    pub async fn start(machine_identifier: &str, token: &str) -> Self {
        let recorder = Arc::new(Recorder::default());
        let shared = Arc::new(PmsShared {
            recorder: Arc::clone(&recorder),
            machine_identifier: machine_identifier.to_string(),
            token: token.to_string(),
            state: Mutex::new(PmsState {
                friendly_name: "MediaNest Test Server".to_string(),
                sections: Vec::new(),
                next_location_id: 1,
                refreshes: Vec::new(),
                refresh_failures: None,
                items: BTreeMap::new(),
                next_rating_key: FIRST_RATING_KEY,
                library_failures: None,
            }),
        });
        let app = pms_public_routes()
            .merge(
                pms_protected_routes().route_layer(middleware::from_fn_with_state(
                    Arc::clone(&shared),
                    pms_require_token,
                )),
            )
            .fallback(pms_not_found)
            .layer(middleware::from_fn_with_state(recorder, record_and_delay))
            .with_state(Arc::clone(&shared));
        let server = Arc::new(Server::start(app, "Plex Media Server").await);
        Self { shared, server }
    }

    /// Base URL to configure the PMS client with: `http://127.0.0.1:<port>`, without a
    /// trailing slash.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The server's `machineIdentifier`.
    pub fn machine_identifier(&self) -> &str {
        &self.shared.machine_identifier
    }

    /// The `X-Plex-Token` the server accepts.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Sets the server's `friendlyName` (default `MediaNest Test Server`).
    pub fn set_friendly_name(&self, name: &str) {
        self.shared.lock().friendly_name = name.to_string();
    }

    /// Every answer waits this long first (zero: no wait).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.recorder.set_delay(delay);
    }

    /// Every call received, in order.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.shared.recorder.received()
    }

    /// Adds a library section (or replaces the one with the same `key`) with one folder,
    /// `location` (none when empty), and the agent and scanner Plex picks for `section_type`:
    /// `movie` → `tv.plex.agents.movie` / `Plex Movie`, `show` → `tv.plex.agents.series` /
    /// `Plex TV Series`, `artist` → `tv.plex.agents.music` / `Plex Music`, `photo` →
    /// `com.plexapp.agents.none` / `Plex Photo Scanner`; any other type gets
    /// `tv.plex.agents.none` / `Plex Video Files Scanner`.
    pub fn add_section(&self, key: &str, title: &str, section_type: &str, location: &str) {
        let (agent, scanner, language) = default_agent(section_type);
        self.put_section(
            key,
            title,
            section_type,
            (agent, scanner, language),
            location,
        );
    }

    /// Adds an "Other Videos" library (or replaces the section with the same `key`): what
    /// Plex creates for home videos and downloads — type `movie`, agent `tv.plex.agents.none`,
    /// scanner `Plex Video Files Scanner`, language `xn`.
    pub fn add_other_videos_section(&self, key: &str, title: &str, location: &str) {
        self.put_section(
            key,
            title,
            "movie",
            ("tv.plex.agents.none", "Plex Video Files Scanner", "xn"),
            location,
        );
    }

    /// Adds another folder to section `key` (a library may span several).
    ///
    /// # Panics
    ///
    /// When there is no such section.
    pub fn add_location(&self, key: &str, location: &str) {
        let mut state = self.shared.lock();
        let id = state.next_location_id;
        state.next_location_id += 1;
        let section = state
            .sections
            .iter_mut()
            .find(|section| section.key == key)
            .unwrap_or_else(|| panic!("the PMS simulator has no section {key}"));
        section.locations.push((id, location.to_string()));
    }

    fn put_section(
        &self,
        key: &str,
        title: &str,
        section_type: &str,
        (agent, scanner, language): (&str, &str, &str),
        location: &str,
    ) {
        let mut state = self.shared.lock();
        let mut locations = Vec::new();
        if !location.is_empty() {
            locations.push((state.next_location_id, location.to_string()));
            state.next_location_id += 1;
        }
        let now = Utc::now().timestamp();
        let section = SimSection {
            key: key.to_string(),
            title: title.to_string(),
            section_type: section_type.to_string(),
            agent: agent.to_string(),
            scanner: scanner.to_string(),
            language: language.to_string(),
            uuid: stable_uuid(&format!("{}/{key}", self.shared.machine_identifier)),
            locations,
            created_at: now,
            scanned_at: now,
        };
        match state.sections.iter_mut().find(|other| other.key == key) {
            Some(existing) => *existing = section,
            None => state.sections.push(section),
        }
    }

    /// The refresh calls the server accepted, in order: the section key and the `path`
    /// parameter, decoded (`None` for a whole-section scan). Calls answered with an injected
    /// failure or a 404 are not listed (they are in [`received`](Self::received)).
    pub fn refreshes(&self) -> Vec<(String, Option<String>)> {
        self.shared.lock().refreshes.clone()
    }

    /// The next `n` refresh calls (with a valid token, whatever their section) answer
    /// `status` with PMS's HTML error page, e.g. 503 for a server that is starting. Replaces
    /// an earlier injection.
    pub fn fail_refreshes(&self, n: usize, status: u16) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.shared.lock().refresh_failures = (n > 0).then_some((n, status));
    }

    /// Adds a movie to movie section `section_key` and returns its `ratingKey` (unique on the
    /// server, numeric, handed out in order).
    ///
    /// # Panics
    ///
    /// When there is no such section, or it is not a `movie` section.
    pub fn add_movie(&self, section_key: &str, movie: SimMovie) -> String {
        self.shared
            .lock()
            .insert(section_key, SimKind::Movie, ItemFields::movie(movie))
            .to_string()
    }

    /// Adds `count` movies to movie section `section_key` at once (fast enough for tens of
    /// thousands): `Bulk Movie 00001`, … with years 1950–2024, `tmdb://<first_tmdb_id + i>`
    /// and the matching `imdb://tt…` ([`SimMovie::new`]), every tenth in `4k`, added one
    /// second apart in the order of their numbers, ending a day ago.
    ///
    /// # Panics
    ///
    /// As [`add_movie`](Self::add_movie).
    pub fn add_movies_bulk(&self, section_key: &str, count: usize, first_tmdb_id: u64) {
        let count_seconds = i64::try_from(count).unwrap_or(i64::MAX);
        let first_added = Utc::now().timestamp() - 86_400 - count_seconds;
        let mut state = self.shared.lock();
        for (n, offset) in (0..count).zip(0_i64..) {
            let year = 1950 + u16::try_from(n % 75).unwrap_or_default();
            let movie = SimMovie::new(
                &format!("Bulk Movie {:05}", n + 1),
                year,
                first_tmdb_id + u64::try_from(n).unwrap_or_default(),
            );
            let resolution = if n % 10 == 9 { "4k" } else { "1080" };
            let movie = movie
                .with_resolution(resolution)
                .with_added_at(first_added + offset);
            state.insert(section_key, SimKind::Movie, ItemFields::movie(movie));
        }
    }

    /// Adds a show to show section `section_key` and returns its `ratingKey`. It has no
    /// seasons until [`add_season`](Self::add_season).
    ///
    /// # Panics
    ///
    /// When there is no such section, or it is not a `show` section.
    pub fn add_show(&self, section_key: &str, show: SimShow) -> String {
        self.shared
            .lock()
            .insert(section_key, SimKind::Show, ItemFields::show(show))
            .to_string()
    }

    /// Adds season `index` (0 for specials) with `episodes` episodes (`Episode 1`, …, in the
    /// show's resolution) to the show `show_rating_key`, all added now, and returns the
    /// season's `ratingKey`. The show's `childCount` and `leafCount` grow accordingly.
    ///
    /// # Panics
    ///
    /// When `show_rating_key` is not a show of this server.
    pub fn add_season(&self, show_rating_key: &str, index: u32, episodes: u32) -> String {
        let mut state = self.shared.lock();
        let show = show_rating_key
            .parse::<u64>()
            .ok()
            .and_then(|key| state.items.get(&key))
            .filter(|item| item.kind == SimKind::Show)
            .unwrap_or_else(|| panic!("the PMS simulator has no show {show_rating_key}"));
        let (show_key, section_key, resolution) = (
            show.rating_key,
            show.section_key.clone(),
            show.video_resolution.clone(),
        );
        let now = Utc::now().timestamp();
        let title = if index == 0 {
            "Specials".to_string()
        } else {
            format!("Season {index}")
        };
        let season = state.insert(
            &section_key,
            SimKind::Season,
            ItemFields::child(title, &resolution, now),
        );
        if let Some(item) = state.items.get_mut(&season) {
            item.parent = Some(show_key);
            item.index = Some(index);
        }
        for number in 1..=episodes {
            let episode = state.insert(
                &section_key,
                SimKind::Episode,
                ItemFields::child(format!("Episode {number}"), &resolution, now),
            );
            if let Some(item) = state.items.get_mut(&episode) {
                item.parent = Some(season);
                item.grandparent = Some(show_key);
                item.index = Some(number);
            }
        }
        season.to_string()
    }

    /// Removes the item `rating_key` — with a show its seasons and episodes, with a season
    /// its episodes — as deleting it in Plex does. An unknown key changes nothing.
    pub fn remove_item(&self, rating_key: &str) {
        let Ok(key) = rating_key.parse::<u64>() else {
            return;
        };
        self.shared.lock().items.retain(|_, item| {
            item.rating_key != key && item.parent != Some(key) && item.grandparent != Some(key)
        });
    }

    /// Sets the `addedAt` (and, when older, `updatedAt`) of item `rating_key` to `added_at`
    /// (unix seconds), e.g. to age a season for a recently-added test.
    ///
    /// # Panics
    ///
    /// When there is no such item.
    pub fn set_added_at(&self, rating_key: &str, added_at: i64) {
        let mut state = self.shared.lock();
        let item = rating_key
            .parse::<u64>()
            .ok()
            .and_then(|key| state.items.get_mut(&key))
            .unwrap_or_else(|| panic!("the PMS simulator has no item {rating_key}"));
        item.added_at = added_at;
        item.updated_at = item.updated_at.max(added_at);
    }

    /// How many `GET /library/sections/{key}/all` calls the server received (whatever their
    /// answer), e.g. to count the pages of a sync pass.
    pub fn library_calls(&self) -> usize {
        self.received()
            .iter()
            .filter(|request| {
                let path = request.path.split('?').next().unwrap_or_default();
                let segments: Vec<&str> = path.split('/').collect();
                matches!(segments.as_slice(), ["", "library", "sections", _, "all"])
            })
            .count()
    }

    /// The next `n` library listings (`GET /library/sections/{key}/all` with a valid token,
    /// whatever their section) fail with `fault`. Replaces an earlier injection.
    pub fn fail_library_calls(&self, n: usize, fault: PmsFault) {
        self.shared.lock().library_failures = (n > 0).then_some((n, fault));
    }

    /// A `library.new` webhook payload as this server sends it: [`Self::library_new_payload`]
    /// with `Server` set to this server's `friendlyName` and `machineIdentifier`, and the
    /// library section (`librarySectionID`, `librarySectionTitle`, `librarySectionKey`)
    /// taken from this server's first section of the matching type (`movie` for a movie,
    /// `show` for a show or an episode) when it has one.
    pub fn library_new_event(
        &self,
        media_type: &str,
        title: &str,
        year: Option<i32>,
        rating_key: &str,
        guids: &[&str],
    ) -> Value {
        let mut payload = Self::library_new_payload(media_type, title, year, rating_key, guids);
        let state = self.shared.lock();
        payload["Server"] = json!({
            "title": state.friendly_name,
            "uuid": self.shared.machine_identifier,
        });
        let section_type = if media_type == "movie" {
            "movie"
        } else {
            "show"
        };
        if let Some(section) = state
            .sections
            .iter()
            .find(|section| section.section_type == section_type)
        {
            let metadata = &mut payload["Metadata"];
            metadata["librarySectionID"] = section
                .key
                .parse::<u64>()
                .map_or_else(|_| json!(section.key), |id| json!(id));
            metadata["librarySectionTitle"] = json!(section.title);
            metadata["librarySectionKey"] = json!(format!("/library/sections/{}", section.key));
        }
        payload
    }

    /// The JSON of Plex's `library.new` webhook (Plex support article "Webhooks"; the event
    /// PMS sends to the owner's webhooks when new media is added):
    ///
    /// `{"event": "library.new", "user": true, "owner": true, "Account": {"id", "thumb",
    /// "title"}, "Server": {"title", "uuid"}, "Metadata": {…}}` — no `Player` (nothing is
    /// playing). `Metadata` has `librarySectionType`, `ratingKey`, `key`, `guid` (Plex's own
    /// `plex://<type>/<24 hex>` id), `Guid: [{"id": "<guid>"}, …]` (one per `guids` entry, e.g.
    /// `imdb://tt0133093`, `tmdb://603`, `tvdb://169`), `type`, `title`, `year`, `summary`,
    /// `thumb`, `art`, `librarySectionTitle`, `librarySectionID`, `librarySectionKey`,
    /// `addedAt` and `updatedAt` (epoch seconds, now). `year` is left out when `None`.
    ///
    /// - `movie`: section `Movies` (id 1), `key` `/library/metadata/<rating_key>`;
    /// - `show`: section `TV Shows` (id 2), `key` `/library/metadata/<rating_key>/children`
    ///   as PMS writes it for a show;
    /// - `episode`: section `TV Shows` (id 2); `title` is the **show**'s title
    ///   (`grandparentTitle`), the episode is S01E01 `Episode 1` (`index` 1, `parentIndex` 1,
    ///   `parentTitle` `Season 1`), with `parentRatingKey`/`grandparentRatingKey` (the rating
    ///   key minus 1 and 2 when numeric, else `<rating_key>-season`/`-show`),
    ///   `parentKey`/`grandparentKey`, `parentGuid`/`grandparentGuid` (`plex://season/…`,
    ///   `plex://show/…`), `grandparentThumb`/`grandparentArt`. As on a real server, `Guid`
    ///   holds the **episode's** own ids; the show appears only as `grandparent*`.
    ///
    /// `Server` is a placeholder (`MediaNest Test Server`,
    /// `0000000000000000000000000000000000000000`); [`Self::library_new_event`] fills in a
    /// running simulator's.
    pub fn library_new_payload(
        media_type: &str,
        title: &str,
        year: Option<i32>,
        rating_key: &str,
        guids: &[&str],
    ) -> Value {
        let now = Utc::now().timestamp();
        let is_movie = media_type == "movie";
        let (section_id, section_title, section_type) = if is_movie {
            (1, "Movies", "movie")
        } else {
            (2, "TV Shows", "show")
        };
        let key = if media_type == "show" {
            format!("/library/metadata/{rating_key}/children")
        } else {
            format!("/library/metadata/{rating_key}")
        };
        let guid_list: Vec<Value> = guids.iter().map(|id| json!({ "id": id })).collect();
        let mut metadata = json!({
            "librarySectionType": section_type,
            "ratingKey": rating_key,
            "key": key,
            "guid": plex_guid(media_type, rating_key),
            "type": media_type,
            "title": title,
            "librarySectionTitle": section_title,
            "librarySectionID": section_id,
            "librarySectionKey": format!("/library/sections/{section_id}"),
            "summary": "",
            "thumb": format!("/library/metadata/{rating_key}/thumb/{now}"),
            "art": format!("/library/metadata/{rating_key}/art/{now}"),
            "addedAt": now,
            "updatedAt": now,
            "Guid": guid_list,
        });
        if let Some(year) = year {
            metadata["year"] = json!(year);
        }
        if media_type == "episode" {
            let (parent, grandparent) = match rating_key.parse::<u64>() {
                Ok(number) if number >= 2 => ((number - 1).to_string(), (number - 2).to_string()),
                _ => (format!("{rating_key}-season"), format!("{rating_key}-show")),
            };
            let extra = json!({
                "title": "Episode 1",
                "index": 1,
                "parentIndex": 1,
                "parentTitle": "Season 1",
                "grandparentTitle": title,
                "parentRatingKey": parent,
                "grandparentRatingKey": grandparent,
                "parentKey": format!("/library/metadata/{parent}"),
                "grandparentKey": format!("/library/metadata/{grandparent}"),
                "parentGuid": plex_guid("season", &parent),
                "grandparentGuid": plex_guid("show", &grandparent),
                "parentThumb": format!("/library/metadata/{parent}/thumb/{now}"),
                "grandparentThumb": format!("/library/metadata/{grandparent}/thumb/{now}"),
                "grandparentArt": format!("/library/metadata/{grandparent}/art/{now}"),
            });
            if let (Value::Object(fields), Value::Object(more)) = (&mut metadata, extra) {
                fields.extend(more);
            }
        }
        json!({
            "event": "library.new",
            "user": true,
            "owner": true,
            "Account": {
                "id": 1,
                "thumb": "https://plex.tv/users/1022b120ffbaa/avatar?c=1700000000",
                "title": "admin",
            },
            "Server": {
                "title": "MediaNest Test Server",
                "uuid": "0000000000000000000000000000000000000000",
            },
            "Metadata": metadata,
        })
    }

    /// A webhook POST body as PMS builds it (RFC 7578 `multipart/form-data`): a `payload` part
    /// (`Content-Disposition: form-data; name="payload"`, then `Content-Type:
    /// <part_content_type>` only when given — PMS sends none) holding `payload` as JSON, and
    /// with `with_thumb` a second part `thumb` (`filename="image.jpg"`,
    /// `Content-Type: image/jpeg`, a tiny JPEG) as PMS adds for some events. Lines end in
    /// CRLF; the boundary is random (`------------------------<16 hex>`) and absent from the
    /// content. Returns the `Content-Type` header value (`multipart/form-data;
    /// boundary=<boundary>`) and the body.
    pub fn webhook_multipart(
        payload: &Value,
        part_content_type: Option<&str>,
        with_thumb: bool,
    ) -> (String, Vec<u8>) {
        let json = serde_json::to_vec(payload).expect("a JSON value serialises");
        let boundary = loop {
            let candidate = format!(
                "------------------------{:016x}",
                rand::thread_rng().gen::<u64>()
            );
            let needle = candidate.as_bytes();
            let clashes = |content: &[u8]| content.windows(needle.len()).any(|w| w == needle);
            if !clashes(&json) && !clashes(THUMB_JPEG) {
                break candidate;
            }
        };
        let mut body = Vec::with_capacity(json.len() + 512);
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(b"Content-Disposition: form-data; name=\"payload\"\r\n");
        if let Some(content_type) = part_content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&json);
        body.extend_from_slice(b"\r\n");
        if with_thumb {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            body.extend_from_slice(
                b"Content-Disposition: form-data; name=\"thumb\"; filename=\"image.jpg\"\r\n",
            );
            body.extend_from_slice(b"Content-Type: image/jpeg\r\n\r\n");
            body.extend_from_slice(THUMB_JPEG);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }

    /// POSTs `payload` to `url` as PMS sends a webhook: [`Self::webhook_multipart`] without a
    /// thumb, `User-Agent: PlexMediaServer/<PMS_VERSION>`, `Accept: */*`. An HTTP error
    /// status is returned as the response.
    ///
    /// # Panics
    ///
    /// When the POST fails at the transport level (connection refused, …).
    pub async fn send_webhook(
        &self,
        url: &str,
        payload: &Value,
        part_content_type: Option<&str>,
    ) -> reqwest::Response {
        self.send_webhook_with(url, payload, part_content_type, false)
            .await
    }

    /// [`send_webhook`](Self::send_webhook), with a `thumb` part when `with_thumb`.
    ///
    /// # Panics
    ///
    /// When the POST fails at the transport level.
    pub async fn send_webhook_with(
        &self,
        url: &str,
        payload: &Value,
        part_content_type: Option<&str>,
        with_thumb: bool,
    ) -> reqwest::Response {
        let (content_type, body) = Self::webhook_multipart(payload, part_content_type, with_thumb);
        reqwest::Client::new()
            .post(url)
            .header(header::USER_AGENT, format!("PlexMediaServer/{PMS_VERSION}"))
            .header(header::ACCEPT, "*/*")
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|err| {
                panic!("the PMS simulator could not POST its webhook to {url}: {err}")
            })
    }
}

/// A tiny JPEG (SOI, a JFIF APP0 segment, EOI) for the webhook's `thumb` part.
const THUMB_JPEG: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0xFF, 0xD9,
];

/// Plex's own id of an item, `plex://<kind>/<24 hex>` (stable per kind and rating key).
fn plex_guid(kind: &str, rating_key: &str) -> String {
    let hash = fnv1a(&format!("{kind}/{rating_key}"));
    let hex = format!("{:016x}{:016x}", splitmix64(hash), splitmix64(!hash));
    format!("plex://{kind}/{}", &hex[..24])
}

/// Routes a real PMS answers without a token.
fn pms_public_routes() -> Router<Arc<PmsShared>> {
    Router::new().route("/identity", get(pms_identity))
}

/// Routes that need the server's token (checked by [`pms_require_token`]).
fn pms_protected_routes() -> Router<Arc<PmsShared>> {
    Router::new()
        .route("/", get(pms_root))
        .route("/library/sections", get(pms_sections))
        .route("/library/sections/{key}/refresh", get(pms_refresh))
        .route("/library/sections/{key}/all", get(pms_section_items))
        .route("/library/metadata/{rating_key}", get(pms_metadata))
}

/// `GET /library/metadata/{ratingKey}`: the item with its `Guid`s in a `MediaContainer`, or
/// PMS's HTML 404 for a key the server does not have (removed, or never there). A real PMS
/// also takes a comma-separated list of keys; MediaNest asks for one at a time.
async fn pms_metadata(
    State(shared): State<Arc<PmsShared>>,
    Path(rating_key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let state = shared.lock();
    let Some(item) = rating_key
        .parse::<u64>()
        .ok()
        .and_then(|key| state.items.get(&key))
    else {
        return pms_html(StatusCode::NOT_FOUND, "Not Found");
    };
    let counts = state.child_counts();
    let metadata = state.render_item(item, true, &counts);
    drop(state);
    media_container(
        &headers,
        json!({"size": 1, "allowSync": true, "identifier": "com.plexapp.plugins.library",
               "Metadata": [metadata]}),
    )
}

/// PMS answers a missing or wrong token with an HTML 401 page.
async fn pms_require_token(
    State(shared): State<Arc<PmsShared>>,
    request: Request,
    next: Next,
) -> Response {
    let token = plex_token(request.headers(), request.uri());
    if token.as_deref() != Some(shared.token.as_str()) {
        return pms_html(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    next.run(request).await
}

async fn pms_not_found() -> Response {
    pms_html(StatusCode::NOT_FOUND, "Not Found")
}

fn pms_html(status: StatusCode, title: &str) -> Response {
    let body = format!(
        "<html><head><title>{title}</title></head><body><h1>{} {title}</h1></body></html>",
        status.as_u16()
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn pms_identity(State(shared): State<Arc<PmsShared>>, headers: HeaderMap) -> Response {
    let container = json!({
        "size": 0,
        "claimed": true,
        "machineIdentifier": shared.machine_identifier,
        "version": PMS_VERSION,
    });
    media_container(&headers, container)
}

async fn pms_root(State(shared): State<Arc<PmsShared>>, headers: HeaderMap) -> Response {
    let friendly_name = shared.lock().friendly_name.clone();
    let directories: Vec<Value> = [
        "activities",
        "butler",
        "channels",
        "clients",
        "diagnostics",
        "hubs",
        "library",
        "livetv",
        "media",
        "metadata",
        "music",
        "player",
        "playlists",
        "resources",
        "search",
        "server",
        "servers",
        "statistics",
        "system",
        "transcode",
        "updater",
        "user",
    ]
    .iter()
    .map(|key| json!({ "count": 1, "key": key, "title": key }))
    .collect();
    // Two halves: one `json!` of this size exceeds the macro recursion limit.
    let mut container = json!({
        "size": directories.len(),
        "allowCameraUpload": false,
        "allowChannelAccess": true,
        "allowMediaDeletion": true,
        "allowSharing": true,
        "allowSync": false,
        "allowTuners": false,
        "backgroundProcessing": true,
        "certificate": true,
        "companionProxy": true,
        "countryCode": "usa",
        "diagnostics": "logs,databases,streaminglogs",
        "eventStream": true,
        "friendlyName": friendly_name,
        "hubSearch": true,
        "itemClusters": true,
        "livetv": 7,
        "machineIdentifier": shared.machine_identifier,
        "mediaProviders": true,
        "multiuser": true,
        "musicAnalysis": 2,
        "myPlex": true,
        "myPlexMappingState": "mapped",
        "myPlexSigninState": "ok",
    });
    let rest = json!({
        "myPlexSubscription": false,
        "offlineTranscode": 1,
        "platform": "Linux",
        "platformVersion": "6.8.0",
        "pluginHost": true,
        "pushNotifications": false,
        "readOnlyLibraries": false,
        "streamingBrainABRVersion": 3,
        "streamingBrainVersion": 2,
        "sync": true,
        "transcoderActiveVideoSessions": 0,
        "transcoderAudio": true,
        "transcoderLyrics": true,
        "transcoderPhoto": true,
        "transcoderSubtitles": true,
        "transcoderVideo": true,
        "updatedAt": Utc::now().timestamp(),
        "updater": true,
        "version": PMS_VERSION,
        "voiceSearch": true,
        "Directory": directories,
    });
    if let (Value::Object(fields), Value::Object(more)) = (&mut container, rest) {
        fields.extend(more);
    }
    media_container(&headers, container)
}

async fn pms_sections(State(shared): State<Arc<PmsShared>>, headers: HeaderMap) -> Response {
    let directories: Vec<Value> = shared
        .lock()
        .sections
        .iter()
        .map(SimSection::render)
        .collect();
    let mut container = json!({
        "size": directories.len(),
        "allowSync": false,
        "title1": "Plex Library",
    });
    // Like PMS, a server without libraries leaves `Directory` out.
    if !directories.is_empty() {
        container["Directory"] = Value::Array(directories);
    }
    media_container(&headers, container)
}

/// `GET /library/sections/{key}/refresh[?path=…]`: PMS starts the scan in the background and
/// answers 200 with an empty body.
async fn pms_refresh(
    State(shared): State<Arc<PmsShared>>,
    Path(key): Path<String>,
    uri: Uri,
) -> Response {
    let path = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .ok()
        .and_then(|Query(pairs)| {
            pairs
                .into_iter()
                .find(|(name, _)| name == "path")
                .map(|(_, value)| value)
        });
    let mut state = shared.lock();
    if let Some((left, status)) = state.refresh_failures.as_mut() {
        let status = *status;
        *left -= 1;
        if *left == 0 {
            state.refresh_failures = None;
        }
        return pms_html(status, status.canonical_reason().unwrap_or("Error"));
    }
    let Some(section) = state.sections.iter_mut().find(|section| section.key == key) else {
        return pms_html(StatusCode::NOT_FOUND, "Not Found");
    };
    section.scanned_at = Utc::now().timestamp();
    state.refreshes.push((key, path));
    StatusCode::OK.into_response()
}

/// `GET /library/sections/{key}/all`: one page of a section's items, see the module
/// documentation.
async fn pms_section_items(
    State(shared): State<Arc<PmsShared>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let mut state = shared.lock();
    if let Some(fault) = state.take_library_failure() {
        return match fault {
            PmsFault::Status(status) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                pms_html(status, status.canonical_reason().unwrap_or("Error"))
            }
            PmsFault::DropConnection => dropped_connection(),
        };
    }
    let Some(section) = state.section(&key) else {
        return pms_html(StatusCode::NOT_FOUND, "Not Found");
    };
    let query = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map_err(|err| err.to_string())
        .and_then(|Query(params)| ItemsQuery::parse(&params, &headers));
    let query = match query {
        Ok(query) => query,
        Err(reason) => {
            tracing::debug!(%reason, "the PMS simulator refuses a library listing");
            return pms_html(StatusCode::BAD_REQUEST, "Bad Request");
        }
    };
    let default_kind = if section.section_type == "show" {
        SimKind::Show
    } else {
        SimKind::Movie
    };
    let kind = match query.kind {
        None => Some(default_kind),
        Some(number) => SimKind::from_number(number),
    };
    let listing = kind.map_or_else(Vec::new, |kind| state.listing(section, kind, &query));
    let total = listing.len();
    let start = query
        .start
        .map_or(0, |start| usize::try_from(start).unwrap_or(usize::MAX));
    let size = query.size.map_or(usize::MAX, |size| {
        usize::try_from(size).unwrap_or(usize::MAX)
    });
    let counts = if matches!(kind, Some(SimKind::Show | SimKind::Season)) {
        state.child_counts()
    } else {
        BTreeMap::new()
    };
    let metadata: Vec<Value> = listing
        .iter()
        .skip(start)
        .take(size)
        .map(|item| state.render_item(item, query.include_guids, &counts))
        .collect();

    let shown_kind = kind.unwrap_or(default_kind);
    let (art, thumb) = if default_kind == SimKind::Show {
        ("/:/resources/show-fanart.jpg", "/:/resources/show.png")
    } else {
        ("/:/resources/movie-fanart.jpg", "/:/resources/movie.png")
    };
    let mut container = json!({
        "size": metadata.len(),
        "allowSync": true,
        "art": art,
        "identifier": "com.plexapp.plugins.library",
        "librarySectionID": section.key.parse::<u64>().map_or_else(|_| json!(section.key), |id| json!(id)),
        "librarySectionTitle": section.title,
        "librarySectionUUID": section.uuid,
        "mediaTagPrefix": "/system/bundle/media/flags/",
        "mediaTagVersion": 1_700_000_000,
        "thumb": thumb,
        "title1": section.title,
        "title2": shown_kind.all_title(),
        "viewGroup": shown_kind.name(),
        "viewMode": 65_592,
    });
    if query.is_paged() {
        container["totalSize"] = json!(total);
        container["offset"] = json!(start);
    }
    // Like PMS, an empty page leaves `Metadata` out.
    if !metadata.is_empty() {
        container["Metadata"] = Value::Array(metadata);
    }
    drop(state);
    let mut response = media_container(&headers, container);
    if query.is_paged() {
        for (name, value) in [
            ("x-plex-container-start", start.to_string()),
            ("x-plex-container-total-size", total.to_string()),
        ] {
            if let Ok(value) = header::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

/// A 200 whose body breaks off after the headers: the client sees the connection drop.
fn dropped_connection() -> Response {
    let broken = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "the PMS simulator drops the connection",
        ))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(broken),
    )
        .into_response()
}

/// Answers `container` (the object inside `MediaContainer`) the way PMS does: JSON
/// `{"MediaContainer": …}` when `Accept` names `application/json`, XML otherwise.
fn media_container(headers: &HeaderMap, container: Value) -> Response {
    let wants_json = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("application/json"));
    if wants_json {
        return (
            StatusCode::OK,
            axum::Json(json!({ "MediaContainer": container })),
        )
            .into_response();
    }
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    match &container {
        Value::Object(fields) => xml_element(&mut xml, "MediaContainer", fields),
        _ => xml.push_str("<MediaContainer/>"),
    }
    xml.push('\n');
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml;charset=utf-8")],
        xml,
    )
        .into_response()
}

/// PMS's XML for a JSON object: scalars become attributes (booleans `1`/`0`), arrays of
/// objects become child elements named after the key.
fn xml_element(out: &mut String, name: &str, fields: &Map<String, Value>) {
    out.push('<');
    out.push_str(name);
    let mut children = Vec::new();
    for (key, value) in fields {
        let text = match value {
            Value::Null => continue,
            Value::Bool(flag) => if *flag { "1" } else { "0" }.to_string(),
            Value::Number(number) => number.to_string(),
            Value::String(text) => text.clone(),
            Value::Array(items) => {
                children.extend(
                    items
                        .iter()
                        .filter_map(|item| item.as_object().map(|object| (key.as_str(), object))),
                );
                continue;
            }
            Value::Object(object) => {
                children.push((key.as_str(), object));
                continue;
            }
        };
        out.push(' ');
        out.push_str(key);
        out.push_str("=\"");
        out.push_str(&xml_escape(&text));
        out.push('"');
    }
    if children.is_empty() {
        out.push_str(">\n</");
        out.push_str(name);
        out.push('>');
        return;
    }
    out.push_str(">\n");
    for (child_name, child) in children {
        xml_element(out, child_name, child);
        out.push('\n');
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(ch),
        }
    }
    out
}
