//! `factorio-isr plugin new`: a plugin crate that builds as it is, anywhere on the disk.
//!
//! The SDK and the WIT package are written into the new crate (from copies built into this
//! binary), so it needs nothing but crates.io and the wasm32-wasip2 target.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

const SDK_LIB: &str = include_str!("../../../plugins/sdk/src/lib.rs");
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Parser,
    Monitor,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name (a crate name: letters, digits, `-`, `_`).
    name: String,
    /// Where to create it (default: a folder named after the plugin, here).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// What the plugin is.
    #[arg(long, value_enum, default_value = "parser")]
    kind: Kind,
}

pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.as_str();
    anyhow::ensure!(
        !name.is_empty()
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "`{name}` is not a valid crate name: start with a letter; use letters, digits, `-` and `_`"
    );
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        anyhow::bail!("{} already exists and is not empty", dir.display());
    }
    write_crate(&dir, name, args.kind)?;
    let stem = name.replace('-', "_");
    println!(
        "Created the {} plugin `{name}` in {}.",
        kind_name(args.kind),
        dir.display()
    );
    println!();
    println!("Build it and check it:");
    println!("    cd {}", dir.display());
    println!("    cargo build --release");
    println!("    factorio-isr plugin check target/wasm32-wasip2/release/{stem}.wasm");
    Ok(ExitCode::SUCCESS)
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Parser => "parser",
        Kind::Monitor => "monitor",
    }
}

fn write_crate(dir: &Path, name: &str, kind: Kind) -> anyhow::Result<()> {
    let write = |rel: &str, text: &str| -> anyhow::Result<()> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write(
        "Cargo.toml",
        &format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
factorio-isr-sdk = {{ path = "sdk" }}

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
        "[build]\n# Plugins are WebAssembly components.\ntarget = \"wasm32-wasip2\"\n",
    )?;
    write(
        "rust-toolchain.toml",
        "[toolchain]\nchannel = \"1.95.0\"\ntargets = [\"wasm32-wasip2\"]\n",
    )?;
    write(".gitignore", "/target\n")?;
    write(
        "src/lib.rs",
        match kind {
            Kind::Parser => PARSER_TEMPLATE,
            Kind::Monitor => MONITOR_TEMPLATE,
        },
    )?;
    write(
        "sdk/Cargo.toml",
        r#"[package]
name = "factorio-isr-sdk"
version = "0.1.0"
edition = "2024"
publish = false
description = "The factorio-isr plugin SDK (a copy written by `factorio-isr plugin new`)."

[dependencies]
wit-bindgen = { version = "0.61.1", default-features = false, features = ["macros", "realloc", "std"] }
"#,
    )?;
    write(
        "sdk/src/lib.rs",
        &SDK_LIB.replace("\"../../wit/since_v0.4.0\"", "\"wit\""),
    )?;
    for (file, text) in WIT_FILES {
        write(&format!("sdk/wit/{file}"), text)?;
    }
    write(
        "README.md",
        &format!(
            "# {name}\n\nA factorio-isr {} plugin.\n\n    cargo build --release\n    factorio-isr plugin check target/wasm32-wasip2/release/{}.wasm\n\n`sdk/` is a copy of the factorio-isr SDK and WIT package (version 0.4.0).\n",
            kind_name(kind),
            name.replace('-', "_")
        ),
    )?;
    Ok(())
}

const PARSER_TEMPLATE: &str = r#"//! A factorio-isr parser plugin: turns console-log lines into events.

use factorio_isr_sdk::{Event, Parser, export_parser};

struct Plugin;

impl Parser for Plugin {
    /// `config` is the JSON of this plugin's `config` in servers.yml (`null` if none).
    fn new(_server: &str, _config: &str) -> Result<Self, String> {
        Ok(Plugin)
    }

    fn parse_line(&mut self, line: &str) -> Option<Event> {
        // Example: "2026-01-01 10:00:00 [JOIN] Alice joined the game"
        let rest = line.split_once("[JOIN] ")?.1;
        let player = rest.strip_suffix(" joined the game")?;
        Some(
            Event::new("join")
                .player(player)
                .emoji("👋")
                .text(format!("{player} joined")),
        )
    }
}

export_parser!(Plugin);
"#;

const MONITOR_TEMPLATE: &str = r#"//! A factorio-isr monitor plugin: turns events and metric samples into alerts.

use factorio_isr_sdk::{Alert, Event, Monitor, Sample, export_monitor};

struct Plugin {
    low: bool,
}

impl Monitor for Plugin {
    fn new(_server: &str, _config: &str) -> Result<Self, String> {
        Ok(Plugin { low: false })
    }

    fn on_events(&mut self, _at_ms: u64, _events: Vec<Event>) -> Vec<Alert> {
        Vec::new()
    }

    fn on_sample(&mut self, sample: Sample) -> Vec<Alert> {
        let Some(ups) = sample.ups_ema else { return Vec::new() };
        match (self.low, ups < 50.0) {
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
"#;
