//! Which monitors a server runs, and their configuration.

use anyhow::Context;

use crate::config::{PluginEntry, ServerConfig};
use crate::plugin::stock::{self, PluginSource};
use crate::plugin::{MonitorInstance, Runtime};

/// The monitors `server` runs, each with its effective configuration:
///
/// - no `monitors` key: the stock `ups-alert` when `enable_alerts` is on and the server has
///   RCON (it judges samples, which come over RCON); `monitors: []` runs none;
/// - the stock `ups-alert` gets the server's flat keys (`ups_warning_threshold`,
///   `ups_recovery_threshold`, `alert_samples_required`, `alert_cooldown`) as defaults,
///   overridden by its entry's own `config`.
pub fn effective_monitors(server: &ServerConfig) -> Vec<PluginEntry> {
    let entries = match &server.monitors {
        Some(entries) => entries.clone(),
        None if server.enable_alerts && server.rcon_password.is_some() => vec![PluginEntry {
            plugin: "ups-alert".into(),
            config: serde_json::Value::Null,
        }],
        None => Vec::new(),
    };
    with_server_defaults(server, entries)
}

/// `entries` with the server's defaults applied: the stock `ups-alert` gets the server's
/// flat keys, overridden by its entry's own `config`.
pub fn with_server_defaults(server: &ServerConfig, entries: Vec<PluginEntry>) -> Vec<PluginEntry> {
    entries
        .into_iter()
        .map(|mut entry| {
            if PluginSource::parse(&entry.plugin) == PluginSource::Stock("ups-alert") {
                entry.config = ups_alert_config(server, entry.config);
            }
            entry
        })
        .collect()
}

fn ups_alert_config(server: &ServerConfig, own: serde_json::Value) -> serde_json::Value {
    let mut config = serde_json::json!({
        "warning_threshold": server.ups_warning_threshold,
        "recovery_threshold": server.ups_recovery_threshold,
        "samples_required": server.alert_samples_required,
        "cooldown_secs": server.alert_cooldown,
    });
    match own {
        serde_json::Value::Null => config,
        serde_json::Value::Object(own) => {
            if let Some(map) = config.as_object_mut() {
                map.extend(own);
            }
            config
        }
        // Not an object: the plugin says what is wrong with it.
        other => other,
    }
}

/// The monitor instances of `server`, initialised.
pub fn monitor_instances(
    runtime: &Runtime,
    server: &ServerConfig,
) -> anyhow::Result<Vec<MonitorInstance>> {
    instances(runtime, server, effective_monitors(server))
}

/// The candidate monitors of `server` (its `shadow: {monitors: [...]}`), initialised; none
/// when it has none.
pub fn candidate_instances(
    runtime: &Runtime,
    server: &ServerConfig,
) -> anyhow::Result<Option<Vec<MonitorInstance>>> {
    if server.shadow.monitors.is_empty() {
        return Ok(None);
    }
    let entries = with_server_defaults(server, server.shadow.monitors.clone());
    instances(runtime, server, entries)
        .map(Some)
        .context("shadow monitors")
}

fn instances(
    runtime: &Runtime,
    server: &ServerConfig,
    entries: Vec<PluginEntry>,
) -> anyhow::Result<Vec<MonitorInstance>> {
    let mut monitors = Vec::new();
    for entry in entries {
        let source = PluginSource::parse(&entry.plugin);
        let name = source.name();
        let bytes = source
            .bytes(runtime.limits().file_bytes)
            .with_context(|| format!("cannot read plugin {name}"))?;
        // Monitors keep state per server: never the shared instances of a stateless plugin.
        let plugin = runtime
            .load(&name, &bytes)
            .with_context(|| format!("monitor {name}"))?;
        let init = stock::init_config(&source, &entry.config)
            .with_context(|| format!("monitor {name}"))?;
        monitors.push(
            plugin
                .monitor(&server.tag, &init)
                .with_context(|| format!("monitor {name}"))?,
        );
    }
    Ok(monitors)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn server(yaml: &str) -> ServerConfig {
        let c = Config::from_text(Path::new("servers.yml"), yaml, &|_| None).unwrap();
        c.servers[0].clone()
    }

    #[test]
    fn ups_alert_runs_by_default_with_the_flat_keys_and_its_own_config_wins() {
        let s = server(
            "servers:\n  a:\n    rcon_password: pw\n    ups_warning_threshold: 40\n    alert_cooldown: 60\n",
        );
        let m = effective_monitors(&s);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].plugin, "ups-alert");
        assert_eq!(m[0].config["warning_threshold"], 40.0);
        assert_eq!(m[0].config["cooldown_secs"], 60);
        assert_eq!(m[0].config["samples_required"], 3);

        let s = server(
            "servers:\n  a:\n    rcon_password: pw\n    ups_warning_threshold: 40\n    monitors:\n      - plugin: ups-alert\n        config: {warning_threshold: 30, judge: raw}\n      - plugin: chat-guard\n",
        );
        let m = effective_monitors(&s);
        assert_eq!(m[0].config["warning_threshold"], 30);
        assert_eq!(m[0].config["judge"], "raw");
        assert_eq!(m[1].plugin, "chat-guard");
        assert!(m[1].config.is_null());
    }

    #[test]
    fn no_rcon_or_alerts_off_or_an_empty_list_runs_none() {
        assert!(effective_monitors(&server("servers:\n  a:\n    log_path: /x\n")).is_empty());
        assert!(
            effective_monitors(&server(
                "servers:\n  a:\n    rcon_password: pw\n    enable_alerts: false\n"
            ))
            .is_empty()
        );
        assert!(
            effective_monitors(&server(
                "servers:\n  a:\n    rcon_password: pw\n    monitors: []\n"
            ))
            .is_empty()
        );
    }
}
