//! The process's log: `tracing` to stderr, filtered by `LOG_LEVEL`, as text or JSON
//! (`LOG_FORMAT=console|json`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `LOG_LEVEL` takes a level (`info`) or a full filter
/// (`info,factorio_isr::plugin=debug`); the default is `info`.
pub fn init() {
    let filter = std::env::var("LOG_LEVEL")
        .ok()
        .and_then(|l| EnvFilter::try_new(l).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests calling in twice) is harmless, so its error is ignored.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A panic is an ERROR in the log like any other, with the thread it happened on (the
    // default hook writes to stderr past the log's format).
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(thread, location, "panic: {}", panic_text(info.payload()));
    }));
}

/// The message a panic carried.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
