//! `factorio-isr parse`: the configured parsers over a file or stdin, events as JSON lines.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::RuntimeArgs;
use crate::config::{Config, PluginEntry};
use crate::event::Event;
use crate::pipeline;
use crate::plugin::{ParserChain, Runtime};
use crate::tail::lines::{DEFAULT_MAX_LINE_BYTES, LineReader};

/// Lines per call into the plugins.
const BATCH_LINES: usize = 1024;
/// Bytes of text per call into the plugins, at most (one longer line goes alone).
const BATCH_BYTES: usize = 1 << 20;

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// A servers.yml whose server's `parsers` to run (with --server).
    #[arg(long, value_name = "FILE", requires = "server", conflicts_with_all = ["patterns", "plugin"])]
    config: Option<PathBuf>,
    /// The server of --config whose parsers to run.
    #[arg(long, value_name = "TAG", requires = "config")]
    server: Option<String>,
    /// A folder of pattern files for the stock `patterns` parser (default: ./patterns if it
    /// exists, else the pattern files built into this binary).
    #[arg(long, value_name = "DIR", conflicts_with = "plugin")]
    patterns: Option<PathBuf>,
    /// A parser plugin: a `.wasm` file or a stock name. Repeat to chain several.
    #[arg(long, value_name = "X.wasm")]
    plugin: Vec<String>,
    /// Configuration for the plugin(s), YAML or JSON, passed to `init`.
    #[arg(long, value_name = "FILE", requires = "plugin")]
    plugin_config: Option<PathBuf>,
    /// The log to read; `-` or nothing reads stdin.
    log_file: Option<PathBuf>,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// One line of output.
#[derive(Serialize)]
struct Output<'a> {
    line: u64,
    #[serde(flatten)]
    event: &'a Event,
}

pub fn run(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let runtime = args.runtime.runtime()?;
    let mut chain = build_chain(&runtime, &args)?;
    let input: Box<dyn BufRead> = match &args.log_file {
        Some(p) if p.as_os_str() != "-" => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        )),
        _ => Box::new(std::io::stdin().lock()),
    };
    let mut reader = LineReader::new(input, DEFAULT_MAX_LINE_BYTES);
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut batch: Vec<String> = Vec::with_capacity(BATCH_LINES);
    let mut batch_bytes = 0;
    let mut first_line = 1u64;
    let mut lost_batches = 0u64;
    loop {
        let line = reader.next_line().context("cannot read the log")?;
        let done = line.is_none();
        if let Some(line) = line {
            if line.truncated_bytes > 0 {
                tracing::warn!(
                    line = first_line + batch.len() as u64,
                    "line longer than {DEFAULT_MAX_LINE_BYTES} bytes; {} bytes dropped",
                    line.truncated_bytes
                );
            }
            batch_bytes += line.text.len();
            batch.push(line.text);
        }
        if !batch.is_empty() && (done || batch.len() >= BATCH_LINES || batch_bytes >= BATCH_BYTES) {
            let result = chain.parse(&batch);
            lost_batches += result.faults.len() as u64;
            for (index, event) in &result.events {
                let line = first_line + *index as u64;
                serde_json::to_writer(&mut out, &Output { line, event })?;
                out.write_all(b"\n")?;
            }
            first_line += batch.len() as u64;
            batch.clear();
            batch_bytes = 0;
        }
        if done {
            break;
        }
    }
    out.flush()?;
    if lost_batches > 0 {
        eprintln!("error: {lost_batches} batch(es) were lost to plugin faults (see the log above)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The parser chain the options ask for.
fn build_chain(runtime: &Runtime, args: &ParseArgs) -> anyhow::Result<ParserChain> {
    let entry = |plugin: &str, config: serde_json::Value| PluginEntry {
        plugin: plugin.to_owned(),
        config,
    };
    let (tag, entries) = if let Some(path) = &args.config {
        let config = Config::load(path)?;
        let tag = args.server.as_deref().unwrap_or_default();
        let server = config.server(tag).ok_or_else(|| {
            let known: Vec<_> = config.servers.iter().map(|s| s.tag.as_str()).collect();
            anyhow::anyhow!(
                "{}: no server `{tag}` (configured: {})",
                path.display(),
                known.join(", ")
            )
        })?;
        (tag.to_owned(), server.parsers.clone())
    } else if args.plugin.is_empty() {
        let config = match &args.patterns {
            Some(dir) => serde_json::json!({ "dir": dir }),
            None => serde_json::Value::Null,
        };
        ("cli".to_owned(), vec![entry("patterns", config)])
    } else {
        let config = super::read_plugin_config(args.plugin_config.as_deref())?;
        let entries = args
            .plugin
            .iter()
            .map(|p| entry(p, config.clone()))
            .collect();
        ("cli".to_owned(), entries)
    };
    pipeline::parser_chain(runtime, &tag, &entries)
}
