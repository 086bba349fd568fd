//! `factorio-isr sim`: a fake Factorio server for tests, benchmarks and the demo. A real TCP
//! RCON server and a console.log writer in one, with a game clock that can be slowed or
//! paused and players who join, chat and leave.

pub mod game;
mod rcon_server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;

pub use game::{ACHIEVEMENTS_WARNING, Api, Game};

/// How the simulated RCON peer misbehaves, for testing clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behave like Factorio.
    #[default]
    None,
    /// Answer commands with bytes that are not RCON.
    Garbage,
    /// Announce a negative packet length.
    NegativeLength,
    /// Announce a 2 GiB packet and send a few bytes of it.
    HugeLength,
    /// Answer with packets carrying other request ids.
    WrongId,
    /// Answer one byte every 100 ms.
    Slowloris,
    /// Never answer commands.
    Silent,
    /// Close the connection on the first command.
    Close,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Where RCON listens (port 0: any free port; see [`Sim::rcon_addr`]).
    pub rcon_addr: SocketAddr,
    pub password: String,
    /// The console log to write; none writes no log.
    pub log: Option<PathBuf>,
    /// The `factorio-current.log` to write (stdout's lines); none writes none.
    pub current_log: Option<PathBuf>,
    pub ups: f64,
    pub start_tick: u64,
    pub api: Api,
    pub seed: u64,
    /// Mean time between player actions; none keeps the players still.
    pub activity: Option<Duration>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            rcon_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            password: "factorio".into(),
            log: None,
            current_log: None,
            ups: 60.0,
            start_tick: 60 * 3600 * 5,
            api: Api::V2_0,
            seed: 3_141_592_653,
            activity: None,
        }
    }
}

/// A running simulated server. Dropping it stops it.
pub struct Sim {
    shared: Arc<rcon_server::Shared>,
    addr: SocketAddr,
    rcon: parking_lot::Mutex<Option<JoinHandle<()>>>,
    activity: Option<JoinHandle<()>>,
}

impl Sim {
    /// Starts the simulation on the current tokio runtime.
    pub async fn start(opts: SimOptions) -> std::io::Result<Self> {
        let game = Arc::new(Game::new(
            opts.log.as_deref(),
            opts.ups,
            opts.start_tick,
            opts.api,
            opts.seed,
        )?);
        let listener = rcon_server::bind(opts.rcon_addr)?;
        let addr = listener.local_addr()?;
        if let Some(path) = &opts.current_log {
            game.open_current_log(path, addr)?;
        }
        let shared = Arc::new(rcon_server::Shared {
            game: game.clone(),
            password: opts.password,
            fault: parking_lot::Mutex::new(Fault::None),
            counters: Default::default(),
        });
        let rcon = tokio::spawn(rcon_server::serve(listener, shared.clone()));
        let activity = opts
            .activity
            .map(|gap| tokio::spawn(activity(game, gap, opts.seed)));
        Ok(Self {
            shared,
            addr,
            rcon: parking_lot::Mutex::new(Some(rcon)),
            activity,
        })
    }

    /// Where RCON listens.
    pub fn rcon_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The game, to drive it (UPS, pause, players) or read it.
    pub fn game(&self) -> &Game {
        &self.shared.game
    }

    /// Makes the RCON peer misbehave from the next command on.
    pub fn set_fault(&self, fault: Fault) {
        *self.shared.fault.lock() = fault;
    }

    /// RCON connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.counters.connections.load(Ordering::Relaxed)
    }

    /// Commands answered so far (after authentication).
    pub fn commands(&self) -> u64 {
        self.shared.counters.commands.load(Ordering::Relaxed)
    }

    /// Closes the RCON port and every connection, as a crashed server would.
    pub fn stop_rcon(&self) {
        if let Some(task) = self.rcon.lock().take() {
            task.abort();
        }
    }

    /// Opens the RCON port again (on the same address).
    pub fn start_rcon(&self) -> std::io::Result<()> {
        let mut slot = self.rcon.lock();
        if slot.is_none() {
            let listener = rcon_server::bind(self.addr)?;
            *slot = Some(tokio::spawn(rcon_server::serve(
                listener,
                self.shared.clone(),
            )));
        }
        Ok(())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop_rcon();
        if let Some(a) = &self.activity {
            a.abort();
        }
    }
}

const ROSTER: &[&str] = &[
    "Alice", "Bob", "Charlie", "dana.k", "Eve_42", "fox-7", "Zoë", "Mattie",
];

const CHAT: &[&str] = &[
    "hello everyone",
    "anyone seen my train?",
    "need more **iron plates** on the main bus",
    "biters at the north wall",
    "@everyone come look at the rocket",
    "gg",
    "who put belts _under_ the smelters?",
    "brb",
];

/// Players join, chat, shout and leave at random, about every `gap`; the game autosaves
/// every 20 actions or so, and a client desyncs now and then.
async fn activity(game: Arc<Game>, gap: Duration, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut actions = 0u32;
    loop {
        let wait = gap.mul_f64(0.5 + rng.f64());
        tokio::time::sleep(wait).await;
        actions += 1;
        if actions.is_multiple_of(20) {
            game.autosave();
        }
        if rng.u32(0..200) == 0 {
            game.desync(rng.u32(1..8));
        }
        let online = game.online();
        let offline: Vec<&str> = ROSTER
            .iter()
            .copied()
            .filter(|p| !online.iter().any(|o| o == p))
            .collect();
        let roll = rng.u32(0..100);
        if online.len() < 2 || (roll < 15 && !offline.is_empty()) {
            if let Some(p) = offline.get(rng.usize(0..offline.len().max(1))) {
                game.join(p);
            }
        } else if roll < 28 && online.len() > 2 {
            game.leave(&online[rng.usize(0..online.len())]);
        } else if roll < 33 {
            let p = &online[rng.usize(0..online.len())];
            game.shout(p, "train incoming");
        } else {
            let p = &online[rng.usize(0..online.len())];
            game.chat(p, CHAT[rng.usize(0..CHAT.len())]);
        }
    }
}
