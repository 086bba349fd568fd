//! Monitors: each server's monitor plugins, fed its events and metric samples, and the
//! host's own checks (RCON up/down, stats reports).
//!
//! ```text
//! parser thread ──events──┐
//!                         ├─► monitor thread ──alerts──► Alerts (book) ──notices──► delivery
//! checks task ──samples───┘        │                        ▲
//!                                  └──input + live alerts──► candidate thread (compare mode)
//! checks task ──RCON up/down────────────────────────────────┘
//! checks task ──stats reports──────────────────────────────────────────notices──► delivery
//! ```
//!
//! Monitor plugins are called on a thread of their own (plugin calls are synchronous), so a
//! slow monitor never delays parsing; events reach it through a bounded queue (a full queue
//! holds the parser back, nothing is lost), samples through the same queue but without
//! waiting (a sample that finds the queue full is dropped and counted: the next one comes).
//! The same queue carries reloads (swap, rollback, candidate), which take effect between two
//! calls ([`MonitorStage`]).

/// Alerts taken from one monitor call; more are dropped and counted, so a monitor cannot
/// make the host file (and render) alerts without bound.
const MAX_ALERTS_PER_CALL: usize = 200;

mod candidate;
mod checks;
mod rcon_status;
mod report;
mod roster;
mod setup;
mod stage;
mod states;

pub use checks::{CheckOutputs, CheckSettings, spawn_checks};
pub use rcon_status::RconStatus;
pub use report::stats_report;
pub use roster::Roster;
pub use setup::{candidate_instances, effective_monitors, monitor_instances, with_server_defaults};
pub use stage::MonitorStage;
pub use states::MonitorStates;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use crate::alert::Alerts;
use crate::event::{Event, unix_ms};
use crate::observe::Telemetry;
use crate::plugin::{MonitorInstance, PluginBoard, WitSample};
use crate::swap::slot::{SlotVersions, Swapped};

/// Inputs queued for a server's monitors.
pub const QUEUE: usize = 64;

/// Bytes of a server's logs not yet delivered, as the pipeline last measured them. While
/// some wait (a sink holds delivery up, and with it the reading of the log), the log's
/// events lag behind the game, so the checks do not hand RCON readings to the roster: a
/// leave line not read yet would look like a leave the log never wrote.
#[derive(Debug, Clone, Default)]
pub struct Backlog(Arc<std::sync::atomic::AtomicU64>);

impl Backlog {
    /// Notes `bytes` waiting.
    pub fn set(&self, bytes: u64) {
        self.0.store(bytes, Ordering::Relaxed);
    }

    /// Whether everything read so far was delivered, as last measured.
    pub fn is_clear(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// What a monitor thread is fed.
#[derive(Debug)]
pub enum MonitorInput {
    /// A batch of the server's events, read at `at_ms`, and the trace of the batch they
    /// came from.
    Events {
        at_ms: u64,
        events: Vec<Event>,
        span: tracing::Span,
    },
    /// A reading of the server's readings engine.
    Sample(WitSample),
    /// The players an RCON reading at `at_ms` shows online (for the [`Roster`], which infers
    /// leaves the log did not write).
    Players { at_ms: u64, players: Vec<String> },
    /// New monitors (a reload, a promotion): each takes up the state of the monitor of the
    /// same plugin it replaces; the live ones become the rollback target. With `pin`, the
    /// choice is kept across restarts for that reason; without, any pin is removed.
    Swap {
        monitors: Vec<MonitorInstance>,
        pin: Option<crate::swap::pins::PinReason>,
        done: oneshot::Sender<Swapped>,
    },
    /// Make the rollback target live again; the live monitors become the rollback target.
    Rollback {
        done: oneshot::Sender<Option<Swapped>>,
    },
    /// A new candidate for compare mode (none: stop comparing); the comparison starts afresh.
    /// Answers once it is in place.
    Candidate {
        monitors: Option<Vec<MonitorInstance>>,
        done: oneshot::Sender<()>,
    },
}

pub use crate::plugin::monitors_version as version;

/// A server's monitor thread, as reloads reach it (through whichever run of the server is
/// live).
#[derive(Clone, Default)]
pub struct MonitorHandle {
    pub feed: crate::swap::inbox::Inbox<MonitorInput>,
    /// The monitor slot's versions.
    pub versions: Arc<parking_lot::Mutex<SlotVersions>>,
}

/// Whether a server's monitor thread wants input: it runs monitors or a candidate. Every
/// server has a monitor thread (so monitors can be added by a reload), but one without
/// monitors is sent no events and no samples (samples cost RCON reads).
#[derive(Debug, Clone, Default)]
pub struct Listening(Arc<AtomicBool>);

impl Listening {
    /// Whether to feed the thread.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }
}

impl MonitorInput {
    /// Events read now.
    pub fn events(events: Vec<Event>) -> Self {
        Self::Events {
            at_ms: unix_ms::millis(SystemTime::now()),
            events,
            span: tracing::Span::none(),
        }
    }

    /// The same input, its calls traced as part of `trace`.
    pub fn in_trace(mut self, trace: &tracing::Span) -> Self {
        if let Self::Events { span, .. } = &mut self {
            *span = trace.clone();
        }
        self
    }
}

/// Where a server's monitor thread reports.
pub struct MonitorOutputs {
    pub alerts: Arc<Alerts>,
    pub notices: mpsc::Sender<Vec<crate::alert::Notice>>,
    pub board: Arc<PluginBoard>,
    pub shared: Telemetry,
    /// Turned on while the thread runs monitors or a candidate.
    pub listening: Listening,
}
