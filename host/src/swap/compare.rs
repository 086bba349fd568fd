//! Compare mode: a candidate runs on exactly the input the live plugins had, and every
//! disagreement is counted and sampled. Only the live plugins' output reaches the sinks.
//!
//! A parser candidate is compared line by line on the events it gives
//! ([`ParserReport`]); a monitor candidate input by input (a batch of events, a sample) on the
//! alerts it raises ([`MonitorReport`]).

use serde::Serialize;

use crate::alert::Alert;
use crate::event::Event;

/// What two plugins' outputs are compared on.
pub trait Compared: Clone + Serialize {
    /// Equal for comparison.
    fn same(&self, other: &Self) -> bool;

    /// What pairs a live output with a candidate's for one input; none pairs them in order.
    fn pair_key(&self) -> Option<&str> {
        None
    }
}

impl Compared for Event {
    /// Kind, player, message and fields (presentation hints aside).
    fn same(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.player == other.player
            && self.message == other.message
            && self.fields == other.fields
    }
}

/// An alert as compare mode shows and compares it: everything the monitor decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    pub key: String,
    pub state: crate::alert::AlertState,
    pub severity: crate::event::Severity,
    pub title: String,
    pub text: String,
    pub fields: Vec<(String, String)>,
    pub mention: Option<String>,
}

impl From<&Alert> for AlertView {
    fn from(a: &Alert) -> Self {
        Self {
            key: a.key.clone(),
            state: a.state,
            severity: a.severity,
            title: a.title.clone(),
            text: a.text.clone(),
            fields: a.fields.clone(),
            mention: a.mention.clone(),
        }
    }
}

impl Compared for AlertView {
    fn same(&self, other: &Self) -> bool {
        self == other
    }

    /// Alerts are paired by key: which monitor raised one, and in which order, is not a
    /// disagreement.
    fn pair_key(&self) -> Option<&str> {
        Some(&self.key)
    }
}

/// The comparison of a parser candidate: inputs are log lines, outputs events.
pub type ParserReport = CompareReport<Event>;
/// The comparison of a monitor candidate: inputs are event batches and samples, outputs
/// alerts (which monitor raised one does not matter, so a renamed plugin can be compared).
pub type MonitorReport = CompareReport<AlertView>;

/// How many disagreements are kept as examples.
pub const SAMPLE: usize = 50;
/// Bytes of an input kept in a sampled disagreement (the rest is cut and counted), so the
/// sample stays small whatever the log's lines are (up to 1 MiB each).
pub const SAMPLE_TEXT: usize = 1024;

/// How the candidate disagreed about one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Disagreement {
    /// The live chain gave an event the candidate did not.
    Missing,
    /// The candidate gave an event the live chain did not.
    Extra,
    /// Both gave an event, with a different kind, player, message or fields.
    Different,
}

/// One example of a disagreement.
#[derive(Debug, Clone, Serialize)]
pub struct Example<T> {
    pub what: Disagreement,
    /// The input: a log line, or a description of a monitor's input.
    pub input: String,
    pub live: Option<T>,
    pub candidate: Option<T>,
}

/// What a comparison found so far.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport<T> {
    /// The candidate's version.
    pub candidate: String,
    /// Inputs compared: log lines for parsers; event batches and samples for monitors.
    pub compared: u64,
    /// Inputs on which both gave the same output (none counts).
    pub agreements: u64,
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
    /// Calls the candidate lost to a fault (not compared).
    pub candidate_faults: u64,
    /// Calls not compared because the candidate was behind (the live path never waits) or
    /// the live plugins faulted.
    pub skipped: u64,
    /// The first disagreements, at most [`SAMPLE`].
    pub sample: Vec<Example<T>>,
}

impl<T> Default for CompareReport<T> {
    fn default() -> Self {
        Self {
            candidate: String::new(),
            compared: 0,
            agreements: 0,
            missing: 0,
            extra: 0,
            different: 0,
            candidate_faults: 0,
            skipped: 0,
            sample: Vec::new(),
        }
    }
}

impl<T: Compared> CompareReport<T> {
    /// A fresh report on `candidate`.
    pub fn new(candidate: String) -> Self {
        Self {
            candidate,
            ..Self::default()
        }
    }

    /// All disagreements.
    pub fn disagreements(&self) -> u64 {
        self.missing + self.extra + self.different
    }

    /// Compares one batch: `live` and `candidate` are (input index, output) pairs in input
    /// order. Returns the number of disagreements found in it.
    pub fn add(&mut self, inputs: &[String], live: &[(usize, T)], candidate: &[(usize, T)]) -> u64 {
        let before = self.disagreements();
        let (mut l, mut c) = (0, 0);
        for (i, text) in inputs.iter().enumerate() {
            let live_here = take(live, &mut l, i);
            let cand_here = take(candidate, &mut c, i);
            self.compared += 1;
            let pairs = pair(&live_here, &cand_here);
            if pairs
                .iter()
                .all(|p| matches!(p, (Some(a), Some(b)) if a.same(b)))
            {
                self.agreements += 1;
                continue;
            }
            for (a, b) in pairs {
                let what = match (a, b) {
                    (Some(a), Some(b)) if a.same(b) => continue,
                    (Some(_), Some(_)) => Disagreement::Different,
                    (Some(_), None) => Disagreement::Missing,
                    (None, Some(_)) => Disagreement::Extra,
                    (None, None) => continue,
                };
                match what {
                    Disagreement::Missing => self.missing += 1,
                    Disagreement::Extra => self.extra += 1,
                    Disagreement::Different => self.different += 1,
                }
                if self.sample.len() < SAMPLE {
                    self.sample.push(Example {
                        what,
                        input: cut(text),
                        live: a.cloned(),
                        candidate: b.cloned(),
                    });
                }
            }
        }
        self.disagreements() - before
    }
}

/// `text`, or its first [`SAMPLE_TEXT`] bytes (at a character boundary) and how many were
/// left out.
fn cut(text: &str) -> String {
    if text.len() <= SAMPLE_TEXT {
        return text.to_owned();
    }
    let end = text.floor_char_boundary(SAMPLE_TEXT);
    format!("{}… ({} bytes more)", &text[..end], text.len() - end)
}

/// The outputs of input `i`, advancing `at` past them.
fn take<'a, T>(events: &'a [(usize, T)], at: &mut usize, i: usize) -> Vec<&'a T> {
    let mut out = Vec::new();
    while let Some((j, e)) = events.get(*at) {
        if *j != i {
            break;
        }
        out.push(e);
        *at += 1;
    }
    out
}

/// The live and candidate outputs of one input, paired: by [`Compared::pair_key`] where
/// they have one, else in order; an output without a partner is paired with none.
fn pair<'a, T: Compared>(
    live: &[&'a T],
    candidate: &[&'a T],
) -> Vec<(Option<&'a T>, Option<&'a T>)> {
    let mut taken = vec![false; candidate.len()];
    let mut pairs = Vec::new();
    let mut in_order = 0;
    for a in live {
        let partner = match a.pair_key() {
            Some(key) => candidate
                .iter()
                .enumerate()
                .position(|(j, b)| !taken[j] && b.pair_key() == Some(key)),
            None => {
                in_order += 1;
                (in_order - 1 < candidate.len()).then_some(in_order - 1)
            }
        };
        if let Some(j) = partner {
            taken[j] = true;
        }
        pairs.push((Some(*a), partner.map(|j| candidate[j])));
    }
    for (j, b) in candidate.iter().enumerate() {
        if !taken[j] {
            pairs.push((None, Some(*b)));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, player: &str) -> Event {
        Event {
            player: Some(player.into()),
            ..Event::new(kind)
        }
    }

    #[test]
    fn each_kind_of_disagreement_is_counted_and_sampled() {
        let lines: Vec<String> = (0..5).map(|i| format!("line {i}")).collect();
        let live = vec![
            (0, ev("join", "a")),
            (1, ev("chat", "b")),
            (3, ev("leave", "c")),
        ];
        let mut text_differs = ev("leave", "c");
        text_differs.text = Some("other text".into());
        let candidate = vec![
            (0, ev("join", "a")),
            (2, ev("death", "d")),
            (3, text_differs),
            (4, ev("chat", "x")),
        ];
        let mut r = ParserReport::default();
        assert_eq!(r.add(&lines, &live, &candidate), 3);
        assert_eq!(
            (r.compared, r.agreements),
            (5, 2),
            "lines 0 and 3 agree (text is presentation)"
        );
        assert_eq!((r.missing, r.extra, r.different), (1, 2, 0));
        assert_eq!(r.sample[0].input, "line 1");
        assert_eq!(r.sample[0].what, Disagreement::Missing);
        let live2 = vec![(0, ev("chat", "x"))];
        let cand2 = vec![(0, ev("chat", "y"))];
        r.add(&lines[..1], &live2, &cand2);
        assert_eq!(r.different, 1);
        assert_eq!(r.disagreements(), 4);
    }

    fn alert(key: &str, text: &str) -> AlertView {
        AlertView::from(&Alert::firing(key, "t", text))
    }

    #[test]
    fn alerts_are_paired_by_key_whatever_their_order() {
        let inputs = vec!["batch".to_owned()];
        let live = vec![(0, alert("word:b", "x")), (0, alert("word:d", "x"))];
        let candidate = vec![
            (0, alert("word:a", "x")),
            (0, alert("word:b", "x")),
            (0, alert("word:c", "x")),
            (0, alert("word:d", "other")),
        ];
        let mut r = MonitorReport::default();
        assert_eq!(r.add(&inputs, &live, &candidate), 3);
        assert_eq!((r.missing, r.extra, r.different), (0, 2, 1));
        let keys: Vec<_> = r
            .sample
            .iter()
            .map(|e| (e.what, e.candidate.as_ref().map(|a| a.key.as_str())))
            .collect();
        assert_eq!(
            keys,
            [
                (Disagreement::Different, Some("word:d")),
                (Disagreement::Extra, Some("word:a")),
                (Disagreement::Extra, Some("word:c")),
            ]
        );
        let mut r = MonitorReport::default();
        let reversed: Vec<_> = live.iter().rev().cloned().collect();
        assert_eq!(
            r.add(&inputs, &live, &reversed),
            0,
            "order is no disagreement"
        );
        assert_eq!(r.agreements, 1);
    }

    #[test]
    fn the_sample_is_bounded() {
        let lines: Vec<String> = (0..200).map(|i| i.to_string()).collect();
        let live: Vec<_> = (0..200).map(|i| (i, ev("chat", "a"))).collect();
        let mut r = ParserReport::default();
        r.add(&lines, &live, &[]);
        assert_eq!(r.missing, 200);
        assert_eq!(r.sample.len(), SAMPLE);
        // A 1 MiB line is kept as its first KiB.
        let mut r = ParserReport::default();
        let huge = vec!["é".repeat(512 << 10)];
        r.add(&huge, &[(0, ev("chat", "a"))], &[]);
        let kept = &r.sample[0].input;
        assert!(kept.len() < SAMPLE_TEXT + 40, "{} bytes kept", kept.len());
        assert!(kept.ends_with(&format!("({} bytes more)", (1 << 20) - SAMPLE_TEXT)));
    }
}
