//! factorio-isr: watches Factorio servers and reports to Discord.
//!
//! # Layout
//!
//! Modules in layers, in the order below: each uses only the modules listed before it and
//! the leaves, and nothing anywhere imports in a circle (inside folders too), which
//! `tests/layout.rs` checks. A log line's way:
//!
//! - [`tail`]: follows a server's log files through rotation ([`tail::lines`] cuts bytes
//!   into bounded lines, [`tail::checkpoint`] remembers how far delivery got).
//! - [`rcon`]: the RCON link to each game; [`readings`]: the readings taken over it (UPS,
//!   players, evolution) and their averages.
//! - [`plugin`]: the WebAssembly sandbox that runs parser and monitor plugins.
//! - [`alert`]: the alert book (what is open) and the mention groups.
//! - [`swap`]: what hot swap keeps beside the plugins: the owner of a slot (swap,
//!   rollback, pins), slot versions and rollback rules, compare-mode reports.
//! - [`monitor`]: the monitor thread (events and samples in, alerts out), the host's own
//!   RCON and readings checks.
//! - [`sink`]: where events go (console, JSON lines); Discord's sinks are in `discord`.
//! - [`cluster`]: cluster mode's etcd side (the lease, elections, fenced writes, rendezvous
//!   ranking) and the state store kept in etcd.
//! - [`pipeline`]: one server's tailer → parser thread → sinks, feeding its monitors.
//!
//! Around them:
//!
//! - [`servers`]: a server's face (its parser and monitor threads, its RCON, its run state).
//! - [`reload`]: rebuilds a server's plugins from servers.yml and swaps them in.
//! - [`discord`]: the bot (commands, chat bridge) and the Discord sinks.
//! - [`http`]: health, readiness, metrics and the admin API.
//! - [`app`]: the composition root ([`app::Host`]) that starts and stops all of it, and the
//!   supervisor of each server that restarts its parts after a panic.
//! - [`sim`]: the fake Factorio server; [`cli`]: the command line (`run`, `demo`, `check`,
//!   `plugin`, …).
//! - Leaves, which any module may use and which use only the leaves before them:
//!   [`files`] (bounded reads), [`event`], [`slot`], [`backoff`] (the one
//!   way every part waits before trying again), [`config`], [`observe`] (health, metrics,
//!   logging), [`store`] (what is kept across restarts: the state folder, or etcd).

pub mod alert;
pub mod app;
pub mod backoff;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod discord;
pub mod event;
pub mod files;
pub mod http;
pub mod monitor;
pub mod observe;
pub mod pipeline;
pub mod plugin;
pub mod rcon;
pub mod readings;
pub mod reload;
pub mod servers;
pub mod sim;
pub mod sink;
pub mod slot;
pub mod store;
pub mod swap;
pub mod tail;
