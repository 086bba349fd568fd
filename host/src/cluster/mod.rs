//! Cluster mode: several instances share one servers.yml and an etcd cluster, and each
//! server has exactly one owner at a time: the instance that holds its election key in
//! etcd under its lease. Only the owner tails the server's logs, holds its RCON, runs its
//! monitors and delivers; every state write that matters is an etcd transaction guarded by
//! the owner's fencing token, so an owner that lost its lease (paused, cut off) can write
//! nothing after another took over.
//!
//! ```text
//! prefix/members/<instance>   the instance, under its lease (who is alive): where it is
//!                             and a digest of each server's entry in its servers.yml
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
//! prefix/meta/cluster-id      the cluster's identity, so an etcd that lost its state (wiped,
//!                             replaced) is told from one that never had any
//! prefix/meta/state-lost      while set: checkpoints missing are lost, not first starts
//! ```
//!
//! This module is the etcd side ([`Cluster`]: the lease, the keys, elections, fenced
//! writes); `app::cluster` decides, and starts and stops the servers.

mod etcd;
pub mod kept;
mod lease;
mod member;
pub mod placement;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use etcd::{Entry, Etcd};
pub use lease::Lease;
pub use member::{Member, config_digests};

use crate::config::ClusterSettings;
use crate::observe::metrics::Metrics;

/// The key etcd holds while the cluster's state is known to be lost (written by the
/// instance that found it so): a checkpoint missing then is lost, not a first start.
pub const STATE_LOST_KEY: &str = "meta/state-lost";

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
    /// Another live instance has this instance's id.
    #[error(
        "another instance with the id `{id}` is live ({address}): give each instance its own \
         id (FACTORIO_ISR_INSTANCE_ID)"
    )]
    Duplicate { id: String, address: String },
    /// This instance's registration changed under it at every try.
    #[error("cannot register this instance: its registration keeps changing")]
    Unsettled,
}

/// A connection to the cluster's etcd, as this instance.
pub struct Cluster {
    pub id: String,
    pub prefix: String,
    pub ttl: Duration,
    etcd: Etcd,
    pub lease: Arc<Lease>,
    metrics: Arc<Metrics>,
    /// What this instance registers as (its address and config digests).
    me: parking_lot::Mutex<Member>,
    /// Told when `me` changes, so the registration is written again.
    me_changed: tokio::sync::Notify,
    /// Another live instance with this id, while there is one (this one then stays out).
    duplicate: parking_lot::Mutex<Option<String>>,
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
    /// Each member's config digests (by id; none from an earlier release).
    pub configs: BTreeMap<String, Option<BTreeMap<String, String>>>,
    /// By server tag.
    pub owners: BTreeMap<String, Holder>,
    pub gateway: Option<Holder>,
    /// The cluster's identity (`meta/cluster-id`), none while etcd has none.
    pub identity: Option<String>,
    /// Whether the cluster's state is known lost (`meta/state-lost`).
    pub state_lost: bool,
}

impl Cluster {
    /// Connects (lazily: etcd may be down now) with `settings`.
    pub async fn connect(
        settings: &ClusterSettings,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        for outcome in ["won", "lost"] {
            metrics.cluster.elections.with_label_values(&[outcome]);
        }
        Ok(Arc::new(Self {
            id: settings.instance_id.clone(),
            prefix: settings.prefix.clone(),
            ttl: settings.lease_ttl,
            etcd: Etcd::new(settings)?,
            lease: Arc::new(Lease::new(settings.lease_ttl)),
            metrics,
            me: parking_lot::Mutex::new(Member {
                id: settings.instance_id.clone(),
                ..Member::default()
            }),
            me_changed: tokio::sync::Notify::new(),
            duplicate: parking_lot::Mutex::new(None),
        }))
    }

    /// Says where this instance is and what its servers.yml holds (`config` digests by
    /// tag); written with its registration, again whenever it changes.
    pub fn introduce(&self, address: Option<String>, config: BTreeMap<String, String>) {
        {
            let mut me = self.me.lock();
            if let Some(a) = address {
                me.address = a;
            }
            me.config = Some(config);
        }
        self.me_changed.notify_one();
    }

    /// What this instance registers as.
    pub fn me(&self) -> Member {
        self.me.lock().clone()
    }

    /// The address of another live instance with this instance's id, while there is one.
    pub fn duplicate(&self) -> Option<String> {
        self.duplicate.lock().clone()
    }

    /// Refuses to start beside a live instance with the same id: its registration is there
    /// from another address. (etcd out of reach: nothing to tell yet; the lease keeper
    /// looks again when it registers.)
    pub async fn check_unique(&self) -> Result<(), ClusterError> {
        let key = self.key(&format!("members/{}", self.id));
        let Ok(Some(entry)) = self.etcd.get(&key).await else {
            return Ok(());
        };
        let other = Member::parse(&self.id, &entry.value);
        if other.address != self.me().address {
            return Err(ClusterError::Duplicate {
                id: self.id.clone(),
                address: shown_address(&other.address),
            });
        }
        Ok(())
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
        let members = self.etcd.range(&members_prefix).await?;
        let owners = self.etcd.range(&owners_prefix).await?;
        let gateway = self.etcd.get(&self.gateway_key()).await?;
        let meta = self.etcd.range(&self.key("meta/")).await?;
        let mut view = View::default();
        for e in &meta {
            match e.key.strip_prefix(&self.key("meta/")) {
                Some("cluster-id") => {
                    view.identity = Some(String::from_utf8_lossy(&e.value).into_owned());
                }
                Some("state-lost") => view.state_lost = true,
                _ => {}
            }
        }
        for e in &members {
            if let Some(id) = e.key.strip_prefix(&members_prefix) {
                view.members.push(id.to_owned());
                view.configs
                    .insert(id.to_owned(), Member::parse(id, &e.value).config);
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
        let won = self.etcd.create(key, &self.id, lease).await?;
        let outcome = if won.is_some() { "won" } else { "lost" };
        self.metrics
            .cluster
            .elections
            .with_label_values(&[outcome])
            .inc();
        Ok(won)
    }

    /// Gives `key` up, if this instance still holds it under `token`.
    pub async fn resign(&self, key: &str, token: i64) -> Result<(), ClusterError> {
        self.etcd
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

    /// Gives the cluster the identity `id` unless it has one; whether it took it.
    pub async fn claim_identity(&self, id: &str) -> Result<bool, ClusterError> {
        let key = self.key("meta/cluster-id");
        Ok(self.etcd.create(&key, id, 0).await?.is_some())
    }

    /// Marks the cluster's state lost (at `when`, for people), unless it is marked already.
    pub async fn mark_state_lost(&self, when: &str) -> Result<(), ClusterError> {
        let key = self.key(STATE_LOST_KEY);
        self.etcd.create(&key, when, 0).await?;
        Ok(())
    }

    /// Ends the mark: every log it was about has a checkpoint again.
    pub async fn clear_state_lost(&self) -> Result<(), ClusterError> {
        let key = self.key(STATE_LOST_KEY);
        self.etcd.delete(&key).await
    }

    /// Puts back the checkpoint of a log and its batch in flight (their stored forms)
    /// unless etcd has a checkpoint for it: an instance that delivered the log gives etcd
    /// back what it lost, so the next owner delivers that batch again the same way.
    pub async fn restore_checkpoint(
        &self,
        log: &str,
        checkpoint: &[u8],
        in_flight: Option<&[u8]>,
    ) -> Result<bool, ClusterError> {
        let mut puts = vec![(self.key(&format!("checkpoints/{log}")), checkpoint.to_vec())];
        if let Some(flight) = in_flight {
            puts.push((self.key(&format!("inflight/{log}")), flight.to_vec()));
        }
        self.etcd.create_all(puts).await
    }

    /// Whether etcd has a checkpoint for every one of `logs` (checkpoint names).
    pub async fn has_checkpoints(&self, logs: &[String]) -> Result<bool, ClusterError> {
        let prefix = self.key("checkpoints/");
        let have: std::collections::BTreeSet<String> = self
            .etcd
            .range(&prefix)
            .await?
            .into_iter()
            .filter_map(|e| e.key.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        Ok(logs.iter().all(|l| have.contains(l)))
    }

    /// Reads one of the cluster's state keys (`checkpoints/prod`).
    pub async fn get(&self, rest: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        Ok(self.etcd.get(&self.key(rest)).await?.map(|e| e.value))
    }
}

/// An address as the messages show it.
fn shown_address(address: &str) -> String {
    if address.is_empty() {
        "an instance of an earlier release, address unknown".to_owned()
    } else {
        format!("at {address}")
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
            self.cluster.metrics.cluster.fencing_rejections.inc();
            return Err(ClusterError::Fenced(self.what.clone()));
        }
        let c = &self.cluster;
        let puts = puts.into_iter().map(|(k, v)| (c.key(&k), v)).collect();
        let deletes = deletes.iter().map(|k| c.key(k)).collect();
        let done = c
            .etcd
            .write_if(&self.key, self.token, puts, deletes)
            .await?;
        c.metrics.cluster.writes.inc();
        if done {
            Ok(())
        } else {
            self.lose();
            self.cluster.metrics.cluster.fencing_rejections.inc();
            tracing::warn!(what = %self.what, "a write was refused: another instance owns it now; stopping");
            Err(ClusterError::Fenced(self.what.clone()))
        }
    }

    /// Reads one of the cluster's state keys.
    pub async fn get(&self, rest: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        self.cluster.get(rest).await
    }

    /// The cluster's lease TTL: the longest an instance takes to notice anything.
    pub fn lease_ttl(&self) -> Duration {
        self.cluster.ttl
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
    /// The servers whose entry in this instance's servers.yml differs from the cluster's
    /// (it does not own them).
    pub config_differs: Vec<String>,
    /// Another live instance with this instance's id (this one stays out), while there is.
    pub duplicate: Option<String>,
    /// Whether this instance found etcd without the cluster's state it had seen.
    pub state_lost: bool,
}
