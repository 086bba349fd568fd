//! A local OTLP/HTTP trace receiver: it takes what an OpenTelemetry exporter sends to
//! `/v1/traces`, decodes it with the protocol's own messages (`opentelemetry-proto`) and
//! keeps every span.
//!
//! It refuses what a collector refuses, as the OTLP specification says: another path is
//! 404, another method 405, a content type other than `application/x-protobuf` 415, a body
//! that does not decode 400 with a `google.rpc.Status`; an accepted request is answered 200
//! with an `ExportTraceServiceResponse` in protobuf.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;

/// `google.rpc.Status`, the body of a refusal (its `details` left out).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// One span as received.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_id: String,
    pub name: String,
    /// Its attributes, as text.
    pub attributes: BTreeMap<String, String>,
    /// The resource's attributes (`service.name`, …).
    pub resource: BTreeMap<String, String>,
    /// The OTLP status code (0 unset, 1 ok, 2 error).
    pub status: i32,
}

#[derive(Default)]
struct Inner {
    spans: Mutex<Vec<Span>>,
    refused: Mutex<Vec<String>>,
}

/// The receiver; it runs until dropped.
pub struct Receiver {
    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` is set to.
    pub endpoint: String,
    inner: Arc<Inner>,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    /// Listens on a free loopback port.
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let inner = Arc::new(Inner::default());
        let endpoint = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = Router::new()
                .route("/v1/traces", post(export))
                .with_state(inner.clone());
            tokio::spawn(async move { axum::serve(listener, app).await });
            format!("http://{addr}")
        });
        Self {
            endpoint,
            inner,
            _rt: rt,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.inner.spans.lock().unwrap().clone()
    }

    /// Why requests were refused, if any were.
    pub fn refused(&self) -> Vec<String> {
        self.inner.refused.lock().unwrap().clone()
    }
}

async fn export(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let refuse = |status: StatusCode, why: String| {
        inner.refused.lock().unwrap().push(why.clone());
        let status_message = RpcStatus {
            code: 3,
            message: why,
        };
        (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            status_message.encode_to_vec(),
        )
            .into_response()
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/x-protobuf" {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {content_type:?}"),
        );
    }
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content encoding {encoding:?}"),
        );
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("cannot decode: {e}")),
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(Span {
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_id: hex::encode(&span.parent_span_id),
                    name: span.name,
                    attributes: attributes(&span.attributes),
                    resource: resource.clone(),
                    status: span.status.map_or(0, |s| s.code),
                });
            }
        }
    }
    inner.spans.lock().unwrap().extend(spans);
    let answer = ExportTraceServiceResponse {
        partial_success: None,
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        answer.encode_to_vec(),
    )
        .into_response()
}

fn attributes(
    list: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}
