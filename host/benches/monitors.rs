//! Monitor throughput, printed (not asserted), over a realistic event stream: the stock
//! patterns parser's events for the sample console log (joins, chat, deaths, research,
//! leaves...), repeated.
//!
//! - `chat-guard` `on-events` calls per second and events per second, by batch size;
//! - `ups-alert` `on-sample` calls per second (each call also saves the monitor's state);
//! - the whole monitor stage (both monitors and the alert book) per batch of 16 events.
//!
//! Run with `cargo bench --bench monitors`.

// The allocator the `factorio-isr` binary uses, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use factorio_isr::alert::{Alert, Alerts, Mentions};
use factorio_isr::event::Event;
use factorio_isr::plugin::stock::{CHAT_GUARD_WASM, UPS_ALERT_WASM};
use factorio_isr::plugin::{ComponentCache, Limits, Runtime, WitSample};

const SAMPLE_LOG: &str = include_str!("../../tests/fixtures/sample-console.log");

fn runtime() -> Runtime {
    let cache = std::env::temp_dir().join("factorio-isr-bench-cache");
    Runtime::new(ComponentCache::new(Some(cache)), Limits::default()).unwrap()
}

/// The events of the sample log, parsed by the stock parser.
fn events(rt: &Runtime) -> Vec<Event> {
    let mut chain = factorio_isr::pipeline::parser_chain(rt, "bench", &[]).unwrap();
    let lines: Vec<String> = SAMPLE_LOG.lines().map(str::to_owned).collect();
    chain
        .parse(&lines)
        .events
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

fn sample(i: u64) -> WitSample {
    let ups = if (i / 50).is_multiple_of(2) {
        60.0
    } else {
        30.0
    };
    WitSample {
        at_ms: i * 1000,
        rcon_up: true,
        paused: false,
        tick: Some(i * 60),
        ups: Some(ups),
        ups_sma: Some(ups),
        ups_ema: Some(ups),
        evolution: vec![("nauvis".into(), 0.4), ("gleba".into(), 0.1)],
        players: vec!["Alice".into(), "Bob".into()],
    }
}

fn per_second(n: u64, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

fn main() {
    let rt = runtime();
    let stream = events(&rt);
    println!(
        "event stream: {} events from the sample log, repeated",
        stream.len()
    );
    let guard = rt.load("chat-guard", CHAT_GUARD_WASM).unwrap();
    let ups = rt.load("ups-alert", UPS_ALERT_WASM).unwrap();

    for batch in [1usize, 16, 256] {
        let mut m = guard
            .monitor("bench", r#"{"words": ["griefer", "hack"]}"#)
            .unwrap();
        let batches: Vec<Vec<Event>> = stream
            .iter()
            .cycle()
            .take(batch * 64)
            .cloned()
            .collect::<Vec<_>>()
            .chunks(batch)
            .map(<[Event]>::to_vec)
            .collect();
        let calls = (20_000 / batch).max(200) as u64;
        let started = Instant::now();
        for i in 0..calls {
            let b = &batches[i as usize % batches.len()];
            m.on_events(i * 100, b).unwrap();
        }
        let took = started.elapsed();
        println!(
            "chat-guard on-events, {batch:>3} events per call: {:>9.0} calls/s, {:>10.0} events/s, {:.1} µs per call",
            per_second(calls, took),
            per_second(calls * batch as u64, took),
            took.as_secs_f64() * 1e6 / calls as f64
        );
    }

    let mut m = ups.monitor("bench", "null").unwrap();
    let calls = 50_000u64;
    let started = Instant::now();
    let mut alerts = 0;
    for i in 0..calls {
        alerts += m.on_sample(&sample(i)).unwrap().len();
    }
    let took = started.elapsed();
    println!(
        "ups-alert on-sample: {:>9.0} calls/s, {:.1} µs per call ({alerts} alerts)",
        per_second(calls, took),
        took.as_secs_f64() * 1e6 / calls as f64
    );

    // The monitor stage of one server: both monitors and the alert book, 16 events a batch.
    let mut g = guard.monitor("bench", "null").unwrap();
    let mut u = ups.monitor("bench", "null").unwrap();
    let desk = Alerts::new(
        factorio_isr::alert::ServerLabel::new("bench", None),
        Arc::new(Mentions::builtin()),
        None,
    );
    let batch: Vec<Event> = stream.iter().cycle().take(16).cloned().collect();
    let rounds = 20_000u64;
    let started = Instant::now();
    for i in 0..rounds {
        let mut out: Vec<Alert> = g
            .on_events(i * 100, &batch)
            .unwrap()
            .into_iter()
            .map(Alert::from)
            .collect();
        if i % 16 == 0 {
            out.extend(
                u.on_sample(&sample(i / 16))
                    .unwrap()
                    .into_iter()
                    .map(Alert::from),
            );
        }
        desk.file("bench", out, SystemTime::now());
    }
    let took = started.elapsed();
    println!(
        "monitor stage (chat-guard + ups-alert + book), 16 events a batch: {:>10.0} events/s",
        per_second(rounds * 16, took)
    );
}
