//! Plugins in Python, end to end: componentize-py (from PyPI) builds them — the templates of
//! `plugin new --lang python`, the stock example `plugins/milestones`, and a test plugin
//! that misbehaves on purpose — and the real binary checks them, parses with them, runs them
//! in a host, swaps one while it runs and survives their traps. Skipped where componentize-py
//! is not installed, unless `FACTORIO_ISR_REQUIRE_TOOLS` is set (`.ci/run` installs it).
//! Timeouts are hang guards.

mod common;

use std::path::Path;
use std::process::Command;

use common::toolchain::*;
use common::*;

/// Builds the app module in `app_dir` (with the helper module of `plugins/sdk-python`)
/// for `world` into `out`.
fn build(componentize: &Path, app_dir: &Path, world: &str, out: &Path) {
    let built = Command::new(componentize)
        .arg("-d")
        .arg(repo().join("wit/since_v0.4.0"))
        .args(["-w", world, "componentize", "app", "-p"])
        .arg(app_dir)
        .arg("-p")
        .arg(repo().join("plugins/sdk-python"))
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "componentize-py: {}{}",
        text(&built.stdout),
        text(&built.stderr)
    );
}

/// `plugin new --lang python` writes a project that builds with its one command and passes
/// `plugin check`; its parser (a `RuleParser`) parses through `parse --plugin`.
#[test]
fn python_plugins_from_plugin_new_build_check_and_parse() {
    let Some(componentize) = tool("componentize-py") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, kind) in [("py-parser", "parser"), ("py-monitor", "monitor")] {
        let out = cli()
            .args(["plugin", "new", name, "--lang", "python", "--kind", kind])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let project = dir.path().join(name);
        for file in [
            "app.py",
            "factorio_isr.py",
            "wit/types.wit",
            "build.sh",
            "README.md",
        ] {
            assert!(project.join(file).is_file(), "{file}");
        }
        // Its one build command, with componentize-py wherever it is installed.
        run_build_sh(&componentize, &project);
        let wasm = project.join(format!("{name}.wasm"));
        let lines = dir.path().join("lines.txt");
        std::fs::write(
            &lines,
            "rocket launched by Zoë\nresearch automation-2 finished\nnothing here\n",
        )
        .unwrap();
        let said = check(&wasm, Some(&lines));
        assert!(
            said.contains(&format!("factorio-isr:plugin/{kind}@0.4.0")),
            "{said}"
        );
        assert!(said.contains("compile: "), "{said}");
        assert!(said.contains("memory: "), "{said}");
        if kind == "parser" {
            assert!(said.contains("3 lines -> 2 events"), "{said}");
            let events = parse_with(&wasm, &lines);
            assert_eq!(events.len(), 2, "{events:?}");
            assert_eq!(events[0]["kind"], "rocket-launched");
            // The span of a name past a multi-byte letter is counted in bytes, as the host
            // reads it.
            assert_eq!(events[0]["player"], "Zoë");
            assert_eq!(events[1]["fields"]["research"], "automation-2");
        } else {
            assert!(said.contains("UPS is low: 20.0 UPS"), "{said}");
        }
    }
}

fn titles(jsonl: &Path) -> Vec<String> {
    events_in(jsonl)
        .iter()
        .filter(|e| e["kind"] == "alert")
        .filter_map(|e| e["fields"]["title"].as_str().map(str::to_owned))
        .collect()
}

const TOKEN: &str = "python-test-token";

/// The stock Python example, `milestones`, announces each milestone once in a running host;
/// swapped for a new version while it runs, it keeps what it counted (save-state /
/// load-state). A Python parser beside the stock one is told which log its lines came from,
/// and its traps cost it one batch, nobody else anything.
#[test]
fn the_python_milestones_monitor_runs_keeps_its_state_through_a_swap_and_traps_cost_one_batch() {
    let Some(componentize) = tool("componentize-py") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let milestones = dir.path().join("milestones.wasm");
    build(
        &componentize,
        &repo().join("plugins/milestones"),
        "monitor",
        &milestones,
    );
    let misbehave = dir.path().join("misbehave.wasm");
    build(
        &componentize,
        &repo().join("tests/plugins/py-misbehave"),
        "parser",
        &misbehave,
    );
    // Compiling a Python component takes tens of seconds, once: `plugin check` does it and
    // fills the cache, from which the host then loads both without compiling.
    for wasm in [&milestones, &misbehave] {
        check(wasm, None);
    }
    let patterns = dir.path().join("patterns");
    std::fs::create_dir(&patterns).unwrap();
    std::fs::write(
        patterns.join("rockets.yml"),
        "events:\n  rocket:\n    pattern: 'rocket launched'\n    type: rocket-launched\n",
    )
    .unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&log, "").unwrap();
    let config = |rockets: &str| {
        format!(
            "servers:\n  prod:\n    logs:\n      - path: {log}\n        id: console\n    sinks:\n      - jsonl: {jsonl}\n    \
             parsers:\n      - plugin: patterns\n        config: {{dir: {patterns}}}\n      - plugin: {misbehave}\n    \
             monitors:\n      - plugin: {milestones}\n        config: {{rockets: [{rockets}]}}\n",
            log = log.display(),
            jsonl = jsonl.display(),
            patterns = patterns.display(),
            misbehave = misbehave.display(),
            milestones = milestones.display(),
        )
    };
    let isr = Isr::start_with_env(
        dir.path(),
        &config("1, 2, 3"),
        free_port(),
        &[
            ("FACTORIO_ISR_API_TOKEN", TOKEN),
            ("FACTORIO_ISR_CACHE_DIR", plugin_cache().to_str().unwrap()),
        ],
    );
    isr.wait_started();

    append(&log, "rocket launched\nrocket launched\n");
    wait_for("two rocket milestones", || titles(&jsonl).len() == 2);
    assert_eq!(titles(&jsonl), ["🚀 The 1st rocket", "🚀 The 2nd rocket"]);

    // The Python parser knows the log's id.
    append(&log, "2026-01-01 10:00:00 [JOIN] Zoë joined the game\n");
    wait_for("the Python parser's join", || {
        events_in(&jsonl)
            .iter()
            .any(|e| e["kind"] == "join" && e["fields"]["log"] == "console")
    });

    // A trap: that batch is lost for the Python parser alone; the stock parser's rocket on
    // the same batch gets through, and the next batch is parsed again.
    append(&log, "PANIC\nrocket launched\n");
    wait_for("the third rocket, parsed beside the trap", || {
        titles(&jsonl).iter().any(|t| t == "🚀 The 3rd rocket")
    });
    append(&log, "2026-01-01 10:01:00 [JOIN] Bob joined the game\n");
    wait_for("the Python parser back at work", || {
        events_in(&jsonl)
            .iter()
            .any(|e| e["kind"] == "join" && e["player"] == "Bob")
    });
    let metrics = isr.get("/metrics").unwrap().1;
    assert!(traps_counted(&metrics, "misbehave.wasm"), "{metrics}");

    // A new version of the monitor (new config) is swapped in while the host runs: it takes
    // up the old one's state, so no milestone is announced twice and the count goes on.
    let live = |isr: &Isr| {
        let (_, view) = http_call(isr.port, "GET", "/api/servers/prod", None);
        view["monitor_versions"]["live"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let before = live(&isr);
    assert!(!before.is_empty());
    std::fs::write(dir.path().join("servers.yml"), config("1, 2, 3, 4")).unwrap();
    let (status, body) = http_call(isr.port, "POST", "/api/servers/prod/reload", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    wait_for("the new monitor version to be live", || {
        live(&isr) != before
    });
    append(&log, "rocket launched\n");
    wait_for("the fourth rocket", || {
        titles(&jsonl).iter().any(|t| t == "🚀 The 4th rocket")
    });
    let all = titles(&jsonl);
    assert_eq!(
        all,
        [
            "🚀 The 1st rocket",
            "🚀 The 2nd rocket",
            "🚀 The 3rd rocket",
            "🚀 The 4th rocket"
        ],
        "each milestone once, across the swap"
    );
    assert!(isr.stop().success());
}
