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
mod parse;
mod setup;

use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::Instrument;

pub use candidate::{ShadowBatch, ShadowInput, spawn_shadow};
pub use parse::ParseInput;
pub use setup::parser_chain;

use crate::config::OnLostCheckpoint;
use crate::event::Event;
use crate::monitor::MonitorInput;
use crate::observe::health::State;
use crate::observe::{Shared, Watchdog};
use crate::plugin::{ParserChain, PluginBoard};
use crate::sink::Sink;
use crate::store::{StateReport, What};
use crate::swap::Slot;
use crate::swap::owner::SlotOwner;
use crate::swap::slot::{AutoRollback, SlotVersions};
use crate::tail::checkpoint::{CheckpointStore, Loaded, ServerCheckpoint};
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
    pub notices: mpsc::Receiver<Vec<Event>>,
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
    pub label: String,
    pub checkpoint: String,
}

impl LogName {
    /// The names of `tag`'s `index`-th log, `id`.
    pub fn new(tag: &str, index: usize, id: &str) -> Self {
        if index == 0 {
            Self {
                label: tag.to_owned(),
                checkpoint: tag.to_owned(),
            }
        } else {
            Self {
                label: format!("{tag}:{id}"),
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
    events: Vec<Event>,
    position: Option<Position>,
    /// Which log the batch was read from (its index in `files`).
    log: usize,
    /// How many lines it had.
    lines: usize,
    /// The batch's trace, closed once its events are delivered and its position saved.
    span: tracing::Span,
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
                rules: &p.rules,
                fence: p.fence.as_deref(),
                fenced_out: Default::default(),
                backlog: &p.backlog,
            };
            sink.run(None, p.notices).await;
        });
    };
    let (line_tx, line_rx) = log.inputs;
    let (event_tx, event_rx) = mpsc::channel::<Parsed>(QUEUE);
    let names: Vec<LogName> = (log.files.iter().enumerate())
        .map(|(i, f)| LogName::new(&tag, i, &f.id))
        .collect();

    // One tailer per log, all sending to the parser thread. The checkpoints are read by
    // the delivery task (off the runtime's threads), which then tells each tailer where to
    // start.
    let mut starts = Vec::new();
    let mut tail_tasks = Vec::new();
    for (i, file) in log.files.iter().enumerate() {
        let component = format!("tailer:{}", names[i].label);
        shared.health.register(&component);
        let status = tail::Status {
            server: tag.clone(),
            log: i,
            log_id: file.id.clone(),
            health: shared.health.clone(),
            component,
            positioned: log.positioned.clone(),
        };
        let (start_tx, start_rx) = tokio::sync::oneshot::channel::<(StartAt, Option<usize>)>();
        starts.push(start_tx);
        let (path, links_within) = (file.path.clone(), file.links_within.clone());
        let (max_line_bytes, options) = (log.max_line_bytes, log.tail);
        let (line_tx, shutdown, dog) = (line_tx.clone(), shutdown.clone(), p.watchdog.clone());
        tail_tasks.push(tokio::spawn(async move {
            let (start, replay) = start_rx.await.ok()?;
            let reader = TailReader::new(&path, start, max_line_bytes)
                .links_within(links_within)
                .replay(replay);
            let run = tail::run(reader, line_tx, options, shutdown, status);
            dog.guarded_task("tailer", run).await?
        }));
    }
    drop(line_tx);

    let mut slot = SlotOwner::new(&tag, Slot::Parsers, log.parsers, shared.clone());
    slot.previous = log.previous;
    slot.auto_rollback = log.auto_rollback;
    slot.pins = log.pins;
    slot.versions = p.versions;
    let mut stage = parse::ParseStage {
        slot,
        sources: log.files.iter().map(|f| f.id.clone()).collect(),
        candidate: None,
        report: log.report,
        monitors: p.monitors,
        board: p.board,
    };
    let parser_thread = {
        let dog = p.watchdog.clone();
        std::thread::Builder::new()
            .name(format!("parse-{tag}"))
            .spawn(move || {
                dog.guarded("parser", || {
                    stage.set_candidate(log.candidate);
                    stage.run(line_rx, event_tx)
                });
            })
    };

    let files = log.files;
    let (checkpoints, on_lost) = (log.checkpoints, log.on_lost_checkpoint);
    let dog = p.watchdog.clone();
    tokio::spawn(async move {
        let delivery = async move {
            let sink = Delivery {
                tag: &tag,
                sinks: &p.sinks,
                shared: &shared,
                rules: &p.rules,
                fence: p.fence.as_deref(),
                fenced_out: Default::default(),
                backlog: &p.backlog,
            };
            let opening = {
                let keys: Vec<String> = names.iter().map(|n| n.checkpoint.clone()).collect();
                let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
                tokio::task::spawn_blocking(move || {
                    let opened = keys.iter().map(|k| checkpoints.open(k)).collect::<Vec<_>>();
                    let lens = paths
                        .iter()
                        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                        .collect::<Vec<_>>();
                    (opened, lens)
                })
            };
            let Ok((opened, lens)) = opening.await else {
                return;
            };
            let mut logs = Vec::new();
            for ((((file, name), (checkpoint, loaded)), start_tx), len) in files
                .into_iter()
                .zip(names)
                .zip(opened)
                .zip(starts)
                .zip(lens)
            {
                let (start, lost) = start_at(&tag, &name.label, loaded, on_lost, &shared);
                let _ = start_tx.send((start, checkpoint.replay()));
                let from = match &start {
                    StartAt::Position(p) => Some(*p),
                    _ => None,
                };
                let saved_offset = Arc::new(AtomicU64::new(match &start {
                    StartAt::Position(p) => p.offset,
                    StartAt::Beginning => 0,
                    StartAt::End => len,
                }));
                logs.push(LogState {
                    label: name.label,
                    path: file.path,
                    checkpoint: Some(checkpoint),
                    lost,
                    saved: None,
                    lag: 0,
                    saved_offset,
                    failing: None,
                    from,
                });
            }
            let watched = logs
                .iter()
                .map(|l| (l.path.clone(), l.saved_offset.clone()))
                .collect();
            let log = LogDelivery { logs, rx: event_rx };
            // The lag is watched while delivery runs, also while a sink holds it up.
            tokio::select! {
                _ = sink.run(Some(log), p.notices) => {}
                _ = watch_lag(&tag, watched, &shared, &p.backlog) => {}
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

/// Where reading starts for what was found at start, and (when the checkpoint was lost)
/// what to show until a save acknowledges it.
fn start_at(
    tag: &str,
    label: &str,
    loaded: Loaded,
    on_lost: OnLostCheckpoint,
    shared: &Shared,
) -> (StartAt, Option<String>) {
    let component = format!("checkpoint:{label}");
    shared.health.set(&component, State::Ready, None);
    let damaged = |kind: &str| {
        shared
            .metrics
            .errors
            .with_label_values(&[&component, kind])
            .inc();
    };
    match loaded {
        Loaded::Fresh => (StartAt::End, None),
        Loaded::Found(p) => (StartAt::Position(p), None),
        Loaded::Previous { position, damage } => {
            tracing::warn!(server = %tag, log = %label, "the checkpoint is damaged ({damage}); resuming from the one before it, so up to one batch more is posted again");
            damaged("damaged");
            (StartAt::Position(position), None)
        }
        Loaded::Lost { damage } => {
            let (start, what) = match on_lost {
                OnLostCheckpoint::Beginning => (
                    StartAt::Beginning,
                    "reading the log from its beginning, so lines may be posted again",
                ),
                OnLostCheckpoint::End => (
                    StartAt::End,
                    "reading the log from its end, so lines written while the host was down are skipped",
                ),
            };
            let detail = format!(
                "the checkpoint is lost ({damage}): {what} (on_lost_checkpoint); cleared once lines read since are delivered and saved"
            );
            tracing::error!(server = %tag, log = %label, "{detail}");
            damaged("lost");
            shared.health.error(&component, detail.clone());
            (start, Some(detail))
        }
    }
}

/// The delivery task's view of the logs: where their events come from and where the
/// position of each delivered batch is saved.
struct LogDelivery {
    logs: Vec<LogState>,
    rx: mpsc::Receiver<Parsed>,
}

/// One log, as the delivery task keeps it.
struct LogState {
    /// Its name in health (`prod`, `prod:factorio-current`).
    label: String,
    path: PathBuf,
    /// None only while a save is under way on a blocking thread.
    checkpoint: Option<ServerCheckpoint>,
    /// Why the checkpoint was lost at start, until a save after the first acknowledges it.
    lost: Option<String>,
    /// The last position saved.
    saved: Option<Position>,
    /// Bytes of the file past the last saved position, when last looked at.
    lag: u64,
    /// The offset saved last (or where reading started), for the lag watcher.
    saved_offset: Arc<AtomicU64>,
    /// Since when saves fail, and how many have: a failing save is logged once, when it
    /// starts failing, and once when it works again.
    failing: Option<(std::time::SystemTime, u64)>,
    /// Where the next batch starts (the end of the last one, or where reading started).
    from: Option<Position>,
}

impl LogState {
    /// Records in etcd that the batch of `lines` lines ending at `to` is being delivered
    /// (cluster mode); false when that cannot be done, and the batch must not be delivered.
    async fn begin(&mut self, lines: usize, to: Position) -> bool {
        let Some(mut checkpoint) = self.checkpoint.take() else {
            return false;
        };
        let began = tokio::task::spawn_blocking(move || {
            let r = checkpoint.begin(lines, &to);
            (checkpoint, r)
        })
        .await;
        match began {
            Ok((checkpoint, r)) => {
                self.checkpoint = Some(checkpoint);
                match r {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(log = %self.label, "cannot record the batch in flight, so it is not delivered: {e}");
                        false
                    }
                }
            }
            Err(_) => false,
        }
    }
}

/// A batch's identity: its log, the file (its fingerprint), and where the batch starts
/// and ends. Both ends, because a batch read again after a restart may start where the
/// last one did and run further: named by its start alone, its first message would take
/// the nonce of a message with fewer lines, and Discord would answer with that one.
fn batch_id(label: &str, from: &Position, to: &Position) -> String {
    let fingerprint = match from.fingerprint {
        crate::tail::Fingerprint::Sha256 { digest, .. } => hex::encode(&digest[..8]),
        crate::tail::Fingerprint::Legacy { sip13, .. } => format!("{sip13:016x}"),
    };
    format!("{label}@{fingerprint}:{}-{}", from.offset, to.offset)
}

/// The delivery task of one server: the only writer to its sinks.
struct Delivery<'a> {
    tag: &'a str,
    sinks: &'a [Arc<dyn Sink>],
    shared: &'a Shared,
    rules: &'a crate::config::EventRules,
    fence: Option<&'a crate::cluster::Fence>,
    /// Set once the fence no longer held (said once in the log).
    fenced_out: std::sync::atomic::AtomicBool,
    backlog: &'a crate::monitor::Backlog,
}

impl Delivery<'_> {
    /// Delivers the log's events (saving checkpoints) and the notices, as they come, until
    /// both are closed.
    async fn run(&self, mut log: Option<LogDelivery>, mut notices: mpsc::Receiver<Vec<Event>>) {
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
                    match (parsed, &mut log) {
                        (Some(parsed), Some(l)) => self.events(parsed, l).await,
                        _ => log = None,
                    }
                }
                batch = notices.recv(), if notices_open => match batch {
                    Some(events) => {
                        let span = tracing::info_span!(parent: None, "notices", server = self.tag, events = events.len());
                        self.deliver_all(&events, None).instrument(span).await
                    }
                    None => notices_open = false,
                },
                else => break,
            }
        }
    }

    /// Whether this instance may deliver for the server (always, outside cluster mode).
    fn may_deliver(&self) -> bool {
        let Some(fence) = self.fence else {
            return true;
        };
        if fence.valid() {
            return true;
        }
        if !self
            .fenced_out
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(server = %self.tag, "this instance no longer owns the server: it delivers nothing more (the next owner delivers from the last checkpoint)");
        }
        false
    }

    async fn deliver_all(&self, events: &[Event], batch: Option<&str>) {
        if !self.may_deliver() {
            return;
        }
        let shown: Vec<Event>;
        let for_people = if events.iter().all(|e| self.rules.shown(&e.kind)) {
            events
        } else {
            shown = (events.iter())
                .filter(|e| self.rules.shown(&e.kind))
                .cloned()
                .collect();
            &shown
        };
        for sink in self.sinks {
            let events = if sink.for_people() {
                for_people
            } else {
                events
            };
            if !events.is_empty() {
                deliver::deliver(self.tag, sink.as_ref(), events, batch, self.shared).await;
            }
        }
    }

    async fn events(&self, parsed: Parsed, log: &mut LogDelivery) {
        let trace = parsed.span.clone();
        self.events_in_trace(parsed, log).instrument(trace).await
    }

    async fn events_in_trace(&self, parsed: Parsed, log: &mut LogDelivery) {
        let tag = self.tag;
        let shared = self.shared;
        if !self.may_deliver() {
            // Read, not delivered, not saved: the next owner delivers it.
            return;
        }
        if !parsed.events.is_empty() {
            // The batch gets an identity a delivery of it again will have too (the log and
            // where it starts): Discord's nonces are made of it. In cluster mode it is first
            // recorded in flight, so a new owner delivers exactly it again.
            let batch = match (log.logs.get_mut(parsed.log), parsed.position) {
                (Some(state), Some(to)) => {
                    let in_cluster = state.checkpoint.as_ref().is_some_and(|c| c.in_cluster());
                    if in_cluster && !state.begin(parsed.lines, to).await {
                        return;
                    }
                    // Where the batch starts, or (before the first save of a log read from
                    // its end) where it ends: what a delivery of it again has too.
                    Some(batch_id(&state.label, &state.from.unwrap_or(to), &to))
                }
                _ => None,
            };
            self.deliver_all(&parsed.events, batch.as_deref()).await;
            for e in &parsed.events {
                shared
                    .metrics
                    .events
                    .with_label_values(&[tag, &e.kind])
                    .inc();
            }
        }
        let Some(pos) = parsed.position else {
            return;
        };
        let Some(state) = log.logs.get_mut(parsed.log) else {
            return;
        };
        state.from = Some(pos);
        let Some(mut checkpoint) = state.checkpoint.take() else {
            return;
        };
        let path = state.path.clone();
        let span = tracing::info_span!("checkpoint", server = tag, log = %state.label, offset = pos.offset);
        let saving = tokio::task::spawn_blocking(move || {
            let saved = checkpoint.save(&pos);
            let len = std::fs::metadata(&path).map(|m| m.len()).ok();
            (checkpoint, saved, len)
        });
        let Ok((checkpoint, saved, len)) = saving.instrument(span).await else {
            return;
        };
        state.checkpoint = Some(checkpoint);
        let component = format!("checkpoint:{}", state.label);
        match saved {
            Err(e) => {
                let since = match &mut state.failing {
                    Some((since, failures)) => {
                        *failures += 1;
                        tracing::debug!(server = %tag, log = %state.label, "the checkpoint is still not saved: {e}");
                        *since
                    }
                    None => {
                        let since = std::time::SystemTime::now();
                        state.failing = Some((since, 1));
                        tracing::warn!(server = %tag, log = %state.label, "cannot save the checkpoint: {e}; delivery goes on, but until a save works a restart delivers again what was delivered since (from byte {} of the log)", state.saved.map_or(0, |p| p.offset));
                        since
                    }
                };
                let at = chrono::DateTime::<chrono::Utc>::from(since).format("%H:%M:%S UTC");
                let e = std::io::Error::new(
                    e.kind(),
                    format!(
                        "{e} (since {at}; a restart now delivers again what was delivered since, from byte {})",
                        state.saved.map_or(0, |p| p.offset)
                    ),
                );
                let _ =
                    StateReport::of(shared).record::<(), _>(What::Checkpoint, &component, Err(e));
            }
            Ok(()) => {
                if let Some((_, failures)) = state.failing.take() {
                    tracing::info!(server = %tag, log = %state.label, "the checkpoint is saved again, after {failures} saves that failed");
                }
                // A lost checkpoint stays shown until lines read since the loss are
                // delivered and saved, not only where reading started.
                let acknowledged = state.lost.is_none() || state.saved.is_some_and(|s| s != pos);
                if acknowledged {
                    if state.lost.take().is_some() {
                        tracing::info!(server = %tag, log = %state.label, "the checkpoint is saved again");
                    }
                    let _ = StateReport::of(shared).record(
                        What::Checkpoint,
                        &component,
                        Ok::<(), std::io::Error>(()),
                    );
                }
                state.saved = Some(pos);
                state.saved_offset.store(pos.offset, Ordering::Relaxed);
                state.lag = lag_of(len, pos.offset);
                let lag: u64 = log.logs.iter().map(|l| l.lag).sum();
                report_lag(tag, shared, self.backlog, lag);
            }
        }
    }
}

/// Says how many bytes of the server's logs wait for delivery: in `checkpoint_lag_bytes`,
/// and to the checks (`backlog`).
fn report_lag(tag: &str, shared: &Shared, backlog: &crate::monitor::Backlog, bytes: u64) {
    shared
        .metrics
        .checkpoint_lag
        .with_label_values(&[tag])
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    backlog.set(bytes);
}

/// How often the lag of each log is looked at while delivery runs.
const LAG_EVERY: Duration = Duration::from_secs(5);
/// Bytes of a file of length `len` past `offset` (a file shorter than the offset was
/// replaced or truncated: all of it is past).
fn lag_of(len: Option<u64>, offset: u64) -> u64 {
    match len {
        Some(len) if len >= offset => len - offset,
        Some(len) => len,
        None => 0,
    }
}

/// Keeps `checkpoint_lag_bytes` true while delivery runs: every [`LAG_EVERY`], the length
/// of each log (read off the runtime's threads) less the offset last saved. Runs until
/// dropped.
async fn watch_lag(
    tag: &str,
    logs: Vec<(PathBuf, Arc<AtomicU64>)>,
    shared: &Shared,
    backlog: &crate::monitor::Backlog,
) {
    let mut every = tokio::time::interval(LAG_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let paths: Vec<PathBuf> = logs.iter().map(|(p, _)| p.clone()).collect();
        let Ok(lens) = tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
                .collect::<Vec<_>>()
        })
        .await
        else {
            continue;
        };
        let lag: u64 = lens
            .into_iter()
            .zip(&logs)
            .map(|(len, (_, offset))| lag_of(len, offset.load(Ordering::Relaxed)))
            .sum();
        report_lag(tag, shared, backlog, lag);
    }
}
