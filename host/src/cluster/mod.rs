//! Cluster mode: several instances share one servers.yml and an etcd cluster, and each
//! server has exactly one owner at a time: the instance that holds its election key in
//! etcd under its lease. Only the owner tails the server's logs, holds its RCON, runs its
//! monitors and delivers; every state write that matters is an etcd transaction guarded by
//! the owner's fencing token, so an owner that lost its lease (paused, cut off) can write
//! nothing after another took over.
//!
//! ```text
//! prefix/members/<instance>   the instance, under its lease (who is alive)
//! prefix/owners/<server>      the owner's instance id, under its lease; the fencing token
//!                             is this key's create revision
//! prefix/gateway              the instance that runs the Discord gateway
//! prefix/checkpoints/<log>    where each log was delivered up to (fenced)
//! prefix/inflight/<log>       the batch being delivered (fenced), replayed the same way
//!                             by the next owner so Discord's nonces match
//! prefix/alerts/<server>      the server's open alerts (fenced)
//! prefix/pins/<server>/<slot> the version chosen at run time (fenced), its plugins in
//! prefix/blobs/<sha256>[/<n>]  by content hash, in parts
//! prefix/discord/selections   the users' chosen servers (fenced by the gateway's claim)
//! ```
//!
//! This module is the etcd side ([`Cluster`]: the lease, the keys, elections, fenced
//! writes); `app::cluster` decides, and starts and stops the servers.

mod lease;
pub mod placement;
mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

pub use lease::Lease;
use store::{Entry, Store};

use crate::config::ClusterSettings;
use crate::observe::metrics::Metrics;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// etcd could not be asked (down, unreachable, refused).
    #[error("etcd: {0}")]
    Etcd(String),
    /// The write was refused: this instance no longer owns what it wrote for (its lease
    /// expired, or another instance took over).
    #[error("fenced: this instance no longer owns {0}")]
    Fenced(String),
}

/// A connection to the cluster's etcd, as this instance.
pub struct Cluster {
    pub id: String,
    pub prefix: String,
    pub ttl: Duration,
    store: Store,
    pub lease: Arc<Lease>,
    metrics: Arc<Metrics>,
}

/// Who holds one key right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub instance: String,
    /// The key's create revision: the holder's fencing token.
    pub token: i64,
    /// The lease it is held under.
    pub lease: i64,
}

/// One view of the cluster: its live instances and who owns what.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub members: Vec<String>,
    /// By server tag.
    pub owners: BTreeMap<String, Holder>,
    pub gateway: Option<Holder>,
}

impl Cluster {
    /// Connects (lazily: etcd may be down now) with `settings`.
    pub async fn connect(
        settings: &ClusterSettings,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        for outcome in ["won", "lost"] {
            metrics.cluster_elections.with_label_values(&[outcome]);
        }
        Ok(Arc::new(Self {
            id: settings.instance_id.clone(),
            prefix: settings.prefix.clone(),
            ttl: settings.lease_ttl,
            store: Store::new(settings)?,
            lease: Arc::new(Lease::new(settings.lease_ttl)),
            metrics,
        }))
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// The key of server `tag`'s election.
    pub fn owner_key(&self, tag: &str) -> String {
        self.key(&format!("owners/{tag}"))
    }

    /// The key of the Discord gateway's election.
    pub fn gateway_key(&self) -> String {
        self.key("gateway")
    }

    /// Keeps this instance's lease (and its membership key) alive until `stop`; see
    /// [`Lease`].
    pub fn keep_alive(
        self: &Arc<Self>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(lease::keep(self.clone(), stop))
    }

    /// Who is alive and who owns what, in one read of etcd.
    pub async fn view(&self) -> Result<View, ClusterError> {
        let (members_prefix, owners_prefix) = (self.key("members/"), self.key("owners/"));
        let members = self.store.range(&members_prefix).await?;
        let owners = self.store.range(&owners_prefix).await?;
        let gateway = self.store.get(&self.gateway_key()).await?;
        let mut view = View::default();
        for e in &members {
            if let Some(id) = e.key.strip_prefix(&members_prefix) {
                view.members.push(id.to_owned());
            }
        }
        for e in &owners {
            if let Some(tag) = e.key.strip_prefix(&owners_prefix) {
                view.owners.insert(tag.to_owned(), holder(e));
            }
        }
        view.gateway = gateway.as_ref().map(holder);
        Ok(view)
    }

    /// Tries to take `key` for this instance under its lease: succeeds only if nobody holds
    /// it. Returns the fencing token (the key's create revision) when taken.
    pub async fn campaign(&self, key: &str) -> Result<Option<i64>, ClusterError> {
        let Some(lease) = self.lease.current() else {
            return Ok(None);
        };
        let won = self.store.create(key, &self.id, lease).await?;
        let outcome = if won.is_some() { "won" } else { "lost" };
        self.metrics
            .cluster_elections
            .with_label_values(&[outcome])
            .inc();
        Ok(won)
    }

    /// Gives `key` up, if this instance still holds it under `token`.
    pub async fn resign(&self, key: &str, token: i64) -> Result<(), ClusterError> {
        self.store
            .write_if(key, token, Vec::new(), vec![key.to_owned()])
            .await?;
        Ok(())
    }

    /// A fence for what this instance owns under `key` with `token`.
    pub fn fence(self: &Arc<Self>, what: &str, key: String, token: i64) -> Arc<Fence> {
        Arc::new(Fence {
            what: what.to_owned(),
            key,
            token,
            lease: self.lease.current().unwrap_or(0),
            cluster: self.clone(),
            lost: AtomicBool::new(false),
        })
    }

    /// Reads one of the cluster's state keys (`checkpoints/prod`).
    pub async fn get(&self, rest: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        Ok(self.store.get(&self.key(rest)).await?.map(|e| e.value))
    }
}

fn holder(e: &Entry) -> Holder {
    Holder {
        instance: String::from_utf8_lossy(&e.value).into_owned(),
        token: e.create_revision,
        lease: e.lease,
    }
}

/// What an owner holds: its claim on one key (a server's election, the gateway's), which
/// guards every state write made for it.
pub struct Fence {
    /// What is owned, for messages (`server prod`).
    pub what: String,
    key: String,
    token: i64,
    lease: i64,
    cluster: Arc<Cluster>,
    lost: AtomicBool,
}

impl Fence {
    /// Whether this instance may still act as the owner: its lease is the one it won under
    /// and is still valid by its own clock, and no write was refused.
    pub fn valid(&self) -> bool {
        !self.lost.load(Ordering::Acquire)
            && self.cluster.lease.current() == Some(self.lease)
            && self.cluster.lease.valid()
    }

    /// The fencing token.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// Marks the ownership lost (the manager stops what it guards).
    pub fn lose(&self) {
        self.lost.store(true, Ordering::Release);
    }

    /// Writes `puts` and `deletes` (keys under the cluster's prefix) in one transaction that
    /// happens only while this fence's key is still the one it won; a refusal marks the
    /// fence lost. Nothing is sent once the lease is no longer valid by the local clock.
    pub async fn write(
        &self,
        puts: Vec<(String, Vec<u8>)>,
        deletes: Vec<String>,
    ) -> Result<(), ClusterError> {
        if !self.valid() {
            self.cluster.metrics.cluster_fencing_rejections.inc();
            return Err(ClusterError::Fenced(self.what.clone()));
        }
        let c = &self.cluster;
        let puts = puts.into_iter().map(|(k, v)| (c.key(&k), v)).collect();
        let deletes = deletes.iter().map(|k| c.key(k)).collect();
        let done = c
            .store
            .write_if(&self.key, self.token, puts, deletes)
            .await?;
        c.metrics.cluster_writes.inc();
        if done {
            Ok(())
        } else {
            self.lose();
            self.cluster.metrics.cluster_fencing_rejections.inc();
            tracing::warn!(what = %self.what, "a write was refused: another instance owns it now; stopping");
            Err(ClusterError::Fenced(self.what.clone()))
        }
    }

    /// Reads one of the cluster's state keys.
    pub async fn get(&self, rest: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        self.cluster.get(rest).await
    }
}

/// A lease id, shared: none while this instance has no lease.
#[derive(Debug, Default)]
pub(crate) struct LeaseId(AtomicI64);

impl LeaseId {
    fn get(&self) -> Option<i64> {
        let id = self.0.load(Ordering::Acquire);
        (id != 0).then_some(id)
    }

    fn set(&self, id: Option<i64>) {
        self.0.store(id.unwrap_or(0), Ordering::Release);
    }
}

/// The cluster as this instance last saw it, for `GET /api/cluster` and `status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    /// This instance's id.
    pub instance: String,
    /// Whether this instance holds a valid lease (etcd answers it): without one it owns
    /// nothing and delivers nothing.
    pub lease_valid: bool,
    /// Live instances, by id.
    pub instances: Vec<String>,
    /// Each configured server's owner (none: nobody owns it right now).
    pub owners: BTreeMap<String, Option<String>>,
    /// The instance that runs the Discord gateway (commands, chat relay).
    pub gateway: Option<String>,
    /// When this view was read (Unix ms; 0: never).
    pub seen_at_ms: u64,
}
