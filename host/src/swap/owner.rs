//! The owner of one plugin slot: what the parser thread and the monitor thread each do with
//! their slot between two calls — swap a new version in, roll back, keep the choice across
//! restarts, and judge a version on probation — written once for both.
//!
//! The thread that owns a slot holds a [`SlotOwner`] and is the only one to change it; what
//! differs between the slots (how a version is named, which plugins it pins, whether the
//! new version takes up the old one's state) is the [`SlotContent`] of each.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::SystemTime;

use super::Slot;
use super::pins::PinStore;
use super::slot::{self, AutoRollback, Probation, SlotVersions, Swapped, Verdict};
use crate::observe::Telemetry;
use crate::plugin::{MonitorInstance, ParserChain, Plugin};
use crate::store::StateReport;
use crate::swap::pins::PinReason;

/// What a slot holds: a parser chain, or a server's set of monitors.
pub trait SlotContent {
    /// Its version: 12 hex digits over its plugins' content hashes and configurations.
    fn version(&self) -> String;
    /// Its plugins with their `init` configurations, in order, as a pin keeps them.
    fn plugins(&self) -> Vec<(&Arc<Plugin>, &str)>;
    /// Takes up what `old`, the version it replaces, kept between calls.
    fn take_over(&mut self, old: &Self);
}

impl SlotContent for ParserChain {
    fn version(&self) -> String {
        ParserChain::version(self)
    }

    fn plugins(&self) -> Vec<(&Arc<Plugin>, &str)> {
        self.parsers()
            .iter()
            .map(|p| (p.plugin(), p.config()))
            .collect()
    }

    /// Parsers keep nothing between batches.
    fn take_over(&mut self, _old: &Self) {}
}

impl SlotContent for Vec<MonitorInstance> {
    fn version(&self) -> String {
        crate::plugin::monitors_version(self)
    }

    fn plugins(&self) -> Vec<(&Arc<Plugin>, &str)> {
        self.iter().map(|m| (m.plugin(), m.config())).collect()
    }

    /// Each monitor takes up the state of the monitor of the same plugin in `old`: the
    /// n-th entry of a plugin that of the n-th entry, so two `chat-guard` entries each
    /// keep their own.
    fn take_over(&mut self, old: &Self) {
        let mut taken = vec![false; old.len()];
        for m in self {
            let found = old
                .iter()
                .enumerate()
                .position(|(i, o)| !taken[i] && o.plugin().name() == m.plugin().name());
            if let Some(i) = found {
                taken[i] = true;
                m.adopt_state(old[i].saved_state());
            }
        }
    }
}

/// One server's slot, as the thread that owns it holds it.
pub struct SlotOwner<T> {
    pub tag: String,
    pub slot: Slot,
    pub live: T,
    /// The rollback target.
    previous: Option<T>,
    /// When a newly swapped-in version is rolled back by itself (none: never).
    auto_rollback: Option<AutoRollback>,
    /// Where run-time choices of version are kept across restarts.
    pins: Option<PinStore>,
    /// The slot's versions, as the API shows them.
    versions: Arc<Mutex<SlotVersions>>,
    pub shared: Telemetry,
    probation: Option<Probation>,
}

impl<T: SlotContent> SlotOwner<T> {
    /// `tag`'s `slot` running `live`, with no rollback target, automatic rollback or pins
    /// (the `with_` methods add them).
    pub fn new(tag: &str, slot: Slot, live: T, shared: Telemetry) -> Self {
        Self {
            tag: tag.to_owned(),
            slot,
            live,
            previous: None,
            auto_rollback: None,
            pins: None,
            versions: Arc::default(),
            shared,
            probation: None,
        }
    }

    /// With `previous` (if any) as the rollback target.
    pub fn with_previous(mut self, previous: Option<T>) -> Self {
        self.previous = previous;
        self
    }

    /// Rolled back by itself under `rule` after a swap (none: never).
    pub fn with_auto_rollback(mut self, rule: Option<AutoRollback>) -> Self {
        self.auto_rollback = rule;
        self
    }

    /// Keeping the versions chosen at run time in `pins` (none: not kept).
    pub fn with_pins(mut self, pins: Option<PinStore>) -> Self {
        self.pins = pins;
        self
    }

    /// Showing its versions in `versions` (the API's view of the slot).
    pub fn with_versions(mut self, versions: Arc<Mutex<SlotVersions>>) -> Self {
        self.versions = versions;
        self
    }

    /// Makes `new` live; the live version becomes the rollback target and `new` is on
    /// probation. With `pin`, the choice is kept across restarts for that reason; without,
    /// any kept choice is forgotten (the configuration rules again).
    pub fn swap(&mut self, mut new: T, pin: Option<PinReason>) -> Swapped {
        new.take_over(&self.live);
        let from = self.live.version();
        self.previous = Some(std::mem::replace(&mut self.live, new));
        let to = self.live.version();
        let not_kept = self.pin(pin);
        self.record_versions(Some(SystemTime::now()));
        self.probation = Some(Probation::start());
        tracing::info!(server = %self.tag, from = %from, to = %to, "{} swapped", self.slot);
        Swapped { from, to, not_kept }
    }

    /// Makes the rollback target live, for `reason` (kept across restarts); the live
    /// version becomes the rollback target. None when there is no rollback target.
    pub fn rollback(&mut self, reason: PinReason) -> Option<Swapped> {
        let mut prev = self.previous.take()?;
        prev.take_over(&self.live);
        let from = self.live.version();
        self.previous = Some(std::mem::replace(&mut self.live, prev));
        let to = self.live.version();
        self.probation = None;
        let not_kept = self.pin(Some(reason));
        self.record_versions(Some(SystemTime::now()));
        tracing::info!(server = %self.tag, from = %from, to = %to, "{} rolled back", self.slot);
        Some(Swapped { from, to, not_kept })
    }

    /// Counts one call's `faults` against a version on probation and rolls it back when it
    /// has used up its budget (logged, counted and announced). True when it rolled back.
    pub fn judge(&mut self, faults: usize) -> bool {
        let count = match slot::judge(self.auto_rollback.as_ref(), self.probation.as_mut(), faults)
        {
            Verdict::Keep => return false,
            Verdict::Passed => {
                self.probation = None;
                return false;
            }
            Verdict::RollBack(count) => count,
        };
        let Some(done) = self.rollback(PinReason::AutoRolledBack) else {
            return false;
        };
        if let Some(guard) = &self.auto_rollback {
            guard.rolled_back(&self.tag, self.slot, &self.shared.metrics, &done, count);
        }
        true
    }

    /// Records the live and previous versions (and, when given, since when the live one
    /// is live) for the API.
    pub fn record_versions(&self, since: Option<SystemTime>) {
        let mut v = self.versions.lock();
        v.live = self.live.version();
        v.previous = self.previous.as_ref().map(SlotContent::version);
        if since.is_some() {
            v.since = since;
        }
    }

    /// Keeps the live version across restarts for `reason`, or (none) forgets any kept
    /// one; returns why it could not be kept, if it could not.
    fn pin(&self, reason: Option<PinReason>) -> Option<String> {
        slot::pin(
            self.pins.as_ref(),
            &StateReport::of(&self.shared),
            &self.versions,
            &self.tag,
            self.slot,
            (&self.live.version(), self.live.plugins()),
            reason,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::plugin::{ComponentCache, Limits, Runtime, WitAlertState};

    #[test]
    fn two_entries_of_one_plugin_each_keep_their_own_state() {
        let rt = Runtime::new(ComponentCache::new(None), Limits::default()).unwrap();
        let guard = rt
            .load("chat-guard", crate::plugin::stock::CHAT_GUARD_WASM)
            .unwrap();
        let make = || {
            vec![
                guard
                    .monitor("prod", r#"{"words": ["x"], "quiet_secs": 10}"#)
                    .unwrap(),
                guard
                    .monitor("prod", r#"{"words": ["y"], "quiet_secs": 10}"#)
                    .unwrap(),
            ]
        };
        let mut old = make();
        let said = Event {
            player: Some("Dan".into()),
            message: Some("x".into()),
            ..Event::new("chat")
        };
        for m in &mut old {
            m.on_events(1_000, std::slice::from_ref(&said)).unwrap();
        }
        let mut new = make();
        new.take_over(&old);
        // After the quiet time only the first entry, which raised `word:Dan`, withdraws it.
        let quiet: Vec<_> = new
            .iter_mut()
            .map(|m| {
                m.on_events(20_000, &[])
                    .unwrap()
                    .into_iter()
                    .map(|a| (a.key, a.state))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            quiet,
            vec![
                vec![("word:Dan".to_owned(), WitAlertState::Withdrawn)],
                vec![]
            ]
        );
    }

    #[test]
    fn a_swap_then_a_rollback_returns_to_the_first_version_and_records_both() {
        let rt = Runtime::new(ComponentCache::new(None), Limits::default()).unwrap();
        let guard = rt
            .load("chat-guard", crate::plugin::stock::CHAT_GUARD_WASM)
            .unwrap();
        let make = |word: &str| {
            vec![
                guard
                    .monitor("prod", &format!(r#"{{"words": ["{word}"]}}"#))
                    .unwrap(),
            ]
        };
        let shared = Telemetry {
            health: Default::default(),
            metrics: Arc::new(crate::observe::metrics::Metrics::new()),
        };
        let mut owner = SlotOwner::new("prod", Slot::Monitors, make("a"), shared);
        let first = owner.live.version();
        let swapped = owner.swap(make("b"), None);
        assert_eq!(swapped.from, first);
        assert_ne!(swapped.to, first);
        let back = owner.rollback(PinReason::RolledBack).unwrap();
        assert_eq!(
            (back.from, back.to.clone()),
            (swapped.to.clone(), first.clone())
        );
        let v = owner.versions.lock().clone();
        assert_eq!(v.live, first);
        assert_eq!(v.previous.as_deref(), Some(swapped.to.as_str()));
        assert_eq!(v.pinned, Some(PinReason::RolledBack));
    }
}
