//! Where a plugin is compiled, so that compiling leaves nothing behind.
//!
//! Cranelift compiles in many short-lived allocations, on the calling thread and on
//! rayon's workers, between which the long-lived results land: the allocator cannot give
//! those pages back afterwards. A process that compiled the stock plugins at start held
//! four times what one that loaded them from the cache did (169 MiB against 39 MiB, one
//! server), for the rest of its life. So the `factorio-isr` binary compiles in a child
//! process of itself ([`in_child`]; `factorio-isr compile-plugin`, wasm on stdin, compiled
//! code on stdout) whose memory goes with it; the parent only loads the result, exactly as
//! it loads a cached entry. Where there is no such binary (the library in tests), or the
//! child fails, it compiles in process and then returns what the compiler freed to the
//! system (`mi_collect` on every thread that took part; rayon's workers only then, so a
//! parent that compiles in a child never starts them).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;

use wasmtime::Engine;
use wasmtime::component::Component;

/// The binary that compiles in a child process, once [`in_child`] named it.
static CHILD: OnceLock<PathBuf> = OnceLock::new();

/// The largest `.wasm` a child takes on stdin.
const MAX_WASM: u64 = 1 << 30;

/// From now on, compile in a child process of `exe` (this binary) instead of in process.
pub fn in_child(exe: PathBuf) {
    let _ = CHILD.set(exe);
}

/// `wasm` compiled for `engine`, loaded, with its compiled form (for the cache): in a child
/// process when one is set up, else (or when the child fails) in process, after which
/// every thread that compiled gives back what the compiler freed. The caller gives back the
/// compiled form's pages ([`give_back`]) once it is done with it.
pub(super) fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<(Component, Vec<u8>)> {
    if let Some(exe) = CHILD.get() {
        let loaded = compile_in(exe, wasm)
            .map_err(wasmtime::Error::from)
            .and_then(|code| load(engine, code));
        match loaded {
            Ok(done) => return Ok(done),
            Err(e) => tracing::debug!("compiling in a child process failed ({e}); compiling here"),
        }
    }
    let code = engine.precompile_component(wasm);
    // Rayon's workers took part only here: the parent of a child compile never starts them.
    rayon::broadcast(|_| give_back());
    give_back();
    load(engine, code?)
}

/// The component of `code`, compiled by this binary for this engine's configuration;
/// wasmtime checks that it was (version and settings) and refuses it otherwise.
fn load(engine: &Engine, code: Vec<u8>) -> wasmtime::Result<(Component, Vec<u8>)> {
    // SAFETY: `code` was made just now by `precompile_component` of this binary, here or in
    // a child process of it, with the same engine configuration.
    let component = unsafe { Component::deserialize(engine, &code)? };
    Ok((component, code))
}

/// Runs `exe compile-plugin` on `wasm`: its compiled code, or why not.
fn compile_in(exe: &PathBuf, wasm: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut child = Command::new(exe)
        .arg("compile-plugin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // The child reads all of its input before it writes anything: no deadlock.
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(wasm)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() || out.stdout.is_empty() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(std::io::Error::other(format!(
            "{}: {}",
            out.status,
            said.trim()
        )));
    }
    Ok(out.stdout)
}

/// `factorio-isr compile-plugin`: a component's `.wasm` on stdin, its code compiled for
/// this binary's engine on stdout.
pub fn child_main() -> ExitCode {
    let mut wasm = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_WASM).read_to_end(&mut wasm) {
        eprintln!("cannot read the plugin: {e}");
        return ExitCode::FAILURE;
    }
    let compiled =
        Engine::new(&super::engine_config()).and_then(|engine| engine.precompile_component(&wasm));
    match compiled {
        Ok(code) => match std::io::stdout().lock().write_all(&code) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cannot write the compiled plugin: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Returns this thread's free pages to the system.
pub(super) fn give_back() {
    // SAFETY: `mi_collect` frees only pages no allocation uses, and may be called from any
    // thread at any time (a process whose allocator is not mimalloc has nothing there).
    unsafe { libmimalloc_sys::mi_collect(true) }
}
