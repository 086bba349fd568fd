//! Compare mode: a candidate parser chain runs on exactly the lines the live one parsed, and
//! every disagreement is counted and sampled. Only the live chain's events reach the sinks.

use serde::Serialize;

use crate::event::Event;

/// How many disagreements are kept as examples.
pub const SAMPLE: usize = 50;

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
pub struct Example {
    pub what: Disagreement,
    /// The log line.
    pub line: String,
    pub live: Option<Event>,
    pub candidate: Option<Event>,
}

/// What a comparison found so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompareReport {
    /// The candidate chain's version.
    pub candidate: String,
    pub lines_compared: u64,
    /// Lines on which both gave the same events (none counts).
    pub agreements: u64,
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
    /// Batches the candidate lost to a fault (not compared).
    pub candidate_faults: u64,
    /// Batches not compared because the candidate was behind (the live path never waits).
    pub skipped_batches: u64,
    /// The first disagreements, at most [`SAMPLE`].
    pub sample: Vec<Example>,
}

impl CompareReport {
    /// All disagreements.
    pub fn disagreements(&self) -> u64 {
        self.missing + self.extra + self.different
    }

    /// Compares one batch: `live` and `candidate` are (line index, event) pairs in line
    /// order. Returns the number of disagreements found in it.
    pub fn add(
        &mut self,
        lines: &[String],
        live: &[(usize, Event)],
        candidate: &[(usize, Event)],
    ) -> u64 {
        let before = self.disagreements();
        let (mut l, mut c) = (0, 0);
        for (i, text) in lines.iter().enumerate() {
            let live_here = take(live, &mut l, i);
            let cand_here = take(candidate, &mut c, i);
            self.lines_compared += 1;
            if same(&live_here, &cand_here) {
                self.agreements += 1;
                continue;
            }
            let n = live_here.len().max(cand_here.len());
            for k in 0..n {
                let (a, b) = (live_here.get(k), cand_here.get(k));
                let what = match (a, b) {
                    (Some(a), Some(b)) if same_event(a, b) => continue,
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
                        line: text.clone(),
                        live: a.map(|e| (*e).clone()),
                        candidate: b.map(|e| (*e).clone()),
                    });
                }
            }
        }
        self.disagreements() - before
    }
}

/// The events of line `i`, advancing `at` past them.
fn take<'a>(events: &'a [(usize, Event)], at: &mut usize, i: usize) -> Vec<&'a Event> {
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

fn same(a: &[&Event], b: &[&Event]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_event(x, y))
}

/// Equal for comparison: kind, player, message and fields (presentation hints aside).
fn same_event(a: &Event, b: &Event) -> bool {
    a.kind == b.kind && a.player == b.player && a.message == b.message && a.fields == b.fields
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
        let mut r = CompareReport::default();
        assert_eq!(r.add(&lines, &live, &candidate), 3);
        assert_eq!(
            (r.lines_compared, r.agreements),
            (5, 2),
            "lines 0 and 3 agree (text is presentation)"
        );
        assert_eq!((r.missing, r.extra, r.different), (1, 2, 0));
        assert_eq!(r.sample[0].line, "line 1");
        assert_eq!(r.sample[0].what, Disagreement::Missing);
        let live2 = vec![(0, ev("chat", "x"))];
        let cand2 = vec![(0, ev("chat", "y"))];
        r.add(&lines[..1], &live2, &cand2);
        assert_eq!(r.different, 1);
        assert_eq!(r.disagreements(), 4);
    }

    #[test]
    fn the_sample_is_bounded() {
        let lines: Vec<String> = (0..200).map(|i| i.to_string()).collect();
        let live: Vec<_> = (0..200).map(|i| (i, ev("chat", "a"))).collect();
        let mut r = CompareReport::default();
        r.add(&lines, &live, &[]);
        assert_eq!(r.missing, 200);
        assert_eq!(r.sample.len(), SAMPLE);
    }
}
