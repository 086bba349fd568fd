//! `factorio-isr check`: validates pattern files, plugins and the Discord command
//! definitions (against Discord's limits, offline), printing every problem.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use factorio_isr_patterns_engine::RuleSet;

use super::RuntimeArgs;
use crate::config::{Config, PluginEntry};
use crate::plugin::WorldKind;
use crate::plugin::stock::{self, PluginSource};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A servers.yml to validate, with every plugin its servers use.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A folder of pattern files to validate (default: ./patterns if it exists, else the
    /// built-in pattern files).
    #[arg(long, value_name = "DIR")]
    patterns: Option<PathBuf>,
    /// A plugin to load and start (repeatable).
    #[arg(long, value_name = "X.wasm")]
    plugin: Vec<String>,
    /// Configuration for the plugin(s), YAML or JSON.
    #[arg(long, value_name = "FILE")]
    plugin_config: Option<PathBuf>,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut problems = 0usize;
    let files = match &args.patterns {
        Some(dir) => stock::read_pattern_dir(dir, None)?,
        None => stock::default_pattern_files()?,
    };
    match RuleSet::compile(&files) {
        Ok(rules) => {
            for w in rules.warnings() {
                println!("warning: {w}");
            }
            let enabled = rules.rules().iter().filter(|r| r.enabled).count();
            println!(
                "patterns: {} files, {} rules ({enabled} enabled): ok",
                files.len(),
                rules.rules().len()
            );
        }
        Err(errors) => {
            for e in &errors.0 {
                println!("error: {e}");
            }
            problems += errors.0.len();
        }
    }
    let commands = crate::discord::limits::check_commands(&crate::discord::definitions_json());
    if commands.is_empty() {
        println!("discord commands: /factorio, /factorio-admin: within Discord's limits: ok");
    } else {
        for v in &commands {
            println!("error: discord commands: {v}");
        }
        problems += commands.len();
    }
    if let Some(path) = &args.config {
        match Config::load(path) {
            Ok(config) => {
                println!(
                    "config: {}: {} servers: ok",
                    path.display(),
                    config.servers.len()
                );
                let runtime = args.runtime.runtime()?;
                for server in &config.servers {
                    problems += check_log(server);
                    let default = [PluginEntry {
                        plugin: "patterns".into(),
                        config: serde_json::Value::Null,
                    }];
                    let parsers = if server.parsers.is_empty() {
                        &default[..]
                    } else {
                        &server.parsers[..]
                    };
                    let monitors = crate::monitor::effective_monitors(server);
                    let candidates = crate::monitor::with_server_defaults(
                        server,
                        server.shadow.monitors.clone(),
                    );
                    let slots = [
                        ("parsers", WorldKind::Parser, parsers),
                        ("monitors", WorldKind::Monitor, &monitors[..]),
                        (
                            "shadow.parsers",
                            WorldKind::Parser,
                            &server.shadow.parsers[..],
                        ),
                        ("shadow.monitors", WorldKind::Monitor, &candidates[..]),
                    ];
                    for (slot, kind, entry) in slots.iter().flat_map(|(slot, kind, entries)| {
                        entries.iter().map(move |e| (slot, kind, e))
                    }) {
                        let source = PluginSource::parse(&entry.plugin);
                        match super::plugin::start(&runtime, &source, &entry.config) {
                            Ok(started) if started.kind() != *kind => {
                                println!(
                                    "error: server {}: plugin {} is a {}, but `{slot}` takes a {kind}",
                                    server.tag,
                                    source.name(),
                                    started.kind(),
                                );
                                problems += 1;
                            }
                            Ok(started) => println!(
                                "server {}: plugin {}: {}: ok",
                                server.tag,
                                source.name(),
                                started.describe()
                            ),
                            Err(e) => {
                                println!(
                                    "error: server {}: plugin {}: {e:#}",
                                    server.tag,
                                    source.name()
                                );
                                problems += 1;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                println!("error: {e}");
                problems += 1;
            }
        }
    }
    if !args.plugin.is_empty() {
        let runtime = args.runtime.runtime()?;
        let config = super::read_plugin_config(args.plugin_config.as_deref())?;
        for spec in &args.plugin {
            let source = PluginSource::parse(spec);
            match super::plugin::start(&runtime, &source, &config) {
                Ok(started) => println!("plugin {}: {}: ok", source.name(), started.describe()),
                Err(e) => {
                    println!("error: plugin {}: {e:#}", source.name());
                    problems += 1;
                }
            }
        }
    }
    if problems > 0 {
        println!("{problems} problem(s) found");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Says whether `server`'s log can be followed: a regular file, or a link to one inside the
/// allowed folders, or nothing yet (waited for). Returns the number of problems (0 or 1).
fn check_log(server: &crate::config::ServerConfig) -> usize {
    let Some(path) = &server.log_path else {
        return 0;
    };
    match crate::tail::resolve(path, &server.log_links_within) {
        Ok(file) if &file == path => {
            println!("server {}: log {}: ok", server.tag, path.display());
            0
        }
        Ok(file) => {
            println!(
                "server {}: log {}: a link to {}: ok",
                server.tag,
                path.display(),
                file.display()
            );
            0
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!(
                "server {}: log {}: not there yet; it is waited for",
                server.tag,
                path.display()
            );
            0
        }
        Err(e) => {
            println!("error: server {}: log {}: {e}", server.tag, path.display());
            1
        }
    }
}
