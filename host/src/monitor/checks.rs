//! A server's host-side checks, on one task: the RCON link's health and up/down alerts,
//! regular readings of the game, samples for the monitors, and the stats reports.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::report::ReportParts;
use super::{MonitorInput, RconStatus, stats_report};
use crate::alert::{Alerts, Notice};
use crate::config::{RconStatusAlertMode, ServerConfig};
use crate::observe::Watchdog;
use crate::observe::health::{Health, Part, State};
use crate::observe::metrics::Metrics;
use crate::plugin::WitSample;
use crate::rcon::LinkState;
use crate::readings::{Reading, Readings};

/// How often each check runs, from a server's configuration.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    /// The server as people see it (its `name`, else its tag).
    pub name: String,
    /// Readings of the game (keeps gauges and pause detection current).
    pub metrics_interval: Duration,
    /// Samples for the monitors (`alert_check_interval`).
    pub sample_interval: Duration,
    /// Stats reports; none when `enable_stats_collector` is off.
    pub report_interval: Option<Duration>,
    pub report: ReportParts,
    pub rcon_mode: RconStatusAlertMode,
    pub rcon_interval: Duration,
    /// How long an RCON state must hold to be announced.
    pub rcon_hold: Duration,
}

impl CheckSettings {
    /// The settings of `server` (intervals of at least one second).
    pub fn of(server: &ServerConfig) -> Self {
        // A period beyond a year is as good as never, and cannot overflow a deadline.
        let secs = |s: u64| Duration::from_secs(s.clamp(1, NEVER.as_secs()));
        Self {
            name: server.name.clone().unwrap_or_else(|| server.tag.clone()),
            metrics_interval: secs(server.metrics_interval),
            sample_interval: secs(server.alert_check_interval),
            report_interval: server
                .enable_stats_collector
                .then(|| secs(server.stats_interval)),
            report: ReportParts {
                ups: server.enable_ups_stat,
                evolution: server.enable_evolution_stat,
            },
            rcon_mode: server.rcon_status_alert_mode,
            rcon_interval: secs(server.rcon_status_alert_interval),
            rcon_hold: Duration::from_secs(server.rcon_status_alert_hold.min(NEVER.as_secs())),
        }
    }
}

/// Where the checks of one server report.
pub struct CheckOutputs {
    pub tag: String,
    pub alerts: Arc<Alerts>,
    /// The server's monitor thread, fed samples while it listens.
    pub monitors: Option<(mpsc::Sender<MonitorInput>, super::Listening)>,
    pub notices: mpsc::Sender<Vec<crate::alert::Notice>>,
    pub health: Health,
    pub metrics: Arc<Metrics>,
    /// What the server's delivery has not caught up with.
    pub backlog: super::Backlog,
}

/// Sleeps until `at` (at once if it passed; never if there is none).
async fn until(at: Option<SystemTime>) {
    match at {
        Some(at) => {
            let left = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::time::sleep(left.min(NEVER)).await;
        }
        None => std::future::pending().await,
    }
}

/// A period for a check that is off (its branch is disabled; the interval only has to exist).
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// An interval whose first tick is one period from now (`tokio::time::interval` ticks at once).
fn every(period: Duration) -> tokio::time::Interval {
    delayed(tokio::time::interval_at(Instant::now() + period, period))
}

/// `i`, whose ticks missed (a reading that took long) are delayed, not bunched.
fn delayed(mut i: tokio::time::Interval) -> tokio::time::Interval {
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

impl CheckOutputs {
    /// Who is online, for the roster (a reading that failed shows nobody, which is not the
    /// same as nobody online; one taken while the log's lines wait for delivery may be
    /// ahead of them).
    fn roster(&self, reading: &Reading) {
        if let Some((feed, listening)) = &self.monitors
            && listening.get()
            && reading.rcon_up
            && reading.error.is_none()
            && self.backlog.is_clear()
        {
            let players = MonitorInput::Players {
                at_ms: reading.at_ms,
                players: reading.players.clone(),
            };
            let _ = feed.try_send(players);
        }
    }

    /// A sample for the monitors; one they have no room for is dropped and counted.
    fn sample(&self, reading: &Reading) {
        let Some((feed, _)) = &self.monitors else {
            return;
        };
        if feed
            .try_send(MonitorInput::Sample(WitSample::from(reading)))
            .is_err()
        {
            let component = Part::MonitorFeed(self.tag.clone()).to_string();
            let labels = [component.as_str(), "sample_dropped"];
            self.metrics.errors.with_label_values(&labels).inc();
        }
    }

    /// The RCON link's component in health.
    fn link_component(&self) -> Part {
        Part::Rcon(self.tag.clone())
    }

    /// The RCON link's state in health.
    fn link_health(&self, state: &LinkState) {
        let component = &self.link_component();
        match state {
            LinkState::Up { .. } => self.health.set(component, State::Ready, None),
            LinkState::Down { error, .. } => {
                self.health.error(component, error.clone());
                self.health.set(component, State::Down, None);
            }
            LinkState::Connecting | LinkState::Standby => {}
        }
    }
}

/// Starts the checks of a server with RCON, under `watchdog`; they run until `stop` turns
/// true.
pub fn spawn_checks(
    stats: Arc<Readings>,
    settings: CheckSettings,
    out: CheckOutputs,
    mut stop: watch::Receiver<bool>,
    watchdog: Watchdog,
) -> tokio::task::JoinHandle<()> {
    out.health.register(&out.link_component());
    let checks = async move {
        let mut link = stats.rcon().watch();
        let mut status = RconStatus::new(&settings.name, settings.rcon_hold);
        if let Some(since) = out.alerts.open_since("rcon", super::rcon_status::KEY) {
            status.told_down(since);
        }
        let mut readings = delayed(tokio::time::interval(settings.metrics_interval));
        let mut samples = every(settings.sample_interval);
        let mut reports = every(settings.report_interval.unwrap_or(NEVER));
        let mut summaries = every(settings.rcon_interval);
        let mut last_sample_ms = 0;
        let post = |events: Vec<Notice>| {
            let notices = out.notices.clone();
            async move {
                if !events.is_empty() {
                    let _ = notices.send(events).await;
                }
            }
        };
        let file = |alert| {
            let notices = out.alerts.file("rcon", vec![alert], SystemTime::now());
            // In interval mode the book still knows the link is down (the API lists it),
            // but people hear of it in the summaries only.
            let heard = settings.rcon_mode == RconStatusAlertMode::Transition;
            post(if heard { notices } else { Vec::new() })
        };
        loop {
            tokio::select! {
                _ = readings.tick() => out.roster(&*stats.reading().await),
                _ = samples.tick(), if out.monitors.is_some() => {
                    if !out.monitors.as_ref().is_some_and(|(_, l)| l.get()) {
                        continue;
                    }
                    // Each sample is a reading of its own: two samples of one cached
                    // reading would count as two low samples in a row.
                    let reading = stats.reading_within(settings.sample_interval / 2).await;
                    if reading.at_ms == last_sample_ms {
                        continue;
                    }
                    last_sample_ms = reading.at_ms;
                    out.sample(&reading);
                }
                _ = reports.tick(), if settings.report_interval.is_some() => {
                    let reading = stats.reading().await;
                    if let Some(e) = stats_report(&settings.name, &reading, settings.report) {
                        post(vec![Notice::Event(e)]).await;
                    }
                }
                _ = summaries.tick(), if settings.rcon_mode == RconStatusAlertMode::Interval => {
                    post(vec![Notice::Event(status.summary(SystemTime::now()))]).await;
                }
                _ = until(status.due()), if status.due().is_some() => {
                    if let Some(alert) = status.tick(SystemTime::now()) {
                        file(alert).await;
                    }
                }
                changed = link.changed() => {
                    if changed.is_err() { return; }
                    let state = link.borrow_and_update().clone();
                    out.link_health(&state);
                    if let Some(alert) = status.on_change(&state, SystemTime::now()) {
                        file(alert).await;
                    }
                }
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            }
        }
    };
    tokio::spawn(async move {
        watchdog.guarded_task("checks", checks).await;
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    #[tokio::test]
    async fn huge_intervals_from_the_configuration_mean_never_and_do_not_overflow() {
        let text = "servers:\n  a:\n    stats_interval: 18446744073709551615\n    alert_check_interval: 18446744073709551615\n    metrics_interval: 0\n";
        let c = Config::from_text(Path::new("servers.yml"), text, &|_| None).unwrap();
        let s = CheckSettings::of(&c.servers[0]);
        assert_eq!(s.report_interval, Some(NEVER));
        assert_eq!(s.sample_interval, NEVER);
        assert_eq!(s.metrics_interval, Duration::from_secs(1));
        let _ = every(s.sample_interval);
    }
}
