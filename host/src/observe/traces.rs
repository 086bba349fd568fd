//! Traces: OpenTelemetry spans of a batch's way (tail → parsers → monitors → sinks), RCON
//! commands, Discord API calls and slash commands, exported over OTLP/HTTP (protobuf) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set.
//!
//! The standard variables apply (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_BSP_*`, `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`). Without an endpoint nothing of
//! this runs: no span is even created (see [`crate::observe::logging`]).
//!
//! Spans are exported from the SDK's batch thread, with a blocking HTTP client of its own,
//! so export never holds an async runtime thread and outlives every runtime of the process
//! (the last spans are flushed when [`Traces`] is dropped, at the end of `main`).

use parking_lot::Mutex;
use std::io::Read;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing::dispatcher::WeakDispatch;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The service name spans carry unless `OTEL_SERVICE_NAME` (or `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`) says otherwise.
pub const SERVICE_NAME: &str = "factorio-isr";

/// The largest answer read from a collector.
const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// Why traces are off or an export failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TracesError {
    #[error("OTEL_TRACES_EXPORTER={0} is not supported (only otlp or none); traces are off")]
    Exporter(String),
    /// A protocol variable (its name) set to one this build does not speak.
    #[error("{0}={1} is not supported (only http/protobuf); traces are off")]
    Protocol(&'static str, String),
    #[error("cannot set up the trace exporter: {0}")]
    Setup(String),
    /// The collector could not be reached (the URL, which may carry credentials, left out).
    #[error("cannot reach the collector: {0}")]
    Unreachable(String),
    #[error("cannot read the collector's answer: {0}")]
    Answer(String),
    #[error("the collector answered {0}")]
    Refused(reqwest::StatusCode),
}

/// Whether traces are wanted, from the environment: none when no endpoint is set, when
/// `OTEL_SDK_DISABLED=true` or when `OTEL_TRACES_EXPORTER=none`; an error for settings this
/// build cannot honour (another exporter or protocol).
pub fn wanted(env: impl Fn(&str) -> Option<String>) -> Result<bool, TracesError> {
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(false);
    }
    match set("OTEL_TRACES_EXPORTER").map(|v| v.trim().to_ascii_lowercase()) {
        None => {}
        Some(v) if v == "otlp" => {}
        Some(v) if v == "none" => return Ok(false),
        Some(v) => return Err(TracesError::Exporter(v)),
    }
    for key in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(p) = set(key)
            && p.trim() != "http/protobuf"
        {
            return Err(TracesError::Protocol(key, p.trim().to_owned()));
        }
    }
    Ok(true)
}

/// The running exporter; dropping it flushes the spans still queued.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Builds the exporter from the environment (the endpoint, headers and timeout, the
    /// sampler and the batch settings are the SDK's standard variables).
    pub fn start() -> Result<Self, TracesError> {
        let timeout = timeout_from_env();
        let client = BlockingClient::new(timeout)?;
        let exporter = SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_timeout(timeout)
            .build()
            .map_err(|e| TracesError::Setup(e.to_string()))?;
        let mut resource = Resource::builder();
        if !service_name_set(|k| std::env::var(k).ok()) {
            resource = resource.with_service_name(SERVICE_NAME);
        }
        let resource = resource
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Self { provider })
    }

    /// The layer that turns this crate's spans into OpenTelemetry spans, and notes their
    /// ids for the JSON log (see [`TraceIds`]).
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let tracer = self.provider.tracer(SERVICE_NAME);
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .and_then(IdsLayer::default())
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("traces: the last spans may not have been exported: {e}");
        }
    }
}

/// Whether the environment names the service already.
fn service_name_set(env: impl Fn(&str) -> Option<String>) -> bool {
    env("OTEL_SERVICE_NAME").is_some_and(|v| !v.trim().is_empty())
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|v| {
            v.split(',')
                .any(|kv| kv.split('=').next().map(str::trim) == Some("service.name"))
        })
}

/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` or `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), 10 s
/// by default.
fn timeout_from_env() -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.trim().parse::<u64>().ok())
    .map(Duration::from_millis)
    .unwrap_or(Duration::from_secs(10))
}

/// The trace and span id of a span, as hex, for log lines written inside it.
#[derive(Debug, Clone)]
pub struct TraceIds {
    pub trace_id: String,
    pub span_id: String,
}

/// Notes a span's OpenTelemetry ids in its extensions ([`TraceIds`]) when it is first
/// entered (the OpenTelemetry layer starts its span only then), where the JSON log finds
/// them for the lines written inside it. Runs after the OpenTelemetry layer.
#[derive(Default)]
struct IdsLayer {
    dispatch: OnceLock<WeakDispatch>,
}

impl<S> Layer<S> for IdsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        if span.extensions().get::<TraceIds>().is_some() {
            return;
        }
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else {
            return;
        };
        let Some(cx) = tracing_opentelemetry::get_otel_context(id, &dispatch) else {
            return;
        };
        let otel = cx.span();
        let sc = otel.span_context();
        if sc.is_valid() {
            span.extensions_mut().insert(TraceIds {
                trace_id: sc.trace_id().to_string(),
                span_id: sc.span_id().to_string(),
            });
        }
    }
}

/// The exporter's HTTP client: reqwest's blocking client, called on the SDK's batch thread
/// (never on a runtime thread). A failing collector is logged when the problem starts or
/// changes and when it ends, not at every export.
#[derive(Debug)]
struct BlockingClient {
    client: reqwest::blocking::Client,
    problem: Mutex<Option<String>>,
}

impl BlockingClient {
    fn new(timeout: Duration) -> Result<Self, TracesError> {
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TracesError::Setup(format!("its HTTP client: {e}")))?;
        Ok(Self {
            client,
            problem: Mutex::new(None),
        })
    }

    fn exchange(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TracesError> {
        let (parts, body) = request.into_parts();
        let mut out = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()
            // The URL may carry credentials; the error never shows it.
            .map_err(|e| TracesError::Unreachable(e.without_url().to_string()))?;
        let mut answer = Response::builder().status(out.status());
        for (k, v) in out.headers() {
            answer = answer.header(k, v);
        }
        let mut bytes = Vec::new();
        (&mut out)
            .take(MAX_ANSWER_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| TracesError::Answer(e.to_string()))?;
        let answer = answer
            .body(Bytes::from(bytes))
            .map_err(|e| TracesError::Answer(e.to_string()))?;
        if !answer.status().is_success() {
            return Err(TracesError::Refused(answer.status()));
        }
        Ok(answer)
    }

    fn note(&self, problem: Option<&str>) {
        let mut last = self.problem.lock();
        match (problem, last.as_deref()) {
            (Some(p), Some(l)) if p == l => {}
            (Some(p), _) => {
                tracing::warn!("cannot export traces: {p}");
                *last = Some(p.to_owned());
            }
            (None, Some(_)) => {
                tracing::info!("traces are exported again");
                *last = None;
            }
            (None, None) => {}
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for BlockingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        match self.exchange(request) {
            Ok(answer) => {
                self.note(None);
                Ok(answer)
            }
            Err(problem) => {
                let problem = problem.to_string();
                self.note(Some(&problem));
                Err(problem.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_set_and_nothing_turns_them_off() {
        assert_eq!(wanted(env(&[])), Ok(false));
        assert_eq!(
            wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])),
            Ok(false)
        );
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")];
        assert_eq!(wanted(env(&on)), Ok(true));
        let traces_only = [("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c/v1/traces")];
        assert_eq!(wanted(env(&traces_only)), Ok(true));
        for off in [
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(wanted(env(&[on[0], off])), Ok(false), "{off:?}");
        }
        let explicit = [on[0], ("OTEL_TRACES_EXPORTER", "otlp")];
        assert_eq!(wanted(env(&explicit)), Ok(true));
    }

    #[test]
    fn settings_this_build_cannot_honour_are_refused_with_the_variable_named() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        let err = wanted(env(&[on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap_err();
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
            "{err}"
        );
        let err = wanted(env(&[on, ("OTEL_TRACES_EXPORTER", "zipkin")])).unwrap_err();
        assert_eq!(err, TracesError::Exporter("zipkin".into()));
        let fine = [on, ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")];
        assert_eq!(wanted(env(&fine)), Ok(true));
    }

    #[test]
    fn the_service_is_named_unless_the_environment_names_it() {
        assert!(!service_name_set(env(&[])));
        assert!(service_name_set(env(&[("OTEL_SERVICE_NAME", "isr-eu")])));
        assert!(service_name_set(env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod, service.name=isr-eu"
        )])));
        assert!(!service_name_set(env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.namespace=factorio"
        )])));
    }
}
