//! The `factorio-isr` command line.

mod check;
mod compare;
mod demo;
mod healthcheck;
mod new;
mod parse;
mod plugin;
mod rcon;
mod reload;
mod run;
mod sim;
mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::plugin::{ComponentCache, Limits, Runtime};

/// Watches Factorio servers and reports to Discord; its rules are sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "factorio-isr", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Follow every configured server's log and deliver its events (the default job).
    Run(run::RunArgs),
    /// Two simulated servers, the whole host and its HTTP endpoints: try it with nothing set up.
    Demo(demo::DemoArgs),
    /// Show each server's UPS, evolution, players and game time, read over RCON.
    Status(status::StatusArgs),
    /// Ask a running instance's /healthz (or /ready); exits 0 only if it answers 2xx (a
    /// container health check that needs no shell or curl).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Send one command to a server over RCON and print the answer.
    Rcon(rcon::RconArgs),
    /// Ask the running instance to reload parsers (or roll one server's back).
    Reload(reload::ReloadArgs),
    /// Run a fake Factorio server (RCON and a console log), for tests and demos.
    Sim(sim::SimArgs),
    /// Run the parsers over a log file (or stdin) and print one JSON object per event.
    Parse(parse::ParseArgs),
    /// Validate pattern files and plugins; exits non-zero on any problem.
    Check(check::CheckArgs),
    /// Run a candidate parser beside a server's parsers over a log file and report where
    /// they disagree.
    Compare(compare::CompareArgs),
    /// Work with plugins: create one, check one, benchmark one.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Compile a plugin (`.wasm` on stdin, compiled code on stdout): what the host runs in
    /// a child process so that compiling leaves no memory behind.
    #[command(hide = true)]
    CompilePlugin,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Write a new plugin crate that builds as it is.
    New(new::NewArgs),
    /// Say which world and WIT version a plugin targets, start it in the sandbox and run it
    /// over a few sample lines.
    Check(plugin::CheckArgs),
    /// Measure a parser plugin's throughput and per-batch latency over a file of lines.
    Bench(plugin::BenchArgs),
}

/// Where mentions.yml is read from: `explicit` (`--mentions`, `FACTORIO_ISR_MENTIONS`), else
/// beside `config`.
pub fn mentions_path(config: &Path, explicit: Option<&Path>) -> PathBuf {
    explicit.map(Path::to_owned).unwrap_or_else(|| {
        config
            .parent()
            .unwrap_or(Path::new("."))
            .join("mentions.yml")
    })
}

/// Options every command that runs plugins shares.
#[derive(Debug, Args, Clone)]
pub struct RuntimeArgs {
    /// Folder for compiled plugins (default: $FACTORIO_ISR_CACHE_DIR, else the user cache folder).
    #[arg(long, value_name = "DIR")]
    plugin_cache: Option<PathBuf>,
    /// Compile plugins every time instead of caching them.
    #[arg(long)]
    no_plugin_cache: bool,
    /// The largest plugin file read, in MiB (a larger one, or one that is not a regular
    /// file, is refused before anything is compiled).
    #[arg(
        long,
        env = "FACTORIO_ISR_PLUGIN_MAX_MIB",
        default_value_t = 64,
        value_name = "MIB"
    )]
    plugin_max_mib: u64,
    /// Each plugin instance's memory cap, in MiB (a Python or JavaScript plugin carries its
    /// interpreter in it: `plugin check` says how much it uses).
    #[arg(
        long,
        env = "FACTORIO_ISR_PLUGIN_MEMORY_MIB",
        default_value_t = 64,
        value_name = "MIB"
    )]
    plugin_memory_mib: usize,
}

impl RuntimeArgs {
    /// The plugin runtime these options describe.
    pub fn runtime(&self) -> anyhow::Result<Runtime> {
        let dir = if self.no_plugin_cache {
            None
        } else {
            self.plugin_cache
                .clone()
                .or_else(ComponentCache::default_dir)
        };
        let limits = Limits {
            file_bytes: self.plugin_max_mib.saturating_mul(1 << 20),
            memory_bytes: self.plugin_memory_mib.clamp(1, 4096) << 20,
            ..Limits::default()
        };
        Runtime::new(ComponentCache::new(dir), limits)
    }
}

/// Runs the command line; the exit code says whether it went well.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CompilePlugin = cli.command {
        // Nothing but the compiled code goes to stdout: no logging set up.
        return crate::plugin::compile::child_main();
    }
    let _telemetry = crate::observe::logging::init();
    if let Ok(exe) = std::env::current_exe() {
        crate::plugin::compile::in_child(exe);
    }
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Status(args) => status::run(args),
        Command::Healthcheck(args) => healthcheck::run(args),
        Command::Rcon(args) => rcon::run(args),
        Command::Reload(args) => reload::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Parse(args) => parse::run(args),
        Command::Check(args) => check::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Plugin(PluginCommand::New(args)) => new::run(args),
        Command::Plugin(PluginCommand::Check(args)) => plugin::check(args),
        Command::Plugin(PluginCommand::Bench(args)) => plugin::bench(args),
        Command::CompilePlugin => Ok(crate::plugin::compile::child_main()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a plugin configuration file (YAML or JSON); no file is `null`.
pub fn read_plugin_config(path: Option<&std::path::Path>) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    let Some(path) = path else {
        return Ok(serde_json::Value::Null);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read plugin config {}", path.display()))?;
    // JSON first: YAML does not take every JSON string (surrogate-pair escapes, for one).
    if let Ok(value) = serde_json::from_str(&text) {
        return Ok(value);
    }
    let value: serde_json::Value = serde_norway::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(":{}", l.line()))
            .unwrap_or_default();
        anyhow::anyhow!("{}{at}: not valid YAML or JSON: {e}", path.display())
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_config_files_may_be_json_with_any_escapes_or_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("c.json");
        std::fs::write(&json, r#"{"emoji": "\ud83d\udcac", "n": 1}"#).unwrap();
        let v = read_plugin_config(Some(&json)).unwrap();
        assert_eq!(v["emoji"], "💬");
        let yaml = dir.path().join("c.yml");
        std::fs::write(&yaml, "dir: patterns\nfiles: [a.yml]\n").unwrap();
        assert_eq!(
            read_plugin_config(Some(&yaml)).unwrap()["files"][0],
            "a.yml"
        );
        std::fs::write(&yaml, "a: [\n").unwrap();
        let err = read_plugin_config(Some(&yaml)).unwrap_err().to_string();
        assert!(
            err.contains("c.yml:") && err.contains("not valid YAML or JSON"),
            "{err}"
        );
        assert!(read_plugin_config(None).unwrap().is_null());
    }
}
