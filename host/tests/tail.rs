//! The tailer against real files: appends, partial lines, both kinds of rotation, deletion,
//! a file that appears late, long lines, invalid UTF-8, resuming from a position, bounded
//! batches through a backlog, and what is not a regular file (FIFOs, devices, folders, links
//! out of the log's folder).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::Duration;

use factorio_isr::tail::lines::Line;
use factorio_isr::tail::{self, ReadLimits, StartAt, TailOptions, TailReader};

#[path = "common/files.rs"]
mod files;

use files::append_bytes as append;

/// Everything there is to read now (a poll reads one bounded batch at most).
fn poll(r: &mut TailReader) -> Vec<String> {
    let mut out: Vec<Line> = Vec::new();
    while r.poll(&mut out).unwrap() {}
    out.into_iter().map(|l| l.text).collect()
}

#[test]
fn starts_at_the_end_and_emits_lines_only_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    append(&log, b"old line\n");
    let mut r = TailReader::new(&log, StartAt::End, 1 << 20);
    assert!(poll(&mut r).is_empty());
    append(&log, b"first\nsec");
    assert_eq!(poll(&mut r), ["first"]);
    append(&log, b"ond\r\n");
    assert_eq!(poll(&mut r), ["second"]);
    assert_eq!(r.stats().lines, 2);
}

#[test]
fn follows_rename_and_create_rotation_without_losing_the_old_files_last_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    append(&log, b"");
    let mut r = TailReader::new(&log, StartAt::End, 1 << 20);
    assert!(poll(&mut r).is_empty());
    append(&log, b"a\n");
    assert_eq!(poll(&mut r), ["a"]);
    // The writer still has the old file open when it is renamed, and writes once more.
    let mut old = OpenOptions::new().append(true).open(&log).unwrap();
    std::fs::rename(&log, dir.path().join("console.log.1")).unwrap();
    old.write_all(b"b\nunfinished").unwrap();
    assert_eq!(poll(&mut r), ["b"], "the renamed file is still followed");
    append(&log, b"c\n");
    assert_eq!(poll(&mut r), ["unfinished", "c"]);
    assert_eq!(r.stats().rotations, 1);
}

#[test]
fn follows_copy_truncate_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    append(&log, b"");
    let mut r = TailReader::new(&log, StartAt::Beginning, 1 << 20);
    append(&log, b"one\ntwo\n");
    assert_eq!(poll(&mut r), ["one", "two"]);
    std::fs::copy(&log, dir.path().join("console.log.1")).unwrap();
    File::create(&log).unwrap(); // truncates in place
    append(&log, b"three\n");
    assert_eq!(poll(&mut r), ["three"]);
    assert_eq!(r.stats().truncations, 1);

    // Truncated and written past the old length before the next look: the first bytes
    // differ, so it is still seen as a new start.
    File::create(&log).unwrap();
    append(&log, b"a much longer first line than before\nfour\n");
    assert_eq!(
        poll(&mut r),
        ["a much longer first line than before", "four"]
    );
    assert_eq!(r.stats().truncations, 2);
}

#[test]
fn waits_for_a_missing_file_and_survives_delete_and_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let mut r = TailReader::new(&log, StartAt::End, 1 << 20);
    assert!(poll(&mut r).is_empty());
    assert!(!r.is_open());
    // A file that appears after start is new: it is read from its beginning.
    append(&log, b"hello\n");
    assert_eq!(poll(&mut r), ["hello"]);
    append(&log, b"more\n");
    assert_eq!(poll(&mut r), ["more"]);
    std::fs::remove_file(&log).unwrap();
    assert!(poll(&mut r).is_empty());
    append(&log, b"reborn\n");
    assert_eq!(poll(&mut r), ["reborn"]);
}

#[test]
fn caps_long_lines_and_replaces_invalid_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    append(&log, b"");
    let mut r = TailReader::new(&log, StartAt::End, 1000);
    assert!(poll(&mut r).is_empty());
    let mut data = vec![b'x'; 10 << 20];
    data.extend_from_slice(b"\nbad \xff byte\n");
    append(&log, &data);
    let mut out = Vec::new();
    while r.poll(&mut out).unwrap() {}
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].text.len(), 1000);
    assert_eq!(out[0].truncated_bytes, (10 << 20) - 1000);
    assert_eq!(out[1].text, "bad \u{FFFD} byte");
    assert_eq!(r.stats().truncated_lines, 1);
}

#[test]
fn resumes_from_a_position_in_the_same_file_and_starts_over_in_another() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    append(&log, b"1\n2\npartial");
    let mut r = TailReader::new(&log, StartAt::Beginning, 1 << 20);
    assert_eq!(poll(&mut r), ["1", "2"]);
    let pos = r.position().unwrap();
    assert_eq!(
        pos.offset, 4,
        "the position is after the last complete line"
    );
    drop(r);
    append(&log, b" done\n3\n");
    let mut r = TailReader::new(&log, StartAt::Position(pos), 1 << 20);
    assert_eq!(poll(&mut r), ["partial done", "3"]);

    // Another file at the same path (rotated while we were down): read it from the start.
    std::fs::write(&log, b"new file\n").unwrap();
    let mut r = TailReader::new(&log, StartAt::Position(pos), 1 << 20);
    assert_eq!(poll(&mut r), ["new file"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_delivers_appended_lines_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    append(&log, b"before\n");
    let reader = TailReader::new(&log, StartAt::End, 1 << 20);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<factorio_isr::tail::Batch>(8);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // A long poll interval: lines must arrive through filesystem events.
    let options = TailOptions {
        poll_interval: Duration::from_secs(3600),
        max_batch_lines: 2,
        ..TailOptions::default()
    };
    let status = tail::Status {
        server: "test".into(),
        log: 0,
        log_id: "console".into(),
        health: factorio_isr::observe::health::Health::default(),
        component: factorio_isr::observe::health::Part::Tailer(
            factorio_isr::observe::health::LogPart {
                server: "test".into(),
                log: None,
            },
        ),
        positioned: None,
    };
    let task = tokio::spawn(tail::run(reader, tx, options, stopped, status.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&log, b"a\nb\nc\n");
    let mut got = Vec::new();
    while got.len() < 3 {
        let batch = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(batch.lines.len() <= 2);
        got.extend(batch.lines.into_iter().map(|l| l.text));
    }
    assert_eq!(got, ["a", "b", "c"]);
    assert!(status.health.is_ready());
    stop.send(true).unwrap();
    let reader = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap()
        .expect("the reader, given back");
    assert_eq!(
        reader.position().unwrap().offset,
        std::fs::metadata(&log).unwrap().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_batch_says_where_reading_starts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    append(&log, b"old\n");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<factorio_isr::tail::Batch>(8);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let status = tail::Status {
        server: "test".into(),
        log: 0,
        log_id: "console".into(),
        health: factorio_isr::observe::health::Health::default(),
        component: factorio_isr::observe::health::Part::Tailer(
            factorio_isr::observe::health::LogPart {
                server: "test".into(),
                log: None,
            },
        ),
        positioned: None,
    };
    let reader = TailReader::new(&log, StartAt::End, 1 << 20);
    let task = tokio::spawn(tail::run(
        reader,
        tx,
        TailOptions::default(),
        stopped,
        status,
    ));
    let first = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(first.lines.is_empty());
    assert_eq!(
        first.position.map(|p| p.offset),
        Some(4),
        "at the end, as asked"
    );
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn a_backlog_is_read_in_bounded_batches_each_with_its_own_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let text: String = (0..10_000).map(|i| format!("line {i:05}\n")).collect();
    append(&log, text.as_bytes());
    let limits = ReadLimits {
        lines: 1000,
        bytes: 1 << 20,
    };
    let mut r = TailReader::new(&log, StartAt::Beginning, 1 << 20).limits(limits);
    let mut positions = Vec::new();
    loop {
        let mut out = Vec::new();
        let more = r.poll(&mut out).unwrap();
        assert!(out.len() <= 1000, "{} lines in one batch", out.len());
        if out.is_empty() {
            assert!(!more);
            break;
        }
        let pos = r.position().unwrap();
        assert_eq!(
            pos.offset as usize,
            positions.len() * 11_000 + out.len() * 11
        );
        positions.push((pos, out.last().unwrap().text.clone()));
    }
    assert_eq!(positions.len(), 10);
    // Resuming from any batch's position gives exactly the lines after it.
    let (pos, last) = &positions[3];
    assert_eq!(last, "line 03999");
    let mut again = TailReader::new(&log, StartAt::Position(*pos), 1 << 20);
    let mut out = Vec::new();
    again.poll(&mut out).unwrap();
    assert_eq!(out[0].text, "line 04000");

    // Long lines: the byte bound ends a batch.
    let wide = dir.path().join("wide.log");
    let line = format!("{}\n", "x".repeat(9_999));
    append(&wide, line.repeat(1_000).as_bytes());
    let limits = ReadLimits {
        lines: 100_000,
        bytes: 256 << 10,
    };
    let mut r = TailReader::new(&wide, StartAt::Beginning, 1 << 20).limits(limits);
    let (mut seen, mut polls) = (0, 0);
    while seen < 1_000 {
        let mut out = Vec::new();
        r.poll(&mut out).unwrap();
        let bytes: usize = out.iter().map(|l| l.text.len() + 1).sum();
        assert!(
            bytes <= (256 << 10) + (64 << 10),
            "{bytes} bytes in one batch"
        );
        seen += out.len();
        polls += 1;
    }
    assert!(polls >= 30, "{polls} batches for 10 MB");
}

fn refused(r: &mut TailReader) -> String {
    let err = r.poll(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    err.to_string()
}

#[test]
fn a_fifo_a_device_and_a_folder_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.log");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // On a thread with a hang guard: opening a FIFO with no writer blocks, unless it is
    // never opened that way.
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let mut r = TailReader::new(&path, StartAt::End, 1 << 20);
        let said = refused(&mut r);
        // The FIFO replaced by a file: read from its beginning.
        std::fs::remove_file(&path).unwrap();
        append(&path, b"hello\n");
        let _ = tx.send((said, poll(&mut r)));
    });
    let (said, after) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the FIFO held the reader");
    assert!(
        said.contains("FIFO") && said.contains("not a regular file"),
        "{said}"
    );
    assert_eq!(after, ["hello"]);

    let mut zero = TailReader::new("/dev/zero", StartAt::Beginning, 1 << 20);
    assert!(refused(&mut zero).contains("character device"));
    let mut folder = TailReader::new(dir.path(), StartAt::Beginning, 1 << 20);
    assert!(refused(&mut folder).contains("folder"));
}

#[test]
fn a_link_is_followed_only_into_the_allowed_folders() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, elsewhere) = (dir.path().join("logs"), dir.path().join("elsewhere"));
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    append(&logs.join("real.log"), b"inside\n");
    append(&elsewhere.join("secret"), b"outside\n");
    let log = logs.join("console.log");

    std::os::unix::fs::symlink("real.log", &log).unwrap();
    let mut r = TailReader::new(&log, StartAt::Beginning, 1 << 20);
    assert_eq!(poll(&mut r), ["inside"], "a link within the log's folder");

    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("secret"), &log).unwrap();
    let mut r = TailReader::new(&log, StartAt::Beginning, 1 << 20);
    let said = refused(&mut r);
    assert!(
        said.contains("outside") && said.contains("log_links_within"),
        "{said}"
    );
    let mut r = TailReader::new(&log, StartAt::Beginning, 1 << 20).links_within(vec![elsewhere]);
    assert_eq!(poll(&mut r), ["outside"], "allowed by the setting");

    // A link to a device is no file, wherever it is.
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &log).unwrap();
    let mut r =
        TailReader::new(&log, StartAt::Beginning, 1 << 20).links_within(vec!["/dev".into()]);
    assert!(refused(&mut r).contains("character device"));
}
