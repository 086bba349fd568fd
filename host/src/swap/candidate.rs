//! A slot's candidate in compare mode, for parsers and monitors alike: it runs on a thread
//! of its own over exactly what the live version had, its output is compared with the
//! live output ([`CompareReport`]) and goes nowhere else. The live path only hands inputs
//! over without waiting; one that finds the candidate behind is skipped and counted.

use parking_lot::Mutex;
use std::borrow::Cow;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::compare::{CompareReport, Compared};
use crate::observe::metrics::Metrics;

/// Inputs queued for the candidate; more and the next one is skipped.
const QUEUE: usize = 64;

/// What can run as a candidate: a parser chain, or a server's monitors.
pub trait Contender: Send + 'static {
    /// What the live version and the candidate both take.
    type Input: Send + 'static;
    /// One piece of output, compared with the live version's (an event, an alert).
    type Out: Compared + Send + 'static;
    /// The name of its thread, before the server's tag (`shadow`, `candidate`).
    const THREAD: &'static str;

    /// Its plugins' names (`a+b`), for the metrics and the log.
    fn names(&self) -> String;
    /// Its version, which the report names.
    fn version(&self) -> String;
    /// Runs on `input`: its output by place in the input, or none if a plugin faulted.
    fn run(&mut self, input: &Self::Input) -> Option<Vec<(usize, Self::Out)>>;
    /// What `input` was, place by place, for the report's examples.
    fn describe(input: &Self::Input) -> Cow<'_, [String]>;
}

/// What the candidate's thread takes.
enum Offer<C: Contender> {
    /// An input, and what the live version gave for it.
    Input {
        input: C::Input,
        live: Vec<(usize, C::Out)>,
    },
    /// A new candidate.
    Replace(C),
}

/// The candidate of one server's slot (none running until [`Candidate::set`]).
pub struct Candidate<C: Contender> {
    tag: String,
    tx: Option<mpsc::Sender<Offer<C>>>,
    report: Arc<Mutex<Option<CompareReport<C::Out>>>>,
    metrics: Arc<Metrics>,
}

impl<C: Contender> Candidate<C> {
    /// None yet for server `tag`; its comparison goes to `report` (which the API reads).
    pub fn new(
        tag: &str,
        report: Arc<Mutex<Option<CompareReport<C::Out>>>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            tag: tag.to_owned(),
            tx: None,
            report,
            metrics,
        }
    }

    /// Whether a candidate runs.
    pub fn is_running(&self) -> bool {
        self.tx.is_some()
    }

    /// Starts, replaces or (none) stops the candidate; its comparison starts afresh.
    pub fn set(&mut self, candidate: Option<C>) {
        let mut report = self.report.lock();
        let Some(candidate) = candidate else {
            self.tx = None;
            *report = None;
            return;
        };
        *report = Some(CompareReport::new(candidate.version()));
        if let Some(tx) = &self.tx {
            // The thread is gone only if it panicked; then the candidate stops.
            if tx.blocking_send(Offer::Replace(candidate)).is_err() {
                self.tx = None;
                *report = None;
            }
            return;
        }
        match spawn(
            &self.tag,
            candidate,
            self.report.clone(),
            self.metrics.clone(),
        ) {
            Ok(tx) => self.tx = Some(tx),
            Err(e) => {
                tracing::error!(server = %self.tag, "cannot start the {} candidate: {e}", C::THREAD);
                *report = None;
            }
        }
    }

    /// Hands `input` and the live output over without waiting; an input the live version
    /// faulted on, or that finds the candidate behind, is skipped and counted.
    pub fn offer(&self, input: C::Input, live: Vec<(usize, C::Out)>, live_faulted: bool) {
        let Some(tx) = &self.tx else {
            return;
        };
        let handed = !live_faulted && tx.try_send(Offer::Input { input, live }).is_ok();
        if !handed && let Some(r) = self.report.lock().as_mut() {
            r.skipped += 1;
        }
    }
}

fn spawn<C: Contender>(
    tag: &str,
    candidate: C,
    report: Arc<Mutex<Option<CompareReport<C::Out>>>>,
    metrics: Arc<Metrics>,
) -> std::io::Result<mpsc::Sender<Offer<C>>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let tag = tag.to_owned();
    std::thread::Builder::new()
        .name(format!("{}-{tag}", C::THREAD))
        .spawn(move || run(&tag, candidate, rx, &report, &metrics))?;
    Ok(tx)
}

/// The candidate's thread: each input run and compared, until the live side is gone.
fn run<C: Contender>(
    tag: &str,
    mut candidate: C,
    mut rx: mpsc::Receiver<Offer<C>>,
    report: &Mutex<Option<CompareReport<C::Out>>>,
    metrics: &Metrics,
) {
    let mut names = candidate.names();
    metrics
        .plugin_discrepancies
        .with_label_values(&[tag, &names]);
    while let Some(offer) = rx.blocking_recv() {
        let (input, live) = match offer {
            Offer::Input { input, live } => (input, live),
            Offer::Replace(new) => {
                candidate = new;
                names = candidate.names();
                metrics
                    .plugin_discrepancies
                    .with_label_values(&[tag, &names]);
                tracing::info!(server = %tag, candidate = %names, "compare mode: a new {} candidate", C::THREAD);
                continue;
            }
        };
        let out = candidate.run(&input);
        let mut guard = report.lock();
        let Some(r) = guard.as_mut() else { continue };
        let Some(out) = out else {
            r.candidate_faults += 1;
            continue;
        };
        let shown = r.sample.len();
        let found = r.add(&C::describe(&input), &live, &out);
        if found > 0 {
            (metrics.plugin_discrepancies)
                .with_label_values(&[tag, &names])
                .inc_by(found);
            for e in &r.sample[shown..] {
                tracing::info!(server = %tag, candidate = %names, what = ?e.what, input = %e.input, "the candidate disagrees");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    /// A candidate that gives an event of kind `line` for each line, and faults on `boom`.
    struct Echo;

    impl Contender for Echo {
        type Input = Vec<String>;
        type Out = Event;
        const THREAD: &'static str = "echo";

        fn names(&self) -> String {
            "echo".into()
        }

        fn version(&self) -> String {
            "echo@1".into()
        }

        fn run(&mut self, lines: &Vec<String>) -> Option<Vec<(usize, Event)>> {
            (!lines.iter().any(|l| l == "boom")).then(|| {
                lines
                    .iter()
                    .map(|l| Event::new(l.clone()))
                    .enumerate()
                    .collect()
            })
        }

        fn describe(lines: &Vec<String>) -> Cow<'_, [String]> {
            Cow::Borrowed(lines)
        }
    }

    fn lines(of: &[&str]) -> Vec<String> {
        of.iter().map(|l| (*l).to_owned()).collect()
    }

    /// The report once `done` says it is complete (a hang guard, not a timing).
    fn settled(
        report: &Mutex<Option<CompareReport<Event>>>,
        done: impl Fn(&CompareReport<Event>) -> bool,
    ) -> CompareReport<Event> {
        let started = std::time::Instant::now();
        loop {
            if let Some(r) = report.lock().as_ref().filter(|r| done(r)) {
                return r.clone();
            }
            assert!(
                started.elapsed().as_secs() < 30,
                "the candidate never got there"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn compares_counts_faults_and_skips_and_starts_afresh_when_replaced() {
        let report = Arc::new(Mutex::new(None));
        let mut c = Candidate::new("prod", report.clone(), Arc::new(Metrics::new()));
        c.offer(lines(&["a"]), Vec::new(), false);
        assert!(report.lock().is_none(), "no candidate, no report");
        c.set(Some(Echo));
        assert!(c.is_running());
        c.offer(lines(&["a", "b"]), vec![(0, Event::new("a"))], false);
        c.offer(lines(&["boom"]), Vec::new(), false);
        c.offer(lines(&["c"]), Vec::new(), true);
        let r = settled(&report, |r| r.candidate_faults == 1);
        assert_eq!(r.candidate, "echo@1");
        assert_eq!((r.compared, r.agreements, r.extra), (2, 1, 1));
        assert_eq!(r.skipped, 1, "the live version faulted on it");
        c.set(Some(Echo));
        assert_eq!(report.lock().as_ref().map(|r| r.compared), Some(0));
        c.set(None);
        assert!(!c.is_running() && report.lock().is_none());
    }
}
