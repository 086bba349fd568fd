//! One retry policy for everything the bot sends (bot messages, webhook posts, interaction
//! answers, command registration), by class of failure:
//!
//! - a 429 waits exactly what Discord asked (global or per route), then tries again;
//! - a 5xx or a network failure backs off exponentially with jitter (`backon`);
//! - any other 4xx is final at once: sending it again cannot succeed, and it must not hold
//!   up the messages behind it.
//!
//! Either way a call gives up once its `patience` is spent.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

use crate::backoff::Backoff;

use crate::discord::rest::Failure;

/// How long and how hard to try.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The longest a call may take, waits included, before it is given up.
    pub patience: Duration,
    /// The first backoff after a 5xx or network failure; doubled each time.
    pub first_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
}

impl Policy {
    /// Messages from the pipeline: the log is the buffer, so an outage may be waited out.
    pub const DELIVERY: Self = Self {
        patience: Duration::from_secs(600),
        first_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(30),
    };
    /// Interaction answers: the interaction's token lasts 15 minutes, the user waits less.
    pub const ANSWER: Self = Self {
        patience: Duration::from_secs(30),
        first_backoff: Duration::from_millis(250),
        max_backoff: Duration::from_secs(5),
    };

    /// The same policy with another patience.
    pub fn with_patience(self, patience: Duration) -> Self {
        Self { patience, ..self }
    }
}

/// What happened while retrying, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A 429 is being waited out.
    RateLimited,
    /// A 5xx or network failure is being backed off.
    Backoff,
}

/// Runs `attempt` until it succeeds, fails for good, or `policy.patience` is spent;
/// `on_retry` hears of every retry and the wait before it.
pub async fn run<T, F, Fut>(
    policy: Policy,
    mut attempt: F,
    mut on_retry: impl FnMut(Retry, &Failure, Duration),
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let started = Instant::now();
    let mut backoff = Backoff::jittered(policy.first_backoff, policy.max_backoff);
    loop {
        let failure = match attempt().await {
            Ok(v) => return Ok(v),
            Err(f) => f,
        };
        let (kind, wait) = match &failure {
            Failure::Refused(_) => return Err(failure),
            Failure::RateLimited { wait, .. } => (Retry::RateLimited, *wait),
            Failure::Unavailable(_) => (Retry::Backoff, backoff.next_wait()),
        };
        if started.elapsed() + wait > policy.patience {
            return Err(failure);
        }
        on_retry(kind, &failure, wait);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discord::rest::Refusal;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick() -> Policy {
        Policy {
            patience: Duration::from_secs(60),
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_waits_exactly_what_was_asked() {
        let calls = AtomicU32::new(0);
        let t0 = tokio::time::Instant::now();
        let mut waits = Vec::new();
        let out = run(
            quick(),
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(Failure::RateLimited {
                        wait: Duration::from_millis(1500),
                        global: false,
                    }),
                    1 => Err(Failure::RateLimited {
                        wait: Duration::from_millis(3200),
                        global: true,
                    }),
                    _ => Ok(7),
                }
            },
            |k, _, w| waits.push((k, w)),
        )
        .await;
        assert_eq!(out, Ok(7));
        assert_eq!(t0.elapsed(), Duration::from_millis(4700));
        assert_eq!(
            waits,
            [
                (Retry::RateLimited, Duration::from_millis(1500)),
                (Retry::RateLimited, Duration::from_millis(3200))
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_final_at_once_and_an_outage_gives_up_after_patience() {
        let calls = AtomicU32::new(0);
        let refused = Failure::Refused(Refusal {
            status: 403,
            code: Some(50013),
            message: "Missing Permissions".into(),
        });
        let out: Result<(), _> = run(
            quick(),
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(refused.clone())
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(out, Err(refused));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let t0 = tokio::time::Instant::now();
        let out: Result<(), _> = run(
            quick().with_patience(Duration::from_secs(2)),
            || async { Err(Failure::Unavailable("502".into())) },
            |k, _, w| assert!(k == Retry::Backoff && w <= Duration::from_millis(10)),
        )
        .await;
        assert!(matches!(out, Err(Failure::Unavailable(_))));
        assert!(t0.elapsed() <= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_the_patience_is_not_waited() {
        let t0 = tokio::time::Instant::now();
        let out: Result<(), _> = run(
            quick().with_patience(Duration::from_secs(5)),
            || async {
                Err(Failure::RateLimited {
                    wait: Duration::from_secs(3600),
                    global: true,
                })
            },
            |_, _, _| panic!("no retry"),
        )
        .await;
        assert!(matches!(out, Err(Failure::RateLimited { .. })));
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }
}
