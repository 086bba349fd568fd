//! The simulated game: a clock at a set UPS that can be slowed or paused, players, admins,
//! bans and the whitelist, and the console log those changes are written to, in Factorio's
//! format. [`Game::execute`] (in `console`) answers console commands as Factorio does.

mod console;

use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

/// Which Factorio the simulation imitates (the evolution API and `/evolution`'s wording).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    V1_1,
    V2_0,
}

/// What Factorio answers to the first Lua command of a game with achievements on.
pub const ACHIEVEMENTS_WARNING: &str =
    "Using Lua console commands will disable achievements, please repeat the command to proceed.";

struct Clock {
    anchor: Instant,
    anchor_tick: u64,
    ups: f64,
    paused: bool,
}

impl Clock {
    fn tick(&self) -> u64 {
        if self.paused {
            self.anchor_tick
        } else {
            self.anchor_tick + (self.anchor.elapsed().as_secs_f64() * self.ups) as u64
        }
    }

    fn rebase(&mut self) {
        self.anchor_tick = self.tick();
        self.anchor = Instant::now();
    }
}

struct World {
    clock: Clock,
    online: BTreeSet<String>,
    admins: BTreeSet<String>,
    banned: BTreeSet<String>,
    muted: BTreeSet<String>,
    whitelist: BTreeSet<String>,
    whitelist_on: bool,
    lua_used: bool,
    ever_joined: BTreeSet<String>,
    /// What `game.print` showed the players, last 1,000.
    printed: std::collections::VecDeque<String>,
    /// Every command received (but `/sim`), last 10,000: what a test can audit.
    received: std::collections::VecDeque<String>,
    /// Players' tags (`/tag`), shown after their names in chat.
    tags: std::collections::BTreeMap<String, String>,
    /// Autosaves written so far.
    autosaves: u32,
    /// How long each answer (but to `/sim`) is held back, as a busy server would.
    lag: std::time::Duration,
}

/// The game state behind one simulated server.
pub struct Game {
    world: Mutex<World>,
    log: Mutex<Option<File>>,
    /// `factorio-current.log`: the lines the server writes to stdout, each after the seconds
    /// since it started.
    current: Mutex<Option<File>>,
    started: Instant,
    pub api: Api,
    pub version: String,
    pub seed: u64,
}

impl Game {
    /// A game at `start_tick` running at `ups`, writing its console log to `log`.
    pub fn new(
        log: Option<&Path>,
        ups: f64,
        start_tick: u64,
        api: Api,
        seed: u64,
    ) -> std::io::Result<Self> {
        let log = match log {
            Some(p) => Some(File::options().create(true).append(true).open(p)?),
            None => None,
        };
        Ok(Self {
            world: Mutex::new(World {
                clock: Clock {
                    anchor: Instant::now(),
                    anchor_tick: start_tick,
                    ups: ups.max(0.0),
                    paused: false,
                },
                online: BTreeSet::new(),
                admins: ["Alice".to_owned()].into(),
                banned: BTreeSet::new(),
                muted: BTreeSet::new(),
                whitelist: BTreeSet::new(),
                whitelist_on: false,
                lua_used: false,
                ever_joined: BTreeSet::new(),
                printed: Default::default(),
                received: Default::default(),
                tags: [("Mattie".to_owned(), "Engineer".to_owned())].into(),
                autosaves: 0,
                lag: std::time::Duration::ZERO,
            }),
            log: Mutex::new(log),
            current: Mutex::new(None),
            started: Instant::now(),
            api,
            version: match api {
                Api::V1_1 => "1.1.110".into(),
                Api::V2_0 => "2.0.28".into(),
            },
            seed,
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let mut w = self.world.lock();
        f(&mut w)
    }

    /// The current tick.
    pub fn tick(&self) -> u64 {
        self.with(|w| w.clock.tick())
    }

    /// How long each RCON answer is held back (`/sim lag MS`).
    pub fn lag(&self) -> std::time::Duration {
        self.with(|w| w.lag)
    }

    /// Runs the clock at `ups` updates per second from now on.
    pub fn set_ups(&self, ups: f64) {
        self.with(|w| {
            w.clock.rebase();
            w.clock.ups = ups.max(0.0);
        });
    }

    /// Stops or restarts the clock.
    pub fn set_paused(&self, paused: bool) {
        self.with(|w| {
            w.clock.rebase();
            w.clock.paused = paused;
        });
    }

    /// Players online now.
    pub fn online(&self) -> Vec<String> {
        self.with(|w| w.online.iter().cloned().collect())
    }

    /// Appends a line to the console log, as Factorio writes it (a timestamp, then `text`).
    pub fn log_line(&self, text: &str) {
        let mut log = self.log.lock();
        if let Some(f) = log.as_mut() {
            let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
            if let Err(e) = writeln!(f, "{now} {text}") {
                tracing::warn!("the simulated console log cannot be written: {e}");
            }
        }
    }

    /// Starts writing `factorio-current.log` at `path`, beginning with what a server writes
    /// as it starts: its version, the game port, RCON, and the change to the running state.
    pub fn open_current_log(&self, path: &Path, rcon: std::net::SocketAddr) -> std::io::Result<()> {
        let file = File::options().create(true).append(true).open(path)?;
        *self.current.lock() = Some(file);
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
        let build = match self.api {
            Api::V1_1 => "build 62112",
            Api::V2_0 => "build 80000",
        };
        self.current_line(&format!(
            "{now}; Factorio {} ({build}, linux64, headless)",
            self.version
        ));
        self.current_line(
            "Info ServerMultiplayerManager.cpp:1187: Hosting game at IP ADDR:({0.0.0.0:34197})",
        );
        self.current_line(&format!(
            "Info RemoteCommandProcessor.cpp:123: Starting RCON interface at IP ADDR:({{{rcon}}})"
        ));
        self.current_line(&format!(
            "Info ServerMultiplayerManager.cpp:799: updateTick({}) changing state from(CreatingGame) to(InGame)",
            self.tick()
        ));
        Ok(())
    }

    /// Appends a line to `factorio-current.log` as the server writes it: the seconds since
    /// it started, then `text`.
    pub fn current_line(&self, text: &str) {
        let mut log = self.current.lock();
        if let Some(f) = log.as_mut() {
            let secs = self.started.elapsed().as_secs_f64();
            if let Err(e) = writeln!(f, "{secs:8.3} {text}") {
                tracing::warn!("the simulated factorio-current.log cannot be written: {e}");
            }
        }
    }

    /// An autosave: started and finished, as Factorio 2.0 writes them.
    pub fn autosave(&self) {
        let n = self.with(|w| {
            w.autosaves += 1;
            w.autosaves % 10 + 1
        });
        self.current_line(&format!(
            "Info AppManager.cpp:1090: Saving to _autosave{n} (non-blocking)."
        ));
        self.current_line("Info AppManagerStates.cpp:1802: Saving finished");
    }

    /// A client falls out of sync (its peer id is `peer`).
    pub fn desync(&self, peer: u32) {
        self.current_line(&format!(
            "Info ServerMultiplayerManager.cpp:1148: received stateChanged peerID({peer}) oldState(InGame) newState(DesyncedWaitingForMap)"
        ));
    }

    /// `name` shouts `text` to every force.
    pub fn shout(&self, name: &str, text: &str) {
        let who = self.shown_name(name);
        self.log_line(&format!("[SHOUT] {who} (shout): {text}"));
    }

    /// `name` with their tag, as chat shows it (`Mattie [Engineer]`).
    fn shown_name(&self, name: &str) -> String {
        self.with(|w| match w.tags.get(name) {
            Some(tag) => format!("{name} [{tag}]"),
            None => name.to_owned(),
        })
    }

    /// Every command received so far (but `/sim`), oldest first.
    pub fn received(&self) -> Vec<String> {
        self.with(|w| w.received.iter().cloned().collect())
    }

    /// `name` joins (no-op if online or banned).
    pub fn join(&self, name: &str) {
        let joined = self.with(|w| {
            if w.banned.contains(name) {
                return false;
            }
            w.ever_joined.insert(name.to_owned());
            w.online.insert(name.to_owned())
        });
        if joined {
            self.log_line(&format!("[JOIN] {name} joined the game"));
        }
    }

    /// `name` leaves (no-op if offline).
    pub fn leave(&self, name: &str) {
        if self.with(|w| w.online.remove(name)) {
            self.log_line(&format!("[LEAVE] {name} left the game"));
        }
    }

    /// `name` says `text` in chat.
    pub fn chat(&self, name: &str, text: &str) {
        let who = self.shown_name(name);
        self.log_line(&format!("[CHAT] {who}: {text}"));
    }
}

impl Drop for Game {
    /// A clean shutdown, as `factorio-current.log` ends when the server is told to quit.
    fn drop(&mut self) {
        self.current_line("Quitting: remote-quit.");
        self.current_line("Goodbye");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_lua_command_asks_to_be_repeated() {
        let g = Game::new(None, 60.0, 1000, Api::V2_0, 1).unwrap();
        assert_eq!(g.execute("/sc rcon.print(game.tick)"), ACHIEVEMENTS_WARNING);
        let t: u64 = g.execute("/sc rcon.print(game.tick)").parse().unwrap();
        assert!(t >= 1000);
    }

    #[test]
    fn a_paused_clock_stands_still_and_kicks_are_logged() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        let g = Game::new(Some(&log), 60.0, 0, Api::V1_1, 1).unwrap();
        g.set_paused(true);
        let t = g.tick();
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert_eq!(g.tick(), t);
        g.join("Bob");
        assert_eq!(g.execute("/players online"), "Online players (1):\n  Bob");
        assert_eq!(g.execute("/kick Bob afk for an hour"), "");
        assert!(g.online().is_empty());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("[JOIN] Bob joined the game\n"), "{text}");
        assert!(
            text.contains("[KICK] Bob was kicked by <server>. Reason: afk for an hour.\n"),
            "{text}"
        );
        assert_eq!(g.execute("/nonsense"), "Unknown command \"nonsense\".");
    }
}
