//! What servers.yml says that is not an error but that its author should know: keys that
//! are not read. The Python bot ignored any key it did not know, so a file it ran must run
//! here too; each such key is named, with its line, instead of being dropped in silence.

/// One thing in servers.yml that is read no differently for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub path: String,
    pub line: usize,
    pub problem: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: warning: {}", self.path, self.line, self.problem)
    }
}

/// The keys of a server's entry (the Python bot's and the new ones), for suggestions.
pub(super) const SERVER_KEYS: &[&str] = &[
    "name",
    "description",
    "log_path",
    "logs",
    "log_links_within",
    "on_lost_checkpoint",
    "rcon_host",
    "rcon_port",
    "rcon_password",
    "event_channel_id",
    "alert_channel_id",
    "status_channel_id",
    "stats_interval",
    "enable_stats_collector",
    "enable_ups_stat",
    "enable_evolution_stat",
    "enable_alerts",
    "alert_check_interval",
    "alert_samples_required",
    "ups_warning_threshold",
    "ups_recovery_threshold",
    "alert_cooldown",
    "ups_ema_alpha",
    "rcon_status_alert_mode",
    "rcon_status_alert_interval",
    "rcon_status_alert_hold",
    "achievements_safe",
    "rcon_timeout",
    "metrics_interval",
    "parsers",
    "monitors",
    "auto_rollback_faults",
    "auto_rollback_window",
    "shadow",
    "chat_bridge_channel_id",
    "sinks",
    "events",
];

/// The top-level sections of servers.yml.
pub(super) const TOP_KEYS: &[&str] = &["servers", "discord", "cluster"];

/// Keys that the Python bot's own guides write in a server's entry but that it never read,
/// and the key that does that job here.
const PYTHON_GUIDE_KEYS: &[(&str, &str)] = &[
    ("collect_interval_seconds", "metrics_interval"),
    ("alert_cooldown_seconds", "alert_cooldown"),
    ("discord_channel_id", "event_channel_id"),
];

/// Why `key` (in `place`, e.g. `servers.prod`) is not read, and what was likely meant.
pub(super) fn unknown_key(place: &str, key: &str, known: &[&str]) -> String {
    if let Some((_, ours)) = PYTHON_GUIDE_KEYS.iter().find(|(k, _)| *k == key) {
        return format!(
            "{place}: `{key}` is not read (the Python bot's guide writes it, but the Python \
             bot never read it either); `{ours}` is the setting for that"
        );
    }
    let guess = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(k, key), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 5))
        .min();
    match guess {
        Some((_, k)) => format!(
            "{place}: `{key}` is not a known key and is not read (the Python bot ignored it \
             too); did you mean `{k}`?"
        ),
        None => format!(
            "{place}: `{key}` is not a known key and is not read (the Python bot ignored it too)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_says_what_was_meant() {
        let t = unknown_key("servers.prod", "rcon_prot", SERVER_KEYS);
        assert!(t.ends_with("did you mean `rcon_port`?"), "{t}");
        let t = unknown_key("servers.prod", "collect_interval_seconds", SERVER_KEYS);
        assert!(t.contains("never read it either") && t.contains("`metrics_interval`"));
        let t = unknown_key("servers.prod", "flux_capacitor", SERVER_KEYS);
        assert!(!t.contains("did you mean"), "{t}");
    }
}
