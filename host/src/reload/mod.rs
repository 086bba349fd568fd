//! Hot swap of a server's plugins while the host runs.
//!
//! Each server has two plugin slots (`slot::Slot`): its parser chain and its set of
//! monitors. A reload reads servers.yml again and builds each slot from it (compiling plugins,
//! reading pattern files, running `init`) **off the hot path**; if a slot's version differs
//! from the live one, it is handed to the thread that owns the slot (the parser thread, the
//! monitor thread), which makes it live between two calls: no line is lost or parsed twice,
//! and new monitors take up the state of those they replace. A slot that does not build is
//! rejected with its error (log, `/ready` component `reload:<tag>` or
//! `reload:<tag>:monitors`, metrics, API) and the live version keeps running. The version it
//! replaced is kept, so a rollback is instant.
//!
//! The candidates of compare mode (`shadow`) are rebuilt by the same reload: added, replaced
//! or stopped as servers.yml now says.
//!
//! Reloads come from the watcher (a changed servers.yml, pattern file or `.wasm`), the admin
//! API, `factorio-isr reload`, and `/factorio reload`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::config::{Config, ServerConfig};
use crate::monitor::MonitorInput;
use crate::observe::health::{Health, Part, State};
use crate::observe::metrics::Metrics;
use crate::observe::metrics::ReloadResult;
use crate::pipeline::{self, ParseInput};
use crate::plugin::{MonitorInstance, ParserChain, Runtime};
use crate::servers::Server;
use crate::swap::slot::{Slot, Swapped};

mod outcome;
mod watch;
pub use outcome::{ReloadError, ReloadOutcome, ServerReload, Unreadable};
pub use watch::{watch, watched_dirs};

/// A slot's plugins, built and initialised, ready to be swapped in.
enum Built {
    Parsers(ParserChain),
    Monitors(Vec<MonitorInstance>),
}

impl Built {
    fn version(&self) -> String {
        match self {
            Self::Parsers(chain) => chain.version(),
            Self::Monitors(monitors) => crate::monitor::version(monitors),
        }
    }
}

/// Which entries of a server a slot is built from (and, for the configured ones, whether
/// an operator asked).
#[derive(Debug, Clone, Copy)]
enum Which {
    Config { explicit: bool },
    Candidate,
}

/// Reloads servers' plugins from the configuration file.
pub struct Reloader {
    runtime: Arc<Runtime>,
    config_path: PathBuf,
    metrics: Arc<Metrics>,
    health: Health,
    /// One change at a time, so two triggers cannot race their swaps. A reload holds it
    /// from reading servers.yml until every slot and candidate is placed, so all of them
    /// come from one reading of the file.
    busy: tokio::sync::Mutex<()>,
    /// Where run-time choices of version are kept.
    pins: Option<crate::swap::pins::PinStore>,
}

impl Reloader {
    /// A reloader that reads `config_path` and builds with `runtime`.
    pub fn new(
        runtime: Arc<Runtime>,
        config_path: &Path,
        metrics: Arc<Metrics>,
        health: Health,
        pins: Option<crate::swap::pins::PinStore>,
    ) -> Self {
        Self {
            runtime,
            config_path: config_path.to_owned(),
            metrics,
            health,
            busy: tokio::sync::Mutex::new(()),
            pins,
        }
    }

    /// The configuration file it reads.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    fn count(&self, tag: &str, slot: Slot, result: ReloadResult) {
        self.metrics
            .plugin_reloads
            .with_label_values(&[tag, result.label(slot)])
            .inc();
    }

    /// The `/ready` component that shows a slot's last rejected reload.
    pub fn component(tag: &str, slot: Slot) -> Part {
        Part::Reload {
            server: tag.to_owned(),
            slot,
        }
    }

    /// Rebuilds `server`'s parsers, monitors and candidates from the configuration and swaps
    /// in those that changed; a version chosen at run time (promoted, rolled back) gives way
    /// to the configuration.
    pub async fn reload(&self, server: &Server) -> ServerReload {
        self.reload_as(server, true).await
    }

    /// The watcher's reload: like [`Reloader::reload`], except that a version chosen at run
    /// time stays unless the configuration now gives another version than it did.
    pub async fn reload_if_changed(&self, server: &Server) -> ServerReload {
        self.reload_as(server, false).await
    }

    async fn reload_as(&self, server: &Server, explicit: bool) -> ServerReload {
        let _one = self.busy.lock().await;
        let config = self.server_config(&server.tag).await;
        let which = Which::Config { explicit };
        let monitors = match &server.monitors {
            Some(_) => Some(self.swap_in(server, Slot::Monitors, which, &config).await),
            None => None,
        };
        let parsers = match &server.parsers {
            Some(_) => Some(self.swap_in(server, Slot::Parsers, which, &config).await),
            None => None,
        };
        self.reload_candidates(server, &config).await;
        ServerReload { parsers, monitors }
    }

    /// Rebuilds `server`'s compare-mode candidates from its `shadow` entries and hands each
    /// that changed (or appeared, or went) to its slot's thread; the comparison starts
    /// afresh. Failures are logged and counted; a running candidate keeps running.
    async fn reload_candidates(&self, server: &Server, config: &Result<ServerConfig, Unreadable>) {
        for slot in [Slot::Parsers, Slot::Monitors] {
            let running = match slot {
                Slot::Parsers => server
                    .parser_compare
                    .lock()
                    .as_ref()
                    .map(|r| r.candidate.clone()),
                Slot::Monitors => server
                    .monitor_compare
                    .lock()
                    .as_ref()
                    .map(|r| r.candidate.clone()),
            };
            let built = match self.build(config, slot, Which::Candidate).await {
                Ok(built) => built,
                Err(problem) => {
                    tracing::error!(server = %server.tag, "the {slot} candidate was not reloaded; a running one keeps running: {problem}");
                    self.count(&server.tag, slot, ReloadResult::CandidateRejected);
                    continue;
                }
            };
            if built.as_ref().map(Built::version) == running {
                continue;
            }
            let (done, placed) = oneshot::channel();
            let sent = match (slot, built) {
                (Slot::Parsers, built) => match &server.parsers {
                    Some(h) => {
                        let chain = match built {
                            Some(Built::Parsers(c)) => Some(c),
                            _ => None,
                        };
                        send(&h.inputs, ParseInput::Candidate { chain, done }).await
                    }
                    None => {
                        if built.is_some() {
                            tracing::warn!(server = %server.tag, "server `{}` follows no log: its candidate parsers have nothing to parse", server.tag);
                        }
                        false
                    }
                },
                (Slot::Monitors, built) => match &server.monitors {
                    Some(h) => {
                        let monitors = match built {
                            Some(Built::Monitors(m)) => Some(m),
                            _ => None,
                        };
                        send(&h.feed, MonitorInput::Candidate { monitors, done }).await
                    }
                    None => false,
                },
            };
            if sent && placed.await.is_ok() {
                self.count(&server.tag, slot, ReloadResult::CandidateSwapped);
            }
        }
    }

    /// Makes the server's compare-mode candidates (its `shadow` entries, as configured now)
    /// live, each slot that has one; the live versions become the rollback targets. The
    /// comparisons start afresh.
    pub async fn promote(&self, server: &Server) -> Result<ServerReload, ReloadError> {
        let _one = self.busy.lock().await;
        let read = self.server_config(&server.tag).await;
        let config = read
            .clone()
            .map_err(|e| ReloadError::Rejected(e.to_string()))?;
        let mut done = ServerReload::default();
        if !config.shadow.parsers.is_empty() {
            let outcome = self
                .swap_in(server, Slot::Parsers, Which::Candidate, &read)
                .await;
            if let Some(r) = server.parser_compare.lock().as_mut() {
                *r = crate::swap::compare::ParserReport::new(r.candidate.clone());
            }
            done.parsers = Some(outcome);
        }
        if !config.shadow.monitors.is_empty() {
            let outcome = self
                .swap_in(server, Slot::Monitors, Which::Candidate, &read)
                .await;
            if let Some(r) = server.monitor_compare.lock().as_mut() {
                *r = crate::swap::compare::MonitorReport::new(r.candidate.clone());
            }
            done.monitors = Some(outcome);
        }
        if done.parsers.is_none() && done.monitors.is_none() {
            return Err(ReloadError::NoCandidate(server.tag.clone()));
        }
        for (slot, r) in [
            (Slot::Parsers, &done.parsers),
            (Slot::Monitors, &done.monitors),
        ] {
            if let Some(Ok(ReloadOutcome::Swapped { .. })) = r {
                self.count(&server.tag, slot, ReloadResult::Promoted);
            }
        }
        Ok(done)
    }

    /// Builds `slot` from `config` and swaps it in; the caller holds `busy`.
    async fn swap_in(
        &self,
        server: &Server,
        slot: Slot,
        which: Which,
        config: &Result<ServerConfig, Unreadable>,
    ) -> Result<ReloadOutcome, ReloadError> {
        let tag = server.tag.clone();
        let versions = match slot {
            Slot::Parsers => server.parsers.as_ref().map(|h| h.versions.clone()),
            Slot::Monitors => server.monitors.as_ref().map(|h| h.versions.clone()),
        };
        let Some(versions) = versions else {
            return Err(match slot {
                Slot::Parsers => ReloadError::NoLog(tag),
                Slot::Monitors => ReloadError::NoMonitors(tag),
            });
        };
        let started = Instant::now();
        let built = self.built(&tag, slot, which, config, &versions).await?;
        let build_ms = ms(started.elapsed());
        let version = built.version();
        let (live, pinned, old_config) = {
            let mut v = versions.lock();
            v.last_error = None;
            let before = (v.live.clone(), v.pinned, v.config.clone());
            if matches!(which, Which::Config { .. }) {
                v.config = version.clone();
            }
            before
        };
        self.health
            .set(&Self::component(&tag, slot), State::Ready, None);
        if matches!(which, Which::Config { explicit: false })
            && pinned.is_some()
            && version == old_config
        {
            // The configuration has not changed since a version was chosen at run time.
            self.count(&tag, slot, ReloadResult::Unchanged);
            return Ok(ReloadOutcome::Unchanged { version: live });
        }
        if version == live {
            if matches!(which, Which::Config { explicit: true }) && pinned.is_some() {
                self.unpin(&tag, slot).await?;
                versions.lock().pinned = None;
            }
            self.count(&tag, slot, ReloadResult::Unchanged);
            return Ok(ReloadOutcome::Unchanged { version });
        }
        let pin = match which {
            Which::Candidate => Some(crate::swap::pins::PinReason::Promoted),
            Which::Config { .. } => None,
        };
        let swap_started = Instant::now();
        let Swapped { from, to, not_kept } = send_swap(server, built, pin).await?;
        self.count(&tag, slot, ReloadResult::Swapped);
        Ok(ReloadOutcome::Swapped {
            from,
            to,
            build_ms,
            swap_ms: ms(swap_started.elapsed()),
            not_kept,
        })
    }

    /// `slot` built from `config`; a rejection is logged, counted and shown in health (the
    /// live version keeps running).
    async fn built(
        &self,
        tag: &str,
        slot: Slot,
        which: Which,
        config: &Result<ServerConfig, Unreadable>,
        versions: &parking_lot::Mutex<crate::swap::slot::SlotVersions>,
    ) -> Result<Built, ReloadError> {
        let problem = match self.build(config, slot, which).await {
            Ok(Some(built)) => return Ok(built),
            Ok(None) => return Err(ReloadError::NoCandidate(tag.to_owned())),
            Err(problem) => problem,
        };
        tracing::error!(server = %tag, "{slot} reload rejected; the live version keeps running: {problem}");
        versions.lock().last_error = Some(problem.clone());
        self.health
            .error(&Self::component(tag, slot), problem.clone());
        self.count(tag, slot, ReloadResult::Rejected);
        Err(ReloadError::Rejected(problem))
    }

    /// Forgets the version of `slot` chosen at run time: servers.yml's is live again.
    async fn unpin(&self, tag: &str, slot: Slot) -> Result<(), ReloadError> {
        let Some(pins) = &self.pins else {
            return Ok(());
        };
        let state = crate::store::StateReport::new(
            self.health.clone(),
            Some(self.metrics.state_write_failures.clone()),
        );
        let cleared = {
            let (pins, tag) = (pins.clone(), tag.to_owned());
            tokio::task::spawn_blocking(move || pins.clear(&tag, slot))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e).into()))
        };
        state
            .record(
                crate::store::What::Versions,
                &Part::Versions(tag.to_owned()),
                cleared,
            )
            .map_err(|e| {
                ReloadError::NotKept(format!(
                    "servers.yml's {slot} are live, but the version chosen before stays kept for the next start: {e}"
                ))
            })
    }

    /// Makes the version before the live one of `slot` live again (default: the parsers,
    /// or the monitors of a server that follows no log).
    pub async fn rollback(
        &self,
        server: &Server,
        slot: Option<Slot>,
    ) -> Result<(Slot, Swapped), ReloadError> {
        let _one = self.busy.lock().await;
        let slot = slot.unwrap_or(if server.parsers.is_some() {
            Slot::Parsers
        } else {
            Slot::Monitors
        });
        let (done, swapped) = oneshot::channel();
        let sent = match slot {
            Slot::Parsers => {
                let Some(h) = &server.parsers else {
                    return Err(ReloadError::NoLog(server.tag.clone()));
                };
                send(&h.inputs, ParseInput::Rollback { done }).await
            }
            Slot::Monitors => {
                let Some(h) = &server.monitors else {
                    return Err(ReloadError::NoMonitors(server.tag.clone()));
                };
                send(&h.feed, MonitorInput::Rollback { done }).await
            }
        };
        if !sent {
            return Err(ReloadError::Stopped);
        }
        match swapped.await.map_err(|_| ReloadError::Stopped)? {
            Some(s) => {
                self.count(&server.tag, slot, ReloadResult::RolledBack);
                Ok((slot, s))
            }
            None => Err(ReloadError::NoPrevious),
        }
    }

    /// Server `tag` as servers.yml gives it now (read off the async threads, counted in
    /// `config_reads_total`), or why it cannot be read.
    pub(crate) async fn server_config(&self, tag: &str) -> Result<ServerConfig, Unreadable> {
        let path = self.config_path.clone();
        let tag = tag.to_owned();
        let read = tokio::task::spawn_blocking(move || {
            let config = Config::load(&path).map_err(|e| Unreadable::Config(e.to_string()))?;
            config.server(&tag).cloned().ok_or(Unreadable::NoServer {
                path: path.display().to_string(),
                tag,
            })
        })
        .await
        .map_err(|e| Unreadable::Interrupted(e.to_string()))
        .and_then(|r| r);
        let result = if read.is_ok() { "ok" } else { "error" };
        self.metrics.config_reads.with_label_values(&[result]).inc();
        read
    }

    /// Builds `slot` of the server as `config` gives it, off the async threads; none for a
    /// candidate that it does not give.
    async fn build(
        &self,
        config: &Result<ServerConfig, Unreadable>,
        slot: Slot,
        which: Which,
    ) -> Result<Option<Built>, String> {
        let server = config.clone().map_err(|e| e.to_string())?;
        let runtime = self.runtime.clone();
        let path = self.config_path.display().to_string();
        tokio::task::spawn_blocking(move || {
            let built = match (slot, which) {
                (Slot::Parsers, Which::Config { .. }) => {
                    pipeline::parser_chain(&runtime, &server.tag, &server.parsers)
                        .map(|c| Some(Built::Parsers(c)))
                }
                (Slot::Parsers, Which::Candidate) if server.shadow.parsers.is_empty() => Ok(None),
                (Slot::Parsers, Which::Candidate) => {
                    pipeline::parser_chain(&runtime, &server.tag, &server.shadow.parsers)
                        .map(|c| Some(Built::Parsers(c)))
                }
                (Slot::Monitors, Which::Config { .. }) => {
                    crate::monitor::monitor_instances(&runtime, &server)
                        .map(|m| Some(Built::Monitors(m)))
                }
                (Slot::Monitors, Which::Candidate) => {
                    crate::monitor::candidate_instances(&runtime, &server)
                        .map(|m| m.map(Built::Monitors))
                }
            };
            built.map_err(|e| format!("{path}: server {}: {e:#}", server.tag))
        })
        .await
        .map_err(|e| format!("the build failed: {e}"))?
    }
}

/// Sends `msg` to a slot's thread; false when the thread is gone.
async fn send<T>(to: &crate::swap::inbox::Inbox<T>, msg: T) -> bool {
    to.send(msg).await
}

/// Hands `built` to the server's thread of its slot and waits for the swap.
async fn send_swap(
    server: &Server,
    built: Built,
    pin: Option<crate::swap::pins::PinReason>,
) -> Result<Swapped, ReloadError> {
    let (done, swapped) = oneshot::channel();
    let sent = match (built, &server.parsers, &server.monitors) {
        (Built::Parsers(chain), Some(h), _) => {
            send(&h.inputs, ParseInput::Swap { chain, pin, done }).await
        }
        (Built::Monitors(monitors), _, Some(h)) => {
            let swap = MonitorInput::Swap {
                monitors,
                pin,
                done,
            };
            send(&h.feed, swap).await
        }
        _ => false,
    };
    if !sent {
        return Err(ReloadError::Stopped);
    }
    swapped.await.map_err(|_| ReloadError::Stopped)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
