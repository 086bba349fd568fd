//! Every line once, off the happy path: a slow Discord, one file followed twice, a global
//! rate limit, a plugin that prints or fails at start, a full disk. The real binary, the
//! fake Discord and the fake Factorio server; timeouts are hang guards.

mod common;

use std::time::Duration;

use common::bot::*;
use common::*;

#[test]
fn a_global_rate_limit_does_not_hold_up_answers_to_commands() {
    let s = Setup::new("", "  admin_roles: [\"Server Admin\"]\n", None);
    let isr = s.start();
    let d = &s.discord;
    // A post that meets the global limit makes the bot hold every route but the
    // interaction answers, for a minute.
    d.global_limit(60.0);
    append(&s.log, "2026-01-01 10:00:00 [CHAT] Alice: into the limit\n");
    d.wait_for("the global 429", |r| r.rate_limited > 0);
    let id = d.command_in(EVENTS, 8, &[], "factorio status", &[]);
    let (text, _) = d.answer(id);
    assert!(text.starts_with("**Production** (`prod`)"), "{text}");
    let id = d.command_in(EVENTS, 8, &[], "factorio players", &[]);
    let (text, _) = d.answer(id);
    assert!(text.contains("online"), "{text}");
    assert!(isr.stop_with_stragglers().success());
}

#[test]
fn a_plugin_that_prints_or_fails_at_start_takes_down_only_its_server() {
    let misbehave = env!("FACTORIO_ISR_WASM_MISBEHAVE");
    let s = Setup::new(
        &format!(
            "    parsers:\n      - plugin: patterns\n      - plugin: {misbehave}\n        config: print\n"
        ),
        "  admin_roles: [\"Server Admin\"]\n",
        None,
    );
    // A third server whose plugin panics in its constructor.
    let log = s.dir.path().join("broken.log");
    std::fs::write(&log, "").unwrap();
    let config = s.config.replace(
        "discord:\n",
        &format!(
            "  broken:\n    log_path: {}\n    parsers:\n      - plugin: {misbehave}\n        config: panic\n\
             discord:\n",
            log.display()
        ),
    );
    std::fs::write(&s.config_path, &config).unwrap();
    let s = Setup { config, ..s };
    let isr = s.start();
    // The one that printed runs, its words in the log with their plugin and server.
    append(&s.log, "2026-01-01 10:00:00 [CHAT] Alice: still here\n");
    s.discord
        .wait_for("the line of the server that printed", |r| {
            message_with(r, EVENTS, "still here").is_some()
        });
    let log_text = isr.log();
    assert!(log_text.contains("hello from init"), "{log_text}");
    // The one that panicked is down with the plugin's message; the host is up.
    let broken = isr
        .component("server:broken")
        .expect("server:broken in /ready");
    assert_eq!(broken["state"], "down", "{broken}");
    assert!(
        broken["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("asked to panic in init"),
        "{broken}"
    );
    assert!(isr.get("/healthz").is_some_and(|(code, _)| code == 200));
    assert!(isr.stop().success());
}

#[test]
fn a_slow_discord_posts_each_message_once() {
    let s = Setup::new("", "  admin_roles: [\"Server Admin\"]\n", None);
    let isr = s.start();
    let d = &s.discord;
    // Discord takes each post at once but answers later than the bot waits (15 s): the
    // bot sends it again, with the same nonce.
    d.delay_answers(Duration::from_secs(16));
    append(&s.log, "2026-01-01 10:00:00 [CHAT] Alice: slowly\n");
    d.wait_for("a post sent again with its nonce", |r| r.nonce_hits >= 1);
    d.delay_answers(Duration::ZERO);
    append(&s.log, "2026-01-01 10:00:01 [CHAT] Alice: quickly\n");
    let r = d.wait_for("the next line", |r| {
        message_with(r, EVENTS, "quickly").is_some()
    });
    let slow: Vec<_> = posted(&r, EVENTS)
        .into_iter()
        .filter(|m| m["content"].as_str().unwrap_or_default().contains("slowly"))
        .collect();
    assert_eq!(slow.len(), 1, "posted more than once: {slow:?}");
    assert_eq!(slow[0]["enforce_nonce"], true);
    assert!(isr.stop().success());
}

/// Runs the binary in a mount namespace whose state folder is a full 128 KiB tmpfs (the
/// state it had copied in), and copies the state out to `out/` when it ends.
const FULL_DISK: &str = r#"set -e
rm -rf saved out
mkdir -p saved out
cp -a state/. saved/
mount -t tmpfs -o size=128k tmpfs state
cp -a saved/. state/
head -c 1000000 /dev/zero > state/filler 2>/dev/null || true
set +e
"$@" &
pid=$!
trap 'kill -TERM $pid' TERM INT
wait $pid
wait $pid
status=$?
cp -a state/. out/
exit $status"#;

#[test]
fn a_full_disk_keeps_the_last_good_checkpoint_and_says_what_a_restart_repeats() {
    if tool("unshare").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&log, "").unwrap();
    let text = config(&log, &jsonl);
    let checkpoint = |state: &str, file: &str| {
        std::fs::read(dir.path().join(state).join("checkpoints").join(file)).ok()
    };
    let at_end = |c: &[u8]| {
        let end = std::fs::metadata(&log).unwrap().len();
        String::from_utf8_lossy(c).contains(&format!("\"offset\":{end}"))
    };
    let deliver = |lines: std::ops::Range<usize>| {
        for i in lines {
            append(&log, &chat(i));
            std::thread::sleep(Duration::from_millis(30));
        }
    };
    let delivered_once = |lines: std::ops::Range<usize>| {
        let seen = delivered(&jsonl);
        lines
            .into_iter()
            .all(|i| seen.get(&format!("msg-{i}")) == Some(&1))
    };
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        FULL_DISK,
        "full-disk",
    ];
    let swap_in_out = || {
        std::fs::remove_dir_all(dir.path().join("state")).unwrap();
        std::fs::rename(dir.path().join("out"), dir.path().join("state")).unwrap();
        let _ = std::fs::remove_file(dir.path().join("state/filler"));
    };

    // Lines 0-9 delivered and saved on a disk with room.
    let isr = Isr::start_ready(dir.path(), &text);
    deliver(0..10);
    wait_for("lines 0-9 saved", || {
        delivered_once(0..10)
            && checkpoint("state", "prod.checkpoint.json").is_some_and(|c| at_end(&c))
    });
    assert!(isr.stop().success());

    // A full disk with the previous checkpoint there: it is given up to make room, and
    // saves go on.
    let isr = Isr::start_wrapped(dir.path(), &text, free_port(), &[], &wrapper);
    isr.wait_started();
    deliver(10..20);
    wait_for("lines 10-19 delivered", || delivered_once(10..20));
    std::thread::sleep(Duration::from_millis(500));
    let said_at = isr.stderr_path();
    assert!(isr.stop().success());
    let said = std::fs::read_to_string(said_at).unwrap_or_default();
    assert!(!said.contains("cannot save the checkpoint"), "{said}");
    assert!(checkpoint("out", "prod.checkpoint.json").is_some_and(|c| at_end(&c)));
    swap_in_out();

    // A full disk with nothing to give up: no save works, the last good checkpoint stays,
    // and the log (once) and /ready say what a restart would deliver again.
    let _ = std::fs::remove_file(
        dir.path()
            .join("state/checkpoints/prod.checkpoint.prev.json"),
    );
    let good = checkpoint("state", "prod.checkpoint.json").unwrap();
    let isr = Isr::start_wrapped(dir.path(), &text, free_port(), &[], &wrapper);
    isr.wait_started();
    deliver(20..40);
    wait_for("lines 20-39 delivered", || delivered_once(20..40));
    wait_for(
        "the checkpoint degraded, saying what a restart repeats",
        || {
            isr.component("checkpoint:prod").is_some_and(|c| {
                c["state"] == "degraded"
                    && c["detail"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("a restart now delivers again what was delivered since")
            })
        },
    );
    let said_at = isr.stderr_path();
    assert!(isr.stop().success());
    let said = std::fs::read_to_string(said_at).unwrap_or_default();
    assert_eq!(
        said.matches("cannot save the checkpoint").count(),
        1,
        "a failing save is logged once:\n{said}"
    );
    assert_eq!(
        checkpoint("out", "prod.checkpoint.json"),
        Some(good),
        "the last good checkpoint is still in place"
    );
    swap_in_out();

    // A restart resumes from it: lines 20-39 come again, 0-19 do not.
    let isr = Isr::start_ready(dir.path(), &text);
    wait_for("lines 20-39 again", || {
        (20..40).all(|i| delivered(&jsonl).get(&format!("msg-{i}")) == Some(&2))
    });
    assert!(delivered_once(0..20));
    assert!(isr.stop().success());
}

#[test]
fn one_file_followed_twice_is_refused_and_by_two_servers_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::write(d.join("console.log"), "").unwrap();
    std::os::unix::fs::symlink(d.join("console.log"), d.join("link.log")).unwrap();
    let thrice = format!(
        "servers:\n  prod:\n    logs:\n      - path: {d}/console.log\n      - path: {d}/sub/../console.log\n        id: again\n      \
         - path: {d}/link.log\n        id: linked\n",
        d = d.display()
    );
    let config = d.join("servers.yml");
    std::fs::write(&config, &thrice).unwrap();
    for command in ["check", "run"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
            .args([command, "--config"])
            .arg(&config)
            .arg(if command == "run" {
                "--state-dir"
            } else {
                "--strict"
            })
            .args(if command == "run" {
                vec![d.join("state")]
            } else {
                vec![]
            })
            .env("FACTORIO_ISR_CACHE_DIR", d.join("cache"))
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{command}: {said}");
        assert!(
            said.contains("servers.prod.logs[1] (`")
                && said.contains("and servers.prod.logs[0] (`")
                && said.contains("servers.prod.logs[2] (`")
                && said.contains("follow it once"),
            "{command}: {said}"
        );
    }
    // Two servers on one file: they start, and the log says what that means.
    let jsonl = d.join("events.jsonl");
    let two = servers_yml(&[
        server("prod").log(&d.join("console.log")).jsonl(&jsonl),
        server("copy").log(&d.join("link.log")).jsonl(&jsonl),
    ]);
    let isr = Isr::start_ready(d, &two);
    assert!(
        isr.log()
            .contains("each of its lines is posted once for each server"),
        "{}",
        isr.log()
    );
    append(&d.join("console.log"), &chat(1));
    wait_for("the line, once per server", || {
        delivered(&jsonl).get("msg-1") == Some(&2)
    });
    assert!(isr.stop().success());
}
