//! The idle instances of stateless plugins, shared by every server that runs one with the
//! same configuration.

use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;

/// Instances of a stateless plugin that are not in a call, by configuration, shared by
/// every server that runs the plugin with that configuration. A server takes one for a
/// call and gives it back after; one that faulted is dropped. Idle servers so cost no
/// instance of their own.
///
/// A configuration is known by its SHA-256 (a pattern set's text can be megabytes) and
/// counts its users: when the last `Instance` of a configuration goes (a reload gave its
/// servers new pattern files), its idle instances go with it, so edits do not pile up.
pub(crate) struct IdleInstances<T>(Mutex<HashMap<ConfigKey, Pool<T>>>);

/// The SHA-256 of an `init` configuration.
pub(crate) type ConfigKey = [u8; 32];

struct Pool<T> {
    /// Instances started with this configuration and not dropped.
    users: usize,
    idle: Vec<T>,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Self {
            users: 0,
            idle: Vec::new(),
        }
    }
}

/// Idle instances kept per configuration; more are dropped when given back.
const MAX_IDLE: usize = 2;

impl<T> Default for IdleInstances<T> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<T> IdleInstances<T> {
    /// Idle instances of every configuration.
    pub(crate) fn len(&self) -> usize {
        self.lock().values().map(|p| p.idle.len()).sum()
    }

    /// Configurations with a user.
    pub(crate) fn configurations(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConfigKey, Pool<T>>> {
        self.0.lock()
    }

    /// A user of `key` starts (its idle instances are kept while it has users).
    pub(crate) fn join(&self, key: ConfigKey) {
        self.lock().entry(key).or_default().users += 1;
    }

    /// A user of `key` is gone; with the last one, its idle instances go.
    pub(crate) fn leave(&self, key: ConfigKey) {
        let mut pools = self.lock();
        if let Some(pool) = pools.get_mut(&key) {
            pool.users = pool.users.saturating_sub(1);
            if pool.users == 0 {
                pools.remove(&key);
            }
        }
    }

    /// An idle instance of `key`, if there is one.
    pub(crate) fn take(&self, key: &ConfigKey) -> Option<T> {
        self.lock().get_mut(key).and_then(|p| p.idle.pop())
    }

    /// Gives an instance of `key` back (dropped if enough wait, or no user is left).
    pub(crate) fn put(&self, key: &ConfigKey, live: T) {
        if let Some(pool) = self.lock().get_mut(key)
            && pool.idle.len() < MAX_IDLE
        {
            pool.idle.push(live);
        }
    }
}

/// The key of an `init` configuration.
pub(crate) fn config_key(config: &str) -> ConfigKey {
    use sha2::Digest;
    sha2::Sha256::digest(config.as_bytes()).into()
}
