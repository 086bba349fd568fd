//! The pipeline's delivery task: each parsed batch to every sink (see [`deliver`]), then
//! its position saved as the log's checkpoint; the notices of the monitors and checks
//! between batches; and how far behind each log is.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::Instrument;

use super::{Outlets, Parsed, deliver};
use crate::alert::Notice;
use crate::config::OnLostCheckpoint;
use crate::observe::Telemetry;
use crate::observe::health::{LogPart, Part, State};
use crate::sink::Sink;
use crate::store::{StateReport, What};
use crate::tail::checkpoint::{Loaded, ServerCheckpoint};
use crate::tail::{Position, StartAt};

/// Where reading starts for what was found at start, and (when the checkpoint was lost)
/// what to show until a save acknowledges it.
pub(super) fn start_at(
    tag: &str,
    label: &LogPart,
    loaded: Loaded,
    on_lost: OnLostCheckpoint,
    shared: &Telemetry,
) -> (StartAt, Option<String>) {
    let component = Part::Checkpoint(label.clone());
    shared.health.set(&component, State::Ready, None);
    let damaged = |kind: &str| {
        shared
            .metrics
            .errors
            .with_label_values(&[&component.to_string(), kind])
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
pub(super) struct LogDelivery {
    logs: Vec<LogState>,
    rx: mpsc::Receiver<Parsed>,
}

impl LogDelivery {
    /// Each log's path and the offset saved last, for the lag watcher.
    pub(super) fn watched(&self) -> Vec<(PathBuf, Arc<AtomicU64>)> {
        (self.logs.iter())
            .map(|l| (l.path.clone(), l.saved_offset.clone()))
            .collect()
    }
}

/// What the delivery task opens the logs' checkpoints with.
pub(super) struct Opening {
    pub(super) files: Vec<super::LogFile>,
    pub(super) names: Vec<super::LogName>,
    pub(super) checkpoints: crate::tail::checkpoint::CheckpointStore,
    pub(super) on_lost: OnLostCheckpoint,
    pub(super) starts: super::Starts,
}

impl Opening {
    /// Reads each log's checkpoint (off the runtime's threads), tells its tailer where to
    /// start, and returns the logs as delivery keeps them, fed by `rx`.
    pub(super) async fn open(
        self,
        tag: &str,
        shared: &Telemetry,
        rx: mpsc::Receiver<Parsed>,
    ) -> Option<LogDelivery> {
        let Self {
            files,
            names,
            checkpoints,
            on_lost,
            starts,
        } = self;
        let keys: Vec<String> = names.iter().map(|n| n.checkpoint.clone()).collect();
        let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        let (opened, lens) = tokio::task::spawn_blocking(move || {
            let opened = keys.iter().map(|k| checkpoints.open(k)).collect::<Vec<_>>();
            let lens = (paths.iter())
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .collect::<Vec<_>>();
            (opened, lens)
        })
        .await
        .ok()?;
        let mut logs = Vec::new();
        let each = files
            .into_iter()
            .zip(names)
            .zip(opened)
            .zip(starts)
            .zip(lens);
        for ((((file, name), (checkpoint, loaded)), start_tx), len) in each {
            let (start, lost) = start_at(tag, &name.label, loaded, on_lost, shared);
            let (from, offset) = match &start {
                StartAt::Position(p) => (Some(*p), p.offset),
                StartAt::Beginning => (None, 0),
                StartAt::End => (None, len),
            };
            let _ = start_tx.send((start, checkpoint.replay()));
            logs.push(LogState {
                label: name.label,
                path: file.path,
                checkpoint: Some(checkpoint),
                lost,
                saved: None,
                lag: 0,
                saved_offset: Arc::new(AtomicU64::new(offset)),
                failing: None,
                from,
            });
        }
        Some(LogDelivery { logs, rx })
    }
}

/// One log, as the delivery task keeps it.
pub(super) struct LogState {
    /// Its name in health (`prod`, `prod:factorio-current`).
    label: LogPart,
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
fn batch_id(label: &LogPart, from: &Position, to: &Position) -> String {
    let fingerprint = match from.fingerprint {
        crate::tail::Fingerprint::Sha256 { digest, .. } => hex::encode(&digest[..8]),
        crate::tail::Fingerprint::Legacy { sip13, .. } => format!("{sip13:016x}"),
    };
    format!("{label}@{fingerprint}:{}-{}", from.offset, to.offset)
}

/// The delivery task of one server: the only writer to its sinks.
pub(super) struct Delivery<'a> {
    tag: &'a str,
    sinks: &'a [Arc<dyn Sink>],
    shared: &'a Telemetry,
    rules: &'a crate::config::EventRules,
    fence: Option<&'a crate::cluster::Fence>,
    /// Set once the fence no longer held (said once in the log).
    fenced_out: std::sync::atomic::AtomicBool,
    backlog: &'a crate::monitor::Backlog,
}

impl<'a> Delivery<'a> {
    /// The delivery of server `tag` of pipeline `p`.
    pub(super) fn of(tag: &'a str, p: &'a Outlets, shared: &'a Telemetry) -> Self {
        Self {
            tag,
            sinks: &p.sinks,
            shared,
            rules: &p.rules,
            fence: p.fence.as_deref(),
            fenced_out: Default::default(),
            backlog: &p.backlog,
        }
    }

    /// Delivers the log's events (saving checkpoints) and the notices, as they come, until
    /// both are closed.
    pub(super) async fn run(
        &self,
        mut log: Option<LogDelivery>,
        mut notices: mpsc::Receiver<Vec<Notice>>,
    ) {
        for sink in self.sinks {
            self.shared.health.set(
                &Part::Sink {
                    server: self.tag.to_owned(),
                    sink: sink.name().to_owned(),
                },
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

    async fn deliver_all(&self, events: &[Notice], batch: Option<&str>) {
        if !self.may_deliver() {
            return;
        }
        let shown: Vec<Notice>;
        let for_people = if events.iter().all(|e| self.rules.shown(e.kind())) {
            events
        } else {
            shown = (events.iter())
                .filter(|e| self.rules.shown(e.kind()))
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
        if !self.may_deliver() {
            // Read, not delivered, not saved: the next owner delivers it.
            return;
        }
        if !parsed.events.is_empty() && !self.deliver_parsed(&parsed, log).await {
            return;
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
        let span = tracing::info_span!("checkpoint", server = self.tag, log = %state.label, offset = pos.offset);
        let saving = tokio::task::spawn_blocking(move || {
            let saved = checkpoint.save(&pos);
            let len = std::fs::metadata(&path).map(|m| m.len()).ok();
            (checkpoint, saved, len)
        });
        let Ok((checkpoint, saved, len)) = saving.instrument(span).await else {
            return;
        };
        state.checkpoint = Some(checkpoint);
        match saved {
            Err(e) => self.not_saved(state, e),
            Ok(()) => {
                self.saved(state, pos, len);
                let lag: u64 = log.logs.iter().map(|l| l.lag).sum();
                report_lag(self.tag, self.shared, self.backlog, lag);
            }
        }
    }

    /// Delivers a batch's events to every sink; false when it must not go on (cluster
    /// mode: the batch could not be recorded in flight).
    async fn deliver_parsed(&self, parsed: &Parsed, log: &mut LogDelivery) -> bool {
        // The batch gets an identity a delivery of it again will have too (the log and
        // where it starts): Discord's nonces are made of it. In cluster mode it is first
        // recorded in flight, so a new owner delivers exactly it again.
        let batch = match (log.logs.get_mut(parsed.log), parsed.position) {
            (Some(state), Some(to)) => {
                let in_cluster = state.checkpoint.as_ref().is_some_and(|c| c.in_cluster());
                if in_cluster && !state.begin(parsed.lines, to).await {
                    return false;
                }
                // Where the batch starts, or (before the first save of a log read from
                // its end) where it ends: what a delivery of it again has too.
                Some(batch_id(&state.label, &state.from.unwrap_or(to), &to))
            }
            _ => None,
        };
        self.deliver_all(&parsed.events, batch.as_deref()).await;
        for e in &parsed.events {
            let labels = [self.tag, e.kind()];
            self.shared.metrics.events.with_label_values(&labels).inc();
        }
        true
    }

    /// A save that failed: said once with what a restart would deliver again, shown in
    /// `/ready` and counted until a save works.
    fn not_saved(&self, state: &mut LogState, e: std::io::Error) {
        let tag = self.tag;
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
        let component = Part::Checkpoint(state.label.clone());
        let _ = StateReport::of(self.shared).record::<(), _>(What::Checkpoint, &component, Err(e));
    }

    /// A save that worked at `pos` (the log `len` bytes long).
    fn saved(&self, state: &mut LogState, pos: Position, len: Option<u64>) {
        let tag = self.tag;
        if let Some((_, failures)) = state.failing.take() {
            tracing::info!(server = %tag, log = %state.label, "the checkpoint is saved again, after {failures} saves that failed");
        }
        // A lost checkpoint stays shown until lines read since the loss are delivered and
        // saved, not only where reading started.
        let acknowledged = state.lost.is_none() || state.saved.is_some_and(|s| s != pos);
        if acknowledged {
            if state.lost.take().is_some() {
                tracing::info!(server = %tag, log = %state.label, "the checkpoint is saved again");
            }
            let component = Part::Checkpoint(state.label.clone());
            let ok = Ok::<(), std::io::Error>(());
            let _ = StateReport::of(self.shared).record(What::Checkpoint, &component, ok);
        }
        state.saved = Some(pos);
        state.saved_offset.store(pos.offset, Ordering::Relaxed);
        state.lag = lag_of(len, pos.offset);
    }
}

/// Says how many bytes of the server's logs wait for delivery: in `checkpoint_lag_bytes`,
/// and to the checks (`backlog`).
fn report_lag(tag: &str, shared: &Telemetry, backlog: &crate::monitor::Backlog, bytes: u64) {
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
pub(super) async fn watch_lag(
    tag: &str,
    logs: Vec<(PathBuf, Arc<AtomicU64>)>,
    shared: &Telemetry,
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
