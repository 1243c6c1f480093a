//! The yt-dlp runner of the YouTube downloader saga (`docs/design.md` §3 "Download", §6).
//!
//! This module owns every invocation of the `yt-dlp` program: the options it is given, the
//! machine-readable lines it prints, the on-disk layout of a download, the mapping of its exit
//! status to [`Finished`] / [`YtDlpError`], and killing it. It never retries: the saga owns
//! attempts, backoff and the events (`Started`, `ItemCompleted`, `Completed`, `Failed`).
//!
//! # On-disk layout
//!
//! Everything lives under the downloads root (a Plex library folder of type "Other Videos",
//! Plex's *Personal Media* layout):
//!
//! ```text
//! <root>/<playlist title | channel | uploader | "Unsorted">/<title> [<video id>].<ext>
//! <root>/.incomplete/<download id>/…      partial files of a running attempt
//! <root>/.medianest/archive.txt           yt-dlp's --download-archive, shared by all downloads
//! <root>/.medianest/cache/                yt-dlp's --cache-dir
//! ```
//!
//! yt-dlp downloads into the temp dir (`-P temp:`) and moves each finished file into the root
//! (`-P home:`), so a library scan never sees a partial file. The temp dir is wiped before an
//! attempt and removed when it ends (success, failure or cancel): a crashed attempt's partial
//! files never survive, and no attempt resumes another's. Folder and title are cut to 180
//! UTF-8 bytes each (`%(…).180B`) so that a name stays below the usual 255-byte limit.
//!
//! # The contract with yt-dlp
//!
//! A download runs (see [`YtDlp::spawn`]; tested against yt-dlp 2026.10.26):
//!
//! ```text
//! yt-dlp --ignore-config --no-update --color no_color --quiet --no-warnings --no-simulate
//!   --newline --progress --progress-template 'download:{"event":"progress",…}'
//!   --print 'after_move:{"event":"moved",…}'
//!   --download-archive <root>/.medianest/archive.txt --cache-dir <root>/.medianest/cache
//!   -P temp:<root>/.incomplete/<id> -P home:<root>
//!   -o '%(playlist_title,channel,uploader|Unsorted).180B/%(title).180B [%(id)s].%(ext)s'
//!   -f 'bv*[height<=?H]+ba/b[height<=?H]/b' [-S ext:mp4:m4a | -S ext:webm:webm]
//!   --merge-output-format <container> --yes-playlist|--no-playlist -- <url>
//! ```
//!
//! Only machine-readable output is read: stdout carries one JSON object per line, built by the
//! two templates above (`%(x)j` is a JSON string; numbers use `%(x|null)s`, since a missing
//! value would otherwise print `NA`). Other stdout lines are logged at debug and skipped. The
//! one piece of human text that is read is the last `ERROR:` line of stderr, which becomes the
//! failure message and decides whether a retry can help ([`is_retryable_message`]).
//!
//! Exit status: `0` success; `1` at least one error (yt-dlp carries on with a playlist's other
//! items, so some files may have landed) → [`YtDlpError::Failed`]; `2` options rejected — a
//! defect in MediaNest → [`YtDlpError::BadOptions`]; `101` stopped early by
//! `--max-downloads`/`--break-on-existing` → [`Finished::StoppedEarly`]; killed by a signal →
//! `Failed { retryable: true }`. See [`exit_outcome`].
//!
//! Known yt-dlp behaviours the runner relies on or tolerates:
//! - the archive holds `<extractor> <id>` lines and is written after each move; its folder must
//!   exist (yt-dlp does not create it, and then fails every item), so `spawn` creates it;
//! - an item already in the archive prints nothing and is not downloaded; a re-queued
//!   playlist therefore succeeds with no [`RunEvent::ItemDone`]. (For an RSS feed yt-dlp
//!   still opens each item's URL once to learn its id, reading headers only);
//! - an item whose final file already exists (but is not in the archive) is not downloaded
//!   again, yet `after_move` still fires for it and it is added to the archive;
//! - without ffmpeg, single-file sources (one format holding video and audio) download in
//!   any container; a source that needs a merge (YouTube's DASH formats) fails with "…ffmpeg is
//!   not installed…", which is classified as not retryable. Nothing is ever remuxed: the
//!   final extension is the source's when no merge happens, so read it from
//!   [`DoneItem::path`];
//! - a multi-format download (video + audio) reports progress per format: `downloaded_bytes`
//!   starts again from 0 for the second format;
//! - yt-dlp ends at once on SIGTERM (exit by signal), leaving `.part` files in the temp dir;
//!   [`RunningDownload::cancel`] removes them.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::cause::{shared, Context, SharedError};

/// The `--progress-template`: one JSON object per progress report of yt-dlp's downloader.
const PROGRESS_TEMPLATE: &str = concat!(
    r#"download:{"event":"progress","id":%(info.id)j,"#,
    r#""downloaded":%(progress.downloaded_bytes|null)s,"total":%(progress.total_bytes|null)s,"#,
    r#""est":%(progress.total_bytes_estimate|null)s,"speed":%(progress.speed|null)s,"#,
    r#""eta":%(progress.eta|null)s}"#,
);

/// The `--print` template: one JSON object per file moved into the downloads root.
const MOVED_TEMPLATE: &str = concat!(
    r#"after_move:{"event":"moved","id":%(id)j,"title":%(title)j,"path":%(filepath)j,"#,
    r#""index":%(playlist_index|null)s,"total":%(n_entries|null)s}"#,
);

/// The output template, relative to the downloads root (`-P home:`).
pub const OUTPUT_TEMPLATE: &str =
    "%(playlist_title,channel,uploader|Unsorted).180B/%(title).180B [%(id)s].%(ext)s";

/// Folder (under the downloads root) of the per-download temp dirs.
pub const INCOMPLETE_DIR: &str = ".incomplete";

/// Folder (under the downloads root) of MediaNest's own files: the archive and yt-dlp's cache.
pub const STATE_DIR: &str = ".medianest";

/// File name of the download archive inside [`STATE_DIR`].
pub const ARCHIVE_FILE: &str = "archive.txt";

/// How long [`RunningDownload::cancel`] waits after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// Longest stderr line kept for an error message, in bytes.
const MAX_MESSAGE: usize = 2000;

/// How to run yt-dlp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YtDlpConfig {
    /// The yt-dlp executable: a path, or a name looked up on `PATH`. Default `yt-dlp`.
    pub program: PathBuf,
    /// The downloads root (the Plex library folder); created on first use. A relative path is
    /// made absolute against the current directory by [`YtDlp::new`].
    pub downloads_root: PathBuf,
    /// Upper bound for one [`YtDlp::probe`]. Default 30 s.
    pub probe_timeout: Duration,
    /// The HTTP proxy every run goes through (`--proxy`): MediaNest's egress proxy
    /// ([`crate::egress::EgressProxy`]), so the download URL rule holds for each connection
    /// yt-dlp makes. `None`: direct.
    pub proxy: Option<String>,
}

impl Default for YtDlpConfig {
    /// `yt-dlp` on `PATH`, downloads root `downloads` (relative to the current directory),
    /// probe timeout 30 s.
    fn default() -> Self {
        Self {
            program: PathBuf::from("yt-dlp"),
            downloads_root: PathBuf::from("downloads"),
            probe_timeout: Duration::from_secs(30),
            proxy: None,
        }
    }
}

/// The yt-dlp runner: cheap to clone, holds no process.
#[derive(Debug, Clone)]
pub struct YtDlp {
    program: PathBuf,
    root: PathBuf,
    probe_timeout: Duration,
    proxy: Option<String>,
}

/// How [`YtDlp::probe`] treats a URL that names both a video and a playlist
/// (`watch?v=…&list=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeMode {
    /// yt-dlp's default: such a URL is the playlist.
    #[default]
    Auto,
    /// `--no-playlist`: such a URL is the video.
    SingleVideo,
}

/// What a URL is, from a metadata-only run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// A video, or a playlist (a channel or a feed counts as one).
    pub kind: ProbedKind,
    /// yt-dlp's id: the video id, or the playlist's id (for a feed, its URL).
    pub id: Option<String>,
    /// The video's or playlist's title.
    pub title: Option<String>,
    /// Number of entries of a playlist (`playlist_count`, else the number of entries listed);
    /// `None` for a video. For a channel's root page the entries can be its tabs.
    pub entries: Option<u32>,
}

/// The kind of a probed URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbedKind {
    /// One video (`_type` `video`, or none).
    Video,
    /// A playlist (`_type` `playlist` or `multi_video`).
    Playlist,
}

/// One download attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadJob {
    /// The download's id (a UUID); names the temp dir `<root>/.incomplete/<id>/`. Must be
    /// non-empty and consist of ASCII letters, digits, `-` and `_`.
    pub id: String,
    /// The URL, already checked against the allow-list.
    pub url: String,
    /// `true`: `--yes-playlist`; `false`: `--no-playlist` (only matters for a URL that names both
    /// a video and a playlist).
    pub playlist: bool,
    /// Height cap in lines (`720` for 720p); `None` for the best available.
    pub max_height: Option<u32>,
    /// Preferred container: `"mp4"`, `"mkv"` or `"webm"`. Used for merges; with a single-file
    /// source the source's own extension is kept.
    pub container: String,
    /// At most this many files in one run (`--max-downloads`; yt-dlp then exits 101,
    /// [`Finished::StoppedEarly`]); `None`: no cap.
    pub max_downloads: Option<u32>,
}

/// One thing a running download reported.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// One yt-dlp progress line (unthrottled: several per second; the caller throttles).
    Progress(Progress),
    /// One file moved into the downloads root (one per `after_move` line).
    ItemDone(DoneItem),
}

/// Download progress of one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// yt-dlp's id of the item being downloaded.
    pub video_id: String,
    /// Bytes downloaded so far of the current format (0 when yt-dlp does not say).
    pub downloaded_bytes: u64,
    /// Size of the current format in bytes: the exact total, else yt-dlp's estimate.
    pub total_bytes: Option<u64>,
    /// Current speed in bytes per second.
    pub speed_bytes_per_sec: Option<f64>,
    /// Estimated seconds left for the current format.
    pub eta_secs: Option<u64>,
}

/// One finished item: its file is in the downloads root and in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneItem {
    /// yt-dlp's id of the item (YouTube video id; a feed item's guid).
    pub video_id: String,
    /// The item's title, as the source gives it (not sanitised).
    pub title: String,
    /// Absolute path of the file.
    pub path: PathBuf,
    /// `path` relative to the downloads root, `/`-separated, e.g. `Feed/Title [id].mp4`.
    pub relative_path: String,
    /// The first component of `relative_path`: the playlist, channel or `Unsorted` folder.
    pub folder: String,
    /// Size of the file on disk in bytes (0 if it could not be read; logged).
    pub bytes: u64,
    /// 1-based playlist position; 1 for a single video.
    pub index: u32,
    /// Playlist length, when known; `None` for a single video.
    pub total: Option<u32>,
}

/// How a download ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Exit 0: every item is in the library or was already in the archive.
    Success,
    /// Exit 101: stopped early by `--max-downloads` or `--break-on-existing` (MediaNest passes
    /// neither today).
    StoppedEarly,
}

/// Why yt-dlp could not do its job.
///
/// The causes (I/O and JSON errors) are kept as `source()`, shared so the error stays `Clone`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum YtDlpError {
    /// The program could not be started (missing, not executable) or its folders could not be
    /// prepared. Not retryable.
    #[error("could not start yt-dlp: {0}")]
    Spawn(#[source] SharedError),
    /// yt-dlp exited with status 1 (or another unexpected status), or was killed by a signal.
    /// `message` is the last `ERROR:` line of stderr without the prefix, or a summary;
    /// `retryable` comes from [`is_retryable_message`] (always `true` for a signal).
    #[error("yt-dlp failed: {message}")]
    Failed {
        /// What went wrong.
        message: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
    /// yt-dlp rejected its options (exit 2), or the job was malformed: a defect in MediaNest.
    /// Not retryable.
    #[error("yt-dlp rejected its options: {0}")]
    BadOptions(String),
    /// [`YtDlp::probe`] did not finish within [`YtDlpConfig::probe_timeout`]. Retryable.
    #[error("yt-dlp did not answer in time")]
    Timeout,
    /// Reading yt-dlp's output or waiting for it failed. Retryable.
    #[error("yt-dlp I/O error: {0}")]
    Io(#[source] SharedError),
    /// yt-dlp's JSON was not what this module expects (e.g. a yt-dlp version changed it). Not
    /// retryable.
    #[error("unexpected output from yt-dlp: {0}")]
    Decode(#[source] SharedError),
}

/// Equal when of the same variant, with the same text and the same retryability: error
/// values have no equality of their own, so causes compare by their text.
impl PartialEq for YtDlpError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && self.is_retryable() == other.is_retryable()
            && self.to_string() == other.to_string()
    }
}

impl Eq for YtDlpError {}

impl YtDlpError {
    /// Whether the same call may succeed later: `Failed { retryable: true }`, `Timeout`, `Io`.
    pub fn is_retryable(&self) -> bool {
        match self {
            YtDlpError::Failed { retryable, .. } => *retryable,
            YtDlpError::Timeout | YtDlpError::Io(_) => true,
            YtDlpError::Spawn(_) | YtDlpError::BadOptions(_) | YtDlpError::Decode(_) => false,
        }
    }
}

impl YtDlp {
    /// A runner for `cfg`. Makes the downloads root absolute (against the current directory);
    /// touches nothing on disk.
    pub fn new(cfg: YtDlpConfig) -> Self {
        let root = std::path::absolute(&cfg.downloads_root).unwrap_or(cfg.downloads_root);
        Self {
            program: cfg.program,
            root,
            probe_timeout: cfg.probe_timeout,
            proxy: cfg.proxy,
        }
    }

    /// The absolute downloads root.
    pub fn downloads_root(&self) -> &Path {
        &self.root
    }

    /// Path of the shared download archive, `<root>/.medianest/archive.txt`.
    pub fn archive_path(&self) -> PathBuf {
        self.root.join(STATE_DIR).join(ARCHIVE_FILE)
    }

    /// Path of a download's temp dir, `<root>/.incomplete/<download_id>`.
    pub fn temp_dir(&self, download_id: &str) -> PathBuf {
        self.root.join(INCOMPLETE_DIR).join(download_id)
    }

    /// Stops the yt-dlp a crashed worker left running for download `download_id` (found by
    /// its pid file, and only if it still is that download's yt-dlp), then removes the
    /// download's partial files. For downloads that will not run again (e.g. cancelled while
    /// no worker ran); a download that runs again gets the same from [`YtDlp::spawn`].
    pub fn reap(&self, download_id: &str) {
        if validate_job_id(download_id).is_err() {
            return;
        }
        let temp_dir = self.temp_dir(download_id);
        stop_orphan(&self.pid_file(download_id), &temp_dir);
        let _ = std::fs::remove_dir_all(&temp_dir);
    }

    /// `<root>/.incomplete/<download id>.pid`: the process id of the download's running
    /// yt-dlp (also its process group), so a later attempt can stop an orphan left behind
    /// by a crashed worker.
    pub fn pid_file(&self, download_id: &str) -> PathBuf {
        self.root
            .join(INCOMPLETE_DIR)
            .join(format!("{download_id}.pid"))
    }

    /// Metadata-only run (`--flat-playlist --dump-single-json --skip-download`, plus
    /// `--ignore-config --no-update --no-warnings`; `--no-playlist` for
    /// [`ProbeMode::SingleVideo`]): what the URL is, without downloading.
    ///
    /// Errors: `Spawn` (program missing), `Timeout` (after `probe_timeout`; the process is
    /// killed), `Failed` (exit 1: unsupported URL, 404, network…, classified by
    /// [`is_retryable_message`]), `BadOptions` (exit 2), `Decode` (stdout not the expected JSON),
    /// `Io`.
    pub async fn probe(&self, url: &str, kind_hint: ProbeMode) -> Result<Probe, YtDlpError> {
        let mut cmd = Command::new(&self.program);
        cmd.args([
            "--ignore-config",
            "--no-update",
            "--no-warnings",
            "--color",
            "no_color",
            "--flat-playlist",
            "--dump-single-json",
            "--skip-download",
        ]);
        cmd.arg("--cache-dir")
            .arg(self.root.join(STATE_DIR).join("cache"));
        if kind_hint == ProbeMode::SingleVideo {
            cmd.arg("--no-playlist");
        }
        if let Some(proxy) = &self.proxy {
            cmd.arg("--proxy").arg(proxy);
        }
        cmd.arg("--").arg(url);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("PYTHONUNBUFFERED", "1")
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|err| self.spawn_error(err))?;
        // On timeout the future (and the child) is dropped: kill_on_drop kills it and Tokio
        // reaps it in the background.
        let output = tokio::time::timeout(self.probe_timeout, child.wait_with_output())
            .await
            .map_err(|_| YtDlpError::Timeout)?
            .map_err(wait_error)?;
        let summary = summarize_stderr(&output.stderr);
        exit_outcome(
            output.status.code(),
            exit_signal(&output.status),
            summary.last_error,
            summary.last_line,
        )?;
        parse_probe(&output.stdout)
    }

    /// A failure to start the program.
    fn spawn_error(&self, err: io::Error) -> YtDlpError {
        YtDlpError::Spawn(shared(Context::new(
            self.program.display().to_string(),
            err,
        )))
    }

    /// Starts a download. The temp dir `<root>/.incomplete/<job.id>/` is wiped first (a crashed
    /// attempt's partial files never survive) and `<root>/.medianest/` is created; the archive
    /// is `<root>/.medianest/archive.txt` (shared by all downloads, so a re-queued playlist
    /// downloads nothing new). The child runs in its own process group, with stdin closed;
    /// its stderr is drained concurrently.
    ///
    /// Must be called within a Tokio runtime. Uses blocking file-system calls for the folders.
    ///
    /// Errors: `BadOptions` (malformed job id or unknown container), `Spawn` (program missing,
    /// folders cannot be created).
    pub fn spawn(&self, job: &DownloadJob) -> Result<RunningDownload, YtDlpError> {
        validate_job_id(&job.id)?;
        let args = self.download_args(job)?;
        let temp_dir = self.temp_dir(&job.id);
        let pid_file = self.pid_file(&job.id);
        stop_orphan(&pid_file, &temp_dir);
        match std::fs::remove_dir_all(&temp_dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(YtDlpError::Spawn(shared(Context::new(
                    format!("wiping {}", temp_dir.display()),
                    err,
                ))))
            }
        }
        for dir in [temp_dir.clone(), self.root.join(STATE_DIR)] {
            std::fs::create_dir_all(&dir).map_err(|err| {
                YtDlpError::Spawn(shared(Context::new(
                    format!("creating {}", dir.display()),
                    err,
                )))
            })?;
        }

        let mut cmd = Command::new(&self.program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("PYTHONUNBUFFERED", "1")
            .process_group(0);
        let mut child = cmd.spawn().map_err(|err| self.spawn_error(err))?;
        let pid = child.id();
        if let Some(pid) = pid {
            // Read by the next attempt's `spawn` if this process outlives its owner (a crash).
            if let Err(err) = std::fs::write(&pid_file, pid.to_string()) {
                tracing::warn!(error = %err, path = %pid_file.display(), "cannot record the yt-dlp pid");
            }
        }
        let stdout = child.stdout.take().map(BufReader::new);
        let stderr_task = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(drain_stderr(stderr, job.id.clone())));
        tracing::debug!(download_id = %job.id, pid, url = %job.url, "yt-dlp started");
        Ok(RunningDownload {
            job_id: job.id.clone(),
            root: self.root.clone(),
            temp_dir,
            pid,
            child: Some(child),
            stdout,
            stderr_task,
        })
    }

    /// The full argument list of a download (without the program).
    fn download_args(&self, job: &DownloadJob) -> Result<Vec<String>, YtDlpError> {
        let sort = match job.container.as_str() {
            "mp4" => Some("ext:mp4:m4a"),
            "webm" => Some("ext:webm:webm"),
            "mkv" => None,
            other => {
                return Err(YtDlpError::BadOptions(format!(
                    "container `{other}` is not one of mp4, mkv, webm"
                )))
            }
        };
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut args: Vec<String> = [
            "--ignore-config",
            "--no-update",
            "--color",
            "no_color",
            "--quiet",
            "--no-warnings",
            "--no-simulate",
            "--newline",
            "--progress",
            "--progress-template",
            PROGRESS_TEMPLATE,
            "--print",
            MOVED_TEMPLATE,
        ]
        .into_iter()
        .map(String::from)
        .collect();
        args.push("--download-archive".into());
        args.push(path(self.archive_path()));
        args.push("--cache-dir".into());
        args.push(path(self.root.join(STATE_DIR).join("cache")));
        args.push("-P".into());
        args.push(format!("temp:{}", path(self.temp_dir(&job.id))));
        args.push("-P".into());
        args.push(format!("home:{}", path(self.root.clone())));
        args.push("-o".into());
        args.push(OUTPUT_TEMPLATE.into());
        args.push("-f".into());
        args.push(format_spec(job.max_height));
        if let Some(sort) = sort {
            args.push("-S".into());
            args.push(sort.into());
        }
        args.push("--merge-output-format".into());
        args.push(job.container.clone());
        if let Some(max) = job.max_downloads {
            args.push("--max-downloads".into());
            args.push(max.to_string());
        }
        args.push(
            if job.playlist {
                "--yes-playlist"
            } else {
                "--no-playlist"
            }
            .into(),
        );
        if let Some(proxy) = &self.proxy {
            args.push("--proxy".into());
            args.push(proxy.clone());
        }
        args.push("--".into());
        args.push(job.url.clone());
        Ok(args)
    }
}

/// The `-f` format selector: the best video (capped at `max_height` lines, `<=?` so formats
/// of unknown height qualify) merged with the best audio, else the best single file under the
/// cap, else the best single file.
pub fn format_spec(max_height: Option<u32>) -> String {
    match max_height {
        Some(h) => format!("bv*[height<=?{h}]+ba/b[height<=?{h}]/b"),
        None => "bv*+ba/b".to_owned(),
    }
}

/// Kills the process group recorded in `pid_file` if it is still a yt-dlp of this download
/// (its command line names `temp_dir`, so a recycled pid is never killed), waits up to 2 s
/// for it to end, and removes the file. A worker that crashed leaves its yt-dlp running in
/// its own process group; without this, the orphan and the new attempt would write the
/// same files.
fn stop_orphan(pid_file: &Path, temp_dir: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 1)
    else {
        return;
    };
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let ours = std::fs::read(proc_dir.join("cmdline"))
        .map(|cmdline| {
            String::from_utf8_lossy(&cmdline).contains(temp_dir.to_string_lossy().as_ref())
        })
        .unwrap_or(false);
    if ours {
        tracing::warn!(pid, "an earlier attempt's yt-dlp still runs; killing it");
        signal_group(Pid::from_raw(pid), Signal::SIGKILL);
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while proc_dir.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_file(pid_file);
}

fn validate_job_id(id: &str) -> Result<(), YtDlpError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(YtDlpError::BadOptions(format!(
            "download id `{id}` cannot name a folder"
        )))
    }
}

/// A running yt-dlp download. Read its events with [`next_event`](Self::next_event) until
/// `None`, then [`wait`](Self::wait); or [`cancel`](Self::cancel) it. Dropping it without
/// either kills the process group (SIGKILL) but leaves the temp dir for the next attempt to
/// wipe.
#[derive(Debug)]
pub struct RunningDownload {
    job_id: String,
    root: PathBuf,
    temp_dir: PathBuf,
    pid: Option<u32>,
    /// `None` once reaped.
    child: Option<Child>,
    /// `None` once at end of file.
    stdout: Option<BufReader<ChildStdout>>,
    stderr_task: Option<JoinHandle<StderrSummary>>,
}

impl RunningDownload {
    /// The next event, in yt-dlp's order; `None` once yt-dlp closed its stdout (it exited, or
    /// was killed). Lines that are not one of the runner's JSON objects are logged at debug and
    /// skipped; a read error is logged and ends the stream.
    pub async fn next_event(&mut self) -> Option<RunEvent> {
        loop {
            let line = self.next_line().await?;
            match parse_line(&line) {
                Some(WireLine::Progress(p)) => return Some(RunEvent::Progress(p.into())),
                Some(WireLine::Moved(m)) => {
                    return Some(RunEvent::ItemDone(self.done_item(m).await))
                }
                None => {
                    tracing::debug!(download_id = %self.job_id, line = %line, "yt-dlp stdout line skipped");
                }
            }
        }
    }

    /// One stdout line (lossy UTF-8, without the line end); `None` at end of file.
    async fn next_line(&mut self) -> Option<String> {
        let reader = self.stdout.as_mut()?;
        let mut buf = Vec::new();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) => {
                self.stdout = None;
                None
            }
            Ok(_) => Some(
                String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
            ),
            Err(err) => {
                tracing::warn!(download_id = %self.job_id, error = %err, "reading yt-dlp's stdout failed");
                self.stdout = None;
                None
            }
        }
    }

    async fn done_item(&self, m: WireMoved) -> DoneItem {
        let path = PathBuf::from(&m.path);
        let bytes = match tokio::fs::metadata(&path).await {
            Ok(meta) => meta.len(),
            Err(err) => {
                tracing::warn!(download_id = %self.job_id, path = %path.display(), error = %err, "cannot read the size of a downloaded file");
                0
            }
        };
        let relative_path = relative_to(&self.root, &path).unwrap_or_else(|| {
            tracing::warn!(download_id = %self.job_id, path = %path.display(), root = %self.root.display(), "yt-dlp moved a file outside the downloads root");
            m.path.clone()
        });
        let folder = relative_path
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        DoneItem {
            video_id: m.id,
            title: m.title,
            path,
            relative_path,
            folder,
            bytes,
            index: m.index.and_then(to_u32).filter(|i| *i > 0).unwrap_or(1),
            total: m.total.and_then(to_u32),
        }
    }

    /// Waits for yt-dlp to exit, then removes the job's temp dir. Call it after
    /// [`next_event`](Self::next_event) returned `None`; events still unread are drained and
    /// dropped (logged at debug).
    ///
    /// Returns [`Finished`] for exit 0 and 101; otherwise the [`YtDlpError`] of
    /// [`exit_outcome`] (`Failed`, `BadOptions`), or `Io` if waiting failed.
    pub async fn wait(mut self) -> Result<Finished, YtDlpError> {
        while let Some(line) = self.next_line().await {
            tracing::debug!(download_id = %self.job_id, line = %line, "yt-dlp stdout line dropped by wait()");
        }
        let Some(mut child) = self.child.take() else {
            return Err(YtDlpError::Io(shared("yt-dlp was already reaped")));
        };
        let status = child.wait().await.map_err(wait_error)?;
        let summary = match self.stderr_task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => StderrSummary::default(),
        };
        self.remove_temp_dir().await;
        tracing::debug!(download_id = %self.job_id, %status, "yt-dlp exited");
        exit_outcome(
            status.code(),
            exit_signal(&status),
            summary.last_error,
            summary.last_line,
        )
    }

    /// Stops the download: SIGTERM to the whole process group, SIGKILL after at most 2 s if
    /// yt-dlp is still running (and to any straggler of the group), reaps the child, then
    /// removes the job's temp dir. Files already moved into the library stay.
    ///
    /// Errors: `Io` if waiting for the child failed.
    pub async fn cancel(mut self) -> Result<(), YtDlpError> {
        if let Some(mut child) = self.child.take() {
            let pgid = self
                .pid
                .and_then(|pid| i32::try_from(pid).ok())
                .map(Pid::from_raw);
            if let Some(pgid) = pgid {
                signal_group(pgid, Signal::SIGTERM);
            }
            let status = match tokio::time::timeout(TERM_GRACE, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    if let Some(pgid) = pgid {
                        signal_group(pgid, Signal::SIGKILL);
                    }
                    child.wait().await
                }
            }
            .map_err(wait_error)?;
            if let Some(pgid) = pgid {
                // Helpers yt-dlp started (ffmpeg) may outlive it.
                signal_group(pgid, Signal::SIGKILL);
            }
            tracing::debug!(download_id = %self.job_id, %status, "yt-dlp cancelled");
        }
        if let Some(task) = self.stderr_task.take() {
            task.abort();
        }
        self.stdout = None;
        self.remove_temp_dir().await;
        Ok(())
    }

    /// The process id of yt-dlp (also its process group id); `None` if the OS gave none.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Removes the temp dir and the pid file (the process has been reaped).
    async fn remove_temp_dir(&self) {
        let pid_file = self.temp_dir.with_extension("pid");
        let _ = tokio::fs::remove_file(&pid_file).await;
        match tokio::fs::remove_dir_all(&self.temp_dir).await {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(download_id = %self.job_id, dir = %self.temp_dir.display(), error = %err, "cannot remove the temp dir");
            }
        }
    }
}

impl Drop for RunningDownload {
    fn drop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            if let Some(pgid) = self.pid.and_then(|pid| i32::try_from(pid).ok()) {
                tracing::warn!(download_id = %self.job_id, pid = pgid, "RunningDownload dropped while yt-dlp runs; killing it");
                signal_group(Pid::from_raw(pgid), Signal::SIGKILL);
            }
        }
    }
}

/// Sends `signal` to process group `pgid`; a group that is already gone is fine.
fn signal_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(err) => tracing::warn!(pgid = pgid.as_raw(), %signal, error = %err, "killpg failed"),
    }
}

fn exit_signal(status: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// Maps yt-dlp's exit to the outcome of a run.
///
/// - `code` 0 → `Ok(Success)`; 101 → `Ok(StoppedEarly)`;
/// - 2 → `BadOptions` (yt-dlp's usage error is the last stderr line, `last_line`);
/// - 1 → `Failed` with `last_error` (the last `ERROR:` line without the prefix) classified by
///   [`is_retryable_message`], or a summary (retryable) when there is none;
/// - any other code → `Failed`, retryable unless `last_error` says otherwise;
/// - no code (`signal` is the killing signal) → `Failed { retryable: true }`.
pub fn exit_outcome(
    code: Option<i32>,
    signal: Option<i32>,
    last_error: Option<String>,
    last_line: Option<String>,
) -> Result<Finished, YtDlpError> {
    match code {
        Some(0) => Ok(Finished::Success),
        Some(101) => Ok(Finished::StoppedEarly),
        Some(2) => Err(YtDlpError::BadOptions(
            last_error
                .or(last_line)
                .unwrap_or_else(|| "yt-dlp exited with status 2".to_owned()),
        )),
        Some(code) => Err(match last_error {
            Some(message) => YtDlpError::Failed {
                retryable: is_retryable_message(&message),
                message,
            },
            None => YtDlpError::Failed {
                message: match last_line {
                    Some(line) => format!("yt-dlp exited with status {code}: {line}"),
                    None => format!("yt-dlp exited with status {code}"),
                },
                retryable: true,
            },
        }),
        None => Err(YtDlpError::Failed {
            message: match signal {
                Some(sig) => match Signal::try_from(sig) {
                    Ok(s) => format!("yt-dlp was killed by {s}"),
                    Err(_) => format!("yt-dlp was killed by signal {sig}"),
                },
                None => "yt-dlp ended without an exit status".to_owned(),
            },
            retryable: true,
        }),
    }
}

/// Whether another attempt may help, judged from yt-dlp's error message (the last `ERROR:`
/// line, prefix removed).
///
/// - `HTTP Error <status>`: 429 and 5xx → retryable; any other 4xx → not;
/// - not retryable: "Unsupported URL", "Private video", "Video unavailable", "This video is not
///   available", members-only videos, "Sign in to confirm your age", a missing ffmpeg, "is not
///   a valid URL", "Requested format is not available";
/// - everything else (timeouts, connection refused/reset, temporary DNS failure, unknown
///   messages) → retryable.
pub fn is_retryable_message(message: &str) -> bool {
    if let Some(status) = http_status(message) {
        return status == 429 || !(400..500).contains(&status);
    }
    const PERMANENT: &[&str] = &[
        "unsupported url",
        "private video",
        "video unavailable",
        "this video is not available",
        "members-only",
        "members only",
        "join this channel",
        "sign in to confirm your age",
        "ffmpeg is not installed",
        "ffmpeg not found",
        "is not a valid url",
        "requested format is not available",
    ];
    let lower = message.to_lowercase();
    !PERMANENT.iter().any(|p| lower.contains(p))
}

/// The status of the first `HTTP Error <3 digits>` in `message`.
fn http_status(message: &str) -> Option<u16> {
    let lower = message.to_ascii_lowercase();
    lower.match_indices("http error ").find_map(|(at, needle)| {
        let digits = lower.get(at + needle.len()..at + needle.len() + 3)?;
        if digits.bytes().all(|b| b.is_ascii_digit()) {
            digits.parse().ok()
        } else {
            None
        }
    })
}

/// What stderr said, kept for the exit mapping.
#[derive(Debug, Default, Clone)]
struct StderrSummary {
    /// The last `ERROR:` line, prefix removed.
    last_error: Option<String>,
    /// The last non-empty line.
    last_line: Option<String>,
}

impl StderrSummary {
    fn push(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        let line = truncate(line, MAX_MESSAGE);
        if let Some(rest) = line.strip_prefix("ERROR:") {
            self.last_error = Some(rest.trim().to_owned());
        }
        self.last_line = Some(line.to_owned());
    }
}

fn summarize_stderr(stderr: &[u8]) -> StderrSummary {
    let mut summary = StderrSummary::default();
    for line in String::from_utf8_lossy(stderr).lines() {
        summary.push(line);
    }
    summary
}

/// Reads stderr to its end (so yt-dlp never blocks on a full pipe), logging each line.
async fn drain_stderr(stderr: impl AsyncRead + Unpin, job_id: String) -> StderrSummary {
    let mut reader = BufReader::new(stderr);
    let mut summary = StderrSummary::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end();
                if !line.is_empty() {
                    tracing::debug!(download_id = %job_id, line = %line, "yt-dlp stderr");
                }
                summary.push(line);
            }
            Err(err) => {
                tracing::warn!(download_id = %job_id, error = %err, "reading yt-dlp's stderr failed");
                break;
            }
        }
    }
    summary
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `path` relative to `root`, `/`-separated; `None` if it is not inside.
fn relative_to(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

fn to_u32(n: f64) -> Option<u32> {
    (n.is_finite() && n >= 0.0 && n <= f64::from(u32::MAX)).then(|| n.round() as u32)
}

fn to_u64(n: f64) -> Option<u64> {
    // `as` saturates; the range check only rejects junk.
    (n.is_finite() && n >= 0.0).then(|| n.round() as u64)
}

/// One of the runner's stdout lines.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum WireLine {
    Progress(WireProgress),
    Moved(WireMoved),
}

#[derive(Debug, Deserialize)]
struct WireProgress {
    id: String,
    downloaded: Option<f64>,
    total: Option<f64>,
    est: Option<f64>,
    speed: Option<f64>,
    eta: Option<f64>,
}

impl From<WireProgress> for Progress {
    fn from(p: WireProgress) -> Self {
        Progress {
            video_id: p.id,
            downloaded_bytes: p.downloaded.and_then(to_u64).unwrap_or(0),
            total_bytes: p.total.or(p.est).and_then(to_u64),
            speed_bytes_per_sec: p.speed.filter(|s| s.is_finite() && *s >= 0.0),
            eta_secs: p.eta.and_then(to_u64),
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireMoved {
    id: String,
    title: String,
    path: String,
    index: Option<f64>,
    total: Option<f64>,
}

fn parse_line(line: &str) -> Option<WireLine> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    serde_json::from_str(line).ok()
}

/// A failure to wait for the child.
fn wait_error(err: io::Error) -> YtDlpError {
    YtDlpError::Io(shared(Context::new("waiting for yt-dlp", err)))
}

/// Reads `--dump-single-json` output.
fn parse_probe(stdout: &[u8]) -> Result<Probe, YtDlpError> {
    let value: Value = serde_json::from_slice(stdout)
        .map_err(|err| YtDlpError::Decode(shared(Context::new("probe output is not JSON", err))))?;
    let Value::Object(info) = value else {
        return Err(YtDlpError::Decode(shared(format!(
            "probe output is not a JSON object: {}",
            truncate(&value.to_string(), 200)
        ))));
    };
    let text = |key: &str| match info.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let kind = match info.get("_type").and_then(Value::as_str) {
        Some("playlist" | "multi_video") => ProbedKind::Playlist,
        _ => ProbedKind::Video,
    };
    let entries = match kind {
        ProbedKind::Video => None,
        ProbedKind::Playlist => info
            .get("playlist_count")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .or_else(|| {
                info.get("entries")
                    .and_then(Value::as_array)
                    .and_then(|e| u32::try_from(e.len()).ok())
            }),
    };
    Ok(Probe {
        kind,
        id: text("id"),
        title: text("title"),
        entries,
    })
}

impl fmt::Display for ProbedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbedKind::Video => "video",
            ProbedKind::Playlist => "playlist",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(message: &str) -> (String, bool) {
        match exit_outcome(Some(1), None, Some(message.to_owned()), None) {
            Err(YtDlpError::Failed { message, retryable }) => (message, retryable),
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn http_statuses_are_classified() {
        let msg = |s: &str| {
            format!("[generic] vid-b: Unable to download webpage: HTTP Error {s} (caused by <HTTPError>)")
        };
        assert!(!is_retryable_message(&msg("404: Not Found")));
        assert!(!is_retryable_message(&msg("403: Forbidden")));
        assert!(!is_retryable_message(&msg("410: Gone")));
        assert!(is_retryable_message(&msg("429: Too Many Requests")));
        assert!(is_retryable_message(&msg("500: Internal Server Error")));
        assert!(is_retryable_message(&msg("503: Service Unavailable")));
        assert_eq!(http_status("http error 502: Bad Gateway"), Some(502));
        assert_eq!(http_status("HTTP Error abc"), None);
    }

    #[test]
    fn network_failures_are_retryable() {
        for m in [
            "[youtube] abc: Unable to download API page: <urlopen error [Errno 111] Connection refused>",
            "[youtube] abc: Unable to download webpage: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))",
            "[generic] x: Unable to download webpage: The read operation timed out",
            "[youtube] abc: Unable to download webpage: <urlopen error [Errno -3] Temporary failure in name resolution>",
            "something nobody has seen before",
        ] {
            assert!(is_retryable_message(m), "{m}");
        }
    }

    #[test]
    fn permanent_failures_are_not_retryable() {
        for m in [
            "Unsupported URL: https://example.com/",
            "[youtube] abc: Private video. Sign in if you've been granted access to this video",
            "[youtube] abc: Video unavailable",
            "[youtube] abc: This video is not available",
            "[youtube] abc: Join this channel to get access to members-only content like this video",
            "[youtube] abc: Sign in to confirm your age. This video may be inappropriate for some users.",
            "You have requested merging of multiple formats but ffmpeg is not installed. Aborting due to --abort-on-error",
            "[youtube] abc: Requested format is not available. Use --list-formats for a list of available formats",
            "'foo' is not a valid URL. Set --default-search \"ytsearch\" (or run  yt-dlp \"ytsearch:foo\" ) to search YouTube",
        ] {
            assert!(!is_retryable_message(m), "{m}");
        }
    }

    #[test]
    fn exit_codes_map_to_outcomes() {
        assert_eq!(
            exit_outcome(Some(0), None, None, None),
            Ok(Finished::Success)
        );
        assert_eq!(
            exit_outcome(Some(101), None, None, None),
            Ok(Finished::StoppedEarly)
        );
        assert_eq!(
            exit_outcome(
                Some(2),
                None,
                None,
                Some("yt-dlp: error: no such option: --bogus".into())
            ),
            Err(YtDlpError::BadOptions(
                "yt-dlp: error: no such option: --bogus".into()
            ))
        );
        let (message, retryable) =
            failed("[generic] vid-b: Unable to download webpage: HTTP Error 404: Not Found");
        assert!(message.contains("404"));
        assert!(!retryable);
        assert_eq!(
            exit_outcome(Some(1), None, None, None),
            Err(YtDlpError::Failed {
                message: "yt-dlp exited with status 1".into(),
                retryable: true
            })
        );
        let killed = exit_outcome(None, Some(9), None, None).unwrap_err();
        assert!(killed.is_retryable());
        assert!(killed.to_string().contains("SIGKILL"), "{killed}");
        assert!(!YtDlpError::BadOptions(String::new()).is_retryable());
        assert!(!YtDlpError::Spawn(shared("")).is_retryable());
        assert!(YtDlpError::Timeout.is_retryable());
    }

    #[test]
    fn stderr_keeps_the_last_error_line() {
        let s = summarize_stderr(
            b"WARNING: w\nERROR: [generic] a: HTTP Error 404: Not Found\nERROR: [generic] b: timed out\n\n",
        );
        assert_eq!(s.last_error.as_deref(), Some("[generic] b: timed out"));
        assert_eq!(
            s.last_line.as_deref(),
            Some("ERROR: [generic] b: timed out")
        );
    }

    #[test]
    fn stdout_lines_parse() {
        let p = parse_line(
            r#"{"event":"progress","id":"vid-a","downloaded":1024,"total":null,"est":5000.5,"speed":null,"eta":3}"#,
        );
        let Some(WireLine::Progress(p)) = p else {
            panic!("not a progress line")
        };
        let p = Progress::from(p);
        assert_eq!(p.video_id, "vid-a");
        assert_eq!(p.downloaded_bytes, 1024);
        assert_eq!(p.total_bytes, Some(5001));
        assert_eq!(p.speed_bytes_per_sec, None);
        assert_eq!(p.eta_secs, Some(3));
        assert!(matches!(
            parse_line(
                r#"{"event":"moved","id":"a","title":"T","path":"/r/U/T [a].mp4","index":null,"total":null}"#
            ),
            Some(WireLine::Moved(_))
        ));
        assert!(parse_line("[download] 10%").is_none());
        assert!(parse_line(r#"{"event":"other"}"#).is_none());
    }

    #[test]
    fn probe_output_parses() {
        let p = parse_probe(br#"{"_type": "playlist", "id": "http://x/f.xml", "title": "My Feed", "entries": [{}, {}], "playlist_count": 3}"#).unwrap();
        assert_eq!(p.kind, ProbedKind::Playlist);
        assert_eq!(p.entries, Some(3));
        assert_eq!(p.title.as_deref(), Some("My Feed"));
        let v = parse_probe(br#"{"_type": "video", "id": "a", "title": "a"}"#).unwrap();
        assert_eq!(v.kind, ProbedKind::Video);
        assert_eq!(v.entries, None);
        assert!(matches!(parse_probe(b"null"), Err(YtDlpError::Decode(_))));
    }

    #[test]
    fn arguments_follow_the_contract() {
        let y = YtDlp::new(YtDlpConfig {
            downloads_root: "/srv/videos".into(),
            ..YtDlpConfig::default()
        });
        let job = DownloadJob {
            id: "0193-abc".into(),
            url: "-https://x".into(),
            playlist: true,
            max_height: Some(720),
            container: "mp4".into(),
            max_downloads: Some(200),
        };
        let args = y.download_args(&job).unwrap();
        let pos = |a: &str| args.iter().position(|x| x == a).unwrap();
        assert_eq!(
            args[pos("-f") + 1],
            "bv*[height<=?720]+ba/b[height<=?720]/b"
        );
        assert_eq!(args[pos("-S") + 1], "ext:mp4:m4a");
        assert_eq!(
            args[pos("--download-archive") + 1],
            "/srv/videos/.medianest/archive.txt"
        );
        assert!(args.contains(&"temp:/srv/videos/.incomplete/0193-abc".to_owned()));
        assert!(args.contains(&"--yes-playlist".to_owned()));
        assert_eq!(args[pos("--max-downloads") + 1], "200");
        assert_eq!(&args[args.len() - 2..], ["--", "-https://x"]);
        assert_eq!(format_spec(None), "bv*+ba/b");
        let bad = DownloadJob {
            container: "avi".into(),
            ..job.clone()
        };
        assert!(matches!(
            y.download_args(&bad),
            Err(YtDlpError::BadOptions(_))
        ));
        for id in ["", "..", "a/b", "a b"] {
            assert!(validate_job_id(id).is_err(), "{id:?}");
        }
    }

    #[test]
    fn relative_paths_use_slashes() {
        assert_eq!(
            relative_to(Path::new("/r"), Path::new("/r/My Feed/A [a].mp4")).as_deref(),
            Some("My Feed/A [a].mp4")
        );
        assert_eq!(
            relative_to(Path::new("/r"), Path::new("/other/a.mp4")),
            None
        );
    }
}
