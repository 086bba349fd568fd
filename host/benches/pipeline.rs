//! End-to-end figures of the pipeline, printed (not asserted):
//!
//! - latency from a line appended to the log to its event at a sink, p50/p99, over lines
//!   written one at a time;
//! - sustained throughput of one server with the JSONL sink;
//! - resident memory of the `run` process, idle, with 20 servers configured (logs only, and
//!   logs with RCON and the default monitor);
//! - peak resident memory of the `run` process catching up on a 500 MB backlog of real
//!   lines (`FACTORIO_ISR_BENCH_BACKLOG_MB` sets another size).
//!
//! Run with `cargo bench --bench pipeline`.

// The allocator the `factorio-isr` binary uses, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../tests/common/files.rs"]
mod files;

use factorio_isr::alert::Notice;
use factorio_isr::observe::Telemetry;
use factorio_isr::observe::health::Health;
use factorio_isr::observe::metrics::Metrics;
use factorio_isr::pipeline::{self, LogInput, ServerPipeline};
use factorio_isr::plugin::{ComponentCache, Limits, Runtime};
use factorio_isr::sink::{Batch, Delivery, JsonlSink, Sink};
use factorio_isr::tail::checkpoint::CheckpointStore;
use factorio_isr::tail::{Position, TailOptions};
use files::append_bytes as append;
use tokio::sync::watch;

/// Records when each event arrives.
#[derive(Default)]
struct Clock {
    arrivals: Mutex<Vec<(String, Instant)>>,
}

impl Sink for Clock {
    fn name(&self) -> &str {
        "clock"
    }

    fn deliver<'a>(&'a self, batch: &'a Batch<'a>) -> Delivery<'a> {
        let now = Instant::now();
        let mut a = self.arrivals.lock().unwrap();
        a.extend(
            batch
                .events()
                .iter()
                .filter_map(|n| match n {
                    Notice::Event(e) => e.message.clone(),
                    Notice::Alert(_) => None,
                })
                .map(|m| (m, now)),
        );
        Box::pin(async { Ok(()) })
    }
}

fn runtime() -> Runtime {
    let cache = std::env::temp_dir().join("factorio-isr-bench-cache");
    Runtime::new(ComponentCache::new(Some(cache)), Limits::default()).unwrap()
}

fn pipeline(dir: &Path, log: &Path, sink: Arc<dyn Sink>, from_start: bool) -> ServerPipeline {
    let checkpoints = CheckpointStore::new(dir.join("state"));
    if from_start {
        let (mut checkpoint, _) = checkpoints.open("bench");
        checkpoint.save(&Position::beginning()).unwrap();
    }
    // No monitors and no notices: the senders are dropped at once.
    let (_, notices) = tokio::sync::mpsc::channel(1);
    ServerPipeline {
        tag: "bench".into(),
        log: Some(LogInput {
            inputs: pipeline::parse_queue(),
            auto_rollback: None,
            candidate: None,
            report: Arc::default(),
            pins: None,
            previous: None,
            files: vec![pipeline::LogFile {
                id: "console".into(),
                path: log.to_owned(),
                links_within: Vec::new(),
            }],
            parsers: pipeline::parser_chain(&runtime(), "bench", &[]).unwrap(),
            checkpoints,
            on_lost_checkpoint: Default::default(),
            max_line_bytes: 1 << 20,
            tail: TailOptions::default(),
            positioned: None,
        }),
        sinks: vec![sink],
        notices,
        monitors: None,
        board: Arc::default(),
        versions: Arc::default(),
        watchdog: factorio_isr::observe::Watchdog::unsupervised(&shared(), "bench"),
        rules: Arc::default(),
        fence: None,
        backlog: Default::default(),
    }
}

fn shared() -> Telemetry {
    Telemetry {
        health: Health::default(),
        metrics: Arc::new(Metrics::new()),
    }
}

fn latency(rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    append(&log, b"");
    let clock = Arc::new(Clock::default());
    let (stop, stopped) = watch::channel(false);
    let task = {
        let _entered = rt.enter();
        pipeline::spawn(
            pipeline(dir.path(), &log, clock.clone(), false),
            shared(),
            stopped,
        )
    };
    std::thread::sleep(Duration::from_millis(500));
    let n = 2000;
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let msg = format!("m{i}");
        let written = Instant::now();
        append(
            &log,
            format!("2026-01-01 10:00:00 [CHAT] Alice: {msg}\n").as_bytes(),
        );
        let arrived = loop {
            if let Some((_, t)) = clock
                .arrivals
                .lock()
                .unwrap()
                .iter()
                .find(|(m, _)| *m == msg)
            {
                break *t;
            }
            std::thread::yield_now();
        };
        latencies.push(arrived - written);
        clock.arrivals.lock().unwrap().clear();
    }
    let _ = stop.send(true);
    rt.block_on(task).unwrap();
    latencies.sort();
    let pct = |p: f64| latencies[((n - 1) as f64 * p) as usize];
    println!(
        "append -> sink latency over {n} lines written one at a time: p50 {:?}  p99 {:?}  max {:?}",
        pct(0.5),
        pct(0.99),
        latencies[n - 1]
    );
}

fn throughput(rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    let n = 200_000;
    let mut text = String::new();
    for i in 0..n {
        mixed_line(i, &mut text);
    }
    append(&log, text.as_bytes());
    let started = Instant::now();
    let (stop, stopped) = watch::channel(false);
    let sink = Arc::new(JsonlSink::new(&jsonl));
    let task = {
        let _entered = rt.enter();
        pipeline::spawn(pipeline(dir.path(), &log, sink, true), shared(), stopped)
    };
    let expected = n - n / 4;
    loop {
        let lines = std::fs::read(&jsonl).map(|b| bytecount(&b)).unwrap_or(0);
        if lines >= expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    rt.block_on(task).unwrap();
    println!(
        "throughput, one server, JSONL sink: {n} lines ({expected} events) in {elapsed:.2?} = {:.0} lines/s (including start-up)",
        n as f64 / elapsed.as_secs_f64()
    );
}

/// Line `i` of a mixed log of real line kinds (3 of 4 give an event).
fn mixed_line(i: usize, text: &mut String) {
    match i % 4 {
        0 => text.push_str(&format!("2026-01-01 10:00:00 [CHAT] Alice: message {i}\n")),
        1 => text.push_str(&format!(
            "{:8.3} Info ServerMultiplayerManager.cpp:1061: Disconnect notification for peer ({i})\n",
            i as f64
        )),
        2 => text.push_str("2026-01-01 10:00:00 [JOIN] Bob joined the game\n"),
        _ => text.push_str("2026-01-01 10:00:00 [LEAVE] Bob left the game\n"),
    }
}

/// The line of `/proc/<pid>/status` that starts with `key` (`VmRSS:`, `VmHWM:`).
fn proc_status(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or("?")
        .to_owned()
}

fn bytecount(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

/// `run` with 20 servers, idle: their logs only, or with RCON too (each server then also
/// has its link, its checks and its own `ups-alert` monitor instance), all 20 pointed at one
/// fake server.
fn idle_memory(rcon: Option<std::net::SocketAddr>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = String::from("servers:\n");
    for i in 0..20 {
        let log = dir.path().join(format!("s{i}.log"));
        append(&log, b"");
        config.push_str(&format!("  s{i}:\n    log_path: {}\n", log.display()));
        if let Some(addr) = rcon {
            config.push_str(&format!(
                "    rcon_host: 127.0.0.1\n    rcon_port: {}\n    rcon_password: pw\n",
                addr.port()
            ));
        }
    }
    let (mut child, port) = spawn_run(dir.path(), &config);
    let started = Instant::now();
    let ready = loop {
        if get(port, "/ready").starts_with("HTTP/1.1 200") {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not ready");
        std::thread::sleep(Duration::from_millis(2));
    };
    std::thread::sleep(Duration::from_secs(3));
    let rss = proc_status(child.id(), "VmRSS:");
    let _ = child.kill();
    let _ = child.wait();
    let what = if rcon.is_some() {
        "logs, RCON and ups-alert"
    } else {
        "logs only"
    };
    println!("run with 20 servers ({what}; plugins cached): ready after {ready:.2?}; idle {rss}");
}

/// `run` catching up on a backlog of mixed real lines (from a checkpoint at the start of
/// the file), to a JSONL sink: how long it takes, and its peak resident memory (`VmHWM`).
fn catch_up_memory() {
    let mb: usize = std::env::var("FACTORIO_ISR_BENCH_BACKLOG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let mut text = String::new();
    let (mut lines, mut written) = (0usize, 0usize);
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
        while written < mb << 20 {
            text.clear();
            for i in lines..lines + 10_000 {
                mixed_line(i, &mut text);
            }
            lines += 10_000;
            written += text.len();
            f.write_all(text.as_bytes()).unwrap();
        }
    }
    let size = std::fs::metadata(&log).unwrap().len();
    let (mut checkpoint, _) = CheckpointStore::new(dir.path().join("state")).open("s");
    checkpoint.save(&Position::beginning()).unwrap();
    let config = format!(
        "servers:\n  s:\n    log_path: {}\n    sinks:\n      - jsonl: {}\n",
        log.display(),
        dir.path().join("events.jsonl").display()
    );
    let (mut child, port) = spawn_run(dir.path(), &config);
    let started = Instant::now();
    let caught_up = loop {
        // The lag is 0 only once the last batch is delivered and saved.
        if get(port, "/metrics")
            .lines()
            .any(|l| l == "factorio_isr_checkpoint_lag_bytes{server=\"s\"} 0")
        {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(900), "no catch-up");
        std::thread::sleep(Duration::from_millis(50));
    };
    let peak = proc_status(child.id(), "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "catch-up on a {} MB backlog ({lines} lines): {caught_up:.2?}; peak {peak}",
        size >> 20
    );
}

/// `factorio-isr run` on `config` with its state in `dir`, on a free port.
fn spawn_run(dir: &Path, config: &str) -> (std::process::Child, u16) {
    let path = dir.join("servers.yml");
    std::fs::write(&path, config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(["run", "--config"])
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("HEALTH_CHECK_HOST", "127.0.0.1")
        .env("HEALTH_CHECK_PORT", port.to_string())
        .env(
            "FACTORIO_ISR_CACHE_DIR",
            std::env::temp_dir().join("factorio-isr-bench-cache"),
        )
        .env("LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (child, port)
}

/// The whole answer to `GET path` (empty if there is none yet).
fn get(port: u16, path: &str) -> String {
    let mut resp = String::new();
    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let _ = std::io::Read::read_to_string(&mut s, &mut resp);
    }
    resp
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no options.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    latency(&rt);
    throughput(&rt);
    idle_memory(None);
    let sim = rt
        .block_on(factorio_isr::sim::Sim::start(
            factorio_isr::sim::SimOptions {
                password: "pw".into(),
                ..Default::default()
            },
        ))
        .unwrap();
    idle_memory(Some(sim.rcon_addr()));
    drop(sim);
    catch_up_memory();
}
