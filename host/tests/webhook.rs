//! The webhook sink against a local HTTP server standing in for Discord.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use factorio_isr::config::Secret;
use factorio_isr::event::Event;
use factorio_isr::sink::{Sink, WebhookSink};

#[derive(Clone, Default)]
struct Fake {
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    /// How many requests to answer with 429 first.
    rate_limit: Arc<Mutex<u32>>,
}

async fn execute(
    State(fake): State<Fake>,
    body: axum::Json<serde_json::Value>,
) -> axum::response::Response {
    {
        let mut left = fake.rate_limit.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            let retry = serde_json::json!({"message": "You are being rate limited.", "retry_after": 0.05, "global": false});
            return (StatusCode::TOO_MANY_REQUESTS, axum::Json(retry)).into_response();
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

fn chat(player: &str, text: &str) -> Event {
    Event {
        player: Some(player.into()),
        message: Some(text.into()),
        emoji: Some("💬".into()),
        text: Some(format!("**{player}**: {text}")),
        ..Event::new("chat")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_posted_with_mentions_off_and_429s_are_waited_out() {
    let (url, fake) = fake_discord(2).await;
    let sink = WebhookSink::new(Secret::new(url));
    let events = vec![chat("Alice", "@everyone look"), chat("Bob", "hi")];
    sink.deliver("prod", &events).await.unwrap();
    let bodies = fake.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "a batch is one message: {bodies:?}");
    assert_eq!(
        bodies[0]["allowed_mentions"],
        serde_json::json!({"parse": []})
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
    let events: Vec<Event> = (0..200)
        .map(|i| chat("Alice", &format!("message number {i:03}")))
        .collect();
    sink.deliver("prod", &events).await.unwrap();
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
    )));
    let err = sink
        .deliver("prod", &[chat("A", "b")])
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("secret-token"), "{err}");
    assert!(err.starts_with("webhook:"), "{err}");
}
