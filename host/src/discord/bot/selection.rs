//! Each user's chosen server (`/factorio connect`), kept across restarts in the state folder,
//! or in cluster mode in etcd (written under the gateway owner's fence), so a new gateway
//! owner knows them.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::state::{StateReport, What};

/// The health component of the saved choices.
const COMPONENT: &str = "discord:selections";

/// Users' chosen servers, by Discord user id.
pub struct Selections {
    inner: Arc<Inner>,
}

struct Inner {
    kept: Kept,
    /// The choices, and how many changes they have seen.
    chosen: Mutex<(BTreeMap<u64, String>, u64)>,
    /// The change last written, so an older snapshot never overwrites a newer one.
    written: Mutex<u64>,
    state: StateReport,
}

/// Where the choices are kept.
enum Kept {
    File(PathBuf),
    /// Cluster mode: under this key, written only while the fence (the gateway's election)
    /// holds.
    Etcd(Arc<crate::cluster::Fence>),
}

/// Cluster mode's key of the choices.
const KEY: &str = "discord/selections";

impl Selections {
    /// Loads the choices saved at `path` (none if the file is missing or unreadable); saves
    /// report to `state`.
    pub fn load(path: PathBuf, state: StateReport) -> Self {
        let chosen = crate::files::read_regular(&path, 16 << 20)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self::of(Kept::File(path), chosen, state)
    }

    /// Cluster mode: the choices kept in etcd, written under `fence` (none when they cannot
    /// be read: users choose again).
    pub async fn load_from_cluster(fence: Arc<crate::cluster::Fence>, state: StateReport) -> Self {
        let chosen = match fence.get(KEY).await {
            Ok(bytes) => bytes
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!("cannot read the users' chosen servers from etcd: {e}");
                BTreeMap::new()
            }
        };
        Self::of(Kept::Etcd(fence), chosen, state)
    }

    fn of(kept: Kept, chosen: BTreeMap<u64, String>, state: StateReport) -> Self {
        Self {
            inner: Arc::new(Inner {
                kept,
                chosen: Mutex::new((chosen, 0)),
                written: Mutex::new(0),
                state,
            }),
        }
    }

    /// The server `user` chose, if any.
    pub fn get(&self, user: u64) -> Option<String> {
        self.inner.chosen.lock().0.get(&user).cloned()
    }

    /// Remembers `tag` for `user`, and saves all choices (durably, off the async runtime's
    /// threads when called on one).
    pub fn set(&self, user: u64, tag: &str) {
        let snapshot = {
            let mut chosen = self.inner.chosen.lock();
            chosen.0.insert(user, tag.to_owned());
            chosen.1 += 1;
            chosen.clone()
        };
        let inner = self.inner.clone();
        let save = move || inner.save(snapshot);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(save)),
            Err(_) => save(),
        }
    }
}

impl Inner {
    fn save(&self, (chosen, change): (BTreeMap<u64, String>, u64)) {
        let mut written = self.written.lock();
        if change <= *written {
            return;
        }
        let saved = serde_json::to_vec(&chosen)
            .map_err(std::io::Error::other)
            .and_then(|json| match &self.kept {
                Kept::File(path) => crate::state::write_durably(path, &json),
                // On a blocking thread of the runtime (see `set`).
                Kept::Etcd(fence) => tokio::runtime::Handle::current()
                    .block_on(fence.write(vec![(KEY.to_owned(), json)], Vec::new()))
                    .map_err(std::io::Error::other),
            });
        match self.state.record(What::Selections, COMPONENT, saved) {
            Ok(()) => *written = change,
            Err(e) => tracing::warn!("cannot save the users' chosen servers: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/discord-selections.json");
        let s = Selections::load(path.clone(), StateReport::none());
        assert_eq!(s.get(1), None);
        s.set(1, "prod");
        s.set(2, "test");
        let again = Selections::load(path, StateReport::none());
        assert_eq!(
            (again.get(1).as_deref(), again.get(2).as_deref()),
            (Some("prod"), Some("test"))
        );
    }
}
