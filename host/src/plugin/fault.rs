//! How a call into a plugin can fail, and the counts kept of it.

use std::fmt;
use std::time::Duration;

use wasmtime::Store;

use super::one_line;
use super::sandbox::SandboxState;

/// How a call into a plugin failed. The batch it was given is lost for that plugin only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The guest trapped (a panic, an out-of-bounds access, `unreachable`, ...).
    Trap(String),
    /// The call ran past its deadline and was interrupted.
    Timeout(Duration),
    /// The guest tried to grow its memory past the cap.
    MemoryCap(usize),
    /// The instance could not be re-created after an earlier fault.
    Restart(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Trap(msg) => write!(f, "trapped: {msg}"),
            Self::Timeout(limit) => write!(f, "ran past its {} ms deadline", limit.as_millis()),
            Self::MemoryCap(cap) => write!(f, "reached its memory cap of {} MiB", cap >> 20),
            Self::Restart(msg) => write!(f, "could not be restarted: {msg}"),
        }
    }
}

impl Fault {
    /// A short name for metrics labels: `trap`, `timeout`, `memory`, `restart`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Trap(_) => "trap",
            Self::Timeout(_) => "timeout",
            Self::MemoryCap(_) => "memory",
            Self::Restart(_) => "restart",
        }
    }
}

/// What an instance has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Calls that returned normally.
    pub calls: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub memory_cap_hits: u64,
    /// Failed attempts to re-create the instance after a fault.
    pub restart_failures: u64,
    /// Instances taken up after a fault (new ones, or for a stateless plugin shared ones).
    pub restarts: u64,
    /// Calls that ran past their deadline and were tried again (successfully or not).
    pub retries: u64,
    /// Results the host threw away because they were malformed (a line index out of range).
    pub bad_results: u64,
    /// Log lines and output bytes dropped by the per-call limits.
    pub suppressed_output: u64,
    /// The size of the instance's linear memory (it never shrinks).
    pub memory_bytes: usize,
    /// Wall time spent in calls that returned normally.
    pub busy: Duration,
}

impl PluginStats {
    /// Every failed call, of any kind.
    pub fn faults(&self) -> u64 {
        self.traps + self.timeouts + self.memory_cap_hits + self.restart_failures
    }
}

pub(super) fn classify(
    e: &wasmtime::Error,
    store: &Store<SandboxState>,
    timeout: Duration,
) -> Fault {
    if store.data().memory_cap_hit {
        return Fault::MemoryCap(store.data().memory_cap());
    }
    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return Fault::Timeout(timeout);
    }
    Fault::Trap(one_line(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_kind_is_primed_in_the_metrics() {
        for fault in [
            Fault::Trap(String::new()),
            Fault::Timeout(Duration::ZERO),
            Fault::MemoryCap(0),
            Fault::Restart(String::new()),
        ] {
            assert!(crate::observe::metrics::FAULT_KINDS.contains(&fault.kind()));
        }
    }
}
