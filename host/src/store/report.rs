//! A failure to keep state is seen in `/ready` and `/metrics`, not only in a log line.

use prometheus::IntCounterVec;

use crate::observe::health::{Health, State};

/// What kind of state a write was for: the `what` label of `state_write_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// A server's checkpoint.
    Checkpoint,
    /// A version of a server's parsers or monitors chosen at run time (a pin).
    Versions,
    /// The servers Discord users chose.
    Selections,
}

impl What {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            What::Checkpoint => "checkpoint",
            What::Versions => "versions",
            What::Selections => "selections",
        }
    }
}

/// Where state writes report: each failure degrades its component in health and counts in
/// `state_write_failures_total{what}`; the next success makes the component ready again.
#[derive(Debug, Clone)]
pub struct StateReport {
    health: Health,
    failures: Option<IntCounterVec>,
}

impl StateReport {
    /// Reports to `health` and (when given) the failure counter of the metrics.
    pub fn new(health: Health, failures: Option<IntCounterVec>) -> Self {
        Self { health, failures }
    }

    /// Reports to the server parts' health and metrics.
    pub fn of(shared: &crate::observe::Telemetry) -> Self {
        Self::new(
            shared.health.clone(),
            Some(shared.metrics.state_write_failures.clone()),
        )
    }

    /// A report that goes nowhere (tools and tests that keep no health).
    pub fn none() -> Self {
        Self::new(Health::default(), None)
    }

    /// Records how writing `what` for `component` went, and hands the result back.
    pub fn record<T, E: std::fmt::Display>(
        &self,
        what: What,
        component: &crate::observe::health::Part,
        result: Result<T, E>,
    ) -> Result<T, E> {
        match &result {
            Ok(_) => self.health.set(component, State::Ready, None),
            Err(e) => {
                if let Some(f) = &self.failures {
                    f.with_label_values(&[what.label()]).inc();
                }
                self.health.error(
                    component,
                    format!("cannot write the {} state: {e}", what.label()),
                );
            }
        }
        result
    }

    /// The health it reports to.
    pub fn health(&self) -> &Health {
        &self.health
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::durable::write_durably;

    #[test]
    fn a_failure_names_the_path_degrades_and_counts_and_a_success_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the folder should be: nothing can be written under it.
        std::fs::write(dir.path().join("blocked"), "").unwrap();
        let path = dir.path().join("blocked/state.json");
        let failures = IntCounterVec::new(prometheus::Opts::new("f", "f"), &["what"]).unwrap();
        let report = StateReport::new(Health::default(), Some(failures.clone()));
        let versions = crate::observe::health::Part::Versions("prod".into());
        let err = report
            .record(What::Versions, &versions, write_durably(&path, b"x"))
            .unwrap_err();
        assert!(err.to_string().contains("blocked"), "{err}");
        assert_eq!(failures.with_label_values(&["versions"]).get(), 1);
        let c = &report.health().snapshot()[0];
        assert_eq!(
            (c.name.as_str(), c.state),
            ("versions:prod", State::Degraded)
        );
        assert!(c.detail.as_deref().unwrap_or("").contains("blocked"));
        report
            .record(What::Versions, &versions, Ok::<(), std::io::Error>(()))
            .unwrap();
        assert_eq!(report.health().snapshot()[0].state, State::Ready);
    }
}
