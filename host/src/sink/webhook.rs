//! Events posted to a Discord webhook: no bot needed, just its URL.
//!
//! A batch becomes as few messages as Discord's 2,000-character limit allows. Mentions are
//! switched off on every message, so `@everyone` typed in the game pings nobody. A 429 is
//! waited out (as long as Discord asks, up to a bound) and the message sent again. The URL
//! holds the webhook's token: it never appears in a log line or an error.

use std::time::Duration;

use serde_json::json;

use super::{Delivery, Sink, SinkError};
use crate::config::Secret;
use crate::event::Event;

/// Discord's limit for a message's `content`.
const MAX_CONTENT: usize = 2000;
/// The longest wait for a 429 before the delivery counts as failed (and the pipeline retries).
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(30);

/// Posts events to one webhook URL.
pub struct WebhookSink {
    url: Secret,
    client: reqwest::Client,
}

impl WebhookSink {
    /// A sink posting to `url`.
    pub fn new(url: Secret) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("factorio-isr/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self { url, client }
    }

    async fn post(&self, content: &str) -> Result<(), SinkError> {
        let body = json!({
            "content": content,
            "allowed_mentions": { "parse": [] },
        });
        let mut waited = Duration::ZERO;
        loop {
            let response = self
                .client
                .post(self.url.expose())
                .json(&body)
                .send()
                .await
                .map_err(|e| SinkError::Other(format!("webhook: {}", e.without_url())))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            if status.as_u16() == 429 {
                let wait = retry_after(response).await;
                if waited + wait > MAX_RATE_LIMIT_WAIT {
                    return Err(SinkError::Other(
                        "webhook: rate limited for too long".into(),
                    ));
                }
                tracing::debug!("webhook rate limited; waiting {wait:?}");
                tokio::time::sleep(wait).await;
                waited += wait;
                continue;
            }
            return Err(SinkError::Other(format!(
                "webhook: Discord answered {status}"
            )));
        }
    }
}

/// How long Discord asks us to wait: the JSON `retry_after` (seconds), else the header.
async fn retry_after(response: reqwest::Response) -> Duration {
    let header = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok());
    let body = response
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["retry_after"].as_f64());
    let secs = body.or(header).unwrap_or(1.0);
    Duration::from_secs_f64(secs.clamp(0.0, MAX_RATE_LIMIT_WAIT.as_secs_f64()))
}

/// The lines of a batch packed into messages of at most [`MAX_CONTENT`] characters.
pub fn pack(lines: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut messages = Vec::new();
    let mut current = String::new();
    for mut line in lines {
        if line.chars().count() > MAX_CONTENT {
            line = line.chars().take(MAX_CONTENT - 1).collect::<String>() + "…";
        }
        if !current.is_empty() && current.chars().count() + 1 + line.chars().count() > MAX_CONTENT {
            messages.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
    }
    if !current.is_empty() {
        messages.push(current);
    }
    messages
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        "webhook"
    }

    fn deliver<'a>(&'a self, _server: &'a str, events: &'a [Event]) -> Delivery<'a> {
        Box::pin(async move {
            let lines = events.iter().map(|e| {
                let text = super::console::body(e);
                match &e.emoji {
                    Some(emoji) => format!("{emoji} {text}"),
                    None => text,
                }
            });
            for message in pack(lines) {
                self.post(&message).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_lines_into_messages_within_the_limit() {
        let lines: Vec<String> = (0..100)
            .map(|i| format!("{i:03} {}", "x".repeat(46)))
            .collect();
        let messages = pack(lines.clone());
        assert!(messages.len() > 1);
        assert!(messages.iter().all(|m| m.chars().count() <= MAX_CONTENT));
        assert_eq!(messages.join("\n"), lines.join("\n"));
        let long = pack(vec!["é".repeat(5000)]);
        assert_eq!(long[0].chars().count(), MAX_CONTENT);
    }

    #[test]
    fn the_url_never_shows_in_debug_output() {
        let sink = WebhookSink::new(Secret::new("https://discord.com/api/webhooks/1/token"));
        assert!(!format!("{:?}", sink.url).contains("token"));
    }
}
