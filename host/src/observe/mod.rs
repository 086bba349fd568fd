//! What the host tells about itself: component health for `/ready` ([`health`]),
//! Prometheus metrics ([`metrics`]) and the log ([`logging`]), and the handle to the first
//! two that every part of a server reports to ([`Telemetry`]).

pub mod fault;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod traces;

use std::sync::Arc;

use health::Health;
use metrics::Metrics;

/// A panic in one of a server's threads or tasks, as its supervisor hears of it.
#[derive(Debug, Clone)]
pub struct Crash {
    /// Which part: `tailer`, `parser`, `monitors`, `delivery`, `checks`.
    pub task: &'static str,
    /// What the panic said.
    pub message: String,
}

/// What each thread and task of one server runs its body under: a panic in it is caught,
/// logged, counted in `task_panics_total{server,task}`, shown in `/ready` as the component
/// `task:<server>:<task>` down, and reported to the server's supervisor, which restarts
/// the server's parts. Cheap to clone; one per run of a server.
#[derive(Clone)]
pub struct Watchdog {
    shared: Telemetry,
    server: String,
    crashes: Option<tokio::sync::mpsc::UnboundedSender<Crash>>,
}

impl Watchdog {
    /// A watchdog for `server` whose crashes arrive on the receiver.
    pub fn new(
        shared: &Telemetry,
        server: &str,
    ) -> (Self, tokio::sync::mpsc::UnboundedReceiver<Crash>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let dog = Self {
            shared: shared.clone(),
            server: server.to_owned(),
            crashes: Some(tx),
        };
        (dog, rx)
    }

    /// A watchdog that reports to nobody: a part that panics stays down (tools and tests
    /// that run a stage on its own).
    pub fn unsupervised(shared: &Telemetry, server: &str) -> Self {
        Self {
            shared: shared.clone(),
            server: server.to_owned(),
            crashes: None,
        }
    }

    /// Runs `f`, the body of the server's `task`; none when it panicked.
    pub fn guarded<T>(&self, task: &'static str, f: impl FnOnce() -> T) -> Option<T> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(v) => Some(v),
            Err(payload) => {
                self.crashed(task, logging::panic_text(&*payload));
                None
            }
        }
    }

    /// Like [`Watchdog::guarded`], for the future a tokio task runs.
    pub async fn guarded_task<T>(
        self,
        task: &'static str,
        f: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        use futures_util::FutureExt;
        match std::panic::AssertUnwindSafe(f).catch_unwind().await {
            Ok(v) => Some(v),
            Err(payload) => {
                self.crashed(task, logging::panic_text(&*payload));
                None
            }
        }
    }

    fn crashed(&self, task: &'static str, message: String) {
        let server = self.server.as_str();
        let then = if self.crashes.is_some() {
            "its supervisor restarts the server's parts"
        } else {
            "it stays down"
        };
        tracing::error!(server, task, "stopped on a panic: {message}; {then}");
        self.shared
            .metrics
            .task_panics
            .with_label_values(&[server, task])
            .inc();
        let component = health::Part::Task {
            server: server.to_owned(),
            task: task.to_owned(),
        };
        let detail = format!("stopped on a panic: {message}");
        self.shared.health.error(&component, detail.clone());
        self.shared
            .health
            .set(&component, health::State::Down, Some(detail));
        if let Some(tx) = &self.crashes {
            let _ = tx.send(Crash { task, message });
        }
    }
}

/// What every part of a server reports to: its health components and the metrics (see
/// `StateReport::of` for state writes).
#[derive(Clone)]
pub struct Telemetry {
    pub health: Health,
    pub metrics: Arc<Metrics>,
}
