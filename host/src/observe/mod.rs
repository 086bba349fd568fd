//! What the host tells about itself: component health for `/ready` ([`health`]),
//! Prometheus metrics ([`metrics`]) and the log ([`logging`]), and the handle to the first
//! two that every part of a server reports to ([`Shared`]).

pub mod health;
pub mod logging;
pub mod metrics;

use std::sync::Arc;

use health::Health;
use metrics::Metrics;

/// What every part of a server reports to (see `StateReport::of` for state writes).
#[derive(Clone)]
pub struct Shared {
    pub health: Health,
    pub metrics: Arc<Metrics>,
}
