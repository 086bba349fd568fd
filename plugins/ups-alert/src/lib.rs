//! The stock `ups-alert` monitor: the Python bot's low-UPS alert, fixed.
//!
//! - A warning after `samples_required` consecutive samples below `warning_threshold`.
//! - Recovery at or above `recovery_threshold`; a sample in between changes nothing but
//!   breaks a run of low samples.
//! - At most one warning per `cooldown_secs`: a dip right after a recovery is not posted.
//! - A paused game withdraws an open warning without a message, and is never judged.
//! - It judges the raw UPS, its simple moving average or its exponential moving average
//!   (the default); with `ema_alpha` set it keeps its own EMA of the raw UPS.
//!
//! Configuration (JSON; the host fills it from the server's flat keys
//! `ups_warning_threshold`, `ups_recovery_threshold`, `alert_samples_required`,
//! `alert_cooldown`, and the plugin entry's `config` overrides them):
//! `{"warning_threshold": 55, "recovery_threshold": 58, "samples_required": 3,
//!   "cooldown_secs": 300, "judge": "ema", "ema_alpha": null, "mention": null}`.

use factorio_isr_sdk::{Alert, Monitor, Sample, Severity, export_monitor};
use serde::{Deserialize, Serialize};

/// The key of the one alert this monitor raises.
pub const KEY: &str = "ups-low";

/// Which UPS figure is compared with the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Judge {
    Raw,
    Sma,
    Ema,
}

/// The monitor's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub warning_threshold: f64,
    pub recovery_threshold: f64,
    pub samples_required: u32,
    pub cooldown_secs: u64,
    pub judge: Judge,
    /// Keep an own EMA of the raw UPS with this smoothing factor instead of the host's.
    pub ema_alpha: Option<f64>,
    /// A mentions.yml group to ping with each warning.
    pub mention: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            warning_threshold: 55.0,
            recovery_threshold: 58.0,
            samples_required: 3,
            cooldown_secs: 300,
            judge: Judge::Ema,
            ema_alpha: None,
            mention: None,
        }
    }
}

impl Settings {
    /// Reads and checks the JSON configuration (`null` or empty: the defaults).
    pub fn from_json(config: &str) -> Result<Self, String> {
        let config = config.trim();
        let settings: Self = if config.is_empty() || config == "null" {
            Self::default()
        } else {
            serde_json::from_str(config).map_err(|e| format!("ups-alert config: {e}"))?
        };
        if settings.warning_threshold.is_nan() || settings.warning_threshold <= 0.0 {
            return Err("ups-alert config: warning_threshold must be above 0".into());
        }
        if settings.recovery_threshold < settings.warning_threshold {
            return Err(format!(
                "ups-alert config: recovery_threshold ({}) must not be below warning_threshold ({})",
                settings.recovery_threshold, settings.warning_threshold
            ));
        }
        if settings.samples_required == 0 {
            return Err("ups-alert config: samples_required must be at least 1".into());
        }
        if let Some(a) = settings.ema_alpha
            && (a.is_nan() || a <= 0.0 || a > 1.0)
        {
            return Err(format!(
                "ups-alert config: ema_alpha must be in (0, 1], not {a}"
            ));
        }
        Ok(settings)
    }
}

/// What the monitor remembers between samples (and across restarts of its instance).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Consecutive samples below the warning threshold.
    below: u32,
    /// When the current run of low samples began.
    low_since_ms: Option<u64>,
    /// When the open warning's low run began; none while no warning is open.
    warning_since_ms: Option<u64>,
    /// When the last warning was posted, for the cooldown.
    last_warning_ms: Option<u64>,
    /// The own EMA, when `ema_alpha` is set.
    ema: Option<f64>,
}

/// The `ups-alert` monitor of one server. (Its alerts do not name the server: the host
/// says which server an alert is about.)
pub struct UpsAlert {
    settings: Settings,
    state: State,
}

impl UpsAlert {
    /// A monitor for `server` with `settings` and a fresh state.
    pub fn with_settings(settings: Settings) -> Self {
        Self {
            settings,
            state: State::default(),
        }
    }

    fn judged(&mut self, s: &Sample) -> Option<f64> {
        match self.settings.judge {
            Judge::Raw => s.ups,
            Judge::Sma => s.ups_sma,
            Judge::Ema => match self.settings.ema_alpha {
                None => s.ups_ema,
                Some(alpha) => {
                    let ups = s.ups?;
                    let ema = match self.state.ema {
                        Some(prev) => alpha * ups + (1.0 - alpha) * prev,
                        None => ups,
                    };
                    self.state.ema = Some(ema);
                    Some(ema)
                }
            },
        }
    }

    fn alert(&self, title: String, text: String, s: &Sample, value: f64, since: u64) -> Alert {
        let mut alert = Alert::new(KEY, title, text)
            .field("judged", judge_name(self.settings.judge))
            .field("value", format!("{value:.1}"));
        for (name, v) in [
            ("ups", s.ups),
            ("ups_sma", s.ups_sma),
            ("ups_ema", s.ups_ema),
        ] {
            if let Some(v) = v {
                alert = alert.field(name, format!("{v:.1}"));
            }
        }
        alert
            .field(
                "warning_threshold",
                format!("{}", self.settings.warning_threshold),
            )
            .field(
                "recovery_threshold",
                format!("{}", self.settings.recovery_threshold),
            )
            .field(
                "low_for_secs",
                (s.at_ms.saturating_sub(since) / 1000).to_string(),
            )
    }
}

fn judge_name(j: Judge) -> &'static str {
    match j {
        Judge::Raw => "ups",
        Judge::Sma => "ups_sma",
        Judge::Ema => "ups_ema",
    }
}

/// The judged figure as people read it.
fn judge_label(j: Judge) -> &'static str {
    match j {
        Judge::Raw => "UPS",
        Judge::Sma => "UPS (SMA)",
        Judge::Ema => "UPS (EMA)",
    }
}

/// `95 s`, `4 min`, `2 h 5 min`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

impl Monitor for UpsAlert {
    fn new(_server: &str, config: &str) -> Result<Self, String> {
        Ok(Self::with_settings(Settings::from_json(config)?))
    }

    fn on_sample(&mut self, s: Sample) -> Vec<Alert> {
        if !s.rcon_up {
            // No reading: neither low nor fine. A run of low samples needs readings in a row.
            self.state.below = 0;
            self.state.low_since_ms = None;
            return Vec::new();
        }
        if s.paused {
            self.state.below = 0;
            self.state.low_since_ms = None;
            self.state.ema = None;
            if self.state.warning_since_ms.take().is_some() {
                return vec![
                    Alert::new(KEY, "Game paused", "the low-UPS warning no longer applies")
                        .withdrawn(),
                ];
            }
            return Vec::new();
        }
        let Some(value) = self.judged(&s) else {
            return Vec::new();
        };
        let st = &self.settings;
        if value < st.warning_threshold {
            self.state.below += 1;
            let since = *self.state.low_since_ms.get_or_insert(s.at_ms);
            if self.state.warning_since_ms.is_some() || self.state.below < st.samples_required {
                return Vec::new();
            }
            let cooling = self
                .state
                .last_warning_ms
                .is_some_and(|t| s.at_ms.saturating_sub(t) < st.cooldown_secs.saturating_mul(1000));
            if cooling {
                return Vec::new();
            }
            self.state.warning_since_ms = Some(since);
            self.state.last_warning_ms = Some(s.at_ms);
            let text = format!(
                "{} is {value:.1}, below {} for {} ({} samples in a row)",
                judge_label(st.judge),
                st.warning_threshold,
                duration(s.at_ms.saturating_sub(since) / 1000),
                self.state.below
            );
            let mut alert = self
                .alert("Low UPS".into(), text, &s, value, since)
                .severity(Severity::Warning);
            if let Some(group) = &st.mention {
                alert = alert.mention(group.clone());
            }
            return vec![alert];
        }
        self.state.below = 0;
        self.state.low_since_ms = None;
        if value >= st.recovery_threshold
            && let Some(since) = self.state.warning_since_ms.take()
        {
            let text = format!(
                "{} is back to {value:.1} (at or above {}) after {} low",
                judge_label(st.judge),
                st.recovery_threshold,
                duration(s.at_ms.saturating_sub(since) / 1000)
            );
            let alert = self
                .alert("UPS recovered".into(), text, &s, value, since)
                .severity(Severity::Info)
                .resolved();
            return vec![alert];
        }
        Vec::new()
    }

    fn save_state(&self) -> Vec<u8> {
        serde_json::to_vec(&self.state).unwrap_or_default()
    }

    fn load_state(&mut self, state: &[u8]) -> Result<(), String> {
        self.state = serde_json::from_slice(state).map_err(|e| e.to_string())?;
        Ok(())
    }
}

export_monitor!(UpsAlert);

#[cfg(test)]
mod tests {
    use super::*;
    use factorio_isr_sdk::AlertState;

    fn sample(at_s: u64, ups: f64) -> Sample {
        Sample {
            at_ms: at_s * 1000,
            rcon_up: true,
            paused: false,
            tick: Some(at_s * 60),
            ups: Some(ups),
            ups_sma: Some(ups),
            ups_ema: Some(ups),
            evolution: Vec::new(),
            players: Vec::new(),
        }
    }

    fn paused(at_s: u64) -> Sample {
        Sample {
            paused: true,
            ups: None,
            ups_sma: None,
            ups_ema: None,
            ..sample(at_s, 0.0)
        }
    }

    fn monitor(config: &str) -> UpsAlert {
        UpsAlert::new("prod", config).unwrap()
    }

    /// Feeds `(seconds, ups)` samples; returns (seconds, state) of each alert.
    fn run(m: &mut UpsAlert, samples: &[Sample]) -> Vec<(u64, AlertState)> {
        let mut out = Vec::new();
        for s in samples {
            for a in m.on_sample(s.clone()) {
                assert_eq!(a.key, KEY);
                out.push((s.at_ms / 1000, a.state));
            }
        }
        out
    }

    #[test]
    fn warns_after_the_required_run_and_recovers_once() {
        let mut m = monitor(r#"{"samples_required": 3, "cooldown_secs": 0}"#);
        let seq = [
            60.0, 50.0, 50.0, 56.0, 50.0, 50.0, 50.0, 50.0, 57.0, 58.0, 60.0,
        ];
        let samples: Vec<_> = seq
            .iter()
            .enumerate()
            .map(|(i, u)| sample(i as u64 * 60, *u))
            .collect();
        // 56 breaks the first run; the second run of three ends at t=360; 57 is in between
        // (nothing), 58 recovers.
        assert_eq!(
            run(&mut m, &samples),
            [(360, AlertState::Firing), (540, AlertState::Resolved)]
        );
    }

    #[test]
    fn the_cooldown_holds_back_a_second_warning_until_it_has_passed() {
        let mut m = monitor(r#"{"samples_required": 1, "cooldown_secs": 300}"#);
        let samples = [
            sample(0, 40.0),   // warn
            sample(60, 60.0),  // recover
            sample(120, 40.0), // low again, 120 s after the warning: held back
            sample(240, 40.0), // still held back
            sample(300, 40.0), // 300 s after: warn
        ];
        assert_eq!(
            run(&mut m, &samples),
            [
                (0, AlertState::Firing),
                (60, AlertState::Resolved),
                (300, AlertState::Firing)
            ]
        );
    }

    #[test]
    fn a_pause_withdraws_silently_and_is_never_judged() {
        let mut m = monitor(r#"{"samples_required": 2, "cooldown_secs": 0}"#);
        let samples = [
            sample(0, 30.0),
            sample(5, 30.0), // warn
            paused(10),      // withdrawn
            paused(15),
            paused(20),
            sample(25, 60.0), // fine: no recovery message, nothing was open
            sample(30, 30.0),
            paused(35), // breaks the run: no warning
            sample(40, 30.0),
        ];
        assert_eq!(
            run(&mut m, &samples),
            [(5, AlertState::Firing), (10, AlertState::Withdrawn)]
        );
    }

    #[test]
    fn judges_the_chosen_figure() {
        let mut s = sample(0, 40.0);
        s.ups_ema = Some(59.0);
        let mut ema = monitor(r#"{"samples_required": 1}"#);
        assert!(ema.on_sample(s.clone()).is_empty());
        let mut raw = monitor(r#"{"samples_required": 1, "judge": "raw"}"#);
        let alerts = raw.on_sample(s.clone());
        assert_eq!(alerts.len(), 1);
        assert!(
            alerts[0]
                .fields
                .contains(&("ups_ema".into(), "59.0".into()))
        );
        assert!(
            alerts[0]
                .fields
                .contains(&("warning_threshold".into(), "55".into()))
        );
        // An own EMA with alpha 0.5: 40 → 40 (first), then 60 → 50, 60 → 55.
        let mut own = monitor(r#"{"samples_required": 1, "ema_alpha": 0.5, "cooldown_secs": 0}"#);
        assert_eq!(own.on_sample(sample(0, 40.0)).len(), 1);
        assert!(own.on_sample(sample(1, 60.0)).is_empty()); // 50: still low, already open
        let back = own.on_sample(sample(2, 62.0)); // 56: in between
        assert!(back.is_empty());
        let back = own.on_sample(sample(3, 64.0)); // 60: recovered
        assert_eq!(back[0].state, AlertState::Resolved);
    }

    #[test]
    fn state_survives_a_new_instance() {
        let mut m = monitor(r#"{"samples_required": 3}"#);
        run(&mut m, &[sample(0, 30.0), sample(5, 30.0)]);
        let saved = m.save_state();
        let mut fresh = monitor(r#"{"samples_required": 3}"#);
        fresh.load_state(&saved).unwrap();
        assert_eq!(
            run(&mut fresh, &[sample(10, 30.0)]),
            [(10, AlertState::Firing)]
        );
        assert!(fresh.load_state(b"not json").is_err());
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        for (config, wanted) in [
            (
                r#"{"warning_threshold": 58, "recovery_threshold": 50}"#,
                "must not be below",
            ),
            (r#"{"samples_required": 0}"#, "at least 1"),
            (r#"{"judge": "median"}"#, "unknown variant"),
            (r#"{"ema_alpha": 1.5}"#, "ema_alpha"),
            (r#"{"threshold": 1}"#, "unknown field"),
        ] {
            let err = UpsAlert::new("prod", config).err().unwrap();
            assert!(err.contains(wanted), "{config}: {err}");
        }
        assert!(UpsAlert::new("prod", "null").is_ok());
        // An absurd cooldown is accepted and means "once", without overflowing.
        let mut m = UpsAlert::new(
            "prod",
            r#"{"samples_required": 1, "cooldown_secs": 18446744073709551615}"#,
        )
        .unwrap();
        assert_eq!(
            run(&mut m, &[sample(0, 30.0), sample(1, 60.0), sample(2, 30.0)]).len(),
            2
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(95), "95 s");
        assert_eq!(duration(240), "4 min");
        assert_eq!(duration(7500), "2 h 5 min");
    }
}
