//! One server's pipeline: its log is tailed, its lines parsed by its parser chain, and the
//! events delivered to its sinks; then the checkpoint is saved.
//!
//! ```text
//! tail task ──Batch──► parser thread ──Parsed──► delivery task ──► sinks, checkpoint
//! ```
//!
//! Each stage runs on its own (the parser on a thread, since plugin calls are synchronous),
//! joined by small bounded queues: a slow stage holds the ones before it back, and no line
//! is dropped. Servers share nothing but the plugin engine, so one server's stuck sink or
//! broken plugin never delays another.

mod setup;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

pub use setup::parser_chain;

use crate::checkpoint::CheckpointStore;
use crate::event::Event;
use crate::health::{Health, State};
use crate::metrics::Metrics;
use crate::plugin::ParserChain;
use crate::sink::Sink;
use crate::tail::{self, Batch, Position, StartAt, TailOptions, TailReader};

/// Batches in flight between two stages.
const QUEUE: usize = 4;
/// Attempts per batch per sink, and the time each may take.
const SINK_ATTEMPTS: u32 = 3;
const SINK_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything one server's pipeline needs.
pub struct ServerPipeline {
    pub tag: String,
    pub log_path: PathBuf,
    pub parsers: ParserChain,
    pub sinks: Vec<Arc<dyn Sink>>,
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
/// read, saves its checkpoint, and the returned task ends.
pub fn spawn(
    p: ServerPipeline,
    shared: Shared,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let tag = p.tag.clone();
    let start = match p.checkpoints.load(&tag) {
        Some(pos) => StartAt::Position(pos),
        None => StartAt::End,
    };
    let reader = TailReader::new(&p.log_path, start, p.max_line_bytes);
    let (line_tx, line_rx) = mpsc::channel::<Batch>(QUEUE);
    let (event_tx, event_rx) = mpsc::channel::<Parsed>(QUEUE);

    let tailer = format!("tailer:{tag}");
    shared.health.register(&tailer);
    let status = tail::Status {
        health: shared.health.clone(),
        component: tailer,
    };
    let tail_task = tokio::spawn(tail::run(reader, line_tx, p.tail, shutdown, status));

    let parse_shared = shared.clone();
    let parse_tag = tag.clone();
    let parsers = p.parsers;
    let parser_thread = std::thread::Builder::new()
        .name(format!("parse-{tag}"))
        .spawn(move || parse_loop(&parse_tag, parsers, line_rx, event_tx, &parse_shared));

    let log_path = p.log_path;
    tokio::spawn(async move {
        deliver_loop(&tag, &log_path, &p.sinks, &p.checkpoints, event_rx, &shared).await;
        if let Ok(thread) = parser_thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let _ = tail_task.await;
        tracing::debug!(server = %tag, "pipeline stopped");
    })
}

fn parse_loop(
    tag: &str,
    mut parsers: ParserChain,
    mut rx: mpsc::Receiver<Batch>,
    tx: mpsc::Sender<Parsed>,
    shared: &Shared,
) {
    let names: Vec<String> = parsers
        .parsers()
        .iter()
        .map(|p| p.plugin().name().to_owned())
        .collect();
    for name in &names {
        shared
            .health
            .set(&format!("parser:{tag}:{name}"), State::Ready, None);
    }
    while let Some(batch) = rx.blocking_recv() {
        let m = &shared.metrics;
        m.lines_read
            .with_label_values(&[tag])
            .inc_by(batch.lines.len() as u64);
        let cut = batch.lines.iter().filter(|l| l.truncated_bytes > 0).count();
        if cut > 0 {
            m.lines_dropped
                .with_label_values(&[tag, "too_long"])
                .inc_by(cut as u64);
        }
        let lines: Vec<String> = batch.lines.into_iter().map(|l| l.text).collect();
        let out = parsers.parse(&lines);
        for (i, name) in names.iter().enumerate() {
            if let Some(t) = out.timings.get(i) {
                m.plugin_call_seconds
                    .with_label_values(&[tag, name])
                    .observe(t.as_secs_f64());
            }
        }
        for (i, name) in names.iter().enumerate() {
            match out.faults.iter().find(|(p, _)| *p == i) {
                Some((_, fault)) => {
                    m.plugin_traps
                        .with_label_values(&[tag, name, fault.kind()])
                        .inc();
                    m.lines_dropped
                        .with_label_values(&[tag, "plugin_fault"])
                        .inc_by(lines.len() as u64);
                    m.errors
                        .with_label_values(&[&format!("parser:{tag}:{name}"), fault.kind()])
                        .inc();
                    shared.health.error(
                        &format!("parser:{tag}:{name}"),
                        format!("the plugin {fault}"),
                    );
                }
                None => m.plugin_calls.with_label_values(&[tag, name]).inc(),
            }
        }
        let parsed = Parsed {
            events: out.events.into_iter().map(|(_, e)| e).collect(),
            position: batch.position,
        };
        if tx.blocking_send(parsed).is_err() {
            break;
        }
    }
}

async fn deliver_loop(
    tag: &str,
    log_path: &std::path::Path,
    sinks: &[Arc<dyn Sink>],
    checkpoints: &CheckpointStore,
    mut rx: mpsc::Receiver<Parsed>,
    shared: &Shared,
) {
    for sink in sinks {
        shared
            .health
            .set(&format!("sink:{tag}:{}", sink.name()), State::Ready, None);
    }
    while let Some(parsed) = rx.recv().await {
        if !parsed.events.is_empty() {
            for sink in sinks {
                deliver(tag, sink.as_ref(), &parsed.events, shared).await;
            }
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
        let result = tokio::time::timeout(SINK_TIMEOUT, sink.deliver(tag, events)).await;
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
            Err(_) => format!("no answer within {} s", SINK_TIMEOUT.as_secs()),
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
