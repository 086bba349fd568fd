//! The plugin runtime with real components: the stock parser, the misbehaving test plugin,
//! the test monitor, hand-written components of the wrong kinds, and the disk cache.

use std::sync::Arc;
use std::time::Duration;

use factorio_isr::plugin::stock::{self, PATTERNS_WASM};
use factorio_isr::plugin::{
    CacheOutcome, ComponentCache, Fault, Limits, ParserChain, Plugin, PluginError, Runtime,
    SUPPORTED_WIT_VERSIONS, Version, WorldKind,
};

const MISBEHAVE_WASM: &str = env!("FACTORIO_ISR_WASM_MISBEHAVE");
const BAD_MATCHES_WASM: &str = env!("FACTORIO_ISR_WASM_BAD_MATCHES");
const ECHO_MONITOR_WASM: &str = env!("FACTORIO_ISR_WASM_ECHO_MONITOR");

/// A runtime sharing one cache across the tests of this file, so each plugin compiles once.
fn runtime() -> Runtime {
    runtime_with(Limits::default())
}

fn runtime_with(limits: Limits) -> Runtime {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
    Runtime::new(ComponentCache::new(Some(dir)), limits).unwrap()
}

fn load(rt: &Runtime, path: &str) -> Arc<Plugin> {
    rt.load(path, &std::fs::read(path).unwrap()).unwrap()
}

fn lines(ls: &[&str]) -> Vec<String> {
    ls.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn the_stock_parser_gives_the_expected_events_for_the_test_lines() {
    let rt = runtime();
    let plugin = rt.load("patterns", PATTERNS_WASM).unwrap();
    assert_eq!(plugin.world().kind, WorldKind::Parser);
    assert_eq!(plugin.world().version, Version(0, 4, 0));
    let mut parser = plugin
        .parser(
            "test",
            &stock::patterns_config(&stock::stock_pattern_files()),
        )
        .unwrap();
    let table = include_str!("../../tests/fixtures/console-lines.tsv");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    let input: Vec<String> = rows.iter().map(|r| r[0].to_owned()).collect();
    let events = parser.parse(&input).unwrap();
    for (i, row) in rows.iter().enumerate() {
        let found: Vec<_> = events
            .iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, e)| e)
            .collect();
        if row[1] == "-" {
            assert!(found.is_empty(), "{:?} gave {found:?}", row[0]);
            continue;
        }
        assert_eq!(found.len(), 1, "{:?} gave {found:?}", row[0]);
        let e = found[0];
        assert_eq!(e.kind, row[1], "{:?}", row[0]);
        let player = row.get(2).copied().filter(|p| !p.is_empty());
        assert_eq!(e.player.as_deref(), player, "{:?}", row[0]);
        if let Some(m) = row.get(3).copied().filter(|m| !m.is_empty()) {
            assert_eq!(e.message.as_deref(), Some(m), "{:?}", row[0]);
        }
    }
    assert_eq!(parser.stats().calls, 1);
    assert_eq!(parser.stats().faults(), 0);
}

/// Runs the stock parser, configured by `config`, over a table of lines (line, kind, player,
/// message, every field, source) and says which lines gave something else.
fn check_table(config: &str, table: &str) {
    let rt = runtime();
    let plugin = rt.load("patterns", PATTERNS_WASM).unwrap();
    let mut parser = plugin.parser("test", config).unwrap();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    assert!(
        rows.iter().all(|r| r.len() == 6),
        "six columns in every row"
    );
    let input: Vec<String> = rows.iter().map(|r| r[0].to_owned()).collect();
    let events = parser.parse(&input).unwrap();
    let mut wrong = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let found: Vec<_> = events
            .iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, e)| e)
            .collect();
        let got = match found.as_slice() {
            [] => "-".to_owned(),
            [e] => {
                let mut fields: Vec<String> =
                    e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                fields.sort();
                let message = if row[3].is_empty() {
                    ""
                } else {
                    e.message.as_deref().unwrap_or("")
                };
                let player = e.player.as_deref().unwrap_or("");
                format!("{}|{player}|{message}|{}", e.kind, fields.join(";"))
            }
            more => format!("{} events", more.len()),
        };
        let mut fields: Vec<&str> = row[4].split(';').filter(|f| !f.is_empty()).collect();
        fields.sort();
        let expected = if row[1] == "-" {
            "-".to_owned()
        } else {
            format!("{}|{}|{}|{}", row[1], row[2], row[3], fields.join(";"))
        };
        if got != expected {
            wrong.push(format!(
                "{:?}\n  expected {expected}\n  got      {got}",
                row[0]
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every kind of line a real server writes, each with where it (or its form) was found, gives
/// exactly the event in `tests/fixtures/factorio-lines.tsv`, fields and all.
#[test]
fn the_stock_parser_gives_every_kind_of_real_line_its_event_fields_and_all() {
    check_table(
        &stock::patterns_config(&stock::stock_pattern_files()),
        include_str!("../../tests/fixtures/factorio-lines.tsv"),
    );
}

/// The packs for companion mods give their lines' events, and nothing the console log says
/// already; the vanilla lines give the same events with the packs on.
#[test]
fn the_pattern_packs_give_the_companion_mods_events_and_no_duplicates() {
    let source = stock::PluginSource::Stock("patterns");
    let config = stock::init_config(
        &source,
        &serde_json::json!({"packs": ["factocord", "server-protocol"]}),
    )
    .unwrap();
    check_table(&config, include_str!("../../tests/fixtures/pack-lines.tsv"));
    check_table(
        &config,
        include_str!("../../tests/fixtures/factorio-lines.tsv"),
    );
}

#[test]
fn the_stock_parser_rejects_bad_pattern_files_in_init_with_file_and_line() {
    let rt = runtime();
    let plugin = rt.load("patterns", PATTERNS_WASM).unwrap();
    let files = vec![factorio_isr_patterns_engine::PatternFile::new(
        "bad.yml",
        "events:\n  r:\n    pattern: '(unclosed'\n",
    )];
    let err = plugin
        .parser("test", &stock::patterns_config(&files))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("init failed: bad.yml:3: rule `r`, field `pattern`: invalid regex"),
        "{msg}"
    );
}

#[test]
fn worlds_and_versions_are_told_apart_before_anything_runs() {
    let rt = runtime();
    let monitor = load(&rt, ECHO_MONITOR_WASM);
    assert_eq!(monitor.world().kind, WorldKind::Monitor);
    assert_eq!(
        monitor.world().to_string(),
        "factorio-isr:plugin/monitor@0.4.0"
    );
    let err = monitor.parser("s", "null").unwrap_err();
    assert!(matches!(
        err,
        PluginError::WrongWorld {
            found: WorldKind::Monitor,
            wanted: WorldKind::Parser
        }
    ));
    let parser = rt.load("patterns", PATTERNS_WASM).unwrap();
    assert!(matches!(
        parser.monitor("s", "null"),
        Err(PluginError::WrongWorld { .. })
    ));
}

#[test]
fn files_that_are_not_plugins_get_a_one_line_error_saying_what_they_are() {
    let rt = runtime();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "text",
            b"hello, not wasm at all".to_vec(),
            "not a WebAssembly file",
        ),
        ("empty", Vec::new(), "not a WebAssembly file"),
        (
            "core module",
            wat::parse_str("(module)").unwrap(),
            "core WebAssembly module",
        ),
        (
            "other component",
            wat::parse_str("(component)").unwrap(),
            "not a factorio-isr plugin",
        ),
        (
            "newer WIT",
            wat::parse_str(r#"(component (import "factorio-isr:plugin/types@0.5.0" (instance)))"#)
                .unwrap(),
            "built against factorio-isr:plugin@0.5.0, newer than this host supports (up to 0.4.0): upgrade factorio-isr to a release that supports 0.5.0",
        ),
        (
            "no world",
            wat::parse_str(r#"(component (import "factorio-isr:plugin/types@0.1.0" (instance)))"#)
                .unwrap(),
            "exports neither the parser world",
        ),
        (
            "truncated",
            PATTERNS_WASM[..PATTERNS_WASM.len() / 2].to_vec(),
            "does not compile",
        ),
    ];
    for (what, bytes, expected) in cases {
        let err = rt.load(what, &bytes).unwrap_err().to_string();
        assert!(err.contains(expected), "{what}: {err}");
        assert!(!err.contains('\n'), "{what}: more than one line: {err}");
    }
}

#[test]
fn a_plugin_that_loops_forever_is_stopped_and_the_next_batch_works() {
    let rt = runtime();
    let mut p = load(&rt, MISBEHAVE_WASM).parser("s", "null").unwrap();
    let fault = p.parse(&lines(&["a", "LOOP", "b"])).unwrap_err();
    assert!(
        matches!(fault, Fault::Timeout(d) if d >= Limits::default().call_timeout),
        "{fault:?}"
    );
    let events = p.parse(&lines(&["after"])).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1.message.as_deref(), Some("after"));
    // The instance was re-created and re-initialised: its line counter starts again.
    assert_eq!(events[0].1.field("seen"), Some("1"));
    // The batch was tried twice (a deadline can be missed on a busy machine), then given up;
    // each try and the next batch got a fresh instance.
    let s = p.stats();
    assert_eq!((s.timeouts, s.retries, s.restarts), (1, 1, 2));
}

#[test]
fn a_plugin_that_allocates_past_its_cap_is_stopped() {
    let rt = runtime_with(Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    });
    let mut p = load(&rt, MISBEHAVE_WASM).parser("s", "null").unwrap();
    assert_eq!(
        p.parse(&lines(&["ALLOC"])).unwrap_err(),
        Fault::MemoryCap(16 << 20)
    );
    assert_eq!(p.parse(&lines(&["ok"])).unwrap().len(), 1);
    assert_eq!(p.stats().memory_cap_hits, 1);
}

#[test]
fn a_panicking_plugin_traps_and_is_counted() {
    let rt = runtime();
    let mut p = load(&rt, MISBEHAVE_WASM).parser("s", "null").unwrap();
    for _ in 0..3 {
        let fault = p.parse(&lines(&["x", "PANIC"])).unwrap_err();
        assert!(matches!(fault, Fault::Trap(_)), "{fault:?}");
    }
    assert_eq!(p.stats().traps, 3);
    assert_eq!(p.parse(&lines(&["fine"])).unwrap().len(), 1);
    assert_eq!(p.stats().calls, 1);
}

#[test]
fn printing_and_logging_are_captured_and_bounded() {
    let rt = runtime();
    let mut p = load(&rt, MISBEHAVE_WASM).parser("s", "null").unwrap();
    assert!(p.parse(&lines(&["PRINT"])).unwrap().is_empty());
    let after_print = p.stats().suppressed_output;
    assert!(
        after_print > 0,
        "10,000 printed lines should exceed the per-call cap"
    );
    assert!(p.parse(&lines(&["LOG"])).unwrap().is_empty());
    assert!(p.stats().suppressed_output >= after_print + 900);
    assert_eq!(p.stats().faults(), 0);
}

#[test]
fn the_sandbox_grants_no_environment_files_or_network() {
    let rt = runtime();
    let mut p = load(&rt, MISBEHAVE_WASM).parser("s", "null").unwrap();
    let events = p.parse(&lines(&["SNOOP"])).unwrap();
    let e = &events[0].1;
    assert_eq!(e.kind, "snoop");
    assert_eq!(e.field("env"), Some("0"));
    assert_eq!(e.field("fs"), Some("false"));
    assert_eq!(e.field("net"), Some("false"));
}

#[test]
fn results_for_lines_that_do_not_exist_are_dropped_and_counted() {
    let rt = runtime();
    let mut p = load(&rt, MISBEHAVE_WASM).parser("s", "null").unwrap();
    let events = p.parse(&lines(&["one", "BADINDEX", "two"])).unwrap();
    let found: Vec<_> = events
        .iter()
        .map(|(i, e)| (*i, e.message.clone().unwrap()))
        .collect();
    assert_eq!(found, [(0, "one".to_owned()), (2, "two".to_owned())]);
    assert_eq!(p.stats().bad_results, 1);
}

#[test]
fn a_parser_gives_at_most_a_few_events_per_line_however_many_it_returns() {
    use factorio_isr::plugin::MAX_EVENTS_PER_LINE;
    let rt = runtime();
    let mut p = load(&rt, MISBEHAVE_WASM).parser("s", "null").unwrap();
    let events = p.parse(&lines(&["MANY", "after"])).unwrap();
    let first = events.iter().filter(|(i, _)| *i == 0).count();
    assert_eq!(
        first, MAX_EVENTS_PER_LINE,
        "the first few of 10,000 are kept"
    );
    assert_eq!(
        events.last().and_then(|(_, e)| e.message.as_deref()),
        Some("after")
    );
    assert_eq!(p.stats().bad_results, (10_000 - MAX_EVENTS_PER_LINE) as u64);
}

/// WIT 0.3.0: a rule parser's matches are checked against its rules and its lines.
#[test]
fn malformed_rule_matches_are_dropped_and_counted_and_the_rest_of_the_batch_kept() {
    let rt = runtime();
    let plugin = load(&rt, BAD_MATCHES_WASM);
    assert_eq!(plugin.world().version, Version(0, 4, 0));
    let mut p = plugin.parser("s", "null").unwrap();
    let events = p
        .parse(&lines(&[
            "WORD Zoë went home",
            "PASTEND a b",
            "MIDCHAR a é",
            "BACKWARDS a b",
            "NORULE a b",
            "FIELDS a b",
            "nothing here",
            "WORD Bob\nstayed",
            "WORD Alice",
            "TEMPLATE b_o*b went *out*",
        ]))
        .unwrap();
    let found: Vec<_> = events
        .iter()
        .map(|(i, e)| {
            (
                *i,
                e.kind.as_str(),
                e.player.as_deref().unwrap_or_default(),
                e.fields.clone(),
            )
        })
        .collect();
    let rest = |v: &str| vec![("rest".to_owned(), v.to_owned())];
    assert_eq!(
        found,
        [
            (0, "word", "Zoë", rest("went home")),
            // The newline inside the line reached the plugin as a space; spans still hold.
            (7, "word", "Bob", rest("stayed")),
            (8, "word", "Alice", Vec::new()),
            (9, "word", "b_o*b", rest("went *out*")),
        ]
    );
    assert_eq!(events[0].1.severity, factorio_isr::event::Severity::Notice);
    assert_eq!(events[0].1.emoji.as_deref(), Some("🔤"));
    assert_eq!(
        events[0].1.text.as_deref(),
        Some("text of WORD Zoë went home")
    );
    // Without a text of its own, the host fills in the rule's template, escaping the values.
    assert_eq!(
        events[3].1.text.as_deref(),
        Some("b\\_o\\*b said went \\*out\\*")
    );
    assert_eq!(p.stats().bad_results, 5);
}

#[test]
fn a_rule_whose_template_names_a_value_it_cannot_have_fails_init() {
    let rt = runtime();
    let err = load(&rt, BAD_MATCHES_WASM)
        .parser("s", "\"bad-template\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rule 0 (word): its text template uses {nope}"),
        "{err}"
    );
}

#[test]
fn one_faulting_parser_loses_its_batch_and_no_other_parser_does() {
    let rt = runtime();
    let bad = load(&rt, MISBEHAVE_WASM).parser("s", "null").unwrap();
    let good = rt
        .load("patterns", PATTERNS_WASM)
        .unwrap()
        .parser("s", &stock::patterns_config(&stock::stock_pattern_files()))
        .unwrap();
    let mut chain = ParserChain::new(vec![bad, good]);
    let out = chain.parse(&lines(&[
        "2026-01-01 10:00:00 [JOIN] Alice joined the game",
        "PANIC",
    ]));
    assert_eq!(out.faults.len(), 1);
    assert_eq!(out.faults[0].0, 0);
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].1.kind, "join");
    // Next batch: both work, events in line order, parser order within a line.
    let out = chain.parse(&lines(&[
        "x",
        "2026-01-01 10:00:00 [LEAVE] Alice left the game",
    ]));
    let kinds: Vec<_> = out
        .events
        .iter()
        .map(|(i, e)| (*i, e.kind.as_str()))
        .collect();
    assert_eq!(kinds, [(0, "echo"), (1, "echo"), (1, "leave")]);
}

#[test]
fn init_failures_are_reported_not_panicked() {
    let rt = runtime_with(Limits {
        init_timeout: Duration::from_millis(200),
        ..Limits::default()
    });
    let plugin = load(&rt, MISBEHAVE_WASM);
    match plugin.parser("s", "\"fail\"") {
        Err(PluginError::Init(msg)) => assert_eq!(msg, "asked to fail"),
        other => panic!("{:?}", other.err()),
    }
    match plugin.parser("s", "\"panic\"") {
        Err(PluginError::InitFaultSaying {
            fault: Fault::Trap(_),
            said,
        }) => assert!(said.contains("asked to panic in init"), "{said}"),
        other => panic!("{:?}", other.err()),
    }
    assert!(matches!(
        plugin.parser("s", "\"loop\""),
        Err(PluginError::InitFault(Fault::Timeout(_)))
    ));
}

#[test]
fn monitors_turn_events_and_samples_into_alerts() {
    let rt = runtime();
    let mut m = load(&rt, ECHO_MONITOR_WASM).monitor("s", "null").unwrap();
    let event = factorio_isr::event::Event {
        player: Some("Alice".into()),
        ..factorio_isr::event::Event::new("join")
    };
    let alerts = m.on_events(0, &[event]).unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].key, "kind:join");
    let sample = factorio_isr::plugin::WitSample {
        at_ms: 1,
        rcon_up: true,
        paused: false,
        tick: Some(10),
        ups: Some(12.5),
        ups_sma: None,
        ups_ema: None,
        evolution: vec![],
        players: vec![],
    };
    let alerts = m.on_sample(&sample).unwrap();
    let got: Vec<_> = alerts
        .iter()
        .map(|a| (a.key.as_str(), a.text.as_str()))
        .collect();
    assert_eq!(got, [("samples", "1"), ("ups", "12.5")]);
}

#[test]
fn the_cache_compiles_once_and_rebuilds_a_corrupt_entry() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(ECHO_MONITOR_WASM).unwrap();
    let rt = Runtime::new(
        ComponentCache::new(Some(dir.path().to_owned())),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(
        rt.load("m", &wasm).unwrap().cache_outcome(),
        CacheOutcome::Compiled
    );
    // A new runtime (as after a restart) compiles nothing.
    let rt = Runtime::new(
        ComponentCache::new(Some(dir.path().to_owned())),
        Limits::default(),
    )
    .unwrap();
    let plugin = rt.load("m", &wasm).unwrap();
    assert_eq!(plugin.cache_outcome(), CacheOutcome::Hit);
    plugin.monitor("s", "null").unwrap();
    // While a plugin is loaded, loading it again gives the same one; this looks at the disk.
    drop(plugin);

    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0xff;
    std::fs::write(&entries[0], &bytes).unwrap();
    let plugin = rt.load("m", &wasm).unwrap();
    assert_eq!(plugin.cache_outcome(), CacheOutcome::Compiled);
    plugin.monitor("s", "null").unwrap();
    drop(plugin);
    std::fs::write(&entries[0], b"short").unwrap();
    assert_eq!(
        rt.load("m", &wasm).unwrap().cache_outcome(),
        CacheOutcome::Compiled
    );
    assert_eq!(
        rt.load("m", &wasm).unwrap().cache_outcome(),
        CacheOutcome::Hit
    );
}

#[test]
fn an_instance_reports_its_memory() {
    let rt = runtime();
    let plugin = rt.load("patterns", PATTERNS_WASM).unwrap();
    let mut p = plugin
        .parser(
            "test",
            &stock::patterns_config(&stock::stock_pattern_files()),
        )
        .unwrap();
    let after_init = p.memory_bytes();
    eprintln!("stock parser after init: {} KiB", after_init >> 10);
    assert!(after_init > 0);
    p.parse(&lines(&["2026-01-01 10:00:00 [CHAT] Alice: hello"]))
        .unwrap();
    eprintln!("after one chat line: {} KiB", p.memory_bytes() >> 10);
    assert!(p.memory_bytes() >= after_init);
    assert_eq!(p.stats().memory_bytes, p.memory_bytes());
}

#[test]
fn servers_of_a_stateless_plugin_share_idle_instances_and_keep_their_faults_to_themselves() {
    let rt = runtime();
    let plugin = rt.load_stateless("patterns", PATTERNS_WASM).unwrap();
    let again = rt.load_stateless("patterns", PATTERNS_WASM).unwrap();
    assert!(Arc::ptr_eq(&plugin, &again), "loaded once, shared");
    assert!(!Arc::ptr_eq(
        &plugin,
        &rt.load("patterns", PATTERNS_WASM).unwrap()
    ));

    let config = stock::patterns_config(&stock::stock_pattern_files());
    let mut parsers: Vec<_> = (0..20)
        .map(|i| plugin.parser(&format!("s{i}"), &config).unwrap())
        .collect();
    assert_eq!(plugin.idle_instances(), 1, "20 servers, one instance");
    for p in &mut parsers {
        let events = p
            .parse(&lines(&["2026-01-01 10:00:00 [CHAT] Alice: hi"]))
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(p.memory_bytes(), 0, "given back after the call");
    }
    assert_eq!(plugin.idle_instances(), 1);
    // Another configuration gets instances of its own.
    let other = stock::patterns_config(&[factorio_isr_patterns_engine::PatternFile::new(
        "x.yml",
        "events:\n  hi:\n    pattern: 'hi'\n    type: hi\n",
    )]);
    let mut p = plugin.parser("s-other", &other).unwrap();
    assert_eq!(p.parse(&lines(&["hi"])).unwrap()[0].1.kind, "hi");
    assert_eq!(plugin.idle_instances(), 2);

    // A fault in one server's call loses that call's instance only.
    let misbehave = rt
        .load_stateless(MISBEHAVE_WASM, &std::fs::read(MISBEHAVE_WASM).unwrap())
        .unwrap();
    let mut a = misbehave.parser("a", "").unwrap();
    let mut b = misbehave.parser("b", "").unwrap();
    assert!(matches!(a.parse(&lines(&["PANIC"])), Err(Fault::Trap(_))));
    assert_eq!(b.parse(&lines(&["ok"])).unwrap().len(), 1);
    assert_eq!(a.parse(&lines(&["ok"])).unwrap().len(), 1);
    assert_eq!(a.stats().traps, 1);
    assert_eq!(a.stats().restarts, 1);
    assert_eq!(b.stats().faults(), 0);
}

#[test]
fn idle_instances_of_a_configuration_no_server_runs_any_more_are_dropped() {
    let rt = runtime();
    let plugin = rt.load_stateless("patterns", PATTERNS_WASM).unwrap();
    let edit = |n: usize| {
        stock::patterns_config(&[factorio_isr_patterns_engine::PatternFile::new(
            "x.yml",
            format!("events:\n  hi:\n    pattern: 'hi'\n    type: hi{n}\n"),
        )])
    };
    // Two servers; fifty edits of their pattern file, each followed by a reload that
    // replaces both servers' parsers (the old ones are dropped once the new ones run).
    let mut live: Vec<_> = (0..2)
        .map(|i| plugin.parser(&format!("s{i}"), &edit(0)).unwrap())
        .collect();
    for n in 1..=50 {
        let next: Vec<_> = (0..2)
            .map(|i| plugin.parser(&format!("s{i}"), &edit(n)).unwrap())
            .collect();
        live = next;
        for p in &mut live {
            assert_eq!(
                p.parse(&lines(&["hi"])).unwrap()[0].1.kind,
                format!("hi{n}")
            );
        }
    }
    assert_eq!(
        plugin.idle_configurations(),
        1,
        "only the configuration in use"
    );
    assert!(plugin.idle_instances() <= 2, "{}", plugin.idle_instances());
    drop(live);
    assert_eq!(plugin.idle_instances(), 0);
    assert_eq!(plugin.idle_configurations(), 0);
}

/// A plugin built against the frozen WIT 0.1.0 (straight from its WIT, no SDK) still loads,
/// parses and logs through the 0.1.0 `host` interface, beside plugins of the newest version.
#[test]
fn a_plugin_built_against_the_frozen_0_1_0_still_loads_and_runs() {
    let rt = runtime();
    let legacy = load(&rt, env!("FACTORIO_ISR_WASM_LEGACY_PARSER"));
    assert_eq!(
        legacy.world().to_string(),
        "factorio-isr:plugin/parser@0.1.0"
    );
    let current = rt.load("patterns", PATTERNS_WASM).unwrap();
    assert_eq!(
        current.world().version,
        *SUPPORTED_WIT_VERSIONS.last().unwrap()
    );
    assert_eq!(
        SUPPORTED_WIT_VERSIONS,
        [
            Version(0, 1, 0),
            Version(0, 2, 0),
            Version(0, 3, 0),
            Version(0, 4, 0)
        ]
    );
    let mut p = legacy.parser("s", "null").unwrap();
    let events = p.parse(&lines(&["a", "b"])).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].1.kind, "legacy");
    assert_eq!(events[1].1.message.as_deref(), Some("b"));
    assert_eq!(events[1].1.field("built-against"), Some("0.1.0"));
    // In a chain with a current plugin, both give their events for the same lines.
    let mut chain = ParserChain::new(vec![
        legacy.parser("s", "null").unwrap(),
        current
            .parser("s", &stock::patterns_config(&stock::stock_pattern_files()))
            .unwrap(),
    ]);
    let out = chain.parse(&lines(&[
        "2026-01-01 10:00:00 [JOIN] Alice joined the game",
    ]));
    let kinds: Vec<&str> = out.events.iter().map(|(_, e)| e.kind.as_str()).collect();
    assert_eq!(kinds, ["legacy", "join"]);
}

/// A plugin built against the frozen WIT 0.3.0 (whose `host` has no `log-source`) loads
/// and runs through the current parser bindings, in a chain with a 0.4.0 plugin that asks
/// which log its lines came from.
#[test]
fn a_plugin_built_against_the_frozen_0_3_0_runs_beside_one_that_asks_the_log_source() {
    let rt = runtime();
    let old = load(&rt, env!("FACTORIO_ISR_WASM_V03_PARSER"));
    assert_eq!(old.world().to_string(), "factorio-isr:plugin/parser@0.3.0");
    let current = load(&rt, MISBEHAVE_WASM);
    assert_eq!(
        current.world().to_string(),
        "factorio-isr:plugin/parser@0.4.0"
    );
    let mut chain = ParserChain::new(vec![
        old.parser("s", "null").unwrap(),
        current.parser("s", "null").unwrap(),
    ]);
    let out = chain.parse_from("factorio-current", &lines(&["SOURCE"]));
    assert!(out.faults.is_empty(), "{:?}", out.faults);
    let got: Vec<(&str, Option<&str>)> = out
        .events
        .iter()
        .map(|(_, e)| (e.kind.as_str(), e.message.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("v03", Some("SOURCE")),
            ("source", Some("factorio-current"))
        ]
    );
    assert_eq!(out.events[0].1.field("clock"), Some("true"));
    // The source is the call's: the next batch from another log says so.
    let out = chain.parse_from("console", &lines(&["SOURCE"]));
    assert_eq!(out.events[1].1.message.as_deref(), Some("console"));
}

/// 0.2.0's new function: a current plugin reads the host's clock.
#[test]
fn a_current_plugin_reads_the_hosts_clock() {
    let rt = runtime();
    let mut p = load(&rt, MISBEHAVE_WASM).parser("s", "null").unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let events = p.parse(&lines(&["NOW"])).unwrap();
    let ms: u64 = events[0].1.field("ms").unwrap().parse().unwrap();
    assert!(ms >= before && ms < before + 60_000, "{ms} vs {before}");
}
