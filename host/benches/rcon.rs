//! RCON and metrics-engine figures against the fake Factorio server on loopback, printed
//! (not asserted):
//!
//! - round-trip latency of one command on the persistent connection, p50/p99, and commands
//!   per second one after another;
//! - the readings engine's cache: many concurrent status requests in one period, and how many
//!   RCON round trips they cost (the target is one).
//!
//! Run with `cargo bench --bench rcon`.

// The allocator the `factorio-isr` binary uses, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use factorio_isr::config::Secret;
use factorio_isr::rcon::{RconClient, RconSettings};
use factorio_isr::readings::Readings;
use factorio_isr::sim::{Sim, SimOptions};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let sim = Sim::start(SimOptions::default()).await.unwrap();
    let settings = RconSettings::new(
        sim.rcon_addr().to_string(),
        Secret::new(SimOptions::default().password),
    );
    let client = RconClient::spawn("bench", settings, None);
    client.exec("/version").await.unwrap();

    let n = 20_000;
    let mut times = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        client.exec("/sc rcon.print(game.tick)").await.unwrap();
        times.push(t.elapsed());
    }
    let total = started.elapsed();
    times.sort();
    println!(
        "rcon round trip: {n} commands, p50 {:?}, p99 {:?}, {:.0} commands/s on one connection ({} connection(s) opened)",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        n as f64 / total.as_secs_f64(),
        sim.connections()
    );

    for callers in [1usize, 100, 1000] {
        // A fresh engine, so each round starts a new period.
        let engine = Arc::new(Readings::new(
            client.clone(),
            Duration::from_secs(5),
            0.2,
            None,
        ));
        let before = sim.commands();
        let started = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let e = engine.clone();
                tokio::spawn(async move { e.reading().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        println!(
            "status cache: {callers} concurrent requests answered in {:?} with {} RCON round trip(s)",
            started.elapsed(),
            sim.commands() - before
        );
    }
}
