//! Writing to logs as the game does: appending. Shared by the end-to-end tests, the tailer's
//! tests and the pipeline benchmark (`#[path]`).
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

/// Appends `text` to the file at `path`, creating it if needed.
pub fn append(path: &Path, text: &str) {
    append_bytes(path, text.as_bytes());
}

/// Appends `data` (any bytes: invalid UTF-8, partial lines) to the file at `path`.
pub fn append_bytes(path: &Path, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}
