//! Cluster mode end to end: three instances (the real binary) on one servers.yml, a real
//! etcd on loopback, two servers whose logs a writer appends to steadily, and the fake
//! Discord de-duplicating posts by nonce as Discord documents. Whatever happens to an owner
//! (kill -9, SIGSTOP past its lease) or to etcd (restarted), every line appears in Discord
//! exactly once, and nobody posts without a lease.

#![cfg(feature = "cluster")]

mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    ALPHA, ALPHA_ALERTS, API_TOKEN, BETA, Cluster, SIGCONT, SIGSTOP, Writer, moved,
};
use common::{Isr, http_call, wait_for};
use factorio_isr::cluster::placement;

/// The lease TTL of the test clusters (seconds).
const TTL: u64 = 3;

#[test]
fn an_owner_killed_or_paused_past_its_lease_loses_nothing_and_doubles_nothing() {
    let Some(mut c) = Cluster::start(TTL) else {
        return;
    };
    let (owners, writer) = c.flowing();
    // alpha's owner finds its RCON unreachable and says so, once.
    let rcon_alerts = |c: &Cluster| {
        c.discord
            .recorded()
            .messages
            .iter()
            .filter(|(ch, body)| *ch == ALPHA_ALERTS && body.to_string().contains("RCON"))
            .count()
    };
    wait_for("the RCON alert of alpha", || rcon_alerts(&c) == 1);

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
    // The new owner found the open alert in etcd: it lists it, and its own RCON check,
    // which finds the link down too, knows people were told and says nothing more.
    wait_for(
        "the new owner to know the RCON alert and see the link down",
        || {
            c.isr(&heir)
                .get("/api/servers/alpha")
                .is_some_and(|(_, b)| {
                    let v: serde_json::Value = serde_json::from_str(&b).unwrap_or_default();
                    v["rcon"]["state"] == "down"
                        && v["alerts"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|a| a["source"] == "rcon"))
                })
        },
    );
    // Past the one-second hold, when a link found down would be announced.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rcon_alerts(&c), 1, "the RCON alert was posted again");

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
    let stops = |isr: &Isr| isr.log().matches("stopping the server here").count();
    let before = stops(paused);
    paused.signal(SIGCONT);
    // It finds its lease gone, or (when its lease keeper has already joined again with a
    // new lease) another owner in etcd: either way it stops beta.
    wait_for("the paused owner to notice it lost beta", || {
        stops(paused) > before
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
    // Every post of a log's lines carried a nonce Discord enforces (alerts are kept from
    // doubling by the book in etcd instead).
    for (_, body) in r.messages.iter().filter(|(c, _)| [ALPHA, BETA].contains(c)) {
        assert_eq!(body["enforce_nonce"], true, "{body}");
        assert_eq!(body["nonce"].as_str().map(str::len), Some(25), "{body}");
    }
}

#[test]
fn without_etcd_nobody_posts_and_a_new_gateway_owner_answers_commands() {
    let Some(mut c) = Cluster::start(TTL) else {
        return;
    };
    let (_, writer) = c.flowing();

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

#[test]
fn a_version_chosen_on_one_owner_is_the_next_owners() {
    // A candidate parser beside the stock one: joins become `arrival`.
    let dir = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in ["vanilla.yml", "server.yml"] {
        let text = std::fs::read_to_string(repo.join("patterns").join(file)).unwrap();
        std::fs::write(
            dir.path().join(file),
            text.replace("    type: join\n", "    type: arrival\n"),
        )
        .unwrap();
    }
    let shadow = format!(
        "    shadow:\n      - plugin: patterns\n        config: {{dir: {}}}\n",
        dir.path().display()
    );
    let Some(mut c) = Cluster::start_with(TTL, &shadow) else {
        return;
    };
    let owner = c.settled()["alpha"].clone();
    let versions = |c: &Cluster, id: &str| {
        let (_, body) = http_call(c.isr(id).port, "GET", "/api/servers/alpha", None);
        body["parser_versions"].clone()
    };
    let configured = versions(&c, &owner)["live"].clone();

    // Promoted on its owner: kept in etcd with its plugins.
    let (status, body) = http_call(
        c.isr(&owner).port,
        "POST",
        "/api/servers/alpha/promote",
        Some(API_TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["parsers"]["result"], "swapped", "{body}");
    let promoted = versions(&c, &owner);
    assert_eq!(promoted["pinned"], "promoted", "{promoted}");
    assert_ne!(promoted["live"], configured);
    let ready = c.isr(&owner).component("versions:alpha").unwrap();
    assert_eq!(ready["state"], "ready", "{ready}");

    // Its owner dies: the next one starts the promoted version, not servers.yml's.
    drop(c.instances.insert(owner.clone(), None).flatten());
    let (heir, _) = moved(&c, "alpha", &owner, std::time::Instant::now());
    wait_for("the next owner to run alpha", || {
        versions(&c, &heir)["live"] == promoted["live"]
    });
    assert_eq!(versions(&c, &heir)["pinned"], "promoted");
}

/// A second instance with an id that is live is refused at start, naming the id and where
/// the other one is.
#[test]
fn a_second_instance_with_a_live_id_is_refused_at_start() {
    let Some(c) = Cluster::start(TTL) else {
        return;
    };
    c.settled();
    let mut twin = c.spawn("twin", "isr-1", c.config());
    let status = twin.wait_exit();
    assert!(!status.success());
    let said = twin.log();
    let port = c.isr("isr-1").port;
    assert!(
        said.contains("another instance with the id `isr-1` is live (at ")
            && said.contains(&format!(":{port})")),
        "{said}"
    );
    // The cluster did not notice.
    assert_eq!(c.settled().len(), 3);
}

/// An instance whose servers.yml differs does not own the servers it disagrees on, says so
/// in /ready and /api/cluster, and nothing is handed back and forth.
#[test]
fn an_instance_with_another_servers_yml_owns_only_what_it_agrees_on() {
    let Some(mut c) = Cluster::start(TTL) else {
        return;
    };
    c.settled();
    // isr-3 reads alpha from another file and has no beta at all.
    let mut other = c.config().replace("alpha.log", "elsewhere.log");
    let beta_start = other.find("  beta:\n").unwrap();
    let beta_end = other.find("discord:\n").unwrap();
    other.replace_range(beta_start..beta_end, "");
    drop(c.instances.insert("isr-3".into(), None));
    c.launch_with("isr-3", &other);
    let writer = Writer::start(&c.logs);
    wait_for("isr-3 to say where it differs", || {
        c.isr("isr-3").component("cluster:config").is_some_and(|x| {
            let detail = x["detail"].as_str().unwrap_or_default();
            x["state"] == "degraded" && detail.contains("alpha") && detail.contains("beta")
        })
    });
    let view = c.view("isr-3").unwrap();
    assert_eq!(
        view["config_differs"],
        serde_json::json!(["alpha", "beta"]),
        "{view}"
    );
    let (_, metrics) = c.isr("isr-3").get("/metrics").unwrap();
    assert!(
        metrics.contains("factorio_isr_cluster_config_differs{server=\"alpha\"} 1"),
        "{metrics}"
    );
    // Nothing moves to isr-3, and nothing moves back and forth.
    std::thread::sleep(Duration::from_secs(12));
    for what in ["alpha", "beta"] {
        assert_ne!(c.owner(what).as_deref(), Some("isr-3"), "{what}");
    }
    let handbacks: usize = c
        .live()
        .map(|(_, i)| i.log().matches("handing the server back").count())
        .sum();
    assert!(handbacks <= 2, "handed back {handbacks} times");
    let last = writer.finish();
    c.exactly_once(last);
}

/// etcd wiped while lines flow, with a batch of alpha's posted and not yet answered: the
/// cluster does not take itself for a new one; it says so (log, metric, /ready), the batch
/// in flight is delivered again the same way (same nonces), and no line is lost or posted
/// twice.
#[test]
fn an_etcd_that_lost_its_state_is_not_taken_for_a_new_one() {
    let Some(mut c) = Cluster::start(TTL) else {
        return;
    };
    let (_, writer) = c.flowing();
    std::thread::sleep(Duration::from_secs(2));
    c.discord.delay_answers(Duration::from_secs(2));
    let posted = c.seen(ALPHA).len();
    wait_for("a post of alpha's awaiting its answer", || {
        c.seen(ALPHA).len() > posted
    });
    c.etcd.wipe();
    c.discord.delay_answers(Duration::ZERO);
    wait_for("an instance to say etcd lost the cluster's state", || {
        c.live()
            .any(|(_, i)| i.log().contains("etcd lost the cluster's state"))
    });
    c.settled();
    wait_for("/ready to show it", || {
        c.live().any(|(_, i)| {
            i.component("cluster").is_some_and(|x| {
                x["state"] == "degraded"
                    && x["detail"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("etcd lost the cluster's state")
            })
        })
    });
    let counted = c.live().any(|(_, i)| {
        i.get("/metrics").is_some_and(|(_, m)| {
            m.lines().any(|l| {
                l.starts_with("factorio_isr_cluster_state_lost_total ") && !l.ends_with(" 0")
            })
        })
    });
    assert!(counted, "cluster_state_lost_total stayed 0");
    std::thread::sleep(Duration::from_secs(3));
    let last = writer.finish();
    c.exactly_once(last);
}
