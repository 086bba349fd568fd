//! What one plugin instance may touch: its store's state, the WASI context that grants
//! nothing, the memory cap, and the capture of its output into the host's log.

use parking_lot::Mutex;
use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::WitSeverity;
use super::bindings::parser::factorio_isr::plugin::{host, types};
use super::bindings::v0_1::factorio_isr::plugin as v0_1;
use super::bindings::v0_2::factorio_isr::plugin as v0_2;
use super::bindings::v0_3::factorio_isr::plugin as v0_3;

/// Lines of a plugin's output that explain a fault of its `init`.
const LAST_WORDS: usize = 3;
/// Most bytes of guest stdout/stderr kept per call; the rest is counted and dropped.
const OUTPUT_BYTES_PER_CALL: usize = 64 << 10;
/// Most `host.log` lines logged per call; the rest is counted and dropped.
const LOG_LINES_PER_CALL: u32 = 100;
/// Longest `host.log` message logged; longer ones are cut.
const LOG_LINE_BYTES: usize = 4 << 10;

/// Which plugin and server a store belongs to, for log lines.
#[derive(Debug, Clone)]
pub(crate) struct Tag {
    pub plugin: String,
    pub server: String,
}

/// The state inside one plugin's `Store`.
pub(crate) struct SandboxState {
    wasi: WasiCtx,
    table: ResourceTable,
    tag: Tag,
    memory_cap: usize,
    /// Set when the plugin asked for more memory than its cap.
    pub memory_cap_hit: bool,
    /// The size its linear memory has grown to.
    pub memory_bytes: usize,
    output: Capture,
    logged_this_call: u32,
    /// The id of the log the batch being parsed came from (`host.log-source`).
    log_source: String,
    /// `host.log` lines and output bytes dropped by the per-call limits.
    pub suppressed: u64,
}

impl SandboxState {
    /// Tags the guest's output with `server` (a shared instance serves several).
    pub(crate) fn set_server(&mut self, server: &str) {
        if self.tag.server != server {
            self.tag.server = server.to_owned();
        }
    }

    pub(crate) fn new(tag: Tag, memory_cap: usize) -> Self {
        let output = Capture::default();
        // Deny by default: no preopened directories, no environment, no arguments, no
        // network; stdin is empty. Clocks and random numbers are harmless and left on.
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            tag,
            memory_cap,
            memory_cap_hit: false,
            memory_bytes: 0,
            output,
            logged_this_call: 0,
            log_source: String::new(),
            suppressed: 0,
        }
    }

    /// The memory cap this store enforces.
    pub(crate) fn memory_cap(&self) -> usize {
        self.memory_cap
    }

    /// Resets the per-call limits; called before each call into the plugin.
    pub(crate) fn begin_call(&mut self) {
        self.logged_this_call = 0;
    }

    /// Sets what `host.log-source` answers until the next call (empty: not parsing).
    pub(crate) fn set_log_source(&mut self, source: &str) {
        if self.log_source != source {
            source.clone_into(&mut self.log_source);
        }
    }

    /// Sends what the plugin printed during the call to the host's log, one line each;
    /// returns the last lines it printed (at most [`LAST_WORDS`] of them), to explain a fault.
    pub(crate) fn flush_output(&mut self) -> String {
        let (text, dropped) = self.output.take();
        self.suppressed += dropped;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        for line in &lines {
            tracing::info!(plugin = %self.tag.plugin, server = %self.tag.server, "plugin output: {line}");
        }
        if dropped > 0 {
            tracing::warn!(plugin = %self.tag.plugin, server = %self.tag.server, "plugin printed more than {OUTPUT_BYTES_PER_CALL} bytes in one call; {dropped} bytes dropped");
        }
        let last = lines.len().saturating_sub(LAST_WORDS);
        lines[last..]
            .iter()
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime::ResourceLimiter for SandboxState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_cap_hit = true;
            wasmtime::bail!(
                "the plugin reached its memory cap of {} MiB",
                self.memory_cap >> 20
            );
        }
        self.memory_bytes = self.memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl types::Host for SandboxState {}

/// WIT 0.3.0's `host`, for plugins built against it.
impl v0_3::host::Host for SandboxState {
    fn now_ms(&mut self) -> u64 {
        host::Host::now_ms(self)
    }

    fn log(&mut self, level: WitSeverity, message: String) {
        host::Host::log(self, level, message);
    }
}

/// WIT 0.2.0's `host`, for plugins built against it.
impl v0_2::host::Host for SandboxState {
    fn now_ms(&mut self) -> u64 {
        host::Host::now_ms(self)
    }

    fn log(&mut self, level: WitSeverity, message: String) {
        host::Host::log(self, level, message);
    }
}

/// WIT 0.1.0's `host.log`, for plugins built against it.
impl v0_1::host::Host for SandboxState {
    fn log(&mut self, level: WitSeverity, message: String) {
        host::Host::log(self, level, message);
    }
}

impl host::Host for SandboxState {
    fn now_ms(&mut self) -> u64 {
        crate::event::unix_ms::millis(std::time::SystemTime::now())
    }

    fn log_source(&mut self) -> String {
        self.log_source.clone()
    }

    fn log(&mut self, level: WitSeverity, message: String) {
        if self.logged_this_call >= LOG_LINES_PER_CALL {
            self.suppressed += 1;
            return;
        }
        self.logged_this_call += 1;
        let message = factorio_isr_text::cut(message, LOG_LINE_BYTES);
        let (plugin, server) = (&self.tag.plugin, &self.tag.server);
        match level {
            WitSeverity::Debug => tracing::debug!(plugin = %plugin, server = %server, "{message}"),
            WitSeverity::Info | WitSeverity::Notice => {
                tracing::info!(plugin = %plugin, server = %server, "{message}")
            }
            WitSeverity::Warning => tracing::warn!(plugin = %plugin, server = %server, "{message}"),
            WitSeverity::Critical => {
                tracing::error!(plugin = %plugin, server = %server, "{message}")
            }
        }
    }
}

/// A guest's stdout and stderr: bytes are kept (up to a cap) until the host flushes them
/// to its log after the call. Writes always succeed, so a chatty guest never traps on it.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<CaptureBuf>>);

#[derive(Default)]
struct CaptureBuf {
    bytes: Vec<u8>,
    dropped: u64,
}

impl Capture {
    fn push(&self, data: &[u8]) {
        let mut buf = self.0.lock();
        let room = OUTPUT_BYTES_PER_CALL.saturating_sub(buf.bytes.len());
        let keep = data.len().min(room);
        buf.bytes.extend_from_slice(&data[..keep]);
        buf.dropped += (data.len() - keep) as u64;
    }

    fn take(&self) -> (String, u64) {
        let mut buf = self.0.lock();
        let bytes = std::mem::take(&mut buf.bytes);
        let dropped = std::mem::take(&mut buf.dropped);
        (String::from_utf8_lossy(&bytes).into_owned(), dropped)
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(OUTPUT_BYTES_PER_CALL)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(data);
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
