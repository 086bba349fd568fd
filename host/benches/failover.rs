//! Cluster mode's failover, measured: three instances (this build's binary) on a real etcd,
//! two servers written to steadily, and the owner of one killed with SIGKILL again and
//! again. Reports, over the rounds, how long the server had no owner (kill until another
//! instance holds its key) and how long until the first line written after the kill reached
//! Discord; then, over a quiet stretch, the etcd writes per delivered batch.
//!
//! ```sh
//! cargo bench -p factorio-isr --features cluster --bench failover [-- ROUNDS [TTL]]
//! ```
//!
//! Needs etcd (Debian's `etcd-server`) on PATH.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::cluster::{ALPHA, Cluster, Writer, moved};
use common::wait_for;

fn main() {
    // `cargo bench` passes `--bench`; the numbers after it are ours.
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(10) as usize;
    let ttl = args.get(1).copied().unwrap_or(3);
    let Some(mut c) = Cluster::start(ttl) else {
        eprintln!("etcd is not installed: nothing measured");
        return;
    };
    c.settled();
    let writer = Writer::start(&c.logs);
    wait_for("the first lines in Discord", || !c.seen(ALPHA).is_empty());

    let mut owned = Vec::new();
    let mut delivered = Vec::new();
    for round in 1..=rounds {
        let victim = c.settled()["alpha"].clone();
        let written = writer.written.load(std::sync::atomic::Ordering::Relaxed);
        let t = Instant::now();
        drop(c.instances.insert(victim.clone(), None).flatten());
        let (heir, took) = moved(&c, "alpha", &victim, t);
        wait_for("a line written after the kill in Discord", || {
            c.seen(ALPHA)
                .keys()
                .next_back()
                .is_some_and(|n| *n > written)
        });
        let caught_up = t.elapsed();
        println!(
            "round {round}: {victim} killed; {heir} owned alpha after {:.2} s, its first new line was in Discord after {:.2} s",
            took.as_secs_f64(),
            caught_up.as_secs_f64()
        );
        owned.push(took);
        delivered.push(caught_up);
        // Back to three, and settled (hand-backs included) before the next kill.
        c.launch(&victim);
        std::thread::sleep(Duration::from_secs(12));
        c.settled();
    }

    // etcd writes per delivered batch, over a quiet stretch on the live instances.
    let totals = |c: &Cluster| {
        let (mut writes, mut batches) = (0.0, 0.0);
        for (_, isr) in c.live() {
            let (_, metrics) = isr.get("/metrics").unwrap();
            for line in metrics.lines() {
                let value = || line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
                if line.starts_with("factorio_isr_cluster_writes_total ") {
                    writes += value();
                } else if line.starts_with("factorio_isr_sink_delivery_seconds_count{")
                    && line.contains("sink=\"discord\"")
                {
                    batches += value();
                }
            }
        }
        (writes, batches)
    };
    let (w0, b0) = totals(&c);
    std::thread::sleep(Duration::from_secs(10));
    let (w1, b1) = totals(&c);
    let last = writer.finish();
    c.exactly_once(last);

    let stats = |name: &str, mut v: Vec<Duration>| {
        v.sort();
        let median = v[v.len() / 2];
        let worst = v[v.len() - 1];
        println!(
            "{name}: median {:.2} s, worst {:.2} s over {} kills (lease TTL {ttl} s)",
            median.as_secs_f64(),
            worst.as_secs_f64(),
            v.len()
        );
    };
    stats("failover (kill to new owner)", owned);
    stats("failover (kill to the next line in Discord)", delivered);
    println!(
        "etcd writes per delivered batch: {:.2} ({} writes, {} batches in 10 s)",
        (w1 - w0) / (b1 - b0).max(1.0),
        w1 - w0,
        b1 - b0
    );
    let r = c.discord.recorded();
    println!(
        "every line once: {} posts, {} answered by nonce",
        r.messages.len(),
        r.nonce_hits
    );
}
