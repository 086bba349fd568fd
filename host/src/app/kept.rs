//! What a server keeps across restarts of the host (one instance: in the state folder) and
//! across failovers (cluster mode: in etcd, under the owner's fence): its open alerts and
//! its monitors' states. With both, a monitor that raised a warning before a restart knows
//! it did, so it tells of the recovery once, and an alert still true is not posted again.
//!
//! Each is written whenever it changes, the newest last, by one task per kind while the
//! run lasts; a write that fails is logged and the next change tries again.

use std::sync::Arc;

use tokio::sync::watch;

use crate::alert::AlertBook;
use crate::monitor::MonitorStates;
use crate::plugin::MonitorInstance;
use crate::store::{Change, Key, Store, StoreError};

/// The shortest time between two writes of the monitors' states: they change with every
/// sample, and each write is an fsync (or an etcd request); the last one is always written
/// when the run stops.
const STATES_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a server's kept things live: the state folder (`alerts/<tag>.json`,
/// `monitors/<tag>.json`), or etcd under the server's fence.
#[derive(Clone)]
pub(super) struct Keeper(pub(super) Arc<dyn Store>);

/// The kinds of things kept.
#[derive(Clone, Copy)]
enum Kind {
    Alerts,
    Monitors,
}

impl Kind {
    fn key(self, tag: &str) -> Key {
        match self {
            Self::Alerts => Key::Alerts(tag.to_owned()),
            Self::Monitors => Key::Monitors(tag.to_owned()),
        }
    }
}

impl Keeper {
    /// Reads what was kept of `kind` for `tag` (none: nothing, or unreadable, which is
    /// logged). Blocking: call it off the async threads.
    fn read(&self, kind: Kind, tag: &str) -> Option<Vec<u8>> {
        let key = kind.key(tag);
        self.0
            .get(&key)
            .inspect_err(|e| {
                tracing::warn!(server = tag, "cannot read {key} ({e}); starting with none")
            })
            .ok()
            .flatten()
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
        let (store, key) = (self.0.clone(), kind.key(tag));
        let what = key.to_string();
        let written = tokio::task::spawn_blocking(move || store.apply(Change::put(key, bytes)));
        match written.await {
            Ok(Ok(())) => {}
            // The monitors start afresh after a failover.
            Ok(Err(e @ StoreError::TooLarge { .. })) => tracing::debug!(server = tag, "{e}"),
            Ok(Err(e)) => tracing::warn!(server = tag, "cannot keep {what}: {e}"),
            Err(e) => tracing::warn!(server = tag, "cannot keep {what}: {e}"),
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
