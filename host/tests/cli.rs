//! The `factorio-isr` binary as a user runs it: parse, check, plugin check/bench/new.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_factorio-isr"));
    cmd.env(
        "FACTORIO_ISR_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-plugin-cache"),
    )
    .env_remove("LOG_LEVEL")
    .env_remove("LOG_FORMAT");
    cmd
}

fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The JSON objects `parse` printed, one per line.
fn events(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn parse_prints_one_json_object_per_event_with_line_numbers() {
    let log = "2026-01-01 10:00:00 [JOIN] Alice joined the game\nnoise\n2026-01-01 10:00:01 [KICK] Bob was kicked by <server>. Reason: afk.\n";
    let out = run(bin().arg("parse").current_dir(repo()), log.as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events = events(&out);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["line"], 1);
    assert_eq!(events[0]["kind"], "join");
    assert_eq!(events[0]["player"], "Alice");
    assert_eq!(events[0]["severity"], "info");
    assert_eq!(events[1]["line"], 3);
    assert_eq!(events[1]["fields"]["by"], "<server>");
    assert_eq!(events[1]["fields"]["reason"], "afk");
    assert!(events[1]["text"].is_string());
}

#[test]
fn parse_reads_a_file_and_survives_empty_huge_and_invalid_utf8_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.log");
    let mut data = Vec::new();
    data.extend_from_slice(b"\n");
    data.extend_from_slice(b"2026-01-01 10:00:00 [CHAT] Al\xffce: caf\xe9\n");
    data.extend_from_slice(b"2026-01-01 10:00:00 [CHAT] Bob: ");
    data.extend(std::iter::repeat_n(b'y', 3 << 20));
    data.extend_from_slice(b"\n2026-01-01 10:00:00 [LEAVE] Bob left the game");
    std::fs::write(&path, &data).unwrap();
    // Run outside the repo: the built-in pattern files are used.
    let out = run(bin().arg("parse").arg(&path).current_dir(dir.path()), b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events = events(&out);
    let summary: Vec<(u64, String)> = events
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The invalid UTF-8 makes the name not a player name, so line 2 gives nothing; the
    // 3 MB line is cut to 1 MiB and still parsed; the last line has no newline.
    assert_eq!(summary, [(3, "chat".to_owned()), (4, "leave".to_owned())]);
    assert_eq!(
        events[0]["message"].as_str().unwrap().len(),
        (1 << 20) - "2026-01-01 10:00:00 [CHAT] Bob: ".len()
    );
    assert!(
        text(&out.stderr).contains("longer than"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn parse_and_check_reject_a_broken_pattern_file_naming_file_line_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("custom.yml"),
        "events:\n  ok:\n    pattern: 'fine'\n  broken:\n    pattern: '[unclosed'\n    colour: red\n",
    )
    .unwrap();
    let out = run(
        bin().args(["parse", "--patterns"]).arg(dir.path()),
        b"fine\n",
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("custom.yml:6: rule `broken`, field `colour`: unknown key `colour`"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let out = run(bin().args(["check", "--patterns"]).arg(dir.path()), b"");
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(
        report.contains("error: custom.yml:6: rule `broken`, field `colour`"),
        "{report}"
    );

    std::fs::write(
        dir.path().join("custom.yml"),
        "events:\n  broken:\n    pattern: '[unclosed'\n",
    )
    .unwrap();
    let out = run(bin().args(["check", "--patterns"]).arg(dir.path()), b"");
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(
        report.contains("error: custom.yml:3: rule `broken`, field `pattern`: invalid regex"),
        "{report}"
    );
}

/// A pattern file of `n` rules, `rule_0` to `rule_{n-1}`.
fn many_rules(n: usize) -> String {
    let mut text = String::from("events:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  rule_{i}:\n    pattern: 'word{i} (?P<message>.+)$'\n    type: chat\n    message: \"{{message}}\"\n"
        ));
    }
    text
}

#[test]
fn check_runs_the_patterns_init_in_the_sandbox_and_says_how_close_it_came() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.yml");
    // Fine: it says how long init took against its limit.
    std::fs::write(&file, many_rules(500)).unwrap();
    let out = run(bin().args(["check", "--patterns"]).arg(dir.path()), b"");
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("patterns: the stock parser: factorio-isr:plugin/parser@")
            && report.contains("s of its 2 s limit ("),
        "{report}"
    );
    // 10,000 rules compile natively, but not in the sandbox `run` uses: `check` must say
    // so instead of passing a file every server then refuses.
    std::fs::write(&file, many_rules(10_000)).unwrap();
    let out = run(bin().args(["check", "--patterns"]).arg(dir.path()), b"");
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("patterns: 1 files, 10000 rules (10000 enabled): ok"),
        "{report}"
    );
    assert!(
        report.contains("error: patterns: the stock parser: init reached its memory cap"),
        "{report}"
    );
}

#[test]
fn check_passes_on_the_stock_pattern_files() {
    let out = run(bin().arg("check").current_dir(repo()), b"");
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout)
            .contains("discord commands: /factorio, /factorio-admin: within Discord's limits: ok"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("patterns: 2 files"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn plugin_check_says_world_version_and_runs_sample_lines() {
    let out = run(
        bin()
            .args(["plugin", "check", "patterns"])
            .current_dir(repo()),
        b"",
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("world:   factorio-isr:plugin/parser@0.4.0"),
        "{stdout}"
    );
    assert!(stdout.contains("7 lines -> 5 events"), "{stdout}");

    let out = run(
        bin().args(["plugin", "check", env!("FACTORIO_ISR_WASM_ECHO_MONITOR")]),
        b"",
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("world:   factorio-isr:plugin/monitor@0.4.0"),
        "{stdout}"
    );
    assert!(stdout.contains("-> 6 alerts"), "{stdout}");
}

#[test]
fn plugin_check_gives_one_line_errors_for_files_that_are_not_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").unwrap()).unwrap();
    let out = run(bin().args(["plugin", "check"]).arg(&core), b"");
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("error:   a core WebAssembly module, not a component"),
        "{stdout}"
    );
    assert!(!text(&out.stderr).contains("panicked"));

    let out = run(
        bin()
            .args(["plugin", "check"])
            .arg(dir.path().join("missing.wasm")),
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn plugin_bench_reports_throughput_and_latency() {
    let out = run(
        bin()
            .args(["plugin", "bench", "patterns", "--seconds", "0.2", "--lines"])
            .arg(repo().join("tests/fixtures/console-lines.tsv"))
            .current_dir(repo()),
        b"",
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("lines/s"), "{stdout}");
    assert!(stdout.contains("p99"), "{stdout}");
}

/// `plugin new` writes a crate that depends on the SDK crate (here through a `path`
/// override: the SDK is not on crates.io yet) instead of copying it, and that passes
/// `cargo test`, `cargo build --release` and, built for wasm32-wasip2, `plugin check`, where
/// it stands (outside this repository). Slow: it compiles wit-bindgen twice.
#[test]
fn plugin_new_writes_a_crate_that_tests_builds_anywhere_and_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let cargo = |crate_dir: &Path, args: &[&str]| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(args)
            .arg("--quiet")
            .current_dir(crate_dir)
            .env(
                "CARGO_TARGET_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-new-target"),
            )
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    for (name, kind) in [("my-parser", "parser"), ("my-monitor", "monitor")] {
        let out = run(
            bin()
                .args(["plugin", "new", name, "--kind", kind])
                .current_dir(dir.path()),
            b"",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let crate_dir = dir.path().join(name);
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        let sdk = std::fs::canonicalize(repo().join("plugins/sdk")).unwrap();
        assert!(
            manifest.contains(&format!(
                "factorio-isr-sdk = {{ version = \"0.1.0\", path = \"{}\" }}",
                sdk.display()
            )),
            "{manifest}"
        );
        assert!(!crate_dir.join("sdk").exists(), "no copy of the SDK");
        let tested = cargo(&crate_dir, &["test"]);
        assert!(
            tested.contains("test result: ok. 2 passed")
                || tested.contains("test result: ok. 1 passed"),
            "{tested}"
        );
        cargo(&crate_dir, &["build", "--release"]);
        cargo(
            &crate_dir,
            &["build", "--release", "--target", "wasm32-wasip2"],
        );
        let wasm = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("plugin-new-target/wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let out = run(bin().args(["plugin", "check"]).arg(&wasm), b"");
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        assert!(
            stdout.contains(&format!("factorio-isr:plugin/{kind}@0.4.0")),
            "{stdout}"
        );
    }
    let parser_check = run(
        bin()
            .args(["plugin", "new", "my-parser"])
            .current_dir(dir.path()),
        b"",
    );
    assert!(
        !parser_check.status.success(),
        "an existing folder must not be overwritten"
    );
    // The SDK from git instead.
    let out = run(
        bin()
            .args([
                "plugin",
                "new",
                "from-git",
                "--sdk-git",
                "https://example.com/factorio-isr.git",
            ])
            .current_dir(dir.path()),
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest = std::fs::read_to_string(dir.path().join("from-git/Cargo.toml")).unwrap();
    assert!(
        manifest.contains(
            "factorio-isr-sdk = { version = \"0.1.0\", git = \"https://example.com/factorio-isr.git\" }"
        ),
        "{manifest}"
    );
}

#[test]
fn parse_runs_the_parsers_a_server_is_configured_with() {
    let dir = tempfile::tempdir().unwrap();
    let patterns = dir.path().join("my-patterns");
    std::fs::create_dir(&patterns).unwrap();
    std::fs::write(
        patterns.join("rockets.yml"),
        "events:\n  rocket:\n    pattern: 'rocket launched by (?P<player>\\S+)'\n    type: rocket-launched\n",
    )
    .unwrap();
    let config = dir.path().join("servers.yml");
    std::fs::write(
        &config,
        format!(
            "servers:\n  prod:\n    log_path: /x\n    parsers:\n      - plugin: patterns\n        config: {{dir: {}}}\n      - plugin: {}\n  other:\n    log_path: /y\n",
            patterns.display(),
            env!("FACTORIO_ISR_WASM_MISBEHAVE")
        ),
    )
    .unwrap();
    let out = run(
        bin()
            .args(["parse", "--config"])
            .arg(&config)
            .args(["--server", "prod"]),
        b"rocket launched by Alice\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let kinds: Vec<String> = events(&out)
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["rocket-launched", "echo"]);

    let out = run(
        bin()
            .args(["parse", "--config"])
            .arg(&config)
            .args(["--server", "nope"]),
        b"",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no server `nope` (configured: prod, other)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_validates_a_config_and_every_plugin_it_uses() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("servers.yml");
    std::fs::write(
        &config,
        format!(
            "servers:\n  prod:\n    log_path: /x\n    monitors:\n      - plugin: {}\n  bad:\n    parsers:\n      - plugin: {}\n        config: fail\n    \
             shadow:\n      monitors:\n        - plugin: patterns\n",
            env!("FACTORIO_ISR_WASM_ECHO_MONITOR"),
            env!("FACTORIO_ISR_WASM_MISBEHAVE"),
        ),
    )
    .unwrap();
    let out = run(
        bin()
            .args(["check", "--config"])
            .arg(&config)
            .current_dir(repo()),
        b"",
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("server prod: plugin patterns: factorio-isr:plugin/parser@0.4.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("server prod: plugin") && stdout.contains("monitor@0.4.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("error: server bad: plugin")
            && stdout.contains("init failed: asked to fail"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "error: server bad: plugin patterns is a parser, but `shadow.monitors` takes a monitor"
        ),
        "{stdout}"
    );

    // A key the Python bot would have ignored: a warning with what was meant; with
    // `--strict`, a problem.
    std::fs::write(&config, "servers:\n  prod:\n    log_pth: /x\n").unwrap();
    for (strict, code) in [(false, 0), (true, 1)] {
        let mut cmd = bin();
        cmd.args(["check", "--config"])
            .arg(&config)
            .current_dir(repo());
        if strict {
            cmd.arg("--strict");
        }
        let out = run(&mut cmd, b"");
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{stdout}");
        assert!(
            stdout.contains(
                "servers.yml:3: warning: servers.prod: `log_pth` is not a known key and is not read"
            ) && stdout.contains("did you mean `log_path`?"),
            "{stdout}"
        );
    }
}

#[test]
fn log_format_json_writes_one_json_object_per_log_line() {
    let mut long = "2026-01-01 10:00:00 [CHAT] Bob: ".to_owned();
    long.push_str(&"y".repeat(2 << 20));
    long.push('\n');
    let out = run(
        bin()
            .arg("parse")
            .env("LOG_FORMAT", "json")
            .current_dir(repo()),
        long.as_bytes(),
    );
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        logs.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("longer than"))),
        "{stderr}"
    );
}

/// `compare` reports exactly the lines where the candidate differs: here the stock pattern
/// files with the join rule's kind changed, over the sample log (two joins).
#[test]
fn compare_reports_exactly_the_lines_where_the_candidate_differs() {
    let dir = tempfile::tempdir().unwrap();
    let pats = dir.path().join("pats");
    std::fs::create_dir(&pats).unwrap();
    for file in ["vanilla.yml", "server.yml"] {
        let text = std::fs::read_to_string(repo().join("patterns").join(file)).unwrap();
        std::fs::write(
            pats.join(file),
            text.replace("    type: join\n", "    type: arrival\n"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("servers.yml"),
        "servers:\n  prod:\n    log_path: /nonexistent.log\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cand.yml"),
        format!("dir: {}\n", pats.display()),
    )
    .unwrap();
    let out = run(
        bin()
            .args(["compare", "--config"])
            .arg(dir.path().join("servers.yml"))
            .args([
                "--server",
                "prod",
                "--candidate",
                "patterns",
                "--candidate-config",
            ])
            .arg(dir.path().join("cand.yml"))
            .arg(repo().join("tests/fixtures/sample-console.log"))
            .current_dir(repo()),
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let joins = std::fs::read_to_string(repo().join("tests/fixtures/sample-console.log"))
        .unwrap()
        .matches("[JOIN]")
        .count() as u64;
    assert_eq!(report["different"], joins, "{report}");
    assert_eq!(
        (report["missing"].as_u64(), report["extra"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
    let lines = report["compared"].as_u64().unwrap();
    assert_eq!(report["agreements"].as_u64().unwrap(), lines - joins);
    for example in report["sample"].as_array().unwrap() {
        assert!(
            example["input"].as_str().unwrap().contains("[JOIN]"),
            "{example}"
        );
        assert_eq!(
            (
                example["live"]["kind"].as_str(),
                example["candidate"]["kind"].as_str()
            ),
            (Some("join"), Some("arrival"))
        );
    }
}

#[test]
fn check_takes_a_password_variable_as_it_is_and_never_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("servers.yml");
    std::fs::write(
        &config,
        "servers:\n  prod:\n    log_path: /nonexistent/console.log\n    rcon_password: ${RCON_PASSWORD}\n    rcon_port: ${RCON_PORT}\n",
    )
    .unwrap();
    // Each of these broke the file when variables were pasted into its text.
    for password in ["12345678", "0x1F", "pass #word", "x\n  evil: 1", "[x"] {
        let out = run(
            bin()
                .args(["check", "--config"])
                .arg(&config)
                .env("RCON_PASSWORD", password)
                .env("RCON_PORT", "27016"),
            b"",
        );
        assert!(
            out.status.success(),
            "{password:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    // A password in a number field by mistake: an error that names the variable, not it.
    let out = run(
        bin()
            .args(["check", "--config"])
            .arg(&config)
            .env("RCON_PASSWORD", "pw")
            .env("RCON_PORT", "hunter2-secret"),
        b"",
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(!said.contains("hunter2"), "{said}");
    assert!(said.contains("${RCON_PORT}"), "{said}");
}

#[test]
fn a_plugin_that_is_no_regular_file_or_too_large_is_refused_before_it_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let zero = dir.path().join("zero.wasm");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let fifo = dir.path().join("fifo.wasm");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let big = dir.path().join("big.wasm");
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.resize(2 << 20, 0);
    std::fs::write(&big, bytes).unwrap();
    for (plugin, says) in [
        (&zero, "character device"),
        (&fifo, "FIFO"),
        (&big, "larger than the 1048576 bytes allowed"),
    ] {
        let out = run(
            bin()
                .args(["plugin", "check"])
                .arg(plugin)
                .env("FACTORIO_ISR_PLUGIN_MAX_MIB", "1"),
            b"",
        );
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success(), "{said}");
        assert!(said.contains(says), "{plugin:?}: {said}");
    }
    // Through a servers.yml, `check` says the same for each server's plugin.
    let config = dir.path().join("servers.yml");
    std::fs::write(
        &config,
        format!(
            "servers:\n  prod:\n    log_path: /nonexistent/console.log\n    parsers:\n      - plugin: {}\n",
            zero.display()
        ),
    )
    .unwrap();
    let out = run(bin().args(["check", "--config"]).arg(&config), b"");
    let said = text(&out.stdout);
    assert!(
        !out.status.success() && said.contains("character device"),
        "{said}"
    );
}
