//! `factorio-isr check`: validates pattern files, plugins and the Discord command
//! definitions (against Discord's limits, offline), printing every problem.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use factorio_isr_patterns_engine::RuleSet;

use super::RuntimeArgs;
use crate::config::{Config, PluginEntry, ServerConfig};
use crate::plugin::stock::{self, PluginSource};
use crate::plugin::{Runtime, WorldKind};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A servers.yml to validate, with every plugin its servers use, and the mentions.yml
    /// beside it (what `run` reads).
    #[arg(long, value_name = "FILE", env = "FACTORIO_ISR_CONFIG")]
    config: Option<PathBuf>,
    /// The mention groups (default: mentions.yml beside the config file).
    #[arg(long, value_name = "FILE", env = "FACTORIO_ISR_MENTIONS")]
    mentions: Option<PathBuf>,
    /// Count warnings (keys that are not read, mention entries that are skipped) as
    /// problems: exit 1 on any.
    #[arg(long)]
    strict: bool,
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
    // One runtime for every plugin checked, as `run` has one for every server.
    let runtime = args.runtime.runtime()?;
    let mut problems = check_patterns(&args, &runtime)? + check_discord_commands();
    if let Some(path) = &args.config {
        problems += match Config::load(path) {
            Ok(config) => check_config(&args, &runtime, path, &config),
            Err(e) => {
                println!("error: {e}");
                1
            }
        };
    }
    if !args.plugin.is_empty() {
        let config = super::read_plugin_config(args.plugin_config.as_deref())?;
        for spec in &args.plugin {
            let source = PluginSource::parse(spec);
            let what = format!("plugin {}", source.name());
            problems += check_plugin(&runtime, &what, &source, &config, None);
        }
    }
    if problems > 0 {
        println!("{problems} problem(s) found");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The pattern files (given, or the stock ones), natively and as `run` starts them.
fn check_patterns(args: &CheckArgs, runtime: &Runtime) -> anyhow::Result<usize> {
    let files = match &args.patterns {
        Some(dir) => stock::read_pattern_dir(dir, None)?,
        None => stock::default_pattern_files()?,
    };
    let rules = match RuleSet::compile(&files) {
        Ok(rules) => rules,
        Err(errors) => {
            for e in &errors.0 {
                println!("error: {e}");
            }
            return Ok(errors.0.len());
        }
    };
    for w in rules.warnings() {
        println!("warning: {w}");
    }
    let enabled = rules.rules().iter().filter(|r| r.enabled).count();
    println!(
        "patterns: {} files, {} rules ({enabled} enabled): ok",
        files.len(),
        rules.rules().len()
    );
    // `run` compiles them again inside the sandbox, under the init deadline: a set that is
    // fine natively may still be refused there.
    let config = match &args.patterns {
        Some(dir) => serde_json::json!({ "dir": dir }),
        None => serde_json::Value::Null,
    };
    let what = "patterns: the stock parser";
    Ok(check_plugin(
        runtime,
        what,
        &PluginSource::Stock("patterns"),
        &config,
        None,
    ))
}

/// The slash commands, against Discord's limits.
fn check_discord_commands() -> usize {
    let commands = crate::discord::limits::check_commands(&crate::discord::definitions_json());
    if commands.is_empty() {
        println!("discord commands: /factorio, /factorio-admin: within Discord's limits: ok");
    }
    for v in &commands {
        println!("error: discord commands: {v}");
    }
    commands.len()
}

/// servers.yml as loaded: its warnings, logs followed twice, mentions.yml, and every
/// server's logs and plugins.
fn check_config(args: &CheckArgs, runtime: &Runtime, path: &Path, config: &Config) -> usize {
    println!(
        "config: {}: {} servers: ok",
        path.display(),
        config.servers.len()
    );
    for w in &config.warnings {
        println!("{w}");
    }
    let mut problems = check_shared_logs(args, config);
    for note in config.discord.notes() {
        println!("{note}");
    }
    let mentions = super::mentions_path(path, args.mentions.as_deref());
    let (mention_problems, mention_warnings) = check_mentions(&mentions);
    problems += mention_problems;
    if args.strict {
        problems += config.warnings.len() + mention_warnings;
    }
    for server in &config.servers {
        problems += check_log(server) + check_server_plugins(runtime, server);
    }
    problems
}

/// A file one server follows twice (an error), or several servers follow (a warning).
fn check_shared_logs(args: &CheckArgs, config: &Config) -> usize {
    let shared = crate::tail::identity::shared_logs(config);
    for s in &shared.within {
        println!(
            "error: {}: {}: a server that follows one file twice would post each line twice; follow it once",
            config.path.display(),
            s.describe(config)
        );
    }
    for s in &shared.across {
        println!(
            "{}: warning: {}: each of its lines is posted once for each server (deliberate for one log shown in two places; otherwise give each server its own log)",
            config.path.display(),
            s.describe(config)
        );
    }
    shared.within.len() + if args.strict { shared.across.len() } else { 0 }
}

/// Every plugin of a server (its parsers, monitors and candidates), started as `run` would.
fn check_server_plugins(runtime: &Runtime, server: &ServerConfig) -> usize {
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
    let candidates = crate::monitor::with_server_defaults(server, server.shadow.monitors.clone());
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
    let mut problems = 0;
    for (slot, kind, entries) in &slots {
        for entry in entries.iter() {
            let source = PluginSource::parse(&entry.plugin);
            let what = format!("server {}: plugin {}", server.tag, source.name());
            let world = Some((*slot, *kind));
            problems += check_plugin(runtime, &what, &source, &entry.config, world);
        }
    }
    problems
}

/// Starts `source` with `config` as `run` would (same limits, same init deadline) and says
/// how it went, and how close `init` came to its deadline; with `slot`, also that the
/// plugin is of the kind the slot takes. Returns the number of problems (0 or 1).
fn check_plugin(
    runtime: &crate::plugin::Runtime,
    what: &str,
    source: &PluginSource,
    config: &serde_json::Value,
    slot: Option<(&str, WorldKind)>,
) -> usize {
    let limit = runtime.limits().init_timeout;
    match super::plugin::start_timed(runtime, source, config) {
        Ok((started, took)) => {
            if let Some((slot, kind)) = slot
                && started.kind() != kind
            {
                println!(
                    "error: {what} is a {}, but `{slot}` takes a {kind}",
                    started.kind()
                );
                return 1;
            }
            let (init, close) = super::plugin::init_time(took, limit);
            println!("{what}: {}: {init}: ok", started.describe());
            if close {
                println!(
                    "warning: {what}: init took over {:.0} % of its limit; on a slower or busier machine `run` may refuse it (docs/plugins.md#limits)",
                    super::plugin::INIT_CLOSE * 100.0
                );
            }
            0
        }
        Err(e) => {
            let e = format!("{e:#}");
            let hint = if e.contains("deadline") {
                " (docs/plugins.md#limits)"
            } else {
                ""
            };
            println!("error: {what}: {e}{hint}");
            1
        }
    }
}

/// Reads mentions.yml as `run` does, printing what it skips; returns the number of problems
/// and of warnings.
fn check_mentions(path: &std::path::Path) -> (usize, usize) {
    if !path.exists() {
        println!(
            "mentions: {}: not there; the built-in groups (admins, mods, staff) are used",
            path.display()
        );
        return (0, 0);
    }
    match crate::alert::Mentions::load(path) {
        Ok(m) => {
            let groups: Vec<&str> = m.groups().collect();
            println!(
                "mentions: {}: groups {}{}: ok",
                path.display(),
                groups.join(", "),
                if m.chat_pings() {
                    ""
                } else {
                    " (chat pings off)"
                }
            );
            for w in m.warnings() {
                println!("{w}");
            }
            (0, m.warnings().len())
        }
        Err(e) => {
            println!("error: {e}");
            (1, 0)
        }
    }
}

/// Says whether each of `server`'s logs can be followed: a regular file, or a link to one
/// inside the allowed folders, or nothing yet (waited for). Returns the number of problems.
fn check_log(server: &crate::config::ServerConfig) -> usize {
    let mut problems = 0;
    for log in &server.logs {
        let (tag, id, path) = (&server.tag, &log.id, &log.path);
        match crate::tail::resolve(path, &server.log_links_within) {
            Ok(file) if &file == path => {
                println!("server {tag}: log {id} ({}): ok", path.display());
            }
            Ok(file) => println!(
                "server {tag}: log {id} ({}): a link to {}: ok",
                path.display(),
                file.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!(
                "server {tag}: log {id} ({}): not there yet; it is waited for",
                path.display()
            ),
            Err(e) => {
                println!("error: server {tag}: log {id} ({}): {e}", path.display());
                problems += 1;
            }
        }
    }
    problems
}
