//! Events posted to a Discord webhook: no bot needed, just its URL.
//!
//! A batch becomes as few messages as Discord's 2,000-character limit allows. Mentions are
//! switched off on every message, so `@everyone` typed in the game pings nobody. Each post
//! goes through the bot's [retry policy](crate::discord::rest::retry): a 429 waits what Discord asks
//! (a `Retry-After` that is not a sane number counts as one second), an outage is backed
//! off, and a refusal drops that message (counted in the log) without holding up the rest.
//! The URL holds the webhook's token: it never appears in a log line or an error.

use std::time::Duration;

use reqwest::Method;

use crate::alert::Notice;
use crate::config::Secret;
use crate::discord::rest::payload::Message;
use crate::discord::rest::retry::{self, Policy};
use crate::discord::rest::{Failure, Rest};
use crate::discord::sinks::pack::pack as pack_messages;
use crate::sink::{Batch, Delivery, Sink, SinkError};

/// How long one message may be retried before the delivery counts as failed (and the
/// pipeline resumes it after a wait, from that message on); below the sink's own patience.
const PATIENCE: Duration = Duration::from_secs(45);

/// Posts events to one webhook URL.
pub struct WebhookSink {
    url: Secret,
    rest: Rest,
    patience: Duration,
}

impl WebhookSink {
    /// A sink posting to `url`.
    pub fn new(url: Secret) -> Self {
        Self {
            url,
            rest: Rest::new(None, None),
            patience: PATIENCE,
        }
    }

    /// Gives up on a message after `patience` instead of 45 s (for tests).
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    async fn post(&self, content: String) -> Result<(), SinkError> {
        let body = serde_json::to_value(Message::text(content).fit()).unwrap_or_default();
        let attempt = || self.rest.call(Method::POST, self.url.expose(), Some(&body));
        let on_retry = |_, failure: &Failure, wait: Duration| {
            tracing::debug!("webhook: {failure}; trying again in {wait:?}");
        };
        match retry::run(
            Policy::DELIVERY.with_patience(self.patience),
            attempt,
            on_retry,
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(Failure::Refused(r)) => {
                tracing::warn!("webhook: a message was dropped: {r}");
                Ok(())
            }
            Err(e) => Err(SinkError::Other(format!("webhook: {e}"))),
        }
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        "webhook"
    }

    fn patience(&self) -> Duration {
        self.patience + Duration::from_secs(15)
    }

    fn deliver<'a>(&'a self, batch: &'a Batch<'a>) -> Delivery<'a> {
        Box::pin(async move {
            let lines = batch.events().iter().map(Notice::line);
            let mut first = 0;
            for (message, held) in pack_messages(lines) {
                self.post(message).await?;
                batch.done(first..first + held);
                first += held;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_never_shows_in_debug_output() {
        let sink = WebhookSink::new(Secret::new("https://discord.com/api/webhooks/1/token"));
        assert!(!format!("{:?}", sink.url).contains("token"));
    }
}
