//! Following log files: [`TailReader`] reads what was appended and survives rotation;
//! [`run`] drives one on the tokio runtime, woken by filesystem events (inotify through
//! `notify`) with a polling fallback for filesystems that send none (NFS, some mounts).

mod reader;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{Notify, mpsc, watch};

pub use reader::{Position, StartAt, TailReader, TailStats};

use crate::health::{Health, State};
use crate::lines::Line;

/// A batch of new lines and the position just past the last of them.
#[derive(Debug)]
pub struct Batch {
    pub lines: Vec<Line>,
    pub position: Option<Position>,
}

/// Where a tailer task reports how it is doing.
#[derive(Debug, Clone)]
pub struct Status {
    pub health: Health,
    /// Its component name in `health`.
    pub component: String,
}

/// How a tailer task behaves.
#[derive(Debug, Clone, Copy)]
pub struct TailOptions {
    /// How often to look even without a filesystem event: the fallback, not the hot path.
    pub poll_interval: Duration,
    /// Most lines per batch handed on.
    pub max_batch_lines: usize,
}

impl Default for TailOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            max_batch_lines: 1024,
        }
    }
}

/// Runs `reader` until `shutdown` turns true or the receiver of `tx` is dropped, sending
/// each batch of new lines. Waits for filesystem events; polls every
/// `options.poll_interval` besides. Errors reading the file are logged (once per kind of
/// error) and retried.
pub async fn run<T: From<Batch>>(
    mut reader: TailReader,
    tx: mpsc::Sender<T>,
    options: TailOptions,
    mut shutdown: watch::Receiver<bool>,
    status: Status,
) -> TailReader {
    let wake = Arc::new(Notify::new());
    let mut watcher = watch_dir(reader.path(), &wake);
    let mut last_error: Option<std::io::ErrorKind> = None;
    let mut lines = Vec::new();
    loop {
        if watcher.is_none() {
            watcher = watch_dir(reader.path(), &wake);
        }
        match reader.poll(&mut lines) {
            Ok(()) => {
                last_error = None;
                if reader.is_open() {
                    status.health.set(&status.component, State::Ready, None);
                } else {
                    let detail = format!("waiting for {} to exist", reader.path().display());
                    status
                        .health
                        .set(&status.component, State::Starting, Some(detail));
                }
            }
            Err(e) => {
                if last_error != Some(e.kind()) {
                    tracing::warn!(path = %reader.path().display(), "cannot read the log: {e}");
                    last_error = Some(e.kind());
                    status.health.error(
                        &status.component,
                        format!("cannot read {}: {e}", reader.path().display()),
                    );
                    status.health.set(&status.component, State::Down, None);
                }
            }
        }
        while !lines.is_empty() {
            let rest = lines.split_off(lines.len().min(options.max_batch_lines));
            let batch = Batch {
                lines: std::mem::replace(&mut lines, rest),
                position: if lines.is_empty() {
                    reader.position()
                } else {
                    None
                },
            };
            if tx.send(batch.into()).await.is_err() {
                return reader;
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(options.poll_interval) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return reader;
                }
            }
        }
    }
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
