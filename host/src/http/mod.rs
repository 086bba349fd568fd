//! The HTTP face (a test checks that this list and the routes agree):
//!
//! - `GET /health`: the Python bot's JSON, truthful; `GET /healthz`: liveness;
//!   `GET /ready`: readiness, naming every component; `GET /metrics`: Prometheus.
//! - The admin API's reads (the bearer token, when reads are protected):
//!   `GET /api/servers`, `GET /api/servers/{tag}`, compare mode's report
//!   `GET /api/servers/{tag}/compare`, and cluster mode's view `GET /api/cluster` (404
//!   outside cluster mode).
//! - Its writes, which need the bearer token (and are off without one):
//!   `POST /api/servers/{tag}/reload`, `POST /api/servers/{tag}/rollback`,
//!   `POST /api/servers/{tag}/promote`, `POST /api/servers/{tag}/stop`,
//!   `POST /api/servers/{tag}/start`, and `POST /api/reload` (every server).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::config::Secret;
use crate::observe::health::Health;
use crate::observe::metrics::Metrics;
use crate::reload::{ReloadError, Reloader, ServerReload};
use crate::servers::Server;
use crate::swap::slot::Slot;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub health: Health,
    pub metrics: Arc<Metrics>,
    pub servers: Arc<Vec<Server>>,
    /// Reloads for the write endpoints (none: they answer 503).
    pub reloader: Option<Arc<Reloader>>,
    pub auth: ApiAuth,
    /// Cluster mode: the cluster as this instance sees it (none: not in cluster mode).
    pub cluster: Option<tokio::sync::watch::Receiver<crate::cluster::Status>>,
}

/// Who may use the admin API.
#[derive(Clone, Default)]
pub struct ApiAuth {
    /// The bearer token of `FACTORIO_ISR_API_TOKEN`; none turns the writes off.
    pub token: Option<Secret>,
    /// Whether reads (`GET /api/...`) need the token too (`FACTORIO_ISR_API_READS=token`).
    pub reads_need_token: bool,
}

impl ApiAuth {
    /// From the environment (and Docker secrets): `FACTORIO_ISR_API_TOKEN`,
    /// `FACTORIO_ISR_API_READS`.
    pub fn from_env() -> Self {
        Self {
            token: crate::config::SecretSource::default()
                .lookup(&["FACTORIO_ISR_API_TOKEN".to_owned()]),
            reads_need_token: std::env::var("FACTORIO_ISR_API_READS").is_ok_and(|v| v == "token"),
        }
    }

    /// Lets a request through, or says why not. The token is compared in constant time
    /// and never echoed.
    fn check(&self, headers: &HeaderMap, write: bool) -> Result<(), ApiError> {
        if !write && !self.reads_need_token {
            return Ok(());
        }
        let Some(token) = &self.token else {
            return Err(error(
                StatusCode::FORBIDDEN,
                "the admin API's writes are off: set FACTORIO_ISR_API_TOKEN to turn them on",
            ));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        use subtle::ConstantTimeEq;
        if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
            Ok(())
        } else {
            Err(error(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is needed",
            ))
        }
    }
}

/// An API error: a status and a message for the client (never a secret).
#[derive(Debug)]
pub struct ApiError {
    code: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.code, Json(json!({ "error": self.message }))).into_response();
        if self.code == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

fn error(code: StatusCode, message: &str) -> ApiError {
    ApiError {
        code,
        message: message.to_owned(),
    }
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
        .route("/api/servers/{tag}/reload", post(api_reload))
        .route("/api/servers/{tag}/rollback", post(api_rollback))
        .route("/api/servers/{tag}/promote", post(api_promote))
        .route("/api/servers/{tag}/compare", get(api_compare))
        .route("/api/servers/{tag}/stop", post(api_stop))
        .route("/api/servers/{tag}/start", post(api_start))
        .route("/api/reload", post(api_reload_all))
        .route("/api/cluster", get(api_cluster))
        .with_state(state)
}

/// How long a client may take to send a request's headers: a connection that sends them
/// slowly or never (5,000 half-sent requests, say) is closed, not held.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shutdown waits for requests under way.
const GRACE: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the kernel's backlog until one ends. With
/// [`MAX_BUF_BYTES`] each (hyper may read one more chunk past it before refusing), this
/// bounds what clients can make the server hold to about 128 MiB.
pub const MAX_CONNECTIONS: usize = 1024;
/// The most a connection may buffer of a request's head (hyper's default is ~400 KiB); a
/// longer head is refused.
pub const MAX_BUF_BYTES: usize = 64 << 10;

/// Serves the API on `listener` until `shutdown` resolves, over HTTP/1.1 with a deadline
/// for each request's headers ([`HEADER_READ_TIMEOUT`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let app = router(state);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_BYTES);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, say: wait a moment instead of spinning.
                        tracing::debug!("cannot accept an HTTP connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let conn = http.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(slot);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(GRACE, graceful.shutdown()).await;
    Ok(())
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

async fn api_servers(
    AxumState(s): AxumState<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.auth.check(&headers, false)?;
    let views = futures_util::future::join_all(s.servers.iter().map(Server::view)).await;
    Ok(Json(json!({ "servers": views })).into_response())
}

/// `GET /api/cluster`: the live instances, who owns each server and who runs the Discord
/// gateway, as this instance last read them from etcd; 404 outside cluster mode.
async fn api_cluster(
    AxumState(s): AxumState<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.auth.check(&headers, false)?;
    let Some(status) = &s.cluster else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "not in cluster mode (servers.yml has no cluster section)",
        ));
    };
    let status = status.borrow().clone();
    Ok(Json(status).into_response())
}

fn find<'a>(s: &'a AppState, tag: &str) -> Result<&'a Server, ApiError> {
    s.servers.iter().find(|x| x.tag == tag).ok_or_else(|| {
        let shown: String = tag.chars().take(40).collect();
        error(StatusCode::NOT_FOUND, &format!("no server `{shown}`"))
    })
}

async fn api_server(
    AxumState(s): AxumState<AppState>,
    Path(tag): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.auth.check(&headers, false)?;
    Ok(Json(find(&s, &tag)?.view().await).into_response())
}

fn reload_error(e: &ReloadError) -> ApiError {
    let code = match e {
        ReloadError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadError::NoPrevious
        | ReloadError::NoLog(_)
        | ReloadError::NoMonitors(_)
        | ReloadError::NoCandidate(_) => StatusCode::CONFLICT,
        ReloadError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        ReloadError::NotKept(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(code, &e.to_string())
}

fn writer(s: &AppState, headers: &HeaderMap) -> Result<Arc<Reloader>, ApiError> {
    s.auth.check(headers, true)?;
    s.reloader
        .clone()
        .ok_or_else(|| error(StatusCode::SERVICE_UNAVAILABLE, "reloads are not available"))
}

async fn api_reload(
    AxumState(s): AxumState<AppState>,
    Path(tag): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let reloader = writer(&s, &headers)?;
    let done = reloader.reload(find(&s, &tag)?).await;
    Ok(slots_response(&done))
}

/// A reload's or promotion's answer: each slot's outcome; 422 when a slot was rejected;
/// 500 when a new version is live but could not be kept for the next start.
fn slots_response(done: &ServerReload) -> Response {
    let code = match (done.error(), done.not_kept()) {
        (Some(e), _) => reload_error(e).code,
        (None, Some(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        (None, None) => StatusCode::OK,
    };
    let mut body = serde_json::to_value(done).unwrap_or_default();
    if let (Some(why), Some(map)) = (done.not_kept(), body.as_object_mut()) {
        map.insert("error".into(), why.into());
    }
    (code, Json(body)).into_response()
}

/// Which slot a request is about (`?slot=parsers|monitors`).
#[derive(Debug, serde::Deserialize)]
struct SlotQuery {
    slot: Option<Slot>,
}

async fn api_rollback(
    AxumState(s): AxumState<AppState>,
    Path(tag): Path<String>,
    Query(query): Query<SlotQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let reloader = writer(&s, &headers)?;
    let (slot, swapped) = reloader
        .rollback(find(&s, &tag)?, query.slot)
        .await
        .map_err(|e| reload_error(&e))?;
    let mut body = json!({
        "result": "rolled_back",
        "slot": slot,
        "from": swapped.from,
        "to": swapped.to,
    });
    // Live now, but a restart would bring the other version back: say so, not 200.
    let code = match &swapped.not_kept {
        Some(why) => {
            body["error"] = why.as_str().into();
            StatusCode::INTERNAL_SERVER_ERROR
        }
        None => StatusCode::OK,
    };
    Ok((code, Json(body)).into_response())
}

async fn api_stop(
    AxumState(s): AxumState<AppState>,
    Path(tag): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    run_order(&s, &tag, &headers, false).await
}

async fn api_start(
    AxumState(s): AxumState<AppState>,
    Path(tag): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    run_order(&s, &tag, &headers, true).await
}

/// Stops or starts a server's parts through its supervisor: 200 with the state reached;
/// 503 when the host is stopping (or the server has no supervisor).
async fn run_order(
    s: &AppState,
    tag: &str,
    headers: &HeaderMap,
    run: bool,
) -> Result<Response, ApiError> {
    s.auth.check(headers, true)?;
    let server = find(s, tag)?;
    if s.cluster.is_some() {
        return Err(error(
            StatusCode::CONFLICT,
            "cluster mode: where a server runs is decided by its election, not by orders",
        ));
    }
    let reached = server.control.order(run).await.ok_or_else(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server's supervisor does not take orders (the host is stopping)",
        )
    })?;
    Ok(Json(json!({ "server": tag, "run": reached })).into_response())
}

async fn api_promote(
    AxumState(s): AxumState<AppState>,
    Path(tag): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let reloader = writer(&s, &headers)?;
    let done = reloader
        .promote(find(&s, &tag)?)
        .await
        .map_err(|e| reload_error(&e))?;
    Ok(slots_response(&done))
}

async fn api_compare(
    AxumState(s): AxumState<AppState>,
    Path(tag): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.auth.check(&headers, false)?;
    let server = find(&s, &tag)?;
    let parsers = server.parser_compare.lock().clone();
    let monitors = server.monitor_compare.lock().clone();
    if parsers.is_none() && monitors.is_none() {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!("server `{tag}` runs no candidate (no `shadow` entries)"),
        ));
    }
    Ok(Json(json!({ "parsers": parsers, "monitors": monitors })).into_response())
}

async fn api_reload_all(
    AxumState(s): AxumState<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let reloader = writer(&s, &headers)?;
    let mut results = serde_json::Map::new();
    for server in s.servers.iter() {
        let done = reloader.reload(server).await;
        results.insert(
            server.tag.clone(),
            serde_json::to_value(&done).unwrap_or_default(),
        );
    }
    Ok(Json(json!({ "servers": results })).into_response())
}

#[cfg(test)]
mod tests {
    /// Every route of the router is in the module's doc, with its method, and every route
    /// the doc names is served.
    #[test]
    fn the_module_doc_lists_every_route() {
        let source = include_str!("mod.rs");
        let doc: String = source
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut routes = Vec::new();
        for piece in source.split(".route(\"").skip(1) {
            let (path, rest) = piece.split_once('"').unwrap_or_default();
            let method = rest
                .trim_start_matches(", ")
                .split('(')
                .next()
                .unwrap_or("");
            routes.push(format!("`{} {path}`", method.to_uppercase()));
        }
        assert!(routes.len() >= 14, "{routes:?}");
        for route in &routes {
            assert!(
                doc.contains(route.as_str()),
                "{route} is not in the module's doc"
            );
        }
        let documented = doc.matches("`GET /").count() + doc.matches("`POST /").count();
        assert_eq!(
            documented,
            routes.len(),
            "the doc names a route that is not served"
        );
    }
}
