//! A cluster of three instances (the real binary) on one servers.yml, a real etcd on
//! loopback, two servers whose logs a writer appends to, and the fake Discord: what the
//! cluster tests (`tests/cluster.rs`) and the failover benchmark (`benches/failover.rs`)
//! drive.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::etcd::Etcd;
use super::fake_discord::{FakeDiscord, GUILD};
use super::{Isr, append, free_port, wait_for};

pub const ALPHA: u64 = 4100;
pub const BETA: u64 = 4200;
/// The admin API's token on every instance.
pub const API_TOKEN: &str = "cluster-test-token";
/// alpha's alert channel.
pub const ALPHA_ALERTS: u64 = 4101;
pub const SIGSTOP: i32 = 19;
pub const SIGCONT: i32 = 18;

pub struct Cluster {
    dir: tempfile::TempDir,
    pub etcd: Etcd,
    pub discord: FakeDiscord,
    config: String,
    /// By instance id; none once killed.
    pub instances: BTreeMap<String, Option<Isr>>,
    /// Instances stopped with SIGSTOP: they answer nothing until continued.
    pub paused: std::collections::BTreeSet<String>,
    /// Each instance's HTTP port: a restarted instance comes back on its own address.
    ports: std::sync::Mutex<BTreeMap<String, u16>>,
    pub logs: [PathBuf; 2],
}

impl Cluster {
    /// etcd, the fake Discord and three instances with a lease of `ttl` seconds; none
    /// when etcd is not installed.
    pub fn start(ttl: u64) -> Option<Self> {
        Self::start_with(ttl, "")
    }

    /// [`Self::start`] with `alpha` (YAML lines under `alpha:`, indented 4) added to
    /// server alpha's configuration.
    pub fn start_with(ttl: u64, alpha: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Etcd::start(dir.path())?;
        let discord = FakeDiscord::start();
        let logs = [dir.path().join("alpha.log"), dir.path().join("beta.log")];
        for l in &logs {
            std::fs::write(l, "").unwrap();
        }
        // alpha's RCON port has nobody listening: its owner raises "RCON unreachable".
        let config = format!(
            "servers:\n  alpha:\n    log_path: {}\n    event_channel_id: {ALPHA}\n    \
             alert_channel_id: {ALPHA_ALERTS}\n    rcon_host: 127.0.0.1\n    rcon_port: {}\n    \
             rcon_password: pw\n    rcon_status_alert_hold: 1\n{alpha}  \
             beta:\n    log_path: {}\n    event_channel_id: {BETA}\n\
             discord:\n  guild_id: {GUILD}\n\
             cluster:\n  endpoints: [{}]\n  lease_ttl: {ttl}\n  prefix: /test/\n",
            logs[0].display(),
            free_port(),
            logs[1].display(),
            etcd.url()
        );
        let mut cluster = Self {
            dir,
            etcd,
            discord,
            config,
            instances: BTreeMap::new(),
            paused: Default::default(),
            ports: Default::default(),
            logs,
        };
        for i in 1..=3 {
            cluster.launch(&format!("isr-{i}"));
        }
        Some(cluster)
    }

    pub fn launch(&mut self, id: &str) {
        let config = self.config.clone();
        self.launch_with(id, &config);
    }

    /// The servers.yml every instance shares.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// Starts instance `id` (again) in its own folder, with `config` for its servers.yml.
    pub fn launch_with(&mut self, id: &str, config: &str) {
        let isr = self.spawn(id, id, config);
        isr.wait_started();
        self.instances.insert(id.to_owned(), Some(isr));
    }

    /// A process of instance id `id` in folder `home` (on the port it had, if it ran
    /// there before), not waited for.
    pub fn spawn(&self, home: &str, id: &str, config: &str) -> Isr {
        let port = *self
            .ports
            .lock()
            .unwrap()
            .entry(home.to_owned())
            .or_insert_with(free_port);
        let home = self.dir.path().join(home);
        std::fs::create_dir_all(&home).unwrap();
        Isr::start_with_env(
            &home,
            config,
            port,
            &[
                ("FACTORIO_ISR_INSTANCE_ID", id),
                ("DISCORD_BOT_TOKEN", "fake-token"),
                ("DISCORD_API_URL", &self.discord.api_url),
                ("FACTORIO_ISR_API_TOKEN", API_TOKEN),
            ],
        )
    }

    pub fn live(&self) -> impl Iterator<Item = (&String, &Isr)> {
        self.instances
            .iter()
            .filter(|(id, _)| !self.paused.contains(*id))
            .filter_map(|(id, i)| i.as_ref().map(|i| (id, i)))
    }

    pub fn isr(&self, id: &str) -> &Isr {
        self.instances[id].as_ref().unwrap()
    }

    /// `GET /api/cluster` of instance `id`.
    pub fn view(&self, id: &str) -> Option<Value> {
        let (status, body) = self.isr(id).get("/api/cluster")?;
        (status == 200).then(|| serde_json::from_str(&body).unwrap())
    }

    /// Who owns `what` (a server's tag, or `gateway`), as every live instance with a
    /// valid lease agrees; none while they do not agree or nobody owns it.
    pub fn owner(&self, what: &str) -> Option<String> {
        let mut seen = None;
        for (id, _) in self.live() {
            let v = self.view(id)?;
            if v["lease_valid"] != true {
                return None;
            }
            let owner = if what == "gateway" {
                v["gateway"].as_str()?.to_owned()
            } else {
                v["owners"][what].as_str()?.to_owned()
            };
            if seen.get_or_insert_with(|| owner.clone()) != &owner {
                return None;
            }
        }
        seen.filter(|o| {
            self.instances.get(o).is_some_and(Option::is_some) && !self.paused.contains(o)
        })
    }

    /// Where most tests begin: the servers settled among the instances, a writer appending
    /// to both logs, and lines of both seen in Discord. The owners as settled, and the
    /// writer.
    pub fn flowing(&self) -> (BTreeMap<&'static str, String>, Writer) {
        let owners = self.settled();
        let writer = Writer::start(&self.logs);
        wait_for("the first lines in Discord", || {
            !self.seen(ALPHA).is_empty() && !self.seen(BETA).is_empty()
        });
        (owners, writer)
    }

    /// Waits until every server and the gateway have an owner all live instances agree on.
    pub fn settled(&self) -> BTreeMap<&'static str, String> {
        let mut owners = BTreeMap::new();
        wait_for("the cluster to settle", || {
            owners.clear();
            for what in ["alpha", "beta", "gateway"] {
                match self.owner(what) {
                    Some(o) => owners.insert(what, o),
                    None => return false,
                };
            }
            // Each server's owner has opened its log: a first owner starts at the end of
            // it, so lines written before then are not posted (its plugins may take a
            // while to compile on a loaded machine).
            ["alpha", "beta"].iter().all(|tag| {
                let owner = self.instances.get(&owners[tag]).and_then(Option::as_ref);
                owner
                    .and_then(|i| i.component(&format!("tailer:{tag}")))
                    .is_some_and(|c| c["state"] == "ready")
            })
        });
        owners
    }

    /// How often each line number appears in `channel`'s messages.
    pub fn seen(&self, channel: u64) -> BTreeMap<usize, usize> {
        let mut seen = BTreeMap::new();
        for (c, body) in self.discord.recorded().messages {
            if c != channel {
                continue;
            }
            for word in body["content"]
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
            {
                let n = word.strip_prefix('m').and_then(|w| w.strip_suffix('x'));
                if let Some(n) = n.and_then(|n| n.parse().ok()) {
                    *seen.entry(n).or_default() += 1;
                }
            }
        }
        seen
    }

    /// Waits until lines up to `last` reached both channels, then checks each appears
    /// exactly once from the first one delivered (a server's first owner starts at the end
    /// of its log, so lines written before it had opened it are not posted).
    pub fn exactly_once(&self, last: usize) {
        for channel in [ALPHA, BETA] {
            wait_for("every line to reach Discord", || {
                self.seen(channel).contains_key(&last)
            });
            let seen = self.seen(channel);
            let first = *seen.keys().next().unwrap();
            assert!(first <= 50, "lines from {first} on only: {seen:?}");
            let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
            assert!(doubled.is_empty(), "posted more than once: {doubled:?}");
            let missing: Vec<_> = (first..=last).filter(|n| !seen.contains_key(n)).collect();
            assert!(missing.is_empty(), "never posted: {missing:?}");
        }
    }

    pub fn posts(&self) -> usize {
        self.discord.recorded().messages.len()
    }
}

/// Appends a numbered chat line to both logs every 20 ms until dropped; says how many.
pub struct Writer {
    stop: Arc<AtomicBool>,
    pub written: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(logs: &[PathBuf; 2]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));
        let (s, w, logs) = (stop.clone(), written.clone(), logs.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                for (log, who) in logs.iter().zip(["Alice", "Bob"]) {
                    append(log, &format!("2026-01-01 10:00:00 [CHAT] {who}: m{n}x\n"));
                }
                w.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            written,
            thread: Some(thread),
        }
    }

    /// Stops writing; the number of the last line.
    pub fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.written.load(Ordering::Relaxed)
    }
}

/// Waits until `what` has an owner other than `old`; how long that took.
pub fn moved(c: &Cluster, what: &str, old: &str, since: Instant) -> (String, Duration) {
    let mut new = String::new();
    wait_for(&format!("{what} to move away from {old}"), || {
        match c.owner(what) {
            Some(o) if o != old => new = o,
            _ => return false,
        }
        true
    });
    (new, since.elapsed())
}
