//! The tailer and the state folder under faults, against the real binary: a FIFO, a device
//! and a link out of the log's folder at `log_path`; kill -9 during a catch-up behind a slow
//! sink; SIGTERM with a sink that never answers; damaged checkpoints; a state folder that
//! cannot be written. Every time: nothing hangs, nothing is silently lost, at most one
//! batch is repeated, and what went wrong is seen in `/ready`, `/metrics` and the log.
//! Timeouts are hang guards.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Lines per batch (the tailer's default): the most a crash may repeat.
const BATCH: usize = 1024;

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Every chat message in a JSONL sink with how often it appears; a line torn by a kill -9
/// in the middle of a write is skipped.
fn messages(jsonl: &Path) -> std::collections::HashMap<String, usize> {
    let mut seen = std::collections::HashMap::new();
    for line in std::fs::read_to_string(jsonl).unwrap_or_default().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(m) = v["message"].as_str() {
            *seen.entry(m.to_owned()).or_insert(0) += 1;
        }
    }
    seen
}

fn lines(from: usize, to: usize) -> String {
    (from..to).map(chat).collect()
}

fn check(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .env(
            "FACTORIO_ISR_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("run-plugin-cache"),
        )
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

fn state_of(isr: &Isr, component: &str) -> (String, String) {
    let c = isr.component(component).unwrap_or_default();
    (
        c["state"].as_str().unwrap_or("").to_owned(),
        c["detail"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn a_fifo_and_a_device_are_refused_while_another_server_delivers_and_sigterm_exits() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.log");
    mkfifo(&fifo);
    let fine = dir.path().join("fine.log");
    append(&fine, "");
    let (pipe_out, zero_out, fine_out) = (
        dir.path().join("pipe.jsonl"),
        dir.path().join("zero.jsonl"),
        dir.path().join("fine.jsonl"),
    );
    let cfg = servers_yml(&[
        server("pipe").log(&fifo).jsonl(&pipe_out),
        server("zero").log(Path::new("/dev/zero")).jsonl(&zero_out),
        server("fine").log(&fine).jsonl(&fine_out),
    ]);
    let isr = Isr::start(dir.path(), &cfg);
    isr.wait_started();
    wait_for("both refused in /ready", || {
        let (pipe, why_pipe) = state_of(&isr, "tailer:pipe");
        let (zero, why_zero) = state_of(&isr, "tailer:zero");
        pipe == "down" && why_pipe.contains("FIFO") && zero == "down" && why_zero.contains("device")
    });
    append(&fine, &lines(0, 50));
    wait_for("the healthy server's events", || {
        messages(&fine_out).len() == 50
    });
    assert!(isr.get("/healthz").is_some(), "HTTP keeps answering");
    assert!(!zero_out.exists(), "nothing is read from /dev/zero");

    // A regular file in the FIFO's place is followed, from its beginning.
    std::fs::remove_file(&fifo).unwrap();
    append(&fifo, &chat(1000));
    wait_for("the file that replaced the FIFO", || {
        messages(&pipe_out).contains_key("msg-1000")
    });
    assert_eq!(state_of(&isr, "tailer:pipe").0, "ready");
    // Every task stops by itself (none is left to the drain timeout).
    assert!(isr.stop().success());

    std::fs::remove_file(&fifo).unwrap();
    mkfifo(&fifo);
    let (ok, said) = check(&dir.path().join("servers.yml"));
    assert!(!ok, "{said}");
    assert!(
        said.contains("error: server pipe: log") && said.contains("FIFO"),
        "{said}"
    );
    assert!(
        said.contains("error: server zero: log zero (/dev/zero)")
            && said.contains("character device"),
        "{said}"
    );
    assert!(
        said.contains(&format!("server fine: log fine ({}): ok", fine.display())),
        "{said}"
    );
}

#[test]
fn a_log_link_out_of_its_folder_is_refused_unless_that_folder_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, secret) = (dir.path().join("logs"), dir.path().join("secret"));
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(&secret).unwrap();
    let shadow = secret.join("shadow");
    std::fs::write(&shadow, lines(0, 3)).unwrap();
    let log = logs.join("console.log");
    std::os::unix::fs::symlink(&shadow, &log).unwrap();
    let jsonl = dir.path().join("events.jsonl");
    let cfg = config(&log, &jsonl);
    let isr = Isr::start(dir.path(), &cfg);
    isr.wait_started();
    wait_for("the link refused in /ready", || {
        let (state, why) = state_of(&isr, "tailer:prod");
        state == "down" && why.contains("log_links_within") && why.contains("shadow")
    });
    append(&shadow, &chat(3));
    std::thread::sleep(Duration::from_millis(300));
    assert!(messages(&jsonl).is_empty(), "nothing of the file is read");
    assert!(isr.stop().success());
    let (ok, said) = check(&dir.path().join("servers.yml"));
    assert!(!ok && said.contains("outside the folders"), "{said}");

    // Allowed: followed (from its end, as at any server's first start).
    let allowed = format!("{cfg}    log_links_within: [{}]\n", secret.display());
    let isr = Isr::start(dir.path(), &allowed);
    isr.wait_started();
    wait_for("the link followed", || {
        state_of(&isr, "tailer:prod").0 == "ready"
    });
    append(&shadow, &chat(4));
    wait_for("the linked file's new line", || {
        messages(&jsonl).contains_key("msg-4")
    });
    assert_eq!(messages(&jsonl).len(), 1);
    assert!(isr.stop().success());
    let (ok, said) = check(&dir.path().join("servers.yml"));
    assert!(ok && said.contains("a link to"), "{said}");
}

#[test]
fn kill_9_during_a_catch_up_behind_a_slow_sink_repeats_at_most_one_batch_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    append(&log, "");
    // Discord's pace: 50 ms a message.
    let (hook, _) = slow_webhook(Duration::from_millis(50));
    let cfg = format!("{}      - webhook: {hook}\n", config(&log, &jsonl));
    let mut isr = Isr::start_ready(dir.path(), &cfg);
    let total = 20_000;
    append(&log, &lines(0, total));
    let mut distinct = 0;
    for kill in 1..=3 {
        wait_for("progress since the last kill", || {
            messages(&jsonl).len() >= distinct + 1_500
        });
        isr.kill9();
        let seen = messages(&jsonl);
        let repeated: usize = seen.values().map(|n| n - 1).sum();
        assert!(
            repeated <= kill * BATCH,
            "{repeated} events posted twice after {kill} kill(s): more than a batch each"
        );
        distinct = seen.len();
        isr = Isr::start(dir.path(), &cfg);
        isr.wait_started();
    }
    wait_for("every event", || messages(&jsonl).len() == total);
    assert!(isr.stop().success());
    let seen = messages(&jsonl);
    for i in 0..total {
        assert!(seen.contains_key(&format!("msg-{i}")), "msg-{i} is lost");
    }
    let repeated: usize = seen.values().map(|n| n - 1).sum();
    assert!(repeated <= 3 * BATCH, "{repeated} repeated");
}

#[test]
fn sigterm_with_a_sink_that_never_answers_loses_nothing_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (hole, held) = black_hole();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    append(&log, "");
    let stuck = servers_yml(&[server("prod")
        .log(&log)
        .webhook(&format!("http://{hole}/api/webhooks/1/x"))]);
    let isr = Isr::start_ready(dir.path(), &stuck);
    wait_for("the lag to be known from the start", || {
        isr.get("/metrics").is_some_and(|(_, m)| {
            m.contains("factorio_isr_checkpoint_lag_bytes{server=\"prod\"} 0")
        })
    });
    let total = 3_000;
    append(&log, &lines(0, total));
    wait_for("the stuck sink to be called", || {
        !held.lock().unwrap().is_empty()
    });
    let said = isr.stderr_path();
    assert!(isr.stop_with_stragglers().success());
    let said = std::fs::read_to_string(said).unwrap();
    assert!(
        said.contains("not delivered yet") && said.contains("the next start reads them again"),
        "the shutdown says what is left:\n{said}"
    );

    let isr = Isr::start(dir.path(), &config(&log, &jsonl));
    isr.wait_started();
    wait_for("every line written before the stop", || {
        messages(&jsonl).len() == total
    });
    assert!(isr.stop().success());
}

/// Runs once (reading one line), stops, writes `msg-1`..`msg-100` while the host is down,
/// lets `damage` harm the state folder, and starts again with `extra` settings: the second
/// run's host, still running.
fn restart_after_damage(
    dir: &Path,
    extra: &str,
    damage: impl FnOnce(&Path),
) -> (Isr, std::path::PathBuf) {
    let log = dir.join("console.log");
    let jsonl = dir.join("events.jsonl");
    append(&log, "");
    let cfg = format!("{}{extra}", config(&log, &jsonl));
    let isr = Isr::start_ready(dir, &cfg);
    append(&log, &chat(0));
    wait_for("the first event", || messages(&jsonl).len() == 1);
    assert!(isr.stop().success());
    append(&log, &lines(1, 101));
    damage(&dir.join("state/checkpoints"));
    let isr = Isr::start(dir, &cfg);
    isr.wait_started();
    (isr, jsonl)
}

/// Something done to a checkpoint file.
type Harm = fn(&Path);

#[test]
fn a_damaged_checkpoint_never_loses_silently() {
    let forms: [(&str, Harm); 4] = [
        ("garbage", |p| {
            std::fs::write(p, b"\x00\xff{{not json").unwrap()
        }),
        ("truncated", |p| {
            let text = std::fs::read(p).unwrap();
            std::fs::write(p, &text[..text.len() / 2]).unwrap();
        }),
        ("empty", |p| std::fs::write(p, b"").unwrap()),
        ("a folder", |p| {
            std::fs::remove_file(p).unwrap();
            std::fs::create_dir_all(p.join("inside")).unwrap();
        }),
    ];
    for (form, harm) in forms {
        let dir = tempfile::tempdir().unwrap();
        let (isr, jsonl) = restart_after_damage(dir.path(), "", |state| {
            // No good one before it either.
            std::fs::remove_file(state.join("prod.checkpoint.prev.json")).unwrap();
            harm(&state.join("prod.checkpoint.json"));
        });
        wait_for("every line written while the host was down", || {
            (1..=100).all(|i| messages(&jsonl).contains_key(&format!("msg-{i}")))
        });
        assert!(
            isr.log().contains("ERROR") && isr.log().contains("the checkpoint is lost"),
            "{form}: logged as an error:\n{}",
            isr.log()
        );
        let (_, metrics) = isr.get("/metrics").unwrap();
        assert!(
            metrics.contains(
                "factorio_isr_errors_total{component=\"checkpoint:prod\",error_type=\"lost\"} 1"
            ),
            "{form}: counted"
        );
        if form == "a folder" {
            // Nothing can be saved over a folder: that shows, until someone fixes it.
            wait_for("the failing saves in /ready", || {
                let (state, why) = state_of(&isr, "checkpoint:prod");
                state == "degraded" && why.contains("cannot write the checkpoint state")
            });
        }
        assert!(isr.stop().success(), "{form}");
    }
}

#[test]
fn a_damaged_checkpoint_falls_back_to_the_one_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (isr, jsonl) = restart_after_damage(dir.path(), "", |state| {
        std::fs::write(state.join("prod.checkpoint.json"), "garbage").unwrap();
    });
    wait_for("every line written while the host was down", || {
        messages(&jsonl).len() == 101
    });
    assert!(
        isr.log().contains("resuming from the one before it"),
        "{}",
        isr.log()
    );
    assert!(isr.stop().success());
    let repeated: usize = messages(&jsonl).values().map(|n| n - 1).sum();
    assert!(repeated <= BATCH, "{repeated}");
}

#[test]
fn on_lost_checkpoint_end_skips_what_was_written_but_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "    on_lost_checkpoint: end\n";
    let (isr, jsonl) = restart_after_damage(dir.path(), extra, |state| {
        std::fs::remove_file(state.join("prod.checkpoint.prev.json")).unwrap();
        std::fs::write(state.join("prod.checkpoint.json"), "").unwrap();
    });
    append(&dir.path().join("console.log"), &chat(500));
    wait_for("the line written after the restart", || {
        messages(&jsonl).contains_key("msg-500")
    });
    assert!(!messages(&jsonl).contains_key("msg-50"));
    assert!(isr.log().contains("from its end"), "{}", isr.log());
    assert!(isr.stop().success());
}

#[test]
fn a_state_folder_that_cannot_be_written_is_degraded_and_an_api_write_is_an_error() {
    const TOKEN: &str = "test-admin-token";
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // Files where the folders should be: nothing can be written under them (even by root).
    std::fs::write(state.join("checkpoints"), "").unwrap();
    std::fs::write(state.join("versions"), "").unwrap();
    let patterns = dir.path().join("patterns");
    std::fs::create_dir_all(&patterns).unwrap();
    let chat_rule = |kind: &str| {
        format!(
            "events:\n  chat:\n    pattern: '\\[CHAT\\] (?P<player>\\w+): (?P<message>.+)$'\n    type: {kind}\n"
        )
    };
    std::fs::write(patterns.join("chat.yml"), chat_rule("chat")).unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    append(&log, "");
    let cfg = servers_yml(&[server("prod").log(&log).patterns(&patterns).jsonl(&jsonl)]);
    let port = free_port();
    let isr = Isr::start_with_env(dir.path(), &cfg, port, &[("FACTORIO_ISR_API_TOKEN", TOKEN)]);
    isr.wait_started();
    append(&log, &chat(1));
    wait_for("events still flow", || messages(&jsonl).len() == 1);
    wait_for("the failing checkpoint in /ready", || {
        let (s, why) = state_of(&isr, "checkpoint:prod");
        s == "degraded" && why.contains("cannot write the checkpoint state")
    });
    let (_, metrics) = isr.get("/metrics").unwrap();
    assert!(
        metrics.contains("factorio_isr_state_write_failures_total{what=\"checkpoint\"}"),
        "{metrics}"
    );

    // A new version, then a rollback: live at once, but it cannot be kept, so not 200.
    std::fs::write(patterns.join("chat.yml"), chat_rule("talk")).unwrap();
    let (status, body) = http_call(port, "POST", "/api/servers/prod/reload", Some(TOKEN));
    assert!(status == 200, "{body}");
    let (status, body) = http_call(port, "POST", "/api/servers/prod/rollback", Some(TOKEN));
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["result"], "rolled_back", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("could not be kept"),
        "{body}"
    );
    let (s, why) = state_of(&isr, "versions:prod");
    assert!(s == "degraded" && why.contains("versions"), "{s}: {why}");
    let (_, metrics) = isr.get("/metrics").unwrap();
    assert!(
        metrics.contains("factorio_isr_state_write_failures_total{what=\"versions\"} 1"),
        "{metrics}"
    );
    assert!(isr.stop().success());
}

#[test]
fn a_checkpoint_of_the_last_release_is_resumed_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    let before = lines(0, 10);
    append(&log, &before);
    append(&log, &lines(10, 20));
    // Exactly what the last release wrote after delivering msg-0..msg-9: the offset, and
    // `DefaultHasher`'s value of the first 256 bytes.
    let head = &before.as_bytes()[..256];
    let old = format!(
        r#"{{"offset":{},"fingerprint":{},"fingerprint_len":256}}"#,
        before.len(),
        factorio_isr::tail::legacy_hash(head)
    );
    let checkpoints = dir.path().join("state/checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    std::fs::write(checkpoints.join("prod.checkpoint.json"), old).unwrap();
    let isr = Isr::start(dir.path(), &config(&log, &jsonl));
    isr.wait_started();
    wait_for("the lines after the old checkpoint", || {
        messages(&jsonl).len() == 10
    });
    assert!(isr.stop().success());
    let seen = messages(&jsonl);
    assert!((10..20).all(|i| seen.contains_key(&format!("msg-{i}"))));
    let now = std::fs::read_to_string(checkpoints.join("prod.checkpoint.json")).unwrap();
    assert!(
        now.contains("\"version\":2") && now.contains("sha256"),
        "{now}"
    );
}

#[test]
fn a_running_servers_plugin_replaced_by_a_link_to_dev_zero_is_refused_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("monitor.wasm");
    std::fs::copy(env!("FACTORIO_ISR_WASM_ECHO_MONITOR"), &plugin).unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    append(&log, "");
    let cfg = servers_yml(&[server("prod")
        .log(&log)
        .monitor(&plugin.display().to_string(), None)
        .jsonl(&jsonl)]);
    let isr = Isr::start_ready(dir.path(), &cfg);
    // What a hostile or careless operator does: the watcher sees it and reloads.
    let tmp = dir.path().join("monitor.wasm.new");
    std::os::unix::fs::symlink("/dev/zero", &tmp).unwrap();
    std::fs::rename(&tmp, &plugin).unwrap();
    wait_for("the reload refused in /ready", || {
        isr.get("/ready")
            .is_some_and(|(_, body)| body.contains("character device"))
    });
    let (_, status) = isr.get("/api/servers/prod").unwrap();
    assert!(status.contains("monitor"), "{status}");
    let rss_kib = rss_kib(isr.pid());
    assert!(
        rss_kib < 512 << 10,
        "{rss_kib} KiB resident: /dev/zero was read"
    );
    append(&log, &chat(1));
    wait_for("events still flow", || {
        messages(&jsonl).contains_key("msg-1")
    });
    assert!(isr.stop().success());
}

#[test]
fn a_kept_version_whose_blob_became_a_link_to_dev_zero_is_refused_at_start_not_read() {
    const TOKEN: &str = "blob-token";
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    append(&log, "");
    let cfg = |words: &str| {
        let config = format!("{{words: [{words}]}}");
        servers_yml(&[server("prod")
            .log(&log)
            .monitor("chat-guard", Some(&config))
            .jsonl(&jsonl)])
    };
    let port = free_port();
    let start = |text: &str| {
        let isr = Isr::start_with_env(dir.path(), text, port, &[("FACTORIO_ISR_API_TOKEN", TOKEN)]);
        isr.wait_started();
        isr
    };
    // A version chosen at run time is kept with its blob: swap, then roll back.
    let isr = start(&cfg("grief"));
    std::fs::write(dir.path().join("servers.yml"), cfg("lag")).unwrap();
    let (status, body) = http_call(port, "POST", "/api/servers/prod/reload", Some(TOKEN));
    assert_eq!(
        (status, body["monitors"]["result"].as_str()),
        (200, Some("swapped")),
        "{body}"
    );
    let (status, body) = http_call(
        port,
        "POST",
        "/api/servers/prod/rollback?slot=monitors",
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert!(isr.stop().success());
    let blobs = dir.path().join("state/versions/blobs");
    let mut replaced = 0;
    for blob in std::fs::read_dir(&blobs).unwrap() {
        let blob = blob.unwrap().path();
        std::fs::remove_file(&blob).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &blob).unwrap();
        replaced += 1;
    }
    assert!(replaced >= 1, "no blob was kept");

    let isr = start(&cfg("lag"));
    wait_for("the refusal", || isr.log().contains("character device"));
    let rss_kib = rss_kib(isr.pid());
    assert!(
        rss_kib < 512 << 10,
        "{rss_kib} KiB resident: /dev/zero was read"
    );
    // The server runs what servers.yml gives.
    append(&log, "2026-01-01 10:00:00 [CHAT] Eve: lag lag\n");
    wait_for("an alert of the configured version", || {
        std::fs::read_to_string(&jsonl)
            .unwrap_or_default()
            .contains("word:Eve")
    });
    assert!(isr.stop().success());
}

#[test]
fn a_panic_in_a_servers_parser_is_logged_counted_and_restarted_and_the_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let (prod_log, other_log) = (dir.path().join("prod.log"), dir.path().join("other.log"));
    let (prod_out, other_out) = (
        dir.path().join("prod.jsonl"),
        dir.path().join("other.jsonl"),
    );
    append(&prod_log, "");
    append(&other_log, "");
    let cfg = servers_yml(&[
        server("prod").log(&prod_log).jsonl(&prod_out),
        server("other").log(&other_log).jsonl(&other_out),
    ]);
    // Only a test build takes this: the parser of whichever server first reads the marker
    // panics, once.
    let isr = Isr::start_with_env(
        dir.path(),
        &cfg,
        free_port(),
        &[("FACTORIO_ISR_TEST_PANIC", "parser:BOOM:1")],
    );
    isr.wait_started();
    wait_for("ready", || isr.get("/ready").is_some_and(|(s, _)| s == 200));
    append(&prod_log, "2026-01-01 10:00:00 [CHAT] Alice: BOOM\n");
    // The supervisor restarts the parts from the checkpoint: the line is read again.
    wait_for("the line after the restart", || {
        messages(&prod_out).get("BOOM") == Some(&1)
    });
    let (_, metrics) = isr.get("/metrics").unwrap();
    for counter in ["task_panics_total", "task_restarts_total"] {
        assert!(
            metrics.contains(&format!(
                "factorio_isr_{counter}{{server=\"prod\",task=\"parser\"}} 1"
            )),
            "{metrics}"
        );
    }
    let (status, component) = state_of(&isr, "task:prod:parser");
    assert_eq!(status, "ready");
    assert!(component.contains("restarted after parser"), "{component}");
    let log = isr.log();
    assert!(
        log.contains("panic: a fault injected by a test (parser)") && log.contains("parse-prod"),
        "{log}"
    );
    assert!(log.contains("restarting the server's parts"), "{log}");
    // The other server is untouched.
    append(&other_log, &chat(1));
    wait_for("the other server's event", || {
        messages(&other_out).contains_key("msg-1")
    });
    assert!(isr.stop().success());
}

#[test]
fn a_panic_in_a_servers_monitor_thread_restarts_it_and_its_events_still_flow() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    append(&log, "");
    let cfg = servers_yml(&[server("prod")
        .log(&log)
        .monitor("chat-guard", None)
        .jsonl(&jsonl)]);
    let isr = Isr::start_with_env(
        dir.path(),
        &cfg,
        free_port(),
        &[("FACTORIO_ISR_TEST_PANIC", "monitors:BOOM")],
    );
    isr.wait_started();
    append(&log, "2026-01-01 10:00:00 [CHAT] Alice: BOOM\n");
    // Events do not depend on the monitors: the line went out before the restart, and is
    // not read again after it.
    append(&log, &chat(1));
    wait_for("a later event", || messages(&jsonl).contains_key("msg-1"));
    wait_for("the restart", || {
        state_of(&isr, "task:prod:monitors")
            .1
            .contains("restarted after monitors")
    });
    assert_eq!(messages(&jsonl).get("BOOM"), Some(&1));
    assert!(isr.stop().success());
}
