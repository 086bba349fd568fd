//! The cluster's identity, so an etcd that lost its state (wiped, replaced) is not taken
//! for a new one: kept in etcd and remembered here; when it is gone, said loudly, marked,
//! and what this instance delivered is given back.

use std::time::{Duration, Instant};

use super::{Manager, Memory};
use crate::cluster::View;

/// How often, while etcd's state is marked lost, the checkpoints are looked at to end it.
const MARKER_CHECK: Duration = Duration::from_secs(10);

impl Manager {
    /// The cluster's identity this instance wrote down last time (its state folder), so
    /// an etcd wiped while every instance was down is still told from a new one.
    pub(super) async fn remembered_identity(&self) -> Option<String> {
        let path = self.state_dir.join("cluster-id");
        tokio::task::spawn_blocking(move || crate::files::read_regular(&path, 4096).ok())
            .await
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// Keeps the cluster's identity: takes one on etcd's first use, remembers it (also in the
    /// state folder), and when etcd no longer has the one it knew (wiped, or another
    /// cluster's data), says so loudly and marks the state lost, so the owners take missing
    /// checkpoints as lost rather than as first starts. Ends the mark once every log has a
    /// checkpoint again.
    pub(super) async fn identity_tick(&self, view: &View, memory: &mut Memory) {
        let lost = match (&view.identity, &memory.identity) {
            (Some(seen), Some(known)) if seen == known => None,
            (Some(seen), Some(_)) => Some(format!("etcd has another cluster's identity ({seen})")),
            (Some(_), None) => None,
            (None, Some(_)) => Some("etcd has no cluster identity any more".to_owned()),
            (None, None) => {
                let id: String = (0..32)
                    .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
                    .collect();
                let _ = self.cluster.claim_identity(&id).await;
                return;
            }
        };
        if let Some(why) = &lost {
            let when = chrono::Utc::now()
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string();
            tracing::error!(
                "etcd lost the cluster's state ({why}): it was wiped or replaced; every checkpoint missing there is taken as lost (on_lost_checkpoint: from the beginning by default; a log this instance delivered resumes where it got to)"
            );
            self.shared.metrics.cluster.state_lost.inc();
            memory.state_lost = Some(Instant::now());
            if let Err(e) = self.cluster.mark_state_lost(&when).await {
                tracing::warn!("cannot mark the cluster's state lost in etcd: {e}");
            }
        }
        // Another instance may have found the loss first: the mark says so.
        if (lost.is_some() || view.state_lost) && !memory.gave_back {
            memory.gave_back = true;
            self.give_back().await;
        } else if !view.state_lost && lost.is_none() {
            memory.gave_back = false;
        }
        if lost.is_some()
            && view.identity.is_none()
            && let Some(known) = &memory.identity
        {
            let _ = self.cluster.claim_identity(known).await;
        }
        if let Some(seen) = &view.identity
            && memory.identity.as_ref() != Some(seen)
        {
            memory.identity = Some(seen.clone());
            let (path, id) = (self.state_dir.join("cluster-id"), seen.clone());
            let written = tokio::task::spawn_blocking(move || {
                crate::store::durable::write_durably(&path, id.as_bytes())
            })
            .await;
            if let Ok(Err(e)) = written {
                tracing::warn!("cannot keep the cluster's identity in the state folder: {e}");
            }
        }
        if view.state_lost
            && memory
                .marker_checked
                .is_none_or(|t| t.elapsed() >= MARKER_CHECK)
        {
            memory.marker_checked = Some(Instant::now());
            if let Ok(true) = self.cluster.has_checkpoints(&self.logs).await {
                tracing::info!(
                    "every log has a checkpoint in etcd again: the cluster's state is whole"
                );
                let _ = self.cluster.clear_state_lost().await;
            }
        }
    }

    /// What this instance delivered, it gives back to an etcd that lost it: the next owner
    /// of those logs resumes there, and delivers the batch in flight again the same way,
    /// instead of starting at their beginning.
    async fn give_back(&self) {
        let mut restored = 0;
        for log in self.checkpoints.known() {
            let (checkpoint, flight) = (&log.checkpoint, log.in_flight.as_deref());
            if let Ok(true) = self
                .cluster
                .restore_checkpoint(&log.log, checkpoint, flight)
                .await
            {
                restored += 1;
            }
        }
        if restored > 0 {
            tracing::warn!(
                "put back in etcd the checkpoints of {restored} logs this instance delivered"
            );
        }
    }
}
