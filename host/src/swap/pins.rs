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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Slot;
use crate::cluster::Fence;
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

/// Where pins are kept: `<state>/versions/`, one file per server and slot; or etcd.
#[derive(Clone)]
pub struct PinStore {
    dir: PathBuf,
    /// Cluster mode: etcd, through this instance's claim on each server.
    etcd: Option<InEtcd>,
}

/// This instance's claim on a server, if it owns it (cluster mode).
pub type FenceOf = Arc<dyn Fn(&str) -> Option<Arc<Fence>> + Send + Sync>;

#[derive(Clone)]
struct InEtcd {
    fence_of: FenceOf,
    /// The runtime the etcd calls run on; the store's callers are plugin threads and
    /// blocking threads of it, which may wait for them.
    rt: tokio::runtime::Handle,
}

impl std::fmt::Debug for PinStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.etcd {
            None => write!(f, "PinStore({})", self.dir.display()),
            Some(_) => write!(f, "PinStore(etcd)"),
        }
    }
}

/// A blob is kept in parts of this size (etcd refuses requests over 1.5 MiB by default).
const PART: usize = 1 << 20;

/// How a blob is kept in etcd.
#[derive(Serialize, Deserialize)]
struct BlobParts {
    parts: usize,
    len: usize,
}

fn etcd_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("etcd: {e}"))
}

impl PinStore {
    /// Pins under `state_dir/versions`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("versions"),
            etcd: None,
        }
    }

    /// Cluster mode: pins in etcd, written and read through the claim `fence_of` gives for a
    /// server (none: this instance does not own it, and keeps nor reads any pin of it).
    /// Its calls wait for etcd on `rt`: make them on plugin threads or blocking threads.
    pub fn in_etcd(fence_of: FenceOf, rt: tokio::runtime::Handle) -> Self {
        Self {
            dir: PathBuf::new(),
            etcd: Some(InEtcd { fence_of, rt }),
        }
    }

    fn key(tag: &str, slot: Slot) -> String {
        match slot {
            Slot::Parsers => format!("pins/{tag}/parsers"),
            Slot::Monitors => format!("pins/{tag}/monitors"),
        }
    }

    /// The claim on `tag` to read or write its pins with.
    fn fence(e: &InEtcd, tag: &str) -> std::io::Result<Arc<Fence>> {
        (e.fence_of)(tag).ok_or_else(|| {
            std::io::Error::other(format!("this instance does not own server {tag}"))
        })
    }

    /// Keeps `wasm` (whose hash is `hash`) in etcd unless it is there already.
    fn put_blob(e: &InEtcd, fence: &Fence, hash: &str, wasm: &[u8]) -> std::io::Result<()> {
        let key = format!("blobs/{hash}");
        if e.rt
            .block_on(fence.get(&key))
            .map_err(etcd_error)?
            .is_some()
        {
            return Ok(());
        }
        let chunks: Vec<&[u8]> = wasm.chunks(PART).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            e.rt.block_on(fence.write(vec![(format!("{key}/{i}"), chunk.to_vec())], Vec::new()))
                .map_err(etcd_error)?;
        }
        // Written last: a blob whose parts are not all there is not there.
        let parts = serde_json::to_vec(&BlobParts {
            parts: chunks.len(),
            len: wasm.len(),
        })
        .map_err(std::io::Error::other)?;
        e.rt.block_on(fence.write(vec![(key, parts)], Vec::new()))
            .map_err(etcd_error)
    }

    fn get_blob(e: &InEtcd, fence: &Fence, hash: &str, max: usize) -> anyhow::Result<Vec<u8>> {
        let key = format!("blobs/{hash}");
        let meta =
            e.rt.block_on(fence.get(&key))?
                .ok_or_else(|| anyhow::anyhow!("etcd has no {key}"))?;
        let meta: BlobParts = serde_json::from_slice(&meta)?;
        anyhow::ensure!(meta.len <= max, "{key} is over the plugin size limit");
        let mut wasm = Vec::with_capacity(meta.len);
        for i in 0..meta.parts {
            let part =
                e.rt.block_on(fence.get(&format!("{key}/{i}")))?
                    .ok_or_else(|| anyhow::anyhow!("etcd has no {key}/{i}"))?;
            wasm.extend_from_slice(&part);
            anyhow::ensure!(wasm.len() <= max, "{key} is over the plugin size limit");
        }
        Ok(wasm)
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
        if let Some(e) = &self.etcd {
            let fence = Self::fence(e, tag)?;
            let mut pinned = Vec::new();
            for (plugin, config) in plugins {
                Self::put_blob(e, &fence, plugin.hash(), plugin.wasm())?;
                pinned.push(PinnedPlugin {
                    name: plugin.name().to_owned(),
                    hash: plugin.hash().to_owned(),
                    config: config.to_owned(),
                });
            }
            let json = serde_json::to_vec(&Pin {
                version: version.to_owned(),
                reason: reason.to_owned(),
                config_version: config_version.to_owned(),
                at_ms: crate::event::unix_ms::millis(std::time::SystemTime::now()),
                plugins: pinned,
            })
            .map_err(std::io::Error::other)?;
            return e
                .rt
                .block_on(fence.write(vec![(Self::key(tag, slot), json)], Vec::new()))
                .map_err(etcd_error);
        }
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
        if let Some(e) = &self.etcd {
            let fence = Self::fence(e, tag).ok()?;
            return match e.rt.block_on(fence.get(&Self::key(tag, slot))) {
                Ok(bytes) => bytes.and_then(|b| match serde_json::from_slice(&b) {
                    Ok(pin) => Some(pin),
                    Err(err) => {
                        tracing::warn!(
                            server = tag,
                            "ignoring the unreadable pinned version in etcd: {err}"
                        );
                        None
                    }
                }),
                Err(err) => {
                    tracing::warn!(
                        server = tag,
                        "cannot read the pinned version from etcd: {err}"
                    );
                    None
                }
            };
        }
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
        if let Some(e) = &self.etcd {
            let fence = Self::fence(e, tag)?;
            return e
                .rt
                .block_on(fence.write(Vec::new(), vec![Self::key(tag, slot)]))
                .map_err(etcd_error);
        }
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
        tag: &str,
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
            let (bytes, path) = match &self.etcd {
                Some(e) => {
                    let fence = Self::fence(e, tag)?;
                    let max = usize::try_from(runtime.limits().file_bytes).unwrap_or(usize::MAX);
                    (
                        Self::get_blob(e, &fence, &p.hash, max)?,
                        format!("etcd's blobs/{}", p.hash),
                    )
                }
                None => {
                    let path = self.dir.join("blobs").join(format!("{}.wasm", p.hash));
                    let bytes = crate::files::read_regular(&path, runtime.limits().file_bytes)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    (bytes, path.display().to_string())
                }
            };
            // Checked before anything is compiled: a blob that is not what was kept is
            // never run, nor even compiled.
            anyhow::ensure!(
                crate::plugin::content_hash(&bytes) == p.hash,
                "{path} does not match its hash"
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

    /// A real etcd (when installed): a blob larger than etcd's request limit goes in parts
    /// and comes back whole, and nothing is written once the claim is gone.
    #[cfg(feature = "cluster")]
    #[test]
    fn a_blob_over_etcds_request_limit_is_kept_in_parts() {
        let Some(etcd) = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("etcd"))
                .find(|p| p.is_file())
        }) else {
            assert!(
                std::env::var_os("FACTORIO_ISR_REQUIRE_TOOLS").is_none(),
                "etcd is not installed"
            );
            eprintln!("skipped: etcd is not installed");
            return;
        };
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (client, peer) = (free(), free());
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(etcd)
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let settings = crate::config::ClusterSettings {
            endpoints: vec![format!("http://127.0.0.1:{client}")],
            instance_id: "unit".into(),
            lease_ttl: std::time::Duration::from_secs(5),
            prefix: "/unit/".into(),
            tls: None,
            user: None,
        };
        let metrics = Arc::new(crate::observe::metrics::Metrics::new());
        let cluster = rt
            .block_on(crate::cluster::Cluster::connect(&settings, metrics))
            .unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let _keeper = {
            let _in = rt.enter();
            cluster.keep_alive(stopped)
        };
        let started = std::time::Instant::now();
        while !cluster.lease.valid() {
            assert!(started.elapsed().as_secs() < 60, "no lease from etcd");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let key = cluster.owner_key("prod");
        let token = rt.block_on(cluster.campaign(&key)).unwrap().unwrap();
        let fence = cluster.fence("server prod", key.clone(), token);
        let e = InEtcd {
            fence_of: Arc::new(|_| None),
            rt: rt.handle().clone(),
        };
        let wasm: Vec<u8> = (0..(2 * PART + PART / 2))
            .map(|i| (i % 251) as u8)
            .collect();
        PinStore::put_blob(&e, &fence, "abc", &wasm).unwrap();
        let meta = rt.block_on(fence.get("blobs/abc")).unwrap().unwrap();
        let meta: BlobParts = serde_json::from_slice(&meta).unwrap();
        assert_eq!((meta.parts, meta.len), (3, wasm.len()));
        assert_eq!(
            PinStore::get_blob(&e, &fence, "abc", 64 << 20).unwrap(),
            wasm
        );
        assert!(
            PinStore::get_blob(&e, &fence, "abc", PART).is_err(),
            "over the limit"
        );

        // The claim is given up: no further write goes through.
        rt.block_on(cluster.resign(&key, token)).unwrap();
        assert!(PinStore::put_blob(&e, &fence, "def", b"x").is_err());
        assert!(rt.block_on(fence.get("blobs/def")).unwrap().is_none());
        let _ = stop.send(true);
        let _ = child.kill();
        let _ = child.wait();
    }
}
