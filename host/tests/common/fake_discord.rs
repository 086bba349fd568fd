//! A fake Discord on loopback: enough of the REST API and the gateway for serenity to
//! connect (through `DISCORD_API_URL`), register commands, post messages and answer
//! interactions. It records what the bot sends, can inject interactions (in a channel of the
//! test's choice), keeps the application's commands per scope as bulk overwrites leave them
//! (and lists them), and can answer with 429s, outages (for a number of posts or a time) and
//! refusals.
//!
//! It refuses what Discord refuses, with Discord's error shapes, written from Discord's API
//! documentation (not from the bot's code, which it must catch out):
//!
//! - `50035 Invalid Form Body` with the nested `errors` object for: more than 25 options
//!   per command or subcommand, a bad command or option name, a description over 100, more
//!   than 25 choices, a required option after an optional one; message content over 2,000,
//!   more than 10 embeds, an embed title over 256, description over 4,096, more than 25
//!   fields, a field name over 256 or value over 1,024, a footer over 2,048, embeds over
//!   6,000 in all, a nonce over 25; more than 25 autocomplete choices.
//! - `allowed_mentions` whose `parse` names a kind it also lists ids of, or lists more than
//!   100 ids of one kind (`50035`).
//! - `50006 Cannot send an empty message`; `40060 Interaction has already been
//!   acknowledged`; `10015 Unknown Webhook` for an interaction that was never deferred or
//!   answered; `50013 Missing Permissions` (403) on channels set as forbidden.
//! - 429 with `retry_after`, `Retry-After`, `X-RateLimit-*` headers; a request that comes
//!   back before the wait is over is answered with another 429 and counted as early. Under
//!   a global limit every bot request but interaction answers gets a global 429 (Discord
//!   exempts interaction endpoints).
//!
//! Lengths are counted in UTF-16 units, the stricter of the ways Discord may count.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message as Ws;

pub const GUILD: u64 = 900_000_000_000_000_001;
pub const OTHER_GUILD: u64 = 900_000_000_000_000_099;
pub const APP: u64 = 900_000_000_000_000_002;
pub const BOT_USER: u64 = 900_000_000_000_000_003;
pub const ADMIN_ROLE: u64 = 900_000_000_000_000_010;
pub const OPS_ROLE: u64 = 900_000_000_000_000_011;
/// A role of the other guild, named like the admin role.
pub const IMPOSTOR_ROLE: u64 = 900_000_000_000_000_098;

/// What the bot sent.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    /// (channel id, body) of each message posted (and accepted).
    pub messages: Vec<(u64, Value)>,
    /// (channel id, message id, body) of each edit of a posted message (accepted).
    pub channel_edits: Vec<(u64, u64, Value)>,
    /// (interaction id, body) of each interaction callback accepted.
    pub responses: Vec<(u64, Value)>,
    /// (interaction token, body) of edits to original responses (after a defer).
    pub edits: Vec<(String, Value)>,
    /// Interaction tokens whose original response was deleted.
    pub deleted: Vec<String>,
    /// (interaction token, body) of follow-up messages.
    pub followups: Vec<(String, Value)>,
    /// (path, body) of command registrations accepted.
    pub commands: Vec<(String, Value)>,
    /// (what, Discord's error body) of every request refused with a 4xx other than 429.
    pub refused: Vec<(String, Value)>,
    /// When each message post arrived (accepted or not), from the fake's start.
    pub post_times: Vec<Duration>,
    /// 429s answered.
    pub rate_limited: u64,
    /// Requests that came back before the wait a 429 announced was over.
    pub early_retries: u64,
    /// Gateway identifies, and presence updates (op 3) received.
    pub identifies: u64,
    pub presence_updates: Vec<Duration>,
    /// Posts answered with the message an earlier post with the same nonce created
    /// (`enforce_nonce`), instead of posting it again.
    pub nonce_hits: u64,
}

impl Recorded {
    pub fn identified(&self) -> bool {
        self.identifies > 0
    }
}

struct Inner {
    started: Instant,
    recorded: Mutex<Recorded>,
    /// Message posts still to answer with 429, and the wait each announces.
    storm: Mutex<(u64, f64)>,
    /// Until when a 429 told the bot to wait.
    limited_until: Mutex<Option<Instant>>,
    /// Message posts still to answer with 502 (Discord unreachable behind its proxy).
    outage: Mutex<u64>,
    /// Until when every message post is answered with 502.
    outage_until: Mutex<Option<Instant>>,
    /// Until when the bot's global rate limit holds: every bot request but interaction
    /// answers is answered with a global 429.
    global_until: Mutex<Option<Instant>>,
    /// The application's commands as registered now, by scope (`global`, `guild <id>`).
    registered: Mutex<std::collections::HashMap<String, Value>>,
    /// How long a post's answer is held back after the message was created (a slow
    /// network on the way back).
    answer_delay: Mutex<Duration>,
    /// Channels the bot may not post in (403, 50013).
    forbidden: Mutex<HashSet<u64>>,
    /// Command registrations still to refuse with 403 Missing Access (50001).
    refuse_registrations: Mutex<u64>,
    /// Interactions answered (callback accepted), by token; and those deferred.
    acknowledged: Mutex<HashSet<String>>,
    /// Messages posted, by id: their channel (edits must name the right one).
    posted: Mutex<std::collections::HashMap<u64, u64>>,
    /// The message each enforced nonce created, and when (Discord keeps them "for the
    /// past few minutes").
    nonces: Mutex<std::collections::HashMap<String, (Instant, Value)>>,
    /// The next message id.
    next_message: std::sync::atomic::AtomicU64,
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
                started: Instant::now(),
                recorded: Mutex::default(),
                storm: Mutex::new((0, 0.05)),
                limited_until: Mutex::new(None),
                outage: Mutex::new(0),
                outage_until: Mutex::new(None),
                global_until: Mutex::new(None),
                registered: Mutex::default(),
                answer_delay: Mutex::new(Duration::ZERO),
                forbidden: Mutex::default(),
                refuse_registrations: Mutex::new(0),
                acknowledged: Mutex::default(),
                posted: Mutex::default(),
                nonces: Mutex::default(),
                next_message: std::sync::atomic::AtomicU64::new(800_000_000_000_000_001),
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
                .route(
                    "/api/v10/applications/{app}/commands",
                    put(register).get(list_global),
                )
                .route(
                    "/api/v10/applications/{app}/guilds/{guild}/commands",
                    put(register_guild).get(list_guild),
                )
                .route("/api/v10/guilds/{guild}/roles", get(roles))
                .route("/api/v10/channels/{channel}/messages", post(post_message))
                .route(
                    "/api/v10/channels/{channel}/messages/{message}",
                    patch(edit_message),
                )
                .route(
                    "/api/v10/interactions/{id}/{token}/callback",
                    post(callback),
                )
                .route("/api/v10/webhooks/{app}/{token}", post(followup))
                .route(
                    "/api/v10/webhooks/{app}/{token}/messages/@original",
                    patch(edit).delete(delete_original),
                )
                .fallback(|uri: axum::http::Uri| async move {
                    eprintln!("fake discord: no route for {uri}");
                    (
                        StatusCode::NOT_FOUND,
                        axum::Json(json!({"message": "404: Not Found", "code": 0})),
                    )
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

    /// Time since the fake started (the clock of `post_times`).
    pub fn now(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Answers the next `n` message posts with 502.
    /// Holds the answer to every post back for `delay` after creating the message.
    pub fn delay_answers(&self, delay: Duration) {
        *self.inner.answer_delay.lock().unwrap() = delay;
    }

    pub fn outage(&self, n: u64) {
        *self.inner.outage.lock().unwrap() = n;
    }

    /// Answers every message post with 502 for `long` from now.
    pub fn outage_for(&self, long: Duration) {
        *self.inner.outage_until.lock().unwrap() = Some(Instant::now() + long);
    }

    /// Puts the bot under a global rate limit for `secs` from now, as Discord does when a
    /// bot sends too much across all routes: message posts, edits and registrations get a
    /// global 429; interaction answers do not (Discord exempts them).
    pub fn global_limit(&self, secs: f64) {
        *self.inner.global_until.lock().unwrap() =
            Some(Instant::now() + Duration::from_secs_f64(secs));
    }

    /// Commands of this application registered before the bot starts (another bot on the
    /// same application, like the Python one), in `scope` (`global` or `guild <id>`).
    pub fn seed_commands(&self, scope: &str, names: &[&str]) {
        let list: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                json!({"id": (700_000_000_000_000_000u64 + i as u64).to_string(),
                       "application_id": APP.to_string(), "version": "1", "type": 1,
                       "name": n, "description": format!("{n} (an earlier bot's)"),
                       "default_member_permissions": null, "dm_permission": true, "nsfw": false})
            })
            .collect();
        self.inner
            .registered
            .lock()
            .unwrap()
            .insert(scope.to_owned(), Value::Array(list));
    }

    /// The commands registered now in `scope`, by name.
    pub fn registered(&self, scope: &str) -> Vec<String> {
        self.inner
            .registered
            .lock()
            .unwrap()
            .get(scope)
            .and_then(|l| l.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Answers the next `n` message posts with 429, each asking to wait `retry_after` s.
    pub fn storm(&self, n: u64, retry_after: f64) {
        *self.inner.storm.lock().unwrap() = (n, retry_after);
    }

    /// The bot may no longer post in `channel` (403 Missing Permissions).
    pub fn forbid(&self, channel: u64) {
        self.inner.forbidden.lock().unwrap().insert(channel);
    }

    /// The bot may post in `channel` again.
    pub fn allow(&self, channel: u64) {
        self.inner.forbidden.lock().unwrap().remove(&channel);
    }

    /// Refuses the next `n` command registrations as Discord does for a bot invited without
    /// the `applications.commands` scope.
    pub fn refuse_registrations(&self, n: u64) {
        *self.inner.refuse_registrations.lock().unwrap() = n;
    }

    /// Makes the gateway ask the bot to reconnect (op 7); its resume is refused, so it
    /// identifies again and gets a new READY.
    pub fn reconnect(&self) {
        let _ = self.inner.dispatch.send(json!({"op": 7}));
    }

    /// Sends `/COMMAND SUB` (`path` is e.g. "factorio status" or "factorio-admin kick") from
    /// a member of `guild` with `roles`, or from a DM when `guild` is `None`; returns its id.
    pub fn command_from(
        &self,
        guild: Option<u64>,
        user_id: u64,
        roles: &[u64],
        path: &str,
        args: &[(&str, &str)],
    ) -> u64 {
        self.command_in_channel(guild, 555, user_id, roles, path, args)
    }

    /// [`Self::command`] given in `channel`.
    pub fn command_in(
        &self,
        channel: u64,
        user_id: u64,
        roles: &[u64],
        path: &str,
        args: &[(&str, &str)],
    ) -> u64 {
        self.command_in_channel(Some(GUILD), channel, user_id, roles, path, args)
    }

    fn command_in_channel(
        &self,
        guild: Option<u64>,
        channel: u64,
        user_id: u64,
        roles: &[u64],
        path: &str,
        args: &[(&str, &str)],
    ) -> u64 {
        let id = self.next();
        let (command, sub) = path.split_once(' ').unwrap();
        let options: Vec<Value> = args
            .iter()
            .map(|(k, v)| json!({"name": k, "type": 3, "value": v}))
            .collect();
        let member_user = user(user_id, &format!("user{user_id}"), false);
        let mut d = json!({
            "id": id.to_string(), "application_id": APP.to_string(), "type": 2,
            "data": {"id": "77", "name": command, "type": 1,
                     "options": [{"name": sub, "type": 1, "options": options}]},
            "channel_id": channel.to_string(),
            "token": format!("token-{id}"), "version": 1, "locale": "en-US",
            "app_permissions": "0", "entitlements": [], "attachment_size_limit": 8388608
        });
        match guild {
            Some(g) => {
                d["guild_id"] = json!(g.to_string());
                d["member"] = json!({"user": member_user, "roles": roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                       "joined_at": "2025-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false,
                       "flags": 0, "permissions": "0"});
            }
            None => d["user"] = member_user,
        }
        let _ = self
            .inner
            .dispatch
            .send(json!({"t": "INTERACTION_CREATE", "d": d}));
        id
    }

    /// [`Self::command_from`] the configured guild.
    pub fn command(&self, user_id: u64, roles: &[u64], path: &str, args: &[(&str, &str)]) -> u64 {
        self.command_from(Some(GUILD), user_id, roles, path, args)
    }

    fn next(&self) -> u64 {
        let mut n = self.next_id.lock().unwrap();
        *n += 1;
        *n
    }

    /// Sends an autocomplete request for `/factorio SUB server:<typed>`; returns its id.
    pub fn autocomplete(&self, sub: &str, typed: &str) -> u64 {
        let id = self.next();
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

    /// The answer to interaction `id`: its content and whether only the user sees it. A
    /// deferred answer is the edit or the follow-up that came after it.
    pub fn answer(&self, id: u64) -> (String, bool) {
        let r = self.wait_for("an answer", |r| r.responses.iter().any(|(i, _)| *i == id));
        let (_, body) = r.responses.iter().find(|(i, _)| *i == id).unwrap().clone();
        let token = format!("token-{id}");
        if body["type"] == 5 {
            let deferred_private = body["data"]["flags"].as_u64().unwrap_or(0) & 64 != 0;
            let r = self.wait_for("the deferred answer", |r| {
                r.edits.iter().any(|(t, _)| *t == token)
                    || r.followups.iter().any(|(t, _)| *t == token)
            });
            if let Some((_, f)) = r.followups.iter().find(|(t, _)| *t == token) {
                // The placeholder must be gone, or the channel still shows it.
                let gone = r.deleted.contains(&token) || deferred_private;
                let private = f["flags"].as_u64().unwrap_or(0) & 64 != 0 && gone;
                return (
                    f["content"].as_str().unwrap_or_default().to_owned(),
                    private,
                );
            }
            let (_, e) = r.edits.iter().find(|(t, _)| *t == token).unwrap();
            return (
                e["content"].as_str().unwrap_or_default().to_owned(),
                deferred_private,
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

/// A refusal: the status and Discord's JSON error body.
type Refusal = (StatusCode, Value);

/// Discord's 400 for a body that breaks its rules.
fn invalid_form(errors: Map<String, Value>) -> Refusal {
    (
        StatusCode::BAD_REQUEST,
        json!({"code": 50035, "errors": Value::Object(errors), "message": "Invalid Form Body"}),
    )
}

/// Records a field error at `path` (`["options", "3", "name"]`) in Discord's nested shape.
fn field_error(errors: &mut Map<String, Value>, path: &[String], code: &str, message: String) {
    let mut at = errors;
    for p in path {
        at = at
            .entry(p.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap();
    }
    let list = at.entry("_errors").or_insert_with(|| json!([]));
    list.as_array_mut()
        .unwrap()
        .push(json!({"code": code, "message": message}));
}

fn len(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.encode_utf16().count())
}

fn max_len(errors: &mut Map<String, Value>, path: &[String], v: &Value, max: usize) {
    if len(v) > max {
        field_error(
            errors,
            path,
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {max} or fewer in length."),
        );
    }
}

fn path(base: &[String], more: &[&str]) -> Vec<String> {
    base.iter()
        .cloned()
        .chain(more.iter().map(|s| s.to_string()))
        .collect()
}

/// Discord's checks of a command or option (and its options, recursively).
fn check_command(v: &Value, at: &[String], errors: &mut Map<String, Value>) {
    let name = v["name"].as_str().unwrap_or_default();
    let name_ok = (1..=32).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_lowercase() || c.is_numeric() || c == '-' || c == '_');
    if !name_ok {
        field_error(
            errors,
            &path(at, &["name"]),
            "APPLICATION_COMMAND_INVALID_NAME",
            format!("Command name is invalid: {name}"),
        );
    }
    let d = len(&v["description"]);
    if !(1..=100).contains(&d) {
        field_error(
            errors,
            &path(at, &["description"]),
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 100 in length.".into(),
        );
    }
    if let Some(choices) = v["choices"].as_array()
        && choices.len() > 25
    {
        field_error(
            errors,
            &path(at, &["choices"]),
            "BASE_TYPE_MAX_LENGTH",
            "Must be 25 or fewer in length.".into(),
        );
    }
    if let Some(options) = v["options"].as_array() {
        if options.len() > 25 {
            field_error(
                errors,
                &path(at, &["options"]),
                "BASE_TYPE_MAX_LENGTH",
                "Must be 25 or fewer in length.".into(),
            );
        }
        let mut optional = false;
        for (i, o) in options.iter().enumerate() {
            let here = path(at, &["options", &i.to_string()]);
            if !matches!(o["type"].as_u64(), Some(1 | 2)) {
                let required = o["required"].as_bool().unwrap_or(false);
                if required && optional {
                    field_error(
                        errors,
                        &here,
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options".into(),
                    );
                }
                optional |= !required;
            }
            check_command(o, &here, errors);
        }
    }
}

/// Discord's checks of a message body (posted, an interaction answer's data, an edit or a
/// follow-up). `Err` is the response to send.
fn check_message(body: &Value, needs_something: bool) -> Result<(), Refusal> {
    let mut errors = Map::new();
    max_len(&mut errors, &["content".into()], &body["content"], 2000);
    if body["nonce"].is_string() {
        max_len(&mut errors, &["nonce".into()], &body["nonce"], 25);
    }
    // allowed_mentions: `parse` and the lists of the same kind exclude each other, and a
    // list holds at most 100 ids.
    let mentions = &body["allowed_mentions"];
    for (kind, list) in [("users", &mentions["users"]), ("roles", &mentions["roles"])] {
        let ids = list.as_array().map_or(0, Vec::len);
        let parsed = mentions["parse"]
            .as_array()
            .is_some_and(|p| p.iter().any(|k| k == kind));
        if parsed && ids > 0 {
            field_error(
                &mut errors,
                &["allowed_mentions".into()],
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                format!("parse:[\"{kind}\"] and {kind}: [ids] are mutually exclusive."),
            );
        }
        if ids > 100 {
            field_error(
                &mut errors,
                &["allowed_mentions".into(), kind.into()],
                "BASE_TYPE_MAX_LENGTH",
                "Must be 100 or fewer in length.".into(),
            );
        }
    }
    let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    if embeds.len() > 10 {
        field_error(
            &mut errors,
            &["embeds".into()],
            "BASE_TYPE_MAX_LENGTH",
            "Must be 10 or fewer in length.".into(),
        );
    }
    let mut total = 0;
    for (i, e) in embeds.iter().enumerate() {
        let at = vec!["embeds".to_string(), i.to_string()];
        max_len(&mut errors, &path(&at, &["title"]), &e["title"], 256);
        max_len(
            &mut errors,
            &path(&at, &["description"]),
            &e["description"],
            4096,
        );
        max_len(
            &mut errors,
            &path(&at, &["footer", "text"]),
            &e["footer"]["text"],
            2048,
        );
        max_len(
            &mut errors,
            &path(&at, &["author", "name"]),
            &e["author"]["name"],
            256,
        );
        total += len(&e["title"])
            + len(&e["description"])
            + len(&e["footer"]["text"])
            + len(&e["author"]["name"]);
        let fields = e["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > 25 {
            field_error(
                &mut errors,
                &path(&at, &["fields"]),
                "BASE_TYPE_MAX_LENGTH",
                "Must be 25 or fewer in length.".into(),
            );
        }
        for (j, f) in fields.iter().enumerate() {
            let fat = path(&at, &["fields", &j.to_string()]);
            max_len(&mut errors, &path(&fat, &["name"]), &f["name"], 256);
            max_len(&mut errors, &path(&fat, &["value"]), &f["value"], 1024);
            for k in ["name", "value"] {
                if len(&f[k]) == 0 {
                    field_error(
                        &mut errors,
                        &path(&fat, &[k]),
                        "BASE_TYPE_REQUIRED",
                        "This field is required".into(),
                    );
                }
            }
            total += len(&f["name"]) + len(&f["value"]);
        }
    }
    if total > 6000 {
        field_error(
            &mut errors,
            &["embeds".into()],
            "MAX_EMBED_SIZE_EXCEEDED",
            "Embed size exceeds maximum size of 6000".into(),
        );
    }
    if !errors.is_empty() {
        return Err(invalid_form(errors));
    }
    if needs_something && len(&body["content"]) == 0 && embeds.is_empty() {
        return Err((
            StatusCode::BAD_REQUEST,
            json!({"code": 50006, "message": "Cannot send an empty message"}),
        ));
    }
    Ok(())
}

/// Records a refusal and answers with it.
fn refuse(s: &Inner, what: &str, (status, body): Refusal) -> Response {
    s.recorded
        .lock()
        .unwrap()
        .refused
        .push((what.to_owned(), body.clone()));
    (status, axum::Json(body)).into_response()
}

async fn gateway_url(State(s): State<Arc<Inner>>) -> impl IntoResponse {
    axum::Json(json!({"url": s.gateway, "shards": 1,
        "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}))
}

fn check_commands(s: &Inner, path: &str, body: &Value) -> Result<(), Box<Response>> {
    {
        let mut left = s.refuse_registrations.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            let r = (
                StatusCode::FORBIDDEN,
                json!({"message": "Missing Access", "code": 50001}),
            );
            return Err(Box::new(refuse(s, "commands", r)));
        }
    }
    let mut errors = Map::new();
    let list = body.as_array().cloned().unwrap_or_default();
    if list.len() > 100 {
        field_error(
            &mut errors,
            &[],
            "BASE_TYPE_MAX_LENGTH",
            "Must be 100 or fewer in length.".into(),
        );
    }
    for (i, c) in list.iter().enumerate() {
        check_command(c, &[i.to_string()], &mut errors);
    }
    if errors.is_empty() {
        s.recorded
            .lock()
            .unwrap()
            .commands
            .push((path.to_owned(), body.clone()));
        // A bulk overwrite: the scope now has exactly these commands.
        s.registered
            .lock()
            .unwrap()
            .insert(path.to_owned(), body.clone());
        Ok(())
    } else {
        Err(Box::new(refuse(s, "commands", invalid_form(errors))))
    }
}

async fn register(State(s): State<Arc<Inner>>, body: axum::Json<Value>) -> Response {
    match check_commands(&s, "global", &body.0) {
        Ok(()) => axum::Json(body.0).into_response(),
        Err(r) => *r,
    }
}

async fn register_guild(
    State(s): State<Arc<Inner>>,
    Path((_, guild)): Path<(String, String)>,
    body: axum::Json<Value>,
) -> Response {
    match check_commands(&s, &format!("guild {guild}"), &body.0) {
        Ok(()) => axum::Json(body.0).into_response(),
        Err(r) => *r,
    }
}

async fn list_global(State(s): State<Arc<Inner>>) -> impl IntoResponse {
    let list = s.registered.lock().unwrap().get("global").cloned();
    axum::Json(list.unwrap_or_else(|| json!([])))
}

async fn list_guild(
    State(s): State<Arc<Inner>>,
    Path((_, guild)): Path<(String, String)>,
) -> impl IntoResponse {
    let list = s
        .registered
        .lock()
        .unwrap()
        .get(&format!("guild {guild}"))
        .cloned();
    axum::Json(list.unwrap_or_else(|| json!([])))
}

async fn roles(Path(guild): Path<String>) -> impl IntoResponse {
    let role = |id: u64, name: &str| {
        json!({"id": id.to_string(), "name": name, "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false, "icon": null, "unicode_emoji": null, "position": 1, "permissions": "0",
        "managed": false, "mentionable": true, "flags": 0})
    };
    if guild == OTHER_GUILD.to_string() {
        return axum::Json(json!([
            role(OTHER_GUILD, "@everyone"),
            role(IMPOSTOR_ROLE, "Server Admin")
        ]));
    }
    axum::Json(json!([
        role(GUILD, "@everyone"),
        role(ADMIN_ROLE, "Server Admin"),
        role(OPS_ROLE, "ops")
    ]))
}

/// A 429 as Discord sends it, asking to wait `secs`.
fn too_many(secs: f64, global: bool) -> Response {
    let mut h = HeaderMap::new();
    h.insert("retry-after", format!("{}", secs.ceil()).parse().unwrap());
    h.insert("x-ratelimit-limit", "5".parse().unwrap());
    h.insert("x-ratelimit-remaining", "0".parse().unwrap());
    h.insert(
        "x-ratelimit-reset-after",
        format!("{secs:.3}").parse().unwrap(),
    );
    h.insert("x-ratelimit-bucket", "fake-bucket".parse().unwrap());
    h.insert(
        "x-ratelimit-scope",
        if global { "global" } else { "user" }.parse().unwrap(),
    );
    if global {
        h.insert("x-ratelimit-global", "true".parse().unwrap());
    }
    (
        StatusCode::TOO_MANY_REQUESTS,
        h,
        axum::Json(json!({"message": "You are being rate limited.", "retry_after": secs, "global": global, "code": 0})),
    )
        .into_response()
}

/// A global 429 when the bot's global limit holds.
fn globally_limited(s: &Inner, now: Instant) -> Option<Response> {
    let until = (*s.global_until.lock().unwrap()).filter(|t| now < *t)?;
    s.recorded.lock().unwrap().rate_limited += 1;
    Some(too_many((until - now).as_secs_f64(), true))
}

/// How long an enforced nonce is remembered ("the past few minutes").
const NONCE_MEMORY: Duration = Duration::from_secs(300);

async fn post_message(
    State(s): State<Arc<Inner>>,
    Path(channel): Path<String>,
    body: axum::Json<Value>,
) -> Response {
    let now = Instant::now();
    s.recorded
        .lock()
        .unwrap()
        .post_times
        .push(s.started.elapsed());
    if let Some(r) = globally_limited(&s, now) {
        return r;
    }
    {
        let mut until = s.limited_until.lock().unwrap();
        if let Some(t) = *until {
            if now < t {
                let mut r = s.recorded.lock().unwrap();
                r.early_retries += 1;
                r.rate_limited += 1;
                return too_many((t - now).as_secs_f64(), false);
            }
            *until = None;
        }
        let mut storm = s.storm.lock().unwrap();
        if storm.0 > 0 {
            storm.0 -= 1;
            s.recorded.lock().unwrap().rate_limited += 1;
            *until = Some(now + Duration::from_secs_f64(storm.1));
            return too_many(storm.1, false);
        }
    }
    {
        let mut outage = s.outage.lock().unwrap();
        let down = s.outage_until.lock().unwrap().is_some_and(|t| now < t);
        if *outage > 0 || down {
            *outage = outage.saturating_sub(1);
            return (StatusCode::BAD_GATEWAY, "bad gateway").into_response();
        }
    }
    let id: u64 = channel.parse().unwrap_or(0);
    if s.forbidden.lock().unwrap().contains(&id) {
        let r = (
            StatusCode::FORBIDDEN,
            json!({"message": "Missing Permissions", "code": 50013}),
        );
        return refuse(&s, "message", r);
    }
    if let Err(r) = check_message(&body.0, true) {
        return refuse(&s, "message", r);
    }
    // Every post here is the same bot's, so the nonce alone identifies it.
    let enforced = match (&body.0["nonce"], &body.0["enforce_nonce"]) {
        (Value::String(n), Value::Bool(true)) => Some(n.clone()),
        (Value::Number(n), Value::Bool(true)) => Some(n.to_string()),
        _ => None,
    };
    let reply = {
        // Held until the message is recorded: two posts with one nonce make one message.
        let mut nonces = s.nonces.lock().unwrap();
        if let Some(nonce) = &enforced {
            nonces.retain(|_, (at, _)| now.duration_since(*at) < NONCE_MEMORY);
            if let Some((_, earlier)) = nonces.get(nonce) {
                s.recorded.lock().unwrap().nonce_hits += 1;
                return axum::Json(earlier.clone()).into_response();
            }
        }
        let mut reply = message(&channel, &body.0);
        let message_id = s
            .next_message
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        reply["id"] = json!(message_id.to_string());
        if let Some(nonce) = enforced {
            reply["nonce"] = json!(nonce);
            nonces.insert(nonce, (now, reply.clone()));
        }
        s.posted.lock().unwrap().insert(message_id, id);
        s.recorded.lock().unwrap().messages.push((id, body.0));
        reply
    };
    let delay = *s.answer_delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut h = HeaderMap::new();
    h.insert("x-ratelimit-limit", "5".parse().unwrap());
    h.insert("x-ratelimit-remaining", "4".parse().unwrap());
    h.insert("x-ratelimit-reset-after", "1.000".parse().unwrap());
    h.insert("x-ratelimit-bucket", "fake-bucket".parse().unwrap());
    (h, axum::Json(reply)).into_response()
}

/// `PATCH /channels/{channel}/messages/{message}`: an edit of a message the bot posted there,
/// checked like a post (an edit may leave out what it does not change); 404 Unknown Message
/// (10008) for any other.
async fn edit_message(
    State(s): State<Arc<Inner>>,
    Path((channel, message_id)): Path<(String, String)>,
    body: axum::Json<Value>,
) -> Response {
    if let Some(r) = globally_limited(&s, Instant::now()) {
        return r;
    }
    let channel_id: u64 = channel.parse().unwrap_or(0);
    let known = message_id
        .parse::<u64>()
        .ok()
        .and_then(|m| s.posted.lock().unwrap().get(&m).copied());
    if known != Some(channel_id) {
        let r = (
            StatusCode::NOT_FOUND,
            json!({"message": "Unknown Message", "code": 10008}),
        );
        return refuse(&s, "edit", r);
    }
    if let Err(r) = check_message(&body.0, false) {
        return refuse(&s, "edit", r);
    }
    let mut reply = message(&channel, &body.0);
    reply["id"] = json!(message_id);
    s.recorded.lock().unwrap().channel_edits.push((
        channel_id,
        message_id.parse().unwrap_or(0),
        body.0,
    ));
    axum::Json(reply).into_response()
}

impl FakeDiscord {
    /// Forgets message `id`, as if someone deleted it in Discord.
    pub fn delete_message(&self, id: u64) {
        self.inner.posted.lock().unwrap().remove(&id);
    }
}

async fn callback(
    State(s): State<Arc<Inner>>,
    Path((id, token)): Path<(String, String)>,
    body: axum::Json<Value>,
) -> Response {
    if !s.acknowledged.lock().unwrap().insert(token.clone()) {
        let r = (
            StatusCode::BAD_REQUEST,
            json!({"message": "Interaction has already been acknowledged.", "code": 40060}),
        );
        return refuse(&s, "callback", r);
    }
    let checked = match body["type"].as_u64() {
        Some(4) => check_message(&body["data"], true),
        Some(5) => Ok(()),
        Some(8) => {
            let choices = body["data"]["choices"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut errors = Map::new();
            if choices.len() > 25 {
                field_error(
                    &mut errors,
                    &["data".into(), "choices".into()],
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 25 or fewer in length.".into(),
                );
            }
            for (i, c) in choices.iter().enumerate() {
                let at = vec![
                    "data".into(),
                    "choices".into(),
                    i.to_string(),
                    "name".into(),
                ];
                max_len(&mut errors, &at, &c["name"], 100);
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(invalid_form(errors))
            }
        }
        _ => Err(invalid_form({
            let mut e = Map::new();
            field_error(
                &mut e,
                &["type".into()],
                "BASE_TYPE_CHOICES",
                "Value must be one of (1, 4, 5, 6, 7, 8, 9, 10, 12).".into(),
            );
            e
        })),
    };
    if let Err(r) = checked {
        s.acknowledged.lock().unwrap().remove(&token);
        return refuse(&s, "callback", r);
    }
    s.recorded
        .lock()
        .unwrap()
        .responses
        .push((id.parse().unwrap_or(0), body.0));
    StatusCode::NO_CONTENT.into_response()
}

fn unknown_webhook(s: &Inner, token: &str) -> Option<Response> {
    if s.acknowledged.lock().unwrap().contains(token) {
        return None;
    }
    let r = (
        StatusCode::NOT_FOUND,
        json!({"message": "Unknown Webhook", "code": 10015}),
    );
    Some(refuse(s, "webhook", r))
}

/// Checks an edit or a follow-up: its interaction was answered, and it is a valid message.
fn webhook_message(s: &Inner, what: &str, token: &str, body: &Value) -> Option<Response> {
    if let Some(r) = unknown_webhook(s, token) {
        return Some(r);
    }
    check_message(body, what == "followup")
        .err()
        .map(|r| refuse(s, what, r))
}

async fn edit(
    State(s): State<Arc<Inner>>,
    Path((_, token)): Path<(String, String)>,
    body: axum::Json<Value>,
) -> Response {
    if let Some(r) = webhook_message(&s, "edit", &token, &body.0) {
        return r;
    }
    let reply = message("555", &body.0);
    s.recorded.lock().unwrap().edits.push((token, body.0));
    axum::Json(reply).into_response()
}

async fn delete_original(
    State(s): State<Arc<Inner>>,
    Path((_, token)): Path<(String, String)>,
) -> Response {
    if let Some(r) = unknown_webhook(&s, &token) {
        return r;
    }
    s.recorded.lock().unwrap().deleted.push(token);
    StatusCode::NO_CONTENT.into_response()
}

async fn followup(
    State(s): State<Arc<Inner>>,
    Path((_, token)): Path<(String, String)>,
    body: axum::Json<Value>,
) -> Response {
    if let Some(r) = webhook_message(&s, "followup", &token, &body.0) {
        return r;
    }
    let reply = message("555", &body.0);
    s.recorded.lock().unwrap().followups.push((token, body.0));
    axum::Json(reply).into_response()
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
                                inner.recorded.lock().unwrap().identifies += 1;
                                seq += 1;
                                let ready = json!({"op": 0, "s": seq, "t": "READY", "d": {
                                    "v": 10, "user": user(BOT_USER, "factorio-isr", true),
                                    "guilds": [{"id": GUILD.to_string(), "unavailable": true}],
                                    "session_id": "fake-session", "resume_gateway_url": inner.gateway,
                                    "shard": [0, 1], "application": {"id": APP.to_string(), "flags": 0}}});
                                let _ = tx.send(Ws::Text(ready.to_string())).await;
                            }
                            Some(3) => {
                                let at = inner.started.elapsed();
                                inner.recorded.lock().unwrap().presence_updates.push(at);
                            }
                            // A resume is refused: the bot must identify again.
                            Some(6) => { let _ = tx.send(Ws::Text(json!({"op": 9, "d": false}).to_string())).await; }
                            _ => {}
                        }
                    }
                    event = events.recv() => {
                        let Ok(event) = event else { continue };
                        if event["op"] == 7 {
                            let _ = tx.send(Ws::Text(json!({"op": 7, "d": null}).to_string())).await;
                            continue;
                        }
                        seq += 1;
                        let frame = json!({"op": 0, "s": seq, "t": event["t"], "d": event["d"]});
                        if tx.send(Ws::Text(frame.to_string())).await.is_err() { return; }
                    }
                }
            }
        });
    }
}
