//! The metrics of cluster mode (`factorio_isr_cluster_*`).

use prometheus::{IntCounterVec, IntGaugeVec, Registry};

use super::register::{PREFIX, counter, gauge, register};

/// Ownership, elections, fenced writes and etcd's health, as this instance sees them.
pub struct ClusterMetrics {
    /// `cluster_owner{server, instance}`: 1 for the instance that owns a server (cluster
    /// mode), as this instance last read it.
    pub owner: IntGaugeVec,
    /// `cluster_elections_total{outcome}`: this instance's campaigns (`won`, `lost`).
    pub elections: IntCounterVec,
    /// `cluster_fencing_rejections_total`: this instance's writes etcd refused because
    /// another instance owned what they were for.
    pub fencing_rejections: prometheus::IntCounter,
    /// `cluster_writes_total`: fenced state writes (transactions) to etcd.
    pub writes: prometheus::IntCounter,
    /// `cluster_config_differs{server}`: 1 while this instance's entry of a server in
    /// servers.yml differs from the cluster's (it then does not own that server).
    pub config_differs: IntGaugeVec,
    /// `cluster_state_lost_total`: times this instance found etcd without the cluster's
    /// state it had seen (a wiped or replaced etcd).
    pub state_lost: prometheus::IntCounter,
    /// `cluster_duplicate_id`: 1 while another live instance has this instance's id (this
    /// one stays out of the cluster).
    pub duplicate_id: prometheus::IntGauge,
    /// `cluster_etcd_up{member}`: 1 while etcd answers this instance's keep-alives (cluster
    /// mode only: no series otherwise).
    pub etcd_up: IntGaugeVec,
}

impl ClusterMetrics {
    /// Registers them in `registry`.
    pub(super) fn new(registry: &Registry) -> Self {
        Self {
            owner: gauge(
                registry,
                "cluster_owner",
                "1 for the instance that owns a server, in cluster mode",
                &["server", "instance"],
            ),
            elections: counter(
                registry,
                "cluster_elections_total",
                "Elections this instance ran for a server or the gateway, by outcome",
                &["outcome"],
            ),
            fencing_rejections: register(
                registry,
                prometheus::IntCounter::new(
                    format!("{PREFIX}cluster_fencing_rejections_total"),
                    "Fenced writes refused because this instance no longer owned what they were for (by etcd, or before sending once its lease had run out)",
                ),
            ),
            writes: register(
                registry,
                prometheus::IntCounter::new(
                    format!("{PREFIX}cluster_writes_total"),
                    "Fenced state writes (transactions) to etcd",
                ),
            ),
            config_differs: gauge(
                registry,
                "cluster_config_differs",
                "1 while this instance's servers.yml entry of a server differs from the one most instances have (it does not own that server)",
                &["server"],
            ),
            state_lost: register(
                registry,
                prometheus::IntCounter::new(
                    format!("{PREFIX}cluster_state_lost_total"),
                    "Times this instance found etcd without the cluster state it had seen (a wiped or replaced etcd): checkpoints missing then are treated as lost",
                ),
            ),
            duplicate_id: register(
                registry,
                prometheus::IntGauge::new(
                    format!("{PREFIX}cluster_duplicate_id"),
                    "1 while another live instance has this instance's id; this one stays out of the cluster",
                ),
            ),
            etcd_up: gauge(
                registry,
                "cluster_etcd_up",
                "1 while etcd answers this instance's keep-alives (cluster mode), by the instance's cluster id",
                &["member"],
            ),
        }
    }
}
