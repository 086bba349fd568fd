//! `factorio-isr run` end to end: the real binary, real files, real HTTP requests.
//! Timeouts here are hang guards only; nothing asserts how fast things happen.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn every_event_exactly_once_across_rotations_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    append(&log, "2026-01-01 09:00:00 [CHAT] Old: before we started\n");
    let cfg = config(&log, &jsonl);
    let isr = Isr::start_ready(dir.path(), &cfg);

    let mut next = 0;
    let mut write = |n: usize| {
        for _ in 0..n {
            append(&log, &chat(next));
            next += 1;
        }
        next
    };
    let upto = write(50);
    wait_for("50 events", || delivered(&jsonl).len() == upto);
    // Rename-and-create rotation, with lines written to both files around it.
    std::fs::rename(&log, dir.path().join("console.log.1")).unwrap();
    append(&dir.path().join("console.log.1"), &chat(next));
    next += 1;
    let mut write = |n: usize| {
        for _ in 0..n {
            append(&log, &chat(next));
            next += 1;
        }
        next
    };
    let upto = write(50);
    wait_for("events after rename rotation", || {
        delivered(&jsonl).len() == upto
    });
    // Copy-truncate rotation.
    std::fs::copy(&log, dir.path().join("console.log.2")).unwrap();
    std::fs::File::create(&log).unwrap();
    let upto = write(50);
    wait_for("events after copy-truncate", || {
        delivered(&jsonl).len() == upto
    });
    assert!(isr.stop().success());

    // Lines written while stopped are read on restart, from the checkpoint.
    write(20);
    let isr = Isr::start(dir.path(), &cfg);
    isr.wait_started();
    let upto = write(30);
    wait_for("events after restart", || delivered(&jsonl).len() == upto);
    assert!(isr.stop().success());

    let seen = delivered(&jsonl);
    assert!(
        !seen.contains_key("before we started"),
        "the first start reads from the end"
    );
    for i in 0..upto {
        assert_eq!(seen.get(&format!("msg-{i}")), Some(&1), "msg-{i}");
    }
}

#[test]
fn after_kill_9_nothing_is_lost_and_at_most_one_batch_is_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    append(&log, "");
    let cfg = config(&log, &jsonl);
    let isr = Isr::start_ready(dir.path(), &cfg);
    let total = 3000;
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..total {
                append(&log, &chat(i));
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
    };
    wait_for("some events", || delivered(&jsonl).len() > 200);
    isr.kill9();
    writer.join().unwrap();
    let isr = Isr::start(dir.path(), &cfg);
    isr.wait_started();
    wait_for("every event", || delivered(&jsonl).len() == total);
    assert!(isr.stop().success());
    let seen = delivered(&jsonl);
    let repeated = seen.values().filter(|&&n| n > 1).count();
    assert!(seen.values().all(|&n| n <= 2));
    assert!(
        repeated <= 1024,
        "{repeated} events repeated: more than one batch"
    );
}

#[test]
fn ready_names_each_component_and_metrics_count_events() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let late = dir.path().join("late").join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    append(&log, "");
    let cfg = format!(
        "{}  other:\n    log_path: {}\n    sinks: [console]\n",
        config(&log, &jsonl),
        late.display()
    );
    let isr = Isr::start(dir.path(), &cfg);
    isr.wait_started();
    assert_eq!(isr.get("/healthz").unwrap().0, 200);
    let (status, body) = isr.get("/health").unwrap();
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        health,
        serde_json::json!({"status": "healthy", "service": "factorio-isr"})
    );

    // The other server's log (and its folder) does not exist yet: not ready, and it says why.
    wait_for("the prod tailer", || {
        isr.get("/ready")
            .unwrap()
            .1
            .contains(r#""name":"tailer:prod","state":"ready""#)
    });
    let (status, body) = isr.get("/ready").unwrap();
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    let other = ready["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tailer:other")
        .unwrap()
        .clone();
    assert_eq!(other["state"], "starting");
    assert!(
        other["detail"].as_str().unwrap().contains("waiting for"),
        "{other}"
    );

    std::fs::create_dir_all(late.parent().unwrap()).unwrap();
    append(&late, "");
    wait_for("ready", || isr.get("/ready").is_some_and(|(s, _)| s == 200));

    append(&log, &chat(1));
    append(&log, "2026-01-01 10:00:00 [JOIN] Bob joined the game\n");
    wait_for("two events", || {
        delivered(&jsonl).len() == 1
            && std::fs::read_to_string(&jsonl).unwrap().lines().count() == 2
    });
    wait_for("metrics", || {
        isr.get("/metrics")
            .unwrap()
            .1
            .contains(r#"factorio_isr_events_processed_total{event_type="join",server="prod"} 1"#)
    });
    let metrics = isr.get("/metrics").unwrap().1;
    for name in [
        "factorio_isr_uptime_seconds",
        r#"factorio_isr_component_status{component="tailer:prod"} 1"#,
        r#"factorio_isr_events_processed_total{event_type="chat",server="prod"} 1"#,
        r#"factorio_isr_lines_read_total{server="prod"} 2"#,
        r#"factorio_isr_plugin_calls_total{plugin="patterns",server="prod"}"#,
        "factorio_isr_plugin_call_seconds_bucket",
        "factorio_isr_sink_delivery_seconds_bucket",
        r#"factorio_isr_checkpoint_lag_bytes{server="prod"} 0"#,
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    assert!(isr.stop().success());
}

#[test]
fn a_trapping_parser_and_a_failing_sink_are_visible_and_nothing_else_stops() {
    let dir = tempfile::tempdir().unwrap();
    let bad_log = dir.path().join("bad.log");
    let good_log = dir.path().join("good.log");
    let jsonl = dir.path().join("events.jsonl");
    append(&bad_log, "");
    append(&good_log, "");
    let nowhere = dir.path().join("no-such-dir").join("events.jsonl");
    let cfg = servers_yml(&[
        server("bad")
            .log(&bad_log)
            .parser(env!("FACTORIO_ISR_WASM_MISBEHAVE"), None)
            .jsonl(&nowhere),
        server("good").log(&good_log).jsonl(&jsonl),
    ]);
    let isr = Isr::start_ready(dir.path(), &cfg);
    append(&bad_log, "PANIC\n");
    wait_for("the trap to be counted", || {
        isr.get("/metrics")
            .unwrap()
            .1
            .contains(r#"factorio_isr_plugin_traps_total{kind="trap",plugin="#)
    });
    append(&bad_log, "fine line\n");
    wait_for("the sink failure to be counted", || {
        isr.get("/metrics").unwrap().1.contains(
            r#"factorio_isr_errors_total{component="sink:bad:jsonl",error_type="delivery"}"#,
        )
    });
    append(&good_log, &chat(7));
    wait_for("the good server's event", || {
        delivered(&jsonl).contains_key("msg-7")
    });
    let (_, body) = isr.get("/ready").unwrap();
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    let find = |name: &str| {
        ready["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("sink:bad:jsonl")["state"], "degraded");
    assert!(find("sink:bad:jsonl")["errors"].as_u64().unwrap() >= 1);
    let parser = ready["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("parser:bad:"))
        .cloned()
        .unwrap();
    assert_eq!(parser["state"], "degraded");
    assert_eq!(find("sink:good:jsonl")["state"], "ready");
    assert!(isr.stop().success());
}

#[test]
fn a_port_in_use_is_reported_and_the_pipelines_keep_running() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    append(&log, "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let isr = Isr::start_on(dir.path(), &config(&log, &jsonl), port);
    wait_for("the error", || isr.log().contains("already in use"));
    wait_for("the pipeline", || isr.log().contains("started"));
    // The tailer starts at the end of the log; give it a line that must be read, repeatedly,
    // until it shows (the first may land before the tailer opened the file).
    let mut i = 0;
    wait_for("an event", || {
        i += 1;
        append(&log, &chat(i));
        std::thread::sleep(Duration::from_millis(50));
        !delivered(&jsonl).is_empty()
    });
    wait_for("the event", || delivered(&jsonl).contains_key("msg-1"));
    drop(taken);
    assert!(isr.stop().success());
}

#[test]
fn a_config_with_a_wrong_value_fails_to_start_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .arg("run")
        .arg("--config")
        .arg({
            let p = dir.path().join("servers.yml");
            std::fs::write(
                &p,
                "servers:\n  prod:\n    log_path: /x\n    ups_warning_threshold: lots\n",
            )
            .unwrap();
            p
        })
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("servers.yml:4: servers.prod.ups_warning_threshold: invalid type"),
        "{err}"
    );
}

#[test]
fn a_key_with_a_typo_starts_with_a_warning_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    std::fs::write(&log, "").unwrap();
    let isr = Isr::start(
        dir.path(),
        &format!(
            "servers:\n  prod:\n    log_path: {}\n    ups_warning_treshold: 40\n",
            log.display()
        ),
    );
    isr.wait_started();
    let said = isr.log();
    assert!(
        said.contains(
            "servers.yml:4: servers.prod: `ups_warning_treshold` is not a known key and is not read"
        ) && said.contains("did you mean `ups_warning_threshold`?"),
        "{said}"
    );
    assert!(isr.stop().success());
}

#[test]
fn an_unreadable_log_is_down_in_ready_and_health_while_other_servers_work() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    let unreadable = dir.path().join("a-directory.log");
    std::fs::create_dir(&unreadable).unwrap();
    append(&log, "");
    let cfg = format!(
        "{}  broken:\n    log_path: {}\n",
        config(&log, &jsonl),
        unreadable.display()
    );
    let isr = Isr::start(dir.path(), &cfg);
    isr.wait_started();
    wait_for("the broken tailer to be down", || {
        isr.get("/ready")
            .is_some_and(|(_, b)| b.contains(r#""name":"tailer:broken","state":"down""#))
    });
    let (status, body) = isr.get("/ready").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("cannot read"), "{body}");
    let (status, body) = isr.get("/health").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("degraded"), "{body}");
    let mut i = 0;
    wait_for("the healthy server's events", || {
        i += 1;
        append(&log, &chat(i));
        std::thread::sleep(Duration::from_millis(50));
        !delivered(&jsonl).is_empty()
    });
    assert!(isr.stop().success());
}

#[test]
fn rcon_readings_reach_the_api_metrics_and_readiness_and_follow_the_server_down_and_up() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    std::fs::write(&log, "").unwrap();
    let password = "pa55-w0rd-never-shown";
    let sim = SimProcess::start(0, password, &log);
    let config = format!(
        "servers:\n  prod:\n    name: Production\n    log_path: {}\n    rcon_host: 127.0.0.1\n    \
         rcon_port: {}\n    rcon_password: {password}\n    metrics_interval: 1\n",
        log.display(),
        sim.port
    );
    std::fs::write(dir.path().join("servers.yml"), &config).unwrap();
    let joined = SimProcess::rcon(&dir.path().join("servers.yml"), "/sim join Alice");
    assert!(joined.status.success(), "{joined:?}");

    let isr = Isr::start_ready(dir.path(), &config);
    let (_, ready) = isr.get("/ready").unwrap();
    assert!(ready.contains("\"rcon:prod\""), "{ready}");
    wait_for("a reading with a rate", || {
        isr.get("/api/servers/prod")
            .is_some_and(|(s, b)| s == 200 && b.contains("\"ups\":") && !b.contains("\"ups\":null"))
    });
    let (_, body) = isr.get("/api/servers/prod").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], "Production");
    assert_eq!(v["rcon"]["state"], "up");
    assert_eq!(v["reading"]["players"], serde_json::json!(["Alice"]));
    assert_eq!(v["reading"]["evolution"].as_array().unwrap().len(), 3);
    let (_, all) = isr.get("/api/servers").unwrap();
    assert!(all.contains("\"tag\":\"prod\""), "{all}");
    let (status, body) = isr.get("/api/servers/nope").unwrap();
    assert_eq!(status, 404, "{body}");

    let (_, metrics) = isr.get("/metrics").unwrap();
    for needle in [
        "factorio_isr_rcon_up{server=\"prod\"} 1",
        "factorio_isr_players_online{server=\"prod\"} 1",
        "factorio_isr_evolution{server=\"prod\",surface=\"gleba\"}",
        "factorio_isr_ups{server=\"prod\"}",
        "factorio_isr_rcon_command_latency_seconds_count{server=\"prod\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }

    // The game server goes away: readiness and health say so, the rest keeps running.
    let port = sim.port;
    drop(sim);
    wait_for("RCON down in /ready", || {
        isr.get("/ready")
            .is_some_and(|(s, b)| s == 503 && b.contains("\"rcon:prod\"") && b.contains("down"))
    });
    let (status, health) = isr.get("/health").unwrap();
    assert_eq!(status, 503, "{health}");
    let (_, body) = isr.get("/api/servers/prod").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rcon"]["state"], "down", "{body}");

    // It comes back on the same port: the link is re-established by itself.
    let _sim = SimProcess::start(port, password, &log);
    wait_for("ready again", || {
        isr.get("/ready").is_some_and(|(s, _)| s == 200)
    });
    let (_, metrics) = isr.get("/metrics").unwrap();
    assert!(
        metrics.contains("factorio_isr_rcon_reconnects_total{server=\"prod\"} 1"),
        "{metrics}"
    );

    let everything = format!(
        "{}{}{}",
        isr.log(),
        isr.get("/api/servers").unwrap().1,
        isr.get("/ready").unwrap().1
    );
    assert!(!everything.contains(password), "the password leaked");
    assert!(isr.stop().success());
}

#[test]
fn the_rcon_and_status_commands_talk_to_a_server_and_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let password = "cli-pa55";
    let sim = SimProcess::start(0, password, &log);
    let config = dir.path().join("servers.yml");
    let write = |pw: &str, port: u16| {
        std::fs::write(
            &config,
            format!(
                "servers:\n  prod:\n    rcon_host: 127.0.0.1\n    rcon_port: {port}\n    rcon_password: {pw}\n"
            ),
        )
        .unwrap()
    };
    write(password, sim.port);
    let out = SimProcess::rcon(&config, "/sim join Bob");
    assert!(out.status.success(), "{out:?}");
    let out = SimProcess::rcon(&config, "/players online");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Online players (1):\n  Bob\n"
    );

    let status = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(["status", "--config"])
        .arg(&config)
        .args(["--window", "0.5"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{status:?}");
    for needle in [
        "prod",
        "🟢 connected",
        "UPS",
        "SMA",
        "Evolution  nauvis",
        "Players    1: Bob",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }

    // A wrong password, and a port where nothing listens: non-zero, clear, no secret shown.
    write("wrong-pa55", sim.port);
    let out = SimProcess::rcon(&config, "/version");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        !err.contains("wrong-pa55") && !err.contains(password),
        "{err}"
    );
    write(password, free_port());
    let out = SimProcess::rcon(&config, "/version");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cannot connect"), "{err}");
    let status = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains("🔴 down"));
}

#[test]
fn a_sink_that_hangs_delays_only_its_own_server_and_shows_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (hole, held) = black_hole();
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let jsonl = dir.path().join("b.jsonl");
    append(&log_a, "");
    append(&log_b, "");
    let cfg = servers_yml(&[
        server("stuck")
            .log(&log_a)
            .webhook(&format!("http://{hole}/api/webhooks/1/x")),
        server("fine").log(&log_b).jsonl(&jsonl),
    ]);
    let isr = Isr::start_ready(dir.path(), &cfg);
    append(&log_a, &chat(0));
    wait_for("the stuck sink to be called", || {
        !held.lock().unwrap().is_empty()
    });
    for i in 1..=20 {
        append(&log_b, &chat(i));
    }
    wait_for("every event of the other server", || {
        delivered(&jsonl).len() == 20
    });
    wait_for("the hung delivery to time out and be counted", || {
        isr.get("/metrics").is_some_and(|(_, m)| {
            m.lines().any(|l| {
                l.starts_with("factorio_isr_errors_total{component=\"sink:stuck:webhook\"")
            })
        })
    });
    let (_, ready) = isr.get("/ready").unwrap();
    assert!(ready.contains("sink:stuck:webhook"), "{ready}");
    // The hung sink cannot finish: its pipeline is left to the drain timeout.
    assert!(isr.stop_with_stragglers().success());
}

#[test]
fn a_log_folder_that_does_not_exist_yet_is_waited_for_and_then_followed() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("not-yet");
    let log = folder.join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    let isr = Isr::start(dir.path(), &config(&log, &jsonl));
    isr.wait_started();
    let (status, ready) = isr.get("/ready").unwrap();
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("\"tailer:prod\""), "{ready}");
    assert!(isr.get("/healthz").is_some_and(|(s, _)| s == 200));
    std::fs::create_dir(&folder).unwrap();
    append(&log, &chat(1));
    wait_for("the event of the new file", || delivered(&jsonl).len() == 1);
    wait_for("the tailer to be ready", || {
        isr.get("/ready").is_some_and(|(s, _)| s == 200)
    });
    assert!(isr.stop().success());
}

#[test]
fn requests_whose_headers_never_end_are_closed_and_do_not_crowd_out_others() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    append(&log, "");
    let isr = Isr::start_ready(dir.path(), &config(&log, &dir.path().join("e.jsonl")));
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", isr.port)).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        held.push(s);
    }
    assert!(isr.get("/healthz").is_some(), "others are still answered");
    // A head far over 64 KiB is refused, not buffered.
    let mut big = std::net::TcpStream::connect(("127.0.0.1", isr.port)).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = big.write_all(
        format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "y".repeat(200 << 10)
        )
        .as_bytes(),
    );
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(isr.get("/healthz").is_some());
    // Each half-sent request is closed once its headers are overdue (10 s).
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = [0u8; 256];
        let closed = match s.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(closed, "a half-sent request was held");
    }
    assert!(isr.stop().success());
}
