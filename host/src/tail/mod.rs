//! Following log files: [`TailReader`] reads what was appended and survives rotation;
//! [`run`] drives one from the tokio runtime (its reads on blocking threads), woken by filesystem events (inotify through
//! `notify`) with a polling fallback for filesystems that send none (NFS, some mounts).

pub mod checkpoint;
pub mod identity;
pub mod lines;
mod position;
mod reader;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{Notify, mpsc, watch};

pub use position::{FINGERPRINT_BYTES, Fingerprint, Position, legacy_hash};
pub use reader::{ReadLimits, Refused, StartAt, TailReader, TailStats, resolve};

use crate::observe::health::{Health, State};
use crate::tail::lines::Line;

/// How long a shutdown waits for a poll under way.
const STUCK_READ: Duration = Duration::from_secs(1);

/// A batch of new lines and the position just past the last of them. The first batch of a
/// tailer has no lines: it says where reading starts, so a checkpoint exists from the start.
#[derive(Debug)]
pub struct Batch {
    pub lines: Vec<Line>,
    /// None only while the file cannot be opened.
    pub position: Option<Position>,
    /// Which of the server's logs it was read from (its index in `logs`).
    pub log: usize,
    /// The root span of the batch's trace (tail → parsers → monitors → sinks); disabled
    /// when traces are off or the batch has no lines.
    pub span: tracing::Span,
}

impl Batch {
    /// A batch of `lines` read from the log that `status` reports for, with the span its
    /// trace starts with.
    pub fn new(status: &Status, lines: Vec<Line>, position: Option<Position>) -> Self {
        let span = if lines.is_empty() {
            tracing::Span::none()
        } else {
            let bytes: usize = lines.iter().map(|l| l.text.len()).sum();
            tracing::info_span!(
                parent: None,
                "batch",
                server = %status.server,
                log = %status.log_id,
                lines = lines.len(),
                bytes
            )
        };
        Self {
            lines,
            position,
            log: status.log,
            span,
        }
    }
}

/// Where a tailer task reports how it is doing.
#[derive(Debug, Clone)]
pub struct Status {
    /// The server whose log it is (for the spans of its batches).
    pub server: String,
    /// Which of the server's logs it is: its index in `logs`, and its id.
    pub log: usize,
    pub log_id: String,
    pub health: Health,
    /// Its component name in `health`.
    pub component: crate::observe::health::Part,
    /// Given one permit once the reader knows where it starts (the file opened, found
    /// missing, or refused), so a host can say it has started only when every line
    /// written from then on will be read.
    pub positioned: Option<Arc<tokio::sync::Semaphore>>,
}

/// How a tailer task behaves.
#[derive(Debug, Clone, Copy)]
pub struct TailOptions {
    /// How often to look even without a filesystem event: the fallback, not the hot path.
    pub poll_interval: Duration,
    /// Most lines per batch handed on.
    pub max_batch_lines: usize,
    /// Most bytes per batch handed on (the line that crosses it ends the batch).
    pub max_batch_bytes: usize,
}

impl Default for TailOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            max_batch_lines: 1024,
            max_batch_bytes: 1 << 20,
        }
    }
}

/// Runs `reader` until `shutdown` turns true or the receiver of `tx` is dropped, sending
/// batches of new lines, each with the position after it. The file is read on tokio's
/// blocking threads, one bounded batch at a time, so neither a slow disk nor a huge backlog
/// holds a runtime thread or grows memory. Waits for filesystem events; polls every
/// `options.poll_interval` besides. Errors reading the file are logged (once per kind of
/// error) and retried. Gives the reader back unless it was still reading at shutdown.
pub async fn run<T: From<Batch>>(
    reader: TailReader,
    tx: mpsc::Sender<T>,
    options: TailOptions,
    mut shutdown: watch::Receiver<bool>,
    status: Status,
) -> Option<TailReader> {
    let mut reader = reader.limits(ReadLimits {
        lines: options.max_batch_lines.max(1),
        bytes: options.max_batch_bytes.max(1),
    });
    let wake = Arc::new(Notify::new());
    let mut watcher = watch_dir(reader.path(), &wake);
    let mut last_error: Option<String> = None;
    let mut sent: Option<Position> = None;
    let mut first = true;
    loop {
        if *shutdown.borrow() {
            return Some(reader);
        }
        if watcher.is_none() {
            watcher = watch_dir(reader.path(), &wake);
        }
        let job = tokio::task::spawn_blocking(move || poll_once(reader, first));
        tokio::pin!(job);
        let done = tokio::select! {
            done = &mut job => done,
            _ = stopping(&mut shutdown) => {
                // A poll ends in moments; only one stuck in the kernel (a hung network
                // mount) is left behind.
                match tokio::time::timeout(STUCK_READ, &mut job).await {
                    Ok(Ok((reader, ..))) => return Some(reader),
                    _ => return None,
                }
            }
        };
        let Ok((back, start, lines, result)) = done else {
            return None;
        };
        reader = back;
        let more = report(&status, &reader, result, &mut last_error);
        let position = if first {
            first = false;
            if let Some(p) = &status.positioned {
                p.add_permits(1);
            }
            start
        } else {
            reader.position()
        };
        if !lines.is_empty() || (position.is_some() && position != sent) {
            let batch = Batch::new(&status, lines, position);
            tokio::select! {
                r = tx.send(batch.into()) => if r.is_err() {
                    return Some(reader);
                },
                // A batch not handed on is not delivered, so not checkpointed: it is read
                // again at the next start.
                _ = stopping(&mut shutdown) => return Some(reader),
            }
            sent = position;
        }
        if more {
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(options.poll_interval) => {}
            _ = stopping(&mut shutdown) => return Some(reader),
        }
    }
}

/// One turn of the reader on a blocking thread: where it starts (the first turn), or what
/// was appended since the last.
fn poll_once(
    mut reader: TailReader,
    first: bool,
) -> (
    TailReader,
    Option<Position>,
    Vec<Line>,
    std::io::Result<bool>,
) {
    let mut lines = Vec::new();
    if first {
        let start = reader.start();
        return (reader, start, lines, Ok(true));
    }
    let result = reader.poll(&mut lines);
    (reader, None, lines, result)
}

/// Says in health how a poll went (a failure logged once until it changes); whether there
/// is more to read at once.
fn report(
    status: &Status,
    reader: &TailReader,
    result: std::io::Result<bool>,
    last_error: &mut Option<String>,
) -> bool {
    match result {
        Ok(more) => {
            *last_error = None;
            if reader.is_open() {
                status.health.set(&status.component, State::Ready, None);
            } else {
                let detail = format!("waiting for {} to exist", reader.path().display());
                (status.health).set(&status.component, State::Starting, Some(detail));
            }
            more
        }
        Err(e) => {
            let problem = format!("cannot read {}: {e}", reader.path().display());
            if last_error.as_ref() != Some(&problem) {
                tracing::warn!(path = %reader.path().display(), "cannot read the log: {e}");
                status.health.error(&status.component, problem.clone());
                status.health.set(&status.component, State::Down, None);
                *last_error = Some(problem);
            }
            false
        }
    }
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Watches the folder of `path` (so creation and renames are seen too); `None` if it
/// cannot be watched now (the folder is missing, or inotify is unavailable).
fn watch_dir(path: &Path, wake: &Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name()?.to_owned();
    let wake = wake.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(e) => e.paths.is_empty() || e.paths.iter().any(|p| p.file_name() == Some(&name)),
            Err(_) => true,
        };
        if relevant {
            wake.notify_one();
        }
    })
    .ok()?;
    watcher.watch(dir, RecursiveMode::NonRecursive).ok()?;
    Some(watcher)
}
