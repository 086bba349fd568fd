//! Supervision, on a host run in-process (`app::Host`): a part that panics — on a fault only
//! a test build can inject — is restarted from the last checkpoint with nothing lost or
//! doubled; after too many restarts the server stays down and `/ready` says so; one server
//! is stopped and started again while another keeps delivering. Timeouts are hang guards.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{append, chat, delivered, http_get};
use factorio_isr::app::{Host, HostOptions, RestartPolicy};
use factorio_isr::config::Config;
use factorio_isr::servers::RunState;

const GUARD: Duration = Duration::from_secs(60);

struct Setup {
    _dir: tempfile::TempDir,
    logs: Vec<PathBuf>,
    sinks: Vec<PathBuf>,
    host: Host,
}

const TOKEN: &str = "test-admin-token";

/// A host following `tags`' logs, each into its own JSONL sink; its admin API takes
/// [`TOKEN`].
async fn start(tags: &[&str], restarts: RestartPolicy) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut yml = String::from("servers:\n");
    let (mut logs, mut sinks) = (Vec::new(), Vec::new());
    for tag in tags {
        let log = dir.path().join(format!("{tag}.log"));
        let sink = dir.path().join(format!("{tag}.jsonl"));
        std::fs::write(&log, "").unwrap();
        yml.push_str(&format!(
            "  {tag}:\n    log_path: {}\n    sinks:\n      - jsonl: {}\n",
            log.display(),
            sink.display()
        ));
        logs.push(log);
        sinks.push(sink);
    }
    let path = dir.path().join("servers.yml");
    std::fs::write(&path, yml).unwrap();
    let config = Config::load(&path).unwrap();
    let runtime = factorio_isr::plugin::Runtime::new(
        factorio_isr::plugin::ComponentCache::new(None),
        factorio_isr::plugin::Limits::default(),
    )
    .unwrap();
    let opts = HostOptions {
        state_dir: dir.path().join("state"),
        http: "127.0.0.1:0".parse().unwrap(),
        poll: Duration::from_millis(20),
        runtime: Arc::new(runtime),
        mentions: Arc::new(factorio_isr::alert::Mentions::builtin()),
        discord: None,
        api: factorio_isr::http::ApiAuth {
            token: Some(factorio_isr::config::Secret::new(TOKEN)),
            reads_need_token: false,
        },
        restarts,
    };
    let host = Host::start(&opts, &config).await.unwrap();
    Setup {
        _dir: dir,
        logs,
        sinks,
        host,
    }
}

fn quick(limit: u32) -> RestartPolicy {
    RestartPolicy {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        limit,
        window: Duration::from_secs(3600),
    }
}

async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(GUARD, async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

fn lines(from: usize, to: usize, marker_at: Option<(usize, &str)>) -> String {
    (from..to)
        .map(|i| match marker_at {
            Some((at, marker)) if at == i => {
                format!("2026-01-01 10:00:00 [CHAT] Alice: msg-{i} {marker}\n")
            }
            _ => chat(i),
        })
        .collect()
}

/// Every message `msg-0` … `msg-{n-1}` delivered exactly once (a marked one with its marker).
fn exactly_once(sink: &Path, n: usize) -> Result<(), String> {
    let seen = delivered(sink);
    let mut wrong = Vec::new();
    for i in 0..n {
        let count: usize = seen
            .iter()
            .filter(|(m, _)| *m == &format!("msg-{i}") || m.starts_with(&format!("msg-{i} ")))
            .map(|(_, c)| *c)
            .sum();
        if count != 1 {
            wrong.push(format!("msg-{i} ×{count}"));
        }
    }
    if wrong.is_empty() && seen.values().sum::<usize>() == n {
        Ok(())
    } else {
        Err(format!(
            "{} of {n} wrong: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(10)]
        ))
    }
}

fn metrics(host: &Host) -> String {
    host.shared.metrics.render(&host.shared.health)
}

/// Prod's parser panicked `panics` times and was restarted `restarts` times.
fn assert_parser_counts(host: &Host, panics: u64, restarts: u64) {
    let m = metrics(host);
    for (counter, n) in [
        ("task_panics_total", panics),
        ("task_restarts_total", restarts),
    ] {
        let line = format!(r#"factorio_isr_{counter}{{server="prod",task="parser"}} {n}"#);
        assert!(m.contains(&line), "{line} in {m}");
    }
}

fn run_state(host: &Host, tag: &str) -> RunState {
    host.server(tag).unwrap().run.borrow().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parser_panic_restarts_the_server_from_its_checkpoint_and_loses_nothing() {
    let s = start(&["prod", "other"], quick(5)).await;
    factorio_isr::observe::fault::inject("parser", "BOOM-once", Some(1));
    append(&s.logs[0], &lines(0, 200, None));
    append(&s.logs[1], &lines(0, 100, None));
    until("the first lines", || exactly_once(&s.sinks[0], 200).is_ok()).await;
    // The batch holding the marker is lost with the thread; the restart reads it again.
    append(&s.logs[0], &lines(200, 400, Some((250, "BOOM-once"))));
    append(&s.logs[1], &lines(100, 200, None));
    until("every line of prod once, after a restart", || {
        exactly_once(&s.sinks[0], 400).is_ok()
    })
    .await;
    until("every line of other once", || {
        exactly_once(&s.sinks[1], 200).is_ok()
    })
    .await;
    assert_eq!(
        run_state(&s.host, "prod"),
        RunState::Running { restarts: 1 }
    );
    assert_eq!(
        run_state(&s.host, "other"),
        RunState::Running { restarts: 0 }
    );
    assert_parser_counts(&s.host, 1, 1);
    // Restarted: the part is ready again and says why it restarted.
    let task = s
        .host
        .shared
        .health
        .snapshot()
        .into_iter()
        .find(|c| c.name == "task:prod:parser")
        .unwrap();
    assert_eq!(
        task.state,
        factorio_isr::observe::health::State::Ready,
        "{task:?}"
    );
    assert!(
        task.detail
            .unwrap_or_default()
            .contains("restarted after parser"),
        "the detail says why"
    );
    // Lines after the restart keep flowing.
    append(&s.logs[0], &lines(400, 450, None));
    until("lines after the restart", || {
        exactly_once(&s.sinks[0], 450).is_ok()
    })
    .await;
    s.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_keeps_panicking_gives_up_says_so_and_can_be_started_again() {
    let s = start(&["prod", "other"], quick(2)).await;
    // Fires on the first run and both restarts, so the third panic gives up; a fourth
    // run gets past it.
    factorio_isr::observe::fault::inject("parser", "BOOM-thrice", Some(3));
    append(&s.logs[0], &lines(0, 50, Some((10, "BOOM-thrice"))));
    until("the server giving up", || {
        matches!(run_state(&s.host, "prod"), RunState::GaveUp { .. })
    })
    .await;
    let RunState::GaveUp { restarts, cause } = run_state(&s.host, "prod") else {
        unreachable!()
    };
    assert_eq!(restarts, 2);
    assert!(cause.contains("parser"), "{cause}");
    // It stays down (no crash loop) and says so; the other server works on.
    append(&s.logs[1], &lines(0, 30, None));
    until("other's lines", || exactly_once(&s.sinks[1], 30).is_ok()).await;
    assert!(
        matches!(run_state(&s.host, "prod"), RunState::GaveUp { .. }),
        "still down"
    );
    let port = s.host.http_addr.unwrap().port();
    let ready = tokio::task::spawn_blocking(move || http_get(port, "/ready"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert!(
        ready.1.contains("server:prod") && ready.1.contains("stays down"),
        "{}",
        ready.1
    );
    assert_parser_counts(&s.host, 3, 2);
    assert_eq!(
        delivered(&s.sinks[0]).len(),
        0,
        "the marked batch never went out"
    );
    // Started again by hand, it reads from the checkpoint: every line once.
    let reached = s.host.start_server("prod").await;
    assert!(
        matches!(reached, Some(RunState::Running { .. })),
        "{reached:?}"
    );
    until("prod's lines once", || {
        exactly_once(&s.sinks[0], 50).is_ok()
    })
    .await;
    assert!(
        !s.host
            .shared
            .health
            .snapshot()
            .iter()
            .any(|c| c.name == "server:prod"),
        "the give-up is cleared"
    );
    s.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_stops_and_starts_again_while_the_other_delivers() {
    let s = start(&["prod", "other"], quick(5)).await;
    append(&s.logs[0], &lines(0, 100, None));
    until("prod's first lines", || {
        exactly_once(&s.sinks[0], 100).is_ok()
    })
    .await;
    assert_eq!(s.host.stop_server("prod").await, Some(RunState::Stopped));
    let names: Vec<String> = s
        .host
        .shared
        .health
        .snapshot()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(
        !names.iter().any(|n| n.split(':').nth(1) == Some("prod")),
        "a stopped server is out of /ready: {names:?}"
    );
    assert!(names.iter().any(|n| n == "tailer:other"), "{names:?}");
    // Written while stopped: not read now, read after the start.
    append(&s.logs[0], &lines(100, 300, None));
    append(&s.logs[1], &lines(0, 100, None));
    until("other's lines", || exactly_once(&s.sinks[1], 100).is_ok()).await;
    assert_eq!(
        delivered(&s.sinks[0]).len(),
        100,
        "prod reads nothing while stopped"
    );
    assert_eq!(
        s.host.stop_server("prod").await,
        Some(RunState::Stopped),
        "twice is fine"
    );
    let reached = s.host.start_server("prod").await;
    assert_eq!(reached, Some(RunState::Running { restarts: 0 }));
    until("prod's lines once", || {
        exactly_once(&s.sinks[0], 300).is_ok()
    })
    .await;
    assert_eq!(s.host.stop_server("nope").await, None);
    s.host.shutdown().await;
}

async fn call(
    port: u16,
    method: &'static str,
    path: &str,
    token: Option<&'static str>,
) -> (u16, serde_json::Value) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || common::http_call(port, method, &path, token))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_stops_and_starts_a_server_with_the_token_only() {
    let s = start(&["prod"], quick(5)).await;
    let port = s.host.http_addr.unwrap().port();
    let (code, _) = call(port, "POST", "/api/servers/prod/stop", None).await;
    assert_eq!(code, 401, "no token, no stop");
    assert_eq!(
        run_state(&s.host, "prod"),
        RunState::Running { restarts: 0 }
    );
    let (code, body) = call(port, "POST", "/api/servers/prod/stop", Some(TOKEN)).await;
    assert_eq!(
        (code, &body["run"]["state"]),
        (200, &serde_json::json!("stopped")),
        "{body}"
    );
    let (_, view) = call(port, "GET", "/api/servers/prod", None).await;
    assert_eq!(view["run"]["state"], "stopped", "{view}");
    append(&s.logs[0], &lines(0, 20, None));
    let (code, body) = call(port, "POST", "/api/servers/prod/start", Some(TOKEN)).await;
    assert_eq!(
        (code, &body["run"]["state"]),
        (200, &serde_json::json!("running")),
        "{body}"
    );
    until("the lines written while stopped", || {
        exactly_once(&s.sinks[0], 20).is_ok()
    })
    .await;
    let (code, _) = call(port, "POST", "/api/servers/nope/start", Some(TOKEN)).await;
    assert_eq!(code, 404);
    s.host.shutdown().await;
}
