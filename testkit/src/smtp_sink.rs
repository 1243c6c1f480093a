//! A real, in-process SMTP server that accepts and records mail, for tests of MediaNest's e-mail
//! notifications.
//!
//! [`SmtpSink::start`] listens on `127.0.0.1` (random port, [`SmtpSink::port`]); point MediaNest's
//! SMTP settings at it without TLS (with `lettre` 0.11:
//! `SmtpTransport::builder_dangerous("127.0.0.1").port(sink.port())`, optionally with
//! credentials). Every connection runs in its own task and speaks the part of SMTP that a
//! submission client uses (RFC 5321, with RFC 4954 AUTH, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8,
//! RFC 1870 SIZE and RFC 2034 enhanced status codes):
//!
//! - the greeting `220 smtp-sink.medianest.test ESMTP …` (or the reply set with
//!   [`SmtpSink::reply_to_connect`], after which the connection is closed);
//! - `EHLO <domain>` answers a multi-line 250 that advertises `PIPELINING`, `SIZE 10485760`,
//!   `8BITMIME`, `SMTPUTF8`, `ENHANCEDSTATUSCODES` and `AUTH PLAIN LOGIN`; `HELO <domain>` a
//!   single 250 (no extensions, so no `AUTH`);
//! - `AUTH PLAIN [<initial response>]` (RFC 4616, inline or after a `334 ` continuation) and
//!   `AUTH LOGIN [<user>]` (base64 challenges `334 VXNlcm5hbWU6` / `334 UGFzc3dvcmQ6`) answer
//!   `235 2.7.0`; `*` cancels (501); an unknown mechanism is 504; credentials that differ from
//!   [`SmtpSink::require_auth`] are 535;
//! - `MAIL FROM:<addr> [BODY=7BIT|8BITMIME] [SMTPUTF8] [SIZE=n]` (250 2.1.0; 530 when
//!   authentication is required and missing; 552 when `SIZE` is over the limit),
//!   `RCPT TO:<addr>` (250 2.1.5, or the reply set with [`SmtpSink::reply_to_rcpt`]),
//!   `DATA` (354, then the message up to `<CRLF>.<CRLF>`, dot-unstuffed, then 250 2.0.0 — or the
//!   reply set with [`SmtpSink::reply_to_data`]; 552 over 10 MiB), `RSET`, `NOOP`, `VRFY` (252),
//!   `HELP` (214) and `QUIT` (221, then the connection closes);
//! - commands out of order answer 503 (554 for `DATA` after every recipient was refused),
//!   malformed ones 500/501, anything else `502 5.5.2`.
//!
//! Accepted messages are recorded as [`ReceivedMail`] ([`SmtpSink::messages`],
//! [`SmtpSink::wait_for`]); the helpers on [`ReceivedMail`] decode them with the `mail-parser`
//! crate. Client mistakes that a strict server would refuse or that break mail on the way —
//! out-of-sequence commands, bare LF line endings (RFC 5321 §2.3.8), lines over 1000 octets
//! (§4.5.3.1.6), 8-bit data without `BODY=8BITMIME`, non-ASCII addresses without `SMTPUTF8`,
//! `STARTTLS` that was never advertised — are listed in [`SmtpSink::violations`]; a test that
//! drives MediaNest against the sink should end with that list empty.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use mail_parser::{Address, HeaderName, HeaderValue, MessageParser, MimeHeaders, PartType};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Largest message the sink takes (octets after dot-unstuffing), as advertised with `SIZE`.
pub const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;

/// The host name the sink greets with.
pub const HOSTNAME: &str = "smtp-sink.medianest.test";

/// Longest command line, with its CRLF (RFC 5321 §4.5.3.1.4).
const MAX_COMMAND_LINE: usize = 512;

/// Longest line of message text, with its CRLF (RFC 5321 §4.5.3.1.6).
const MAX_TEXT_LINE: usize = 1000;

/// Longest base64 line accepted during an AUTH exchange (RFC 4954 §4 allows 12288 octets).
const MAX_AUTH_LINE: usize = 12288;

/// One message the sink accepted: the envelope and the message as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The `MAIL FROM` reverse path without angle brackets (`""` for the null sender `<>`).
    pub mail_from: String,
    /// The `RCPT TO` forward paths that were accepted, without angle brackets, in order.
    pub rcpt_to: Vec<String>,
    /// The `(user, password)` the session authenticated with, if it did (for `AUTH PLAIN`, the
    /// authentication identity; an authorization identity is not kept).
    pub auth: Option<(String, String)>,
    /// The message (RFC 5322 headers and body) after dot-unstuffing, lines ending in CRLF,
    /// without the terminating `.` line. Bytes that are not UTF-8 are replaced with U+FFFD.
    pub data: String,
    /// The domain the client gave with `EHLO`/`HELO`.
    pub helo: String,
    /// The `MAIL FROM` parameters as sent, e.g. `["BODY=8BITMIME", "SMTPUTF8"]`.
    pub mail_params: Vec<String>,
}

impl ReceivedMail {
    /// The message parsed by `mail-parser` (RFC 5322 / MIME), or `None` when it cannot be
    /// parsed at all. Unregistered headers are decoded as RFC 2047 text too.
    pub fn parsed(&self) -> Option<mail_parser::Message<'_>> {
        parser().parse(self.data.as_bytes())
    }

    /// The first header called `name` (case-insensitive), decoded to text: RFC 2047 encoded
    /// words decoded and folding removed (e.g. `Subject`); addresses as
    /// `Name <addr>, addr2` (`From`, `To`, `Cc`, …); dates as RFC 3339; `Content-Type` as
    /// `type/subtype; name=value`; message ids (`Message-ID`, `References`, `In-Reply-To`) as
    /// written, with angle brackets. `None` when the message has no such header.
    pub fn header(&self, name: &str) -> Option<String> {
        let message = self.parsed()?;
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "message-id" | "references" | "in-reply-to" | "resent-message-id" | "content-id"
        ) {
            return message
                .header_raw(name)
                .map(|raw| unfold(raw).trim().to_string());
        }
        let value = message.header(name)?;
        render_header(value).or_else(|| message.header_raw(name).map(unfold))
    }

    /// Every header called `name` (case-insensitive), decoded like [`header`](Self::header), in
    /// order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        let Some(message) = self.parsed() else {
            return Vec::new();
        };
        let wanted = HeaderName::parse(name.to_string());
        message
            .headers()
            .iter()
            .filter(|header| Some(&header.name) == wanted.as_ref())
            .filter_map(|header| render_header(&header.value))
            .collect()
    }

    /// The first `text/plain` body part (a plain message's body, or the `text/plain`
    /// alternative of a multipart message), with its transfer encoding and charset decoded.
    /// `None` when the message has no `text/plain` part (e.g. HTML only).
    pub fn text_body(&self) -> Option<String> {
        let message = self.parsed()?;
        let text = message.text_bodies().find_map(|part| match &part.body {
            PartType::Text(text) if is_plain_text(part) => Some(text.to_string()),
            _ => None,
        });
        text
    }

    /// The first `text/html` body part, decoded. `None` when the message has none (a plain
    /// text message is **not** converted to HTML).
    pub fn html_body(&self) -> Option<String> {
        let message = self.parsed()?;
        let html = message.html_bodies().find_map(|part| match &part.body {
            PartType::Html(html) => Some(html.to_string()),
            _ => None,
        });
        html
    }

    /// The file names of the message's attachments, in order (`None` for an unnamed one).
    pub fn attachment_names(&self) -> Vec<Option<String>> {
        let Some(message) = self.parsed() else {
            return Vec::new();
        };
        let names = message
            .attachments()
            .map(|part| part.attachment_name().map(str::to_string))
            .collect();
        names
    }
}

/// A running SMTP sink on `127.0.0.1` (random port). Stops when dropped: the listener and every
/// open connection are closed.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.server.abort();
    }
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SmtpSink {
    /// Starts a sink that accepts every message, with or without authentication.
    ///
    /// # Panics
    ///
    /// When no port can be bound on `127.0.0.1`.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMTP sink on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("the SMTP sink's listener has an address");
        let shared = Arc::new(Shared {
            accepting: AtomicBool::new(true),
            connections: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
        });
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown.clone()));
        Self {
            addr,
            shared,
            shutdown,
            server,
        }
    }

    /// The port the sink listens on (host `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address the sink listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message accepted so far, in the order their `DATA` completed.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.lock().messages.clone()
    }

    /// Waits until at least `n` messages were accepted and returns all of them.
    ///
    /// # Panics
    ///
    /// When fewer than `n` arrived within `timeout`; the message says what did arrive and
    /// which protocol violations were seen.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let state = self.shared.lock();
                if state.messages.len() >= n {
                    return state.messages.clone();
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let state = self.shared.lock();
                let summary: Vec<String> = state
                    .messages
                    .iter()
                    .map(|mail| format!("from <{}> to {:?}", mail.mail_from, mail.rcpt_to))
                    .collect();
                panic!(
                    "the SMTP sink received {} of {n} messages within {timeout:?} \
                     ({} connections); received: {summary:?}; violations: {:?}",
                    state.messages.len(),
                    self.shared.connections.load(Ordering::SeqCst),
                    state.violations,
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Protocol mistakes seen so far, as `"<connection n>: <problem>"`.
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// How many TCP connections were accepted so far, including those closed at once while
    /// [`set_accepting`](Self::set_accepting) was `false` — i.e. how often a client tried.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Answers every later `RCPT TO` with `code` and `text` instead of `250 2.1.5 Ok`, e.g.
    /// `(450, "4.2.1 mailbox busy")` (transient) or `(550, "5.1.1 no such user")` (permanent);
    /// `None` accepts recipients again. A recipient answered with anything but 2xx is not kept.
    pub fn reply_to_rcpt(&self, reply: Option<(u16, String)>) {
        self.shared.lock().rcpt_reply = reply;
    }

    /// Answers every later end of `DATA` with `code` and `text` instead of
    /// `250 2.0.0 Ok: queued`, e.g. `(451, "4.3.0 try again later")` or
    /// `(554, "5.6.0 message rejected")`; the message is kept only for a 2xx reply. `None`
    /// restores the default.
    pub fn reply_to_data(&self, reply: Option<(u16, String)>) {
        self.shared.lock().data_reply = reply;
    }

    /// Greets later connections with `code` and `text` instead of 220 and then closes them,
    /// e.g. `(421, "4.3.2 service not available")`; `None` restores the normal greeting.
    pub fn reply_to_connect(&self, reply: Option<(u16, String)>) {
        self.shared.lock().connect_reply = reply;
    }

    /// Requires `AUTH` with exactly these credentials before `MAIL FROM` (530 without, 535 for
    /// other credentials); `None` (the default) accepts mail with or without authentication
    /// and any credentials.
    pub fn require_auth(&self, credentials: Option<(String, String)>) {
        self.shared.lock().required_auth = credentials;
    }

    /// `false` makes the sink accept new TCP connections and close them at once, before the
    /// greeting, like a server that is down; `true` (the default) serves them. Connections
    /// already open are not affected.
    pub fn set_accepting(&self, accepting: bool) {
        self.shared.accepting.store(accepting, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state.
// ---------------------------------------------------------------------------------------------

struct Shared {
    accepting: AtomicBool,
    connections: AtomicUsize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    messages: Vec<ReceivedMail>,
    violations: Vec<String>,
    rcpt_reply: Option<(u16, String)>,
    data_reply: Option<(u16, String)>,
    connect_reply: Option<(u16, String)>,
    required_auth: Option<(String, String)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn violation(&self, connection: usize, problem: impl std::fmt::Display) {
        self.lock()
            .violations
            .push(format!("connection {connection}: {problem}"));
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "the SMTP sink could not accept a connection");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let number = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        if !shared.accepting.load(Ordering::SeqCst) {
            drop(stream);
            continue;
        }
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                result = serve_connection(stream, &shared, number) => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, connection = number, "SMTP sink connection ended");
                    }
                }
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// One SMTP session.
// ---------------------------------------------------------------------------------------------

/// The envelope of the transaction under way (after `MAIL FROM`).
struct Transaction {
    mail_from: String,
    params: Vec<String>,
    eight_bit: bool,
    smtputf8: bool,
    rcpt_to: Vec<String>,
    rcpt_attempted: bool,
}

#[derive(Default)]
struct Session {
    helo: Option<String>,
    esmtp: bool,
    auth: Option<(String, String)>,
    transaction: Option<Transaction>,
    reported_bare_lf: bool,
}

/// One line as read from the client.
struct Line {
    /// The line without its terminator, at most the kept length.
    content: Vec<u8>,
    /// Whether it ended in CRLF (rather than a bare LF).
    crlf: bool,
    /// Its full length in octets, terminator included.
    length: usize,
}

/// Reads one line ending in LF, keeping at most `max_keep` octets of it. `None` at end of input
/// (including a last line without LF: the client went away mid-line).
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max_keep: usize,
) -> io::Result<Option<Line>> {
    let mut content = Vec::new();
    let mut length = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(None);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..=at], true),
            None => (available, false),
        };
        let room = max_keep.saturating_sub(content.len());
        content.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let taken = chunk.len();
        length += taken;
        reader.consume(taken);
        if done {
            break;
        }
    }
    let mut crlf = false;
    if content.last() == Some(&b'\n') {
        content.pop();
        if content.last() == Some(&b'\r') {
            content.pop();
            crlf = true;
        }
    }
    Ok(Some(Line {
        content,
        crlf,
        length,
    }))
}

async fn reply<W: AsyncWrite + Unpin>(writer: &mut W, code: u16, text: &str) -> io::Result<()> {
    writer
        .write_all(format!("{code} {text}\r\n").as_bytes())
        .await?;
    writer.flush().await
}

async fn reply_lines<W: AsyncWrite + Unpin>(
    writer: &mut W,
    code: u16,
    lines: &[&str],
) -> io::Result<()> {
    let mut out = String::new();
    for (index, line) in lines.iter().enumerate() {
        let separator = if index + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&format!("{code}{separator}{line}\r\n"));
    }
    writer.write_all(out.as_bytes()).await?;
    writer.flush().await
}

async fn serve_connection(stream: TcpStream, shared: &Shared, number: usize) -> io::Result<()> {
    let (read, mut writer) = stream.into_split();
    let mut reader = BufReader::new(read);
    let connect_reply = shared.lock().connect_reply.clone();
    if let Some((code, text)) = connect_reply {
        reply(&mut writer, code, &text).await?;
        return writer.shutdown().await;
    }
    reply(
        &mut writer,
        220,
        &format!("{HOSTNAME} ESMTP MediaNest test sink ready"),
    )
    .await?;
    let mut session = Session::default();
    loop {
        let Some(line) = read_line(&mut reader, MAX_COMMAND_LINE).await? else {
            return Ok(());
        };
        if line.length > MAX_COMMAND_LINE {
            shared.violation(
                number,
                format!(
                    "a command line of {} octets (RFC 5321 §4.5.3.1.4 allows 512)",
                    line.length
                ),
            );
            reply(&mut writer, 500, "5.5.2 Line too long").await?;
            continue;
        }
        if !line.crlf && !session.reported_bare_lf {
            session.reported_bare_lf = true;
            shared.violation(
                number,
                "a command line ended in a bare LF (RFC 5321 §2.3.8 requires CRLF)",
            );
        }
        let text = String::from_utf8_lossy(&line.content).into_owned();
        let (verb, argument) = match text.split_once(' ') {
            Some((verb, argument)) => (verb.to_ascii_uppercase(), argument.trim().to_string()),
            None => (text.trim().to_ascii_uppercase(), String::new()),
        };
        match verb.as_str() {
            "EHLO" | "HELO" => {
                if argument.is_empty() {
                    shared.violation(number, format!("{verb} without a domain"));
                    reply(&mut writer, 501, &format!("5.5.4 Syntax: {verb} hostname")).await?;
                    continue;
                }
                session.helo = Some(argument.clone());
                session.esmtp = verb == "EHLO";
                session.transaction = None;
                if verb == "EHLO" {
                    let greeting = format!("{HOSTNAME} greets {argument}");
                    let size = format!("SIZE {MAX_MESSAGE_BYTES}");
                    reply_lines(
                        &mut writer,
                        250,
                        &[
                            greeting.as_str(),
                            "PIPELINING",
                            size.as_str(),
                            "8BITMIME",
                            "SMTPUTF8",
                            "ENHANCEDSTATUSCODES",
                            "AUTH PLAIN LOGIN",
                        ],
                    )
                    .await?;
                } else {
                    reply(&mut writer, 250, HOSTNAME).await?;
                }
            }
            "AUTH" => {
                auth(
                    &mut reader,
                    &mut writer,
                    shared,
                    number,
                    &mut session,
                    &argument,
                )
                .await?;
            }
            "MAIL" => {
                let (code, text) = mail_from(shared, number, &mut session, &argument);
                reply(&mut writer, code, &text).await?;
            }
            "RCPT" => {
                let (code, text) = rcpt_to(shared, number, &mut session, &argument);
                reply(&mut writer, code, &text).await?;
            }
            "DATA" => {
                data(&mut reader, &mut writer, shared, number, &mut session).await?;
            }
            "RSET" => {
                session.transaction = None;
                reply(&mut writer, 250, "2.0.0 Ok").await?;
            }
            "NOOP" => reply(&mut writer, 250, "2.0.0 Ok").await?,
            "VRFY" => {
                reply(
                    &mut writer,
                    252,
                    "2.5.2 Cannot VRFY user, but will accept message",
                )
                .await?;
            }
            "HELP" => {
                reply(
                    &mut writer,
                    214,
                    "2.0.0 EHLO HELO AUTH MAIL RCPT DATA RSET NOOP VRFY QUIT",
                )
                .await?;
            }
            "QUIT" => {
                reply(&mut writer, 221, "2.0.0 Bye").await?;
                return writer.shutdown().await;
            }
            "STARTTLS" => {
                shared.violation(number, "STARTTLS although the sink does not advertise it");
                reply(&mut writer, 502, "5.5.1 STARTTLS not available").await?;
            }
            "" => {
                shared.violation(number, "an empty command line");
                reply(&mut writer, 500, "5.5.2 Error: bad syntax").await?;
            }
            _ => {
                shared.violation(number, format!("unknown command {verb:?}"));
                reply(&mut writer, 502, "5.5.2 Error: command not recognized").await?;
            }
        }
    }
}

/// Reads the client's answer to a `334` challenge; `None` when the client went away.
async fn read_auth_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Option<String>> {
    Ok(read_line(reader, MAX_AUTH_LINE)
        .await?
        .map(|line| String::from_utf8_lossy(&line.content).trim().to_string()))
}

fn decode_base64_text(text: &str) -> Option<String> {
    if text == "=" {
        return Some(String::new());
    }
    let bytes = BASE64.decode(text.as_bytes()).ok()?;
    String::from_utf8(bytes).ok()
}

async fn auth<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut R,
    writer: &mut W,
    shared: &Shared,
    number: usize,
    session: &mut Session,
    argument: &str,
) -> io::Result<()> {
    if !session.esmtp {
        shared.violation(number, "AUTH before EHLO (RFC 4954 §4)");
        return reply(writer, 503, "5.5.1 Error: send EHLO first").await;
    }
    if session.auth.is_some() {
        shared.violation(number, "AUTH in an authenticated session (RFC 4954 §4)");
        return reply(writer, 503, "5.5.1 Error: already authenticated").await;
    }
    if session.transaction.is_some() {
        shared.violation(number, "AUTH during a mail transaction (RFC 4954 §4)");
        return reply(writer, 503, "5.5.1 Error: MAIL transaction in progress").await;
    }
    let (mechanism, initial) = match argument.split_once(' ') {
        Some((mechanism, initial)) => (mechanism.to_ascii_uppercase(), Some(initial.trim())),
        None => (argument.to_ascii_uppercase(), None),
    };
    let credentials = match mechanism.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(initial) => initial.to_string(),
                None => {
                    reply(writer, 334, "").await?;
                    let Some(line) = read_auth_line(reader).await? else {
                        return Ok(());
                    };
                    line
                }
            };
            if response == "*" {
                return reply(writer, 501, "5.7.0 Authentication cancelled").await;
            }
            let Some(decoded) = decode_base64_text(&response) else {
                shared.violation(number, "AUTH PLAIN with a response that is not base64");
                return reply(writer, 501, "5.5.2 Cannot decode response").await;
            };
            let parts: Vec<&str> = decoded.split('\0').collect();
            if parts.len() != 3 {
                shared.violation(
                    number,
                    "AUTH PLAIN response is not authzid NUL authcid NUL passwd (RFC 4616)",
                );
                return reply(writer, 501, "5.5.2 Malformed PLAIN response").await;
            }
            (parts[1].to_string(), parts[2].to_string())
        }
        "LOGIN" => {
            let user = match initial {
                Some(initial) => initial.to_string(),
                None => {
                    reply(writer, 334, "VXNlcm5hbWU6").await?;
                    let Some(line) = read_auth_line(reader).await? else {
                        return Ok(());
                    };
                    line
                }
            };
            if user == "*" {
                return reply(writer, 501, "5.7.0 Authentication cancelled").await;
            }
            reply(writer, 334, "UGFzc3dvcmQ6").await?;
            let Some(password) = read_auth_line(reader).await? else {
                return Ok(());
            };
            if password == "*" {
                return reply(writer, 501, "5.7.0 Authentication cancelled").await;
            }
            match (decode_base64_text(&user), decode_base64_text(&password)) {
                (Some(user), Some(password)) => (user, password),
                _ => {
                    shared.violation(number, "AUTH LOGIN with a response that is not base64");
                    return reply(writer, 501, "5.5.2 Cannot decode response").await;
                }
            }
        }
        _ => {
            shared.violation(
                number,
                format!("AUTH with the unadvertised mechanism {mechanism:?}"),
            );
            return reply(writer, 504, "5.5.4 Unrecognized authentication type").await;
        }
    };
    let required = shared.lock().required_auth.clone();
    if let Some(required) = required {
        if required != credentials {
            return reply(writer, 535, "5.7.8 Authentication credentials invalid").await;
        }
    }
    session.auth = Some(credentials);
    reply(writer, 235, "2.7.0 Authentication successful").await
}

/// Splits `FROM:<path> params` / `TO:<path> params` into the path (without brackets or a source
/// route) and the parameters. `None` when it is not of that form.
fn parse_path_argument(argument: &str, keyword: &str) -> Option<(String, Vec<String>)> {
    let head = argument.get(..keyword.len() + 1)?;
    if !head.eq_ignore_ascii_case(&format!("{keyword}:")) {
        return None;
    }
    let rest = argument[keyword.len() + 1..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let mut path = &rest[..end];
    if path.starts_with('@') {
        // A source route (`@a,@b:user@c`), obsolete but allowed (RFC 5321 §4.1.2).
        path = path.split_once(':').map_or(path, |(_, mailbox)| mailbox);
    }
    let params = rest[end + 1..]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    Some((path.to_string(), params))
}

fn plausible_mailbox(path: &str) -> bool {
    match path.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !path.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

fn mail_from(
    shared: &Shared,
    number: usize,
    session: &mut Session,
    argument: &str,
) -> (u16, String) {
    if session.helo.is_none() {
        shared.violation(number, "MAIL before EHLO/HELO");
        return (503, "5.5.1 Error: send HELO/EHLO first".into());
    }
    if session.transaction.is_some() {
        shared.violation(number, "MAIL during a transaction (nested MAIL)");
        return (503, "5.5.1 Error: nested MAIL command".into());
    }
    let Some((path, params)) = parse_path_argument(argument, "FROM") else {
        shared.violation(number, format!("malformed MAIL argument {argument:?}"));
        return (501, "5.5.4 Syntax: MAIL FROM:<address>".into());
    };
    if !path.is_empty() && !plausible_mailbox(&path) {
        shared.violation(number, format!("malformed reverse path <{path}>"));
        return (501, "5.1.7 Bad sender address syntax".into());
    }
    let required = shared.lock().required_auth.is_some();
    if required && session.auth.is_none() {
        return (530, "5.7.0 Authentication required".into());
    }
    let mut eight_bit = false;
    let mut smtputf8 = false;
    for param in &params {
        let (name, value) = param.split_once('=').unwrap_or((param.as_str(), ""));
        match name.to_ascii_uppercase().as_str() {
            "BODY" if session.esmtp => match value.to_ascii_uppercase().as_str() {
                "8BITMIME" => eight_bit = true,
                "7BIT" => {}
                _ => {
                    shared.violation(number, format!("MAIL with {param}"));
                    return (501, "5.5.4 Unsupported BODY type".into());
                }
            },
            "SMTPUTF8" if session.esmtp && value.is_empty() => smtputf8 = true,
            "SIZE" if session.esmtp => match value.parse::<usize>() {
                Ok(size) if size > MAX_MESSAGE_BYTES => {
                    return (
                        552,
                        "5.3.4 Message size exceeds fixed maximum message size".into(),
                    );
                }
                Ok(_) => {}
                Err(_) => {
                    shared.violation(number, format!("MAIL with {param}"));
                    return (501, "5.5.4 Bad SIZE parameter".into());
                }
            },
            _ => {
                shared.violation(
                    number,
                    format!("MAIL with the unadvertised parameter {param}"),
                );
                return (555, "5.5.4 Unsupported option".into());
            }
        }
    }
    if !path.is_ascii() && !smtputf8 {
        shared.violation(
            number,
            format!("non-ASCII reverse path <{path}> without SMTPUTF8 (RFC 6531)"),
        );
        return (553, "5.6.7 Non-ASCII address requires SMTPUTF8".into());
    }
    session.transaction = Some(Transaction {
        mail_from: path,
        params,
        eight_bit: eight_bit || smtputf8,
        smtputf8,
        rcpt_to: Vec::new(),
        rcpt_attempted: false,
    });
    (250, "2.1.0 Ok".into())
}

fn rcpt_to(shared: &Shared, number: usize, session: &mut Session, argument: &str) -> (u16, String) {
    let Some(transaction) = session.transaction.as_mut() else {
        shared.violation(number, "RCPT without MAIL");
        return (503, "5.5.1 Error: need MAIL command".into());
    };
    let Some((path, params)) = parse_path_argument(argument, "TO") else {
        shared.violation(number, format!("malformed RCPT argument {argument:?}"));
        return (501, "5.5.4 Syntax: RCPT TO:<address>".into());
    };
    if !params.is_empty() {
        shared.violation(
            number,
            format!("RCPT with unadvertised parameters {params:?}"),
        );
        return (555, "5.5.4 Unsupported option".into());
    }
    if !plausible_mailbox(&path) && !path.eq_ignore_ascii_case("postmaster") {
        shared.violation(number, format!("malformed forward path <{path}>"));
        return (501, "5.1.3 Bad recipient address syntax".into());
    }
    if !path.is_ascii() && !transaction.smtputf8 {
        shared.violation(
            number,
            format!("non-ASCII forward path <{path}> without SMTPUTF8 (RFC 6531)"),
        );
        return (553, "5.6.7 Non-ASCII address requires SMTPUTF8".into());
    }
    transaction.rcpt_attempted = true;
    let configured = shared.lock().rcpt_reply.clone();
    match configured {
        Some((code, text)) => {
            if (200..300).contains(&code) {
                transaction.rcpt_to.push(path);
            }
            (code, text)
        }
        None => {
            transaction.rcpt_to.push(path);
            (250, "2.1.5 Ok".into())
        }
    }
}

async fn data<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut R,
    writer: &mut W,
    shared: &Shared,
    number: usize,
    session: &mut Session,
) -> io::Result<()> {
    let Some(transaction) = session.transaction.as_ref() else {
        shared.violation(number, "DATA without MAIL");
        return reply(writer, 503, "5.5.1 Error: need MAIL command").await;
    };
    if transaction.rcpt_to.is_empty() {
        if transaction.rcpt_attempted {
            shared.violation(number, "DATA after every recipient was refused");
            return reply(writer, 554, "5.5.1 Error: no valid recipients").await;
        }
        shared.violation(number, "DATA without RCPT");
        return reply(writer, 503, "5.5.1 Error: need RCPT command").await;
    }
    reply(writer, 354, "End data with <CR><LF>.<CR><LF>").await?;
    let mut message = Vec::new();
    let mut too_big = false;
    let mut reported_bare_lf = false;
    let mut reported_long_line = false;
    let mut reported_eight_bit = false;
    loop {
        let Some(line) = read_line(reader, MAX_MESSAGE_BYTES + 2).await? else {
            return Ok(());
        };
        if line.crlf && line.content == b"." {
            break;
        }
        if !line.crlf && !reported_bare_lf {
            reported_bare_lf = true;
            shared.violation(
                number,
                "message text with a bare LF line ending (RFC 5321 §2.3.8 requires CRLF)",
            );
        }
        if line.length > MAX_TEXT_LINE && !reported_long_line {
            reported_long_line = true;
            shared.violation(
                number,
                format!(
                    "a message line of {} octets (RFC 5321 §4.5.3.1.6 allows 1000 with CRLF)",
                    line.length
                ),
            );
        }
        let content = line.content.strip_prefix(b".").unwrap_or(&line.content);
        if !transaction.eight_bit && !reported_eight_bit && content.iter().any(|&b| b >= 0x80) {
            reported_eight_bit = true;
            shared.violation(
                number,
                "8-bit message text without BODY=8BITMIME (RFC 6152)",
            );
        }
        if message.len() + content.len() + 2 > MAX_MESSAGE_BYTES {
            too_big = true;
        } else {
            message.extend_from_slice(content);
            message.extend_from_slice(b"\r\n");
        }
    }
    let transaction = session
        .transaction
        .take()
        .expect("the transaction checked above");
    if too_big {
        return reply(
            writer,
            552,
            "5.3.4 Message size exceeds fixed maximum message size",
        )
        .await;
    }
    let mail = ReceivedMail {
        mail_from: transaction.mail_from,
        rcpt_to: transaction.rcpt_to,
        auth: session.auth.clone(),
        data: String::from_utf8_lossy(&message).into_owned(),
        helo: session.helo.clone().unwrap_or_default(),
        mail_params: transaction.params,
    };
    let (code, text) = {
        let mut state = shared.lock();
        match state.data_reply.clone() {
            Some((code, text)) => {
                if (200..300).contains(&code) {
                    state.messages.push(mail);
                }
                (code, text)
            }
            None => {
                state.messages.push(mail);
                let queued = state.messages.len();
                (250, format!("2.0.0 Ok: queued as {queued}"))
            }
        }
    };
    reply(writer, code, &text).await
}

// ---------------------------------------------------------------------------------------------
// Decoding with mail-parser.
// ---------------------------------------------------------------------------------------------

fn parser() -> MessageParser {
    MessageParser::new()
        .with_mime_headers()
        .with_date_headers()
        .with_address_headers()
        .with_message_ids()
        .header_text(HeaderName::Subject)
        .header_text(HeaderName::Comments)
        .header_comma_separated(HeaderName::Keywords)
        .header_received(HeaderName::Received)
        .header_raw(HeaderName::MimeVersion)
        .default_header_text()
}

fn is_plain_text(part: &mail_parser::MessagePart<'_>) -> bool {
    match part.content_type() {
        None => true,
        Some(content_type) => {
            content_type.ctype().eq_ignore_ascii_case("text")
                && content_type
                    .subtype()
                    .is_none_or(|subtype| subtype.eq_ignore_ascii_case("plain"))
        }
    }
}

fn unfold(raw: &str) -> String {
    raw.replace("\r\n", "").replace('\n', "").trim().to_string()
}

fn render_addr(addr: &mail_parser::Addr<'_>) -> String {
    match (addr.name(), addr.address()) {
        (Some(name), Some(address)) => format!("{name} <{address}>"),
        (None, Some(address)) => address.to_string(),
        (Some(name), None) => name.to_string(),
        (None, None) => String::new(),
    }
}

fn render_header(value: &HeaderValue<'_>) -> Option<String> {
    match value {
        HeaderValue::Text(text) => Some(text.to_string()),
        HeaderValue::TextList(list) => Some(
            list.iter()
                .map(|item| item.as_ref())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        HeaderValue::Address(Address::List(list)) => {
            Some(list.iter().map(render_addr).collect::<Vec<_>>().join(", "))
        }
        HeaderValue::Address(Address::Group(groups)) => Some(
            groups
                .iter()
                .map(|group| {
                    let members: Vec<String> = group.addresses.iter().map(render_addr).collect();
                    match &group.name {
                        Some(name) => format!("{name}: {};", members.join(", ")),
                        None => members.join(", "),
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        HeaderValue::DateTime(date) => Some(date.to_rfc3339()),
        HeaderValue::ContentType(content_type) => {
            let mut out = content_type.ctype().to_string();
            if let Some(subtype) = content_type.subtype() {
                out.push('/');
                out.push_str(subtype);
            }
            for attribute in content_type.attributes().unwrap_or_default() {
                out.push_str(&format!("; {}={}", attribute.name, attribute.value));
            }
            Some(out)
        }
        HeaderValue::Received(_) | HeaderValue::Empty => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Sends `line` and reads the reply (all its lines), returning it.
    async fn exchange(
        reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
        writer: &mut tokio::net::tcp::OwnedWriteHalf,
        line: &str,
    ) -> String {
        if !line.is_empty() {
            writer.write_all(line.as_bytes()).await.unwrap();
        }
        let mut reply = String::new();
        loop {
            let mut current = String::new();
            reader.read_line(&mut current).await.unwrap();
            reply.push_str(&current);
            if current.len() < 4 || current.as_bytes()[3] != b'-' {
                return reply;
            }
        }
    }

    #[tokio::test]
    async fn accepts_a_message_from_a_scripted_client() {
        let sink = SmtpSink::start().await;
        let stream = TcpStream::connect(sink.addr()).await.unwrap();
        let (read, mut writer) = stream.into_split();
        let mut reader = BufReader::new(read);
        assert!(exchange(&mut reader, &mut writer, "")
            .await
            .starts_with("220 "));
        let ehlo = exchange(&mut reader, &mut writer, "EHLO client.test\r\n").await;
        assert!(ehlo.contains("250-AUTH PLAIN LOGIN") || ehlo.contains("250 AUTH PLAIN LOGIN"));
        assert!(ehlo.contains("8BITMIME"));
        let plain = BASE64.encode(b"\0alice\0s3cret");
        let auth = exchange(&mut reader, &mut writer, &format!("AUTH PLAIN {plain}\r\n")).await;
        assert!(auth.starts_with("235 "), "{auth}");
        let mail = exchange(
            &mut reader,
            &mut writer,
            "MAIL FROM:<noreply@medianest.test> BODY=8BITMIME\r\n",
        )
        .await;
        assert!(mail.starts_with("250 "), "{mail}");
        let rcpt = exchange(&mut reader, &mut writer, "RCPT TO:<bob@example.test>\r\n").await;
        assert!(rcpt.starts_with("250 "), "{rcpt}");
        let data = exchange(&mut reader, &mut writer, "DATA\r\n").await;
        assert!(data.starts_with("354 "), "{data}");
        let message = concat!(
            "From: MediaNest <noreply@medianest.test>\r\n",
            "To: Bob <bob@example.test>\r\n",
            "Subject: =?UTF-8?B?w5xiZXIgZGVuIEZpbG0=?=\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: multipart/alternative; boundary=\"b1\"\r\n",
            "\r\n",
            "--b1\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Content-Transfer-Encoding: quoted-printable\r\n",
            "\r\n",
            "Your request is =C3=BCber-ready.\r\n",
            "..and a dot-stuffed line\r\n",
            "--b1\r\n",
            "Content-Type: text/html; charset=utf-8\r\n",
            "\r\n",
            "<p>ready</p>\r\n",
            "--b1--\r\n",
            ".\r\n",
        );
        let queued = exchange(&mut reader, &mut writer, message).await;
        assert!(queued.starts_with("250 "), "{queued}");
        sink.reply_to_rcpt(Some((550, "5.1.1 no such user".into())));
        exchange(&mut reader, &mut writer, "MAIL FROM:<>\r\n").await;
        let refused = exchange(
            &mut reader,
            &mut writer,
            "RCPT TO:<nobody@example.test>\r\n",
        )
        .await;
        assert!(refused.starts_with("550 5.1.1 no such user"), "{refused}");
        let rset = exchange(&mut reader, &mut writer, "RSET\r\n").await;
        assert!(rset.starts_with("250 "), "{rset}");
        let quit = exchange(&mut reader, &mut writer, "QUIT\r\n").await;
        assert!(quit.starts_with("221 "), "{quit}");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();

        let mails = sink.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(mails.len(), 1);
        let mail = &mails[0];
        assert_eq!(mail.mail_from, "noreply@medianest.test");
        assert_eq!(mail.rcpt_to, vec!["bob@example.test".to_string()]);
        assert_eq!(mail.auth, Some(("alice".into(), "s3cret".into())));
        assert_eq!(mail.helo, "client.test");
        assert_eq!(mail.header("subject").as_deref(), Some("Über den Film"));
        assert_eq!(
            mail.header("From").as_deref(),
            Some("MediaNest <noreply@medianest.test>")
        );
        let text = mail.text_body().unwrap();
        assert!(text.contains("Your request is über-ready."), "{text}");
        assert!(text.contains("\n.and a dot-stuffed line"), "{text}");
        assert_eq!(
            mail.html_body().as_deref().map(str::trim),
            Some("<p>ready</p>")
        );
        assert!(sink.violations().is_empty(), "{:?}", sink.violations());
    }

    #[tokio::test]
    async fn auth_login_and_sequence_errors() {
        let sink = SmtpSink::start().await;
        sink.require_auth(Some(("u".into(), "p".into())));
        let stream = TcpStream::connect(sink.addr()).await.unwrap();
        let (read, mut writer) = stream.into_split();
        let mut reader = BufReader::new(read);
        exchange(&mut reader, &mut writer, "").await;
        let early = exchange(&mut reader, &mut writer, "MAIL FROM:<a@b.test>\r\n").await;
        assert!(early.starts_with("503 "), "{early}");
        exchange(&mut reader, &mut writer, "EHLO c.test\r\n").await;
        let unauthenticated = exchange(&mut reader, &mut writer, "MAIL FROM:<a@b.test>\r\n").await;
        assert!(unauthenticated.starts_with("530 "), "{unauthenticated}");
        let challenge = exchange(&mut reader, &mut writer, "AUTH LOGIN\r\n").await;
        assert_eq!(challenge, "334 VXNlcm5hbWU6\r\n");
        let password = exchange(
            &mut reader,
            &mut writer,
            &format!("{}\r\n", BASE64.encode("u")),
        )
        .await;
        assert_eq!(password, "334 UGFzc3dvcmQ6\r\n");
        let done = exchange(
            &mut reader,
            &mut writer,
            &format!("{}\r\n", BASE64.encode("p")),
        )
        .await;
        assert!(done.starts_with("235 "), "{done}");
        let unknown = exchange(&mut reader, &mut writer, "FOO\r\n").await;
        assert!(unknown.starts_with("502 "), "{unknown}");
        assert_eq!(sink.violations().len(), 2, "{:?}", sink.violations());
    }

    #[tokio::test]
    async fn a_closed_sink_drops_connections() {
        let sink = SmtpSink::start().await;
        sink.set_accepting(false);
        let mut stream = TcpStream::connect(sink.addr()).await.unwrap();
        let mut buf = Vec::new();
        let read = stream.read_to_end(&mut buf).await;
        assert!(read.is_err() || buf.is_empty());
        assert_eq!(sink.connections(), 1);
    }
}
