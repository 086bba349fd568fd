//! Where plugins are compiled: the `compile-plugin` child this binary runs so that compiling
//! leaves no memory behind, and the host's fallback when no child can compile.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use factorio_isr::plugin::{ComponentCache, Limits, Runtime};

/// What `factorio-isr compile-plugin` prints for `input`, its error text, and whether it
/// succeeded.
fn compile_plugin(input: &[u8]) -> (Vec<u8>, String, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .arg("compile-plugin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.stdout, said, out.status.success())
}

#[test]
fn the_child_prints_compiled_code_and_only_that_or_fails_saying_why() {
    let wasm = std::fs::read(env!("FACTORIO_ISR_WASM_ECHO_MONITOR")).unwrap();
    let (code, said, ok) = compile_plugin(&wasm);
    assert!(ok, "{said}");
    assert!(said.is_empty(), "nothing but the code is written: {said}");
    // wasmtime's compiled form is an ELF object.
    assert_eq!(&code[..4], b"\x7fELF");
    let (code, said, ok) = compile_plugin(b"not a component");
    assert!(!ok);
    assert!(code.is_empty(), "no code for what is not a component");
    assert!(!said.trim().is_empty(), "it says why");
}

#[test]
fn a_child_that_cannot_compile_leaves_it_to_the_host_and_the_plugin_loads() {
    // A "binary" that fails at once: the host compiles in process instead.
    factorio_isr::plugin::compile::in_child(Path::new("/bin/false").to_owned());
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(
        ComponentCache::new(Some(dir.path().to_owned())),
        Limits::default(),
    )
    .unwrap();
    let wasm = std::fs::read(env!("FACTORIO_ISR_WASM_ECHO_MONITOR")).unwrap();
    let plugin = runtime.load("echo", &wasm).unwrap();
    assert_eq!(plugin.name(), "echo");
    let cached = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(cached, 1, "compiled here, and kept in the cache");
}
