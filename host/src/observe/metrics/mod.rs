//! The Prometheus metrics of DESIGN.md (`factorio_isr_*`), in one registry.

use std::time::Instant;

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Registry,
    TextEncoder,
};

use crate::observe::health::{Health, State};
use crate::slot::Slot;

mod cluster;
mod register;

pub use cluster::ClusterMetrics;
use register::{PREFIX, counter, float_gauge, gauge, histogram, register};

/// The `reason` values of `lines_dropped_total`.
pub const LINE_DROP_REASONS: [&str; 2] = ["plugin_fault", "too_long"];
/// The `task` values of `task_panics_total` and `task_restarts_total`.
pub const SUPERVISED_TASKS: [&str; 6] = [
    "tailer", "parser", "monitors", "delivery", "checks", "start",
];
/// How a reload, promotion or rollback of a slot ended: the `result` of
/// `plugin_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    Swapped,
    Promoted,
    Unchanged,
    Rejected,
    RolledBack,
    AutoRolledBack,
    CandidateSwapped,
    CandidateRejected,
}

impl ReloadResult {
    /// Every result.
    pub const ALL: [ReloadResult; 8] = [
        Self::Swapped,
        Self::Promoted,
        Self::Unchanged,
        Self::Rejected,
        Self::RolledBack,
        Self::AutoRolledBack,
        Self::CandidateSwapped,
        Self::CandidateRejected,
    ];

    /// Its label for `slot`: as is for the parsers, `monitors_…` for the monitors (the
    /// parsers' came first and dashboards know them unprefixed).
    pub fn label(self, slot: Slot) -> &'static str {
        let (parsers, monitors) = match self {
            Self::Swapped => ("swapped", "monitors_swapped"),
            Self::Promoted => ("promoted", "monitors_promoted"),
            Self::Unchanged => ("unchanged", "monitors_unchanged"),
            Self::Rejected => ("rejected", "monitors_rejected"),
            Self::RolledBack => ("rolled_back", "monitors_rolled_back"),
            Self::AutoRolledBack => ("auto_rolled_back", "monitors_auto_rolled_back"),
            Self::CandidateSwapped => ("candidate_swapped", "monitors_candidate_swapped"),
            Self::CandidateRejected => ("candidate_rejected", "monitors_candidate_rejected"),
        };
        match slot {
            Slot::Parsers => parsers,
            Slot::Monitors => monitors,
        }
    }
}
/// The `outcome` values of `discord_messages_total`.
pub const DISCORD_OUTCOMES: [&str; 7] = [
    "sent",
    "edited",
    "rate_limited",
    "retried",
    "refused",
    "dropped",
    "no_channel",
];
/// The `change` values of `alerts_total` that people see (raised, escalated, resolved).
pub const ALERT_CHANGES: [&str; 3] = ["raised", "escalated", "resolved"];
/// The `kind` values of `plugin_traps_total`.
pub const FAULT_KINDS: [&str; 4] = ["trap", "timeout", "memory", "restart"];
/// The `what` values of `state_write_failures_total`.
pub const STATE_FILES: [&str; 3] = ["checkpoint", "versions", "selections"];

/// Every metric the process exports. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    started: Instant,
    /// One render at a time: each clears and refills the component gauges, and a second
    /// scrape in between would see them empty.
    rendering: parking_lot::Mutex<()>,
    uptime: Gauge,
    component_status: IntGaugeVec,
    component_degraded: IntGaugeVec,
    /// `errors_total{component, error_type}`.
    pub errors: IntCounterVec,
    /// `events_processed_total{server, event_type}`.
    pub events: IntCounterVec,
    /// `lines_read_total{server}`.
    pub lines_read: IntCounterVec,
    /// `lines_dropped_total{server, reason}`: lines lost (plugin faults) or cut (too long).
    pub lines_dropped: IntCounterVec,
    /// `plugin_calls_total{server, plugin}`.
    pub plugin_calls: IntCounterVec,
    /// `plugin_traps_total{server, plugin, kind}`: trap, timeout, memory, restart.
    pub plugin_traps: IntCounterVec,
    /// `plugin_call_seconds{server, plugin}`.
    pub plugin_call_seconds: HistogramVec,
    /// `sink_delivery_seconds{server, sink}`.
    pub sink_seconds: HistogramVec,
    /// `checkpoint_lag_bytes{server}`: bytes of the log not yet delivered and checkpointed.
    pub checkpoint_lag: IntGaugeVec,
    /// `rcon_command_latency_seconds{server}`.
    pub rcon_latency: HistogramVec,
    /// `rcon_up{server}`: 1 while the RCON link is connected, authenticated and answering.
    pub rcon_up: IntGaugeVec,
    /// `rcon_reconnects_total{server}`.
    pub rcon_reconnects: IntCounterVec,
    /// `rcon_command_failures_total{server}`.
    pub rcon_failures: IntCounterVec,
    /// `ups{server}`, `ups_sma{server}`, `ups_ema{server}`.
    pub ups: GaugeVec,
    pub ups_sma: GaugeVec,
    pub ups_ema: GaugeVec,
    /// `players_online{server}`.
    pub players_online: IntGaugeVec,
    /// `game_paused{server}`.
    pub game_paused: IntGaugeVec,
    /// `ups_unavailable{server, reason}`: 1 while a server that answers has no UPS, and why
    /// (`achievements_safe`: reading the tick needs Lua).
    pub ups_unavailable: IntGaugeVec,
    /// `evolution{server, surface}`.
    pub evolution: GaugeVec,
    /// `alerts_total{server, source, change}`: alerts filed, by what they changed (raised,
    /// escalated, resolved, withdrawn, repeated, unknown, refused).
    pub alerts: IntCounterVec,
    /// `alerts_active{server}`: alerts open now.
    pub alerts_active: IntGaugeVec,
    /// `plugin_reloads_total{server, result}`: a [`ReloadResult`]'s label.
    pub plugin_reloads: IntCounterVec,
    /// `task_panics_total{server, task}`: a server's thread or task that stopped on a panic
    /// (`parser`, `monitors`, `tailer`, `delivery`, `checks`).
    pub task_panics: IntCounterVec,
    /// `task_restarts_total{server, task}`: restarts of a server's parts by its supervisor,
    /// by the part whose panic (or failed start: `start`) caused them.
    pub task_restarts: IntCounterVec,
    /// The cluster's (`cluster_*`).
    pub cluster: ClusterMetrics,
    /// `config_reads_total{result}`: readings of servers.yml for a reload, promotion or
    /// candidate (`ok`, `error`); one per server per reload.
    pub config_reads: IntCounterVec,
    /// `plugin_discrepancies_total{server, plugin}`: events on which a compare-mode
    /// candidate disagreed with the live parsers.
    pub plugin_discrepancies: IntCounterVec,
    /// `discord_api_latency_seconds`: time per Discord REST call that posts a message.
    pub discord_latency: prometheus::Histogram,
    /// `discord_messages_total{server, outcome}`: sent, rate_limited, retried, refused,
    /// dropped, no_channel.
    pub discord_messages: IntCounterVec,
    /// `state_write_failures_total{what}`: state files (checkpoint, versions, selections)
    /// that could not be written.
    pub state_write_failures: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Self {
        let registry = Registry::new();
        let uptime = register(
            &registry,
            Gauge::new(
                format!("{PREFIX}uptime_seconds"),
                "Seconds since the process started",
            ),
        );
        let fast = vec![
            0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ];
        let slow = vec![
            0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let metrics = Self {
            component_status: gauge(
                &registry,
                "component_status",
                "1 when the component works (ready or degraded), else 0",
                &["component"],
            ),
            component_degraded: gauge(
                &registry,
                "component_degraded",
                "1 while the component works but reports recent errors, else 0",
                &["component"],
            ),
            errors: counter(
                &registry,
                "errors_total",
                "Errors by component and type",
                &["component", "error_type"],
            ),
            events: counter(
                &registry,
                "events_processed_total",
                "Events parsed and delivered",
                &["server", "event_type"],
            ),
            lines_read: counter(&registry, "lines_read_total", "Log lines read", &["server"]),
            lines_dropped: counter(
                &registry,
                "lines_dropped_total",
                "Log lines lost to plugin faults or cut for length",
                &["server", "reason"],
            ),
            plugin_calls: counter(
                &registry,
                "plugin_calls_total",
                "Calls into plugins that returned",
                &["server", "plugin"],
            ),
            plugin_traps: counter(
                &registry,
                "plugin_traps_total",
                "Plugin calls that faulted, by kind",
                &["server", "plugin", "kind"],
            ),
            plugin_call_seconds: histogram(
                &registry,
                "plugin_call_seconds",
                "Time per plugin call",
                &["server", "plugin"],
                fast,
            ),
            sink_seconds: histogram(
                &registry,
                "sink_delivery_seconds",
                "Time to deliver a batch to a sink",
                &["server", "sink"],
                slow,
            ),
            checkpoint_lag: gauge(
                &registry,
                "checkpoint_lag_bytes",
                "Bytes of the log read but not yet delivered and checkpointed",
                &["server"],
            ),
            rcon_latency: histogram(
                &registry,
                "rcon_command_latency_seconds",
                "Time from sending an RCON command to its answer",
                &["server"],
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                ],
            ),
            rcon_up: gauge(
                &registry,
                "rcon_up",
                "1 while the RCON link is connected, authenticated and answering commands",
                &["server"],
            ),
            rcon_reconnects: counter(
                &registry,
                "rcon_reconnects_total",
                "RCON connections re-established after a loss",
                &["server"],
            ),
            rcon_failures: counter(
                &registry,
                "rcon_command_failures_total",
                "RCON commands that got no answer",
                &["server"],
            ),
            ups: float_gauge(&registry, "ups", "Game updates per second", &["server"]),
            ups_sma: float_gauge(
                &registry,
                "ups_sma",
                "UPS, simple moving average of the last 5 readings",
                &["server"],
            ),
            ups_ema: float_gauge(
                &registry,
                "ups_ema",
                "UPS, exponential moving average (ups_ema_alpha)",
                &["server"],
            ),
            players_online: gauge(
                &registry,
                "players_online",
                "Players connected",
                &["server"],
            ),
            game_paused: gauge(
                &registry,
                "game_paused",
                "1 while the game's tick does not advance",
                &["server"],
            ),
            ups_unavailable: gauge(
                &registry,
                "ups_unavailable",
                "1 while a server that answers has no UPS, by reason (achievements_safe: reading the tick needs Lua)",
                &["server", "reason"],
            ),
            evolution: float_gauge(
                &registry,
                "evolution",
                "Enemy evolution factor by surface",
                &["server", "surface"],
            ),
            alerts: counter(
                &registry,
                "alerts_total",
                "Alerts filed by monitors and host checks, by what they changed",
                &["server", "source", "change"],
            ),
            alerts_active: gauge(&registry, "alerts_active", "Alerts open now", &["server"]),
            discord_latency: register(
                &registry,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        format!("{PREFIX}discord_api_latency_seconds"),
                        "Time per Discord REST call that posts a message",
                    )
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                ),
            ),
            plugin_discrepancies: counter(
                &registry,
                "plugin_discrepancies_total",
                "Events on which a compare-mode candidate disagreed with the live parsers",
                &["server", "plugin"],
            ),
            plugin_reloads: counter(
                &registry,
                "plugin_reloads_total",
                "Reloads of a server's parsers, by result",
                &["server", "result"],
            ),
            task_panics: counter(
                &registry,
                "task_panics_total",
                "Threads and tasks of a server that stopped on a panic",
                &["server", "task"],
            ),
            task_restarts: counter(
                &registry,
                "task_restarts_total",
                "Restarts of a server's parts by its supervisor, by the part that panicked",
                &["server", "task"],
            ),
            cluster: ClusterMetrics::new(&registry),
            config_reads: counter(
                &registry,
                "config_reads_total",
                "Readings of servers.yml for a reload or promotion, by result",
                &["result"],
            ),
            state_write_failures: counter(
                &registry,
                "state_write_failures_total",
                "State files that could not be written, by what they hold",
                &["what"],
            ),
            discord_messages: counter(
                &registry,
                "discord_messages_total",
                "Discord messages by outcome: sent, rate_limited, retried, refused, dropped, no_channel",
                &["server", "outcome"],
            ),
            registry,
            started: Instant::now(),
            rendering: parking_lot::Mutex::new(()),
            uptime,
        };
        for what in STATE_FILES {
            metrics.state_write_failures.with_label_values(&[what]);
        }
        metrics
    }

    /// Creates `server`'s counters and gauges at zero, so that they are exported before
    /// anything happens: a dashboard shows 0 instead of "no data", and `increase()` in an
    /// alert sees the first drop or failure (a series that starts at 1 has no increase).
    pub fn prime_server(&self, server: &str) {
        self.lines_read.with_label_values(&[server]);
        for reason in LINE_DROP_REASONS {
            self.lines_dropped.with_label_values(&[server, reason]);
        }
        self.checkpoint_lag.with_label_values(&[server]);
        self.alerts_active.with_label_values(&[server]);
        self.prime_alerts(server, "rcon");
        for task in SUPERVISED_TASKS {
            self.task_panics.with_label_values(&[server, task]);
            self.task_restarts.with_label_values(&[server, task]);
        }
        for result in ReloadResult::ALL {
            for slot in [Slot::Parsers, Slot::Monitors] {
                (self.plugin_reloads).with_label_values(&[server, result.label(slot)]);
            }
        }
        for outcome in DISCORD_OUTCOMES {
            self.discord_messages.with_label_values(&[server, outcome]);
        }
    }

    /// Creates the alert counters of an alert source (a monitor, `rcon`) at zero, so the
    /// first alert of a run shows in `increase()` and on the dashboard.
    pub fn prime_alerts(&self, server: &str, source: &str) {
        for change in ALERT_CHANGES {
            self.alerts.with_label_values(&[server, source, change]);
        }
    }

    /// Creates a live plugin's call and fault counters at zero (see `prime_server`).
    pub fn prime_plugin(&self, server: &str, plugin: &str) {
        self.plugin_calls.with_label_values(&[server, plugin]);
        for kind in FAULT_KINDS {
            self.plugin_traps.with_label_values(&[server, plugin, kind]);
        }
    }

    /// The Prometheus text exposition, with uptime and component states brought up to date.
    pub fn render(&self, health: &Health) -> String {
        let _one_at_a_time = self.rendering.lock();
        self.uptime.set(self.started.elapsed().as_secs_f64());
        // From scratch each time: a component that health forgot (a stopped server) goes.
        self.component_status.reset();
        self.component_degraded.reset();
        for c in health.snapshot() {
            let up = matches!(c.state, State::Ready | State::Degraded);
            let name = [c.name.as_str()];
            self.component_status
                .with_label_values(&name)
                .set(i64::from(up));
            self.component_degraded
                .with_label_values(&name)
                .set(i64::from(c.state == State::Degraded));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("cannot encode metrics: {e}");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::health::{LogPart, Part};

    #[test]
    fn a_primed_server_exports_its_counters_at_zero_before_anything_happens() {
        let m = Metrics::new();
        let health = Health::default();
        let before = m.render(&health);
        assert!(
            !before.contains("factorio_isr_lines_dropped_total"),
            "{before}"
        );
        assert!(before.contains(r#"factorio_isr_state_write_failures_total{what="checkpoint"} 0"#));
        m.prime_server("prod");
        let text = m.render(&health);
        for line in [
            r#"factorio_isr_lines_read_total{server="prod"} 0"#,
            r#"factorio_isr_lines_dropped_total{reason="plugin_fault",server="prod"} 0"#,
            r#"factorio_isr_task_restarts_total{server="prod",task="parser"} 0"#,
            r#"factorio_isr_plugin_reloads_total{result="monitors_auto_rolled_back",server="prod"} 0"#,
            r#"factorio_isr_discord_messages_total{outcome="dropped",server="prod"} 0"#,
            r#"factorio_isr_alerts_active{server="prod"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn component_gauges_say_degraded_apart_from_down_and_forget_with_health() {
        let m = Metrics::new();
        let health = Health::default();
        let tailer = Part::Tailer(LogPart {
            server: "prod".into(),
            log: None,
        });
        health.set(&tailer, State::Ready, None);
        health.error(&Part::Discord, "503 from Discord".into());
        health.set(
            &Part::Rcon("prod".into()),
            State::Down,
            Some("refused".into()),
        );
        let text = m.render(&health);
        for line in [
            r#"factorio_isr_component_status{component="tailer:prod"} 1"#,
            r#"factorio_isr_component_degraded{component="tailer:prod"} 0"#,
            r#"factorio_isr_component_status{component="discord"} 1"#,
            r#"factorio_isr_component_degraded{component="discord"} 1"#,
            r#"factorio_isr_component_status{component="rcon:prod"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        health.forget(&Part::Rcon("prod".into()));
        assert!(!m.render(&health).contains("rcon:prod"));
    }
}
