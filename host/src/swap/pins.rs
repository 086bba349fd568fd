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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Slot;
use crate::plugin::{MonitorInstance, ParserChain, Plugin, Runtime};

/// One plugin of a pinned version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinnedPlugin {
    pub name: String,
    /// SHA-256 of the `.wasm`, in hex: the blob's name.
    pub hash: String,
    /// The `init` configuration.
    pub config: String,
}

/// A version chosen at run time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pin {
    /// The slot's version.
    pub version: String,
    /// `promoted`, `rolled_back` or `auto_rolled_back`.
    pub reason: String,
    /// The version servers.yml gave when the pin was made.
    pub config_version: String,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// The plugins, in order.
    #[serde(alias = "parsers")]
    pub plugins: Vec<PinnedPlugin>,
}

/// Where pins are kept: `<state>/versions/`, one file per server and slot.
#[derive(Debug, Clone)]
pub struct PinStore {
    dir: PathBuf,
}

impl PinStore {
    /// Pins under `state_dir/versions`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("versions"),
        }
    }

    fn file(&self, tag: &str, slot: Slot) -> PathBuf {
        match slot {
            Slot::Parsers => self.dir.join(format!("{tag}.json")),
            Slot::Monitors => self.dir.join(format!("{tag}.monitors.json")),
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
        reason: &str,
        config_version: &str,
    ) -> std::io::Result<()> {
        let blobs = self.dir.join("blobs");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", blobs.display())))?;
        let mut pinned = Vec::new();
        for (plugin, config) in plugins {
            let blob = blobs.join(format!("{}.wasm", plugin.hash()));
            if !blob.exists() {
                crate::state::write_durably(&blob, plugin.wasm())?;
            }
            pinned.push(PinnedPlugin {
                name: plugin.name().to_owned(),
                hash: plugin.hash().to_owned(),
                config: config.to_owned(),
            });
        }
        let pin = Pin {
            version: version.to_owned(),
            reason: reason.to_owned(),
            config_version: config_version.to_owned(),
            at_ms: crate::event::unix_ms::millis(std::time::SystemTime::now()),
            plugins: pinned,
        };
        let json = serde_json::to_vec_pretty(&pin).map_err(std::io::Error::other)?;
        crate::state::write_durably(&self.file(tag, slot), &json)
    }

    /// `tag`'s pin of `slot`, if it has a readable one.
    pub fn load(&self, tag: &str, slot: Slot) -> Option<Pin> {
        let file = self.file(tag, slot);
        let bytes = match crate::files::read_regular(&file, 64 << 20) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(server = tag, "ignoring the unreadable pinned version: {e}");
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(pin) => Some(pin),
            Err(e) => {
                tracing::warn!(
                    server = tag,
                    "ignoring the unreadable pinned version {}: {e}",
                    file.display()
                );
                None
            }
        }
    }

    /// Forgets `tag`'s pin of `slot` (there being none is no error).
    pub fn clear(&self, tag: &str, slot: Slot) -> std::io::Result<()> {
        let file = self.file(tag, slot);
        match std::fs::remove_file(&file) {
            // Nothing there, or nothing can be there (a file where the folder should be).
            Err(e)
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", file.display()),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Loads the plugins of `pin` (each blob checked against its hash), with their
    /// configurations. With `share_stock`, the stock plugins share idle instances between
    /// servers, as at start (parsers; never monitors, which keep state).
    fn plugins<'p>(
        &self,
        runtime: &Runtime,
        pin: &'p Pin,
        share_stock: bool,
    ) -> anyhow::Result<Vec<(Arc<Plugin>, &'p PinnedPlugin)>> {
        use anyhow::Context;
        let mut plugins = Vec::new();
        for p in &pin.plugins {
            anyhow::ensure!(
                p.hash.len() == 64 && p.hash.bytes().all(|b| b.is_ascii_hexdigit()),
                "`{}` is not a content hash",
                p.hash
            );
            let path = self.dir.join("blobs").join(format!("{}.wasm", p.hash));
            let bytes = crate::files::read_regular(&path, runtime.limits().file_bytes)
                .with_context(|| format!("cannot read {}", path.display()))?;
            // Checked before anything is compiled: a blob that is not what was kept is
            // never run, nor even compiled.
            anyhow::ensure!(
                crate::plugin::content_hash(&bytes) == p.hash,
                "{} does not match its hash",
                path.display()
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
        for (plugin, p) in self.plugins(runtime, pin, true)? {
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
        for (plugin, p) in self.plugins(runtime, pin, false)? {
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
            reason: "promoted".into(),
            config_version: "c".into(),
            at_ms: 1,
            plugins: Vec::new(),
        }
    }

    fn write(store: &PinStore, tag: &str, slot: Slot, pin: &Pin) {
        std::fs::create_dir_all(&store.dir).unwrap();
        std::fs::write(store.file(tag, slot), serde_json::to_vec(pin).unwrap()).unwrap();
    }

    #[test]
    fn each_slot_has_its_own_pin() {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::new(dir.path());
        write(&store, "prod", Slot::Parsers, &pin("p1"));
        write(&store, "prod", Slot::Monitors, &pin("m1"));
        assert_eq!(store.load("prod", Slot::Parsers).unwrap().version, "p1");
        assert_eq!(store.load("prod", Slot::Monitors).unwrap().version, "m1");
        store.clear("prod", Slot::Monitors).unwrap();
        assert!(store.load("prod", Slot::Monitors).is_none());
        assert_eq!(store.load("prod", Slot::Parsers).unwrap().version, "p1");
    }

    #[test]
    fn a_pin_written_before_monitors_had_pins_still_loads_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::new(dir.path());
        std::fs::create_dir_all(&store.dir).unwrap();
        std::fs::write(
            store.file("prod", Slot::Parsers),
            r#"{"version":"v","reason":"promoted","config_version":"c","at_ms":1,
                "parsers":[{"name":"patterns","hash":"ab","config":"{}"}]}"#,
        )
        .unwrap();
        let p = store.load("prod", Slot::Parsers).unwrap();
        assert_eq!(p.plugins[0].name, "patterns");
        std::fs::write(store.file("prod", Slot::Parsers), "not json").unwrap();
        assert!(store.load("prod", Slot::Parsers).is_none());
    }

    #[test]
    fn a_pin_naming_a_path_instead_of_a_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::new(dir.path());
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
