//! One supervisor per server owns every thread and task of that server's run (tailer,
//! parser thread, monitor thread, checks, delivery). When one of them panics, the
//! supervisor stops the rest of the run (what was parsed is delivered and the checkpoint
//! saved), waits with a growing backoff, and starts the parts again from the checkpoint, so
//! no line is lost. After [`RestartPolicy::limit`] restarts within its window the server
//! stays down and says so, instead of crash-looping. It also stops and starts the server's
//! parts on request ([`super::Host::stop_server`]).
//!
//! A restart builds the server as a start of the host would: servers.yml as it is now on
//! disk (the configuration of the last run if it no longer loads or builds) and the versions
//! kept in the state folder, with the open alerts and the monitors' states kept beside them
//! (`kept.rs`). An order to restart (a changed entry of servers.yml) stops the run and
//! builds the next one the same way.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::server::{RunParts, start_run};
use crate::config::ServerConfig;
use crate::observe::health::{Part, State};
use crate::observe::{Crash, Watchdog};
use crate::reload::Reloader;
use crate::servers::{Order, RunOrder, RunState, Server};

/// When a server whose part panicked is started again.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    /// The wait before the first restart; each further one within the window doubles it.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Restarts allowed within `window`; the next panic leaves the server down.
    pub limit: u32,
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            limit: 5,
            window: Duration::from_secs(600),
        }
    }
}

impl RestartPolicy {
    /// The wait before the restart that follows `recent` restarts within the window.
    fn backoff(&self, recent: usize) -> Duration {
        crate::backoff::Backoff::after(self.backoff_min, self.backoff_max, recent)
    }
}

/// What the supervisor counts across phases.
#[derive(Default)]
struct Tally {
    /// When each restart within the window happened.
    recent: VecDeque<Instant>,
    restarts: u32,
    /// Who waits for the state an order led to.
    answer: Option<oneshot::Sender<RunState>>,
}

/// One run of a server's parts.
pub(super) struct Run {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    crashes: mpsc::UnboundedReceiver<Crash>,
    /// Keeps the crash channel open while parts that ended by themselves are gone.
    _watchdog: Watchdog,
}

impl Run {
    /// Starts a run of `config`'s parts on `live`, the server's face.
    fn start(
        parts: &RunParts,
        config: &ServerConfig,
        live: &Server,
        positioned: Option<Arc<tokio::sync::Semaphore>>,
    ) -> anyhow::Result<Self> {
        let (watchdog, crashes) = Watchdog::new(&parts.shared, &config.tag);
        let (stop, stopped) = watch::channel(false);
        let tasks = start_run(parts, config, live, &stopped, &watchdog, positioned)?;
        Ok(Self {
            stop,
            tasks,
            crashes,
            _watchdog: watchdog,
        })
    }

    /// Stops every part: the tailer stops reading, what was read is parsed and delivered,
    /// the checkpoint saved; returns once all of them ended.
    async fn stop(self, tag: &str) {
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        tokio::pin!(all);
        tokio::select! {
            _ = &mut all => return,
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        // A sink still retrying holds the run; the next one must not write beside it.
        tracing::warn!(server = %tag, "the server's parts take long to stop; waiting for them");
        all.await;
    }
}

/// How a server's supervision begins.
pub(super) enum First {
    /// Its first run, started.
    Run(Run),
    /// Its first run could not be built (the reason): the server is down, the others run.
    Failed(String),
    /// Cluster mode: it waits, stopped, for an order to run.
    Wait,
}

/// Starts the first run of `config` (at the host's start). Call it off the async threads.
pub(super) fn first_run(
    parts: &RunParts,
    config: &ServerConfig,
    live: &Server,
    positioned: Option<Arc<tokio::sync::Semaphore>>,
) -> anyhow::Result<Run> {
    Run::start(parts, config, live, positioned)
}

/// Where the supervisor is with its server.
enum Phase {
    Running(Run),
    /// `task` panicked (`cause`); the next run starts at `at`.
    Waiting {
        at: Instant,
        task: &'static str,
        cause: String,
    },
    GaveUp {
        cause: String,
    },
    Stopped,
}

impl Phase {
    /// The run state the server's face shows in this phase.
    fn state(&self, restarts: u32) -> RunState {
        match self {
            Phase::Running(_) => RunState::Running { restarts },
            Phase::Waiting { at, cause, .. } => RunState::Restarting {
                restarts,
                in_ms: u64::try_from(at.saturating_duration_since(Instant::now()).as_millis())
                    .unwrap_or(u64::MAX),
                cause: cause.clone(),
            },
            Phase::GaveUp { cause } => RunState::GaveUp {
                restarts,
                cause: cause.clone(),
            },
            Phase::Stopped => RunState::Stopped,
        }
    }
}

/// The supervisor of one server.
pub(super) struct Supervisor {
    pub(super) parts: Arc<RunParts>,
    /// The configuration of the last run that started.
    pub(super) config: ServerConfig,
    pub(super) servers: Arc<Vec<Server>>,
    pub(super) index: usize,
    pub(super) reloader: Arc<Reloader>,
    pub(super) policy: RestartPolicy,
    pub(super) orders: mpsc::Receiver<RunOrder>,
    pub(super) stopped: watch::Receiver<bool>,
}

impl Supervisor {
    fn face(&self) -> &Server {
        &self.servers[self.index]
    }

    fn tag(&self) -> String {
        self.face().tag.clone()
    }

    /// Supervises `first` and the runs after it until the host stops; without a first
    /// run (cluster mode) the server waits, stopped, for an order to run.
    pub(super) async fn run(mut self, first: First) {
        let mut phase = match first {
            First::Run(run) => Phase::Running(run),
            First::Failed(cause) => self.cannot_start(cause),
            First::Wait => Phase::Stopped,
        };
        let mut tally = Tally::default();
        loop {
            let state = phase.state(tally.restarts);
            self.face().run.send_replace(state.clone());
            if let Some(done) = tally.answer.take() {
                let _ = done.send(state);
            }
            let next = match phase {
                Phase::Running(run) => self.while_running(run, &mut tally).await,
                Phase::Waiting { at, task, cause } => {
                    self.while_waiting((at, task, cause), &mut tally).await
                }
                idle => self.while_idle(idle, &mut tally).await,
            };
            let Some(next) = next else {
                return;
            };
            phase = next;
        }
    }

    /// Until the host stops (none).
    fn host_stops(&self) -> impl std::future::Future<Output = ()> + use<> {
        let mut stopped = self.stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    }

    /// A run until it crashes, is ordered to stop or restart, or the host stops (none).
    async fn while_running(&mut self, mut run: Run, t: &mut Tally) -> Option<Phase> {
        let host_stops = self.host_stops();
        Some(tokio::select! {
            () = host_stops => {
                run.stop(&self.tag()).await;
                return None;
            }
            crash = run.crashes.recv() => {
                run.stop(&self.tag()).await;
                let crash = crash.unwrap_or(Crash { task: "server", message: "its parts ended".into() });
                self.after_crash(crash, &mut t.recent)
            }
            order = self.orders.recv() => match order {
                Some(RunOrder { what: Order::Stop, done }) => {
                    run.stop(&self.tag()).await;
                    self.stopped(done, &mut t.answer)
                }
                Some(RunOrder { what: Order::Run, done }) => {
                    t.answer = Some(done);
                    Phase::Running(run)
                }
                Some(RunOrder { what: Order::Restart, done }) => {
                    run.stop(&self.tag()).await;
                    t.answer = Some(done);
                    tracing::info!(server = %self.tag(), "servers.yml changed: the server's parts run again with its new entry");
                    self.start_again(&mut t.recent).await
                }
                None => Phase::Running(run),
            },
        })
    }

    /// The wait before a restart, until it is over, an order comes, or the host stops.
    async fn while_waiting(
        &mut self,
        (at, task, cause): (Instant, &'static str, String),
        t: &mut Tally,
    ) -> Option<Phase> {
        let host_stops = self.host_stops();
        Some(tokio::select! {
            () = host_stops => return None,
            () = tokio::time::sleep_until(at) => {
                t.restarts += 1;
                self.restart(task, &cause, &mut t.recent).await
            }
            order = self.orders.recv() => match order {
                Some(RunOrder { what: Order::Stop, done }) => self.stopped(done, &mut t.answer),
                Some(RunOrder { what: Order::Run | Order::Restart, done }) => {
                    t.answer = Some(done);
                    t.restarts += 1;
                    self.restart(task, &cause, &mut t.recent).await
                }
                None => Phase::Waiting { at, task, cause },
            },
        })
    }

    /// A server that gave up or was stopped, until an order comes or the host stops.
    async fn while_idle(&mut self, idle: Phase, t: &mut Tally) -> Option<Phase> {
        let host_stops = self.host_stops();
        Some(tokio::select! {
            () = host_stops => return None,
            order = self.orders.recv() => match order {
                Some(RunOrder { what: Order::Stop, done }) => self.stopped(done, &mut t.answer),
                Some(RunOrder { what: Order::Run, done }) => {
                    t.answer = Some(done);
                    t.recent.clear();
                    self.start_again(&mut t.recent).await
                }
                // A server that could not start may start with a changed entry; one
                // stopped on purpose stays stopped.
                Some(RunOrder { what: Order::Restart, done }) => {
                    t.answer = Some(done);
                    match idle {
                        Phase::GaveUp { .. } => {
                            t.recent.clear();
                            self.start_again(&mut t.recent).await
                        }
                        stopped => stopped,
                    }
                }
                None => idle,
            },
        })
    }

    /// What follows a crash: a restart after the backoff, or none when the server has used
    /// up its restarts within the window.
    fn after_crash(&self, crash: Crash, recent: &mut VecDeque<Instant>) -> Phase {
        let tag = self.tag();
        let now = Instant::now();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.policy.window)
        {
            recent.pop_front();
        }
        let cause = format!("{}: {}", crash.task, crash.message);
        let allowed = usize::try_from(self.policy.limit).unwrap_or(usize::MAX);
        if recent.len() >= allowed {
            let detail = format!(
                "stays down: {} restarts within {} s did not help (last: {cause}); start it again or restart the host",
                recent.len(),
                self.policy.window.as_secs()
            );
            tracing::error!(server = %tag, "{detail}");
            let h = &self.parts.shared.health;
            let component = Part::Server(tag.clone());
            h.error(&component, detail.clone());
            h.set(&component, State::Down, Some(detail));
            return Phase::GaveUp { cause };
        }
        let wait = self.policy.backoff(recent.len());
        tracing::warn!(server = %tag, "restarting the server's parts in {} ms, from the last checkpoint ({cause})", wait.as_millis());
        recent.push_back(now);
        self.parts
            .shared
            .metrics
            .task_restarts
            .with_label_values(&[&tag, crash.task])
            .inc();
        Phase::Waiting {
            at: now + wait,
            task: crash.task,
            cause,
        }
    }

    /// The server could not be built at the host's start: it stays down with `cause` until
    /// servers.yml changes or it is started again; the other servers run.
    fn cannot_start(&self, cause: String) -> Phase {
        let tag = self.tag();
        let detail = format!(
            "cannot start: {cause}; the other servers run. Fix servers.yml (a change is taken \
             up) or POST /api/servers/{tag}/start"
        );
        tracing::error!(server = %tag, "{detail}");
        let h = &self.parts.shared.health;
        let component = Part::Server(tag.clone());
        h.error(&component, detail.clone());
        h.set(&component, State::Down, Some(detail));
        Phase::GaveUp { cause }
    }

    /// Starts the parts again after a crash; a start that fails counts as one more crash.
    async fn restart(&mut self, task: &str, cause: &str, recent: &mut VecDeque<Instant>) -> Phase {
        match self.start().await {
            Ok(run) => {
                let tag = self.tag();
                tracing::info!(server = %tag, "the server's parts run again after {cause}");
                let component = Part::Task {
                    server: tag.clone(),
                    task: task.to_owned(),
                };
                self.parts.shared.health.set(
                    &component,
                    State::Ready,
                    Some(format!("restarted after {cause}")),
                );
                Phase::Running(run)
            }
            Err(e) => self.after_crash(
                Crash {
                    task: "start",
                    message: format!("{e:#}"),
                },
                recent,
            ),
        }
    }

    /// Starts the parts of a stopped server (or one that gave up).
    async fn start_again(&mut self, recent: &mut VecDeque<Instant>) -> Phase {
        let tag = self.tag();
        self.parts.shared.health.forget(&Part::Server(tag.clone()));
        match self.start().await {
            Ok(run) => Phase::Running(run),
            Err(e) => self.after_crash(
                Crash {
                    task: "start",
                    message: format!("{e:#}"),
                },
                recent,
            ),
        }
    }

    /// Builds and starts a run from servers.yml as it is now, or from the last run's
    /// configuration when that does not load or build.
    async fn start(&mut self) -> anyhow::Result<Run> {
        let tag = self.tag();
        let read = self.reloader.server_config(&tag).await;
        let mut tries = Vec::new();
        match read {
            Ok(now) => tries.push(now),
            Err(e) => tracing::warn!(server = %tag, "starting from the last configuration: {e}"),
        }
        tries.push(self.config.clone());
        let mut last = None;
        for config in tries {
            let (parts, servers, index) = (self.parts.clone(), self.servers.clone(), self.index);
            let built = {
                let config = config.clone();
                // Building compiles and initialises plugins: off the async threads.
                tokio::task::spawn_blocking(move || {
                    Run::start(&parts, &config, &servers[index], None)
                })
                .await
            };
            match built {
                Ok(Ok(run)) => {
                    self.config = config;
                    return Ok(run);
                }
                Ok(Err(e)) => {
                    tracing::warn!(server = %tag, "cannot start the server's parts: {e:#}");
                    last = Some(e);
                }
                Err(e) => last = Some(anyhow::anyhow!("the start panicked: {e}")),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("nothing to start")))
    }

    /// Stopped on an order (answered with `done` once published): the server's
    /// components leave `/ready`, since it is stopped on purpose.
    fn stopped(
        &self,
        done: oneshot::Sender<RunState>,
        answer: &mut Option<oneshot::Sender<RunState>>,
    ) -> Phase {
        self.parts.shared.health.forget_server(&self.tag());
        *answer = Some(done);
        Phase::Stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_its_minimum_up_to_its_maximum() {
        let p = RestartPolicy {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            ..RestartPolicy::default()
        };
        let waits: Vec<u64> = (0..6).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(p.backoff(usize::MAX), Duration::from_secs(10));
    }
}
