//! The HTTP face: `/health` (the Python bot's JSON, truthful), `/healthz` (liveness),
//! `/ready` (readiness, naming every component), `/metrics` (Prometheus), and the read side
//! of the admin API: `GET /api/servers` and `GET /api/servers/{tag}`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::servers::Server;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub health: Health,
    pub metrics: Arc<Metrics>,
    pub servers: Arc<Vec<Server>>,
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/healthz", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/servers", get(api_servers))
        .route("/api/servers/{tag}", get(api_server))
        .with_state(state)
}

/// Serves `router` on `addr` until `shutdown` resolves. Binding errors are returned.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `addr`, with a message that says what to do when it is taken.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!("cannot serve HTTP on {addr}: the port is already in use (set HEALTH_CHECK_PORT to another port)")
        } else {
            anyhow::anyhow!("cannot serve HTTP on {addr}: {e}")
        }
    })
}

async fn health(AxumState(s): AxumState<AppState>) -> Response {
    let down = s.health.any_down();
    let body = json!({
        "status": if down { "degraded" } else { "healthy" },
        "service": "factorio-isr",
    });
    let code = if down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

async fn ready(AxumState(s): AxumState<AppState>) -> Response {
    let components = s.health.snapshot();
    let ready = s.health.is_ready();
    let body = json!({ "ready": ready, "components": components });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(AxumState(s): AxumState<AppState>) -> Response {
    let text = s.metrics.render(&s.health);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn api_servers(AxumState(s): AxumState<AppState>) -> Response {
    let views = futures_util::future::join_all(s.servers.iter().map(Server::view)).await;
    Json(json!({ "servers": views })).into_response()
}

async fn api_server(AxumState(s): AxumState<AppState>, Path(tag): Path<String>) -> Response {
    match s.servers.iter().find(|x| x.tag == tag) {
        Some(server) => Json(server.view().await).into_response(),
        None => {
            let shown: String = tag.chars().take(40).collect();
            (
                StatusCode::NOT_FOUND,
                Json(json!({ "error": format!("no server `{shown}`") })),
            )
                .into_response()
        }
    }
}
