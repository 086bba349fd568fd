//! What a server keeps across restarts of the host (one instance: in the state folder) and
//! across failovers (cluster mode: in etcd, under the owner's fence): its open alerts and
//! its monitors' states. With both, a monitor that raised a warning before a restart knows
//! it did, so it tells of the recovery once, and an alert still true is not posted again.
//!
//! Each is written whenever it changes, the newest last, by one task per kind while the
//! run lasts; a write that fails is logged and the next change tries again.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::alert::AlertBook;
use crate::cluster::Fence;
use crate::monitor::MonitorStates;
use crate::plugin::MonitorInstance;

/// The most monitor state kept in etcd for one server: etcd refuses requests over about
/// 1.5 MiB. A larger state is not kept there (the monitor starts afresh after a failover).
const MAX_ETCD_STATES: usize = 512 << 10;
/// The shortest time between two writes of the monitors' states: they change with every
/// sample, and each write is an fsync (or an etcd request); the last one is always written
/// when the run stops.
const STATES_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a server's kept things live.
#[derive(Clone)]
pub(super) enum Keeper {
    /// `<state>/alerts/<tag>.json` and `<state>/monitors/<tag>.json`.
    Files(PathBuf),
    /// `alerts/<tag>` and `monitors/<tag>` in etcd, written under the fence.
    Etcd(Arc<Fence>),
}

/// The kinds of things kept.
#[derive(Clone, Copy)]
enum Kind {
    Alerts,
    Monitors,
}

impl Kind {
    fn folder(self) -> &'static str {
        match self {
            Self::Alerts => "alerts",
            Self::Monitors => "monitors",
        }
    }
}

impl Keeper {
    /// Reads what was kept of `kind` for `tag` (none: nothing, or unreadable, which is
    /// logged). Blocking: call it off the async threads or inside `block_in_place`.
    fn read(&self, kind: Kind, tag: &str) -> Option<Vec<u8>> {
        let what = kind.folder();
        match self {
            Self::Files(dir) => {
                let path = dir.join(what).join(format!("{tag}.json"));
                match crate::files::read_regular(&path, 64 << 20) {
                    Ok(b) => Some(b),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => {
                        tracing::warn!(
                            server = tag,
                            "cannot read the kept {what} ({e}); starting with none"
                        );
                        None
                    }
                }
            }
            Self::Etcd(fence) => {
                let key = format!("{what}/{tag}");
                match tokio::runtime::Handle::current().block_on(fence.get(&key)) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(
                            server = tag,
                            "cannot read the kept {what} from etcd ({e}); starting with none"
                        );
                        None
                    }
                }
            }
        }
    }

    /// The open alerts kept for `tag`.
    pub(super) fn alerts(&self, tag: &str) -> Option<AlertBook> {
        let bytes = self.read(Kind::Alerts, tag)?;
        AlertBook::import(&bytes)
            .inspect_err(|e| {
                tracing::warn!(
                    server = tag,
                    "the kept open alerts are not readable ({e}); starting with none"
                );
            })
            .ok()
    }

    /// Gives each of `monitors` the state kept for it: the state of the same plugin at the
    /// same place. A monitor that refuses it starts afresh (see `MonitorInstance`).
    pub(super) fn restore_monitors(&self, tag: &str, monitors: &mut [MonitorInstance]) {
        let Some(bytes) = self.read(Kind::Monitors, tag) else {
            return;
        };
        if let Err(e) = crate::monitor::MonitorStates::restore(&bytes, monitors) {
            tracing::warn!(
                server = tag,
                "the kept monitor states are not readable ({e}); the monitors start afresh"
            );
        }
    }

    /// Keeps each new value of `changes` (of `kind`, for `tag`) until `stopped`, the last
    /// one too.
    fn follow(
        self,
        kind: Kind,
        tag: &str,
        mut changes: watch::Receiver<Vec<u8>>,
        mut stopped: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let tag = tag.to_owned();
        let gap = match kind {
            Kind::Alerts => std::time::Duration::ZERO,
            Kind::Monitors => STATES_EVERY,
        };
        tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    changed = changes.changed() => changed.is_err(),
                    _ = stopped.wait_for(|s| *s) => true,
                };
                if changes.has_changed().unwrap_or(false) || !stopping {
                    let bytes = changes.borrow_and_update().clone();
                    self.write(kind, &tag, bytes).await;
                }
                if stopping {
                    return;
                }
                // Changes meanwhile wait for the gap; the newest is written after it.
                tokio::select! {
                    () = tokio::time::sleep(gap) => {}
                    _ = stopped.wait_for(|s| *s) => {}
                }
            }
        })
    }

    async fn write(&self, kind: Kind, tag: &str, bytes: Vec<u8>) {
        let what = kind.folder();
        match self {
            Self::Files(dir) => {
                let path = dir.join(what).join(format!("{tag}.json"));
                let written =
                    tokio::task::spawn_blocking(move || crate::state::write_durably(&path, &bytes))
                        .await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(server = tag, "cannot keep the {what}: {e}"),
                    Err(e) => tracing::warn!(server = tag, "cannot keep the {what}: {e}"),
                }
            }
            Self::Etcd(fence) => {
                if matches!(kind, Kind::Monitors) && bytes.len() > MAX_ETCD_STATES {
                    tracing::debug!(
                        server = tag,
                        "the monitor states ({} bytes) are too large to keep in etcd",
                        bytes.len()
                    );
                    return;
                }
                let key = format!("{what}/{tag}");
                if let Err(e) = fence.write(vec![(key, bytes)], Vec::new()).await {
                    tracing::warn!(server = tag, "cannot keep the {what} in etcd: {e}");
                }
            }
        }
    }

    /// Starts keeping `alerts`' book (starting from what was kept) and returns the task.
    pub(super) fn keep_alerts(
        &self,
        tag: &str,
        alerts: &crate::alert::Alerts,
        stopped: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let (keeper, changes) = watch::channel(Vec::new());
        alerts.keep_with(self.alerts(tag), keeper);
        self.clone().follow(Kind::Alerts, tag, changes, stopped)
    }

    /// A channel for the monitor thread's states, and the task that keeps what it sends.
    pub(super) fn keep_monitors(
        &self,
        tag: &str,
        stopped: watch::Receiver<bool>,
    ) -> (MonitorStates, tokio::task::JoinHandle<()>) {
        let (tx, changes) = watch::channel(Vec::new());
        let task = self.clone().follow(Kind::Monitors, tag, changes, stopped);
        (MonitorStates::new(tx), task)
    }
}
