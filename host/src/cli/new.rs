//! `factorio-isr plugin new`: a plugin project that builds as it is, anywhere on the disk.
//!
//! In Rust, a crate that depends on the SDK crate (`factorio-isr-sdk`, which carries the
//! WIT package) by version, so an SDK fix reaches the plugin by a version bump; until the
//! SDK is on crates.io, a `path` or `git` override says where it is. In Python, a project
//! for componentize-py: the WIT package, the helper module and an app module.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

/// The SDK version a new Rust plugin depends on.
const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where the SDK's source was when this binary was built: used as the `path` override when
/// it is still there (a checkout of the repository).
const SDK_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/sdk");
/// The WIT package a new Python plugin is built against (the SDK carries the same files).
const WIT_FILES: &[(&str, &str)] = &[
    (
        "types.wit",
        include_str!("../../../wit/since_v0.4.0/types.wit"),
    ),
    (
        "parser.wit",
        include_str!("../../../wit/since_v0.4.0/parser.wit"),
    ),
    (
        "monitor.wit",
        include_str!("../../../wit/since_v0.4.0/monitor.wit"),
    ),
];
/// The Python helper module, the counterpart of the Rust SDK.
const PYTHON_SDK: &str = include_str!("../../../plugins/sdk-python/factorio_isr.py");
/// The JavaScript helper module.
const JS_SDK: &str = include_str!("../../../plugins/sdk-js/factorio_isr.js");

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Parser,
    Monitor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Lang {
    Rust,
    Python,
    #[value(alias = "js")]
    Javascript,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name (letters, digits, `-`, `_`; starting with a letter).
    name: String,
    /// Where to create it (default: a folder named after the plugin, here).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// What the plugin is.
    #[arg(long, value_enum, default_value = "parser")]
    kind: Kind,
    /// The language it is written in.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Rust: take the SDK from this folder (a checkout's `plugins/sdk`) instead of
    /// crates.io. By default, the SDK this binary was built with when it is still where it
    /// was built, else crates.io.
    #[arg(long, value_name = "DIR", conflicts_with = "sdk_git")]
    sdk_path: Option<PathBuf>,
    /// Rust: take the SDK from this git repository instead of crates.io.
    #[arg(long, value_name = "URL")]
    sdk_git: Option<String>,
}

pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.as_str();
    anyhow::ensure!(
        !name.is_empty()
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "`{name}` is not a valid plugin name: start with a letter; use letters, digits, `-` and `_`"
    );
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        anyhow::bail!("{} already exists and is not empty", dir.display());
    }
    let kind = match args.kind {
        Kind::Parser => "parser",
        Kind::Monitor => "monitor",
    };
    let stem = name.replace('-', "_");
    match args.lang {
        Lang::Rust => {
            let sdk = sdk_dependency(&args)?;
            write_rust(&dir, name, args.kind, &sdk)?;
            println!(
                "Created the Rust {kind} plugin `{name}` in {}.",
                dir.display()
            );
            println!("\nTest it, build it and check it:");
            println!("    cd {}", dir.display());
            println!("    cargo test");
            println!("    cargo build --release --target wasm32-wasip2");
            println!("    factorio-isr plugin check target/wasm32-wasip2/release/{stem}.wasm");
        }
        Lang::Python => {
            write_python(&dir, name, args.kind)?;
            println!(
                "Created the Python {kind} plugin `{name}` in {}.",
                dir.display()
            );
            println!("\nBuild it (componentize-py from PyPI) and check it:");
            println!("    cd {}", dir.display());
            println!("    {}", python_build(name, kind));
            println!("    factorio-isr plugin check {name}.wasm");
        }
        Lang::Javascript => {
            write_js(&dir, name, args.kind)?;
            println!(
                "Created the JavaScript {kind} plugin `{name}` in {}.",
                dir.display()
            );
            println!("\nBuild it (componentize-js from npm) and check it:");
            println!("    cd {}", dir.display());
            println!("    {}", js_build(name, kind));
            println!("    factorio-isr plugin check {name}.wasm");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `factorio-isr-sdk` dependency line of a new crate.
fn sdk_dependency(args: &NewArgs) -> anyhow::Result<String> {
    let path = match (&args.sdk_path, &args.sdk_git) {
        (_, Some(url)) => {
            return Ok(format!(
                "{{ version = \"{SDK_VERSION}\", git = \"{}\" }}",
                toml_escape(url)
            ));
        }
        (Some(p), None) => Some(p.clone()),
        (None, None) => Some(PathBuf::from(SDK_SOURCE)).filter(|p| p.join("Cargo.toml").is_file()),
    };
    Ok(match path {
        Some(p) => {
            let p = std::fs::canonicalize(&p)
                .with_context(|| format!("the SDK folder {} cannot be read", p.display()))?;
            anyhow::ensure!(
                p.join("Cargo.toml").is_file(),
                "{} holds no Cargo.toml: give the SDK's folder (plugins/sdk of a checkout)",
                p.display()
            );
            format!(
                "{{ version = \"{SDK_VERSION}\", path = \"{}\" }}",
                toml_escape(&p.display().to_string())
            )
        }
        None => format!("\"{SDK_VERSION}\""),
    })
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn writer(dir: &Path) -> impl Fn(&str, &str) -> anyhow::Result<()> + '_ {
    move |rel, text| {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

fn write_rust(dir: &Path, name: &str, kind: Kind, sdk: &str) -> anyhow::Result<()> {
    let write = writer(dir);
    write(
        "Cargo.toml",
        &format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the plugin (built for wasm32-wasip2); rlib: so `cargo test` runs its tests here.
crate-type = ["cdylib", "rlib"]

[dependencies]
# The SDK carries the WIT package the plugin is built against. Until it is on crates.io,
# `path` (a checkout's plugins/sdk) or `git` says where it is; a version bump brings fixes.
factorio-isr-sdk = {sdk}
serde = {{ version = "1", features = ["derive"] }}

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
strip = true
panic = "abort"

# Its own workspace, wherever it is created.
[workspace]
"#
        ),
    )?;
    write(
        ".cargo/config.toml",
        "[alias]\n# `cargo plugin` builds the plugin: target/wasm32-wasip2/release/*.wasm\nplugin = \"build --release --target wasm32-wasip2\"\n",
    )?;
    write(
        "rust-toolchain.toml",
        "[toolchain]\nchannel = \"1.95.0\"\ntargets = [\"wasm32-wasip2\"]\n",
    )?;
    write(".gitignore", "/target\n")?;
    write(
        "src/lib.rs",
        match kind {
            Kind::Parser => RUST_PARSER,
            Kind::Monitor => RUST_MONITOR,
        },
    )?;
    let stem = name.replace('-', "_");
    write(
        "README.md",
        &format!(
            "# {name}\n\nA factorio-isr plugin.\n\n    cargo test                                        # its tests, here\n    cargo build --release --target wasm32-wasip2      # or: cargo plugin\n    factorio-isr plugin check target/wasm32-wasip2/release/{stem}.wasm\n\nIt depends on `factorio-isr-sdk` {SDK_VERSION}, which carries the WIT package\n(`factorio-isr:plugin@0.4.0`). The guide: docs/plugins.md of factorio-isr.\n"
        ),
    )?;
    Ok(())
}

fn python_build(name: &str, kind: &str) -> String {
    format!("componentize-py -d wit -w {kind} componentize app -o {name}.wasm")
}

fn write_python(dir: &Path, name: &str, kind: Kind) -> anyhow::Result<()> {
    let write = writer(dir);
    for (file, text) in WIT_FILES {
        write(&format!("wit/{file}"), text)?;
    }
    write("factorio_isr.py", PYTHON_SDK)?;
    let world = match kind {
        Kind::Parser => "parser",
        Kind::Monitor => "monitor",
    };
    write(
        "app.py",
        match kind {
            Kind::Parser => PYTHON_PARSER,
            Kind::Monitor => PYTHON_MONITOR,
        },
    )?;
    write(
        "build.sh",
        &format!(
            "#!/bin/sh\n# Builds {name}.wasm (componentize-py from PyPI: pip install componentize-py).\nset -e\ncd \"$(dirname \"$0\")\"\n{}\n",
            python_build(name, world)
        ),
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ =
            std::fs::set_permissions(dir.join("build.sh"), std::fs::Permissions::from_mode(0o755));
    }
    write(".gitignore", "*.wasm\n__pycache__/\n")?;
    write(
        "README.md",
        &format!(
            "# {name}\n\nA factorio-isr {world} plugin in Python.\n\n    pip install componentize-py\n    ./build.sh                                # {}\n    factorio-isr plugin check {name}.wasm\n\n`app.py` is the plugin; `factorio_isr.py` is the helper module (types, `event`, `alert`,\n`escape`, the base classes); `wit/` is the WIT package `factorio-isr:plugin@0.4.0`. The\nplugin runs in factorio-isr's sandbox: no files, network or environment. The guide:\ndocs/plugins.md of factorio-isr.\n",
            python_build(name, world)
        ),
    )?;
    Ok(())
}

fn js_build(name: &str, kind: &str) -> String {
    format!(
        "componentize-js --wit wit --world-name {kind} --disable http fetch-event --out {name}.wasm app.js"
    )
}

fn write_js(dir: &Path, name: &str, kind: Kind) -> anyhow::Result<()> {
    let write = writer(dir);
    for (file, text) in WIT_FILES {
        write(&format!("wit/{file}"), text)?;
    }
    write("factorio_isr.js", JS_SDK)?;
    let world = match kind {
        Kind::Parser => "parser",
        Kind::Monitor => "monitor",
    };
    write(
        "app.js",
        match kind {
            Kind::Parser => JS_PARSER,
            Kind::Monitor => JS_MONITOR,
        },
    )?;
    write(
        "package.json",
        &format!(
            r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": {{
    "build": "{}"
  }},
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "0.23.0",
    "@bytecodealliance/preview2-shim": "0.25.0"
  }}
}}
"#,
            js_build(name, world)
        ),
    )?;
    write(
        "build.sh",
        &format!(
            "#!/bin/sh\n# Builds {name}.wasm (componentize-js from npm: `npm install`, or installed elsewhere on PATH).\nset -e\ncd \"$(dirname \"$0\")\"\nPATH=\"$PWD/node_modules/.bin:$PATH\"\n{}\n",
            js_build(name, world)
        ),
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ =
            std::fs::set_permissions(dir.join("build.sh"), std::fs::Permissions::from_mode(0o755));
    }
    write(".gitignore", "*.wasm\nnode_modules/\n")?;
    write(
        "README.md",
        &format!(
            "# {name}\n\nA factorio-isr {world} plugin in JavaScript.\n\n    npm install && npm run build              # or ./build.sh with componentize-js on PATH\n    factorio-isr plugin check {name}.wasm\n\n`app.js` is the plugin; `factorio_isr.js` is the helper module (`event`, `alert`, `escape`,\nthe base classes); `wit/` is the WIT package `factorio-isr:plugin@0.4.0`. The plugin runs\nin factorio-isr's sandbox: no files, network or environment (the build leaves out the HTTP\ninterfaces). The guide: docs/plugins.md of factorio-isr.\n"
        ),
    )?;
    Ok(())
}

const JS_PARSER: &str = r#"// A factorio-isr parser plugin in JavaScript: turns log lines into events.

import { Parser, escape, event, parserExports } from "./factorio_isr.js";

class Plugin extends Parser {
  // `config` is the plugin's `config` in servers.yml (null when there is none).
  constructor(server, config) {
    super(server, config);
    this.welcome = Boolean(config && config.welcome);
  }

  parseLine(line) {
    // "2026-01-01 10:00:00 [JOIN] Alice joined the game"
    const m = /\[JOIN\] (\S+) joined the game$/.exec(line);
    if (!m) return undefined;
    const player = m[1];
    const verb = this.welcome ? "is back" : "joined";
    // Names come from the game: escape them, or `_x_` turns italic.
    return event("join", { player, emoji: "👋", text: `**${escape(player)}** ${verb}` });
  }
}

export const { init, parse } = parserExports(Plugin);
"#;

const JS_MONITOR: &str = r#"// A factorio-isr monitor plugin in JavaScript: turns events and metric samples into alerts.

import { Monitor, alert, escape, monitorExports } from "./factorio_isr.js";

class Plugin extends Monitor {
  // `config` is the plugin's `config` in servers.yml (null when there is none).
  constructor(server, config) {
    super(server, config);
    this.below = Number((config && config.below) ?? 50);
    this.low = false;
  }

  onSample(sample) {
    const ups = sample.upsEma;
    if (ups === undefined) return [];
    if (!this.low && ups < this.below) {
      this.low = true;
      return [alert("low-ups", "UPS is low", `${ups.toFixed(1)} UPS on ${escape(this.server)}`)];
    }
    if (this.low && ups >= this.below) {
      this.low = false;
      return [alert("low-ups", "UPS recovered", `${ups.toFixed(1)} UPS`, { state: "resolved" })];
    }
    return [];
  }

  // The host keeps this across restarts of the instance (after a trap, or an upgrade).
  state() {
    return { low: this.low };
  }

  restore(state) {
    this.low = Boolean(state.low);
  }
}

export const { init, onEvents, onSample, saveState, loadState } = monitorExports(Plugin);
"#;

const RUST_PARSER: &str = r##"//! A factorio-isr parser plugin: turns log lines into events.

use factorio_isr_sdk::{Event, Parser, escape, export_parser};

/// Its settings: the `config` of its entry in servers.yml.
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Say "welcome back" instead of "joined".
    welcome: bool,
}

pub struct Plugin {
    settings: Settings,
}

impl Parser for Plugin {
    fn new(_server: &str, config: &str) -> Result<Self, String> {
        Ok(Plugin {
            settings: factorio_isr_sdk::config(config)?,
        })
    }

    fn parse_line(&mut self, line: &str) -> Option<Event> {
        // "2026-01-01 10:00:00 [JOIN] Alice joined the game"
        let rest = line.split_once("[JOIN] ")?.1;
        let player = rest.strip_suffix(" joined the game")?;
        let verb = if self.settings.welcome { "is back" } else { "joined" };
        Some(
            Event::new("join")
                .player(player)
                .emoji("👋")
                // Names come from the game: escape them, or `_x_` turns italic.
                .text(format!("**{}** {verb}", escape(player))),
        )
    }
}

export_parser!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_line_gives_a_join_event_with_the_name_escaped() {
        let mut p = Plugin::new("test", "null").unwrap();
        let e = p
            .parse_line("2026-01-01 10:00:00 [JOIN] x_y joined the game")
            .unwrap();
        assert_eq!(e.kind, "join");
        assert_eq!(e.player.as_deref(), Some("x_y"));
        assert_eq!(e.text.as_deref(), Some("**x\\_y** joined"));
        assert!(p.parse_line("2026-01-01 10:00:00 [CHAT] x: hi").is_none());
    }

    #[test]
    fn a_misspelt_setting_is_refused() {
        assert!(Plugin::new("test", r#"{"welcom": true}"#).is_err());
    }
}
"##;

const RUST_MONITOR: &str = r##"//! A factorio-isr monitor plugin: turns events and metric samples into alerts.

use factorio_isr_sdk::{Alert, Event, Monitor, Sample, export_monitor};

/// Its settings: the `config` of its entry in servers.yml.
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Warn below this many updates per second.
    below: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { below: 50.0 }
    }
}

pub struct Plugin {
    settings: Settings,
    low: bool,
}

impl Monitor for Plugin {
    fn new(_server: &str, config: &str) -> Result<Self, String> {
        Ok(Plugin {
            settings: factorio_isr_sdk::config(config)?,
            low: false,
        })
    }

    fn on_events(&mut self, _at_ms: u64, _events: Vec<Event>) -> Vec<Alert> {
        Vec::new()
    }

    fn on_sample(&mut self, sample: Sample) -> Vec<Alert> {
        let Some(ups) = sample.ups_ema else { return Vec::new() };
        match (self.low, ups < self.settings.below) {
            (false, true) => {
                self.low = true;
                vec![Alert::new("low-ups", "UPS is low", format!("{ups:.1} UPS"))]
            }
            (true, false) => {
                self.low = false;
                vec![Alert::new("low-ups", "UPS recovered", format!("{ups:.1} UPS")).resolved()]
            }
            _ => Vec::new(),
        }
    }

    // The host keeps this across restarts of the instance (after a trap, or an upgrade).
    fn save_state(&self) -> Vec<u8> {
        vec![u8::from(self.low)]
    }

    fn load_state(&mut self, state: &[u8]) -> Result<(), String> {
        self.low = state.first() == Some(&1);
        Ok(())
    }
}

export_monitor!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ups: f64) -> Sample {
        Sample {
            at_ms: 0,
            rcon_up: true,
            paused: false,
            tick: Some(1),
            ups: Some(ups),
            ups_sma: Some(ups),
            ups_ema: Some(ups),
            evolution: Vec::new(),
            players: Vec::new(),
        }
    }

    #[test]
    fn low_ups_warns_once_and_recovers() {
        let mut m = Plugin::new("test", r#"{"below": 55}"#).unwrap();
        assert_eq!(m.on_sample(sample(40.0)).len(), 1);
        assert!(m.on_sample(sample(41.0)).is_empty(), "once");
        let mut fresh = Plugin::new("test", "null").unwrap();
        fresh.load_state(&m.save_state()).unwrap();
        assert_eq!(fresh.on_sample(sample(60.0)).len(), 1, "recovered, after a restart");
    }
}
"##;

const PYTHON_PARSER: &str = r#""""A factorio-isr parser plugin in Python: turns log lines into events.

A `RuleParser` declares its rules once; a match is sent as spans of its line, the cheap
form. For anything a regular expression cannot say, subclass `Parser` and override
`parse_line` (return `event(...)` or None) instead.
"""

from factorio_isr import Rule, RuleParser, parser_world


class Plugin(RuleParser):
    def __init__(self, server, config):
        super().__init__(server, config)
        # `config` is the plugin's `config` in servers.yml (None when there is none).
        self.rules = [
            Rule(
                "rocket-launched",
                r"rocket launched by (?P<player>[\w.\-]+)",
                text="🚀 **{player}** launched a rocket",
            ),
            Rule(
                "research-finished",
                r"research (?P<research>[\w\-]+) finished",
                fields=["research"],
                text="🔬 {research} researched",
            ),
        ]


WitWorld = parser_world(Plugin)
"#;

const PYTHON_MONITOR: &str = r#""""A factorio-isr monitor plugin in Python: turns events and metric samples into alerts."""

from factorio_isr import AlertState, Monitor, alert, escape, monitor_world


class Plugin(Monitor):
    def __init__(self, server, config):
        super().__init__(server, config)
        # `config` is the plugin's `config` in servers.yml (None when there is none).
        self.below = float((config or {}).get("below", 50))
        self.low = False

    def on_sample(self, sample):
        ups = sample.ups_ema
        if ups is None:
            return []
        if not self.low and ups < self.below:
            self.low = True
            return [alert("low-ups", "UPS is low", f"{ups:.1f} UPS on {escape(self.server)}")]
        if self.low and ups >= self.below:
            self.low = False
            return [alert("low-ups", "UPS recovered", f"{ups:.1f} UPS", state=AlertState.RESOLVED)]
        return []

    # The host keeps this across restarts of the instance (after a trap, or an upgrade).
    def state(self):
        return {"low": self.low}

    def restore(self, state):
        self.low = bool(state.get("low", False))


WitWorld = monitor_world(Plugin)
"#;
