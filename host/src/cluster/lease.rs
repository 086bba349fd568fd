//! This instance's lease: granted by etcd, kept alive every third of its TTL, and judged
//! valid by this instance's own clock only until the TTL has passed since the last keep-alive
//! etcd answered. When that time is up the instance acts as if it had no lease, whatever etcd
//! says later: an owner that was paused or cut off stops before anyone else can take over.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::etcd::Renewal;
use super::{Cluster, ClusterError, LeaseId};

/// A margin kept below the TTL, for the time a keep-alive took to arrive.
const MARGIN: Duration = Duration::from_millis(500);

/// This instance's lease, as the rest of the process sees it.
#[derive(Debug)]
pub struct Lease {
    ttl: Duration,
    id: LeaseId,
    base: Instant,
    /// Milliseconds after `base` until which the lease is valid (0: not valid).
    valid_until_ms: AtomicU64,
}

impl Lease {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            id: LeaseId::default(),
            base: Instant::now(),
            valid_until_ms: AtomicU64::new(0),
        }
    }

    /// Whether the lease is valid now by this instance's clock.
    pub fn valid(&self) -> bool {
        let now = self.base.elapsed().as_millis() as u64;
        now < self.valid_until_ms.load(Ordering::Acquire)
    }

    /// The lease's id, while there is one.
    pub fn current(&self) -> Option<i64> {
        self.id.get()
    }

    /// etcd renewed the lease for `ttl` in answer to a keep-alive sent at `sent`.
    fn renewed(&self, sent: Instant, ttl: Duration) {
        let until = sent.duration_since(self.base) + ttl.saturating_sub(MARGIN);
        self.valid_until_ms
            .store(until.as_millis() as u64, Ordering::Release);
    }

    fn lost(&self) {
        self.valid_until_ms.store(0, Ordering::Release);
        self.id.set(None);
    }

    /// How long until the lease runs out, by this clock (zero when it has).
    pub fn left(&self) -> Duration {
        let now = self.base.elapsed().as_millis() as u64;
        Duration::from_millis(
            self.valid_until_ms
                .load(Ordering::Acquire)
                .saturating_sub(now),
        )
    }
}

/// Grants a lease, registers this instance under it, and keeps it alive until `stop`; a
/// lease that etcd let expire is replaced by a new one (and every claim made under the old
/// one is gone with it).
pub(super) async fn keep(cluster: Arc<Cluster>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let lease = cluster.lease.clone();
    let every = lease.ttl / 3;
    let mut problem: Option<String> = None;
    let mut note = |p: Option<String>, cluster: &Cluster| {
        match (&p, &problem) {
            (Some(p), old) if old.as_ref() != Some(p) => {
                tracing::warn!(instance = %cluster.id, "cannot keep the lease: {p}");
            }
            (None, Some(_)) => tracing::info!(instance = %cluster.id, "etcd answers again"),
            _ => {}
        }
        cluster
            .metrics
            .cluster
            .etcd_up
            .with_label_values(&[&cluster.id])
            .set(i64::from(p.is_none()));
        problem = p;
    };
    loop {
        if *stop.borrow() {
            break;
        }
        let step = async {
            match lease.current() {
                None => grant(&cluster).await,
                Some(id) => renew(&cluster, id).await,
            }
        };
        match tokio::time::timeout(every.max(Duration::from_millis(500)), step).await {
            Ok(Ok(())) => note(None, &cluster),
            Ok(Err(e)) => note(Some(e.to_string()), &cluster),
            Err(_) => note(Some("no answer in time".into()), &cluster),
        }
        let changed = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = stop.wait_for(|s| *s) => break,
            () = cluster.me_changed.notified() => true,
        };
        if changed && let Some(id) = lease.current() {
            let key = cluster.key(&format!("members/{}", cluster.id));
            let me = cluster.me().to_value();
            if let Err(e) = cluster.etcd.put_leased(&key, &me, id).await {
                tracing::debug!("cannot write this instance's registration again: {e}");
            }
        }
    }
    // Leaving: give the lease back, so what this instance held moves at once.
    if let Some(id) = lease.current() {
        lease.lost();
        let _ = tokio::time::timeout(Duration::from_secs(2), cluster.etcd.revoke(id)).await;
    }
}

async fn grant(cluster: &Cluster) -> Result<(), ClusterError> {
    let sent = Instant::now();
    let ttl = i64::try_from(cluster.lease.ttl.as_secs()).unwrap_or(i64::MAX);
    let (id, granted) = cluster.etcd.grant(ttl).await?;
    if let Err(e) = register(cluster, id).await {
        let _ = cluster.etcd.revoke(id).await;
        return Err(e);
    }
    cluster.lease.id.set(Some(id));
    cluster.lease.renewed(
        sent,
        Duration::from_secs(u64::try_from(granted).unwrap_or(0)),
    );
    tracing::info!(instance = %cluster.id, lease = id, "joined the cluster");
    Ok(())
}

/// Registers this instance under `lease`, unless another live instance has its id: then it
/// stays out (it owns nothing) and says who, until that one is gone. The registration of
/// this instance's own last run (a crash, from the same address) is ended instead.
async fn register(cluster: &Cluster, lease: i64) -> Result<(), ClusterError> {
    let key = cluster.key(&format!("members/{}", cluster.id));
    let me = cluster.me();
    for _ in 0..2 {
        let created = cluster.etcd.create(&key, &me.to_value(), lease).await;
        if created?.is_some() {
            if cluster.duplicate().is_some() {
                tracing::info!(instance = %cluster.id, "no other instance has this id any more");
            }
            *cluster.duplicate.lock() = None;
            cluster.metrics.cluster.duplicate_id.set(0);
            return Ok(());
        }
        let Some(entry) = cluster.etcd.get(&key).await? else {
            continue;
        };
        let other = super::Member::parse(&cluster.id, &entry.value);
        if !me.address.is_empty() && other.address == me.address {
            tracing::info!(instance = %cluster.id, "ending the lease of this instance's last run, still registered");
            let _ = cluster.etcd.revoke(entry.lease).await;
            continue;
        }
        let address = super::shown_address(&other.address);
        let first = cluster.duplicate.lock().replace(address.clone()).is_none();
        cluster.metrics.cluster.duplicate_id.set(1);
        let e = ClusterError::Duplicate {
            id: cluster.id.clone(),
            address,
        };
        if first {
            tracing::error!(instance = %cluster.id, "{e}; this instance stays out of the cluster until it is gone");
        }
        return Err(e);
    }
    Err(ClusterError::Unsettled)
}

/// One keep-alive: etcd renews the lease for its whole TTL, or says it no longer has it.
async fn renew(cluster: &Cluster, id: i64) -> Result<(), ClusterError> {
    let sent = Instant::now();
    match cluster.etcd.keep_alive(id).await {
        Ok(Renewal::Renewed) => {
            cluster.lease.renewed(sent, cluster.lease.ttl);
            Ok(())
        }
        Ok(Renewal::Expired) => {
            // etcd let it expire (a long pause, an outage): everything held under it is gone.
            cluster.lease.lost();
            tracing::warn!(instance = %cluster.id, lease = id, "the lease expired; joining again with a new one");
            grant(cluster).await
        }
        Err(e) => Err(e),
    }
}
