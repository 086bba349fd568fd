//! Cluster mode's [`Store`]: what the host keeps, in etcd, written only under the fence of
//! whoever owns it (a server's owner, or the gateway's), read through the same claim.
//!
//! ```text
//! checkpoints/<log>, inflight/<log>, pins/<server>/<slot>, alerts/<server>,
//! monitors/<server>, discord/selections
//! blobs/<sha256> → {parts, len}, blobs/<sha256>/<n> → 1 MiB each
//! ```
//!
//! Its calls wait for etcd through [`wait`], the host's one bridge from blocking code to
//! the async etcd client.

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::runtime::{Handle, RuntimeFlavor};

use super::{ClusterError, Fence};
use crate::store::{Change, Key, Store, StoreError};

/// A blob is kept in parts of this size (etcd refuses requests over 1.5 MiB by default).
const PART: usize = 1 << 20;
/// The largest blob read back.
const MAX_BLOB: usize = 256 << 20;
/// The most monitor state kept for one server: a larger state is not kept (the monitors
/// start afresh after a failover).
const MAX_MONITORS: usize = 512 << 10;

/// How a blob is kept.
#[derive(Serialize, Deserialize)]
struct BlobParts {
    parts: usize,
    len: usize,
}

/// What is kept in etcd under one claim.
#[derive(Clone)]
pub struct EtcdStore {
    fence: Arc<Fence>,
    rt: Handle,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EtcdStore({})", self.fence.what)
    }
}

impl EtcdStore {
    /// The store written under `fence`, waiting for etcd on the runtime `rt`.
    pub fn new(fence: Arc<Fence>, rt: Handle) -> Self {
        Self { fence, rt }
    }

    /// The store under `fence` on the current runtime (call it inside one).
    pub fn here(fence: Arc<Fence>) -> Result<Self, StoreError> {
        let rt = Handle::try_current()
            .map_err(|_| StoreError::Etcd("no async runtime to reach etcd from".into()))?;
        Ok(Self::new(fence, rt))
    }

    /// The claim it writes under.
    pub fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    fn wait<T>(
        &self,
        key: &Key,
        f: impl Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, StoreError> {
        wait(&self.rt, key, f)?.map_err(|e| StoreError::Etcd(e.to_string()))
    }

    fn read(&self, key: &Key, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.wait(key, self.fence.get(name))
    }

    fn put_blob(&self, key: &Key, name: &str, wasm: &[u8]) -> Result<(), StoreError> {
        if self.read(key, name)?.is_some() {
            return Ok(());
        }
        let chunks: Vec<&[u8]> = wasm.chunks(PART).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let part = vec![(format!("{name}/{i}"), chunk.to_vec())];
            self.wait(key, self.fence.write(part, Vec::new()))?;
        }
        // Written last: a blob whose parts are not all there is not there.
        let meta = BlobParts {
            parts: chunks.len(),
            len: wasm.len(),
        };
        let meta = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
        self.wait(
            key,
            self.fence.write(vec![(name.to_owned(), meta)], Vec::new()),
        )
    }

    fn get_blob(&self, key: &Key, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(meta) = self.read(key, name)? else {
            return Ok(None);
        };
        let meta: BlobParts = serde_json::from_slice(&meta)
            .map_err(|e| StoreError::Etcd(format!("{name} is not a blob's parts: {e}")))?;
        let too_large = |len| StoreError::TooLarge {
            key: key.clone(),
            len,
            max: MAX_BLOB,
        };
        if meta.len > MAX_BLOB {
            return Err(too_large(meta.len));
        }
        let mut wasm = Vec::with_capacity(meta.len);
        for i in 0..meta.parts {
            let part = self
                .read(key, &format!("{name}/{i}"))?
                .ok_or_else(|| StoreError::Etcd(format!("{name}/{i} is missing")))?;
            wasm.extend_from_slice(&part);
            if wasm.len() > MAX_BLOB {
                return Err(too_large(wasm.len()));
            }
        }
        Ok(Some(wasm))
    }
}

/// The etcd key of `key` (under the cluster's prefix).
fn name(key: &Key) -> String {
    match key {
        Key::Checkpoint(log) | Key::PreviousCheckpoint(log) => format!("checkpoints/{log}"),
        Key::InFlight(log) => format!("inflight/{log}"),
        Key::Pin { server, slot } => format!("pins/{server}/{slot}"),
        Key::Blob(hash) => format!("blobs/{hash}"),
        Key::Alerts(server) => format!("alerts/{server}"),
        Key::Monitors(server) => format!("monitors/{server}"),
        Key::Selections => "discord/selections".to_owned(),
        Key::StateLost => super::STATE_LOST_KEY.to_owned(),
    }
}

impl Store for EtcdStore {
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        match key {
            // etcd keeps no checkpoint before the last: a transaction cannot be torn.
            Key::PreviousCheckpoint(_) => Ok(None),
            Key::Blob(_) => self.get_blob(key, &name(key)),
            _ => self.read(key, &name(key)),
        }
    }

    fn apply(&self, change: Change) -> Result<(), StoreError> {
        let about = (change.puts.first().map(|(k, ..)| k))
            .or(change.deletes.first())
            .cloned();
        let mut puts = Vec::new();
        for (key, bytes, _) in change.puts {
            match &key {
                Key::PreviousCheckpoint(_) | Key::StateLost => {
                    return Err(StoreError::ReadOnly(key));
                }
                Key::Blob(_) => self.put_blob(&key, &name(&key), &bytes)?,
                Key::Monitors(_) if bytes.len() > MAX_MONITORS => {
                    let len = bytes.len();
                    let max = MAX_MONITORS;
                    return Err(StoreError::TooLarge { key, len, max });
                }
                _ => puts.push((name(&key), bytes)),
            }
        }
        let deletes: Vec<String> = change.deletes.iter().map(name).collect();
        match about {
            Some(key) if !puts.is_empty() || !deletes.is_empty() => {
                self.wait(&key, self.fence.write(puts, deletes))
            }
            _ => Ok(()),
        }
    }

    fn locate(&self, key: &Key) -> String {
        format!("etcd's {}", name(key))
    }

    fn shared(&self) -> bool {
        true
    }

    fn holds(&self) -> bool {
        self.fence.valid()
    }

    fn release(&self) {
        self.fence.lose();
    }

    fn settle_time(&self) -> Option<std::time::Duration> {
        Some(self.fence.lease_ttl())
    }
}

/// Waits for `f` from blocking code: the host's one bridge to the async etcd client. On
/// the multi-thread runtime the host runs on it is correct from a worker thread (inside
/// `block_in_place`), a blocking thread, or a thread of the host's own (plugin threads,
/// on `rt`); inside a current-thread runtime, which could not drive `f` while it waits,
/// it refuses with an error naming `key` instead of panicking.
pub fn wait<F: Future>(rt: &Handle, key: &Key, f: F) -> Result<F::Output, StoreError> {
    match Handle::try_current() {
        Ok(here) if here.runtime_flavor() == RuntimeFlavor::CurrentThread => {
            Err(StoreError::CurrentThreadRuntime(key.clone()))
        }
        Ok(here) => Ok(tokio::task::block_in_place(|| here.block_on(f))),
        Err(_) => Ok(rt.block_on(f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bridge_waits_from_any_thread_of_a_multi_thread_runtime_and_refuses_a_current_thread_one()
    {
        let key = Key::Selections;
        let rt = tokio::runtime::Runtime::new().unwrap();
        let h = rt.handle().clone();
        // A thread of the host's own (a plugin thread).
        assert_eq!(wait(&h, &key, async { 1 }).unwrap(), 1);
        // An async worker thread, and a blocking thread.
        let (k, h2) = (key.clone(), h.clone());
        let on_worker = rt.block_on(async move {
            tokio::spawn(async move { wait(&h2, &k, async { 2 }).ok() }).await
        });
        assert_eq!(on_worker.unwrap(), Some(2));
        let (k, h2) = (key.clone(), h.clone());
        let on_blocking = rt.block_on(async move {
            tokio::task::spawn_blocking(move || wait(&h2, &k, async { 3 }).ok()).await
        });
        assert_eq!(on_blocking.unwrap(), Some(3));
        // Inside a current-thread runtime: an error, not a panic.
        let single = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let refused = single.block_on(async { wait(&h, &key, async { 4 }) });
        assert!(
            matches!(
                refused,
                Err(StoreError::CurrentThreadRuntime(Key::Selections))
            ),
            "{refused:?}"
        );
    }

    /// A real etcd (when installed): a blob larger than etcd's request limit goes in parts
    /// and comes back whole, and nothing is written once the claim is gone.
    #[cfg(feature = "cluster")]
    #[test]
    fn a_blob_over_etcds_request_limit_is_kept_in_parts_from_any_thread() {
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
        let store = EtcdStore::new(fence.clone(), rt.handle().clone());
        let wasm: Vec<u8> = (0..(2 * PART + PART / 2))
            .map(|i| (i % 251) as u8)
            .collect();
        let abc = Key::Blob("abc".into());
        store.apply(Change::put(abc.clone(), wasm.clone())).unwrap();
        let meta = rt.block_on(fence.get("blobs/abc")).unwrap().unwrap();
        let meta: BlobParts = serde_json::from_slice(&meta).unwrap();
        assert_eq!((meta.parts, meta.len), (3, wasm.len()));
        assert_eq!(store.get(&abc).unwrap().unwrap(), wasm);
        // From inside an async task of the runtime too (the bridge's block_in_place).
        let inside = store.clone();
        let got = rt
            .block_on(async move { tokio::spawn(async move { inside.get(&abc) }).await })
            .unwrap()
            .unwrap();
        assert_eq!(got.map(|w| w.len()), Some(wasm.len()));

        // The claim is given up: no further write goes through.
        rt.block_on(cluster.resign(&key, token)).unwrap();
        let def = Key::Blob("def".into());
        assert!(store.apply(Change::put(def, b"x".to_vec())).is_err());
        assert!(rt.block_on(fence.get("blobs/def")).unwrap().is_none());
        let _ = stop.send(true);
        let _ = child.kill();
        let _ = child.wait();
    }
}
