//! The webhook sink against a local HTTP server standing in for Discord.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use factorio_isr::alert::Notice;
use factorio_isr::config::Secret;
use factorio_isr::discord::WebhookSink;
use factorio_isr::event::Event;
use factorio_isr::sink::{Batch, Sink};

#[derive(Clone, Default)]
struct Fake {
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    /// How many requests to answer with 429 first.
    rate_limit: Arc<Mutex<u32>>,
    /// The `Retry-After` header of those 429s (none: the body says 0.05 s).
    retry_after_header: Arc<Mutex<Option<&'static str>>>,
    /// Requests to answer with 403 Missing Permissions.
    forbidden: Arc<Mutex<u32>>,
    /// Every request, when it came.
    seen: Arc<Mutex<Vec<std::time::Instant>>>,
    /// An outage to come: once `after` messages were taken, the next `refuse` requests are
    /// answered 503 (counted, not timed, so the test does not hang on the clock).
    outage: Arc<Mutex<Option<Outage>>>,
}

struct Outage {
    after: usize,
    refuse: usize,
}

impl Outage {
    /// Whether a request now falls in the outage.
    fn now(&mut self, taken: usize) -> bool {
        let down = taken >= self.after && self.refuse > 0;
        self.refuse -= usize::from(down);
        down
    }
}

async fn execute(
    State(fake): State<Fake>,
    body: axum::Json<serde_json::Value>,
) -> axum::response::Response {
    fake.seen.lock().unwrap().push(std::time::Instant::now());
    {
        let mut left = fake.rate_limit.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            if let Some(h) = *fake.retry_after_header.lock().unwrap() {
                let body =
                    serde_json::json!({"message": "You are being rate limited.", "global": false});
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", h)],
                    axum::Json(body),
                )
                    .into_response();
            }
            let retry = serde_json::json!({"message": "You are being rate limited.", "retry_after": 0.05, "global": false});
            return (StatusCode::TOO_MANY_REQUESTS, axum::Json(retry)).into_response();
        }
    }
    let taken = fake.bodies.lock().unwrap().len();
    if let Some(o) = fake.outage.lock().unwrap().as_mut()
        && o.now(taken)
    {
        let body = serde_json::json!({"message": "Service Unavailable", "code": 0});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    {
        let mut left = fake.forbidden.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            let body = serde_json::json!({"message": "Missing Permissions", "code": 50013});
            return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
        }
    }
    fake.bodies.lock().unwrap().push(body.0);
    StatusCode::NO_CONTENT.into_response()
}

async fn fake_discord(rate_limit: u32) -> (String, Fake) {
    let fake = Fake {
        rate_limit: Arc::new(Mutex::new(rate_limit)),
        ..Fake::default()
    };
    let app = Router::new()
        .route("/api/webhooks/{id}/{token}", post(execute))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/api/webhooks/123/secret-token"), fake)
}

fn chat(player: &str, text: &str) -> Notice {
    Notice::Event(Event {
        player: Some(player.into()),
        message: Some(text.into()),
        emoji: Some("💬".into()),
        text: Some(format!("**{player}**: {text}")),
        ..Event::new("chat")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_posted_with_mentions_off_and_429s_are_waited_out() {
    let (url, fake) = fake_discord(2).await;
    let sink = WebhookSink::new(Secret::new(url));
    let events = vec![chat("Alice", "@everyone look"), chat("Bob", "hi")];
    sink.deliver(&Batch::new("prod", &events)).await.unwrap();
    let bodies = fake.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "a batch is one message: {bodies:?}");
    assert_eq!(
        bodies[0]["allowed_mentions"],
        serde_json::json!({"parse": [], "roles": [], "users": []})
    );
    assert_eq!(
        bodies[0]["content"],
        "💬 **Alice**: @everyone look\n💬 **Bob**: hi"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_batch_is_split_at_the_message_limit_and_nothing_is_lost() {
    let (url, fake) = fake_discord(0).await;
    let sink = WebhookSink::new(Secret::new(url));
    let events: Vec<Notice> = (0..200)
        .map(|i| chat("Alice", &format!("message number {i:03}")))
        .collect();
    sink.deliver(&Batch::new("prod", &events)).await.unwrap();
    let bodies = fake.bodies.lock().unwrap().clone();
    assert!(bodies.len() > 1);
    let all: Vec<String> = bodies
        .iter()
        .map(|b| b["content"].as_str().unwrap().to_owned())
        .collect();
    assert!(all.iter().all(|c| c.chars().count() <= 2000));
    for i in 0..200 {
        assert_eq!(
            all.iter()
                .filter(|c| c.contains(&format!("number {i:03}")))
                .count(),
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_never_show_the_token() {
    // Nothing listens on this port: the request fails.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sink = WebhookSink::new(Secret::new(format!(
        "http://127.0.0.1:{port}/api/webhooks/1/secret-token"
    )))
    .with_patience(std::time::Duration::from_secs(2));
    let err = sink
        .deliver(&Batch::new("prod", &[chat("A", "b")]))
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("secret-token"), "{err}");
    assert!(err.starts_with("webhook:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_that_is_not_a_number_is_waited_as_one_second_without_a_panic() {
    let (url, fake) = fake_discord(1).await;
    *fake.retry_after_header.lock().unwrap() = Some("NaN");
    let sink = WebhookSink::new(Secret::new(url));
    sink.deliver(&Batch::new("prod", &[chat("Alice", "after NaN")]))
        .await
        .unwrap();
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1] - seen[0] >= std::time::Duration::from_secs(1),
        "{:?}",
        seen[1] - seen[0]
    );
    assert_eq!(
        fake.bodies.lock().unwrap()[0]["content"],
        "💬 **Alice**: after NaN"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_is_dropped_at_once_and_the_next_goes_through() {
    let (url, fake) = fake_discord(0).await;
    *fake.forbidden.lock().unwrap() = 1;
    let sink = WebhookSink::new(Secret::new(url));
    sink.deliver(&Batch::new("prod", &[chat("Alice", "refused")]))
        .await
        .unwrap();
    sink.deliver(&Batch::new("prod", &[chat("Alice", "taken")]))
        .await
        .unwrap();
    assert_eq!(
        fake.seen.lock().unwrap().len(),
        2,
        "the refused message was sent again"
    );
    let bodies = fake.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["content"], "💬 **Alice**: taken");
}

/// The webhook goes down in the middle of a batch for longer than the sink's patience (two
/// refusals: its retry policy gives up after at most two, since the second wait is over its
/// patience): the delivery fails part way, the pipeline resumes it after the messages that
/// went through, and every line arrives exactly once (the pipeline used to send the whole
/// batch again). The outage is never longer than two resumptions, which the pipeline allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_down_mid_batch_longer_than_its_patience_gets_every_line_once() {
    let (url, fake) = fake_discord(0).await;
    *fake.outage.lock().unwrap() = Some(Outage {
        after: 3,
        refuse: 2,
    });
    let sink =
        WebhookSink::new(Secret::new(url)).with_patience(std::time::Duration::from_millis(700));
    let events: Vec<Notice> = (0..600)
        .map(|i| chat("Alice", &format!("line {i:03} {}", "x".repeat(40))))
        .collect();
    let shared = factorio_isr::observe::Telemetry {
        health: factorio_isr::observe::health::Health::default(),
        metrics: Arc::new(factorio_isr::observe::metrics::Metrics::new()),
    };
    factorio_isr::pipeline::deliver::deliver("prod", &sink, &events, None, &shared).await;
    let bodies = fake.bodies.lock().unwrap().clone();
    let refused = fake.seen.lock().unwrap().len() - bodies.len();
    assert_eq!(refused, 2, "the outage was not met");
    let gave_up = shared
        .metrics
        .errors
        .with_label_values(&["sink:prod:webhook", "delivery"])
        .get();
    assert!(gave_up >= 1, "the sink never gave up mid-batch");
    assert_eq!(
        shared
            .metrics
            .errors
            .with_label_values(&["sink:prod:webhook", "dropped"])
            .get(),
        0
    );
    let all: Vec<String> = bodies
        .iter()
        .map(|b| b["content"].as_str().unwrap().to_owned())
        .collect();
    let doubled: Vec<usize> = (0..600)
        .filter(|i| {
            let n = all
                .iter()
                .map(|c| c.matches(&format!("line {i:03} ")).count())
                .sum::<usize>();
            assert!(n > 0, "line {i} never posted");
            n > 1
        })
        .collect();
    assert!(doubled.is_empty(), "{} lines posted twice", doubled.len());
}
