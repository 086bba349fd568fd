//! The RCON client against the fake Factorio server over real TCP on loopback: Factorio's
//! quirks, a server that dies and comes back, and a peer that misbehaves in every way the
//! client must survive. Timeouts are hang guards; nothing asserts how fast things happen.

use std::time::Duration;

use factorio_isr::config::Secret;
use factorio_isr::rcon::{Connection, LinkState, RconClient, RconError, RconSettings};
use factorio_isr::sim::{Fault, Sim, SimOptions};

const GUARD: Duration = Duration::from_secs(60);
const PASSWORD: &str = "s3cret-pa55";

async fn sim() -> Sim {
    Sim::start(SimOptions {
        password: PASSWORD.into(),
        ..SimOptions::default()
    })
    .await
    .unwrap()
}

fn settings(sim: &Sim, password: &str) -> RconSettings {
    RconSettings {
        command_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        ..RconSettings::new(sim.rcon_addr().to_string(), Secret::new(password))
    }
}

async fn wait_state(client: &RconClient, up: bool) {
    let mut w = client.watch();
    tokio::time::timeout(
        GUARD,
        w.wait_for(|s| matches!(s, LinkState::Up { .. }) == up && *s != LinkState::Connecting),
    )
    .await
    .expect("hang guard")
    .unwrap();
}

#[tokio::test]
async fn one_connection_serves_every_command() {
    let sim = sim().await;
    let client = RconClient::spawn("t", settings(&sim, PASSWORD), None);
    for _ in 0..20 {
        assert_eq!(client.exec("/version").await.unwrap(), "2.0.28");
    }
    assert_eq!(sim.connections(), 1);
}

#[tokio::test]
async fn a_response_far_over_4_kib_arrives_whole_in_pieces() {
    let sim = sim().await;
    let mut c = Connection::connect(&sim.rcon_addr().to_string(), &Secret::new(PASSWORD), GUARD)
        .await
        .unwrap();
    let answer = c.exec("/sim big 300000", GUARD).await.unwrap();
    assert_eq!(answer.len(), 300_000);
    assert_eq!(c.exec("/seed", GUARD).await.unwrap(), "3141592653");
}

#[tokio::test]
async fn the_achievements_warning_is_answered_by_repeating_the_command() {
    let sim = sim().await;
    let mut c = Connection::connect(&sim.rcon_addr().to_string(), &Secret::new(PASSWORD), GUARD)
        .await
        .unwrap();
    let tick: u64 = c
        .exec("/sc rcon.print(game.tick)", GUARD)
        .await
        .unwrap()
        .parse()
        .expect("a tick, not the warning");
    assert!(tick >= SimOptions::default().start_tick);
    assert_eq!(sim.commands(), 2, "sent twice, as Factorio asks");
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_that_does_not_contain_it() {
    let sim = sim().await;
    let wrong = "hunter2-wrong";
    let err = Connection::connect(&sim.rcon_addr().to_string(), &Secret::new(wrong), GUARD)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, RconError::AuthFailed), "{err}");
    assert!(err.to_string().contains("authentication failed"));

    let client = RconClient::spawn("t", settings(&sim, wrong), None);
    wait_state(&client, false).await;
    let err = client.exec("/version").await.unwrap_err();
    assert!(matches!(err, RconError::Down(_)), "{err}");
    for text in [
        err.to_string(),
        format!("{err:?}"),
        format!("{:?}", client.state()),
    ] {
        assert!(!text.contains(wrong), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
}

#[tokio::test]
async fn a_server_that_dies_fails_commands_fast_and_is_reconnected_when_back() {
    let sim = sim().await;
    let client = RconClient::spawn("t", settings(&sim, PASSWORD), None);
    client.exec("/version").await.unwrap();
    sim.stop_rcon();
    // The first command after the crash finds the connection closed...
    assert!(client.exec("/version").await.is_err());
    wait_state(&client, false).await;
    // ...and while it is down every command fails at once, without waiting for a timeout.
    let err = client
        .exec_with_timeout("/version", Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert!(matches!(err, RconError::Down(_)), "{err}");
    sim.start_rcon().unwrap();
    wait_state(&client, true).await;
    assert_eq!(client.exec("/version").await.unwrap(), "2.0.28");
    assert_eq!(sim.connections(), 2);
}

#[tokio::test]
async fn a_hostile_peer_neither_hangs_nor_crashes_the_client_and_it_recovers() {
    let sim = sim().await;
    let client = RconClient::spawn("t", settings(&sim, PASSWORD), None);
    client.exec("/version").await.unwrap();
    for fault in [
        Fault::Garbage,
        Fault::NegativeLength,
        Fault::HugeLength,
        Fault::WrongId,
        Fault::Slowloris,
        Fault::Silent,
        Fault::Close,
    ] {
        sim.set_fault(fault);
        let result = tokio::time::timeout(GUARD, client.exec("/version"))
            .await
            .expect("hang guard");
        let err = result.expect_err(&format!("{fault:?} gave an answer"));
        assert!(
            matches!(
                err,
                RconError::Protocol(_) | RconError::Timeout(_) | RconError::Closed
            ),
            "{fault:?}: {err}"
        );
        sim.set_fault(Fault::None);
        wait_state(&client, true).await;
        let answer = tokio::time::timeout(GUARD, async {
            loop {
                match client.exec("/version").await {
                    Ok(a) => return a,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
        .await
        .expect("recovers after {fault:?}");
        assert_eq!(answer, "2.0.28", "after {fault:?}");
    }
}

#[tokio::test]
async fn commands_over_the_size_limit_are_refused_without_breaking_the_link() {
    let sim = sim().await;
    let client = RconClient::spawn("t", settings(&sim, PASSWORD), None);
    let err = client
        .exec(&format!("/sc {}", "x".repeat(5000)))
        .await
        .unwrap_err();
    assert!(matches!(err, RconError::CommandTooLong(_)), "{err}");
    assert_eq!(client.exec("/version").await.unwrap(), "2.0.28");
    assert_eq!(sim.connections(), 1);
}

#[tokio::test]
async fn a_command_whose_caller_gave_up_in_the_queue_is_never_sent() {
    let sim = sim().await;
    let client = RconClient::spawn("t", settings(&sim, PASSWORD), None);
    client.exec("/version").await.unwrap();
    // A lagging server holds the link on each command for 500 ms...
    sim.game().execute("/sim lag 500");
    let first = {
        let client = client.clone();
        tokio::spawn(async move { client.exec("/version").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...so a ban queued behind one times out for its caller, who is told it failed.
    let ban = client
        .exec_with_timeout("/ban Griefer", Duration::from_millis(100))
        .await;
    assert!(matches!(ban, Err(RconError::Timeout(_))), "{ban:?}");
    assert_eq!(first.await.unwrap().unwrap(), "2.0.28");
    sim.game().execute("/sim lag 0");
    client.exec("/version").await.unwrap();
    // The ban the user saw fail must not have run later.
    sim.game().join("Griefer");
    assert!(
        sim.game().online().contains(&"Griefer".to_owned()),
        "the timed-out ban was sent after all"
    );
}

#[tokio::test]
async fn a_peer_that_authenticates_and_never_answers_is_never_up_and_waits_longer_each_time() {
    let sim = sim().await;
    sim.set_fault(Fault::Silent);
    let s = RconSettings {
        command_timeout: Duration::from_millis(200),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..settings(&sim, PASSWORD)
    };
    let client = RconClient::spawn("t", s, None);
    let mut w = client.watch();
    let mut waits = Vec::new();
    tokio::time::timeout(GUARD, async {
        loop {
            w.changed().await.unwrap();
            match w.borrow_and_update().clone() {
                LinkState::Up { .. } => panic!("up without a single answer"),
                LinkState::Down {
                    error,
                    failures,
                    retry_in_ms,
                    ..
                } => {
                    assert!(error.contains("first command (/version)"), "{error}");
                    waits.push((failures, retry_in_ms));
                    if failures >= 6 {
                        return;
                    }
                }
                LinkState::Connecting | LinkState::Standby => {}
            }
        }
    })
    .await
    .expect("hang guard");
    // Every attempt authenticated (the peer accepts the password) and none counted as up:
    // the waits double to the maximum (within the 20 % jitter) and stay there.
    assert!(sim.connections() >= 6);
    for pair in waits.windows(2) {
        assert!(pair[1].0 > pair[0].0, "{waits:?}");
    }
    let (failures, last) = *waits.last().unwrap();
    assert!(failures >= 6 && (320..480).contains(&last), "{waits:?}");
    let err = client.exec("/version").await.unwrap_err();
    assert!(matches!(err, RconError::Down(_)), "{err}");
    // It answers again: up at once, after its probe.
    sim.set_fault(Fault::None);
    wait_state(&client, true).await;
    assert_eq!(client.exec("/version").await.unwrap(), "2.0.28");
}

/// Cluster mode: a link is open only while this instance holds the server (it owns it or
/// runs the gateway); commands meanwhile fail at once, without a connection.
#[tokio::test]
async fn a_held_link_connects_only_while_held() {
    let sim = sim().await;
    let (hold, held) = tokio::sync::watch::channel(false);
    let client = RconClient::spawn(
        "t",
        RconSettings {
            hold: Some(held),
            ..settings(&sim, PASSWORD)
        },
        None,
    );
    let standby = || async {
        let mut w = client.watch();
        tokio::time::timeout(GUARD, w.wait_for(|s| *s == LinkState::Standby))
            .await
            .expect("hang guard")
            .unwrap();
    };
    standby().await;
    assert!(matches!(
        client.exec("/version").await,
        Err(RconError::Standby)
    ));
    assert_eq!(sim.connections(), 0);

    hold.send_replace(true);
    wait_state(&client, true).await;
    assert_eq!(client.exec("/version").await.unwrap(), "2.0.28");
    assert_eq!(sim.connections(), 1);

    hold.send_replace(false);
    standby().await;
    assert!(matches!(
        client.exec("/version").await,
        Err(RconError::Standby)
    ));
    hold.send_replace(true);
    wait_state(&client, true).await;
    assert_eq!(client.exec("/version").await.unwrap(), "2.0.28");
    assert_eq!(sim.connections(), 2, "a new connection after the release");
}
