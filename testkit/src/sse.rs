//! A small Server-Sent Events client for tests of `GET /api/v1/stream`: opens the stream
//! with a bearer token (and optionally `Last-Event-ID`), and parses frames as the
//! WHATWG EventSource does (`id`, `event`, `data` joined with newlines, `retry`, `:`
//! comments; a blank line ends a frame; `\n`, `\r\n` and `\r` end lines).
//!
//! Every stream opens with a `ready` frame whose id is where it starts
//! ([`SseStream::ready`] reads it).

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::Value;

use crate::app::TestApp;

/// The event name of the opening frame of every stream.
pub const READY: &str = "ready";

/// One dispatched frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseFrame {
    /// The `id` field, when the frame had one.
    pub id: Option<String>,
    /// The `event` field, when the frame had one.
    pub event: Option<String>,
    /// The `data` lines, joined with `\n`.
    pub data: String,
    /// The `retry` field, when the frame had one.
    pub retry: Option<u64>,
}

impl SseFrame {
    /// `data` as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }

    /// `id` as a global position.
    pub fn position(&self) -> Option<i64> {
        self.id.as_deref().and_then(|id| id.parse().ok())
    }

    /// The event name, `message` when the frame had none (as EventSource names it).
    pub fn event_name(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    /// Whether this is the opening `ready` frame.
    pub fn is_ready(&self) -> bool {
        self.event.as_deref() == Some(READY)
    }
}

/// An incremental parser of an event stream.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    frame: SseFrame,
    has_data: bool,
    has_fields: bool,
    comments: usize,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `bytes` and returns the frames they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseFrame> {
        let mut frames = Vec::new();
        for &byte in bytes {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(frame) = self.line_done(&line) {
                        frames.push(frame);
                    }
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(byte);
                }
            }
        }
        frames
    }

    /// How many comment lines (keep-alives) were seen.
    pub fn comments(&self) -> usize {
        self.comments
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseFrame> {
        if line.is_empty() {
            let frame = std::mem::take(&mut self.frame);
            let dispatch = self.has_data || self.has_fields;
            self.has_data = false;
            self.has_fields = false;
            return dispatch.then_some(frame);
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with(':') {
            self.comments += 1;
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.frame.data.push('\n');
                }
                self.frame.data.push_str(value);
                self.has_data = true;
            }
            "event" => {
                self.frame.event = Some(value.to_string());
                self.has_fields = true;
            }
            "id" if !value.contains('\0') => {
                self.frame.id = Some(value.to_string());
                self.has_fields = true;
            }
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.frame.retry = Some(ms);
                    self.has_fields = true;
                }
            }
            _ => {}
        }
        None
    }
}

/// An open event stream.
#[derive(Debug)]
pub struct SseStream {
    response: reqwest::Response,
    parser: SseParser,
    pending: VecDeque<SseFrame>,
    ended: bool,
}

impl SseStream {
    /// Reads the frames of `response` (which must be a 200 `text/event-stream`).
    ///
    /// # Panics
    /// When it is not.
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200, "the stream opens");
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("text/event-stream"),
            "content type {content_type}"
        );
        Self {
            response,
            parser: SseParser::new(),
            pending: VecDeque::new(),
            ended: false,
        }
    }

    /// Opens `GET /api/v1/stream` (plus `query`, e.g. `?last_event_id=3`) as the holder of
    /// `token`, with `Last-Event-ID: last_event_id` when given; answers the response
    /// whatever its status.
    pub async fn request(
        app: &TestApp,
        token: &str,
        query: &str,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        Self::request_url(
            &app.http,
            &app.url(&format!("/api/v1/stream{query}")),
            token,
            last_event_id,
        )
        .await
    }

    /// `GET url` with `token` as bearer and `Last-Event-ID: last_event_id` when given.
    pub async fn request_url(
        http: &reqwest::Client,
        url: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        let mut request = http.get(url).bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        request.send().await.expect("GET reaches the app")
    }

    /// Opens the stream as the holder of `token` (see [`SseStream::request`]).
    ///
    /// # Panics
    /// When it does not answer 200 `text/event-stream`.
    pub async fn open(app: &TestApp, token: &str, last_event_id: Option<&str>) -> Self {
        Self::new(Self::request(app, token, "", last_event_id).await)
    }

    /// The response headers.
    pub fn headers(&self) -> &reqwest::header::HeaderMap {
        self.response.headers()
    }

    /// How many comment lines (keep-alives) were seen so far.
    pub fn comments(&self) -> usize {
        self.parser.comments()
    }

    /// The next frame; `None` when the server ended the stream.
    ///
    /// # Panics
    /// When reading fails.
    pub async fn next(&mut self) -> Option<SseFrame> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Some(frame);
            }
            if self.ended {
                return None;
            }
            match self.response.chunk().await.expect("read the stream") {
                Some(bytes) => self.pending.extend(self.parser.feed(&bytes)),
                None => self.ended = true,
            }
        }
    }

    /// The next frame, waiting at most `timeout`: `Err` when none came in time, `Ok(None)`
    /// when the stream ended.
    ///
    /// # Errors
    /// [`tokio::time::error::Elapsed`] when no frame came in time.
    pub async fn next_within(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<SseFrame>, tokio::time::error::Elapsed> {
        tokio::time::timeout(timeout, self.next()).await
    }

    /// Reads the opening `ready` frame and answers its id (the position the stream starts
    /// after; `0`: the start of the log).
    ///
    /// # Panics
    /// When the first frame does not come within 20 s, is not `ready`, or its id and its
    /// `data.position` are not the same integer.
    pub async fn ready(&mut self) -> i64 {
        let frame = self
            .next_within(Duration::from_secs(20))
            .await
            .expect("the ready frame comes at once")
            .expect("the stream opens with a frame");
        assert!(frame.is_ready(), "the first frame is `ready`: {frame:#?}");
        let position = frame.position().expect("`ready` has an integer id");
        assert_eq!(
            frame.json()["position"].as_i64(),
            Some(position),
            "`ready` data names its id: {frame:#?}"
        );
        position
    }

    /// Reads frames until `done` holds for one (returned with everything before it), at
    /// most `timeout` in all.
    ///
    /// # Panics
    /// When the time runs out or the stream ends first.
    pub async fn until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&SseFrame) -> bool,
    ) -> Vec<SseFrame> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Ok(Some(frame)) => {
                    let stop = done(&frame);
                    frames.push(frame);
                    if stop {
                        return frames;
                    }
                }
                Ok(None) => panic!("the stream ended; frames so far: {frames:#?}"),
                Err(_) => panic!("timed out after {timeout:?}; frames so far: {frames:#?}"),
            }
        }
    }

    /// Every frame that arrives within `quiet` of the previous one.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<SseFrame> {
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = self.next_within(quiet).await {
            frames.push(frame);
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_parsed_as_eventsource_parses_them() {
        let mut parser = SseParser::new();
        let mut frames =
            parser.feed(b": keep-alive\n\nid: 7\nevent: medianest.x.y.v1\ndata: {\"a\"");
        assert!(frames.is_empty());
        frames.extend(
            parser.feed(b":1}\r\n\r\nevent: progress\ndata:one\ndata: two\r\rretry: 10\n\n"),
        );
        assert_eq!(
            frames,
            vec![
                SseFrame {
                    id: Some("7".into()),
                    event: Some("medianest.x.y.v1".into()),
                    data: "{\"a\":1}".into(),
                    retry: None,
                },
                SseFrame {
                    id: None,
                    event: Some("progress".into()),
                    data: "one\ntwo".into(),
                    retry: None,
                },
                SseFrame {
                    retry: Some(10),
                    ..SseFrame::default()
                },
            ]
        );
        assert_eq!(frames[0].position(), Some(7));
        assert_eq!(frames[0].json()["a"], 1);
        assert_eq!(parser.comments(), 1);
    }
}
