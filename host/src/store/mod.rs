//! What the host keeps across restarts and failovers, behind one interface: checkpoints and
//! the batch in flight, pinned versions and their plugins' blobs, open alerts, monitor
//! states, and the Discord users' chosen servers.
//!
//! A [`Store`] reads and writes values by typed [`Key`]. [`FileStore`] keeps them in the
//! state folder, each file written [durably](durable); cluster mode's store keeps them in
//! etcd under the owner's fence (`cluster::kept`).
//!
//! **Where blocking happens.** A store's calls block (the disk, or a round trip to etcd):
//! make them on a blocking thread (`spawn_blocking`, a plugin thread, the CLI), never
//! inside an async task. etcd's side waits for its calls through one bridge
//! (`cluster::bridge`), which on the multi-thread runtime the host runs on is correct from
//! any thread, and which returns [`StoreError::CurrentThreadRuntime`] rather than
//! panicking from inside a current-thread runtime.

pub mod durable;
mod files;
pub mod report;

use std::fmt;

pub use files::FileStore;
pub use report::{StateReport, What};

use crate::slot::Slot;

/// What is kept, and for whom.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// Where a log (by its checkpoint name) was delivered up to.
    Checkpoint(String),
    /// The checkpoint a put of [`Key::Checkpoint`] replaced (kept by the file store only;
    /// read-only).
    PreviousCheckpoint(String),
    /// The batch of a log being delivered (kept by cluster mode's store only).
    InFlight(String),
    /// A server's version of a slot chosen at run time.
    Pin { server: String, slot: Slot },
    /// A plugin's `.wasm`, by the SHA-256 of its content in hex.
    Blob(String),
    /// A server's open alerts.
    Alerts(String),
    /// A server's monitors' states.
    Monitors(String),
    /// The servers Discord users chose.
    Selections,
    /// Whether the cluster's state is known lost (cluster mode only; read-only here).
    StateLost,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Checkpoint(log) => write!(f, "the checkpoint of {log}"),
            Self::PreviousCheckpoint(log) => write!(f, "the previous checkpoint of {log}"),
            Self::InFlight(log) => write!(f, "the batch in flight of {log}"),
            Self::Pin { server, slot } => write!(f, "the pinned {slot} of {server}"),
            Self::Blob(hash) => write!(f, "the plugin blob {hash}"),
            Self::Alerts(server) => write!(f, "the open alerts of {server}"),
            Self::Monitors(server) => write!(f, "the monitor states of {server}"),
            Self::Selections => f.write_str("the users' chosen servers"),
            Self::StateLost => f.write_str("the mark of a lost cluster state"),
        }
    }
}

/// Writes that happen together: in etcd one transaction (all or none); in files one after
/// the other, in order, each durable.
#[derive(Debug, Default)]
pub struct Change {
    /// Values to put, each with whether the value it replaces is kept as the previous one
    /// (the file store's checkpoints).
    pub puts: Vec<(Key, Vec<u8>, Keep)>,
    pub deletes: Vec<Key>,
}

/// Whether a put keeps the value it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Only the new value.
    Nothing,
    /// The value replaced becomes the previous one (a checkpoint whose file is good).
    Previous,
}

impl Change {
    /// A change that puts `bytes` at `key`.
    pub fn put(key: Key, bytes: Vec<u8>) -> Self {
        Self::default().and_put(key, bytes)
    }

    /// A change that deletes `key`.
    pub fn delete(key: Key) -> Self {
        Self::default().and_delete(key)
    }

    /// Also puts `bytes` at `key`.
    pub fn and_put(mut self, key: Key, bytes: Vec<u8>) -> Self {
        self.puts.push((key, bytes, Keep::Nothing));
        self
    }

    /// Also puts `bytes` at `key`, keeping the value it replaces as the previous one.
    pub fn and_replace(mut self, key: Key, bytes: Vec<u8>) -> Self {
        self.puts.push((key, bytes, Keep::Previous));
        self
    }

    /// Also deletes `key`.
    pub fn and_delete(mut self, key: Key) -> Self {
        self.deletes.push(key);
        self
    }
}

/// Why a value could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file of the state folder (the error names it).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// etcd could not be asked, or refused.
    #[error("etcd: {0}")]
    Etcd(String),
    /// Cluster mode: this instance does not own what the key belongs to (any more).
    #[error("this instance does not own {0}")]
    NotOwner(String),
    /// A blocking call made from inside a current-thread runtime, where it cannot wait.
    #[error(
        "{0} was asked for from inside a current-thread async runtime, where it cannot be waited for"
    )]
    CurrentThreadRuntime(Key),
    /// A value too large for where it is kept.
    #[error("{key} is {len} bytes, over the {max} kept there")]
    TooLarge { key: Key, len: usize, max: usize },
    /// A key that cannot be written (a previous checkpoint).
    #[error("{0} is not written directly")]
    ReadOnly(Key),
}

impl From<StoreError> for std::io::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Io(e) => e,
            other => std::io::Error::other(other),
        }
    }
}

/// Values by key, kept across restarts (see the module's doc for where its calls may run).
pub trait Store: Send + Sync + fmt::Debug {
    /// The value at `key`, if there is one.
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError>;

    /// Applies `change`: in etcd all or none; in files in order, each put durable.
    fn apply(&self, change: Change) -> Result<(), StoreError>;

    /// Where `key` is kept, for messages (a file's path, etcd's key).
    fn locate(&self, key: &Key) -> String {
        key.to_string()
    }

    /// Whether this store is shared by a cluster (etcd) rather than this instance's own.
    fn shared(&self) -> bool {
        false
    }

    /// Whether writes may still go through (cluster mode: the claim they are made under
    /// still holds).
    fn holds(&self) -> bool {
        true
    }

    /// Gives up the claim writes are made under (cluster mode: after a write whose outcome
    /// is unknown, the next owner starts from what etcd has).
    fn release(&self) {}

    /// How long others may take to put back what a shared store lost (cluster mode: a
    /// lease's TTL); none for a store of this instance's own.
    fn settle_time(&self) -> Option<std::time::Duration> {
        None
    }
}
