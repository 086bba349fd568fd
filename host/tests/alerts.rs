//! Monitors and alerts end to end: the real binary against the fake Factorio server as its
//! own process, alerts read back from a JSON-lines sink and the HTTP API. Timeouts are hang
//! guards only.

mod common;

use std::path::Path;
use std::time::Instant;

use common::*;

/// The alerts and reports in the JSONL sink, in order: (kind, source, key, text).
fn notices(jsonl: &Path) -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string(jsonl).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            let kind = v["kind"].as_str().unwrap_or_default();
            kind.starts_with("alert") || kind == "stats"
        })
        .map(|v| {
            let s = |p: &str| {
                v.pointer(p)
                    .and_then(|x| x.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                s("/kind"),
                s("/fields/source"),
                s("/fields/key"),
                s("/text"),
            )
        })
        .collect()
}

fn alerts_of(jsonl: &Path, source: &str) -> Vec<String> {
    notices(jsonl)
        .into_iter()
        .filter(|(kind, s, _, _)| kind != "stats" && s == source)
        .map(|(kind, _, _, _)| kind)
        .collect()
}

fn sim(config: &Path, command: &str) {
    let out = SimProcess::rcon(config, command);
    assert!(out.status.success(), "{command}: {out:?}");
}

fn api(isr: &Isr) -> serde_json::Value {
    let (status, body) = isr.get("/api/servers/prod").unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn low_ups_paused_and_recovered_give_exactly_the_expected_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&log, "").unwrap();
    let sim_process = SimProcess::start(0, "pw", &log);
    let echo = env!("FACTORIO_ISR_WASM_ECHO_MONITOR");
    let config = format!(
        "servers:\n  prod:\n    name: Production\n    log_path: {log}\n    rcon_host: 127.0.0.1\n    \
         rcon_port: {port}\n    rcon_password: pw\n    metrics_interval: 1\n    alert_check_interval: 1\n    \
         alert_samples_required: 2\n    alert_cooldown: 0\n    stats_interval: 2\n    \
         monitors:\n      - plugin: ups-alert\n        config: {{judge: raw}}\n      \
         - plugin: {echo}\n        config: trap\n    sinks:\n      - jsonl: {jsonl}\n",
        log = log.display(),
        port = sim_process.port,
        jsonl = jsonl.display(),
    );
    let config_path = dir.path().join("servers.yml");
    std::fs::write(&config_path, &config).unwrap();
    sim(&config_path, "/sim join Alice");
    let isr = Isr::start_ready(dir.path(), &config);

    wait_for("a stats report", || {
        notices(&jsonl)
            .iter()
            .any(|(k, _, _, t)| k == "stats" && t.contains("UPS") && t.contains("Alice"))
    });
    assert!(alerts_of(&jsonl, "ups-alert").is_empty());

    sim(&config_path, "/sim ups 20");
    wait_for("the low-UPS warning", || {
        alerts_of(&jsonl, "ups-alert") == ["alert"]
    });
    let v = api(&isr);
    let open: Vec<_> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(open, ["ups-low"], "{v}");

    // A pause withdraws the warning without a message.
    sim(&config_path, "/sim pause");
    wait_for("the warning withdrawn", || {
        api(&isr)["alerts"].as_array().is_some_and(|a| a.is_empty())
    });
    assert_eq!(alerts_of(&jsonl, "ups-alert"), ["alert"]);

    // Still slow after the pause: warned again (no cooldown here); then recovered, once.
    sim(&config_path, "/sim resume");
    wait_for("the second warning", || {
        alerts_of(&jsonl, "ups-alert") == ["alert", "alert"]
    });
    sim(&config_path, "/sim ups 60");
    wait_for("the recovery", || {
        alerts_of(&jsonl, "ups-alert") == ["alert", "alert", "alert-resolved"]
    });
    let resolved = notices(&jsonl)
        .into_iter()
        .rfind(|(k, _, _, _)| k == "alert-resolved")
        .unwrap();
    assert!(
        resolved
            .3
            .starts_with("**UPS recovered** on **Production** (`prod`): UPS is back to"),
        "{resolved:?}"
    );

    // The monitor that traps on every call was contained and counted, and shows in the API.
    let (_, metrics) = isr.get("/metrics").unwrap();
    let traps = format!(
        "factorio_isr_plugin_traps_total{{kind=\"trap\",plugin=\"{echo}\",server=\"prod\"}}"
    );
    assert!(metrics.contains(&traps), "{traps} missing from\n{metrics}");
    assert!(
        metrics.contains(
            "factorio_isr_alerts_total{change=\"raised\",server=\"prod\",source=\"ups-alert\"} 2"
        ),
        "{metrics}"
    );
    let plugins = api(&isr)["plugins"].clone();
    let echo_status = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plugin"] == echo)
        .unwrap()
        .clone();
    assert!(echo_status["faults"].as_u64().unwrap() > 0, "{plugins}");
    assert_eq!(echo_status["calls"], 0, "{plugins}");
    let ups_status = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plugin"] == "ups-alert")
        .unwrap()
        .clone();
    assert!(ups_status["calls"].as_u64().unwrap() > 5, "{plugins}");
    assert_eq!(ups_status["faults"], 0, "{plugins}");
    assert!(isr.stop().success());
}

#[test]
fn rcon_lost_and_reconnected_are_each_told_once_with_the_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&log, "").unwrap();
    let sim_process = SimProcess::start(0, "pw", &log);
    let port = sim_process.port;
    let config = format!(
        "servers:\n  prod:\n    log_path: {}\n    rcon_host: 127.0.0.1\n    rcon_port: {port}\n    \
         rcon_password: pw\n    metrics_interval: 1\n    enable_stats_collector: false\n    \
         rcon_status_alert_hold: 1\n    sinks:\n      - jsonl: {}\n",
        log.display(),
        jsonl.display()
    );
    let isr = Isr::start_ready(dir.path(), &config);

    drop(sim_process);
    let went_down = Instant::now();
    wait_for("connection lost", || alerts_of(&jsonl, "rcon") == ["alert"]);
    let lost = notices(&jsonl)
        .into_iter()
        .find(|(_, s, _, _)| s == "rcon")
        .unwrap();
    assert!(lost.3.contains("RCON connection lost"), "{lost:?}");
    // Keep it down a few seconds more, then bring it back on the same port.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _back = SimProcess::start(port, "pw", &log);
    wait_for("reconnected", || {
        alerts_of(&jsonl, "rcon") == ["alert", "alert-resolved"]
    });
    let at_most = went_down.elapsed().as_secs();

    let line = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["kind"] == "alert-resolved")
        .unwrap();
    let down: u64 = line["fields"]["down_secs"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (3..=at_most).contains(&down),
        "down {down} s, expected 3..={at_most}: {line}"
    );
    assert!(
        line["text"].as_str().unwrap().contains("reconnected after"),
        "{line}"
    );
    // Nothing more about RCON while it stays up.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(alerts_of(&jsonl, "rcon"), ["alert", "alert-resolved"]);
    assert!(isr.stop().success());
}

#[test]
fn a_peer_that_authenticates_and_never_answers_is_down_with_one_alert_not_a_flood() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&log, "").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(factorio_isr::sim::Sim::start(
            factorio_isr::sim::SimOptions {
                password: "pw".into(),
                ..Default::default()
            },
        ))
        .unwrap();
    sim.set_fault(factorio_isr::sim::Fault::Silent);
    let config = format!(
        "servers:\n  prod:\n    log_path: {}\n    rcon_host: 127.0.0.1\n    rcon_port: {}\n    \
         rcon_password: pw\n    rcon_timeout: 1\n    metrics_interval: 1\n    \
         enable_stats_collector: false\n    rcon_status_alert_hold: 1\n    \
         sinks:\n      - jsonl: {}\n",
        log.display(),
        sim.rcon_addr().port(),
        jsonl.display()
    );
    let isr = Isr::start_with_env(dir.path(), &config, free_port(), &[]);
    isr.wait_started();
    let (mut up, mut ready) = (false, false);
    wait_for("five attempts", || {
        let metrics = isr.get("/metrics").map(|(_, b)| b).unwrap_or_default();
        up |= metrics.contains("rcon_up{server=\"prod\"} 1");
        ready |= isr.get("/ready").is_some_and(|(s, _)| s == 200);
        sim.connections() >= 5
    });
    assert!(!up, "rcon_up was 1 for a peer that never answered");
    assert!(!ready, "/ready was ready while RCON never worked");
    let rcon = api(&isr)["rcon"].clone();
    assert_eq!(rcon["state"], "down", "{rcon}");
    assert!(rcon["failures"].as_u64() >= Some(4), "{rcon}");
    // One alert for the whole time, saying what is wrong.
    assert_eq!(alerts_of(&jsonl, "rcon"), ["alert"]);
    let (_, _, _, text) = notices(&jsonl)
        .into_iter()
        .find(|(_, s, _, _)| s == "rcon")
        .unwrap();
    assert!(
        text.contains("RCON unreachable") && text.contains("first command (/version)"),
        "{text}"
    );
    assert!(isr.stop().success());
}

#[test]
fn a_monitor_swapped_in_by_a_reload_continues_from_the_state_of_the_one_it_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    std::fs::write(&log, "").unwrap();
    let sim_process = SimProcess::start(0, "pw", &log);
    let echo = env!("FACTORIO_ISR_WASM_ECHO_MONITOR");
    let config = |variant: &str| {
        format!(
            "servers:\n  prod:\n    log_path: {}\n    rcon_host: 127.0.0.1\n    rcon_port: {}\n    rcon_password: pw\n    \
             metrics_interval: 1\n    alert_check_interval: 1\n    enable_stats_collector: false\n    \
             monitors:\n      - plugin: {echo}\n        config: {variant}\n    sinks:\n      - jsonl: {}\n",
            log.display(),
            sim_process.port,
            dir.path().join("events.jsonl").display()
        )
    };
    let token = "monitor-swap-token";
    let port = free_port();
    let isr = Isr::start_with_env(
        dir.path(),
        &config("first"),
        port,
        &[("FACTORIO_ISR_API_TOKEN", token)],
    );
    isr.wait_started();
    let samples_seen = || -> u64 {
        let v = api(&isr);
        v["alerts"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["key"] == "samples"))
            .and_then(|a| a["text"].as_str()?.parse().ok())
            .unwrap_or(0)
    };
    wait_for("three samples", || samples_seen() >= 3);
    let before_version = api(&isr)["monitor_versions"]["live"]
        .as_str()
        .unwrap()
        .to_owned();

    std::fs::write(dir.path().join("servers.yml"), config("second")).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    write!(s, "POST /api/servers/prod/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    wait_for("the new monitors", || {
        api(&isr)["monitor_versions"]["live"].as_str() != Some(before_version.as_str())
    });
    let at_swap = samples_seen();
    // The new instance counts on from the old one's state instead of starting at 1.
    wait_for("a sample counted by the new monitor", || {
        samples_seen() > at_swap
    });
    assert!(samples_seen() > 3, "the count restarted");
    let (_, metrics) = isr.get("/metrics").unwrap();
    assert!(
        metrics.contains(
            "factorio_isr_plugin_reloads_total{result=\"monitors_swapped\",server=\"prod\"} 1"
        ),
        "{metrics}"
    );
    assert!(isr.stop().success());
}
