//! Parser versions chosen while the host ran (a promotion, a rollback, an automatic
//! rollback) are kept in the state folder, so a restart does not silently undo them.
//!
//! A pin holds the version's plugins by content hash (their `.wasm` copied to
//! `versions/blobs/<sha256>.wasm`) and their `init` configurations (which carry the pattern
//! files' text), so the pinned version can be rebuilt exactly, whatever has changed on disk
//! since. An explicit reload (API, CLI, Discord) applies servers.yml again and removes the pin;
//! the watcher does not, unless servers.yml now gives a version other than it gave when the
//! pin was made.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plugin::{ParserChain, Runtime};

/// One parser of a pinned version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinnedParser {
    pub name: String,
    /// SHA-256 of the `.wasm`, in hex: the blob's name.
    pub hash: String,
    /// The `init` configuration.
    pub config: String,
}

/// A version chosen at run time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pin {
    /// The chain's version.
    pub version: String,
    /// `promoted`, `rolled_back` or `auto_rolled_back`.
    pub reason: String,
    /// The version servers.yml gave when the pin was made.
    pub config_version: String,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    pub parsers: Vec<PinnedParser>,
}

/// Where pins are kept: `<state>/versions/`.
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

    fn file(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("{tag}.json"))
    }

    /// Keeps `chain` as `tag`'s pinned version.
    pub fn save(
        &self,
        tag: &str,
        chain: &ParserChain,
        reason: &str,
        config_version: &str,
    ) -> std::io::Result<()> {
        let blobs = self.dir.join("blobs");
        std::fs::create_dir_all(&blobs)?;
        let mut parsers = Vec::new();
        for p in chain.parsers() {
            let plugin = p.plugin();
            let blob = blobs.join(format!("{}.wasm", plugin.hash()));
            if !blob.exists() {
                write_atomically(&blob, plugin.wasm())?;
            }
            parsers.push(PinnedParser {
                name: plugin.name().to_owned(),
                hash: plugin.hash().to_owned(),
                config: p.config().to_owned(),
            });
        }
        let pin = Pin {
            version: chain.version(),
            reason: reason.to_owned(),
            config_version: config_version.to_owned(),
            at_ms: crate::event::unix_ms::millis(std::time::SystemTime::now()),
            parsers,
        };
        let json = serde_json::to_vec_pretty(&pin).map_err(std::io::Error::other)?;
        write_atomically(&self.file(tag), &json)
    }

    /// `tag`'s pin, if it has a readable one.
    pub fn load(&self, tag: &str) -> Option<Pin> {
        let bytes = std::fs::read(self.file(tag)).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(pin) => Some(pin),
            Err(e) => {
                tracing::warn!(
                    server = tag,
                    "ignoring the unreadable pinned version {}: {e}",
                    self.file(tag).display()
                );
                None
            }
        }
    }

    /// Forgets `tag`'s pin.
    pub fn clear(&self, tag: &str) {
        let _ = std::fs::remove_file(self.file(tag));
    }

    /// Rebuilds the pinned version of `tag` (each blob checked against its hash).
    pub fn chain(&self, runtime: &Runtime, tag: &str, pin: &Pin) -> anyhow::Result<ParserChain> {
        use anyhow::Context;
        let mut parsers = Vec::new();
        for p in &pin.parsers {
            anyhow::ensure!(
                p.hash.len() == 64 && p.hash.bytes().all(|b| b.is_ascii_hexdigit()),
                "`{}` is not a content hash",
                p.hash
            );
            let path = self.dir.join("blobs").join(format!("{}.wasm", p.hash));
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            // The stock plugins share idle instances between servers, as at start.
            let plugin = match crate::plugin::stock::PluginSource::parse(&p.name) {
                crate::plugin::stock::PluginSource::Stock(_) => {
                    runtime.load_stateless(&p.name, &bytes)
                }
                crate::plugin::stock::PluginSource::File(_) => runtime.load(&p.name, &bytes),
            }
            .with_context(|| format!("plugin {}", p.name))?;
            anyhow::ensure!(
                plugin.hash() == p.hash,
                "{} does not match its hash",
                path.display()
            );
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
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
