//! What the host tells about itself: component health for `/ready` ([`health`]),
//! Prometheus metrics ([`metrics`]) and the log ([`logging`]), and the handle to the first
//! two that every part of a server reports to ([`Shared`]).

pub mod fault;
pub mod health;
pub mod logging;
pub mod metrics;

use std::sync::Arc;

use health::Health;
use metrics::Metrics;

/// Runs `f`, the body of `server`'s `task` (a thread or a task's work); a panic in it is
/// caught, counted in `task_panics_total{server,task}` and shown in `/ready` as the
/// component `task:<server>:<task>` down, instead of that part stopping unseen.
pub fn guarded<T>(shared: &Shared, server: &str, task: &str, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(payload) => {
            report_panic(shared, server, task, &logging::panic_text(&*payload));
            None
        }
    }
}

/// Like [`guarded`], for the future a tokio task runs.
pub async fn guarded_task<T>(
    shared: Shared,
    server: String,
    task: &'static str,
    f: impl std::future::Future<Output = T>,
) -> Option<T> {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(f).catch_unwind().await {
        Ok(v) => Some(v),
        Err(payload) => {
            report_panic(&shared, &server, task, &logging::panic_text(&*payload));
            None
        }
    }
}

/// Records that `server`'s `task` stopped on a panic with `message`.
pub fn report_panic(shared: &Shared, server: &str, task: &str, message: &str) {
    tracing::error!(
        server,
        task,
        "stopped on a panic: {message}; the server's {task} is down until the host restarts"
    );
    shared
        .metrics
        .task_panics
        .with_label_values(&[server, task])
        .inc();
    let component = format!("task:{server}:{task}");
    shared.health.register(&component);
    shared
        .health
        .error(&component, format!("stopped on a panic: {message}"));
    shared.health.set(
        &component,
        health::State::Down,
        Some(format!("stopped on a panic: {message}")),
    );
}

/// What every part of a server reports to (see `StateReport::of` for state writes).
#[derive(Clone)]
pub struct Shared {
    pub health: Health,
    pub metrics: Arc<Metrics>,
}
