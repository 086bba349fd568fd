//! Builds the WebAssembly plugins (stock ones to embed, test ones for the test suite) with a
//! nested `cargo build --target wasm32-wasip2`, and embeds the stock pattern files.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "wasm-plugin";
/// (package, file stem) of every plugin built here.
const PLUGINS: &[(&str, &str)] = &[
    ("factorio-isr-patterns", "factorio_isr_patterns"),
    ("factorio-isr-ups-alert", "factorio_isr_ups_alert"),
    ("factorio-isr-chat-guard", "factorio_isr_chat_guard"),
    ("misbehave", "misbehave"),
    ("echo-monitor", "echo_monitor"),
    ("legacy-parser", "legacy_parser"),
    ("v03-parser", "v03_parser"),
    ("bad-matches", "bad_matches"),
];

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("host/ is inside the workspace")
        .to_path_buf();
    for watched in ["plugins", "wit", "tests/plugins", "patterns", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    require_wasm_target();
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-plugins");
    build_plugins(&root, &target_dir);
    let out_dir = target_dir.join(WASM_TARGET).join(PROFILE);
    for (_, stem) in PLUGINS {
        let var = format!("FACTORIO_ISR_WASM_{}", stem.to_uppercase());
        println!(
            "cargo:rustc-env={var}={}",
            out_dir.join(format!("{stem}.wasm")).display()
        );
    }
    embed_patterns(&root.join("patterns"), "stock_patterns.rs");
    embed_patterns(&root.join("patterns").join("packs"), "stock_packs.rs");
}

fn require_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot
        && !sysroot.join("lib/rustlib").join(WASM_TARGET).exists()
    {
        panic!(
            "\n\nThe `{WASM_TARGET}` target is not installed; the stock plugins are built for it.\n\
             Add it with:\n\n    rustup target add {WASM_TARGET}\n\n"
        );
    }
}

fn build_plugins(root: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--target",
            WASM_TARGET,
            "--profile",
            PROFILE,
            "--target-dir",
        ])
        .arg(target_dir);
    for (package, _) in PLUGINS {
        cmd.args(["-p", package]);
    }
    // The outer build's settings (its flags, wrappers such as clippy-driver, its jobserver)
    // are for the host, not for the wasm plugins.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let keep = key == "CARGO_HOME"
            || key.starts_with("CARGO_NET_")
            || key.starts_with("CARGO_HTTP_")
            || key.starts_with("CARGO_REGISTRIES_");
        if (key.starts_with("CARGO_") && !keep)
            || matches!(
                key.as_ref(),
                "RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTDOCFLAGS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
            )
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run cargo to build the plugins: {e}"));
    if !output.status.success() {
        panic!(
            "building the WebAssembly plugins failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn embed_patterns(dir: &Path, out_name: &str) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"));
    files.sort();
    let mut src = String::from("&[\n");
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(
            src,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    src.push_str("]\n");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join(out_name);
    std::fs::write(out, src).expect("write the embedded pattern files");
}
