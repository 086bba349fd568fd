//! A fake Discord on loopback: enough of the REST API and the gateway for serenity to
//! connect (through `DISCORD_API_URL`), register its command, post messages and answer
//! interactions. It records what the bot sends, can inject interactions, and can answer
//! message posts with a storm of 429s.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message as Ws;

pub const GUILD: u64 = 900_000_000_000_000_001;
pub const APP: u64 = 900_000_000_000_000_002;
pub const BOT_USER: u64 = 900_000_000_000_000_003;
pub const ADMIN_ROLE: u64 = 900_000_000_000_000_010;
pub const OPS_ROLE: u64 = 900_000_000_000_000_011;

/// What the bot sent.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    /// (channel id, body) of each message posted.
    pub messages: Vec<(u64, Value)>,
    /// (interaction id, body) of each interaction callback.
    pub responses: Vec<(u64, Value)>,
    /// Bodies of edits to original interaction responses (after a defer).
    pub edits: Vec<Value>,
    /// Bodies of command registrations.
    pub commands: Vec<Value>,
    /// 429s answered.
    pub rate_limited: u64,
    pub identified: bool,
}

struct Inner {
    recorded: Mutex<Recorded>,
    /// Message posts still to answer with 429.
    storm: Mutex<u64>,
    /// Message posts still to answer with 502 (Discord unreachable behind its proxy).
    outage: Mutex<u64>,
    gateway: String,
    dispatch: broadcast::Sender<Value>,
}

/// The running fake.
pub struct FakeDiscord {
    pub api_url: String,
    inner: Arc<Inner>,
    next_id: Mutex<u64>,
    _rt: tokio::runtime::Runtime,
}

fn user(id: u64, name: &str, bot: bool) -> Value {
    json!({"id": id.to_string(), "username": name, "discriminator": "0", "global_name": name, "avatar": null, "bot": bot})
}

fn message(channel: &str, body: &Value) -> Value {
    message_by(channel, body, user(BOT_USER, "factorio-isr", true))
}

fn message_by(channel: &str, body: &Value, author: Value) -> Value {
    json!({
        "id": "1", "channel_id": channel, "guild_id": GUILD.to_string(),
        "author": author,
        "content": body.get("content").cloned().unwrap_or(json!("")),
        "timestamp": "2026-01-01T00:00:00.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
        "attachments": [], "embeds": body.get("embeds").cloned().unwrap_or(json!([])),
        "pinned": false, "type": 0, "flags": 0
    })
}

impl FakeDiscord {
    /// Starts the REST API and the gateway on free loopback ports.
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (inner, api_url) = rt.block_on(async {
            let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let ws_addr = ws.local_addr().unwrap();
            let (dispatch, _) = broadcast::channel(64);
            let inner = Arc::new(Inner {
                recorded: Mutex::default(),
                storm: Mutex::new(0),
                outage: Mutex::new(0),
                gateway: format!("ws://{ws_addr}"),
                dispatch,
            });
            tokio::spawn(gateway(ws, inner.clone()));
            let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let api_addr: SocketAddr = api.local_addr().unwrap();
            let app = Router::new()
                .route("/api/v10/gateway", get(gateway_url))
                .route("/api/v10/gateway/bot", get(gateway_url))
                .route(
                    "/api/v10/users/@me",
                    get(|| async { axum::Json(user(BOT_USER, "factorio-isr", true)) }),
                )
                .route("/api/v10/applications/{app}/commands", put(register))
                .route(
                    "/api/v10/applications/{app}/guilds/{guild}/commands",
                    put(register_guild),
                )
                .route("/api/v10/guilds/{guild}/roles", get(roles))
                .route("/api/v10/channels/{channel}/messages", post(post_message))
                .route(
                    "/api/v10/interactions/{id}/{token}/callback",
                    post(callback),
                )
                .route(
                    "/api/v10/webhooks/{app}/{token}/messages/@original",
                    patch(edit),
                )
                .fallback(|uri: axum::http::Uri| async move {
                    eprintln!("fake discord: no route for {uri}");
                    StatusCode::NOT_FOUND
                })
                .with_state(inner.clone());
            tokio::spawn(async move { axum::serve(api, app).await });
            (inner, format!("http://{api_addr}"))
        });
        Self {
            api_url,
            inner,
            next_id: Mutex::new(1000),
            _rt: rt,
        }
    }

    /// What the bot has sent so far.
    pub fn recorded(&self) -> Recorded {
        self.inner.recorded.lock().unwrap().clone()
    }

    /// Answers the next `n` message posts with 502.
    pub fn outage(&self, n: u64) {
        *self.inner.outage.lock().unwrap() = n;
    }

    /// Answers the next `n` message posts with 429.
    pub fn storm(&self, n: u64) {
        *self.inner.storm.lock().unwrap() = n;
    }

    /// Sends a `/factorio SUB` interaction from a member with `roles`; returns its id.
    pub fn command(&self, user_id: u64, roles: &[u64], sub: &str, args: &[(&str, &str)]) -> u64 {
        let id = {
            let mut n = self.next_id.lock().unwrap();
            *n += 1;
            *n
        };
        let options: Vec<Value> = args
            .iter()
            .map(|(k, v)| json!({"name": k, "type": 3, "value": v}))
            .collect();
        let member_user = user(user_id, &format!("user{user_id}"), false);
        let d = json!({
            "id": id.to_string(), "application_id": APP.to_string(), "type": 2,
            "data": {"id": "77", "name": "factorio", "type": 1,
                     "options": [{"name": sub, "type": 1, "options": options}]},
            "guild_id": GUILD.to_string(), "channel_id": "555",
            "member": {"user": member_user, "roles": roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                       "joined_at": "2025-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false,
                       "flags": 0, "permissions": "0"},
            "token": format!("token-{id}"), "version": 1, "locale": "en-US",
            "app_permissions": "0", "entitlements": [], "attachment_size_limit": 8388608
        });
        let _ = self
            .inner
            .dispatch
            .send(json!({"t": "INTERACTION_CREATE", "d": d}));
        id
    }

    /// Sends an autocomplete request for `/factorio SUB server:<typed>`; returns its id.
    pub fn autocomplete(&self, sub: &str, typed: &str) -> u64 {
        let id = {
            let mut n = self.next_id.lock().unwrap();
            *n += 1;
            *n
        };
        let d = json!({
            "id": id.to_string(), "application_id": APP.to_string(), "type": 4,
            "data": {"id": "77", "name": "factorio", "type": 1,
                     "options": [{"name": sub, "type": 1, "options": [{"name": "server", "type": 3, "value": typed, "focused": true}]}]},
            "guild_id": GUILD.to_string(), "channel_id": "555",
            "member": {"user": user(7, "user7", false), "roles": [],
                       "joined_at": "2025-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false,
                       "flags": 0, "permissions": "0"},
            "token": format!("token-{id}"), "version": 1, "locale": "en-US",
            "app_permissions": "0", "entitlements": [], "attachment_size_limit": 8388608
        });
        let _ = self
            .inner
            .dispatch
            .send(json!({"t": "INTERACTION_CREATE", "d": d}));
        id
    }

    /// The raw callback body of interaction `id`.
    pub fn callback(&self, id: u64) -> Value {
        let r = self.wait_for("a callback", |r| r.responses.iter().any(|(i, _)| *i == id));
        r.responses
            .iter()
            .find(|(i, _)| *i == id)
            .unwrap()
            .1
            .clone()
    }

    /// Someone writes `content` in `channel` (a bot when `bot`).
    pub fn say(&self, channel: u64, user_id: u64, bot: bool, content: &str) {
        let d = message_by(
            &channel.to_string(),
            &json!({"content": content}),
            user(user_id, &format!("user{user_id}"), bot),
        );
        let _ = self
            .inner
            .dispatch
            .send(json!({"t": "MESSAGE_CREATE", "d": d}));
    }

    /// Waits (hang guard 60 s) until `check` holds for what was recorded.
    pub fn wait_for(&self, what: &str, mut check: impl FnMut(&Recorded) -> bool) -> Recorded {
        let started = std::time::Instant::now();
        loop {
            let r = self.recorded();
            if check(&r) {
                return r;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}: {r:#?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The answer to interaction `id`: its content and whether only the user sees it.
    pub fn answer(&self, id: u64) -> (String, bool) {
        let r = self.wait_for("an answer", |r| r.responses.iter().any(|(i, _)| *i == id));
        let (_, body) = r.responses.iter().find(|(i, _)| *i == id).unwrap().clone();
        if body["type"] == 5 {
            // Deferred: the answer is the edit that follows.
            let r = self.wait_for("the deferred answer", |r| !r.edits.is_empty());
            return (
                r.edits.last().unwrap()["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                false,
            );
        }
        let data = &body["data"];
        let ephemeral = data["flags"].as_u64().unwrap_or(0) & 64 != 0;
        (
            data["content"].as_str().unwrap_or_default().to_owned(),
            ephemeral,
        )
    }
}

async fn gateway_url(State(s): State<Arc<Inner>>) -> impl IntoResponse {
    axum::Json(json!({"url": s.gateway, "shards": 1,
        "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}))
}

async fn register(State(s): State<Arc<Inner>>, body: axum::Json<Value>) -> impl IntoResponse {
    s.recorded.lock().unwrap().commands.push(body.0);
    axum::Json(json!([]))
}

async fn register_guild(
    State(s): State<Arc<Inner>>,
    Path((_, _)): Path<(String, String)>,
    body: axum::Json<Value>,
) -> impl IntoResponse {
    s.recorded.lock().unwrap().commands.push(body.0);
    axum::Json(json!([]))
}

async fn roles() -> impl IntoResponse {
    let role = |id: u64, name: &str| {
        json!({"id": id.to_string(), "name": name, "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false, "icon": null, "unicode_emoji": null, "position": 1, "permissions": "0",
        "managed": false, "mentionable": true, "flags": 0})
    };
    axum::Json(json!([
        role(GUILD, "@everyone"),
        role(ADMIN_ROLE, "Server Admin"),
        role(OPS_ROLE, "ops")
    ]))
}

async fn post_message(
    State(s): State<Arc<Inner>>,
    Path(channel): Path<String>,
    body: axum::Json<Value>,
) -> Response {
    {
        let mut storm = s.storm.lock().unwrap();
        if *storm > 0 {
            *storm -= 1;
            s.recorded.lock().unwrap().rate_limited += 1;
            let mut h = HeaderMap::new();
            h.insert("retry-after", "0.05".parse().unwrap());
            h.insert("x-ratelimit-global", "true".parse().unwrap());
            return (StatusCode::TOO_MANY_REQUESTS, h, axum::Json(json!({"message": "You are being rate limited.", "retry_after": 0.05, "global": true}))).into_response();
        }
    }
    {
        let mut outage = s.outage.lock().unwrap();
        if *outage > 0 {
            *outage -= 1;
            return (StatusCode::BAD_GATEWAY, "bad gateway").into_response();
        }
    }
    let id: u64 = channel.parse().unwrap_or(0);
    let reply = message(&channel, &body.0);
    s.recorded.lock().unwrap().messages.push((id, body.0));
    axum::Json(reply).into_response()
}

async fn callback(
    State(s): State<Arc<Inner>>,
    Path((id, _)): Path<(String, String)>,
    body: axum::Json<Value>,
) -> impl IntoResponse {
    s.recorded
        .lock()
        .unwrap()
        .responses
        .push((id.parse().unwrap_or(0), body.0));
    StatusCode::NO_CONTENT
}

async fn edit(
    State(s): State<Arc<Inner>>,
    Path((_, _)): Path<(String, String)>,
    body: axum::Json<Value>,
) -> impl IntoResponse {
    let reply = message("555", &body.0);
    s.recorded.lock().unwrap().edits.push(body.0);
    axum::Json(reply)
}

async fn gateway(listener: tokio::net::TcpListener, inner: Arc<Inner>) {
    while let Ok((stream, _)) = listener.accept().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let (mut tx, mut rx) = ws.split();
            let hello = json!({"op": 10, "d": {"heartbeat_interval": 41250}});
            if tx.send(Ws::Text(hello.to_string())).await.is_err() {
                return;
            }
            let mut events = inner.dispatch.subscribe();
            let mut seq = 0u64;
            loop {
                tokio::select! {
                    frame = rx.next() => {
                        let Some(Ok(frame)) = frame else { return };
                        let Ok(text) = frame.to_text() else { continue };
                        let Ok(v) = serde_json::from_str::<Value>(text) else { continue };
                        match v["op"].as_u64() {
                            Some(1) => { let _ = tx.send(Ws::Text(json!({"op": 11}).to_string())).await; }
                            Some(2) => {
                                inner.recorded.lock().unwrap().identified = true;
                                seq += 1;
                                let ready = json!({"op": 0, "s": seq, "t": "READY", "d": {
                                    "v": 10, "user": user(BOT_USER, "factorio-isr", true),
                                    "guilds": [{"id": GUILD.to_string(), "unavailable": true}],
                                    "session_id": "fake-session", "resume_gateway_url": inner.gateway,
                                    "shard": [0, 1], "application": {"id": APP.to_string(), "flags": 0}}});
                                let _ = tx.send(Ws::Text(ready.to_string())).await;
                            }
                            _ => {}
                        }
                    }
                    event = events.recv() => {
                        let Ok(event) = event else { continue };
                        seq += 1;
                        let frame = json!({"op": 0, "s": seq, "t": event["t"], "d": event["d"]});
                        if tx.send(Ws::Text(frame.to_string())).await.is_err() { return; }
                    }
                }
            }
        });
    }
}
