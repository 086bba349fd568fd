//! The Prometheus metrics of DESIGN.md (`factorio_isr_*`), in one registry.

use std::time::Instant;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::health::{Health, State};

/// Every metric the process exports. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    started: Instant,
    uptime: Gauge,
    component_status: IntGaugeVec,
    /// `errors_total{component, error_type}`.
    pub errors: IntCounterVec,
    /// `events_processed_total{server, event_type}`.
    pub events: IntCounterVec,
    /// `lines_read_total{server}`.
    pub lines_read: IntCounterVec,
    /// `lines_dropped_total{server, reason}`: lines lost (plugin faults) or cut (too long).
    pub lines_dropped: IntCounterVec,
    /// `plugin_calls_total{server, plugin}`.
    pub plugin_calls: IntCounterVec,
    /// `plugin_traps_total{server, plugin, kind}`: trap, timeout, memory, restart.
    pub plugin_traps: IntCounterVec,
    /// `plugin_call_seconds{server, plugin}`.
    pub plugin_call_seconds: HistogramVec,
    /// `sink_delivery_seconds{server, sink}`.
    pub sink_seconds: HistogramVec,
    /// `checkpoint_lag_bytes{server}`: bytes of the log not yet delivered and checkpointed.
    pub checkpoint_lag: IntGaugeVec,
}

const PREFIX: &str = "factorio_isr_";

/// Registers a metric built from constant, well-formed options; neither step can fail for
/// the fixed set of metrics below.
fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    built: prometheus::Result<C>,
) -> C {
    let metric = built.unwrap_or_else(|e| unreachable!("a metric is well-formed: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| unreachable!("a metric is registered once: {e}"));
    metric
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(format!("{PREFIX}{name}"), help), labels),
    )
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let opts = HistogramOpts::new(format!("{PREFIX}{name}"), help).buckets(buckets);
    register(registry, HistogramVec::new(opts, labels))
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(format!("{PREFIX}{name}"), help), labels),
    )
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Self {
        let registry = Registry::new();
        let uptime = register(
            &registry,
            Gauge::new(
                format!("{PREFIX}uptime_seconds"),
                "Seconds since the process started",
            ),
        );
        let fast = vec![
            0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ];
        let slow = vec![
            0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        Self {
            component_status: gauge(
                &registry,
                "component_status",
                "1 when the component works (ready or degraded), else 0",
                &["component"],
            ),
            errors: counter(
                &registry,
                "errors_total",
                "Errors by component and type",
                &["component", "error_type"],
            ),
            events: counter(
                &registry,
                "events_processed_total",
                "Events parsed and delivered",
                &["server", "event_type"],
            ),
            lines_read: counter(&registry, "lines_read_total", "Log lines read", &["server"]),
            lines_dropped: counter(
                &registry,
                "lines_dropped_total",
                "Log lines lost to plugin faults or cut for length",
                &["server", "reason"],
            ),
            plugin_calls: counter(
                &registry,
                "plugin_calls_total",
                "Calls into plugins that returned",
                &["server", "plugin"],
            ),
            plugin_traps: counter(
                &registry,
                "plugin_traps_total",
                "Plugin calls that faulted, by kind",
                &["server", "plugin", "kind"],
            ),
            plugin_call_seconds: histogram(
                &registry,
                "plugin_call_seconds",
                "Time per plugin call",
                &["server", "plugin"],
                fast,
            ),
            sink_seconds: histogram(
                &registry,
                "sink_delivery_seconds",
                "Time to deliver a batch to a sink",
                &["server", "sink"],
                slow,
            ),
            checkpoint_lag: gauge(
                &registry,
                "checkpoint_lag_bytes",
                "Bytes of the log read but not yet delivered and checkpointed",
                &["server"],
            ),
            registry,
            started: Instant::now(),
            uptime,
        }
    }

    /// The Prometheus text exposition, with uptime and component states brought up to date.
    pub fn render(&self, health: &Health) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        for c in health.snapshot() {
            let up = matches!(c.state, State::Ready | State::Degraded);
            self.component_status
                .with_label_values(&[c.name.as_str()])
                .set(i64::from(up));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("cannot encode metrics: {e}");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
