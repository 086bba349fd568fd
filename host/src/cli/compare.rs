//! `factorio-isr compare`: a candidate parser against a server's live parsers, offline, over
//! a log file; the same report as `GET /api/servers/{tag}/compare`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::RuntimeArgs;
use crate::config::{Config, PluginEntry};
use crate::pipeline;
use crate::swap::compare::ParserReport;
use crate::tail::lines::{DEFAULT_MAX_LINE_BYTES, LineReader};

/// Lines per call into the plugins.
const BATCH_LINES: usize = 1024;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The servers.yml whose server's parsers are the live side.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The server of --config.
    #[arg(long, value_name = "TAG")]
    server: String,
    /// The candidate parser: a `.wasm` file or a stock name (default: the server's `shadow`
    /// entries). Repeat to chain several.
    #[arg(long, value_name = "X.wasm")]
    candidate: Vec<String>,
    /// Configuration for the candidate(s), YAML or JSON, passed to `init`.
    #[arg(long, value_name = "FILE", requires = "candidate")]
    candidate_config: Option<PathBuf>,
    /// The log to read.
    log_file: PathBuf,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let server = config
        .server(&args.server)
        .ok_or_else(|| anyhow::anyhow!("{}: no server `{}`", args.config.display(), args.server))?;
    let candidates = if args.candidate.is_empty() {
        anyhow::ensure!(
            !server.shadow.parsers.is_empty(),
            "server `{}` has no `shadow` parsers: name a --candidate (offline comparison covers \
             parsers; a monitor candidate is compared on the running server)",
            server.tag
        );
        server.shadow.parsers.clone()
    } else {
        let c = super::read_plugin_config(args.candidate_config.as_deref())?;
        args.candidate
            .iter()
            .map(|p| PluginEntry {
                plugin: p.clone(),
                config: c.clone(),
            })
            .collect()
    };
    let runtime = args.runtime.runtime()?;
    let mut live = pipeline::parser_chain(&runtime, &server.tag, &server.parsers)
        .context("the live parsers")?;
    let mut candidate =
        pipeline::parser_chain(&runtime, &server.tag, &candidates).context("the candidate")?;
    let file = std::fs::File::open(&args.log_file)
        .with_context(|| format!("cannot open {}", args.log_file.display()))?;
    let mut reader = LineReader::new(std::io::BufReader::new(file), DEFAULT_MAX_LINE_BYTES);
    let mut report = ParserReport::new(candidate.version());
    let mut batch = Vec::with_capacity(BATCH_LINES);
    loop {
        let line = reader.next_line().context("cannot read the log")?;
        let done = line.is_none();
        batch.extend(line.map(|l| l.text));
        if !batch.is_empty() && (done || batch.len() >= BATCH_LINES) {
            let l = live.parse(&batch);
            let c = candidate.parse(&batch);
            if !l.faults.is_empty() {
                anyhow::bail!("the live parsers faulted on the log; nothing to compare against");
            }
            if c.faults.is_empty() {
                report.add(&batch, &l.events, &c.events);
            } else {
                report.candidate_faults += 1;
            }
            batch.clear();
        }
        if done {
            break;
        }
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
