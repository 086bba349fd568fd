//! The candidate parser chain of compare mode: it parses exactly the lines the live chain
//! parsed, on a thread of their own; its events are compared with the live ones and go
//! nowhere else.

use parking_lot::Mutex;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::plugin::ParserChain;
use crate::swap::compare::ParserReport;

/// A batch for the candidate of compare mode: the lines and the live chain's events for
/// them, by line index.
pub struct ShadowBatch {
    pub lines: Vec<String>,
    pub live: Vec<(usize, crate::event::Event)>,
}

/// What the candidate's thread takes.
pub enum ShadowInput {
    Batch(ShadowBatch),
    /// A new candidate: the comparison starts afresh (the report is reset by the parser
    /// thread).
    Replace(ParserChain),
}

fn candidate_names(candidate: &ParserChain) -> String {
    candidate
        .parsers()
        .iter()
        .map(|p| p.plugin().name().to_owned())
        .collect::<Vec<_>>()
        .join("+")
}

/// Runs a candidate chain on its own thread over what the live chain parsed, and keeps the
/// comparison in `report`. The live path only hands batches over without waiting; a batch
/// that finds the candidate behind is skipped and counted.
pub fn spawn_shadow(
    tag: &str,
    mut candidate: ParserChain,
    report: Arc<Mutex<Option<ParserReport>>>,
    metrics: Arc<crate::observe::metrics::Metrics>,
) -> std::io::Result<mpsc::Sender<ShadowInput>> {
    let (tx, mut rx) = mpsc::channel::<ShadowInput>(8);
    let mut names = candidate_names(&candidate);
    let tag = tag.to_owned();
    metrics
        .plugin_discrepancies
        .with_label_values(&[&tag, &names]);
    std::thread::Builder::new()
        .name(format!("shadow-{tag}"))
        .spawn(move || {
            while let Some(input) = rx.blocking_recv() {
                let batch = match input {
                    ShadowInput::Batch(b) => b,
                    ShadowInput::Replace(new) => {
                        candidate = new;
                        names = candidate_names(&candidate);
                        tracing::info!(server = %tag, candidate = %candidate.version(), "compare mode: a new candidate");
                        continue;
                    }
                };
                let out = candidate.parse(&batch.lines);
                let mut guard = report.lock();
                let Some(r) = guard.as_mut() else { continue };
                if !out.faults.is_empty() {
                    r.candidate_faults += 1;
                    continue;
                }
                let shown = r.sample.len();
                let found = r.add(&batch.lines, &batch.live, &out.events);
                if found > 0 {
                    metrics
                        .plugin_discrepancies
                        .with_label_values(&[&tag, &names])
                        .inc_by(found);
                    for e in &r.sample[shown..] {
                        tracing::info!(server = %tag, candidate = %names, what = ?e.what, line = %e.input, "the candidate disagrees");
                    }
                }
            }
        })?;
    Ok(tx)
}
