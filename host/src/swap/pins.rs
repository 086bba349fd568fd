//! Versions of a server's parsers or monitors chosen while the host ran (a promotion, a
//! rollback, an automatic rollback) are kept in the state folder, so a restart does not
//! silently undo them.
//!
//! A pin holds the version's plugins by content hash (their `.wasm` copied to
//! `versions/blobs/<sha256>.wasm`) and their `init` configurations (which carry the pattern
//! files' text), so the pinned version can be rebuilt exactly, whatever has changed on disk
//! since. An explicit reload (API, CLI, Discord) applies servers.yml again and removes the pin;
//! the watcher does not, unless servers.yml now gives a version other than it gave when the
//! pin was made.
//!
//! In cluster mode pins and blobs are kept in etcd instead (`pins/<tag>/<slot>`,
//! `blobs/<sha256>` in parts of 1 MiB, under etcd's request limit), written under the fence of
//! the server's owner, so the next owner starts the version chosen on the last one.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Slot;
use crate::plugin::{MonitorInstance, ParserChain, Plugin, Runtime};
use crate::store::{Change, Key, Store, StoreError};

/// One plugin of a pinned version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinnedPlugin {
    pub name: String,
    /// SHA-256 of the `.wasm`, in hex: the blob's name.
    pub hash: String,
    /// The `init` configuration.
    pub config: String,
}

/// Why a version was chosen at run time (kept as `promoted`, `rolled_back`,
/// `auto_rolled_back`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinReason {
    /// A candidate promoted (API, CLI, Discord).
    Promoted,
    /// Rolled back by an operator.
    RolledBack,
    /// Rolled back by itself, after too many faults on probation.
    AutoRolledBack,
}

impl PinReason {
    /// The reason as kept, shown and counted.
    pub fn name(self) -> &'static str {
        match self {
            Self::Promoted => "promoted",
            Self::RolledBack => "rolled_back",
            Self::AutoRolledBack => "auto_rolled_back",
        }
    }
}

impl std::fmt::Display for PinReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A version chosen at run time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pin {
    /// The slot's version.
    pub version: String,
    /// Why it was chosen.
    pub reason: PinReason,
    /// The version servers.yml gave when the pin was made.
    pub config_version: String,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// The plugins, in order.
    #[serde(alias = "parsers")]
    pub plugins: Vec<PinnedPlugin>,
}

/// Where pins are kept: a server's store (the state folder's, or in cluster mode etcd's
/// under this instance's claim on the server).
#[derive(Clone)]
pub struct PinStore {
    store_of: StoreOf,
}

/// The store a server's pins are kept in: an error when there is none (cluster mode: this
/// instance does not own the server, and keeps nor reads any pin of it).
pub type StoreOf = Arc<dyn Fn(&str) -> Result<Arc<dyn Store>, StoreError> + Send + Sync>;

impl std::fmt::Debug for PinStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinStore")
    }
}

impl PinStore {
    /// Pins kept in `store`, for every server.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::per_server(Arc::new(move |_: &str| Ok(store.clone())))
    }

    /// Pins kept in the store `store_of` gives for each server. Its calls block: make them
    /// on plugin threads or blocking threads.
    pub fn per_server(store_of: StoreOf) -> Self {
        Self { store_of }
    }

    fn key(tag: &str, slot: Slot) -> Key {
        Key::Pin {
            server: tag.to_owned(),
            slot,
        }
    }

    /// Keeps `plugins` (each with its `init` configuration), whose version is `version`, as
    /// `tag`'s pinned version of `slot`.
    pub fn save<'a>(
        &self,
        tag: &str,
        slot: Slot,
        version: &str,
        plugins: impl IntoIterator<Item = (&'a Arc<Plugin>, &'a str)>,
        reason: PinReason,
        config_version: &str,
    ) -> Result<(), StoreError> {
        let store = (self.store_of)(tag)?;
        let mut pinned = Vec::new();
        for (plugin, config) in plugins {
            let blob = Key::Blob(plugin.hash().to_owned());
            store.apply(Change::put(blob, plugin.wasm().to_vec()))?;
            pinned.push(PinnedPlugin {
                name: plugin.name().to_owned(),
                hash: plugin.hash().to_owned(),
                config: config.to_owned(),
            });
        }
        let pin = Pin {
            version: version.to_owned(),
            reason,
            config_version: config_version.to_owned(),
            at_ms: crate::event::unix_ms::millis(std::time::SystemTime::now()),
            plugins: pinned,
        };
        let json = serde_json::to_vec_pretty(&pin).map_err(std::io::Error::other)?;
        store.apply(Change::put(Self::key(tag, slot), json))
    }

    /// `tag`'s pin of `slot`, if it has a readable one (what is not readable is logged).
    pub fn load(&self, tag: &str, slot: Slot) -> Option<Pin> {
        let bytes = (self.store_of)(tag)
            .and_then(|store| store.get(&Self::key(tag, slot)))
            .inspect_err(|e| {
                tracing::warn!(server = tag, "cannot read the pinned {slot}: {e}");
            })
            .ok()??;
        serde_json::from_slice(&bytes)
            .inspect_err(|e| {
                tracing::warn!(server = tag, "ignoring the unreadable pinned {slot}: {e}");
            })
            .ok()
    }

    /// Forgets `tag`'s pin of `slot` (there being none is no error).
    pub fn clear(&self, tag: &str, slot: Slot) -> Result<(), StoreError> {
        (self.store_of)(tag)?.apply(Change::delete(Self::key(tag, slot)))
    }

    /// Loads the plugins of `pin` (each blob checked against its hash), with their
    /// configurations. With `share_stock`, the stock plugins share idle instances between
    /// servers, as at start (parsers; never monitors, which keep state).
    fn plugins<'p>(
        &self,
        runtime: &Runtime,
        tag: &str,
        pin: &'p Pin,
        share_stock: bool,
    ) -> anyhow::Result<Vec<(Arc<Plugin>, &'p PinnedPlugin)>> {
        use anyhow::Context;
        let store = (self.store_of)(tag)?;
        let mut plugins = Vec::new();
        for p in &pin.plugins {
            anyhow::ensure!(
                p.hash.len() == 64 && p.hash.bytes().all(|b| b.is_ascii_hexdigit()),
                "`{}` is not a content hash",
                p.hash
            );
            let key = Key::Blob(p.hash.clone());
            let bytes = store
                .get(&key)
                .with_context(|| format!("cannot read {key}"))?
                .ok_or_else(|| anyhow::anyhow!("{key} is not kept"))?;
            anyhow::ensure!(
                u64::try_from(bytes.len()).unwrap_or(u64::MAX) <= runtime.limits().file_bytes,
                "{key} is over the plugin size limit"
            );
            // Checked before anything is compiled: a blob that is not what was kept is
            // never run, nor even compiled.
            anyhow::ensure!(
                crate::plugin::content_hash(&bytes) == p.hash,
                "{key} does not match its hash"
            );
            let stock = matches!(
                crate::plugin::stock::PluginSource::parse(&p.name),
                crate::plugin::stock::PluginSource::Stock(_)
            );
            let plugin = if share_stock && stock {
                runtime.load_stateless(&p.name, &bytes)
            } else {
                runtime.load(&p.name, &bytes)
            }
            .with_context(|| format!("plugin {}", p.name))?;
            plugins.push((plugin, p));
        }
        Ok(plugins)
    }

    /// Rebuilds the pinned parser chain of `tag`.
    pub fn chain(&self, runtime: &Runtime, tag: &str, pin: &Pin) -> anyhow::Result<ParserChain> {
        use anyhow::Context;
        let mut parsers = Vec::new();
        for (plugin, p) in self.plugins(runtime, tag, pin, true)? {
            parsers.push(
                plugin
                    .parser(tag, &p.config)
                    .with_context(|| format!("plugin {}", p.name))?,
            );
        }
        let chain = ParserChain::new(parsers);
        anyhow::ensure!(
            chain.version() == pin.version,
            "the pinned version rebuilt as another version"
        );
        Ok(chain)
    }

    /// Rebuilds the pinned monitors of `tag`.
    pub fn monitors(
        &self,
        runtime: &Runtime,
        tag: &str,
        pin: &Pin,
    ) -> anyhow::Result<Vec<MonitorInstance>> {
        use anyhow::Context;
        let mut monitors = Vec::new();
        for (plugin, p) in self.plugins(runtime, tag, pin, false)? {
            monitors.push(
                plugin
                    .monitor(tag, &p.config)
                    .with_context(|| format!("plugin {}", p.name))?,
            );
        }
        anyhow::ensure!(
            crate::plugin::monitors_version(&monitors) == pin.version,
            "the pinned version rebuilt as another version"
        );
        Ok(monitors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(version: &str) -> Pin {
        Pin {
            version: version.into(),
            reason: PinReason::Promoted,
            config_version: "c".into(),
            at_ms: 1,
            plugins: Vec::new(),
        }
    }

    fn file(dir: &std::path::Path, tag: &str, slot: Slot) -> std::path::PathBuf {
        let key = PinStore::key(tag, slot);
        let path = crate::store::FileStore::new(dir).path(&key).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        path
    }

    fn write(dir: &std::path::Path, tag: &str, slot: Slot, pin: &Pin) {
        std::fs::write(file(dir, tag, slot), serde_json::to_vec(pin).unwrap()).unwrap();
    }

    fn in_files(dir: &std::path::Path) -> PinStore {
        PinStore::new(Arc::new(crate::store::FileStore::new(dir)))
    }

    #[test]
    fn each_slot_has_its_own_pin() {
        let dir = tempfile::tempdir().unwrap();
        let store = in_files(dir.path());
        write(dir.path(), "prod", Slot::Parsers, &pin("p1"));
        write(dir.path(), "prod", Slot::Monitors, &pin("m1"));
        assert_eq!(store.load("prod", Slot::Parsers).unwrap().version, "p1");
        assert_eq!(store.load("prod", Slot::Monitors).unwrap().version, "m1");
        store.clear("prod", Slot::Monitors).unwrap();
        assert!(store.load("prod", Slot::Monitors).is_none());
        assert_eq!(store.load("prod", Slot::Parsers).unwrap().version, "p1");
    }

    #[test]
    fn a_pin_written_before_monitors_had_pins_still_loads_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = in_files(dir.path());
        std::fs::write(
            file(dir.path(), "prod", Slot::Parsers),
            r#"{"version":"v","reason":"promoted","config_version":"c","at_ms":1,
                "parsers":[{"name":"patterns","hash":"ab","config":"{}"}]}"#,
        )
        .unwrap();
        let p = store.load("prod", Slot::Parsers).unwrap();
        assert_eq!(p.plugins[0].name, "patterns");
        std::fs::write(file(dir.path(), "prod", Slot::Parsers), "not json").unwrap();
        assert!(store.load("prod", Slot::Parsers).is_none());
    }

    #[test]
    fn a_pin_naming_a_path_instead_of_a_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = in_files(dir.path());
        let runtime = Runtime::new(
            crate::plugin::ComponentCache::new(None),
            crate::plugin::Limits::default(),
        )
        .unwrap();
        let mut p = pin("v");
        p.plugins.push(PinnedPlugin {
            name: "x".into(),
            hash: "../../../etc/passwd".into(),
            config: String::new(),
        });
        let err = store.monitors(&runtime, "prod", &p).unwrap_err();
        assert!(err.to_string().contains("is not a content hash"), "{err}");
    }
}
