//! Each user's chosen server (`/factorio connect`), kept across restarts in the state folder,
//! or in cluster mode in etcd (written under the gateway owner's fence), so a new gateway
//! owner knows them.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::store::{Change, Key, StateReport, Store, What};

/// The health component of the saved choices.
const COMPONENT: &crate::observe::health::Part = &crate::observe::health::Part::DiscordSelections;

/// Users' chosen servers, by Discord user id.
pub struct Selections {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where the choices are kept: the state folder, or (cluster mode) etcd under the
    /// gateway's claim.
    store: Arc<dyn Store>,
    /// The choices, and how many changes they have seen.
    chosen: Mutex<(BTreeMap<u64, String>, u64)>,
    /// The change last written, so an older snapshot never overwrites a newer one.
    written: Mutex<u64>,
    state: StateReport,
}

impl Selections {
    /// Loads the choices kept in `store` (none if missing or unreadable, which is logged:
    /// users choose again); saves report to `state`. Blocking: call it off the async
    /// threads.
    pub fn load(store: Arc<dyn Store>, state: StateReport) -> Self {
        let chosen = match store.get(&Key::Selections) {
            Ok(bytes) => bytes
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!("cannot read the users' chosen servers: {e}");
                BTreeMap::new()
            }
        };
        Self::of(store, chosen, state)
    }

    fn of(store: Arc<dyn Store>, chosen: BTreeMap<u64, String>, state: StateReport) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
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
        // On a blocking thread (see `set`).
        let saved = serde_json::to_vec(&chosen)
            .map_err(|e| std::io::Error::other(e).into())
            .and_then(|json| self.store.apply(Change::put(Key::Selections, json)));
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
        let store = Arc::new(crate::store::FileStore::new(dir.path().join("state")));
        let s = Selections::load(store.clone(), StateReport::none());
        assert_eq!(s.get(1), None);
        s.set(1, "prod");
        s.set(2, "test");
        let again = Selections::load(store, StateReport::none());
        assert_eq!(
            (again.get(1).as_deref(), again.get(2).as_deref()),
            (Some("prod"), Some("test"))
        );
    }
}
