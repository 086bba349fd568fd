//! Traces end to end: the real binary, exporting over OTLP/HTTP to a local receiver that
//! decodes what it gets with the protocol's own messages, while it follows a log, talks RCON
//! to the fake Factorio server and Discord to the fake Discord. Timeouts are hang guards.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::fake_discord::{FakeDiscord, GUILD};
use common::otlp::{Receiver, Span};
use common::*;

const EVENTS: u64 = 111_111_111_111_111_111;

/// The spans of one trace, by id.
fn trace_of<'a>(spans: &'a [Span], trace_id: &str) -> BTreeMap<&'a str, &'a Span> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .map(|s| (s.span_id.as_str(), s))
        .collect()
}

/// The names on the way from `span` up to its root.
fn ancestry(trace: &BTreeMap<&str, &Span>, span: &Span) -> Vec<String> {
    let mut names = vec![span.name.clone()];
    let mut parent = span.parent_id.as_str();
    while !parent.is_empty() {
        let Some(p) = trace.get(parent) else {
            names.push(format!("<missing {parent}>"));
            break;
        };
        names.push(p.name.clone());
        parent = p.parent_id.as_str();
    }
    names
}

#[test]
fn a_batch_an_rcon_command_and_a_slash_command_are_traced_and_the_log_names_their_ids() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    std::fs::write(&log, "").unwrap();
    let sim = SimProcess::start(0, "pw", &log);
    let discord = FakeDiscord::start();
    let config = format!(
        "servers:\n  prod:\n    log_path: {log}\n    rcon_host: 127.0.0.1\n    rcon_port: {port}\n    \
         rcon_password: pw\n    metrics_interval: 1\n    event_channel_id: {EVENTS}\n\
         discord:\n  guild_id: {GUILD}\n  cooldowns: {{query: 0, admin: 0, danger: 0}}\n",
        log = log.display(),
        port = sim.port,
    );
    let isr = Isr::start_with_env(
        dir.path(),
        &config,
        free_port(),
        &[
            ("DISCORD_BOT_TOKEN", "fake-token"),
            ("DISCORD_API_URL", &discord.api_url),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", ""),
            ("OTEL_SDK_DISABLED", ""),
            ("LOG_FORMAT", "json"),
            ("LOG_LEVEL", "info,factorio_isr::discord=debug"),
        ],
    );
    isr.wait_started();
    wait_for("the bot to connect", || discord.recorded().identified());

    append(
        &log,
        "2026-01-01 10:00:00 [JOIN] Alice joined the game\n2026-01-01 10:00:01 [CHAT] Alice: traced\n",
    );
    wait_for("the events in Discord", || {
        discord
            .recorded()
            .messages
            .iter()
            .any(|(c, m)| *c == EVENTS && m["content"].as_str().unwrap_or("").contains("traced"))
    });
    let id = discord.command(1, &[], "factorio status", &[("server", "prod")]);
    wait_for("the answer to /factorio status", || {
        discord.recorded().responses.iter().any(|(i, _)| *i == id)
    });

    // The batch: tail → parse → deliver → the Discord request, and the checkpoint, in one
    // trace under the batch's root span.
    let mut spans = Vec::new();
    wait_for("the batch's trace, with its Discord request", || {
        spans = receiver.spans();
        spans.iter().any(|s| {
            s.name.starts_with("POST ")
                && ancestry(&trace_of(&spans, &s.trace_id), s)
                    .ends_with(&["deliver".to_owned(), "batch".to_owned()])
        }) && spans.iter().any(|s| s.name == "checkpoint")
            && spans.iter().any(|s| s.name.starts_with("/factorio status"))
    });
    let batch = spans
        .iter()
        .find(|s| s.name == "batch" && s.attributes.get("lines").map(String::as_str) == Some("2"))
        .unwrap_or_else(|| panic!("no batch of the two lines: {spans:#?}"));
    assert!(batch.parent_id.is_empty(), "a batch starts its own trace");
    assert_eq!(batch.attributes["server"], "prod");
    assert_eq!(
        batch.resource.get("service.name").map(String::as_str),
        Some("factorio-isr")
    );
    let trace = trace_of(&spans, &batch.trace_id);
    let names: BTreeSet<&str> = trace.values().map(|s| s.name.as_str()).collect();
    for name in ["parse", "deliver", "checkpoint"] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    let parse = trace.values().find(|s| s.name == "parse").unwrap();
    assert_eq!(parse.parent_id, batch.span_id);
    assert_eq!(parse.attributes["events"], "2");
    let deliveries: Vec<&&Span> = trace.values().filter(|s| s.name == "deliver").collect();
    assert!(
        deliveries
            .iter()
            .all(|d| d.attributes["outcome"] == "delivered" && d.parent_id == batch.span_id),
        "{deliveries:#?}"
    );
    let request = trace
        .values()
        .find(|s| s.name.starts_with("POST "))
        .unwrap();
    assert_eq!(
        request.attributes["url.template"],
        "/api/v10/channels/{id}/messages"
    );
    assert_eq!(request.attributes["http.response.status_code"], "200");

    // RCON commands, by their first word only.
    let rcon: Vec<&Span> = spans.iter().filter(|s| s.name == "rcon.command").collect();
    assert!(
        rcon.iter()
            .any(|s| s.attributes["server"] == "prod" && s.attributes["command"].starts_with('/')),
        "{rcon:#?}"
    );
    assert!(
        rcon.iter().all(|s| !s.attributes["command"].contains(' ')),
        "{rcon:#?}"
    );

    // The slash command: its own trace, with the interaction callback in it; the
    // interaction's token is nowhere.
    let command = spans
        .iter()
        .find(|s| s.name.starts_with("/factorio status"))
        .unwrap_or_else(|| panic!("no slash command span: {spans:#?}"));
    assert_eq!(command.attributes["subcommand"], "status");
    assert!(command.parent_id.is_empty());
    let callback = trace_of(&spans, &command.trace_id)
        .into_values()
        .find(|s| s.name.starts_with("POST ") && s.name.contains("/interactions/"))
        .unwrap_or_else(|| panic!("no interaction callback in the command's trace"));
    assert_eq!(
        callback.attributes["url.template"],
        "/api/v10/interactions/{id}/{token}/callback"
    );
    let token = format!("token-{id}");
    for s in &spans {
        let text = format!("{s:?}");
        assert!(
            !text.contains(&token) && !text.contains("fake-token"),
            "a secret in a span: {s:#?}"
        );
    }
    assert!(receiver.refused().is_empty(), "{:?}", receiver.refused());

    // JSON log lines written inside a span carry its ids.
    let stderr = isr.stderr_path();
    assert!(isr.stop().success());
    let exported: BTreeSet<(String, String)> = receiver
        .spans()
        .into_iter()
        .map(|s| (s.trace_id, s.span_id))
        .collect();
    let logged: Vec<serde_json::Value> = std::fs::read_to_string(stderr)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let answered = logged
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("answered in"))
        })
        .unwrap_or_else(|| panic!("no 'answered in' line: {logged:#?}"));
    let ids = (
        answered["trace_id"].as_str().unwrap_or_default().to_owned(),
        answered["span_id"].as_str().unwrap_or_default().to_owned(),
    );
    assert_eq!(ids.0, command.trace_id, "{answered}");
    assert!(exported.contains(&ids), "{answered}");
    let outside = logged
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("HTTP listening"))
        })
        .unwrap();
    assert!(outside.get("trace_id").is_none(), "{outside}");
    drop(sim);
}

/// Without an endpoint nothing is exported and the log has no ids; a collector that is
/// down costs a warning, not the host.
#[test]
fn traces_are_off_without_an_endpoint_and_a_missing_collector_is_only_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(&log, "").unwrap();
    let receiver = Receiver::start();
    let isr = Isr::start_with_env(
        dir.path(),
        &config(&log, &jsonl),
        free_port(),
        &[("LOG_FORMAT", "json")],
    );
    isr.wait_started();
    append(&log, &chat(1));
    wait_for("the event", || delivered(&jsonl).contains_key("msg-1"));
    let stderr = isr.stderr_path();
    assert!(isr.stop().success());
    let text = std::fs::read_to_string(stderr).unwrap();
    assert!(!text.contains("trace_id"), "{text}");
    assert!(receiver.spans().is_empty());

    // A port nothing listens on.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let isr = Isr::start_with_env(
        dir.path(),
        &config(&log, &jsonl),
        free_port(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &dead),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    isr.wait_started();
    append(&log, &chat(2));
    wait_for("the event with the collector down", || {
        delivered(&jsonl).contains_key("msg-2")
    });
    wait_for("the export warning", || {
        isr.log().contains("cannot export traces")
    });
    let log_text = isr.log();
    assert_eq!(
        log_text.matches("cannot export traces").count(),
        1,
        "warned once, not at every export: {log_text}"
    );
    assert!(isr.stop().success());
}
