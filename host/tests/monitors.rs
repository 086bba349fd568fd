//! Monitor plugins in the sandbox: the stock `ups-alert` and `chat-guard` built for WASM,
//! fed exact sample and event sequences; state carried over a trap; a monitor that traps on
//! every call contained and counted; the alert book in front of them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use factorio_isr::alert::{Alert, Alerts, Mentions};
use factorio_isr::event::Event;
use factorio_isr::plugin::stock::{CHAT_GUARD_WASM, UPS_ALERT_WASM};
use factorio_isr::plugin::{
    ComponentCache, Fault, Limits, MonitorInstance, Runtime, WitAlertState, WitSample,
};

const ECHO_MONITOR_WASM: &str = env!("FACTORIO_ISR_WASM_ECHO_MONITOR");

fn runtime() -> Runtime {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
    Runtime::new(ComponentCache::new(Some(dir)), Limits::default()).unwrap()
}

fn monitor(rt: &Runtime, name: &str, wasm: &[u8], config: &str) -> MonitorInstance {
    rt.load(name, wasm)
        .unwrap()
        .monitor("prod", config)
        .unwrap()
}

fn sample(at_s: u64, ups: Option<f64>, paused: bool) -> WitSample {
    WitSample {
        at_ms: at_s * 1000,
        rcon_up: true,
        paused,
        tick: Some(at_s * 60),
        ups,
        ups_sma: ups,
        ups_ema: ups,
        evolution: vec![("nauvis".into(), 0.25)],
        players: vec!["Alice".into()],
    }
}

/// Feeds the samples; returns (second, state) of every alert the monitor returned.
fn feed(m: &mut MonitorInstance, samples: &[WitSample]) -> Vec<(u64, WitAlertState)> {
    let mut out = Vec::new();
    for s in samples {
        for a in m.on_sample(s).unwrap() {
            out.push((s.at_ms / 1000, a.state));
        }
    }
    out
}

#[test]
fn ups_alert_in_the_sandbox_warns_recovers_respects_the_cooldown_and_ignores_pauses() {
    let rt = runtime();
    let mut m = monitor(
        &rt,
        "ups-alert",
        UPS_ALERT_WASM,
        r#"{"warning_threshold": 55, "recovery_threshold": 58, "samples_required": 3, "cooldown_secs": 120}"#,
    );
    let low = |t| sample(t, Some(30.0), false);
    let fine = |t| sample(t, Some(60.0), false);
    let paused = |t| sample(t, None, true);
    let samples = [
        fine(0),
        low(10),
        low(20),
        low(30), // third low in a row: warning
        low(40),
        paused(50), // withdrawn silently
        paused(60),
        fine(70),
        low(80),
        low(90),
        low(100), // a run of three, but 70 s after the last warning: held back
        low(190), // cooldown over: warning
        sample(200, Some(56.0), false), // between the thresholds: nothing
        fine(210), // recovery
        fine(220),
    ];
    assert_eq!(
        feed(&mut m, &samples),
        [
            (30, WitAlertState::Firing),
            (50, WitAlertState::Withdrawn),
            (190, WitAlertState::Firing),
            (210, WitAlertState::Resolved)
        ]
    );
    let warning = m.on_sample(&low(300)).unwrap();
    assert!(warning.is_empty(), "the low run restarts after a recovery");
    let alerts = feed(&mut m, &[low(310), low(320)]);
    assert_eq!(alerts, [(320, WitAlertState::Firing)]);
}

#[test]
fn ups_alert_says_what_it_judged_and_for_how_long() {
    let rt = runtime();
    let mut m = monitor(
        &rt,
        "ups-alert",
        UPS_ALERT_WASM,
        r#"{"samples_required": 2}"#,
    );
    m.on_sample(&sample(0, Some(40.0), false)).unwrap();
    let a = m
        .on_sample(&sample(65, Some(41.0), false))
        .unwrap()
        .remove(0);
    assert_eq!(a.key, "ups-low");
    assert_eq!(a.title, "Low UPS");
    let field = |n: &str| {
        a.fields
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(field("ups"), Some("41.0"));
    assert_eq!(field("ups_ema"), Some("41.0"));
    assert_eq!(field("warning_threshold"), Some("55"));
    assert_eq!(field("low_for_secs"), Some("65"));
    assert!(
        a.text.contains("UPS (EMA) is 41.0, below 55 for 65 s"),
        "{}",
        a.text
    );
}

#[test]
fn a_bad_ups_alert_config_is_refused_at_init_with_the_reason() {
    let rt = runtime();
    let plugin = rt.load("ups-alert", UPS_ALERT_WASM).unwrap();
    let err = plugin
        .monitor(
            "prod",
            r#"{"warning_threshold": 60, "recovery_threshold": 50}"#,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("must not be below"), "{err}");
}

#[test]
fn chat_guard_in_the_sandbox_flags_a_flood_and_a_listed_word() {
    let rt = runtime();
    let mut m = monitor(
        &rt,
        "chat-guard",
        CHAT_GUARD_WASM,
        r#"{"max_messages": 3, "per_seconds": 10, "words": ["griefer"], "mention": "admins"}"#,
    );
    let chat = |p: &str, msg: &str| Event {
        player: Some(p.into()),
        message: Some(msg.into()),
        ..Event::new("chat")
    };
    let burst: Vec<_> = (0..6)
        .map(|i| chat("Bob", &format!("buy gold {i}")))
        .collect();
    let alerts = m.on_events(1_000, &burst).unwrap();
    let keys: Vec<_> = alerts.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["flood:Bob"]);
    assert_eq!(alerts[0].mention.as_deref(), Some("admins"));
    let alerts = m
        .on_events(2_000, &[chat("Eve", "you are a GRIEFER")])
        .unwrap();
    assert_eq!(alerts[0].key, "word:Eve");
    // Bob quiet for 10 s: the flood resolves on the next call, even a sample.
    let alerts = m.on_sample(&sample(12, Some(60.0), false)).unwrap();
    let got: Vec<_> = alerts.iter().map(|a| (a.key.as_str(), a.state)).collect();
    assert_eq!(got, [("flood:Bob", WitAlertState::Resolved)]);
}

#[test]
fn a_monitors_state_survives_a_trap() {
    let rt = runtime();
    let wasm = std::fs::read(ECHO_MONITOR_WASM).unwrap();
    let mut m = monitor(&rt, "echo", &wasm, "null");
    let count = |alerts: Vec<factorio_isr::plugin::WitAlert>| {
        alerts
            .into_iter()
            .find(|a| a.key == "samples")
            .map(|a| a.text)
            .unwrap()
    };
    for t in 1..=3 {
        m.on_sample(&sample(t, Some(60.0), false)).unwrap();
    }
    let mut poison = sample(11, Some(60.0), false);
    poison.tick = Some(666);
    assert!(matches!(m.on_sample(&poison), Err(Fault::Trap(_))));
    // A new instance took up the state saved after the third sample.
    assert_eq!(
        count(m.on_sample(&sample(12, Some(60.0), false)).unwrap()),
        "4"
    );
    assert_eq!(m.stats().traps, 1);
    assert_eq!(m.stats().restarts, 1);
    assert_eq!(m.saved_state(), 4u64.to_le_bytes());
}

#[test]
fn a_monitor_that_traps_on_every_call_is_contained_and_counted() {
    let rt = runtime();
    let wasm = std::fs::read(ECHO_MONITOR_WASM).unwrap();
    let mut bad = monitor(&rt, "echo", &wasm, r#""trap""#);
    let mut good = monitor(&rt, "echo", &wasm, "null");
    for t in 0..20 {
        assert!(matches!(
            bad.on_sample(&sample(t, Some(60.0), false)),
            Err(Fault::Trap(_))
        ));
        assert!(matches!(
            bad.on_events(t * 1000, &[Event::new("chat")]),
            Err(Fault::Trap(_))
        ));
        assert!(good.on_sample(&sample(t, Some(60.0), false)).is_ok());
    }
    assert_eq!(bad.stats().traps, 40);
    assert_eq!(bad.stats().calls, 0);
    assert_eq!(good.stats().calls, 20);
    assert_eq!(good.stats().faults(), 0);
}

#[test]
fn the_book_turns_a_monitor_repeating_itself_into_one_message_each_way() {
    let rt = runtime();
    let wasm = std::fs::read(ECHO_MONITOR_WASM).unwrap();
    let mut m = monitor(&rt, "echo", &wasm, "null");
    let desk = Alerts::new(
        factorio_isr::alert::ServerLabel::new("prod", None),
        Arc::new(Mentions::builtin()),
        None,
    );
    let now = SystemTime::now();
    let mut posted = Vec::new();
    for t in 0..5 {
        // UPS 12 five times: the echo monitor returns the `ups` alert every time.
        let alerts = m.on_sample(&sample(t, Some(12.0), false)).unwrap();
        let alerts: Vec<Alert> = alerts
            .into_iter()
            .filter(|a| a.key == "ups")
            .map(Alert::from)
            .collect();
        posted.extend(desk.file("echo", alerts, now + Duration::from_secs(t)));
    }
    assert_eq!(posted.len(), 1);
    let factorio_isr::alert::Notice::Alert(told) = &posted[0] else {
        panic!("{posted:?}")
    };
    assert_eq!(told.kind(), "alert");
    assert_eq!(told.line(), "**UPS low** on `prod`: 12.0");
    assert_eq!(desk.active().len(), 1);
}

#[test]
fn a_monitor_returning_a_flood_of_alerts_is_cut_and_counted() {
    use factorio_isr::monitor::{MonitorInput, MonitorOutputs};
    let rt = runtime();
    let wasm = std::fs::read(ECHO_MONITOR_WASM).unwrap();
    let m = monitor(&rt, "echo", &wasm, "null");
    let metrics = Arc::new(factorio_isr::observe::metrics::Metrics::new());
    let (notice_tx, mut notice_rx) = tokio::sync::mpsc::channel(4);
    let (feed, rx) = tokio::sync::mpsc::channel(4);
    let out = MonitorOutputs {
        alerts: Arc::new(Alerts::new(
            factorio_isr::alert::ServerLabel::new("prod", None),
            Arc::new(Mentions::builtin()),
            None,
        )),
        notices: notice_tx,
        board: Arc::default(),
        shared: factorio_isr::observe::Telemetry {
            health: factorio_isr::observe::health::Health::default(),
            metrics: metrics.clone(),
        },
        listening: Default::default(),
    };
    let thread = factorio_isr::monitor::MonitorStage::new("prod", vec![m], out)
        .spawn(rx)
        .unwrap();
    // The echo monitor raises one alert per event kind: 300 kinds, 300 alerts.
    let events: Vec<Event> = (0..300).map(|i| Event::new(format!("kind-{i}"))).collect();
    feed.blocking_send(MonitorInput::events(events)).unwrap();
    let posted = notice_rx.blocking_recv().unwrap();
    drop(feed);
    thread.join().unwrap();
    // 200 are taken; the book opens at most 100 per monitor.
    assert_eq!(posted.len(), 100);
    let text = metrics.render(&factorio_isr::observe::health::Health::default());
    assert!(
        text.contains("factorio_isr_errors_total{component=\"monitor:prod:echo\",error_type=\"too_many_alerts\"} 100"),
        "{text}"
    );
}

#[test]
fn a_candidate_monitor_returning_a_flood_of_alerts_is_cut_like_a_live_one() {
    use factorio_isr::monitor::MonitorInput;
    use factorio_isr::swap::candidate::Candidate;
    let rt = runtime();
    let wasm = std::fs::read(ECHO_MONITOR_WASM).unwrap();
    let monitors = vec![monitor(&rt, "echo", &wasm, "null")];
    let report = Arc::new(parking_lot::Mutex::new(None));
    let metrics = Arc::new(factorio_isr::observe::metrics::Metrics::new());
    let mut candidate = Candidate::new("prod", report.clone(), metrics);
    candidate.set(Some(monitors));
    // The echo monitor raises one alert per event kind; the live monitors raised none.
    let events: Vec<Event> = (0..300).map(|i| Event::new(format!("kind-{i}"))).collect();
    candidate.offer(MonitorInput::events(events), Vec::new(), false);
    let started = std::time::Instant::now();
    loop {
        let r = report.lock().clone().unwrap();
        if r.compared == 1 {
            assert_eq!((r.extra, r.missing, r.different), (200, 0, 0));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no comparison");
        std::thread::sleep(Duration::from_millis(10));
    }
}
