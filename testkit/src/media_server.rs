//! A local media server for tests that run the real yt-dlp (`docs/design.md` §8): it
//! serves small generated MP4 files and RSS 2.0 feeds of them, which yt-dlp's generic
//! extractor treats as a playlist (playlist title = the channel's title; each entry's id = the
//! item's `<guid>`, its title = the item's `<title>`).
//!
//! This module owns the server, its state and its control API for tests. Every request is
//! recorded ([`MediaServer::received`]) before it is answered; then:
//! - `GET|HEAD /videos/<name>.mp4` of a video added with [`MediaServer::add_video`] or
//!   [`MediaServer::add_slow_video`] answers 200 with the whole file, or, with a
//!   `Range: bytes=<start>-[<end>]` (or `bytes=-<suffix>`) header, 206 with that part and
//!   `Content-Range`; an unsatisfiable range answers 416 with `Content-Range: bytes */<len>`.
//!   Always `Content-Type: video/mp4`, `Content-Length`, `Accept-Ranges: bytes`. A slow video
//!   sends its body in chunks with a delay before every chunk after the first;
//! - `GET /feeds/<name>.xml` of a feed added with [`MediaServer::add_feed`] answers 200
//!   `application/rss+xml`;
//! - `GET /redirect?to=<url>` answers 302 with `Location: <url>`;
//! - anything else answers 404.
//!
//! The file content is deterministic ([`video_content`]): a 24-byte MP4 `ftyp` box followed
//! by pseudo-random filler seeded by the name, exactly as long as asked. It is not playable;
//! yt-dlp does not look inside without ffmpeg.
//!
//! The server listens on `127.0.0.1` (random port), runs on the current Tokio runtime and stops
//! accepting connections when the [`MediaServer`] is dropped.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One `<item>` of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedItem {
    /// `<title>`: yt-dlp's title of the entry.
    pub title: String,
    /// `<guid isPermaLink="false">`: yt-dlp's id of the entry.
    pub guid: String,
    /// Name of the video the `<enclosure>` points at (`/videos/<video>.mp4`). A name that is not
    /// served makes that URL answer 404.
    pub video: String,
}

impl FeedItem {
    /// An item titled `title` with guid `guid` whose enclosure is video `video`.
    pub fn new(title: &str, guid: &str, video: &str) -> Self {
        Self {
            title: title.to_owned(),
            guid: guid.to_owned(),
            video: video.to_owned(),
        }
    }
}

/// A served video.
#[derive(Clone)]
struct Video {
    content: Bytes,
    /// `(chunk size, delay between chunks)` for a slow video.
    slow: Option<(usize, Duration)>,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<String>>,
    videos: Mutex<HashMap<String, Video>>,
    feeds: Mutex<HashMap<String, String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running media server; stops accepting connections when dropped.
pub struct MediaServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for MediaServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for MediaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MediaServer {
    /// Starts an empty server on `127.0.0.1:0`, on the current Tokio runtime.
    ///
    /// Panics if it cannot bind.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/videos/{file}", get(serve_video))
            .route("/feeds/{file}", get(serve_feed))
            .route("/redirect", get(redirect))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(Arc::clone(&shared), record))
            .with_state(Arc::clone(&shared));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|err| panic!("bind the media server on 127.0.0.1: {err}"));
        let addr = listener
            .local_addr()
            .expect("the media server's listener has an address");
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(error = %err, "the media server stopped");
            }
        });
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The absolute URL of `path` (which starts with `/`), e.g. `url("/feeds/a.xml")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// The URL of video `name`: `<base>/videos/<name>.mp4`.
    pub fn video_url(&self, name: &str) -> String {
        self.url(&format!("/videos/{name}.mp4"))
    }

    /// The URL of feed `name`: `<base>/feeds/<name>.xml`.
    pub fn feed_url(&self, name: &str) -> String {
        self.url(&format!("/feeds/{name}.xml"))
    }

    /// Serves `/videos/<name>.mp4`: [`video_content`]`(name, bytes)`, at full speed. `name` must
    /// be URL-safe (ASCII letters, digits, `-`, `_`, `.`). Replaces a video of the same name.
    pub fn add_video(&self, name: &str, bytes: usize) {
        self.insert_video(name, bytes, None);
    }

    /// Like [`add_video`](Self::add_video), but the body is sent `chunk` bytes at a time with
    /// `delay` before every chunk after the first (for cancelling mid-download).
    pub fn add_slow_video(&self, name: &str, bytes: usize, chunk: usize, delay: Duration) {
        assert!(chunk > 0, "a slow video needs a chunk size above 0");
        self.insert_video(name, bytes, Some((chunk, delay)));
    }

    fn insert_video(&self, name: &str, bytes: usize, slow: Option<(usize, Duration)>) {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "video name `{name}` is not URL-safe"
        );
        let video = Video {
            content: Bytes::from(video_content(name, bytes)),
            slow,
        };
        lock(&self.shared.videos).insert(format!("{name}.mp4"), video);
    }

    /// The bytes served for video `name`, if it is served.
    pub fn video_bytes(&self, name: &str) -> Option<Vec<u8>> {
        lock(&self.shared.videos)
            .get(&format!("{name}.mp4"))
            .map(|v| v.content.to_vec())
    }

    /// Serves `/feeds/<name>.xml`: an RSS 2.0 feed whose channel title is `title`, with one
    /// `<item>` per entry of `items` (`<title>`, `<guid isPermaLink="false">`,
    /// `<enclosure url="<base>/videos/<video>.mp4" type="video/mp4" length="<bytes>"/>`; the
    /// length is 0 for a video not served at the time of this call). Replaces a feed of the same
    /// name.
    pub fn add_feed(&self, name: &str, title: &str, items: &[FeedItem]) {
        let videos = lock(&self.shared.videos);
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        xml.push_str("<rss version=\"2.0\">\n<channel>\n");
        xml.push_str(&format!("<title>{}</title>\n", escape(title)));
        xml.push_str(&format!("<link>{}/</link>\n", self.base_url()));
        xml.push_str(&format!(
            "<description>{} (MediaNest test feed)</description>\n",
            escape(title)
        ));
        for item in items {
            let length = videos
                .get(&format!("{}.mp4", item.video))
                .map_or(0, |v| v.content.len());
            xml.push_str("<item>\n");
            xml.push_str(&format!("  <title>{}</title>\n", escape(&item.title)));
            xml.push_str(&format!(
                "  <guid isPermaLink=\"false\">{}</guid>\n",
                escape(&item.guid)
            ));
            xml.push_str(&format!(
                "  <enclosure url=\"{}\" type=\"video/mp4\" length=\"{length}\"/>\n",
                escape(&self.video_url(&item.video))
            ));
            xml.push_str("</item>\n");
        }
        xml.push_str("</channel>\n</rss>\n");
        drop(videos);
        lock(&self.shared.feeds).insert(format!("{name}.xml"), xml);
    }

    /// Every request received so far, in order: its path with the query, e.g.
    /// `/videos/a.mp4` or `/redirect?to=…`.
    pub fn received(&self) -> Vec<String> {
        lock(&self.shared.received).clone()
    }
}

/// The deterministic content of video `name`, exactly `len` bytes: a 24-byte `ftyp` box
/// (`isom`, minor version 0x200, compatible `isom`, `mp41`; cut short if `len` < 24) followed
/// by pseudo-random filler seeded by `name`.
pub fn video_content(name: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[0, 0, 0, 24]);
    out.extend_from_slice(b"ftypisom");
    out.extend_from_slice(&[0, 0, 2, 0]);
    out.extend_from_slice(b"isommp41");
    out.truncate(len);
    // FNV-1a of the name seeds a splitmix64 stream.
    let mut state = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&z.to_le_bytes()[..take]);
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Records the request's path and query, then answers it.
async fn record(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    lock(&shared.received).push(path);
    next.run(request).await
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn redirect(Query(query): Query<BTreeMap<String, String>>) -> Response {
    let Some(to) = query.get("to") else {
        return (StatusCode::BAD_REQUEST, "missing `to`\n").into_response();
    };
    match HeaderValue::from_str(to) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "bad `to`\n").into_response(),
    }
}

async fn serve_feed(State(shared): State<Arc<Shared>>, Path(file): Path<String>) -> Response {
    let Some(xml) = lock(&shared.feeds).get(&file).cloned() else {
        return not_found().await;
    };
    (
        [(header::CONTENT_TYPE, "application/rss+xml; charset=utf-8")],
        xml,
    )
        .into_response()
}

/// A parsed single `Range: bytes=…` header.
enum RangeAsk {
    /// No (usable) range: the whole file.
    Whole,
    /// Bytes `start..=end`.
    Part(usize, usize),
    /// Cannot be satisfied.
    Unsatisfiable,
}

/// Parses `bytes=<start>-[<end>]` and `bytes=-<suffix>` against a file of `len` bytes;
/// several ranges or another unit are answered with the whole file, as RFC 9110 allows.
fn parse_range(headers: &HeaderMap, len: usize) -> RangeAsk {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAsk::Whole;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAsk::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last `last` bytes.
        return match last.parse::<usize>() {
            Ok(0) | Err(_) => RangeAsk::Unsatisfiable,
            Ok(_) if len == 0 => RangeAsk::Unsatisfiable,
            Ok(n) => RangeAsk::Part(len.saturating_sub(n), len - 1),
        };
    }
    let Ok(start) = first.parse::<usize>() else {
        return RangeAsk::Whole;
    };
    if start >= len {
        return RangeAsk::Unsatisfiable;
    }
    let end = if last.is_empty() {
        len - 1
    } else {
        match last.parse::<usize>() {
            Ok(end) if end >= start => end.min(len - 1),
            _ => return RangeAsk::Whole,
        }
    };
    RangeAsk::Part(start, end)
}

async fn serve_video(
    State(shared): State<Arc<Shared>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(video) = lock(&shared.videos).get(&file).cloned() else {
        return not_found().await;
    };
    let len = video.content.len();
    let (status, body, content_range) = match parse_range(&headers, len) {
        RangeAsk::Whole => (StatusCode::OK, video.content.clone(), None),
        RangeAsk::Part(start, end) => (
            StatusCode::PARTIAL_CONTENT,
            video.content.slice(start..=end),
            Some(format!("bytes {start}-{end}/{len}")),
        ),
        RangeAsk::Unsatisfiable => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response();
        }
    };
    let body_len = body.len();
    let body = match video.slow {
        None => Body::from(body),
        Some((chunk, delay)) => {
            let chunks = (0..body_len)
                .step_by(chunk)
                .map(move |at| body.slice(at..(at + chunk).min(body_len)))
                .enumerate();
            Body::from_stream(
                futures::stream::iter(chunks).then(move |(i, part)| async move {
                    if i > 0 {
                        tokio::time::sleep(delay).await;
                    }
                    Ok::<_, Infallible>(part)
                }),
            )
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(range) = content_range {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&range).expect("a Content-Range is ASCII"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_deterministic_and_exact() {
        let a = video_content("a", 5000);
        assert_eq!(a.len(), 5000);
        assert_eq!(&a[4..8], b"ftyp");
        assert_eq!(a, video_content("a", 5000));
        assert_ne!(a, video_content("b", 5000));
        assert_eq!(video_content("a", 10).len(), 10);
        assert!(video_content("a", 0).is_empty());
    }

    #[test]
    fn ranges_parse() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(matches!(
            parse_range(&HeaderMap::new(), 10),
            RangeAsk::Whole
        ));
        assert!(matches!(
            parse_range(&h("bytes=0-"), 10),
            RangeAsk::Part(0, 9)
        ));
        assert!(matches!(
            parse_range(&h("bytes=2-4"), 10),
            RangeAsk::Part(2, 4)
        ));
        assert!(matches!(
            parse_range(&h("bytes=2-400"), 10),
            RangeAsk::Part(2, 9)
        ));
        assert!(matches!(
            parse_range(&h("bytes=-3"), 10),
            RangeAsk::Part(7, 9)
        ));
        assert!(matches!(
            parse_range(&h("bytes=10-"), 10),
            RangeAsk::Unsatisfiable
        ));
        assert!(matches!(
            parse_range(&h("bytes=0-1,4-5"), 10),
            RangeAsk::Whole
        ));
    }
}
