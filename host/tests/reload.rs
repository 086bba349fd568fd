//! Hot swap end to end: the real binary follows a log that a writer appends to without
//! pause, while the live parsers change ten times (nine swaps through the admin API and the
//! watcher, and a rollback) and a broken build is rejected. Every line must give exactly one
//! event, from the version that was live when it was parsed. A parser that traps on every
//! batch is the subject of its own test (its lines give no events until it is rolled back).
//! Timeouts are hang guards.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;

const TOKEN: &str = "test-admin-token-never-shown";

/// The binary on `port` with the admin token set, started.
fn start(port: u16, dir: &Path, config: &str) -> Isr {
    let isr = Isr::start_with_env(dir, config, port, &[("FACTORIO_ISR_API_TOKEN", TOKEN)]);
    isr.wait_started();
    isr
}

/// A pattern file whose chat rule marks each event with `version`.
fn patterns(dir: &Path, version: &str) {
    let text = format!(
        "events:\n  chat:\n    pattern: '\\[CHAT\\] (?P<player>[\\p{{L}}\\p{{N}}_.\\-]+): (?P<message>.+)$'\n    type: chat\n    message: '{version}|{{message}}'\n"
    );
    let tmp = dir.join("chat.yml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join("chat.yml")).unwrap();
}

/// A folder with an empty log, a JSONL sink's path and a pattern folder of version `v1`:
/// (folder, log, sink, patterns).
fn server_files() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    let pats = dir.path().join("pats");
    std::fs::create_dir(&pats).unwrap();
    std::fs::write(&log, "").unwrap();
    patterns(&pats, "v1");
    (dir, log, jsonl, pats)
}

/// (line number, version) of every event in the JSONL sink.
fn events(jsonl: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(jsonl)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let (version, msg) = v["text"].as_str()?.split_once('|')?;
            let n = msg.strip_prefix("msg-")?.parse().ok()?;
            Some((n, version.to_owned()))
        })
        .collect()
}

#[test]
fn parsers_swap_under_a_steady_stream_without_losing_or_doubling_a_line() {
    let (dir, log, jsonl, pats) = server_files();
    let config = servers_yml(&[server("prod").log(&log).patterns(&pats).jsonl(&jsonl)]);
    let port = free_port();
    let isr = start(port, dir.path(), &config);
    wait_for("ready", || isr.get("/ready").is_some_and(|(s, _)| s == 200));

    // The writer: one chat line at a time, without pause, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, written, log) = (stop.clone(), written.clone(), log.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                writeln!(f, "2026-01-01 10:00:00 [CHAT] Alice: msg-{n}").unwrap();
                n += 1;
                written.store(n, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let seen = |version: &str| {
        let v = version.to_owned();
        let jsonl = jsonl.clone();
        move || events(&jsonl).iter().any(|(_, x)| *x == v)
    };
    wait_for("v1 events", seen("v1"));

    // Writes without the token are refused; the token never comes back.
    let (status, body) = http_call(port, "POST", "/api/servers/prod/reload", None);
    assert_eq!(status, 401, "{body}");
    let (status, _) = http_call(port, "POST", "/api/servers/prod/reload", Some("wrong"));
    assert_eq!(status, 401);
    let (status, body) = http_call(port, "POST", "/api/servers/nope/reload", Some(TOKEN));
    assert_eq!(status, 404, "{body}");

    let mut expected = vec!["v1".to_owned()];
    let mut swap_ms = Vec::new();
    for k in 2..=12 {
        match k {
            5 => {
                // A broken build is rejected with its reason; the live version keeps running.
                std::fs::write(
                    pats.join("broken.yml"),
                    "events:\n  bad:\n    pattern: '(unclosed'\n",
                )
                .unwrap();
                let (status, body) =
                    http_call(port, "POST", "/api/servers/prod/reload", Some(TOKEN));
                assert_eq!(status, 422, "{body}");
                assert_eq!(body["parsers"]["result"], "rejected", "{body}");
                assert!(
                    body["parsers"]["error"]
                        .as_str()
                        .unwrap()
                        .contains("broken.yml"),
                    "{body}"
                );
                let (_, view) = http_call(port, "GET", "/api/servers/prod", None);
                assert!(
                    view["parser_versions"]["last_error"]
                        .as_str()
                        .unwrap()
                        .contains("broken.yml"),
                    "{view}"
                );
                let (_, ready) = isr.get("/ready").unwrap();
                assert!(
                    ready.contains("\"reload:prod\"") && ready.contains("degraded"),
                    "{ready}"
                );
                std::fs::remove_file(pats.join("broken.yml")).unwrap();
                continue;
            }
            7 => {
                // Back to the version before: instant, and the lines go on.
                let (status, body) =
                    http_call(port, "POST", "/api/servers/prod/rollback", Some(TOKEN));
                assert_eq!(status, 200, "{body}");
                let back = expected[expected.len() - 2].clone();
                wait_for("events after the rollback", || {
                    let ev = events(&jsonl);
                    let last = ev.iter().map(|(n, _)| *n).max().unwrap_or(0);
                    ev.iter()
                        .any(|(n, v)| *v == back && *n > last.saturating_sub(5) && last > 0)
                });
                expected.push(back);
                continue;
            }
            _ => {}
        }
        let version = format!("v{k}");
        patterns(&pats, &version);
        // The watcher may swap first; then the API finds the version live already.
        let (status, body) = http_call(port, "POST", "/api/servers/prod/reload", Some(TOKEN));
        assert_eq!(status, 200, "{body}");
        if body["parsers"]["result"] == "swapped" {
            swap_ms.push(body["parsers"]["swap_ms"].as_f64().unwrap());
        }
        wait_for(&format!("{version} events"), seen(&version));
        expected.push(version);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = written.load(Ordering::Relaxed);
    wait_for("every line", || events(&jsonl).len() >= total);

    let ev = events(&jsonl);
    let mut by_line: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (n, v) in &ev {
        by_line.entry(*n).or_default().push(v.clone());
    }
    assert_eq!(by_line.len(), total, "lines missing");
    assert!(
        by_line.values().all(|v| v.len() == 1),
        "a line gave two events"
    );
    // In line order, the versions run in the order they were made live.
    let mut runs: Vec<String> = Vec::new();
    for v in by_line.values() {
        if runs.last() != Some(&v[0]) {
            runs.push(v[0].clone());
        }
    }
    assert_eq!(runs, expected);
    let (_, metrics) = isr.get("/metrics").unwrap();
    assert!(
        metrics
            .contains("factorio_isr_plugin_reloads_total{result=\"rejected\",server=\"prod\"} 1"),
        "{metrics}"
    );
    assert!(!isr.log().contains(TOKEN));
    eprintln!("swap times through the API (ms): {swap_ms:?}");
    assert!(isr.stop().success());
}

#[test]
fn without_a_token_the_writes_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    std::fs::write(&log, "").unwrap();
    let port = free_port();
    let isr = Isr::start_with_env(
        dir.path(),
        &servers_yml(&[server("prod").log(&log)]),
        port,
        &[],
    );
    isr.wait_started();
    let (status, body) = http_call(port, "POST", "/api/servers/prod/reload", Some("anything"));
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("FACTORIO_ISR_API_TOKEN")
    );
    let (status, _) = http_call(port, "GET", "/api/servers/prod", None);
    assert_eq!(status, 200, "reads are public by default");
    assert!(isr.stop().success());
}

#[test]
fn a_new_parser_that_keeps_faulting_is_rolled_back_by_itself_with_an_alert() {
    let (dir, log, jsonl, pats) = server_files();
    let config = |parser: &str| {
        format!(
            "servers:\n  prod:\n    log_path: {}\n    auto_rollback_faults: 2\n    parsers:\n{parser}    sinks:\n      - jsonl: {}\n",
            log.display(),
            jsonl.display()
        )
    };
    let good = format!(
        "      - plugin: patterns\n        config: {{dir: {}}}\n",
        pats.display()
    );
    let trapping = format!(
        "      - plugin: {}\n        config: trap\n",
        env!("FACTORIO_ISR_WASM_MISBEHAVE")
    );
    let port = free_port();
    let isr = start(port, dir.path(), &config(&good));
    let line = |n: usize| {
        append(
            &log,
            &format!("2026-01-01 10:00:00 [CHAT] Alice: msg-{n}\n"),
        )
    };
    line(0);
    wait_for("v1 events", || events(&jsonl).iter().any(|(n, _)| *n == 0));
    let (_, view) = http_call(port, "GET", "/api/servers/prod", None);
    let good_version = view["parser_versions"]["live"].as_str().unwrap().to_owned();

    // The operator swaps in a parser that faults on every batch.
    std::fs::write(dir.path().join("servers.yml"), config(&trapping)).unwrap();
    let (status, body) = http_call(port, "POST", "/api/servers/prod/reload", Some(TOKEN));
    assert!(status == 200, "{body}");
    // Lines keep coming; after more than two faulting batches the host rolls back by itself.
    let mut n = 1;
    wait_for("the automatic rollback", || {
        line(n);
        n += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (_, view) = http_call(port, "GET", "/api/servers/prod", None);
        view["parser_versions"]["live"] == good_version.as_str()
    });
    let after = n + 1000;
    line(after);
    wait_for("events again", || {
        events(&jsonl).iter().any(|(x, v)| *x == after && v == "v1")
    });
    let alerts: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "alert")
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0]["text"]
            .as_str()
            .unwrap()
            .contains("Parsers rolled back"),
        "{alerts:?}"
    );
    let (_, metrics) = isr.get("/metrics").unwrap();
    assert!(
        metrics.contains(
            "factorio_isr_plugin_reloads_total{result=\"auto_rolled_back\",server=\"prod\"} 1"
        ),
        "{metrics}"
    );

    // A restart keeps the good version, though servers.yml still names the trapping one.
    assert!(isr.stop().success());
    let isr = start(port, dir.path(), &config(&trapping));
    let (_, view) = http_call(port, "GET", "/api/servers/prod", None);
    assert_eq!(
        view["parser_versions"]["live"],
        good_version.as_str(),
        "{view}"
    );
    assert_eq!(
        view["parser_versions"]["pinned"], "auto_rolled_back",
        "{view}"
    );
    let again = after + 1;
    line(again);
    wait_for("events after the restart", || {
        events(&jsonl).iter().any(|(x, v)| *x == again && v == "v1")
    });
    assert!(isr.stop().success());
}

#[test]
fn a_candidate_in_compare_mode_reports_exactly_its_differences_and_can_be_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&log, "").unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (live, cand) = (dir.path().join("live"), dir.path().join("cand"));
    for (folder, join_kind) in [(&live, "join"), (&cand, "arrival")] {
        std::fs::create_dir(folder).unwrap();
        for file in ["vanilla.yml", "server.yml"] {
            let text = std::fs::read_to_string(repo.join("patterns").join(file)).unwrap();
            std::fs::write(
                folder.join(file),
                text.replace("    type: join\n", &format!("    type: {join_kind}\n")),
            )
            .unwrap();
        }
    }
    let config = format!(
        "servers:\n  prod:\n    log_path: {}\n    parsers:\n      - plugin: patterns\n        config: {{dir: {}}}\n    \
         shadow:\n      - plugin: patterns\n        config: {{dir: {}}}\n    sinks:\n      - jsonl: {}\n",
        log.display(),
        live.display(),
        cand.display(),
        jsonl.display()
    );
    let port = free_port();
    let isr = start(port, dir.path(), &config);
    wait_for("ready", || isr.get("/ready").is_some_and(|(s, _)| s == 200));
    let kinds = || -> Vec<String> {
        std::fs::read_to_string(&jsonl)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let mut text = String::new();
    for i in 0..10 {
        if i % 3 == 0 {
            text.push_str(&format!(
                "2026-01-01 10:00:00 [JOIN] P{i} joined the game\n"
            ));
        } else {
            text.push_str(&format!("2026-01-01 10:00:00 [CHAT] P{i}: hello\n"));
        }
    }
    append(&log, &text);
    wait_for("the live events", || kinds().len() == 10);
    wait_for("the comparison", || {
        http_call(port, "GET", "/api/servers/prod/compare", None).1["parsers"]["compared"].as_u64()
            >= Some(10)
    });
    let (_, report) = http_call(port, "GET", "/api/servers/prod/compare", None);
    assert_eq!(report["monitors"], serde_json::Value::Null, "{report}");
    let report = &report["parsers"];
    assert_eq!(report["different"], 4, "{report}");
    assert_eq!(
        (report["missing"].as_u64(), report["extra"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
    assert_eq!(report["agreements"], 6, "{report}");
    assert!(
        report["sample"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["input"].as_str().unwrap().contains("[JOIN]"))
    );
    // Only the live parsers' events reach the sinks.
    assert!(!kinds().contains(&"arrival".to_owned()));
    let (_, metrics) = isr.get("/metrics").unwrap();
    assert!(
        metrics.contains(
            "factorio_isr_plugin_discrepancies_total{plugin=\"patterns\",server=\"prod\"} 4"
        ),
        "{metrics}"
    );

    // Promote: the candidate is live; roll back: the old one is.
    let (status, body) = http_call(port, "POST", "/api/servers/prod/promote", None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = http_call(port, "POST", "/api/servers/prod/promote", Some(TOKEN));
    assert_eq!(
        (status, body["parsers"]["result"].as_str()),
        (200, Some("swapped")),
        "{body}"
    );
    assert_eq!(body["monitors"], serde_json::Value::Null, "{body}");
    append(&log, "2026-01-01 10:00:01 [JOIN] Late joined the game\n");
    wait_for("an event of the promoted parser", || {
        kinds().last().map(String::as_str) == Some("arrival")
    });

    // A restart keeps the promotion, though servers.yml still names the old parsers.
    assert!(isr.stop().success());
    let isr = start(port, dir.path(), &config);
    let (_, view) = http_call(port, "GET", "/api/servers/prod", None);
    assert_eq!(view["parser_versions"]["pinned"], "promoted", "{view}");
    append(&log, "2026-01-01 10:00:02 [JOIN] After joined the game\n");
    wait_for("the promoted parser after the restart", || {
        kinds().len() == 12
    });
    assert_eq!(kinds().last().map(String::as_str), Some("arrival"));

    // Rolling back is kept too; an explicit reload applies servers.yml again.
    let (status, _) = http_call(port, "POST", "/api/servers/prod/rollback", Some(TOKEN));
    assert_eq!(status, 200);
    append(&log, "2026-01-01 10:00:03 [JOIN] Later joined the game\n");
    wait_for("an event of the old parser again", || kinds().len() == 13);
    assert_eq!(kinds().last().map(String::as_str), Some("join"));
    let (status, body) = http_call(port, "POST", "/api/servers/prod/reload", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let (_, view) = http_call(port, "GET", "/api/servers/prod", None);
    assert_eq!(
        view["parser_versions"]["pinned"],
        serde_json::Value::Null,
        "{view}"
    );
    assert_eq!(
        view["parser_versions"]["live"], view["parser_versions"]["config"],
        "{view}"
    );
    assert!(isr.stop().success());
}

/// The keys of the alerts raised in the JSONL sink, in order.
fn raised(jsonl: &Path) -> Vec<String> {
    std::fs::read_to_string(jsonl)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "alert")
        .filter_map(|v| Some(v["fields"]["key"].as_str()?.to_owned()))
        .collect()
}

#[test]
fn monitors_go_from_off_to_compare_to_live_and_back_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&log, "").unwrap();
    let guard = |words: &str| {
        format!(
            "      - plugin: chat-guard\n        config: {{words: [{words}], max_messages: 100}}\n"
        )
    };
    let config = |monitors: &str, shadow: &str| {
        format!(
            "servers:\n  prod:\n    log_path: {}\n    auto_rollback_faults: 2\n    monitors:\n{monitors}{shadow}    sinks:\n      - jsonl: {}\n",
            log.display(),
            jsonl.display()
        )
    };
    let live = guard("grief");
    let candidate = format!(
        "    shadow:\n      monitors:\n{}",
        guard("grief, lag")
            .replace("      - ", "        - ")
            .replace("\n        config", "\n          config")
    );
    let config_path = dir.path().join("servers.yml");
    let port = free_port();
    let start = || {
        let text = std::fs::read_to_string(&config_path).unwrap_or_else(|_| config(&live, ""));
        start(port, dir.path(), &text)
    };
    let say = |player: &str, text: &str| {
        append(
            &log,
            &format!("2026-01-01 10:00:00 [CHAT] {player}: {text}\n"),
        );
    };
    let isr = start();
    say("P0", "grief");
    wait_for("the live alert", || raised(&jsonl) == ["word:P0"]);
    let (status, _) = http_call(port, "GET", "/api/servers/prod/compare", None);
    assert_eq!(status, 404, "no candidate yet");

    // Off → compare: a candidate added to servers.yml starts with the next reload.
    std::fs::write(&config_path, config(&live, &candidate)).unwrap();
    let (status, body) = http_call(port, "POST", "/api/servers/prod/reload", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["monitors"]["result"], "unchanged", "{body}");
    let (status, report) = http_call(port, "GET", "/api/servers/prod/compare", None);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["parsers"], serde_json::Value::Null, "{report}");
    say("P1", "grief");
    say("P2", "so much lag");
    say("P3", "hello");
    say("P4", "LAG again");
    say("P5", "grief");
    wait_for("the live alerts", || raised(&jsonl).len() == 3);
    assert_eq!(raised(&jsonl), ["word:P0", "word:P1", "word:P5"]);
    let report = || http_call(port, "GET", "/api/servers/prod/compare", None).1["monitors"].clone();
    wait_for("the comparison", || {
        report()["compared"].as_u64().unwrap_or(0) >= 1 && report()["extra"] == 2
    });
    let r = report();
    assert_eq!(
        (
            &r["missing"],
            &r["different"],
            &r["skipped"],
            &r["candidate_faults"]
        ),
        (&0.into(), &0.into(), &0.into(), &0.into()),
        "{r}"
    );
    let keys: Vec<&str> = r["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["what"], "extra", "{e}");
            assert_eq!(e["live"], serde_json::Value::Null, "{e}");
            e["candidate"]["key"].as_str().unwrap()
        })
        .collect();
    assert_eq!(keys, ["word:P2", "word:P4"], "{r}");
    let (_, metrics) = isr.get("/metrics").unwrap();
    assert!(
        metrics.contains(
            "factorio_isr_plugin_discrepancies_total{plugin=\"chat-guard\",server=\"prod\"} 2"
        ),
        "{metrics}"
    );

    // Compare → live: the candidate is promoted; the live monitors become the rollback target.
    let (status, body) = http_call(port, "POST", "/api/servers/prod/promote", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["monitors"]["result"], "swapped", "{body}");
    assert_eq!(body["parsers"], serde_json::Value::Null, "{body}");
    say("P6", "lag");
    wait_for("the promoted monitor's alert", || {
        raised(&jsonl).last().map(String::as_str) == Some("word:P6")
    });

    // A restart keeps the promotion, though servers.yml still names the old monitors.
    assert!(isr.stop().success());
    let isr = start();
    let (_, view) = http_call(port, "GET", "/api/servers/prod", None);
    assert_eq!(view["monitor_versions"]["pinned"], "promoted", "{view}");
    assert!(view["monitor_versions"]["previous"].is_string(), "{view}");
    say("P7", "lag");
    wait_for("the promoted monitor after the restart", || {
        raised(&jsonl).last().map(String::as_str) == Some("word:P7")
    });

    // Back: `lag` goes unnoticed again (P8), `grief` is still seen (P9).
    let (status, body) = http_call(
        port,
        "POST",
        "/api/servers/prod/rollback?slot=monitors",
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["slot"], "monitors", "{body}");
    say("P8", "lag");
    say("P9", "grief");
    wait_for("the old monitor's alert", || {
        raised(&jsonl).last().map(String::as_str) == Some("word:P9")
    });
    assert!(!raised(&jsonl).contains(&"word:P8".to_owned()));
    let (_, view) = http_call(port, "GET", "/api/servers/prod", None);
    assert_eq!(view["monitor_versions"]["pinned"], "rolled_back", "{view}");

    // A monitor that traps on every call is rolled back by itself, with an alert.
    let trapping = format!(
        "      - plugin: {}\n        config: trap\n",
        env!("FACTORIO_ISR_WASM_ECHO_MONITOR")
    );
    std::fs::write(&config_path, config(&trapping, "")).unwrap();
    let (status, body) = http_call(port, "POST", "/api/servers/prod/reload", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["monitors"]["result"], "swapped", "{body}");
    let (status, _) = http_call(port, "GET", "/api/servers/prod/compare", None);
    assert_eq!(status, 404, "the candidate stopped with its entry");
    let mut n = 10;
    wait_for("the automatic rollback", || {
        say(&format!("P{n}"), "hello");
        n += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
        raised(&jsonl)
            .iter()
            .any(|k| k.starts_with("auto-rollback:monitors:"))
    });
    let (_, view) = http_call(port, "GET", "/api/servers/prod", None);
    assert_eq!(
        view["monitor_versions"]["pinned"], "auto_rolled_back",
        "{view}"
    );
    say("P99", "grief");
    wait_for("the monitor before the trapping one", || {
        raised(&jsonl).last().map(String::as_str) == Some("word:P99")
    });
    let (_, metrics) = isr.get("/metrics").unwrap();
    assert!(
        metrics.contains(
            "factorio_isr_plugin_reloads_total{result=\"monitors_auto_rolled_back\",server=\"prod\"} 1"
        ),
        "{metrics}"
    );
    let live = view["monitor_versions"]["live"].clone();

    // A restart keeps the version rolled back to, though servers.yml names the trapping one.
    assert!(isr.stop().success());
    let isr = start();
    let (_, view) = http_call(port, "GET", "/api/servers/prod", None);
    assert_eq!(view["monitor_versions"]["live"], live, "{view}");
    assert_eq!(
        view["monitor_versions"]["pinned"], "auto_rolled_back",
        "{view}"
    );
    say("P100", "grief");
    wait_for("the kept monitor after the restart", || {
        raised(&jsonl).last().map(String::as_str) == Some("word:P100")
    });
    assert!(isr.stop().success());
}

#[test]
fn monitors_can_be_added_to_a_server_that_started_without() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&log, "").unwrap();
    let config = |monitors: &str| {
        format!(
            "servers:\n  prod:\n    log_path: {}\n    monitors: {monitors}\n    sinks:\n      - jsonl: {}\n",
            log.display(),
            jsonl.display()
        )
    };
    let port = free_port();
    let isr = start(port, dir.path(), &config("[]"));
    let say = |n: usize| {
        append(
            &log,
            &format!("2026-01-01 10:00:00 [CHAT] P{n}: grief {n}\n"),
        );
    };
    say(0);
    wait_for("the chat event", || {
        std::fs::read_to_string(&jsonl).is_ok_and(|t| t.contains("grief 0"))
    });
    std::fs::write(
        dir.path().join("servers.yml"),
        config("[{plugin: chat-guard, config: {words: [grief]}}]"),
    )
    .unwrap();
    let (status, body) = http_call(port, "POST", "/api/servers/prod/reload", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["monitors"]["result"], "swapped", "{body}");
    say(1);
    wait_for("the new monitor's alert", || !raised(&jsonl).is_empty());
    assert_eq!(
        raised(&jsonl),
        ["word:P1"],
        "the line before the swap is not judged"
    );
    assert!(isr.stop().success());
}

#[test]
fn a_reload_reads_servers_yml_once_for_every_slot_and_candidate() {
    let (dir, log, jsonl, pats) = server_files();
    let config = format!(
        "servers:\n  prod:\n    log_path: {}\n    parsers:\n      - plugin: patterns\n        config: {{dir: {}}}\n    \
         monitors:\n      - plugin: chat-guard\n    \
         shadow:\n      parsers:\n        - plugin: patterns\n      monitors:\n        - plugin: chat-guard\n    \
         sinks:\n      - jsonl: {}\n",
        log.display(),
        pats.display(),
        jsonl.display()
    );
    let port = free_port();
    let isr = start(port, dir.path(), &config);
    wait_for("ready", || isr.get("/ready").is_some_and(|(s, _)| s == 200));
    let reads = || -> u64 {
        let (_, metrics) = isr.get("/metrics").unwrap();
        metrics
            .lines()
            .find(|l| l.starts_with("factorio_isr_config_reads_total{result=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let before = reads();
    let (status, body) = http_call(port, "POST", "/api/servers/prod/reload", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["parsers"]["result"], "unchanged", "{body}");
    assert_eq!(body["monitors"]["result"], "unchanged", "{body}");
    // Parsers, monitors and both candidates, all from one reading of the file (they were
    // four, on the async threads, each free to see a different file).
    assert_eq!(reads() - before, 1);
    assert!(isr.stop().success());
}
