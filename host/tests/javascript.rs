//! Plugins in JavaScript, end to end: componentize-js (from npm) builds the templates of
//! `plugin new --lang javascript` and a test plugin that misbehaves on purpose, and the real
//! binary checks them, parses with them, runs one in a host, swaps in another while it runs
//! and survives its traps. Skipped where componentize-js is not installed, unless
//! `FACTORIO_ISR_REQUIRE_TOOLS` is set (`.ci/run` installs it). Timeouts are hang guards.

mod common;

use std::path::{Path, PathBuf};

use common::toolchain::*;
use common::*;

/// Writes a project with `plugin new` and builds it with its `build.sh`.
fn new_project(componentize: &Path, dir: &Path, name: &str, kind: &str) -> PathBuf {
    let out = cli()
        .args([
            "plugin",
            "new",
            name,
            "--lang",
            "javascript",
            "--kind",
            kind,
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let project = dir.join(name);
    for file in [
        "app.js",
        "factorio_isr.js",
        "package.json",
        "wit/types.wit",
        "build.sh",
    ] {
        assert!(project.join(file).is_file(), "{file}");
    }
    run_build_sh(componentize, &project);
    project.join(format!("{name}.wasm"))
}

const TOKEN: &str = "js-test-token";

/// A generated project installs the same toolchain CI tests with (`.ci/js`): componentize-js
/// imports preview2-shim without declaring it, so a project that leaves the shim out breaks
/// at its first build on a fresh machine.
#[test]
fn a_new_project_pins_the_toolchain_ci_builds_with() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli()
        .args(["plugin", "new", "pins", "--lang", "javascript"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    };
    let project = read(dir.path().join("pins/package.json"));
    let ci = read(repo().join(".ci/js/package.json"));
    assert_eq!(project["devDependencies"], ci["devDependencies"]);
    assert!(
        project["devDependencies"]["@bytecodealliance/preview2-shim"].is_string(),
        "{project}"
    );
}

#[test]
fn javascript_plugins_build_check_parse_run_swap_and_trap() {
    let Some(componentize) = tool("componentize-js") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let parser = new_project(&componentize, dir.path(), "js-parser", "parser");
    let monitor = new_project(&componentize, dir.path(), "js-monitor", "monitor");
    // The test plugin, beside a copy of the helper module, as a project of its own has it.
    let misbehave_dir = dir.path().join("js-misbehave");
    std::fs::create_dir(&misbehave_dir).unwrap();
    std::fs::copy(
        repo().join("tests/plugins/js-misbehave/app.js"),
        misbehave_dir.join("app.js"),
    )
    .unwrap();
    std::fs::copy(
        repo().join("plugins/sdk-js/factorio_isr.js"),
        misbehave_dir.join("factorio_isr.js"),
    )
    .unwrap();
    std::fs::copy(
        dir.path().join("js-parser/build.sh"),
        misbehave_dir.join("build.sh"),
    )
    .unwrap();
    let script = std::fs::read_to_string(misbehave_dir.join("build.sh"))
        .unwrap()
        .replace("js-parser.wasm", "js-misbehave.wasm")
        .replace(
            "--wit wit",
            &format!("--wit {}", repo().join("wit/since_v0.4.0").display()),
        );
    std::fs::write(misbehave_dir.join("build.sh"), script).unwrap();
    run_build_sh(&componentize, &misbehave_dir);
    let misbehave = misbehave_dir.join("js-misbehave.wasm");

    // `plugin check` compiles each once (and says how long, and how much memory it uses).
    let lines = dir.path().join("lines.txt");
    std::fs::write(
        &lines,
        "2026-01-01 10:00:00 [JOIN] x_y joined the game\nnothing here\n",
    )
    .unwrap();
    let said = check(&parser, Some(&lines));
    assert!(said.contains("factorio-isr:plugin/parser@0.4.0"), "{said}");
    assert!(said.contains("2 lines -> 1 events"), "{said}");
    assert!(said.contains("**x\\\\_y** joined"), "escaped: {said}");
    let said = check(&monitor, None);
    assert!(said.contains("UPS is low: 20.0 UPS"), "{said}");
    check(&misbehave, Some(&lines));

    let events = parse_with(&parser, &lines);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["player"], "x_y");

    // In a host: the template parser, then (a reload while it runs) the misbehaving one,
    // whose traps cost it one batch.
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&log, "").unwrap();
    let config = |plugin: &Path| {
        servers_yml(&[server("prod")
            .log(&log)
            .jsonl(&jsonl)
            .parser(&plugin.display().to_string(), None)])
    };
    let isr = Isr::start_with_env(
        dir.path(),
        &config(&parser),
        free_port(),
        &[
            ("FACTORIO_ISR_API_TOKEN", TOKEN),
            ("FACTORIO_ISR_CACHE_DIR", plugin_cache().to_str().unwrap()),
        ],
    );
    isr.wait_started();
    append(&log, "2026-01-01 10:00:00 [JOIN] Alice joined the game\n");
    wait_for("the template's join", || {
        events_in(&jsonl)
            .iter()
            .any(|e| e["player"] == "Alice" && e["text"] == "**Alice** joined")
    });
    std::fs::write(dir.path().join("servers.yml"), config(&misbehave)).unwrap();
    let (status, body) = http_call(isr.port, "POST", "/api/servers/prod/reload", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    append(&log, "2026-01-01 10:00:01 [JOIN] Bob joined the game\n");
    wait_for("the swapped-in parser's join", || {
        events_in(&jsonl)
            .iter()
            .any(|e| e["player"] == "Bob" && e["fields"]["version"] == "misbehave")
    });
    let bob = events_in(&jsonl)
        .into_iter()
        .find(|e| e["player"] == "Bob")
        .unwrap();
    assert_eq!(bob["fields"]["log"], "console", "{bob}");
    append(&log, "PANIC\n");
    wait_for("the trap counted", || {
        isr.get("/metrics")
            .is_some_and(|(_, m)| traps_counted(&m, "js-misbehave.wasm"))
    });
    append(&log, "2026-01-01 10:00:02 [JOIN] Carol joined the game\n");
    wait_for("the parser back at work after its trap", || {
        events_in(&jsonl).iter().any(|e| e["player"] == "Carol")
    });
    assert!(isr.stop().success());
}
