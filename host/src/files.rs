//! Reading a file the operator named (a plugin, a pinned blob, a pattern file) without
//! trusting what is at the path: only a regular file (a link is followed to one), opened
//! without blocking, and read up to a cap, so a FIFO cannot hang the host and `/dev/zero`
//! or a huge file cannot exhaust its memory.

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What a file is, in words, when it is not a regular file.
pub fn kind_of(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a file"
    })
}

/// The bytes of the regular file at `path`, at most `max` of them; an error (naming the
/// path) for anything else: a FIFO, device, socket or folder, or a file larger than `max`.
pub fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(named)?;
    let meta = file.metadata().map_err(named)?;
    if let Some(kind) = kind_of(&meta) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is {kind}, not a regular file", path.display()),
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is larger than the {} bytes allowed",
                path.display(),
                max
            ),
        )
    };
    if meta.len() > max {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow while it is read: the cap holds all the same.
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(named)?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_and_refuses_the_rest_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.wasm");
        std::fs::write(&file, b"\0asm1234").unwrap();
        assert_eq!(read_regular(&file, 100).unwrap(), b"\0asm1234");
        let link = dir.path().join("link.wasm");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(
            read_regular(&link, 100).unwrap(),
            b"\0asm1234",
            "a link to a file"
        );

        let err = read_regular(&file, 4).unwrap_err().to_string();
        assert!(err.contains("larger than the 4 bytes allowed"), "{err}");
        let zero = dir.path().join("zero.wasm");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = read_regular(&zero, 1 << 30).unwrap_err().to_string();
        assert!(err.contains("character device"), "{err}");
        let fifo = dir.path().join("fifo.wasm");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let err = read_regular(&fifo, 100).unwrap_err().to_string();
        assert!(err.contains("FIFO"), "{err}");
        let err = read_regular(dir.path(), 100).unwrap_err().to_string();
        assert!(err.contains("folder"), "{err}");
    }
}
