//! Registering a metric: each is built from constant options and registered once.

use prometheus::core::Collector;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

pub(super) const PREFIX: &str = "factorio_isr_";

/// Registers a metric built from constant, well-formed options; neither step can fail for
/// the fixed set of metrics below.
pub(super) fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    built: prometheus::Result<C>,
) -> C {
    let metric = built.unwrap_or_else(|e| unreachable!("a metric is well-formed: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| unreachable!("a metric is registered once: {e}"));
    metric
}

pub(super) fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(format!("{PREFIX}{name}"), help), labels),
    )
}

pub(super) fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let opts = HistogramOpts::new(format!("{PREFIX}{name}"), help).buckets(buckets);
    register(registry, HistogramVec::new(opts, labels))
}

pub(super) fn float_gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> GaugeVec {
    register(
        registry,
        GaugeVec::new(Opts::new(format!("{PREFIX}{name}"), help), labels),
    )
}

pub(super) fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(format!("{PREFIX}{name}"), help), labels),
    )
}
