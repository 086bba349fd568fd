//! What the tests of plugins in other languages (python.rs, javascript.rs) share: the real
//! binary on one compiled-plugin cache, a project's `build.sh` run with the language's
//! toolchain on PATH, `plugin check` and `parse --plugin`, and what a host delivered.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The compiled-plugin cache every process of these tests shares: a Python or JavaScript
/// component takes tens of seconds to compile, once.
pub fn plugin_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("run-plugin-cache")
}

/// The binary as a command, on the shared cache.
pub fn cli() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_factorio-isr"));
    cmd.env("FACTORIO_ISR_CACHE_DIR", plugin_cache())
        .env_remove("LOG_FORMAT")
        .env("LOG_LEVEL", "warn");
    cmd
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `project`'s `build.sh` with the folder of `toolchain` (componentize-py, ...) first
/// on PATH, as a user with it installed anywhere would.
pub fn run_build_sh(toolchain: &Path, project: &Path) {
    let path = format!(
        "{}:{}",
        toolchain.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let built = Command::new("sh")
        .arg(project.join("build.sh"))
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}{}",
        text(&built.stdout),
        text(&built.stderr)
    );
}

/// What `plugin check` says of `wasm` (run on `lines`, if given); it must succeed.
pub fn check(wasm: &Path, lines: Option<&Path>) -> String {
    let mut cmd = cli();
    cmd.args(["plugin", "check"]).arg(wasm);
    if let Some(l) = lines {
        cmd.arg("--lines").arg(l);
    }
    let out = cmd.output().unwrap();
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    said
}

/// The events `parse --plugin wasm` gives for the file `lines`.
pub fn parse_with(wasm: &Path, lines: &Path) -> Vec<serde_json::Value> {
    let out = cli()
        .args(["parse", "--plugin"])
        .arg(wasm)
        .arg(lines)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The events a JSONL sink has written so far.
pub fn events_in(jsonl: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(jsonl)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Whether `/metrics` counts at least one trap of the plugin whose file name is `file`.
pub fn traps_counted(metrics: &str, file: &str) -> bool {
    metrics.lines().any(|l| {
        l.starts_with("factorio_isr_plugin_traps_total")
            && l.contains(file)
            && l.contains("kind=\"trap\"")
            && !l.ends_with(" 0")
    })
}
