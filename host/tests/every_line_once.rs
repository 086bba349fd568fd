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
