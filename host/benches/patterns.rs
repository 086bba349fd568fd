//! Throughput of the stock `patterns` parser over a realistic mixed console log, in the
//! WebAssembly sandbox and natively (the same engine), so their ratio can be read off; and
//! what starting it costs for 1,000 to 7,000 rules (`patterns-init`: the time per rule
//! should stay flat, since `init` must finish within its 2 s deadline).
//!
//! Run with `cargo bench --bench patterns`.

// The allocator the `factorio-isr` binary uses, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use factorio_isr::plugin::stock::{self, PATTERNS_WASM};
use factorio_isr::plugin::{ComponentCache, Limits, Runtime};
use factorio_isr_patterns_engine::RuleSet;

const LINES: usize = 20_000;
const BATCH: usize = 1024;

/// A deterministic mixed log: chat, joins and leaves, commands, kicks, saves, server noise.
fn mixed_log() -> Vec<String> {
    let players = [
        "Alice",
        "bob_the.builder",
        "Zoë",
        "Engineer-7",
        "x",
        "longer_name.with-dots",
    ];
    let chats = [
        "hello everyone",
        "anyone seen the iron belt? it's empty again",
        "[gps=98,69] biters here",
        "lol",
        "need help @admins the train is stuck",
        "bonjour à tous: ça va?",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..LINES)
        .map(|i| {
            let r = next();
            let p = players[(r >> 8) as usize % players.len()];
            let ts = format!("2026-03-02 11:{:02}:{:02}", (i / 60) % 60, i % 60);
            match r % 100 {
                0..=39 => format!("{ts} [CHAT] {p}: {}", chats[(r >> 16) as usize % chats.len()]),
                40..=44 => format!("{ts} [JOIN] {p} joined the game"),
                45..=49 => format!("{ts} [LEAVE] {p} left the game"),
                50..=52 => format!("{ts} [COMMAND] {p} (command): game.print(\"hi\")"),
                53 => format!("{ts} [KICK] {p} was kicked by <server>. Reason: afk."),
                54 => format!("{ts} [CHAT] <server>: [color=#7289DA][Discord][Mattie]: relayed[/color]"),
                55..=59 => format!("{:8.3} Info AppManagerStates.cpp:1802: Saving finished", i as f64 * 0.25),
                60..=79 => format!(
                    "{:8.3} Info ServerMultiplayerManager.cpp:1061: Disconnect notification for peer ({})",
                    i as f64 * 0.25,
                    r % 7
                ),
                _ => format!(
                    "{:8.3} Info GameActionHandler.cpp:4996: UpdateTick ({}) processed PlayerJoinGame peerID({}) playerIndex(0) mode(connect)",
                    i as f64 * 0.25,
                    r % 100_000,
                    r % 9
                ),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let log = mixed_log();
    let files = stock::stock_pattern_files();
    let mut group = c.benchmark_group("patterns");
    group.throughput(Throughput::Elements(log.len() as u64));
    group.sample_size(20);

    let mut native = RuleSet::compile(&files)
        .expect("stock patterns compile")
        .into_matcher();
    group.bench_function("native", |b| {
        b.iter(|| log.iter().filter_map(|l| native.parse_line(l)).count())
    });

    let (_runtime, plugin) = stock_plugin();
    let mut parser = plugin
        .parser("bench", &stock::patterns_config(&files))
        .expect("stock plugin starts");
    group.bench_function("wasm", |b| {
        b.iter(|| {
            log.chunks(BATCH)
                .map(|chunk| parser.parse(chunk).expect("no faults").len())
                .sum::<usize>()
        })
    });
    group.finish();
}

/// The stock parser, loaded through the disk cache.
fn stock_plugin() -> (Runtime, std::sync::Arc<factorio_isr::plugin::Plugin>) {
    let cache = std::env::temp_dir().join("factorio-isr-bench-cache");
    let runtime =
        Runtime::new(ComponentCache::new(Some(cache)), Limits::default()).expect("runtime");
    let plugin = runtime
        .load("patterns", PATTERNS_WASM)
        .expect("stock plugin loads");
    (runtime, plugin)
}

/// A pattern file of `n` simple rules.
fn many_rules(n: usize) -> Vec<factorio_isr_patterns_engine::PatternFile> {
    let mut text = String::from("events:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  rule_{i}:\n    pattern: 'word{i} (?P<message>.+)$'\n    type: chat\n    message: \"{{message}}\"\n"
        ));
    }
    vec![factorio_isr_patterns_engine::PatternFile {
        name: "many.yml".into(),
        text,
    }]
}

fn init(c: &mut Criterion) {
    let (_runtime, plugin) = stock_plugin();
    let mut group = c.benchmark_group("patterns-init");
    group.sample_size(10);
    for n in [1_000, 3_000, 7_000] {
        let files = many_rules(n);
        let config = stock::patterns_config(&files);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("native/{n}"), |b| {
            b.iter(|| RuleSet::compile(&files).expect("compiles").rules().len())
        });
        group.bench_function(format!("wasm/{n}"), |b| {
            b.iter(|| plugin.parser("bench", &config).expect("starts"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench, init);
criterion_main!(benches);
