//! The state of every component (tailers, parsers, sinks, HTTP), for `/health`, `/ready`
//! and the `component_status` metric.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

/// How a component is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not working yet (a log file that does not exist yet, a plugin still loading).
    Starting,
    Ready,
    /// Working, but with recent errors.
    Degraded,
    /// Not working.
    Down,
}

/// One component's report.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    pub name: String,
    pub state: State,
    pub errors: u64,
    /// The last problem, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Every component, by name. Cheap to clone; shared by the pipeline and the HTTP server.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<BTreeMap<String, Component>>>,
}

impl Health {
    /// Registers `name` as starting (or resets it).
    pub fn register(&self, name: &str) {
        self.update(name, |c| {
            c.state = State::Starting;
        });
    }

    /// Sets the state of `name`, with an optional detail.
    pub fn set(&self, name: &str, state: State, detail: Option<String>) {
        self.update(name, |c| {
            c.state = state;
            if detail.is_some() || state == State::Ready {
                c.detail = detail;
            }
        });
    }

    /// Counts an error of `name` and marks it degraded (or keeps it down).
    pub fn error(&self, name: &str, detail: String) {
        self.update(name, |c| {
            c.errors += 1;
            if c.state != State::Down {
                c.state = State::Degraded;
            }
            c.detail = Some(detail);
        });
    }

    /// Takes `name` out of the report.
    pub fn forget(&self, name: &str) {
        self.inner.lock().remove(name);
    }

    /// Takes every component of server `tag` (`<kind>:<tag>` and `<kind>:<tag>:<part>`)
    /// out of the report: its parts are stopped on purpose.
    pub fn forget_server(&self, tag: &str) {
        (self.inner.lock()).retain(|name, _| name.split(':').nth(1) != Some(tag));
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut Component)) {
        let mut map = self.inner.lock();
        let c = map.entry(name.to_owned()).or_insert_with(|| Component {
            name: name.to_owned(),
            state: State::Starting,
            errors: 0,
            detail: None,
        });
        f(c);
    }

    /// Every component, by name.
    pub fn snapshot(&self) -> Vec<Component> {
        self.inner.lock().values().cloned().collect()
    }

    /// Whether every component is ready (degraded counts: it works).
    pub fn is_ready(&self) -> bool {
        self.snapshot()
            .iter()
            .all(|c| matches!(c.state, State::Ready | State::Degraded))
    }

    /// Whether any component is down.
    pub fn any_down(&self) -> bool {
        self.snapshot().iter().any(|c| c.state == State::Down)
    }
}
