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
mod parse;
mod setup;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

pub use candidate::{ShadowBatch, ShadowInput, spawn_shadow};
pub use parse::ParseInput;
pub use setup::parser_chain;

use crate::checkpoint::CheckpointStore;
use crate::event::Event;
use crate::health::{Health, State};
use crate::metrics::Metrics;
use crate::monitor::MonitorInput;
use crate::plugin::{ParserChain, PluginBoard};
use crate::sink::Sink;
use crate::slot::{AutoRollback, SlotVersions};
use crate::tail::{self, Position, StartAt, TailOptions, TailReader};

/// Batches in flight between two stages.
const QUEUE: usize = 4;
/// Attempts per batch per sink (each may take the sink's `patience`).
const SINK_ATTEMPTS: u32 = 3;

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
    pub notices: mpsc::Receiver<Vec<Event>>,
    /// The server's monitor thread, fed every batch of events while it listens.
    pub monitors: Option<(mpsc::Sender<MonitorInput>, crate::monitor::Listening)>,
    /// Where the parsers' health is recorded for the API.
    pub board: Arc<PluginBoard>,
    /// The parser chain versions, for the API.
    pub versions: Arc<std::sync::Mutex<SlotVersions>>,
}

/// A server's log and how it is read and parsed.
pub struct LogInput {
    pub path: PathBuf,
    pub parsers: ParserChain,
    /// The parser thread's queue (from [`parse_queue`]): the tailer sends batches, a reload
    /// sends swaps through a clone of the sender.
    pub inputs: (mpsc::Sender<ParseInput>, mpsc::Receiver<ParseInput>),
    /// When a newly swapped-in chain is rolled back by itself (none: never).
    pub auto_rollback: Option<AutoRollback>,
    /// Where run-time choices of version are kept across restarts.
    pub pins: Option<crate::pins::PinStore>,
    /// The rollback target at start (servers.yml's chain, when a kept version runs instead).
    pub previous: Option<ParserChain>,
    /// The candidate chain of compare mode at start, if any.
    pub candidate: Option<ParserChain>,
    /// The comparison's report, for the API (none while there is no candidate).
    pub report: Arc<std::sync::Mutex<Option<crate::compare::ParserReport>>>,
    pub checkpoints: CheckpointStore,
    pub max_line_bytes: usize,
    pub tail: TailOptions,
}

/// What every pipeline reports to.
#[derive(Clone)]
pub struct Shared {
    pub health: Health,
    pub metrics: Arc<Metrics>,
}

struct Parsed {
    events: Vec<Event>,
    position: Option<Position>,
}

/// Starts the pipeline; it runs until `shutdown` turns true, then delivers what it has
/// read, saves its checkpoint, and the returned task ends (once the notice senders are gone).
pub fn spawn(
    p: ServerPipeline,
    shared: Shared,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let tag = p.tag.clone();
    let Some(log) = p.log else {
        drop(p.monitors);
        return tokio::spawn(async move {
            let sink = Delivery {
                tag: &tag,
                sinks: &p.sinks,
                shared: &shared,
            };
            sink.run(None, p.notices).await;
        });
    };
    let start = match log.checkpoints.load(&tag) {
        Some(pos) => StartAt::Position(pos),
        None => StartAt::End,
    };
    let reader = TailReader::new(&log.path, start, log.max_line_bytes);
    let (line_tx, line_rx) = log.inputs;
    let (event_tx, event_rx) = mpsc::channel::<Parsed>(QUEUE);

    let tailer = format!("tailer:{tag}");
    shared.health.register(&tailer);
    let status = tail::Status {
        health: shared.health.clone(),
        component: tailer,
    };
    let tail_task = tokio::spawn(tail::run(reader, line_tx, log.tail, shutdown, status));

    let mut stage = parse::ParseStage {
        tag: tag.clone(),
        live: log.parsers,
        previous: log.previous,
        auto_rollback: log.auto_rollback,
        probation: None,
        candidate: None,
        report: log.report,
        pins: log.pins,
        monitors: p.monitors,
        board: p.board,
        versions: p.versions,
        shared: shared.clone(),
    };
    let parser_thread = std::thread::Builder::new()
        .name(format!("parse-{tag}"))
        .spawn(move || {
            stage.set_candidate(log.candidate);
            stage.run(line_rx, event_tx)
        });

    let log_path = log.path;
    let checkpoints = log.checkpoints;
    tokio::spawn(async move {
        let sink = Delivery {
            tag: &tag,
            sinks: &p.sinks,
            shared: &shared,
        };
        let log = LogDelivery {
            path: &log_path,
            checkpoints: &checkpoints,
            rx: event_rx,
        };
        sink.run(Some(log), p.notices).await;
        if let Ok(thread) = parser_thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let _ = tail_task.await;
        tracing::debug!(server = %tag, "pipeline stopped");
    })
}

/// The delivery task's view of the log: where its events come from and where the position
/// of each delivered batch is saved.
struct LogDelivery<'a> {
    path: &'a std::path::Path,
    checkpoints: &'a CheckpointStore,
    rx: mpsc::Receiver<Parsed>,
}

/// The delivery task of one server: the only writer to its sinks.
struct Delivery<'a> {
    tag: &'a str,
    sinks: &'a [Arc<dyn Sink>],
    shared: &'a Shared,
}

impl Delivery<'_> {
    /// Delivers the log's events (saving checkpoints) and the notices, as they come, until
    /// both are closed.
    async fn run(&self, mut log: Option<LogDelivery<'_>>, mut notices: mpsc::Receiver<Vec<Event>>) {
        for sink in self.sinks {
            self.shared.health.set(
                &format!("sink:{}:{}", self.tag, sink.name()),
                State::Ready,
                None,
            );
        }
        let mut notices_open = true;
        loop {
            tokio::select! {
                parsed = async { log.as_mut()?.rx.recv().await }, if log.is_some() => {
                    match (parsed, &log) {
                        (Some(parsed), Some(l)) => self.events(parsed, l.path, l.checkpoints).await,
                        _ => log = None,
                    }
                }
                batch = notices.recv(), if notices_open => match batch {
                    Some(events) => self.deliver_all(&events).await,
                    None => notices_open = false,
                },
                else => break,
            }
        }
    }

    async fn deliver_all(&self, events: &[Event]) {
        for sink in self.sinks {
            deliver(self.tag, sink.as_ref(), events, self.shared).await;
        }
    }

    async fn events(
        &self,
        parsed: Parsed,
        log_path: &std::path::Path,
        checkpoints: &CheckpointStore,
    ) {
        let tag = self.tag;
        let shared = self.shared;
        if !parsed.events.is_empty() {
            self.deliver_all(&parsed.events).await;
            for e in &parsed.events {
                shared
                    .metrics
                    .events
                    .with_label_values(&[tag, &e.kind])
                    .inc();
            }
        }
        if let Some(pos) = parsed.position {
            match checkpoints.save(tag, &pos) {
                Ok(()) => {
                    let len = std::fs::metadata(log_path)
                        .map(|m| m.len())
                        .unwrap_or(pos.offset);
                    let lag = i64::try_from(len.saturating_sub(pos.offset)).unwrap_or(i64::MAX);
                    shared
                        .metrics
                        .checkpoint_lag
                        .with_label_values(&[tag])
                        .set(lag);
                }
                Err(e) => {
                    tracing::warn!(server = %tag, "cannot save the checkpoint: {e}");
                    shared
                        .metrics
                        .errors
                        .with_label_values(&[&format!("checkpoint:{tag}"), "write"])
                        .inc();
                }
            }
        }
    }
}

/// Delivers one batch to one sink, retrying a few times; a batch that still fails is
/// counted and logged, and the pipeline moves on.
async fn deliver(tag: &str, sink: &dyn Sink, events: &[Event], shared: &Shared) {
    let component = format!("sink:{tag}:{}", sink.name());
    let mut wait = Duration::from_millis(250);
    for attempt in 1..=SINK_ATTEMPTS {
        let started = Instant::now();
        let result = tokio::time::timeout(sink.patience(), sink.deliver(tag, events)).await;
        shared
            .metrics
            .sink_seconds
            .with_label_values(&[tag, sink.name()])
            .observe(started.elapsed().as_secs_f64());
        let problem = match result {
            Ok(Ok(())) => {
                shared.health.set(&component, State::Ready, None);
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", sink.patience().as_secs()),
        };
        shared
            .metrics
            .errors
            .with_label_values(&[&component, "delivery"])
            .inc();
        shared.health.error(&component, problem.clone());
        if attempt == SINK_ATTEMPTS {
            tracing::error!(server = %tag, sink = sink.name(), "gave up delivering {} events after {SINK_ATTEMPTS} attempts: {problem}", events.len());
            shared
                .metrics
                .errors
                .with_label_values(&[&component, "dropped"])
                .inc();
            return;
        }
        tracing::warn!(server = %tag, sink = sink.name(), "delivery failed (attempt {attempt} of {SINK_ATTEMPTS}): {problem}");
        tokio::time::sleep(wait).await;
        wait *= 4;
    }
}
