//! One server's pipeline: its log is tailed, its lines parsed by its parser chain, and the
//! events delivered to its sinks; then the checkpoint is saved. Alerts and reports (the
//! "notices" of the monitors and checks) reach the same sinks through the same delivery task.
//!
//! ```text
//! tail task ──Batch──► parser thread ──Parsed──► delivery task ──► sinks, checkpoint
//!                           │                          ▲
//!                           └──events──► monitors ──notices (alerts, reports)
//! ```
//!
//! Each stage runs on its own (the parser on a thread, since plugin calls are synchronous),
//! joined by small bounded queues: a slow stage holds the ones before it back, and no line
//! is dropped. Servers share nothing but the plugin engine, so one server's stuck sink or
//! broken plugin never delays another.

mod candidate;
pub mod deliver;
mod delivery;
mod parse;
mod setup;

use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use delivery::Delivery;
pub use parse::ParseInput;
pub use setup::parser_chain;

use crate::config::OnLostCheckpoint;
use crate::monitor::MonitorInput;
use crate::observe::{Telemetry, Watchdog};
use crate::plugin::{ParserChain, PluginBoard};
use crate::sink::Sink;
use crate::swap::Slot;
use crate::swap::candidate::Candidate;
use crate::swap::owner::SlotOwner;
use crate::swap::slot::{AutoRollback, SlotVersions};
use crate::tail::checkpoint::CheckpointStore;
use crate::tail::{self, Position, StartAt, TailOptions, TailReader};

/// Batches in flight between two stages.
const QUEUE: usize = 4;

/// A server's parser thread, as reloads reach it (through whichever run of the server
/// is live).
#[derive(Clone, Default)]
pub struct ParserHandle {
    pub inputs: crate::swap::inbox::Inbox<ParseInput>,
    pub versions: Arc<Mutex<SlotVersions>>,
}

/// A new parser thread queue.
pub fn parse_queue() -> (mpsc::Sender<ParseInput>, mpsc::Receiver<ParseInput>) {
    mpsc::channel(QUEUE)
}

/// Everything one server's pipeline needs.
pub struct ServerPipeline {
    pub tag: String,
    /// The log and its parsers; none for a server without `log_path`, whose pipeline only
    /// delivers notices.
    pub log: Option<LogInput>,
    pub sinks: Vec<Arc<dyn Sink>>,
    /// Alerts and reports to deliver besides the log's events.
    pub notices: mpsc::Receiver<Vec<crate::alert::Notice>>,
    /// The server's monitor thread, fed every batch of events while it listens.
    pub monitors: Option<(mpsc::Sender<MonitorInput>, crate::monitor::Listening)>,
    /// Where the parsers' health is recorded for the API.
    pub board: Arc<PluginBoard>,
    /// The parser chain versions, for the API.
    pub versions: Arc<parking_lot::Mutex<SlotVersions>>,
    /// What the tailer, the parser thread and the delivery task run under.
    pub watchdog: Watchdog,
    /// What people are shown of each kind of event.
    pub rules: Arc<crate::config::EventRules>,
    /// Cluster mode: this instance's claim on the server. Nothing is delivered once it no
    /// longer holds.
    pub fence: Option<Arc<crate::cluster::Fence>>,
    /// Where the bytes of the logs not yet delivered are told (besides the metric).
    pub backlog: crate::monitor::Backlog,
}

/// One log file of a server, as the pipeline follows it.
#[derive(Debug, Clone)]
pub struct LogFile {
    /// Its id in servers.yml (what plugins are told the lines came from).
    pub id: String,
    pub path: PathBuf,
    /// Folders `path`, if a link, may lead into (empty: the log's own folder).
    pub links_within: Vec<PathBuf>,
}

/// What a server's `index`-th log is called in health and metrics (`prod`, then
/// `prod:factorio-current`) and its checkpoint file (`prod`, then `prod.factorio-current`).
/// The first log is named for the server alone, so a server that gains a second log keeps
/// the first one's checkpoint.
#[derive(Debug, Clone)]
pub struct LogName {
    pub label: crate::observe::health::LogPart,
    pub checkpoint: String,
}

impl LogName {
    /// The names of `tag`'s `index`-th log, `id`.
    pub fn new(tag: &str, index: usize, id: &str) -> Self {
        if index == 0 {
            Self {
                label: crate::observe::health::LogPart {
                    server: tag.to_owned(),
                    log: None,
                },
                checkpoint: tag.to_owned(),
            }
        } else {
            Self {
                label: crate::observe::health::LogPart {
                    server: tag.to_owned(),
                    log: Some(id.to_owned()),
                },
                checkpoint: format!("{tag}.{id}"),
            }
        }
    }
}

/// A server's logs and how they are read and parsed.
pub struct LogInput {
    /// Each followed with its own tailer and checkpoint; their batches all go to the one
    /// parser thread.
    pub files: Vec<LogFile>,
    pub parsers: ParserChain,
    /// The parser thread's queue (from [`parse_queue`]): the tailer sends batches, a reload
    /// sends swaps through a clone of the sender.
    pub inputs: (mpsc::Sender<ParseInput>, mpsc::Receiver<ParseInput>),
    /// When a newly swapped-in chain is rolled back by itself (none: never).
    pub auto_rollback: Option<AutoRollback>,
    /// Where run-time choices of version are kept across restarts.
    pub pins: Option<crate::swap::pins::PinStore>,
    /// The rollback target at start (servers.yml's chain, when a kept version runs instead).
    pub previous: Option<ParserChain>,
    /// The candidate chain of compare mode at start, if any.
    pub candidate: Option<ParserChain>,
    /// The comparison's report, for the API (none while there is no candidate).
    pub report: Arc<parking_lot::Mutex<Option<crate::swap::compare::ParserReport>>>,
    pub checkpoints: CheckpointStore,
    /// Where reading starts when the checkpoint is lost.
    pub on_lost_checkpoint: OnLostCheckpoint,
    pub max_line_bytes: usize,
    pub tail: TailOptions,
    /// Given a permit by each tailer once it knows where it starts (see [`tail::Status`]).
    pub positioned: Option<Arc<tokio::sync::Semaphore>>,
}

struct Parsed {
    events: Vec<crate::alert::Notice>,
    position: Option<Position>,
    /// Which log the batch was read from (its index in `files`).
    log: usize,
    /// How many lines it had.
    lines: usize,
    /// The batch's trace, closed once its events are delivered and its position saved.
    span: tracing::Span,
}

/// Where a pipeline's delivery goes, and under which rules.
struct Outlets {
    sinks: Vec<Arc<dyn Sink>>,
    rules: Arc<crate::config::EventRules>,
    fence: Option<Arc<crate::cluster::Fence>>,
    backlog: crate::monitor::Backlog,
}

/// Starts the pipeline; it runs until `shutdown` turns true, then delivers what it has
/// read, saves its checkpoint, and the returned task ends (once the notice senders are gone).
pub fn spawn(
    p: ServerPipeline,
    shared: Telemetry,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let tag = p.tag.clone();
    let outlets = Outlets {
        sinks: p.sinks,
        rules: p.rules,
        fence: p.fence,
        backlog: p.backlog,
    };
    let Some(log) = p.log else {
        drop(p.monitors);
        return tokio::spawn(async move {
            Delivery::of(&tag, &outlets, &shared)
                .run(None, p.notices)
                .await;
        });
    };
    let names: Vec<LogName> = (log.files.iter().enumerate())
        .map(|(i, f)| LogName::new(&tag, i, &f.id))
        .collect();
    let tailers = Tailers {
        tag: &tag,
        names: &names,
        log: &log,
        shutdown: &shutdown,
        watchdog: &p.watchdog,
        shared: &shared,
    };
    let (starts, tail_tasks) = tailers.spawn(log.inputs.0.clone());
    let (_, line_rx) = log.inputs;
    let (event_tx, event_rx) = mpsc::channel::<Parsed>(QUEUE);
    let slot = SlotOwner::new(&tag, Slot::Parsers, log.parsers, shared.clone())
        .with_previous(log.previous)
        .with_auto_rollback(log.auto_rollback)
        .with_pins(log.pins)
        .with_versions(p.versions);
    let stage = parse::ParseStage {
        slot,
        sources: log.files.iter().map(|f| f.id.clone()).collect(),
        candidate: Candidate::new(&tag, log.report, shared.metrics.clone()),
        monitors: p.monitors,
        board: p.board,
    };
    let parser_thread = stage.spawn(&tag, log.candidate, (line_rx, event_tx), &p.watchdog);
    let opening = delivery::Opening {
        files: log.files,
        names,
        checkpoints: log.checkpoints,
        on_lost: log.on_lost_checkpoint,
        starts,
    };
    let dog = p.watchdog.clone();
    let notices = p.notices;
    tokio::spawn(async move {
        let delivery = async move {
            let Some(logs) = opening.open(&tag, &shared, event_rx).await else {
                return;
            };
            let sink = Delivery::of(&tag, &outlets, &shared);
            let watched = logs.watched();
            // The lag is watched while delivery runs, also while a sink holds it up.
            tokio::select! {
                _ = sink.run(Some(logs), notices) => {}
                _ = delivery::watch_lag(&tag, watched, &shared, &outlets.backlog) => {}
            }
            if let Ok(thread) = parser_thread {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            for task in tail_tasks {
                let _ = task.await;
            }
            tracing::debug!(server = %tag, "pipeline stopped");
        };
        dog.guarded_task("delivery", delivery).await;
    })
}

/// Where each tailer is told to start (by the delivery task, once it has read the
/// checkpoints), and the tailers.
type Starts = Vec<tokio::sync::oneshot::Sender<(StartAt, Option<usize>)>>;

/// What the tailers of a pipeline are started with.
struct Tailers<'a> {
    tag: &'a str,
    names: &'a [LogName],
    log: &'a LogInput,
    shutdown: &'a watch::Receiver<bool>,
    watchdog: &'a Watchdog,
    shared: &'a Telemetry,
}

impl Tailers<'_> {
    /// One tailer per log, all sending to the parser thread through `line_tx`; each waits
    /// to be told where to start.
    fn spawn(
        &self,
        line_tx: mpsc::Sender<ParseInput>,
    ) -> (Starts, Vec<tokio::task::JoinHandle<Option<TailReader>>>) {
        let (log, shared) = (self.log, self.shared);
        let mut starts = Vec::new();
        let mut tasks = Vec::new();
        for (i, file) in log.files.iter().enumerate() {
            let component = crate::observe::health::Part::Tailer(self.names[i].label.clone());
            shared.health.register(&component);
            let status = tail::Status {
                server: self.tag.to_owned(),
                log: i,
                log_id: file.id.clone(),
                health: shared.health.clone(),
                component,
                positioned: log.positioned.clone(),
            };
            let (start_tx, start_rx) = tokio::sync::oneshot::channel();
            starts.push(start_tx);
            let (path, links_within) = (file.path.clone(), file.links_within.clone());
            let (max_line_bytes, options) = (log.max_line_bytes, log.tail);
            let (line_tx, shutdown) = (line_tx.clone(), self.shutdown.clone());
            let dog = self.watchdog.clone();
            tasks.push(tokio::spawn(async move {
                let (start, replay) = start_rx.await.ok()?;
                let reader = TailReader::new(&path, start, max_line_bytes)
                    .links_within(links_within)
                    .replay(replay);
                let run = tail::run(reader, line_tx, options, shutdown, status);
                dog.guarded_task("tailer", run).await?
            }));
        }
        (starts, tasks)
    }
}
