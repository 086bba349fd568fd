//! Cluster mode end to end: three instances (the real binary) on one servers.yml, a real
//! etcd on loopback, two servers whose logs a writer appends to steadily, and the fake
//! Discord de-duplicating posts by nonce as Discord documents. Whatever happens to an owner
//! (kill -9, SIGSTOP past its lease) or to etcd (restarted), every line appears in Discord
//! exactly once, and nobody posts without a lease.

#![cfg(feature = "cluster")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::fake_discord::{FakeDiscord, GUILD};
use common::{Isr, free_port, wait_for};
use factorio_isr::cluster::placement;
use serde_json::Value;

const ALPHA: u64 = 4100;
const BETA: u64 = 4200;
/// The lease TTL of the test clusters (seconds).
const TTL: u64 = 3;
const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

struct Cluster {
    dir: tempfile::TempDir,
    etcd: Etcd,
    discord: FakeDiscord,
    config: String,
    /// By instance id; none once killed.
    instances: BTreeMap<String, Option<Isr>>,
    /// Instances stopped with SIGSTOP: they answer nothing until continued.
    paused: std::collections::BTreeSet<String>,
    logs: [PathBuf; 2],
}

impl Cluster {
    /// etcd, the fake Discord and three instances; none when etcd is not installed.
    fn start() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Etcd::start(dir.path())?;
        let discord = FakeDiscord::start();
        let logs = [dir.path().join("alpha.log"), dir.path().join("beta.log")];
        for l in &logs {
            std::fs::write(l, "").unwrap();
        }
        let config = format!(
            "servers:\n  alpha:\n    log_path: {}\n    event_channel_id: {ALPHA}\n  \
             beta:\n    log_path: {}\n    event_channel_id: {BETA}\n\
             discord:\n  guild_id: {GUILD}\n\
             cluster:\n  endpoints: [{}]\n  lease_ttl: {TTL}\n  prefix: /test/\n",
            logs[0].display(),
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
            logs,
        };
        for i in 1..=3 {
            cluster.launch(&format!("isr-{i}"));
        }
        Some(cluster)
    }

    fn launch(&mut self, id: &str) {
        let home = self.dir.path().join(id);
        std::fs::create_dir_all(&home).unwrap();
        let isr = Isr::start_with_env(
            &home,
            &self.config,
            free_port(),
            &[
                ("FACTORIO_ISR_INSTANCE_ID", id),
                ("DISCORD_BOT_TOKEN", "fake-token"),
                ("DISCORD_API_URL", &self.discord.api_url),
            ],
        );
        isr.wait_started();
        self.instances.insert(id.to_owned(), Some(isr));
    }

    fn live(&self) -> impl Iterator<Item = (&String, &Isr)> {
        self.instances
            .iter()
            .filter(|(id, _)| !self.paused.contains(*id))
            .filter_map(|(id, i)| i.as_ref().map(|i| (id, i)))
    }

    fn isr(&self, id: &str) -> &Isr {
        self.instances[id].as_ref().unwrap()
    }

    /// `GET /api/cluster` of instance `id`.
    fn view(&self, id: &str) -> Option<Value> {
        let (status, body) = self.isr(id).get("/api/cluster")?;
        (status == 200).then(|| serde_json::from_str(&body).unwrap())
    }

    /// Who owns `what` (a server's tag, or `gateway`), as every live instance with a
    /// valid lease agrees; none while they do not agree or nobody owns it.
    fn owner(&self, what: &str) -> Option<String> {
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

    /// Waits until every server and the gateway have an owner all live instances agree on.
    fn settled(&self) -> BTreeMap<&'static str, String> {
        let mut owners = BTreeMap::new();
        wait_for("the cluster to settle", || {
            owners.clear();
            for what in ["alpha", "beta", "gateway"] {
                match self.owner(what) {
                    Some(o) => owners.insert(what, o),
                    None => return false,
                };
            }
            true
        });
        owners
    }

    /// How often each line number appears in `channel`'s messages.
    fn seen(&self, channel: u64) -> BTreeMap<usize, usize> {
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
    fn exactly_once(&self, last: usize) {
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

    fn posts(&self) -> usize {
        self.discord.recorded().messages.len()
    }
}

/// Appends a numbered chat line to both logs every 20 ms until dropped; says how many.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(logs: &[PathBuf; 2]) -> Self {
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
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.written.load(Ordering::Relaxed)
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Waits until `what` has an owner other than `old`; how long that took.
fn moved(c: &Cluster, what: &str, old: &str, since: Instant) -> (String, Duration) {
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

#[test]
fn an_owner_killed_or_paused_past_its_lease_loses_nothing_and_doubles_nothing() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    let owners = c.settled();
    let writer = Writer::start(&c.logs);
    wait_for("the first lines in Discord", || {
        !c.seen(ALPHA).is_empty() && !c.seen(BETA).is_empty()
    });

    // kill -9 the owner of alpha while Discord has taken a message of alpha's but not
    // answered yet: the batch is not recorded as delivered, so the next owner delivers it
    // again, with the same nonces, and Discord answers with the message it has. It takes
    // alpha within the TTL and a few seconds (the guard).
    let victim = owners["alpha"].clone();
    c.discord.delay_answers(Duration::from_secs(2));
    let posted = c.seen(ALPHA).len();
    wait_for("a post of alpha's awaiting its answer", || {
        c.seen(ALPHA).len() > posted
    });
    let t = Instant::now();
    // Isr's drop is a SIGKILL.
    drop(c.instances.insert(victim.clone(), None).flatten());
    let (heir, took) = moved(&c, "alpha", &victim, t);
    assert!(
        took < Duration::from_secs(TTL + 10),
        "alpha moved to {heir} only after {took:?}"
    );
    eprintln!("alpha moved from the killed {victim} to {heir} after {took:?}");
    c.discord.delay_answers(Duration::ZERO);
    c.discord
        .wait_for("the batch in flight delivered again", |r| r.nonce_hits > 0);

    // SIGSTOP the owner of beta past its lease; another takes over; SIGCONT: the old owner
    // finds its lease gone, stops beta and delivers nothing more for it.
    let beta_owner = c.owner("beta").unwrap();
    c.isr(&beta_owner).signal(SIGSTOP);
    c.paused.insert(beta_owner.clone());
    let t = Instant::now();
    let (heir, took) = moved(&c, "beta", &beta_owner, t);
    eprintln!("beta moved from the paused {beta_owner} to {heir} after {took:?}");
    std::thread::sleep(Duration::from_secs(1));
    let paused = c.isr(&beta_owner);
    paused.signal(SIGCONT);
    wait_for("the paused owner to notice it lost beta", || {
        paused
            .log()
            .contains("stopping the server here: this instance has no valid lease")
    });
    c.paused.remove(&beta_owner);
    // It joins again with a new lease; the servers settle among the live instances.
    c.settled();

    // The killed instance comes back: once it has been a member for a while, the servers
    // it ranks first for move back to it (stopped, then taken over from the checkpoint),
    // and then nothing moves any more.
    c.launch(&victim);
    let members: Vec<String> = c.instances.keys().cloned().collect();
    let preferred = |tag: &str| placement::ranked(tag, &members)[0].to_owned();
    wait_for("every server on its preferred instance", || {
        ["alpha", "beta"]
            .iter()
            .all(|tag| c.owner(tag) == Some(preferred(tag)))
    });
    let placed = c.settled();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.settled(), placed, "ownership moved again");

    let last = writer.finish();
    c.exactly_once(last);
    let r = c.discord.recorded();
    eprintln!(
        "{} posts, {} answered by nonce with the message already posted",
        r.messages.len(),
        r.nonce_hits
    );
    assert!(r.refused.is_empty(), "{:?}", r.refused);
    // Every post carried a nonce Discord enforces.
    for (_, body) in &r.messages {
        assert_eq!(body["enforce_nonce"], true, "{body}");
        assert_eq!(body["nonce"].as_str().map(str::len), Some(25), "{body}");
    }
}

#[test]
fn without_etcd_nobody_posts_and_a_new_gateway_owner_answers_commands() {
    let Some(mut c) = Cluster::start() else {
        return;
    };
    c.settled();
    let writer = Writer::start(&c.logs);
    wait_for("the first lines in Discord", || {
        !c.seen(ALPHA).is_empty() && !c.seen(BETA).is_empty()
    });

    // etcd goes away: once no instance has a valid lease, nothing is posted, and /ready
    // says why.
    c.etcd.kill();
    wait_for("every instance to lose its lease", || {
        c.live()
            .all(|(id, _)| c.view(id).is_some_and(|v| v["lease_valid"] == false))
    });
    for (_, isr) in c.live() {
        let (status, body) = isr.get("/ready").unwrap();
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("cluster"), "{body}");
    }
    let before = c.posts();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.posts(), before, "posted without a lease");

    // etcd is back: ownership settles again and what was written meanwhile is delivered,
    // once.
    c.etcd.restart();
    let owners = c.settled();
    let last = writer.finish();
    c.exactly_once(last);

    // A user chooses a server through the gateway owner; the choice is kept in etcd.
    let gateway = owners["gateway"].clone();
    let id = c
        .discord
        .command(7, &[], "factorio connect", &[("server", "beta")]);
    assert!(c.discord.answer(id).0.contains("now go to"));
    wait_for("the choice to be saved", || {
        c.isr(&gateway)
            .component("discord:selections")
            .is_some_and(|s| s["state"] == "ready")
    });

    // The gateway owner dies: another instance connects and answers commands, and knows
    // the user's choice.
    let identified = c.discord.recorded().identifies;
    let t = Instant::now();
    drop(c.instances.insert(gateway.clone(), None).flatten());
    let (heir, _) = moved(&c, "gateway", &gateway, t);
    c.discord
        .wait_for("the new gateway owner to identify", |r| {
            r.identifies > identified
        });
    // A command sent while nobody was connected is lost, as with Discord: users retry.
    let mut answered = None;
    wait_for(&format!("{heir} to answer a command"), || {
        let id = c.discord.command(1, &[], "factorio servers", &[]);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if c.discord.recorded().responses.iter().any(|(i, _)| *i == id) {
                answered = Some(id);
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    let (text, _) = c.discord.answer(answered.unwrap());
    assert!(text.contains("alpha") && text.contains("beta"), "{text}");
    let id = c.discord.command(7, &[], "factorio status", &[]);
    let (text, _) = c.discord.answer(id);
    assert!(
        text.contains("beta") && !text.contains("Which server"),
        "{text}"
    );
}
