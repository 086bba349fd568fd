//! Which plugin versions a server runs and how they are doing, for the API and commands.

use parking_lot::Mutex;

use serde::Serialize;

use super::{Fault, Instance};

/// One plugin of one server, as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginStatus {
    /// `parser` or `monitor`.
    pub role: &'static str,
    pub plugin: String,
    /// The first 12 hex digits of the `.wasm`'s SHA-256.
    pub version: String,
    /// `factorio-isr:plugin/<world>@<wit version>`.
    pub world: String,
    /// Calls that returned.
    pub calls: u64,
    /// Calls that trapped, ran out of time or memory, or could not restart.
    pub faults: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fault: Option<String>,
}

/// The plugins of one server, updated by the threads that call them.
#[derive(Debug, Default)]
pub struct PluginBoard(Mutex<Vec<PluginStatus>>);

impl PluginBoard {
    /// Records how `instance`, the `index`-th plugin of `role`, is doing after a call.
    pub fn record(
        &self,
        role: &'static str,
        index: usize,
        instance: &Instance,
        fault: Option<&Fault>,
    ) {
        let plugin = instance.plugin();
        let stats = instance.stats();
        let mut list = self.0.lock();
        let slot = list
            .iter()
            .enumerate()
            .filter(|(_, s)| s.role == role)
            .nth(index)
            .map(|(i, _)| i);
        let previous_fault = slot.and_then(|i| list[i].last_fault.clone());
        let status = PluginStatus {
            role,
            plugin: plugin.name().to_owned(),
            version: plugin.short_hash().to_owned(),
            world: plugin.world().to_string(),
            calls: stats.calls,
            faults: stats.faults(),
            last_fault: fault.map(ToString::to_string).or(previous_fault),
        };
        match slot {
            Some(i) => list[i] = status,
            None => list.push(status),
        }
    }

    /// Forgets the plugins of `role` (before the ones of a new chain are recorded).
    pub fn clear(&self, role: &str) {
        let mut list = self.0.lock();
        list.retain(|s| s.role != role);
    }

    /// Every plugin, parsers first, in the order they run.
    pub fn list(&self) -> Vec<PluginStatus> {
        let mut list = self.0.lock().clone();
        list.sort_by_key(|s| s.role != "parser");
        list
    }
}
