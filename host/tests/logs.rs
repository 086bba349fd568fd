//! A server's several logs end to end: the real binary follows a console log and a
//! `factorio-current.log` at once, each with its own checkpoint, through rotation and a
//! kill -9. Timeouts are hang guards.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn two_logs(console: &Path, current: &Path, jsonl: &Path) -> String {
    format!(
        "servers:\n  prod:\n    logs:\n      - path: {}\n      - path: {}\n    sinks:\n      - jsonl: {}\n",
        console.display(),
        current.display(),
        jsonl.display()
    )
}

/// Renames `log` aside and starts a new empty one, as a restart of Factorio does with
/// `factorio-current.log` (and logrotate with a console log).
fn rotate(log: &Path, n: usize) {
    std::fs::rename(log, log.with_extension(format!("log.{n}"))).unwrap();
    append(log, "");
}

#[test]
fn two_logs_each_rotated_resume_after_kill_9_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.log");
    let current = dir.path().join("factorio-current.log");
    let jsonl = dir.path().join("events.jsonl");
    append(&console, "");
    append(&current, "");
    let cfg = two_logs(&console, &current, &jsonl);
    let isr = Isr::start_ready(dir.path(), &cfg);
    let ready = isr.get("/ready").unwrap().1;
    for component in ["tailer:prod", "tailer:prod:factorio-current"] {
        assert!(ready.contains(component), "{component}: {ready}");
    }

    let total = 1500;
    let write = |from: usize, to: usize| {
        for i in from..to {
            append(
                &console,
                &format!("2026-01-01 10:00:00 [CHAT] Alice: c-{i}\n"),
            );
            append(
                &current,
                &format!("2026-01-01 10:00:00 [CHAT] Bob: s-{i}\n"),
            );
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    write(0, 500);
    wait_for("the first third", || {
        let seen = delivered(&jsonl);
        seen.contains_key("c-499") && seen.contains_key("s-499")
    });
    rotate(&console, 1);
    rotate(&current, 1);
    write(500, 800);
    wait_for("some lines after the rotation", || {
        let seen = delivered(&jsonl);
        seen.contains_key("c-600") || seen.contains_key("s-600")
    });
    isr.kill9();
    write(800, 1000);

    let isr = Isr::start(dir.path(), &cfg);
    isr.wait_started();
    write(1000, total);
    wait_for("every line of both logs", || {
        let seen = delivered(&jsonl);
        (0..total)
            .all(|i| seen.contains_key(&format!("c-{i}")) && seen.contains_key(&format!("s-{i}")))
    });
    assert!(isr.stop().success());

    let seen = delivered(&jsonl);
    assert!(
        seen.values().all(|&n| n <= 2),
        "nothing more than repeated once"
    );
    let repeated = seen.values().filter(|&&n| n > 1).count();
    assert!(
        repeated <= 2 * 1024,
        "{repeated} lines repeated: more than a batch per log"
    );
    for name in [
        "prod.checkpoint.json",
        "prod.factorio-current.checkpoint.json",
    ] {
        assert!(
            dir.path().join("state/checkpoints").join(name).is_file(),
            "{name}"
        );
    }
}

#[test]
fn log_path_and_logs_together_or_two_logs_of_one_name_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "servers:\n  prod:\n    log_path: /a/console.log\n    logs:\n      - path: /b/console.log\n",
            "servers.yml:3: servers.prod.log_path: give either `log_path` or `logs`",
        ),
        (
            "servers:\n  prod:\n    logs:\n      - path: /a/console.log\n      - path: /b/console.log\n",
            "servers.yml:5: servers.prod.logs[1]: logs[0] and logs[1] are both called `console`: give one an `id`",
        ),
        (
            "servers:\n  prod:\n    logs:\n      - path: /a/console.log\n        id: Console Log\n",
            "servers.yml:5: servers.prod.logs[0].id: `Console Log` is not a valid log id",
        ),
    ];
    for (config, expected) in cases {
        let path = dir.path().join("servers.yml");
        std::fs::write(&path, config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains(expected), "{expected}\n{text}");
    }
}
