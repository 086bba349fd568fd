//! Events appended to a file, one JSON object per line, flushed after every batch.

use parking_lot::Mutex;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Batch, Delivery, Sink, SinkError};
use crate::alert::Notice;

/// Appends `{"server": ..., "kind": ..., ...}` lines to a file (created if missing).
pub struct JsonlSink {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

#[derive(Serialize)]
struct Record<'a> {
    server: &'a str,
    #[serde(flatten)]
    event: &'a Notice,
}

impl JsonlSink {
    /// A sink writing to `path`; the file is opened on first delivery (and again after an error).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: Mutex::new(None),
        }
    }

    /// The file it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, server: &str, events: &[Notice]) -> Result<(), SinkError> {
        let mut buf = Vec::with_capacity(events.len() * 200);
        for event in events {
            serde_json::to_writer(&mut buf, &Record { server, event })
                .map_err(|e| SinkError::Other(e.to_string()))?;
            buf.push(b'\n');
        }
        let mut slot = self.file.lock();
        if slot.is_none() {
            *slot = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let Some(file) = slot.as_mut() else {
            return Err(SinkError::Other("no file".into()));
        };
        // One write(2) per batch for a regular file, so a crash leaves whole lines behind.
        if let Err(e) = file.write_all(&buf).and_then(|()| file.flush()) {
            *slot = None;
            return Err(e.into());
        }
        Ok(())
    }
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    fn for_people(&self) -> bool {
        false
    }

    fn deliver<'a>(&'a self, batch: &'a Batch<'a>) -> Delivery<'a> {
        Box::pin(async move {
            tokio::task::block_in_place(|| self.write(batch.server(), batch.events()))?;
            batch.all_done();
            Ok(())
        })
    }
}
