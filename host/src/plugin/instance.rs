//! One plugin instance for one server: calls under a deadline and a memory cap, faults
//! contained, counted, logged once per burst, and the instance re-created after a fault.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::bindings::{monitor, parser, v0_2};
use super::declared::DeclaredRule;
use super::fault::classify;
pub use super::fault::{Fault, PluginStats};
use super::idle::{ConfigKey, config_key};
use super::sandbox::{SandboxState, Tag};
use super::{EPOCH_TICK, Plugin, PluginError, Pre, one_line};

/// The generated bindings of a live instance, by world.
pub(super) enum Bindings {
    /// A parser of WIT 0.3.0 or later, with the rules its `init` declared.
    Parser(parser::Parser, Vec<DeclaredRule>),
    /// A parser of WIT 0.1.0 or 0.2.0.
    OldParser(v0_2::Parser),
    Monitor(monitor::Monitor),
}

pub(crate) struct Live {
    store: Store<SandboxState>,
    bindings: Bindings,
    /// A call has returned on this instance: it is past its warm-up.
    warm: bool,
}

/// What parser and monitor instances share: one plugin instance for one server, with the
/// deadline, the fault handling and the counters.
pub struct Instance {
    pub(super) plugin: Arc<Plugin>,
    server: String,
    config: String,
    /// `config`'s key among the idle instances.
    key: ConfigKey,
    pub(super) live: Option<Live>,
    /// The last call faulted: the next instance created counts as a restart.
    faulted: bool,
    pub(super) stats: PluginStats,
    last_report: Option<Instant>,
    unreported: u64,
    /// A monitor's state after its last call that returned, for the next instance.
    pub(super) saved_state: Vec<u8>,
    /// The live instance was given `saved_state` after a fault and has not yet returned
    /// from a call: if it faults too, the state may be what makes it fault, and is dropped.
    unproven_state: bool,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(idle) = &self.plugin.idle {
            idle.leave(self.key);
        }
    }
}

/// After a fault is logged, further faults within this window are only counted.
const REPORT_EVERY: Duration = Duration::from_secs(30);

impl Instance {
    pub(crate) fn start(
        plugin: Arc<Plugin>,
        server: &str,
        config: &str,
    ) -> Result<Self, PluginError> {
        let key = config_key(config);
        let shared = plugin.idle.as_ref().and_then(|idle| idle.take(&key));
        let live = match shared {
            Some(live) => live,
            None => Self::create(&plugin, server, config)?,
        };
        if let Some(idle) = &plugin.idle {
            idle.join(key);
        }
        let mut instance = Self {
            plugin,
            server: server.to_owned(),
            config: config.to_owned(),
            key,
            live: Some(live),
            faulted: false,
            stats: PluginStats::default(),
            last_report: None,
            unreported: 0,
            saved_state: Vec::new(),
            unproven_state: false,
        };
        instance.release();
        Ok(instance)
    }

    /// Gives a stateless plugin's instance back to the idle ones after a call.
    fn release(&mut self) {
        if let Some(idle) = &self.plugin.idle
            && let Some(live) = self.live.take()
        {
            idle.put(&self.key, live);
        }
    }

    /// Makes sure there is a live instance: a shared idle one, else a new one.
    fn acquire(&mut self) -> Result<(), Fault> {
        if self.live.is_some() {
            return Ok(());
        }
        if let Some(mut live) = self.plugin.idle.as_ref().and_then(|i| i.take(&self.key)) {
            live.store.data_mut().set_server(&self.server);
            self.live = Some(live);
            if std::mem::take(&mut self.faulted) {
                self.stats.restarts += 1;
            }
            return Ok(());
        }
        match Self::create(&self.plugin, &self.server, &self.config) {
            Ok(mut live) => {
                if std::mem::take(&mut self.faulted) {
                    self.stats.restarts += 1;
                }
                self.restore_state(&mut live);
                self.live = Some(live);
                Ok(())
            }
            Err(e) => {
                self.stats.restart_failures += 1;
                let fault = Fault::Restart(e.to_string());
                self.report(&fault);
                Err(fault)
            }
        }
    }

    /// Hands a monitor's saved state to a new instance. A state it refuses, or that traps
    /// it, is dropped and the monitor starts afresh.
    fn restore_state(&mut self, live: &mut Live) {
        let Bindings::Monitor(b) = &live.bindings else {
            return;
        };
        if self.saved_state.is_empty() {
            return;
        }
        live.store.data_mut().begin_call();
        live.store
            .set_epoch_deadline(ticks(self.plugin.limits.call_timeout));
        let result = b.call_load_state(&mut live.store, &self.saved_state);
        live.store.data_mut().flush_output();
        match result {
            Ok(Ok(())) => self.unproven_state = true,
            Ok(Err(msg)) => {
                tracing::warn!(plugin = %self.plugin.name, server = %self.server, "the monitor refused its saved state ({msg}); it starts afresh");
                self.saved_state.clear();
            }
            Err(e) => {
                tracing::warn!(plugin = %self.plugin.name, server = %self.server, "the monitor faulted taking up its saved state ({}); it starts afresh", one_line(&e));
                self.saved_state.clear();
                // A fresh instance, since this one may not be entered again.
                if let Ok(fresh) = Self::create(&self.plugin, &self.server, &self.config) {
                    *live = fresh;
                }
            }
        }
    }

    fn create(plugin: &Plugin, server: &str, config: &str) -> Result<Live, PluginError> {
        let tag = Tag {
            plugin: plugin.name.clone(),
            server: server.to_owned(),
        };
        let mut store = Store::new(
            &plugin.engine,
            SandboxState::new(tag, plugin.limits.memory_bytes),
        );
        store.limiter(|s| s);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(plugin.limits.init_timeout));
        let instantiated = match &plugin.pre {
            Pre::Parser(p) => p
                .instantiate(&mut store)
                .map(|b| Bindings::Parser(b, Vec::new())),
            Pre::OldParser(p) => p.instantiate(&mut store).map(Bindings::OldParser),
            Pre::Monitor(p) => p.instantiate(&mut store).map(Bindings::Monitor),
        };
        let mut bindings =
            instantiated.map_err(|e| match classify(&e, &store, plugin.limits.init_timeout) {
                Fault::Trap(_) => PluginError::Instantiate(one_line(&e)),
                fault => PluginError::InitFault(fault),
            })?;
        store.data_mut().begin_call();
        store.set_epoch_deadline(ticks(plugin.limits.init_timeout));
        let result = match &mut bindings {
            Bindings::Parser(b, rules) => b.call_init(&mut store, server, config).map(|r| {
                *rules = r?
                    .into_iter()
                    .enumerate()
                    .map(|(i, rule)| DeclaredRule::new(i, rule))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                Ok(())
            }),
            Bindings::OldParser(b) => b.call_init(&mut store, server, config),
            Bindings::Monitor(b) => b.call_init(&mut store, server, config),
        };
        let said = store.data_mut().flush_output();
        match result {
            Ok(Ok(())) => Ok(Live {
                store,
                bindings,
                warm: false,
            }),
            Ok(Err(msg)) => Err(PluginError::Init(msg)),
            Err(e) => {
                let fault = classify(&e, &store, plugin.limits.init_timeout);
                Err(if said.is_empty() {
                    PluginError::InitFault(fault)
                } else {
                    PluginError::InitFaultSaying { fault, said }
                })
            }
        }
    }

    /// The configuration (`init` string) it was started with.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// The plugin this is an instance of.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// The server it serves.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The size of the live instance's linear memory right now (0 while there is none).
    pub fn memory_bytes(&self) -> usize {
        self.live
            .as_ref()
            .map_or(0, |l| l.store.data().memory_bytes)
    }

    /// What it has done so far.
    pub fn stats(&self) -> &PluginStats {
        &self.stats
    }

    /// Runs `f` in the guest under the call deadline, re-creating the instance first if an
    /// earlier call faulted. A call that runs past its deadline is tried once more on a fresh
    /// instance before it counts as a fault: on a busy machine (a Factorio server beside us)
    /// a thread can be kept off the CPU for longer than the deadline, and that must not cost
    /// a batch. A plugin that really loops costs two deadlines per batch.
    pub(super) fn call<R>(
        &mut self,
        input_bytes: usize,
        f: impl Fn(&Bindings, &mut Store<SandboxState>) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        let limits = self.plugin.limits;
        let timeout = limits.call_timeout
            + limits
                .timeout_per_mib
                .mul_f64(input_bytes as f64 / (1 << 20) as f64);
        let result = match self.attempt(timeout, &f) {
            Err(Fault::Timeout(_)) => {
                self.stats.retries += 1;
                self.attempt(timeout, &f)
            }
            other => other,
        };
        if let Err(fault) = &result {
            match fault {
                Fault::Trap(_) => self.stats.traps += 1,
                Fault::Timeout(_) => self.stats.timeouts += 1,
                Fault::MemoryCap(_) => self.stats.memory_cap_hits += 1,
                // Counted and reported where the instance could not be made.
                Fault::Restart(_) => return result,
            }
            self.report(fault);
        }
        result
    }

    fn attempt<R>(
        &mut self,
        timeout: Duration,
        f: &impl Fn(&Bindings, &mut Store<SandboxState>) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        self.acquire()?;
        let Some(live) = self.live.as_mut() else {
            return Err(Fault::Restart("no instance".into()));
        };
        // The first call of an instance often fills its caches (the stock parser compiles
        // the rules a log exercises on first use): it gets the longer warm-up deadline.
        let timeout = if live.warm {
            timeout
        } else {
            timeout.max(self.plugin.limits.warmup_timeout)
        };
        live.store.data_mut().begin_call();
        live.store.set_epoch_deadline(ticks(timeout));
        let started = Instant::now();
        let result = f(&live.bindings, &mut live.store);
        let elapsed = started.elapsed();
        live.store.data_mut().flush_output();
        self.stats.suppressed_output = live.store.data().suppressed;
        self.stats.memory_bytes = live.store.data().memory_bytes;
        match result {
            Ok(r) => {
                live.warm = true;
                self.stats.calls += 1;
                self.stats.busy += elapsed;
                self.unproven_state = false;
                self.release();
                Ok(r)
            }
            Err(e) => {
                let fault = classify(&e, &live.store, timeout);
                // A component instance that trapped may not be entered again.
                self.live = None;
                self.faulted = true;
                if std::mem::take(&mut self.unproven_state) {
                    tracing::warn!(plugin = %self.plugin.name, server = %self.server, "the monitor faulted again right after taking up its saved state; the state is dropped");
                    self.saved_state.clear();
                }
                Err(fault)
            }
        }
    }

    /// Logs a fault, at most once per [`REPORT_EVERY`], with a count of the ones in between.
    fn report(&mut self, fault: &Fault) {
        let now = Instant::now();
        if self
            .last_report
            .is_some_and(|t| now.duration_since(t) < REPORT_EVERY)
        {
            self.unreported += 1;
            return;
        }
        let more = std::mem::take(&mut self.unreported);
        self.last_report = Some(now);
        tracing::warn!(
            plugin = %self.plugin.name,
            server = %self.server,
            faults_total = self.stats.faults(),
            "plugin {fault}; the batch is skipped for this plugin and the instance restarted{}",
            if more > 0 { format!(" ({more} more faults since the last report)") } else { String::new() }
        );
    }
}

/// A deadline of at least `d`, in epoch ticks.
fn ticks(d: Duration) -> u64 {
    (d.as_nanos() / EPOCH_TICK.as_nanos()) as u64 + 1
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("plugin", &self.plugin.name())
            .field("server", &self.server)
            .field("live", &self.live.is_some())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
