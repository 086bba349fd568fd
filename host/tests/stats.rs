//! The readings engine against the fake Factorio server over real TCP: what one reading
//! holds for Factorio 2.0 and 1.1, the cache under many concurrent callers, and pause.

use std::sync::Arc;
use std::time::Duration;

use factorio_isr::config::Secret;
use factorio_isr::rcon::{RconClient, RconSettings};
use factorio_isr::readings::Readings;
use factorio_isr::sim::{Api, Sim, SimOptions};

async fn engine(api: Api, period: Duration) -> (Sim, Arc<Readings>) {
    let sim = Sim::start(SimOptions {
        api,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let settings = RconSettings::new(
        sim.rcon_addr().to_string(),
        Secret::new(SimOptions::default().password),
    );
    let rcon = RconClient::spawn("t", settings, None);
    (sim, Arc::new(Readings::new(rcon, period, 0.2, None)))
}

#[tokio::test]
async fn a_reading_of_a_2_0_server_has_every_planet_and_the_players() {
    let (sim, engine) = engine(Api::V2_0, Duration::ZERO).await;
    sim.game().join("Alice");
    sim.game().join("Zoë");
    let r = engine.reading().await;
    assert!(r.rcon_up && r.error.is_none(), "{r:?}");
    assert_eq!(r.players, ["Alice", "Zoë"]);
    let surfaces: Vec<&str> = r.evolution.iter().map(|s| s.surface.as_str()).collect();
    assert_eq!(surfaces, ["nauvis", "vulcanus", "gleba"]);
    assert!(r.evolution.iter().all(|s| (0.0..=1.0).contains(&s.factor)));
    assert_eq!(r.game_time_seconds, Some(5 * 3600));
    assert_eq!(r.ups, None, "one tick is not a rate yet");
    // One more reading a little later gives a rate.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = engine.reading().await;
    assert!(r.ups.is_some_and(|u| u > 0.0), "{r:?}");
}

#[tokio::test]
async fn a_reading_of_a_1_1_server_has_one_surface() {
    let (_sim, engine) = engine(Api::V1_1, Duration::ZERO).await;
    let r = engine.reading().await;
    let surfaces: Vec<&str> = r.evolution.iter().map(|s| s.surface.as_str()).collect();
    assert_eq!(surfaces, ["nauvis"], "{r:?}");
}

#[tokio::test]
async fn many_callers_at_once_cost_one_round_trip_per_period() {
    let (sim, engine) = engine(Api::V2_0, Duration::from_secs(3600)).await;
    let callers: Vec<_> = (0..200)
        .map(|_| {
            let e = engine.clone();
            tokio::spawn(async move { e.reading().await })
        })
        .collect();
    let mut readings = Vec::new();
    for c in callers {
        readings.push(c.await.unwrap());
    }
    assert_eq!(engine.round_trips(), 1);
    // The link's probe, then the first Lua command of a game twice (the achievements
    // warning).
    assert_eq!(sim.commands(), 3);
    assert!(readings.iter().all(|r| Arc::ptr_eq(r, &readings[0])));
}

#[tokio::test]
async fn a_caller_may_ask_for_a_younger_reading_than_the_period() {
    let (_sim, engine) = engine(Api::V2_0, Duration::from_secs(3600)).await;
    let first = engine.reading().await;
    // Within the period, the cached reading; with a smaller age limit, a new one.
    assert!(Arc::ptr_eq(&first, &engine.reading().await));
    assert!(Arc::ptr_eq(
        &first,
        &engine.reading_within(Duration::from_secs(60)).await
    ));
    let fresh = engine.reading_within(Duration::ZERO).await;
    assert!(!Arc::ptr_eq(&first, &fresh));
    assert_eq!(engine.round_trips(), 2);
    assert!(Arc::ptr_eq(&fresh, &engine.reading().await));
}

#[tokio::test]
async fn a_paused_game_is_reported_paused_and_its_resume_is_seen() {
    let (sim, engine) = engine(Api::V2_0, Duration::ZERO).await;
    engine.reading().await;
    sim.game().set_paused(true);
    engine.reading().await;
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let r = engine.reading().await;
    assert!(r.paused && r.ups.is_none(), "{r:?}");
    sim.game().set_paused(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = engine.reading().await;
    assert!(!r.paused, "{r:?}");
}

#[tokio::test]
async fn a_server_without_rcon_gives_an_empty_reading_with_the_reason() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let settings = RconSettings {
        connect_timeout: Duration::from_secs(2),
        ..RconSettings::new(format!("127.0.0.1:{port}"), Secret::new("x"))
    };
    let engine = Readings::new(
        RconClient::spawn("t", settings, None),
        Duration::ZERO,
        0.2,
        None,
    );
    let r = engine.reading().await;
    assert!(!r.rcon_up && r.tick.is_none(), "{r:?}");
    let e = r.error.as_deref().unwrap();
    assert!(e.contains("127.0.0.1"), "{e}");
}
