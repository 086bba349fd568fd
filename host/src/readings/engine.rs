//! [`Readings`]: a cached, single-flight reading of one server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::Mutex;

use super::query::{
    parse_evolution_command, parse_game_time, parse_players_online, parse_stats, stats_command,
};
use super::ups::UpsTracker;
use crate::rcon::RconClient;

/// One reading of one server, as the API, the status command and monitors see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    /// When it was taken (milliseconds since the Unix epoch).
    pub at_ms: u64,
    pub rcon_up: bool,
    /// Why the reading is empty, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub paused: bool,
    pub tick: Option<u64>,
    pub ups: Option<f64>,
    pub ups_sma: Option<f64>,
    pub ups_ema: Option<f64>,
    /// Game time played, in seconds (`ticks_played / 60`).
    pub game_time_seconds: Option<u64>,
    /// Why there is no UPS although the server answered (achievement-safe mode: UPS needs
    /// the tick, which only Lua gives).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ups_unavailable: Option<String>,
    pub players: Vec<String>,
    pub evolution: Vec<Surface>,
}

/// Enemy evolution on one surface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Surface {
    pub surface: String,
    pub factor: f64,
}

/// Gauges a reading is mirrored to, already labelled with the server (evolution is labelled
/// by surface on each reading).
#[derive(Clone)]
pub struct ReadingGauges {
    pub ups: prometheus::Gauge,
    pub ups_sma: prometheus::Gauge,
    pub ups_ema: prometheus::Gauge,
    pub players: prometheus::IntGauge,
    pub paused: prometheus::IntGauge,
    /// `ups_unavailable{server, reason="achievements_safe"}`.
    pub ups_unavailable: prometheus::IntGauge,
    /// `evolution{server, surface}`; the engine sets and removes this server's surfaces.
    pub evolution: prometheus::GaugeVec,
    pub server: String,
}

impl ReadingGauges {
    /// The gauges for `server`, from the host's metrics.
    pub fn of(metrics: &crate::observe::metrics::Metrics, server: &str) -> Self {
        Self {
            ups: metrics.ups.with_label_values(&[server]),
            ups_sma: metrics.ups_sma.with_label_values(&[server]),
            ups_ema: metrics.ups_ema.with_label_values(&[server]),
            players: metrics.players_online.with_label_values(&[server]),
            paused: metrics.game_paused.with_label_values(&[server]),
            ups_unavailable: metrics
                .ups_unavailable
                .with_label_values(&[server, "achievements_safe"]),
            evolution: metrics.evolution.clone(),
            server: server.to_owned(),
        }
    }
}

struct State {
    tracker: UpsTracker,
    cached: Option<(Instant, Arc<Reading>)>,
    surfaces: Vec<String>,
}

/// The readings engine of one server.
pub struct Readings {
    rcon: RconClient,
    period: Duration,
    clock: Instant,
    state: Mutex<State>,
    gauges: Option<ReadingGauges>,
    round_trips: AtomicU64,
}

impl Readings {
    /// An engine that reads through `rcon`, at most once per `period`, with the EMA weight
    /// `ema_alpha`.
    pub fn new(
        rcon: RconClient,
        period: Duration,
        ema_alpha: f64,
        gauges: Option<ReadingGauges>,
    ) -> Self {
        Self {
            rcon,
            period,
            clock: Instant::now(),
            state: Mutex::new(State {
                tracker: UpsTracker::new(ema_alpha),
                cached: None,
                surfaces: Vec::new(),
            }),
            gauges,
            round_trips: AtomicU64::new(0),
        }
    }

    /// The RCON link this engine reads through.
    pub fn rcon(&self) -> &RconClient {
        &self.rcon
    }

    /// The latest reading, taken now if the cached one is older than the period. Callers
    /// that arrive while a reading is being taken wait for it instead of taking their own.
    pub async fn reading(&self) -> Arc<Reading> {
        self.reading_within(self.period).await
    }

    /// The latest reading if it is younger than `max_age` (and than the period), else a
    /// new one: for a caller that needs readings of its own rhythm, such as monitor samples.
    pub async fn reading_within(&self, max_age: Duration) -> Arc<Reading> {
        let max_age = max_age.min(self.period);
        let mut state = self.state.lock().await;
        if let Some((at, r)) = &state.cached
            && at.elapsed() < max_age
        {
            return r.clone();
        }
        let reading = Arc::new(self.take(&mut state).await);
        state.cached = Some((Instant::now(), reading.clone()));
        reading
    }

    /// The cached reading, whatever its age, without asking the server.
    pub async fn last(&self) -> Option<Arc<Reading>> {
        self.state.lock().await.cached.as_ref().map(|c| c.1.clone())
    }

    /// How many times the engine asked the server (for the cache benchmark and tests).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    async fn take(&self, state: &mut State) -> Reading {
        let at_ms = unix_ms();
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let reading = if self.rcon.lua_allowed() {
            self.take_with_lua(state, at_ms).await
        } else {
            self.take_without_lua(at_ms).await
        };
        if let Some(g) = &self.gauges {
            mirror(g, &reading, &mut state.surfaces);
        }
        reading
    }

    /// A reading from the three Lua-free commands (`/players online`, `/time`,
    /// `/evolution`), for a server in achievement-safe mode: no tick, so no UPS.
    async fn take_without_lua(&self, at_ms: u64) -> Reading {
        let mut reading = empty(at_ms, String::new(), true);
        reading.error = None;
        reading.ups_unavailable = Some(UPS_NEEDS_LUA.into());
        match self.rcon.exec("/players online").await {
            Err(e) => return empty(at_ms, e.to_string(), false),
            Ok(a) => match parse_players_online(&a) {
                Some(players) => reading.players = players,
                None => {
                    let shown: String = a.chars().take(120).collect();
                    return empty(at_ms, format!("/players online gave {shown:?}"), true);
                }
            },
        }
        match self.rcon.exec("/time").await {
            Err(e) => return empty(at_ms, e.to_string(), false),
            Ok(a) => reading.game_time_seconds = parse_game_time(&a),
        }
        match self.rcon.exec("/evolution").await {
            Err(e) => return empty(at_ms, e.to_string(), false),
            Ok(a) => {
                reading.evolution = parse_evolution_command(&a)
                    .into_iter()
                    .map(|(surface, factor)| Surface { surface, factor })
                    .collect();
            }
        }
        reading
    }

    async fn take_with_lua(&self, state: &mut State, at_ms: u64) -> Reading {
        let answer = self.rcon.exec(stats_command().as_str()).await;
        match answer.map(|a| parse_stats(&a)) {
            Err(e) => empty(at_ms, e.to_string(), false),
            Ok(Err(e)) => empty(at_ms, e.to_string(), true),
            Ok(Ok(a)) => {
                let steady_ms = self.clock.elapsed().as_millis() as u64;
                let ups = state.tracker.observe(steady_ms, a.tick);
                Reading {
                    at_ms,
                    rcon_up: true,
                    error: None,
                    paused: ups.paused,
                    tick: Some(a.tick),
                    ups: ups.ups,
                    ups_sma: ups.sma,
                    ups_ema: ups.ema,
                    game_time_seconds: a.ticks_played.map(|t| t / 60),
                    ups_unavailable: None,
                    players: a.players,
                    evolution: a
                        .evolution
                        .into_iter()
                        .map(|(surface, factor)| Surface { surface, factor })
                        .collect(),
                }
            }
        }
    }
}

/// Why a server in achievement-safe mode has no UPS.
pub const UPS_NEEDS_LUA: &str =
    "achievement-safe mode: UPS needs the game tick, which only a Lua command reads";

/// A reading that says why it is empty.
fn empty(at_ms: u64, error: String, rcon_up: bool) -> Reading {
    Reading {
        at_ms,
        rcon_up,
        error: Some(error),
        paused: false,
        tick: None,
        ups: None,
        ups_sma: None,
        ups_ema: None,
        game_time_seconds: None,
        ups_unavailable: None,
        players: Vec::new(),
        evolution: Vec::new(),
    }
}

fn mirror(g: &ReadingGauges, r: &Reading, surfaces: &mut Vec<String>) {
    if !r.rcon_up || r.error.is_some() {
        return;
    }
    g.ups_unavailable
        .set(i64::from(r.ups_unavailable.is_some()));
    if let Some(ups) = r.ups {
        g.ups.set(ups);
    } else if r.paused {
        g.ups.set(0.0);
    }
    if let Some(v) = r.ups_sma {
        g.ups_sma.set(v);
    }
    if let Some(v) = r.ups_ema {
        g.ups_ema.set(v);
    }
    g.players.set(r.players.len() as i64);
    g.paused.set(i64::from(r.paused));
    for old in surfaces.iter() {
        if !r.evolution.iter().any(|s| &s.surface == old) {
            let _ = g.evolution.remove_label_values(&[&g.server, old]);
        }
    }
    surfaces.clear();
    for s in &r.evolution {
        g.evolution
            .with_label_values(&[g.server.as_str(), s.surface.as_str()])
            .set(s.factor);
        surfaces.push(s.surface.clone());
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
