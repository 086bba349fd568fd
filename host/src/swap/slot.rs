//! What a server's two plugin slots — its parser chain and its set of monitors — share in
//! their lifecycle: the versions the API shows, the swap answer, the probation of a version
//! just swapped in and the automatic rollback that ends it badly.
//!
//! Each slot is owned by one thread (the parser thread, the monitor thread), which makes
//! every change between two calls; this module holds no plugins itself.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::alert::{Alert, AlertState, Alerts};
use crate::observe::metrics::{Metrics, ReloadResult};
use crate::plugin::Plugin;
use crate::store::{StateReport, What};
use crate::swap::pins::PinReason;
use crate::swap::pins::PinStore;

pub use super::Slot;

/// A change of a slot's live version: the versions before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Swapped {
    pub from: String,
    pub to: String,
    /// Why the new version could not be kept for the next start (the state folder could
    /// not be written); none when it was kept or there was nothing to keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_kept: Option<String>,
}

/// Which versions a slot has, for the API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SlotVersions {
    /// The live version (12 hex digits over the plugins' content hashes and configurations).
    pub live: String,
    /// The version a rollback returns to, if there is one.
    pub previous: Option<String>,
    /// The version servers.yml gives (at start, or at the last reload).
    pub config: String,
    /// Why the live version is not servers.yml's, when it was chosen at run time and is
    /// kept across restarts: `promoted`, `rolled_back`, `auto_rolled_back`.
    pub pinned: Option<PinReason>,
    /// When the live version became live (null: since start).
    #[serde(serialize_with = "opt_ms")]
    pub since: Option<SystemTime>,
    /// Why the last reload was rejected, if it was (cleared by the next good one).
    pub last_error: Option<String>,
}

fn opt_ms<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_u64(crate::event::unix_ms::millis(*t)),
        None => s.serialize_none(),
    }
}

/// A version newly swapped in that faults more than `faults` times within `window` of its
/// swap is rolled back by the slot's thread itself, and an alert says so.
pub struct AutoRollback {
    pub faults: u32,
    pub window: Duration,
    pub alerts: Arc<Alerts>,
    pub notices: mpsc::Sender<Vec<crate::alert::Notice>>,
}

impl AutoRollback {
    /// Reports an automatic rollback of `tag`'s `slot` after `count` faults: logged, counted
    /// in `plugin_reloads_total`, and posted as a one-off alert.
    pub fn rolled_back(
        &self,
        tag: &str,
        slot: Slot,
        metrics: &Metrics,
        done: &Swapped,
        count: u32,
    ) {
        let Swapped { from, to, .. } = done;
        tracing::error!(server = %tag, %slot, from = %from, to = %to, "the new {slot} faulted {count} times within {} s of their swap; rolled back", self.window.as_secs());
        metrics
            .plugin_reloads
            .with_label_values(&[tag, ReloadResult::AutoRolledBack.label(slot)])
            .inc();
        self.announce(slot, from, to, count);
    }

    /// Posts the one-off alert for an automatic rollback of `slot` from `from` to `to`
    /// after `count` faults.
    fn announce(&self, slot: Slot, from: &str, to: &str, count: u32) {
        let alert = Alert::firing(
            format!("auto-rollback:{slot}:{from}"),
            format!("{} rolled back", slot.title()),
            format!(
                "version `{from}` faulted {count} times within {} s of going live; `{to}` is live again",
                self.window.as_secs()
            ),
        )
        .field("slot", slot.name())
        .field("from", from)
        .field("to", to);
        // A one-off: raised (posted) and closed quietly at once, so it stays in no list.
        let mut closed = alert.clone();
        closed.state = AlertState::Withdrawn;
        let notices = self
            .alerts
            .file("host", vec![alert, closed], SystemTime::now());
        if !notices.is_empty() {
            let _ = self.notices.blocking_send(notices);
        }
    }
}

/// Records in `versions` why the live version of `tag`'s `slot` is not servers.yml's
/// (`reason`), and keeps it in `pins` (its plugins with their `init` configurations) so a
/// restart brings it back; without a reason, any kept version is forgotten. Returns why it
/// could not be kept (reported to `state` too), if it could not.
pub fn pin<'a>(
    pins: Option<&PinStore>,
    state: &StateReport,
    versions: &Mutex<SlotVersions>,
    tag: &str,
    slot: Slot,
    live: (&str, impl IntoIterator<Item = (&'a Arc<Plugin>, &'a str)>),
    reason: Option<PinReason>,
) -> Option<String> {
    let mut v = versions.lock();
    v.pinned = reason;
    let pins = pins?;
    let component = crate::observe::health::Part::Versions(tag.to_owned());
    let kept = match reason {
        None => pins.clear(tag, slot),
        Some(reason) => {
            let (version, plugins) = live;
            pins.save(tag, slot, version, plugins, reason, &v.config)
        }
    };
    let e = state.record(What::Versions, &component, kept).err()?;
    let what = reason.map_or("servers.yml's", PinReason::name);
    tracing::warn!(server = %tag, %slot, "cannot keep the {what} version for the next start: {e}");
    Some(format!(
        "the {slot} are live, but the choice could not be kept for the next start: {e}"
    ))
}

/// How a version swapped in is doing since its swap.
#[derive(Debug)]
pub struct Probation {
    since: Instant,
    faults: u32,
}

impl Probation {
    /// Starts now.
    pub fn start() -> Self {
        Self {
            since: Instant::now(),
            faults: 0,
        }
    }
}

/// What [`judge`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do (no probation, or the budget is not used up).
    Keep,
    /// The probation is over without a rollback.
    Passed,
    /// Roll back: this many faults within the window.
    RollBack(u32),
}

/// Counts `faults` against a version on probation.
pub fn judge(
    guard: Option<&AutoRollback>,
    probation: Option<&mut Probation>,
    faults: usize,
) -> Verdict {
    let (Some(guard), Some(p)) = (guard, probation) else {
        return Verdict::Keep;
    };
    if p.since.elapsed() > guard.window {
        return Verdict::Passed;
    }
    p.faults = p
        .faults
        .saturating_add(u32::try_from(faults).unwrap_or(u32::MAX));
    if p.faults <= guard.faults {
        Verdict::Keep
    } else {
        Verdict::RollBack(p.faults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(faults: u32, window: Duration) -> AutoRollback {
        let (notices, _) = mpsc::channel(1);
        AutoRollback {
            faults,
            window,
            alerts: Arc::new(Alerts::new(
                crate::alert::ServerLabel::new("t", None),
                Arc::new(crate::alert::Mentions::builtin()),
                None,
            )),
            notices,
        }
    }

    #[test]
    fn a_version_is_rolled_back_once_its_faults_exceed_the_budget_within_the_window() {
        let g = guard(3, Duration::from_secs(3600));
        let mut p = Probation::start();
        assert_eq!(judge(Some(&g), Some(&mut p), 2), Verdict::Keep);
        assert_eq!(
            judge(Some(&g), Some(&mut p), 1),
            Verdict::Keep,
            "3 is within"
        );
        assert_eq!(judge(Some(&g), Some(&mut p), 1), Verdict::RollBack(4));
    }

    #[test]
    fn after_the_window_or_without_a_guard_nothing_is_rolled_back() {
        let g = guard(0, Duration::ZERO);
        let mut p = Probation::start();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(judge(Some(&g), Some(&mut p), 100), Verdict::Passed);
        let mut p = Probation::start();
        assert_eq!(judge(None, Some(&mut p), 100), Verdict::Keep);
        assert_eq!(judge(Some(&g), None, 100), Verdict::Keep);
    }
}
