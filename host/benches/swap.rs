//! Hot swap time, printed (not asserted): the release binary follows a log that a writer
//! appends to steadily, and its parsers and monitors are reloaded 20 times through the admin
//! API (a new pattern file and a new chat-guard word list each time). For each swap the API
//! reports the time to build the new version (off the hot path) and the time from handing it
//! to the slot's thread to its being live. At the end every line must have given exactly one
//! event.
//!
//! Run with `cargo bench --bench swap`.

// The allocator the `factorio-isr` binary uses, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";

fn post(port: u16, path: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body).unwrap_or_default()
}

fn pattern_file(version: u32) -> String {
    format!(
        "events:\n  chat:\n    pattern: '\\[CHAT\\] (?P<player>[\\p{{L}}\\p{{N}}_.\\-]+): (?P<message>.+)$'\n    type: chat\n    message: 'v{version} {{message}}'\n"
    )
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    let pats = dir.path().join("pats");
    std::fs::create_dir(&pats).unwrap();
    std::fs::write(&log, "").unwrap();
    std::fs::write(pats.join("chat.yml"), pattern_file(0)).unwrap();
    let config = dir.path().join("servers.yml");
    // The monitors change with each version too: chat-guard watching for another word.
    let write_config = |version: u32| {
        let text = format!(
            "servers:\n  prod:\n    log_path: {}\n    parsers:\n      - plugin: patterns\n        config: {{dir: {}}}\n    \
             monitors:\n      - plugin: chat-guard\n        config: {{words: [word{version}], max_messages: 100000}}\n    \
             sinks:\n      - jsonl: {}\n",
            log.display(),
            pats.display(),
            jsonl.display()
        );
        let tmp = dir.path().join("servers.yml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &config).unwrap();
    };
    write_config(0);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("HEALTH_CHECK_HOST", "127.0.0.1")
        .env("HEALTH_CHECK_PORT", port.to_string())
        .env("FACTORIO_ISR_API_TOKEN", TOKEN)
        .env(
            "FACTORIO_ISR_CACHE_DIR",
            std::env::temp_dir().join("factorio-isr-bench-cache"),
        )
        .env("LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "did not start");
        std::thread::sleep(Duration::from_millis(5));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, written, log) = (stop.clone(), written.clone(), log.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    writeln!(f, "2026-01-01 10:00:00 [CHAT] Alice: line-{n}").unwrap();
                    n += 1;
                }
                written.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let (mut build, mut swap) = (Vec::new(), Vec::new());
    let (mut monitor_build, mut monitor_swap) = (Vec::new(), Vec::new());
    for version in 1..=20 {
        std::fs::write(pats.join("chat.yml"), pattern_file(version)).unwrap();
        write_config(version);
        let r = post(port, "/api/servers/prod/reload");
        if r["parsers"]["result"] == "swapped" {
            build.push(r["parsers"]["build_ms"].as_f64().unwrap());
            swap.push(r["parsers"]["swap_ms"].as_f64().unwrap());
        }
        if r["monitors"]["result"] == "swapped" {
            monitor_build.push(r["monitors"]["build_ms"].as_f64().unwrap());
            monitor_swap.push(r["monitors"]["swap_ms"].as_f64().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = written.load(Ordering::Relaxed);
    let count = || {
        std::fs::read_to_string(&jsonl)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let waited = Instant::now();
    while count() < total && waited.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let mut doubled = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let n = v["message"].as_str().unwrap_or_default().to_owned();
        if !seen.insert(n) {
            doubled += 1;
        }
    }
    println!(
        "hot swap under a steady stream: {} swaps (the watcher made the others), {total} lines, {} events, {} lost, {doubled} doubled",
        swap.len(),
        seen.len(),
        total - seen.len().min(total)
    );
    if !swap.is_empty() {
        println!(
            "  build (off the hot path): p50 {:.1} ms, max {:.1} ms; swap (handed over to live): p50 {:.2} ms, max {:.2} ms",
            percentile(&mut build, 0.5),
            percentile(&mut build, 1.0),
            percentile(&mut swap, 0.5),
            percentile(&mut swap, 1.0)
        );
    }
    if !monitor_swap.is_empty() {
        println!(
            "  monitors: {} swaps; build p50 {:.1} ms, max {:.1} ms; swap p50 {:.2} ms, max {:.2} ms",
            monitor_swap.len(),
            percentile(&mut monitor_build, 0.5),
            percentile(&mut monitor_build, 1.0),
            percentile(&mut monitor_swap, 0.5),
            percentile(&mut monitor_swap, 1.0)
        );
    }
}
