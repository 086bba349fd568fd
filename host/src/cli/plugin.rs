//! `factorio-isr plugin check` and `plugin bench`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use super::RuntimeArgs;
use crate::event::Event;
use crate::plugin::stock::{self, PluginSource};
use crate::plugin::{CacheOutcome, MonitorInstance, ParserInstance, Runtime, WitSample, WorldKind};

/// A plugin started for the command line.
pub(crate) enum Started {
    Parser(ParserInstance),
    Monitor(MonitorInstance),
}

impl Started {
    /// Which world it implements.
    pub(crate) fn kind(&self) -> WorldKind {
        match self {
            Self::Parser(_) => WorldKind::Parser,
            Self::Monitor(_) => WorldKind::Monitor,
        }
    }

    pub(crate) fn describe(&self) -> String {
        let p = match self {
            Self::Parser(i) => i.plugin(),
            Self::Monitor(i) => i.plugin(),
        };
        format!("{} (sha256 {})", p.world(), p.short_hash())
    }
}

/// Loads `source` and starts it with `config` (see [`stock::init_config`]).
pub(crate) fn start(
    runtime: &Runtime,
    source: &PluginSource,
    config: &serde_json::Value,
) -> anyhow::Result<Started> {
    start_timed(runtime, source, config).map(|(started, _)| started)
}

/// Like [`start`], with the time `init` took (under the same deadline as in `run`).
pub(crate) fn start_timed(
    runtime: &Runtime,
    source: &PluginSource,
    config: &serde_json::Value,
) -> anyhow::Result<(Started, Duration)> {
    let name = source.name();
    let bytes = source
        .bytes(runtime.limits().file_bytes)
        .with_context(|| format!("cannot read {name}"))?;
    let plugin = runtime.load(&name, &bytes)?;
    let config = stock::init_config(source, config)?;
    let began = Instant::now();
    let started = match plugin.world().kind {
        WorldKind::Parser => Started::Parser(plugin.parser("check", &config)?),
        WorldKind::Monitor => Started::Monitor(plugin.monitor("check", &config)?),
    };
    Ok((started, began.elapsed()))
}

/// Above this share of its deadline, an `init` that passed is flagged: a slower or busier
/// machine may refuse it.
pub(crate) const INIT_CLOSE: f64 = 0.5;

/// "init 0.31 s of its 2 s limit (16 %)", and whether that is close to the limit.
pub(crate) fn init_time(took: Duration, limit: Duration) -> (String, bool) {
    let share = took.as_secs_f64() / limit.as_secs_f64().max(1e-9);
    (
        format!(
            "init {:.2} s of its {} s limit ({:.0} %)",
            took.as_secs_f64(),
            limit.as_secs_f64(),
            share * 100.0
        ),
        share > INIT_CLOSE,
    )
}

/// Lines a `plugin check` runs a parser over when given no `--lines`.
const SAMPLE_LINES: &[&str] = &[
    "2026-01-01 10:00:00 [JOIN] Alice joined the game",
    "2026-01-01 10:00:05 [CHAT] Alice: hello, world",
    "2026-01-01 10:00:09 [CHAT] <server>: a message from the server",
    "2026-01-01 10:01:00 [KICK] Bob was kicked by Alice. Reason: afk.",
    "2026-01-01 10:02:00 [LEAVE] Alice left the game",
    "   3.491 Info ServerMultiplayerManager.cpp:799: updateTick(0) changing state from(CreatingGame) to(InGame)",
    "random text that is not a factorio event",
];

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The plugin: a `.wasm` file or a stock name.
    plugin: String,
    /// Configuration for the plugin, YAML or JSON, passed to `init`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A file of log lines to run a parser over (default: a few built-in sample lines).
    #[arg(long, value_name = "FILE")]
    lines: Option<PathBuf>,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let runtime = args.runtime.runtime()?;
    let source = PluginSource::parse(&args.plugin);
    let name = source.name();
    let bytes = source
        .bytes(runtime.limits().file_bytes)
        .with_context(|| format!("cannot read {name}"))?;
    println!("plugin:  {name} ({} bytes)", bytes.len());
    let plugin = match runtime.load(&name, &bytes) {
        Ok(p) => p,
        Err(e) => {
            println!("error:   {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("sha256:  {}", plugin.hash());
    println!("world:   {}", plugin.world());
    println!("compile: {}", compile_line(&plugin, &runtime));
    let limits = runtime.limits();
    let config = super::read_plugin_config(args.config.as_deref())?;
    let (started, took) = match start_timed(&runtime, &source, &config) {
        Ok(s) => s,
        Err(e) => {
            println!("sandbox: error: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    print_sandbox(&limits, took);
    let lines = sample_lines(args.lines.as_deref())?;
    let memory = match &started {
        Started::Parser(p) => p.memory_bytes(),
        Started::Monitor(m) => m.memory_bytes(),
    };
    let memory_line = memory_line(memory, &limits);
    let ran = match started {
        Started::Parser(p) => run_parser(p, &lines),
        Started::Monitor(m) => run_monitor(m).map(|()| true)?,
    };
    if !ran {
        return Ok(ExitCode::FAILURE);
    }
    println!("{memory_line}");
    println!("ok");
    Ok(ExitCode::SUCCESS)
}

/// What the sandbox allows, and how long `init` took of its limit.
fn print_sandbox(limits: &crate::plugin::Limits, took: Duration) {
    let (init, close) = init_time(took, limits.init_timeout);
    println!(
        "sandbox: instantiated and initialised (no files, network or environment; memory cap {} MiB; {} ms per call; {init})",
        limits.memory_bytes >> 20,
        limits.call_timeout.as_millis()
    );
    if close {
        println!(
            "warning: init took over {:.0} % of its limit; on a slower or busier machine it may be refused",
            INIT_CLOSE * 100.0
        );
    }
}

/// The lines of `path`, or the built-in sample.
fn sample_lines(path: Option<&std::path::Path>) -> anyhow::Result<Vec<String>> {
    Ok(match path {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read {}", p.display()))?
            .lines()
            .map(str::to_owned)
            .collect(),
        None => SAMPLE_LINES.iter().map(|s| (*s).to_owned()).collect(),
    })
}

fn memory_line(memory: usize, limits: &crate::plugin::Limits) -> String {
    format!(
        "memory:  {:.1} MiB of linear memory after init and the sample run, of its {} MiB cap{}",
        mib(memory as u64),
        limits.memory_bytes >> 20,
        if memory as f64 > 0.75 * limits.memory_bytes as f64 {
            " (close to it: FACTORIO_ISR_PLUGIN_MEMORY_MIB raises the cap)"
        } else {
            ""
        }
    )
}

/// Parses `lines` and prints the events; false if the plugin faulted.
fn run_parser(mut p: ParserInstance, lines: &[String]) -> bool {
    let events = match p.parse(lines) {
        Ok(e) => e,
        Err(fault) => {
            println!("run:     the plugin {fault}");
            return false;
        }
    };
    println!("run:     {} lines -> {} events", lines.len(), events.len());
    for (i, e) in &events {
        println!("  line {:>3}  {}", i + 1, summary(e));
    }
    true
}

/// Feeds the sample events and two samples (healthy, then slow) and prints the alerts.
fn run_monitor(mut m: MonitorInstance) -> anyhow::Result<()> {
    let events = sample_events();
    let mut alerts = m
        .on_events(0, &events)
        .map_err(|f| anyhow::anyhow!("on-events: the plugin {f}"))?;
    for ups in [59.9, 20.0] {
        let sample = sample_reading(ups);
        alerts.extend(
            m.on_sample(&sample)
                .map_err(|f| anyhow::anyhow!("on-sample: the plugin {f}"))?,
        );
    }
    println!(
        "run:     {} events and 2 samples -> {} alerts",
        events.len(),
        alerts.len()
    );
    for a in &alerts {
        let state = match a.state {
            crate::plugin::WitAlertState::Firing => "",
            crate::plugin::WitAlertState::Resolved => " (resolved)",
            crate::plugin::WitAlertState::Withdrawn => " (withdrawn)",
        };
        println!("  [{}] {}: {}{state}", a.key, a.title, a.text);
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// What loading the plugin cost, and what the next start will cost: a component of tens of
/// MiB (a Python or JavaScript one) takes seconds to compile, once.
fn compile_line(plugin: &crate::plugin::Plugin, runtime: &crate::plugin::Runtime) -> String {
    let r = plugin.load_report();
    let size = format!("{:.1} MiB compiled", mib(r.compiled_bytes));
    let cache = runtime
        .cache_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    match r.outcome {
        CacheOutcome::Hit => format!(
            "loaded from the cache in {:.2} s ({size}): nothing compiled",
            r.took.as_secs_f64()
        ),
        CacheOutcome::Compiled => format!(
            "compiled in {:.1} s ({size}) and cached in {cache}: the next start loads it without compiling",
            r.took.as_secs_f64()
        ),
        CacheOutcome::Uncached => format!(
            "compiled in {:.1} s ({size}), not cached: every start compiles it again",
            r.took.as_secs_f64()
        ),
    }
}

fn summary(e: &Event) -> String {
    let mut s = e.kind.clone();
    if let Some(p) = &e.player {
        s.push_str(&format!("  player={p}"));
    }
    for (k, v) in &e.fields {
        s.push_str(&format!("  {k}={v}"));
    }
    if let Some(t) = e.text.as_ref().or(e.message.as_ref()) {
        s.push_str(&format!("  {t:?}"));
    }
    s
}

fn sample_events() -> Vec<Event> {
    ["join", "chat", "leave"]
        .into_iter()
        .map(|kind| Event {
            player: Some("Alice".into()),
            ..Event::new(kind)
        })
        .collect()
}

fn sample_reading(ups: f64) -> WitSample {
    WitSample {
        at_ms: 0,
        rcon_up: true,
        paused: false,
        tick: Some(123_456),
        ups: Some(ups),
        ups_sma: Some(ups),
        ups_ema: Some(ups),
        evolution: vec![("nauvis".into(), 0.42)],
        players: vec!["Alice".into()],
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The parser plugin: a `.wasm` file or a stock name.
    plugin: String,
    /// The lines to parse (a console log).
    #[arg(long, value_name = "FILE")]
    lines: PathBuf,
    /// Configuration for the plugin, YAML or JSON.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Lines per call.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// How long to measure.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let runtime = args.runtime.runtime()?;
    let source = PluginSource::parse(&args.plugin);
    let config = super::read_plugin_config(args.config.as_deref())?;
    let Started::Parser(mut parser) = start(&runtime, &source, &config)? else {
        anyhow::bail!(
            "{} is a monitor; `plugin bench` measures parsers",
            source.name()
        );
    };
    let text = std::fs::read(&args.lines)
        .with_context(|| format!("cannot read {}", args.lines.display()))?;
    let lines: Vec<String> = String::from_utf8_lossy(&text)
        .lines()
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(!lines.is_empty(), "{} has no lines", args.lines.display());
    let batches: Vec<&[String]> = lines.chunks(args.batch.max(1)).collect();

    // Warm up: the first calls fill caches inside the plugin.
    for b in batches.iter().take(3) {
        parser
            .parse(b)
            .map_err(|f| anyhow::anyhow!("the plugin {f}"))?;
    }
    let budget = Duration::from_secs_f64(args.seconds.max(0.1));
    let mut latencies = Vec::new();
    let (mut n_lines, mut n_events) = (0u64, 0u64);
    let started = Instant::now();
    'outer: loop {
        for b in &batches {
            let t = Instant::now();
            let events = parser
                .parse(b)
                .map_err(|f| anyhow::anyhow!("the plugin {f}"))?;
            latencies.push(t.elapsed());
            n_lines += b.len() as u64;
            n_events += events.len() as u64;
            if started.elapsed() >= budget {
                break 'outer;
            }
        }
    }
    let total = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "plugin:     {} ({})",
        source.name(),
        parser.plugin().world()
    );
    println!(
        "input:      {} lines from {}, {} lines per call",
        lines.len(),
        args.lines.display(),
        args.batch
    );
    println!(
        "throughput: {:.0} lines/s ({:.0} events/s) over {:.1} s",
        n_lines as f64 / total,
        n_events as f64 / total,
        total
    );
    println!(
        "per call:   p50 {:?}  p99 {:?}  max {:?}  ({} calls)",
        pct(0.50),
        pct(0.99),
        latencies[latencies.len() - 1],
        latencies.len()
    );
    Ok(ExitCode::SUCCESS)
}
