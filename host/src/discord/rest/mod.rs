//! Discord's REST API as the bot uses it: one request at a time, each answer sorted into
//! what the retry policy needs to know ([`Failure`]), and Discord's rate-limit headers
//! obeyed: a route whose bucket is spent, or any route during a global limit, is not sent
//! until the limit is over (the call answers "rate limited" for the time that is left).
//!
//! Why not serenity's own client: its rate limiter is skipped whenever the base URL is not
//! discord.com (a proxy or the test suite's fake Discord), its errors drop the headers that
//! say how long to wait, and a `Retry-After` that is not a number panics it. Serenity still
//! runs the gateway; every REST call the bot makes goes through here.
//!
//! A request's URL holds the interaction or webhook token, so it never reaches a log line
//! or an error: failures name the route's kind (`what`), never the URL.

pub mod limits;
pub mod payload;
pub mod retry;

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tracing::Instrument;

use crate::config::Secret;

/// Discord's API version the bot speaks.
const API: &str = "/api/v10";
/// The longest wait a rate limit may ask for before the call counts as failed.
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);
/// The most of an answer that is read; Discord's are a few KiB. The rest is never read, so
/// a peer that answers without end cannot grow memory.
const MAX_ANSWER: usize = 1 << 20;
/// A request that takes longer than this is a network failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a request did not succeed, sorted by what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// 429: wait exactly `wait`, then try again.
    #[error("rate limited for {:.3} s{}", wait.as_secs_f64(), if *global { " (global)" } else { "" })]
    RateLimited { wait: Duration, global: bool },
    /// 5xx, a timeout, a broken connection: try again later, with backoff.
    #[error("{0}")]
    Unavailable(String),
    /// Any other 4xx: sending it again cannot help.
    #[error("{0}")]
    Refused(Refusal),
}

impl Failure {
    /// Whether trying again may succeed.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::Refused(_))
    }
}

/// Discord's reason for refusing a request: status, its JSON error code and message, and
/// the first field error it named (`options: Must be 25 or fewer in length.`).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub code: Option<i64>,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Discord refused it: {}", self.status)?;
        if let Some(c) = self.code {
            write!(f, " (code {c})")?;
        }
        if !self.message.is_empty() {
            write!(f, " {}", self.message)?;
        }
        Ok(())
    }
}

/// Sorts a response that was not a success into a [`Failure`].
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let global = json
            .as_ref()
            .and_then(|v| v["global"].as_bool())
            .unwrap_or(false)
            || header(headers, "x-ratelimit-global").is_some_and(|v| v == "true")
            || header(headers, "x-ratelimit-scope").is_some_and(|v| v == "global");
        return Failure::RateLimited {
            wait: retry_after(headers, json.as_ref()),
            global,
        };
    }
    if status.is_server_error() {
        return Failure::Unavailable(format!("Discord answered {status}"));
    }
    let code = json.as_ref().and_then(|v| v["code"].as_i64());
    let mut message = json
        .as_ref()
        .and_then(|v| v["message"].as_str())
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect::<String>();
    if let Some(detail) = json
        .as_ref()
        .and_then(|v| first_field_error(&v["errors"], ""))
    {
        message = format!("{message}: {detail}");
    }
    Failure::Refused(Refusal {
        status: status.as_u16(),
        code,
        message,
    })
}

/// The first `_errors` entry of Discord's nested error object, as `path: message`.
fn first_field_error(errors: &Value, path: &str) -> Option<String> {
    let map = errors.as_object()?;
    if let Some(list) = map.get("_errors").and_then(Value::as_array) {
        let msg = list.first()?["message"].as_str().unwrap_or("invalid");
        let at = if path.is_empty() { "body" } else { path };
        return Some(format!("{at}: {msg}"));
    }
    map.iter().find_map(|(k, v)| {
        let sub = if path.is_empty() {
            k.clone()
        } else if k.parse::<usize>().is_ok() {
            format!("{path}[{k}]")
        } else {
            format!("{path}.{k}")
        };
        first_field_error(v, &sub)
    })
}

/// How long a 429 asks to wait: the body's `retry_after`, else `Retry-After`, else
/// `X-RateLimit-Reset-After`, else a second. A value that is not a finite, non-negative
/// number is ignored; a huge one is held to [`MAX_RATE_LIMIT_WAIT`].
pub fn retry_after(headers: &HeaderMap, body: Option<&Value>) -> Duration {
    let seconds = |v: Option<f64>| v.filter(|s| s.is_finite() && *s >= 0.0);
    let from_header = |name| seconds(header(headers, name).and_then(|v| v.trim().parse().ok()));
    let secs = seconds(body.and_then(|b| b["retry_after"].as_f64()))
        .or_else(|| from_header("retry-after"))
        .or_else(|| from_header("x-ratelimit-reset-after"))
        .unwrap_or(1.0);
    Duration::try_from_secs_f64(secs)
        .unwrap_or(MAX_RATE_LIMIT_WAIT)
        .min(MAX_RATE_LIMIT_WAIT)
}

/// At most [`MAX_ANSWER`] bytes of an answer's body.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ANSWER {
        let chunk = response.chunk().await.map_err(|e| {
            Failure::Unavailable(format!("Discord's answer broke off: {}", e.without_url()))
        })?;
        let Some(chunk) = chunk else { break };
        let room = MAX_ANSWER - bytes.len();
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(bytes)
}

/// The path of a Discord URL with its ids as `{id}` and its tokens as `{token}`, for
/// traces: `/api/v10/interactions/{id}/{token}/callback`. Nothing secret survives it.
pub fn route_template(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => path,
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let is_id = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut out = String::with_capacity(path.len());
    for (i, segment) in segments.iter().enumerate() {
        let after_id_of =
            |word: &[&str]| i >= 2 && word.contains(&segments[i - 2]) && is_id(segments[i - 1]);
        let shown = if after_id_of(&["webhooks", "interactions"]) {
            "{token}"
        } else if is_id(segment) {
            "{id}"
        } else if segment.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'@'
        }) {
            segment
        } else {
            // Anything else (a name, an emoji) is not shown.
            "{value}"
        };
        out.push('/');
        out.push_str(shown);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Whether `route` (`METHOD url`) answers an interaction: its callback, or the follow-ups
/// and edits of its answer under `/webhooks/{application}/{token}`.
fn is_interaction(route: &str) -> bool {
    let path = route.split_once(' ').map_or(route, |(_, url)| url);
    path.contains("/interactions/") || path.contains("/webhooks/")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Discord's REST API for one bot token (or, for webhooks, none).
pub struct Rest {
    client: reqwest::Client,
    base: String,
    token: Option<Secret>,
    /// When each route (method and path) may be called again; the global limit under "".
    not_before: Mutex<HashMap<String, Instant>>,
}

impl Rest {
    /// The API at `base_url` (Discord's own when `None`), as the bot with `token`.
    pub fn new(base_url: Option<&str>, token: Option<Secret>) -> Self {
        let base = format!(
            "{}{API}",
            base_url
                .unwrap_or("https://discord.com")
                .trim_end_matches('/')
        );
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!(
                "DiscordBot (https://github.com/factorio-isr, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .build()
            .unwrap_or_default();
        Self {
            client,
            base,
            token,
            not_before: Mutex::default(),
        }
    }

    /// The full URL of an API path (`/channels/1/messages`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One request to `url` (an API URL or a webhook's), waiting first for any rate limit
    /// Discord announced for its route. Errors never contain the URL.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let template = route_template(url);
        let span = tracing::info_span!(
            "discord.request",
            otel.name = format!("{method} {template}"),
            otel.kind = "client",
            http.request.method = %method,
            url.template = template,
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let result = self
            .request(method, url, body)
            .instrument(span.clone())
            .await;
        if let Err(failure) = &result {
            let kind = match failure {
                Failure::RateLimited { .. } => "rate_limited",
                Failure::Unavailable(_) => "unavailable",
                Failure::Refused(_) => "refused",
            };
            span.record("error.type", kind);
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    async fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let route = format!("{method} {}", url.split('?').next().unwrap_or(url));
        if let Some(held) = self.held(&route) {
            // Not sent: the retry policy decides whether the wait fits its patience.
            return Err(held);
        }
        let mut request = self.client.request(method, url);
        if let Some(t) = &self.token {
            request = request.header("Authorization", format!("Bot {}", t.expose()));
        }
        if let Some(b) = body {
            request = request.json(b);
        }
        let response = request.send().await.map_err(|e| {
            Failure::Unavailable(format!("cannot reach Discord: {}", e.without_url()))
        })?;
        let (status, headers) = (response.status(), response.headers().clone());
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        self.remember_limits(&route, &headers);
        let bytes = read_capped(response).await?;
        if status.is_success() {
            return Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        }
        let failure = classify(status, &headers, &bytes);
        if let Failure::RateLimited { wait, global } = &failure {
            let key = if *global { String::new() } else { route };
            self.hold(key, *wait);
        }
        Err(failure)
    }

    /// An API call by path.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        self.call(method, &self.url(path), body).await
    }

    /// The rate limit that still holds `route` (the global one, or its own), if any.
    /// Interaction answers are not bound by the global limit (Discord's documentation:
    /// "interaction endpoints are not bound to the bot's global rate limit").
    fn held(&self, route: &str) -> Option<Failure> {
        let map = self.not_before.lock();
        let now = Instant::now();
        let global = map.get("").filter(|t| **t > now && !is_interaction(route));
        let own = map.get(route).filter(|t| **t > now);
        let until = global.into_iter().chain(own).max()?;
        Some(Failure::RateLimited {
            wait: *until - now,
            global: global == Some(until),
        })
    }

    /// A route whose bucket is spent (`X-RateLimit-Remaining: 0`) waits for its reset.
    fn remember_limits(&self, route: &str, headers: &HeaderMap) {
        if header(headers, "x-ratelimit-remaining").map(str::trim) == Some("0") {
            let reset = header(headers, "x-ratelimit-reset-after")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .unwrap_or(Duration::from_secs(1))
                .min(MAX_RATE_LIMIT_WAIT);
            self.hold(route.to_owned(), reset);
        }
    }

    fn hold(&self, route: String, wait: Duration) {
        let mut map = self.not_before.lock();
        let now = Instant::now();
        if map.len() > 1000 {
            map.retain(|_, t| *t > now);
        }
        let until = now + wait;
        let entry = map.entry(route).or_insert(until);
        *entry = (*entry).max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_route_template_shows_no_id_or_token() {
        let cases = [
            (
                "http://127.0.0.1:9/api/v10/interactions/123/aW50ZXJhY3Rpb24.token-x_y/callback",
                "/api/v10/interactions/{id}/{token}/callback",
            ),
            (
                "https://discord.com/api/v10/webhooks/42/abcdefghijklmnop/messages/@original?wait=true",
                "/api/v10/webhooks/{id}/{token}/messages/@original",
            ),
            (
                "https://discord.com/api/webhooks/42/lowercasetoken",
                "/api/webhooks/{id}/{token}",
            ),
            (
                "/api/v10/channels/111111111111/messages",
                "/api/v10/channels/{id}/messages",
            ),
            (
                "/api/v10/applications/9/guilds/8/commands",
                "/api/v10/applications/{id}/guilds/{id}/commands",
            ),
            (
                "/api/v10/guilds/8/members/Alice%20B",
                "/api/v10/guilds/{id}/members/{value}",
            ),
            ("https://discord.com", "/"),
        ];
        for (url, template) in cases {
            assert_eq!(route_template(url), template, "{url}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_global_limit_holds_every_route_but_interaction_answers() {
        let rest = Rest::new(Some("http://127.0.0.1:9"), None);
        rest.hold(String::new(), Duration::from_secs(60));
        let post = format!("POST {}", rest.url("/channels/1/messages"));
        assert!(matches!(
            rest.held(&post),
            Some(Failure::RateLimited { global: true, .. })
        ));
        for answer in [
            "/interactions/5/tok/callback",
            "/webhooks/7/tok",
            "/webhooks/7/tok/messages/@original",
        ] {
            let route = format!("POST {}", rest.url(answer));
            assert_eq!(rest.held(&route), None, "{answer}");
        }
    }

    #[test]
    fn retry_after_takes_discords_number_and_survives_nonsense() {
        let body = json!({"retry_after": 1.5});
        assert_eq!(
            retry_after(&headers(&[("retry-after", "9")]), Some(&body)),
            Duration::from_millis(1500)
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3.2")]), None),
            Duration::from_millis(3200)
        );
        assert_eq!(
            retry_after(&headers(&[("x-ratelimit-reset-after", "0.25")]), None),
            Duration::from_millis(250)
        );
        for nonsense in ["NaN", "-4", "inf", "soon", ""] {
            assert_eq!(
                retry_after(&headers(&[("retry-after", nonsense)]), None),
                Duration::from_secs(1),
                "{nonsense}"
            );
        }
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1e300")]), None),
            MAX_RATE_LIMIT_WAIT
        );
    }

    #[test]
    fn a_spent_bucket_or_a_global_limit_holds_the_next_call() {
        let rest = Rest::new(Some("http://127.0.0.1:9"), None);
        rest.remember_limits(
            "POST /a",
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset-after", "2.5"),
            ]),
        );
        let Some(Failure::RateLimited { wait, global }) = rest.held("POST /a") else {
            panic!("not held")
        };
        assert!(!global && wait > Duration::from_secs(2) && wait <= Duration::from_millis(2500));
        assert_eq!(rest.held("POST /b"), None, "another route is free");
        rest.hold(String::new(), Duration::from_secs(60));
        assert!(matches!(
            rest.held("POST /b"),
            Some(Failure::RateLimited { global: true, .. })
        ));
    }

    #[tokio::test]
    async fn an_endless_answer_is_read_no_further_than_the_cap() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = sock.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                        Content-Length: 10000000000\r\n\r\n";
            sock.write_all(head.as_bytes()).await.unwrap();
            // Writes until the client stops reading and goes away; counts what it wrote.
            let block = vec![b' '; 64 * 1024];
            let mut written = 0usize;
            while sock.write_all(&block).await.is_ok() {
                written += block.len();
                assert!(written < 64 << 20, "the client read on past its cap");
            }
            written
        });
        let rest = Rest::new(Some(&format!("http://{addr}")), None);
        let answer = rest.api(Method::POST, "/channels/1/messages", None).await;
        assert_eq!(answer, Ok(Value::Null), "a success stays a success");
        drop(rest);
        let written = server.await.unwrap();
        assert!(written < 64 << 20, "{written}");
    }

    #[test]
    fn answers_are_sorted_by_what_to_do() {
        let limited = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("x-ratelimit-scope", "global")]),
            br#"{"message": "You are being rate limited.", "retry_after": 0.5, "global": false}"#,
        );
        assert_eq!(
            limited,
            Failure::RateLimited {
                wait: Duration::from_millis(500),
                global: true
            }
        );
        assert!(
            classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"").retryable(),
            "5xx"
        );
        let refused = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"code": 50035, "message": "Invalid Form Body", "errors": {"embeds": {"0": {"title": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 256 or fewer in length."}]}}}}}"#,
        );
        assert!(!refused.retryable());
        assert_eq!(
            refused.to_string(),
            "Discord refused it: 400 (code 50035) Invalid Form Body: embeds[0].title: Must be 256 or fewer in length."
        );
    }
}
