//! The process's log: `tracing` to stderr, filtered by `LOG_LEVEL`, as text or JSON
//! (`LOG_FORMAT=console|json`); and, when an OTLP endpoint is set, the traces of
//! [`super::traces`] beside it.

use tracing::Subscriber;
use tracing_subscriber::Registry;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Identity, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, filter};

use super::traces::{TraceIds, Traces};

/// What [`init`] started; keep it until the process ends (dropping it flushes the traces).
#[must_use = "dropping it ends the traces"]
pub struct Telemetry {
    _traces: Option<Traces>,
}

/// Installs the global subscriber. `LOG_LEVEL` takes a level (`info`) or a full filter
/// (`info,factorio_isr::plugin=debug`); the default is `info`. Traces are exported when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set; without it no span is
/// created at all, so the spans along the hot path cost nothing.
pub fn init() -> Telemetry {
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let level = std::env::var("LOG_LEVEL")
        .ok()
        .and_then(|l| EnvFilter::try_new(l).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (traces, problem) = match super::traces::wanted(|k| std::env::var(k).ok()) {
        Ok(true) => match Traces::start() {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(e)),
        },
        Ok(false) => (None, None),
        Err(e) => (None, Some(e)),
    };
    // A second init (tests calling in twice) is harmless, so its error is ignored.
    let _ = subscriber(json, level, traces.as_ref()).try_init();
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    } else if traces.is_some() {
        tracing::info!("exporting traces over OTLP/HTTP");
    }
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
    Telemetry { _traces: traces }
}

/// The process's subscriber: the log to stderr at `level`, and the traces when there are.
fn subscriber(
    json: bool,
    level: EnvFilter,
    traces: Option<&Traces>,
) -> impl Subscriber + Send + Sync + for<'a> LookupSpan<'a> {
    // Boxed rather than an `Option`: an `Option` layer does not pass on the dispatch the
    // trace-id layer needs. Without traces it is a layer that wants nothing.
    let traced: Box<dyn Layer<Registry> + Send + Sync> = match traces {
        Some(t) => t
            .layer()
            .with_filter(filter::Targets::new().with_target("factorio_isr", tracing::Level::INFO))
            .boxed(),
        None => Identity::new().with_filter(LevelFilter::OFF).boxed(),
    };
    tracing_subscriber::registry()
        .with(traced)
        .with(log_layer(json, level, traces.is_some()))
}

/// The log to stderr. It sees spans only when traces are on (text lines then name the spans
/// they were written in, JSON lines carry `trace_id` and `span_id`); otherwise no layer wants
/// a span and none is created.
fn log_layer<S>(json: bool, level: EnvFilter, spans: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let wanted = filter::filter_fn(move |m| spans || !m.is_span());
    if json {
        let mut layer = json_subscriber::layer()
            .with_writer(std::io::stderr)
            .with_current_span(false)
            .with_span_list(false);
        let inner = layer.inner_layer_mut();
        inner.add_from_extension_ref::<TraceIds, _, _>("trace_id", |ids| Some(&ids.trace_id));
        inner.add_from_extension_ref::<TraceIds, _, _>("span_id", |ids| Some(&ids.span_id));
        layer.with_filter(level.and(wanted)).boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(level.and(wanted))
            .boxed()
    }
}

/// The message a panic carried.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With traces off, no layer wants a span: creating one is a no-op, so the spans along
    /// the hot path cost a callsite check.
    #[test]
    fn without_traces_no_span_is_created() {
        for json in [false, true] {
            let subscriber = subscriber(json, EnvFilter::new("trace"), None);
            tracing::subscriber::with_default(subscriber, || {
                let span = tracing::info_span!("batch", server = "prod", lines = 3);
                assert!(span.is_disabled(), "json: {json}");
                assert!(
                    tracing::enabled!(tracing::Level::INFO),
                    "events still go to the log"
                );
            });
        }
    }
}
