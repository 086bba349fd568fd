//! What changed between two readings of servers.yml, sorted by where it takes effect: a
//! server's parts run again with the new entry (channels, events, logs, thresholds: nothing
//! is lost, they resume from the checkpoint), its RCON link is pointed elsewhere, the
//! Discord roles are looked up again, or it waits for the next start (servers added or
//! removed, a server's name, cluster mode). Plugins (`parsers`, `monitors`, `shadow`) are
//! the reloader's and are not listed here.
//!
//! Values are compared as written (before `${VAR}` is expanded), key by key.

use serde_norway::{Mapping, Value};

use super::Config;

/// What a change of servers.yml asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigChanges {
    /// Servers whose parts run again with the new entry, by tag, with the keys that changed.
    pub restart: Vec<(String, Vec<String>)>,
    /// Servers whose RCON link takes the new address, password or timeout.
    pub rcon: Vec<String>,
    /// `discord.admin_roles`, `danger_roles` or `cooldowns` changed.
    pub roles: bool,
    /// What takes effect only at the next start, as people read it
    /// (`servers.prod.name`, `servers.eu-2 (added)`).
    pub at_next_start: Vec<String>,
}

impl ConfigChanges {
    /// Whether nothing changed that this lists.
    pub fn is_empty(&self) -> bool {
        self.restart.is_empty()
            && self.rcon.is_empty()
            && !self.roles
            && self.at_next_start.is_empty()
    }
}

/// A server's keys that its hot-swapped plugins use: the reloader's.
const PLUGIN_KEYS: &[&str] = &[
    "parsers",
    "monitors",
    "shadow",
    "auto_rollback_faults",
    "auto_rollback_window",
];
/// A server's keys of its RCON link.
const RCON_KEYS: &[&str] = &["rcon_host", "rcon_port", "rcon_password", "rcon_timeout"];
/// A server's keys that only a start of the host applies: its face (name, description),
/// its readings engine, and the bot's chat bridge (which asks Discord for an intent).
const START_KEYS: &[&str] = &[
    "name",
    "description",
    "achievements_safe",
    "metrics_interval",
    "ups_ema_alpha",
    "chat_bridge_channel_id",
];
/// `discord:` keys the bot takes up while it runs.
const ROLE_KEYS: &[&str] = &["admin_roles", "danger_roles", "cooldowns"];

/// What changed from `old` to `new`.
pub fn changes(old: &Config, new: &Config) -> ConfigChanges {
    let mut out = ConfigChanges::default();
    let (old_servers, new_servers) = (section(&old.raw, "servers"), section(&new.raw, "servers"));
    for (key, entry) in &new_servers {
        let tag = key_text(key);
        let Some(before) = old_servers.get(key) else {
            out.at_next_start.push(format!("servers.{tag} (added)"));
            continue;
        };
        let changed = changed_keys(before, entry);
        let mut run = Vec::new();
        for k in changed {
            if PLUGIN_KEYS.contains(&k.as_str()) {
                continue;
            }
            if RCON_KEYS.contains(&k.as_str()) {
                let had = old.server(&tag).is_some_and(|s| s.rcon_password.is_some());
                let has = new.server(&tag).is_some_and(|s| s.rcon_password.is_some());
                if had && has {
                    if !out.rcon.contains(&tag) {
                        out.rcon.push(tag.clone());
                    }
                } else {
                    out.at_next_start.push(format!("servers.{tag}.{k}"));
                }
            } else if START_KEYS.contains(&k.as_str()) {
                out.at_next_start.push(format!("servers.{tag}.{k}"));
            } else {
                run.push(k);
            }
        }
        if !run.is_empty() {
            out.restart.push((tag, run));
        }
    }
    for key in old_servers.keys() {
        if !new_servers.contains_key(key) {
            out.at_next_start
                .push(format!("servers.{} (removed)", key_text(key)));
        }
    }
    let (old_d, new_d) = (section(&old.raw, "discord"), section(&new.raw, "discord"));
    for k in changed_keys_of(&old_d, &new_d) {
        if ROLE_KEYS.contains(&k.as_str()) {
            out.roles = true;
        } else {
            out.at_next_start.push(format!("discord.{k}"));
        }
    }
    if section(&old.raw, "cluster") != section(&new.raw, "cluster") {
        out.at_next_start.push("cluster".into());
    }
    out
}

/// The mapping under top-level `key` (empty when absent or not a mapping).
fn section(raw: &Value, key: &str) -> Mapping {
    raw.get(key)
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default()
}

/// The keys whose values differ between two entries (either may be no mapping).
fn changed_keys(old: &Value, new: &Value) -> Vec<String> {
    let empty = Mapping::new();
    changed_keys_of(
        old.as_mapping().unwrap_or(&empty),
        new.as_mapping().unwrap_or(&empty),
    )
}

fn changed_keys_of(old: &Mapping, new: &Mapping) -> Vec<String> {
    let mut keys: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .map(key_text)
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .map(|t| t.trim_end().to_owned())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn load(text: &str) -> Config {
        Config::from_text(Path::new("servers.yml"), text, &|_| None).unwrap()
    }

    #[test]
    fn each_change_is_sorted_by_where_it_takes_effect() {
        let old = load(
            "servers:\n  prod:\n    name: P\n    log_path: /a\n    rcon_password: pw\n    event_channel_id: 1\n    \
             parsers: [{plugin: patterns}]\n  gone:\n    log_path: /g\n\
             discord:\n  guild_id: 5\n  admin_roles: [1]\n",
        );
        let new = load(
            "servers:\n  prod:\n    name: Q\n    log_path: /a\n    rcon_password: pw\n    rcon_port: 27016\n    \
             event_channel_id: 2\n    ups_warning_threshold: 40\n    parsers: [{plugin: ./x.wasm}]\n  new:\n    log_path: /n\n\
             discord:\n  guild_id: 6\n  admin_roles: [2]\n",
        );
        let c = changes(&old, &new);
        assert_eq!(
            c.restart,
            [(
                "prod".to_owned(),
                vec![
                    "event_channel_id".to_owned(),
                    "ups_warning_threshold".to_owned()
                ]
            )]
        );
        assert_eq!(c.rcon, ["prod"]);
        assert!(c.roles);
        assert_eq!(
            c.at_next_start,
            [
                "servers.prod.name",
                "servers.new (added)",
                "servers.gone (removed)",
                "discord.guild_id"
            ]
        );
        assert!(changes(&new, &new).is_empty());
    }

    #[test]
    fn a_password_added_or_removed_waits_for_the_next_start() {
        let old = load("servers:\n  prod:\n    log_path: /a\n");
        let new = load("servers:\n  prod:\n    log_path: /a\n    rcon_password: pw\n");
        let c = changes(&old, &new);
        assert!(c.rcon.is_empty());
        assert_eq!(c.at_next_start, ["servers.prod.rcon_password"]);
    }
}
